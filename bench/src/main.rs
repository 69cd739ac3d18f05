//! `cargo xtask bench`: runs each workload through the C ABI (the C driver
//! `bench_c`, a child process) and through the native Rust
//! `blazen-controlplane` client (this process) against one embedded
//! control plane (in a third process, `serve` mode, which also serves a
//! bare tonic health service: the transport floor), measures the limit
//! each figure is bounded by in the same run, prints a table and writes
//! `target/bench/report.json`.
//!
//! Every figure is measured in `REPEATS` interleaved repeats (the order of
//! the sides alternates between repeats) and given as the median with its
//! min-max spread.
//!
//! Usage: `blazen-cabi-bench PATH/TO/bench_c REPORT.json [e2e] [--runs N]
//! [--repeats R]` (`BENCH_CONNECTIONS=N` makes the C driver use N
//! connections instead of the library's default). `e2e` runs only section
//! 7, the end-to-end workload (see e2e.rs), and puts it into the existing
//! report; `--runs` and `--repeats` shrink that section (default 20,000
//! runs, 3 repeats); `--perf` adds one pass of it under `perf stat` (futex
//! calls, syscalls and context switches per run).

use std::ffi::{c_char, CStr};
use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use blazen_controlplane::Client;
use blazen_core::distributed::{OrchestratorClient, SubmitWorkflowRequest};
use futures_util::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

mod e2e;
mod e2e_native;
mod http_cost;

type Error = Box<dyn std::error::Error>;

const REPEATS: usize = 5;
/// Blocking describe calls per repeat and side (after a tenth as warm-up).
const DESCRIBE_CALLS: usize = 10_000;
const PING_CALLS: usize = 200_000;
/// Calls per throughput measurement, and how many are in flight.
const RATE_CALLS: usize = 20_000;
const SWEEP_CALLS: usize = 5_000;
const IN_FLIGHT: usize = 1_000;
/// Distinct runs the describe throughput workload cycles through (calls
/// about one run share a connection, so one run would use one).
const DESCRIBE_RUNS: usize = 4_096;
/// Native clients tried for the capacity, doubling until the gain stops.
const MAX_CLIENTS: usize = 32;
const GAIN_STOPS: f64 = 1.05;
/// C driver connection counts tried for the default.
const C_SWEEP: [usize; 6] = [1, 2, 4, 8, 16, 32];
/// Events per burst, and the source: workers x runs at once on each.
const EVENTS: usize = 40_000;
const EMIT_WORKERS: usize = 4;
const EMIT_SLOTS: usize = 8;
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

/// Runs the C driver with `args` and parses the JSON object it prints last.
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

