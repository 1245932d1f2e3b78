//! The registry client over HTTP (OCI distribution API v2), with rustls for TLS.
//!
//! One [`HttpRegistry`] per registry: its own connection pool, CA roots, authenticator and
//! upload mode. Requests without a body get a total timeout; body transfers get an idle
//! timeout instead, so a 1 GiB layer may take as long as it needs while it keeps moving.

mod blob;
mod hub;
mod manifest;
mod pages;
mod referrers;
mod route;
mod send;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

use super::auth::{Authenticator, CredentialSource, Credentials};
use super::ecr::{self, EcrControl};
use super::kind::RegistryKind;
use super::pacing::{Throttling, Window};
use super::{BlobStream, Error, MountOutcome, Presence, Registry, Result, UploadSession};
use crate::oci::{BlobDescriptor, Digest, Manifest, ManifestHead, Referrer, endpoint_host};

/// How blobs are uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UploadMode {
    /// One streamed `PUT` with `Content-Length`; switches to chunks if the registry refuses it.
    #[default]
    Monolithic,
    /// `PATCH` chunks then a closing `PUT`, for registries that need it.
    Chunked,
}

/// Everything needed to talk to one registry.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Registry name as written in references (`docker.io`, `127.0.0.1:5000`).
    pub name: String,
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
    /// Extra CA certificates (PEM) trusted for this registry, on top of the system roots.
    pub ca_file: Option<PathBuf>,
    /// What to authenticate with.
    pub credentials: CredentialSource,
    /// Total timeout for requests without a body.
    pub timeout: Duration,
    /// How long a body transfer may make no progress.
    pub idle_timeout: Duration,
    /// Upload strategy.
    pub upload: UploadMode,
    /// Chunk size for chunked uploads.
    pub chunk_size: usize,
    /// The registry family (quirks, pacing groups); detected from `name` by default.
    pub kind: RegistryKind,
    /// Host to connect to when it differs from `name` (ECR's FIPS endpoint).
    pub endpoint: Option<String>,
    /// How long one request keeps waiting out throttling before it fails
    /// (`global.throttle_budget`).
    pub throttle_budget: Duration,
}

/// Default of [`RegistrySettings::throttle_budget`]: long enough for a quota shared by many
/// workers to let every one through, short enough that a run against a registry that never
/// recovers still ends.
pub const DEFAULT_THROTTLE_BUDGET: Duration = Duration::from_secs(300);

impl RegistrySettings {
    /// Defaults for `name`: HTTPS, anonymous, 30 s request timeout, 60 s idle timeout.
    pub fn new(name: &str) -> Self {
        RegistrySettings {
            name: name.to_string(),
            plain_http: false,
            ca_file: None,
            credentials: Credentials::Anonymous.into(),
            timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            upload: UploadMode::Monolithic,
            chunk_size: 8 * 1024 * 1024,
            kind: RegistryKind::detect(name),
            endpoint: None,
            throttle_budget: DEFAULT_THROTTLE_BUDGET,
        }
    }
}

