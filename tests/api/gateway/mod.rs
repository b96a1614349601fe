//! The public edge, driven from outside: the access matrix, API keys and their limits, the tool
//! proxy against a local tool, and edge hygiene.

pub(crate) mod support;

mod access;
mod api_keys;
mod edge;
mod proxy;
