//! The gRPC contract (proto/skiff/v1) and a typed client for it.
//!
//! [`proto`] is generated at build time; [`Client`] wraps it so every call answers
//! with the same [`Answer`] a direct-mode request gives (envelope and human detail),
//! transport and authentication failures included.

use std::str::FromStr;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

use crate::{Action, Answer, Code, Envelope, Risk, RiskLevel, Safety};

/// The generated messages, client and server of `skiff.v1`.
#[allow(missing_docs, reason = "generated code; the .proto documents it")]
#[allow(unreachable_pub, reason = "generated code")]
#[allow(missing_debug_implementations, reason = "generated code")]
#[allow(clippy::all, reason = "generated code")]
#[allow(clippy::allow_attributes_without_reason, reason = "generated code")]
#[allow(clippy::pedantic, reason = "generated code")]
pub mod proto {
    tonic::include_proto!("skiff.v1");
}

/// The environment variable holding the bearer token for `--server`.
pub const TOKEN_VAR: &str = "SKIFF_TOKEN";

/// Largest message either side accepts (deploys carry the artifact).
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024 * 1024;

fn safety_str(s: Safety) -> &'static str {
    match s {
        Safety::ReadOnly => "read_only",
        Safety::Reversible => "reversible",
        Safety::Irreversible => "irreversible",
    }
}

fn risk_str(r: RiskLevel) -> &'static str {
    match r {
        RiskLevel::None => "none",
        RiskLevel::Low => "low",
        RiskLevel::Medium => "medium",
        RiskLevel::High => "high",
    }
}

impl From<&Envelope> for proto::Envelope {
    fn from(e: &Envelope) -> Self {
        proto::Envelope {
            ok: e.ok,
            code: e.code.as_str().to_owned(),
            summary: e.summary.clone(),
            facts: e.facts.clone(),
            data_json: if e.data.is_null() { String::new() } else { e.data.to_string() },
            risk: e
                .risk
                .as_ref()
                .map(|r| proto::Risk { level: risk_str(r.level).to_owned(), reasons: r.reasons.clone() }),
            recommended_actions: e
                .recommended_actions
                .iter()
                .map(|a| proto::Action {
                    id: a.id.clone(),
                    command: a.command.clone(),
                    mutating: a.mutating,
                    safety: safety_str(a.safety).to_owned(),
                    confidence: a.confidence,
                })
                .collect(),
            operation_id: e.operation_id.clone(),
            idempotency_key: e.idempotency_key.clone(),
            human: None,
        }
    }
}

impl From<&Answer> for proto::Envelope {
    fn from(a: &Answer) -> Self {
        let mut p = proto::Envelope::from(&a.envelope);
        if a.body.is_some() || a.raw || a.body_replaces_facts {
            p.human =
                Some(proto::HumanView { body: a.body.clone(), raw: a.raw, body_replaces_facts: a.body_replaces_facts });
        }
        p
    }
}

impl TryFrom<proto::Envelope> for Answer {
    type Error = DecodeError;
    fn try_from(mut p: proto::Envelope) -> Result<Self, DecodeError> {
        let human = p.human.take().unwrap_or_default();
        Ok(Answer {
            envelope: Envelope::try_from(p)?,
            body: human.body,
            raw: human.raw,
            body_replaces_facts: human.body_replaces_facts,
        })
    }
}

/// A wire envelope the server sent that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("the server sent an envelope that does not decode: {0}")]
pub struct DecodeError(String);

impl TryFrom<proto::Envelope> for Envelope {
    type Error = DecodeError;
    fn try_from(p: proto::Envelope) -> Result<Self, DecodeError> {
        let quoted = |s: &str| serde_json::Value::String(s.to_owned());
        let code = Code::from_str(&p.code).map_err(DecodeError)?;
        let data = if p.data_json.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&p.data_json).map_err(|e| DecodeError(format!("data_json: {e}")))?
        };
        let risk = match p.risk {
            Some(r) => Some(Risk {
                level: serde_json::from_value(quoted(&r.level)).map_err(|e| DecodeError(format!("risk: {e}")))?,
                reasons: r.reasons,
            }),
            None => None,
        };
        let mut actions = Vec::new();
        for a in p.recommended_actions {
            actions.push(Action {
                safety: serde_json::from_value(quoted(&a.safety)).map_err(|e| DecodeError(format!("safety: {e}")))?,
                id: a.id,
                command: a.command,
                mutating: a.mutating,
                confidence: a.confidence,
            });
        }
        Ok(Envelope {
            ok: p.ok,
            code,
            summary: p.summary,
            facts: p.facts,
            data,
            risk,
            recommended_actions: actions,
            operation_id: p.operation_id,
            idempotency_key: p.idempotency_key,
        })
    }
}

