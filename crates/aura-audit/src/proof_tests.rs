//! Proof construction and verification against the RFC 6962 reference vectors, and mutation tests across random
//! trees: every corrupted proof, root, leaf, index or size must be rejected.

use proptest::prelude::*;

use crate::error::ProofError;
use crate::merkle::*;

fn h(hex_str: &str) -> Hash {
    hex::decode(hex_str).unwrap().try_into().unwrap()
}

/// Leaves and roots from transparency-dev/merkle `proof/verify_test.go` (the RFC 6962 reference data also used by
/// google/certificate-transparency): `roots[i]` is the root of the first `i + 1` leaves.
fn reference() -> (Vec<Vec<u8>>, Vec<Hash>) {
    let leaves = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|l| hex::decode(l).unwrap())
    .collect();
    let roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
    .iter()
    .map(|r| h(r))
    .collect();
    (leaves, roots)
}

fn tree_of(leaves: &[Vec<u8>]) -> MemoryTree {
    MemoryTree::from_leaves(&leaves.iter().map(|l| leaf_hash(l)).collect::<Vec<_>>())
}

#[test]
fn roots_match_the_reference_vectors() {
    let (leaves, roots) = reference();
    for n in 1..=leaves.len() {
        assert_eq!(
            root_at(&tree_of(&leaves[..n]), n as u64).unwrap(),
            roots[n - 1],
            "root of {n} leaves"
        );
    }
}

#[test]
fn inclusion_proofs_match_the_reference_vectors() {
    // (leaf index, tree size, path): transparency-dev/merkle proof/verify_test.go `inclusionProofs` (1-based there).
    let cases: [(u64, u64, &[&str]); 4] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    let (leaves, roots) = reference();
    for (index, size, want) in cases {
        let tree = tree_of(&leaves[..size as usize]);
        let path = inclusion_path(&tree, index, size).unwrap();
        assert_eq!(
            path,
            want.iter().map(|x| h(x)).collect::<Vec<_>>(),
            "path for {index} in {size}"
        );
        let proof = InclusionProof {
            leaf_index: index,
            tree_size: size,
            path,
        };
        let leaf = leaf_hash(&leaves[index as usize]);
        assert_eq!(
            verify_inclusion(&leaf, &proof, &roots[size as usize - 1]),
            Ok(())
        );
    }
}

#[test]
fn consistency_proofs_match_the_reference_vectors() {
    // transparency-dev/merkle proof/verify_test.go `consistencyProofs`.
    let cases: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    let (leaves, roots) = reference();
    for (size1, size2, want) in cases {
        let tree = tree_of(&leaves[..size2 as usize]);
        let path = consistency_path(&tree, size1, size2).unwrap();
        assert_eq!(
            path,
            want.iter().map(|x| h(x)).collect::<Vec<_>>(),
            "proof {size1} -> {size2}"
        );
        let proof = ConsistencyProof { size1, size2, path };
        assert_eq!(
            verify_consistency(
                &proof,
                &roots[size1 as usize - 1],
                &roots[size2 as usize - 1]
            ),
            Ok(())
        );
    }
}

#[test]
fn consistency_edge_cases_follow_the_reference_verifier() {
    // transparency-dev/merkle proof/verify_test.go `TestVerifyConsistency`.
    let (r1, r2) = ([1u8; 32], [2u8; 32]);
    let p = |size1, size2, path: Vec<Hash>| ConsistencyProof { size1, size2, path };
    assert!(verify_consistency(&p(0, 0, vec![]), &r1, &r2).is_err());
    assert!(verify_consistency(&p(1, 1, vec![]), &r1, &r2).is_err());
    assert!(verify_consistency(&p(0, 0, vec![]), &r1, &r1).is_ok());
    assert!(verify_consistency(&p(0, 1, vec![]), &r1, &r2).is_ok());
    assert!(verify_consistency(&p(1, 1, vec![]), &r2, &r2).is_ok());
    assert!(verify_consistency(&p(1, 0, vec![]), &r1, &r2).is_err());
    assert!(verify_consistency(&p(2, 1, vec![]), &r1, &r2).is_err());
    assert!(verify_consistency(&p(1, 2, vec![]), &r1, &r2).is_err());
    assert!(verify_consistency(&p(0, 0, vec![EMPTY_ROOT]), &EMPTY_ROOT, &EMPTY_ROOT).is_err());
    assert!(verify_consistency(&p(0, 1, vec![EMPTY_ROOT]), &EMPTY_ROOT, &EMPTY_ROOT).is_err());
    assert!(verify_consistency(&p(1, 1, vec![EMPTY_ROOT]), &EMPTY_ROOT, &EMPTY_ROOT).is_err());
}

