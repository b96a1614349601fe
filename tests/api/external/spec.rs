//! The external API against its own OpenAPI document, checked by a property-based tester that
//! is not ours: schemathesis reads the live `/external-api/api-docs`, generates valid and
//! invalid requests for every operation (with a key holding every scope, over TLS checked
//! against the appliance's certificate) and checks each answer: no 5xx, every status, header,
//! content type and body as the document says, invalid input refused, missing auth refused.
//!
//! Not checked: `positive_data_acceptance` (a request the document allows is answered 2xx),
//! because some rules are not expressible in a schema: cursors must be ones the API returned,
//! names unique, dates in order. Those answers are still checked to be documented 4xx errors.

use std::process::Stdio;

use serde_json::json;

use crate::gateway::support::{create_key, tenant, two_tenants};
use crate::graphql::logs::{entry, put_log};
use crate::graphql::support::{machine, put_machine, put_org};
use crate::helpers::spawn_app;

const INSTALL: &str = "pip install 'schemathesis>=4.32,<5' (.ci/run does)";

/// The tester's command: `python3 -m schemathesis.cli`, so that no PATH entry is needed.
fn schemathesis() -> std::process::Command {
    let mut command = std::process::Command::new("python3");
    command.args(["-m", "schemathesis.cli"]);
    command
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let available = schemathesis()
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(available, "this test needs schemathesis: {INSTALL}");

    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    // Data to find: devices, organizations and log entries in both tenants.
    put_org(&app, "acme", "org-east", "East Clinic").await;
    put_machine(&app, "acme", machine("m-1", "host-a", "ONLINE", "org-east")).await;
    put_machine(
        &app,
        "acme",
        machine("m-2", "host-b", "OFFLINE", "org-east"),
    )
    .await;
    for i in 0..3 {
        put_log(
            &app,
            "acme",
            entry(
                &format!("e-{i}"),
                1_795_168_800_000 + i * 60_000,
                "tech logged in",
            ),
        )
        .await;
    }
    put_org(&app, "globex", "org-west", "West Clinic").await;
    put_machine(
        &app,
        "globex",
        machine("g-1", "host-g", "ONLINE", "org-west"),
    )
    .await;
    let theirs = |app: &crate::helpers::TestApp| {
        let inventory = app.state.inventory.clone();
        async move {
            inventory
                .view(&tenant("globex"), |machines, organizations| {
                    (
                        serde_json::to_string(&machines.values().collect::<Vec<_>>()).unwrap(),
                        serde_json::to_string(&organizations.values().collect::<Vec<_>>()).unwrap(),
                    )
                })
                .await
                .unwrap()
        }
    };
    let before = theirs(&app).await;

    let (_, key, _) = create_key(
        &app,
        &tenants.admin_a,
        json!({
            "name": "schemathesis",
            "scopes": ["devices:read", "devices:write", "organizations:read",
                       "organizations:write", "logs:read", "events:read", "events:write",
                       "tools:read", "webhooks:read", "webhooks:write"],
            "rateLimits": {"perMinute": 100000, "perHour": 1000000, "perDay": 10000000},
        }),
    )
    .await;

    // Identifiers the document cannot supply: a device and a log entry that exist.
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        r#"[parameters]
"path.machineId" = "m-1"
"query.ingestDay" = "2026-11-20"
"query.toolType" = "MESHCENTRAL"
"query.eventType" = "LOGIN"
"query.timestamp" = "2026-11-20T10:01:00Z"
"query.toolEventId" = "e-1"
"#,
    )
    .unwrap();
    let run = tokio::task::spawn_blocking({
        let spec = app.https_url("/external-api/api-docs");
        let cert = app.cert_path();
        let dir = work.path().to_owned();
        move || {
            schemathesis()
                .current_dir(&dir)
                .arg("--config-file")
                .arg(&config)
                .arg("run")
                .arg(&spec)
                .arg("--tls-verify")
                .arg(&cert)
                .args(["-H", &format!("X-API-Key: {key}")])
                .args(["--checks", "all"])
                .args(["--exclude-checks", "positive_data_acceptance"])
                .args(["--max-examples", "40", "--seed", "20261127", "--no-color"])
                .args(["--generation-database", "none"])
                // A kept-alive connection the server closes as idle (its header-read timeout)
                // can race a request on a loaded machine; a transport error is retried, an
                // answer never is.
                .args(["--request-retries", "2"])
                .output()
        }
    })
    .await
    .unwrap()
    .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // It reached every operation of the document and generated cases for them.
    assert!(report.contains("Open API 3.1.0"), "{report}");
    let operations = report
        .lines()
        .find(|line| line.trim_start().starts_with("Tested:"))
        .unwrap_or_else(|| panic!("no operation count in:\n{report}"));
    assert!(operations.trim().ends_with("31"), "{operations}");
    assert!(report.contains("passed"), "{report}");

    // A key of the other tenant's: none of its devices or organizations changed.
    assert_eq!(theirs(&app).await, before);
}
