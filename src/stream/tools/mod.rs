//! Tool integrations: one type per tool, each knowing how to read its envelopes and how its event
//! types map to the unified taxonomy (OpenFrame's deserializers and `EventTypeMapper`).
//!
//! Adding a tool means one new file here implementing [`ToolIntegration`] and one line in
//! [`INTEGRATIONS`]; the pipeline, sinks and APIs need no change. Operators can still override a
//! mapping per tenant ([`super::overrides`]) without recompiling.

pub mod appliance;
pub mod fleet;
pub mod meshcentral;
pub mod rmm;

use serde_json::Value;

use super::envelope::{Envelope, Rejection};
use openframe_storage::model::UnixMillis;

/// OpenFrame's `MessageType`: what a raw record is, carried in the `message-type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    MeshcentralEvent,
    FleetMdmEvent,
    FleetMdmQueryResultEvent,
    FleetMdmPolicyActivityEvent,
    FleetMdmPolicyMembershipEvent,
    CommandExecuted,
    ScriptExecuted,
    /// Fleet's raw `activities` table, before the join with `host_activities`.
    FleetActivity,
    /// Fleet's raw `host_activities` table.
    FleetHostActivity,
    /// A machine turned ONLINE or OFFLINE (the appliance's own presence tracking).
    DevicePresence,
    /// An integrated tool was registered, changed or removed, or its health changed.
    ToolLifecycle,
    /// The anomaly detection triggered or resolved an alert (`src/detect/`).
    DetectionAlert,
}

impl MessageType {
    pub const ALL: [MessageType; 12] = [
        MessageType::MeshcentralEvent,
        MessageType::FleetMdmEvent,
        MessageType::FleetMdmQueryResultEvent,
        MessageType::FleetMdmPolicyActivityEvent,
        MessageType::FleetMdmPolicyMembershipEvent,
        MessageType::CommandExecuted,
        MessageType::ScriptExecuted,
        MessageType::FleetActivity,
        MessageType::FleetHostActivity,
        MessageType::DevicePresence,
        MessageType::ToolLifecycle,
        MessageType::DetectionAlert,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::MeshcentralEvent => "MESHCENTRAL_EVENT",
            MessageType::FleetMdmEvent => "FLEET_MDM_EVENT",
            MessageType::FleetMdmQueryResultEvent => "FLEET_MDM_QUERY_RESULT_EVENT",
            MessageType::FleetMdmPolicyActivityEvent => "FLEET_MDM_POLICY_ACTIVITY_EVENT",
            MessageType::FleetMdmPolicyMembershipEvent => "FLEET_MDM_POLICY_MEMBERSHIP_EVENT",
            MessageType::CommandExecuted => "COMMAND_EXECUTED",
            MessageType::ScriptExecuted => "SCRIPT_EXECUTED",
            MessageType::FleetActivity => "FLEET_ACTIVITY",
            MessageType::FleetHostActivity => "FLEET_HOST_ACTIVITY",
            MessageType::DevicePresence => "DEVICE_PRESENCE",
            MessageType::ToolLifecycle => "TOOL_LIFECYCLE",
            MessageType::DetectionAlert => "DETECTION_ALERT",
        }
    }

    pub fn parse(value: &str) -> Option<MessageType> {
        Self::ALL.into_iter().find(|known| known.as_str() == value)
    }

    /// The raw topic, named as OpenFrame's Kafka topic, where records of this type are appended.
    pub fn topic(self) -> &'static str {
        match self {
            MessageType::MeshcentralEvent => "meshcentral.mongodb.events",
            MessageType::FleetMdmEvent | MessageType::FleetMdmPolicyActivityEvent => {
                "fleet.mysql.events"
            }
            MessageType::FleetMdmQueryResultEvent => "fleet.query_results.events",
            MessageType::FleetMdmPolicyMembershipEvent => "fleet.policy_membership.events",
            MessageType::CommandExecuted
            | MessageType::ScriptExecuted
            | MessageType::DevicePresence
            | MessageType::ToolLifecycle
            | MessageType::DetectionAlert => "logs.events",
            MessageType::FleetActivity => "fleet.activities.events",
            MessageType::FleetHostActivity => "fleet.host_activities.events",
        }
    }

    /// Every accepted value, for error messages.
    pub fn expected() -> String {
        Self::ALL
            .iter()
            .map(|known| known.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How an event names the device it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRef {
    /// The tool's own id for its agent (MeshCentral `node//…`, Fleet's numeric host id), resolved
    /// through the tenant's tool connections.
    AgentToolId { tool_type: &'static str, id: String },
    /// An OpenFrame machine id (RMM results come from our own agent).
    Machine(String),
}

/// A tool event read from its envelope: OpenFrame's `DeserializedDebeziumMessage`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolEvent {
    /// OpenFrame's deterministic id, so a redelivered event never makes a second row.
    pub tool_event_id: String,
    /// `"{etype}.{action}"`, Fleet's `activity_type`, `script_run.finished`, …
    pub source_event_type: String,
    pub timestamp: UnixMillis,
    /// The tool's own text, when it has one.
    pub message: Option<String>,
    /// Who did it (a user name or email), when the tool says.
    pub user: Option<String>,
    pub device: Option<DeviceRef>,
    /// `{error, result, additional_info}`-style details for the details panel.
    pub details: Value,
    /// The source row or document (`after`), kept verbatim for the details panel.
    pub source: Value,
}

/// What a tool integration decides about one envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Event(Box<ToolEvent>),
    /// An event OpenFrame deliberately ignores (e.g. MeshCentral's timeline statistics).
    Skip(&'static str),
}

/// One tool's knowledge of its events.
pub trait ToolIntegration: Send + Sync + std::fmt::Debug {
    /// `toolType` in log rows: `MESHCENTRAL`, `FLEET`, `RMM`.
    fn tool_type(&self) -> &'static str;

    /// OpenFrame's `IntegratedToolType` db name (`meshcentral`, `fleet-mdm`, `rmm`): the prefix of
    /// mapping keys and of the name hashed into `toolEventId`.
    fn db_name(&self) -> &'static str;

    /// The message types this integration reads.
    fn message_types(&self) -> &'static [MessageType];

    /// Reads one envelope. Errors say what is wrong with the event.
    fn parse(&self, message_type: MessageType, envelope: &Envelope) -> Result<Parsed, Rejection>;

    /// Source event type to unified event type, sorted by source type.
    fn mapping(&self) -> &'static [(&'static str, &'static str)];

    /// The unified type of `source_event_type` by this tool's table, `None` when unmapped.
    fn map(&self, source_event_type: &str) -> Option<&'static str> {
        lookup(self.mapping(), source_event_type)
    }
}

/// The registered integrations. Adding a tool is one line here.
pub static INTEGRATIONS: &[&dyn ToolIntegration] = &[
    &meshcentral::MeshCentral,
    &fleet::Fleet,
    &rmm::Rmm,
    &appliance::Appliance,
];

/// The integration that reads `message_type`.
pub fn integration_for(message_type: MessageType) -> Option<&'static dyn ToolIntegration> {
    INTEGRATIONS
        .iter()
        .copied()
        .find(|integration| integration.message_types().contains(&message_type))
}

