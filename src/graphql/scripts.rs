//! OpenFrame RMM in GraphQL: the scripts library (`script`, `scripts`, `scriptFilters`,
//! `createScript`, `updateScript`, `deleteScript`, `archiveScript`, `unarchiveScript`), runs
//! (`runScript`, `batchRunScript`, `runCommand`, `batchRunCommand`, `cancelExecution`) and their
//! executions (`scriptExecutions`, `scriptExecutionFilters`, and `runExecutions` for one run of a
//! script or a command).
//!
//! Everything goes through [`crate::management::rmm::Rmm`], as the REST routes do: the same
//! validation, sealing of secret variables and dispatch over NATS. Secret values are never
//! returned, and never go into the audit trail.

use std::collections::BTreeMap;

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};

use super::audit::{record, snapshot};
use super::devices::{Device, DeviceFilterOption, SortDirection, SortInput};
use super::logs::parse_instant;
use super::relay::{self, PageArgs, PageInfo};
use super::{GqlResult, enum_name, enum_of, gql_error, invalid, request};
use crate::audit::AuditChange;
use crate::error::ApiError;
use crate::management::rmm::{
    self, CommandInput, EnvVar, Execution, RunInput, Script, ScriptInput,
};

/// OpenFrame's `ScriptShell`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ScriptShell {
    Powershell,
    Cmd,
    Bash,
    Python,
    Nushell,
    Shell,
}

/// OpenFrame's `PrivilegeLevel`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum PrivilegeLevel {
    User,
    Admin,
}

/// The platforms a script supports (OpenFrame's two, and Linux).
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ScriptPlatform {
    Windows,
    MacOs,
    Linux,
}

/// OpenFrame's `ScriptStatus`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ScriptStatus {
    Active,
    Archived,
    Deleted,
}

/// An execution's state: `PENDING` until sent, `DISPATCHED` until its agent answers.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ExecutionStatus {
    Pending,
    Dispatched,
    Success,
    Failed,
    Cancelled,
}

/// An environment variable; a secret's value is never shown (`value` is null).
#[derive(SimpleObject, Debug, Clone)]
pub struct ScriptEnvVar {
    pub name: String,
    pub value: Option<String>,
    pub secret: bool,
}

#[derive(InputObject, Debug, Clone)]
pub struct EnvVarInput {
    pub name: String,
    /// Required for a new secret; a secret sent without a value keeps its stored one.
    pub value: Option<String>,
    #[graphql(default)]
    pub secret: bool,
}

impl From<EnvVarInput> for EnvVar {
    fn from(input: EnvVarInput) -> EnvVar {
        EnvVar {
            name: input.name,
            value: input.value,
            secret: input.secret,
        }
    }
}

/// A script as GraphQL shows it (type `Script`).
#[derive(Debug, Clone)]
pub struct ScriptNode(Script);

#[Object(name = "Script")]
impl ScriptNode {
    /// The global id (`Script:<scriptId>`).
    pub async fn id(&self) -> ID {
        relay::global_id("Script", &self.0.id)
    }
    async fn script_id(&self) -> &str {
        &self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn shell(&self) -> GqlResult<ScriptShell> {
        enum_of("shell", &self.0.shell)
    }
    async fn privilege_level(&self) -> GqlResult<PrivilegeLevel> {
        enum_of("privilege level", &self.0.privilege_level)
    }
    async fn script_body(&self) -> &str {
        &self.0.script_body
    }
    async fn supported_platforms(&self) -> GqlResult<Vec<ScriptPlatform>> {
        self.0
            .supported_platforms
            .iter()
            .map(|platform| enum_of("platform", platform))
            .collect()
    }
    async fn default_timeout_seconds(&self) -> u64 {
        self.0.default_timeout_seconds
    }
    async fn default_args(&self) -> &[String] {
        &self.0.default_args
    }
    async fn env_vars(&self) -> Vec<ScriptEnvVar> {
        self.0
            .env_vars
            .iter()
            .map(|var| ScriptEnvVar {
                name: var.name.clone(),
                value: if var.secret { None } else { var.value.clone() },
                secret: var.secret,
            })
            .collect()
    }
    /// The script's tags (OpenFrame's `tagIds`).
    async fn tag_ids(&self) -> &[String] {
        &self.0.tags
    }
    /// The id of the technician who created it.
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
        enum_of("script status", &self.0.status)
    }
    async fn status_changed_at(&self) -> String {
        crate::api::iso(self.0.status_changed_at)
    }
}

/// One machine's execution of a script or command (type `ScriptExecution`).
#[derive(Debug, Clone)]
pub struct ExecutionNode(Execution);

