//! `skiff adopt terraform`: which of a Terraform state's resources are a Skiff
//! service's. A state file (format version 4) or `terraform show -json` output is read
//! into its managed resources; each is the service's when its `skiff:service` and
//! `skiff:logical-id` tags say so (as `generate` writes them) or when its type and
//! name are what Skiff would name that resource of a known service (a hand-written
//! module); the rest is external.

use serde::Serialize;
use serde_json::Value;

use crate::Generated;

/// A managed resource of a Terraform state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TfResource {
    /// `aws_iam_role.web` (with `module.x.` in front inside a module).
    pub address: String,
    /// `aws_iam_role`.
    pub kind: String,
    /// Its attributes (`values` in `terraform show -json`).
    pub attributes: Value,
}

/// Why a file could not be read as a Terraform state.
#[derive(Debug, PartialEq, Eq)]
pub struct ReadError {
    /// The file as shown.
    pub file: String,
    /// What is wrong, with a position where there is one.
    pub why: String,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.why)
    }
}

/// A state file: its description (`terraform.tfstate, lineage …, serial 7`) and resources.
pub fn read_state(file: &str, bytes: &[u8]) -> Result<(String, Vec<TfResource>), ReadError> {
    let bad = |why: String| ReadError { file: file.to_owned(), why };
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("line {} column {}: not JSON ({e})", e.line(), e.column())))?;
    if let Some(values) = v.get("values") {
        // `terraform show -json`.
        let mut out = Vec::new();
        if let Some(root) = values.get("root_module") {
            module(root, &mut out);
        }
        let version = v["terraform_version"].as_str().unwrap_or("?");
        return Ok((format!("{file} (terraform show -json, Terraform {version})"), out));
    }
    match v.get("version").and_then(Value::as_u64) {
        Some(4) => {}
        Some(n) => return Err(bad(format!("state format version {n}; Skiff reads version 4 (Terraform ≥ 0.12)"))),
        None => {
            return Err(bad(
                "neither a Terraform state (`version`: 4) nor `terraform show -json` output (`values`)".to_owned()
            ));
        }
    }
    let mut out = Vec::new();
    for (i, r) in v["resources"].as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
        if r["mode"] != "managed" {
            continue;
        }
        let (Some(kind), Some(name)) = (r["type"].as_str(), r["name"].as_str()) else {
            return Err(bad(format!("resources[{i}] has no `type` or `name`")));
        };
        let prefix = r["module"].as_str().map(|m| format!("{m}.")).unwrap_or_default();
        for inst in r["instances"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let key = match &inst["index_key"] {
                Value::Null => String::new(),
                Value::String(s) => format!("[\"{s}\"]"),
                other => format!("[{other}]"),
            };
            out.push(TfResource {
                address: format!("{prefix}{kind}.{name}{key}"),
                kind: kind.to_owned(),
                attributes: inst["attributes"].clone(),
            });
        }
    }
    let lineage = v["lineage"].as_str().unwrap_or("?");
    let serial = v["serial"].as_u64().unwrap_or(0);
    Ok((format!("{file} (lineage {lineage}, serial {serial})"), out))
}

fn module(m: &Value, out: &mut Vec<TfResource>) {
    for r in m["resources"].as_array().map(Vec::as_slice).unwrap_or_default() {
        if r["mode"] != "managed" {
            continue;
        }
        if let (Some(address), Some(kind)) = (r["address"].as_str(), r["type"].as_str()) {
            out.push(TfResource {
                address: address.to_owned(),
                kind: kind.to_owned(),
                attributes: r["values"].clone(),
            });
        }
    }
    for child in m["child_modules"].as_array().map(Vec::as_slice).unwrap_or_default() {
        module(child, out);
    }
}

/// A resource with the service it belongs to (if any) and its logical id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Adopted {
    /// Terraform's address.
    pub address: String,
    /// The service it belongs to; `None` for external resources.
    pub service: Option<String>,
    /// Skiff's logical id.
    pub logical_id: Option<String>,
    /// Its cloud name.
    pub name: String,
    /// How it was recognized: `tags`, `name`, or `none`.
    pub matched_by: &'static str,
}

