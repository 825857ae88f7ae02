//! From bytes to a validated [`Spec`]: load YAML with positions, deserialize strictly,
//! validate semantics, and turn every failure into a positioned [`Diagnostic`].

use serde::de::DeserializeOwned;

use crate::error::{Diagnostic, FieldPath, Segment, SpecError};
use crate::types::Spec;
use crate::validate::{Issue, validate};
use crate::yaml::{self, Node, Pos, Value};

/// Parses and validates a spec. `file` is the name used in messages.
///
/// ```
/// let spec = skiff_spec::parse("skiff.yaml", b"service: hello\nartifact: {path: hello}\nrun: {command: [hello]}\nport: 8080\n").unwrap();
/// assert_eq!(spec.service.as_str(), "hello");
/// let err = skiff_spec::parse("skiff.yaml", b"service: Hello\n").unwrap_err();
/// assert_eq!(err.first().pos.line, 1);
/// ```
pub fn parse(file: &str, bytes: &[u8]) -> Result<Spec, SpecError> {
    let (spec, root) = load_typed::<Spec>(
        file,
        bytes,
        "a mapping with `service:`, `artifact:` and `run:`",
        "start with `service: NAME`, or run `skiff init service NAME` to write one",
    )?;
    let issues = validate(&spec);
    if issues.is_empty() {
        Ok(spec)
    } else {
        Err(SpecError::new(issues.into_iter().map(|i| place(file, &root, i)).collect()))
    }
}

/// Reads any YAML mapping into `T` with the same guarantees as [`parse`]: bounded
/// loading, strict types, and errors with line:column and field path. For other
/// Skiff files (contexts, policies) that need no spec validation.
pub fn from_yaml<T: DeserializeOwned>(file: &str, bytes: &[u8]) -> Result<T, SpecError> {
    load_typed(file, bytes, "a mapping of fields", "write the file as `key: value` lines").map(|(value, _)| value)
}

fn load_typed<T: DeserializeOwned>(file: &str, bytes: &[u8], what: &str, hint: &str) -> Result<(T, Node), SpecError> {
    let located = |pos: Pos, path: FieldPath, message: String, expected: String, hint: String| Diagnostic {
        file: file.to_owned(),
        pos,
        path,
        message,
        expected,
        hint,
    };
    let root = yaml::load(bytes)
        .map_err(|e| SpecError::new(vec![located(e.pos, e.path, e.message, String::new(), e.hint)]))?;
    if !matches!(root.value, Value::Map(_)) {
        return Err(SpecError::new(vec![located(
            root.pos,
            FieldPath::root(),
            format!("the document is {}, not a mapping of fields", root.type_name()),
            what.to_owned(),
            hint.to_owned(),
        )]));
    }
    let value: T = serde_path_to_error::deserialize(root.to_json()).map_err(|e| {
        let issue = issue_from_serde(e.path(), &e.inner().to_string());
        SpecError::new(vec![place(file, &root, issue)])
    })?;
    Ok((value, root))
}

fn place(file: &str, root: &Node, issue: Issue) -> Diagnostic {
    Diagnostic {
        file: file.to_owned(),
        pos: locate(root, &issue.path, issue.at_key),
        path: issue.path,
        message: issue.message,
        expected: issue.expected,
        hint: issue.hint,
    }
}

/// Finds where `path` starts in the tree: the value's position, the key's when
/// `at_key`, or the nearest existing ancestor's when the path does not exist.
fn locate(root: &Node, path: &FieldPath, at_key: bool) -> Pos {
    let mut node = root;
    let segments = path.segments();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let next = match (seg, &node.value) {
            (Segment::Key(k), Value::Map(entries)) => match entries.iter().find(|e| &e.key == k) {
                Some(e) if last && at_key => return e.key_pos,
                Some(e) => &e.value,
                None => return node.pos,
            },
            (Segment::Index(n), Value::Seq(items)) => match items.get(*n) {
                Some(item) => item,
                None => return node.pos,
            },
            _ => return node.pos,
        };
        node = next;
    }
    node.pos
}

