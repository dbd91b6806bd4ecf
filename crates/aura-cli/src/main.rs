//! The `aura` command: one binary that runs the control plane (`aura up`) and drives it from the terminal.

mod audit_cmd;
mod bench;
mod bench_proxy;
mod cli;
mod commands;
mod edge_cmd;
mod govern_cmd;
mod output;
mod report_cmd;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (see DEPENDENCIES.md): ring, installed before anything else.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
