//! `/external-api/docs`: the external API's reference, rendered on the server from the same
//! OpenAPI document as `/external-api/api-docs`. One HTML page and one stylesheet, both in the
//! binary: no script, no font, no CDN, so it reads the same on an air-gapped site, and its
//! `Content-Security-Policy` lets the browser fetch nothing but the stylesheet from this host.

use std::fmt::Write as _;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::identity::http::escape_html;

/// Where the stylesheet is served; the page's only subresource.
pub(super) const STYLESHEET: &str = "/external-api/docs/docs.css";

/// The browser may load the stylesheet from this host and nothing else.
const POLICY: &str = "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

const CSS: &str = include_str!("docs.css");

/// `GET /external-api/docs` (public).
pub(super) async fn page() -> Response {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let html = PAGE.get_or_init(|| render(super::openapi::document()));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(POLICY),
            ),
        ],
        html.as_str(),
    )
        .into_response()
}

/// `GET /external-api/docs/docs.css` (public).
pub(super) async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        CSS,
    )
        .into_response()
}

/// Escaped text with `code` spans for backquoted parts (the document's descriptions are
/// Markdown; this is the part of it they use).
fn prose(text: &str) -> String {
    escape_html(text)
        .split('`')
        .enumerate()
        .map(|(index, part)| {
            if index % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                part.to_owned()
            }
        })
        .collect()
}

fn schema_name(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// A schema's type, as a line of HTML: references link to their section.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = escape_html(schema_name(reference));
        return format!("<a href=\"#schema-{name}\">{name}</a>");
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema[combinator].as_array() {
            let separator = if combinator == "allOf" { " & " } else { " | " };
            return parts
                .iter()
                .map(type_of)
                .collect::<Vec<_>>()
                .join(separator);
        }
    }
    let mut kinds: Vec<String> = match &schema["type"] {
        Value::String(kind) => vec![kind.clone()],
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => vec!["any".to_owned()],
    };
    for kind in &mut kinds {
        if kind == "array" {
            *kind = format!("array of {}", type_of(&schema["items"]));
        } else {
            *kind = escape_html(kind);
        }
    }
    let mut text = kinds.join(" | ");
    if let Some(format) = schema["format"].as_str() {
        let _ = write!(text, " ({})", escape_html(format));
    }
    text
}

/// The constraints of a schema, in words.
fn constraints(schema: &Value) -> String {
    let mut said = Vec::new();
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|value| format!("<code>{}</code>", escape_html(&plain(value))))
            .collect();
        said.push(format!("one of {}", values.join(", ")));
    }
    for (key, before, after) in [
        ("minimum", "at least ", ""),
        ("maximum", "at most ", ""),
        ("minLength", "at least ", " characters"),
        ("maxLength", "at most ", " characters"),
        ("minItems", "at least ", " items"),
        ("maxItems", "at most ", " items"),
    ] {
        if let Some(value) = schema.get(key) {
            said.push(format!("{before}{}{after}", escape_html(&plain(value))));
        }
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        said.push(format!("matches <code>{}</code>", escape_html(pattern)));
    }
    said.join("; ")
}

fn plain(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// The enum values a schema reference stands for, when it names an enum component.
fn referenced<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    let schema = if schema["type"] == "array" {
        &schema["items"]
    } else {
        schema
    };
    match schema["$ref"].as_str() {
        Some(reference) => &document["components"]["schemas"][schema_name(reference)],
        None => schema,
    }
}

