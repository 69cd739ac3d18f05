//! `/metrics` in the Prometheus text exposition format (0.0.4). The
//! README's "Metrics" table lists every family; label values are escaped
//! as the format asks (backslash, double quote, newline).

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::Ctx;
use crate::service::observe::{Histogram, Snapshot, StoreView, BUCKETS, COUNTERS};

pub(super) async fn serve(State(ctx): State<Ctx>) -> Response {
    let s = ctx.observer.snapshot().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&s),
    )
        .into_response()
}

/// `v` escaped for a label value.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    family(out, name, "histogram", help);
    let mut cumulative = 0;
    for (i, le) in BUCKETS.iter().enumerate() {
        cumulative += h.counts[i];
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

const COUNTER_HELP: [&str; 6] = [
    "Runs accepted by the control plane.",
    "Runs that finished with an output.",
    "Runs that finished with an error (timed-out runs included).",
    "Runs cancelled.",
    "Times a run was queued again after losing its worker.",
    "Runs failed by their deadline_ms.",
];

/// The whole exposition.
pub(crate) fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    for (i, c) in COUNTERS.iter().enumerate() {
        let name = format!("blazen_runs_{c}_total");
        family(&mut out, &name, "counter", COUNTER_HELP[i]);
        for (wf, v) in &s.counters {
            let _ = writeln!(out, "{name}{{workflow=\"{}\"}} {}", escape(wf), v[i]);
        }
    }
    for (name, help, pick) in [
        (
            "blazen_runs_pending",
            "Runs queued, waiting for a worker.",
            (|l: &crate::service::observe::Live| l.pending) as fn(&_) -> u64,
        ),
        (
            "blazen_runs_running",
            "Runs assigned to a worker and not finished.",
            |l| l.running,
        ),
    ] {
        family(&mut out, name, "gauge", help);
        for (wf, l) in &s.live {
            let _ = writeln!(out, "{name}{{workflow=\"{}\"}} {}", escape(wf), pick(l));
        }
    }
    family(
        &mut out,
        "blazen_workers_connected",
        "gauge",
        "Workers with an open session.",
    );
    let _ = writeln!(out, "blazen_workers_connected {}", s.workers.len());
    family(
        &mut out,
        "blazen_worker_in_flight",
        "gauge",
        "Runs assigned to the worker and not yet answered.",
    );
    for w in &s.workers {
        let _ = writeln!(
            out,
            "blazen_worker_in_flight{{node_id=\"{}\"}} {}",
            escape(&w.node_id),
            w.in_flight
        );
    }
    family(
        &mut out,
        "blazen_worker_max_in_flight",
        "gauge",
        "The most runs the worker takes at once (Fixed admission only).",
    );
    for w in &s.workers {
        if let Some(max) = w.max_in_flight {
            let _ = writeln!(
                out,
                "blazen_worker_max_in_flight{{node_id=\"{}\"}} {max}",
                escape(&w.node_id)
            );
        }
    }
    histogram(
        &mut out,
        "blazen_run_queue_seconds",
        "From submission (or re-queue) to assignment to a worker.",
        &s.queue_latency,
    );
    histogram(
        &mut out,
        "blazen_run_duration_seconds",
        "From assignment to the run's end.",
        &s.run_latency,
    );
    family(
        &mut out,
        "blazen_events_published_total",
        "counter",
        "Run events the event bus carried.",
    );
    let _ = writeln!(out, "blazen_events_published_total {}", s.events_published);
    family(
        &mut out,
        "blazen_events_dropped_total",
        "counter",
        "Run events the bus dropped before the metrics reader got them (it fell behind).",
    );
    let _ = writeln!(out, "blazen_events_dropped_total {}", s.events_dropped);
    family(
        &mut out,
        "blazen_runs_indexed",
        "gauge",
        "Runs the listing holds (every unfinished run and the last 10,000 finished).",
    );
    let _ = writeln!(out, "blazen_runs_indexed {}", s.indexed);
    family(
        &mut out,
        "blazen_store_configured",
        "gauge",
        "1 when the control plane keeps its runs in a store (Redis/Valkey).",
    );
    let configured = !matches!(s.store, StoreView::None);
    let _ = writeln!(out, "blazen_store_configured {}", u8::from(configured));
    if configured {
        family(
            &mut out,
            "blazen_store_up",
            "gauge",
            "1 while the store answers, 0 while it is down.",
        );
        let up = matches!(s.store, StoreView::Up);
        let _ = writeln!(out, "blazen_store_up {}", u8::from(up));
        family(
            &mut out,
            "blazen_store_writes_waiting",
            "gauge",
            "Writes waiting to be sent to the store: those made while it is down (replayed when it is back; past store_replay_limit submissions are refused), else a batch in progress.",
        );
        let _ = writeln!(out, "blazen_store_writes_waiting {}", s.writes_waiting);
    }
    process(&mut out);
    out
}

/// The usual `process_*` families, read from /proc (Linux; elsewhere
/// they are left out).
fn process(out: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name, which is in parentheses and may
    // hold spaces: state is field 3.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    // USER_HZ, which /proc counts in, is 100 on Linux.
    let ticks = 100.0;
    if let (Some(u), Some(s)) = (num(14), num(15)) {
        family(
            out,
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {}", (u + s) as f64 / ticks);
    }
    if let Some(t) = num(20) {
        family(out, "process_threads", "gauge", "Threads of the process.");
        let _ = writeln!(out, "process_threads {t}");
    }
    if let Some(v) = num(23) {
        family(
            out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
        );
        let _ = writeln!(out, "process_virtual_memory_bytes {v}");
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    if let Some(kb) = rss_kb {
        family(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {}", kb * 1024);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        family(out, "process_open_fds", "gauge", "Open file descriptors.");
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let max_fds = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok());
    if let Some(m) = max_fds {
        family(
            out,
            "process_max_fds",
            "gauge",
            "The most file descriptors it may open.",
        );
        let _ = writeln!(out, "process_max_fds {m}");
    }
    let btime = std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let (Some(b), Some(start)) = (btime, num(22)) {
        family(
            out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
        );
        let _ = writeln!(
            out,
            "process_start_time_seconds {}",
            b as f64 + start as f64 / ticks
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd<script>"), "a\\\"b\\\\c\\nd<script>");
    }
}
