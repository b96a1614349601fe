//! Attacks on the provider: each is refused with the precise error, issues nothing, and the
//! error body says what was wrong.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openframe::identity::rules::s256_challenge;
use openframe_storage::TenantId;
use openframe_storage::documents::TenantStatus;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::support::{
    Browser, PASSWORD, REDIRECT_URI, Seeded, introspect, location, oauth_error, public_client,
    query_param, seed,
};
use crate::helpers::{TestApp, spawn_app};

const VERIFIER: &str = "a-sufficiently-long-pkce-verifier-of-at-least-43-characters";

fn authorize_url(seeded: &Seeded, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "openid email offline_access")
        .append_pair("state", "st-1");
    for (name, value) in extra {
        query.append_pair(name, value);
    }
    format!("{}/oauth2/authorize?{}", seeded.issuer, query.finish())
}

fn pkce() -> [(&'static str, String); 2] {
    [
        ("code_challenge", s256_challenge(VERIFIER)),
        ("code_challenge_method", "S256".to_owned()),
    ]
}

/// Signs in through the browser and returns an authorization code for the confidential client.
async fn code_for(app: &TestApp, seeded: &Seeded, browser: &mut Browser) -> String {
    let [challenge, method] = pkce();
    let url = authorize_url(
        seeded,
        &seeded.client_id,
        &[(challenge.0, &challenge.1), (method.0, &method.1)],
    );
    let callback = browser.authorize(&url, &seeded.email, PASSWORD).await;
    let _ = app;
    query_param(&callback, "code").unwrap_or_else(|| panic!("no code in {callback}"))
}

async fn token_request(app: &TestApp, seeded: &Seeded, form: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(format!("{}/oauth2/token", seeded.issuer))
        .basic_auth(&seeded.client_id, Some(&seeded.client_secret))
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn redeem(app: &TestApp, seeded: &Seeded, code: &str) -> reqwest::Response {
    token_request(
        app,
        seeded,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

/// Presents `token` at userinfo and returns the RFC 6750 error and the challenge header.
async fn userinfo_refusal(app: &TestApp, seeded: &Seeded, token: &str) -> (String, String, String) {
    let response = app
        .client
        .get(format!("{}/userinfo", seeded.issuer))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let (status, error, description) = oauth_error(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{description}");
    (error, description, challenge)
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims like the provider's own, for forging variations of.
fn claims(seeded: &Seeded, user_id: &str) -> Value {
    let now = now_seconds();
    json!({
        "iss": seeded.issuer, "sub": seeded.email, "aud": seeded.client_id, "client_id": seeded.client_id,
        "exp": now + 600, "iat": now, "nbf": now, "jti": format!("forged-{now}-{}", rand_suffix()),
        "scope": "openid email", "tenant_id": seeded.tenant, "userId": user_id, "roles": ["OWNER", "ADMIN"],
    })
}

fn rand_suffix() -> String {
    openframe::identity::crypto::random_token().unwrap()[..8].to_owned()
}

async fn owner_id(app: &TestApp, seeded: &Seeded) -> String {
    let tenant = TenantId::parse(&seeded.tenant).unwrap();
    let email = openframe::domain::Email::parse(&seeded.email).unwrap();
    app.state
        .identity
        .store
        .user_by_email(&tenant, &email)
        .await
        .unwrap()
        .unwrap()
        .record
        .id
}

/// A token signed with the tenant's real key: the provider's signature is valid, so only the
/// claim checks stand between it and acceptance.
async fn signed_by_tenant(app: &TestApp, seeded: &Seeded, claims: &Value) -> String {
    let tenant = TenantId::parse(&seeded.tenant).unwrap();
    app.state.identity.keys.sign(&tenant, claims).await.unwrap()
}

fn unsigned(header: Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    )
}

#[tokio::test]
async fn userinfo_rejects_forged_and_misdirected_access_tokens() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let user_id = owner_id(&app, &seeded).await;
    let jwks: Value = app
        .client
        .get(format!("{}/oauth2/jwks", seeded.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    let good = claims(&seeded, &user_id);

    // The real key signs a well-formed token: accepted, so the refusals below are meaningful.
    let genuine = signed_by_tenant(&app, &seeded, &good).await;
    let accepted = app
        .client
        .get(format!("{}/userinfo", seeded.issuer))
        .bearer_auth(&genuine)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);

    // alg=none.
    let none = unsigned(json!({"alg": "none", "kid": kid}), &good);
    let (error, description, challenge) = userinfo_refusal(&app, &seeded, &none).await;
    assert_eq!(error, "invalid_token");
    assert_eq!(
        description,
        "the token's algorithm \"none\" is not accepted; only RS256 is"
    );
    assert!(
        challenge.starts_with("Bearer realm=") && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );

    // HS256 "signed" with the tenant's public key as the HMAC secret (algorithm confusion).
    let header =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json!({"alg": "HS256", "kid": kid})).unwrap());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&good).unwrap());
    let public_key = serde_json::to_vec(&jwks["keys"][0]).unwrap();
    let mac = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &public_key),
        format!("{header}.{payload}").as_bytes(),
    );
    let confused = format!(
        "{header}.{payload}.{}",
        URL_SAFE_NO_PAD.encode(mac.as_ref())
    );
    let (error, description, _) = userinfo_refusal(&app, &seeded, &confused).await;
    assert_eq!(
        (error.as_str(), description.as_str()),
        (
            "invalid_token",
            "the token's algorithm \"HS256\" is not accepted; only RS256 is"
        )
    );

    // Claim checks, each with an otherwise genuine signature.
    let now = now_seconds();
    let cases = [
        (
            json!({"exp": now - 3600, "iat": now - 4000, "nbf": now - 4000}),
            "the token has expired",
        ),
        (
            json!({"nbf": now + 3600, "iat": now + 3600, "exp": now + 4000}),
            "the token is not valid yet",
        ),
        (
            json!({"aud": "another-audience", "client_id": "another-audience"}),
            "the token's audience is not a client of this tenant",
        ),
        (
            json!({"aud": "another-audience"}),
            "the token's audience is not a client of this tenant",
        ),
        (
            json!({"iss": "https://evil.example/sas/acme"}),
            "the token was issued by another issuer",
        ),
        (
            json!({"tenant_id": "beta"}),
            "the token belongs to another tenant",
        ),
    ];
    for (changes, expected) in cases {
        let mut forged = good.clone();
        for (name, value) in changes.as_object().unwrap() {
            forged[name] = value.clone();
        }
        let token = signed_by_tenant(&app, &seeded, &forged).await;
        let (error, description, _) = userinfo_refusal(&app, &seeded, &token).await;
        assert_eq!(
            (error.as_str(), description.as_str()),
            ("invalid_token", expected),
            "{changes}"
        );
        assert_eq!(
            introspect(&app, &seeded, &token).await,
            json!({"active": false}),
            "{changes}"
        );
    }

    // A changed payload under a genuine signature.
    let parts: Vec<&str> = genuine.split('.').collect();
    let mut elevated = good.clone();
    elevated["roles"] = json!(["OWNER", "ADMIN", "AGENT"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&elevated).unwrap()),
        parts[2]
    );
    let (_, description, _) = userinfo_refusal(&app, &seeded, &tampered).await;
    assert_eq!(description, "the token's signature does not verify");
}

