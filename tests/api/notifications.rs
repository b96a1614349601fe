//! In-app notifications: each technician's settings (checked field by field) decide what is
//! pushed live and what is mailed through the operator's SMTP server (a real SMTP peer here:
//! Python's smtpd debugging server); the list always holds everything, with read state per
//! person.

use std::time::Duration;

use openframe::notify::{Category, NewNotification, Severity};
use reqwest::Method;
use serde_json::json;
use tempfile::TempDir;

use crate::gateway::support::{tenant, two_tenants};
use crate::graphql::live::{connect, next, send};
use crate::helpers::{spawn_with, test_config};
use crate::identity::accounts::SmtpSink;
use crate::rest::call;

fn notification(title: &str, severity: Severity, category: Category) -> NewNotification {
    NewNotification {
        title: title.to_owned(),
        message: format!("{title}: details"),
        severity,
        category,
        link: Some("/incidents".to_owned()),
    }
}

#[tokio::test]
async fn settings_decide_what_is_pushed_and_mailed_and_the_list_keeps_everything() {
    let smtp = SmtpSink::start();
    let dir = TempDir::new().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.mail.smtp_host = "127.0.0.1".into();
    config.mail.smtp_port = smtp.port;
    config.mail.smtp_security = "none".into();
    let app = spawn_with(config).await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    let path = "/api/notifications/settings";

    let (status, defaults) = call(&app, token, Method::GET, path, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        defaults,
        json!({"email": false, "minSeverity": "INFO", "mutedCategories": []})
    );
    for (body, says) in [
        (
            json!({"email": true, "minSeverity": "LOUD", "mutedCategories": []}),
            "minSeverity: must be one of INFO, WARNING, ERROR, CRITICAL",
        ),
        (
            json!({"email": true, "minSeverity": "INFO", "mutedCategories": ["NOPE"]}),
            "mutedCategories: \"NOPE\" is not one of INCIDENT, ALERT, APPROVAL, SYSTEM",
        ),
        (
            json!({"minSeverity": "INFO", "mutedCategories": []}),
            "email: true or false",
        ),
        (
            json!({"email": true, "minSeverity": "INFO", "mutedCategories": [], "sms": true}),
            "sms: not a setting; send email, minSeverity and mutedCategories",
        ),
    ] {
        let (status, answer) = call(&app, token, Method::PUT, path, Some(body)).await;
        assert_eq!((status, &answer["code"]), (400, &json!("invalid_input")));
        assert_eq!(answer["message"], says);
    }
    let (_, unchanged) = call(&app, token, Method::GET, path, None).await;
    assert_eq!(unchanged, defaults);
    let chosen = json!({"email": true, "minSeverity": "WARNING", "mutedCategories": ["APPROVAL"]});
    let (status, stored) = call(&app, token, Method::PUT, path, Some(chosen.clone())).await;
    assert_eq!((status, &stored), (200, &chosen));
    // Settings are per person: the other tenant's owner still has the defaults.
    let (_, theirs) = call(&app, &tenants.admin_b, Method::GET, path, None).await;
    assert_eq!(theirs, defaults);

    let mut socket = connect(&app, Some(token), Some("graphql-transport-ws"))
        .await
        .unwrap();
    send(&mut socket, json!({"type": "connection_init"})).await;
    assert_eq!(
        next(&mut socket, Duration::from_secs(5)).await.unwrap()["type"],
        "connection_ack"
    );
    send(
        &mut socket,
        json!({"id": "n", "type": "subscribe", "payload": {
            "query": "subscription { notificationStream { title severity category link createdAt } }"}}),
    )
    .await;
    // The subscription is in place on the server before anything is notified.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.state.notifications.listeners() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscription never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let notifications = &app.state.notifications;
    for (to, title, severity, category) in [
        (
            "acme",
            "A new device type",
            Severity::Info,
            Category::Incident,
        ),
        ("acme", "A draft waits", Severity::Error, Category::Approval),
        (
            "globex",
            "Globex only",
            Severity::Critical,
            Category::Incident,
        ),
        ("acme", "Disk failing", Severity::Error, Category::Incident),
    ] {
        notifications
            .notify(&tenant(to), notification(title, severity, category))
            .await;
    }

    // Pushed: only what passes the settings, of this tenant.
    let pushed = next(&mut socket, Duration::from_secs(5)).await.unwrap();
    let pushed = &pushed["payload"]["data"]["notificationStream"];
    assert_eq!(
        (
            &pushed["title"],
            &pushed["severity"],
            &pushed["category"],
            &pushed["link"]
        ),
        (
            &json!("Disk failing"),
            &json!("ERROR"),
            &json!("INCIDENT"),
            &json!("/incidents")
        )
    );
    assert_eq!(next(&mut socket, Duration::from_millis(300)).await, None);

    // Mailed: the same one (the first message the SMTP peer received).
    let message = smtp.message();
    assert!(message.contains("To: owner@acme.example.com"), "{message}");
    assert!(
        message.contains("Subject: [OpenFrame] ERROR Disk failing"),
        "{message}"
    );
    assert!(message.contains("Disk failing: details"), "{message}");

    // Listed: all three of the tenant's, newest first, unread until marked.
    let (_, listed) = call(&app, token, Method::GET, "/api/notifications", None).await;
    let titles: Vec<&str> = listed["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["Disk failing", "A draft waits", "A new device type"]
    );
    assert_eq!(listed["unread"], 3);
    let (status, marked) = call(
        &app,
        token,
        Method::POST,
        "/api/notifications/read-all",
        None,
    )
    .await;
    assert_eq!((status, marked), (200, json!({"marked": 3})));
    let (_, listed) = call(&app, token, Method::GET, "/api/notifications", None).await;
    assert_eq!(listed["unread"], 0);
    assert!(
        listed["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|entry| entry["read"] == true)
    );
    // Another tenant's notification is not reachable from here.
    let (_, theirs) = call(
        &app,
        &tenants.admin_b,
        Method::GET,
        "/api/notifications",
        None,
    )
    .await;
    let their_id = theirs["notifications"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = call(
        &app,
        token,
        Method::POST,
        &format!("/api/notifications/{their_id}/read"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, theirs) = call(
        &app,
        &tenants.admin_b,
        Method::GET,
        "/api/notifications",
        None,
    )
    .await;
    assert_eq!(theirs["unread"], 1);
    // Reading is not a change to the tenant: the audit trail leaves it out.
    let (_, audit) = call(&app, token, Method::GET, "/api/audit", None).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["PUT /api/notifications/settings"], "{audit}");
}
