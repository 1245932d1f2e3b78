//! Request URLs, built in one place: `/v2/<repository>/<route>` from percent-encoded path
//! segments, never by joining strings.
//!
//! Names a registry sends (tags from a tag list, digests from an index) end up in these paths,
//! so each is checked against the OCI grammar first and then encoded as one segment: a tag
//! such as `../../v2/other/manifests/latest` is refused rather than resolved into another
//! repository's path. As defence in depth the finished URL is checked again: its path must
//! still be `/v2/<repository>/…` with no dot segment and no encoded separator, whatever the
//! grammar checks let through.

use url::Url;

use super::HttpRegistry;
use crate::oci::{Digest, validate_repository, validate_tag};
use crate::registry::{Error, Result};

/// What a request acts on inside a repository.
#[derive(Debug, Clone, Copy)]
pub(super) enum Route<'a> {
    /// `manifests/<tag or digest>`.
    Manifest(&'a str),
    /// `blobs/<digest>`.
    Blob(&'a Digest),
    /// `blobs/uploads/` (a new upload session, or a mount).
    Uploads,
    /// `tags/list`.
    TagList,
    /// `referrers/<digest>`.
    Referrers(&'a Digest),
}

impl Route<'_> {
    /// The path segments after `/v2/<repository>/`, or why a reference cannot be one.
    fn segments(self) -> std::result::Result<Vec<String>, String> {
        Ok(match self {
            Route::Manifest(reference) => {
                check_reference(reference)?;
                vec!["manifests".into(), reference.to_string()]
            }
            Route::Blob(digest) => vec!["blobs".into(), digest.to_string()],
            // The trailing empty segment keeps the slash registries expect (`uploads/`).
            Route::Uploads => vec!["blobs".into(), "uploads".into(), String::new()],
            Route::TagList => vec!["tags".into(), "list".into()],
            Route::Referrers(digest) => vec!["referrers".into(), digest.to_string()],
        })
    }
}

/// A manifest reference must be a tag or a digest: nothing else may become a path segment.
fn check_reference(reference: &str) -> std::result::Result<(), String> {
    if reference.contains(':') {
        return reference.parse::<Digest>().map(drop).map_err(|e| e.to_string());
    }
    validate_tag(reference).map_err(|reason| format!("tag {reference:?} {reason}"))
}

/// `base` + `/v2/<repository>/<route>`, each segment percent-encoded; refused when a name is
/// not in the OCI grammar or the result would leave `/v2/<repository>/`.
pub(super) fn build(base: &Url, repository: &str, route: Route<'_>) -> std::result::Result<Url, String> {
    validate_repository(repository).map_err(|reason| format!("repository {repository:?} {reason}"))?;
    let tail = route.segments()?;
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| "the registry address cannot carry a path".to_string())?
        .clear()
        .push("v2")
        .extend(repository.split('/'))
        .extend(&tail);
    if !stays_under(&url, repository) {
        return Err(format!("the request path {:?} would leave /v2/{repository}/", url.path()));
    }
    Ok(url)
}

/// Whether `url`'s path is `/v2/<repository>/` followed by at least one segment, none of them
/// a dot segment (plain or percent-encoded) nor hiding an encoded `/` or `\`, and the URL has
/// no fragment. Servers and proxies that decode before routing would otherwise see another path.
pub(super) fn stays_under(url: &Url, repository: &str) -> bool {
    let Some(mut segments) = url.path_segments() else { return false };
    if url.fragment().is_some() || segments.next() != Some("v2") {
        return false;
    }
    if !repository.split('/').all(|component| segments.next() == Some(component)) {
        return false;
    }
    let rest: Vec<&str> = segments.collect();
    let last = rest.len().saturating_sub(1);
    !rest.is_empty()
        && !rest[0].is_empty()
        && rest.iter().enumerate().all(|(at, segment)| {
            let lower = segment.to_ascii_lowercase();
            let decoded_dots = lower.replace("%2e", ".");
            (at == last || !segment.is_empty())
                && decoded_dots != "."
                && decoded_dots != ".."
                && !lower.contains("%2f")
                && !lower.contains("%5c")
        })
}

