//! The closed failure taxonomy: every command answers with exactly one [`Code`], and
//! each code has a fixed process exit code, a meaning, and what to do about it.

use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($($variant:ident = $exit:literal, $name:literal, $meaning:literal, $fix:literal, [$($by:literal),+];)+) => {
        /// One class of outcome. The set is closed: a new class is a new schema version.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        #[non_exhaustive]
        pub enum Code {
            $(
                #[doc = $meaning]
                $variant,
            )+
        }

        impl Code {
            /// Every code, in exit-code order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];

            /// The process exit code for this class.
            pub const fn exit_code(self) -> u8 {
                match self { $(Code::$variant => $exit),+ }
            }

            /// The name as it appears in JSON, e.g. `SPEC_INVALID`.
            pub const fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $name),+ }
            }

            /// What the code means.
            pub const fn meaning(self) -> &'static str {
                match self { $(Code::$variant => $meaning),+ }
            }

            /// What to do about it.
            pub const fn fix(self) -> &'static str {
                match self { $(Code::$variant => $fix),+ }
            }

            /// The commands that can answer with it (`every command`, or command
            /// prefixes such as `skiff release verify`). The CLI contract test checks
            /// every answer it provokes against this list.
            pub const fn returned_by(self) -> &'static [&'static str] {
                match self { $(Code::$variant => &[$($by),+]),+ }
            }
        }
    };
}

