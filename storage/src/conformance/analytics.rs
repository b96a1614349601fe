//! Conformance cases for [`Analytics`]: the contract in [`crate::analytics`], checked through the
//! trait alone so every engine (embedded DuckDB, or a connector to a real Pinot) runs the same
//! cases. Each case writes under its own tenant, so cases may share one store.

use std::collections::BTreeMap;

use crate::analytics::{
    Analytics, DeviceFacet, DeviceFilter, DeviceRow, FacetCount, LogCursor, LogFacet, LogFilter,
    LogRow, MAX_PAGE, TimeBucket,
};
use crate::error::AnalyticsError;
use crate::model::{TenantId, UnixMillis};

use super::tenant;

/// 2024-05-01T00:00:00Z: a day boundary, so it is a multiple of every usual bucket width.
pub const T0: UnixMillis = 1_714_521_600_000;

/// A log row with every optional column empty; cases override what they test.
fn log(id: &str, event_timestamp: UnixMillis) -> LogRow {
    LogRow {
        tool_event_id: id.to_owned(),
        event_timestamp,
        ingest_day: "2024-05-01".to_owned(),
        tool_type: "MESHCENTRAL".to_owned(),
        event_type: "LOGIN".to_owned(),
        severity: "INFO".to_owned(),
        summary: format!("summary of {id}"),
        user_id: None,
        device_id: None,
        hostname: None,
        organization_id: None,
        organization_name: None,
    }
}

/// A log row with the columns the filters and facets look at.
fn classified(
    id: &str,
    event_timestamp: UnixMillis,
    tool_type: &str,
    event_type: &str,
    severity: &str,
    organization_id: Option<&str>,
    device_id: Option<&str>,
) -> LogRow {
    LogRow {
        tool_type: tool_type.to_owned(),
        event_type: event_type.to_owned(),
        severity: severity.to_owned(),
        organization_id: organization_id.map(str::to_owned),
        device_id: device_id.map(str::to_owned),
        ..log(id, event_timestamp)
    }
}

fn device(
    machine_id: &str,
    status: &str,
    os_type: &str,
    organization_id: Option<&str>,
    tags: &[&str],
    tag_key_values: &[&str],
) -> DeviceRow {
    DeviceRow {
        machine_id: machine_id.to_owned(),
        status: status.to_owned(),
        device_type: "DESKTOP".to_owned(),
        os_type: os_type.to_owned(),
        organization_id: organization_id.map(str::to_owned),
        tags: strings(tags),
        tag_key_values: strings(tag_key_values),
        ingestion_time: T0,
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

fn counts(pairs: &[(&str, u64)]) -> Vec<FacetCount> {
    pairs
        .iter()
        .map(|(value, count)| FacetCount {
            value: (*value).to_owned(),
            count: *count,
        })
        .collect()
}

fn buckets(pairs: &[(UnixMillis, u64)]) -> Vec<TimeBucket> {
    pairs
        .iter()
        .map(|&(start, count)| TimeBucket { start, count })
        .collect()
}

fn ids(rows: &[LogRow]) -> Vec<&str> {
    rows.iter().map(|row| row.tool_event_id.as_str()).collect()
}

/// The ids of every row matching `filter`, in list order (one page holds them all).
async fn listed(store: &dyn Analytics, tenant: &TenantId, filter: &LogFilter) -> Vec<String> {
    let rows = store
        .query_logs(tenant, filter, None, MAX_PAGE)
        .await
        .unwrap();
    rows.into_iter().map(|row| row.tool_event_id).collect()
}

fn cursor_after(row: &LogRow) -> LogCursor {
    LogCursor {
        event_timestamp: row.event_timestamp,
        tool_event_id: row.tool_event_id.clone(),
    }
}

fn assert_invalid_query<T: std::fmt::Debug>(result: Result<T, AnalyticsError>, argument: &str) {
    match result {
        Err(AnalyticsError::InvalidQuery(message)) => assert!(
            message.contains(argument),
            "the message should name {argument}: {message}"
        ),
        other => panic!("expected an invalid query naming {argument}, got {other:?}"),
    }
}

/// The rows used by the filter and facet cases, one per line: id, milliseconds after [`T0`],
/// tool type, event type, severity, organization id and device id (`-` for none). Values are
/// spread so that every facet has ties to break and every filter a different answer.
const MIXED_LOGS: &str = "
    e1  1  MESHCENTRAL   LOGIN   INFO      org-a  dev-1
    e2  2  MESHCENTRAL   LOGOUT  INFO      org-a  dev-2
    e3  3  FLEET_MDM     POLICY  WARNING   org-b  dev-1
    e4  4  FLEET_MDM     LOGIN   ERROR     org-b  -
    e5  5  TACTICAL_RMM  SCRIPT  INFO      -      dev-3
    e6  6  MESHCENTRAL   LOGIN   CRITICAL  org-c  dev-1
    e7  7  AUTHENTIK     LOGIN   INFO      org-a  -
    e8  8  FLEET_MDM     POLICY  WARNING   org-a  dev-2
";

fn mixed_logs() -> Vec<LogRow> {
    let optional = |value: &str| (value != "-").then(|| value.to_owned());
    MIXED_LOGS
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [
                id,
                offset,
                tool_type,
                event_type,
                severity,
                organization_id,
                device_id,
            ] = fields[..]
            else {
                panic!("a MIXED_LOGS line needs 7 fields: {line:?}");
            };
            LogRow {
                tool_type: tool_type.to_owned(),
                event_type: event_type.to_owned(),
                severity: severity.to_owned(),
                organization_id: optional(organization_id),
                device_id: optional(device_id),
                ..log(id, T0 + offset.parse::<i64>().unwrap())
            }
        })
        .collect()
}

