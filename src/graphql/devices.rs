//! Devices (OpenFrame's `Machine`): `devices`, `deviceFilters`, `device`, `deviceById` and
//! `updateDeviceNickname`. Lists are filtered, searched, sorted and paged over the tenant's
//! inventory in memory, so a page of 100 devices out of 10,000 reads no store at all.

use std::collections::{BTreeMap, HashMap};

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};

use super::organizations::Customer;
use super::relay::{self, PageArgs, PageInfo};
use super::tags::TagNode;
use super::{GqlResult, enum_name, gql_error, request};
use crate::audit::AuditChange;
use crate::error::ApiError;
use crate::inventory::{Machine, Organization};
use crate::tags::device_tag_key as tag_key;

/// OpenFrame's `DeviceStatus`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeviceStatus {
    Active,
    Pending,
    Inactive,
    Maintenance,
    Decommissioned,
    Online,
    Offline,
    PendingDeletion,
    Deleted,
    Archived,
}

/// OpenFrame's `DeviceType`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeviceType {
    Desktop,
    Laptop,
    Server,
    MobileDevice,
    Tablet,
    NetworkDevice,
    IotDevice,
    VirtualMachine,
    ContainerHost,
    Other,
}

/// Statuses a device list leaves out unless asked for (OpenFrame's `DeviceService`).
pub(super) const HIDDEN_BY_DEFAULT: [&str; 3] = ["DELETED", "ARCHIVED", "PENDING"];

/// OpenFrame's `DeviceFilterInput`.
#[derive(InputObject, Default, Debug, Clone)]
pub struct DeviceFilterInput {
    pub statuses: Option<Vec<DeviceStatus>>,
    pub device_types: Option<Vec<DeviceType>>,
    pub os_types: Option<Vec<String>>,
    pub organization_ids: Option<Vec<String>>,
    /// Devices carrying any of these tag keys.
    pub tag_keys: Option<Vec<String>>,
    /// Devices carrying any of these tag values (`value`, or `key:value`).
    pub tag_values: Option<Vec<String>>,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum SortDirection {
    #[default]
    Asc,
    Desc,
}

/// OpenFrame's `SortInput`; for devices `field` is one of `_id`, `hostname`, `displayName`,
/// `nickname`, `status`, `lastSeen`.
#[derive(InputObject, Debug, Clone)]
pub struct SortInput {
    pub field: Option<String>,
    pub direction: Option<SortDirection>,
}

pub(crate) const SORT_FIELDS: [&str; 6] = [
    "_id",
    "hostname",
    "displayName",
    "nickname",
    "status",
    "lastSeen",
];
const OS_TYPES: [&str; 3] = ["WINDOWS", "MAC_OS", "LINUX"];

/// A device as GraphQL shows it.
#[derive(Debug, Clone)]
pub struct Device {
    machine: Box<Machine>,
    organization: Option<Organization>,
}

impl Device {
    /// The machine shown.
    pub(super) fn machine(&self) -> &Machine {
        &self.machine
    }

    /// The device as the external API shows it: the machine's fields, and its organization's
    /// id and name; `tags` (`key:value`) only when asked for.
    pub(crate) fn to_json(&self, include_tags: bool) -> serde_json::Value {
        let mut value = serde_json::to_value(&*self.machine).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            if !include_tags {
                object.remove("tags");
            }
            object.insert(
                "organization".into(),
                self.organization.as_ref().map_or(serde_json::Value::Null, |org| {
                    serde_json::json!({"organizationId": org.organization_id, "name": org.name})
                }),
            );
        }
        value
    }

    fn new(machine: &Machine, organizations: &HashMap<String, Organization>) -> Device {
        let organization = machine
            .organization_id
            .as_ref()
            .and_then(|id| organizations.get(id))
            .cloned();
        Device {
            machine: Box::new(machine.clone()),
            organization,
        }
    }
}

