//! CDC over the embedded NATS: Debezium Server's NATS sink publishes on `cdc.…` with the
//! `debezium` user, and the events land in the tenant's log once; a killed `nats-server` is
//! restarted and publishing works again.

use std::time::Duration;

use async_nats::jetstream;
use openframe::management::nats::NatsState;
use reqwest::StatusCode;

use super::support::{fixture, ready_with_nats_up, rows, seed_inventory, settle};
use crate::gateway::support::two_tenants;
use crate::helpers::{TestApp, spawn_with, test_config, with_nats};

/// A publisher as Debezium Server connects: the `debezium` user, whose password the appliance
/// keeps in the data dir for the operator.
async fn debezium(app: &TestApp) -> jetstream::Context {
    let password = std::fs::read_to_string(app.data_dir.join("nats/debezium.password")).unwrap();
    let nats = app.state.nats.as_ref().unwrap();
    let client = async_nats::ConnectOptions::with_user_and_password(
        "debezium".into(),
        password.trim().into(),
    )
    .connect(nats.url())
    .await
    .unwrap();
    jetstream::new(client)
}

/// The appliance's side, to see the streams: waits until its consumer exists.
async fn admin(app: &TestApp) -> jetstream::Context {
    let client = app.state.nats.as_ref().unwrap().connect().await.unwrap();
    let context = jetstream::new(client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while context.get_stream("CDC").await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the CDC stream never appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    context
}

/// Waits until the appliance has taken and acknowledged everything published on `cdc.>`.
async fn drained(admin: &jetstream::Context) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut stream = admin.get_stream("CDC").await.unwrap();
        let state = stream.info().await.unwrap().state.messages;
        let consumer: jetstream::consumer::PullConsumer =
            stream.get_consumer("openframe-ingest").await.unwrap();
        let mut consumer = consumer;
        let info = consumer.info().await.unwrap();
        if state > 0 && info.num_pending == 0 && info.num_ack_pending == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "CDC not drained: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn publish_lines(publisher: &jetstream::Context, subject: &str, file: &str) -> usize {
    let text = fixture(file);
    let mut sent = 0;
    for line in text
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
    {
        publisher
            .publish(subject.to_owned(), bytes::Bytes::copy_from_slice(line))
            .await
            .unwrap()
            .await
            .unwrap();
        sent += 1;
    }
    sent
}

#[tokio::test]
async fn cdc_events_published_on_nats_land_in_the_tenants_log_once() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = with_nats(test_config(&dir.path().join("data")));
    config.stream.fleet_join_window_ms = 200;
    let mut app = spawn_with(config).await;
    let tenants = two_tenants(&app).await;
    seed_inventory(&app, "acme").await;
    // Globex gets the same inventory and the same fixtures over HTTP: the reference.
    seed_inventory(&app, "globex").await;
    ready_with_nats_up(&app).await;
    let admin = admin(&app).await;
    let publisher = debezium(&app).await;

    let key_b = super::support::ingest_key(&app, &tenants.admin_b).await;
    for (message_type, file) in [
        ("MESHCENTRAL_EVENT", "meshcentral-events.ndjson"),
        ("FLEET_HOST_ACTIVITY", "fleet-host-activities.ndjson"),
        ("FLEET_ACTIVITY", "fleet-activities.ndjson"),
    ] {
        for _ in 0..2 {
            let subject = format!("cdc.acme.{message_type}");
            assert!(publish_lines(&publisher, &subject, file).await > 0);
        }
        let (status, _) = super::support::ingest(&app, &key_b, message_type, fixture(file)).await;
        assert_eq!(status, StatusCode::OK);
    }
    publish_lines(&publisher, "cdc.acme.MESHCENTRAL_EVENT", "bad-input.ndjson").await;
    // Two tenants and no stream.nats_tenant: a subject without a tenant cannot be placed.
    publisher
        .publish(
            "cdc.MESHCENTRAL_EVENT",
            bytes::Bytes::from(fixture("meshcentral-event-with-schema.json")),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    drained(&admin).await;
    settle(&app).await;

    // Every fixture, sent twice over NATS, gives exactly the rows the same events give over
    // HTTP (whose every column the ingest tests check): types, severities, summaries, devices,
    // customers.
    let acme = rows(&app, "acme").await;
    assert_eq!(acme.len(), 17, "sent twice, logged once");
    assert_eq!(acme, rows(&app, "globex").await);
    let added = super::support::row(&acme, "Added device ACME-WS-001");
    assert_eq!(added.hostname.as_deref(), Some("ACME-WS-001"));
    assert_eq!(added.organization_name.as_deref(), Some("Acme Corp"));

    // The bad lines are acme's dead letters, as over HTTP.
    let letters = super::support::dead_letters(&app, &tenants.admin_a).await;
    assert_eq!(letters["pending"], 6, "{letters}");
    // The unplaceable message is kept aside, with why.
    let mut dead = admin.get_stream("CDC_DEAD").await.unwrap();
    assert_eq!(dead.info().await.unwrap().state.messages, 1);
    let kept = dead
        .get_last_raw_message_by_subject("openframe.cdc-dead.cdc.MESHCENTRAL_EVENT")
        .await
        .unwrap();
    let reason = kept.headers.get("Openframe-Reason").unwrap().to_string();
    assert!(reason.contains("several tenants"), "{reason}");

    // Debezium's user may publish change events and nothing else.
    let outside = publisher
        .publish("machine.m-1.heartbeat", "{}".into())
        .await;
    let refused = match outside {
        Ok(ack) => ack.await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a publish outside cdc.> must not be acknowledged");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_killed_nats_server_is_restarted_and_cdc_resumes() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = with_nats(test_config(&dir.path().join("data")));
    config.stream.nats_tenant = "acme".into();
    let mut app = spawn_with(config).await;
    let _tenants = two_tenants(&app).await;
    ready_with_nats_up(&app).await;
    let admin = admin(&app).await;
    let nats = app.state.nats.as_ref().unwrap();
    let NatsState::Up { pid } = nats.state() else {
        panic!("not up: {:?}", nats.state())
    };
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // The gap shows in readiness, then the supervisor has it back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut saw_down = false;
    loop {
        let (status, body) = app.ready().await;
        if body["stores"]["nats"]["status"] == "down" {
            saw_down = true;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        }
        if saw_down && body["stores"]["nats"]["status"] == "up" {
            assert_eq!(body["stores"]["nats"]["restarts"], 1);
            assert_eq!(status, StatusCode::OK);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no restart seen: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_ne!(nats.state(), NatsState::Up { pid });

    // Clients reconnect by themselves; the stream survived in the data dir.
    let publisher = debezium(&app).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let sent = publisher
            .publish(
                "cdc.MESHCENTRAL_EVENT",
                bytes::Bytes::from(fixture("meshcentral-event-with-schema.json")),
            )
            .await;
        if let Ok(ack) = sent
            && ack.await.is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishing never worked again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drained(&admin).await;
    settle(&app).await;
    assert_eq!(
        rows(&app, "acme").await.len(),
        1,
        "stream.nats_tenant places it"
    );
    app.stop().await.unwrap();
}
