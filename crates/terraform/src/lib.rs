//! The Terraform bridge. `generate` writes a service's stable AWS infrastructure as a
//! Terraform module (`main.tf`, `variables.tf`, `outputs.tf`) in `terraform fmt`'s
//! shape, named as Skiff's AWS provider names things and tagged with Skiff's logical
//! ids; what belongs to a release (launch templates, auto scaling groups, target groups,
//! weights) stays Skiff's. `hcl` is the small writer it uses. `adopt` reads a Terraform
//! state and says which resources are a Skiff service's.

pub mod adopt;
pub mod generate;
pub mod hcl;

pub use generate::{Declared, Generated, generate};
