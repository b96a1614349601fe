//! `install`, `uninstall` and `doctor`: the agent as a service of the machine.
//!
//! - **install** registers the machine (the initial key is used once, here, and never written
//!   anywhere), proves the credential by taking a token, then writes the service definition and
//!   starts it. The service runs `… run --server … --state-dir …` with the stored credential.
//! - **uninstall** deregisters the machine at the appliance (its credential stops working),
//!   stops and removes the service, and deletes the agent's state.
//! - **doctor** checks what the agent needs, one line each, and says how to fix what fails.
//!
//! The service manager is behind [`service`]: systemd on Linux; launchd and the Windows service
//! manager can follow with the same three operations.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::state::StateDir;
use super::{AgentError, AgentOptions};

/// Where and how the service is installed.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// The directory of the unit file (systemd: `/etc/systemd/system`).
    pub unit_dir: PathBuf,
    /// Write the definition only; do not ask the service manager to (re)load or start it.
    pub no_start: bool,
}

/// The service manager, per platform.
pub mod service {
    use super::*;

    pub const UNIT: &str = "openframe-agent.service";

    /// systemd's quoting for one `ExecStart` word: `"…"` with `\` and `"` escaped, `%` doubled
    /// (specifiers) and `$` doubled (variable expansion).
    fn quoted(word: &str) -> String {
        let mut out = String::with_capacity(word.len() + 2);
        out.push('"');
        for c in word.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                '%' => out.push_str("%%"),
                '$' => out.push_str("$$"),
                _ => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// The unit that runs `command` (program first).
    pub fn unit(command: &[String]) -> String {
        let exec: Vec<String> = command.iter().map(|word| quoted(word)).collect();
        format!(
            "# Written by `openframe agent install`; `openframe agent uninstall` removes it.\n\
             [Unit]\n\
             Description=OpenFrame endpoint agent\n\
             Wants=network-online.target\n\
             After=network-online.target\n\
             \n\
             [Service]\n\
             Type=simple\n\
             ExecStart={}\n\
             Restart=always\n\
             RestartSec=10\n\
             # Exit code 2: the appliance refused this machine's credential; restarting will not help.\n\
             RestartPreventExitStatus=2\n\
             # Scripts the appliance sends run as root; their processes end with the service.\n\
             KillMode=control-group\n\
             UMask=0077\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n",
            exec.join(" ")
        )
    }

    fn systemctl(args: &[&str]) -> anyhow::Result<()> {
        let status = std::process::Command::new("systemctl")
            .args(args)
            .status()
            .with_context(|| {
                "systemctl could not be run: is this machine using systemd? \
                 (use --no-start and start the agent another way)"
                    .to_owned()
            })?;
        anyhow::ensure!(
            status.success(),
            "systemctl {} failed ({status})",
            args.join(" ")
        );
        Ok(())
    }

    /// Writes the unit and, unless told not to, enables and starts it.
    pub fn install(options: &ServiceOptions, command: &[String]) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(&options.unit_dir)
            .with_context(|| format!("cannot create {}", options.unit_dir.display()))?;
        let path = options.unit_dir.join(UNIT);
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, unit(command))
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if !options.no_start {
            systemctl(&["daemon-reload"])?;
            systemctl(&["enable", "--now", UNIT])?;
        }
        Ok(path)
    }

    /// Stops and disables the service (unless told not to) and removes its unit.
    pub fn uninstall(options: &ServiceOptions) -> anyhow::Result<bool> {
        let path = options.unit_dir.join(UNIT);
        if !options.no_start && path.exists() {
            systemctl(&["disable", "--now", UNIT])?;
        }
        let removed = match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
            Err(error) => {
                return Err(error).with_context(|| format!("cannot remove {}", path.display()));
            }
        };
        if removed && !options.no_start {
            systemctl(&["daemon-reload"])?;
        }
        Ok(removed)
    }

    /// Whether the unit is there, and (when systemd answers) whether it runs.
    pub fn describe(options: &ServiceOptions) -> (bool, Option<String>) {
        let present = options.unit_dir.join(UNIT).exists();
        let state = std::process::Command::new("systemctl")
            .args(["is-active", UNIT])
            .output()
            .ok()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .filter(|state| !state.is_empty());
        (present, state)
    }
}

