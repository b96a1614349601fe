//! What one machine may do on NATS: the rules the `/ws/nats` proxy enforces on every client
//! operation, as pure functions.
//!
//! A machine `M` may
//! - publish to `machine.M.…` (heartbeats, results, reports) and to reply inboxes `_INBOX.x.…`;
//! - subscribe to `machine.M.…`, `machine.all.…` (broadcasts) and inboxes whose second token is a
//!   literal (`_INBOX.>` would let it read every other client's replies);
//! - use JetStream only through consumers named `machine_M_…` whose filter subjects lie in
//!   `machine.M.…` or `machine.all.…` (OpenFrame's agent names its consumers
//!   `machine_{id}_tool-installation_consumer` and so on), on the agent streams below.
//!
//! Everything else is refused with nats-server's own `-ERR 'Permissions Violation …'`.

use serde_json::Value;

/// The JetStream streams agents read from (OpenFrame's names).
pub const AGENT_STREAMS: [&str; 7] = [
    "TOOL_INSTALLATION",
    "CLIENT_UPDATE",
    "CLIENT_UNINSTALL",
    "TOOL_UPDATE",
    "TOOL_CONNECTIONS",
    "INSTALLED_AGENTS",
    "MACHINE_HOSTNAME",
];

/// One machine's permissions.
#[derive(Debug, Clone)]
pub struct MachineScope {
    machine_id: String,
    consumer_prefix: String,
}

impl MachineScope {
    pub fn new(machine_id: &str) -> MachineScope {
        MachineScope {
            machine_id: machine_id.to_owned(),
            consumer_prefix: format!("machine_{machine_id}_"),
        }
    }

    /// Whether a plain publish (no JetStream API) to `subject` is allowed.
    pub fn may_publish(&self, subject: &str) -> bool {
        let tokens: Vec<&str> = subject.split('.').collect();
        if !well_formed(&tokens) || tokens.iter().any(|token| is_wildcard(token)) {
            return false;
        }
        match tokens.as_slice() {
            ["machine", id, _, ..] => *id == self.machine_id,
            ["_INBOX", _, ..] => true,
            ["$JS", "ACK", rest @ ..] => self.may_ack(rest),
            ["$JS", "API", "INFO"] => true,
            ["$JS", "API", "STREAM", "INFO", stream] => AGENT_STREAMS.contains(stream),
            ["$JS", "API", "CONSUMER", "INFO" | "MSG" | "DELETE", ..] => {
                self.consumer_call(&tokens[3..])
            }
            _ => false,
        }
    }

    /// Whether a publish that carries `payload` is allowed: [`Self::may_publish`], plus the
    /// consumer definition of a JetStream create request.
    pub fn may_send(&self, subject: &str, payload: &[u8]) -> bool {
        let tokens: Vec<&str> = subject.split('.').collect();
        match tokens.as_slice() {
            ["$JS", "API", "CONSUMER", "CREATE", stream, named @ ..] => {
                well_formed(&tokens)
                    && AGENT_STREAMS.contains(stream)
                    && self.may_create(named.first().copied(), payload)
            }
            [
                "$JS",
                "API",
                "CONSUMER",
                "DURABLE",
                "CREATE",
                stream,
                durable,
            ] => {
                well_formed(&tokens)
                    && AGENT_STREAMS.contains(stream)
                    && self.may_create(Some(durable), payload)
            }
            _ => self.may_publish(subject),
        }
    }

    /// Whether subscribing to `subject` (wildcards allowed) is allowed.
    pub fn may_subscribe(&self, subject: &str) -> bool {
        let tokens: Vec<&str> = subject.split('.').collect();
        if !well_formed(&tokens) {
            return false;
        }
        match tokens.as_slice() {
            ["machine", id, _, ..] => *id == self.machine_id || *id == "all",
            ["_INBOX", inbox, ..] => !is_wildcard(inbox),
            _ => false,
        }
    }

    /// `$JS.ACK.<stream>.<consumer>.…` (and the newer form with domain and account hash).
    ///
    /// No token of it may name another machine's consumer: in the long form the domain and hash
    /// come where the short form has stream and consumer, and a consumer takes every ack that
    /// matches `$JS.ACK.<stream>.<consumer>.>`, so `$JS.ACK.<stream>.<theirs>.<stream>.<mine>.…`
    /// would reach theirs (found by the `nats_permissions` fuzz target).
    fn may_ack(&self, rest: &[&str]) -> bool {
        let (stream, consumer) = match rest.len() {
            7 => (rest[0], rest[1]),
            n if n >= 9 => (rest[2], rest[3]),
            _ => return false,
        };
        AGENT_STREAMS.contains(&stream)
            && consumer.starts_with(&self.consumer_prefix)
            && rest
                .iter()
                .filter(|token| token.starts_with("machine_"))
                .all(|token| token.starts_with(&self.consumer_prefix))
    }

