//! The event pipeline end to end: the shared fixtures sent over HTTPS with an ingest key, and the
//! resulting unified log read back from every store (analytics rows and facets, search, details).

pub(crate) mod support;

pub(crate) mod crash;
mod ingest;
mod kafka;
mod mappings;
mod nats;
mod reindex;
mod retention;
