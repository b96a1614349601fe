//! Fleet MDM: its MySQL tables through Debezium's MySQL connector. `activities` rows (who did
//! what) are joined with `host_activities` (which host it concerned) by the pipeline before they
//! become events; query results and policy membership arrive as their own message types.

use serde_json::{Map, Value};

use super::{
    DeviceRef, MessageType, Parsed, ToolEvent, ToolIntegration, id_text, parse_timestamp,
    required_id, required_str, text, tool_event_id, tool_event_id_by_content,
};
use crate::stream::envelope::{Envelope, Rejection};

#[derive(Debug)]
pub struct Fleet;

/// The `toolType` of Fleet's tool connections.
pub const CONNECTION_TOOL_TYPE: &str = "FLEET_MDM";

/// The field the join adds to an activity's `after`: the Fleet host id it concerns.
pub const JOINED_HOST_FIELD: &str = "agentId";

/// Policy activities travel as `FLEET_MDM_POLICY_ACTIVITY_EVENT` (OpenFrame's routing).
pub const POLICY_ACTIVITIES: &[&str] = &[
    "applied_spec_policy",
    "created_policy",
    "deleted_policy",
    "edited_policy",
];

impl ToolIntegration for Fleet {
    fn tool_type(&self) -> &'static str {
        "FLEET"
    }

    fn db_name(&self) -> &'static str {
        "fleet-mdm"
    }

    fn message_types(&self) -> &'static [MessageType] {
        &[
            MessageType::FleetMdmEvent,
            MessageType::FleetMdmPolicyActivityEvent,
            MessageType::FleetMdmQueryResultEvent,
            MessageType::FleetMdmPolicyMembershipEvent,
            MessageType::FleetActivity,
            MessageType::FleetHostActivity,
        ]
    }

    fn parse(&self, message_type: MessageType, envelope: &Envelope) -> Result<Parsed, Rejection> {
        if let Some(connector) = envelope.connector()
            && connector != "mysql"
        {
            return Err(Rejection::new(
                "wrong_connector",
                format!(
                    "{} comes from Debezium's mysql connector, not {connector:?}",
                    message_type.as_str()
                ),
            ));
        }
        let after = envelope.after()?;
        match message_type {
            MessageType::FleetHostActivity => {
                host_activity(&after)?;
                Ok(Parsed::Skip("host activities are joined with activities"))
            }
            MessageType::FleetMdmQueryResultEvent => self.query_result(envelope, &after),
            MessageType::FleetMdmPolicyMembershipEvent => self.policy_membership(envelope, &after),
            _ => self.activity(envelope, &after),
        }
    }

    fn mapping(&self) -> &'static [(&'static str, &'static str)] {
        MAPPING
    }
}

impl Fleet {
    fn activity(
        &self,
        envelope: &Envelope,
        after: &Map<String, Value>,
    ) -> Result<Parsed, Rejection> {
        let activity_type = required_str(after, "activity_type")?;
        let id = id_text(after.get("id")).ok_or_else(|| {
            Rejection::new("missing_field", "`after.id` (the activity id) is required")
        })?;
        let created_at = after
            .get("created_at")
            .ok_or_else(|| Rejection::new("missing_field", "`after.created_at` is required"))?;
        let timestamp = parse_timestamp(created_at, "after.created_at")?;
        let details = details_of(after)?;
        let user = text(after, "user_email").or_else(|| text(after, "user_name"));
        let message = describe(
            activity_type,
            text(after, "user_name").or_else(|| user.clone()),
            &details,
        );
        let table = envelope.table().unwrap_or("activities");
        Ok(Parsed::Event(Box::new(ToolEvent {
            tool_event_id: tool_event_id(self.db_name(), table, &id),
            source_event_type: activity_type.to_owned(),
            timestamp,
            message: Some(message),
            user,
            device: id_text(after.get(JOINED_HOST_FIELD)).map(|id| DeviceRef::AgentToolId {
                tool_type: CONNECTION_TOOL_TYPE,
                id,
            }),
            details,
            source: Value::Object(after.clone()),
        })))
    }