#[Object(name = "Machine")]
impl Device {
    /// The global id (`Machine:<machineId>`).
    pub async fn id(&self) -> ID {
        relay::global_id("Machine", &self.machine.machine_id)
    }
    async fn machine_id(&self) -> &str {
        &self.machine.machine_id
    }
    async fn hostname(&self) -> &str {
        &self.machine.hostname
    }
    async fn display_name(&self) -> Option<&str> {
        self.machine.display_name.as_deref()
    }
    async fn nickname(&self) -> Option<&str> {
        self.machine.nickname.as_deref()
    }
    /// `PENDING`, `ONLINE`, `OFFLINE`, … (`DeviceStatus`).
    async fn status(&self) -> &str {
        &self.machine.status
    }
    /// `DESKTOP`, `LAPTOP`, `SERVER`, … (`DeviceType`).
    #[graphql(name = "type")]
    async fn device_type(&self) -> &str {
        &self.machine.device_type
    }
    /// `WINDOWS`, `MAC_OS` or `LINUX`.
    async fn os_type(&self) -> &str {
        &self.machine.os_type
    }
    async fn organization_id(&self) -> Option<&str> {
        self.machine.organization_id.as_deref()
    }
    async fn organization(&self) -> Option<Customer> {
        self.organization.clone().map(Customer::from)
    }
    async fn ip(&self) -> Option<&str> {
        self.machine.ip.as_deref()
    }
    async fn mac_address(&self) -> Option<&str> {
        self.machine.mac_address.as_deref()
    }
    async fn os_uuid(&self) -> Option<&str> {
        self.machine.os_uuid.as_deref()
    }
    async fn agent_version(&self) -> Option<&str> {
        self.machine.agent_version.as_deref()
    }
    async fn os_version(&self) -> Option<&str> {
        self.machine.os_version.as_deref()
    }
    async fn os_build(&self) -> Option<&str> {
        self.machine.os_build.as_deref()
    }
    async fn serial_number(&self) -> Option<&str> {
        self.machine.serial_number.as_deref()
    }
    async fn manufacturer(&self) -> Option<&str> {
        self.machine.manufacturer.as_deref()
    }
    async fn model(&self) -> Option<&str> {
        self.machine.model.as_deref()
    }
    async fn timezone(&self) -> Option<&str> {
        self.machine.timezone.as_deref()
    }
    /// When the agent was last heard from (RFC 3339).
    async fn last_seen(&self) -> Option<String> {
        self.machine.last_seen.map(crate::api::iso)
    }
    async fn registered_at(&self) -> Option<String> {
        self.machine.registered_at.map(crate::api::iso)
    }
    /// What the device's agent last reported about its hardware and kernel (beyond
    /// OpenFrame); null until it has reported.
    async fn inventory(&self) -> Option<DeviceInventory> {
        let hardware = self.machine.hardware.as_ref()?;
        // Byte counts are Floats: exact up to 2^53 (8 PiB), where Int stops at 2 GiB.
        let bytes = |value: u64| value as f64;
        Some(DeviceInventory {
            kernel: hardware.kernel.clone(),
            architecture: hardware.architecture.clone(),
            cpu_model: hardware.cpu_model.clone(),
            cpu_cores: hardware
                .cpu_cores
                .map(|cores| i32::try_from(cores).unwrap_or(i32::MAX)),
            memory_bytes: hardware.memory_bytes.map(bytes),
            disks: hardware
                .disks
                .iter()
                .map(|disk| DeviceDisk {
                    mount_point: disk.mount_point.clone(),
                    device: disk.device.clone(),
                    filesystem: disk.filesystem.clone(),
                    total_bytes: bytes(disk.total_bytes),
                    free_bytes: bytes(disk.free_bytes),
                })
                .collect(),
            network_interfaces: hardware
                .network_interfaces
                .iter()
                .map(|interface| DeviceNetworkInterface {
                    name: interface.name.clone(),
                    mac_address: interface.mac_address.clone(),
                    addresses: interface.addresses.clone(),
                })
                .collect(),
            reported_at: self.machine.inventory_reported_at.map(crate::api::iso),
        })
    }
    /// The device's identities in the tools (MeshCentral node, Fleet host), latest first per tool.
    async fn tool_connections(&self, ctx: &Context<'_>) -> GqlResult<Vec<DeviceToolConnection>> {
        let request = request(ctx);
        let connections = request
            .state
            .inventory
            .tool_connections(&request.admin.tenant, &self.machine.machine_id)
            .await
            .map_err(|error| gql_error(error.into()))?;
        Ok(connections
            .into_iter()
            .map(|connection| DeviceToolConnection {
                id: relay::global_id(
                    "ToolConnection",
                    &format!("{}:{}", connection.tool_type, connection.agent_tool_id),
                ),
                machine_id: connection.machine_id,
                tool_type: connection.tool_type,
                agent_tool_id: connection.agent_tool_id,
                status: connection.status,
                connected_at: Some(crate::api::iso(connection.connected_at)),
            })
            .collect())
    }
    /// The agents installed on the device (the OpenFrame agent, tool agents), as they reported.
    async fn installed_agents(&self, ctx: &Context<'_>) -> GqlResult<Vec<InstalledAgent>> {
        let request = request(ctx);
        let collection = openframe_storage::model::Collection::parse("installed_agents")
            .map_err(|error| gql_error(ApiError::Unexpected(error.into())))?;
        let found = request
            .state
            .storage
            .documents
            .find_by_field(
                &request.admin.tenant,
                &collection,
                "machineId",
                &serde_json::Value::String(self.machine.machine_id.clone()),
                100,
            )
            .await
            .map_err(|error| gql_error(ApiError::Unexpected(error.into())))?;
        Ok(found
            .into_iter()
            .map(|document| {
                let text = |field: &str| document.body[field].as_str().map(str::to_owned);
                InstalledAgent {
                    id: relay::global_id("InstalledAgent", document.id.as_str()),
                    machine_id: self.machine.machine_id.clone(),
                    agent_type: text("agentType").unwrap_or_default(),
                    version: text("version"),
                    updated_at: document.body["updatedAt"].as_i64().map(crate::api::iso),
                }
            })
            .collect())
    }
    /// The device's tags as `key:value`.
    async fn tag_key_values(&self) -> &[String] {
        &self.machine.tags
    }
    /// The device's tags, each with this device's values (from memory: no query per device).
    async fn tags(&self, ctx: &Context<'_>) -> GqlResult<Vec<TagNode>> {
        let mut values = BTreeMap::<&str, Vec<String>>::new();
        for tag in &self.machine.tags {
            let entry = values.entry(tag_key(tag)).or_default();
            if !tag_value(tag).is_empty() {
                entry.push(tag_value(tag).to_owned());
            }
        }
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = values.keys().copied().collect();
        let request = request(ctx);
        let definitions = request
            .state
            .tags
            .device_tags(&request.admin.tenant, &keys)
            .await
            .map_err(|error| gql_error(error.into()))?;
        Ok(definitions
            .into_iter()
            .filter_map(|tag| {
                let values = values.get(tag.key.as_str())?.clone();
                Some(TagNode::new(tag, values))
            })
            .collect())
    }
}

