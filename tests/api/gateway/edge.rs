//! Edge hygiene: request ids, security headers, `Origin: null`, odd paths, body limits, CORS,
//! cookie-authenticated changes, slow clients, per-address limits, the HTTP redirect listener.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::support::*;
use crate::helpers::{spawn_app, spawn_with, test_config};

#[tokio::test]
async fn request_ids_security_headers_and_refusals() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;

    let given = app
        .client
        .get(app.https_url("/"))
        .header("x-request-id", "abc-123.x")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-123.x");
    assert_eq!(
        given.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(given.headers()["x-content-type-options"], "nosniff");
    assert_eq!(given.headers()["referrer-policy"], "same-origin");
    assert!(
        given.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    for bad in [None, Some("has spaces"), Some(&*"x".repeat(200))] {
        let mut request = app.client.get(app.https_url("/nowhere"));
        if let Some(bad) = bad {
            request = request.header("x-request-id", bad);
        }
        let response = request.send().await.unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(id.len(), 36, "{id}");
        assert_ne!(Some(id.as_str()), bad);
    }

    // Origin: null is refused everywhere, even on open paths.
    let response = app
        .client
        .get(app.https_url("/sas/acme/.well-known/openid-configuration"))
        .header("origin", "null")
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(response).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    assert!(message.contains("Origin: null"), "{message}");

    // Paths that would mean something else once normalised never reach the access check.
    // (Sent raw: an HTTP client library would normalise them first.)
    for path in [
        "/sas/../api/me",
        "/api//me",
        "/tools/fleet/./x",
        "/external-api/%2e%2e/api/me",
        "/sas/%2E./api/me",
    ] {
        let (status, body) = raw_get(&app, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body.contains("\"code\":\"invalid_input\""),
            "{path}: {body}"
        );
    }

    // A header smuggling a line break, or a request line with one, never gets past the parser;
    // the answer is a 400 and the connection ends.
    for request in [
        &b"GET /api/me HTTP/1.1\r\nHost: localhost\r\nX-A: a\rX-Api-Key: b\r\n\r\n"[..],
        &b"GET /api/me\r HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
    ] {
        let (status, _) = raw_request(&app, request).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(request));
    }

    // A cookie-authenticated change must come from our own pages.
    let cookie = format!("access_token={}", tenants.admin_a);
    let body = serde_json::json!({"name": "from a page"});
    let forged = app
        .client
        .post(app.https_url("/api/api-keys"))
        .header("cookie", &cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(forged).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let elsewhere = app
        .client
        .post(app.https_url("/api/api-keys"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example.com")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);
    let own = app
        .client
        .post(app.https_url("/api/api-keys"))
        .header("cookie", &cookie)
        .header("origin", app.https_url(""))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn bodies_cors_slow_clients_and_address_limits() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.gateway.max_body_bytes = 4096;
    config.gateway.cors_allowed_origins = "https://portal.example.com".into();
    config.gateway.header_read_timeout_seconds = 1;
    let redirect_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    config.gateway.http_redirect_listen = format!("127.0.0.1:{redirect_port}");
    let app = spawn_with(config).await;
    let tenants = two_tenants(&app).await;

    // An announced body over the limit is refused before it is read.
    let response = app
        .client
        .post(app.https_url("/api/api-keys"))
        .bearer_auth(&tenants.admin_a)
        .header("content-type", "application/json")
        .body(vec![b' '; 5000])
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(response).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    assert!(message.contains("4096"), "{message}");

    // CORS: the configured origin may call with credentials; others get no permission.
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.https_url("/api/me"))
        .header("origin", "https://portal.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::OK);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://portal.example.com"
    );
    assert_eq!(
        preflight.headers()["access-control-allow-credentials"],
        "true"
    );
    let foreign = app
        .client
        .get(app.https_url("/api/me"))
        .bearer_auth(&tenants.admin_a)
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // A client that never finishes its headers is disconnected.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut tls = tls_connect(&app).await;
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .await
            .unwrap();
        let mut buffer = [0u8; 512];
        loop {
            match tls.read(&mut buffer).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "a slow client kept its connection");

    // Plain HTTP is only ever a redirect to the same path over HTTPS.
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{redirect_port}/api/me?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        redirect.headers()["location"],
        app.https_url("/api/me?x=1").as_str()
    );
}

#[tokio::test]
async fn unauthenticated_endpoints_are_limited_per_address() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.gateway.per_ip_requests_per_second = 1;
    config.gateway.per_ip_burst = 3;
    let app = spawn_with(config).await;
    // Seeded directly, not through the (limited) sign-in pages.
    crate::identity::support::seed(&app, "acme").await;
    let agent = agent_token(&app, "acme", "m-1").await;
    // A burst of three per address, then 429 with Retry-After and the rate-limit body.
    let discovery = app.https_url("/sas/nosuch/.well-known/openid-configuration");
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..4 {
        let response = app.client.get(&discovery).send().await.unwrap();
        statuses.push(response.status());
        last = Some(response);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::NOT_FOUND,
            StatusCode::NOT_FOUND,
            StatusCode::NOT_FOUND,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let last = last.unwrap();
    assert!(
        last.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let body: serde_json::Value = last.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMIT_EXCEEDED");
    // Authenticated paths are not limited per address.
    for _ in 0..5 {
        let response = app
            .client
            .get(app.https_url("/internal/authz/probe"))
            .bearer_auth(&agent)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

/// Sends `GET {path}` byte for byte and returns the status and the body.
async fn raw_get(app: &crate::helpers::TestApp, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    raw_request(app, request.as_bytes()).await
}

/// Sends `request` as it is and returns the status and the body of the answer.
async fn raw_request(app: &crate::helpers::TestApp, request: &[u8]) -> (u16, String) {
    let mut tls = tls_connect(app).await;
    tls.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}
