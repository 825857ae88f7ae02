//! `skiff init`: write a commented skiff.yaml from a recipe, checked before it is written.

use skiff_sdk::{Answer, Code, Envelope, Safety};

use crate::context::Context;
use crate::error::Result;
use crate::request::{InitRequest, Recipe};

const SERVICE: &str = r#"# skiff.yaml for {{NAME}}, an HTTP service. `skiff schema` documents every field;
# `skiff validate` checks this file and `skiff plan` shows what it compiles to.
service: {{NAME}}                 # a DNS label: lowercase letters, digits and '-'
artifact:
  build: cargo build --release -p {{NAME}}   # runs before each release; remove it if CI builds
  path: target/release/{{NAME}}              # the program, relative to this file
run:
  # ${PORT} is the port this instance listens on (the load balancer listens on `port`).
  command: [{{NAME}}, --port, "${PORT}"]
  env: {RUST_LOG: info}       # plain settings; secrets go under `secrets:` as references
port: {{PORT}}
health: {path: /healthz, interval: 5s, healthy_threshold: 2, unhealthy_threshold: 2}
intent:
  availability: standard      # high: >=3 instances over >=2 zones | standard: 2 | low: 1
  cost: balanced              # low: smaller machines | balanced | performance: larger ones
rollout:
  strategy: canary
  canary:
    steps: [5, 25, 50, 100]   # percent of traffic on the new release, ascending to 100
    bake: 2m                  # time at each step before its analysis
    analysis: {max_error_rate: 1%, max_p95_latency: 300ms}
"#;

const WORKER: &str = r#"# skiff.yaml for {{NAME}}, a worker: no port and no load balancer.
# `skiff schema` documents every field; `skiff validate` checks this file.
service: {{NAME}}
kind: worker
artifact:
  build: cargo build --release -p {{NAME}}
  path: target/release/{{NAME}}
run:
  command: [{{NAME}}]
  env: {RUST_LOG: info}
instances: {min: 1, max: 10, desired: 2}
# Or follow a PostgreSQL queue instead of `instances` (⌈jobs waiting ÷ 100⌉ instances):
# scale:
#   min: 1
#   max: 10
#   queue: {kind: postgres, table: jobs, age_column: enqueued_at, target_per_instance: 100, cooldown: 60s}
intent:
  availability: low           # workers retry; one instance at a time may be replaced
  cost: low                   # low cost runs workers on spot capacity
rollout:
  strategy: all_at_once       # a worker takes no traffic to shift
  drain_timeout: 1m           # time to finish in-flight jobs on SIGTERM
"#;

const API_DB: &str = r#"# skiff.yaml for {{NAME}}, an HTTP API with its own PostgreSQL database.
# `skiff schema` documents every field; `skiff plan` shows the database and its standby.
service: {{NAME}}
artifact:
  build: cargo build --release -p {{NAME}}
  path: target/release/{{NAME}}
run:
  command: [{{NAME}}, --port, "${PORT}"]
  env: {RUST_LOG: info}
port: {{PORT}}
health: {path: /healthz, interval: 5s, healthy_threshold: 2, unhealthy_threshold: 2}
intent:
  availability: high          # 3 instances over 3 zones and a multi-AZ database
  cost: balanced
secrets:
  DATABASE_URL: secret://{{NAME}}-db/url   # a reference: the value never enters Skiff's state
database:
  name: {{NAME}}-db
  engine: postgres
  version: "16"
  backups: {retention: 7d}    # automated backups, kept a week
rollout:
  strategy: canary
  canary:
    steps: [5, 25, 50, 100]
    bake: 2m
    analysis: {max_error_rate: 1%, max_p95_latency: 300ms}
"#;

const POSTGRES_HA: &str = r#"# skiff.yaml for {{NAME}}, an HTTP API whose PostgreSQL survives its primary.
# The first region holds the primary, the second a streaming replica Skiff manages; which
# one writes is recorded in the state bucket (a compare-and-swap document, no consensus
# service to run). `skiff failover stack {{NAME}} --to us-west-2` is a planned
# switchover (nothing lost); when the primary stops answering for `after`, Skiff
# promotes the replica itself, but only within `max_lag_bytes` of the primary. The old
# primary is fenced: started again, it refuses writes.
service: {{NAME}}
artifact:
  build: cargo build --release -p {{NAME}}
  path: target/release/{{NAME}}
run:
  command: [{{NAME}}, --port, "${PORT}"]
  env: {RUST_LOG: info}
port: {{PORT}}
health: {path: /healthz, interval: 5s, healthy_threshold: 2, unhealthy_threshold: 2}
intent:
  availability: standard
  cost: balanced
secrets:
  DATABASE_URL: secret://{{NAME}}-db/url   # follows the primary: repointed by every failover
