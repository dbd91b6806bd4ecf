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
mod sensor_push;
mod watch_view;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (see DEPENDENCIES.md): ring, installed before anything else.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `aura sensor` (a sidecar) takes a lean path: its own small command line, one thread, nothing
    // loaded that the sensor does not use. A smaller footprint is its whole point.
    if let Some(i) = cli::sensor_position(args.get(1..).unwrap_or_default()) {
        args.remove(i + 1);
        let sensor = cli::SensorCli::parse_from(args);
        return run(
            tokio::runtime::Builder::new_current_thread(),
            context_cmd::sensor(&sensor.globals, &sensor.args),
        );
    }
    let cli = cli::Cli::parse_from(args);
    run(
        tokio::runtime::Builder::new_multi_thread(),
        commands::run(cli),
    )
}

fn run(
    mut builder: tokio::runtime::Builder,
    command: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> ExitCode {
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(commands::exit_code_for(&err))
        }
    }
}
