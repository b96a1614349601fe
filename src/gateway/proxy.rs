//! The tool proxy: `/tools/{toolId}/…` (administrators) and `/tools/agent/{toolId}/…` (agents)
//! forward REST calls, `/ws/tools/{toolId}/…` and `/ws/tools/agent/{toolId}/…` WebSockets, to
//! the tool's registered URL with its credential injected.
//!
//! What the proxy guarantees:
//! - Only allow-listed paths are forwarded; encoded slashes, dots and backslashes are refused,
//!   so no spelling of a path escapes the list.
//! - The caller's own credentials (cookies, `Authorization`, `Access-Token`) never go upstream,
//!   and the tool's credential never comes back: it is removed from response headers and
//!   replaced in response bodies and WebSocket messages (upstream is asked not to compress, so
//!   it can be found). Upstream redirects are returned, not followed.
//! - Upstream TLS is verified (the system's roots, or the tool's CA file) unless the operator
//!   turned it off for that tool; each request has a deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use openframe_storage::model::TenantId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite;

use super::auth::{Admin, Agent};
use super::tools::ToolRecord;
use crate::error::ApiError;
use crate::identity::http::PeerAddr;
use crate::startup::AppState;

/// The request headers a tool receives from the caller: content negotiation and caching,
/// nothing that names a client, a host, a path or an identity (those a tool might trust, since
/// the request carries its credential).
const FORWARDED: &[&str] = &[
    "accept",
    "accept-language",
    "content-type",
    "user-agent",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "range",
    "cache-control",
    "pragma",
    "x-requested-with",
];

const NOT_RETURNED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    // The tool's cookies are for the tool's origin, not ours; its cross-origin grants and page
    // policy do not speak for the appliance.
    "set-cookie",
    "content-security-policy",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
];

/// What a proxied answer may do in a browser: nothing (no scripts, no frames, no forms).
const TOOL_CSP: &str = "sandbox; default-src 'none'; frame-ancestors 'none'";

const REDACTED: &[u8] = b"[REDACTED]";

/// Upstream HTTP clients, one per TLS setting.
#[derive(Debug, Default)]
pub struct Upstreams {
    clients: Mutex<HashMap<String, reqwest::Client>>,
}

impl Upstreams {
    pub(crate) fn client(&self, tool: &ToolRecord) -> Result<reqwest::Client, ApiError> {
        let key = if !tool.tls_verify {
            "insecure".to_owned()
        } else {
            format!("ca:{}", tool.ca_file)
        };
        if let Some(client) = self
            .clients
            .lock()
            .ok()
            .and_then(|clients| clients.get(&key).cloned())
        {
            return Ok(client);
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_gzip()
            .pool_idle_timeout(Duration::from_secs(60));
        if !tool.tls_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        } else if !tool.ca_file.is_empty() {
            let pem = std::fs::read(&tool.ca_file).map_err(|error| {
                ApiError::BadGateway(format!(
                    "tool {}: cannot read its CA file: {error}",
                    tool.id
                ))
            })?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
                ApiError::BadGateway(format!("tool {}: its CA file is not PEM", tool.id))
            })?;
            builder = builder.tls_certs_only(roots);
        }
        let client = builder.build().map_err(|error| {
            ApiError::Unexpected(anyhow::anyhow!("building a tool client: {error}"))
        })?;
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(key, client.clone());
        }
        Ok(client)
    }
}

/// Replaces every occurrence of a secret in a stream of chunks, also across chunk boundaries,
/// by holding back the last `len - 1` bytes of each chunk until the next arrives.
#[derive(Debug)]
pub struct Redactor {
    secret: Vec<u8>,
    carry: Vec<u8>,
}

impl Redactor {
    pub fn new(secret: Vec<u8>) -> Redactor {
        Redactor {
            secret,
            carry: Vec::new(),
        }
    }

    /// The redacted bytes that are safe to send now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut buffer = std::mem::take(&mut self.carry);
        buffer.extend_from_slice(chunk);
        let n = self.secret.len();
        if n == 0 {
            return buffer;
        }
        let mut out = Vec::with_capacity(buffer.len());
        let mut at = 0;
        while at < buffer.len() {
            if buffer[at..].starts_with(&self.secret) {
                out.extend_from_slice(REDACTED);
                at += n;
            } else if buffer.len() - at < n && self.secret.starts_with(&buffer[at..]) {
                // Could be the start of the secret, cut by the chunk boundary.
                self.carry = buffer[at..].to_vec();
                break;
            } else {
                out.push(buffer[at]);
                at += 1;
            }
        }
        out
    }

    /// What was held back, at the end of the stream (it cannot complete the secret any more).
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }
}

