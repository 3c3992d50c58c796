//! Inode numbers as the kernel sees them.

use std::fmt;

use estargz::index::NodeId;

/// A FUSE inode number: [`NodeId`] plus one, so the layer root (node 0) is inode 1, the
/// number the kernel uses for the root of every FUSE mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ino(pub u64);

impl Ino {
    /// The root directory.
    pub const ROOT: Ino = Ino(1);

    /// The inode number of a node.
    pub fn from_node(node: NodeId) -> Ino {
        Ino(u64::from(node.0) + 1)
    }

    /// The node of this inode number, or `None` for 0 and numbers beyond `u32`.
    pub fn node(self) -> Option<NodeId> {
        let id = self.0.checked_sub(1)?;
        u32::try_from(id).ok().map(NodeId)
    }
}

impl fmt::Display for Ino {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_node_is_inode_one() {
        assert_eq!(Ino::from_node(NodeId::ROOT), Ino::ROOT);
        assert_eq!(Ino::ROOT.node(), Some(NodeId::ROOT));
        assert_eq!(Ino(0).node(), None);
        assert_eq!(Ino(u64::from(u32::MAX) + 2).node(), None);
    }
}
