//! Who runs a request, where, and how to talk back: the working directory, the
//! environment (the process's, or an explicit map for servers), the global flags, and
//! a [`Ui`] for progress, streamed items and confirmations. Nothing here prints.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use skiff_sdk::config::{self, ClientConfig, Flags, Resolved};
use skiff_sdk::{Code, Envelope, Safety};
use skiff_settings::Setting;

use crate::error::{Error, Result};

/// Where settings come from.
#[derive(Clone, Debug)]
pub enum Env {
    /// This process's environment (the CLI).
    Process,
    /// Exactly these variables and nothing else (skiffd, skiff-worker, tests).
    Map(Arc<BTreeMap<String, String>>),
}

impl Env {
    /// A variable's value.
    pub fn get(&self, name: &str) -> Option<String> {
        match self {
            Env::Process => std::env::var(name).ok(),
            Env::Map(m) => m.get(name).cloned(),
        }
    }

    /// A declared setting's value (empty counts as unset).
    pub fn setting(&self, s: &Setting) -> Option<String> {
        s.get(|k| self.get(k))
    }
}

/// How a front end shows what happens while a request runs. The CLI prints progress to
/// stderr and streamed items to stdout; servers show nothing and never ask.
pub trait Ui: Send + Sync + std::fmt::Debug {
    /// Whether progress lines are wanted at all (the engine skips describing events otherwise).
    fn wants_progress(&self) -> bool {
        false
    }

    /// A progress line for people.
    fn progress(&self, _line: &str) {}

    /// One streamed item of a `--follow`: its JSON and its text.
    fn emit(&self, _json: &serde_json::Value, _human: &str) {}

    /// Asks a yes/no question; `None` when there is nobody to ask.
    fn ask(&self, _question: &str) -> Option<bool> {
        None
    }

    /// Reads a value the user pipes in (`skiff secrets set` reads stdin); empty when
    /// nothing can be read.
    fn read_value(&self) -> std::io::Result<String> {
        Ok(String::new())
    }
}

/// A [`Ui`] that shows nothing and asks nobody (servers, workers, tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Ui for Quiet {}

/// Everything a request may consult about its invocation.
#[derive(Clone, Debug)]
pub struct Context {
    /// The directory relative paths (specs, `policies/`, keys) start from.
    pub cwd: PathBuf,
    /// The environment the request sees.
    pub env: Env,
    /// Global flags (`--bucket`, `--provider`, `--context`, `--region`, `--server`).
    pub flags: Flags,
    /// `--yes`: mutating requests proceed without asking.
    pub yes: bool,
    /// Submit operations and return instead of running them: a worker claims them.
    pub detach: bool,
    /// Progress, streamed items, questions.
    pub ui: Arc<dyn Ui>,
}

impl Context {
    /// A context for servers and workers: explicit environment, confirmed, quiet.
    pub fn service(cwd: PathBuf, env: BTreeMap<String, String>, detach: bool) -> Self {
        Context { cwd, env: Env::Map(Arc::new(env)), flags: Flags::default(), yes: true, detach, ui: Arc::new(Quiet) }
    }

    /// A declared setting's value.
    pub fn setting(&self, s: &Setting) -> Option<String> {
        self.env.setting(s)
    }

    /// The contexts file, absolute.
    pub fn config_path(&self) -> PathBuf {
        let p = config::config_path(&|k: &str| self.env.get(k));
        if p.is_absolute() { p } else { self.cwd.join(p) }
    }

    /// Loads contexts and resolves bucket, provider, region and server.
    pub fn resolve(&self) -> Result<(ClientConfig, Resolved)> {
        let path = self.config_path();
        let cfg = ClientConfig::load(&path).map_err(crate::config::error)?;
        let resolved = config::resolve(&self.flags, &|k: &str| self.env.get(k), &self.cwd, &path, &cfg)
            .map_err(crate::config::error)?;
        Ok((cfg, resolved))
    }

    /// Who is acting, for audit entries: `$SKIFF_ACTOR`, else `$USER`, else `$LOGNAME`.
    pub fn actor(&self) -> String {
        [skiff_settings::ACTOR.name, "USER", "LOGNAME"]
            .iter()
            .find_map(|k| self.env.get(k).filter(|a| !a.is_empty()))
            .unwrap_or_else(os_user)
    }

    /// Roles of the actor in policy checks: whoever holds the bucket's credentials can
    /// do everything, unless `$SKIFF_ROLES` (comma-separated) says less.
    pub fn roles(&self) -> Vec<String> {
        match skiff_settings::ROLES.raw(|k| self.env.get(k)) {
            Some(r) => r.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect(),
            None => ["viewer", "operator", "approver"].map(str::to_owned).to_vec(),
        }
    }

    /// Opens the resolved state bucket.
    pub fn ledger(&self) -> Result<(Resolved, skiff_state::Ledger)> {
        let (_, resolved) = self.resolve()?;
        let ledger = skiff_state::Ledger::open(&resolved.state.value, &skiff_objstore::OpenOptions::default())
            .map_err(|e| crate::error::state(&e))?;
        Ok((resolved, ledger))
    }

    /// Asks before a mutating request: `--yes` proceeds, a terminal is asked, and
    /// anything else answers CONFIRMATION_REQUIRED with the command to re-run.
    pub fn confirm(&self, question: &str, rerun: &str) -> Result<()> {
        if self.yes {
            return Ok(());
        }
        match self.ui.ask(&format!("{question} [y/N] ")) {
            Some(true) => Ok(()),
            Some(false) => Err(Envelope::failure(Code::Cancelled, "not confirmed; nothing was changed").into()),
            None => Err(Error::from(
                Envelope::failure(Code::ConfirmationRequired, format!("{question} needs confirmation"))
                    .fact("no terminal to ask on, and --yes was not given; nothing was changed")
                    .action("confirm", format!("{rerun} --yes"), true, Safety::Reversible, 0.7),
            )),
        }
    }

    /// A progress line for people.
    pub fn progress(&self, line: &str) {
        self.ui.progress(line);
    }

    /// One streamed item (for `--follow`).
    pub fn emit(&self, json: &serde_json::Value, human: &str) {
        self.ui.emit(json, human);
    }

    /// The signing key: `$SKIFF_KEY`, else `.skiff/keys/cosign.key`.
    pub fn private_key_path(&self) -> PathBuf {
        self.setting(&skiff_settings::KEY).map_or_else(|| self.cwd.join(".skiff/keys/cosign.key"), |p| self.cwd.join(p))
    }

    /// The trusted public key: `$SKIFF_PUBLIC_KEY`, else `.skiff/keys/cosign.pub`.
    pub fn public_key_path(&self) -> PathBuf {
        self.setting(&skiff_settings::PUBLIC_KEY)
            .map_or_else(|| self.cwd.join(".skiff/keys/cosign.pub"), |p| self.cwd.join(p))
    }

    /// The signing key's password (`$SKIFF_KEY_PASSWORD`, empty if unset).
    pub fn key_password(&self) -> Vec<u8> {
        skiff_settings::KEY_PASSWORD.raw(|k| self.env.get(k)).unwrap_or_default().into_bytes()
    }
}

/// The operating system's name for the user running this process (`uid-N` when the
/// password database has none): direct-mode actors are never "unknown".
fn os_user() -> String {
    let uid = nix::unistd::Uid::current();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => format!("uid-{uid}"),
    }
}
