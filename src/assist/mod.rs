//! The optional assistant: a language model that summarises a device's recent logs, explains an
//! incident, and drafts scripts. Off by default (`[assistant] enabled`), and built so that an
//! air-gapped site can use it with a model server of its own (the OpenAI-compatible provider).
//!
//! Guardrails:
//! - **It never acts.** A drafted script becomes an [`Approval`] in the `assistant_approvals`
//!   collection; only a technician's accept stores it in the script library (and running it is
//!   a separate, ordinary decision). Accepts and declines are REST changes, so the audit trail
//!   records who decided what, with the draft.
//! - **No secrets in prompts.** Everything taken from the tenant's data passes through
//!   [`redact::redact`]; scripts' env vars, tool credentials and tokens are never read for a
//!   prompt at all.
//! - **It never blocks anything else.** It runs only when asked, within `timeout_seconds`; a
//!   provider that is down, slow or answers badly gives the technician a clear error (502/504)
//!   and costs nothing but that request.

pub mod http;
pub mod provider;
pub mod redact;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use openframe_storage::{Clock, DocumentStore, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{Catalog, CatalogError};
use crate::config::AssistantSection;
use crate::error::ApiError;
use crate::identity::crypto::random_uuid;
use provider::{Anthropic, AssistError, Endpoint, OpenAiCompatible, Prompt, Provider};

const APPROVALS: &str = "assistant_approvals";
/// The most approval requests kept per tenant; decided ones go first when there are more.
pub const MAX_APPROVALS: usize = 500;
/// The longest goal a technician may give.
pub const MAX_GOAL_CHARS: usize = 2000;
/// The largest script body a draft may hold.
const MAX_DRAFT_BODY: usize = 64 * 1024;

/// A script the assistant drafted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Draft {
    pub name: String,
    pub description: String,
    /// One of the script library's shells (`BASH`, `POWERSHELL`, …).
    pub shell: String,
    pub body: String,
}

/// A drafted action waiting for (or past) a technician's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub id: String,
    /// `CREATE_SCRIPT`.
    pub kind: String,
    /// `PENDING`, `ACCEPTED` or `DECLINED`.
    pub status: String,
    pub goal: String,
    pub machine_id: Option<String>,
    pub draft: Draft,
    pub provider: String,
    pub model: String,
    /// The requesting technician's email.
    pub requested_by: String,
    pub requested_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
    /// The script an accept created.
    pub script_id: Option<String>,
}

/// An answer in prose.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub text: String,
    pub provider: &'static str,
    pub model: String,
}

/// The assistant: its provider (none when off) and the approval requests.
#[derive(Debug)]
pub struct Assistant {
    provider: Option<Arc<dyn Provider>>,
    max_log_entries: usize,
    approvals: Catalog<Approval>,
    clock: Arc<dyn Clock>,
}

