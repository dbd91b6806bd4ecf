//! The live terminal view of `aura watch` (ratatui): one row per watched asset, updated from the diff stream;
//! `q`, Esc or Ctrl-C quits. Only used when stdout is a terminal.

use std::collections::BTreeMap;
use std::io::Stdout;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use serde_json::Value;

use crate::commands::Api;

#[derive(Debug, Clone, Default)]
struct AssetRow {
    kind: String,
    health: String,
    host: String,
    cpu: String,
    mem: String,
}

/// The terminal view; restores the terminal when dropped.
pub(crate) struct LiveView {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    rows: BTreeMap<String, AssetRow>,
    filter: String,
    log: Vec<String>,
    quit_rx: tokio::sync::mpsc::Receiver<()>,
    stop: Arc<AtomicBool>,
    keys: Option<std::thread::JoinHandle<()>>,
}

impl LiveView {
    /// Loads the matching assets, switches the terminal to the alternate screen and draws.
    pub(crate) async fn start(api: &Api, filter: &str) -> anyhow::Result<LiveView> {
        let query = if filter.trim().is_empty() {
            "limit 10000".to_owned()
        } else {
            format!("{filter} limit 10000")
        };
        let answer = api
            .call(
                reqwest::Method::POST,
                "/api/v1/query",
                Some(&serde_json::json!({ "query": query })),
            )
            .await?;
        let mut rows = BTreeMap::new();
        for doc in answer["rows"].as_array().into_iter().flatten() {
            if let Some(id) = doc["meta"]["asset_id"].as_str() {
                rows.insert(id.to_owned(), row_of(doc));
            }
        }
        enable_raw_mode()?;
        let mut stdout = std::io::stdout();
        execute!(stdout, EnterAlternateScreen)?;
        let terminal = Terminal::new(CrosstermBackend::new(stdout))?;
        let (tx, quit_rx) = tokio::sync::mpsc::channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_keys = stop.clone();
        // Keys are read on a thread that polls with a timeout, so it notices `stop` and is joined on drop.
        let keys = std::thread::spawn(move || {
            while !stop_keys.load(Ordering::Relaxed) {
                if let Ok(true) = event::poll(Duration::from_millis(100))
                    && let Ok(Event::Key(k)) = event::read()
                {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                        let _ = tx.blocking_send(());
                        break;
                    }
                }
            }
        });
        let mut view = LiveView {
            terminal,
            rows,
            filter: filter.to_owned(),
            log: Vec::new(),
            quit_rx,
            stop,
            keys: Some(keys),
        };
        view.draw()?;
        Ok(view)
    }

    /// Resolves when the user asked to quit.
    pub(crate) async fn quit_requested(&mut self) {
        let _ = self.quit_rx.recv().await;
    }

    /// Applies one watch event and redraws.
    pub(crate) fn apply(&mut self, event: &Value) -> anyhow::Result<()> {
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        match event["type"].as_str() {
            Some("added") => {
                self.rows.insert(id, row_of(&event["asset"]));
            }
            Some("changed") => {
                let row = self.rows.entry(id).or_default();
                for c in event["changes"].as_array().into_iter().flatten() {
                    let new = show(&c["new"]);
                    match c["path"].as_str() {
                        Some("meta.health") => row.health = new,
                        Some("meta.kind") => row.kind = new,
                        Some("meta.host") => row.host = new,
                        Some("compute.cpu_percent") => row.cpu = new,
                        Some("memory.used_percent") => row.mem = new,
                        _ => {}
                    }
                }
            }
            Some("removed") => {
                self.rows.remove(&id);
            }
            _ => {}
        }
        if event["type"] != "ready" {
            self.log.push(crate::catalog_cmd::plain_line(event));
            if self.log.len() > 200 {
                self.log.remove(0);
            }
        }
        self.draw()
    }

    fn draw(&mut self) -> anyhow::Result<()> {
        let rows = &self.rows;
        let title = format!(
            " aura watch {} — {} assets — q to quit ",
            if self.filter.is_empty() {
                "(all)"
            } else {
                &self.filter
            },
            rows.len()
        );
        let log = &self.log;
        self.terminal.draw(|f| {
            let [top, bottom] =
                Layout::vertical([Constraint::Min(5), Constraint::Length(8)]).areas(f.area());
            let health_style = |h: &str| match h {
                "unhealthy" => Style::default().fg(Color::Red),
                "degraded" => Style::default().fg(Color::Yellow),
                "healthy" => Style::default().fg(Color::Green),
                _ => Style::default(),
            };
            let table_rows = rows.iter().map(|(id, r)| {
                Row::new(vec![
                    id.clone(),
                    r.kind.clone(),
                    r.health.clone(),
                    r.host.clone(),
                    r.cpu.clone(),
                    r.mem.clone(),
                ])
                .style(health_style(&r.health))
            });
            let table = Table::new(
                table_rows,
                [
                    Constraint::Percentage(30),
                    Constraint::Length(10),
                    Constraint::Length(10),
                    Constraint::Percentage(25),
                    Constraint::Length(7),
                    Constraint::Length(7),
                ],
            )
            .header(
                Row::new(vec!["ID", "KIND", "HEALTH", "HOST", "CPU%", "MEM%"])
                    .style(Style::default().add_modifier(Modifier::BOLD)),
            )
            .block(Block::default().borders(Borders::ALL).title(title.clone()));
            f.render_widget(table, top);
            let shown = bottom.height.saturating_sub(2) as usize;
            let lines: Vec<Line> = log
                .iter()
                .skip(log.len().saturating_sub(shown))
                .map(|l| Line::from(l.clone()))
                .collect();
            f.render_widget(
                Paragraph::new(lines)
                    .block(Block::default().borders(Borders::ALL).title(" changes ")),
                bottom,
            );
        })?;
        Ok(())
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(k) = self.keys.take() {
            let _ = k.join();
        }
        let _ = disable_raw_mode();
        let _ = execute!(self.terminal.backend_mut(), LeaveAlternateScreen);
        let _ = self.terminal.show_cursor();
    }
}

fn row_of(doc: &Value) -> AssetRow {
    let m = &doc["meta"];
    AssetRow {
        kind: show(&m["kind"]),
        health: show(&m["health"]),
        host: show(&m["host"]),
        cpu: show(&doc["compute"]["cpu_percent"]),
        mem: show(&doc["memory"]["used_percent"]),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() != 0.0 => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}
