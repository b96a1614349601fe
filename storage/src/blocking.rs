//! Running blocking engine work off the async executor, keeping the caller's tracing span.

use crate::error::{EngineFailure, OpenError};

/// Runs `work` on the blocking pool. A panic in `work` becomes an [`EngineFailure`].
pub(crate) async fn run<T, E>(
    engine: &'static str,
    operation: &'static str,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<EngineFailure> + Send + 'static,
{
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(work)).await {
        Ok(result) => result,
        Err(join_error) => Err(E::from(EngineFailure::new(engine, operation, join_error))),
    }
}

/// Opens an engine on the blocking pool.
pub(crate) async fn run_open<T: Send + 'static>(
    open: impl FnOnce() -> Result<T, OpenError> + Send + 'static,
) -> Result<T, OpenError> {
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(open)).await {
        Ok(result) => result,
        Err(join_error) => Err(OpenError::Engine {
            path: std::path::PathBuf::from("<engine thread>"),
            source: Box::new(join_error),
        }),
    }
}