fn tag<'a>(attrs: &'a Value, key: &str) -> Option<&'a str> {
    attrs["tags"].get(key).or_else(|| attrs["tags_all"].get(key)).and_then(Value::as_str)
}

/// The name a resource is known by in the cloud.
fn cloud_name(r: &TfResource) -> String {
    let a = &r.attributes;
    let s = |k: &str| a[k].as_str().map(str::to_owned);
    match r.kind.as_str() {
        "aws_db_instance" => s("identifier"),
        "aws_iam_role_policy" => s("role").map(|role| format!("{role}:{}", a["name"].as_str().unwrap_or("?"))),
        "aws_lb_listener" => s("load_balancer_arn")
            .and_then(|arn| arn.split("loadbalancer/app/").nth(1).and_then(|t| t.split('/').next()).map(str::to_owned))
            .map(|lb| format!("{lb}:{}", a["port"])),
        _ => s("name"),
    }
    .unwrap_or_default()
}

/// What a declared resource is called for matching: the role policy by role and name.
fn declared_name(address: &str, name: &str, generated: &Generated) -> String {
    if address.starts_with("aws_iam_role_policy.") {
        let role = generated
            .resources
            .iter()
            .find(|d| d.address.starts_with("aws_iam_role."))
            .map(|d| d.name.clone())
            .unwrap_or_default();
        return format!("{role}:{name}");
    }
    name.to_owned()
}

/// Classifies every resource against the known services' generated modules.
pub fn classify(resources: &[TfResource], known: &[(String, Generated)]) -> Vec<Adopted> {
    resources
        .iter()
        .map(|r| {
            let name = cloud_name(r);
            if let (Some(service), Some(id)) =
                (tag(&r.attributes, "skiff:service"), tag(&r.attributes, "skiff:logical-id"))
            {
                return Adopted {
                    address: r.address.clone(),
                    service: Some(service.to_owned()),
                    logical_id: Some(id.to_owned()),
                    name,
                    matched_by: "tags",
                };
            }
            for (service, generated) in known {
                let hit = generated.resources.iter().find(|d| {
                    d.address.split('.').next() == Some(r.kind.as_str())
                        && declared_name(&d.address, &d.name, generated) == name
                });
                if let Some(d) = hit {
                    return Adopted {
                        address: r.address.clone(),
                        service: Some(service.clone()),
                        logical_id: Some(d.logical_id.clone()),
                        name,
                        matched_by: "name",
                    };
                }
            }
            Adopted { address: r.address.clone(), service: None, logical_id: None, name, matched_by: "none" }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_read_and_bad_input_names_the_file() {
        let state = br#"{"version": 4, "lineage": "l-1", "serial": 3, "resources": [
            {"mode": "managed", "type": "aws_iam_role", "name": "web", "instances": [{"attributes": {"name": "skiff-production-web"}}]},
            {"mode": "data", "type": "aws_vpc", "name": "default", "instances": [{"attributes": {}}]}]}"#;
        let (source, rs) = read_state("terraform.tfstate", state).unwrap();
        assert_eq!(source, "terraform.tfstate (lineage l-1, serial 3)");
        assert_eq!(rs.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(), ["aws_iam_role.web"]);
        let show = br#"{"format_version": "1.0", "terraform_version": "1.11.4", "values": {"root_module": {
            "resources": [{"address": "aws_lb.web", "mode": "managed", "type": "aws_lb", "name": "web", "values": {"name": "skiff-web"}}],
            "child_modules": [{"resources": [{"address": "module.m.aws_iam_role.x", "mode": "managed", "type": "aws_iam_role", "name": "x", "values": {}}]}]}}}"#;
        let (_, rs) = read_state("show.json", show).unwrap();
        assert_eq!(
            rs.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(),
            ["aws_lb.web", "module.m.aws_iam_role.x"]
        );
        assert!(read_state("x.tfstate", b"{\"version\": 3}").unwrap_err().why.contains("version 3"));
        assert!(read_state("x.tfstate", b"{\n  oops").unwrap_err().to_string().starts_with("x.tfstate: line 2"));
        assert!(read_state("x.json", b"{}").unwrap_err().why.contains("neither"));
    }
}
