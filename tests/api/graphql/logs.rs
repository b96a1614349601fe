//! The unified log through GraphQL: paging, filters, search, facets and details, over log
//! entries written to the real sinks (analytics, search index, details store).

use openframe::inventory::Attribution;
use openframe::stream::pipeline::LogEntry;
use serde_json::{Value, json};

use super::support::{data, error, put_org};
use crate::gateway::support::{tenant, two_tenants};
use crate::helpers::{TestApp, spawn_app};

/// A MeshCentral login of `host-a` at `timestamp` (ms), with `summary`.
pub(crate) fn entry(id: &str, timestamp: i64, summary: &str) -> LogEntry {
    let day = time::OffsetDateTime::from_unix_timestamp(timestamp / 1000)
        .unwrap()
        .date();
    LogEntry {
        tool_event_id: id.into(),
        timestamp,
        ingest_day: format!(
            "{:04}-{:02}-{:02}",
            day.year(),
            u8::from(day.month()),
            day.day()
        ),
        tool_type: "MESHCENTRAL",
        event_type: "LOGIN",
        severity: "INFO",
        summary: summary.into(),
        message: format!("message of {id}"),
        user: Some("tech@msp.example".into()),
        attribution: Attribution {
            machine_id: Some("m-1".into()),
            hostname: Some("host-a".into()),
            organization_id: Some("org-east".into()),
            organization_name: Some("East Clinic".into()),
        },
        source_event_type: "user.login".into(),
        details: json!({"ip": "10.0.0.7"}),
        source: json!({}),
        unattributed: None,
    }
}

/// Writes an entry where the pipeline would: details, analytics and the search index.
pub(crate) async fn put_log(app: &TestApp, tenant_id: &str, entry: LogEntry) {
    let storage = &app.state.storage;
    let tenant = tenant(tenant_id);
    let key = openframe_storage::details::LogKey {
        timestamp: entry.timestamp,
        tool_event_id: entry.tool_event_id.clone(),
    };
    let bytes = serde_json::to_vec(&entry.details_json()).unwrap();
    storage
        .details
        .put_batch(&tenant, vec![(key, bytes)])
        .await
        .unwrap();
    storage
        .analytics
        .append_logs(&tenant, vec![entry.row()])
        .await
        .unwrap();
    storage
        .search
        .index(&tenant, vec![entry.search_document()])
        .await
        .unwrap();
    storage.search.refresh().await.unwrap();
}

const LOGS: &str = "query($first: Int, $after: String, $filter: LogFilterInput, $search: String) {
  logs(first: $first, after: $after, filter: $filter, search: $search) {
    filteredCount pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { cursor node { id toolEventId summary severity eventType toolType hostname organizationName timestamp ingestDay } }
  }
}";

fn ids(page: &Value) -> Vec<String> {
    page["logs"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["toolEventId"].as_str().unwrap().to_owned())
        .collect()
}

const START: i64 = 1_795_168_800_000; // 2026-11-20T10:00:00Z

