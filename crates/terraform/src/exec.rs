//! Running the real `terraform` binary for one execution: a working directory of its
//! own (the module's files, `terraform.tfvars.json`, the last state snapshot), Terraform's
//! own locking off (Skiff's lease with its fencing token guards the workspace, so a
//! dead executor leaves no stuck lock), no prompts, no colour, and every command's
//! output kept for the apply log. Failures are told apart: transient ones (throttling,
//! timeouts, a backend briefly unavailable) are worth a retry; a saved plan that no
//! longer applies must be planned again; the rest are permanent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The variables file every execution writes.
pub const VARS_FILE: &str = "terraform.tfvars.json";
/// The local state file.
pub const STATE_FILE: &str = "terraform.tfstate";
/// The saved plan.
pub const PLAN_FILE: &str = "skiff.tfplan";
/// The running Terraform's pid.
const PID_FILE: &str = ".terraform.pid";

/// What kind of failure a Terraform command had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying as it is.
    Transient,
    /// The saved plan no longer applies: plan again (and check again).
    StalePlan,
    /// Retrying will not help.
    Permanent,
}

/// A Terraform command that did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecError {
    /// The command, as run.
    pub command: String,
    /// What kind of failure.
    pub failure: Failure,
    /// The end of its output.
    pub tail: String,
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` failed: {}", self.command, self.tail)
    }
}

/// Phrases of failures that pass by themselves.
const TRANSIENT: &[&str] = &[
    "temporarily unavailable",
    "Throttling",
    "RequestLimitExceeded",
    "TooManyRequests",
    "rate exceeded",
    "i/o timeout",
    "connection reset",
    "TLS handshake timeout",
    "timeout while waiting",
    "ServiceUnavailable",
];

/// Classifies a failed command's output.
pub fn classify(output: &str) -> Failure {
    if output.contains("Saved plan is stale") || output.contains("saved plan is stale") {
        Failure::StalePlan
    } else if TRANSIENT.iter().any(|t| output.contains(t)) {
        Failure::Transient
    } else {
        Failure::Permanent
    }
}

/// One execution's working directory.
#[derive(Clone, Debug)]
pub struct Workdir {
    /// The directory.
    pub dir: PathBuf,
    /// The binary (`terraform` on PATH unless `SKIFF_TERRAFORM` says otherwise).
    pub bin: PathBuf,
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a failed command's output says, without the echo of a provisioner's script:
/// each `Error:` with the resource it is on and the command's own output; the last
/// lines when Terraform printed no diagnostic.
pub fn essence(text: &str) -> String {
    let blocks: Vec<&str> = text.split("\nError: ").skip(1).collect();
    let blocks: Vec<&str> = match text.strip_prefix("Error: ") {
        Some(first) => std::iter::once(first.split("\nError: ").next().unwrap_or_default()).chain(blocks).collect(),
        None => blocks,
    };
    if blocks.is_empty() {
        return tail(text, 8);
    }
    blocks
        .iter()
        .map(|b| {
            let title = b.lines().next().unwrap_or_default().trim();
            let on = b.lines().find_map(|l| l.trim().strip_prefix("with ").map(|w| w.trim_end_matches(',').to_owned()));
            let output = b.rsplit_once("Output: ").map(|(_, o)| o.trim().to_owned());
            let detail = output.unwrap_or_else(|| {
                b.lines().skip(1).map(str::trim).filter(|l| !l.is_empty()).take(3).collect::<Vec<_>>().join(" ")
            });
            match on {
                Some(on) => format!("Error: {title} ({on}): {detail}"),
                None => format!("Error: {title}: {detail}"),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Workdir {
    /// A working directory holding `files` (the module), the variables and the state
    /// to start from. Existing files are replaced; a state already there (from an
    /// interrupted run of the same execution) is kept unless `state` is given.
    pub fn prepare(
        dir: &Path,
        bin: &Path,
        files: &BTreeMap<String, Vec<u8>>,
        vars: &[u8],
        state: Option<&[u8]>,
    ) -> std::io::Result<Workdir> {
        std::fs::create_dir_all(dir)?;
        for (name, bytes) in files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, bytes)?;
        }
        std::fs::write(dir.join(VARS_FILE), vars)?;
        if let Some(s) = state {
            std::fs::write(dir.join(STATE_FILE), s)?;
        }
        // An empty CLI configuration: no plugin downloads configured, no warnings.
        std::fs::write(dir.join(".terraformrc"), "")?;
        Ok(Workdir { dir: dir.to_owned(), bin: bin.to_owned() })
    }

    /// Runs `terraform ARGS`, appending its output to `log`; the exit code and output.
    /// The child's pid is kept in the directory while it runs, so that a resumed
    /// execution can stop a Terraform its killed predecessor left running ([`Workdir::reap`]).
    pub async fn run(&self, args: &[&str], log: &mut String) -> std::io::Result<(i32, String)> {
        let child = tokio::process::Command::new(&self.bin)
            .args(args)
            .current_dir(&self.dir)
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("TF_CLI_CONFIG_FILE", self.dir.join(".terraformrc"))
            .env("CHECKPOINT_DISABLE", "1")
            .envs(skiff_observability::child_env())
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let pid_file = self.dir.join(PID_FILE);
        if let Some(pid) = child.id() {
            std::fs::write(&pid_file, pid.to_string())?;
        }
        let out = child.wait_with_output().await;
        let _ = std::fs::remove_file(&pid_file);
        let out = out?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        log.push_str(&format!("$ terraform {}\n{text}\n", args.join(" ")));
        Ok((out.status.code().unwrap_or(-1), text))
    }

    async fn ok(&self, args: &[&str], log: &mut String) -> Result<String, ExecError> {
        let command = format!("terraform {}", args.join(" "));
        match self.run(args, log).await {
            Ok((0, text)) => Ok(text),
            Ok((_, text)) => {
                let said = essence(&text);
                Err(ExecError { command, failure: classify(&said), tail: said })
            }
            Err(e) => Err(ExecError { command, failure: Failure::Permanent, tail: e.to_string() }),
        }
    }

    /// `terraform init`.
    pub async fn init(&self, log: &mut String) -> Result<(), ExecError> {
        self.ok(&["init", "-input=false", "-no-color", "-lock=false"], log).await.map(drop)
    }

    /// `terraform plan -out` with the variables file; whether it changes anything.
    pub async fn plan(&self, log: &mut String) -> Result<bool, ExecError> {
        let args = [
            "plan",
            "-input=false",
            "-no-color",
            "-lock=false",
            "-detailed-exitcode",
            "-var-file",
            VARS_FILE,
            "-out",
            PLAN_FILE,
        ];
        let command = format!("terraform {}", args.join(" "));
        match self.run(&args, log).await {
            Ok((0, _)) => Ok(false),
            Ok((2, _)) => Ok(true),
            Ok((_, text)) => {
                let said = essence(&text);
                Err(ExecError { command, failure: classify(&said), tail: said })
            }
            Err(e) => Err(ExecError { command, failure: Failure::Permanent, tail: e.to_string() }),
        }
    }

    /// `terraform show -json` of the saved plan.
    pub async fn show_plan(&self, log: &mut String) -> Result<serde_json::Value, ExecError> {
        let mut quiet = String::new();
        let text = self.ok(&["show", "-json", "-no-color", PLAN_FILE], &mut quiet).await?;
        log.push_str(&format!("$ terraform show -json {PLAN_FILE}\n({} bytes of plan JSON)\n", text.len()));
        serde_json::from_str(text.trim()).map_err(|e| ExecError {
            command: format!("terraform show -json {PLAN_FILE}"),
            failure: Failure::Permanent,
            tail: format!("not JSON: {e}"),
        })
    }

    /// `terraform apply` of exactly the saved plan.
    pub async fn apply(&self, log: &mut String) -> Result<(), ExecError> {
        self.ok(&["apply", "-input=false", "-no-color", "-lock=false", "-auto-approve", PLAN_FILE], log).await.map(drop)
    }

    /// Stops a Terraform that an earlier, killed run of this execution left running
    /// (its pid file names it), and waits until it is gone; whether there was one.
    pub async fn reap(&self) -> bool {
        let Some(pid) =
            std::fs::read_to_string(self.dir.join(PID_FILE)).ok().and_then(|p| p.trim().parse::<i32>().ok())
        else {
            return false;
        };
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let ours =
            std::fs::read(proc_dir.join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("terraform"));
        if ours {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let clock = skiff_clock::SystemClock;
            for _ in 0..100 {
                // Gone, or a zombie nobody will reap (its parent died): either way it runs no more.
                let state = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
                if state.is_empty() || state.split_whitespace().nth(2) == Some("Z") {
                    break;
                }
                skiff_clock::Clock::sleep(&clock, std::time::Duration::from_millis(50)).await;
            }
        }
        let _ = std::fs::remove_file(self.dir.join(PID_FILE));
        ours
    }

    /// The state file as it is now.
    pub fn state(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(STATE_FILE)).ok()
    }
}

/// Managed resources of a state, by address: what a change moved between two states.
pub fn resources(state: &[u8]) -> BTreeMap<String, serde_json::Value> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(state) else { return BTreeMap::new() };
    let mut out = BTreeMap::new();
    for r in v["resources"].as_array().map(Vec::as_slice).unwrap_or_default() {
        if r["mode"] != "managed" {
            continue;
        }
        let (Some(kind), Some(name)) = (r["type"].as_str(), r["name"].as_str()) else { continue };
        let prefix = r["module"].as_str().map(|m| format!("{m}.")).unwrap_or_default();
        for inst in r["instances"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let key = match &inst["index_key"] {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => format!("[\"{s}\"]"),
                other => format!("[{other}]"),
            };
            out.insert(format!("{prefix}{kind}.{name}{key}"), inst["attributes"].clone());
        }
    }
    out
}

/// What differs between two states: (created, changed, destroyed) addresses.
pub fn changed(before: &[u8], after: &[u8]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (a, b) = (resources(before), resources(after));
    let created = b.keys().filter(|k| !a.contains_key(*k)).cloned().collect();
    let destroyed = a.keys().filter(|k| !b.contains_key(*k)).cloned().collect();
    let updated = b.iter().filter(|(k, v)| a.get(*k).is_some_and(|old| old != *v)).map(|(k, _)| k.clone()).collect();
    (created, updated, destroyed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_essence_of_an_error_leaves_the_script_out() {
        let out = "terraform_data.marker[\"f\"]: Creating...\n\nError: local-exec provisioner error\n\n  with terraform_data.marker[\"f\"],\n  on main.tf line 35, in resource \"terraform_data\" \"marker\":\n  35:   provisioner \"local-exec\" {\n\nError running command 'echo \"temporarily unavailable\"\nexit 1\n': exit status 1. Output: disk quota exceeded\n";
        let said = essence(out);
        assert_eq!(said, "Error: local-exec provisioner error (terraform_data.marker[\"f\"]): disk quota exceeded");
        assert_eq!(classify(&said), Failure::Permanent);
        assert_eq!(
            essence("Error: Saved plan is stale\n\nThe given plan file can no longer be applied"),
            "Error: Saved plan is stale: The given plan file can no longer be applied"
        );
    }

    #[test]
    fn failures_are_told_apart() {
        assert_eq!(classify("Error: Saved plan is stale"), Failure::StalePlan);
        assert_eq!(classify("api: service temporarily unavailable"), Failure::Transient);
        assert_eq!(classify("Error: local-exec provisioner error"), Failure::Permanent);
    }

    #[test]
    fn state_changes_are_listed_by_address() {
        let s = |names: &[(&str, &str)]| {
            let rs: Vec<serde_json::Value> = names
                .iter()
                .map(|(n, v)| serde_json::json!({"mode": "managed", "type": "terraform_data", "name": n, "instances": [{"attributes": {"input": v}}]}))
                .collect();
            serde_json::to_vec(&serde_json::json!({"version": 4, "resources": rs})).unwrap()
        };
        let (c, u, d) = changed(&s(&[("a", "1"), ("b", "1")]), &s(&[("b", "2"), ("c", "1")]));
        assert_eq!(
            (c, u, d),
            (vec!["terraform_data.c".into()], vec!["terraform_data.b".into()], vec!["terraform_data.a".into()])
        );
    }
}
