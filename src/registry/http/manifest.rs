//! Manifest and tag endpoints: `HEAD`/`GET`/`PUT /v2/<name>/manifests/<reference>` and
//! `GET /v2/<name>/tags/list` with `Link` pagination.

use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Response};

use super::route::Route;
use super::send::Call;
use super::{HttpRegistry, scope};
use crate::oci::{Digest, Manifest, ManifestHead, media_type};
use crate::registry::{Error, Result};

/// The header registries use to report a manifest's digest.
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
/// Manifests larger than this are refused (distribution's own limit is 4 MiB).
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Page size asked for when listing tags.
const TAGS_PAGE: usize = 1000;

impl HttpRegistry {
    fn manifest_call<'a>(&self, method: Method, repository: &'a str, reference: &str, push: bool) -> Result<Call<'a>> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(media_type::ACCEPT_MANIFESTS));
        Ok(Call {
            method,
            url: self.route_url(repository, Route::Manifest(reference))?,
            repository,
            scopes: vec![scope(repository, push)],
            what: format!("manifest {reference}"),
            headers,
            body: None,
            idempotent: true,
            streaming: false,
        })
    }

    pub(super) async fn head_manifest_impl(&self, repository: &str, reference: &str) -> Result<Option<ManifestHead>> {
        let call = self.manifest_call(Method::HEAD, repository, reference, false)?;
        let response = match self.send(&call).await {
            Ok(response) => response,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        };
        let media_type = header(&response, CONTENT_TYPE.as_str()).unwrap_or_default();
        let size = header(&response, CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok()).unwrap_or(0);
        let digest = match header(&response, DOCKER_CONTENT_DIGEST).map(|d| d.parse::<Digest>()) {
            Some(Ok(digest)) => digest,
            // Some registries omit the digest on HEAD: fall back to fetching the bytes.
            _ => {
                let manifest = self.get_manifest_impl(repository, reference).await?;
                return Ok(Some(ManifestHead {
                    digest: manifest.digest,
                    media_type: manifest.media_type,
                    size: manifest.bytes.len() as u64,
                }));
            }
        };
        Ok(Some(ManifestHead { digest, media_type, size }))
    }

    pub(super) async fn get_manifest_impl(&self, repository: &str, reference: &str) -> Result<Manifest> {
        let call = self.manifest_call(Method::GET, repository, reference, false)?;
        let response = self.send(&call).await?;
        let content_type = header(&response, CONTENT_TYPE.as_str());
        let announced = header(&response, DOCKER_CONTENT_DIGEST).and_then(|d| d.parse::<Digest>().ok());
        let expected = reference.parse::<Digest>().ok().or(announced);
        // Refused on its Content-Length, or read only up to one byte past the cap: a hostile
        // registry's gigabyte never reaches memory.
        let bytes = self.read_body(response, repository, &call.action(), "manifest", MAX_MANIFEST_BYTES).await?;
        Manifest::from_served(bytes, content_type.as_deref(), expected.as_ref()).map_err(|source| Error::Manifest {
            registry: self.settings.name.clone(),
            repository: repository.to_string(),
            reference: reference.to_string(),
            source: Box::new(source),
        })
    }

    pub(super) async fn put_manifest_impl(&self, repository: &str, reference: &str, manifest: &Manifest) -> Result<()> {
        self.prepare_push(repository).await?;
        let mut call = self.manifest_call(Method::PUT, repository, reference, true)?;
        call.headers.remove(ACCEPT);
        let content_type = HeaderValue::from_str(&manifest.media_type).map_err(|_| Error::Protocol {
            registry: self.settings.name.clone(),
            repository: repository.to_string(),
            action: call.action(),
            detail: format!("media type {:?} is not a valid header value", manifest.media_type),
        })?;
        call.headers.insert(CONTENT_TYPE, content_type);
        call.body = Some(manifest.bytes.clone());
        let response = match self.send(&call).await {
            Ok(response) => response,
            Err(error) if reference.parse::<Digest>().is_err() => return Err(error.for_tag_push(reference)),
            Err(error) => return Err(error),
        };
        match header(&response, DOCKER_CONTENT_DIGEST).map(|d| d.parse::<Digest>()) {
            Some(Ok(stored)) if stored != manifest.digest => Err(Error::Protocol {
                registry: self.settings.name.clone(),
                repository: repository.to_string(),
                action: call.action(),
                detail: format!("registry stored digest {stored}, expected {}", manifest.digest),
            }),
            _ => Ok(()),
        }
    }

    pub(super) async fn list_tags_impl(&self, repository: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let mut url = self.route_url(repository, Route::TagList)?;
        url.query_pairs_mut().append_pair("n", &TAGS_PAGE.to_string());
        let parse = |page: &[u8]| {
            let page: TagList = serde_json::from_slice(page).map_err(|e| Error::Protocol {
                registry: self.settings.name.clone(),
                repository: repository.to_string(),
                action: "GET tag list".to_string(),
                detail: format!("malformed tag list: {e}"),
            })?;
            Ok(page.tags.unwrap_or_default())
        };
        self.get_pages(repository, "tag list", url, None, parse).await
    }
}

pub(super) fn header(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}
