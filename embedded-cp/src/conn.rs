//! Accepted connections the server can cut (every read and write fails
//! once it is torn down), and the per-server bearer-token check.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted connection that fails every read and write once the server
/// is being torn down, so no stream outlives a shutdown.
pub(super) struct Killable {
    pub(super) io: tokio::net::TcpStream,
    pub(super) killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Killable {
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        match self.killed.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the control plane is shutting down",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Killable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Poll::Ready(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Killable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Poll::Ready(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if let Poll::Ready(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connected for Killable {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

/// Checks the bearer token of every request against this server's own
/// token (when it has one; otherwise the control plane's usual
/// `BLAZEN_PEER_TOKEN` rule), then attaches the peer identity the
/// control plane's handlers expect.
#[derive(Clone)]
pub(super) struct Auth {
    pub(super) token: Option<Arc<str>>,
}

impl tonic::service::Interceptor for Auth {
    fn call(
        &mut self,
        mut req: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match &self.token {
            Some(token) => {
                let ok = header
                    .as_deref()
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .is_some_and(|t| t.as_bytes() == token.as_bytes());
                if !ok {
                    return Err(tonic::Status::unauthenticated(
                        "missing or wrong bearer token",
                    ));
                }
            }
            None => blazen_controlplane::auth::validate_bearer(header.as_deref())
                .map_err(tonic::Status::unauthenticated)?,
        }
        let identity = blazen_controlplane::auth::place_authenticator()
            .authenticate(header.as_deref())
            .map_err(tonic::Status::unauthenticated)?;
        req.extensions_mut().insert(identity);
        Ok(req)
    }
}