fn convert_path(path: &serde_path_to_error::Path) -> FieldPath {
    let mut out = FieldPath::root();
    for seg in path.iter() {
        out = match seg {
            serde_path_to_error::Segment::Seq { index } => out.index(*index),
            serde_path_to_error::Segment::Map { key } => out.key(key.clone()),
            serde_path_to_error::Segment::Enum { variant } => out.key(variant.clone()),
            serde_path_to_error::Segment::Unknown => out,
        };
    }
    out
}

/// The text between the first pair of backticks.
fn ticked(text: &str) -> Option<&str> {
    let start = text.find('`')? + 1;
    let len = text[start..].find('`')?;
    Some(&text[start..start + len])
}

fn issue_from_serde(path: &serde_path_to_error::Path, raw: &str) -> Issue {
    let mut path = convert_path(path);
    let (message, expected) = raw.split_once(", expected ").map_or((raw, ""), |(m, e)| (m, e));
    if let Some(field) = message.strip_prefix("missing field ").and_then(ticked) {
        path = path.key(field);
        return Issue::new(
            path.clone(),
            format!("missing required field `{field}`"),
            "this field to be present",
            hint_for(&path),
        );
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let field = ticked(rest).unwrap_or(rest).to_owned();
        if path.last_key() != Some(field.as_str()) {
            path = path.key(field.clone());
        }
        let allowed = alternatives(expected);
        let hint = match suggest(&field, &allowed) {
            Some(best) => format!("did you mean `{best}`? Otherwise remove `{field}`"),
            None if allowed.is_empty() => format!("remove `{field}`"),
            None => format!("remove `{field}`; fields allowed here: {}", allowed.join(", ")),
        };
        let expected =
            if allowed.is_empty() { "no fields here".to_owned() } else { format!("one of {}", allowed.join(", ")) };
        return Issue::new(path, format!("unknown field `{field}`"), expected, hint).at_key();
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let variant = ticked(rest).unwrap_or(rest).to_owned();
        let allowed = alternatives(expected);
        let hint = match suggest(&variant, &allowed) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("use one of {}", allowed.join(", ")),
        };
        return Issue::new(path, format!("unknown value `{variant}`"), format!("one of {}", allowed.join(", ")), hint);
    }
    let expected = friendly_expected(expected, &path);
    Issue::new(path.clone(), message.to_owned(), expected, hint_for(&path))
}

