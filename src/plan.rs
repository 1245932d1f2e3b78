//! Planning: which tags a mapping keeps, and for each kept tag which targets need the image.
//! The plan is what `--dry-run` prints, and what execution follows. This file holds the plan
//! and its pure rules; [`discover`] (the module) asks the registries.

mod discover;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::config::Mapping;
use crate::filter::{DropReason, Dropped, Selection};
use crate::oci::{BlobDescriptor, Digest, is_referrer_tag};

pub use discover::{Shared, discover, discover_mapping};

/// The plan of a whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// What the whole run would do, summed over the mappings.
    pub totals: PlanTotals,
    /// One entry per mapping, in config order.
    pub mappings: Vec<MappingPlan>,
}

impl Plan {
    /// A plan of these mappings, with their totals.
    pub fn new(mappings: Vec<MappingPlan>) -> Plan {
        Plan { totals: PlanTotals::of(&mappings), mappings }
    }
}

/// What a run would do, summed. Images count once per target (an image going to two targets
/// is two copies); bytes count only images whose size the plan knows (dry runs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlanTotals {
    /// Image copies to targets that lack the image.
    pub images_to_copy: usize,
    /// Targets that already have the image under its tag.
    pub images_up_to_date: usize,
    /// Images that would fail: at every target for an image error, else per failing target.
    pub images_failing: usize,
    /// Referrers found upstream that travel with the images to copy, per target.
    pub referrers_to_copy: usize,
    /// Blob bytes the run would send: each blob once per target repository, however many of
    /// the images copied there share it.
    pub bytes_to_move: u64,
    /// The naive figure: each image's own size, summed per image and target.
    pub bytes_per_image_sum: u64,
}

impl PlanTotals {
    /// Sums `mappings`.
    pub fn of(mappings: &[MappingPlan]) -> PlanTotals {
        let mut totals = PlanTotals::default();
        let mut sent: HashSet<(&str, &str, &Digest)> = HashSet::new();
        for image in mappings.iter().flat_map(|m| &m.images) {
            if image.error.is_some() {
                totals.images_failing += image.targets.len().max(1);
                continue;
            }
            for target in &image.targets {
                match target.action {
                    Action::UpToDate => totals.images_up_to_date += 1,
                    Action::Fail => totals.images_failing += 1,
                    Action::Copy => {
                        totals.images_to_copy += 1;
                        totals.referrers_to_copy += image.referrers.len();
                        // Sizes are the registry's declarations: saturate rather than overflow.
                        totals.bytes_per_image_sum =
                            totals.bytes_per_image_sum.saturating_add(image.bytes.unwrap_or(0));
                        let at = (target.registry.as_str(), target.repository.as_str());
                        let new = image.blobs.iter().filter(|blob| sent.insert((at.0, at.1, &blob.digest)));
                        totals.bytes_to_move = totals.bytes_to_move.saturating_add(BlobDescriptor::total_size(new));
                    }
                }
            }
        }
        totals
    }
}

impl std::fmt::Display for PlanTotals {
    /// The totals line of the text plan.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::engine::human_bytes;
        write!(
            f,
            "totals: {} image(s) to copy, {} up to date, {} failing, {} referrer(s) to copy; {} to move ({} summed per image)",
            self.images_to_copy,
            self.images_up_to_date,
            self.images_failing,
            self.referrers_to_copy,
            human_bytes(self.bytes_to_move),
            human_bytes(self.bytes_per_image_sum),
        )
    }
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
    /// The image's distinct blobs, children included, when `bytes` is known: what
    /// [`PlanTotals`] counts once per target repository.
    #[serde(skip)]
    pub blobs: Vec<BlobDescriptor>,
    /// Referrers upstream that would come along (dry runs only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<PlannedReferrer>,
    /// The `verify` outcome of an image that would be copied (dry runs only): who signed it,
    /// or why nothing verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
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
    /// Copy, leave alone, or cannot.
    pub action: Action,
    /// Why the target cannot be written (its client could not be built), with [`Action::Fail`].
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub error: Option<Failure>,
}

/// The decision for one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The target lacks the source digest under this tag.
    Copy,
    /// The target already has it.
    UpToDate,
    /// The target cannot be written: its client could not be built (the reason is the
    /// target's `error`), so a run reports the image failed there.
    Fail,
}

