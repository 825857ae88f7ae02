//! Skiff's client SDK: the JSON envelope every command and API answers with, the
//! closed failure taxonomy with its exit codes, and client contexts (which state
//! bucket, provider and server a command talks to), and the gRPC contract with a typed
//! client for skiffd.
#![warn(missing_docs)]

pub mod answer;
pub mod code;
pub mod config;
pub mod envelope;
pub mod grpc;

pub use answer::Answer;
pub use code::Code;
pub use envelope::{Action, Envelope, Risk, RiskLevel, Safety};
