//! Script schedules (OpenFrame's `script_schedules`): an ordered list of scripts run on a
//! selection of machines, either at a date-time on the 30-minute grid (optionally repeating
//! every multiple of 30 minutes) or when a machine comes online for the first time.
//!
//! - **Selection**: `SPECIFIC` machines assigned by id, or `CRITERIA` (organizations, device
//!   types, OS types) evaluated when the schedule runs. Deleted and archived machines, and
//!   machines whose OS is not among the schedule's platforms, are left out.
//! - **Runs** (`schedule_runs`): each firing dispatches every script in order, through
//!   [`Rmm::run_script_for`], so executions carry `scheduleId` and the source `SCHEDULED`. A
//!   run's status is derived from its executions: `RUNNING` while any is unfinished, then
//!   `SUCCESS` or `FAILED`. A schedule keeps its newest 500 runs.
//! - **The clock**: [`Schedules::tick`] (every few seconds) fires what is due. Firings missed
//!   while the appliance was stopped run once at start, then the schedule continues on its grid.
//! - **`DEVICE_ONLINE`**: presence reports each machine that turns ONLINE; a schedule runs once
//!   per machine it selects, the first time that machine is seen online after the schedule
//!   was made.
//! - Per-script parameters may carry arguments and plain variables; secret variables belong on
//!   the script itself (sealed there), and are refused here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use openframe_storage::model::DocumentId;
use openframe_storage::{Clock, DocumentStore, TenantId};
use serde::{Deserialize, Serialize};

use super::rmm::{self, EnvVar, Execution, Rmm, RmmError, RunInput};
use crate::domain::Invalid;
use crate::identity::crypto::random_uuid;
use crate::inventory::{Inventory, Machine};

const SCHEDULES: &str = "script_schedules";
const RUNS: &str = "schedule_runs";
/// The grid start times sit on, and the unit of `repeat`.
pub const GRID_MS: i64 = 30 * 60 * 1000;
/// The most scripts one schedule runs.
const MAX_SCRIPTS: usize = 20;
/// The most machines one schedule may be assigned.
pub const MAX_ASSIGNED: usize = 10_000;
/// Runs kept per schedule.
const KEPT_RUNS: usize = 500;
/// The machines one dispatch may target (Rmm's limit).
const DISPATCH_CHUNK: usize = 500;

pub const OS_TYPES: [&str; 3] = ["WINDOWS", "MAC_OS", "LINUX"];

/// A script's parameters within a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScriptParams {
    pub script_id: String,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub env_vars: Vec<EnvVar>,
}

/// Which machines a `CRITERIA` schedule selects; an empty list does not narrow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCriteria {
    #[serde(default)]
    pub organization_ids: Vec<String>,
    #[serde(default)]
    pub device_types: Vec<String>,
    #[serde(default)]
    pub os_types: Vec<String>,
}

impl DeviceCriteria {
    fn selects(&self, machine: &Machine) -> bool {
        let any = |wanted: &[String], value: Option<&str>| {
            wanted.is_empty() || value.is_some_and(|value| wanted.iter().any(|w| w == value))
        };
        any(&self.organization_ids, machine.organization_id.as_deref())
            && any(&self.device_types, Some(&machine.device_type))
            && any(&self.os_types, Some(&machine.os_type))
    }
}

/// A schedule as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub id: String,
    pub name: String,
    pub description: String,
    pub supported_platforms: Vec<String>,
    /// In the order they run.
    pub script_ids: Vec<String>,
    pub script_custom_params: Vec<ScriptParams>,
    /// `SPECIFIC` or `CRITERIA`.
    pub selection_mode: String,
    pub device_criteria: DeviceCriteria,
    /// The machines a `SPECIFIC` schedule runs on.
    pub machine_ids: Vec<String>,
    /// `DATE_TIME` or `DEVICE_ONLINE`.
    pub trigger: String,
    pub start_at: Option<i64>,
    /// Seconds, a multiple of 1800.
    pub repeat: Option<i64>,
    pub next_run_at: Option<i64>,
    pub last_run_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// `ACTIVE`, `ARCHIVED`, `DELETED`.
    pub status: String,
    pub status_changed_at: i64,
    /// `DEVICE_ONLINE`: machines already dispatched to.
    #[serde(default)]
    pub online_dispatched: Vec<String>,
}