/// Looks a key up in a sorted mapping table.
pub fn lookup(table: &'static [(&'static str, &'static str)], key: &str) -> Option<&'static str> {
    table
        .binary_search_by(|(source, _)| (*source).cmp(key))
        .ok()
        .and_then(|index| table.get(index))
        .map(|(_, unified)| *unified)
}

/// OpenFrame's `toolEventId`: `UUID.nameUUIDFromBytes("{tool}_{table}_id_{primaryKey}")`, a
/// version-3 (MD5, name-based) UUID, so the same source row always gets the same id.
pub fn tool_event_id(db_name: &str, table: &str, primary_key: &str) -> String {
    name_uuid(format!("{db_name}_{table}_id_{primary_key}").as_bytes())
}

/// The fallback when a row has no primary key: the same kind of id over a digest of its content.
pub fn tool_event_id_by_content(db_name: &str, table: &str, content: &Value) -> String {
    let bytes = serde_json::to_vec(content).unwrap_or_default();
    let digest = crate::identity::crypto::sha256_hex(&bytes);
    name_uuid(format!("{db_name}_{table}_hash_{digest}").as_bytes())
}

/// Java's `UUID.nameUUIDFromBytes`: MD5 of the name with the version set to 3 and the IETF
/// variant. MD5 is what makes the ids match OpenFrame's; it is an identifier here, not a defence.
fn name_uuid(name: &[u8]) -> String {
    use md5::Digest;
    let mut bytes: [u8; 16] = md5::Md5::digest(name).into();
    bytes[6] = (bytes[6] & 0x0f) | 0x30;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = crate::identity::crypto::hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Epoch milliseconds from a number, or from an ISO-8601 / MySQL `YYYY-MM-DD HH:MM:SS[.fff]`
/// string taken as UTC.
pub fn parse_timestamp(value: &Value, field: &str) -> Result<UnixMillis, Rejection> {
    let refuse = || {
        Rejection::new(
            "invalid_timestamp",
            format!(
                "`{field}` must be epoch milliseconds or an ISO-8601 date-time such as 2025-11-20T09:02:00Z; got {}",
                short(value)
            ),
        )
    };
    match value {
        Value::Number(number) => number.as_i64().ok_or_else(refuse),
        Value::String(text) => {
            use time::format_description::well_known::Rfc3339;
            if let Ok(moment) = time::OffsetDateTime::parse(text, &Rfc3339) {
                return i64::try_from(moment.unix_timestamp_nanos() / 1_000_000)
                    .map_err(|_| refuse());
            }
            let mysql = time::macros::format_description!(
                version = 2,
                "[year]-[month]-[day][first [T] [ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
            );
            time::PrimitiveDateTime::parse(text, mysql)
                .ok()
                .and_then(|moment| {
                    i64::try_from(moment.assume_utc().unix_timestamp_nanos() / 1_000_000).ok()
                })
                .ok_or_else(refuse)
        }
        _ => Err(refuse()),
    }
}

/// A value for an error message, cut short.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A required string field of `after`.
pub fn required_str<'a>(
    after: &'a serde_json::Map<String, Value>,
    field: &str,
) -> Result<&'a str, Rejection> {
    match after.get(field) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        _ => Err(Rejection::new(
            "missing_field",
            format!("`after.{field}` must be a non-empty string"),
        )),
    }
}

