//! Agents: registration, agent tokens, `/ws/nats` with per-machine permissions, presence.

mod credentials;
mod endpoint;
mod nats;
pub(crate) mod scripts;
mod service;
pub(crate) mod support;
mod tool_agents;
