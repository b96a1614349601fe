//! Agents on NATS through `wss://…/ws/nats` with a real `nats-server`: presence from heartbeats
//! (clock pinned), per-machine permissions with nats-server's own errors, reports over
//! JetStream, and recovery after the supervised server is killed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use openframe::management::nats::NatsState;
use openframe_storage::Clock;
use openframe_storage::model::{ManualClock, SystemClock};
use reqwest::StatusCode;
use tokio::sync::mpsc;

use super::support::{connect, enroll, registered, registration_secret, wait_for_status};
use crate::gateway::support::{tenant, two_tenants};
use crate::helpers::{TestApp, spawn_with_clock, test_config, with_nats};
use crate::stream::support::{ready_with_nats_up, rows, settle};

async fn app_with_nats(dir: &tempfile::TempDir, clock: Arc<dyn Clock>) -> TestApp {
    let mut config = with_nats(test_config(&dir.path().join("data")));
    config.agents.offline_after_seconds = 130;
    let app = spawn_with_clock(config, clock).await;
    ready_with_nats_up(&app).await;
    app
}

/// The next server error the agent was sent, within 5 s.
async fn next_error(errors: &mut mpsc::UnboundedReceiver<String>) -> String {
    let error = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .expect("no server error arrived")
        .unwrap();
    // async-nats prefixes what the server said.
    error.strip_prefix("nats: ").unwrap_or(&error).to_owned()
}

