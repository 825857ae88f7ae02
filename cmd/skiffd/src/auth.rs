//! Bearer tokens and roles. A token is kept as the SHA-256 of its secret, either as a
//! record in the state bucket (`tokens/<name>.json`: issued, listed, revoked, rotated
//! and expired with `skiffd token …`, seen by every replica) or in a bootstrap JSON
//! file. A request's token is hashed and looked up: in the file, then in the bucket
//! records every replica caches — refreshed every [`TOKEN_REFRESH`] (so a revocation
//! applies everywhere within that) and when an unknown token arrives unless a read
//! started after it (so a token issued while skiffd runs is accepted on its first use). Roles nest:
//! viewer < operator < approver.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use skiff_state::docs::TokenRecord;
use skiff_state::{Ledger, Update};

/// How often every replica re-reads the token records: the bound on a revocation.
pub const TOKEN_REFRESH: Duration = Duration::from_secs(1);
/// A token's last-used time is written at most this often.
const USAGE_EVERY_MS: u64 = 60_000;

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
    /// A token over its request rate (or too many submissions at once): 429.
    RateLimited { who: String, retry_after_ms: u64, why: &'static str },
}

/// Requests per second each token may send, with a burst: a token bucket per name.
#[derive(Debug)]
pub struct Limiter {
    per_second: f64,
    burst: f64,
    buckets: std::sync::Mutex<HashMap<String, (f64, u64)>>,
}

impl Limiter {
    /// `per_second` requests a second per token, `burst` at once; 0 turns it off.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Limiter { per_second: f64::from(per_second), burst: f64::from(burst.max(1)), buckets: Default::default() }
    }

    /// Takes one request from `who`'s bucket at `now_ms`; how long to wait otherwise.
    pub fn take(&self, who: &str, now_ms: u64) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let mut b = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = b.entry(who.to_owned()).or_insert((self.burst, now_ms));
        let refill = now_ms.saturating_sub(*last) as f64 / 1000.0 * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_second * 1000.0).ceil() as u64)
        }
    }
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh token secret.
fn secret() -> anyhow::Result<String> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(format!("skf_{}", hex::encode(raw)))
}