#[Object(name = "ScriptExecution")]
impl ExecutionNode {
    /// The global id (`ScriptExecution:<executionId>:<machineId>`).
    pub async fn id(&self) -> ID {
        relay::global_id(
            "ScriptExecution",
            &format!("{}:{}", self.0.execution_id, self.0.machine_id),
        )
    }
    /// Shared by every machine of one run.
    async fn execution_id(&self) -> &str {
        &self.0.execution_id
    }
    async fn machine_id(&self) -> &str {
        &self.0.machine_id
    }
    /// The device, from the inventory held in memory (no store read per row).
    async fn machine(&self, ctx: &Context<'_>) -> GqlResult<Option<Device>> {
        super::devices::by_machine_id(ctx, &self.0.machine_id).await
    }
    /// Null for an ad-hoc command.
    async fn script_id(&self) -> Option<&str> {
        self.0.script_id.as_deref()
    }
    async fn schedule_id(&self) -> Option<&str> {
        self.0.schedule_id.as_deref()
    }
    /// The command line of an ad-hoc command; null for a script.
    async fn command(&self) -> Option<&str> {
        self.0.command.as_deref()
    }
    async fn shell(&self) -> GqlResult<ScriptShell> {
        enum_of("shell", &self.0.shell)
    }
    async fn privilege_level(&self) -> GqlResult<PrivilegeLevel> {
        enum_of("privilege level", &self.0.privilege_level)
    }
    async fn timeout_seconds(&self) -> u64 {
        self.0.timeout_seconds
    }
    /// The id of the technician who started the run.
    async fn initiated_by(&self) -> &str {
        &self.0.initiated_by
    }
    /// `MANUAL`, `SCHEDULED` or `AI_ASSISTANT`.
    async fn source(&self) -> &str {
        &self.0.source
    }
    async fn status(&self) -> GqlResult<ExecutionStatus> {
        enum_of("execution status", &self.0.status)
    }
    async fn dispatched_at(&self) -> Option<String> {
        self.0.dispatched_at.map(crate::api::iso)
    }
    async fn status_changed_at(&self) -> String {
        crate::api::iso(self.0.status_changed_at)
    }
    async fn finished_at(&self) -> Option<String> {
        self.0.finished_at.map(crate::api::iso)
    }
    async fn exit_code(&self) -> Option<i64> {
        self.0.exit_code
    }
    async fn execution_time_ms(&self) -> Option<i64> {
        self.0.execution_time_ms
    }
    async fn timed_out(&self) -> bool {
        self.0.timed_out
    }
    /// At most 64 KiB; `stdoutTruncated` says whether more was cut.
    async fn stdout(&self) -> Option<&str> {
        self.0.stdout.as_deref()
    }
    async fn stdout_truncated(&self) -> bool {
        self.0.stdout_truncated
    }
    async fn stderr(&self) -> Option<&str> {
        self.0.stderr.as_deref()
    }
    async fn stderr_truncated(&self) -> bool {
        self.0.stderr_truncated
    }
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
}

#[derive(SimpleObject, Debug)]
pub struct ScriptEdge {
    pub node: ScriptNode,
    pub cursor: String,
}

#[derive(SimpleObject, Debug)]
pub struct ScriptConnection {
    pub edges: Vec<ScriptEdge>,
    pub page_info: PageInfo,
    pub filtered_count: i32,
}

#[derive(SimpleObject, Debug)]
pub struct ScriptExecutionEdge {
    pub node: ExecutionNode,
    pub cursor: String,
}

#[derive(SimpleObject, Debug)]
pub struct ScriptExecutionConnection {
    pub edges: Vec<ScriptExecutionEdge>,
    pub page_info: PageInfo,
    pub filtered_count: i32,
}

/// OpenFrame's `ScriptFilterInput`. Deleted scripts are listed only when `statuses` asks.
#[derive(InputObject, Default, Debug, Clone)]
pub struct ScriptFilterInput {
    pub shells: Option<Vec<ScriptShell>>,
    pub statuses: Option<Vec<ScriptStatus>>,
    pub supported_platforms: Option<Vec<ScriptPlatform>>,
    pub tag_ids: Option<Vec<String>>,
    pub author_ids: Option<Vec<String>>,
}

/// The facets of the filtered script list, with counts.
#[derive(SimpleObject, Debug)]
pub struct ScriptFilters {
    pub shells: Vec<DeviceFilterOption>,
    pub platforms: Vec<DeviceFilterOption>,
    pub authors: Vec<DeviceFilterOption>,
    pub statuses: Vec<DeviceFilterOption>,
    pub filtered_count: i32,
}