/// The envelope for a gRPC status: authentication and permission answers keep their
/// codes; anything else is the server being unreachable or failing.
pub fn status_envelope(server: &str, s: &tonic::Status) -> Envelope {
    let (code, summary) = match s.code() {
        tonic::Code::Unauthenticated => (Code::Unauthenticated, format!("{server} needs a valid token")),
        tonic::Code::PermissionDenied => {
            (Code::PermissionDenied, format!("{server} refused: your role may not do this"))
        }
        tonic::Code::Unavailable => (Code::StateUnavailable, format!("cannot reach skiffd at {server}")),
        tonic::Code::Unimplemented => (Code::Usage, format!("{server} does not serve this call")),
        tonic::Code::InvalidArgument => (Code::Usage, format!("{server} did not accept the request")),
        tonic::Code::ResourceExhausted => (Code::RateLimited, format!("{server} is shedding load: retry later")),
        tonic::Code::DeadlineExceeded => (Code::DeadlineExceeded, format!("{server} did not answer in time")),
        tonic::Code::OutOfRange => (Code::Usage, format!("{server} refused a message over its size limit")),
        _ => (Code::Internal, format!("{server} failed the call")),
    };
    let env = Envelope::failure(code, summary).fact(s.message().to_owned());
    match code {
        Code::Unauthenticated => {
            env.action("token", format!("export {TOKEN_VAR}=<token>"), false, Safety::ReadOnly, 0.7)
        }
        Code::StateUnavailable => {
            env.action("direct", "run the command without --server", false, Safety::ReadOnly, 0.3)
        }
        _ => env,
    }
}

/// TLS material for an `https://` server, as PEM bytes.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// The CA that signed the server's certificate (else the system's roots are not
    /// consulted: this client trusts only what it is given).
    pub ca_pem: Option<Vec<u8>>,
    /// For mutual TLS: this client's certificate chain and private key.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

/// Adds the bearer token to every call.
#[derive(Clone, Debug)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The generated client with the bearer token attached.
pub type Raw = proto::skiff_client::SkiffClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

/// A typed skiffd client: every call answers with an [`Answer`].
#[derive(Clone, Debug)]
pub struct Client {
    server: String,
    raw: Raw,
}

