//! Parts of the query API with a module of their own: crash groups (top crashers, one group,
//! hiding, comments, the skip list and regroup) and the hardware view. Each module has its
//! `routes()`, merged into [`crate::http::router`].

pub mod crash_groups;
pub mod hardware;
