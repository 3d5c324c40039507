//! Answers to control's `decoys` questions: what a given address looks like
//! from outside right now (its state and, when dark, its persona), or a
//! sample of dark addresses. Asked between bursts over the rules ring and
//! answered over the events ring, so control never needs the deployment
//! secret or the live map to describe a decoy.

use baitwall_channel::message::{ANSWER_PORTS, MAX_SAMPLE, PersonaAnswer};

use super::deceive::Deceiver;
use super::persona::PersonaKind;
use super::space::Darkness;

/// Addresses a sample looks at before it gives up, so a question about a
/// mostly live or huge space costs a bounded time between two bursts.
const SAMPLE_WALK: u32 = 1 << 16;

/// The wire number of a persona family (`code::persona_name`).
pub fn family_code(kind: PersonaKind) -> u8 {
    match kind {
        PersonaKind::LinuxWeb => 0,
        PersonaKind::LinuxSsh => 1,
        PersonaKind::WindowsServer => 2,
        PersonaKind::Printer => 3,
        PersonaKind::Router => 4,
        PersonaKind::FreeBsd => 5,
        PersonaKind::Camera => 6,
    }
}

/// The wire number of an address's state (`code::darkness_name`).
fn darkness_code(d: Darkness) -> u8 {
    match d {
        Darkness::Dark => 0,
        Darkness::Unprotected => 1,
        Darkness::Excluded => 2,
        Darkness::StaticLive => 3,
        Darkness::Learning => 4,
        Darkness::Live => 5,
        Darkness::Unclaimed => 6,
        Darkness::Vacant => 7,
    }
}

/// The answer describing `addr` at `now_ns`.
pub fn describe(deceiver: &Deceiver, id: u32, addr: [u8; 16], now_ns: u64) -> PersonaAnswer {
    let (darkness, persona) = deceiver.describe(&addr, now_ns);
    let mut ports = [0u16; ANSWER_PORTS];
    for (slot, p) in ports.iter_mut().zip(persona.open_ports) {
        *slot = *p;
    }
    PersonaAnswer {
        id,
        last: false,
        addr,
        found: true,
        darkness: darkness_code(darkness),
        family: family_code(persona.kind),
        ttl: persona.stack.ttl,
        dont_frag: persona.stack.df,
        window: persona.stack.data_window(),
        mss: persona.stack.mss,
        mac: persona.mac.0,
        ports,
    }
}

/// Answers query `id`: `addr` described (`count` 0), or up to `count` dark
/// addresses of the protected space from `addr` on, in `addr`'s family
/// (any family when `addr` is all zero). The last answer has
/// `last` set; a sample that finds nothing sends one empty answer.
pub fn answer(
    deceiver: &Deceiver,
    id: u32,
    addr: [u8; 16],
    count: u8,
    now_ns: u64,
    mut out: impl FnMut(PersonaAnswer),
) {
    if count == 0 {
        out(PersonaAnswer {
            last: true,
            ..describe(deceiver, id, addr, now_ns)
        });
        return;
    }
    let want = usize::from(count.min(MAX_SAMPLE));
    let from = u128::from_be_bytes(addr);
    let is_v4 = |a: u128| a >> 32 == 0xffff;
    let any_family = from == 0;
    let mut found: Option<PersonaAnswer> = None;
    let mut sent = 0usize;
    let mut walked = 0u32;
    'prefixes: for prefix in deceiver.protected().iter() {
        let size_bits = 128 - u32::from(prefix.len());
        let last = prefix.network().saturating_add(if size_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << size_bits) - 1
        });
        if last < from || (!any_family && is_v4(prefix.network()) != is_v4(from)) {
            continue;
        }
        let mut a = prefix.network().max(from);
        loop {
            if walked >= SAMPLE_WALK || sent >= want {
                break 'prefixes;
            }
            walked += 1;
            let answer = describe(deceiver, id, a.to_be_bytes(), now_ns);
            if answer.darkness == darkness_code(Darkness::Dark) {
                // Hold one back, so the last one sent can carry `last`.
                if let Some(prev) = found.replace(answer) {
                    out(prev);
                }
                sent += 1;
            }
            if a == last {
                break;
            }
            a += 1;
        }
    }
    match found {
        Some(a) => out(PersonaAnswer { last: true, ..a }),
        None => out(PersonaAnswer::nothing(id, [0; 16], 0)),
    }
}