#[test]
fn inclusion_rejects_out_of_range_indexes() {
    let proof = |i, n| InclusionProof {
        leaf_index: i,
        tree_size: n,
        path: vec![],
    };
    for (i, n) in [(0, 0), (1, 0), (2, 1)] {
        assert_eq!(
            verify_inclusion(&[0; 32], &proof(i, n), &EMPTY_ROOT),
            Err(ProofError::IndexOutOfRange { index: i, size: n })
        );
    }
}

fn random_tree(n: u64, seed: u64) -> (MemoryTree, Vec<Hash>) {
    let leaves: Vec<Hash> = (0..n)
        .map(|i| leaf_hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat()))
        .collect();
    (MemoryTree::from_leaves(&leaves), leaves)
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut x = *h;
    x[bit / 8 % 32] ^= 1 << (bit % 8);
    x
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn inclusion_proofs_verify_and_every_mutation_is_rejected(
        n in 1u64..300, index_seed in any::<u64>(), seed in any::<u64>(), bit in 0usize..256,
    ) {
        let (tree, leaves) = random_tree(n, seed);
        let index = index_seed % n;
        let root = root_at(&tree, n).unwrap();
        let leaf = leaves[index as usize];
        let proof = InclusionProof { leaf_index: index, tree_size: n, path: inclusion_path(&tree, index, n).unwrap() };
        prop_assert_eq!(verify_inclusion(&leaf, &proof, &root), Ok(()));

        // A bit flip in any proof element, the root or the leaf.
        for i in 0..proof.path.len() {
            let mut p = proof.clone();
            p.path[i] = flip(&p.path[i], bit);
            prop_assert!(verify_inclusion(&leaf, &p, &root).is_err(), "flipped proof[{}]", i);
        }
        prop_assert!(verify_inclusion(&leaf, &proof, &flip(&root, bit)).is_err());
        prop_assert!(verify_inclusion(&flip(&leaf, bit), &proof, &root).is_err());
        // Truncated and extended proofs.
        if !proof.path.is_empty() {
            let mut p = proof.clone();
            p.path.pop();
            prop_assert!(verify_inclusion(&leaf, &p, &root).is_err(), "truncated");
            let mut p = proof.clone();
            p.path.remove(0);
            prop_assert!(verify_inclusion(&leaf, &p, &root).is_err(), "front removed");
        }
        for extra in [root, EMPTY_ROOT, leaf] {
            let mut p = proof.clone();
            p.path.push(extra);
            prop_assert!(verify_inclusion(&leaf, &p, &root).is_err(), "extended");
            let mut p = proof.clone();
            p.path.insert(0, extra);
            prop_assert!(verify_inclusion(&leaf, &p, &root).is_err(), "prepended");
        }
        // Wrong root: the root of a smaller tree of the same log.
        if n > 1 {
            prop_assert!(verify_inclusion(&leaf, &proof, &root_at(&tree, n - 1).unwrap()).is_err());
        }
        // Index off by one (against the same leaf and root).
        for i in [index.wrapping_sub(1), index + 1, index ^ 2] {
            if i != index {
                let p = InclusionProof { leaf_index: i, ..proof.clone() };
                prop_assert!(verify_inclusion(&leaf, &p, &root).is_err(), "index {} instead of {}", i, index);
            }
        }
        // Size off by one, against that size's real root: a proof for one tree size proves nothing about another.
        // (With the *same* root a changed size is not always detectable: the RFC algorithm, like the reference Go
        // verifier, accepts index 0 of size 5 as index 0 of size 6, because the root, not the size, is what the
        // proof binds. Checkpoints sign size and root together, which closes that gap.)
        for m in [n - 1, n + 1] {
            if m > index && m != n && m <= n {
                let p = InclusionProof { tree_size: m, ..proof.clone() };
                prop_assert!(verify_inclusion(&leaf, &p, &root_at(&tree, m).unwrap()).is_err(), "size {} instead of {}", m, n);
            }
        }
        let (bigger, _) = random_tree(n + 1, seed);
        let p = InclusionProof { tree_size: n + 1, ..proof.clone() };
        prop_assert!(verify_inclusion(&leaf, &p, &root_at(&bigger, n + 1).unwrap()).is_err(), "size n+1");
    }

    #[test]
    fn consistency_proofs_verify_and_every_mutation_is_rejected(
        n2 in 2u64..300, m_seed in any::<u64>(), seed in any::<u64>(), bit in 0usize..256,
    ) {
        let (tree, _) = random_tree(n2, seed);
        let n1 = 1 + m_seed % (n2 - 1); // 1 ≤ n1 < n2: the non-trivial case
        let (r1, r2) = (root_at(&tree, n1).unwrap(), root_at(&tree, n2).unwrap());
        let proof = ConsistencyProof { size1: n1, size2: n2, path: consistency_path(&tree, n1, n2).unwrap() };
        prop_assert_eq!(verify_consistency(&proof, &r1, &r2), Ok(()));
        prop_assert!(!proof.path.is_empty());

        for i in 0..proof.path.len() {
            let mut p = proof.clone();
            p.path[i] = flip(&p.path[i], bit);
            prop_assert!(verify_consistency(&p, &r1, &r2).is_err(), "flipped proof[{}]", i);
        }
        prop_assert!(verify_consistency(&proof, &flip(&r1, bit), &r2).is_err(), "root1 flipped");
        prop_assert!(verify_consistency(&proof, &r1, &flip(&r2, bit)).is_err(), "root2 flipped");
        prop_assert!(verify_consistency(&proof, &r2, &r1).is_err(), "swapped roots");
        let mut p = proof.clone();
        p.path.pop();
        prop_assert!(verify_consistency(&p, &r1, &r2).is_err(), "truncated");
        prop_assert!(verify_consistency(&ConsistencyProof { path: vec![], ..proof.clone() }, &r1, &r2).is_err(), "empty");
        for extra in [r1, r2, EMPTY_ROOT, proof.path[0]] {
            let mut p = proof.clone();
            p.path.push(extra);
            prop_assert!(verify_consistency(&p, &r1, &r2).is_err(), "extended");
            let mut p = proof.clone();
            p.path.insert(0, extra);
            prop_assert!(verify_consistency(&p, &r1, &r2).is_err(), "prepended");
        }
        // Sizes off by one, each checked against the real roots of the sizes claimed.
        for (m1, m2) in [(n1 - 1, n2), (n1 + 1, n2), (n1, n2 - 1), (n1, n2 + 1)] {
            if (m1, m2) == (n1, n2) || m1 == 0 || m1 >= m2 || m2 > n2 {
                continue;
            }
            let p = ConsistencyProof { size1: m1, size2: m2, path: proof.path.clone() };
            let (q1, q2) = (root_at(&tree, m1).unwrap(), root_at(&tree, m2).unwrap());
            prop_assert!(verify_consistency(&p, &q1, &q2).is_err(), "sizes {}->{} instead of {}->{}", m1, m2, n1, n2);
        }
    }
}
