//! baitwall's control process: attaches to the dataplane's region, drains
//! every worker's events, decides and stores blocks, and pushes each block
//! to every worker.

pub mod api;
pub mod cli;
pub mod ctl;
pub mod daemon;
pub mod policy;
pub mod store;
