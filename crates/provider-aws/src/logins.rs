//! Credential rotation on RDS and Secrets Manager, the four steps of Secrets
//! Manager's multi-user rotation with its own staging labels: create stages the new
//! value as `AWSPENDING` (the other of two alternating users, a new password; the
//! instances keep reading `AWSCURRENT`), set clones the current user into it in the
//! engine, test logs in with it, finish writes it as the new `AWSCURRENT` (the one it
//! replaced becomes `AWSPREVIOUS` and is kept as `<key>-previous` too) and takes the
//! `AWSPENDING` label away. The SQL is `skiff_secrets::logins`, run as the instance's
//! master user over [`crate::pg`]. Disabling the master user gives it a new password
//! (staged as `password-next` first, so a crash never locks Skiff out).

use std::collections::BTreeMap;

use aws_sdk_rds::types::DbInstance;
use skiff_pluginapi::{Credential, ProviderError, Result, StagedLogin};
use skiff_secrets::logins::{self, Attributes, LoginUrl};

use crate::pg::{Session, Target, verifier};
use crate::{AwsProvider, code, fail, names};

const PENDING: &str = "AWSPENDING";
const USER: &str = "skiff";

fn err(message: impl Into<String>) -> ProviderError {
    ProviderError::new(message, false)
}

fn split(reference: &str) -> Result<(&str, &str)> {
    names::parse_secret_ref(reference)
        .ok_or_else(|| err(format!("{reference} is not a secret reference; write secret://NAME/KEY")))
}

fn credential(url: &str) -> Result<Credential> {
    let u = LoginUrl::parse(url).ok_or_else(|| err("a connection URL is not postgres://USER:PASSWORD@HOST:PORT/DB"))?;
    Ok(Credential { user: u.user.to_owned(), version: skiff_secrets::version(url) })
}

fn checked(user: &str) -> Result<&str> {
    logins::checked(user).ok_or_else(|| err(format!("database user `{user}` is not [a-z0-9_]; rotate it by hand")))
}

fn sql_error(what: &str, e: &tokio_postgres::Error) -> ProviderError {
    let why = e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned());
    ProviderError::new(format!("{what}: {why}"), e.as_db_error().is_none())
}

impl AwsProvider {
    /// The secret `skiff/NAME` at a staging label, with its version id.
    async fn staged(&self, name: &str, stage: &str) -> Result<Option<(String, BTreeMap<String, String>)>> {
        let id = names::secret(name);
        match self.c.secrets.get_secret_value().secret_id(&id).version_stage(stage).send().await {
            Ok(v) => {
                let map = serde_json::from_str(v.secret_string().unwrap_or("{}"))
                    .map_err(|_| err(format!("secret {id} ({stage}) is not a JSON object of strings")))?;
                Ok(Some((v.version_id().unwrap_or_default().to_owned(), map)))
            }
            Err(e) if code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(fail(&format!("read secret {id} ({stage})"), e)),
        }
    }

    /// The current and pending values of `reference`; the pending one only if it differs.
    async fn values(&self, reference: &str) -> Result<(String, Option<(String, String)>)> {
        let (name, key) = split(reference)?;
        let current = self
            .secret_map(name)
            .await?
            .and_then(|m| m.get(key).cloned())
            .ok_or_else(|| ProviderError::not_found(reference.to_owned()))?;
        let pending = self
            .staged(name, PENDING)
            .await?
            .and_then(|(v, m)| m.get(key).cloned().map(|url| (v, url)))
            .filter(|(_, url)| *url != current);
        Ok((current, pending))
    }

    async fn instance(&self, id: &str) -> Result<DbInstance> {
        self.db(id).await?.ok_or_else(|| ProviderError::not_found(format!("database {id}")))
    }

    fn target_of(&self, d: &DbInstance) -> Target {
        let e = d.endpoint();
        self.target(
            d.db_instance_identifier().unwrap_or_default(),
            e.and_then(|e| e.address()).unwrap_or_default(),
            e.and_then(|e| e.port()).and_then(|p| u16::try_from(p).ok()).unwrap_or(5432),
            d.db_name().unwrap_or("postgres"),
        )
    }

    /// A session as the instance's master user (its password in `skiff/ID`, or the
    /// `password-next` a master rotation staged before it crashed).
    async fn admin(&self, d: &DbInstance) -> Result<Session> {
        let id = d.db_instance_identifier().unwrap_or_default();
        let map = self.secret_map(id).await?.unwrap_or_default();
        let master = d.master_username().unwrap_or(USER);
        let pass = map.get("password").ok_or_else(|| err(format!("secret://{id}/password is gone")))?;
        let t = self.target_of(d);
        match (self.login(&t, master, pass).await, map.get("password-next")) {
            (Ok(s), _) => Ok(s),
            (Err(_), Some(next)) => self.login(&t, master, next).await,
            (Err(e), None) => Err(e),
        }
    }