fn render(document: &Value) -> String {
    let mut html = String::with_capacity(64 * 1024);
    let title = escape_html(document["info"]["title"].as_str().unwrap_or("API"));
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"{STYLESHEET}\"></head><body>\
         <header><h1>{title}</h1><p class=\"version\">OpenAPI {} · \
         <a href=\"/external-api/api-docs\">the document as JSON</a></p></header><main>",
        escape_html(document["openapi"].as_str().unwrap_or_default()),
    );
    let _ = write!(
        html,
        "<section id=\"overview\"><p>{}</p>",
        prose(document["info"]["description"].as_str().unwrap_or_default())
    );
    html.push_str("<h2 id=\"authentication\">Authentication</h2><dl>");
    if let Some(schemes) = document["components"]["securitySchemes"].as_object() {
        for (name, scheme) in schemes {
            let _ = write!(
                html,
                "<dt><code>{}</code></dt><dd>An API key in the <code>{}</code> header ({}). {}</dd>",
                escape_html(name),
                escape_html(scheme["name"].as_str().unwrap_or_default()),
                escape_html(scheme["in"].as_str().unwrap_or_default()),
                prose(scheme["description"].as_str().unwrap_or_default()),
            );
        }
    }
    html.push_str(
        "</dl><p>Every answer to a key carries its rate limits: <code>X-RateLimit-Limit-Minute</code>, \
         <code>X-RateLimit-Remaining-Minute</code> and the same for the hour and the day. A key over its \
         limit gets <code>429</code> with <code>Retry-After</code>.</p></section>",
    );

    // Contents, by tag.
    let tags: Vec<&Value> = document["tags"]
        .as_array()
        .map(|tags| tags.iter().collect())
        .unwrap_or_default();
    let mut operations: Vec<(String, &str, &str, &Value)> = Vec::new();
    if let Some(paths) = document["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                if let Some(operation) = item.get(method) {
                    let tag = operation["tags"][0].as_str().unwrap_or_default().to_owned();
                    operations.push((tag, method, path, operation));
                }
            }
        }
    }
    html.push_str("<nav aria-label=\"Contents\"><h2>Contents</h2><ul>");
    for tag in &tags {
        let name = tag["name"].as_str().unwrap_or_default();
        let _ = write!(
            html,
            "<li><a href=\"#tag-{0}\">{0}</a><ul>",
            escape_html(name)
        );
        for (_, method, path, operation) in operations.iter().filter(|op| op.0 == name) {
            let _ = write!(
                html,
                "<li><a href=\"#op-{}\"><span class=\"method {method}\">{}</span> {}</a></li>",
                escape_html(operation["operationId"].as_str().unwrap_or_default()),
                method.to_uppercase(),
                escape_html(path),
            );
        }
        html.push_str("</ul></li>");
    }
    html.push_str("<li><a href=\"#schemas\">Schemas</a></li></ul></nav>");

    for tag in &tags {
        let name = tag["name"].as_str().unwrap_or_default();
        let _ = write!(
            html,
            "<section id=\"tag-{0}\"><h2>{0}</h2><p>{1}</p>",
            escape_html(name),
            prose(tag["description"].as_str().unwrap_or_default())
        );
        for (_, method, path, operation) in operations.iter().filter(|op| op.0 == name) {
            render_operation(&mut html, document, method, path, operation);
        }
        html.push_str("</section>");
    }

    html.push_str("<section id=\"schemas\"><h2>Schemas</h2>");
    if let Some(schemas) = document["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            render_schema(&mut html, name, schema);
        }
    }
    html.push_str("</section></main></body></html>");
    html
}

