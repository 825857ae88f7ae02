//! Spec errors that say where (file, line:column, field path), what was expected,
//! and how to fix it.

use std::fmt;

use crate::yaml::Pos;

/// A path to a field, such as `rollout.canary.steps[2]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(Vec<Segment>);

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// A list index.
    Index(usize),
}

impl FieldPath {
    /// The path of the document's root.
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// Parses a dotted path such as `rollout.canary.steps[2]` (keys without `.`, `[`).
    pub fn parse(text: &str) -> Self {
        let mut segments = Vec::new();
        for part in text.split('.').filter(|p| !p.is_empty()) {
            let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
            if !key.is_empty() {
                segments.push(Segment::Key(key.to_owned()));
            }
            while let Some((index, tail)) = rest.split_once(']') {
                if let Ok(i) = index.parse() {
                    segments.push(Segment::Index(i));
                }
                rest = tail.strip_prefix('[').unwrap_or(tail);
            }
        }
        FieldPath(segments)
    }

    /// This path with a key appended.
    #[must_use]
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.into()));
        FieldPath(segments)
    }

    /// This path with an index appended.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        FieldPath(segments)
    }

    /// The segments, root first.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The last key of the path, if it ends in a key.
    pub fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// The path with list indexes replaced by `[]`, for looking up field documentation.
    pub fn pattern(&self) -> String {
        let mut out = String::new();
        for seg in &self.0 {
            match seg {
                Segment::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Segment::Index(_) => out.push_str("[]"),
            }
        }
        out
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Key(k) => write!(f, "[{k:?}]")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// One problem in a spec file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it.
    pub file: String,
    /// Where the offending node starts.
    pub pos: Pos,
    /// The field the problem is in.
    pub path: FieldPath,
    /// What is wrong.
    pub message: String,
    /// What the field accepts.
    pub expected: String,
    /// What to do about it.
    pub hint: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file, self.pos, self.path, self.message)?;
        if !self.expected.is_empty() {
            write!(f, "\n  expected: {}", self.expected)?;
        }
        if !self.hint.is_empty() {
            write!(f, "\n  fix: {}", self.hint)?;
        }
        Ok(())
    }
}

/// A spec that could not be accepted; holds at least one [`Diagnostic`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    diagnostics: Vec<Diagnostic>,
}

impl SpecError {
    /// An error made of these diagnostics, sorted by position.
    ///
    /// # Panics
    /// Never with a non-empty list; an empty one is a caller bug and panics.
    pub fn new(mut diagnostics: Vec<Diagnostic>) -> Self {
        assert!(!diagnostics.is_empty(), "a SpecError needs at least one diagnostic");
        diagnostics.sort_by(|a, b| (a.pos, &a.path, &a.message).cmp(&(b.pos, &b.path, &b.message)));
        diagnostics.dedup();
        SpecError { diagnostics }
    }

    /// Every problem found, in file order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The first problem.
    pub fn first(&self) -> &Diagnostic {
        &self.diagnostics[0]
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_and_parse() {
        let p = FieldPath::root().key("rollout").key("canary").key("steps").index(2);
        assert_eq!(p.to_string(), "rollout.canary.steps[2]");
        assert_eq!(FieldPath::parse("rollout.canary.steps[2]"), p);
        assert_eq!(p.pattern(), "rollout.canary.steps[]");
        assert_eq!(FieldPath::root().key("run").key("env").key("a.b").to_string(), "run.env[\"a.b\"]");
    }
}
