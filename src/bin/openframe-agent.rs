//! `openframe-agent`: the endpoint agent on its own (see `openframe::agent`).

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "openframe-agent",
    version,
    about = "The OpenFrame endpoint agent: registers this machine and runs what the appliance sends"
)]
struct Cli {
    #[command(subcommand)]
    command: openframe::agent::cli::AgentCommand,
}

fn main() -> ExitCode {
    match openframe::agent::cli::run(Cli::parse().command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("openframe-agent: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
