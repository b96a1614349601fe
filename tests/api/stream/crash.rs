//! Acknowledged means durable: the real binary is killed with SIGKILL in the middle of sustained
//! ingest; after a restart, every event it acknowledged is in the log details and, once the
//! pipeline has caught up, in the analytics table and the search index, exactly once.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openframe::stream::tools::tool_event_id;
use openframe_storage::analytics::LogFilter;
use openframe_storage::details::LogKey;
use openframe_storage::search::{DocumentKind, SearchQuery};
use reqwest::StatusCode;

use super::support::settle;
use crate::cli::{openframe, serve};
use crate::gateway::support::tenant;
use crate::helpers::{spawn_app_in, trusting_client};

pub(crate) const BATCH: u64 = 50;
const WRITERS: usize = 4;
/// The first event's time; event `n` happens `n` ms later.
pub(crate) const START_MS: i64 = 1_763_629_201_000;

pub(crate) fn oid(n: u64) -> String {
    format!("c{n:023}")
}

/// `BATCH` MeshCentral logins, numbered from `first`, as NDJSON.
pub(crate) fn batch(first: u64) -> String {
    let mut body = String::new();
    for n in first..first + BATCH {
        let document = serde_json::json!({
            "_id": {"$oid": oid(n)}, "etype": "user", "action": "login", "username": "crash",
            "msg": format!("crash login {n}"), "domain": "",
            "time": {"$date": START_MS + n as i64},
        });
        let envelope = serde_json::json!({
            "before": null, "after": document.to_string(), "op": "c",
            "source": {"connector": "mongodb", "collection": "events"},
        });
        body.push_str(&envelope.to_string());
        body.push('\n');
    }
    body
}

#[tokio::test]
async fn every_event_acknowledged_before_a_sigkill_is_logged_after_restart() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let init = openframe(&[
        "init",
        "--data-dir",
        data_arg,
        "--tenant",
        "acme",
        "--admin-email",
        "owner@acme.example",
    ]);
    assert!(init.status.success(), "{init:?}");
    let created = openframe(&[
        "apikey",
        "create",
        "--data-dir",
        data_arg,
        "--tenant",
        "acme",
        "--name",
        "crash",
        "--scope",
        "ingest",
        "--per-minute",
        "100000000",
        "--per-hour",
        "100000000",
        "--per-day",
        "100000000",
        "--json",
    ]);
    assert!(created.status.success(), "{created:?}");
    let key = serde_json::from_slice::<serde_json::Value>(&created.stdout).unwrap()["fullKey"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut served = serve(&data);
    let port = served.https.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}/ingest/v1/debezium");
    let client = trusting_client(&data.join("tls/cert.pem"));
    let next_batch = Arc::new(AtomicU64::new(0));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        let (next_batch, acknowledged) = (next_batch.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let first = next_batch.fetch_add(1, Ordering::SeqCst) * BATCH;
                let answer = client
                    .post(&url)
                    .header("x-api-key", &key)
                    .header("message-type", "MESHCENTRAL_EVENT")
                    .header("content-type", "application/x-ndjson")
                    .body(batch(first))
                    .send()
                    .await;
                // After the kill, requests fail: that writer is done.
                let Ok(response) = answer else { return };
                let status = response.status();
                let Ok(body) = response.json::<serde_json::Value>().await else {
                    return;
                };
                assert_eq!(status, StatusCode::OK, "{body}");
                assert_eq!(body["accepted"], BATCH, "{body}");
                acknowledged.lock().unwrap().extend(first..first + BATCH);
            }
        }));
    }
    // Sustained ingest for a while, then the process dies mid-request.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < 2_000 {
        assert!(tokio::time::Instant::now() < deadline, "ingest is too slow");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    served.signal("KILL");
    let (status, _) = served.wait();
    assert_eq!(status.code(), None, "killed by a signal");
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged: Vec<u64> = acknowledged.lock().unwrap().iter().copied().collect();
    let sent = next_batch.load(Ordering::SeqCst) * BATCH;
    assert!(acknowledged.len() as u64 <= sent);

    // Restarted on the same data dir, the pipeline catches up with what was acknowledged.
    let app = spawn_app_in(&data).await;
    settle(&app).await;
    let acme = tenant("acme");
    let storage = &app.state.storage;
    let ids: Vec<String> = acknowledged
        .iter()
        .map(|n| tool_event_id("meshcentral", "events", &oid(*n)))
        .collect();
    for (n, id) in acknowledged.iter().zip(&ids) {
        let key = LogKey {
            timestamp: START_MS + *n as i64,
            tool_event_id: id.clone(),
        };
        assert!(
            storage.details.get(&acme, &key).await.unwrap().is_some(),
            "event {n} has no details"
        );
    }
    for chunk in ids.chunks(1000) {
        let filter = LogFilter {
            tool_event_ids: Some(chunk.to_vec()),
            ..LogFilter::default()
        };
        assert_eq!(
            storage.analytics.count_logs(&acme, &filter).await.unwrap(),
            chunk.len() as u64
        );
    }
    // Rows beyond the acknowledged ones may exist (appended, the answer lost in the kill), but
    // no more than were sent; the per-chunk counts above show none was written twice.
    let total = storage
        .analytics
        .count_logs(&acme, &LogFilter::default())
        .await
        .unwrap();
    assert!(
        total >= acknowledged.len() as u64 && total <= sent,
        "{total} rows"
    );

    let mut found = BTreeSet::new();
    let mut from = START_MS;
    let end = START_MS + sent as i64;
    while from < end {
        let query = SearchQuery {
            text: String::new(),
            kind: Some(DocumentKind::Log),
            from: Some(from),
            to: Some(from + 5_000),
            limit: 10_000,
        };
        for hit in storage.search.search(&acme, &query).await.unwrap() {
            found.insert(hit.id);
        }
        from += 5_000;
    }
    for (n, id) in acknowledged.iter().zip(&ids) {
        assert!(found.contains(id), "event {n} is not searchable");
    }
}
