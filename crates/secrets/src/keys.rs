//! Key versions of the local store, the way KMS has keys and aliases: every value is
//! sealed with one key version (`local-1` is the store's first key, `master.key`;
//! later ones are `local-N.key` beside it), and the alias `skiff` names the version
//! new values are sealed with. A key rotation makes a new version, re-seals every value
//! of the old one under it, moves the alias, and keeps the old version (it still opens
//! whatever was sealed with it) until its scheduled deletion.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{LocalSecrets, Result, SecretError};

/// The alias values are sealed under unless told otherwise (as `alias/skiff` on AWS).
pub const DEFAULT_ALIAS: &str = "skiff";
/// The store's first key version: `master.key`.
pub const FIRST: &str = "local-1";

/// One key version's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyMeta {
    created_at_ms: u64,
    /// What made it (a rotation's operation id): making it again returns it.
    token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deletion_at_ms: Option<u64>,
}

/// Aliases and the versions made after the first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyRing {
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    keys: BTreeMap<String, KeyMeta>,
}

impl KeyRing {
    pub(crate) fn is_empty(&self) -> bool {
        self.aliases.is_empty() && self.keys.is_empty()
    }

    /// The version `alias` names.
    pub(crate) fn current(&self, alias: &str) -> String {
        self.aliases.get(alias).cloned().unwrap_or_else(|| FIRST.to_owned())
    }
}

/// A key version as a rotation sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    /// `local-N`.
    pub id: String,
    /// The aliases naming it.
    pub aliases: Vec<String>,
    /// When it was made (0 for the first).
    pub created_at_ms: u64,
    /// When its deletion is due, once scheduled.
    pub deletion_at_ms: Option<u64>,
    /// References sealed with it.
    pub sealed: Vec<String>,
}

impl LocalSecrets {
    pub(crate) fn key_path(&self, id: &str) -> PathBuf {
        if id == FIRST { self.dir.join("master.key") } else { self.dir.join(format!("{id}.key")) }
    }

    /// Every key version, oldest first.
    pub fn key_versions(&self) -> Result<Vec<KeyVersion>> {
        let store = self.load()?;
        let ring = &store.keyring;
        let mut ids = vec![FIRST.to_owned()];
        let mut later: Vec<&String> = ring.keys.keys().filter(|id| id.as_str() != FIRST).collect();
        later.sort_by_key(|id| number(id));
        ids.extend(later.into_iter().cloned());
        Ok(ids
            .into_iter()
            .map(|id| {
                let meta = ring.keys.get(&id).cloned().unwrap_or_default();
                let mut aliases: Vec<String> =
                    ring.aliases.iter().filter(|(_, v)| **v == id).map(|(a, _)| a.clone()).collect();
                if id == FIRST && !ring.aliases.contains_key(DEFAULT_ALIAS) {
                    aliases.push(DEFAULT_ALIAS.to_owned());
                }
                let sealed = store
                    .entries
                    .iter()
                    .filter(|(_, s)| s.key.as_deref().unwrap_or(FIRST) == id)
                    .map(|(r, _)| r.clone())
                    .collect();
                KeyVersion {
                    id,
                    aliases,
                    created_at_ms: meta.created_at_ms,
                    deletion_at_ms: meta.deletion_at_ms,
                    sealed,
                }
            })
            .collect())
    }

    /// The version `alias` names; `None` for an alias nobody made.
    pub fn alias(&self, alias: &str) -> Result<Option<String>> {
        let ring = self.load()?.keyring;
        Ok(match ring.aliases.get(alias) {
            Some(id) => Some(id.clone()),
            None if alias == DEFAULT_ALIAS => Some(FIRST.to_owned()),
            None => None,
        })
    }

    /// Makes a new key version for `token` (a rotation's operation id); making it again
    /// returns the same version.
    pub fn create_key(&self, token: &str, now_ms: u64) -> Result<String> {
        self.locked(|s| {
            if let Some((id, _)) = s.keyring.keys.iter().find(|(_, m)| m.token == token) {
                // The record is written after the key file, so the file exists.
                return Ok((id.clone(), false));
            }
            let next = s.keyring.keys.keys().map(|id| number(id)).max().unwrap_or(1).max(1) + 1;
            let id = format!("local-{next}");
            // A file left by a crash before the record: replace it, nothing used it.
            let _ = std::fs::remove_file(self.key_path(&id));
            self.cipher(&id, true)?;
            s.keyring
                .keys
                .insert(id.clone(), KeyMeta { created_at_ms: now_ms, token: token.to_owned(), deletion_at_ms: None });
            Ok((id, true))
        })
    }

