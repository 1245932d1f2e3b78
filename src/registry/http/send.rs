//! Sending one request: authentication, status classification, retries with jittered backoff.
//!
//! Credentials are scoped by origin (scheme, host, port), as Docker's client does: the
//! `Authorization` header goes only to the registry's own origin. A URL the registry hands us
//! (an upload `Location`, a listing's `Link`, a redirect) that names another origin is still
//! followed, without credentials, and its 401 teaches nothing; one that leads an HTTPS
//! registry to plain HTTP is refused outright.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::HttpRegistry;
use crate::cancel::Cancel;
use crate::registry::body::{self, MAX_ERROR_BODY};
use crate::registry::kind::RegistryKind;
use crate::registry::pacing::RETRY_AFTER_CAP;
use crate::registry::{Error, Result};

/// Attempts after the first for idempotent requests that fail in a retryable way other than
/// throttling (throttled requests are bounded by time: `global.throttle_budget`).
const MAX_RETRIES: u32 = 3;
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// No request is retried once this much time has passed since its first failure (other than
/// a throttle).
const RETRY_BUDGET: Duration = Duration::from_secs(180);
/// How much of an error body is quoted in messages.
const DETAIL_LIMIT: usize = 300;
/// Redirects followed per request (reqwest's own default).
const MAX_REDIRECTS: usize = 10;

/// Why the redirect policy stopped a redirect from HTTPS to plain HTTP; recognised in the
/// error chain to report [`Error::Downgrade`].
#[derive(Debug, thiserror::Error)]
#[error("redirect from https to plain http ({to}) refused")]
struct RedirectDowngrade {
    to: String,
}

/// The redirect policy of every registry client: at most [`MAX_REDIRECTS`] hops, never from
/// HTTPS to plain HTTP. reqwest itself drops `Authorization` on a hop to another origin.
pub(super) fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let was_https = attempt.previous().iter().any(|url| url.scheme() == "https");
        if was_https && attempt.url().scheme() != "https" {
            let to = attempt.url().origin().ascii_serialization();
            attempt.error(RedirectDowngrade { to })
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// A request whose body (if any) can be sent again.
pub(super) struct Call<'a> {
    pub method: Method,
    pub url: Url,
    pub repository: &'a str,
    /// Token scopes the request needs.
    pub scopes: Vec<String>,
    /// What is being acted on, for messages: `manifest v1`, `blob sha256:…`.
    pub what: String,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
    /// Safe to repeat after a failure (GET, HEAD, PUT of a manifest).
    pub idempotent: bool,
    /// The response body is streamed by the caller: the total timeout covers only the wait
    /// for the response head, and the caller applies an idle timeout to the body.
    pub streaming: bool,
}

impl Call<'_> {
    pub fn action(&self) -> String {
        format!("{} {}", self.method, self.what)
    }
}

