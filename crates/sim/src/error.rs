//! The simulator's error type: one enum, every variant classed as transient or permanent.
//!
//! Rules: public functions return [`SimError`]; a scenario problem names the file and the field
//! (as a dotted path such as `fleet.max_concurrency`) so an operator can fix it without reading
//! the code; nothing is downgraded to a panic.

use std::path::PathBuf;

/// Everything that can go wrong when loading or running a scenario.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The scenario is not valid TOML, or a field has the wrong type, is missing or is unknown.
    #[error("scenario {origin}: field `{field}`: {message}")]
    Parse {
        /// The file (or `<string>`) the scenario came from.
        origin: String,
        /// The dotted path of the offending field (`.` for the document itself).
        field: String,
        /// What is wrong with it, with the line when known.
        message: String,
    },
    /// A field parsed but its value is out of range or inconsistent with another field.
    #[error("scenario {origin}: field `{field}`: {message}")]
    Invalid {
        /// The file (or `<string>`) the scenario came from.
        origin: String,
        /// The dotted path of the offending field.
        field: String,
        /// Why the value is not acceptable.
        message: String,
    },
}

impl SimError {
    /// True when trying again unchanged may succeed (a flaky read); a bad scenario never will.
    pub fn is_transient(&self) -> bool {
        match self {
            SimError::Read { source, .. } => {
                matches!(source.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
            }
            SimError::Parse { .. } | SimError::Invalid { .. } => false,
        }
    }

    /// The dotted path of the field at fault, for scenario errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            SimError::Parse { field, .. } | SimError::Invalid { field, .. } => Some(field),
            SimError::Read { .. } => None,
        }
    }
}
