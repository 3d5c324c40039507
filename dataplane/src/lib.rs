//! baitwall's dataplane: zero-copy wire views, burst ports, the per-packet
//! engine and the pinned poll-mode workers that run it.
//!
//! A packet's path: a port's queue ([`io`]) hands a burst of frames to a
//! worker ([`worker`]), which runs each through the engine ([`engine`]:
//! classify, flow table) and transmits the burst; counters go to [`stats`].
//! [`runtime`] starts and stops the workers; [`config`] reads the TOML file.

pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod engine;
pub mod fuzzing;
pub mod io;
pub mod report;
pub mod rss;
pub mod run;
pub mod runtime;
pub mod stats;
pub mod synth;
pub mod wire;
pub mod worker;
