//! `floodgate top --watch`: a full-screen view of the heaviest sources, the
//! drop rates and the bans, refreshed every interval. [`model`] holds the state
//! and the keys, [`rates`] the arithmetic, [`view`] the drawing; this module owns
//! the terminal and talks to the daemon.

mod model;
mod rates;
mod view;

use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use self::model::{Action, App, Key, View};
use super::{Cli, Failure, call, show::TopArgs, unexpected};
use crate::control::proto::{Reply, Request};

/// One request may take this long before the screen reports the daemon as stuck.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Leaves the alternate screen and raw mode however the UI ends. (A panic is
/// covered too: `ratatui::try_init` installs a hook that restores first.)
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = ratatui::try_restore();
        let _ = crossterm::execute!(std::io::stdout(), crossterm::cursor::Show);
    }
}

pub async fn run(cli: &Cli, args: &TopArgs) -> Result<(), Failure> {
    if args.interval.is_zero() {
        return Err(Failure::new(
            2,
            "--interval must be longer than 0s, e.g. 1s",
        ));
    }
    let view = if args.prefixes {
        View::Prefixes
    } else {
        View::V4Sources
    };
    let mut app = App::new(view, args.by, args.n, args.ban_for.as_secs());
    let mut terminal = ratatui::try_init().map_err(|e| {
        Failure::new(
            1,
            format!(
                "cannot open the terminal UI ({e}); run `top --watch` in an interactive terminal, \
                 or use `floodgate top` (add --json for scripts)"
            ),
        )
    })?;
    let _restore = Restore;
    let (keys_tx, mut keys) = mpsc::unbounded_channel();
    std::thread::spawn(move || read_keys(&keys_tx));
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        terminal
            .draw(|frame| view::draw(frame, &app))
            .map_err(|e| Failure::new(1, format!("drawing the terminal UI: {e}")))?;
        tokio::select! {
            _ = tick.tick() => refresh(cli, &mut app).await,
            key = keys.recv() => {
                let Some(key) = key else {
                    return Err(Failure::new(1, "reading the keyboard failed; run `top --watch` in an interactive terminal"));
                };
                match app.on_key(key) {
                    Action::Nothing => {}
                    Action::Quit => return Ok(()),
                    Action::Refresh => refresh(cli, &mut app).await,
                    Action::Send(command) => {
                        let result = match ask(cli, command.request()).await {
                            Ok(Reply::Done { message }) => Ok(message),
                            Ok(other) => Err(unexpected(&other).message),
                            Err(message) => Err(message),
                        };
                        app.command_done(result);
                        refresh(cli, &mut app).await;
                    }
                }
            }
        }
    }
}

/// Forwards key presses (and resizes, as [`Key::Other`]) until the UI is gone.
fn read_keys(tx: &mpsc::UnboundedSender<Key>) {
    loop {
        let key = match event::read() {
            Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => match k.code {
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::CtrlC,
                KeyCode::Char(c) => Key::Char(c),
                KeyCode::Up => Key::Up,
                KeyCode::Down => Key::Down,
                KeyCode::Esc => Key::Esc,
                _ => Key::Other,
            },
            Ok(_) => Key::Other,
            Err(_) => return,
        };
        if tx.send(key).is_err() {
            return;
        }
    }
}

/// One request with a short timeout, the error as the status line shows it.
async fn ask(cli: &Cli, request: Request) -> Result<Reply, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call(cli, request)).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(f)) => Err(f.message),
        Err(_) => Err(format!(
            "the daemon did not answer within {}s; check its log",
            CALL_TIMEOUT.as_secs()
        )),
    }
}

async fn refresh(cli: &Cli, app: &mut App) {
    let view = app.view;
    let result = async {
        let status = match ask(cli, Request::Status).await? {
            Reply::Status(s) => *s,
            other => return Err(unexpected(&other).message),
        };
        let stats = match ask(cli, Request::Stats).await? {
            Reply::Stats(s) => s,
            other => return Err(unexpected(&other).message),
        };
        let rows = match ask(cli, app.top_request()).await? {
            Reply::Top { rows } => rows,
            other => return Err(unexpected(&other).message),
        };
        Ok((status, stats, rows))
    }
    .await;
    let now = Instant::now();
    match result {
        Ok((status, stats, rows)) => {
            app.on_stats(status, stats, now);
            app.on_rows(view, rows, now);
        }
        Err(message) => app.on_fetch_error(&message),
    }
}
