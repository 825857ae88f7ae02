//! One Deployment (with the Services, Ingresses, HorizontalPodAutoscalers, ConfigMaps
//! and Secrets that refer to it) into a skiff.yaml spec, read with the `k8s-openapi`
//! types, claiming every path it carries or approximates for the loss report.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Probe, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use crate::report::Claims;

/// The other objects a workload may refer to (with their index among the inputs).
#[derive(Debug, Default)]
pub struct Related<'a> {
    /// Services.
    pub services: Vec<(usize, &'a Service)>,
    /// Ingresses.
    pub ingresses: Vec<(usize, &'a Ingress)>,
    /// HorizontalPodAutoscalers.
    pub hpas: Vec<(usize, &'a HorizontalPodAutoscaler)>,
    /// ConfigMaps by name.
    pub config_maps: BTreeMap<String, &'a ConfigMap>,
    /// Secrets by name (their keys; values are never read).
    pub secrets: BTreeMap<String, &'a Secret>,
}

/// A workload's spec and what a person must still do.
#[derive(Debug, Default)]
pub struct Mapped {
    /// The spec, as JSON in skiff.yaml's shape.
    pub spec: Value,
    /// `skiff secrets set …` commands to fill the secret references.
    pub secret_commands: Vec<String>,
}

/// A Skiff service name from a Kubernetes one (DNS labels start with a letter).
pub fn service_name(name: &str) -> String {
    let clean: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .collect();
    let clean = clean.trim_matches('-').to_owned();
    let clean = if clean.starts_with(|c: char| c.is_ascii_lowercase()) { clean } else { format!("svc-{clean}") };
    clean.chars().take(63).collect::<String>().trim_end_matches('-').to_owned()
}

/// An environment variable name Skiff accepts.
fn env_name(name: &str) -> Option<String> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then(|| name.to_owned())
}

/// Kubernetes duration seconds as a Skiff duration.
fn secs(n: i32) -> String {
    format!("{}s", n.max(0))
}

/// CPU in millicores, memory in MiB, from resource quantities.
fn cpu_millis(q: &str) -> Option<u64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().map(|c| (c * 1000.0) as u64),
    }
}

fn memory_mib(q: &str) -> Option<u64> {
    let units = [
        ("Ki", 1.0 / 1024.0),
        ("Mi", 1.0),
        ("Gi", 1024.0),
        ("Ti", 1024.0 * 1024.0),
        ("K", 1000.0 / 1_048_576.0),
        ("M", 1_000_000.0 / 1_048_576.0),
        ("G", 1e9 / 1_048_576.0),
    ];
    for (suffix, factor) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|v| (v * factor).ceil() as u64);
        }
    }
    q.parse::<f64>().ok().map(|b| (b / 1_048_576.0).ceil() as u64)
}

/// The smallest instance type of the intent table that fits (cost-balanced Graviton).
pub fn instance_type(cpu_m: u64, mem_mib: u64) -> &'static str {
    const TABLE: &[(u64, u64, &str)] = &[
        (2_000, 1_024, "t4g.micro"),
        (2_000, 2_048, "t4g.small"),
        (2_000, 4_096, "t4g.medium"),
        (2_000, 8_192, "t4g.large"),
        (4_000, 16_384, "t4g.xlarge"),
        (8_000, 32_768, "t4g.2xlarge"),
        (16_000, 65_536, "m7g.4xlarge"),
    ];
    TABLE.iter().find(|(c, m, _)| cpu_m <= *c && mem_mib <= *m).map_or("m7g.8xlarge", |(_, _, t)| t)
}

