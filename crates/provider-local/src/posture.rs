//! The local provider's security posture ([`Posture`]): what its "cloud" holds that a
//! person could change behind Skiff's back — a group's launch settings in the
//! supervisor (what new instances run), target groups and targets on the service's
//! load balancer that no release of the ledger made, and a state directory other
//! users may write. Roles are compared by reconcile itself (their permissions), and
//! there are no network rules: instances listen on 127.0.0.1.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use async_trait::async_trait;
use serde_json::{Value, json};
use skiff_pluginapi::{
    Fix, GroupSpec, LaunchConfig, Posture, PostureScope, ProviderError, Result, SettingDrift, Severity, Target,
    TargetGroupSpec,
};

use crate::api::TargetGroupEntry;
use crate::client::LocalProvider;

/// The fields of a launch that differ, as `{field: value}` for each side.
fn launch_diff(desired: &LaunchConfig, actual: &LaunchConfig) -> (Value, Value, Severity) {
    let (d, a) = (json!(desired), json!(actual));
    let (mut want, mut have) = (serde_json::Map::new(), serde_json::Map::new());
    let mut severity = Severity::Medium;
    if let (Some(d), Some(a)) = (d.as_object(), a.as_object()) {
        for (k, v) in d {
            if a.get(k) != Some(v) {
                want.insert(k.clone(), v.clone());
                have.insert(k.clone(), a.get(k).cloned().unwrap_or(Value::Null));
                // What instances verify releases against, and what they run with.
                severity = severity.max(match k.as_str() {
                    "runner" => Severity::Critical,
                    "command" | "env" | "secrets" | "role" => Severity::High,
                    _ => Severity::Medium,
                });
            }
        }
    }
    (Value::Object(want), Value::Object(have), severity)
}

/// The state directory of a `file://` bucket.
fn state_dir(url: &str) -> Option<PathBuf> {
    url.strip_prefix("file://").map(PathBuf::from)
}

impl LocalProvider {
    async fn launch_drift(&self, group: &GroupSpec) -> Result<Option<SettingDrift>> {
        let path = format!("/v1/groups/{}/launch", group.name);
        let Some(actual) = self.call::<LaunchConfig, ()>(reqwest::Method::GET, &path, None).await? else {
            return Ok(None);
        };
        if actual == group.launch {
            return Ok(None);
        }
        let (desired, have, severity) = launch_diff(&group.launch, &actual);
        let fields: Vec<&String> = desired.as_object().map(|m| m.keys().collect()).unwrap_or_default();
        let fields = fields.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ");
        Ok(Some(SettingDrift {
            path: "launch".to_owned(),
            resource: format!("group/{}", group.name),
            desired,
            actual: have,
            severity,
            summary: format!("the launch settings of {} were changed outside Skiff ({fields})", group.name),
            fix: Some(Fix {
                description: format!("put the launch settings of {} back to what Skiff launched", group.name),
                apply: json!({"kind": "launch", "group": group.name, "launch": group.launch}),
                undo: json!({"kind": "launch", "group": group.name, "launch": actual}),
            }),
            repair: None,
        }))
    }

    async fn traffic_drift(&self, scope: &PostureScope) -> Result<Vec<SettingDrift>> {
        let mut out = Vec::new();
        let tgs: Vec<TargetGroupEntry> = self
            .call::<Vec<TargetGroupEntry>, ()>(reqwest::Method::GET, "/v1/target-groups", None)
            .await?
            .unwrap_or_default();
        let instances: std::collections::BTreeSet<String> = skiff_pluginapi::Compute::list_groups(self, &scope.service)
            .await?
            .into_iter()
            .flat_map(|g| g.instances.into_iter().map(|i| i.id))
            .collect();
        for tg in tgs.into_iter().filter(|t| t.spec.service == scope.service) {
            if !scope.target_groups.contains(&tg.spec.name) {
                out.push(SettingDrift {
                    path: "traffic.target_groups".to_owned(),
                    resource: format!("target-group/{}", tg.spec.name),
                    desired: Value::Null,
                    actual: json!({"name": tg.spec.name, "targets": tg.targets}),
                    severity: Severity::High,
                    summary: format!(
                        "target group {} on {}'s load balancer belongs to no release Skiff made",
                        tg.spec.name, scope.service
                    ),
                    fix: Some(Fix {
                        description: format!("remove target group {}", tg.spec.name),
                        apply: json!({"kind": "delete_target_group", "name": tg.spec.name}),
                        undo: json!({"kind": "create_target_group", "spec": tg.spec, "targets": tg.targets}),
                    }),
                    repair: None,
                });
                continue;
            }
            let rogue: Vec<&Target> = tg.targets.iter().filter(|t| !instances.contains(&t.id)).collect();
            for t in rogue {
                out.push(SettingDrift {
                    path: "traffic.targets".to_owned(),
                    resource: format!("target-group/{}", tg.spec.name),
                    desired: Value::Null,
                    actual: json!(t),
                    severity: Severity::Critical,
                    summary: format!(
                        "{}:{} ({}) takes {}'s traffic in {} but is no instance Skiff started",
                        t.address, t.port, t.id, scope.service, tg.spec.name
                    ),
                    fix: Some(Fix {
                        description: format!("deregister {} from {}", t.id, tg.spec.name),
                        apply: json!({"kind": "deregister", "target_group": tg.spec.name, "target": t}),
                        undo: json!({"kind": "register", "target_group": tg.spec.name, "target": t}),
                    }),
                    repair: None,
                });
            }
        }
        Ok(out)
    }
}

