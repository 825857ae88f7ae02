//! The cockpit's state and its keyboard: what each pane shows (data stamped with when
//! it was fetched, or why it could not be), what is selected, which modal is open,
//! and what a key does. Keys never wait on the network: they change state and return
//! [`Effect`]s the run loop carries out off the render path.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use skiff_sdk::{Envelope, Safety};

use crate::actions::Action;
use crate::api::{EventRow, FindingRow, LogRow, OpDetail, OpRow, Sample, ServiceRow};

/// The panes, in tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pane {
    /// Services: release, health, latency, errors, CPU, operation, reconcile verdict.
    Services,
    /// Operations and the selected one's steps and gate.
    Operations,
    /// The selected operation's events, live.
    Events,
    /// The selected service's logs, followed.
    Logs,
    /// The selected service's traffic over time.
    Metrics,
    /// Doctor's findings and their actions.
    Doctor,
}

impl Pane {
    /// Every pane, in tab order.
    pub const ALL: [Pane; 6] =
        [Pane::Services, Pane::Operations, Pane::Events, Pane::Logs, Pane::Metrics, Pane::Doctor];

    /// Its tab title.
    pub fn title(self) -> &'static str {
        match self {
            Pane::Services => "Services",
            Pane::Operations => "Operations",
            Pane::Events => "Events",
            Pane::Logs => "Logs",
            Pane::Metrics => "Metrics",
            Pane::Doctor => "Doctor",
        }
    }
}

/// Data and when it was fetched; the last error if the newest fetch failed.
#[derive(Clone, Debug)]
pub struct Stamped<T> {
    /// The newest data that arrived.
    pub value: T,
    /// When it arrived.
    pub at: Option<Instant>,
    /// Why the newest fetch failed, if it did.
    pub error: Option<String>,
}

impl<T: Default> Default for Stamped<T> {
    fn default() -> Self {
        Stamped { value: T::default(), at: None, error: None }
    }
}

impl<T> Stamped<T> {
    /// Replaces the value.
    pub fn set(&mut self, value: T, now: Instant) {
        self.value = value;
        self.at = Some(now);
        self.error = None;
    }

    /// Records a failed fetch; the value stays (and is shown as stale).
    pub fn fail(&mut self, why: String) {
        self.error = Some(why);
    }
}

/// What arrived from the fetcher or an action.
#[derive(Clone, Debug)]
pub enum Update {
    /// `skiff status`.
    Services(Result<Vec<ServiceRow>, String>),
    /// `skiff saga list`.
    Operations(Result<Vec<OpRow>, String>),
    /// `skiff saga show` of the selected operation.
    Detail(Result<Option<OpDetail>, String>),
    /// New events of the selected operation.
    Events(String, Result<Vec<EventRow>, String>),
    /// New log lines of the selected service.
    Logs(String, Result<Vec<LogRow>, String>),
    /// A traffic sample of the selected service.
    Metrics(String, Result<Sample, String>),
    /// `skiff doctor`.
    Doctor(Result<Vec<FindingRow>, String>),
    /// An action's answer.
    Done(Action, Envelope),
}

/// What the run loop does for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Leave.
    Quit,
    /// Run a confirmed action.
    Run(Action),
    /// Fetch now.
    Refresh,
}

/// An open modal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Modal {
    /// Every key.
    Help,
    /// An action waiting for confirmation: its command and safety are shown; `typed`
    /// must equal `expect` (the operation id) when one is asked for.
    Confirm { action: Action, expect: Option<String>, typed: String },
    /// An action running.
    Running(Action),
    /// An action's answer: its summary and facts.
    Result { action: Action, ok: bool, code: String, summary: String, facts: Vec<String> },
    /// Typing a log filter.
    Filter(String),
    /// A refusal (read-only, nothing selected).
    Notice(String),
}

