//! Enforcement beyond the dataplane: the firewall's nftables sets, kept
//! equal to the block state by a thread of their own. (BGP is the other
//! layer: the ExaBGP bridge in [`crate::bgp`] runs beside ExaBGP, not in
//! control, and talks to control through the socket.) docs/enforcement.md
//! describes the layers and how each fails.

pub mod nft;
pub mod nft_plan;

use serde_json::{Value, json};

use crate::config::ControlConfig;
use crate::policy::Net;
use crate::store::Block;
use nft::{NftSync, Report};

/// The exports control keeps in sync with its blocks.
#[derive(Default)]
pub struct Exports {
    nft: Option<NftSync>,
}

impl Exports {
    /// Starts the configured exports with the blocks in force now and the
    /// allowlist.
    pub fn start(
        config: &ControlConfig,
        blocks: &[Block],
        allows: Vec<Net>,
    ) -> std::io::Result<Exports> {
        let nft = match &config.nftables {
            Some(section) => Some(NftSync::start(
                section.clone(),
                blocks.iter().map(|b| ((b.net, b.len), b.expires)).collect(),
                allows,
            )?),
            None => None,
        };
        Ok(Exports { nft })
    }

    /// The allowlist changed: these are its entries now.
    pub fn allows(&self, allows: &[Net]) {
        if let Some(n) = &self.nft {
            n.allows(allows.to_vec());
        }
    }

    /// A block was made, extended or learned.
    pub fn block(&self, b: &Block) {
        if let Some(n) = &self.nft {
            n.set((b.net, b.len), b.expires);
        }
    }

    /// A block ended.
    pub fn unblock(&self, net: &[u8; 16], len: u8) {
        if let Some(n) = &self.nft {
            n.remove((*net, len));
        }
    }

    /// The nftables sync's state, when configured.
    pub fn nft_status(&self) -> Option<nft::NftStatus> {
        self.nft.as_ref().map(NftSync::status)
    }

    /// Each export's state, for `status`.
    pub fn status(&self) -> Value {
        json!({
            "nftables": self.nft.as_ref().map(|n| serde_json::to_value(n.status()).unwrap_or(Value::Null)),
        })
    }

    /// Failures and recoveries since the last call, as (target, report).
    pub fn reports(&self) -> Vec<(&'static str, Report)> {
        self.nft
            .as_ref()
            .map(|n| n.reports().into_iter().map(|r| ("nftables", r)).collect())
            .unwrap_or_default()
    }
}
