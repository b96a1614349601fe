//! Upstream SSO, with a second tenant of the same appliance as the upstream provider: a real
//! OpenID Connect provider on the other end of real HTTPS, not a stand-in.

use openframe::domain::Email;
use openframe::identity::NewClient;
use openframe::identity::admin;
use openframe::identity::sso::NewSso;
use openframe_storage::TenantId;
use reqwest::StatusCode;

use super::support::{Browser, PASSWORD, REDIRECT_URI, Seeded, location, query_param, seed};
use crate::helpers::{TestApp, spawn_app};

/// `acme` signs its people in at the `corp-idp` tenant. Returns acme's seeded relying party.
async fn federate(app: &TestApp, auto_provision: bool) -> Seeded {
    let acme = seed(app, "acme").await;
    let upstream = seed(app, "corp-idp").await;
    let identity = &app.state.identity;
    let callback = app.https_url("/sas/acme/sso/corp/callback");
    let client = admin::create_client(
        identity,
        "corp-idp",
        NewClient {
            name: "acme's appliance".into(),
            public: false,
            redirect_uris: vec![callback.clone()],
            scopes: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            grant_types: Vec::new(),
        },
    )
    .await
    .unwrap();
    let summary = admin::set_sso(
        identity,
        "acme",
        NewSso {
            provider: "corp".into(),
            display_name: "Corp Directory".into(),
            issuer: upstream.issuer.clone(),
            client_id: client.client_id,
            client_secret: client.client_secret.unwrap(),
            allowed_domains: vec!["corp.example".into()],
            auto_provision_users: auto_provision,
            ca_file: app.cert_path().to_str().unwrap().to_owned(),
        },
    )
    .await
    .unwrap();
    assert_eq!(summary.redirect_uri, callback);
    for (email, verified) in [
        ("alice@corp.example", true),
        ("bob@other.example", true),
        ("eve@corp.example", false),
    ] {
        add_upstream_user(app, email, verified).await;
    }
    acme
}

async fn add_upstream_user(app: &TestApp, email: &str, verified: bool) {
    let identity = &app.state.identity;
    let tenant = TenantId::parse("corp-idp").unwrap();
    let new = openframe::identity::NewUser {
        email: Email::parse(email).unwrap(),
        password: Some(PASSWORD.into()),
        roles: vec![openframe::domain::Role::Admin],
        first_name: "Ann".into(),
        last_name: "Upstream".into(),
        email_verified: verified,
    };
    identity.create_user(&tenant, new).await.unwrap();
}

/// From acme's authorize endpoint through the upstream's sign-in to acme's answer to its
/// relying party (or the refusal page), for one upstream person.
async fn sign_in_upstream(app: &TestApp, acme: &Seeded, email: &str) -> reqwest::Response {
    let mut browser = Browser::new(app);
    let challenge = openframe::identity::rules::s256_challenge(
        "sso-test-verifier-0123456789-0123456789-0123456789",
    );
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &acme.client_id)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "openid email")
        .append_pair("state", "rp-state")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    let to_login = browser
        .get(&format!("{}/oauth2/authorize?{query}", acme.issuer))
        .await;
    let login_page = browser
        .get(&location(&to_login))
        .await
        .text()
        .await
        .unwrap();
    let start = login_page
        .find("href=\"/sas/acme/sso/corp?")
        .expect("the login page offers the provider")
        + 6;
    let sso_link =
        login_page[start..start + login_page[start..].find('"').unwrap()].replace("&amp;", "&");
    assert!(login_page.contains("Sign in with Corp Directory"));

    let to_upstream = browser.get(&sso_link).await;
    assert_eq!(to_upstream.status(), StatusCode::FOUND);
    let upstream_authorize = location(&to_upstream);
    assert!(
        upstream_authorize.starts_with(&app.https_url("/sas/corp-idp/oauth2/authorize?")),
        "{upstream_authorize}"
    );
    assert_eq!(
        query_param(&upstream_authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let back = browser
        .authorize(&upstream_authorize, email, PASSWORD)
        .await;
    assert!(
        back.starts_with(&app.https_url("/sas/acme/sso/corp/callback?")),
        "{back}"
    );
    let signed_in = browser.get(&back).await;
    if signed_in.status() != StatusCode::SEE_OTHER {
        return signed_in;
    }
    browser.get(&location(&signed_in)).await
}

#[tokio::test]
async fn a_tenant_signs_its_people_in_with_an_upstream_provider_and_provisions_them() {
    let app = spawn_app().await;
    let acme = federate(&app, true).await;
    let answer = sign_in_upstream(&app, &acme, "alice@corp.example").await;
    assert_eq!(answer.status(), StatusCode::FOUND);
    let callback = location(&answer);
    assert!(callback.starts_with(REDIRECT_URI), "{callback}");
    assert_eq!(query_param(&callback, "state").as_deref(), Some("rp-state"));
    let code = query_param(&callback, "code").unwrap();
    let tokens: serde_json::Value = app
        .client
        .post(format!("{}/oauth2/token", acme.issuer))
        .basic_auth(&acme.client_id, Some(&acme.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            (
                "code_verifier",
                "sso-test-verifier-0123456789-0123456789-0123456789",
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claims = app
        .state
        .identity
        .verify_access_token(
            &TenantId::parse("acme").unwrap(),
            tokens["access_token"].as_str().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(claims.sub, "alice@corp.example");
    assert_eq!(claims.roles, ["ADMIN"]);
    let user = app
        .state
        .identity
        .store
        .user_by_email(
            &TenantId::parse("acme").unwrap(),
            &Email::parse("alice@corp.example").unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
        .record;
    assert_eq!(
        (
            user.login_provider.as_str(),
            user.email_verified,
            user.password_hash.is_none()
        ),
        ("CORP", true, true)
    );
}

#[tokio::test]
async fn upstream_people_outside_the_rules_are_refused() {
    let app = spawn_app().await;
    let acme = federate(&app, false).await;
    for (email, reason) in [
        (
            "bob@other.example",
            "other.example is not a domain allowed to sign in here",
        ),
        (
            "eve@corp.example",
            "the upstream has not verified eve@corp.example",
        ),
        (
            "alice@corp.example",
            "alice@corp.example has no account here; ask an administrator for an invitation",
        ),
    ] {
        let refused = sign_in_upstream(&app, &acme, email).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{email}");
        let page = refused.text().await.unwrap();
        assert!(page.contains(reason), "{email}: {page}");
    }
    let tenant = TenantId::parse("acme").unwrap();
    for email in [
        "bob@other.example",
        "eve@corp.example",
        "alice@corp.example",
    ] {
        let user = app
            .state
            .identity
            .store
            .user_by_email(&tenant, &Email::parse(email).unwrap())
            .await
            .unwrap();
        assert!(user.is_none(), "{email} must not have been created");
    }
}
