//! `skiff terraform generate [-f skiff.yaml] --out DIR [--force]`: the service's
//! stable AWS shape as a Terraform module (`skiff_terraform::generate`), written only
//! where it changes nothing by surprise: an existing file with other content needs
//! `--force`. `skiff terraform apply --module DIR`: the executor saga
//! (`skiff_steps::terraform`) for a module and its variables, stored in the ledger
//! before anything runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use skiff_sdk::{Answer, Code, Envelope, Safety};

use crate::context::Context;
use crate::error::{Error, Result, plural};

fn io(path: &Path, e: &std::io::Error) -> Error {
    Envelope::failure(Code::IoError, format!("cannot write {}", path.display())).fact(e.to_string()).into()
}

/// `skiff terraform generate`.
pub(crate) async fn generate(ctx: &Context, file: &Path, out: &Path, force: bool) -> Result<Answer> {
    let (shown, spec) = crate::spec::load(ctx, file).await?;
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

/// What `skiff terraform apply` was asked.
pub(crate) struct ApplyArgs<'a> {
    pub(crate) module: &'a Path,
    pub(crate) var_files: &'a [PathBuf],
    pub(crate) vars: &'a [(String, String)],
    pub(crate) workspace: Option<&'a str>,
    pub(crate) environment: &'a str,
    pub(crate) dry_run: bool,
}

fn usage(summary: String, fact: &str) -> Error {
    Envelope::failure(Code::Usage, summary)
        .fact(fact.to_owned())
        .action("example", "skiff terraform apply --module infra/ --dry-run", false, Safety::ReadOnly, 0.5)
        .into()
}

/// The module's files, by path relative to it: `*.tf`, `*.tf.json` and what they read
/// (anything but Terraform's own working files, state and variables).
fn module_files(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let skip = name.starts_with('.')
                || name.starts_with("terraform.tfstate")
                || name.ends_with(".tfvars")
                || name.ends_with(".tfvars.json")
                || name.ends_with(".tfplan");
            if skip {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                let rel = path.strip_prefix(root).unwrap_or(&path).display().to_string();
                out.insert(rel, std::fs::read(&path)?);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out).map_err(|e| {
        Error::from(
            Envelope::failure(
                if e.kind() == std::io::ErrorKind::NotFound { Code::NotFound } else { Code::IoError },
                format!("cannot read the module {}", dir.display()),
            )
            .fact(e.to_string()),
        )
    })?;
    if !out.keys().any(|k| k.ends_with(".tf") || k.ends_with(".tf.json")) {
        return Err(usage(
            format!("{} holds no .tf file", dir.display()),
            "--module names a directory of Terraform configuration",
        ));
    }
    Ok(out)
}

/// The variables: each `--var-file` (JSON) in order, then each `--var K=V` (a JSON value,
/// else a string), as canonical JSON with sorted keys.
fn variables(ctx: &Context, files: &[PathBuf], vars: &[(String, String)]) -> Result<Vec<u8>> {
    let mut all = serde_json::Map::new();
    for f in files {
        let shown = f.display().to_string();
        let text = std::fs::read_to_string(ctx.cwd.join(f)).map_err(|e| {
            Error::from(Envelope::failure(Code::NotFound, format!("cannot read {shown}")).fact(e.to_string()))
        })?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::from(
                Envelope::failure(Code::SpecInvalid, format!("{shown}:{}:{}: not JSON: {e}", e.line(), e.column()))
                    .fact("--var-file reads JSON variables (terraform.tfvars.json's format)"),
            )
        })?;
        let serde_json::Value::Object(m) = v else {
            return Err(Envelope::failure(Code::SpecInvalid, format!("{shown}: variables are a JSON object")).into());
        };
        all.extend(m);
    }
    for (k, v) in vars {
        all.insert(k.clone(), serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.clone())));
    }
    let sorted: BTreeMap<String, serde_json::Value> = all.into_iter().collect();
    Ok(serde_json::to_vec_pretty(&sorted).unwrap_or_default())
}