/// How many log lines and events are kept.
const KEEP: usize = 2_000;
/// Traffic samples kept per service (one a second).
const SAMPLES: usize = 120;
/// Data older than this is marked stale.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// Everything on screen.
#[derive(Clone, Debug)]
pub struct App {
    /// Where data comes from.
    pub target: String,
    /// Mutating actions hidden and refused.
    pub readonly: bool,
    /// The pane shown.
    pub pane: Pane,
    /// Services.
    pub services: Stamped<Vec<ServiceRow>>,
    /// Operations, newest first.
    pub operations: Stamped<Vec<OpRow>>,
    /// The selected operation.
    pub detail: Stamped<Option<OpDetail>>,
    /// Its events.
    pub events: VecDeque<EventRow>,
    /// The selected service's logs.
    pub logs: VecDeque<LogRow>,
    /// Traffic samples per service.
    pub samples: BTreeMap<String, VecDeque<Sample>>,
    /// Findings.
    pub doctor: Stamped<Vec<FindingRow>>,
    /// Selected service row.
    pub service_row: usize,
    /// Selected operation row.
    pub op_row: usize,
    /// Selected finding row.
    pub finding_row: usize,
    /// Keep the newest log lines in view.
    pub follow: bool,
    /// Only log lines containing this.
    pub filter: String,
    /// The open modal.
    pub modal: Option<Modal>,
    /// The last action's one-line outcome.
    pub last: Option<String>,
}

impl App {
    /// An empty cockpit over `target`.
    pub fn new(target: String, readonly: bool) -> Self {
        App {
            target,
            readonly,
            pane: Pane::Services,
            services: Stamped::default(),
            operations: Stamped::default(),
            detail: Stamped::default(),
            events: VecDeque::new(),
            logs: VecDeque::new(),
            samples: BTreeMap::new(),
            doctor: Stamped::default(),
            service_row: 0,
            op_row: 0,
            finding_row: 0,
            follow: true,
            filter: String::new(),
            modal: None,
            last: None,
        }
    }

    /// The selected service's name.
    pub fn service(&self) -> Option<&str> {
        self.services.value.get(self.service_row).map(|s| s.service.as_str())
    }

    /// The selected operation's id.
    pub fn operation(&self) -> Option<&str> {
        self.operations.value.get(self.op_row).map(|o| o.op_id.as_str())
    }

    /// Applies what arrived.
    pub fn apply(&mut self, update: Update, now: Instant) {
        match update {
            Update::Services(r) => match r {
                Ok(v) => {
                    self.services.set(v, now);
                    self.service_row = self.service_row.min(self.services.value.len().saturating_sub(1));
                }
                Err(e) => self.services.fail(e),
            },
            Update::Operations(r) => match r {
                Ok(v) => {
                    // Keep the same operation selected as the list moves.
                    let selected = self.operation().map(str::to_owned);
                    self.operations.set(v, now);
                    self.op_row = selected
                        .and_then(|s| self.operations.value.iter().position(|o| o.op_id == s))
                        .unwrap_or_else(|| self.op_row.min(self.operations.value.len().saturating_sub(1)));
                }
                Err(e) => self.operations.fail(e),
            },
            Update::Detail(r) => match r {
                Ok(v) => {
                    if v.as_ref().map(|d| d.op_id.as_str()) != self.detail.value.as_ref().map(|d| d.op_id.as_str()) {
                        self.events.clear();
                    }
                    self.detail.set(v, now);
                }
                Err(e) => self.detail.fail(e),
            },
            Update::Events(op, Ok(new)) if Some(op.as_str()) == self.operation() => {
                let last = self.events.back().map_or(0, |e| e.seq);
                self.events.extend(new.into_iter().filter(|e| e.seq > last));
                trim(&mut self.events);
            }
            Update::Logs(svc, Ok(new)) if Some(svc.as_str()) == self.service() => {
                let last = self.logs.back().map_or(0, |l| l.at_ms);
                self.logs.extend(new.into_iter().filter(|l| l.at_ms > last));
                trim(&mut self.logs);
            }
            Update::Metrics(svc, Ok(sample)) => {
                let s = self.samples.entry(svc).or_default();
                s.push_back(sample);
                while s.len() > SAMPLES {
                    s.pop_front();
                }
            }
            Update::Doctor(r) => match r {
                Ok(v) => self.doctor.set(v, now),
                Err(e) => self.doctor.fail(e),
            },
            Update::Done(action, env) => {
                self.last = Some(format!("{}: {} {}", action.command(), env.code.as_str(), env.summary));
                self.modal = Some(Modal::Result {
                    ok: env.ok,
                    code: env.code.as_str().to_owned(),
                    summary: env.summary.clone(),
                    facts: env.facts.clone(),
                    action,
                });
            }
            Update::Events(..) | Update::Logs(..) | Update::Metrics(..) => {}
        }
    }

