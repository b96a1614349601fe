//! Script schedules in GraphQL (OpenFrame's `ScriptSchedule` and `ScheduleRun`): the
//! schedules (`scriptSchedule`, `scriptSchedules`, `scriptScheduleFilters`), their machines
//! (assigned by id, by a device filter, or by criteria), their runs (`scheduleRuns`,
//! `scheduleRunFilters`) and executions (`scheduleExecutions`, `scheduleExecutionFilters`), and
//! `runScheduleJobNow`. The rules are [`crate::management::schedules`]'s.

use std::collections::BTreeMap;

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};

use super::audit::{record, snapshot};
use super::devices::{Device, DeviceFilterInput, DeviceFilterOption, SortDirection, SortInput};
use super::logs::parse_instant;
use super::relay::{self, PageArgs, PageInfo};
use super::scripts::{
    DispatchResponse, EXECUTION_SORTS, EnvVarInput, ExecutionSelection, ScriptExecutionConnection,
    ScriptExecutionFilterInput, ScriptExecutionFilters, ScriptNode, ScriptPlatform, ScriptStatus,
    execution_connection, execution_filters, rmm_error, sorting,
};
use super::{GqlResult, enum_name, enum_of, gql_error, invalid, request};
use crate::audit::AuditChange;
use crate::error::ApiError;
use crate::management::rmm::{EnvVar, RmmError};
use crate::management::schedules::{
    Assign, DeviceCriteria, RunView, Schedule, ScheduleInput, ScriptParams,
};

/// OpenFrame's `ScheduleTrigger`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ScheduleTrigger {
    DateTime,
    DeviceOnline,
}

/// OpenFrame's `SelectionMode`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum SelectionMode {
    #[default]
    Specific,
    Criteria,
}

/// OpenFrame's `ScheduleRunStatus`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ScheduleRunStatus {
    Running,
    Success,
    Failed,
}

