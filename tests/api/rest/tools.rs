//! `/api/tools`: registering a tool over REST, Fleet's post-save hook (sign-in for an API token)
//! against a stand-in for Fleet's REST API (Fleet itself cannot run here; this fake answers only
//! the two calls the appliance makes), the proxy using the stored token, the health monitor
//! logging a tool going down and back up (clock pinned), bad input, the other tenant, and the
//! audit trail keeping no secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use openframe_storage::Clock;
use openframe_storage::model::{ManualClock, SystemClock};
use reqwest::Method;
use serde_json::{Value, json};

use super::call;
use crate::gateway::support::two_tenants;
use crate::helpers::{TestApp, spawn_with_clock, test_config};
use crate::stream::support::{rows, settle};

const FLEET_PASSWORD: &str = "fleet-pass-4711";
const FLEET_TOKEN: &str = "fleet-api-token-0123456789";

/// What the fake Fleet answers `GET /healthz` with, the hosts it knows (`(id, osquery
/// UUID)`), and the last Authorization header it saw.
#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) health: AtomicU16,
    pub(crate) hosts: std::sync::Mutex<Vec<(u64, String)>>,
    pub(crate) authorization: std::sync::Mutex<String>,
}

/// The fake Fleet: `POST /api/v1/fleet/login`, `GET /healthz` (answering `health`'s status),
/// and `GET /api/latest/fleet/hosts[?query=…]`, which lists the known hosts matching the query
/// and echoes the Authorization header it received.
pub(crate) async fn fake_fleet(fake: Arc<Fake>) -> String {
    async fn login(Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
        if body["email"] == "admin@fleet.example" && body["password"] == FLEET_PASSWORD {
            (StatusCode::OK, Json(json!({"token": FLEET_TOKEN})))
        } else {
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"message": "Authentication failed"})),
            )
        }
    }
    async fn healthz(State(fake): State<Arc<Fake>>) -> StatusCode {
        StatusCode::from_u16(fake.health.load(Ordering::SeqCst)).unwrap()
    }
    async fn hosts(
        State(fake): State<Arc<Fake>>,
        Query(query): Query<std::collections::HashMap<String, String>>,
        headers: HeaderMap,
    ) -> Json<Value> {
        let authorization = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        *fake.authorization.lock().unwrap() = authorization.clone();
        let wanted = query.get("query").cloned().unwrap_or_default();
        let hosts: Vec<Value> = fake
            .hosts
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, uuid)| uuid.contains(&wanted))
            .map(|(id, uuid)| json!({"id": id, "uuid": uuid, "hostname": "fleet-host"}))
            .collect();
        Json(json!({"hosts": hosts, "authorization": authorization}))
    }
    let router = axum::Router::new()
        .route("/api/v1/fleet/login", post(login))
        .route("/healthz", get(healthz))
        .route("/api/latest/fleet/hosts", get(hosts))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

fn fleet_tool(base: &str) -> Value {
    json!({"name": "Fleet MDM", "toolType": "FLEET_MDM", "apiUrl": base,
           "allowedPaths": ["/api/latest/fleet"], "healthPath": "/healthz", "healthCheckSeconds": 10,
           "fleetLogin": {"email": "admin@fleet.example", "password": FLEET_PASSWORD}})
}

