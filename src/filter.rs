//! Tag selection, pure: glob, exclude, semver range, sort, latest N, min_tags.
//!
//! The pipeline runs in that order. Versions are read leniently (`v1.2`, `1.25.3-alpine`,
//! `2024.1.2.3`); tags that are not versions are dropped only when a version rule (a `semver`
//! range or `sort: semver`) needs them to be versions. Prerelease tags (`-rc`, `-alpha`,
//! `-beta`, `-pre`, `-preview`, `-snapshot`, `-nightly`, `-dev`) never count among the newest
//! or match a range unless `include_prereleases` is set.

use std::cmp::Ordering;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Serialize;

/// Words that mark a prerelease when a suffix token starts with them.
const PRERELEASE_WORDS: [&str; 8] = ["rc", "alpha", "beta", "pre", "preview", "snapshot", "nightly", "dev"];

/// How kept tags are ordered before `latest` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// By version number, newest first.
    Semver,
    /// By string, last first.
    Alpha,
}

/// A tag filter as configured (already merged from `defaults.tags` and the mapping's `tags`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TagFilter {
    /// Glob patterns, OR-ed; empty means every tag.
    pub globs: Vec<String>,
    /// A semver range such as `>=1.25, <2`.
    pub semver: Option<String>,
    /// Glob patterns to drop.
    pub exclude: Vec<String>,
    /// Ordering; `latest` without a sort sorts by semver.
    pub sort: Option<Sort>,
    /// Keep only the newest N.
    pub latest: Option<usize>,
    /// Fewer kept tags than this fails the mapping.
    pub min_tags: Option<usize>,
    /// Let prerelease tags match ranges and count among the newest.
    pub include_prereleases: bool,
}

/// Why a filter cannot be compiled; `field` names the key (`glob`, `semver`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Error {
    /// The offending key.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Why a tag was not selected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DropReason {
    /// No `glob` pattern matched.
    NoGlobMatch,
    /// An `exclude` pattern matched.
    Excluded {
        /// The pattern.
        pattern: String,
    },
    /// A version rule applies and the tag is not a version.
    NotAVersion,
    /// Outside the `semver` range.
    OutsideRange,
    /// A prerelease, and prereleases are not included.
    Prerelease,
    /// Older than the newest `latest`.
    BeyondLatest {
        /// The configured N.
        latest: usize,
    },
    /// A fallback or cosign tag (`sha256-<hex>[.sig]`): it travels with its image.
    ReferrerTag,
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropReason::NoGlobMatch => f.write_str("no glob matches"),
            DropReason::Excluded { pattern } => write!(f, "excluded by {pattern:?}"),
            DropReason::NotAVersion => f.write_str("not a version"),
            DropReason::OutsideRange => f.write_str("outside the semver range"),
            DropReason::Prerelease => f.write_str("prerelease (set include_prereleases: true to keep)"),
            DropReason::BeyondLatest { latest } => write!(f, "not among the newest {latest}"),
            DropReason::ReferrerTag => f.write_str("referrer tag, copied with its image"),
        }
    }
}

/// A dropped tag and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dropped {
    /// The tag.
    pub tag: String,
    /// Why.
    #[serde(flatten)]
    pub reason: DropReason,
}

/// What a filter kept (newest first when sorted, else in input order) and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// Selected tags.
    pub kept: Vec<String>,
    /// Everything else, with reasons.
    pub dropped: Vec<Dropped>,
}

/// A filter ready to run.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    globs: Option<GlobSet>,
    exclude: Vec<(String, globset::GlobMatcher)>,
    range: Option<semver::VersionReq>,
    sort: Option<Sort>,
    latest: Option<usize>,
    include_prereleases: bool,
}

