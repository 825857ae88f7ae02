//! `skiff plugin list|validate|explain|install`, and what the rest of ops asks of plugins: the
//! installed catalog (`$SKIFF_PLUGINS`, else `.skiff/plugins`), their step kinds for
//! the engine, the check that a spec's hooks are served, and their doctor checks.

use std::path::PathBuf;
use std::sync::Arc;

use skiff_clock::Clock;
use skiff_plugins::{Catalog, Host, Installed, PluginError};
use skiff_sagaapi::Step;
use skiff_sdk::{Action, Answer, Code, Envelope, Safety};

use crate::context::Context;
use crate::error::{Result, plural};

/// The plugins directory.
pub(crate) fn dir(ctx: &Context) -> PathBuf {
    ctx.setting(&skiff_settings::PLUGINS).map_or_else(|| ctx.cwd.join(".skiff/plugins"), |p| ctx.cwd.join(p))
}

/// The installed plugins, started with what Skiff tells them ([`plugin_env`]).
pub(crate) fn catalog(ctx: &Context) -> Catalog {
    Catalog::discover(&dir(ctx)).with_env(plugin_env(ctx))
}

/// What a plugin is told besides its handshake: `SKIFF_STATE` (the resolved bucket)
/// and, on the local provider, `SKIFF_SECRETS` (its encrypted secret store), so a
/// plugin such as mTLS can keep keys there.
fn plugin_env(ctx: &Context) -> Vec<(String, String)> {
    let Ok((_, resolved)) = ctx.resolve() else { return Vec::new() };
    let mut env =
        vec![(skiff_settings::STATE.name.to_owned(), crate::factory::absolute_state(ctx, &resolved.state.value))];
    if resolved.provider.value == skiff_sdk::config::ProviderKind::Local
        && let Ok(local) = crate::factory::local_dir(ctx)
    {
        env.push((skiff_settings::SECRETS.name.to_owned(), format!("local:{}", local.secrets().display())));
    }
    env
}

/// A host for `p` that starts it as the catalog does.
fn host(catalog: &Catalog, p: &skiff_plugins::Installed, clock: Arc<dyn Clock>) -> Host {
    Host::new(p.clone(), clock).with_env(catalog.env.clone())
}

/// Every installed plugin's step kinds, for an engine's registry.
pub(crate) fn steps(ctx: &Context, clock: &Arc<dyn Clock>) -> Vec<Arc<dyn Step>> {
    catalog(ctx).steps(clock)
}

/// The taxonomy code of a plugin failure.
fn code(e: &PluginError) -> Code {
    skiff_saga::taxonomy(e.code)
}

fn failure(e: PluginError, name: &str) -> crate::error::Error {
    let mut env = Envelope::failure(code(&e), e.message);
    for f in e.facts {
        env = env.fact(f);
    }
    env.action("explain", format!("skiff plugin explain {name}"), false, Safety::ReadOnly, 0.5).into()
}

/// Refuses a spec whose `rollout.hooks` name a step kind no installed plugin serves.
pub(crate) fn check_hooks(ctx: &Context, ir: &skiff_ir::ServiceIr, shown: &str) -> Result<()> {
    if ir.rollout.hooks.is_empty() {
        return Ok(());
    }
    let catalog = catalog(ctx);
    for (i, h) in ir.rollout.hooks.iter().enumerate() {
        if catalog.step_owner(&h.step).is_some() {
            continue;
        }
        let served: Vec<&str> =
            catalog.plugins.iter().flat_map(|p| p.manifest.steps.iter().map(String::as_str)).collect();
        let mut env = Envelope::failure(
            Code::SpecInvalid,
            format!("{shown}: rollout.hooks[{i}].step: no installed plugin serves step kind `{}`", h.step),
        )
        .fact(format!("plugins directory: {}", catalog.dir.display()))
        .fact(if served.is_empty() {
            "no plugin serves any step kind here".to_owned()
        } else {
            format!("step kinds served: {}", served.join(", "))
        });
        for b in &catalog.broken {
            env = env.fact(format!("{} is set aside: {}", b.dir.display(), b.error.message));
        }
        return Err(env
            .fact("nothing was built, started or recorded")
            .action("list", "skiff plugin list", false, Safety::ReadOnly, 0.8)
            .into());
    }
    Ok(())
}

