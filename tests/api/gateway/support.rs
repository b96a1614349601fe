//! What the gateway tests share: two seeded tenants with their credentials, API keys made
//! through the API, and a local upstream tool (HTTP and WebSocket) that records what reached it.

use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use openframe::gateway::tools::{CredentialKind, NewTool};
use openframe_storage::model::TenantId;
use reqwest::StatusCode;

use crate::helpers::TestApp;
use crate::identity::support::{Seeded, owner_token, seed};

pub(crate) const TOOL_SECRET: &str = "fleet-api-token-7f3a9c1e5b";

/// Two tenants, each with an OWNER signed in through the appliance's own browser client.
pub(crate) struct Tenants {
    pub(crate) a: Seeded,
    pub(crate) b: Seeded,
    pub(crate) admin_a: String,
    pub(crate) admin_b: String,
}

pub(crate) async fn two_tenants(app: &TestApp) -> Tenants {
    let a = seed(app, "acme").await;
    let b = seed(app, "globex").await;
    let admin_a = owner_token(app, &a).await;
    let admin_b = owner_token(app, &b).await;
    Tenants {
        a,
        b,
        admin_a,
        admin_b,
    }
}

pub(crate) fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

/// An agent token of `tenant`: a machine named `hostname` registers with the tenant's
/// registration secret and authenticates with its client credentials.
pub(crate) async fn agent_token(app: &TestApp, tenant_id: &str, hostname: &str) -> String {
    let agents = &app.state.management.agents;
    let tenant = tenant(tenant_id);
    app.state
        .inventory
        .put_organization(
            &tenant,
            openframe::inventory::Organization::named("org-main", "Main office"),
        )
        .await
        .unwrap();
    let secret = agents.registration_secret(&tenant).await.unwrap().secret;
    let registration = serde_json::from_value(serde_json::json!({
        "hostname": hostname, "organizationId": "org-main", "agentVersion": "1.0.0", "osType": "LINUX",
    }))
    .unwrap();
    let enrolled = agents.register(&secret, registration).await.unwrap();
    agents
        .client_credentials(&enrolled.client_id, &enrolled.client_secret)
        .await
        .unwrap()
        .access_token
}

/// Creates an API key through `POST /api/api-keys`; returns (key id, full key, answer).
pub(crate) async fn create_key(
    app: &TestApp,
    admin_token: &str,
    body: serde_json::Value,
) -> (String, String, serde_json::Value) {
    let response = app
        .client
        .post(app.https_url("/api/api-keys"))
        .bearer_auth(admin_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let answer: serde_json::Value = response.json().await.unwrap();
    let id = answer["apiKey"]["id"].as_str().unwrap().to_owned();
    let full = answer["fullKey"].as_str().unwrap().to_owned();
    (id, full, answer)
}

/// One request as the upstream tool saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A stand-in for a tool's API on loopback (plain HTTP): it records every request, echoes what
/// it got (credential included, as a careless tool might) and serves a WebSocket echo.
pub(crate) struct Upstream {
    pub(crate) base: String,
    pub(crate) ws_base: String,
    pub(crate) seen: Arc<Mutex<Vec<Seen>>>,
}

pub(crate) async fn upstream() -> Upstream {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let router = axum::Router::new()
        .route("/ws/echo", axum::routing::get(ws_echo))
        .fallback(record)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Upstream {
        base: format!("http://{address}"),
        ws_base: format!("ws://{address}"),
        seen,
    }
}

async fn record(State(seen): State<Arc<Mutex<Vec<Seen>>>>, request: Request) -> impl IntoResponse {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let entry = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("?").to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    seen.lock().unwrap().push(entry.clone());
    let authorization = entry.header("authorization").unwrap_or_default().to_owned();
    let echo = serde_json::json!({
        "path": entry.path,
        "authorization": authorization,
        "body": entry.body,
    });
    (
        [
            ("x-echo-authorization", authorization.clone()),
            ("set-cookie", "tool_session=abc; Path=/".to_owned()),
            ("connection", "keep-alive".to_owned()),
        ],
        axum::Json(echo),
    )
}

async fn ws_echo(upgrade: WebSocketUpgrade, request: axum::http::HeaderMap) -> impl IntoResponse {
    let authorization = request
        .get("authorization")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    upgrade.on_upgrade(move |socket: WebSocket| async move {
        let mut socket = socket;
        while let Some(Ok(message)) = socket.recv().await {
            if let Message::Text(text) = message {
                let reply = format!("echo:{}|auth:{authorization}", text.as_str());
                if socket.send(Message::text(reply)).await.is_err() {
                    break;
                }
            }
        }
    })
}

/// Registers the upstream as tool `fleet` of `tenant_id`, its credential a bearer token.
pub(crate) async fn register_tool(app: &TestApp, tenant_id: &str, upstream: &Upstream) {
    app.state
        .gateway
        .tools
        .set(
            &tenant(tenant_id),
            NewTool {
                id: "fleet".into(),
                name: "Fleet MDM".into(),
                tool_type: "FLEET_MDM".into(),
                api_url: upstream.base.clone(),
                ws_url: Some(upstream.ws_base.clone()),
                credential: Some((
                    CredentialKind::BearerToken,
                    String::new(),
                    TOOL_SECRET.into(),
                )),
                keep_credential: false,
                allowed_paths: vec![
                    "/api/latest/fleet".into(),
                    "/ws/echo".into(),
                    "/healthz".into(),
                ],
                // Agents get the device endpoints and the socket, not the admin API.
                agent_allowed_paths: vec!["/api/latest/fleet/device".into(), "/ws/echo".into()],
                ca_file: String::new(),
                tls_verify: true,
                health_path: "/healthz".into(),
                health_check_seconds: 0,
            },
        )
        .await
        .unwrap();
}

/// The `{code, message}` error body and status.
pub(crate) async fn error_of(response: reqwest::Response) -> (StatusCode, String, String) {
    crate::identity::support::api_error(response).await
}

/// `token` with one claim changed and the signature kept: what a forger can make.
pub(crate) fn with_claim(token: &str, name: &str, value: &str) -> String {
    use openframe::identity::crypto::{b64url, b64url_decode};
    let mut parts = token.split('.');
    let header = parts.next().unwrap();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64url_decode(parts.next().unwrap()).unwrap()).unwrap();
    claims[name] = value.into();
    let signature = parts.next().unwrap();
    format!(
        "{header}.{}.{signature}",
        b64url(claims.to_string().as_bytes())
    )
}

/// A TLS connection to the appliance that trusts only its certificate.
pub(crate) async fn tls_connect(
    app: &TestApp,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(app.cert_path()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(app.https_addr)
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}
