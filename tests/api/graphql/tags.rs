//! Tags: definitions, suggestions, value options that match the device list, renames and
//! deletes that reach the devices, bad input, and lists that cost no store call per row.

use serde_json::{Value, json};

use super::support::{data, error, machine, put_machine, put_org};
use crate::gateway::support::{tenant, two_tenants};
use crate::helpers::{TestApp, spawn_app};

const CREATE: &str =
    "mutation($key: String!, $entityType: String!, $description: String, $color: String) {
  createTag(key: $key, entityType: $entityType, description: $description, color: $color) {
    id key description color entityType values createdBy
  }
}";

/// 30 devices: every device has `site` (chicago for even, denver for odd), every third `vip`.
async fn seed(app: &TestApp, tenant_id: &str) {
    put_org(app, tenant_id, "org-1", "Clinic").await;
    for i in 0..30 {
        let mut device = machine(
            &format!("m-{i:02}"),
            &format!("host-{i:02}"),
            "ONLINE",
            "org-1",
        );
        let site = if i % 2 == 0 { "chicago" } else { "denver" };
        device.tags = vec![format!("site:{site}")];
        if i % 3 == 0 {
            device.tags.push("vip".into());
        }
        put_machine(app, tenant_id, device).await;
    }
    // A deleted device's tags are not counted in the default list.
    let mut gone = machine("gone", "gone-host", "DELETED", "org-1");
    gone.tags = vec!["site:chicago".into()];
    put_machine(app, tenant_id, gone).await;
}

async fn document_calls(app: &TestApp) -> u64 {
    let text = app
        .plain
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with("openframe_document_store_calls_total{"))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test]
async fn tags_are_defined_suggested_counted_renamed_and_deleted_across_devices() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    seed(&app, "acme").await;

    let site = data(
        &app,
        token,
        CREATE,
        json!({"key": "site", "entityType": "DEVICE", "description": " Office location ", "color": "#1F6"}),
    )
    .await;
    let site = &site["createTag"];
    assert_eq!(site["key"], "site");
    assert_eq!(site["description"], "Office location");
    assert_eq!(site["color"], "#11ff66", "colours are stored as #rrggbb");
    assert_eq!(site["entityType"], "DEVICE");
    assert_eq!(site["values"], json!(["chicago", "denver"]));
    let site_id = site["id"].as_str().unwrap().to_owned();
    data(
        &app,
        token,
        CREATE,
        json!({"key": "vip", "entityType": "device"}),
    )
    .await;
    data(
        &app,
        token,
        CREATE,
        json!({"key": "site", "entityType": "SCRIPT"}),
    )
    .await;

    // The same key twice for one entity type is a conflict; nothing is added.
    let (code, message) = error(
        &app,
        token,
        CREATE,
        json!({"key": "site", "entityType": "DEVICE"}),
    )
    .await;
    assert_eq!(code, "conflict");
    assert!(message.starts_with("key:"), "{message}");
    let all = data(&app, token, "{ tags { key entityType } }", json!({})).await;
    assert_eq!(
        all["tags"],
        json!([
            {"key": "site", "entityType": "DEVICE"},
            {"key": "site", "entityType": "SCRIPT"},
            {"key": "vip", "entityType": "DEVICE"},
        ])
    );
    let scripts = data(
        &app,
        token,
        "{ tags(entityType: \"SCRIPT\") { key } }",
        json!({}),
    )
    .await;
    assert_eq!(scripts["tags"], json!([{"key": "site"}]));

    // Value options count what the device list shows for the same filter.
    let options = data(
        &app,
        token,
        "{ tagValueOptions(tagKey: \"site\") { value label count } }",
        json!({}),
    )
    .await;
    assert_eq!(
        options["tagValueOptions"],
        json!([
            {"value": "site:chicago", "label": "chicago", "count": 15},
            {"value": "site:denver", "label": "denver", "count": 15},
        ])
    );
    let listed = data(
        &app,
        token,
        "{ devices(filter: {tagValues: [\"site:chicago\"]}) { filteredCount } }",
        json!({}),
    )
    .await;
    assert_eq!(listed["devices"]["filteredCount"], 15);

    let suggestions = data(
        &app,
        token,
        "{ keys: tagKeySuggestions(search: \"I\") { key } values: tagValueSuggestions(tagKey: \"site\", search: \"ver\", limit: 5) none: tagValueSuggestions(tagKey: \"nope\") }",
        json!({}),
    )
    .await;
    assert_eq!(
        suggestions["keys"],
        json!([{"key": "site"}, {"key": "vip"}])
    );
    assert_eq!(suggestions["values"], json!(["denver"]));
    assert_eq!(suggestions["none"], json!([]));

    // A device shows its tags with its own values.
    let device = data(
        &app,
        token,
        "{ device(machineId: \"m-03\") { tags { key values color } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        device["device"]["tags"],
        json!([
            {"key": "site", "values": ["denver"], "color": "#11ff66"},
            {"key": "vip", "values": [], "color": null},
        ])
    );

    // Renaming a device tag renames it on every device.
    let renamed = data(
        &app,
        token,
        "mutation($id: ID!) { updateTag(id: $id, key: \"location\", color: \"\") { key color description values } }",
        json!({"id": site_id}),
    )
    .await;
    assert_eq!(
        renamed["updateTag"],
        json!({"key": "location", "color": null, "description": "Office location", "values": ["chicago", "denver"]})
    );
    let stored = app
        .state
        .inventory
        .machine(&tenant("acme"), "m-03")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.tags, ["location:denver", "vip"]);
    let by_new_key = data(
        &app,
        token,
        "{ devices(filter: {tagKeys: [\"location\"]}) { filteredCount } old: devices(filter: {tagKeys: [\"site\"]}) { filteredCount } }",
        json!({}),
    )
    .await;
    assert_eq!(by_new_key["devices"]["filteredCount"], 30);
    assert_eq!(by_new_key["old"]["filteredCount"], 0);

    // Deleting it takes it off every device; deleting again says false.
    let deleted = data(
        &app,
        token,
        "mutation($id: ID!) { deleteTag(id: $id) }",
        json!({"id": site_id}),
    )
    .await;
    assert_eq!(deleted["deleteTag"], true);
    let stored = app
        .state
        .inventory
        .machine(&tenant("acme"), "m-03")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.tags, ["vip"]);
    let again = data(
        &app,
        token,
        "mutation($id: ID!) { deleteTag(id: $id) }",
        json!({"id": site_id}),
    )
    .await;
    assert_eq!(again["deleteTag"], false);
    let node = data(
        &app,
        token,
        "query($id: ID!) { node(id: $id) { id } }",
        json!({"id": site_id}),
    )
    .await;
    assert_eq!(node["node"], Value::Null);
}

