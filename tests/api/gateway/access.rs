//! The access matrix: paths × credentials, each cell's status and body, over real TLS.

use openframe_storage::model::ManualClock;
use reqwest::StatusCode;

use super::support::*;
use crate::helpers::spawn_at;
use crate::identity::support::{owner_token, relying_party_token};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cred {
    None,
    Garbage,
    Expired,
    AdminA,
    AdminB,
    AgentA,
    RelyingParty,
    KeyA,
    KeyB,
}

/// The expected cell: status, and the error code (or, for a success, a JSON field and value).
enum Expect {
    Error(StatusCode, &'static str),
    Json(StatusCode, &'static str, serde_json::Value),
    Status(StatusCode),
}

#[tokio::test]
async fn every_path_admits_exactly_its_callers() {
    let clock = ManualClock::starting_at(1_900_000_000_000);
    let app = spawn_at(&clock).await;
    let tenants = two_tenants(&app).await;
    let upstream = upstream().await;
    register_tool(&app, "acme", &upstream).await;

    // A token from before the clock moved past its lifetime.
    let expired = owner_token(&app, &tenants.a).await;
    clock.advance_ms(16 * 60 * 1000);
    let admin_a = owner_token(&app, &tenants.a).await;
    let admin_b = owner_token(&app, &tenants.b).await;
    let agent_a = agent_token(&app, "acme", "machine-1").await;
    let relying_party = relying_party_token(&app, &tenants.a).await;
    let (_, key_a, _) = create_key(&app, &admin_a, serde_json::json!({"name": "psa"})).await;
    let (_, key_b, _) = create_key(&app, &admin_b, serde_json::json!({"name": "psa"})).await;

    use Cred::*;
    use Expect::*;
    let cells: Vec<(&str, &str, Cred, Expect)> = vec![
        // The technician API: administrators only, each seeing its own tenant.
        (
            "GET",
            "/api/me",
            None,
            Error(StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        (
            "GET",
            "/api/me",
            Garbage,
            Error(StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        (
            "GET",
            "/api/me",
            Expired,
            Error(StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        (
            "GET",
            "/api/me",
            AdminA,
            Json(StatusCode::OK, "/user/tenantId", "acme".into()),
        ),
        (
            "GET",
            "/api/me",
            AdminB,
            Json(StatusCode::OK, "/user/tenantId", "globex".into()),
        ),
        (
            "GET",
            "/api/me",
            AgentA,
            Error(StatusCode::FORBIDDEN, "forbidden"),
        ),
        (
            "GET",
            "/api/me",
            RelyingParty,
            Error(StatusCode::FORBIDDEN, "forbidden"),
        ),
        (
            "GET",
            "/api/me",
            KeyA,
            Error(StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        // Agents' paths: open bootstrap paths pass the edge and reach the handler (which wants
        // the initial key), the rest need an agent token.
        (
            "POST",
            "/clients/api/agents/register",
            None,
            Error(StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        (
            "POST",
            "/clients/oauth/token",
            AdminA,
            Error(StatusCode::BAD_REQUEST, "invalid_input"),
        ),
        (
            "GET",
            "/clients/api/machines",
            None,
            Error(StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        (
            "GET",
            "/clients/api/machines",
            AdminA,
            Error(StatusCode::FORBIDDEN, "forbidden"),
        ),
        (
            "GET",
            "/clients/api/machines",
            AgentA,
            Error(StatusCode::NOT_FOUND, "route_not_found"),
        ),
        // The tool proxy: administrators, and the tool must be their tenant's.
        (
            "GET",
            "/tools/fleet/health",
            None,
            Error(StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        (
            "GET",
            "/tools/fleet/health",
            AgentA,
            Error(StatusCode::FORBIDDEN, "forbidden"),
        ),
        (
            "GET",
            "/tools/fleet/health",
            AdminA,
            Json(StatusCode::OK, "/healthy", true.into()),
        ),
        (
            "GET",
            "/tools/fleet/health",
            AdminB,
            Error(StatusCode::NOT_FOUND, "not_found"),
        ),
        (
            "GET",
            "/tools/fleet/api/latest/fleet/hosts",
            Expired,
            Error(StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        (
            "GET",
            "/tools/fleet/api/latest/fleet/hosts",
            AdminA,
            Json(StatusCode::OK, "/path", "/api/latest/fleet/hosts".into()),
        ),
        (
            "GET",
            "/tools/agent/fleet/api/latest/fleet/hosts",
            AdminA,
            Error(StatusCode::FORBIDDEN, "forbidden"),
        ),
        (
            "GET",
            "/tools/agent/fleet/api/latest/fleet/hosts",
            AgentA,
            Error(StatusCode::FORBIDDEN, "forbidden"),
        ),
        (
            "GET",
            "/tools/agent/fleet/api/latest/fleet/device/1",
            AgentA,
            Json(StatusCode::OK, "/path", "/api/latest/fleet/device/1".into()),
        ),
        (
            "GET",
            "/tools/agent/fleet/api/latest/fleet/hosts",
            KeyA,
            Error(StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        // NATS over WebSocket: agents or administrators (the bridge arrives with the agents).
        (
            "GET",
            "/ws/nats",
            None,
            Error(StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        (
            "GET",
            "/ws/nats",
            RelyingParty,
            Error(StatusCode::FORBIDDEN, "forbidden"),
        ),
        (
            "GET",
            "/ws/nats",
            AgentA,
            Error(StatusCode::BAD_REQUEST, "invalid_input"),
        ),
        (
            "GET",
            "/ws/nats",
            AdminA,
            Error(StatusCode::FORBIDDEN, "forbidden"),
        ),
        // The probe: any valid token, and what it says about the caller.
        (
            "GET",
            "/internal/authz/probe",
            None,
            Error(StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        (
            "GET",
            "/internal/authz/probe",
            Expired,
            Error(StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        (
            "GET",
            "/internal/authz/probe",
            AdminA,
            Json(
                StatusCode::OK,
                "/roles",
                serde_json::json!(["OWNER", "ADMIN"]),
            ),
        ),
        (
            "GET",
            "/internal/authz/probe",
            AgentA,
            Json(StatusCode::OK, "/roles", serde_json::json!(["AGENT"])),
        ),
        (
            "GET",
            "/internal/authz/probe",
            RelyingParty,
            Json(StatusCode::OK, "/roles", serde_json::json!([])),
        ),
        // The public API: API keys only, each seeing its own tenant's tools.
        (
            "GET",
            "/external-api/api/v1/tools",
            None,
            Error(StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        (
            "GET",
            "/external-api/api/v1/tools",
            AdminA,
            Error(StatusCode::UNAUTHORIZED, "unauthorized"),
        ),
        (
            "GET",
            "/external-api/api/v1/tools",
            KeyA,
            Json(StatusCode::OK, "/tools/0/id", "fleet".into()),
        ),
        (
            "GET",
            "/external-api/api/v1/tools",
            KeyB,
            Json(StatusCode::OK, "/tools", serde_json::json!([])),
        ),
        (
            "POST",
            "/external-api/api/v1/tools",
            KeyA,
            Error(StatusCode::FORBIDDEN, "forbidden"),
        ),
        (
            "GET",
            "/external-api/api/v1/me",
            KeyB,
            Json(StatusCode::OK, "/tenantId", "globex".into()),
        ),
        (
            "GET",
            "/external-api/api/v1/devices",
            KeyA,
            Json(StatusCode::OK, "/filteredCount", 0.into()),
        ),
        (
            "POST",
            "/external-api/api/v1/devices",
            KeyA,
            Error(StatusCode::FORBIDDEN, "forbidden"),
        ),
        // Identity and the front page are open at this layer.
        (
            "GET",
            "/sas/acme/.well-known/openid-configuration",
            None,
            Status(StatusCode::OK),
        ),
        ("GET", "/", Garbage, Status(StatusCode::OK)),
    ];

    for (method, path, cred, expect) in cells {
        let mut request = app
            .client
            .request(method.parse().unwrap(), app.https_url(path));
        request = match cred {
            None => request,
            Garbage => request.bearer_auth("not.a.token"),
            Expired => request.bearer_auth(&expired),
            AdminA => request.bearer_auth(&admin_a),
            AdminB => request.bearer_auth(&admin_b),
            AgentA => request.bearer_auth(&agent_a),
            RelyingParty => request.bearer_auth(&relying_party),
            KeyA => request.header("x-api-key", &key_a),
            KeyB => request.header("x-api-key", &key_b),
        };
        let response = request.send().await.unwrap();
        let cell = format!("{method} {path} as {cred:?}");
        match expect {
            Error(status, code) => {
                let (got, got_code, message) = error_of(response).await;
                assert_eq!(
                    (got, got_code.as_str()),
                    (status, code),
                    "{cell}: {message}"
                );
                assert!(!message.is_empty(), "{cell}");
            }
            Json(status, pointer, value) => {
                assert_eq!(response.status(), status, "{cell}");
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body.pointer(pointer), Some(&value), "{cell}: {body}");
                assert!(!body.to_string().contains(TOOL_SECRET), "{cell}: {body}");
            }
            Status(status) => assert_eq!(response.status(), status, "{cell}"),
        }
    }
    // Nothing the edge refused reached the tool: only the two allowed proxied calls and the
    // health check did.
    let seen = upstream.seen.lock().unwrap();
    let paths: Vec<&str> = seen.iter().map(|entry| entry.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/healthz",
            "/api/latest/fleet/hosts",
            "/api/latest/fleet/device/1"
        ],
        "{seen:?}"
    );
}

#[tokio::test]
async fn tokens_are_taken_from_openframes_places_in_order() {
    let app = crate::helpers::spawn_app().await;
    let tenants = two_tenants(&app).await;
    let me = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        (
            status,
            body["user"]["tenantId"].clone(),
            body["code"].clone(),
        )
    };
    let url = app.https_url("/api/me");
    // The access_token cookie, and the Access-Token header.
    let (status, tenant, _) = me(app.client.get(&url).header(
        "cookie",
        format!("theme=dark; access_token={}", tenants.admin_a),
    ))
    .await;
    assert_eq!((status, tenant), (StatusCode::OK, "acme".into()));
    let (status, tenant, _) = me(app
        .client
        .get(&url)
        .header("access-token", &tenants.admin_b))
    .await;
    assert_eq!((status, tenant), (StatusCode::OK, "globex".into()));
    // Authorization comes first: a bad bearer is not rescued by a good cookie.
    let (status, _, code) = me(app
        .client
        .get(&url)
        .bearer_auth("garbage")
        .header("cookie", format!("access_token={}", tenants.admin_a)))
    .await;
    assert_eq!(
        (status, code),
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
    // A token in the query is read only for WebSocket upgrades.
    let (status, _, code) = me(app
        .client
        .get(format!("{url}?authorization={}", tenants.admin_a)))
    .await;
    assert_eq!(
        (status, code),
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
    // Basic credentials are not a token.
    let (status, _, code) = me(app.client.get(&url).basic_auth("admin", Some("pw"))).await;
    assert_eq!(
        (status, code),
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
    // A token of another issuer, signed with a real key of ours, is refused: only issuers of
    // this appliance's active tenants count.
    let forged = with_claim(&tenants.admin_a, "iss", "https://evil.example.com/sas/acme");
    let (status, _, code) = me(app.client.get(&url).bearer_auth(&forged)).await;
    assert_eq!(
        (status, code),
        (StatusCode::UNAUTHORIZED, "unauthorized".into())
    );
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once_despite_the_cache() {
    let app = crate::helpers::spawn_app().await;
    let tenants = two_tenants(&app).await;
    let url = app.https_url("/api/me");
    for _ in 0..3 {
        let response = app
            .client
            .get(&url)
            .bearer_auth(&tenants.admin_a)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let revoked = app
        .client
        .post(format!("{}/oauth2/revoke", tenants.a.issuer))
        .form(&[
            ("token", tenants.admin_a.as_str()),
            ("client_id", "openframe-gateway"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let (status, code, message) = error_of(
        app.client
            .get(&url)
            .bearer_auth(&tenants.admin_a)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert!(message.contains("revoked"), "{message}");
    // The other tenant's administrator is unaffected.
    let response = app
        .client
        .get(&url)
        .bearer_auth(&tenants.admin_b)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_suspended_tenant_and_a_tampered_agent_token_are_refused() {
    let app = crate::helpers::spawn_app().await;
    let tenants = two_tenants(&app).await;
    let agent = agent_token(&app, "acme", "m-7").await;
    let (_, key, _) = create_key(&app, &tenants.admin_a, serde_json::json!({"name": "psa"})).await;
    let tools = app.https_url("/external-api/api/v1/tools");
    let with_key = || app.client.get(&tools).header("x-api-key", &key).send();
    assert_eq!(with_key().await.unwrap().status(), StatusCode::OK);
    let probe = app.https_url("/internal/authz/probe");
    let body: serde_json::Value = app
        .client
        .get(&probe)
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["tenantId"], "acme");
    // An agent token claiming the other tenant is not signed by that tenant's key.
    let moved = with_claim(&agent, "tenant_id", "globex");
    let (status, code, _) = error_of(
        app.client
            .get(&probe)
            .bearer_auth(&moved)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    // Suspending the tenant ends its tokens at the edge (after the cache period at the latest;
    // the cache is bypassed here by a token never seen before).
    app.state
        .storage
        .tenants
        .set_tenant_status(
            &tenant("acme"),
            openframe_storage::documents::TenantStatus::Suspended,
        )
        .await
        .unwrap();
    let fresh = agent_token(&app, "acme", "m-8").await;
    let (status, _, message) = error_of(
        app.client
            .get(&probe)
            .bearer_auth(&fresh)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message.contains("not active"), "{message}");
    // Its API keys stop at the next reading of the keys (every minute; here at once).
    app.state.gateway.api_keys.load().await.unwrap();
    let (status, _, message) = error_of(with_key().await.unwrap()).await;
    assert_eq!(
        (status, message.as_str()),
        (StatusCode::UNAUTHORIZED, "the API key is not valid")
    );
}

#[tokio::test]
async fn tokens_signed_by_a_rotated_key_pass_the_edge_without_a_restart() {
    let clock = ManualClock::starting_at(1_900_000_000_000);
    let app = spawn_at(&clock).await;
    let tenants = two_tenants(&app).await;
    let before = tenants.admin_a.clone();
    let kid = |token: &str| {
        let header = token.split('.').next().unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&openframe::identity::crypto::b64url_decode(header).unwrap())
                .unwrap();
        header["kid"].as_str().unwrap().to_owned()
    };
    openframe::identity::admin::rotate_keys(&app.state.identity, "acme")
        .await
        .unwrap();
    // Past the rotation lead (an hour), new tokens are signed by the new key.
    clock.advance_ms(61 * 60 * 1000);
    let after = owner_token(&app, &tenants.a).await;
    assert_ne!(kid(&before), kid(&after));
    let response = app
        .client
        .get(app.https_url("/api/me"))
        .bearer_auth(&after)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["user"]["tenantId"], "acme");
}
