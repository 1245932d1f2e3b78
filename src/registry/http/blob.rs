//! Blob endpoints: existence checks, verified downloads, cross-repository mounts, and uploads
//! (one streamed `PUT` with a known length, or `PATCH` chunks).
//!
//! The check before an upload is a mount request from the repository itself
//! (`POST …/uploads/?mount=D&from=SELF`): a registry that mounts answers 201 when the
//! repository has the blob and otherwise 202 with the upload session the blob then goes to,
//! one request where a `HEAD` and a `POST` were two. A registry that does not mount answers
//! 202 either way (the distribution spec allows it), so a 202 is believed only once the
//! registry has proven its mount answers true (some mount answered 201); until then each 202
//! is checked with a `HEAD`, and a `HEAD` finding the blob after a 202, or a declined mount
//! from a repository known to hold the blob, turns the registry back to `HEAD` checks for
//! the rest of the run. The first upload to an unproven registry is followed by one mount
//! request for the blob just sent, which settles the question either way.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::route::Route;
use super::send::Call;
use super::{HttpRegistry, scope};
use crate::oci::{BlobDescriptor, Digest};
use crate::registry::{BlobStream, Error, MountOutcome, Presence, Result, UploadSession, VerifiedStream};

const OCTET_STREAM: &str = "application/octet-stream";

/// What this run has learnt of a registry's answers to mount requests.
#[derive(Debug, Default)]
pub(super) struct MountAnswers {
    state: AtomicU8,
    /// A proof after an upload is under way (see `prove_mount_answers`).
    probing: AtomicBool,
}

impl MountAnswers {
    const UNKNOWN: u8 = 0;
    const TRUE: u8 = 1;
    const UNTRUE: u8 = 2;