/// OpenFrame's `ScriptExecutionFilterInput`; the dates are RFC 3339 instants, `from`
/// inclusive and `to` exclusive.
#[derive(InputObject, Default, Debug, Clone)]
pub struct ScriptExecutionFilterInput {
    pub statuses: Option<Vec<ExecutionStatus>>,
    pub initiator_ids: Option<Vec<String>>,
    pub machine_ids: Option<Vec<String>>,
    pub dispatched_at_from: Option<String>,
    pub dispatched_at_to: Option<String>,
}

/// The facets of a script's filtered executions, with counts; machines are labelled with
/// their hostnames.
#[derive(SimpleObject, Debug)]
pub struct ScriptExecutionFilters {
    pub initiators: Vec<DeviceFilterOption>,
    pub statuses: Vec<DeviceFilterOption>,
    pub machines: Vec<DeviceFilterOption>,
    pub filtered_count: i32,
}

#[derive(InputObject, Debug, Clone)]
pub struct CreateScriptInput {
    pub name: String,
    pub description: Option<String>,
    pub shell: ScriptShell,
    pub privilege_level: Option<PrivilegeLevel>,
    pub script_body: String,
    pub supported_platforms: Option<Vec<ScriptPlatform>>,
    pub default_timeout_seconds: Option<i32>,
    pub default_args: Option<Vec<String>>,
    pub env_vars: Option<Vec<EnvVarInput>>,
    pub tag_ids: Option<Vec<String>>,
}

/// PUT semantics: the fields left out are reset to their defaults, except that a secret
/// variable sent without a value keeps its stored value.
#[derive(InputObject, Debug, Clone)]
pub struct UpdateScriptInput {
    pub id: ID,
    #[graphql(flatten)]
    pub script: CreateScriptInput,
}

/// What a script run sends: `args`, `timeoutSeconds` and `privilegeLevel` default to the
/// script's; `envVars` override the script's variables of the same name.
#[derive(InputObject, Debug, Clone)]
pub struct ScriptRunOptions {
    pub script_id: ID,
    pub privilege_level: Option<PrivilegeLevel>,
    pub args: Option<Vec<String>>,
    pub timeout_seconds: Option<i32>,
    pub env_vars: Option<Vec<EnvVarInput>>,
}

/// Runs a script on one machine.
#[derive(InputObject, Debug, Clone)]
pub struct RunScriptInput {
    pub machine_id: String,
    #[graphql(flatten)]
    pub run: ScriptRunOptions,
}

/// Runs a script on 1 to 500 machines, one execution each, sharing one execution id.
#[derive(InputObject, Debug, Clone)]
pub struct BatchRunScriptInput {
    pub machine_ids: Vec<String>,
    #[graphql(flatten)]
    pub run: ScriptRunOptions,
}

/// What an ad-hoc command run sends.
#[derive(InputObject, Debug, Clone)]
pub struct CommandRunOptions {
    pub shell: ScriptShell,
    pub command: String,
    pub privilege_level: Option<PrivilegeLevel>,
    pub timeout_seconds: Option<i32>,
}

#[derive(InputObject, Debug, Clone)]
pub struct RunCommandInput {
    pub machine_id: String,
    #[graphql(flatten)]
    pub run: CommandRunOptions,
}

#[derive(InputObject, Debug, Clone)]
pub struct BatchRunCommandInput {
    pub machine_ids: Vec<String>,
    #[graphql(flatten)]
    pub run: CommandRunOptions,
}

#[derive(InputObject, Debug, Clone)]
pub struct CancelExecutionInput {
    pub machine_id: String,
    pub execution_id: String,
}

/// OpenFrame's `DispatchResponse`; `runId` names the schedule run (`runScheduleJobNow`).
#[derive(SimpleObject, Debug)]
pub struct DispatchResponse {
    pub execution_id: String,
    pub run_id: Option<String>,
}

/// A script id as the API takes it: the global id, or the plain `scriptId`.
pub(super) fn script_local(argument: &str, id: &ID) -> GqlResult<String> {
    match relay::parse_global_id(argument, id) {
        Ok((kind, local)) if kind == "Script" => Ok(local),
        Ok((kind, _)) => Err(invalid(format!(
            "{argument}: {:?} names a {kind}, not a Script",
            id.as_str()
        ))),
        // Plain ids (UUIDs) are never valid base64 of "Type:id".
        Err(_) if !id.is_empty() && id.len() <= 100 => Ok(id.to_string()),
        Err(error) => Err(error),
    }
}

fn seconds(argument: &str, value: Option<i32>) -> GqlResult<Option<u64>> {
    value
        .map(|value| {
            u64::try_from(value)
                .map_err(|_| invalid(format!("{argument}: must be positive, got {value}")))
        })
        .transpose()
}

fn env_vars(input: Option<Vec<EnvVarInput>>) -> Vec<EnvVar> {
    input
        .unwrap_or_default()
        .into_iter()
        .map(EnvVar::from)
        .collect()
}