fn redact_all(secret: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut redactor = Redactor::new(secret.to_vec());
    let mut out = redactor.push(bytes);
    out.extend(redactor.finish());
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// The part of the path below `/tools/{id}` (or its agent and WebSocket twins), checked.
fn tool_path<'a>(path: &'a str, prefix: &str) -> Result<&'a str, ApiError> {
    let below = path
        .strip_prefix(prefix)
        .ok_or_else(|| ApiError::InvalidInput(format!("the path must start with {prefix}")))?;
    let below = if below.is_empty() { "/" } else { below };
    let lowered = below.to_ascii_lowercase();
    // Encoded dots, slashes and percent signs (decoded twice by some servers), backslashes and
    // `;` (Tomcat and Jetty read `..;` as `..`) could all name a path the allow-list never saw.
    if ["%2e", "%2f", "%5c", "%25", "\\", ";"]
        .iter()
        .any(|bad| lowered.contains(bad))
    {
        return Err(ApiError::InvalidInput(
            "the tool path may not contain encoded dots, slashes or percent signs, backslashes or ';'"
                .into(),
        ));
    }
    Ok(below)
}

/// [`tool_path`], refused unless the tool's allow-list (its agents' list, for agents) has it.
fn allowed_path<'a>(tool: &ToolRecord, path: &'a str, route: &Route) -> Result<&'a str, ApiError> {
    let below = tool_path(path, &route.prefix)?;
    if !tool.allows(below, route.agent) {
        let whose = if route.agent { "agents' " } else { "" };
        return Err(ApiError::Forbidden(format!(
            "{below:?} is not on the {whose}allow-list of tool {:?}",
            tool.id
        )));
    }
    Ok(below)
}

/// Who is calling through which door.
#[derive(Debug)]
struct Route {
    tenant: TenantId,
    /// `/tools/agent/…`: an agent, held to the tool's agent allow-list.
    agent: bool,
    prefix: String,
    /// When the caller's token expires (Unix ms): a bridged WebSocket ends then.
    expires_at_ms: i64,
}

impl Route {
    fn admin(admin: Admin, prefix: String) -> Route {
        Route {
            tenant: admin.tenant,
            agent: false,
            prefix,
            expires_at_ms: admin.expires_at_ms,
        }
    }

    fn agent(agent: Agent, prefix: String) -> Route {
        Route {
            tenant: agent.tenant,
            agent: true,
            prefix,
            expires_at_ms: agent.expires_at_ms,
        }
    }
}

async fn load_tool(state: &AppState, tenant: &TenantId, id: &str) -> Result<ToolRecord, ApiError> {
    match state.gateway.tools.get(tenant, id).await? {
        Some(tool) if tool.enabled => Ok(tool),
        _ => Err(ApiError::NotFound(format!(
            "tool {:?} is not registered",
            id.chars().take(63).collect::<String>()
        ))),
    }
}

/// Adds the tool's credential to `headers`; returns the secret, to redact it from answers.
fn inject_credential(
    state: &AppState,
    tenant: &TenantId,
    tool: &ToolRecord,
    headers: &mut HeaderMap,
) -> Result<Vec<u8>, ApiError> {
    let credential = state
        .gateway
        .tools
        .credential(tenant, tool)
        .map_err(ApiError::Unexpected)?;
    Ok(match credential {
        Some((name, value, secret)) => {
            headers.insert(name, value);
            secret
        }
        None => Vec::new(),
    })
}

/// The query string, minus a token given for our own authentication.
fn forwarded_query(query: Option<&str>) -> String {
    let Some(query) = query else {
        return String::new();
    };
    // Names are compared decoded, as the token finder reads them (`%61uthorization` too).
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            url::form_urlencoded::parse(name.as_bytes())
                .next()
                .is_none_or(|(decoded, _)| decoded != "authorization")
        })
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    }
}