impl TagFilter {
    /// Checks patterns and the range; the error names the key at fault.
    pub fn compile(&self) -> Result<CompiledFilter, Error> {
        let glob = |field: &'static str, pattern: &str| {
            Glob::new(pattern)
                .map_err(|e| Error { field, message: format!("invalid pattern {pattern:?}: {}", e.kind()) })
        };
        let globs = if self.globs.is_empty() {
            None
        } else {
            let mut builder = GlobSetBuilder::new();
            for pattern in &self.globs {
                builder.add(glob("glob", pattern)?);
            }
            Some(builder.build().map_err(|e| Error { field: "glob", message: e.to_string() })?)
        };
        let exclude = self
            .exclude
            .iter()
            .map(|pattern| Ok((pattern.clone(), glob("exclude", pattern)?.compile_matcher())))
            .collect::<Result<_, Error>>()?;
        let range = self
            .semver
            .as_deref()
            .map(|text| {
                semver::VersionReq::parse(text)
                    .map_err(|e| Error { field: "semver", message: format!("invalid range {text:?}: {e}") })
            })
            .transpose()?;
        if self.latest == Some(0) {
            return Err(Error { field: "latest", message: "must be at least 1".into() });
        }
        let sort = self.sort.or(self.latest.map(|_| Sort::Semver));
        Ok(CompiledFilter {
            globs,
            exclude,
            range,
            sort,
            latest: self.latest,
            include_prereleases: self.include_prereleases,
        })
    }
}

impl CompiledFilter {
    /// Runs the pipeline over `tags`.
    pub fn select(&self, tags: &[String]) -> Selection {
        let mut selection = Selection::default();
        let needs_version = self.range.is_some() || self.sort == Some(Sort::Semver);
        let prereleases_count = !(self.range.is_some() || self.latest.is_some()) || self.include_prereleases;
        let mut candidates: Vec<(&String, Option<TagVersion>)> = Vec::new();
        for tag in tags {
            let version = TagVersion::parse(tag);
            let reason = if self.globs.as_ref().is_some_and(|globs| !globs.is_match(tag)) {
                Some(DropReason::NoGlobMatch)
            } else if let Some((pattern, _)) = self.exclude.iter().find(|(_, m)| m.is_match(tag)) {
                Some(DropReason::Excluded { pattern: pattern.clone() })
            } else if needs_version && version.is_none() {
                Some(DropReason::NotAVersion)
            } else if version.as_ref().is_some_and(|v| v.prerelease) && !prereleases_count {
                Some(DropReason::Prerelease)
            } else if let (Some(range), Some(v)) = (&self.range, &version)
                && !range.matches(&v.semver())
            {
                Some(DropReason::OutsideRange)
            } else {
                None
            };
            match reason {
                Some(reason) => selection.dropped.push(Dropped { tag: tag.clone(), reason }),
                None => candidates.push((tag, version)),
            }
        }
        match self.sort {
            Some(Sort::Semver) => candidates.sort_by(|a, b| compare_versions(b, a)),
            Some(Sort::Alpha) => candidates.sort_by(|a, b| b.0.cmp(a.0)),
            None => {}
        }
        let keep = self.latest.unwrap_or(usize::MAX);
        for (position, (tag, _)) in candidates.into_iter().enumerate() {
            if position < keep {
                selection.kept.push(tag.clone());
            } else {
                let latest = self.latest.expect("only a latest limit drops here");
                selection.dropped.push(Dropped { tag: tag.clone(), reason: DropReason::BeyondLatest { latest } });
            }
        }
        selection
    }
}

fn compare_versions(a: &(&String, Option<TagVersion>), b: &(&String, Option<TagVersion>)) -> Ordering {
    match (&a.1, &b.1) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.0.cmp(b.0)),
        _ => a.0.cmp(b.0),
    }
}

/// A tag read as a version: up to four numbers, an optional suffix, and whether the suffix
/// marks a prerelease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagVersion {
    numbers: [u64; 4],
    prerelease: bool,
    suffix: String,
}

impl TagVersion {
    /// `v1.2.3`, `1.25-alpine`, `2.0.0-rc.1`, `7`; `None` for `latest` or `1.2.3.4.5`.
    pub fn parse(tag: &str) -> Option<TagVersion> {
        let text = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
        let (main, suffix) = match text.find(['-', '+']) {
            Some(at) => (&text[..at], &text[at + 1..]),
            None => (text, ""),
        };
        let parts: Vec<&str> = main.split('.').collect();
        if parts.is_empty() || parts.len() > 4 {
            return None;
        }
        let mut numbers = [0u64; 4];
        for (slot, part) in numbers.iter_mut().zip(&parts) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        let prerelease = suffix.split(['-', '.', '_']).any(|token| {
            let word: String =
                token.chars().take_while(char::is_ascii_alphabetic).collect::<String>().to_ascii_lowercase();
            PRERELEASE_WORDS.contains(&word.as_str())
        });
        Some(TagVersion { numbers, prerelease, suffix: suffix.to_string() })
    }

