//! `floodgate top --watch` in a real terminal (a private tmux server) against
//! the real daemon and a real flood: the table, the views, a ban and an unban
//! through the keys, and a clean exit.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use floodgate_tests::{
    daemon::{DaemonLab, UDP_LIMITED, to_crawler_side},
    lab::traffic::{UdpSink, udp_send},
    packets::ip,
};

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-cli");

/// No automatic bans, so only the UI's `b` bans.
const LIMITED: &str = UDP_LIMITED;

const CRAWLER: &str = "198.18.1.2";
/// What the pane's shell prints, followed by the UI's exit status.
const EXITED: &str = "floodgate exited with status ";

/// How long one screen state may take to show up on a busy machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// A tmux server of our own (its socket and config in a private directory),
/// killed with everything in it on drop.
struct Tmux {
    dir: tempfile::TempDir,
    session: String,
}

impl Tmux {
    /// Runs `command` in a detached 160×48 session. The pane stays after the
    /// command exits, so its last screen can be read.
    fn start(command: &str) -> Result<Tmux> {
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("tmux.conf");
        std::fs::write(&conf, "set -g remain-on-exit on\nset -g status off\n")?;
        let tmux = Tmux {
            dir,
            session: format!("fgtop-{}", std::process::id()),
        };
        tmux.run(&[
            "-f",
            conf.to_str().context("tmux config path")?,
            "new-session",
            "-d",
            "-s",
            &tmux.session,
            "-x",
            "160",
            "-y",
            "48",
            command,
        ])?;
        Ok(tmux)
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("tmux.sock")
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(self.socket())
            .args(args)
            .output()
            .context("running tmux; install it with `cargo xtask setup`")?;
        if !out.status.success() {
            bail!(
                "`tmux {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn screen(&self) -> Result<String> {
        self.run(&["capture-pane", "-p", "-t", &self.session])
    }

    fn keys(&self, keys: &str) -> Result<()> {
        self.run(&["send-keys", "-t", &self.session, keys])
            .map(drop)
    }

    /// Polls the screen until `ok` holds; the error shows the last screen.
    fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut last = String::new();
        while Instant::now() < deadline {
            last = self.screen()?;
            if ok(&last) {
                return Ok(last);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "the screen did not show {what} within {}s; last screen:\n{last}",
            PATIENCE.as_secs()
        )
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(self.socket())
            .arg("kill-server")
            .output();
    }
}

/// The first table row under the header that starts with `first` (SOURCE/PREFIX).
fn first_row<'a>(screen: &'a str, first: &str) -> Option<&'a str> {
    let mut lines = screen.lines();
    lines.find(|l| l.contains(first) && l.contains("PACKETS/S"))?;
    lines.next()
}

fn first_row_is(screen: &str, first: &str, target: &str) -> bool {
    first_row(screen, first).is_some_and(|row| row.split_whitespace().any(|w| w == target))
}

/// The "dropped  N/s" rate on the screen, when it is above zero.
fn dropping(screen: &str) -> bool {
    screen.lines().any(|l| {
        let mut words = l.trim_start_matches('│').split_whitespace();
        words.next() == Some("dropped")
            && words
                .next()
                .is_some_and(|rate| rate.ends_with("/s") && rate != "0/s")
    })
}

fn banned(d: &DaemonLab) -> Result<Vec<String>> {
    let bans = d.json(&["bans", "list"])?;
    Ok(bans
        .as_array()
        .context("bans list is an array")?
        .iter()
        .filter_map(|b| b["target"].as_str().map(str::to_owned))
        .collect::<Vec<_>>())
}

fn shell_quote(p: &Path) -> Result<String> {
    let s = p.to_str().context("path is not UTF-8")?;
    Ok(format!("'{}'", s.replace('\'', r"'\''")))
}

