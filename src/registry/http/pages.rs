//! Paginated listings (tags, referrers): `GET` a URL, then each page its
//! `Link: <…>; rel="next"` header names, relative to the page that named it.

use std::collections::HashSet;

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
/// Pages one listing may have. Registries serve up to 1,000 entries a page (ECR, GHCR, Docker
/// Hub; ocync asks for 1,000), so 10,000 pages hold the entry cap below even from a registry
/// that pages ten times smaller; a listing still going after that is not a real repository.
pub(super) const MAX_PAGES: usize = 10_000;
/// Entries (tags, referrers) one listing may have. The largest public repositories hold tens
/// of thousands of tags; a million is far beyond them and still bounds memory (tags are at
/// most 128 bytes, so about 150 MB in the worst case).
pub(super) const MAX_ENTRIES: usize = 1_000_000;

/// The bounds one listing is held to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub pages: usize,
    pub entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { pages: MAX_PAGES, entries: MAX_ENTRIES }
    }
}

/// Where a listing stands: the URLs fetched so far and the entries gathered. Says why the
/// listing must stop when a registry's `Link`s would go on for ever or loop.
struct Progress {
    limits: Limits,
    fetched: HashSet<Url>,
    entries: usize,
}

impl Progress {
    fn new(limits: Limits) -> Self {
        Progress { limits, fetched: HashSet::new(), entries: 0 }
    }

    /// Records that `url` is about to be fetched; an error when it was fetched before or the
    /// page cap is reached.
    fn fetch(&mut self, url: &Url) -> Result<(), String> {
        if self.fetched.contains(url) {
            return Err(format!("its Link header leads back to a page already fetched ({})", url.path()));
        }
        if self.fetched.len() >= self.limits.pages {
            return Err(format!("the listing goes on past {} pages", self.limits.pages));
        }
        self.fetched.insert(url.clone());
        Ok(())
    }

    /// Counts a page's entries; an error past the entry cap.
    fn add(&mut self, entries: usize) -> Result<(), String> {
        self.entries = self.entries.saturating_add(entries);
        if self.entries > self.limits.entries {
            return Err(format!("the listing has more than {} entries", self.limits.entries));
        }
        Ok(())
    }
}

impl HttpRegistry {
    /// Every entry of a listing of `repository`, page after page, each page's body turned into
    /// entries by `parse`; `what` names it in errors (`tag list`), `accept` is sent as
    /// `Accept`. Held to [`MAX_PAGES`] and [`MAX_ENTRIES`], and a `Link` back to a page
    /// already fetched ends it with an error, so a registry cannot keep a listing going.
    pub(super) async fn get_pages<T>(
        &self,
        repository: &str,
        what: &str,
        first: Url,
        accept: Option<&'static str>,
        parse: impl Fn(&[u8]) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let endless = |detail: String| Error::Protocol {
            registry: self.settings.name.clone(),
            repository: repository.to_string(),
            action: format!("GET {what}"),
            detail,
        };
        let mut progress = Progress::new(Limits::default());
        let mut entries = Vec::new();
        let mut url = first;
        loop {
            progress.fetch(&url).map_err(endless)?;
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
            let page = self.read_body(response, repository, &call.action(), what, MAX_PAGE_BYTES).await?;
            let page = parse(&page)?;
            progress.add(page.len()).map_err(endless)?;
            entries.extend(page);
            match next {
                Some(next) => {
                    url = url.join(&next).map_err(|e| Error::Protocol {
                        registry: self.settings.name.clone(),
                        repository: repository.to_string(),
                        action: call.action(),
                        detail: format!("invalid Link header target {next:?}: {e}"),
                    })?
                }
                None => return Ok(entries),
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
    use super::{Limits, Progress, next_link};
    use url::Url;

    fn page(n: usize) -> Url {
        Url::parse(&format!("https://r/v2/app/tags/list?n=2&last={n}")).unwrap()
    }

    #[test]
    fn a_link_back_to_a_page_already_fetched_ends_the_listing() {
        let mut progress = Progress::new(Limits::default());
        for n in 0..3 {
            progress.fetch(&page(n)).unwrap();
        }
        let error = progress.fetch(&page(1)).unwrap_err();
        assert!(error.contains("already fetched"), "{error}");
    }

    #[test]
    fn pages_and_entries_are_capped() {
        let mut progress = Progress::new(Limits { pages: 3, entries: 5 });
        for n in 0..3 {
            progress.fetch(&page(n)).unwrap();
        }
        let error = progress.fetch(&page(3)).unwrap_err();
        assert!(error.contains("past 3 pages"), "{error}");

        let mut progress = Progress::new(Limits { pages: 3, entries: 5 });
        progress.add(5).unwrap();
        let error = progress.add(1).unwrap_err();
        assert!(error.contains("more than 5 entries"), "{error}");
        assert!(progress.add(usize::MAX).is_err(), "no overflow on absurd counts");
    }

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
