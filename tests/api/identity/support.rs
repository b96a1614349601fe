//! Seeding tenants, users and clients, and a minimal browser that keeps cookies and shows every
//! redirect.

use std::collections::HashMap;

use openframe::identity::NewClient;
use openframe::identity::admin;
use reqwest::StatusCode;

use crate::helpers::{TestApp, browser_client};

pub(crate) const PASSWORD: &str = "Corr3ct-horse!";
pub(crate) const REDIRECT_URI: &str = "https://rp.example.com/callback";
pub(crate) const POST_LOGOUT_URI: &str = "https://rp.example.com/signed-out";

/// A tenant with an OWNER and a confidential relying party allowed every grant.
#[derive(Debug, Clone)]
pub(crate) struct Seeded {
    pub(crate) tenant: String,
    pub(crate) issuer: String,
    pub(crate) email: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
}

pub(crate) async fn seed(app: &TestApp, tenant: &str) -> Seeded {
    let identity = &app.state.identity;
    let email = format!("owner@{tenant}.example.com");
    admin::init(identity, tenant, Some("Test MSP"), &email, Some(PASSWORD))
        .await
        .unwrap();
    let client = admin::create_client(
        identity,
        tenant,
        NewClient {
            name: "Relying party".into(),
            public: false,
            redirect_uris: vec![REDIRECT_URI.into()],
            scopes: Vec::new(),
            post_logout_redirect_uris: vec![POST_LOGOUT_URI.into()],
            grant_types: vec![
                "authorization_code".into(),
                "refresh_token".into(),
                "client_credentials".into(),
            ],
        },
    )
    .await
    .unwrap();
    Seeded {
        tenant: tenant.to_owned(),
        issuer: app.https_url(&format!("/sas/{tenant}")),
        email,
        client_id: client.client_id,
        client_secret: client.client_secret.unwrap(),
    }
}

/// A public client (no secret; PKCE required).
pub(crate) async fn public_client(app: &TestApp, tenant: &str) -> String {
    admin::create_client(
        &app.state.identity,
        tenant,
        NewClient {
            name: "Single-page app".into(),
            public: true,
            redirect_uris: vec![REDIRECT_URI.into()],
            scopes: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            grant_types: Vec::new(),
        },
    )
    .await
    .unwrap()
    .client_id
}

/// A browser: one cookie per name (tests use one browser per tenant), redirects not followed.
pub(crate) struct Browser {
    client: reqwest::Client,
    cookies: HashMap<String, String>,
    base: String,
}

pub(crate) fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on a {} answer", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

pub(crate) fn query_param(url: &str, name: &str) -> Option<String> {
    let parsed = url::Url::parse(url)
        .or_else(|_| url::Url::parse(&format!("https://x{url}")))
        .unwrap();
    parsed
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The value of a hidden form field in a page.
pub(crate) fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end]
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
}

impl Browser {
    pub(crate) fn new(app: &TestApp) -> Browser {
        Browser {
            client: browser_client(&app.cert_path()),
            cookies: HashMap::new(),
            base: app.https_url(""),
        }
    }

    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_owned()
        }
    }

    fn keep_cookies(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub(crate) fn has_cookie(&self, name: &str) -> bool {
        self.cookies.contains_key(name)
    }

    pub(crate) async fn get(&mut self, url: &str) -> reqwest::Response {
        let response = self
            .client
            .get(self.absolute(url))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep_cookies(&response);
        response
    }

    pub(crate) async fn post_form(
        &mut self,
        url: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let response = self
            .client
            .post(self.absolute(url))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep_cookies(&response);
        response
    }

    /// Submits the sign-in form reached from `login_url`; returns the answer to the POST.
    pub(crate) async fn submit_login(
        &mut self,
        login_url: &str,
        email: &str,
        password: &str,
    ) -> reqwest::Response {
        let form_page = self.get(login_url).await;
        assert_eq!(form_page.status(), StatusCode::OK);
        let html = form_page.text().await.unwrap();
        let csrf = hidden_field(&html, "_csrf");
        let continuation = html
            .contains("name=\"return\"")
            .then(|| hidden_field(&html, "return"));
        let action = format!("{}/login", login_url.split("/login").next().unwrap());
        let mut form = vec![
            ("username", email),
            ("password", password),
            ("_csrf", csrf.as_str()),
        ];
        if let Some(target) = &continuation {
            form.push(("return", target.as_str()));
        }
        self.post_form(&action, &form).await
    }

    /// Opens an authorization URL, signs in when asked, and returns where the provider finally
    /// sends the browser (the client's redirect URI with `code` or `error`).
    pub(crate) async fn authorize(
        &mut self,
        authorize_url: &str,
        email: &str,
        password: &str,
    ) -> String {
        let first = self.get(authorize_url).await;
        assert_eq!(
            first.status(),
            StatusCode::FOUND,
            "{}",
            first.text().await.unwrap()
        );
        let mut next = location(&first);
        if next.contains("/login?") {
            let signed_in = self.submit_login(&next, email, password).await;
            assert_eq!(
                signed_in.status(),
                StatusCode::SEE_OTHER,
                "{}",
                signed_in.text().await.unwrap()
            );
            let back = self.get(&location(&signed_in)).await;
            assert_eq!(back.status(), StatusCode::FOUND);
            next = location(&back);
        }
        next
    }
}

