//! Tool filters through the external API: the types and categories of the key's tenant's
//! tools (none before one is registered, none of the other tenant's), with `tools:read` only.

use reqwest::Method;
use serde_json::json;

use super::with_key;
use crate::gateway::support::{create_key, register_tool, two_tenants, upstream};
use crate::helpers::spawn_app;

#[tokio::test]
async fn tool_filters_name_the_tenants_tool_types_and_need_tools_read() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let (_, reader, _) = create_key(&app, &tenants.admin_a, json!({"name": "reader"})).await;
    let (_, devices_only, _) = create_key(
        &app,
        &tenants.admin_a,
        json!({"name": "devices", "scopes": ["devices:read"]}),
    )
    .await;
    let (_, theirs, _) = create_key(&app, &tenants.admin_b, json!({"name": "globex"})).await;
    let empty = json!({"types": [], "categories": [], "platformCategories": []});
    let (status, none) = with_key(&app, &reader, Method::GET, "/tools/filters", None).await;
    assert_eq!((status, none), (200, empty.clone()));

    let tool = upstream().await;
    register_tool(&app, "acme", &tool).await;
    let (_, filters) = with_key(&app, &reader, Method::GET, "/tools/filters", None).await;
    assert_eq!(
        filters,
        json!({"types": ["FLEET_MDM"], "categories": ["Device Management"], "platformCategories": ["Integrated Tool"]})
    );
    let (_, other) = with_key(&app, &theirs, Method::GET, "/tools/filters", None).await;
    assert_eq!(other, empty, "the other tenant's tools are not counted");
    let (status, denied) = with_key(&app, &devices_only, Method::GET, "/tools/filters", None).await;
    assert_eq!(status, 403);
    assert!(
        denied["message"].as_str().unwrap().contains("tools:read"),
        "{denied}"
    );
}
