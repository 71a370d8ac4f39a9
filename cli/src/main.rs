//! `igbridge`: the local and ops face of the app.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use igbridge::{provision, redrive, send, serve, sweep};

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
    /// Run every route, both workers and the sweeper on one local server.
    Serve(serve::Args),
    /// Create the table and the queues on an emulator (moto, LocalStack), as template.yaml does.
    Provision(provision::Args),
    /// Sign a sample event with the configured secret and post it.
    Send(send::Args),
    /// Run one sweep, as the schedule does, against the configured table.
    Sweep(sweep::Args),
    /// Move parked jobs from the dead-letter queues back to their queues.
    Redrive(redrive::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    shared::logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Provision(args) => provision::run(args).await,
        Command::Send(args) => send::run(args).await,
        Command::Sweep(args) => sweep::run(args).await,
        Command::Redrive(args) => redrive::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("igbridge: {e}");
            ExitCode::FAILURE
        }
    }
}
