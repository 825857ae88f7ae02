//! A CycloneDX 1.5 SBOM: for a Rust artifact, every crate it links, read from
//! `cargo metadata`; otherwise the artifact alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

/// Deterministic urn:uuid for a digest (version 5-shaped).
fn uuid_for(digest_hex: &str) -> String {
    let h = digest_hex.as_bytes();
    let hex: String = h.iter().take(32).map(|b| *b as char).collect();
    format!("urn:uuid:{}-{}-5{}-a{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

/// The SBOM of an artifact built from `dir` (a Cargo project, if there is one).
pub(crate) fn cyclonedx(
    dir: &Path,
    artifact_name: &str,
    digest_hex: &str,
    timestamp: &str,
    tool_version: &str,
) -> Value {
    let metadata = cargo_metadata(dir);
    let (root, components, dependencies) = match &metadata {
        Some(m) => crates(m, artifact_name),
        None => (None, Vec::new(), Vec::new()),
    };
    let component = json!({
        "type": "application",
        "name": artifact_name,
        "version": root.as_ref().and_then(|r| r["version"].as_str()).unwrap_or("unversioned"),
        "bom-ref": format!("artifact:{artifact_name}"),
        "hashes": [{"alg": "SHA-256", "content": digest_hex}],
        "purl": root.as_ref().map(|r| format!("pkg:cargo/{}@{}", r["name"].as_str().unwrap_or(""), r["version"].as_str().unwrap_or(""))),
    });
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": uuid_for(digest_hex),
        "version": 1,
        "metadata": {
            "timestamp": timestamp,
            "tools": {"components": [{"type": "application", "name": "skiff", "version": tool_version}]},
            "component": component,
        },
        "components": components,
        "dependencies": dependencies,
    })
}

fn cargo_metadata(dir: &Path) -> Option<Value> {
    let manifest = dir.ancestors().map(|d| d.join("Cargo.toml")).find(|p| p.exists())?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--manifest-path"])
        .arg(&manifest)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The package that builds `artifact_name`, its crate closure as components, and the
/// dependency graph.
fn crates(m: &Value, artifact_name: &str) -> (Option<Value>, Vec<Value>, Vec<Value>) {
    let packages: BTreeMap<&str, &Value> = m["packages"]
        .as_array()
        .map_or_else(BTreeMap::new, |ps| ps.iter().filter_map(|p| p["id"].as_str().map(|id| (id, p))).collect());
    let builds = |p: &Value| {
        p["targets"].as_array().is_some_and(|ts| {
            ts.iter().any(|t| {
                t["name"] == artifact_name && t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
        })
    };
    let Some((root_id, root)) = packages.iter().find(|(_, p)| builds(p)).map(|(id, p)| (*id, *p)) else {
        return (None, Vec::new(), Vec::new());
    };
    let nodes: BTreeMap<&str, Vec<&str>> = m["resolve"]["nodes"].as_array().map_or_else(BTreeMap::new, |ns| {
        ns.iter()
            .filter_map(|n| {
                let deps = n["deps"]
                    .as_array()?
                    .iter()
                    .filter(|d| d["dep_kinds"].as_array().is_some_and(|ks| ks.iter().any(|k| k["kind"].is_null())))
                    .filter_map(|d| d["pkg"].as_str())
                    .collect();
                Some((n["id"].as_str()?, deps))
            })
            .collect()
    });
    let mut seen = BTreeSet::new();
    let mut stack = vec![root_id];
    while let Some(id) = stack.pop() {
        if seen.insert(id) {
            stack.extend(nodes.get(id).into_iter().flatten());
        }
    }
    let purl =
        |p: &Value| format!("pkg:cargo/{}@{}", p["name"].as_str().unwrap_or(""), p["version"].as_str().unwrap_or(""));
    let components = seen
        .iter()
        .filter(|id| **id != root_id)
        .filter_map(|id| packages.get(id))
        .map(|p| {
            let mut c = json!({"type": "library", "name": p["name"], "version": p["version"], "purl": purl(p), "bom-ref": purl(p)});
            if let Some(l) = p["license"].as_str() {
                c["licenses"] = json!([{"expression": l}]);
            }
            c
        })
        .collect();
    let dependencies = seen
        .iter()
        .filter_map(|id| {
            let p = packages.get(id)?;
            let on: Vec<String> =
                nodes.get(id).into_iter().flatten().filter_map(|d| packages.get(d)).map(|d| purl(d)).collect();
            Some(json!({"ref": purl(p), "dependsOn": on}))
        })
        .collect();
    (Some((*root).clone()), components, dependencies)
}
