//! The shop: Debian's nginx serving a small catalogue from a private directory,
//! inside the edge namespace (so it listens on the lab's addresses only).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::lab::{Lab, Ns};

/// Product pages in the catalogue (`/product/1.html` …).
pub const PRODUCTS: u32 = 50;

/// A running nginx; the lab stops it when it drops.
pub struct Nginx {
    dir: PathBuf,
    pid: u32,
}

impl Nginx {
    /// Writes the config and catalogue under `dir` and starts nginx in `edge`,
    /// listening on port 80 of every address there (IPv4 and IPv6). Waits until
    /// it accepts connections on `probe` (an edge address).
    pub fn start(lab: &mut Lab, edge: &Ns, dir: &Path, probe: SocketAddr) -> Result<Nginx> {
        let www = dir.join("www");
        std::fs::create_dir_all(www.join("product"))?;
        std::fs::write(www.join("index.html"), page("floodgate lab shop", 40))?;
        for i in 1..=PRODUCTS {
            std::fs::write(
                www.join(format!("product/{i}.html")),
                page(&format!("product {i}"), 30),
            )?;
        }
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(dir))?;
        let log = dir.join("nginx.out");
        let conf_arg = conf.display().to_string();
        let prefix = format!("{}/", dir.display());
        let pid = lab
            .spawn_logged(
                edge,
                "nginx",
                &["-p", &prefix, "-c", &conf_arg, "-e", "stderr"],
                &log,
            )
            .context("starting nginx (installed by `cargo xtask setup`)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let up = edge.enter(move || {
                TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok()
            })?;
            if up {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "nginx did not listen on {probe} within 10 s; its output:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Nginx {
            dir: dir.to_owned(),
            pid,
        })
    }

    /// The directory nginx serves (`/` is `www/` under the lab's `dir`).
    pub fn www(&self) -> PathBuf {
        self.dir.join("www")
    }

    /// Stops nginx (a server gone down); [`Nginx::start`] on the same `dir`
    /// brings it back.
    pub fn stop(&self, lab: &mut Lab) -> Result<()> {
        lab.stop(self.pid, nix::sys::signal::Signal::SIGTERM)?;
        Ok(())
    }

    /// Requests answered so far, per client address and status code.
    pub fn served(&self) -> Result<Served> {
        let path = self.dir.join("access.log");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut served = Served::default();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(addr), Some(status)) = (fields.next(), fields.next()) else {
                continue;
            };
            let (Ok(addr), Ok(status)) = (addr.parse::<IpAddr>(), status.parse::<u16>()) else {
                continue;
            };
            *served.by_client.entry((addr, status)).or_default() += 1;
        }
        Ok(served)
    }
}

/// Parsed access log.
#[derive(Debug, Default, Clone)]
pub struct Served {
    by_client: HashMap<(IpAddr, u16), u64>,
}

impl Served {
    /// Requests from `addr` answered with 200.
    pub fn ok(&self, addr: IpAddr) -> u64 {
        self.by_client.get(&(addr, 200)).copied().unwrap_or(0)
    }

    /// Requests answered with 200 to any address `pred` accepts.
    pub fn ok_where(&self, pred: impl Fn(IpAddr) -> bool) -> u64 {
        self.by_client
            .iter()
            .filter(|((a, s), _)| *s == 200 && pred(*a))
            .map(|(_, n)| n)
            .sum()
    }
}

fn page(title: &str, lines: u32) -> String {
    let mut body = format!("<!doctype html><title>{title}</title><h1>{title}</h1>\n");
    for i in 0..lines {
        body += &format!("<p>line {i}: a description long enough to look like a page</p>\n");
    }
    body
}

/// One worker, everything under `dir`; the access log records the client
/// address and status of every request (unbuffered, so counts are current).
fn config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes 1;
daemon off;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format lab '$remote_addr $status $request_time';
    access_log {d}/access.log lab;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 30s;
    server {{
        listen 80 default_server;
        listen [::]:80 default_server ipv6only=on;
        root {d}/www;
        location / {{ }}
    }}
}}
"#
    )
}
