//! Field-level diffs: what a new IR or plan adds, changes and removes, each change
//! named by its field path. Ordered deterministically (by resource, then path).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use skiff_ir::ServiceIr;

use crate::plan::ResourcePlan;

/// What happened to a field or resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// New in the after side.
    Add,
    /// Present on both sides with different values.
    Change,
    /// Gone in the after side.
    Remove,
}

/// One difference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Add, change or remove.
    pub op: Op,
    /// The resource id, for plan diffs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The field path inside the resource (or IR); empty for a whole resource.
    pub path: String,
    /// The old value (absent for `add`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// The new value (absent for `remove`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

impl std::fmt::Display for Change {
    /// `+ id`, `- id`, or `~ id.path: before -> after` (values as compact JSON).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match self.op {
            Op::Add => '+',
            Op::Change => '~',
            Op::Remove => '-',
        };
        let target = match (self.resource.as_deref(), self.path.as_str()) {
            (Some(r), "") => r.to_owned(),
            (Some(r), p) => format!("{r} {p}"),
            (None, p) => p.to_owned(),
        };
        let show = |v: &Option<Value>| v.as_ref().map_or_else(String::new, Value::to_string);
        match self.op {
            Op::Change => write!(f, "{sign} {target}: {} -> {}", show(&self.before), show(&self.after)),
            Op::Add if !self.path.is_empty() => write!(f, "{sign} {target}: {}", show(&self.after)),
            Op::Remove if !self.path.is_empty() => write!(f, "{sign} {target}: {}", show(&self.before)),
            _ => write!(f, "{sign} {target}"),
        }
    }
}

/// The differences between two plans, with counts of whole resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDiff {
    /// Resources added.
    pub add: usize,
    /// Resources changed.
    pub change: usize,
    /// Resources removed.
    pub remove: usize,
    /// Every difference, resource by resource.
    pub changes: Vec<Change>,
}

impl PlanDiff {
    /// Whether the two plans are the same.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Differences between two JSON values, with paths like `a.b[2].c`.
pub fn diff_values(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(String::new(), before, after, &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn walk(path: String, before: &Value, after: &Value, out: &mut Vec<Change>) {
    let change = |op, path: String, b: Option<&Value>, a: Option<&Value>| Change {
        op,
        resource: None,
        path,
        before: b.cloned(),
        after: a.cloned(),
    };
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for k in keys {
                let p = join(&path, k);
                match (b.get(k), a.get(k)) {
                    (Some(x), Some(y)) => walk(p, x, y, out),
                    (Some(x), None) if !x.is_null() => out.push(change(Op::Remove, p, Some(x), None)),
                    (None, Some(y)) if !y.is_null() => out.push(change(Op::Add, p, None, Some(y))),
                    _ => {}
                }
            }
        }
        // Lists of plain values read best as one change: `[5, 25] -> [10, 50]`.
        (Value::Array(b), Value::Array(a)) if b != a && b.iter().chain(a).all(|v| !v.is_object() && !v.is_array()) => {
            out.push(change(Op::Change, path, Some(before), Some(after)));
        }
        (Value::Array(b), Value::Array(a)) => {
            for i in 0..b.len().max(a.len()) {
                let p = format!("{path}[{i}]");
                match (b.get(i), a.get(i)) {
                    (Some(x), Some(y)) => walk(p, x, y, out),
                    (Some(x), None) => out.push(change(Op::Remove, p, Some(x), None)),
                    (None, Some(y)) => out.push(change(Op::Add, p, None, Some(y))),
                    (None, None) => {}
                }
            }
        }
        (Value::Null, a) if !a.is_null() => out.push(change(Op::Add, path, None, Some(a))),
        (b, Value::Null) if !b.is_null() => out.push(change(Op::Remove, path, Some(b), None)),
        (b, a) if b != a => out.push(change(Op::Change, path, Some(b), Some(a))),
        _ => {}
    }
}

/// Differences between two IRs, leaving out the embedded source spec (its effects
/// show in the resolved fields).
pub fn diff_irs(before: &ServiceIr, after: &ServiceIr) -> Vec<Change> {
    let strip = |ir: &ServiceIr| {
        let mut v = serde_json::to_value(ir).expect("IR serializes");
        if let Value::Object(m) = &mut v {
            m.remove("source");
        }
        v
    };
    diff_values(&strip(before), &strip(after))
}

/// Differences between two plans, resource by resource.
pub fn diff_plans(before: &ResourcePlan, after: &ResourcePlan) -> PlanDiff {
    let index = |p: &ResourcePlan| -> BTreeMap<String, Value> {
        p.resources
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(&r.spec).expect("resources serialize");
                if let Value::Object(m) = &mut v {
                    m.insert("depends_on".to_owned(), serde_json::to_value(&r.depends_on).expect("ids serialize"));
                }
                (r.id.clone(), v)
            })
            .collect()
    };
    let (b, a) = (index(before), index(after));
    let ids: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    let mut diff = PlanDiff::default();
    for id in ids {
        let whole = |op, before: Option<&Value>, after: Option<&Value>| Change {
            op,
            resource: Some(id.clone()),
            path: String::new(),
            before: before.cloned(),
            after: after.cloned(),
        };
        match (b.get(id), a.get(id)) {
            (Some(x), Some(y)) => {
                let changes = diff_values(x, y);
                if !changes.is_empty() {
                    diff.change += 1;
                    diff.changes.extend(changes.into_iter().map(|c| Change { resource: Some(id.clone()), ..c }));
                }
            }
            (Some(x), None) => {
                diff.remove += 1;
                diff.changes.push(whole(Op::Remove, Some(x), None));
            }
            (None, Some(y)) => {
                diff.add += 1;
                diff.changes.push(whole(Op::Add, None, Some(y)));
            }
            (None, None) => {}
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_name_nested_fields_and_list_items() {
        let b = json!({"a": {"x": 1, "gone": true}, "l": [1, 2, 3], "o": [{"k": 1}, {"k": 2}]});
        let a = json!({"a": {"x": 2, "new": "v"}, "l": [1, 5], "o": [{"k": 1}]});
        let paths: Vec<(Op, String)> = diff_values(&b, &a).into_iter().map(|c| (c.op, c.path)).collect();
        assert_eq!(
            paths,
            vec![
                (Op::Remove, "a.gone".to_owned()),
                (Op::Add, "a.new".to_owned()),
                (Op::Change, "a.x".to_owned()),
                (Op::Change, "l".to_owned()),
                (Op::Remove, "o[1]".to_owned()),
            ]
        );
    }

    #[test]
    fn null_and_absent_are_the_same() {
        assert!(diff_values(&json!({"a": null}), &json!({})).is_empty());
    }
}
