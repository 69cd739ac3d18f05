//! Serves a blazen-controlplane 0.6.76 control plane on a free loopback
//! port, prints `PORT <n>` and serves until killed.

use std::net::{SocketAddr, TcpListener};

use blazen_controlplane::server::ControlPlaneServer;

#[tokio::main]
async fn main() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    println!("PORT {port}");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if let Err(e) = ControlPlaneServer::new("oldcp").serve(addr).await {
        eprintln!("oldcp: {e}");
        std::process::exit(1);
    }
}