    fn get(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    /// A mount answered 201: the registry mounts, so its 202s mean "not there".
    fn proven_true(&self) {
        let _ = self.state.compare_exchange(Self::UNKNOWN, Self::TRUE, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A 202 for a blob that was there: mount answers say nothing here.
    fn proven_untrue(&self) {
        self.state.store(Self::UNTRUE, Ordering::Relaxed);
    }
}

impl HttpRegistry {
    fn blob_call<'a>(
        &self,
        method: Method,
        repository: &'a str,
        route: Route<'_>,
        what: String,
        push: bool,
    ) -> Result<Call<'a>> {
        Ok(Call {
            method,
            url: self.route_url(repository, route)?,
            repository,
            scopes: vec![scope(repository, push)],
            what,
            headers: HeaderMap::new(),
            body: None,
            idempotent: true,
            streaming: false,
        })
    }

    pub(super) async fn blob_exists_impl(&self, repository: &str, digest: &Digest) -> Result<bool> {
        let call = self.blob_call(Method::HEAD, repository, Route::Blob(digest), format!("blob {digest}"), false)?;
        match self.send(&call).await {
            Ok(_) => Ok(true),
            Err(error) if error.is_not_found() => Ok(false),
            Err(error) => Err(error),
        }
    }

    pub(super) async fn get_blob_impl(&self, repository: &str, blob: &BlobDescriptor) -> Result<BlobStream> {
        let mut call =
            self.blob_call(Method::GET, repository, Route::Blob(&blob.digest), format!("blob {}", blob.digest), false)?;
        call.streaming = true;
        let response = self.send(&call).await?;
        let registry = self.settings.name.clone();
        let (repository_name, action, idle) = (repository.to_string(), call.action(), self.settings.idle_timeout);
        let body = response.bytes_stream().map_err(move |e| Error::Network {
            registry: registry.clone(),
            repository: repository_name.clone(),
            action: action.clone(),
            source: e.without_url(),
        });
        let timeout_error = self.timeout_error(repository, &call.action(), idle);
        let body = compact(with_idle_timeout(body.boxed(), idle, timeout_error));
        Ok(VerifiedStream::new(body, blob.clone(), &self.settings.name, repository).boxed())
    }

    /// See the module notes.
    pub(super) async fn check_before_upload_impl(&self, repository: &str, digest: &Digest) -> Result<Presence> {
        if self.mounts.get() == MountAnswers::UNTRUE {
            let present = self.blob_exists_impl(repository, digest).await?;
            return Ok(if present { Presence::Present } else { Presence::Absent(None) });
        }
        self.prepare_push(repository).await?;
        let session = match self.start_upload(repository, Some((digest, repository))).await? {
            (StatusCode::CREATED, _) => {
                self.mounts.proven_true();
                return Ok(Presence::Present);
            }
            (_, session) => session,
        };
        if self.mounts.get() == MountAnswers::TRUE {
            return Ok(Presence::Absent(session));
        }
        if self.blob_exists_impl(repository, digest).await? {
            self.mounts.proven_untrue();
            return Ok(Presence::Present);
        }
        Ok(Presence::Absent(session))
    }

    /// `POST …/blobs/uploads/`, optionally asking to mount `digest` from repository `from`.
    async fn start_upload(
        &self,
        repository: &str,
        mount: Option<(&Digest, &str)>,
    ) -> Result<(StatusCode, Option<UploadSession>)> {
        let mut call = self.blob_call(Method::POST, repository, Route::Uploads, "upload".to_string(), true)?;
        if let Some((digest, from)) = mount {
            call.url.query_pairs_mut().append_pair("mount", digest.as_str()).append_pair("from", from);
            if from != repository {
                call.scopes.push(scope(from, false));
            }
            call.what = format!("mount of {digest} from {from}");
        }
        call.headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let response = self.send(&call).await?;
        let status = response.status();
        let session = self.session_from(&response, repository, &call.action())?;
        Ok((status, session))
    }

    /// The upload session named by a response's `Location` (absolute or relative).
    fn session_from(&self, response: &Response, repository: &str, action: &str) -> Result<Option<UploadSession>> {
        if response.status() == StatusCode::CREATED {
            return Ok(None);
        }
        let location =
            response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| Error::Protocol {
                registry: self.settings.name.clone(),
                repository: repository.to_string(),
                action: action.to_string(),
                detail: format!("{} without a Location header", response.status()),
            })?;
        let url = self.base.join(location).map_err(|e| Error::Protocol {
            registry: self.settings.name.clone(),
            repository: repository.to_string(),
            action: action.to_string(),
            detail: format!("invalid Location {location:?}: {e}"),
        })?;
        Ok(Some(UploadSession { location: url.to_string() }))
    }

    pub(super) async fn mount_blob_impl(&self, repository: &str, digest: &Digest, from: &str) -> Result<MountOutcome> {
        self.prepare_push(repository).await?;
        match self.start_upload(repository, Some((digest, from))).await? {
            (StatusCode::CREATED, _) => {
                self.mounts.proven_true();
                Ok(MountOutcome::Mounted)
            }
            // Asked only of repositories known to hold the blob: this registry does not mount.
            (_, Some(session)) => {
                self.mounts.proven_untrue();
                Ok(MountOutcome::NotMounted(session))
            }
            (status, None) => Err(Error::Protocol {
                registry: self.settings.name.clone(),
                repository: repository.to_string(),
                action: format!("POST mount of {digest}"),
                detail: format!("unexpected status {status}"),
            }),
        }
    }

    pub(super) async fn push_blob_impl(
        &self,
        repository: &str,
        blob: &BlobDescriptor,
        body: BlobStream,
        session: Option<UploadSession>,
    ) -> Result<()> {
        self.prepare_push(repository).await?;
        let session = match session {
            Some(session) => session,
            None => match self.start_upload(repository, None).await? {
                (_, Some(session)) => session,
                // A 201 to a plain POST means the registry already has the blob (some answer
                // `POST ?digest=` this way); nothing left to send.
                (_, None) => return Ok(()),
            },
        };
        let location = Url::parse(&session.location).map_err(|e| Error::Protocol {
            registry: self.settings.name.clone(),
            repository: repository.to_string(),
            action: "upload".into(),
            detail: format!("invalid upload location: {e}"),
        })?;
        if self.use_chunks() {
            self.upload_chunks(repository, blob, body, location).await?;
        } else {
            self.upload_monolithic(repository, blob, body, location).await?;
        }
        self.prove_mount_answers(repository, &blob.digest).await;
        Ok(())
    }

