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
  skiffd token create --tokens /etc/skiff/tokens.json --name ci --role operator
  skiffd serve --bucket file:///var/lib/skiff/state --tokens /etc/skiff/tokens.json --keys /etc/skiff/keys
  skiffd serve --bucket s3://acme-skiff/prod --provider aws --index postgres://skiff@db/skiff ...
  skiffd openapi > openapi.json

Then: skiff --server http://127.0.0.1:7400 status (with SKIFF_TOKEN set), or
  curl -H 'authorization: Bearer $TOKEN' http://127.0.0.1:7400/v1/services/orders-api/status
Run skiff-worker beside it to execute the operations skiffd records."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
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
    /// The tokens file (`skiffd token create` writes it); without tokens every call answers 401.
    #[arg(long, env = "SKIFFD_TOKENS")]
    tokens: PathBuf,
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
    /// Issue a token: prints it once; only its SHA-256 is stored.
    Create {
        /// The tokens file.
        #[arg(long, env = "SKIFFD_TOKENS")]
        tokens: PathBuf,
        /// Who holds it (the audit log's actor).
        #[arg(long)]
        name: String,
        /// Its role.
        #[arg(long, value_enum)]
        role: Role,
    },
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
    let tokens = Tokens::load(&args.tokens)?;
    if tokens.tokens.is_empty() {
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
        tokens,
        index,
        metrics: Default::default(),
        refresh: tokio::sync::Notify::new(),
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
    tokio::spawn(skiffd::refresher(server.clone(), Duration::from_millis(args.refresh_ms.max(100))));
    match tls {
        Some(config) => skiffd::tls::serve(listener, skiffd::app(server), config, shutdown()).await?,
        None => axum::serve(listener, skiffd::app(server)).with_graceful_shutdown(shutdown()).await?,
    }
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
            Cmd::Token { action: TokenAction::Create { tokens, name, role } } => {
                let token = Tokens::create(&tokens, &name, role)?;
                writeln!(std::io::stdout(), "{token}")?;
                eprintln_(&format!(
                    "skiffd: issued a {} token for {name}; it is shown once, {} holds only its SHA-256",
                    role.as_str(),
                    tokens.display()
                ));
                Ok(())
            }
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
