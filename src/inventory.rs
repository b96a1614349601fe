//! The tenant's inventory as the event pipeline needs it: organizations (customers), machines and
//! their tool connections, stored in the document store under OpenFrame's collection names, with
//! an in-memory directory per tenant for enrichment (OpenFrame keeps it in Redis).
//!
//! Every write goes through [`Inventory`], which updates the store first and the directory after,
//! so the directory never shows something the store does not hold. The device APIs and agent
//! management build on these calls; they do not write the collections themselves.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use openframe_storage::analytics::DeviceRow;
use openframe_storage::documents::MAX_LIST;
use openframe_storage::error::DocumentError;
use openframe_storage::model::{Collection, DocumentId};
use openframe_storage::{Analytics, Clock, DocumentStore, TenantId};
use serde::{Deserialize, Serialize};

use crate::domain::Invalid;
use crate::stream::tools::DeviceRef;

const ORGANIZATIONS: &str = "organizations";
const MACHINES: &str = "machines";
const TOOL_CONNECTIONS: &str = "tool_connections";

/// A customer of the MSP (OpenFrame's organization).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub organization_id: String,
    pub name: String,
    /// `ACTIVE` or `ARCHIVED` (archived instead of deleted, because devices may come back).
    #[serde(default = "active")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_employees: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// OpenFrame's `contactInformation{contacts, physicalAddress, mailingAddress, …}`, kept as
    /// given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub contact_information: Option<serde_json::Value>,
    /// A decimal, as text (no floating point for money).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_revenue: Option<String>,
    /// `yyyy-MM-dd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_start_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_end_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_changed_at: Option<i64>,
}

fn active() -> String {
    "ACTIVE".to_owned()
}

impl Organization {
    /// An active organization with only a name.
    pub fn named(organization_id: impl Into<String>, name: impl Into<String>) -> Organization {
        Organization {
            organization_id: organization_id.into(),
            name: name.into(),
            status: active(),
            category: None,
            number_of_employees: None,
            website_url: None,
            notes: None,
            contact_information: None,
            monthly_revenue: None,
            contract_start_date: None,
            contract_end_date: None,
            created_at: None,
            updated_at: None,
            status_changed_at: None,
        }
    }
}

/// A managed device (OpenFrame's `machines` document; the optional fields are what its agent
/// reports at registration).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub machine_id: String,
    pub hostname: String,
    pub organization_id: Option<String>,
    /// `PENDING`, `ONLINE`, `OFFLINE`, … (OpenFrame's `DeviceStatus`).
    pub status: String,
    /// `DESKTOP`, `LAPTOP`, `SERVER`, … (OpenFrame's `DeviceType`).
    pub device_type: String,
    /// `WINDOWS`, `MAC_OS`, `LINUX`.
    pub os_type: String,
    /// `key:value` tags.
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The technicians' own name for the device (`updateDeviceNickname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_build: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// When the agent was last heard from (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<i64>,
    /// What the agent last reported beyond OpenFrame's fields (kernel, CPU, memory, disks,
    /// interfaces), and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Hardware>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_reported_at: Option<i64>,
}

/// One mounted disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    pub mount_point: String,
    pub device: String,
    pub filesystem: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// One network interface and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// A machine's hardware and kernel, as its agent reports them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hardware {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default)]
    pub disks: Vec<Disk>,
    #[serde(default)]
    pub network_interfaces: Vec<NetworkInterface>,
}

/// `machine.{id}.inventory` (beyond OpenFrame, whose agent sends device data only when it
/// registers): OpenFrame's device fields plus [`Hardware`], sent by the agent when it connects
/// and when something changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryReport {
    pub hostname: String,
    pub os_type: String,
    #[serde(default)]
    pub os_version: Option<String>,
    #[serde(flatten)]
    pub hardware: Hardware,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub mac_address: Option<String>,
    #[serde(default)]
    pub serial_number: Option<String>,
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub os_uuid: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
}