/// A non-empty string field.
pub fn text(object: &serde_json::Map<String, Value>, field: &str) -> Option<String> {
    object
        .get(field)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

/// A required id field (a string or a number), as text.
pub fn required_id(
    after: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<String, Rejection> {
    id_text(after.get(field))
        .ok_or_else(|| Rejection::new("missing_field", format!("`after.{field}` is required")))
}

/// A field that is a string or a number, as text (ids are either, depending on the connector).
pub fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_event_ids_are_javas_name_based_uuids() {
        // Java: UUID.nameUUIDFromBytes("".getBytes()) = d41d8cd9-8f00-3204-a980-0998ecf8427e
        assert_eq!(name_uuid(b""), "d41d8cd9-8f00-3204-a980-0998ecf8427e");
        let id = tool_event_id("meshcentral", "events", "673dc1a0e4b0a1b2c3d4e501");
        assert_eq!(
            id,
            tool_event_id("meshcentral", "events", "673dc1a0e4b0a1b2c3d4e501")
        );
        assert_ne!(
            id,
            tool_event_id("meshcentral", "events", "673dc1a0e4b0a1b2c3d4e502")
        );
        assert_eq!(&id[14..15], "3");
    }

    #[test]
    fn every_message_type_has_one_integration_and_round_trips() {
        for message_type in MessageType::ALL {
            assert_eq!(
                MessageType::parse(message_type.as_str()),
                Some(message_type)
            );
            let readers = INTEGRATIONS
                .iter()
                .filter(|integration| integration.message_types().contains(&message_type))
                .count();
            assert_eq!(readers, 1, "{message_type:?}");
        }
        assert_eq!(MessageType::parse("meshcentral_event"), None);
    }

    #[test]
    fn mapping_tables_are_sorted_and_name_real_types() {
        for integration in INTEGRATIONS {
            for pair in integration.mapping().windows(2) {
                assert!(
                    pair[0].0 < pair[1].0,
                    "{}: {} / {}",
                    integration.db_name(),
                    pair[0].0,
                    pair[1].0
                );
            }
            for (source, unified) in integration.mapping() {
                assert!(
                    super::super::taxonomy::event_type(unified).is_some(),
                    "{}:{source} maps to {unified}, which is not a unified type",
                    integration.db_name()
                );
            }
        }
    }

    #[test]
    fn timestamps_are_epoch_millis_or_iso_8601() {
        let cases = [
            (serde_json::json!(1763629201000_i64), Some(1763629201000)),
            (
                serde_json::json!("2025-11-20T09:02:00Z"),
                Some(1763629320000),
            ),
            (
                serde_json::json!("2025-11-20T10:02:00+01:00"),
                Some(1763629320000),
            ),
            (
                serde_json::json!("2025-11-20 09:02:00"),
                Some(1763629320000),
            ),
            (
                serde_json::json!("2025-11-20T09:02:00.250"),
                Some(1763629320250),
            ),
            (serde_json::json!("yesterday"), None),
            (serde_json::json!(true), None),
            (serde_json::json!(1.5), None),
        ];
        for (value, expected) in cases {
            let parsed = parse_timestamp(&value, "created_at");
            assert_eq!(parsed.as_ref().ok().copied(), expected, "{value}");
            if let Err(rejection) = parsed {
                assert_eq!(rejection.code, "invalid_timestamp");
                assert!(rejection.reason.contains("created_at"));
            }
        }
    }
}