    /// Whether the data of the shown pane is older than [`STALE_AFTER`] or failed.
    pub fn staleness(&self, now: Instant) -> Option<String> {
        let (at, error) = match self.pane {
            Pane::Services | Pane::Logs | Pane::Metrics => (self.services.at, &self.services.error),
            Pane::Operations | Pane::Events => (self.operations.at, &self.operations.error),
            Pane::Doctor => (self.doctor.at, &self.doctor.error),
        };
        match (at, error) {
            (None, Some(e)) => Some(format!("no data: {e}")),
            (None, None) => Some("loading…".to_owned()),
            (Some(t), Some(e)) => Some(format!("stale {}s: {e}", now.duration_since(t).as_secs())),
            (Some(t), None) if now.duration_since(t) > STALE_AFTER => {
                Some(format!("stale {}s", now.duration_since(t).as_secs()))
            }
            _ => None,
        }
    }

    fn move_selection(&mut self, down: bool) {
        let step = |i: usize, len: usize| {
            if len == 0 {
                0
            } else if down {
                (i + 1).min(len - 1)
            } else {
                i.saturating_sub(1)
            }
        };
        match self.pane {
            Pane::Services | Pane::Logs | Pane::Metrics => {
                let before = self.service_row;
                self.service_row = step(self.service_row, self.services.value.len());
                if before != self.service_row {
                    self.logs.clear();
                }
            }
            Pane::Operations | Pane::Events => {
                let before = self.op_row;
                self.op_row = step(self.op_row, self.operations.value.len());
                if before != self.op_row {
                    self.events.clear();
                }
            }
            Pane::Doctor => self.finding_row = step(self.finding_row, self.doctor.value.len()),
        }
    }

    /// Asks to confirm `action` (refused when read-only).
    fn propose(&mut self, action: Option<Action>) {
        let Some(action) = action else {
            self.modal = Some(Modal::Notice("select a service or an operation first".to_owned()));
            return;
        };
        if self.readonly && action.mutating() {
            self.modal = Some(Modal::Notice(format!("read-only: `{}` is refused", action.command())));
            return;
        }
        let expect = action.typed_confirmation().map(str::to_owned);
        self.modal = Some(Modal::Confirm { action, expect, typed: String::new() });
    }

    /// What a key does.
    pub fn key(&mut self, key: Key) -> Vec<Effect> {
        if let Some(modal) = self.modal.take() {
            return self.modal_key(modal, key);
        }
        let op = self.operation().map(str::to_owned);
        let svc = self.service().map(str::to_owned);
        match key {
            Key::Char('q') | Key::Ctrl('c') => return vec![Effect::Quit],
            Key::Char('?') => self.modal = Some(Modal::Help),
            Key::Tab | Key::Right => self.pane = next(self.pane, 1),
            Key::BackTab | Key::Left => self.pane = next(self.pane, Pane::ALL.len() - 1),
            Key::Char(c @ '1'..='6') => self.pane = Pane::ALL[(c as usize) - ('1' as usize)],
            Key::Down | Key::Char('j') => self.move_selection(true),
            Key::Up | Key::Char('k') => self.move_selection(false),
            Key::Enter => {
                self.pane = match self.pane {
                    Pane::Services => Pane::Logs,
                    Pane::Operations => Pane::Events,
                    other => other,
                };
            }
            Key::Char('r') => return vec![Effect::Refresh],
            Key::Char('f') => self.follow = !self.follow,
            Key::Char('/') => self.modal = Some(Modal::Filter(self.filter.clone())),
            Key::Char('a') => self.propose(op.map(Action::Approve)),
            Key::Char('x') => self.propose(op.map(Action::Reject)),
            Key::Char('p') => self.propose(op.map(Action::Pause)),
            Key::Char('u') => self.propose(op.map(Action::Resume)),
            Key::Char('c') => self.propose(op.map(Action::Cancel)),
            Key::Char('b') => self.propose(svc.map(|s| Action::Rollback(s, None))),
            Key::Char('d') => self.propose(svc.and_then(|s| {
                let stable = self.services.value.get(self.service_row).map(|r| r.release.clone());
                stable.map(|r| Action::Rollback(s, Some(r)))
            })),
            Key::Char('R') => self.propose(svc.map(Action::Reconcile)),
            Key::Char('F') => self.propose(svc.map(Action::Repair)),
            Key::Char('I') => self.propose(svc.map(Action::Incident)),
            _ => {}
        }
        Vec::new()
    }

