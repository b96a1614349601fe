//! Ingest over HTTPS: every fixture in, the unified log out, in every store; re-sending changes
//! nothing; bad events are refused one by one and kept as dead letters; tenants stay apart.

use openframe_storage::analytics::{LogFacet, LogFilter};
use openframe_storage::details::LogKey;
use reqwest::StatusCode;

use super::support::{
    dead_letters, fixture, ingest, ingest_as, ingest_key, row, rows, search, seed_inventory, settle,
};
use crate::gateway::support::{create_key, error_of, tenant, two_tenants};
use crate::helpers::{spawn_with, test_config};

const MESH: &str = "meshcentral-events.ndjson";
const FLEET: &str = "fleet-activities.ndjson";
const FLEET_HOSTS: &str = "fleet-host-activities.ndjson";

#[tokio::test]
async fn the_fixtures_become_an_enriched_searchable_log_and_resending_changes_nothing() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    // Activities without a host wait this long for one; short, so the test does not wait 5 s.
    config.stream.fleet_join_window_ms = 200;
    let app = spawn_with(config).await;
    let tenants = two_tenants(&app).await;
    seed_inventory(&app, "acme").await;
    let key = ingest_key(&app, &tenants.admin_a).await;

    for round in 0..2 {
        let (status, answer) = ingest(&app, &key, "MESHCENTRAL_EVENT", fixture(MESH)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            answer,
            serde_json::json!({"topic": "meshcentral.mongodb.events", "accepted": 9, "skipped": 1, "rejected": []}),
            "round {round}"
        );
        // Hosts first, as Debezium usually delivers them within the join window.
        let (_, answer) = ingest(&app, &key, "FLEET_HOST_ACTIVITY", fixture(FLEET_HOSTS)).await;
        assert_eq!(answer["accepted"], 3);
        let (_, answer) = ingest(&app, &key, "FLEET_ACTIVITY", fixture(FLEET)).await;
        assert_eq!(answer["accepted"], 8);
        assert_eq!(answer["topic"], "fleet.activities.events");
        // The wrapped form of the first MeshCentral event is the same event.
        let (_, answer) = ingest_as(
            &app,
            &key,
            "MESHCENTRAL_EVENT",
            "application/json",
            fixture("meshcentral-event-with-schema.json"),
        )
        .await;
        assert_eq!(answer["accepted"], 1);
        settle(&app).await;

        let rows = rows(&app, "acme").await;
        assert_eq!(rows.len(), 17, "round {round}: {rows:#?}");

        let login = row(&rows, "Account login");
        assert_eq!(
            (
                login.tool_type.as_str(),
                login.event_type.as_str(),
                login.severity.as_str()
            ),
            ("MESHCENTRAL", "LOGIN", "INFO")
        );
        assert_eq!(login.user_id.as_deref(), Some("admin"));
        assert_eq!(login.device_id, None);
        assert_eq!(login.ingest_day, "2025-11-20");
        assert_eq!(login.event_timestamp, 1763629201000);

        let added = row(&rows, "Added device ACME-WS-001");
        assert_eq!(added.event_type, "DEVICE_REGISTERED");
        assert_eq!(added.device_id.as_deref(), Some("m-ws-001"));
        assert_eq!(added.hostname.as_deref(), Some("ACME-WS-001"));
        assert_eq!(added.organization_id.as_deref(), Some("org-acme"));
        assert_eq!(added.organization_name.as_deref(), Some("Acme Corp"));

        let removed = row(&rows, "Removed device ACME-SRV-01");
        assert_eq!(removed.event_type, "DEVICE_DELETED");
        assert_eq!(removed.hostname.as_deref(), Some("ACME-SRV-01"));
        assert_eq!(row(&rows, "Upload: C:").event_type, "FILE_OPERATION");
        assert_eq!(
            row(&rows, "Device group created").event_type,
            "GROUP_CREATED"
        );
        assert_eq!(
            row(&rows, "Account password changed").event_type,
            "PASSWORD_CHANGED"
        );
        assert_eq!(
            row(&rows, "Started desktop session").event_type,
            "REMOTE_SESSION_EVENT"
        );

        // Fleet, joined with host_activities: hosts 41 and 57 are Acme's machines.
        let script = row(&rows, "Jane Admin ran script cleanup.sh");
        assert_eq!(
            (script.tool_type.as_str(), script.event_type.as_str()),
            ("FLEET", "SCRIPT_EXECUTED")
        );
        assert_eq!(script.device_id.as_deref(), Some("m-ws-001"));
        assert_eq!(script.user_id.as_deref(), Some("jane@acme.example"));
        let enrolled = row(&rows, "Fleet fleet enrolled");
        assert_eq!(enrolled.event_type, "DEVICE_REGISTERED");
        assert_eq!(enrolled.hostname.as_deref(), Some("ACME-MBP-07"));
        let locked = row(&rows, "Jane Admin locked host");
        assert_eq!(
            (locked.event_type.as_str(), locked.severity.as_str()),
            ("HOST_LOCKED", "WARNING")
        );
        assert_eq!(locked.device_id.as_deref(), Some("m-mbp-07"));
        let failed = row(&rows, "Fleet user failed login");
        assert_eq!(
            (failed.event_type.as_str(), failed.severity.as_str()),
            ("LOGIN_FAILED", "WARNING")
        );
        assert_eq!(failed.device_id, None);
        assert_eq!(
            row(&rows, "Jane Admin created policy").event_type,
            "POLICY_APPLIED"
        );
        assert_eq!(
            row(&rows, "Jane Admin live query").event_type,
            "QUERY_EXECUTED"
        );
        let unknown = row(&rows, "Jane Admin some brand new activity");
        assert_eq!(
            (unknown.event_type.as_str(), unknown.severity.as_str()),
            ("UNKNOWN", "WARNING")
        );

        // Facets count the rows of the tenant.
        let acme = tenant("acme");
        let analytics = &app.state.storage.analytics;
        let severities = analytics
            .log_facets(&acme, &LogFilter::default(), LogFacet::Severity)
            .await
            .unwrap();
        let counts: Vec<(String, u64)> =
            severities.into_iter().map(|f| (f.value, f.count)).collect();
        assert_eq!(counts, [("INFO".to_owned(), 14), ("WARNING".to_owned(), 3)]);
        let tools = analytics
            .log_facets(&acme, &LogFilter::default(), LogFacet::ToolType)
            .await
            .unwrap();
        let counts: Vec<(String, u64)> = tools.into_iter().map(|f| (f.value, f.count)).collect();
        assert_eq!(
            counts,
            [("MESHCENTRAL".to_owned(), 9), ("FLEET".to_owned(), 8)]
        );
        let on_device = LogFilter {
            device_id: Some("m-mbp-07".into()),
            ..LogFilter::default()
        };
        assert_eq!(analytics.count_logs(&acme, &on_device).await.unwrap(), 2);

        // Search finds messages, hostnames and organisation names, once each.
        assert_eq!(search(&app, "acme", "desktop session").await.len(), 2);
        let on_mbp = search(&app, "acme", "ACME-MBP-07").await;
        assert_eq!(on_mbp.len(), 2, "{on_mbp:?}");
        assert!(on_mbp.contains(&locked.tool_event_id));
        // Six MeshCentral and three Fleet events concern Acme's devices.
        assert_eq!(search(&app, "acme", "\"Acme Corp\"").await.len(), 9);
        assert!(search(&app, "globex", "desktop session").await.is_empty());

        // The details keep the full record, source document included.
        let details = app
            .state
            .storage
            .details
            .get(
                &acme,
                &LogKey {
                    timestamp: added.event_timestamp,
                    tool_event_id: added.tool_event_id.clone(),
                },
            )
            .await
            .unwrap()
            .unwrap();
        let details: serde_json::Value = serde_json::from_slice(&details).unwrap();
        assert_eq!(
            details["id"],
            format!("1763629205000_{}", added.tool_event_id)
        );
        assert_eq!(details["eventType"], "DEVICE_REGISTERED");
        assert_eq!(details["hostname"], "ACME-WS-001");
        assert_eq!(details["sourceEventType"], "node.addnode");
        assert_eq!(
            details["debeziumMessage"]["nodeid"],
            super::support::MESH_WS_001
        );
        assert_eq!(
            details["message"],
            "Added device ACME-WS-001 to device group Acme Workstations"
        );
    }
}