impl HttpRegistry {
    /// The URL of `route` in `repository` at this registry, or an error naming both when a
    /// name is unsafe to put in a path (see the module docs).
    pub(super) fn route_url(&self, repository: &str, route: Route<'_>) -> Result<Url> {
        build(&self.base, repository, route).map_err(|reason| Error::UnsafeName {
            registry: self.settings.name.clone(),
            repository: repository.to_string(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn base() -> Url {
        Url::parse("https://registry.test/").unwrap()
    }

    fn digest() -> Digest {
        DIGEST.parse().unwrap()
    }

    #[test]
    fn every_route_lands_under_its_repository() {
        fn url(route: Route<'_>) -> String {
            build(&base(), "team/app", route).unwrap().to_string()
        }
        let digest = digest();
        assert_eq!(url(Route::Manifest("v1.2_rc-3")), "https://registry.test/v2/team/app/manifests/v1.2_rc-3");
        assert_eq!(url(Route::Manifest(DIGEST)), format!("https://registry.test/v2/team/app/manifests/{DIGEST}"));
        assert_eq!(url(Route::Blob(&digest)), format!("https://registry.test/v2/team/app/blobs/{DIGEST}"));
        assert_eq!(url(Route::Uploads), "https://registry.test/v2/team/app/blobs/uploads/");
        assert_eq!(url(Route::TagList), "https://registry.test/v2/team/app/tags/list");
        assert_eq!(url(Route::Referrers(&digest)), format!("https://registry.test/v2/team/app/referrers/{DIGEST}"));
    }

    #[test]
    fn a_registry_with_a_path_prefix_still_gets_v2_at_the_root() {
        let prefixed = Url::parse("http://127.0.0.1:5000/ignored/?q=1#f").unwrap();
        let url = build(&prefixed, "app", Route::TagList).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:5000/v2/app/tags/list");
    }

    #[test]
    fn tags_that_are_really_paths_are_refused_naming_the_tag() {
        for tag in [
            "..",
            ".",
            "%2e%2e",
            "%2E%2E",
            "../../v2/other/manifests/latest",
            "a/b",
            "latest?x=1",
            "latest#frag",
            "..%2f..%2fother",
            "",
            "-leading-dash",
            "tab\there",
            &"x".repeat(129),
        ] {
            let error = build(&base(), "app", Route::Manifest(tag)).expect_err(tag);
            assert!(error.contains("tag"), "{tag:?}: {error}");
        }
    }

    #[test]
    fn malformed_digests_and_repositories_are_refused() {
        for reference in ["sha256:../../other", "sha256:ABC", "md5:0123", "sha256:"] {
            let error = build(&base(), "app", Route::Manifest(reference)).expect_err(reference);
            assert!(error.contains("invalid digest"), "{reference}: {error}");
        }
        for repository in ["../other", "app/..", "app/../other", "App", "a//b", "a?b", "a#b", "a%2fb", ""] {
            let error = build(&base(), repository, Route::TagList).expect_err(repository);
            assert!(error.contains("repository"), "{repository}: {error}");
        }
    }

    #[test]
    fn a_built_url_that_leaves_the_repository_is_caught_after_the_fact() {
        // What the grammar checks prevent, checked again on finished URLs (servers that decode
        // `%2e%2e` or `%2f` before routing would see another path).
        for raw in [
            "https://r/v2/app/manifests/../../other/manifests/latest",
            "https://r/v2/app/manifests/%2e%2e/%2e%2e/other/manifests/latest",
            "https://r/v2/app/manifests/.%2E",
            "https://r/v2/app/manifests/a%2Fb",
            "https://r/v2/app/manifests/a%5cb",
            "https://r/v2/app/manifests/latest#frag",
            "https://r/v2/app/",
            "https://r/v2/app",
            "https://r/v2/other/manifests/latest",
            "https://r/v2/application/manifests/latest",
            "https://r/v2/app//manifests",
        ] {
            assert!(!stays_under(&Url::parse(raw).unwrap(), "app"), "{raw}");
        }
        assert!(stays_under(&Url::parse("https://r/v2/app/manifests/latest?n=1").unwrap(), "app"));
        assert!(stays_under(&Url::parse("https://r/v2/team/app/blobs/uploads/").unwrap(), "team/app"));
    }

    #[test]
    fn the_error_names_the_registry_and_repository() {
        let registry = HttpRegistry::new(crate::registry::RegistrySettings::new("registry.test")).unwrap();
        let error = registry.route_url("mirror/app", Route::Manifest("../../v2/other/manifests/latest")).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("registry.test") && text.contains("mirror/app"), "{text}");
        assert!(text.contains("../../v2/other/manifests/latest"), "{text}");
        assert!(!error.is_retryable() && !error.is_auth() && !error.is_not_found());
    }
}