/// `skiff plugin list`: every installed plugin, whether its executable matches its
/// digest, and the directories set aside.
pub(crate) fn list(ctx: &Context) -> Result<Answer> {
    let catalog = catalog(ctx);
    let mut body = String::new();
    let mut rows = Vec::new();
    for p in &catalog.plugins {
        let m = &p.manifest;
        let digest = match p.verify() {
            Ok(()) => "digest ok".to_owned(),
            Err(e) => format!("{}", e.code),
        };
        body.push_str(&format!(
            "{:<16} {:<10} {:<16} {}\n",
            m.plugin,
            m.version,
            digest,
            kinds(&m.steps, &m.checks, &m.addons, &m.recipes)
        ));
        rows.push(serde_json::json!({
            "plugin": m.plugin, "version": m.version, "description": m.description,
            "manifest": p.manifest_path.display().to_string(), "executable": p.executable.display().to_string(),
            "digest": if digest == "digest ok" { "ok" } else { digest.as_str() },
            "steps": m.steps, "checks": m.checks, "addons": m.addons, "recipes": m.recipes, "deadline_ms": m.deadline_ms(),
        }));
    }
    let broken: Vec<_> = catalog
        .broken
        .iter()
        .map(|b| {
            body.push_str(&format!("✗ {} — {}\n", b.dir.display(), b.error.message));
            serde_json::json!({"dir": b.dir.display().to_string(), "code": b.error.code.as_str(), "message": b.error.message})
        })
        .collect();
    let mut env = Envelope::ok(format!(
        "{} installed in {}{}",
        plural(catalog.plugins.len(), "plugin"),
        catalog.dir.display(),
        if broken.is_empty() { String::new() } else { format!(", {} set aside", broken.len()) }
    ))
    .data(serde_json::json!({"dir": catalog.dir.display().to_string(), "plugins": rows, "broken": broken}));
    if catalog.plugins.is_empty() && broken.is_empty() {
        body.push_str(&format!(
            "No plugins. A plugin is a directory under {} holding its plugin.yaml manifest;\n\
             examples/plugin shows one (`skiff plugin explain` describes the format).\n",
            catalog.dir.display()
        ));
    }
    for p in &catalog.plugins {
        env = env.action(
            &format!("validate-{}", p.manifest.plugin),
            format!("skiff plugin validate {}", p.manifest.plugin),
            false,
            Safety::ReadOnly,
            0.4,
        );
    }
    Ok(Answer::from(env).body(body).body_replaces_facts())
}

fn kinds(steps: &[String], checks: &[String], addons: &[String], recipes: &[String]) -> String {
    let mut parts = Vec::new();
    for (what, names) in [("steps", steps), ("checks", checks), ("addons", addons), ("recipes", recipes)] {
        if !names.is_empty() {
            parts.push(format!("{what}: {}", names.join(", ")));
        }
    }
    parts.join("; ")
}

/// A plugin by name, or by the path of its manifest (to validate before installing).
fn find(ctx: &Context, what: &str) -> Result<Installed> {
    let path = ctx.cwd.join(what);
    if what.ends_with(".yaml") || path.is_file() {
        return Installed::load(&path).map_err(|e| failure(e, what));
    }
    let catalog = catalog(ctx);
    if let Some(p) = catalog.get(what) {
        return Ok(p.clone());
    }
    let serves = |p: &&Installed| {
        p.manifest.checks.iter().chain(&p.manifest.addons).chain(&p.manifest.recipes).any(|c| c == what)
    };
    if let Some(p) = catalog.step_owner(what).or_else(|| catalog.plugins.iter().find(serves)) {
        return Ok(p.clone());
    }
    if let Some(b) = catalog.broken.iter().find(|b| b.dir.file_name().is_some_and(|n| n == what)) {
        return Err(failure(b.error.clone(), what));
    }
    let names: Vec<&str> = catalog.plugins.iter().map(|p| p.manifest.plugin.as_str()).collect();
    Err(Envelope::failure(Code::NotFound, format!("no plugin, step kind or check called {what} is installed"))
        .fact(format!("plugins directory: {}", catalog.dir.display()))
        .fact(if names.is_empty() {
            "no plugins are installed".to_owned()
        } else {
            format!("installed: {}", names.join(", "))
        })
        .action("list", "skiff plugin list", false, Safety::ReadOnly, 0.8)
        .into())
}