database:
  name: {{NAME}}-db
  engine: postgres
  version: "16"
  backups: {retention: 7d}
  failover:
    automatic: true           # promote the replica when the primary does not answer...
    after: 10s                # ...for this long,
    max_lag_bytes: 1048576    # and only if the replica was at most 1 MiB of log behind
regions: [us-east-1, us-west-2]   # primary, replica (locally: two PostgreSQL servers)
rollout:
  strategy: canary
  canary:
    steps: [25, 100]
    bake: 1m
    analysis: {max_error_rate: 1%, max_p95_latency: 300ms}
"#;

/// `skiff init service|worker|stack api-db NAME`.
pub(crate) async fn run(ctx: &Context, args: &InitRequest) -> Result<Answer> {
    let (template, kind) = match &args.recipe {
        Recipe::Service => (SERVICE, "service"),
        Recipe::Worker => (WORKER, "worker"),
        Recipe::ApiDb => (API_DB, "api-db stack"),
        Recipe::PostgresHa => (POSTGRES_HA, "postgres-ha stack"),
        Recipe::Plugin(recipe) => {
            let text = crate::plugin::recipe(ctx, recipe, &args.name, args.port).await?;
            return write(ctx, &text, &format!("plugin {recipe}"), args);
        }
    };
    write(ctx, template, kind, args)
}

fn write(ctx: &Context, template: &str, kind: &str, args: &InitRequest) -> Result<Answer> {
    if args.name.parse::<skiff_spec::values::DnsLabel>().is_err() {
        return Err(Envelope::failure(Code::Usage, format!("`{}` is not a valid service name", args.name))
            .fact(format!("expected {}", skiff_spec::values::DnsLabel::EXPECTED))
            .action("init", format!("skiff init service {}", suggest_name(&args.name)), false, Safety::ReadOnly, 0.6)
            .into());
    }
    let text = template.replace("{{NAME}}", &args.name).replace("{{PORT}}", &args.port.to_string());
    let dir = ctx.cwd.join(&args.dir);
    let path = dir.join("skiff.yaml");
    let shown = args.dir.join("skiff.yaml").display().to_string();
    let shown = shown.strip_prefix("./").unwrap_or(&shown).to_owned();
    if let Err(e) = skiff_spec::parse(&shown, text.as_bytes()) {
        return Err(Envelope::failure(Code::Usage, "this name and port do not make a valid spec")
            .facts(e.diagnostics().iter().map(|d| format!("{}: {}", d.path, d.message)))
            .fact("nothing was written")
            .into());
    }
    if path.exists() && !args.force {
        return Err(Envelope::failure(Code::AlreadyExists, format!("{shown} already exists"))
            .fact("nothing was written")
            .action("validate", format!("skiff validate -f {shown}"), false, Safety::ReadOnly, 0.6)
            .action(
                "overwrite",
                format!("skiff init {} {} --dir {} --force", recipe_word(kind), args.name, args.dir.display()),
                true,
                Safety::Irreversible,
                0.3,
            )
            .into());
    }
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| atomic_write(&path, text.as_bytes())) {
        return Err(Envelope::failure(Code::IoError, format!("cannot write {shown}"))
            .fact(format!("{}: {e}", path.display()))
            .into());
    }
    Ok(Envelope::ok(format!("wrote {shown} for {kind} `{}`", args.name))
        .fact("the file is commented; `skiff schema` documents every field")
        .data(serde_json::json!({ "file": shown, "service": args.name, "recipe": kind }))
        .action("validate", format!("skiff validate -f {shown}"), false, Safety::ReadOnly, 0.7)
        .action("plan", format!("skiff plan -f {shown}"), false, Safety::ReadOnly, 0.6)
        .into())
}

fn recipe_word(kind: &str) -> &str {
    match kind {
        "api-db stack" => "stack api-db",
        other => other,
    }
}

/// A DNS-label version of a rejected name, for the recommended command.
fn suggest_name(name: &str) -> String {
    let mut s: String =
        name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    s = s.trim_matches('-').to_owned();
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s.insert_str(0, "svc-");
    }
    s.truncate(63);
    s.trim_end_matches('-').to_owned()
}

/// Writes through a temporary file and a rename, so a crash never leaves half a file.
pub(crate) fn atomic_write(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_recipe_validates_for_odd_names_and_ports() {
        for name in ["a", "payments-api", &"x".repeat(59)] {
            for t in [super::SERVICE, super::WORKER, super::API_DB] {
                let text = t.replace("{{NAME}}", name).replace("{{PORT}}", "1");
                skiff_spec::parse("skiff.yaml", text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
            }
        }
        assert_eq!(super::suggest_name("Payments_API"), "payments-api");
        assert_eq!(super::suggest_name("9lives"), "svc-9lives");
    }
}
