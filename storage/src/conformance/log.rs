//! Conformance cases for [`EventLog`]. Factories take a [`ManualClock`] the engine must use, so
//! retention by age is tested without waiting.

use std::sync::Arc;

use crate::error::LogError;
use crate::log::{EventLog, MAX_RECORD_BYTES, NewRecord, RetentionPolicy, StreamBounds};
use crate::model::{GroupId, ManualClock, Offset, Topic};

use super::tenant;

/// When every case's clock starts: 2025-11-20T09:00:00Z, the fixtures' day.
pub const T0: i64 = 1_763_629_200_000;

fn topic(name: &str) -> Topic {
    Topic::parse(name).unwrap()
}

fn record(value: &str) -> NewRecord {
    NewRecord {
        key: None,
        headers: Vec::new(),
        value: value.as_bytes().to_vec(),
    }
}

fn values(records: &[crate::log::LogRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.record.value.clone()).unwrap())
        .collect()
}

pub async fn offsets_start_at_zero_and_batches_get_consecutive_offsets(
    log: &dyn EventLog,
    _: &ManualClock,
) {
    let (tenant, topic) = (tenant("offsets"), topic("logs.events"));
    let first = log
        .append_batch(&tenant, &topic, vec![record("a")])
        .await
        .unwrap();
    assert_eq!((first.first, first.last), (Offset(0), Offset(0)));
    let second = log
        .append_batch(&tenant, &topic, vec![record("b"), record("c"), record("d")])
        .await
        .unwrap();
    assert_eq!((second.first, second.last), (Offset(1), Offset(3)));
    let bounds = log.bounds(&tenant, &topic).await.unwrap();
    assert_eq!((bounds.start, bounds.end), (Offset(0), Offset(4)));
    assert!(bounds.bytes >= 4, "bytes {bounds:?}");
}

pub async fn reads_return_keys_headers_values_and_append_times_in_order(
    log: &dyn EventLog,
    clock: &ManualClock,
) {
    let (tenant, topic) = (tenant("read-order"), topic("meshcentral.mongodb.events"));
    let with_everything = NewRecord {
        key: Some(b"node//abc".to_vec()),
        headers: vec![("message-type".into(), b"MESHCENTRAL_EVENT".to_vec())],
        value: b"{\"payload\":1}".to_vec(),
    };
    log.append_batch(
        &tenant,
        &topic,
        vec![with_everything.clone(), record("second")],
    )
    .await
    .unwrap();
    clock.advance_ms(5);
    log.append_batch(&tenant, &topic, vec![record("third")])
        .await
        .unwrap();

    let read = log.read(&tenant, &topic, Offset(0), 10).await.unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(read[0].record, with_everything);
    assert_eq!(
        read[0].record.header("message-type"),
        Some(&b"MESHCENTRAL_EVENT"[..])
    );
    assert_eq!(values(&read[1..]), ["second", "third"]);
    assert_eq!(
        read.iter()
            .map(|r| (r.offset, r.appended_at))
            .collect::<Vec<_>>(),
        [(Offset(0), T0), (Offset(1), T0), (Offset(2), T0 + 5)]
    );
}

