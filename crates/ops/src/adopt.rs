//! `skiff adopt terraform --state FILE | --show-json FILE [-f SPEC]…`: records in the
//! ledger which of a service's resources Terraform owns (`services/<svc>/ownership.json`):
//! the state's resources recognized by Skiff's tags or by the names Skiff gives them
//! (of the services in the ledger and the specs named with `-f`) are terraform-owned,
//! what Skiff would create beside them is skiff-owned, and the rest of the state is
//! external. A deploy then reads what Terraform owns and never changes it; plan and
//! reconcile say who owns what.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use skiff_sdk::{Answer, Code, Envelope, Safety};
use skiff_state::docs::{OwnedResource, Owner, OwnershipDoc};

use crate::context::Context;
use crate::error::{Result, plural};

/// The logical ids of `service` Terraform owns (none before `skiff adopt terraform`).
pub(crate) async fn owned(ledger: &skiff_state::Ledger, service: &str) -> Result<Vec<String>> {
    let doc: Option<OwnershipDoc> =
        ledger.read(&skiff_state::keys::service_ownership(service)).await.map_err(|e| crate::error::state(&e))?;
    Ok(doc.map(|d| d.terraform_owned()).unwrap_or_default())
}

/// Applies Terraform's ownership to a rollout: owned resources are read, not ensured;
/// a Terraform-owned database is not created by the deploy. The notes say so.
pub(crate) fn apply(rollout: &mut skiff_steps::deploy::Rollout, owned: Vec<String>, notes: &mut Vec<String>) {
    if owned.is_empty() {
        return;
    }
    if let Some(db) = rollout.database.as_ref().filter(|d| owned.contains(&format!("database/{}", d.id))) {
        notes.push(format!("database {} is Terraform-owned: the deploy uses it and creates nothing", db.id));
        rollout.database = None;
    }
    notes.push(format!("Terraform-owned, read and never changed: {}", owned.join(", ")));
    rollout.terraform_owned = owned;
}

/// The modules Skiff would generate for every service it knows: the ledger's recorded
/// specs, then the spec files named (which win for their service).
async fn known(
    ctx: &Context,
    ledger: &skiff_state::Ledger,
    specs: &[PathBuf],
) -> Result<Vec<(String, skiff_terraform::Generated)>> {
    let mut by_service = BTreeMap::new();
    let index = ledger.rebuild_index().await.map_err(|e| crate::error::state(&e))?;
    for service in index.services.keys() {
        if let Ok(Some((_, Some(ir)))) = ledger.recorded(service).await {
            by_service.insert(service.clone(), skiff_terraform::generate(&ir));
        }
    }
    for file in specs {
        let (_, spec) = crate::spec::load(ctx, file).await?;
        let ir = skiff_ir::compile(&spec);
        by_service.insert(ir.service.clone(), skiff_terraform::generate(&ir));
    }
    Ok(by_service.into_iter().collect())
}

