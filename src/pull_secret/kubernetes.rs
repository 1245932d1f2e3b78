//! Writing the pull secret through the Kubernetes API with `kube`: the client comes from
//! `KUBECONFIG` (or `~/.kube/config`), else the in-cluster service account. The Secret is
//! read, merged and written back with the `resourceVersion` it was read at, so a concurrent
//! writer makes the API answer 409 and the whole read-merge-write is repeated on fresh data.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

use super::SecretRef;
use super::dockerconfig;

/// The Secret type kubelet, CRI-O and OpenShift read pull credentials from.
pub const DOCKERCONFIGJSON_TYPE: &str = "kubernetes.io/dockerconfigjson";

/// Its data key.
pub const DOCKERCONFIGJSON_KEY: &str = ".dockerconfigjson";

/// Read-merge-write rounds before giving up on conflicts (each 409 means someone else wrote).
const MAX_ATTEMPTS: usize = 5;

/// Why the Secret could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable kubeconfig or in-cluster environment.
    #[error("cannot configure a Kubernetes client (KUBECONFIG, ~/.kube/config or in-cluster): {detail}")]
    Client {
        /// What kube said.
        detail: String,
    },
    /// The API answered with an error or could not be reached.
    #[error("cannot {action} Secret {secret}: {detail}")]
    Api {
        /// `read`, `create` or `update`.
        action: &'static str,
        /// `namespace/name`.
        secret: String,
        /// HTTP status, when the API answered.
        status: Option<u16>,
        /// What the API or the transport said.
        detail: String,
    },
    /// The existing Secret is not a dockerconfigjson Secret or holds a malformed document.
    #[error("Secret {secret} cannot be merged: {detail}")]
    Unmergeable {
        /// `namespace/name`.
        secret: String,
        /// Why.
        detail: String,
    },
    /// Every attempt met a concurrent write.
    #[error("Secret {secret} changed under every one of {MAX_ATTEMPTS} attempts (409 Conflict); try again")]
    Conflicts {
        /// `namespace/name`.
        secret: String,
    },
}

impl Error {
    /// The API refused our identity (401) or its permissions (403).
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Api { status: Some(401 | 403), .. })
    }
}

/// What happened to the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// It did not exist and was created.
    Created,
    /// It existed and was merged.
    Updated,
}

fn api_error(action: &'static str, secret: &SecretRef, error: kube::Error) -> Error {
    let (status, detail) = match &error {
        kube::Error::Api(response) => (Some(response.code), format!("{} ({})", response.message, response.reason)),
        other => (None, crate::text::error_chain(other)),
    };
    Error::Api { action, secret: secret.to_string(), status, detail }
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(response) if response.code == 409)
}

/// Writes `entries` (`(registry host, entry JSON)`) into the Secret, creating it if absent.
pub async fn write(secret: &SecretRef, entries: &[(String, String)]) -> Result<WriteOutcome, Error> {
    let client =
        kube::Client::try_default().await.map_err(|e| Error::Client { detail: crate::text::error_chain(&e) })?;
    let api: Api<Secret> = Api::namespaced(client, &secret.namespace);
    let unmergeable = |detail: String| Error::Unmergeable { secret: secret.to_string(), detail };
    for attempt in 1..=MAX_ATTEMPTS {
        let current = api.get_opt(&secret.name).await.map_err(|e| api_error("read", secret, e))?;
        let written = match current {
            None => {
                let document = dockerconfig::merge(None, entries).map_err(unmergeable)?;
                let fresh = Secret {
                    metadata: ObjectMeta {
                        name: Some(secret.name.clone()),
                        namespace: Some(secret.namespace.clone()),
                        ..Default::default()
                    },
                    type_: Some(DOCKERCONFIGJSON_TYPE.to_string()),
                    data: Some(BTreeMap::from([(DOCKERCONFIGJSON_KEY.to_string(), ByteString(document.into_bytes()))])),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &fresh)
                    .await
                    .map(|_| WriteOutcome::Created)
                    .map_err(|e| ("create", e))
            }
            Some(mut existing) => {
                if existing.type_.as_deref() != Some(DOCKERCONFIGJSON_TYPE) {
                    return Err(unmergeable(format!(
                        "its type is {:?}, not {DOCKERCONFIGJSON_TYPE}",
                        existing.type_.as_deref().unwrap_or("Opaque")
                    )));
                }
                let data = existing.data.get_or_insert_with(BTreeMap::new);
                let old = data.get(DOCKERCONFIGJSON_KEY).map(|bytes| bytes.0.as_slice());
                let document = dockerconfig::merge(old, entries).map_err(unmergeable)?;
                data.insert(DOCKERCONFIGJSON_KEY.to_string(), ByteString(document.into_bytes()));
                // `existing` carries the resourceVersion it was read at: the API refuses the
                // write with 409 if anyone wrote in between.
                api.replace(&secret.name, &PostParams::default(), &existing)
                    .await
                    .map(|_| WriteOutcome::Updated)
                    .map_err(|e| ("update", e))
            }
        };
        match written {
            Ok(outcome) => return Ok(outcome),
            Err((action, error)) if is_conflict(&error) => {
                tracing::warn!(%secret, action, attempt, "the Secret changed meanwhile (409); reading it again");
            }
            Err((action, error)) => return Err(api_error(action, secret, error)),
        }
    }
    Err(Error::Conflicts { secret: secret.to_string() })
}