    pub(crate) async fn rotation_create(&self, id: &str, reference: &str) -> Result<StagedLogin> {
        let (current, pending) = self.values(reference).await?;
        if let Some((_, url)) = pending {
            return Ok(StagedLogin { current: credential(&current)?, pending: credential(&url)? });
        }
        self.instance(id).await?;
        let u = LoginUrl::parse(&current)
            .ok_or_else(|| err(format!("{reference} is not postgres://USER:PASSWORD@HOST:PORT/DB")))?;
        let url = u.with_login(&logins::alternate(checked(u.user)?), &crate::database::password()?);
        let (name, key) = split(reference)?;
        let mut map = self.secret_map(name).await?.unwrap_or_default();
        map.insert(key.to_owned(), url.clone());
        let body = serde_json::to_string(&map).map_err(|e| err(e.to_string()))?;
        let id_ = names::secret(name);
        self.c
            .secrets
            .put_secret_value()
            .secret_id(&id_)
            .secret_string(body)
            .version_stages(PENDING)
            .send()
            .await
            .map_err(|e| fail(&format!("stage a pending value of {id_}"), e))?;
        Ok(StagedLogin { current: credential(&current)?, pending: credential(&url)? })
    }

    pub(crate) async fn rotation_set(&self, id: &str, reference: &str) -> Result<Credential> {
        let (current, pending) = self.values(reference).await?;
        let (_, pending) = pending
            .ok_or_else(|| err(format!("nothing is pending for {reference}: the rotation's first step stages it")))?;
        let p = LoginUrl::parse(&pending).ok_or_else(|| err("the pending URL does not parse"))?;
        let c = LoginUrl::parse(&current).ok_or_else(|| err(format!("{reference} does not parse")))?;
        let (user, like) = (checked(p.user)?, checked(c.user)?);
        if !logins::generated(p.password) {
            return Err(err("the pending password is not one Skiff made"));
        }
        let d = self.instance(id).await?;
        let s = self.admin(&d).await?;
        let row = s
            .client
            .query_opt(&logins::attributes_query(like), &[])
            .await
            .map_err(|e| sql_error(&format!("read user {like}"), &e))?
            .ok_or_else(|| err(format!("user {like} does not exist in {id}")))?;
        let flag = |i: usize| row.try_get::<_, bool>(i).unwrap_or(false);
        let attrs = Attributes { superuser: flag(0), createdb: flag(1), createrole: flag(2), replication: flag(3) };
        let script = logins::clone_script(user, like, &verifier(p.password), d.db_name().unwrap_or("postgres"), attrs);
        s.client.batch_execute(&script).await.map_err(|e| sql_error(&format!("set up user {user}"), &e))?;
        credential(&pending)
    }

    pub(crate) async fn rotation_test(&self, id: &str, reference: &str) -> Result<Credential> {
        let (_, pending) = self.values(reference).await?;
        let (_, pending) = pending.ok_or_else(|| err(format!("nothing is pending for {reference}")))?;
        let p = LoginUrl::parse(&pending).ok_or_else(|| err("the pending URL does not parse"))?;
        let d = self.instance(id).await?;
        let s = self.login(&self.target_of(&d), p.user, p.password).await?;
        let who: String =
            s.client.query_one("select current_user::text", &[]).await.map_err(|e| sql_error("who am I", &e))?.get(0);
        if who != p.user {
            return Err(err(format!("the pending login connected as {who}, not {}", p.user)));
        }
        credential(&pending)
    }

    pub(crate) async fn rotation_finish(&self, _id: &str, reference: &str) -> Result<Credential> {
        let (name, key) = split(reference)?;
        let (current, pending) = self.values(reference).await?;
        let Some((version, pending)) = pending else {
            // Finished already, or nothing was staged; a label left on the current value goes.
            if let Some((v, _)) = self.staged(name, PENDING).await? {
                self.unstage(name, &v).await?;
            }
            return credential(&current);
        };
        let mut map = self.secret_map(name).await?.unwrap_or_default();
        map.insert(format!("{key}-previous"), current);
        map.insert(key.to_owned(), pending.clone());
        self.write_secret_map(name, &map, true).await?;
        self.unstage(name, &version).await?;
        credential(&pending)
    }

    pub(crate) async fn rotation_cancel(&self, reference: &str) -> Result<()> {
        let (name, _) = split(reference)?;
        if let Some((v, _)) = self.staged(name, PENDING).await? {
            self.unstage(name, &v).await?;
        }
        Ok(())
    }

    async fn unstage(&self, name: &str, version: &str) -> Result<()> {
        let id = names::secret(name);
        self.c
            .secrets
            .update_secret_version_stage()
            .secret_id(&id)
            .version_stage(PENDING)
            .remove_from_version_id(version)
            .send()
            .await
            .map(drop)
            .map_err(|e| fail(&format!("remove {PENDING} from {id}"), e))
    }

    pub(crate) async fn disable_login(&self, id: &str, user: &str) -> Result<()> {
        let user = checked(user)?;
        let d = self.instance(id).await?;
        if d.master_username() != Some(user) {
            let s = self.admin(&d).await?;
            return s
                .client
                .batch_execute(&logins::disable_script(user))
                .await
                .map_err(|e| sql_error(&format!("disable {user}"), &e));
        }
        // The master user keeps logging in (Skiff's admin): a new password instead,
        // staged before the engine learns it.
        let mut map = self.secret_map(id).await?.unwrap_or_default();
        let next = match map.get("password-next") {
            Some(n) => n.clone(),
            None => {
                let n = crate::database::password()?;
                map.insert("password-next".to_owned(), n.clone());
                self.write_secret_map(id, &map, true).await?;
                n
            }
        };
        let s = self.admin(&d).await?;
        s.client
            .batch_execute(&format!("alter role {user} with password '{}'", verifier(&next)))
            .await
            .map_err(|e| sql_error(&format!("give {user} a new password"), &e))?;
        map.insert("password".to_owned(), next);
        map.remove("password-next");
        self.write_secret_map(id, &map, true).await
    }
}
