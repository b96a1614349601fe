//! `openframe agent …` and the `openframe-agent` binary share this: the same flags, the same
//! run. The separate binary exists for machines: it links only the agent's code (none of the
//! appliance's stores), so it is smaller on disk and in memory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Register (the first time) and serve the appliance in the foreground.
    Run(AgentArgs),
    /// Register this machine and install the agent as a service (systemd), started now.
    Install {
        #[command(flatten)]
        agent: AgentArgs,
        #[command(flatten)]
        service: ServiceArgs,
    },
    /// Deregister this machine, stop and remove the service, and delete the agent's state.
    Uninstall {
        #[command(flatten)]
        local: LocalArgs,
        #[command(flatten)]
        service: ServiceArgs,
        /// Remove the agent here even when the appliance cannot be told.
        #[arg(long)]
        force: bool,
    },
    /// Check the agent's state, the server, the credential, NATS, the clock and the service.
    Doctor {
        #[command(flatten)]
        local: LocalArgs,
        #[command(flatten)]
        service: ServiceArgs,
    },
}

/// Where a registered agent keeps its state, and whom it trusts.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Where the credential and undelivered results are kept.
    #[arg(long, default_value = "/var/lib/openframe-agent")]
    state_dir: PathBuf,
    /// Trust only this PEM certificate (bundle) for the server.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

/// Where the service definition goes.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The directory of the systemd unit.
    #[arg(long, default_value = "/etc/systemd/system")]
    unit_dir: PathBuf,
    /// Only write (or remove) the unit; do not ask systemd to start (or stop) it.
    #[arg(long)]
    no_start: bool,
}

impl ServiceArgs {
    fn options(self) -> crate::agent::setup::ServiceOptions {
        crate::agent::setup::ServiceOptions {
            unit_dir: self.unit_dir,
            no_start: self.no_start,
        }
    }
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The appliance, e.g. https://appliance.example:8443.
    #[arg(long)]
    server: String,
    /// The tenant's registration secret; needed only the first time.
    #[arg(long)]
    initial_key: Option<String>,
    /// The customer (organization id) the machine belongs to.
    #[arg(long = "org")]
    organization_id: Option<String>,
    /// A tag for the machine, key=value; repeat for several.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Where the credential and undelivered results are kept.
    #[arg(long, default_value = "/var/lib/openframe-agent")]
    state_dir: PathBuf,
    /// Trust only this PEM certificate (bundle) for the server.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Report this hostname instead of the machine's.
    #[arg(long)]
    hostname: Option<String>,
    #[arg(long, default_value_t = 60, hide = true)]
    heartbeat_seconds: u64,
    #[arg(long, default_value_t = 300, hide = true)]
    inventory_seconds: u64,
}

impl AgentArgs {
    fn options(self) -> anyhow::Result<crate::agent::AgentOptions> {
        let tags = self
            .tags
            .iter()
            .map(|tag| {
                tag.split_once('=')
                    .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
                    .filter(|(key, value)| !key.is_empty() && !value.is_empty())
                    .ok_or_else(|| anyhow::anyhow!("--tag {tag:?}: write key=value"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(crate::agent::AgentOptions {
            server: self.server.trim_end_matches('/').to_owned(),
            initial_key: self.initial_key,
            organization_id: self.organization_id,
            tags,
            state_dir: self.state_dir,
            ca_file: self.ca_file,
            heartbeat: std::time::Duration::from_secs(self.heartbeat_seconds.clamp(1, 3600)),
            hostname: self.hostname,
            inventory_every: std::time::Duration::from_secs(
                self.inventory_seconds.clamp(1, 86_400),
            ),
        })
    }
}

/// Carries out an agent command. `run` lasts until SIGTERM or Ctrl-C; exit code 2 when the
/// credential is refused, 1 when `doctor` found a problem.
pub fn run(command: AgentCommand) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(&crate::config::LogConfig::default());
    // One thread: the agent waits far more than it works, and stays small.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = match command {
        AgentCommand::Run(args) => {
            let options = args.options()?;
            runtime.block_on(serve(options))
        }
        AgentCommand::Install { agent, service } => {
            let options = agent.options()?;
            runtime.block_on(crate::agent::setup::install(&options, &service.options()))
        }
        AgentCommand::Uninstall {
            local,
            service,
            force,
        } => runtime.block_on(crate::agent::setup::uninstall(
            &local.state_dir,
            local.ca_file.as_deref(),
            &service.options(),
            force,
        )),
        AgentCommand::Doctor { local, service } => {
            let healthy = runtime.block_on(crate::agent::setup::doctor(
                &local.state_dir,
                local.ca_file.as_deref(),
                &service.options(),
            ));
            return Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
    };
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(crate::agent::AgentError::Revoked(why)) => {
            eprintln!("openframe agent: {why}");
            Ok(ExitCode::from(2))
        }
        Err(crate::agent::AgentError::Other(error)) => Err(error),
    }
}

/// Runs the agent until SIGTERM or Ctrl-C.
async fn serve(options: crate::agent::AgentOptions) -> Result<(), crate::agent::AgentError> {
    let stop = tokio_util::sync::CancellationToken::new();
    let signal_stop = stop.clone();
    // Installed here, before the agent starts, not in the task: a task may first run after the
    // agent said it is up, and a SIGTERM before then would meet the default action.
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    tokio::spawn(async move {
        if let Ok(mut terminate) = terminate {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
        signal_stop.cancel();
    });
    crate::agent::run(options, stop).await
}
