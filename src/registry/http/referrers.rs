//! The OCI 1.1 referrers API: `GET /v2/<name>/referrers/<digest>`, with `artifactType`
//! filtering and `Link` pagination. A 404 means the registry has no such API (distribution
//! 2.8 answers so); callers then use the fallback tag schema.

use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue, LINK};

use super::manifest::{header, next_link};
use super::send::Call;
use super::{HttpRegistry, scope};
use crate::oci::{Digest, Referrer, media_type, parse_index};
use crate::registry::{Error, Result};

impl HttpRegistry {
    pub(super) async fn list_referrers_impl(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Referrer>>> {
        let mut url = self.url(&format!("v2/{repository}/referrers/{subject}"));
        if let Some(artifact_type) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", artifact_type);
        }
        let mut referrers = Vec::new();
        loop {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_static(media_type::OCI_INDEX));
            let call = Call {
                method: Method::GET,
                url: url.clone(),
                repository,
                scopes: vec![scope(repository, false)],
                what: format!("referrers of {subject}"),
                headers,
                body: None,
                idempotent: true,
                streaming: false,
            };
            let response = match self.send(&call).await {
                Ok(response) => response,
                Err(error) if error.is_not_found() && referrers.is_empty() => return Ok(None),
                Err(error) => return Err(error),
            };
            let next = header(&response, LINK.as_str()).and_then(|link| next_link(&link));
            let bytes = response.bytes().await.map_err(|e| self.network_error(repository, &call.action(), e))?;
            let page = parse_index(&bytes).map_err(|source| Error::Manifest {
                registry: self.settings.name.clone(),
                repository: repository.to_string(),
                reference: format!("referrers of {subject}"),
                source: Box::new(source),
            })?;
            referrers.extend(page);
            match next {
                Some(next) => {
                    url = url.join(&next).map_err(|e| Error::Protocol {
                        registry: self.settings.name.clone(),
                        repository: repository.to_string(),
                        action: call.action(),
                        detail: format!("invalid Link header target {next:?}: {e}"),
                    })?
                }
                None => return Ok(Some(referrers)),
            }
        }
    }
}
