//! Semantic rules a well-typed spec must also meet: ranges, orderings, and fields
//! that only make sense together.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::FieldPath;
use crate::types::{Availability, Spec, Strategy, WorkloadKind};
use crate::values::Duration;

/// A problem found in a spec, before it has a position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Issue {
    pub(crate) path: FieldPath,
    pub(crate) message: String,
    pub(crate) expected: String,
    pub(crate) hint: String,
    /// Point at the key rather than the value (for fields that must go).
    pub(crate) at_key: bool,
}

impl Issue {
    pub(crate) fn new(
        path: FieldPath,
        message: impl Into<String>,
        expected: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Issue { path, message: message.into(), expected: expected.into(), hint: hint.into(), at_key: false }
    }

    pub(crate) fn at_key(mut self) -> Self {
        self.at_key = true;
        self
    }
}

/// Placeholders `run.command` may use; the runner fills them in on the instance.
pub const PLACEHOLDERS: [&str; 4] = ["PORT", "SERVICE", "RELEASE", "INSTANCE"];

/// The most instances one service may ask for.
pub const MAX_INSTANCES: u32 = 100;

/// Postgres major versions a managed database may run.
pub const POSTGRES_VERSIONS: [&str; 5] = ["13", "14", "15", "16", "17"];

impl Availability {
    /// The fewest instances this availability needs.
    pub const fn min_instances(self) -> u32 {
        match self {
            Availability::High => 3,
            Availability::Standard => 2,
            Availability::Low => 1,
        }
    }

    /// The fewest zones this availability needs.
    pub const fn min_zones(self) -> u32 {
        match self {
            Availability::High | Availability::Standard => 2,
            Availability::Low => 1,
        }
    }
}

pub(crate) fn validate(spec: &Spec) -> Vec<Issue> {
    let mut out = Vec::new();
    let root = FieldPath::root();
    let kind = spec.kind.unwrap_or(WorkloadKind::Service);
    check_artifact(spec, &mut out);
    check_run(spec, &mut out);
    match (kind, spec.port) {
        (WorkloadKind::Service, None) => out.push(Issue::new(
            root.key("port"),
            "a service needs a port",
            "a port number between 1 and 65535",
            "add `port: 8080` (the port your program listens on), or set `kind: worker`",
        )),
        (WorkloadKind::Service, Some(0)) => out.push(Issue::new(
            root.key("port"),
            "port 0 is not a port",
            "a port number between 1 and 65535",
            "use the port your program listens on, e.g. `port: 8080`",
        )),
        (WorkloadKind::Worker, Some(_)) => out.push(
            Issue::new(
                root.key("port"),
                "a worker has no port",
                "no `port` for `kind: worker`",
                "remove `port`, or set `kind: service`",
            )
            .at_key(),
        ),
        _ => {}
    }
    check_health(spec, kind, &mut out);
    check_instances(spec, kind, &mut out);
    check_scale(spec, kind, &mut out);
    check_rollout(spec, kind, &mut out);
    check_secrets(spec, &mut out);
    check_database(spec, &mut out);
    check_regions(spec, &mut out);
    check_iam(spec, &mut out);
    check_environments(spec, &mut out);
    check_network(spec, kind, &mut out);
    if let Some(r) = spec.logs.as_ref().and_then(|l| l.retention) {
        range(
            &mut out,
            root.key("logs").key("retention"),
            r,
            Duration::from_secs(86_400),
            Duration::from_secs(3650 * 86_400),
        );
    }
    out
}

fn range(out: &mut Vec<Issue>, path: FieldPath, value: Duration, min: Duration, max: Duration) {
    if value < min || value > max {
        out.push(Issue::new(
            path,
            format!("{value} is out of range"),
            format!("a duration from {min} to {max}"),
            format!("pick a value between {min} and {max}"),
        ));
    }
}

