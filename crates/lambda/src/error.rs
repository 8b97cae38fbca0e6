//! The Lambda glue's error type: a configuration error, or the engine's own error.

/// Errors of the Lambda glue.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// A required environment variable is missing or malformed: the deployment is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] tidemark_core::Error),
    /// A restore request was refused or failed to start (the API's checks, shared with the console event).
    #[error(transparent)]
    Api(#[from] tidemark_api::ApiError),
}

impl LambdaError {
    /// True when a retry may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            LambdaError::Config(_) => false,
            LambdaError::Engine(e) => e.is_transient(),
            LambdaError::Api(e) => e.is_transient(),
        }
    }
}
