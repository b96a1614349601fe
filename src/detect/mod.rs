//! Offline anomaly detection over the unified log: no model, no download, nothing leaves the
//! appliance. A [`Detector`] holds one tenant's state and sees the tenant's log entries in order
//! ([`Detector::observe`]); the clock moving on ([`Detector::tick`]) resolves what went quiet.
//! What it finds are [`Finding`]s: an alert triggered or resolved, with the evidence that
//! explains it, under a key that makes it one alert however long the anomaly lasts.
//!
//! The rules (thresholds per tenant, [`Thresholds`]):
//! - **Failed sign-in bursts**: `LOGIN_FAILED` on one device (or for one user) at least
//!   `login_failed_count` times within `login_failed_window_ms`.
//! - **First-seen event types**: a device that has been reporting for `first_seen_learning_ms`
//!   logs a type of event it never logged before, and that fewer than `first_seen_fleet_share`
//!   of the tenant's devices ever logged (a first failed sign-in is not news when half the
//!   fleet has had one; a first `HOST_WIPED` is).
//! - **Offline waves**: `offline_devices` different devices going `DEVICE_OFFLINE` within
//!   `offline_window_ms` (one machine rebooting is not news; a site losing power is).
//! - **Rate spikes**: an event type's count this hour against its own hourly baseline (the
//!   previous `baseline_hours`, empty hours counted as 0): a robust z-score (median and median
//!   absolute deviation, so one earlier spike does not hide the next; the spread at least the
//!   square root of the median, as counts go) of `spike_z` or more, and at least
//!   `spike_min_count` events. `POLICY_VIOLATION` has its own, lower minimum.
//!
//! This module is pure: no IO and no clock of its own, so a synthetic stream with known
//! anomalies tests it exactly (`tests` below reports precision and recall).

pub mod incidents;
pub mod runner;
pub mod settings;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde_json::{Value, json};

const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

/// What makes an anomaly; every count and window is per tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub login_failed_count: usize,
    pub login_failed_window_ms: i64,
    pub offline_devices: usize,
    pub offline_window_ms: i64,
    pub first_seen_learning_ms: i64,
    /// A type already logged by at least this share of the tenant's devices is ordinary for the
    /// fleet, and so not news on one more device.
    pub first_seen_fleet_share: f64,
    pub spike_min_count: u64,
    pub policy_violation_min_count: u64,
    pub spike_z: f64,
    pub baseline_hours: usize,
    /// An alert resolves when this long has passed without new evidence.
    pub quiet_ms: i64,
    /// Alerts about the same device or customer this close together make one incident
    /// (`incidents`); the detector itself does not read it.
    pub correlation_window_ms: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            login_failed_count: 10,
            login_failed_window_ms: 5 * MINUTE_MS,
            offline_devices: 5,
            offline_window_ms: 10 * MINUTE_MS,
            first_seen_learning_ms: 24 * HOUR_MS,
            first_seen_fleet_share: 0.1,
            spike_min_count: 20,
            policy_violation_min_count: 10,
            spike_z: 5.0,
            baseline_hours: 168,
            quiet_ms: 30 * MINUTE_MS,
            correlation_window_ms: 30 * MINUTE_MS,
        }
    }
}

/// One entry of the unified log, as the detector needs it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Unix ms.
    pub at: i64,
    pub event_type: &'a str,
    pub device: Option<&'a str>,
    pub user: Option<&'a str>,
    pub organization: Option<&'a str>,
}

/// An anomaly: which rule, about what, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// `rule:subject`: the same anomaly keeps its key while it lasts (deduplication).
    pub key: String,
    pub rule: &'static str,
    pub device: Option<String>,
    pub organization: Option<String>,
    pub severity: &'static str,
    /// One line for a technician.
    pub summary: String,
    /// The numbers behind it.
    pub evidence: Value,
    /// When it triggered (Unix ms).
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    Triggered(Alert),
    /// The alert as it triggered, and when it resolved.
    Resolved {
        alert: Alert,
        at: i64,
    },
}