fn check_artifact(spec: &Spec, out: &mut Vec<Issue>) {
    let a = &spec.artifact;
    let path = FieldPath::root().key("artifact");
    match (&a.path, &a.url) {
        (Some(_), Some(_)) => out.push(
            Issue::new(
                path.key("url"),
                "`path` and `url` are both set",
                "exactly one of `path` or `url`",
                "keep `path` for a local program, or `url` for a download",
            )
            .at_key(),
        ),
        (None, None) => out.push(Issue::new(
            path.clone(),
            "the artifact names neither `path` nor `url`",
            "exactly one of `path` or `url`",
            "add `path: target/release/NAME`, or `url:` with `sha256:`",
        )),
        (None, Some(url)) => {
            if !(url.starts_with("https://") || url.starts_with("s3://")) || url.len() < 9 {
                out.push(Issue::new(
                    path.key("url"),
                    format!("`{url}` is not an https:// or s3:// URL"),
                    "an `https://` or `s3://` URL",
                    "download artifacts over https or from S3",
                ));
            }
            if a.sha256.is_none() {
                out.push(Issue::new(
                    path.key("url"),
                    "a downloaded artifact must be pinned by digest",
                    "`sha256:` beside `url:`",
                    "add `sha256:` with the artifact's digest (`sha256sum FILE`)",
                ));
            }
            if a.build.is_some() {
                out.push(
                    Issue::new(
                        path.key("build"),
                        "`build` needs a local `path` to produce",
                        "`build` only with `path`",
                        "remove `build`, or use `path:` for the built program",
                    )
                    .at_key(),
                );
            }
        }
        (Some(p), None) => {
            if p.trim().is_empty() {
                out.push(Issue::new(
                    path.key("path"),
                    "the path is empty",
                    "a file path",
                    "give the program's path, e.g. `path: target/release/NAME`",
                ));
            }
        }
    }
    if a.build.as_deref().is_some_and(|b| b.trim().is_empty()) {
        out.push(Issue::new(
            path.key("build"),
            "the build command is empty",
            "a shell command",
            "remove `build`, or write the command, e.g. `cargo build --release`",
        ));
    }
}

fn check_run(spec: &Spec, out: &mut Vec<Issue>) {
    let path = FieldPath::root().key("run");
    let cmd = &spec.run.command;
    if cmd.is_empty() || cmd[0].trim().is_empty() {
        out.push(Issue::new(
            path.key("command"),
            "the command is empty",
            "the program and its arguments",
            "e.g. `command: [payments-api, --port, \"${PORT}\"]`",
        ));
    }
    for (i, arg) in cmd.iter().enumerate() {
        for name in placeholders(arg) {
            if !PLACEHOLDERS.contains(&name) {
                out.push(Issue::new(
                    path.key("command").index(i),
                    format!("unknown placeholder `${{{name}}}`"),
                    format!("one of {}", PLACEHOLDERS.map(|p| format!("`${{{p}}}`")).join(", ")),
                    "use a known placeholder, or pass the value through `run.env`",
                ));
            }
        }
    }
}

/// Names inside `${...}` in `text`.
fn placeholders(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                names.push(&after[..end]);
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    names
}

fn check_health(spec: &Spec, kind: WorkloadKind, out: &mut Vec<Issue>) {
    let Some(h) = &spec.health else { return };
    let path = FieldPath::root().key("health");
    if kind == WorkloadKind::Worker {
        out.push(
            Issue::new(
                path,
                "a worker is not probed over HTTP",
                "no `health` for `kind: worker`",
                "remove `health`; a worker is healthy while its process runs",
            )
            .at_key(),
        );
        return;
    }
    for (name, value) in [("healthy_threshold", h.healthy_threshold), ("unhealthy_threshold", h.unhealthy_threshold)] {
        if let Some(v) = value.filter(|v| !(1..=10).contains(v)) {
            out.push(Issue::new(
                path.key(name),
                format!("{v} is out of range"),
                "a whole number from 1 to 10",
                "use a value from 1 to 10, e.g. 2",
            ));
        }
    }
    if let Some(i) = h.interval {
        range(out, path.key("interval"), i, Duration::from_secs(1), Duration::from_secs(300));
    }
    if let Some(t) = h.timeout {
        range(out, path.key("timeout"), t, Duration::from_millis(100), Duration::from_secs(60));
        let interval = h.interval.unwrap_or(Duration::from_secs(5));
        if t > interval {
            out.push(Issue::new(
                path.key("timeout"),
                format!("timeout {t} is longer than the interval {interval}"),
                "a timeout no longer than `interval`",
                "shorten `timeout` or lengthen `interval`",
            ));
        }
    }
}

