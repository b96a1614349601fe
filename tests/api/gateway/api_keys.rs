//! API keys end to end: made through `/api/api-keys`, used on `/external-api`, with scopes,
//! expiry, disabling, regeneration, deletion, rate limits and statistics.

use openframe_storage::Clock;
use openframe_storage::model::{Collection, DocumentId, ManualClock};
use reqwest::StatusCode;

use super::support::*;
use crate::helpers::spawn_at;

const TOOLS: &str = "/external-api/api/v1/tools";
/// The start of a minute, in Unix ms.
const MINUTE: i64 = 1_900_000_020_000;

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn keys_are_shown_once_stored_as_a_mac_and_obey_their_settings() {
    // Fifteen seconds into a minute (1_900_000_020_000 is a whole minute), so window
    // arithmetic is visible.
    let clock = ManualClock::starting_at(MINUTE + 15_000);
    let app = spawn_at(&clock).await;
    let tenants = two_tenants(&app).await;
    let (id, full, created) = create_key(
        &app,
        &tenants.admin_a,
        serde_json::json!({"name": "PSA sync", "description": "nightly", "scopes": ["tools:read"]}),
    )
    .await;
    // OpenFrame's format, shown once.
    let (key_id, secret) = full.split_once('.').unwrap();
    assert_eq!(key_id, id);
    assert!(key_id.starts_with("ak_") && key_id.len() == 19, "{key_id}");
    assert!(secret.starts_with("sk_") && secret.len() == 35, "{secret}");
    assert!(secret[3..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(created["apiKey"]["name"], "PSA sync");
    assert_eq!(
        created["apiKey"]["scopes"],
        serde_json::json!(["tools:read"])
    );
    assert_eq!(created["apiKey"]["totalRequests"], 0);
    assert!(!created["apiKey"].to_string().contains(&secret[3..]));

    // Listed without the secret; the store holds only a MAC.
    let listed: serde_json::Value = app
        .client
        .get(app.https_url("/api/api-keys"))
        .bearer_auth(&tenants.admin_a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(!listed.to_string().contains(&secret[3..]));
    let stored = app
        .state
        .storage
        .documents
        .get(
            &tenant("acme"),
            &Collection::parse("api_keys").unwrap(),
            &DocumentId::parse(&id).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        !stored.body.to_string().contains(&secret[3..]),
        "{}",
        stored.body
    );
    assert_eq!(stored.body["secretMac"].as_str().unwrap().len(), 64);
    // The other tenant sees nothing of it.
    let other: serde_json::Value = app
        .client
        .get(app.https_url(&format!("/api/api-keys/{id}")))
        .bearer_auth(&tenants.admin_b)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["code"], "not_found");

    let call = |key: String| {
        let request = app
            .client
            .get(app.https_url(TOOLS))
            .header("x-api-key", key);
        async move { request.send().await.unwrap() }
    };
    let ok = call(full.clone()).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["cache-control"], "no-store");
    assert_eq!(
        ok.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"tools": []})
    );

    // A wrong secret, a malformed key: 401 with a message that says which.
    let wrong = format!("{id}.sk_{}", "0".repeat(32));
    let (status, code, message) = error_of(call(wrong).await).await;
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the API key is not valid"
        )
    );
    let (status, _, message) = error_of(call(format!("{id}:{secret}")).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        message.contains("ak_<16 hex digits>.sk_<32 hex digits>"),
        "{message}"
    );

    // A scope it lacks: 403 naming the scope.
    let (_, narrow, _) = create_key(
        &app,
        &tenants.admin_a,
        serde_json::json!({"name": "logs only", "scopes": ["logs:read"]}),
    )
    .await;
    let (status, code, message) = error_of(call(narrow).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    assert!(message.contains("tools:read"), "{message}");
    // Unknown scopes are refused when the key is made.
    let bad = app
        .client
        .post(app.https_url("/api/api-keys"))
        .bearer_auth(&tenants.admin_a)
        .json(&serde_json::json!({"name": "x", "scopes": ["root"]}))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(bad).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );
    assert!(
        message.contains("scopes") && message.contains("root"),
        "{message}"
    );

    // Disabled, then enabled again.
    let update = |body: serde_json::Value| {
        let request = app
            .client
            .put(app.https_url(&format!("/api/api-keys/{id}")))
            .bearer_auth(&tenants.admin_a)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let disabled = update(serde_json::json!({"name": "PSA sync", "enabled": false})).await;
    assert_eq!(disabled.status(), StatusCode::OK);
    let (status, _, message) = error_of(call(full.clone()).await).await;
    assert_eq!(
        (status, message.as_str()),
        (StatusCode::UNAUTHORIZED, "the API key is disabled")
    );
    // A change that leaves `enabled` out leaves the key as it was: still disabled.
    let renamed: serde_json::Value = update(serde_json::json!({"name": "PSA sync (paused)"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["enabled"], false, "{renamed}");
    assert_eq!(
        renamed["scopes"],
        serde_json::json!(["tools:read"]),
        "{renamed}"
    );
    assert_eq!(call(full.clone()).await.status(), StatusCode::UNAUTHORIZED);
    // Expiry: valid until the moment, refused after.
    let expires =
        time::OffsetDateTime::from_unix_timestamp((clock.now_ms() + 60_000) / 1000).unwrap();
    let expiring = update(serde_json::json!({
        "name": "PSA sync",
        "enabled": true,
        "expiresAt": expires.format(&time::format_description::well_known::Rfc3339).unwrap(),
    }))
    .await;
    assert_eq!(expiring.status(), StatusCode::OK);
    assert_eq!(call(full.clone()).await.status(), StatusCode::OK);
    clock.advance_ms(61_000);
    let (status, _, message) = error_of(call(full.clone()).await).await;
    assert_eq!(
        (status, message.as_str()),
        (StatusCode::UNAUTHORIZED, "the API key has expired")
    );
    assert_eq!(
        update(serde_json::json!({"expiresAt": null}))
            .await
            .status(),
        StatusCode::OK
    );

    // Regenerated: the old secret stops, the new one works, the id stays.
    let regenerated: serde_json::Value = app
        .client
        .post(app.https_url(&format!("/api/api-keys/{id}/regenerate")))
        .bearer_auth(&tenants.admin_a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let renewed = regenerated["fullKey"].as_str().unwrap().to_owned();
    assert!(renewed.starts_with(&format!("{id}.sk_")) && renewed != full);
    assert_eq!(call(full.clone()).await.status(), StatusCode::UNAUTHORIZED);
    let fresh = call(renewed.clone()).await;
    assert_eq!(fresh.status(), StatusCode::OK, "{:?}", fresh.text().await);

    // Deleted: gone for good.
    let deleted = app
        .client
        .delete(app.https_url(&format!("/api/api-keys/{id}")))
        .bearer_auth(&tenants.admin_a)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (status, _, message) = error_of(call(renewed).await).await;
    assert_eq!(
        (status, message.as_str()),
        (StatusCode::UNAUTHORIZED, "the API key is not valid")
    );
}

#[tokio::test]
async fn limits_count_down_to_an_exact_429_and_statistics_match() {
    let clock = ManualClock::starting_at(MINUTE + 15_000);
    let mut app = spawn_at(&clock).await;
    let tenants = two_tenants(&app).await;
    let (id, full, created) = create_key(
        &app,
        &tenants.admin_a,
        serde_json::json!({"name": "limited", "rateLimits": {"perMinute": 5}}),
    )
    .await;
    assert_eq!(created["apiKey"]["rateLimits"]["perMinute"], 5);
    let call = || {
        let request = app
            .client
            .get(app.https_url(TOOLS))
            .header("x-api-key", &full);
        async move { request.send().await.unwrap() }
    };
    for used in 1..=5u64 {
        let response = call().await;
        assert_eq!(response.status(), StatusCode::OK, "request {used}");
        assert_eq!(header(&response, "x-ratelimit-limit-minute"), "5");
        assert_eq!(
            header(&response, "x-ratelimit-remaining-minute"),
            (5 - used).to_string()
        );
        assert_eq!(header(&response, "x-ratelimit-limit-hour"), "3000");
        assert_eq!(
            header(&response, "x-ratelimit-remaining-hour"),
            (3000 - used).to_string()
        );
        assert_eq!(header(&response, "x-ratelimit-limit-day"), "30000");
        assert_eq!(
            header(&response, "x-ratelimit-remaining-day"),
            (30000 - used).to_string()
        );
        assert_eq!(
            header(&response, "ratelimit-policy"),
            "\"minute\";q=5;w=60, \"hour\";q=3000;w=3600, \"day\";q=30000;w=86400"
        );
        assert_eq!(
            header(&response, "ratelimit"),
            format!("\"minute\";r={};t=45", 5 - used)
        );
    }
    // The sixth in the same minute: OpenFrame's 429, retry when the minute ends.
    let limited = call().await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), "45");
    assert_eq!(header(&limited, "x-ratelimit-remaining-minute"), "0");
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"code": "RATE_LIMIT_EXCEEDED", "message": "Too many requests. Please try again later."})
    );
    // The next minute opens a new window; the hour still counts the five that were served.
    clock.advance_ms(45_000);
    let next = call().await;
    assert_eq!(next.status(), StatusCode::OK);
    assert_eq!(header(&next, "x-ratelimit-remaining-minute"), "4");
    assert_eq!(header(&next, "x-ratelimit-remaining-hour"), "2994");
    // A refused scope is counted as a failure of the key too.
    let denied = app
        .client
        .post(app.https_url(TOOLS))
        .header("x-api-key", &full)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);

    // Statistics: exact at once (pending counts are added), and written by shutdown.
    let stats: serde_json::Value = app
        .client
        .get(app.https_url(&format!("/api/api-keys/{id}")))
        .bearer_auth(&tenants.admin_a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["totalRequests"], 8, "{stats}");
    assert_eq!(stats["successfulRequests"], 6, "{stats}");
    assert_eq!(stats["failedRequests"], 2, "{stats}");
    assert!(
        stats["lastUsed"].as_str().unwrap().starts_with("20"),
        "{stats}"
    );
    app.stop().await.unwrap();
    let reopened = crate::helpers::spawn_with_clock(
        crate::helpers::test_config(&app.data_dir),
        std::sync::Arc::new(clock.clone()),
    )
    .await;
    let stored = reopened
        .state
        .storage
        .documents
        .get(
            &tenant("acme"),
            &Collection::parse("api_key_stats").unwrap(),
            &DocumentId::parse(&id).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.body["totalRequests"], 8, "{}", stored.body);
    assert_eq!(stored.body["successfulRequests"], 6);
    assert_eq!(stored.body["failedRequests"], 2);
    // And the key itself survived the restart.
    let after = reopened
        .client
        .get(reopened.https_url(TOOLS))
        .header("x-api-key", &full)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::OK);
}
