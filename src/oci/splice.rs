//! Rewriting the `manifests` list of an index in place. Every byte outside the list stays as
//! served (field order, whitespace, escapes) and each entry kept stays byte for byte, so a
//! narrowed or extended index differs from its source only in the list's entries.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The one field of an index this module looks at, borrowed from the bytes.
#[derive(Deserialize)]
struct Entries<'a> {
    #[serde(borrow)]
    manifests: Option<&'a RawValue>,
}

/// `bytes` with its `manifests` list replaced by the entries `rewrite` returns, given the
/// entries as they are (each the exact JSON text served). `None` when the document has no
/// `manifests` list. Entries are separated as the first two were, so a pretty-printed index
/// stays pretty-printed.
pub(super) fn rewrite_entries(
    bytes: &[u8],
    rewrite: impl FnOnce(&[&str]) -> Vec<String>,
) -> Result<Option<Vec<u8>>, serde_json::Error> {
    let Some(list) = serde_json::from_slice::<Entries>(bytes)?.manifests else {
        return Ok(None);
    };
    let Ok(entries) = serde_json::from_str::<Vec<&RawValue>>(list.get()) else {
        return Ok(None);
    };
    let text = list.get();
    let offset = |inner: &str| inner.as_ptr() as usize - text.as_ptr() as usize;
    let entries: Vec<&str> = entries.iter().map(|e| e.get()).collect();
    // `[` + lead + entry + separator + entry … + trail + `]`, as served.
    let (lead, trail, separator) = match (entries.first(), entries.last()) {
        (Some(first), Some(last)) => {
            let lead = &text[1..offset(first)];
            let trail = &text[offset(last) + last.len()..text.len() - 1];
            let separator = match entries.get(1) {
                Some(second) => text[offset(first) + first.len()..offset(second)].to_string(),
                None => format!(",{lead}"),
            };
            (lead, trail, separator)
        }
        _ => ("", "", ",".to_string()),
    };
    let start = list.get().as_ptr() as usize - bytes.as_ptr() as usize;
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..start]);
    out.push(b'[');
    let kept = rewrite(&entries);
    if !kept.is_empty() {
        out.extend_from_slice(lead.as_bytes());
        out.extend_from_slice(kept.join(&separator).as_bytes());
        out.extend_from_slice(trail.as_bytes());
    }
    out.push(b']');
    out.extend_from_slice(&bytes[start + text.len()..]);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_list_changes_and_the_rest_keeps_its_bytes() {
        let served = b"{\n  \"schemaVersion\": 2,\n  \"manifests\": [\n    {\"b\":1, \"a\":2},\n    {\"z\":3}\n  ],\n  \"annotations\": {\"y\": \"\\u00e9\", \"x\": 1}\n}\n";
        let first_only = rewrite_entries(served, |entries| vec![entries[0].to_string()]).unwrap().unwrap();
        let expected = b"{\n  \"schemaVersion\": 2,\n  \"manifests\": [\n    {\"b\":1, \"a\":2}\n  ],\n  \"annotations\": {\"y\": \"\\u00e9\", \"x\": 1}\n}\n";
        assert_eq!(String::from_utf8_lossy(&first_only), String::from_utf8_lossy(expected));
        let unchanged = rewrite_entries(served, |entries| entries.iter().map(|e| e.to_string()).collect()).unwrap();
        assert_eq!(unchanged.unwrap(), served, "the same entries give the same bytes");
    }

    #[test]
    fn entries_added_to_a_one_entry_or_empty_list_follow_its_layout() {
        let one = br#"{"manifests": [ {"a":1} ], "mediaType": "x"}"#;
        let two = rewrite_entries(one, |e| vec![e[0].to_string(), r#"{"b":2}"#.into()]).unwrap().unwrap();
        assert_eq!(String::from_utf8(two).unwrap(), r#"{"manifests": [ {"a":1}, {"b":2} ], "mediaType": "x"}"#);
        let empty = rewrite_entries(br#"{"manifests":[]}"#, |_| vec![r#"{"b":2}"#.into()]).unwrap().unwrap();
        assert_eq!(String::from_utf8(empty).unwrap(), r#"{"manifests":[{"b":2}]}"#);
        assert!(rewrite_entries(br#"{"schemaVersion":2}"#, |_| Vec::new()).unwrap().is_none());
    }
}