fn copy_request_headers(from: &HeaderMap, peer: Option<std::net::IpAddr>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in FORWARDED.iter().copied() {
        for value in from.get_all(name) {
            headers.append(HeaderName::from_static(name), value.clone());
        }
    }
    if let Some(id) = from.get("x-request-id") {
        headers.insert("x-request-id", id.clone());
    }
    // Set here, never passed on: the tool learns the real client and that it came over HTTPS.
    if let Some(peer) = peer.and_then(|peer| HeaderValue::from_str(&peer.to_string()).ok()) {
        headers.insert("x-forwarded-for", peer);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers
}

pub async fn admin_rest(
    State(state): State<AppState>,
    admin: Admin,
    Path((tool_id, _)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let route = Route::admin(admin, format!("/tools/{tool_id}"));
    forward(&state, &route, &tool_id, request).await
}

pub async fn agent_rest(
    State(state): State<AppState>,
    agent: Agent,
    Path((tool_id, _)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let route = Route::agent(agent, format!("/tools/agent/{tool_id}"));
    forward(&state, &route, &tool_id, request).await
}

async fn forward(
    state: &AppState,
    route: &Route,
    tool_id: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let tenant = &route.tenant;
    let tool = load_tool(state, tenant, tool_id).await?;
    let (parts, body) = request.into_parts();
    let path = allowed_path(&tool, parts.uri.path(), route)?;
    let url = format!(
        "{}{path}{}",
        tool.api_url,
        forwarded_query(parts.uri.query())
    );
    let limit = state.config.gateway.max_body_bytes;
    let body = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit })?;
    let peer = parts.extensions.get::<PeerAddr>().map(|peer| peer.0.ip());
    let mut headers = copy_request_headers(&parts.headers, peer);
    let secret = inject_credential(state, tenant, &tool, &mut headers)?;
    let client = state.gateway.upstreams.client(&tool)?;
    let timeout = Duration::from_secs(state.config.gateway.tool_timeout_seconds);
    let upstream = client
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|error| upstream_error(&tool, &error))?;
    let status = upstream.status();
    // Asked for `identity`; a compressed answer could hide the credential from redaction.
    let encoded = upstream
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|encoding| !encoding.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded && !secret.is_empty() {
        return Err(ApiError::BadGateway(format!(
            "tool {:?} answered compressed, which the proxy cannot check for its credential",
            tool.id
        )));
    }
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(TOOL_CSP),
    );
    for (name, value) in upstream.headers() {
        if NOT_RETURNED.contains(&name.as_str()) {
            continue;
        }
        if contains(value.as_bytes(), &secret) {
            let redacted = redact_all(&secret, value.as_bytes());
            if let Ok(value) = HeaderValue::from_bytes(&redacted) {
                response_headers.append(name.clone(), value);
            }
            continue;
        }
        response_headers.append(name.clone(), value.clone());
    }
    let mut redactor = Redactor::new(secret);
    let mut upstream_body = upstream.bytes_stream();
    let stream = async_stream(move |sender| async move {
        while let Some(chunk) = upstream_body.next().await {
            match chunk {
                Ok(chunk) => {
                    let safe = redactor.push(&chunk);
                    if !safe.is_empty() && sender.send(Ok(Bytes::from(safe))).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let _ = sender.send(Err(std::io::Error::other(error))).await;
                    return;
                }
            }
        }
        let rest = redactor.finish();
        if !rest.is_empty() {
            let _ = sender.send(Ok(Bytes::from(rest))).await;
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    Ok(response)
}

/// A body stream fed by a task, so the redactor can hold state across chunks.
fn async_stream<F, Fut>(
    produce: F,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, mut receiver) = tokio::sync::mpsc::channel(8);
    tokio::spawn(produce(sender));
    futures_util::stream::poll_fn(move |context| receiver.poll_recv(context))
}

pub(super) fn upstream_error(tool: &ToolRecord, error: &reqwest::Error) -> ApiError {
    if error.is_timeout() {
        return ApiError::GatewayTimeout(format!("tool {:?} did not answer in time", tool.id));
    }
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(error) = source {
        chain.push_str(&error.to_string());
        chain.push(' ');
        source = error.source();
    }
    tracing::warn!(tool = %tool.id, error = %chain, "a tool request failed");
    if chain.contains("certificate") || chain.contains("UnknownIssuer") {
        return ApiError::BadGateway(format!(
            "tool {:?}: its TLS certificate could not be verified; register the tool with its CA file",
            tool.id
        ));
    }
    ApiError::BadGateway(format!("tool {:?} cannot be reached", tool.id))
}

/// `GET /tools/{toolId}/health` and `POST /tools/{toolId}/test`: requests the tool's health
/// path with its credential and says how that went; nothing of the answer is passed on.
pub async fn health(
    State(state): State<AppState>,
    admin: Admin,
    Path(tool_id): Path<String>,
) -> Result<Response, ApiError> {
    let tool = load_tool(&state, &admin.tenant, &tool_id).await?;
    let report = super::health::check(&state, &admin.tenant, &tool).await;
    let code = if report.healthy {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    let body = serde_json::json!({
        "toolId": tool.id,
        "healthy": report.healthy,
        "upstreamStatus": report.upstream_status,
        "latencyMs": report.latency_ms,
        "message": report.message,
    });
    Ok((code, axum::Json(body)).into_response())
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Upstream = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

fn tls_config(tool: &ToolRecord) -> Result<rustls::ClientConfig, ApiError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| ApiError::Unexpected(error.into()))?;
    let config = if !tool.tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else if !tool.ca_file.is_empty() {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let certificates = CertificateDer::pem_file_iter(&tool.ca_file).map_err(|_| {
            ApiError::BadGateway(format!("tool {}: cannot read its CA file", tool.id))
        })?;
        for certificate in certificates.flatten() {
            let _ = roots.add(certificate);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        use rustls_platform_verifier::BuilderVerifierExt;
        builder
            .with_platform_verifier()
            .map_err(|error| ApiError::Unexpected(error.into()))?
            .with_no_client_auth()
    };
    Ok(config)
}

/// Accepts any certificate: only for tools whose operator turned verification off.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn connect_upstream(
    tool: &ToolRecord,
    url: &str,
    headers: HeaderMap,
    timeout: Duration,
) -> Result<Upstream, ApiError> {
    use tungstenite::client::IntoClientRequest;
    let parsed = url::Url::parse(url).map_err(|_| {
        ApiError::BadGateway(format!("tool {:?}: its WebSocket URL is invalid", tool.id))
    })?;
    let host = parsed
        .host_str()
        .ok_or_else(|| {
            ApiError::BadGateway(format!("tool {:?}: its WebSocket URL has no host", tool.id))
        })?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let secure = parsed.scheme() == "wss";
    let port = parsed.port().unwrap_or(if secure { 443 } else { 80 });
    let unreachable = || ApiError::BadGateway(format!("tool {:?} cannot be reached", tool.id));
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|_| unreachable())?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = if secure {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(tool)?));
            let name =
                rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| unreachable())?;
            let tls = connector.connect(name, tcp).await.map_err(|error| {
                tracing::warn!(tool = %tool.id, %error, "a tool's TLS handshake failed");
                ApiError::BadGateway(format!(
                    "tool {:?}: its TLS certificate could not be verified; register the tool with its CA file",
                    tool.id
                ))
            })?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let mut request = url.into_client_request().map_err(|_| {
            ApiError::BadGateway(format!("tool {:?}: its WebSocket URL is invalid", tool.id))
        })?;
        request.headers_mut().extend(headers);
        let (socket, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(|error| {
                tracing::warn!(tool = %tool.id, %error, "a tool's WebSocket handshake failed");
                ApiError::BadGateway(format!("tool {:?} refused the WebSocket", tool.id))
            })?;
        Ok(socket)
    };
    tokio::time::timeout(timeout, connect).await.map_err(|_| {
        ApiError::GatewayTimeout(format!("tool {:?} did not answer in time", tool.id))
    })?
}

