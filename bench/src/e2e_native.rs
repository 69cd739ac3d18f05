//! The native side of the end-to-end workload (`e2e-native` mode, a
//! process of its own, as the C driver's `e2e` mode is): blazen-controlplane
//! `Client`s submit, the crate's own `Worker`s run a handler that echoes
//! the input, and a `subscribe_all` stream records each run's
//! `status.running` and terminal event. Same shapes, protocol ("ready",
//! "go", one JSON line) and figures as `bench_c e2e` (see bench/bench.c);
//! and `crate-serve` mode, the crate's own server for the reference line.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blazen_controlplane::protocol::Assignment;
use blazen_controlplane::worker::{
    AssignmentContext, AssignmentFailure, AssignmentHandler, Worker, WorkerConfig,
};
use blazen_controlplane::Client;
use blazen_core::distributed::{
    AdmissionMode, OrchestratorClient, SubmitWorkflowRequest, WorkerCapability,
};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::Error;

/// Submissions unacknowledged at once while a backlog is queued.
const SUBMITS_IN_FLIGHT: usize = 1_000;
/// No run ended for this long: the rest are lost.
const IDLE: Duration = Duration::from_secs(10);

const OURS: u32 = 1;
const RUNNING: u32 = 2;
const TERMINAL: u32 = 4;
const FAILED: u32 = 8;
const ORDER: u32 = 16;
const DUP: u32 = 32;

#[derive(Default, Clone, Copy)]
struct Rec {
    t_submit: u64,
    t_running: u64,
    t_done: u64,
    flags: u32,
}

struct Table {
    runs: HashMap<Uuid, Rec>,
    /// The window's free places (loop mode).
    window: Arc<Semaphore>,
}

struct Shared {
    base: Instant,
    table: Mutex<Table>,
    /// Runs seen ending (their first terminal event) plus failed
    /// submissions: the window counts these, acknowledged or not yet.
    finished: AtomicUsize,
    failed: AtomicUsize,
    acked: AtomicUsize,
    done: Notify,
}

impl Shared {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn reset(&self, window: usize) {
        let mut t = self.table.lock().unwrap();
        t.runs.clear();
        t.window = Arc::new(Semaphore::new(window));
        self.finished.store(0, Ordering::SeqCst);
        self.failed.store(0, Ordering::SeqCst);
        self.acked.store(0, Ordering::SeqCst);
    }

    /// One more run finished: gives its place in the window back.
    fn finished_one(&self, window: &Semaphore) {
        window.add_permits(1);
        self.finished.fetch_add(1, Ordering::SeqCst);
        self.done.notify_one();
    }

    fn event(&self, run_id: Uuid, event_type: &str) {
        let t = self.now();
        let Some(kind) = event_type.strip_prefix("status.") else {
            return;
        };
        let running = kind == "running";
        let completed = kind == "completed";
        if !running && !completed && kind != "failed" && kind != "cancelled" {
            return;
        }
        let mut table = self.table.lock().unwrap();
        let r = table.runs.entry(run_id).or_default();
        let mut newly = false;
        if running {
            if r.flags & TERMINAL != 0 {
                r.flags |= ORDER;
            } else if r.flags & RUNNING == 0 {
                r.flags |= RUNNING;
                r.t_running = t;
            }
        } else if r.flags & TERMINAL != 0 {
            r.flags |= DUP;
        } else {
            r.flags |= TERMINAL | if completed { 0 } else { FAILED };
            r.t_done = t;
            newly = true;
        }
        if newly {
            let window = table.window.clone();
            drop(table);
            self.finished_one(&window);
        }
    }

    async fn submit(&self, client: &Client, tag: &str, i: usize) {
        let t = self.now();
        let req = SubmitWorkflowRequest {
            workflow_name: tag.into(),
            workflow_version: None,
            input: json!({ "i": i }),
            required_tags: vec![],
            idempotency_key: None,
            deadline_ms: None,
            wait_for_worker: true,
            resource_hint: None,
        };
        match client.submit_workflow(req).await {
            Ok(s) => {
                let mut table = self.table.lock().unwrap();
                let r = table.runs.entry(s.run_id).or_default();
                r.t_submit = t;
                r.flags |= OURS;
            }
            Err(e) => {
                eprintln!("e2e-native: submit: {e}");
                self.failed.fetch_add(1, Ordering::SeqCst);
                let window = self.table.lock().unwrap().window.clone();
                self.finished_one(&window);
            }
        }
        self.acked.fetch_add(1, Ordering::SeqCst);
    }

    /// Waits until `n` runs finished (true) or none did for `IDLE` (false).
    async fn wait_for(&self, n: usize) -> bool {
        let (mut last, mut since) = (usize::MAX, Instant::now());
        loop {
            let done = self.finished.load(Ordering::SeqCst);
            if done >= n {
                return true;
            }
            if done != last {
                (last, since) = (done, Instant::now());
            } else if since.elapsed() > IDLE {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.done.notified()).await;
        }
    }
}

