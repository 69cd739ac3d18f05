//! Section 7 of `cargo xtask bench` (alone: `cargo xtask bench e2e`): runs
//! going all the way through a control plane. Each side is a process of
//! its own holding client, workers and sink: the C driver's `e2e` mode
//! (C client, C workers with a `BlazenAssignmentHandlerVTable` echoing the
//! input, a C subscription sink) or this binary's `e2e-native` mode
//! (blazen-controlplane `Client`s, the crate's `Worker`, a `subscribe_all`
//! stream). Both run against the same embedded control plane (a `serve`
//! process started for this section, in memory, and another on a Redis
//! the bench starts); native clients and workers also run against the
//! crate's own server (`crate-serve`), the reference line. While a side
//! runs, this process samples `list_workers` every 5 ms for each worker's
//! `in_flight`.
//!
//! Shapes: 4 workers x max_in_flight 16 with at most `WINDOW_PER_SLOT` x 64
//! runs open; 1 worker x max_in_flight 4 behind a backlog of RUNS / 10 and
//! of RUNS runs queued at once.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use blazen_controlplane::Client;
use blazen_core::distributed::{OrchestratorClient, SubmitWorkflowRequest};
use serde_json::{json, Value};

use crate::{fmt_spread, loadavg, med, num, spread, Error, Interactive};

/// Runs of the 4x16 shape and of the large backlog (`--runs`).
pub const RUNS: usize = 20_000;
/// Interleaved repeats (`--repeats`).
pub const REPEATS: usize = 3;
/// Runs open at once in the 4x16 shape, per slot of its workers.
const WINDOW_PER_SLOT: usize = 2;
/// The pause before each side: the previous side's workers have left,
/// and the control plane's release of their runs (bounded by its 1 s
/// store-call limit) has ended by then.
const QUIET: Duration = Duration::from_millis(2_000);
/// The longest a side waits for the control plane to accept submissions.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);
/// How often `in_flight` is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// (store, index of the shape, side) of a row.
type RowKey<'a> = (&'a str, usize, Side);

#[derive(Clone, Copy, PartialEq)]
enum Side {
    C,
    Native,
    /// Native clients and workers on the crate's own server.
    Crate,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::C => "c_abi",
            Side::Native => "native",
            Side::Crate => "native_on_crate_server",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Side::C => "C ABI",
            Side::Native => "native",
            Side::Crate => "native, crate's server",
        }
    }
}

struct Shape {
    name: &'static str,
    workers: usize,
    slots: usize,
    runs: usize,
    backlog: bool,
}

impl Shape {
    fn window(&self) -> usize {
        WINDOW_PER_SLOT * self.workers * self.slots
    }

    fn label(&self) -> String {
        if self.backlog {
            format!(
                "{}x{}, {} queued at once",
                self.workers, self.slots, self.runs
            )
        } else {
            format!(
                "{}x{}, {} runs, {} open",
                self.workers,
                self.slots,
                self.runs,
                self.window()
            )
        }
    }
}