fn names<T: async_graphql::resolver_utils::EnumType>(values: Option<Vec<T>>) -> Vec<String> {
    values
        .unwrap_or_default()
        .into_iter()
        .map(|value| enum_name(value).to_owned())
        .collect()
}

fn script_input(input: CreateScriptInput) -> GqlResult<ScriptInput> {
    Ok(ScriptInput {
        name: input.name,
        description: input.description.unwrap_or_default(),
        shell: enum_name(input.shell).to_owned(),
        privilege_level: input
            .privilege_level
            .map(|level| enum_name(level).to_owned()),
        script_body: input.script_body,
        supported_platforms: names(input.supported_platforms),
        default_timeout_seconds: seconds(
            "input.defaultTimeoutSeconds",
            input.default_timeout_seconds,
        )?,
        default_args: input.default_args.unwrap_or_default(),
        env_vars: env_vars(input.env_vars),
        tags: input.tag_ids.unwrap_or_default(),
    })
}

pub(super) fn rmm_error(error: rmm::RmmError) -> async_graphql::Error {
    gql_error(ApiError::from(error))
}

/// The selection of a script list.
struct ScriptSelection {
    filter: ScriptFilterInput,
    search: Option<String>,
}

impl ScriptSelection {
    fn new(filter: Option<ScriptFilterInput>, search: Option<String>) -> GqlResult<Self> {
        Ok(ScriptSelection {
            filter: filter.unwrap_or_default(),
            search: relay::search_text(search)?,
        })
    }

    fn keeps(&self, script: &Script) -> bool {
        let filter = &self.filter;
        let any = |wanted: &Option<Vec<String>>, have: &[String]| {
            wanted
                .as_ref()
                .is_none_or(|wanted| wanted.iter().any(|value| have.contains(value)))
        };
        let statuses = names(filter.statuses.clone());
        let status_kept = if statuses.is_empty() {
            script.status != "DELETED"
        } else {
            statuses.contains(&script.status)
        };
        status_kept
            && (filter.shells.is_none() || names(filter.shells.clone()).contains(&script.shell))
            && (filter.supported_platforms.is_none()
                || names(filter.supported_platforms.clone())
                    .iter()
                    .any(|platform| script.supported_platforms.contains(platform)))
            && any(&filter.tag_ids, &script.tags)
            && filter
                .author_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&script.created_by))
            && self.search.as_ref().is_none_or(|text| {
                script.name.to_lowercase().contains(text)
                    || script.description.to_lowercase().contains(text)
                    || script
                        .tags
                        .iter()
                        .any(|tag| tag.to_lowercase().contains(text))
            })
    }
}

/// The selection of an execution list.
pub(super) struct ExecutionSelection {
    statuses: Vec<String>,
    initiators: Option<Vec<String>>,
    machines: Option<Vec<String>>,
    from: Option<i64>,
    to: Option<i64>,
    search: Option<String>,
}

impl ExecutionSelection {
    pub(super) fn new(
        filter: Option<ScriptExecutionFilterInput>,
        search: Option<String>,
    ) -> GqlResult<Self> {
        let filter = filter.unwrap_or_default();
        let from = filter
            .dispatched_at_from
            .as_deref()
            .map(|text| parse_instant("filter.dispatchedAtFrom", text))
            .transpose()?;
        let to = filter
            .dispatched_at_to
            .as_deref()
            .map(|text| parse_instant("filter.dispatchedAtTo", text))
            .transpose()?;
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            return Err(invalid(
                "filter.dispatchedAtTo: must be after filter.dispatchedAtFrom",
            ));
        }
        Ok(ExecutionSelection {
            statuses: names(filter.statuses),
            initiators: filter.initiator_ids,
            machines: filter.machine_ids,
            from,
            to,
            search: relay::search_text(search)?,
        })
    }

    fn keeps(&self, execution: &Execution) -> bool {
        let at = execution
            .dispatched_at
            .unwrap_or(execution.status_changed_at);
        (self.statuses.is_empty() || self.statuses.contains(&execution.status))
            && self
                .initiators
                .as_ref()
                .is_none_or(|ids| ids.contains(&execution.initiated_by))
            && self
                .machines
                .as_ref()
                .is_none_or(|ids| ids.contains(&execution.machine_id))
            && self.from.is_none_or(|from| at >= from)
            && self.to.is_none_or(|to| at < to)
            && self.search.as_ref().is_none_or(|text| {
                [
                    Some(&execution.machine_id),
                    execution.stdout.as_ref(),
                    execution.stderr.as_ref(),
                    execution.error.as_ref(),
                ]
                .into_iter()
                .flatten()
                .any(|field| field.to_lowercase().contains(text))
            })
    }
}