    /// `INFO.<stream>.<consumer>`, `MSG.NEXT.<stream>.<consumer>`, `DELETE.<stream>.<consumer>`.
    fn consumer_call(&self, tokens: &[&str]) -> bool {
        let named = match tokens {
            ["INFO" | "DELETE", stream, consumer] => Some((*stream, *consumer)),
            ["MSG", "NEXT", stream, consumer] => Some((*stream, *consumer)),
            _ => None,
        };
        named.is_some_and(|(stream, consumer)| {
            AGENT_STREAMS.contains(&stream) && consumer.starts_with(&self.consumer_prefix)
        })
    }

    /// A consumer definition: its name is the machine's, it filters to the machine's subjects
    /// (a consumer without a filter would read every machine's messages), and a push consumer
    /// delivers to the machine's subjects or an inbox.
    fn may_create(&self, name_in_subject: Option<&str>, payload: &[u8]) -> bool {
        let Ok(request) = serde_json::from_slice::<Value>(payload) else {
            return false;
        };
        let Some(config) = request.get("config") else {
            return false;
        };
        let text = |key: &str| config.get(key).and_then(Value::as_str);
        let names = [name_in_subject, text("name"), text("durable_name")];
        let mut named = false;
        for name in names.into_iter().flatten() {
            if !name.starts_with(&self.consumer_prefix) {
                return false;
            }
            named = true;
        }
        if !named {
            return false;
        }
        let mut filters: Vec<&str> = text("filter_subject").into_iter().collect();
        if let Some(many) = config.get("filter_subjects").and_then(Value::as_array) {
            for filter in many {
                match filter.as_str() {
                    Some(filter) => filters.push(filter),
                    None => return false,
                }
            }
        }
        let filters_ok = !filters.is_empty()
            && filters
                .iter()
                .all(|filter| self.may_subscribe(filter) && !filter.starts_with("_INBOX."));
        let delivery_ok = text("deliver_subject")
            .is_none_or(|subject| self.may_subscribe(subject) && !subject.contains(['*', '>']));
        filters_ok && delivery_ok
    }
}

fn well_formed(tokens: &[&str]) -> bool {
    let last = tokens.len().saturating_sub(1);
    !tokens.is_empty()
        && tokens.iter().enumerate().all(|(at, token)| {
            !token.is_empty()
                && !token.chars().any(|c| c.is_whitespace() || c.is_control())
                && (*token != ">" || at == last)
                && (!token.contains(['*', '>']) || token.len() == 1)
        })
}

