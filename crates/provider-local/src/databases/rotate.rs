//! Credential rotation with alternating users, as Secrets Manager's multi-user rotation
//! does it: the consumers' URL names one of two users (`skiff_a`, `skiff_b`; the
//! cluster's first user starts the pair), a rotation gives the *other* one a new
//! password and moves the URL to it, so the login in use is never changed under a
//! consumer. The pending value waits at `<reference>-pending`; the one it replaced is
//! kept at `<reference>-previous`. Skiff itself works over the cluster's socket, so no
//! rotation can lock it out.

use skiff_pluginapi::{Credential, ProviderError, Result, StagedLogin};

use super::{Postgres, err, random_hex};

/// A parsed `postgres://USER:PASSWORD@HOST:PORT/DB`.
struct Url<'a> {
    user: &'a str,
    password: &'a str,
    rest: &'a str,
}

fn parse(url: &str) -> Option<Url<'_>> {
    let after = url.strip_prefix("postgres://")?;
    let (creds, rest) = after.split_once('@')?;
    let (user, password) = creds.split_once(':')?;
    Some(Url { user, password, rest })
}

/// The other user of the pair: `x` → `x_a`, `x_a` → `x_b`, `x_b` → `x_a`.
fn alternate(user: &str) -> String {
    if let Some(base) = user.strip_suffix("_a") {
        format!("{base}_b")
    } else if let Some(base) = user.strip_suffix("_b") {
        format!("{base}_a")
    } else {
        format!("{user}_a")
    }
}

/// A user name safe to put in SQL unquoted-equivalent (`[a-z0-9_]`).
fn checked(user: &str) -> Result<&str> {
    if !user.is_empty() && user.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        Ok(user)
    } else {
        Err(err(format!("database user `{user}` is not [a-z0-9_]; rotate it by hand")))
    }
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
        let next = alternate(checked(u.user)?);
        let url = format!("postgres://{next}:{}@{}", random_hex(16)?, u.rest);
        self.secrets.put(&pending_ref(reference), &url).map_err(|e| err(e.to_string()))?;
        Ok(StagedLogin { current: credential(&current)?, pending: credential(&url)? })
    }

    pub(crate) async fn rotation_set(&self, id: &str, reference: &str) -> Result<Credential> {
        let r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let (pending, current) = (self.pending(reference)?, self.current(reference)?);
        let p = parse(&pending).ok_or_else(|| err("the pending URL does not parse"))?;
        let c = parse(&current).ok_or_else(|| err(format!("{reference} does not parse")))?;
        let (user, like) = (checked(p.user)?, checked(c.user)?);
        if !p.password.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("the pending password is not one Skiff made"));
        }
        // A clone of the current user: the same attributes, and a member of what it is
        // a member of (a superuser's clone is a superuser).
        let attrs = self
            .sql(
                &r,
                &format!(
                    "select rolsuper, rolcreatedb, rolcreaterole, rolreplication from pg_roles where rolname = '{like}'"
                ),
            )
            .await?;
        let row = attrs.first().ok_or_else(|| err(format!("user {like} does not exist in {id}")))?;
        let flag = |i: usize, yes: &str| {
            if row.get(i).map(String::as_str) == Some("t") { yes.to_owned() } else { format!("NO{yes}") }
        };
        let options =
            [flag(0, "SUPERUSER"), flag(1, "CREATEDB"), flag(2, "CREATEROLE"), flag(3, "REPLICATION")].join(" ");
        let script = format!(
            "do $$ begin\n  if not exists (select 1 from pg_roles where rolname = '{user}') then\n    create role {user};\n  end if;\nend $$;\n\
             alter role {user} with login {options} password '{}';\n\
             do $$ declare g text; begin\n  for g in select b.rolname from pg_auth_members m join pg_roles a on a.oid = m.member join pg_roles b on b.oid = m.roleid where a.rolname = '{like}' loop\n    execute format('grant %I to {user}', g);\n  end loop;\nend $$;\n\
             grant all privileges on database \"{}\" to {user};\n",
            p.password, r.name
        );
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

    pub(crate) async fn disable_login(&self, id: &str, user: &str) -> Result<()> {
        let r = self.read_record(id).ok_or_else(|| ProviderError::not_found(format!("database {id}")))?;
        let user = checked(user)?;
        // Without a password nobody logs in as it over TCP; its open sessions stay.
        self.sql(
            &r,
            &format!("do $$ begin\n  if exists (select 1 from pg_roles where rolname = '{user}') then\n    alter role {user} with password null;\n  end if;\nend $$;\n"),
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::{alternate, parse};

    #[test]
    fn users_alternate_in_pairs() {
        assert_eq!(alternate("skiff"), "skiff_a");
        assert_eq!(alternate("skiff_a"), "skiff_b");
        assert_eq!(alternate("skiff_b"), "skiff_a");
    }

    #[test]
    fn urls_parse_into_user_password_and_the_rest() {
        let u = parse("postgres://skiff_a:00ff@127.0.0.1:5432/orders").unwrap();
        assert_eq!((u.user, u.password, u.rest), ("skiff_a", "00ff", "127.0.0.1:5432/orders"));
        assert!(parse("mysql://x").is_none());
    }
}
