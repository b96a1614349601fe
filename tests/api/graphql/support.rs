//! What the GraphQL tests share: a query runner and seeded inventories.

use openframe::inventory::{Machine, Organization};
use serde_json::{Value, json};

use crate::gateway::support::tenant;
use crate::helpers::TestApp;

/// POSTs a query with a bearer token; the answer's JSON (which must be a 200).
pub(crate) async fn gql(app: &TestApp, token: &str, query: &str, variables: Value) -> Value {
    let response = app
        .client
        .post(app.https_url("/api/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "a GraphQL answer is a 200");
    response.json().await.unwrap()
}

/// The `data` of an answer that must have no errors.
pub(crate) async fn data(app: &TestApp, token: &str, query: &str, variables: Value) -> Value {
    let answer = gql(app, token, query, variables).await;
    assert!(
        answer.get("errors").is_none(),
        "unexpected errors: {answer}"
    );
    answer["data"].clone()
}

/// The first error of an answer that must have one: (extensions.code, message).
pub(crate) async fn error(
    app: &TestApp,
    token: &str,
    query: &str,
    variables: Value,
) -> (String, String) {
    let answer = gql(app, token, query, variables).await;
    let first = &answer["errors"][0];
    assert!(first.is_object(), "expected an error: {answer}");
    (
        first["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        first["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A machine of `org` with the given hostname and status.
pub(crate) fn machine(id: &str, hostname: &str, status: &str, org: &str) -> Machine {
    Machine {
        machine_id: id.into(),
        hostname: hostname.into(),
        organization_id: Some(org.into()),
        status: status.into(),
        device_type: "DESKTOP".into(),
        os_type: "WINDOWS".into(),
        ..Machine::default()
    }
}

pub(crate) async fn put_org(app: &TestApp, tenant_id: &str, id: &str, name: &str) {
    app.state
        .inventory
        .put_organization(&tenant(tenant_id), Organization::named(id, name))
        .await
        .unwrap();
}

pub(crate) async fn put_machine(app: &TestApp, tenant_id: &str, machine: Machine) {
    app.state
        .inventory
        .put_machine(&tenant(tenant_id), machine)
        .await
        .unwrap();
}
