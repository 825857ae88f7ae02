//! The gRPC service (proto/skiff/v1): each call authorises its caller, runs the
//! command the CLI would run, and answers with its envelope. Mutating calls are
//! audited and submit operations for a worker.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use skiff_cli::cli::{Command, PolicyAction, SagaAction};
use skiff_sdk::Envelope;
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

type Answer = Result<Response<proto::Envelope>, Status>;

fn status(r: Refusal) -> Status {
    let env = crate::http::refusal(&r);
    let message = format!("{}: {}", env.summary, env.facts.join("; "));
    match r {
        Refusal::Unauthenticated(_) => Status::unauthenticated(message),
        Refusal::Forbidden { .. } => Status::permission_denied(message),
    }
}

fn reply(env: &Envelope) -> Answer {
    Ok(Response::new(proto::Envelope::from(env)))
}

/// The role a command run through `Run` needs, and whether it changes anything;
/// `None` for commands skiffd does not run that way.
fn run_role(command: &Command) -> Option<(Role, bool)> {
    use skiff_cli::cli::{IamAction, ReleaseAction, SecretsAction, StateAction};
    Some(match command {
        Command::Logs { follow: false, .. } | Command::Metrics { .. } => (Role::Viewer, false),
        Command::Release {
            action: ReleaseAction::List { .. } | ReleaseAction::Show { .. } | ReleaseAction::Verify { .. },
        } => (Role::Viewer, false),
        Command::Saga { action: SagaAction::Kinds } => (Role::Viewer, false),
        Command::Saga { action: SagaAction::Start { dry_run: true, .. } } => (Role::Viewer, false),
        Command::Saga { action: SagaAction::Start { .. } } => (Role::Operator, true),
        Command::State { action: StateAction::Verify } => (Role::Viewer, false),
        Command::Iam { action: IamAction::Policy { .. } } => (Role::Viewer, false),
        Command::Secrets { action: SecretsAction::List { .. } } => (Role::Viewer, false),
        _ => return None,
    })
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

impl Service {
    /// The caller, if its token allows `needs`; a refused call that would have changed
    /// something is audited (who, if known, and which call).
    async fn caller<T>(&self, req: &Request<T>, needs: Role) -> Result<Caller, Status> {
        let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        match self.0.tokens.authorize(header, needs) {
            Ok(c) => Ok(c),
            Err(refusal) => {
                if needs > Role::Viewer {
                    let who = match &refusal {
                        Refusal::Forbidden { caller, .. } => caller.name.clone(),
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

    async fn read(&self, caller: &Caller, command: Command, uploads: Vec<Upload>) -> Answer {
        reply(&self.0.run(caller, command, uploads).await)
    }

    async fn write(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        command: Command,
        uploads: Vec<Upload>,
    ) -> Answer {
        let env = self.0.run(caller, command, uploads).await;
        let target = env.operation_id.clone().unwrap_or_else(|| target.to_owned());
        self.0.audit(&caller.name, action, &target, &env).await;
        reply(&env)
    }
}

#[tonic::async_trait]
impl Skiff for Service {
    async fn plan(&self, req: Request<proto::PlanRequest>) -> Answer {
        let caller = self.caller(&req, Role::Viewer).await?;
        let (file, upload) = spec_upload(req.into_inner().spec)?;
        self.read(&caller, Command::Plan { file }, vec![upload]).await
    }

    async fn policy_check(&self, req: Request<proto::PolicyCheckRequest>) -> Answer {
        let caller = self.caller(&req, Role::Viewer).await?;
        let (file, upload) = spec_upload(req.into_inner().spec)?;
        self.read(&caller, Command::Policy { action: PolicyAction::Check { file } }, vec![upload]).await
    }

    async fn deploy(&self, req: Request<proto::DeployRequest>) -> Answer {
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
        let command = Command::Deploy { file: file.clone(), no_build: true, watch: false, detach: true };
        self.write(&caller, "api.deploy", &file.display().to_string(), command, uploads).await
    }

    async fn rollback(&self, req: Request<proto::RollbackRequest>) -> Answer {
        let caller = self.caller(&req, Role::Operator).await?;
        let r = req.into_inner();
        let to = if r.to.is_empty() { "previous-stable".to_owned() } else { r.to };
        self.write(
            &caller,
            "api.rollback",
            &r.service.clone(),
            Command::Rollback { service: r.service, to },
            Vec::new(),
        )
        .await
    }

    async fn status(&self, req: Request<proto::ServiceRequest>) -> Answer {
        let caller = self.caller(&req, Role::Viewer).await?;
        self.read(&caller, Command::Status { service: req.into_inner().service }, Vec::new()).await
    }

    async fn reconcile(&self, req: Request<proto::ReconcileRequest>) -> Answer {
        let r = req.get_ref().clone();
        let caller = self.caller(&req, if r.repair { Role::Operator } else { Role::Viewer }).await?;
        let target = r.service.clone().unwrap_or_else(|| "*".to_owned());
        let command = Command::Reconcile { service: r.service, repair: r.repair };
        // A reconcile writes services/<svc>/reconcile.json: audited either way.
        self.write(&caller, if r.repair { "api.repair" } else { "api.reconcile" }, &target, command, Vec::new()).await
    }

    async fn doctor(&self, req: Request<proto::ServiceRequest>) -> Answer {
        let caller = self.caller(&req, Role::Viewer).await?;
        self.read(&caller, Command::Doctor { service: req.into_inner().service }, Vec::new()).await
    }

    async fn list_sagas(&self, req: Request<proto::SagaListRequest>) -> Answer {
        let caller = self.caller(&req, Role::Viewer).await?;
        let r = req.into_inner();
        self.read(
            &caller,
            Command::Saga { action: SagaAction::List { service: r.service, status: r.status } },
            Vec::new(),
        )
        .await
    }

    async fn get_operation(&self, req: Request<proto::OperationRequest>) -> Answer {
        let caller = self.caller(&req, Role::Viewer).await?;
        self.read(&caller, Command::Saga { action: SagaAction::Show { op: req.into_inner().op_id } }, Vec::new()).await
    }

    async fn approve(&self, req: Request<proto::SagaDecisionRequest>) -> Answer {
        let caller = self.caller(&req, Role::Approver).await?;
        let r = req.into_inner();
        let command = Command::Saga { action: SagaAction::Approve { op: r.op_id.clone(), step: r.detail } };
        self.write(&caller, "api.approve", &r.op_id, command, Vec::new()).await
    }

    async fn reject(&self, req: Request<proto::SagaDecisionRequest>) -> Answer {
        let caller = self.caller(&req, Role::Approver).await?;
        let r = req.into_inner();
        let command =
            Command::Saga { action: SagaAction::Reject { op: r.op_id.clone(), reason: r.detail.unwrap_or_default() } };
        self.write(&caller, "api.reject", &r.op_id, command, Vec::new()).await
    }

    async fn pause(&self, req: Request<proto::OperationRequest>) -> Answer {
        let caller = self.caller(&req, Role::Operator).await?;
        let op = req.into_inner().op_id;
        self.write(&caller, "api.pause", &op.clone(), Command::Saga { action: SagaAction::Pause { op } }, Vec::new())
            .await
    }

    async fn resume(&self, req: Request<proto::OperationRequest>) -> Answer {
        let caller = self.caller(&req, Role::Operator).await?;
        let op = req.into_inner().op_id;
        self.write(&caller, "api.resume", &op.clone(), Command::Saga { action: SagaAction::Resume { op } }, Vec::new())
            .await
    }

    async fn cancel(&self, req: Request<proto::OperationRequest>) -> Answer {
        let caller = self.caller(&req, Role::Operator).await?;
        let op = req.into_inner().op_id;
        self.write(&caller, "api.cancel", &op.clone(), Command::Saga { action: SagaAction::Cancel { op } }, Vec::new())
            .await
    }

    type EventsStream = Pin<Box<dyn Stream<Item = Result<proto::Event, Status>> + Send + 'static>>;

    async fn events(&self, req: Request<proto::EventsRequest>) -> Result<Response<Self::EventsStream>, Status> {
        self.caller(&req, Role::Viewer).await?;
        let r = req.into_inner();
        let ledger = self.0.ledger.clone();
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
                if ended || !r.follow {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn submit_intent(&self, req: Request<proto::IntentRequest>) -> Answer {
        let caller = self.caller(&req, Role::Operator).await?;
        let r = req.into_inner();
        let env = crate::http::submit_intent(&self.0, &caller, r.json.as_bytes(), &r.idempotency_key).await;
        self.0.audit(&caller.name, "api.intent", &skiff_cli::api::intent_op(&r.idempotency_key), &env).await;
        reply(&env)
    }

    async fn run(&self, req: Request<proto::CommandRequest>) -> Answer {
        let args = req.get_ref().args.clone();
        let cli = skiff_cli::cli::Cli::try_parse_from(std::iter::once("skiff".to_owned()).chain(args.iter().cloned()))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let Some((needs, mutating)) = run_role(&cli.command) else {
            return Err(Status::unimplemented(format!(
                "`skiff {}` is not run by skiffd: it needs local files or a terminal, or has its own call",
                args.first().map_or("", String::as_str)
            )));
        };
        let caller = self.caller(&req, needs).await?;
        if mutating {
            self.write(&caller, &format!("api.run.{}", args[0]), &args.join(" "), cli.command, Vec::new()).await
        } else {
            self.read(&caller, cli.command, Vec::new()).await
        }
    }

    async fn audit(&self, req: Request<proto::AuditRequest>) -> Answer {
        let caller = self.caller(&req, Role::Viewer).await?;
        self.read(&caller, Command::Audit { since: req.into_inner().since }, Vec::new()).await
    }
}
