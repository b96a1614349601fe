//! Conformance cases for [`LogDetails`].

use crate::details::{LogDetails, LogKey, MAX_SCAN};
use crate::error::LogError;

use super::tenant;

fn key(timestamp: i64, id: &str) -> LogKey {
    LogKey {
        timestamp,
        tool_event_id: id.to_owned(),
    }
}

fn keys(entries: &[(LogKey, Vec<u8>)]) -> Vec<(i64, String)> {
    entries
        .iter()
        .map(|(key, _)| (key.timestamp, key.tool_event_id.clone()))
        .collect()
}

pub async fn entries_are_read_back_by_their_full_key(details: &dyn LogDetails) {
    let tenant = tenant("details-point");
    details
        .put_batch(
            &tenant,
            vec![
                (key(1_000, "a"), b"first".to_vec()),
                (key(1_000, "b"), b"second".to_vec()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        details
            .get(&tenant, &key(1_000, "a"))
            .await
            .unwrap()
            .as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(
        details
            .get(&tenant, &key(1_000, "b"))
            .await
            .unwrap()
            .as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(
        details.get(&tenant, &key(1_001, "a")).await.unwrap(),
        None,
        "the timestamp is part of the key"
    );
}

pub async fn putting_a_key_again_replaces_its_value(details: &dyn LogDetails) {
    let tenant = tenant("details-idempotent");
    details
        .put_batch(&tenant, vec![(key(5, "e"), b"v1".to_vec())])
        .await
        .unwrap();
    details
        .put_batch(&tenant, vec![(key(5, "e"), b"v2".to_vec())])
        .await
        .unwrap();
    assert_eq!(
        details.get(&tenant, &key(5, "e")).await.unwrap().as_deref(),
        Some(&b"v2"[..])
    );
    let all = details
        .scan(&tenant, i64::MIN, i64::MAX, None, 100)
        .await
        .unwrap();
    assert_eq!(keys(&all), [(5, "e".to_owned())]);
}

pub async fn scans_are_ordered_bounded_and_paged(details: &dyn LogDetails) {
    let tenant = tenant("details-scan");
    let entries = vec![
        (key(300, "c"), b"3".to_vec()),
        (key(100, "b"), b"1b".to_vec()),
        (key(100, "a"), b"1a".to_vec()),
        (key(200, "z"), b"2".to_vec()),
        (key(400, "d"), b"4".to_vec()),
    ];
    details.put_batch(&tenant, entries).await.unwrap();

    let window = details.scan(&tenant, 100, 400, None, 100).await.unwrap();
    assert_eq!(
        keys(&window),
        [
            (100, "a".into()),
            (100, "b".into()),
            (200, "z".into()),
            (300, "c".into())
        ],
        "from is inclusive, to exclusive, ordered by (timestamp, id)"
    );
    assert_eq!(window[0].1, b"1a");

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = details
            .scan(&tenant, 0, 1_000, after.as_ref(), 2)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page.last().map(|(key, _)| key.clone());
        seen.extend(keys(&page));
    }
    assert_eq!(seen.len(), 5, "paging visits every entry once: {seen:?}");
    assert!(
        details
            .scan(&tenant, 500, 100, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn tenants_never_see_each_others_details(details: &dyn LogDetails) {
    let (acme, globex) = (tenant("details-acme"), tenant("details-globex"));
    details
        .put_batch(&acme, vec![(key(1, "same-id"), b"acme".to_vec())])
        .await
        .unwrap();
    details
        .put_batch(&globex, vec![(key(1, "same-id"), b"globex".to_vec())])
        .await
        .unwrap();
    assert_eq!(
        details
            .get(&acme, &key(1, "same-id"))
            .await
            .unwrap()
            .as_deref(),
        Some(&b"acme"[..])
    );
    assert_eq!(
        details
            .get(&globex, &key(1, "same-id"))
            .await
            .unwrap()
            .as_deref(),
        Some(&b"globex"[..])
    );
    assert_eq!(
        details
            .scan(&acme, i64::MIN, i64::MAX, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    assert_eq!(details.delete_before(&acme, 10).await.unwrap(), 1);
    assert_eq!(details.get(&acme, &key(1, "same-id")).await.unwrap(), None);
    assert_eq!(
        details
            .get(&globex, &key(1, "same-id"))
            .await
            .unwrap()
            .as_deref(),
        Some(&b"globex"[..])
    );
}

pub async fn delete_before_removes_only_older_entries(details: &dyn LogDetails) {
    let tenant = tenant("details-retention");
    let entries = (0..10)
        .map(|i| (key(i * 10, &format!("e{i}")), vec![i as u8]))
        .collect();
    details.put_batch(&tenant, entries).await.unwrap();
    assert_eq!(details.delete_before(&tenant, 50).await.unwrap(), 5);
    let left = details
        .scan(&tenant, i64::MIN, i64::MAX, None, 100)
        .await
        .unwrap();
    assert_eq!(left.first().map(|(key, _)| key.timestamp), Some(50));
    assert_eq!(left.len(), 5);
    assert_eq!(details.delete_before(&tenant, 50).await.unwrap(), 0);
}

pub async fn out_of_range_scan_limits_are_refused(details: &dyn LogDetails) {
    let tenant = tenant("details-limits");
    for limit in [0, MAX_SCAN + 1] {
        let refused = details.scan(&tenant, 0, 1, None, limit).await;
        assert!(
            matches!(refused, Err(LogError::InvalidRecord(ref why)) if why.contains("limit")),
            "{refused:?}"
        );
    }
}

/// Instantiates every [`LogDetails`] conformance case as a test; `$factory` is a future of
/// `(Arc<dyn LogDetails>, guard)`.
#[macro_export]
macro_rules! log_details_conformance {
    ($factory:expr) => {
        $crate::log_details_conformance!(@cases $factory;
            entries_are_read_back_by_their_full_key,
            putting_a_key_again_replaces_its_value,
            scans_are_ordered_bounded_and_paged,
            tenants_never_see_each_others_details,
            delete_before_removes_only_older_entries,
            out_of_range_scan_limits_are_refused,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let (details, _guard) = $factory.await;
            $crate::conformance::details::$case(&*details).await;
        }
    )*};
}