/// The health check a probe becomes, if it is an HTTP GET.
fn health(probe: &Probe, at: &str, claims: &mut Claims) -> Option<Value> {
    let mut h = serde_json::Map::new();
    match &probe.http_get {
        Some(get) => {
            h.insert("path".into(), json!(get.path.clone().unwrap_or_else(|| "/".into())));
            claims.mapped(format!("{at}.httpGet.path"), "health.path");
            claims.warned(format!("{at}.httpGet.port"), "the runner probes the instance's own port (${PORT})");
            claims.warned(format!("{at}.httpGet.scheme"), "health checks are plain HTTP on the instance");
            claims.unsupported(
                format!("{at}.httpGet.httpHeaders"),
                "health checks send no custom headers: serve the health path without them",
            );
            claims.warned(format!("{at}.httpGet.host"), "health checks go to the instance itself");
        }
        None => {
            for kind in ["tcpSocket", "exec", "grpc"] {
                claims.unsupported(
                    format!("{at}.{kind}"),
                    format!("Skiff health checks are HTTP GET: serve a health path and set `health.path` (a {kind} probe was given)"),
                );
            }
            return None;
        }
    }
    if let Some(p) = probe.period_seconds {
        h.insert("interval".into(), json!(secs(p)));
        claims.mapped(format!("{at}.periodSeconds"), "health.interval");
    }
    if let Some(t) = probe.timeout_seconds {
        h.insert("timeout".into(), json!(secs(t)));
        claims.mapped(format!("{at}.timeoutSeconds"), "health.timeout");
    }
    if let Some(n) = probe.success_threshold {
        h.insert("healthy_threshold".into(), json!(n.max(1)));
        claims.mapped(format!("{at}.successThreshold"), "health.healthy_threshold");
    }
    if let Some(n) = probe.failure_threshold {
        h.insert("unhealthy_threshold".into(), json!(n.max(1)));
        claims.mapped(format!("{at}.failureThreshold"), "health.unhealthy_threshold");
    }
    claims.warned(format!("{at}.initialDelaySeconds"), "instances join traffic once healthy: no fixed delay is needed");
    claims.warned(format!("{at}.terminationGracePeriodSeconds"), "drain time is `rollout.drain_timeout`");
    Some(Value::Object(h))
}

/// Maps the main container's environment; claims its paths.
fn environment(
    c: &Container,
    at: &str,
    related: &Related<'_>,
    env: &mut serde_json::Map<String, Value>,
    secrets: &mut serde_json::Map<String, Value>,
    commands: &mut Vec<String>,
    claims: &mut Claims,
) {
    for (i, e) in c.env.iter().flatten().enumerate() {
        let p = format!("{at}.env[{i}]");
        let Some(name) = env_name(&e.name) else {
            claims.unsupported(
                p,
                format!(
                    "`{}` is not an environment variable name Skiff accepts (letters, digits, `_`): rename it",
                    e.name
                ),
            );
            continue;
        };
        if let Some(v) = &e.value {
            env.insert(name.clone(), json!(v));
            claims.mapped(p, format!("run.env.{name}"));
            continue;
        }
        let Some(from) = &e.value_from else {
            env.insert(name.clone(), json!(""));
            claims.mapped(p, format!("run.env.{name} (empty)"));
            continue;
        };
        if let Some(s) = &from.secret_key_ref {
            let r = format!("secret://{}/{}", service_name(&s.name), s.key);
            secrets.insert(name.clone(), json!(r));
            commands.push(format!("printf '%s' \"$VALUE\" | skiff secrets set {r}"));
            claims.mapped(p, format!("secrets.{name} = {r} (value not imported: set it with `skiff secrets set {r}`)"));
        } else if let Some(cm) = &from.config_map_key_ref {
            match related.config_maps.get(&cm.name).and_then(|m| m.data.as_ref()).and_then(|d| d.get(&cm.key)) {
                Some(v) => {
                    env.insert(name.clone(), json!(v));
                    claims.mapped(p, format!("run.env.{name} (from ConfigMap {})", cm.name));
                }
                None => {
                    let r = format!("secret://{}/{}", service_name(&cm.name), cm.key);
                    secrets.insert(name.clone(), json!(r));
                    commands.push(format!("printf '%s' \"$VALUE\" | skiff secrets set {r}"));
                    claims.warned(p, format!("ConfigMap {} was not among the inputs: referenced as {r}; set its value with `skiff secrets set {r}` or import the ConfigMap too", cm.name));
                }
            }
        } else {
            claims.unsupported(p, "the downward API and resource fields have no Skiff equivalent: Skiff sets SKIFF_SERVICE, SKIFF_RELEASE, SKIFF_INSTANCE and PORT");
        }
    }
    for (i, e) in c.env_from.iter().flatten().enumerate() {
        let p = format!("{at}.envFrom[{i}]");
        let prefix = e.prefix.clone().unwrap_or_default();
        if let Some(s) = &e.secret_ref {
            match related.secrets.get(&s.name) {
                Some(secret) => {
                    let keys: Vec<String> = secret.data.iter().flat_map(|d| d.keys().cloned()).chain(secret.string_data.iter().flat_map(|d| d.keys().cloned())).collect();
                    for k in &keys {
                        if let Some(name) = env_name(&format!("{prefix}{k}")) {
                            let r = format!("secret://{}/{k}", service_name(&s.name));
                            secrets.insert(name, json!(r));
                            commands.push(format!("printf '%s' \"$VALUE\" | skiff secrets set {r}"));
                        }
                    }
                    claims.mapped(p, format!("secrets ({} keys of Secret {}: values not imported)", keys.len(), s.name));
                }
                None => claims.unsupported(p, format!("Secret {} was not among the inputs, so its keys are unknown: add a `secrets:` entry per key (secret://{}/KEY)", s.name, service_name(&s.name))),
            }
        } else if let Some(cm) = &e.config_map_ref {
            match related.config_maps.get(&cm.name).and_then(|m| m.data.as_ref()) {
                Some(data) => {
                    for (k, v) in data {
                        if let Some(name) = env_name(&format!("{prefix}{k}")) {
                            env.insert(name, json!(v));
                        }
                    }
                    claims.mapped(p, format!("run.env ({} keys of ConfigMap {})", data.len(), cm.name));
                }
                None => claims.unsupported(
                    p,
                    format!(
                        "ConfigMap {} was not among the inputs: import it too, or write its keys under run.env",
                        cm.name
                    ),
                ),
            }
        }
    }
}

