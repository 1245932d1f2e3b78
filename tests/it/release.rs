//! `infra/release.sh` against a local registry: it publishes the image index, its FIPS variant
//! and the chart; the chart is then pulled back by its OCI reference with the Helm SDK (what
//! `helm install oci://…` resolves) and rendered: the workload runs the image index published
//! with it, no `--set image…` needed.
//!
//! The images are built with the image tests' cheap profile in the suite's target dir, so this
//! test mostly finds them built (whichever of it and the image tests gets cargo's lock first
//! builds them).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use crate::chart::{SOME_CONFIG, container, helm, render_chart, repo};
use crate::copy::describe;
use crate::image::{TEST_PROFILE, index_platforms, require_image_tools};
use crate::support::TestRegistry;
use crate::support::tools::skopeo_digest;

#[test]
fn a_release_installs_by_oci_reference_and_runs_the_image_index_published_with_it() {
    require_image_tools(true);
    let registry = TestRegistry::plain();
    let host = &registry.host;
    let version = env!("CARGO_PKG_VERSION");
    let release = Command::new("nice")
        .args(["-n", "10"])
        .arg(repo().join("infra/release.sh"))
        .arg(format!("http://{host}"))
        .env("PROFILE", TEST_PROFILE)
        .current_dir(repo())
        .output()
        .expect("run infra/release.sh");
    assert!(release.status.success(), "infra/release.sh failed: {}", describe(&release));
    let stdout = String::from_utf8_lossy(&release.stdout).to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one line per pushed reference: {stdout}");

    // The image index and its FIPS variant, each printed with the digest the registry serves.
    let image = format!("{host}/ocync:{version}");
    for (line, reference) in lines[..2].iter().zip([image.clone(), format!("{image}-fips")]) {
        let digest = line.strip_prefix(&format!("{reference}@")).unwrap_or_else(|| panic!("printed {stdout}"));
        assert_eq!(skopeo_digest(&reference, &[]), digest, "{reference}");
    }
    let both = BTreeSet::from(["linux/amd64".to_string(), "linux/arm64".to_string()]);
    assert_eq!(index_platforms(&image), both);
    assert_eq!(lines[2], format!("{host}/charts/ocync:{version}"), "printed {stdout}");

    // `helm install ocync oci://HOST/charts/ocync --version VERSION` resolves this chart.
    let pulled = tempfile::tempdir().expect("temp dir");
    let reference = format!("oci://{host}/charts/ocync");
    let destination = pulled.path().to_str().expect("UTF-8 path");
    let pull = helm(&["pull", &reference, "--version", version, "--destination", destination, "--plain-http"]);
    assert!(pull.success, "helm pull {reference} --version {version}: {}", pull.stderr);
    let archive = PathBuf::from(pull.stdout.trim());
    assert_eq!(archive, pulled.path().join(format!("ocync-{version}.tgz")));

    // Rendered with only a config: the workload runs the index published with the chart.
    let objects = render_chart(&archive, &[], &[SOME_CONFIG]);
    assert_eq!(container(&objects)["image"].as_str(), Some(image.as_str()));
}