/// A `redis-server` of the bench's own: a free loopback port, a temp dir,
/// AOF with `appendfsync everysec`, no RDB snapshots.
struct Redis {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Redis {
    fn start() -> Result<Self, Error> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("blazen-bench-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(&dir)
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e}"))?;
        let redis = Redis {
            child,
            dir,
            url: format!("redis://127.0.0.1:{port}/0"),
        };
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(redis);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err("redis-server did not start".into())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A control plane process of this binary (`serve [OPTIONS]` or
/// `crate-serve`): its endpoint, and it serves until dropped.
struct ServerProcess {
    child: Child,
    endpoint: String,
}

impl ServerProcess {
    fn start(args: &[&str]) -> Result<Self, Error> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let endpoint = lines
            .next()
            .transpose()?
            .ok_or_else(|| format!("{args:?} printed no endpoint"))?;
        // `serve` also prints its health endpoint; the rest is not read.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self { child, endpoint })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The most `in_flight` each worker whose node id starts with `prefix`
/// showed, sampled every `SAMPLE_EVERY` until `stop`; and the samples taken.
async fn sample(
    client: Client,
    prefix: String,
    stop: Arc<AtomicBool>,
) -> (BTreeMap<String, u32>, usize) {
    let mut peaks = BTreeMap::new();
    let mut samples = 0;
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::SeqCst) {
        every.tick().await;
        if let Ok(workers) = client.list_workers().await {
            samples += 1;
            for w in workers
                .into_iter()
                .filter(|w| w.node_id.starts_with(&prefix))
            {
                let peak = peaks.entry(w.node_id).or_insert(0);
                *peak = (*peak).max(w.in_flight);
            }
        }
    }
    (peaks, samples)
}

/// Events `perf stat` counts per run in the `--perf` pass.
const PERF_EVENTS: &str = "syscalls:sys_enter_futex,raw_syscalls:sys_enter,context-switches";

/// `perf stat` attached to a side's process from "go" to its result (the
/// tracepoints cost each syscall time, so these runs are not among the
/// repeats).
struct Perf(Child);

impl Perf {
    fn attach(pid: u32) -> Result<Self, Error> {
        let child = Command::new("perf")
            .args(["stat", "-x,", "-e", PERF_EVENTS, "-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("perf: {e}"))?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(Perf(child))
    }

    /// Stops counting; (event, count) of each event.
    fn stop(self) -> Result<Vec<(String, f64)>, Error> {
        Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status()?;
        let out = self.0.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stderr);
        Ok(text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                let name = match *f.get(2)? {
                    "syscalls:sys_enter_futex" => "futex_per_run",
                    "raw_syscalls:sys_enter" => "syscalls_per_run",
                    "context-switches" => "context_switches_per_run",
                    _ => return None,
                };
                Some((name.to_string(), f[0].parse().ok()?))
            })
            .collect())
    }
}

/// How long the control plane at `client` refuses submissions: a probe
/// run (no worker serves it) is submitted every 100 ms until one is
/// accepted, then cancelled. On Redis, a side whose workers leave after a
/// few thousand runs makes the embedded control plane take the store for
/// down (its in-flight release exceeds the 1 s store-call limit) and
/// refuse submissions until it has replayed what it kept meanwhile; the
/// next side waits for that (after `QUIET`) instead of measuring it (the
/// wait is in the report as `refused_before_s`). Gives up after
/// `SETTLE_LIMIT`.
async fn settle(client: &Client) -> (f64, usize) {
    let t = std::time::Instant::now();
    let mut refused = 0;
    loop {
        let probe = SubmitWorkflowRequest {
            workflow_name: "e2e-settle-probe".into(),
            workflow_version: None,
            input: json!({}),
            required_tags: vec![],
            idempotency_key: None,
            deadline_ms: None,
            wait_for_worker: true,
            resource_hint: None,
        };
        match client.submit_workflow(probe).await {
            Ok(s) => {
                let _ = client.cancel_workflow(s.run_id).await;
                return (t.elapsed().as_secs_f64(), refused);
            }
            Err(_) if t.elapsed() < SETTLE_LIMIT => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return (t.elapsed().as_secs_f64(), refused + 1),
        }
    }
}

/// One side, one shape, one repeat: its JSON line plus the peaks.
fn run_side(
    rt: &tokio::runtime::Runtime,
    c_path: &str,
    side: Side,
    (endpoint, sampler, server_pid): (&str, &Client, u32),
    tag: &str,
    shape: &Shape,
    perf: bool,
) -> Result<Value, Error> {
    let args = [
        endpoint.to_string(),
        tag.to_string(),
        shape.workers.to_string(),
        shape.slots.to_string(),
        shape.runs.to_string(),
        if shape.backlog { "backlog" } else { "loop" }.to_string(),
        shape.window().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exe = std::env::current_exe()?.to_string_lossy().to_string();
    std::thread::sleep(QUIET);
    let (refused_s, refused) = rt.block_on(settle(sampler));
    if refused > 0 {
        eprintln!(
            "bench: e2e: the control plane refused submissions for {refused_s:.1} s before {tag}"
        );
    }
    let mut child = match side {
        Side::C => Interactive::start(c_path, &[&["e2e"], &args[..]].concat())?,
        _ => Interactive::start(&exe, &[&["e2e-native"], &args[..]].concat())?,
    };
    let counting = match perf {
        true => Some(Perf::attach(child.child.id())?),
        false => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sampling = rt.spawn(sample(sampler.clone(), format!("{tag}-"), stop.clone()));
    let server_cpu = cpu_secs(server_pid);
    child.say("go\n")?;
    let mut v = child.result()?;
    let server_cpu = cpu_secs(server_pid) - server_cpu;
    stop.store(true, Ordering::SeqCst);
    v["server_cpu_us_per_run"] = json!(server_cpu * 1e6 / shape.runs as f64);
    if let Some(p) = counting {
        let per = 1.0 / shape.runs as f64;
        for (event, count) in p.stop()? {
            v["perf"][event] = json!(count * per);
        }
    }
    let (peaks, samples) = rt.block_on(sampling)?;
    child.finish()?;
    v["peak_in_flight_max"] = json!(peaks.values().copied().max().unwrap_or(0));
    v["peak_in_flight"] = json!(peaks);
    v["in_flight_samples"] = json!(samples);
    v["refused_before_s"] = json!(if refused > 0 { refused_s } else { 0.0 });
    Ok(v)
}

/// User and system CPU seconds process `pid` has taken (`/proc/PID/stat`).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime
    // are the 14th and 15th of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: f64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<f64>().ok())
        .sum();
    // In USER_HZ ticks, 100 a second on Linux whatever the kernel's HZ.
    ticks / 100.0
}

/// Figures of one row over its repeats.
const FIGURES: [&str; 10] = [
    "runs_per_s",
    "latency_p50_ns",
    "latency_p99_ns",
    "running_to_done_p50_ns",
    "running_to_done_p99_ns",
    "cpu_us_per_run",
    "server_cpu_us_per_run",
    "vcsw_per_run",
    "ivcsw_per_run",
    "submit_secs",
];

/// Section 7; yields the report's `end_to_end`. `runs` and `repeats` from
/// the command line.
pub fn run(c_path: &str, runs: usize, repeats: usize, perf: bool) -> Result<Value, Error> {
    let load_before = loadavg();
    let shapes = [
        Shape {
            name: "4x16",
            workers: 4,
            slots: 16,
            runs,
            backlog: false,
        },
        Shape {
            name: "1x4_backlog_small",
            workers: 1,
            slots: 4,
            runs: (runs / 10).max(1),
            backlog: true,
        },
        Shape {
            name: "1x4_backlog",
            workers: 1,
            slots: 4,
            runs,
            backlog: true,
        },
    ];
    let memory = ServerProcess::start(&["serve"])?;
    let crate_server = ServerProcess::start(&["crate-serve"])?;
    let redis = match Redis::start() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("bench: e2e: no Redis rows: {e}");
            None
        }
    };
    let on_redis = match &redis {
        Some(r) => Some(ServerProcess::start(&[
            "serve",
            &json!({ "store_url": r.url }).to_string(),
        ])?),
        None => None,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let connect = |ep: &str| rt.block_on(Client::connect(ep.to_string(), None, None));
    // (store, endpoint, sampler, sides per shape)
    let mut stores: Vec<(&str, &str, Client, u32)> = vec![(
        "memory",
        memory.endpoint.as_str(),
        connect(&memory.endpoint)?,
        memory.child.id(),
    )];
    if let Some(s) = &on_redis {
        stores.push((
            "redis",
            s.endpoint.as_str(),
            connect(&s.endpoint)?,
            s.child.id(),
        ));
    }
    let crate_sampler = connect(&crate_server.endpoint)?;

    // rows: (store, shape index, side) -> each repeat's JSON
    let mut rows: Vec<(RowKey, Vec<Value>)> = vec![];
    for &(store, _, _, _) in &stores {
        for (k, shape) in shapes.iter().enumerate() {
            let mut sides = vec![Side::C, Side::Native];
            if store == "memory" && !shape.backlog {
                sides.push(Side::Crate);
            }
            for side in sides {
                rows.push(((store, k, side), vec![]));
            }
        }
    }
    let mut perf_rows: Vec<Value> = vec![Value::Null; rows.len()];
    // the repeats, then with `perf` one more pass under `perf stat`
    for r in 0..repeats + usize::from(perf) {
        for &(store, endpoint, ref sampler, pid) in &stores {
            for (k, shape) in shapes.iter().enumerate() {
                let mut order: Vec<usize> = rows
                    .iter()
                    .enumerate()
                    .filter(|(_, ((s, sk, _), _))| *s == store && *sk == k)
                    .map(|(i, _)| i)
                    .collect();
                if r % 2 == 1 {
                    order.reverse();
                }
                for i in order {
                    let side = rows[i].0 .2;
                    let tag = format!("e2e-{store}-{}-{}-r{r}", shape.name, side.name());
                    let counted = r == repeats;
                    eprintln!(
                        "bench: 7/7 end to end: {} {r}, {store}, {}, {}",
                        if counted { "perf stat pass" } else { "repeat" },
                        shape.label(),
                        side.label()
                    );
                    let server = match side {
                        Side::Crate => (
                            crate_server.endpoint.as_str(),
                            &crate_sampler,
                            crate_server.child.id(),
                        ),
                        _ => (endpoint, sampler, pid),
                    };
                    let v = run_side(&rt, c_path, side, server, &tag, shape, counted)?;
                    if counted {
                        perf_rows[i] = v;
                    } else {
                        rows[i].1.push(v);
                    }
                }
            }
        }
    }
    let load_after = loadavg();

    let mut out_rows = vec![];
    for (((store, k, side), vs), perf_row) in rows.iter().zip(&perf_rows) {
        let shape = &shapes[*k];
        let mut row = json!({
            "store": store, "shape": shape.name, "side": side.name(),
            "server": if *side == Side::Crate { "blazen-controlplane 0.7.0 ControlPlaneServer" } else { "embedded (serve process)" },
            "workers": shape.workers, "max_in_flight": shape.slots, "runs": shape.runs,
            "mode": if shape.backlog { "backlog: all queued, then the workers start" } else { "loop" },
            "window": if shape.backlog { Value::Null } else { json!(shape.window()) },
            "repeats": vs,
        });
        for f in FIGURES {
            row[f] = spread(&vs.iter().map(|v| num(v, f)).collect::<Vec<_>>());
        }
        let total = |f: &str| vs.iter().map(|v| num(v, f)).sum::<f64>();
        for f in [
            "out_of_order",
            "lost",
            "failed",
            "duplicate_terminal",
            "refused_before_s",
        ] {
            row[f] = json!(total(f));
        }
        row["peak_in_flight_max"] = json!(vs
            .iter()
            .map(|v| num(v, "peak_in_flight_max"))
            .fold(0.0, f64::max));
        if !perf_row.is_null() {
            row["perf_pass"] = perf_row.clone();
        }
        out_rows.push(row);
    }
    let find = |store: &str, shape: &str, side: Side| {
        out_rows
            .iter()
            .find(|r| r["store"] == store && r["shape"] == shape && r["side"] == side.name())
    };
    let ratio = |a: Option<&Value>, b: Option<&Value>, f: &str| match (a, b) {
        (Some(a), Some(b)) => med(&a[f]) / med(&b[f]),
        _ => f64::NAN,
    };
    let mut checks = vec![];
    let mut check = |what: String, value: f64, goal: &str, ok: bool| {
        checks.push(json!({"what": what, "value": value, "goal": goal, "met": ok}));
    };
    let c416 = find("memory", "4x16", Side::C);
    let n416 = find("memory", "4x16", Side::Native);
    let x = ratio(c416, n416, "runs_per_s");
    check(
        "C / native runs/s, 4x16, memory".into(),
        x,
        ">= 0.9",
        x >= 0.9,
    );
    let x = ratio(c416, n416, "running_to_done_p50_ns");
    check(
        "C / native status.running -> completed p50, 4x16, memory".into(),
        x,
        "<= 1.5",
        x <= 1.5,
    );
    let x = ratio(n416, find("memory", "4x16", Side::Crate), "runs_per_s");
    check(
        "embedded / crate's server, native runs/s, 4x16".into(),
        x,
        ">= 1.0",
        x >= 1.0,
    );
    for &(store, _, _, _) in &stores {
        for side in [Side::C, Side::Native] {
            let x = ratio(
                find(store, "1x4_backlog", side),
                find(store, "1x4_backlog_small", side),
                "runs_per_s",
            );
            check(
                format!(
                    "1x4 drain, {} / {} queued, {}, {store}",
                    shapes[2].runs,
                    shapes[1].runs,
                    side.label()
                ),
                x,
                ">= 0.8",
                x >= 0.8,
            );
        }
    }
    if stores.len() > 1 {
        for side in [Side::C, Side::Native] {
            let x = ratio(
                find("redis", "4x16", side),
                find("memory", "4x16", side),
                "runs_per_s",
            );
            check(
                format!("Redis / memory runs/s, 4x16, {}", side.label()),
                x,
                ">= 0.8",
                x >= 0.8,
            );
        }
    }
    let over: Vec<String> = out_rows
        .iter()
        .filter(|r| num(r, "peak_in_flight_max") > num(r, "max_in_flight"))
        .map(|r| {
            format!(
                "{} {} {}",
                r["store"].as_str().unwrap_or(""),
                r["shape"].as_str().unwrap_or(""),
                r["side"].as_str().unwrap_or("")
            )
        })
        .collect();
    check(
        format!("rows whose peak in_flight exceeds max_in_flight: {over:?}"),
        over.len() as f64,
        "0",
        over.is_empty(),
    );
    // The crate's server is the reference line, not ours: its rows are
    // reported but not judged.
    let ours = |r: &&Value| r["side"] != Side::Crate.name();
    let sum = |f: &str| out_rows.iter().filter(ours).map(|r| num(r, f)).sum::<f64>();
    check(
        "runs with events out of order, every row on the embedded control plane".into(),
        sum("out_of_order"),
        "0",
        sum("out_of_order") == 0.0,
    );
    check(
        "runs lost, every row on the embedded control plane".into(),
        sum("lost"),
        "0",
        sum("lost") == 0.0,
    );

    let report = json!({
        "runs": runs, "repeats": repeats,
        "loadavg_before": load_before, "loadavg_after": load_after,
        "order": "per store and shape, the sides in turn, reversed every other repeat; every side a fresh process",
        "redis": if stores.len() > 1 { json!("redis-server on loopback, AOF appendfsync everysec, no RDB, a temp dir") } else { json!("not run: redis-server missing") },
        "how": {
            "loop": format!("at most {WINDOW_PER_SLOT} x workers x max_in_flight runs open (submitted, not yet seen ending by the sink), refilled in eighths; after a warm-up of the same shape; runs/s from the first submission to the last terminal event"),
            "backlog": "every run submitted (1,000 unacknowledged at most) before the worker starts; runs/s from the first status.running to the last terminal event; latency from the worker's start",
            "latency": "submit (or the worker's start) -> status.completed received by the sink",
            "cpu": "getrusage(RUSAGE_SELF) of the side's process (client, workers, sink, library threads) from go to the last terminal event, per run",
            "server_cpu": "user + system CPU of the control plane's process (/proc/PID/stat) over the same span, per run (the serve process also answers the bench's list_workers every 5 ms)",
            "peak_in_flight": "list_workers every 5 ms from the bench process, the most in_flight any of the row's workers showed (the crate's server sets in_flight from worker heartbeats, every 5 s, so its 0 says nothing)",
            "out_of_order": "a status.running received after the run's terminal event (up to 200 ms after the end)",
            "lost": "no terminal event 10 s after the last run ended, or a failed submission",
            "refused_before_s": "before each side, 2 s of quiet, then a probe submission every 100 ms until the control plane accepts one (then cancelled): seconds it refused them, summed over the repeats (on Redis, the store taken for down after the previous side's workers left)",
            "perf_pass": "with --perf: one more run of each row with `perf stat -p` attached from go to the result (futex calls, all syscalls, context switches per run, whole side process); not among the repeats",
        },
        "rows": out_rows,
        "checks": checks,
    });
    Ok(report)
}

/// The shape of a report row, as `Shape::label` gives it.
fn row_label(r: &Value) -> String {
    Shape {
        name: "",
        workers: num(r, "workers") as usize,
        slots: num(r, "max_in_flight") as usize,
        runs: num(r, "runs") as usize,
        backlog: r["window"].is_null(),
    }
    .label()
}

fn side_label(r: &Value) -> &'static str {
    [Side::C, Side::Native, Side::Crate]
        .into_iter()
        .find(|s| r["side"] == s.name())
        .map_or("?", Side::label)
}

/// Prints section 7 of the report (`end_to_end`) as a table and its checks.
pub fn print_table(report: &Value) {
    println!();
    println!(
        "end to end (load average {} before, {} after): median (min–max) of {} interleaved repeats",
        report["loadavg_before"], report["loadavg_after"], report["repeats"]
    );
    println!("| store | workload | side | runs/s | submit → completed p50 / p99, ms | running → completed p50, µs | CPU µs/run, side / control plane | ctx switches/run vol / invol | peak in_flight / max | out of order | lost |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in report["rows"].as_array().into_iter().flatten() {
        let side = side_label(r);
        println!(
            "| {} | {} | {side} | {} | {} / {} | {} | {} / {} | {} / {} | {:.0} / {} | {:.0} | {:.0} |",
            r["store"].as_str().unwrap_or(""),
            row_label(r),
            fmt_spread(&r["runs_per_s"], 1.0, 0),
            fmt_spread(&r["latency_p50_ns"], 1e6, 1),
            fmt_spread(&r["latency_p99_ns"], 1e6, 1),
            fmt_spread(&r["running_to_done_p50_ns"], 1e3, 0),
            fmt_spread(&r["cpu_us_per_run"], 1.0, 1),
            fmt_spread(&r["server_cpu_us_per_run"], 1.0, 0),
            fmt_spread(&r["vcsw_per_run"], 1.0, 2),
            fmt_spread(&r["ivcsw_per_run"], 1.0, 2),
            num(r, "peak_in_flight_max"),
            r["max_in_flight"],
            num(r, "out_of_order"),
            num(r, "lost"),
        );
    }
    let perf: Vec<&Value> = report["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| !r["perf_pass"].is_null())
        .collect();
    if !perf.is_empty() {
        println!("one more pass under `perf stat -p` (not among the repeats: tracing slows each syscall), per run:");
        println!(
            "| store | workload | side | futex | syscalls | context switches | runs/s under perf |"
        );
        println!("|---|---|---|---|---|---|---|");
        for r in perf {
            let p = &r["perf_pass"];
            println!(
                "| {} | {} | {} | {:.2} | {:.1} | {:.2} | {:.0} |",
                r["store"].as_str().unwrap_or(""),
                row_label(r),
                side_label(r),
                num(&p["perf"], "futex_per_run"),
                num(&p["perf"], "syscalls_per_run"),
                num(&p["perf"], "context_switches_per_run"),
                num(p, "runs_per_s"),
            );
        }
    }
    for r in report["rows"].as_array().into_iter().flatten() {
        if num(r, "refused_before_s") > 0.0 {
            println!(
                "before the {} {} {} runs the control plane refused submissions for {:.1} s in all (store taken for down)",
                r["store"].as_str().unwrap_or(""),
                row_label(r),
                side_label(r),
                num(r, "refused_before_s")
            );
        }
    }
    println!("checks (issue 22, done when):");
    for c in report["checks"].as_array().into_iter().flatten() {
        println!(
            "- {}: {:.3} (goal {}) {}",
            c["what"].as_str().unwrap_or(""),
            num(c, "value"),
            c["goal"].as_str().unwrap_or(""),
            if c["met"].as_bool() == Some(true) {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}