/// `skiff plugin validate NAME|MANIFEST`: the manifest, the executable's digest, the
/// handshake and the plugin's own description, checked by starting it once.
pub(crate) async fn validate(ctx: &Context, what: &str, clock: Arc<dyn Clock>) -> Result<Answer> {
    let p = find(ctx, what)?;
    let host = Host::new(p.clone(), clock);
    let described = host.describe().await;
    host.stop().await;
    let d = described.map_err(|e| failure(e, what))?;
    let m = &p.manifest;
    Ok(Envelope::ok(format!("plugin {} {} is valid", d.name, d.version))
        .fact(format!(
            "manifest {}: protocol {}, deadline {}ms",
            p.manifest_path.display(),
            m.protocol,
            m.deadline_ms()
        ))
        .fact(format!("executable {} matches sha256 {}", p.executable.display(), m.sha256))
        .fact(format!(
            "it started, completed its handshake and serves {}",
            kinds(&d.steps, &d.checks, &d.addons, &d.recipes)
        ))
        .data(serde_json::json!({
            "plugin": d.name, "version": d.version, "protocol": d.protocol, "steps": d.steps, "checks": d.checks,
            "addons": d.addons, "recipes": d.recipes,
            "manifest": p.manifest_path.display().to_string(), "sha256": m.sha256.as_str(),
        }))
        .action("explain", format!("skiff plugin explain {}", m.plugin), false, Safety::ReadOnly, 0.4)
        .into())
}

/// `skiff plugin explain NAME|KIND`: what a plugin offers and how a spec uses it.
pub(crate) fn explain(ctx: &Context, what: &str) -> Result<Answer> {
    let p = find(ctx, what)?;
    let m = &p.manifest;
    let mut body = format!(
        "plugin {} {}{}\n  manifest    {}\n  executable  {} {}\n  sha256      {}\n  deadline    {}ms per call\n",
        m.plugin,
        m.version,
        m.description.as_deref().map(|d| format!(" — {d}")).unwrap_or_default(),
        p.manifest_path.display(),
        p.executable.display(),
        m.args.join(" "),
        m.sha256,
        m.deadline_ms(),
    );
    for s in &m.steps {
        body.push_str(&format!(
            "\nstep kind {s}\n  runs in every deploy of a spec that names it:\n    rollout:\n      hooks:\n        \
             - {{step: {s}, at: after_promote}}   # or before_traffic; `with:` passes text parameters\n"
        ));
    }
    for c in &m.checks {
        body.push_str(&format!("\ncheck {c}\n  runs in `skiff doctor`; its findings appear beside Skiff's own\n"));
    }
    for r in &m.recipes {
        body.push_str(&format!(
            "\nrecipe {r}\n  writes a skiff.yaml: skiff init plugin {r} NAME [--port PORT] [--dir DIR]\n"
        ));
    }
    for a in &m.addons {
        body.push_str(&format!(
            "\naddon {a}\n  reads a spec that names it and refuses it or adds variables before it is compiled:\n    \
             addons: [{{addon: {a}}}]   # `with:` passes text parameters\n"
        ));
    }
    body.push_str(
        "\nSkiff starts the executable only if its sha256 matches, talks to it over a private Unix\n\
         socket, stops it when it does not answer within the deadline, and fails the step\n\
         (PLUGIN_FAILED) if it crashes or answers garbage; the engine is never affected.\n",
    );
    Ok(Answer::from(
        Envelope::ok(format!("plugin {}: {}", m.plugin, kinds(&m.steps, &m.checks, &m.addons, &m.recipes)))
            .data(serde_json::json!({
                "plugin": m.plugin, "version": m.version, "description": m.description,
                "manifest": p.manifest_path.display().to_string(), "executable": p.executable.display().to_string(),
                "args": m.args, "sha256": m.sha256.as_str(), "deadline_ms": m.deadline_ms(),
                "steps": m.steps, "checks": m.checks, "addons": m.addons, "recipes": m.recipes,
            }))
            .action("validate", format!("skiff plugin validate {}", m.plugin), false, Safety::ReadOnly, 0.5),
    )
    .body(body)
    .body_replaces_facts())
}