fn check_instances(spec: &Spec, kind: WorkloadKind, out: &mut Vec<Issue>) {
    let Some(n) = &spec.instances else { return };
    let path = FieldPath::root().key("instances");
    let floor = if kind == WorkloadKind::Service { 1 } else { 0 };
    for (name, value) in [("min", n.min), ("max", n.max), ("desired", n.desired)] {
        match value {
            Some(v) if v > MAX_INSTANCES => out.push(Issue::new(
                path.key(name),
                format!("{v} is more than {MAX_INSTANCES} instances"),
                format!("at most {MAX_INSTANCES}"),
                "use fewer, larger instances (`resources.instance_type`)",
            )),
            Some(v) if v < floor && name != "min" => out.push(Issue::new(
                path.key(name),
                format!("{v} instances cannot serve traffic"),
                "at least 1 instance for a service",
                "run at least one instance, or set `kind: worker`",
            )),
            Some(0) if kind == WorkloadKind::Service => out.push(Issue::new(
                path.key(name),
                "a service needs at least one instance",
                "at least 1",
                "use `min: 1` or more",
            )),
            _ => {}
        }
    }
    let ordered = |a: Option<u32>, b: Option<u32>| a.zip(b).is_none_or(|(a, b)| a <= b);
    if !ordered(n.min, n.max) {
        out.push(Issue::new(
            path.key("min"),
            "min is larger than max",
            "min <= desired <= max",
            "lower `min` or raise `max`",
        ));
    }
    if !ordered(n.min, n.desired) {
        out.push(Issue::new(
            path.key("desired"),
            "desired is smaller than min",
            "min <= desired <= max",
            "raise `desired` or lower `min`",
        ));
    }
    if !ordered(n.desired, n.max) {
        out.push(Issue::new(
            path.key("desired"),
            "desired is larger than max",
            "min <= desired <= max",
            "lower `desired` or raise `max`",
        ));
    }
    let availability = spec.intent.as_ref().and_then(|i| i.availability);
    if let Some(a) = availability {
        let need = a.min_instances();
        let label = a.as_str();
        for (name, value) in [("desired", n.desired), ("max", n.max)] {
            if let Some(v) = value.filter(|v| *v < need) {
                out.push(Issue::new(
                    path.key(name),
                    format!("{name} {v} is below the {need} instances that `availability: {label}` needs"),
                    format!("at least {need}"),
                    format!("raise `{name}` to {need}, or lower `intent.availability`"),
                ));
            }
        }
    }
}

/// `schema.table` or `table`: lower-case letters, digits and `_`, not starting with a digit.
fn sql_identifier(text: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && !p.starts_with(|c: char| c.is_ascii_digit())
            && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() <= 2 && parts.iter().all(|p| part(p))
}

