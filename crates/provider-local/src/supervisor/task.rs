//! One-shot tasks (`POST /v1/tasks`): a `skiff-runner` with `SKIFF_TASK`, launched
//! like an instance of the release's group but outside it, in its own process group.
//! The request waits for it and answers its exit code and the end of its output. The
//! whole process group is killed when the task runs past its time, when the request
//! is dropped, and when the process that asked for it exits — so a killed operation
//! never leaves a migration running that a resumed one would start again.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use skiff_clock::{Clock as _, SystemClock};
use skiff_pluginapi::{TaskOutcome, TaskSpec};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Mutex;

use super::{Shared, alive};

/// The most output a task's answer carries (its end).
const OUTPUT_MAX: usize = 16 * 1024;
/// Time a task gets beyond its own timeout before the supervisor kills it.
const GRACE: Duration = Duration::from_secs(30);

/// Kills a process group when dropped, unless it ended by itself.
struct Group {
    pgid: i32,
    done: bool,
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.done {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        }
    }
}

/// Keeps the last [`OUTPUT_MAX`] bytes.
fn push(buf: &mut String, line: &str) {
    buf.push_str(line);
    buf.push('\n');
    if buf.len() > OUTPUT_MAX {
        let mut cut = buf.len() - OUTPUT_MAX;
        while !buf.is_char_boundary(cut) {
            cut += 1;
        }
        buf.drain(..cut);
    }
}

impl Shared {
    /// Runs `t` to its end (see the module doc); `owner` is the asking process.
    pub(crate) async fn run_task(&self, t: &TaskSpec, owner: Option<u32>) -> std::io::Result<TaskOutcome> {
        let id = format!("task-{}", t.id);
        let dir = self.config.dir.instance(&t.group.service, &t.group.name, &id);
        std::fs::create_dir_all(&dir)?;
        let mut cmd = self.runner_command(&t.group, &id, 0, &dir);
        cmd.env("SKIFF_TASK", &t.task)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let started = SystemClock.now_ms();
        let mut child = cmd.spawn()?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or_default();
        let mut group = Group { pgid: pid, done: false };
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&output);
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    push(&mut *output.lock().await, &line);
                }
            }));
        }
        let owner_gone = async {
            loop {
                SystemClock.sleep(Duration::from_millis(300)).await;
                if owner.is_some_and(|o| !alive(o)) {
                    return;
                }
            }
        };
        let limit = Duration::from_millis(t.timeout_ms) + GRACE;
        let exit_code = tokio::select! {
            status = child.wait() => {
                let status = status?;
                group.done = true;
                status.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0))
            }
            () = SystemClock.sleep(limit) => {
                push(&mut *output.lock().await, &format!("skiff: the task ran past {} s and was killed", limit.as_secs()));
                124
            }
            () = owner_gone => {
                return Err(std::io::Error::other("the operation that asked for the task is gone; it was killed"));
            }
        };
        drop(group);
        for r in readers {
            let _ = skiff_clock::timeout(&SystemClock, Duration::from_secs(5), r).await;
        }
        let output = output.lock().await.clone();
        Ok(TaskOutcome { exit_code, output, duration_ms: SystemClock.now_ms().saturating_sub(started) })
    }
}

#[cfg(test)]
mod tests {
    use super::{OUTPUT_MAX, push};

    #[test]
    fn output_keeps_its_end() {
        let mut buf = String::new();
        for i in 0..5_000 {
            push(&mut buf, &format!("line {i}"));
        }
        assert!(buf.len() <= OUTPUT_MAX);
        assert!(buf.ends_with("line 4999\n"));
    }
}