/// A script's arguments and (plain) variables within a schedule.
#[derive(SimpleObject, Debug, Clone)]
pub struct ScriptCustomParams {
    pub script_id: String,
    pub args: Option<Vec<String>>,
    pub env_vars: Vec<super::scripts::ScriptEnvVar>,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct ScheduleDeviceCriteria {
    pub organization_ids: Vec<String>,
    pub device_types: Vec<String>,
    pub os_types: Vec<String>,
}

/// A schedule as GraphQL shows it (type `ScriptSchedule`).
#[derive(Debug, Clone)]
pub struct ScheduleNode(Box<Schedule>);

fn iso(at: Option<i64>) -> Option<String> {
    at.map(crate::api::iso)
}

#[Object(name = "ScriptSchedule")]
impl ScheduleNode {
    /// The global id (`ScriptSchedule:<scheduleId>`).
    pub async fn id(&self) -> ID {
        relay::global_id("ScriptSchedule", &self.0.id)
    }
    async fn schedule_id(&self) -> &str {
        &self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn supported_platforms(&self) -> GqlResult<Vec<ScriptPlatform>> {
        self.0
            .supported_platforms
            .iter()
            .map(|platform| enum_of("platform", platform))
            .collect()
    }
    /// In the order they run.
    async fn script_ids(&self) -> &[String] {
        &self.0.script_ids
    }
    /// The scripts, in order; a script deleted since is left out.
    async fn scripts(&self, ctx: &Context<'_>) -> GqlResult<Vec<ScriptNode>> {
        let mut scripts = Vec::with_capacity(self.0.script_ids.len());
        for id in &self.0.script_ids {
            if let Some(script) = super::scripts::by_script_id(ctx, id).await? {
                scripts.push(script);
            }
        }
        Ok(scripts)
    }
    async fn script_custom_params(&self) -> Vec<ScriptCustomParams> {
        self.0
            .script_custom_params
            .iter()
            .map(|params| ScriptCustomParams {
                script_id: params.script_id.clone(),
                args: params.args.clone(),
                env_vars: params
                    .env_vars
                    .iter()
                    .map(|var| super::scripts::ScriptEnvVar {
                        name: var.name.clone(),
                        value: var.value.clone(),
                        secret: false,
                    })
                    .collect(),
            })
            .collect()
    }
    async fn selection_mode(&self) -> GqlResult<SelectionMode> {
        enum_of("selection mode", &self.0.selection_mode)
    }
    async fn device_criteria(&self) -> ScheduleDeviceCriteria {
        let criteria = &self.0.device_criteria;
        ScheduleDeviceCriteria {
            organization_ids: criteria.organization_ids.clone(),
            device_types: criteria.device_types.clone(),
            os_types: criteria.os_types.clone(),
        }
    }
    async fn trigger(&self) -> GqlResult<ScheduleTrigger> {
        enum_of("trigger", &self.0.trigger)
    }
    async fn start_at(&self) -> Option<String> {
        iso(self.0.start_at)
    }
    /// Seconds between firings (a multiple of 1800); null for a one-off.
    async fn repeat(&self) -> Option<i64> {
        self.0.repeat
    }
    async fn next_run_at(&self) -> Option<String> {
        iso(self.0.next_run_at)
    }
    async fn last_run_at(&self) -> Option<String> {
        iso(self.0.last_run_at)
    }
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    async fn created_at(&self) -> String {
        crate::api::iso(self.0.created_at)
    }
    async fn updated_at(&self) -> String {
        crate::api::iso(self.0.updated_at)
    }
    async fn status(&self) -> GqlResult<ScriptStatus> {
        enum_of("schedule status", &self.0.status)
    }
    async fn status_changed_at(&self) -> String {
        crate::api::iso(self.0.status_changed_at)
    }
    /// How many machines the schedule would run on now.
    async fn device_count(&self, ctx: &Context<'_>) -> GqlResult<i32> {
        let request = request(ctx);
        let targets = request
            .state
            .management
            .schedules
            .targets(&request.admin.tenant, &self.0)
            .await
            .map_err(rmm_error)?;
        Ok(i32::try_from(targets.len()).unwrap_or(i32::MAX))
    }
    /// The machines assigned by id (`SPECIFIC`), by hostname.
    #[graphql(complexity = "PageArgs::size(first, last) * child_complexity + 1")]
    async fn assigned_devices(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> GqlResult<ScheduleDeviceConnection> {
        let args = PageArgs::new(first, after, last, before)?;
        let devices = super::devices::devices_by_ids(ctx, &self.0.machine_ids).await?;
        device_page(devices, &self.0.machine_ids, &args)
    }
    /// The devices a filter and search select, each marked whether it is assigned (the
    /// picker of OpenFrame's UI).
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "PageArgs::size(first, last) * child_complexity + 1")]
    async fn available_devices(
        &self,
        ctx: &Context<'_>,
        filter: Option<DeviceFilterInput>,
        search: Option<String>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> GqlResult<ScheduleDeviceConnection> {
        let args = PageArgs::new(first, after, last, before)?;
        let devices = super::devices::selected_devices(ctx, filter, search).await?;
        device_page(devices, &self.0.machine_ids, &args)
    }
}

#[derive(SimpleObject, Debug)]
pub struct ScheduleDeviceEdge {
    pub node: Device,
    pub cursor: String,
    pub assigned: bool,
}

#[derive(SimpleObject, Debug)]
pub struct ScheduleDeviceConnection {
    pub edges: Vec<ScheduleDeviceEdge>,
    pub page_info: PageInfo,
    pub filtered_count: i32,
}

fn device_page(
    devices: Vec<Device>,
    assigned: &[String],
    args: &PageArgs,
) -> GqlResult<ScheduleDeviceConnection> {
    let sorted: Vec<(String, Device)> = devices
        .into_iter()
        .map(|device| {
            let machine = device.machine();
            (
                relay::text_key(&machine.hostname, &machine.machine_id),
                device,
            )
        })
        .collect();
    let page = relay::paginate(sorted, true, args)?;
    Ok(ScheduleDeviceConnection {
        edges: page
            .rows
            .into_iter()
            .map(|(cursor, device)| ScheduleDeviceEdge {
                assigned: assigned.contains(&device.machine().machine_id),
                node: device,
                cursor,
            })
            .collect(),
        page_info: page.info,
        filtered_count: page.filtered_count,
    })
}

/// One firing of a schedule (type `ScheduleRun`).
#[derive(Debug, Clone)]
pub struct RunNode(RunView);

#[Object(name = "ScheduleRun")]
impl RunNode {
    /// The global id (`ScheduleRun:<runId>`).
    pub async fn id(&self) -> ID {
        relay::global_id("ScheduleRun", &self.0.run.id)
    }
    async fn run_id(&self) -> &str {
        &self.0.run.id
    }
    async fn schedule_id(&self) -> &str {
        &self.0.run.schedule_id
    }
    async fn initiated_by(&self) -> &str {
        &self.0.run.initiated_by
    }
    /// `DATE_TIME`, `DEVICE_ONLINE` or `MANUAL` (`runScheduleJobNow`).
    async fn trigger(&self) -> &str {
        &self.0.run.trigger
    }
    async fn status(&self) -> GqlResult<ScheduleRunStatus> {
        enum_of("run status", self.0.status)
    }
    async fn total_machine_count(&self) -> i32 {
        i32::try_from(self.0.run.total_machine_count).unwrap_or(i32::MAX)
    }
    /// Progress: executions dispatched (one per script and machine), finished, and failed or
    /// cancelled.
    async fn execution_count(&self) -> i32 {
        i32::try_from(self.0.execution_count).unwrap_or(i32::MAX)
    }
    async fn finished_count(&self) -> i32 {
        i32::try_from(self.0.finished_count).unwrap_or(i32::MAX)
    }
    async fn failed_count(&self) -> i32 {
        i32::try_from(self.0.failed_count).unwrap_or(i32::MAX)
    }
    /// One per script dispatched (see `runExecutions`).
    async fn execution_ids(&self) -> &[String] {
        &self.0.run.execution_ids
    }
    async fn dispatched_at(&self) -> String {
        crate::api::iso(self.0.run.dispatched_at)
    }
    async fn finished_at(&self) -> Option<String> {
        iso(self.0.finished_at)
    }
    /// What could not be dispatched, if anything.
    async fn error(&self) -> Option<&str> {
        self.0.run.error.as_deref()
    }
}

#[derive(SimpleObject, Debug)]
pub struct ScriptScheduleEdge {
    pub node: ScheduleNode,
    pub cursor: String,
}

#[derive(SimpleObject, Debug)]
pub struct ScriptScheduleConnection {
    pub edges: Vec<ScriptScheduleEdge>,
    pub page_info: PageInfo,
    pub filtered_count: i32,
}

#[derive(SimpleObject, Debug)]
pub struct ScheduleRunEdge {
    pub node: RunNode,
    pub cursor: String,
}

#[derive(SimpleObject, Debug)]
pub struct ScheduleRunConnection {
    pub edges: Vec<ScheduleRunEdge>,
    pub page_info: PageInfo,
    pub filtered_count: i32,
}

/// OpenFrame's `ScriptScheduleFilterInput`; deleted schedules only when `statuses` asks.
#[derive(InputObject, Default, Debug, Clone)]
pub struct ScriptScheduleFilterInput {
    pub statuses: Option<Vec<ScriptStatus>>,
    pub supported_platforms: Option<Vec<ScriptPlatform>>,
    pub author_ids: Option<Vec<String>>,
    pub triggers: Option<Vec<ScheduleTrigger>>,
    /// RFC 3339, inclusive.
    pub start_at_from: Option<String>,
    /// RFC 3339, exclusive.
    pub start_at_to: Option<String>,
}

#[derive(SimpleObject, Debug)]
pub struct ScriptScheduleFilters {
    pub statuses: Vec<DeviceFilterOption>,
    pub platforms: Vec<DeviceFilterOption>,
    pub authors: Vec<DeviceFilterOption>,
    pub triggers: Vec<DeviceFilterOption>,
    pub filtered_count: i32,
}

#[derive(InputObject, Default, Debug, Clone)]
pub struct ScheduleRunFilterInput {
    pub statuses: Option<Vec<ScheduleRunStatus>>,
    pub dispatched_at_from: Option<String>,
    pub dispatched_at_to: Option<String>,
}

#[derive(SimpleObject, Debug)]
pub struct ScheduleRunFilters {
    pub statuses: Vec<DeviceFilterOption>,
    pub initiators: Vec<DeviceFilterOption>,
    pub triggers: Vec<DeviceFilterOption>,
    pub filtered_count: i32,
}

#[derive(InputObject, Debug, Clone)]
pub struct ScriptCustomParamInput {
    pub script_id: ID,
    pub args: Option<Vec<String>>,
    /// Plain variables only: secret ones belong on the script.
    pub env_vars: Option<Vec<EnvVarInput>>,
}

#[derive(InputObject, Default, Debug, Clone)]
pub struct ScheduleDeviceCriteriaInput {
    pub organization_ids: Option<Vec<String>>,
    pub device_types: Option<Vec<String>>,
    pub os_types: Option<Vec<String>>,
}

impl From<ScheduleDeviceCriteriaInput> for DeviceCriteria {
    fn from(input: ScheduleDeviceCriteriaInput) -> DeviceCriteria {
        DeviceCriteria {
            organization_ids: input.organization_ids.unwrap_or_default(),
            device_types: input.device_types.unwrap_or_default(),
            os_types: input.os_types.unwrap_or_default(),
        }
    }
}

/// A schedule's settings. `DATE_TIME` needs `startAt` (RFC 3339) on a :00 or :30 boundary and
/// takes an optional `repeat` in seconds (a multiple of 1800); `DEVICE_ONLINE` takes neither.
#[derive(InputObject, Debug, Clone)]
pub struct ScriptScheduleInput {
    pub name: String,
    pub description: Option<String>,
    pub supported_platforms: Option<Vec<ScriptPlatform>>,
    pub script_ids: Vec<ID>,
    pub script_custom_params: Option<Vec<ScriptCustomParamInput>>,
    pub selection_mode: Option<SelectionMode>,
    pub device_criteria: Option<ScheduleDeviceCriteriaInput>,
    pub trigger: ScheduleTrigger,
    pub start_at: Option<String>,
    pub repeat: Option<i64>,
}

/// PUT semantics: every setting is replaced; the assigned machines stay.
#[derive(InputObject, Debug, Clone)]
pub struct UpdateScriptScheduleInput {
    pub id: ID,
    #[graphql(flatten)]
    pub settings: ScriptScheduleInput,
}

fn schedule_input(input: ScriptScheduleInput) -> GqlResult<ScheduleInput> {
    let script_ids = input
        .script_ids
        .iter()
        .map(|id| super::scripts::script_local("input.scriptIds", id))
        .collect::<GqlResult<Vec<_>>>()?;
    let script_custom_params = input
        .script_custom_params
        .unwrap_or_default()
        .into_iter()
        .map(|params| {
            Ok(ScriptParams {
                script_id: super::scripts::script_local(
                    "input.scriptCustomParams.scriptId",
                    &params.script_id,
                )?,
                args: params.args,
                env_vars: params
                    .env_vars
                    .unwrap_or_default()
                    .into_iter()
                    .map(EnvVar::from)
                    .collect(),
            })
        })
        .collect::<GqlResult<Vec<_>>>()?;
    Ok(ScheduleInput {
        name: input.name,
        description: input.description.unwrap_or_default(),
        supported_platforms: input
            .supported_platforms
            .unwrap_or_default()
            .into_iter()
            .map(|platform| enum_name(platform).to_owned())
            .collect(),
        script_ids,
        script_custom_params,
        selection_mode: enum_name(input.selection_mode.unwrap_or_default()).to_owned(),
        device_criteria: input.device_criteria.unwrap_or_default().into(),
        trigger: enum_name(input.trigger).to_owned(),
        start_at: input
            .start_at
            .as_deref()
            .map(|text| parse_instant("input.startAt", text))
            .transpose()?,
        repeat: input.repeat,
    })
}

/// A schedule id as the API takes it: the global id, or the plain `scheduleId`.
fn schedule_local(argument: &str, id: &ID) -> GqlResult<String> {
    match relay::parse_global_id(argument, id) {
        Ok((kind, local)) if kind == "ScriptSchedule" => Ok(local),
        Ok((kind, _)) => Err(invalid(format!(
            "{argument}: {:?} names a {kind}, not a ScriptSchedule",
            id.as_str()
        ))),
        Err(_) if !id.is_empty() && id.len() <= 100 => Ok(id.to_string()),
        Err(error) => Err(error),
    }
}

pub(super) async fn by_schedule_id(ctx: &Context<'_>, id: &str) -> GqlResult<Option<ScheduleNode>> {
    let request = request(ctx);
    match request
        .state
        .management
        .schedules
        .get(&request.admin.tenant, id)
        .await
    {
        Ok(schedule) => Ok(Some(ScheduleNode(Box::new(schedule)))),
        Err(RmmError::NotFound(_)) => Ok(None),
        Err(error) => Err(rmm_error(error)),
    }
}

/// A run by its id; the schedule it belongs to is read to find it.
pub(super) async fn by_run_id(ctx: &Context<'_>, id: &str) -> GqlResult<Option<RunNode>> {
    let request = request(ctx);
    let schedules = &request.state.management.schedules;
    let tenant = &request.admin.tenant;
    let Some(run) = schedules.run(tenant, id).await.map_err(rmm_error)? else {
        return Ok(None);
    };
    match schedules.runs(tenant, &run.schedule_id).await {
        Ok(views) => Ok(views
            .into_iter()
            .find(|view| view.run.id == id)
            .map(RunNode)),
        Err(RmmError::NotFound(_)) => Ok(None),
        Err(error) => Err(rmm_error(error)),
    }
}

/// The checked selection of a schedule list.
struct ScheduleSelection {
    filter: ScriptScheduleFilterInput,
    from: Option<i64>,
    to: Option<i64>,
    search: Option<String>,
}

impl ScheduleSelection {
    fn new(filter: Option<ScriptScheduleFilterInput>, search: Option<String>) -> GqlResult<Self> {
        let filter = filter.unwrap_or_default();
        let from = filter
            .start_at_from
            .as_deref()
            .map(|text| parse_instant("filter.startAtFrom", text))
            .transpose()?;
        let to = filter
            .start_at_to
            .as_deref()
            .map(|text| parse_instant("filter.startAtTo", text))
            .transpose()?;
        Ok(ScheduleSelection {
            filter,
            from,
            to,
            search: relay::search_text(search)?,
        })
    }