    /// While this registry's mount answers are unproven, the first blob it took settles the
    /// question: one mount request for that blob from the repository now holding it answers
    /// 201 at a registry that mounts. One request per registry and run, and the checks after
    /// it need no `HEAD` behind each 202.
    async fn prove_mount_answers(&self, repository: &str, digest: &Digest) {
        if self.mounts.get() != MountAnswers::UNKNOWN || self.mounts.probing.swap(true, Ordering::Relaxed) {
            return;
        }
        match self.start_upload(repository, Some((digest, repository))).await {
            Ok((StatusCode::CREATED, _)) => self.mounts.proven_true(),
            Ok(_) => self.mounts.proven_untrue(),
            // Unproven still; another upload may try.
            Err(_) => self.mounts.probing.store(false, Ordering::Relaxed),
        }
    }

    /// One `PUT ?digest=` whose body streams from the source with a known `Content-Length`,
    /// so memory stays flat whatever the blob size.
    async fn upload_monolithic(
        &self,
        repository: &str,
        blob: &BlobDescriptor,
        body: BlobStream,
        mut url: Url,
    ) -> Result<()> {
        let action = format!("PUT blob {}", blob.digest);
        url.query_pairs_mut().append_pair("digest", blob.digest.as_str());
        let url_path = url.path().to_string();
        let url_path = url_path.as_str();
        let progress = Arc::new(Progress::default());
        let source_error = Arc::new(Mutex::new(None));
        let body = reqwest::Body::wrap_stream(track(body, progress.clone(), source_error.clone()));
        // This PUT streams its body, so it cannot go through `send`; the same origin rule
        // applies: a `Location` on another origin gets no credentials, one on plain HTTP none
        // of the blob either.
        let authorization = self.auth.header(repository, &[scope(repository, true)]).await?;
        let authorization = self.authorization_for(&url, repository, &action, authorization.as_deref())?;
        let mut request =
            self.client.put(url).header(CONTENT_LENGTH, blob.size).header(CONTENT_TYPE, OCTET_STREAM).body(body);
        if let Some(header) = authorization {
            request = request.header(AUTHORIZATION, header);
        }
        let window = self.window(self.pacing_group(&Method::PUT, url_path, repository));
        // Paced like `send`; the body cannot be sent twice here, so a throttled upload is
        // retried by the engine, which pulls the blob again.
        let give_up = super::send::give_up(
            crate::cancel::Cancel::current(),
            tokio::time::Instant::now() + self.settings.throttle_budget,
        );
        let Some(permit) = window.acquire_paced(give_up).await else {
            return Err(Error::Throttled {
                registry: self.settings.name.clone(),
                repository: repository.to_string(),
                status: 429,
                retry_after: None,
            });
        };
        let sent = tokio::select! {
            sent = request.send() => sent,
            stalled = self.stall_watch(&progress, blob.size) => return Err(self.timeout_error(repository, &action, stalled)),
        };
        if let Some(error) = source_error.lock().expect("source error lock poisoned").take() {
            return Err(error);
        }
        self.count_request(sent.as_ref().ok().map(|r| r.status().as_u16()));
        let response = sent.map_err(|e| self.send_error(repository, &action, e))?;
        match response.status() {
            status if status.is_success() => {
                permit.succeeded();
                Ok(())
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let error = self.status_error(repository, &action, &format!("blob {}", blob.digest), response).await;
                permit.throttled(error.retry_after());
                Err(error)
            }
            refused
            @ (StatusCode::METHOD_NOT_ALLOWED | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::NOT_IMPLEMENTED)
                if !self.settings.kind.accepts_chunked_uploads() =>
            {
                tracing::error!(registry = %self.settings.name, repository, status = %refused, "monolithic upload refused by a registry without chunked uploads");
                Err(Error::MonolithicUploadRefused {
                    registry: self.settings.name.clone(),
                    repository: repository.to_string(),
                    status: refused.as_u16(),
                })
            }
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::NOT_IMPLEMENTED => {
                self.switch_to_chunks();
                tracing::warn!(registry = %self.settings.name, repository, status = %response.status(), "monolithic upload refused; using chunks");
                Err(Error::ChunkedUploadRequired {
                    registry: self.settings.name.clone(),
                    repository: repository.to_string(),
                    status: response.status().as_u16(),
                })
            }
            _ => Err(self.status_error(repository, &action, &format!("blob {}", blob.digest), response).await),
        }
    }