/// Every installed plugin's doctor checks as findings; a plugin that cannot run its
/// check is a finding itself.
pub(crate) async fn findings(
    ctx: &Context,
    clock: Arc<dyn Clock>,
    services: &[String],
    state: &str,
) -> Vec<skiff_doctor::Finding> {
    let catalog = catalog(ctx);
    let mut out = Vec::new();
    for b in &catalog.broken {
        out.push(finding(
            Code::SpecInvalid,
            format!("plugin {}", b.dir.display()),
            b.error.message.clone(),
            Vec::new(),
            "skiff plugin list",
        ));
    }
    let context = serde_json::json!({"services": services, "state": state});
    for p in catalog.plugins.iter().filter(|p| !p.manifest.checks.is_empty()) {
        let host = host(&catalog, p, clock.clone());
        for check in &p.manifest.checks {
            let validate = format!("skiff plugin validate {}", p.manifest.plugin);
            match host
                .check(check, context.clone())
                .await
                .map(skiff_plugin::wire::decode::<Vec<skiff_sagaapi::Finding>>)
            {
                Ok(Ok(Ok(found))) => out.extend(found.into_iter().map(|f| {
                    let code = f.code.parse().unwrap_or(Code::Unhealthy);
                    let fix = f.fix.unwrap_or_else(|| validate.clone());
                    finding(code, format!("plugin check {check}"), f.message, f.facts, &fix)
                })),
                Ok(Ok(Err(e))) => out.push(finding(
                    skiff_saga::taxonomy(e.code),
                    format!("plugin check {check}"),
                    e.message,
                    e.facts,
                    &validate,
                )),
                Ok(Err(why)) => out.push(finding(
                    Code::PluginFailed,
                    format!("plugin check {check}"),
                    format!("plugin {} answered garbage: {why}", p.manifest.plugin),
                    Vec::new(),
                    &validate,
                )),
                Err(e) => out.push(finding(code(&e), format!("plugin check {check}"), e.message, e.facts, &validate)),
            }
        }
        host.stop().await;
    }
    out
}

fn finding(code: Code, subject: String, summary: String, facts: Vec<String>, fix: &str) -> skiff_doctor::Finding {
    let mutating = !fix.starts_with("skiff plugin") && fix.starts_with("skiff ");
    let actions = if fix.starts_with("skiff ") {
        vec![Action {
            id: "plugin".to_owned(),
            command: fix.to_owned(),
            mutating,
            safety: Safety::ReadOnly,
            confidence: 0.5,
        }]
    } else {
        Vec::new()
    };
    let mut facts = facts;
    if !fix.starts_with("skiff ") {
        facts.push(format!("fix: {fix}"));
    }
    skiff_doctor::Finding { code, subject, summary, facts, actions }
}

