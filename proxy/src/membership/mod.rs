//! Replica membership: which proxies form the cluster, and which of them may write each
//! partition. See docs/replicas.md.

pub mod view;
