//! The whole life of a sign-in, driven by an independent, strict relying party: the
//! `openidconnect` crate, which validates discovery, the ID token against the JWKS, nonce,
//! audience, issuer and at_hash with its own code, not ours.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreRevocableToken,
    CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IntrospectionUrl,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, RevocationUrl, Scope,
    TokenIntrospectionResponse, TokenResponse,
};
use reqwest::StatusCode;

use super::support::{
    Browser, PASSWORD, POST_LOGOUT_URI, REDIRECT_URI, client_credentials, introspect, oauth_error,
    query_param, seed,
};
use crate::helpers::{TestApp, spawn_app, trusting_client};

/// The relying party's HTTP client: plain reqwest, trusting only the appliance's certificate.
fn rp_http(
    app: &TestApp,
) -> impl Fn(
    openidconnect::HttpRequest,
) -> std::pin::Pin<
    Box<dyn Future<Output = Result<openidconnect::HttpResponse, reqwest::Error>> + Send>,
> {
    let client = trusting_client(&app.cert_path());
    move |request: openidconnect::HttpRequest| {
        let client = client.clone();
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?;
            let mut builder = openidconnect::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = response.bytes().await?.to_vec();
            Ok(builder.body(body).unwrap())
        })
    }
}

#[tokio::test]
async fn an_independent_relying_party_completes_the_whole_oidc_flow() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let http = rp_http(&app);

    // Discovery: the crate checks that the document's issuer is the URL it asked.
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(seeded.issuer.clone()).unwrap(), &http)
            .await
            .unwrap();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(seeded.client_id.clone()),
        Some(ClientSecret::new(seeded.client_secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.into()).unwrap())
    .set_introspection_url(
        IntrospectionUrl::new(format!("{}/oauth2/introspect", seeded.issuer)).unwrap(),
    )
    .set_revocation_url(RevocationUrl::new(format!("{}/oauth2/revoke", seeded.issuer)).unwrap());

    // Authorization code + PKCE through the real login form.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (authorize_url, csrf_state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let mut browser = Browser::new(&app);
    let callback = browser
        .authorize(authorize_url.as_str(), &seeded.email, PASSWORD)
        .await;
    assert!(callback.starts_with(REDIRECT_URI), "{callback}");
    assert_eq!(
        query_param(&callback, "state").as_deref(),
        Some(csrf_state.secret().as_str())
    );
    assert_eq!(
        query_param(&callback, "iss").as_deref(),
        Some(seeded.issuer.as_str())
    );
    let code = query_param(&callback, "code").expect("a code");

    // Token, then the ID token checked against the JWKS by the relying party's own code.
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id_token = tokens.id_token().expect("an ID token for scope openid");
    let verifier = client.id_token_verifier();
    let claims = id_token.claims(&verifier, &nonce).unwrap();
    assert_eq!(claims.subject().as_str(), seeded.email);
    assert_eq!(
        claims.email().map(|e| e.as_str()),
        Some(seeded.email.as_str())
    );
    assert!(claims.auth_time().is_some());
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));
    assert_eq!(tokens.expires_in().map(|d| d.as_secs()), Some(900));
    let refresh_token = tokens.refresh_token().expect("a refresh token").clone();

    // The access token carries OpenFrame's claims.
    let payload = tokens.access_token().secret().split('.').nth(1).unwrap();
    let access: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(access["iss"], seeded.issuer);
    assert_eq!(access["tenant_id"], "acme");
    assert_eq!(access["roles"], serde_json::json!(["OWNER", "ADMIN"]));
    assert_eq!(access["aud"], seeded.client_id);
    assert!(access["userId"].as_str().is_some_and(|id| id.len() == 36));
    assert_eq!(
        access["exp"].as_i64().unwrap() - access["iat"].as_i64().unwrap(),
        900
    );

    // Userinfo.
    let info: CoreUserInfoClaims = client
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        info.email().map(|e| e.as_str()),
        Some(seeded.email.as_str())
    );

    // Refresh rotates: a new refresh token, a new access token.
    let refreshed = client
        .exchange_refresh_token(&refresh_token)
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    let new_refresh = refreshed
        .refresh_token()
        .expect("a rotated refresh token")
        .clone();
    assert_ne!(new_refresh.secret(), refresh_token.secret());
    assert_ne!(
        refreshed.access_token().secret(),
        tokens.access_token().secret()
    );

    // Introspection sees the new access token as active, with its claims.
    let introspected = client
        .introspect(refreshed.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(introspected.active());
    assert_eq!(introspected.username(), Some(seeded.email.as_str()));
    assert_eq!(
        introspected.client_id().map(|c| c.as_str()),
        Some(seeded.client_id.as_str())
    );

    // Revoking the refresh token ends the family: it no longer refreshes, and the access token
    // issued from it is no longer active.
    client
        .revoke_token(CoreRevocableToken::from(new_refresh.clone()))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    let after = client
        .introspect(refreshed.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(!after.active());
    let refused = client
        .exchange_refresh_token(&new_refresh)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(refused.is_err(), "a revoked refresh token must not refresh");

    // RP-initiated logout: back to the registered URI with the state; the session is gone.
    let logout = format!(
        "{}/connect/logout?id_token_hint={}&post_logout_redirect_uri={}&state=bye-1",
        seeded.issuer, id_token, POST_LOGOUT_URI
    );
    let signed_out = browser.get(&logout).await;
    assert_eq!(signed_out.status(), StatusCode::FOUND);
    assert_eq!(
        super::support::location(&signed_out),
        format!("{POST_LOGOUT_URI}?state=bye-1")
    );
    assert!(!browser.has_cookie("of_sas_session_acme"));
    let (silent_url, _, _) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(PkceCodeChallenge::new_random_sha256().0)
        .add_prompt(openidconnect::core::CoreAuthPrompt::None)
        .url();
    let silent = browser.get(silent_url.as_str()).await;
    let back = super::support::location(&silent);
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("login_required"),
        "{back}"
    );
}

#[tokio::test]
async fn token_responses_are_not_cached_and_client_credentials_has_no_user() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let response = client_credentials(&app, &seeded).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(
        body.get("refresh_token").is_none() && body.get("id_token").is_none(),
        "{body}"
    );
    let introspected = introspect(&app, &seeded, body["access_token"].as_str().unwrap()).await;
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["sub"], seeded.client_id);
    assert_eq!(introspected["tenant_id"], "acme");
    assert!(introspected.get("userId").is_none(), "{introspected}");

    // Userinfo needs a user and the openid scope.
    let userinfo = app
        .client
        .get(format!("{}/userinfo", seeded.issuer))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let (status, error, _) = oauth_error(userinfo).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::FORBIDDEN, "insufficient_scope")
    );
}
