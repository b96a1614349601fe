//! The integrated tools the gateway proxies to (MeshCentral, Fleet MDM, …), one registry per
//! tenant in the `integrated_tools` collection: where the tool's API and WebSocket live, the
//! credential the proxy injects, and which paths may be reached through it.
//!
//! Credentials are stored sealed with the appliance's master key (bound to tenant and tool), are
//! opened only to build an upstream request, and are never part of any answer: tool listings
//! say `hasCredentials` (OpenFrame returns them to every admin).

use std::sync::Arc;

use openframe_storage::DocumentStore;
use openframe_storage::documents::MAX_LIST;
use openframe_storage::model::{Clock, Collection, DocumentId, TenantId, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::domain::Invalid;
use crate::identity::IdentityError;
use crate::identity::crypto::{MasterKey, b64url, b64url_decode};

/// How the proxy presents the tool's credential upstream (OpenFrame's `ToolCredentials` types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CredentialKind {
    /// `{header}: {secret}`.
    Header,
    /// `Authorization: Bearer {secret}`.
    BearerToken,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedCredential {
    pub kind: CredentialKind,
    pub header_name: String,
    /// AES-256-GCM under the master key, base64url.
    pub sealed: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolRecord {
    pub id: String,
    pub name: String,
    /// OpenFrame's tool type: `MESHCENTRAL`, `FLEET_MDM`, `OPENFRAME_RMM`, `TACTICAL_RMM`, ….
    pub tool_type: String,
    /// Base URL of the tool's REST API, `http(s)://host[:port][/prefix]`.
    pub api_url: String,
    /// Base URL of the tool's WebSocket endpoint, `ws(s)://…`.
    pub ws_url: Option<String>,
    pub credential: Option<SealedCredential>,
    /// Path prefixes (below the base URL) the proxy forwards for administrators; everything
    /// else is refused.
    pub allowed_paths: Vec<String>,
    /// The prefixes agents may reach through `/tools/agent/…` (empty: none). Separate, because
    /// the injected credential is usually the tool's admin token, and one compromised endpoint
    /// must not wield it.
    #[serde(default)]
    pub agent_allowed_paths: Vec<String>,
    /// A CA bundle (PEM) for a tool with a private certificate; empty: the system's roots.
    pub ca_file: String,
    /// Off only when the operator said so explicitly, for a tool with a self-signed certificate.
    pub tls_verify: bool,
    /// What `GET /tools/{id}/health` requests, below the base URL.
    pub health_path: String,
    /// How often the appliance checks the tool's health by itself (0: never).
    #[serde(default = "default_health_check_seconds")]
    pub health_check_seconds: u64,
    pub enabled: bool,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

fn default_health_check_seconds() -> u64 {
    DEFAULT_HEALTH_CHECK_SECONDS
}

/// Tools registered before health checks existed are checked this often.
pub const DEFAULT_HEALTH_CHECK_SECONDS: u64 = 60;

/// A tool to register or replace.
#[derive(Debug, Clone)]
pub struct NewTool {
    pub id: String,
    pub name: String,
    pub tool_type: String,
    pub api_url: String,
    pub ws_url: Option<String>,
    /// `(kind, header name, secret)`; the header name is ignored for bearer tokens.
    pub credential: Option<(CredentialKind, String, String)>,
    /// With no `credential`: keep the one stored (a change that does not resend the secret).
    pub keep_credential: bool,
    pub allowed_paths: Vec<String>,
    pub agent_allowed_paths: Vec<String>,
    pub ca_file: String,
    pub tls_verify: bool,
    pub health_path: String,
    /// 0, or 10 s to a day.
    pub health_check_seconds: u64,
}

/// The headers a credential may not be injected as: they belong to the connection or the proxy.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "cookie",
    "te",
    "trailer",
    "keep-alive",
];

impl ToolRecord {
    /// Whether `path` (below the base URL, starting with `/`) is on the allow-list, or on the
    /// agents' list for an agent.
    pub fn allows(&self, path: &str, agent: bool) -> bool {
        let list = if agent {
            &self.agent_allowed_paths
        } else {
            &self.allowed_paths
        };
        list.iter().any(|prefix| {
            prefix == "/"
                || path == prefix
                || path
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| prefix.ends_with('/') || rest.starts_with('/'))
        })
    }
}

#[derive(Debug, Clone)]
pub struct ToolRegistry {
    documents: Arc<dyn DocumentStore>,
    clock: Arc<dyn Clock>,
    master: Arc<MasterKey>,
    collection: Collection,
}

fn seal_context(tenant: &TenantId, tool: &str) -> Vec<u8> {
    format!("tool-credential\0{}\0{tool}", tenant.as_str()).into_bytes()
}

pub(crate) fn check_url(field: &'static str, value: &str, schemes: &[&str]) -> Result<(), Invalid> {
    let parsed = url::Url::parse(value)
        .map_err(|_| Invalid::new(field, format!("{value:?} is not a URL")))?;
    if !schemes.contains(&parsed.scheme()) || parsed.host_str().is_none() {
        return Err(Invalid::new(
            field,
            format!("must be a {} URL", schemes.join(" or ")),
        ));
    }
    if parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(Invalid::new(
            field,
            "must not carry a query, fragment or user information",
        ));
    }
    Ok(())
}

