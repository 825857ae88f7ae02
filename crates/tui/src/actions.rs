//! The cockpit's actions: each is exactly a CLI command (shown before it runs, with its
//! safety class) and the typed request that command makes.

use skiff_ops::{Request, RollbackRequest, SagaRequest};
use skiff_sdk::Safety;

/// Something the cockpit can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Approve the operation's gate.
    Approve(String),
    /// Reject the operation.
    Reject(String),
    /// Pause the operation.
    Pause(String),
    /// Resume the operation.
    Resume(String),
    /// Cancel the operation.
    Cancel(String),
    /// Roll the service back (to a release, or its previous stable one).
    Rollback(String, Option<String>),
    /// Reconcile the service.
    Reconcile(String),
    /// Repair the service's drift.
    Repair(String),
    /// Repair the service's incident.
    Incident(String),
}

impl Action {
    /// The exact command it runs.
    pub fn command(&self) -> String {
        match self {
            Action::Approve(op) => format!("skiff saga approve {op} --yes"),
            Action::Reject(op) => format!("skiff saga reject {op} --yes"),
            Action::Pause(op) => format!("skiff saga pause {op} --yes"),
            Action::Resume(op) => format!("skiff saga resume {op} --yes"),
            Action::Cancel(op) => format!("skiff saga cancel {op} --yes"),
            Action::Rollback(s, None) => format!("skiff rollback {s} --yes"),
            Action::Rollback(s, Some(r)) => format!("skiff rollback {s} --to {r} --yes"),
            Action::Reconcile(s) => format!("skiff reconcile {s}"),
            Action::Repair(s) => format!("skiff reconcile {s} --repair --yes"),
            Action::Incident(s) => format!("skiff repair incident {s} --yes"),
        }
    }

    /// How reversible it is: an approval lets an irreversible step run.
    pub fn safety(&self) -> Safety {
        match self {
            Action::Approve(_) => Safety::Irreversible,
            Action::Reconcile(_) => Safety::ReadOnly,
            _ => Safety::Reversible,
        }
    }

    /// Whether it changes anything (refused in `--readonly`). A reconcile records its
    /// verdict, so it counts.
    pub fn mutating(&self) -> bool {
        true
    }

    /// What must be typed to confirm it: the operation id, for approvals and rejections.
    pub fn typed_confirmation(&self) -> Option<&str> {
        match self {
            Action::Approve(op) | Action::Reject(op) => Some(op),
            _ => None,
        }
    }

    /// The request the command makes.
    pub fn request(&self) -> Request {
        match self.clone() {
            Action::Approve(op) => Request::Saga(SagaRequest::Approve { op, step: None }),
            Action::Reject(op) => Request::Saga(SagaRequest::Reject { op, reason: "rejected in skiff tui".to_owned() }),
            Action::Pause(op) => Request::Saga(SagaRequest::Pause { op }),
            Action::Resume(op) => Request::Saga(SagaRequest::Resume { op }),
            Action::Cancel(op) => Request::Saga(SagaRequest::Cancel { op }),
            Action::Rollback(service, to) => {
                Request::Rollback(RollbackRequest { service, to: to.unwrap_or_else(|| "previous-stable".to_owned()) })
            }
            Action::Reconcile(s) => Request::Reconcile { service: Some(s) },
            Action::Repair(service) => Request::Repair { service },
            Action::Incident(service) => Request::Incident { service, dry_run: false },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_a_cli_command_that_parses_to_its_request() {
        let all = [
            Action::Approve("op-1".into()),
            Action::Reject("op-1".into()),
            Action::Pause("op-1".into()),
            Action::Resume("op-1".into()),
            Action::Cancel("op-1".into()),
            Action::Rollback("web".into(), None),
            Action::Rollback("web".into(), Some("2026.12.01.1".into())),
            Action::Reconcile("web".into()),
            Action::Repair("web".into()),
            Action::Incident("web".into()),
        ];
        for a in all {
            assert!(a.command().starts_with("skiff "), "{a:?}");
            assert!(a.mutating());
            let _ = a.request();
        }
        assert_eq!(Action::Approve("op-1".into()).typed_confirmation(), Some("op-1"));
        assert_eq!(Action::Approve("op-1".into()).safety(), Safety::Irreversible);
    }
}
