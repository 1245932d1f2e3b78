//! Registries that lie, for tests that ocync contains them: rules for the fault proxy
//! ([`super::proxy`]) that answer tag lists with names that are really paths, or with `Link`
//! headers that never end or loop back. In front of a real registry they lie about tag lists
//! only and forward the rest; [`LyingTagServer::standalone`] answers nothing else.

use super::proxy::{Action, FaultProxy, SeenRequest};

/// How a hostile tag list paginates.
#[derive(Debug, Clone, Copy)]
pub enum Pages {
    /// Every page holds `page_size` new tags and links to a new URL, for ever.
    Endless {
        /// Tags per page (0: empty pages).
        page_size: usize,
    },
    /// Pages 0, 1, … `pages - 1`, the last one linking back to the first URL.
    LoopBack {
        /// Distinct pages before the loop.
        pages: usize,
    },
}

/// A server that lies about tag lists: the fault proxy with a lying rule (the registry front
/// that lies about sizes and bodies is [`super::hostile::HostileRegistry`]).
pub struct LyingTagServer {
    /// The proxy clients talk to.
    pub proxy: FaultProxy,
}

impl LyingTagServer {
    /// A server with no registry behind it: the tag list of `repository` is answered as
    /// `pages` says, everything else with 404.
    pub fn standalone(repository: &str, pages: Pages) -> Self {
        let repository = repository.to_string();
        let rule = move |request: &SeenRequest| {
            paged_tags(request, &repository, pages).unwrap_or_else(|| Action::Respond {
                status: 404,
                headers: Vec::new(),
                body: r#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#.into(),
            })
        };
        // Port 9 (discard) is never dialled: the rule answers every request itself.
        LyingTagServer { proxy: FaultProxy::start("127.0.0.1:9", rule) }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.proxy.host
    }

    /// Requests that reached it.
    pub fn requests(&self) -> usize {
        self.proxy.seen().len()
    }
}

/// The tag-list path of `repository`.
fn tags_path(repository: &str) -> String {
    format!("/v2/{repository}/tags/list")
}

/// Answers `GET /v2/<repository>/tags/list` with `tags` as given (names that are paths
/// included, verbatim in the JSON), `None` for any other request.
pub fn lying_tag_list(request: &SeenRequest, repository: &str, tags: &[&str]) -> Option<Action> {
    let path = request.target.split('?').next().unwrap_or_default();
    if request.method != "GET" || path != tags_path(repository) {
        return None;
    }
    let body = serde_json::json!({ "name": repository, "tags": tags }).to_string();
    Some(Action::Respond { status: 200, headers: vec![("Content-Type".into(), "application/json".into())], body })
}

/// Answers `GET /v2/<repository>/tags/list?…` page by page as `pages` says (the page number
/// travels in `last`), `None` for any other request.
pub fn paged_tags(request: &SeenRequest, repository: &str, pages: Pages) -> Option<Action> {
    let (path, query) = request.target.split_once('?').unwrap_or((&request.target, ""));
    if request.method != "GET" || path != tags_path(repository) {
        return None;
    }
    let page: usize = url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "last")
        .and_then(|(_, value)| value.strip_prefix("page").and_then(|n| n.parse().ok()))
        .map_or(0, |n: usize| n + 1);
    let (size, next) = match pages {
        Pages::Endless { page_size } => (page_size, format!("{path}?n=1000&last=page{page}")),
        // The first URL ocync asks for is `?n=1000`; the last page links back to exactly it.
        Pages::LoopBack { pages } if page + 1 >= pages => (2, format!("{path}?n=1000")),
        Pages::LoopBack { .. } => (2, format!("{path}?n=1000&last=page{page}")),
    };
    let tags: Vec<String> = (0..size).map(|i| format!("p{page}-t{i}")).collect();
    let body = serde_json::json!({ "name": repository, "tags": tags }).to_string();
    let headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        ("Link".to_string(), format!("<{next}>; rel=\"next\"")),
    ];
    Some(Action::Respond { status: 200, headers, body })
}