pub async fn appended_rows_come_back_whole(store: &dyn Analytics) {
    let tenant = tenant("appended_rows_come_back_whole");
    let full = LogRow {
        tool_event_id: "evt-full".to_owned(),
        event_timestamp: T0 + 60_000,
        ingest_day: "2024-05-01".to_owned(),
        tool_type: "FLEET_MDM".to_owned(),
        event_type: "SOFTWARE_INSTALLED".to_owned(),
        severity: "WARNING".to_owned(),
        summary: "Installed 7-Zip 24.07 on finance-laptop-3 ✓".to_owned(),
        user_id: Some("user-17".to_owned()),
        device_id: Some("machine-42".to_owned()),
        hostname: Some("finance-laptop-3".to_owned()),
        organization_id: Some("org-9".to_owned()),
        organization_name: Some("Acme Finance".to_owned()),
    };
    let sparse = log("evt-sparse", T0);
    let appended = store
        .append_logs(&tenant, vec![sparse.clone(), full.clone()])
        .await
        .unwrap();
    assert_eq!(appended, 2);
    let rows = store
        .query_logs(&tenant, &LogFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(rows, vec![full, sparse]);
    assert_eq!(
        store
            .count_logs(&tenant, &LogFilter::default())
            .await
            .unwrap(),
        2
    );
}

pub async fn appending_the_same_rows_again_adds_nothing(store: &dyn Analytics) {
    let tenant = tenant("appending_the_same_rows_again_adds_nothing");
    let batch = vec![log("a", T0), log("b", T0 + 1), log("c", T0 + 2)];
    assert_eq!(store.append_logs(&tenant, batch.clone()).await.unwrap(), 3);
    assert_eq!(store.append_logs(&tenant, batch.clone()).await.unwrap(), 0);
    assert_eq!(
        store
            .count_logs(&tenant, &LogFilter::default())
            .await
            .unwrap(),
        3
    );

    // A redelivered event with different content does not overwrite what is stored, and the new
    // rows of a partly repeated batch still go in.
    let changed_b = LogRow {
        summary: "rewritten".to_owned(),
        ..log("b", T0 + 1)
    };
    let appended = store
        .append_logs(&tenant, vec![changed_b, log("d", T0 + 3)])
        .await
        .unwrap();
    assert_eq!(appended, 1);
    let rows = store
        .query_logs(&tenant, &LogFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            log("d", T0 + 3),
            log("c", T0 + 2),
            log("b", T0 + 1),
            log("a", T0)
        ]
    );
}

pub async fn duplicates_inside_one_batch_are_stored_once(store: &dyn Analytics) {
    let tenant = tenant("duplicates_inside_one_batch_are_stored_once");
    let first = LogRow {
        summary: "first delivery".to_owned(),
        ..log("dup", T0)
    };
    let second = LogRow {
        summary: "second delivery".to_owned(),
        ..log("dup", T0)
    };
    let appended = store
        .append_logs(&tenant, vec![first.clone(), log("other", T0 + 1), second])
        .await
        .unwrap();
    assert_eq!(appended, 2);
    let rows = store
        .query_logs(&tenant, &LogFilter::default(), None, 10)
        .await
        .unwrap();
    // As if appended one by one: the first delivery is stored, the repeat ignored.
    assert_eq!(rows, vec![log("other", T0 + 1), first]);
}

pub async fn an_empty_batch_appends_nothing(store: &dyn Analytics) {
    let tenant = tenant("an_empty_batch_appends_nothing");
    assert_eq!(store.append_logs(&tenant, Vec::new()).await.unwrap(), 0);
    assert_eq!(
        store
            .count_logs(&tenant, &LogFilter::default())
            .await
            .unwrap(),
        0
    );
    store.upsert_devices(&tenant, Vec::new()).await.unwrap();
    assert_eq!(
        store
            .count_devices(&tenant, &DeviceFilter::default())
            .await
            .unwrap(),
        0
    );
}