/// The RFC 6749 error body: (`error`, `error_description`).
pub(crate) async fn oauth_error(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "OAuth errors must not be cached"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap().to_owned(),
        body["error_description"].as_str().unwrap().to_owned(),
    )
}

/// RFC 7662 introspection by the seeded client.
pub(crate) async fn introspect(app: &TestApp, seeded: &Seeded, token: &str) -> serde_json::Value {
    let response = app
        .client
        .post(format!("{}/oauth2/introspect", seeded.issuer))
        .basic_auth(&seeded.client_id, Some(&seeded.client_secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// A client_credentials token response of the seeded client.
pub(crate) async fn client_credentials(app: &TestApp, seeded: &Seeded) -> reqwest::Response {
    app.client
        .post(format!("{}/oauth2/token", seeded.issuer))
        .basic_auth(&seeded.client_id, Some(&seeded.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
}

/// An access token of the seeded OWNER (roles OWNER and ADMIN), through the browser flow.
pub(crate) async fn owner_token(app: &TestApp, seeded: &Seeded) -> String {
    user_token(app, seeded, &seeded.email, PASSWORD).await
}

/// An access token of any user of the seeded tenant, as the appliance's own browser client
/// (`openframe-gateway`, public, PKCE) gets it: the only client whose tokens manage the tenant.
pub(crate) async fn user_token(
    app: &TestApp,
    seeded: &Seeded,
    email: &str,
    password: &str,
) -> String {
    token_via(app, seeded, email, password, false).await
}

/// The same user's access token as the seeded third-party relying party gets it.
pub(crate) async fn relying_party_token(app: &TestApp, seeded: &Seeded) -> String {
    token_via(app, seeded, &seeded.email, PASSWORD, true).await
}

async fn token_via(
    app: &TestApp,
    seeded: &Seeded,
    email: &str,
    password: &str,
    relying_party: bool,
) -> String {
    let verifier = "owner-token-verifier-0123456789-0123456789-0123456789";
    let challenge = openframe::identity::rules::s256_challenge(verifier);
    let (client_id, callback_uri) = if relying_party {
        (seeded.client_id.clone(), REDIRECT_URI.to_owned())
    } else {
        (
            "openframe-gateway".to_owned(),
            app.https_url("/oauth/callback"),
        )
    };
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", &callback_uri)
        .append_pair("scope", "openid email")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    let mut browser = Browser::new(app);
    let callback = browser
        .authorize(
            &format!("{}/oauth2/authorize?{query}", seeded.issuer),
            email,
            password,
        )
        .await;
    let code = query_param(&callback, "code").unwrap();
    let mut request = app.client.post(format!("{}/oauth2/token", seeded.issuer));
    if relying_party {
        request = request.basic_auth(&seeded.client_id, Some(&seeded.client_secret));
    }
    let tokens: serde_json::Value = request
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &callback_uri),
            ("code_verifier", verifier),
            ("client_id", &client_id),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// The `{code, message}` body of the edge's error table.
pub(crate) async fn api_error(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("a {status} answer that is not JSON: {text}"));
    let field = |name: &str| {
        body[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in the {status} answer {body}"))
            .to_owned()
    };
    (status, field("code"), field("message"))
}