#[test]
fn top_watch_shows_the_flood_and_bans_with_keys() -> Result<()> {
    let mut d = DaemonLab::new("toptui", BIN, LIMITED)?;
    d.start()?;
    let sink = UdpSink::bind(&d.edge, "0.0.0.0:9000".parse()?)?;
    // A flood well over the limit: most of it is dropped as rate_packets.
    udp_send(
        &d.crawler,
        ip(CRAWLER),
        to_crawler_side(),
        3000,
        64,
        Some(1500),
    )?;
    let stats = d.json(&["stats"])?;
    assert!(
        stats["by_reason"]["rate_packets"]["packets"]
            .as_u64()
            .unwrap_or(0)
            > 1000,
        "the flood was limited: {stats}"
    );
    assert_eq!(banned(&d)?, Vec::<String>::new(), "no bans before the UI");

    // The shell reaps the UI and prints its exit status on the main screen, then
    // sleeps so the pane (and the line) stay: the test reads the status there,
    // not from tmux, whose server was seen (in some full-suite runs) to leave the
    // exited UI unreaped for over 20 s, and which drops a dead pane's last output.
    // The sleep goes with the tmux server on drop.
    let command = format!(
        "{} --socket {} top --watch --interval 500ms; echo \"{EXITED}$?\"; exec sleep 600",
        shell_quote(Path::new(BIN))?,
        shell_quote(&d.socket())?
    );
    let tmux = Tmux::start(&command)?;
    std::thread::scope(|s| -> Result<()> {
        // More flood while the UI runs, so it has a drop rate to show.
        let flood = s.spawn(|| {
            udp_send(
                &d.crawler,
                ip(CRAWLER),
                to_crawler_side(),
                8000,
                64,
                Some(1000),
            )
        });

        let screen = tmux.wait("the crawler as the first IPv4 source", |s| {
            first_row_is(s, "SOURCE", CRAWLER) && s.contains("IPv4 sources")
        })?;
        assert!(screen.contains("mode enforce"), "{screen}");
        assert!(screen.contains("interfaces"), "{screen}");
        tmux.wait("the rate_packets reason and a drop rate", |s| {
            s.contains("rate_packets") && dropping(s)
        })?;

        tmux.keys("v")?;
        let screen = tmux.wait("the IPv6 view", |s| s.contains("IPv6 sources"))?;
        assert!(
            !screen.contains(CRAWLER),
            "IPv4 rows left the IPv6 view:\n{screen}"
        );
        tmux.keys("v")?;
        tmux.wait("the crawler's /24 as the first prefix", |s| {
            first_row_is(s, "PREFIX", "198.18.1.0/24")
        })?;
        tmux.keys("v")?;
        tmux.wait("the IPv4 view again", |s| {
            first_row_is(s, "SOURCE", CRAWLER) && s.contains("IPv4 sources")
        })?;

        // Select the top row (k stops there), then ban it through the popup.
        tmux.keys("k")?;
        tmux.wait("the crawler selected", |s| {
            first_row(s, "SOURCE").is_some_and(|r| r.contains(&format!("▶ {CRAWLER}")))
        })?;
        tmux.keys("b")?;
        tmux.wait("the ban confirmation", |s| {
            s.contains(&format!("Ban {CRAWLER} for 1h?"))
        })?;
        assert_eq!(banned(&d)?, Vec::<String>::new(), "nothing banned before y");
        tmux.keys("y")?;
        tmux.wait("the ban's result and the ban in the row", |s| {
            s.contains(&format!("banned {CRAWLER} for 1h"))
                && first_row(s, "SOURCE").is_some_and(|r| r.contains("banned ("))
        })?;
        assert_eq!(banned(&d)?, vec![format!("{CRAWLER}/32")]);
        flood
            .join()
            .map_err(|_| anyhow::anyhow!("the flood thread panicked"))??;
        Ok(())
    })?;

    // The ban is real: the crawler's packets no longer get through.
    let before = sink.from(ip(CRAWLER));
    udp_send(
        &d.crawler,
        ip(CRAWLER),
        to_crawler_side(),
        5,
        64,
        Some(1000),
    )?;
    sink.wait_quiet(Duration::from_millis(300), Duration::from_secs(5));
    assert_eq!(sink.from(ip(CRAWLER)), before, "banned traffic passed");

    // u asks too; n cancels, y lifts the ban.
    tmux.keys("u")?;
    tmux.wait("the unban confirmation", |s| {
        s.contains(&format!("Lift the ban of {CRAWLER}"))
    })?;
    tmux.keys("n")?;
    tmux.wait("the cancellation", |s| s.contains("cancelled"))?;
    assert_eq!(banned(&d)?, vec![format!("{CRAWLER}/32")], "n kept the ban");
    tmux.keys("u")?;
    tmux.wait("the unban confirmation", |s| {
        s.contains(&format!("Lift the ban of {CRAWLER}"))
    })?;
    tmux.keys("y")?;
    tmux.wait("the unban's result", |s| s.contains("cleared 1 ban(s)"))?;
    assert_eq!(banned(&d)?, Vec::<String>::new());
    // The same request from the command line, with its own duration.
    d.ok(&["bans", "add", CRAWLER, "--for", "10m"])?;
    let bans = d.json(&["bans", "list"])?;
    assert_eq!(bans[0]["target"], format!("{CRAWLER}/32"));
    let remaining = bans[0]["remaining_secs"].as_f64().unwrap_or(0.0);
    assert!((500.0..=600.0).contains(&remaining), "{bans}");
    tmux.wait("the CLI's ban in the row", |s| {
        first_row(s, "SOURCE").is_some_and(|r| r.contains("banned (") && r.contains("m "))
    })?;

    // q quits with status 0 and gives the terminal back (main screen again).
    tmux.keys("q")?;
    tmux.wait("the UI's exit", |s| s.contains(EXITED))?;
    let screen = tmux.screen()?;
    let status = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix(EXITED))
        .map(str::to_owned);
    assert_eq!(
        status.as_deref(),
        Some("0"),
        "exit status 0; screen:\n{screen}"
    );
    assert!(
        !screen.contains("PACKETS/S"),
        "the alternate screen was left:\n{screen}"
    );
    Ok(())
}