#[tokio::test]
async fn nothing_issued_by_one_tenant_is_accepted_by_another() {
    let app = spawn_app().await;
    let acme = seed(&app, "acme").await;
    let beta = seed(&app, "beta").await;
    let mut browser = Browser::new(&app);
    let code = code_for(&app, &acme, &mut browser).await;

    // acme's code at beta, even with beta's own client: unknown there.
    let at_beta = beta_redeem(&app, &beta, &code).await;
    let (status, error, _) = oauth_error(at_beta).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );

    let tokens: Value = redeem(&app, &acme, &code).await.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    // acme's access token at beta: signed by a key beta does not publish.
    let (error, description, _) = userinfo_refusal(&app, &beta, access).await;
    assert_eq!(
        (error.as_str(), description.as_str()),
        (
            "invalid_token",
            "the token names no key (kid) or a key this issuer does not publish"
        )
    );
    assert_eq!(
        introspect(&app, &beta, access).await,
        json!({"active": false})
    );

    // A token signed by beta's key but claiming acme: refused by acme.
    let user_id = owner_id(&app, &acme).await;
    let cross = signed_by_tenant(&app, &beta, &claims(&acme, &user_id)).await;
    let (_, description, _) = userinfo_refusal(&app, &acme, &cross).await;
    assert_eq!(
        description,
        "the token names no key (kid) or a key this issuer does not publish"
    );

    // acme's refresh token at beta, with beta's client.
    let refreshed = token_request(
        &app,
        &beta,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    let (_, error, _) = oauth_error(refreshed).await;
    assert_eq!(error, "invalid_grant");

    // acme's client credentials at beta.
    let wrong_tenant = app
        .client
        .post(format!("{}/oauth2/token", beta.issuer))
        .basic_auth(&acme.client_id, Some(&acme.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong_tenant.headers()["www-authenticate"],
        format!("Basic realm=\"{}\"", beta.issuer)
    );
    let (status, error, description) = oauth_error(wrong_tenant).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    assert_eq!(
        description,
        "the client is unknown or its credentials are wrong"
    );

    // acme's browser session means nothing at beta: beta asks for a sign-in.
    let [challenge, method] = pkce();
    let beta_url = authorize_url(
        &beta,
        &beta.client_id,
        &[(challenge.0, &challenge.1), (method.0, &method.1)],
    );
    let at_beta = browser.get(&beta_url).await;
    assert_eq!(at_beta.status(), StatusCode::FOUND);
    assert!(
        location(&at_beta).starts_with("/sas/beta/login?"),
        "{}",
        location(&at_beta)
    );

    // Still fine at home.
    assert_eq!(introspect(&app, &acme, access).await["active"], true);
}

async fn beta_redeem(app: &TestApp, beta: &Seeded, code: &str) -> reqwest::Response {
    redeem(app, beta, code).await
}

#[tokio::test]
async fn a_reused_authorization_code_is_refused_and_revokes_what_it_issued() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let mut browser = Browser::new(&app);
    let code = code_for(&app, &seeded, &mut browser).await;
    let first: Value = redeem(&app, &seeded, &code).await.json().await.unwrap();
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(introspect(&app, &seeded, access).await["active"], true);

    let (status, error, description) = oauth_error(redeem(&app, &seeded, &code).await).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert_eq!(
        description,
        "the authorization code was already used; the tokens issued from it have been revoked"
    );
    assert_eq!(
        introspect(&app, &seeded, access).await,
        json!({"active": false})
    );
    let refresh = first["refresh_token"].as_str().unwrap();
    let (_, error, _) = oauth_error(
        token_request(
            &app,
            &seeded,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await,
    )
    .await;
    assert_eq!(error, "invalid_grant");
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_its_whole_family() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let mut browser = Browser::new(&app);
    let code = code_for(&app, &seeded, &mut browser).await;
    let first: Value = redeem(&app, &seeded, &code).await.json().await.unwrap();
    let old_refresh = first["refresh_token"].as_str().unwrap();
    let second: Value = token_request(
        &app,
        &seeded,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", old_refresh),
        ],
    )
    .await
    .json()
    .await
    .unwrap();
    let new_refresh = second["refresh_token"].as_str().unwrap();
    let new_access = second["access_token"].as_str().unwrap();
    assert_eq!(introspect(&app, &seeded, new_access).await["active"], true);

    // The thief (or the victim) replays the spent token.
    let replay = token_request(
        &app,
        &seeded,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", old_refresh),
        ],
    )
    .await;
    let (status, error, description) = oauth_error(replay).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert_eq!(
        description,
        "the refresh token was already used; every token from this sign-in has been revoked"
    );

    // Everything from that sign-in is dead: the newest refresh token and every access token.
    let (_, error, description) = oauth_error(
        token_request(
            &app,
            &seeded,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", new_refresh),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(
        (error.as_str(), description.as_str()),
        (
            "invalid_grant",
            "the refresh token is invalid, expired or revoked"
        )
    );
    assert_eq!(
        introspect(&app, &seeded, new_access).await,
        json!({"active": false})
    );
    assert_eq!(
        introspect(&app, &seeded, first["access_token"].as_str().unwrap()).await,
        json!({"active": false})
    );
    let (_, description, _) = userinfo_refusal(&app, &seeded, new_access).await;
    assert_eq!(description, "the token has been revoked");
}

