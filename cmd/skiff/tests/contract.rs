//! The CLI contract, checked for every command against the situations an operator
//! meets: unknown service, operation or release, an uninitialized or unreachable
//! bucket, a missing signing key, a spec that does not validate, an operation in
//! progress, and no terminal without `--yes`. Each cell of the matrix asserts that
//! `--format json` prints exactly one envelope on stdout and nothing on stderr, that
//! the code and exit code are the taxonomy's, that the answer names the thing, that
//! every recommended `skiff` command is one `skiff` accepts, that the code's page in
//! docs/failure-codes.md lists the command, and that the bucket is untouched.

mod common;

use std::collections::BTreeMap;

use clap::Parser as _;
use common::Sandbox;
use skiff_sdk::Code;

/// The situations of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Situation {
    UnknownService,
    UnknownOperation,
    UnknownRelease,
    UninitializedBucket,
    UnreachableBucket,
    MissingKey,
    SpecInvalid,
    InProgress,
    Unconfirmed,
}

use Situation::*;

/// One cell: in `situation`, `skiff ARGS` answers `code`, naming `names`.
struct Cell {
    situation: Situation,
    args: &'static str,
    code: Code,
    names: &'static str,
}

const fn cell(situation: Situation, args: &'static str, code: Code, names: &'static str) -> Cell {
    Cell { situation, args, code, names }
}

