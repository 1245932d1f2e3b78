//! Amazon ECR: authorization tokens from `GetAuthorizationToken` (used as HTTP Basic directly),
//! and the control-plane calls a mirror needs (creating missing repositories).
//!
//! Credentials come from the ambient AWS chain (environment, shared files and `AWS_PROFILE`
//! role chains, SSO, container/instance roles, IRSA, EKS Pod Identity), or from a named
//! profile for one registry. `AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_ECR` and
//! `AWS_USE_FIPS_ENDPOINT` are honoured by the SDK.

use std::collections::HashSet;
use std::time::SystemTime;

use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability};
use base64::Engine as _;

use super::auth::{self, CredentialProvider, Credentials, Expiring, ProviderFuture, Secret};

/// `GetAuthorizationToken` as a credential provider.
pub struct EcrTokenProvider {
    client: aws_sdk_ecr::Client,
    region: String,
}

impl EcrTokenProvider {
    /// A provider using `config`.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        let region = config.region().map_or_else(|| "unknown region".to_string(), ToString::to_string);
        EcrTokenProvider { client: aws_sdk_ecr::Client::new(config), region }
    }
}

impl CredentialProvider for EcrTokenProvider {
    fn describe(&self) -> String {
        format!("ECR GetAuthorizationToken in {}", self.region)
    }

    fn fetch(&self) -> ProviderFuture<'_> {
        Box::pin(async move {
            // No registry id: the token works for every registry the principal may use.
            let answer = self
                .client
                .get_authorization_token()
                .send()
                .await
                .map_err(|e| auth::Error::platform(crate::aws::describe(&e)))?;
            let unusable = |problem: &str| auth::Error::platform(problem);
            let data = answer
                .authorization_data()
                .first()
                .ok_or_else(|| unusable("the answer holds no authorization data"))?;
            let token = data.authorization_token().ok_or_else(|| unusable("the answer holds no token"))?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(token)
                .map_err(|_| unusable("the token is not base64"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| unusable("the token is not UTF-8"))?;
            let (username, password) =
                decoded.split_once(':').ok_or_else(|| unusable("the token is not user:password"))?;
            let expires_at = data.expires_at().and_then(|at| SystemTime::try_from(*at).ok());
            Ok(Expiring {
                credentials: Credentials::Basic { username: username.to_string(), password: Secret::new(password) },
                expires_at,
            })
        })
    }
}

/// How missing repositories are created.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateRepositories {
    /// Make tags immutable.
    pub immutable_tags: bool,
    /// Scan images on push.
    pub scan_on_push: bool,
}

/// ECR control-plane calls for one registry.
pub struct EcrControl {
    client: aws_sdk_ecr::Client,
    registry_id: Option<String>,
    create: Option<CreateRepositories>,
    ensured: tokio::sync::Mutex<HashSet<String>>,
}

/// Digests per `BatchCheckLayerAvailability` call (the API's limit).
const BATCH_CHECK_LIMIT: usize = 100;

impl EcrControl {
    /// Control-plane access with `config`; with `create`, missing repositories are created.
    pub fn new(
        config: &aws_config::SdkConfig,
        registry_id: Option<String>,
        create: Option<CreateRepositories>,
    ) -> Self {
        EcrControl { client: aws_sdk_ecr::Client::new(config), registry_id, create, ensured: Default::default() }
    }

    /// Whether control-plane creation of missing repositories is on.
    pub fn creates_repositories(&self) -> bool {
        self.create.is_some()
    }

    /// Which of `digests` are in `repository`, by `BatchCheckLayerAvailability` (100 per call)
    /// instead of one HEAD per blob. A repository that does not exist yet has none of them.
    pub async fn layers_available(&self, repository: &str, digests: &[String]) -> Result<HashSet<String>, Error> {
        let mut available = HashSet::new();
        for chunk in digests.chunks(BATCH_CHECK_LIMIT) {
            let mut request = self
                .client
                .batch_check_layer_availability()
                .repository_name(repository)
                .set_layer_digests(Some(chunk.to_vec()));
            if let Some(id) = &self.registry_id {
                request = request.registry_id(id);
            }
            match request.send().await {
                Ok(answer) => available.extend(
                    answer
                        .layers()
                        .iter()
                        .filter(|layer| layer.layer_availability().is_some_and(|a| a.as_str() == "AVAILABLE"))
                        .filter_map(|layer| layer.layer_digest().map(str::to_string)),
                ),
                Err(error) if error.as_service_error().is_some_and(|e| e.is_repository_not_found_exception()) => {
                    return Ok(available);
                }
                Err(error) => return Err(Error::new("BatchCheckLayerAvailability", repository, &error)),
            }
        }
        Ok(available)
    }

    /// Whether `repository` exists, by `DescribeRepositories` alone: changes nothing, so
    /// `ocync auth check` can use it.
    pub async fn repository_exists(&self, repository: &str) -> Result<bool, Error> {
        let mut describe = self.client.describe_repositories().repository_names(repository);
        if let Some(id) = &self.registry_id {
            describe = describe.registry_id(id);
        }
        match describe.send().await {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_repository_not_found_exception()) => Ok(false),
            Err(error) => Err(Error::new("DescribeRepositories", repository, &error)),
        }
    }

    /// Creates `repository` unless it exists (when creating is enabled); idempotent, and asks
    /// once per run.
    pub async fn ensure_repository(&self, repository: &str) -> Result<(), Error> {
        let Some(create) = &self.create else { return Ok(()) };
        let mut ensured = self.ensured.lock().await;
        if ensured.contains(repository) {
            return Ok(());
        }
        if !self.repository_exists(repository).await? {
            let mutability =
                if create.immutable_tags { ImageTagMutability::Immutable } else { ImageTagMutability::Mutable };
            let mut request = self
                .client
                .create_repository()
                .repository_name(repository)
                .image_tag_mutability(mutability)
                .image_scanning_configuration(
                    ImageScanningConfiguration::builder().scan_on_push(create.scan_on_push).build(),
                );
            if let Some(id) = &self.registry_id {
                request = request.registry_id(id);
            }
            match request.send().await {
                Ok(_) => tracing::info!(repository, "ECR repository created"),
                Err(error) if error.as_service_error().is_some_and(|e| e.is_repository_already_exists_exception()) => {}
                Err(error) => return Err(Error::new("CreateRepository", repository, &error)),
            }
        }
        ensured.insert(repository.to_string());
        Ok(())
    }
}

/// A failed ECR control-plane call, with whether AWS refused the caller's identity or
/// permissions (so it can be reported as an authentication failure, exit code 4).
#[derive(Debug, thiserror::Error)]
#[error("{call} {repository}: {detail}")]
pub struct Error {
    /// The API call (`CreateRepository`).
    pub call: &'static str,
    /// The repository it was about.
    pub repository: String,
    /// `Code: message` from AWS, or the transport error (never the request or credentials).
    pub detail: String,
    /// AWS refused the identity or its permissions (`AccessDeniedException` and kin).
    pub denied: bool,
}

impl Error {
    fn new<E, R>(call: &'static str, repository: &str, error: &aws_sdk_ecr::error::SdkError<E, R>) -> Self
    where
        E: aws_sdk_ecr::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        use aws_sdk_ecr::error::ProvideErrorMetadata as _;
        Error {
            call,
            repository: repository.to_string(),
            detail: crate::aws::describe(error),
            denied: crate::aws::is_denied_code(error.code()),
        }
    }
}