/// The spec with its `addons:` applied: each addon's plugin reads the spec and either
/// refuses it (SPEC_INVALID naming the addon and its problems) or adds environment
/// variables and secret references, which may not replace the spec's own.
pub(crate) async fn apply_addons(ctx: &Context, shown: &str, mut spec: skiff_spec::Spec) -> Result<skiff_spec::Spec> {
    use skiff_spec::values::{EnvName, SecretRef};
    // `network.mtls` is the mTLS plugin's addon, used without naming it.
    let mut uses: Vec<(String, skiff_spec::AddonUse)> =
        spec.addons.iter().enumerate().map(|(i, u)| (format!("{shown}: addons[{i}].addon"), u.clone())).collect();
    if spec.network.as_ref().is_some_and(|n| n.mtls) {
        let addon = MESH_ADDON.parse().map_err(|_| Envelope::failure(Code::Internal, "the mesh addon's name"))?;
        uses.push((format!("{shown}: network.mtls"), skiff_spec::AddonUse { addon, with: Default::default() }));
    }
    if uses.is_empty() {
        return Ok(spec);
    }
    let catalog = catalog(ctx);
    let written = serde_json::to_value(&spec).unwrap_or_default();
    for (at, used) in &uses {
        let name = used.addon.as_str();
        let Some(p) = catalog.addon_owner(name) else {
            let install = if name == MESH_ADDON {
                "the mesh needs the mTLS plugin: `skiff plugin install plugins/mtls/plugin.yaml` (see its README)"
            } else {
                "install the plugin that serves it into the plugins directory"
            };
            return Err(Envelope::failure(
                Code::SpecInvalid,
                format!("{at}: no installed plugin serves addon `{name}`"),
            )
            .fact(install)
            .fact(format!("plugins directory: {}", catalog.dir.display()))
            .fact("nothing was built, started or recorded")
            .action("list", "skiff plugin list", false, Safety::ReadOnly, 0.8)
            .into());
        };
        let host = host(&catalog, p, Arc::new(skiff_clock::SystemClock));
        let answer = host.addon(name, &written, &used.with).await;
        host.stop().await;
        let answer = answer.map_err(|e| failure(e, &p.manifest.plugin))?;
        if let Some(first) = answer.problems.first() {
            let mut env = Envelope::failure(Code::SpecInvalid, format!("{at}: {name} refuses the spec: {first}"));
            for more in &answer.problems[1..] {
                env = env.fact(more.clone());
            }
            return Err(env.fact("nothing was built, started or recorded").into());
        }
        let garbage = |what: String| -> crate::error::Error {
            Envelope::failure(
                Code::PluginFailed,
                format!("addon {name} of plugin {} answered {what}", p.manifest.plugin),
            )
            .into()
        };
        let taken = |k: &str| -> crate::error::Error {
            Envelope::failure(Code::SpecInvalid, format!("{at}: {name} sets {k}, which the spec sets already"))
                .fact("an addon adds variables; it never replaces the spec's own")
                .into()
        };
        for (k, v) in answer.env {
            let var: EnvName = k.parse().map_err(|_| garbage(format!("an invalid variable name `{k}`")))?;
            // Applying again (a recorded spec the addon ran on already) changes nothing.
            if spec.run.env.get(&var) == Some(&v) {
                continue;
            }
            if spec.run.env.contains_key(&var) || spec.secrets.contains_key(&var) {
                return Err(taken(&k));
            }
            spec.run.env.insert(var, v);
        }
        for (k, v) in answer.secrets {
            let var: EnvName = k.parse().map_err(|_| garbage(format!("an invalid variable name `{k}`")))?;
            let reference: SecretRef = v.parse().map_err(|_| garbage(format!("`{v}`, not a secret reference")))?;
            if spec.secrets.get(&var) == Some(&reference) {
                continue;
            }
            if spec.run.env.contains_key(&var) || spec.secrets.contains_key(&var) {
                return Err(taken(&k));
            }
            spec.secrets.insert(var, reference);
        }
        for h in answer.hooks {
            let step = h.step.parse().map_err(|_| garbage(format!("`{}`, not a step kind", h.step)))?;
            let point = serde_json::from_value(serde_json::Value::String(h.at.clone()))
                .map_err(|_| garbage(format!("`{}`, not a hook point", h.at)))?;
            let hook = skiff_spec::Hook { step, at: point, with: h.with };
            let hooks = &mut spec.rollout.get_or_insert_with(Default::default).hooks;
            if !hooks.contains(&hook) {
                hooks.push(hook);
            }
        }
    }
    Ok(spec)
}

/// The addon `network.mtls` stands for.
const MESH_ADDON: &str = "mtls.mesh";

/// The skiff.yaml text of recipe `recipe` (`skiff init plugin RECIPE NAME`), from the
/// plugin that serves it.
pub(crate) async fn recipe(ctx: &Context, recipe: &str, name: &str, port: u16) -> Result<String> {
    let catalog = catalog(ctx);
    let Some(p) = catalog.recipe_owner(recipe) else {
        let served: Vec<&str> =
            catalog.plugins.iter().flat_map(|p| p.manifest.recipes.iter().map(String::as_str)).collect();
        let known = if served.is_empty() {
            "no plugin serves a recipe here".to_owned()
        } else {
            format!("recipes: {}", served.join(", "))
        };
        return Err(Envelope::failure(Code::NotFound, format!("no installed plugin serves recipe {recipe}"))
            .fact(format!("plugins directory: {}", catalog.dir.display()))
            .fact(known)
            .fact("nothing was written")
            .action("list", "skiff plugin list", false, Safety::ReadOnly, 0.8)
            .into());
    };
    let host = host(&catalog, p, Arc::new(skiff_clock::SystemClock));
    let answer = host.recipe(recipe, name, port).await;
    host.stop().await;
    let answer = answer.map_err(|e| failure(e, &p.manifest.plugin))?;
    if let Some(first) = answer.problems.first() {
        let mut env = Envelope::failure(Code::Usage, format!("recipe {recipe} refuses: {first}"));
        for more in &answer.problems[1..] {
            env = env.fact(more.clone());
        }
        return Err(env.fact("nothing was written").into());
    }
    Ok(answer.spec)
}

