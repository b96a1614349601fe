//! Generic events: create, update, paging both ways, filters with counts, search, lookups and
//! bad input; and integrated tools without their credentials.

use serde_json::{Value, json};

use super::support::{data, error};
use crate::gateway::support::{tenant, two_tenants};
use crate::helpers::spawn_app;

const EVENTS: &str = "query($first: Int, $after: String, $last: Int, $before: String, $filter: EventFilterInput, $search: String, $sort: EventSortInput) {
  events(first: $first, after: $after, last: $last, before: $before, filter: $filter, search: $search, sort: $sort) {
    filteredCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id eventId type data userId timestamp } }
  }
}";

const CREATE: &str = "mutation($input: CreateEventInput!) { createEvent(input: $input) { id eventId type data userId timestamp } }";

fn types(page: &Value) -> Vec<String> {
    page["events"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["data"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn events_are_created_paged_both_ways_filtered_and_updated() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    let me = data(&app, token, "{ me { id } }", json!({})).await;
    let my_id = me["me"]["id"].as_str().unwrap().to_owned();

    // 25 events: data n-00 … n-24; every fifth by the integration "psa", type BACKUP or PATCH.
    for i in 0..25 {
        let kind = if i % 2 == 0 {
            "BACKUP_COMPLETED"
        } else {
            "PATCH_APPLIED"
        };
        let mut input = json!({"type": kind, "data": format!("n-{i:02}")});
        if i % 5 == 0 {
            input["userId"] = json!("psa");
        }
        let created = data(&app, token, CREATE, json!({"input": input})).await;
        assert_eq!(created["createEvent"]["type"], kind);
    }

    // Forward in pages of 10 (oldest first), then backward from the end: the same 25.
    let mut forward = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = data(&app, token, EVENTS, json!({"first": 10, "after": after})).await;
        assert_eq!(page["events"]["filteredCount"], 25);
        forward.extend(types(&page));
        if !page["events"]["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = page["events"]["pageInfo"]["endCursor"].clone();
    }
    let expected: Vec<String> = (0..25).map(|i| format!("n-{i:02}")).collect();
    assert_eq!(forward, expected);
    let mut backward = Vec::new();
    let mut before = Value::Null;
    loop {
        let page = data(&app, token, EVENTS, json!({"last": 10, "before": before})).await;
        let mut rows = types(&page);
        rows.extend(backward);
        backward = rows;
        if !page["events"]["pageInfo"]["hasPreviousPage"]
            .as_bool()
            .unwrap()
        {
            break;
        }
        before = page["events"]["pageInfo"]["startCursor"].clone();
    }
    assert_eq!(backward, expected);

    // Newest first by sort; filters and search; counts that match the list.
    let newest = data(
        &app,
        token,
        EVENTS,
        json!({"first": 2, "sort": {"field": "TIMESTAMP", "direction": "DESC"}}),
    )
    .await;
    assert_eq!(types(&newest), ["n-24", "n-23"]);
    let psa = data(
        &app,
        token,
        EVENTS,
        json!({"filter": {"userIds": ["psa"], "eventTypes": ["BACKUP_COMPLETED"]}}),
    )
    .await;
    assert_eq!(types(&psa), ["n-00", "n-10", "n-20"]);
    let searched = data(&app, token, EVENTS, json!({"search": "N-1"})).await;
    assert_eq!(searched["events"]["filteredCount"], 10);
    let facets = data(
        &app,
        token,
        "{ eventFilters { filteredCount userIds { value count } eventTypes { value count } } }",
        json!({}),
    )
    .await;
    let mut users = vec![
        json!({"value": my_id, "count": 20}),
        json!({"value": "psa", "count": 5}),
    ];
    users.sort_by(|a, b| a["value"].as_str().cmp(&b["value"].as_str()));
    assert_eq!(
        facets["eventFilters"],
        json!({
            "filteredCount": 25,
            "userIds": users,
            "eventTypes": [{"value": "BACKUP_COMPLETED", "count": 13}, {"value": "PATCH_APPLIED", "count": 12}],
        })
    );
    let today = &newest["events"]["edges"][0]["node"]["timestamp"]
        .as_str()
        .unwrap()[..10];
    let dated = data(
        &app,
        token,
        EVENTS,
        json!({"filter": {"startDate": today, "endDate": today}}),
    )
    .await;
    assert_eq!(dated["events"]["filteredCount"], 25);
    let empty = data(
        &app,
        token,
        EVENTS,
        json!({"filter": {"startDate": "2001-01-01", "endDate": "2001-01-02"}}),
    )
    .await;
    assert_eq!(empty["events"]["filteredCount"], 0);
    assert_eq!(empty["events"]["edges"], json!([]));
    assert_eq!(empty["events"]["pageInfo"]["hasNextPage"], false);

    // Update: the fields given change, the rest stay; the change is stored.
    let first = &forward_node(&app, token).await;
    let id = first["id"].as_str().unwrap();
    let updated = data(
        &app,
        token,
        "mutation($id: ID!) { updateEvent(id: $id, input: {data: \"edited\"}) { type data userId } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(
        updated["updateEvent"],
        json!({"type": "BACKUP_COMPLETED", "data": "edited", "userId": "psa"})
    );
    let stored = app
        .state
        .events
        .get(&tenant("acme"), first["eventId"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.data, "edited");
    let by_id = data(
        &app,
        token,
        "query($id: ID!) { eventById(id: $id) { data } node(id: $id) { ... on Event { type } } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(by_id["eventById"]["data"], "edited");
    assert_eq!(by_id["node"]["type"], "BACKUP_COMPLETED");
}

async fn forward_node(app: &crate::helpers::TestApp, token: &str) -> Value {
    let page = data(app, token, EVENTS, json!({"first": 1})).await;
    page["events"]["edges"][0]["node"].clone()
}

#[tokio::test]
async fn bad_event_input_is_refused_naming_the_argument_and_nothing_is_written() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    for (input, starts) in [
        (json!({"type": "has space"}), "type:"),
        (json!({"type": ""}), "type:"),
        (
            json!({"type": "OK", "data": "x".repeat(64 * 1024 + 1)}),
            "data:",
        ),
        (json!({"type": "OK", "userId": " "}), "userId:"),
    ] {
        let (code, message) = error(&app, token, CREATE, json!({"input": input})).await;
        assert_eq!(code, "invalid_input");
        assert!(message.starts_with(starts), "{message}");
    }
    for (variables, starts) in [
        (json!({"first": 0}), "first:"),
        (json!({"first": 101}), "first:"),
        (json!({"after": "%%%"}), "after:"),
        (
            json!({"filter": {"startDate": "27/11/2026"}}),
            "filter.startDate:",
        ),
        (
            json!({"filter": {"startDate": "2026-11-27", "endDate": "2026-11-01"}}),
            "filter.endDate:",
        ),
    ] {
        let (code, message) = error(&app, token, EVENTS, variables.clone()).await;
        assert_eq!(code, "invalid_input", "{variables}");
        assert!(message.starts_with(starts), "{variables}: {message}");
    }
    let (code, _) = error(
        &app,
        token,
        "mutation { updateEvent(id: \"RXZlbnQ6bm9uZQ==\", input: {data: \"x\"}) { id } }",
        json!({}),
    )
    .await;
    assert_eq!(code, "not_found");
    let listed = data(&app, token, EVENTS, json!({})).await;
    assert_eq!(listed["events"]["filteredCount"], 0, "nothing was written");
}

#[tokio::test]
async fn integrated_tools_are_listed_filtered_and_never_show_credentials() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    let upstream = crate::gateway::support::upstream().await;
    crate::gateway::support::register_tool(&app, "acme", &upstream).await;

    let answer = crate::graphql::support::gql(
        &app,
        token,
        "{ integratedTools { tools { id key name toolType type category platformCategory enabled hasCredentials healthCheckEndpoint toolUrls { url port type } } } toolFilters { types categories platformCategories } }",
        json!({}),
    )
    .await;
    assert!(answer.get("errors").is_none(), "{answer}");
    let tools = &answer["data"]["integratedTools"]["tools"];
    assert_eq!(tools.as_array().unwrap().len(), 1);
    let tool = &tools[0];
    assert_eq!(tool["key"], "fleet");
    assert_eq!(tool["name"], "Fleet MDM");
    assert_eq!(tool["toolType"], "FLEET_MDM");
    assert_eq!(tool["hasCredentials"], true);
    assert_eq!(tool["toolUrls"][0]["type"], "API");
    assert_eq!(tool["toolUrls"][1]["type"], "WS");
    assert!(tool["toolUrls"][0]["port"].as_i64().unwrap() > 0);
    assert!(
        !answer
            .to_string()
            .contains(crate::gateway::support::TOOL_SECRET),
        "no answer carries the credential: {answer}"
    );
    assert_eq!(
        answer["data"]["toolFilters"],
        json!({"types": ["FLEET_MDM"], "categories": ["Device Management"], "platformCategories": ["Integrated Tool"]})
    );
    let filtered = data(
        &app,
        token,
        "{ none: integratedTools(filter: {type: \"MESHCENTRAL\"}) { tools { key } } found: integratedTools(search: \"FLEET\", filter: {enabled: true}) { tools { key } } }",
        json!({}),
    )
    .await;
    assert_eq!(filtered["none"]["tools"], json!([]));
    assert_eq!(filtered["found"]["tools"], json!([{"key": "fleet"}]));
    let id = tool["id"].as_str().unwrap();
    let node = data(
        &app,
        token,
        "query($id: ID!) { node(id: $id) { ... on IntegratedTool { key hasCredentials } } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(
        node["node"],
        json!({"key": "fleet", "hasCredentials": true})
    );
}
