//! RFC 9162 Merkle tree hashing: leaf and interior hashes, the compact range used for appends, proof construction
//! over any node store, and the RFC's proof verification algorithms (§2.1.3.2 and §2.1.4.2).

use sha2::{Digest, Sha256};

use crate::error::ProofError;

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Proof that a leaf is in a tree of a given size: the RFC 9162 `inclusion_path`, leaf-side first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// Zero-based index of the leaf (= the entry's sequence number).
    pub leaf_index: u64,
    /// Size of the tree the proof is for.
    pub tree_size: u64,
    /// The audit path, from the leaf's sibling up to the root's child.
    pub path: Vec<Hash>,
}

/// Proof that a tree of `size1` leaves is a prefix of a tree of `size2` leaves: the RFC 9162 `consistency_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The older (smaller) tree size.
    pub size1: u64,
    /// The newer (larger) tree size.
    pub size2: u64,
    /// The consistency path.
    pub path: Vec<Hash>,
}

/// The leaf hash of `data`: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// A leaf hash computed in two steps: the bulk of the data first (outside any lock), the rest later.
#[derive(Debug, Clone)]
pub(crate) struct LeafHasher(Sha256);

impl LeafHasher {
    /// Starts SHA-256(0x00 ‖ prefix ‖ …).
    pub(crate) fn with_prefix(prefix: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(prefix);
        Self(h)
    }

    /// The leaf hash of the prefix followed by `rest`, leaving `self` untouched.
    pub(crate) fn finish(&self, rest: [&[u8]; 2]) -> Hash {
        let mut h = self.0.clone();
        for part in rest {
            h.update(part);
        }
        h.finalize().into()
    }
}