macro_rules! calls {
    ($($(#[$doc:meta])* $name:ident($req:ty);)+) => {
        $(
            $(#[$doc])*
            pub async fn $name(&self, req: $req) -> Answer {
                let mut raw = self.raw.clone();
                self.answer(raw.$name(req).await)
            }
        )+
    };
}

impl Client {
    /// A client for `server` (`http://HOST:PORT`); no connection is made until the
    /// first call. Call it inside a tokio runtime. `token` is sent as `authorization: Bearer TOKEN`.
    pub fn new(server: &str, token: Option<&str>) -> Result<Self, Box<Envelope>> {
        Self::with_tls(server, token, None)
    }

    /// [`Client::new`] for an `https://` server: `tls` names the CA that signed the
    /// server's certificate and, for mutual TLS, this client's certificate and key.
    pub fn with_tls(server: &str, token: Option<&str>, tls: Option<&ClientTls>) -> Result<Self, Box<Envelope>> {
        let bad = |why: String| {
            Box::new(
                Envelope::failure(Code::Usage, format!("`{server}` is not a skiffd URL"))
                    .fact(why)
                    .fact("use http://HOST:PORT (the address skiffd prints when it starts)"),
            )
        };
        let mut endpoint = Endpoint::from_shared(server.to_owned()).map_err(|e| bad(e.to_string()))?;
        if let Some(t) = tls {
            let mut config = tonic::transport::ClientTlsConfig::new();
            if let Some(ca) = &t.ca_pem {
                config = config.ca_certificate(tonic::transport::Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &t.identity_pem {
                config = config.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(config).map_err(|e| bad(format!("TLS settings: {e}")))?;
        }
        let header = match token {
            Some(t) => Some(
                MetadataValue::try_from(format!("Bearer {t}"))
                    .map_err(|_| bad(format!("{TOKEN_VAR} holds characters a header cannot carry")))?,
            ),
            None => None,
        };
        let raw = proto::skiff_client::SkiffClient::with_interceptor(endpoint.connect_lazy(), Bearer(header))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Client { server: server.to_owned(), raw })
    }

    /// The generated client, for calls this wrapper does not cover.
    pub fn raw(&self) -> Raw {
        self.raw.clone()
    }

    /// The server URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn answer(&self, r: Result<tonic::Response<proto::Envelope>, tonic::Status>) -> Answer {
        match r {
            Ok(resp) => Answer::try_from(resp.into_inner()).unwrap_or_else(|e| {
                Envelope::failure(Code::Internal, format!("{} answered something this client cannot read", self.server))
                    .fact(e.to_string())
                    .into()
            }),
            Err(s) => status_envelope(&self.server, &s).into(),
        }
    }

    calls! {
        /// `skiff plan`.
        plan(proto::PlanRequest);
        /// `skiff policy check`.
        policy_check(proto::PolicyCheckRequest);
        /// `skiff deploy`: the server releases the artifact and submits the operation.
        deploy(proto::DeployRequest);
        /// `skiff rollback`.
        rollback(proto::RollbackRequest);
        /// `skiff status`.
        status(proto::ServiceRequest);
        /// `skiff reconcile`.
        reconcile(proto::ReconcileRequest);
        /// `skiff doctor`.
        doctor(proto::ServiceRequest);
        /// `skiff saga list`.
        list_sagas(proto::SagaListRequest);
        /// `skiff saga show`.
        get_operation(proto::OperationRequest);
        /// `skiff saga approve`.
        approve(proto::SagaDecisionRequest);
        /// `skiff saga reject`.
        reject(proto::SagaDecisionRequest);
        /// `skiff saga pause`.
        pause(proto::OperationRequest);
        /// `skiff saga resume`.
        resume(proto::OperationRequest);
        /// `skiff saga cancel`.
        cancel(proto::OperationRequest);
        /// `POST /v1/intents`.
        submit_intent(proto::IntentRequest);
        /// `skiff audit`.
        audit(proto::AuditRequest);
        /// `skiff logs` (one answer; a follow asks again).
        logs(proto::LogsRequest);
        /// `skiff metrics`.
        metrics(proto::ServiceRequest);
        /// `skiff release list`.
        list_releases(proto::ReleaseListRequest);
        /// `skiff release show`.
        show_release(proto::ReleaseRequest);
        /// `skiff release verify` (with the server's trusted key).
        verify_release(proto::ReleaseRequest);
        /// `skiff saga kinds`.
        saga_kinds(proto::Empty);
        /// `skiff saga start` (submitted for a worker; `dry_run` plans only).
        start_saga(proto::SagaStartRequest);
        /// `skiff state verify`.
        verify_state(proto::Empty);
        /// `skiff iam policy`.
        iam_policy(proto::IamPolicyRequest);
        /// `skiff secrets list`.
        list_secrets(proto::SecretsListRequest);
        /// `skiff database list-backups`.
        list_backups(proto::DatabaseRequest);
        /// `skiff debug collect`.
        debug_collect(proto::ServiceRequest);
    }

    /// An operation's events; with `follow`, until it ends.
    pub async fn events(&self, req: proto::EventsRequest) -> Result<tonic::Streaming<proto::Event>, Box<Envelope>> {
        let mut raw = self.raw.clone();
        raw.events(req).await.map(tonic::Response::into_inner).map_err(|s| Box::new(status_envelope(&self.server, &s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_survive_the_wire() {
        let env = Envelope::failure(Code::PolicyDenied, "denied")
            .fact("rule no-ssh-ingress")
            .data(serde_json::json!({"rule": "no-ssh-ingress", "n": 1}))
            .operation("op-1")
            .action("check", "skiff policy check", false, Safety::ReadOnly, 0.6);
        let back = Envelope::try_from(proto::Envelope::from(&env)).unwrap();
        assert_eq!(back, env);
        let answer = Answer::from(env).body("✗ rule  reason\n").body_replaces_facts();
        assert_eq!(Answer::try_from(proto::Envelope::from(&answer)).unwrap(), answer);
    }

    #[test]
    fn unknown_codes_do_not_decode() {
        let p = proto::Envelope { code: "NOPE".into(), ..Default::default() };
        assert!(Envelope::try_from(p).is_err());
    }
}
