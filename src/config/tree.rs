//! Reaching one node of a config document: deserialising just that node from the text (so a
//! serde error carries the parser's own path and line), and finding the line of a problem's
//! path. Other nodes are skipped unread, so one bad node never hides another.

use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_norway::Value;

/// One step down the document: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// The value under this key of a mapping.
    Key(String),
    /// The element at this index of a sequence.
    Index(usize),
}

/// Deserialises the node at `steps` of `text` as `T`. `Ok(None)`: there is no such node.
pub(super) fn deserialize_at<T: DeserializeOwned>(
    text: &str,
    steps: &[Step],
) -> Result<Option<T>, serde_norway::Error> {
    At::<T> { steps, target: PhantomData }.deserialize(serde_norway::Deserializer::from_str(text))
}

/// The 1-based line of the node at `path` (`mappings[2].tags.semver`), or of its deepest
/// ancestor present in the document (a missing key is reported where it belongs).
pub(super) fn line_of(text: &str, document: &Value, path: &str) -> Option<usize> {
    let steps = steps_for(document, path);
    // `Pinpoint` refuses whatever it is given; the parser marks that refusal with the node's
    // position, which is the only way serde_norway gives out positions.
    match deserialize_at::<Pinpoint>(text, &steps) {
        Err(error) => error.location().map(|location| location.line()),
        Ok(_) => None,
    }
}

/// The steps of `path` as far as `document` has them. Paths are built by joining names with
/// dots, and a registry name may hold dots itself (`ghcr.io`), so keys are matched against
/// the document, longest first, rather than split.
pub(super) fn steps_for(document: &Value, path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let (mut node, mut rest) = (document, path);
    loop {
        rest = rest.strip_prefix('.').unwrap_or(rest);
        if rest.is_empty() {
            return steps;
        }
        if let Some(inside) = rest.strip_prefix('[') {
            let Some((index, after)) = inside.split_once(']') else { return steps };
            let Some(element) = index.parse().ok().and_then(|i: usize| Some((i, node.as_sequence()?.get(i)?))) else {
                return steps;
            };
            steps.push(Step::Index(element.0));
            (node, rest) = (element.1, after);
            continue;
        }
        let Some(mapping) = node.as_mapping() else { return steps };
        let found = mapping
            .iter()
            .filter_map(|(key, value)| Some((key.as_str()?, value)))
            .filter(|(key, _)| {
                rest.strip_prefix(key).is_some_and(|after| after.is_empty() || after.starts_with(['.', '[']))
            })
            .max_by_key(|(key, _)| key.len());
        let Some((key, value)) = found else { return steps };
        steps.push(Step::Key(key.to_string()));
        (node, rest) = (value, &rest[key.len()..]);
    }
}

/// Renders steps as a problem path (`mappings[1].tags`).
pub(super) fn path_of(steps: &[Step]) -> String {
    let mut path = String::new();
    for step in steps {
        match step {
            Step::Key(key) if path.is_empty() => path.push_str(key),
            Step::Key(key) => {
                path.push('.');
                path.push_str(key);
            }
            Step::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// Walks to the node at `steps`, then deserialises `T` there.
struct At<'a, T> {
    steps: &'a [Step],
    target: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for At<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        match self.steps.first() {
            None => T::deserialize(deserializer).map(Some),
            Some(Step::Key(_)) => deserializer.deserialize_map(self),
            Some(Step::Index(_)) => deserializer.deserialize_seq(self),
        }
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for At<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a mapping or a sequence")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let (Some(Step::Key(wanted)), rest) = (self.steps.first(), &self.steps[1..]) else { return Ok(None) };
        let mut found = None;
        while let Some(key) = map.next_key::<Value>()? {
            if found.is_none() && key.as_str() == Some(wanted.as_str()) {
                found = map.next_value_seed(At::<T> { steps: rest, target: PhantomData })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        let (Some(Step::Index(wanted)), rest) = (self.steps.first(), &self.steps[1..]) else { return Ok(None) };
        let mut found = None;
        let mut index = 0;
        loop {
            if index == *wanted {
                match seq.next_element_seed(At::<T> { steps: rest, target: PhantomData })? {
                    Some(value) => found = value,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            index += 1;
        }
        Ok(found)
    }
}

/// Accepts no value at all, so that the parser reports where the value is.
struct Pinpoint;

impl<'de> de::Deserialize<'de> for Pinpoint {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PinpointVisitor)
    }
}

struct PinpointVisitor;

impl Visitor<'_> for PinpointVisitor {
    type Value = Pinpoint;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("nothing (locating a node)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENT: &str = "registries:\n  ghcr.io:\n    url: ghcr.io\n  ghcr: { url: x }\nmappings:\n  - from: a\n  - from: b\n    tags:\n      latest: 5\n";

    fn line(path: &str) -> Option<usize> {
        let document: Value = serde_norway::from_str(DOCUMENT).unwrap();
        line_of(DOCUMENT, &document, path)
    }

    #[test]
    fn a_path_finds_its_line_even_through_names_with_dots() {
        assert_eq!(line("registries.ghcr.io.url"), Some(3));
        assert_eq!(line("registries.ghcr.url"), Some(4));
        assert_eq!(line("mappings[1].tags.latest"), Some(9));
        assert_eq!(line("mappings[0].from"), Some(6));
    }

    #[test]
    fn a_missing_node_is_placed_at_its_deepest_ancestor() {
        assert_eq!(line("mappings[1].source"), Some(7));
        assert_eq!(line("mappings[7].from"), Some(6), "the whole sequence starts on line 6");
    }

    #[test]
    fn one_node_is_deserialised_with_the_parsers_path_and_line() {
        let steps = [Step::Key("mappings".into()), Step::Index(1), Step::Key("tags".into())];
        let error = deserialize_at::<std::collections::BTreeMap<String, String>>(
            "mappings:\n  - from: a\n  - tags: { latest: [5] }\n",
            &steps,
        )
        .unwrap_err();
        assert_eq!(error.location().map(|l| l.line()), Some(3));
        assert!(error.to_string().starts_with("mappings[1].tags.latest: invalid type"), "{error}");
        assert_eq!(path_of(&steps), "mappings[1].tags");
    }
}
