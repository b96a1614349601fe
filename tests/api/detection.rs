//! Anomaly detection end to end: tool events through ingest and the pipeline, the detector
//! reading the unified log, and its alerts back in the log as `ALERT_TRIGGERED` and
//! `ALERT_RESOLVED` entries with their evidence; once per anomaly, only in its tenant.

use std::sync::Arc;
use std::time::Duration;

use openframe_storage::model::{GroupId, ManualClock, Topic};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::gateway::support::{tenant, two_tenants};
use crate::graphql::support::data;
use crate::helpers::TestApp;
use crate::stream::support::{ingest, ingest_key, settle};

const NOW: i64 = 1_795_168_800_000; // 2026-11-20T10:00:00Z

/// Fleet `activities` rows of `activity_type` by jane@acme.example, one a second from `at`.
fn activities(first_id: i64, count: i64, activity_type: &str, at: i64) -> Vec<u8> {
    let mut body = String::new();
    for i in 0..count {
        let created = time::OffsetDateTime::from_unix_timestamp((at / 1000) + i)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let row = json!({"before": null, "after": {
            "id": first_id + i, "created_at": created, "user_id": 1, "user_name": "Jane Admin",
            "activity_type": activity_type, "details": "{\"public_ip\":\"203.0.113.7\"}",
            "streamed": 0, "user_email": "jane@acme.example", "fleet_initiated": 0, "host_only": 0},
            "source": {"connector": "mysql", "name": "fleet_mysql", "db": "fleet", "table": "activities"},
            "op": "c", "ts_ms": at});
        body.push_str(&row.to_string());
        body.push('\n');
    }
    body.into_bytes()
}

const ALERTS: &str = "{ logs(filter: {eventTypes: [\"ALERT_TRIGGERED\", \"ALERT_RESOLVED\"]}, first: 50) {
  edges { node { eventType toolType severity summary timestamp ingestDay toolEventId userId } } } }";

async fn alerts(app: &TestApp, token: &str) -> Vec<Value> {
    data(app, token, ALERTS, json!({})).await["logs"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

/// Waits until the tenant's log holds `count` alert entries (the detector runs every second).
async fn wait_for_alerts(app: &TestApp, token: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        settle(app).await;
        let found = alerts(app, token).await;
        if found.len() >= count {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waiting for {count} alerts, found {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_failed_sign_ins_raises_one_alert_that_resolves_when_it_stops() {
    let dir = TempDir::new().unwrap();
    let mut config = crate::helpers::test_config(&dir.path().join("data"));
    config.detection.enabled = true;
    config.detection.interval_seconds = 1;
    config.detection.quiet_minutes = 2;
    let clock = ManualClock::starting_at(NOW);
    let app = crate::helpers::spawn_with_clock(config, Arc::new(clock.clone())).await;
    // The clock runs (the pipeline's checkpoints wait for it), and jumps when the test says.
    let running = clock.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            running.advance_ms(50);
        }
    });
    let tenants = two_tenants(&app).await;
    let key = ingest_key(&app, &tenants.admin_a).await;
    let other_key = ingest_key(&app, &tenants.admin_b).await;

    // An ordinary sign-in first: the tenant's log exists, and the detector starts at its end.
    let (status, _) = ingest(
        &app,
        &key,
        "FLEET_ACTIVITY",
        activities(100, 1, "user_logged_in", NOW - 60_000),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = ingest(
        &app,
        &other_key,
        "FLEET_ACTIVITY",
        activities(100, 1, "user_logged_in", NOW - 60_000),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    settle(&app).await;
    let topic = Topic::parse("unified.events").unwrap();
    let group = GroupId::parse("detection").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app
        .state
        .storage
        .events
        .committed_offset(&tenant("acme"), &topic, &group)
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the detector never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Nine failures are under the threshold (10 in 5 minutes): nothing.
    ingest(
        &app,
        &key,
        "FLEET_ACTIVITY",
        activities(200, 9, "user_failed_login", NOW),
    )
    .await;
    // The other tenant's failures never add to Acme's.
    ingest(
        &app,
        &other_key,
        "FLEET_ACTIVITY",
        activities(200, 5, "user_failed_login", NOW),
    )
    .await;
    settle(&app).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(alerts(&app, &tenants.admin_a).await, Vec::<Value>::new());

    // The tenth, and twenty more: one alert.
    let (status, answer) = ingest(
        &app,
        &key,
        "FLEET_ACTIVITY",
        activities(209, 21, "user_failed_login", NOW + 9_000),
    )
    .await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (StatusCode::OK, Some(21)),
        "{answer}"
    );
    let found = wait_for_alerts(&app, &tenants.admin_a, 1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let found_later = alerts(&app, &tenants.admin_a).await;
    assert_eq!(
        found_later.len(),
        1,
        "one alert per anomaly: {found_later:?}"
    );
    let alert = &found[0];
    assert_eq!(alert["eventType"], "ALERT_TRIGGERED");
    assert_eq!(alert["toolType"], "OPENFRAME");
    assert_eq!(
        alert["summary"],
        "10 failed sign-ins on user jane@acme.example within 5 minutes"
    );
    assert_eq!(alert["timestamp"], "2026-11-20T10:00:09Z");

    // Its details carry the evidence.
    let details = data(
        &app,
        &tenants.admin_a,
        "query($d: String!, $t: String!, $e: String!, $ts: String!, $id: String!) {
           logDetails(ingestDay: $d, toolType: $t, eventType: $e, timestamp: $ts, toolEventId: $id) { details } }",
        json!({"d": alert["ingestDay"], "t": "OPENFRAME", "e": "ALERT_TRIGGERED", "ts": alert["timestamp"], "id": alert["toolEventId"]}),
    )
    .await;
    let details: Value =
        serde_json::from_str(details["logDetails"]["details"].as_str().unwrap()).unwrap();
    let info = &details["additional_info"];
    assert_eq!(info["rule"], "login_failed_burst");
    assert_eq!(
        info["alertKey"],
        "login_failed_burst:user:jane@acme.example"
    );
    assert_eq!(info["evidence"]["count"], 10);
    assert_eq!(info["evidence"]["threshold"], 10);
    assert_eq!(info["evidence"]["windowMinutes"], 5);

    // The other tenant saw 5 failures: no alert there.
    assert_eq!(alerts(&app, &tenants.admin_b).await, Vec::<Value>::new());

    // Quiet for quiet_minutes: resolved, once.
    clock.advance_ms(3 * 60_000);
    let found = wait_for_alerts(&app, &tenants.admin_a, 2).await;
    let kinds: Vec<&str> = found
        .iter()
        .map(|alert| alert["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ALERT_RESOLVED", "ALERT_TRIGGERED"]);
    assert_eq!(
        found[0]["summary"],
        "Resolved: 10 failed sign-ins on user jane@acme.example within 5 minutes"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(alerts(&app, &tenants.admin_a).await.len(), 2);
    ticker.abort();
}
