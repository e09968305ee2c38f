//! The state of `top --watch` and what every key does to it, free of the
//! terminal and of the socket: views, sort keys, selection, the confirmation
//! popup for bans.

use std::{net::IpAddr, time::Instant};

use ipnet::IpNet;

use super::rates::{RateRow, RowRates, StatRates};
use crate::{
    control::proto::{Request, Status, TopBy, TopRow},
    stats::Stats,
};

/// Which rows the table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    V4Sources,
    V6Sources,
    Prefixes,
}

impl View {
    pub const fn next(self) -> View {
        match self {
            View::V4Sources => View::V6Sources,
            View::V6Sources => View::Prefixes,
            View::Prefixes => View::V4Sources,
        }
    }

    pub const fn title(self) -> &'static str {
        match self {
            View::V4Sources => "IPv4 sources",
            View::V6Sources => "IPv6 sources",
            View::Prefixes => "prefixes",
        }
    }

    pub const fn prefixes(self) -> bool {
        matches!(self, View::Prefixes)
    }

    /// Whether a row from the daemon belongs in this view.
    pub fn keeps(self, row: &TopRow) -> bool {
        match (self, row.target.parse::<IpAddr>()) {
            (View::V4Sources, Ok(a)) => a.is_ipv4(),
            (View::V6Sources, Ok(a)) => a.is_ipv6(),
            (View::Prefixes, _) => true,
            (_, Err(_)) => false,
        }
    }

    /// Rows to ask for so that `n` remain after keeping one address family.
    pub const fn fetch(self, n: usize) -> usize {
        match self {
            View::Prefixes => n,
            View::V4Sources | View::V6Sources => n.saturating_mul(4),
        }
    }
}

pub const fn next_by(by: TopBy) -> TopBy {
    match by {
        TopBy::Packets => TopBy::Bytes,
        TopBy::Bytes => TopBy::Drops,
        TopBy::Drops => TopBy::Packets,
    }
}

pub const fn by_name(by: TopBy) -> &'static str {
    match by {
        TopBy::Packets => "packets/s",
        TopBy::Bytes => "bytes/s",
        TopBy::Drops => "drops/s",
    }
}

/// Busiest first by the rate of `by`, then by the total, then by target.
pub fn sort_rows(rows: &mut [RateRow], by: TopBy) {
    let key = |r: &RateRow| match by {
        TopBy::Packets => (r.packets_per_sec, r.row.packets),
        TopBy::Bytes => (r.bytes_per_sec, r.row.bytes),
        TopBy::Drops => (r.drops_per_sec, r.row.drops),
    };
    rows.sort_by(|a, b| {
        let ((ra, ta), (rb, tb)) = (key(a), key(b));
        rb.unwrap_or(0.0)
            .total_cmp(&ra.unwrap_or(0.0))
            .then(tb.cmp(&ta))
            .then_with(|| a.row.target.cmp(&b.row.target))
    });
}

/// A change to a ban, waiting for confirmation or sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Ban {
        addr: IpAddr,
        for_secs: u64,
    },
    /// Lifts the ban of the address and of its prefix.
    Unban {
        addr: IpAddr,
    },
}

impl Command {
    pub fn request(self) -> Request {
        match self {
            Command::Ban { addr, for_secs } => Request::BansAdd { addr, for_secs },
            Command::Unban { addr } => Request::BansClear { addr: Some(addr) },
        }
    }

    pub fn question(self) -> String {
        match self {
            Command::Ban { addr, for_secs } => format!(
                "Ban {addr} for {}?",
                humantime::format_duration(std::time::Duration::from_secs(for_secs))
            ),
            Command::Unban { addr } => format!("Lift the ban of {addr} (and of its prefix)?"),
        }
    }
}

/// A key, as far as the UI cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Up,
    Down,
    Esc,
    CtrlC,
    /// Anything else (or a resize): just redraw.
    Other,
}

/// What the event loop has to do after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Quit,
    /// The view or the sort key changed: fetch now.
    Refresh,
    /// Confirmed: send it, then report with [`App::command_done`].
    Send(Command),
}

/// The status line: the last outcome, an error in red.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusLine {
    pub text: String,
    pub error: bool,
}

