//! The public API for integrators (`/external-api/api/v1`) with API keys and their scopes.

mod devices;
mod docs;
mod events;
mod isolation;
mod logs;
mod scopes;
mod spec;
mod tools;
mod webhooks;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

pub(crate) const V1: &str = "/external-api/api/v1";

/// The external API's own OpenAPI document, as the appliance serves it.
pub(crate) async fn api_document(app: &TestApp) -> Value {
    app.client
        .get(app.https_url("/external-api/api-docs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `method path` with an API key; the status and the JSON answer.
pub(crate) async fn with_key(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method, app.https_url(&format!("{V1}{path}")))
        .header("x-api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Each `GET path` is refused with 400 `invalid_input` and a message that starts with the
/// parameter at fault.
pub(crate) async fn refuses_naming(app: &TestApp, key: &str, cases: &[(&str, &str)]) {
    for (path, parameter) in cases {
        let (status, error) = with_key(app, key, Method::GET, path, None).await;
        assert_eq!(
            (status, error["code"].clone()),
            (400, json!("invalid_input")),
            "{path}: {error}"
        );
        assert!(
            error["message"].as_str().unwrap().starts_with(parameter),
            "{path}: {error}"
        );
    }
}

/// One text field of each row of a list answer (`{devices: [...]}` and the like), in order.
pub(crate) fn listed<'a>(answer: &'a Value, list: &str, field: &str) -> Vec<&'a str> {
    answer[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {answer}"))
        .iter()
        .map(|row| {
            row[field]
                .as_str()
                .unwrap_or_else(|| panic!("no {field} in {row}"))
        })
        .collect()
}