#[tokio::test]
async fn redirect_uris_must_match_exactly_and_never_redirect_when_they_do_not() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let mut browser = Browser::new(&app);
    for wrong in [
        "https://rp.example.com/callback/",
        "https://evil.example/callback",
        "https://rp.example.com/callback?x=1",
    ] {
        let url = authorize_url(&seeded, &seeded.client_id, &[]).replace(
            &url::form_urlencoded::byte_serialize(REDIRECT_URI.as_bytes()).collect::<String>(),
            &url::form_urlencoded::byte_serialize(wrong.as_bytes()).collect::<String>(),
        );
        let response = browser.get(&url).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{wrong}");
        assert!(
            response.headers().get("location").is_none(),
            "{wrong} must not be redirected to"
        );
        let page = response.text().await.unwrap();
        assert!(
            page.contains("redirect_uri is not registered for this client."),
            "{page}"
        );
    }

    // A code bound to one redirect URI cannot be redeemed with another.
    let code = code_for(&app, &seeded, &mut browser).await;
    let response = token_request(
        &app,
        &seeded,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://rp.example.com/other"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    let (_, error, description) = oauth_error(response).await;
    assert_eq!(
        (error.as_str(), description.as_str()),
        (
            "invalid_grant",
            "redirect_uri must be the one sent to the authorization endpoint"
        )
    );
}

