use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tempfile::TempDir;

use super::{DEFAULT_CACHE_BYTES, RedbLog};
use crate::Engine;
use crate::details::{LogDetails, LogKey};
use crate::error::{LogError, OpenError};
use crate::log::{EventLog, NewRecord};
use crate::model::{ManualClock, Offset, SystemClock, TenantId, Topic};

async fn fresh_log(clock: ManualClock) -> (Arc<dyn EventLog>, TempDir) {
    let dir = TempDir::new().unwrap();
    let log = RedbLog::open(&dir.path().join("events.redb"), Arc::new(clock)).unwrap();
    (Arc::new(log), dir)
}

async fn fresh_details() -> (Arc<dyn LogDetails>, TempDir) {
    let dir = TempDir::new().unwrap();
    let log = RedbLog::open(&dir.path().join("events.redb"), Arc::new(SystemClock)).unwrap();
    (Arc::new(log), dir)
}

mod event_log {
    use super::*;
    crate::event_log_conformance!(fresh_log);
}

mod log_details {
    use super::*;
    crate::log_details_conformance!(fresh_details());
}

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn topic() -> Topic {
    Topic::parse("logs.events").unwrap()
}

fn record(value: &[u8]) -> NewRecord {
    NewRecord {
        value: value.to_vec(),
        ..NewRecord::default()
    }
}

#[tokio::test]
async fn acknowledged_records_offsets_and_details_survive_close_and_reopen() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("events.redb");
    let group = crate::model::GroupId::parse("stream").unwrap();
    let key = LogKey {
        timestamp: 10,
        tool_event_id: "e-1".into(),
    };
    {
        let log = RedbLog::open(&path, Arc::new(SystemClock)).unwrap();
        log.append_batch(&tenant(), &topic(), vec![record(b"one"), record(b"two")])
            .await
            .unwrap();
        log.commit_offset(&tenant(), &topic(), &group, Offset(1))
            .await
            .unwrap();
        log.put_batch(&tenant(), vec![(key.clone(), b"details".to_vec())])
            .await
            .unwrap();
        log.close().await.unwrap();
        log.close().await.unwrap();
        let refused = log
            .append_batch(&tenant(), &topic(), vec![record(b"late")])
            .await;
        assert!(
            matches!(refused, Err(LogError::Unavailable(ref f)) if f.to_string().contains("closed")),
            "{refused:?}"
        );
        assert!(log.check().await.is_err());
    }
    let log = RedbLog::open(&path, Arc::new(SystemClock)).unwrap();
    log.check().await.unwrap();
    let read = log.read(&tenant(), &topic(), Offset(0), 10).await.unwrap();
    assert_eq!(
        read.iter()
            .map(|r| r.record.value.as_slice())
            .collect::<Vec<_>>(),
        [&b"one"[..], b"two"]
    );
    assert_eq!(
        log.committed_offset(&tenant(), &topic(), &group)
            .await
            .unwrap(),
        Some(Offset(1))
    );
    assert_eq!(
        log.get(&tenant(), &key).await.unwrap().as_deref(),
        Some(&b"details"[..])
    );
    assert_eq!(
        *log.watch(&tenant(), &topic()).borrow(),
        Offset(2),
        "ends are reloaded on open"
    );
    assert_eq!(log.tenants_of(&topic()).await.unwrap(), [tenant()]);
    let next = log
        .append_batch(&tenant(), &topic(), vec![record(b"three")])
        .await
        .unwrap();
    assert_eq!(next.first, Offset(2));
}

#[test]
fn a_foreign_file_is_refused_and_left_untouched() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("events.redb");
    let garbage = b"PK\x03\x04 a zip archive, not an event log".repeat(50);
    std::fs::write(&path, &garbage).unwrap();
    let error = RedbLog::open(&path, Arc::new(SystemClock)).unwrap_err();
    assert!(matches!(error, OpenError::Foreign { .. }), "{error:?}");
    assert!(error.to_string().contains("events.redb"), "{error}");
    assert!(
        std::fs::read(&path).unwrap() == garbage,
        "the file must be left untouched"
    );
}

#[test]
fn a_log_written_by_a_newer_release_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("events.redb");
    {
        let database = redb::Database::create(&path).unwrap();
        let transaction = database.begin_write().unwrap();
        transaction
            .open_table(super::META)
            .unwrap()
            .insert("format_version", 2)
            .unwrap();
        transaction.commit().unwrap();
    }
    let error = RedbLog::open(&path, Arc::new(SystemClock)).unwrap_err();
    assert!(
        matches!(
            error,
            OpenError::NewerSchema {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_format_is_read_and_the_file_copied_as_is_only_while_nothing_holds_it() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("events.redb");
    assert_eq!(super::stored_format_version(&path).unwrap(), None);
    let log = RedbLog::open(&path, Arc::new(SystemClock)).unwrap();
    log.append_batch(&tenant(), &topic(), vec![record(b"kept")])
        .await
        .unwrap();
    let held = super::stored_format_version(&path).unwrap_err().to_string();
    assert!(held.contains("already open"), "{held}");
    log.close().await.unwrap();

    assert_eq!(super::stored_format_version(&path).unwrap(), Some(1));
    let copy = dir.path().join("copy.redb");
    super::copy_as_is(&path, &copy).unwrap();
    assert!(std::fs::read(&copy).unwrap() == std::fs::read(&path).unwrap());
    let reopened = RedbLog::open(&copy, Arc::new(SystemClock)).unwrap();
    let read = reopened
        .read(&tenant(), &topic(), Offset(0), 10)
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].record.value, b"kept");
    reopened.close().await.unwrap();
}

