//! NATS for agents and CDC: either a `nats-server` child the appliance supervises (loopback only,
//! JetStream in `<data dir>/nats`), or an external server.
//!
//! The embedded server gets a generated config with three users: `openframe` (the appliance, a new
//! password every start, held only in memory and the 0600 config file), `agents` (the `/ws/nats`
//! proxy's connections, also a new password every start, limited to what any machine may do) and
//! `debezium` (may only publish `cdc.>`; its password is kept in
//! `<data dir>/nats/debezium.password`, 0600, for the operator to give Debezium Server). If the child dies it is restarted with backoff on the same
//! ports, so clients reconnect by themselves; its state is part of `/health/ready`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

use crate::config::NatsSection;

/// The appliance's own NATS user.
const APPLIANCE_USER: &str = "openframe";
/// The user the `/ws/nats` proxy connects agents as.
const AGENTS_USER: &str = "agents";
/// The user CDC publishers (Debezium Server's NATS sink) connect as.
pub const DEBEZIUM_USER: &str = "debezium";
const DEBEZIUM_PASSWORD_FILE: &str = "debezium.password";

/// What the supervisor knows about the server now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsState {
    Starting,
    Up {
        pid: u32,
    },
    /// It exited (or never answered); the supervisor is restarting it.
    Down {
        problem: String,
    },
    /// Embedded mode, but no `nats-server` binary: NATS features are unavailable.
    NotInstalled {
        problem: String,
    },
    External,
}

/// The embedded server or the external one's address.
#[derive(Debug)]
pub struct Nats {
    /// `nats://127.0.0.1:PORT` (embedded) or the configured URL (external).
    url: String,
    /// Credentials for the appliance's own connection (embedded only).
    credentials: Option<(String, String)>,
    /// Credentials of the `/ws/nats` proxy's connections (embedded only).
    agent_credentials: Option<(String, String)>,
    websocket_port: Option<u16>,
    embedded: Option<Embedded>,
    state: Mutex<NatsState>,
    /// How many times the child has been restarted.
    restarts: Mutex<u32>,
}

#[derive(Debug)]
struct Embedded {
    binary: Option<PathBuf>,
    config_file: PathBuf,
    /// The running child's pid, so a later start can stop a server orphaned by a crash (it
    /// would hold the JetStream store).
    pid_file: PathBuf,
}

impl Nats {
    /// Prepares NATS from the config: for `embedded`, writes the server's config under
    /// `<data dir>/nats` and picks the ports. `None` when `mode = "off"`.
    pub fn prepare(config: &NatsSection, data_dir: &Path) -> anyhow::Result<Option<Nats>> {
        match config.mode.as_str() {
            "off" => Ok(None),
            "external" => Ok(Some(Nats {
                url: config.url.clone(),
                credentials: None,
                agent_credentials: None,
                websocket_port: None,
                embedded: None,
                state: Mutex::new(NatsState::External),
                restarts: Mutex::new(0),
            })),
            _ => Self::prepare_embedded(config, data_dir).map(Some),
        }
    }

