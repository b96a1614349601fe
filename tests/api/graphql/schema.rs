//! The endpoint itself: who may call it, bad input with stable codes, limits, GraphiQL and
//! introspection switches.

use serde_json::json;

use super::support::{error, gql};
use crate::gateway::support::{agent_token, two_tenants};
use crate::helpers::{spawn_app, spawn_with, test_config};
use crate::identity::support::api_error;

#[tokio::test]
async fn only_administrators_reach_graphql() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let url = app.https_url("/api/graphql");
    let body = json!({"query": "{ me { email roles tenantId } }"});

    let anonymous = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(api_error(anonymous).await.1, "unauthorized");
    let agent = agent_token(&app, "acme", "agent-host").await;
    let as_agent = app
        .client
        .post(&url)
        .bearer_auth(&agent)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(api_error(as_agent).await.1, "forbidden");

    let me = gql(
        &app,
        &tenants.admin_a,
        "{ me { email roles tenantId displayName } }",
        json!({}),
    )
    .await;
    assert_eq!(
        me["data"]["me"],
        json!({"email": "owner@acme.example.com", "roles": ["ADMIN", "OWNER"], "tenantId": "acme", "displayName": "owner@acme.example.com"})
    );

    // A body that is not a GraphQL request is the REST error table's 400.
    let garbage = app
        .client
        .post(&url)
        .bearer_auth(&tenants.admin_a)
        .body("{nope")
        .send()
        .await
        .unwrap();
    let (status, code, message) = api_error(garbage).await;
    assert_eq!((status.as_u16(), code.as_str()), (400, "invalid_input"));
    assert!(message.contains("GraphQL request"), "{message}");
    // GraphiQL is off unless configured.
    let page = app
        .client
        .get(&url)
        .bearer_auth(&tenants.admin_a)
        .send()
        .await
        .unwrap();
    let (status, code, message) = api_error(page).await;
    assert_eq!((status.as_u16(), code.as_str()), (404, "not_found"));
    assert!(message.contains("graphiql"), "{message}");
}

#[tokio::test]
async fn bad_arguments_get_codes_and_name_the_argument() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    for (query, argument) in [
        ("{ devices(first: 0) { filteredCount } }", "first"),
        ("{ devices(first: 101) { filteredCount } }", "first"),
        ("{ devices(last: 500) { filteredCount } }", "last"),
        ("{ organizations(first: -1) { filteredCount } }", "first"),
        (
            "{ devices(first: 5, last: 5) { filteredCount } }",
            "first, last",
        ),
        (
            "{ devices(after: \"%%%not-base64\") { filteredCount } }",
            "after",
        ),
        (
            "{ organizations(before: \"***\") { filteredCount } }",
            "before",
        ),
        ("{ deviceById(id: \"not-a-global-id\") { id } }", "id"),
        ("{ node(id: \"bm9jb2xvbg==\") { id } }", "id"),
        (
            "{ devices(sort: {field: \"password\"}) { filteredCount } }",
            "sort.field",
        ),
        (
            "{ devices(filter: {osTypes: [\"AMIGA\"]}) { filteredCount } }",
            "filter.osTypes",
        ),
        (
            "{ organizations(filter: {status: \"LOST\"}) { filteredCount } }",
            "filter.status",
        ),
    ] {
        let (code, message) = error(&app, token, query, json!({})).await;
        assert_eq!(code, "invalid_input", "{query}: {message}");
        assert!(message.starts_with(argument), "{query}: {message}");
    }
    // What the engine refuses (unknown fields, enum values) carries the same code.
    for query in [
        "{ devices { nosuchfield } }",
        "{ devices(filter: {statuses: [SLEEPING]}) { filteredCount } }",
        "{ devices(",
    ] {
        let (code, message) = error(&app, token, query, json!({})).await;
        assert_eq!(code, "invalid_input", "{query}: {message}");
    }
}

#[tokio::test]
async fn deep_and_expensive_queries_are_refused() {
    let app = spawn_app().await;
    let tenants = two_tenants(&app).await;
    let token = &tenants.admin_a;
    // Depth: introspection nests as deep as a client likes.
    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType { ".repeat(12),
        "} ".repeat(12)
    );
    let (code, message) = error(&app, token, &deep, json!({})).await;
    assert_eq!(code, "invalid_input");
    assert!(
        message.to_lowercase().contains("nested too deep"),
        "{message}"
    );
    // Complexity: three full pages of devices with every field is too much work for one query.
    let fields = "id machineId hostname displayName nickname status type osType organizationId ip macAddress osUuid agentVersion osVersion osBuild serialNumber manufacturer model timezone lastSeen registeredAt tagKeyValues organization { id name }";
    let expensive = format!(
        "{{ a: devices(first: 100) {{ edges {{ node {{ {fields} }} }} }} b: devices(first: 100) {{ edges {{ node {{ {fields} }} }} }} c: devices(first: 100) {{ edges {{ node {{ {fields} }} }} }} }}"
    );
    let (code, message) = error(&app, token, &expensive, json!({})).await;
    assert_eq!(code, "invalid_input");
    assert!(message.to_lowercase().contains("complex"), "{message}");
    // One such page is fine.
    let one = format!("{{ devices(first: 100) {{ edges {{ node {{ {fields} }} }} }} }}");
    let answer = gql(&app, token, &one, json!({})).await;
    assert!(answer.get("errors").is_none(), "{answer}");
}

#[tokio::test]
async fn graphiql_and_introspection_follow_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.api.graphiql = true;
    config.api.introspection = false;
    let app = spawn_with(config).await;
    let tenants = two_tenants(&app).await;
    let page = app
        .client
        .get(app.https_url("/api/graphql"))
        .bearer_auth(&tenants.admin_a)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("/api/graphql"));
    let answer = gql(
        &app,
        &tenants.admin_a,
        "{ __schema { queryType { name } } }",
        json!({}),
    )
    .await;
    assert_eq!(answer["data"], serde_json::Value::Null, "{answer}");
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "forbidden",
        "{answer}"
    );
    let message = answer["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("introspection"), "{message}");
    // Hidden in a fragment, or asking for one type, changes nothing.
    for query in [
        "query { ...f } fragment f on Query { __type(name: \"Machine\") { name } }",
        "{ me { email } __typename ... on Query { __schema { types { name } } } }",
    ] {
        let answer = gql(&app, &tenants.admin_a, query, json!({})).await;
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], "forbidden",
            "{query}: {answer}"
        );
    }
    // Ordinary queries are unaffected.
    let me = gql(&app, &tenants.admin_a, "{ me { tenantId } }", json!({})).await;
    assert_eq!(me["data"]["me"]["tenantId"], "acme");
}
