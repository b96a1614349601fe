//! The unified event taxonomy: OpenFrame's `UnifiedEventType`, each with its default severity and
//! a short summary used when a tool sends no message of its own.
//!
//! The names and the non-INFO severities are OpenFrame's. Where OpenFrame leaves a clearly bad
//! outcome at INFO (a failed login, a system error, a failed remote session, a triggered alert),
//! the appliance raises it, so the severity facet finds them; the table says which.

/// How bad an event is. Ordered from harmless to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Critical => "CRITICAL",
        }
    }

    pub fn parse(value: &str) -> Option<Severity> {
        match value {
            "INFO" => Some(Severity::Info),
            "WARNING" => Some(Severity::Warning),
            "ERROR" => Some(Severity::Error),
            "CRITICAL" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// One unified event type.
#[derive(Debug, PartialEq, Eq)]
pub struct EventType {
    pub name: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

/// The type every unmapped source event becomes.
pub const UNKNOWN: &str = "UNKNOWN";

use Severity::{Critical, Error, Info, Warning};

const fn t(name: &'static str, severity: Severity, summary: &'static str) -> EventType {
    EventType {
        name,
        severity,
        summary,
    }
}

/// Every unified event type. Sorted by name, so [`event_type`] can binary-search it (a unit test
/// keeps it sorted).
pub const EVENT_TYPES: &[EventType] = &[
    t("ALERT_RESOLVED", Info, "Alert resolved"),
    t("ALERT_TRIGGERED", Warning, "Alert triggered"),
    t("AUTOMATION_DISABLED", Info, "Automation disabled"),
    t("AUTOMATION_ENABLED", Info, "Automation enabled"),
    t("AUTOMATION_UPDATED", Info, "Automation updated"),
    t("BATCH_OPERATION_CANCELED", Info, "Batch operation canceled"),
    t(
        "BATCH_OPERATION_COMPLETED",
        Info,
        "Batch operation completed",
    ),
    t("BATCH_OPERATION_STARTED", Info, "Batch operation started"),
    t("COMMAND_RUN_FINISHED", Info, "Command run finished"),
    t("COMMAND_RUN_STARTED", Info, "Command run started"),
    t("COMPLIANCE_CHECK", Info, "Compliance check"),
    t("CONFIGURATION_CREATED", Info, "Configuration created"),
    t("CONFIGURATION_DELETED", Info, "Configuration deleted"),
    t("CONFIGURATION_UPDATED", Info, "Configuration updated"),
    t("DEVICE_DELETED", Info, "Device deleted"),
    t("DEVICE_DIAGNOSTIC", Info, "Device diagnostic"),
    t("DEVICE_DISCOVERY", Info, "Device discovered"),
    t("DEVICE_HEARTBEAT", Info, "Device heartbeat"),
    t("DEVICE_OFFLINE", Info, "Device went offline"),
    t("DEVICE_ONLINE", Info, "Device came online"),
    t(
        "DEVICE_OOB_ACTIVATION_REQUESTED",
        Info,
        "Out-of-band activation requested",
    ),
    t("DEVICE_REGISTERED", Info, "Device registered"),
    t("DEVICE_SESSIONS_UPDATED", Info, "Device sessions updated"),
    t(
        "DEVICE_SYSINFO_UPDATED",
        Info,
        "Device system information updated",
    ),
    t("DEVICE_UPDATED", Info, "Device updated"),
    t("DISK_ENCRYPTION_DISABLED", Info, "Disk encryption disabled"),
    t("DISK_ENCRYPTION_ENABLED", Info, "Disk encryption enabled"),
    t(
        "DISK_ENCRYPTION_KEY_ESCROWED",
        Info,
        "Disk encryption key escrowed",
    ),
    t(
        "DISK_ENCRYPTION_KEY_READ",
        Warning,
        "Disk encryption key read",
    ),
    t("FILE_BATCH_UPLOAD", Info, "Files uploaded in a batch"),
    t("FILE_DELETED", Info, "File deleted"),
    t("FILE_DOWNLOADED", Info, "File downloaded"),
    t("FILE_OPERATION", Info, "File operation"),
    t("FILE_TRANSFER", Info, "File transfer"),
    t("FILE_UPLOADED", Info, "File uploaded"),
    t("GROUP_CREATED", Info, "Group created"),
    t("GROUP_DELETED", Info, "Group deleted"),
    t("GROUP_UPDATED", Info, "Group updated"),
    t("HOST_LOCKED", Warning, "Host locked"),
    t("HOST_UNLOCKED", Info, "Host unlocked"),
    t("HOST_WIPED", Critical, "Host wiped"),
    t("INTEGRATION_ADDED", Info, "Integration added"),
    t("INTEGRATION_DELETED", Info, "Integration deleted"),
    t("INTEGRATION_UPDATED", Info, "Integration updated"),
    t("LOGIN", Info, "User logged in"),
    // Beyond OpenFrame (INFO there): a failed sign-in is what a technician looks for.
    t("LOGIN_FAILED", Warning, "Failed login attempt"),
    t("LOGOUT", Info, "User logged out"),
    t("MDM_DISABLED", Info, "MDM disabled"),
    t("MDM_ENABLED", Info, "MDM enabled"),
    t("MDM_ENROLLED", Info, "Device enrolled in MDM"),
    t("MDM_UNENROLLED", Info, "Device unenrolled from MDM"),
    t("MONITORING_CHECK_CREATED", Info, "Monitoring check created"),
    t("MONITORING_CHECK_FAILED", Error, "Monitoring check failed"),
    t("PACK_APPLIED", Info, "Query pack applied"),
    t("PACK_CREATED", Info, "Query pack created"),
    t("PACK_DELETED", Info, "Query pack deleted"),
    t("PACK_UPDATED", Info, "Query pack updated"),
    t("PASSWORD_CHANGED", Info, "Password changed"),
    t("POLICY_APPLIED", Info, "Policy applied"),
    t("POLICY_VIOLATION", Warning, "Policy violation"),
    t("PROFILE_APPLIED", Info, "Profile applied"),
    t("PROFILE_CREATED", Info, "Profile created"),
    t("PROFILE_DELETED", Info, "Profile deleted"),
    t("PROFILE_UPDATED", Info, "Profile updated"),
    t("QUERY_CREATED", Info, "Query created"),
    t("QUERY_DELETED", Info, "Query deleted"),
    t("QUERY_EXECUTED", Info, "Query executed"),
    t("QUERY_UPDATED", Info, "Query updated"),
    t(
        "REMOTE_RECORDING_COMPLETED",
        Info,
        "Remote session recording completed",
    ),
    t("REMOTE_SESSION_END", Info, "Remote session ended"),
    t("REMOTE_SESSION_EVENT", Info, "Remote session event"),
    // Beyond OpenFrame (INFO there).
    t("REMOTE_SESSION_FAILED", Warning, "Remote session failed"),
    t("REMOTE_SESSION_START", Info, "Remote session started"),
    t(
        "REMOTE_SESSION_STATS_UPDATED",
        Info,
        "Remote session statistics updated",
    ),
    t("SCRIPT_CREATED", Info, "Script created"),
    t("SCRIPT_EXECUTED", Info, "Script executed"),
    t("SCRIPT_EXECUTION_STARTED", Info, "Script execution started"),
    t("SCRIPT_FAILED", Error, "Script failed"),
    t("SCRIPT_UPDATED", Info, "Script updated"),
    t("SESSION_COUNT_UPDATED", Info, "Session count updated"),
    t("SESSION_EXPIRED", Info, "Session expired"),
    t("SOFTWARE_CREATED", Info, "Software added"),
    t("SOFTWARE_DELETED", Info, "Software deleted"),
    t(
        "SOFTWARE_INSTALLATION_CANCELED",
        Info,
        "Software installation canceled",
    ),
    t("SOFTWARE_INSTALLED", Info, "Software installed"),
    t("SOFTWARE_UNINSTALLED", Info, "Software uninstalled"),
    t("SOFTWARE_UPDATED", Info, "Software updated"),
    // Beyond OpenFrame (INFO there).
    t("SYSTEM_ERROR", Error, "System error"),
    t("SYSTEM_MONITORING", Info, "System monitoring"),
    t("SYSTEM_SHUTDOWN", Warning, "System shut down"),
    t("SYSTEM_START", Info, "System started"),
    t("SYSTEM_STARTUP", Info, "System startup"),
    t("SYSTEM_STATUS", Info, "System status"),
    t("TASK_COMPLETED", Info, "Task completed"),
    t("TASK_CREATED", Info, "Task created"),
    t("TASK_DELETED", Info, "Task deleted"),
    t("TASK_FAILED", Error, "Task failed"),
    t("TASK_STARTED", Info, "Task started"),
    t("TASK_UPDATED", Info, "Task updated"),
    t("UNKNOWN", Warning, "Unknown event"),
    t("USER_CREATED", Info, "User created"),
    t("USER_DELETED", Info, "User deleted"),
    t("USER_GROUP_CHANGED", Info, "User group changed"),
    t("USER_GROUP_CREATED", Info, "User group created"),
    t("USER_GROUP_DELETED", Info, "User group deleted"),
    t("USER_LOGIN_TOKEN_ADDED", Info, "Login token added"),
    t("USER_LOGIN_TOKEN_CHANGED", Info, "Login token changed"),
    t("USER_ROLE_CHANGED", Info, "User role changed"),
    t("USER_SESSION_ENDED", Info, "User session ended"),
    t("USER_UI_CUSTOM_EVENT", Info, "Custom UI event"),
    t("USER_UPDATED", Info, "User updated"),
];

/// The unified event type called `name`, if there is one.
pub fn event_type(name: &str) -> Option<&'static EventType> {
    EVENT_TYPES
        .binary_search_by(|known| known.name.cmp(name))
        .ok()
        .and_then(|index| EVENT_TYPES.get(index))
}

/// The `UNKNOWN` type.
pub fn unknown() -> &'static EventType {
    // The table holds UNKNOWN (tested); the fallback only keeps this total.
    const FALLBACK: EventType = t(UNKNOWN, Warning, "Unknown event");
    event_type(UNKNOWN).unwrap_or(&FALLBACK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_has_no_duplicates() {
        for pair in EVENT_TYPES.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} / {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    #[test]
    fn openframes_non_info_severities_are_kept() {
        for (name, severity) in [
            ("SCRIPT_FAILED", Severity::Error),
            ("POLICY_VIOLATION", Severity::Warning),
            ("MONITORING_CHECK_FAILED", Severity::Error),
            ("SYSTEM_SHUTDOWN", Severity::Warning),
            ("DISK_ENCRYPTION_KEY_READ", Severity::Warning),
            ("HOST_LOCKED", Severity::Warning),
            ("HOST_WIPED", Severity::Critical),
            ("UNKNOWN", Severity::Warning),
            ("LOGIN", Severity::Info),
        ] {
            assert_eq!(event_type(name).unwrap().severity, severity, "{name}");
        }
        assert_eq!(unknown().name, "UNKNOWN");
        assert!(event_type("NOT_A_TYPE").is_none());
    }

    #[test]
    fn severities_round_trip() {
        for severity in [Info, Warning, Error, Critical] {
            assert_eq!(Severity::parse(severity.as_str()), Some(severity));
        }
        assert_eq!(Severity::parse("info"), None);
    }
}