pub async fn reads_start_anywhere_and_stop_at_the_end(log: &dyn EventLog, _: &ManualClock) {
    let (tenant, topic) = (tenant("read-range"), topic("logs.events"));
    let batch = (0..10).map(|i| record(&format!("r{i}"))).collect();
    log.append_batch(&tenant, &topic, batch).await.unwrap();
    assert_eq!(
        values(&log.read(&tenant, &topic, Offset(7), 100).await.unwrap()),
        ["r7", "r8", "r9"]
    );
    assert_eq!(
        values(&log.read(&tenant, &topic, Offset(2), 2).await.unwrap()),
        ["r2", "r3"]
    );
    assert!(
        log.read(&tenant, &topic, Offset(10), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        log.read(&tenant, &topic, Offset(u64::MAX), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let unknown = topic_of_nothing();
    assert!(
        log.read(&tenant, &unknown, Offset(0), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        log.bounds(&tenant, &unknown).await.unwrap(),
        StreamBounds::default()
    );
}

fn topic_of_nothing() -> Topic {
    topic("never.written")
}

pub async fn tenants_have_separate_streams_of_a_topic(log: &dyn EventLog, _: &ManualClock) {
    let (acme, globex, topic) = (
        tenant("streams-acme"),
        tenant("streams-globex"),
        topic("fleet.mysql.events"),
    );
    log.append_batch(&acme, &topic, vec![record("acme-0"), record("acme-1")])
        .await
        .unwrap();
    let globex_first = log
        .append_batch(&globex, &topic, vec![record("globex-0")])
        .await
        .unwrap();
    assert_eq!(
        globex_first.first,
        Offset(0),
        "offsets are per tenant stream"
    );

    assert_eq!(
        values(&log.read(&acme, &topic, Offset(0), 10).await.unwrap()),
        ["acme-0", "acme-1"]
    );
    assert_eq!(
        values(&log.read(&globex, &topic, Offset(0), 10).await.unwrap()),
        ["globex-0"]
    );
    assert_eq!(log.bounds(&globex, &topic).await.unwrap().end, Offset(1));
    let tenants = log.tenants_of(&topic).await.unwrap();
    assert!(
        tenants.contains(&acme) && tenants.contains(&globex),
        "{tenants:?}"
    );
    assert!(
        !log.tenants_of(&topic_of_nothing())
            .await
            .unwrap()
            .contains(&acme)
    );
}

pub async fn invalid_batches_are_refused_whole(log: &dyn EventLog, _: &ManualClock) {
    let (tenant, topic) = (tenant("invalid-batches"), topic("logs.events"));
    log.append_batch(&tenant, &topic, vec![record("kept")])
        .await
        .unwrap();

    let empty = log.append_batch(&tenant, &topic, Vec::new()).await;
    assert!(
        matches!(empty, Err(LogError::InvalidRecord(ref why)) if why.contains("at least one")),
        "{empty:?}"
    );

    let oversized = NewRecord {
        value: vec![b'x'; MAX_RECORD_BYTES + 1],
        ..NewRecord::default()
    };
    let refused = log
        .append_batch(&tenant, &topic, vec![record("fine"), oversized])
        .await;
    assert!(
        matches!(refused, Err(LogError::InvalidRecord(ref why)) if why.contains("record 1") && why.contains("limit")),
        "{refused:?}"
    );
    assert_eq!(
        values(&log.read(&tenant, &topic, Offset(0), 10).await.unwrap()),
        ["kept"]
    );
    assert_eq!(log.bounds(&tenant, &topic).await.unwrap().end, Offset(1));
}

pub async fn consumer_groups_commit_per_tenant_topic_and_group(
    log: &dyn EventLog,
    _: &ManualClock,
) {
    let (acme, globex) = (tenant("groups-acme"), tenant("groups-globex"));
    let (raw, unified) = (topic("meshcentral.mongodb.events"), topic("logs.events"));
    let (stream, search) = (
        GroupId::parse("openframe-stream").unwrap(),
        GroupId::parse("search").unwrap(),
    );

    assert_eq!(
        log.committed_offset(&acme, &raw, &stream).await.unwrap(),
        None
    );
    log.commit_offset(&acme, &raw, &stream, Offset(42))
        .await
        .unwrap();
    log.commit_offset(&acme, &raw, &search, Offset(7))
        .await
        .unwrap();
    log.commit_offset(&acme, &unified, &stream, Offset(3))
        .await
        .unwrap();
    log.commit_offset(&globex, &raw, &stream, Offset(1))
        .await
        .unwrap();
    log.commit_offset(&acme, &raw, &stream, Offset(43))
        .await
        .unwrap();

    assert_eq!(
        log.committed_offset(&acme, &raw, &stream).await.unwrap(),
        Some(Offset(43))
    );
    assert_eq!(
        log.committed_offset(&acme, &raw, &search).await.unwrap(),
        Some(Offset(7))
    );
    assert_eq!(
        log.committed_offset(&acme, &unified, &stream)
            .await
            .unwrap(),
        Some(Offset(3))
    );
    assert_eq!(
        log.committed_offset(&globex, &raw, &stream).await.unwrap(),
        Some(Offset(1))
    );
    assert_eq!(
        log.committed_offset(&globex, &raw, &search).await.unwrap(),
        None
    );
}

pub async fn watch_reports_the_end_after_each_durable_append(log: &dyn EventLog, _: &ManualClock) {
    let (tenant, topic) = (tenant("watch"), topic("logs.events"));
    let mut end = log.watch(&tenant, &topic);
    assert_eq!(*end.borrow_and_update(), Offset(0));
    log.append_batch(&tenant, &topic, vec![record("a"), record("b")])
        .await
        .unwrap();
    end.changed().await.unwrap();
    assert_eq!(*end.borrow_and_update(), Offset(2));

    let late_subscriber = log.watch(&tenant, &topic);
    assert_eq!(
        *late_subscriber.borrow(),
        Offset(2),
        "a new watcher starts at the current end"
    );
}

pub async fn concurrent_appends_never_share_or_skip_offsets(log: &dyn EventLog, _: &ManualClock) {
    let (tenant, topic) = (tenant("concurrent"), topic("logs.events"));
    let mut tasks = Vec::new();
    for writer in 0..32 {
        let batch: Vec<NewRecord> = (0..3).map(|i| record(&format!("w{writer}-{i}"))).collect();
        tasks.push(log.append_batch(&tenant, &topic, batch));
    }
    let mut ranges: Vec<(u64, u64)> = futures_join_all(tasks)
        .await
        .into_iter()
        .map(|appended| {
            let appended = appended.unwrap();
            (appended.first.0, appended.last.0)
        })
        .collect();
    ranges.sort_unstable();
    for (index, (first, last)) in ranges.iter().enumerate() {
        assert_eq!((*first, *last), (index as u64 * 3, index as u64 * 3 + 2));
    }
    let read = log.read(&tenant, &topic, Offset(0), 1000).await.unwrap();
    assert_eq!(read.len(), 96);
    for chunk in read.chunks(3) {
        let writer = values(chunk)[0].split('-').next().unwrap().to_owned();
        assert_eq!(
            values(chunk),
            [0, 1, 2].map(|i| format!("{writer}-{i}")),
            "a batch stays contiguous"
        );
    }
}

/// Polls every future to completion concurrently, in order, without a futures-crate dependency.
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

pub async fn retention_by_age_deletes_old_records_and_keeps_offsets(
    log: &dyn EventLog,
    clock: &ManualClock,
) {
    let (acme, globex, topic) = (
        tenant("age-acme"),
        tenant("age-globex"),
        topic("retention.age"),
    );
    log.append_batch(&acme, &topic, vec![record("old-0"), record("old-1")])
        .await
        .unwrap();
    log.append_batch(&globex, &topic, vec![record("globex-old")])
        .await
        .unwrap();
    clock.advance_ms(60_000);
    log.append_batch(&acme, &topic, vec![record("new-2")])
        .await
        .unwrap();
    clock.advance_ms(1_000);

    let report = log
        .enforce_retention(
            &topic,
            RetentionPolicy {
                max_age_ms: Some(30_000),
                max_bytes: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.records, 3);
    assert!(report.bytes > 0);

    let read = log.read(&acme, &topic, Offset(0), 10).await.unwrap();
    assert_eq!(values(&read), ["new-2"]);
    assert_eq!(
        read[0].offset,
        Offset(2),
        "surviving records keep their offsets"
    );
    let bounds = log.bounds(&acme, &topic).await.unwrap();
    assert_eq!((bounds.start, bounds.end), (Offset(2), Offset(3)));
    let globex_bounds = log.bounds(&globex, &topic).await.unwrap();
    assert_eq!(
        (globex_bounds.start, globex_bounds.end, globex_bounds.bytes),
        (Offset(1), Offset(1), 0)
    );
    let next = log
        .append_batch(&globex, &topic, vec![record("globex-new")])
        .await
        .unwrap();
    assert_eq!(
        next.first,
        Offset(1),
        "offsets are never reused after retention"
    );
}

pub async fn retention_by_size_keeps_the_newest_records_under_the_bound(
    log: &dyn EventLog,
    _: &ManualClock,
) {
    let (tenant, topic) = (tenant("size"), topic("retention.size"));
    let batch = (0..10).map(|i| record(&format!("{i:0>100}"))).collect();
    log.append_batch(&tenant, &topic, batch).await.unwrap();
    let before = log.bounds(&tenant, &topic).await.unwrap();
    let per_record = before.bytes / 10;

    let report = log
        .enforce_retention(
            &topic,
            RetentionPolicy {
                max_age_ms: None,
                max_bytes: Some(per_record * 4),
            },
        )
        .await
        .unwrap();
    assert_eq!(report.records, 6);
    assert_eq!(report.bytes, per_record * 6);
    let after = log.bounds(&tenant, &topic).await.unwrap();
    assert_eq!(
        (after.start, after.end, after.bytes),
        (Offset(6), Offset(10), per_record * 4)
    );
    let read = log.read(&tenant, &topic, Offset(0), 100).await.unwrap();
    assert_eq!(
        read.first().map(|r| r.offset),
        Some(Offset(6)),
        "reading a deleted offset starts at the oldest kept"
    );

    let unbounded = log
        .enforce_retention(&topic, RetentionPolicy::default())
        .await
        .unwrap();
    assert_eq!(unbounded.records, 0);
}

pub async fn streams_and_their_committed_offsets_are_listed(log: &dyn EventLog, _: &ManualClock) {
    let (acme, globex) = (tenant("list-acme"), tenant("list-globex"));
    let (raw, unified) = (topic("meshcentral.mongodb.events"), topic("logs.events"));
    log.append_batch(&acme, &raw, vec![record("a")])
        .await
        .unwrap();
    log.append_batch(&acme, &unified, vec![record("b")])
        .await
        .unwrap();
    log.append_batch(&globex, &raw, vec![record("c")])
        .await
        .unwrap();
    let streams = log.streams().await.unwrap();
    for stream in [
        (acme.clone(), raw.clone()),
        (acme.clone(), unified.clone()),
        (globex.clone(), raw.clone()),
    ] {
        assert!(streams.contains(&stream), "{stream:?} in {streams:?}");
    }
    let (stream, search) = (
        GroupId::parse("stream").unwrap(),
        GroupId::parse("search").unwrap(),
    );
    log.commit_offset(&acme, &raw, &stream, Offset(1))
        .await
        .unwrap();
    log.commit_offset(&acme, &raw, &search, Offset(0))
        .await
        .unwrap();
    log.commit_offset(&globex, &raw, &stream, Offset(1))
        .await
        .unwrap();
    assert_eq!(
        log.committed_offsets(&acme, &raw).await.unwrap(),
        [(search, Offset(0)), (stream, Offset(1))]
    );
    assert!(
        log.committed_offsets(&acme, &unified)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Instantiates every [`EventLog`] conformance case as a test. `$factory` is a closure taking the
/// [`ManualClock`] the engine must use and returning a future of `(Arc<dyn EventLog>, guard)`.
#[macro_export]
macro_rules! event_log_conformance {
    ($factory:expr) => {
        $crate::event_log_conformance!(@cases $factory;
            offsets_start_at_zero_and_batches_get_consecutive_offsets,
            reads_return_keys_headers_values_and_append_times_in_order,
            reads_start_anywhere_and_stop_at_the_end,
            tenants_have_separate_streams_of_a_topic,
            invalid_batches_are_refused_whole,
            consumer_groups_commit_per_tenant_topic_and_group,
            watch_reports_the_end_after_each_durable_append,
            concurrent_appends_never_share_or_skip_offsets,
            retention_by_age_deletes_old_records_and_keeps_offsets,
            retention_by_size_keeps_the_newest_records_under_the_bound,
            streams_and_their_committed_offsets_are_listed,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let clock = $crate::model::ManualClock::starting_at($crate::conformance::log::T0);
            let (log, _guard) = ($factory)(clock.clone()).await;
            $crate::conformance::log::$case(&*log, &clock).await;
        }
    )*};
}

/// Keeps `Arc` in the signature of factories readable.
pub type SharedLog = Arc<dyn EventLog>;
