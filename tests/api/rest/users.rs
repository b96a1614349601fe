//! `/api/users`: list with paging, read, rename, delete (with its effects on sign-in), transfer
//! of ownership, and what another tenant can do (nothing).

use openframe::identity::admin;
use reqwest::Method;
use serde_json::json;

use super::call;
use crate::gateway::support::{tenant, two_tenants};
use crate::helpers::spawn_app;
use crate::identity::support::{PASSWORD, user_token};

#[tokio::test]
async fn users_are_listed_renamed_deleted_and_ownership_moves() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let owner = &tenants.admin_a;
    let mut ids = Vec::new();
    for i in 0..3 {
        let user = admin::create_user(
            &app.state.identity,
            "acme",
            &format!("tech{i}@acme.example.com"),
            PASSWORD,
            "ADMIN",
        )
        .await
        .unwrap();
        ids.push(user.id);
    }

    // Four users, two per page, by email.
    let (status, first) = call(&app, owner, Method::GET, "/api/users?page=0&size=2", None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["totalElements"], 4);
    assert_eq!(first["totalPages"], 2);
    assert_eq!(first["hasNext"], true);
    let emails: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["owner@acme.example.com", "tech0@acme.example.com"]);
    assert!(first["items"][0].get("passwordHash").is_none());
    let (_, second) = call(&app, owner, Method::GET, "/api/users?page=1&size=2", None).await;
    assert_eq!(second["hasNext"], false);
    assert_eq!(second["items"].as_array().unwrap().len(), 2);

    // Rename.
    let path = format!("/api/users/{}", ids[0]);
    let (status, renamed) = call(
        &app,
        owner,
        Method::PUT,
        &path,
        Some(json!({"firstName": " Ada ", "lastName": "Lovelace"})),
    )
    .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(
        (renamed["firstName"].as_str(), renamed["lastName"].as_str()),
        (Some("Ada"), Some("Lovelace"))
    );
    let (_, read) = call(&app, owner, Method::GET, &path, None).await;
    assert_eq!(read["firstName"], "Ada");

    // Delete: their token stops working at once, they are gone from the list, and the email can
    // be used again.
    let victim_token = user_token(&app, &tenants.a, "tech1@acme.example.com", PASSWORD).await;
    let (status, _) = call(&app, &victim_token, Method::GET, "/api/me", None).await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &app,
        owner,
        Method::DELETE,
        &format!("/api/users/{}", ids[1]),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = call(&app, &victim_token, Method::GET, "/api/me", None).await;
    assert_eq!(status, 401, "a deleted user's token is refused");
    let (_, listed) = call(&app, owner, Method::GET, "/api/users", None).await;
    assert_eq!(listed["totalElements"], 3);
    let (status, _) = call(
        &app,
        owner,
        Method::GET,
        &format!("/api/users/{}", ids[1]),
        None,
    )
    .await;
    assert_eq!(status, 404);
    admin::create_user(
        &app.state.identity,
        "acme",
        "tech1@acme.example.com",
        PASSWORD,
        "ADMIN",
    )
    .await
    .expect("the email is free again");

    // The owner cannot be deleted, nor delete themselves; a plain admin cannot transfer.
    let me = app
        .state
        .identity
        .store
        .user_by_email(
            &tenant("acme"),
            &openframe::domain::Email::parse("owner@acme.example.com").unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
        .record;
    let tech2 = user_token(&app, &tenants.a, "tech2@acme.example.com", PASSWORD).await;
    let (status, body) = call(
        &app,
        &tech2,
        Method::DELETE,
        &format!("/api/users/{}", me.id),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let (status, body) = call(
        &app,
        owner,
        Method::DELETE,
        &format!("/api/users/{}", me.id),
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = call(
        &app,
        &tech2,
        Method::POST,
        &format!("/api/users/{}/transfer-ownership", ids[2]),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    // The owner hands over: tech2 owns, the old owner is an admin.
    let (status, body) = call(
        &app,
        owner,
        Method::POST,
        &format!("/api/users/{}/transfer-ownership", ids[2]),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["roles"], json!(["OWNER", "ADMIN"]));
    let stored = app
        .state
        .identity
        .store
        .user(&tenant("acme"), &me.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.record.roles, ["ADMIN"]);
    let (_, me_now) = call(
        &app,
        &user_token(&app, &tenants.a, "tech2@acme.example.com", PASSWORD).await,
        Method::GET,
        "/api/me",
        None,
    )
    .await;
    assert_eq!(me_now["user"]["roles"], json!(["ADMIN", "OWNER"]));

    // Another tenant's admin sees and changes none of it.
    let other = &tenants.admin_b;
    let (_, theirs) = call(&app, other, Method::GET, "/api/users", None).await;
    assert_eq!(theirs["totalElements"], 1);
    for (method, body) in [
        (Method::GET, None),
        (
            Method::PUT,
            Some(json!({"firstName": "X", "lastName": "Y"})),
        ),
        (Method::DELETE, None),
    ] {
        let (status, answer) = call(&app, other, method.clone(), &path, body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (404, Some("not_found")),
            "{method}"
        );
    }
    let (_, still) = call(&app, owner, Method::GET, &path, None).await;
    assert_eq!(still["firstName"], "Ada");
}

#[tokio::test]
async fn bad_user_input_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let owner = &tenants.admin_a;
    let user = admin::create_user(
        &app.state.identity,
        "acme",
        "t@acme.example.com",
        PASSWORD,
        "ADMIN",
    )
    .await
    .unwrap();
    let path = format!("/api/users/{}", user.id);
    for (body, starts) in [
        (json!({"firstName": "", "lastName": "B"}), "firstName:"),
        (
            json!({"firstName": "A", "lastName": "x".repeat(101)}),
            "lastName:",
        ),
        (
            json!({"firstName": "A", "lastName": "B", "roles": ["OWNER"]}),
            "the JSON body",
        ),
    ] {
        let (status, answer) = call(&app, owner, Method::PUT, &path, Some(body)).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some("invalid_input"))
        );
        assert!(
            answer["message"].as_str().unwrap().starts_with(starts),
            "{answer}"
        );
    }
    for query in ["size=0", "size=101", "page=-1", "sort=email"] {
        let (status, answer) = call(
            &app,
            owner,
            Method::GET,
            &format!("/api/users?{query}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{query}: {answer}");
    }
    let stored = app
        .state
        .identity
        .store
        .user(&tenant("acme"), &user.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.record.roles, ["ADMIN"], "nothing was written");
}
