//! The loss report: every leaf path of every input object is *mapped* (to which spec
//! field), *warned* (approximated or ignored, with why) or *unsupported* (with what to
//! do). A mapper claims path prefixes as it reads an object; every leaf path takes the
//! longest claim that covers it, else the default rules (object metadata, cluster state,
//! and "no Skiff equivalent" for the rest) — so nothing is dropped silently.

use serde::Serialize;
use serde_json::Value;

/// How a path fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Carried into the spec.
    Mapped,
    /// Approximated or deliberately left out, with why.
    Warned,
    /// Not carried; what to do instead.
    Unsupported,
}

/// One path of one object and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// `Kind/name` of the object.
    pub object: String,
    /// Its file.
    pub file: String,
    /// The path, e.g. `spec.template.spec.containers[0].image`.
    pub path: String,
    /// What became of it.
    pub class: Class,
    /// The spec field (mapped) or the reason and what to do.
    pub note: String,
}

/// Claims over one object's paths.
#[derive(Clone, Debug, Default)]
pub struct Claims(Vec<(String, Class, String)>);

impl Claims {
    /// `prefix` (and everything under it) was carried to `field`.
    pub fn mapped(&mut self, prefix: impl Into<String>, field: impl Into<String>) {
        self.0.push((prefix.into(), Class::Mapped, field.into()));
    }

    /// `prefix` was approximated or left out: `why`.
    pub fn warned(&mut self, prefix: impl Into<String>, why: impl Into<String>) {
        self.0.push((prefix.into(), Class::Warned, why.into()));
    }

    /// `prefix` has no Skiff equivalent: `todo`.
    pub fn unsupported(&mut self, prefix: impl Into<String>, todo: impl Into<String>) {
        self.0.push((prefix.into(), Class::Unsupported, todo.into()));
    }

    fn best(&self, path: &str) -> Option<(Class, String)> {
        self.0
            .iter()
            .filter(|(p, _, _)| covers(p, path))
            .max_by_key(|(p, _, _)| p.len())
            .map(|(_, c, n)| (*c, n.clone()))
    }
}

/// Whether `prefix` is `path` or one of its ancestors.
pub fn covers(prefix: &str, path: &str) -> bool {
    path == prefix
        || (path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), Some(b'.' | b'[')))
        || prefix.is_empty()
}

fn key_segment(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        format!(".{k}")
    } else {
        format!("[{}]", serde_json::Value::String(k.to_owned()))
    }
}

/// Every leaf path of `v` (scalars, empty mappings and lists), in document order.
pub fn leaves(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, x) in m {
                    let seg = key_segment(k);
                    let next =
                        if at.is_empty() { seg.trim_start_matches('.').to_owned() } else { format!("{at}{seg}") };
                    walk(x, next, out);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, format!("{at}[{i}]"), out);
                }
            }
            _ => out.push(at),
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

/// The default for a path no mapper claimed.
fn default_rule(path: &str) -> (Class, String) {
    let under = |p: &str| covers(p, path);
    if under("apiVersion") || under("kind") {
        return (Class::Mapped, "identifies the object".to_owned());
    }
    if under("metadata.labels") || under("spec.template.metadata.labels") {
        return (
            Class::Warned,
            "labels are not carried: Skiff selects a service's instances by service and release".to_owned(),
        );
    }
    if under("metadata.annotations") || under("spec.template.metadata.annotations") {
        return (Class::Warned, "annotations are not carried; note what they configure (ingress class, sidecar injection) and set it up outside Skiff".to_owned());
    }
    if under("metadata.namespace") {
        return (Class::Warned, "namespaces have no Skiff equivalent: service names are unique per state bucket; use one bucket (or environment) per namespace".to_owned());
    }
    let cluster_state = [
        "metadata.uid",
        "metadata.resourceVersion",
        "metadata.creationTimestamp",
        "metadata.generation",
        "metadata.managedFields",
        "metadata.selfLink",
        "metadata.ownerReferences",
        "metadata.finalizers",
        "metadata.generateName",
        "spec.template.metadata.creationTimestamp",
        "status",
    ];
    if cluster_state.iter().any(|p| under(p)) {
        return (Class::Warned, "cluster state, not desired state: ignored".to_owned());
    }
    (Class::Unsupported, "no Skiff equivalent; carry it by hand or drop it".to_owned())
}

/// The entries of one object: every leaf path with its claim or default.
pub fn account(object: &str, file: &str, value: &Value, claims: &Claims) -> Vec<Entry> {
    leaves(value)
        .into_iter()
        .map(|path| {
            let (class, note) = claims.best(&path).unwrap_or_else(|| default_rule(&path));
            Entry { object: object.to_owned(), file: file.to_owned(), path, class, note }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_is_accounted_for_by_its_longest_claim() {
        let v = serde_json::json!({
            "kind": "Deployment", "metadata": {"name": "web", "annotations": {"a.io/x": "1"}},
            "spec": {"template": {"spec": {"containers": [{"image": "x", "ports": [{"containerPort": 80}]}, {"image": "y"}]}}, "paused": false}
        });
        let mut c = Claims::default();
        c.mapped("metadata.name", "service");
        c.warned("spec.template.spec.containers[0].image", "image");
        c.mapped("spec.template.spec.containers[0].ports[0].containerPort", "port");
        c.unsupported("spec.template.spec.containers[1]", "sidecar");
        let e = account("Deployment/web", "f.yaml", &v, &c);
        let got: Vec<(&str, Class)> = e.iter().map(|x| (x.path.as_str(), x.class)).collect();
        assert_eq!(
            got,
            [
                ("kind", Class::Mapped),
                ("metadata.annotations[\"a.io/x\"]", Class::Warned),
                ("metadata.name", Class::Mapped),
                ("spec.paused", Class::Unsupported),
                ("spec.template.spec.containers[0].image", Class::Warned),
                ("spec.template.spec.containers[0].ports[0].containerPort", Class::Mapped),
                ("spec.template.spec.containers[1].image", Class::Unsupported),
            ]
        );
        assert!(covers("spec.a", "spec.a[0].b") && !covers("spec.a", "spec.ab"));
    }
}