    fn prepare_embedded(config: &NatsSection, data_dir: &Path) -> anyhow::Result<Nats> {
        use std::os::unix::fs::DirBuilderExt;
        let directory = data_dir.join("nats");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&directory)
            .map_err(|error| anyhow::anyhow!("cannot create {}: {error}", directory.display()))?;
        let client_port = pick_port(config.client_port)?;
        let websocket_port = pick_port(config.websocket_port)?;
        let password = crate::identity::crypto::random_token()?;
        let agents_password = crate::identity::crypto::random_token()?;
        let debezium_file = directory.join(DEBEZIUM_PASSWORD_FILE);
        let debezium_password = match std::fs::read_to_string(&debezium_file) {
            Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
            _ => {
                let secret = crate::identity::crypto::random_token()?;
                write_private(&debezium_file, &secret)?;
                secret
            }
        };
        let store = directory.join("jetstream");
        let text = format!(
            "# Written by openframe at every start; changes are overwritten.\n\
             listen: \"127.0.0.1:{client_port}\"\n\
             server_name: \"openframe\"\n\
             max_payload: 8MB\n\
             jetstream {{\n  store_dir: {store:?}\n}}\n\
             websocket {{\n  listen: \"127.0.0.1:{websocket_port}\"\n  no_tls: true\n}}\n\
             authorization {{\n  users = [\n\
             \x20   {{ user: \"{APPLIANCE_USER}\", password: \"{password}\" }}\n\
             \x20   {{ user: \"{AGENTS_USER}\", password: \"{agents_password}\", permissions: {{ publish: [\"machine.>\", \"_INBOX.>\", \"_HUB.sync\", \"$JS.API.INFO\", \"$JS.API.STREAM.INFO.>\", \"$JS.API.CONSUMER.>\", \"$JS.ACK.>\"], subscribe: [\"machine.>\", \"_INBOX.>\"] }} }}\n\
             \x20   {{ user: \"{DEBEZIUM_USER}\", password: \"{debezium_password}\", permissions: {{ publish: [\"cdc.>\", \"$JS.API.INFO\"], subscribe: [\"_INBOX.>\"] }} }}\n\
             \x20 ]\n}}\n"
        );
        let config_file = directory.join("nats.conf");
        let pid_file = directory.join("nats.pid");
        stop_orphan(&pid_file, &config_file);
        write_private(&config_file, &text)?;
        let binary = server_binary(config);
        Ok(Nats {
            url: format!("nats://127.0.0.1:{client_port}"),
            credentials: Some((APPLIANCE_USER.to_owned(), password)),
            agent_credentials: Some((AGENTS_USER.to_owned(), agents_password)),
            websocket_port: Some(websocket_port),
            embedded: Some(Embedded {
                binary,
                config_file,
                pid_file,
            }),
            state: Mutex::new(NatsState::Starting),
            restarts: Mutex::new(0),
        })
    }

    /// Where clients connect (no credentials in it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `/ws/nats` hub's connection: as the `agents` user on the embedded server (limited
    /// to what any machine may do), or with the external URL's own credentials.
    pub async fn connect_agents(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        let options = match &self.agent_credentials {
            Some((user, password)) => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            None => async_nats::ConnectOptions::new(),
        };
        options
            .name("openframe-agents")
            .retry_on_initial_connect()
            .max_reconnects(None)
            // Ten thousand agents' subscriptions share this connection.
            .subscription_capacity(1024)
            .client_capacity(16 * 1024)
            .connect(self.url.as_str())
            .await
    }

    /// The embedded server's WebSocket port on loopback (the gateway's `/ws/nats` target).
    pub fn websocket_port(&self) -> Option<u16> {
        self.websocket_port
    }

    pub fn state(&self) -> NatsState {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn restarts(&self) -> u32 {
        *self
            .restarts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_state(&self, state: NatsState) {
        *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state;
    }

    /// The appliance's connection; it reconnects by itself when the server comes back.
    pub async fn connect(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        let options = match &self.credentials {
            Some((user, password)) => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            None => async_nats::ConnectOptions::new(),
        };
        options
            .name("openframe")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(self.url.as_str())
            .await
    }

    /// Runs the embedded server until `stop`, restarting it with backoff when it exits.
    pub fn spawn_supervisor(
        self: &std::sync::Arc<Self>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let nats = self.clone();
        tokio::spawn(async move { nats.supervise(stop).await })
    }

    async fn supervise(&self, stop: CancellationToken) {
        let Some(embedded) = &self.embedded else {
            return;
        };
        let Some(binary) = &embedded.binary else {
            let problem = "nats-server is not installed (apt-get install -y nats-server, or set nats.server_path)".to_owned();
            tracing::warn!("{problem}; agents and CDC over NATS are unavailable");
            self.set_state(NatsState::NotInstalled { problem });
            return;
        };
        let mut failures: u32 = 0;
        loop {
            let started = Instant::now();
            let outcome = self.run_once(binary, embedded, &stop).await;
            if stop.is_cancelled() {
                let _ = std::fs::remove_file(&embedded.pid_file);
                return;
            }
            // A server that ran a while earns a fresh backoff.
            if started.elapsed() > Duration::from_secs(60) {
                failures = 0;
            }
            failures = failures.saturating_add(1);
            *self
                .restarts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
            let backoff =
                Duration::from_millis(250u64 << failures.min(6)).min(Duration::from_secs(10));
            tracing::warn!(problem = %outcome, retry_in_ms = backoff.as_millis(), "nats-server stopped; restarting it");
            self.set_state(NatsState::Down { problem: outcome });
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
        }
    }

    /// Starts the child, waits for it to answer, and returns why it ended.
    async fn run_once(
        &self,
        binary: &Path,
        embedded: &Embedded,
        stop: &CancellationToken,
    ) -> String {
        let mut child = match tokio::process::Command::new(binary)
            .arg("-c")
            .arg(&embedded.config_file)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(error) => return format!("cannot start {}: {error}", binary.display()),
        };
        let pid = child.id().unwrap_or(0);
        if let Err(error) = write_private(&embedded.pid_file, &pid.to_string()) {
            tracing::warn!(%error, "cannot record nats-server's pid");
        }
        if let Some(stderr) = child.stderr.take() {
            // nats-server logs to stderr; its lines join ours at debug level.
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(target: "nats_server", "{line}");
                }
            });
        }
        let address = self.url.trim_start_matches("nats://").to_owned();
        let answered = async {
            for _ in 0..200 {
                if tokio::net::TcpStream::connect(&address).await.is_ok() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        };
        tokio::select! {
            up = answered => {
                if up {
                    tracing::info!(pid, url = %self.url, "nats-server is up");
                    self.set_state(NatsState::Up { pid });
                } else {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return "nats-server did not accept connections within 10 s".into();
                }
            }
            status = child.wait() => {
                return format!("nats-server exited at start ({})", describe(status));
            }
        }
        tokio::select! {
            status = child.wait() => format!("nats-server exited ({})", describe(status)),
            () = stop.cancelled() => {
                terminate(&mut child, pid).await;
                "stopped".into()
            }
        }
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => error.to_string(),
    }
}

