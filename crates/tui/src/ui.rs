//! Drawing: a title line (where the data comes from, its age or a stale marker), the
//! tabs, the shown pane, a key hint line, and the open modal. Colours are foreground
//! accents only (selection is reverse video), so they read on light and dark
//! terminals; with `NO_COLOR` there are none, only bold and reverse.

use std::time::Instant;

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, List, ListItem, Paragraph, Row, Sparkline, Table, Tabs, Wrap};

use crate::app::{App, KEYMAP, Modal, Pane, safety_name};

/// Colours, or none.
#[derive(Clone, Copy, Debug)]
pub struct Theme {
    /// Whether to colour.
    pub color: bool,
}

impl Theme {
    /// Colours unless `NO_COLOR` is set (any value).
    pub fn from_env() -> Self {
        Theme { color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
    }

    fn fg(self, c: Color) -> Style {
        if self.color { Style::default().fg(c) } else { Style::default() }
    }

    fn accent(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    fn good(self) -> Style {
        self.fg(Color::Green)
    }

    fn bad(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }

    fn selected(self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    fn status(self, status: &str) -> Style {
        match status {
            "succeeded" | "healthy" | "IN_SYNC" | "OK" => self.good(),
            "failed" | "compensated" | "cancelled" | "DRIFTED" | "unhealthy" => self.bad(),
            "awaiting_approval" | "paused" | "running" | "compensating" | "planned" => self.warn(),
            _ => Style::default(),
        }
    }
}

/// Draws the whole screen.
pub fn draw(f: &mut Frame<'_>, app: &App, theme: Theme, now: Instant) {
    let area = f.area();
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(1), Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)])
        .split(area);
    title(f, rows[0], app, theme, now);
    let tabs: Vec<Line<'_>> =
        Pane::ALL.iter().enumerate().map(|(i, p)| Line::from(format!("{} {}", i + 1, p.title()))).collect();
    let selected = Pane::ALL.iter().position(|p| *p == app.pane).unwrap_or(0);
    f.render_widget(Tabs::new(tabs).select(selected).highlight_style(theme.selected()), rows[1]);
    match app.pane {
        Pane::Services => services(f, rows[2], app, theme),
        Pane::Operations => operations(f, rows[2], app, theme),
        Pane::Events => events(f, rows[2], app, theme),
        Pane::Logs => logs(f, rows[2], app, theme),
        Pane::Metrics => metrics(f, rows[2], app, theme),
        Pane::Doctor => doctor(f, rows[2], app, theme),
    }
    hint(f, rows[3], app, theme);
    if let Some(m) = &app.modal {
        modal(f, area, m, app, theme);
    }
}

