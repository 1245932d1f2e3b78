//! One source stream, several uploads: each chunk is handed to every branch, so a blob going
//! to several targets is read from the source once. Bounded channels make the slowest target
//! set the pace, so memory stays flat.

use std::future::Future;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::registry::{BlobStream, Error, Result};

/// Chunks buffered per branch: enough to keep every upload busy while the slowest sets the
/// pace; each chunk is up to one read of the source connection (hyper reads at most ~400 KiB).
const BRANCH_BUFFER: usize = 1;

/// Splits `source` into `branches` streams; the returned future drives the source and must
/// run alongside the consumers. A branch whose consumer stops is left behind; a source error
/// reaches every branch as [`Error::SourceFailed`].
pub fn tee(source: BlobStream, branches: usize) -> (Vec<BlobStream>, impl Future<Output = ()> + Send) {
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..branches).map(|_| mpsc::channel::<Result<Bytes>>(BRANCH_BUFFER)).unzip();
    let driver = async move {
        let mut source = source;
        let mut senders: Vec<Option<mpsc::Sender<Result<Bytes>>>> = senders.into_iter().map(Some).collect();
        while let Some(item) = source.next().await {
            match item {
                Ok(bytes) => {
                    for slot in &mut senders {
                        if let Some(sender) = slot
                            && sender.send(Ok(bytes.clone())).await.is_err()
                        {
                            *slot = None;
                        }
                    }
                    if senders.iter().all(Option::is_none) {
                        return;
                    }
                }
                Err(error) => {
                    for sender in senders.iter().flatten() {
                        let shared = Error::SourceFailed { detail: error.to_string(), retryable: error.is_retryable() };
                        let _ = sender.send(Err(shared)).await;
                    }
                    return;
                }
            }
        }
    };
    let streams = receivers
        .into_iter()
        .map(|receiver| {
            futures_util::stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|item| (item, receiver))
            })
            .boxed()
        })
        .collect();
    (streams, driver)
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;

    use super::*;

    /// Bytes a branch delivered, or its error.
    async fn total_len(branch: BlobStream) -> Result<usize> {
        branch.try_fold(0, |total, chunk| async move { Ok(total + chunk.len()) }).await
    }

    #[tokio::test]
    async fn every_branch_gets_every_byte() {
        let chunks: Vec<Result<Bytes>> = (0..20).map(|i| Ok(Bytes::from(vec![i as u8; 100]))).collect();
        let (branches, driver) = tee(futures_util::stream::iter(chunks).boxed(), 3);
        let collect = futures_util::future::join_all(branches.into_iter().map(total_len));
        let (results, ()) = futures_util::future::join(collect, driver).await;
        for result in results {
            assert_eq!(result.unwrap(), 2000);
        }
    }

    #[tokio::test]
    async fn a_source_error_reaches_every_branch_with_its_retryability() {
        let items: Vec<Result<Bytes>> =
            vec![Ok(Bytes::from_static(b"x")), Err(Error::Setup { registry: "r".into(), detail: "boom".into() })];
        let (branches, driver) = tee(futures_util::stream::iter(items).boxed(), 2);
        let collect = futures_util::future::join_all(branches.into_iter().map(total_len));
        let (results, ()) = futures_util::future::join(collect, driver).await;
        for result in results {
            let error = result.unwrap_err();
            assert!(matches!(error, Error::SourceFailed { retryable: false, .. }), "{error}");
            assert!(error.to_string().contains("boom"));
        }
    }

    #[tokio::test]
    async fn a_branch_that_stops_does_not_stall_the_others() {
        let chunks: Vec<Result<Bytes>> = (0..50).map(|_| Ok(Bytes::from_static(b"abc"))).collect();
        let (mut branches, driver) = tee(futures_util::stream::iter(chunks).boxed(), 2);
        drop(branches.pop());
        let kept = branches.pop().unwrap();
        let (bytes, ()) = futures_util::future::join(total_len(kept), driver).await;
        assert_eq!(bytes.unwrap(), 150);
    }
}