/// Types the rules leave alone: the detector's own output, and presence, which the offline
/// wave rule reads on its own terms.
fn ignored(event_type: &str) -> bool {
    event_type.starts_with("ALERT_") || matches!(event_type, "DEVICE_HEARTBEAT")
}

fn presence(event_type: &str) -> bool {
    matches!(event_type, "DEVICE_ONLINE" | "DEVICE_OFFLINE")
}

#[derive(Debug)]
struct Open {
    alert: Alert,
    last_evidence: i64,
}

#[derive(Debug)]
struct DeviceHistory {
    first_at: i64,
    types: HashSet<String>,
}

/// One tenant's detection state.
#[derive(Debug, Default)]
pub struct Detector {
    thresholds: Thresholds,
    failed_logins: HashMap<String, VecDeque<i64>>,
    offline: VecDeque<(i64, String)>,
    devices: HashMap<String, DeviceHistory>,
    /// Per event type, how many devices have logged it.
    type_devices: HashMap<String, usize>,
    /// Per event type, its count per hour (hour start → count), the last `baseline_hours`.
    hourly: HashMap<String, BTreeMap<i64, u64>>,
    open: HashMap<String, Open>,
}

impl Detector {
    pub fn new(thresholds: Thresholds) -> Detector {
        Detector {
            thresholds,
            ..Detector::default()
        }
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// New thresholds from now on; what the detector learnt so far stays.
    pub fn set_thresholds(&mut self, thresholds: Thresholds) {
        self.thresholds = thresholds;
    }

    /// Seeds an event type's hourly baseline (from the analytics store at start), so spikes are
    /// measured against history instead of against nothing.
    pub fn seed_baseline(&mut self, event_type: &str, hours: impl IntoIterator<Item = (i64, u64)>) {
        let counts = self.hourly.entry(event_type.to_owned()).or_default();
        for (hour, count) in hours {
            *counts.entry(hour - hour.rem_euclid(HOUR_MS)).or_default() += count;
        }
    }

    /// Forgets the open alerts without resolving them (they were never announced).
    pub fn forget_open(&mut self) {
        self.open.clear();
    }

    /// Alerts currently open, by key.
    pub fn open_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.open.values().map(|open| &open.alert)
    }

    /// One log entry, in the order of the log; returns the alerts it triggers.
    pub fn observe(&mut self, event: Observation<'_>) -> Vec<Finding> {
        if ignored(event.event_type) {
            return Vec::new();
        }
        let mut found = Vec::new();
        if event.event_type == "LOGIN_FAILED" {
            self.failed_login(event, &mut found);
        }
        if event.event_type == "DEVICE_OFFLINE" {
            self.went_offline(event, &mut found);
        }
        if !presence(event.event_type) {
            self.first_seen(event, &mut found);
        }
        self.rate(event, &mut found);
        found
    }

    /// The clock moved to `now`: alerts without new evidence for `quiet_ms` resolve.
    pub fn tick(&mut self, now: i64) -> Vec<Finding> {
        let quiet = self.thresholds.quiet_ms;
        let mut done: Vec<String> = self
            .open
            .iter()
            .filter(|(_, open)| now - open.last_evidence >= quiet)
            .map(|(key, _)| key.clone())
            .collect();
        done.sort();
        done.into_iter()
            .filter_map(|key| self.open.remove(&key))
            .map(|open| Finding::Resolved {
                alert: open.alert,
                at: now,
            })
            .collect()
    }

    /// Opens `alert` unless its key is open already; either way the key has fresh evidence.
    fn raise(&mut self, alert: Alert, at: i64, found: &mut Vec<Finding>) {
        if let Some(open) = self.open.get_mut(&alert.key) {
            open.last_evidence = at;
            return;
        }
        found.push(Finding::Triggered(alert.clone()));
        self.open.insert(
            alert.key.clone(),
            Open {
                alert,
                last_evidence: at,
            },
        );
    }

