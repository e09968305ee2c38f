//! The endpoint over a real socket on 127.0.0.1, with a stub engine.

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    time::timeout,
};

use super::*;
use crate::{
    control::proto::{Reply, Request as Ask, Response as Answer},
    daemon::metrics::render::tests::fixture,
};

const LONG: Duration = Duration::from_secs(5);

/// An engine answering status and stats with the render fixture (or, when
/// `broken`, refusing everything).
fn engine(broken: bool) -> mpsc::Sender<Call> {
    let (tx, mut rx) = mpsc::channel::<Call>(8);
    tokio::spawn(async move {
        let (status, stats) = fixture();
        while let Some((ask, reply)) = rx.recv().await {
            let answer = match (broken, ask) {
                (true, _) => Answer::Error("no".to_owned()),
                (false, Ask::Status) => Answer::Ok(Reply::Status(Box::new(status.clone()))),
                (false, Ask::Stats) => Answer::Ok(Reply::Stats(stats.clone())),
                (false, _) => Answer::Error("unexpected".to_owned()),
            };
            let _ = reply.send(answer);
        }
    });
    tx
}

/// Serves on an ephemeral loopback port.
async fn start(limits: Limits, broken: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, engine(broken), limits));
    addr
}

/// One HTTP/1.1 client connection; `buf` keeps what was read past a response.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A response: the status line and headers (names lowercased), and the body.
#[derive(Debug)]
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = timeout(LONG, self.stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Sends `method path` and reads the response (no body after HEAD).
    async fn send(&mut self, method: &str, path: &str) -> Got {
        let request = format!("{method} {path} HTTP/1.1\r\nhost: test\r\n\r\n");
        self.stream
            .write_all(request.as_bytes())
            .await
            .expect("write");
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            assert!(self.fill().await > 0, "closed before a response");
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("utf-8 head");
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        assert!(status_line.starts_with("HTTP/1.1 "), "{head}");
        let status = status_line[9..12].parse().expect("status code");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut reply = Got {
            status,
            headers,
            body: String::new(),
        };
        let len: usize = reply
            .header("content-length")
            .expect("content-length")
            .parse()
            .expect("a length");
        if method != "HEAD" {
            while self.buf.len() < len {
                assert!(self.fill().await > 0, "closed mid-body");
            }
            reply.body = String::from_utf8(self.buf.drain(..len).collect()).expect("utf-8");
        }
        reply
    }

    /// What the server sends before it closes the connection, if it closes it
    /// within `within`.
    async fn closed_within(&mut self, within: Duration) -> Option<Vec<u8>> {
        let mut rest = Vec::new();
        match timeout(within, self.stream.read_to_end(&mut rest)).await {
            Ok(Ok(_)) => Some(rest),
            Ok(Err(e)) => panic!("read: {e}"),
            Err(_) => None,
        }
    }
}

#[tokio::test]
async fn get_metrics_is_the_exposition() {
    let addr = start(Limits::DEFAULT, false).await;
    let mut c = Client::connect(addr).await;
    let r = c.send("GET", "/metrics").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some(EXPOSITION));
    assert!(r.body.contains("floodgate_build_info{version=\"0.1.0\"} 1"));
    assert!(r.body.contains("floodgate_active_bans 2"), "{}", r.body);
    assert!(r.body.ends_with("# EOF\n"), "{}", r.body);
    let (status, stats) = fixture();
    let rendered = super::super::render(&status, &stats, 2).expect("render");
    // Series come in hash order: the same lines, in any order.
    let lines = |text: &str| {
        let mut l: Vec<String> = text.lines().map(str::to_owned).collect();
        l.sort();
        l
    };
    assert_eq!(lines(&r.body), lines(&rendered));
    // A query string changes nothing.
    let q = c.send("GET", "/metrics?x=1").await;
    assert_eq!((q.status, lines(&q.body)), (200, lines(&rendered)));
}

#[tokio::test]
async fn one_connection_carries_several_scrapes() {
    let addr = start(Limits::DEFAULT, false).await;
    let mut c = Client::connect(addr).await;
    for _ in 0..2 {
        let r = c.send("GET", "/metrics").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_ne!(r.header("connection"), Some("close"));
        assert!(r.body.contains("floodgate_packets_total"));
    }
    assert!(c.buf.is_empty());
}

#[tokio::test]
async fn head_has_the_headers_and_no_body() {
    let addr = start(Limits::DEFAULT, false).await;
    let mut c = Client::connect(addr).await;
    let head = c.send("HEAD", "/metrics").await;
    // The next response on the connection starts right after the headers.
    let get = c.send("GET", "/metrics").await;
    assert_eq!((head.status, get.status), (200, 200));
    assert_eq!(head.header("content-type"), Some(EXPOSITION));
    assert_eq!(
        head.header("content-length"),
        Some(get.body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let addr = start(Limits::DEFAULT, false).await;
    let mut c = Client::connect(addr).await;
    for method in ["POST", "PUT", "DELETE"] {
        let r = c.send(method, "/metrics").await;
        assert_eq!(r.status, 405, "{method}: {r:?}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
}

#[tokio::test]
async fn other_paths_are_404() {
    let addr = start(Limits::DEFAULT, false).await;
    let mut c = Client::connect(addr).await;
    for path in ["/other", "/", "/metrics/x", "/metricsx"] {
        let r = c.send("GET", path).await;
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert_eq!(r.body, "floodgate serves /metrics\n");
    }
}

#[tokio::test]
async fn an_unreadable_engine_is_503() {
    let addr = start(Limits::DEFAULT, true).await;
    let mut c = Client::connect(addr).await;
    let r = c.send("GET", "/metrics").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("content-type"), Some(TEXT));
}

const QUICK: Limits = Limits {
    header_read_timeout: Duration::from_millis(200),
    max_connections: 64,
};

#[tokio::test]
async fn a_slow_request_head_is_dropped() {
    let addr = start(QUICK, false).await;
    let mut c = Client::connect(addr).await;
    c.stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\n")
        .await
        .expect("write");
    assert!(
        c.closed_within(LONG).await.is_some(),
        "the slow client is still held"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_dropped() {
    let addr = start(QUICK, false).await;
    let mut c = Client::connect(addr).await;
    assert_eq!(c.send("GET", "/metrics").await.status, 200);
    // Closed without a word: a client reading to the end gets one response.
    assert_eq!(
        c.closed_within(LONG).await.as_deref(),
        Some(&b""[..]),
        "the idle client is still held"
    );
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_slot() {
    let addr = start(
        Limits {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 1,
        },
        false,
    )
    .await;
    let mut first = Client::connect(addr).await;
    assert_eq!(first.send("GET", "/metrics").await.status, 200);
    // The kernel completes the handshake; floodgate does not read it yet.
    let mut second = Client::connect(addr).await;
    second
        .stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("write");
    let mut byte = [0u8; 1];
    let early = timeout(Duration::from_millis(300), second.stream.read(&mut byte)).await;
    assert!(early.is_err(), "served over the cap: {early:?}");
    drop(first);
    let n = timeout(LONG, second.stream.read(&mut byte))
        .await
        .expect("served once the first left")
        .expect("read");
    assert_eq!((n, byte[0]), (1, b'H'));
}