fn parse_role(s: &str) -> Option<Role> {
    match s {
        "viewer" => Some(Role::Viewer),
        "operator" => Some(Role::Operator),
        "approver" => Some(Role::Approver),
        _ => None,
    }
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
        let token = secret()?;
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

/// The token records of the bucket, as a replica sees them.
#[derive(Debug, Default)]
struct Cache {
    by_digest: HashMap<String, TokenRecord>,
    loaded_at_ms: Option<u64>,
    /// Name → last use not yet written.
    used: HashMap<String, u64>,
}

/// Token records in the state bucket, cached by this replica.
#[derive(Debug)]
pub struct BucketTokens {
    ledger: Ledger,
    cache: RwLock<Cache>,
    miss: tokio::sync::Mutex<()>,
}

impl BucketTokens {
    /// The records of `ledger` (read with [`BucketTokens::refresh`]).
    pub fn new(ledger: Ledger) -> Self {
        BucketTokens { ledger, cache: RwLock::default(), miss: tokio::sync::Mutex::new(()) }
    }

    /// Re-reads every record; the number read.
    pub async fn refresh(&self) -> Result<usize, skiff_state::StateError> {
        let records = list(&self.ledger).await?;
        let n = records.len();
        let mut c = self.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        c.by_digest = records.into_iter().map(|r| (r.sha256.clone(), r)).collect();
        c.loaded_at_ms = Some(self.ledger.clock().now_ms());
        Ok(n)
    }

    fn lookup(&self, d: &str) -> (Option<TokenRecord>, Option<u64>) {
        let c = self.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        (c.by_digest.get(d).cloned(), c.loaded_at_ms)
    }

    fn note_use(&self, name: &str, at_ms: u64) {
        let mut c = self.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        c.used.insert(name.to_owned(), at_ms);
    }

    /// Writes the last-used times noted since the last flush, where the record's is
    /// older than a minute.
    pub async fn flush_usage(&self) {
        let used: Vec<(String, u64)> = {
            let mut c = self.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            c.used.drain().collect()
        };
        for (name, at) in used {
            let _ = self
                .ledger
                .update::<TokenRecord, _>(&skiff_state::keys::token(&name), |old| {
                    Ok(match old {
                        Some(r) if r.last_used_ms.is_none_or(|l| at.saturating_sub(l) >= USAGE_EVERY_MS) => {
                            Update::Write(TokenRecord { last_used_ms: Some(at), ..r.clone() })
                        }
                        _ => Update::Keep,
                    })
                })
                .await;
        }
    }

    /// The caller a token digest names, checked for revocation and expiry; `None` when
    /// no record has it (after a fresh read when the cache may be behind).
    async fn caller(&self, d: &str) -> Result<Option<Caller>, Refusal> {
        let now = self.ledger.clock().now_ms();
        let (mut found, _) = self.lookup(d);
        if found.is_none() {
            // Read the records again unless someone did since this request arrived: a
            // token issued before it is found; unknown tokens arriving together share
            // one read.
            let _one = self.miss.lock().await;
            if self.lookup(d).1.is_none_or(|l| l <= now) && self.refresh().await.is_err() {
                return Err(Refusal::Unauthenticated("the token records cannot be read from the state bucket; retry"));
            }
            found = self.lookup(d).0;
        }
        let Some(r) = found else { return Ok(None) };
        if r.revoked_at_ms.is_some() {
            return Err(Refusal::Unauthenticated(
                "the token was revoked: ask for a new one (`skiffd token rotate NAME`)",
            ));
        }
        if r.expires_at_ms.is_some_and(|e| now >= e) {
            return Err(Refusal::Unauthenticated("the token expired: ask for a new one (`skiffd token rotate NAME`)"));
        }
        let role = parse_role(&r.role).ok_or(Refusal::Unauthenticated("the token's record names no known role"))?;
        self.note_use(&r.name, now);
        Ok(Some(Caller { name: r.name, role }))
    }
}

/// Every token skiffd accepts: the bootstrap file's and the bucket's, each within its
/// request rate.
#[derive(Debug)]
pub struct Auth {
    /// The bootstrap file's tokens (never expire; edit the file to remove one).
    pub file: Tokens,
    /// The bucket's records.
    pub bucket: BucketTokens,
    /// Requests per token.
    pub limiter: Limiter,
}

impl Auth {
    /// Checks an `authorization` header value against the role a call needs, and the
    /// caller's request rate.
    pub async fn authorize(&self, header: Option<&str>, needs: Role) -> Result<Caller, Refusal> {
        let caller = self.identify(header, needs).await?;
        let now = self.bucket.ledger.clock().now_ms();
        self.limiter.take(&caller.name, now).map_err(|retry_after_ms| Refusal::RateLimited {
            who: caller.name.clone(),
            retry_after_ms,
            why: "the token sent more requests than its rate allows",
        })?;
        tracing::Span::current().record("actor", caller.name.as_str());
        Ok(caller)
    }

    async fn identify(&self, header: Option<&str>, needs: Role) -> Result<Caller, Refusal> {
        match self.file.authorize(header, needs) {
            Err(Refusal::Unauthenticated("the token is not one this server issued")) => {}
            other => return other,
        }
        let token = header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .unwrap_or_default();
        let caller = self
            .bucket
            .caller(&digest(token))
            .await?
            .ok_or(Refusal::Unauthenticated("the token is not one this server issued"))?;
        if caller.role < needs {
            return Err(Refusal::Forbidden { caller, needs });
        }
        Ok(caller)
    }
}

/// Every token record in the bucket, by name.
pub async fn list(ledger: &Ledger) -> Result<Vec<TokenRecord>, skiff_state::StateError> {
    let mut out = Vec::new();
    for l in ledger.store().list(&skiff_state::keys::tokens()).await? {
        if let Some(r) = ledger.read::<TokenRecord>(&l.key).await? {
            out.push(r);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Issues a token named `name` in the bucket (expiring after `ttl`, if given) and
/// returns it: shown once, only its SHA-256 is kept. A name in use is refused unless
/// its token was revoked.
pub async fn issue(ledger: &Ledger, name: &str, role: Role, ttl: Option<Duration>, by: &str) -> anyhow::Result<String> {
    skiff_state::keys::check_name("token", name)?;
    let token = secret()?;
    let now = ledger.clock().now_ms();
    let record = TokenRecord {
        cas: Default::default(),
        name: name.to_owned(),
        role: role.as_str().to_owned(),
        sha256: digest(&token),
        created_at_ms: now,
        created_by: by.to_owned(),
        expires_at_ms: ttl.map(|t| now + u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        revoked_at_ms: None,
        last_used_ms: None,
    };
    let mut taken = false;
    ledger
        .update::<TokenRecord, _>(&skiff_state::keys::token(name), |old| {
            Ok(match old {
                Some(o) if o.revoked_at_ms.is_none() => {
                    taken = true;
                    Update::Keep
                }
                _ => Update::Write(record.clone()),
            })
        })
        .await?;
    if taken {
        anyhow::bail!(
            "a token named `{name}` is in use; `skiffd token rotate {name}` replaces its secret, `revoke` ends it"
        );
    }
    Ok(token)
}

/// Revokes the token named `name`; every replica refuses it within [`TOKEN_REFRESH`].
pub async fn revoke(ledger: &Ledger, name: &str) -> anyhow::Result<TokenRecord> {
    let now = ledger.clock().now_ms();
    let mut missing = false;
    let r = ledger
        .update::<TokenRecord, _>(&skiff_state::keys::token(name), |old| {
            Ok(match old {
                Some(o) if o.revoked_at_ms.is_none() => {
                    Update::Write(TokenRecord { revoked_at_ms: Some(now), ..o.clone() })
                }
                Some(_) => Update::Keep,
                None => {
                    missing = true;
                    Update::Keep
                }
            })
        })
        .await;
    if missing {
        anyhow::bail!("no token named `{name}`; `skiffd token list` shows them");
    }
    Ok(r?)
}

/// A new secret for the token named `name` (same role, same lifetime from now): the old
/// one is refused from then on. Returns the new token.
pub async fn rotate(ledger: &Ledger, name: &str, by: &str) -> anyhow::Result<String> {
    let token = secret()?;
    let now = ledger.clock().now_ms();
    let mut missing = false;
    ledger
        .update::<TokenRecord, _>(&skiff_state::keys::token(name), |old| {
            Ok(match old {
                Some(o) => Update::Write(TokenRecord {
                    sha256: digest(&token),
                    created_at_ms: now,
                    created_by: by.to_owned(),
                    expires_at_ms: o.expires_at_ms.map(|e| now + e.saturating_sub(o.created_at_ms)),
                    revoked_at_ms: None,
                    last_used_ms: None,
                    ..o.clone()
                }),
                None => {
                    missing = true;
                    Update::Keep
                }
            })
        })
        .await
        .ok();
    if missing {
        anyhow::bail!("no token named `{name}`; `skiffd token create --name {name} --role ROLE` issues one");
    }
    Ok(token)
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

    #[test]
    fn a_token_over_its_rate_waits_and_others_are_not_slowed() {
        let l = Limiter::new(10, 5);
        for _ in 0..5 {
            assert!(l.take("a", 1_000).is_ok());
        }
        let wait = l.take("a", 1_000).unwrap_err();
        assert_eq!(wait, 100, "one request's worth at 10/s");
        assert!(l.take("b", 1_000).is_ok(), "another token has its own bucket");
        assert!(l.take("a", 1_100).is_ok(), "refilled");
        assert!(Limiter::new(0, 1).take("a", 0).is_ok(), "off");
    }

    #[tokio::test]
    async fn bucket_tokens_are_issued_expired_revoked_and_rotated_without_a_restart() {
        let ledger = Ledger::open("memory://", &skiff_objstore::OpenOptions::default()).unwrap();
        let auth =
            Auth { file: Tokens::default(), bucket: BucketTokens::new(ledger.clone()), limiter: Limiter::new(0, 1) };
        auth.bucket.refresh().await.unwrap();
        // Issued after the cache was read: accepted on first use.
        let t = issue(&ledger, "ci", Role::Operator, None, "test").await.unwrap();
        let bearer = format!("Bearer {t}");
        assert_eq!(auth.authorize(Some(&bearer), Role::Operator).await.unwrap().name, "ci");
        assert!(matches!(auth.authorize(Some(&bearer), Role::Approver).await, Err(Refusal::Forbidden { .. })));
        assert!(issue(&ledger, "ci", Role::Viewer, None, "test").await.is_err(), "a name in use");
        // Revoked: refused once the replica has re-read the records.
        revoke(&ledger, "ci").await.unwrap();
        auth.bucket.refresh().await.unwrap();
        assert!(
            matches!(auth.authorize(Some(&bearer), Role::Viewer).await, Err(Refusal::Unauthenticated(m)) if m.contains("revoked"))
        );
        // Rotated: a new secret works, the old one does not.
        let t2 = rotate(&ledger, "ci", "test").await.unwrap();
        auth.bucket.refresh().await.unwrap();
        assert!(auth.authorize(Some(&format!("Bearer {t2}")), Role::Viewer).await.is_ok());
        assert!(auth.authorize(Some(&bearer), Role::Viewer).await.is_err());
        // Expired.
        let short = issue(&ledger, "short", Role::Viewer, Some(Duration::ZERO), "test").await.unwrap();
        assert!(
            matches!(auth.authorize(Some(&format!("Bearer {short}")), Role::Viewer).await, Err(Refusal::Unauthenticated(m)) if m.contains("expired"))
        );
        // Last use is recorded.
        auth.bucket.flush_usage().await;
        let rec = list(&ledger).await.unwrap();
        assert!(rec.iter().find(|r| r.name == "ci").unwrap().last_used_ms.is_some());
    }
}
