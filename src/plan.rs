//! Planning: which tags a mapping keeps, and for each kept tag which targets need the image.
//! The plan is what `--dry-run` prints, and what execution follows. This file holds the plan
//! and its pure rules; [`discover`] (the module) asks the registries.

mod discover;

use serde::{Deserialize, Serialize};

use crate::config::Mapping;
use crate::filter::{DropReason, Dropped, Selection};
use crate::oci::{Digest, is_referrer_tag};

pub use discover::{Shared, discover, discover_mapping};

/// The plan of a whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// One entry per mapping, in config order.
    pub mappings: Vec<MappingPlan>,
}

/// What to do for one mapping.
#[derive(Debug, Clone, Serialize)]
pub struct MappingPlan {
    /// Position in the config's `mappings`.
    pub index: usize,
    /// `from -> to`.
    pub key: String,
    /// Source registry name.
    pub source: String,
    /// Source repository.
    pub from: String,
    /// Target repository.
    pub to: String,
    /// Tags the filter kept, newest first when sorted.
    pub kept: Vec<String>,
    /// Tags the filter dropped, with reasons.
    pub dropped: Vec<Dropped>,
    /// Tags the source listed that are not valid OCI tags (names that could be paths):
    /// dropped before filtering, and they make the run exit 1.
    pub invalid_tags: usize,
    /// One entry per kept tag.
    pub images: Vec<ImagePlan>,
    /// Why the mapping cannot run (tag listing failed, too few tags, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

/// What to do for one tag.
#[derive(Debug, Clone, Serialize)]
pub struct ImagePlan {
    /// The tag (same at source and targets).
    pub tag: String,
    /// The source digest.
    pub digest: Option<Digest>,
    /// The source's media type, as its HEAD reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Why the image cannot be copied (the source HEAD failed or the tag vanished).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// Per target.
    pub targets: Vec<TargetPlan>,
    /// Bytes of the image's distinct blobs (dry runs only: it costs manifest GETs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Referrers upstream that would come along (dry runs only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<PlannedReferrer>,
}

/// Why a mapping, an image or a registry client cannot go ahead, classified so the exit code
/// (4 for authentication) never depends on matching the message. Serialises as the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, naming the registry, repository or config entry; never a secret.
    pub message: String,
    /// Whether credentials were missing, refused, or could not be obtained.
    pub auth: bool,
}

impl Failure {
    /// A failure that is not about authentication.
    pub fn new(message: impl Into<String>) -> Self {
        Failure { message: message.into(), auth: false }
    }

    /// A registry error, keeping its classification; `context` says what was being done.
    pub fn registry(context: &str, error: &crate::registry::Error) -> Self {
        Failure { message: format!("{context}: {error}"), auth: error.is_auth() }
    }
}

impl From<&crate::registry::Error> for Failure {
    fn from(error: &crate::registry::Error) -> Self {
        Failure { message: error.to_string(), auth: error.is_auth() }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Serialize for Failure {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.message)
    }
}

/// A referrer (signature, SBOM, attestation) found upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedReferrer {
    /// What it refers to: the image, a child, or another referrer.
    pub subject: Digest,
    /// Its digest.
    pub digest: Digest,
    /// Its artifact type, or the cosign tag it is found under.
    pub kind: String,
}

/// What to do at one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetPlan {
    /// Target registry name.
    pub registry: String,
    /// The repository written there (the mapping's `to`, under the registry's `prefix`).
    pub repository: String,
    /// What the target has under the tag: `Some(None)` nothing, `None` unknown (its HEAD failed;
    /// the copy will ask again).
    pub current: Option<Option<Digest>>,
    /// Copy or leave alone.
    pub action: Action,
}

/// The decision for one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The target lacks the source digest under this tag.
    Copy,
    /// The target already has it.
    UpToDate,
}

impl ImagePlan {
    /// Whether any target needs the image.
    pub fn needs_copy(&self) -> bool {
        self.error.is_none() && self.targets.iter().any(|t| t.action == Action::Copy)
    }
}

/// Splits a source's tag list into valid OCI tags and the number of names that are not: a
/// registry's tag list is data, and a "tag" such as `../../v2/other/manifests/latest` must
/// never reach a request. Each invalid one is logged (escaped and shortened) at WARN.
pub fn valid_tags(registry: &str, repository: &str, listed: Vec<String>) -> (Vec<String>, usize) {
    let (valid, invalid): (Vec<String>, Vec<String>) =
        listed.into_iter().partition(|tag| crate::oci::validate_tag(tag).is_ok());
    for tag in &invalid {
        let shown: String = tag.chars().take(INVALID_TAG_SHOWN).collect();
        tracing::warn!(registry, repository, tag = ?shown, "the source listed an invalid tag; dropped");
    }
    (valid, invalid.len())
}

/// Characters of an invalid tag quoted in the log (a hostile one may be huge).
const INVALID_TAG_SHOWN: usize = 160;

/// Applies the mapping's filter to the listed tags, enforcing `min_tags`. With referrers on,
/// their fallback and cosign tags are not images of their own: they travel with their subjects.
pub fn select_tags(mapping: &Mapping, listed: &[String]) -> Result<Selection, String> {
    let filter = mapping.tags.compile().map_err(|e| format!("tags.{e}"))?;
    let (referrer_tags, images): (Vec<String>, Vec<String>) =
        listed.iter().cloned().partition(|tag| mapping.artifacts.is_some() && is_referrer_tag(tag));
    let mut selection = filter.select(&images);
    selection.dropped.extend(referrer_tags.into_iter().map(|tag| Dropped { tag, reason: DropReason::ReferrerTag }));
    if let Some(min) = mapping.tags.min_tags
        && selection.kept.len() < min
    {
        return Err(format!(
            "only {} of {} tags match the filter, fewer than min_tags: {min}",
            selection.kept.len(),
            listed.len()
        ));
    }
    Ok(selection)
}

