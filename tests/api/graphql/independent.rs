//! An independent GraphQL client, not the appliance's code: graphql-python's `gql` on
//! graphql-core (`independent_client.py`) introspects the schema, builds and validates a client
//! schema from it, runs queries and a mutation checked against that schema, and subscribes to
//! live logs over WebSocket (graphql-transport-ws) while this test feeds the pipeline.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::gateway::support::two_tenants;
use crate::helpers::spawn_app;
use crate::stream::support::{fixture, ingest, ingest_key, seed_inventory};

const INSTALL: &str = "pip install 'gql[requests,websockets]' (.ci/run does)";

#[tokio::test]
async fn an_independent_client_introspects_queries_and_subscribes_to_live_logs() {
    let available = std::process::Command::new("python3")
        .args(["-c", "import gql, graphql, requests, websockets"])
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    assert!(available, "this test needs python3 with gql: {INSTALL}");

    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    seed_inventory(&app, "acme").await;
    let key = ingest_key(&app, &tenants.admin_a).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api/graphql/independent_client.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(&script)
        .env("OPENFRAME_GRAPHQL_URL", app.https_url("/api/graphql"))
        .env("OPENFRAME_TOKEN", &tenants.admin_a)
        .env("OPENFRAME_CA", app.cert_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let mut report: HashMap<String, Value> = HashMap::new();

    // Queries first, until the client says it is ready for live logs.
    while !report.contains_key("READY") {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the client answers within a minute")
            .unwrap();
        let Some(line) = line else {
            let mut errors = String::new();
            stderr.read_to_string(&mut errors).await.unwrap();
            panic!("the client ended early: {errors}");
        };
        let (tag, value) = line.split_once(' ').unwrap();
        assert_ne!(tag, "ERROR", "{value}");
        report.insert(tag.to_owned(), serde_json::from_str(value).unwrap());
    }

    // Then events, until the subscription has delivered one: however late the server starts
    // the subscription, a later batch reaches it.
    for _ in 0..20 {
        let (status, _) = ingest(
            &app,
            &key,
            "MESHCENTRAL_EVENT",
            fixture("meshcentral-events.ndjson"),
        )
        .await;
        assert_eq!(status, 200);
        match tokio::time::timeout(Duration::from_secs(2), lines.next_line()).await {
            Ok(line) => {
                let line = line.unwrap().expect("the client reports");
                let (tag, value) = line.split_once(' ').unwrap();
                assert_ne!(tag, "ERROR", "{value}");
                report.insert(tag.to_owned(), serde_json::from_str(value).unwrap());
                if tag == "FIRST" {
                    break;
                }
            }
            Err(_) => continue,
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the client ends")
        .unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        let (tag, value) = line.split_once(' ').unwrap();
        report.insert(tag.to_owned(), serde_json::from_str(value).unwrap());
    }
    assert!(status.success(), "{report:?}");

    // The schema as graphql-core built it from introspection.
    let schema = &report["SCHEMA"];
    let names = |field: &str| -> Vec<String> {
        schema[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|name| name.as_str().unwrap().to_owned())
            .collect()
    };
    for operation in [
        "devices",
        "deviceFilters",
        "device",
        "deviceById",
        "organizations",
        "organization",
        "organizationByOrganizationId",
        "integratedTools",
        "toolFilters",
        "tags",
        "tagValueOptions",
        "tagKeySuggestions",
        "tagValueSuggestions",
        "events",
        "eventById",
        "eventFilters",
        "logs",
        "logFilters",
        "logDetails",
        "incidents",
        "incident",
        "me",
        "node",
        "nodes",
    ] {
        assert!(
            names("query").contains(&operation.to_owned()),
            "query {operation}"
        );
    }
    for operation in [
        "updateDeviceNickname",
        "createTag",
        "updateTag",
        "deleteTag",
        "createEvent",
        "updateEvent",
        "createScript",
        "batchRunScript",
        "runCommand",
        "cancelExecution",
        "createScriptSchedule",
        "setScriptScheduleDevices",
        "runScheduleJobNow",
        "acknowledgeIncident",
        "resolveIncident",
    ] {
        assert!(
            names("mutation").contains(&operation.to_owned()),
            "mutation {operation}"
        );
    }
    assert_eq!(names("subscription"), ["logStream", "notificationStream"]);
    assert_eq!(
        names("nodes"),
        [
            "Event",
            "IntegratedTool",
            "Machine",
            "Organization",
            "ScheduleRun",
            "Script",
            "ScriptExecution",
            "ScriptSchedule",
            "Tag"
        ]
    );

    // Paged forward two at a time: all three devices of the seeded inventory, by hostname.
    assert_eq!(
        report["DEVICES"],
        json!([["ACME-MBP-07", "ACME-SRV-01"], ["ACME-WS-001"]])
    );
    assert_eq!(
        report["TAG"],
        json!({"created": "rack", "color": "#00aa00", "node": {"__typename": "Tag", "key": "rack"}})
    );
    assert!(
        report["INVALID"]
            .as_str()
            .unwrap()
            .starts_with("refused by the client"),
        "{:?}",
        report["INVALID"]
    );

    // A live entry, enriched by the pipeline from the inventory.
    let first = &report["FIRST"];
    assert_eq!(first["toolType"], "MESHCENTRAL");
    assert_eq!(first["organizationName"], "Acme Corp");
    assert!(
        first["hostname"].as_str().unwrap().starts_with("ACME-"),
        "{first}"
    );
}
