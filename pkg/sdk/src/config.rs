//! Client contexts (kubeconfig-like) and how a command picks its state bucket,
//! provider, region and server: flag, then environment, then the current context,
//! then the embedded default (`file://.skiff/state`, provider `local`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The environment variable naming the contexts file.
pub const ENV_CONFIG: &str = "SKIFF_CONFIG";
/// The environment variable naming the state bucket URL.
pub const ENV_STATE: &str = "SKIFF_STATE";
/// The environment variable naming the provider.
pub const ENV_PROVIDER: &str = "SKIFF_PROVIDER";
/// The environment variable naming the context to use instead of the current one.
pub const ENV_CONTEXT: &str = "SKIFF_CONTEXT";
/// The environment variable naming the region.
pub const ENV_REGION: &str = "SKIFF_REGION";
/// The environment variable naming the skiffd server URL.
pub const ENV_SERVER: &str = "SKIFF_SERVER";
/// The embedded default state bucket, relative to the working directory.
pub const DEFAULT_STATE: &str = "file://.skiff/state";

/// The contexts file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClientConfig {
    /// The context used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    /// Named contexts.
    #[serde(default)]
    pub contexts: Vec<Context>,
}

/// A named place to work: a state bucket and how to reach its cloud.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// The context's name.
    pub name: String,
    /// The state bucket URL: `file://PATH`, `s3://BUCKET/PREFIX` or `memory://`.
    pub state: String,
    /// The provider, `local` or `aws`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderKind>,
    /// The cloud region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A skiffd URL; when set, commands go through the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// Which provider runs the primitives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProviderKind {
    /// Processes on this machine (the embedded default).
    Local,
    /// Amazon Web Services.
    Aws,
}

impl ProviderKind {
    /// The name as written in flags and files.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::Aws => "aws",
        }
    }
}

impl std::str::FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(ProviderKind::Local),
            "aws" => Ok(ProviderKind::Aws),
            other => Err(format!("unknown provider `{other}`; use `local` or `aws`")),
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a resolved setting came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A command-line flag.
    Flag,
    /// An environment variable.
    Env,
    /// The selected context.
    Context,
    /// The built-in default.
    Default,
}

/// A value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting<T> {
    /// The value.
    pub value: T,
    /// Its origin.
    pub origin: Origin,
}

/// Everything a command needs to know about where it works.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// The contexts file consulted.
    pub config_file: String,
    /// The context in effect, if any.
    pub context: Option<Setting<String>>,
    /// The state bucket URL, absolute for `file://`.
    pub state: Setting<String>,
    /// The provider.
    pub provider: Setting<ProviderKind>,
    /// The region, if any.
    pub region: Option<Setting<String>>,
    /// The skiffd server, if any.
    pub server: Option<Setting<String>>,
}

