//! Response bodies: whole, or sent in two parts with a stall or an abort between them.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

use super::fault::Stall;

/// Body type of every proxy response.
pub(crate) type ProxyBody = BoxBody<Bytes, std::io::Error>;

/// The behaviour of a split body after its first part.
pub(crate) enum Tail {
    /// Wait for the stall, then send the rest.
    Stall(Stall, Bytes),
    /// Fail the body, so the server closes the connection short of `Content-Length`.
    Abort,
}

/// Returns a body that sends `bytes` at once.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Returns a body that sends `first`, then continues with `tail`.
pub(crate) fn split(first: Bytes, tail: Tail) -> ProxyBody {
    let head = futures_util::stream::once(async move { Ok(Frame::data(first)) });
    let rest = futures_util::stream::once(async move {
        match tail {
            Tail::Stall(Stall::For(duration), rest) => {
                tokio::time::sleep(duration).await;
                Ok(Frame::data(rest))
            }
            Tail::Stall(Stall::Forever, _) => std::future::pending().await,
            Tail::Abort => {
                // Hyper writes the head and the first part only while the body is pending;
                // failing at once would close the connection before any of it was sent.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "body truncated by the fault proxy",
                ))
            }
        }
    });
    BodyExt::boxed(StreamBody::new(head.chain(rest)))
}

/// Waits for `stall` (forever for [`Stall::Forever`]).
pub(crate) async fn wait(stall: Stall) {
    match stall {
        Stall::For(duration) => tokio::time::sleep(duration).await,
        Stall::Forever => std::future::pending().await,
    }
}

/// Returns a copy of `body` with the byte in the middle inverted.
pub(crate) fn flip_middle(body: &Bytes) -> Bytes {
    let mut bytes = body.to_vec();
    if let Some(byte) = bytes.get_mut(body.len() / 2) {
        *byte = !*byte;
    }
    Bytes::from(bytes)
}