/// `web` exists (with release `R1` = the one release created), `nosuch` does not;
/// `OP` is an operation of web, `op-nosuch` is none; `bad.yaml` does not validate.
const MATRIX: &[Cell] = &[
    // A service nobody deployed: NOT_FOUND naming it, before keys or providers.
    cell(UnknownService, "status nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "logs nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "metrics nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "debug collect nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "repair incident nosuch --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "repair incident nosuch --dry-run", Code::NotFound, "nosuch"),
    cell(UnknownService, "saga start incident-repair --param service=nosuch --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "doctor nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "reconcile nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "reconcile nosuch --repair --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "rollback nosuch --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "rollback nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "saga start rollback --service nosuch --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "saga list --service nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "release list nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "release show nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "release verify nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "release promote nosuch 2026.01.01.9 --to production --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "database backup nosuch --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "database backup nosuch --dry-run", Code::NotFound, "nosuch"),
    cell(UnknownService, "database list-backups nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "restore database nosuch --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "failover stack nosuch --to us-west-2 --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "failover stack nosuch --to us-west-2 --dry-run", Code::NotFound, "nosuch"),
    cell(UnknownService, "restore database nosuch --to latest --dry-run", Code::NotFound, "nosuch"),
    cell(UnknownService, "saga start database-restore --param database=nosuch --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "saga start database-backup --param database=nosuch --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "rotate secret nosuch --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "rotate secret nosuch --dry-run", Code::NotFound, "nosuch"),
    cell(UnknownService, "saga start secret-rotation --param secret=nosuch --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "rotate key nosuch --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "saga start key-rotation --param alias=nosuch --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "rotate key --delete-after 90d --yes", Code::Usage, "90d"),
    cell(UnknownService, "database retire nosuch --yes", Code::NotFound, "nosuch"),
    cell(UnknownService, "import kube nosuch.yaml --out out.yaml", Code::NotFound, "nosuch.yaml"),
    cell(UnknownService, "terraform drift --workspace nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "terraform apply --module nosuch-module --yes", Code::NotFound, "nosuch-module"),
    cell(UnknownService, "terraform apply --module . --yes", Code::Usage, ".tf"),
    cell(
        UnknownService,
        "saga start traffic-cutover --service nosuch --from http://127.0.0.1:9 --yes",
        Code::NotFound,
        "nosuch",
    ),
    cell(
        UnknownService,
        "saga start traffic-cutover --service nosuch --from http://127.0.0.1:9 --dry-run",
        Code::NotFound,
        "nosuch",
    ),
    cell(
        UnknownRelease,
        "saga start traffic-cutover --service web --from https://old:8443 --yes",
        Code::Usage,
        "https://old:8443",
    ),
    cell(
        UnknownRelease,
        "saga start traffic-cutover --service web --from http://127.0.0.1:9 --steps 5,50 --yes",
        Code::Usage,
        "--steps 5,50",
    ),
    cell(UnknownService, "database retire nosuch --instance old --dry-run", Code::NotFound, "nosuch"),
    cell(UnknownService, "plugin validate nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "plugin explain nosuch", Code::NotFound, "nosuch"),
    cell(UnknownService, "plugin list", Code::Ok, "0 plugins"),
    cell(UnknownService, "saga start database-retire --param database=nosuch --yes", Code::NotFound, "nosuch"),
    // An operation that does not exist.
    cell(UnknownOperation, "saga show op-nosuch", Code::NotFound, "op-nosuch"),
    cell(UnknownOperation, "saga events op-nosuch", Code::NotFound, "op-nosuch"),
    cell(UnknownOperation, "events --op op-nosuch", Code::NotFound, "op-nosuch"),
    cell(UnknownOperation, "saga approve op-nosuch --yes", Code::NotFound, "op-nosuch"),
    cell(UnknownOperation, "saga reject op-nosuch --yes", Code::NotFound, "op-nosuch"),
    cell(UnknownOperation, "saga pause op-nosuch --yes", Code::NotFound, "op-nosuch"),
    cell(UnknownOperation, "saga resume op-nosuch --yes", Code::NotFound, "op-nosuch"),
    cell(UnknownOperation, "saga cancel op-nosuch --yes", Code::NotFound, "op-nosuch"),
    cell(UnknownOperation, "saga approve op-nosuch", Code::NotFound, "op-nosuch"),
    // A release the service does not have.
    cell(UnknownRelease, "release show web 2026.01.01.9", Code::NotFound, "2026.01.01.9"),
    cell(UnknownRelease, "release verify web 2026.01.01.9", Code::NotFound, "2026.01.01.9"),
    cell(UnknownRelease, "release promote web 2026.01.01.9 --to production --yes", Code::NotFound, "2026.01.01.9"),
    cell(UnknownRelease, "rollback web --to 2026.01.01.9 --yes", Code::NotFound, "2026.01.01.9"),
    cell(UnknownRelease, "keys generate", Code::AlreadyExists, "cosign.key"),
    // A bucket nothing was ever written to: named things are not found, lists are
    // empty, and nothing creates the bucket by looking.
    cell(UninitializedBucket, "status nosuch", Code::NotFound, "nosuch"),
    cell(UninitializedBucket, "rollback nosuch --yes", Code::NotFound, "nosuch"),
    cell(UninitializedBucket, "logs nosuch", Code::NotFound, "nosuch"),
    cell(UninitializedBucket, "debug collect nosuch", Code::NotFound, "nosuch"),
    cell(UninitializedBucket, "repair incident nosuch --yes", Code::NotFound, "nosuch"),
    cell(UninitializedBucket, "database list-backups nosuch", Code::NotFound, "nosuch"),
    cell(UninitializedBucket, "rotate secret nosuch --yes", Code::NotFound, "nosuch"),
    cell(UninitializedBucket, "database retire nosuch --yes", Code::NotFound, "nosuch"),
    cell(UninitializedBucket, "status", Code::Ok, "0 services"),
    cell(UninitializedBucket, "saga list", Code::Ok, "0 operations"),
    cell(UninitializedBucket, "release list", Code::Ok, "0 releases"),
    cell(UninitializedBucket, "reconcile", Code::Ok, "nothing to reconcile"),
    cell(UninitializedBucket, "audit", Code::Ok, "0 audit entries"),
    cell(UninitializedBucket, "plan -f skiff.yaml", Code::Ok, "web"),
    cell(UninitializedBucket, "deploy -f skiff.yaml --dry-run", Code::Ok, "web"),
    cell(UninitializedBucket, "iam policy", Code::Usage, "S3"),
    cell(UninitializedBucket, "secrets set not-a-reference", Code::Usage, "not-a-reference"),
    cell(UninitializedBucket, "secrets list nosuch", Code::Ok, "nosuch"),
    // A bucket that cannot be reached: STATE_UNAVAILABLE for whatever needs it; the
    // rest works without it.
    cell(UnreachableBucket, "status", Code::StateUnavailable, "s3://skiff-contract"),
    cell(UnreachableBucket, "status web", Code::StateUnavailable, "s3://skiff-contract"),
    cell(UnreachableBucket, "debug collect web", Code::StateUnavailable, "s3://skiff-contract"),
    cell(UnreachableBucket, "repair incident web --yes", Code::StateUnavailable, "s3://skiff-contract"),
    cell(UnreachableBucket, "saga list", Code::StateUnavailable, "s3://skiff-contract"),
    cell(UnreachableBucket, "saga show op-nosuch", Code::StateUnavailable, "s3://skiff-contract"),
    cell(UnreachableBucket, "release list web", Code::StateUnavailable, "s3://skiff-contract"),
    cell(
        UnreachableBucket,
        "release promote web R1 --to production --yes",
        Code::StateUnavailable,
        "s3://skiff-contract",
    ),
    cell(UnreachableBucket, "plan -f skiff.yaml", Code::StateUnavailable, "s3://skiff-contract"),
    cell(UnreachableBucket, "state verify", Code::StateUnavailable, "s3://skiff-contract"),
    cell(UnreachableBucket, "database list-backups web-db", Code::StateUnavailable, "s3://skiff-contract"),
    cell(UnreachableBucket, "rotate secret web-db --yes", Code::StateUnavailable, "s3://skiff-contract"),
    cell(UnreachableBucket, "rotate key --yes", Code::StateUnavailable, "s3://skiff-contract"),
    cell(UnreachableBucket, "database retire web-db --yes", Code::StateUnavailable, "s3://skiff-contract"),
    cell(UnreachableBucket, "validate -f skiff.yaml", Code::Ok, "skiff.yaml"),
    cell(UnreachableBucket, "schema", Code::Ok, "JSON Schema"),
    cell(UnreachableBucket, "version", Code::Ok, "skiff"),
    cell(UnreachableBucket, "config show", Code::Ok, "s3://skiff-contract"),
    cell(UnreachableBucket, "init service fresh --dir fresh", Code::Ok, "fresh"),
    cell(UnreachableBucket, "saga kinds", Code::Ok, "saga kind"),
    cell(UnreachableBucket, "tui", Code::Usage, "terminal"),
    cell(UnreachableBucket, "completion tcsh", Code::Usage, "tcsh"),
    cell(UnreachableBucket, "terraform drift --workspace infra", Code::StateUnavailable, "s3://skiff-contract"),
    cell(UnreachableBucket, "terraform generate -f skiff.yaml --out tf", Code::Ok, "web"),
    cell(
        UnreachableBucket,
        "saga start traffic-cutover --service web --from http://127.0.0.1:9 --yes",
        Code::StateUnavailable,
        "s3://skiff-contract",
    ),
    // No signing key where one is needed.
    cell(MissingKey, "deploy -f skiff.yaml --no-build --yes", Code::SignatureInvalid, "cosign.key"),
    cell(MissingKey, "release create -f skiff.yaml --no-build --yes", Code::SignatureInvalid, "cosign.key"),
    cell(MissingKey, "release verify web", Code::SignatureInvalid, "cosign.pub"),
    cell(MissingKey, "release promote web R1 --to production --yes", Code::SignatureInvalid, "cosign.pub"),
    // A spec that does not validate: every problem at file:line.
    cell(SpecInvalid, "validate -f bad.yaml", Code::SpecInvalid, "bad.yaml:"),
    cell(SpecInvalid, "plan -f bad.yaml", Code::SpecInvalid, "bad.yaml:"),
    cell(SpecInvalid, "policy check -f bad.yaml", Code::SpecInvalid, "bad.yaml:"),
    cell(SpecInvalid, "cost explain -f bad.yaml", Code::SpecInvalid, "bad.yaml:"),
    cell(UnreachableBucket, "cost explain -f skiff.yaml --env Not_A_Label", Code::Usage, "Not_A_Label"),
    cell(SpecInvalid, "deploy -f bad.yaml --yes", Code::SpecInvalid, "bad.yaml:"),
    cell(SpecInvalid, "deploy -f bad.yaml --watch", Code::SpecInvalid, "bad.yaml:"),
    cell(SpecInvalid, "deploy -f bad.yaml --dry-run", Code::SpecInvalid, "bad.yaml:"),
    cell(SpecInvalid, "deploy -f bad.yaml --shadow --mirror 10 --yes", Code::SpecInvalid, "bad.yaml:"),
    cell(SpecInvalid, "release create -f bad.yaml --yes", Code::SpecInvalid, "bad.yaml:"),
    cell(SpecInvalid, "validate -f missing.yaml", Code::NotFound, "missing.yaml"),
    cell(SpecInvalid, "terraform generate -f bad.yaml --out tf", Code::SpecInvalid, "bad.yaml:"),
    cell(SpecInvalid, "adopt terraform --state bad.yaml --yes", Code::SpecInvalid, "bad.yaml"),
    cell(SpecInvalid, "adopt terraform --state missing.tfstate --yes", Code::NotFound, "missing.tfstate"),
    cell(SpecInvalid, "terraform generate -f missing.yaml --out tf", Code::NotFound, "missing.yaml"),
    cell(SpecInvalid, "import kube bad.yaml --out out.yaml", Code::SpecInvalid, "bad.yaml"),
    cell(UnreachableBucket, "import kube skiff.yaml --out out.yaml", Code::SpecInvalid, "skiff.yaml"),
    // Another operation works on the service: LEASE_HELD naming it.
    cell(InProgress, "deploy -f skiff.yaml --no-build --yes", Code::LeaseHeld, "OP"),
    cell(InProgress, "rollback web --to R1 --yes", Code::LeaseHeld, "OP"),
    cell(InProgress, "reconcile web --repair --yes", Code::LeaseHeld, "OP"),
    cell(InProgress, "repair incident web --yes", Code::LeaseHeld, "OP"),
    cell(InProgress, "deploy -f skiff.yaml --shadow --no-build --yes", Code::LeaseHeld, "OP"),
    cell(InProgress, "saga start rollback --service web --to R1 --yes", Code::LeaseHeld, "OP"),
    // No terminal and no --yes: nothing changes until someone confirms.
    cell(Unconfirmed, "deploy -f skiff.yaml --no-build", Code::ConfirmationRequired, "--yes"),
    cell(Unconfirmed, "rollback web --to R1", Code::ConfirmationRequired, "--yes"),
    cell(Unconfirmed, "reconcile web --repair", Code::ConfirmationRequired, "--yes"),
    cell(Unconfirmed, "repair incident web", Code::ConfirmationRequired, "--yes"),
    cell(Unconfirmed, "release create -f skiff.yaml --no-build", Code::ConfirmationRequired, "--yes"),
    cell(Unconfirmed, "saga start selftest", Code::ConfirmationRequired, "--yes"),
    cell(Unconfirmed, "saga approve OP", Code::ConfirmationRequired, "--yes"),
    cell(Unconfirmed, "saga reject OP", Code::ConfirmationRequired, "--yes"),
    cell(Unconfirmed, "saga pause OP", Code::ConfirmationRequired, "--yes"),
    cell(Unconfirmed, "saga resume OP", Code::ConfirmationRequired, "--yes"),
    cell(Unconfirmed, "saga cancel OP", Code::ConfirmationRequired, "--yes"),
    cell(Unconfirmed, "state init", Code::ConfirmationRequired, "--yes"),
    cell(Unconfirmed, "local down --stop-instances", Code::ConfirmationRequired, "--yes"),
];

const SPEC: &str = "service: web\nartifact: {path: bin/web}\nrun: {command: [web]}\nport: 18080\n";
const BAD: &str = "service: web\nartifact: {path: bin/web}\nrun: {command: [web]}\nport: 99999999\nrollout: {canary: {steps: [50, 25]}}\n";

/// A sandbox prepared for one situation, and the words its cells' args stand for.
struct World {
    sandbox: Sandbox,
    env: Vec<(&'static str, String)>,
    words: BTreeMap<&'static str, String>,
    /// Commands go through skiffd (which audits every call it is asked to make).
    served: bool,
}

/// A skiffd, stopped when dropped.
struct Skiffd(std::process::Child);

impl Drop for Skiffd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl World {
    fn new(situation: Situation) -> World {
        let sandbox = Sandbox::new();
        let dir = sandbox.path().to_path_buf();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/web"), "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::write(dir.join("skiff.yaml"), SPEC).unwrap();
        std::fs::write(dir.join("bad.yaml"), BAD).unwrap();
        let mut world = World { sandbox, env: Vec::new(), words: BTreeMap::new(), served: false };
        match situation {
            UnknownService | UnknownOperation | UninitializedBucket | SpecInvalid => {}
            UnreachableBucket => {
                let closed = skiff_testkit::free_port();
                world.env = vec![
                    ("SKIFF_STATE", "s3://skiff-contract/prefix".to_owned()),
                    ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{closed}")),
                    ("AWS_ACCESS_KEY_ID", "contract".to_owned()),
                    ("AWS_SECRET_ACCESS_KEY", "contract".to_owned()),
                    ("AWS_REGION", "us-east-1".to_owned()),
                ];
            }
            MissingKey => {
                // An explicit bucket (not the embedded default, which makes a key), and a
                // release whose trusted public key is then lost.
                world.env = vec![("SKIFF_STATE", format!("file://{}", dir.join(".skiff/state").display()))];
                world.release();
                std::fs::remove_file(dir.join(".skiff/keys/cosign.key")).unwrap();
                std::fs::remove_file(dir.join(".skiff/keys/cosign.pub")).unwrap();
            }
            UnknownRelease => {
                world.release();
                world.operation(false);
            }
            InProgress | Unconfirmed => {
                world.release();
                world.operation(situation == InProgress);
            }
        }
        world
    }

    fn run(&self, args: &[&str]) -> common::Run {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.sandbox.run_env(args, &env)
    }

    /// From now on commands go through a skiffd serving this sandbox's bucket.
    fn serve(&mut self) -> Skiffd {
        let dir = self.sandbox.path();
        let skiffd = skiff_testkit::workspace_bin("skiffd");
        let tokens = dir.join("tokens.json");
        let out = std::process::Command::new(&skiffd)
            .args(["token", "create", "--name", "tester", "--role", "approver", "--tokens"])
            .arg(&tokens)
            .output()
            .unwrap();
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let mut child = std::process::Command::new(&skiffd)
            .args(["serve", "--listen", "127.0.0.1:0", "--bucket"])
            .arg(format!("file://{}", dir.join(".skiff/state").display()))
            .arg("--tokens")
            .arg(&tokens)
            .arg("--keys")
            .arg(dir.join(".skiff/keys"))
            .env("SKIFF_BIN", skiff_testkit::workspace_bin("skiff"))
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let port = line.split("127.0.0.1:").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_owned();
        self.env.push(("SKIFF_SERVER", format!("http://127.0.0.1:{port}")));
        self.env.push(("SKIFF_TOKEN", token));
        self.served = true;
        Skiffd(child)
    }

    /// A key pair and one release of web: `R1`.
    fn release(&mut self) {
        assert_eq!(self.run(&["keys", "generate"]).code, 0);
        let r = self.run(&["release", "create", "-f", "skiff.yaml", "--no-build", "--yes", "--format", "json"]);
        assert_eq!(r.code, 0, "{}", r.stdout);
        let v = common::json(&r);
        self.words.insert("R1", v["data"]["manifest"]["release"].as_str().unwrap().to_owned());
    }

    /// An operation of web, `OP`: left planned (working on web) or run to its end.
    fn operation(&mut self, live: bool) {
        let ledger = common::ledger(self.sandbox.path());
        let op = common::block(async {
            let engine = skiff_saga::Engine::new(ledger.clone(), skiff_steps::registry());
            let graph = skiff_saga::SagaBuilder::new("selftest").step(
                "note",
                "selftest.note",
                serde_json::json!({"text": "x"}),
            );
            let submitted = engine
                .submit(skiff_saga::Submission {
                    graph: graph.build().unwrap(),
                    service: Some("web".into()),
                    actor: "tester".into(),
                    reason: "contract".into(),
                    idempotency_key: Some("contract".into()),
                    params: serde_json::json!({}),
                    scope: Some(skiff_saga::ServiceScope::service("web")),
                })
                .await
                .unwrap();
            if !live {
                engine.run(&submitted.op_id).await.unwrap();
            }
            submitted.op_id
        });
        self.words.insert("OP", op);
    }

    /// The cell's arguments with its words filled in.
    fn args(&self, c: &Cell) -> Vec<String> {
        c.args
            .split_whitespace()
            .map(|w| self.words.get(w).cloned().unwrap_or_else(|| w.to_owned()))
            .chain(["--format".to_owned(), "json".to_owned()])
            .collect()
    }

    /// Every file of the bucket and its bytes.
    fn bucket(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let root = self.sandbox.path().join(".skiff/state");
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let audit = self.served && p.strip_prefix(&root).is_ok_and(|r| r.starts_with("v1/audit"));
                if p.is_dir() {
                    stack.push(p);
                } else if !p.to_string_lossy().contains(".skiff-locks") && !audit {
                    out.insert(p.strip_prefix(&root).unwrap().display().to_string(), std::fs::read(&p).unwrap());
                }
            }
        }
        out
    }
}

/// Every problem a cell shows, empty when it keeps the contract.
fn check(w: &World, c: &Cell) -> Vec<String> {
    let args = w.args(c);
    let shown = format!("skiff {}", args.join(" "));
    let before = w.bucket();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = w.run(&refs);
    let mut problems = Vec::new();
    if !r.stderr.is_empty() {
        problems.push(format!("prints on stderr in JSON mode: {}", r.stderr));
    }
    let env: serde_json::Value = match serde_json::from_str(&r.stdout) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => return vec![format!("stdout is not one JSON envelope:\n{}", r.stdout)],
    };
    let code = env["code"].as_str().unwrap_or_default();
    if code != c.code.as_str() {
        problems.push(format!("code {code}, expected {}: {}", c.code.as_str(), env["summary"]));
    }
    if r.code != i32::from(c.code.exit_code()) {
        problems.push(format!("exit {}, expected {}", r.code, c.code.exit_code()));
    }
    let named = w.words.get(c.names).map_or(c.names, String::as_str);
    let said = format!("{} {}", env["summary"], env["facts"]);
    let mut actions: Vec<String> = Vec::new();
    for a in env["recommended_actions"].as_array().into_iter().flatten() {
        actions.push(a["command"].as_str().unwrap_or_default().to_owned());
    }
    if !said.contains(named) && !actions.iter().any(|a| a.contains(named)) {
        problems.push(format!("the answer does not name `{named}`: {said}"));
    }
    for a in actions.iter().filter(|a| a.starts_with("skiff ")) {
        let words = a.split_whitespace().map(|w| w.trim_matches('\''));
        // `--help` is accepted: clap answers it with the help text.
        if let Err(e) = skiff_cli::cli::Cli::try_parse_from(words)
            && e.kind() != clap::error::ErrorKind::DisplayHelp
        {
            problems.push(format!("recommends `{a}`, which skiff does not accept: {}", e.kind()));
        }
    }
    if c.code != Code::Ok {
        let listed = c
            .code
            .returned_by()
            .iter()
            .any(|b| b.starts_with("every command") || format!("skiff {}", c.args).starts_with(b));
        if !listed {
            problems.push(format!("docs/failure-codes.md does not list `skiff {}` under {}", c.args, code));
        }
    }
    if w.bucket() != before {
        problems.push("changed the bucket".to_owned());
    }
    problems.into_iter().map(|p| format!("{shown}: {p}")).collect()
}

fn run_situation(situation: Situation) -> Vec<String> {
    let w = World::new(situation);
    MATRIX.iter().filter(|c| c.situation == situation).flat_map(|c| check(&w, c)).collect()
}

/// Commands that read this machine's files or terminal, so never go to skiffd.
const LOCAL_ONLY: &[&str] = &[
    "release create",
    "state init",
    "local",
    "secrets",
    "keys",
    "init",
    "validate",
    "schema",
    "version",
    "config",
    "plugin",
];

fn run_served(situation: Situation) -> Vec<String> {
    let mut w = World::new(situation);
    let _skiffd = w.serve();
    MATRIX
        .iter()
        .filter(|c| c.situation == situation && !LOCAL_ONLY.iter().any(|l| c.args.starts_with(l)))
        .flat_map(|c| check(&w, c).into_iter().map(|p| format!("through skiffd: {p}")))
        .collect()
}

#[test]
fn every_command_keeps_the_contract_in_every_situation() {
    let situations = [
        UnknownService,
        UnknownOperation,
        UnknownRelease,
        UninitializedBucket,
        UnreachableBucket,
        MissingKey,
        SpecInvalid,
        InProgress,
        Unconfirmed,
    ];
    let problems: Vec<String> = situations.into_iter().flat_map(run_situation).collect();
    assert!(problems.is_empty(), "{} cells break the contract:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn the_served_commands_keep_it_through_skiffd() {
    // skiffd answers what it serves with the same code, names and actions; it only
    // adds its audit entries.
    let situations = [UnknownService, UnknownOperation, UnknownRelease, SpecInvalid, InProgress, Unconfirmed];
    let problems: Vec<String> = situations.into_iter().flat_map(run_served).collect();
    assert!(problems.is_empty(), "{} cells break the contract:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn the_matrix_covers_every_command() {
    // Every subcommand `skiff --help` lists appears in at least one cell.
    let cli = <skiff_cli::cli::Cli as clap::CommandFactory>::command();
    let covered: Vec<&str> = MATRIX.iter().filter_map(|c| c.args.split_whitespace().next()).collect();
    let missing: Vec<String> = cli
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .filter(|n| n != "help" && !covered.contains(&n.as_str()))
        .collect();
    assert!(missing.is_empty(), "commands without a contract cell: {missing:?}");
}

#[test]
fn the_three_first_found_cases_point_to_status_or_deploy() {
    // logs printed nothing, release list answered an empty OK, rollback blamed the key.
    let w = World::new(UnknownService);
    for args in ["logs nosuch", "release list nosuch", "rollback nosuch --yes"] {
        let c = MATRIX.iter().find(|c| c.args == args && c.situation == UnknownService).unwrap();
        assert_eq!(c.code, Code::NotFound);
        let argv = w.args(c);
        let r = w.run(&argv.iter().map(String::as_str).collect::<Vec<_>>());
        let v = common::json(&r);
        assert_eq!((v["code"].as_str(), r.code), (Some("NOT_FOUND"), 4), "{args}: {}", r.stdout);
        assert!(v["facts"].to_string().contains("nosuch"), "{args}: no fact names the service: {}", r.stdout);
        let actions = v["recommended_actions"].to_string();
        assert!(
            actions.contains("skiff status") || actions.contains("skiff deploy"),
            "{args}: no status or deploy action: {actions}"
        );
    }
}