    fn keeps(&self, schedule: &Schedule) -> bool {
        let filter = &self.filter;
        let named = |values: &Option<Vec<_>>| -> Option<Vec<&'static str>> {
            values
                .as_ref()
                .map(|values: &Vec<_>| values.iter().copied().map(enum_name).collect())
        };
        let status_kept = match named(&filter.statuses) {
            Some(statuses) => statuses.contains(&schedule.status.as_str()),
            None => schedule.status != "DELETED",
        };
        status_kept
            && filter.supported_platforms.as_ref().is_none_or(|wanted| {
                wanted.iter().any(|platform| {
                    schedule
                        .supported_platforms
                        .iter()
                        .any(|p| p == enum_name(*platform))
                })
            })
            && filter
                .author_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&schedule.created_by))
            && filter.triggers.as_ref().is_none_or(|triggers| {
                triggers
                    .iter()
                    .any(|trigger| enum_name(*trigger) == schedule.trigger)
            })
            && self
                .from
                .is_none_or(|from| schedule.start_at.is_some_and(|at| at >= from))
            && self
                .to
                .is_none_or(|to| schedule.start_at.is_some_and(|at| at < to))
            && self.search.as_ref().is_none_or(|text| {
                schedule.name.to_lowercase().contains(text)
                    || schedule.description.to_lowercase().contains(text)
            })
    }
}

