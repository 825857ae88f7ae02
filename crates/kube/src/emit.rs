//! A small YAML writer for the specs the importer makes: block mappings and lists,
//! plain scalars where YAML reads them back as the same string, double-quoted (JSON
//! escaping, which YAML accepts) everywhere else.

use serde_json::Value;

/// Whether `s` reads back as this string when written plain.
fn plain(s: &str) -> bool {
    let reserved = ["true", "false", "null", "yes", "no", "on", "off", "~", ""];
    !reserved.iter().any(|r| s.eq_ignore_ascii_case(r))
        && s.parse::<f64>().is_err()
        && !s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@` ".contains(c))
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && !s.contains(" #")
        && s.chars().all(|c| !c.is_control())
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) if plain(s) => s.clone(),
        Value::String(s) => Value::String(s.clone()).to_string(),
        other => other.to_string(),
    }
}

/// A scalar inside `[…]`, where `,[]{}` end a plain scalar.
fn flow_scalar(v: &Value) -> String {
    match v {
        Value::String(s) if s.contains([',', '[', ']', '{', '}']) => Value::String(s.clone()).to_string(),
        other => scalar(other),
    }
}

fn write(v: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = scalar(&Value::String(k.clone()));
                match x {
                    Value::Object(inner) if !inner.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        write(x, indent + 1, out);
                    }
                    Value::Array(items) if !items.is_empty() => {
                        if items.iter().all(|i| !i.is_object() && !i.is_array()) {
                            let flow: Vec<String> = items.iter().map(flow_scalar).collect();
                            out.push_str(&format!("{pad}{key}: [{}]\n", flow.join(", ")));
                        } else {
                            out.push_str(&format!("{pad}{key}:\n"));
                            write(x, indent + 1, out);
                        }
                    }
                    Value::Object(_) => out.push_str(&format!("{pad}{key}: {{}}\n")),
                    Value::Array(_) => out.push_str(&format!("{pad}{key}: []\n")),
                    other => out.push_str(&format!("{pad}{key}: {}\n", scalar(other))),
                }
            }
        }
        Value::Array(items) => {
            for i in items {
                match i {
                    Value::Object(m) if !m.is_empty() => {
                        let mut inner = String::new();
                        write(i, indent + 1, &mut inner);
                        let first = inner.trim_start().to_owned();
                        out.push_str(&format!("{pad}- {first}"));
                    }
                    other => out.push_str(&format!("{pad}- {}\n", scalar(other))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// `v` (a mapping) as YAML.
pub(crate) fn yaml(v: &Value) -> String {
    let mut out = String::new();
    write(v, 0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn what_it_writes_reads_back_the_same() {
        let v = json!({
            "service": "web", "run": {"command": ["web", "--port", "${PORT}", "8080", "true"], "env": {"A": "x: y", "B": "", "C": "-1"}},
            "port": 8080, "list": [{"a": 1, "b": {"c": "d"}}, {"e": []}], "empty": {}
        });
        let text = super::yaml(&v);
        let back = skiff_spec::yaml::load(text.as_bytes()).unwrap().to_json();
        assert_eq!(back, v, "{text}");
    }
}
