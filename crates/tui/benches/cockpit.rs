//! Cockpit benchmark: 1,000 services and 10,000 events behind an API that answers every
//! request after 200 ms. The run loop draws on a 200×50 `TestBackend` while the fetcher
//! polls on its own thread. Measured: first paint (start to the first frame, which must
//! not wait for data) and key-to-redraw (a key read to its frame drawn, p50/p95 over 300
//! keys once the data is in). Targets (the issue's): first paint < 500 ms, key-to-redraw
//! p95 < 50 ms. Writes JSON to `$SKIFF_BENCH_OUT` (or stdout).
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;
use skiff_ops::{Request, SagaRequest};
use skiff_sdk::{Answer, Envelope};
use skiff_tui::app::{App, Key};
use skiff_tui::{Input, api};

const SERVICES: usize = 1_000;
const EVENTS: u64 = 10_000;
const LATENCY: Duration = Duration::from_millis(200);
const KEYS: usize = 300;

struct Slow;

#[async_trait::async_trait]
impl api::Api for Slow {
    async fn ask(&self, request: Request) -> Answer {
        skiff_clock::Clock::sleep(&skiff_clock::SystemClock, LATENCY).await;
        let data = match request {
            Request::Status { .. } => json!({"services": (0..SERVICES).map(|i| json!({
                "service": format!("svc-{i:04}"), "release": "2026.12.01.1", "instances_healthy": 3,
                "instances_total": 3, "p95_ms": 40, "error_rate": 0.001, "requests": 1000, "cpu_percent": 12.0,
                "active_operation": null, "last_reconcile": {"status": "IN_SYNC"}})).collect::<Vec<_>>()}),
            Request::Saga(SagaRequest::List { .. }) => json!(
                (0..100)
                    .map(|i| json!({
                "op_id": format!("op-{i:03}"), "saga": "deploy", "service": format!("svc-{i:04}"),
                "status": "succeeded", "events": 100}))
                    .collect::<Vec<_>>()
            ),
            Request::Saga(SagaRequest::Show { op }) => json!({"op_id": op, "saga": "deploy", "service": "svc-0000",
                "status": "succeeded", "steps": (0..8).map(|i| json!({"id": format!("s{i}"), "status": "succeeded",
                "safety": "reversible", "summary": "done"})).collect::<Vec<_>>()}),
            Request::Events { after: 0, .. } => json!({"events": (1..=EVENTS).map(|s| json!({
                "seq": s, "at_ms": s, "type": "step_succeeded", "data": {"step": "s1"}})).collect::<Vec<_>>()}),
            Request::Doctor { .. } => json!({"findings": []}),
            _ => json!({"events": [], "lines": [], "target_groups": []}),
        };
        Envelope::ok("ok").data(data).into()
    }

    fn target(&self) -> String {
        "bench".into()
    }
}

/// Scripted keys: none until the data is in, then [`KEYS`] keys, then `q`; records when
/// each key was read and when the loop came back for the next (its frame drawn).
struct Script {
    started: Instant,
    first_paint: Option<Duration>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    sent: usize,
    pending: Option<Instant>,
    redraws: Vec<f64>,
}

impl Input for Script {
    fn next(&mut self, _wait: Duration) -> std::io::Result<Option<Key>> {
        // Called right after a frame is drawn.
        self.first_paint.get_or_insert_with(|| self.started.elapsed());
        if let Some(t) = self.pending.take() {
            self.redraws.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        if !self.ready.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::yield_now();
            return Ok(None);
        }
        if self.sent >= KEYS {
            return Ok(Some(Key::Char('q')));
        }
        let key = match self.sent % 6 {
            0 | 1 => Key::Char('j'),
            2 => Key::Char('k'),
            3 => Key::Tab,
            4 => Key::Char('2'),
            _ => Key::Char('1'),
        };
        self.sent += 1;
        self.pending = Some(Instant::now());
        Ok(Some(key))
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let started = Instant::now();
    let mut app = App::new("bench".into(), false);
    let (ask_tx, ask_rx) = channel();
    let (upd_tx, upd_rx) = channel();
    let fetcher = skiff_tui::spawn_fetcher(Arc::new(Slow), ask_rx, upd_tx);
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Data is in once services and the selected operation's events arrived.
    let watch = ready.clone();
    let (fwd_tx, fwd_rx) = channel();
    std::thread::spawn(move || {
        let (mut services, mut events) = (false, false);
        while let Ok(u) = upd_rx.recv() {
            services |= matches!(&u, skiff_tui::app::Update::Services(Ok(v)) if v.len() == SERVICES);
            events |= matches!(&u, skiff_tui::app::Update::Events(_, Ok(v)) if v.len() as u64 == EVENTS);
            if fwd_tx.send(u).is_err() {
                return;
            }
            if services && events {
                watch.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).unwrap();
    let mut script = Script { started, first_paint: None, ready, sent: 0, pending: None, redraws: Vec::new() };
    // Select an operation so its 10,000 events are fetched.
    app.pane = skiff_tui::app::Pane::Operations;
    skiff_tui::run_loop(&mut terminal, &mut app, &mut script, &fwd_rx, &ask_tx, skiff_tui::ui::Theme { color: true })
        .unwrap();
    drop(fetcher);
    let first_paint_ms = script.first_paint.unwrap_or_default().as_secs_f64() * 1000.0;
    let mut redraws = script.redraws;
    redraws.sort_by(f64::total_cmp);
    let p95 = pct(&redraws, 0.95);
    let out = json!({
        "suite": "tui",
        "description": "skiff tui run loop on a 200x50 TestBackend: 1,000 services and 10,000 events behind an API answering after 200 ms; first paint, then key-to-redraw over 300 keys once the data is in",
        "services": SERVICES,
        "events": EVENTS,
        "api_latency_ms": LATENCY.as_millis() as u64,
        "first_paint_ms": first_paint_ms,
        "key_to_redraw_ms": {"p50": pct(&redraws, 0.5), "p95": p95, "max": redraws.last().copied().unwrap_or(0.0), "keys": redraws.len()},
        "target": {"first_paint_ms_below": 500.0, "key_to_redraw_p95_ms_below": 50.0, "met": first_paint_ms < 500.0 && p95 < 50.0},
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    match std::env::var_os("SKIFF_BENCH_OUT") {
        Some(path) => std::fs::write(path, text + "\n").unwrap(),
        None => println!("{text}"),
    }
}