fn title(f: &mut Frame<'_>, area: Rect, app: &App, theme: Theme, now: Instant) {
    let mut spans = vec![Span::styled("skiff", theme.accent()), Span::raw(format!(" · {}", app.target))];
    if app.readonly {
        spans.push(Span::styled(" · read-only", theme.warn()));
    }
    match app.staleness(now) {
        Some(s) => spans.push(Span::styled(format!(" · {s}"), theme.bad())),
        None => spans.push(Span::styled(" · live", theme.good())),
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn hint(f: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let text = match &app.last {
        Some(l) => l.clone(),
        None if app.readonly => "? keys · Tab panes · j/k select · r refresh · q quit".to_owned(),
        None => "? keys · Tab panes · j/k select · a approve · b rollback · I incident · q quit".to_owned(),
    };
    f.render_widget(Paragraph::new(Span::styled(text, Style::default().add_modifier(Modifier::DIM))), area);
    let _ = theme;
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// The seed's one-line summary of a service.
fn headline(s: &crate::api::ServiceRow) -> String {
    format!(
        "{} · release {} · {}/{} healthy · p95 {} · error {} · cpu {}",
        s.service,
        s.release,
        s.healthy,
        s.total,
        s.p95_ms.map_or_else(|| "-".to_owned(), |p| format!("{p}ms")),
        pct(s.error_rate),
        s.cpu_percent.map_or_else(|| "-".to_owned(), |c| format!("{c:.0}%")),
    )
}

fn services(f: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let block = Block::default().borders(Borders::ALL).title(" Services ");
    if app.services.value.is_empty() {
        let text = match &app.services.error {
            Some(e) => format!("cannot read services: {e}"),
            None if app.services.at.is_none() => "loading…".to_owned(),
            None => "no services yet: `skiff deploy -f skiff.yaml --yes` makes one".to_owned(),
        };
        f.render_widget(Paragraph::new(text).block(block).wrap(Wrap { trim: true }), area);
        return;
    }
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(1), Constraint::Min(3)])
        .split(area);
    if let Some(s) = app.services.value.get(app.service_row) {
        f.render_widget(Paragraph::new(Span::styled(headline(s), theme.accent())), parts[0]);
    }
    let header = Row::new(["service", "release", "healthy", "p95", "errors", "cpu", "operation", "reconcile"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    let rows: Vec<Row<'_>> = app
        .services
        .value
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let health = if s.total > 0 && s.healthy == s.total { theme.good() } else { theme.bad() };
            let row = Row::new(vec![
                Cell::from(s.service.clone()),
                Cell::from(s.release.clone()),
                Cell::from(format!("{}/{}", s.healthy, s.total)).style(health),
                Cell::from(s.p95_ms.map_or_else(|| "-".to_owned(), |p| format!("{p} ms"))),
                Cell::from(pct(s.error_rate)).style(if s.error_rate > 0.01 { theme.bad() } else { Style::default() }),
                Cell::from(s.cpu_percent.map_or_else(|| "-".to_owned(), |c| format!("{c:.0}%"))),
                Cell::from(s.active.clone().unwrap_or_else(|| "-".to_owned())).style(theme.warn()),
                Cell::from(s.reconcile.clone()).style(theme.status(&s.reconcile)),
            ]);
            if i == app.service_row { row.style(theme.selected()) } else { row }
        })
        .collect();
    let widths = [
        Constraint::Length(18),
        Constraint::Length(14),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Min(10),
        Constraint::Length(9),
    ];
    f.render_widget(Table::new(rows, widths).header(header).block(block), parts[1]);
}

fn operations(f: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let cols = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(40), Constraint::Percentage(60)])
        .split(area);
    let items: Vec<ListItem<'_>> = app
        .operations
        .value
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let line = Line::from(vec![
                Span::styled(format!("{:<17}", o.status), theme.status(&o.status)),
                Span::raw(format!(" {} {} {}", o.saga, o.service, o.op_id)),
            ]);
            let item = ListItem::new(line);
            if i == app.op_row { item.style(theme.selected()) } else { item }
        })
        .collect();
    let list = if items.is_empty() { List::new(vec![ListItem::new("no operations yet")]) } else { List::new(items) };
    f.render_widget(list.block(Block::default().borders(Borders::ALL).title(" Operations ")), cols[0]);
    let block = Block::default().borders(Borders::ALL).title(" Saga ");
    let Some(d) = app.detail.value.as_ref().filter(|d| Some(d.op_id.as_str()) == app.operation()) else {
        let text = if app.operation().is_some() { "loading…" } else { "select an operation" };
        f.render_widget(Paragraph::new(text).block(block), cols[1]);
        return;
    };
    let mut lines = vec![Line::from(vec![
        Span::styled(format!("Saga: {} {}", d.saga, d.service), theme.accent()),
        Span::raw(" — "),
        Span::styled(d.status.clone(), theme.status(&d.status)),
    ])];
    for s in &d.steps {
        lines.push(Line::from(vec![
            Span::styled(format!("{:<12}", s.status), theme.status(&s.status)),
            Span::raw(format!(" {:<14} {:<12} {:<6} ", s.id, s.safety, s.risk)),
            Span::styled(s.summary.clone(), Style::default().add_modifier(Modifier::DIM)),
        ]));
    }
    if !d.facts.is_empty() {
        lines.push(Line::from(Span::styled("Facts:", Style::default().add_modifier(Modifier::BOLD))));
        lines.extend(d.facts.iter().map(|x| Line::from(format!("  • {x}"))));
    }
    if let Some(step) = &d.awaiting {
        lines.push(Line::from(Span::styled(
            format!("Action: approve `{step}` (a, type the id) or reject the saga (x)"),
            theme.warn(),
        )));
    }
    f.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), cols[1]);
}

fn events(f: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let title = format!(" Events of {} ", app.operation().unwrap_or("-"));
    let height = area.height.saturating_sub(2) as usize;
    let skip = app.events.len().saturating_sub(height);
    let items: Vec<ListItem<'_>> = app
        .events
        .iter()
        .skip(skip)
        .map(|e| {
            ListItem::new(Line::from(vec![
                Span::raw(format!("{:>5} {} ", e.seq, skiff_clock::Utc::from_ms(e.at_ms).rfc3339())),
                Span::styled(e.kind.clone(), theme.status(e.kind.trim_start_matches("step_"))),
                Span::raw(format!(" {}", e.step)),
            ]))
        })
        .collect();
    f.render_widget(List::new(items).block(Block::default().borders(Borders::ALL).title(title)), area);
}

fn logs(f: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let title = format!(
        " Logs of {}{}{} ",
        app.service().unwrap_or("-"),
        if app.follow { " · following" } else { "" },
        if app.filter.is_empty() { String::new() } else { format!(" · /{}", app.filter) }
    );
    let shown: Vec<&crate::api::LogRow> =
        app.logs.iter().filter(|l| app.filter.is_empty() || l.line.contains(&app.filter)).collect();
    let height = area.height.saturating_sub(2) as usize;
    let skip = if app.follow { shown.len().saturating_sub(height) } else { 0 };
    let items: Vec<ListItem<'_>> = shown
        .iter()
        .skip(skip)
        .take(height)
        .map(|l| {
            ListItem::new(Line::from(vec![
                Span::styled(format!("{} ", l.instance), theme.accent()),
                Span::raw(l.line.clone()),
            ]))
        })
        .collect();
    f.render_widget(List::new(items).block(Block::default().borders(Borders::ALL).title(title)), area);
}

