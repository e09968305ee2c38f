//! The Redis side of fleet-wide quotas (issue #15), against Debian's
//! redis-server in a lab namespace: counts two edges add to one key add up
//! and the first edge to count a source starts its window; a ban on the
//! fleet stream reaches the other edge, a reader that comes back later
//! misses nothing and an entry it cannot read is skipped; Redis down is an
//! error within the timeout, never a hang, and a restarted server is used
//! again; a wrong password is a clear error that does not show it.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use floodgate::fleet::redis::{
    self as fleet, Delta, FleetBan, RESPONSE_TIMEOUT, WindowKey, add_and_read, publish, read_after,
};
use floodgate_tests::lab::{Lab, Ns, redis::RedisServer};
use redis::aio::ConnectionManager;

const NS: &str = "floodgate";
const STREAM: &str = "floodgate:bans";

/// A lab with Redis in a namespace of its own, reached from `edge` over a
/// veth link (198.18.40.0/24).
fn lab(tag: &str, password: Option<&str>) -> Result<(Lab, Ns, RedisServer)> {
    let mut lab = Lab::new(tag)?;
    let edge = lab.add_ns("edge")?;
    let store = lab.add_ns("store")?;
    lab.link(&edge, &["198.18.40.1/24"], &store, &["198.18.40.2/24"])?;
    let listen: SocketAddr = "198.18.40.2:6390".parse()?;
    let redis = RedisServer::start(&mut lab, &store, listen, password)?;
    Ok((lab, edge, redis))
}

/// Runs `f` on a runtime inside `ns` (the sockets it opens are the
/// namespace's).
fn in_ns<T: Send + 'static>(
    ns: &Ns,
    f: impl AsyncFnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    ns.enter(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(f())
    })?
}

fn src(addr: &str, window_secs: u64) -> Result<WindowKey> {
    Ok(WindowKey::source(addr.parse()?, window_secs))
}

async fn ttl(conn: &mut ConnectionManager, key: &WindowKey) -> Result<i64> {
    Ok(redis::cmd("TTL")
        .arg(key.name(NS))
        .query_async(conn)
        .await?)
}

#[test]
fn counts_of_two_edges_add_up_and_the_fleet_s_first_sight_starts_the_window() -> Result<()> {
    let (_lab, edge, redis) = lab("rdcnt", None)?;
    let url = redis.url();
    in_ns(&edge, async move || -> Result<()> {
        let mut a = fleet::connect(&url).await?;
        let mut b = fleet::connect(&url).await?;
        let key = src("198.18.3.7", 60)?;
        let other = src("198.18.3.8", 60)?;
        let d = |key, add| Delta { key, add };
        assert_eq!(add_and_read(&mut a, NS, &[d(key, 5)]).await?, [5]);
        assert_eq!(
            add_and_read(&mut b, NS, &[d(key, 7), d(other, 1)]).await?,
            [12, 1]
        );
        assert_eq!(add_and_read(&mut a, NS, &[d(other, 2)]).await?, [3]);
        let first = ttl(&mut a, &key).await?;
        ensure!((58..=60).contains(&first), "TTL {first}");
        // A later add leaves the window where the first sight put it.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        add_and_read(&mut b, NS, &[d(key, 1)]).await?;
        let later = ttl(&mut b, &key).await?;
        ensure!(
            later < first,
            "the window restarted: TTL {first}, then {later}"
        );
        // A window that ended starts over at the next count.
        let short = src("198.18.3.9", 1)?;
        assert_eq!(add_and_read(&mut a, NS, &[d(short, 3)]).await?, [3]);
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert_eq!(add_and_read(&mut b, NS, &[d(short, 2)]).await?, [2]);
        Ok(())
    })
}

fn ban(edge: &str, target: &str) -> Result<FleetBan> {
    Ok(FleetBan {
        edge: edge.to_owned(),
        target: target.parse()?,
        reason: "fleet_quota".to_owned(),
        until_unix: 1_800_000_000,
        duration_secs: 300,
    })
}