    fn modal_key(&mut self, modal: Modal, key: Key) -> Vec<Effect> {
        match modal {
            Modal::Confirm { action, expect, mut typed } => match key {
                Key::Esc => {}
                Key::Enter if expect.as_deref().is_none_or(|e| e == typed) => {
                    self.modal = Some(Modal::Running(action.clone()));
                    return vec![Effect::Run(action)];
                }
                Key::Char('y') if expect.is_none() => {
                    self.modal = Some(Modal::Running(action.clone()));
                    return vec![Effect::Run(action)];
                }
                Key::Backspace => {
                    typed.pop();
                    self.modal = Some(Modal::Confirm { action, expect, typed });
                }
                Key::Char(c) if expect.is_some() => {
                    typed.push(c);
                    self.modal = Some(Modal::Confirm { action, expect, typed });
                }
                _ => self.modal = Some(Modal::Confirm { action, expect, typed }),
            },
            Modal::Filter(mut text) => match key {
                Key::Enter => self.filter = text,
                Key::Esc => {}
                Key::Backspace => {
                    text.pop();
                    self.modal = Some(Modal::Filter(text));
                }
                Key::Char(c) => {
                    text.push(c);
                    self.modal = Some(Modal::Filter(text));
                }
                _ => self.modal = Some(Modal::Filter(text)),
            },
            // An action runs to its answer; keys wait.
            Modal::Running(a) => self.modal = Some(Modal::Running(a)),
            Modal::Help | Modal::Result { .. } | Modal::Notice(_) => {
                if key == Key::Char('q') {
                    return vec![Effect::Quit];
                }
            }
        }
        Vec::new()
    }
}

fn trim<T>(v: &mut VecDeque<T>) {
    while v.len() > KEEP {
        v.pop_front();
    }
}

fn next(p: Pane, by: usize) -> Pane {
    let i = Pane::ALL.iter().position(|x| *x == p).unwrap_or(0);
    Pane::ALL[(i + by) % Pane::ALL.len()]
}

/// A key, independent of the terminal library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A character.
    Char(char),
    /// Ctrl and a character.
    Ctrl(char),
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Backspace.
    Backspace,
    /// Tab.
    Tab,
    /// Shift-Tab.
    BackTab,
    /// Arrows.
    Up,
    /// Arrows.
    Down,
    /// Arrows.
    Left,
    /// Arrows.
    Right,
}

/// Every key and what it does, for `?` (mutating ones marked).
pub const KEYMAP: &[(&str, &str, bool)] = &[
    ("1-6, Tab, ←/→", "switch pane", false),
    ("j/k, ↑/↓", "select", false),
    ("Enter", "services → logs, operations → events", false),
    ("r", "refresh now", false),
    ("f", "follow logs on/off", false),
    ("/", "filter logs", false),
    ("a", "approve the operation (type its id)", true),
    ("x", "reject the operation (type its id)", true),
    ("p / u / c", "pause / resume / cancel the operation", true),
    ("b", "roll the service back to its previous stable release", true),
    ("d", "deploy the service's current release again (rollback --to)", true),
    ("R / F", "reconcile / repair the service", true),
    ("I", "repair the service's incident", true),
    ("?", "this help", false),
    ("q, Ctrl-C", "quit", false),
];

/// The safety of an action as the envelope spells it.
pub fn safety_name(s: Safety) -> &'static str {
    match s {
        Safety::ReadOnly => "read_only",
        Safety::Reversible => "reversible",
        _ => "irreversible",
    }
}
