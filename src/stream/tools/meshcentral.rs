//! MeshCentral: its MongoDB `events` collection through Debezium's MongoDB connector. `after` is
//! the event document as an extended-JSON string: `_id.$oid`, `etype`, `action`, `nodeid`, `msg`,
//! `username`/`userid`, `domain` and `time.$date`.

use serde_json::Value;

use super::{
    DeviceRef, MessageType, Parsed, ToolEvent, ToolIntegration, id_text, lookup, parse_timestamp,
    required_str, text, tool_event_id, tool_event_id_by_content,
};
use crate::stream::envelope::{Envelope, Rejection};

#[derive(Debug)]
pub struct MeshCentral;

/// The `toolType` of MeshCentral's tool connections.
pub const CONNECTION_TOOL_TYPE: &str = "MESHCENTRAL";

/// Event types OpenFrame drops before mapping.
const SKIPPED: &[&str] = &["servertimelinestats"];

impl ToolIntegration for MeshCentral {
    fn tool_type(&self) -> &'static str {
        "MESHCENTRAL"
    }

    fn db_name(&self) -> &'static str {
        "meshcentral"
    }

    fn message_types(&self) -> &'static [MessageType] {
        &[MessageType::MeshcentralEvent]
    }

    fn parse(&self, _message_type: MessageType, envelope: &Envelope) -> Result<Parsed, Rejection> {
        if let Some(connector) = envelope.connector()
            && connector != "mongodb"
        {
            return Err(Rejection::new(
                "wrong_connector",
                format!(
                    "MESHCENTRAL_EVENT comes from Debezium's mongodb connector, not {connector:?}"
                ),
            ));
        }
        let after = envelope.after()?;
        let etype = required_str(&after, "etype")?;
        let action = required_str(&after, "action")?;
        if SKIPPED.contains(&action) {
            return Ok(Parsed::Skip(
                "MeshCentral timeline statistics are not events",
            ));
        }
        let time = after.get("time").ok_or_else(|| {
            Rejection::new(
                "missing_field",
                "`after.time` is required (`{\"$date\": …}`)",
            )
        })?;
        // Extended JSON: {"$date": millis}, {"$date": "ISO"}, or {"$date": {"$numberLong": "…"}}.
        let date = time.get("$date").unwrap_or(time);
        let date = match date.get("$numberLong").and_then(Value::as_str) {
            Some(long) => Value::from(long.parse::<i64>().map_err(|_| {
                Rejection::new(
                    "invalid_timestamp",
                    "`after.time.$date.$numberLong` is not a number",
                )
            })?),
            None => date.clone(),
        };
        let timestamp = parse_timestamp(&date, "after.time.$date")?;
        let table = envelope.table().unwrap_or("events");
        let source = Value::Object(after.clone());
        let tool_event_id = match after
            .get("_id")
            .and_then(|id| id_text(id.get("$oid")).or_else(|| id_text(Some(id))))
        {
            Some(primary_key) => tool_event_id(self.db_name(), table, &primary_key),
            None => tool_event_id_by_content(self.db_name(), table, &source),
        };
        let text = |field: &str| text(&after, field);
        Ok(Parsed::Event(Box::new(ToolEvent {
            tool_event_id,
            source_event_type: format!("{etype}.{action}"),
            timestamp,
            message: text("msg"),
            user: text("username").or_else(|| text("userid")),
            device: text("nodeid").map(|id| DeviceRef::AgentToolId {
                tool_type: CONNECTION_TOOL_TYPE,
                id,
            }),
            details: serde_json::json!({ "domain": text("domain") }),
            source,
        })))
    }

    fn mapping(&self) -> &'static [(&'static str, &'static str)] {
        MAPPING
    }

    /// `"{etype}.{action}"` first; a few actions OpenFrame maps whatever their `etype`.
    fn map(&self, source_event_type: &str) -> Option<&'static str> {
        lookup(MAPPING, source_event_type).or_else(|| {
            let action = source_event_type
                .rsplit_once('.')
                .map_or(source_event_type, |(_, action)| action);
            lookup(ANY_ETYPE, action)
        })
    }
}

