//! Bearer tokens and roles. Tokens are stored as SHA-256 digests in a JSON file
//! (`skiffd token create` appends one and prints the token once); a request's token
//! is hashed and looked up. Roles nest: viewer < operator < approver.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read status, plans, operations, events, audit.
    Viewer,
    /// Also deploy, roll back, repair, post intents, pause, resume, cancel.
    Operator,
    /// Also approve and reject gates; production changes need it.
    Approver,
}

impl Role {
    /// The role and every role it includes, for policies (`SKIFF_ROLES`).
    pub fn expanded(self) -> Vec<&'static str> {
        [(Role::Viewer, "viewer"), (Role::Operator, "operator"), (Role::Approver, "approver")]
            .into_iter()
            .filter(|(r, _)| *r <= self)
            .map(|(_, n)| n)
            .collect()
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
        }
    }
}

/// One issued token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds it (the actor in the audit log).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub sha256: String,
}

/// The tokens file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    /// Every issued token.
    pub tokens: Vec<TokenEntry>,
}

/// A caller who presented a valid token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or one nobody issued: 401.
    Unauthenticated(&'static str),
    /// A valid token whose role is too low: 403.
    Forbidden { caller: Caller, needs: Role },
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Tokens {
    /// Reads the tokens file; a missing file is an empty set.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}; recreate it with `skiffd token create`", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Tokens::default()),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    /// Issues a new random token for `name`, stores its digest in `path` (mode 0600),
    /// and returns the token: it is shown once and never stored.
    pub fn create(path: &Path, name: &str, role: Role) -> anyhow::Result<String> {
        let mut tokens = Tokens::load(path)?;
        if tokens.tokens.iter().any(|t| t.name == name) {
            anyhow::bail!("a token named `{name}` exists in {}; pick another name", path.display());
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let token = format!("skf_{}", hex::encode(raw));
        tokens.tokens.push(TokenEntry { name: name.to_owned(), role, sha256: digest(&token) });
        let text = serde_json::to_string_pretty(&tokens)? + "\n";
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(token)
    }

    /// Checks an `authorization` header value against the role a call needs.
    pub fn authorize(&self, header: Option<&str>, needs: Role) -> Result<Caller, Refusal> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Unauthenticated("no bearer token: send `authorization: Bearer TOKEN`"))?;
        let d = digest(token);
        let entry = self
            .tokens
            .iter()
            .find(|t| t.sha256 == d)
            .ok_or(Refusal::Unauthenticated("the token is not one this server issued"))?;
        let caller = Caller { name: entry.name.clone(), role: entry.role };
        if entry.role < needs {
            return Err(Refusal::Forbidden { caller, needs });
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_and_tokens_are_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let token = Tokens::create(&path, "ci", Role::Operator).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token), "the token itself is never stored");
        let tokens = Tokens::load(&path).unwrap();
        let bearer = format!("Bearer {token}");
        assert_eq!(tokens.authorize(Some(&bearer), Role::Viewer).unwrap().name, "ci");
        assert!(tokens.authorize(Some(&bearer), Role::Operator).is_ok());
        assert!(matches!(tokens.authorize(Some(&bearer), Role::Approver), Err(Refusal::Forbidden { .. })));
        assert!(matches!(tokens.authorize(None, Role::Viewer), Err(Refusal::Unauthenticated(_))));
        assert!(matches!(tokens.authorize(Some("Bearer nope"), Role::Viewer), Err(Refusal::Unauthenticated(_))));
        assert_eq!(Role::Approver.expanded(), ["viewer", "operator", "approver"]);
        assert!(Tokens::create(&path, "ci", Role::Viewer).is_err());
    }
}