/// How much of a report the appliance keeps: the lists are capped, text is at most this long.
const REPORT_TEXT: usize = 255;
const REPORT_LIST: usize = 64;

impl InventoryReport {
    /// Checks the sizes of everything in the report, naming the first field out of bounds.
    pub fn validate(&self) -> Result<(), Invalid> {
        let too_long = |field: &'static str, value: Option<&str>| match value {
            Some(value) if value.len() > REPORT_TEXT => Err(Invalid::new(
                field,
                format!("must be at most {REPORT_TEXT} bytes"),
            )),
            _ => Ok(()),
        };
        let hardware = &self.hardware;
        for (field, value) in [
            ("hostname", Some(self.hostname.as_str())),
            ("osType", Some(self.os_type.as_str())),
            ("osVersion", self.os_version.as_deref()),
            ("kernel", hardware.kernel.as_deref()),
            ("architecture", hardware.architecture.as_deref()),
            ("cpuModel", hardware.cpu_model.as_deref()),
            ("ip", self.ip.as_deref()),
            ("macAddress", self.mac_address.as_deref()),
            ("serialNumber", self.serial_number.as_deref()),
            ("manufacturer", self.manufacturer.as_deref()),
            ("model", self.model.as_deref()),
            ("osUuid", self.os_uuid.as_deref()),
            ("timezone", self.timezone.as_deref()),
        ] {
            too_long(field, value)?;
        }
        if self.hostname.trim().is_empty() {
            return Err(Invalid::new("hostname", "must not be empty"));
        }
        if hardware.disks.len() > REPORT_LIST || hardware.network_interfaces.len() > REPORT_LIST {
            return Err(Invalid::new(
                "disks",
                format!("at most {REPORT_LIST} disks and {REPORT_LIST} networkInterfaces"),
            ));
        }
        for disk in &hardware.disks {
            too_long("disks.mountPoint", Some(&disk.mount_point))?;
            too_long("disks.device", Some(&disk.device))?;
            too_long("disks.filesystem", Some(&disk.filesystem))?;
        }
        for interface in &hardware.network_interfaces {
            too_long("networkInterfaces.name", Some(&interface.name))?;
            too_long(
                "networkInterfaces.macAddress",
                interface.mac_address.as_deref(),
            )?;
            if interface.addresses.len() > REPORT_LIST {
                return Err(Invalid::new(
                    "networkInterfaces.addresses",
                    format!("at most {REPORT_LIST} per interface"),
                ));
            }
            for address in &interface.addresses {
                too_long("networkInterfaces.addresses", Some(address))?;
            }
        }
        Ok(())
    }

    /// Writes the report into the machine's record (the OS type stays what it registered as).
    pub fn apply(self, machine: &mut Machine, now: i64) {
        let keep = |new: Option<String>, old: &mut Option<String>| {
            if let Some(new) = new.filter(|value| !value.trim().is_empty()) {
                *old = Some(new);
            }
        };
        machine.hostname = self.hostname;
        keep(self.os_version, &mut machine.os_version);
        keep(self.ip, &mut machine.ip);
        keep(self.mac_address, &mut machine.mac_address);
        keep(self.serial_number, &mut machine.serial_number);
        keep(self.manufacturer, &mut machine.manufacturer);
        keep(self.model, &mut machine.model);
        keep(self.os_uuid, &mut machine.os_uuid);
        keep(self.timezone, &mut machine.timezone);
        machine.hardware = Some(self.hardware);
        machine.inventory_reported_at = Some(now);
    }
}

/// A machine's identity inside one tool: MeshCentral's `node//…`, Fleet's numeric host id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConnection {
    pub machine_id: String,
    /// `MESHCENTRAL`, `FLEET_MDM`, `OPENFRAME_RMM`.
    pub tool_type: String,
    pub agent_tool_id: String,
    /// `CONNECTED`, `DISCONNECTED`, `ERROR`.
    pub status: String,
    pub connected_at: i64,
}