fn is_wildcard(token: &str) -> bool {
    token == "*" || token == ">"
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "3f6c1c9e-0000-4000-8000-000000000001";
    const OTHER: &str = "3f6c1c9e-0000-4000-8000-000000000002";

    fn me() -> MachineScope {
        MachineScope::new(ME)
    }

    #[test]
    fn a_machine_publishes_only_on_its_own_subjects_and_inboxes() {
        for allowed in [
            format!("machine.{ME}.heartbeat"),
            format!("machine.{ME}.script-execution.result"),
            "_INBOX.abc.1".to_owned(),
            "$JS.API.INFO".to_owned(),
            "$JS.API.STREAM.INFO.TOOL_INSTALLATION".to_owned(),
            format!(
                "$JS.API.CONSUMER.MSG.NEXT.TOOL_INSTALLATION.machine_{ME}_tool-installation_consumer"
            ),
            format!("$JS.ACK.TOOL_INSTALLATION.machine_{ME}_x.1.2.3.1763629201000000000.0"),
            format!(
                "$JS.ACK.hub.ACC.TOOL_INSTALLATION.machine_{ME}_x.1.2.3.1763629201000000000.0.tok"
            ),
        ] {
            assert!(me().may_publish(&allowed), "{allowed}");
        }
        for refused in [
            format!("machine.{OTHER}.heartbeat"),
            format!("machine.{ME}"),
            format!("machine.{ME}.*"),
            format!("machine.{ME}.>"),
            "machine.all.client-update".to_owned(),
            "cdc.MESHCENTRAL_EVENT".to_owned(),
            "_HUB.sync".to_owned(),
            "_INBOX".to_owned(),
            "$JS.API.STREAM.INFO.CDC".to_owned(),
            "$JS.API.STREAM.DELETE.TOOL_INSTALLATION".to_owned(),
            format!("$JS.API.CONSUMER.MSG.NEXT.TOOL_INSTALLATION.machine_{OTHER}_x"),
            format!("$JS.API.CONSUMER.MSG.NEXT.CDC.machine_{ME}_x"),
            format!("$JS.ACK.TOOL_INSTALLATION.machine_{OTHER}_x.1.2.3.4.0"),
            format!("machine..{ME}"),
            format!("machine.{ME}.a b"),
            String::new(),
        ] {
            assert!(!me().may_publish(&refused), "{refused}");
        }
    }

    #[test]
    fn a_machine_subscribes_to_its_subjects_broadcasts_and_named_inboxes() {
        for allowed in [
            format!("machine.{ME}.>"),
            format!("machine.{ME}.script-execution"),
            "machine.all.>".to_owned(),
            "machine.all.tool.*.update".to_owned(),
            "_INBOX.xyz.*".to_owned(),
        ] {
            assert!(me().may_subscribe(&allowed), "{allowed}");
        }
        for refused in [
            format!("machine.{OTHER}.>"),
            "machine.*.heartbeat".to_owned(),
            "machine.>".to_owned(),
            ">".to_owned(),
            "_INBOX.>".to_owned(),
            "_INBOX.*.*".to_owned(),
            "_HUB.sync".to_owned(),
            "$JS.API.>".to_owned(),
            format!("machine.{ME}.>.x"),
            format!("machine.{ME}.a>"),
        ] {
            assert!(!me().may_subscribe(&refused), "{refused}");
        }
    }

    #[test]
    fn consumers_must_be_the_machines_and_filter_to_its_subjects() {
        let create = |subject: &str, config: Value| {
            me().may_send(
                subject,
                serde_json::json!({"stream_name": "TOOL_INSTALLATION", "config": config})
                    .to_string()
                    .as_bytes(),
            )
        };
        let own = format!("machine_{ME}_tool-installation_consumer");
        let subject = format!("$JS.API.CONSUMER.CREATE.TOOL_INSTALLATION.{own}");
        assert!(create(
            &subject,
            serde_json::json!({"durable_name": own, "filter_subject": format!("machine.{ME}.tool-installation")})
        ));
        assert!(create(
            &format!("$JS.API.CONSUMER.DURABLE.CREATE.TOOL_INSTALLATION.{own}"),
            serde_json::json!({"durable_name": own, "filter_subjects": [format!("machine.{ME}.tool-installation"), "machine.all.tool.*.update"],
                "deliver_subject": format!("machine.{ME}.tool-installation.inbox")})
        ));
        // Without a filter the consumer would read every machine's installations.
        assert!(!create(&subject, serde_json::json!({"durable_name": own})));
        assert!(!create(
            &subject,
            serde_json::json!({"durable_name": own, "filter_subject": format!("machine.{OTHER}.tool-installation")})
        ));
        assert!(!create(
            &subject,
            serde_json::json!({"durable_name": own, "filter_subject": "machine.*.tool-installation"})
        ));
        assert!(!create(
            &format!("$JS.API.CONSUMER.CREATE.TOOL_INSTALLATION.machine_{OTHER}_c"),
            serde_json::json!({"durable_name": format!("machine_{OTHER}_c"), "filter_subject": format!("machine.{ME}.x")})
        ));
        // The name in the subject and the one in the body must both be the machine's.
        assert!(!create(
            &subject,
            serde_json::json!({"durable_name": format!("machine_{OTHER}_c"), "filter_subject": format!("machine.{ME}.x")})
        ));
        assert!(!create(
            &subject,
            serde_json::json!({"durable_name": own, "filter_subject": format!("machine.{ME}.x"), "deliver_subject": format!("machine.{OTHER}.x")})
        ));
        assert!(!create(
            &format!("$JS.API.CONSUMER.CREATE.CDC.{own}"),
            serde_json::json!({"durable_name": own, "filter_subject": format!("machine.{ME}.x")})
        ));
        assert!(!me().may_send(&subject, b"not json"));
    }

    #[test]
    fn an_ack_in_the_long_form_cannot_name_another_machines_consumer() {
        let me = me();
        // Where the short form's stream and consumer are, the long form has domain and hash.
        assert!(!me.may_publish(&format!(
            "$JS.ACK.TOOL_INSTALLATION.machine_{OTHER}_x.TOOL_INSTALLATION.machine_{ME}_x.1.2.3.4.0"
        )));
        assert!(!me.may_publish(&format!(
            "$JS.ACK.hub.machine_{OTHER}_x.TOOL_INSTALLATION.machine_{ME}_x.1.2.3.4.0.tok"
        )));
        // Its own acks, in both forms, still pass.
        assert!(me.may_publish(&format!(
            "$JS.ACK.hub.ACC.TOOL_INSTALLATION.machine_{ME}_x.1.2.3.4.0.tok"
        )));
        assert!(me.may_publish(&format!(
            "$JS.ACK.TOOL_INSTALLATION.machine_{ME}_x.1.2.3.4.0"
        )));
    }
}