/// What the command line said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `--bucket`.
    pub state: Option<String>,
    /// `--provider`.
    pub provider: Option<ProviderKind>,
    /// `--context`.
    pub context: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--server`.
    pub server: Option<String>,
}

/// Why configuration could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The contexts file does not parse.
    #[error("{0}")]
    Invalid(skiff_spec::SpecError),
    /// A named context does not exist.
    #[error("context `{name}` does not exist in {file}")]
    UnknownContext {
        /// The name asked for.
        name: String,
        /// The file searched.
        file: String,
        /// The names that do exist.
        known: Vec<String>,
    },
    /// A value is malformed.
    #[error("{what} `{value}` is invalid: {why}")]
    BadValue {
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it is wrong and what to write instead.
        why: String,
    },
    /// The file could not be read or written.
    #[error("cannot {action} {file}: {source}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        file: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The contexts file path: `$SKIFF_CONFIG`, else `$XDG_CONFIG_HOME/skiff/config.yaml`,
/// else `$HOME/.config/skiff/config.yaml`.
pub fn config_path(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(p) = env(ENV_CONFIG).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let base = env("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"));
    base.join("skiff").join("config.yaml")
}

impl ClientConfig {
    /// Reads the contexts file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read(path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(ClientConfig::default()),
            Ok(bytes) => {
                let config: ClientConfig =
                    skiff_spec::from_yaml(&path.display().to_string(), &bytes).map_err(ConfigError::Invalid)?;
                let mut names = std::collections::BTreeSet::new();
                for c in &config.contexts {
                    if !names.insert(&c.name) {
                        return Err(ConfigError::BadValue {
                            what: "context name",
                            value: c.name.clone(),
                            why: format!("it appears twice in {}; keep one", path.display()),
                        });
                    }
                }
                Ok(config)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
            Err(source) => Err(ConfigError::Io { action: "read", file: path.display().to_string(), source }),
        }
    }

    /// Finds a context by name.
    pub fn context(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// Writes the file atomically (temporary file, fsync, rename). Comments are not kept.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let io = |source| ConfigError::Io { action: "write", file: path.display().to_string(), source };
        let mut text =
            String::from("# Skiff contexts: `skiff config get-contexts`, `skiff config use-context NAME`.\n");
        if let Some(c) = &self.current_context {
            text.push_str(&format!("current-context: {}\n", quote(c)));
        }
        text.push_str(if self.contexts.is_empty() { "contexts: []\n" } else { "contexts:\n" });
        for c in &self.contexts {
            text.push_str(&format!("  - name: {}\n    state: {}\n", quote(&c.name), quote(&c.state)));
            if let Some(p) = c.provider {
                text.push_str(&format!("    provider: {p}\n"));
            }
            if let Some(r) = &c.region {
                text.push_str(&format!("    region: {}\n", quote(r)));
            }
            if let Some(s) = &c.server {
                text.push_str(&format!("    server: {}\n", quote(s)));
            }
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension(format!("yaml.tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// Makes a state URL absolute: `file://rel` and bare paths resolve against `cwd`.
pub fn normalize_state_url(url: &str, cwd: &Path) -> Result<String, ConfigError> {
    let bad =
        |why: &str| ConfigError::BadValue { what: "state bucket URL", value: url.to_owned(), why: why.to_owned() };
    if let Some(path) = url.strip_prefix("file://") {
        if path.is_empty() {
            return Err(bad("name a directory, e.g. `file://.skiff/state`"));
        }
        let p = Path::new(path);
        let abs = if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
        return Ok(format!("file://{}", clean(&abs).display()));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or("");
        if bucket.is_empty() {
            return Err(bad("name a bucket, e.g. `s3://my-bucket/skiff`"));
        }
        return Ok(url.trim_end_matches('/').to_owned());
    }
    if url.starts_with("memory://") {
        return Ok(url.to_owned());
    }
    if url.contains("://") {
        return Err(bad("use `file://PATH`, `s3://BUCKET/PREFIX` or `memory://`"));
    }
    normalize_state_url(&format!("file://{url}"), cwd)
}