/// A device's identity in one tool.
#[derive(SimpleObject, Debug)]
#[graphql(name = "ToolConnection")]
pub struct DeviceToolConnection {
    pub id: ID,
    pub machine_id: String,
    /// `MESHCENTRAL`, `FLEET_MDM`, `OPENFRAME_RMM`.
    pub tool_type: String,
    pub agent_tool_id: String,
    /// `CONNECTED`, `DISCONNECTED`, `ERROR`.
    pub status: String,
    pub connected_at: Option<String>,
}

/// An agent installed on a device.
#[derive(SimpleObject, Debug)]
pub struct InstalledAgent {
    pub id: ID,
    pub machine_id: String,
    pub agent_type: String,
    pub version: Option<String>,
    pub updated_at: Option<String>,
}

/// A device's hardware and kernel as its agent reported them.
#[derive(SimpleObject, Debug)]
pub struct DeviceInventory {
    pub kernel: Option<String>,
    pub architecture: Option<String>,
    pub cpu_model: Option<String>,
    /// Logical processors.
    pub cpu_cores: Option<i32>,
    pub memory_bytes: Option<f64>,
    pub disks: Vec<DeviceDisk>,
    pub network_interfaces: Vec<DeviceNetworkInterface>,
    /// When the agent reported it (RFC 3339).
    pub reported_at: Option<String>,
}