impl Assistant {
    /// The assistant as `[assistant]` describes it; the API key is read from its file now.
    pub fn new(
        section: &AssistantSection,
        documents: Arc<dyn DocumentStore>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Assistant> {
        let provider: Option<Arc<dyn Provider>> = if section.enabled {
            section
                .check()
                .map_err(|message| anyhow::anyhow!(message))?;
            let api_key = if section.api_key_file.is_empty() {
                String::new()
            } else {
                std::fs::read_to_string(&section.api_key_file)
                    .with_context(|| {
                        format!("reading assistant.api_key_file {}", section.api_key_file)
                    })?
                    .trim()
                    .to_owned()
            };
            let endpoint = Endpoint {
                base_url: section
                    .resolved_base_url()
                    .map_err(|message| anyhow::anyhow!(message))?,
                model: section.model.trim().to_owned(),
                api_key,
                timeout: Duration::from_secs(section.timeout_seconds),
                max_tokens: section.max_tokens,
            };
            Some(match section.provider.as_str() {
                "openai" => Arc::new(OpenAiCompatible { endpoint }),
                _ => Arc::new(Anthropic { endpoint }),
            })
        } else {
            None
        };
        Ok(Assistant {
            provider,
            max_log_entries: section.max_log_entries,
            approvals: Catalog::new(documents, APPROVALS)?,
            clock,
        })
    }

    /// Whether it is on, and with what.
    pub fn status(&self) -> Value {
        match &self.provider {
            Some(provider) => serde_json::json!({
                "enabled": true, "provider": provider.name(), "model": provider.model(),
            }),
            None => serde_json::json!({"enabled": false, "provider": null, "model": null}),
        }
    }

    pub fn max_log_entries(&self) -> usize {
        self.max_log_entries
    }

    fn provider(&self) -> Result<&Arc<dyn Provider>, AssistError> {
        self.provider.as_ref().ok_or(AssistError::Disabled)
    }

    /// Fails fast when the assistant is off, before any material is gathered.
    pub fn require_enabled(&self) -> Result<(), ApiError> {
        self.provider().map(|_| ()).map_err(ApiError::from)
    }

    /// Asks the provider; `material` is redacted here, whatever the caller gathered.
    pub async fn answer(&self, system: &str, material: &str) -> Result<Answer, ApiError> {
        let provider = self.provider()?;
        let prompt = Prompt {
            system: system.to_owned(),
            user: redact::redact(material),
        };
        let text = provider.complete(&prompt).await.inspect_err(|error| {
            tracing::warn!(provider = provider.name(), %error, "the assistant's provider failed");
        })?;
        Ok(Answer {
            text,
            provider: provider.name(),
            model: provider.model().to_owned(),
        })
    }

    /// Drafts a script for `goal` and stores it as a pending approval request.
    pub async fn draft_script(
        &self,
        tenant: &TenantId,
        requested_by: &str,
        goal: &str,
        machine_id: Option<String>,
        context: &str,
    ) -> Result<Approval, ApiError> {
        let answer = self
            .answer(
                DRAFT_INSTRUCTIONS,
                &format!("Goal: {goal}\n\nTarget device:\n{context}"),
            )
            .await?;
        let draft = parse_draft(&answer.text)?;
        let approval = Approval {
            id: random_uuid()?,
            kind: "CREATE_SCRIPT".to_owned(),
            status: "PENDING".to_owned(),
            goal: goal.to_owned(),
            machine_id,
            draft,
            provider: answer.provider.to_owned(),
            model: answer.model,
            requested_by: requested_by.to_owned(),
            requested_at: self.clock.now_ms(),
            decided_by: None,
            decided_at: None,
            reason: None,
            script_id: None,
        };
        let mut writer = self.approvals.write(tenant).await?;
        if writer.entries().len() >= MAX_APPROVALS {
            let oldest_decided = writer
                .entries()
                .iter()
                .filter(|(_, entry)| entry.value.status != "PENDING")
                .min_by_key(|(_, entry)| entry.value.requested_at)
                .map(|(id, _)| id.clone());
            let Some(oldest) = oldest_decided else {
                return Err(ApiError::Conflict(format!(
                    "{MAX_APPROVALS} drafts are waiting for a decision; accept or decline some first"
                )));
            };
            writer.remove(&oldest).await?;
        }
        writer.put(&approval.id, approval.clone()).await?;
        Ok(approval)
    }

    /// The tenant's approval requests, newest first, of one status or all.
    pub async fn approvals(
        &self,
        tenant: &TenantId,
        status: Option<&str>,
    ) -> Result<Vec<Approval>, CatalogError> {
        let mut approvals = self
            .approvals
            .read(tenant, |entries| {
                entries
                    .values()
                    .map(|entry| entry.value.clone())
                    .filter(|approval| status.is_none_or(|status| approval.status == status))
                    .collect::<Vec<_>>()
            })
            .await?;
        approvals.sort_by(|a, b| b.requested_at.cmp(&a.requested_at).then(a.id.cmp(&b.id)));
        Ok(approvals)
    }

    /// Records a technician's decision on a pending request. `act` runs for an accept, under
    /// the catalog's lock (so two accepts cannot both act), and returns the created script's
    /// id; a failing `act` leaves the request pending.
    pub async fn decide<F, Fut>(
        &self,
        tenant: &TenantId,
        id: &str,
        decided_by: &str,
        decision: Decision,
        act: F,
    ) -> Result<(Approval, Approval), ApiError>
    where
        F: FnOnce(Draft) -> Fut,
        Fut: std::future::Future<Output = Result<String, ApiError>>,
    {
        let mut writer = self.approvals.write(tenant).await?;
        let before = writer
            .entries()
            .get(id)
            .map(|entry| entry.value.clone())
            .ok_or_else(|| ApiError::NotFound(format!("id: no approval request {id:?}")))?;
        if before.status != "PENDING" {
            return Err(ApiError::Conflict(format!(
                "the request was already {} by {}; nothing changed",
                before.status.to_lowercase(),
                before.decided_by.as_deref().unwrap_or("someone")
            )));
        }
        let mut after = before.clone();
        match decision {
            Decision::Accept => {
                after.script_id = Some(act(before.draft.clone()).await?);
                after.status = "ACCEPTED".to_owned();
            }
            Decision::Decline { reason } => {
                after.status = "DECLINED".to_owned();
                after.reason = reason;
            }
        }
        after.decided_by = Some(decided_by.to_owned());
        after.decided_at = Some(self.clock.now_ms());
        writer.put(id, after.clone()).await?;
        Ok((before, after))
    }
}

/// A technician's answer to an approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Decline { reason: Option<String> },
}

