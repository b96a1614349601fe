//! The browser sign-in of OpenFrame's own UI: `/oauth/login` → the tenant's provider →
//! `/oauth/callback` → HttpOnly token cookies; refresh and logout through cookies alone.

use openframe_storage::model::ManualClock;
use reqwest::StatusCode;
use serde_json::Value;

use super::support::{Browser, PASSWORD, Seeded, location, seed};
use crate::helpers::{TestApp, spawn_app, spawn_at};

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_named<'a>(cookies: &'a [String], name: &str) -> &'a str {
    cookies
        .iter()
        .find(|cookie| cookie.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"))
}

#[tokio::test]
async fn the_browser_signs_in_refreshes_and_signs_out_with_cookies_only() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let mut browser = Browser::new(&app);

    let started = browser
        .get("/oauth/login?tenantId=acme&redirectTo=%2Fdevices%3Fpage%3D2")
        .await;
    assert_eq!(started.status(), StatusCode::FOUND);
    let state_cookie = set_cookies(&started)
        .into_iter()
        .find(|c| c.starts_with("of_oauth_"))
        .unwrap();
    assert!(
        state_cookie.ends_with("; Path=/oauth; Max-Age=180; HttpOnly; Secure; SameSite=Lax"),
        "{state_cookie}"
    );
    let authorize = location(&started);
    assert!(
        authorize.starts_with("/sas/acme/oauth2/authorize?"),
        "{authorize}"
    );
    assert!(
        authorize.contains("client_id=openframe-gateway")
            && authorize.contains("code_challenge_method=S256")
    );

    let callback = browser.authorize(&authorize, &seeded.email, PASSWORD).await;
    assert!(
        callback.starts_with(&app.https_url("/oauth/callback?")),
        "{callback}"
    );
    let landed = browser.get(&callback).await;
    assert_eq!(landed.status(), StatusCode::FOUND);
    assert_eq!(location(&landed), "/devices?page=2");
    let cookies = set_cookies(&landed);
    let access = cookie_named(&cookies, "access_token");
    assert!(
        access.ends_with("; Path=/; Max-Age=900; HttpOnly; Secure; SameSite=Lax"),
        "{access}"
    );
    let refresh = cookie_named(&cookies, "refresh_token");
    assert!(
        refresh.ends_with("; Path=/oauth; Max-Age=604800; HttpOnly; Secure; SameSite=Lax"),
        "{refresh}"
    );
    assert!(cookie_named(&cookies, state_cookie.split('=').next().unwrap()).contains("Max-Age=0"));

    // The cookie's access token is a real token of the tenant.
    let access_token = cookie_value(&cookies, "access_token");
    let me: serde_json::Value = app
        .client
        .get(format!("{}/userinfo", seeded.issuer))
        .bearer_auth(&access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], seeded.email);
    assert_eq!(me["roles"], serde_json::json!(["OWNER", "ADMIN"]));

    // Refresh from the cookie: 204 and new cookies.
    let refreshed = browser.post_form("/oauth/refresh?tenantId=acme", &[]).await;
    assert_eq!(refreshed.status(), StatusCode::NO_CONTENT);
    let renewed = set_cookies(&refreshed);
    assert_ne!(cookie_named(&renewed, "refresh_token"), refresh);
    assert_ne!(cookie_named(&renewed, "access_token"), access);

    // Another site cannot sign the person out by pointing the browser at the logout URL.
    let forced = app
        .client
        .get(app.https_url("/oauth/logout?tenantId=acme"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(forced.status(), StatusCode::FORBIDDEN);
    assert!(forced.headers().get("set-cookie").is_none());
    let body: serde_json::Value = forced.json().await.unwrap();
    assert_eq!(
        body["error_description"],
        "sign-out must be started from this appliance's own pages"
    );

    // Logout: 204, every cookie cleared, the refresh token and the sign-in session are gone.
    let signed_out = browser.get("/oauth/logout?tenantId=acme").await;
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    let cleared = set_cookies(&signed_out);
    for name in ["access_token", "refresh_token", "of_sas_session_acme"] {
        assert!(
            cookie_named(&cleared, name).contains("Max-Age=0"),
            "{name}: {cleared:?}"
        );
    }
    let (status, _, body) = browser_refresh(&app, &cookie_value(&renewed, "refresh_token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_grant");
    let again = browser.get("/oauth/login?tenantId=acme").await;
    let to_authorize = browser.get(&location(&again)).await;
    assert!(
        location(&to_authorize).starts_with("/sas/acme/login?"),
        "signing in again asks for the password"
    );
}

#[tokio::test]
async fn redirect_to_must_stay_on_the_appliance() {
    let app = spawn_app().await;
    seed(&app, "acme").await;
    let mut browser = Browser::new(&app);
    for target in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "javascript:alert(document.cookie)",
        "https://localhost.evil.example/",
        "http://localhost/",
    ] {
        let encoded: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
        let response = browser
            .get(&format!("/oauth/login?tenantId=acme&redirectTo={encoded}"))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{target}");
        assert!(response.headers().get("location").is_none(), "{target}");
        assert!(set_cookies(&response).is_empty(), "{target}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("redirectTo must be a path or URL of this appliance.")
        );
    }
    let same_origin = app.https_url("/customers");
    let encoded: String = url::form_urlencoded::byte_serialize(same_origin.as_bytes()).collect();
    let allowed = browser
        .get(&format!("/oauth/login?tenantId=acme&redirectTo={encoded}"))
        .await;
    assert_eq!(allowed.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn a_callback_without_its_state_cookie_is_refused() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let mut browser = Browser::new(&app);
    let started = browser.get("/oauth/login?tenantId=acme").await;
    let callback = browser
        .authorize(&location(&started), &seeded.email, PASSWORD)
        .await;

    // Another browser (the attacker's) cannot complete the victim's sign-in, nor the reverse.
    let mut other = Browser::new(&app);
    let refused = other.get(&callback).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("This sign-in expired or was started in another browser.")
    );
    assert!(!other.has_cookie("access_token"));

    let unknown_tenant = browser.get("/oauth/login?tenantId=nobody").await;
    assert_eq!(unknown_tenant.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = unknown_tenant.json().await.unwrap();
    assert_eq!(body["error"], "invalid_tenant");
}

/// The refresh cookie of a fresh browser sign-in at `acme`.
async fn signed_in_refresh_token(app: &TestApp, seeded: &Seeded) -> String {
    let mut browser = Browser::new(app);
    let started = browser.get("/oauth/login?tenantId=acme").await;
    let callback = browser
        .authorize(&location(&started), &seeded.email, PASSWORD)
        .await;
    let landed = browser.get(&callback).await;
    cookie_value(&set_cookies(&landed), "refresh_token")
}

fn cookie_value(cookies: &[String], name: &str) -> String {
    let cookie = cookie_named(cookies, name);
    let pair = cookie.split(';').next().unwrap();
    pair.trim_start_matches(&format!("{name}=")).to_owned()
}

/// `/oauth/refresh` with this refresh token: the status, the new refresh token (if any) and
/// the error body (if any).
async fn browser_refresh(app: &TestApp, token: &str) -> (StatusCode, Option<String>, Value) {
    let response = app
        .client
        .post(app.https_url("/oauth/refresh?tenantId=acme"))
        .header("Refresh-Token", token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let cookies = set_cookies(&response);
    let renewed =
        (status == StatusCode::NO_CONTENT).then(|| cookie_value(&cookies, "refresh_token"));
    let body = response.json().await.unwrap_or(Value::Null);
    (status, renewed, body)
}

#[tokio::test]
async fn a_browser_refresh_whose_answer_was_lost_can_be_retried_briefly_and_only_once() {
    let clock = ManualClock::starting_at(1_800_000_000_000);
    let app = spawn_at(&clock).await;
    let seeded = seed(&app, "acme").await;
    let reused =
        "the refresh token was already used; every token from this sign-in has been revoked";

    // The refresh rotates, and its answer never reaches the cookie jar (a navigation cancelled
    // it). The page that loads next presents the spent secret 9 s later: a new rotation.
    let first = signed_in_refresh_token(&app, &seeded).await;
    let (status, lost, _) = browser_refresh(&app, &first).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let lost = lost.unwrap();
    clock.advance_ms(9_000);
    let (status, retried, _) = browser_refresh(&app, &first).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let retried = retried.unwrap();
    assert_ne!(retried, lost);
    assert_ne!(retried, first);

    // The grace covered one lost answer, not the chain: the first secret is now two rotations
    // old, and presenting it again is reuse. The whole sign-in is revoked, the newest token too.
    let (status, _, body) = browser_refresh(&app, &first).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        (body["error"].as_str(), body["error_description"].as_str()),
        (Some("invalid_grant"), Some(reused))
    );
    let (status, renewed, body) = browser_refresh(&app, &retried).await;
    assert_eq!((status, renewed), (StatusCode::UNAUTHORIZED, None));
    assert_eq!(
        body["error_description"],
        "the refresh token is invalid, expired or revoked"
    );

    // Past the grace, the secret spent last is reuse as well.
    let second = signed_in_refresh_token(&app, &seeded).await;
    let (status, next, _) = browser_refresh(&app, &second).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    clock.advance_ms(10_001);
    let (status, _, body) = browser_refresh(&app, &second).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error_description"], reused);
    let (status, _, _) = browser_refresh(&app, &next.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The token endpoint never had the grace: tests/api/identity/security.rs replays a spent
    // refresh token at once and the family is revoked.
}
