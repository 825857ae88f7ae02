//! The `skiffd` binary: argument parsing and wiring; everything else is the library.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use skiffd::auth::{Role, Tokens};
use skiffd::index::Index;
use skiffd::server::{Server, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "skiffd",
    version,
    about = "Skiff's control plane: gRPC and HTTP/JSON on one port over the state bucket.",
    after_help = "\
Examples:
  skiffd token create --bucket file:///var/lib/skiff/state --name ci --role operator --ttl 90d
  skiffd token list|revoke ci|rotate ci --bucket file:///var/lib/skiff/state
  skiffd serve --bucket file:///var/lib/skiff/state --keys /etc/skiff/keys
  skiffd serve --bucket s3://acme-skiff/prod --provider aws --index postgres://skiff@db/skiff ...
  skiffd openapi > openapi.json

Then: skiff --server http://127.0.0.1:7400 status (with SKIFF_TOKEN set), or
  curl -H 'authorization: Bearer $TOKEN' http://127.0.0.1:7400/v1/services/orders-api/status
Run skiff-worker beside it to execute the operations skiffd records."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Log lines on stderr: `text` or `json`. SKIFF_LOG filters them (`info`,
    /// `warn,skiff_saga=debug`); OTEL_EXPORTER_OTLP_ENDPOINT exports traces over OTLP/HTTP.
    #[arg(long, global = true, env = "SKIFF_LOG_FORMAT", default_value = "text")]
    log_format: skiff_observability::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve gRPC and HTTP/JSON until SIGTERM or Ctrl-C.
    Serve(Serve),
    /// Issue bearer tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// The PostgreSQL index.
    Index {
        #[command(subcommand)]
        action: IndexAction,
    },
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
}

