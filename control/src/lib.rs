//! baitwall's control process: attaches to the dataplane's region, drains
//! every worker's events, decides and stores blocks, and pushes each block
//! to every worker.

pub mod api;
pub mod bgp;
pub mod cli;
pub mod config;
pub mod counters;
pub mod ctl;
pub mod daemon;
pub mod downlink;
pub mod enforce;
pub mod eve;
pub mod metrics;
pub mod policy;
pub mod store;