fn script_sort_key(script: &Script, field: &str) -> String {
    match field {
        "createdAt" => relay::number_key(Some(script.created_at), &script.id),
        "updatedAt" => relay::number_key(Some(script.updated_at), &script.id),
        "shell" => relay::text_key(&script.shell, &script.id),
        "status" => relay::text_key(&script.status, &script.id),
        _ => relay::text_key(&script.name, &script.id),
    }
}

fn execution_sort_key(execution: &Execution, field: &str) -> String {
    let id = format!("{}:{}", execution.execution_id, execution.machine_id);
    match field {
        "status" => relay::text_key(&execution.status, &id),
        "machineId" => relay::text_key(&execution.machine_id, &id),
        "finishedAt" => relay::number_key(execution.finished_at, &id),
        _ => relay::number_key(
            Some(
                execution
                    .dispatched_at
                    .unwrap_or(execution.status_changed_at),
            ),
            &id,
        ),
    }
}

const SCRIPT_SORTS: [&str; 5] = ["name", "createdAt", "updatedAt", "shell", "status"];
pub(super) const EXECUTION_SORTS: [&str; 4] = ["dispatchedAt", "finishedAt", "status", "machineId"];

/// The checked sort: the field (one of `allowed`, default the first) and whether ascending.
pub(super) fn sorting(
    sort: Option<SortInput>,
    allowed: &[&'static str],
    default_direction: SortDirection,
) -> GqlResult<(&'static str, bool)> {
    let field = match sort.as_ref().and_then(|sort| sort.field.as_deref()) {
        None => allowed[0],
        Some(field) => allowed
            .iter()
            .copied()
            .find(|known| *known == field)
            .ok_or_else(|| {
                invalid(format!(
                    "sort.field: {field:?} is not one of {}",
                    allowed.join(", ")
                ))
            })?,
    };
    let direction = sort
        .and_then(|sort| sort.direction)
        .unwrap_or(default_direction);
    Ok((field, direction == SortDirection::Asc))
}

pub(super) async fn by_script_id(ctx: &Context<'_>, id: &str) -> GqlResult<Option<ScriptNode>> {
    let request = request(ctx);
    match request
        .state
        .management
        .rmm
        .script(&request.admin.tenant, id)
        .await
    {
        Ok(script) => Ok(Some(ScriptNode(script))),
        Err(rmm::RmmError::NotFound(_)) => Ok(None),
        Err(error) => Err(rmm_error(error)),
    }
}

/// An execution by its local id (`<executionId>:<machineId>`).
pub(super) async fn by_execution_id(
    ctx: &Context<'_>,
    id: &str,
) -> GqlResult<Option<ExecutionNode>> {
    let Some((execution_id, machine_id)) = id.split_once(':') else {
        return Ok(None);
    };
    let request = request(ctx);
    request
        .state
        .management
        .rmm
        .execution(&request.admin.tenant, execution_id, machine_id)
        .await
        .map(|found| found.map(ExecutionNode))
        .map_err(rmm_error)
}

#[derive(Default, Debug)]
pub struct ScriptQuery;

#[Object]
impl ScriptQuery {
    /// One script by its global id (or plain `scriptId`); `not_found` when the tenant has
    /// none such, or it is deleted.
    async fn script(&self, ctx: &Context<'_>, id: ID) -> GqlResult<ScriptNode> {
        let local = script_local("id", &id)?;
        by_script_id(ctx, &local).await?.ok_or_else(|| {
            gql_error(ApiError::NotFound(format!(
                "id: no script {:?}",
                id.as_str()
            )))
        })
    }

    /// The tenant's scripts (not deleted ones, unless `filter.statuses` asks), filtered,
    /// searched (name, description, tags), sorted (default: name) and paged.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "PageArgs::size(first, last) * child_complexity + 1")]
    async fn scripts(
        &self,
        ctx: &Context<'_>,
        filter: Option<ScriptFilterInput>,
        search: Option<String>,
        sort: Option<SortInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> GqlResult<ScriptConnection> {
        let args = PageArgs::new(first, after, last, before)?;
        let selection = ScriptSelection::new(filter, search)?;
        let (field, ascending) = sorting(sort, &SCRIPT_SORTS, SortDirection::Asc)?;
        let request = request(ctx);
        let scripts = request
            .state
            .management
            .rmm
            .all_scripts(&request.admin.tenant)
            .await
            .map_err(rmm_error)?;
        let mut sorted: Vec<(String, Script)> = scripts
            .into_iter()
            .filter(|script| selection.keeps(script))
            .map(|script| (script_sort_key(&script, field), script))
            .collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if !ascending {
            sorted.reverse();
        }
        let page = relay::paginate(sorted, ascending, &args)?;
        Ok(ScriptConnection {
            edges: page
                .rows
                .into_iter()
                .map(|(cursor, script)| ScriptEdge {
                    node: ScriptNode(script),
                    cursor,
                })
                .collect(),
            page_info: page.info,
            filtered_count: page.filtered_count,
        })
    }

    /// Shells, platforms, authors and statuses of the filtered scripts, with counts.
    async fn script_filters(
        &self,
        ctx: &Context<'_>,
        filter: Option<ScriptFilterInput>,
        search: Option<String>,
    ) -> GqlResult<ScriptFilters> {
        let selection = ScriptSelection::new(filter, search)?;
        let request = request(ctx);
        let scripts = request
            .state
            .management
            .rmm
            .all_scripts(&request.admin.tenant)
            .await
            .map_err(rmm_error)?;
        let mut shells = BTreeMap::<String, i32>::new();
        let mut platforms = BTreeMap::<String, i32>::new();
        let mut authors = BTreeMap::<String, i32>::new();
        let mut statuses = BTreeMap::<String, i32>::new();
        let mut filtered = 0;
        for script in scripts.iter().filter(|script| selection.keeps(script)) {
            filtered += 1;
            *shells.entry(script.shell.clone()).or_default() += 1;
            for platform in &script.supported_platforms {
                *platforms.entry(platform.clone()).or_default() += 1;
            }
            *authors.entry(script.created_by.clone()).or_default() += 1;
            *statuses.entry(script.status.clone()).or_default() += 1;
        }
        let options = DeviceFilterOption::counted;
        Ok(ScriptFilters {
            shells: options(shells),
            platforms: options(platforms),
            authors: options(authors),
            statuses: options(statuses),
            filtered_count: filtered,
        })
    }

    /// A script's executions, filtered, searched (machine id, output, error), sorted (default:
    /// dispatch time, newest first) and paged.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "PageArgs::size(first, last) * child_complexity + 1")]
    async fn script_executions(
        &self,
        ctx: &Context<'_>,
        script_id: ID,
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
        let local = script_local("scriptId", &script_id)?;
        let request = request(ctx);
        let executions = request
            .state
            .management
            .rmm
            .script_executions(&request.admin.tenant, &local)
            .await
            .map_err(rmm_error)?;
        execution_connection(executions, &selection, field, ascending, &args)
    }

    /// Initiators, statuses and machines of a script's filtered executions, with counts.
    async fn script_execution_filters(
        &self,
        ctx: &Context<'_>,
        script_id: ID,
        filter: Option<ScriptExecutionFilterInput>,
        search: Option<String>,
    ) -> GqlResult<ScriptExecutionFilters> {
        let selection = ExecutionSelection::new(filter, search)?;
        let local = script_local("scriptId", &script_id)?;
        let request = request(ctx);
        let tenant = &request.admin.tenant;
        let executions = request
            .state
            .management
            .rmm
            .script_executions(tenant, &local)
            .await
            .map_err(rmm_error)?;
        execution_filters(ctx, &executions, &selection).await
    }

    /// Every machine's execution of one run (a script's or an ad-hoc command's), by the
    /// `executionId` a dispatch returned; empty when the tenant has no such run.
    async fn run_executions(
        &self,
        ctx: &Context<'_>,
        execution_id: String,
    ) -> GqlResult<Vec<ExecutionNode>> {
        let request = request(ctx);
        match request
            .state
            .management
            .rmm
            .executions(&request.admin.tenant, &execution_id)
            .await
        {
            Ok(mut found) => {
                found.sort_by(|a, b| a.machine_id.cmp(&b.machine_id));
                Ok(found.into_iter().map(ExecutionNode).collect())
            }
            Err(rmm::RmmError::NotFound(_)) => Ok(Vec::new()),
            Err(error) => Err(rmm_error(error)),
        }
    }
}

#[derive(Default, Debug)]
pub struct ScriptMutation;

impl ScriptMutation {
    async fn set_status(
        ctx: &Context<'_>,
        action: &str,
        id: &ID,
        status: &str,
    ) -> GqlResult<Script> {
        let local = script_local("id", id)?;
        let request = request(ctx);
        let rmm = &request.state.management.rmm;
        let tenant = &request.admin.tenant;
        let before = rmm.script(tenant, &local).await.map_err(rmm_error)?;
        let after = rmm
            .set_script_status(tenant, &local, status)
            .await
            .map_err(rmm_error)?;
        if before.status != after.status {
            record(
                ctx,
                action,
                AuditChange {
                    target_type: "Script",
                    target_id: local,
                    before: snapshot(&before),
                    after: snapshot(&after),
                },
            )
            .await;
        }
        Ok(after)
    }

    async fn dispatched(
        ctx: &Context<'_>,
        action: &str,
        execution_id: String,
        what: serde_json::Value,
    ) -> DispatchResponse {
        record(
            ctx,
            action,
            AuditChange {
                target_type: "ScriptExecution",
                target_id: execution_id.clone(),
                before: None,
                after: Some(what),
            },
        )
        .await;
        DispatchResponse {
            execution_id,
            run_id: None,
        }
    }

    async fn run_script_on(
        ctx: &Context<'_>,
        action: &str,
        machine_ids: Vec<String>,
        run: ScriptRunOptions,
    ) -> GqlResult<DispatchResponse> {
        let local = script_local("input.scriptId", &run.script_id)?;
        let input = RunInput {
            machine_ids: machine_ids.clone(),
            args: run.args,
            env_vars: env_vars(run.env_vars),
            timeout_seconds: seconds("input.timeoutSeconds", run.timeout_seconds)?,
            privilege_level: run.privilege_level.map(|level| enum_name(level).to_owned()),
        };
        let request = request(ctx);
        let execution_id = request
            .state
            .management
            .rmm
            .run_script(
                &request.admin.tenant,
                &request.admin.user_id,
                &local,
                input,
                request.state.management.client.get(),
            )
            .await
            .map_err(rmm_error)?;
        let what = serde_json::json!({"scriptId": local, "machineIds": machine_ids});
        Ok(Self::dispatched(ctx, action, execution_id, what).await)
    }

    async fn run_command_on(
        ctx: &Context<'_>,
        action: &str,
        machine_ids: Vec<String>,
        run: CommandRunOptions,
    ) -> GqlResult<DispatchResponse> {
        let command = run.command;
        let input = CommandInput {
            machine_ids: machine_ids.clone(),
            shell: enum_name(run.shell).to_owned(),
            command: command.clone(),
            timeout_seconds: seconds("input.timeoutSeconds", run.timeout_seconds)?,
            privilege_level: run.privilege_level.map(|level| enum_name(level).to_owned()),
        };
        let request = request(ctx);
        let execution_id = request
            .state
            .management
            .rmm
            .run_command(
                &request.admin.tenant,
                &request.admin.user_id,
                input,
                request.state.management.client.get(),
            )
            .await
            .map_err(rmm_error)?;
        let what = serde_json::json!({"command": command, "machineIds": machine_ids});
        Ok(Self::dispatched(ctx, action, execution_id, what).await)
    }
}

#[Object]
impl ScriptMutation {
    /// Adds a script to the library. Secret variables are sealed and never shown again.
    async fn create_script(
        &self,
        ctx: &Context<'_>,
        input: CreateScriptInput,
    ) -> GqlResult<ScriptNode> {
        let input = script_input(input)?;
        let request = request(ctx);
        let script = request
            .state
            .management
            .rmm
            .create_script(&request.admin.tenant, &request.admin.user_id, input)
            .await
            .map_err(rmm_error)?;
        record(
            ctx,
            "createScript",
            AuditChange {
                target_type: "Script",
                target_id: script.id.clone(),
                before: None,
                after: snapshot(&script),
            },
        )
        .await;
        Ok(ScriptNode(script))
    }

    /// Replaces a script (PUT semantics).
    async fn update_script(
        &self,
        ctx: &Context<'_>,
        input: UpdateScriptInput,
    ) -> GqlResult<ScriptNode> {
        let local = script_local("input.id", &input.id)?;
        let replacement = script_input(input.script)?;
        let request = request(ctx);
        let rmm = &request.state.management.rmm;
        let tenant = &request.admin.tenant;
        let before = rmm.script(tenant, &local).await.map_err(rmm_error)?;
        let script = rmm
            .update_script(tenant, &local, replacement)
            .await
            .map_err(rmm_error)?;
        record(
            ctx,
            "updateScript",
            AuditChange {
                target_type: "Script",
                target_id: local,
                before: snapshot(&before),
                after: snapshot(&script),
            },
        )
        .await;
        Ok(ScriptNode(script))
    }

    /// Deletes a script (soft, as OpenFrame: `status` becomes `DELETED`); returns its id.
    async fn delete_script(&self, ctx: &Context<'_>, id: ID) -> GqlResult<ID> {
        Self::set_status(ctx, "deleteScript", &id, "DELETED").await?;
        Ok(id)
    }

    /// An archived script is kept but cannot run.
    async fn archive_script(&self, ctx: &Context<'_>, id: ID) -> GqlResult<ScriptNode> {
        Self::set_status(ctx, "archiveScript", &id, "ARCHIVED")
            .await
            .map(ScriptNode)
    }

    async fn unarchive_script(&self, ctx: &Context<'_>, id: ID) -> GqlResult<ScriptNode> {
        Self::set_status(ctx, "unarchiveScript", &id, "ACTIVE")
            .await
            .map(ScriptNode)
    }

    /// Runs an active script on one machine.
    async fn run_script(
        &self,
        ctx: &Context<'_>,
        input: RunScriptInput,
    ) -> GqlResult<DispatchResponse> {
        Self::run_script_on(ctx, "runScript", vec![input.machine_id], input.run).await
    }

    /// Runs an active script on 1 to 500 machines.
    async fn batch_run_script(
        &self,
        ctx: &Context<'_>,
        input: BatchRunScriptInput,
    ) -> GqlResult<DispatchResponse> {
        Self::run_script_on(ctx, "batchRunScript", input.machine_ids, input.run).await
    }

    /// Runs an ad-hoc command on one machine.
    async fn run_command(
        &self,
        ctx: &Context<'_>,
        input: RunCommandInput,
    ) -> GqlResult<DispatchResponse> {
        Self::run_command_on(ctx, "runCommand", vec![input.machine_id], input.run).await
    }

    /// Runs an ad-hoc command on 1 to 500 machines.
    async fn batch_run_command(
        &self,
        ctx: &Context<'_>,
        input: BatchRunCommandInput,
    ) -> GqlResult<DispatchResponse> {
        Self::run_command_on(ctx, "batchRunCommand", input.machine_ids, input.run).await
    }

    /// Cancels a machine's execution that has not finished: the agent is told, the
    /// execution becomes `CANCELLED`.
    async fn cancel_execution(
        &self,
        ctx: &Context<'_>,
        input: CancelExecutionInput,
    ) -> GqlResult<DispatchResponse> {
        let request = request(ctx);
        let execution = request
            .state
            .management
            .rmm
            .cancel(
                &request.admin.tenant,
                &input.execution_id,
                &input.machine_id,
                request.state.management.client.get(),
            )
            .await
            .map_err(rmm_error)?;
        record(
            ctx,
            "cancelExecution",
            AuditChange {
                target_type: "ScriptExecution",
                target_id: format!("{}:{}", execution.execution_id, execution.machine_id),
                before: None,
                after: snapshot(&execution),
            },
        )
        .await;
        Ok(DispatchResponse {
            execution_id: execution.execution_id,
            run_id: None,
        })
    }
}

/// One page of `executions` (selected, sorted by `field`).
pub(super) fn execution_connection(
    executions: Vec<Execution>,
    selection: &ExecutionSelection,
    field: &str,
    ascending: bool,
    args: &PageArgs,
) -> GqlResult<ScriptExecutionConnection> {
    let mut sorted: Vec<(String, Execution)> = executions
        .into_iter()
        .filter(|execution| selection.keeps(execution))
        .map(|execution| (execution_sort_key(&execution, field), execution))
        .collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if !ascending {
        sorted.reverse();
    }
    let page = relay::paginate(sorted, ascending, args)?;
    Ok(ScriptExecutionConnection {
        edges: page
            .rows
            .into_iter()
            .map(|(cursor, execution)| ScriptExecutionEdge {
                node: ExecutionNode(execution),
                cursor,
            })
            .collect(),
        page_info: page.info,
        filtered_count: page.filtered_count,
    })
}

/// Initiators, statuses and machines (labelled with hostnames) of the selected executions.
pub(super) async fn execution_filters(
    ctx: &Context<'_>,
    executions: &[Execution],
    selection: &ExecutionSelection,
) -> GqlResult<ScriptExecutionFilters> {
    let request = request(ctx);
    let tenant = &request.admin.tenant;
    let mut initiators = BTreeMap::<String, i32>::new();
    let mut statuses = BTreeMap::<String, i32>::new();
    let mut machines = BTreeMap::<String, i32>::new();
    let mut filtered = 0;
    for execution in executions.iter().filter(|e| selection.keeps(e)) {
        filtered += 1;
        *initiators
            .entry(execution.initiated_by.clone())
            .or_default() += 1;
        *statuses.entry(execution.status.clone()).or_default() += 1;
        *machines.entry(execution.machine_id.clone()).or_default() += 1;
    }
    let mut machines = DeviceFilterOption::counted(machines);
    let hostnames: Vec<Option<String>> = request
        .state
        .inventory
        .view(tenant, |known, _| {
            machines
                .iter()
                .map(|option| {
                    known
                        .get(&option.value)
                        .map(|machine| machine.hostname.clone())
                })
                .collect()
        })
        .await
        .map_err(|error| gql_error(error.into()))?;
    for (option, hostname) in machines.iter_mut().zip(hostnames) {
        if let Some(hostname) = hostname {
            option.label = hostname;
        }
    }
    Ok(ScriptExecutionFilters {
        initiators: DeviceFilterOption::counted(initiators),
        statuses: DeviceFilterOption::counted(statuses),
        machines,
        filtered_count: filtered,
    })
}
