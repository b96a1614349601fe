//! The technician REST API under `/api`, driven over TLS with tokens from the real sign-in
//! flow: users, organizations, a device's status, SSO providers, the registration secret's
//! OpenFrame paths, and the audit trail that records every change (exported as NDJSON and
//! forwarded to a syslog collector).

mod audit;
mod isolation;
mod organizations;
pub(crate) mod tools;
mod users;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::TestApp;

/// Sends `method path` with the bearer token and an optional JSON body: (status, JSON body or
/// Null when empty).
pub(crate) async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method, app.https_url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, json)
}