impl HttpRegistry {
    /// Sends `call`; answers one 401 challenge and retries retryable failures of idempotent
    /// calls. `Ok` only for 2xx (and 3xx that reqwest did not follow); anything else is a
    /// classified [`Error`].
    pub(super) async fn send(&self, call: &Call<'_>) -> Result<Response> {
        if call.method == Method::GET
            && call.what.starts_with("manifest")
            && self.settings.kind == RegistryKind::DockerHub
            && let Some(reason) = self.hub.exhausted()
        {
            return Err(Error::Deferred {
                registry: self.settings.name.clone(),
                repository: call.repository.to_string(),
                reason,
            });
        }
        let group = self.pacing_group(&call.method, call.url.path(), call.repository);
        let window = self.window(group.clone());
        let cancel = Cancel::current();
        let throttle_deadline = tokio::time::Instant::now() + self.settings.throttle_budget;
        // Bounded retries count other failures only, from the first of them.
        let mut first_failure: Option<Instant> = None;
        let mut retries = 0;
        let mut throttled: Option<Error> = None;
        let mut answered_challenge = false;
        loop {
            let Some(permit) = window.acquire_paced(give_up(cancel.clone(), throttle_deadline)).await else {
                return Err(self.throttle_spent(call, &group, throttled, cancel.as_ref()));
            };
            let (outcome, authorization) = self.send_once(call).await;
            self.count_request(outcome.as_ref().ok().map(|r| r.status().as_u16()));
            let error = match outcome {
                // Only the registry's own 401 teaches a challenge: another origin's (a
                // `Location`, a `Link`, the end of a redirect) would name a realm of its
                // choosing, which would then be handed the credentials.
                Ok(response)
                    if response.status() == StatusCode::UNAUTHORIZED
                        && !answered_challenge
                        && self.is_own_origin(response.url()) =>
                {
                    drop(permit);
                    answered_challenge = true;
                    let challenge = response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
                    self.auth.on_unauthorized(challenge, &call.scopes, authorization.as_deref()).await;
                    continue;
                }
                Ok(response) if response.status().is_success() || response.status().is_redirection() => {
                    self.hub.observe(response.headers());
                    permit.succeeded();
                    return Ok(response);
                }
                Ok(response) => {
                    self.hub.observe(response.headers());
                    let error = self.status_error(call.repository, &call.action(), &call.what, response).await;
                    if matches!(error, Error::Throttled { .. }) {
                        permit.throttled(error.retry_after());
                    }
                    error
                }
                Err(error) => error,
            };
            // Throttling is not failure: the request goes again at the group's pace (which
            // honours `Retry-After`) for as long as the throttle budget and the run last.
            if matches!(error, Error::Throttled { .. }) && call.idempotent {
                throttled = Some(error);
                if tokio::time::Instant::now() >= throttle_deadline || cancel.as_ref().is_some_and(Cancel::is_cancelled)
                {
                    return Err(self.throttle_spent(call, &group, throttled, cancel.as_ref()));
                }
                tracing::debug!(registry = %self.settings.name, repository = call.repository, action = %call.action(), group, "throttled; waiting for a turn");
                continue;
            }
            let delay = backoff(retries, error.retry_after());
            let within_budget = first_failure.get_or_insert_with(Instant::now).elapsed() + delay <= RETRY_BUDGET;
            if !(call.idempotent && error.is_retryable() && retries < MAX_RETRIES && within_budget) {
                return Err(error);
            }
            tracing::warn!(registry = %self.settings.name, repository = call.repository, action = %call.action(), ?delay, %error, "retrying");
            tokio::time::sleep(delay).await;
            retries += 1;
        }
    }

    /// The error of a request that stopped waiting out throttling: its last throttle (or, if it
    /// never got to send, one saying its group is throttled), logged with why it stopped.
    fn throttle_spent(&self, call: &Call<'_>, group: &str, last: Option<Error>, cancel: Option<&Cancel>) -> Error {
        let why =
            if cancel.is_some_and(Cancel::is_cancelled) { "the run was cancelled" } else { "throttle budget spent" };
        tracing::warn!(registry = %self.settings.name, repository = call.repository, action = %call.action(), group, budget = ?self.settings.throttle_budget, "still throttled; giving up: {why}");
        last.unwrap_or_else(|| Error::Throttled {
            registry: self.settings.name.clone(),
            repository: call.repository.to_string(),
            status: 429,
            retry_after: None,
        })
    }

    /// One attempt, and the `Authorization` value it presented (so a 401 forgets that token,
    /// not one a concurrent request has fetched since).
    async fn send_once(&self, call: &Call<'_>) -> (Result<Response>, Option<String>) {
        let authorization = match self.auth.header(call.repository, &call.scopes).await {
            Ok(authorization) => authorization,
            Err(error) => return (Err(error), None),
        };
        let outcome = self.send_with(call, authorization.as_deref()).await;
        (outcome, authorization)
    }

