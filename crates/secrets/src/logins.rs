//! Database logins for rotation with alternating users, as Secrets Manager's
//! multi-user rotation does it: the consumers' URL names one of two users (`x_a`,
//! `x_b`; the database's first user `x` starts the pair), and a rotation gives the
//! *other* one a new password and moves the URL to it, so the login in use is never
//! changed under a consumer. Both providers build their SQL here; they differ only in
//! how they reach the database and where the values are kept.

/// A parsed `postgres://USER:PASSWORD@HOST:PORT/DB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginUrl<'a> {
    /// The user.
    pub user: &'a str,
    /// The password.
    pub password: &'a str,
    /// `HOST:PORT/DB` and anything after it.
    pub rest: &'a str,
}

impl<'a> LoginUrl<'a> {
    /// Parses `url`; `None` if it is not `postgres://USER:PASSWORD@…`.
    pub fn parse(url: &'a str) -> Option<Self> {
        let after = url.strip_prefix("postgres://")?;
        let (creds, rest) = after.split_once('@')?;
        let (user, password) = creds.split_once(':')?;
        Some(LoginUrl { user, password, rest })
    }

    /// The same place with another login.
    pub fn with_login(&self, user: &str, password: &str) -> String {
        format!("postgres://{user}:{password}@{}", self.rest)
    }
}

/// The other user of the pair: `x` → `x_a`, `x_a` → `x_b`, `x_b` → `x_a`.
pub fn alternate(user: &str) -> String {
    if let Some(base) = user.strip_suffix("_a") {
        format!("{base}_b")
    } else if let Some(base) = user.strip_suffix("_b") {
        format!("{base}_a")
    } else {
        format!("{user}_a")
    }
}

/// The first user of the pair `user` belongs to (`x_a` → `x`), which owns what the
/// consumers created before the first rotation.
pub fn base(user: &str) -> &str {
    user.strip_suffix("_a").or_else(|| user.strip_suffix("_b")).unwrap_or(user)
}

/// `user` if it is safe to put in SQL as it is (`[a-z0-9_]`, not empty).
pub fn checked(user: &str) -> Option<&str> {
    (!user.is_empty() && user.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
        .then_some(user)
}

/// Whether `password` is one Skiff made (hex), safe inside a SQL literal.
pub fn generated(password: &str) -> bool {
    !password.is_empty() && password.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The query whose one row is `like`'s attributes, in the order [`clone_script`] takes.
pub fn attributes_query(like: &str) -> String {
    format!("select rolsuper, rolcreatedb, rolcreaterole, rolreplication from pg_roles where rolname = '{like}'")
}

/// The role attributes a clone copies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// SUPERUSER.
    pub superuser: bool,
    /// CREATEDB.
    pub createdb: bool,
    /// CREATEROLE.
    pub createrole: bool,
    /// REPLICATION.
    pub replication: bool,
}

impl Attributes {
    /// From the `t`/`f` texts of [`attributes_query`]'s row.
    pub fn from_flags(flags: &[&str]) -> Self {
        let on = |i: usize| flags.get(i).is_some_and(|f| *f == "t" || *f == "true");
        Attributes { superuser: on(0), createdb: on(1), createrole: on(2), replication: on(3) }
    }

    fn options(self) -> String {
        let flag = |on: bool, name: &str| if on { name.to_owned() } else { format!("NO{name}") };
        [
            flag(self.superuser, "SUPERUSER"),
            flag(self.createdb, "CREATEDB"),
            flag(self.createrole, "CREATEROLE"),
            flag(self.replication, "REPLICATION"),
        ]
        .join(" ")
    }
}

/// Makes `user` a login that can do what `like` does, with `password` (a plain
/// password or a SCRAM verifier, already checked safe to quote): created if missing,
/// `like`'s attributes, a member of every role `like` is a member of — and of the
/// pair's first user, so it reaches what that user owns — and every privilege on
/// `database`. Running it again changes nothing more.
pub fn clone_script(user: &str, like: &str, password: &str, database: &str, attrs: Attributes) -> String {
    let first = base(user);
    // Where the admin may not grant the first user (PostgreSQL 16 without ADMIN OPTION
    // on it), the clone still gets everything `like` is a member of.
    let owner = format!(
        "  if '{first}' <> '{user}' and exists (select 1 from pg_roles where rolname = '{first}') then\n    begin\n      execute format('grant %I to %I', '{first}', '{user}');\n    exception when insufficient_privilege or invalid_grant_operation then\n      raise notice 'cannot grant {first} to {user}';\n    end;\n  end if;\n"
    );
    format!(
        "do $$ begin\n  if not exists (select 1 from pg_roles where rolname = '{user}') then\n    create role {user};\n  end if;\nend $$;\n\
         alter role {user} with login {} password '{password}';\n\
         do $$ declare g text; begin\n  for g in select b.rolname from pg_auth_members m join pg_roles a on a.oid = m.member join pg_roles b on b.oid = m.roleid where a.rolname = '{like}' and b.rolname <> '{user}' loop\n    execute format('grant %I to %I', g, '{user}');\n  end loop;\n{owner}end $$;\n\
         grant all privileges on database \"{database}\" to {user};\n",
        attrs.options()
    )
}

/// Takes password login away from `user` (its open sessions stay; the next rotation
/// gives it a new password). Nothing happens if the user does not exist.
pub fn disable_script(user: &str) -> String {
    format!(
        "do $$ begin\n  if exists (select 1 from pg_roles where rolname = '{user}') then\n    alter role {user} with password null;\n  end if;\nend $$;\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_alternate_in_pairs_from_the_first_user() {
        assert_eq!(alternate("skiff"), "skiff_a");
        assert_eq!(alternate("skiff_a"), "skiff_b");
        assert_eq!(alternate("skiff_b"), "skiff_a");
        assert_eq!((base("skiff_a"), base("skiff_b"), base("skiff")), ("skiff", "skiff", "skiff"));
    }

    #[test]
    fn urls_parse_into_user_password_and_the_rest() {
        let u = LoginUrl::parse("postgres://skiff_a:00ff@127.0.0.1:5432/orders").unwrap();
        assert_eq!((u.user, u.password, u.rest), ("skiff_a", "00ff", "127.0.0.1:5432/orders"));
        assert_eq!(u.with_login("skiff_b", "11"), "postgres://skiff_b:11@127.0.0.1:5432/orders");
        assert!(LoginUrl::parse("mysql://x").is_none());
    }

    #[test]
    fn only_plain_names_and_generated_passwords_reach_sql() {
        assert_eq!(checked("skiff_a"), Some("skiff_a"));
        assert_eq!(checked("Robert'); drop table x;--"), None);
        assert_eq!(checked(""), None);
        assert!(generated("00ffaa") && !generated("x'y") && !generated(""));
    }

    #[test]
    fn a_clone_copies_attributes_and_joins_the_first_user() {
        let attrs = Attributes::from_flags(&["f", "t", "t", "f"]);
        let s = clone_script("skiff_a", "skiff", "pw", "orders", attrs);
        assert!(
            s.contains("alter role skiff_a with login NOSUPERUSER CREATEDB CREATEROLE NOREPLICATION password 'pw'")
        );
        assert!(s.contains("grant %I to %I', 'skiff', 'skiff_a'"), "{s}");
        assert!(s.contains("grant all privileges on database \"orders\" to skiff_a"));
        let second = clone_script("skiff_b", "skiff_a", "pw", "orders", attrs);
        assert!(second.contains("'skiff', 'skiff_b'"), "{second}");
        assert!(disable_script("skiff_a").contains("alter role skiff_a with password null"));
    }
}
