//! Importer benchmark: 1,000 manifests (a Deployment with probes, env from Secrets and
//! ConfigMaps, resources and a sidecar; its Service, HPA and ConfigMap — 4,000 objects)
//! in one directory, read from disk and imported with the full loss report, as
//! `skiff import kube DIR` does. Target (the issue's): > 1,000 objects/s. Writes JSON
//! to `$SKIFF_BENCH_OUT` (or stdout).
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::Instant;

use serde_json::json;

const MANIFESTS: usize = 1_000;
const RUNS: usize = 3;

/// One workload's manifests; `NAME` is replaced.
const TEMPLATE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: NAME, namespace: shop, labels: {app: NAME}}
spec:
  replicas: 3
  selector: {matchLabels: {app: NAME}}
  template:
    metadata: {labels: {app: NAME}}
    spec:
      containers:
      - name: app
        image: ghcr.io/acme/NAME:1.0
        args: [--port, "8080"]
        ports: [{containerPort: 8080}]
        env:
        - {name: LOG, value: info}
        - name: DB
          valueFrom: {secretKeyRef: {name: NAME-db, key: url}}
        - name: FLAGS
          valueFrom: {configMapKeyRef: {name: NAME, key: flags}}
        readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 5}
        livenessProbe: {tcpSocket: {port: 8080}}
        resources: {requests: {cpu: 250m, memory: 256Mi}, limits: {cpu: "1", memory: 512Mi}}
      - name: proxy
        image: envoyproxy/envoy:v1.31
---
apiVersion: v1
kind: Service
metadata: {name: NAME}
spec:
  selector: {app: NAME}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: NAME}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: NAME}
  minReplicas: 2
  maxReplicas: 6
---
apiVersion: v1
kind: ConfigMap
metadata: {name: NAME}
data: {flags: "a,b"}
"#;

fn manifest(i: usize) -> String {
    TEMPLATE.replace("NAME", &format!("svc-{i}"))
}

fn main() {
    let dir = std::env::temp_dir().join(format!("skiff-kube-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..MANIFESTS {
        std::fs::write(dir.join(format!("svc-{i:04}.yaml")), manifest(i)).unwrap();
    }
    let mut rates = Vec::new();
    let (mut objects, mut specs, mut paths) = (0, 0, 0);
    for _ in 0..RUNS {
        let start = Instant::now();
        let docs = skiff_kube::read(std::slice::from_ref(&dir)).unwrap();
        let imported = skiff_kube::import(&docs);
        let secs = start.elapsed().as_secs_f64();
        (objects, specs, paths) = (docs.len(), imported.specs.len(), imported.report.len());
        rates.push(objects as f64 / secs);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    rates.sort_by(f64::total_cmp);
    let median = rates[RUNS / 2];
    let out = json!({
        "suite": "import",
        "manifests": MANIFESTS,
        "objects": objects,
        "specs": specs,
        "report_paths": paths,
        "objects_per_second_median": median.round(),
        "target": {"objects_per_second_min": 1000, "met": median > 1000.0},
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    match std::env::var_os("SKIFF_BENCH_OUT") {
        Some(path) => std::fs::write(path, text + "\n").unwrap(),
        None => println!("{text}"),
    }
}
