//! Builds registry clients: settings from the config entry for a host (if any), credentials
//! from the entry, else from docker's `config.json`, else anonymous.

use crate::config::{AuthType, Config, RegistryConfig};
use crate::registry::auth::{Credentials, Secret, docker_config_lookup};
use crate::registry::{Error, HttpRegistry, RegistrySettings};

/// A client for the registry `host` (as written in a reference). `plain_http` comes from an
/// `http://` prefix on the reference; the config entry can also ask for it.
pub async fn open(host: &str, plain_http: bool, config: Option<&Config>) -> Result<HttpRegistry, Error> {
    let entry = config.and_then(|c| c.registry_for_host(host));
    let mut settings = RegistrySettings::new(host);
    if let Some(config) = config {
        settings.timeout = config.global.timeout;
        settings.idle_timeout = config.global.idle_timeout;
    }
    settings.plain_http = plain_http || entry.is_some_and(|e| e.plain_http);
    if let Some(entry) = entry {
        settings.ca_file = entry.ca_file.clone();
        settings.upload = entry.upload;
    }
    settings.credentials = credentials(host, entry).await?.into();
    HttpRegistry::new(settings)
}

async fn credentials(host: &str, entry: Option<&RegistryConfig>) -> Result<Credentials, Error> {
    let setup = |detail: String| Error::Setup { registry: host.to_string(), detail };
    let from_docker = || async { docker_config_lookup(host).await.map_err(|e| setup(e.to_string())) };
    let basic = |entry: &RegistryConfig| {
        entry
            .credentials
            .as_ref()
            .map(|c| Credentials::Basic { username: c.username.clone(), password: Secret::new(c.password.clone()) })
    };
    let Some(entry) = entry else {
        return Ok(from_docker().await?.unwrap_or_default());
    };
    match entry.auth_type {
        Some(AuthType::Anonymous) => Ok(Credentials::Anonymous),
        Some(AuthType::Basic) => basic(entry).ok_or_else(|| setup("auth_type basic without credentials".into())),
        Some(AuthType::StaticToken) => entry
            .token
            .as_ref()
            .map(|t| Credentials::Bearer(Secret::new(t.clone())))
            .ok_or_else(|| setup("auth_type static_token without a token".into())),
        Some(AuthType::DockerConfig) => from_docker().await?.ok_or_else(|| {
            setup(format!("auth_type docker_config, but docker's config.json has no credentials for {host}"))
        }),
        Some(kind @ (AuthType::Ecr | AuthType::Gar | AuthType::Gcr)) => {
            Err(setup(format!("auth_type {kind:?} is not implemented yet; use docker_config with a credential helper")))
        }
        None => match (basic(entry), &entry.token) {
            (Some(credentials), _) => Ok(credentials),
            (None, Some(token)) => Ok(Credentials::Bearer(Secret::new(token.clone()))),
            (None, None) => Ok(from_docker().await?.unwrap_or_default()),
        },
    }
}