fn schedule_sort_key(schedule: &Schedule, field: &str) -> String {
    match field {
        "startAt" => relay::number_key(schedule.start_at, &schedule.id),
        "nextRunAt" => relay::number_key(schedule.next_run_at, &schedule.id),
        "createdAt" => relay::number_key(Some(schedule.created_at), &schedule.id),
        "status" => relay::text_key(&schedule.status, &schedule.id),
        _ => relay::text_key(&schedule.name, &schedule.id),
    }
}

const SCHEDULE_SORTS: [&str; 5] = ["name", "startAt", "nextRunAt", "createdAt", "status"];

struct RunSelection {
    statuses: Option<Vec<&'static str>>,
    from: Option<i64>,
    to: Option<i64>,
}

impl RunSelection {
    fn new(filter: Option<ScheduleRunFilterInput>) -> GqlResult<Self> {
        let filter = filter.unwrap_or_default();
        Ok(RunSelection {
            statuses: filter
                .statuses
                .map(|statuses| statuses.into_iter().map(enum_name).collect()),
            from: filter
                .dispatched_at_from
                .as_deref()
                .map(|text| parse_instant("filter.dispatchedAtFrom", text))
                .transpose()?,
            to: filter
                .dispatched_at_to
                .as_deref()
                .map(|text| parse_instant("filter.dispatchedAtTo", text))
                .transpose()?,
        })
    }

