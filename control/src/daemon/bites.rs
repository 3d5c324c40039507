//! Bites and the policy: what a bite becomes, and what becomes of the
//! worker's provisional latch (confirmed with control's block, or lifted).

use super::*;

/// Handles a bite: history, log, policy, maybe a block (stored, logged,
/// queued for every worker in `pending` under this round's generation).
///
/// A bite the worker latched is provisional on the workers
/// (`[deception] provisional_latch`); control answers every one in the same
/// round: the stored block confirms it (its expiry or permanence replaces
/// the provisional one), or the latched prefix is lifted (the policy only
/// records this kind, the source is allowlisted, the store is full, or the
/// block was narrowed to keep an allowlisted address out of it).
pub(super) fn on_bite(
    state: &mut State,
    ev: &UpEvent,
    pending: &mut Vec<Rule>,
    batch: &mut Option<u64>,
    notice: &mut impl FnMut(Notice),
) -> anyhow::Result<()> {
    if let Some(e) = eve::from_up(ev) {
        state.emit(
            &e,
            Some(EventRow {
                time_ns: ev.time_ns,
                kind: code::bite_name(ev.bite),
                src: ev.src,
                dst: ev.dst,
                src_port: ev.src_port,
                dst_port: ev.dst_port,
                worker: ev.worker,
                action: code::action_name(ev.action),
                eve: None,
            }),
        )?;
    }
    let latched = (ev.action == code::ACTION_BLOCK).then(|| Policy::latched_net(ev));
    let confirmed = confirm(state, ev, pending, batch, notice)?;
    if let Some(net) = latched
        && confirmed != Some(net)
    {
        let why = match confirmed {
            Some(_) => "narrowed",
            None if state.allowed.iter().any(|n| covers(n, &ev.src)) => "allowlisted",
            None if state.refused_last => "max_blocks",
            None => "policy",
        };
        lift(state, net, why, pending, batch, notice)?;
    }
    Ok(())
}