/// A state directory others may write.
fn bucket_drift(url: &str) -> Option<SettingDrift> {
    let dir = state_dir(url)?;
    let mode = std::fs::metadata(&dir).ok()?.permissions().mode() & 0o7777;
    if mode & 0o022 == 0 {
        return None;
    }
    let wanted = mode & !0o022;
    Some(SettingDrift {
        path: "state.permissions".to_owned(),
        resource: dir.display().to_string(),
        desired: json!(format!("{wanted:04o}")),
        actual: json!(format!("{mode:04o}")),
        severity: if mode & 0o002 != 0 { Severity::Critical } else { Severity::High },
        summary: format!(
            "the state directory {} is writable by {} (mode {mode:04o}): they could rewrite the ledger",
            dir.display(),
            if mode & 0o002 != 0 { "every user" } else { "its group" }
        ),
        fix: Some(Fix {
            description: format!("take write access to {} from group and others", dir.display()),
            apply: json!({"kind": "chmod", "path": dir, "mode": wanted}),
            undo: json!({"kind": "chmod", "path": dir, "mode": mode}),
        }),
        repair: None,
    })
}

fn field<'a>(action: &'a Value, name: &str) -> Result<&'a Value> {
    action.get(name).ok_or_else(|| ProviderError::new(format!("a posture fix without `{name}`: {action}"), false))
}

fn parse<T: serde::de::DeserializeOwned>(action: &Value, name: &str) -> Result<T> {
    serde_json::from_value(field(action, name)?.clone())
        .map_err(|e| ProviderError::new(format!("a posture fix with a bad `{name}`: {e}"), false))
}

#[async_trait]
impl Posture for LocalProvider {
    async fn drift(&self, scope: &PostureScope) -> Result<Vec<SettingDrift>> {
        let mut out = Vec::new();
        if let Some(g) = &scope.group {
            out.extend(self.launch_drift(g).await?);
        }
        out.extend(self.traffic_drift(scope).await?);
        out.extend(bucket_drift(&scope.state));
        Ok(out)
    }

    async fn fix(&self, action: &Value) -> Result<()> {
        let kind = field(action, "kind")?.as_str().unwrap_or_default();
        match kind {
            "launch" => {
                let group: String = parse(action, "group")?;
                let launch: LaunchConfig = parse(action, "launch")?;
                self.act(reqwest::Method::PUT, &format!("/v1/groups/{group}/launch"), Some(&launch), &group).await
            }
            "delete_target_group" => {
                let name: String = parse(action, "name")?;
                skiff_pluginapi::Traffic::delete_target_group(self, &name).await
            }
            "create_target_group" => {
                let spec: TargetGroupSpec = parse(action, "spec")?;
                let targets: Vec<Target> = parse(action, "targets")?;
                skiff_pluginapi::Traffic::ensure_target_group(self, &spec).await?;
                skiff_pluginapi::Traffic::register(self, &spec.name, &targets).await
            }
            "deregister" => {
                let tg: String = parse(action, "target_group")?;
                let t: Target = parse(action, "target")?;
                skiff_pluginapi::Traffic::deregister(self, &tg, &[t.id]).await
            }
            "register" => {
                let tg: String = parse(action, "target_group")?;
                let t: Target = parse(action, "target")?;
                skiff_pluginapi::Traffic::register(self, &tg, &[t]).await
            }
            "chmod" => {
                let path: PathBuf = parse(action, "path")?;
                let mode: u32 = parse(action, "mode")?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| ProviderError::new(format!("chmod {:o} {}: {e}", mode, path.display()), false))
            }
            other => Err(ProviderError::new(format!("the local provider has no posture fix `{other}`"), false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_runner_key_is_critical_and_only_changed_fields_are_shown() {
        let base: LaunchConfig = serde_json::from_value(json!({
            "instance_type": "local", "spot": false, "command": ["x"], "env": {}, "secrets": {}, "port": 8080,
            "health": null, "drain_timeout_ms": 0, "role": null, "log_group": null,
            "runner": {"bucket": "file:///s", "public_key_pem": "A", "heartbeat_ms": 1000}
        }))
        .unwrap();
        let mut swapped = base.clone();
        swapped.runner.public_key_pem = "B".into();
        let (d, a, sev) = launch_diff(&base, &swapped);
        assert_eq!(sev, Severity::Critical);
        assert_eq!(d.as_object().unwrap().keys().collect::<Vec<_>>(), ["runner"]);
        assert_eq!(a["runner"]["public_key_pem"], "B");
        let mut env = base.clone();
        env.env.insert("SKIFF_HOST".into(), "0.0.0.0".into());
        assert_eq!(launch_diff(&base, &env).2, Severity::High);
    }
}
