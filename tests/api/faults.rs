//! Fault injection on the real binary: the files `serve` writes are capped (`ulimit -f`, EFBIG, as
//! a full disk's ENOSPC) while integrators keep writing. Writes are refused with 503 and
//! `Retry-After`, readiness names the store, nothing acknowledged is lost (even to SIGKILL),
//! nothing refused is half-stored, and writes resume once there is room, without a restart.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::cli::{openframe, serve, serve_with_file_limit};
use crate::gateway::support::tenant;
use crate::helpers::{spawn_app_in, trusting_client};
use crate::stream::crash::{BATCH, START_MS, batch, oid};
use crate::stream::support::settle;

const CAP_KIB: u64 = 1200;

/// A tenant and an API key with `scopes`, made with the CLI.
fn tenant_with_key(data: &Path, scopes: &[&str]) -> String {
    let data_arg = data.to_str().unwrap();
    let init = openframe(&[
        "init",
        "--data-dir",
        data_arg,
        "--tenant",
        "acme",
        "--admin-email",
        "owner@acme.example",
        "--admin-password",
        "Faults-pass-123!",
    ]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let key = openframe(
        &[
            "apikey",
            "create",
            "--data-dir",
            data_arg,
            "--tenant",
            "acme",
            "--name",
            "faults",
            "--per-minute",
            "1000000",
            "--per-hour",
            "1000000",
            "--per-day",
            "1000000",
            "--json",
        ]
        .into_iter()
        .chain(scopes.iter().flat_map(|scope| ["--scope", scope]))
        .collect::<Vec<_>>(),
    );
    assert!(
        key.status.success(),
        "{}",
        String::from_utf8_lossy(&key.stderr)
    );
    let created: Value = serde_json::from_slice(&key.stdout).unwrap();
    created["fullKey"].as_str().unwrap().to_owned()
}

async fn create(
    client: &reqwest::Client,
    https: &str,
    key: &str,
    name: &str,
) -> (StatusCode, Option<String>, Value) {
    let response = client
        .post(format!("https://{https}/external-api/api/v1/organizations"))
        .header("x-api-key", key)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.unwrap())
}