#[tokio::test]
async fn logs_page_filter_search_and_show_details() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    put_org(&app, "acme", "org-east", "East Clinic").await;
    // 25 events a minute apart; every fifth is a WARNING about a disk.
    for i in 0..25 {
        let mut event = entry(
            &format!("e-{i:02}"),
            START + i * 60_000,
            &format!("login number {i}"),
        );
        if i % 5 == 0 {
            event.severity = "WARNING";
            event.event_type = "DISK_ALERT";
            event.summary = format!("disk almost full {i}");
        }
        put_log(&app, "acme", event).await;
    }

    // Newest first, 10 a page, every event once.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = data(&app, token, LOGS, json!({"first": 10, "after": after})).await;
        assert_eq!(page["logs"]["filteredCount"], 25);
        assert_eq!(
            page["logs"]["pageInfo"]["hasPreviousPage"],
            !after.is_null()
        );
        seen.extend(ids(&page));
        if page["logs"]["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["logs"]["pageInfo"]["endCursor"].clone();
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("e-{i:02}")).collect();
    assert_eq!(seen, expected);
    let first = data(&app, token, LOGS, json!({"first": 1})).await;
    assert_eq!(
        first["logs"]["edges"][0]["node"],
        json!({"id": first["logs"]["edges"][0]["node"]["id"], "toolEventId": "e-24", "summary": "login number 24",
               "severity": "INFO", "eventType": "LOGIN", "toolType": "MESHCENTRAL", "hostname": "host-a",
               "organizationName": "East Clinic", "timestamp": "2026-11-20T10:24:00Z", "ingestDay": "2026-11-20"})
    );

    // Filters, time ranges and search; facets count the same list.
    let facets_query = "query($filter: LogFilterInput, $search: String) { logFilters(filter: $filter, search: $search) {
        filteredCount severities eventTypes toolTypes organizations { id name } counts { facet value count } } }";
    let facets = data(&app, token, facets_query, json!({})).await["logFilters"].clone();
    assert_eq!(facets["filteredCount"], 25);
    assert_eq!(facets["severities"], json!(["INFO", "WARNING"]));
    assert_eq!(
        facets["organizations"],
        json!([{"id": "org-east", "name": "East Clinic"}])
    );
    let counts: Vec<(String, String, i64)> = facets["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["facet"].as_str().unwrap().into(),
                c["value"].as_str().unwrap().into(),
                c["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        counts.contains(&("SEVERITY".into(), "WARNING".into(), 5)),
        "{counts:?}"
    );
    assert!(
        counts.contains(&("SEVERITY".into(), "INFO".into(), 20)),
        "{counts:?}"
    );
    for (filter, search, expected) in [
        (json!({"severities": ["WARNING"]}), None, 5),
        (
            json!({"eventTypes": ["LOGIN"], "toolTypes": ["MESHCENTRAL"]}),
            None,
            20,
        ),
        (
            json!({"timestampFrom": "2026-11-20T10:10:00Z", "timestampTo": "2026-11-20T10:20:00Z"}),
            None,
            10,
        ),
        (
            json!({"startDate": "2026-11-20", "endDate": "2026-11-20"}),
            None,
            25,
        ),
        (json!({"startDate": "2026-11-21"}), None, 0),
        (
            json!({"deviceId": "m-1", "organizationIds": ["org-east"]}),
            None,
            25,
        ),
        (json!({}), Some("disk"), 5),
        (json!({"severities": ["INFO"]}), Some("disk"), 0),
    ] {
        let vars = json!({"filter": filter, "search": search, "first": 100});
        let list = data(&app, token, LOGS, vars.clone()).await;
        let facets = data(&app, token, facets_query, vars).await;
        assert_eq!(
            list["logs"]["filteredCount"], expected,
            "{filter} {search:?}"
        );
        assert_eq!(
            list["logs"]["edges"].as_array().unwrap().len(),
            expected,
            "{filter} {search:?}"
        );
        assert_eq!(
            facets["logFilters"]["filteredCount"], expected,
            "{filter} {search:?}"
        );
    }

    // Details by key; a wrong key field finds nothing.
    let details = "query($day: String!, $type: String!, $at: String!) { logDetails(ingestDay: $day, toolType: \"MESHCENTRAL\", eventType: $type, timestamp: $at, toolEventId: \"e-05\") { toolEventId message details severity summary } }";
    let found = data(
        &app,
        token,
        details,
        json!({"day": "2026-11-20", "type": "DISK_ALERT", "at": "2026-11-20T10:05:00Z"}),
    )
    .await;
    assert_eq!(
        found["logDetails"],
        json!({"toolEventId": "e-05", "message": "message of e-05", "details": "{\"ip\":\"10.0.0.7\"}", "severity": "WARNING", "summary": "disk almost full 5"})
    );
    let wrong = data(
        &app,
        token,
        details,
        json!({"day": "2026-11-20", "type": "LOGIN", "at": "2026-11-20T10:05:00Z"}),
    )
    .await;
    assert_eq!(wrong["logDetails"], Value::Null);

    // Bad input names the argument.
    for (query, vars, argument) in [
        (
            LOGS,
            json!({"filter": {"startDate": "20/11/2026"}}),
            "filter.startDate",
        ),
        (
            LOGS,
            json!({"filter": {"timestampTo": "yesterday"}}),
            "filter.timestampTo",
        ),
        (LOGS, json!({"after": "bm90LWEtY3Vyc29y"}), "after"),
        (LOGS, json!({"first": 1000}), "first"),
        (
            "{ logs(after: \"MTdfYQ==\", before: \"MTdfYQ==\") { filteredCount } }",
            json!({}),
            "after, before",
        ),
        (
            "{ logs(last: 5, before: \"bm90LWEtY3Vyc29y\") { filteredCount } }",
            json!({}),
            "before",
        ),
        (
            details,
            json!({"day": "2026-11-20", "type": "LOGIN", "at": "noon"}),
            "timestamp",
        ),
    ] {
        let (code, message) = error(&app, token, query, vars).await;
        assert_eq!(code, "invalid_input", "{message}");
        assert!(message.starts_with(argument), "{argument}: {message}");
    }
}

const PAGED: &str = "query($first: Int, $after: String, $last: Int, $before: String, $sort: LogSortInput, $search: String) {
  logs(first: $first, after: $after, last: $last, before: $before, sort: $sort, search: $search) {
    filteredCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { node { toolEventId } }
  }
}";

