//! `igbridge`: the local and ops face of the app.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod provision;

/// The igbridge tool.
#[derive(Parser)]
#[command(
    name = "igbridge",
    version,
    about = "Instagram Direct ↔ LiveChat bridge: local run and ops chores"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the table and the queues on an emulator (moto, LocalStack), as template.yaml does.
    Provision(provision::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    shared::logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Provision(args) => provision::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("igbridge: {e}");
            ExitCode::FAILURE
        }
    }
}