/// One mounted disk of a device.
#[derive(SimpleObject, Debug)]
pub struct DeviceDisk {
    pub mount_point: String,
    pub device: String,
    pub filesystem: String,
    pub total_bytes: f64,
    pub free_bytes: f64,
}

/// One network interface of a device.
#[derive(SimpleObject, Debug)]
pub struct DeviceNetworkInterface {
    pub name: String,
    pub mac_address: Option<String>,
    pub addresses: Vec<String>,
}

#[derive(SimpleObject, Debug)]
pub struct DeviceEdge {
    pub node: Device,
    pub cursor: String,
}

#[derive(SimpleObject, Debug)]
pub struct DeviceConnection {
    pub edges: Vec<DeviceEdge>,
    pub page_info: PageInfo,
    pub filtered_count: i32,
}

/// One facet value and how many devices of the filtered list have it.
#[derive(SimpleObject, Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceFilterOption {
    pub value: String,
    pub label: String,
    pub count: i32,
}

impl DeviceFilterOption {
    /// One option per counted value, labelled with the value itself.
    pub(super) fn counted(counts: BTreeMap<String, i32>) -> Vec<DeviceFilterOption> {
        counts
            .into_iter()
            .map(|(value, count)| DeviceFilterOption {
                label: value.clone(),
                value,
                count,
            })
            .collect()
    }
}

#[derive(SimpleObject, Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagFilterOption {
    pub key: String,
    pub value: String,
    pub count: i32,
}

/// OpenFrame's `DeviceFilters`: every facet of the filtered list, with counts.
#[derive(SimpleObject, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceFilters {
    pub statuses: Vec<DeviceFilterOption>,
    pub device_types: Vec<DeviceFilterOption>,
    pub os_types: Vec<DeviceFilterOption>,
    pub organization_ids: Vec<DeviceFilterOption>,
    pub tag_keys: Vec<TagFilterOption>,
    pub filtered_count: i32,
}

/// The checked form of a filter and search.
pub(crate) struct Selection {
    statuses: Option<Vec<&'static str>>,
    device_types: Option<Vec<&'static str>>,
    os_types: Option<Vec<String>>,
    organization_ids: Option<Vec<String>>,
    tag_keys: Option<Vec<String>>,
    tag_values: Option<Vec<String>>,
    search: Option<String>,
}

impl Selection {
    pub(crate) fn new(
        filter: Option<DeviceFilterInput>,
        search: Option<String>,
    ) -> Result<Selection, ApiError> {
        let filter = filter.unwrap_or_default();
        if let Some(os_types) = &filter.os_types
            && let Some(unknown) = os_types.iter().find(|os| !OS_TYPES.contains(&os.as_str()))
        {
            return Err(ApiError::InvalidInput(format!(
                "filter.osTypes: {unknown:?} is not an OS type (one of {})",
                OS_TYPES.join(", ")
            )));
        }
        let search = relay::search_text(search).map_err(invalid_input)?;
        Ok(Selection {
            statuses: filter
                .statuses
                .map(|statuses| statuses.into_iter().map(enum_name).collect()),
            device_types: filter
                .device_types
                .map(|types| types.into_iter().map(enum_name).collect()),
            os_types: filter.os_types,
            organization_ids: filter.organization_ids,
            tag_keys: filter.tag_keys,
            tag_values: filter.tag_values,
            search,
        })
    }

    fn keeps(&self, machine: &Machine) -> bool {
        let any = |wanted: &Option<Vec<String>>, value: Option<&str>| {
            wanted
                .as_ref()
                .is_none_or(|wanted| value.is_some_and(|value| wanted.iter().any(|w| w == value)))
        };
        let status_ok = match &self.statuses {
            Some(statuses) => statuses.contains(&machine.status.as_str()),
            None => !HIDDEN_BY_DEFAULT.contains(&machine.status.as_str()),
        };
        let type_ok = self
            .device_types
            .as_ref()
            .is_none_or(|types| types.contains(&machine.device_type.as_str()));
        let tag_keys_ok = self.tag_keys.as_ref().is_none_or(|keys| {
            machine
                .tags
                .iter()
                .any(|tag| keys.iter().any(|key| tag_key(tag) == key))
        });
        let tag_values_ok = self.tag_values.as_ref().is_none_or(|values| {
            machine.tags.iter().any(|tag| {
                values
                    .iter()
                    .any(|value| tag == value || tag_value(tag) == value)
            })
        });
        status_ok
            && type_ok
            && any(&self.os_types, Some(&machine.os_type))
            && any(&self.organization_ids, machine.organization_id.as_deref())
            && tag_keys_ok
            && tag_values_ok
            && self
                .search
                .as_ref()
                .is_none_or(|text| matches_search(machine, text))
    }
}

