//! `skiff import kube PATH… [--out FILE|DIR] [--force]`: Kubernetes manifests into
//! skiff.yaml specs (one per Deployment) with the loss report of every input path
//! (`skiff_kube`). Writes nothing when a target exists (unless `--force`) or when
//! nothing could be imported; refused objects are reported, the rest still imported.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use skiff_kube::{Class, Entry, ReadError};
use skiff_sdk::{Answer, Code, Envelope, Safety};

use crate::context::Context;
use crate::error::{Error, Result, plural};

fn read_error(e: &ReadError) -> Error {
    match e {
        ReadError::Io { path, why } => Envelope::failure(Code::NotFound, format!("cannot read {path}"))
            .fact(why.clone())
            .fact("paths are read relative to the working directory")
            .into(),
        ReadError::Syntax { file, at, message, hint } => {
            Envelope::failure(Code::SpecInvalid, format!("{file}:{at}: {message}")).fact(hint.clone()).into()
        }
        other => Envelope::failure(Code::Usage, other.to_string()).into(),
    }
}

/// Groups of report entries sharing object, class and note, with their common path.
fn grouped(report: &[Entry]) -> Vec<(String, Class, String, String, usize)> {
    let mut groups: BTreeMap<(String, Class, String), Vec<&str>> = BTreeMap::new();
    for e in report {
        groups.entry((e.object.clone(), e.class, e.note.clone())).or_default().push(&e.path);
    }
    let mut out: Vec<(String, Class, String, String, usize)> = groups
        .into_iter()
        .map(|((object, class, note), paths)| {
            let common = common_prefix(&paths);
            (object, class, common, note, paths.len())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    out
}

/// The longest path prefix ending at a segment boundary.
fn common_prefix(paths: &[&str]) -> String {
    let Some(first) = paths.first() else { return String::new() };
    let mut end = first.len();
    for p in &paths[1..] {
        end = end.min(first.bytes().zip(p.bytes()).take_while(|(a, b)| a == b).count());
    }
    let mut prefix = &first[..end];
    if paths.len() > 1 || end < first.len() {
        // Back up to a whole segment.
        while !prefix.is_empty() && !paths.iter().all(|p| skiff_kube::report::covers(prefix, p)) {
            let cut = prefix.rfind(['.', '[']).unwrap_or(0);
            prefix = &prefix[..cut];
        }
    }
    if prefix.is_empty() { format!("{first} and others") } else { prefix.to_owned() }
}

fn class_name(c: Class) -> &'static str {
    match c {
        Class::Mapped => "mapped",
        Class::Warned => "warned",
        Class::Unsupported => "unsupported",
    }
}

/// Where each spec goes: `out` itself for one; `out/<service>.yaml` for several.
fn targets(ctx: &Context, out: &Path, services: &[String]) -> Result<Vec<PathBuf>> {
    let as_dir = out.as_os_str().to_string_lossy().ends_with('/');
    let out = ctx.cwd.join(out);
    if services.len() == 1 && !as_dir && !out.is_dir() {
        return Ok(vec![out]);
    }
    if out.is_file() {
        return Err(Envelope::failure(
            Code::Usage,
            format!("{} workloads to write, and --out {} is a file", services.len(), out.display()),
        )
        .fact("several specs go into a directory, one `<service>.yaml` each")
        .action("dir", "skiff import kube PATH --out specs/", true, Safety::Reversible, 0.7)
        .into());
    }
    Ok(services.iter().map(|s| out.join(format!("{s}.yaml"))).collect())
}

/// `skiff import kube`.
pub(crate) fn kube(ctx: &Context, paths: &[PathBuf], out: &Path, force: bool) -> Result<Answer> {
    let absolute: Vec<PathBuf> = paths.iter().map(|p| ctx.cwd.join(p)).collect();
    let docs = skiff_kube::read(&absolute).map_err(|e| read_error(&e))?;
    let imported = skiff_kube::import(&docs);
    let counts = imported.counts();
    let n = |c: Class| counts.get(&c).copied().unwrap_or(0);
    let services: Vec<String> = imported.specs.iter().map(|s| s.service.clone()).collect();
    if imported.specs.is_empty() {
        let mut env = Envelope::failure(
            Code::SpecInvalid,
            format!("nothing to import: no Deployment among {} could migrate", plural(docs.len(), "object")),
        );
        for r in &imported.refused {
            env = env.fact(format!("{} refused ({}): {}", r.object, r.at, r.why));
        }
        return Err(env.data(serde_json::json!({"refused": imported.refused, "report": imported.report})).into());
    }
    let files = targets(ctx, out, &services)?;
    if !force && let Some(existing) = files.iter().find(|f| f.exists()) {
        return Err(Envelope::failure(
            Code::AlreadyExists,
            format!("{} exists; nothing was written", existing.display()),
        )
        .fact("importing again would overwrite an edited spec")
        .action("force", "skiff import kube PATH --out FILE --force", true, Safety::Reversible, 0.5)
        .into());
    }
    for (spec, file) in imported.specs.iter().zip(&files) {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
        }
        std::fs::write(file, &spec.yaml).map_err(|e| io(file, &e))?;
    }
    let shown = |f: &Path| f.strip_prefix(&ctx.cwd).unwrap_or(f).display().to_string();
    let mut env = Envelope::ok(format!(
        "imported {} from {}: {} paths mapped, {} warned, {} unsupported; {} refused",
        plural(imported.specs.len(), "workload"),
        plural(docs.len(), "object"),
        n(Class::Mapped),
        n(Class::Warned),
        n(Class::Unsupported),
        plural(imported.refused.len(), "object")
    ));
    for (spec, file) in imported.specs.iter().zip(&files) {
        env = env.fact(format!("wrote {} ({})", shown(file), spec.from.replace(&ctx.cwd.display().to_string(), ".")));
    }
    for r in &imported.refused {
        env = env.fact(format!("refused {}: {}", r.object, r.why));
    }
    let mut commands: Vec<&String> = imported.specs.iter().flat_map(|s| s.secret_commands.iter()).collect();
    commands.sort();
    commands.dedup();
    for (i, file) in files.iter().enumerate() {
        env = env.action(
            &format!("validate-{}", i + 1),
            format!("skiff validate -f {}", shown(file)),
            false,
            Safety::ReadOnly,
            0.8,
        );
    }
    for (i, c) in commands.iter().enumerate() {
        env = env.action(&format!("secret-{}", i + 1), (*c).clone(), true, Safety::Reversible, 0.6);
    }
    let mut body = String::new();
    for (spec, file) in imported.specs.iter().zip(&files) {
        let _ = writeln!(body, "✓ {} → {}", spec.from.replace(&ctx.cwd.display().to_string(), "."), shown(file));
    }
    for r in &imported.refused {
        let _ = writeln!(body, "✗ {} refused: {}", r.object, r.why);
    }
    let _ = writeln!(
        body,
        "\nLoss report ({} paths: {} mapped, {} warned, {} unsupported)",
        imported.report.len(),
        n(Class::Mapped),
        n(Class::Warned),
        n(Class::Unsupported)
    );
    let _ = writeln!(body, "{:<12} {:<28} {:<58} why / where", "class", "object", "path (count)");
    for (object, class, path, note, count) in grouped(&imported.report) {
        if class == Class::Mapped {
            continue;
        }
        let _ = writeln!(body, "{:<12} {:<28} {:<58} {note}", class_name(class), object, format!("{path} ({count})"));
    }
    let _ = writeln!(body, "(mapped paths: `--format json` lists every path)");
    let data = serde_json::json!({
        "specs": imported.specs.iter().zip(&files).map(|(s, f)| serde_json::json!({"service": s.service, "file": shown(f), "from": s.from})).collect::<Vec<_>>(),
        "refused": imported.refused,
        "counts": {"mapped": n(Class::Mapped), "warned": n(Class::Warned), "unsupported": n(Class::Unsupported)},
        "report": imported.report,
    });
    Ok(Answer::from(env.data(data)).body(body).body_replaces_facts())
}

fn io(path: &Path, e: &std::io::Error) -> Error {
    Envelope::failure(Code::IoError, format!("cannot write {}", path.display())).fact(e.to_string()).into()
}