    /// Whether the suffix marks a prerelease.
    pub fn is_prerelease(&self) -> bool {
        self.prerelease
    }

    /// The first three numbers as a semver version (for range matching).
    fn semver(&self) -> semver::Version {
        semver::Version::new(self.numbers[0], self.numbers[1], self.numbers[2])
    }
}

impl Ord for TagVersion {
    /// Numbers first; at equal numbers a release is newer than a prerelease, and a plain
    /// version newer than its variants (`1.27.1` before `1.27.1-debug`); then suffixes by name.
    fn cmp(&self, other: &Self) -> Ordering {
        self.numbers
            .cmp(&other.numbers)
            .then_with(|| other.prerelease.cmp(&self.prerelease))
            .then_with(|| self.suffix.is_empty().cmp(&other.suffix.is_empty()))
            .then_with(|| self.suffix.cmp(&other.suffix))
    }
}

impl PartialOrd for TagVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &str) -> Vec<String> {
        list.split_whitespace().map(str::to_string).collect()
    }

    fn select(filter: TagFilter, list: &str) -> Selection {
        filter.compile().unwrap().select(&tags(list))
    }

    fn reason_of(selection: &Selection, tag: &str) -> DropReason {
        selection.dropped.iter().find(|d| d.tag == tag).unwrap_or_else(|| panic!("{tag} not dropped")).reason.clone()
    }

    #[test]
    fn parses_lenient_versions() {
        for (tag, numbers, prerelease) in [
            ("1.2.3", [1, 2, 3, 0], false),
            ("v1.25", [1, 25, 0, 0], false),
            ("7", [7, 0, 0, 0], false),
            ("2024.1.2.3", [2024, 1, 2, 3], false),
            ("1.25.3-alpine", [1, 25, 3, 0], false),
            ("2.0.0-rc.1", [2, 0, 0, 0], true),
            ("1.0-SNAPSHOT", [1, 0, 0, 0], true),
            ("3.1.0-beta2", [3, 1, 0, 0], true),
            ("1.2.3-alpine-nightly", [1, 2, 3, 0], true),
        ] {
            let version = TagVersion::parse(tag).unwrap_or_else(|| panic!("{tag}"));
            assert_eq!((version.numbers, version.prerelease), (numbers, prerelease), "{tag}");
        }
        for tag in ["latest", "1.2.3.4.5", "1..2", "v", "main-abc123", "sha256-abcd.sig"] {
            assert_eq!(TagVersion::parse(tag), None, "{tag}");
        }
    }

    #[test]
    fn semver_sort_orders_tricky_versions_newest_first() {
        let filter = TagFilter { sort: Some(Sort::Semver), ..Default::default() };
        let selection = select(filter, "1.9 1.10 1.2.10 1.2.9 v2.0.0 2.0.0-rc1 1.10.0-alpine 0.9");
        assert_eq!(selection.kept, tags("v2.0.0 2.0.0-rc1 1.10 1.10.0-alpine 1.9 1.2.10 1.2.9 0.9"));
    }

    #[test]
    fn latest_skips_prereleases_unless_included() {
        let list = "1.0.0 1.1.0 2.0.0-rc1 2.0.0-beta.2 latest";
        let selection = select(TagFilter { latest: Some(2), ..Default::default() }, list);
        assert_eq!(selection.kept, tags("1.1.0 1.0.0"));
        assert_eq!(reason_of(&selection, "2.0.0-rc1"), DropReason::Prerelease);
        assert_eq!(reason_of(&selection, "latest"), DropReason::NotAVersion);

        let with_pre = select(TagFilter { latest: Some(2), include_prereleases: true, ..Default::default() }, list);
        assert_eq!(with_pre.kept, tags("2.0.0-rc1 2.0.0-beta.2"));
    }

    #[test]
    fn exclude_wins_over_glob() {
        let filter = TagFilter { globs: vec!["v*".into()], exclude: vec!["*-debug".into()], ..Default::default() };
        let selection = select(filter, "v1 v1-debug 1.0 v2");
        assert_eq!(selection.kept, tags("v1 v2"));
        assert_eq!(reason_of(&selection, "v1-debug"), DropReason::Excluded { pattern: "*-debug".into() });
        assert_eq!(reason_of(&selection, "1.0"), DropReason::NoGlobMatch);
    }

    #[test]
    fn glob_lists_are_or_ed_and_keep_input_order_without_sort() {
        let filter = TagFilter { globs: vec!["7.6.0".into(), "8.*".into()], ..Default::default() };
        assert_eq!(select(filter, "8.1 7.6.0 7.6.1 8.0").kept, tags("8.1 7.6.0 8.0"));
    }

    #[test]
    fn semver_ranges_keep_matching_versions_only() {
        let filter = TagFilter { semver: Some(">=1.25, <2".into()), ..Default::default() };
        let selection = select(filter, "1.24.9 1.25 1.25.3-alpine 1.30.1 2.0 2.0.0-rc1 edge");
        assert_eq!(selection.kept, tags("1.25 1.25.3-alpine 1.30.1"));
        assert_eq!(reason_of(&selection, "2.0"), DropReason::OutsideRange);
        assert_eq!(reason_of(&selection, "2.0.0-rc1"), DropReason::Prerelease);
        assert_eq!(reason_of(&selection, "edge"), DropReason::NotAVersion);
    }

    #[test]
    fn alpha_sort_with_latest_keeps_the_last_names() {
        let filter = TagFilter { sort: Some(Sort::Alpha), latest: Some(2), ..Default::default() };
        let selection = select(filter, "2024-01 2024-03 2023-12 2024-02");
        assert_eq!(selection.kept, tags("2024-03 2024-02"));
        assert_eq!(reason_of(&selection, "2024-01"), DropReason::BeyondLatest { latest: 2 });
    }

    #[test]
    fn invalid_filters_name_their_key() {
        for (filter, field) in [
            (TagFilter { globs: vec!["[".into()], ..Default::default() }, "glob"),
            (TagFilter { exclude: vec!["a[".into()], ..Default::default() }, "exclude"),
            (TagFilter { semver: Some(">=banana".into()), ..Default::default() }, "semver"),
            (TagFilter { latest: Some(0), ..Default::default() }, "latest"),
        ] {
            assert_eq!(filter.compile().unwrap_err().field, field);
        }
    }
}