pub async fn admin_ws(
    State(state): State<AppState>,
    admin: Admin,
    Path((tool_id, _)): Path<(String, String)>,
    upgrade: WebSocketUpgrade,
    request: Request,
) -> Result<Response, ApiError> {
    let route = Route::admin(admin, format!("/ws/tools/{tool_id}"));
    bridge(&state, route, &tool_id, upgrade, request).await
}

pub async fn agent_ws(
    State(state): State<AppState>,
    agent: Agent,
    Path((tool_id, _)): Path<(String, String)>,
    upgrade: WebSocketUpgrade,
    request: Request,
) -> Result<Response, ApiError> {
    let route = Route::agent(agent, format!("/ws/tools/agent/{tool_id}"));
    bridge(&state, route, &tool_id, upgrade, request).await
}

async fn bridge(
    state: &AppState,
    route: Route,
    tool_id: &str,
    upgrade: WebSocketUpgrade,
    request: Request,
) -> Result<Response, ApiError> {
    let tenant = &route.tenant;
    let tool = load_tool(state, tenant, tool_id).await?;
    let Some(ws_url) = tool.ws_url.clone() else {
        return Err(ApiError::NotFound(format!(
            "tool {tool_id:?} has no WebSocket endpoint"
        )));
    };
    let path = allowed_path(&tool, request.uri().path(), &route)?;
    let url = format!("{ws_url}{path}{}", forwarded_query(request.uri().query()));
    let mut headers = HeaderMap::new();
    for name in ["sec-websocket-protocol", "user-agent", "x-request-id"] {
        if let Some(value) = request.headers().get(name) {
            headers.insert(HeaderName::from_static(name), value.clone());
        }
    }
    let secret = inject_credential(state, tenant, &tool, &mut headers)?;
    let timeout = Duration::from_secs(state.config.gateway.tool_timeout_seconds);
    // Connect upstream first, so a failure is an HTTP answer the client can read.
    let upstream = connect_upstream(&tool, &url, headers, timeout).await?;
    let limit = usize::try_from(state.config.gateway.max_body_bytes).unwrap_or(usize::MAX);
    // The bridge lives no longer than the token that opened it.
    let remaining_ms = route.expires_at_ms - state.identity.clock.now_ms();
    let lifetime = Duration::from_millis(u64::try_from(remaining_ms).unwrap_or(0));
    Ok(upgrade
        .max_message_size(limit)
        .on_upgrade(move |client| pump(client, upstream, secret, lifetime)))
}