/// The user policies beside the working directory: `policies/*.rego` and `limits.json`.
fn policies(ctx: &Context) -> Result<BTreeMap<String, String>> {
    let dir = ctx.cwd.join(skiff_policy::POLICY_DIR);
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(out) };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rego") || name == skiff_policy::LIMITS_FILE {
            let text = std::fs::read_to_string(e.path()).map_err(|err| {
                Error::from(
                    Envelope::failure(Code::IoError, format!("cannot read policies/{name}")).fact(err.to_string()),
                )
            })?;
            out.insert(name, text);
        }
    }
    Ok(out)
}

/// `skiff terraform apply`: the `terraform-apply` saga for a module and its variables.
pub(crate) async fn apply(ctx: &Context, a: &ApplyArgs<'_>) -> Result<Answer> {
    let module_dir = ctx.cwd.join(a.module);
    let files = module_files(&module_dir)?;
    let vars = variables(ctx, a.var_files, a.vars)?;
    let workspace = a
        .workspace
        .map(str::to_owned)
        .or_else(|| module_dir.canonicalize().ok()?.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "default".to_owned());
    skiff_state::keys::check_name("workspace", &workspace)
        .map_err(|e| usage(e.to_string(), "name it with --workspace NAME"))?;
    let policies = policies(ctx)?;
    let approval = a.environment == "production";
    let bin = ctx.setting(&skiff_settings::TERRAFORM).unwrap_or_else(|| "terraform".to_owned());
    let (_, ledger) = ctx.ledger()?;
    let root = ctx.cwd.join(".skiff/terraform").join(&workspace);
    let base = skiff_policy::PlanInput {
        action: "terraform-apply".to_owned(),
        service: workspace.clone(),
        environment: a.environment.to_owned(),
        provider: "terraform".to_owned(),
        actor: skiff_policy::Actor { name: ctx.actor(), roles: ctx.roles() },
        ..Default::default()
    };
    let digest = |b: &[u8]| skiff_ir::canonical::sha256_hex(b);
    let mut config = skiff_state::docs::TerraformConfig {
        files: files.iter().map(|(k, v)| (k.clone(), digest(v))).collect(),
        vars: digest(&vars),
    };
    let plan = skiff_steps::terraform::ExecPlan {
        workspace: workspace.clone(),
        config: config.clone(),
        root: root.display().to_string(),
        bin,
        policy_input: base,
        policies,
    };
    let graph = skiff_steps::terraform::exec_graph(&plan, approval).map_err(|e| crate::error::saga(&e))?;
    let mut command = format!("skiff terraform apply --module {} --workspace {workspace}", a.module.display());
    for f in a.var_files {
        command.push_str(&format!(" --var-file {}", f.display()));
    }
    for (k, v) in a.vars {
        command.push_str(&format!(" --var '{k}={v}'"));
    }
    command.push_str(&format!(" --environment {}", a.environment));
    if a.dry_run {
        let what = format!("Terraform execution of {workspace}");
        return crate::saga::planned(ctx, &graph, Some(&workspace), &what, command + " --yes").await;
    }
    crate::deploy::check_free(ctx, &ledger, &workspace).await?;
    ctx.confirm(&format!("plan and apply {workspace}"), &command)?;
    let actor = ctx.actor();
    ledger.init(&actor).await.map_err(|e| crate::error::state(&e))?;
    // The configuration goes into the ledger first: every step reads it from there.
    for bytes in files.values() {
        ledger.put_blob(bytes.clone()).await.map_err(|e| crate::error::state(&e))?;
    }
    config.vars = ledger.put_blob(vars).await.map_err(|e| crate::error::state(&e))?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    let l = crate::pipeline::Launch {
        graph,
        service: Some(workspace.clone()),
        scope: Some(skiff_saga::ServiceScope::service(workspace.clone())),
        key: None,
        reason: format!("terraform apply of {workspace}"),
        params: serde_json::json!({"workspace": workspace, "vars": config.vars, "files": config.files.len()}),
        audit: ("terraform.apply".to_owned(), serde_json::json!({"workspace": workspace, "vars": config.vars})),
        audit_existing: false,
        release: String::new(),
    };
    Ok(crate::pipeline::launch(ctx, &engine, &ledger, l).await?.answer())
}

