//! [`Storage::snapshot`]: what is written is read back whole from the copy, while the original
//! keeps taking writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use serde_json::json;

use crate::details::LogKey;
use crate::documents::{Tenant, TenantStatus};
use crate::log::NewRecord;
use crate::model::{Collection, DocumentId, GroupId, ManualClock, Offset, TenantId, Topic};
use crate::{Clock, Storage, StorageConfig, files};

async fn open(dir: &std::path::Path, clock: &ManualClock) -> Storage {
    std::fs::create_dir_all(dir).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    Storage::open(&StorageConfig::embedded(dir), clock)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_holds_every_tenant_document_record_offset_and_detail() {
    let dir = tempfile::TempDir::new().unwrap();
    let (live_dir, copy_dir) = (dir.path().join("live"), dir.path().join("copy"));
    std::fs::create_dir_all(&copy_dir).unwrap();
    let clock = ManualClock::starting_at(1_763_629_200_000);
    let live = open(&live_dir, &clock).await;

    let tenant = TenantId::parse("acme").unwrap();
    live.tenants
        .create_tenant(&Tenant {
            id: tenant.clone(),
            name: "Acme".into(),
            status: TenantStatus::Active,
            created_at: 7,
        })
        .await
        .unwrap();
    let machines = Collection::parse("machines").unwrap();
    for index in 0..50 {
        let id = DocumentId::parse(&format!("m-{index:03}")).unwrap();
        live.documents
            .insert(
                &tenant,
                &machines,
                &id,
                &json!({"hostname": format!("host-{index}")}),
            )
            .await
            .unwrap();
    }
    let topic = Topic::parse("logs.events").unwrap();
    for batch in 0..10 {
        let records = (0..20)
            .map(|index| NewRecord {
                key: Some(format!("k{batch}-{index}").into_bytes()),
                headers: vec![("type".into(), b"test".to_vec())],
                value: format!("value {batch} {index}").into_bytes(),
            })
            .collect();
        live.events
            .append_batch(&tenant, &topic, records)
            .await
            .unwrap();
    }
    let group = GroupId::parse("pipeline").unwrap();
    live.events
        .commit_offset(&tenant, &topic, &group, Offset(150))
        .await
        .unwrap();
    let details: Vec<(LogKey, Vec<u8>)> = (0..30)
        .map(|index| {
            (
                LogKey {
                    timestamp: 1_763_629_200_000 + index,
                    tool_event_id: format!("event-{index}"),
                },
                format!("detail {index}").into_bytes(),
            )
        })
        .collect();
    live.details
        .put_batch(&tenant, details.clone())
        .await
        .unwrap();

    // Writers keep going while the snapshot is taken; it holds a prefix of their writes.
    let writer = {
        let (events, tenant, topic) = (live.events.clone(), tenant.clone(), topic.clone());
        tokio::spawn(async move {
            for index in 0..200 {
                let record = NewRecord {
                    value: format!("during {index}").into_bytes(),
                    ..NewRecord::default()
                };
                events
                    .append_batch(&tenant, &topic, vec![record])
                    .await
                    .unwrap();
            }
        })
    };
    let mut written = live.snapshot(&copy_dir).await.unwrap();
    written.sort();
    assert_eq!(
        written,
        vec![files::EVENTS.to_owned(), files::TENANCY.to_owned()]
    );
    writer.await.unwrap();
    live.close().await.unwrap();

    let copy = open(&copy_dir, &clock).await;
    let tenants = copy.tenants.tenants().await.unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(
        (tenants[0].name.as_str(), tenants[0].created_at),
        ("Acme", 7)
    );
    assert_eq!(copy.documents.count(&tenant, &machines).await.unwrap(), 50);
    let first = copy
        .documents
        .get(&tenant, &machines, &DocumentId::parse("m-007").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.body, json!({"hostname": "host-7"}));
    let bounds = copy.events.bounds(&tenant, &topic).await.unwrap();
    assert_eq!(bounds.start, Offset(0));
    assert!(
        (200..=400).contains(&bounds.end.0),
        "the copy holds the seeded records and a prefix of the later ones: {bounds:?}"
    );
    let records = copy
        .events
        .read(&tenant, &topic, Offset(0), 1000)
        .await
        .unwrap();
    assert_eq!(records.len() as u64, bounds.end.0, "no gaps");
    assert_eq!(records[21].record.value, b"value 1 1");
    assert_eq!(records[21].record.key.as_deref(), Some(&b"k1-1"[..]));
    assert_eq!(records[21].record.header("type"), Some(&b"test"[..]));
    for (index, record) in records.iter().enumerate().skip(200) {
        assert_eq!(
            record.record.value,
            format!("during {}", index - 200).into_bytes()
        );
    }
    assert_eq!(
        copy.events
            .committed_offset(&tenant, &topic, &group)
            .await
            .unwrap(),
        Some(Offset(150))
    );
    let scanned = copy
        .details
        .scan(&tenant, 0, i64::MAX, None, 1000)
        .await
        .unwrap();
    assert_eq!(scanned, details);
    // The copy is a working store, not only a readable one.
    copy.events
        .append_batch(&tenant, &topic, vec![NewRecord::default()])
        .await
        .unwrap();
    copy.close().await.unwrap();
}

#[tokio::test]
async fn a_snapshot_refuses_to_overwrite_files_in_the_target() {
    let dir = tempfile::TempDir::new().unwrap();
    let (live_dir, copy_dir) = (dir.path().join("live"), dir.path().join("copy"));
    std::fs::create_dir_all(&copy_dir).unwrap();
    std::fs::write(copy_dir.join(files::EVENTS), b"something").unwrap();
    let live = open(&live_dir, &ManualClock::starting_at(0)).await;
    let error = live.snapshot(&copy_dir).await.unwrap_err().to_string();
    assert!(error.contains("already exists"), "{error}");
    assert_eq!(
        std::fs::read(copy_dir.join(files::EVENTS)).unwrap(),
        b"something"
    );
    live.close().await.unwrap();
}