    /// Resolves to the timeout that expired once an upload stops making progress: the idle
    /// timeout while bytes flow, the request timeout while waiting for the answer. An upload
    /// waiting for its body is not stalled: the source's own idle timeout ends that wait, and
    /// the failure is the source's, not the target's.
    async fn stall_watch(&self, progress: &Progress, size: u64) -> Duration {
        let idle = self.settings.idle_timeout;
        let mut last = u64::MAX;
        loop {
            let sent = progress.sent.load(Ordering::Relaxed);
            let wait = if sent >= size { self.settings.timeout.max(idle) } else { idle };
            if sent == last && !progress.starved.load(Ordering::Relaxed) {
                return wait;
            }
            last = sent;
            tokio::time::sleep(wait).await;
        }
    }

    /// `PATCH` chunks of `chunk_size` with `Content-Range`, then a closing `PUT ?digest=`.
    async fn upload_chunks(
        &self,
        repository: &str,
        blob: &BlobDescriptor,
        mut body: BlobStream,
        mut url: Url,
    ) -> Result<()> {
        let mut offset = 0u64;
        let mut buffer = BytesMut::with_capacity(self.settings.chunk_size.min(blob.size as usize));
        loop {
            let next = body.next().await.transpose()?;
            if let Some(bytes) = &next {
                buffer.extend_from_slice(bytes);
            }
            let full = buffer.len() >= self.settings.chunk_size;
            if (full || next.is_none()) && !buffer.is_empty() {
                let chunk = buffer.split().freeze();
                url = self.patch_chunk(repository, blob, url, offset, chunk.clone()).await?;
                offset += chunk.len() as u64;
            }
            if next.is_none() {
                break;
            }
        }
        url.query_pairs_mut().append_pair("digest", blob.digest.as_str());
        let mut call =
            self.blob_call(Method::PUT, repository, Route::Uploads, format!("blob {}", blob.digest), true)?;
        call.url = url;
        call.idempotent = false;
        call.headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        self.send(&call).await.map(drop)
    }

    async fn patch_chunk(
        &self,
        repository: &str,
        blob: &BlobDescriptor,
        url: Url,
        offset: u64,
        chunk: Bytes,
    ) -> Result<Url> {
        let mut call =
            self.blob_call(Method::PATCH, repository, Route::Uploads, format!("chunk of blob {}", blob.digest), true)?;
        call.url = url;
        call.idempotent = false;
        let range = format!("{}-{}", offset, offset + chunk.len() as u64 - 1);
        call.headers.insert(CONTENT_RANGE, HeaderValue::from_str(&range).expect("digits and a dash"));
        call.headers.insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
        call.body = Some(chunk);
        let response = self.send(&call).await?;
        let session = self.session_from(&response, repository, &call.action())?;
        let location = session.map(|s| s.location).unwrap_or_else(|| call.url.to_string());
        Url::parse(&location).map_err(|e| Error::Protocol {
            registry: self.settings.name.clone(),
            repository: repository.to_string(),
            action: call.action(),
            detail: format!("invalid Location: {e}"),
        })
    }
}