    async fn send_with(&self, call: &Call<'_>, authorization: Option<&str>) -> Result<Response> {
        let authorization = self.authorization_for(&call.url, call.repository, &call.action(), authorization)?;
        let mut request = self.client.request(call.method.clone(), call.url.clone()).headers(call.headers.clone());
        if !call.streaming {
            request = request.timeout(self.settings.timeout);
        }
        if let Some(header) = authorization {
            request = request.header(AUTHORIZATION, header);
        }
        if let Some(body) = &call.body {
            request = request.body(body.clone());
        }
        tracing::debug!(registry = %self.settings.name, method = %call.method, url = %call.url.path(), "request");
        match tokio::time::timeout(self.settings.timeout, request.send()).await {
            Ok(result) => result.map_err(|e| self.send_error(call.repository, &call.action(), e)),
            Err(_) => Err(self.timeout_error(call.repository, &call.action(), self.settings.timeout)),
        }
    }

    /// Whether `url` is at the registry's own origin (scheme, host, port).
    pub(super) fn is_own_origin(&self, url: &Url) -> bool {
        url.origin() == self.base.origin()
    }

    /// The `Authorization` a request to `url` may carry: `authorization` at the registry's own
    /// origin, nothing at another one; an `http://` URL of an HTTPS registry is refused.
    pub(super) fn authorization_for<'a>(
        &self,
        url: &Url,
        repository: &str,
        action: &str,
        authorization: Option<&'a str>,
    ) -> Result<Option<&'a str>> {
        if self.base.scheme() == "https" && url.scheme() != "https" {
            return Err(Error::Downgrade {
                registry: self.settings.name.clone(),
                repository: repository.to_string(),
                action: action.to_string(),
                to: url.origin().ascii_serialization(),
            });
        }
        if self.is_own_origin(url) {
            return Ok(authorization);
        }
        if authorization.is_some() {
            tracing::debug!(registry = %self.settings.name, repository, action, origin = %url.origin().ascii_serialization(), "credentials withheld from another origin");
        }
        Ok(None)
    }

    /// A failed send: a redirect refused by [`redirect_policy`] is a downgrade, anything else a
    /// network error.
    pub(super) fn send_error(&self, repository: &str, action: &str, error: reqwest::Error) -> Error {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(current) = cause {
            if let Some(RedirectDowngrade { to }) = current.downcast_ref::<RedirectDowngrade>() {
                return Error::Downgrade {
                    registry: self.settings.name.clone(),
                    repository: repository.to_string(),
                    action: action.to_string(),
                    to: to.clone(),
                };
            }
            cause = current.source();
        }
        self.network_error(repository, action, error)
    }

    pub(super) fn timeout_error(&self, repository: &str, action: &str, after: Duration) -> Error {
        Error::Timeout {
            registry: self.settings.name.clone(),
            repository: repository.to_string(),
            action: action.to_string(),
            after,
        }
    }

    /// Classifies a reqwest failure; the URL (which may carry upload state) is dropped.
    pub(super) fn network_error(&self, repository: &str, action: &str, error: reqwest::Error) -> Error {
        if error.is_timeout() {
            return self.timeout_error(repository, action, self.settings.timeout);
        }
        Error::Network {
            registry: self.settings.name.clone(),
            repository: repository.to_string(),
            action: action.to_string(),
            source: error.without_url(),
        }
    }

    /// The whole body of a successful `response` to `action`, at most `max_bytes` of it and
    /// read within the request and idle timeouts; `noun` names it in errors (`manifest`).
    pub(super) async fn read_body(
        &self,
        response: Response,
        repository: &str,
        action: &str,
        noun: &str,
        max_bytes: usize,
    ) -> Result<Bytes> {
        let limits = body::Limits { max_bytes, idle: self.settings.idle_timeout, total: self.settings.timeout };
        body::read(response, limits).await.map_err(|error| match error {
            body::Error::Announced { .. } | body::Error::TooLarge { .. } => Error::Protocol {
                registry: self.settings.name.clone(),
                repository: repository.to_string(),
                action: action.to_string(),
                detail: format!("{noun} too large: {error}"),
            },
            body::Error::Timeout { after } => self.timeout_error(repository, action, after),
            body::Error::Network(source) => self.network_error(repository, action, source),
        })
    }

    /// Turns a non-success response into an [`Error`], quoting the registry's error text.
    pub(super) async fn status_error(&self, repository: &str, action: &str, what: &str, response: Response) -> Error {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        // Under both timeouts: a body that drips forever must not hold the request (streaming
        // calls have no total timeout of their own).
        let limits =
            body::Limits { max_bytes: MAX_ERROR_BODY, idle: self.settings.idle_timeout, total: self.settings.timeout };
        let detail = error_detail(&body::read_prefix(response, limits).await);
        let registry = self.settings.name.clone();
        let repository = repository.to_string();
        match status {
            404 => Error::NotFound { registry, repository, what: what.to_string() },
            401 | 403 => Error::Unauthorized { registry, repository, status, detail },
            429 => Error::Throttled { registry, repository, status, retry_after },
            503 if retry_after.is_some() => Error::Throttled { registry, repository, status, retry_after },
            _ => Error::Status { registry, repository, action: action.to_string(), status, detail },
        }
    }
}