/// The spec of `d`, with every path claimed; `related` objects are claimed too.
pub fn map(d: &Deployment, related: &Related<'_>, claims: &mut Claims, others: &mut BTreeMap<usize, Claims>) -> Mapped {
    let name = d.metadata.name.clone().unwrap_or_default();
    let service = service_name(&name);
    claims.mapped(
        "metadata.name",
        if service == name { "service".to_owned() } else { format!("service (as `{service}`)") },
    );
    let mut spec = serde_json::Map::new();
    spec.insert("service".into(), json!(service));
    let mut commands = Vec::new();
    let ds = &d.spec;
    let pod = ds.template.spec.clone().unwrap_or_default();
    claims.mapped("spec.selector", "instance group membership (Skiff groups instances by service and release)");
    claims.warned("spec.strategy", "Skiff rolls out by canary: see `rollout.canary`");
    for f in ["revisionHistoryLimit", "progressDeadlineSeconds", "minReadySeconds", "paused"] {
        claims.warned(format!("spec.{f}"), "rollout bookkeeping: Skiff keeps every release in the bucket and times each step with `rollout.step_timeout`");
    }
    // The main container is the first; others are sidecars.
    let main = pod.containers.first().cloned().unwrap_or_default();
    let at = "spec.template.spec.containers[0]";
    for i in 1..pod.containers.len() {
        claims.unsupported(
            format!("spec.template.spec.containers[{i}]"),
            format!("sidecar `{}`: an instance runs one program; run it as its own Skiff service, or fold it into the program", pod.containers[i].name),
        );
    }
    claims.mapped(format!("{at}.name"), "run.command[0] (the program's name)");
    let program = main.name.clone();
    spec.insert("artifact".into(), json!({"path": format!("bin/{program}")}));
    claims.warned(format!("{at}.image"), format!("Skiff runs a signed binary, not a container image: build `{program}` and point `artifact.path` at it (written as bin/{program}), or set `artifact.url` and `sha256`"));
    claims.warned(format!("{at}.imagePullPolicy"), "releases are digest-pinned: nothing is pulled by tag");
    let mut command: Vec<String> = main.command.clone().unwrap_or_else(|| vec![program.clone()]);
    if main.command.is_some() {
        claims.mapped(format!("{at}.command"), "run.command");
    }
    if let Some(args) = &main.args {
        command.extend(args.iter().cloned());
        claims.mapped(format!("{at}.args"), "run.command (after the program)");
    }
    let mut env = serde_json::Map::new();
    let mut secrets = serde_json::Map::new();
    environment(&main, at, related, &mut env, &mut secrets, &mut commands, claims);
    let mut run = serde_json::Map::new();
    run.insert("command".into(), json!(command));
    if !env.is_empty() {
        run.insert("env".into(), Value::Object(env));
    }
    spec.insert("run".into(), Value::Object(run));
    if !secrets.is_empty() {
        spec.insert("secrets".into(), Value::Object(secrets));
    }
    // Ports: the first container port is the service's (its Service's port wins).
    for (i, p) in main.ports.iter().flatten().enumerate() {
        let pp = format!("{at}.ports[{i}]");
        if i == 0 {
            spec.insert("port".into(), json!(p.container_port));
            claims.mapped(format!("{pp}.containerPort"), "port (the program must listen on ${PORT})");
            claims.mapped(format!("{pp}.name"), "port");
            claims.warned(format!("{pp}.protocol"), "Skiff load-balances HTTP");
        } else {
            claims.unsupported(pp, "a Skiff service serves one port: split the other into its own service");
        }
    }
    // Health: readiness, else liveness.
    let probe = main
        .readiness_probe
        .as_ref()
        .map(|p| (p, "readinessProbe"))
        .or(main.liveness_probe.as_ref().map(|p| (p, "livenessProbe")));
    if let Some((p, which)) = probe
        && let Some(h) = health(p, &format!("{at}.{which}"), claims)
    {
        spec.insert("health".into(), h);
    }
    if main.readiness_probe.is_some() {
        claims.warned(format!("{at}.livenessProbe"), "the runner restarts a program that exits and flags crash loops; the readiness probe became the health check");
    }
    claims.warned(
        format!("{at}.startupProbe"),
        "instances take traffic once the health check passes: no startup probe is needed",
    );
    // Resources → instance type.
    if let Some(r) = &main.resources {
        let pick = |k: &str| -> Option<String> {
            r.requests.as_ref().and_then(|m| m.get(k)).or(r.limits.as_ref().and_then(|m| m.get(k))).map(|q| q.0.clone())
        };
        let cpu = pick("cpu").and_then(|q: String| cpu_millis(&q)).unwrap_or(500);
        let mem = pick("memory").and_then(|q: String| memory_mib(&q)).unwrap_or(512);
        let t = instance_type(cpu, mem);
        spec.insert("resources".into(), json!({"instance_type": t}));
        claims.warned(format!("{at}.resources"), format!("{cpu}m CPU and {mem} MiB per pod became instance type {t}, the smallest of the intent table that fits one instance"));
    }
    claims.warned(
        format!("{at}.securityContext"),
        "instances run as the runner's unprivileged user; no privilege escalation is possible",
    );
    claims.unsupported(
        format!("{at}.volumeMounts"),
        "volumes: keep state in the managed database or object storage (stateful groups come as a recipe)",
    );
    claims.warned(format!("{at}.terminationMessagePath"), "logs are shipped by the runner");
    claims.warned(format!("{at}.terminationMessagePolicy"), "logs are shipped by the runner");
    claims.warned(format!("{at}.workingDir"), "the program runs in the instance's directory");
    claims.warned("spec.template.spec.terminationGracePeriodSeconds", "drain time is `rollout.drain_timeout`");
    claims.warned("spec.template.spec.restartPolicy", "the runner always restarts a program that exits (with backoff)");
    claims.warned("spec.template.spec.dnsPolicy", "instances use the machine's resolver");
    claims.warned("spec.template.spec.schedulerName", "no scheduler: each instance is a machine (or a local process)");
    claims.warned("spec.template.spec.securityContext", "instances run as the runner's unprivileged user");
    claims.warned(
        "spec.template.spec.serviceAccountName",
        "the instance role comes from `iam.allow` (least privilege, compiled per service)",
    );
    claims.warned("spec.template.spec.serviceAccount", "the instance role comes from `iam.allow`");
    claims.warned("spec.template.spec.automountServiceAccountToken", "no cluster API to reach");
    claims.unsupported(
        "spec.template.spec.initContainers",
        "init containers: run the work as the release's migration (`database.migrations`) or at program start",
    );
    claims.unsupported("spec.template.spec.volumes", "volumes: keep state in the managed database or object storage");
    for f in ["nodeSelector", "affinity", "tolerations", "topologySpreadConstraints", "priorityClassName"] {
        claims.warned(
            format!("spec.template.spec.{f}"),
            "placement is Skiff's: instances spread over zones by `intent.availability`",
        );
    }
    claims.mapped("spec.template.metadata.labels", "instance group membership");
    // Replicas, then an HPA's bounds.
    let mut instances = serde_json::Map::new();
    if let Some(r) = ds.replicas {
        instances.insert("desired".into(), json!(r.max(1)));
        claims.mapped("spec.replicas", "instances.desired");
    }
    for (i, h) in &related.hpas {
        let hs = &h.spec;
        if hs.scale_target_ref.name != name {
            continue;
        }
        let hc = others.entry(*i).or_default();
        hc.mapped("metadata.name", format!("instances of {service}"));
        hc.mapped("spec.scaleTargetRef", format!("the service {service}"));
        instances.insert("max".into(), json!(hs.max_replicas.max(1)));
        hc.mapped("spec.maxReplicas", "instances.max");
        if let Some(m) = hs.min_replicas {
            instances.insert("min".into(), json!(m.max(1)));
            hc.mapped("spec.minReplicas", "instances.min");
        }
        hc.warned("spec.metrics", "Skiff keeps `instances.desired` between min and max; scaling on CPU or custom metrics is not automatic for services");
        hc.warned("spec.behavior", "no automatic scaling: no scaling behaviour");
    }
    if let (Some(min), Some(desired)) =
        (instances.get("min").and_then(Value::as_i64), instances.get("desired").and_then(Value::as_i64))
        && desired < min
    {
        instances.insert("desired".into(), json!(min));
    }
    if let (Some(max), Some(desired)) =
        (instances.get("max").and_then(Value::as_i64), instances.get("desired").and_then(Value::as_i64))
        && desired > max
    {
        instances.insert("desired".into(), json!(max));
    }
    if !instances.is_empty() {
        spec.insert("instances".into(), Value::Object(instances));
    }
    // Services selecting the pods: their port is what clients use.
    let labels = ds.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    let mut selected = Vec::new();
    for (i, s) in &related.services {
        let Some(ss) = &s.spec else { continue };
        let selects = ss
            .selector
            .as_ref()
            .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
        if !selects {
            continue;
        }
        selected.extend(s.metadata.name.clone());
        let sc = others.entry(*i).or_default();
        sc.mapped("metadata.name", format!("the load balancer of {service}"));
        sc.mapped("spec.selector", format!("the instances of {service}"));
        for (i, p) in ss.ports.iter().flatten().enumerate() {
            if i == 0 {
                spec.insert("port".into(), json!(p.port));
                sc.mapped(format!("spec.ports[{i}].port"), "port (the load balancer's listener)");
                let target = match &p.target_port {
                    Some(IntOrString::Int(n)) => format!("targetPort {n}: instances listen on ${{PORT}} instead"),
                    Some(IntOrString::String(s)) => format!("targetPort `{s}`: instances listen on ${{PORT}} instead"),
                    None => "instances listen on ${PORT}".to_owned(),
                };
                sc.warned(format!("spec.ports[{i}].targetPort"), target);
                sc.mapped(format!("spec.ports[{i}].name"), "port");
                sc.warned(format!("spec.ports[{i}].protocol"), "Skiff load-balances HTTP");
                sc.warned(format!("spec.ports[{i}].nodePort"), "no node ports: the load balancer listens on `port`");
                sc.warned(format!("spec.ports[{i}].appProtocol"), "Skiff load-balances HTTP");
            } else {
                sc.unsupported(
                    format!("spec.ports[{i}]"),
                    "a Skiff service serves one port: split the other into its own service",
                );
            }
        }
        sc.warned("spec.type", "Skiff's load balancer serves `port` (public on AWS through the ALB)");
        for f in [
            "clusterIP",
            "clusterIPs",
            "ipFamilies",
            "ipFamilyPolicy",
            "internalTrafficPolicy",
            "externalTrafficPolicy",
            "sessionAffinity",
        ] {
            sc.warned(
                format!("spec.{f}"),
                "cluster networking: the load balancer and its target groups take its place",
            );
        }
    }
    // Ingress rules pointing at those Services: host and path routing stays in front.
    for (i, ing) in &related.ingresses {
        let Some(is) = &ing.spec else { continue };
        let routes_here = is
            .rules
            .iter()
            .flatten()
            .flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter()))
            .any(|p| p.backend.service.as_ref().is_some_and(|b| selected.contains(&b.name)));
        if !routes_here {
            continue;
        }
        let ic = others.entry(*i).or_default();
        for (r, rule) in is.rules.iter().flatten().enumerate() {
            for (p, path) in rule.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
                let backend = path.backend.service.as_ref().map(|b| b.name.clone()).unwrap_or_default();
                if !selected.contains(&backend) {
                    continue;
                }
                let route = format!(
                    "{}{}",
                    rule.host.clone().unwrap_or_else(|| "*".into()),
                    path.path.clone().unwrap_or_else(|| "/".into())
                );
                ic.warned(
                    format!("spec.rules[{r}].http.paths[{p}]"),
                    format!("{route} → {service}: Skiff's load balancer serves every path on `port`; route {route} to it in your edge (DNS, CDN or gateway)"),
                );
            }
            ic.warned(format!("spec.rules[{r}].host"), "host routing stays in your edge (DNS, CDN or gateway)");
        }
        ic.warned("spec.tls", "TLS terminates at your edge or the ALB listener");
        ic.warned("spec.ingressClassName", "no ingress controller");
        ic.mapped("metadata.name", format!("routing to {service} (see the warnings)"));
    }
    Mapped { spec: Value::Object(spec), secret_commands: commands }
}
