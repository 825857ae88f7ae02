//! The Kubernetes bridge's importer: manifests (files, directories, streams, `List`s,
//! Helm output) read with the `k8s-openapi` types into one skiff.yaml spec per
//! Deployment — image, command and args, ports, env (ConfigMap values inlined, Secret
//! keys as `secret://` references with the `skiff secrets set` commands to fill them),
//! probes → health, replicas/HPA → instances, resources → instance type, Service →
//! port, Ingress → routing warnings — and a loss report accounting for every path of
//! every input object. Objects that cannot migrate (StatefulSet, DaemonSet, Jobs,
//! privileged pods, hostPath volumes, custom resources, unknown kinds) are refused with
//! why; the rest is still imported. No I/O but reading the given paths.

mod emit;
pub mod read;
pub mod report;
pub mod workload;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use serde::Serialize;

pub use read::{Doc, ReadError, read};
pub use report::{Class, Entry};

/// One imported workload.
#[derive(Clone, Debug, Serialize)]
pub struct ImportedSpec {
    /// The Skiff service name.
    pub service: String,
    /// The Deployment it came from (`file`, `Deployment/name`).
    pub from: String,
    /// The spec as YAML, with a header saying where it came from.
    pub yaml: String,
    /// `skiff secrets set …` commands its secret references need.
    pub secret_commands: Vec<String>,
}

/// An object that was not imported, and why.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Refused {
    /// `Kind/name`.
    pub object: String,
    /// Its file and position.
    pub at: String,
    /// Why, and what to do.
    pub why: String,
}

/// What an import made.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Imported {
    /// One spec per Deployment.
    pub specs: Vec<ImportedSpec>,
    /// Objects refused.
    pub refused: Vec<Refused>,
    /// Every path of every input object.
    pub report: Vec<Entry>,
}

impl Imported {
    /// How many paths fell in each class.
    pub fn counts(&self) -> BTreeMap<Class, usize> {
        let mut out = BTreeMap::new();
        for e in &self.report {
            *out.entry(e.class).or_default() += 1;
        }
        out
    }
}

/// The apiVersion each kind is read as.
fn expected_api(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Deployment" => &["apps/v1"],
        "Service" | "ConfigMap" | "Secret" => &["v1"],
        "Ingress" => &["networking.k8s.io/v1"],
        "HorizontalPodAutoscaler" => &["autoscaling/v2", "autoscaling/v1"],
        _ => return None,
    })
}

fn refusal_for(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "StatefulSet" => {
            "stateful workloads (stable identities and volumes) cannot migrate as a service: keep it in the cluster, or move its data to a managed database"
        }
        "DaemonSet" => {
            "a pod per node has no Skiff equivalent: instances are not nodes; run the agent on your machines another way"
        }
        "Job" | "CronJob" => {
            "batch jobs are not services: run them as a release's migration or a scheduled worker outside Skiff"
        }
        "Pod" | "ReplicaSet" | "ReplicationController" => "import the Deployment that owns it",
        "PersistentVolumeClaim" | "PersistentVolume" | "StorageClass" => {
            "volumes have no Skiff equivalent: keep state in the managed database or object storage"
        }
        "NetworkPolicy" => "instances accept traffic only from the load balancer's security group already",
        "ServiceAccount" | "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding" => {
            "the instance role is compiled from `iam.allow`"
        }
        "Namespace" => "namespaces have no Skiff equivalent: one state bucket (or environment) per namespace",
        "CustomResourceDefinition" => "custom resources need their operator: Skiff cannot run them",
        _ => return None,
    })
}

