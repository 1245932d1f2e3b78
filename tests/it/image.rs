//! The container image: `infra/image.sh` builds it offline (the static musl release build, then
//! buildah on `infra/Dockerfile`'s runtime stage) and pushes it to a local registry; skopeo checks
//! its config and layer, and the binary taken out of the layer runs as the image would (chrooted
//! into the image's filesystem as its non-root user): `ocync version` and a real copy.
//!
//! This is the suite's one release build (several minutes on a small machine); it runs niced so
//! the other tests keep their timing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use ocync::testing::testdata;

use crate::copy::{describe, seed};
use crate::support::tools::{require, skopeo, skopeo_digest};
use crate::support::{RegistryOptions, TestRegistry, tls};

const ENTRYPOINT: &str = "/usr/local/bin/ocync";
const USER: &str = "65532:65532";

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
    assert!(output.status.success(), "{command:?} failed: {}", describe(&output));
    output
}

/// Builds and pushes the image with `infra/image.sh`; returns the digest it printed.
fn build_and_push(reference: &str) -> String {
    require("buildah", "apt-get install -y buildah");
    require("musl-gcc", "apt-get install -y musl-tools");
    let targets = run(Command::new("rustup").args(["target", "list", "--installed"]));
    assert!(
        String::from_utf8_lossy(&targets.stdout).lines().any(|t| t == "x86_64-unknown-linux-musl"),
        "the musl target is not installed; install it with: rustup target add x86_64-unknown-linux-musl"
    );
    let uid = run(Command::new("id").arg("-u"));
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "buildah (vfs, chroot) and chroot need root, as in CI"
    );

    let started = Instant::now();
    let root = env!("CARGO_MANIFEST_DIR");
    let output =
        run(Command::new("nice").args(["-n", "10", &format!("{root}/infra/image.sh"), reference]).current_dir(root));
    eprintln!("infra/image.sh took {:?}\n{}", started.elapsed(), String::from_utf8_lossy(&output.stderr));
    let digest = String::from_utf8(output.stdout).expect("UTF-8 digest").trim().to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "image.sh printed {digest:?}");
    digest
}

/// The image's config as skopeo reads it.
fn config(reference: &str) -> serde_json::Value {
    let output = run(Command::new(skopeo())
        .args(["inspect", "--config", "--tls-verify=false"])
        .arg(format!("docker://{reference}")));
    serde_json::from_slice(&output.stdout).expect("config JSON")
}

/// Unpacks the image's layers (in order) into `rootfs`, the way a container runtime would.
fn unpack(reference: &str, rootfs: &Path) {
    let layout = rootfs.with_extension("dir");
    run(Command::new(skopeo())
        .args(["copy", "--insecure-policy", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("dir:{}", layout.display())));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("manifest.json")).expect("manifest.json"))
            .expect("manifest JSON");
    std::fs::create_dir_all(rootfs).expect("rootfs dir");
    for layer in manifest["layers"].as_array().expect("layers") {
        let hex = layer["digest"].as_str().expect("layer digest").trim_start_matches("sha256:");
        // GNU tar detects the compression itself.
        run(Command::new("tar").arg("-xf").arg(layout.join(hex)).arg("-C").arg(rootfs));
    }
}

