//! `skiff config`: list, select, create and show contexts.

use std::fmt::Write as _;

use skiff_sdk::config::{ClientConfig, ConfigError, Context as Named, Origin, Setting, normalize_state_url};
use skiff_sdk::{Answer, Code, Envelope, Safety};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::request::ConfigRequest;

pub(crate) fn run(ctx: &Context, r: ConfigRequest) -> Result<Answer> {
    match r {
        ConfigRequest::GetContexts => get_contexts(ctx),
        ConfigRequest::UseContext { name } => use_context(ctx, &name),
        ConfigRequest::SetContext { name, state, server, make_current } => {
            set_context(ctx, &name, state, server, make_current)
        }
        ConfigRequest::Show => show(ctx),
    }
}

/// The answer for a configuration error.
pub(crate) fn error(e: ConfigError) -> Error {
    Error::from(answer(e))
}

fn answer(e: ConfigError) -> Answer {
    match e {
        ConfigError::Invalid(spec) => {
            let env = Envelope::failure(Code::ConfigInvalid, "the contexts file is invalid")
                .facts(spec.diagnostics().iter().map(|d| format!("{}:{}: {}: {}", d.file, d.pos, d.path, d.message)))
                .action("show", "skiff config show", false, Safety::ReadOnly, 0.3);
            Answer::from(env).body(spec.to_string()).body_replaces_facts()
        }
        ConfigError::UnknownContext { name, file, known } => {
            Envelope::failure(Code::NotFound, format!("no context named `{name}`"))
                .fact(format!(
                    "contexts in {file}: {}",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ))
                .action("list", "skiff config get-contexts", false, Safety::ReadOnly, 0.7)
                .action(
                    "create",
                    format!("skiff config set-context {name} --state file://.skiff/state"),
                    true,
                    Safety::Reversible,
                    0.4,
                )
                .into()
        }
        ConfigError::BadValue { what, value, why } => {
            Envelope::failure(Code::ConfigInvalid, format!("{what} `{value}` is invalid")).fact(why).into()
        }
        ConfigError::Io { action, file, source } => {
            Envelope::failure(Code::IoError, format!("cannot {action} {file}")).fact(source.to_string()).into()
        }
        other => Envelope::failure(Code::ConfigInvalid, other.to_string()).into(),
    }
}

fn load(ctx: &Context) -> Result<(std::path::PathBuf, ClientConfig)> {
    let path = ctx.config_path();
    ClientConfig::load(&path).map(|c| (path, c)).map_err(error)
}

fn get_contexts(ctx: &Context) -> Result<Answer> {
    let (path, cfg) = load(ctx)?;
    let current = cfg.current_context.clone();
    let mut body = String::new();
    if cfg.contexts.is_empty() {
        body.push_str("no contexts: commands use $SKIFF_STATE or file://.skiff/state with the local provider\n");
    } else {
        let width = cfg.contexts.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let _ = writeln!(body, "  {:width$}  STATE / PROVIDER / REGION / SERVER", "NAME");
        for c in &cfg.contexts {
            let mark = if current.as_deref() == Some(&c.name) { '*' } else { ' ' };
            let _ = writeln!(
                body,
                "{mark} {:width$}  {} / {} / {} / {}",
                c.name,
                c.state,
                c.provider.map_or("local", |p| p.as_str()),
                c.region.as_deref().unwrap_or("-"),
                c.server.as_deref().unwrap_or("-")
            );
        }
    }
    let env = Envelope::ok(format!("{} context{}", cfg.contexts.len(), if cfg.contexts.len() == 1 { "" } else { "s" }))
        .fact(format!("file: {}", path.display()))
        .fact(format!("current: {}", current.as_deref().unwrap_or("none")))
        .data(serde_json::json!({ "config_file": path.display().to_string(), "current_context": current, "contexts": cfg.contexts }));
    let env = if cfg.contexts.is_empty() {
        env.action(
            "create",
            "skiff config set-context NAME --state URL --provider local",
            true,
            Safety::Reversible,
            0.5,
        )
    } else {
        env
    };
    Ok(Answer::from(env).body(body))
}