#[tokio::test]
async fn logs_page_backward_and_oldest_first_across_pages() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    // 23 events; three share a timestamp, so ties straddle page boundaries.
    for i in 0..23_i64 {
        let at = START + (i - i64::from(i == 11) - 2 * i64::from(i == 12)) * 1_000;
        let kind = if i % 5 == 0 { "restore" } else { "backup" };
        put_log(
            &app,
            "acme",
            entry(&format!("e-{i:02}"), at, &format!("{kind} run {i}")),
        )
        .await;
    }
    let newest_first: Vec<String> = {
        let page = data(&app, token, PAGED, json!({"first": 100})).await;
        ids(&page)
    };
    assert_eq!(newest_first.len(), 23);

    // Backward from the end, 10 a page: the same list, page by page from its bottom.
    let mut backward: Vec<String> = Vec::new();
    let mut before = Value::Null;
    let mut pages = 0;
    loop {
        let page = data(&app, token, PAGED, json!({"last": 10, "before": before})).await;
        assert_eq!(page["logs"]["filteredCount"], 23);
        assert_eq!(page["logs"]["pageInfo"]["hasNextPage"], !before.is_null());
        let mut rows = ids(&page);
        rows.extend(backward);
        backward = rows;
        pages += 1;
        if page["logs"]["pageInfo"]["hasPreviousPage"] == false {
            break;
        }
        before = page["logs"]["pageInfo"]["startCursor"].clone();
    }
    assert_eq!(pages, 3);
    assert_eq!(backward, newest_first);

    // Oldest first, forward and then backward from the middle.
    let mut oldest: Vec<String> = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = data(
            &app,
            token,
            PAGED,
            json!({"first": 7, "after": after, "sort": {"direction": "ASC"}}),
        )
        .await;
        oldest.extend(ids(&page));
        if page["logs"]["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["logs"]["pageInfo"]["endCursor"].clone();
    }
    let reversed: Vec<String> = newest_first.iter().rev().cloned().collect();
    assert_eq!(oldest, reversed);
    let middle = data(
        &app,
        token,
        PAGED,
        json!({"first": 12, "sort": {"direction": "ASC"}}),
    )
    .await;
    let cursor = middle["logs"]["pageInfo"]["endCursor"].clone();
    let back = data(
        &app,
        token,
        PAGED,
        json!({"last": 5, "before": cursor, "sort": {"direction": "ASC"}}),
    )
    .await;
    assert_eq!(ids(&back), reversed[6..11].to_vec());
    assert_eq!(back["logs"]["pageInfo"]["hasPreviousPage"], true);
    assert_eq!(back["logs"]["pageInfo"]["hasNextPage"], true);

    // Backward composes with search; an empty result is an empty page.
    let searched = data(&app, token, PAGED, json!({"last": 2, "search": "restore"})).await;
    assert_eq!(searched["logs"]["filteredCount"], 5);
    assert_eq!(ids(&searched), ["e-05", "e-00"]);
    assert_eq!(ids(&searched).len(), 2);
    assert_eq!(searched["logs"]["pageInfo"]["hasPreviousPage"], true);
    let none = data(
        &app,
        token,
        PAGED,
        json!({"last": 5, "search": "no such words"}),
    )
    .await;
    assert_eq!(none["logs"]["edges"], json!([]));
    assert_eq!(none["logs"]["pageInfo"]["hasPreviousPage"], false);
}

/// `logTimeline`: counts per time bucket of the filtered log (the console's events-per-hour
/// chart), only the caller's tenant, with the bucket width checked.
#[tokio::test]
async fn log_timeline_counts_the_filtered_log_per_bucket() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    const HOUR: i64 = 3_600_000;
    // START is on the hour: 3 entries in its first hour, 1 two hours later (an empty hour
    // between), and 1 of another tool; the other tenant has one in the same hour.
    for (id, at) in [
        ("t-1", 0),
        ("t-2", 60_000),
        ("t-3", HOUR - 1),
        ("t-4", 2 * HOUR + 5),
    ] {
        put_log(&app, "acme", entry(id, START + at, "login")).await;
    }
    let mut fleet = entry("t-5", START + 10, "policy");
    fleet.tool_type = "FLEET_MDM";
    put_log(&app, "acme", fleet).await;
    put_log(&app, "globex", entry("g-1", START + 5, "login")).await;

    let query = "query($filter: LogFilterInput, $search: String, $minutes: Int) {
      logTimeline(filter: $filter, search: $search, bucketMinutes: $minutes) { start count }
    }";
    let timeline = data(&app, &tenants.admin_a, query, json!({})).await;
    assert_eq!(
        timeline["logTimeline"],
        json!([
            {"start": "2026-11-20T10:00:00Z", "count": 4},
            {"start": "2026-11-20T12:00:00Z", "count": 1},
        ])
    );
    let filtered = data(
        &app,
        &tenants.admin_a,
        query,
        json!({"filter": {"toolTypes": ["MESHCENTRAL"]}, "minutes": 30}),
    )
    .await;
    assert_eq!(
        filtered["logTimeline"],
        json!([
            {"start": "2026-11-20T10:00:00Z", "count": 2},
            {"start": "2026-11-20T10:30:00Z", "count": 1},
            {"start": "2026-11-20T12:00:00Z", "count": 1},
        ])
    );
    let other = data(&app, &tenants.admin_b, query, json!({})).await;
    assert_eq!(
        other["logTimeline"],
        json!([{"start": "2026-11-20T10:00:00Z", "count": 1}])
    );
    for minutes in [0, 1441, -5] {
        let (code, message) =
            error(&app, &tenants.admin_a, query, json!({"minutes": minutes})).await;
        assert_eq!(code, "invalid_input");
        assert!(message.starts_with("bucketMinutes:"), "{message}");
    }
}
