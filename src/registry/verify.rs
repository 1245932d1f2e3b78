//! A stream adapter that checks blob bytes against their digest and size while they flow.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use super::{BlobStream, Error, Result};
use crate::oci::{BlobDescriptor, Verifier};

/// Passes chunks through, hashing them. The chunk that completes the declared size is only
/// released once the digest matches, so a corrupt blob never reaches a target in full: the
/// stream ends with [`Error::BlobCorrupt`] instead.
pub struct VerifiedStream {
    inner: BlobStream,
    verifier: Option<Verifier>,
    blob: BlobDescriptor,
    seen: u64,
    registry: String,
    repository: String,
}

impl VerifiedStream {
    /// Wraps `inner`, which should yield the bytes of `blob` from `registry`/`repository`.
    pub fn new(inner: BlobStream, blob: BlobDescriptor, registry: &str, repository: &str) -> Self {
        VerifiedStream {
            inner,
            verifier: Some(Verifier::new(&blob.digest)),
            blob,
            seen: 0,
            registry: registry.to_string(),
            repository: repository.to_string(),
        }
    }

    fn corrupt(&mut self, reason: String) -> Error {
        self.verifier = None;
        Error::BlobCorrupt {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            expected: self.blob.digest.clone(),
            reason,
        }
    }

    /// Completes the hash; `Err` if it differs from the descriptor.
    fn finish(&mut self) -> Result<()> {
        let Some(verifier) = self.verifier.take() else {
            return Ok(());
        };
        let actual = verifier.finish();
        if actual == self.blob.digest { Ok(()) } else { Err(self.corrupt(format!("received bytes hash to {actual}"))) }
    }
}

impl Stream for VerifiedStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.verifier.is_none() {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(error))) => {
                self.verifier = None;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.blob.size {
                    let reason = format!("more than the declared {} bytes", self.blob.size);
                    return Poll::Ready(Some(Err(self.corrupt(reason))));
                }
                if let Some(verifier) = self.verifier.as_mut() {
                    verifier.update(&chunk);
                }
                if self.seen == self.blob.size
                    && let Err(error) = self.finish()
                {
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                if self.seen < self.blob.size {
                    let reason = format!("body ended after {} of {} bytes", self.seen, self.blob.size);
                    return Poll::Ready(Some(Err(self.corrupt(reason))));
                }
                Poll::Ready(self.finish().err().map(Err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{StreamExt, TryStreamExt, stream};

    use super::*;
    use crate::oci::Digest;

    fn verified(chunks: &[&'static [u8]], declared: &[u8]) -> VerifiedStream {
        let chunks: Vec<Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        let inner = stream::iter(chunks).boxed();
        let blob = BlobDescriptor { digest: Digest::sha256_of(declared), size: declared.len() as u64 };
        VerifiedStream::new(inner, blob, "registry.test", "app")
    }

    #[tokio::test]
    async fn passes_matching_bytes_through() {
        let chunks: Vec<Bytes> = verified(&[b"hello ", b"world"], b"hello world").try_collect().await.unwrap();
        assert_eq!(chunks.concat(), b"hello world");
    }

    #[tokio::test]
    async fn withholds_the_last_chunk_of_corrupt_bytes() {
        let mut stream = verified(&[b"hello ", b"WORLD"], b"hello world");
        assert_eq!(stream.next().await.unwrap().unwrap(), Bytes::from_static(b"hello "));
        let error = stream.next().await.unwrap().unwrap_err();
        assert!(matches!(error, Error::BlobCorrupt { .. }), "{error}");
        assert!(error.to_string().contains("registry.test/app"), "{error}");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn truncated_and_oversized_bodies_fail() {
        let short: Result<Vec<Bytes>> = verified(&[b"hello"], b"hello world").try_collect().await;
        assert!(short.unwrap_err().to_string().contains("body ended after 5 of 11 bytes"));
        let long: Result<Vec<Bytes>> = verified(&[b"hello world!"], b"hello world").try_collect().await;
        assert!(long.unwrap_err().to_string().contains("more than the declared 11 bytes"));
    }

    #[tokio::test]
    async fn empty_blob_is_verified_at_end_of_stream() {
        let chunks: Vec<Bytes> = verified(&[], b"").try_collect().await.unwrap();
        assert!(chunks.is_empty());
    }
}
