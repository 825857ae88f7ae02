//! Reading a spec file the user named: NOT_FOUND with what to do when it is missing,
//! SPEC_INVALID with every problem when it does not validate.

use std::path::Path;

use skiff_sdk::{Code, Envelope, Safety};
use skiff_spec::Spec;

use crate::context::Context;
use crate::error::{Error, Result};

/// Reads and parses a spec file: the name it is shown by, and the spec.
pub async fn load(ctx: &Context, file: &Path) -> Result<(String, Spec)> {
    let (shown, bytes) = read(ctx, file)?;
    let spec = skiff_spec::parse(&shown, &bytes).map_err(|e| crate::error::spec(&shown, &e))?;
    let spec = crate::plugin::apply_addons(ctx, &shown, spec).await?;
    Ok((shown, spec))
}

/// A spec file's name as shown and its bytes.
pub fn read(ctx: &Context, file: &Path) -> Result<(String, Vec<u8>)> {
    let shown = file.display().to_string();
    let path = ctx.cwd.join(file);
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::from(if e.kind() == std::io::ErrorKind::NotFound {
            Envelope::failure(Code::NotFound, format!("no spec at {shown}"))
                .fact(format!("{} does not exist", path.display()))
                .action("init", "skiff init service NAME", false, Safety::ReadOnly, 0.6)
                .action("validate-other", "skiff validate -f PATH/skiff.yaml", false, Safety::ReadOnly, 0.4)
        } else {
            Envelope::failure(Code::IoError, format!("cannot read {shown}")).fact(format!("{}: {e}", path.display()))
        })
    })?;
    Ok((shown, bytes))
}

/// The spec as it is compiled for environment `env` (`--env`, `--to`): its
/// `environment` set to it, so compiling applies that environment's overlay. Without
/// `env`, the spec as written (its own environment's overlay applies). An environment
/// the spec's `environments:` does not name, when it names some, is refused: it is
/// more likely a typo than an environment meant to run with the base values.
pub(crate) fn for_environment(mut spec: Spec, env: Option<&str>) -> Result<Spec> {
    let Some(env) = env else { return Ok(spec) };
    let label = env.parse::<skiff_spec::values::DnsLabel>().map_err(|e| {
        Error::from(
            Envelope::failure(Code::Usage, format!("{env:?} is not an environment name"))
                .fact(format!("expected {}", e.0))
                .action("help", "skiff --help", false, Safety::ReadOnly, 0.5),
        )
    })?;
    let known: Vec<&str> = spec.environments.keys().map(|k| k.as_str()).collect();
    if !known.is_empty() && !known.contains(&env) && spec.environment.as_ref().is_none_or(|own| own.as_str() != env) {
        return Err(Envelope::failure(Code::Usage, format!("the spec has no environment {env:?}"))
            .fact(format!("its `environments:` name {}", known.join(", ")))
            .fact(format!("add `environments: {{{env}: {{}}}}` to run it there with the spec's own values"))
            .action("help", "skiff --help", false, Safety::ReadOnly, 0.5)
            .into());
    }
    spec.environment = Some(label);
    Ok(spec)
}
