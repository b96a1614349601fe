//! Invitations, password resets, self-registration and discovery, with and without SMTP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use openframe_storage::model::ManualClock;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::support::{
    Browser, PASSWORD, Seeded, api_error, client_credentials, oauth_error, owner_token,
    relying_party_token, seed, user_token,
};
use crate::helpers::{TestApp, spawn_app, spawn_at, spawn_with, test_config};

async fn invite(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.https_url("/api/invitations"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn outbox(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app
        .client
        .get(app.https_url("/api/identity/outbox"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

/// After a password change: the old password fails, the new one works, and `token` (issued
/// before) is refused as revoked.
async fn assert_password_replaced(app: &TestApp, seeded: &Seeded, new_password: &str, token: &str) {
    assert_eq!(
        can_sign_in(app, "acme", &seeded.email, PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        can_sign_in(app, "acme", &seeded.email, new_password).await,
        StatusCode::OK
    );
    let userinfo = app
        .client
        .get(format!("{}/userinfo", seeded.issuer))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (_, error, description) = oauth_error(userinfo).await;
    assert_eq!(
        (error.as_str(), description.as_str()),
        ("invalid_token", "the token has been revoked")
    );
}

async fn revoke_invitation(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    app.client
        .delete(app.https_url(&format!("/api/invitations/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn invitations(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app
        .client
        .get(app.https_url("/api/invitations"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The secret of the newest invitation link mailed to `email`, read from the outbox.
async fn invitation_secret(app: &TestApp, token: &str, email: &str) -> String {
    let messages = outbox(app, token).await;
    let message = messages
        .iter()
        .find(|message| message["to"] == email && message["kind"] == "INVITATION")
        .unwrap_or_else(|| panic!("no invitation to {email} in {messages:?}"));
    link_parameter(message["body"].as_str().unwrap(), "invitationId")
}

fn link_parameter(body: &str, name: &str) -> String {
    let start = body
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        + name.len()
        + 1;
    body[start..].split_whitespace().next().unwrap().to_owned()
}

async fn accept(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .post(app.https_url("/sas/invitations/accept"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn can_sign_in(app: &TestApp, tenant: &str, email: &str, password: &str) -> StatusCode {
    let mut browser = Browser::new(app);
    browser
        .submit_login(&format!("/sas/{tenant}/login"), email, password)
        .await
        .status()
}

#[tokio::test]
async fn an_invitation_without_smtp_lands_in_the_outbox_and_is_accepted_once() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let token = owner_token(&app, &seeded).await;

    let created = invite(&app, &token, json!({"email": "Tech@Acme.example"})).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let invitation: Value = created.json().await.unwrap();
    assert_eq!(invitation["email"], "tech@acme.example");
    assert_eq!(invitation["roles"], json!(["ADMIN"]));
    assert_eq!(invitation["status"], "PENDING");
    assert_eq!(invitation["delivery"], "IN_OUTBOX");
    assert_eq!(
        invitation["expiresAt"].as_i64().unwrap() - invitation["createdAt"].as_i64().unwrap(),
        24 * 3600 * 1000
    );

    let messages = outbox(&app, &token).await;
    assert_eq!(messages.len(), 1);
    // At rest the body (a live one-time link) is sealed, not stored readable.
    let raw = app
        .state
        .storage
        .documents
        .list(
            &openframe_storage::TenantId::parse("acme").unwrap(),
            &openframe_storage::model::Collection::parse("mail_outbox").unwrap(),
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(raw.len(), 1);
    assert!(raw[0].body.get("body").is_none(), "{:?}", raw[0].body);
    assert!(!raw[0].body.to_string().contains("invitationId="));
    assert_eq!(messages[0]["to"], "tech@acme.example");
    let body = messages[0]["body"].as_str().unwrap();
    assert!(
        body.contains(&app.https_url("/invitations?invitationId=")),
        "{body}"
    );
    let id = link_parameter(body, "invitationId");
    assert_ne!(
        id,
        invitation["id"].as_str().unwrap(),
        "the link's secret is not the public id"
    );
    let by_public_id = accept(
        &app,
        json!({"invitationId": invitation["id"], "password": "Inv1ted-pass!"}),
    )
    .await;
    assert_eq!(api_error(by_public_id).await.1, "not_found");

    // A second pending invitation for the same email, or one for an existing user: 409.
    let (status, code, message) =
        api_error(invite(&app, &token, json!({"email": "tech@acme.example"})).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "conflict"));
    assert_eq!(
        message,
        "tech@acme.example already has a pending invitation; resend it instead"
    );
    let (_, code, _) = api_error(invite(&app, &token, json!({"email": seeded.email})).await).await;
    assert_eq!(code, "conflict");

    // A weak password does not burn the invitation; a good one creates the user, once.
    let weak = accept(
        &app,
        json!({"invitationId": id, "firstName": "Tess", "lastName": "Tech", "password": "weak"}),
    )
    .await;
    let (status, code, message) = api_error(weak).await;
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "password: must be at least 8 characters"
        )
    );
    let accepted = accept(&app, json!({"invitationId": id, "firstName": "Tess", "lastName": "Tech", "password": "Inv1ted-pass!"})).await;
    assert_eq!(accepted.status(), StatusCode::OK);
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(
        (accepted["tenantId"].as_str(), accepted["roles"].clone()),
        (Some("acme"), json!(["ADMIN"]))
    );
    assert_eq!(
        can_sign_in(&app, "acme", "tech@acme.example", "Inv1ted-pass!").await,
        StatusCode::OK
    );
    let again = accept(
        &app,
        json!({"invitationId": id, "password": "Inv1ted-pass!"}),
    )
    .await;
    let (status, code, message) = api_error(again).await;
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (
            StatusCode::GONE,
            "gone",
            "the invitation was already accepted"
        )
    );
    let unknown = accept(
        &app,
        json!({"invitationId": "no-such-invitation", "password": "Inv1ted-pass!"}),
    )
    .await;
    assert_eq!(api_error(unknown).await.1, "not_found");

    // Revoked invitations cannot be accepted; the list shows every state.
    let second: Value = invite(&app, &token, json!({"email": "late@acme.example"}))
        .await
        .json()
        .await
        .unwrap();
    let second_id = second["id"].as_str().unwrap();
    let revoked = revoke_invitation(&app, &token, second_id).await;
    assert_eq!(revoked.json::<Value>().await.unwrap()["status"], "REVOKED");
    let second_secret = invitation_secret(&app, &token, "late@acme.example").await;
    let refused = accept(
        &app,
        json!({"invitationId": second_secret, "password": "Inv1ted-pass!"}),
    )
    .await;
    assert_eq!(
        api_error(refused).await.2,
        "the invitation was already revoked"
    );
    let listed = invitations(&app, &token).await;
    let mut states: Vec<&str> = listed
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    states.sort();
    assert_eq!(states, ["ACCEPTED", "REVOKED"]);

    // The invited ADMIN may read invitations in the outbox, never password resets: a reset link
    // for the owner would hand over the owner's account.
    let tech = user_token(&app, &seeded, "tech@acme.example", "Inv1ted-pass!").await;
    let reset = app
        .client
        .post(app.https_url("/sas/password-reset/request"))
        .json(&json!({"email": seeded.email}))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::ACCEPTED);
    let kinds = |messages: Vec<Value>| -> Vec<String> {
        messages
            .iter()
            .map(|m| m["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(!kinds(outbox(&app, &tech).await).contains(&"PASSWORD_RESET".to_owned()));
    assert!(kinds(outbox(&app, &token).await).contains(&"PASSWORD_RESET".to_owned()));
    // A forwarded link does not prove the mailbox.
    let tenant = openframe_storage::TenantId::parse("acme").unwrap();
    let invited = app
        .state
        .identity
        .store
        .user_by_email(
            &tenant,
            &openframe::domain::Email::parse("tech@acme.example").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!invited.record.email_verified);
}

#[tokio::test]
async fn invitation_endpoints_need_an_admin_of_the_same_tenant() {
    let app = spawn_app().await;
    let acme = seed(&app, "acme").await;
    let beta = seed(&app, "beta").await;
    let acme_token = owner_token(&app, &acme).await;
    let beta_token = owner_token(&app, &beta).await;

    let anonymous = app
        .client
        .get(app.https_url("/api/invitations"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let (status, code, message) = api_error(anonymous).await;
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in first: send an access token (Authorization: Bearer, or the access_token cookie)"
        )
    );

    let machine: Value = client_credentials(&app, &acme).await.json().await.unwrap();
    let (status, code, _) = api_error(
        invite(
            &app,
            machine["access_token"].as_str().unwrap(),
            json!({"email": "x@acme.example"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    // The owner's token as a third-party relying party got it: good for userinfo, not for
    // managing the tenant.
    let rp_token = relying_party_token(&app, &acme).await;
    let (status, code, message) =
        api_error(invite(&app, &rp_token, json!({"email": "x@acme.example"})).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    assert_eq!(
        message,
        "this endpoint accepts only tokens of the appliance's own sign-in (openframe-gateway)"
    );

    let invitation: Value = invite(&app, &acme_token, json!({"email": "x@acme.example"}))
        .await
        .json()
        .await
        .unwrap();
    let id = invitation["id"].as_str().unwrap();
    let cross = revoke_invitation(&app, &beta_token, id).await;
    assert_eq!(api_error(cross).await.1, "not_found");
    let listed = invitations(&app, &beta_token).await;
    assert!(
        listed.is_empty(),
        "beta sees none of acme's invitations: {listed:?}"
    );
    assert!(outbox(&app, &beta_token).await.is_empty());

    // With the browser's cookie instead of a bearer token, a change must come from our own pages.
    let by_cookie = |origin: Option<String>| {
        let mut request = app
            .client
            .post(app.https_url("/api/invitations"))
            .header("cookie", format!("access_token={acme_token}"))
            .json(&json!({"email": "via-cookie@acme.example"}));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move { request.send().await.unwrap() }
    };
    let refused = by_cookie(None).await;
    let (status, code, message) = api_error(refused).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    assert_eq!(
        message,
        "a change authenticated by cookie must come from this appliance's own pages (Origin)"
    );
    let cross_site = by_cookie(Some("https://evil.example".into())).await;
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let same_site = by_cookie(Some(app.https_url(""))).await;
    assert_eq!(same_site.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn an_expired_invitation_is_shown_as_expired_and_can_be_resent() {
    let clock = ManualClock::starting_at(1_800_000_000_000);
    let app = spawn_at(&clock).await;
    let seeded = seed(&app, "acme").await;
    let token = owner_token(&app, &seeded).await;
    let invitation: Value = invite(&app, &token, json!({"email": "slow@acme.example"}))
        .await
        .json()
        .await
        .unwrap();
    let id = invitation["id"].as_str().unwrap();
    let first_secret = invitation_secret(&app, &token, "slow@acme.example").await;
    clock.advance_ms(24 * 3600 * 1000 + 1);
    let refused = accept(
        &app,
        json!({"invitationId": first_secret, "password": "Inv1ted-pass!"}),
    )
    .await;
    let (status, _, message) = api_error(refused).await;
    assert_eq!(
        (status, message.as_str()),
        (
            StatusCode::GONE,
            "the invitation has expired; ask for a new one"
        )
    );

    // The owner's token has long expired too; a fresh one lists and resends.
    let token = owner_token(&app, &seeded).await;
    let listed = invitations(&app, &token).await;
    assert_eq!(listed[0]["status"], "EXPIRED");
    let resent: Value = app
        .client
        .post(app.https_url(&format!("/api/invitations/{id}/resend")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resent["status"], "PENDING");
    assert_eq!(
        resent["expiresAt"].as_i64().unwrap(),
        clock_now(&clock) + 24 * 3600 * 1000
    );
    // The resent link has a new secret; the old link is dead.
    let new_secret = invitation_secret(&app, &token, "slow@acme.example").await;
    assert_ne!(new_secret, first_secret);
    let old_link = accept(
        &app,
        json!({"invitationId": first_secret, "password": "Inv1ted-pass!"}),
    )
    .await;
    assert_eq!(api_error(old_link).await.1, "not_found");
    let accepted = accept(
        &app,
        json!({"invitationId": new_secret, "password": "Inv1ted-pass!"}),
    )
    .await;
    assert_eq!(accepted.status(), StatusCode::OK);
}

fn clock_now(clock: &ManualClock) -> i64 {
    openframe_storage::Clock::now_ms(clock)
}

#[tokio::test]
async fn a_password_reset_changes_the_password_once_and_revokes_every_token() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let token = owner_token(&app, &seeded).await;
    let request = |email: &str| {
        let request = app
            .client
            .post(app.https_url("/sas/password-reset/request"))
            .json(&json!({"email": email}));
        async move { request.send().await.unwrap() }
    };
    let unknown = request("nobody@acme.example").await;
    assert_eq!(unknown.status(), StatusCode::ACCEPTED);
    assert!(
        outbox(&app, &token).await.is_empty(),
        "no account, no message"
    );
    let known = request(&seeded.email).await;
    assert_eq!(known.status(), StatusCode::ACCEPTED);
    assert_eq!(
        known.json::<Value>().await.unwrap(),
        unknown.json::<Value>().await.unwrap(),
        "the answer does not reveal accounts"
    );

    // More requests for the same email from the same address are dropped past three an hour,
    // with the same answer, so nobody can mail-bomb a user or fill the outbox.
    for _ in 0..3 {
        assert_eq!(request(&seeded.email).await.status(), StatusCode::ACCEPTED);
    }
    let kept = outbox(&app, &token).await;
    assert_eq!(
        kept.iter()
            .filter(|m| m["kind"] == "PASSWORD_RESET")
            .count(),
        3
    );
    let messages = outbox(&app, &token).await;
    let body = messages[0]["body"].as_str().unwrap();
    let reset_token = link_parameter(body, "token");
    assert!(reset_token.starts_with("acme."), "{reset_token}");
    let confirm = |new_password: &str| {
        let request = app
            .client
            .post(app.https_url("/sas/password-reset/confirm"))
            .json(&json!({"token": reset_token, "newPassword": new_password}));
        async move { request.send().await.unwrap() }
    };
    let (status, code, _) = api_error(confirm("weak").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_input")
    );
    let done = confirm("N3w-password!").await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(
        done.json::<Value>().await.unwrap(),
        json!({"status": "PASSWORD_CHANGED"})
    );
    let (status, _, message) = api_error(confirm("An0ther-password!").await).await;
    assert_eq!(
        (status, message.as_str()),
        (
            StatusCode::GONE,
            "the reset link is invalid, expired or already used; ask for a new one"
        )
    );

    // Only the new password works, and the token from before is revoked.
    assert_password_replaced(&app, &seeded, "N3w-password!", &token).await;
}

#[tokio::test]
async fn registration_is_open_only_until_the_first_tenant_by_default() {
    let app = spawn_app().await;
    let register = |name: &str, email: &str| {
        let request = app.client.post(app.https_url("/sas/oauth/register")).json(&json!({
            "email": email, "firstName": "Olive", "lastName": "Owner", "password": "Own3r-pass!",
            "tenantName": name,
        }));
        async move { request.send().await.unwrap() }
    };
    let created = register("Acme IT, Ltd.", "olive@acme.example").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let tenant: Value = created.json().await.unwrap();
    assert_eq!(tenant["id"], "acme-it-ltd");
    assert_eq!(tenant["status"], "ACTIVE");
    assert_eq!(tenant["issuer"], app.https_url("/sas/acme-it-ltd"));
    assert_eq!(
        can_sign_in(&app, "acme-it-ltd", "olive@acme.example", "Own3r-pass!").await,
        StatusCode::OK
    );

    let (status, code, message) = api_error(register("Second MSP", "x@second.example").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    assert_eq!(
        message,
        "registration is closed on this appliance; ask an administrator for an invitation"
    );

    // Discovery finds the account's tenant; unknown emails find none.
    let found: Value = app
        .client
        .get(app.https_url("/sas/tenant/discover?email=Olive@Acme.example"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        found,
        json!({
            "email": "olive@acme.example", "has_existing_accounts": true, "tenant_id": "acme-it-ltd",
            "tenant_ids": ["acme-it-ltd"], "auth_providers": ["password"],
        })
    );
    let none: Value = app
        .client
        .get(app.https_url("/sas/tenant/discover?email=who@else.example"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            none["has_existing_accounts"].as_bool(),
            none["tenant_id"].clone()
        ),
        (Some(false), Value::Null)
    );
    let bad = app
        .client
        .get(app.https_url("/sas/tenant/discover?email=not-an-email"))
        .send()
        .await
        .unwrap();
    assert_eq!(api_error(bad).await.1, "invalid_input");
}

#[tokio::test]
async fn open_registration_refuses_a_taken_tenant_id() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.identity.registration = "open".into();
    let app = spawn_with(config).await;
    for (expected, email) in [
        (StatusCode::CREATED, "a@one.example"),
        (StatusCode::CONFLICT, "b@two.example"),
    ] {
        let response = app
            .client
            .post(app.https_url("/sas/oauth/register"))
            .json(&json!({"email": email, "firstName": "Al", "lastName": "Ex", "password": "Own3r-pass!", "tenantName": "Same Name"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected);
    }
}

/// Python's standard-library SMTP server (3.11 ships `smtpd`), printing every message it gets.
pub(crate) struct SmtpSink {
    child: Child,
    pub(crate) port: u16,
    lines: std::sync::mpsc::Receiver<String>,
}

impl SmtpSink {
    pub(crate) fn start() -> SmtpSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("python3")
            .args([
                "-W",
                "ignore",
                "-u",
                "-m",
                "smtpd",
                "-n",
                "-c",
                "DebuggingServer",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the SMTP test peer");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        // From here the guard owns the child: a failed start still kills and reaps it.
        let sink = SmtpSink { child, port, lines };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return sink;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the SMTP peer did not start");
    }

    /// The next message, with the sink's `b'...'` line quoting and the body's
    /// quoted-printable encoding (soft line breaks, `=3D`) undone.
    pub(crate) fn message(&self) -> String {
        let mut message = String::new();
        while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(10)) {
            if line.contains("END MESSAGE") {
                return message.replace("=\n", "").replace("=3D", "=");
            }
            let line = line
                .strip_prefix("b'")
                .and_then(|l| l.strip_suffix('\''))
                .unwrap_or(&line);
            message.push_str(line);
            message.push('\n');
        }
        panic!("no message arrived: {message}");
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn with_smtp_an_invitation_is_mailed_not_kept() {
    let smtp = SmtpSink::start();
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.mail.smtp_host = "127.0.0.1".into();
    config.mail.smtp_port = smtp.port;
    config.mail.smtp_security = "none".into();
    config.mail.from = "MSP Desk <desk@msp.example>".into();
    let app = spawn_with(config).await;
    let seeded: Seeded = seed(&app, "acme").await;
    let token = owner_token(&app, &seeded).await;
    let invitation: Value = invite(&app, &token, json!({"email": "mailed@acme.example"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(invitation["delivery"], "SENT");
    let message = smtp.message();
    assert!(message.contains("To: mailed@acme.example"), "{message}");
    assert!(
        message.contains("From: \"MSP Desk\" <desk@msp.example>")
            || message.contains("From: MSP Desk <desk@msp.example>"),
        "{message}"
    );
    assert!(
        message.contains("Subject: Your invitation to OpenFrame"),
        "{message}"
    );
    // The mailed link works, and accepting it proves the mailbox.
    let secret = link_parameter(&message, "invitationId");
    let accepted = accept(
        &app,
        json!({"invitationId": secret, "password": "Inv1ted-pass!"}),
    )
    .await;
    assert_eq!(accepted.status(), StatusCode::OK);
    let tenant = openframe_storage::TenantId::parse("acme").unwrap();
    let user = app
        .state
        .identity
        .store
        .user_by_email(
            &tenant,
            &openframe::domain::Email::parse("mailed@acme.example").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(user.record.email_verified);
    assert!(outbox(&app, &token).await.is_empty());
}

#[tokio::test]
async fn the_operator_can_set_a_password_and_every_old_token_ends() {
    let app = spawn_app().await;
    let seeded = seed(&app, "acme").await;
    let token = owner_token(&app, &seeded).await;
    let identity = &app.state.identity;
    let weak =
        openframe::identity::admin::set_password(identity, "acme", &seeded.email, "short").await;
    assert_eq!(
        weak.unwrap_err().to_string(),
        "password: must be at least 8 characters"
    );
    let unknown = openframe::identity::admin::set_password(
        identity,
        "acme",
        "ghost@acme.example",
        "Rec0vered-pass!",
    )
    .await;
    assert_eq!(
        unknown.unwrap_err().to_string(),
        "no user ghost@acme.example in tenant acme"
    );
    let user = openframe::identity::admin::set_password(
        identity,
        "acme",
        &seeded.email,
        "Rec0vered-pass!",
    )
    .await
    .unwrap();
    assert_eq!(user.email, seeded.email);
    // Only the new password works, and the token from before is revoked.
    assert_password_replaced(&app, &seeded, "Rec0vered-pass!", &token).await;
}
