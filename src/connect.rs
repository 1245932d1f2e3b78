//! Builds registry clients: settings from the config entry for a host (if any), and
//! credentials by `auth_type`, or detected from the host: ECR through the AWS SDK, GAR/GCR
//! through Google's Application Default Credentials, ACR through AKS Workload Identity;
//! otherwise docker's `config.json`, else anonymous.

use crate::config::{AuthType, Config, RegistryConfig};
use crate::registry::auth::{AcrProvider, CredentialSource, Credentials, GcpProvider, Secret, docker_config_lookup};
use crate::registry::ecr::{EcrControl, EcrTokenProvider};
use crate::registry::kind::{EcrHost, RegistryKind};
use crate::registry::{Error, HttpRegistry, RegistrySettings};

/// How ocync authenticates to one registry (decided from the config entry and the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// No credentials.
    Anonymous,
    /// Credentials from the config.
    Static(Credentials),
    /// docker's `config.json`; `required` fails when it has nothing for the host.
    DockerConfig {
        /// Whether missing credentials are an error (explicit `auth_type: docker_config`).
        required: bool,
    },
    /// ECR `GetAuthorizationToken`, optionally with a named AWS profile.
    Ecr {
        /// The profile.
        profile: Option<String>,
    },
    /// Google Application Default Credentials.
    Google,
    /// AKS Workload Identity when configured, else docker's `config.json`.
    Azure,
}

/// Decides the method: the explicit `auth_type`, else credentials or a token in the entry,
/// else the host's family.
pub fn auth_method(host: &str, entry: Option<&RegistryConfig>) -> AuthMethod {
    let configured = entry.and_then(|e| e.auth_type);
    let basic = entry
        .and_then(|e| e.credentials.as_ref())
        .map(|c| Credentials::Basic { username: c.username.clone(), password: Secret::new(c.password.clone()) });
    let token = entry.and_then(|e| e.token.as_ref()).map(|t| Credentials::Bearer(Secret::new(t.0.clone())));
    match configured {
        Some(AuthType::Anonymous) => AuthMethod::Anonymous,
        Some(AuthType::Basic) => basic.map_or(AuthMethod::Anonymous, AuthMethod::Static),
        Some(AuthType::StaticToken) => token.map_or(AuthMethod::Anonymous, AuthMethod::Static),
        Some(AuthType::DockerConfig) => AuthMethod::DockerConfig { required: true },
        Some(AuthType::Ecr) => AuthMethod::Ecr { profile: entry.and_then(|e| e.aws_profile.clone()) },
        Some(AuthType::Gar | AuthType::Gcr) => AuthMethod::Google,
        None => match (basic, token) {
            (Some(credentials), _) | (None, Some(credentials)) => AuthMethod::Static(credentials),
            (None, None) => match RegistryKind::detect(host) {
                RegistryKind::Ecr(_) => AuthMethod::Ecr { profile: None },
                RegistryKind::Gar | RegistryKind::Gcr => AuthMethod::Google,
                RegistryKind::Acr => AuthMethod::Azure,
                RegistryKind::DockerHub | RegistryKind::Generic => AuthMethod::DockerConfig { required: false },
            },
        },
    }
}

/// A client for the registry `host` (as written in a reference). `plain_http` comes from an
/// `http://` prefix on the reference; the config entry can also ask for it. The entry is
/// chosen by host and scheme ([`Config::registry_for`]), so an `http://` reference never
/// carries credentials configured for HTTPS.
pub async fn open(host: &str, plain_http: bool, config: Option<&Config>) -> Result<HttpRegistry, Error> {
    let entry = config.and_then(|c| c.registry_for(host, plain_http));
    open_with(host, plain_http, entry, config).await
}

/// A client for the config entry `entry` itself: its own credentials and settings, never
/// those of another entry for the same host.
pub async fn open_entry(entry: &RegistryConfig, config: &Config) -> Result<HttpRegistry, Error> {
    open_with(&entry.host, entry.plain_http, Some(entry), Some(config)).await
}