/// The README's filter cookbook, row by row.
#[cfg(test)]
mod cookbook {
    use super::*;

    fn kept(filter: TagFilter) -> Vec<String> {
        let tags: Vec<String> =
            "1.24.0 1.25.0 1.27.0 1.27.1 1.28.0 2.0.0-rc1 2.0.0 latest main v2.13.0 v2.13.1 7.6.0 1.27.1-debug 1.27.1-dev 20240101 20240102"
                .split(' ')
                .map(str::to_string)
                .collect();
        filter.compile().unwrap().select(&tags).kept
    }

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_row_selects_what_the_readme_says() {
        assert_eq!(kept(TagFilter::default()).len(), 16, "every tag");
        assert_eq!(kept(TagFilter { globs: list(&["7.6.0"]), ..Default::default() }), ["7.6.0"]);
        assert_eq!(
            kept(TagFilter { globs: list(&["v2.13.0", "v2.13.1"]), ..Default::default() }),
            ["v2.13.0", "v2.13.1"]
        );
        let newest = kept(TagFilter { sort: Some(Sort::Semver), latest: Some(3), ..Default::default() });
        assert_eq!(newest, ["20240102", "20240101", "7.6.0"], "date stamps read as versions too");
        let line = kept(TagFilter { semver: Some("^1.27".into()), latest: Some(3), ..Default::default() });
        assert_eq!(line, ["1.28.0", "1.27.1", "1.27.1-debug"], "-dev is a prerelease; plain before variants");
        let no_debug = kept(TagFilter { exclude: list(&["*-debug", "*-dev"]), ..Default::default() });
        assert!(!no_debug.iter().any(|t| t.ends_with("-debug") || t.ends_with("-dev")));
        let rcs = kept(TagFilter { semver: Some(">=2.0.0-0".into()), include_prereleases: true, ..Default::default() });
        assert_eq!(rcs, ["2.0.0-rc1", "2.0.0", "v2.13.0", "v2.13.1", "7.6.0", "20240101", "20240102"]);
        let dated =
            kept(TagFilter { globs: list(&["20*"]), sort: Some(Sort::Alpha), latest: Some(7), ..Default::default() });
        assert_eq!(dated, ["20240102", "20240101"]);
    }
}