/// The interior node hash of two children: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Verifies an inclusion proof for `leaf_hash` against `root`, exactly as RFC 9162 §2.1.3.2 describes.
///
/// Needs no access to the log: only the leaf hash, the proof and a root the caller trusts (from a checkpoint).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    proof: &InclusionProof,
    root: &Hash,
) -> Result<(), ProofError> {
    let (index, size) = (proof.leaf_index, proof.tree_size);
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut f = index;
    let mut s = size - 1;
    let mut r = *leaf_hash;
    for p in &proof.path {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof between `root1` (tree of `size1`) and `root2` (tree of `size2`), exactly as
/// RFC 9162 §2.1.4.2 describes, with the edge cases the RFC leaves implicit: equal sizes need an empty proof and equal
/// roots; an empty first tree is consistent with everything and needs an empty proof.
pub fn verify_consistency(
    proof: &ConsistencyProof,
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    let (size1, size2) = (proof.size1, proof.size2);
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder { size1, size2 });
    }
    if size1 == size2 {
        if !proof.path.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if size1 == 0 {
        return if proof.path.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    // Step 1: an empty path fails.
    let Some(first) = proof.path.first() else {
        return Err(ProofError::WrongLength);
    };
    // Step 2: if size1 is an exact power of 2, prepend root1 to the path.
    let (start, rest): (&Hash, &[Hash]) = if size1.is_power_of_two() {
        (root1, &proof.path[..])
    } else {
        (first, &proof.path[1..])
    };
    // Steps 3 and 4.
    let mut f = size1 - 1;
    let mut s = size2 - 1;
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // Step 5.
    let mut fr = *start;
    let mut sr = *start;
    // Step 6.
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 7.
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != root1 || &sr != root2 {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Where complete subtree hashes come from: node `index` at `level` covers leaves `[index·2^level, (index+1)·2^level)`.
pub(crate) trait NodeSource {
    /// The error reading a node.
    type Error;
    /// The hash of a complete, aligned subtree.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// MTH(D[start : start+n]) for n ≥ 1, using stored complete subtrees wherever the range is aligned.
pub(crate) fn subtree_root<S: NodeSource>(src: &S, start: u64, n: u64) -> Result<Hash, S::Error> {
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return src.node(n.trailing_zeros(), start / n);
    }
    let k = split_point(n);
    let left = subtree_root(src, start, k)?;
    let right = subtree_root(src, start + k, n - k)?;
    Ok(node_hash(&left, &right))
}

/// The root of the first `size` leaves (the empty root for 0).
pub(crate) fn root_at<S: NodeSource>(src: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        Ok(EMPTY_ROOT)
    } else {
        subtree_root(src, 0, size)
    }
}

/// PATH(m, D[0:size]) of RFC 9162 §2.1.3.1. Preconditions (checked by the caller): m < size.
pub(crate) fn inclusion_path<S: NodeSource>(
    src: &S,
    m: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    let mut out = Vec::new();
    path_rec(src, m, 0, size, &mut out)?;
    Ok(out)
}

/// PROOF(m, D[0:size]) of RFC 9162 §2.1.4.1. Empty when m is 0 or m equals size. Precondition: m ≤ size.
pub(crate) fn consistency_path<S: NodeSource>(
    src: &S,
    m: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    let mut out = Vec::new();
    if m > 0 && m < size {
        subproof_rec(src, m, 0, size, true, &mut out)?;
    }
    Ok(out)
}

fn path_rec<S: NodeSource>(
    src: &S,
    m: u64,
    start: u64,
    n: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path_rec(src, m, start, k, out)?;
        out.push(subtree_root(src, start + k, n - k)?);
    } else {
        path_rec(src, m - k, start + k, n - k, out)?;
        out.push(subtree_root(src, start, k)?);
    }
    Ok(())
}

fn subproof_rec<S: NodeSource>(
    src: &S,
    m: u64,
    start: u64,
    n: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if m == n {
        if !complete {
            out.push(subtree_root(src, start, n)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof_rec(src, m, start, k, complete, out)?;
        out.push(subtree_root(src, start + k, n - k)?);
    } else {
        subproof_rec(src, m - k, start + k, n - k, false, out)?;
        out.push(subtree_root(src, start, k)?);
    }
    Ok(())
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The compact range of the tree's leaves `[0, size)`: one pending left-subtree hash per set bit of `size`.
/// Appending a leaf costs O(1) hashes amortised and reports every completed node so it can be stored.
#[derive(Debug, Clone, Default)]
pub(crate) struct Frontier {
    size: u64,
    pending: Vec<Hash>,
}

impl Frontier {
    /// Rebuilds the compact range of a tree of `size` leaves from stored complete subtrees.
    pub(crate) fn restore<S: NodeSource>(src: &S, size: u64) -> Result<Self, S::Error> {
        let mut pending = vec![[0u8; 32]; 64 - size.leading_zeros() as usize];
        for (level, slot) in pending.iter_mut().enumerate() {
            if (size >> level) & 1 == 1 {
                *slot = src.node(level as u32, (size >> level) - 1)?;
            }
        }
        Ok(Self { size, pending })
    }

    /// The number of leaves.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The pending left-subtree hashes, one slot per level (meaningful where `size` has that bit set).
    pub(crate) fn pending(&self) -> &[Hash] {
        &self.pending
    }

    /// A compact range saved earlier with [`Frontier::size`] and [`Frontier::pending`]. Nothing is trusted: a
    /// wrong saved state gives wrong roots, which the next signed checkpoint exposes.
    pub(crate) fn from_parts(size: u64, pending: Vec<Hash>) -> Self {
        Self { size, pending }
    }

    /// Appends a leaf; `on_node(level, index, hash)` is called for the leaf and every subtree it completes, in order.
    pub(crate) fn push(&mut self, leaf: Hash, mut on_node: impl FnMut(u32, u64, &Hash)) {
        let mut cur = leaf;
        let mut level = 0usize;
        let mut index = self.size;
        on_node(0, index, &cur);
        while index & 1 == 1 {
            let left = self.pending.get(level).copied().unwrap_or_default();
            cur = node_hash(&left, &cur);
            level += 1;
            index >>= 1;
            on_node(level as u32, index, &cur);
        }
        if self.pending.len() <= level {
            self.pending.resize(level + 1, [0u8; 32]);
        }
        self.pending[level] = cur;
        self.size += 1;
    }

    /// The root of the leaves appended so far.
    pub(crate) fn root(&self) -> Hash {
        let mut acc: Option<Hash> = None;
        for (level, h) in self.pending.iter().enumerate() {
            if (self.size >> level) & 1 == 1 {
                acc = Some(match acc {
                    None => *h,
                    Some(r) => node_hash(h, &r),
                });
            }
        }
        acc.unwrap_or(EMPTY_ROOT)
    }
}

/// Complete subtrees kept in memory, for tests.
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub(crate) struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

#[cfg(test)]
impl MemoryTree {
    pub(crate) fn from_leaves(leaves: &[Hash]) -> Self {
        let mut t = Self::default();
        for l in leaves {
            t.push(*l);
        }
        t
    }

    /// Appends a leaf hash.
    pub(crate) fn push(&mut self, leaf: Hash) {
        let levels = &mut self.levels;
        self.frontier.push(leaf, |level, _, h| {
            let level = level as usize;
            if levels.len() <= level {
                levels.resize_with(level + 1, Vec::new);
            }
            levels[level].push(*h);
        });
    }
}

/// A node that is not stored (the index is beyond the tree).
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct MissingNode;

#[cfg(test)]
impl NodeSource for MemoryTree {
    type Error = MissingNode;
    fn node(&self, level: u32, index: u64) -> Result<Hash, MissingNode> {
        self.levels
            .get(level as usize)
            .and_then(|l| usize::try_from(index).ok().and_then(|i| l.get(i)))
            .copied()
            .ok_or(MissingNode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference definition of MTH from RFC 9162 §2.1.1, computed recursively over leaf hashes.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        let h: Hash = Sha256::digest([]).into();
        assert_eq!(h, EMPTY_ROOT);
    }

    #[test]
    fn frontier_and_stored_subtrees_agree_with_the_recursive_definition() {
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut tree = MemoryTree::default();
        for n in 0..=leaves.len() {
            assert_eq!(
                tree.frontier.root(),
                mth(&leaves[..n]),
                "frontier root at {n}"
            );
            assert_eq!(
                root_at(&tree, n as u64).ok(),
                Some(mth(&leaves[..n])),
                "stored root at {n}"
            );
            let restored = Frontier::restore(&tree, n as u64).ok().map(|f| f.root());
            assert_eq!(restored, Some(mth(&leaves[..n])), "restored root at {n}");
            if n < leaves.len() {
                tree.push(leaves[n]);
            }
        }
    }

    #[test]
    fn split_point_is_the_largest_power_of_two_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(1 << 40), 1 << 39);
        assert_eq!(split_point((1 << 40) + 1), 1 << 40);
    }
}
