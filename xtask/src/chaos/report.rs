//! What a chaos run left in its directory, read back and judged: every
//! accepted submission (accepted.txt) against its final state
//! (final.txt), the handler executions the workers logged
//! (workers/*.log), the client's describes as it went (describes.txt) and
//! the subscribers' events (events-*.txt).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

const PENDING: i32 = 0;
const RUNNING: i32 = 1;
const COMPLETED: i32 = 2;
const FAILED: i32 = 3;

/// The text the control plane fails a run with when it lost its worker
/// more than `max_requeues` times (README, "No poison loop").
const REQUEUE_CAP: &str = "lost its worker";

/// One accepted submission.
struct Accepted {
    n: i64,
    id: String,
    submit_ms: u64,
}

/// A run's final state (chaos_client check).
struct Final {
    status: i32,
    completed_ms: u64,
    text: String,
}

/// One handler execution (an `S` line of a worker log).
struct Execution {
    pid: u32,
    attempt: u32,
    /// The run number its input carried.
    n: i64,
}

/// The figures and the verdicts of one run.
pub struct Report {
    pub text: String,
    pub passed: usize,
    pub failed: usize,
}

fn read(dir: &Path, name: &str) -> Result<String> {
    std::fs::read_to_string(dir.join(name)).with_context(|| format!("reading {name}"))
}

/// The output a correct handler gives for run `n` (tests/chaos/chaos.h).
fn expected(n: i64) -> String {
    format!("\"chaos-{n}-{}\"", (n * n) % 9973)
}

/// "A 3, B 1", or "none".
fn counts(map: &BTreeMap<String, usize>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Checks<'a> {
    out: &'a mut String,
    passed: usize,
    failed: usize,
}

impl Checks<'_> {
    fn check(&mut self, ok: bool, what: String) {
        if ok {
            self.passed += 1;
            let _ = writeln!(self.out, "ok    {what}");
        } else {
            self.failed += 1;
            let _ = writeln!(self.out, "FAIL  {what}");
        }
    }
}