fn check_scale(spec: &Spec, kind: WorkloadKind, out: &mut Vec<Issue>) {
    let Some(sc) = &spec.scale else { return };
    let path = FieldPath::root().key("scale");
    if spec.instances.is_some() {
        out.push(
            Issue::new(
                path.clone(),
                "`scale` and `instances` both set the instance count",
                "one of `scale` (queue-driven) or `instances` (fixed)",
                "remove `instances`: `scale.min` and `scale.max` bound the count",
            )
            .at_key(),
        );
    }
    let floor = if kind == WorkloadKind::Service { 1 } else { 0 };
    let min = sc.min.unwrap_or(floor);
    if min < floor {
        out.push(Issue::new(
            path.key("min"),
            "a service needs at least one instance",
            "at least 1",
            "use `min: 1` or more, or set `kind: worker`",
        ));
    }
    if sc.max == 0 || sc.max > MAX_INSTANCES {
        out.push(Issue::new(
            path.key("max"),
            format!("max {} is out of range", sc.max),
            format!("1 to {MAX_INSTANCES}"),
            "set the most instances the queue may need",
        ));
    } else if min > sc.max {
        out.push(Issue::new(path.key("min"), "min is larger than max", "min <= max", "lower `min` or raise `max`"));
    }
    let q = &sc.queue;
    let qp = path.key("queue");
    match (&q.table, &q.query) {
        (Some(_), Some(_)) => out.push(
            Issue::new(
                qp.key("query"),
                "`table` and `query` both say where the backlog is",
                "one of `table` or `query`",
                "keep `table` (rows waiting) or `query` (one row: backlog, age in seconds)",
            )
            .at_key(),
        ),
        (None, None) => out.push(Issue::new(
            qp.clone(),
            "the queue needs a `table` or a `query`",
            "`table: jobs` or `query: SELECT count(*) FROM jobs`",
            "add `table:` with the queue's table",
        )),
        (Some(t), None) if !sql_identifier(t) => out.push(Issue::new(
            qp.key("table"),
            format!("`{t}` is not a table name"),
            "a lower-case SQL name such as `jobs` or `queue.jobs`",
            "use the table's name as PostgreSQL stores it",
        )),
        (None, Some(sql)) if sql.trim().trim_end_matches(';').contains(';') || sql.trim().is_empty() => {
            out.push(Issue::new(
                qp.key("query"),
                "the query must be one statement",
                "one SELECT returning backlog[, age in seconds]",
                "remove the other statements",
            ));
        }
        _ => {}
    }
    if let Some(c) = &q.age_column {
        if q.table.is_none() {
            out.push(
                Issue::new(
                    qp.key("age_column"),
                    "`age_column` needs `table`",
                    "`age_column` beside `table`",
                    "return the age as the query's second column instead",
                )
                .at_key(),
            );
        } else if !sql_identifier(c) || c.contains('.') {
            out.push(Issue::new(
                qp.key("age_column"),
                format!("`{c}` is not a column name"),
                "a lower-case SQL name such as `enqueued_at`",
                "use the column's name as PostgreSQL stores it",
            ));
        }
    }
    if q.target_per_instance == 0 {
        out.push(Issue::new(
            qp.key("target_per_instance"),
            "0 jobs per instance would ask for endless instances",
            "at least 1",
            "set how many waiting jobs one instance takes, e.g. `target_per_instance: 100`",
        ));
    }
    if q.cooldown.is_some_and(|c| c.as_millis() < 1_000) {
        out.push(Issue::new(
            qp.key("cooldown"),
            "a cooldown under a second lets the count flap",
            "at least `1s`",
            "use `cooldown: 60s` or so",
        ));
    }
    if q.database.is_none() && spec.database.is_none() {
        out.push(Issue::new(
            qp.clone(),
            "no database to read the queue from",
            "`database:` in the spec, or `scale.queue.database`",
            "name the queue's database: `database: jobs-db`",
        ));
    }
}

fn check_rollout(spec: &Spec, kind: WorkloadKind, out: &mut Vec<Issue>) {
    let Some(r) = &spec.rollout else { return };
    let path = FieldPath::root().key("rollout");
    let strategy =
        r.strategy.unwrap_or(if kind == WorkloadKind::Service { Strategy::Canary } else { Strategy::AllAtOnce });
    if let Some(c) = &r.canary {
        let cpath = path.key("canary");
        if kind == WorkloadKind::Worker {
            out.push(
                Issue::new(
                    cpath.clone(),
                    "a worker takes no traffic to shift",
                    "no `canary` for `kind: worker`",
                    "remove `rollout.canary`",
                )
                .at_key(),
            );
        } else if strategy != Strategy::Canary {
            out.push(
                Issue::new(
                    cpath.clone(),
                    "`canary` settings with a non-canary strategy",
                    "`strategy: canary` beside `canary:`",
                    "remove `canary`, or set `strategy: canary`",
                )
                .at_key(),
            );
        }
        if let Some(steps) = &c.steps {
            check_steps(steps, &cpath.key("steps"), out);
        }
        if let Some(b) = c.bake {
            range(out, cpath.key("bake"), b, Duration::from_millis(0), Duration::from_secs(3600));
            let deadline = r.step_timeout.unwrap_or(Duration::from_secs(600));
            if b >= deadline {
                out.push(Issue::new(
                    path.key("step_timeout"),
                    format!("the step deadline {deadline} is not longer than the bake {b}"),
                    "`step_timeout` longer than `canary.bake`",
                    "raise `rollout.step_timeout` or shorten `rollout.canary.bake`",
                ));
            }
        }
        if let Some(a) = &c.analysis {
            if let Some(l) = a.max_p95_latency {
                range(
                    out,
                    cpath.key("analysis").key("max_p95_latency"),
                    l,
                    Duration::from_millis(1),
                    Duration::from_secs(60),
                );
            }
            if a.min_requests == Some(0) {
                out.push(Issue::new(
                    cpath.key("analysis").key("min_requests"),
                    "0 requests is no evidence",
                    "at least 1",
                    "use e.g. `min_requests: 20`",
                ));
            }
        }
    } else if kind == WorkloadKind::Worker && strategy == Strategy::Canary {
        out.push(Issue::new(
            path.key("strategy"),
            "a worker takes no traffic to shift",
            "`all_at_once` for `kind: worker`",
            "use `strategy: all_at_once`",
        ));
    }
    if let Some(t) = r.step_timeout {
        range(out, path.key("step_timeout"), t, Duration::from_secs(10), Duration::from_secs(6 * 3600));
    }
    if let Some(t) = r.drain_timeout {
        range(out, path.key("drain_timeout"), t, Duration::from_millis(0), Duration::from_secs(3600));
    }
    if let Some(t) = r.retention {
        range(out, path.key("retention"), t, Duration::from_millis(0), Duration::from_secs(7 * 86_400));
    }
}

