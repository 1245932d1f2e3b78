//! `ocync pull-secret`: ECR authorization tokens (12 hours) for the registries named, or every
//! ECR target of a config, written into a `kubernetes.io/dockerconfigjson` Secret so a
//! cluster can pull from the mirror. Tokens come from the same code as `sync`'s
//! ([`crate::connect::ecr_sdk_config`] + [`EcrTokenProvider`]: ambient AWS chain,
//! `aws_profile`, FIPS endpoints); the Secret is created if absent, otherwise merged (see
//! [`dockerconfig`]) under optimistic concurrency (see [`kubernetes`]).

pub mod dockerconfig;
pub mod kubernetes;

use crate::config::Config;
use crate::connect::{AuthMethod, auth_method, ecr_sdk_config};
use crate::registry::auth::{CredentialSource, Credentials};
use crate::registry::ecr::EcrTokenProvider;

/// Why `pull-secret` failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--registry` that is not ECR.
    #[error("{registry} is not an ECR registry (an ECR host name, or auth_type: ecr in the config)")]
    NotEcr {
        /// The host given.
        registry: String,
    },
    /// Nothing to write.
    #[error("no ECR registry to write: name one with --registry, or give a --config whose targets include ECR")]
    NoRegistries,
    /// `--secret` is not `NAMESPACE/NAME`.
    #[error("--secret {given:?}: expected NAMESPACE/NAME")]
    SecretName {
        /// What was given.
        given: String,
    },
    /// The token could not be obtained.
    #[error("cannot obtain an ECR token for {registry}: {detail}")]
    Token {
        /// The registry host.
        registry: String,
        /// Why (without secrets).
        detail: String,
    },
    /// The Kubernetes API refused or failed.
    #[error("{0}")]
    Kubernetes(#[from] kubernetes::Error),
}

impl Error {
    /// Authentication failed (at AWS or at the Kubernetes API): exit code 4.
    pub fn is_auth(&self) -> bool {
        match self {
            Error::Token { .. } => true,
            Error::Kubernetes(error) => error.is_auth(),
            _ => false,
        }
    }

    /// Bad arguments or config: exit code 3.
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::NotEcr { .. } | Error::NoRegistries | Error::SecretName { .. })
    }
}

/// The Secret to write, from `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::str::FromStr for SecretRef {
    type Err = Error;

    fn from_str(given: &str) -> Result<Self, Error> {
        let invalid = || Error::SecretName { given: given.to_string() };
        let (namespace, name) = given.split_once('/').ok_or_else(invalid)?;
        let dns = |part: &str| {
            !part.is_empty()
                && part.len() <= 253
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if dns(namespace) && dns(name) && !namespace.contains('.') {
            Ok(SecretRef { namespace: namespace.to_string(), name: name.to_string() })
        } else {
            Err(invalid())
        }
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One ECR registry to write, with the AWS profile its config entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrRegistry {
    /// `host[:port]`, the key under `auths`.
    pub host: String,
    /// `aws_profile` of its config entry.
    pub profile: Option<String>,
}

/// The registries to write: each `named` host (which must be ECR by name or by its config
/// entry), else every target registry of the config that authenticates with ECR.
pub fn registries(named: &[String], config: Option<&Config>) -> Result<Vec<EcrRegistry>, Error> {
    let resolve = |host: &str| match auth_method(host, config.and_then(|c| c.registry_for_host(host))) {
        AuthMethod::Ecr { profile } => Some(EcrRegistry { host: host.to_string(), profile }),
        _ => None,
    };
    let mut found: Vec<EcrRegistry> = Vec::new();
    if named.is_empty() {
        let targets =
            config.into_iter().flat_map(|c| c.mappings.iter().flat_map(|m| &m.targets).map(|t| &c.registries[t]));
        for registry in targets.filter_map(|entry| resolve(&entry.host)) {
            if !found.contains(&registry) {
                found.push(registry);
            }
        }
    } else {
        for host in named {
            let registry = resolve(host).ok_or_else(|| Error::NotEcr { registry: host.clone() })?;
            if !found.contains(&registry) {
                found.push(registry);
            }
        }
    }
    if found.is_empty() { Err(Error::NoRegistries) } else { Ok(found) }
}

/// `(host, entry JSON)` for each registry: a fresh token from `GetAuthorizationToken`.
pub async fn entries(registries: &[EcrRegistry]) -> Result<Vec<(String, String)>, Error> {
    let mut entries = Vec::new();
    for registry in registries {
        let token_error = |detail: String| Error::Token { registry: registry.host.clone(), detail };
        let (sdk, _) = ecr_sdk_config(&registry.host, registry.profile.as_deref()).await;
        let credentials = CredentialSource::provided(EcrTokenProvider::new(&sdk))
            .current()
            .await
            .map_err(|e| token_error(e.to_string()))?;
        let Credentials::Basic { username, password } = credentials else {
            return Err(token_error("the token is not user:password".into()));
        };
        tracing::info!(registry = %registry.host, "ECR token obtained");
        entries.push((registry.host.clone(), dockerconfig::entry(&username, password.expose())));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            "registries:\n  up: { url: quay.io }\n  ecr: { url: 123456789012.dkr.ecr.us-east-1.amazonaws.com }\n  vendor: { url: \"http://127.0.0.1:5000\", auth_type: ecr, aws_profile: vendor }\n  gar: { url: us-docker.pkg.dev }\n\
             defaults: { source: up, targets: [ecr, gar, vendor] }\nmappings:\n  - from: a\n  - from: b\n",
            "test.yaml",
            |_| None,
        )
        .unwrap()
    }

    #[test]
    fn every_ecr_target_of_the_config_is_written_once_with_its_profile() {
        let found = registries(&[], Some(&config())).unwrap();
        assert_eq!(
            found,
            [
                EcrRegistry { host: "123456789012.dkr.ecr.us-east-1.amazonaws.com".into(), profile: None },
                EcrRegistry { host: "127.0.0.1:5000".into(), profile: Some("vendor".into()) },
            ]
        );
    }

    #[test]
    fn named_registries_must_be_ecr() {
        let fips = "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com".to_string();
        assert_eq!(registries(std::slice::from_ref(&fips), None).unwrap()[0].host, fips);
        let error = registries(&["quay.io".into()], Some(&config())).unwrap_err();
        assert_eq!(
            error.to_string(),
            "quay.io is not an ECR registry (an ECR host name, or auth_type: ecr in the config)"
        );
        assert!(matches!(registries(&[], None), Err(Error::NoRegistries)));
    }

    #[test]
    fn secret_names_are_namespace_slash_name() {
        let parsed: SecretRef = "openshift-config/pull-secret".parse().unwrap();
        assert_eq!((parsed.namespace.as_str(), parsed.name.as_str()), ("openshift-config", "pull-secret"));
        for bad in ["pull-secret", "a/b/c", "Ns/x", "/x", "ns/"] {
            assert!(bad.parse::<SecretRef>().is_err(), "{bad}");
        }
    }
}