fn metrics(f: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let svc = app.service().unwrap_or("-");
    let samples: Vec<crate::api::Sample> =
        app.samples.get(svc).map(|s| s.iter().copied().collect()).unwrap_or_default();
    let deltas = |get: fn(&crate::api::Sample) -> u64| -> Vec<u64> {
        samples.windows(2).map(|w| get(&w[1]).saturating_sub(get(&w[0]))).collect()
    };
    let requests = deltas(|s| s.requests);
    let errors = deltas(|s| s.errors);
    let p95: Vec<u64> = samples.iter().map(|s| s.p95_ms).collect();
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Ratio(1, 3), Constraint::Ratio(1, 3), Constraint::Ratio(1, 3)])
        .split(area);
    let last = |v: &[u64]| v.last().copied().unwrap_or(0);
    let spark = |title: String, data: &[u64], style: Style| {
        Sparkline::default().block(Block::default().borders(Borders::ALL).title(title)).data(data.to_vec()).style(style)
    };
    f.render_widget(spark(format!(" {svc} requests/s: {} ", last(&requests)), &requests, theme.good()), parts[0]);
    f.render_widget(spark(format!(" errors/s: {} ", last(&errors)), &errors, theme.bad()), parts[1]);
    f.render_widget(spark(format!(" p95: {} ms ", last(&p95)), &p95, theme.warn()), parts[2]);
}

fn doctor(f: &mut Frame<'_>, area: Rect, app: &App, theme: Theme) {
    let block = Block::default().borders(Borders::ALL).title(" Doctor ");
    if app.doctor.value.is_empty() {
        let text = match (&app.doctor.error, app.doctor.at) {
            (Some(e), _) => format!("cannot ask the doctor: {e}"),
            (None, None) => "loading…".to_owned(),
            (None, Some(_)) => "no problems found".to_owned(),
        };
        f.render_widget(Paragraph::new(text).block(block), area);
        return;
    }
    let mut lines = Vec::new();
    for (i, x) in app.doctor.value.iter().enumerate() {
        let style = if i == app.finding_row { theme.selected() } else { Style::default() };
        lines.push(Line::from(vec![
            Span::styled(format!("✗ {} ", x.code), theme.bad()),
            Span::styled(format!("{}: {}", x.subject, x.summary), style),
        ]));
        lines.extend(x.facts.iter().map(|f| Line::from(format!("    • {f}"))));
        lines.extend(
            x.actions.iter().map(|(c, s)| Line::from(Span::styled(format!("    $ {c}  ({s})"), theme.accent()))),
        );
    }
    f.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), area);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

fn modal(f: &mut Frame<'_>, area: Rect, m: &Modal, app: &App, theme: Theme) {
    let (title, lines): (&str, Vec<Line<'_>>) = match m {
        Modal::Help => (
            " Keys ",
            KEYMAP
                .iter()
                .filter(|(_, _, mutating)| !(app.readonly && *mutating))
                .map(|(k, what, mutating)| {
                    Line::from(vec![
                        Span::styled(format!("{k:<16}"), theme.accent()),
                        Span::raw((*what).to_owned()),
                        Span::styled(if *mutating { "  (changes state)" } else { "" }, theme.warn()),
                    ])
                })
                .collect(),
        ),
        Modal::Confirm { action, expect, typed } => {
            let mut l = vec![
                Line::from(Span::styled(action.command(), theme.accent())),
                Line::from(format!("safety: {}", safety_name(action.safety()))),
            ];
            match expect {
                Some(id) => {
                    l.push(Line::from(format!("type the operation id to confirm: {id}")));
                    l.push(Line::from(Span::styled(format!("> {typed}_"), theme.warn())));
                    l.push(Line::from("Enter runs it once the id matches · Esc cancels"));
                }
                None => l.push(Line::from("y or Enter runs it · Esc cancels")),
            }
            (" Confirm ", l)
        }
        Modal::Running(action) => {
            (" Running ", vec![Line::from(action.command()), Line::from("waiting for its answer…")])
        }
        Modal::Result { action, ok, code, summary, facts } => {
            let mut l = vec![
                Line::from(Span::styled(action.command(), theme.accent())),
                Line::from(Span::styled(format!("{code}: {summary}"), if *ok { theme.good() } else { theme.bad() })),
            ];
            l.extend(facts.iter().map(|x| Line::from(format!("• {x}"))));
            l.push(Line::from("any key closes"));
            (" Result ", l)
        }
        Modal::Filter(text) => {
            (" Filter logs ", vec![Line::from(format!("/{text}_")), Line::from("Enter keeps it · Esc drops it")])
        }
        Modal::Notice(text) => (" Notice ", vec![Line::from(text.clone()), Line::from("any key closes")]),
    };
    let height = u16::try_from(lines.len()).unwrap_or(20).saturating_add(2);
    let width = lines.iter().map(Line::width).max().unwrap_or(20).clamp(30, 100) as u16 + 4;
    let rect = centered(area, width, height);
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)).wrap(Wrap { trim: false }),
        rect,
    );
}