fn check_steps(steps: &[u32], path: &FieldPath, out: &mut Vec<Issue>) {
    let expected = "ascending percentages from 1 to 100, ending at 100";
    let hint = "e.g. `steps: [5, 25, 50, 100]`";
    if steps.is_empty() {
        out.push(Issue::new(path.clone(), "no canary steps", expected, hint));
        return;
    }
    if steps.len() > 20 {
        out.push(Issue::new(
            path.clone(),
            format!("{} steps is more than 20", steps.len()),
            expected,
            "use fewer, larger steps",
        ));
    }
    for (i, &s) in steps.iter().enumerate() {
        if !(1..=100).contains(&s) {
            out.push(Issue::new(path.index(i), format!("{s}% is not between 1 and 100"), expected, hint));
        } else if i > 0 && s <= steps[i - 1] {
            out.push(Issue::new(
                path.index(i),
                format!("{s}% does not ascend after {}%", steps[i - 1]),
                expected,
                hint,
            ));
        }
    }
    if let Some(&last) = steps.last().filter(|l| **l != 100) {
        out.push(Issue::new(
            path.index(steps.len() - 1),
            format!("the last step is {last}%, not 100%"),
            expected,
            "end the list with 100",
        ));
    }
}

fn check_secrets(spec: &Spec, out: &mut Vec<Issue>) {
    for name in spec.secrets.keys() {
        if spec.run.env.contains_key(name) {
            out.push(
                Issue::new(
                    FieldPath::root().key("secrets").key(name.as_str()),
                    format!("`{name}` is set both in `run.env` and in `secrets`"),
                    "each variable set once",
                    "remove it from `run.env`; the secret fills it in",
                )
                .at_key(),
            );
        }
    }
}

fn check_network(spec: &Spec, kind: WorkloadKind, out: &mut Vec<Issue>) {
    let Some(n) = &spec.network else { return };
    let path = FieldPath::root().key("network");
    if !n.mtls && (!n.upstreams.is_empty() || n.certificate_ttl.is_some()) {
        out.push(Issue::new(
            path.key("mtls"),
            "upstreams and certificate_ttl are settings of the mesh, which is off",
            "`mtls: true` with them",
            "add `mtls: true`, or remove the mesh's settings",
        ));
    }
    if n.mtls && kind == WorkloadKind::Worker && n.upstreams.is_empty() {
        out.push(Issue::new(
            path.key("upstreams"),
            "a worker in the mesh serves nothing, so it needs services to call",
            "the services it calls, e.g. `upstreams: [ledger-api]`",
            "list the services it calls, or remove `network`",
        ));
    }
    for (i, u) in n.upstreams.iter().enumerate() {
        if u.as_str() == spec.service.as_str() {
            out.push(Issue::new(
                path.key("upstreams").index(i),
                format!("`{u}` is this service"),
                "other services",
                "a service reaches itself without the mesh; remove it",
            ));
        }
    }
    if let Some(ttl) = n.certificate_ttl {
        range(out, path.key("certificate_ttl"), ttl, Duration::from_secs(5), Duration::from_secs(30 * 86_400));
    }
}