/// `terraform plan -detailed-exitcode` of the workspace's last complete configuration on
/// its newest state, in a scratch directory: `None` when the workspace was never applied,
/// else the planned changes as differences (empty: in sync).
pub(crate) async fn drift(
    ctx: &Context,
    ledger: &skiff_state::Ledger,
    workspace: &str,
) -> Result<Option<Vec<skiff_state::docs::Difference>>> {
    let state = |e: skiff_state::StateError| crate::error::state(&e);
    let current: Option<skiff_state::docs::TerraformCurrent> =
        ledger.read(&skiff_state::keys::terraform_current(workspace)).await.map_err(state)?;
    let Some((config, op)) = current.as_ref().and_then(|c| c.good.clone()) else { return Ok(None) };
    let mut files = BTreeMap::new();
    for (name, digest) in &config.files {
        files.insert(name.clone(), ledger.get_blob(digest).await.map_err(state)?);
    }
    let vars = ledger.get_blob(&config.vars).await.map_err(state)?;
    let snapshot = match current.as_ref().and_then(|c| c.state.clone()) {
        Some(d) => Some(ledger.get_blob(&d).await.map_err(state)?),
        None => None,
    };
    let dir = ctx.cwd.join(".skiff/terraform").join(workspace).join(format!("drift-{}", ledger.clock().now_ms()));
    let bin = ctx.setting(&skiff_settings::TERRAFORM).unwrap_or_else(|| "terraform".to_owned());
    let failed =
        |e: String| Error::from(Envelope::failure(Code::ProviderError, format!("cannot plan {workspace}: {e}")));
    let result = async {
        let wd = skiff_terraform::exec::Workdir::prepare(&dir, Path::new(&bin), &files, &vars, snapshot.as_deref())
            .map_err(|e| failed(e.to_string()))?;
        let mut log = String::new();
        wd.init(&mut log).await.map_err(|e| failed(e.to_string()))?;
        if !wd.plan(&mut log).await.map_err(|e| failed(e.to_string()))? {
            return Ok(Vec::new());
        }
        let plan = wd.show_plan(&mut log).await.map_err(|e| failed(e.to_string()))?;
        let repair =
            format!("re-apply the last configuration ({op}): `terraform plan` in its module shows the same changes");
        let out = plan["resource_changes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|c| {
                c["change"]["actions"] != serde_json::json!(["no-op"])
                    && c["change"]["actions"] != serde_json::json!(["read"])
            })
            .map(|c| skiff_state::docs::Difference {
                path: format!("terraform.{}", c["address"].as_str().unwrap_or("?")),
                desired: c["change"]["after"].clone(),
                actual: c["change"]["before"].clone(),
                repair: repair.clone(),
                severity: skiff_pluginapi::Severity::Medium,
                fix: None,
                terraform_owned: c["address"].as_str().map(str::to_owned),
            })
            .collect();
        Ok(out)
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result.map(Some)
}

/// `skiff terraform drift [--workspace W]`: the workspace's drift as Terraform sees it.
pub(crate) async fn drift_answer(ctx: &Context, workspace: &str) -> Result<Answer> {
    let (_, ledger) = ctx.ledger()?;
    let Some(differences) = drift(ctx, &ledger, workspace).await? else {
        return Err(Envelope::failure(Code::NotFound, format!("workspace {workspace} was never applied by Skiff"))
            .action("apply", "skiff terraform apply --module DIR --yes", true, Safety::Reversible, 0.6)
            .into());
    };
    let env = if differences.is_empty() {
        Envelope::ok(format!("{workspace} IN_SYNC: `terraform plan` of the last applied configuration changes nothing"))
    } else {
        let mut env = Envelope::failure(
            Code::Drifted,
            format!("{workspace} DRIFTED: `terraform plan` would change {}", plural(differences.len(), "resource")),
        );
        for d in &differences {
            env = env.fact(format!("{}: {}", d.path, d.repair));
        }
        env
    };
    Ok(env.data(serde_json::json!({"workspace": workspace, "differences": differences})).into())
}