    /// Fleet's `query_results` rows: one host's answer to a scheduled query.
    fn query_result(
        &self,
        envelope: &Envelope,
        after: &Map<String, Value>,
    ) -> Result<Parsed, Rejection> {
        let host = required_id(after, "host_id")?;
        let fetched = after
            .get("last_fetched")
            .or_else(|| envelope.payload.get("ts_ms"))
            .ok_or_else(|| Rejection::new("missing_field", "`after.last_fetched` is required"))?;
        let timestamp = parse_timestamp(fetched, "after.last_fetched")?;
        let table = envelope.table().unwrap_or("query_results");
        let source = Value::Object(after.clone());
        let tool_event_id = match id_text(after.get("id")) {
            Some(id) => tool_event_id(self.db_name(), table, &id),
            None => tool_event_id_by_content(self.db_name(), table, &source),
        };
        let query = id_text(after.get("query_id")).unwrap_or_else(|| "?".into());
        let error = text(after, "error");
        Ok(Parsed::Event(Box::new(ToolEvent {
            tool_event_id,
            source_event_type: "query_result".into(),
            timestamp,
            message: Some(match &error {
                Some(error) => format!("Query {query} failed on the host: {error}"),
                None => format!("Query {query} returned results"),
            }),
            user: None,
            device: Some(DeviceRef::AgentToolId {
                tool_type: CONNECTION_TOOL_TYPE,
                id: host,
            }),
            details: serde_json::json!({ "error": error, "result": after.get("data") }),
            source,
        })))
    }

    /// Fleet's `policy_membership` rows: whether a host passes a policy.
    fn policy_membership(
        &self,
        envelope: &Envelope,
        after: &Map<String, Value>,
    ) -> Result<Parsed, Rejection> {
        let host = required_id(after, "host_id")?;
        let policy = required_id(after, "policy_id")?;
        let passes = match after.get("passes") {
            Some(Value::Bool(passes)) => *passes,
            Some(Value::Number(number)) => number.as_i64() == Some(1),
            _ => {
                return Err(Rejection::new(
                    "missing_field",
                    "`after.passes` must be true/false or 1/0 (null means not yet run)",
                ));
            }
        };
        let changed = after
            .get("updated_at")
            .or_else(|| after.get("created_at"))
            .ok_or_else(|| Rejection::new("missing_field", "`after.updated_at` is required"))?;
        let timestamp = parse_timestamp(changed, "after.updated_at")?;
        let table = envelope.table().unwrap_or("policy_membership");
        let outcome = if passes { "pass" } else { "fail" };
        Ok(Parsed::Event(Box::new(ToolEvent {
            tool_event_id: tool_event_id(
                self.db_name(),
                table,
                &format!("{policy}_{host}_{timestamp}"),
            ),
            source_event_type: format!("policy_membership_{outcome}"),
            timestamp,
            message: Some(format!(
                "Host {} policy {policy}",
                if passes { "passes" } else { "fails" }
            )),
            user: None,
            device: Some(DeviceRef::AgentToolId {
                tool_type: CONNECTION_TOOL_TYPE,
                id: host,
            }),
            details: serde_json::json!({ "result": outcome, "additional_info": { "policy_id": policy } }),
            source: Value::Object(after.clone()),
        })))
    }
}

/// `(activity_id, host_id)` of a `host_activities` row.
pub fn host_activity(after: &Map<String, Value>) -> Result<(String, String), Rejection> {
    let activity = required_id(after, "activity_id")?;
    let host = required_id(after, "host_id")?;
    Ok((activity, host))
}

/// The activity id of an `activities` row, for the join.
pub fn activity_id(after: &Map<String, Value>) -> Option<String> {
    id_text(after.get("id"))
}

/// `details` is a JSON string in Fleet's table (a JSON column through Debezium); an object is
/// accepted too.
fn details_of(after: &Map<String, Value>) -> Result<Value, Rejection> {
    match after.get("details") {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(Value::String(text)) if text.is_empty() => Ok(Value::Object(Map::new())),
        Some(Value::String(text)) => serde_json::from_str(text).map_err(|error| {
            Rejection::new(
                "invalid_field",
                format!("`after.details` is not JSON: {error}"),
            )
        }),
        Some(other) => Ok(other.clone()),
    }
}

/// A sentence for the log: who, what (the activity type in words), and the details a technician
/// needs to recognise it.
fn describe(activity_type: &str, actor: Option<String>, details: &Value) -> String {
    let mut sentence = format!(
        "{} {}",
        actor.as_deref().unwrap_or("Fleet"),
        activity_type.replace('_', " ")
    );
    let detail = |field: &str| {
        details.get(field).and_then(|value| match value {
            Value::String(text) if !text.is_empty() => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        })
    };
    for (field, label) in [
        ("script_name", ""),
        ("policy_name", ""),
        ("query_name", ""),
        ("software_title", ""),
        ("profile_name", ""),
        ("team_name", "team "),
        ("host_display_name", "on "),
        ("email", "as "),
        ("public_ip", "from "),
    ] {
        if let Some(value) = detail(field) {
            sentence.push(' ');
            sentence.push_str(label);
            sentence.push_str(&value);
        }
    }
    sentence
}

