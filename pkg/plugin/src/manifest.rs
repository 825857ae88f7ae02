//! The manifest beside a plugin (`plugin.yaml`): who it is, what it offers, and the
//! digest its executable must have.

use serde::{Deserialize, Serialize};
use skiff_spec::SpecError;
use skiff_spec::values::{Duration, Sha256Hex};

/// The manifest's file name inside a plugin's directory.
pub const MANIFEST_FILE: &str = "plugin.yaml";

/// A plugin's manifest.
///
/// ```yaml
/// plugin: changelog
/// version: 0.1.0
/// protocol: 1
/// executable: bin/skiff-plugin-changelog   # relative to this file
/// args: [--file, /var/log/deploys.md]
/// sha256: 5f1c…                             # of the executable
/// steps: [changelog.append]
/// checks: [changelog.writable]
/// addons: [changelog.env]
/// recipes: [changelog.service]
/// deadline: 30s
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Its name: lowercase letters, digits and `-`; the prefix of every kind it offers.
    pub plugin: String,
    /// Its version, as it reports it.
    pub version: String,
    /// The protocol version it speaks.
    pub protocol: u32,
    /// One line for `skiff plugin list`.
    #[serde(default)]
    pub description: Option<String>,
    /// The executable, relative to the manifest's directory (or absolute).
    pub executable: String,
    /// Arguments it is started with.
    #[serde(default)]
    pub args: Vec<String>,
    /// The sha256 of the executable: anything else is refused.
    pub sha256: Sha256Hex,
    /// Saga step kinds it serves, each `PLUGIN.NAME`.
    #[serde(default)]
    pub steps: Vec<String>,
    /// Doctor checks it serves, each `PLUGIN.NAME`.
    #[serde(default)]
    pub checks: Vec<String>,
    /// Runtime addons it serves, each `PLUGIN.NAME` (a spec's `addons:`).
    #[serde(default)]
    pub addons: Vec<String>,
    /// Recipes it serves, each `PLUGIN.NAME` (`skiff init plugin RECIPE NAME`).
    #[serde(default)]
    pub recipes: Vec<String>,
    /// How long one call may take before the plugin is stopped (default 30s; a run
    /// step also ends at its own step timeout).
    #[serde(default)]
    pub deadline: Option<Duration>,
}

/// A manifest that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// It is not a valid YAML manifest (a type or an unknown field, with line:column).
    #[error(transparent)]
    Syntax(#[from] SpecError),
    /// A field holds a value the protocol does not allow.
    #[error("{file}: `{field}` {message}; {fix}")]
    Field {
        /// The manifest file.
        file: String,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
        /// What to do.
        fix: String,
    },
}

/// The default per-call deadline.
pub(crate) const DEFAULT_DEADLINE_MS: u64 = 30_000;

