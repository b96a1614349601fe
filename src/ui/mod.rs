//! The admin console: pages for technicians, served from the templates and assets of the
//! top-level `ui/` folder, which are compiled into the binary (no CDN, no JavaScript build).
//!
//! Each page is rendered here: the layout (navigation, the signed-in user, the page's heading
//! and skeleton) comes from `ui/templates/`, so a page shows at once and without a flash of
//! someone else's session. Its data then comes from the same technician API every client
//! uses (`/api/graphql`, `/api/…`), through the page's own small script in `ui/assets/pages/`;
//! the console therefore holds no privilege the API does not check, and no tenant filter of
//! its own.
//!
//! A page needs a verified administrator's `access_token` cookie. Without one (never signed
//! in, signed out, or the session expired) it redirects to `/login?next=<the page>`, which
//! signs in (email first, then the tenant's own sign-in page) and comes back. Assets are
//! public: they hold nothing but code and style.

mod assets;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::domain::Role;
use crate::gateway::auth::{TokenSource, Who};
use crate::identity::http::{cookie, escape_html, no_store};
use crate::startup::AppState;

/// One page of the console.
#[derive(Debug)]
struct Page {
    path: &'static str,
    title: &'static str,
    /// The navigation entry it belongs to (`aria-current` there).
    section: &'static str,
    /// The skeleton inside `<main>`.
    body: &'static str,
    /// Its script, under `/assets/pages/`.
    script: &'static str,
}

macro_rules! template {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/templates/", $name))
    };
}

const LAYOUT: &str = template!("layout.html");
const LOGIN: &str = template!("login.html");

const PAGES: &[Page] = &[
    Page {
        path: "/",
        title: "Dashboard",
        section: "dashboard",
        body: template!("dashboard.html"),
        script: "dashboard.js",
    },
    Page {
        path: "/incidents",
        title: "Incidents",
        section: "incidents",
        body: template!("incidents.html"),
        script: "incidents.js",
    },
    Page {
        path: "/notifications",
        title: "Notifications",
        section: "notifications",
        body: template!("notifications.html"),
        script: "notifications.js",
    },
    Page {
        path: "/customers",
        title: "Customers",
        section: "customers",
        body: template!("customers.html"),
        script: "customers.js",
    },
    Page {
        path: "/devices",
        title: "Devices",
        section: "devices",
        body: template!("devices.html"),
        script: "devices.js",
    },
    Page {
        path: "/devices/{machine_id}",
        title: "Device",
        section: "devices",
        body: template!("device.html"),
        script: "device.js",
    },
    Page {
        path: "/logs",
        title: "Logs",
        section: "logs",
        body: template!("logs.html"),
        script: "logs.js",
    },
    Page {
        path: "/scripts",
        title: "Scripts",
        section: "scripts",
        body: template!("scripts.html"),
        script: "scripts.js",
    },
    Page {
        path: "/integrations",
        title: "Tools",
        section: "integrations",
        body: template!("integrations.html"),
        script: "integrations.js",
    },
    Page {
        path: "/settings/api-keys",
        title: "API keys",
        section: "api-keys",
        body: template!("api-keys.html"),
        script: "api-keys.js",
    },
    Page {
        path: "/settings/users",
        title: "Users and invitations",
        section: "users",
        body: template!("users.html"),
        script: "users.js",
    },
    Page {
        path: "/settings/agents",
        title: "Agent install",
        section: "agents",
        body: template!("agents.html"),
        script: "agents.js",
    },
    Page {
        path: "/settings/audit",
        title: "Audit trail",
        section: "audit",
        body: template!("audit.html"),
        script: "audit.js",
    },
    Page {
        path: "/settings/approvals",
        title: "Assistant approvals",
        section: "approvals",
        body: template!("approvals.html"),
        script: "approvals.js",
    },
    Page {
        path: "/settings/detection",
        title: "Detection",
        section: "detection",
        body: template!("detection.html"),
        script: "detection.js",
    },
    Page {
        path: "/settings",
        title: "Settings",
        section: "settings",
        body: template!("settings.html"),
        script: "settings.js",
    },
];

