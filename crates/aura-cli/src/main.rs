//! The `aura` command: one binary that runs the control plane (`aura up`) and drives it from the terminal.

mod audit_cmd;
mod bench;
mod bench_catalog;
mod bench_gateway;
mod bench_mesh;
mod bench_proxy;
mod bench_sensor;
mod catalog_cmd;
mod cli;
mod commands;
mod context_cmd;
mod edge_cmd;
mod gateway_cmd;
mod govern_cmd;
mod instrument;
mod mesh_cmd;
mod output;
mod report_cmd;
mod watch_view;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (see DEPENDENCIES.md): ring, installed before anything else.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = cli::Cli::parse();
    // `aura sensor` (a sidecar) runs on one thread: a smaller footprint is its whole point.
    let mut builder = if matches!(cli.command, cli::Command::Sensor(_)) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(commands::exit_code_for(&err))
        }
    }
}