#[test]
fn a_second_open_of_the_same_file_is_refused_while_the_first_is_open() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("events.redb");
    let _first = RedbLog::open(&path, Arc::new(SystemClock)).unwrap();
    let error = RedbLog::open(&path, Arc::new(SystemClock)).unwrap_err();
    assert!(error.to_string().contains("already open"), "{error}");
}

/// What the faulty disk below does to the log's file: fault injection for the storage contracts.
#[derive(Debug, Default)]
struct Faults {
    /// Every write, growth and sync fails with ENOSPC.
    full: AtomicBool,
    /// Writes until one fails with EIO: the next `n`-th write from when it was set (0: none).
    fail_in: AtomicU64,
    /// Each sync takes this long first: a slow disk.
    sync_delay_ms: AtomicU64,
    writes: AtomicU64,
    syncs: AtomicU64,
}

impl Faults {
    /// The `n`-th write from now (1 = the next) fails with EIO, once.
    fn fail_write(&self, n: u64) {
        self.fail_in.store(n, Ordering::SeqCst);
    }

    fn disarm(&self) {
        self.fail_in.store(0, Ordering::SeqCst);
    }

    fn full(&self) -> std::io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        Ok(())
    }
}

/// A file backend that fails as `Faults` says.
#[derive(Debug)]
struct FaultyDisk {
    file: redb::backends::FileBackend,
    faults: Arc<Faults>,
}

impl redb::StorageBackend for FaultyDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        if len > self.file.len()? {
            self.faults.full()?;
        }
        self.file.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.faults.full()?;
        let delay = self.faults.sync_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_millis(delay));
        }
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.faults.full()?;
        self.faults.writes.fetch_add(1, Ordering::SeqCst);
        let armed = self
            .faults
            .fail_in
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                (left > 0).then(|| left - 1)
            });
        if armed == Ok(1) {
            return Err(std::io::Error::from_raw_os_error(5));
        }
        self.file.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.file.close()
    }
    fn try_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_shared_range(start, end)
    }
    fn unlock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.unlock_range(start, end)
    }
}

fn open_on_faulty_disk(path: &Path, faults: Arc<Faults>) -> RedbLog {
    RedbLog::open_with(
        path,
        Arc::new(SystemClock),
        DEFAULT_CACHE_BYTES,
        move |builder, path| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            let backend = FaultyDisk {
                file: redb::backends::FileBackend::new(file)?,
                faults: faults.clone(),
            };
            builder.create_with_backend(backend)
        },
    )
    .unwrap()
}

/// Every value in the log, in offset order, after a clean reopen on a healthy disk.
async fn values_after_reopen(path: &Path) -> Vec<Vec<u8>> {
    let log = RedbLog::open(path, Arc::new(SystemClock)).unwrap();
    let read = log
        .read(&tenant(), &topic(), Offset(0), 10_000)
        .await
        .unwrap();
    for (at, found) in read.iter().enumerate() {
        assert_eq!(found.offset, Offset(at as u64), "no gaps in the offsets");
    }
    read.into_iter().map(|found| found.record.value).collect()
}