pub(super) fn tag_value(tag: &str) -> &str {
    tag.split_once(':').map_or("", |(_, value)| value)
}

/// OpenFrame's device search: case-insensitive, over hostname, display name, nickname, IP,
/// serial number, manufacturer and model.
fn matches_search(machine: &Machine, text: &str) -> bool {
    std::iter::once(Some(machine.hostname.as_str()))
        .chain([
            machine.display_name.as_deref(),
            machine.nickname.as_deref(),
            machine.ip.as_deref(),
            machine.serial_number.as_deref(),
            machine.manufacturer.as_deref(),
            machine.model.as_deref(),
        ])
        .flatten()
        .any(|field| field.to_lowercase().contains(text))
}

fn sort_key(machine: &Machine, field: &str) -> String {
    let id = &machine.machine_id;
    let text = |value: Option<&str>| relay::text_key(value.unwrap_or(""), id);
    match field {
        "hostname" => text(Some(&machine.hostname)),
        "displayName" => text(machine.display_name.as_deref()),
        "nickname" => text(machine.nickname.as_deref()),
        "status" => text(Some(&machine.status)),
        "lastSeen" => relay::number_key(machine.last_seen, id),
        _ => id.clone(),
    }
}

#[derive(Default, Debug)]
pub struct DeviceQuery;

#[Object]
impl DeviceQuery {
    /// The tenant's devices, filtered, searched, sorted (default: hostname, ascending) and
    /// paged. Without `filter.statuses`, DELETED, ARCHIVED and PENDING devices are left out.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "PageArgs::size(first, last) * child_complexity + 1")]
    async fn devices(
        &self,
        ctx: &Context<'_>,
        filter: Option<DeviceFilterInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        search: Option<String>,
        sort: Option<SortInput>,
    ) -> GqlResult<DeviceConnection> {
        let args = PageArgs::new(first, after, last, before)?;
        let selection = Selection::new(filter, search).map_err(gql_error)?;
        let request = request(ctx);
        let page = page_of_devices(
            request.state,
            &request.admin.tenant,
            &selection,
            sort,
            &args,
        )
        .await
        .map_err(gql_error)?;
        Ok(DeviceConnection {
            edges: page
                .rows
                .into_iter()
                .map(|(cursor, node)| DeviceEdge { node, cursor })
                .collect(),
            page_info: page.info,
            filtered_count: page.filtered_count,
        })
    }

    /// Facet counts of the filtered device list (the same filter and search as `devices`):
    /// each facet's counts add up to `filteredCount`, except tags (a device has several).
    async fn device_filters(
        &self,
        ctx: &Context<'_>,
        filter: Option<DeviceFilterInput>,
        search: Option<String>,
    ) -> GqlResult<DeviceFilters> {
        let selection = Selection::new(filter, search).map_err(gql_error)?;
        let request = request(ctx);
        facets(request.state, &request.admin.tenant, &selection)
            .await
            .map_err(gql_error)
    }

    /// One device by its machine id; null when the tenant has none such.
    async fn device(&self, ctx: &Context<'_>, machine_id: String) -> GqlResult<Option<Device>> {
        by_machine_id(ctx, &machine_id).await
    }