/// The handler: echoes the assignment's input (written out as
/// `#[async_trait]` would expand it).
struct Echo;

impl AssignmentHandler for Echo {
    fn handle<'life0, 'async_trait>(
        &'life0 self,
        assignment: Assignment,
        _ctx: AssignmentContext,
    ) -> Pin<Box<dyn Future<Output = Result<Value, AssignmentFailure>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            serde_json::from_slice(&assignment.input_json)
                .map_err(|e| AssignmentFailure::new(e.to_string()))
        })
    }
}

/// `loop`: `n` runs, at most `window` open, refilled in eighths.
async fn run_loop(shared: &Arc<Shared>, clients: &[Client], tag: &str, n: usize, window: usize) {
    let chunk = (window / 8).max(1);
    let sem = shared.table.lock().unwrap().window.clone();
    let mut credits = 0;
    for i in 0..n {
        if credits == 0 {
            let k = chunk.min(n - i);
            sem.acquire_many(k as u32).await.expect("window").forget();
            credits = k;
        }
        credits -= 1;
        let (shared, client, tag) = (
            shared.clone(),
            clients[i % clients.len()].clone(),
            tag.to_string(),
        );
        tokio::spawn(async move { shared.submit(&client, &tag, i).await });
    }
    shared.wait_for(n).await;
    for _ in 0..30_000 {
        if shared.acked.load(Ordering::SeqCst) >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `backlog`: submits all `n`, then starts the workers and waits; yields
/// the workers' start and the submission time.
async fn run_backlog(
    shared: &Arc<Shared>,
    clients: &[Client],
    tag: &str,
    n: usize,
    workers: Vec<Worker>,
) -> (u64, f64) {
    let t0 = Instant::now();
    futures_util::stream::iter(0..n)
        .map(|i| shared.submit(&clients[i % clients.len()], tag, i))
        .buffer_unordered(SUBMITS_IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    let submit_secs = t0.elapsed().as_secs_f64();
    let release = shared.now();
    for w in workers {
        tokio::spawn(w.run(Echo));
    }
    shared.wait_for(n).await;
    (release, submit_secs)
}

#[repr(C)]
struct Timeval {
    sec: i64,
    usec: i64,
}

/// `struct rusage` of 64-bit Linux.
#[repr(C)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    /// maxrss .. nsignals, then nvcsw (12) and nivcsw (13).
    rest: [i64; 14],
}

extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
}

/// (CPU µs, voluntary, involuntary context switches) of this process so far.
fn usage() -> (f64, f64, f64) {
    const { assert!(cfg!(all(target_os = "linux", target_pointer_width = "64"))) };
    let mut u = Rusage {
        utime: Timeval { sec: 0, usec: 0 },
        stime: Timeval { sec: 0, usec: 0 },
        rest: [0; 14],
    };
    // SAFETY: RUSAGE_SELF (0) and a struct of the kernel's layout.
    unsafe { getrusage(0, &mut u) };
    let us = |t: &Timeval| t.sec as f64 * 1e6 + t.usec as f64;
    (
        us(&u.utime) + us(&u.stime),
        u.rest[12] as f64,
        u.rest[13] as f64,
    )
}

fn percentile(v: &[u64], p: usize) -> u64 {
    if v.is_empty() {
        0
    } else {
        v[(v.len() * p / 100).min(v.len() - 1)]
    }
}

/// `e2e-native ENDPOINT TAG WORKERS MAX_IN_FLIGHT RUNS loop|backlog WINDOW`.
pub fn side(args: &[String]) -> Result<(), Error> {
    let [ep, tag, workers, slots, n, mode, window] = args else {
        return Err("usage: e2e-native ENDPOINT TAG WORKERS MAX_IN_FLIGHT RUNS MODE WINDOW".into());
    };
    let (workers, slots, n, window): (usize, u32, usize, usize) = (
        workers.parse()?,
        slots.parse()?,
        n.parse()?,
        window.parse()?,
    );
    let backlog = mode == "backlog";
    let rt = tokio::runtime::Runtime::new()?;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        table: Mutex::new(Table {
            runs: HashMap::new(),
            window: Arc::new(Semaphore::new(window)),
        }),
        finished: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        acked: AtomicUsize::new(0),
        done: Notify::new(),
    });
    let (clients, mut pending) = rt.block_on(async {
        let mut clients = vec![];
        for _ in 0..blazen_cabi::client::BLAZEN_DEFAULT_CONNECTIONS {
            clients.push(Client::connect(ep.clone(), None, None).await?);
        }
        let sink_client = Client::connect(ep.clone(), None, None).await?;
        let (opened, is_open) = tokio::sync::oneshot::channel();
        let s = shared.clone();
        tokio::spawn(async move {
            let mut stream = sink_client
                .subscribe_all(vec![])
                .await
                .expect("subscribe_all");
            let _ = opened.send(());
            while let Some(item) = stream.next().await {
                match item {
                    Ok(ev) => s.event(ev.run_id, &ev.event_type),
                    Err(e) => eprintln!("e2e-native: stream: {e}"),
                }
            }
            eprintln!("e2e-native: the stream ended");
        });
        is_open.await?;
        let mut pending = vec![];
        for i in 0..workers {
            let config = WorkerConfig::new(ep.clone(), format!("{tag}-{i}"))
                .with_capability(WorkerCapability {
                    kind: format!("workflow:{tag}"),
                    version: 0,
                })
                .with_admission(AdmissionMode::Fixed {
                    max_in_flight: slots,
                });
            pending.push(Worker::connect(config)?);
        }
        Ok::<_, Error>((clients, pending))
    })?;
    if !backlog {
        rt.block_on(async {
            for w in pending.drain(..) {
                tokio::spawn(w.run(Echo));
            }
            let prefix = format!("{tag}-");
            for _ in 0..1000 {
                let listed = clients[0].list_workers().await.unwrap_or_default();
                if listed
                    .iter()
                    .filter(|w| w.node_id.starts_with(&prefix))
                    .count()
                    >= workers
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let warm = (n / 20).max(2 * window).min(n);
            run_loop(&shared, &clients, tag, warm, window).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
        shared.reset(window);
    }
    println!("ready");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if !line.starts_with("go") {
        return Err("e2e-native: no go".into());
    }

    let u0 = usage();
    let t0 = shared.now();
    let (release, submit_secs) = rt.block_on(async {
        if backlog {
            run_backlog(&shared, &clients, tag, n, pending).await
        } else {
            run_loop(&shared, &clients, tag, n, window).await;
            (0, 0.0)
        }
    });
    let u1 = usage();
    std::thread::sleep(Duration::from_millis(200));

    let failed = shared.failed.load(Ordering::SeqCst);
    let table = shared.table.lock().unwrap();
    let (mut lat, mut run) = (vec![], vec![]);
    let (mut ours, mut ooo, mut dup, mut failed_runs, mut lost) = (0, 0, 0, 0, failed);
    let (mut first_running, mut last_done) = (u64::MAX, 0);
    for r in table.runs.values().filter(|r| r.flags & OURS != 0) {
        ours += 1;
        ooo += usize::from(r.flags & ORDER != 0);
        dup += usize::from(r.flags & DUP != 0);
        if r.flags & RUNNING != 0 {
            first_running = first_running.min(r.t_running);
        }
        if r.flags & TERMINAL == 0 {
            lost += 1;
            continue;
        }
        failed_runs += usize::from(r.flags & FAILED != 0);
        last_done = last_done.max(r.t_done);
        lat.push(r.t_done - r.t_submit.max(release));
        if r.flags & RUNNING != 0 && r.t_running <= r.t_done {
            run.push(r.t_done - r.t_running);
        }
    }
    let foreign = table.runs.len() - ours;
    drop(table);
    lat.sort_unstable();
    run.sort_unstable();
    let from = if backlog { first_running } else { t0 };
    let secs = if last_done > from {
        (last_done - from) as f64 / 1e9
    } else {
        0.0
    };
    let per = 1.0 / n.max(1) as f64;
    println!(
        "{}",
        json!({
            "runs": n, "completed": lat.len(),
            "runs_per_s": if secs > 0.0 { lat.len() as f64 / secs } else { 0.0 },
            "secs": secs, "submit_secs": submit_secs,
            "latency_p50_ns": percentile(&lat, 50), "latency_p99_ns": percentile(&lat, 99),
            "running_to_done_p50_ns": percentile(&run, 50), "running_to_done_p99_ns": percentile(&run, 99),
            "cpu_us_per_run": (u1.0 - u0.0) * per,
            "vcsw_per_run": (u1.1 - u0.1) * per, "ivcsw_per_run": (u1.2 - u0.2) * per,
            "out_of_order": ooo, "lost": lost, "failed": failed_runs,
            "duplicate_terminal": dup, "submit_failed": failed, "foreign_runs": foreign,
        })
    );
    std::io::stdout().flush()?;
    // The workers and the stream end with the runtime.
    drop(rt);
    Ok(())
}

/// `crate-serve`: blazen-controlplane's own server (in memory) on a free
/// loopback port; prints its endpoint, then serves until stdin closes.
pub fn crate_serve() -> Result<(), Error> {
    let rt = tokio::runtime::Runtime::new()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    rt.spawn(async move {
        let server = blazen_controlplane::server::ControlPlaneServer::new("bench-crate-server");
        if let Err(e) = server.serve(addr).await {
            eprintln!("crate-serve: {e}");
        }
    });
    rt.block_on(async {
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err::<(), Error>("the crate's server did not start".into())
    })?;
    println!("http://{addr}");
    std::io::stdout().flush()?;
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink)? > 0 {}
    Ok(())
}
