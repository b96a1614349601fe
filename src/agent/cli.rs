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
}

/// Runs the agent until SIGTERM or Ctrl-C; exit code 2 when its credential is refused.
pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(&crate::config::LogConfig::default());
    let tags = args
        .tags
        .iter()
        .map(|tag| {
            tag.split_once('=')
                .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
                .filter(|(key, value)| !key.is_empty() && !value.is_empty())
                .ok_or_else(|| anyhow::anyhow!("--tag {tag:?}: write key=value"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let options = crate::agent::AgentOptions {
        server: args.server.trim_end_matches('/').to_owned(),
        initial_key: args.initial_key,
        organization_id: args.organization_id,
        tags,
        state_dir: args.state_dir,
        ca_file: args.ca_file,
        heartbeat: std::time::Duration::from_secs(args.heartbeat_seconds.clamp(1, 3600)),
        hostname: args.hostname,
    };
    // One thread: the agent waits far more than it works, and stays small.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let outcome = runtime.block_on(async {
        let signal_stop = stop.clone();
        tokio::spawn(async move {
            if let Ok(mut terminate) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
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
    });
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(crate::agent::AgentError::Revoked(why)) => {
            eprintln!("openframe agent: {why}");
            Ok(ExitCode::from(2))
        }
        Err(crate::agent::AgentError::Other(error)) => Err(error),
    }
}