/// Who an event concerns, as far as the inventory knows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attribution {
    pub machine_id: Option<String>,
    pub hostname: Option<String>,
    pub organization_id: Option<String>,
    pub organization_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0}")]
    NotFound(String),
    #[error("the inventory store is unavailable: {0}")]
    Unavailable(String),
}

impl From<DocumentError> for InventoryError {
    fn from(error: DocumentError) -> Self {
        match error {
            DocumentError::NotFound { what } => InventoryError::NotFound(what),
            other => InventoryError::Unavailable(other.to_string()),
        }
    }
}

impl From<openframe_storage::error::AnalyticsError> for InventoryError {
    fn from(error: openframe_storage::error::AnalyticsError) -> Self {
        InventoryError::Unavailable(error.to_string())
    }
}

/// One tenant's inventory in memory.
#[derive(Debug, Default)]
struct Directory {
    organizations: HashMap<String, Organization>,
    machines: HashMap<String, Machine>,
    /// `(tool_type, agent_tool_id)` → the latest connection (OpenFrame: order by `connectedAt`).
    connections: HashMap<(String, String), ToolConnection>,
}

impl Directory {
    fn connect(&mut self, connection: ToolConnection) {
        let key = (
            connection.tool_type.clone(),
            connection.agent_tool_id.clone(),
        );
        match self.connections.get(&key) {
            Some(known) if known.connected_at > connection.connected_at => {}
            _ => {
                self.connections.insert(key, connection);
            }
        }
    }

    fn attribute(&self, device: &DeviceRef) -> Attribution {
        let machine_id = match device {
            DeviceRef::Machine(id) => Some(id.clone()),
            DeviceRef::AgentToolId { tool_type, id } => self
                .connections
                .get(&((*tool_type).to_owned(), id.clone()))
                .map(|connection| connection.machine_id.clone()),
        };
        let machine = machine_id.as_ref().and_then(|id| self.machines.get(id));
        let organization = machine
            .and_then(|machine| machine.organization_id.as_ref())
            .and_then(|id| self.organizations.get(id));
        Attribution {
            machine_id: machine
                .map(|machine| machine.machine_id.clone())
                .or(machine_id),
            hostname: machine.map(|machine| machine.hostname.clone()),
            organization_id: machine.and_then(|machine| machine.organization_id.clone()),
            organization_name: organization.map(|organization| organization.name.clone()),
        }
    }
}

#[derive(Debug)]
pub struct Inventory {
    documents: Arc<dyn DocumentStore>,
    analytics: Arc<dyn Analytics>,
    clock: Arc<dyn Clock>,
    directories: RwLock<HashMap<TenantId, Arc<RwLock<Directory>>>>,
    /// Loads and writes take turns, so a load never misses a write that raced it.
    writing: tokio::sync::Mutex<()>,
}

