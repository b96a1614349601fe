//! The language-model providers the assistant can use, behind one trait: Anthropic's Messages
//! API, and the OpenAI-compatible chat completions API that local model servers (llama.cpp,
//! vLLM, Ollama, LM Studio) also speak, so an air-gapped site points it at its own machine.
//!
//! A provider call is bounded: one timeout for the whole exchange, and a cap on the reply's
//! size. Every way it can fail is an [`AssistError`] with a message a technician can act on;
//! nothing here retries, since a person is waiting.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::error::ApiError;

/// The most reply bytes read from a provider.
const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// What the assistant asks: instructions, and the material they apply to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub system: String,
    pub user: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssistError {
    #[error(
        "the assistant is off; an operator turns it on with [assistant] enabled = true in the config"
    )]
    Disabled,
    #[error("the assistant's provider cannot be reached ({0}); check [assistant] base_url")]
    Unreachable(String),
    #[error(
        "the assistant's provider did not answer within {0} s; try again, or raise [assistant] timeout_seconds"
    )]
    TimedOut(u64),
    #[error("the assistant's provider refused the request (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the assistant's provider answered with something unreadable: {0}")]
    Malformed(String),
}

impl From<AssistError> for ApiError {
    fn from(error: AssistError) -> Self {
        match error {
            AssistError::Disabled => ApiError::AssistantDisabled(error.to_string()),
            AssistError::TimedOut(_) => ApiError::GatewayTimeout(error.to_string()),
            _ => ApiError::BadGateway(error.to_string()),
        }
    }
}

#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// `anthropic` or `openai`.
    fn name(&self) -> &'static str;
    fn model(&self) -> &str;
    /// The model's answer to `prompt`, as text.
    async fn complete(&self, prompt: &Prompt) -> Result<String, AssistError>;
}

/// What both wire formats share: where, with which key, how long, how much.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Without a trailing slash.
    pub base_url: String,
    pub model: String,
    /// Empty: sent without credentials (a local model server).
    pub api_key: String,
    pub timeout: Duration,
    pub max_tokens: u32,
}

impl Endpoint {
    fn client(&self) -> Result<reqwest::Client, AssistError> {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| AssistError::Unreachable(error.to_string()))
    }

    /// POSTs `body` to `path` and returns the reply as JSON; errors say what went wrong.
    async fn exchange(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &Value,
        error_message: fn(&Value) -> Option<String>,
    ) -> Result<Value, AssistError> {
        let timed_out = || AssistError::TimedOut(self.timeout.as_secs().max(1));
        let mut request = self
            .client()?
            .post(format!("{}{path}", self.base_url))
            .json(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let mut response = request.send().await.map_err(|error| {
            if error.is_timeout() {
                timed_out()
            } else {
                AssistError::Unreachable(without_url(&error))
            }
        })?;
        let status = response.status();
        let mut reply = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if reply.len() + chunk.len() > MAX_REPLY_BYTES {
                        return Err(AssistError::Malformed(format!(
                            "the reply is larger than {MAX_REPLY_BYTES} bytes"
                        )));
                    }
                    reply.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(error) if error.is_timeout() => return Err(timed_out()),
                Err(error) => return Err(AssistError::Unreachable(without_url(&error))),
            }
        }
        let parsed: Result<Value, _> = serde_json::from_slice(&reply);
        if !status.is_success() {
            let message = parsed
                .ok()
                .as_ref()
                .and_then(error_message)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("no reason").to_owned());
            return Err(AssistError::Refused {
                status: status.as_u16(),
                message: message.chars().take(300).collect(),
            });
        }
        parsed.map_err(|error| AssistError::Malformed(format!("the reply is not JSON: {error}")))
    }
}

/// A reqwest error's description without the URL (which may carry a query the operator set).
fn without_url(error: &reqwest::Error) -> String {
    let mut error_text = error.to_string();
    if let Some(url) = error.url() {
        error_text = error_text.replace(url.as_str(), "the provider");
    }
    match std::error::Error::source(error) {
        Some(source) => format!("{error_text}: {source}"),
        None => error_text,
    }
}

/// Anthropic's Messages API: `POST {base}/v1/messages`.
#[derive(Debug)]
pub struct Anthropic {
    pub endpoint: Endpoint,
}

/// The `anthropic-version` this client speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

#[async_trait]
impl Provider for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn model(&self) -> &str {
        &self.endpoint.model
    }

    async fn complete(&self, prompt: &Prompt) -> Result<String, AssistError> {
        let body = json!({
            "model": self.endpoint.model,
            "max_tokens": self.endpoint.max_tokens,
            "system": prompt.system,
            "messages": [{"role": "user", "content": prompt.user}],
        });
        let headers = [
            ("x-api-key", self.endpoint.api_key.clone()),
            ("anthropic-version", ANTHROPIC_VERSION.to_owned()),
        ];
        let reply = self
            .endpoint
            .exchange("/v1/messages", &headers, &body, |reply| {
                reply["error"]["message"].as_str().map(str::to_owned)
            })
            .await?;
        // `content` is a list of blocks; the text blocks together are the answer.
        let blocks = reply["content"].as_array().ok_or_else(|| {
            AssistError::Malformed("the reply has no \"content\" list".to_owned())
        })?;
        let text: Vec<&str> = blocks
            .iter()
            .filter(|block| block["type"] == "text")
            .filter_map(|block| block["text"].as_str())
            .collect();
        non_empty(text.concat())
    }
}

/// The OpenAI-compatible chat completions API: `POST {base}/chat/completions`, where the base
/// ends in `/v1` as such servers document it.
#[derive(Debug)]
pub struct OpenAiCompatible {
    pub endpoint: Endpoint,
}

#[async_trait]
impl Provider for OpenAiCompatible {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn model(&self) -> &str {
        &self.endpoint.model
    }

    async fn complete(&self, prompt: &Prompt) -> Result<String, AssistError> {
        let body = json!({
            "model": self.endpoint.model,
            "max_tokens": self.endpoint.max_tokens,
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
        });
        let mut headers = Vec::new();
        if !self.endpoint.api_key.is_empty() {
            headers.push(("authorization", format!("Bearer {}", self.endpoint.api_key)));
        }
        let reply = self
            .endpoint
            .exchange("/chat/completions", &headers, &body, |reply| {
                reply["error"]["message"]
                    .as_str()
                    .or_else(|| reply["error"].as_str())
                    .map(str::to_owned)
            })
            .await?;
        let text = reply["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| {
                AssistError::Malformed(
                    "the reply has no \"choices[0].message.content\" text".to_owned(),
                )
            })?;
        non_empty(text.to_owned())
    }
}

fn non_empty(text: String) -> Result<String, AssistError> {
    if text.trim().is_empty() {
        Err(AssistError::Malformed("the reply holds no text".to_owned()))
    } else {
        Ok(text)
    }
}