#[tokio::test]
async fn an_agent_heartbeats_through_the_gateway_turns_online_then_offline_after_silence() {
    let dir = tempfile::TempDir::new().unwrap();
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let mut app = app_with_nats(&dir, Arc::new(clock.clone())).await;
    let tenants = two_tenants(&app).await;
    let key = registration_secret(&app, "acme", &tenants.admin_a).await;
    let machine = enroll(&app, &key, "ws-presence").await;
    let id = machine.machine_id.clone();

    let (agent, mut errors) = connect(&app, &machine.access_token).await;
    agent
        .publish(format!("machine.{id}.heartbeat"), "{}".into())
        .await
        .unwrap();
    agent.flush().await.unwrap();
    let online = wait_for_status(&app, "acme", &id, "ONLINE").await;
    assert_eq!(online.last_seen, Some(clock.now_ms()));
    let metrics = app
        .plain
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("openframe_agent_sessions 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("openframe_agents_online 1\n"), "{metrics}");

    // Silence, with the clock pinned: 129 s is not enough, 131 s is.
    clock.advance_ms(129_000);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        super::support::machine(&app, "acme", &id)
            .await
            .unwrap()
            .status,
        "ONLINE"
    );
    clock.advance_ms(2_000);
    let offline = wait_for_status(&app, "acme", &id, "OFFLINE").await;
    assert_eq!(offline.last_seen, online.last_seen);

    // Back again on the next heartbeat.
    clock.advance_ms(1_000);
    agent
        .publish(format!("machine.{id}.heartbeat"), "{}".into())
        .await
        .unwrap();
    agent.flush().await.unwrap();
    wait_for_status(&app, "acme", &id, "ONLINE").await;

    // The status is written before the event is logged: wait for the third row.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let logged = loop {
        settle(&app).await;
        let logged = rows(&app, "acme").await;
        if logged.len() >= 3 || tokio::time::Instant::now() > deadline {
            break logged;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let presence: Vec<(&str, &str)> = logged
        .iter()
        .filter(|row| row.device_id.as_deref() == Some(id.as_str()))
        .map(|row| {
            (
                row.event_type.as_str(),
                row.hostname.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        presence,
        vec![
            ("DEVICE_ONLINE", "ws-presence"),
            ("DEVICE_OFFLINE", "ws-presence"),
            ("DEVICE_ONLINE", "ws-presence"),
        ]
        .into_iter()
        .rev()
        .collect::<Vec<_>>(),
        "newest first"
    );
    assert!(rows(&app, "globex").await.is_empty());
    assert!(
        errors.try_recv().is_err(),
        "the agent did nothing forbidden"
    );
    drop(agent);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_machine_cannot_publish_or_subscribe_to_another_machines_subjects() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut app = app_with_nats(&dir, Arc::new(SystemClock)).await;
    let tenants = two_tenants(&app).await;
    let key = registration_secret(&app, "acme", &tenants.admin_a).await;
    let a = enroll(&app, &key, "ws-a").await;
    let b = enroll(&app, &key, "ws-b").await;
    let (agent_a, mut errors_a) = connect(&app, &a.access_token).await;
    let (agent_b, mut errors_b) = connect(&app, &b.access_token).await;
    // The appliance's side sees everything agents publish.
    let server = app.state.nats.as_ref().unwrap().connect().await.unwrap();
    let mut observed = server.subscribe("machine.>").await.unwrap();
    registered(&server).await;

    // A tries to read B's subjects, every machine's heartbeats and every inbox.
    let (a_id, b_id) = (a.machine_id.clone(), b.machine_id.clone());
    let mut snooping = agent_a
        .subscribe(format!("machine.{b_id}.>"))
        .await
        .unwrap();
    assert_eq!(
        next_error(&mut errors_a).await,
        format!("Permissions Violation for Subscription to \"machine.{b_id}.>\"")
    );
    for subject in ["machine.>", "machine.*.heartbeat", "_INBOX.>"] {
        let _ignored = agent_a.subscribe(subject).await.unwrap();
        assert_eq!(
            next_error(&mut errors_a).await,
            format!("Permissions Violation for Subscription to \"{subject}\"")
        );
    }
    // A tries to speak for B; then publishes its own heartbeat.
    agent_a
        .publish(format!("machine.{b_id}.heartbeat"), "{}".into())
        .await
        .unwrap();
    agent_a
        .publish(format!("machine.{a_id}.heartbeat"), "{}".into())
        .await
        .unwrap();
    agent_a.flush().await.unwrap();
    assert_eq!(
        next_error(&mut errors_a).await,
        format!("Permissions Violation for Publish to \"machine.{b_id}.heartbeat\"")
    );
    let first = tokio::time::timeout(Duration::from_secs(5), observed.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.subject.as_str(),
        format!("machine.{a_id}.heartbeat"),
        "the forged heartbeat never reached NATS"
    );
    // A JetStream consumer reading B's installations is refused too.
    agent_a
        .publish(
            format!("$JS.API.CONSUMER.CREATE.TOOL_INSTALLATION.machine_{a_id}_c"),
            serde_json::json!({"stream_name": "TOOL_INSTALLATION", "config": {
                "durable_name": format!("machine_{a_id}_c"),
                "filter_subject": format!("machine.{b_id}.tool-installation")}})
            .to_string()
            .into(),
        )
        .await
        .unwrap();
    assert!(
        next_error(&mut errors_a)
            .await
            .starts_with("Permissions Violation for Publish to \"$JS.API.CONSUMER.CREATE")
    );

    // What the server sends B reaches B, and not A.
    let mut own = agent_b
        .subscribe(format!("machine.{b_id}.script-execution"))
        .await
        .unwrap();
    // (The observer above listens on `machine.>`, so a sync request would find a listener:
    // publish until the subscription is in place instead.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let delivered = loop {
        server
            .publish(
                format!("machine.{b_id}.script-execution"),
                "{\"executionId\":\"e-1\"}".into(),
            )
            .await
            .unwrap();
        server.flush().await.unwrap();
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(200), own.next()).await
        {
            break message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never received its message"
        );
    };
    assert_eq!(&delivered.payload[..], b"{\"executionId\":\"e-1\"}");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), snooping.next())
            .await
            .is_err(),
        "A received B's message"
    );
    assert!(errors_b.try_recv().is_err());
    drop((agent_a, agent_b));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn killing_nats_server_restarts_it_and_agents_get_their_messages_again() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut app = app_with_nats(&dir, Arc::new(SystemClock)).await;
    let tenants = two_tenants(&app).await;
    let key = registration_secret(&app, "acme", &tenants.admin_a).await;
    let machine = enroll(&app, &key, "ws-restart").await;
    let id = machine.machine_id.clone();
    let (agent, _errors) = connect(&app, &machine.access_token).await;
    let mut commands = agent
        .subscribe(format!("machine.{id}.command-execution"))
        .await
        .unwrap();
    super::support::synced(&agent, &id).await;

    let nats = app.state.nats.clone().unwrap();
    let NatsState::Up { pid } = nats.state() else {
        panic!("nats is not up: {:?}", nats.state())
    };
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The gap shows in readiness...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app.ready().await;
        if body["stores"]["nats"]["status"] != "up" {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the kill never showed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...until the supervisor has restarted the server.
    let (status, body) = ready_with_nats_up(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["stores"]["nats"]["restarts"].as_u64().unwrap() >= 1,
        "{body}"
    );

    // The gateway's hub reconnects and resubscribes for the agent: its subscription works again
    // and its WebSocket session was never dropped.
    let server = nats.connect().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        server
            .publish(
                format!("machine.{id}.command-execution"),
                "{\"executionId\":\"after\"}".into(),
            )
            .await
            .unwrap();
        server.flush().await.unwrap();
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(300), commands.next()).await
        {
            assert_eq!(&message.payload[..], b"{\"executionId\":\"after\"}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never came back"
        );
    }
    assert_eq!(app.state.management.sessions.open(), 1);
    drop(agent);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn agents_report_hostname_tool_connections_and_installed_agents_over_jetstream() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut app = app_with_nats(&dir, Arc::new(SystemClock)).await;
    let tenants = two_tenants(&app).await;
    let key = registration_secret(&app, "acme", &tenants.admin_a).await;
    let machine = enroll(&app, &key, "ws-report").await;
    let id = machine.machine_id.clone();
    let (agent, mut errors) = connect(&app, &machine.access_token).await;
    let jetstream = async_nats::jetstream::new(agent.clone());

    // OpenFrame's streams exist (provisioned at start; provisioning again changes nothing).
    let server = app.state.nats.as_ref().unwrap().connect().await.unwrap();
    let admin = async_nats::jetstream::new(server);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while admin.get_stream("MACHINE_HOSTNAME").await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "streams never appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    openframe::management::provision_streams(&admin)
        .await
        .unwrap();
    for (name, subjects) in openframe::management::STREAMS {
        let mut stream = admin.get_stream(name).await.unwrap();
        let info = stream.info().await.unwrap();
        let expected: Vec<String> = subjects.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(info.config.subjects, expected, "{name}");
    }

    // Reports as the agent sends them, acknowledged by JetStream.
    for (subject, body) in [
        ("hostname", serde_json::json!({"hostname": "ws-renamed"})),
        (
            "tool-connection",
            serde_json::json!({"toolType": "MESHCENTRAL", "agentToolId": "AbCd123"}),
        ),
        (
            "installed-agent",
            serde_json::json!({"machineId": id, "agentType": "meshcentral-agent", "version": "1.2.0"}),
        ),
        // Bad input is acknowledged, refused with a reason in the log, and changes nothing.
        (
            "tool-connection",
            serde_json::json!({"toolType": "TEAMVIEWER", "agentToolId": "x"}),
        ),
        ("hostname", serde_json::json!({"hostname": ""})),
    ] {
        jetstream
            .publish(format!("machine.{id}.{subject}"), body.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let tenant = openframe_storage::model::TenantId::parse("acme").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let renamed = super::support::machine(&app, "acme", &id)
            .await
            .unwrap()
            .hostname
            == "ws-renamed";
        let attribution = app
            .state
            .inventory
            .attribute(
                &tenant,
                &openframe::stream::tools::DeviceRef::AgentToolId {
                    tool_type: "MESHCENTRAL",
                    id: "node//AbCd123".into(),
                },
            )
            .await
            .unwrap();
        let installed = app
            .state
            .storage
            .documents
            .get(
                &tenant,
                &openframe_storage::model::Collection::parse("installed_agents").unwrap(),
                &openframe_storage::model::DocumentId::parse(&format!("{id}:meshcentral-agent"))
                    .unwrap(),
            )
            .await
            .unwrap();
        if let Some(installed) =
            installed.filter(|_| renamed && attribution.machine_id.as_deref() == Some(id.as_str()))
        {
            assert_eq!(installed.body["version"], "1.2.0");
            assert_eq!(attribution.hostname.as_deref(), Some("ws-renamed"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reports not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The bad hostname did not overwrite the good one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        super::support::machine(&app, "acme", &id)
            .await
            .unwrap()
            .hostname,
        "ws-renamed"
    );
    assert!(errors.try_recv().is_err());
    drop(agent);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_fleet_connection_is_stored_under_fleets_host_id_once_fleet_knows_the_host() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut app = app_with_nats(&dir, Arc::new(SystemClock)).await;
    let tenants = two_tenants(&app).await;
    let key = registration_secret(&app, "acme", &tenants.admin_a).await;
    let machine = enroll(&app, &key, "ws-fleet").await;
    let id = machine.machine_id.clone();
    // A stand-in for Fleet's REST API (Fleet cannot run here) that does not know the host yet.
    let fake = Arc::new(crate::rest::tools::Fake::default());
    let fleet = crate::rest::tools::fake_fleet(fake.clone()).await;
    let (status, tool) = crate::rest::call(
        &app,
        &tenants.admin_a,
        reqwest::Method::PUT,
        "/api/tools/fleetmdm-server",
        Some(
            serde_json::json!({"name": "Fleet", "toolType": "FLEET_MDM", "apiUrl": fleet,
            "allowedPaths": ["/api"], "healthCheckSeconds": 0,
            "credential": {"kind": "BEARER_TOKEN", "secret": "fleet-t0ken"}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{tool}");

    // Orbit reports the osquery host UUID, as OpenFrame's agent relays it.
    let uuid = "4c4c4544-0042-3510-8048-b7c04f4a4d32";
    let (agent, _errors) = connect(&app, &machine.access_token).await;
    async_nats::jetstream::new(agent.clone())
        .publish(
            format!("machine.{id}.tool-connection"),
            serde_json::json!({"toolType": "FLEET", "agentToolId": uuid})
                .to_string()
                .into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    // Fleet learns about the host a moment later; the report is retried until it does.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        app.state
            .inventory
            .tool_connections(&tenant("acme"), &id)
            .await
            .unwrap()
            .is_empty(),
        "nothing is stored while Fleet does not know the host"
    );
    fake.hosts.lock().unwrap().push((42, uuid.to_owned()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let connection = loop {
        let found = app
            .state
            .inventory
            .tool_connections(&tenant("acme"), &id)
            .await
            .unwrap();
        if let Some(connection) = found.into_iter().next() {
            break connection;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection was never stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(connection.tool_type, "FLEET_MDM");
    assert_eq!(connection.agent_tool_id, "42");
    assert_eq!(connection.status, "CONNECTED");
    // The lookup used the tool's credential.
    assert_eq!(*fake.authorization.lock().unwrap(), "Bearer fleet-t0ken");
    // Fleet's events about host 42 are attributed to the machine.
    let attribution = app
        .state
        .inventory
        .attribute(
            &tenant("acme"),
            &openframe::stream::tools::DeviceRef::AgentToolId {
                tool_type: "FLEET_MDM",
                id: "42".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(attribution.machine_id.as_deref(), Some(id.as_str()));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_uninstalled_machine_loses_its_open_session_at_once() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut app = app_with_nats(&dir, Arc::new(SystemClock)).await;
    let tenants = two_tenants(&app).await;
    let key = registration_secret(&app, "acme", &tenants.admin_a).await;
    let machine = enroll(&app, &key, "ws-leaving").await;
    let id = machine.machine_id.clone();
    let (agent, mut errors) = connect(&app, &machine.access_token).await;
    let mut own = agent
        .subscribe(format!("machine.{id}.command-execution"))
        .await
        .unwrap();
    super::support::synced(&agent, &id).await;

    let response = app
        .client
        .post(app.https_url("/clients/api/agents/uninstall"))
        .header("X-Machine-Id", &id)
        .header("X-Client-Secret", &machine.client_secret)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // Its next frame gets what nats-server sends a client whose authorization is gone, and the
    // session ends; reconnecting with the old token is refused at the gateway.
    agent
        .publish(format!("machine.{id}.heartbeat"), "{}".into())
        .await
        .unwrap();
    let _ = agent.flush().await;
    let error = next_error(&mut errors).await;
    assert!(
        error.to_lowercase().contains("authorization violation"),
        "{error}"
    );
    // Nothing sent to the machine reaches it any more.
    let server = app.state.nats.as_ref().unwrap().connect().await.unwrap();
    server
        .publish(format!("machine.{id}.command-execution"), "{}".into())
        .await
        .unwrap();
    server.flush().await.unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(2), own.next()).await;
    assert!(
        !matches!(delivered, Ok(Some(_))),
        "a revoked machine still received {delivered:?}"
    );
    app.stop().await.unwrap();
}

/// Every per-machine and per-user subject of OpenFrame's NATS surface: the backticked
/// `machine.{id}.…` and `user.{id}.…` names of §6.3 of the compatibility reference, read from the
/// reference itself, so a subject added there is swept without touching this test.
fn surface_subjects() -> Vec<String> {
    let reference = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/openframe-surface.md");
    let text = std::fs::read_to_string(&reference).unwrap();
    let start = text
        .find("### 6.3 NATS subjects")
        .expect("§6.3 of the reference");
    let end = start
        + text[start..]
            .find("### 6.4")
            .expect("§6.4 of the reference");
    let mut subjects: Vec<String> = text[start..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|name| name.starts_with("machine.{id}.") || name.starts_with("user.{id}."))
        .map(str::to_owned)
        .collect();
    subjects.sort();
    subjects.dedup();
    subjects
}

#[tokio::test]
async fn another_tenants_machine_is_refused_every_subject_of_the_surface_on_this_machine() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut app = app_with_nats(&dir, Arc::new(SystemClock)).await;
    let tenants = two_tenants(&app).await;
    let acme_key = registration_secret(&app, "acme", &tenants.admin_a).await;
    let globex_key = registration_secret(&app, "globex", &tenants.admin_b).await;
    let a = enroll(&app, &acme_key, "sweep-a").await;
    let b = enroll(&app, &globex_key, "sweep-b").await;
    let (a_id, b_id) = (a.machine_id.clone(), b.machine_id.clone());
    let (intruder, mut errors) = connect(&app, &b.access_token).await;
    // The appliance's side sees whatever reaches A's subjects.
    let server = app.state.nats.as_ref().unwrap().connect().await.unwrap();
    let mut observed = server.subscribe(format!("machine.{a_id}.>")).await.unwrap();
    let mut observed_users = server.subscribe("user.>").await.unwrap();
    registered(&server).await;

    // What B sends carries a marker, so the appliance's own messages to A are told apart.
    let marker = format!("{{\"sweep\":\"{b_id}\"}}");
    let subjects = surface_subjects();
    assert!(
        subjects.len() >= 15,
        "the reference's subjects were not found: {subjects:?}"
    );
    let mut swept = Vec::new();
    for pattern in &subjects {
        let subject = pattern.replace("{id}", &a_id);
        intruder
            .publish(subject.clone(), marker.clone().into())
            .await
            .unwrap();
        intruder.flush().await.unwrap();
        assert_eq!(
            next_error(&mut errors).await,
            format!("Permissions Violation for Publish to \"{subject}\""),
            "publish {pattern}"
        );
        // The exact subject, and the wildcard over every machine's.
        let wildcard = pattern.replacen("{id}", "*", 1);
        for reading in [subject.clone(), wildcard] {
            let _refused = intruder.subscribe(reading.clone()).await.unwrap();
            assert_eq!(
                next_error(&mut errors).await,
                format!("Permissions Violation for Subscription to \"{reading}\""),
                "subscribe {pattern}"
            );
        }
        // A JetStream consumer of its own name, on every agent stream, reading A's subject.
        for stream in openframe::management::nats_rules::AGENT_STREAMS {
            let consumer = format!("machine_{b_id}_sweep");
            intruder
                .publish(
                    format!("$JS.API.CONSUMER.CREATE.{stream}.{consumer}"),
                    serde_json::json!({"stream_name": stream, "config": {
                        "durable_name": consumer, "filter_subject": subject}})
                    .to_string()
                    .into(),
                )
                .await
                .unwrap();
            intruder.flush().await.unwrap();
            assert!(
                next_error(&mut errors)
                    .await
                    .starts_with("Permissions Violation for Publish to \"$JS.API.CONSUMER.CREATE"),
                "a consumer on {stream} over {pattern}"
            );
        }
        swept.push(pattern.as_str());
    }
    assert_eq!(swept.len(), subjects.len());

    // Nothing of it reached A's subjects or any user's: B's own heartbeat, sent last, is the
    // only thing B got through.
    let mut own = server
        .subscribe(format!("machine.{b_id}.heartbeat"))
        .await
        .unwrap();
    registered(&server).await;
    intruder
        .publish(format!("machine.{b_id}.heartbeat"), marker.clone().into())
        .await
        .unwrap();
    intruder.flush().await.unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(5), own.next())
        .await
        .expect("B's own heartbeat arrives")
        .unwrap();
    assert_eq!(&delivered.payload[..], marker.as_bytes());
    for (what, subscription) in [
        ("A's subjects", &mut observed),
        ("users' subjects", &mut observed_users),
    ] {
        while let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(300), subscription.next()).await
        {
            assert_ne!(
                &message.payload[..],
                marker.as_bytes(),
                "B reached {what}: {}",
                message.subject
            );
        }
    }
    drop(intruder);
    app.stop().await.unwrap();
}
