//! Every pane drawn with ratatui's `TestBackend` (no colour) in the situations a user
//! meets: an empty bucket, a healthy service, a failed canary, a saga waiting for
//! approval, an unreachable server — plus the help, confirmation and read-only notice.

use std::time::Instant;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;
use skiff_sdk::{Code, Envelope};
use skiff_tui::api;
use skiff_tui::app::{App, Key, Pane, Update};
use skiff_tui::ui::{Theme, draw};

fn screen(app: &App, now: Instant) -> String {
    let mut t = Terminal::new(TestBackend::new(110, 26)).unwrap();
    t.draw(|f| draw(f, app, Theme { color: false }, now)).unwrap();
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol().to_owned()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn every_pane(app: &mut App, now: Instant) -> String {
    let mut out = String::new();
    for p in Pane::ALL {
        app.pane = p;
        out.push_str(&format!("=== {}\n{}", p.title(), screen(app, now)));
    }
    out
}

fn ok(data: serde_json::Value) -> Envelope {
    Envelope::ok("ok").data(data)
}

fn service(
    release: &str,
    healthy: u64,
    error_rate: f64,
    active: serde_json::Value,
    reconcile: &str,
) -> serde_json::Value {
    json!({"services": [{
        "service": "payments-api", "release": release, "instances_healthy": healthy, "instances_total": 6,
        "p95_ms": 91, "error_rate": error_rate, "requests": 12000, "cpu_percent": 48.0,
        "active_operation": active, "last_reconcile": {"status": reconcile},
    }]})
}

fn fill(app: &mut App, now: Instant, services: Envelope, ops: Envelope, detail: Option<Envelope>, doctor: Envelope) {
    app.apply(Update::Services(Ok(api::services(&services))), now);
    app.apply(Update::Operations(Ok(api::operations(&ops))), now);
    if let Some(d) = detail {
        app.apply(Update::Detail(Ok(api::detail(&d))), now);
    }
    app.apply(Update::Doctor(Ok(api::findings(&doctor))), now);
}

#[test]
fn an_empty_bucket() {
    let now = Instant::now();
    let mut app = App::new("direct: file:///srv/.skiff/state".into(), false);
    fill(&mut app, now, ok(json!({"services": []})), ok(json!([])), None, ok(json!({"findings": []})));
    insta::assert_snapshot!("empty", every_pane(&mut app, now));
}

#[test]
fn a_healthy_service() {
    let now = Instant::now();
    let mut app = App::new("https://skiffd:7400".into(), false);
    let ops = ok(
        json!([{"op_id": "op-1", "saga": "deploy", "service": "payments-api", "status": "succeeded", "events": 21}]),
    );
    let detail = ok(json!({
        "op_id": "op-1", "saga": "deploy", "service": "payments-api", "status": "succeeded",
        "plan": {"steps": [{"id": "provision", "risk": "low"}, {"id": "shift-100", "risk": "medium"}]},
        "steps": [
            {"id": "provision", "status": "succeeded", "safety": "reversible", "summary": "6/6 instances running"},
            {"id": "shift-100", "status": "succeeded", "safety": "reversible", "summary": "100% on 2026.05.16.1"}
        ]
    }));
    fill(
        &mut app,
        now,
        ok(service("2026.05.16.1", 6, 0.002, json!(null), "IN_SYNC")),
        ops,
        Some(detail),
        ok(json!({"findings": []})),
    );
    app.apply(
        Update::Events(
            "op-1".into(),
            Ok(vec![api::EventRow {
                seq: 1,
                at_ms: 1_779_000_000_000,
                kind: "operation_planned".into(),
                step: String::new(),
            }]),
        ),
        now,
    );
    app.apply(
        Update::Logs(
            "payments-api".into(),
            Ok(vec![api::LogRow { at_ms: 1, instance: "i-01".into(), line: "GET /healthz 200".into() }]),
        ),
        now,
    );
    for (r, e, p) in [(100, 0, 80), (160, 1, 91), (250, 1, 95)] {
        app.apply(Update::Metrics("payments-api".into(), Ok(api::Sample { requests: r, errors: e, p95_ms: p })), now);
    }
    insta::assert_snapshot!("healthy", every_pane(&mut app, now));
}

#[test]
fn a_failed_canary() {
    let now = Instant::now();
    let mut app = App::new("https://skiffd:7400".into(), false);
    let ops = ok(
        json!([{"op_id": "op-2", "saga": "deploy", "service": "payments-api", "status": "compensated", "events": 30}]),
    );
    let doctor = ok(json!({"findings": [{
        "code": "CANARY_FAILED", "subject": "service payments-api",
        "summary": "release 2026.05.17.1 failed its canary and was rolled back",
        "facts": ["canary error rate 100.0% over 12 requests exceeds 1.0%", "2026.05.16.1 keeps serving"],
        "actions": [{"id": "show", "command": "skiff saga show op-2", "mutating": false, "safety": "read_only", "confidence": 0.6}]
    }]}));
    fill(&mut app, now, ok(service("2026.05.16.1", 6, 0.0, json!(null), "IN_SYNC")), ops, None, doctor);
    app.pane = Pane::Doctor;
    insta::assert_snapshot!("canary-failed-doctor", screen(&app, now));
    app.pane = Pane::Operations;
    insta::assert_snapshot!("canary-failed-operations", screen(&app, now));
}

#[test]
fn a_saga_waiting_for_approval_is_approved_by_typing_its_id() {
    let now = Instant::now();
    let mut app = App::new("https://skiffd:7400".into(), false);
    let ops = ok(
        json!([{"op_id": "op-3", "saga": "database-restore", "service": "payments-db", "status": "awaiting_approval", "events": 17}]),
    );
    let detail = Envelope::failure(Code::ApprovalRequired, "operation op-3 waits for approval of step `cutover`")
        .fact("restored copy payments-db-r1 passed smoke: 1,204,331 rows match the manifest")
        .fact("the cutover moves secret://payments-db/url to the copy; the previous value is kept")
        .data(json!({
            "op_id": "op-3", "saga": "database-restore", "service": "payments-db", "status": "awaiting_approval",
            "awaiting": "cutover",
            "plan": {"steps": [{"id": "restore", "risk": "medium"}, {"id": "cutover", "risk": "high"}]},
            "steps": [
                {"id": "restore", "status": "succeeded", "safety": "reversible", "summary": "copy payments-db-r1 on :55433"},
                {"id": "cutover", "status": "pending", "safety": "irreversible", "summary": ""}
            ]
        }));
    // A failed envelope still shows as the operation's detail.
    app.apply(Update::Services(Ok(vec![])), now);
    app.apply(Update::Operations(Ok(api::operations(&ops))), now);
    app.apply(Update::Detail(Ok(api::detail(&detail))), now);
    app.pane = Pane::Operations;
    insta::assert_snapshot!("awaiting-approval", screen(&app, now));
    assert!(app.key(Key::Char('a')).is_empty());
    insta::assert_snapshot!("approve-confirm", screen(&app, now));
    for c in "op-".chars() {
        app.key(Key::Char(c));
    }
    assert!(app.key(Key::Enter).is_empty(), "not until the whole id is typed");
    app.key(Key::Char('3'));
    let effects = app.key(Key::Enter);
    assert_eq!(effects.len(), 1, "{effects:?}");
}

#[test]
fn an_unreachable_server_shows_why_and_keeps_the_last_data_marked_stale() {
    let now = Instant::now();
    let mut app = App::new("https://skiffd:7400".into(), true);
    app.apply(Update::Services(Err("STATE_UNAVAILABLE: cannot reach skiffd at https://skiffd:7400".into())), now);
    app.apply(Update::Operations(Err("STATE_UNAVAILABLE: cannot reach skiffd at https://skiffd:7400".into())), now);
    app.apply(Update::Doctor(Err("STATE_UNAVAILABLE: cannot reach skiffd at https://skiffd:7400".into())), now);
    insta::assert_snapshot!("unreachable", every_pane(&mut app, now));
    // Data that arrived once and then stopped is kept and aged.
    app.apply(Update::Services(Ok(api::services(&ok(service("2026.05.16.1", 6, 0.0, json!(null), "IN_SYNC"))))), now);
    app.apply(Update::Services(Err("STATE_UNAVAILABLE: cannot reach skiffd".into())), now);
    app.pane = Pane::Services;
    insta::assert_snapshot!("stale", screen(&app, now + std::time::Duration::from_secs(12)));
    // Read-only: help lists no mutating key, and pressing one is refused.
    app.key(Key::Char('?'));
    insta::assert_snapshot!("readonly-help", screen(&app, now));
    app.key(Key::Esc);
    assert!(app.key(Key::Char('b')).is_empty());
    insta::assert_snapshot!("readonly-refused", screen(&app, now));
}
