//! The tool proxy against a local tool: credentials injected upstream and never returned,
//! the allow-list enforced, the caller's own credentials kept back, WebSockets bridged.

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite;

use super::support::*;
use crate::helpers::{TestApp, spawn_app};

/// Collects every log line the appliance writes while a test runs on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn the_proxy_injects_the_credential_and_never_hands_it_back() {
    // Every log line at every level, from this (single-threaded) test runtime.
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let tool = upstream().await;
    register_tool(&app, "acme", &tool).await;

    let response = app
        .client
        .post(
            app.https_url("/tools/fleet/api/latest/fleet/hosts/7?per_page=5&%61uthorization=leak"),
        )
        .bearer_auth(&tenants.admin_a)
        .header("cookie", "theme=dark")
        .header("x-request-id", "trace-123")
        .header("content-type", "application/json")
        // Headers a tool might trust: never passed on.
        .header("x-forwarded-for", "10.6.6.6")
        .header("x-original-url", "/api/v1/fleet/users")
        .header("x-user-id", "someone-else")
        .body("{\"query\":\"os\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-request-id"], "trace-123");
    // The tool's cookie and connection headers stay at the edge; a header echoing the
    // credential is redacted.
    assert!(response.headers().get("set-cookie").is_none());
    assert_eq!(
        response.headers()["content-security-policy"],
        "sandbox; default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(
        response.headers()["x-echo-authorization"],
        "Bearer [REDACTED]"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "path": "/api/latest/fleet/hosts/7",
            "authorization": "Bearer [REDACTED]",
            "body": "{\"query\":\"os\"}",
        })
    );
    // What the tool received: its credential, the request, none of the caller's credentials.
    let seen = tool.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/api/latest/fleet/hosts/7");
    assert_eq!(seen.query, "per_page=5");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {TOOL_SECRET}").as_str())
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-original-url"), None);
    assert_eq!(seen.header("x-user-id"), None);
    assert_eq!(seen.header("x-request-id"), Some("trace-123"));
    assert_eq!(seen.header("cookie"), None);
    assert_eq!(seen.header("accept-encoding"), Some("identity"));
    let before = tool.seen.lock().unwrap().len();

    // Outside the allow-list, or spelled to escape it: refused, nothing forwarded.
    for (path, status, code) in [
        (
            "/tools/fleet/api/latest/fleetX/hosts",
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "/tools/fleet/api/v1/fleet/users",
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "/tools/fleet/api/latest/fleet/%5c..%5cadmin",
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "/tools/fleet/api/latest/fleet/..%2Fusers",
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        // The client resolves this to /tools/fleet/api/admin (raw dot segments: the edge test).
        (
            "/tools/fleet/api/latest/fleet/../../admin",
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "/tools/nosuch/api/latest/fleet/hosts",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ] {
        let response = app
            .client
            .get(app.https_url(path))
            .bearer_auth(&tenants.admin_a)
            .send()
            .await
            .unwrap();
        let (got, got_code, message) = error_of(response).await;
        assert_eq!(
            (got, got_code.as_str()),
            (status, code),
            "{path}: {message}"
        );
    }
    // The other tenant's administrator cannot reach this tenant's tool.
    let response = app
        .client
        .get(app.https_url("/tools/fleet/api/latest/fleet/hosts"))
        .bearer_auth(&tenants.admin_b)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.1, "not_found");
    assert_eq!(tool.seen.lock().unwrap().len(), before);

    // WebSocket: token in the query (browsers cannot set headers), messages both ways.
    let mut socket = websocket(
        &app,
        &format!("/ws/tools/fleet/ws/echo?authorization={}", tenants.admin_a),
    )
    .await;
    socket
        .send(tungstenite::Message::text("hello"))
        .await
        .unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(
        reply.to_text().unwrap(),
        "echo:hello|auth:Bearer [REDACTED]"
    );
    socket.close(None).await.unwrap();

    // The health check reports without passing anything of the tool's answer on.
    let health: serde_json::Value = app
        .client
        .get(app.https_url("/tools/fleet/health"))
        .bearer_auth(&tenants.admin_a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["healthy"], true);
    assert_eq!(health["upstreamStatus"], 200);

    // An unreachable tool: 502 with a clear code.
    app.state
        .gateway
        .tools
        .set(
            &tenant("acme"),
            openframe::gateway::tools::NewTool {
                id: "down".into(),
                name: "Down".into(),
                tool_type: "MESHCENTRAL".into(),
                api_url: "http://127.0.0.1:9".into(),
                ws_url: None,
                credential: Some((
                    openframe::gateway::tools::CredentialKind::Header,
                    "x-api-token".into(),
                    TOOL_SECRET.into(),
                )),
                keep_credential: false,
                allowed_paths: vec!["/".into()],
                agent_allowed_paths: Vec::new(),
                ca_file: String::new(),
                tls_verify: true,
                health_path: "/".into(),
                health_check_seconds: 0,
            },
        )
        .await
        .unwrap();
    let response = app
        .client
        .get(app.https_url("/tools/down/anything"))
        .bearer_auth(&tenants.admin_a)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_GATEWAY, "upstream_unavailable")
    );

    // The credential appears nowhere in the logs, though the logs did record the traffic.
    let written = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        written.contains("a tool request failed"),
        "the capture saw nothing"
    );
    assert!(!written.contains(TOOL_SECRET), "the credential was logged");
    // Nor in the stored registration.
    let stored = app
        .state
        .storage
        .documents
        .get(
            &tenant("acme"),
            &openframe_storage::model::Collection::parse("integrated_tools").unwrap(),
            &openframe_storage::model::DocumentId::parse("fleet").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.body.to_string().contains(TOOL_SECRET));
}

