//! Exposition: the only room that knows the prometheus crate. [`family`] is the builder
//! every source's `expose` uses (a leaf); [`render`](mod@render) joins the sources' families from a
//! snapshot into `/metrics`.

pub mod family;
pub mod render;

pub use family::Family;
pub use render::{SnapshotCollector, families, render};
