//! Expiry: blocks whose absolute time has passed (by control's wall clock)
//! leave the store, the log says so, and every worker is told.
//!
//! Workers also drop an expired block on their own when their sweep (or a
//! lookup) reaches it, by the same wall clock (`dataplane/src/clock.rs`);
//! this sweep keeps the store, the exports and the resync state in step.

use super::*;

/// Takes every block expired at `now_s` out of the store, logs each and
/// returns the rules that lift them with their generation (`None` when
/// nothing expired).
pub(super) fn sweep(
    state: &mut State,
    now_s: u32,
    notice: &mut impl FnMut(Notice),
) -> anyhow::Result<Option<(Vec<Rule>, u64)>> {
    let expired = state.store.take_expired(now_s)?;
    if expired.is_empty() {
        return Ok(None);
    }
    let rules: Vec<Rule> = expired.iter().map(unblock_rule).collect();
    let generation = state.store.next_generation()?;
    for b in &expired {
        state.store.stamp_removed(&b.net, b.len, generation)?;
        state.emit_unblock(&b.net, b.len, b.origin, Unblock::Expired)?;
    }
    notice(Notice::Expired(expired.len()));
    Ok(Some((rules, generation)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn v4(last: u8) -> [u8; 16] {
        std::net::Ipv4Addr::new(192, 0, 2, last)
            .to_ipv6_mapped()
            .octets()
    }

    #[test]
    fn what_expired_leaves_the_store_with_one_generation_and_the_rest_stays() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::for_test(dir.path(), crate::policy::Policy::default());
        for (last, expires) in [(1, 100), (2, 200), (3, 0)] {
            state
                .store
                .upsert_block(&Block::local(v4(last), 128, expires, "t"), 50)
                .unwrap();
        }
        let mut notices = Vec::new();
        assert_eq!(
            sweep(&mut state, 99, &mut |n| notices.push(n)).unwrap(),
            None
        );
        let (rules, generation) = sweep(&mut state, 150, &mut |n| notices.push(n))
            .unwrap()
            .unwrap();
        assert_eq!(
            rules,
            vec![Rule::Unblock {
                net: v4(1),
                len: 128
            }]
        );
        assert_eq!(notices, vec![Notice::Expired(1)]);
        // What resync by generation will send to a worker that missed it.
        let (_, removed) = state.store.changes_since(generation - 1, 150).unwrap();
        assert_eq!(removed, vec![(v4(1), 128)]);
        // The permanent block and the later one stay.
        assert!(state.store.block(&v4(2), 128).unwrap().is_some());
        assert!(state.store.block(&v4(3), 128).unwrap().is_some());
        assert!(sweep(&mut state, 1_000_000, &mut |_| {}).unwrap().is_some());
        assert!(
            state.store.block(&v4(3), 128).unwrap().is_some(),
            "permanent"
        );
    }
}