fn to_upstream(message: ws::Message) -> Option<tungstenite::Message> {
    Some(match message {
        ws::Message::Text(text) => tungstenite::Message::text(text.as_str()),
        ws::Message::Binary(bytes) => tungstenite::Message::binary(bytes),
        ws::Message::Ping(bytes) => tungstenite::Message::Ping(bytes),
        ws::Message::Pong(bytes) => tungstenite::Message::Pong(bytes),
        ws::Message::Close(_) => return None,
    })
}

fn to_client(message: tungstenite::Message, secret: &[u8]) -> Option<ws::Message> {
    Some(match message {
        tungstenite::Message::Text(text) => {
            let redacted = redact_all(secret, text.as_bytes());
            ws::Message::text(String::from_utf8_lossy(&redacted).into_owned())
        }
        tungstenite::Message::Binary(bytes) => {
            ws::Message::binary(Bytes::from(redact_all(secret, &bytes)))
        }
        tungstenite::Message::Ping(bytes) => ws::Message::Ping(bytes),
        tungstenite::Message::Pong(bytes) => ws::Message::Pong(bytes),
        tungstenite::Message::Close(_) | tungstenite::Message::Frame(_) => return None,
    })
}

async fn pump(client: WebSocket, upstream: Upstream, secret: Vec<u8>, lifetime: Duration) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut upstream_tx, mut upstream_rx) = upstream.split();
    let inbound = async {
        while let Some(Ok(message)) = client_rx.next().await {
            let Some(message) = to_upstream(message) else {
                break;
            };
            if upstream_tx.send(message).await.is_err() {
                break;
            }
        }
        let _ = upstream_tx.close().await;
    };
    let outbound = async {
        while let Some(Ok(message)) = upstream_rx.next().await {
            let Some(message) = to_client(message, &secret) else {
                break;
            };
            if client_tx.send(message).await.is_err() {
                break;
            }
        }
        let _ = client_tx.close().await;
    };
    // Either side ending, or the caller's token expiring, ends the bridge.
    tokio::select! {
        () = inbound => {}
        () = outbound => {}
        () = tokio::time::sleep(lifetime) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_across_chunk_boundaries() {
        let secret = b"s3cr3t-token".to_vec();
        let text = b"a s3cr3t-token b s3cr3t-token c s3cr3 end s3cr3t-token";
        for split in 0..text.len() {
            let mut redactor = Redactor::new(secret.clone());
            let mut out = redactor.push(&text[..split]);
            out.extend(redactor.push(&text[split..]));
            out.extend(redactor.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "a [REDACTED] b [REDACTED] c s3cr3 end [REDACTED]",
                "split at {split}"
            );
        }
    }

    #[test]
    fn tool_paths_refuse_encoded_escapes() {
        assert_eq!(tool_path("/tools/x/api/v1", "/tools/x").unwrap(), "/api/v1");
        assert_eq!(tool_path("/tools/x", "/tools/x").unwrap(), "/");
        for bad in [
            "/tools/x/a%2e%2e/b",
            "/tools/x/a%2Fb",
            "/tools/x/a\\b",
            "/tools/x/%5c",
        ] {
            assert!(tool_path(bad, "/tools/x").is_err(), "{bad}");
        }
        assert_eq!(forwarded_query(Some("a=1&authorization=t&b=2")), "?a=1&b=2");
        assert_eq!(forwarded_query(Some("authorization=t")), "");
    }
}
