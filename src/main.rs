//! The `openframe` command line: parse, load the configuration, set up logging, run.

// Printing to stdout is this binary's interface (version, doctor, healthcheck); logs go to stderr.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use openframe::config::{CliOverrides, Config, LogFormat};
use openframe::ops::Verdict;
use openframe::startup::Application;

#[derive(Debug, Parser)]
#[command(
    name = "openframe",
    version,
    about = "The OpenFrame Appliance: OpenFrame's MSP backend in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTPS (default :8443) and the admin endpoints (default 127.0.0.1:9090).
    Serve(ConfigArgs),
    /// Check that the appliance answers: exits 0 when the URL answers 2xx, 1 otherwise.
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:9090/health/ready")]
        url: String,
        /// Trust this PEM certificate for an https URL (e.g. <data-dir>/tls/cert.pem).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        timeout_seconds: u64,
    },
    /// Check the machine and data dir for what `serve` needs.
    Doctor(ConfigArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// A TOML config file (see config.example.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    #[arg(long)]
    admin_listen: Option<std::net::SocketAddr>,
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config, openframe::config::ConfigError> {
        let flags = CliOverrides {
            data_dir: self.data_dir.clone(),
            listen: self.listen,
            admin_listen: self.admin_listen,
            log_format: self.log_format,
        };
        Config::load(self.config.as_deref(), std::env::vars(), &flags)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            // One line that says what and where; the chain is joined with ": ".
            eprintln!("openframe: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("openframe {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let config = args.load()?;
            openframe::telemetry::init(&config.log);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor(args) => {
            let config = args.load()?;
            let findings = openframe::ops::doctor(&config, time::OffsetDateTime::now_utc());
            for finding in &findings {
                let label = match finding.verdict {
                    Verdict::Ok => "ok  ",
                    Verdict::Warn => "warn",
                    Verdict::Fail => "FAIL",
                };
                println!("{label}  {}: {}", finding.check, finding.detail);
            }
            let failed = findings
                .iter()
                .any(|finding| finding.verdict == Verdict::Fail);
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Healthcheck {
            url,
            ca_cert,
            timeout_seconds,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let answer = runtime.block_on(openframe::ops::healthcheck(
                &url,
                ca_cert.as_deref(),
                Duration::from_secs(timeout_seconds),
            ))?;
            println!("{answer}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let application =
        Application::build(config, Arc::new(openframe_storage::model::SystemClock)).await?;
    tracing::info!(data_dir = %application.data_dir().display(), "stores open");
    application.run_until_stopped(shutdown_signal()).await
}

/// Resolves on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut terminate, mut interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
}