#[tokio::test]
async fn pkce_is_required_s256_only_and_checked() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let spa = public_client(&app, "acme").await;
    let mut browser = Browser::new(&app);

    // A public client without PKCE, and with plain PKCE: refused back to the client, before
    // anyone is asked to sign in.
    let without = browser
        .authorize(&authorize_url(&seeded, &spa, &[]), &seeded.email, PASSWORD)
        .await;
    assert_eq!(
        query_param(&without, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(
        query_param(&without, "error_description").as_deref(),
        Some("code_challenge is required (PKCE with S256)")
    );
    assert_eq!(query_param(&without, "state").as_deref(), Some("st-1"));
    let plain = browser
        .get(&authorize_url(
            &seeded,
            &spa,
            &[
                ("code_challenge", VERIFIER),
                ("code_challenge_method", "plain"),
            ],
        ))
        .await;
    let plain = location(&plain);
    assert_eq!(
        query_param(&plain, "error_description").as_deref(),
        Some("code_challenge_method must be S256; plain is not accepted")
    );
    assert!(query_param(&plain, "code").is_none());

    // The built-in browser client requires PKCE as well.
    let gateway = authorize_url(&seeded, "openframe-gateway", &[]).replace(
        &url::form_urlencoded::byte_serialize(REDIRECT_URI.as_bytes()).collect::<String>(),
        &url::form_urlencoded::byte_serialize(app.https_url("/oauth/callback").as_bytes())
            .collect::<String>(),
    );
    let refused = location(&browser.get(&gateway).await);
    assert_eq!(
        query_param(&refused, "error").as_deref(),
        Some("invalid_request"),
        "{refused}"
    );

    // With S256: a wrong verifier and a missing verifier are both refused, and the code stays
    // redeemable by the rightful holder until then.
    let [challenge, method] = pkce();
    let ok = browser
        .authorize(
            &authorize_url(
                &seeded,
                &spa,
                &[(challenge.0, &challenge.1), (method.0, &method.1)],
            ),
            &seeded.email,
            PASSWORD,
        )
        .await;
    let code = query_param(&ok, "code").unwrap_or_else(|| panic!("no code in {ok}"));
    let public_token = |form: Vec<(&'static str, String)>| {
        let request = app
            .client
            .post(format!("{}/oauth2/token", seeded.issuer))
            .form(&form);
        async move { request.send().await.unwrap() }
    };
    let base = |verifier: Option<&str>| {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.clone()),
            ("redirect_uri", REDIRECT_URI.to_owned()),
            ("client_id", spa.clone()),
        ];
        if let Some(verifier) = verifier {
            form.push(("code_verifier", verifier.to_owned()));
        }
        form
    };
    let (_, error, description) = oauth_error(
        public_token(base(Some(
            "a-different-verifier-that-is-also-long-enough-1234",
        )))
        .await,
    )
    .await;
    assert_eq!(
        (error.as_str(), description.as_str()),
        (
            "invalid_grant",
            "code_verifier does not match the code_challenge"
        )
    );
    let (_, error, description) = oauth_error(public_token(base(None)).await).await;
    assert_eq!(
        (error.as_str(), description.as_str()),
        (
            "invalid_grant",
            "code_verifier is required: the authorization request used PKCE"
        )
    );
    let good = public_token(base(Some(VERIFIER))).await;
    assert_eq!(good.status(), StatusCode::OK);
}

