//! `skiff saga start traffic-cutover --service S --from URL [--steps 5,25,50,100]`:
//! the cutover is planned from the ledger (the service's shadow release, else its
//! stable one, and the spec it was built from) and the old backend's URL, resolved
//! here; everything it would refuse is refused before anything is recorded.

use std::net::ToSocketAddrs as _;

use skiff_ir::ServiceIr;
use skiff_sdk::{Answer, Code, Envelope, Safety};
use skiff_steps::cutover::{CutoverPlan, OldBackend, cutover_graph, parse_steps};
use skiff_steps::deploy::group_name;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::pipeline::{Launch, launch};

fn usage(summary: String, fact: &str, example: &str) -> Error {
    Envelope::failure(Code::Usage, summary)
        .fact(fact.to_owned())
        .action("example", example.to_owned(), true, Safety::Reversible, 0.5)
        .into()
}

const EXAMPLE: &str =
    "skiff saga start traffic-cutover --service SERVICE --from http://10.0.0.12:8080 --steps 5,25,50,100 --yes";

/// `http://HOST:PORT[/]` resolved to an IP address the load balancer can reach.
pub(crate) fn old_backend(url: &str, health: &str) -> Result<OldBackend> {
    let bad = |why: &str| {
        usage(
            format!("--from {url}: {why}"),
            "the old backend is an HTTP URL the load balancer can reach: http://HOST:PORT",
            EXAMPLE,
        )
    };
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        bad(if url.starts_with("https://") {
            "the load balancer speaks plain HTTP to backends; give its http:// address"
        } else {
            "give an http:// URL"
        })
    })?;
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err(bad("no path: the whole backend moves, not one path"));
    }
    let (host, port) = authority.rsplit_once(':').ok_or_else(|| bad("name the port: http://HOST:PORT"))?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port is a number from 1 to 65535"))?;
    let address = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| bad(&format!("`{host}` does not resolve")))?;
    if !health.starts_with('/') {
        return Err(usage(
            format!("--param health={health}: a path starts with /"),
            "e.g. --param health=/healthz",
            EXAMPLE,
        ));
    }
    Ok(OldBackend { url: url.to_owned(), address: address.ip().to_string(), port, health: health.to_owned() })
}

/// Plans, or (confirmed) starts, a traffic cutover.
pub(crate) async fn start(ctx: &Context, service: &str, params: &[(String, String)], dry_run: bool) -> Result<Answer> {
    let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
    let (_, resolved) = ctx.resolve()?;
    let (_, ledger) = ctx.ledger()?;
    let state = crate::lookup::service(&ledger, service).await?;
    let from = get("from").ok_or_else(|| {
        usage(
            "traffic-cutover needs the old backend: --from http://HOST:PORT".to_owned(),
            "the URL the old service answers on (a Kubernetes Service, a VM, any HTTP server)",
            EXAMPLE,
        )
    })?;
    let old = old_backend(&from, &get("health").unwrap_or_else(|| "/".to_owned()))?;
    let steps_text = get("steps").unwrap_or_else(|| "5,25,50,100".to_owned());
    let steps = parse_steps(&steps_text)
        .map_err(|why| usage(format!("--steps {steps_text}: {why}"), "e.g. --steps 5,25,50,100", EXAMPLE))?;
    let (release, from_shadow) = match (&state.shadow_release, &state.stable_release) {
        (Some(r), _) => (r.clone(), true),
        (None, Some(r)) => (r.clone(), false),
        (None, None) => {
            return Err(Envelope::failure(
                Code::NotFound,
                format!("nothing of {service} runs in Skiff to move traffic to"),
            )
            .fact("a cutover moves traffic to the shadow release (or the stable one)")
            .action("shadow", "skiff deploy -f skiff.yaml --shadow --yes", true, Safety::Reversible, 0.8)
            .into());
        }
    };
    let manifest = crate::lookup::release(&ledger, service, &release).await?;
    let ir: ServiceIr = ledger.get_spec(&manifest.spec_digest).await.map_err(|e| crate::error::state(&e))?;
    let network = ir.network.as_ref().ok_or_else(|| {
        usage(
            format!("{service} serves no port: there is no traffic to cut over"),
            "a cutover moves HTTP traffic through the service's load balancer",
            EXAMPLE,
        )
    })?;
    let kubeconfig = get("kubeconfig").map(|k| ctx.cwd.join(k).display().to_string());
    let plan = CutoverPlan {
        service: service.to_owned(),
        target_group: group_name(service, &release),
        release: release.clone(),
        from_shadow,
        spec_digest: Some(manifest.spec_digest.clone()),
        previous_stable: state.stable_release.clone(),
        listener_port: network.port,
        old,
        steps,
        bake_ms: ir.rollout.bake.as_millis(),
        thresholds: skiff_steps::deploy::thresholds(&ir),
        step_timeout_ms: ir.rollout.step_timeout.as_millis(),
        workload: get("workload").unwrap_or_else(|| format!("deployment/{service}")),
        namespace: get("namespace"),
        kubeconfig,
    };
    let graph = cutover_graph(&plan).map_err(|e| crate::error::saga(&e))?;
    let rules = crate::policy::load(&ctx.cwd.join("skiff.yaml"))?;
    let provider_name = resolved.provider.value.as_str();
    let input = crate::policy::input(ctx, &ir, "traffic-cutover", provider_name, None, Some(&graph));
    let notes = crate::policy::enforce(&rules, &input)?.1;
    let joined = plan.steps.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let command = format!("skiff saga start traffic-cutover --service {service} --from {from} --steps {joined}");
    if dry_run {
        let what = format!("cutover of {service} from {from} to {release}");
        return crate::saga::planned(ctx, &graph, Some(service), &what, command + " --yes").await;
    }
    crate::deploy::check_free(ctx, &ledger, service).await?;
    ctx.confirm(&format!("move the traffic of {service} from {from} to {release}"), &command)?;
    crate::deploy::local_ready(ctx, None).await?;
    let engine = crate::factory::engine(ctx, &ledger).await;
    let l = Launch {
        graph,
        service: Some(service.to_owned()),
        scope: Some(skiff_saga::ServiceScope::service(service.to_owned())),
        key: None,
        reason: format!("cut the traffic of {service} over from {from} to {release}"),
        params: serde_json::json!({"from": from, "steps": plan.steps, "release": release, "notes": notes}),
        audit: ("traffic-cutover.start".to_owned(), serde_json::json!({"from": from, "release": release})),
        audit_existing: false,
        release,
    };
    Ok(launch(ctx, &engine, &ledger, l).await?.answer())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_backend_is_an_http_url_with_a_port() {
        let b = old_backend("http://127.0.0.1:8080/", "/healthz").unwrap();
        assert_eq!((b.address.as_str(), b.port), ("127.0.0.1", 8080));
        let b = old_backend("http://localhost:9000", "/").unwrap();
        assert_eq!(b.port, 9000);
        for url in ["https://a:1", "a:1", "http://a", "http://a:0", "http://a:1/api", "http://no-such-host.invalid:80"]
        {
            assert!(old_backend(url, "/").is_err(), "{url}");
        }
        assert!(old_backend("http://127.0.0.1:1", "healthz").is_err());
    }
}
