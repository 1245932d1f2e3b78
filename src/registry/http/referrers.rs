//! The OCI 1.1 referrers API: `GET /v2/<name>/referrers/<digest>`, with `artifactType`
//! filtering and `Link` pagination. A 404 means the registry has no such API (distribution
//! 2.8 answers so); callers then use the fallback tag schema. Other refusals (400, 405, 501,
//! a 401/403 on this route alone) come back as errors, classified by the caller, which can
//! check whether the credentials work elsewhere.

use super::HttpRegistry;
use super::route::Route;
use crate::oci::{Digest, Referrer, media_type, parse_index};
use crate::registry::{Error, Result};

impl HttpRegistry {
    pub(super) async fn list_referrers_impl(
        &self,
        repository: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Referrer>>> {
        let mut url = self.route_url(repository, Route::Referrers(subject))?;
        if let Some(artifact_type) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", artifact_type);
        }
        let what = format!("referrers of {subject}");
        let parse = |page: &[u8]| {
            parse_index(page).map_err(|source| Error::Manifest {
                registry: self.settings.name.clone(),
                repository: repository.to_string(),
                reference: what.clone(),
                source: Box::new(source),
            })
        };
        match self.get_pages(repository, &what, url, Some(media_type::OCI_INDEX), parse).await {
            Ok(referrers) => Ok(Some(referrers)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }
}
