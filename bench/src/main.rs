//! `cargo xtask bench`: runs each workload through the C ABI (the C driver
//! `bench_c`, a child process) and through the native Rust
//! `blazen-controlplane` client (this process) against one embedded
//! control plane (in a third process, `serve` mode), prints a table and writes `target/bench/report.json`.
//!
//! Usage: `blazen-cabi-bench PATH/TO/bench_c REPORT.json`

use std::ffi::{c_char, CStr};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blazen_controlplane::Client;
use blazen_core::distributed::{OrchestratorClient, SubmitWorkflowRequest};
use futures_util::StreamExt;
use serde_json::{json, Value};

type Error = Box<dyn std::error::Error>;

const DESCRIBE_CALLS: usize = 20_000;
const PING_CALLS: usize = 200_000;
const SUBMIT_CALLS: usize = 10_000;
const SUBMIT_IN_FLIGHT: usize = 1_000;
const EVENTS: usize = 20_000;
const PENDING_FUTURES: usize = 100_000;

fn request(name: &str) -> SubmitWorkflowRequest {
    SubmitWorkflowRequest {
        workflow_name: name.into(),
        workflow_version: None,
        input: json!({}),
        required_tags: vec![],
        idempotency_key: None,
        deadline_ms: None,
        wait_for_worker: true,
        resource_hint: None,
    }
}

/// Runs the C driver in `mode` and parses the JSON object it prints.
fn driver(path: &str, args: &[&str]) -> Result<Value, Error> {
    let out = Command::new(path).args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "bench_c {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8(out.stdout)?;
    Ok(serde_json::from_str(text.lines().last().unwrap_or("{}"))?)
}

