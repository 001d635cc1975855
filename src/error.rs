//! The errors the extension raises from Rust, each with its SQLSTATE.
//!
//! Messages name the argument that was wrong and never echo its value: the
//! value may be an identity or a key the caller is not entitled to see in a
//! log line.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudienceError {
    /// An argument is present but not acceptable (22023).
    InvalidArgument { argument: String, reason: &'static str },
    /// A text argument is longer than the product allows (22001).
    TooLong { argument: String, max_chars: usize },
    /// A key handed to the keyed hashing functions is not a key this
    /// extension made (22023). Only reachable by calling internals directly.
    InvalidKey { argument: String },
    /// A request token that does not prove who the requester is (28000).
    InvalidToken { reason: &'static str },
    /// Something the operator must set up first is missing (55000).
    NotConfigured { what: &'static str },
}

impl AudienceError {
    /// The SQLSTATE, as PostgreSQL's code and as its five characters.
    fn codes(&self) -> (PgSqlErrorCode, &'static str) {
        match self {
            AudienceError::InvalidArgument { .. } | AudienceError::InvalidKey { .. } => {
                (PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "22023")
            }
            AudienceError::TooLong { .. } => (PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION, "22001"),
            AudienceError::InvalidToken { .. } => (PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION, "28000"),
            AudienceError::NotConfigured { .. } => (PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "55000"),
        }
    }

    pub fn sqlstate(&self) -> PgSqlErrorCode {
        self.codes().0
    }

    /// The SQLSTATE as text, for a problem returned to SQL as data.
    pub fn code(&self) -> &'static str {
        self.codes().1
    }

    pub fn invalid(argument: &str, reason: &'static str) -> Self {
        AudienceError::InvalidArgument { argument: argument.to_string(), reason }
    }

    /// Raises the error in the current transaction; never returns.
    pub fn raise(self) -> ! {
        ErrorReport::new(self.sqlstate(), self.to_string(), "pg_audience")
            .report(PgLogLevel::ERROR);
        unreachable!("ERROR-level reports do not return")
    }
}

impl fmt::Display for AudienceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudienceError::InvalidArgument { argument, reason } => {
                write!(f, "invalid argument \"{argument}\": {reason}")
            }
            AudienceError::TooLong { argument, max_chars } => {
                write!(f, "argument \"{argument}\" is too long (at most {max_chars} characters)")
            }
            AudienceError::InvalidKey { argument } => {
                write!(f, "argument \"{argument}\" is not a pg_audience key")
            }
            AudienceError::InvalidToken { reason } => write!(f, "invalid argument \"token\": {reason}"),
            AudienceError::NotConfigured { what } => write!(f, "{what}"),
        }
    }
}

/// Unwraps a result inside a `#[pg_extern]`, raising the error with its SQLSTATE.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, AudienceError> {
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.raise(),
        }
    }
}
