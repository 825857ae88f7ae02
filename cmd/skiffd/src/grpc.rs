//! The gRPC service (proto/skiff/v1): each call authorises its caller, maps its
//! message to the typed request the CLI would make, answers it with `skiff-ops`, and
//! replies with the answer. Mutating calls are audited and submit operations for a
//! worker.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use skiff_clock::{Clock as _, SystemClock};
use skiff_ops::{
    DatabaseRequest, DeployRequest, LogsRequest, ReleaseRequest, Request as Op, RollbackRequest, SagaRequest,
    SagaStart, SecretsRequest, ShadowRequest,
};
use skiff_sdk::Answer;
use skiff_sdk::grpc::proto::{self, skiff_server::Skiff};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Refusal, Role};
use crate::server::{Server, Upload, safe_relative};

/// The gRPC method a request calls (`Deploy`, `Approve`, ...), for the audit log.
#[derive(Clone, Debug)]
pub struct Method(pub String);

/// Tags each gRPC request with its method name (the last segment of its path).
pub async fn tag_method(mut req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let method = req.uri().path().rsplit('/').next().unwrap_or("unknown").to_owned();
    req.extensions_mut().insert(Method(method));
    next.run(req).await
}

/// The service.
#[derive(Clone, Debug)]
pub struct Service(pub Arc<Server>);

type Reply = Result<Response<proto::Envelope>, Status>;

fn status(r: Refusal) -> Status {
    let env = crate::http::refusal(&r);
    let message = format!("{}: {}", env.summary, env.facts.join("; "));
    match r {
        Refusal::Unauthenticated(_) => Status::unauthenticated(message),
        Refusal::Forbidden { .. } => Status::permission_denied(message),
        Refusal::RateLimited { retry_after_ms, .. } => {
            let mut s = Status::resource_exhausted(message);
            if let Ok(v) = retry_after_ms.div_ceil(1000).max(1).to_string().parse() {
                s.metadata_mut().insert("retry-after", v);
            }
            s
        }
    }
}

fn reply(answer: &Answer) -> Reply {
    Ok(Response::new(proto::Envelope::from(answer)))
}

/// The file name a spec is staged under: its own name, never a path.
fn spec_upload(spec: Option<proto::SpecFile>) -> Result<(PathBuf, Upload), Status> {
    let spec = spec.ok_or_else(|| Status::invalid_argument("the request carries no spec"))?;
    let name = std::path::Path::new(&spec.name)
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("skiff.yaml")
        .to_owned();
    Ok((PathBuf::from(&name), Upload { path: name, bytes: spec.yaml.into_bytes() }))
}

/// Whether an operation's answer shows it ended.
pub(crate) fn ended(data: &serde_json::Value) -> bool {
    matches!(data["status"].as_str(), Some("succeeded" | "failed" | "compensated" | "cancelled"))
}

impl Service {
    /// The caller, if its token allows `needs`; a refused call that would have changed
    /// something is audited (who, if known, and which call).
    async fn caller<T>(&self, req: &Request<T>, needs: Role) -> Result<Caller, Status> {
        let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        match self.0.auth.authorize(header, needs).await {
            Ok(c) => Ok(c),
            Err(refusal) => {
                if needs > Role::Viewer {
                    let who = match &refusal {
                        Refusal::Forbidden { caller, .. } => caller.name.clone(),
                        Refusal::RateLimited { who, .. } => who.clone(),
                        Refusal::Unauthenticated(_) => "anonymous".to_owned(),
                    };
                    let call = req.extensions().get::<Method>().map_or("unknown", |m| m.0.as_str());
                    let env = crate::http::refusal(&refusal);
                    self.0.audit(&who, &format!("api.{call}.refused"), "-", &env).await;
                }
                Err(status(refusal))
            }
        }
    }

    async fn read(&self, caller: &Caller, request: Op, uploads: Vec<Upload>) -> Reply {
        reply(&self.0.run(caller, request, uploads).await)
    }

