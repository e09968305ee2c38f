//! Drawing the `top --watch` screen from an [`App`]; no state of its own.

use ratatui::{
    Frame,
    layout::{Constraint, Flex, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{
        Block, Cell, Clear, HighlightSpacing, Paragraph, Row, Sparkline, Table, TableState, Wrap,
    },
};

use super::{
    model::{App, by_name},
    rates::{RateRow, Series},
};
use crate::cli::render;

/// Reasons listed under the totals; the rest are summed up in one line.
const MAX_REASONS: usize = 8;
const LABEL_WIDTH: u16 = 34;

const HELP: &str = "q quit · s sort · v view · ↑/↓ j/k select · b ban · u unban";

pub fn draw(frame: &mut Frame, app: &App) {
    let reasons = app.stats.reasons.len().min(MAX_REASONS);
    let header_height = u16::try_from(reasons).unwrap_or(0) + 7;
    let [header, table, status, help] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Min(5),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, app, header);
    draw_table(frame, app, table);
    let style = if app.line.error {
        Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::Green)
    };
    frame.render_widget(Paragraph::new(app.line.text.as_str()).style(style), status);
    frame.render_widget(
        Paragraph::new(HELP).style(Style::new().add_modifier(Modifier::DIM)),
        help,
    );
    if let Some(command) = app.confirm {
        draw_confirm(frame, &command.question());
    }
}

fn rate(r: f64) -> String {
    format!("{}/s", render::count(r.max(0.0).round() as u64))
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let block = Block::bordered().title(" floodgate top ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let summary = match &app.status {
        Some(s) => {
            let ifaces: Vec<String> = s
                .interfaces
                .iter()
                .map(|i| format!("{} ({})", i.name, i.mode.name()))
                .collect();
            format!(
                "mode {} · up {} · interfaces {}",
                s.mode.name(),
                render::secs(s.uptime_secs as f64),
                if ifaces.is_empty() {
                    "none".to_owned()
                } else {
                    ifaces.join(", ")
                }
            )
        }
        None => "waiting for the daemon…".to_owned(),
    };
    let mut lines: Vec<(String, Option<&Series>, Style)> = vec![
        (summary, None, Style::new().add_modifier(Modifier::BOLD)),
        (
            format!("passed      {}", rate(app.stats.passed.last())),
            Some(&app.stats.passed),
            Style::new().fg(Color::Green),
        ),
        (
            format!("dropped     {}", rate(app.stats.dropped.last())),
            Some(&app.stats.dropped),
            Style::new().fg(Color::Red),
        ),
        (
            format!("would drop  {}", rate(app.stats.would_drop.last())),
            Some(&app.stats.would_drop),
            Style::new().fg(Color::Yellow),
        ),
    ];
    lines.push((
        "drops by reason:".to_owned(),
        None,
        Style::new().add_modifier(Modifier::DIM),
    ));
    for (reason, series) in app.stats.reasons.iter().take(MAX_REASONS) {
        lines.push((
            format!("  {reason:<18}{}", rate(series.last())),
            Some(series),
            Style::new().fg(Color::Magenta),
        ));
    }
    let rows = Layout::vertical(vec![Constraint::Length(1); lines.len()]).split(inner);
    for ((text, series, style), row) in lines.into_iter().zip(rows.iter()) {
        let [label, spark] =
            Layout::horizontal([Constraint::Length(LABEL_WIDTH), Constraint::Min(0)]).areas(*row);
        match series {
            Some(series) => {
                frame.render_widget(Paragraph::new(text), label);
                let points = series.points();
                let width = usize::from(spark.width);
                let recent = &points[points.len().saturating_sub(width)..];
                frame.render_widget(Sparkline::default().data(recent).style(style), spark);
            }
            None => frame.render_widget(Paragraph::new(text).style(style), *row),
        }
    }
}

fn opt_rate(r: Option<f64>, fmt: fn(f64) -> String) -> String {
    r.map_or_else(|| "…".to_owned(), fmt)
}

fn table_row(r: &RateRow) -> Row<'static> {
    let ban = r.row.ban.as_ref().map_or_else(String::new, |b| {
        format!("{} ({} left)", b.reason, render::secs(b.remaining_secs))
    });
    let right = |s: String| Cell::from(Line::from(s).right_aligned());
    let row = Row::new(vec![
        Cell::from(r.row.target.clone()),
        right(opt_rate(r.packets_per_sec, rate)),
        right(opt_rate(r.bytes_per_sec, |b| {
            format!("{}/s", render::bytes(b.max(0.0).round() as u64))
        })),
        right(format!("{:.1}%", r.drop_share)),
        right(render::count(r.row.packets)),
        right(render::count(r.row.drops)),
        Cell::from(ban.clone()),
    ]);
    if ban.is_empty() {
        row
    } else {
        row.style(Style::new().fg(Color::Red))
    }
}

fn draw_table(frame: &mut Frame, app: &App, area: Rect) {
    let first = if app.view.prefixes() {
        "PREFIX"
    } else {
        "SOURCE"
    };
    let header = Row::new(vec![
        first,
        "PACKETS/S",
        "BYTES/S",
        "DROP %",
        "PACKETS",
        "DROPS",
        "BAN",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let widths = [
        Constraint::Length(40),
        Constraint::Length(12),
        Constraint::Length(14),
        Constraint::Length(8),
        Constraint::Length(14),
        Constraint::Length(14),
        Constraint::Min(10),
    ];
    let title = Line::from(vec![
        Span::raw(format!(" {} ", app.view.title())),
        Span::styled(
            format!("by {} ", by_name(app.by)),
            Style::new().add_modifier(Modifier::DIM),
        ),
    ]);
    let table = Table::new(app.rows.iter().map(table_row), widths)
        .header(header)
        .block(Block::bordered().title(title))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ")
        .highlight_spacing(HighlightSpacing::Always);
    let mut state =
        TableState::default().with_selected((!app.rows.is_empty()).then_some(app.selected));
    frame.render_stateful_widget(table, area, &mut state);
    if app.rows.is_empty() {
        let [_, middle, _] = Layout::vertical([
            Constraint::Fill(1),
            Constraint::Length(1),
            Constraint::Fill(1),
        ])
        .areas(area);
        frame.render_widget(
            Paragraph::new(format!("no {} with traffic yet", app.view.title())).centered(),
            middle,
        );
    }
}

fn draw_confirm(frame: &mut Frame, question: &str) {
    let width = u16::try_from(question.chars().count() + 6)
        .unwrap_or(u16::MAX)
        .max(30);
    let [area] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(frame.area());
    let [area] = Layout::vertical([Constraint::Length(4)])
        .flex(Flex::Center)
        .areas(area);
    frame.render_widget(Clear, area);
    let text = vec![
        Line::from(question.to_owned()),
        Line::from("y confirm · n/Esc cancel").style(Style::new().add_modifier(Modifier::DIM)),
    ];
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: true }).block(
            Block::bordered()
                .title(" confirm ")
                .border_style(Style::new().fg(Color::Yellow)),
        ),
        area,
    );
}
