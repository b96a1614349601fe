//! Devices and organizations through the external API: keyset paging that stays put while rows
//! are added, filters and facets, one device, nickname and status changes (recorded in the
//! audit trail as the key's), organizations end to end, every scope denial, the other tenant's
//! objects out of reach, and bad parameters answered 400 with a message naming them.

use reqwest::Method;
use serde_json::{Value, json};

use super::{V1, listed, refuses_naming, with_key};
use crate::gateway::support::{create_key, two_tenants};
use crate::graphql::support::{machine, put_machine, put_org};
use crate::helpers::spawn_app;

fn hostnames(answer: &Value) -> Vec<&str> {
    listed(answer, "devices", "hostname")
}

#[tokio::test]
async fn devices_page_filter_and_change_with_the_right_scopes_and_only_in_their_tenant() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    put_org(&app, "acme", "org-a", "Acme HQ").await;
    for (id, hostname, status) in [
        ("m-1", "ws-charlie", "ONLINE"),
        ("m-2", "ws-alpha", "OFFLINE"),
        ("m-3", "ws-bravo", "ONLINE"),
        ("m-4", "ws-gone", "DELETED"),
    ] {
        let mut device = machine(id, hostname, status, "org-a");
        device.tags = vec!["site:lab".into()];
        put_machine(&app, "acme", device).await;
    }
    put_machine(&app, "globex", machine("g-1", "theirs", "ONLINE", "org-g")).await;
    let (_, full, _) = create_key(
        &app,
        &tenants.admin_a,
        json!({"name": "full", "scopes": ["devices:read", "devices:write", "organizations:read", "organizations:write"]}),
    )
    .await;
    let (_, reader, _) = create_key(&app, &tenants.admin_a, json!({"name": "reader"})).await;
    let (_, tools_only, _) = create_key(
        &app,
        &tenants.admin_a,
        json!({"name": "tools", "scopes": ["tools:read"]}),
    )
    .await;
    let (_, theirs, _) = create_key(
        &app,
        &tenants.admin_b,
        json!({"name": "globex", "scopes": ["devices:read", "devices:write", "organizations:read"]}),
    )
    .await;

    // Paged by hostname; DELETED is left out unless asked for.
    let (status, first) = with_key(
        &app,
        &reader,
        Method::GET,
        "/devices?limit=2&sortField=hostname&sortDirection=ASC",
        None,
    )
    .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(hostnames(&first), ["ws-alpha", "ws-bravo"]);
    assert_eq!(first["filteredCount"], 3);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    assert_eq!(
        first["devices"][0]["organization"],
        json!({"organizationId": "org-a", "name": "Acme HQ"})
    );
    assert!(
        first["devices"][0].get("tags").is_none(),
        "tags only with includeTags"
    );
    // A device added before the cursor does not shift the next page.
    put_machine(&app, "acme", machine("m-5", "ws-aaa", "ONLINE", "org-a")).await;
    let cursor = first["pageInfo"]["endCursor"].as_str().unwrap();
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("limit", "2")
        .append_pair("sortField", "hostname")
        .append_pair("sortDirection", "ASC")
        .append_pair("includeTags", "true")
        .append_pair("cursor", cursor)
        .finish();
    let (_, next) = with_key(
        &app,
        &reader,
        Method::GET,
        &format!("/devices?{query}"),
        None,
    )
    .await;
    assert_eq!(hostnames(&next), ["ws-charlie"]);
    assert_eq!(next["pageInfo"]["hasNextPage"], false);
    assert_eq!(next["devices"][0]["tags"], json!(["site:lab"]));
    // Filters, repeated or comma-separated, and their facets.
    let (_, online) = with_key(
        &app,
        &reader,
        Method::GET,
        "/devices?statuses=ONLINE&statuses=deleted&search=WS-",
        None,
    )
    .await;
    assert_eq!(online["filteredCount"], 4, "{online}");
    let (status, facets) = with_key(
        &app,
        &reader,
        Method::GET,
        "/devices/filters?statuses=ONLINE,OFFLINE",
        None,
    )
    .await;
    assert_eq!(status, 200, "{facets}");
    assert_eq!(facets["filteredCount"], 4);
    assert_eq!(
        facets["statuses"],
        json!([{"value": "OFFLINE", "label": "OFFLINE", "count": 1}, {"value": "ONLINE", "label": "ONLINE", "count": 3}])
    );
    assert_eq!(facets["organizationIds"][0]["label"], "Acme HQ");

    // One device; the other tenant's is simply not there.
    let (status, one) = with_key(&app, &reader, Method::GET, "/devices/m-1", None).await;
    assert_eq!(
        (status, one["hostname"].clone()),
        (200, json!("ws-charlie"))
    );
    let (status, missing) = with_key(&app, &theirs, Method::GET, "/devices/m-1", None).await;
    assert_eq!((status, missing["code"].clone()), (404, json!("not_found")));
    let (_, their_list) = with_key(&app, &theirs, Method::GET, "/devices", None).await;
    assert_eq!(hostnames(&their_list), ["theirs"]);
    let (status, _) = with_key(
        &app,
        &theirs,
        Method::PATCH,
        "/devices/m-1/nickname",
        Some(json!({"nickname": "mine now"})),
    )
    .await;
    assert_eq!(status, 404);

    // Scopes: each denial says which scope the path needs.
    for (key, method, path, body, scope) in [
        (
            &reader,
            Method::PATCH,
            "/devices/m-1/nickname",
            Some(json!({"nickname": "x"})),
            "devices:write",
        ),
        (
            &reader,
            Method::PATCH,
            "/devices/m-1",
            Some(json!({"status": "MAINTENANCE"})),
            "devices:write",
        ),
        (&tools_only, Method::GET, "/devices", None, "devices:read"),
        (
            &tools_only,
            Method::GET,
            "/organizations",
            None,
            "organizations:read",
        ),
        (
            &reader,
            Method::POST,
            "/organizations",
            Some(json!({"name": "Nope"})),
            "organizations:write",
        ),
        (
            &reader,
            Method::PATCH,
            "/organizations/org-a/status",
            Some(json!({"status": "ARCHIVED"})),
            "organizations:write",
        ),
    ] {
        let (status, denied) = with_key(&app, key, method.clone(), path, body).await;
        assert_eq!(
            (status, denied["code"].clone()),
            (403, json!("forbidden")),
            "{method} {path}: {denied}"
        );
        assert!(
            denied["message"].as_str().unwrap().contains(scope),
            "{denied}"
        );
    }

    // Changes, with the right scope, land and are audited as the key's.
    let (status, renamed) = with_key(
        &app,
        &full,
        Method::PATCH,
        "/devices/m-1/nickname",
        Some(json!({"nickname": "  front desk  "})),
    )
    .await;
    assert_eq!(
        (status, renamed["nickname"].clone()),
        (200, json!("front desk")),
        "{renamed}"
    );
    let (status, maintained) = with_key(
        &app,
        &full,
        Method::PATCH,
        "/devices/m-1",
        Some(json!({"status": "MAINTENANCE"})),
    )
    .await;
    assert_eq!(
        (status, maintained["status"].clone()),
        (200, json!("MAINTENANCE"))
    );
    let trail = app
        .client
        .get(app.https_url("/api/audit?targetId=m-1"))
        .bearer_auth(&tenants.admin_a)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        trail.contains("PATCH /external-api/api/v1/devices/{machine_id}/nickname"),
        "{trail}"
    );
    assert!(trail.contains("api key "), "{trail}");

    // Bad parameters: 400, the code, and the parameter named first.
    refuses_naming(
        &app,
        &full,
        &[
            ("/devices?limit=0", "limit"),
            ("/devices?limit=1000", "limit"),
            ("/devices?cursor=%25%25%25", "cursor"),
            ("/devices?statuses=SLEEPING", "statuses"),
            ("/devices?deviceTypes=TOASTER", "deviceTypes"),
            ("/devices?osTypes=BEOS", "osTypes"),
            ("/devices?sortField=color", "sortField"),
            ("/devices?sortDirection=SIDEWAYS", "sortDirection"),
            ("/devices?includeTags=perhaps", "includeTags"),
            ("/devices?page=2", "page"),
            ("/devices/filters?limit=5", "limit"),
            ("/organizations?status=GONE", "status"),
        ],
    )
    .await;
    let wrong_type = app
        .client
        .patch(app.https_url(&format!("{V1}/devices/m-1/nickname")))
        .header("x-api-key", &full)
        .header("content-type", "text/plain")
        .body("nickname=x")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 400);
    let wrong_type: Value = wrong_type.json().await.unwrap();
    assert_eq!(wrong_type["code"], "invalid_input");
    assert!(
        wrong_type["message"]
            .as_str()
            .unwrap()
            .contains("Content-Type: application/json"),
        "{wrong_type}"
    );
    // A body that is not an object, and one over the gateway's limit (10 MiB by default).
    let (status, error) = with_key(
        &app,
        &full,
        Method::PATCH,
        "/devices/m-1/nickname",
        Some(json!(["x"])),
    )
    .await;
    assert_eq!(
        (status, &error["code"]),
        (400, &json!("invalid_input")),
        "{error}"
    );
    let oversize = app
        .client
        .patch(app.https_url(&format!("{V1}/devices/m-1/nickname")))
        .header("x-api-key", &full)
        .header("content-type", "application/json")
        .body(vec![b' '; 10 * 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(oversize.status(), 413);
    let oversize: Value = oversize.json().await.unwrap();
    assert_eq!(oversize["code"], "payload_too_large");
    let (status, error) = with_key(
        &app,
        &full,
        Method::PATCH,
        "/devices/m-1/nickname",
        Some(json!({"nickname": "x".repeat(101)})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error["message"].as_str().unwrap().starts_with("nickname"),
        "{error}"
    );

    // Organizations: create, list, read both ways, can-archive, and archiving refused while
    // devices are in use.
    let (status, created) = with_key(
        &app,
        &full,
        Method::POST,
        "/organizations",
        Some(json!({"name": "Beta Branch", "category": "retail"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let created_id = created["organizationId"].as_str().unwrap().to_owned();
    let (_, listed) = with_key(&app, &reader, Method::GET, "/organizations?limit=1", None).await;
    assert_eq!(listed["organizations"][0]["name"], "Acme HQ");
    assert_eq!(listed["filteredCount"], 2);
    let (_, searched) = with_key(
        &app,
        &reader,
        Method::GET,
        "/organizations?search=beta",
        None,
    )
    .await;
    assert_eq!(
        searched["organizations"][0]["organizationId"],
        created_id.as_str()
    );
    let (status, by_id) = with_key(
        &app,
        &reader,
        Method::GET,
        &format!("/organizations/by-organization-id/{created_id}"),
        None,
    )
    .await;
    assert_eq!((status, by_id["category"].clone()), (200, json!("retail")));
    let (_, can) = with_key(
        &app,
        &reader,
        Method::GET,
        "/organizations/org-a/can-archive",
        None,
    )
    .await;
    assert_eq!(can, json!({"canArchive": false, "devicesInUse": 4}));
    let (status, refused) = with_key(
        &app,
        &full,
        Method::PATCH,
        "/organizations/org-a/status",
        Some(json!({"status": "ARCHIVED"})),
    )
    .await;
    assert_eq!((status, refused["code"].clone()), (409, json!("conflict")));
    let (status, archived) = with_key(
        &app,
        &full,
        Method::PATCH,
        &format!("/organizations/{created_id}/status"),
        Some(json!({"status": "ARCHIVED"})),
    )
    .await;
    assert_eq!(
        (status, archived["status"].clone()),
        (200, json!("ARCHIVED"))
    );
    let (_, active) = with_key(
        &app,
        &reader,
        Method::GET,
        "/organizations?status=ACTIVE",
        None,
    )
    .await;
    assert_eq!(active["filteredCount"], 1);
    let (status, _) = with_key(&app, &theirs, Method::GET, "/organizations/org-a", None).await;
    assert_eq!(status, 404, "the other tenant's organization is not there");
}