#[tokio::test]
async fn a_full_disk_fails_the_append_loses_nothing_acknowledged_and_writes_resume_with_room() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("events.redb");
    let faults = Arc::new(Faults::default());
    {
        let log = open_on_faulty_disk(&path, faults.clone());
        log.append_batch(
            &tenant(),
            &topic(),
            vec![record(b"before-1"), record(b"before-2")],
        )
        .await
        .unwrap();
        faults.full.store(true, Ordering::SeqCst);
        let refused = log
            .append_batch(&tenant(), &topic(), vec![record(&vec![b'x'; 600_000])])
            .await;
        match refused {
            Err(LogError::Unavailable(failure)) => assert!(failure.is_disk_full(), "{failure}"),
            other => panic!("expected a disk-full failure, got {other:?}"),
        }
        // Readiness must not call a log healthy that cannot commit.
        let health = log.check().await.unwrap_err().to_string();
        assert!(health.contains("the last commit failed"), "{health}");
        // Room again: the writer reopens the file (redb refuses writes after an I/O error until
        // then) and the next append goes through, at the offset the refused one did not take.
        faults.full.store(false, Ordering::SeqCst);
        let resumed = log
            .append_batch(&tenant(), &topic(), vec![record(b"after-1")])
            .await
            .unwrap();
        assert_eq!(resumed.first, Offset(2));
        log.check().await.unwrap();
        log.close().await.unwrap();
    }
    let log = RedbLog::open(&path, Arc::new(SystemClock)).unwrap();
    let read = log.read(&tenant(), &topic(), Offset(0), 10).await.unwrap();
    assert_eq!(
        read.iter()
            .map(|r| r.record.value.as_slice())
            .collect::<Vec<_>>(),
        [&b"before-1"[..], b"before-2", b"after-1"],
        "acknowledged records survive and the refused one is absent"
    );
    assert_eq!(
        log.bounds(&tenant(), &topic()).await.unwrap().end,
        Offset(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_group_committed_with_fewer_fsyncs_than_appends() {
    let dir = TempDir::new().unwrap();
    let faults = Arc::new(Faults::default());
    let log = Arc::new(open_on_faulty_disk(
        &dir.path().join("events.redb"),
        faults.clone(),
    ));
    let before = faults.syncs.load(Ordering::SeqCst);
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..200u32 {
        let log = log.clone();
        tasks.spawn(async move {
            log.append_batch(&tenant(), &topic(), vec![record(&writer.to_be_bytes())])
                .await
                .unwrap()
        });
    }
    let mut offsets: Vec<u64> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|a| a.first.0)
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..200).collect::<Vec<_>>());
    let fsyncs = faults.syncs.load(Ordering::SeqCst) - before;
    assert!(fsyncs > 0, "commits must reach the disk");
    assert!(
        fsyncs < 200,
        "200 concurrent appends took {fsyncs} fsyncs: no group commit"
    );
}

/// Appends `batch` until it is acknowledged (the writer reopens the file after a failed write, at
/// most every 2 s, and refuses appends until then); fails after 10 s.
async fn append_when_healthy(log: &RedbLog, batch: &[Vec<u8>]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let records = batch.iter().map(|value| record(value)).collect();
        match log.append_batch(&tenant(), &topic(), records).await {
            Ok(_) => return,
            Err(LogError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => panic!("the log did not recover: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failing_at_any_point_of_a_commit_loses_nothing_acknowledged() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("events.redb");
    let faults = Arc::new(Faults::default());
    let log = open_on_faulty_disk(&path, faults.clone());
    let mut acknowledged: Vec<Vec<u8>> = Vec::new();
    // How many writes one commit of a batch takes, so that every one of them is failed below.
    let first = vec![b"first-1".to_vec(), b"first-2".to_vec()];
    let before = faults.writes.load(Ordering::SeqCst);
    append_when_healthy(&log, &first).await;
    acknowledged.extend(first);
    let per_commit = faults.writes.load(Ordering::SeqCst) - before;
    assert!(per_commit >= 1, "a commit writes");
    let mut refused = 0;
    for n in 1..=per_commit + 1 {
        faults.fail_write(n);
        let batch = vec![
            format!("cut-{n}-a").into_bytes(),
            vec![b'x'; 3000 + n as usize],
        ];
        let records = batch.iter().map(|value| record(value)).collect();
        match log.append_batch(&tenant(), &topic(), records).await {
            Ok(_) => acknowledged.extend(batch),
            Err(LogError::Unavailable(_)) => refused += 1,
            Err(other) => panic!("write {n} of the commit failed as {other:?}"),
        }
        faults.disarm();
        let after = vec![format!("after-{n}").into_bytes()];
        append_when_healthy(&log, &after).await;
        acknowledged.extend(after);
    }
    assert!(refused >= 1, "no failed write reached the commit");
    log.close().await.unwrap();
    assert_eq!(
        values_after_reopen(&path).await,
        acknowledged,
        "exactly the acknowledged records, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_disk_delays_acknowledgements_but_each_is_durable_and_commits_are_shared() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("events.redb");
    let faults = Arc::new(Faults::default());
    let log = Arc::new(open_on_faulty_disk(&path, faults.clone()));
    faults.sync_delay_ms.store(100, Ordering::SeqCst);
    let before = faults.syncs.load(Ordering::SeqCst);
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..64u32 {
        let log = log.clone();
        tasks.spawn(async move {
            let value = format!("slow-{writer:02}").into_bytes();
            log.append_batch(&tenant(), &topic(), vec![record(&value)])
                .await
                .unwrap();
            value
        });
    }
    let mut acknowledged = tasks.join_all().await;
    let fsyncs = faults.syncs.load(Ordering::SeqCst) - before;
    assert!(
        fsyncs < 64 / 4,
        "64 appends on a disk taking 100 ms a sync took {fsyncs} syncs: commits are not shared"
    );
    Arc::into_inner(log).unwrap().close().await.unwrap();
    let mut stored = values_after_reopen(&path).await;
    stored.sort();
    acknowledged.sort();
    assert_eq!(stored, acknowledged, "every acknowledged append is on disk");
}
