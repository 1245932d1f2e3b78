//! The container image: `infra/image.sh` builds it offline (static musl release builds for
//! x86_64 and, cross-compiled with cargo-zigbuild, aarch64; then buildah on `infra/Dockerfile`'s
//! runtime stage per platform) and pushes one index to a local registry; skopeo checks the index,
//! each platform's config and layer (`file` checks each binary's architecture), and the native
//! binary taken out of its layer runs as the image would (chrooted into the image's filesystem as
//! its non-root user): `ocync version` and real copies. The FIPS variant (`--fips`, at
//! `TAG-fips`) is checked the same way, must report FIPS mode, and must refuse a TLS server that
//! offers only a cipher outside FIPS (ChaCha20-Poly1305), which the plain image accepts.
//!
//! The builds use Cargo.toml's `image-test` profile (unoptimised, stripped), not `--release`:
//! three cold release builds would cost CI half an hour. They share the suite's target dir and
//! run niced so the other tests keep their timing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use ocync::testing::testdata;

use crate::copy::{describe, seed};
use crate::support::tools::{free_port, require, skopeo, skopeo_digest, skopeo_raw};
use crate::support::{RegistryOptions, TestRegistry, tls};

const ENTRYPOINT: &str = "/usr/local/bin/ocync";
const USER: &str = "65532:65532";
/// The Cargo profile the image tests build with (`PROFILE` of infra/image.sh).
pub(crate) const TEST_PROFILE: &str = "image-test";

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
    assert!(output.status.success(), "{command:?} failed: {}", describe(&output));
    output
}

/// Fails, with the install command, unless every tool `infra/image.sh` needs is here (`fips`:
/// also those of the FIPS variant) and the test runs as root.
pub(crate) fn require_image_tools(fips: bool) {
    require("buildah", "apt-get install -y buildah");
    require("musl-gcc", "apt-get install -y musl-tools");
    let targets = run(Command::new("rustup").args(["target", "list", "--installed"]));
    for target in ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"] {
        assert!(
            String::from_utf8_lossy(&targets.stdout).lines().any(|t| t == target),
            "the musl target {target} is not installed; install it with: rustup target add {target}"
        );
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin");
    assert!(
        venv.join("cargo-zigbuild").is_file() && venv.join("python-zig").is_file(),
        "cargo-zigbuild and zig are missing; install them with: .venv/bin/pip install cargo-zigbuild ziglang (or run .ci/run)"
    );
    if fips {
        require("cmake", "apt-get install -y cmake");
        require("go", "apt-get install -y golang-go");
    }
    let uid = run(Command::new("id").arg("-u"));
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "buildah (vfs, chroot) and chroot need root, as in CI"
    );
}

/// Builds and pushes the image index with `infra/image.sh` (`--fips` first in `flags` for the
/// FIPS variant); returns the index digest it printed.
fn build_and_push(flags: &[&str], reference: &str) -> String {
    require_image_tools(flags.contains(&"--fips"));
    let started = Instant::now();
    let root = env!("CARGO_MANIFEST_DIR");
    let output = run(Command::new("nice")
        .args(["-n", "10", &format!("{root}/infra/image.sh")])
        .args(flags)
        .arg(reference)
        .env("PROFILE", TEST_PROFILE)
        .current_dir(root));
    eprintln!("infra/image.sh took {:?}\n{}", started.elapsed(), String::from_utf8_lossy(&output.stderr));
    let digest = String::from_utf8(output.stdout).expect("UTF-8 digest").trim().to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "image.sh printed {digest:?}");
    digest
}

