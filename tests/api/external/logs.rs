//! The unified log through the external API: newest first in stable keyset pages, filters,
//! search, facets and details, over entries written to the real sinks; `logs:read` only, the
//! other tenant sees none of it, and bad parameters are named in a 400.

use reqwest::Method;
use serde_json::{Value, json};

use super::{listed, refuses_naming, with_key};
use crate::gateway::support::{create_key, two_tenants};
use crate::graphql::logs::{entry, put_log};
use crate::graphql::support::put_org;
use crate::helpers::spawn_app;

const START: i64 = 1_795_168_800_000; // 2026-11-20T10:00:00Z

fn ids(answer: &Value) -> Vec<&str> {
    listed(answer, "logs", "toolEventId")
}

#[tokio::test]
async fn logs_are_paged_filtered_searched_and_read_in_full_with_a_key() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
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
    put_log(&app, "globex", entry("g-1", START, "globex login")).await;
    let (_, key, _) = create_key(&app, &tenants.admin_a, json!({"name": "siem"})).await;
    let (_, theirs, _) = create_key(&app, &tenants.admin_b, json!({"name": "globex"})).await;

    // Newest first, 10 a page; an entry written between pages moves no page boundary.
    let (status, first) = with_key(&app, &key, Method::GET, "/logs?limit=10", None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["filteredCount"], 25);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    assert_eq!(first["pageInfo"]["hasPreviousPage"], false);
    let expected: Vec<String> = (0..25).rev().map(|i| format!("e-{i:02}")).collect();
    assert_eq!(ids(&first), expected[..10]);
    assert_eq!(
        first["logs"][0],
        json!({"id": format!("{}_e-24", START + 24 * 60_000), "toolEventId": "e-24",
               "eventType": "LOGIN", "ingestDay": "2026-11-20", "toolType": "MESHCENTRAL",
               "severity": "INFO", "userId": "tech@msp.example", "deviceId": "m-1",
               "hostname": "host-a", "organizationId": "org-east",
               "organizationName": "East Clinic", "summary": "login number 24",
               "timestamp": "2026-11-20T10:24:00Z"})
    );
    put_log(
        &app,
        "acme",
        entry("late", START + 3_600_000, "a newer login"),
    )
    .await;
    let mut seen: Vec<String> = ids(&first).iter().map(|id| (*id).to_owned()).collect();
    let mut cursor = first["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
    loop {
        let (status, page) = with_key(
            &app,
            &key,
            Method::GET,
            &format!("/logs?limit=10&cursor={cursor}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["pageInfo"]["hasPreviousPage"], true);
        seen.extend(ids(&page).iter().map(|id| (*id).to_owned()));
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        cursor = page["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen, expected);

    // Oldest first; filters (comma-separated or repeated) and search.
    let (_, oldest) = with_key(
        &app,
        &key,
        Method::GET,
        "/logs?limit=3&sortDirection=ASC&sortField=eventTimestamp",
        None,
    )
    .await;
    assert_eq!(ids(&oldest), ["e-00", "e-01", "e-02"]);
    let (_, warnings) = with_key(
        &app,
        &key,
        Method::GET,
        "/logs?severities=WARNING,ERROR&toolTypes=MESHCENTRAL&organizationIds=org-east&deviceId=m-1",
        None,
    )
    .await;
    assert_eq!(ids(&warnings), ["e-20", "e-15", "e-10", "e-05", "e-00"]);
    assert_eq!(warnings["filteredCount"], 5);
    let (_, searched) = with_key(
        &app,
        &key,
        Method::GET,
        "/logs?search=disk&eventTypes=DISK_ALERT&startDate=2026-11-20&endDate=2026-11-20",
        None,
    )
    .await;
    assert_eq!(ids(&searched), ["e-20", "e-15", "e-10", "e-05", "e-00"]);
    let (_, other_day) =
        with_key(&app, &key, Method::GET, "/logs?startDate=2026-11-21", None).await;
    assert_eq!(other_day["filteredCount"], 0, "{other_day}");

    // Facets of the filtered list, with the organization's name.
    let (status, facets) =
        with_key(&app, &key, Method::GET, "/logs/filters?search=disk", None).await;
    assert_eq!(status, 200, "{facets}");
    assert_eq!(facets["filteredCount"], 5);
    assert_eq!(facets["severities"], json!(["WARNING"]));
    assert_eq!(facets["eventTypes"], json!(["DISK_ALERT"]));
    assert_eq!(
        facets["organizations"],
        json!([{"id": "org-east", "name": "East Clinic"}])
    );
    assert!(
        facets["counts"]
            .as_array()
            .unwrap()
            .contains(&json!({"facet": "SEVERITY", "value": "WARNING", "count": 5})),
        "{facets}"
    );

    // Details by the key's fields; the timestamp as RFC 3339 or epoch milliseconds.
    let key_query = |timestamp: &str| {
        format!(
            "/logs/details?ingestDay=2026-11-20&toolType=MESHCENTRAL&eventType=DISK_ALERT\
             &timestamp={timestamp}&toolEventId=e-05"
        )
    };
    let (status, details) = with_key(
        &app,
        &key,
        Method::GET,
        &key_query("2026-11-20T10:05:00Z"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["message"], "message of e-05");
    assert_eq!(details["summary"], "disk almost full 5");
    assert_eq!(details["severity"], "WARNING");
    assert_eq!(
        serde_json::from_str::<Value>(details["details"].as_str().unwrap()).unwrap(),
        json!({"ip": "10.0.0.7"})
    );
    let millis = (START + 5 * 60_000).to_string();
    let (_, same) = with_key(&app, &key, Method::GET, &key_query(&millis), None).await;
    assert_eq!(same, details);
    let wrong_type = key_query(&millis).replace("DISK_ALERT", "LOGIN");
    let (status, missing) = with_key(&app, &key, Method::GET, &wrong_type, None).await;
    assert_eq!((status, &missing["code"]), (404, &json!("not_found")));

    // The other tenant's key sees its own entry and nothing of this tenant's.
    let (_, mine) = with_key(&app, &theirs, Method::GET, "/logs", None).await;
    assert_eq!(ids(&mine), ["g-1"]);
    let (status, _) = with_key(&app, &theirs, Method::GET, &key_query(&millis), None).await;
    assert_eq!(status, 404);
    let (_, none) = with_key(
        &app,
        &theirs,
        Method::GET,
        "/logs/filters?search=disk",
        None,
    )
    .await;
    assert_eq!(none["filteredCount"], 0, "{none}");
}

#[tokio::test]
async fn logs_need_logs_read_and_name_the_bad_parameter() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let (_, devices_only, _) = create_key(
        &app,
        &tenants.admin_a,
        json!({"name": "rmm", "scopes": ["devices:read"]}),
    )
    .await;
    for path in ["/logs", "/logs/filters", "/logs/details"] {
        let (status, error) = with_key(&app, &devices_only, Method::GET, path, None).await;
        assert_eq!(
            (status, &error["code"]),
            (403, &json!("forbidden")),
            "{path}: {error}"
        );
    }
    let (_, key, _) = create_key(&app, &tenants.admin_a, json!({"name": "siem"})).await;
    // The log is read-only: no key holds a scope to write it.
    let (status, _) = with_key(&app, &key, Method::POST, "/logs", Some(json!({}))).await;
    assert_eq!(status, 403);
    let long = "x".repeat(201);
    refuses_naming(
        &app,
        &key,
        &[
            ("/logs?limit=0", "limit"),
            ("/logs?limit=101", "limit"),
            ("/logs?cursor=bm90IGEgY3Vyc29y", "cursor"),
            ("/logs?cursor=%25%25", "cursor"),
            ("/logs?sortField=severity", "sortField"),
            ("/logs?sortDirection=SIDEWAYS", "sortDirection"),
            ("/logs?startDate=2026-13-01", "startDate"),
            ("/logs?endDate=yesterday", "endDate"),
            ("/logs?deviceId=a&deviceId=b", "deviceId"),
            (&format!("/logs?search={long}"), "search"),
            ("/logs?page=2", "page"),
            ("/logs/filters?limit=5", "limit"),
            ("/logs/details?ingestDay=2026-11-20", "timestamp"),
            (
                "/logs/details?ingestDay=2026-11-20&toolType=FLEET&eventType=LOGIN&timestamp=noon&toolEventId=x",
                "timestamp",
            ),
            (
                "/logs/details?toolType=FLEET&eventType=LOGIN&timestamp=1&toolEventId=x",
                "ingestDay",
            ),
        ],
    )
    .await;
}