pub async fn another_tenants_logs_are_never_seen_by_any_query(store: &dyn Analytics) {
    let mine = tenant("another_tenants_logs_are_never_seen_by_any_query");
    let theirs = tenant("another_tenants_logs_are_never_seen_by_any_query-other");
    let my_rows = vec![
        classified(
            "shared-id",
            T0,
            "MESHCENTRAL",
            "LOGIN",
            "INFO",
            Some("org-mine"),
            Some("dev-mine"),
        ),
        classified(
            "mine-only",
            T0 + 1,
            "MESHCENTRAL",
            "LOGIN",
            "INFO",
            Some("org-mine"),
            Some("dev-mine"),
        ),
    ];
    let their_rows = vec![
        classified(
            "shared-id",
            T0,
            "FLEET_MDM",
            "POLICY",
            "ERROR",
            Some("org-theirs"),
            Some("dev-theirs"),
        ),
        classified(
            "theirs-only",
            T0 + 3_600_000,
            "FLEET_MDM",
            "POLICY",
            "ERROR",
            Some("org-theirs"),
            Some("dev-theirs"),
        ),
    ];
    assert_eq!(store.append_logs(&mine, my_rows.clone()).await.unwrap(), 2);
    // The same tool event id under another tenant is a different row, not a duplicate.
    assert_eq!(
        store
            .append_logs(&theirs, their_rows.clone())
            .await
            .unwrap(),
        2
    );

    let everything = LogFilter::default();
    let mine_listed = store
        .query_logs(&mine, &everything, None, MAX_PAGE)
        .await
        .unwrap();
    assert_eq!(mine_listed, vec![my_rows[1].clone(), my_rows[0].clone()]);
    let theirs_listed = store
        .query_logs(&theirs, &everything, None, MAX_PAGE)
        .await
        .unwrap();
    assert_eq!(
        theirs_listed,
        vec![their_rows[1].clone(), their_rows[0].clone()]
    );
    assert_eq!(store.count_logs(&mine, &everything).await.unwrap(), 2);

    // Filters naming the other tenant's values find nothing rather than crossing over.
    let their_values = LogFilter {
        tool_types: strings(&["FLEET_MDM"]),
        ..LogFilter::default()
    };
    assert_eq!(store.count_logs(&mine, &their_values).await.unwrap(), 0);
    let their_ids = LogFilter {
        tool_event_ids: Some(strings(&["theirs-only"])),
        ..LogFilter::default()
    };
    assert!(
        store
            .query_logs(&mine, &their_ids, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let their_device = LogFilter {
        device_id: Some("dev-theirs".to_owned()),
        ..LogFilter::default()
    };
    assert_eq!(store.count_logs(&mine, &their_device).await.unwrap(), 0);

    let expected_facets = [
        (LogFacet::ToolType, counts(&[("MESHCENTRAL", 2)])),
        (LogFacet::EventType, counts(&[("LOGIN", 2)])),
        (LogFacet::Severity, counts(&[("INFO", 2)])),
        (LogFacet::OrganizationId, counts(&[("org-mine", 2)])),
        (LogFacet::DeviceId, counts(&[("dev-mine", 2)])),
        (LogFacet::IngestDay, counts(&[("2024-05-01", 2)])),
    ];
    for (facet, expected) in expected_facets {
        let facets = store.log_facets(&mine, &everything, facet).await.unwrap();
        assert_eq!(facets, expected, "{facet:?}");
    }

    let hourly = store
        .log_time_buckets(&mine, &everything, 3_600_000)
        .await
        .unwrap();
    assert_eq!(hourly, buckets(&[(T0, 2)]));
}

pub async fn deleting_old_logs_of_one_tenant_leaves_the_other(store: &dyn Analytics) {
    let mine = tenant("deleting_old_logs_of_one_tenant_leaves_the_other");
    let theirs = tenant("deleting_old_logs_of_one_tenant_leaves_the_other-other");
    let rows = vec![log("old", T0), log("new", T0 + 10)];
    store.append_logs(&mine, rows.clone()).await.unwrap();
    store.append_logs(&theirs, rows).await.unwrap();

    assert_eq!(store.delete_logs_before(&mine, T0 + 5).await.unwrap(), 1);
    assert_eq!(listed(store, &mine, &LogFilter::default()).await, ["new"]);
    assert_eq!(
        listed(store, &theirs, &LogFilter::default()).await,
        ["new", "old"]
    );
}

pub async fn another_tenants_devices_are_never_counted_or_faceted(store: &dyn Analytics) {
    let mine = tenant("another_tenants_devices_are_never_counted_or_faceted");
    let theirs = tenant("another_tenants_devices_are_never_counted_or_faceted-other");
    store
        .upsert_devices(
            &mine,
            vec![device(
                "machine-1",
                "ONLINE",
                "WINDOWS",
                Some("org-mine"),
                &["mine"],
                &["site:hq"],
            )],
        )
        .await
        .unwrap();
    // The same machine id under another tenant is another device: it must not replace mine.
    store
        .upsert_devices(
            &theirs,
            vec![
                device(
                    "machine-1",
                    "OFFLINE",
                    "LINUX",
                    Some("org-theirs"),
                    &["theirs"],
                    &["site:lab"],
                ),
                device(
                    "machine-2",
                    "OFFLINE",
                    "LINUX",
                    Some("org-theirs"),
                    &["theirs"],
                    &["site:lab"],
                ),
            ],
        )
        .await
        .unwrap();

    let everything = DeviceFilter::default();
    assert_eq!(store.count_devices(&mine, &everything).await.unwrap(), 1);
    assert_eq!(store.count_devices(&theirs, &everything).await.unwrap(), 2);
    let their_status = DeviceFilter {
        statuses: strings(&["OFFLINE"]),
        ..DeviceFilter::default()
    };
    assert_eq!(store.count_devices(&mine, &their_status).await.unwrap(), 0);
    let their_tag = DeviceFilter {
        tags: strings(&["theirs"]),
        ..DeviceFilter::default()
    };
    assert_eq!(store.count_devices(&mine, &their_tag).await.unwrap(), 0);

    let expected_facets = [
        (DeviceFacet::Status, counts(&[("ONLINE", 1)])),
        (DeviceFacet::DeviceType, counts(&[("DESKTOP", 1)])),
        (DeviceFacet::OsType, counts(&[("WINDOWS", 1)])),
        (DeviceFacet::OrganizationId, counts(&[("org-mine", 1)])),
        (DeviceFacet::Tag, counts(&[("mine", 1)])),
        (DeviceFacet::TagKeyValue, counts(&[("site:hq", 1)])),
    ];
    for (facet, expected) in expected_facets {
        let facets = store
            .device_facets(&mine, &everything, facet)
            .await
            .unwrap();
        assert_eq!(facets, expected, "{facet:?}");
    }
}

pub async fn logs_are_listed_newest_first_with_ties_broken_by_tool_event_id_descending(
    store: &dyn Analytics,
) {
    let tenant = tenant("logs_are_listed_newest_first_with_ties_broken_by_tool_event_id");
    let shuffled = vec![
        log("c", T0 + 100),
        log("a", T0 + 200),
        log("b", T0 + 200),
        log("d", T0 + 50),
        log("z", T0 + 200),
        log("e", T0 + 300),
    ];
    store.append_logs(&tenant, shuffled).await.unwrap();
    let rows = store
        .query_logs(&tenant, &LogFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(&rows), ["e", "z", "b", "a", "c", "d"]);
    // A limit cuts the same order short.
    let first_three = store
        .query_logs(&tenant, &LogFilter::default(), None, 3)
        .await
        .unwrap();
    assert_eq!(ids(&first_three), ["e", "z", "b"]);
}

pub async fn keyset_paging_visits_every_row_exactly_once(store: &dyn Analytics) {
    let tenant = tenant("keyset_paging_visits_every_row_exactly_once");
    // Ties on the timestamp straddle page boundaries, which is where offset-free paging breaks.
    let rows = vec![
        log("p1", T0),
        log("p2", T0),
        log("p3", T0 + 1),
        log("p4", T0 + 1),
        log("p5", T0 + 1),
        log("p6", T0 + 2),
        log("p7", T0 + 3),
    ];
    store.append_logs(&tenant, rows).await.unwrap();
    let filter = LogFilter::default();

    let mut pages = Vec::new();
    let mut after: Option<LogCursor> = None;
    loop {
        let page = store
            .query_logs(&tenant, &filter, after.as_ref(), 2)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(cursor_after(last));
        pages.push(
            ids(&page)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        );
        assert!(pages.len() <= 10, "paging does not end: {pages:?}");
    }
    assert_eq!(
        pages,
        vec![
            strings(&["p7", "p6"]),
            strings(&["p5", "p4"]),
            strings(&["p3", "p2"]),
            strings(&["p1"]),
        ]
    );

    // The cursor composes with a filter: paging a subset visits exactly that subset.
    let late = LogFilter {
        from: Some(T0 + 1),
        ..LogFilter::default()
    };
    let first = store.query_logs(&tenant, &late, None, 2).await.unwrap();
    let second = store
        .query_logs(&tenant, &late, Some(&cursor_after(&first[1])), 2)
        .await
        .unwrap();
    let third = store
        .query_logs(&tenant, &late, Some(&cursor_after(&second[1])), 2)
        .await
        .unwrap();
    assert_eq!(
        (ids(&first), ids(&second), ids(&third)),
        (vec!["p7", "p6"], vec!["p5", "p4"], vec!["p3"])
    );
}

pub async fn oldest_first_paging_mirrors_newest_first(store: &dyn Analytics) {
    let tenant = tenant("oldest_first_paging_mirrors_newest_first");
    let rows = vec![
        log("p1", T0),
        log("p2", T0),
        log("p3", T0 + 1),
        log("p4", T0 + 1),
        log("p5", T0 + 1),
        log("p6", T0 + 2),
        log("p7", T0 + 3),
    ];
    store.append_logs(&tenant, rows).await.unwrap();
    let filter = LogFilter::default();
    let mut pages = Vec::new();
    let mut after: Option<LogCursor> = None;
    loop {
        let page = store
            .query_logs_oldest_first(&tenant, &filter, after.as_ref(), 2)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(cursor_after(last));
        pages.push(strings(&ids(&page)));
        assert!(pages.len() <= 10, "paging does not end: {pages:?}");
    }
    assert_eq!(
        pages,
        vec![
            strings(&["p1", "p2"]),
            strings(&["p3", "p4"]),
            strings(&["p5", "p6"]),
            strings(&["p7"]),
        ]
    );
    // Backward from a cursor of the newest-first list: the rows just newer than it.
    let newest = store.query_logs(&tenant, &filter, None, 4).await.unwrap();
    assert_eq!(ids(&newest), ["p7", "p6", "p5", "p4"]);
    let newer = store
        .query_logs_oldest_first(&tenant, &filter, Some(&cursor_after(&newest[3])), 2)
        .await
        .unwrap();
    assert_eq!(ids(&newer), ["p5", "p6"]);
    // With a filter, and another tenant's rows never included.
    let late = LogFilter {
        from: Some(T0 + 1),
        ..LogFilter::default()
    };
    let first = store
        .query_logs_oldest_first(&tenant, &late, None, 3)
        .await
        .unwrap();
    assert_eq!(ids(&first), ["p3", "p4", "p5"]);
    let other = store
        .query_logs_oldest_first(&self::tenant("someone-else"), &filter, None, 10)
        .await
        .unwrap();
    assert!(other.is_empty());
}

pub async fn time_range_includes_from_and_excludes_to(store: &dyn Analytics) {
    let tenant = tenant("time_range_includes_from_and_excludes_to");
    let rows = vec![
        log("before", T0 - 1),
        log("at-from", T0),
        log("inside", T0 + 5),
        log("at-to", T0 + 10),
        log("after", T0 + 11),
    ];
    store.append_logs(&tenant, rows).await.unwrap();
    let both = LogFilter {
        from: Some(T0),
        to: Some(T0 + 10),
        ..LogFilter::default()
    };
    assert_eq!(listed(store, &tenant, &both).await, ["inside", "at-from"]);
    assert_eq!(store.count_logs(&tenant, &both).await.unwrap(), 2);
    let from_only = LogFilter {
        from: Some(T0 + 10),
        ..LogFilter::default()
    };
    assert_eq!(listed(store, &tenant, &from_only).await, ["after", "at-to"]);
    let to_only = LogFilter {
        to: Some(T0),
        ..LogFilter::default()
    };
    assert_eq!(listed(store, &tenant, &to_only).await, ["before"]);
    let empty_range = LogFilter {
        from: Some(T0 + 5),
        to: Some(T0 + 5),
        ..LogFilter::default()
    };
    assert_eq!(store.count_logs(&tenant, &empty_range).await.unwrap(), 0);
}

pub async fn each_log_filter_matches_any_of_its_values(store: &dyn Analytics) {
    let tenant = tenant("each_log_filter_matches_any_of_its_values");
    store.append_logs(&tenant, mixed_logs()).await.unwrap();
    let cases: Vec<(&str, LogFilter, Vec<&str>)> = vec![
        (
            "tool_types",
            LogFilter {
                tool_types: strings(&["FLEET_MDM", "AUTHENTIK"]),
                ..LogFilter::default()
            },
            vec!["e8", "e7", "e4", "e3"],
        ),
        (
            "event_types",
            LogFilter {
                event_types: strings(&["LOGOUT", "SCRIPT"]),
                ..LogFilter::default()
            },
            vec!["e5", "e2"],
        ),
        (
            "severities",
            LogFilter {
                severities: strings(&["ERROR", "CRITICAL"]),
                ..LogFilter::default()
            },
            vec!["e6", "e4"],
        ),
        (
            "organization_ids",
            LogFilter {
                organization_ids: strings(&["org-b", "org-c"]),
                ..LogFilter::default()
            },
            vec!["e6", "e4", "e3"],
        ),
        (
            "device_id",
            LogFilter {
                device_id: Some("dev-1".to_owned()),
                ..LogFilter::default()
            },
            vec!["e6", "e3", "e1"],
        ),
        (
            "a value nobody has",
            LogFilter {
                tool_types: strings(&["NO_SUCH_TOOL"]),
                ..LogFilter::default()
            },
            vec![],
        ),
        (
            "every filter at once",
            LogFilter {
                from: Some(T0 + 2),
                to: Some(T0 + 8),
                tool_types: strings(&["MESHCENTRAL", "FLEET_MDM"]),
                event_types: strings(&["LOGIN", "LOGOUT", "POLICY"]),
                severities: strings(&["INFO", "WARNING", "CRITICAL"]),
                organization_ids: strings(&["org-a", "org-b", "org-c"]),
                device_id: Some("dev-1".to_owned()),
                tool_event_ids: Some(strings(&["e3", "e6", "e1"])),
            },
            vec!["e6", "e3"],
        ),
    ];
    for (name, filter, expected) in cases {
        assert_eq!(listed(store, &tenant, &filter).await, expected, "{name}");
        assert_eq!(
            store.count_logs(&tenant, &filter).await.unwrap(),
            expected.len() as u64,
            "{name}"
        );
    }
}

pub async fn tool_event_ids_restrict_results_and_an_empty_list_matches_nothing(
    store: &dyn Analytics,
) {
    let tenant = tenant("tool_event_ids_restrict_results_and_an_empty_list_matches_nothing");
    store.append_logs(&tenant, mixed_logs()).await.unwrap();

    let some = LogFilter {
        tool_event_ids: Some(strings(&["e2", "e7", "not-stored"])),
        ..LogFilter::default()
    };
    assert_eq!(listed(store, &tenant, &some).await, ["e7", "e2"]);
    assert_eq!(store.count_logs(&tenant, &some).await.unwrap(), 2);
    assert_eq!(
        store
            .log_facets(&tenant, &some, LogFacet::ToolType)
            .await
            .unwrap(),
        counts(&[("AUTHENTIK", 1), ("MESHCENTRAL", 1)])
    );

    // The search index found nothing: the answer is nothing, not everything.
    let none = LogFilter {
        tool_event_ids: Some(Vec::new()),
        ..LogFilter::default()
    };
    assert!(
        store
            .query_logs(&tenant, &none, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.count_logs(&tenant, &none).await.unwrap(), 0);
    assert!(
        store
            .log_facets(&tenant, &none, LogFacet::Severity)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .log_time_buckets(&tenant, &none, 1_000)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn log_facets_are_ordered_by_count_then_value_and_match_count_logs(
    store: &dyn Analytics,
) {
    let tenant = tenant("log_facets_are_ordered_by_count_then_value_and_match_count_logs");
    let mut rows = mixed_logs();
    rows.push(LogRow {
        ingest_day: "2024-05-02".to_owned(),
        ..classified(
            "e9",
            T0 + 9,
            "TACTICAL_RMM",
            "SCRIPT",
            "INFO",
            Some("org-b"),
            Some("dev-3"),
        )
    });
    store.append_logs(&tenant, rows).await.unwrap();
    let everything = LogFilter::default();

    // Ties are broken by value ascending; rows without a device or organization have no value
    // to count.
    let expected = [
        (
            LogFacet::ToolType,
            counts(&[
                ("FLEET_MDM", 3),
                ("MESHCENTRAL", 3),
                ("TACTICAL_RMM", 2),
                ("AUTHENTIK", 1),
            ]),
        ),
        (
            LogFacet::EventType,
            counts(&[("LOGIN", 4), ("POLICY", 2), ("SCRIPT", 2), ("LOGOUT", 1)]),
        ),
        (
            LogFacet::Severity,
            counts(&[("INFO", 5), ("WARNING", 2), ("CRITICAL", 1), ("ERROR", 1)]),
        ),
        (
            LogFacet::OrganizationId,
            counts(&[("org-a", 4), ("org-b", 3), ("org-c", 1)]),
        ),
        (
            LogFacet::DeviceId,
            counts(&[("dev-1", 3), ("dev-2", 2), ("dev-3", 2)]),
        ),
        (
            LogFacet::IngestDay,
            counts(&[("2024-05-01", 8), ("2024-05-02", 1)]),
        ),
    ];
    for (facet, expected) in expected {
        let facets = store.log_facets(&tenant, &everything, facet).await.unwrap();
        assert_eq!(facets, expected, "{facet:?}");
    }

    // Every facet with a matching filter agrees with counting under that filter.
    for facet in [
        LogFacet::ToolType,
        LogFacet::EventType,
        LogFacet::Severity,
        LogFacet::OrganizationId,
        LogFacet::DeviceId,
    ] {
        for FacetCount { value, count } in
            store.log_facets(&tenant, &everything, facet).await.unwrap()
        {
            let mut filter = LogFilter::default();
            match facet {
                LogFacet::ToolType => filter.tool_types = vec![value.clone()],
                LogFacet::EventType => filter.event_types = vec![value.clone()],
                LogFacet::Severity => filter.severities = vec![value.clone()],
                LogFacet::OrganizationId => filter.organization_ids = vec![value.clone()],
                LogFacet::DeviceId => filter.device_id = Some(value.clone()),
                LogFacet::IngestDay => unreachable!("no filter on ingest_day"),
            }
            assert_eq!(
                store.count_logs(&tenant, &filter).await.unwrap(),
                count,
                "{facet:?} = {value}"
            );
        }
    }
}

pub async fn facets_and_count_in_one_pass_match_the_single_queries(store: &dyn Analytics) {
    let tenant = tenant("facets_and_count_in_one_pass_match_the_single_queries");
    store.append_logs(&tenant, mixed_logs()).await.unwrap();
    let facets = [
        LogFacet::Severity,
        LogFacet::ToolType,
        LogFacet::OrganizationId,
        LogFacet::DeviceId,
    ];
    for filter in [
        LogFilter::default(),
        LogFilter {
            severities: strings(&["WARNING", "ERROR"]),
            ..LogFilter::default()
        },
        LogFilter {
            tool_event_ids: Some(Vec::new()),
            ..LogFilter::default()
        },
    ] {
        let (together, count) = store
            .log_facets_and_count(&tenant, &filter, &facets)
            .await
            .unwrap();
        assert_eq!(count, store.count_logs(&tenant, &filter).await.unwrap());
        for (facet, counts) in facets.iter().zip(&together) {
            let alone = store.log_facets(&tenant, &filter, *facet).await.unwrap();
            assert_eq!(counts, &alone, "{facet:?} with {filter:?}");
        }
    }
    assert!(
        store
            .log_facets_and_count(
                &tenant,
                &LogFilter::default(),
                &[LogFacet::Severity, LogFacet::Severity]
            )
            .await
            .is_err(),
        "a facet twice is refused"
    );
}

pub async fn log_facets_count_only_rows_matching_the_filter(store: &dyn Analytics) {
    let tenant = tenant("log_facets_count_only_rows_matching_the_filter");
    store.append_logs(&tenant, mixed_logs()).await.unwrap();
    let info_until_e5 = LogFilter {
        severities: strings(&["INFO"]),
        to: Some(T0 + 6),
        ..LogFilter::default()
    };
    assert_eq!(
        store
            .log_facets(&tenant, &info_until_e5, LogFacet::ToolType)
            .await
            .unwrap(),
        counts(&[("MESHCENTRAL", 2), ("TACTICAL_RMM", 1)])
    );
    assert_eq!(
        store
            .log_facets(&tenant, &info_until_e5, LogFacet::DeviceId)
            .await
            .unwrap(),
        counts(&[("dev-1", 1), ("dev-2", 1), ("dev-3", 1)])
    );
}

pub async fn time_buckets_count_rows_per_epoch_aligned_bucket_and_omit_empty_ones(
    store: &dyn Analytics,
) {
    let tenant = tenant("time_buckets_count_rows_per_epoch_aligned_bucket_and_omit_empty_ones");
    let timestamps = [T0, T0 + 999, T0 + 1_000, T0 + 2_500, T0 + 5_001, T0 + 5_999];
    let rows = timestamps
        .iter()
        .enumerate()
        .map(|(index, &at)| log(&format!("b{index}"), at))
        .collect();
    store.append_logs(&tenant, rows).await.unwrap();
    let everything = LogFilter::default();

    let per_second = store
        .log_time_buckets(&tenant, &everything, 1_000)
        .await
        .unwrap();
    assert_eq!(
        per_second,
        buckets(&[(T0, 2), (T0 + 1_000, 1), (T0 + 2_000, 1), (T0 + 5_000, 2)])
    );

    // Buckets are aligned to the epoch, not to the first row: with a width that does not divide
    // T0, starts are the multiples of the width below each timestamp.
    let width = 7_000;
    let mut expected: BTreeMap<UnixMillis, u64> = BTreeMap::new();
    for at in timestamps {
        *expected.entry(at - at.rem_euclid(width)).or_default() += 1;
    }
    let expected: Vec<TimeBucket> = expected
        .into_iter()
        .map(|(start, count)| TimeBucket { start, count })
        .collect();
    assert_eq!(
        store
            .log_time_buckets(&tenant, &everything, width)
            .await
            .unwrap(),
        expected
    );

    let filtered = LogFilter {
        from: Some(T0 + 1_000),
        to: Some(T0 + 5_999),
        ..LogFilter::default()
    };
    assert_eq!(
        store
            .log_time_buckets(&tenant, &filtered, 1_000)
            .await
            .unwrap(),
        buckets(&[(T0 + 1_000, 1), (T0 + 2_000, 1), (T0 + 5_000, 1)])
    );
    let one_bucket = store
        .log_time_buckets(&tenant, &everything, 86_400_000)
        .await
        .unwrap();
    assert_eq!(one_bucket, buckets(&[(T0, 6)]));
}

pub async fn time_buckets_before_the_epoch_start_at_or_below_the_timestamp(store: &dyn Analytics) {
    let tenant = tenant("time_buckets_before_the_epoch_start_at_or_below_the_timestamp");
    let rows = vec![
        log("m1001", -1_001),
        log("m1000", -1_000),
        log("m1", -1),
        log("zero", 0),
    ];
    store.append_logs(&tenant, rows).await.unwrap();
    assert_eq!(
        store
            .log_time_buckets(&tenant, &LogFilter::default(), 1_000)
            .await
            .unwrap(),
        buckets(&[(-2_000, 1), (-1_000, 2), (0, 1)])
    );
}

pub async fn deleting_logs_before_a_time_removes_only_older_rows(store: &dyn Analytics) {
    let tenant = tenant("deleting_logs_before_a_time_removes_only_older_rows");
    let rows = vec![
        log("t-2", T0 - 2),
        log("t-1", T0 - 1),
        log("t0", T0),
        log("t+1", T0 + 1),
    ];
    store.append_logs(&tenant, rows).await.unwrap();

    assert_eq!(store.delete_logs_before(&tenant, T0).await.unwrap(), 2);
    assert_eq!(
        listed(store, &tenant, &LogFilter::default()).await,
        ["t+1", "t0"]
    );
    assert_eq!(store.delete_logs_before(&tenant, T0).await.unwrap(), 0);
    assert_eq!(
        store
            .count_logs(&tenant, &LogFilter::default())
            .await
            .unwrap(),
        2
    );

    // A deleted event delivered again is new again: the store holds what is retained, no more.
    assert_eq!(
        store
            .append_logs(&tenant, vec![log("t-1", T0 - 1)])
            .await
            .unwrap(),
        1
    );
}

pub async fn invalid_limits_and_bucket_widths_are_rejected(store: &dyn Analytics) {
    let tenant = tenant("invalid_limits_and_bucket_widths_are_rejected");
    let rows = (0..3)
        .map(|index| log(&format!("l{index}"), T0 + index))
        .collect();
    store.append_logs(&tenant, rows).await.unwrap();
    let everything = LogFilter::default();

    for limit in [0, MAX_PAGE + 1, usize::MAX] {
        let result = store.query_logs(&tenant, &everything, None, limit).await;
        assert_invalid_query(result, "limit");
    }
    assert_eq!(
        store
            .query_logs(&tenant, &everything, None, 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .query_logs(&tenant, &everything, None, MAX_PAGE)
            .await
            .unwrap()
            .len(),
        3
    );

    for width in [0, -1, i64::MIN] {
        let result = store.log_time_buckets(&tenant, &everything, width).await;
        assert_invalid_query(result, "width");
    }
}

pub async fn upserting_a_device_again_replaces_it(store: &dyn Analytics) {
    let tenant = tenant("upserting_a_device_again_replaces_it");
    store
        .upsert_devices(
            &tenant,
            vec![device(
                "machine-1",
                "ONLINE",
                "WINDOWS",
                Some("org-a"),
                &["vip", "finance"],
                &["site:hq"],
            )],
        )
        .await
        .unwrap();
    store
        .upsert_devices(
            &tenant,
            vec![device(
                "machine-1",
                "OFFLINE",
                "LINUX",
                None,
                &["lab"],
                &["site:lab", "rack:4"],
            )],
        )
        .await
        .unwrap();
    let everything = DeviceFilter::default();
    assert_eq!(store.count_devices(&tenant, &everything).await.unwrap(), 1);
    let expected_facets = [
        (DeviceFacet::Status, counts(&[("OFFLINE", 1)])),
        (DeviceFacet::OsType, counts(&[("LINUX", 1)])),
        (DeviceFacet::OrganizationId, counts(&[])),
        (DeviceFacet::Tag, counts(&[("lab", 1)])),
        (
            DeviceFacet::TagKeyValue,
            counts(&[("rack:4", 1), ("site:lab", 1)]),
        ),
    ];
    for (facet, expected) in expected_facets {
        let facets = store
            .device_facets(&tenant, &everything, facet)
            .await
            .unwrap();
        assert_eq!(facets, expected, "{facet:?}");
    }

    // Within one batch the last row for a machine wins, as if upserted one by one.
    store
        .upsert_devices(
            &tenant,
            vec![
                device("machine-2", "ONLINE", "MACOS", None, &[], &[]),
                device("machine-2", "ARCHIVED", "MACOS", None, &[], &[]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(store.count_devices(&tenant, &everything).await.unwrap(), 2);
    assert_eq!(
        store
            .device_facets(&tenant, &everything, DeviceFacet::Status)
            .await
            .unwrap(),
        counts(&[("ARCHIVED", 1), ("OFFLINE", 1)])
    );
}

/// Four devices spread so every device facet has ties and a device without the value.
fn fleet() -> Vec<DeviceRow> {
    vec![
        device(
            "m1",
            "ONLINE",
            "WINDOWS",
            Some("org-a"),
            &["vip", "finance"],
            &["site:hq", "floor:2"],
        ),
        device(
            "m2",
            "ONLINE",
            "LINUX",
            Some("org-a"),
            &["finance"],
            &["site:hq"],
        ),
        device(
            "m3",
            "OFFLINE",
            "WINDOWS",
            Some("org-b"),
            &["vip"],
            &["site:branch"],
        ),
        DeviceRow {
            device_type: "SERVER".to_owned(),
            ..device("m4", "PENDING", "MACOS", None, &[], &[])
        },
    ]
}

pub async fn device_facets_count_devices_per_value_and_unnest_tags(store: &dyn Analytics) {
    let tenant = tenant("device_facets_count_devices_per_value_and_unnest_tags");
    store.upsert_devices(&tenant, fleet()).await.unwrap();
    let everything = DeviceFilter::default();
    let expected = [
        (
            DeviceFacet::Status,
            counts(&[("ONLINE", 2), ("OFFLINE", 1), ("PENDING", 1)]),
        ),
        (
            DeviceFacet::DeviceType,
            counts(&[("DESKTOP", 3), ("SERVER", 1)]),
        ),
        (
            DeviceFacet::OsType,
            counts(&[("WINDOWS", 2), ("LINUX", 1), ("MACOS", 1)]),
        ),
        (
            DeviceFacet::OrganizationId,
            counts(&[("org-a", 2), ("org-b", 1)]),
        ),
        (DeviceFacet::Tag, counts(&[("finance", 2), ("vip", 2)])),
        (
            DeviceFacet::TagKeyValue,
            counts(&[("site:hq", 2), ("floor:2", 1), ("site:branch", 1)]),
        ),
    ];
    for (facet, expected) in expected {
        let facets = store
            .device_facets(&tenant, &everything, facet)
            .await
            .unwrap();
        assert_eq!(facets, expected, "{facet:?}");
    }

    // Every facet with a matching filter agrees with counting under that filter.
    for facet in [
        DeviceFacet::Status,
        DeviceFacet::DeviceType,
        DeviceFacet::OsType,
        DeviceFacet::OrganizationId,
        DeviceFacet::Tag,
    ] {
        for FacetCount { value, count } in store
            .device_facets(&tenant, &everything, facet)
            .await
            .unwrap()
        {
            let mut filter = DeviceFilter::default();
            match facet {
                DeviceFacet::Status => filter.statuses = vec![value.clone()],
                DeviceFacet::DeviceType => filter.device_types = vec![value.clone()],
                DeviceFacet::OsType => filter.os_types = vec![value.clone()],
                DeviceFacet::OrganizationId => filter.organization_ids = vec![value.clone()],
                DeviceFacet::Tag => filter.tags = vec![value.clone()],
                DeviceFacet::TagKeyValue => unreachable!("no filter on tag_key_values"),
            }
            assert_eq!(
                store.count_devices(&tenant, &filter).await.unwrap(),
                count,
                "{facet:?} = {value}"
            );
        }
    }

    // Facets count only devices matching the filter.
    let windows = DeviceFilter {
        os_types: strings(&["WINDOWS"]),
        ..DeviceFilter::default()
    };
    assert_eq!(
        store
            .device_facets(&tenant, &windows, DeviceFacet::Tag)
            .await
            .unwrap(),
        counts(&[("vip", 2), ("finance", 1)])
    );
    assert_eq!(
        store
            .device_facets(&tenant, &windows, DeviceFacet::Status)
            .await
            .unwrap(),
        counts(&[("OFFLINE", 1), ("ONLINE", 1)])
    );
}

pub async fn device_filters_match_any_listed_value_and_require_every_tag(store: &dyn Analytics) {
    let tenant = tenant("device_filters_match_any_listed_value_and_require_every_tag");
    store.upsert_devices(&tenant, fleet()).await.unwrap();
    let cases: Vec<(&str, DeviceFilter, u64)> = vec![
        ("no filter", DeviceFilter::default(), 4),
        (
            "statuses",
            DeviceFilter {
                statuses: strings(&["OFFLINE", "PENDING"]),
                ..DeviceFilter::default()
            },
            2,
        ),
        (
            "device_types",
            DeviceFilter {
                device_types: strings(&["SERVER"]),
                ..DeviceFilter::default()
            },
            1,
        ),
        (
            "os_types",
            DeviceFilter {
                os_types: strings(&["LINUX", "MACOS"]),
                ..DeviceFilter::default()
            },
            2,
        ),
        (
            "organization_ids",
            DeviceFilter {
                organization_ids: strings(&["org-a", "org-b"]),
                ..DeviceFilter::default()
            },
            3,
        ),
        (
            "one tag",
            DeviceFilter {
                tags: strings(&["vip"]),
                ..DeviceFilter::default()
            },
            2,
        ),
        (
            "every tag is required",
            DeviceFilter {
                tags: strings(&["vip", "finance"]),
                ..DeviceFilter::default()
            },
            1,
        ),
        (
            "a tag nobody has",
            DeviceFilter {
                tags: strings(&["vip", "no-such-tag"]),
                ..DeviceFilter::default()
            },
            0,
        ),
        (
            "filters combine",
            DeviceFilter {
                statuses: strings(&["ONLINE", "OFFLINE"]),
                os_types: strings(&["WINDOWS"]),
                tags: strings(&["vip"]),
                ..DeviceFilter::default()
            },
            2,
        ),
        (
            "combined filters that exclude each other",
            DeviceFilter {
                statuses: strings(&["OFFLINE"]),
                organization_ids: strings(&["org-a"]),
                ..DeviceFilter::default()
            },
            0,
        ),
    ];
    for (name, filter, expected) in cases {
        assert_eq!(
            store.count_devices(&tenant, &filter).await.unwrap(),
            expected,
            "{name}"
        );
    }
    let vip_and_finance = DeviceFilter {
        tags: strings(&["vip", "finance"]),
        ..DeviceFilter::default()
    };
    assert_eq!(
        store
            .device_facets(&tenant, &vip_and_finance, DeviceFacet::TagKeyValue)
            .await
            .unwrap(),
        counts(&[("floor:2", 1), ("site:hq", 1)])
    );
}

pub async fn count_devices_follows_upserts(store: &dyn Analytics) {
    let tenant = tenant("count_devices_follows_upserts");
    let online = DeviceFilter {
        statuses: strings(&["ONLINE"]),
        ..DeviceFilter::default()
    };
    assert_eq!(
        store
            .count_devices(&tenant, &DeviceFilter::default())
            .await
            .unwrap(),
        0
    );
    store.upsert_devices(&tenant, fleet()).await.unwrap();
    assert_eq!(store.count_devices(&tenant, &online).await.unwrap(), 2);
    // A device going offline leaves the online count at once.
    store
        .upsert_devices(
            &tenant,
            vec![device("m2", "OFFLINE", "LINUX", Some("org-a"), &[], &[])],
        )
        .await
        .unwrap();
    assert_eq!(store.count_devices(&tenant, &online).await.unwrap(), 1);
    assert_eq!(
        store
            .count_devices(&tenant, &DeviceFilter::default())
            .await
            .unwrap(),
        4
    );
}

/// Instantiates every [`Analytics`] conformance case as a test; `$factory` is a future of
/// `(store, guard)` where `store` derefs to something implementing [`Analytics`] (such as
/// `Arc<dyn Analytics>`) and `guard` keeps the engine's files alive until the case ends.
#[macro_export]
macro_rules! analytics_conformance {
    ($factory:expr) => {
        $crate::analytics_conformance!(@cases $factory;
            appended_rows_come_back_whole,
            appending_the_same_rows_again_adds_nothing,
            duplicates_inside_one_batch_are_stored_once,
            an_empty_batch_appends_nothing,
            another_tenants_logs_are_never_seen_by_any_query,
            deleting_old_logs_of_one_tenant_leaves_the_other,
            another_tenants_devices_are_never_counted_or_faceted,
            logs_are_listed_newest_first_with_ties_broken_by_tool_event_id_descending,
            keyset_paging_visits_every_row_exactly_once,
            oldest_first_paging_mirrors_newest_first,
            time_range_includes_from_and_excludes_to,
            each_log_filter_matches_any_of_its_values,
            tool_event_ids_restrict_results_and_an_empty_list_matches_nothing,
            log_facets_are_ordered_by_count_then_value_and_match_count_logs,
            log_facets_count_only_rows_matching_the_filter,
            facets_and_count_in_one_pass_match_the_single_queries,
            time_buckets_count_rows_per_epoch_aligned_bucket_and_omit_empty_ones,
            time_buckets_before_the_epoch_start_at_or_below_the_timestamp,
            deleting_logs_before_a_time_removes_only_older_rows,
            invalid_limits_and_bucket_widths_are_rejected,
            upserting_a_device_again_replaces_it,
            device_facets_count_devices_per_value_and_unnest_tags,
            device_filters_match_any_listed_value_and_require_every_tag,
            count_devices_follows_upserts,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let (store, guard) = $factory.await;
            $crate::conformance::analytics::$case(&*store).await;
            // The engine goes before its files do.
            drop(store);
            drop(guard);
        }
    )*};
}