    /// Re-seals every value sealed with `from` under `to`; the references re-sealed.
    pub fn reencrypt(&self, from: &str, to: &str) -> Result<Vec<String>> {
        self.usable(to)?;
        self.locked(|s| {
            let mut done = Vec::new();
            for (reference, sealed) in &mut s.entries {
                if sealed.key.as_deref().unwrap_or(FIRST) != from {
                    continue;
                }
                let value = self.open(reference, sealed)?;
                *sealed = self.seal(to, reference, &value)?;
                done.push(reference.clone());
            }
            let changed = !done.is_empty();
            Ok((done, changed))
        })
    }

    /// Points `alias` at version `to`.
    pub fn move_alias(&self, alias: &str, to: &str) -> Result<()> {
        self.usable(to)?;
        self.locked(|s| {
            let changed = s.keyring.aliases.get(alias).map(String::as_str) != Some(to);
            s.keyring.aliases.insert(alias.to_owned(), to.to_owned());
            Ok(((), changed))
        })
    }

    /// Schedules version `id` for deletion at `at_ms`; refused while an alias names it
    /// or a value is sealed with it. Scheduling it again keeps the first time.
    pub fn schedule_deletion(&self, id: &str, at_ms: u64) -> Result<u64> {
        self.locked(|s| {
            if s.keyring.aliases.values().any(|v| v == id)
                || (id == FIRST && !s.keyring.aliases.contains_key(DEFAULT_ALIAS))
            {
                return Err(self.refused(id, "an alias still names it"));
            }
            if let Some(r) = s.entries.iter().find(|(_, e)| e.key.as_deref().unwrap_or(FIRST) == id).map(|(r, _)| r) {
                return Err(self.refused(id, &format!("{r} is still sealed with it")));
            }
            let meta = s.keyring.keys.entry(id.to_owned()).or_default();
            if let Some(at) = meta.deletion_at_ms {
                return Ok((at, false));
            }
            meta.deletion_at_ms = Some(at_ms);
            Ok((at_ms, true))
        })
    }

    fn usable(&self, id: &str) -> Result<()> {
        let ring = self.load()?.keyring;
        if id != FIRST && !ring.keys.contains_key(id) {
            return Err(self.refused(id, "no such key version"));
        }
        if ring.keys.get(id).is_some_and(|m| m.deletion_at_ms.is_some()) {
            return Err(self.refused(id, "it is scheduled for deletion"));
        }
        Ok(())
    }

    fn refused(&self, id: &str, why: &str) -> SecretError {
        SecretError::Store { path: self.key_path(id).display().to_string(), message: format!("key {id}: {why}") }
    }
}

fn number(id: &str) -> u64 {
    id.strip_prefix("local-").and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_reseals_every_value_and_keeps_the_old_version_until_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalSecrets::new(dir.path());
        s.put("secret://db/url", "postgres://a").unwrap();
        s.put("secret://api/token", "t0k3n").unwrap();
        assert_eq!(s.alias(DEFAULT_ALIAS).unwrap().as_deref(), Some(FIRST));
        let id = s.create_key("op-1", 5).unwrap();
        assert_eq!(id, "local-2");
        assert_eq!(s.create_key("op-1", 9).unwrap(), id, "idempotent by token");
        let done = s.reencrypt(FIRST, &id).unwrap();
        assert_eq!(done, ["secret://api/token", "secret://db/url"]);
        assert!(s.reencrypt(FIRST, &id).unwrap().is_empty(), "nothing left on the old version");
        assert_eq!(s.get("secret://db/url").unwrap().as_deref(), Some("postgres://a"));
        assert!(s.schedule_deletion(&id, 10).is_err(), "not while it holds values");
        assert!(s.schedule_deletion(FIRST, 10).is_err(), "not while the alias names it");
        s.move_alias(DEFAULT_ALIAS, &id).unwrap();
        s.put("secret://new/x", "y").unwrap();
        let versions = s.key_versions().unwrap();
        assert_eq!(versions[1].sealed.len(), 3, "new values go to the alias's version");
        assert_eq!(versions[1].aliases, [DEFAULT_ALIAS]);
        assert!(versions[0].aliases.is_empty() && versions[0].sealed.is_empty());
        assert_eq!(s.schedule_deletion(FIRST, 100).unwrap(), 100);
        assert_eq!(s.schedule_deletion(FIRST, 200).unwrap(), 100, "the first schedule stands");
        assert!(s.move_alias(DEFAULT_ALIAS, FIRST).is_err(), "a key pending deletion takes no alias");
        assert!(dir.path().join("master.key").exists(), "kept until it is due");
        assert_eq!(s.create_key("op-2", 20).unwrap(), "local-3");
    }
}