fn render_operation(html: &mut String, document: &Value, method: &str, path: &str, op: &Value) {
    let scopes: Vec<String> = op["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|requirement| requirement.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .map(|scope| format!("<code>{}</code>", escape_html(scope)))
        .collect();
    let _ = write!(
        html,
        "<article class=\"operation\" id=\"op-{}\"><h3><span class=\"method {method}\">{}</span> \
         <code>{}</code></h3><p class=\"scope\">Scope: {}</p>",
        escape_html(op["operationId"].as_str().unwrap_or_default()),
        method.to_uppercase(),
        escape_html(path),
        if scopes.is_empty() {
            "any key".to_owned()
        } else {
            scopes.join(", ")
        },
    );
    for key in ["summary", "description"] {
        if let Some(text) = op[key].as_str() {
            let _ = write!(html, "<p>{}</p>", prose(text));
        }
    }
    if let Some(parameters) = op["parameters"].as_array().filter(|list| !list.is_empty()) {
        html.push_str(
            "<table><caption>Parameters</caption><thead><tr><th scope=\"col\">Name</th>\
             <th scope=\"col\">In</th><th scope=\"col\">Type</th><th scope=\"col\">Rules</th>\
             <th scope=\"col\">Description</th></tr></thead><tbody>",
        );
        for parameter in parameters {
            let schema = &parameter["schema"];
            let mut rules = constraints(referenced(document, schema));
            let own = constraints(schema);
            if !own.is_empty() && own != rules {
                rules = if rules.is_empty() {
                    own
                } else {
                    format!("{rules}; {own}")
                };
            }
            if parameter["required"] == true {
                rules = if rules.is_empty() {
                    "required".to_owned()
                } else {
                    format!("required; {rules}")
                };
            }
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{rules}</td><td>{}</td></tr>",
                escape_html(parameter["name"].as_str().unwrap_or_default()),
                escape_html(parameter["in"].as_str().unwrap_or_default()),
                type_of(schema),
                prose(parameter["description"].as_str().unwrap_or_default()),
            );
        }
        html.push_str("</tbody></table>");
    }
    if let Some(body) = op["requestBody"]["content"]["application/json"]["schema"].as_object() {
        let _ = write!(
            html,
            "<p>Body (<code>application/json</code>): {}</p>",
            type_of(&Value::Object(body.clone()))
        );
    }
    html.push_str(
        "<table><caption>Answers</caption><thead><tr><th scope=\"col\">Status</th>\
         <th scope=\"col\">Meaning</th><th scope=\"col\">Body</th></tr></thead><tbody>",
    );
    if let Some(responses) = op["responses"].as_object() {
        for (status, response) in responses {
            let body = response["content"]["application/json"]["schema"]
                .as_object()
                .map(|schema| type_of(&Value::Object(schema.clone())))
                .unwrap_or_default();
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{body}</td></tr>",
                escape_html(status),
                prose(response["description"].as_str().unwrap_or_default()),
            );
        }
    }
    html.push_str("</tbody></table></article>");
}

fn render_schema(html: &mut String, name: &str, schema: &Value) {
    let name = escape_html(name);
    let _ = write!(
        html,
        "<article class=\"schema\" id=\"schema-{name}\"><h3>{name}</h3>"
    );
    if let Some(text) = schema["description"].as_str() {
        let _ = write!(html, "<p>{}</p>", prose(text));
    }
    let parts: Vec<&Value> = match schema["allOf"].as_array() {
        Some(parts) => parts.iter().collect(),
        None => vec![schema],
    };
    for part in parts {
        if part.get("$ref").is_some() {
            let _ = write!(html, "<p>Every field of {}, and:</p>", type_of(part));
            continue;
        }
        let Some(properties) = part["properties"].as_object() else {
            let rules = constraints(part);
            let _ = write!(html, "<p>{}{}</p>", type_of(part), {
                if rules.is_empty() {
                    String::new()
                } else {
                    format!(": {rules}")
                }
            });
            continue;
        };
        let required: Vec<&str> = part["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        html.push_str(
            "<table><thead><tr><th scope=\"col\">Field</th><th scope=\"col\">Type</th>\
             <th scope=\"col\">Rules</th><th scope=\"col\">Description</th></tr></thead><tbody>",
        );
        for (field, property) in properties {
            let mut rules = constraints(property);
            if required.contains(&field.as_str()) {
                rules = if rules.is_empty() {
                    "required".to_owned()
                } else {
                    format!("required; {rules}")
                };
            }
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{rules}</td><td>{}</td></tr>",
                escape_html(field),
                type_of(property),
                prose(property["description"].as_str().unwrap_or_default()),
            );
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</article>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_link_their_schemas_and_text_is_escaped() {
        let schema = serde_json::json!({"type": ["array", "null"], "items": {"$ref": "#/components/schemas/Machine"}});
        assert_eq!(
            type_of(&schema),
            "array of <a href=\"#schema-Machine\">Machine</a> | null"
        );
        assert_eq!(prose("a `<b>` & c"), "a <code>&lt;b&gt;</code> &amp; c");
        let rules = constraints(&serde_json::json!({"enum": ["A", "B"], "maximum": 100}));
        assert_eq!(rules, "one of <code>A</code>, <code>B</code>; at most 100");
    }
}
