//! A store that can be deployed: TLS (`rediss://` with the server's CA and
//! a client certificate), a Redis ACL user and password in `store_url`
//! (never printed), and a Sentinel-managed primary followed through a
//! failover (`SENTINEL FAILOVER`, then the primary killed) without losing
//! an accepted run. Each against real servers started here (redis-server
//! with TLS from tests/tls/make-certs.sh, ACL users, three servers and a
//! redis-sentinel).

mod common;
mod redis_proc;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blazen_core::distributed::{OrchestratorClient, RunStatus};
use blazen_embedded_cp::{Config, Error, Server, Subkind};
use common::*;
use redis_proc::Redis;
use serde_json::json;
use uuid::Uuid;

fn on(url: &str) -> Config {
    Config {
        store_url: Some(url.to_string()),
        ..config()
    }
}

/// The start's error on the store at `url`.
async fn refused_start(url: &str) -> String {
    let started = Instant::now();
    let e = Server::start("127.0.0.1:0", on(url))
        .await
        .err()
        .unwrap_or_else(|| panic!("a control plane on {url} does not start"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it fails within the connect limit"
    );
    match e {
        Error::Peer {
            subkind: Subkind::ControlPlaneStore,
            message,
        } => message,
        other => panic!("PEER / ControlPlaneStore expected, got {other:?}"),
    }
}

/// Runs `n` runs through a control plane on `url` to completion, then a
/// new control plane on the same store describes each from the store.
async fn runs_survive_on(url: &str, n: usize) {
    let first = server(on(url)).await;
    let c = client(&first).await;
    let _w = worker(&first, "w", "deploy", 4, Echo::default()).await;
    let mut runs = Vec::new();
    for i in 0..n {
        runs.push(submit(&c, "deploy", json!(i), true).await);
    }
    for run in &runs {
        assert_eq!(ended(&c, *run).await.status, RunStatus::Completed);
    }
    drop(c);
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = server(on(url)).await;
    let c = client(&second).await;
    for (i, run) in runs.iter().enumerate() {
        let snap = c
            .describe_workflow(*run)
            .await
            .expect("described from the store");
        assert_eq!(
            (snap.status, snap.output),
            (RunStatus::Completed, Some(json!(i)))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_servers_ca_and_a_client_certificate() {
    let certs = redis_proc::certs();
    let pem = |f: &str| certs.join(f).to_str().unwrap().to_string();
    let redis = Redis::start(&[
        "--port",
        "0",
        "--tls-port",
        "{port}",
        "--tls-cert-file",
        &pem("server.pem"),
        "--tls-key-file",
        &pem("server.key"),
        "--tls-ca-cert-file",
        &pem("ca.pem"),
        "--tls-auth-clients",
        "yes",
    ])
    .await;
    let base = format!("rediss://127.0.0.1:{}/0", redis.port);
    let url = format!(
        "{base}?tls_ca={}&tls_cert={}&tls_key={}",
        pem("ca.pem"),
        pem("client.pem"),
        pem("client.key")
    );
    runs_survive_on(&url, 5).await;

    let no_client_cert = refused_start(&format!("{base}?tls_ca={}", pem("ca.pem"))).await;
    println!("without a client certificate: {no_client_cert}");
    assert!(no_client_cert.contains(&base), "{no_client_cert}");
    let other_ca = refused_start(&format!(
        "{base}?tls_ca={}&tls_cert={}&tls_key={}",
        pem("other-ca.pem"),
        pem("client.pem"),
        pem("client.key")
    ))
    .await;
    println!("a server certificate from another CA: {other_ca}");
    assert!(other_ca.contains("certificate"), "{other_ca}");
    let plain = refused_start(&format!("redis://127.0.0.1:{}/0", redis.port)).await;
    println!("plain redis:// to the TLS port: {plain}");
    let _ = std::fs::remove_dir_all(&certs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_and_password_never_printed() {
    let redis = Redis::start(&[
        "--user",
        "app",
        "on",
        ">s3cret-pw",
        "~blazen:cp:*",
        "+@all",
        "--user",
        "reader",
        "on",
        ">r3ad-pw",
        "~*",
        "+@read",
        "+@connection",
        "--user",
        "default",
        "off",
    ])
    .await;
    let at = format!("127.0.0.1:{}/0", redis.port);
    runs_survive_on(&format!("redis://app:s3cret-pw@{at}"), 5).await;

    let wrong = refused_start(&format!("redis://app:wr0ng-pw@{at}")).await;
    println!("a wrong password: {wrong}");
    assert!(
        !wrong.contains("wr0ng") && !wrong.contains("app:"),
        "{wrong}"
    );
    assert!(wrong.contains(&format!("redis://***@{at}")), "{wrong}");

    // A user that may read but not write: the control plane starts, and a
    // submission is refused with Redis's reason.
    let empty = format!("127.0.0.1:{}/1", redis.port);
    let cp = server(on(&format!("redis://reader:r3ad-pw@{empty}"))).await;
    let c = client(&cp).await;
    let e = c
        .submit_workflow(request("deploy", json!(1)))
        .await
        .expect_err("a store it cannot write refuses submissions")
        .to_string();
    println!("a user without write permission: {e}");
    assert!(
        e.to_lowercase().contains("noperm") && !e.contains("r3ad"),
        "{e}"
    );
}

/// The address the sentinel gives for `name`'s primary.
async fn primary_port(sentinel: &Redis, name: &str) -> Option<u16> {
    let mut s = redis_proc::conn(&sentinel.url()).await;
    let addr: Option<(String, String)> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(name)
        .query_async(&mut s)
        .await
        .ok()?;
    addr.and_then(|(_, p)| p.parse().ok())
}

/// Waits (up to 60 s: a sentinel's first failover attempt may time out)
/// until `f` holds.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "{what} within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_loses_no_accepted_run() {
    let primary = Redis::start(&[]).await;
    let p = primary.port.to_string();
    let mut servers = [
        primary,
        Redis::start(&["--replicaof", "127.0.0.1", &p]).await,
        Redis::start(&["--replicaof", "127.0.0.1", &p]).await,
    ];
    let mut p_conn = redis_proc::conn(&servers[0].url()).await;
    eventually("both replicas in sync", async || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut p_conn)
            .await
            .unwrap();
        info.matches("state=online").count() == 2
    })
    .await;
    let sentinel = Redis::sentinel("blz", servers[0].port).await;
    let mut s_conn = redis_proc::conn(&sentinel.url()).await;
    eventually("the sentinel sees both replicas", async || {
        let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg("blz")
            .query_async(&mut s_conn)
            .await
            .unwrap_or_default();
        replicas.len() == 2
    })
    .await;
    let dead = redis_proc::free_port();
    let url = format!(
        "redis+sentinel://127.0.0.1:{dead},127.0.0.1:{}/blz/0",
        sentinel.port
    );
    let cp = server(on(&url)).await;
    let c = Arc::new(client(&cp).await);
    let _w = worker(&cp, "w", "fo", 8, Echo::default()).await;

    // Submissions at a steady pace through both failovers.
    let accepted: Arc<Mutex<Vec<(Uuid, usize)>>> = Arc::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let submitter = {
        let (c, accepted, refused, stop) =
            (c.clone(), accepted.clone(), refused.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let r = c.submit_workflow(request("fo", json!(i))).await;
                match r {
                    Ok(s) => accepted.lock().unwrap().push((s.run_id, i)),
                    Err(_) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let count = || accepted.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. A failover the sentinel is asked for.
    let before = servers[0].port;
    let _: () = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg("blz")
        .query_async(&mut s_conn)
        .await
        .unwrap();
    let t = Instant::now();
    eventually("a new primary", async || {
        primary_port(&sentinel, "blz")
            .await
            .is_some_and(|p| p != before)
    })
    .await;
    let n = count();
    eventually("submissions accepted on the new primary", async || {
        count() > n + 20
    })
    .await;
    println!(
        "SENTINEL FAILOVER: accepted again {:.1} s after it was asked for",
        t.elapsed().as_secs_f64()
    );

    // 2. The new primary killed.
    let current = primary_port(&sentinel, "blz").await.unwrap();
    let killed = servers
        .iter()
        .position(|r| r.port == current)
        .expect("a server of the test");
    servers[killed].kill();
    let t = Instant::now();
    eventually("another primary", async || {
        primary_port(&sentinel, "blz")
            .await
            .is_some_and(|p| p != current)
    })
    .await;
    let n = count();
    eventually("submissions accepted after the kill", async || {
        count() > n + 20
    })
    .await;
    println!(
        "primary killed: accepted again {:.1} s after the kill",
        t.elapsed().as_secs_f64()
    );
    stop.store(true, Ordering::SeqCst);
    submitter.await.unwrap();

    let accepted = accepted.lock().unwrap().clone();
    for (run, i) in &accepted {
        let snap = ended(&c, *run).await;
        assert_eq!(
            (snap.status, snap.output),
            (RunStatus::Completed, Some(json!(i))),
            "run {i}"
        );
    }
    println!(
        "{} runs accepted and completed, {} submissions refused during the failovers",
        accepted.len(),
        refused.load(Ordering::SeqCst)
    );
    // Every accepted run is in the store the new primary holds.
    drop(c);
    drop(cp);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cp = server(on(&url)).await;
    let c = client(&cp).await;
    let mut missing = Vec::new();
    for (run, i) in &accepted {
        match c.describe_workflow(*run).await {
            Ok(s) if s.status == RunStatus::Completed && s.output == Some(json!(i)) => {}
            Ok(s) => missing.push((*i, format!("{:?}", s.status))),
            Err(e) => missing.push((*i, e.to_string())),
        }
    }
    assert!(
        missing.is_empty(),
        "accepted runs missing from the store: {missing:?}"
    );
}
