//! The privacy rules that need more than SQL: keyed hashing of who viewed, and
//! the pseudonyms and references that stand in for them in results.
//!
//! Which label a row gets (identity or pseudonym) is decided in one place, the
//! SQL function `audience_internal.labelled` (sql/labels.sql); this module
//! only computes.

pub mod identity;
pub mod keys;
pub mod pseudonym;
pub mod requester;
pub mod token;
mod words;
