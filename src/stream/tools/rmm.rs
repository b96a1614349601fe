//! OpenFrame RMM: results of scripts and commands our own agent ran, published by the management
//! side on `logs.events` as Debezium-shaped messages whose `after` is OpenFrame's
//! `RmmResultEvent` (`machineId`, `executionId`, `scriptId`, `stdout`, `stderr`, `exitCode`,
//! `executionTimeMs`, `timedOut`, `error`, `eventTimestamp`); and the agents' presence changes
//! (`DEVICE_PRESENCE`: `machineId`, `status` ONLINE or OFFLINE, `lastSeen`, `eventTimestamp`).

use serde_json::Value;

use super::{
    DeviceRef, MessageType, Parsed, ToolEvent, ToolIntegration, id_text, parse_timestamp,
    required_str, text, tool_event_id,
};
use crate::stream::envelope::{Envelope, Rejection};

#[derive(Debug)]
pub struct Rmm;

/// How much of each output stream the log keeps (the executions keep their own 64 KiB copy).
const OUTPUT_IN_LOG: usize = 16 * 1024;

impl ToolIntegration for Rmm {
    fn tool_type(&self) -> &'static str {
        "RMM"
    }

    fn db_name(&self) -> &'static str {
        "rmm"
    }

    fn message_types(&self) -> &'static [MessageType] {
        &[
            MessageType::CommandExecuted,
            MessageType::ScriptExecuted,
            MessageType::DevicePresence,
        ]
    }

    fn parse(&self, message_type: MessageType, envelope: &Envelope) -> Result<Parsed, Rejection> {
        let after = envelope.after()?;
        if message_type == MessageType::DevicePresence {
            return presence(self.db_name(), &after);
        }
        let machine = required_str(&after, "machineId")?.to_owned();
        let execution = required_str(&after, "executionId")?;
        let when = after
            .get("eventTimestamp")
            .ok_or_else(|| Rejection::new("missing_field", "`after.eventTimestamp` is required"))?;
        let timestamp = parse_timestamp(when, "after.eventTimestamp")?;
        let exit_code = after.get("exitCode").and_then(Value::as_i64);
        let timed_out = after
            .get("timedOut")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let error = text(&after, "error");
        let failed = timed_out || error.is_some() || exit_code.is_some_and(|code| code != 0);
        let (kind, noun) = match message_type {
            MessageType::CommandExecuted => ("cmd_run", "Command"),
            _ => ("script_run", "Script"),
        };
        // Beyond OpenFrame, which logs every script as SCRIPT_EXECUTED: a failed one is
        // SCRIPT_FAILED (ERROR), so it shows up where technicians look for trouble.
        let outcome = if failed && kind == "script_run" {
            "failed"
        } else {
            "finished"
        };
        let mut message = match (timed_out, exit_code) {
            (true, _) => format!("{noun} timed out"),
            (false, Some(code)) => format!("{noun} exited with code {code}"),
            (false, None) => format!("{noun} finished"),
        };
        if let Some(error) = &error {
            message.push_str(": ");
            message.push_str(error);
        }
        // The output is part of the message so that it is searchable.
        for stream in ["stdout", "stderr"] {
            if let Some(output) = text(&after, stream) {
                message.push('\n');
                message.push_str(cut(&output, OUTPUT_IN_LOG));
            }
        }
        let primary_key = format!("{execution}_{machine}");
        let table = match message_type {
            MessageType::CommandExecuted => "command_results",
            _ => "script_results",
        };
        Ok(Parsed::Event(Box::new(ToolEvent {
            tool_event_id: tool_event_id(self.db_name(), table, &primary_key),
            source_event_type: format!("{kind}.{outcome}"),
            timestamp,
            message: Some(message),
            user: text(&after, "initiatedBy"),
            device: Some(DeviceRef::Machine(machine)),
            details: serde_json::json!({
                "error": error,
                "result": { "exitCode": exit_code, "timedOut": timed_out, "executionTimeMs": after.get("executionTimeMs") },
                "additional_info": {
                    "executionId": execution,
                    "scriptId": id_text(after.get("scriptId")),
                    "scheduleId": id_text(after.get("scheduleId")),
                },
            }),
            source: Value::Object(after.clone()),
        })))
    }

    fn mapping(&self) -> &'static [(&'static str, &'static str)] {
        MAPPING
    }
}

