//! Credential rotation with alternating users, as Secrets Manager's multi-user rotation
//! does it (the SQL is `skiff_secrets::logins`): the consumers' URL names one of two
//! users (`skiff_a`, `skiff_b`; the cluster's first user starts the pair), a rotation
//! gives the *other* one a new password and moves the URL to it, so the login in use
//! is never changed under a consumer. The pending value waits at `<reference>-pending`;
//! the one it replaced is kept at `<reference>-previous`. Skiff itself works over the
//! cluster's socket, so no rotation can lock it out.

use skiff_pluginapi::{Credential, ProviderError, Result, StagedLogin};
use skiff_secrets::logins::{self, Attributes, LoginUrl};

use super::{Postgres, err, random_hex};

/// A user name safe to put in SQL.
fn checked(user: &str) -> Result<&str> {
    logins::checked(user).ok_or_else(|| err(format!("database user `{user}` is not [a-z0-9_]; rotate it by hand")))
}

fn parse(url: &str) -> Option<LoginUrl<'_>> {
    LoginUrl::parse(url)
}

fn pending_ref(reference: &str) -> String {
    format!("{reference}-pending")
}

fn credential(url: &str) -> Result<Credential> {
    let u = parse(url).ok_or_else(|| err("a connection URL is not postgres://USER:PASSWORD@HOST:PORT/DB"))?;
    Ok(Credential { user: u.user.to_owned(), version: skiff_secrets::version(url) })
}

impl Postgres {
    fn secret(&self, reference: &str) -> Result<Option<String>> {
        self.secrets.get(reference).map_err(|e| err(e.to_string()))
    }

    fn current(&self, reference: &str) -> Result<String> {
        self.secret(reference)?.ok_or_else(|| ProviderError::not_found(reference.to_owned()))
    }

    fn pending(&self, reference: &str) -> Result<String> {
        self.secret(&pending_ref(reference))?
            .ok_or_else(|| err(format!("nothing is pending for {reference}: the rotation's first step stages it")))
    }

    pub(crate) async fn rotation_create(&self, id: &str, reference: &str) -> Result<StagedLogin> {
        let current = self.current(reference)?;
        if let Some(url) = self.secret(&pending_ref(reference))? {
            return Ok(StagedLogin { current: credential(&current)?, pending: credential(&url)? });
        }
        let u =
            parse(&current).ok_or_else(|| err(format!("{reference} is not postgres://USER:PASSWORD@HOST:PORT/DB")))?;
        self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let next = logins::alternate(checked(u.user)?);
        let url = u.with_login(&next, &random_hex(16)?);
        self.secrets.put(&pending_ref(reference), &url).map_err(|e| err(e.to_string()))?;
        Ok(StagedLogin { current: credential(&current)?, pending: credential(&url)? })
    }

    pub(crate) async fn rotation_set(&self, id: &str, reference: &str) -> Result<Credential> {
        let r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let (pending, current) = (self.pending(reference)?, self.current(reference)?);
        let p = parse(&pending).ok_or_else(|| err("the pending URL does not parse"))?;
        let c = parse(&current).ok_or_else(|| err(format!("{reference} does not parse")))?;
        let (user, like) = (checked(p.user)?, checked(c.user)?);
        if !logins::generated(p.password) {
            return Err(err("the pending password is not one Skiff made"));
        }
        // A clone of the current user: the same attributes, and a member of what it is
        // a member of (a superuser's clone is a superuser).
        let attrs = self.sql(&r, &logins::attributes_query(like)).await?;
        let row = attrs.first().ok_or_else(|| err(format!("user {like} does not exist in {id}")))?;
        let flags: Vec<&str> = row.iter().map(String::as_str).collect();
        let script = logins::clone_script(user, like, p.password, &r.name, Attributes::from_flags(&flags));
        self.sql(&r, &script).await?;
        credential(&pending)
    }

    pub(crate) async fn rotation_test(&self, id: &str, reference: &str) -> Result<Credential> {
        self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let pending = self.pending(reference)?;
        // A new connection over TCP with the password, as a consumer makes it.
        let out =
            self.tool("psql", &["-d", &pending, "-X", "-q", "-At", "-c", "select current_user"], None, None).await;
        let out = out.map_err(|e| err(format!("the pending login does not work: {e}")))?;
        let cred = credential(&pending)?;
        let who = String::from_utf8_lossy(&out).trim().to_owned();
        if who != cred.user {
            return Err(err(format!("the pending login connected as {who}, not {}", cred.user)));
        }
        Ok(cred)
    }

    pub(crate) async fn rotation_finish(&self, id: &str, reference: &str) -> Result<Credential> {
        let Some(pending) = self.secret(&pending_ref(reference))? else {
            return credential(&self.current(reference)?);
        };
        let current = self.current(reference)?;
        if current != pending {
            self.secrets.put(&format!("{reference}-previous"), &current).map_err(|e| err(e.to_string()))?;
            self.secrets.put(reference, &pending).map_err(|e| err(e.to_string()))?;
        }
        // The instance's own reference follows, so a later restore copies a login that works.
        let own = Self::url_ref(id);
        if own != reference && self.secret(&own)?.is_some() {
            self.secrets.put(&own, &pending).map_err(|e| err(e.to_string()))?;
        }
        self.secrets.delete(&pending_ref(reference)).map_err(|e| err(e.to_string()))?;
        credential(&pending)
    }

    pub(crate) async fn rotation_cancel(&self, _id: &str, reference: &str) -> Result<()> {
        self.secrets.delete(&pending_ref(reference)).map_err(|e| err(e.to_string()))
    }

    pub(crate) async fn disable_login(&self, id: &str, user: &str) -> Result<()> {
        let r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let user = checked(user)?;
        // Without a password nobody logs in as it over TCP; its open sessions stay.
        self.sql(&r, &logins::disable_script(user)).await.map(drop)
    }
}