/// Paths (relative to `root`) of everything in `root` that is not a directory.
fn files(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("dir entry")) {
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                walk(root, &path, found);
            } else {
                found.insert(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut found = BTreeSet::new();
    walk(root, root, &mut found);
    found
}

/// Runs the image's entrypoint with `args` as the container would: chrooted into `rootfs`, as
/// the image's user, with the image's environment and nothing else.
fn in_container(rootfs: &Path, env: &[String], args: &[&str]) -> Output {
    let mut command = Command::new(require("chroot", "apt-get install -y coreutils"));
    command.arg(format!("--userspec={USER}")).arg(rootfs).arg(ENTRYPOINT).args(args).env_clear().env("HOME", "/");
    for pair in env {
        let (key, value) = pair.split_once('=').expect("KEY=VALUE");
        command.env(key, value);
    }
    command.output().expect("run chroot")
}

#[tokio::test]
async fn the_image_is_a_static_non_root_ocync_without_a_shell_and_copies_images() {
    let registry = TestRegistry::plain();
    let reference = registry.skopeo_reference("ocync:test");
    let digest = build_and_push(&reference);
    assert_eq!(skopeo_digest(&reference, &[]), digest, "the registry serves the digest image.sh printed");

    // Config: non-root user, ocync as the entrypoint, linux/amd64.
    let config = config(&reference);
    let (os, arch) = (&config["os"], &config["architecture"]);
    assert_eq!((os.as_str(), arch.as_str()), (Some("linux"), Some("amd64")), "{config:#}");
    let image_config = &config["config"];
    assert_eq!(image_config["User"], USER, "{config:#}");
    assert_eq!(image_config["Entrypoint"], serde_json::json!([ENTRYPOINT]), "{config:#}");
    let env: Vec<String> = image_config["Env"]
        .as_array()
        .map(|vars| vars.iter().map(|v| v.as_str().expect("env string").to_string()).collect())
        .unwrap_or_default();

    // Filesystem: the binary and the CA bundle, nothing else (no shell, no libc, no passwd).
    let temp = tempfile::tempdir().expect("temp dir");
    let rootfs = temp.path().join("rootfs");
    unpack(&reference, &rootfs);
    assert_eq!(
        files(&rootfs),
        BTreeSet::from([
            "etc/ssl/certs/ca-certificates.crt".to_string(),
            ENTRYPOINT.trim_start_matches('/').to_string()
        ]),
    );
    let binary: PathBuf = rootfs.join(ENTRYPOINT.trim_start_matches('/'));
    eprintln!("static binary: {} bytes", std::fs::metadata(&binary).expect("binary").len());

    // Statically linked: no program interpreter, and ldd finds nothing to load.
    let file = run(Command::new(require("file", "apt-get install -y file")).arg(&binary));
    let file = String::from_utf8_lossy(&file.stdout).to_string();
    assert!(file.contains("static") && !file.contains("interpreter"), "not static: {file}");
    let ldd = Command::new(require("ldd", "apt-get install -y libc-bin")).arg(&binary).output().expect("run ldd");
    let ldd = format!("{}{}", String::from_utf8_lossy(&ldd.stdout), String::from_utf8_lossy(&ldd.stderr));
    assert!(ldd.contains("statically linked") || ldd.contains("not a dynamic executable"), "ldd: {ldd}");

    // It runs outside the image, as built...
    let version = run(Command::new(&binary).arg("version"));
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")), "{}", describe(&version));

    // ...and inside it, as the pod runs it (non-root, only the image's files, plus the writable
    // /tmp the pod provides as an emptyDir).
    let tmp = rootfs.join("tmp");
    std::fs::create_dir(&tmp).expect("tmp dir");
    run(Command::new("chmod").arg("1777").arg(&tmp));
    let version = in_container(&rootfs, &env, &["version"]);
    assert_eq!(version.status.code(), Some(0), "{}", describe(&version));
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")), "{}", describe(&version));

    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = testdata::index(7, &[(0, 256 * 1024)], &[("linux", "amd64"), ("linux", "arm64")], false);
    seed(&source, "team/app", "v1", &built).await;
    let copy =
        in_container(&rootfs, &env, &["copy", &source.reference("team/app:v1"), &target.reference("mirror/app:v1")]);
    assert_eq!(copy.status.code(), Some(0), "{}", describe(&copy));
    assert_eq!(skopeo_digest(&target.skopeo_reference("mirror/app:v1"), &[]), built.digest().to_string());

    // HTTPS trusts the image's CA bundle (no `ca_file`): a registry whose CA is not in it is
    // refused, and accepted once the CA is appended to /etc/ssl/certs/ca-certificates.crt.
    let ca = tls::generate();
    let secure = TestRegistry::start(RegistryOptions { tls: Some(ca.server_pair()), ..Default::default() });
    let (from, to) = (source.reference("team/app:v1"), secure.reference("mirror/app:v1"));
    let to_secure = ["copy", from.as_str(), to.as_str()];
    let refused = in_container(&rootfs, &env, &to_secure);
    assert_ne!(refused.status.code(), Some(0), "a CA outside the bundle was trusted: {}", describe(&refused));
    let reason = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(reason.contains("certificate"), "refused for another reason: {}", describe(&refused));
    let bundle = rootfs.join("etc/ssl/certs/ca-certificates.crt");
    let mut pem = std::fs::read(&bundle).expect("CA bundle");
    pem.extend(std::fs::read(&ca.ca_cert).expect("test CA"));
    std::fs::write(&bundle, pem).expect("extend CA bundle");
    let copy = in_container(&rootfs, &env, &to_secure);
    assert_eq!(copy.status.code(), Some(0), "{}", describe(&copy));
    assert_eq!(skopeo_digest(&secure.skopeo_reference("mirror/app:v1"), &[]), built.digest().to_string());
}