/// The block the policy makes of a bite, stored and queued; its prefix, or
/// `None` when the bite blocks nothing.
pub(super) fn confirm(
    state: &mut State,
    ev: &UpEvent,
    pending: &mut Vec<Rule>,
    batch: &mut Option<u64>,
    notice: &mut impl FnMut(Notice),
) -> anyhow::Result<Option<Net>> {
    state.refused_last = false;
    let policy = &state.config.policy;
    let (net, len) = Policy::latched_net(ev);
    let times = state.store.times_blocked(&net, len)?;
    let decision = if state.allowed.iter().any(|n| covers(n, &ev.src)) {
        Decision::Allowed
    } else {
        policy.decide(ev, times)
    };
    let Decision::Block { mut net, r#for } = decision else {
        return Ok(None);
    };
    // A block never covers an allowlisted address (nor does any export of
    // it): a widened block (an IPv6 /64) that would is narrowed to the
    // biter itself. The dataplane's own latch already lets the allowlist
    // through (allow wins inside a block).
    if net.1 < 128 && state.allowed.iter().any(|a| overlap(a, &net)) {
        net = (ev.src, 128);
    }
    let block = Block::local(net.0, net.1, expires_after(r#for), code::bite_name(ev.bite));
    if times == 0 && state.store.count_blocks()? >= policy.max_blocks {
        state.refused += 1;
        state.refused_last = true;
        notice(Notice::Refused(block));
        return Ok(None);
    }
    let change = state.store.upsert_block(&block, now_s())?;
    if change == Change::Unchanged && ev.action != code::ACTION_BLOCK {
        return Ok(Some(net));
    }
    // Pushed even when the store did not change, if a worker latched: its
    // provisional expiry is replaced by the stored one.
    let g = match *batch {
        Some(g) => g,
        None => *batch.insert(state.store.next_generation()?),
    };
    if change != Change::Unchanged {
        state.store.stamp_block(&block.net, block.len, g)?;
    }
    let stored = state.store.block(&block.net, block.len)?.unwrap_or(block);
    pending.push(block_rule(&stored));
    if change != Change::Unchanged {
        state.emit_block(
            &stored,
            match change {
                Change::New => "new",
                _ => "extended",
            },
        )?;
        notice(Notice::Blocked {
            block: stored,
            change,
        });
    }
    Ok(Some(net))
}

/// Lifts a worker's provisional latch of `net` from every worker, unless
/// the store holds a block of exactly that prefix (then that is restored).
pub(super) fn lift(
    state: &mut State,
    net: Net,
    why: &'static str,
    pending: &mut Vec<Rule>,
    batch: &mut Option<u64>,
    notice: &mut impl FnMut(Notice),
) -> anyhow::Result<()> {
    if batch.is_none() {
        *batch = Some(state.store.next_generation()?);
    }
    match state.store.block(&net.0, net.1)? {
        Some(stored) if stored.expires == 0 || stored.expires > now_s() => {
            pending.push(block_rule(&stored));
        }
        _ => {
            pending.push(Rule::Unblock {
                net: net.0,
                len: net.1,
            });
            state.lifted += 1;
            notice(Notice::Lifted {
                net: net.0,
                len: net.1,
                why,
            });
        }
    }
    Ok(())
}

/// An absolute expiry `for` from now (0: permanent).
pub(super) fn expires_after(r#for: Duration) -> u32 {
    if r#for.is_zero() {
        0
    } else {
        now_s().saturating_add(u32::try_from(r#for.as_secs()).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use baitwall_channel::message::NO_PERSONA;

    fn bite(src: [u8; 16], action: u8, latched_len: u8) -> UpEvent {
        UpEvent {
            kind: kind::BITE,
            bite: code::BITE_DATA,
            action,
            allowlisted: false,
            strong: true,
            latched_len,
            worker: 0,
            time_ns: 1,
            src,
            dst: [0; 16],
            src_port: 40000,
            dst_port: 80,
            decoys: 0,
            persona: NO_PERSONA,
        }
    }

    fn v4(last: u8) -> [u8; 16] {
        std::net::Ipv4Addr::new(192, 0, 2, last)
            .to_ipv6_mapped()
            .octets()
    }

    /// The rules and notices one bite makes.
    fn decide(state: &mut State, ev: &UpEvent) -> (Vec<Rule>, Vec<Notice>) {
        let (mut pending, mut batch, mut notices) = (Vec::new(), None, Vec::new());
        on_bite(state, ev, &mut pending, &mut batch, &mut |n| {
            notices.push(n)
        })
        .unwrap();
        assert_eq!(
            pending.is_empty(),
            batch.is_none(),
            "rules go with a generation"
        );
        (pending, notices)
    }

    fn policy(text: &str) -> crate::policy::Policy {
        crate::policy::Policy::parse(text, "test").unwrap()
    }

    #[test]
    fn a_latch_the_policy_blocks_is_confirmed_with_controls_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::for_test(dir.path(), policy(""));
        let (rules, _) = decide(&mut state, &bite(v4(66), code::ACTION_BLOCK, 128));
        let stored = state.store.block(&v4(66), 128).unwrap().unwrap();
        assert!(stored.expires > now_s() + 3_500, "an hour, the default");
        assert_eq!(rules, vec![block_rule(&stored)]);
        // Latched again (a worker that lost it): pushed again though the
        // store does not change, so the provisional expiry is replaced.
        let (rules, notices) = decide(&mut state, &bite(v4(66), code::ACTION_BLOCK, 128));
        assert_eq!(rules, vec![block_rule(&stored)]);
        assert!(notices.is_empty());
    }

    #[test]
    fn a_latch_the_policy_does_not_keep_is_lifted_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::for_test(
            dir.path(),
            policy("[kinds]\ndata = { action = \"record\" }\n"),
        );
        let (rules, notices) = decide(&mut state, &bite(v4(66), code::ACTION_BLOCK, 128));
        assert_eq!(
            rules,
            vec![Rule::Unblock {
                net: v4(66),
                len: 128
            }]
        );
        assert_eq!(
            notices,
            vec![Notice::Lifted {
                net: v4(66),
                len: 128,
                why: "policy"
            }]
        );
        assert_eq!(state.lifted, 1);
        // An alert (nothing latched) asks nothing of the workers.
        let (rules, _) = decide(&mut state, &bite(v4(67), code::ACTION_ALERT, 0));
        assert!(rules.is_empty());
    }

    #[test]
    fn allowlisted_and_over_the_cap_latches_are_lifted() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::for_test(dir.path(), policy("allow = [\"192.0.2.64/30\"]\n"));
        let (rules, notices) = decide(&mut state, &bite(v4(66), code::ACTION_BLOCK, 128));
        assert_eq!(rules.len(), 1);
        assert!(matches!(
            notices[..],
            [Notice::Lifted {
                why: "allowlisted",
                ..
            }]
        ));
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::for_test(dir.path(), policy("max_blocks = 0\n"));
        let (_, notices) = decide(&mut state, &bite(v4(66), code::ACTION_BLOCK, 128));
        assert!(matches!(
            notices[..],
            [
                Notice::Refused(_),
                Notice::Lifted {
                    why: "max_blocks",
                    ..
                }
            ]
        ));
    }

    /// The worker's prefix is the block's; one that would cover an
    /// allowlisted address is narrowed to the biter, and the worker's
    /// wider latch lifted.
    #[test]
    fn the_latched_prefix_is_stored_or_narrowed_around_the_allowlist() {
        let ip = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::for_test(dir.path(), policy(""));
        let (rules, _) = decide(
            &mut state,
            &bite(ip("2001:db8:1:2::66"), code::ACTION_BLOCK, 56),
        );
        assert!(
            state
                .store
                .block(&ip("2001:db8:1::"), 56)
                .unwrap()
                .is_some()
        );
        assert_eq!(rules.len(), 1);
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::for_test(dir.path(), policy("allow = [\"2001:db8:1:2::200\"]\n"));
        let (rules, notices) = decide(
            &mut state,
            &bite(ip("2001:db8:1:2::66"), code::ACTION_BLOCK, 56),
        );
        assert!(
            state
                .store
                .block(&ip("2001:db8:1:2::66"), 128)
                .unwrap()
                .is_some()
        );
        assert!(rules.contains(&Rule::Unblock {
            net: ip("2001:db8:1::"),
            len: 56
        }));
        assert!(notices.iter().any(|n| matches!(
            n,
            Notice::Lifted {
                why: "narrowed",
                ..
            }
        )));
    }
}