#[derive(Debug, clap::Args)]
struct Serve {
    /// Address to listen on (port 0 picks a free one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: String,
    /// State bucket URL: file://PATH or s3://BUCKET/PREFIX.
    #[arg(long, env = "SKIFF_STATE")]
    bucket: String,
    /// Provider operations run on.
    #[arg(long, env = "SKIFF_PROVIDER", default_value = "local")]
    provider: String,
    /// A bootstrap tokens file (`skiffd token create --tokens FILE`); tokens in the bucket
    /// (`skiffd token create --bucket URL`) need none. Without any token every call answers 401.
    #[arg(long, env = "SKIFFD_TOKENS")]
    tokens: Option<PathBuf>,
    /// Directory of the release signing key pair (cosign.key, cosign.pub); generated when missing.
    #[arg(long, env = "SKIFFD_KEYS")]
    keys: PathBuf,
    /// Policies every plan is checked against (*.rego, limits.json).
    #[arg(long, env = "SKIFFD_POLICIES")]
    policies: Option<PathBuf>,
    /// Where status reads are answered from: `memory`, a PostgreSQL URL (both rebuilt
    /// from the bucket), or `bucket` (no index: each read goes to the bucket).
    #[arg(long, default_value = "memory")]
    index: String,
    /// Requests per second each token may send (twice that at once); over it: 429 with
    /// Retry-After. 0 turns the limit off.
    #[arg(long, default_value_t = 100)]
    rate_limit: u32,
    /// Operation submissions (deploys, rollbacks, intents, sagas) in flight at once; more
    /// wait up to 2 s, then get 429.
    #[arg(long, default_value_t = 16)]
    max_submissions: u32,
    /// Longest a request may take, in milliseconds (streams of events excepted): then
    /// DEADLINE_EXCEEDED.
    #[arg(long, default_value_t = 120_000)]
    request_timeout_ms: u64,
    /// Time a client has to send a request's headers, in milliseconds (slow clients are
    /// dropped).
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// After SIGTERM, how long in-flight requests get to finish, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    drain_ms: u64,
    /// Rebuild the index this often, in milliseconds (and soon after every write).
    #[arg(long, default_value_t = 2_000)]
    refresh_ms: u64,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: require client certificates signed by this PEM CA.
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Issue a token: prints it once; only its SHA-256 is stored (in the bucket, or in
    /// the bootstrap --tokens file).
    #[command(after_help = "\
Examples:
  skiffd token create --bucket file:///var/lib/skiff/state --name ci --role operator --ttl 30d
  skiffd token create --tokens /etc/skiff/tokens.json --name admin --role approver   (bootstrap file)

Tokens in the bucket are seen by every replica: a new one is accepted at once, a
revoked or expired one is refused within 1 s, without a restart.")]
    Create {
        /// State bucket URL the token record goes to.
        #[arg(long, env = "SKIFF_STATE", conflicts_with = "tokens", required_unless_present = "tokens")]
        bucket: Option<String>,
        /// Write it to this bootstrap file instead (no expiry, no revocation but by editing it).
        #[arg(long)]
        tokens: Option<PathBuf>,
        /// Who holds it (the audit log's actor): letters, digits, `.`, `_`, `-`.
        #[arg(long)]
        name: String,
        /// Its role.
        #[arg(long, value_enum)]
        role: Role,
        /// Expire it after this long (`30d`, `12h`); default: never.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// The bucket's tokens: name, role, created, expiry, revoked, last used.
    List {
        /// State bucket URL.
        #[arg(long, env = "SKIFF_STATE")]
        bucket: String,
    },
    /// Revoke a token: every replica refuses it within 1 s.
    Revoke {
        /// State bucket URL.
        #[arg(long, env = "SKIFF_STATE")]
        bucket: String,
        /// The token's name.
        name: String,
    },
    /// A new secret for a token (same name and role); the old one is refused from now on.
    Rotate {
        /// State bucket URL.
        #[arg(long, env = "SKIFF_STATE")]
        bucket: String,
        /// The token's name.
        name: String,
    },
}

fn ledger(bucket: &str) -> anyhow::Result<skiff_state::Ledger> {
    let url = absolute_bucket(bucket)?;
    skiff_state::Ledger::open(&url, &skiff_objstore::OpenOptions::default())
        .with_context(|| format!("cannot open the bucket {url}"))
}

/// `90s`, `30m`, `12h`, `30d`.
fn parse_ttl(text: &str) -> anyhow::Result<Duration> {
    let (n, unit) = text.trim().split_at(text.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 =
        n.parse().map_err(|_| anyhow::anyhow!("--ttl `{text}`: write a number and a unit, e.g. 30d or 12h"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => bail!("--ttl `{text}`: the unit is s, m, h or d, e.g. 30d or 12h"),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |m| skiff_clock::Utc::from_ms(m).rfc3339())
}

async fn token(action: TokenAction) -> anyhow::Result<()> {
    let by = std::env::var("USER").unwrap_or_else(|_| "skiffd".to_owned());
    let mut out = std::io::stdout();
    match action {
        TokenAction::Create { bucket: _, tokens: Some(file), name, role, .. } => {
            let token = Tokens::create(&file, &name, role)?;
            writeln!(out, "{token}")?;
            eprintln_(&format!(
                "skiffd: issued a {} token for {name}; it is shown once, {} holds only its SHA-256",
                role.as_str(),
                file.display()
            ));
        }
        TokenAction::Create { bucket, tokens: None, name, role, ttl } => {
            let ttl = ttl.map(|t| parse_ttl(&t)).transpose()?;
            let ledger = ledger(&bucket.unwrap_or_default())?;
            ledger.init(&by).await?;
            let token = skiffd::auth::issue(&ledger, &name, role, ttl, &by).await?;
            writeln!(out, "{token}")?;
            eprintln_(&format!(
                "skiffd: issued a {} token for {name}{}; it is shown once, the bucket holds only its SHA-256",
                role.as_str(),
                ttl.map(|t| format!(" expiring in {}s", t.as_secs())).unwrap_or_default()
            ));
        }
        TokenAction::List { bucket } => {
            let ledger = ledger(&bucket)?;
            writeln!(
                out,
                "{:<20} {:<9} {:<22} {:<22} {:<22} last used",
                "name", "role", "created", "expires", "revoked"
            )?;
            for r in skiffd::auth::list(&ledger).await? {
                writeln!(
                    out,
                    "{:<20} {:<9} {:<22} {:<22} {:<22} {}",
                    r.name,
                    r.role,
                    ms(Some(r.created_at_ms)),
                    ms(r.expires_at_ms),
                    ms(r.revoked_at_ms),
                    ms(r.last_used_ms)
                )?;
            }
        }
        TokenAction::Revoke { bucket, name } => {
            let r = skiffd::auth::revoke(&ledger(&bucket)?, &name).await?;
            writeln!(out, "revoked {} at {}; every skiffd refuses it within 1 s", r.name, ms(r.revoked_at_ms))?;
        }
        TokenAction::Rotate { bucket, name } => {
            let token = skiffd::auth::rotate(&ledger(&bucket)?, &name, &by).await?;
            writeln!(out, "{token}")?;
            eprintln_(&format!(
                "skiffd: rotated {name}: the old secret is refused from now on (within 1 s everywhere)"
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum IndexAction {
    /// Rebuild the PostgreSQL index from the bucket now.
    Rebuild {
        /// State bucket URL.
        #[arg(long, env = "SKIFF_STATE")]
        bucket: String,
        /// PostgreSQL URL.
        #[arg(long)]
        index: String,
    },
}

fn absolute_bucket(url: &str) -> anyhow::Result<String> {
    match url.strip_prefix("file://") {
        Some(p) if !std::path::Path::new(p).is_absolute() => {
            Ok(format!("file://{}", std::env::current_dir()?.join(p).display()))
        }
        _ => Ok(url.to_owned()),
    }
}

async fn serve(args: Serve) -> anyhow::Result<()> {
    let bucket = absolute_bucket(&args.bucket)?;
    let ledger = skiff_state::Ledger::open(&bucket, &skiff_objstore::OpenOptions::default())
        .with_context(|| format!("cannot open the bucket {bucket}"))?;
    ledger.init("skiffd").await.with_context(|| format!("cannot initialise {bucket}"))?;
    let keys = std::path::absolute(&args.keys)?;
    let settings = Settings {
        bucket,
        provider: args.provider.clone(),
        keys: keys.clone(),
        policies: args.policies.as_ref().map(std::path::absolute).transpose()?,
        passthrough: skiff_ops::worker::inherited_env(),
    };
    if !keys.join("cosign.key").exists() {
        std::fs::create_dir_all(&keys)?;
        let env = [
            (skiff_settings::KEY.name.to_owned(), keys.join("cosign.key").display().to_string()),
            (skiff_settings::PUBLIC_KEY.name.to_owned(), keys.join("cosign.pub").display().to_string()),
        ]
        .into_iter()
        .chain(skiff_ops::worker::inherited_env())
        .collect();
        let ctx = skiff_ops::Context::service(keys.clone(), env, true);
        let out = skiff_ops::run(&ctx, skiff_ops::Request::KeysGenerate { force: false }).await;
        if !out.envelope.ok {
            bail!("cannot generate a signing key in {}: {}", keys.display(), out.envelope.summary);
        }
    }
    let tokens = match &args.tokens {
        Some(path) => Tokens::load(path)?,
        None => Tokens::default(),
    };
    let bucket_tokens = skiffd::auth::BucketTokens::new(ledger.clone());
    let records = bucket_tokens.refresh().await.context("cannot read the token records")?;
    if tokens.tokens.is_empty() && records == 0 {
        eprintln_("skiffd: no tokens issued yet: every call answers 401 (skiffd token create --name NAME --role ROLE)");
    }
    let index = match args.index.as_str() {
        "memory" => Index::new(None),
        "bucket" => Index::direct(ledger.clone()),
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Index::new(Some(skiffd::postgres::PgIndex::connect(url).await?))
        }
        other => bail!("--index `{other}`: use `memory`, `bucket` or a postgres:// URL"),
    };
    let server = Arc::new(Server {
        settings,
        ledger,
        auth: skiffd::auth::Auth {
            file: tokens,
            bucket: bucket_tokens,
            limiter: skiffd::auth::Limiter::new(args.rate_limit, args.rate_limit.saturating_mul(2)),
        },
        index,
        metrics: Default::default(),
        refresh: tokio::sync::Notify::new(),
        last_write_ms: std::sync::atomic::AtomicU64::new(0),
        submissions: tokio::sync::Semaphore::new(args.max_submissions.max(1) as usize),
        request_timeout: Duration::from_millis(args.request_timeout_ms.max(1_000)),
    });
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(skiffd::tls::server_config(c, k, args.client_ca.as_deref())?),
        _ => None,
    };
    let snap = server.index.refresh(&server.ledger).await.context("cannot build the index from the bucket")?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout();
    writeln!(
        out,
        "skiffd listening on {}://{addr} ({} services, {} operations indexed in {} ms){}",
        if tls.is_some() { "https" } else { "http" },
        snap.services.len(),
        snap.operations.len(),
        snap.build_ms,
        match (&tls, &args.client_ca) {
            (Some(_), Some(_)) => "; mutual TLS",
            (Some(_), None) => "; TLS",
            _ => "",
        }
    )?;
    out.flush()?;
    tracing::info!(%addr, services = snap.services.len(), operations = snap.operations.len(), "listening");
    tokio::spawn(skiffd::refresher(server.clone(), Duration::from_millis(args.refresh_ms.max(100))));
    tokio::spawn(skiffd::token_refresher(server.clone()));
    let limits = skiffd::serve::Limits {
        header_read_timeout: Duration::from_millis(args.header_timeout_ms.max(100)),
        drain: Duration::from_millis(args.drain_ms),
    };
    let clock = server.ledger.clock().clone();
    skiffd::serve::serve(listener, skiffd::app(server), tls, shutdown(), limits, clock).await?;
    Ok(())
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn eprintln_(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let telemetry = skiff_observability::init(&skiff_observability::Setup {
        service: "skiffd",
        default_filter: "warn,skiff=info",
        format: cli.log_format,
    });
    let code = run(cli);
    telemetry.shutdown();
    code
}

fn run(cli: Cli) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln_(&format!("skiffd: cannot start the runtime: {e}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Cmd::Serve(args) => serve(args).await,
            Cmd::Token { action } => token(action).await,
            Cmd::Index { action: IndexAction::Rebuild { bucket, index } } => {
                let ledger = skiff_state::Ledger::open(&absolute_bucket(&bucket)?, &Default::default())?;
                let idx = Index::new(Some(skiffd::postgres::PgIndex::connect(&index).await?));
                let snap = idx.refresh(&ledger).await?;
                writeln!(
                    std::io::stdout(),
                    "rebuilt: {} services, {} operations, {} events in {} ms",
                    snap.services.len(),
                    snap.operations.len(),
                    snap.events,
                    snap.build_ms
                )?;
                Ok(())
            }
            Cmd::Openapi => {
                writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&skiffd::openapi::document())?)?;
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln_(&format!("skiffd: {e:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}
