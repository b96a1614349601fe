use std::path::PathBuf;
use std::time::Duration;

use openframe::inventory::{Machine, Organization, ToolConnection};
use openframe_storage::TenantId;
use openframe_storage::analytics::{LogFilter, LogRow};
use openframe_storage::search::{DocumentKind, SearchQuery};
use reqwest::StatusCode;

use crate::gateway::support::{create_key, tenant};
use crate::helpers::TestApp;

/// A fixture from the shared, read-only fixtures folder: `../shared/fixtures` beside the clone,
/// or the folder `OPENFRAME_FIXTURES` names.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let folder = std::env::var_os("OPENFRAME_FIXTURES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
        PathBuf::from,
    );
    let path = folder.join(name);
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error} (the shared fixtures live in ../shared/fixtures beside the clone; set OPENFRAME_FIXTURES to use another folder)",
            path.display()
        )
    })
}

pub(crate) const MESH_WS_001: &str = "node//QmF4dGlvbkFnZW50MDAxQUJDREVGRzEyMzQ1Njc4OTA";
pub(crate) const MESH_SRV_01: &str = "node//QmF4dGlvbkFnZW50MDAyWllYV1ZVVFM5ODc2NTQzMjE";

/// Acme's customer and three devices, connected to MeshCentral and Fleet under the ids the
/// fixtures use.
pub(crate) async fn seed_inventory(app: &TestApp, tenant_id: &str) {
    let tenant = tenant(tenant_id);
    let inventory = &app.state.inventory;
    inventory
        .put_organization(&tenant, Organization::named("org-acme", "Acme Corp"))
        .await
        .unwrap();
    for (machine, hostname) in [
        ("m-ws-001", "ACME-WS-001"),
        ("m-srv-01", "ACME-SRV-01"),
        ("m-mbp-07", "ACME-MBP-07"),
    ] {
        inventory
            .put_machine(
                &tenant,
                Machine {
                    machine_id: machine.into(),
                    hostname: hostname.into(),
                    organization_id: Some("org-acme".into()),
                    status: "ONLINE".into(),
                    device_type: "DESKTOP".into(),
                    os_type: "WINDOWS".into(),
                    tags: vec!["site:hq".into()],
                    ..Machine::default()
                },
            )
            .await
            .unwrap();
    }
    for (machine, tool_type, agent_tool_id) in [
        ("m-ws-001", "MESHCENTRAL", MESH_WS_001),
        ("m-srv-01", "MESHCENTRAL", MESH_SRV_01),
        ("m-ws-001", "FLEET_MDM", "41"),
        ("m-mbp-07", "FLEET_MDM", "57"),
    ] {
        inventory
            .connect_tool(
                &tenant,
                ToolConnection {
                    machine_id: machine.into(),
                    tool_type: tool_type.into(),
                    agent_tool_id: agent_tool_id.into(),
                    status: "CONNECTED".into(),
                    connected_at: 1,
                },
            )
            .await
            .unwrap();
    }
}

/// An API key of the tenant whose admin token is given, with only the `ingest` scope.
pub(crate) async fn ingest_key(app: &TestApp, admin_token: &str) -> String {
    let (_, key, _) = create_key(
        app,
        admin_token,
        serde_json::json!({"name": "debezium", "scopes": ["ingest"]}),
    )
    .await;
    key
}

/// Posts `body` to the ingest endpoint as NDJSON; returns the status and the JSON answer.
pub(crate) async fn ingest(
    app: &TestApp,
    key: &str,
    message_type: &str,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    ingest_as(app, key, message_type, "application/x-ndjson", body).await
}

pub(crate) async fn ingest_as(
    app: &TestApp,
    key: &str,
    message_type: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let response = app
        .client
        .post(app.https_url("/ingest/v1/debezium"))
        .header("x-api-key", key)
        .header("message-type", message_type)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Waits until the pipeline has processed everything accepted so far and checkpointed, so every
/// store shows it. Fails the test after 20 s.
pub(crate) async fn settle(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if app.state.stream.is_idle() {
            app.state.storage.search.refresh().await.unwrap();
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pipeline did not settle; backlog {}",
            app.state.stream.backlog()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every log row of the tenant, newest first.
pub(crate) async fn rows(app: &TestApp, tenant_id: &str) -> Vec<LogRow> {
    let tenant = TenantId::parse(tenant_id).unwrap();
    app.state
        .storage
        .analytics
        .query_logs(&tenant, &LogFilter::default(), None, 1000)
        .await
        .unwrap()
}

/// The row whose summary starts with `summary`; fails when there is not exactly one.
pub(crate) fn row<'a>(rows: &'a [LogRow], summary: &str) -> &'a LogRow {
    let found: Vec<&LogRow> = rows
        .iter()
        .filter(|row| row.summary.starts_with(summary))
        .collect();
    assert_eq!(found.len(), 1, "rows starting {summary:?}: {found:#?}");
    found[0]
}

/// Readiness once the supervised nats-server is up (it starts beside the appliance). Fails the
/// test after 10 s.
pub(crate) async fn ready_with_nats_up(app: &TestApp) -> (StatusCode, serde_json::Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app.ready().await;
        if body["stores"]["nats"]["status"] == "up" {
            return (status, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nats never came up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET /api/stream/dead-letters?limit=10` as an admin of a tenant.
pub(crate) async fn dead_letters(app: &TestApp, admin_token: &str) -> serde_json::Value {
    app.client
        .get(app.https_url("/api/stream/dead-letters?limit=10"))
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The ids of the tenant's log documents matching `text` in the search index.
pub(crate) async fn search(
    app: &crate::helpers::TestApp,
    tenant_id: &str,
    text: &str,
) -> Vec<String> {
    app.state
        .storage
        .search
        .search(
            &tenant(tenant_id),
            &SearchQuery {
                text: text.into(),
                kind: Some(DocumentKind::Log),
                from: None,
                to: None,
                limit: 100,
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|hit| hit.id)
        .collect()
}