#[tokio::test]
async fn agents_reach_tools_through_their_own_paths() {
    let app = spawn_app().await;
    let _tenants = two_tenants(&app).await;
    let tool = upstream().await;
    register_tool(&app, "acme", &tool).await;
    let agent = agent_token(&app, "acme", "machine-9").await;
    let response = app
        .client
        .get(app.https_url("/tools/agent/fleet/api/latest/fleet/device/ping"))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["path"], "/api/latest/fleet/device/ping");
    // An agent WebSocket (MeshCentral's agent.ashx in real life) with the bearer header.
    let mut socket = websocket_with(&app, "/ws/tools/agent/fleet/ws/echo", Some(&agent)).await;
    socket
        .send(tungstenite::Message::text("agent"))
        .await
        .unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(
        reply.to_text().unwrap(),
        "echo:agent|auth:Bearer [REDACTED]"
    );
    // An agent of another tenant has no such tool.
    let foreign = agent_token(&app, "globex", "machine-1").await;
    let response = app
        .client
        .get(app.https_url("/tools/agent/fleet/api/latest/fleet/device/ping"))
        .bearer_auth(&foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.1, "not_found");
    // Without a token the upgrade is refused before anything is bridged.
    let refused = try_websocket(&app, "/ws/tools/agent/fleet/ws/echo", None).await;
    match refused {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("expected a 401, got {other:?}"),
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn websocket(app: &TestApp, path: &str) -> Socket {
    websocket_with(app, path, None).await
}

async fn websocket_with(app: &TestApp, path: &str, bearer: Option<&str>) -> Socket {
    try_websocket(app, path, bearer).await.unwrap()
}

async fn try_websocket(
    app: &TestApp,
    path: &str,
    bearer: Option<&str>,
) -> Result<Socket, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let tls = tls_connect(app).await;
    let url = format!("wss://localhost:{}{path}", app.https_addr.port());
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = bearer {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    tokio_tungstenite::client_async(request, tls)
        .await
        .map(|(socket, _)| socket)
}