impl Manifest {
    /// Reads a manifest: YAML errors carry line:column, field errors the field.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest = skiff_spec::from_yaml(file, bytes)?;
        m.check(file)?;
        Ok(m)
    }

    /// Reads a manifest whose `executable` and `sha256` are given here instead (what
    /// `skiff plugin install --pin` records for a plugin you built yourself): the
    /// file's own values for them, placeholders included, are replaced.
    pub fn parse_pinned(file: &str, bytes: &[u8], executable: &str, sha256: &str) -> Result<Manifest, ManifestError> {
        let mut v: serde_json::Value = skiff_spec::from_yaml(file, bytes)?;
        if let Some(map) = v.as_object_mut() {
            map.insert("executable".to_owned(), executable.into());
            map.insert("sha256".to_owned(), sha256.into());
        }
        let m: Manifest = serde_json::from_value(v).map_err(|e| ManifestError::Field {
            file: file.to_owned(),
            field: "(manifest)".to_owned(),
            message: e.to_string(),
            fix: "see the manifest format in `skiff plugin --help`".to_owned(),
        })?;
        m.check(file)?;
        Ok(m)
    }

    /// The manifest as YAML (what `skiff plugin install` writes).
    pub fn to_yaml(&self) -> String {
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let list = |l: &[String]| format!("[{}]", l.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "));
        let mut out =
            format!("plugin: {}\nversion: {}\nprotocol: {}\n", q(&self.plugin), q(&self.version), self.protocol);
        if let Some(d) = &self.description {
            out.push_str(&format!("description: {}\n", q(d)));
        }
        out.push_str(&format!(
            "executable: {}\nargs: {}\nsha256: {}\nsteps: {}\nchecks: {}\naddons: {}\nrecipes: {}\n",
            q(&self.executable),
            list(&self.args),
            self.sha256,
            list(&self.steps),
            list(&self.checks),
            list(&self.addons),
            list(&self.recipes)
        ));
        if let Some(d) = self.deadline {
            out.push_str(&format!("deadline: {d}\n"));
        }
        out
    }

    /// The per-call deadline, in milliseconds.
    pub fn deadline_ms(&self) -> u64 {
        self.deadline.map_or(DEFAULT_DEADLINE_MS, Duration::as_millis)
    }

    fn check(&self, file: &str) -> Result<(), ManifestError> {
        let field = |field: &str, message: String, fix: &str| ManifestError::Field {
            file: file.to_owned(),
            field: field.to_owned(),
            message,
            fix: fix.to_owned(),
        };
        if !is_name(&self.plugin) {
            return Err(field(
                "plugin",
                format!("is `{}`, not a name", self.plugin),
                "use lowercase letters, digits and `-`, starting with a letter (at most 40)",
            ));
        }
        if self.protocol != crate::PROTOCOL {
            return Err(field(
                "protocol",
                format!("is {}; this Skiff speaks plugin protocol {}", self.protocol, crate::PROTOCOL),
                "build the plugin against this Skiff's skiff-plugin crate",
            ));
        }
        if self.executable.trim().is_empty() {
            return Err(field("executable", "is empty".to_owned(), "name the plugin's executable file"));
        }
        let all =
            [("steps", &self.steps), ("checks", &self.checks), ("addons", &self.addons), ("recipes", &self.recipes)];
        if all.iter().all(|(_, k)| k.is_empty()) {
            return Err(field(
                "steps",
                "`checks`, `addons` and `recipes` are all empty: the plugin offers nothing".to_owned(),
                "list the step kinds, doctor checks, addons and recipes it serves",
            ));
        }
        for (name, kinds) in all {
            for (i, kind) in kinds.iter().enumerate() {
                let ok = kind.strip_prefix(&self.plugin).and_then(|rest| rest.strip_prefix('.')).is_some_and(is_name);
                if !ok {
                    return Err(field(
                        &format!("{name}[{i}]"),
                        format!("is `{kind}`, not `{}.NAME`", self.plugin),
                        "prefix every kind with the plugin's name: a plugin cannot replace Skiff's own steps",
                    ));
                }
            }
        }
        if self.deadline.is_some_and(|d| d.as_millis() < 100) {
            return Err(field("deadline", "is under 100ms".to_owned(), "give each call at least 100ms"));
        }
        Ok(())
    }
}

fn is_name(s: &str) -> bool {
    s.len() <= 40
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "plugin: changelog\nversion: 0.1.0\nprotocol: 1\nexecutable: bin/p\n\
        sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\
        steps: [changelog.append]\nchecks: [changelog.writable]\ndeadline: 5s\n";

    #[test]
    fn a_good_manifest_parses() {
        let m = Manifest::parse("plugin.yaml", GOOD.as_bytes()).unwrap();
        assert_eq!(m.deadline_ms(), 5_000);
        assert_eq!(m.steps, ["changelog.append"]);
    }

    #[test]
    fn pinned_manifests_replace_placeholders_and_round_trip_as_yaml() {
        let text = GOOD.replace("executable: bin/p", "executable: EXECUTABLE").replace(&"a".repeat(64), "SHA256");
        assert!(Manifest::parse("p.yaml", text.as_bytes()).is_err());
        let m = Manifest::parse_pinned("p.yaml", text.as_bytes(), "/opt/p", &"b".repeat(64)).unwrap();
        assert_eq!(m.executable, "/opt/p");
        assert_eq!(Manifest::parse("again.yaml", m.to_yaml().as_bytes()).unwrap(), m);
    }

    #[test]
    fn bad_manifests_name_the_field() {
        let e = Manifest::parse("p.yaml", GOOD.replace("changelog.append", "deploy.shift").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("`steps[0]` is `deploy.shift`"), "{e}");
        let e = Manifest::parse("p.yaml", GOOD.replace("protocol: 1", "protocol: 2").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("plugin protocol 1"), "{e}");
        let e = Manifest::parse("p.yaml", GOOD.replace("sha256: a", "sha256: x").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("p.yaml:5"), "{e}");
        let e = Manifest::parse("p.yaml", format!("{GOOD}color: red\n").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("color"), "{e}");
    }
}