#[derive(Debug)]
pub struct App {
    pub view: View,
    pub by: TopBy,
    /// Rows shown.
    pub n: usize,
    /// How long `b` bans for.
    pub ban_secs: u64,
    pub status: Option<Status>,
    pub stats: StatRates,
    pub rows: Vec<RateRow>,
    pub selected: usize,
    /// The selected row's target: the selection follows it across refreshes.
    selected_target: Option<String>,
    pub confirm: Option<Command>,
    pub line: StatusLine,
    /// The status line shows a failed refresh (cleared by the next good one).
    fetch_failed: bool,
    row_rates: RowRates,
}

impl App {
    pub fn new(view: View, by: TopBy, n: usize, ban_secs: u64) -> App {
        App {
            view,
            by,
            n: n.max(1),
            ban_secs: ban_secs.max(1),
            status: None,
            stats: StatRates::default(),
            rows: Vec::new(),
            selected: 0,
            selected_target: None,
            confirm: None,
            line: StatusLine::default(),
            fetch_failed: false,
            row_rates: RowRates::default(),
        }
    }

    /// The request for the table's rows.
    pub fn top_request(&self) -> Request {
        Request::Top {
            n: self.view.fetch(self.n),
            by: self.by,
            prefixes: self.view.prefixes(),
        }
    }

    pub fn on_stats(&mut self, status: Status, stats: Stats, at: Instant) {
        if self.fetch_failed {
            self.fetch_failed = false;
            self.line = StatusLine {
                text: "the daemon answers again".into(),
                error: false,
            };
        }
        self.status = Some(status);
        self.stats.observe(stats, at);
    }

    /// New rows for `view` (ignored when the view changed in between).
    pub fn on_rows(&mut self, view: View, rows: Vec<TopRow>, at: Instant) {
        if view != self.view {
            return;
        }
        let kept = rows.into_iter().filter(|r| view.keeps(r)).collect();
        let mut rows = self.row_rates.observe(kept, at);
        sort_rows(&mut rows, self.by);
        rows.truncate(self.n);
        self.rows = rows;
        let found = self
            .selected_target
            .as_ref()
            .and_then(|t| self.rows.iter().position(|r| &r.row.target == t));
        self.select(found.unwrap_or(self.selected));
    }

    /// The daemon could not be asked; the last data stays on screen.
    pub fn on_fetch_error(&mut self, message: &str) {
        self.error(format!("retrying every refresh: {message}"));
        self.fetch_failed = true;
    }

    pub fn command_done(&mut self, result: Result<String, String>) {
        self.fetch_failed = false;
        match result {
            Ok(message) => {
                self.line = StatusLine {
                    text: message,
                    error: false,
                }
            }
            Err(message) => self.error(message),
        }
    }

    fn error(&mut self, text: String) {
        self.line = StatusLine { text, error: true };
    }

    fn select(&mut self, index: usize) {
        self.selected = index.min(self.rows.len().saturating_sub(1));
        self.selected_target = self.rows.get(self.selected).map(|r| r.row.target.clone());
    }

    pub fn on_key(&mut self, key: Key) -> Action {
        if key == Key::CtrlC {
            return Action::Quit;
        }
        if let Some(command) = self.confirm {
            return match key {
                Key::Char('y' | 'Y') => {
                    self.confirm = None;
                    Action::Send(command)
                }
                Key::Char('n' | 'N' | 'q') | Key::Esc => {
                    self.confirm = None;
                    self.line = StatusLine {
                        text: "cancelled".into(),
                        error: false,
                    };
                    Action::Nothing
                }
                _ => Action::Nothing,
            };
        }
        match key {
            Key::Char('q') | Key::Esc => Action::Quit,
            Key::Char('s') => {
                self.by = next_by(self.by);
                sort_rows(&mut self.rows, self.by);
                self.select(0);
                Action::Refresh
            }
            Key::Char('v') => {
                self.view = self.view.next();
                self.rows.clear();
                self.select(0);
                Action::Refresh
            }
            Key::Up | Key::Char('k') => {
                self.select(self.selected.saturating_sub(1));
                Action::Nothing
            }
            Key::Down | Key::Char('j') => {
                self.select(self.selected.saturating_add(1));
                Action::Nothing
            }
            Key::Char('b') => self.ask(true),
            Key::Char('u') => self.ask(false),
            _ => Action::Nothing,
        }
    }