/// A registry reached over HTTP(S).
pub struct HttpRegistry {
    settings: RegistrySettings,
    base: Url,
    client: reqwest::Client,
    auth: Authenticator,
    /// Set once the registry refused a monolithic upload; later uploads use chunks.
    chunked: AtomicBool,
    /// Whether this registry's answers to mount requests can be trusted (see `blob.rs`).
    mounts: blob::MountAnswers,
    /// Adaptive concurrency windows by pacing group (see [`HttpRegistry::pacing_group`]).
    windows: Mutex<HashMap<String, Arc<Window>>>,
    /// ECR control plane, when repositories are to be created.
    ecr: Option<EcrControl>,
    /// Docker Hub's pull budget, from its `RateLimit-*` headers.
    hub: hub::PullBudget,
    /// Requests sent, by HTTP status (`error` when no answer came), for metrics.
    requests: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl HttpRegistry {
    /// Builds the client: TLS roots (system plus `ca_file`), timeouts, authenticator.
    pub fn new(settings: RegistrySettings) -> Result<Self> {
        let setup = |detail: String| Error::Setup { registry: settings.name.clone(), detail };
        let scheme = if settings.plain_http { "http" } else { "https" };
        let host = settings.endpoint.as_deref().unwrap_or_else(|| endpoint_host(&settings.name));
        let base =
            Url::parse(&format!("{scheme}://{host}/")).map_err(|e| setup(format!("invalid registry address: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("ocync/", env!("CARGO_PKG_VERSION")))
            // No client-wide read timeout: hyper keeps a read pending during long uploads,
            // which would trip it. Body transfers get their own idle timeout instead.
            .connect_timeout(Duration::from_secs(10))
            .redirect(send::redirect_policy())
            .pool_max_idle_per_host(64);
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|e| setup(format!("cannot read CA file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| setup(format!("CA file {} is not PEM: {e}", path.display())))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| setup(format!("cannot build HTTP client: {e}")))?;
        let auth = Authenticator::new(
            settings.name.clone(),
            settings.plain_http,
            settings.credentials.clone(),
            client.clone(),
            settings.timeout,
        );
        let chunked = AtomicBool::new(settings.upload == UploadMode::Chunked);
        Ok(HttpRegistry {
            settings,
            base,
            client,
            auth,
            chunked,
            mounts: blob::MountAnswers::default(),
            windows: Mutex::default(),
            ecr: None,
            hub: hub::PullBudget::default(),
            requests: Mutex::default(),
        })
    }

    /// Creates missing repositories through the ECR control plane before pushing to them.
    pub fn with_ecr_control(mut self, control: EcrControl) -> Self {
        self.ecr = Some(control);
        self
    }

    /// Requests sent so far, by HTTP status (`error` when no answer came).
    pub fn request_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.requests.lock().expect("request counts lock poisoned").clone()
    }

    fn count_request(&self, status: Option<u16>) {
        let key = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        *self.requests.lock().expect("request counts lock poisoned").entry(key).or_default() += 1;
    }

    /// Throttling answers seen so far, over all pacing groups.
    pub fn throttles(&self) -> u64 {
        self.windows.lock().expect("windows lock poisoned").values().map(|w| w.throttles()).sum()
    }

    /// Throttling so far, per pacing group that was throttled at least once.
    pub fn throttling_counts(&self) -> Vec<Throttling> {
        let windows = self.windows.lock().expect("windows lock poisoned");
        let mut all: Vec<Throttling> = windows
            .iter()
            .map(|(group, window)| window.throttling(&self.settings.name, group))
            .filter(|t| t.throttled > 0)
            .collect();
        all.sort_by(|a, b| a.group.cmp(&b.group));
        all
    }

    /// Makes sure `repository` exists before a push (ECR with `create_repositories`).
    async fn prepare_push(&self, repository: &str) -> Result<()> {
        match &self.ecr {
            Some(control) => control.ensure_repository(repository).await.map_err(|error| self.control_error(error)),
            None => Ok(()),
        }
    }

    /// A failed control-plane call as a registry error: an auth failure when AWS refused the
    /// identity or its permissions, else a setup failure.
    pub(super) fn control_error(&self, error: ecr::Error) -> Error {
        let registry = self.settings.name.clone();
        if error.denied {
            Error::Denied { registry, repository: error.repository, call: error.call.to_string(), detail: error.detail }
        } else {
            Error::Setup { registry, detail: error.to_string() }
        }
    }

    /// The pacing group of a request: ECR has separate quotas for reads, upload
    /// initiate/complete, upload parts and PutImage; GAR paces per project; others per registry.
    fn pacing_group(&self, method: &reqwest::Method, path: &str, repository: &str) -> String {
        pacing_group(&self.settings.kind, method, path, repository)
    }

    fn window(&self, group: String) -> Arc<Window> {
        self.windows.lock().expect("windows lock poisoned").entry(group).or_default().clone()
    }

    /// The settings this client was built with.
    pub fn settings(&self) -> &RegistrySettings {
        &self.settings
    }

    fn use_chunks(&self) -> bool {
        self.chunked.load(Ordering::Relaxed)
    }

    fn switch_to_chunks(&self) {
        self.chunked.store(true, Ordering::Relaxed);
    }
}

/// The rate window a request counts against. ECR has separate quotas per action, so reads,
/// upload parts, upload initiate/complete and PutImage each get their own window; GAR and GCR
/// throttle per project (the first path segment, or `domain/project` for domain-scoped
/// projects such as `example.com/app`); everyone else shares one window per registry.
fn pacing_group(kind: &RegistryKind, method: &reqwest::Method, path: &str, repository: &str) -> String {
    match kind {
        RegistryKind::Ecr(_) => {
            // The route after `/v2/<repository>/`, so a repository whose name contains
            // `blobs/uploads` or `manifests` cannot confuse the classification.
            let route = path
                .find("/v2/")
                .map(|at| &path[at + 4..])
                .and_then(|rest| rest.strip_prefix(repository))
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(path);
            let group = if route.starts_with("blobs/uploads") {
                if *method == reqwest::Method::PATCH { "upload-part" } else { "upload-initiate-complete" }
            } else if *method == reqwest::Method::PUT && route.starts_with("manifests/") {
                "put-image"
            } else {
                "read"
            };
            group.to_string()
        }
        RegistryKind::Gar | RegistryKind::Gcr => {
            let mut segments = repository.split('/');
            let first = segments.next().unwrap_or(repository);
            let project = match segments.next() {
                Some(second) if first.contains('.') => format!("{first}/{second}"),
                _ => first.to_string(),
            };
            format!("project:{project}")
        }
        _ => "registry".to_string(),
    }
}

/// The token scope for reading (`pull`) or writing (`pull,push`) a repository.
fn scope(repository: &str, push: bool) -> String {
    let actions = if push { "pull,push" } else { "pull" };
    format!("repository:{repository}:{actions}")
}

impl Registry for HttpRegistry {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn same_registry(&self, other: &Self) -> bool {
        self.base == other.base
    }

    async fn head_manifest(&self, repository: &str, reference: &str) -> Result<Option<ManifestHead>> {
        self.head_manifest_impl(repository, reference).await
    }

    async fn get_manifest(&self, repository: &str, reference: &str) -> Result<Manifest> {
        self.get_manifest_impl(repository, reference).await
    }

    async fn put_manifest(&self, repository: &str, reference: &str, manifest: &Manifest) -> Result<()> {
        self.put_manifest_impl(repository, reference, manifest).await
    }

    async fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool> {
        self.blob_exists_impl(repository, digest).await
    }

    async fn check_before_upload(&self, repository: &str, digest: &Digest) -> Result<Presence> {
        self.check_before_upload_impl(repository, digest).await
    }

    async fn get_blob(&self, repository: &str, blob: &BlobDescriptor) -> Result<BlobStream> {
        self.get_blob_impl(repository, blob).await
    }

    async fn mount_blob(&self, repository: &str, digest: &Digest, from: &str) -> Result<MountOutcome> {
        self.mount_blob_impl(repository, digest, from).await
    }

    async fn push_blob(
        &self,
        repository: &str,
        blob: &BlobDescriptor,
        body: BlobStream,
        session: Option<UploadSession>,
    ) -> Result<()> {
        self.push_blob_impl(repository, blob, body, session).await
    }

    async fn list_tags(&self, repository: &str) -> Result<Vec<String>> {
        self.list_tags_impl(repository).await
    }

    async fn list_referrers(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Referrer>>> {
        self.list_referrers_impl(repository, subject, artifact_type).await
    }

    fn throttling(&self) -> Vec<Throttling> {
        self.throttling_counts()
    }

    async fn blobs_present(&self, repository: &str, digests: &[Digest]) -> Option<std::collections::HashSet<Digest>> {
        let control = self.ecr.as_ref()?;
        let texts: Vec<String> = digests.iter().map(ToString::to_string).collect();
        match control.layers_available(repository, &texts).await {
            Ok(available) => Some(digests.iter().filter(|d| available.contains(d.as_str())).cloned().collect()),
            Err(error) => {
                // Fall back to one HEAD per blob rather than fail the image.
                tracing::warn!(registry = %self.settings.name, repository, %error, "batch layer check failed; using HEADs");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ecr_registry() -> HttpRegistry {
        HttpRegistry::new(RegistrySettings::new("123456789012.dkr.ecr.us-east-1.amazonaws.com")).unwrap()
    }

    fn control_error(denied: bool) -> ecr::Error {
        ecr::Error {
            call: "CreateRepository",
            repository: "mirror/app".into(),
            detail: "AccessDeniedException: not authorized to perform ecr:CreateRepository".into(),
            denied,
        }
    }

    #[test]
    fn ecr_requests_fall_into_its_four_action_quotas() {
        let ecr = RegistryKind::detect("123456789012.dkr.ecr.us-east-1.amazonaws.com");
        let group =
            |method: &str, path: &str, repository: &str| pacing_group(&ecr, &method.parse().unwrap(), path, repository);
        let digest = "sha256:0123";
        for (method, path) in [
            ("HEAD", "/v2/app/manifests/v1".to_string()),
            ("GET", format!("/v2/app/manifests/{digest}")),
            ("GET", format!("/v2/app/blobs/{digest}")),
            ("HEAD", format!("/v2/app/blobs/{digest}")),
            ("GET", "/v2/app/tags/list?n=1000".to_string()),
        ] {
            assert_eq!(group(method, &path, "app"), "read", "{method} {path}");
        }
        assert_eq!(group("PATCH", "/v2/app/blobs/uploads/abc", "app"), "upload-part");
        assert_eq!(group("POST", "/v2/app/blobs/uploads/", "app"), "upload-initiate-complete");
        assert_eq!(group("POST", "/v2/app/blobs/uploads/?mount=sha256:1&from=b", "app"), "upload-initiate-complete");
        assert_eq!(group("PUT", "/v2/app/blobs/uploads/abc?digest=sha256:1", "app"), "upload-initiate-complete");
        assert_eq!(group("PUT", "/v2/app/manifests/v1", "app"), "put-image");
        assert_eq!(group("PUT", &format!("/v2/team/app/manifests/{digest}"), "team/app"), "put-image");
        // A repository whose name looks like a route is classified by the route after it.
        assert_eq!(group("PUT", "/v2/x/blobs/uploads/manifests/v1", "x/blobs/uploads"), "put-image");
        assert_eq!(group("GET", "/v2/x/blobs/uploads/blobs/sha256:1", "x/blobs/uploads"), "read");
    }

    #[test]
    fn gar_and_gcr_share_one_window_per_project() {
        let get = reqwest::Method::GET;
        for host in ["us-docker.pkg.dev", "europe-west1-docker.pkg.dev", "gcr.io", "eu.gcr.io"] {
            let kind = RegistryKind::detect(host);
            let group =
                |repository: &str| pacing_group(&kind, &get, &format!("/v2/{repository}/manifests/v1"), repository);
            assert_eq!(group("proj-a/repo/app"), "project:proj-a", "{host}");
            assert_eq!(group("proj-a/other/tool"), group("proj-a/repo/app"), "{host}: one window per project");
            assert_ne!(group("proj-b/repo/app"), group("proj-a/repo/app"), "{host}: projects do not share");
            assert_eq!(group("example.com/proj/app"), "project:example.com/proj", "{host}: domain-scoped project");
        }
        let generic = RegistryKind::detect("ghcr.io");
        assert_eq!(pacing_group(&generic, &get, "/v2/a/b/manifests/v1", "a/b"), "registry");
        assert_eq!(pacing_group(&generic, &get, "/v2/c/manifests/v1", "c"), "registry");
    }

    #[test]
    fn a_denied_control_plane_call_is_an_auth_error_naming_the_call() {
        let error = ecr_registry().control_error(control_error(true));
        assert!(error.is_auth(), "{error}");
        assert!(!error.is_retryable());
        let text = error.to_string();
        assert!(text.contains("CreateRepository") && text.contains("mirror/app"), "{text}");
    }

    #[test]
    fn other_control_plane_failures_are_not_auth_errors() {
        let error = ecr_registry().control_error(control_error(false));
        assert!(!error.is_auth(), "{error}");
        assert!(matches!(error, Error::Setup { .. }), "{error}");
    }
}
