//! Anomaly detection end to end: tool events through ingest and the pipeline, the detector
//! reading the unified log, and its alerts back in the log as `ALERT_TRIGGERED` and
//! `ALERT_RESOLVED` entries with their evidence; once per anomaly, only in its tenant. Alerts
//! open incidents that technicians acknowledge and resolve, with a notification pushed live;
//! each tenant's thresholds are its own.

use std::sync::Arc;
use std::time::Duration;

use openframe_storage::model::{GroupId, ManualClock, Topic};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use openframe::detect::{Alert, Finding};
use openframe_storage::analytics::LogRow;
use reqwest::Method;

use crate::gateway::support::{Tenants, tenant, two_tenants};
use crate::graphql::live::{Socket, connect, next, send};
use crate::graphql::support::data;
use crate::helpers::TestApp;
use crate::rest::call;
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

/// An appliance detecting every second on a clock that runs (the pipeline's checkpoints wait
/// for it) and jumps when the test says; both tenants have logged in once, so each has a log,
/// and Acme's detector has started at its end. Returns the clock's ticker too.
struct Detecting {
    app: TestApp,
    clock: ManualClock,
    ticker: tokio::task::JoinHandle<()>,
    tenants: Tenants,
    key: String,
    other_key: String,
}

async fn detecting(dir: &TempDir) -> Detecting {
    let mut config = crate::helpers::test_config(&dir.path().join("data"));
    config.detection.enabled = true;
    config.detection.interval_seconds = 1;
    config.detection.quiet_minutes = 2;
    let clock = ManualClock::starting_at(NOW);
    let app = crate::helpers::spawn_with_clock(config, Arc::new(clock.clone())).await;
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
    for key in [&key, &other_key] {
        let (status, _) = ingest(
            &app,
            key,
            "FLEET_ACTIVITY",
            activities(100, 1, "user_logged_in", NOW - 60_000),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    settle(&app).await;
    let topic = Topic::parse("unified.events").unwrap();
    let group = GroupId::parse("detection").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for tenant_id in ["acme", "globex"] {
        while app
            .state
            .storage
            .events
            .committed_offset(&tenant(tenant_id), &topic, &group)
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
    }
    Detecting {
        app,
        clock,
        ticker,
        tenants,
        key,
        other_key,
    }
}

/// A socket subscribed to `notificationStream` (id "n").
async fn notifications_socket(app: &TestApp, token: &str) -> Socket {
    let mut socket = connect(app, Some(token), Some("graphql-transport-ws"))
        .await
        .unwrap();
    send(&mut socket, json!({"type": "connection_init"})).await;
    let ack = next(&mut socket, Duration::from_secs(5)).await.unwrap();
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    send(
        &mut socket,
        json!({"id": "n", "type": "subscribe", "payload": {
            "query": "subscription { notificationStream { title message severity category link } }"}}),
    )
    .await;
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_failed_sign_ins_raises_one_alert_that_resolves_when_it_stops() {
    let dir = TempDir::new().unwrap();
    let Detecting {
        app,
        clock,
        ticker,
        tenants,
        key,
        other_key,
    } = detecting(&dir).await;
    let mut live = notifications_socket(&app, &tenants.admin_a).await;
    let mut theirs = notifications_socket(&app, &tenants.admin_b).await;

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
    incident_lifecycle(&app, &tenants, &mut live, &mut theirs).await;
}

/// What the burst above left for technicians: one incident, notified live, that they
/// acknowledge and resolve (REST and GraphQL), audited, and invisible to the other tenant.
async fn incident_lifecycle(
    app: &TestApp,
    tenants: &Tenants,
    live: &mut Socket,
    theirs: &mut Socket,
) {
    let token = &tenants.admin_a;
    let summary = "10 failed sign-ins on user jane@acme.example within 5 minutes";
    let (status, listed) = call(app, token, Method::GET, "/api/incidents", None).await;
    assert_eq!(status, 200);
    let incidents = listed["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{listed}");
    let id = incidents[0]["id"].as_str().unwrap().to_owned();
    let (_, incident) = call(
        app,
        token,
        Method::GET,
        &format!("/api/incidents/{id}"),
        None,
    )
    .await;
    assert_eq!(incident["title"], summary);
    assert_eq!(incident["status"], "OPEN");
    assert_eq!(incident["severity"], "WARNING");
    assert_eq!(incident["alerts"][0]["rule"], "login_failed_burst");
    assert_eq!(incident["alerts"][0]["evidence"]["count"], 10);
    assert!(incident["alerts"][0]["resolvedAt"].is_i64(), "{incident}");
    let kinds: Vec<&str> = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ALERT_TRIGGERED", "ALERT_RESOLVED"]);

    // The technician was told, in the list and live; the other tenant was not.
    let (_, notifications) = call(app, token, Method::GET, "/api/notifications", None).await;
    assert_eq!(notifications["unread"], 1, "{notifications}");
    let notification = &notifications["notifications"][0];
    assert_eq!(notification["category"], "INCIDENT");
    assert_eq!(notification["title"], format!("New incident: {summary}"));
    assert_eq!(notification["link"], format!("/incidents?id={id}"));
    assert_eq!(notification["read"], false);
    let pushed = next(live, Duration::from_secs(5)).await.unwrap();
    assert_eq!(pushed["type"], "next", "{pushed}");
    let pushed = &pushed["payload"]["data"]["notificationStream"];
    assert_eq!(
        (&pushed["title"], &pushed["category"], &pushed["severity"]),
        (
            &notification["title"],
            &json!("INCIDENT"),
            &json!("WARNING")
        )
    );
    assert_eq!(next(theirs, Duration::from_millis(300)).await, None);
    let (_, read) = call(
        app,
        token,
        Method::POST,
        &format!(
            "/api/notifications/{}/read",
            notification["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(read["read"], true);
    let (_, notifications) = call(
        app,
        token,
        Method::GET,
        "/api/notifications?unread=true",
        None,
    )
    .await;
    assert_eq!(notifications, json!({"notifications": [], "unread": 0}));

    // The other tenant sees no incident, and cannot touch this one.
    let other = &tenants.admin_b;
    let (_, none) = call(app, other, Method::GET, "/api/incidents", None).await;
    assert_eq!(none, json!({"incidents": []}));
    for (method, path) in [
        (Method::GET, format!("/api/incidents/{id}")),
        (Method::POST, format!("/api/incidents/{id}/acknowledge")),
        (Method::POST, format!("/api/incidents/{id}/resolve")),
    ] {
        let (status, body) = call(app, other, method, &path, None).await;
        assert_eq!(
            (status, &body["code"]),
            (404, &json!("not_found")),
            "{path}"
        );
    }

    // Acknowledged (twice is once), then resolved through GraphQL with a note.
    let acknowledge = format!("/api/incidents/{id}/acknowledge");
    let (status, acknowledged) = call(app, token, Method::POST, &acknowledge, None).await;
    assert_eq!(status, 200);
    assert_eq!(acknowledged["status"], "ACKNOWLEDGED");
    assert_eq!(acknowledged["acknowledgedBy"], "owner@acme.example.com");
    let (_, again) = call(app, token, Method::POST, &acknowledge, None).await;
    assert_eq!(again["acknowledgedAt"], acknowledged["acknowledgedAt"]);
    assert_eq!(again["timelineCount"], 3);
    let resolved = data(
        app,
        token,
        "mutation($id: String!) { resolveIncident(id: $id, note: \"a user forgot a password\") {
           status resolvedBy resolutionNote timeline { kind summary by } } }",
        json!({"id": id}),
    )
    .await;
    let resolved = &resolved["resolveIncident"];
    assert_eq!(resolved["status"], "RESOLVED");
    assert_eq!(resolved["resolutionNote"], "a user forgot a password");
    assert_eq!(
        resolved["timeline"][3],
        json!({"kind": "RESOLVED", "by": "owner@acme.example.com",
               "summary": "Resolved by owner@acme.example.com: a user forgot a password"})
    );
    for path in [acknowledge.clone(), format!("/api/incidents/{id}/resolve")] {
        let (status, body) = call(app, token, Method::POST, &path, None).await;
        assert_eq!(
            (status, &body["code"]),
            (409, &json!("conflict")),
            "{path}: {body}"
        );
    }
    let listed = data(
        app,
        token,
        "{ open: incidents(status: OPEN) { id } resolved: incidents(status: RESOLVED) { id status } }",
        json!({}),
    )
    .await;
    assert_eq!(
        listed,
        json!({"open": [], "resolved": [{"id": id, "status": "RESOLVED"}]})
    );

    // Both changes are in the audit trail.
    let (_, audit) = call(
        app,
        token,
        Method::GET,
        "/api/audit?targetType=Incident",
        None,
    )
    .await;
    // (Both at the same millisecond of the test's clock, so in either order; the repeated
    // acknowledge changed nothing and is not recorded.)
    let mut actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["action"].as_str().unwrap())
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        ["POST /api/incidents/{id}/acknowledge", "resolveIncident"],
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_own_thresholds_apply_to_it_alone_and_bad_ones_are_refused() {
    let dir = TempDir::new().unwrap();
    let Detecting {
        app,
        ticker,
        tenants,
        key,
        other_key,
        ..
    } = detecting(&dir).await;
    let token = &tenants.admin_a;
    let settings = "/api/detection/settings";

    for (overrides, says) in [
        (
            json!({"spike_z": 0.5}),
            "overrides.spike_z: 0.5 must be at least 1",
        ),
        (
            json!({"nope": 1}),
            "overrides.nope: not a threshold; one of login_failed_count",
        ),
        (
            json!({"login_failed_count": 2.5}),
            "overrides.login_failed_count: 2.5 must be a whole number",
        ),
        (
            json!({"baseline_hours": 3}),
            "overrides.baseline_hours: 3 must be between 24 and 2160",
        ),
        (
            json!({"interval_seconds": 1}),
            "overrides.interval_seconds: not a threshold",
        ),
    ] {
        let (status, body) = call(
            &app,
            token,
            Method::PUT,
            settings,
            Some(json!({"overrides": overrides})),
        )
        .await;
        assert_eq!(
            (status, &body["code"]),
            (400, &json!("invalid_input")),
            "{body}"
        );
        assert!(
            body["message"].as_str().unwrap().starts_with(says),
            "{body}"
        );
    }
    let (status, set) = call(
        &app,
        token,
        Method::PUT,
        settings,
        Some(json!({"overrides": {"login_failed_count": 3, "spike_z": 4.5}})),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        set["overrides"],
        json!({"login_failed_count": 3, "spike_z": 4.5})
    );
    assert_eq!(set["effective"]["login_failed_count"], 3);
    assert_eq!(set["effective"]["quiet_minutes"], 2);
    assert_eq!(set["defaults"]["login_failed_count"], 10);
    let (_, theirs) = call(&app, &tenants.admin_b, Method::GET, settings, None).await;
    assert_eq!(theirs["overrides"], json!({}));
    assert_eq!(theirs["effective"]["login_failed_count"], 10);

    // Three failures: an alert for Acme (threshold 3), none for Globex (threshold 10).
    for key in [&key, &other_key] {
        ingest(
            &app,
            key,
            "FLEET_ACTIVITY",
            activities(300, 3, "user_failed_login", NOW),
        )
        .await;
    }
    let found = wait_for_alerts(&app, token, 1).await;
    assert_eq!(
        found[0]["summary"],
        "3 failed sign-ins on user jane@acme.example within 5 minutes"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(alerts(&app, &tenants.admin_b).await, Vec::<Value>::new());

    // Back to the defaults.
    let (_, reset) = call(
        &app,
        token,
        Method::PUT,
        settings,
        Some(json!({"overrides": {}})),
    )
    .await;
    assert_eq!(reset["overrides"], json!({}));
    assert_eq!(reset["effective"]["login_failed_count"], 10);
    let (_, audit) = call(
        &app,
        token,
        Method::GET,
        "/api/audit?targetType=DetectionSettings",
        None,
    )
    .await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{audit}");
    assert_eq!(
        items[1]["after"],
        json!({"login_failed_count": 3, "spike_z": 4.5})
    );
    ticker.abort();
}

/// Opens an incident in `tenant_id` as detection does for an offline wave around `device`
/// (with its notification); returns the incident's id.
pub(crate) async fn open_incident(
    app: &TestApp,
    tenant_id: &str,
    device: &str,
    organization: Option<&str>,
    summary: &str,
) -> String {
    let wave = Alert {
        key: "offline_wave:tenant".into(),
        rule: "offline_wave",
        device: Some(device.to_owned()),
        organization: organization.map(str::to_owned),
        severity: "ERROR",
        summary: summary.to_owned(),
        evidence: json!({"count": 5, "windowMinutes": 10}),
        at: NOW,
    };
    let tenant = tenant(tenant_id);
    let incidents = &app.state.incidents;
    incidents
        .correlate(&tenant, &[Finding::Triggered(wave)], &[], 30 * 60_000)
        .await
        .unwrap();
    incidents.list(&tenant, None).await.unwrap()[0].id.clone()
}

fn alert(key: &str, device: Option<&str>, organization: Option<&str>, at: i64) -> Alert {
    Alert {
        key: key.to_owned(),
        rule: "first_seen_event_type",
        device: device.map(str::to_owned),
        organization: organization.map(str::to_owned),
        severity: "INFO",
        summary: format!("{key} at {at}"),
        evidence: json!({"eventType": "HOST_WIPED"}),
        at,
    }
}

fn log_row(id: &str, device: &str, organization: &str, severity: &str, at: i64) -> LogRow {
    LogRow {
        tool_event_id: id.to_owned(),
        event_timestamp: at,
        ingest_day: "2026-11-20".to_owned(),
        tool_type: "MESHCENTRAL".to_owned(),
        event_type: "SCRIPT_FAILED".to_owned(),
        severity: severity.to_owned(),
        summary: format!("{id} on {device}"),
        user_id: None,
        device_id: Some(device.to_owned()),
        hostname: None,
        organization_id: Some(organization.to_owned()),
        organization_name: None,
    }
}

/// Correlation on the real document store, with findings made by hand so every rule of it is
/// exercised: same device or customer within the window joins, anything else opens; a
/// device's log entries join its incident's timeline; a repeated pass changes nothing.
#[tokio::test]
async fn alerts_about_one_device_or_customer_within_the_window_are_one_incident() {
    let dir = TempDir::new().unwrap();
    let app =
        crate::helpers::spawn_with(crate::helpers::test_config(&dir.path().join("data"))).await;
    let tenants = two_tenants(&app).await;
    let acme = tenant("acme");
    let incidents = &app.state.incidents;
    let window = 30 * 60_000;
    let pass = |findings: Vec<Finding>, rows: Vec<LogRow>| async move {
        incidents
            .correlate(&acme_id(), &findings, &rows, window)
            .await
            .unwrap();
    };
    fn acme_id() -> openframe_storage::TenantId {
        tenant("acme")
    }

    let first = alert("a:ws1", Some("m-ws-1"), Some("org-1"), NOW);
    pass(
        vec![Finding::Triggered(first.clone())],
        vec![
            log_row("e-1", "m-ws-1", "org-1", "INFO", NOW - 60_000),
            log_row("e-2", "m-other", "org-2", "ERROR", NOW),
        ],
    )
    .await;
    // The same device 10 minutes later; then another device of the same customer.
    let second = alert("b:ws1", Some("m-ws-1"), None, NOW + 10 * 60_000);
    let third = alert("c:ws2", Some("m-ws-2"), Some("org-1"), NOW + 20 * 60_000);
    pass(
        vec![
            Finding::Triggered(second),
            Finding::Triggered(third.clone()),
        ],
        vec![
            // Another device of the customer: only warnings and worse join.
            log_row("e-3", "m-ws-9", "org-1", "INFO", NOW + 21 * 60_000),
            log_row("e-4", "m-ws-9", "org-1", "WARNING", NOW + 22 * 60_000),
        ],
    )
    .await;
    // Another customer's device: its own incident. The first device an hour after the last
    // activity: a new one too.
    let elsewhere = alert("d:srv", Some("m-srv"), Some("org-2"), NOW + 25 * 60_000);
    let later = alert("e:ws1", Some("m-ws-1"), Some("org-1"), NOW + 90 * 60_000);
    pass(
        vec![
            Finding::Triggered(elsewhere),
            Finding::Triggered(later),
            Finding::Resolved {
                alert: first.clone(),
                at: NOW + 40 * 60_000,
            },
        ],
        vec![],
    )
    .await;

    let listed = incidents.list(&acme, None).await.unwrap();
    let titles: Vec<&str> = listed
        .iter()
        .map(|incident| incident.title.as_str())
        .collect();
    assert_eq!(
        titles,
        [
            format!("e:ws1 at {}", NOW + 90 * 60_000),
            format!("a:ws1 at {NOW}"),
            format!("d:srv at {}", NOW + 25 * 60_000),
        ],
        "most recent activity first"
    );
    let grouped = incidents.get(&acme, &listed[1].id).await.unwrap();
    let keys: Vec<&str> = grouped
        .alerts
        .iter()
        .map(|alert| alert.key.as_str())
        .collect();
    assert_eq!(keys, ["a:ws1", "b:ws1", "c:ws2"]);
    assert_eq!(grouped.device_ids, ["m-ws-1", "m-ws-2"]);
    assert_eq!(grouped.organization_ids, ["org-1"]);
    assert_eq!(grouped.alerts[0].resolved_at, Some(NOW + 40 * 60_000));
    let timeline: Vec<(String, String)> = grouped
        .timeline
        .iter()
        .map(|entry| (entry.kind.clone(), entry.summary.clone()))
        .collect();
    assert_eq!(
        timeline,
        [
            ("EVENT".into(), "e-1 on m-ws-1".into()),
            ("ALERT_TRIGGERED".into(), format!("a:ws1 at {NOW}")),
            (
                "ALERT_TRIGGERED".into(),
                format!("b:ws1 at {}", NOW + 10 * 60_000)
            ),
            (
                "ALERT_TRIGGERED".into(),
                format!("c:ws2 at {}", NOW + 20 * 60_000)
            ),
            ("EVENT".into(), "e-4 on m-ws-9".into()),
            ("ALERT_RESOLVED".into(), format!("a:ws1 at {NOW}")),
        ]
    );
    assert_eq!(grouped.timeline_count, 6);

    // A pass repeated after a crash (same findings, same rows) changes nothing.
    let before = incidents.list(&acme, None).await.unwrap();
    pass(
        vec![Finding::Triggered(first), Finding::Triggered(third)],
        vec![log_row("e-1", "m-ws-1", "org-1", "INFO", NOW - 60_000)],
    )
    .await;
    assert_eq!(incidents.list(&acme, None).await.unwrap(), before);

    // One notification per incident opened, none for alerts that joined.
    let (_, notifications) = call(
        &app,
        &tenants.admin_a,
        Method::GET,
        "/api/notifications",
        None,
    )
    .await;
    assert_eq!(notifications["unread"], 3, "{notifications}");
    // Globex has none of it.
    assert!(
        incidents
            .list(&tenant("globex"), None)
            .await
            .unwrap()
            .is_empty()
    );
}