/// How every answer is framed: what the assistant is, and what it must not do.
pub const ROLE: &str = "You are the assistant of an IT technician at a managed service provider, \
working in the OpenFrame appliance. Be brief and concrete. Only use the material given; say so \
when it is not enough. Never ask for passwords, keys or tokens; values shown as [redacted] were \
removed on purpose.";

const DRAFT_INSTRUCTIONS: &str = "You are the assistant of an IT technician at a managed service \
provider. Draft one script that achieves the goal on the target device. It will be reviewed by a \
technician before anything runs, so prefer safe, idempotent commands and say in the description \
what it changes. Never put passwords, keys or tokens in the script. Answer with one JSON object \
and nothing else: {\"name\": \"short title\", \"description\": \"what it does and changes\", \
\"shell\": one of \"BASH\", \"POWERSHELL\", \"CMD\", \"PYTHON\", \"SHELL\", \"NUSHELL\", \
\"body\": \"the script\"}.";

/// A draft from the model's answer: one JSON object, possibly inside a code fence.
fn parse_draft(text: &str) -> Result<Draft, AssistError> {
    let malformed = |why: &str| AssistError::Malformed(format!("the drafted script {why}"));
    let start = text
        .find('{')
        .ok_or_else(|| malformed("is not a JSON object"))?;
    let end = text
        .rfind('}')
        .ok_or_else(|| malformed("is not a JSON object"))?;
    let object: Value = text
        .get(start..=end)
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or_else(|| malformed("is not a JSON object"))?;
    let field = |name: &str| object[name].as_str().map(str::trim).unwrap_or_default();
    let (name, body) = (field("name"), object["body"].as_str().unwrap_or_default());
    if name.is_empty() || name.chars().count() > 200 {
        return Err(malformed("has no name of 1 to 200 characters"));
    }
    if body.trim().is_empty() || body.len() > MAX_DRAFT_BODY {
        return Err(malformed("has no body, or one over 64 KiB"));
    }
    let shell = field("shell").to_ascii_uppercase();
    if !crate::management::rmm::SHELLS.contains(&shell.as_str()) {
        return Err(malformed(&format!("names an unknown shell {shell:?}")));
    }
    Ok(Draft {
        name: name.to_owned(),
        description: field("description").chars().take(2000).collect(),
        shell,
        body: body.to_owned(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_is_read_from_json_in_or_out_of_a_fence_and_checked() {
        let fenced = "Here it is:\n```json\n{\"name\": \"Clear temp\", \"description\": \"Deletes /tmp/x\", \"shell\": \"bash\", \"body\": \"rm -rf /tmp/x\"}\n```";
        let draft = parse_draft(fenced).unwrap();
        assert_eq!(draft.shell, "BASH");
        assert_eq!(draft.body, "rm -rf /tmp/x");
        for (bad, why) in [
            ("no json here", "is not a JSON object"),
            ("{\"name\": \"x\", \"shell\": \"BASH\"}", "has no body"),
            (
                "{\"name\": \"x\", \"shell\": \"ZSH\", \"body\": \"ls\"}",
                "unknown shell",
            ),
            ("{\"shell\": \"BASH\", \"body\": \"ls\"}", "has no name"),
        ] {
            let error = parse_draft(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }
}