    /// Opens the confirmation for banning or unbanning the selected row.
    fn ask(&mut self, ban: bool) -> Action {
        let Some(row) = self.rows.get(self.selected) else {
            self.error("no row selected: wait for traffic, or switch the view with v".into());
            return Action::Nothing;
        };
        let target = &row.row.target;
        let command = match (ban, target.parse::<IpAddr>(), target.parse::<IpNet>()) {
            (true, Ok(addr), _) => Command::Ban {
                addr,
                for_secs: self.ban_secs,
            },
            (true, Err(_), _) => {
                self.error(format!(
                    "{target} is a prefix: ban single sources (press v for a sources view), \
                     or block the prefix with `floodgate block add {target} --for 1h`"
                ));
                return Action::Nothing;
            }
            (false, Ok(addr), _) => Command::Unban { addr },
            (false, Err(_), Ok(net)) => Command::Unban {
                addr: net.network(),
            },
            (false, Err(_), Err(_)) => {
                self.error(format!("{target:?} is neither an address nor a prefix"));
                return Action::Nothing;
            }
        };
        self.confirm = Some(command);
        Action::Nothing
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cli::top_watch::rates::tests::row;

    fn status() -> Status {
        Status {
            version: "0.1.0".into(),
            mode: crate::control::proto::Mode::Enforce,
            interfaces: Vec::new(),
            program_id: 1,
            uptime_secs: 5,
            config_source: "default".into(),
            adopted_pinned_state: false,
            pin_dir: "/sys/fs/bpf/floodgate".into(),
            maps: Vec::new(),
            source_inserts: 0,
            eviction_pressure: false,
            events_suppressed: 0,
            events_lost: 0,
            log_lines_suppressed: 0,
            kernel_memory: None,
            active_bans: None,
            crowdsec: None,
            sets: Vec::new(),
            aggregates: Vec::new(),
        }
    }

    fn app_with(rows: Vec<TopRow>) -> App {
        let mut app = App::new(View::V4Sources, TopBy::Packets, 10, 3600);
        app.on_rows(View::V4Sources, rows, Instant::now());
        app
    }

    #[test]
    fn views_cycle_and_filter_by_family() {
        let v4 = row("198.18.1.2", 1, 1, 0);
        let v6 = row("2001:db8::1", 1, 1, 0);
        let net = row("198.18.1.0/24", 1, 1, 0);
        assert!(View::V4Sources.keeps(&v4) && !View::V4Sources.keeps(&v6));
        assert!(View::V6Sources.keeps(&v6) && !View::V6Sources.keeps(&v4));
        assert!(!View::V4Sources.keeps(&net));
        assert!(View::Prefixes.keeps(&net));
        assert_eq!(View::V4Sources.next().next().next(), View::V4Sources);
        let mut app = app_with(vec![v4, v6]);
        assert_eq!(app.rows.len(), 1);
        assert_eq!(app.on_key(Key::Char('v')), Action::Refresh);
        assert_eq!(app.view, View::V6Sources);
        assert!(app.rows.is_empty(), "old view's rows are gone");
        assert!(matches!(
            app.top_request(),
            Request::Top {
                prefixes: false,
                n: 40,
                ..
            }
        ));
        app.on_key(Key::Char('v'));
        assert!(matches!(
            app.top_request(),
            Request::Top { prefixes: true, .. }
        ));
        // A late answer for the previous view is dropped.
        app.on_rows(
            View::V6Sources,
            vec![row("2001:db8::1", 1, 1, 0)],
            Instant::now(),
        );
        assert!(app.rows.is_empty());
    }

    #[test]
    fn sorting_uses_rates_then_totals_and_s_cycles_the_key() {
        let t0 = Instant::now();
        let mut app = App::new(View::V4Sources, TopBy::Packets, 2, 60);
        app.on_rows(
            View::V4Sources,
            vec![
                row("10.0.0.1", 5000, 100, 0),
                row("10.0.0.2", 100, 900_000, 90),
                row("10.0.0.3", 50, 10, 1),
            ],
            t0,
        );
        let order =
            |app: &App| -> Vec<String> { app.rows.iter().map(|r| r.row.target.clone()).collect() };
        assert_eq!(order(&app), ["10.0.0.1", "10.0.0.2"], "totals, cut to n");
        // .2 is now the busiest per second although .1 has more in total.
        app.on_rows(
            View::V4Sources,
            vec![
                row("10.0.0.1", 5010, 110, 0),
                row("10.0.0.2", 1100, 990_000, 990),
            ],
            t0 + Duration::from_secs(1),
        );
        assert_eq!(order(&app), ["10.0.0.2", "10.0.0.1"]);
        assert_eq!(app.on_key(Key::Char('s')), Action::Refresh);
        assert_eq!(app.by, TopBy::Bytes);
        app.on_key(Key::Char('s'));
        assert_eq!(app.by, TopBy::Drops);
        app.on_key(Key::Char('s'));
        assert_eq!(app.by, TopBy::Packets);
    }

    #[test]
    fn selection_moves_within_bounds_and_follows_its_row() {
        let t0 = Instant::now();
        let mut app = app_with(vec![
            row("10.0.0.1", 300, 0, 0),
            row("10.0.0.2", 200, 0, 0),
            row("10.0.0.3", 100, 0, 0),
        ]);
        app.on_key(Key::Up);
        assert_eq!(app.selected, 0);
        app.on_key(Key::Down);
        app.on_key(Key::Char('j'));
        app.on_key(Key::Char('j'));
        assert_eq!(app.selected, 2);
        app.on_key(Key::Char('k'));
        assert_eq!(app.selected, 1);
        // 10.0.0.2 becomes the busiest: the selection moves with it.
        app.on_rows(
            View::V4Sources,
            vec![row("10.0.0.1", 300, 0, 0), row("10.0.0.2", 900, 0, 0)],
            t0 + Duration::from_secs(1),
        );
        assert_eq!(app.rows[app.selected].row.target, "10.0.0.2");
        // Its row is gone: the index is kept in range.
        app.on_key(Key::Down);
        app.on_rows(
            View::V4Sources,
            vec![row("10.0.0.9", 1, 0, 0)],
            t0 + Duration::from_secs(2),
        );
        assert_eq!(app.selected, 0);
    }

    #[test]
    fn ban_and_unban_wait_for_confirmation() {
        let mut app = app_with(vec![row("198.18.1.2", 10, 0, 0)]);
        let addr: IpAddr = "198.18.1.2".parse().expect("address");
        assert_eq!(app.on_key(Key::Char('b')), Action::Nothing);
        assert_eq!(
            app.confirm,
            Some(Command::Ban {
                addr,
                for_secs: 3600
            })
        );
        assert_eq!(app.on_key(Key::Char('q')), Action::Nothing, "q cancels");
        assert_eq!(app.confirm, None);
        assert_eq!(app.line.text, "cancelled");
        app.on_key(Key::Char('b'));
        assert_eq!(app.on_key(Key::Char('x')), Action::Nothing, "ignored");
        assert!(app.confirm.is_some());
        assert_eq!(app.on_key(Key::Esc), Action::Nothing);
        assert_eq!(app.confirm, None);
        app.on_key(Key::Char('u'));
        let sent = app.on_key(Key::Char('y'));
        assert_eq!(sent, Action::Send(Command::Unban { addr }));
        assert!(matches!(
            Command::Unban { addr }.request(),
            Request::BansClear { addr: Some(a) } if a == addr
        ));
        app.command_done(Err("daemon said no".into()));
        assert!(app.line.error);
        assert_eq!(app.on_key(Key::CtrlC), Action::Quit);
    }

    #[test]
    fn prefixes_can_be_unbanned_not_banned() {
        let mut app = App::new(View::Prefixes, TopBy::Packets, 5, 60);
        app.on_rows(
            View::Prefixes,
            vec![row("198.18.1.0/24", 10, 0, 0)],
            Instant::now(),
        );
        app.on_key(Key::Char('b'));
        assert_eq!(app.confirm, None);
        assert!(app.line.error && app.line.text.contains("block add 198.18.1.0/24"));
        app.on_key(Key::Char('u'));
        assert_eq!(
            app.confirm,
            Some(Command::Unban {
                addr: "198.18.1.0".parse().expect("address")
            })
        );
    }

    #[test]
    fn keys_without_rows_or_with_quit() {
        let mut app = app_with(Vec::new());
        app.on_key(Key::Char('b'));
        assert!(app.line.error && app.confirm.is_none());
        app.on_fetch_error("no floodgate daemon listens on /run/x");
        assert!(app.line.error && app.line.text.contains("retrying"));
        // The daemon is back: the error goes, the header fills in.
        app.on_stats(status(), Stats::default(), Instant::now());
        assert!(!app.line.error);
        assert_eq!(app.line.text, "the daemon answers again");
        assert!(app.status.is_some());
        assert_eq!(app.on_key(Key::Char('q')), Action::Quit);
        assert_eq!(app.on_key(Key::Esc), Action::Quit);
    }
}
