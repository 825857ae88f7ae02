//! `skiff secrets set|list|delete`: values for secret references, kept in the local
//! encrypted store or, on the AWS provider, in Secrets Manager. Values are never
//! printed or written to the state bucket.

use skiff_pluginapi::Secrets as _;
use skiff_sdk::{Answer, Code, Envelope, Safety};
use skiff_secrets::{LocalSecrets, SecretError};

use crate::context::Context;
use crate::error::{Error, Result, plural};
use crate::request::SecretsRequest;

/// Where values are kept.
enum Store {
    Local(LocalSecrets),
    Aws(Box<skiff_provider_aws::AwsProvider>),
}

fn aws<T>(r: skiff_pluginapi::Result<T>) -> Result<T> {
    r.map_err(|e| crate::error::provider("Secrets Manager refused", &e))
}

impl Store {
    async fn open(ctx: &Context) -> Result<Store> {
        let (_, resolved) = ctx.resolve()?;
        if resolved.provider.value == skiff_sdk::config::ProviderKind::Aws {
            return Ok(Store::Aws(Box::new(crate::factory::aws_provider(ctx).await?)));
        }
        Ok(Store::Local(LocalSecrets::new(crate::factory::local_dir(ctx)?.secrets())))
    }

    async fn exists(&self, reference: &str) -> Result<bool> {
        check_reference(reference)?;
        match self {
            Store::Local(s) => s.exists(reference).map_err(|e| secret_error(&e)),
            Store::Aws(p) => aws(p.exists(reference).await),
        }
    }

    /// Sets the value, keeping the one it replaces at `REFERENCE-previous` (what an
    /// incident repair goes back to).
    async fn put(&self, reference: &str, value: &str) -> Result<()> {
        match self {
            Store::Local(s) => {
                if let Some(old) = s.get(reference).map_err(|e| secret_error(&e))?
                    && old != value
                {
                    s.put(&format!("{reference}-previous"), &old).map_err(|e| secret_error(&e))?;
                }
                s.put(reference, value).map_err(|e| secret_error(&e))
            }
            Store::Aws(p) => aws(p.put_keeping_previous(reference, value).await),
        }
    }

    async fn list(&self, name: Option<&str>) -> Result<Vec<String>> {
        match (self, name) {
            (Store::Local(s), Some(n)) => s.list(n).map_err(|e| secret_error(&e)),
            (Store::Local(s), None) => s.all().map_err(|e| secret_error(&e)),
            (Store::Aws(p), Some(n)) => aws(p.list(n).await),
            (Store::Aws(p), None) => aws(p.all_secret_refs().await),
        }
    }

    async fn delete(&self, reference: &str) -> Result<()> {
        match self {
            Store::Local(s) => s.delete(reference).map_err(|e| secret_error(&e)),
            Store::Aws(p) => aws(p.delete(reference).await),
        }
    }

    fn where_kept(&self) -> String {
        match self {
            Store::Local(s) => format!("encrypted in {}", s.dir().display()),
            Store::Aws(..) => {
                "kept in AWS Secrets Manager (skiff/NAME, encrypted with alias/skiff when it exists)".to_owned()
            }
        }
    }
}

/// The same reference check everywhere, before any store is asked.
fn check_reference(reference: &str) -> Result<()> {
    reference
        .parse::<skiff_spec::values::SecretRef>()
        .map(|_| ())
        .map_err(|_| secret_error(&SecretError::BadReference(reference.to_owned())))
}

fn secret_error(e: &SecretError) -> Error {
    let env = match e {
        SecretError::BadReference(_) => Envelope::failure(Code::Usage, e.to_string()),
        SecretError::Missing(_) => Envelope::failure(Code::NotFound, e.to_string()),
        SecretError::Tampered(_) => {
            Envelope::failure(Code::DigestMismatch, e.to_string()).fact("set the value again with `skiff secrets set`")
        }
        _ => Envelope::failure(Code::IoError, e.to_string()),
    };
    env.into()
}

pub(crate) async fn run(ctx: &Context, r: SecretsRequest) -> Result<Answer> {
    let store = Store::open(ctx).await?;
    match r {
        SecretsRequest::Set { reference } => set(ctx, &store, &reference).await,
        SecretsRequest::List { name } => list(&store, name.as_deref()).await,
        SecretsRequest::Delete { reference } => delete(ctx, &store, &reference).await,
    }
}

async fn set(ctx: &Context, store: &Store, reference: &str) -> Result<Answer> {
    let existed = store.exists(reference).await?;
    if existed {
        ctx.confirm(
            &format!("replace the value of {reference}"),
            &format!("printf '%s' VALUE | skiff secrets set {reference}"),
        )?;
    }
    let value = ctx.ui.read_value().map_err(|e| {
        Error::from(Envelope::failure(Code::IoError, "cannot read the value from stdin").fact(e.to_string()))
    })?;
    let value = value.strip_suffix('\n').unwrap_or(&value);
    if value.is_empty() {
        return Err(Envelope::failure(Code::Usage, "no value on stdin; nothing was stored")
            .action(
                "set",
                format!("printf '%s' \"$VALUE\" | skiff secrets set {reference}"),
                true,
                Safety::Reversible,
                0.8,
            )
            .into());
    }
    store.put(reference, value).await?;
    let recorded = record_write(ctx, reference, &skiff_secrets::version(value)).await;
    let kept = if existed { format!("; the replaced value is kept at {reference}-previous") } else { String::new() };
    Ok(Envelope::ok(format!("{} {reference}", if existed { "replaced" } else { "stored" }))
        .fact(format!("{}; the value is never written to the state bucket{kept}", store.where_kept()))
        .fact(recorded)
        .data(serde_json::json!({"reference": reference, "replaced": existed}))
        .into())
}

/// Records the version written in the ledger (never the value), so reconcile can tell a
/// later change made outside Skiff (the bucket is initialized for it, as a deploy would).
async fn record_write(ctx: &Context, reference: &str, version: &str) -> String {
    let Ok((_, ledger)) = ctx.ledger() else { return "no state bucket: the version is not recorded".to_owned() };
    let actor = ctx.actor();
    let recorded = match ledger.init(&actor).await {
        Ok(_) => ledger.record_secret_write(reference, version, &format!("skiff secrets set ({actor})")).await,
        Err(e) => Err(e),
    };
    match recorded {
        Ok(()) => format!("version {version} recorded in the ledger"),
        Err(e) => format!("warning: the version was not recorded ({e}); reconcile will report the value as changed"),
    }
}

async fn list(store: &Store, name: Option<&str>) -> Result<Answer> {
    let refs = store.list(name).await?;
    let summary = match name {
        Some(n) => format!("{} under {n}", plural(refs.len(), "reference")),
        None => format!("{} stored", plural(refs.len(), "reference")),
    };
    Ok(Answer::from(Envelope::ok(summary).data(serde_json::json!({ "references": refs }))).body(refs.join("\n")))
}

async fn delete(ctx: &Context, store: &Store, reference: &str) -> Result<Answer> {
    if !store.exists(reference).await? {
        return Ok(Envelope::ok(format!("{reference} has no value; nothing to delete")).into());
    }
    ctx.confirm(&format!("delete the value of {reference}"), &format!("skiff secrets delete {reference}"))?;
    store.delete(reference).await?;
    Ok(Envelope::ok(format!("deleted {reference}"))
        .fact("instances that already resolved it keep their copy until they restart")
        .into())
}
