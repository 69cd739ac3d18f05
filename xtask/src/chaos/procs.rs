//! The chaos run's processes: redis-server, the control plane
//! (tests/chaos/cp.c), the workers, the client and the subscribers, each
//! started, signalled and watched from here. Every child gets SIGKILL
//! should this process die (PR_SET_PDEATHSIG), and [`Cluster`]'s drop
//! kills whatever is left, so no run leaves a process behind.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The workers the run keeps (each restarted under a new node id).
pub const WORKERS: usize = 4;
/// `max_in_flight` of each worker.
pub const WORKER_SLOTS: u32 = 4;

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid this process started; no memory involved.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A command whose process is killed when this one dies.
fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    // SAFETY: prctl(2) only, between fork and exec (async-signal-safe).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Resident memory (kB) and open descriptors of `pid`, from /proc.
pub fn rss_and_fds(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

/// One sample of the control plane.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub rss_kb: u64,
    pub fds: usize,
    /// Seconds the sampled control plane had been up.
    pub up_s: f64,
}

/// Every process of one run.
pub struct Cluster {
    pub dir: PathBuf,
    bin: PathBuf,
    pub redis_port: u16,
    redis: Option<Child>,
    pub cp_port: u16,
    cp_options: String,
    cp: Option<(Child, Instant)>,
    pub cp_starts: u32,
    /// The endpoint the workers use (the proxy's).
    worker_endpoint: String,
    workers: Vec<Option<Child>>,
    incarnations: Vec<u32>,
    client: Option<Child>,
    subscriber: Option<Child>,
    /// Children that exited without being told to, by name.
    pub unexpected_exits: Vec<String>,
}

impl Cluster {
    pub fn new(dir: PathBuf, bin: PathBuf, max_requeues: u32) -> Result<Cluster> {
        std::fs::create_dir_all(dir.join("redis"))?;
        std::fs::create_dir_all(dir.join("workers"))?;
        let redis_port = free_port()?;
        let cp_port = free_port()?;
        let cp_options = format!(
            "{{\"store_url\":\"redis://127.0.0.1:{redis_port}/0\",\"max_requeues\":{max_requeues}}}"
        );
        Ok(Cluster {
            dir,
            bin,
            redis_port,
            redis: None,
            cp_port,
            cp_options,
            cp: None,
            cp_starts: 0,
            worker_endpoint: String::new(),
            workers: (0..WORKERS).map(|_| None).collect(),
            incarnations: vec![0; WORKERS],
            client: None,
            subscriber: None,
            unexpected_exits: Vec::new(),
        })
    }

