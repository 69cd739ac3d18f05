//! `cargo xtask bench http-cost`: what the HTTP side costs the dispatch
//! path. The C driver's submit throughput (section 3's figure: `bench_c
//! submit_queue`, [`RATE_CALLS`] submissions, IN_FLIGHT at once, the library's
//! default connections) against a fresh embedded control plane in a
//! process of its own, once with the HTTP side off and once with it on and
//! `/metrics` scraped every second (as Prometheus would) for the whole
//! measurement, in interleaved repeats (the side that goes first
//! alternates). Prints both figures (median, min-max) and their difference
//! against the spread, and writes them into the report as `http_cost`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{driver, fmt_spread, med, num, spread, Error, IN_FLIGHT};

/// Submissions per measurement: three times section 3's, so each side
/// lasts several seconds and sees several scrapes.
const RATE_CALLS: usize = 3 * super::RATE_CALLS;
/// Repeats of each side.
const REPEATS: usize = 5;
/// How often the scraper reads `/metrics`.
const SCRAPE_EVERY: Duration = Duration::from_secs(1);

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One GET of `/metrics`; returns the body's size.
fn scrape(port: u16) -> Result<usize, Error> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    if !buf.starts_with(b"HTTP/1.1 200") {
        return Err("a /metrics scrape was not answered 200".into());
    }
    Ok(buf.len())
}

/// One side of one repeat: submissions per second, and the scrapes made
/// meanwhile (with their mean size) when `http` is on.
fn side(c_path: &str, http: bool) -> Result<(f64, usize, usize), Error> {
    let port = free_port()?;
    let options = json!({ "http_addr": format!("127.0.0.1:{port}") }).to_string();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("serve");
    if http {
        cmd.arg(&options);
    }
    let mut server = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(server.stdout.take().ok_or("no stdout")?).lines();
    let endpoint = lines.next().transpose()?.ok_or("no endpoint printed")?;
    let _health = lines.next().transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = http.then(|| {
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<(usize, usize), String> {
            let (mut n, mut bytes) = (0, 0);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    bytes += scrape(port).map_err(|e| e.to_string())?;
                    n += 1;
                    next += SCRAPE_EVERY;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok((n, bytes))
        })
    });
    let calls = RATE_CALLS.to_string();
    let inflight = IN_FLIGHT.to_string();
    let conns = blazen_cabi::client::BLAZEN_DEFAULT_CONNECTIONS.to_string();
    let result = driver(
        c_path,
        &["submit_queue", &endpoint, &calls, &inflight, &conns],
    );
    stop.store(true, Ordering::Relaxed);
    let scraped = match scraper {
        Some(t) => t.join().map_err(|_| "the scraper panicked")??,
        None => (0, 0),
    };
    drop(server.stdin.take());
    server.wait()?;
    let v = result?;
    if num(&v, "failed") > 0.0 {
        return Err(format!("bench_c submit_queue: {v}").into());
    }
    Ok((num(&v, "per_s"), scraped.0, scraped.1))
}

/// Runs the comparison and merges it into the report at `report_path`.
pub(super) fn run(c_path: &str, report_path: &str) -> Result<(), Error> {
    let (mut off, mut on) = (vec![], vec![]);
    let (mut scrapes, mut bytes) = (0, 0);
    for r in 0..REPEATS {
        let order = if r % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for http in order {
            eprintln!(
                "bench http-cost: repeat {}/{REPEATS}, HTTP side {}",
                r + 1,
                if http {
                    "on, scraped every second"
                } else {
                    "off"
                }
            );
            let (per_s, n, b) = side(c_path, http)?;
            if http {
                on.push(per_s);
                scrapes += n;
                bytes += b;
            } else {
                off.push(per_s);
            }
        }
    }
    let (s_off, s_on) = (spread(&off), spread(&on));
    let diff = (med(&s_on) - med(&s_off)) / med(&s_off) * 100.0;
    let noise = |s: &Value| (num(s, "max") - num(s, "min")) / med(s) * 100.0;
    let section = json!({
        "calls": RATE_CALLS, "in_flight": IN_FLIGHT, "repeats": REPEATS,
        "submits_per_s_http_off": s_off,
        "submits_per_s_http_on_scraped": s_on,
        "median_difference_pct": diff,
        "spread_pct_off": noise(&s_off), "spread_pct_on": noise(&s_on),
        "scrapes": scrapes, "mean_scrape_bytes": bytes.checked_div(scrapes).unwrap_or(0),
    });
    println!("HTTP side's cost to submissions (bench_c submit_queue, {RATE_CALLS} calls, {IN_FLIGHT} in flight, {REPEATS} repeats)");
    println!(
        "  HTTP side off:                    {} submits/s",
        fmt_spread(&s_off, 1.0, 0)
    );
    println!(
        "  HTTP side on, /metrics every 1 s: {} submits/s ({scrapes} scrapes)",
        fmt_spread(&s_on, 1.0, 0)
    );
    println!(
        "  difference of the medians: {diff:+.1}% (min-max spread: off {:.1}%, on {:.1}%)",
        noise(&s_off),
        noise(&s_on)
    );
    let mut report: Value = std::fs::read_to_string(report_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    report["http_cost"] = section;
    std::fs::write(report_path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("report: {report_path}");
    Ok(())
}
