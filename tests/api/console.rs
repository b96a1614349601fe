//! The admin console end to end: Debian's Chromium, driven by Playwright (`tests/ui/e2e.mjs`,
//! playwright-core from npm, no downloaded browser), against a real appliance with the
//! supervised nats-server, a registered agent connected over `/ws/nats`, and tool events that
//! went through the pipeline. The script works the console as a technician does and reports
//! what it saw; this test then checks the stored state behind it through the API.
//!
//! Needs `chromium`, `node` and `npm ci --prefix tests/ui` (the README's quick start and
//! `.ci/run` install them). The screenshots land in `$CARGO_TARGET_TMPDIR/console-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;

use crate::agents::support::{appliance_for_agents, connect, enroll, wait_for_status};
use crate::helpers::TestApp;
use crate::identity::support::PASSWORD;
use crate::stream::support::{fixture, ingest, ingest_key, seed_inventory, settle};

const HOSTNAME: &str = "ACME-LAPTOP-42";
const OTHER_TENANTS_DEVICE: &str = "GLOBEX-SECRET-PC";
const INCIDENT_TITLE: &str = "5 devices went offline within 10 minutes";

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui")
}

/// What the browser needs, or a message that says how to get it.
fn browser_prerequisites() -> PathBuf {
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()));
    assert!(
        chromium.exists(),
        "the console tests drive Chromium at {}: apt-get install -y chromium (or set CHROMIUM)",
        chromium.display()
    );
    assert!(
        ui_dir().join("node_modules/playwright-core").exists(),
        "the console tests need playwright-core: npm ci --prefix tests/ui (with node and npm installed)"
    );
    chromium
}

