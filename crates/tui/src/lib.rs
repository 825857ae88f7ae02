//! `skiff tui`: a cockpit over the same requests the CLI makes ([`api::Api`]: directly
//! over the bucket and provider, or through skiffd) — services, operations and their
//! gates, live events, logs, metrics, doctor — with the CLI's actions, each shown as its
//! exact command and safety before it runs. Rendering never waits on the network: a
//! fetcher thread with its own runtime polls the API and sends [`app::Update`]s; the
//! render loop reads keys, applies updates and draws, marking data stale when it ages.

pub mod actions;
pub mod api;
pub mod app;
pub mod ui;

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::Backend;
use skiff_ops::{LogsRequest, Request};

use crate::api::Api;
use crate::app::{App, Effect, Key, Update};

/// What the fetcher should follow: the selected service and operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Focus {
    /// The selected service.
    pub service: Option<String>,
    /// The selected operation.
    pub op: Option<String>,
}

/// A message to the fetcher.
#[derive(Clone, Debug)]
pub enum Ask {
    /// Follow this selection.
    Focus(Focus),
    /// Fetch now.
    Refresh,
    /// Run an action and answer it.
    Run(actions::Action),
    /// Stop.
    Stop,
}

fn result<T>(a: &skiff_sdk::Answer, parse: impl FnOnce(&skiff_sdk::Envelope) -> T) -> Result<T, String> {
    if a.envelope.ok {
        Ok(parse(&a.envelope))
    } else {
        Err(format!("{}: {}", a.envelope.code.as_str(), a.envelope.summary))
    }
}

/// How often the fetcher polls.
pub const POLL: Duration = Duration::from_secs(1);

/// The fetcher: polls `api` every [`POLL`] (and at once when asked), runs actions, and
/// sends what arrives to `tx`. Runs on its own thread until [`Ask::Stop`].
pub fn spawn_fetcher(api: Arc<dyn Api>, asks: Receiver<Ask>, tx: Sender<Update>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() else {
            let _ = tx.send(Update::Services(Err("cannot start the fetcher's runtime".to_owned())));
            return;
        };
        rt.block_on(fetch_loop(api, asks, tx));
    })
}

async fn fetch_loop(api: Arc<dyn Api>, asks: Receiver<Ask>, tx: Sender<Update>) {
    let mut focus = Focus::default();
    let mut after: (String, u64) = (String::new(), 0);
    let mut round: u64 = 0;
    let mut next = Instant::now();
    loop {
        // Asks first: a focus change or an action does not wait for the next round.
        loop {
            match asks.try_recv() {
                Ok(Ask::Focus(f)) => {
                    if f != focus {
                        focus = f;
                        next = Instant::now();
                    }
                }
                Ok(Ask::Refresh) => next = Instant::now(),
                Ok(Ask::Run(action)) => {
                    let (api, tx) = (api.clone(), tx.clone());
                    tokio::spawn(async move {
                        let answer = api.ask(action.request()).await;
                        let _ = tx.send(Update::Done(action, answer.envelope));
                    });
                }
                Ok(Ask::Stop) | Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
            }
        }
        if Instant::now() < next {
            skiff_clock::Clock::sleep(&skiff_clock::SystemClock, Duration::from_millis(50)).await;
            continue;
        }
        next = Instant::now() + POLL;
        let doctor = round.is_multiple_of(3);
        round += 1;
        let (status, ops, found) = tokio::join!(api.ask(api::status()), api.ask(api::saga_list()), async {
            if doctor { Some(api.ask(Request::Doctor { service: None }).await) } else { None }
        });
        let _ = tx.send(Update::Services(result(&status, api::services)));
        let _ = tx.send(Update::Operations(result(&ops, api::operations)));
        if let Some(d) = found {
            // Findings are the answer whether doctor is happy or not.
            let _ = tx.send(Update::Doctor(Ok(api::findings(&d.envelope))));
        }
        if let Some(op) = focus.op.clone() {
            if after.0 != op {
                after = (op.clone(), 0);
            }
            let (shown, events) = tokio::join!(
                api.ask(api::saga_show(&op)),
                api.ask(Request::Events { op: op.clone(), follow: false, after: after.1 })
            );
            let _ = tx.send(Update::Detail(result(&shown, api::detail)));
            let evs = result(&events, api::events);
            if let Ok(e) = &evs
                && let Some(last) = e.last()
            {
                after.1 = last.seq;
            }
            let _ = tx.send(Update::Events(op, evs));
        }
        if let Some(svc) = focus.service.clone() {
            let logs = Request::Logs(LogsRequest {
                service: svc.clone(),
                instance: None,
                since: Some("10m".to_owned()),
                follow: false,
                grep: None,
                trace: None,
                json: false,
            });
            let (lines, metrics) =
                tokio::join!(api.ask(logs), api.ask(Request::Metrics { service: svc.clone(), queue_lag: false }));
            let _ = tx.send(Update::Logs(svc.clone(), result(&lines, api::logs)));
            let _ = tx.send(Update::Metrics(svc, result(&metrics, api::sample)));
        }
    }
}