codes! {
    Ok = 0, "OK", "The command did what was asked.", "Nothing to do.", ["every command"];
    Internal = 1, "INTERNAL", "Skiff hit a bug it did not expect.", "Re-run with `--format json` and report the output; nothing was changed unless the output says so.", ["every command"];
    Usage = 2, "USAGE", "The command line was not understood.", "Read `skiff <command> --help` for the flags and examples.", ["every command", "skiff --server", "skiff terraform apply"];
    SpecInvalid = 3, "SPEC_INVALID", "The service spec (skiff.yaml) is invalid.", "Fix the field named at file:line:column as the message says, then run `skiff validate` again.", ["skiff validate", "skiff plan", "skiff deploy", "skiff policy check", "skiff cost explain", "skiff release create", "skiff rollback", "skiff reconcile", "POST /v1/intents", "skiff import kube", "skiff terraform generate", "skiff adopt terraform", "skiff terraform apply", "skiff plugin", "skiff init plugin"];
    NotFound = 4, "NOT_FOUND", "A file, service, release, operation or context does not exist.", "Check the name; list what exists (`skiff status`, `skiff release list`, `skiff saga list`, `skiff config get-contexts`).", ["skiff validate", "skiff plan", "skiff deploy", "skiff rollback", "skiff status", "skiff reconcile", "skiff logs", "skiff metrics", "skiff doctor", "skiff events", "skiff saga", "skiff release", "skiff local status", "skiff config use-context", "skiff secrets", "skiff policy check", "skiff cost explain", "skiff database", "skiff restore", "skiff rotate", "skiff debug collect", "skiff repair incident", "skiff import kube", "skiff terraform generate", "skiff adopt terraform", "skiff terraform apply", "skiff terraform drift", "skiff failover", "skiff plugin"];
    AlreadyExists = 5, "ALREADY_EXISTS", "The thing to create is already there.", "Use the existing one, pick another name, or pass `--force` where the command offers it.", ["skiff init", "skiff keys generate", "skiff saga start", "POST /v1/intents", "skiff import kube", "skiff terraform generate", "skiff plugin install"];
    Conflict = 6, "CONFLICT", "Another writer changed the same document first; retries ran out.", "Run the command again: it re-reads the latest state. Persistent conflicts mean a busy writer; check `skiff saga list`.", ["skiff deploy", "skiff rollback", "skiff reconcile", "skiff saga", "skiff state init", "skiff release create"];
    LeaseHeld = 7, "LEASE_HELD", "Another operation holds the lease on this scope.", "Wait for it (`skiff saga show OP`), or cancel it (`skiff saga cancel OP`) if it is stuck.", ["skiff deploy", "skiff rollback", "skiff reconcile", "skiff saga start", "skiff repair incident", "skiff failover"];
    PolicyDenied = 8, "POLICY_DENIED", "A guardrail rejected the plan before anything changed.", "Change the spec as the rule's fix says, or ask an approver; `skiff policy check` explains each rule.", ["skiff deploy", "skiff rollback", "skiff reconcile", "skiff policy check", "POST /v1/intents", "skiff terraform apply", "skiff failover", "skiff release promote"];
    ApprovalRequired = 9, "APPROVAL_REQUIRED", "The operation waits for an approver.", "An approver runs `skiff saga approve OP` (or `reject`).", ["skiff deploy", "skiff database retire", "skiff restore", "skiff rotate", "skiff saga start", "skiff saga approve", "skiff saga resume", "skiff terraform apply", "skiff failover"];
    ConfirmationRequired = 10, "CONFIRMATION_REQUIRED", "A mutating command ran without a terminal to confirm on.", "Re-run with `--yes` once you have read the plan (`--dry-run` shows it).", ["skiff deploy", "skiff rollback", "skiff reconcile", "skiff release create", "skiff saga start", "skiff saga approve", "skiff saga reject", "skiff saga pause", "skiff saga resume", "skiff saga cancel", "skiff state init", "skiff secrets set", "skiff secrets delete", "skiff local down", "skiff database backup", "skiff database retire", "skiff restore", "skiff rotate", "skiff repair incident", "skiff failover"];
    CanaryFailed = 11, "CANARY_FAILED", "The new release failed canary analysis and was rolled back to stable.", "Read the facts (error rate, latency, health), fix the release, and deploy again.", ["skiff deploy", "skiff saga resume", "skiff saga show", "skiff saga start traffic-cutover"];
    AnalysisInconclusive = 12, "ANALYSIS_INCONCLUSIVE", "Too few requests reached the canary to judge it; the rollout paused.", "Send traffic and `skiff saga resume OP`, or `skiff rollback SERVICE`.", ["skiff deploy", "skiff saga resume"];
    DeadlineExceeded = 13, "DEADLINE_EXCEEDED", "A step missed its deadline; the operation was rolled back.", "Find the slow step in `skiff saga events OP`; raise `rollout.step_timeout` only if the step is healthy but slow.", ["skiff deploy", "skiff rollback", "skiff saga start", "skiff saga resume"];
    OperationFailed = 14, "OPERATION_FAILED", "An operation failed and was compensated (or could not be).", "Read `skiff saga show OP` for the failing step and its error; `skiff doctor` suggests repairs.", ["skiff deploy", "skiff rollback", "skiff reconcile", "skiff saga start", "skiff saga approve", "skiff saga resume", "skiff doctor", "skiff database backup", "skiff database retire", "skiff restore", "skiff rotate", "skiff repair incident", "skiff failover"];
    Cancelled = 15, "CANCELLED", "The operation was cancelled.", "Start it again when ready.", ["skiff saga cancel", "every mutating command not confirmed at its prompt"];
    SignatureInvalid = 16, "SIGNATURE_INVALID", "A release signature is missing or does not verify.", "Re-create the release with the right key (`skiff release create`); check `skiff keys` and the trusted public key.", ["skiff deploy", "skiff rollback", "skiff release create", "skiff release verify", "skiff release promote", "skiff doctor"];
    DigestMismatch = 17, "DIGEST_MISMATCH", "An artifact or blob does not match its recorded sha256.", "Treat it as tampering or corruption: re-create the release from a clean build.", ["skiff deploy", "skiff rollback", "skiff release verify", "skiff release promote", "skiff secrets", "skiff plugin"];
    StateUnavailable = 18, "STATE_UNAVAILABLE", "The state bucket cannot be reached or written.", "Check the bucket URL (`skiff config show`), credentials and network; `skiff doctor` tests access.", ["every command that reads the state bucket", "skiff --server"];
    StateCorrupt = 19, "STATE_CORRUPT", "The state bucket holds documents that fail verification.", "Run `skiff state verify` for the findings; restore the named objects from bucket versioning.", ["skiff state verify", "every command that reads the state bucket"];
    ProviderError = 20, "PROVIDER_ERROR", "The cloud or local provider refused or failed a call.", "Read the provider's message in the facts; fix credentials, quotas or the resource, then resume.", ["skiff deploy", "skiff rollback", "skiff status", "skiff logs", "skiff metrics", "skiff reconcile", "skiff doctor", "skiff local", "skiff secrets", "skiff state init", "skiff iam policy", "skiff database backup", "skiff database retire", "skiff restore", "skiff rotate", "skiff debug collect", "skiff repair incident", "skiff terraform apply", "skiff terraform drift", "skiff failover"];
    Unauthenticated = 21, "UNAUTHENTICATED", "The server needs a valid token.", "Set `SKIFF_TOKEN` (or the context's token) to a token issued for you.", ["skiff --server"];
    PermissionDenied = 22, "PERMISSION_DENIED", "Your role may not do this.", "Ask for the operator or approver role, or have someone with it run the command.", ["skiff --server"];
    ConfigInvalid = 23, "CONFIG_INVALID", "The client configuration (contexts file) is invalid.", "Fix the file at the line named, or recreate the context with `skiff config set-context`.", ["every command", "skiff config"];
    Drifted = 24, "DRIFTED", "Actual state differs from desired state.", "Read the differences; repair with the recommended `repair` saga or re-deploy.", ["skiff reconcile", "skiff doctor", "skiff terraform drift"];
    Unhealthy = 25, "UNHEALTHY", "The service or its instances are unhealthy.", "Read the findings of `skiff doctor SERVICE` and follow their recommended actions.", ["skiff doctor", "skiff repair incident"];
    IoError = 26, "IO_ERROR", "A local file could not be read or written.", "Check the path, permissions and free disk space named in the facts.", ["skiff init", "skiff keys generate", "skiff deploy", "skiff release create", "skiff local", "skiff secrets", "skiff debug collect", "skiff import kube", "skiff terraform generate", "skiff adopt terraform", "skiff terraform apply"];
    RateLimited = 27, "RATE_LIMITED", "The server is shedding load: this token sent too many requests, or too many operations are being submitted.", "Wait the `Retry-After` seconds and retry; spread requests out or ask for a higher `--rate-limit`.", ["skiff --server", "every skiffd route"];
    PluginFailed = 28, "PLUGIN_FAILED", "A plugin crashed, answered something that is not an answer, or failed its handshake; the step it served failed (the engine did not).", "Read the plugin's last stderr lines in the facts; `skiff plugin validate NAME` starts it alone. Fix or reinstall the plugin, then `skiff saga resume OP`.", ["skiff deploy", "skiff saga start", "skiff saga resume", "skiff doctor", "skiff plugin validate", "skiff plugin install", "skiff init plugin"];
}

impl std::str::FromStr for Code {
    type Err = String;
    /// Parses a code name such as `SPEC_INVALID`.
    fn from_str(s: &str) -> Result<Self, String> {
        Code::ALL.iter().copied().find(|c| c.as_str() == s).ok_or_else(|| format!("unknown failure code `{s}`"))
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The taxonomy as a markdown table: code, exit code, meaning, what to do.
pub fn markdown_table() -> String {
    let mut out = String::from("| code | exit | meaning | what to do |\n|---|---|---|---|\n");
    for c in Code::ALL {
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", c.as_str(), c.exit_code(), c.meaning(), c.fix()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_unique_and_json_names_match() {
        let mut seen = std::collections::BTreeSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.exit_code()), "duplicate exit code {}", c.exit_code());
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(c.as_str()));
        }
        assert_eq!(Code::Ok.exit_code(), 0);
    }
}
