//! Building the [`RawConfig`] section by section and entry by entry from the YAML value tree,
//! so that a serde error (unknown key, wrong type, unknown variant) in one registry or mapping
//! is reported next to those in every other, each with its path and line, instead of the first
//! one ending the parse. One malformed YAML document is still one error.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde_norway::Value;

use super::Problem;
use super::raw::{RawConfig, RawMapping, closest, problem_from_serde};
use super::tree::{Step, deserialize_at, path_of};

/// The top-level sections, as `unknown field` messages list them.
const SECTIONS: [&str; 5] = ["global", "registries", "target_groups", "defaults", "mappings"];

/// Entries that did not deserialise: their problems are reported, and validation must not add
/// consequences of their absence ("unknown registry `corp`" when `corp` is merely mistyped).
#[derive(Debug, Default)]
pub(super) struct Unparsed {
    /// Registry names whose entries did not deserialise.
    pub registries: BTreeSet<String>,
    /// Target group names whose lists did not deserialise.
    pub target_groups: BTreeSet<String>,
    /// Indexes of mappings that did not deserialise (a placeholder holds their place).
    pub mappings: BTreeSet<usize>,
    /// `defaults` did not deserialise: what mappings inherit is unknown.
    pub defaults: bool,
}

impl Unparsed {
    /// Whether `name` is a registry or target group that exists but did not deserialise.
    pub(super) fn names(&self, name: &str) -> bool {
        self.registries.contains(name) || self.target_groups.contains(name)
    }
}

/// Parses `text` into its value tree, then each unit into its raw type. `None`: the text is
/// not a YAML document of sections (one problem says why).
pub(super) fn collect(text: &str, problems: &mut Vec<Problem>) -> Option<(Value, RawConfig, Unparsed)> {
    let document: Value = match serde_norway::from_str(text) {
        Ok(document) => document,
        Err(error) => {
            problems.push(problem_from_serde(&error));
            return None;
        }
    };
    let Some(sections) = document.as_mapping() else {
        if document.is_null() {
            return Some((document, RawConfig::default(), Unparsed::default()));
        }
        let error = serde_norway::from_str::<RawConfig>(text).err()?;
        problems.push(problem_from_serde(&error));
        return None;
    };
    let mut raw = RawConfig::default();
    let mut unparsed = Unparsed::default();
    let mut units = Units { text, problems };
    for (key, node) in sections {
        let name = key.as_str().unwrap_or_default();
        let at = [Step::Key(name.to_string())];
        match name {
            "global" => raw.global = units.one(&at, node).flatten(),
            "defaults" => match units.one(&at, node) {
                Some(defaults) => raw.defaults = defaults,
                None => unparsed.defaults = true,
            },
            "registries" => {
                for (name, entry) in units.each(&at, node, &mut unparsed.registries) {
                    raw.registries.insert(name, entry);
                }
            }
            "target_groups" => {
                for (name, members) in units.each(&at, node, &mut unparsed.target_groups) {
                    raw.target_groups.insert(name, members);
                }
            }
            "mappings" => raw.mappings = units.mappings(&at, node, &mut unparsed.mappings),
            _ => units.problems.push(unknown_section(key, text, &document)),
        }
    }
    Some((document, raw, unparsed))
}

/// Deserialises units of one document, pushing a problem for each that fails.
struct Units<'a> {
    text: &'a str,
    problems: &'a mut Vec<Problem>,
}

