//! The technician GraphQL API (`/api/graphql`), driven over TLS with tokens from the real
//! sign-in flow: devices and organizations with Relay paging, facets, lookups, the nickname
//! mutation, bad input, limits, and tenant isolation over every operation of the schema.

pub(crate) mod support;

mod devices;
mod events;
mod independent;
mod isolation;
pub(crate) mod live;
pub(crate) mod logs;
mod schedules;
mod schema;
mod scripts;
mod tags;