/// What an administrator sends to create or replace a schedule.
#[derive(Debug, Clone, Default)]
pub struct ScheduleInput {
    pub name: String,
    pub description: String,
    pub supported_platforms: Vec<String>,
    pub script_ids: Vec<String>,
    pub script_custom_params: Vec<ScriptParams>,
    pub selection_mode: String,
    pub device_criteria: DeviceCriteria,
    pub trigger: String,
    pub start_at: Option<i64>,
    pub repeat: Option<i64>,
}

/// One firing of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRun {
    pub id: String,
    pub schedule_id: String,
    /// The technician (`runScheduleJobNow`), or the schedule's author for timed runs.
    pub initiated_by: String,
    /// `DATE_TIME`, `DEVICE_ONLINE` or `MANUAL`.
    pub trigger: String,
    /// One per script dispatched.
    pub execution_ids: Vec<String>,
    pub total_machine_count: usize,
    pub dispatched_at: i64,
    /// Why (part of) the run could not be dispatched.
    #[serde(default)]
    pub error: Option<String>,
}

/// A run with its status, derived from its executions.
#[derive(Debug, Clone)]
pub struct RunView {
    pub run: ScheduleRun,
    /// `RUNNING`, `SUCCESS` or `FAILED`.
    pub status: &'static str,
    pub finished_at: Option<i64>,
    /// Progress: executions dispatched (scripts × machines), finished, and failed (or
    /// cancelled) among them.
    pub execution_count: usize,
    pub finished_count: usize,
    pub failed_count: usize,
}

#[derive(Debug)]
pub struct Schedules {
    documents: Arc<dyn DocumentStore>,
    inventory: Arc<Inventory>,
    rmm: Arc<Rmm>,
    clock: Arc<dyn Clock>,
    /// `(tenant, schedule id)` → next firing, for every active `DATE_TIME` schedule.
    due: Mutex<HashMap<(TenantId, String), i64>>,
    /// Every active `DEVICE_ONLINE` schedule, so a machine coming online costs no store read
    /// in a tenant that has none.
    on_online: Mutex<std::collections::HashSet<(TenantId, String)>>,
    /// The last run id's time stamp.
    last_stamp: std::sync::atomic::AtomicI64,
    /// Read-modify-writes of schedules take turns.
    writing: tokio::sync::Mutex<()>,
}

fn rule(field: &'static str, problem: impl Into<String>) -> RmmError {
    Invalid::new(field, problem).into()
}

/// The first firing strictly after `after`, on `start + k * repeat`; `None` when none is left.
pub fn next_after(start: i64, repeat: Option<i64>, after: i64) -> Option<i64> {
    if start > after {
        return Some(start);
    }
    let step = repeat.filter(|seconds| *seconds > 0)? * 1000;
    let steps = (after - start) / step + 1;
    Some(start + steps * step)
}

