//! `cargo xtask chaos [--minutes N] [--seed S] [--rate R] [--release]`
//! (and its short version in `cargo xtask test`): the whole system under
//! load while its parts fail, then a count of what was lost.
//!
//! It starts a redis-server (append-only file on) of its own, a control
//! plane on that store in a child process (tests/chaos/cp.c), four worker
//! processes (tests/chaos/worker.c: handlers of a few ms that log every
//! execution) that reach the control plane through a TCP proxy of this
//! process, a client process submitting at a steady rate and describing as
//! it goes (tests/chaos/client.c), and a subscriber process
//! (tests/chaos/subscriber.c). While runs flow it injects the faults the
//! seed draws (see [`plan`]): `kill -9` and restart of the control plane
//! and of a worker, a Redis restart, Redis frozen with SIGSTOP, and the
//! proxy's delays, stalls and resets. Then the faults stop, the client
//! stops, every accepted run is described until it is terminal, and
//! [`report`] judges the run. Everything a run wrote stays in
//! `target/chaos/run-SEED/` (report.txt, the logs, the files above).

mod plan;
mod procs;
mod proxy;
mod report;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::cc::{build_library, compile, need};
use plan::{Fault, Kind};
use procs::{signal, Cluster, Sample, WORKERS, WORKER_SLOTS};
use proxy::Proxy;

/// `max_requeues` of the control plane (its default, given explicitly):
/// a run is executed at most 1 + this many times.
const MAX_REQUEUES: u32 = 3;

struct Options {
    /// Minutes of faults.
    minutes: f64,
    seed: u64,
    /// Submissions per second.
    rate: f64,
    release: bool,
    /// Seconds of load before the first fault.
    warmup_s: u64,
    /// How long the final check waits for every run to end.
    settle_s: u64,
}

/// The short run of `cargo xtask test` (about 2.5 minutes): 90 s of faults
/// at 20 submissions/s on the debug build. `BLAZEN_CHAOS_SEED` replays a
/// seed.
pub fn short(root: &Path) -> Result<()> {
    let seed = match std::env::var("BLAZEN_CHAOS_SEED") {
        Ok(s) => s.parse().context("BLAZEN_CHAOS_SEED: expected a number")?,
        Err(_) => clock_seed(),
    };
    chaos(
        root,
        &Options {
            minutes: 1.5,
            seed,
            rate: 20.0,
            release: false,
            warmup_s: 5,
            settle_s: 120,
        },
    )
}

/// `cargo xtask chaos [--minutes N] [--seed S] [--rate R] [--release]`
/// (defaults: 10 minutes, a seed from the clock, 20 submissions/s, the
/// debug build); `--short` is the run `cargo xtask test` makes; `--judge
/// DIR` reads a finished run's files again.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--short") {
        return short(root);
    }
    if let [flag, dir] = args {
        if flag == "--judge" {
            // Judges the files a run left again (no faults, no processes).
            let r = report::judge(Path::new(dir), MAX_REQUEUES, "")?;
            println!("{}{} passed, {} failed", r.text, r.passed, r.failed);
            return Ok(());
        }
    }
    let mut o = Options {
        minutes: 10.0,
        seed: clock_seed(),
        rate: 20.0,
        release: false,
        warmup_s: 10,
        settle_s: 300,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .with_context(|| format!("{name} needs a value"))
                .cloned()
        };
        match a.as_str() {
            "--minutes" => {
                o.minutes = value("--minutes")?
                    .parse()
                    .context("--minutes: a number")?
            }
            "--seed" => o.seed = value("--seed")?.parse().context("--seed: a number")?,
            "--rate" => o.rate = value("--rate")?.parse().context("--rate: a number")?,
            "--release" => o.release = true,
            other => bail!(
                "chaos: unknown argument {other:?}; usage: cargo xtask chaos [--minutes N] [--seed S] \
                 [--rate R] [--release] | --short"
            ),
        }
    }
    if !(o.minutes > 0.0 && o.rate > 0.0) {
        bail!("chaos: --minutes and --rate must be positive");
    }
    chaos(root, &o)
}

fn clock_seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    t.as_secs() ^ u64::from(t.subsec_nanos()) << 20 ^ u64::from(std::process::id())
}

/// Builds the library and the chaos programs into `dir/bin`, with a copy
/// of the library there that the programs load (their RUNPATH): a
/// control plane or worker restarted late in a run loads the library the
/// run started with, whatever is rebuilt in target/ meanwhile. Returns
/// that directory.
fn build(root: &Path, release: bool, dir: &Path) -> Result<std::path::PathBuf> {
    need("gcc")?;
    need("redis-server")?;
    let built = build_library(root, release)?;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(
        built.join("libblazen_cabi.so"),
        bin.join("libblazen_cabi.so"),
    )
    .context("copying the library")?;
    std::os::unix::fs::symlink("libblazen_cabi.so", bin.join("libblazen_cabi.so.0.7"))?;
    for (src, name) in [
        ("cp", "chaos_cp"),
        ("worker", "chaos_worker"),
        ("client", "chaos_client"),
        ("subscriber", "chaos_sub"),
    ] {
        compile(
            root,
            "gcc",
            &root.join(format!("tests/chaos/{src}.c")),
            &bin,
            &bin.join(name),
            &[
                "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-pthread",
            ],
        )?;
    }
    Ok(bin)
}