/// `skiff plugin install MANIFEST [--executable PATH] [--pin] [--force]`: the manifest
/// written into `PLUGINS/NAME/plugin.yaml` with the executable's absolute path, then
/// the plugin started once; a plugin that fails that check is not left installed.
pub(crate) async fn install(
    ctx: &Context,
    manifest: &std::path::Path,
    executable: Option<&std::path::Path>,
    pin: bool,
    force: bool,
) -> Result<Answer> {
    use skiff_plugin::Manifest;
    let shown = manifest.display().to_string();
    let path = ctx.cwd.join(manifest);
    let bytes = std::fs::read(&path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound { Code::NotFound } else { Code::IoError };
        crate::error::Error::from(Envelope::failure(code, format!("cannot read {shown}: {e}")))
    })?;
    let invalid = |e: skiff_plugin::ManifestError| -> crate::error::Error {
        Envelope::failure(Code::SpecInvalid, e.to_string()).fact("nothing was installed").into()
    };
    let dir_of = path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let mut m = if pin {
        let exe = match executable {
            Some(e) => ctx.cwd.join(e),
            None => {
                let named: serde_json::Value =
                    skiff_spec::from_yaml(&shown, &bytes).map_err(|e| invalid(skiff_plugin::ManifestError::from(e)))?;
                dir_of.join(named["executable"].as_str().unwrap_or_default())
            }
        };
        let sha = skiff_plugins::sha256_file(&exe).map_err(|e| {
            crate::error::Error::from(
                Envelope::failure(Code::NotFound, format!("cannot read the executable {}: {e}", exe.display()))
                    .fact("build the plugin first, or name it with --executable PATH"),
            )
        })?;
        Manifest::parse_pinned(&shown, &bytes, &exe.display().to_string(), &sha).map_err(invalid)?
    } else {
        let mut m = Manifest::parse(&shown, &bytes).map_err(invalid)?;
        let exe = executable.map_or_else(|| dir_of.join(&m.executable), |e| ctx.cwd.join(e));
        m.executable = exe.display().to_string();
        m
    };
    m.executable = std::fs::canonicalize(&m.executable).map_or(m.executable.clone(), |p| p.display().to_string());
    let target = dir(ctx).join(&m.plugin);
    if target.exists() && !force {
        return Err(Envelope::failure(Code::AlreadyExists, format!("plugin {} is installed already", m.plugin))
            .fact(format!("{} exists; nothing was changed", target.display()))
            .action("replace", format!("skiff plugin install {shown} --force"), true, Safety::Reversible, 0.4)
            .into());
    }
    let file = target.join(skiff_plugin::MANIFEST_FILE);
    let installed =
        Installed { manifest: m.clone(), manifest_path: file.clone(), executable: m.executable.clone().into() };
    let host = Host::new(installed, Arc::new(skiff_clock::SystemClock));
    let described = host.describe().await;
    host.stop().await;
    described.map_err(|e| failure(e, &m.plugin))?;
    std::fs::create_dir_all(&target).and_then(|()| crate::init::atomic_write(&file, m.to_yaml().as_bytes())).map_err(
        |e| {
            crate::error::Error::from(Envelope::failure(Code::IoError, format!("cannot write {}: {e}", file.display())))
        },
    )?;
    Ok(Envelope::ok(format!("installed plugin {} {}", m.plugin, m.version))
        .fact(format!("manifest {}", file.display()))
        .fact(format!("executable {} (sha256 {}{})", m.executable, m.sha256, if pin { ", pinned now" } else { "" }))
        .fact(format!("it started and serves {}", kinds(&m.steps, &m.checks, &m.addons, &m.recipes)))
        .data(serde_json::json!({"plugin": m.plugin, "version": m.version, "manifest": file.display().to_string(),
            "executable": m.executable, "sha256": m.sha256.as_str(), "pinned": pin}))
        .action("explain", format!("skiff plugin explain {}", m.plugin), false, Safety::ReadOnly, 0.5)
        .into())
}