#[tokio::test]
async fn sign_in_never_continues_to_another_site() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let mut browser = Browser::new(&app);
    for target in [
        "https://evil.example/",
        "//evil.example/x",
        "/sas/beta/oauth2/authorize?client_id=x",
        "/sas/acme/oauth2/authorize?x=//evil.example",
    ] {
        let login = format!(
            "/sas/acme/login?return={}",
            url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
        );
        let page = browser.get(&login).await.text().await.unwrap();
        assert!(
            !page.contains("name=\"return\""),
            "{target} must not be carried into the form"
        );
        let signed_in = browser.submit_login(&login, &seeded.email, PASSWORD).await;
        assert_eq!(signed_in.status(), StatusCode::OK, "{target}");
        assert!(signed_in.headers().get("location").is_none());
        assert!(
            signed_in
                .text()
                .await
                .unwrap()
                .contains("You are signed in.")
        );
    }
}

#[tokio::test]
async fn password_guessing_is_throttled_even_for_the_right_password() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let mut browser = Browser::new(&app);
    let login = "/sas/acme/login";
    for attempt in 0..5 {
        let response = browser
            .submit_login(login, &seeded.email, &format!("Wrong-guess-{attempt}!"))
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("Wrong email or password.")
        );
    }
    let refused = browser.submit_login(login, &seeded.email, PASSWORD).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert!(
        refused
            .headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("of_sas_session_"))
    );
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("Too many failed sign-in attempts. Try again in 15 minute(s)."),
        "{page}"
    );
    assert!(!browser.has_cookie("of_sas_session_acme"));

    // Operators can alert on it.
    let metrics = app
        .plain
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("openframe_identity_events_total{event=\"signin_failed\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("openframe_identity_events_total{event=\"signin_throttled\"} 1"),
        "{metrics}"
    );

    // Another account from another browser is unaffected (the address limit is higher).
    let other = seed(&app, "beta").await;
    let mut second = Browser::new(&app);
    let fine = second
        .submit_login("/sas/beta/login", &other.email, PASSWORD)
        .await;
    assert_eq!(fine.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_sign_in_without_the_csrf_token_is_refused() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let mut browser = Browser::new(&app);
    let _ = browser.get("/sas/acme/login").await;
    let forged = browser
        .post_form(
            "/sas/acme/login",
            &[
                ("username", &seeded.email),
                ("password", PASSWORD),
                ("_csrf", "forged.token"),
            ],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(
        forged
            .text()
            .await
            .unwrap()
            .contains("The sign-in form expired or did not come from this site.")
    );
    assert!(!browser.has_cookie("of_sas_session_acme"));
}

#[tokio::test]
async fn unknown_malformed_and_suspended_tenants_get_invalid_tenant_everywhere() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    app.state
        .identity
        .tenants
        .set_tenant_status(&TenantId::parse("acme").unwrap(), TenantStatus::Suspended)
        .await
        .unwrap();
    let _ = seeded;
    for tenant in ["acme", "nobody", "Not_A_Slug", "-x"] {
        for (method, path) in [
            ("GET", "/.well-known/openid-configuration"),
            ("GET", "/.well-known/oauth-authorization-server"),
            ("GET", "/oauth2/jwks"),
            ("GET", "/oauth2/authorize?client_id=x"),
            ("POST", "/oauth2/token"),
            ("POST", "/oauth2/introspect"),
            ("POST", "/oauth2/revoke"),
            ("GET", "/userinfo"),
            ("GET", "/connect/logout"),
            ("GET", "/login"),
            ("GET", "/no-such-endpoint"),
        ] {
            let url = app.https_url(&format!("/sas/{tenant}{path}"));
            let request = if method == "GET" {
                app.client.get(&url)
            } else {
                app.client
                    .post(&url)
                    .form(&[("grant_type", "client_credentials")])
            };
            let response = request.send().await.unwrap();
            let (status, error, description) = oauth_error(response).await;
            assert_eq!(
                (status, error.as_str()),
                (StatusCode::NOT_FOUND, "invalid_tenant"),
                "{method} {url}"
            );
            assert!(
                description.contains("does not exist or is not active"),
                "{description}"
            );
        }
    }
}