/// Reads the run's files in `dir` and judges them (`max_requeues`: the
/// control plane's); the report starts with `head`.
pub fn judge(dir: &Path, max_requeues: u32, head: &str) -> Result<Report> {
    let accepted: Vec<Accepted> = read(dir, "accepted.txt")?
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            (f.next()? == "A").then_some(())?;
            Some(Accepted {
                n: f.next()?.parse().ok()?,
                id: f.next()?.to_string(),
                submit_ms: f.next()?.parse().ok()?,
            })
        })
        .collect();
    let finals: HashMap<String, Final> = read(dir, "final.txt")?
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(5, ' ');
            (f.next()? == "F").then_some(())?;
            let id = f.next()?.to_string();
            Some((
                id,
                Final {
                    status: f.next()?.parse().ok()?,
                    completed_ms: f.next()?.parse().ok()?,
                    text: f.next().unwrap_or("").to_string(),
                },
            ))
        })
        .collect();
    let mut executions: HashMap<String, Vec<Execution>> = HashMap::new();
    let mut ends: HashMap<String, usize> = HashMap::new();
    for entry in std::fs::read_dir(dir.join("workers"))? {
        let text = std::fs::read_to_string(entry?.path())?;
        for l in text.lines() {
            let f: Vec<&str> = l.split(' ').collect();
            match f.as_slice() {
                ["S", id, pid, attempt, _, n] => executions
                    .entry(id.to_string())
                    .or_default()
                    .push(Execution {
                        pid: pid.parse().unwrap_or(0),
                        attempt: attempt.parse().unwrap_or(0),
                        n: n.parse().unwrap_or(-1),
                    }),
                ["E", id, ..] => *ends.entry(id.to_string()).or_default() += 1,
                _ => {}
            }
        }
    }

    let mut out = String::from(head);
    let mut verdicts = String::new();
    let mut c = Checks {
        out: &mut verdicts,
        passed: 0,
        failed: 0,
    };

    // ---- final states ----
    let (mut completed, mut failed_cap, mut cancelled) = (0, 0, 0);
    let mut lost: Vec<String> = Vec::new();
    let mut wrong: Vec<String> = Vec::new();
    let mut failed_other: Vec<String> = Vec::new();
    let mut never_ran: Vec<String> = Vec::new();
    let mut waits: Vec<(u64, i64)> = Vec::new();
    let by_id: HashMap<&str, &Accepted> = accepted.iter().map(|a| (a.id.as_str(), a)).collect();
    for a in &accepted {
        let Some(f) = finals.get(&a.id) else {
            lost.push(format!("{} (n {}): no final state", a.id, a.n));
            continue;
        };
        match f.status {
            COMPLETED => {
                completed += 1;
                if f.text != expected(a.n) {
                    wrong.push(format!(
                        "{} (n {}): {} != {}",
                        a.id,
                        a.n,
                        f.text,
                        expected(a.n)
                    ));
                }
                if !executions.contains_key(&a.id) {
                    never_ran.push(a.id.clone());
                }
                waits.push((f.completed_ms.saturating_sub(a.submit_ms), a.n));
            }
            FAILED if f.text.contains(REQUEUE_CAP) => failed_cap += 1,
            FAILED => failed_other.push(format!("{} (n {}): {}", a.id, a.n, f.text)),
            4 => cancelled += 1,
            s => lost.push(format!(
                "{} (n {}): {} at the end: {}",
                a.id,
                a.n,
                match s {
                    PENDING => "PENDING",
                    RUNNING => "RUNNING",
                    _ => "not described",
                },
                f.text
            )),
        }
    }

    // ---- executions ----
    let bound = max_requeues as usize + 1;
    let mut beyond_one = 0;
    let mut runs_rerun = 0;
    let mut max_runs = 0;
    let mut over_bound: Vec<String> = Vec::new();
    let mut same_attempt = 0;
    let mut hist: BTreeMap<usize, usize> = BTreeMap::new();
    for a in &accepted {
        let ex = executions.get(&a.id).map_or(&[][..], Vec::as_slice);
        *hist.entry(ex.len()).or_default() += 1;
        max_runs = max_runs.max(ex.len());
        if ex.len() > 1 {
            beyond_one += ex.len() - 1;
            runs_rerun += 1;
        }
        if ex.len() > bound {
            over_bound.push(format!("{} (n {}): {} executions", a.id, a.n, ex.len()));
        }
        let mut seen = HashSet::new();
        same_attempt += ex.iter().filter(|e| !seen.insert(e.attempt)).count();
    }
    // Runs executed that no accepted submission names: a submission the
    // client saw refused (or time out) whose run was created anyway, or,
    // worse, a second run made from one submission.
    let mut refusals: HashMap<i64, String> = HashMap::new();
    // (n, submitted at, accepted) of every submission, for the longest
    // stretch of refusals.
    let mut outcomes: Vec<(i64, u64, bool)> =
        accepted.iter().map(|a| (a.n, a.submit_ms, true)).collect();
    for l in read(dir, "refused.txt")?.lines() {
        let mut f = l.splitn(5, ' ');
        let (Some("R"), Some(n), Some(at)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let text = f.nth(1).unwrap_or("");
        let subkind = text.split(':').next().unwrap_or("?").to_string();
        let n = n.parse().unwrap_or(-1);
        refusals.insert(n, subkind);
        outcomes.push((n, at.parse().unwrap_or(0), false));
    }
    outcomes.sort_unstable();
    let mut refused_since: Option<u64> = None;
    let mut longest_refusal = 0;
    for (_, at, ok) in &outcomes {
        match (ok, refused_since) {
            (false, None) => refused_since = Some(*at),
            (true, Some(since)) => {
                longest_refusal = longest_refusal.max(at.saturating_sub(since));
                refused_since = None;
            }
            _ => {}
        }
    }
    let mut refused_ran: BTreeMap<String, usize> = BTreeMap::new();
    let mut unexplained: Vec<String> = Vec::new();
    for (id, ex) in &executions {
        if by_id.contains_key(id.as_str()) {
            continue;
        }
        let n = ex.first().map_or(-1, |e| e.n);
        match refusals.get(&n) {
            Some(subkind) => *refused_ran.entry(subkind.clone()).or_default() += 1,
            None => unexplained.push(format!("{id} (n {n})")),
        }
    }
    let pids: HashSet<u32> = executions.values().flatten().map(|e| e.pid).collect();
    let total_exec: usize = executions.values().map(Vec::len).sum();
    let total_ends: usize = ends.values().sum();

    // ---- describes as it went ----
    let mut seen_terminal: HashSet<String> = HashSet::new();
    let mut regressions: Vec<String> = Vec::new();
    let (mut describes, mut describe_errors) = (0, 0);
    for l in read(dir, "describes.txt")?.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let [_, ms, id, status, ..] = f.as_slice() else {
            continue;
        };
        describes += 1;
        match status.parse::<i32>() {
            Ok(s) if s >= COMPLETED => {
                seen_terminal.insert(id.to_string());
            }
            Ok(s) if seen_terminal.contains(*id) => {
                regressions.push(format!("{id}: described terminal, then {s} at {ms}"))
            }
            Ok(_) => {}
            Err(_) => describe_errors += 1,
        }
    }
    for id in &seen_terminal {
        if finals.get(id).is_some_and(|f| f.status < COMPLETED) {
            regressions.push(format!("{id}: described terminal, not terminal at the end"));
        }
    }

    // ---- subscribers ----
    let mut events = 0;
    let mut completed_seen: HashSet<String> = HashSet::new();
    let mut bad_events: Vec<String> = Vec::new();
    for k in 0.. {
        let Ok(text) = std::fs::read_to_string(dir.join(format!("events-{k}.txt"))) else {
            break;
        };
        for l in text.lines() {
            let f: Vec<&str> = l.splitn(5, ' ').collect();
            let [_, _, id, kind, data] = f.as_slice() else {
                continue;
            };
            events += 1;
            if *kind != "status.completed" {
                continue;
            }
            completed_seen.insert(id.to_string());
            if let Some(a) = by_id.get(id) {
                if !data.contains(&expected(a.n)) {
                    bad_events.push(format!("{id}: status.completed with {data}"));
                }
                if finals.get(*id).is_some_and(|f| f.status != COMPLETED) {
                    bad_events.push(format!(
                        "{id}: status.completed, but not COMPLETED at the end"
                    ));
                }
            }
        }
    }
    let covered = accepted
        .iter()
        .filter(|a| completed_seen.contains(&a.id))
        .count();

    // ---- refusals ----
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for subkind in refusals.values() {
        *refused.entry(subkind.clone()).or_default() += 1;
    }

    // ---- the figures ----
    waits.sort();
    let sorted: Vec<u64> = waits.iter().map(|w| w.0).collect();
    let longest = waits.last().copied().unwrap_or((0, -1));
    let _ = writeln!(out, "runs accepted: {}", accepted.len());
    let _ = writeln!(
        out,
        "final states: {completed} COMPLETED, {failed_cap} FAILED at the re-queue cap (max_requeues {max_requeues}), \
         {} FAILED otherwise, {cancelled} CANCELLED, {} lost",
        failed_other.len(),
        lost.len()
    );
    let _ = writeln!(
        out,
        "handler executions: {total_exec} started ({total_ends} finished) in {} worker processes; \
         beyond one per accepted run: {beyond_one} (over {runs_rerun} runs; most for one run: {max_runs}; \
         README bound: 1 + max_requeues = {bound}); per run: {}; two executions with the same attempt: \
         {same_attempt}",
        pids.len(),
        hist.iter()
            .map(|(k, v)| format!("{k}x {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "wait, submission to completion: p50 {} ms, p99 {} ms, longest {} ms (run n {})",
        pct(&sorted, 0.5),
        pct(&sorted, 0.99),
        longest.0,
        longest.1
    );
    let _ = writeln!(
        out,
        "refused submissions: {} ({}); the longest stretch with every submission refused: {} ms",
        refused.values().sum::<usize>(),
        counts(&refused),
        longest_refusal
    );
    let _ = writeln!(
        out,
        "refused submissions whose run was created and executed anyway: {} ({})",
        refused_ran.values().sum::<usize>(),
        counts(&refused_ran)
    );
    let _ = writeln!(
        out,
        "describes as it went: {describes} ({describe_errors} failed); subscribers: {events} status events, \
         status.completed seen for {covered} of {} accepted runs (subscriptions do not survive a control plane \
         restart)",
        accepted.len()
    );

    // ---- the verdicts ----
    let sample = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
    c.check(
        !accepted.is_empty(),
        format!("runs were accepted ({})", accepted.len()),
    );
    c.check(
        lost.is_empty(),
        format!(
            "no accepted run lost ({} lost) {}",
            lost.len(),
            sample(&lost)
        ),
    );
    c.check(
        wrong.is_empty(),
        format!(
            "every COMPLETED run has its right output ({} wrong) {}",
            wrong.len(),
            sample(&wrong)
        ),
    );
    c.check(
        failed_other.is_empty(),
        format!(
            "no run FAILED but at the documented re-queue cap ({} others) {}",
            failed_other.len(),
            sample(&failed_other)
        ),
    );
    c.check(
        over_bound.is_empty(),
        format!(
            "no run executed more than 1 + max_requeues = {bound} times ({} over) {}",
            over_bound.len(),
            sample(&over_bound)
        ),
    );
    c.check(
        never_ran.is_empty(),
        format!(
            "every COMPLETED run was executed by a handler ({} never) {}",
            never_ran.len(),
            sample(&never_ran)
        ),
    );
    c.check(
        regressions.is_empty(),
        format!(
            "no run described terminal went back ({}) {}",
            regressions.len(),
            sample(&regressions)
        ),
    );
    c.check(
        bad_events.is_empty(),
        format!(
            "every status.completed event carries the run's output and matches its end ({} bad) {}",
            bad_events.len(),
            sample(&bad_events)
        ),
    );
    c.check(
        unexplained.is_empty(),
        format!(
            "every run executed was submitted once: accepted, or refused to the client ({} others) {}",
            unexplained.len(),
            sample(&unexplained)
        ),
    );
    let (passed, failed) = (c.passed, c.failed);
    out.push_str(&verdicts);
    Ok(Report {
        text: out,
        passed,
        failed,
    })
}
