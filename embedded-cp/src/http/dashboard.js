// The embedded control plane's dashboard: polls the JSON API every second
// and renders with textContent only (values from the control plane are
// never parsed as HTML). No build step, no other origin.
"use strict";

const POLL_MS = 1000;
const state = { before: null, cursors: [], selected: null, busy: false };

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

async function getJSON(path) {
  const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (r.status === 401) throw new Error("401: open /?token=TOKEN once to sign in");
  if (!r.ok) {
    let why = r.status + "";
    try { why += ": " + (await r.json()).error; } catch (_) { /* not JSON */ }
    throw new Error(why);
  }
  return r.json();
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  return (ms / 60000).toFixed(1) + " min";
}

function fmtTime(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

// Draws series (arrays of numbers, oldest first) as lines, or as stacked
// bars when `stacked`, with a y-axis scale.
function chart(canvas, series, colors, stacked) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const n = series.length ? series[0].length : 0;
  const pad = { l: 40, r: 6, t: 6, b: 16 };
  let max = 1;
  for (let i = 0; i < n; i++) {
    if (stacked) max = Math.max(max, series.reduce((s, a) => s + a[i], 0));
    else for (const a of series) max = Math.max(max, a[i]);
  }
  const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
  g.strokeStyle = cssVar("--line"); g.fillStyle = cssVar("--muted");
  g.font = "11px system-ui, sans-serif"; g.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const y = pad.t + ph - (ph * k) / 4;
    g.beginPath(); g.moveTo(pad.l, y); g.lineTo(w - pad.r, y); g.stroke();
    g.fillText(String(Math.round((max * k) / 4)), 4, y + 4);
  }
  g.fillText(n ? "-" + n + " s" : "", pad.l, h - 3);
  g.fillText("now", w - pad.r - 22, h - 3);
  if (n === 0) return;
  const slots = Math.max(n, 60), step = pw / slots, x0 = pad.l + pw - n * step;
  if (stacked) {
    for (let i = 0; i < n; i++) {
      let base = 0;
      series.forEach((a, j) => {
        const v = a[i];
        if (v <= 0) return;
        const y1 = pad.t + ph - (ph * (base + v)) / max, y0 = pad.t + ph - (ph * base) / max;
        g.fillStyle = colors[j];
        g.fillRect(x0 + i * step, y1, Math.max(step - 1, 1), y0 - y1);
        base += v;
      });
    }
  } else {
    series.forEach((a, j) => {
      g.strokeStyle = colors[j]; g.lineWidth = 2; g.beginPath();
      a.forEach((v, i) => {
        const x = x0 + i * step + step / 2, y = pad.t + ph - (ph * v) / max;
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
    });
  }
}

function renderOverview(o) {
  $("n-workers").textContent = o.workers.length;
  $("n-pending").textContent = o.by_status.pending;
  $("n-running").textContent = o.by_status.running;
  $("n-completed").textContent = o.by_status.completed;
  $("n-failed").textContent = o.by_status.failed;
  $("n-cancelled").textContent = o.by_status.cancelled;
  $("n-submitted").textContent = o.totals.submitted;
  $("n-requeued").textContent = o.totals.requeued;
  $("n-timed_out").textContent = o.totals.timed_out;
  $("n-dropped").textContent = o.events.dropped;
  const store = $("store");
  if (!o.store.configured) { store.textContent = "store: none (in memory)"; store.className = "pill"; }
  else if (o.store.up) { store.textContent = "store: up"; store.className = "pill up"; }
  else { store.textContent = "store: DOWN"; store.title = o.store.error || ""; store.className = "pill down"; }

  const h = o.history;
  chart($("chart-depth"), [h.map((s) => s.pending), h.map((s) => s.running)],
    [cssVar("--pending"), cssVar("--running")], false);
  chart($("chart-throughput"), [h.map((s) => s.completed), h.map((s) => s.failed), h.map((s) => s.cancelled)],
    [cssVar("--completed"), cssVar("--failed"), cssVar("--cancelled")], true);

  const body = $("workers").tBodies[0];
  const rows = o.workers.map((w) => {
    const tr = el("tr");
    tr.dataset.node = w.node_id;
    tr.append(el("td", w.node_id), el("td", w.admission), el("td", w.capabilities.join(", ")));
    const max = w.max_in_flight;
    tr.append(el("td", max ? w.in_flight + " / " + max : String(w.in_flight), "inflight"));
    const bar = el("div", null, "bar"), fill = el("div");
    fill.style.width = (max ? Math.min(100, (100 * w.in_flight) / max) : 0) + "%";
    bar.append(fill);
    const td = el("td"); td.append(bar); tr.append(td);
    return tr;
  });
  if (rows.length === 0) {
    const tr = el("tr"); const td = el("td", "no worker connected", "muted"); td.colSpan = 5; tr.append(td); rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function runsQuery() {
  const p = new URLSearchParams({ limit: "25" });
  const s = $("f-status").value, w = $("f-workflow").value;
  if (s) p.set("status", s);
  if (w) p.set("workflow", w);
  if (state.before !== null) p.set("before", String(state.before));
  return "/api/runs?" + p.toString();
}

function renderRuns(page) {
  state.next = page.next_cursor;
  $("older").disabled = page.next_cursor === null;
  const rows = page.runs.map((r) => {
    const tr = el("tr");
    tr.dataset.run = r.run_id;
    if (r.run_id === state.selected) tr.className = "sel";
    const st = el("span", r.status, "status " + r.status);
    const tdS = el("td"); tdS.append(st);
    tr.append(el("td", r.run_id.slice(0, 8), "mono"), el("td", r.workflow === null ? "(unknown)" : r.workflow), tdS,
      el("td", fmtTime(r.submitted_ms)), el("td", fmtMs(r.duration_ms)), el("td", r.error || "", "err"));
    tr.addEventListener("click", () => { state.selected = r.run_id; refresh(); });
    return tr;
  });
  if (rows.length === 0) {
    const tr = el("tr"); const td = el("td", "no run matches", "muted"); td.colSpan = 6; tr.append(td); rows.push(tr);
  }
  $("runs").tBodies[0].replaceChildren(...rows);
}

function renderDetail(r) {
  $("detail-hint").textContent = "";
  const meta = [["run", r.run_id], ["workflow", r.workflow], ["status", r.status], ["node", r.node_id],
    ["queued for", r.assigned_ms ? fmtMs(r.assigned_ms - r.submitted_ms) : ""], ["ran for", fmtMs(r.duration_ms)],
    ["re-queues", r.requeues], ["error", r.error]];
  const dl = $("detail-meta");
  dl.replaceChildren();
  for (const [k, v] of meta) {
    if (v === null || v === undefined || v === "") continue;
    dl.append(el("dt", k), el("dd", v));
  }
  const items = (r.events || []).map((e) => {
    const kind = e.event_type.replace(/^status\./, "");
    const li = el("li", null, kind);
    li.append(el("span", fmtTime(e.timestamp_ms) + "  ", "t"), el("strong", e.event_type));
    if (e.data && Object.keys(e.data).length) li.append(el("pre", JSON.stringify(e.data, null, 1)));
    return li;
  });
  $("timeline").replaceChildren(...items);
}

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  try {
    const [o, page] = await Promise.all([getJSON("/api/overview"), getJSON(runsQuery())]);
    renderOverview(o);
    renderRuns(page);
    if (state.selected) renderDetail(await getJSON("/api/runs/" + encodeURIComponent(state.selected)));
    $("updated").textContent = "updated " + fmtTime(o.now_ms);
    document.body.dataset.loaded = "1";
  } catch (e) {
    $("updated").textContent = String(e.message || e);
  } finally {
    state.busy = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  // A run to open at once: /#run=RUN_ID.
  const picked = /^#run=([0-9a-fA-F-]{36})$/.exec(location.hash);
  if (picked) state.selected = picked[1];
  $("f-status").addEventListener("change", () => { state.before = null; state.cursors = []; refresh(); });
  $("f-workflow").addEventListener("input", () => { state.before = null; state.cursors = []; refresh(); });
  $("older").addEventListener("click", () => {
    if (state.next === null || state.next === undefined) return;
    state.cursors.push(state.before); state.before = state.next; refresh();
  });
  $("newest").addEventListener("click", () => { state.before = null; state.cursors = []; refresh(); });
  refresh();
  setInterval(refresh, POLL_MS);
});
