#!/usr/bin/env python3
"""Reproduces a defect `cargo xtask bench e2e` found (issue 22): on a healthy
Redis, the embedded control plane takes its store for down when workers
that ran a few thousand runs leave, and refuses submissions (UNAVAILABLE,
"control plane store ... is unavailable: no answer within 1000 ms") for as
long as the load goes on.

Why: the crate's ValkeyAssignmentStore releases in-flight claims only when
a session ends (docs/upstream.md 12), with two round trips per run the
session ever ran, one after the other; past several thousand runs that exceeds
the embedded store guard's 1 s call limit (embedded-cp/src/store/mod.rs
CALL_TIMEOUT), which marks the store down. While it is down every write is
queued and the probe replays them one at a time, so under load the queue
does not drain and the store stays "down" until the load stops.

Needs `cargo xtask bench` built once (target/release/blazen-cabi-bench,
target/bench/bench_c) and redis-server. Usage: bench/repro/store_down.py
[RUNS, default 20000]. Expect: the first side completes every run; the
second, started right after the first side's workers left, has most of
its submissions fail; submissions fail for a few seconds after it ends.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target/release/blazen-cabi-bench")
C = os.path.join(ROOT, "target/bench/bench_c")
runs = sys.argv[1] if len(sys.argv) > 1 else "20000"

tmp = tempfile.mkdtemp(prefix="blazen-store-down-")
s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
                          "--save", "", "--appendonly", "no", "--logfile", tmp + "/redis.log"])
time.sleep(0.5)
serve = subprocess.Popen([BIN, "serve", json.dumps({"store_url": f"redis://127.0.0.1:{port}/0"})],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
ep = serve.stdout.readline().strip()
serve.stdout.readline()


def side(cmd, tag):
    """One side of the bench's 4x16 workload (4 workers x 16, 128 runs open)."""
    p = subprocess.Popen(cmd + [ep, tag, "4", "16", runs, "loop", "128"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout.readline().strip() == "ready"
    p.stdin.write("go\n")
    p.stdin.flush()
    r = json.loads(p.stdout.readline())
    p.stdin.close()
    p.wait()  # its workers leave now
    print(f"{tag}: {r['completed']} of {r['runs']} runs completed, {r['submit_failed']} submissions refused",
          flush=True)


try:
    side([C, "e2e"], "first-c")
    side([BIN, "e2e-native"], "second-native")
    t0 = time.time()
    for _ in range(8):
        out = subprocess.run([C, "submit", ep, "20", "20", "1"], capture_output=True, text=True)
        failed = json.loads(out.stdout.splitlines()[-1])["failed"] if out.returncode == 0 else "?"
        print(f"{time.time() - t0:4.1f} s later: {failed} of 20 submissions refused", flush=True)
        time.sleep(1)
finally:
    serve.stdin.close()
    serve.wait()
    redis.terminate()
    redis.wait()
    shutil.rmtree(tmp, ignore_errors=True)