/// A machine turned ONLINE or OFFLINE.
fn presence(db: &str, after: &serde_json::Map<String, Value>) -> Result<Parsed, Rejection> {
    let machine = required_str(after, "machineId")?.to_owned();
    let status = required_str(after, "status")?;
    let (kind, message) = match status {
        "ONLINE" => ("presence.online", "The agent connected".to_owned()),
        "OFFLINE" => (
            "presence.offline",
            match after.get("offlineAfterSeconds").and_then(Value::as_i64) {
                Some(seconds) => format!("No heartbeat for {seconds} s"),
                None => "No heartbeat".to_owned(),
            },
        ),
        _ => {
            return Err(Rejection::new(
                "invalid_field",
                "`after.status` must be ONLINE or OFFLINE",
            ));
        }
    };
    let when = after
        .get("eventTimestamp")
        .ok_or_else(|| Rejection::new("missing_field", "`after.eventTimestamp` is required"))?;
    let timestamp = parse_timestamp(when, "after.eventTimestamp")?;
    Ok(Parsed::Event(Box::new(ToolEvent {
        tool_event_id: tool_event_id(db, "presence", &format!("{machine}_{status}_{timestamp}")),
        source_event_type: kind.to_owned(),
        timestamp,
        message: Some(message),
        user: None,
        device: Some(DeviceRef::Machine(machine)),
        details: serde_json::json!({ "result": { "status": status, "lastSeen": after.get("lastSeen") } }),
        source: Value::Object(after.clone()),
    })))
}

/// The first `limit` bytes of `text`, on a character boundary.
fn cut(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Sorted.
const MAPPING: &[(&str, &str)] = &[
    ("cmd_run.finished", "COMMAND_RUN_FINISHED"),
    ("presence.offline", "DEVICE_OFFLINE"),
    ("presence.online", "DEVICE_ONLINE"),
    ("script_run.failed", "SCRIPT_FAILED"),
    ("script_run.finished", "SCRIPT_EXECUTED"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(message_type: MessageType, after: Value) -> Result<Parsed, Rejection> {
        Rmm.parse(
            message_type,
            &Envelope::parse(serde_json::json!({ "after": after })).unwrap(),
        )
    }

    fn event(message_type: MessageType, after: Value) -> ToolEvent {
        match parse(message_type, after).unwrap() {
            Parsed::Event(event) => *event,
            Parsed::Skip(why) => panic!("skipped: {why}"),
        }
    }

    #[test]
    fn every_mapping_row_maps() {
        for (source, unified) in MAPPING {
            assert_eq!(Rmm.map(source), Some(*unified), "{source}");
        }
    }

    #[test]
    fn results_name_their_machine_and_carry_searchable_output() {
        let ok = event(
            MessageType::ScriptExecuted,
            serde_json::json!({"machineId": "m-1", "executionId": "e-1", "scriptId": "s-1", "exitCode": 0,
                "stdout": "disk cleaned", "eventTimestamp": 1763629201000_i64}),
        );
        assert_eq!(ok.source_event_type, "script_run.finished");
        assert_eq!(ok.device, Some(DeviceRef::Machine("m-1".into())));
        assert!(ok.message.as_deref().unwrap().contains("disk cleaned"));
        assert_eq!(
            ok.tool_event_id,
            tool_event_id("rmm", "script_results", "e-1_m-1")
        );

        let failed = event(
            MessageType::ScriptExecuted,
            serde_json::json!({"machineId": "m-1", "executionId": "e-2", "timedOut": true, "eventTimestamp": 1}),
        );
        assert_eq!(Rmm.map(&failed.source_event_type), Some("SCRIPT_FAILED"));
        let command = event(
            MessageType::CommandExecuted,
            serde_json::json!({"machineId": "m-1", "executionId": "e-3", "exitCode": 2, "stderr": "é".repeat(20_000), "eventTimestamp": 1}),
        );
        assert_eq!(
            Rmm.map(&command.source_event_type),
            Some("COMMAND_RUN_FINISHED")
        );
        assert!(command.message.unwrap().len() < OUTPUT_IN_LOG + 100);
    }

    #[test]
    fn results_without_machine_or_execution_are_refused() {
        for (after, field) in [
            (
                serde_json::json!({"executionId": "e", "eventTimestamp": 1}),
                "machineId",
            ),
            (
                serde_json::json!({"machineId": "m", "eventTimestamp": 1}),
                "executionId",
            ),
            (
                serde_json::json!({"machineId": "m", "executionId": "e"}),
                "eventTimestamp",
            ),
        ] {
            let rejection = parse(MessageType::CommandExecuted, after).unwrap_err();
            assert!(rejection.reason.contains(field), "{}", rejection.reason);
        }
    }
}
