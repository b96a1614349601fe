//! The external API's OpenAPI document and its reference page: public, generated from the
//! handlers, and the page renders without a request leaving the host.

use serde_json::Value;

use crate::helpers::spawn_app;

/// Every URL the page could make a browser fetch or follow: attribute values of `src`, `href`,
/// `action`, `srcset`, `poster` and `data`, and `url(...)` / `@import` in its stylesheet.
fn urls_in(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=", "href=", "action=", "srcset=", "poster=", "data="] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            let quote = rest.chars().next().unwrap();
            assert!(
                quote == '"' || quote == '\'',
                "an unquoted {attribute} in the page"
            );
            let end = rest[1..].find(quote).unwrap();
            found.push(rest[1..=end].to_owned());
        }
    }
    found
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_the_docs_page_needs_nothing_from_elsewhere() {
    let app = spawn_app().await;

    // The document: public, OpenAPI 3.1, with the key scheme and every resource.
    let response = app
        .client
        .get(app.https_url("/external-api/api-docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(
        document["components"]["securitySchemes"]["ApiKeyAuth"],
        serde_json::json!({"type": "apiKey", "in": "header", "name": "X-API-Key",
                           "description": "An API key `ak_{keyId}.sk_{secret}`, created by an administrator"})
    );
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/external-api/api/v1/devices",
        "/external-api/api/v1/devices/{machineId}/nickname",
        "/external-api/api/v1/organizations/by-organization-id/{organizationId}",
        "/external-api/api/v1/logs/details",
        "/external-api/api/v1/events/{id}",
        "/external-api/api/v1/tools/filters",
        "/external-api/api/v1/webhooks/{id}/deliveries",
    ] {
        assert!(paths.contains_key(path), "{path} is not in the document");
    }
    // Each operation names its scope, and shares the error answers.
    let list = &paths["/external-api/api/v1/devices"]["get"];
    assert_eq!(
        list["security"],
        serde_json::json!([{"ApiKeyAuth": ["devices:read"]}])
    );
    for status in ["400", "401", "403", "429", "503"] {
        assert_eq!(
            list["responses"][status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error",
            "{status}"
        );
    }
    assert!(list["responses"]["200"]["headers"]["X-RateLimit-Remaining-Minute"].is_object());

    // The page: HTML with a policy that lets the browser load only the stylesheet, from here.
    let response = app
        .client
        .get(app.https_url("/external-api/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.starts_with("default-src 'none'; style-src 'self';"),
        "{policy}"
    );
    let html = response.text().await.unwrap();
    assert!(!html.contains("<script"), "the page runs no script");
    assert!(!html.contains("<img") && !html.contains("<iframe"));
    let urls = urls_in(&html);
    assert!(urls.len() > 40, "{urls:?}");
    for url in &urls {
        assert!(
            url.starts_with('#') || (url.starts_with('/') && !url.starts_with("//")),
            "{url} would leave the page's host"
        );
    }
    // Every same-host URL it names is served; every anchor it links to exists.
    for url in urls.iter().filter(|url| url.starts_with('/')) {
        let answer = app.client.get(app.https_url(url)).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{url}");
        if url.ends_with(".css") {
            assert_eq!(answer.headers()["content-type"], "text/css; charset=utf-8");
            let css = answer.text().await.unwrap();
            assert!(!css.contains("url(") && !css.contains("@import"), "{css}");
            assert!(css.contains("prefers-color-scheme: dark"));
        }
    }
    for anchor in urls.iter().filter_map(|url| url.strip_prefix('#')) {
        assert!(
            html.contains(&format!("id=\"{anchor}\"")),
            "#{anchor} points nowhere"
        );
    }
    // What an integrator needs first: the key header, the scopes, the operations.
    for text in [
        "X-API-Key",
        "ApiKeyAuth",
        "<code>devices:read</code>",
        "/external-api/api/v1/logs/details",
        "id=\"schema-Error\"",
    ] {
        assert!(html.contains(text), "the page lacks {text}");
    }
}
