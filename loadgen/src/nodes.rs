//! Which gateway node (client address, admin address) each connection uses
//! when the run is given several: round-robin by connection index, or, for
//! the direct scenario's pairs, placed so a pair's two users share a node or
//! sit on two different ones.

/// How connections are spread over the nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// User `i` on node `i % N`.
    #[default]
    RoundRobin,
    /// Direct pairs split: user `2k` on node `k % N`, user `2k+1` on node
    /// `(k+1) % N` (two different nodes when N > 1).
    Split,
    /// Direct pairs together: users `2k` and `2k+1` both on node `k % N`.
    Together,
}

impl Placement {
    /// The node (index into the address list) of `user` among `nodes`.
    pub fn node_of(self, user: u64, nodes: usize) -> usize {
        let n = nodes.max(1) as u64;
        let node = match self {
            Placement::RoundRobin => user % n,
            Placement::Split => (user / 2 + user % 2) % n,
            Placement::Together => (user / 2) % n,
        };
        node as usize
    }

    /// Name used in result labels and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Placement::RoundRobin => "round-robin",
            Placement::Split => "split",
            Placement::Together => "together",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Placement;

    #[test]
    fn round_robin_by_connection_index() {
        let nodes: Vec<usize> = (0..7)
            .map(|u| Placement::RoundRobin.node_of(u, 3))
            .collect();
        assert_eq!(nodes, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(Placement::RoundRobin.node_of(5, 1), 0);
        assert_eq!(Placement::RoundRobin.node_of(5, 0), 0);
    }

    #[test]
    fn split_pairs_never_share_a_node() {
        for n in 2..6 {
            for pair in 0..100u64 {
                let a = Placement::Split.node_of(2 * pair, n);
                let b = Placement::Split.node_of(2 * pair + 1, n);
                assert_ne!(a, b, "pair {pair} on {n} nodes");
                assert_eq!(a, (pair as usize) % n);
                assert_eq!(b, (pair as usize + 1) % n);
            }
        }
        // One node: everyone on it.
        assert_eq!(Placement::Split.node_of(3, 1), 0);
    }

    #[test]
    fn together_pairs_share_a_node_and_spread() {
        let mut per_node = [0u32; 3];
        for pair in 0..300u64 {
            let a = Placement::Together.node_of(2 * pair, 3);
            assert_eq!(a, Placement::Together.node_of(2 * pair + 1, 3));
            per_node[a] += 1;
        }
        assert_eq!(per_node, [100, 100, 100]);
    }
}