    /// One device by its global id.
    async fn device_by_id(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Device>> {
        match relay::local_id("id", &id, "Machine")? {
            Some(machine_id) => by_machine_id(ctx, &machine_id).await,
            None => Ok(None),
        }
    }
}

/// A validation error from the paging helpers, for REST.
fn invalid_input(error: async_graphql::Error) -> ApiError {
    ApiError::InvalidInput(error.message)
}

/// One page of devices, with the cursors of its rows.
pub(crate) struct DevicePage {
    pub rows: Vec<(String, Device)>,
    pub info: PageInfo,
    pub filtered_count: i32,
}

/// The tenant's devices `selection` keeps, sorted (default: hostname, ascending) and paged:
/// GraphQL's `devices` and the external API's list.
pub(crate) async fn page_of_devices(
    state: &crate::startup::AppState,
    tenant: &openframe_storage::TenantId,
    selection: &Selection,
    sort: Option<SortInput>,
    args: &PageArgs,
) -> Result<DevicePage, ApiError> {
    let field = sort
        .as_ref()
        .and_then(|sort| sort.field.clone())
        .unwrap_or_else(|| "hostname".to_owned());
    if !SORT_FIELDS.contains(&field.as_str()) {
        return Err(ApiError::InvalidInput(format!(
            "sort.field: {field:?} is not sortable (one of {})",
            SORT_FIELDS.join(", ")
        )));
    }
    let ascending = sort.and_then(|sort| sort.direction).unwrap_or_default() == SortDirection::Asc;
    state
        .inventory
        .view(tenant, |machines, organizations| {
            let mut sorted: Vec<(String, &Machine)> = machines
                .values()
                .filter(|machine| selection.keeps(machine))
                .map(|machine| (sort_key(machine, &field), machine))
                .collect();
            sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if !ascending {
                sorted.reverse();
            }
            relay::paginate(sorted, ascending, args)
                .map(|page| DevicePage {
                    rows: page
                        .rows
                        .into_iter()
                        .map(|(cursor, machine)| (cursor, Device::new(machine, organizations)))
                        .collect(),
                    info: page.info,
                    filtered_count: page.filtered_count,
                })
                .map_err(invalid_input)
        })
        .await?
}

/// Facet counts of the devices `selection` keeps: each facet's counts add up to
/// `filteredCount`, except tags (a device has several).
pub(crate) async fn facets(
    state: &crate::startup::AppState,
    tenant: &openframe_storage::TenantId,
    selection: &Selection,
) -> Result<DeviceFilters, ApiError> {
    Ok(state
        .inventory
        .view(tenant, |machines, organizations| {
            let mut statuses = BTreeMap::<String, i32>::new();
            let mut types = BTreeMap::<String, i32>::new();
            let mut os_types = BTreeMap::<String, i32>::new();
            let mut orgs = BTreeMap::<String, i32>::new();
            let mut tags = BTreeMap::<(String, String), i32>::new();
            let mut filtered = 0;
            for machine in machines.values().filter(|machine| selection.keeps(machine)) {
                filtered += 1;
                *statuses.entry(machine.status.clone()).or_default() += 1;
                *types.entry(machine.device_type.clone()).or_default() += 1;
                *os_types.entry(machine.os_type.clone()).or_default() += 1;
                if let Some(org) = &machine.organization_id {
                    *orgs.entry(org.clone()).or_default() += 1;
                }
                for tag in &machine.tags {
                    *tags
                        .entry((tag_key(tag).to_owned(), tag_value(tag).to_owned()))
                        .or_default() += 1;
                }
            }
            let options = DeviceFilterOption::counted;
            let organization_ids = orgs
                .into_iter()
                .map(|(id, count)| DeviceFilterOption {
                    label: organizations
                        .get(&id)
                        .map_or_else(|| id.clone(), |org| org.name.clone()),
                    value: id,
                    count,
                })
                .collect();
            DeviceFilters {
                statuses: options(statuses),
                device_types: options(types),
                os_types: options(os_types),
                organization_ids,
                tag_keys: tags
                    .into_iter()
                    .map(|((key, value), count)| TagFilterOption { key, value, count })
                    .collect(),
                filtered_count: filtered,
            }
        })
        .await?)
}

/// One device of the tenant, or `None`.
pub(crate) async fn device_of(
    state: &crate::startup::AppState,
    tenant: &openframe_storage::TenantId,
    machine_id: &str,
) -> Result<Option<Device>, ApiError> {
    Ok(state
        .inventory
        .view(tenant, |machines, organizations| {
            machines
                .get(machine_id)
                .map(|machine| Device::new(machine, organizations))
        })
        .await?)
}

/// Sets (or, with `None` or "", clears) a device's nickname; returns the nickname before and the
/// machine after. Another tenant's machine is not found.
pub(crate) async fn set_nickname(
    state: &crate::startup::AppState,
    tenant: &openframe_storage::TenantId,
    machine_id: &str,
    nickname: Option<String>,
) -> Result<(Option<String>, Machine), ApiError> {
    let nickname = nickname
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty());
    if let Some(name) = &nickname {
        if name.chars().count() > MAX_NICKNAME {
            return Err(ApiError::InvalidInput(format!(
                "nickname: at most {MAX_NICKNAME} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(ApiError::InvalidInput(
                "nickname: control characters are not allowed".into(),
            ));
        }
    }
    if device_of(state, tenant, machine_id).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "machineId: no device {machine_id:?}"
        )));
    }
    let mut before = None;
    let stored = state
        .inventory
        .update_machine(tenant, machine_id, |machine| {
            before = machine.nickname.clone();
            machine.nickname = nickname;
        })
        .await?;
    Ok((before, stored))
}

