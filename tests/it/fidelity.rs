//! Issue 15's fidelity items through the binary: every config problem in one run, GAR's
//! upload rule, plan totals over shared layers, and a target whose client cannot be built.

use crate::copy::{describe, ocync};
use crate::support::tools::TempConfig;

#[test]
fn validate_names_parse_and_semantic_errors_in_three_places_with_paths_and_lines() {
    let config = TempConfig::new(concat!(
        "registries:\n",
        "  src: { url: cgr.dev }\n",
        "  gar: { url: us-docker.pkg.dev, upload: sideways }\n",
        "  corp: { url: registry.corp, max_concurrent: 0 }\n",
        "mappings:\n",
        "  - from: a\n",
        "    source: src\n",
        "    targets: [gar, corp]\n",
        "    tag: { latest: 1 }\n",
        "  - from: b\n",
        "    source: src\n",
        "    targets: gar\n",
        "    tags: { sort: newest }\n",
    ));
    let output = ocync(&["validate", &config.path]);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let problems: Vec<&str> = stderr.lines().filter_map(|line| line.trim().strip_prefix("- ")).collect();
    let expected = [
        "registries.gar.upload (line 3): unknown variant, expected `monolithic` or `chunked`",
        "mappings[0] (line 9): unknown field `tag`",
        "registries.corp.max_concurrent (line 4): must be at least 1",
        "mappings[1].tags.sort (line 13): unknown sort `newest`, expected `semver` or `alpha`",
    ];
    for want in expected {
        assert!(problems.iter().any(|p| p.starts_with(want)), "missing {want:?} in {problems:#?}");
    }
    assert!(problems.iter().any(|p| p.ends_with("did you mean `tags`?")), "{problems:#?}");
    assert_eq!(problems.len(), expected.len(), "nothing reported twice or as a consequence: {problems:#?}");
}
