//! The `store_url` option: which Redis or Valkey server to reach, and how.
//!
//! - `redis://[USER:PASSWORD@]HOST[:PORT][/DB]`, `rediss://...` (TLS),
//!   `unix://PATH[?db=N]`: one server.
//! - `redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/PRIMARY[/DB]`
//!   (`rediss+sentinel://` for TLS to the sentinels and the servers): the
//!   primary the sentinels name, found again after a failover.
//!
//! Query keys this control plane reads (the rest go to the Redis client):
//! `tls_ca=PATH` (PEM: the CA the server's certificate must chain to; the
//! system's roots without it), `tls_cert=PATH` + `tls_key=PATH` (PEM: a
//! client certificate), `replicas=N` (how many replicas must confirm each
//! write: 1 by default with Sentinel, 0 otherwise), `sentinel_user=NAME`,
//! `sentinel_password=SECRET` (the sentinels' own credentials). Credentials
//! are never printed: messages show the URL through [`redact`].

use std::path::PathBuf;

/// Query keys whose values are secret.
const SECRET_KEYS: [&str; 1] = ["sentinel_password"];

/// Query keys read here rather than by the Redis client.
const OWN_KEYS: [&str; 6] = [
    "tls_ca",
    "tls_cert",
    "tls_key",
    "replicas",
    "sentinel_user",
    "sentinel_password",
];

/// A parsed `store_url`.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The URL with its credentials hidden, for messages.
    pub shown: String,
    pub kind: Kind,
    /// PEM files for TLS (only with `rediss`).
    pub tls: TlsFiles,
    /// Replicas that must confirm each write (`WAIT`).
    pub replicas: u32,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// One server: the URL the Redis client reads (without our query keys).
    Direct(String),
    /// A Sentinel-managed primary.
    Sentinel(Sentinel),
}

#[derive(Clone, Debug)]
pub(crate) struct Sentinel {
    pub nodes: Vec<(String, u16)>,
    pub primary: String,
    pub db: i64,
    /// `USER:PASSWORD` as written (percent-encoded), for the servers.
    pub userinfo: Option<String>,
    pub tls: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Query pairs passed on to the servers' URL (e.g. `protocol`).
    pub rest: String,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// `url` with its user, password and secret query values hidden.
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &base[..s], &base[at + 1..]),
        _ => base.to_string(),
    };
    if let Some(q) = query {
        let pairs: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if SECRET_KEYS.contains(&k) => format!("{k}=***"),
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// `%XX` escapes decoded (a query value).
fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("a bad %-escape in `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8 once decoded"))
}

/// Parses and checks `url` (the TLS files must be readable).
pub(crate) fn parse(url: &str) -> Result<Target, String> {
    let shown = redact(url);
    let bad = |why: String| format!("`store_url` {shown}: {why}");
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut tls = TlsFiles::default();
    let mut replicas = None;
    let (mut user, mut password) = (None, None);
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !OWN_KEYS.contains(&k) {
            rest.push(pair);
            continue;
        }
        let v = decode(v).map_err(bad)?;
        match k {
            "tls_ca" => tls.ca = Some(PathBuf::from(v)),
            "tls_cert" => tls.cert = Some(PathBuf::from(v)),
            "tls_key" => tls.key = Some(PathBuf::from(v)),
            "replicas" => {
                let n = v
                    .parse::<u32>()
                    .map_err(|_| bad(format!("`replicas` must be a count, got `{v}`")))?;
                replicas = Some(n);
            }
            "sentinel_user" => user = Some(v),
            _ => password = Some(v),
        }
    }
    let rest = rest.join("&");
    let (scheme, after) = base.split_once("://").ok_or_else(|| {
        bad(
            "must be a redis://, rediss://, redis+sentinel://, rediss+sentinel:// or unix:// URL"
                .into(),
        )
    })?;
    let (kind, secure) = match scheme {
        "redis" | "rediss" | "valkey" | "valkeys" | "unix" | "redis+unix" => {
            let mut direct = base.to_string();
            if !rest.is_empty() {
                direct = format!("{direct}?{rest}");
            }
            (Kind::Direct(direct), matches!(scheme, "rediss" | "valkeys"))
        }
        "redis+sentinel" | "rediss+sentinel" => {
            let tls = scheme == "rediss+sentinel";
            let s = sentinel(after, tls, user.take(), password.take(), rest).map_err(bad)?;
            (Kind::Sentinel(s), tls)
        }
        other => {
            return Err(bad(format!(
                "unknown scheme `{other}`: must be redis, rediss, redis+sentinel, rediss+sentinel or unix"
            )))
        }
    };
    if user.is_some() || password.is_some() {
        return Err(bad(
            "`sentinel_user`/`sentinel_password` need a Sentinel URL".into(),
        ));
    }
    if tls.any() && !secure {
        return Err(bad(
            "`tls_ca`, `tls_cert` and `tls_key` need rediss://".into()
        ));
    }
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(bad("`tls_cert` and `tls_key` go together".into()));
    }
    for path in [&tls.ca, &tls.cert, &tls.key].into_iter().flatten() {
        std::fs::metadata(path)
            .map_err(|e| bad(format!("cannot read `{}`: {e}", path.display())))?;
    }
    let sentinel = matches!(kind, Kind::Sentinel(_));
    Ok(Target {
        shown,
        kind,
        tls,
        replicas: replicas.unwrap_or(u32::from(sentinel)),
    })
}

