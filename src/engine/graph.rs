//! Manifest graphs: an index, its children, theirs. A registry decides the shape, so the walk
//! is bounded and shape-proof: children are de-duplicated by digest, every distinct manifest is
//! read once per run ([`Manifests`]), nesting is capped at [`MAX_INDEX_DEPTH`] and size at
//! [`MAX_GRAPH_MANIFESTS`], and nothing recurses, so an index nested thousands deep costs a
//! few requests and an error, not a stack overflow.
//!
//! The whole graph is walked before anything is pushed, so an image refused for its shape
//! leaves nothing behind at any target.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;
use tokio::sync::OnceCell;

use crate::oci::{Digest, Manifest, ManifestKind};
use crate::registry::{self, Registry};

/// Indexes nested in one image at most: real images have one index (a few tools nest two);
/// eight is far beyond any of them and still a handful of requests.
pub const MAX_INDEX_DEPTH: usize = 8;
/// Distinct manifests in one image at most: the largest real indexes list a few dozen
/// platforms and attestations; ten thousand bounds what a hostile index can make us fetch.
pub const MAX_GRAPH_MANIFESTS: usize = 10_000;
/// Manifest bytes kept for reuse over a run; past it, manifests are still read once per
/// graph (the walk de-duplicates) but no longer kept for later images. Manifests are a few KiB,
/// so this holds tens of thousands of them.
const MEMO_BYTES: usize = 64 * 1024 * 1024;

type Key = (String, String, Digest);

/// Manifest reads of one run, by registry, repository and digest: concurrent reads of the same
/// manifest wait for one request.
#[derive(Default)]
pub struct Manifests {
    cells: Mutex<HashMap<Key, Arc<OnceCell<Manifest>>>>,
    bytes: AtomicUsize,
}

impl Manifests {
    /// `digest` in `repository` at `registry`, read at most once per run (while the memo has room).
    pub async fn get<R: Registry>(
        &self,
        registry: &R,
        repository: &str,
        digest: &Digest,
    ) -> registry::Result<Manifest> {
        let key = (registry.name().to_string(), repository.to_string(), digest.clone());
        let cell = self.cells.lock().expect("manifest memo lock poisoned").entry(key.clone()).or_default().clone();
        let manifest =
            cell.get_or_try_init(|| async { registry.get_manifest(repository, digest.as_str()).await }).await?.clone();
        let kept = self.bytes.fetch_add(manifest.bytes.len(), Ordering::Relaxed) + manifest.bytes.len();
        if kept > MEMO_BYTES {
            // Full: forget this one again (only those already kept stay).
            self.bytes.fetch_sub(manifest.bytes.len(), Ordering::Relaxed);
            self.cells.lock().expect("manifest memo lock poisoned").remove(&key);
        }
        Ok(manifest)
    }
}

/// Why a graph was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Shape {
    /// Indexes nested deeper than [`MAX_INDEX_DEPTH`].
    #[error("indexes are nested more than {MAX_INDEX_DEPTH} levels deep; refused, nothing was pushed")]
    TooDeep,
    /// More distinct manifests than [`MAX_GRAPH_MANIFESTS`].
    #[error("the image has more than {MAX_GRAPH_MANIFESTS} distinct manifests; refused, nothing was pushed")]
    TooLarge,
    /// A manifest could not be parsed.
    #[error("manifest {digest}: {reason}")]
    Malformed {
        /// Its digest.
        digest: Digest,
        /// What the parser said.
        reason: String,
    },
}

/// Why a walk stopped: the graph's shape, or a read that failed.
#[derive(Debug)]
pub enum WalkError<E> {
    /// The graph is refused.
    Shape(Shape),
    /// A read failed.
    Read(E),
}

/// One distinct manifest of a graph, with what the walk attached to it.
pub struct Node<T> {
    /// The manifest as served.
    pub manifest: Manifest,
    /// Its children (de-duplicated, in first-listed order) or its blobs.
    pub kind: ManifestKind,
    /// What the reader returned with it (the targets that lack it, say).
    pub payload: T,
}

/// A walked graph: its nodes grouped by height, leaves (images) first and the top last.
pub struct Graph<T> {
    /// `levels[h]`: the nodes whose longest path down to an image has `h` index steps.
    pub levels: Vec<Vec<Node<T>>>,
}

impl<T> Graph<T> {
    /// Every node, leaves first, the top last.
    pub fn nodes(&self) -> impl Iterator<Item = &Node<T>> {
        self.levels.iter().flatten()
    }
}