/// The platforms an index lists, as `os/architecture`.
pub(crate) fn index_platforms(reference: &str) -> BTreeSet<String> {
    let index: serde_json::Value = serde_json::from_slice(&skopeo_raw(reference, &[])).expect("index JSON");
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json", "{index:#}");
    let manifests = index["manifests"].as_array().expect("an index");
    manifests
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or("?"),
                m["platform"]["architecture"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// The config of the index's `architecture` image as skopeo reads it.
fn config(reference: &str, architecture: &str) -> serde_json::Value {
    let output = run(Command::new(skopeo())
        .args(["inspect", "--config", "--tls-verify=false", "--override-os", "linux", "--override-arch", architecture])
        .arg(format!("docker://{reference}")));
    serde_json::from_slice(&output.stdout).expect("config JSON")
}

/// Unpacks the layers (in order) of the index's `architecture` image into `rootfs`, the way a
/// container runtime on such a node would.
fn unpack(reference: &str, architecture: &str, rootfs: &Path) {
    let layout = rootfs.with_extension("dir");
    run(Command::new(skopeo())
        .args(["copy", "--insecure-policy", "--src-tls-verify=false", "--override-os", "linux"])
        .args(["--override-arch", architecture])
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

/// The `architecture` image of the index at `reference`, unpacked into `dir/<architecture>` and
/// checked: non-root user, ocync as the entrypoint, only the binary and the CA bundle (no shell,
/// no libc, no passwd), a static binary for that architecture (`file` says `machine`). Returns
/// the root filesystem and the image's environment.
fn unpacked(reference: &str, architecture: &str, machine: &str, dir: &Path) -> (PathBuf, Vec<String>) {
    let config = config(reference, architecture);
    let (os, arch) = (&config["os"], &config["architecture"]);
    assert_eq!((os.as_str(), arch.as_str()), (Some("linux"), Some(architecture)), "{config:#}");
    let image_config = &config["config"];
    assert_eq!(image_config["User"], USER, "{config:#}");
    assert_eq!(image_config["Entrypoint"], serde_json::json!([ENTRYPOINT]), "{config:#}");
    let env: Vec<String> = image_config["Env"]
        .as_array()
        .map(|vars| vars.iter().map(|v| v.as_str().expect("env string").to_string()).collect())
        .unwrap_or_default();

    let rootfs = dir.join(architecture);
    unpack(reference, architecture, &rootfs);
    assert_eq!(
        files(&rootfs),
        BTreeSet::from([
            "etc/ssl/certs/ca-certificates.crt".to_string(),
            ENTRYPOINT.trim_start_matches('/').to_string()
        ]),
    );
    let binary = rootfs.join(ENTRYPOINT.trim_start_matches('/'));
    eprintln!("{architecture} static binary: {} bytes", std::fs::metadata(&binary).expect("binary").len());
    // Statically linked, for this architecture: no program interpreter.
    let file = run(Command::new(require("file", "apt-get install -y file")).arg(&binary));
    let file = String::from_utf8_lossy(&file.stdout).to_string();
    assert!(file.contains("static") && !file.contains("interpreter"), "not static: {file}");
    assert!(file.contains(machine), "{architecture}: not a {machine} binary: {file}");
    (rootfs, env)
}

/// `ocync version` of the binary in `rootfs`, run outside the image and inside it (as the pod
/// runs it: non-root, only the image's files, plus the writable /tmp the pod provides as an
/// emptyDir); returns what it printed.
fn version_inside_and_out(rootfs: &Path, env: &[String]) -> String {
    let binary = rootfs.join(ENTRYPOINT.trim_start_matches('/'));
    let ldd = Command::new(require("ldd", "apt-get install -y libc-bin")).arg(&binary).output().expect("run ldd");
    let ldd = format!("{}{}", String::from_utf8_lossy(&ldd.stdout), String::from_utf8_lossy(&ldd.stderr));
    assert!(ldd.contains("statically linked") || ldd.contains("not a dynamic executable"), "ldd: {ldd}");
    let outside = run(Command::new(&binary).arg("version"));
    let tmp = rootfs.join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    run(Command::new("chmod").arg("1777").arg(&tmp));
    let inside = in_container(rootfs, env, &["version"]);
    assert_eq!(inside.status.code(), Some(0), "{}", describe(&inside));
    assert_eq!(inside.stdout, outside.stdout, "the same binary reports the same build");
    let text = String::from_utf8_lossy(&inside.stdout).to_string();
    assert!(text.starts_with(&format!("ocync {}\n", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains("\ntarget: x86_64-unknown-linux-musl\n"), "{text}");
    text
}

/// The image copies an index between plain registries and, over HTTPS, trusts exactly its CA
/// bundle (no `ca_file`): a registry whose CA is not in it is refused, and accepted once the CA
/// is appended to /etc/ssl/certs/ca-certificates.crt. Then a server with that CA's certificate
/// that offers only ChaCha20-Poly1305: the FIPS variant (`fips`) must fail the TLS handshake,
/// the plain image must get through it.
async fn copies_over_http_and_https(rootfs: &Path, env: &[String], fips: bool) {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = testdata::index(7, &[(0, 256 * 1024)], &[("linux", "amd64"), ("linux", "arm64")], false);
    seed(&source, "team/app", "v1", &built).await;
    let copy =
        in_container(rootfs, env, &["copy", &source.reference("team/app:v1"), &target.reference("mirror/app:v1")]);
    assert_eq!(copy.status.code(), Some(0), "{}", describe(&copy));
    assert_eq!(skopeo_digest(&target.skopeo_reference("mirror/app:v1"), &[]), built.digest().to_string());

    let ca = tls::generate();
    let secure = TestRegistry::start(RegistryOptions { tls: Some(ca.server_pair()), ..Default::default() });
    let (from, to) = (source.reference("team/app:v1"), secure.reference("mirror/app:v1"));
    let to_secure = ["copy", from.as_str(), to.as_str()];
    let refused = in_container(rootfs, env, &to_secure);
    assert_ne!(refused.status.code(), Some(0), "a CA outside the bundle was trusted: {}", describe(&refused));
    let reason = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(reason.contains("certificate"), "refused for another reason: {}", describe(&refused));
    let bundle = rootfs.join("etc/ssl/certs/ca-certificates.crt");
    let mut pem = std::fs::read(&bundle).expect("CA bundle");
    pem.extend(std::fs::read(&ca.ca_cert).expect("test CA"));
    std::fs::write(&bundle, pem).expect("extend CA bundle");
    let copy = in_container(rootfs, env, &to_secure);
    assert_eq!(copy.status.code(), Some(0), "{}", describe(&copy));
    assert_eq!(skopeo_digest(&secure.skopeo_reference("mirror/app:v1"), &[]), built.digest().to_string());

    // `tags` GETs the tag list, which `openssl s_server -www` answers with an HTML page: past
    // the handshake, the plain image fails on that body; the FIPS variant never gets there.
    let chacha = ChaChaOnlyServer::start(&ca);
    let attempt = in_container(rootfs, env, &["tags", &format!("127.0.0.1:{}/team/app", chacha.port)]);
    assert_ne!(attempt.status.code(), Some(0), "the TLS server is no registry: {}", describe(&attempt));
    let stderr = String::from_utf8_lossy(&attempt.stderr).to_lowercase();
    let expected = if fips { "handshakefailure" } else { "malformed tag list" };
    assert!(stderr.contains(expected), "fips build: {fips}, expected {expected:?}: {}", describe(&attempt));
}

/// `openssl s_server -www` speaking TLS 1.3 with ChaCha20-Poly1305 only (no AES-GCM), with the
/// certificate `ca` issued; stopped (by PID) on drop.
struct ChaChaOnlyServer {
    child: std::process::Child,
    port: u16,
}

impl ChaChaOnlyServer {
    fn start(ca: &tls::TestCa) -> Self {
        let port = free_port();
        let child = Command::new(require("openssl", "apt-get install -y openssl"))
            .args(["s_server", "-quiet", "-www", "-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"])
            .arg("-accept")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&ca.server_cert)
            .arg("-key")
            .arg(&ca.server_key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed().as_secs() < 10, "openssl s_server does not listen on {port}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        ChaChaOnlyServer { child, port }
    }
}

impl Drop for ChaChaOnlyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_image_index_holds_static_non_root_amd64_and_arm64_images_and_the_native_one_copies_images() {
    let registry = TestRegistry::plain();
    let reference = registry.skopeo_reference("ocync:test");
    let digest = build_and_push(&[], &reference);
    assert_eq!(skopeo_digest(&reference, &[]), digest, "the registry serves the index digest image.sh printed");
    assert_eq!(index_platforms(&reference), BTreeSet::from(["linux/amd64".to_string(), "linux/arm64".to_string()]));

    let temp = tempfile::tempdir().expect("temp dir");
    // arm64: checked as built (this x86_64 machine cannot run it).
    unpacked(&reference, "arm64", "ARM aarch64", temp.path());
    let (rootfs, env) = unpacked(&reference, "amd64", "x86-64", temp.path());
    let version = version_inside_and_out(&rootfs, &env);
    assert!(version.contains("\nfeatures: none\n") && version.contains("\nfips: not enabled"), "{version}");
    copies_over_http_and_https(&rootfs, &env, false).await;
}

#[tokio::test]
async fn the_fips_variant_runs_in_fips_mode_and_refuses_a_tls_server_without_fips_ciphers() {
    let registry = TestRegistry::plain();
    let digest = build_and_push(&["--fips"], &registry.skopeo_reference("ocync:test"));
    let reference = registry.skopeo_reference("ocync:test-fips");
    assert_eq!(skopeo_digest(&reference, &[]), digest, "image.sh --fips pushes TAG-fips");
    assert_eq!(index_platforms(&reference), BTreeSet::from(["linux/amd64".to_string()]));

    let temp = tempfile::tempdir().expect("temp dir");
    let (rootfs, env) = unpacked(&reference, "amd64", "x86-64", temp.path());
    let version = version_inside_and_out(&rootfs, &env);
    assert!(version.contains("\nfeatures: fips\n"), "{version}");
    assert!(version.contains("\nfips: enabled (AWS-LC FIPS ") && version.contains("module in FIPS mode"), "{version}");
    // Every command passed the start-up FIPS check, and TLS runs on the FIPS provider.
    copies_over_http_and_https(&rootfs, &env, true).await;
}
