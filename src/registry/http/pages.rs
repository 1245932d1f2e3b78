//! Paginated listings (tags, referrers): `GET` a URL, then each page its
//! `Link: <…>; rel="next"` header names, relative to the page that named it.

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue, LINK};
use url::Url;

use super::manifest::header;
use super::send::Call;
use super::{HttpRegistry, scope};
use crate::registry::{Error, Result};

/// One page of a listing: a page of 1000 tags is about 50 KiB, and registries that ignore
/// the page size (distribution) send every tag at once, which for the largest public
/// repositories is a few MiB.
const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;

impl HttpRegistry {
    /// The bodies of every page of a listing of `repository`, in order; `what` names it in
    /// errors (`tag list`), `accept` is sent as `Accept`.
    pub(super) async fn get_pages(
        &self,
        repository: &str,
        what: &str,
        first: Url,
        accept: Option<&'static str>,
    ) -> Result<Vec<Bytes>> {
        let mut pages = Vec::new();
        let mut url = first;
        loop {
            let mut headers = HeaderMap::new();
            if let Some(accept) = accept {
                headers.insert(ACCEPT, HeaderValue::from_static(accept));
            }
            let call = Call {
                method: Method::GET,
                url: url.clone(),
                repository,
                scopes: vec![scope(repository, false)],
                what: what.to_string(),
                headers,
                body: None,
                idempotent: true,
                streaming: false,
            };
            let response = self.send(&call).await?;
            let next = header(&response, LINK.as_str()).and_then(|link| next_link(&link));
            pages.push(self.read_body(response, repository, &call.action(), what, MAX_PAGE_BYTES).await?);
            match next {
                Some(next) => {
                    url = url.join(&next).map_err(|e| Error::Protocol {
                        registry: self.settings.name.clone(),
                        repository: repository.to_string(),
                        action: call.action(),
                        detail: format!("invalid Link header target {next:?}: {e}"),
                    })?
                }
                None => return Ok(pages),
            }
        }
    }
}

/// The target of `<…>; rel="next"` in a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn finds_the_next_page_in_a_link_header() {
        assert_eq!(
            next_link(r#"</v2/app/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/app/tags/list?n=2&last=b")
        );
        assert_eq!(
            next_link(r#"<https://x/a>; rel="prev", <https://x/b>; rel="next""#).as_deref(),
            Some("https://x/b")
        );
        assert_eq!(next_link(r#"</v2/app/tags/list?n=2&last=b>; rel="prev""#), None);
    }
}