/// Fleet's `activity_type` (and the appliance's policy-membership and query-result types) →
/// unified type. Sorted.
const MAPPING: &[(&str, &str)] = &[
    ("added_app_store_app", "SOFTWARE_CREATED"),
    ("added_bootstrap_package", "CONFIGURATION_CREATED"),
    (
        "added_conditional_access_integration_microsoft",
        "INTEGRATION_ADDED",
    ),
    ("added_custom_scep_proxy", "INTEGRATION_ADDED"),
    ("added_digicert", "INTEGRATION_ADDED"),
    ("added_hydrant", "INTEGRATION_ADDED"),
    ("added_ndes_scep_proxy", "INTEGRATION_ADDED"),
    ("added_script", "SCRIPT_CREATED"),
    ("added_software", "SOFTWARE_CREATED"),
    ("applied_spec_pack", "PACK_APPLIED"),
    ("applied_spec_policy", "POLICY_APPLIED"),
    ("applied_spec_saved_query", "QUERY_UPDATED"),
    ("applied_spec_team", "GROUP_UPDATED"),
    (
        "canceled_install_app_store_app",
        "SOFTWARE_INSTALLATION_CANCELED",
    ),
    (
        "canceled_install_software",
        "SOFTWARE_INSTALLATION_CANCELED",
    ),
    ("canceled_run_script", "SCRIPT_FAILED"),
    ("canceled_script_batch", "BATCH_OPERATION_CANCELED"),
    (
        "canceled_uninstall_software",
        "SOFTWARE_INSTALLATION_CANCELED",
    ),
    ("changed_macos_setup_assistant", "CONFIGURATION_UPDATED"),
    ("changed_user_global_role", "USER_ROLE_CHANGED"),
    ("changed_user_team_role", "USER_ROLE_CHANGED"),
    ("completed_script_batch", "BATCH_OPERATION_COMPLETED"),
    ("created_custom_variable", "CONFIGURATION_CREATED"),
    ("created_declaration_profile", "PROFILE_CREATED"),
    ("created_macos_profile", "PROFILE_CREATED"),
    ("created_pack", "PACK_CREATED"),
    ("created_policy", "POLICY_APPLIED"),
    ("created_saved_query", "QUERY_CREATED"),
    ("created_team", "GROUP_CREATED"),
    ("created_user", "USER_CREATED"),
    ("created_windows_profile", "PROFILE_CREATED"),
    ("deleted_app_store_app", "SOFTWARE_DELETED"),
    ("deleted_bootstrap_package", "CONFIGURATION_DELETED"),
    (
        "deleted_conditional_access_integration_microsoft",
        "INTEGRATION_DELETED",
    ),
    ("deleted_custom_scep_proxy", "INTEGRATION_DELETED"),
    ("deleted_custom_variable", "CONFIGURATION_DELETED"),
    ("deleted_declaration_profile", "PROFILE_DELETED"),
    ("deleted_digicert", "INTEGRATION_DELETED"),
    ("deleted_hydrant", "INTEGRATION_DELETED"),
    ("deleted_macos_profile", "PROFILE_DELETED"),
    ("deleted_macos_setup_assistant", "CONFIGURATION_DELETED"),
    ("deleted_multiple_saved_query", "QUERY_DELETED"),
    ("deleted_ndes_scep_proxy", "INTEGRATION_DELETED"),
    ("deleted_pack", "PACK_DELETED"),
    ("deleted_policy", "POLICY_APPLIED"),
    ("deleted_saved_query", "QUERY_DELETED"),
    ("deleted_script", "CONFIGURATION_DELETED"),
    ("deleted_software", "SOFTWARE_DELETED"),
    ("deleted_team", "GROUP_DELETED"),
    ("deleted_user", "USER_DELETED"),
    ("deleted_user_global_role", "USER_ROLE_CHANGED"),
    ("deleted_user_team_role", "USER_ROLE_CHANGED"),
    ("deleted_windows_profile", "PROFILE_DELETED"),
    ("disabled_activity_automations", "AUTOMATION_DISABLED"),
    ("disabled_android_mdm", "MDM_DISABLED"),
    ("disabled_gitops_mode", "CONFIGURATION_UPDATED"),
    ("disabled_macos_disk_encryption", "DISK_ENCRYPTION_DISABLED"),
    (
        "disabled_macos_setup_end_user_auth",
        "CONFIGURATION_UPDATED",
    ),
    ("disabled_vpp", "INTEGRATION_DELETED"),
    ("disabled_windows_mdm", "MDM_DISABLED"),
    ("disabled_windows_mdm_migration", "MDM_DISABLED"),
    ("edited_activity_automations", "AUTOMATION_UPDATED"),
    ("edited_agent_options", "CONFIGURATION_UPDATED"),
    ("edited_app_store_app", "SOFTWARE_UPDATED"),
    ("edited_custom_scep_proxy", "INTEGRATION_UPDATED"),
    ("edited_declaration_profile", "PROFILE_UPDATED"),
    ("edited_digicert", "INTEGRATION_UPDATED"),
    ("edited_hydrant", "INTEGRATION_UPDATED"),
    ("edited_ios_min_version", "CONFIGURATION_UPDATED"),
    ("edited_ipados_min_version", "CONFIGURATION_UPDATED"),
    ("edited_macos_min_version", "CONFIGURATION_UPDATED"),
    ("edited_macos_profile", "PROFILE_UPDATED"),
    ("edited_ndes_scep_proxy", "INTEGRATION_UPDATED"),
    ("edited_pack", "PACK_UPDATED"),
    ("edited_policy", "POLICY_APPLIED"),
    ("edited_saved_query", "QUERY_UPDATED"),
    ("edited_script", "SCRIPT_UPDATED"),
    ("edited_software", "SOFTWARE_UPDATED"),
    ("edited_windows_profile", "PROFILE_UPDATED"),
    ("edited_windows_updates", "CONFIGURATION_UPDATED"),
    ("enabled_activity_automations", "AUTOMATION_ENABLED"),
    ("enabled_android_mdm", "MDM_ENABLED"),
    ("enabled_gitops_mode", "CONFIGURATION_UPDATED"),
    ("enabled_macos_disk_encryption", "DISK_ENCRYPTION_ENABLED"),
    ("enabled_macos_setup_end_user_auth", "CONFIGURATION_UPDATED"),
    ("enabled_vpp", "INTEGRATION_ADDED"),
    ("enabled_windows_mdm", "MDM_ENABLED"),
    ("enabled_windows_mdm_migration", "MDM_ENABLED"),
    (
        "escrowed_disk_encryption_key",
        "DISK_ENCRYPTION_KEY_ESCROWED",
    ),
    ("execute_scheduled_query", "QUERY_EXECUTED"),
    ("fleet_enrolled", "DEVICE_REGISTERED"),
    ("installed_app_store_app", "SOFTWARE_INSTALLED"),
    ("installed_software", "SOFTWARE_INSTALLED"),
    ("live_query", "QUERY_EXECUTED"),
    ("locked_host", "HOST_LOCKED"),
    ("mdm_enrolled", "MDM_ENROLLED"),
    ("mdm_unenrolled", "MDM_UNENROLLED"),
    ("policy_membership_fail", "POLICY_VIOLATION"),
    ("policy_membership_pass", "POLICY_APPLIED"),
    ("query_result", "QUERY_EXECUTED"),
    ("ran_script", "SCRIPT_EXECUTED"),
    ("ran_script_batch", "BATCH_OPERATION_STARTED"),
    ("read_host_disk_encryption_key", "DISK_ENCRYPTION_KEY_READ"),
    ("resent_configuration_profile", "PROFILE_APPLIED"),
    ("transferred_hosts", "DEVICE_UPDATED"),
    ("uninstalled_software", "SOFTWARE_UNINSTALLED"),
    ("unlocked_host", "HOST_UNLOCKED"),
    ("updated_script", "SCRIPT_UPDATED"),
    ("user_added_by_sso", "USER_CREATED"),
    ("user_failed_login", "LOGIN_FAILED"),
    ("user_logged_in", "LOGIN"),
    ("wiped_host", "HOST_WIPED"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(after: Value) -> Envelope {
        Envelope::parse(serde_json::json!({
            "after": after,
            "source": {"connector": "mysql", "table": "activities"}
        }))
        .unwrap()
    }

    fn event(message_type: MessageType, after: Value) -> ToolEvent {
        match Fleet.parse(message_type, &envelope(after)).unwrap() {
            Parsed::Event(event) => *event,
            Parsed::Skip(why) => panic!("skipped: {why}"),
        }
    }

    #[test]
    fn every_mapping_row_maps() {
        for (source, unified) in MAPPING {
            assert_eq!(Fleet.map(source), Some(*unified), "{source}");
        }
        assert_eq!(Fleet.map("some_brand_new_activity"), None);
        for policy in POLICY_ACTIVITIES {
            assert_eq!(Fleet.map(policy), Some("POLICY_APPLIED"));
        }
    }

    #[test]
    fn a_joined_activity_names_its_host_and_describes_itself() {
        let event = event(
            MessageType::FleetMdmEvent,
            serde_json::json!({
                "id": 9002, "created_at": "2025-11-20T09:03:10Z", "user_name": "Jane Admin",
                "user_email": "jane@acme.example", "activity_type": "ran_script", "agentId": "41",
                "details": "{\"host_display_name\":\"ACME-WS-001\",\"script_name\":\"cleanup.sh\"}"
            }),
        );
        assert_eq!(
            event.tool_event_id,
            tool_event_id("fleet-mdm", "activities", "9002")
        );
        assert_eq!(event.timestamp, 1763629390000);
        assert_eq!(event.user.as_deref(), Some("jane@acme.example"));
        assert_eq!(
            event.message.as_deref(),
            Some("Jane Admin ran script cleanup.sh on ACME-WS-001")
        );
        assert_eq!(
            event.device,
            Some(DeviceRef::AgentToolId {
                tool_type: "FLEET_MDM",
                id: "41".into()
            })
        );
        assert_eq!(event.details["script_name"], "cleanup.sh");
    }

    #[test]
    fn membership_and_query_results_become_events() {
        let fail = event(
            MessageType::FleetMdmPolicyMembershipEvent,
            serde_json::json!({"policy_id": 12, "host_id": 57, "passes": 0, "updated_at": "2025-11-20T09:00:00Z"}),
        );
        assert_eq!(fail.source_event_type, "policy_membership_fail");
        assert_eq!(Fleet.map(&fail.source_event_type), Some("POLICY_VIOLATION"));
        let result = event(
            MessageType::FleetMdmQueryResultEvent,
            serde_json::json!({"id": 5, "query_id": 3, "host_id": 41, "last_fetched": "2025-11-20 09:00:00", "data": {"a": 1}}),
        );
        assert_eq!(result.source_event_type, "query_result");
        assert_eq!(result.details["result"]["a"], 1);
    }

    #[test]
    fn bad_rows_are_refused_with_the_field_named() {
        let cases = [
            (
                MessageType::FleetActivity,
                serde_json::json!({"id": 1, "activity_type": "user_logged_in", "created_at": "yesterday"}),
                "invalid_timestamp",
                "created_at",
            ),
            (
                MessageType::FleetActivity,
                serde_json::json!({"id": 1, "created_at": "2025-11-20T09:00:00Z"}),
                "missing_field",
                "activity_type",
            ),
            (
                MessageType::FleetActivity,
                serde_json::json!({"activity_type": "x", "created_at": "2025-11-20T09:00:00Z"}),
                "missing_field",
                "id",
            ),
            (
                MessageType::FleetActivity,
                serde_json::json!({"id": 1, "activity_type": "x", "created_at": "2025-11-20T09:00:00Z", "details": "{"}),
                "invalid_field",
                "details",
            ),
            (
                MessageType::FleetHostActivity,
                serde_json::json!({"host_id": 1}),
                "missing_field",
                "activity_id",
            ),
            (
                MessageType::FleetMdmPolicyMembershipEvent,
                serde_json::json!({"policy_id": 1, "host_id": 1, "passes": null, "updated_at": 1}),
                "missing_field",
                "passes",
            ),
        ];
        for (message_type, after, code, field) in cases {
            let rejection = Fleet
                .parse(message_type, &envelope(after.clone()))
                .unwrap_err();
            assert_eq!(rejection.code, code, "{after}");
            assert!(rejection.reason.contains(field), "{}", rejection.reason);
        }
        let mongo =
            Envelope::parse(serde_json::json!({"after": {}, "source": {"connector": "mongodb"}}))
                .unwrap();
        assert_eq!(
            Fleet
                .parse(MessageType::FleetActivity, &mongo)
                .unwrap_err()
                .code,
            "wrong_connector"
        );
    }
}