/// The tenant's devices a filter and search select, by hostname.
pub(super) async fn selected_devices(
    ctx: &Context<'_>,
    filter: Option<DeviceFilterInput>,
    search: Option<String>,
) -> GqlResult<Vec<Device>> {
    let selection = Selection::new(filter, search).map_err(gql_error)?;
    devices_where(ctx, |machines| {
        machines
            .values()
            .filter(|machine| selection.keeps(machine))
            .collect()
    })
    .await
}

/// The devices of these ids that the tenant has, by hostname.
pub(super) async fn devices_by_ids(ctx: &Context<'_>, ids: &[String]) -> GqlResult<Vec<Device>> {
    devices_where(ctx, |machines| {
        ids.iter().filter_map(|id| machines.get(id)).collect()
    })
    .await
}

/// The devices `pick` chooses from the tenant's machines, by hostname.
async fn devices_where(
    ctx: &Context<'_>,
    pick: impl FnOnce(&HashMap<String, Machine>) -> Vec<&Machine>,
) -> GqlResult<Vec<Device>> {
    let request = request(ctx);
    let mut devices = request
        .state
        .inventory
        .view(&request.admin.tenant, |machines, organizations| {
            pick(machines)
                .into_iter()
                .map(|machine| Device::new(machine, organizations))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|error| gql_error(error.into()))?;
    devices.sort_by_cached_key(|device| sort_key(&device.machine, "hostname"));
    Ok(devices)
}

pub(super) async fn by_machine_id(
    ctx: &Context<'_>,
    machine_id: &str,
) -> GqlResult<Option<Device>> {
    let request = request(ctx);
    device_of(request.state, &request.admin.tenant, machine_id)
        .await
        .map_err(gql_error)
}

/// The longest nickname.
const MAX_NICKNAME: usize = 100;

#[derive(Default, Debug)]
pub struct DeviceMutation;

#[Object]
impl DeviceMutation {
    /// Sets (or, with null or "", clears) a device's nickname.
    async fn update_device_nickname(
        &self,
        ctx: &Context<'_>,
        machine_id: String,
        nickname: Option<String>,
    ) -> GqlResult<Device> {
        let request = request(ctx);
        let (before, stored) =
            set_nickname(request.state, &request.admin.tenant, &machine_id, nickname)
                .await
                .map_err(gql_error)?;
        super::audit::record(
            ctx,
            "updateDeviceNickname",
            AuditChange {
                target_type: "Machine",
                target_id: machine_id.clone(),
                before: Some(serde_json::json!({ "nickname": before })),
                after: Some(serde_json::json!({ "nickname": stored.nickname })),
            },
        )
        .await;
        by_machine_id(ctx, &machine_id).await?.ok_or_else(|| {
            gql_error(ApiError::NotFound(format!(
                "machineId: no device {machine_id:?}"
            )))
        })
    }
}
