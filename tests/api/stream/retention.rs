//! Retention: log entries past their tenant's retention leave the details, the analytics table and
//! the search index, on the appliance's clock; a tenant's own setting wins over the default.

use std::sync::Arc;

use openframe_storage::details::LogKey;
use openframe_storage::model::ManualClock;
use openframe_storage::search::{DocumentKind, SearchQuery};
use reqwest::StatusCode;

use super::support::{fixture, ingest, ingest_key, rows, settle};
use crate::gateway::support::{tenant, two_tenants};
use crate::helpers::{spawn_with_clock, test_config};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

#[tokio::test]
async fn entries_past_retention_leave_every_store_and_a_tenant_setting_wins() {
    // The fixtures happen on 2025-11-20; the appliance's day is the 21st.
    let clock = ManualClock::starting_at(1_763_629_200_000 + DAY_MS);
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config
        .stream
        .tenant_log_retention_days
        .insert("globex".into(), 365);
    let app = spawn_with_clock(config, Arc::new(clock.clone())).await;
    let tenants = two_tenants(&app).await;
    for token in [&tenants.admin_a, &tenants.admin_b] {
        let key = ingest_key(&app, token).await;
        let (status, _) = ingest(
            &app,
            &key,
            "MESHCENTRAL_EVENT",
            fixture("meshcentral-events.ndjson"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    settle(&app).await;
    let first = rows(&app, "acme").await.pop().unwrap();

    // Within the default 60 days nothing goes.
    clock.advance_ms(58 * DAY_MS);
    app.state.stream.enforce_retention().await;
    assert_eq!(rows(&app, "acme").await.len(), 9);

    clock.advance_ms(3 * DAY_MS);
    app.state.stream.enforce_retention().await;
    app.state.storage.search.refresh().await.unwrap();
    assert!(rows(&app, "acme").await.is_empty());
    let acme = tenant("acme");
    let key = LogKey {
        timestamp: first.event_timestamp,
        tool_event_id: first.tool_event_id.clone(),
    };
    assert!(
        app.state
            .storage
            .details
            .get(&acme, &key)
            .await
            .unwrap()
            .is_none()
    );
    let everything = SearchQuery {
        text: String::new(),
        kind: Some(DocumentKind::Log),
        from: None,
        to: None,
        limit: 100,
    };
    assert!(
        app.state
            .storage
            .search
            .search(&acme, &everything)
            .await
            .unwrap()
            .is_empty()
    );
    // Globex keeps a year.
    assert_eq!(rows(&app, "globex").await.len(), 9);
    assert_eq!(
        app.state
            .storage
            .search
            .search(&tenant("globex"), &everything)
            .await
            .unwrap()
            .len(),
        9
    );
}