    fn failed_login(&mut self, event: Observation<'_>, found: &mut Vec<Finding>) {
        let (subject, what) = match (event.device, event.user) {
            (Some(device), _) => (format!("device:{device}"), format!("device {device}")),
            (None, Some(user)) => (format!("user:{user}"), format!("user {user}")),
            (None, None) => ("tenant".to_owned(), "the tenant".to_owned()),
        };
        let window = self.thresholds.login_failed_window_ms;
        let times = self.failed_logins.entry(subject.clone()).or_default();
        times.push_back(event.at);
        while times
            .front()
            .is_some_and(|first| event.at - first >= window)
        {
            times.pop_front();
        }
        if times.len() < self.thresholds.login_failed_count {
            return;
        }
        let count = times.len();
        let first = times.front().copied().unwrap_or(event.at);
        let alert = Alert {
            key: format!("login_failed_burst:{subject}"),
            rule: "login_failed_burst",
            device: event.device.map(str::to_owned),
            organization: event.organization.map(str::to_owned),
            severity: "WARNING",
            summary: format!(
                "{count} failed sign-ins on {what} within {} minutes",
                window / MINUTE_MS
            ),
            evidence: json!({
                "count": count,
                "windowMinutes": window / MINUTE_MS,
                "threshold": self.thresholds.login_failed_count,
                "firstAt": first,
                "lastAt": event.at,
                "user": event.user,
            }),
            at: event.at,
        };
        self.raise(alert, event.at, found);
    }

    fn went_offline(&mut self, event: Observation<'_>, found: &mut Vec<Finding>) {
        let Some(device) = event.device else {
            return;
        };
        let window = self.thresholds.offline_window_ms;
        self.offline.push_back((event.at, device.to_owned()));
        while self
            .offline
            .front()
            .is_some_and(|(first, _)| event.at - first >= window)
        {
            self.offline.pop_front();
        }
        let devices: std::collections::BTreeSet<&str> = self
            .offline
            .iter()
            .map(|(_, device)| device.as_str())
            .collect();
        if devices.len() < self.thresholds.offline_devices {
            return;
        }
        let alert = Alert {
            key: "offline_wave:tenant".to_owned(),
            rule: "offline_wave",
            device: None,
            organization: None,
            severity: "ERROR",
            summary: format!(
                "{} devices went offline within {} minutes",
                devices.len(),
                window / MINUTE_MS
            ),
            evidence: json!({
                "devices": devices.iter().take(50).collect::<Vec<_>>(),
                "count": devices.len(),
                "windowMinutes": window / MINUTE_MS,
                "threshold": self.thresholds.offline_devices,
            }),
            at: event.at,
        };
        self.raise(alert, event.at, found);
    }

    fn first_seen(&mut self, event: Observation<'_>, found: &mut Vec<Finding>) {
        let Some(device) = event.device else {
            return;
        };
        let learning = self.thresholds.first_seen_learning_ms;
        let history = self
            .devices
            .entry(device.to_owned())
            .or_insert_with(|| DeviceHistory {
                first_at: event.at,
                types: HashSet::new(),
            });
        if !history.types.insert(event.event_type.to_owned()) {
            return;
        }
        let learned = event.at - history.first_at >= learning;
        let (first_at, known) = (history.first_at, history.types.len() - 1);
        let fleet = self.devices.len();
        let seen_on = self
            .type_devices
            .entry(event.event_type.to_owned())
            .or_default();
        let with_type = *seen_on;
        let share = with_type as f64 / fleet as f64;
        *seen_on += 1;
        if !learned || share >= self.thresholds.first_seen_fleet_share {
            return;
        }
        let reporting_hours = (event.at - first_at) / HOUR_MS;
        let alert = Alert {
            key: format!("first_seen_event_type:{device}:{}", event.event_type),
            rule: "first_seen_event_type",
            device: Some(device.to_owned()),
            organization: event.organization.map(str::to_owned),
            severity: "INFO",
            summary: format!(
                "{device} logged {} for the first time in {reporting_hours} hours",
                event.event_type
            ),
            evidence: json!({
                "eventType": event.event_type,
                "reportingSince": first_at,
                "knownTypes": known,
                "fleetDevicesWithType": with_type,
                "fleetDevices": fleet,
            }),
            at: event.at,
        };
        self.raise(alert, event.at, found);
    }

