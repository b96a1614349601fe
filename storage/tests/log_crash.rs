//! Crash safety of the event log: a child process appends in a loop (four concurrent writers, so
//! group commits happen) and prints every acknowledgement; the parent kills it with SIGKILL at a
//! random moment, many times over. After each kill the parent reopens the log and checks that every
//! acknowledged offset is present with exactly the bytes written, that offsets have no gaps, and
//! that committed consumer offsets survived.
//!
//! One binary plays both roles (no test harness): with `OPENFRAME_CRASH_CHILD` set it is the child.

// A test without the libtest harness, so clippy does not know it is test code: a failure here
// must abort loudly, and the report goes to stdout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openframe_storage::Engine;
use openframe_storage::log::{EventLog, NewRecord};
use openframe_storage::model::{GroupId, Offset, SystemClock, TenantId, Topic};
use openframe_storage::redb_log::RedbLog;

const KILLS: u32 = 30;
const WRITERS: usize = 4;
const CHILD_ENV: &str = "OPENFRAME_CRASH_CHILD";

fn tenant() -> TenantId {
    TenantId::parse("crash-test").unwrap()
}

fn topic(writer: usize) -> Topic {
    Topic::parse(&format!("crash.writer-{writer}")).unwrap()
}

fn group() -> GroupId {
    GroupId::parse("crash-consumer").unwrap()
}

/// The bytes stored at `offset` of writer `writer`'s topic: ~500 bytes that differ per record,
/// so a torn, shifted or swapped record cannot pass for the right one.
fn payload(writer: usize, offset: u64) -> Vec<u8> {
    let seed = format!("writer={writer} offset={offset};");
    let mut bytes = Vec::with_capacity(520);
    while bytes.len() < 480 + (offset % 40) as usize {
        bytes.extend_from_slice(seed.as_bytes());
    }
    bytes
}

/// A small deterministic generator, enough to vary batch sizes and kill delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(path) => child(Path::new(&path)),
        Err(_) => parent(),
    }
}

fn child(path: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let log = Arc::new(RedbLog::open(path, Arc::new(SystemClock)).unwrap());
        let mut writers = tokio::task::JoinSet::new();
        for writer in 0..WRITERS {
            let log = log.clone();
            writers.spawn(async move {
                let mut rng =
                    Rng(0x9E37_79B9_7F4A_7C15 ^ (std::process::id() as u64) << 8 ^ writer as u64);
                let mut next = log.bounds(&tenant(), &topic(writer)).await.unwrap().end.0;
                let mut batches = 0u64;
                loop {
                    let size = 1 + rng.next(20);
                    let batch = (next..next + size)
                        .map(|offset| NewRecord {
                            value: payload(writer, offset),
                            ..NewRecord::default()
                        })
                        .collect();
                    let appended = log
                        .append_batch(&tenant(), &topic(writer), batch)
                        .await
                        .unwrap();
                    assert_eq!(
                        appended.first.0, next,
                        "only this writer appends to its topic"
                    );
                    println!("ack {writer} {} {}", appended.first.0, appended.last.0);
                    next = appended.last.0 + 1;
                    batches += 1;
                    if batches.is_multiple_of(7) {
                        log.commit_offset(&tenant(), &topic(writer), &group(), Offset(next))
                            .await
                            .unwrap();
                        println!("commit {writer} {next}");
                    }
                }
            });
        }
        while writers.join_next().await.is_some() {}
    });
}

fn parent() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("events.redb");
    let started = Instant::now();
    let mut rng = Rng(started.elapsed().as_nanos() as u64 | 1 ^ 0xA5A5_5A5A);
    let mut acked = [0u64; WRITERS]; // offsets below this are acknowledged
    let mut committed = [0u64; WRITERS];
    let mut total_acks = 0u64;

    for round in 0..KILLS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            // Only complete lines count: a line cut by the kill was never fully acknowledged.
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).split(b'\n') {
                match line {
                    Ok(line) => lines.push(String::from_utf8(line).unwrap()),
                    Err(_) => break,
                }
            }
            lines
        });
        std::thread::sleep(Duration::from_millis(40 + rng.next(160)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child must die by the signal"
        );
        let lines = reader.join().unwrap();
        // The last line may be partial if the kill landed mid-write; the split keeps it only when
        // it ended with a newline, so every parsed line is a complete acknowledgement.
        for line in &lines {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["ack", writer, _first, last] => {
                    let writer: usize = writer.parse().unwrap();
                    acked[writer] = acked[writer].max(last.parse::<u64>().unwrap() + 1);
                    total_acks += 1;
                }
                ["commit", writer, next] => {
                    let writer: usize = writer.parse().unwrap();
                    committed[writer] = committed[writer].max(next.parse().unwrap());
                }
                _ => {} // a torn last line
            }
        }
        verify(&path, &acked, &committed, round);
    }
    assert!(
        total_acks > u64::from(KILLS),
        "the children must have made progress ({total_acks} acks)"
    );
    println!(
        "log_crash: {KILLS} SIGKILLs, {total_acks} acknowledged batches, {} acknowledged records, all present and intact after every reopen ({:.1} s)",
        acked.iter().sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
    println!("1 passed, 0 failed");
}

fn verify(path: &Path, acked: &[u64; WRITERS], committed: &[u64; WRITERS], round: u32) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let log = RedbLog::open(path, Arc::new(SystemClock))
            .unwrap_or_else(|error| panic!("round {round}: reopening after SIGKILL failed: {error}"));
        for writer in 0..WRITERS {
            let bounds = log.bounds(&tenant(), &topic(writer)).await.unwrap();
            assert_eq!(bounds.start, Offset(0), "round {round}");
            assert!(
                bounds.end.0 >= acked[writer],
                "round {round}: writer {writer} had offsets below {} acknowledged but the log ends at {}",
                acked[writer],
                bounds.end
            );
            let mut expected = 0u64;
            while expected < bounds.end.0 {
                let records = log.read(&tenant(), &topic(writer), Offset(expected), 5000).await.unwrap();
                assert!(!records.is_empty(), "round {round}: gap at offset {expected} of writer {writer}");
                for record in records {
                    assert_eq!(record.offset, Offset(expected), "round {round}: offsets must have no gaps");
                    assert!(
                        record.record.value == payload(writer, expected),
                        "round {round}: writer {writer} offset {expected} holds the wrong bytes"
                    );
                    expected += 1;
                }
            }
            let stored = log.committed_offset(&tenant(), &topic(writer), &group()).await.unwrap();
            assert!(
                stored.unwrap_or_default().0 >= committed[writer],
                "round {round}: committed offset {stored:?} of writer {writer} is behind the acknowledged {}",
                committed[writer]
            );
        }
        log.close().await.unwrap();
    });
}