fn check_database(spec: &Spec, out: &mut Vec<Issue>) {
    let Some(db) = &spec.database else { return };
    let path = FieldPath::root().key("database");
    if let Some(v) = db.version.as_deref().filter(|v| !POSTGRES_VERSIONS.contains(v)) {
        out.push(Issue::new(
            path.key("version"),
            format!("postgres `{v}` is not a supported major version"),
            format!("one of {}", POSTGRES_VERSIONS.join(", ")),
            "quote a supported major version, e.g. `version: \"16\"`",
        ));
    }
    if let Some(m) = &db.migrations {
        let path = path.key("migrations");
        let empty = |c: &[String]| c.is_empty() || c[0].trim().is_empty();
        if empty(&m.command) {
            out.push(Issue::new(
                path.key("command"),
                "the migration command is empty",
                "the program and its arguments",
                "e.g. `command: [payments-api, migrate]` (a program in the artifact)",
            ));
        }
        if m.down.as_deref().is_some_and(empty) {
            out.push(Issue::new(
                path.key("down"),
                "the down command is empty",
                "the program and its arguments, or no `down` at all",
                "e.g. `down: [payments-api, migrate, --to, \"1\"]`, or remove `down` to mark the migration irreversible",
            ));
        }
        if let Some(t) = m.timeout {
            range(out, path.key("timeout"), t, Duration::from_secs(1), Duration::from_secs(3600));
        }
    }
    if let Some(f) = &db.failover {
        if f.automatic && spec.regions.len() < 2 {
            out.push(Issue::new(
                path.key("failover").key("automatic"),
                "an automatic failover promotes a replica, and this database has none",
                "two or more regions (each after the first holds a streaming replica)",
                "list two regions, e.g. `regions: [us-east-1, us-west-2]`, or remove `automatic: true`",
            ));
        }
        if let Some(t) = f.after {
            range(out, path.key("failover").key("after"), t, Duration::from_secs(1), Duration::from_secs(3600));
        }
    }
    if let Some(r) = db.backups.as_ref().and_then(|b| b.retention) {
        range(
            out,
            path.key("backups").key("retention"),
            r,
            Duration::from_secs(86_400),
            Duration::from_secs(35 * 86_400),
        );
    }
}

fn check_regions(spec: &Spec, out: &mut Vec<Issue>) {
    let mut seen = BTreeSet::new();
    let path = FieldPath::root().key("regions");
    for (i, r) in spec.regions.iter().enumerate() {
        if !seen.insert(r) {
            out.push(Issue::new(
                path.index(i),
                format!("region `{r}` is listed twice"),
                "each region once",
                "remove the repeated region",
            ));
        }
    }
    if spec.regions.len() > 1 && spec.regions.iter().any(|r| r.as_str() == "local") {
        out.push(Issue::new(
            path,
            "`local` cannot be combined with cloud regions",
            "`[local]` alone, or cloud regions",
            "remove `local`, or list only `local`",
        ));
    }
}

fn check_iam(spec: &Spec, out: &mut Vec<Issue>) {
    let Some(iam) = &spec.iam else { return };
    let path = FieldPath::root().key("iam").key("allow");
    let mut seen = BTreeSet::new();
    for (i, st) in iam.allow.iter().enumerate() {
        let r = st.resource.trim();
        if r.is_empty() || r == "*" {
            out.push(Issue::new(
                path.index(i).key("resource"),
                "the resource must be named",
                "a resource ARN, not `*`",
                "name the resource, e.g. `arn:aws:s3:::bucket/*`",
            ));
        }
        if !seen.insert(st) {
            out.push(Issue::new(
                path.index(i),
                "this statement is listed twice",
                "each statement once",
                "remove the repeated statement",
            ));
        }
    }
}

/// Each environment's overlay, judged by what the spec becomes with it: a problem the
/// spec alone does not have is the overlay's, reported under `environments.<env>`.
fn check_environments(spec: &Spec, out: &mut Vec<Issue>) {
    if spec.environments.is_empty() {
        return;
    }
    let own: Vec<String> = validate(&Spec { environments: BTreeMap::new(), ..spec.clone() })
        .iter()
        .map(|i| format!("{}: {}", i.path, i.message))
        .collect();
    for env in spec.environments.keys() {
        let under = FieldPath::root().key("environments").key(env.as_str());
        for issue in validate(&spec.for_environment(env)) {
            if own.contains(&format!("{}: {}", issue.path, issue.message)) {
                continue;
            }
            let mut path = under.clone();
            for seg in issue.path.segments() {
                path = match seg {
                    crate::error::Segment::Key(k) => path.key(k.clone()),
                    crate::error::Segment::Index(i) => path.index(*i),
                };
            }
            out.push(Issue { path, message: format!("in environment {env}: {}", issue.message), ..issue });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_placeholders() {
        assert_eq!(placeholders("--port=${PORT}:${X}"), vec!["PORT", "X"]);
        assert!(placeholders("${unterminated").is_empty());
    }
}