/// The part after `scheme://` of a Sentinel URL.
fn sentinel(
    after: &str,
    tls: bool,
    user: Option<String>,
    password: Option<String>,
    rest: String,
) -> Result<Sentinel, String> {
    let (userinfo, hosts_path) = match after.rfind('@') {
        Some(at) => (Some(after[..at].to_string()), &after[at + 1..]),
        None => (None, after),
    };
    let (hosts, path) = hosts_path
        .split_once('/')
        .ok_or("names no primary: add `/PRIMARY_NAME` after the sentinels")?;
    let mut nodes = Vec::new();
    for h in hosts.split(',') {
        let (host, port) = h
            .rsplit_once(':')
            .ok_or_else(|| format!("sentinel `{h}` has no port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("sentinel `{h}` has a bad port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("sentinel `{h}` has no host"));
        }
        nodes.push((host.to_string(), port));
    }
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let primary = parts.next().ok_or("names no primary")?.to_string();
    let db = match parts.next() {
        Some(d) => d
            .parse::<i64>()
            .map_err(|_| format!("database `{d}` is not a number"))?,
        None => 0,
    };
    if parts.next().is_some() {
        return Err("has more than `/PRIMARY/DB` in its path".into());
    }
    Ok(Sentinel {
        nodes,
        primary,
        db,
        userinfo,
        tls,
        user,
        password,
        rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_secret_keys_are_hidden() {
        let u = "rediss+sentinel://app:s3cret@h1:1,h2:2/main/3?sentinel_password=pw&replicas=1";
        let r = redact(u);
        assert!(
            !r.contains("s3cret") && !r.contains("app:") && !r.contains("=pw"),
            "{r}"
        );
        assert!(
            r.contains("h1:1,h2:2/main/3") && r.contains("replicas=1"),
            "{r}"
        );
        let t = parse(u).expect("parses");
        let Kind::Sentinel(s) = t.kind else {
            panic!("not a sentinel target")
        };
        assert_eq!(s.nodes, [("h1".to_string(), 1), ("h2".to_string(), 2)]);
        assert_eq!((s.primary.as_str(), s.db, s.tls), ("main", 3, true));
        assert_eq!(s.userinfo.as_deref(), Some("app:s3cret"));
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(t.replicas, 1);
    }

    #[test]
    fn bad_urls_say_why_without_the_password() {
        for (url, says) in [
            ("http://x", "scheme"),
            ("redis://u:pw@h/0?tls_ca=/nonexistent", "need rediss"),
            ("rediss://u:pw@h/0?tls_cert=/etc/hostname", "go together"),
            (
                "rediss://u:pw@h/0?tls_ca=/nonexistent/ca.pem",
                "cannot read",
            ),
            ("redis+sentinel://u:pw@h:1", "primary"),
            ("redis+sentinel://u:pw@h/main", "no port"),
            ("redis://u:pw@h/0?replicas=x", "count"),
        ] {
            let e = parse(url).expect_err(url);
            assert!(e.contains(says) && !e.contains("pw"), "{url}: {e}");
        }
        let t = parse("redis://h:1/2?protocol=resp3&replicas=2").expect("parses");
        assert!(matches!(&t.kind, Kind::Direct(u) if u == "redis://h:1/2?protocol=resp3"));
        assert_eq!(t.replicas, 2);
    }
}