/// The command line the service runs: this program, `run`, and what it needs after
/// registration (never the initial key).
fn service_command(options: &AgentOptions) -> anyhow::Result<Vec<String>> {
    let program = std::env::current_exe().context("cannot tell where this program is")?;
    let mut command = vec![program.display().to_string()];
    // `openframe agent …` or the `openframe-agent` binary.
    let standalone = program
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("openframe-agent"));
    if !standalone {
        command.push("agent".into());
    }
    command.extend(["run".into(), "--server".into(), options.server.clone()]);
    let state_dir = std::path::absolute(&options.state_dir).unwrap_or(options.state_dir.clone());
    command.extend(["--state-dir".into(), state_dir.display().to_string()]);
    if let Some(ca) = &options.ca_file {
        let ca = std::path::absolute(ca).unwrap_or(ca.clone());
        command.extend(["--ca-file".into(), ca.display().to_string()]);
    }
    if let Some(hostname) = &options.hostname {
        command.extend(["--hostname".into(), hostname.clone()]);
    }
    Ok(command)
}

/// `install`: registers (if needed), proves the credential, installs and starts the service.
pub async fn install(options: &AgentOptions, service: &ServiceOptions) -> Result<(), AgentError> {
    let credentials = super::enroll(options).await?;
    let command = service_command(options)?;
    let unit = service::install(service, &command)?;
    eprintln!(
        "registered as machine {}; the service is {} ({})",
        credentials.machine_id,
        if service.no_start {
            "written, not started"
        } else {
            "running"
        },
        unit.display()
    );
    Ok(())
}

/// `uninstall`: deregisters, removes the service and the agent's state. With `force`, a server
/// that cannot be reached does not stop the local removal.
pub async fn uninstall(
    state_dir: &Path,
    ca_file: Option<&Path>,
    service: &ServiceOptions,
    force: bool,
) -> Result<(), AgentError> {
    let state = StateDir::open(state_dir)?;
    if let Some(credentials) = state.credentials()? {
        let http = super::http_client(ca_file)?;
        let outcome = http
            .post(format!(
                "{}/clients/api/agents/uninstall",
                credentials.server
            ))
            .header("X-Machine-Id", &credentials.machine_id)
            .header("X-Client-Secret", &credentials.client_secret)
            .send()
            .await;
        match outcome {
            Ok(response) if response.status().is_success() => {
                eprintln!("machine {} deregistered", credentials.machine_id);
            }
            // Already gone at the appliance: nothing left to undo there.
            Ok(response) if response.status() == reqwest::StatusCode::UNAUTHORIZED => {
                eprintln!(
                    "the appliance no longer knows machine {}",
                    credentials.machine_id
                );
            }
            Ok(response) if !force => {
                return Err(anyhow::anyhow!(
                    "the appliance refused to deregister this machine ({}); use --force to remove it locally anyway",
                    response.status()
                )
                .into());
            }
            Err(error) if !force => {
                return Err(anyhow::anyhow!(
                    "the appliance could not be reached to deregister this machine ({error}); \
                     use --force to remove it locally anyway"
                )
                .into());
            }
            _ => eprintln!("removing locally only (--force)"),
        }
    }
    if service::uninstall(service)? {
        eprintln!("service removed");
    }
    state.remove()?;
    eprintln!("agent state removed from {}", state_dir.display());
    Ok(())
}

/// One line of the doctor's report.
fn verdict(ok: bool, what: &str, detail: &str) -> bool {
    let mark = if ok { "ok  " } else { "FAIL" };
    eprintln!("{mark} {what}: {detail}");
    ok
}