/// `"{etype}.{action}"` → unified type. Sorted.
const MAPPING: &[(&str, &str)] = &[
    ("mesh.createmesh", "GROUP_CREATED"),
    ("mesh.deletemesh", "GROUP_DELETED"),
    ("mesh.meshchange", "GROUP_UPDATED"),
    ("node.addnode", "DEVICE_REGISTERED"),
    ("node.agentlog", "FILE_OPERATION"),
    ("node.amtactivate", "DEVICE_OOB_ACTIVATION_REQUESTED"),
    ("node.batchupload", "FILE_BATCH_UPLOAD"),
    ("node.changenode", "DEVICE_UPDATED"),
    ("node.devicesessions", "DEVICE_SESSIONS_UPDATED"),
    ("node.diagnostic", "DEVICE_DIAGNOSTIC"),
    ("node.removenode", "DEVICE_DELETED"),
    ("node.sessioncompression", "REMOTE_SESSION_STATS_UPDATED"),
    ("node.sysinfohash", "DEVICE_SYSINFO_UPDATED"),
    ("relay.recording", "REMOTE_RECORDING_COMPLETED"),
    ("relay.relaylog", "REMOTE_SESSION_EVENT"),
    ("server.started", "SYSTEM_START"),
    ("server.stopped", "SYSTEM_SHUTDOWN"),
    ("ugrp.createusergroup", "USER_GROUP_CREATED"),
    ("ugrp.deleteusergroup", "USER_GROUP_DELETED"),
    ("ugrp.usergroupchange", "USER_GROUP_CHANGED"),
    ("user.accountchange", "USER_UPDATED"),
    ("user.accountcreate", "USER_CREATED"),
    ("user.accountremove", "USER_DELETED"),
    ("user.endsession", "USER_SESSION_ENDED"),
    ("user.login", "LOGIN"),
    ("user.loginTokenAdded", "USER_LOGIN_TOKEN_ADDED"),
    ("user.loginTokenChanged", "USER_LOGIN_TOKEN_CHANGED"),
    ("user.logout", "LOGOUT"),
    ("user.passchange", "PASSWORD_CHANGED"),
    ("user.uicustomevent", "USER_UI_CUSTOM_EVENT"),
];

/// Actions mapped whatever their `etype`. Sorted.
const ANY_ETYPE: &[(&str, &str)] = &[
    ("scanamtdevice", "DEVICE_DISCOVERY"),
    ("wssessioncount", "SESSION_COUNT_UPDATED"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(after: Value) -> Envelope {
        Envelope::parse(serde_json::json!({
            "after": after.to_string(),
            "source": {"connector": "mongodb", "collection": "events"}
        }))
        .unwrap()
    }

    fn event(parsed: Parsed) -> ToolEvent {
        match parsed {
            Parsed::Event(event) => *event,
            Parsed::Skip(why) => panic!("skipped: {why}"),
        }
    }

    #[test]
    fn every_mapping_row_maps() {
        for (source, unified) in MAPPING.iter().chain(ANY_ETYPE) {
            let key = if source.contains('.') {
                (*source).to_owned()
            } else {
                format!("server.{source}")
            };
            assert_eq!(MeshCentral.map(&key), Some(*unified), "{key}");
        }
        assert_eq!(MeshCentral.map("node.brandnew"), None);
        assert_eq!(MeshCentral.map("user.login.extra"), None);
    }

    #[test]
    fn a_device_event_is_read_whole() {
        let parsed = MeshCentral
            .parse(
                MessageType::MeshcentralEvent,
                &envelope(serde_json::json!({
                    "_id": {"$oid": "673dc1a0e4b0a1b2c3d4e502"}, "etype": "node", "action": "addnode",
                    "nodeid": "node//abc", "username": "admin", "msg": "Added device", "domain": "",
                    "time": {"$date": 1763629205000_i64}
                })),
            )
            .unwrap();
        let event = event(parsed);
        assert_eq!(event.source_event_type, "node.addnode");
        assert_eq!(event.timestamp, 1763629205000);
        assert_eq!(event.message.as_deref(), Some("Added device"));
        assert_eq!(event.user.as_deref(), Some("admin"));
        assert_eq!(
            event.device,
            Some(DeviceRef::AgentToolId {
                tool_type: "MESHCENTRAL",
                id: "node//abc".into()
            })
        );
        assert_eq!(
            event.tool_event_id,
            tool_event_id("meshcentral", "events", "673dc1a0e4b0a1b2c3d4e502")
        );
    }

    #[test]
    fn timeline_statistics_are_skipped_and_bad_events_refused() {
        let skipped = MeshCentral.parse(
            MessageType::MeshcentralEvent,
            &envelope(serde_json::json!({"etype": "server", "action": "servertimelinestats", "time": {"$date": 1}})),
        );
        assert!(matches!(skipped, Ok(Parsed::Skip(_))));
        let cases = [
            (
                serde_json::json!({"action": "login", "time": {"$date": 1}}),
                "missing_field",
            ),
            (
                serde_json::json!({"etype": "user", "action": "login"}),
                "missing_field",
            ),
            (
                serde_json::json!({"etype": "user", "action": "login", "time": {"$date": "soon"}}),
                "invalid_timestamp",
            ),
        ];
        for (after, code) in cases {
            let refused =
                MeshCentral.parse(MessageType::MeshcentralEvent, &envelope(after.clone()));
            assert_eq!(refused.unwrap_err().code, code, "{after}");
        }
        let mysql =
            Envelope::parse(serde_json::json!({"after": {}, "source": {"connector": "mysql"}}))
                .unwrap();
        assert_eq!(
            MeshCentral
                .parse(MessageType::MeshcentralEvent, &mysql)
                .unwrap_err()
                .code,
            "wrong_connector"
        );
        let iso = event(
            MeshCentral
                .parse(
                    MessageType::MeshcentralEvent,
                    &envelope(serde_json::json!({"etype": "user", "action": "login", "time": {"$date": {"$numberLong": "1763629201000"}}})),
                )
                .unwrap(),
        );
        assert_eq!(iso.timestamp, 1763629201000);
        assert!(iso.device.is_none());
    }
}
