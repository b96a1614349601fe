//! `openframe reindex` brings deleted analytics and search stores back from the log details and
//! the inventory, and refuses to run beside a serving appliance.

use openframe_storage::analytics::{DeviceFacet, DeviceFilter};
use reqwest::StatusCode;

use super::support::{fixture, ingest, ingest_key, rows, seed_inventory, settle};
use crate::cli::openframe;
use crate::gateway::support::{tenant, two_tenants};
use crate::helpers::spawn_app_in;

#[tokio::test]
async fn reindex_rebuilds_deleted_analytics_and_search_from_the_log_details() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let mut app = spawn_app_in(&data).await;
    let tenants = two_tenants(&app).await;
    seed_inventory(&app, "acme").await;
    let key = ingest_key(&app, &tenants.admin_a).await;
    let (status, _) = ingest(
        &app,
        &key,
        "MESHCENTRAL_EVENT",
        fixture("meshcentral-events.ndjson"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    settle(&app).await;
    let before = rows(&app, "acme").await;
    assert_eq!(before.len(), 9);

    // Not beside a running appliance: it holds the stores.
    let refused = openframe(&["reindex", "--data-dir", &data_arg]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("stop the appliance"), "{said}");

    app.stop().await.unwrap();
    drop(app);
    for derived in ["analytics.duckdb", "analytics.duckdb.wal"] {
        let _ = std::fs::remove_file(data.join(derived));
    }
    std::fs::remove_dir_all(data.join("search")).unwrap();

    let rebuilt = openframe(&["reindex", "--data-dir", &data_arg, "--json"]);
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    let report: serde_json::Value = serde_json::from_slice(&rebuilt.stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!([
            {"tenant": "acme", "entries": 9, "devices": 3, "unreadable": 0},
            {"tenant": "globex", "entries": 0, "devices": 0, "unreadable": 0},
        ])
    );

    let app = spawn_app_in(&data).await;
    assert_eq!(rows(&app, "acme").await, before);
    let acme = tenant("acme");
    let hits = app
        .state
        .storage
        .search
        .search(
            &acme,
            &openframe_storage::search::SearchQuery {
                text: "\"desktop session\" ACME-WS-001".into(),
                kind: None,
                from: None,
                to: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);
    let statuses = app
        .state
        .storage
        .analytics
        .device_facets(&acme, &DeviceFilter::default(), DeviceFacet::Status)
        .await
        .unwrap();
    assert_eq!(statuses.len(), 1);
    assert_eq!(
        (statuses[0].value.as_str(), statuses[0].count),
        ("ONLINE", 3)
    );
}