/// `skiff adopt terraform`.
pub(crate) async fn terraform(ctx: &Context, file: &Path, specs: &[PathBuf]) -> Result<Answer> {
    let shown = file.display().to_string();
    let bytes = std::fs::read(ctx.cwd.join(file)).map_err(|e| {
        crate::error::Error::from(
            Envelope::failure(
                if e.kind() == std::io::ErrorKind::NotFound { Code::NotFound } else { Code::IoError },
                format!("cannot read {shown}"),
            )
            .fact(e.to_string())
            .fact("give the state file (`terraform.tfstate`, or `terraform state pull > state.json`) or `terraform show -json > show.json`"),
        )
    })?;
    let (source, resources) = skiff_terraform::adopt::read_state(&shown, &bytes).map_err(|e| {
        crate::error::Error::from(
            Envelope::failure(Code::SpecInvalid, e.to_string())
                .fact("adopt reads a Terraform state (format version 4) or `terraform show -json` output"),
        )
    })?;
    let (_, ledger) = ctx.ledger()?;
    let known = known(ctx, &ledger, specs).await?;
    let adopted = skiff_terraform::adopt::classify(&resources, &known);
    let mut by_service: BTreeMap<String, Vec<OwnedResource>> = BTreeMap::new();
    let external: Vec<OwnedResource> = adopted
        .iter()
        .filter(|a| a.service.is_none())
        .map(|a| OwnedResource {
            address: a.address.clone(),
            logical_id: None,
            name: a.name.clone(),
            owner: Owner::External,
        })
        .collect();
    for a in &adopted {
        if let Some(s) = &a.service {
            by_service.entry(s.clone()).or_default().push(OwnedResource {
                address: a.address.clone(),
                logical_id: a.logical_id.clone(),
                name: a.name.clone(),
                owner: Owner::TerraformOwned,
            });
        }
    }
    if by_service.is_empty() {
        return Err(Envelope::failure(
            Code::NotFound,
            format!("none of the {} in {shown} is a Skiff service's", plural(resources.len(), "resource")),
        )
        .fact("resources are recognized by their `skiff:service` and `skiff:logical-id` tags (as `skiff terraform generate` writes them) or by the names Skiff gives them")
        .fact(format!("known services: {}", if known.is_empty() { "none".to_owned() } else { known.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join(", ") }))
        .action("spec", format!("skiff adopt terraform --state {shown} -f skiff.yaml --yes"), true, Safety::Reversible, 0.6)
        .into());
    }
    // What Skiff would create that the state does not have stays Skiff's.
    for (service, owned) in &mut by_service {
        if let Some((_, generated)) = known.iter().find(|(s, _)| s == service) {
            for d in &generated.resources {
                if !owned.iter().any(|o| {
                    o.logical_id.as_deref() == Some(d.logical_id.as_str())
                        && o.address.split('.').next() == d.address.split('.').next()
                }) {
                    owned.push(OwnedResource {
                        address: d.address.clone(),
                        logical_id: Some(d.logical_id.clone()),
                        name: d.name.clone(),
                        owner: Owner::SkiffOwned,
                    });
                }
            }
        }
        owned.extend(external.iter().cloned());
        owned.sort_by(|a, b| a.owner.cmp(&b.owner).then(a.address.cmp(&b.address)));
    }
    let services: Vec<&String> = by_service.keys().collect();
    let names = services.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    ctx.confirm(&format!("record what Terraform owns of {names}"), &format!("skiff adopt terraform --state {shown}"))?;
    let actor = ctx.actor();
    ledger.init(&actor).await.map_err(|e| crate::error::state(&e))?;
    let now = ledger.clock().now_ms();
    for (service, owned) in &by_service {
        let doc = OwnershipDoc {
            cas: Default::default(),
            service: service.clone(),
            source: source.clone(),
            resources: owned.clone(),
            adopted_at_ms: now,
            adopted_by: actor.clone(),
        };
        ledger
            .update::<OwnershipDoc, _>(&skiff_state::keys::service_ownership(service), |_| {
                Ok(skiff_state::Update::Write(doc.clone()))
            })
            .await
            .map_err(|e| crate::error::state(&e))?;
        ledger
            .audit(
                &actor,
                "terraform.adopt",
                service,
                Code::Ok,
                serde_json::json!({"source": source, "terraform_owned": doc.terraform_owned()}),
            )
            .await
            .map_err(|e| crate::error::state(&e))?;
    }
    let count = |o: Owner| by_service.values().flatten().filter(|r| r.owner == o).count();
    let mut env = Envelope::ok(format!(
        "adopted {source} for {names}: {} terraform-owned, {} skiff-owned, {} external",
        count(Owner::TerraformOwned),
        count(Owner::SkiffOwned),
        external.len()
    ))
    .fact("a deploy reads Terraform-owned resources and never changes them; drift on them is Terraform's to fix (`terraform plan`)");
    for s in &services {
        env = env.action(&format!("plan-{s}"), format!("skiff reconcile {s}"), false, Safety::ReadOnly, 0.5);
    }
    let mut body = String::new();
    let _ = writeln!(body, "{:<16} {:<16} {:<44} {:<24} name", "service", "owner", "address", "logical id");
    for (service, owned) in &by_service {
        for r in owned {
            let _ = writeln!(
                body,
                "{:<16} {:<16} {:<44} {:<24} {}",
                service,
                r.owner.as_str(),
                r.address,
                r.logical_id.as_deref().unwrap_or("-"),
                r.name
            );
        }
    }
    let data = serde_json::json!({"source": source, "services": by_service, "matched": adopted});
    Ok(Answer::from(env.data(data)).body(body))
}
