//! The markdown table on stdout and `target/bench/latest.json`.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{Value, json};

pub fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": kernel.trim(),
    })
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

pub fn print(r: &Value) {
    let m = &r["machine"];
    println!(
        "## floodgate benchmark — {}\n",
        r["date"].as_str().unwrap_or("")
    );
    println!(
        "{} ({} cores), kernel {}{}\n",
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"],
        m["kernel"].as_str().unwrap_or("?"),
        if r["quick"].as_bool() == Some(true) {
            " — quick run"
        } else {
            ""
        }
    );
    println!(
        "### In-kernel cost per packet (BPF_PROG_TEST_RUN; median of {} runs × {} packets, each run right after a bare XDP_DROP run)\n",
        r["config"]["test_run_runs"], r["config"]["test_run_repeat"]
    );
    println!("| path | ns/packet | above bare XDP_DROP |\n|---|---:|---:|");
    for row in r["kernel"].as_array().into_iter().flatten() {
        println!(
            "| {} | {:.1} | {:+.1} |",
            row["path"].as_str().unwrap_or(""),
            f(&row["ns"]),
            f(&row["above_floor_ns"])
        );
    }
    for row in r["kernel"].as_array().into_iter().flatten() {
        let Some(samples) = row["profile"].as_array() else {
            continue;
        };
        println!(
            "\nProfile of \"{}\" (perf cpu-clock samples on the test_run CPU, ≥ 1%):\n",
            row["path"].as_str().unwrap_or("")
        );
        print_profile(samples);
    }
    print_before(&r["before"]);
    println!(
        "\n### Live drop rate on veth (ratio to a bare XDP_DROP in the same round)\n\n\
         Per-source limit for every limiter: {} with one source, {} (a burst of 1) with many: \
         floodgate and the XDP limiters get an unmeasured warm-up round there, so every \
         measured frame is over a tracked source's limit; nft and hashlimit start each \
         round empty (they rebuild their tables on install).\n",
        r["config"]["limit_one_source"].as_str().unwrap_or("?"),
        r["config"]["limit_many_sources"].as_str().unwrap_or("?")
    );
    println!(
        "| sources | filter | ratio (median) | [min–max] | ns/packet above XDP_DROP | flags |\n|---:|---|---:|---|---:|---|"
    );
    for row in r["live"].as_array().into_iter().flatten() {
        let flags: Vec<&str> = row["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "| {} | {} | {:.2} | {:.2}–{:.2} | {:.0} | {} |",
            row["sources"],
            row["filter"].as_str().unwrap_or(""),
            f(&row["ratio_to_xdp_drop"]),
            f(&row["ratio_min"]),
            f(&row["ratio_max"]),
            f(&row["ns_above_xdp_drop"]),
            flags.join("; ")
        );
    }
    for row in r["live"].as_array().into_iter().flatten() {
        let Some(samples) = row["profile"].as_array() else {
            continue;
        };
        println!(
            "\nProfile of \"{}\" with {} sources (perf cpu-clock samples on the CPU of the \
             generator and the receiver, ≥ 1%):\n",
            row["filter"].as_str().unwrap_or(""),
            row["sources"]
        );
        print_profile(samples);
    }
    let o = &r["over_capacity"];
    println!(
        "\n### Spoofed flood beyond capacity\n\n{} distinct sources into a {}-entry source map with a {} pps \
         new-source budget for {:.1} s: {} of {} packets passed ({:.1}%: repeats of admitted sources, within their \
         own limit); {} sources admitted once the map was under pressure, budget bound {} — {}.",
        o["distinct_sources"],
        o["source_capacity"],
        o["new_source_budget_pps"],
        f(&o["seconds"]),
        o["passed"],
        o["seen"],
        100.0 * f(&o["passed_share"]),
        o["admitted_under_pressure"],
        o["budget_bound"],
        if o["within_bound"].as_bool() == Some(true) {
            "floodgate does not fail open"
        } else {
            "OVER THE BUDGET"
        }
    );
    println!("\n### Control plane\n");
    let w = &r["walks"];
    let verdict = |ok: &Value| {
        if ok.as_bool() == Some(true) {
            "within the claim"
        } else {
            "OVER THE CLAIM"
        }
    };
    println!(
        "- through the daemon over {} tracked sources and {} bans: `top -n 20` {:.0} ms (median; max {:.0} ms,          claim < {:.0} ms — {}), `status` {:.0} ms",
        w["sources_tracked"],
        w["bans"],
        f(&w["top_ms"]["median"]),
        f(&w["top_ms"]["max"]),
        crate::walks::TOP_MS_MAX,
        verdict(&w["top_within_claim"]),
        f(&w["status_ms"]["median"]),
    );
    println!(
        "- control requests (block add, stats, block remove) at rest: {:.1} ms median, {:.1} ms max;          while two clients scrape /metrics back to back ({} scrapes in {:.1} s): {:.1} ms median, {:.1} ms max;          the worst delay over the median at rest {:.1} ms (claim < {:.0} ms — {})",
        f(&w["control_ms_at_rest"]["median"]),
        f(&w["control_ms_at_rest"]["max"]),
        w["scrapes_during_storm"],
        f(&w["storm_seconds"]),
        f(&w["control_ms_under_scrapes"]["median"]),
        f(&w["control_ms_under_scrapes"]["max"]),
        f(&w["scrape_delay_ms"]),
        crate::walks::DELAY_MS_MAX,
        verdict(&w["delay_within_claim"]),
    );
    println!(
        "- with 100 000 block CIDRs loaded (reload {:.0} ms), the same control requests: {:.1} ms median, {:.1} ms max",
        f(&w["reload_100k_block_cidrs_ms"]),
        f(&w["control_ms_with_100k_block_cidrs"]["median"]),
        f(&w["control_ms_with_100k_block_cidrs"]["max"]),
    );
    if let Some(maps) = r["maps_memory_bytes"].as_object() {
        let total: u64 = maps.values().filter_map(Value::as_u64).sum();
        println!(
            "- kernel memory of the maps at 1,048,576 sources: {:.1} MiB ({})",
            total as f64 / 1_048_576.0,
            maps.iter()
                .map(|(k, v)| format!(
                    "{k} {:.1} MiB",
                    v.as_u64().unwrap_or(0) as f64 / 1_048_576.0
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let m = &r["defaults"];
    if m.is_object() {
        println!(
            "- at the default capacities ({} sources, {} prefixes, {} bans): {:.1} MiB of kernel memory ({}); \
             after {} distinct IPv4 sources ({} sent), {} tracked ({:.1}%)",
            m["capacity"]["sources"],
            m["capacity"]["prefixes"],
            m["capacity"]["bans"],
            f(&m["kernel_memory_bytes"]) / 1_048_576.0,
            m["per_map_bytes"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| v.as_u64().unwrap_or(0) >= 1 << 20)
                .map(|(k, v)| format!("{k} {:.1} MiB", f(v) / 1_048_576.0))
                .collect::<Vec<_>>()
                .join(", "),
            m["distinct_sources"],
            m["sent"],
            m["tracked_after"],
            100.0 * f(&m["tracked_share"]),
        );
    }
    let d = &r["daemon"];
    println!(
        "- daemon RSS: {} KiB at rest, {} KiB under a flood, {} KiB after loading 100 000 CIDRs",
        d["daemon_rss_kib_at_rest"],
        d["daemon_rss_kib_under_flood"],
        d["daemon_rss_kib_after_100k_cidr_reload"]
    );
    println!(
        "- reload to 100 000 block CIDRs under a flood: {:.0} ms ({} entries after); the flood delivered {} packets \
         in {:.1} s against {:.0} allowed by its limit — {}",
        f(&d["reload_100k_cidrs_ms"]),
        d["block_entries_after_reload"],
        d["flood_delivered"],
        f(&d["flood_seconds"]),
        f(&d["flood_allowed_by_limit"]),
        if d["unfiltered_during_reload"].as_bool() == Some(false) {
            "no unfiltered window"
        } else {
            "PACKETS PASSED UNFILTERED"
        }
    );
    print_crowdsec(&r["crowdsec"]);
    crate::sets::print(&r["sets"]);
    println!("\nwhole run: {:.0} s", f(&r["seconds"]));
}

pub fn save(r: &Value) -> Result<()> {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(|t| t.join("bench")))
        .unwrap_or_else(|| PathBuf::from("target/bench"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("latest.json");
    std::fs::write(&path, serde_json::to_string_pretty(r)?)?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// Issue #11's comparison (`before.rs`): ns above the floor, before → now,
/// and the median paired change; drop paths over 10 ns slower are marked.
fn print_before(b: &Value) {
    let Some(paths) = b["paths"].as_array() else {
        return;
    };
    println!(
        "\n### Against the program before #11 ({}; paired runs, ns above the floor)\n",
        b["before"].as_str().unwrap_or("?")
    );
    println!("| path | before | now | change (median of pairs) |\n|---|---:|---:|---:|");
    for p in paths {
        let change = f(&p["change_ns"]);
        let over = p["drop"].as_bool() == Some(true) && change > 10.0;
        println!(
            "| {} | {:.0} | {:.0} | {:+.0}{} |",
            p["path"].as_str().unwrap_or(""),
            f(&p["before_above_floor_ns"]),
            f(&p["now_above_floor_ns"]),
            change,
            if over { " — OVER 10 ns" } else { "" }
        );
    }
}

/// A profile's symbols as a table.
fn print_profile(samples: &[Value]) {
    println!("| share | symbol |\n|---:|---|");
    for s in samples {
        println!(
            "| {:.1}% | `{}` |",
            f(&s["percent"]),
            s["symbol"].as_str().unwrap_or("")
        );
    }
}

/// The CrowdSec bouncer at scale (`crowdsec.rs`).
pub fn print_crowdsec(c: &Value) {
    if !c.is_object() {
        return;
    }
    let (l, fl, cold, rs) = (&c["lapi"], &c["flood"], &c["cold"], &c["restart"]);
    let m = &c["mix"];
    println!("\n### CrowdSec bouncer at scale\n");
    println!(
        "- {} decisions in a crowdsec 1.4.6 LAPI ({} Ip v4, {} Ip v6, {} Range v4 /29, {} Range v6 /120): \
         `cscli decisions import` (one per scope) {:.1} s; its `startup=true` stream {:.1} MB, served in {:.2} s",
        c["decisions"],
        m["ip_v4"],
        m["ip_v6"],
        m["range_v4_29"],
        m["range_v6_120"],
        f(&l["import_seconds"]),
        f(&l["stream_bytes"]) / 1e6,
        f(&l["stream_seconds"]),
    );
    println!(
        "- under a UDP flood of {:.0} datagrams/s from {} sources ({} decided addresses, {} inside decided \
         ranges, {} undecided): from the daemon's first pull to every decision enforced {:.0} ms \
         (claim < {:.0} ms — {}); the engine's apply {:.0} ms ({} networks; {} source bans, {} block entries); \
         {} covered datagrams got through before, {} after (undecided: {} of {} through after)",
        f(&fl["pps_sent"]),
        f(&fl["sources_decided"]) + f(&fl["sources_in_ranges"]) + f(&fl["sources_clean"]),
        fl["sources_decided"],
        fl["sources_in_ranges"],
        fl["sources_clean"],
        f(&cold["pull_to_enforced_ms"]),
        crate::crowdsec::APPLY_MS_MAX,
        if cold["within_claim"].as_bool() == Some(true) {
            "within the claim"
        } else {
            "OVER THE CLAIM"
        },
        f(&cold["engine_apply_ms"]),
        cold["networks_changed"],
        cold["bans"],
        cold["blocks"],
        cold["covered_through_before_enforced"],
        cold["covered_through_after_held"],
        cold["clean_through_after_held"],
        cold["clean_sent_after_held"],
    );
    println!(
        "- restart with the {} held (SIGTERM, start, `startup=true` resync) under the flood: resync {:.0} ms \
         (engine {:.0} ms, {} networks rewritten), {:.0} ms from SIGTERM to all held; {} covered datagrams through in {:.1} s, \
         undecided sources {} of {} through (longest gap {:.0} ms) — {}",
        c["decisions"],
        f(&rs["resync_ms"]),
        f(&rs["engine_apply_ms"]),
        rs["networks_changed"],
        f(&rs["status_held_ms"]),
        rs["covered_leaked"],
        f(&rs["window_ms"]) / 1e3,
        rs["clean_through"],
        rs["clean_sent"],
        f(&rs["clean_longest_gap_ms"]),
        if rs["no_unfiltered_moment"].as_bool() == Some(true) {
            "no unfiltered moment"
        } else if rs["flood_flowed"].as_bool() == Some(true) {
            "PACKETS PASSED UNFILTERED"
        } else {
            "THE FLOOD DID NOT FLOW: NOT MEASURED"
        },
    );
}