#[tokio::test]
async fn bad_tag_input_is_refused_naming_the_argument_and_changes_nothing() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    let created = data(
        &app,
        token,
        CREATE,
        json!({"key": "site", "entityType": "DEVICE"}),
    )
    .await;
    let id = created["createTag"]["id"].as_str().unwrap().to_owned();

    for (variables, code, starts) in [
        (
            json!({"key": "bad key", "entityType": "DEVICE"}),
            "invalid_input",
            "key:",
        ),
        (
            json!({"key": "-x", "entityType": "DEVICE"}),
            "invalid_input",
            "key:",
        ),
        (
            json!({"key": "ok", "entityType": "USER"}),
            "invalid_input",
            "entityType:",
        ),
        (
            json!({"key": "ok", "entityType": "DEVICE", "color": "red"}),
            "invalid_input",
            "color:",
        ),
        (
            json!({"key": "ok", "entityType": "DEVICE", "description": "x".repeat(501)}),
            "invalid_input",
            "description:",
        ),
    ] {
        let (got, message) = error(&app, token, CREATE, variables.clone()).await;
        assert_eq!(got, code, "{variables}");
        assert!(message.starts_with(starts), "{variables}: {message}");
    }
    let (code, message) = error(
        &app,
        token,
        "mutation { updateTag(id: \"not-base64!\", key: \"x\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(code, "invalid_input");
    assert!(message.starts_with("id:"), "{message}");
    let (code, _) = error(
        &app,
        token,
        "mutation($id: ID!) { updateTag(id: $id, key: \"no way\") { id } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(code, "invalid_input");
    let (code, message) = error(
        &app,
        token,
        "{ tagKeySuggestions(limit: 0) { key } }",
        json!({}),
    )
    .await;
    assert_eq!(code, "invalid_input");
    assert!(message.starts_with("limit:"), "{message}");

    let tags = data(&app, token, "{ tags { key } }", json!({})).await;
    assert_eq!(
        tags["tags"],
        json!([{"key": "site"}]),
        "nothing was written"
    );
}

#[tokio::test]
async fn lists_cost_no_store_call_per_row() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    seed(&app, "acme").await;
    data(
        &app,
        token,
        CREATE,
        json!({"key": "site", "entityType": "DEVICE"}),
    )
    .await;
    for i in 0..5 {
        data(
            &app,
            token,
            "mutation($type: String!) { createEvent(input: {type: $type, data: \"{}\"}) { id } }",
            json!({"type": format!("E{i}")}),
        )
        .await;
    }
    let query = "query($n: Int) {
      devices(first: $n) { edges { node { hostname organization { name } tags { key values } } } }
      organizations(first: $n) { edges { node { name } } }
      events(first: $n) { edges { node { type data } } }
      tags { key values }
    }";
    // Warm: the first use of a tenant loads its catalogs.
    data(&app, token, query, json!({"n": 1})).await;

    let before = document_calls(&app).await;
    let one = data(&app, token, query, json!({"n": 1})).await;
    let after_one = document_calls(&app).await;
    let hundred = data(&app, token, query, json!({"n": 100})).await;
    let after_hundred = document_calls(&app).await;

    assert_eq!(one["devices"]["edges"].as_array().unwrap().len(), 1);
    assert_eq!(hundred["devices"]["edges"].as_array().unwrap().len(), 30);
    assert_eq!(hundred["events"]["edges"].as_array().unwrap().len(), 5);
    assert_eq!(
        hundred["devices"]["edges"][0]["node"]["organization"]["name"],
        "Clinic"
    );
    assert_eq!(
        after_hundred - after_one,
        after_one - before,
        "30 rows cost the same store calls as 1 (no query per row)"
    );
    assert_eq!(after_one - before, 0, "warm lists are served from memory");
}
