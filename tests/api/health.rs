use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_front_page_answers_over_tls_with_a_certificate_for_localhost_and_127_0_0_1() {
    let app = spawn_app().await;
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{}/", app.https_addr.port());
        let response = app.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let headers = response.headers().clone();
        assert_eq!(headers["strict-transport-security"], "max-age=31536000");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert!(
            headers["cache-control"]
                .to_str()
                .unwrap()
                .contains("no-store")
        );
        // Without a session the front page (the console's dashboard) leads to its sign-in.
        assert!(response.url().path() == "/login", "{}", response.url());
        let body = response.text().await.unwrap();
        assert!(body.contains("id=\"login-form\""), "{body}");
        assert!(body.contains(env!("CARGO_PKG_VERSION")), "{body}");
    }
}

#[tokio::test]
async fn plain_http_on_the_https_port_gets_no_answer() {
    let app = spawn_app().await;
    let refused = app
        .plain
        .get(format!("http://{}/", app.https_addr))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    // And the failed handshake is counted.
    let metrics = app
        .plain
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("openframe_tls_handshake_failures_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn readiness_reports_every_store_and_liveness_answers() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut app = crate::helpers::spawn_with(crate::helpers::with_nats(
        crate::helpers::test_config(&dir.path().join("data")),
    ))
    .await;
    // The supervised nats-server takes a moment to accept connections.
    let (status, body) = crate::stream::support::ready_with_nats_up(&app).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "status": "ready",
            "version": env!("CARGO_PKG_VERSION"),
            "stores": {
                "documents": {"engine": "sqlite", "status": "up"},
                "events": {"engine": "redb", "status": "up"},
                "analytics": {"engine": "duckdb", "status": "up"},
                "search": {"engine": "tantivy", "status": "up"},
                "nats": {"engine": "nats-server", "status": "up", "restarts": 0},
            }
        })
    );
    let live = app
        .plain
        .get(app.admin_url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(
        live.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "live"})
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_paths_get_a_json_error_with_a_stable_code() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.https_url("/no/such/route?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"code": "route_not_found", "message": "no route for GET /no/such/route"})
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_report_store_health() {
    let app = spawn_app().await;
    // The console's sign-in page: open, and its own route.
    for _ in 0..3 {
        app.client
            .get(app.https_url("/login"))
            .send()
            .await
            .unwrap();
    }
    app.client
        .get(app.https_url("/missing/abc123"))
        .send()
        .await
        .unwrap();
    app.ready().await;
    let response = app
        .plain
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!("openframe_build_info{{version=\"{version}\"}} 1")),
        "{text}"
    );
    assert!(
        text.contains(
            "openframe_http_requests_total{method=\"GET\",route=\"/login\",status=\"200\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "openframe_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1"
        ),
        "raw paths must not become labels: {text}"
    );
    assert!(
        text.contains("openframe_store_up{role=\"analytics\",engine=\"duckdb\"} 1"),
        "{text}"
    );
    assert!(!text.contains("abc123"), "{text}");
    // Each store's size on disk, as the files are now.
    let bytes = |store: &str| -> u64 {
        let prefix = format!("openframe_store_bytes{{store=\"{store}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix}in {text}"))
            .parse()
            .unwrap()
    };
    let on_disk = std::fs::metadata(app.data_dir.join("tenancy.sqlite"))
        .unwrap()
        .len();
    assert!(bytes("tenancy") >= on_disk, "{text}");
    assert!(bytes("events") > 0 && bytes("analytics") > 0 && bytes("search") > 0);
}

#[tokio::test]
async fn an_operator_certificate_from_the_config_is_served_instead_of_a_generated_one() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["operator.test".to_owned(), "localhost".to_owned()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Operator CA-issued");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert_file = dir.path().join("operator.pem");
    let key_file = dir.path().join("operator.key");
    std::fs::write(&cert_file, params.self_signed(&key).unwrap().pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();

    let data = dir.path().join("data");
    let mut config = crate::helpers::test_config(&data);
    config.tls.cert_file = cert_file.display().to_string();
    config.tls.key_file = key_file.display().to_string();
    let app = crate::helpers::spawn_with(config).await;

    let operator_client = crate::helpers::trusting_client(&cert_file);
    let response = operator_client
        .get(app.https_url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        !data.join("tls").exists(),
        "no self-signed certificate is generated beside an operator's"
    );
}
