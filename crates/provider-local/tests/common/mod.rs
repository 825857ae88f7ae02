//! A real local environment for tests: a file bucket, a signing key, hello releases,
//! and a supervisor running in this process whose runner processes exit with the test.

#![allow(dead_code, unreachable_pub, reason = "shared by several test binaries")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff_pluginapi::{DatabaseSpec, GroupSpec, HealthCheck, LaunchConfig, Provider, RunnerConfig};
use skiff_provider_local::{LocalDir, LocalProvider, SupervisorConfig};
use skiff_release::{ReleaseInput, Signer};
use skiff_state::Ledger;

/// A small PostgreSQL database `id` whose database is called `name`.
pub fn database(id: &str, name: &str) -> DatabaseSpec {
    DatabaseSpec {
        id: id.into(),
        name: name.into(),
        engine: "postgres".into(),
        version: "16".into(),
        instance_class: "db.t4g.small".into(),
        storage_gib: 20,
        multi_az: false,
        backup_retention_days: 7,
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub ledger: Ledger,
    pub signer: Signer,
    pub public_pem: String,
    pub provider: LocalProvider,
    pub bucket: String,
    /// The service program releases carry.
    pub hello: PathBuf,
    supervisor: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// A supervisor in a process of its own ([`Env::start_apart`]).
    apart: Option<std::process::Child>,
}

impl Drop for Env {
    /// Cluster data kept outside the temporary directory (PostgreSQL's home, when the
    /// tests run as root) goes with it; its servers are stopped first.
    fn drop(&mut self) {
        let data = LocalDir::new(self.dir.path().join("local")).database_data();
        if data.starts_with(self.dir.path()) {
            return;
        }
        for entry in std::fs::read_dir(&data).into_iter().flatten().flatten() {
            let pid = std::fs::read_to_string(entry.path().join("data/postmaster.pid")).unwrap_or_default();
            if let Some(pid) = pid.lines().next().filter(|p| !p.is_empty()) {
                let _ = std::process::Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = std::fs::remove_dir_all(data);
    }
}

impl Env {
    pub async fn start() -> Env {
        Env::start_with(skiff_testkit::workspace_bin("skiff-runner"), skiff_testkit::workspace_bin("hello")).await
    }

    /// With given runner and service binaries (benchmarks use release builds).
    pub async fn start_with(runner: PathBuf, hello: PathBuf) -> Env {
        Env::start_inner(runner, hello, None).await
    }

    /// With the supervisor in a process of its own, as `skiff local up` runs it:
    /// `spawn` starts it from its configuration (a benchmark's load generator must not
    /// share the balancer's threads). Stopped by [`Env::stop`].
    pub async fn start_apart(
        runner: PathBuf,
        hello: PathBuf,
        spawn: impl FnOnce(&SupervisorConfig) -> std::process::Child,
    ) -> Env {
        Env::start_inner(runner, hello, Some(Box::new(spawn))).await
    }

    #[expect(clippy::type_complexity, reason = "one private call site each")]
    async fn start_inner(
        runner: PathBuf,
        hello: PathBuf,
        spawn: Option<Box<dyn FnOnce(&SupervisorConfig) -> std::process::Child + '_>>,
    ) -> Env {
        let dir = tempfile::tempdir().unwrap();
        // PostgreSQL (run as the postgres user when root) must traverse these.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let bucket = format!("file://{}", dir.path().join("state").display());
        let ledger = Ledger::open(&bucket, &Default::default()).unwrap();
        let keys = skiff_release::generate(b"").unwrap();
        let signer = Signer::from_encrypted_pem(keys.private_pem.as_bytes(), b"").unwrap();
        let local = LocalDir::new(dir.path().join("local"));
        let config = SupervisorConfig {
            dir: local.clone(),
            runner,
            runner_args: Vec::new(),
            port: 0,
            instances_exit_with: Some(std::process::id()),
        };
        let (supervisor, apart) = match spawn {
            None => (Some(tokio::spawn(skiff_provider_local::serve(config))), None),
            Some(spawn) => (None, Some(spawn(&config))),
        };
        let provider = LocalProvider::new(local, ledger.clone());
        for _ in 0..200 {
            if provider.status().await.is_some() {
                break;
            }
            skiff_clock::Clock::sleep(&skiff_clock::SystemClock, Duration::from_millis(25)).await;
        }
        assert!(provider.status().await.is_some(), "the supervisor answers");
        Env { dir, ledger, signer, public_pem: keys.public_pem, provider, bucket, hello, supervisor, apart }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A signed release of the hello example with extra environment.
    pub async fn release(&self, service: &str, env: &[(&str, &str)]) -> String {
        let hello = &self.hello;
        let app = self.path().join("apps").join(service);
        std::fs::create_dir_all(&app).unwrap();
        let mut env_yaml = String::from("    HELLO_MESSAGE: hello\n");
        for (k, v) in env {
            env_yaml.push_str(&format!("    {k}: \"{v}\"\n"));
        }
        let yaml = format!(
            "service: {service}\nartifact: {{path: {}}}\nrun:\n  command: [hello]\n  env:\n{env_yaml}port: 8080\nhealth: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1}}\nrollout: {{drain_timeout: 1s}}\n",
            hello.display()
        );
        std::fs::write(app.join("skiff.yaml"), &yaml).unwrap();
        let spec = skiff_spec::parse("skiff.yaml", yaml.as_bytes()).unwrap();
        let ir = skiff_ir::compile(&spec);
        let path = app.join("skiff.yaml");
        let input = ReleaseInput { spec_path: &path, spec_shown: "skiff.yaml", ir: &ir, actor: "test", build: false };
        skiff_release::create(&self.ledger, &self.signer, &input).await.unwrap().manifest.release
    }

    /// A group spec for a release.
    pub fn group(&self, service: &str, release: &str, desired: u32) -> GroupSpec {
        GroupSpec {
            name: format!("{service}-{}", release.replace('.', "-")),
            service: service.to_owned(),
            release: release.to_owned(),
            desired,
            zones: vec!["local-a".into(), "local-b".into()],
            launch: LaunchConfig {
                instance_type: "t4g.micro".into(),
                spot: false,
                command: vec!["hello".into()],
                env: BTreeMap::new(),
                secrets: BTreeMap::new(),
                port: Some(8080),
                health: Some(health()),
                drain_timeout_ms: 500,
                role: None,
                log_group: None,
                runner: RunnerConfig {
                    bucket: self.bucket.clone(),
                    public_key_pem: self.public_pem.clone(),
                    heartbeat_ms: 500,
                },
            },
            operation: None,
            trace: None,
        }
    }

    pub fn runner_bin(&self) -> PathBuf {
        skiff_testkit::workspace_bin("skiff-runner")
    }

    pub async fn stop(mut self) {
        let _ = self.provider.shutdown(true).await;
        if let Some(s) = self.supervisor.take() {
            let _ = skiff_clock::timeout(&skiff_clock::SystemClock, Duration::from_secs(10), s).await;
        }
        if let Some(mut child) = self.apart.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.provider.stop_databases().await;
    }
}

pub fn health() -> HealthCheck {
    HealthCheck {
        path: "/healthz".into(),
        interval_ms: 200,
        timeout_ms: 500,
        healthy_threshold: 2,
        unhealthy_threshold: 2,
    }
}

/// Waits for `f` to return `Some`, polling.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        skiff_clock::Clock::sleep(&skiff_clock::SystemClock, Duration::from_millis(100)).await;
    }
}

pub fn provider(env: &Env) -> &dyn Provider {
    &env.provider
}
