//! Every operation of the external API's own document, called with a key that holds every
//! scope but the one the document names for it (refused, 403, the scope named), then with a
//! key that holds only that scope (let through, with the key's limits in the rate headers),
//! and past the key's limit (429 with `Retry-After`).

use reqwest::Method;
use serde_json::{Value, json};

use crate::gateway::support::{create_key, two_tenants};
use crate::helpers::spawn_app;

const ALL: &[&str] = openframe::gateway::api_keys::SCOPES;

/// `(method, path with its parameters filled, scope)` of every documented operation.
fn operations(document: &Value) -> Vec<(Method, String, Option<String>)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let scopes = &operation["security"][0]["ApiKeyAuth"];
            let scope = scopes[0].as_str().map(str::to_owned);
            assert!(
                scopes.as_array().unwrap().len() <= 1,
                "{method} {path}: one scope"
            );
            let concrete = path
                .split('/')
                .map(|part| if part.starts_with('{') { "x" } else { part })
                .collect::<Vec<_>>()
                .join("/");
            found.push((method, concrete, scope));
        }
    }
    found
}

async fn call(
    app: &crate::helpers::TestApp,
    key: &str,
    method: &Method,
    path: &str,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method.clone(), app.https_url(path))
        .header("x-api-key", key);
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        request = request.json(&json!({}));
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn every_documented_operation_needs_its_scope_and_answers_with_the_keys_limits() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let document = crate::external::api_document(&app).await;
    let operations = operations(&document);
    assert_eq!(operations.len(), 31);

    let mut refused = 0;
    for (method, path, scope) in &operations {
        let Some(scope) = scope else {
            // `/me`: any key may ask about itself.
            let (_, only, _) = create_key(
                &app,
                &tenants.admin_a,
                json!({"name": "me", "scopes": ["ingest"]}),
            )
            .await;
            assert_eq!(call(&app, &only, method, path).await.status(), 200);
            continue;
        };
        let others: Vec<&str> = ALL.iter().copied().filter(|held| held != scope).collect();
        let (_, without, _) = create_key(
            &app,
            &tenants.admin_a,
            json!({"name": format!("without {scope}"), "scopes": others}),
        )
        .await;
        let response = call(&app, &without, method, path).await;
        assert_eq!(response.status(), 403, "{method} {path} without {scope}");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "forbidden", "{method} {path}");
        assert_eq!(
            error["message"],
            format!("the API key lacks the scope {scope:?} this path needs"),
            "{method} {path}"
        );
        refused += 1;

        let (_, only, _) = create_key(
            &app,
            &tenants.admin_a,
            json!({"name": format!("only {scope}"), "scopes": [scope],
                   "rateLimits": {"perMinute": 50, "perHour": 500, "perDay": 5000}}),
        )
        .await;
        for remaining in ["49", "48"] {
            let response = call(&app, &only, method, path).await;
            let status = response.status().as_u16();
            assert!(
                ![401, 403, 429].contains(&status) && status < 500,
                "{method} {path} with {scope}: {status}"
            );
            let header = |name: &str| {
                response.headers()[name]
                    .to_str()
                    .unwrap_or_else(|_| panic!("{name}"))
                    .to_owned()
            };
            assert_eq!(header("x-ratelimit-limit-minute"), "50", "{method} {path}");
            assert_eq!(header("x-ratelimit-limit-hour"), "500");
            assert_eq!(header("x-ratelimit-limit-day"), "5000");
            assert_eq!(
                header("x-ratelimit-remaining-minute"),
                remaining,
                "{method} {path}"
            );
        }
    }
    assert_eq!(refused, 30);

    // Past the limit: 429, when to retry, and nothing left in the minute.
    let (_, tight, _) = create_key(
        &app,
        &tenants.admin_a,
        json!({"name": "tight", "scopes": ["logs:read"], "rateLimits": {"perMinute": 2}}),
    )
    .await;
    for _ in 0..2 {
        let response = call(&app, &tight, &Method::GET, "/external-api/api/v1/logs").await;
        assert_eq!(response.status(), 200);
    }
    let response = call(&app, &tight, &Method::GET, "/external-api/api/v1/logs").await;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(response.headers()["x-ratelimit-remaining-minute"], "0");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "RATE_LIMIT_EXCEEDED", "{error}");
}
