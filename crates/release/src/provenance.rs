//! A SLSA v1 provenance in-toto statement: what was built, from what, how, by whom.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

/// What went into a build.
#[derive(Debug, Clone)]
pub struct BuildFacts<'a> {
    /// Artifact file name.
    pub artifact_name: &'a str,
    /// Its sha256 hex.
    pub digest_hex: &'a str,
    /// The service.
    pub service: &'a str,
    /// The spec file.
    pub spec_path: &'a str,
    /// The build command, if one ran.
    pub build: Option<&'a str>,
    /// The compiled IR digest.
    pub spec_digest: &'a str,
    /// Build start and end (RFC 3339).
    pub started: &'a str,
    /// End of the build.
    pub finished: &'a str,
    /// Skiff's version.
    pub tool_version: &'a str,
    /// A unique id for this invocation.
    pub invocation: &'a str,
}

/// The statement for one build run in `dir`.
pub(crate) fn slsa(dir: &Path, f: &BuildFacts<'_>) -> Value {
    let mut resolved = vec![json!({"uri": format!("skiff-spec:{}", f.spec_path), "digest": {"sha256": f.spec_digest}})];
    if let Some((url, commit)) = git_source(dir) {
        resolved.push(json!({"uri": format!("git+{url}"), "digest": {"gitCommit": commit}}));
    }
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f.artifact_name, "digest": {"sha256": f.digest_hex}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://skiff.dev/buildtypes/spec-build@v1",
                "externalParameters": {"service": f.service, "spec": f.spec_path, "build": f.build},
                "internalParameters": {"skiff": f.tool_version},
                "resolvedDependencies": resolved,
            },
            "runDetails": {
                "builder": {"id": format!("https://skiff.dev/builders/skiff-cli@{}", f.tool_version)},
                "metadata": {"invocationId": f.invocation, "startedOn": f.started, "finishedOn": f.finished},
            },
        },
    })
}

/// The git remote (or local path) and commit of `dir`, if it is in a repository.
fn git_source(dir: &Path) -> Option<(String, String)> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).current_dir(dir).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|s| !s.is_empty())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let url = git(&["config", "--get", "remote.origin.url"])
        .or_else(|| git(&["rev-parse", "--show-toplevel"]).map(|t| format!("file://{t}")))?;
    Some((url, commit))
}