impl Inventory {
    pub fn new(
        documents: Arc<dyn DocumentStore>,
        analytics: Arc<dyn Analytics>,
        clock: Arc<dyn Clock>,
    ) -> Inventory {
        Inventory {
            documents,
            analytics,
            clock,
            directories: RwLock::new(HashMap::new()),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    pub async fn put_organization(
        &self,
        tenant: &TenantId,
        organization: Organization,
    ) -> Result<(), InventoryError> {
        let _turn = self.writing.lock().await;
        store_organization(self.documents.as_ref(), tenant, &organization).await?;
        if let Some(directory) = self.loaded(tenant) {
            write(&directory)
                .organizations
                .insert(organization.organization_id.clone(), organization);
        }
        Ok(())
    }

    /// Inserts or replaces a machine, and its row in the analytics `devices` table.
    pub async fn put_machine(
        &self,
        tenant: &TenantId,
        machine: Machine,
    ) -> Result<(), InventoryError> {
        let id = document_id("machineId", &machine.machine_id)?;
        let _turn = self.writing.lock().await;
        self.store(tenant, MACHINES, &id, &machine).await?;
        self.analytics
            .upsert_devices(tenant, vec![self.device_row(&machine)])
            .await?;
        if let Some(directory) = self.loaded(tenant) {
            write(&directory)
                .machines
                .insert(machine.machine_id.clone(), machine);
        }
        Ok(())
    }

    /// Records that `machine_id` is `agent_tool_id` inside a tool (OpenFrame's unique
    /// `{tenantId, machineId, toolType}`: a machine has one connection per tool).
    pub async fn connect_tool(
        &self,
        tenant: &TenantId,
        connection: ToolConnection,
    ) -> Result<(), InventoryError> {
        if connection.agent_tool_id.is_empty() || connection.agent_tool_id.len() > 256 {
            return Err(Invalid::new("agentToolId", "must be 1 to 256 characters").into());
        }
        let id = document_id(
            "machineId",
            &format!("{}:{}", connection.machine_id, connection.tool_type),
        )?;
        let _turn = self.writing.lock().await;
        let machine = document_id("machineId", &connection.machine_id)?;
        if self
            .documents
            .get(tenant, &collection(MACHINES)?, &machine)
            .await?
            .is_none()
        {
            return Err(InventoryError::NotFound(format!(
                "machine {:?} does not exist",
                connection.machine_id
            )));
        }
        self.store(tenant, TOOL_CONNECTIONS, &id, &connection)
            .await?;
        if let Some(directory) = self.loaded(tenant) {
            write(&directory).connect(connection);
        }
        Ok(())
    }

    /// Marks every connection of a machine `DISCONNECTED` (a reinstalled agent must connect
    /// its tools again); the connections changed.
    pub async fn disconnect_tools(
        &self,
        tenant: &TenantId,
        machine_id: &str,
    ) -> Result<Vec<ToolConnection>, InventoryError> {
        let directory = self.directory(tenant).await?;
        let _turn = self.writing.lock().await;
        let connected: Vec<ToolConnection> = read(&directory)
            .connections
            .values()
            .filter(|connection| {
                connection.machine_id == machine_id && connection.status != "DISCONNECTED"
            })
            .cloned()
            .collect();
        let mut changed = Vec::with_capacity(connected.len());
        for mut connection in connected {
            connection.status = "DISCONNECTED".into();
            let id = document_id(
                "machineId",
                &format!("{}:{}", connection.machine_id, connection.tool_type),
            )?;
            self.store(tenant, TOOL_CONNECTIONS, &id, &connection)
                .await?;
            write(&directory).connections.insert(
                (
                    connection.tool_type.clone(),
                    connection.agent_tool_id.clone(),
                ),
                connection.clone(),
            );
            changed.push(connection);
        }
        Ok(changed)
    }

    /// The connections of a machine, one per tool.
    pub async fn tool_connections(
        &self,
        tenant: &TenantId,
        machine_id: &str,
    ) -> Result<Vec<ToolConnection>, InventoryError> {
        let directory = self.directory(tenant).await?;
        let mut found: Vec<ToolConnection> = read(&directory)
            .connections
            .values()
            .filter(|connection| connection.machine_id == machine_id)
            .cloned()
            .collect();
        found.sort_by(|a, b| a.tool_type.cmp(&b.tool_type));
        Ok(found)
    }

    /// Whether the tenant has this organization.
    pub async fn has_organization(
        &self,
        tenant: &TenantId,
        organization_id: &str,
    ) -> Result<bool, InventoryError> {
        let directory = self.directory(tenant).await?;
        if read(&directory).organizations.contains_key(organization_id) {
            return Ok(true);
        }
        // Perhaps made by the CLI since the directory was loaded: ask the store.
        let Ok(id) = DocumentId::parse(organization_id) else {
            return Ok(false);
        };
        let stored = self
            .documents
            .get(tenant, &collection(ORGANIZATIONS)?, &id)
            .await?
            .and_then(|document| serde_json::from_value::<Organization>(document.body).ok());
        let known = stored.is_some();
        if let Some(organization) = stored {
            write(&directory)
                .organizations
                .insert(organization.organization_id.clone(), organization);
        }
        Ok(known)
    }

    /// Lets `look` read the tenant's machines and organizations in memory (loading them on
    /// first use): queries filter and sort there and copy out only what they answer with.
    pub async fn view<R>(
        &self,
        tenant: &TenantId,
        look: impl FnOnce(&HashMap<String, Machine>, &HashMap<String, Organization>) -> R,
    ) -> Result<R, InventoryError> {
        let directory = self.directory(tenant).await?;
        let directory = read(&directory);
        Ok(look(&directory.machines, &directory.organizations))
    }

    /// One machine, as the store holds it.
    pub async fn machine(
        &self,
        tenant: &TenantId,
        machine_id: &str,
    ) -> Result<Option<Machine>, InventoryError> {
        let Ok(id) = DocumentId::parse(machine_id) else {
            return Ok(None);
        };
        let found = self
            .documents
            .get(tenant, &collection(MACHINES)?, &id)
            .await?;
        found
            .map(|document| serde_json::from_value(document.body))
            .transpose()
            .map_err(|error| InventoryError::Unavailable(error.to_string()))
    }

    /// Reads a machine, lets `change` edit it and writes it back, in one turn with the other
    /// writes; the analytics row is written again only when a field it holds changed. Returns
    /// the machine as stored.
    pub async fn update_machine(
        &self,
        tenant: &TenantId,
        machine_id: &str,
        change: impl FnOnce(&mut Machine),
    ) -> Result<Machine, InventoryError> {
        let id = document_id("machineId", machine_id)?;
        let _turn = self.writing.lock().await;
        let before: Machine = match self
            .documents
            .get(tenant, &collection(MACHINES)?, &id)
            .await?
        {
            Some(document) => serde_json::from_value(document.body)
                .map_err(|error| InventoryError::Unavailable(error.to_string()))?,
            None => {
                return Err(InventoryError::NotFound(format!(
                    "machine {machine_id:?} does not exist"
                )));
            }
        };
        let mut machine = before.clone();
        change(&mut machine);
        machine.machine_id = before.machine_id.clone();
        if machine == before {
            return Ok(machine);
        }
        self.store(tenant, MACHINES, &id, &machine).await?;
        let row_changed = (
            &machine.status,
            &machine.device_type,
            &machine.os_type,
            &machine.organization_id,
            &machine.tags,
        ) != (
            &before.status,
            &before.device_type,
            &before.os_type,
            &before.organization_id,
            &before.tags,
        );
        if row_changed {
            self.analytics
                .upsert_devices(tenant, vec![self.device_row(&machine)])
                .await?;
        }
        if let Some(directory) = self.loaded(tenant) {
            write(&directory)
                .machines
                .insert(machine.machine_id.clone(), machine.clone());
        }
        Ok(machine)
    }

    /// Presence for many machines at once: each `(machine, status, last_seen)` raises
    /// `lastSeen` and, when `status` is given, sets it (deleted, archived and decommissioned
    /// machines keep theirs). One analytics write for all status changes. Returns the machines
    /// whose status changed; unknown machines are skipped.
    pub async fn set_presence(
        &self,
        tenant: &TenantId,
        updates: &[(String, Option<&'static str>, i64)],
    ) -> Result<Vec<String>, InventoryError> {
        let machines = collection(MACHINES)?;
        let mut changed = Vec::new();
        let mut rows = Vec::new();
        let mut stored = Vec::new();
        let _turn = self.writing.lock().await;
        for (machine_id, status, last_seen) in updates {
            let Ok(id) = DocumentId::parse(machine_id) else {
                continue;
            };
            let Some(document) = self.documents.get(tenant, &machines, &id).await? else {
                continue;
            };
            let mut machine: Machine = serde_json::from_value(document.body)
                .map_err(|error| InventoryError::Unavailable(error.to_string()))?;
            let before = machine.clone();
            machine.last_seen = Some(machine.last_seen.unwrap_or(0).max(*last_seen));
            let frozen = matches!(
                machine.status.as_str(),
                "DELETED" | "ARCHIVED" | "DECOMMISSIONED"
            );
            if let Some(status) = status
                && !frozen
                && machine.status != *status
            {
                machine.status = (*status).to_owned();
                changed.push(machine_id.clone());
                rows.push(self.device_row(&machine));
            }
            if machine != before {
                self.store(tenant, MACHINES, &id, &machine).await?;
                stored.push(machine);
            }
        }
        if !rows.is_empty() {
            self.analytics.upsert_devices(tenant, rows).await?;
        }
        if let Some(directory) = self.loaded(tenant) {
            let mut directory = write(&directory);
            for machine in stored {
                directory
                    .machines
                    .insert(machine.machine_id.clone(), machine);
            }
        }
        Ok(changed)
    }

    /// Every machine of the tenant, from the store.
    pub async fn machines(&self, tenant: &TenantId) -> Result<Vec<Machine>, InventoryError> {
        self.all::<Machine>(tenant, MACHINES).await
    }

    /// Writes the analytics `devices` rows of every machine again (after the analytics store
    /// was rebuilt). Returns how many.
    pub async fn republish_devices(&self, tenant: &TenantId) -> Result<usize, InventoryError> {
        let machines = self.machines(tenant).await?;
        let rows: Vec<DeviceRow> = machines
            .iter()
            .map(|machine| self.device_row(machine))
            .collect();
        let count = rows.len();
        for chunk in rows.chunks(1000) {
            self.analytics
                .upsert_devices(tenant, chunk.to_vec())
                .await?;
        }
        Ok(count)
    }

    fn device_row(&self, machine: &Machine) -> DeviceRow {
        let tags = machine
            .tags
            .iter()
            .map(|tag| {
                tag.split_once(':')
                    .map_or(tag.as_str(), |(key, _)| key)
                    .to_owned()
            })
            .collect();
        DeviceRow {
            machine_id: machine.machine_id.clone(),
            status: machine.status.clone(),
            device_type: machine.device_type.clone(),
            os_type: machine.os_type.clone(),
            organization_id: machine.organization_id.clone(),
            tags,
            tag_key_values: machine.tags.clone(),
            ingestion_time: self.clock.now_ms(),
        }
    }

    /// The machine, hostname and organization an event concerns. Unknown devices give what is
    /// known (perhaps nothing); only the store failing is an error.
    pub async fn attribute(
        &self,
        tenant: &TenantId,
        device: &DeviceRef,
    ) -> Result<Attribution, InventoryError> {
        let directory = self.directory(tenant).await?;
        let attribution = read(&directory).attribute(device);
        Ok(attribution)
    }

    fn loaded(&self, tenant: &TenantId) -> Option<Arc<RwLock<Directory>>> {
        self.directories
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant)
            .cloned()
    }

    async fn directory(&self, tenant: &TenantId) -> Result<Arc<RwLock<Directory>>, InventoryError> {
        if let Some(directory) = self.loaded(tenant) {
            return Ok(directory);
        }
        let _turn = self.writing.lock().await;
        if let Some(directory) = self.loaded(tenant) {
            return Ok(directory);
        }
        let mut directory = Directory::default();
        for organization in self.all::<Organization>(tenant, ORGANIZATIONS).await? {
            directory
                .organizations
                .insert(organization.organization_id.clone(), organization);
        }
        for machine in self.all::<Machine>(tenant, MACHINES).await? {
            directory
                .machines
                .insert(machine.machine_id.clone(), machine);
        }
        for connection in self.all::<ToolConnection>(tenant, TOOL_CONNECTIONS).await? {
            directory.connect(connection);
        }
        let directory = Arc::new(RwLock::new(directory));
        self.directories
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tenant.clone(), directory.clone());
        Ok(directory)
    }

    async fn all<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Vec<T>, InventoryError> {
        Ok(read_all(self.documents.as_ref(), tenant, &collection(name)?).await?)
    }

    async fn store<T: Serialize>(
        &self,
        tenant: &TenantId,
        name: &str,
        id: &DocumentId,
        record: &T,
    ) -> Result<(), InventoryError> {
        let body = serde_json::to_value(record)
            .map_err(|error| InventoryError::Unavailable(error.to_string()))?;
        self.documents
            .replace(tenant, &collection(name)?, id, &body, None)
            .await?;
        Ok(())
    }
}

/// Validates and writes an organization (the CLI uses this directly; the running appliance
/// goes through [`Inventory::put_organization`], which also updates its directory).
pub async fn store_organization(
    documents: &dyn DocumentStore,
    tenant: &TenantId,
    organization: &Organization,
) -> Result<(), InventoryError> {
    let id = document_id("organizationId", &organization.organization_id)?;
    let name = organization.name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(Invalid::new("name", "must be 1 to 255 characters").into());
    }
    let body = serde_json::to_value(organization)
        .map_err(|error| InventoryError::Unavailable(error.to_string()))?;
    documents
        .replace(tenant, &collection(ORGANIZATIONS)?, &id, &body, None)
        .await?;
    Ok(())
}

/// Every readable document of a collection, page by page; unreadable ones are skipped with a
/// warning (one bad document must not hide the rest).
pub(crate) async fn read_all<T: serde::de::DeserializeOwned>(
    documents: &dyn DocumentStore,
    tenant: &TenantId,
    collection: &Collection,
) -> Result<Vec<T>, DocumentError> {
    let mut found = Vec::new();
    let mut after: Option<DocumentId> = None;
    loop {
        let page = documents
            .list(tenant, collection, after.as_ref(), MAX_LIST)
            .await?;
        let full = page.len() == MAX_LIST;
        after = page.last().map(|document| document.id.clone());
        for document in page {
            match serde_json::from_value(document.body) {
                Ok(record) => found.push(record),
                Err(error) => tracing::warn!(
                    %tenant, collection = %collection, id = %document.id, %error,
                    "skipping an unreadable document"
                ),
            }
        }
        if !full {
            return Ok(found);
        }
    }
}

/// The names above are constants that satisfy the rule (a unit test parses each).
fn collection(name: &str) -> Result<Collection, InventoryError> {
    Collection::parse(name).map_err(|error| InventoryError::Unavailable(error.to_string()))
}

fn document_id(field: &'static str, value: &str) -> Result<DocumentId, Invalid> {
    DocumentId::parse(value).map_err(|_| Invalid::new(field, DocumentId::RULE))
}

fn read(directory: &RwLock<Directory>) -> std::sync::RwLockReadGuard<'_, Directory> {
    directory
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(directory: &RwLock<Directory>) -> std::sync::RwLockWriteGuard<'_, Directory> {
    directory
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_are_valid() {
        for name in [ORGANIZATIONS, MACHINES, TOOL_CONNECTIONS] {
            assert!(Collection::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn the_latest_connection_of_an_agent_tool_id_wins() {
        let mut directory = Directory::default();
        let connection = |machine: &str, at: i64| ToolConnection {
            machine_id: machine.into(),
            tool_type: "FLEET_MDM".into(),
            agent_tool_id: "41".into(),
            status: "CONNECTED".into(),
            connected_at: at,
        };
        directory.connect(connection("old", 1));
        directory.connect(connection("new", 2));
        directory.connect(connection("older", 0));
        let device = DeviceRef::AgentToolId {
            tool_type: "FLEET_MDM",
            id: "41".into(),
        };
        assert_eq!(
            directory.attribute(&device).machine_id.as_deref(),
            Some("new")
        );
        let other = DeviceRef::AgentToolId {
            tool_type: "MESHCENTRAL",
            id: "41".into(),
        };
        assert_eq!(directory.attribute(&other), Attribution::default());
    }
}