async fn readiness(admin: &str) -> (StatusCode, Value) {
    let response = reqwest::get(format!("http://{admin}/health/ready"))
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// Every customer's name, through every page.
async fn names(client: &reqwest::Client, https: &str, key: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("https://{https}/external-api/api/v1/organizations?limit=100");
        if let Some(after) = &cursor {
            url.push_str(&format!("&cursor={after}"));
        }
        let page: Value = client
            .get(url)
            .header("x-api-key", key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for organization in page["organizations"].as_array().unwrap() {
            names.push(organization["name"].as_str().unwrap().to_owned());
        }
        match page["pageInfo"]["endCursor"].as_str() {
            Some(end) if page["pageInfo"]["hasNextPage"] == true => cursor = Some(end.to_owned()),
            _ => break,
        }
    }
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_503_loses_nothing_acknowledged_and_recovers() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let key = tenant_with_key(&data, &["organizations:read", "organizations:write"]);
    let served = serve_with_file_limit(&data, CAP_KIB);
    let client = trusting_client(&data.join("tls/cert.pem"));

    let padding = "x".repeat(150);
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    for n in 0..5_000 {
        let name = format!("Customer {n:05} {padding}");
        let (status, retry_after, body) = create(&client, &served.https, &key, &name).await;
        match status {
            StatusCode::CREATED => acknowledged.push(name),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(body["code"], "store_unavailable", "{body}");
                let seconds: u64 = retry_after
                    .expect("a 503 says when to retry")
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&seconds), "{seconds}");
                refused.push(name);
                if refused.len() == 3 {
                    break;
                }
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(refused.len(), 3, "the cap was reached");
    assert!(
        acknowledged.len() > 10,
        "{} written first",
        acknowledged.len()
    );
    // Readiness names the failing store; reads alone would have looked healthy.
    let (status, ready) = readiness(&served.admin).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["stores"]["documents"]["status"], "down", "{ready}");
    assert!(
        ready["stores"]["documents"]["problem"]
            .as_str()
            .is_some_and(|problem| problem.contains("writes are failing")),
        "{ready}"
    );

    // Room again (the cap lifted from the running process): the next write goes through.
    let lifted = Command::new("prlimit")
        .args(["--pid", &served.pid().to_string(), "--fsize=unlimited:"])
        .status()
        .unwrap();
    assert!(lifted.success());
    let (status, _, body) = create(&client, &served.https, &key, "After the disk was freed").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    acknowledged.push("After the disk was freed".to_owned());
    let (status, ready) = readiness(&served.admin).await;
    assert_eq!(status, StatusCode::OK, "{ready}");

    // Killed outright, then started: exactly what was acknowledged.
    let mut served = served;
    served.signal("KILL");
    served.wait();
    let served = serve(&data);
    let stored = names(&client, &served.https, &key).await;
    acknowledged.sort();
    assert_eq!(stored, acknowledged);
    for name in &refused {
        assert!(!stored.contains(name), "refused yet stored: {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_ingest_with_503_resumes_with_room_and_loses_no_acknowledged_event() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let key = tenant_with_key(&data, &["ingest"]);
    let served = serve_with_file_limit(&data, CAP_KIB);
    let client = trusting_client(&data.join("tls/cert.pem"));
    let url = format!("https://{}/ingest/v1/debezium", served.https);

    let mut acknowledged = Vec::new();
    let mut refused = None;
    for first in (0..2_000).map(|n| n * BATCH) {
        let response = client
            .post(&url)
            .header("x-api-key", &key)
            .header("message-type", "MESHCENTRAL_EVENT")
            .header("content-type", "application/x-ndjson")
            .body(batch(first))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let retry_after = response.headers().get("retry-after").cloned();
        let body: Value = response.json().await.unwrap();
        if status == StatusCode::OK {
            assert_eq!(body["accepted"], BATCH, "{body}");
            acknowledged.extend(first..first + BATCH);
            continue;
        }
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("store_unavailable")),
            "{body}"
        );
        assert!(retry_after.is_some(), "a 503 says when to retry");
        refused = Some(first);
        break;
    }
    let refused = refused.expect("the cap was reached");
    assert!(
        acknowledged.len() > 100,
        "{} acknowledged first",
        acknowledged.len()
    );
    // Readiness is not asserted here: small writes (the pipeline's offsets) may still fit in
    // the file's free pages and succeed in between, which clears it.
    // Room again: the event log is reopened (redb refuses writes after an I/O error until then),
    // so ingest resumes within a few of the retries the 503s asked for.
    let lifted = Command::new("prlimit")
        .args(["--pid", &served.pid().to_string(), "--fsize=unlimited:"])
        .status()
        .unwrap();
    assert!(lifted.success());
    let resumed = refused + BATCH;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let response = client
            .post(&url)
            .header("x-api-key", &key)
            .header("message-type", "MESHCENTRAL_EVENT")
            .header("content-type", "application/x-ndjson")
            .body(batch(resumed))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::OK {
            acknowledged.extend(resumed..resumed + BATCH);
            break;
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest did not resume"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let (status, ready) = readiness(&served.admin).await;
    assert_eq!(status, StatusCode::OK, "{ready}");

    let mut served = served;
    served.signal("KILL");
    served.wait();
    let app = spawn_app_in(&data).await;
    settle(&app).await;
    let acme = tenant("acme");
    let logged = |n: u64| {
        let key = openframe_storage::details::LogKey {
            timestamp: START_MS + n as i64,
            tool_event_id: openframe::stream::tools::tool_event_id(
                "meshcentral",
                "events",
                &oid(n),
            ),
        };
        let details = app.state.storage.details.clone();
        let acme = acme.clone();
        async move { details.get(&acme, &key).await.unwrap().is_some() }
    };
    for n in &acknowledged {
        assert!(logged(*n).await, "acknowledged event {n} is not logged");
    }
    for n in refused..refused + BATCH {
        assert!(!logged(n).await, "refused event {n} is logged");
    }
}
