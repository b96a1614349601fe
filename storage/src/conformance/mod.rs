//! The conformance suites: one per storage trait, run by every engine of that trait.
//!
//! Each suite is a set of `pub async fn` cases taking the store under test, and a macro that turns
//! them into one `#[tokio::test]` per case for an engine, given an async factory expression that
//! yields `(store, guard)`, where `guard` keeps the engine's files alive for the test. Cases use
//! their own tenant ids, so they never depend on each other's data.
//!
//! Behind feature `test-util` so connectors to external systems (Kafka, MongoDB) run the same cases.

// This is test code that ships behind a feature: a broken contract must fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod analytics;
pub mod details;
pub mod documents;
pub mod log;
pub mod search;

use crate::model::TenantId;

/// A tenant id unique to one case, so cases sharing a store cannot see each other's data.
pub fn tenant(case: &str) -> TenantId {
    let slug: String = case
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    match TenantId::parse(&format!("t-{slug}")) {
        Ok(id) => id,
        Err(error) => panic!("conformance case name {case:?} does not make a tenant id: {error}"),
    }
}