/// Why a pod cannot migrate, if it cannot.
fn pod_blocker(d: &Deployment) -> Option<String> {
    let pod = d.spec.template.spec.as_ref()?;
    for (i, c) in pod.containers.iter().enumerate() {
        if c.security_context.as_ref().and_then(|s| s.privileged) == Some(true) {
            return Some(format!(
                "container {i} (`{}`) is privileged: Skiff runs unprivileged programs; drop the privilege first",
                c.name
            ));
        }
    }
    if let Some(v) = pod.volumes.iter().flatten().find(|v| v.host_path.is_some()) {
        return Some(format!(
            "volume `{}` mounts a host path: instances are disposable machines with no host paths to share",
            v.name
        ));
    }
    if pod.host_network == Some(true) {
        return Some("the pod uses the host network: Skiff instances listen on their own port".to_owned());
    }
    None
}

/// Imports `docs` (see the module doc).
pub fn import(docs: &[Doc]) -> Imported {
    let mut out = Imported::default();
    let mut claims: BTreeMap<usize, report::Claims> = BTreeMap::new();
    let mut deployments = Vec::new();
    let mut related_services = Vec::new();
    let mut related_ingresses = Vec::new();
    let mut related_hpas = Vec::new();
    let mut config_maps = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let refuse =
        |i: usize, d: &Doc, why: String| (i, Refused { object: object(d), at: format!("{}:{}", d.file, d.at), why });
    let mut refusals: Vec<(usize, Refused)> = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let kind = d.value["kind"].as_str().unwrap_or_default().to_owned();
        let api = d.value["apiVersion"].as_str().unwrap_or_default().to_owned();
        if kind.is_empty() {
            refusals.push(refuse(i, d, "not a Kubernetes object: it has no `kind`".to_owned()));
            continue;
        }
        if let Some(why) = refusal_for(&kind) {
            refusals.push(refuse(i, d, why.to_owned()));
            continue;
        }
        let Some(apis) = expected_api(&kind) else {
            let why = if api.contains('.') && !api.ends_with("k8s.io/v1") {
                format!("custom resource {kind} ({api}): its operator is not Skiff's")
            } else {
                format!(
                    "kind {kind} is not one the importer reads (Deployment, Service, Ingress, HorizontalPodAutoscaler, ConfigMap, Secret)"
                )
            };
            refusals.push(refuse(i, d, why));
            continue;
        };
        if !apis.contains(&api.as_str()) {
            let why = format!(
                "{kind} with apiVersion `{api}`: read as {}; convert it (`kubectl convert`) first",
                apis.join(" or ")
            );
            refusals.push(refuse(i, d, why));
            continue;
        }
        let typed = |e: serde_json::Error| format!("not a valid {api} {kind}: {e}");
        match kind.as_str() {
            "Deployment" => match serde_json::from_value::<Deployment>(d.value.clone()) {
                Ok(dep) => match pod_blocker(&dep) {
                    Some(why) => refusals.push(refuse(i, d, why)),
                    None => deployments.push((i, dep)),
                },
                Err(e) => refusals.push(refuse(i, d, typed(e))),
            },
            "Service" => match serde_json::from_value::<Service>(d.value.clone()) {
                Ok(s) => related_services.push((i, s)),
                Err(e) => refusals.push(refuse(i, d, typed(e))),
            },
            "Ingress" => match serde_json::from_value::<Ingress>(d.value.clone()) {
                Ok(x) => related_ingresses.push((i, x)),
                Err(e) => refusals.push(refuse(i, d, typed(e))),
            },
            "HorizontalPodAutoscaler" if api == "autoscaling/v2" => {
                match serde_json::from_value::<HorizontalPodAutoscaler>(d.value.clone()) {
                    Ok(x) => related_hpas.push((i, x)),
                    Err(e) => refusals.push(refuse(i, d, typed(e))),
                }
            }
            "HorizontalPodAutoscaler" => {
                // autoscaling/v1: min/max and the target are read the same way.
                let mut v = d.value.clone();
                v["apiVersion"] = "autoscaling/v2".into();
                if let Some(spec) = v["spec"].as_object_mut() {
                    spec.remove("targetCPUUtilizationPercentage");
                }
                match serde_json::from_value::<HorizontalPodAutoscaler>(v) {
                    Ok(x) => {
                        claims.entry(i).or_default().warned(
                            "spec.targetCPUUtilizationPercentage",
                            "Skiff keeps instances between min and max; CPU targets are not automatic for services",
                        );
                        related_hpas.push((i, x));
                    }
                    Err(e) => refusals.push(refuse(i, d, typed(e))),
                }
            }
            "ConfigMap" => match serde_json::from_value::<ConfigMap>(d.value.clone()) {
                Ok(x) => {
                    config_maps.insert(x.metadata.name.clone().unwrap_or_default(), (i, x));
                }
                Err(e) => refusals.push(refuse(i, d, typed(e))),
            },
            "Secret" => match serde_json::from_value::<Secret>(d.value.clone()) {
                Ok(x) => {
                    secrets.insert(x.metadata.name.clone().unwrap_or_default(), (i, x));
                }
                Err(e) => refusals.push(refuse(i, d, typed(e))),
            },
            _ => {}
        }
    }
    let related = workload::Related {
        services: related_services.iter().map(|(i, s)| (*i, s)).collect(),
        ingresses: related_ingresses.iter().map(|(i, s)| (*i, s)).collect(),
        hpas: related_hpas.iter().map(|(i, s)| (*i, s)).collect(),
        config_maps: config_maps.iter().map(|(k, (_, v))| (k.clone(), v)).collect(),
        secrets: secrets.iter().map(|(k, (_, v))| (k.clone(), v)).collect(),
    };
    for (i, dep) in &deployments {
        let mut c = claims.remove(i).unwrap_or_default();
        let mapped = workload::map(dep, &related, &mut c, &mut claims);
        let d = &docs[*i];
        let header = format!(
            "# Imported by `skiff import kube` from {} ({}:{}).\n# Read the loss report: warned and unsupported paths need a person.\n",
            object(d),
            d.file,
            d.at
        );
        out.specs.push(ImportedSpec {
            service: mapped.spec["service"].as_str().unwrap_or_default().to_owned(),
            from: format!("{} {}", d.file, object(d)),
            yaml: header + &spec_yaml(&mapped.spec),
            secret_commands: mapped.secret_commands,
        });
        claims.insert(*i, c);
    }
    // ConfigMap values used are carried; Secret values never are.
    for (name, (i, _)) in &config_maps {
        let c = claims.entry(*i).or_default();
        c.mapped("data", format!("run.env of the services reading ConfigMap {name}"));
        c.mapped("metadata.name", "the values its readers carry");
    }
    for (name, (i, _)) in &secrets {
        let c = claims.entry(*i).or_default();
        c.warned(
            "data",
            format!(
                "secret values are never imported: set each key with `skiff secrets set secret://{}/KEY`",
                workload::service_name(name)
            ),
        );
        c.warned("stringData", "secret values are never imported: set them with `skiff secrets set`");
        c.mapped("metadata.name", format!("secret://{}/…", workload::service_name(name)));
        c.warned("type", "the secret store keeps opaque values");
    }
    for (i, r) in &refusals {
        let c = claims.entry(*i).or_default();
        c.unsupported("", format!("object refused: {}", r.why));
    }
    for (i, d) in docs.iter().enumerate() {
        let c = claims.remove(&i).unwrap_or_default();
        out.report.extend(report::account(&object(d), &d.file, &d.value, &c));
    }
    out.refused = refusals.into_iter().map(|(_, r)| r).collect();
    out
}

/// The spec as YAML, `service:` first.
fn spec_yaml(spec: &serde_json::Value) -> String {
    let mut rest = spec.clone();
    let service = rest.as_object_mut().and_then(|m| m.remove("service")).unwrap_or_default();
    emit::yaml(&serde_json::json!({"service": service})) + &emit::yaml(&rest)
}

/// `Kind/name` of a document.
pub fn object(d: &Doc) -> String {
    format!("{}/{}", d.value["kind"].as_str().unwrap_or("?"), d.value["metadata"]["name"].as_str().unwrap_or("?"))
}