fn percentile(sorted: &[u64], p: usize) -> u64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// `serve` mode: the embedded control plane, started through the library's
/// own entry point in a process of its own (so neither client shares a
/// process with it); prints the endpoint, then serves until stdin closes.
fn serve() -> Result<(), Error> {
    let mut server = std::ptr::null_mut();
    // SAFETY: a valid C string and out-pointers; the returned string is
    // freed with the library's own function.
    unsafe {
        let rc = blazen_cabi::server::blazen_controlplane_server_start_blocking(
            c"127.0.0.1:0".as_ptr(),
            &mut server,
            std::ptr::null_mut(),
        );
        if rc != 0 {
            return Err("cannot start the embedded control plane".into());
        }
        let p: *mut c_char = blazen_cabi::server::blazen_controlplane_server_endpoint(server);
        println!("{}", CStr::from_ptr(p).to_string_lossy());
        blazen_cabi::rt::strings::blazen_string_free(p);
    }
    std::io::stdout().flush()?;
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink)? > 0 {}
    // SAFETY: the handle from above, freed once.
    unsafe { blazen_cabi::server::blazen_controlplane_server_free(server) };
    Ok(())
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({"cores": cores, "cpu": cpu, "kernel": kernel})
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let (c_path, report_path) = match args.as_slice() {
        [_, mode] if mode == "serve" => return serve(),
        [_, c, r] => (c.as_str(), r.as_str()),
        _ => return Err("usage: blazen-cabi-bench BENCH_C REPORT.json".into()),
    };
    let mut server = Command::new(std::env::current_exe()?)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let endpoint = BufReader::new(server.stdout.take().ok_or("no stdout")?)
        .lines()
        .next()
        .transpose()?
        .ok_or("the server process printed no endpoint")?;
    let rt = tokio::runtime::Runtime::new()?;
    let client = rt.block_on(Client::connect(endpoint.clone(), None, None))?;
    let run_id = rt
        .block_on(client.submit_workflow(request("bench-describe")))?
        .run_id;

    // 1. blocking describe round trips, in ABBA order (C, native, native,
    // C) because whichever side runs second after a long run is slowed by
    // what the first left behind; each side's p50/p99 is the mean of its
    // two runs.
    eprintln!("bench: 1/5 describe round trips");
    let native_describe = || {
        rt.block_on(async {
            for _ in 0..DESCRIBE_CALLS / 10 {
                let _ = client.describe_workflow(run_id).await;
            }
            let mut lat = Vec::with_capacity(DESCRIBE_CALLS);
            for _ in 0..DESCRIBE_CALLS {
                let t = Instant::now();
                client.describe_workflow(run_id).await.expect("describe");
                lat.push(t.elapsed().as_nanos() as u64);
            }
            lat.sort_unstable();
            (percentile(&lat, 50) as f64, percentile(&lat, 99) as f64)
        })
    };
    let c_describe = || {
        driver(
            c_path,
            &[
                "describe",
                &endpoint,
                &run_id.to_string(),
                &DESCRIBE_CALLS.to_string(),
            ],
        )
    };
    let c1 = c_describe()?;
    let n1 = native_describe();
    let n2 = native_describe();
    let c2 = c_describe()?;
    let c_p =
        |k: &str| (c1[k].as_f64().unwrap_or(f64::NAN) + c2[k].as_f64().unwrap_or(f64::NAN)) / 2.0;
    let c_describe = json!({"p50_ns": c_p("p50_ns"), "p99_ns": c_p("p99_ns"),
        "runs": [c1, c2]});
    let (native_p50, native_p99) = ((n1.0 + n2.0) / 2.0, (n1.1 + n2.1) / 2.0);
    let native_runs = json!([{"p50_ns": n1.0, "p99_ns": n1.1}, {"p50_ns": n2.0, "p99_ns": n2.1}]);

    // 2. the boundary around a ready future vs a bare block_on from a foreign thread
    eprintln!("bench: 2/5 boundary overhead");
    let bare = tokio::runtime::Runtime::new()?;
    for _ in 0..PING_CALLS / 10 {
        bare.block_on(async {});
    }
    let t = Instant::now();
    for _ in 0..PING_CALLS {
        bare.block_on(async {});
    }
    let bare_ns = t.elapsed().as_nanos() as f64 / PING_CALLS as f64;
    let c_ping = driver(c_path, &["ping", &PING_CALLS.to_string()])?;

    // 3. async submissions, IN_FLIGHT at a time
    eprintln!("bench: 3/5 async submissions");
    let native_rate = rt.block_on(async {
        let t = Instant::now();
        let ok = futures_util::stream::iter(0..SUBMIT_CALLS)
            .map(|_| client.submit_workflow(request("bench-submit")))
            .buffer_unordered(SUBMIT_IN_FLIGHT)
            .filter(|r| std::future::ready(r.is_ok()))
            .count()
            .await;
        ok as f64 / t.elapsed().as_secs_f64()
    });
    let c_submit = driver(
        c_path,
        &[
            "submit",
            &endpoint,
            &SUBMIT_CALLS.to_string(),
            &SUBMIT_IN_FLIGHT.to_string(),
        ],
    )?;

    // 4. event delivery: one burst, a C sink and a native stream consumer at once
    eprintln!("bench: 4/5 event delivery");
    let mut child = Command::new(c_path)
        .args(["events", &endpoint, &EVENTS.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    if lines.next().transpose()?.as_deref() != Some("ready") {
        return Err("the C event driver did not get ready".into());
    }
    let consumer = client.clone();
    let native_events = rt.spawn(async move {
        let mut stream = consumer.subscribe_all(vec![]).await.expect("subscribe_all");
        let (mut n, mut first, mut last) = (0usize, None, Instant::now());
        while n < EVENTS {
            match tokio::time::timeout(Duration::from_secs(2), stream.next()).await {
                Ok(Some(Ok(ev))) if ev.event_type == "tick" => {
                    last = Instant::now();
                    first.get_or_insert(last);
                    n += 1;
                }
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        let secs = first.map_or(0.0, |f: Instant| (last - f).as_secs_f64());
        (n, if secs > 0.0 { n as f64 / secs } else { 0.0 })
    });
    std::thread::sleep(Duration::from_millis(200)); // let the native stream open
    child.stdin.take().ok_or("no stdin")?.write_all(b"go\n")?;
    let c_events: Value = serde_json::from_str(&lines.next().transpose()?.ok_or("no result")?)?;
    child.wait()?;
    let (native_delivered, native_ev_rate) = rt.block_on(native_events)?;

    // 5. pending futures
    eprintln!("bench: 5/5 pending futures");
    let c_scale = driver(c_path, &["scale", &PENDING_FUTURES.to_string()])?;

    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let report = json!({
        "machine": machine(),
        "describe_round_trip": {
            "calls": DESCRIBE_CALLS,
            "c_abi": {"p50_ns": f(&c_describe, "p50_ns"), "p99_ns": f(&c_describe, "p99_ns")},
            "c_abi_runs": c_describe["runs"],
            "native": {"p50_ns": native_p50, "p99_ns": native_p99},
            "native_runs": native_runs,
            "order": "C, native, native, C",
            "ratio_p50": f(&c_describe, "p50_ns") / native_p50,
            "goal": "ratio_p50 <= 1.05",
        },
        "boundary_overhead": {
            "calls": PING_CALLS,
            "c_abi_blocking_ns": f(&c_ping, "blocking_ns"),
            "c_abi_future_ns": f(&c_ping, "future_ns"),
            "bare_block_on_ns": bare_ns,
        },
        "async_submit": {
            "calls": SUBMIT_CALLS, "in_flight": SUBMIT_IN_FLIGHT,
            "c_abi_runs_per_s": f(&c_submit, "runs_per_s"),
            "native_runs_per_s": native_rate,
            "ratio": f(&c_submit, "runs_per_s") / native_rate,
            "goal": "ratio >= 0.95",
        },
        "event_delivery": {
            "events": EVENTS,
            "c_abi": {"events_per_s": f(&c_events, "events_per_s"), "delivered": f(&c_events, "delivered"), "lost": f(&c_events, "lost")},
            "native": {"events_per_s": native_ev_rate, "delivered": native_delivered, "lost": EVENTS - native_delivered},
            "ratio": f(&c_events, "events_per_s") / native_ev_rate,
            "goal": "ratio >= 0.9 with zero lost",
        },
        "pending_futures": {
            "futures": PENDING_FUTURES,
            "pending": f(&c_scale, "pending"),
            "extra_fds": f(&c_scale, "extra_fds"),
            "bytes_per_future": f(&c_scale, "bytes_per_future"),
            "goal": "< 64 extra descriptors, < 2048 bytes per pending future",
        },
    });
    std::fs::write(report_path, serde_json::to_string_pretty(&report)? + "\n")?;

    let r = &report;
    println!("| workload | C ABI | native Rust | ratio | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| 1. describe round trip p50 / p99 ({DESCRIBE_CALLS} calls) | {:.1} / {:.1} µs | {:.1} / {:.1} µs | {:.3} | ≤ 1.05 |",
        f(&c_describe, "p50_ns") / 1e3, f(&c_describe, "p99_ns") / 1e3,
        native_p50 / 1e3, native_p99 / 1e3, f(&r["describe_round_trip"], "ratio_p50")
    );
    println!(
        "| 2. boundary, no-op op: blocking / future create+wait+take+free | {:.0} ns / {:.0} ns | bare `block_on` {:.0} ns | {:.2} (blocking) | report |",
        f(&c_ping, "blocking_ns"), f(&c_ping, "future_ns"), bare_ns, f(&c_ping, "blocking_ns") / bare_ns
    );
    println!(
        "| 3. submit, {SUBMIT_CALLS} calls, {SUBMIT_IN_FLIGHT} in flight | {:.0} runs/s | {:.0} runs/s | {:.3} | ≥ 0.95 |",
        f(&c_submit, "runs_per_s"), native_rate, f(&r["async_submit"], "ratio")
    );
    println!(
        "| 4. events delivered ({EVENTS} emitted) | {:.0} ev/s, {} lost | {:.0} ev/s, {} lost | {:.3} | ≥ 0.9, 0 lost |",
        f(&c_events, "events_per_s"), f(&c_events, "lost"), native_ev_rate, EVENTS - native_delivered,
        f(&r["event_delivery"], "ratio")
    );
    println!(
        "| 5. {PENDING_FUTURES} pending futures | {} extra fds, {:.0} B each | – | – | < 64 fds, < 2048 B |",
        f(&c_scale, "extra_fds"), f(&c_scale, "bytes_per_future")
    );
    println!("report: {report_path}");
    drop(server.stdin.take());
    server.wait()?;
    Ok(())
}
