//! `skiff version`.

use skiff_sdk::Envelope;

use crate::Outcome;

pub(super) fn run() -> Outcome {
    let version = env!("CARGO_PKG_VERSION");
    Envelope::ok(format!("skiff {version}"))
        .data(serde_json::json!({
            "version": version,
            "ir_schema_version": skiff_ir::SCHEMA_VERSION,
            "plan_schema_version": skiff_compiler::SCHEMA_VERSION,
            "target": format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
        }))
        .into()
}
