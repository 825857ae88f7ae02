//! The Terraform bridge. `generate` (feature `generate`) writes a service's stable AWS
//! infrastructure as a Terraform module (`main.tf`, `variables.tf`, `outputs.tf`) in
//! `terraform fmt`'s shape, named as Skiff's AWS provider names things and tagged with
//! Skiff's logical ids; what belongs to a release (launch templates, auto scaling groups,
//! target groups, weights) stays Skiff's. `hcl` is the small writer it uses. `adopt`
//! (feature `generate`) reads a Terraform state and says which resources are a Skiff
//! service's. `exec` runs the real `terraform` for one execution in a working directory
//! of its own, for the executor saga in `skiff-steps`.

#[cfg(feature = "generate")]
pub mod adopt;
pub mod exec;
#[cfg(feature = "generate")]
pub mod generate;
pub mod hcl;

#[cfg(feature = "generate")]
pub use generate::{Declared, Generated, generate};