/// Splits "one of `a`, `b`, `c`" / "`a` or `b`" into its names.
fn alternatives(expected: &str) -> Vec<String> {
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn suggest(word: &str, candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min()
        .map(|(_, c)| c.clone())
}

fn friendly_expected(expected: &str, path: &FieldPath) -> String {
    match expected {
        "u16" if path.pattern() == "port" => "a port number between 1 and 65535".to_owned(),
        "u16" | "u32" | "u64" => "a whole number, not negative".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a map" => "a mapping".to_owned(),
        "a string" => "a string".to_owned(),
        e if e.starts_with("struct ") => "a mapping of fields".to_owned(),
        e => e.to_owned(),
    }
}

/// How to fix a bad value of the field at `path`.
pub(crate) fn hint_for(path: &FieldPath) -> String {
    let pattern = path.pattern();
    let hint = match pattern.as_str() {
        "service" => "name the service with a DNS label, e.g. `service: payments-api`",
        "kind" => "use `kind: service` or `kind: worker`",
        "environment" => "name the environment with a DNS label, e.g. `environment: production`",
        "artifact" => "add `artifact: {path: target/release/NAME}` (or `url:` with `sha256:`)",
        "artifact.build" => "write the build as one shell command, e.g. `build: cargo build --release -p NAME`",
        "artifact.path" => "give the program's path relative to the spec, e.g. `path: target/release/NAME`",
        "artifact.url" => "give an `https://` or `s3://` URL together with `sha256:`",
        "artifact.sha256" => "compute it with `sha256sum FILE` and paste the 64 hex characters",
        "run" => "add `run: {command: [NAME, --port, \"${PORT}\"]}`",
        "run.command" | "run.command[]" => {
            "list the program and its arguments, e.g. `command: [payments-api, --port, \"${PORT}\"]`"
        }
        "run.env" | "run.env[]" => "write plain variables as `NAME: value` (quote numbers and booleans)",
        "port" => "use a port number between 1 and 65535, e.g. `port: 8080`",
        "health" => "e.g. `health: {path: /healthz, interval: 5s}`",
        "health.path" => "start the path with `/`, e.g. `path: /healthz`",
        "health.healthy_threshold" | "health.unhealthy_threshold" => "use a whole number from 1 to 10",
        "instances" | "instances.min" | "instances.max" | "instances.desired" => {
            "use whole numbers with min <= desired <= max, e.g. `instances: {min: 2, max: 6, desired: 3}`"
        }
        "intent" => "e.g. `intent: {availability: high, cost: low}`",
        "intent.availability" => "use `high`, `standard` or `low`",
        "intent.cost" => "use `low`, `balanced` or `performance`",
        "secrets" => "map variable names to references, e.g. `DATABASE_URL: secret://payments-db/url`",
        "database" => "e.g. `database: {name: payments-db, engine: postgres, version: \"15\"}`",
        "database.name" => "name the database with a DNS label, e.g. `name: payments-db`",
        "database.engine" => "use `engine: postgres`",
        "database.version" => "quote the major version, e.g. `version: \"15\"`",
        "database.size" => "use `small`, `medium` or `large`",
        "database.migrations" => {
            "e.g. `migrations: {command: [payments-api, migrate], down: [payments-api, migrate, --to, \"1\"], phase: before_canary}`"
        }
        "database.migrations.phase" => "use `before_canary` or `after_promote`",
        "rollout.strategy" => "use `canary` or `all_at_once`",
        "rollout.canary.steps" | "rollout.canary.steps[]" => {
            "list ascending percentages from 1 to 100 ending at 100, e.g. `steps: [5, 25, 50, 100]`"
        }
        "rollout.canary.analysis.min_requests" => "use a whole number of requests, e.g. `min_requests: 20`",
        "rollout.hooks[].step" => {
            "name a step kind an installed plugin serves, e.g. `step: changelog.append` (`skiff plugin list`)"
        }
        "addons[].addon" => {
            "name an addon an installed plugin serves, e.g. `addon: changelog.env` (`skiff plugin list`)"
        }
        "addons[].with" | "rollout.hooks[].with" => {
            "write text parameters as `NAME: value` (quote numbers and booleans)"
        }
        "regions" | "regions[]" => "list region names, e.g. `regions: [us-east-1]`",
        "resources.instance_type" => "name a machine class, e.g. `instance_type: t4g.small`",
        "iam" | "iam.allow" => "e.g. `iam: {allow: [{action: \"s3:GetObject\", resource: \"arn:aws:s3:::bucket/*\"}]}`",
        "iam.allow[].action" => "name one action, e.g. `action: \"s3:GetObject\"`; wildcards are not allowed",
        "iam.allow[].resource" => "name the resource ARN, e.g. `resource: \"arn:aws:s3:::bucket/*\"`",
        _ => "",
    };
    if !hint.is_empty() {
        return hint.to_owned();
    }
    match path.last_key() {
        _ if pattern.starts_with("secrets.") => {
            "reference the secret instead of writing its value, e.g. `secret://payments-db/url`; store the value in your secret store".to_owned()
        }
        Some(
            "interval" | "timeout" | "bake" | "step_timeout" | "drain_timeout" | "retention" | "max_p95_latency",
        ) => "write a number and a unit: `500ms`, `30s`, `2m`, `1h` or `7d`".to_owned(),
        Some("max_error_rate") => "write a percentage such as `1%`, or a fraction such as `0.01`".to_owned(),
        _ => "see `skiff schema` for the fields and their types".to_owned(),
    }
}
