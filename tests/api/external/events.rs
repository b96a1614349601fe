//! Events through the external API: recorded with `events:write` (as the key's creator unless a
//! user is named), listed oldest first with filters, search and a cursor, faceted, read and
//! changed; `events:read` cannot write, the other tenant sees none of them, and bad parameters
//! are named in a 400.

use reqwest::Method;
use serde_json::{Value, json};

use super::{listed, refuses_naming, with_key};
use crate::gateway::support::{create_key, two_tenants};
use crate::helpers::spawn_app;

fn types(answer: &Value) -> Vec<&str> {
    listed(answer, "events", "type")
}

#[tokio::test]
async fn events_are_recorded_listed_and_changed_with_their_scopes() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let (_, writer, _) = create_key(
        &app,
        &tenants.admin_a,
        json!({"name": "psa", "scopes": ["events:read", "events:write"]}),
    )
    .await;
    // The key's creator: the owner who made it.
    let me: Value = app
        .client
        .get(app.https_url("/api/me"))
        .bearer_auth(&tenants.admin_a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let creator = me["user"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{me}"))
        .to_owned();
    let (_, reader, _) = create_key(&app, &tenants.admin_a, json!({"name": "reader"})).await;
    let (_, theirs, _) = create_key(&app, &tenants.admin_b, json!({"name": "globex"})).await;

    let mut ids = Vec::new();
    for (kind, data, user) in [
        ("ticket.opened", "printer on fire", None),
        ("ticket.closed", "printer replaced", None),
        ("invoice.sent", "{\"total\": 120}", Some("billing-bot")),
    ] {
        let mut body = json!({"type": kind, "data": data});
        if let Some(user) = user {
            body["userId"] = json!(user);
        }
        let (status, event) = with_key(&app, &writer, Method::POST, "/events", Some(body)).await;
        assert_eq!(status, 201, "{event}");
        assert_eq!(event["userId"], user.unwrap_or(&creator), "{event}");
        ids.push(event["id"].as_str().unwrap().to_owned());
    }

    // Oldest first, paged by cursor; filters and search.
    let (status, first) = with_key(&app, &reader, Method::GET, "/events?limit=2", None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(types(&first), ["ticket.opened", "ticket.closed"]);
    assert_eq!(first["filteredCount"], 3);
    let cursor = first["pageInfo"]["endCursor"].as_str().unwrap();
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("limit", "2")
        .append_pair("cursor", cursor)
        .finish();
    let (_, next) = with_key(
        &app,
        &reader,
        Method::GET,
        &format!("/events?{query}"),
        None,
    )
    .await;
    assert_eq!(types(&next), ["invoice.sent"]);
    let (_, tickets) = with_key(
        &app,
        &reader,
        Method::GET,
        "/events?eventTypes=ticket.opened,ticket.closed&search=REPLACED",
        None,
    )
    .await;
    assert_eq!(types(&tickets), ["ticket.closed"]);
    let (_, by_type) = with_key(
        &app,
        &reader,
        Method::GET,
        "/events?sortField=TYPE&sortDirection=DESC",
        None,
    )
    .await;
    assert_eq!(
        types(&by_type),
        ["ticket.opened", "ticket.closed", "invoice.sent"]
    );
    let (_, facets) = with_key(
        &app,
        &reader,
        Method::GET,
        "/events/filters?userIds=billing-bot",
        None,
    )
    .await;
    assert_eq!(facets["filteredCount"], 1);
    assert_eq!(
        facets["eventTypes"],
        json!([{"value": "invoice.sent", "label": "invoice.sent", "count": 1}])
    );

    // Read and change one; the reader may not write; the other tenant has none of them.
    let (status, one) = with_key(
        &app,
        &reader,
        Method::GET,
        &format!("/events/{}", ids[0]),
        None,
    )
    .await;
    assert_eq!(
        (status, one["data"].clone()),
        (200, json!("printer on fire"))
    );
    let (status, changed) = with_key(
        &app,
        &writer,
        Method::PUT,
        &format!("/events/{}", ids[0]),
        Some(json!({"data": "fire out"})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["data"].clone(), changed["type"].clone()),
        (json!("fire out"), json!("ticket.opened"))
    );
    let (status, denied) = with_key(
        &app,
        &reader,
        Method::POST,
        "/events",
        Some(json!({"type": "x"})),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        denied["message"].as_str().unwrap().contains("events:write"),
        "{denied}"
    );
    let (status, _) = with_key(
        &app,
        &theirs,
        Method::GET,
        &format!("/events/{}", ids[0]),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, their_list) = with_key(&app, &theirs, Method::GET, "/events", None).await;
    assert_eq!(their_list["filteredCount"], 0);

    // Bad input.
    refuses_naming(
        &app,
        &reader,
        &[
            ("/events?startDate=yesterday", "startDate"),
            ("/events?startDate=2026-11-02&endDate=2026-11-01", "endDate"),
            ("/events?sortField=SIZE", "sortField"),
            ("/events?limit=-1", "limit"),
            ("/events?cursor=@@", "cursor"),
            ("/events?userId=x", "userId"),
        ],
    )
    .await;
    let (status, error) = with_key(
        &app,
        &writer,
        Method::POST,
        "/events",
        Some(json!({"type": "bad type!"})),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    let (status, error) = with_key(
        &app,
        &writer,
        Method::POST,
        "/events",
        Some(json!({"type": "ok", "color": "red"})),
    )
    .await;
    assert_eq!(status, 400, "{error}");
}
