//! Typed identifiers and the records the stores persist.
//!
//! These live in the lowest crate because the storage layer enforces tenancy with them: every
//! tenant-owned key, row, topic partition and index entry is addressed through a [`TenantId`].
//! Nothing here knows JSON, HTTP or a particular engine.

mod clock;
mod ids;

pub use clock::{Clock, ManualClock, SystemClock, UnixMillis};
pub use ids::{Collection, DocumentId, GroupId, IdError, Offset, TenantId, Topic};