    async fn write(&self, caller: &Caller, action: &str, target: &str, request: Op, uploads: Vec<Upload>) -> Reply {
        self.write_confirmed(caller, action, target, request, uploads, true).await
    }

    async fn write_confirmed(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        request: Op,
        uploads: Vec<Upload>,
        confirmed: bool,
    ) -> Reply {
        let _slot = self.0.submission_slot(&caller.name).await.map_err(status)?;
        let answer = self.0.run_confirmed(caller, request, uploads, confirmed).await;
        let env = &answer.envelope;
        let target = env.operation_id.clone().unwrap_or_else(|| target.to_owned());
        self.0.audit(&caller.name, action, &target, env).await;
        reply(&answer)
    }
}

#[tonic::async_trait]
impl Skiff for Service {
    async fn plan(&self, req: Request<proto::PlanRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        let (file, upload) = spec_upload(req.into_inner().spec)?;
        self.read(&caller, Op::Plan { file }, vec![upload]).await
    }

    async fn policy_check(&self, req: Request<proto::PolicyCheckRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        let (file, upload) = spec_upload(req.into_inner().spec)?;
        self.read(&caller, Op::PolicyCheck { file }, vec![upload]).await
    }

    async fn deploy(&self, req: Request<proto::DeployRequest>) -> Reply {
        let caller = self.caller(&req, Role::Operator).await?;
        let r = req.into_inner();
        let (file, spec) = spec_upload(r.spec)?;
        let mut uploads = vec![spec];
        if let Some(a) = r.artifact {
            if safe_relative(&a.path).is_none() {
                return Err(Status::invalid_argument(format!(
                    "artifact path `{}` must be relative, without `..`",
                    a.path
                )));
            }
            uploads.push(Upload { path: a.path, bytes: a.content });
        }
        let shadow =
            r.shadow.then_some(ShadowRequest { mirror_percent: (r.mirror_percent > 0).then_some(r.mirror_percent) });
        let request = Op::Deploy(DeployRequest { file: file.clone(), build: false, dry_run: false, shadow });
        self.write(&caller, "api.deploy", &file.display().to_string(), request, uploads).await
    }

    async fn rollback(&self, req: Request<proto::RollbackRequest>) -> Reply {
        let caller = self.caller(&req, Role::Operator).await?;
        let r = req.into_inner();
        let to = if r.to.is_empty() { "previous-stable".to_owned() } else { r.to };
        let (target, confirmed) = (r.service.clone(), r.confirmed);
        let request = Op::Rollback(RollbackRequest { service: r.service, to });
        self.write_confirmed(&caller, "api.rollback", &target, request, Vec::new(), confirmed).await
    }

    async fn status(&self, req: Request<proto::ServiceRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        self.read(&caller, Op::Status { service: req.into_inner().service }, Vec::new()).await
    }

    async fn reconcile(&self, req: Request<proto::ReconcileRequest>) -> Reply {
        let r = req.get_ref().clone();
        let caller = self.caller(&req, if r.repair { Role::Operator } else { Role::Viewer }).await?;
        let target = r.service.clone().unwrap_or_else(|| "*".to_owned());
        let request = match (r.service, r.repair) {
            (Some(service), true) => Op::Repair { service },
            (service, _) => Op::Reconcile { service },
        };
        // A reconcile writes services/<svc>/reconcile.json: audited either way.
        let action = if r.repair { "api.repair" } else { "api.reconcile" };
        self.write_confirmed(&caller, action, &target, request, Vec::new(), r.confirmed || !r.repair).await
    }

    async fn doctor(&self, req: Request<proto::ServiceRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        self.read(&caller, Op::Doctor { service: req.into_inner().service }, Vec::new()).await
    }

    async fn list_sagas(&self, req: Request<proto::SagaListRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        let r = req.into_inner();
        self.read(&caller, Op::Saga(SagaRequest::List { service: r.service, status: r.status }), Vec::new()).await
    }

