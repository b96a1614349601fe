//! Black-box tests: a real `Application` on port 0 with a temporary data dir, reached over real TLS.
//! One test binary, so the (large) storage engines are linked once.

// Helpers are test code too: a failed setup must stop the test at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod agents;
pub(crate) mod assistant;
mod backup;
mod chaos;
mod cli;
mod config;
mod console;
mod data_dir;
pub(crate) mod detection;
mod external;
mod faults;
mod gateway;
mod graphql;
mod health;
mod identity;
mod migrate;
mod notifications;
mod rest;
mod shutdown;
mod stream;
mod upgrade;
