//! `/api/organizations`, `PATCH /api/devices/{machineId}`, SSO providers and the registration
//! secret's OpenFrame paths.

use reqwest::Method;
use serde_json::json;

use super::call;
use crate::gateway::support::{tenant, two_tenants};
use crate::graphql::support::{data, machine, put_machine};
use crate::helpers::spawn_app;

#[tokio::test]
async fn organizations_are_created_updated_archived_when_empty_and_isolated() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    let (status, created) = call(
        &app,
        token,
        Method::POST,
        "/api/organizations",
        Some(json!({
            "name": " Dental Group ",
            "category": "Healthcare",
            "numberOfEmployees": 40,
            "websiteUrl": "https://dental.example",
            "monthlyRevenue": 1250.5,
            "contractStartDate": "2026-01-01",
            "contractEndDate": "2026-12-31",
            "contactInformation": {"contacts": [{"contactName": "Ann", "email": "ann@dental.example"}]}
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "Dental Group");
    assert_eq!(created["status"], "ACTIVE");
    assert_eq!(created["monthlyRevenue"], "1250.5");
    let id = created["organizationId"].as_str().unwrap().to_owned();

    // Same name again: conflict.
    let (status, body) = call(
        &app,
        token,
        Method::POST,
        "/api/organizations",
        Some(json!({"name": "dental group"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );

    // PUT replaces the editable fields.
    let (status, updated) = call(
        &app,
        token,
        Method::PUT,
        &format!("/api/organizations/{id}"),
        Some(json!({"name": "Dental Group West", "notes": "Key under the mat"})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["notes"], "Key under the mat");
    assert!(
        updated.get("category").is_none(),
        "PUT replaced it: {updated}"
    );
    let listed = data(
        &app,
        token,
        "{ organizations { edges { node { name status notes } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        listed["organizations"]["edges"],
        json!([{"node": {"name": "Dental Group West", "status": "ACTIVE", "notes": "Key under the mat"}}])
    );

    // A device in use blocks archiving until it is archived itself.
    put_machine(&app, "acme", machine("m-1", "chair-1", "ONLINE", &id)).await;
    let (_, check) = call(
        &app,
        token,
        Method::GET,
        &format!("/api/organizations/{id}/can-archive"),
        None,
    )
    .await;
    assert_eq!(check, json!({"canArchive": false, "devicesInUse": 1}));
    let status_path = format!("/api/organizations/{id}/status");
    let (status, body) = call(
        &app,
        token,
        Method::PATCH,
        &status_path,
        Some(json!({"status": "ARCHIVED"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let (status, device) = call(
        &app,
        token,
        Method::PATCH,
        "/api/devices/m-1",
        Some(json!({"status": "ARCHIVED"})),
    )
    .await;
    assert_eq!(status, 200, "{device}");
    assert_eq!(device["status"], "ARCHIVED");
    let stored = app
        .state
        .inventory
        .machine(&tenant("acme"), "m-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, "ARCHIVED");
    let (_, check) = call(
        &app,
        token,
        Method::GET,
        &format!("/api/organizations/{id}/can-archive"),
        None,
    )
    .await;
    assert_eq!(check["canArchive"], true);
    let (status, archived) = call(
        &app,
        token,
        Method::PATCH,
        &status_path,
        Some(json!({"status": "ARCHIVED"})),
    )
    .await;
    assert_eq!(status, 200, "{archived}");
    assert_eq!(archived["status"], "ARCHIVED");
    let active = data(&app, token, "{ organizations { filteredCount } archived: organizations(filter: {status: \"ARCHIVED\"}) { filteredCount } }", json!({})).await;
    assert_eq!(
        active["organizations"]["filteredCount"], 0,
        "archived customers leave the default list"
    );
    assert_eq!(active["archived"]["filteredCount"], 1);

    // Another tenant reaches none of it.
    let other = &tenants.admin_b;
    for (method, path, body) in [
        (Method::GET, format!("/api/organizations/{id}"), None),
        (
            Method::PUT,
            format!("/api/organizations/{id}"),
            Some(json!({"name": "pwned"})),
        ),
        (
            Method::GET,
            format!("/api/organizations/{id}/can-archive"),
            None,
        ),
        (
            Method::PATCH,
            status_path.clone(),
            Some(json!({"status": "ACTIVE"})),
        ),
        (
            Method::PATCH,
            "/api/devices/m-1".to_owned(),
            Some(json!({"status": "ONLINE"})),
        ),
    ] {
        let (status, answer) = call(&app, other, method.clone(), &path, body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {answer}"
        );
    }
    let (_, still) = call(
        &app,
        token,
        Method::GET,
        &format!("/api/organizations/{id}"),
        None,
    )
    .await;
    assert_eq!(
        (still["name"].as_str(), still["status"].as_str()),
        (Some("Dental Group West"), Some("ARCHIVED"))
    );
    let stored = app
        .state
        .inventory
        .machine(&tenant("acme"), "m-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, "ARCHIVED");
}

#[tokio::test]
async fn bad_organization_and_device_input_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    for (body, starts) in [
        (json!({"name": ""}), "name:"),
        (json!({"name": "A", "websiteUrl": "ftp://x"}), "websiteUrl:"),
        (
            json!({"name": "A", "monthlyRevenue": "12.345"}),
            "monthlyRevenue:",
        ),
        (
            json!({"name": "A", "monthlyRevenue": -5}),
            "monthlyRevenue:",
        ),
        (
            json!({"name": "A", "contractStartDate": "2026-13-01"}),
            "contractStartDate:",
        ),
        (
            json!({"name": "A", "contractStartDate": "2026-05-01", "contractEndDate": "2026-04-01"}),
            "contractEndDate:",
        ),
        (
            json!({"name": "A", "contactInformation": "call Ann"}),
            "contactInformation:",
        ),
        (json!({"name": "A", "owner": "me"}), "the JSON body"),
    ] {
        let (status, answer) = call(
            &app,
            token,
            Method::POST,
            "/api/organizations",
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some("invalid_input")),
            "{body}"
        );
        assert!(
            answer["message"].as_str().unwrap().starts_with(starts),
            "{body}: {answer}"
        );
    }
    let listed = data(
        &app,
        token,
        "{ organizations(filter: {status: \"ACTIVE\"}) { filteredCount } }",
        json!({}),
    )
    .await;
    assert_eq!(
        listed["organizations"]["filteredCount"], 0,
        "nothing was written"
    );

    put_machine(&app, "acme", machine("m-1", "h", "ONLINE", "org-x")).await;
    let (status, answer) = call(
        &app,
        token,
        Method::PATCH,
        "/api/devices/m-1",
        Some(json!({"status": "GONE"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["message"].as_str().unwrap().starts_with("status:"),
        "{answer}"
    );
    let (status, _) = call(
        &app,
        token,
        Method::PATCH,
        "/api/devices/nope",
        Some(json!({"status": "ONLINE"})),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn sso_providers_are_configured_without_ever_showing_the_secret() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    let secret = "gOCSPX-very-secret-value";
    let (status, created) = call(
        &app,
        token,
        Method::POST,
        "/api/sso/google",
        Some(json!({"clientId": "123.apps.googleusercontent.com", "clientSecret": secret, "allowedDomains": ["acme.example.com"], "autoProvisionUsers": true})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["issuer"], "https://accounts.google.com");
    assert_eq!(created["hasClientSecret"], true);
    assert_eq!(created["enabled"], true);

    // A PUT without the secret keeps it.
    let (status, updated) = call(
        &app,
        token,
        Method::PUT,
        "/api/sso/google",
        Some(json!({"clientId": "456.apps.googleusercontent.com", "allowedDomains": ["acme.example.com", "acme.test"]})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    let stored = app
        .state
        .identity
        .sso(&tenant("acme"), "google")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.client_id, "456.apps.googleusercontent.com");
    assert!(!stored.client_secret_sealed.is_empty());
    assert!(!stored.client_secret_sealed.contains(secret));

    let (_, toggled) = call(&app, token, Method::PATCH, "/api/sso/google/toggle", None).await;
    assert_eq!(toggled["enabled"], false);
    let (_, enabled) = call(&app, token, Method::GET, "/api/sso/providers", None).await;
    assert_eq!(enabled, json!([]));
    let (_, available) = call(
        &app,
        token,
        Method::GET,
        "/api/sso/providers/available",
        None,
    )
    .await;
    assert_eq!(available[0]["provider"], "google");

    // Microsoft needs its tenant id; other providers their issuer.
    let (status, body) = call(
        &app,
        token,
        Method::POST,
        "/api/sso/microsoft",
        Some(json!({"clientId": "x", "clientSecret": "y", "allowedDomains": ["acme.example.com"]})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().starts_with("msTenantId:"),
        "{body}"
    );
    let (status, body) = call(
        &app,
        token,
        Method::POST,
        "/api/sso/okta",
        Some(json!({"clientId": "x", "clientSecret": "y", "allowedDomains": ["acme.example.com"]})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().starts_with("issuer:"),
        "{body}"
    );

    // The other tenant sees nothing and cannot change it.
    let (status, _) = call(&app, &tenants.admin_b, Method::GET, "/api/sso/google", None).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        &tenants.admin_b,
        Method::DELETE,
        "/api/sso/google",
        None,
    )
    .await;
    assert_eq!(status, 404);

    let (status, _) = call(&app, token, Method::DELETE, "/api/sso/google", None).await;
    assert_eq!(status, 204);
    assert!(
        app.state
            .identity
            .sso(&tenant("acme"), "google")
            .await
            .unwrap()
            .is_none()
    );

    // Nothing any of these answered held the secret.
    let (_, trail) = call(
        &app,
        token,
        Method::GET,
        "/api/audit?targetType=SsoProvider",
        None,
    )
    .await;
    assert_eq!(trail["items"].as_array().unwrap().len(), 4, "{trail}");
    assert!(!trail.to_string().contains(secret));
}

#[tokio::test]
async fn the_registration_secret_answers_on_openframes_paths() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    let (status, active) = call(
        &app,
        token,
        Method::GET,
        "/api/agent/registration-secret/active",
        None,
    )
    .await;
    assert_eq!(status, 200, "{active}");
    assert_eq!(active["active"], true);
    let key = active["key"].as_str().unwrap().to_owned();
    let (_, same) = call(
        &app,
        token,
        Method::GET,
        "/api/agent/registration-secret",
        None,
    )
    .await;
    assert_eq!(same["key"], key.as_str());
    let (status, rotated) = call(
        &app,
        token,
        Method::POST,
        "/api/agent/registration-secret/generate",
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["key"], key.as_str());
    let (_, theirs) = call(
        &app,
        &tenants.admin_b,
        Method::GET,
        "/api/agent/registration-secret/active",
        None,
    )
    .await;
    assert_ne!(theirs["key"], rotated["key"]);
}

#[tokio::test]
async fn deleting_a_device_revokes_its_agent_and_archiving_does_not() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    let kept = crate::gateway::support::agent_token(&app, "acme", "kiosk-1").await;
    let gone = crate::gateway::support::agent_token(&app, "acme", "kiosk-2").await;
    let machine_of = |hostname: &'static str| {
        let app = &app;
        async move {
            app.state
                .inventory
                .view(&tenant("acme"), |machines, _| {
                    machines
                        .values()
                        .find(|machine| machine.hostname == hostname)
                        .map(|machine| machine.machine_id.clone())
                })
                .await
                .unwrap()
                .unwrap()
        }
    };
    let probe = |agent: String| {
        let app = &app;
        async move {
            app.client
                .get(app.https_url("/internal/authz/probe"))
                .bearer_auth(agent)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(probe(gone.clone()).await, 200);

    // Another tenant's admin cannot delete it.
    let gone_id = machine_of("kiosk-2").await;
    let path = format!("/api/devices/{gone_id}");
    let (status, _) = call(
        &app,
        &tenants.admin_b,
        Method::PATCH,
        &path,
        Some(json!({"status": "DELETED"})),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(probe(gone.clone()).await, 200);

    let (status, _) = call(
        &app,
        token,
        Method::PATCH,
        &path,
        Some(json!({"status": "DELETED"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        probe(gone.clone()).await,
        401,
        "the deleted device's agent token is refused"
    );
    let kept_id = machine_of("kiosk-1").await;
    let (status, _) = call(
        &app,
        token,
        Method::PATCH,
        &format!("/api/devices/{kept_id}"),
        Some(json!({"status": "ARCHIVED"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        probe(kept).await,
        200,
        "an archived device's agent keeps working"
    );
    assert!(app.state.management.agents.tenant_of(&gone_id).is_none());
}
