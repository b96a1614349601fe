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

/// A file backend that answers writes with ENOSPC once told the disk is full: fault injection for
/// the full-disk contract.
#[derive(Debug)]
struct FillableDisk {
    file: redb::backends::FileBackend,
    full: Arc<AtomicBool>,
    syncs: Arc<AtomicU64>,
}

impl redb::StorageBackend for FillableDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        if self.full.load(Ordering::SeqCst) && len > self.file.len()? {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        self.file.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        if self.full.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        self.syncs.fetch_add(1, Ordering::SeqCst);
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        if self.full.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(28));
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

fn open_on_fillable_disk(path: &Path, full: Arc<AtomicBool>, syncs: Arc<AtomicU64>) -> RedbLog {
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
            let backend = FillableDisk {
                file: redb::backends::FileBackend::new(file)?,
                full: full.clone(),
                syncs: syncs.clone(),
            };
            builder.create_with_backend(backend)
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_full_disk_fails_the_append_loses_nothing_acknowledged_and_writes_resume_with_room() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("events.redb");
    let full = Arc::new(AtomicBool::new(false));
    let syncs = Arc::new(AtomicU64::new(0));
    {
        let log = open_on_fillable_disk(&path, full.clone(), syncs.clone());
        log.append_batch(
            &tenant(),
            &topic(),
            vec![record(b"before-1"), record(b"before-2")],
        )
        .await
        .unwrap();
        full.store(true, Ordering::SeqCst);
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
        full.store(false, Ordering::SeqCst);
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
    let full = Arc::new(AtomicBool::new(false));
    let syncs = Arc::new(AtomicU64::new(0));
    let log = Arc::new(open_on_fillable_disk(
        &dir.path().join("events.redb"),
        full,
        syncs.clone(),
    ));
    let before = syncs.load(Ordering::SeqCst);
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
    let fsyncs = syncs.load(Ordering::SeqCst) - before;
    assert!(fsyncs > 0, "commits must reach the disk");
    assert!(
        fsyncs < 200,
        "200 concurrent appends took {fsyncs} fsyncs: no group commit"
    );
}
