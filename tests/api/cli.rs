use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_openframe");

pub(crate) fn openframe(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// `openframe backup` of `data` into `out`, run to the end: the archive's manifest.
pub(crate) fn backup(data: &Path, out: &Path) -> openframe::backup::Manifest {
    let taken = openframe(&[
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        taken.status.success(),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    openframe::backup::unpack(out, None, &mut |_: &str| {})
        .unwrap_or_else(|error| panic!("{} is not a whole archive: {error:#}", out.display()))
}

/// The binary, as the tests run it: no `RUST_LOG` from the caller, no supervised NATS.
pub(crate) fn command() -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("RUST_LOG")
        .env("OPENFRAME_NATS__MODE", "off");
    command
}

/// The binary with writes capped at `kib` KiB per file: a soft `ulimit -f` with SIGXFSZ ignored,
/// so a write past it fails with EFBIG the way a full disk fails with ENOSPC. The hard limit is
/// left alone, so `prlimit` can lift the cap from a running process ("space is freed").
fn capped(kib: u64) -> Command {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -S -f {kib}; exec \"$0\" \"$@\""
        ))
        .arg(BIN);
    command
}

/// `openframe ARGS` with writes capped at `kib` KiB per file (see [`capped`]).
pub(crate) fn openframe_with_file_limit(kib: u64, args: &[&str]) -> Output {
    capped(kib)
        .args(args)
        .env_remove("RUST_LOG")
        .env("OPENFRAME_NATS__MODE", "off")
        .output()
        .unwrap()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `openframe serve` child process and the addresses it logged.
pub(crate) struct Served {
    child: Child,
    pub(crate) https: String,
    pub(crate) admin: String,
    log: std::sync::mpsc::Receiver<String>,
}

/// `openframe serve` without NATS (a killed `serve` would leave its nats-server behind until the
/// next start on the same data dir); [`serve_with_nats`] runs the default.
pub(crate) fn serve(data_dir: &Path) -> Served {
    serve_with(Command::new(BIN), data_dir, "off", None)
}

pub(crate) fn serve_with_nats(data_dir: &Path) -> Served {
    serve_with(Command::new(BIN), data_dir, "embedded", None)
}

/// [`serve`] with every file it writes capped at `kib` KiB (see [`capped`]).
pub(crate) fn serve_with_file_limit(data_dir: &Path, kib: u64) -> Served {
    serve_with(capped(kib), data_dir, "off", None)
}

/// `command` runs the binary; `notify`: the socket systemd would pass in `NOTIFY_SOCKET`.
fn serve_with(mut command: Command, data_dir: &Path, nats: &str, notify: Option<&Path>) -> Served {
    match notify {
        Some(socket) => command.env("NOTIFY_SOCKET", socket),
        None => command.env_remove("NOTIFY_SOCKET"),
    };
    let mut child = command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("RUST_LOG")
        .env("OPENFRAME_NATS__MODE", nats)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (lines, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // From here on the guard owns the child: a failing assertion kills and reaps it.
    let mut served = Served {
        child,
        https: String::new(),
        admin: String::new(),
        log,
    };
    loop {
        let line = served
            .log
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("serve must log that it is serving");
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if event["message"] == "openframe is serving" {
            served.https = event["https"].as_str().unwrap().to_owned();
            served.admin = event["admin"].as_str().unwrap().to_owned();
            return served;
        }
    }
}

impl Served {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit and returns the status with every log line printed. The lines are read
    /// until the pipe closes: the reader thread may still hold the last ones when the child has
    /// already exited.
    pub(crate) fn wait(&mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = self.child.wait().unwrap();
        (status, self.log.iter().collect())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn serve_stops_cleanly_on_sigterm_and_sigint_and_restarts_on_the_same_data_dir() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    for signal in ["TERM", "INT"] {
        // With the supervised nats-server: a clean stop stops it too.
        let mut served = serve_with_nats(&data);
        let ready = reqwest::get(format!("http://{}/health/ready", served.admin))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        let https_port = served.https.rsplit(':').next().unwrap().to_owned();
        let client = crate::helpers::trusting_client(&data.join("tls/cert.pem"));
        let page = client
            .get(format!("https://localhost:{https_port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);

        served.signal(signal);
        let (status, log) = served.wait();
        assert_eq!(status.code(), Some(0), "SIG{signal}: {log:?}");
        assert!(
            log.iter().any(|line| line.contains("stopped cleanly")),
            "SIG{signal}: {log:?}"
        );
        assert!(
            log.iter().any(|line| line.contains("nats-server is up")),
            "SIG{signal}: {log:?}"
        );
        // The supervised nats-server was stopped with it (its pid file goes when it does).
        assert!(!data.join("nats/nats.pid").exists(), "SIG{signal}");
    }
}

#[tokio::test]
async fn serve_tells_systemd_it_is_ready_once_it_accepts_requests_and_when_it_stops() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let socket = dir.path().join("notify.sock");
    let manager = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    manager
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut served = serve_with(Command::new(BIN), &data, "off", Some(&socket));
    let mut message = [0u8; 512];
    let read = manager.recv(&mut message).unwrap();
    let ready = String::from_utf8_lossy(&message[..read]).into_owned();
    assert!(
        ready.starts_with("READY=1\nSTATUS=serving https://"),
        "{ready}"
    );
    // Ready means ready: the HTTPS listener answers and the stores report ready.
    let https_port = served.https.rsplit(':').next().unwrap().to_owned();
    let client = crate::helpers::trusting_client(&data.join("tls/cert.pem"));
    let page = client
        .get(format!("https://localhost:{https_port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let health = reqwest::get(format!("http://{}/health/ready", served.admin))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    served.signal("TERM");
    let read = manager.recv(&mut message).unwrap();
    let stopping = String::from_utf8_lossy(&message[..read]).into_owned();
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
    let (status, log) = served.wait();
    assert_eq!(status.code(), Some(0), "{log:?}");
}

#[test]
fn a_second_serve_on_a_locked_data_dir_exits_at_once_with_one_line() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let mut first = serve(&data);
    let second = openframe(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(second.status.code(), Some(1));
    let stderr = stderr_of(&second);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("openframe: error: the data dir"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "in use by another openframe process (pid {})",
            first.child.id()
        )),
        "{stderr}"
    );
    first.signal("TERM");
    assert_eq!(first.wait().0.code(), Some(0));
}

#[test]
fn an_unknown_config_key_fails_with_the_key_and_the_file() {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("openframe.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_port = 9\n",
    )
    .unwrap();
    let output = openframe(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("openframe.toml") && stderr.contains("admin_port"),
        "{stderr}"
    );
    assert!(!dir.path().join("openframe-data").exists());
}

#[test]
fn version_prints_the_package_version() {
    let output = openframe(&["version"]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("openframe {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn healthcheck_exits_zero_when_ready_and_one_when_nothing_answers() {
    let app = crate::helpers::spawn_app().await;
    let url = app.admin_url("/health/ready");
    let output = tokio::task::spawn_blocking(move || openframe(&["healthcheck", "--url", &url]))
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("\"status\":\"ready\""));

    let cert = app.data_dir.join("tls/cert.pem");
    let https = app.https_url("/");
    let output = tokio::task::spawn_blocking(move || {
        openframe(&[
            "healthcheck",
            "--url",
            &https,
            "--ca-cert",
            cert.to_str().unwrap(),
        ])
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = openframe(&[
        "healthcheck",
        "--url",
        &format!("http://{closed}/health/ready"),
        "--timeout-seconds",
        "2",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains("did not answer"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn doctor_reports_each_check_and_fails_on_an_expired_operator_certificate() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let output = openframe(&["doctor", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let report = String::from_utf8(output.stdout).unwrap();
    for check in [
        "data dir:",
        "free disk:",
        "nats-server:",
        "certificate:",
        "serve:",
    ] {
        assert!(report.contains(check), "{check} missing from:\n{report}");
    }
    assert!(
        report.contains("serve generates a self-signed one"),
        "{report}"
    );

    let config = dir.path().join("config.toml");
    let cert = dir.path().join("expired.pem");
    std::fs::write(&cert, expired_certificate()).unwrap();
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            dir.path().join("k.pem").display()
        ),
    )
    .unwrap();
    let output = openframe(&[
        "doctor",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(
        report
            .lines()
            .any(|line| line.starts_with("FAIL  certificate:") && line.contains("expires in -")),
        "{report}"
    );
}

fn expired_certificate() -> String {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(400);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

fn json_of(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr_of(output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&output.stdout)))
}

#[test]
fn init_is_idempotent_and_the_identity_commands_print_json() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let args = [
        "init",
        "--data-dir",
        data,
        "--tenant",
        "acme",
        "--admin-email",
        "Owner@Acme.example",
        "--json",
    ];
    let first = json_of(&openframe(&args));
    assert_eq!(first["tenant_created"], true);
    assert_eq!(first["admin_created"], true);
    assert_eq!(first["admin_email"], "owner@acme.example");
    let password = first["generated_password"].as_str().unwrap().to_owned();
    assert!(password.len() >= 24, "{password}");
    let again = json_of(&openframe(&args));
    assert_eq!(
        (
            again["tenant_created"].as_bool(),
            again["admin_created"].as_bool()
        ),
        (Some(false), Some(false))
    );
    assert!(
        again.get("generated_password").is_none(),
        "a second init must not make a new password"
    );

    let created = json_of(&openframe(&[
        "tenant",
        "create",
        "--data-dir",
        data,
        "--id",
        "beta",
        "--name",
        "Beta MSP",
        "--json",
    ]));
    assert_eq!(
        created["issuer"].as_str().unwrap().rsplit('/').next(),
        Some("beta")
    );
    let duplicate = openframe(&[
        "tenant",
        "create",
        "--data-dir",
        data,
        "--id",
        "beta",
        "--name",
        "Again",
    ]);
    assert!(!duplicate.status.success());
    assert_eq!(
        stderr_of(&duplicate).trim(),
        "openframe: error: tenant \"beta\" already exists"
    );
    let listed = json_of(&openframe(&[
        "tenant",
        "list",
        "--data-dir",
        data,
        "--json",
    ]));
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "beta"]);

    let user = json_of(&openframe(&[
        "user",
        "create",
        "--data-dir",
        data,
        "--tenant",
        "beta",
        "--email",
        "tech@beta.example",
        "--password",
        "Str0ng!enough",
        "--role",
        "ADMIN",
        "--json",
    ]));
    assert_eq!(user["roles"], serde_json::json!(["ADMIN"]));
    let recovered = json_of(&openframe(&[
        "user",
        "set-password",
        "--data-dir",
        data,
        "--tenant",
        "beta",
        "--email",
        "tech@beta.example",
        "--password",
        "N3w-enough!",
        "--json",
    ]));
    assert_eq!(recovered["id"], user["id"]);
    let weak = openframe(&[
        "user",
        "create",
        "--data-dir",
        data,
        "--tenant",
        "beta",
        "--email",
        "x@beta.example",
        "--password",
        "weak",
    ]);
    assert_eq!(
        stderr_of(&weak).trim(),
        "openframe: error: password: must be at least 8 characters"
    );

    let client = json_of(&openframe(&[
        "client",
        "create",
        "--data-dir",
        data,
        "--tenant",
        "beta",
        "--name",
        "Portal",
        "--redirect-uri",
        "https://portal.example/cb",
        "--json",
    ]));
    assert!(client["client_id"].as_str().unwrap().starts_with("ofc_"));
    assert!(
        client["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("ofs_")
    );
    let public = json_of(&openframe(&[
        "client",
        "create",
        "--data-dir",
        data,
        "--tenant",
        "beta",
        "--name",
        "SPA",
        "--public",
        "--redirect-uri",
        "http://localhost:5173/cb",
        "--json",
    ]));
    assert_eq!(public["public"], true);
    assert_eq!(
        public["scopes"],
        serde_json::json!(["openid", "profile", "email", "offline_access"])
    );
    let narrow = json_of(&openframe(&[
        "client",
        "create",
        "--data-dir",
        data,
        "--tenant",
        "beta",
        "--name",
        "Reporting",
        "--grant",
        "client_credentials",
        "--scope",
        "email",
        "--json",
    ]));
    assert_eq!(narrow["scopes"], serde_json::json!(["email"]));
    let bad_scope = openframe(&[
        "client",
        "create",
        "--data-dir",
        data,
        "--tenant",
        "beta",
        "--name",
        "X",
        "--scope",
        "admin",
        "--grant",
        "client_credentials",
    ]);
    assert_eq!(
        stderr_of(&bad_scope).trim(),
        "openframe: error: scope: \"admin\" is not a scope; use openid, profile, email, offline_access"
    );
    assert!(public.get("client_secret").is_none());
    let unknown_tenant = openframe(&[
        "client",
        "create",
        "--data-dir",
        data,
        "--tenant",
        "nope",
        "--name",
        "X",
        "--grant",
        "client_credentials",
    ]);
    assert!(
        stderr_of(&unknown_tenant).contains("tenant \"nope\" does not exist"),
        "{}",
        stderr_of(&unknown_tenant)
    );
}

#[tokio::test]
async fn the_first_serve_bootstraps_an_owner_and_rotate_keys_works_while_serving() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let served = serve(&data);
    let password = std::fs::read_to_string(data.join("initial-admin-password")).unwrap();
    assert!(password.trim().len() >= 24);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data.join("initial-admin-password"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let https_port = served.https.rsplit(':').next().unwrap().to_owned();
    let client = crate::helpers::trusting_client(&data.join("tls/cert.pem"));
    let jwks_url = format!("https://localhost:{https_port}/sas/default/oauth2/jwks");
    let kids = |jwks: serde_json::Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let before = kids(
        client
            .get(&jwks_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(before.len(), 1);

    let rotated = json_of(&openframe(&[
        "tenant",
        "rotate-keys",
        "--data-dir",
        data.to_str().unwrap(),
        "--tenant",
        "default",
        "--json",
    ]));
    assert_eq!(rotated["previous_kid"], before[0]);
    let after = kids(
        client
            .get(&jwks_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(
        after.len(),
        2,
        "the running server publishes the key the CLI added"
    );
    assert!(after.contains(&rotated["new_kid"].as_str().unwrap().to_owned()));
    drop(served);

    // A restart does not bootstrap again.
    let _again = serve(&data);
    let listed = json_of(&openframe(&[
        "tenant",
        "list",
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn org_create_and_agent_secret_let_an_agent_register_with_a_running_appliance() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let served = serve(&data);
    let data_arg = data.to_str().unwrap();
    // Made by the CLI while the appliance runs: the appliance finds both on first use.
    let org = json_of(&openframe(&[
        "org",
        "create",
        "--data-dir",
        data_arg,
        "--tenant",
        "default",
        "--name",
        "  Acme Corp ",
        "--json",
    ]));
    assert_eq!(org["name"], "Acme Corp");
    let org_id = org["organizationId"].as_str().unwrap().to_owned();
    assert_eq!(org_id.len(), 36);
    let secret = json_of(&openframe(&[
        "tenant",
        "agent-secret",
        "--data-dir",
        data_arg,
        "--tenant",
        "default",
        "--json",
    ]));
    let key = secret["secret"].as_str().unwrap().to_owned();
    let again = json_of(&openframe(&[
        "tenant",
        "agent-secret",
        "--data-dir",
        data_arg,
        "--tenant",
        "default",
        "--json",
    ]));
    assert_eq!(again["secret"], key, "stable until rotated");
    let refused = openframe(&[
        "org",
        "create",
        "--data-dir",
        data_arg,
        "--tenant",
        "default",
        "--name",
        " ",
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr_of(&refused).contains("name"),
        "{}",
        stderr_of(&refused)
    );

    let https_port = served.https.rsplit(':').next().unwrap().to_owned();
    let client = crate::helpers::trusting_client(&data.join("tls/cert.pem"));
    let register = |key: String| {
        let request = client
            .post(format!(
                "https://localhost:{https_port}/clients/api/agents/register"
            ))
            .header("X-Initial-Key", key)
            .json(
                &serde_json::json!({"hostname": "ws-1", "organizationId": org_id,
                "agentVersion": "1.0.0", "osType": "MAC_OS"}),
            );
        async move { request.send().await.unwrap() }
    };
    // An unknown key makes the appliance reread the secrets, at most four times a second.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let answer = register(key.clone()).await;
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    let enrolled: serde_json::Value = answer.json().await.unwrap();
    assert!(enrolled["clientId"].as_str().unwrap().starts_with("agent_"));

    // Rotating from the CLI retires the old key for the running appliance within ten seconds
    // (its reread of known keys); the new one works at once.
    let rotated = json_of(&openframe(&[
        "tenant",
        "agent-secret",
        "--data-dir",
        data_arg,
        "--tenant",
        "default",
        "--rotate",
        "--json",
    ]));
    let new_key = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(register(new_key).await.status(), reqwest::StatusCode::OK);
}
