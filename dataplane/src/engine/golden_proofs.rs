//! Golden tables for the strength of bites (issue 15): a strong proof (the
//! decoy's timestamp echoed, `engine::tsproof`) latches whatever anyone
//! sent in the source's name; a wrong echo never latches; an echo older
//! than the proof window, and a client without timestamps, give weak
//! proofs, which latch only as the source's one weak try of the day
//! (`engine::ticket`).

use super::*;

/// The TSval of a decoy's reply (the timestamps option, kind 8).
fn tsval_of(frame: &[u8]) -> u32 {
    let o = tcp_reply(frame).options;
    let mut i = 0;
    while i < o.len() {
        match o[i] {
            0 => break,
            1 => i += 1,
            8 => return u32::from_be_bytes([o[i + 2], o[i + 3], o[i + 4], o[i + 5]]),
            _ => i += usize::from(o[i + 1].max(2)),
        }
    }
    panic!("no timestamps in {o:?}")
}

/// The first dark decoy with `port` open whose persona has a TCP clock.
fn clocked_decoy(port: u16) -> Endpoint {
    for last in 20..=250u8 {
        let a = v4(&format!("198.51.100.{last}"));
        let p = persona(a);
        if p.is_open(port) && p.stack.ts_hz >= 100 && service::banner(&p, port).is_none() {
            return Endpoint::new(p.mac.0, ip(a), port);
        }
    }
    panic!("no clocked decoy with {port}");
}

use super::super::decoy::service;

/// A handshake with timestamps: (the decoy's ISN, its TSval).
fn ts_handshake(e: &mut Engine, c: &Endpoint, d: &Endpoint, at: u64) -> (u32, u32) {
    let mut syn = synth::tcp_ts(c, d, Flags::SYN, 5000, 0, &[], (777, 0));
    assert_eq!(e.process(&mut syn, at), Verdict::Reply);
    let (isn, tsval) = (tcp_reply(&syn).seq, tsval_of(&syn));
    let mut ack = synth::tcp_ts(
        c,
        d,
        Flags::ACK,
        5001,
        isn.wrapping_add(1),
        &[],
        (778, tsval),
    );
    assert_eq!(
        e.process(&mut ack, at + SEC / 20),
        Verdict::Drop(DropReason::ToDecoy),
        "a bare ACK needs no answer"
    );
    (isn, tsval)
}

/// Data on a handshake's connection, echoing `tsecr` (or no timestamps).
fn data(c: &Endpoint, d: &Endpoint, isn: u32, tsecr: Option<u32>) -> Vec<u8> {
    let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    match tsecr {
        Some(t) => synth::tcp_ts(
            c,
            d,
            Flags::PSH_ACK,
            5001,
            isn.wrapping_add(1),
            get,
            (779, t),
        ),
        None => synth::tcp(c, d, Flags::PSH_ACK, 5001, isn.wrapping_add(1), get),
    }
}

/// `n` ACKs with wrong cookies in `src`'s name, to `d`.
fn wrong_cookies(e: &mut Engine, src: &Endpoint, d: &Endpoint, n: u16, at: u64) {
    for i in 0..n {
        let mut f = synth::tcp(
            &src.port(20000 + i),
            d,
            Flags::ACK,
            1,
            u32::from(i) * 7919 + 3,
            &[],
        );
        e.process(&mut f, at);
    }
}

