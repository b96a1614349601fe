//! Structured logs on stderr: pretty for a terminal, JSON lines for journald and shippers.
//! `RUST_LOG`, when set, overrides the configured level (the usual escape hatch when debugging).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Called once by `main`; tests do not install one.
pub fn init(config: &LogConfig) {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| EnvFilter::try_new(directives).is_ok())
        .unwrap_or_else(|| config.level.clone());
    let mut filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    // rustls warns once per connection about what a client sent (an IP address as SNI, as wrk
    // and some agents do): any client could fill the log. Unless asked for, keep only errors.
    if !directives.contains("rustls")
        && let Ok(quiet) = "rustls::msgs::handshake=error".parse()
    {
        filter = filter.add_directive(quiet);
    }
    // async-nats reports every connection event at INFO (connected, reconnecting, each IO error
    // while the supervised server starts); the appliance logs what matters itself.
    if !directives.contains("async_nats")
        && let Ok(quiet) = "async_nats=warn".parse()
    {
        filter = filter.add_directive(quiet);
    }
    // The Kafka and MongoDB clients log each retry against an unreachable peer (every 50 ms to
    // 1 s). The outage reaches readiness, the answers (503) and the pipeline's own warnings, so
    // keep only their errors unless asked for.
    for (crate_name, quiet) in [("rskafka", "rskafka=error"), ("mongodb", "mongodb=error")] {
        if !directives.contains(crate_name)
            && let Ok(quiet) = quiet.parse()
        {
            filter = filter.add_directive(quiet);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    // A second init (e.g. a CLI path that initialises twice) is harmless: keep the first.
    let _ = match config.format {
        LogFormat::Pretty => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