impl ImagePlan {
    /// Whether any target needs the image.
    pub fn needs_copy(&self) -> bool {
        self.error.is_none() && self.targets.iter().any(|t| t.action == Action::Copy)
    }

    /// What the plan already knows will fail for this image: the image itself, or else each
    /// target that cannot be written.
    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        let targets = self.targets.iter().filter(|_| self.error.is_none()).filter_map(|t| t.error.as_ref());
        self.error.iter().chain(targets)
    }

    /// Records the image's distinct blobs, and so its size.
    pub fn set_blobs(&mut self, blobs: Vec<BlobDescriptor>) {
        self.bytes = Some(BlobDescriptor::total_size(&blobs));
        self.blobs = blobs;
    }

    /// Whether some target can end up with the image (copied or already there).
    pub fn can_succeed(&self) -> bool {
        self.error.is_none() && (self.targets.is_empty() || self.targets.iter().any(|t| t.action != Action::Fail))
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
            TargetPlan { registry, repository, current, action, error: None }
        })
        .collect();
    ImagePlan {
        tag: tag.to_string(),
        digest,
        error,
        targets,
        bytes: None,
        blobs: Vec::new(),
        media_type: None,
        referrers: Vec::new(),
        verify: None,
    }
}

/// Marks the targets whose client could not be built (`client_error` says why) as
/// [`Action::Fail`]: a plan shows what the run will do, and the run cannot copy there.
pub fn fail_unreachable_targets(image: &mut ImagePlan, client_error: impl Fn(&str) -> Option<Failure>) {
    for target in &mut image.targets {
        if let Some(error) = client_error(&target.registry) {
            (target.action, target.error) = (Action::Fail, Some(error));
        }
    }
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
            verify: None,
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
    fn a_target_without_a_client_fails_with_the_reason_and_is_not_a_copy() {
        let targets = vec![("good".into(), "b".into(), Some(None)), ("broken".into(), "b".into(), None)];
        let mut plan = plan_image("v1", Ok(Some(digest('a'))), targets);
        let refused = Failure { message: "cannot read CA file /nowhere/ca.pem".into(), auth: false };
        fail_unreachable_targets(&mut plan, |name| (name == "broken").then(|| refused.clone()));
        let actions: Vec<Action> = plan.targets.iter().map(|t| t.action).collect();
        assert_eq!(actions, [Action::Copy, Action::Fail]);
        assert_eq!(plan.targets[1].error, Some(refused));
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["targets"][1]["action"], "fail");
        assert_eq!(json["targets"][1]["error"], "cannot read CA file /nowhere/ca.pem");
        assert!(json["targets"][0].get("error").is_none(), "{json}");
    }

    fn blob(fill: char, size: u64) -> BlobDescriptor {
        BlobDescriptor { digest: digest(fill), size }
    }

    #[test]
    fn totals_count_a_shared_blob_once_per_target_repository() {
        let image = |tag: &str, own: BlobDescriptor, targets: &[(&str, Action)]| {
            let targets = targets.iter().map(|(t, _)| (t.to_string(), "r".to_string(), Some(None))).collect();
            let mut plan = plan_image(tag, Ok(Some(digest('f'))), targets);
            plan.set_blobs(vec![blob('a', 1000), own]);
            plan
        };
        let mut both = image("v1", blob('b', 100), &[("t", Action::Copy), ("u", Action::Copy)]);
        let only_t = image("v2", blob('c', 200), &[("t", Action::Copy)]);
        let mut up_to_date = image("v3", blob('d', 300), &[("t", Action::Copy)]);
        up_to_date.targets[0].action = Action::UpToDate;
        both.referrers.push(PlannedReferrer { subject: digest('f'), digest: digest('e'), kind: "sig".into() });
        let plan = |images| MappingPlan { images, ..failed_mapping(&mapping(TagFilter::default()), Failure::new("")) };
        let totals = PlanTotals::of(&[plan(vec![both, only_t]), plan(vec![up_to_date])]);
        let expected = PlanTotals {
            images_to_copy: 3,
            images_up_to_date: 1,
            images_failing: 0,
            referrers_to_copy: 2,
            bytes_to_move: (1000 + 100 + 200) + (1000 + 100),
            bytes_per_image_sum: 1100 * 2 + 1200,
        };
        assert_eq!(totals, expected);
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
