//! What tenancy schema 2's field indexes buy and cost, measured in one run on the same data.
//!
//! Run: `cargo bench -p openframe-storage --no-default-features --bench document_lookup`
//!
//! - lookup: `find_by_field` in a collection of 20,000 documents of which 40 match, by an indexed
//!   field (`status`) and by a field with the same values that no index covers (`state`), which is
//!   how every lookup ran at schema 1;
//! - write: new documents written one by one (each a durable commit) into a store with the
//!   indexes and into one whose indexes were dropped (schema 1's cost), for documents carrying
//!   every indexed field (the worst case) and one (a session).
//!
//! Set `OPENFRAME_BENCH_DIR` to put the files on a particular disk (default: the temp dir).

// A benchmark without the libtest harness, so clippy does not know it is test code: a failure here
// must abort loudly, and the report goes to stdout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openframe_storage::Engine;
use openframe_storage::documents::{DocumentStore, Tenant, TenantStatus, TenantStore};
use openframe_storage::model::{Collection, DocumentId, SystemClock, TenantId};
use openframe_storage::sqlite::SqliteStore;
use serde_json::json;

const DOCUMENTS: usize = 20_000;
/// One document in `MATCH_EVERY` matches the lookup.
const MATCH_EVERY: usize = 500;
const WRITES: usize = 2_000;
const RUN_FOR: Duration = Duration::from_secs(3);
const INDEXES: [&str; 6] = [
    "documents_by_user_id",
    "documents_by_status",
    "documents_by_machine_id",
    "documents_by_execution_id",
    "documents_by_token_hash",
    "documents_by_subscription_id",
];

fn body(n: usize) -> serde_json::Value {
    let status = if n.is_multiple_of(MATCH_EVERY) {
        "PENDING"
    } else {
        "DONE"
    };
    json!({
        "status": status,
        "state": status,
        "userId": format!("user-{}", n % 300),
        "machineId": format!("machine-{n}"),
        "executionId": format!("execution-{}", n / 10),
        "tokenHash": format!("{n:064x}"),
        "subscriptionId": format!("subscription-{}", n % 7),
        "output": "x".repeat(300),
    })
}

async fn open(path: &Path, drop_indexes: bool) -> (Arc<SqliteStore>, TenantId) {
    drop(SqliteStore::open(path, Arc::new(SystemClock)).unwrap());
    if drop_indexes {
        let connection = rusqlite::Connection::open(path).unwrap();
        for index in INDEXES {
            connection
                .execute_batch(&format!("DROP INDEX {index}"))
                .unwrap();
        }
    }
    let store = Arc::new(SqliteStore::open(path, Arc::new(SystemClock)).unwrap());
    let tenant = TenantId::parse("bench").unwrap();
    store
        .create_tenant(&Tenant {
            id: tenant.clone(),
            name: "Bench".into(),
            status: TenantStatus::Active,
            created_at: 1,
        })
        .await
        .unwrap();
    (store, tenant)
}

/// Calls per second and the median call of `find_by_field(field = "PENDING")`.
async fn lookups(
    store: &SqliteStore,
    tenant: &TenantId,
    runs: &Collection,
    field: &str,
) -> (f64, Duration) {
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < RUN_FOR {
        let call = Instant::now();
        let found = store
            .find_by_field(tenant, runs, field, &json!("PENDING"), 100)
            .await
            .unwrap();
        latencies.push(call.elapsed());
        assert_eq!(found.len(), DOCUMENTS / MATCH_EVERY);
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    (rate, latencies[latencies.len() / 2])
}

/// A session-like document: one indexed field.
fn session(n: usize) -> serde_json::Value {
    json!({"userId": format!("user-{}", n % 300), "expiresAt": n, "output": "x".repeat(300)})
}

/// Durable replaces per second of `WRITES` new documents made by `make` into `collection`.
async fn writes(
    store: &SqliteStore,
    tenant: &TenantId,
    collection: &str,
    make: fn(usize) -> serde_json::Value,
) -> f64 {
    let collection = Collection::parse(collection).unwrap();
    let started = Instant::now();
    for n in 0..WRITES {
        let id = DocumentId::parse(&format!("w{n:06}")).unwrap();
        store
            .replace(tenant, &collection, &id, &make(n), None)
            .await
            .unwrap();
    }
    WRITES as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = std::env::var_os("OPENFRAME_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    runtime.block_on(async {
        let dir = tempfile::TempDir::new_in(&base).unwrap();

        let (indexed, tenant) = open(&dir.path().join("indexed.sqlite"), false).await;
        let (plain, _) = open(&dir.path().join("plain.sqlite"), true).await;
        let mut written = Vec::new();
        for (what, collection, make) in [
            ("every indexed field", "runs", body as fn(usize) -> serde_json::Value),
            ("one indexed field (a session)", "sessions", session),
        ] {
            // Alternated, so a change in the disk's speed meanwhile touches both alike.
            let with_indexes = writes(&indexed, &tenant, collection, make).await;
            let without_indexes = writes(&plain, &tenant, collection, make).await;
            written.push((what, with_indexes, without_indexes));
        }
        plain.close().await.unwrap();

        // Through the store, each document would be a commit of its own: the lookup collection
        // goes in as one transaction on a plain connection, then the store reopens.
        indexed.close().await.unwrap();
        {
            let mut connection = rusqlite::Connection::open(dir.path().join("indexed.sqlite")).unwrap();
            let transaction = connection.transaction().unwrap();
            for n in 0..DOCUMENTS {
                transaction
                    .execute(
                        "INSERT INTO documents (tenant_id, collection, id, version, body, updated_at)
                         VALUES ('bench', 'lookup', ?1, 1, ?2, 1)",
                        rusqlite::params![format!("d{n:06}"), body(n).to_string()],
                    )
                    .unwrap();
            }
            transaction.commit().unwrap();
        }
        let store = SqliteStore::open(&dir.path().join("indexed.sqlite"), Arc::new(SystemClock)).unwrap();
        let lookup = Collection::parse("lookup").unwrap();
        let (indexed_rate, indexed_median) = lookups(&store, &tenant, &lookup, "status").await;
        let (scan_rate, scan_median) = lookups(&store, &tenant, &lookup, "state").await;
        store.close().await.unwrap();

        println!("| {DOCUMENTS} documents, {} match | calls/s | median call |", DOCUMENTS / MATCH_EVERY);
        println!("|---|---:|---:|");
        println!("| find_by_field, indexed field (schema 2) | {indexed_rate:.0} | {:.3} ms |", indexed_median.as_secs_f64() * 1e3);
        println!("| find_by_field, unindexed field (schema 1) | {scan_rate:.0} | {:.3} ms |", scan_median.as_secs_f64() * 1e3);
        println!("| ratio | {:.1}x | |", indexed_rate / scan_rate);
        println!();
        println!("| durable replace of a new document, one at a time | with the indexes (schema 2) | without (schema 1) | ratio |");
        println!("|---|---:|---:|---:|");
        for (what, with_indexes, without_indexes) in written {
            println!(
                "| carrying {what} | {with_indexes:.0}/s | {without_indexes:.0}/s | {:.2}x |",
                with_indexes / without_indexes
            );
        }
    });
}