/// Decides per target — `(registry, repository, what it has under the tag)` — copy unless the
/// target's digest equals the source's.
pub fn plan_image(
    tag: &str,
    source: Result<Option<Digest>, Failure>,
    targets: Vec<(String, String, Option<Option<Digest>>)>,
) -> ImagePlan {
    let (digest, error) = match source {
        Ok(Some(digest)) => (Some(digest), None),
        Ok(None) => (None, Some(Failure::new(format!("tag {tag} disappeared from the source")))),
        Err(error) => (None, Some(error)),
    };
    let targets = targets
        .into_iter()
        .map(|(registry, repository, current)| {
            let up_to_date = digest.is_some() && current.as_ref().is_some_and(|c| c.as_ref() == digest.as_ref());
            let action = if up_to_date { Action::UpToDate } else { Action::Copy };
            TargetPlan { registry, repository, current, action }
        })
        .collect();
    ImagePlan { tag: tag.to_string(), digest, error, targets, bytes: None, media_type: None, referrers: Vec::new() }
}

/// A plan for a mapping that could not list or select its tags.
pub fn failed_mapping(mapping: &Mapping, error: Failure) -> MappingPlan {
    MappingPlan {
        index: mapping.index,
        key: mapping.key(),
        source: mapping.source.clone(),
        from: mapping.from.clone(),
        to: mapping.to.clone(),
        kept: Vec::new(),
        dropped: Vec::new(),
        invalid_tags: 0,
        images: Vec::new(),
        error: Some(error),
    }
}

/// Assembles a mapping's plan from its selection and per-tag decisions.
pub fn mapping_plan(mapping: &Mapping, selection: Selection, images: Vec<ImagePlan>) -> MappingPlan {
    MappingPlan {
        kept: selection.kept,
        dropped: selection.dropped,
        images,
        error: None,
        ..failed_mapping(mapping, Failure::new(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::TagFilter;

    fn digest(fill: char) -> Digest {
        format!("sha256:{}", fill.to_string().repeat(64)).parse().unwrap()
    }

    fn mapping(tags: TagFilter) -> Mapping {
        let (source, from, to, targets) = ("src".into(), "a".into(), "b".into(), vec!["t".into()]);
        Mapping {
            index: 0,
            source,
            from,
            to,
            targets,
            prefixed: Default::default(),
            tags,
            artifacts: None,
            platforms: Vec::new(),
        }
    }

    #[test]
    fn targets_with_the_source_digest_are_up_to_date_and_others_copied() {
        let plan = plan_image(
            "v1",
            Ok(Some(digest('a'))),
            vec![
                ("same".into(), "b".into(), Some(Some(digest('a')))),
                ("old".into(), "b".into(), Some(Some(digest('b')))),
                ("empty".into(), "b".into(), Some(None)),
                ("unknown".into(), "b".into(), None),
            ],
        );
        let actions: Vec<Action> = plan.targets.iter().map(|t| t.action).collect();
        assert_eq!(actions, [Action::UpToDate, Action::Copy, Action::Copy, Action::Copy]);
        assert!(plan.needs_copy());
    }

    #[test]
    fn a_vanished_or_unreadable_source_tag_is_an_image_error() {
        let vanished = plan_image("v1", Ok(None), vec![("t".into(), "b".into(), Some(None))]);
        assert_eq!(vanished.error, Some(Failure::new("tag v1 disappeared from the source")));
        assert!(!vanished.needs_copy());
        let refused = Failure { message: "401".into(), auth: true };
        let failed = plan_image("v1", Err(refused.clone()), vec![]);
        assert_eq!(failed.error, Some(refused), "the classification is kept");
    }

    #[test]
    fn names_outside_the_tag_grammar_are_dropped_and_counted() {
        let listed: Vec<String> = [
            "v1",
            "../../v2/other/manifests/latest",
            "%2e%2e",
            "a/b",
            "x?y",
            "x#y",
            "sha256-abc.sig",
            "",
            "\u{1b}[31mred",
            "_ok",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (valid, invalid) = valid_tags("r", "app", listed);
        assert_eq!(valid, ["v1", "sha256-abc.sig", "_ok"]);
        assert_eq!(invalid, 7);
    }

    #[test]
    fn min_tags_fails_the_mapping_with_counts() {
        let filter = TagFilter { globs: vec!["v*".into()], min_tags: Some(3), ..Default::default() };
        let listed: Vec<String> = ["v1", "v2", "latest"].iter().map(|s| s.to_string()).collect();
        let error = select_tags(&mapping(filter), &listed).unwrap_err();
        assert_eq!(error, "only 2 of 3 tags match the filter, fewer than min_tags: 3");
    }

    #[test]
    fn a_plan_serialises_with_actions_and_reasons() {
        let filter = TagFilter { globs: vec!["v*".into()], ..Default::default() };
        let listed: Vec<String> = ["v1", "dev"].iter().map(|s| s.to_string()).collect();
        let selection = select_tags(&mapping(filter), &listed).unwrap();
        let image = plan_image("v1", Ok(Some(digest('a'))), vec![("t".into(), "b".into(), Some(None))]);
        let plan = mapping_plan(&mapping(TagFilter::default()), selection, vec![image]);
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["kept"], serde_json::json!(["v1"]));
        assert_eq!(json["dropped"][0], serde_json::json!({"tag": "dev", "reason": "no_glob_match"}));
        assert_eq!(json["images"][0]["targets"][0]["action"], "copy");
        assert_eq!(json["key"], "a -> b");
    }
}
