//! Reading a whole response body into memory, bounded in size and in time.
//!
//! Every body ocync keeps in memory (manifests, listing pages, token answers, cloud answers,
//! error texts) comes from a server that may be hostile: it can announce or send a gigabyte,
//! or send one byte every few seconds forever. So no such body is read with reqwest's
//! `bytes()`/`text()`/`json()`, which trust the server on both counts; they all come through
//! here instead. Blob bodies are not read here: they stream (see `http/blob.rs`).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

/// Error bodies are quoted (a few hundred characters at most), and a distribution error
/// document is well under a KiB: 8 KiB keeps the whole document in the usual case.
pub(crate) const MAX_ERROR_BODY: usize = 8 * 1024;

/// Token and cloud-credential answers: JWTs of a few KiB at most (an ACR refresh token is
/// about 2 KiB); 256 KiB is far beyond any real one and still nothing to hold.
pub(crate) const MAX_TOKEN_ANSWER: usize = 256 * 1024;

/// How much of a body may be read, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes kept; a body longer than this is refused ([`read`]) or cut ([`read_prefix`]).
    pub max_bytes: usize,
    /// Longest wait for the next piece of the body.
    pub idle: Duration,
    /// Longest time for the whole body, however steadily it trickles.
    pub total: Duration,
}

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error<E = reqwest::Error> {
    /// `Content-Length` says more than the limit; nothing was read.
    #[error("announced as {announced} bytes, more than the {limit} allowed")]
    Announced {
        /// The announced length.
        announced: u64,
        /// The limit.
        limit: usize,
    },
    /// More bytes arrived than the limit; reading stopped there.
    #[error("more than the {limit} bytes allowed")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body did not arrive in time.
    #[error("body not received within {after:?}")]
    Timeout {
        /// The limit that ran out ([`Limits::idle`] or [`Limits::total`]).
        after: Duration,
    },
    /// The connection failed mid-body.
    #[error("body broke off")]
    Network(#[source] E),
}

/// The whole body of `response`, or an error: refused at once when its `Content-Length` is
/// above the limit, and otherwise read until one byte more than the limit has arrived.
pub(crate) async fn read(response: reqwest::Response, limits: Limits) -> Result<Bytes, Error> {
    let announced = response.content_length();
    if let Some(announced) = announced.filter(|&n| n > limits.max_bytes as u64) {
        return Err(Error::Announced { announced, limit: limits.max_bytes });
    }
    let (body, outcome) = collect(response.bytes_stream(), announced, limits).await;
    outcome.map(|()| body.freeze())
}

/// At most [`Limits::max_bytes`] of the body of `response`, for quoting: a longer body is cut,
/// and a body that breaks off or runs out of time gives what had arrived by then.
pub(crate) async fn read_prefix(response: reqwest::Response, limits: Limits) -> Bytes {
    let announced = response.content_length();
    collect(response.bytes_stream(), announced, limits).await.0.freeze()
}

/// Gathers `body` up to `limits.max_bytes`, stopping at the first chunk that goes beyond, at a
/// stall of `limits.idle`, or once `limits.total` has passed. Returns what was gathered and
/// why it stopped early, if it did.
async fn collect<S, E>(body: S, announced: Option<u64>, limits: Limits) -> (BytesMut, Result<(), Error<E>>)
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let deadline = Instant::now() + limits.total;
    let capacity = announced.map_or(0, |n| n.min(limits.max_bytes as u64) as usize);
    let mut gathered = BytesMut::with_capacity(capacity);
    let mut body = std::pin::pin!(body);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = limits.idle.min(left);
        let next = match tokio::time::timeout(wait, body.next()).await {
            Ok(next) => next,
            Err(_) => {
                let after = if wait < limits.idle { limits.total } else { limits.idle };
                return (gathered, Err(Error::Timeout { after }));
            }
        };
        match next {
            None => return (gathered, Ok(())),
            Some(Err(error)) => return (gathered, Err(Error::Network(error))),
            Some(Ok(chunk)) => {
                let room = limits.max_bytes - gathered.len();
                if chunk.len() > room {
                    gathered.extend_from_slice(&chunk[..room]);
                    return (gathered, Err(Error::TooLarge { limit: limits.max_bytes }));
                }
                gathered.extend_from_slice(&chunk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::stream;

    use super::*;

    const LIMITS: Limits = Limits { max_bytes: 10, idle: Duration::from_secs(2), total: Duration::from_secs(5) };

    fn chunks(parts: &[&'static str]) -> impl Stream<Item = Result<Bytes, Infallible>> {
        stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p.as_bytes()))).collect::<Vec<_>>())
    }

    /// One byte every `every`, `count` of them.
    fn drip(every: Duration, count: usize) -> impl Stream<Item = Result<Bytes, Infallible>> {
        stream::unfold(0, move |sent| async move {
            if sent == count {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok(Bytes::from_static(b"x")), sent + 1))
        })
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let (body, outcome) = collect(chunks(&["01234", "56789"]), Some(10), LIMITS).await;
        assert!(outcome.is_ok());
        assert_eq!(&body[..], b"0123456789");
    }

    #[tokio::test]
    async fn reading_stops_at_the_first_byte_beyond_the_limit() {
        let endless = stream::repeat_with(|| Ok::<_, Infallible>(Bytes::from_static(b"abcd")));
        let (body, outcome) = collect(endless, None, LIMITS).await;
        assert!(matches!(outcome, Err(Error::TooLarge { limit: 10 })));
        assert_eq!(body.len(), 10, "nothing kept beyond the limit");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_ends_at_the_idle_timeout() {
        let stalled = chunks(&["ab"]).chain(stream::pending());
        let started = Instant::now();
        let (body, outcome) = collect(stalled, None, LIMITS).await;
        assert!(matches!(outcome, Err(Error::Timeout { after }) if after == LIMITS.idle));
        assert_eq!(started.elapsed(), LIMITS.idle);
        assert_eq!(&body[..], b"ab", "what arrived is kept for quoting");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_drips_within_the_idle_timeout_ends_at_the_total_timeout() {
        let started = Instant::now();
        let (body, outcome) =
            collect(drip(Duration::from_millis(1500), 9), None, Limits { max_bytes: 100, ..LIMITS }).await;
        assert!(matches!(outcome, Err(Error::Timeout { after }) if after == LIMITS.total));
        assert_eq!(started.elapsed(), LIMITS.total);
        assert_eq!(body.len(), 3, "bytes at 1.5 s, 3 s and 4.5 s; the next was due after the deadline");
    }

    #[tokio::test]
    async fn a_broken_body_is_a_network_error() {
        let broken = stream::iter(vec![Ok(Bytes::from_static(b"ab")), Err("reset")]);
        let (_, outcome) = collect(broken, None, LIMITS).await;
        assert!(matches!(outcome, Err(Error::Network("reset"))));
    }
}
