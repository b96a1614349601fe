use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openframe::config::{CliOverrides, Config};
use openframe::startup::{AppState, Application};
use openframe_storage::Clock;
use openframe_storage::model::{ManualClock, SystemClock};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running appliance and what a test needs to talk to it.
pub(crate) struct TestApp {
    pub(crate) https_addr: SocketAddr,
    pub(crate) admin_addr: SocketAddr,
    pub(crate) data_dir: PathBuf,
    /// Trusts the appliance's self-signed certificate, and nothing else.
    pub(crate) client: reqwest::Client,
    pub(crate) plain: reqwest::Client,
    /// The running appliance's stores and state, to seed and inspect stored data.
    pub(crate) state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// Keeps the data dir alive until the test ends (when the test owns it).
    _dir: Option<TempDir>,
}

/// Loopback ports chosen by the OS, so tests run in parallel. No NATS: the tests that need the
/// supervised nats-server ask for it ([`with_nats`]) and stop the appliance cleanly, so the child
/// never outlives the test.
pub(crate) fn test_config(data_dir: &Path) -> Config {
    let flags = CliOverrides {
        data_dir: Some(data_dir.to_owned()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        log_format: None,
    };
    let mut config = Config::load(None, Vec::new(), &flags).unwrap();
    config.nats.mode = "off".into();
    // Alerts would be extra log entries in tests that count them; the detection tests turn it on.
    config.detection.enabled = false;
    config
}

/// `config` with the embedded, supervised nats-server (the product's default).
pub(crate) fn with_nats(mut config: Config) -> Config {
    config.nats.mode = "embedded".into();
    config
}

pub(crate) async fn spawn_app() -> TestApp {
    let dir = TempDir::new().unwrap();
    let mut app = spawn_app_in(&dir.path().join("data")).await;
    app._dir = Some(dir);
    app
}

pub(crate) async fn spawn_app_in(data_dir: &Path) -> TestApp {
    spawn_with(test_config(data_dir)).await
}

pub(crate) async fn spawn_with(config: Config) -> TestApp {
    spawn_with_clock(config, Arc::new(SystemClock)).await
}

/// An appliance whose clock the test controls (token lifetimes, key rotation, throttling).
pub(crate) async fn spawn_at(clock: &ManualClock) -> TestApp {
    let dir = TempDir::new().unwrap();
    let config = test_config(&dir.path().join("data"));
    let mut app = spawn_with_clock(config, Arc::new(clock.clone())).await;
    app._dir = Some(dir);
    app
}

pub(crate) async fn spawn_with_clock(config: Config, clock: Arc<dyn Clock>) -> TestApp {
    let data_dir = config.storage.data_dir.clone();
    let served_cert = openframe::tls::CertificateFiles::resolve(&config.tls, &data_dir).cert;
    let application = Application::build(config, clock).await.unwrap();
    let (https_addr, admin_addr) = (application.https_addr(), application.admin_addr());
    let state = application.state().clone();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        https_addr,
        admin_addr,
        client: trusting_client(&served_cert),
        plain: reqwest::Client::new(),
        data_dir,
        state,
        shutdown: Some(shutdown),
        server: Some(server),
        _dir: None,
    }
}

/// Like [`trusting_client`], but returns redirects instead of following them, as a test of a
/// browser flow must see each hop.
pub(crate) fn browser_client(cert: &Path) -> reqwest::Client {
    trusting_builder(cert)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// An HTTPS client whose only trust anchor is `cert`: if the appliance served anything else, or a
/// certificate without the name we connect to, requests fail.
pub(crate) fn trusting_client(cert: &Path) -> reqwest::Client {
    trusting_builder(cert).build().unwrap()
}

fn trusting_builder(cert: &Path) -> reqwest::ClientBuilder {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(tls)
}

impl TestApp {
    pub(crate) fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https_addr.port())
    }

    pub(crate) fn cert_path(&self) -> PathBuf {
        self.data_dir.join("tls").join("cert.pem")
    }

    pub(crate) fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    pub(crate) async fn ready(&self) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self
            .plain
            .get(self.admin_url("/health/ready"))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// Triggers shutdown and waits until `run_until_stopped` has returned.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.server.take() {
            Some(server) => server.await.unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