/// SIGTERM, then SIGKILL after 5 s: JetStream flushes its files on a clean stop.
async fn terminate(child: &mut tokio::process::Child, pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        tracing::warn!("nats-server did not stop within 5 s; killing it");
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// Stops a `nats-server` left running on this data dir by an appliance that died without
/// stopping it: the pid file names it, and its command line must name our config file.
fn stop_orphan(pid_file: &Path, config_file: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
    else {
        return;
    };
    let ours = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let wanted = config_file.as_os_str().as_encoded_bytes();
        cmdline.windows(wanted.len()).any(|window| window == wanted)
    });
    let Some(process) = rustix::process::Pid::from_raw(pid).filter(|_| ours) else {
        return;
    };
    tracing::warn!(pid, "stopping a nats-server left running by an earlier run");
    let _ = rustix::process::kill_process(process, rustix::process::Signal::TERM);
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = rustix::process::kill_process(process, rustix::process::Signal::KILL);
    std::thread::sleep(Duration::from_millis(100));
}

fn pick_port(configured: u16) -> anyhow::Result<u16> {
    if configured != 0 {
        return Ok(configured);
    }
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(probe.local_addr()?.port())
}

/// The `nats-server` the embedded mode runs: `nats.server_path`, or the first on PATH (then the
/// sbin folders Debian installs it in, which a non-root PATH may lack). `doctor` asks the same.
pub fn server_binary(config: &NatsSection) -> Option<PathBuf> {
    if !config.server_path.is_empty() {
        return Some(PathBuf::from(&config.server_path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|directory| directory.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    // The Debezium password must survive a crash whole: the operator configured it elsewhere.
    file.sync_all()?;
    Ok(())
}