    fn keeps(&self, view: &RunView) -> bool {
        self.statuses
            .as_ref()
            .is_none_or(|statuses| statuses.contains(&view.status))
            && self.from.is_none_or(|from| view.run.dispatched_at >= from)
            && self.to.is_none_or(|to| view.run.dispatched_at < to)
    }
}

async fn schedule_runs(ctx: &Context<'_>, schedule_id: &ID) -> GqlResult<Vec<RunView>> {
    let local = schedule_local("scheduleId", schedule_id)?;
    let request = request(ctx);
    request
        .state
        .management
        .schedules
        .runs(&request.admin.tenant, &local)
        .await
        .map_err(rmm_error)
}

async fn schedule_executions(
    ctx: &Context<'_>,
    schedule_id: &ID,
) -> GqlResult<Vec<crate::management::rmm::Execution>> {
    let local = schedule_local("scheduleId", schedule_id)?;
    let request = request(ctx);
    let tenant = &request.admin.tenant;
    let management = &request.state.management;
    management
        .schedules
        .get(tenant, &local)
        .await
        .map_err(rmm_error)?;
    management
        .rmm
        .schedule_executions(tenant, &local)
        .await
        .map_err(rmm_error)
}

async fn all_schedules(ctx: &Context<'_>) -> GqlResult<Vec<Schedule>> {
    let request = request(ctx);
    request
        .state
        .management
        .schedules
        .all(&request.admin.tenant)
        .await
        .map_err(rmm_error)
}

#[derive(Default, Debug)]
pub struct ScheduleQuery;

#[Object]
impl ScheduleQuery {
    /// One schedule by its global id (or plain `scheduleId`); `not_found` when the tenant has
    /// none such, or it is deleted.
    async fn script_schedule(&self, ctx: &Context<'_>, id: ID) -> GqlResult<ScheduleNode> {
        let local = schedule_local("id", &id)?;
        by_schedule_id(ctx, &local).await?.ok_or_else(|| {
            gql_error(ApiError::NotFound(format!(
                "id: no schedule {:?}",
                id.as_str()
            )))
        })
    }