/// Tool ids appear in paths (`/tools/{id}/…`); `agent` is taken by `/tools/agent/…`.
pub fn check_tool_id(id: &str) -> Result<(), Invalid> {
    let well_formed = (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !id.starts_with('-');
    if !well_formed || id == "agent" {
        return Err(Invalid::new(
            "id",
            "must be 1 to 63 lower-case letters, digits or hyphens (and not \"agent\"), e.g. \"fleetmdm-server\"",
        ));
    }
    Ok(())
}

impl ToolRegistry {
    pub fn new(
        documents: Arc<dyn DocumentStore>,
        clock: Arc<dyn Clock>,
        master: Arc<MasterKey>,
    ) -> anyhow::Result<ToolRegistry> {
        Ok(ToolRegistry {
            documents,
            clock,
            master,
            collection: Collection::parse("integrated_tools")
                .map_err(|error| anyhow::anyhow!("{error}"))?,
        })
    }

    /// Registers a tool, or replaces its registration (keeping its creation time).
    pub async fn set(&self, tenant: &TenantId, tool: NewTool) -> Result<ToolRecord, IdentityError> {
        check_tool_id(&tool.id)?;
        check_url("apiUrl", &tool.api_url, &["http", "https"])?;
        if let Some(ws_url) = &tool.ws_url {
            check_url("wsUrl", ws_url, &["ws", "wss"])?;
        }
        if tool.allowed_paths.is_empty() {
            return Err(Invalid::new(
                "allowedPaths",
                "name at least one path prefix the proxy may reach, or \"/\" for all",
            )
            .into());
        }
        for path in tool
            .allowed_paths
            .iter()
            .chain(&tool.agent_allowed_paths)
            .chain(std::iter::once(&tool.health_path))
        {
            if !path.starts_with('/')
                || path.contains("..")
                || path.contains(['?', '#', '\\'])
                || path.chars().any(char::is_whitespace)
            {
                return Err(Invalid::new(
                    "allowedPaths",
                    format!("{path:?} must be a path starting with \"/\""),
                )
                .into());
            }
        }
        let name = tool.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Invalid::new("name", "must be 1 to 100 characters").into());
        }
        if tool.health_check_seconds != 0 && !(10..=86_400).contains(&tool.health_check_seconds) {
            return Err(Invalid::new(
                "healthCheckSeconds",
                "must be 0 (no checks) or 10 to 86400 seconds",
            )
            .into());
        }
        let existing = self.get(tenant, &tool.id).await?;
        let credential = match tool.credential {
            None if tool.keep_credential => existing
                .as_ref()
                .and_then(|existing| existing.credential.clone()),
            None => None,
            Some((kind, header_name, secret)) => {
                let header_name = match kind {
                    CredentialKind::BearerToken => "authorization".to_owned(),
                    CredentialKind::Header => header_name.to_ascii_lowercase(),
                };
                if axum::http::HeaderName::from_bytes(header_name.as_bytes()).is_err()
                    || (kind == CredentialKind::Header
                        && RESERVED_HEADERS.contains(&header_name.as_str()))
                {
                    return Err(Invalid::new(
                        "credential",
                        format!("{header_name:?} cannot carry a credential"),
                    )
                    .into());
                }
                if secret.is_empty() || axum::http::HeaderValue::from_str(&secret).is_err() {
                    return Err(Invalid::new(
                        "credential",
                        "the secret must be non-empty printable text",
                    )
                    .into());
                }
                let sealed = self
                    .master
                    .seal(&seal_context(tenant, &tool.id), secret.as_bytes())?;
                Some(SealedCredential {
                    kind,
                    header_name,
                    sealed: b64url(&sealed),
                })
            }
        };
        let now = self.clock.now_ms();
        let created_at = existing.map_or(now, |existing| existing.created_at);
        let record = ToolRecord {
            id: tool.id,
            name: name.to_owned(),
            tool_type: tool.tool_type,
            api_url: tool.api_url.trim_end_matches('/').to_owned(),
            ws_url: tool.ws_url.map(|url| url.trim_end_matches('/').to_owned()),
            credential,
            allowed_paths: tool.allowed_paths,
            agent_allowed_paths: tool.agent_allowed_paths,
            ca_file: tool.ca_file,
            tls_verify: tool.tls_verify,
            health_path: tool.health_path,
            health_check_seconds: tool.health_check_seconds,
            enabled: true,
            created_at,
            updated_at: now,
        };
        let body = serde_json::to_value(&record).map_err(anyhow::Error::from)?;
        let id =
            DocumentId::parse(&record.id).map_err(|error| Invalid::new("id", error.to_string()))?;
        self.documents
            .replace(tenant, &self.collection, &id, &body, None)
            .await?;
        Ok(record)
    }

    pub async fn get(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<ToolRecord>, IdentityError> {
        let Ok(id) = DocumentId::parse(id) else {
            return Ok(None);
        };
        match self.documents.get(tenant, &self.collection, &id).await? {
            Some(document) => Ok(Some(
                serde_json::from_value(document.body).map_err(anyhow::Error::from)?,
            )),
            None => Ok(None),
        }
    }

    /// Removes a tool; `false` when there was none.
    pub async fn delete(&self, tenant: &TenantId, id: &str) -> Result<bool, IdentityError> {
        let Ok(id) = DocumentId::parse(id) else {
            return Ok(false);
        };
        Ok(self
            .documents
            .delete(tenant, &self.collection, &id, None)
            .await?)
    }

    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<ToolRecord>, IdentityError> {
        let documents = self
            .documents
            .list(tenant, &self.collection, None, MAX_LIST)
            .await?;
        documents
            .into_iter()
            .map(|document| {
                serde_json::from_value(document.body)
                    .map_err(|error| IdentityError::Unexpected(error.into()))
            })
            .collect()
    }

    /// The credential as the header to inject, plus the secret (to redact it from answers).
    pub fn credential(
        &self,
        tenant: &TenantId,
        tool: &ToolRecord,
    ) -> anyhow::Result<Option<(axum::http::HeaderName, axum::http::HeaderValue, Vec<u8>)>> {
        let Some(credential) = &tool.credential else {
            return Ok(None);
        };
        let sealed = b64url_decode(&credential.sealed).ok_or_else(|| {
            anyhow::anyhow!("tool {}: the stored credential is not base64url", tool.id)
        })?;
        let secret = self.master.open(&seal_context(tenant, &tool.id), &sealed)?;
        let name = axum::http::HeaderName::from_bytes(credential.header_name.as_bytes())?;
        let value = match credential.kind {
            CredentialKind::Header => axum::http::HeaderValue::from_bytes(&secret)?,
            CredentialKind::BearerToken => {
                let mut bearer = b"Bearer ".to_vec();
                bearer.extend_from_slice(&secret);
                axum::http::HeaderValue::from_bytes(&bearer)?
            }
        };
        let mut value = value;
        value.set_sensitive(true);
        Ok(Some((name, value, secret)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(allowed: &[&str]) -> ToolRecord {
        ToolRecord {
            id: "fleet".into(),
            name: "Fleet".into(),
            tool_type: "FLEET_MDM".into(),
            api_url: "https://fleet.local".into(),
            ws_url: None,
            credential: None,
            allowed_paths: allowed.iter().map(|path| (*path).to_owned()).collect(),
            agent_allowed_paths: vec!["/agent.ashx".into()],
            ca_file: String::new(),
            tls_verify: true,
            health_path: "/".into(),
            health_check_seconds: 0,
            enabled: true,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn the_allow_list_matches_whole_segments() {
        let fleet = tool(&["/api/latest/fleet/hosts", "/api/v1/fleet/"]);
        assert!(fleet.allows("/api/latest/fleet/hosts", false));
        assert!(fleet.allows("/api/latest/fleet/hosts/12", false));
        assert!(fleet.allows("/api/v1/fleet/queries", false));
        assert!(!fleet.allows("/api/latest/fleet/hostsx", false));
        assert!(!fleet.allows("/api/latest/fleet/users", false));
        assert!(!fleet.allows("/", false));
        assert!(tool(&["/"]).allows("/anything/at/all", false));
        // Agents have their own, separate list.
        assert!(!tool(&["/"]).allows("/anything/at/all", true));
        assert!(fleet.allows("/agent.ashx", true));
        assert!(!fleet.allows("/api/latest/fleet/hosts", true));
    }

    #[test]
    fn tool_ids_fit_in_paths() {
        assert!(check_tool_id("meshcentral-server").is_ok());
        for bad in ["", "agent", "Mesh", "a/b", "-x", &"a".repeat(64)] {
            assert!(check_tool_id(bad).is_err(), "{bad}");
        }
    }
}