#[tokio::test]
async fn bad_events_are_refused_one_by_one_kept_as_dead_letters_and_can_be_replayed() {
    let app = crate::helpers::spawn_app().await;
    let tenants = two_tenants(&app).await;
    let key = ingest_key(&app, &tenants.admin_a).await;
    let mut body = fixture("bad-input.ndjson");
    body.extend_from_slice(
        &fixture(MESH)[..fixture(MESH).iter().position(|b| *b == b'\n').unwrap() + 1],
    );
    let (status, answer) = ingest(&app, &key, "MESHCENTRAL_EVENT", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    let codes: Vec<(u64, &str)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rejected| {
            (
                rejected["index"].as_u64().unwrap(),
                rejected["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            (0, "malformed_json"),
            (1, "missing_after"),
            (2, "invalid_after"),
            (3, "wrong_connector"),
            (4, "empty_array"),
            (5, "event_too_large"),
        ]
    );
    for rejected in answer["rejected"].as_array().unwrap() {
        assert!(
            rejected["reason"].as_str().unwrap().len() > 10,
            "{rejected}"
        );
    }
    // The good event landed.
    settle(&app).await;
    assert_eq!(rows(&app, "acme").await.len(), 1);

    // Each refused event is kept, with why, for an admin of its tenant only.
    let letters = dead_letters(&app, &tenants.admin_a).await;
    assert_eq!(letters["pending"], 6, "{letters}");
    let items = letters["items"].as_array().unwrap();
    assert_eq!(items[1]["code"], "missing_after");
    assert_eq!(items[1]["messageType"], "MESHCENTRAL_EVENT");
    assert_eq!(items[1]["sourceTopic"], "meshcentral.mongodb.events");
    assert!(
        items[1]["payload"]
            .as_str()
            .unwrap()
            .contains("\"collection\":\"events\"")
    );
    let huge_line = fixture("bad-input.ndjson")
        .split(|byte| *byte == b'\n')
        .map(|line| line.trim_ascii().len())
        .max()
        .unwrap();
    assert_eq!(items[5]["payloadBytes"].as_u64().unwrap(), huge_line as u64);
    assert_eq!(items[5]["payload"].as_str().unwrap().len(), 4096);
    let theirs = dead_letters(&app, &tenants.admin_b).await;
    assert_eq!(theirs["pending"], 0);

    // Replayed, they go back through the pipeline, fail again, and are dead letters again:
    // nothing is lost and nothing loops by itself.
    let replayed: serde_json::Value = app
        .client
        .post(app.https_url("/api/stream/dead-letters/replay"))
        .bearer_auth(&tenants.admin_a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replayed["replayed"], 6);
    settle(&app).await;
    let again = dead_letters(&app, &tenants.admin_a).await;
    assert_eq!(again["pending"], 6, "{again}");
    assert_eq!(again["items"][0]["code"], "malformed_json");
    assert_eq!(rows(&app, "acme").await.len(), 1);
}

#[tokio::test]
async fn ingest_needs_a_key_with_the_ingest_scope_a_known_message_type_and_keeps_tenants_apart() {
    let app = crate::helpers::spawn_app().await;
    let tenants = two_tenants(&app).await;
    let key_a = ingest_key(&app, &tenants.admin_a).await;
    let key_b = ingest_key(&app, &tenants.admin_b).await;
    let url = app.https_url("/ingest/v1/debezium");

    let anonymous = app
        .client
        .post(&url)
        .header("message-type", "MESHCENTRAL_EVENT")
        .body(fixture(MESH))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let (_, logs_only, _) = create_key(
        &app,
        &tenants.admin_a,
        serde_json::json!({"name": "reader", "scopes": ["logs:read"]}),
    )
    .await;
    let (status, _) = ingest(&app, &logs_only, "MESHCENTRAL_EVENT", fixture(MESH)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let no_type = app
        .client
        .post(&url)
        .header("x-api-key", &key_a)
        .body(fixture(MESH))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(no_type).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );
    assert!(
        message.contains("message-type") && message.contains("FLEET_MDM_EVENT"),
        "{message}"
    );
    let (status, answer) = ingest(&app, &key_a, "KAFKA_EVENT", fixture(MESH)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["message"].as_str().unwrap().contains("KAFKA_EVENT"));
    let (status, answer) = ingest(&app, &key_a, "MESHCENTRAL_EVENT", b"[]".to_vec()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an NDJSON line that is an empty array is one refusal"
    );
    assert_eq!(answer["rejected"][0]["code"], "empty_array");
    let empty = app
        .client
        .post(&url)
        .header("x-api-key", &key_a)
        .header("message-type", "MESHCENTRAL_EVENT")
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(empty).await.1, "invalid_input");

    // Globex's events are Globex's, whatever they say inside.
    let (status, answer) = ingest(&app, &key_b, "MESHCENTRAL_EVENT", fixture(MESH)).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (StatusCode::OK, Some(9))
    );
    settle(&app).await;
    assert!(rows(&app, "acme").await.is_empty());
    let globex = rows(&app, "globex").await;
    assert_eq!(globex.len(), 9);
    // Globex has no inventory: its device events are logged, unattributed, and say why.
    assert!(globex.iter().all(|row| row.hostname.is_none()));
    let removed = super::support::row(&globex, "Removed device ACME-SRV-01");
    let details = app
        .state
        .storage
        .details
        .get(
            &tenant("globex"),
            &LogKey {
                timestamp: removed.event_timestamp,
                tool_event_id: removed.tool_event_id.clone(),
            },
        )
        .await
        .unwrap()
        .unwrap();
    let details: serde_json::Value = serde_json::from_slice(&details).unwrap();
    let why = details["unattributed"].as_str().unwrap();
    assert!(
        why.contains("no MESHCENTRAL tool connection") && why.contains(super::support::MESH_SRV_01),
        "{why}"
    );
}