pub fn router() -> Router<AppState> {
    let mut router = Router::new()
        .route("/login", get(login))
        .route("/assets/{*path}", get(assets::serve));
    for page in PAGES {
        router = router.route(
            page.path,
            get(
                move |State(state): State<AppState>, request: Request| async move {
                    render(&state, request.headers(), request.uri(), page).await
                },
            ),
        );
    }
    router
}

/// Who a page is for: a verified administrator of a tenant.
#[derive(Debug)]
struct Session {
    email: String,
    tenant: String,
}

/// The administrator the request's `access_token` cookie belongs to, if it is valid now.
async fn session(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let token = cookie(headers, "access_token")?;
    let principal = state
        .gateway
        .tokens
        .verify(&state.identity, &token, TokenSource::Cookie)
        .await
        .ok()?;
    match &principal.who {
        Who::User { email, roles, .. } if roles.contains(&Role::Admin) => Some(Session {
            email: email.clone(),
            tenant: principal.tenant.as_str().to_owned(),
        }),
        _ => None,
    }
}

async fn render(
    state: &AppState,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    page: &Page,
) -> Response {
    let Some(session) = session(state, headers).await else {
        let back = uri.path_and_query().map_or("/", |target| target.as_str());
        let login = format!(
            "/login?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("next", back)
                .finish()
        );
        return redirect(&login);
    };
    let current = format!("data-nav=\"{}\"", page.section);
    let layout = LAYOUT.replacen(&current, &format!("{current} aria-current=\"page\""), 1);
    let html = fill(
        &layout,
        &[
            ("title", &escape_html(page.title)),
            ("section", page.section),
            ("script", page.script),
            ("email", &escape_html(&session.email)),
            ("tenant", &escape_html(&session.tenant)),
            ("version", env!("CARGO_PKG_VERSION")),
            ("main", page.body),
        ],
    );
    html_response(StatusCode::OK, html)
}

/// `GET /login?next=`: email first, then the tenant's own sign-in page. Open to anyone.
async fn login() -> Response {
    let html = fill(LOGIN, &[("version", env!("CARGO_PKG_VERSION"))]);
    html_response(StatusCode::OK, html)
}

/// `{{name}}` placeholders of `template` replaced by their (already escaped) values, in one
/// pass: a value is never searched for placeholders itself (an email may hold `{{main}}`).
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut html = String::with_capacity(template.len() + 4096);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        html.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let known = after.find("}}").and_then(|end| {
            let name = &after[..end];
            values
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, value)| (end, *value))
        });
        match known {
            Some((end, value)) => {
                html.push_str(value);
                rest = &after[end + 2..];
            }
            None => {
                html.push_str("{{");
                rest = after;
            }
        }
    }
    html.push_str(rest);
    html
}

fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    // Pages carry the user's name and change with every sign-in: never cached.
    no_store(headers);
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_POLICY),
    );
    response
}

/// The console's content policy: its own scripts, styles, images and connections only (the
/// live log is a WebSocket to this appliance), no inline script, no framing.
const CONSOLE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    no_store(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_of_the_layout_is_filled() {
        let html = fill(
            LAYOUT,
            &[
                ("title", "T"),
                ("section", "s"),
                ("script", "x.js"),
                ("email", "e"),
                ("tenant", "t"),
                ("version", "v"),
                ("main", ""),
            ],
        );
        assert!(!html.contains("{{"), "an unfilled placeholder: {html}");
        assert!(html.contains("src=\"/assets/pages/x.js\""));
        assert!(!fill(LOGIN, &[("version", "v")]).contains("{{"));
    }

    #[test]
    fn values_are_never_read_as_placeholders() {
        let template = "<p>{{email}}</p><main>{{main}}</main>{{unknown}}";
        let html = fill(
            template,
            &[("email", "{{main}}@x.example"), ("main", "body")],
        );
        assert_eq!(
            html,
            "<p>{{main}}@x.example</p><main>body</main>{{unknown}}"
        );
    }

    #[test]
    fn every_page_has_a_distinct_path_and_an_embedded_script() {
        let mut paths: Vec<&str> = PAGES.iter().map(|page| page.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), PAGES.len());
        for page in PAGES {
            let script = format!("pages/{}", page.script);
            assert!(
                assets::find(&script).is_some(),
                "{} names {script}, which is not embedded",
                page.path
            );
            assert!(page.body.contains("<h1"), "{} has no heading", page.path);
        }
    }
}