#[test]
fn a_fleet_ban_reaches_the_other_edge_and_a_late_reader_misses_nothing() -> Result<()> {
    let (_lab, edge, redis) = lab("rdstr", None)?;
    let url = redis.url();
    in_ns(&edge, async move || -> Result<()> {
        let mut a = fleet::connect(&url).await?;
        let mut b = fleet::connect(&url).await?;
        let first = [
            ban("edge-1", "198.18.3.7/32")?,
            ban("edge-1", "198.18.4.0/24")?,
        ];
        for f in &first {
            publish(&mut a, STREAM, 1000, f).await?;
        }
        let read = read_after(&mut b, STREAM, "0", 100).await?;
        let got: Vec<FleetBan> = read.bans.iter().map(|(_, b)| b.clone()).collect();
        assert_eq!(got, first);
        assert_eq!(read.skipped, 0);
        // While edge 2 is away: two more bans and an entry not of floodgate.
        publish(&mut a, STREAM, 1000, &ban("edge-1", "fd00:f100:3::/64")?).await?;
        let _: String = redis::cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("target")
            .arg("not an address")
            .query_async(&mut a)
            .await?;
        publish(&mut a, STREAM, 1000, &ban("edge-3", "198.18.3.9/32")?).await?;
        let later = read_after(&mut b, STREAM, &read.last_id, 100).await?;
        let targets: Vec<String> = later
            .bans
            .iter()
            .map(|(_, b)| b.target.to_string())
            .collect();
        assert_eq!(targets, ["fd00:f100:3::/64", "198.18.3.9/32"]);
        assert_eq!(later.skipped, 1);
        let none = read_after(&mut b, STREAM, &later.last_id, 100).await?;
        assert!(none.bans.is_empty() && none.last_id == later.last_id);
        // The stream stays bounded.
        for i in 0..2_000u32 {
            let target = format!("198.18.{}.{}/32", 5 + i / 250, i % 250);
            publish(&mut a, STREAM, 100, &ban("edge-1", &target)?).await?;
        }
        let len: u64 = redis::cmd("XLEN").arg(STREAM).query_async(&mut a).await?;
        ensure!(
            len <= 300,
            "the stream holds {len} entries, capped at about 100"
        );
        Ok(())
    })
}

#[test]
fn redis_down_is_an_error_in_time_and_a_restarted_server_is_used_again() -> Result<()> {
    let (mut lab, edge, mut redis) = lab("rddown", None)?;
    let url = redis.url();
    let key = src("198.18.3.7", 60)?;
    let delta = [Delta { key, add: 4 }];
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (back_tx, back_rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn({
        let edge = edge.clone();
        move || {
            in_ns(&edge, async move || -> Result<()> {
                let mut c = fleet::connect(&url).await?;
                assert_eq!(add_and_read(&mut c, NS, &delta).await?, [4]);
                let _ = back_tx.send(());
                // Redis is stopped now.
                rx.recv()?;
                let t = Instant::now();
                let down = add_and_read(&mut c, NS, &delta).await;
                ensure!(down.is_err(), "a sync to a stopped Redis succeeded");
                ensure!(
                    t.elapsed() <= RESPONSE_TIMEOUT * 3,
                    "the failure took {:?}",
                    t.elapsed()
                );
                let _ = back_tx.send(());
                // Restarted (empty): the same connection manager gets through.
                rx.recv()?;
                let t = Instant::now();
                loop {
                    match add_and_read(&mut c, NS, &delta).await {
                        Ok(totals) => {
                            assert_eq!(totals, [4], "a restarted Redis starts empty");
                            return Ok(());
                        }
                        Err(e) if t.elapsed() > Duration::from_secs(10) => return Err(e.into()),
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            })
        }
    });
    back_rx.recv()?;
    redis.stop(&mut lab)?;
    tx.send(())?;
    back_rx.recv()?;
    redis.restart(&mut lab)?;
    tx.send(())?;
    client
        .join()
        .map_err(|_| anyhow::anyhow!("the client panicked"))?
}

#[test]
fn a_wrong_password_is_a_clear_error_that_does_not_show_it() -> Result<()> {
    let (_lab, edge, redis) = lab("rdauth", Some("right-one"))?;
    let wrong = redis.url().replace("right-one", "wrong-one");
    let right = redis.url();
    in_ns(&edge, async move || -> Result<()> {
        let e = fleet::connect(&wrong)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        ensure!(e.contains("check [fleet] redis"), "{e}");
        ensure!(
            !e.contains("wrong-one"),
            "the password is in the message: {e}"
        );
        let mut ok = fleet::connect(&right).await?;
        let totals = add_and_read(
            &mut ok,
            NS,
            &[Delta {
                key: src("198.18.3.7", 60)?,
                add: 1,
            }],
        )
        .await?;
        assert_eq!(totals, [1]);
        Ok(())
    })
}
