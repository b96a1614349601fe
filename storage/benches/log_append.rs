//! Durable append throughput and commit latency of the embedded event log.
//!
//! Run: `cargo bench -p openframe-storage --no-default-features --bench log_append`
//! (without DuckDB, which the log does not use, so a release build takes minutes, not half an hour).
//!
//! Each scenario appends ~500-byte records with `append_batch` and waits for every acknowledgement,
//! i.e. for the fsync'd commit. Single-producer rows show the cost of one commit per batch;
//! concurrent rows show group commit: many callers, one fsync per group.
//! Set `OPENFRAME_BENCH_DIR` to put the log on a particular disk (default: the temp dir).

// A benchmark without the libtest harness, so clippy does not know it is test code: a failure here
// must abort loudly, and the report goes to stdout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use openframe_storage::Engine;
use openframe_storage::log::{EventLog, NewRecord};
use openframe_storage::model::{SystemClock, TenantId, Topic};
use openframe_storage::redb_log::RedbLog;

const RECORD_BYTES: usize = 500;
const RUN_FOR: Duration = Duration::from_secs(4);

struct Scenario {
    name: &'static str,
    producers: usize,
    batch: usize,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "batch 1, 1 producer",
        producers: 1,
        batch: 1,
    },
    Scenario {
        name: "batch 100, 1 producer",
        producers: 1,
        batch: 100,
    },
    Scenario {
        name: "batch 1000, 1 producer",
        producers: 1,
        batch: 1000,
    },
    Scenario {
        name: "batch 1, 64 producers (group commit)",
        producers: 64,
        batch: 1,
    },
    Scenario {
        name: "batch 100, 16 producers (group commit)",
        producers: 16,
        batch: 100,
    },
];

fn record(i: usize) -> NewRecord {
    let mut value = format!("{{\"seq\":{i},\"payload\":\"").into_bytes();
    value.resize(RECORD_BYTES - 2, b'x');
    value.extend_from_slice(b"\"}");
    NewRecord {
        key: None,
        headers: vec![("message-type".into(), b"MESHCENTRAL_EVENT".to_vec())],
        value,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects scenarios by substring.
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = std::env::var_os("OPENFRAME_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    println!("| scenario | events/s | batches/s | p50 commit | p99 commit |");
    println!("|---|---:|---:|---:|---:|");
    for scenario in SCENARIOS {
        if filter
            .as_ref()
            .is_some_and(|f| !scenario.name.contains(f.as_str()))
        {
            continue;
        }
        let dir = tempfile::TempDir::new_in(&base).unwrap();
        let log = Arc::new(
            RedbLog::open(&dir.path().join("events.redb"), Arc::new(SystemClock)).unwrap(),
        );
        let (events, batches, mut latencies, elapsed) =
            runtime.block_on(run(log.clone(), scenario));
        runtime.block_on(log.close()).unwrap();
        latencies.sort_unstable();
        println!(
            "| {} | {:.0} | {:.0} | {:.2} ms | {:.2} ms |",
            scenario.name,
            events as f64 / elapsed.as_secs_f64(),
            batches as f64 / elapsed.as_secs_f64(),
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        );
    }
}

async fn run(log: Arc<RedbLog>, scenario: &Scenario) -> (usize, usize, Vec<Duration>, Duration) {
    let tenant = TenantId::parse("bench").unwrap();
    let topic = Topic::parse("meshcentral.mongodb.events").unwrap();
    let batch: Vec<NewRecord> = (0..scenario.batch).map(record).collect();
    let started = Instant::now();
    let mut producers = tokio::task::JoinSet::new();
    for _ in 0..scenario.producers {
        let (log, tenant, topic, batch) =
            (log.clone(), tenant.clone(), topic.clone(), batch.clone());
        producers.spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < RUN_FOR {
                let sent = Instant::now();
                log.append_batch(&tenant, &topic, batch.clone())
                    .await
                    .unwrap();
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(result) = producers.join_next().await {
        latencies.extend(result.unwrap());
    }
    let elapsed = started.elapsed();
    let batches = latencies.len();
    (batches * scenario.batch, batches, latencies, elapsed)
}
