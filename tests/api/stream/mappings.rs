//! Operators' event-type mappings: per tenant through the API, for one or every tenant in the
//! config, each ahead of the built-in tables, and never leaking across tenants.

use openframe::config::MappingOverrideConfig;
use reqwest::StatusCode;

use super::support::{fixture, ingest, ingest_key, row, rows, settle};
use crate::gateway::support::{error_of, two_tenants};
use crate::helpers::{spawn_with, test_config};

fn configured(
    tenant: Option<&str>,
    event_type: &str,
    severity: Option<&str>,
) -> MappingOverrideConfig {
    MappingOverrideConfig {
        tenant: tenant.map(str::to_owned),
        tool: "meshcentral".into(),
        source_event_type: "user.passchange".into(),
        event_type: event_type.into(),
        severity: severity.map(str::to_owned),
    }
}

#[tokio::test]
async fn overrides_from_the_api_and_the_config_win_over_the_tables_per_tenant() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.stream.fleet_join_window_ms = 100;
    config.stream.mapping_overrides = vec![
        configured(None, "PASSWORD_CHANGED", Some("WARNING")),
        configured(Some("globex"), "USER_UPDATED", None),
    ];
    let app = spawn_with(config).await;
    let tenants = two_tenants(&app).await;
    let url = app.https_url("/api/stream/mappings");

    let put = |token: &str, body: serde_json::Value| {
        app.client
            .put(&url)
            .bearer_auth(token.to_owned())
            .json(&body)
            .send()
    };
    let chosen = serde_json::json!({
        "tool": "fleet-mdm", "sourceEventType": "some_brand_new_activity",
        "eventType": "CONFIGURATION_UPDATED", "severity": "ERROR"
    });
    let answer = put(&tenants.admin_a, chosen.clone()).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.json::<serde_json::Value>().await.unwrap(), chosen);
    let wrong = put(
        &tenants.admin_a,
        serde_json::json!({"tool": "fleet-mdm", "sourceEventType": "x", "eventType": "NOPE"}),
    )
    .await
    .unwrap();
    let (status, code, message) = error_of(wrong).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );
    assert!(message.starts_with("eventType:"), "{message}");

    let list = |token: &str| app.client.get(&url).bearer_auth(token.to_owned()).send();
    let ours: serde_json::Value = list(&tenants.admin_a).await.unwrap().json().await.unwrap();
    assert_eq!(ours, serde_json::json!({"overrides": [chosen]}));
    let theirs: serde_json::Value = list(&tenants.admin_b).await.unwrap().json().await.unwrap();
    assert_eq!(theirs, serde_json::json!({"overrides": []}));

    for (token, tenant) in [(&tenants.admin_a, "acme"), (&tenants.admin_b, "globex")] {
        let key = ingest_key(&app, token).await;
        for (message_type, name) in [
            ("MESHCENTRAL_EVENT", "meshcentral-events.ndjson"),
            ("FLEET_ACTIVITY", "fleet-activities.ndjson"),
        ] {
            let (status, answer) = ingest(&app, &key, message_type, fixture(name)).await;
            assert_eq!(status, StatusCode::OK, "{tenant}: {answer}");
        }
    }
    settle(&app).await;
    let acme = rows(&app, "acme").await;
    let globex = rows(&app, "globex").await;
    let kind = |rows: &[openframe_storage::analytics::LogRow], summary: &str| {
        let found = row(rows, summary);
        (found.event_type.clone(), found.severity.clone())
    };
    let pair = |event_type: &str, severity: &str| (event_type.to_owned(), severity.to_owned());
    // The API override is acme's alone.
    assert_eq!(
        kind(&acme, "Jane Admin some brand new activity"),
        pair("CONFIGURATION_UPDATED", "ERROR")
    );
    assert_eq!(
        kind(&globex, "Jane Admin some brand new activity"),
        pair("UNKNOWN", "WARNING")
    );
    // The config's override for every tenant, and globex's own ahead of it.
    assert_eq!(
        kind(&acme, "Account password changed"),
        pair("PASSWORD_CHANGED", "WARNING")
    );
    assert_eq!(
        kind(&globex, "Account password changed"),
        pair("USER_UPDATED", "INFO")
    );
    // Everything else keeps the built-in table.
    assert_eq!(kind(&acme, "Account login"), pair("LOGIN", "INFO"));

    let delete = |token: &str| {
        app.client
            .delete(format!(
                "{url}?tool=fleet-mdm&sourceEventType=some_brand_new_activity"
            ))
            .bearer_auth(token.to_owned())
            .send()
    };
    assert_eq!(
        delete(&tenants.admin_b).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete(&tenants.admin_a).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete(&tenants.admin_a).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let emptied: serde_json::Value = list(&tenants.admin_a).await.unwrap().json().await.unwrap();
    assert_eq!(emptied, serde_json::json!({"overrides": []}));
}

#[test]
fn a_configured_override_with_an_unknown_type_is_a_config_error_naming_it() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.stream.mapping_overrides = vec![
        configured(None, "PASSWORD_CHANGED", None),
        configured(None, "PASSWORD_RESET", None),
    ];
    let error = config.validate().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("stream.mapping_overrides[1].eventType")
            && error.to_string().contains("PASSWORD_RESET"),
        "{error}"
    );
}