/// What the render loop reads: keys and resizes.
pub trait Input {
    /// The next input within `wait`, if any.
    fn next(&mut self, wait: Duration) -> std::io::Result<Option<Key>>;
}

/// Draws, reads keys and applies updates until `q`. The fetcher is told what to follow
/// and what to run; nothing here waits on it.
pub fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    input: &mut dyn Input,
    updates: &Receiver<Update>,
    asks: &Sender<Ask>,
    theme: ui::Theme,
) -> std::io::Result<()> {
    let mut focus = Focus::default();
    loop {
        let now = Instant::now();
        while let Ok(u) = updates.try_recv() {
            app.apply(u, now);
        }
        let wanted = Focus { service: app.service().map(str::to_owned), op: app.operation().map(str::to_owned) };
        if wanted != focus {
            focus = wanted.clone();
            let _ = asks.send(Ask::Focus(wanted));
        }
        terminal.draw(|f| ui::draw(f, app, theme, now)).map_err(|e| std::io::Error::other(e.to_string()))?;
        if let Some(key) = input.next(Duration::from_millis(100))? {
            for effect in app.key(key) {
                match effect {
                    Effect::Quit => {
                        let _ = asks.send(Ask::Stop);
                        return Ok(());
                    }
                    Effect::Run(action) => {
                        let _ = asks.send(Ask::Run(action));
                    }
                    Effect::Refresh => {
                        let _ = asks.send(Ask::Refresh);
                    }
                }
            }
        }
    }
}

/// Keys from the terminal (crossterm).
struct Terminal_;

impl Input for Terminal_ {
    fn next(&mut self, wait: Duration) -> std::io::Result<Option<Key>> {
        use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers, MouseEventKind};
        if !event::poll(wait)? {
            return Ok(None);
        }
        Ok(match event::read()? {
            Event::Key(k) if k.kind != KeyEventKind::Release => match k.code {
                KeyCode::Char(c) if k.modifiers.contains(KeyModifiers::CONTROL) => Some(Key::Ctrl(c)),
                KeyCode::Char(c) => Some(Key::Char(c)),
                KeyCode::Enter => Some(Key::Enter),
                KeyCode::Esc => Some(Key::Esc),
                KeyCode::Backspace => Some(Key::Backspace),
                KeyCode::Tab => Some(Key::Tab),
                KeyCode::BackTab => Some(Key::BackTab),
                KeyCode::Up => Some(Key::Up),
                KeyCode::Down => Some(Key::Down),
                KeyCode::Left => Some(Key::Left),
                KeyCode::Right => Some(Key::Right),
                _ => None,
            },
            Event::Mouse(m) => match m.kind {
                MouseEventKind::ScrollDown => Some(Key::Down),
                MouseEventKind::ScrollUp => Some(Key::Up),
                _ => None,
            },
            // A resize is drawn on the next round.
            _ => None,
        })
    }
}

/// `skiff tui`: the cockpit on this terminal until `q`.
pub fn run(api: Arc<dyn Api>, readonly: bool) -> std::io::Result<()> {
    use ratatui::crossterm::event::{DisableMouseCapture, EnableMouseCapture};
    use ratatui::crossterm::execute;
    use ratatui::crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
    let mut app = App::new(api.target(), readonly);
    let (ask_tx, ask_rx) = channel();
    let (upd_tx, upd_rx) = channel();
    let fetcher = spawn_fetcher(api, ask_rx, upd_tx);
    enable_raw_mode()?;
    let mut out = std::io::stdout();
    execute!(out, EnterAlternateScreen, EnableMouseCapture)?;
    let mut terminal = Terminal::new(ratatui::backend::CrosstermBackend::new(out))?;
    let result = run_loop(&mut terminal, &mut app, &mut Terminal_, &upd_rx, &ask_tx, ui::Theme::from_env());
    let _ = ask_tx.send(Ask::Stop);
    disable_raw_mode()?;
    execute!(terminal.backend_mut(), LeaveAlternateScreen, DisableMouseCapture)?;
    terminal.show_cursor()?;
    drop(fetcher);
    result
}