/// Removes `.` and `..` components without touching the file system.
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Resolves settings: flag, then environment, then context, then default.
pub fn resolve(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
    config_file: &Path,
    config: &ClientConfig,
) -> Result<Resolved, ConfigError> {
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    let context_name = match (&flags.context, env(ENV_CONTEXT), &config.current_context) {
        (Some(n), _, _) => Some(Setting { value: n.clone(), origin: Origin::Flag }),
        (None, Some(n), _) => Some(Setting { value: n, origin: Origin::Env }),
        (None, None, Some(n)) => Some(Setting { value: n.clone(), origin: Origin::Context }),
        (None, None, None) => None,
    };
    let context = match &context_name {
        Some(n) => Some(config.context(&n.value).ok_or_else(|| ConfigError::UnknownContext {
            name: n.value.clone(),
            file: config_file.display().to_string(),
            known: config.contexts.iter().map(|c| c.name.clone()).collect(),
        })?),
        None => None,
    };
    let pick = |flag: Option<String>, var: &str, ctx: Option<String>| -> Option<Setting<String>> {
        flag.map(|value| Setting { value, origin: Origin::Flag })
            .or_else(|| env(var).map(|value| Setting { value, origin: Origin::Env }))
            .or_else(|| ctx.map(|value| Setting { value, origin: Origin::Context }))
    };
    let state = pick(flags.state.clone(), ENV_STATE, context.map(|c| c.state.clone()))
        .unwrap_or(Setting { value: DEFAULT_STATE.to_owned(), origin: Origin::Default });
    let state = Setting { value: normalize_state_url(&state.value, cwd)?, origin: state.origin };
    let provider = match pick(
        flags.provider.map(|p| p.as_str().to_owned()),
        ENV_PROVIDER,
        context.and_then(|c| c.provider).map(|p| p.as_str().to_owned()),
    ) {
        Some(s) => Setting {
            value: s.value.parse().map_err(|why| ConfigError::BadValue {
                what: "provider",
                value: s.value.clone(),
                why,
            })?,
            origin: s.origin,
        },
        None => Setting { value: ProviderKind::Local, origin: Origin::Default },
    };
    Ok(Resolved {
        config_file: config_file.display().to_string(),
        context: context_name,
        state,
        provider,
        region: pick(flags.region.clone(), ENV_REGION, context.and_then(|c| c.region.clone())),
        server: pick(flags.server.clone(), ENV_SERVER, context.and_then(|c| c.server.clone())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config() -> ClientConfig {
        ClientConfig {
            current_context: Some("prod".into()),
            contexts: vec![
                Context {
                    name: "prod".into(),
                    state: "s3://prod-state/skiff".into(),
                    provider: Some(ProviderKind::Aws),
                    region: Some("us-east-1".into()),
                    server: None,
                },
                Context {
                    name: "dev".into(),
                    state: "file://dev-state".into(),
                    provider: None,
                    region: None,
                    server: None,
                },
            ],
        }
    }

    fn run(flags: Flags, vars: &[(&str, &str)], cfg: &ClientConfig) -> Result<Resolved, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        resolve(&flags, &|k| vars.get(k).cloned(), Path::new("/work"), Path::new("/cfg.yaml"), cfg)
    }

    #[test]
    fn flag_beats_env_beats_context_beats_default() {
        let cfg = config();
        let r = run(Flags::default(), &[], &ClientConfig::default()).unwrap();
        assert_eq!((r.state.value.as_str(), r.state.origin), ("file:///work/.skiff/state", Origin::Default));
        assert_eq!(r.provider.value, ProviderKind::Local);
        let r = run(Flags::default(), &[], &cfg).unwrap();
        assert_eq!((r.state.value.as_str(), r.state.origin), ("s3://prod-state/skiff", Origin::Context));
        assert_eq!(r.provider, Setting { value: ProviderKind::Aws, origin: Origin::Context });
        let r = run(Flags::default(), &[(ENV_STATE, "memory://x")], &cfg).unwrap();
        assert_eq!((r.state.value.as_str(), r.state.origin), ("memory://x", Origin::Env));
        let flags = Flags { state: Some("./s".into()), provider: Some(ProviderKind::Local), ..Flags::default() };
        let r = run(flags, &[(ENV_STATE, "memory://x"), (ENV_PROVIDER, "aws")], &cfg).unwrap();
        assert_eq!((r.state.value.as_str(), r.state.origin), ("file:///work/s", Origin::Flag));
        assert_eq!(r.provider.origin, Origin::Flag);
        let r = run(Flags::default(), &[(ENV_CONTEXT, "dev")], &cfg).unwrap();
        assert_eq!(r.state.value, "file:///work/dev-state");
        assert_eq!(r.provider.origin, Origin::Default);
    }

    #[test]
    fn unknown_context_and_bad_values_are_errors() {
        let cfg = config();
        let flags = Flags { context: Some("nope".into()), ..Flags::default() };
        assert!(matches!(run(flags, &[], &cfg), Err(ConfigError::UnknownContext { .. })));
        assert!(matches!(run(Flags::default(), &[(ENV_PROVIDER, "gcp")], &cfg), Err(ConfigError::BadValue { .. })));
        assert!(matches!(run(Flags::default(), &[(ENV_STATE, "ftp://x")], &cfg), Err(ConfigError::BadValue { .. })));
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/config.yaml");
        config().save(&path).unwrap();
        assert_eq!(ClientConfig::load(&path).unwrap(), config());
        assert_eq!(ClientConfig::load(&dir.path().join("missing.yaml")).unwrap(), ClientConfig::default());
    }
}