async fn admin_get(app: &TestApp, token: &str, path: &str) -> Value {
    let response = app
        .client
        .get(app.https_url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.unwrap()
}

async fn graphql(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app
        .client
        .post(app.https_url("/api/graphql"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "query": query }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(body["errors"].is_null(), "{body}");
    body["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_works_through_the_console_in_chromium() {
    let chromium = browser_prerequisites();
    let dir = TempDir::new().unwrap();
    let (app, admin, key) = appliance_for_agents(dir.path()).await;

    // A machine registers as the agent does, connects over /ws/nats and reports in.
    let machine = enroll(&app, &key, HOSTNAME).await;
    let (agent, _errors) = connect(&app, &machine.access_token).await;
    agent
        .publish(
            format!("machine.{}.heartbeat", machine.machine_id),
            "{}".into(),
        )
        .await
        .unwrap();
    agent.flush().await.unwrap();
    wait_for_status(&app, "acme", &machine.machine_id, "ONLINE").await;

    // MeshCentral's events, through ingest and the pipeline, enriched with Acme's devices.
    seed_inventory(&app, "acme").await;
    let ingest_with = ingest_key(&app, &admin).await;
    let (status, answer) = ingest(
        &app,
        &ingest_with,
        "MESHCENTRAL_EVENT",
        fixture("meshcentral-events.ndjson"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 9, "{answer}");
    settle(&app).await;

    // Another tenant's device, which Acme's console must never show.
    let globex = openframe_storage::model::TenantId::parse("globex").unwrap();
    app.state
        .inventory
        .put_machine(
            &globex,
            openframe::inventory::Machine {
                machine_id: "m-globex-1".into(),
                hostname: OTHER_TENANTS_DEVICE.into(),
                status: "ONLINE".into(),
                os_type: "WINDOWS".into(),
                ..openframe::inventory::Machine::default()
            },
        )
        .await
        .unwrap();

    // An incident (as detection opens one), with its notification, for the technician to take
    // from the notification to acknowledged and resolved.
    let acme = openframe_storage::model::TenantId::parse("acme").unwrap();
    crate::detection::open_incident(&app, "acme", "m-ws-1", None, INCIDENT_TITLE).await;

    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut script = tokio::process::Command::new("node");
    script
        .arg(ui_dir().join("e2e.mjs"))
        .env("BASE_URL", app.https_url(""))
        .env("CHROMIUM", &chromium)
        .env("ADMIN_EMAIL", "owner@acme.example.com")
        .env("ADMIN_PASSWORD", PASSWORD)
        .env("DEVICE_HOSTNAME", HOSTNAME)
        .env("OTHER_TENANTS_DEVICE", OTHER_TENANTS_DEVICE)
        .env("INCIDENT_TITLE", INCIDENT_TITLE)
        .env("SCREENSHOTS", &screenshots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(240), script.output())
        .await
        .expect("the browser session took longer than 4 minutes")
        .expect("node runs (apt-get install -y nodejs npm)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser session failed:\n{stderr}\n{stdout}"
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("no report ({error}):\n{stdout}\n{stderr}"));
    eprintln!("console report: {report}");

    // Nothing left the host, and no page had a script error.
    assert_eq!(report["external"], serde_json::json!([]), "{report}");
    assert_eq!(report["pageErrors"], serde_json::json!([]), "{report}");
    // Every field has a label and every button or link a name, on every page.
    assert_eq!(report["unlabelled"], serde_json::json!([]), "{report}");

    // The customer was created once, although its form was submitted twice.
    let customers = graphql(
        &app,
        &admin,
        "{ organizations(search: \"Northwind\") { edges { node { name category } } } }",
    )
    .await;
    assert_eq!(
        customers["organizations"]["edges"],
        serde_json::json!([{ "node": { "name": "Northwind Traders", "category": "Retail" } }]),
    );

    // The key the page showed once is a working key with the scope chosen in the form, and
    // the page never showed it again.
    let full_key = report["fullKey"].as_str().unwrap();
    let me = app
        .client
        .get(app.https_url("/external-api/api/v1/me"))
        .header("x-api-key", full_key)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let keys = admin_get(&app, &admin, "/api/api-keys").await;
    let made: Vec<&Value> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|key| key["name"] == "Console key")
        .collect();
    assert_eq!(made.len(), 1, "{keys}");
    assert_eq!(made[0]["scopes"], serde_json::json!(["logs:read"]));
    assert!(full_key.starts_with(&format!("{}.sk_", made[0]["id"].as_str().unwrap())));
    assert_eq!(report["keyShownAfterReload"], false, "{report}");

    // The invitation is pending for the address typed in the form.
    let invitations = admin_get(&app, &admin, "/api/invitations").await;
    let invited: Vec<&Value> = invitations
        .as_array()
        .unwrap()
        .iter()
        .filter(|invitation| invitation["email"] == "new.tech@acme.example.com")
        .collect();
    assert_eq!(invited.len(), 1, "{invitations}");
    assert_eq!(invited[0]["status"], "PENDING");

    // The script was created once; the tool is registered, and its test says it cannot be
    // reached; the audit trail lists the changes made in the browser.
    assert_eq!(report["scriptRows"], 1, "{report}");
    let scripts = graphql(
        &app,
        &admin,
        "{ scripts(search: \"Disk report\") { edges { node { name shell scriptBody } } } }",
    )
    .await;
    assert_eq!(
        scripts["scripts"]["edges"],
        serde_json::json!([{ "node": { "name": "Disk report", "shell": "BASH", "scriptBody": "df -h" } }])
    );
    let tool = admin_get(&app, &admin, "/api/tools/mesh-lab").await;
    assert_eq!(
        (tool["name"].as_str(), tool["toolType"].as_str()),
        (Some("Lab MeshCentral"), Some("MESHCENTRAL")),
        "{tool}"
    );
    assert!(
        report["toolTest"].as_str().unwrap().contains("UNHEALTHY"),
        "{report}"
    );
    let audit = report["auditText"].as_str().unwrap();
    assert!(
        audit.contains("Organization") && audit.contains("owner@acme.example.com"),
        "{audit}"
    );

    // What the browser saw.
    assert_eq!(report["deviceRows"], 4, "{report}");
    assert_eq!(report["otherTenantVisible"], false, "{report}");
    assert_eq!(
        report["deviceTitle"], HOSTNAME,
        "the device page names the device: {report}"
    );
    assert!(report["filteredLogRows"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["filteredLogsMatch"], true, "{report}");
    // The drawer shows the entry that was clicked, with the tool's own message.
    assert_eq!(
        report["detailsTitle"], report["firstRowSummary"],
        "{report}"
    );
    assert!(
        !matches!(
            report["detailsMessage"].as_str(),
            None | Some("") | Some("—")
        ),
        "{report}"
    );
    assert!(
        report["detailsProps"]
            .as_str()
            .unwrap()
            .contains("MESHCENTRAL"),
        "{report}"
    );
    assert_eq!(
        report["resumedAfterExpiry"], "/logs?severity=INFO",
        "{report}"
    );
    assert_eq!(report["afterSignOut"], "/login", "{report}");

    // After signing out, the session's refresh token no longer works.
    let refresh = app
        .client
        .post(app.https_url("/oauth/refresh?tenantId=acme"))
        .header("refresh-token", report["refreshToken"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED);

    // The incident, taken from its notification to resolved in the browser, is stored so.
    assert_eq!(report["badgeUnread"], 1, "{report}");
    assert_eq!(report["incidentOpenedFromNotification"], true, "{report}");
    assert_eq!(report["incidentStatusAfterAck"], "ACKNOWLEDGED", "{report}");
    assert_eq!(report["incidentStatusAfterResolve"], "RESOLVED", "{report}");
    assert_eq!(report["timelineShowsNote"], true, "{report}");
    let incidents = app.state.incidents.list(&acme, None).await.unwrap();
    assert_eq!(incidents.len(), 1);
    let incident = app
        .state
        .incidents
        .get(&acme, &incidents[0].id)
        .await
        .unwrap();
    assert_eq!(incident.status, "RESOLVED");
    assert_eq!(
        incident.acknowledged_by.as_deref(),
        Some("owner@acme.example.com")
    );
    assert_eq!(
        incident.resolution_note.as_deref(),
        Some("power restored at the site")
    );

    // A screenshot of each main page, as PNG.
    for page in report["screenshots"].as_array().unwrap() {
        let path = screenshots.join(page.as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{}",
            path.display()
        );
    }
    assert!(report["screenshots"].as_array().unwrap().len() >= 12);
    drop(agent);
}

/// The console's pages without a browser: who gets a page, what it carries, and its assets.
#[tokio::test]
async fn pages_are_for_a_tenants_administrators_and_send_everyone_else_to_sign_in() {
    let app = crate::helpers::spawn_app().await;
    let tenants = crate::gateway::support::two_tenants(&app).await;
    let client = crate::helpers::browser_client(&app.cert_path());
    let page = |cookie: Option<String>, path: &str| {
        let mut request = client.get(app.https_url(path));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };

    // No session, a forged one, or an agent's token: to sign-in, and back to the page asked for.
    let agent = crate::gateway::support::agent_token(&app, "acme", "ws-1").await;
    for cookie in [
        None,
        Some("access_token=not-a-token".to_owned()),
        Some(format!("access_token={agent}")),
    ] {
        let response = page(cookie, "/devices?os=WINDOWS&q=a%20b").await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers()["location"],
            "/login?next=%2Fdevices%3Fos%3DWINDOWS%26q%3Da%2520b"
        );
        assert_eq!(response.headers()["cache-control"], "no-store");
    }

    // The sign-in page is open, and pages allow no script but their own.
    let login = page(None, "/login?next=%2Fdevices").await.unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let policy = login.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.starts_with("default-src 'none'; script-src 'self';"),
        "{policy}"
    );
    assert!(!policy.contains("unsafe"), "{policy}");
    assert!(login.text().await.unwrap().contains("id=\"login-form\""));

    // An administrator's page names them and their tenant, and marks where they are.
    let acme = format!("access_token={}", tenants.admin_a);
    let devices = page(Some(acme.clone()), "/devices").await.unwrap();
    assert_eq!(devices.status(), StatusCode::OK);
    assert_eq!(devices.headers()["cache-control"], "no-store");
    let html = devices.text().await.unwrap();
    assert!(html.contains("owner@acme.example.com"), "{html}");
    assert!(html.contains("data-tenant=\"acme\""), "{html}");
    assert!(html.contains("<a href=\"/devices\" data-nav=\"devices\" aria-current=\"page\">"));
    assert_eq!(html.matches("aria-current").count(), 1);
    assert!(html.contains("<script type=\"module\" src=\"/assets/pages/devices.js\"></script>"));
    assert!(!html.contains("{{"), "an unfilled placeholder: {html}");
    let globex = format!("access_token={}", tenants.admin_b);
    let other = page(Some(globex), "/settings/api-keys").await.unwrap();
    let html = other.text().await.unwrap();
    assert!(html.contains("owner@globex.example.com") && !html.contains("acme"));

    // Every page of the navigation answers, each with its own script.
    for (path, script) in [
        ("/", "dashboard.js"),
        ("/customers", "customers.js"),
        ("/devices/some-machine", "device.js"),
        ("/logs", "logs.js"),
        ("/scripts", "scripts.js"),
        ("/integrations", "integrations.js"),
        ("/settings/users", "users.js"),
        ("/settings/agents", "agents.js"),
        ("/settings/audit", "audit.js"),
        ("/settings", "settings.js"),
    ] {
        let response = page(Some(acme.clone()), path).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let html = response.text().await.unwrap();
        assert!(html.contains(&format!("/assets/pages/{script}")), "{path}");
    }

    // Assets: validators, so a browser revalidates with one small request.
    let script = page(None, "/assets/app.js").await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(script.headers()["cache-control"], "no-cache");
    let etag = script.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 26, "{etag}");
    let body = script.bytes().await.unwrap();
    assert_eq!(
        &body[..],
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/assets/app.js")).unwrap()
    );
    let again = client
        .get(app.https_url("/assets/app.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());
    for missing in [
        "/assets/nope.js",
        "/assets/pages%2F..%2F..%2FCargo.toml",
        "/assets/pages",
    ] {
        let response = page(None, missing).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "not_found", "{missing}");
    }
}

/// The console asks for the email first; the tenant's sign-in page then shows it filled in
/// (OIDC's `login_hint`), escaped like anything else it shows.
#[tokio::test]
async fn the_sign_in_page_shows_the_email_the_console_asked_for() {
    let app = crate::helpers::spawn_app().await;
    crate::identity::support::seed(&app, "acme").await;
    let client = crate::helpers::browser_client(&app.cert_path());
    for (hint, shown) in [
        ("owner@acme.example.com", "value=\"owner@acme.example.com\""),
        (
            "\"><script>x</script>",
            "value=\"&quot;&gt;&lt;script&gt;x&lt;/script&gt;\"",
        ),
    ] {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("tenantId", "acme")
            .append_pair("redirectTo", "/devices")
            .append_pair("loginHint", hint)
            .finish();
        let start = client
            .get(app.https_url(&format!("/oauth/login?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(start.status(), StatusCode::FOUND);
        let authorize = start.headers()["location"].to_str().unwrap().to_owned();
        let hop = client.get(app.https_url(&authorize)).send().await.unwrap();
        let login = hop.headers()["location"].to_str().unwrap().to_owned();
        assert!(login.contains("/sas/acme/login"), "{login}");
        let html = client
            .get(if login.starts_with("http") {
                login.clone()
            } else {
                app.https_url(&login)
            })
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains(shown), "{hint}: {html}");
        assert!(!html.contains("<script>x"), "{html}");
    }
}