async fn open_with(
    host: &str,
    plain_http: bool,
    entry: Option<&RegistryConfig>,
    config: Option<&Config>,
) -> Result<HttpRegistry, Error> {
    let mut settings = RegistrySettings::new(host);
    if let Some(config) = config {
        settings.timeout = config.global.timeout;
        settings.idle_timeout = config.global.idle_timeout;
        settings.throttle_budget = config.global.throttle_budget;
    }
    settings.plain_http = plain_http || entry.is_some_and(|e| e.plain_http);
    if let Some(entry) = entry {
        settings.ca_file = entry.ca_file.clone();
        settings.upload = entry.upload;
    }
    let setup = |detail: String| Error::Setup { registry: host.to_string(), detail };
    match auth_method(host, entry) {
        AuthMethod::Anonymous => {}
        AuthMethod::Static(credentials) => settings.credentials = credentials.into(),
        AuthMethod::DockerConfig { required } => {
            let found = docker_config_lookup(host).await.map_err(|e| setup(e.to_string()))?;
            if required && found.is_none() {
                return Err(setup(format!(
                    "auth_type docker_config, but docker's config.json has no credentials for {host}"
                )));
            }
            settings.credentials = found.unwrap_or_default().into();
        }
        AuthMethod::Ecr { profile } => return open_ecr(settings, entry, profile.as_deref()).await,
        AuthMethod::Google => {
            settings.credentials = CredentialSource::provided(
                GcpProvider::from_environment()
                    .map_err(|e| Error::Credentials { registry: host.to_string(), detail: e.to_string() })?,
            );
        }
        AuthMethod::Azure => {
            settings.credentials = match AcrProvider::from_environment(&settings.name, settings.plain_http) {
                Some(provider) => CredentialSource::provided(provider),
                None => docker_config_lookup(host).await.map_err(|e| setup(e.to_string()))?.unwrap_or_default().into(),
            };
        }
    }
    HttpRegistry::new(settings)
}

/// ECR: the region comes from the host name (else the SDK's chain, e.g. for a test registry on
/// loopback with `auth_type: ecr`); with `AWS_USE_FIPS_ENDPOINT=true` the FIPS endpoint is used.
async fn open_ecr(
    mut settings: RegistrySettings,
    entry: Option<&RegistryConfig>,
    profile: Option<&str>,
) -> Result<HttpRegistry, Error> {
    let fips = fips_requested(std::env::var("AWS_USE_FIPS_ENDPOINT").ok().as_deref());
    let (sdk, ecr_host) = ecr_sdk_config_with(&settings.name, profile, fips).await;
    settings.credentials = CredentialSource::provided(EcrTokenProvider::new(&sdk));
    if let Some(endpoint) = fips_registry_endpoint(ecr_host.as_ref(), fips) {
        settings.endpoint = Some(endpoint);
    }
    let create = entry.and_then(|e| e.create_repositories.clone());
    let control = EcrControl::new(&sdk, ecr_host.map(|h| h.account), create);
    Ok(HttpRegistry::new(settings)?.with_ecr_control(control))
}

/// The AWS SDK config for the ECR registry `host` (`host[:port]`): the region from the host
/// name, else the SDK's chain; the named profile when given. Shared by registry clients and
/// `ocync pull-secret`, so both get tokens the same way.
pub async fn ecr_sdk_config(host: &str, profile: Option<&str>) -> (aws_config::SdkConfig, Option<EcrHost>) {
    ecr_sdk_config_with(host, profile, fips_requested(std::env::var("AWS_USE_FIPS_ENDPOINT").ok().as_deref())).await
}

/// [`ecr_sdk_config`] with the FIPS decision made by the caller: when `fips`, the SDK is told
/// to use FIPS endpoints explicitly (the same answer the SDK would read from the environment,
/// stated so it cannot silently differ from the registry endpoint chosen alongside it).
async fn ecr_sdk_config_with(
    host: &str,
    profile: Option<&str>,
    fips: bool,
) -> (aws_config::SdkConfig, Option<EcrHost>) {
    let ecr_host = EcrHost::parse(host.split(':').next().unwrap_or(host));
    let sdk = crate::aws::sdk_config(ecr_host.as_ref().map(|h| h.region.as_str()), profile).await;
    let sdk = if fips { sdk.into_builder().use_fips(true).build() } else { sdk };
    (sdk, ecr_host)
}

