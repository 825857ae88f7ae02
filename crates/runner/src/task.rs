//! A one-shot task of a verified release (`SKIFF_TASK`): its schema migration or the
//! migration's down, from the signed release itself, run once with the release's
//! environment and resolved secrets. Its output goes to the runner's stdout and
//! stderr (the provider that started the runner keeps it) and to the log; the
//! runner exits with the task's code — 124 when it ran past its timeout, 128+N when
//! signal N ended it. The task dies with the runner's parent, so a killed operation
//! never leaves a migration running behind its back. The member document only says
//! what is happening and is removed at the end.

use std::process::Stdio;
use std::time::Duration;

use skiff_clock::{Clock as _, SystemClock};
use skiff_state::docs::MemberHealth;
use tokio::process::Command;

use crate::Task;
use crate::logs::Log;
use crate::member::Member;
use crate::prepare::Prepared;

/// The exit code of a task that ran past its timeout (as `timeout(1)` uses).
pub(crate) const TIMED_OUT: u8 = 124;

pub(crate) async fn run(task: Task, p: Prepared, member: &Member, log: &Log) -> u8 {
    let Some(m) = &p.migration else {
        log.runner("the release has no `database.migrations`: nothing to run");
        return crate::exit::SETUP;
    };
    let (command, what) = match task {
        Task::Migrate => (m.command.clone(), "migration"),
        Task::MigrateDown => match &m.down {
            Some(d) => (d.clone(), "migration's down"),
            None => {
                log.runner("the release's migration has no `down`: it cannot be undone");
                return crate::exit::SETUP;
            }
        },
    };
    let Some((program, args)) = command.split_first() else { return crate::exit::SETUP };
    let _ = member.set(MemberHealth::Starting, |d| d.phase = format!("running the {what}")).await;
    log.runner(&format!("running the {what}: {}", command.join(" ")));
    let spawned = Command::new(program)
        .args(args)
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&p.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            log.runner(&format!("cannot start the {what}: {e}"));
            return crate::exit::SETUP;
        }
    };
    let parent = std::os::unix::process::parent_id();
    let orphaned = async {
        while std::os::unix::process::parent_id() == parent {
            SystemClock.sleep(Duration::from_millis(200)).await;
        }
    };
    let timeout = Duration::from_millis(m.timeout.as_millis());
    let code = tokio::select! {
        status = child.wait() => match status {
            Ok(s) => s.code().and_then(|c| u8::try_from(c).ok()).unwrap_or_else(|| {
                128u8.saturating_add(std::os::unix::process::ExitStatusExt::signal(&s).and_then(|n| u8::try_from(n).ok()).unwrap_or(0))
            }),
            Err(_) => crate::exit::SETUP,
        },
        () = SystemClock.sleep(timeout) => {
            log.runner(&format!("the {what} ran past its timeout of {} s and was killed", timeout.as_secs()));
            let _ = child.kill().await;
            TIMED_OUT
        }
        () = orphaned => {
            log.runner(&format!("the operation that started the {what} is gone: killing it"));
            let _ = child.kill().await;
            let _ = member.remove().await;
            return 128 + 9;
        }
    };
    log.runner(&format!("the {what} exited with {code}"));
    let _ = member.remove().await;
    code
}