    /// The tenant's schedules, filtered, searched (name, description), sorted (default:
    /// name) and paged.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "PageArgs::size(first, last) * child_complexity + 1")]
    async fn script_schedules(
        &self,
        ctx: &Context<'_>,
        filter: Option<ScriptScheduleFilterInput>,
        search: Option<String>,
        sort: Option<SortInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> GqlResult<ScriptScheduleConnection> {
        let args = PageArgs::new(first, after, last, before)?;
        let selection = ScheduleSelection::new(filter, search)?;
        let (field, ascending) = sorting(sort, &SCHEDULE_SORTS, SortDirection::Asc)?;
        let mut sorted: Vec<(String, Schedule)> = all_schedules(ctx)
            .await?
            .into_iter()
            .filter(|schedule| selection.keeps(schedule))
            .map(|schedule| (schedule_sort_key(&schedule, field), schedule))
            .collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if !ascending {
            sorted.reverse();
        }
        let page = relay::paginate(sorted, ascending, &args)?;
        Ok(ScriptScheduleConnection {
            edges: page
                .rows
                .into_iter()
                .map(|(cursor, schedule)| ScriptScheduleEdge {
                    node: ScheduleNode(Box::new(schedule)),
                    cursor,
                })
                .collect(),
            page_info: page.info,
            filtered_count: page.filtered_count,
        })
    }

    /// Statuses, platforms, authors and triggers of the filtered schedules, with counts.
    async fn script_schedule_filters(
        &self,
        ctx: &Context<'_>,
        filter: Option<ScriptScheduleFilterInput>,
        search: Option<String>,
    ) -> GqlResult<ScriptScheduleFilters> {
        let selection = ScheduleSelection::new(filter, search)?;
        let mut statuses = BTreeMap::<String, i32>::new();
        let mut platforms = BTreeMap::<String, i32>::new();
        let mut authors = BTreeMap::<String, i32>::new();
        let mut triggers = BTreeMap::<String, i32>::new();
        let mut filtered = 0;
        for schedule in all_schedules(ctx)
            .await?
            .iter()
            .filter(|schedule| selection.keeps(schedule))
        {
            filtered += 1;
            *statuses.entry(schedule.status.clone()).or_default() += 1;
            for platform in &schedule.supported_platforms {
                *platforms.entry(platform.clone()).or_default() += 1;
            }
            *authors.entry(schedule.created_by.clone()).or_default() += 1;
            *triggers.entry(schedule.trigger.clone()).or_default() += 1;
        }
        let options = DeviceFilterOption::counted;
        Ok(ScriptScheduleFilters {
            statuses: options(statuses),
            platforms: options(platforms),
            authors: options(authors),
            triggers: options(triggers),
            filtered_count: filtered,
        })
    }

    /// A schedule's runs, newest first (the newest 500 are kept).
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "PageArgs::size(first, last) * child_complexity + 1")]
    async fn schedule_runs(
        &self,
        ctx: &Context<'_>,
        schedule_id: ID,
        filter: Option<ScheduleRunFilterInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> GqlResult<ScheduleRunConnection> {
        let args = PageArgs::new(first, after, last, before)?;
        let selection = RunSelection::new(filter)?;
        // Run ids start with the dispatch time: descending ids are newest first.
        let sorted: Vec<(String, RunView)> = schedule_runs(ctx, &schedule_id)
            .await?
            .into_iter()
            .filter(|view| selection.keeps(view))
            .map(|view| (view.run.id.clone(), view))
            .collect();
        let page = relay::paginate(sorted, false, &args)?;
        Ok(ScheduleRunConnection {
            edges: page
                .rows
                .into_iter()
                .map(|(cursor, view)| ScheduleRunEdge {
                    node: RunNode(view),
                    cursor,
                })
                .collect(),
            page_info: page.info,
            filtered_count: page.filtered_count,
        })
    }

    /// Statuses, initiators and triggers of a schedule's filtered runs, with counts.
    async fn schedule_run_filters(
        &self,
        ctx: &Context<'_>,
        schedule_id: ID,
        filter: Option<ScheduleRunFilterInput>,
    ) -> GqlResult<ScheduleRunFilters> {
        let selection = RunSelection::new(filter)?;
        let mut statuses = BTreeMap::<String, i32>::new();
        let mut initiators = BTreeMap::<String, i32>::new();
        let mut triggers = BTreeMap::<String, i32>::new();
        let mut filtered = 0;
        for view in schedule_runs(ctx, &schedule_id)
            .await?
            .iter()
            .filter(|view| selection.keeps(view))
        {
            filtered += 1;
            *statuses.entry(view.status.to_owned()).or_default() += 1;
            *initiators.entry(view.run.initiated_by.clone()).or_default() += 1;
            *triggers.entry(view.run.trigger.clone()).or_default() += 1;
        }
        let options = DeviceFilterOption::counted;
        Ok(ScheduleRunFilters {
            statuses: options(statuses),
            initiators: options(initiators),
            triggers: options(triggers),
            filtered_count: filtered,
        })
    }

    /// The executions a schedule started, as `scriptExecutions` lists a script's.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "PageArgs::size(first, last) * child_complexity + 1")]
    async fn schedule_executions(
        &self,
        ctx: &Context<'_>,
        schedule_id: ID,
        filter: Option<ScriptExecutionFilterInput>,
        search: Option<String>,
        sort: Option<SortInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> GqlResult<ScriptExecutionConnection> {
        let args = PageArgs::new(first, after, last, before)?;
        let selection = ExecutionSelection::new(filter, search)?;
        let (field, ascending) = sorting(sort, &EXECUTION_SORTS, SortDirection::Desc)?;
        let executions = schedule_executions(ctx, &schedule_id).await?;
        execution_connection(executions, &selection, field, ascending, &args)
    }

    async fn schedule_execution_filters(
        &self,
        ctx: &Context<'_>,
        schedule_id: ID,
        filter: Option<ScriptExecutionFilterInput>,
        search: Option<String>,
    ) -> GqlResult<ScriptExecutionFilters> {
        let selection = ExecutionSelection::new(filter, search)?;
        let executions = schedule_executions(ctx, &schedule_id).await?;
        execution_filters(ctx, &executions, &selection).await
    }
}

#[derive(Default, Debug)]
pub struct ScheduleMutation;

impl ScheduleMutation {
    /// Records a change of a schedule in the audit trail.
    async fn audited(
        ctx: &Context<'_>,
        action: &str,
        before: Option<&Schedule>,
        after: Schedule,
    ) -> ScheduleNode {
        if before != Some(&after) {
            record(
                ctx,
                action,
                AuditChange {
                    target_type: "ScriptSchedule",
                    target_id: after.id.clone(),
                    before: before.and_then(snapshot),
                    after: snapshot(&after),
                },
            )
            .await;
        }
        ScheduleNode(Box::new(after))
    }

    async fn set_status(
        ctx: &Context<'_>,
        action: &str,
        id: &ID,
        status: &str,
    ) -> GqlResult<ScheduleNode> {
        let local = schedule_local("id", id)?;
        let request = request(ctx);
        let schedules = &request.state.management.schedules;
        let tenant = &request.admin.tenant;
        let before = schedules.get(tenant, &local).await.map_err(rmm_error)?;
        let after = schedules
            .set_status(tenant, &local, status)
            .await
            .map_err(rmm_error)?;
        Ok(Self::audited(ctx, action, Some(&before), after).await)
    }

    async fn assign(
        ctx: &Context<'_>,
        action: &str,
        schedule_id: &ID,
        machine_ids: &[String],
        how: Assign,
    ) -> GqlResult<ScheduleNode> {
        if machine_ids.len() > crate::management::schedules::MAX_ASSIGNED {
            return Err(invalid(format!(
                "machineIds: at most {} at once",
                crate::management::schedules::MAX_ASSIGNED
            )));
        }
        let local = schedule_local("scheduleId", schedule_id)?;
        let request = request(ctx);
        let schedules = &request.state.management.schedules;
        let tenant = &request.admin.tenant;
        let before = schedules.get(tenant, &local).await.map_err(rmm_error)?;
        let after = schedules
            .assign(tenant, &local, machine_ids, how)
            .await
            .map_err(rmm_error)?;
        Ok(Self::audited(ctx, action, Some(&before), after).await)
    }

    async fn assign_selected(
        ctx: &Context<'_>,
        action: &str,
        schedule_id: &ID,
        filter: Option<DeviceFilterInput>,
        search: Option<String>,
        how: Assign,
    ) -> GqlResult<ScheduleNode> {
        let ids: Vec<String> = super::devices::selected_devices(ctx, filter, search)
            .await?
            .iter()
            .map(|device| device.machine().machine_id.clone())
            .collect();
        Self::assign(ctx, action, schedule_id, &ids, how).await
    }
}

#[Object]
impl ScheduleMutation {
    async fn create_script_schedule(
        &self,
        ctx: &Context<'_>,
        input: ScriptScheduleInput,
    ) -> GqlResult<ScheduleNode> {
        let input = schedule_input(input)?;
        let request = request(ctx);
        let schedule = request
            .state
            .management
            .schedules
            .create(&request.admin.tenant, &request.admin.user_id, input)
            .await
            .map_err(rmm_error)?;
        Ok(Self::audited(ctx, "createScriptSchedule", None, schedule).await)
    }

    async fn update_script_schedule(
        &self,
        ctx: &Context<'_>,
        input: UpdateScriptScheduleInput,
    ) -> GqlResult<ScheduleNode> {
        let local = schedule_local("input.id", &input.id)?;
        let settings = schedule_input(input.settings)?;
        let request = request(ctx);
        let schedules = &request.state.management.schedules;
        let tenant = &request.admin.tenant;
        let before = schedules.get(tenant, &local).await.map_err(rmm_error)?;
        let after = schedules
            .update(tenant, &local, settings)
            .await
            .map_err(rmm_error)?;
        Ok(Self::audited(ctx, "updateScriptSchedule", Some(&before), after).await)
    }

    /// Deletes a schedule (soft); it never fires again. Returns its id.
    async fn delete_script_schedule(&self, ctx: &Context<'_>, id: ID) -> GqlResult<ID> {
        Self::set_status(ctx, "deleteScriptSchedule", &id, "DELETED").await?;
        Ok(id)
    }

    async fn archive_script_schedule(&self, ctx: &Context<'_>, id: ID) -> GqlResult<ScheduleNode> {
        Self::set_status(ctx, "archiveScriptSchedule", &id, "ARCHIVED").await
    }

    async fn unarchive_script_schedule(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> GqlResult<ScheduleNode> {
        Self::set_status(ctx, "unarchiveScriptSchedule", &id, "ACTIVE").await
    }

    /// Replaces the assigned machines.
    async fn set_script_schedule_devices(
        &self,
        ctx: &Context<'_>,
        schedule_id: ID,
        machine_ids: Vec<String>,
    ) -> GqlResult<ScheduleNode> {
        Self::assign(
            ctx,
            "setScriptScheduleDevices",
            &schedule_id,
            &machine_ids,
            Assign::Set,
        )
        .await
    }

    async fn add_devices_to_schedule(
        &self,
        ctx: &Context<'_>,
        schedule_id: ID,
        machine_ids: Vec<String>,
    ) -> GqlResult<ScheduleNode> {
        Self::assign(
            ctx,
            "addDevicesToSchedule",
            &schedule_id,
            &machine_ids,
            Assign::Add,
        )
        .await
    }

    async fn remove_devices_from_schedule(
        &self,
        ctx: &Context<'_>,
        schedule_id: ID,
        machine_ids: Vec<String>,
    ) -> GqlResult<ScheduleNode> {
        Self::assign(
            ctx,
            "removeDevicesFromSchedule",
            &schedule_id,
            &machine_ids,
            Assign::Remove,
        )
        .await
    }

    /// Assigns every device a device filter and search select (as `devices` lists them).
    async fn add_all_devices_to_schedule(
        &self,
        ctx: &Context<'_>,
        schedule_id: ID,
        filter: Option<DeviceFilterInput>,
        search: Option<String>,
    ) -> GqlResult<ScheduleNode> {
        Self::assign_selected(
            ctx,
            "addAllDevicesToSchedule",
            &schedule_id,
            filter,
            search,
            Assign::Add,
        )
        .await
    }

    async fn remove_all_devices_from_schedule(
        &self,
        ctx: &Context<'_>,
        schedule_id: ID,
        filter: Option<DeviceFilterInput>,
        search: Option<String>,
    ) -> GqlResult<ScheduleNode> {
        Self::assign_selected(
            ctx,
            "removeAllDevicesFromSchedule",
            &schedule_id,
            filter,
            search,
            Assign::Remove,
        )
        .await
    }

    /// Switches the schedule to `CRITERIA` selection.
    async fn set_schedule_device_criteria(
        &self,
        ctx: &Context<'_>,
        schedule_id: ID,
        criteria: ScheduleDeviceCriteriaInput,
    ) -> GqlResult<ScheduleNode> {
        let local = schedule_local("scheduleId", &schedule_id)?;
        let request = request(ctx);
        let schedules = &request.state.management.schedules;
        let tenant = &request.admin.tenant;
        let before = schedules.get(tenant, &local).await.map_err(rmm_error)?;
        let after = schedules
            .set_criteria(tenant, &local, criteria.into())
            .await
            .map_err(rmm_error)?;
        Ok(Self::audited(ctx, "setScheduleDeviceCriteria", Some(&before), after).await)
    }

    /// Fires an active schedule now, whatever its trigger; its timing does not change.
    async fn run_schedule_job_now(
        &self,
        ctx: &Context<'_>,
        schedule_id: ID,
    ) -> GqlResult<DispatchResponse> {
        let local = schedule_local("scheduleId", &schedule_id)?;
        let request = request(ctx);
        let run = request
            .state
            .management
            .schedules
            .run_now(
                &request.admin.tenant,
                &request.admin.user_id,
                &local,
                request.state.management.client.get(),
            )
            .await
            .map_err(rmm_error)?;
        record(
            ctx,
            "runScheduleJobNow",
            AuditChange {
                target_type: "ScheduleRun",
                target_id: run.id.clone(),
                before: None,
                after: snapshot(&run),
            },
        )
        .await;
        Ok(DispatchResponse {
            execution_id: run.execution_ids.first().cloned().unwrap_or_default(),
            run_id: Some(run.id),
        })
    }
}