/// `AWS_USE_FIPS_ENDPOINT` as the AWS SDKs read it: `true` (any case) turns FIPS on; unset,
/// `false` or anything else leaves it off.
fn fips_requested(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The host to connect to instead of the configured ECR host: its FIPS twin when FIPS is
/// requested and the host is a standard ECR endpoint. A host that already is the FIPS endpoint,
/// or a non-ECR host (a loopback test registry with `auth_type: ecr`), is used as written.
fn fips_registry_endpoint(ecr_host: Option<&EcrHost>, fips: bool) -> Option<String> {
    match ecr_host {
        Some(host) if fips && !host.fips => Some(host.fips_host()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(yaml: &str) -> RegistryConfig {
        let config = Config::parse(&format!("registries:\n  r: {yaml}\n"), "test.yaml", |_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        config.registries["r"].clone()
    }

    #[test]
    fn the_host_decides_when_nothing_is_configured() {
        for (host, method) in [
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com", AuthMethod::Ecr { profile: None }),
            ("us-docker.pkg.dev", AuthMethod::Google),
            ("gcr.io", AuthMethod::Google),
            ("myreg.azurecr.io", AuthMethod::Azure),
            ("ghcr.io", AuthMethod::DockerConfig { required: false }),
            ("docker.io", AuthMethod::DockerConfig { required: false }),
        ] {
            assert_eq!(auth_method(host, None), method, "{host}");
        }
    }

    #[test]
    fn fips_is_on_only_for_true() {
        for value in ["true", "TRUE", "True", " true "] {
            assert!(fips_requested(Some(value)), "{value:?}");
        }
        for value in [None, Some("false"), Some(""), Some("1"), Some("yes")] {
            assert!(!fips_requested(value), "{value:?}");
        }
    }

    #[test]
    fn fips_switches_the_registry_host_to_its_fips_twin() {
        let standard = EcrHost::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap();
        assert_eq!(
            fips_registry_endpoint(Some(&standard), true).as_deref(),
            Some("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com")
        );
        assert_eq!(fips_registry_endpoint(Some(&standard), false), None, "no FIPS unless asked");
        let gov = EcrHost::parse("123456789012.dkr.ecr.us-gov-west-1.amazonaws.com").unwrap();
        assert_eq!(
            fips_registry_endpoint(Some(&gov), true).as_deref(),
            Some("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com")
        );
        let already = EcrHost::parse("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com").unwrap();
        assert_eq!(fips_registry_endpoint(Some(&already), true), None, "already the FIPS endpoint");
        assert_eq!(fips_registry_endpoint(None, true), None, "a non-ECR host is used as written");
    }

    #[tokio::test]
    async fn fips_switches_the_sdk_endpoint_and_the_region_comes_from_the_host() {
        let (sdk, host) = ecr_sdk_config_with("123456789012.dkr.ecr.eu-west-1.amazonaws.com", None, true).await;
        assert_eq!(sdk.use_fips(), Some(true));
        assert_eq!(sdk.region().map(ToString::to_string).as_deref(), Some("eu-west-1"));
        assert_eq!(host.map(|h| h.account).as_deref(), Some("123456789012"));
    }

    #[test]
    fn the_config_overrides_the_host() {
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        let anonymous = entry(&format!("{{ url: {host}, auth_type: anonymous }}"));
        assert_eq!(auth_method(host, Some(&anonymous)), AuthMethod::Anonymous);
        let profiled = entry("{ url: \"http://127.0.0.1:5000\", auth_type: ecr, aws_profile: vendor }");
        assert_eq!(auth_method("127.0.0.1:5000", Some(&profiled)), AuthMethod::Ecr { profile: Some("vendor".into()) });
        let basic = entry("{ url: ghcr.io, credentials: { username: u, password: p } }");
        assert!(matches!(auth_method("ghcr.io", Some(&basic)), AuthMethod::Static(Credentials::Basic { .. })));
    }
}