fn use_context(ctx: &Context, name: &str) -> Result<Answer> {
    let (path, mut cfg) = load(ctx)?;
    if cfg.context(name).is_none() {
        return Err(error(ConfigError::UnknownContext {
            name: name.to_owned(),
            file: path.display().to_string(),
            known: cfg.contexts.iter().map(|c| c.name.clone()).collect(),
        }));
    }
    let previous = cfg.current_context.replace(name.to_owned());
    cfg.save(&path).map_err(error)?;
    Ok(Envelope::ok(format!("current context is now `{name}`"))
        .fact(format!("was: {}", previous.as_deref().unwrap_or("none")))
        .fact(format!("file: {}", path.display()))
        .data(serde_json::json!({ "config_file": path.display().to_string(), "current_context": name, "previous": previous }))
        .action("show", "skiff config show", false, Safety::ReadOnly, 0.6)
        .into())
}

fn set_context(
    ctx: &Context,
    name: &str,
    state: Option<String>,
    server: Option<String>,
    make_current: bool,
) -> Result<Answer> {
    let (path, mut cfg) = load(ctx)?;
    if name.parse::<skiff_spec::values::DnsLabel>().is_err() {
        return Err(Envelope::failure(Code::Usage, format!("`{name}` is not a valid context name"))
            .fact(format!("expected {}", skiff_spec::values::DnsLabel::EXPECTED))
            .into());
    }
    let state = state.or_else(|| ctx.flags.state.clone());
    if let Some(s) = &state {
        // Keep relative file:// paths as written (they resolve per working directory), but reject bad URLs now.
        normalize_state_url(s, &ctx.cwd).map_err(error)?;
    }
    let existed = cfg.context(name).is_some();
    if !existed && state.is_none() {
        return Err(Envelope::failure(Code::Usage, "a new context needs a state bucket: `--state URL`")
            .action(
                "create",
                format!("skiff config set-context {name} --state file://.skiff/state"),
                true,
                Safety::Reversible,
                0.6,
            )
            .into());
    }
    if !existed {
        cfg.contexts.push(Named {
            name: name.to_owned(),
            state: String::new(),
            provider: None,
            region: None,
            server: None,
        });
    }
    let entry = cfg.contexts.iter_mut().find(|c| c.name == name).expect("inserted above");
    if let Some(s) = state {
        entry.state = s;
    }
    if let Some(p) = ctx.flags.provider {
        entry.provider = Some(p);
    }
    if let Some(r) = &ctx.flags.region {
        entry.region = Some(r.clone());
    }
    if let Some(s) = server {
        entry.server = Some(s);
    }
    let saved = entry.clone();
    if make_current {
        cfg.current_context = Some(name.to_owned());
    }
    cfg.save(&path).map_err(error)?;
    Ok(Envelope::ok(format!("{} context `{name}`", if existed { "updated" } else { "created" }))
        .fact(format!("state: {}", saved.state))
        .fact(format!("file: {}", path.display()))
        .data(
            serde_json::json!({ "config_file": path.display().to_string(), "context": saved, "current": make_current }),
        )
        .action(
            "use",
            format!("skiff config use-context {name}"),
            true,
            Safety::Reversible,
            if make_current { 0.1 } else { 0.6 },
        )
        .into())
}

fn show(ctx: &Context) -> Result<Answer> {
    let (_, resolved) = ctx.resolve()?;
    fn origin(o: Origin) -> &'static str {
        match o {
            Origin::Flag => "flag",
            Origin::Env => "environment",
            Origin::Context => "context",
            Origin::Default => "default",
        }
    }
    fn line<T: std::fmt::Display>(name: &str, s: Option<&Setting<T>>) -> String {
        match s {
            Some(s) => format!("{name}: {} (from {})", s.value, origin(s.origin)),
            None => format!("{name}: not set"),
        }
    }
    let provider = Setting { value: resolved.provider.value.as_str(), origin: resolved.provider.origin };
    Ok(Envelope::ok(format!("state {} with provider {}", resolved.state.value, resolved.provider.value))
        .fact(line("context", resolved.context.as_ref()))
        .fact(line("state", Some(&resolved.state)))
        .fact(line("provider", Some(&provider)))
        .fact(line("region", resolved.region.as_ref()))
        .fact(line("server", resolved.server.as_ref()))
        .fact(format!("contexts file: {}", resolved.config_file))
        .data(&resolved)
        .into())
}
