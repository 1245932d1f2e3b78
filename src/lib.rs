//! ocync mirrors container images, multi-arch indexes and OCI artifacts between registries,
//! bit for bit.
//!
//! Crate map, from the ground floor up (a module only uses those above it in this list):
//! - [`text`]: text made safe for terminals and logs (control characters escaped), and an
//!   error's cause chain as one line.
//! - [`oci`]: references, digests, media types, manifests (pure).
//! - [`aws`]: AWS SDK config loading and SDK errors described without request details.
//! - [`fips`]: which crypto module runs, and the start-up check of `fips` builds.
//! - [`registry`]: the [`registry::Registry`] seam and its HTTP client (auth, uploads, retries,
//!   pacing).
//! - [`config`]: the `ocync.yaml` format and how registry settings are resolved from it.
//! - [`connect`]: registry clients built from the config: settings and credentials per host.
//! - [`filter`]: tag selection (pure).
//! - [`plan`]: which tags a mapping keeps and which targets need each image (pure).
//! - [`cancel`]: the cancellation flag (signals, deadlines).
//! - [`engine`]: copies one image to any number of targets: children before index, blobs
//!   before manifest, each blob read once.
//! - [`sync`]: a whole run: discover, plan, execute, report.
//! - [`verify`]: signature checks before mirroring (cosign `.sig` tags, Sigstore bundles).
//! - [`watch`]: watch mode: the sync loop, health and metrics endpoints.
//! - `lambda` (feature `lambda`): the Lambda handler (schedule fan-out, SQS workers).
//! - [`mirror`]: mirror configuration for clusters and hosts that pull from the mirror (pure).
//! - [`pull_secret`]: ECR tokens into a Kubernetes pull secret, merged byte for byte.
//! - [`logging`]: the log filter of the binaries, with secret-printing targets capped.
//! - [`cli`]: the command-line surface; `bin/ocync.rs` only calls [`cli::run`].
//! - `testing` (feature `testing`, and the crate's unit tests): test images, the counting
//!   in-memory registry and the planning benchmark; never part of the product.
//!
//! Runtime model: everything is async on one multi-threaded tokio runtime built by the binary.
//! Blob bodies stream from source to target through a digest verifier; nothing buffers a
//! whole layer.

pub mod aws;
pub mod cancel;
// The command line owns the terminal: its output is what the user asked for.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub mod cli;
pub mod config;
pub mod connect;
pub mod engine;
pub mod filter;
pub mod fips;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod logging;
pub mod mirror;
pub mod oci;
pub mod plan;
pub mod pull_secret;
pub mod registry;
pub mod sync;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text;
pub mod verify;
pub mod watch;
