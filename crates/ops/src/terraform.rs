//! `skiff terraform generate [-f skiff.yaml] --out DIR [--force]`: the service's
//! stable AWS shape as a Terraform module (`skiff_terraform::generate`), written only
//! where it changes nothing by surprise: an existing file with other content needs
//! `--force`.

use std::fmt::Write as _;
use std::path::Path;

use skiff_sdk::{Answer, Code, Envelope, Safety};

use crate::context::Context;
use crate::error::{Error, Result, plural};

fn io(path: &Path, e: &std::io::Error) -> Error {
    Envelope::failure(Code::IoError, format!("cannot write {}", path.display())).fact(e.to_string()).into()
}

/// `skiff terraform generate`.
pub(crate) fn generate(ctx: &Context, file: &Path, out: &Path, force: bool) -> Result<Answer> {
    let (shown, spec) = crate::spec::load(ctx, file)?;
    let ir = skiff_ir::compile(&spec);
    let generated = skiff_terraform::generate(&ir);
    let dir = ctx.cwd.join(out);
    let shown_dir = out.display().to_string();
    if dir.is_file() {
        return Err(Envelope::failure(Code::Usage, format!("--out {shown_dir} is a file; the module is a directory"))
            .action("dir", format!("skiff terraform generate -f {shown} --out infra/"), true, Safety::Reversible, 0.6)
            .into());
    }
    let changed: Vec<&String> = generated
        .files
        .iter()
        .filter(|(name, text)| std::fs::read_to_string(dir.join(name)).is_ok_and(|old| &old != *text))
        .map(|(name, _)| name)
        .collect();
    if !changed.is_empty() && !force {
        return Err(Envelope::failure(
            Code::AlreadyExists,
            format!(
                "{shown_dir} has {} with other content; nothing was written",
                changed.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )
        .fact("a generated file may have been edited by hand: compare before replacing it")
        .action(
            "force",
            format!("skiff terraform generate -f {shown} --out {shown_dir} --force"),
            true,
            Safety::Reversible,
            0.5,
        )
        .into());
    }
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, &e))?;
    for (name, text) in &generated.files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| io(&path, &e))?;
    }
    let mut env = Envelope::ok(format!(
        "wrote a Terraform module for {} to {shown_dir}: {} in {}",
        ir.service,
        plural(generated.resources.len(), "resource"),
        plural(generated.files.len(), "file")
    ))
    .fact("each release's launch template, auto scaling group, target group and the listener's weights stay Skiff's")
    .fact("set `state_bucket` (and `state_prefix`) to Skiff's state bucket, which instances read releases from");
    if ir.database.is_some() {
        env = env.fact("set `database_password` (a sensitive variable); Skiff rotates it afterwards");
    }
    env = env.action("init", format!("terraform -chdir={shown_dir} init"), false, Safety::ReadOnly, 0.7).action(
        "plan",
        format!("terraform -chdir={shown_dir} plan -out=tfplan"),
        false,
        Safety::ReadOnly,
        0.7,
    );
    let mut body = String::new();
    let _ = writeln!(body, "{:<48} {:<22} name", "address", "skiff logical id");
    for d in &generated.resources {
        let _ = writeln!(body, "{:<48} {:<22} {}", d.address, d.logical_id, d.name);
    }
    let data = serde_json::json!({"service": ir.service, "out": shown_dir, "files": generated.files.keys().collect::<Vec<_>>(), "resources": generated.resources});
    Ok(Answer::from(env.data(data)).body(body))
}
