//! The public API for integrators (`/external-api/api/v1`) with API keys and their scopes.

mod devices;
mod events;
