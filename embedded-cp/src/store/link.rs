//! Connections to the store's server: the one a `redis://` URL names, or
//! the primary the sentinels name now (asked again on every reconnect, so
//! a failover is followed). A server reached through Sentinel must say it
//! is the primary (`ROLE`) before it is used.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, RedisConnectionInfo};

use super::url::{Kind, Sentinel, Target};

/// The longest a connection attempt (TCP, TLS, AUTH) may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(1);

/// How to reach the store: its target and the PEM files' contents.
pub(crate) struct Link {
    pub target: Target,
    certs: Option<redis::TlsCertificates>,
}

/// `host` as a URL authority part (IPv6 in brackets).
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Link {
    /// Reads the target's PEM files.
    pub(crate) fn new(target: Target) -> Result<Link, String> {
        let read = |p: &std::path::PathBuf| {
            std::fs::read(p).map_err(|e| format!("cannot read `{}`: {e}", p.display()))
        };
        let t = &target.tls;
        let certs = if t.ca.is_some() || t.cert.is_some() {
            let client_tls = match (&t.cert, &t.key) {
                (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
                    client_cert: read(c)?,
                    client_key: read(k)?,
                }),
                _ => None,
            };
            let root_cert = t.ca.as_ref().map(read).transpose()?;
            Some(redis::TlsCertificates {
                client_tls,
                root_cert,
            })
        } else {
            None
        };
        Ok(Link { target, certs })
    }

    /// Whether the primary is the one a set of sentinels names.
    pub(crate) fn sentinel(&self) -> bool {
        matches!(self.target.kind, Kind::Sentinel(_))
    }

    fn client(&self, info: redis::ConnectionInfo) -> Result<Client, String> {
        match &self.certs {
            Some(c) => Client::build_with_tls(info, c.clone()),
            None => Client::open(info),
        }
        .map_err(|e| e.to_string())
    }

    async fn connect(
        &self,
        client: &Client,
        timeout: Duration,
    ) -> Result<MultiplexedConnection, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_WITHIN))
            .set_response_timeout(Some(timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())
    }

    /// A connection to the store's server (its primary) whose requests
    /// time out after `timeout`, and the server's address (`HOST:PORT`
    /// with Sentinel; the URL otherwise).
    pub(crate) async fn open(
        &self,
        timeout: Duration,
    ) -> Result<(MultiplexedConnection, String), String> {
        match &self.target.kind {
            Kind::Direct(url) => {
                let info = url
                    .as_str()
                    .into_connection_info()
                    .map_err(|e| e.to_string())?;
                let conn = self.connect(&self.client(info)?, timeout).await?;
                Ok((conn, self.target.shown.clone()))
            }
            Kind::Sentinel(s) => self.primary(s, timeout).await,
        }
    }

    /// Asks each sentinel in turn for the primary, and connects to the
    /// first answer that is one.
    async fn primary(
        &self,
        s: &Sentinel,
        timeout: Duration,
    ) -> Result<(MultiplexedConnection, String), String> {
        let scheme = if s.tls { "rediss" } else { "redis" };
        let mut why = Vec::new();
        for (host, port) in &s.nodes {
            let at = authority(host, *port);
            let addr = match self.ask(s, &format!("{scheme}://{at}"), timeout).await {
                Ok(Some(addr)) => addr,
                Ok(None) => {
                    why.push(format!("sentinel {at} knows no primary `{}`", s.primary));
                    continue;
                }
                Err(e) => {
                    why.push(format!("sentinel {at}: {e}"));
                    continue;
                }
            };
            let user = s
                .userinfo
                .as_ref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default();
            let mut url = format!("{scheme}://{user}{}/{}", authority(&addr.0, addr.1), s.db);
            if !s.rest.is_empty() {
                url = format!("{url}?{}", s.rest);
            }
            let primary = async {
                let info = url
                    .as_str()
                    .into_connection_info()
                    .map_err(|e| e.to_string())?;
                let mut conn = self.connect(&self.client(info)?, timeout).await?;
                let role: Vec<redis::Value> = redis::cmd("ROLE")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                match role.first() {
                    Some(redis::Value::BulkString(r)) if r == b"master" => Ok(conn),
                    _ => Err("it is not the primary (yet)".to_string()),
                }
            };
            match primary.await {
                Ok(conn) => return Ok((conn, authority(&addr.0, addr.1))),
                Err(e) => why.push(format!(
                    "primary {} from sentinel {at}: {e}",
                    authority(&addr.0, addr.1)
                )),
            }
        }
        Err(why.join("; "))
    }

    /// The primary's address according to the sentinel at `url`.
    async fn ask(
        &self,
        s: &Sentinel,
        url: &str,
        timeout: Duration,
    ) -> Result<Option<(String, u16)>, String> {
        let mut settings = RedisConnectionInfo::default();
        if let Some(u) = &s.user {
            settings = settings.set_username(u);
        }
        if let Some(p) = &s.password {
            settings = settings.set_password(p);
        }
        let info = url
            .into_connection_info()
            .map_err(|e| e.to_string())?
            .set_redis_settings(settings);
        let mut conn = self.connect(&self.client(info)?, timeout).await?;
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&s.primary)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        match addr {
            Some((host, port)) => {
                let port = port
                    .parse()
                    .map_err(|_| format!("answered a bad port `{port}`"))?;
                Ok(Some((host, port)))
            }
            None => Ok(None),
        }
    }
}
