//! What the agent tests share: registration as OpenFrame's agent does it (HTTP, camelCase), the
//! token endpoint, and a test agent that speaks NATS over `wss://…/ws/nats` with async-nats.

use std::time::Duration;

use openframe_storage::model::TenantId;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::helpers::TestApp;

pub(crate) const ORG: &str = "org-hq";

/// The tenant's registration secret, as its administrator sees it; also seeds the
/// organization agents register into.
pub(crate) async fn registration_secret(
    app: &TestApp,
    tenant_id: &str,
    admin_token: &str,
) -> String {
    app.state
        .inventory
        .put_organization(
            &TenantId::parse(tenant_id).unwrap(),
            openframe::inventory::Organization::named(ORG, "Head office"),
        )
        .await
        .unwrap();
    let response = app
        .client
        .get(app.https_url("/api/agents/registration-secret"))
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert!(
        body["installCommand"]
            .as_str()
            .unwrap()
            .contains(&format!("--initial-key {secret}")),
        "{body}"
    );
    secret
}

/// OpenFrame's `AgentRegistrationRequest` for a Linux machine.
pub(crate) fn registration(hostname: &str) -> Value {
    json!({
        "hostname": hostname,
        "organizationId": ORG,
        "agentVersion": "1.4.2",
        "osType": "LINUX",
        "osVersion": "Debian 13",
        "serialNumber": "SN-0042",
        "tags": [{"key": "site", "values": ["CHICAGO"]}],
    })
}

/// `POST /clients/api/agents/register`: (status, body).
pub(crate) async fn register(
    app: &TestApp,
    initial_key: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.https_url("/clients/api/agents/register"))
        .header("X-Initial-Key", initial_key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// `POST /clients/oauth/token`, form-encoded: (status, body).
pub(crate) async fn token(app: &TestApp, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.https_url("/clients/oauth/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// A registered machine and its first tokens.
pub(crate) struct Machine {
    pub(crate) machine_id: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
}

pub(crate) async fn enroll(app: &TestApp, initial_key: &str, hostname: &str) -> Machine {
    let (status, enrolled) = register(app, initial_key, &registration(hostname)).await;
    assert_eq!(status, StatusCode::OK, "{enrolled}");
    let (client_id, client_secret) = (
        enrolled["clientId"].as_str().unwrap().to_owned(),
        enrolled["clientSecret"].as_str().unwrap().to_owned(),
    );
    let (status, tokens) = token(
        app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &client_secret),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    Machine {
        machine_id: enrolled["machineId"].as_str().unwrap().to_owned(),
        client_id,
        client_secret,
        access_token: tokens["accessToken"].as_str().unwrap().to_owned(),
        refresh_token: tokens["refreshToken"].as_str().unwrap().to_owned(),
    }
}

/// A test agent: async-nats over `wss://localhost:PORT/ws/nats?authorization=TOKEN`, trusting
/// only the appliance's certificate. Server errors (`-ERR …`) arrive on the returned channel.
pub(crate) async fn connect(
    app: &TestApp,
    access_token: &str,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (errors, received) = mpsc::unbounded_channel();
    let url = format!(
        "wss://localhost:{}/ws/nats?authorization={access_token}",
        app.https_addr.port()
    );
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(app.cert_path())
        .ignore_discovered_servers()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempt| Duration::from_millis(100 * (attempt as u64).min(5)))
        .event_callback(move |event| {
            let errors = errors.clone();
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    let _ = errors.send(error.to_string());
                }
            }
        })
        .connect(url)
        .await
        .unwrap();
    (client, received)
}

/// The machine as the store holds it.
pub(crate) async fn machine(
    app: &TestApp,
    tenant_id: &str,
    machine_id: &str,
) -> Option<openframe::inventory::Machine> {
    app.state
        .inventory
        .machine(&TenantId::parse(tenant_id).unwrap(), machine_id)
        .await
        .unwrap()
}

/// Polls `machine` until its status is `status`; fails after 15 s.
pub(crate) async fn wait_for_status(
    app: &TestApp,
    tenant_id: &str,
    machine_id: &str,
    status: &str,
) -> openframe::inventory::Machine {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let found = machine(app, tenant_id, machine_id).await.unwrap();
        if found.status == status {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{machine_id} stayed {} (waiting for {status})",
            found.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until nats-server has processed everything `client` sent before this call (its
/// publishes, its subscriptions): async-nats' `flush` only empties its buffer, so this sends a
/// request to `subject`, which nobody answers, and waits for nats-server's "no responders".
async fn round_trip(client: &async_nats::Client, subject: String) {
    let answer = client.request(subject, "".into()).await.unwrap_err();
    assert_eq!(
        answer.kind(),
        async_nats::RequestErrorKind::NoResponders,
        "{answer}"
    );
}

/// Waits until everything the agent sent has reached nats-server through the gateway.
pub(crate) async fn synced(agent: &async_nats::Client, machine_id: &str) {
    round_trip(agent, format!("machine.{machine_id}.sync")).await;
}

/// Waits until nats-server has taken every subscription the appliance-side `client` made.
pub(crate) async fn registered(client: &async_nats::Client) {
    round_trip(client, "openframe.test.sync".to_owned()).await;
}

/// An appliance with the supervised nats-server in `dir`, its two tenants, and tenant A's
/// administrator token and registration secret: what the agent processes need.
pub(crate) async fn appliance_for_agents(dir: &std::path::Path) -> (TestApp, String, String) {
    let app = crate::helpers::spawn_with_clock(
        crate::helpers::with_nats(crate::helpers::test_config(&dir.join("data"))),
        std::sync::Arc::new(openframe_storage::model::SystemClock),
    )
    .await;
    crate::stream::support::ready_with_nats_up(&app).await;
    let tenants = crate::gateway::support::two_tenants(&app).await;
    let admin = tenants.admin_a.clone();
    let key = registration_secret(&app, "acme", &admin).await;
    (app, admin, key)
}
