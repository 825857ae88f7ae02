//! Reading manifests: files and directories (`*.yaml`, `*.yml`, `*.json`, in name
//! order), multi-document streams (`kubectl`, Helm output), and `List` kinds flattened
//! into their items — all through the bounded YAML loader (size, depth, alias bombs,
//! no tags), so a hostile input gets an error naming the file and position.

use std::path::{Path, PathBuf};

/// One Kubernetes object as read.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc {
    /// The file it came from.
    pub file: String,
    /// `line:column` of the object in the file.
    pub at: String,
    /// The object.
    pub value: serde_json::Value,
}

/// Why the manifests could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A path that does not exist or cannot be read.
    #[error("{path}: {why}")]
    Io {
        /// The path.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// A file that is not a YAML or JSON manifest stream.
    #[error("{file}:{at}: {message} ({hint})")]
    Syntax {
        /// The file.
        file: String,
        /// `line:column`.
        at: String,
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// Too many files under a directory.
    #[error("{path}: more than {limit} manifest files; import a smaller directory")]
    TooMany {
        /// The directory.
        path: String,
        /// The limit.
        limit: usize,
    },
}

/// Files one import reads at most.
pub const MAX_FILES: usize = 10_000;

fn manifest(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReadError> {
    let io = |e: std::io::Error| ReadError::Io { path: dir.display().to_string(), why: e.to_string() };
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(io)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if out.len() > MAX_FILES {
            return Err(ReadError::TooMany { path: dir.display().to_string(), limit: MAX_FILES });
        }
        // Symlinks are not followed: a link loop cannot hang the import.
        let meta = std::fs::symlink_metadata(&p).map_err(io)?;
        if meta.is_dir() {
            walk(&p, out)?;
        } else if meta.is_file() && manifest(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Every object in `paths`, in order.
pub fn read(paths: &[PathBuf]) -> Result<Vec<Doc>, ReadError> {
    let mut files = Vec::new();
    for p in paths {
        let meta =
            std::fs::metadata(p).map_err(|e| ReadError::Io { path: p.display().to_string(), why: e.to_string() })?;
        if meta.is_dir() {
            walk(p, &mut files)?;
        } else {
            files.push(p.clone());
        }
    }
    let mut docs = Vec::new();
    for f in files {
        let bytes =
            std::fs::read(&f).map_err(|e| ReadError::Io { path: f.display().to_string(), why: e.to_string() })?;
        docs.extend(parse(&f.display().to_string(), &bytes)?);
    }
    Ok(docs)
}

/// The objects of one file's bytes (YAML stream or JSON, which is YAML).
pub fn parse(file: &str, bytes: &[u8]) -> Result<Vec<Doc>, ReadError> {
    let nodes = skiff_spec::yaml::load_stream(bytes).map_err(|e| ReadError::Syntax {
        file: file.to_owned(),
        at: e.pos.to_string(),
        message: e.message.clone(),
        hint: e.hint.clone(),
    })?;
    let mut out = Vec::new();
    for n in nodes {
        let value = n.to_json();
        let at = n.pos.to_string();
        // `kind: List` (and `…List` from `kubectl get -o yaml`) carries its objects in `items`.
        let is_list = value["kind"].as_str().is_some_and(|k| k == "List" || k.ends_with("List"));
        match (is_list, value["items"].as_array()) {
            (true, Some(items)) => {
                out.extend(items.iter().map(|i| Doc { file: file.to_owned(), at: at.clone(), value: i.clone() }));
            }
            _ => out.push(Doc { file: file.to_owned(), at, value }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn streams_and_lists_are_flattened_and_bombs_refused() {
        let text = "kind: Service\nmetadata: {name: a}\n---\nkind: List\nitems:\n- {kind: Service, metadata: {name: b}}\n- {kind: Service, metadata: {name: c}}\n---\n";
        let docs = parse("m.yaml", text.as_bytes()).unwrap();
        let names: Vec<&str> = docs.iter().map(|d| d.value["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
        let err = parse("bomb.yaml", bomb.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("more than"), "{err}");
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse("deep.yaml", deep.as_bytes()).is_err());
        let json = r#"{"kind": "Service", "metadata": {"name": "j"}}"#;
        assert_eq!(parse("s.json", json.as_bytes()).unwrap().len(), 1);
    }
}
