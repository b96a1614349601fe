//! The OpenFrame Appliance: OpenFrame's MSP backend (identity, gateway, APIs, agents, event
//! pipeline) as one process over embedded stores. See `ARCHITECTURE.md` for the design.
//!
//! Modules in reading order:
//! - [`config`]: settings and their precedence (file < environment < flags).
//! - [`startup`]: [`startup::Application`], built by `main` and the tests alike.
//! - [`datadir`], [`tls`]: the data directory's lock and the HTTPS certificate.
//! - [`domain`]: validated values (emails, roles, the password policy); no IO.
//! - [`identity`]: each tenant's OAuth2/OIDC provider (keys, users, clients, tokens, sign-in);
//!   [`mail`]: invitations and reset links out by SMTP, or into a sealed outbox.
//! - [`gateway`]: the public HTTPS edge (access rules, tokens, API keys, limits, tool proxy);
//!   [`api`]: the technician API (`/api`); [`external_api`]: the integrators' API;
//!   [`admin`]: health and metrics on loopback.
//! - [`inventory`]: organizations, machines and tool connections, with the in-memory directory
//!   enrichment reads; [`stream`]: the event pipeline (ingest, per-tool mappers, the worker);
//!   [`management`]: the supervised `nats-server`; [`webhooks`]: unified events pushed to
//!   integrators' URLs, signed and retried.
//! - [`error`]: the one table mapping errors to HTTP; [`metrics`], [`telemetry`]: observability.
//! - [`fuzzing`]: the entry points of the fuzz targets in `fuzz/`.
//! - [`ops`]: `doctor` and `healthcheck`; [`backup`]: `openframe backup` and `restore`;
//!   [`systemd`]: readiness for a `Type=notify` unit.
//!
//! Storage lives in the `openframe-storage` crate; nothing here names an engine.

pub mod admin;
pub mod agent;
pub mod api;
pub mod assist;
pub mod audit;
pub mod backup;
pub mod catalog;
pub mod config;
pub mod datadir;
pub mod detect;
pub mod domain;
pub mod error;
pub mod events;
pub mod external_api;
pub mod fuzzing;
pub mod gateway;
pub mod graphql;
pub mod identity;
pub mod inventory;
pub mod mail;
pub mod management;
pub mod metrics;
pub mod migrate_storage;
pub mod notify;
pub mod ops;
pub mod startup;
pub mod stream;
pub mod systemd;
pub mod tags;
pub mod telemetry;
pub mod tls;
pub mod ui;
pub mod upgrade;
pub mod webhooks;
