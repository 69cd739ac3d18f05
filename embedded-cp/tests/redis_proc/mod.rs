//! Real Redis servers (and sentinels) for the store tests: each on a free
//! loopback port with a data directory of its own (append-only file, so a
//! server stopped and started again keeps its data), stopped and its
//! directory removed when dropped. Needs `redis-server` and
//! `redis-sentinel` (installed by .ci/install-deps).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(what: &str) -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!(
        "blazen-store-test-{}-{what}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One `redis-server` (or `redis-sentinel`) process.
pub struct Redis {
    pub port: u16,
    pub dir: PathBuf,
    program: &'static str,
    args: Vec<String>,
    child: Option<Child>,
}

impl Redis {
    /// A server with `extra` arguments (AOF on, no RDB snapshots).
    pub async fn start(extra: &[&str]) -> Redis {
        let port = free_port();
        let dir = temp_dir("redis");
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            dir.to_str().unwrap(),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // `{port}` in `extra` is the server's port (`--port 0 --tls-port
        // {port}` serves TLS only); a later setting overrides an earlier one.
        args.extend(extra.iter().map(|s| s.replace("{port}", &port.to_string())));
        Self::spawn("redis-server", port, dir, args).await
    }

    /// A sentinel watching `primary_port` as `name` (quorum 1, a primary
    /// taken for down after 1 s).
    pub async fn sentinel(name: &str, primary_port: u16) -> Redis {
        let port = free_port();
        let dir = temp_dir("sentinel");
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {name} 127.0.0.1 {primary_port} 1\n\
                 sentinel down-after-milliseconds {name} 1000\nsentinel failover-timeout {name} 4000\n\
                 sentinel parallel-syncs {name} 2\n",
                dir.display()
            ),
        )
        .unwrap();
        let args = vec![conf.to_str().unwrap().to_string()];
        Self::spawn("redis-sentinel", port, dir, args).await
    }

    async fn spawn(program: &'static str, port: u16, dir: PathBuf, args: Vec<String>) -> Redis {
        let mut r = Redis {
            port,
            dir,
            program,
            args,
            child: None,
        };
        r.restart().await;
        r
    }

    /// Starts the process again (same port, same data).
    pub async fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.join(format!("{}.log", self.program))).unwrap();
        let child = Command::new(self.program)
            .args(&self.args)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{} is installed (run .ci/install-deps): {e}", self.program)
            });
        self.child = Some(child);
        for _ in 0..1000 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} did not start on port {}", self.program, self.port);
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (e.g. "STOP", "CONT").
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([format!("-{signal}"), c.id().to_string()])
                .status();
        }
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.program))).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.signal("CONT");
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A connection of the test's own to the server at `url`.
pub async fn conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("the test connects to Redis")
}

/// The keys matching `pattern` on the server at `url` (`KEYS`).
pub async fn keys(url: &str, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn(url).await)
        .await
        .expect("KEYS answers")
}

/// Certificates from tests/tls/make-certs.sh (CA, server and client
/// certificates for 127.0.0.1, and an unrelated CA) in a fresh directory.
pub fn certs() -> PathBuf {
    let dir = temp_dir("certs");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/tls/make-certs.sh");
    let ok = Command::new("bash")
        .arg(script)
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .expect("bash runs make-certs.sh")
        .success();
    assert!(ok, "make-certs.sh (needs openssl) made the certificates");
    dir
}