fn strong_flags(evs: &[Event]) -> Vec<(BiteKind, Action, bool)> {
    evs.iter()
        .filter_map(|e| match e.kind {
            EventKind::Bite {
                kind,
                action,
                strong,
                ..
            } => Some((kind, action, strong)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_strong_proof_latches_while_its_source_and_its_24_are_suspect() {
    let mut e = engine();
    let d = clocked_decoy(80);
    let worm = client(66, 41000);
    // A thousand wrong cookies in the worm's own name (nmap -sA does it by
    // accident), and in its /24 neighbour's.
    wrong_cookies(&mut e, &worm, &d, 1000, T0);
    wrong_cookies(&mut e, &client(67, 0), &d, 1000, T0);
    let (isn, tsval) = ts_handshake(&mut e, &worm, &d, T0 + SEC);
    let mut get = data(&worm, &d, isn, Some(tsval));
    assert_eq!(
        e.process(&mut get, T0 + SEC + SEC / 10),
        Verdict::Drop(DropReason::Blocked)
    );
    assert_eq!(e.latched(), vec![v4("203.0.113.66")]);
    let c = e.deception_counters();
    assert_eq!(
        (c.strong_bites, c.weak_denied),
        (2, 0),
        "handshake and data, both strong"
    );
    assert_eq!(
        strong_flags(&events(&mut e)),
        vec![
            (BiteKind::Handshake, Action::Alert, true),
            (BiteKind::Data, Action::Block, true)
        ]
    );
}

#[test]
fn a_wrong_echo_never_latches_and_spends_the_weak_ticket() {
    let mut e = engine();
    let d = clocked_decoy(80);
    let worm = client(70, 41000);
    let (isn, tsval) = ts_handshake(&mut e, &worm, &d, T0);
    for wrong in [tsval.wrapping_add(1), tsval ^ 0x8000_0000, 0] {
        let mut get = data(&worm, &d, isn, Some(wrong));
        assert_eq!(
            e.process(&mut get, T0 + SEC / 10),
            Verdict::Reply,
            "{wrong}"
        );
    }
    assert!(e.latched().is_empty());
    assert_eq!(e.deception_counters().bad_echoes, 3);
    // Even the cookie alone, without the option, is now no latch today.
    let mut weak = data(&worm, &d, isn, None);
    assert_eq!(e.process(&mut weak, T0 + SEC / 5), Verdict::Reply);
    assert!(e.latched().is_empty());
    assert_eq!(e.deception_counters().weak_denied, 1);
}

#[test]
fn an_echo_older_than_the_window_is_a_weak_proof() {
    let mut e = engine();
    let d = clocked_decoy(80);
    let slow = client(71, 41000);
    let (isn, tsval) = ts_handshake(&mut e, &slow, &d, T0);
    // Two seconds later: the echo is ours, but past the 350 ms window.
    let mut get = data(&slow, &d, isn, Some(tsval));
    assert_eq!(
        e.process(&mut get, T0 + 2 * SEC),
        Verdict::Drop(DropReason::Blocked)
    );
    assert_eq!(
        strong_flags(&events(&mut e)).last(),
        Some(&(BiteKind::Data, Action::Block, false)),
        "latched on its weak try of the day"
    );
}

#[test]
fn a_client_without_timestamps_follows_the_weak_rules() {
    let mut e = engine();
    let d = decoy_with(&[80]);
    // Its first weak blocking bite of the day latches.
    let first = client(72, 41000);
    let (_, _, isn) = handshake(&mut e, &first, &d, T0);
    let mut get = data(&first, &d, isn, None);
    assert_eq!(
        e.process(&mut get, T0 + SEC),
        Verdict::Drop(DropReason::Blocked)
    );
    // One with a wrong cookie in its name earlier today does not: reported.
    let second = client(73, 41000);
    wrong_cookies(&mut e, &second, &d, 1, T0);
    let (_, _, isn) = handshake(&mut e, &second, &d, T0 + 2 * SEC);
    let mut get = data(&second, &d, isn, None);
    assert_eq!(e.process(&mut get, T0 + 3 * SEC), Verdict::Reply);
    // Its neighbour is untouched by that: its own ticket.
    let third = client(74, 41000);
    let (_, _, isn) = handshake(&mut e, &third, &d, T0 + 4 * SEC);
    let mut get = data(&third, &d, isn, None);
    assert_eq!(
        e.process(&mut get, T0 + 5 * SEC),
        Verdict::Drop(DropReason::Blocked)
    );
    assert_eq!(e.latched().len(), 2);
    // The next day, the reported one gets a ticket again.
    let day = 86_400 * SEC;
    let (_, _, isn) = handshake(&mut e, &second, &d, T0 + day);
    let mut get = data(&second, &d, isn, None);
    assert_eq!(
        e.process(&mut get, T0 + day + SEC),
        Verdict::Drop(DropReason::Blocked)
    );
}

#[test]
fn a_port_bite_is_as_strong_as_its_weaker_proof() {
    // Slapper with timestamps: 80, then 443, both echoed: strong.
    let mut e = engine();
    let worm = client(75, 41000);
    let both = (20..=250u8)
        .map(|last| v4(&format!("198.51.100.{last}")))
        .find(|a| {
            let p = persona(*a);
            p.stack.ts_hz >= 100 && p.is_open(80) && p.is_open(443)
        })
        .unwrap();
    let mac = persona(both).mac.0;
    let d80 = Endpoint::new(mac, ip(both), 80);
    let d443 = Endpoint::new(mac, ip(both), 443);
    wrong_cookies(&mut e, &worm, &d80, 10, T0);
    ts_handshake(&mut e, &worm.port(41001), &d80, T0 + SEC);
    let mut syn = synth::tcp_ts(&worm.port(41002), &d443, Flags::SYN, 9000, 0, &[], (900, 0));
    e.process(&mut syn, T0 + 2 * SEC);
    let (isn, tsval) = (tcp_reply(&syn).seq, tsval_of(&syn));
    let mut ack = synth::tcp_ts(
        &worm.port(41002),
        &d443,
        Flags::ACK,
        9001,
        isn.wrapping_add(1),
        &[],
        (901, tsval),
    );
    assert_eq!(
        e.process(&mut ack, T0 + 2 * SEC + SEC / 10),
        Verdict::Drop(DropReason::Blocked)
    );
    assert_eq!(
        strong_flags(&events(&mut e)).last(),
        Some(&(BiteKind::Port, Action::Block, true))
    );
    // Without timestamps, after a wrong cookie: the weak handshake on 80 is
    // not recorded, so 443 is no port bite; nothing latches.
    let mut e = engine();
    let other = client(76, 41000);
    wrong_cookies(&mut e, &other, &d80, 1, T0);
    handshake(&mut e, &other.port(41001), &d80, T0 + SEC);
    let (v, _, _) = handshake(&mut e, &other.port(41002), &d443, T0 + 2 * SEC);
    assert_eq!(
        v,
        Verdict::Drop(DropReason::ToDecoy),
        "answered as an ACK, not latched"
    );
    assert!(e.latched().is_empty());
    assert!(
        strong_flags(&events(&mut e))
            .iter()
            .all(|(k, _, _)| *k == BiteKind::Handshake)
    );
}