    fn rate(&mut self, event: Observation<'_>, found: &mut Vec<Finding>) {
        // Failed sign-ins and presence have rules of their own, which say more.
        if event.event_type == "LOGIN_FAILED" || presence(event.event_type) {
            return;
        }
        let hour = event.at - event.at.rem_euclid(HOUR_MS);
        let keep = i64::try_from(self.thresholds.baseline_hours).unwrap_or(168);
        let counts = self.hourly.entry(event.event_type.to_owned()).or_default();
        *counts.entry(hour).or_default() += 1;
        // Forget what is older than the baseline.
        let oldest = hour - keep * HOUR_MS;
        while counts
            .first_key_value()
            .is_some_and(|(first, _)| *first < oldest)
        {
            counts.pop_first();
        }
        let current = counts.get(&hour).copied().unwrap_or_default();
        let minimum = if event.event_type == "POLICY_VIOLATION" {
            self.thresholds.policy_violation_min_count
        } else {
            self.thresholds.spike_min_count
        };
        if current < minimum {
            return;
        }
        // The baseline: every hour from the first one known up to the last one, zeros included.
        let Some(first) = counts.first_key_value().map(|(first, _)| *first) else {
            return;
        };
        let baseline: Vec<u64> = (0..)
            .map(|step| first + step * HOUR_MS)
            .take_while(|at| *at < hour)
            .map(|at| counts.get(&at).copied().unwrap_or_default())
            .collect();
        // A day of history at least: before that there is nothing to compare with.
        if baseline.len() < 24 {
            return;
        }
        let (median, spread) = robust_scale(&baseline);
        let z = (current as f64 - median) / spread;
        if z < self.thresholds.spike_z {
            return;
        }
        let rule = if event.event_type == "POLICY_VIOLATION" {
            "policy_violation_spike"
        } else {
            "rate_spike"
        };
        let alert = Alert {
            key: format!("{rule}:{}", event.event_type),
            rule,
            device: None,
            organization: None,
            severity: "WARNING",
            summary: format!(
                "{current} {} events this hour, against a usual {median} (robust z-score {z:.1})",
                event.event_type
            ),
            evidence: json!({
                "eventType": event.event_type,
                "count": current,
                "hourStart": hour,
                "baselineMedian": median,
                "baselineHours": baseline.len(),
                "zScore": (z * 10.0).round() / 10.0,
                "threshold": self.thresholds.spike_z,
            }),
            at: event.at,
        };
        self.raise(alert, event.at, found);
    }
}

/// The median of `values` and a spread that cannot be 0: 1.4826 × the median absolute
/// deviation (the standard deviation of normal data), but at least √median (counts of
/// independent events vary that much, so a steady 30 an hour does not make 34 a spike) and at
/// least 1 event.
fn robust_scale(values: &[u64]) -> (f64, f64) {
    let median = |sorted: &[f64]| -> f64 {
        let middle = sorted.len() / 2;
        if sorted.len().is_multiple_of(2) {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        } else {
            sorted[middle]
        }
    };
    let mut sorted: Vec<f64> = values.iter().map(|value| *value as f64).collect();
    sorted.sort_by(f64::total_cmp);
    let center = median(&sorted);
    let mut deviations: Vec<f64> = sorted.iter().map(|value| (value - center).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    (
        center,
        (1.4826 * median(&deviations)).max(center.sqrt()).max(1.0),
    )
}

#[cfg(test)]
mod tests;