/// `doctor`: checks the state dir, the server, the credential, NATS, the clock and the service.
/// Returns whether everything needed passed.
pub async fn doctor(state_dir: &Path, ca_file: Option<&Path>, service: &ServiceOptions) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let mut healthy = true;
    let state = match StateDir::open(state_dir) {
        Ok(state) => state,
        Err(error) => {
            verdict(false, "state dir", &format!("{error:#}"));
            return false;
        }
    };
    let mode = std::fs::metadata(state_dir).map(|meta| meta.permissions().mode() & 0o777);
    healthy &= verdict(
        matches!(mode, Ok(0o700)),
        "state dir",
        &format!("{} (mode {:o})", state_dir.display(), mode.unwrap_or(0)),
    );
    let mut credentials = match state.credentials() {
        Ok(Some(credentials)) => {
            verdict(
                true,
                "credential",
                &format!(
                    "machine {} at {}",
                    credentials.machine_id, credentials.server
                ),
            );
            credentials
        }
        Ok(None) => {
            verdict(
                false,
                "credential",
                "none: register with `install` (or `run`) and --initial-key",
            );
            return false;
        }
        Err(error) => {
            verdict(false, "credential", &format!("{error:#}"));
            return false;
        }
    };
    let http = match super::http_client(ca_file) {
        Ok(http) => http,
        Err(error) => {
            verdict(false, "TLS trust", &format!("{error:#}"));
            return false;
        }
    };
    // The server, over verified TLS, and its clock (tokens depend on it).
    match http.get(format!("{}/", credentials.server)).send().await {
        Ok(response) => {
            verdict(
                true,
                "server",
                &format!("{} answers over verified TLS", credentials.server),
            );
            let skew = response
                .headers()
                .get(reqwest::header::DATE)
                .and_then(|date| date.to_str().ok())
                .and_then(|date| {
                    time::OffsetDateTime::parse(
                        date,
                        &time::format_description::well_known::Rfc2822,
                    )
                    .ok()
                })
                .map(|server| {
                    (server - time::OffsetDateTime::now_utc())
                        .whole_seconds()
                        .abs()
                });
            if let Some(skew) = skew {
                healthy &= verdict(
                    skew <= 60,
                    "clock",
                    &format!("{skew} s from the server's (tokens need under a minute)"),
                );
            }
        }
        Err(error) => {
            let hint = if ca_file.is_none() {
                " (a self-signed appliance needs --ca-file)"
            } else {
                ""
            };
            verdict(
                false,
                "server",
                &format!("{} cannot be reached: {error}{hint}", credentials.server),
            );
            return false;
        }
    }
    match super::refresh(&http, &state, &mut credentials).await {
        Ok(()) => {
            verdict(
                true,
                "token",
                "the appliance accepts this machine's credential",
            );
        }
        Err(error) => {
            verdict(false, "token", &error.to_string());
            return false;
        }
    }
    healthy &= match super::probe_nats(&credentials, ca_file).await {
        Ok(()) => verdict(true, "NATS", "wss /ws/nats connects and round-trips"),
        Err(error) => verdict(false, "NATS", &format!("{error:#}")),
    };
    let outbox = state.outbox().len();
    verdict(
        true,
        "outbox",
        &format!("{outbox} result(s) waiting for delivery"),
    );
    let (present, active) = service::describe(service);
    let detail = match (&active, present) {
        (_, false) => "not installed (the agent runs in the foreground only)".to_owned(),
        (Some(active), true) => format!("installed, {active}"),
        (None, true) => "installed (systemd did not answer)".to_owned(),
    };
    verdict(true, "service", &detail);
    healthy
}

#[cfg(test)]
mod tests {
    use super::service;

    #[test]
    fn the_unit_quotes_every_word_for_systemd() {
        let unit = service::unit(&[
            "/opt/open frame/openframe-agent".into(),
            "run".into(),
            "--hostname".into(),
            "50%\"$HOME\\".into(),
        ]);
        assert!(
            unit.contains(
                "ExecStart=\"/opt/open frame/openframe-agent\" \"run\" \"--hostname\" \"50%%\\\"$$HOME\\\\\"\n"
            ),
            "{unit}"
        );
        assert!(unit.contains("RestartPreventExitStatus=2\n"));
        assert!(unit.contains("WantedBy=multi-user.target\n"));
    }
}
