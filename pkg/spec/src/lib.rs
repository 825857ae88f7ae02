//! The `skiff.yaml` service spec: its types, a strict parser that reports every
//! problem with file, line:column, field path, expectation and fix, and its JSON Schema.
//! This crate does no I/O; callers hand it bytes.
#![warn(missing_docs)]

mod error;
mod parse;
mod types;
mod validate;
pub mod values;
pub mod yaml;

pub use error::{Diagnostic, FieldPath, Segment, SpecError};
pub use parse::{from_yaml, parse};
pub use types::*;
pub use validate::{MAX_INSTANCES, PLACEHOLDERS, POSTGRES_VERSIONS};

/// The JSON Schema of [`Spec`], as `skiff schema` prints it.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<Spec>();
    schema.to_value()
}
