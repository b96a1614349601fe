//! Tokens of endpoint agents. OpenFrame signs them with one static key under the issuer
//! `https://auth.openframe.com`; here one issuer, `{public_url}/clients`, names the agent
//! service, and each token is signed by its own tenant's rotating key ring and names the tenant
//! in `tenant_id`. A token verifies only with a key its claimed tenant publishes, so an agent of
//! one tenant can never pass for another's.
//!
//! Claims are OpenFrame's: `sub = agent_{machineId}`, `machine_id`, `roles = ["AGENT"]`,
//! `grant_type`, plus `aud`, `nbf` and `jti`.

use openframe_storage::model::TenantId;
use serde::{Deserialize, Serialize};

use super::Identity;
use super::crypto::random_uuid;
use super::jwt::JwtError;
use super::keys::VerifyError;
use super::tokens::{LEEWAY_SECONDS, TokenRejected};

/// The audience of every agent token.
pub const AGENT_AUDIENCE: &str = "openframe-agent";

/// The claims of an agent's access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentClaims {
    pub iss: String,
    /// `agent_{machineId}`.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub tenant_id: String,
    pub machine_id: String,
    pub roles: Vec<String>,
    pub grant_type: String,
    /// The machine's credential generation: reinstalling or uninstalling the agent moves it on,
    /// and every token of an older generation is refused from then on.
    #[serde(default)]
    pub epoch: u64,
}

/// A freshly issued agent access token.
#[derive(Debug, Clone)]
pub struct AgentToken {
    pub token: String,
    pub expires_in: u64,
}

impl Identity {
    /// `{public_url}/clients`: the issuer of every agent token.
    pub fn agent_issuer(&self) -> String {
        format!("{}/clients", self.public_url())
    }

    /// Signs an access token for a machine of `tenant` (the agent service calls this once it
    /// has checked the machine's credentials).
    pub async fn issue_agent_token(
        &self,
        tenant: &TenantId,
        machine_id: &str,
        epoch: u64,
        grant_type: &str,
    ) -> anyhow::Result<AgentToken> {
        let now = self.clock.now_ms().div_euclid(1000);
        let ttl = self.settings.access_ttl.as_secs();
        let claims = AgentClaims {
            iss: self.agent_issuer(),
            sub: format!("agent_{machine_id}"),
            aud: AGENT_AUDIENCE.to_owned(),
            exp: now + i64::try_from(ttl).unwrap_or(i64::MAX / 2),
            iat: now,
            nbf: now,
            jti: random_uuid()?,
            tenant_id: tenant.as_str().to_owned(),
            machine_id: machine_id.to_owned(),
            roles: vec!["AGENT".to_owned()],
            grant_type: grant_type.to_owned(),
            epoch,
        };
        let token = self.keys.sign(tenant, &claims).await?;
        Ok(AgentToken {
            token,
            expires_in: ttl,
        })
    }

    /// Verifies an agent token of `tenant`: signature by a key the tenant publishes, issuer,
    /// audience, tenant, lifetime and role.
    pub async fn verify_agent_token(
        &self,
        tenant: &TenantId,
        token: &str,
    ) -> Result<AgentClaims, TokenRejected> {
        let claims: AgentClaims =
            self.keys
                .verify(tenant, token)
                .await
                .map_err(|error| match error {
                    VerifyError::Token(JwtError::Claims(_)) => {
                        TokenRejected::Invalid("the token is not an agent token".into())
                    }
                    VerifyError::Token(error) => TokenRejected::Invalid(error.to_string()),
                    VerifyError::Unexpected(error) => TokenRejected::Failed(error.into()),
                })?;
        let invalid = |why: &str| Err(TokenRejected::Invalid(why.to_owned()));
        if claims.iss != self.agent_issuer() {
            return invalid("the token was issued by another issuer");
        }
        if claims.aud != AGENT_AUDIENCE {
            return invalid("the token is not meant for agents");
        }
        if claims.tenant_id != tenant.as_str() {
            return invalid("the token belongs to another tenant");
        }
        if claims.roles != ["AGENT"] || claims.sub != format!("agent_{}", claims.machine_id) {
            return invalid("the token is not an agent token");
        }
        let now = self.clock.now_ms().div_euclid(1000);
        if claims.exp <= now - LEEWAY_SECONDS {
            return invalid("the token has expired");
        }
        if claims.nbf > now + LEEWAY_SECONDS || claims.iat > now + LEEWAY_SECONDS {
            return invalid("the token is not valid yet");
        }
        Ok(claims)
    }
}