    async fn get_operation(&self, req: Request<proto::OperationRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        let r = req.into_inner();
        let request = if r.outcome { SagaRequest::Outcome { op: r.op_id } } else { SagaRequest::Show { op: r.op_id } };
        let answer = self.0.run(&caller, Op::Saga(request), Vec::new()).await;
        if ended(&answer.envelope.data) {
            self.0.saw_write();
        }
        reply(&answer)
    }

    async fn approve(&self, req: Request<proto::SagaDecisionRequest>) -> Reply {
        let caller = self.caller(&req, Role::Approver).await?;
        let r = req.into_inner();
        let request = Op::Saga(SagaRequest::Approve { op: r.op_id.clone(), step: r.detail });
        self.write_confirmed(&caller, "api.approve", &r.op_id, request, Vec::new(), r.confirmed).await
    }

    async fn reject(&self, req: Request<proto::SagaDecisionRequest>) -> Reply {
        let caller = self.caller(&req, Role::Approver).await?;
        let r = req.into_inner();
        let request = Op::Saga(SagaRequest::Reject { op: r.op_id.clone(), reason: r.detail.unwrap_or_default() });
        self.write_confirmed(&caller, "api.reject", &r.op_id, request, Vec::new(), r.confirmed).await
    }

    async fn pause(&self, req: Request<proto::OperationRequest>) -> Reply {
        let caller = self.caller(&req, Role::Operator).await?;
        let r = req.into_inner();
        let request = Op::Saga(SagaRequest::Pause { op: r.op_id.clone() });
        self.write_confirmed(&caller, "api.pause", &r.op_id, request, Vec::new(), r.confirmed).await
    }

    async fn resume(&self, req: Request<proto::OperationRequest>) -> Reply {
        let caller = self.caller(&req, Role::Operator).await?;
        let r = req.into_inner();
        let request = Op::Saga(SagaRequest::Resume { op: r.op_id.clone() });
        self.write_confirmed(&caller, "api.resume", &r.op_id, request, Vec::new(), r.confirmed).await
    }

    async fn cancel(&self, req: Request<proto::OperationRequest>) -> Reply {
        let caller = self.caller(&req, Role::Operator).await?;
        let r = req.into_inner();
        let request = Op::Saga(SagaRequest::Cancel { op: r.op_id.clone() });
        self.write_confirmed(&caller, "api.cancel", &r.op_id, request, Vec::new(), r.confirmed).await
    }

    type EventsStream = Pin<Box<dyn Stream<Item = Result<proto::Event, Status>> + Send + 'static>>;

