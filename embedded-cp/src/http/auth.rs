//! The HTTP side's door: the bearer token every route needs (header or
//! cookie, the cookie set from `/?token=`), and the security headers on
//! every answer (see the parent module's doc).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{text, Ctx};

/// The cookie the dashboard's token lives in.
const COOKIE: &str = "blazen_token";

/// What every answer is allowed to load and run: the dashboard's own
/// script and style, fetches to this origin, nothing else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// Constant-time comparison of two tokens.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The token a request presents: its bearer header, else its cookie.
fn presented(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
    })
}

/// The token in a query string's `token` parameter.
fn query_token(query: Option<&str>) -> Option<String> {
    form_urlencoded_token(query?)
}

fn form_urlencoded_token(query: &str) -> Option<String> {
    axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(
        &format!("/?{query}").parse().ok()?,
    )
    .ok()?
    .0
    .remove("token")
}

/// Checks the token (see the module's doc), bootstraps the cookie from
/// `/?token=`, and adds the security headers to every answer.
pub(super) async fn guard(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let mut resp = match &ctx.token {
        None => next.run(req).await,
        Some(token) => {
            if req.uri().path() == "/" {
                if let Some(t) = query_token(req.uri().query()) {
                    return secured(bootstrap(token, &t));
                }
            }
            match presented(req.headers()) {
                Some(t) if same(t.as_bytes(), token.as_bytes()) => next.run(req).await,
                _ => refused(req.uri().path() == "/"),
            }
        }
    };
    resp = secured(resp);
    resp
}

/// The answer to `/?token=T`: the cookie and a redirect to `/` when `T`
/// is the token, else a refusal.
fn bootstrap(token: &str, offered: &str) -> Response {
    if !same(offered.as_bytes(), token.as_bytes()) {
        return refused(true);
    }
    // RFC 6265's cookie-octet: no space, quote, comma, semicolon or backslash.
    let fits = token
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && !matches!(b, b'"' | b',' | b';' | b'\\'));
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(v) if fits => {
            resp.headers_mut().insert(header::SET_COOKIE, v);
            resp
        }
        // A token that cannot be a cookie value: the header is the way.
        _ => text(
            StatusCode::BAD_REQUEST,
            "this token cannot be kept in a cookie; send it as an Authorization: Bearer header\n",
        ),
    }
}

/// 401, with a page that says how to get in for `/`.
fn refused(page: bool) -> Response {
    let body = if page {
        "401: this control plane needs its bearer token. Open /?token=TOKEN once \
         (the token is then kept in a cookie), or send Authorization: Bearer TOKEN.\n"
    } else {
        "401: missing or wrong bearer token (Authorization: Bearer TOKEN)\n"
    };
    let mut resp = text(StatusCode::UNAUTHORIZED, body);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"blazen\""),
    );
    resp
}

fn secured(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_the_header_or_the_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; blazen_token=s3"),
        );
        assert_eq!(presented(&h), Some("s3"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t1"));
        assert_eq!(presented(&h), Some("t1"));
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert_eq!(query_token(Some("token=a%2Bb")), Some("a+b".to_string()));
        assert_eq!(query_token(Some("x=1")), None);
    }
}