/// `Retry-After` as seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `CODE: message` from a distribution error body, else the start of the body; control
/// characters escaped, since it is the registry's text and goes to terminals and logs.
fn error_detail(body: &[u8]) -> String {
    let detail = quoted_detail(body);
    crate::text::sanitize(&detail).into_owned()
}

fn quoted_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(Errors { errors }) = serde_json::from_slice::<Errors>(body) {
        let parts: Vec<String> = errors
            .into_iter()
            .map(|e| format!("{}: {}", e.code.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(DETAIL_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "(no details)".to_string(),
        None => text.to_string(),
    }
}

/// Resolves when a throttled request should stop waiting: the run is cancelled, or `until`.
pub(super) async fn give_up(cancel: Option<Cancel>, until: tokio::time::Instant) {
    let cancelled = async {
        match cancel {
            Some(cancel) => cancel.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = cancelled => {}
        () = tokio::time::sleep_until(until) => {}
    }
}

/// Exponential backoff with full jitter; a `Retry-After` sets the floor.
pub(super) fn backoff(retry: u32, retry_after: Option<Duration>) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1 << retry.min(16)).min(BACKOFF_CAP);
    let jittered = ceiling.mul_f64(rand::random::<f64>());
    match retry_after {
        Some(after) => after.min(RETRY_AFTER_CAP) + jittered / 4,
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_detail_prefers_distribution_error_codes() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(error_detail(body), "MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(error_detail(b""), "(no details)");
        assert_eq!(error_detail("x".repeat(400).as_bytes()).chars().count(), DETAIL_LIMIT + 1);
    }

    #[test]
    fn error_detail_escapes_terminal_control_sequences() {
        let json = "{\"errors\":[{\"code\":\"\\u001b[2J\",\"message\":\"\\u001b]0;pwned\\u0007\"}]}";
        assert_eq!(error_detail(json.as_bytes()), "\\x1b[2J: \\x1b]0;pwned\\x07");
        assert_eq!(error_detail(b"\x1b]0;pwned\x07\x1b[2Jgone\r\n"), "\\x1b]0;pwned\\x07\\x1b[2Jgone");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn an_endless_retry_after_waits_at_most_the_cap() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let endless = parse_retry_after(&u64::MAX.to_string(), now);
        assert_eq!(endless, Some(Duration::from_secs(u64::MAX)));
        assert!(backoff(u32::MAX, endless) <= RETRY_AFTER_CAP + BACKOFF_CAP);
        let far = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).unwrap();
        assert!(backoff(0, Some(far)) <= RETRY_AFTER_CAP + BACKOFF_CAP);
        assert_eq!(parse_retry_after("-5", now), None, "a negative delay is no delay");
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        for retry in 0..20 {
            assert!(backoff(retry, None) <= BACKOFF_CAP);
        }
        let after = backoff(0, Some(Duration::from_secs(3)));
        assert!(after >= Duration::from_secs(3) && after < Duration::from_secs(4), "{after:?}");
        assert!(backoff(0, Some(Duration::from_secs(3600))) <= RETRY_AFTER_CAP + BACKOFF_CAP);
    }

    /// A registry on a loopback port answering each request with the next of `answers`
    /// (`status`, `Retry-After`), the last one for ever after; counts the requests.
    mod scripted {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        use crate::registry::http::{HttpRegistry, RegistrySettings};

        pub struct Scripted {
            pub client: HttpRegistry,
            pub requests: Arc<AtomicUsize>,
        }

        pub async fn start(
            answers: &'static [(u16, Option<u64>)],
            configure: impl FnOnce(&mut RegistrySettings),
        ) -> Scripted {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let host = listener.local_addr().unwrap().to_string();
            let requests = Arc::new(AtomicUsize::new(0));
            let counter = requests.clone();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let (status, retry_after) = answers[n.min(answers.len() - 1)];
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
                            head.push(byte[0]);
                        }
                        let body = if status == 200 { r#"{"name":"app","tags":["v1"]}"# } else { "" };
                        let retry = retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\n{retry}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(answer.as_bytes()).await;
                    });
                }
            });
            let mut settings = RegistrySettings::new(&host);
            settings.plain_http = true;
            configure(&mut settings);
            Scripted { client: HttpRegistry::new(settings).unwrap(), requests }
        }
    }

    use std::sync::atomic::Ordering;

    use crate::registry::Registry;

    #[tokio::test]
    async fn a_non_throttling_error_still_fails_after_its_bounded_retries() {
        let registry = scripted::start(&[(500, None)], |_| {}).await;
        let error = registry.client.list_tags("app").await.unwrap_err();
        assert!(matches!(error, Error::Status { status: 500, .. }), "{error}");
        assert_eq!(registry.requests.load(Ordering::SeqCst), 1 + MAX_RETRIES as usize);
    }

    #[tokio::test]
    async fn throttled_requests_go_on_past_the_retry_count_until_they_go_through() {
        let answers = &[(429, Some(0)), (429, Some(0)), (503, Some(0)), (429, None), (200, None)];
        let registry = scripted::start(answers, |_| {}).await;
        let tags = registry.client.list_tags("app").await.expect("throttling is not failure");
        assert_eq!(tags, ["v1"]);
        assert_eq!(registry.requests.load(Ordering::SeqCst), 5, "more tries than MAX_RETRIES allows other errors");
        let throttling = registry.client.throttling_counts();
        assert_eq!(throttling.len(), 1);
        assert_eq!((throttling[0].group.as_str(), throttling[0].throttled), ("registry", 4));
    }

    #[tokio::test]
    async fn a_throttled_request_fails_once_the_throttle_budget_is_spent() {
        let registry = scripted::start(&[(429, Some(1))], |s| s.throttle_budget = Duration::from_secs(2)).await;
        let started = Instant::now();
        let error = registry.client.list_tags("app").await.unwrap_err();
        assert!(matches!(error, Error::Throttled { status: 429, .. }), "{error}");
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(5), "{took:?}");
        let sent = registry.requests.load(Ordering::SeqCst);
        assert!((2..=3).contains(&sent), "Retry-After: 1 is honoured, not hammered: {sent} requests in {took:?}");
    }

    #[tokio::test]
    async fn a_throttle_wait_ends_promptly_when_the_run_is_cancelled() {
        let registry = scripted::start(&[(429, Some(60))], |_| {}).await;
        let cancel = Cancel::default();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            trigger.cancel();
        });
        let started = Instant::now();
        let error = cancel.scope(registry.client.list_tags("app")).await.unwrap_err();
        assert!(matches!(error, Error::Throttled { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2), "waited {:?} of a 60 s Retry-After", started.elapsed());
        assert_eq!(registry.requests.load(Ordering::SeqCst), 1);
    }
}