    async fn events(&self, req: Request<proto::EventsRequest>) -> Result<Response<Self::EventsStream>, Status> {
        self.caller(&req, Role::Viewer).await?;
        let r = req.into_inner();
        let ledger = self.0.ledger.clone();
        let server = self.0.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut after = r.after;
            loop {
                let events = match ledger.events_from(&r.op_id, after + 1).await {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = tx.send(Err(Status::not_found(e.to_string()))).await;
                        return;
                    }
                };
                let mut ended = false;
                for e in events {
                    after = e.seq;
                    ended |= matches!(
                        e.event_type.as_str(),
                        "operation_succeeded" | "operation_failed" | "operation_compensated" | "operation_cancelled"
                    );
                    let json = serde_json::to_string(&e).unwrap_or_default();
                    if tx.send(Ok(proto::Event { seq: e.seq, event_type: e.event_type.clone(), json })).await.is_err() {
                        return;
                    }
                }
                if ended {
                    // The client saw the operation end: this replica's reads include it.
                    server.saw_write();
                }
                if ended || !r.follow {
                    return;
                }
                SystemClock.sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn submit_intent(&self, req: Request<proto::IntentRequest>) -> Reply {
        let caller = self.caller(&req, Role::Operator).await?;
        let _slot = self.0.submission_slot(&caller.name).await.map_err(status)?;
        let r = req.into_inner();
        let answer = crate::http::submit_intent(&self.0, &caller, r.json.as_bytes(), &r.idempotency_key).await;
        let op = skiff_ops::intent::intent_op(&r.idempotency_key);
        self.0.audit(&caller.name, "api.intent", &op, &answer.envelope).await;
        reply(&answer)
    }

    async fn audit(&self, req: Request<proto::AuditRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        self.read(&caller, Op::Audit { since: req.into_inner().since }, Vec::new()).await
    }

    async fn logs(&self, req: Request<proto::LogsRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        let r = req.into_inner();
        let request = Op::Logs(LogsRequest {
            service: r.service,
            instance: r.instance,
            follow: false,
            since: r.since,
            grep: r.grep,
            trace: r.trace,
            json: false,
        });
        self.read(&caller, request, Vec::new()).await
    }

    async fn debug_collect(&self, req: Request<proto::ServiceRequest>) -> Reply {
        let caller = self.caller(&req, Role::Operator).await?;
        let Some(service) = req.into_inner().service else {
            return Err(Status::invalid_argument("debug collect names a service"));
        };
        let target = service.clone();
        self.write_confirmed(
            &caller,
            "api.debug.collect",
            &target,
            Op::DebugCollect { service, out: None },
            Vec::new(),
            true,
        )
        .await
    }

    async fn metrics(&self, req: Request<proto::ServiceRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        let Some(service) = req.into_inner().service else {
            return Err(Status::invalid_argument("metrics name a service"));
        };
        self.read(&caller, Op::Metrics { service, queue_lag: false }, Vec::new()).await
    }

    async fn list_releases(&self, req: Request<proto::ReleaseListRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        let request = Op::Release(ReleaseRequest::List { service: req.into_inner().service });
        self.read(&caller, request, Vec::new()).await
    }

    async fn show_release(&self, req: Request<proto::ReleaseRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        let r = req.into_inner();
        self.read(&caller, Op::Release(ReleaseRequest::Show { service: r.service, release: r.release }), Vec::new())
            .await
    }

    async fn verify_release(&self, req: Request<proto::ReleaseRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        let r = req.into_inner();
        let request = Op::Release(ReleaseRequest::Verify { service: r.service, release: r.release, public_key: None });
        self.read(&caller, request, Vec::new()).await
    }

    async fn saga_kinds(&self, req: Request<proto::Empty>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        self.read(&caller, Op::Saga(SagaRequest::Kinds), Vec::new()).await
    }

    async fn start_saga(&self, req: Request<proto::SagaStartRequest>) -> Reply {
        let dry_run = req.get_ref().dry_run;
        let caller = self.caller(&req, if dry_run { Role::Viewer } else { Role::Operator }).await?;
        let r = req.into_inner();
        let (target, confirmed) = (r.kind.clone(), r.confirmed);
        let request = Op::Saga(SagaRequest::Start(SagaStart {
            kind: r.kind,
            service: r.service,
            params: r.params.into_iter().map(|p| (p.key, p.value)).collect(),
            dry_run,
            idempotency_key: r.idempotency_key,
            reason: r.reason,
            to: r.to,
        }));
        if dry_run {
            self.read(&caller, request, Vec::new()).await
        } else {
            self.write_confirmed(&caller, "api.saga.start", &target, request, Vec::new(), confirmed).await
        }
    }

    async fn verify_state(&self, req: Request<proto::Empty>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        self.read(&caller, Op::StateVerify, Vec::new()).await
    }

    async fn iam_policy(&self, req: Request<proto::IamPolicyRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        self.read(&caller, Op::IamPolicy { account: req.into_inner().account }, Vec::new()).await
    }

    async fn list_secrets(&self, req: Request<proto::SecretsListRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        self.read(&caller, Op::Secrets(SecretsRequest::List { name: req.into_inner().name }), Vec::new()).await
    }

    async fn list_backups(&self, req: Request<proto::DatabaseRequest>) -> Reply {
        let caller = self.caller(&req, Role::Viewer).await?;
        let database = req.into_inner().database;
        self.read(&caller, Op::Database(DatabaseRequest::ListBackups { database }), Vec::new()).await
    }
}
