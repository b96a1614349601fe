//! The appliance's own events about the integrated tools (`TOOL_LIFECYCLE`, on `logs.events`):
//! a tool registered, changed or removed, and a tool's health check turning down or back up.
//! `after` carries `toolId`, `toolType`, `event` (`added`, `updated`, `deleted`, `health_down`,
//! `health_up`), an optional `message` and `user`, `eventTimestamp`, and an `eventId` that makes
//! two events of the same millisecond distinct.

use serde_json::Value;

use super::{MessageType, Parsed, ToolEvent, ToolIntegration, parse_timestamp, required_str, text};
use crate::stream::envelope::{Envelope, Rejection};

#[derive(Debug)]
pub struct Appliance;

const EVENTS: [&str; 5] = ["added", "updated", "deleted", "health_down", "health_up"];

impl ToolIntegration for Appliance {
    fn tool_type(&self) -> &'static str {
        "OPENFRAME"
    }

    fn db_name(&self) -> &'static str {
        "openframe"
    }

    fn message_types(&self) -> &'static [MessageType] {
        &[MessageType::ToolLifecycle, MessageType::DetectionAlert]
    }

    fn parse(&self, kind: MessageType, envelope: &Envelope) -> Result<Parsed, Rejection> {
        if kind == MessageType::DetectionAlert {
            return self.alert(envelope);
        }
        let after = envelope.after()?;
        let tool = required_str(&after, "toolId")?;
        let event = required_str(&after, "event")?;
        if !EVENTS.contains(&event) {
            return Err(Rejection::new(
                "invalid_field",
                format!("`after.event` must be one of {}", EVENTS.join(", ")),
            ));
        }
        let when = after
            .get("eventTimestamp")
            .ok_or_else(|| Rejection::new("missing_field", "`after.eventTimestamp` is required"))?;
        let timestamp = parse_timestamp(when, "after.eventTimestamp")?;
        let tool_type = text(&after, "toolType").unwrap_or_default();
        let message = match (event, text(&after, "message")) {
            ("added", _) => format!("Tool {tool} ({tool_type}) registered"),
            ("updated", _) => format!("Tool {tool} ({tool_type}) changed"),
            ("deleted", _) => format!("Tool {tool} ({tool_type}) removed"),
            ("health_down", Some(why)) => format!("Tool {tool} is unhealthy: {why}"),
            ("health_down", None) => format!("Tool {tool} is unhealthy"),
            (_, _) => format!("Tool {tool} is healthy again"),
        };
        Ok(Parsed::Event(Box::new(ToolEvent {
            tool_event_id: super::tool_event_id(
                self.db_name(),
                "tool_lifecycle",
                &match text(&after, "eventId") {
                    Some(id) => id,
                    None => format!("{tool}_{event}_{timestamp}"),
                },
            ),
            source_event_type: format!("tool.{event}"),
            timestamp,
            message: Some(message),
            user: text(&after, "user"),
            device: None,
            details: serde_json::json!({ "additional_info": { "toolId": tool, "toolType": tool_type } }),
            source: Value::Object(after.clone()),
        })))
    }

    fn mapping(&self) -> &'static [(&'static str, &'static str)] {
        MAPPING
    }
}

/// Sorted.
const MAPPING: &[(&str, &str)] = &[
    ("alert.resolved", "ALERT_RESOLVED"),
    ("alert.triggered", "ALERT_TRIGGERED"),
    ("tool.added", "INTEGRATION_ADDED"),
    ("tool.deleted", "INTEGRATION_DELETED"),
    ("tool.health_down", "SYSTEM_ERROR"),
    ("tool.health_up", "SYSTEM_MONITORING"),
    ("tool.updated", "INTEGRATION_UPDATED"),
];

impl Appliance {
    /// `DETECTION_ALERT`: `after` carries the alert's `key`, `rule`, `transition` (`triggered`
    /// or `resolved`), `summary`, `severity`, `evidence`, optional `deviceId`, `triggeredAt` and
    /// `eventTimestamp`. The id is the key, the trigger time and the transition: a finding
    /// emitted again (after a crash) is the same event.
    fn alert(&self, envelope: &Envelope) -> Result<Parsed, Rejection> {
        let after = envelope.after()?;
        let key = required_str(&after, "key")?;
        let transition = required_str(&after, "transition")?;
        if !matches!(transition, "triggered" | "resolved") {
            return Err(Rejection::new(
                "invalid_field",
                "`after.transition` must be triggered or resolved",
            ));
        }
        let when = after
            .get("eventTimestamp")
            .ok_or_else(|| Rejection::new("missing_field", "`after.eventTimestamp` is required"))?;
        let timestamp = parse_timestamp(when, "after.eventTimestamp")?;
        let triggered_at = after
            .get("triggeredAt")
            .and_then(Value::as_i64)
            .unwrap_or(timestamp);
        let summary = text(&after, "summary").unwrap_or_else(|| key.to_owned());
        let message = if transition == "resolved" {
            format!("Resolved: {summary}")
        } else {
            summary
        };
        Ok(Parsed::Event(Box::new(ToolEvent {
            tool_event_id: super::tool_event_id(
                self.db_name(),
                "detection_alert",
                &format!("{key}_{triggered_at}_{transition}"),
            ),
            source_event_type: format!("alert.{transition}"),
            timestamp,
            message: Some(message),
            user: None,
            device: text(&after, "deviceId").map(super::DeviceRef::Machine),
            details: serde_json::json!({ "additional_info": {
                "alertKey": key,
                "rule": text(&after, "rule"),
                "alertSeverity": text(&after, "severity"),
                "triggeredAt": triggered_at,
                "evidence": after.get("evidence").cloned().unwrap_or(Value::Null),
            } }),
            source: Value::Object(after.clone()),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapping_row_maps_and_events_name_their_tool() {
        for (source, unified) in MAPPING {
            assert_eq!(Appliance.map(source), Some(*unified), "{source}");
        }
        let envelope = Envelope::parse(serde_json::json!({"after": {
            "toolId": "fleet", "toolType": "FLEET_MDM", "event": "health_down",
            "message": "the tool answered HTTP 503", "eventTimestamp": 1763629201000_i64}}))
        .unwrap();
        let Ok(Parsed::Event(event)) = Appliance.parse(MessageType::ToolLifecycle, &envelope)
        else {
            panic!("not an event");
        };
        assert_eq!(event.source_event_type, "tool.health_down");
        assert_eq!(
            event.message.as_deref(),
            Some("Tool fleet is unhealthy: the tool answered HTTP 503")
        );
        assert_eq!(
            Appliance.map(&event.source_event_type),
            Some("SYSTEM_ERROR")
        );
        let bad = Envelope::parse(serde_json::json!({"after": {
            "toolId": "fleet", "event": "exploded", "eventTimestamp": 1763629201000_i64}}))
        .unwrap();
        assert!(Appliance.parse(MessageType::ToolLifecycle, &bad).is_err());
    }
}
