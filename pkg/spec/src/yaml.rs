//! A bounded YAML loader that keeps the position of every node.
//!
//! It turns one YAML document into a [`Node`] tree (YAML 1.2 core schema), rejecting
//! what a service spec never needs and a hostile file could abuse: several documents,
//! duplicate keys, non-scalar keys, custom tags, deep nesting and alias bombs.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::error::FieldPath;

/// Largest input accepted, in bytes. A service spec is a few hundred lines.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Deepest nesting of mappings and sequences accepted.
pub const MAX_DEPTH: usize = 64;
/// Most nodes a document may hold, counting every node an alias expands to.
pub const MAX_NODES: usize = 100_000;

/// A 1-based line and column in the source text (columns count characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// Line, starting at 1.
    pub line: u32,
    /// Column, starting at 1, in characters.
    pub column: u32,
}

impl Pos {
    fn from_span(span: &Span) -> Self {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Pos { line: clamp(span.start.line()).max(1), column: clamp(span.start.col()).saturating_add(1) }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One YAML node with the position where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// What the node holds.
    pub value: Value,
    size: usize,
}

/// The value of a YAML node, resolved with the YAML 1.2 core schema.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A decimal, octal (`0o`) or hexadecimal (`0x`) integer.
    Int(i64),
    /// A finite floating point number.
    Float(f64),
    /// Any other scalar.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order, keys unique.
    Map(Vec<Entry>),
}

/// One key of a mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key's text.
    pub key: String,
    /// Where the key starts.
    pub key_pos: Pos,
    /// The key's value.
    pub value: Node,
}

/// Why a document could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LoadError {
    /// Where the problem is.
    pub pos: Pos,
    /// The field the problem is in (the document root when unknown).
    pub path: FieldPath,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl LoadError {
    fn new(pos: Pos, message: impl Into<String>, hint: impl Into<String>) -> Self {
        LoadError { pos, path: FieldPath::root(), message: message.into(), hint: hint.into() }
    }
}

impl Node {
    fn new(pos: Pos, value: Value) -> Self {
        let size = 1 + match &value {
            Value::Seq(items) => items.iter().map(|n| n.size).sum(),
            Value::Map(entries) => entries.iter().map(|e| e.value.size).sum(),
            _ => 0,
        };
        Node { pos, value, size }
    }

    /// A short name of the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Converts the tree to JSON. The loader only makes finite floats; a non-finite
    /// one built by hand becomes `null`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(entries.iter().map(|e| (e.key.clone(), e.value.to_json())).collect()),
        }
    }
}

/// Loads one YAML document from raw bytes.
///
/// Never panics and always terminates: input size, nesting depth and alias
/// expansion are bounded.
pub fn load(bytes: &[u8]) -> Result<Node, LoadError> {
    if bytes.len() > MAX_BYTES {
        return Err(LoadError::new(
            Pos { line: 1, column: 1 },
            format!("file is {} bytes, more than the {MAX_BYTES} allowed", bytes.len()),
            "a service spec is a short file; split generated content out of it",
        ));
    }
    let text = utf8(bytes)?;
    parse_guarded(|| {
        let mut loader = Loader { max_nodes: MAX_NODES, ..Loader::default() };
        let mut roots = loader.run(text).map_err(|e| LoadError { path: loader.path(), ..e })?;
        roots.pop().ok_or_else(|| {
            LoadError::new(
                Pos { line: 1, column: 1 },
                "file is empty",
                "start with `service: NAME`, or run `skiff init service NAME` to write one",
            )
        })
    })
}

/// The most a stream of documents ([`load_stream`]) may be.
pub const MAX_STREAM_BYTES: usize = 16 * 1024 * 1024;
/// The most nodes a stream may expand to.
pub const MAX_STREAM_NODES: usize = 2_000_000;

/// Every document of a YAML stream (`---`-separated, as `kubectl` and Helm write
/// them), with the same bounds as [`load`] scaled for manifests: size, depth, nodes
/// (alias bombs), no tags. Empty documents are skipped.
pub fn load_stream(bytes: &[u8]) -> Result<Vec<Node>, LoadError> {
    if bytes.len() > MAX_STREAM_BYTES {
        return Err(LoadError::new(
            Pos { line: 1, column: 1 },
            format!("file is {} bytes, more than the {MAX_STREAM_BYTES} allowed", bytes.len()),
            "split it into several files",
        ));
    }
    let text = utf8(bytes)?;
    parse_guarded(|| {
        let mut loader = Loader { multi: true, max_nodes: MAX_STREAM_NODES, ..Loader::default() };
        let roots = loader.run(text).map_err(|e| LoadError { path: loader.path(), ..e })?;
        Ok(roots.into_iter().filter(|n| n.value != Value::Null).collect())
    })
}

/// Runs the third-party parser, turning a panic in it into an error.
fn parse_guarded<T>(f: impl FnOnce() -> Result<T, LoadError> + std::panic::UnwindSafe) -> Result<T, LoadError> {
    std::panic::catch_unwind(f).unwrap_or_else(|_| {
        Err(LoadError::new(
            Pos { line: 1, column: 1 },
            "the YAML parser failed on this input",
            "simplify the file: plain mappings, lists and scalars",
        ))
    })
}