/// Removes a directory when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `git describe` of the tree the library was built from.
fn tree_version(root: &Path) -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(root)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Sleeps `d` in steps, restarting a worker or control plane that exits
/// on its own meanwhile.
fn tick(cl: &mut Cluster, d: Duration) -> Result<()> {
    let until = Instant::now() + d;
    loop {
        cl.watch()?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the faults did, for the report.
#[derive(Default)]
struct Injected {
    count: BTreeMap<Kind, usize>,
    /// The control plane just before each `kill -9`.
    cp_samples: Vec<Sample>,
    /// ms from a control plane kill until the next one served.
    cp_restart_ms: Vec<u64>,
    resets: usize,
}

fn inject(cl: &mut Cluster, proxy: &Proxy, f: &Fault, done: &mut Injected) -> Result<String> {
    let hold = Duration::from_millis(f.hold_ms);
    let note = match f.kind {
        Kind::CpKill => {
            let killed = Instant::now();
            done.cp_samples.extend(cl.cp_kill());
            tick(cl, hold)?;
            let attempts = cl.cp_start()?;
            let ms = killed.elapsed().as_millis() as u64;
            done.cp_restart_ms.push(ms);
            format!("serving again {ms} ms after the kill ({attempts} start(s))")
        }
        Kind::WorkerKill => {
            cl.worker_kill(f.worker);
            tick(cl, hold)?;
            cl.worker_start(f.worker)?;
            String::new()
        }
        Kind::RedisRestart => {
            let t = Instant::now();
            cl.redis_stop()?;
            cl.redis_start()?;
            format!("answering again after {} ms", t.elapsed().as_millis())
        }
        Kind::RedisPause => {
            let pid = cl.redis_pid().context("redis-server is not running")?;
            signal(pid, libc::SIGSTOP);
            let r = tick(cl, hold);
            signal(pid, libc::SIGCONT);
            r?;
            String::new()
        }
        Kind::ProxyDelay => {
            proxy.set_delay(f.delay_ms);
            let r = tick(cl, hold);
            proxy.set_delay(0);
            r?;
            String::new()
        }
        Kind::ProxyStall => {
            proxy.set_stall(true);
            let r = tick(cl, hold);
            proxy.set_stall(false);
            r?;
            String::new()
        }
        Kind::ProxyReset => {
            let n = proxy.reset_all();
            done.resets += n;
            format!("{n} connections reset")
        }
    };
    *done.count.entry(f.kind).or_default() += 1;
    Ok(note)
}

fn fmt_sample(s: Option<Sample>) -> String {
    match s {
        Some(s) => format!(
            "RSS {:.1} MiB, {} fds (up {:.0} s)",
            s.rss_kb as f64 / 1024.0,
            s.fds,
            s.up_s
        ),
        None => "not sampled".into(),
    }
}

fn chaos(root: &Path, o: &Options) -> Result<()> {
    let started = Instant::now();
    let secs = o.minutes * 60.0;
    println!(
        "== chaos: seed {} ({:.1} min of faults, {} submissions/s; replay: cargo xtask chaos --minutes {} --seed {}{})",
        o.seed,
        o.minutes,
        o.rate,
        o.minutes,
        o.seed,
        if o.release { " --release" } else { "" }
    );
    let dir = root.join(format!("target/chaos/run-{}", o.seed));
    let _ = std::fs::remove_dir_all(&dir);
    // Declared before the processes, so dropped after them: the run's copy
    // of the library (hundreds of MB) goes however the run ends; the logs
    // stay.
    let _bin_guard = RemoveOnDrop(dir.join("bin"));
    let bin = build(root, o.release, &dir)?;
    let version = tree_version(root);
    let mut cl = Cluster::new(dir.clone(), bin, MAX_REQUEUES)?;
    cl.redis_start()?;
    cl.cp_start()?;
    let proxy = Proxy::start(cl.cp_port)?;
    cl.set_worker_endpoint(format!("http://127.0.0.1:{}", proxy.port()));
    for i in 0..WORKERS {
        cl.worker_start(i)?;
    }
    cl.subscriber_start()?;
    cl.client_start(o.rate)?;
    println!(
        "chaos: redis-server on {}, control plane on {}, {} workers x {} through the proxy on {}, files in {}",
        cl.redis_port,
        cl.cp_port,
        WORKERS,
        WORKER_SLOTS,
        proxy.port(),
        dir.display()
    );
    tick(&mut cl, Duration::from_secs(o.warmup_s))?;
    let before = cl.cp_sample();

    let faults = plan::plan(o.seed, secs, WORKERS);
    println!("chaos: {} faults planned over {secs:.0} s", faults.len());
    let mut done = Injected::default();
    let t0 = Instant::now();
    for (k, f) in faults.iter().enumerate() {
        let due = Duration::from_secs_f64(f.at_s);
        tick(&mut cl, due.saturating_sub(t0.elapsed()))?;
        let at = t0.elapsed().as_secs_f64();
        let note = inject(&mut cl, &proxy, f, &mut done)?;
        println!(
            "chaos: t={at:6.1}s fault {:>3}/{}: {f}{}{note}",
            k + 1,
            faults.len(),
            if note.is_empty() { "" } else { "; " }
        );
    }
    tick(
        &mut cl,
        Duration::from_secs_f64(secs).saturating_sub(t0.elapsed()),
    )?;
    let faults_end_ms = wall_ms();
    println!(
        "chaos: faults stopped; the client goes on for 5 s, then every accepted run is checked"
    );
    tick(&mut cl, Duration::from_secs(5))?;
    let client_summary = cl.client_stop()?;
    let check = cl.check(o.settle_s)?;
    let after = cl.cp_sample();
    let sub_summary = cl.subscriber_stop()?;
    cl.workers_stop()?;
    cl.cp_stop()?;
    cl.redis_stop()?;

    let mut head = String::new();
    let _ = writeln!(
        head,
        "seed {}; {:.1} min of faults at {} submissions/s; {} workers x max_in_flight {}; max_requeues {}; {} build \
         of {version}",
        o.seed,
        o.minutes,
        o.rate,
        WORKERS,
        WORKER_SLOTS,
        MAX_REQUEUES,
        if o.release { "release" } else { "debug" }
    );
    let _ = writeln!(
        head,
        "faults injected: {} ({})",
        done.count.values().sum::<usize>(),
        done.count
            .iter()
            .map(|(k, v)| format!("{}: {v}", k.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut restarts = done.cp_restart_ms.clone();
    restarts.sort_unstable();
    let _ = writeln!(
        head,
        "control plane: {} starts; serving again after a kill -9 in {} ms (median), {} ms (longest); {} proxied \
         connections, {} reset",
        cl.cp_starts,
        restarts.get(restarts.len() / 2).copied().unwrap_or(0),
        restarts.last().copied().unwrap_or(0),
        proxy.accepted(),
        done.resets
    );
    let peak = done.cp_samples.iter().max_by_key(|s| s.rss_kb).copied();
    let _ = writeln!(
        head,
        "control plane memory: before (first, after the warm-up) {}; after (last, settled) {}; largest just before \
         a kill {}",
        fmt_sample(before),
        fmt_sample(after),
        fmt_sample(peak)
    );
    let _ = writeln!(head, "{client_summary}");
    let _ = writeln!(head, "{sub_summary}");
    let _ = writeln!(
        head,
        "{}",
        check.lines().last().unwrap_or("check: no output")
    );
    let mut report = report::judge(&dir, MAX_REQUEUES, &head)?;
    let accepted_after = std::fs::read_to_string(dir.join("accepted.txt"))?
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(3)
                .and_then(|t| t.parse::<u64>().ok())
                .is_some_and(|t| t > faults_end_ms)
        })
        .count();
    for (ok, what) in [
        (
            Kind::ALL
                .iter()
                .all(|k| done.count.contains_key(k) || !faults.iter().any(|f| f.kind == *k)),
            format!(
                "every planned kind of fault was injected ({} kinds)",
                done.count.len()
            ),
        ),
        (
            accepted_after > 0,
            format!(
                "submissions are accepted once the faults stop ({accepted_after} in the last 5 s)"
            ),
        ),
        (
            cl.unexpected_exits.is_empty(),
            format!(
                "no worker or control plane exited on its own ({}) {}",
                cl.unexpected_exits.len(),
                cl.unexpected_exits.join("; ")
            ),
        ),
    ] {
        let _ = writeln!(
            report.text,
            "{}  {what}",
            if ok { "ok   " } else { "FAIL " }
        );
        if ok {
            report.passed += 1;
        } else {
            report.failed += 1;
        }
    }
    let _ = writeln!(
        report.text,
        "chaos: {:.0} s in all; files in {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    let _ = writeln!(
        report.text,
        "{} passed, {} failed",
        report.passed, report.failed
    );
    std::fs::write(dir.join("report.txt"), &report.text)?;
    print!("{}", report.text);
    drop(proxy);
    drop(cl);
    if report.failed > 0 {
        bail!(
            "chaos: {} check(s) failed (seed {}; replay: cargo xtask chaos --minutes {} --seed {})",
            report.failed,
            o.seed,
            o.minutes,
            o.seed
        );
    }
    Ok(())
}