/// Walks the graph below `top` breadth first, `fan_out` reads at once. `read` is asked once
/// per distinct child digest and returns the child's manifest with a payload, or `None` to
/// leave it (and what is below it) out: a target that has it has everything below it too.
pub async fn walk<T, E, F, Fut>(
    top: Manifest,
    top_payload: T,
    fan_out: usize,
    read: F,
) -> Result<Graph<T>, WalkError<E>>
where
    F: Fn(Digest) -> Fut,
    Fut: Future<Output = Result<Option<(Manifest, T)>, E>>,
{
    let kind_of = |manifest: &Manifest| {
        manifest
            .kind()
            .map(dedupe)
            .map_err(|e| WalkError::Shape(Shape::Malformed { digest: manifest.digest.clone(), reason: e.to_string() }))
    };
    let top_digest = top.digest.clone();
    let mut seen = HashSet::from([top_digest.clone()]);
    let mut nodes: HashMap<Digest, Node<T>> = HashMap::new();
    let mut frontier = vec![top_digest.clone()];
    let kind = kind_of(&top)?;
    nodes.insert(top_digest.clone(), Node { manifest: top, kind, payload: top_payload });
    // `depth` is the frontier's distance from the top; an index at depth d is the (d+1)-th
    // level of nesting, so one at depth MAX_INDEX_DEPTH is refused before its children are read.
    for depth in 0.. {
        let mut wanted = Vec::new();
        for digest in &frontier {
            let ManifestKind::Index { children } = &nodes[digest].kind else { continue };
            if depth >= MAX_INDEX_DEPTH {
                return Err(WalkError::Shape(Shape::TooDeep));
            }
            wanted.extend(children.iter().filter(|c| seen.insert(c.digest.clone())).map(|c| c.digest.clone()));
        }
        if wanted.is_empty() {
            break;
        }
        if seen.len() > MAX_GRAPH_MANIFESTS {
            return Err(WalkError::Shape(Shape::TooLarge));
        }
        let read = &read;
        let found: Vec<Result<Option<(Manifest, T)>, E>> =
            futures_util::stream::iter(wanted.into_iter().map(read)).buffered(fan_out.max(1)).collect().await;
        frontier = Vec::new();
        for result in found {
            let Some((manifest, payload)) = result.map_err(WalkError::Read)? else { continue };
            let kind = kind_of(&manifest)?;
            frontier.push(manifest.digest.clone());
            nodes.insert(manifest.digest.clone(), Node { manifest, kind, payload });
        }
    }
    let heights = heights(&nodes)?;
    if heights[&top_digest] > MAX_INDEX_DEPTH {
        return Err(WalkError::Shape(Shape::TooDeep));
    }
    let mut levels: Vec<Vec<Node<T>>> = Vec::new();
    levels.resize_with(heights[&top_digest] + 1, Vec::new);
    for (digest, node) in nodes {
        levels[heights[&digest]].push(node);
    }
    // Every other node is below the top, so the top is alone on the last level: pushes by
    // tag come after every push by digest.
    Ok(Graph { levels })
}

/// An index's children with repeats removed (an index may list one child many times).
fn dedupe(kind: ManifestKind) -> ManifestKind {
    match kind {
        ManifestKind::Index { children } => {
            let mut seen = HashSet::new();
            ManifestKind::Index { children: children.into_iter().filter(|c| seen.insert(c.digest.clone())).collect() }
        }
        image => image,
    }
}

/// Each node's height (images 0, an index one more than its highest child), computed without
/// recursion from the leaves up. Children left out of the graph count as images.
fn heights<T, E>(nodes: &HashMap<Digest, Node<T>>) -> Result<HashMap<Digest, usize>, WalkError<E>> {
    let children = |node: &Node<T>| match &node.kind {
        ManifestKind::Index { children } => children.iter().filter(|c| nodes.contains_key(&c.digest)).count(),
        ManifestKind::Image { .. } => 0,
    };
    let mut parents: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
    for (digest, node) in nodes {
        if let ManifestKind::Index { children } = &node.kind {
            for child in children.iter().filter(|c| nodes.contains_key(&c.digest)) {
                parents.entry(&child.digest).or_default().push(digest);
            }
        }
    }
    let mut waiting: HashMap<&Digest, usize> = nodes.iter().map(|(d, n)| (d, children(n))).collect();
    let mut heights: HashMap<Digest, usize> = HashMap::new();
    let mut ready: Vec<&Digest> = waiting.iter().filter(|(_, n)| **n == 0).map(|(d, _)| *d).collect();
    for digest in &ready {
        let own = usize::from(matches!(nodes[*digest].kind, ManifestKind::Index { .. }));
        heights.insert((*digest).clone(), own);
    }
    while let Some(digest) = ready.pop() {
        let height = heights[digest];
        for parent in parents.get(digest).into_iter().flatten() {
            let entry = heights.entry((*parent).clone()).or_default();
            *entry = (*entry).max(height + 1);
            let left = waiting.get_mut(parent).expect("every parent is a node");
            *left -= 1;
            if *left == 0 {
                ready.push(parent);
            }
        }
    }
    // Content addressing rules out cycles; a registry serving one anyway is refused.
    if heights.len() != nodes.len() {
        return Err(WalkError::Shape(Shape::TooDeep));
    }
    Ok(heights)
}
