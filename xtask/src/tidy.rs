//! Tidy checks, run as tests (`cargo test -p xtask`): the layering DESIGN.md promises,
//! crate hygiene, and generated files that must match the code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::root;

struct Workspace {
    /// package name -> manifest directory, relative to the root
    members: BTreeMap<String, String>,
    /// package id -> (name, normal dependency ids)
    graph: BTreeMap<String, (String, Vec<String>)>,
    ids: BTreeMap<String, String>,
}

fn workspace() -> Workspace {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let root_dir = root().canonicalize().unwrap();
    let mut members = BTreeMap::new();
    let mut ids = BTreeMap::new();
    let member_ids: BTreeSet<&str> =
        meta["workspace_members"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for p in meta["packages"].as_array().unwrap() {
        let id = p["id"].as_str().unwrap();
        let name = p["name"].as_str().unwrap().to_owned();
        if member_ids.contains(id) {
            let dir = PathBuf::from(p["manifest_path"].as_str().unwrap()).parent().unwrap().to_path_buf();
            members.insert(name.clone(), dir.strip_prefix(&root_dir).unwrap_or(&dir).display().to_string());
            ids.insert(name, id.to_owned());
        }
    }
    let mut graph = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let id = node["id"].as_str().unwrap().to_owned();
        let name = meta["packages"].as_array().unwrap().iter().find(|p| p["id"] == node["id"]).unwrap()["name"]
            .as_str()
            .unwrap()
            .to_owned();
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null()))
            .map(|d| d["pkg"].as_str().unwrap().to_owned())
            .collect();
        graph.insert(id, (name, deps));
    }
    Workspace { members, graph, ids }
}

impl Workspace {
    /// Names of everything `package` depends on at run time, transitively.
    fn closure(&self, package: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![self.ids[package].clone()];
        let mut names = BTreeSet::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            let (name, deps) = &self.graph[&id];
            if name != package {
                names.insert(name.clone());
            }
            stack.extend(deps.iter().cloned());
        }
        names
    }

    fn direct(&self, package: &str) -> Vec<String> {
        self.graph[&self.ids[package]].1.iter().map(|id| self.graph[id].0.clone()).collect()
    }

    fn in_dir<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.members.iter().filter(move |(_, dir)| dir.starts_with(prefix)).map(|(n, _)| n)
    }
}

#[test]
fn layering_follows_the_design() {
    let ws = workspace();
    // The pure core does no I/O runtime and no cloud SDK.
    for pure in ["skiff-spec", "skiff-ir", "skiff-compiler"] {
        let bad: Vec<_> = ws
            .closure(pure)
            .into_iter()
            .filter(|d| d == "tokio" || d.starts_with("aws-") || d == "hyper" || d == "object_store")
            .collect();
        assert!(bad.is_empty(), "{pure} must stay pure but depends on {bad:?}");
    }
    let ours: BTreeSet<&String> = ws.members.keys().collect();
    // What plugin authors and clients build against stands alone: pkg/* depends on
    // pkg/* only.
    let public: BTreeSet<&String> = ws.in_dir("pkg/").collect();
    for pkg in ws.in_dir("pkg/") {
        let internal: Vec<_> = ws.direct(pkg).into_iter().filter(|d| ours.contains(d) && !public.contains(d)).collect();
        assert!(internal.is_empty(), "{pkg} (pkg/*) may depend only on other pkg/* crates, not {internal:?}");
    }
    let binaries: BTreeSet<&String> = ws.in_dir("cmd/").collect();
    for lib in ws.in_dir("crates/").chain(ws.in_dir("pkg/")) {
        let up: Vec<_> = ws.closure(lib).into_iter().filter(|d| binaries.contains(d)).collect();
        assert!(up.is_empty(), "{lib} must not depend on binaries {up:?}");
        assert!(
            !ws.direct(lib).iter().any(|d| d == "anyhow"),
            "{lib}: libraries use thiserror; anyhow is for cmd/* only"
        );
    }
}

#[test]
fn binaries_stand_alone_and_stay_thin() {
    let ws = workspace();
    let binaries: BTreeSet<&String> = ws.in_dir("cmd/").collect();
    for bin in &binaries {
        let edges: Vec<_> = ws.direct(bin).into_iter().filter(|d| binaries.contains(d)).collect();
        assert!(edges.is_empty(), "{bin} depends on binaries {edges:?}: move what they share into a crates/* library");
    }
    // The CLI only parses, calls skiff-ops and prints (issue: under 2,500 lines).
    let lines: usize = rust_files(&root().join("cmd/skiff/src"))
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default().lines().count())
        .sum();
    assert!(lines < 2_500, "cmd/skiff/src has {lines} lines: move logic into crates/ops");
}

#[test]
fn every_variable_read_is_declared() {
    // Every SKIFF_*/SKIFFD_* name in the source is declared once in skiff-settings,
    // with its default and meaning (docs/configuration.md is generated from there).
    let mut undeclared = BTreeSet::new();
    for dir in ["cmd", "crates", "pkg", "examples", "xtask"] {
        for path in rust_files(&root().join(dir)) {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for name in variable_names(&text) {
                if skiff_settings::find(&name).is_none() && !skiff_settings::NOT_VARIABLES.contains(&name.as_str()) {
                    undeclared.insert(format!("{name} ({})", path.strip_prefix(root()).unwrap_or(&path).display()));
                }
            }
        }
    }
    assert!(undeclared.is_empty(), "declare these in crates/settings/src/lib.rs: {undeclared:?}");
}

/// `SKIFF_…` and `SKIFFD_…` words in `text`.
fn variable_names(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = (bytes[i..].starts_with(b"SKIFF_") || bytes[i..].starts_with(b"SKIFFD_"))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if starts {
            let end = bytes[i..]
                .iter()
                .position(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_'))
                .map_or(bytes.len(), |e| i + e);
            out.push(String::from_utf8_lossy(&bytes[i..end]).into_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

fn rust_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target" && n != "snapshots") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_crate_inherits_lints_and_has_a_module_doc() {
    let ws = workspace();
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    for (name, dir) in &ws.members {
        let dir = root().join(dir);
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(toml.contains("[lints]\nworkspace = true"), "{name}: add `[lints] workspace = true`");
        for entry in ["src/lib.rs", "src/main.rs"] {
            let path = dir.join(entry);
            if let Ok(text) = std::fs::read_to_string(&path) {
                assert!(text.starts_with("//!"), "{}: start with a `//!` doc saying the crate's job", path.display());
            }
        }
        let library = ["pkg/", "crates/"].iter().any(|p| ws.members[name].starts_with(p));
        if library {
            assert!(manifest.contains(&format!("\n{name} = {{ path")), "{name}: list it in [workspace.dependencies]");
        }
    }
}

#[test]
fn generated_files_are_current() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for (file, want) in crate::codegen::generated(&readme) {
        let have = std::fs::read_to_string(root().join(file)).unwrap_or_default();
        assert!(have == want, "{file} is stale: run `cargo xtask codegen`");
    }
}