fn utf8(bytes: &[u8]) -> Result<&str, LoadError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        let valid = std::str::from_utf8(valid).unwrap_or_default();
        let line = valid.matches('\n').count() + 1;
        let column = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        LoadError::new(
            Pos { line: u32::try_from(line).unwrap_or(u32::MAX), column: u32::try_from(column).unwrap_or(u32::MAX) },
            format!("file is not valid UTF-8 (bad byte at offset {})", e.valid_up_to()),
            "save the file as UTF-8",
        )
    })
}

enum Frame {
    Seq { pos: Pos, anchor: usize, items: Vec<Node> },
    Map { pos: Pos, anchor: usize, entries: Vec<Entry>, key: Option<(String, Pos)> },
}

#[derive(Default)]
struct Loader {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    max_nodes: usize,
    /// Several documents allowed (a stream).
    multi: bool,
    roots: Vec<Node>,
    documents: usize,
}

impl Loader {
    /// The path of the node being built, for errors.
    fn path(&self) -> FieldPath {
        let mut path = FieldPath::root();
        for frame in &self.stack {
            path = match frame {
                Frame::Seq { items, .. } => path.index(items.len()),
                Frame::Map { key: Some((k, _)), .. } => path.key(k.clone()),
                Frame::Map { key: None, .. } => path,
            };
        }
        path
    }

    fn run(&mut self, text: &str) -> Result<Vec<Node>, LoadError> {
        let mut parser = Parser::new_from_str(text);
        while let Some(next) = parser.next_event() {
            let (event, span) = next.map_err(|e| {
                let m = e.marker();
                let pos = Pos {
                    line: u32::try_from(m.line()).unwrap_or(u32::MAX).max(1),
                    column: u32::try_from(m.col()).unwrap_or(u32::MAX).saturating_add(1),
                };
                LoadError::new(
                    pos,
                    format!("YAML syntax error: {}", e.info()),
                    "check indentation, quoting and brackets near this position",
                )
            })?;
            let pos = Pos::from_span(&span);
            match event {
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart(_) => {
                    self.documents += 1;
                    if self.documents > 1 && !self.multi {
                        return Err(LoadError::new(
                            pos,
                            "found a second YAML document",
                            "a spec file holds exactly one document; remove the `---` separator",
                        ));
                    }
                }
                Event::Alias(id) => {
                    let node = self.anchors.get(&id).cloned().ok_or_else(|| {
                        LoadError::new(
                            pos,
                            "alias refers to an unknown anchor",
                            "define the anchor (`&name`) before using it",
                        )
                    })?;
                    self.count(node.size, pos)?;
                    self.push(Node { pos, ..node })?;
                }
                Event::Scalar(text, style, anchor, tag) => {
                    self.count(1, pos)?;
                    let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                    let value = resolve_scalar(&text, style, tag.as_deref(), pos)?;
                    let node = Node::new(pos, value);
                    self.remember(anchor, &node);
                    self.push(node)?;
                }
                Event::SequenceStart(anchor, tag) => {
                    self.open(pos, tag.is_some())?;
                    self.stack.push(Frame::Seq { pos, anchor, items: Vec::new() });
                }
                Event::MappingStart(anchor, tag) => {
                    self.open(pos, tag.is_some())?;
                    self.stack.push(Frame::Map { pos, anchor, entries: Vec::new(), key: None });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (node, anchor) = match self.stack.pop() {
                        Some(Frame::Seq { pos, anchor, items }) => (Node::new(pos, Value::Seq(items)), anchor),
                        Some(Frame::Map { pos, anchor, entries, .. }) => (Node::new(pos, Value::Map(entries)), anchor),
                        None => {
                            return Err(LoadError::new(
                                pos,
                                "unbalanced YAML structure",
                                "check brackets and indentation",
                            ));
                        }
                    };
                    self.remember(anchor, &node);
                    self.push(node)?;
                }
            }
        }
        Ok(std::mem::take(&mut self.roots))
    }

    fn open(&mut self, pos: Pos, tagged: bool) -> Result<(), LoadError> {
        if tagged {
            return Err(LoadError::new(pos, "YAML tags are not supported here", "remove the `!tag`"));
        }
        self.count(1, pos)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(LoadError::new(
                pos,
                format!("nesting is deeper than {MAX_DEPTH} levels"),
                "a service spec is only a few levels deep; flatten this structure",
            ));
        }
        Ok(())
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), LoadError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.max_nodes {
            return Err(LoadError::new(
                pos,
                format!("document expands to more than {} nodes", self.max_nodes),
                "remove the repeated aliases (`*name`) that multiply the document",
            ));
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
    }

    fn push(&mut self, node: Node) -> Result<(), LoadError> {
        match self.stack.last_mut() {
            None => {
                self.roots.push(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let text = match node.value {
                        Value::Str(s) => s,
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Null => "null".to_owned(),
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(LoadError::new(
                                node.pos,
                                "mapping keys must be plain scalars",
                                "use a plain word as the key",
                            ));
                        }
                    };
                    if let Some(first) = entries.iter().find(|e| e.key == text) {
                        *key = Some((text.clone(), node.pos));
                        return Err(LoadError::new(
                            node.pos,
                            format!("duplicate key `{text}` (first defined at line {})", first.key_pos.line),
                            "keep one of the two entries",
                        ));
                    }
                    *key = Some((text, node.pos));
                    Ok(())
                }
                Some((text, key_pos)) => {
                    entries.push(Entry { key: text, key_pos, value: node });
                    Ok(())
                }
            },
        }
    }
}

fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&str>, pos: Pos) -> Result<Value, LoadError> {
    match tag {
        None => {}
        Some("tag:yaml.org,2002:str") | Some("!!str") => return Ok(Value::Str(text.to_owned())),
        Some(other) => {
            return Err(LoadError::new(
                pos,
                format!("YAML tag `{other}` is not supported"),
                "remove the tag; quote the value if it must be a string",
            ));
        }
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::Str(text.to_owned()));
    }
    Ok(match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN"
        | ".NAN" => {
            return Err(LoadError::new(pos, format!("`{text}` is not a finite number"), "write a finite number"));
        }
        _ => resolve_number(text, pos)?.unwrap_or_else(|| Value::Str(text.to_owned())),
    })
}

fn resolve_number(text: &str, pos: Pos) -> Result<Option<Value>, LoadError> {
    let out_of_range = || LoadError::new(pos, format!("number `{text}` is out of range"), "use a smaller number");
    let radix_int = |prefix: &str, radix: u32| -> Option<Result<Value, LoadError>> {
        let rest = text.strip_prefix(prefix)?;
        if rest.is_empty() || !rest.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        Some(i64::from_str_radix(rest, radix).map(Value::Int).map_err(|_| out_of_range()))
    };
    if let Some(v) = radix_int("0x", 16).or_else(|| radix_int("0o", 8)) {
        return v.map(Some);
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().map(|v| Some(Value::Int(v))).map_err(|_| out_of_range());
    }
    if is_float(unsigned) {
        return match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Some(Value::Float(f))),
            _ => Err(out_of_range()),
        };
    }
    Ok(None)
}

/// YAML 1.2 core float: `[0-9]*(\.[0-9]*)?([eE][-+]?[0-9]+)?` with at least one digit.
fn is_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let has_digit = !int.is_empty() || frac.is_some_and(|f| !f.is_empty());
    let exp_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    has_digit && digits(int) && frac.is_none_or(digits) && exp_ok && (frac.is_some() || exponent.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> LoadError {
        load(src.as_bytes()).expect_err("must fail")
    }

    #[test]
    fn resolves_core_schema_scalars_with_positions() {
        let node = load(b"a: 1\nb: '1'\nc: 1.5\nd: true\ne: ~\nf: yes\ng: 0x1f\n").unwrap();
        let Value::Map(entries) = node.value else { panic!("not a map") };
        let values: Vec<_> = entries.iter().map(|e| e.value.value.clone()).collect();
        assert_eq!(
            values,
            vec![
                Value::Int(1),
                Value::Str("1".into()),
                Value::Float(1.5),
                Value::Bool(true),
                Value::Null,
                Value::Str("yes".into()),
                Value::Int(31)
            ]
        );
        assert_eq!(entries[2].key_pos, Pos { line: 3, column: 1 });
        assert_eq!(entries[2].value.pos, Pos { line: 3, column: 4 });
    }

    #[test]
    fn rejects_duplicate_keys_at_the_second_key() {
        let e = err("port: 1\nservice: a\nport: 2\n");
        assert_eq!(e.pos, Pos { line: 3, column: 1 });
        assert!(e.message.contains("duplicate key `port`"), "{}", e.message);
    }

    #[test]
    fn rejects_alias_bombs_quickly() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..30 {
            let prev = i - 1;
            src.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
        }
        assert!(err(&src).message.contains("expands to more than"));
    }

    #[test]
    fn rejects_deep_nesting() {
        // Flow nesting is stopped by the parser's own recursion limit, block nesting by ours.
        let src = "[".repeat(100_000);
        let e = err(&src);
        assert!(e.message.contains("recursion limit") || e.message.contains("nesting is deeper"), "{}", e.message);
        let block: String = (0..200).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(err(&block).message.contains("nesting is deeper"));
    }

    #[test]
    fn rejects_empty_non_utf8_and_multi_document() {
        assert_eq!(err("").message, "file is empty");
        assert_eq!(err("# only a comment\n").message, "file is empty");
        let e = load(b"service: a\nport: \xff\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, column: 7 });
        assert!(err("a: 1\n---\nb: 2\n").message.contains("second YAML document"));
    }

    #[test]
    fn floats_follow_the_core_schema() {
        assert!(is_float("1.5") && is_float(".5") && is_float("1e3") && is_float("1.") && is_float("2.5E-3"));
        assert!(!is_float("1") && !is_float(".") && !is_float("e3") && !is_float("1e") && !is_float("1.2.3"));
    }
}
