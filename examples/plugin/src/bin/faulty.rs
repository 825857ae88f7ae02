//! `skiff-plugin-faulty`: a plugin that misbehaves on purpose, for Skiff's
//! failure-isolation tests. It speaks the raw protocol (no SDK), plans its one step
//! kind `faulty.step` normally, and then, as `--fault` says, on `run`:
//!
//! - `hang`: never answers;
//! - `crash`: aborts the process mid-call;
//! - `garbage`: answers with text that is not a step result;
//! - `handshake`: prints a line that is not a handshake and waits.

use std::io::Write;
use std::process::ExitCode;

use skiff_plugin::proto::plugin_server::{Plugin, PluginServer};
use skiff_plugin::proto::{
    AddonCall, CheckCall, DescribeRequest, Description, RecipeCall, Reply, StepCall, reply::Answer,
};
use skiff_sagaapi::{Risk, Safety, StepPlan};
use tonic::{Request, Response, Status};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    Hang,
    Crash,
    Garbage,
    Handshake,
}

struct Faulty(Fault);

#[tonic::async_trait]
impl Plugin for Faulty {
    async fn describe(&self, _: Request<DescribeRequest>) -> Result<Response<Description>, Status> {
        Ok(Response::new(Description {
            name: "faulty".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol: skiff_plugin::PROTOCOL,
            steps: vec!["faulty.step".to_owned()],
            checks: Vec::new(),
            addons: Vec::new(),
            recipes: Vec::new(),
        }))
    }

    async fn plan_step(&self, _: Request<StepCall>) -> Result<Response<Reply>, Status> {
        let plan = StepPlan {
            description: "misbehave on purpose".to_owned(),
            safety: Safety::Reversible,
            risk: Risk::Low,
            expected_duration_ms: 10,
            affected_resources: Vec::new(),
        };
        Ok(Response::new(skiff_plugin::wire::ok(&plan)))
    }

    async fn run_step(&self, _: Request<StepCall>) -> Result<Response<Reply>, Status> {
        match self.0 {
            Fault::Crash => std::process::abort(),
            Fault::Garbage => {
                Ok(Response::new(Reply { answer: Some(Answer::OkJson("<html>surprise</html>".to_owned())) }))
            }
            Fault::Hang | Fault::Handshake => std::future::pending().await,
        }
    }

    async fn resume_step(&self, r: Request<StepCall>) -> Result<Response<Reply>, Status> {
        self.run_step(r).await
    }

    async fn compensate_step(&self, _: Request<StepCall>) -> Result<Response<Reply>, Status> {
        Ok(Response::new(skiff_plugin::wire::ok(&skiff_sagaapi::StepResult::new("nothing to undo", ()))))
    }

    async fn doctor_step(&self, _: Request<StepCall>) -> Result<Response<Reply>, Status> {
        Ok(Response::new(skiff_plugin::wire::ok(&Vec::<skiff_sagaapi::Finding>::new())))
    }

    async fn check(&self, _: Request<CheckCall>) -> Result<Response<Reply>, Status> {
        Err(Status::unimplemented("faulty has no checks"))
    }

    async fn addon(&self, _: Request<AddonCall>) -> Result<Response<Reply>, Status> {
        Err(Status::unimplemented("faulty has no addons"))
    }

    async fn recipe(&self, _: Request<RecipeCall>) -> Result<Response<Reply>, Status> {
        Err(Status::unimplemented("faulty has no recipes"))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let fault = match args.iter().position(|a| a == "--fault").and_then(|i| args.get(i + 1)).map(String::as_str) {
        Some("hang") => Fault::Hang,
        Some("crash") => Fault::Crash,
        Some("garbage") => Fault::Garbage,
        Some("handshake") => Fault::Handshake,
        _ => {
            let _ = writeln!(std::io::stderr(), "usage: skiff-plugin-faulty --fault hang|crash|garbage|handshake");
            return ExitCode::from(2);
        }
    };
    let Some(socket) = std::env::var_os(skiff_plugin::SOCKET_VAR) else { return ExitCode::from(2) };
    let mut out = std::io::stdout();
    if fault == Fault::Handshake {
        let _ = writeln!(out, "hello, I am definitely a plugin");
        let _ = out.flush();
        std::future::pending::<()>().await;
    }
    let Ok(listener) = tokio::net::UnixListener::bind(&socket) else { return ExitCode::from(1) };
    let _ = writeln!(out, "{}", skiff_plugin::handshake::line(&socket.to_string_lossy()));
    let _ = out.flush();
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let served = tonic::transport::Server::builder()
        .add_service(PluginServer::new(Faulty(fault)))
        .serve_with_incoming(incoming)
        .await;
    if served.is_err() { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
