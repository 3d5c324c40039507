//! baitwall's dataplane: zero-copy wire views, burst ports, the per-packet
//! engine and the pinned poll-mode workers that run it.
//!
//! A packet's path: a port's queue ([`io`]) hands a burst of frames to a
//! worker ([`worker`]), which runs each through the engine ([`engine`]:
//! classify, flow table) and transmits the burst; counters go to [`stats`].
//! [`runtime`] starts and stops the workers; [`config`] reads the TOML file.
//!
//! The engine needs no I/O, so it runs on a plain byte vector:
//!
//! ```
//! use std::net::Ipv4Addr;
//! use baitwall_dataplane::engine::{DropReason, Engine, EngineConfig, Verdict};
//! use baitwall_dataplane::synth::{self, Endpoint, Flags};
//!
//! let client = Endpoint::new([2, 0, 0, 0, 0, 1], Ipv4Addr::new(203, 0, 113, 5), 40000);
//! let server = Endpoint::new([2, 0, 0, 0, 0, 2], Ipv4Addr::new(198, 51, 100, 10), 80);
//! let mut syn = synth::tcp(&client, &server, Flags::SYN, 1, 0, &[]);
//!
//! let mut engine = Engine::new(&EngineConfig { flow_capacity: 1024, ..EngineConfig::default() });
//! assert_eq!(engine.process(&mut syn, 0), Verdict::Forward);
//! assert_eq!(engine.flows().len(), 1);
//!
//! syn[14] = 0x44; // IHL 4: the IPv4 header lies about its length
//! assert_eq!(engine.process(&mut syn, 0), Verdict::Drop(DropReason::BadHeaderLen));
//! ```

pub mod capture;
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
pub mod testbed;
pub mod wire;
pub mod worker;
