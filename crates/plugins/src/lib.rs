//! The plugin host: [`Catalog::discover`] reads the manifests under the plugins
//! directory; a [`Host`] per plugin verifies the executable's sha256, starts it with
//! the handshake of `skiff-plugin`, talks gRPC over its Unix socket, and stops it when
//! the host goes away. [`PluginStep`] makes a plugin's step kind an ordinary
//! [`skiff_sagaapi::Step`] for the saga engine.
//!
//! Failure isolation is this crate's job: a plugin that crashes, answers garbage or
//! fails its handshake ends the call with `PLUGIN_FAILED`; one that does not answer
//! within its deadline is stopped and the call ends with `DEADLINE_EXCEEDED`; an
//! executable whose digest does not match is never started (`DIGEST_MISMATCH`). None of
//! it panics or blocks the engine.
#![warn(missing_docs)]

mod catalog;
mod host;
mod step;

pub use catalog::{Broken, Catalog, Installed, sha256_file};
pub use host::Host;
pub use step::PluginStep;

use skiff_sagaapi::{StepCode, StepError};

/// Why a plugin could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct PluginError {
    /// `PLUGIN_FAILED`, `DEADLINE_EXCEEDED`, `DIGEST_MISMATCH`, `SPEC_INVALID`, `NOT_FOUND` …
    pub code: StepCode,
    /// What happened and what to do.
    pub message: String,
    /// Observations (the plugin's last stderr lines, its exit status).
    pub facts: Vec<String>,
}

impl PluginError {
    fn new(code: StepCode, message: impl Into<String>) -> Self {
        PluginError { code, message: message.into(), facts: Vec::new() }
    }

    fn facts(mut self, facts: impl IntoIterator<Item = String>) -> Self {
        self.facts.extend(facts);
        self
    }

    /// As a step's terminal failure.
    pub fn into_step_error(self) -> StepError {
        let mut e = StepError::terminal(self.code, self.message);
        e.facts = self.facts;
        e
    }
}