/// A C driver that talks over stdin/stdout (`sink`, `emit`), ready once it
/// printed "ready".
struct Interactive {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Interactive {
    fn start(path: &str, args: &[&str]) -> Result<Self, Error> {
        let mut child = Command::new(path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        if lines.next().transpose()?.as_deref() != Some("ready") {
            return Err(format!("bench_c {args:?} did not get ready").into());
        }
        Ok(Self { child, lines })
    }

    fn say(&mut self, line: &str) -> Result<(), Error> {
        let stdin = self.child.stdin.as_mut().ok_or("no stdin")?;
        stdin.write_all(line.as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    fn result(&mut self) -> Result<Value, Error> {
        let line = self.lines.next().transpose()?.ok_or("no result")?;
        Ok(serde_json::from_str(&line)?)
    }

    fn finish(mut self) -> Result<(), Error> {
        drop(self.child.stdin.take());
        self.child.wait()?;
        Ok(())
    }
}

fn percentile(sorted: &[u64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)] as f64
}

/// Median and min-max of one figure over its repeats.
fn spread(xs: &[f64]) -> Value {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let median = if v.is_empty() {
        f64::NAN
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    json!({
        "median": median,
        "min": v.first().copied().unwrap_or(f64::NAN),
        "max": v.last().copied().unwrap_or(f64::NAN),
        "repeats": xs,
    })
}

fn med(s: &Value) -> f64 {
    s["median"].as_f64().unwrap_or(f64::NAN)
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// "median (min–max)" with `scale` and `digits`.
fn fmt_spread(s: &Value, scale: f64, digits: usize) -> String {
    let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN) / scale;
    format!(
        "{:.*} ({:.*}–{:.*})",
        digits,
        f("median"),
        digits,
        f("min"),
        digits,
        f("max")
    )
}

/// `serve [OPTIONS_JSON]` mode: the embedded control plane, started
/// through the library's own entry point (with the options of
/// `blazen_controlplane_server_start_with_options`, e.g. a `store_url`) in
/// a process of its own (so neither client shares a process with it), and
/// a bare tonic health service on the same runtime (the transport floor);
/// prints both endpoints, then serves until stdin closes.
fn serve(options: Option<&str>) -> Result<(), Error> {
    let mut server = std::ptr::null_mut();
    let options = options.map(std::ffi::CString::new).transpose()?;
    // SAFETY: valid C strings (or NULL options) and out-pointers; the
    // returned string is freed with the library's own function.
    unsafe {
        let rc = blazen_cabi::server::blazen_controlplane_server_start_with_options_blocking(
            c"127.0.0.1:0".as_ptr(),
            options.as_ref().map_or(std::ptr::null(), |o| o.as_ptr()),
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
    let rt = blazen_cabi::rt::runtime();
    let incoming = {
        let _in_runtime = rt.enter();
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse()?)?
            .with_nodelay(Some(true))
    };
    println!("http://{}", incoming.local_addr()?);
    let (_reporter, health) = tonic_health::server::health_reporter();
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming),
    );
    std::io::stdout().flush()?;
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink)? > 0 {}
    // SAFETY: the handle from above, freed once.
    unsafe { blazen_cabi::server::blazen_controlplane_server_free(server) };
    Ok(())
}

fn loadavg() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let v: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect();
    json!(v)
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

/// Per-call latency of `calls` sequential calls of `call` (after a tenth
/// of them as warm-up): (p50, p99) in ns.
async fn latency<F, Fut>(calls: usize, mut call: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..calls / 10 {
        call().await;
    }
    let mut lat = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        call().await;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    (percentile(&lat, 50), percentile(&lat, 99))
}

/// Calls per second over `clients`, `IN_FLIGHT` at a time, split evenly
/// over one task per client (so the clients' calls run on every runtime
/// thread); describes of `runs` in turn when given, else submits.
async fn native_rate(clients: &[Client], runs: Option<&[Uuid]>, calls: usize) -> f64 {
    let k = clients.len();
    let runs: Option<std::sync::Arc<[Uuid]>> = runs.map(Into::into);
    let t = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let (c, runs) = (c.clone(), runs.clone());
            let share = calls / k + usize::from(j < calls % k);
            let in_flight = (IN_FLIGHT / k).max(1);
            tokio::spawn(async move {
                futures_util::stream::iter(0..share)
                    .map(|i| {
                        let (c, runs) = (&c, &runs);
                        async move {
                            match runs {
                                Some(r) => {
                                    c.describe_workflow(r[(i * k + j) % r.len()]).await.is_ok()
                                }
                                None => c.submit_workflow(request("bench-submit")).await.is_ok(),
                            }
                        }
                    })
                    .buffer_unordered(in_flight)
                    .filter(|ok| std::future::ready(*ok))
                    .count()
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap_or(0);
    }
    ok as f64 / t.elapsed().as_secs_f64()
}

/// Counts the ticks of one burst on a native `subscribe_all` stream: tells
/// `subscribed` once the stream is open, then runs until every tick came or
/// none came for a second. Yields (delivered, events/s).
async fn native_sink(
    endpoint: String,
    subscribed: tokio::sync::oneshot::Sender<()>,
) -> (usize, f64) {
    let client = Client::connect(endpoint, None, None)
        .await
        .expect("connect");
    let mut stream = client.subscribe_all(vec![]).await.expect("subscribe_all");
    let _ = subscribed.send(());
    let (mut n, mut first, mut last) = (0usize, None, Instant::now());
    let mut wait = Duration::from_secs(60);
    while n < EVENTS {
        match tokio::time::timeout(wait, stream.next()).await {
            Ok(Some(Ok(ev))) if ev.event_type == "tick" => {
                last = Instant::now();
                first.get_or_insert(last);
                n += 1;
                wait = Duration::from_secs(1);
            }
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    let secs = first.map_or(0.0, |f: Instant| (last - f).as_secs_f64());
    (n, if secs > 0.0 { n as f64 / secs } else { 0.0 })
}

/// `native-rate ENDPOINT submit|describe|latency K CALLS` (for
/// development): one capacity measurement with K native clients, or the
/// blocking describe latency of one, printed as JSON. Describes cycle
/// through the run ids in the file named by `BENCH_RUN_IDS` when set,
/// else through runs submitted first.
fn native_rate_mode(endpoint: &str, what: &str, k: usize, calls: usize) -> Result<(), Error> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut clients = vec![];
        for _ in 0..k {
            clients.push(Client::connect(endpoint.to_string(), None, None).await?);
        }
        if what == "latency" {
            let id = clients[0]
                .submit_workflow(request("bench-describe"))
                .await?
                .run_id;
            let c = &clients[0];
            let (p50, p99) = latency(calls, || async {
                c.describe_workflow(id).await.expect("describe");
            })
            .await;
            println!(
                "{}",
                json!({"run_id": id.to_string(), "p50_ns": p50, "p99_ns": p99})
            );
            return Ok(());
        }
        let mut runs = vec![];
        if let (true, Ok(path)) = (what == "describe", std::env::var("BENCH_RUN_IDS")) {
            for line in std::fs::read_to_string(path)?.lines() {
                runs.push(line.parse()?);
            }
        } else if what == "describe" {
            for _ in 0..DESCRIBE_RUNS {
                runs.push(
                    clients[0]
                        .submit_workflow(request("bench-describe"))
                        .await?
                        .run_id,
                );
            }
        }
        let r = native_rate(&clients, (what == "describe").then_some(&runs[..]), calls).await;
        println!("{}", json!({"clients": k, "per_s": r}));
        Ok(())
    })
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: blazen-cabi-bench BENCH_C REPORT.json [e2e | http-cost] [--runs N] [--repeats R] [--perf]";
    let (c_path, report_path, rest) = match args.as_slice() {
        [_, mode] if mode == "serve" => return serve(None),
        [_, mode, options] if mode == "serve" => return serve(Some(options)),
        [_, mode] if mode == "crate-serve" => return e2e_native::crate_serve(),
        [_, mode, rest @ ..] if mode == "e2e-native" => return e2e_native::side(rest),
        [_, mode, ep, what, k, calls] if mode == "native-rate" => {
            return native_rate_mode(ep, what, k.parse()?, calls.parse()?)
        }
        [_, c, r, mode] if mode == "http-cost" => return http_cost::run(c, r),
        [_, c, r, rest @ ..] => (c.as_str(), r.as_str(), rest),
        _ => return Err(usage.into()),
    };
    let (mut e2e_only, mut e2e_runs, mut e2e_repeats) = (false, e2e::RUNS, e2e::REPEATS);
    let mut e2e_perf = false;
    let mut rest = rest.iter();
    while let Some(a) = rest.next() {
        let mut value = || -> Result<usize, Error> {
            Ok(rest
                .next()
                .ok_or(usage)?
                .parse::<usize>()
                .map_err(|e| format!("{a}: {e}"))?)
        };
        match a.as_str() {
            "e2e" => e2e_only = true,
            "--perf" => e2e_perf = true,
            "--runs" => e2e_runs = value()?.max(10),
            "--repeats" => e2e_repeats = value()?.max(1),
            _ => return Err(usage.into()),
        }
    }
    if e2e_only {
        let section = e2e::run(c_path, e2e_runs, e2e_repeats, e2e_perf)?;
        let mut report: Value = std::fs::read_to_string(report_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({"machine": machine()}));
        e2e::print_table(&section);
        report["end_to_end"] = section;
        std::fs::write(report_path, serde_json::to_string_pretty(&report)? + "\n")?;
        println!("report: {report_path}");
        return Ok(());
    }
    let load_before = loadavg();
    let connections: usize = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(blazen_cabi::client::BLAZEN_DEFAULT_CONNECTIONS);
    let conn_arg = connections.to_string();
    let mut server = Command::new(std::env::current_exe()?)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut server_lines = BufReader::new(server.stdout.take().ok_or("no stdout")?).lines();
    let endpoint = server_lines
        .next()
        .transpose()?
        .ok_or("the server process printed no endpoint")?;
    let health_endpoint = server_lines
        .next()
        .transpose()?
        .ok_or("the server process printed no health endpoint")?;
    let rt = tokio::runtime::Runtime::new()?;
    let client = rt.block_on(Client::connect(endpoint.clone(), None, None))?;
    let run_id = rt
        .block_on(client.submit_workflow(request("bench-describe")))?
        .run_id;

    // 1. blocking describe round trips, C / native / transport floor, the
    // order reversed every repeat (whichever side runs right after a long
    // run is slowed by what it left behind).
    eprintln!("bench: 1/7 describe round trips and the transport floor");
    let health = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(health_endpoint.clone())?
            .connect()
            .await?;
        Ok::<_, Error>(tonic_health::pb::health_client::HealthClient::new(channel))
    })?;
    let (mut c_lat, mut n_lat, mut t_lat) = (vec![], vec![], vec![]);
    for r in 0..REPEATS {
        let mut steps = ['c', 'n', 't'];
        if r % 2 == 1 {
            steps.reverse();
        }
        for step in steps {
            match step {
                'c' => {
                    let v = driver(
                        c_path,
                        &[
                            "describe",
                            &endpoint,
                            &run_id.to_string(),
                            &DESCRIBE_CALLS.to_string(),
                            &conn_arg,
                        ],
                    )?;
                    c_lat.push((num(&v, "p50_ns"), num(&v, "p99_ns")));
                }
                'n' => n_lat.push(rt.block_on(latency(DESCRIBE_CALLS, || async {
                    client.describe_workflow(run_id).await.expect("describe");
                }))),
                _ => t_lat.push(rt.block_on(latency(DESCRIBE_CALLS, || {
                    let mut h = health.clone();
                    async move {
                        h.check(tonic_health::pb::HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .expect("health check");
                    }
                }))),
            }
        }
    }
    let p50s = |v: &[(f64, f64)]| spread(&v.iter().map(|x| x.0).collect::<Vec<_>>());
    let p99s = |v: &[(f64, f64)]| spread(&v.iter().map(|x| x.1).collect::<Vec<_>>());
    let (c_p50, c_p99, n_p50, n_p99, t_p50, t_p99) = (
        p50s(&c_lat),
        p99s(&c_lat),
        p50s(&n_lat),
        p99s(&n_lat),
        p50s(&t_lat),
        p99s(&t_lat),
    );

    // 2. the boundary around a ready future vs a bare block_on from a foreign thread
    eprintln!("bench: 2/7 boundary overhead");
    let bare = tokio::runtime::Runtime::new()?;
    let bare_run = || {
        for _ in 0..PING_CALLS / 10 {
            bare.block_on(async {});
        }
        let t = Instant::now();
        for _ in 0..PING_CALLS {
            bare.block_on(async {});
        }
        t.elapsed().as_nanos() as f64 / PING_CALLS as f64
    };
    let (mut bare_ns, mut ping_blocking, mut ping_future) = (vec![], vec![], vec![]);
    for r in 0..REPEATS {
        let c_first = r % 2 == 0;
        if !c_first {
            bare_ns.push(bare_run());
        }
        let v = driver(c_path, &["ping", &PING_CALLS.to_string()])?;
        ping_blocking.push(num(&v, "blocking_ns"));
        ping_future.push(num(&v, "future_ns"));
        if c_first {
            bare_ns.push(bare_run());
        }
    }
    let (bare_s, blocking_s, future_s) = (
        spread(&bare_ns),
        spread(&ping_blocking),
        spread(&ping_future),
    );

    // 3. throughput: the control plane's capacity (native clients, each
    // its own connection, doubling until the gain stops), then one native
    // client, the capacity and the C ABI in interleaved repeats.
    eprintln!("bench: 3/7 throughput: capacity sweep");
    let describe_runs: Vec<Uuid> = rt.block_on(async {
        futures_util::stream::iter(0..DESCRIBE_RUNS)
            .map(|_| client.submit_workflow(request("bench-describe")))
            .buffer_unordered(IN_FLIGHT)
            .map(|r| r.map(|s| s.run_id))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
    })?;
    let ids_path = std::path::Path::new(report_path).with_file_name("run_ids.txt");
    std::fs::write(
        &ids_path,
        describe_runs
            .iter()
            .map(|u| format!("{u}\n"))
            .collect::<String>(),
    )?;
    let ids_arg = ids_path.to_string_lossy().to_string();
    let clients: Vec<Client> = rt.block_on(async {
        let mut v = vec![client.clone()];
        for _ in 1..MAX_CLIENTS {
            v.push(Client::connect(endpoint.clone(), None, None).await?);
        }
        Ok::<_, blazen_controlplane::ControlPlaneError>(v)
    })?;
    let sweep = |runs: Option<&[Uuid]>| {
        let mut points = vec![];
        let mut k = 1;
        while k <= MAX_CLIENTS {
            let rate = rt.block_on(native_rate(&clients[..k], runs, SWEEP_CALLS));
            let stop = points
                .last()
                .is_some_and(|&(_, prev): &(usize, f64)| rate < prev * GAIN_STOPS);
            points.push((k, rate));
            if stop {
                break;
            }
            k *= 2;
        }
        let best = points
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(1, |p| p.0);
        (points, best)
    };
    let (submit_sweep, submit_k) = sweep(None);
    let (describe_sweep, describe_k) = sweep(Some(&describe_runs));
    // `mode`: submit or describe; `queue`: the futures report to one
    // completion queue (else each one's descriptor is watched by epoll).
    let c_rate = |mode: &str, queue: bool, calls: usize, conns: &str| -> Result<f64, Error> {
        let calls = calls.to_string();
        let inflight = IN_FLIGHT.to_string();
        let suffix = if queue { "_queue" } else { "" };
        let v = if mode == "submit" {
            let m = format!("submit{suffix}");
            driver(c_path, &[&m, &endpoint, &calls, &inflight, conns])?
        } else {
            let m = format!("describe_rate{suffix}");
            driver(c_path, &[&m, &endpoint, &ids_arg, &calls, &inflight, conns])?
        };
        if num(&v, "failed") > 0.0 {
            return Err(format!("bench_c {mode}: {v}").into());
        }
        Ok(num(&v, "per_s"))
    };
    eprintln!("bench: 3/7 throughput: C ABI connection counts");
    let mut c_sweep = vec![];
    for n in C_SWEEP {
        let s = c_rate("submit", true, SWEEP_CALLS, &n.to_string())?;
        let d = c_rate("describe", true, SWEEP_CALLS, &n.to_string())?;
        c_sweep.push(json!({"connections": n, "submits_per_s": s, "describes_per_s": d}));
    }
    eprintln!("bench: 3/7 throughput: repeats");
    // [submit, describe][one native client, capacity, C queue, C descriptors]
    let mut rates: [[Vec<f64>; 4]; 2] = Default::default();
    for r in 0..REPEATS {
        for (w, (mode, k, runs)) in [
            ("submit", submit_k, None),
            ("describe", describe_k, Some(&describe_runs[..])),
        ]
        .into_iter()
        .enumerate()
        {
            let mut steps = [0, 1, 2, 3];
            if r % 2 == 1 {
                steps.reverse();
            }
            for step in steps {
                let v = match step {
                    0 => rt.block_on(native_rate(&clients[..1], runs, RATE_CALLS)),
                    1 => rt.block_on(native_rate(&clients[..k], runs, RATE_CALLS)),
                    2 => c_rate(mode, true, RATE_CALLS, &conn_arg)?,
                    _ => c_rate(mode, false, RATE_CALLS, &conn_arg)?,
                };
                rates[w][step].push(v);
            }
        }
    }
    let rate_s = rates.each_ref().map(|w| w.each_ref().map(|v| spread(v)));

    // 4. event delivery: a source that outruns one consumer (EMIT_WORKERS
    // workers x EMIT_SLOTS runs emitting at once), consumed by a C sink or
    // a native stream, alone, in alternating bursts.
    eprintln!("bench: 4/7 event delivery");
    let mut emitter = Interactive::start(
        c_path,
        &[
            "emit",
            &endpoint,
            &EMIT_WORKERS.to_string(),
            &EMIT_SLOTS.to_string(),
        ],
    )?;
    let go = format!("go {EVENTS}\n");
    let (mut c_ev, mut n_ev, mut src_ev) = (vec![], vec![], vec![]);
    let (mut c_lost, mut n_lost) = (0usize, 0usize);
    let (mut c_lost_each, mut n_lost_each) = (vec![], vec![]);
    for r in 0..REPEATS {
        let mut steps = ['c', 'n'];
        if r % 2 == 1 {
            steps.reverse();
        }
        for step in steps {
            if step == 'c' {
                let mut sink =
                    Interactive::start(c_path, &["sink", &endpoint, &EVENTS.to_string()])?;
                emitter.say(&go)?;
                src_ev.push(num(&emitter.result()?, "events_per_s"));
                let v = sink.result()?;
                sink.finish()?;
                c_ev.push(num(&v, "events_per_s"));
                c_lost += num(&v, "lost") as usize;
                c_lost_each.push(num(&v, "lost") as usize);
            } else {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let consumer = rt.spawn(native_sink(endpoint.clone(), tx));
                rt.block_on(rx)?;
                emitter.say(&go)?;
                src_ev.push(num(&emitter.result()?, "events_per_s"));
                let (n, rate) = rt.block_on(consumer)?;
                n_ev.push(rate);
                n_lost += EVENTS - n;
                n_lost_each.push(EVENTS - n);
            }
        }
    }
    emitter.finish()?;
    let (c_ev_s, n_ev_s, src_ev_s) = (spread(&c_ev), spread(&n_ev), spread(&src_ev));

    // 5. pending futures
    eprintln!("bench: 5/7 pending futures");
    let (mut pend_bytes, mut pend_fds, mut pending) = (vec![], vec![], vec![]);
    for _ in 0..REPEATS {
        let v = driver(c_path, &["scale", &PENDING_FUTURES.to_string()])?;
        pend_bytes.push(num(&v, "bytes_per_future"));
        pend_fds.push(num(&v, "extra_fds"));
        pending.push(num(&v, "pending"));
    }
    let (bytes_s, fds_s) = (spread(&pend_bytes), spread(&pend_fds));
    let load_after = loadavg();
    // 7. end to end, on control planes of its own (the one above holds
    // every run the sections before submitted, queued for ever).
    drop(server.stdin.take());
    server.wait()?;
    let end_to_end = e2e::run(c_path, e2e_runs, e2e_repeats, e2e_perf)?;
    eprintln!("bench: report");

    let mut mach = machine();
    mach["loadavg_before"] = load_before;
    mach["loadavg_after"] = load_after;
    let ratio = |a: &Value, b: &Value| med(a) / med(b);
    let sweep_json = |pts: &[(usize, f64)], best: usize| {
        json!({"points": pts.iter().map(|(k, r)| json!({"clients": k, "per_s": r})).collect::<Vec<_>>(),
               "clients": best})
    };
    let [[sub_one, sub_cap, sub_c, sub_fd], [des_one, des_cap, des_c, des_fd]] = &rate_s;
    let report = json!({
        "machine": mach,
        "repeats": REPEATS,
        "describe_round_trip": {
            "calls": DESCRIBE_CALLS,
            "c_abi": {"p50_ns": med(&c_p50), "p99_ns": med(&c_p99)},
            "c_abi_runs": c_lat.iter().map(|x| json!({"p50_ns": x.0, "p99_ns": x.1})).collect::<Vec<_>>(),
            "native": {"p50_ns": med(&n_p50), "p99_ns": med(&n_p99)},
            "native_runs": n_lat.iter().map(|x| json!({"p50_ns": x.0, "p99_ns": x.1})).collect::<Vec<_>>(),
            "order": "C, native, floor; reversed every other repeat",
            "ratio_p50": ratio(&c_p50, &n_p50),
            "ratio_p99": ratio(&c_p99, &n_p99),
            "spread": {"c_abi_p50_ns": c_p50, "c_abi_p99_ns": c_p99,
                       "native_p50_ns": n_p50, "native_p99_ns": n_p99},
            "limit": {"what": "bare tonic unary round trip (grpc.health.v1 Check) to the same server process",
                      "p50_ns": t_p50, "p99_ns": t_p99},
            "c_abi_fraction_of_limit_p50": med(&t_p50) / med(&c_p50),
            "goal": "ratio_p50 <= 1.05, ratio_p99 <= 1.25",
        },
        "boundary_overhead": {
            "calls": PING_CALLS,
            "c_abi_blocking_ns": med(&blocking_s),
            "c_abi_future_ns": med(&future_s),
            "bare_block_on_ns": med(&bare_s),
            "spread": {"c_abi_blocking_ns": blocking_s, "c_abi_future_ns": future_s, "bare_block_on_ns": bare_s},
            "ratio_blocking": ratio(&blocking_s, &bare_s),
            "ratio_future": ratio(&future_s, &bare_s),
            "goal": "ratio_blocking <= 2",
        },
        "async_submit": {
            "calls": RATE_CALLS, "in_flight": IN_FLIGHT, "connections": connections,
            "c_abi_runs_per_s": med(sub_c),
            "c_abi_how": "futures registered on one completion queue (blazen_future_notify)",
            "c_abi_fd_runs_per_s": med(sub_fd),
            "c_abi_fd_how": "each future's descriptor in an epoll set",
            "native_runs_per_s": med(sub_one),
            "ratio": ratio(sub_c, sub_one),
            "spread": {"c_abi_runs_per_s": sub_c, "c_abi_fd_runs_per_s": sub_fd, "native_runs_per_s": sub_one},
            "limit": {"what": "control plane capacity: native clients, each its own connection",
                      "clients": submit_k, "runs_per_s": sub_cap,
                      "sweep": sweep_json(&submit_sweep, submit_k)},
            "c_abi_fraction_of_limit": ratio(sub_c, sub_cap),
            "goal": "c_abi_fraction_of_limit >= 0.9, ratio >= 1.5",
        },
        "async_describe": {
            "calls": RATE_CALLS, "in_flight": IN_FLIGHT, "runs": DESCRIBE_RUNS, "connections": connections,
            "c_abi_per_s": med(des_c),
            "c_abi_how": "futures registered on one completion queue (blazen_future_notify)",
            "c_abi_fd_per_s": med(des_fd),
            "c_abi_fd_how": "each future's descriptor in an epoll set",
            "native_per_s": med(des_one),
            "ratio": ratio(des_c, des_one),
            "spread": {"c_abi_per_s": des_c, "c_abi_fd_per_s": des_fd, "native_per_s": des_one},
            "limit": {"what": "control plane capacity: native clients, each its own connection",
                      "clients": describe_k, "per_s": des_cap,
                      "sweep": sweep_json(&describe_sweep, describe_k)},
            "c_abi_fraction_of_limit": ratio(des_c, des_cap),
            "goal": "c_abi_fraction_of_limit >= 0.9, ratio >= 1.5",
        },
        "c_abi_connections_sweep": {"calls": SWEEP_CALLS, "in_flight": IN_FLIGHT, "points": c_sweep},
        "event_delivery": {
            "events": EVENTS,
            "source": {"workers": EMIT_WORKERS, "runs_at_once": EMIT_WORKERS * EMIT_SLOTS,
                       "emitted_per_s": src_ev_s},
            "order": "C sink and native stream alone, alternating bursts",
            "c_abi": {"events_per_s": med(&c_ev_s), "delivered": (EVENTS * REPEATS - c_lost) as f64 / REPEATS as f64,
                      "lost": c_lost as f64 / REPEATS as f64, "lost_per_repeat": c_lost_each},
            "native": {"events_per_s": med(&n_ev_s), "delivered": (EVENTS * REPEATS - n_lost) as f64 / REPEATS as f64,
                       "lost": n_lost as f64 / REPEATS as f64, "lost_per_repeat": n_lost_each},
            "spread": {"c_abi_events_per_s": c_ev_s, "native_events_per_s": n_ev_s},
            "ratio": ratio(&c_ev_s, &n_ev_s),
            "limit": {"what": "delivery capacity: a native subscribe_all stream under the same saturating source",
                      "events_per_s": med(&n_ev_s)},
            "c_abi_fraction_of_limit": ratio(&c_ev_s, &n_ev_s),
            "goal": "ratio >= 0.9",
        },
        "pending_futures": {
            "futures": PENDING_FUTURES,
            "pending": pending.iter().copied().fold(f64::INFINITY, f64::min),
            "extra_fds": fds_s["max"],
            "bytes_per_future": med(&bytes_s),
            "spread": {"bytes_per_future": bytes_s, "extra_fds": fds_s},
            "goal": "< 64 extra descriptors, < 1126 bytes (1.1 KiB) per pending future",
        },
        "end_to_end": end_to_end,
    });
    std::fs::write(report_path, serde_json::to_string_pretty(&report)? + "\n")?;

    let m = &report["machine"];
    println!(
        "machine: {} cores, {}, Linux {}; load average {} before, {} after",
        m["cores"],
        m["cpu"].as_str().unwrap_or("?"),
        m["kernel"].as_str().unwrap_or("?"),
        m["loadavg_before"],
        m["loadavg_after"]
    );
    println!(
        "every figure: median (min–max) of {REPEATS} interleaved repeats; C ABI with {connections} connections"
    );
    println!(
        "| workload | C ABI | native Rust (1 client) | limit | C / native | C / limit | goal |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| 1. describe round trip p50, µs | {} | {} | {} (bare tonic) | {:.3} | {:.2} | ≤ 1.05 × native |",
        fmt_spread(&c_p50, 1e3, 1), fmt_spread(&n_p50, 1e3, 1), fmt_spread(&t_p50, 1e3, 1),
        ratio(&c_p50, &n_p50), ratio(&t_p50, &c_p50)
    );
    println!(
        "| 1. describe round trip p99, µs | {} | {} | {} (bare tonic) | {:.3} | {:.2} | ≤ 1.25 × native |",
        fmt_spread(&c_p99, 1e3, 1), fmt_spread(&n_p99, 1e3, 1), fmt_spread(&t_p99, 1e3, 1),
        ratio(&c_p99, &n_p99), ratio(&t_p99, &c_p99)
    );
    println!(
        "| 2. boundary, no-op op, ns: blocking / future | {} / {} | – | {} (bare `block_on`) | – | {:.2} / {:.2} | ≤ 2 × bare |",
        fmt_spread(&blocking_s, 1.0, 0), fmt_spread(&future_s, 1.0, 0), fmt_spread(&bare_s, 1.0, 0),
        ratio(&blocking_s, &bare_s), ratio(&future_s, &bare_s)
    );
    // A throughput row: C figure, one native client, the capacity with
    // `k` clients.
    let rate_row = |label: &str, c: &Value, one: &Value, cap: &Value, k: usize, goal: &str| {
        println!(
            "| {label} | {} | {} | {} ({k} clients) | {:.2} | {:.2} | {goal} |",
            fmt_spread(c, 1.0, 0),
            fmt_spread(one, 1.0, 0),
            fmt_spread(cap, 1.0, 0),
            ratio(c, one),
            ratio(c, cap)
        )
    };
    let goal = "≥ 1.5 × native, ≥ 0.9 × limit";
    let shape = format!("{RATE_CALLS} calls, {IN_FLIGHT} in flight, one completion queue");
    rate_row(
        &format!("3. submit, runs/s ({shape})"),
        sub_c,
        sub_one,
        sub_cap,
        submit_k,
        goal,
    );
    rate_row(
        &format!("4. describe, calls/s ({shape})"),
        des_c,
        des_one,
        des_cap,
        describe_k,
        goal,
    );
    rate_row(
        "3b. submit, runs/s, a descriptor per future",
        sub_fd,
        sub_one,
        sub_cap,
        submit_k,
        "–",
    );
    rate_row(
        "4b. describe, calls/s, a descriptor per future",
        des_fd,
        des_one,
        des_cap,
        describe_k,
        "–",
    );
    println!(
        "| 5. events delivered/s ({EVENTS} a burst, source {}) | {}, {} lost | {}, {} lost | {} (native stream) | {:.2} | {:.2} | ≥ 0.9 × native |",
        fmt_spread(&src_ev_s, 1.0, 0),
        fmt_spread(&c_ev_s, 1.0, 0), c_lost / REPEATS, fmt_spread(&n_ev_s, 1.0, 0), n_lost / REPEATS,
        fmt_spread(&n_ev_s, 1.0, 0), ratio(&c_ev_s, &n_ev_s), ratio(&c_ev_s, &n_ev_s)
    );
    println!(
        "| 6. {PENDING_FUTURES} pending futures, B each | {} B, {} extra fds | – | 1,126 B, 64 fds | – | {:.2} | < limit |",
        fmt_spread(&bytes_s, 1.0, 0), fds_s["max"], med(&bytes_s) / 1126.0
    );
    let pts = |p: &[(usize, f64)]| {
        p.iter()
            .map(|(k, r)| format!("{k}: {r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "capacity sweep, native clients -> per s: submit {}; describe {}",
        pts(&submit_sweep),
        pts(&describe_sweep)
    );
    println!(
        "C ABI connections -> submits/s, describes/s: {}",
        report["c_abi_connections_sweep"]["points"]
            .as_array()
            .map(|a| a
                .iter()
                .map(|p| format!(
                    "{}: {:.0}, {:.0}",
                    p["connections"],
                    num(p, "submits_per_s"),
                    num(p, "describes_per_s")
                ))
                .collect::<Vec<_>>()
                .join("; "))
            .unwrap_or_default()
    );
    e2e::print_table(&report["end_to_end"]);
    println!("report: {report_path}");
    Ok(())
}