    pub fn cp_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.cp_port)
    }

    // ---- redis ----------------------------------------------------------

    /// Starts redis-server (append-only file on, no RDB snapshots) on its
    /// port and data directory; returns once it answers PING.
    pub fn redis_start(&mut self) -> Result<()> {
        let log = self.dir.join("redis.log");
        let child = command("redis-server")
            .args(["--port", &self.redis_port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "everysec", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.join("redis"))
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server (run .ci/install-deps)")?;
        self.redis = Some(child);
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if redis_pings(self.redis_port) {
                return Ok(());
            }
            if let Some(c) = self.redis.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.redis = None;
                    bail!(
                        "redis-server exited at start ({status}); see {}",
                        log.display()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("redis-server did not answer PING within 60 s")
    }

    pub fn redis_pid(&self) -> Option<u32> {
        self.redis.as_ref().map(Child::id)
    }

    /// SIGTERM (Redis writes its append-only file and exits), wait.
    pub fn redis_stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.redis.take() {
            signal(c.id(), libc::SIGCONT);
            signal(c.id(), libc::SIGTERM);
            wait_or_kill(&mut c, Duration::from_secs(20))?;
        }
        Ok(())
    }

    // ---- the control plane ----------------------------------------------

    /// Starts a control plane on its fixed address and the store; retries
    /// (every 500 ms, for up to 60 s) a start that fails, e.g. while the
    /// store is not answering. Returns the attempts it took.
    pub fn cp_start(&mut self) -> Result<u32> {
        let until = Instant::now() + Duration::from_secs(60);
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.cp_starts += 1;
            let log = append(&self.dir.join("cp.log"))?;
            writeln!(&log, "== control plane start {}", self.cp_starts)?;
            let mut child = command(self.bin.join("chaos_cp"))
                .arg(format!("127.0.0.1:{}", self.cp_port))
                .arg(&self.cp_options)
                .env("BLAZEN_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .context("starting chaos_cp")?;
            let line = first_line(&mut child, Duration::from_secs(20));
            if line.starts_with("ready ") {
                self.cp = Some((child, Instant::now()));
                return Ok(attempts);
            }
            let _ = child.kill();
            let _ = child.wait();
            if Instant::now() > until {
                bail!("the control plane did not start within 60 s: {line}");
            }
            eprintln!("chaos: control plane start failed ({line}); again in 500 ms");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn cp_sample(&self) -> Option<Sample> {
        let (c, since) = self.cp.as_ref()?;
        let (rss_kb, fds) = rss_and_fds(c.id())?;
        Some(Sample {
            rss_kb,
            fds,
            up_s: since.elapsed().as_secs_f64(),
        })
    }

    /// `kill -9` of the control plane; returns its last sample.
    pub fn cp_kill(&mut self) -> Option<Sample> {
        let sample = self.cp_sample();
        if let Some((mut c, _)) = self.cp.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        sample
    }

    /// SIGTERM: a graceful stop.
    pub fn cp_stop(&mut self) -> Result<()> {
        if let Some((mut c, _)) = self.cp.take() {
            signal(c.id(), libc::SIGTERM);
            wait_or_kill(&mut c, Duration::from_secs(10))?;
        }
        Ok(())
    }

    // ---- workers ----------------------------------------------------------

    pub fn set_worker_endpoint(&mut self, endpoint: String) {
        self.worker_endpoint = endpoint;
    }

    /// Starts worker `i` under a new node id (`chaos-wI-INCARNATION`),
    /// logging its executions to workers/wI-INCARNATION.log.
    pub fn worker_start(&mut self, i: usize) -> Result<()> {
        self.incarnations[i] += 1;
        let node = format!("chaos-w{i}-{}", self.incarnations[i]);
        let log = self.dir.join("workers").join(format!("{node}.log"));
        let err = append(&self.dir.join("workers.err"))?;
        let child = command(self.bin.join("chaos_worker"))
            .arg(&self.worker_endpoint)
            .arg(&node)
            .arg(&log)
            .arg(WORKER_SLOTS.to_string())
            .env("BLAZEN_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .context("starting chaos_worker")?;
        self.workers[i] = Some(child);
        Ok(())
    }

    pub fn worker_kill(&mut self, i: usize) {
        if let Some(mut c) = self.workers[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn workers_stop(&mut self) -> Result<()> {
        for c in self.workers.iter().flatten() {
            signal(c.id(), libc::SIGTERM);
        }
        for w in self.workers.iter_mut() {
            if let Some(mut c) = w.take() {
                wait_or_kill(&mut c, Duration::from_secs(10))?;
            }
        }
        Ok(())
    }

    // ---- client and subscribers ---------------------------------------

    pub fn client_start(&mut self, rate: f64) -> Result<()> {
        let out = File::create(self.dir.join("client.out"))?;
        let err = File::create(self.dir.join("client.err"))?;
        self.client = Some(
            command(self.bin.join("chaos_client"))
                .arg("run")
                .arg(self.cp_endpoint())
                .arg(rate.to_string())
                .arg(&self.dir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .context("starting chaos_client")?,
        );
        Ok(())
    }

    /// Stops the client (it finishes the call in flight) and returns its
    /// summary line.
    pub fn client_stop(&mut self) -> Result<String> {
        if let Some(mut c) = self.client.take() {
            signal(c.id(), libc::SIGTERM);
            wait_or_kill(&mut c, Duration::from_secs(60))?;
        }
        let out = std::fs::read_to_string(self.dir.join("client.out")).unwrap_or_default();
        Ok(out
            .lines()
            .find(|l| l.starts_with("client: submitted"))
            .unwrap_or("client: no summary (see client.err)")
            .to_string())
    }

    pub fn subscriber_start(&mut self) -> Result<()> {
        let out = File::create(self.dir.join("subscriber.out"))?;
        let err = File::create(self.dir.join("subscriber.err"))?;
        self.subscriber = Some(
            command(self.bin.join("chaos_sub"))
                .arg(self.cp_endpoint())
                .arg(&self.dir)
                .env("BLAZEN_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .context("starting chaos_sub")?,
        );
        Ok(())
    }

    pub fn subscriber_stop(&mut self) -> Result<String> {
        if let Some(mut c) = self.subscriber.take() {
            signal(c.id(), libc::SIGTERM);
            wait_or_kill(&mut c, Duration::from_secs(20))?;
        }
        let out = std::fs::read_to_string(self.dir.join("subscriber.out")).unwrap_or_default();
        Ok(out.trim().to_string())
    }

    /// Runs `chaos_client check` (describes every accepted run until all
    /// are terminal or `timeout_s` passes); returns its output.
    pub fn check(&self, timeout_s: u64) -> Result<String> {
        let out = command(self.bin.join("chaos_client"))
            .arg("check")
            .arg(self.cp_endpoint())
            .arg(&self.dir)
            .arg(timeout_s.to_string())
            .stderr(Stdio::inherit())
            .output()
            .context("running chaos_client check")?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            bail!("chaos_client check failed ({}): {text}", out.status);
        }
        Ok(text)
    }

    // ---- watching ------------------------------------------------------

    /// Restarts a worker or control plane that exited on its own (and
    /// records it); fails when the client, the subscriber or Redis did.
    pub fn watch(&mut self) -> Result<()> {
        let cp_gone = match self.cp.as_mut() {
            Some((c, _)) => c.try_wait()?.map(|s| s.to_string()),
            None => None,
        };
        if let Some(status) = cp_gone {
            self.unexpected_exits
                .push(format!("control plane ({status})"));
            self.cp = None;
            self.cp_start()?;
        }
        for i in 0..WORKERS {
            let gone = match self.workers[i].as_mut() {
                Some(c) => c.try_wait()?.map(|s| s.to_string()),
                None => None,
            };
            if let Some(status) = gone {
                self.unexpected_exits.push(format!(
                    "worker chaos-w{i}-{} ({status})",
                    self.incarnations[i]
                ));
                self.worker_start(i)?;
            }
        }
        for (name, child) in [
            ("client", &mut self.client),
            ("subscriber", &mut self.subscriber),
            ("redis-server", &mut self.redis),
        ] {
            if let Some(c) = child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    *child = None;
                    bail!(
                        "the {name} exited on its own ({status}); see {}",
                        self.dir.display()
                    );
                }
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut all: Vec<Child> = Vec::new();
        all.extend(self.cp.take().map(|(c, _)| c));
        all.extend(self.redis.take());
        all.extend(self.client.take());
        all.extend(self.subscriber.take());
        all.extend(self.workers.iter_mut().filter_map(Option::take));
        for mut c in all {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits up to `limit` for `c` to exit, then kills it.
fn wait_or_kill(c: &mut Child, limit: Duration) -> Result<()> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if c.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "chaos: process {} did not stop within {limit:?}; killed",
        c.id()
    );
    c.kill()?;
    c.wait()?;
    Ok(())
}

/// The first line `child` prints, or what went wrong, within `limit`.
fn first_line(child: &mut Child, limit: Duration) -> String {
    let Some(stdout) = child.stdout.take() else {
        return "no stdout".into();
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep the pipe open (and drained) while the child lives.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    match rx.recv_timeout(limit) {
        Ok(line) if line.is_empty() => "exited before it was ready".into(),
        Ok(line) => line.trim().to_string(),
        Err(_) => format!("not ready within {limit:?}"),
    }
}

/// True once Redis answers PING with PONG (not LOADING).
pub fn redis_pings(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}