/// Counts bytes handed to the upload and keeps the first source error (digest mismatch,
/// broken download) so it can be reported instead of the generic "body failed" from reqwest.
/// How far an upload's body has got, as [`track`] sees it.
#[derive(Default)]
struct Progress {
    /// Bytes handed to the upload.
    sent: AtomicU64,
    /// The upload asked for more and the source has not delivered it yet.
    starved: AtomicBool,
}

fn track(
    mut body: BlobStream,
    progress: Arc<Progress>,
    source_error: Arc<Mutex<Option<Error>>>,
) -> impl futures_util::Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| {
        let polled = body.poll_next_unpin(cx);
        progress.starved.store(polled.is_pending(), Ordering::Relaxed);
        polled.map(|item| {
            item.map(|result| match result {
                Ok(bytes) => {
                    progress.sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    Ok(bytes)
                }
                Err(error) => {
                    let message = error.to_string();
                    source_error.lock().expect("source error lock poisoned").get_or_insert(error);
                    Err(std::io::Error::other(message))
                }
            })
        })
    })
}

/// The most bytes one chunk of a downloaded blob holds on its way to the uploads.
const CHUNK: usize = 32 * 1024;

/// Copies each chunk the connection yields into pieces of at most [`CHUNK`] bytes. A chunk
/// straight from the connection shares its read buffer (up to ~400 KiB), keeping the whole
/// buffer alive while any upload still holds the chunk; the copies let the connection reuse
/// its buffer at once, so memory per transfer stays a few small pieces. One `memcpy` per byte
/// is cheap next to hashing it.
fn compact(body: BlobStream) -> BlobStream {
    body.flat_map(|item| {
        let pieces: Vec<Result<Bytes>> = match item {
            Ok(chunk) => chunk.chunks(CHUNK).map(|piece| Ok(Bytes::copy_from_slice(piece))).collect(),
            Err(error) => vec![Err(error)],
        };
        futures_util::stream::iter(pieces)
    })
    .boxed()
}

/// Fails the stream with `timeout_error` when no chunk arrives for `idle`.
fn with_idle_timeout(body: BlobStream, idle: Duration, timeout_error: Error) -> BlobStream {
    let state = (body, Some(timeout_error));
    futures_util::stream::unfold(state, move |(mut body, timeout_error)| async move {
        let timeout_error = timeout_error?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(item)) => Some((item, (body, Some(timeout_error)))),
            Ok(None) => None,
            Err(_) => Some((Err(timeout_error), (body, None))),
        }
    })
    .boxed()
}

impl HttpRegistry {
    /// Proves write access to `repository` the way a sync would use it: opens an upload
    /// session (with the push scope) and cancels it, so nothing is written. Says what was
    /// proven.
    ///
    /// A check changes nothing, so where a sync would create a missing ECR repository it only
    /// asks `DescribeRepositories`; ECR refuses upload sessions in a repository that does not
    /// exist, so then the data-plane credentials are proven with a tag list instead.
    pub async fn check_push(&self, repository: &str) -> Result<String> {
        if let Some(control) = self.ecr.as_ref().filter(|control| control.creates_repositories())
            && !control.repository_exists(repository).await.map_err(|error| self.control_error(error))?
        {
            return match self.list_tags_impl(repository).await {
                Err(error) if !error.is_not_found() => Err(error),
                _ => Ok(format!("authenticated; repository {repository} does not exist and would be created")),
            };
        }
        let (_, session) = self.start_upload(repository, None).await?;
        if let Some(session) = session
            && let Ok(url) = Url::parse(&session.location)
        {
            let mut call = self.blob_call(Method::DELETE, repository, Route::Uploads, "upload session".into(), true)?;
            call.url = url;
            // Best effort: registries expire abandoned sessions anyway.
            let _ = self.send(&call).await;
        }
        Ok("upload session opened and cancelled".to_string())
    }
}