#[tokio::test]
async fn the_token_endpoint_refuses_bad_clients_and_bad_requests_precisely() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let token_url = format!("{}/oauth2/token", seeded.issuer);
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str, &str)> = vec![
        (
            app.client
                .post(&token_url)
                .basic_auth(&seeded.client_id, Some("wrong-secret"))
                .form(&[("grant_type", "client_credentials")]),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "the client is unknown or its credentials are wrong",
        ),
        (
            app.client.post(&token_url).form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &seeded.client_id),
            ]),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "this client is confidential: authenticate with its secret",
        ),
        (
            app.client
                .post(&token_url)
                .basic_auth(&seeded.client_id, Some(&seeded.client_secret))
                .form(&[("grant_type", "password")]),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code, refresh_token or client_credentials",
        ),
        (
            app.client
                .post(&token_url)
                .basic_auth(&seeded.client_id, Some(&seeded.client_secret))
                .form(&[("grant_type", "authorization_code")]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code is required",
        ),
        (
            app.client
                .post(&token_url)
                .basic_auth(&seeded.client_id, Some(&seeded.client_secret))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", "made-up"),
                    ("redirect_uri", REDIRECT_URI),
                ]),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the authorization code is invalid, expired or was issued to another client",
        ),
        (
            app.client
                .post(&token_url)
                .basic_auth(&seeded.client_id, Some(&seeded.client_secret))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("grant_type", "client_credentials"),
                ]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "parameter \"grant_type\" appears more than once",
        ),
        (
            app.client
                .post(&token_url)
                .basic_auth(&seeded.client_id, Some(&seeded.client_secret))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", &"x".repeat(3000)),
                ]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "parameter \"scope\" is longer than 2048 characters",
        ),
        (
            app.client
                .post(&token_url)
                .basic_auth(&seeded.client_id, Some(&seeded.client_secret))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "openid admin"),
                ]),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope \"openid\" is not allowed for this client",
        ),
    ];
    for (request, status, error, description) in cases {
        let (got_status, got_error, got_description) =
            oauth_error(request.send().await.unwrap()).await;
        assert_eq!(
            (got_status, got_error.as_str(), got_description.as_str()),
            (status, error, description)
        );
    }
}

#[tokio::test]
async fn a_guessed_refresh_secret_is_refused_without_revoking_the_family() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let mut browser = Browser::new(&app);
    let code = code_for(&app, &seeded, &mut browser).await;
    let tokens: Value = redeem(&app, &seeded, &code).await.json().await.unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (family, _) = refresh
        .split_once('.')
        .expect("refresh tokens are family.secret");
    // Knowing the family id (it is in every refresh token) is not enough to end the sign-in:
    // only a secret the family really issued counts as reuse.
    let guessed = format!(
        "{family}.{}",
        openframe::identity::crypto::random_token().unwrap()
    );
    let (_, error, description) = oauth_error(
        token_request(
            &app,
            &seeded,
            &[("grant_type", "refresh_token"), ("refresh_token", &guessed)],
        )
        .await,
    )
    .await;
    assert_eq!(
        (error.as_str(), description.as_str()),
        (
            "invalid_grant",
            "the refresh token is invalid, expired or revoked"
        )
    );
    assert_eq!(
        introspect(&app, &seeded, &guessed).await,
        json!({"active": false})
    );
    let real = token_request(
        &app,
        &seeded,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(real.status(), StatusCode::OK);
}
