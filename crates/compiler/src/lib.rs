//! The compiler: spec → IR (via `skiff-ir`) → provider-neutral resource plan, and
//! field-level diffs between IRs and plans. Pure: no I/O, no clock, no randomness,
//! so the same input always gives byte-identical output.
#![warn(missing_docs)]

mod diff;
mod plan;

pub use diff::{Change, Op, PlanDiff, diff_irs, diff_plans, diff_values};
pub use plan::{
    Ingress, KIND, Permission, Resource, ResourcePlan, ResourceSpec, SCHEMA_VERSION, permissions, plan, regional_name,
    replica_name, role_name, secondary_regions, zones_in,
};

use skiff_ir::ServiceIr;
use skiff_spec::Spec;

/// A compiled service: its IR and resource plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    /// The IR.
    pub ir: ServiceIr,
    /// The resource plan.
    pub plan: ResourcePlan,
}

/// Compiles a validated spec into its IR and resource plan.
///
/// ```
/// let spec = skiff_spec::parse("skiff.yaml", b"service: hello\nartifact: {path: hello}\nrun: {command: [hello]}\nport: 8080\n").unwrap();
/// let out = skiff_compiler::compile(&spec);
/// assert!(out.plan.get("instance-group/hello").is_some());
/// ```
pub fn compile(spec: &Spec) -> Compiled {
    let ir = skiff_ir::compile(spec);
    let plan = plan(&ir);
    Compiled { ir, plan }
}
