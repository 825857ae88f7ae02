//! A small HCL writer whose output is already in `terraform fmt`'s shape: two-space
//! indents, the equals signs of consecutive one-line attributes aligned, one blank
//! line between top-level blocks, and multi-line values set apart by blank lines.

use std::fmt::Write as _;

/// An attribute's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A quoted string (escaped; `${` is written literally).
    Str(String),
    /// An expression written as is: `var.region`, `aws_iam_role.web.arn`, `true`, `30`.
    Raw(String),
    /// A one-line list.
    List(Vec<Value>),
    /// A multi-line object with `key = value` lines.
    Object(Vec<(String, Value)>),
    /// A heredoc (`<<-EOT`), its text interpolated by Terraform.
    Heredoc(String),
}

/// One item of a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// `name = value`.
    Attr(String, Value),
    /// `type "label" … { body }`.
    Block(String, Vec<String>, Vec<Item>),
    /// A blank line.
    Blank,
}

/// `name = value`.
pub fn attr(name: &str, value: Value) -> Item {
    Item::Attr(name.to_owned(), value)
}

/// A quoted string.
pub fn s(text: impl Into<String>) -> Value {
    Value::Str(text.into())
}

/// An expression.
pub fn raw(text: impl Into<String>) -> Value {
    Value::Raw(text.into())
}

/// A block.
pub fn block(kind: &str, labels: &[&str], body: Vec<Item>) -> Item {
    Item::Block(kind.to_owned(), labels.iter().map(|l| (*l).to_owned()).collect(), body)
}

/// Quotes a string for HCL.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn key(k: &str) -> String {
    let plain = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain { k.to_owned() } else { quote(k) }
}

fn one_line(v: &Value) -> Option<String> {
    match v {
        Value::Str(t) => Some(quote(t)),
        Value::Raw(t) => Some(t.clone()),
        Value::List(items) => {
            let parts: Option<Vec<String>> = items.iter().map(one_line).collect();
            Some(format!("[{}]", parts?.join(", ")))
        }
        Value::Object(fields) if fields.is_empty() => Some("{}".to_owned()),
        Value::Object(_) | Value::Heredoc(_) => None,
    }
}

fn pad(n: usize) -> String {
    "  ".repeat(n)
}

/// Writes `key = value` lines, aligning the equals signs of each run of one-line values.
fn write_pairs(out: &mut String, pairs: &[(String, &Value)], depth: usize) {
    let mut i = 0;
    while i < pairs.len() {
        // A run of one-line values.
        let run: Vec<usize> = (i..pairs.len()).take_while(|&j| one_line(pairs[j].1).is_some()).collect();
        if run.is_empty() {
            let (k, v) = &pairs[i];
            write_multi(out, k, v, depth, k.len());
            i += 1;
            continue;
        }
        let width = run.iter().map(|&j| pairs[j].0.len()).max().unwrap_or(0);
        for &j in &run {
            let (k, v) = &pairs[j];
            let _ = writeln!(out, "{}{k:<width$} = {}", pad(depth), one_line(v).unwrap_or_default());
        }
        i += run.len();
    }
}

fn write_multi(out: &mut String, k: &str, v: &Value, depth: usize, width: usize) {
    match v {
        Value::Object(fields) => {
            let _ = writeln!(out, "{}{k:<width$} = {{", pad(depth));
            let pairs: Vec<(String, &Value)> = fields.iter().map(|(k, v)| (key(k), v)).collect();
            write_pairs(out, &pairs, depth + 1);
            let _ = writeln!(out, "{}}}", pad(depth));
        }
        Value::Heredoc(text) => {
            let _ = writeln!(out, "{}{k:<width$} = <<-EOT", pad(depth));
            for line in text.lines() {
                let _ = writeln!(out, "{}{line}", pad(depth + 1));
            }
            let _ = writeln!(out, "{}EOT", pad(depth));
        }
        other => {
            let _ = writeln!(out, "{}{k:<width$} = {}", pad(depth), one_line(other).unwrap_or_default());
        }
    }
}

fn write_body(out: &mut String, items: &[Item], depth: usize) {
    let mut i = 0;
    while i < items.len() {
        match &items[i] {
            Item::Blank => {
                out.push('\n');
                i += 1;
            }
            Item::Block(kind, labels, body) => {
                let labels: String = labels.iter().map(|l| format!(" {}", quote(l))).collect();
                if body.is_empty() {
                    let _ = writeln!(out, "{}{kind}{labels} {{}}", pad(depth));
                } else {
                    let _ = writeln!(out, "{}{kind}{labels} {{", pad(depth));
                    write_body(out, body, depth + 1);
                    let _ = writeln!(out, "{}}}", pad(depth));
                }
                i += 1;
            }
            Item::Attr(..) => {
                let run: Vec<(String, &Value)> = items[i..]
                    .iter()
                    .map_while(|it| match it {
                        Item::Attr(k, v) => Some((k.clone(), v)),
                        _ => None,
                    })
                    .collect();
                i += run.len();
                write_pairs(out, &run, depth);
            }
        }
    }
}

/// Top-level blocks, one blank line apart.
pub fn file(blocks: &[Item]) -> String {
    let mut out = String::new();
    for (n, b) in blocks.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        write_body(&mut out, std::slice::from_ref(b), 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_align_and_objects_nest() {
        let b = block(
            "resource",
            &["aws_lb", "web"],
            vec![
                attr("name", s("skiff-web")),
                attr("load_balancer_type", s("application")),
                attr("subnets", Value::List(vec![raw("a"), raw("b")])),
                Item::Blank,
                attr("tags", Value::Object(vec![("skiff:service".into(), s("web")), ("Name".into(), s("x"))])),
            ],
        );
        assert_eq!(
            file(&[b]),
            "resource \"aws_lb\" \"web\" {\n  name               = \"skiff-web\"\n  load_balancer_type = \"application\"\n  subnets            = [a, b]\n\n  tags = {\n    \"skiff:service\" = \"web\"\n    Name            = \"x\"\n  }\n}\n"
        );
    }

    #[test]
    fn strings_escape_quotes_and_interpolation() {
        assert_eq!(quote("a \"b\" ${c} %{d} $e"), "\"a \\\"b\\\" $${c} %%{d} $e\"");
    }
}
