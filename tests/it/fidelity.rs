//! Issue 15's fidelity items through the binary: every config problem in one run, GAR's
//! upload rule, plan totals over shared layers, and a target whose client cannot be built.

use ocync::registry::kind::RegistryKind;
use ocync::registry::{HttpRegistry, RegistrySettings};
use ocync::testdata::{self, Built};

use crate::copy::{describe, ocync};
use crate::support::TestRegistry;
use crate::support::proxy::{Action, FaultProxy};
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

#[test]
fn validate_refuses_chunked_uploads_for_a_gar_registry_with_exit_3() {
    let config = TempConfig::new("registries:\n  gar:\n    url: europe-west4-docker.pkg.dev\n    upload: chunked\n");
    let output = ocync(&["validate", &config.path]);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("registries.gar.upload (line 4): chunked uploads are not supported by GAR or GCR"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gar_registry_refusing_a_monolithic_upload_fails_naming_the_quirk_and_sends_no_chunk() {
    let target = TestRegistry::plain();
    let proxy = FaultProxy::start(&target.host, |request| {
        if request.method == "PUT" && request.target.contains("/blobs/uploads/") && request.body_len > 0 {
            Action::Respond { status: 413, headers: vec![], body: "too large".into() }
        } else {
            Action::Forward
        }
    });
    let client = |kind| {
        let mut settings = RegistrySettings::new(&proxy.host);
        (settings.plain_http, settings.kind) = (true, kind);
        HttpRegistry::new(settings).expect("client for the proxy")
    };
    let built = Built::Image(testdata::image(&[(90, 2000)], ("linux", "amd64"), false));

    let error = testdata::push(&client(RegistryKind::Gar), "project/repo/app", "v1", &built)
        .await
        .expect_err("GAR has no chunked uploads to fall back to");
    assert!(matches!(error, ocync::registry::Error::MonolithicUploadRefused { status: 413, .. }), "{error:?}");
    assert!(error.to_string().contains("does not accept chunked uploads (a GAR/GCR quirk)"), "{error}");
    assert!(!error.is_retryable(), "the same refusal would come again");
    assert!(!proxy.seen().iter().any(|r| r.method == "PATCH"), "no chunk was sent to GAR");

    // The same refusal from a generic registry is the switch to chunks (the negative case).
    let error = testdata::push(&client(RegistryKind::Generic), "project/repo/app", "v1", &built)
        .await
        .expect_err("the first refusal is reported as the switch");
    assert!(matches!(error, ocync::registry::Error::ChunkedUploadRequired { .. }), "{error:?}");
}