impl Units<'_> {
    /// The node at `steps` as `T`; `None` after reporting why it is not one.
    fn one<T: DeserializeOwned>(&mut self, steps: &[Step], node: &Value) -> Option<T> {
        let shallow = match serde_norway::from_value::<T>(node.clone()) {
            Ok(value) => return Some(value),
            Err(error) => error,
        };
        // The value tree has no positions; the same node read from the text fails the same
        // way, with the parser's path and line.
        let problem = match deserialize_at::<T>(self.text, steps) {
            Err(error) => problem_from_serde(&error),
            Ok(_) => Problem { path: path_of(steps), ..problem_from_serde(&shallow) },
        };
        self.problems.push(problem);
        None
    }

    /// Each entry of the mapping at `steps`, by name; names whose entries fail go to `failed`.
    fn each<T: DeserializeOwned>(
        &mut self,
        steps: &[Step],
        node: &Value,
        failed: &mut BTreeSet<String>,
    ) -> Vec<(String, T)> {
        let Some(entries) = node.as_mapping() else {
            // `registries:` left empty is no registries; anything else is mistyped as a whole.
            if !node.is_null() {
                self.one::<std::collections::BTreeMap<String, IgnoredEntry>>(steps, node);
            }
            return Vec::new();
        };
        let mut parsed = Vec::new();
        for (key, entry) in entries {
            let Some(name) = key.as_str() else {
                self.one::<std::collections::BTreeMap<String, IgnoredEntry>>(steps, node);
                continue;
            };
            let at = [steps, &[Step::Key(name.to_string())]].concat();
            match self.one(&at, entry) {
                Some(value) => parsed.push((name.to_string(), value)),
                None => {
                    failed.insert(name.to_string());
                }
            }
        }
        parsed
    }

    /// Each mapping; one that fails keeps its index with a placeholder, listed in `failed`.
    fn mappings(&mut self, steps: &[Step], node: &Value, failed: &mut BTreeSet<usize>) -> Vec<RawMapping> {
        let Some(entries) = node.as_sequence() else {
            if !node.is_null() {
                self.one::<Vec<IgnoredEntry>>(steps, node);
            }
            return Vec::new();
        };
        let mut mappings = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let at = [steps, &[Step::Index(index)]].concat();
            mappings.push(self.one(&at, entry).unwrap_or_else(|| {
                failed.insert(index);
                placeholder()
            }));
        }
        mappings
    }
}

/// Whatever an entry holds, when only the shape of its container is being checked.
type IgnoredEntry = serde::de::IgnoredAny;

/// Holds a mapping's place (and so the indexes of those after it) when it did not deserialise.
fn placeholder() -> RawMapping {
    RawMapping {
        from: String::new(),
        to: None,
        source: None,
        targets: None,
        tags: None,
        artifacts: None,
        platforms: None,
        verify: None,
    }
}

/// A top-level key that is no section, worded as serde words unknown fields.
fn unknown_section(key: &Value, text: &str, document: &Value) -> Problem {
    let name = key.as_str().map_or_else(|| "(not a string)".to_string(), str::to_string);
    let expected = SECTIONS.map(|s| format!("`{s}`")).join(", ");
    let mut message = format!("unknown field `{name}`, expected one of {expected}");
    if let Some(hint) = closest(&name, SECTIONS) {
        message.push_str(&format!("; did you mean `{hint}`?"));
    }
    Problem { path: String::new(), line: super::tree::line_of(text, document, &name), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collected(text: &str) -> (RawConfig, Unparsed, Vec<String>) {
        let mut problems = Vec::new();
        let (_, raw, unparsed) = collect(text, &mut problems).expect("a document of sections");
        (raw, unparsed, problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn every_mistyped_entry_is_reported_and_the_rest_still_parses() {
        let (raw, unparsed, problems) = collected(
            "registries:\n  a: { url: a.io }\n  b: { url: b.io, upload: sideways }\nmappings:\n  - from: x\n    form: y\n  - from: z\n  - from: w\n    tags: { latest: many }\nglobals: {}\n",
        );
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].starts_with("registries.b.upload (line 3): unknown variant"), "{problems:#?}");
        assert!(problems[1].starts_with("mappings[0] (line 6): unknown field `form`"), "{problems:#?}");
        assert!(problems[2].starts_with("mappings[2].tags.latest (line 9): invalid type"), "{problems:#?}");
        assert!(problems[3].starts_with("line 10: unknown field `globals`"), "{problems:#?}");
        assert!(problems[3].ends_with("did you mean `global`?"), "{problems:#?}");
        assert_eq!(raw.registries.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(raw.mappings.len(), 3, "a placeholder keeps the indexes");
        assert_eq!(raw.mappings[1].from, "z");
        assert_eq!((unparsed.registries.len(), unparsed.mappings.iter().copied().collect::<Vec<_>>()), (1, vec![0, 2]));
    }

    #[test]
    fn a_malformed_document_is_one_problem() {
        let mut problems = Vec::new();
        assert!(collect("registries:\n  a: { url: a.io\nmappings: [\n", &mut problems).is_none());
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].line.is_some(), "{problems:#?}");
    }

    #[test]
    fn an_empty_document_is_an_empty_config() {
        let (raw, _, problems) = collected("");
        assert!(problems.is_empty() && raw.mappings.is_empty() && raw.registries.is_empty());
    }
}
