//! Fleet's id for a machine. Fleet's agent (orbit) reports the osquery host UUID, while Fleet's
//! events name the numeric host id; OpenFrame looks the UUID up with Fleet's host search
//! (`GET /api/latest/fleet/hosts?query={uuid}`) before storing the connection, and retries
//! while Fleet does not know the host yet. So does this, with the tenant's registered
//! `FLEET_MDM` tool and its credential.

use std::sync::Arc;
use std::time::Duration;

use openframe_storage::TenantId;
use serde_json::Value;

use crate::gateway::Gateway;

/// What the lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Fleet's numeric host id.
    Found(String),
    /// Fleet answered, without a host of that UUID (yet).
    NotFound,
    /// The tenant has no enabled Fleet tool to ask.
    NoTool,
    /// Fleet could not be asked, or answered nonsense.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct FleetHosts {
    gateway: Arc<Gateway>,
    timeout: Duration,
}

/// Whether `id` is an osquery host UUID (Fleet's numeric ids are digits only).
pub fn is_host_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(at, c)| {
            if matches!(at, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

impl FleetHosts {
    pub fn new(gateway: Arc<Gateway>, timeout: Duration) -> FleetHosts {
        FleetHosts { gateway, timeout }
    }

    pub async fn host_id(&self, tenant: &TenantId, uuid: &str) -> Lookup {
        let tools = match self.gateway.tools.list(tenant).await {
            Ok(tools) => tools,
            Err(error) => return Lookup::Failed(format!("cannot list tools: {error}")),
        };
        let Some(tool) = tools
            .into_iter()
            .find(|tool| tool.enabled && tool.tool_type == "FLEET_MDM")
        else {
            return Lookup::NoTool;
        };
        let client = match self.gateway.upstreams.client(&tool) {
            Ok(client) => client,
            Err(error) => return Lookup::Failed(error.to_string()),
        };
        let mut request = client
            .get(format!(
                "{}/api/latest/fleet/hosts?query={}",
                tool.api_url,
                url::form_urlencoded::byte_serialize(uuid.as_bytes()).collect::<String>()
            ))
            .timeout(self.timeout);
        match self.gateway.tools.credential(tenant, &tool) {
            Ok(Some((name, value, _))) => request = request.header(name, value),
            Ok(None) => {}
            Err(error) => return Lookup::Failed(format!("the tool's credential: {error}")),
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Lookup::Failed(format!("Fleet could not be reached: {error}")),
        };
        if !response.status().is_success() {
            return Lookup::Failed(format!(
                "Fleet answered HTTP {}",
                response.status().as_u16()
            ));
        }
        let Ok(answer) = response.json::<Value>().await else {
            return Lookup::Failed("Fleet's answer is not JSON".into());
        };
        let Some(hosts) = answer.get("hosts").and_then(Value::as_array) else {
            return Lookup::Failed("Fleet's answer has no hosts list".into());
        };
        hosts
            .iter()
            .find(|host| {
                host.get("uuid")
                    .and_then(Value::as_str)
                    .is_some_and(|found| found.eq_ignore_ascii_case(uuid))
            })
            .and_then(|host| host.get("id").and_then(Value::as_u64))
            .map_or(Lookup::NotFound, |id| Lookup::Found(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_uuids_are_told_from_numeric_ids() {
        assert!(is_host_uuid("4c4c4544-0042-3510-8048-b7c04f4a4d32"));
        assert!(!is_host_uuid("42"));
        assert!(!is_host_uuid("4c4c4544x0042-3510-8048-b7c04f4a4d32"));
        assert!(!is_host_uuid("node//abc"));
    }
}