impl Schedules {
    pub fn new(
        documents: Arc<dyn DocumentStore>,
        inventory: Arc<Inventory>,
        rmm: Arc<Rmm>,
        clock: Arc<dyn Clock>,
    ) -> Schedules {
        Schedules {
            documents,
            inventory,
            rmm,
            clock,
            due: Mutex::new(HashMap::new()),
            on_online: Mutex::new(std::collections::HashSet::new()),
            last_stamp: std::sync::atomic::AtomicI64::new(0),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    fn due(&self) -> std::sync::MutexGuard<'_, HashMap<(TenantId, String), i64>> {
        self.due
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Loads every active timed schedule of `tenants` into the clock.
    pub async fn watch(&self, tenants: &[TenantId]) -> Result<(), RmmError> {
        for tenant in tenants {
            for schedule in self.all(tenant).await? {
                self.track(tenant, &schedule);
            }
        }
        Ok(())
    }

    fn track(&self, tenant: &TenantId, schedule: &Schedule) {
        let key = (tenant.clone(), schedule.id.clone());
        {
            let mut on_online = self
                .on_online
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if schedule.status == "ACTIVE" && schedule.trigger == "DEVICE_ONLINE" {
                on_online.insert(key.clone());
            } else {
                on_online.remove(&key);
            }
        }
        match (schedule.status.as_str(), schedule.next_run_at) {
            ("ACTIVE", Some(at)) if schedule.trigger == "DATE_TIME" => {
                self.due().insert(key, at);
            }
            _ => {
                self.due().remove(&key);
            }
        }
    }

    // --- The library of schedules. ---

    pub async fn create(
        &self,
        tenant: &TenantId,
        by: &str,
        input: ScheduleInput,
    ) -> Result<Schedule, RmmError> {
        let now = self.clock.now_ms();
        let mut schedule = Schedule {
            id: random_uuid()?,
            name: String::new(),
            description: String::new(),
            supported_platforms: Vec::new(),
            script_ids: Vec::new(),
            script_custom_params: Vec::new(),
            selection_mode: "SPECIFIC".into(),
            device_criteria: DeviceCriteria::default(),
            machine_ids: Vec::new(),
            trigger: String::new(),
            start_at: None,
            repeat: None,
            next_run_at: None,
            last_run_at: None,
            created_by: by.to_owned(),
            created_at: now,
            updated_at: now,
            status: "ACTIVE".into(),
            status_changed_at: now,
            online_dispatched: Vec::new(),
        };
        self.apply(tenant, &mut schedule, input).await?;
        self.rmm
            .put(tenant, SCHEDULES, &schedule.id, &schedule)
            .await?;
        self.track(tenant, &schedule);
        Ok(schedule)
    }

    /// PUT semantics; the assigned machines stay.
    pub async fn update(
        &self,
        tenant: &TenantId,
        id: &str,
        input: ScheduleInput,
    ) -> Result<Schedule, RmmError> {
        let _turn = self.writing.lock().await;
        let mut schedule = self.live(tenant, id).await?;
        self.apply(tenant, &mut schedule, input).await?;
        schedule.updated_at = self.clock.now_ms();
        self.rmm
            .put(tenant, SCHEDULES, &schedule.id, &schedule)
            .await?;
        self.track(tenant, &schedule);
        Ok(schedule)
    }

    /// `ACTIVE` ↔ `ARCHIVED`, or `DELETED` (soft). An archived schedule does not fire; made
    /// active again, it continues from its next grid time after now.
    pub async fn set_status(
        &self,
        tenant: &TenantId,
        id: &str,
        status: &str,
    ) -> Result<Schedule, RmmError> {
        let _turn = self.writing.lock().await;
        let mut schedule = self.live(tenant, id).await?;
        if schedule.status != status {
            let now = self.clock.now_ms();
            schedule.status = status.to_owned();
            schedule.status_changed_at = now;
            schedule.updated_at = now;
            if status == "ACTIVE" && schedule.trigger == "DATE_TIME" {
                schedule.next_run_at = schedule
                    .start_at
                    .and_then(|start| next_after(start, schedule.repeat, now));
            }
            self.rmm
                .put(tenant, SCHEDULES, &schedule.id, &schedule)
                .await?;
            self.track(tenant, &schedule);
        }
        Ok(schedule)
    }

    /// A schedule that is not deleted.
    pub async fn get(&self, tenant: &TenantId, id: &str) -> Result<Schedule, RmmError> {
        self.live(tenant, id).await
    }

    async fn live(&self, tenant: &TenantId, id: &str) -> Result<Schedule, RmmError> {
        match self.rmm.get::<Schedule>(tenant, SCHEDULES, id).await? {
            Some(schedule) if schedule.status != "DELETED" => Ok(schedule),
            _ => Err(RmmError::NotFound(format!("no schedule {id:?}"))),
        }
    }

    /// Every schedule of the tenant, deleted ones included, in no order.
    pub async fn all(&self, tenant: &TenantId) -> Result<Vec<Schedule>, RmmError> {
        Ok(crate::inventory::read_all(
            self.documents.as_ref(),
            tenant,
            &rmm::collection(SCHEDULES)?,
        )
        .await?)
    }

    async fn apply(
        &self,
        tenant: &TenantId,
        schedule: &mut Schedule,
        input: ScheduleInput,
    ) -> Result<(), RmmError> {
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(rule("name", "must be 1 to 200 characters"));
        }
        if input.description.chars().count() > 2000 {
            return Err(rule("description", "must be at most 2000 characters"));
        }
        let platforms = input
            .supported_platforms
            .iter()
            .map(|platform| rmm::one_of(platform, &rmm::PLATFORMS, "supportedPlatforms"))
            .collect::<Result<Vec<_>, _>>()?;
        if input.script_ids.is_empty() || input.script_ids.len() > MAX_SCRIPTS {
            return Err(rule(
                "scriptIds",
                format!("must name 1 to {MAX_SCRIPTS} scripts"),
            ));
        }
        for (index, script_id) in input.script_ids.iter().enumerate() {
            if input.script_ids[..index].contains(script_id) {
                return Err(rule("scriptIds", format!("{script_id:?} is given twice")));
            }
            match self.rmm.script(tenant, script_id).await {
                Ok(script) if script.status == "ACTIVE" => {}
                Ok(script) => {
                    return Err(rule(
                        "scriptIds",
                        format!(
                            "the script {script_id:?} is {}; only ACTIVE scripts can be scheduled",
                            script.status
                        ),
                    ));
                }
                Err(RmmError::NotFound(_)) => {
                    return Err(rule(
                        "scriptIds",
                        format!("no script {script_id:?} in this tenant"),
                    ));
                }
                Err(error) => return Err(error),
            }
        }
        for params in &input.script_custom_params {
            if !input.script_ids.contains(&params.script_id) {
                return Err(rule(
                    "scriptCustomParams",
                    format!(
                        "{:?} is not one of the schedule's scripts",
                        params.script_id
                    ),
                ));
            }
            if params
                .args
                .as_ref()
                .is_some_and(|args| args.len() > 100 || args.iter().any(|arg| arg.len() > 4096))
            {
                return Err(rule(
                    "scriptCustomParams",
                    "at most 100 arguments of 4 KiB each",
                ));
            }
            if params.env_vars.len() > 100 {
                return Err(rule("scriptCustomParams", "at most 100 variables"));
            }
            if let Some(var) = params.env_vars.iter().find(|var| var.secret) {
                return Err(rule(
                    "scriptCustomParams",
                    format!(
                        "{:?} is secret: put secret variables on the script, where they are sealed",
                        var.name
                    ),
                ));
            }
        }
        let selection_mode = rmm::one_of(
            &input.selection_mode,
            &["SPECIFIC", "CRITERIA"],
            "selectionMode",
        )?;
        let criteria = checked_criteria(input.device_criteria)?;
        let trigger = rmm::one_of(&input.trigger, &["DATE_TIME", "DEVICE_ONLINE"], "trigger")?;
        let now = self.clock.now_ms();
        let next_run_at = if trigger == "DATE_TIME" {
            let start = input
                .start_at
                .ok_or_else(|| rule("startAt", "a DATE_TIME schedule needs a start"))?;
            if start % GRID_MS != 0 {
                return Err(rule(
                    "startAt",
                    "must be on a :00 or :30 minute boundary (UTC), with no seconds",
                ));
            }
            if let Some(repeat) = input.repeat
                && (repeat < 1800 || repeat % 1800 != 0)
            {
                return Err(rule(
                    "repeat",
                    format!("must be a positive multiple of 1800 seconds, got {repeat}"),
                ));
            }
            if input.repeat.is_none() && start <= now {
                return Err(rule(
                    "startAt",
                    "a schedule that does not repeat must start in the future",
                ));
            }
            // Unchanged timing keeps the schedule's place; new timing starts afresh.
            if schedule.start_at == Some(start)
                && schedule.repeat == input.repeat
                && schedule.trigger == "DATE_TIME"
            {
                schedule.next_run_at
            } else {
                next_after(start, input.repeat, now)
            }
        } else {
            if input.start_at.is_some() || input.repeat.is_some() {
                return Err(rule(
                    "startAt",
                    "a DEVICE_ONLINE schedule has no start or repeat",
                ));
            }
            None
        };
        schedule.name = name.to_owned();
        schedule.description = input.description.trim().to_owned();
        schedule.supported_platforms = platforms;
        schedule.script_ids = input.script_ids;
        schedule.script_custom_params = input.script_custom_params;
        schedule.selection_mode = selection_mode;
        schedule.device_criteria = criteria;
        schedule.trigger = trigger;
        schedule.start_at = input.start_at;
        schedule.repeat = input.repeat;
        schedule.next_run_at = next_run_at;
        Ok(())
    }

    // --- Machines. ---

    /// Replaces, adds to or removes from the assigned machines; every id must be one of the
    /// tenant's machines that is not deleted.
    pub async fn assign(
        &self,
        tenant: &TenantId,
        id: &str,
        machine_ids: &[String],
        how: Assign,
    ) -> Result<Schedule, RmmError> {
        if how != Assign::Remove {
            rmm::require_machines(&self.inventory, tenant, machine_ids).await?;
        }
        let _turn = self.writing.lock().await;
        let mut schedule = self.live(tenant, id).await?;
        let mut assigned = match how {
            Assign::Set => Vec::new(),
            Assign::Add | Assign::Remove => schedule.machine_ids.clone(),
        };
        match how {
            Assign::Set | Assign::Add => {
                for machine in machine_ids {
                    if !assigned.contains(machine) {
                        assigned.push(machine.clone());
                    }
                }
            }
            Assign::Remove => assigned.retain(|machine| !machine_ids.contains(machine)),
        }
        if assigned.len() > MAX_ASSIGNED {
            return Err(rule(
                "machineIds",
                format!("a schedule runs on at most {MAX_ASSIGNED} machines"),
            ));
        }
        if assigned != schedule.machine_ids {
            schedule.machine_ids = assigned;
            schedule.updated_at = self.clock.now_ms();
            self.rmm
                .put(tenant, SCHEDULES, &schedule.id, &schedule)
                .await?;
        }
        Ok(schedule)
    }

    /// Switches the schedule to `CRITERIA` selection with these criteria.
    pub async fn set_criteria(
        &self,
        tenant: &TenantId,
        id: &str,
        criteria: DeviceCriteria,
    ) -> Result<Schedule, RmmError> {
        let criteria = checked_criteria(criteria)?;
        let _turn = self.writing.lock().await;
        let mut schedule = self.live(tenant, id).await?;
        schedule.selection_mode = "CRITERIA".into();
        schedule.device_criteria = criteria;
        schedule.updated_at = self.clock.now_ms();
        self.rmm
            .put(tenant, SCHEDULES, &schedule.id, &schedule)
            .await?;
        Ok(schedule)
    }

    /// The machines the schedule would run on now.
    pub async fn targets(
        &self,
        tenant: &TenantId,
        schedule: &Schedule,
    ) -> Result<Vec<String>, RmmError> {
        Ok(self
            .inventory
            .view(tenant, |machines, _| {
                let runnable = |machine: &Machine| {
                    !matches!(machine.status.as_str(), "DELETED" | "ARCHIVED")
                        && (schedule.supported_platforms.is_empty()
                            || schedule.supported_platforms.contains(&machine.os_type))
                };
                let mut targets: Vec<String> = if schedule.selection_mode == "CRITERIA" {
                    machines
                        .values()
                        .filter(|machine| {
                            runnable(machine) && schedule.device_criteria.selects(machine)
                        })
                        .map(|machine| machine.machine_id.clone())
                        .collect()
                } else {
                    schedule
                        .machine_ids
                        .iter()
                        .filter(|id| machines.get(*id).is_some_and(runnable))
                        .cloned()
                        .collect()
                };
                targets.sort();
                targets
            })
            .await?)
    }

    // --- Runs. ---

    /// Fires a schedule now (`runScheduleJobNow`), whatever its trigger; its timing is not
    /// changed.
    pub async fn run_now(
        &self,
        tenant: &TenantId,
        by: &str,
        id: &str,
        nats: Option<&async_nats::Client>,
    ) -> Result<ScheduleRun, RmmError> {
        let schedule = self.live(tenant, id).await?;
        if schedule.status != "ACTIVE" {
            return Err(RmmError::Conflict(format!(
                "the schedule is {}; only ACTIVE schedules run",
                schedule.status
            )));
        }
        let nats = nats.ok_or(RmmError::NotConnected)?;
        let targets = self.targets(tenant, &schedule).await?;
        self.fire(tenant, &schedule, by, "MANUAL", targets, nats)
            .await
    }

    /// Dispatches every script of the schedule, in order, to `targets`, and records the run.
    async fn fire(
        &self,
        tenant: &TenantId,
        schedule: &Schedule,
        by: &str,
        trigger: &str,
        targets: Vec<String>,
        nats: &async_nats::Client,
    ) -> Result<ScheduleRun, RmmError> {
        let now = self.clock.now_ms();
        let mut run = ScheduleRun {
            id: format!("{:013}-{}", self.run_stamp(now), random_uuid()?),
            schedule_id: schedule.id.clone(),
            initiated_by: by.to_owned(),
            trigger: trigger.to_owned(),
            execution_ids: Vec::new(),
            total_machine_count: targets.len(),
            dispatched_at: now,
            error: None,
        };
        let mut problems = Vec::new();
        if targets.is_empty() {
            problems.push("no machine matched the schedule's selection".to_owned());
        }
        for script_id in &schedule.script_ids {
            let params = schedule
                .script_custom_params
                .iter()
                .find(|params| &params.script_id == script_id);
            for chunk in targets.chunks(DISPATCH_CHUNK) {
                let input = RunInput {
                    machine_ids: chunk.to_vec(),
                    args: params.and_then(|params| params.args.clone()),
                    env_vars: params
                        .map(|params| params.env_vars.clone())
                        .unwrap_or_default(),
                    timeout_seconds: None,
                    privilege_level: None,
                };
                match self
                    .rmm
                    .run_script_for(tenant, by, script_id, input, Some(nats), Some(&schedule.id))
                    .await
                {
                    Ok(execution_id) => run.execution_ids.push(execution_id),
                    Err(error) => problems.push(format!("script {script_id}: {error}")),
                }
            }
        }
        if !problems.is_empty() {
            run.error = Some(problems.join("; "));
        }
        self.rmm.put(tenant, RUNS, &run.id, &run).await?;
        self.prune(tenant, &schedule.id).await;
        tracing::info!(%tenant, schedule_id = %schedule.id, trigger, machines = run.total_machine_count, error = run.error.as_deref().unwrap_or(""), "schedule fired");
        Ok(run)
    }

    /// The time a run id starts with: `now`, or one past the previous stamp, so ids (and the
    /// newest-first order of runs) increase even for runs in the same millisecond.
    fn run_stamp(&self, now: i64) -> i64 {
        let mut previous = self.last_stamp.load(std::sync::atomic::Ordering::Relaxed);
        loop {
            let stamp = now.max(previous + 1).max(0);
            match self.last_stamp.compare_exchange_weak(
                previous,
                stamp,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            ) {
                Ok(_) => return stamp,
                Err(current) => previous = current,
            }
        }
    }

    /// Keeps the newest [`KEPT_RUNS`] runs of a schedule.
    async fn prune(&self, tenant: &TenantId, schedule_id: &str) {
        let found: Vec<ScheduleRun> = match self
            .rmm
            .find_all(tenant, RUNS, "scheduleId", schedule_id)
            .await
        {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, schedule_id, "cannot count a schedule's runs");
                return;
            }
        };
        // Ascending by id, and ids start with the dispatch time: the oldest come first.
        let excess = found.len().saturating_sub(KEPT_RUNS);
        for run in found.into_iter().take(excess) {
            let deleted = match (rmm::collection(RUNS), DocumentId::parse(&run.id)) {
                (Ok(collection), Ok(id)) => self
                    .documents
                    .delete(tenant, &collection, &id, None)
                    .await
                    .map_err(|error| error.to_string()),
                _ => Err(format!("{:?} is not a run id", run.id)),
            };
            if let Err(error) = deleted {
                tracing::warn!(%error, schedule_id, "cannot prune an old schedule run");
            }
        }
    }

    /// One run by its id (whatever its schedule's state).
    pub async fn run(&self, tenant: &TenantId, id: &str) -> Result<Option<ScheduleRun>, RmmError> {
        self.rmm.get(tenant, RUNS, id).await
    }

    /// A schedule's runs, newest first, with their status.
    pub async fn runs(
        &self,
        tenant: &TenantId,
        schedule_id: &str,
    ) -> Result<Vec<RunView>, RmmError> {
        self.live(tenant, schedule_id).await?;
        let runs: Vec<ScheduleRun> = self
            .rmm
            .find_all(tenant, RUNS, "scheduleId", schedule_id)
            .await?;
        let executions = self.rmm.schedule_executions(tenant, schedule_id).await?;
        let mut by_execution: HashMap<&str, Vec<&Execution>> = HashMap::new();
        for execution in &executions {
            by_execution
                .entry(execution.execution_id.as_str())
                .or_default()
                .push(execution);
        }
        let mut views: Vec<RunView> = runs
            .into_iter()
            .map(|run| {
                let mine: Vec<&Execution> = run
                    .execution_ids
                    .iter()
                    .flat_map(|id| by_execution.get(id.as_str()).cloned().unwrap_or_default())
                    .collect();
                let unfinished = mine
                    .iter()
                    .any(|e| matches!(e.status.as_str(), "PENDING" | "DISPATCHED"));
                let status = if unfinished {
                    "RUNNING"
                } else if run.error.is_none() && mine.iter().all(|e| e.status == "SUCCESS") {
                    "SUCCESS"
                } else {
                    "FAILED"
                };
                let finished_at = (!unfinished).then(|| {
                    mine.iter()
                        .filter_map(|e| e.finished_at)
                        .max()
                        .unwrap_or(run.dispatched_at)
                });
                let finished_count = mine
                    .iter()
                    .filter(|e| !matches!(e.status.as_str(), "PENDING" | "DISPATCHED"))
                    .count();
                let failed_count = mine
                    .iter()
                    .filter(|e| matches!(e.status.as_str(), "FAILED" | "CANCELLED"))
                    .count();
                RunView {
                    execution_count: mine.len(),
                    finished_count,
                    failed_count,
                    run,
                    status,
                    finished_at,
                }
            })
            .collect();
        views.sort_by(|a, b| b.run.id.cmp(&a.run.id));
        Ok(views)
    }

    // --- The clock and presence. ---

    /// Fires every timed schedule that is due; returns how many fired.
    pub async fn tick(&self, nats: Option<&async_nats::Client>) -> usize {
        let Some(nats) = nats else {
            return 0; // nothing can be sent; due schedules wait for NATS
        };
        let now = self.clock.now_ms();
        let due: Vec<(TenantId, String)> = self
            .due()
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        let mut fired = 0;
        for (tenant, id) in due {
            match self.fire_due(&tenant, &id, now, nats).await {
                Ok(true) => fired += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%tenant, schedule_id = %id, %error, "a due schedule could not run; retrying");
                }
            }
        }
        fired
    }

    async fn fire_due(
        &self,
        tenant: &TenantId,
        id: &str,
        now: i64,
        nats: &async_nats::Client,
    ) -> Result<bool, RmmError> {
        let schedule = {
            let _turn = self.writing.lock().await;
            let mut schedule = match self.live(tenant, id).await {
                Ok(schedule) => schedule,
                Err(RmmError::NotFound(_)) => {
                    self.due().remove(&(tenant.clone(), id.to_owned()));
                    return Ok(false);
                }
                Err(error) => return Err(error),
            };
            if schedule.status != "ACTIVE"
                || schedule.trigger != "DATE_TIME"
                || schedule.next_run_at.is_none_or(|at| at > now)
            {
                self.track(tenant, &schedule);
                return Ok(false);
            }
            // The next firing is stored before this one is dispatched: a crash in between
            // skips a firing rather than repeating one.
            schedule.last_run_at = Some(now);
            schedule.next_run_at = schedule
                .start_at
                .and_then(|start| next_after(start, schedule.repeat, now));
            self.rmm
                .put(tenant, SCHEDULES, &schedule.id, &schedule)
                .await?;
            self.track(tenant, &schedule);
            schedule
        };
        let targets = self.targets(tenant, &schedule).await?;
        self.fire(
            tenant,
            &schedule,
            &schedule.created_by,
            "DATE_TIME",
            targets,
            nats,
        )
        .await?;
        Ok(true)
    }

    /// A machine turned ONLINE: `DEVICE_ONLINE` schedules that select it and have not run on
    /// it yet run now, on it alone.
    pub async fn machine_online(
        &self,
        tenant: &TenantId,
        machine_id: &str,
        nats: Option<&async_nats::Client>,
    ) -> Result<usize, RmmError> {
        let Some(nats) = nats else {
            return Ok(0);
        };
        let any = self
            .on_online
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|(owner, _)| owner == tenant);
        if !any {
            return Ok(0);
        }
        let schedules: Vec<Schedule> = self
            .all(tenant)
            .await?
            .into_iter()
            .filter(|schedule| {
                schedule.status == "ACTIVE"
                    && schedule.trigger == "DEVICE_ONLINE"
                    && !schedule.online_dispatched.iter().any(|m| m == machine_id)
            })
            .collect();
        let mut fired = 0;
        for schedule in schedules {
            if !self
                .targets(tenant, &schedule)
                .await?
                .iter()
                .any(|target| target == machine_id)
            {
                continue;
            }
            {
                let _turn = self.writing.lock().await;
                let mut stored = self.live(tenant, &schedule.id).await?;
                if stored.online_dispatched.iter().any(|m| m == machine_id) {
                    continue;
                }
                stored.online_dispatched.push(machine_id.to_owned());
                stored.last_run_at = Some(self.clock.now_ms());
                self.rmm.put(tenant, SCHEDULES, &stored.id, &stored).await?;
            }
            self.fire(
                tenant,
                &schedule,
                &schedule.created_by,
                "DEVICE_ONLINE",
                vec![machine_id.to_owned()],
                nats,
            )
            .await?;
            fired += 1;
        }
        Ok(fired)
    }
}