/// Waits until the tool's latest health report says `healthy`; fails after 15 s.
async fn health_is(app: &TestApp, token: &str, healthy: bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, tool) =
            call(app, token, Method::GET, "/api/tools/fleetmdm-server", None).await;
        assert_eq!(status, 200, "{tool}");
        if tool["health"]["healthy"] == healthy {
            return tool;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health never became {healthy}: {tool}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The unified log's tool events of a tenant: (event type, summary).
async fn tool_events(app: &TestApp, tenant: &str) -> Vec<(String, String)> {
    settle(app).await;
    let mut events: Vec<(String, String)> = rows(app, tenant)
        .await
        .into_iter()
        .filter(|row| row.tool_type == "OPENFRAME")
        .map(|row| (row.event_type, row.summary))
        .collect();
    events.sort();
    events
}

#[tokio::test]
async fn a_fleet_tool_is_registered_with_its_api_token_proxied_and_health_checked() {
    let dir = tempfile::TempDir::new().unwrap();
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let mut app = spawn_with_clock(
        test_config(&dir.path().join("data")),
        Arc::new(clock.clone()),
    )
    .await;
    let tenants = two_tenants(&app).await;
    let admin = tenants.admin_a.clone();
    let fake = Arc::new(Fake::default());
    fake.health.store(200, Ordering::SeqCst);
    let fleet = fake_fleet(fake.clone()).await;

    // Bad input is refused with the field named, and nothing is stored.
    let path = "/api/tools/fleetmdm-server";
    let mut wrong_password = fleet_tool(&fleet);
    wrong_password["fleetLogin"]["password"] = json!("guess");
    for (body, field) in [
        (wrong_password, "fleetLogin"),
        (
            json!({"name": "x", "toolType": "NOPE", "apiUrl": fleet, "allowedPaths": ["/"]}),
            "toolType",
        ),
        (
            json!({"name": "x", "toolType": "MESHCENTRAL", "apiUrl": "ftp://mesh.example", "allowedPaths": ["/"]}),
            "apiUrl",
        ),
        (
            json!({"name": "x", "toolType": "MESHCENTRAL", "apiUrl": fleet, "allowedPaths": ["/"], "healthCheckSeconds": 5}),
            "healthCheckSeconds",
        ),
        (
            json!({"name": "x", "toolType": "MESHCENTRAL", "apiUrl": fleet, "allowedPaths": ["/"],
                "fleetLogin": {"email": "a@b.example", "password": "p"}}),
            "fleetLogin",
        ),
        (
            json!({"name": "x", "toolType": "FLEET_MDM", "apiUrl": fleet, "allowedPaths": ["/"],
                "credential": {"kind": "BEARER_TOKEN", "secret": "t"},
                "fleetLogin": {"email": "a@b.example", "password": "p"}}),
            "credential",
        ),
        (
            json!({"name": "x", "toolType": "FLEET_MDM", "apiUrl": fleet, "allowedPaths": ["/"], "caFile": "/etc/shadow"}),
            "caFile",
        ),
    ] {
        let (status, error) = call(&app, &admin, Method::PUT, path, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["code"], "invalid_input", "{error}");
        assert!(
            error["message"].as_str().unwrap().contains(field),
            "{body}: {error}"
        );
    }
    let (status, _) = call(&app, &admin, Method::GET, path, None).await;
    assert_eq!(status, 404, "nothing was stored");

    // Registered: Fleet's hook signed in and stored the API token, which no answer shows.
    let (status, tool) = call(&app, &admin, Method::PUT, path, Some(fleet_tool(&fleet))).await;
    assert_eq!(status, 201, "{tool}");
    assert_eq!(tool["hasCredentials"], true);
    assert_eq!(tool["credentialKind"], "BEARER_TOKEN");
    assert_eq!(tool["healthCheckSeconds"], 10);
    assert!(!tool.to_string().contains(FLEET_TOKEN), "{tool}");
    let hosts = app
        .client
        .get(app.https_url("/tools/fleetmdm-server/api/latest/fleet/hosts"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(hosts.status(), 200);
    let text = hosts.text().await.unwrap();
    // The proxy injected the token Fleet issued, and redacted it from what it relays back.
    let echoed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(echoed["authorization"], "Bearer [REDACTED]", "{text}");
    assert_eq!(
        *fake.authorization.lock().unwrap(),
        format!("Bearer {FLEET_TOKEN}")
    );

    // The monitor checks it by itself; down is logged once, and so is the recovery.
    let checked = health_is(&app, &admin, true).await;
    assert_eq!(checked["health"]["upstreamStatus"], 200);
    fake.health.store(503, Ordering::SeqCst);
    clock.advance_ms(10_000);
    let down = health_is(&app, &admin, false).await;
    assert_eq!(down["health"]["message"], "the tool answered HTTP 503");
    clock.advance_ms(10_000);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    fake.health.store(200, Ordering::SeqCst);
    clock.advance_ms(10_000);
    health_is(&app, &admin, true).await;
    let graph = super::super::graphql::support::data(
        &app,
        &admin,
        "{ integratedTools { tools { key healthCheckInterval hasCredentials health { healthy upstreamStatus } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        graph["integratedTools"]["tools"],
        json!([{"key": "fleetmdm-server", "healthCheckInterval": 10, "hasCredentials": true,
                "health": {"healthy": true, "upstreamStatus": 200}}])
    );

    // A change without the credential keeps it; clearCredential removes it.
    let mut renamed = fleet_tool(&fleet);
    renamed.as_object_mut().unwrap().remove("fleetLogin");
    renamed["name"] = json!("Fleet (HQ)");
    let (status, tool) = call(&app, &admin, Method::PUT, path, Some(renamed.clone())).await;
    assert_eq!(status, 200, "{tool}");
    assert_eq!(
        (tool["name"].clone(), tool["hasCredentials"].clone()),
        (json!("Fleet (HQ)"), json!(true))
    );
    renamed["clearCredential"] = json!(true);
    let (_, tool) = call(&app, &admin, Method::PUT, path, Some(renamed)).await;
    assert_eq!(tool["hasCredentials"], false);

    // The other tenant sees and removes nothing.
    let other = &tenants.admin_b;
    let (_, listed) = call(&app, other, Method::GET, "/api/tools", None).await;
    assert_eq!(listed, json!({"tools": []}));
    let (status, _) = call(&app, other, Method::DELETE, path, None).await;
    assert_eq!(status, 404);

    let (status, _) = call(&app, &admin, Method::DELETE, path, None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&app, &admin, Method::GET, path, None).await;
    assert_eq!(status, 404);

    // The unified log tells the story; the other tenant's log has none of it.
    let events = tool_events(&app, "acme").await;
    let types: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        types,
        [
            "INTEGRATION_ADDED",
            "INTEGRATION_DELETED",
            "INTEGRATION_UPDATED",
            "INTEGRATION_UPDATED",
            "SYSTEM_ERROR",
            "SYSTEM_MONITORING"
        ],
        "{events:?}"
    );
    let down = &events[4].1;
    assert!(
        down.contains("fleetmdm-server") && down.contains("503"),
        "{down}"
    );
    assert!(tool_events(&app, "globex").await.is_empty());

    // The audit trail has every change and neither the password nor the token.
    let (_, audit) = call(
        &app,
        &admin,
        Method::GET,
        "/api/audit?targetType=IntegratedTool",
        None,
    )
    .await;
    let text = audit.to_string();
    assert!(text.contains("fleetmdm-server"), "{text}");
    assert!(
        !text.contains(FLEET_PASSWORD) && !text.contains(FLEET_TOKEN),
        "{text}"
    );
    app.stop().await.unwrap();
}
