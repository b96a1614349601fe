//! Storage errors, one enum per operation family.
//!
//! Every family separates what the caller did wrong (a conflict, a missing row, an invalid query:
//! the edge answers 4xx) from [`EngineFailure`], an infrastructure failure the caller cannot fix
//! (I/O error, full disk, closed engine: the edge answers 503 and may retry).

use std::path::{Path, PathBuf};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An engine could not do its work: I/O, a full disk, a poisoned lock, a background thread gone.
/// Nothing was acknowledged; whether a retry can succeed depends on the cause.
#[derive(Debug, thiserror::Error)]
#[error("{engine} failed to {operation}: {source}")]
pub struct EngineFailure {
    pub engine: &'static str,
    pub operation: &'static str,
    #[source]
    pub source: BoxError,
}

impl EngineFailure {
    pub fn new(engine: &'static str, operation: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            engine,
            operation,
            source: source.into(),
        }
    }

    /// True when the failure is the disk being full, so operators get told what to do.
    pub fn is_disk_full(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self.source.as_ref());
        while let Some(error) = cause {
            if let Some(io) = error.downcast_ref::<std::io::Error>()
                && io.raw_os_error() == Some(28)
            {
                return true;
            }
            if error.to_string().contains("No space left on device") {
                return true;
            }
            cause = error.source();
        }
        false
    }
}

/// Opening a store failed. Each variant names the file so the one-line message says where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(
        "the {backend} {role} backend is not compiled into this build (rebuild with feature \"{feature}\")"
    )]
    NotCompiled {
        role: &'static str,
        backend: &'static str,
        feature: &'static str,
    },
    #[error(
        "{path}: not an OpenFrame {what} ({detail}); move it away or point the data dir elsewhere"
    )]
    Foreign {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error(
        "{path}: written by a newer OpenFrame (schema {found}, this build knows up to {supported}); upgrade openframe"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot copy {from} to {to}: {source}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: BoxError,
    },
    #[error("{path}: cannot open: {source}")]
    Engine {
        path: PathBuf,
        #[source]
        source: BoxError,
    },
}

impl OpenError {
    pub fn engine(path: impl Into<PathBuf>, source: impl Into<BoxError>) -> Self {
        Self::Engine {
            path: path.into(),
            source: source.into(),
        }
    }

    pub fn copy(from: &Path, to: &Path, source: impl Into<BoxError>) -> Self {
        Self::Copy {
            from: from.to_owned(),
            to: to.to_owned(),
            source: source.into(),
        }
    }
}

/// Errors of the event log and the log-details store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A record the log refuses to store (too large, empty batch). Nothing of the batch was written.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error(transparent)]
    Unavailable(#[from] EngineFailure),
}

/// Errors of the document and tenancy stores.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    /// Optimistic concurrency: the stored version is not the one the caller read.
    #[error("{what} was changed concurrently (expected version {expected}, found {found})")]
    VersionConflict {
        what: String,
        expected: u64,
        found: u64,
    },
    #[error("invalid document: {0}")]
    Invalid(String),
    #[error(transparent)]
    Unavailable(#[from] EngineFailure),
}

/// Errors of the analytics store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyticsError {
    #[error("invalid analytics query: {0}")]
    InvalidQuery(String),
    #[error(transparent)]
    Unavailable(#[from] EngineFailure),
}

/// Errors of the search index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    #[error("invalid search query: {0}")]
    InvalidQuery(String),
    /// A document the index refuses (an empty or over-long id). Nothing of the call was indexed.
    #[error("invalid search document: {0}")]
    InvalidDocument(String),
    #[error(transparent)]
    Unavailable(#[from] EngineFailure),
}