/// How [`Schedules::assign`] changes the assigned machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assign {
    Set,
    Add,
    Remove,
}

fn checked_criteria(criteria: DeviceCriteria) -> Result<DeviceCriteria, RmmError> {
    let os_types = criteria
        .os_types
        .iter()
        .map(|os| rmm::one_of(os, &OS_TYPES, "deviceCriteria.osTypes"))
        .collect::<Result<Vec<_>, _>>()?;
    if criteria.organization_ids.len() > 1000 || criteria.device_types.len() > 50 {
        return Err(rule(
            "deviceCriteria",
            "at most 1000 organizations and 50 device types",
        ));
    }
    Ok(DeviceCriteria {
        organization_ids: criteria.organization_ids,
        device_types: criteria
            .device_types
            .iter()
            .map(|kind| kind.trim().to_ascii_uppercase())
            .collect(),
        os_types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firings_stay_on_the_grid_after_any_instant() {
        let start = 1_795_168_800_000; // 2026-11-20T10:00:00Z, on the grid
        assert_eq!(start % GRID_MS, 0);
        assert_eq!(next_after(start, None, start - 1), Some(start));
        assert_eq!(next_after(start, None, start), None);
        assert_eq!(next_after(start, Some(1800), start), Some(start + GRID_MS));
        assert_eq!(
            next_after(start, Some(3600), start + 1),
            Some(start + 2 * GRID_MS)
        );
        // Three hours missed: the next firing is the first grid time after now.
        assert_eq!(
            next_after(start, Some(1800), start + 3 * 3_600_000 + 5),
            Some(start + 7 * GRID_MS)
        );
    }
}
