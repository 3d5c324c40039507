//! The Windows ports: DCE/RPC on 135, the NetBIOS session service on 139
//! and SMB on 445, answered as Windows Server 2016-2022 answers them.
//!
//! Each answer is a function of one segment and of how many bytes the
//! decoy has already sent on the connection (what the segment
//! acknowledges), so the NetBIOS session that a positive session response
//! opens needs no state: a session message that acknowledges those four
//! bytes is in a session.
//!
//! SMB1 is off, as on every Windows Server since 2019: an SMB1 NEGOTIATE
//! that offers no SMB2 dialect is reset, one that offers `SMB 2.???` gets
//! the SMB2 NEGOTIATE response that upgrades it (MS-SMB2 3.3.5.3.1), and an
//! SMB2 NEGOTIATE gets the highest dialect both sides know, with the
//! SMB 3.1.1 negotiate contexts (MS-SMB2 2.2.4).

use super::super::persona::Persona;
use super::service::Response;

/// Answers DCE/RPC on 135: a PDU the endpoint mapper cannot use gets a
/// `bind_nak` (DCE 1.1 RPC, C706 12.6.4.5: type 13, reason 4, protocol
/// version 5.0 supported); a PDU that claims no length gets nothing.
pub fn rpc(data: &[u8]) -> Option<Response> {
    // Byte 4 is the data representation: its high nibble 0 means
    // big-endian integers, anything else little-endian.
    let big = data.get(4)? >> 4 == 0;
    let field = |at: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let frag_len = if big {
        u16::from_be_bytes(data.get(8..10)?.try_into().ok()?)
    } else {
        u16::from_le_bytes(data.get(8..10)?.try_into().ok()?)
    };
    if frag_len == 0 {
        return None;
    }
    let call_id = field(12)?.to_le_bytes();
    let mut r = Response::empty();
    r.push(&[
        0x05, 0x00, 0x0d, 0x03, 0x10, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00,
    ]);
    r.push(&call_id);
    r.push(&[0x04, 0x00, 0x01, 0x05, 0x00, 0x00, 0x00, 0x00]);
    Some(r)
}

/// Answers the NetBIOS session service on 139 (RFC 1002 4.3). `sent`: the
/// bytes the decoy has sent on this connection, as the segment
/// acknowledges them.
pub fn netbios(persona: &Persona, data: &[u8], sent: u32, now_s: u64) -> Response {
    match data.first() {
        // A session request: positive session response.
        Some(0x81) if sent == 0 => Response::with(&[0x82, 0, 0, 0], false),
        // A session message inside the session just opened.
        Some(0x00) if sent == 4 => smb(persona, data, now_s),
        // Anything outside a session: negative session response,
        // "unspecified error" (0x8F), then close.
        _ => Response::with(&[0x83, 0, 0, 1, 0x8f], true),
    }
}

/// The SMB2 dialects a Windows Server 2016-2022 speaks, lowest first.
const DIALECTS: [u16; 5] = [0x0202, 0x0210, 0x0300, 0x0302, 0x0311];

/// Answers SMB on 445 (a NetBIOS session message header, then SMB).
pub fn smb(persona: &Persona, data: &[u8], now_s: u64) -> Response {
    let msg = data.get(4..).unwrap_or(&[]);
    let dialect = match msg.get(..4) {
        Some(b"\xffSMB") if msg.get(4) == Some(&0x72) => smb1_upgrade(msg),
        Some(b"\xfeSMB") if msg.get(12..14) == Some(&[0, 0]) => smb2_dialect(msg),
        _ => None,
    };
    match dialect {
        Some(d) => {
            // An SMB2 request's MessageId is echoed; the upgrade is 0.
            let message_id = if msg.first() == Some(&0xfe) {
                msg.get(24..32).unwrap_or(&[0; 8])
            } else {
                &[0; 8]
            };
            negotiate_response(persona, d, message_id, msg, now_s)
        }
        None => reset(),
    }
}

fn reset() -> Response {
    let mut r = Response::empty();
    r.reset = true;
    r
}

/// The dialect an SMB1 NEGOTIATE upgrades to: 0x02FF for `SMB 2.???`,
/// 0x0202 for `SMB 2.002` alone, none without either.
fn smb1_upgrade(msg: &[u8]) -> Option<u16> {
    // Header (32), word count (1, zero), byte count (2), then dialects,
    // each 0x02 and a NUL-terminated name.
    let names = msg.get(35..)?;
    let mut best = None;
    for name in names.split(|&b| b == 0) {
        match name.strip_prefix(b"\x02") {
            Some(b"SMB 2.???") => return Some(0x02ff),
            Some(b"SMB 2.002") => best = Some(0x0202),
            _ => {}
        }
    }
    best
}

/// The highest dialect of an SMB2 NEGOTIATE request that Windows speaks.
fn smb2_dialect(msg: &[u8]) -> Option<u16> {
    // The request body follows the 64-byte header: StructureSize (36),
    // DialectCount, ..., the dialects at body offset 36.
    let count = usize::from(u16::from_le_bytes(msg.get(66..68)?.try_into().ok()?));
    let list = msg.get(100..100 + 2 * count.min(64))?;
    list.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .filter(|d| DIALECTS.contains(d))
        .max()
}

/// The security blob of the NEGOTIATE response: an SPNEGO NegTokenInit
/// (RFC 4178) offering NEGOEX and NTLMSSP, with the hint Windows sends
/// ("not_defined_in_RFC4178@please_ignore", MS-SPNG 2.2.1).
const SPNEGO_INIT: [u8; 86] = [
    0x60, 0x54, 0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02, // GSS-API, SPNEGO OID
    0xa0, 0x4a, 0x30, 0x48, // NegTokenInit
    0xa0, 0x1a, 0x30, 0x18, // mechTypes
    0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x1e, // NEGOEX
    0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a, // NTLMSSP
    0xa3, 0x2a, 0x30, 0x28, 0xa0, 0x26, 0x1b, 0x24, // negHints, hintName
    b'n', b'o', b't', b'_', b'd', b'e', b'f', b'i', b'n', b'e', b'd', b'_', b'i', b'n', b'_', b'R',
    b'F', b'C', b'4', b'1', b'7', b'8', b'@', b'p', b'l', b'e', b'a', b's', b'e', b'_', b'i', b'g',
    b'n', b'o', b'r', b'e',
];

/// A Windows FILETIME: 100 ns ticks since 1601-01-01.
fn filetime(unix_s: u64) -> u64 {
    (unix_s + 11_644_473_600) * 10_000_000
}

/// Mixes bytes into 64 bits (a salt must look random, not be secret).
fn mix(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed ^ 0x9e37_79b9_7f4a_7c15, |h, &b| {
        (h ^ u64::from(b))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(5)
    })
}

fn negotiate_response(
    persona: &Persona,
    dialect: u16,
    message_id: &[u8],
    request: &[u8],
    now_s: u64,
) -> Response {
    let contexts = dialect == 0x0311;
    // Header 64, body 64, the blob at 128, contexts 8-aligned after it.
    let blob_end = 128 + SPNEGO_INIT.len();
    let ctx_at = (blob_end + 7) & !7;
    // Preauth integrity (8 + 38, padded to 48) and encryption (8 + 4).
    let total = if contexts { ctx_at + 48 + 12 } else { blob_end };
    let mut r = Response::empty();
    r.push(&[0, 0, (total >> 8) as u8, total as u8]);
    // SMB2 header (MS-SMB2 2.2.1.2): NEGOTIATE, one credit, from the server.
    r.push(b"\xfeSMB");
    r.push(&[64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    r.push(message_id);
    r.push(&[0; 32]); // Reserved, TreeId, SessionId, Signature
    let guid_seed = persona.identity();
    let guid_a = mix(guid_seed, b"server guid");
    let guid_b = mix(guid_a, b"server guid");
    let caps: u32 = if dialect >= 0x0300 { 0x2f } else { 0x07 };
    let (security_mode, count) = (1u16, if contexts { 2u16 } else { 0 });
    r.push(&65u16.to_le_bytes());
    r.push(&security_mode.to_le_bytes());
    r.push(&dialect.to_le_bytes());
    r.push(&count.to_le_bytes());
    r.push(&guid_a.to_le_bytes());
    r.push(&guid_b.to_le_bytes());
    r.push(&caps.to_le_bytes());
    for _ in 0..3 {
        r.push(&8_388_608u32.to_le_bytes()); // max transact, read, write
    }
    r.push(&filetime(now_s).to_le_bytes());
    r.push(&0u64.to_le_bytes()); // server start time: not given
    r.push(&128u16.to_le_bytes());
    r.push(&(SPNEGO_INIT.len() as u16).to_le_bytes());
    r.push(&(if contexts { ctx_at as u32 } else { 0 }).to_le_bytes());
    r.push(&SPNEGO_INIT);
    if contexts {
        r.push(&[0; 8][..ctx_at - blob_end]);
        // SMB2_PREAUTH_INTEGRITY_CAPABILITIES: SHA-512, a 32-byte salt.
        r.push(&[1, 0, 38, 0, 0, 0, 0, 0, 1, 0, 32, 0, 1, 0]);
        let mut h = mix(guid_seed ^ now_s, request);
        for _ in 0..4 {
            h = mix(h, b"salt");
            r.push(&h.to_le_bytes());
        }
        r.push(&[0, 0]);
        // SMB2_ENCRYPTION_CAPABILITIES: AES-128-GCM.
        r.push(&[2, 0, 4, 0, 0, 0, 0, 0, 1, 0, 2, 0]);
    }
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::engine::decoy::service::tests::persona;
    use crate::engine::persona::PersonaKind;

    /// nmap's SMBProgNeg probe (`nmap-service-probes`): SMB1 only.
    const NMAP_SMB1: &[u8] = b"\0\0\0\xa4\xff\x53\x4d\x42\x72\0\0\0\0\x08\x01\x40\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x40\x06\0\0\x01\0\0\x81\0\x02PC NETWORK PROGRAM 1.0\0\x02MICROSOFT NETWORKS 1.03\0\x02MICROSOFT NETWORKS 3.0\0\x02LANMAN1.0\0\x02LM1.2X002\0\x02Samba\0\x02NT LANMAN 1.0\0\x02NT LM 0.12\0";

    /// An SMB2 NEGOTIATE offering 2.0.2 to 3.1.1, MessageId 7.
    fn smb2_negotiate() -> Vec<u8> {
        let mut m = b"\xfeSMB".to_vec();
        m.extend([64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        m.extend(7u64.to_le_bytes());
        m.extend([0; 32]);
        assert_eq!(m.len(), 64);
        m.extend(36u16.to_le_bytes());
        m.extend(5u16.to_le_bytes());
        m.extend([1, 0, 0, 0, 0x7f, 0, 0, 0]);
        m.extend([0x11; 16]);
        m.extend([0; 8]);
        for d in [0x0202u16, 0x0210, 0x0300, 0x0302, 0x0311] {
            m.extend(d.to_le_bytes());
        }
        let mut f = vec![0, 0, 0, m.len() as u8];
        f.extend(m);
        f
    }

    /// Walks a DER element and returns its total length (tag, length, content).
    fn der_len(b: &[u8]) -> usize {
        let (len, head) = match b[1] {
            l if l < 0x80 => (usize::from(l), 2),
            0x81 => (usize::from(b[2]), 3),
            _ => panic!("long form"),
        };
        // Constructed elements: their children fill them exactly.
        if b[0] & 0x20 != 0 {
            let mut at = head;
            while at < head + len {
                at += der_len(&b[at..]);
            }
            assert_eq!(at, head + len, "children of {:#x}", b[0]);
        }
        head + len
    }

    #[test]
    fn the_spnego_blob_is_well_formed_der() {
        assert_eq!(der_len(&SPNEGO_INIT), SPNEGO_INIT.len());
    }

    #[test]
    fn smb1_without_smb2_dialects_is_reset_as_windows_server_2019_does() {
        let w = persona(PersonaKind::WindowsServer);
        assert!(smb(&w, NMAP_SMB1, 0).reset);
        assert!(smb(&w, b"\0\0\0\x04junk", 0).reset);
        let mut upgrade = NMAP_SMB1.to_vec();
        upgrade.extend(b"\x02SMB 2.002\0\x02SMB 2.???\0");
        let r = smb(&w, &upgrade, 1_767_225_600);
        assert!(!r.reset);
        let p = r.payload();
        assert_eq!(&p[4..8], b"\xfeSMB");
        assert_eq!(u16::from_le_bytes([p[4 + 68], p[4 + 69]]), 0x02ff);
    }

    #[test]
    fn smb2_negotiate_gets_3_1_1_with_its_contexts() {
        let w = persona(PersonaKind::WindowsServer);
        let now = 1_767_225_600;
        let r = smb(&w, &smb2_negotiate(), now);
        let p = r.payload();
        let nb_len = u32::from_be_bytes([0, p[1], p[2], p[3]]) as usize;
        assert_eq!(nb_len + 4, p.len());
        let m = &p[4..];
        assert_eq!(&m[..4], b"\xfeSMB");
        assert_eq!(u16::from_le_bytes([m[4], m[5]]), 64);
        assert_eq!(&m[24..32], &7u64.to_le_bytes(), "MessageId echoed");
        let body = &m[64..];
        assert_eq!(u16::from_le_bytes([body[0], body[1]]), 65);
        assert_eq!(u16::from_le_bytes([body[4], body[5]]), 0x0311);
        assert_eq!(u16::from_le_bytes([body[6], body[7]]), 2, "two contexts");
        let time = u64::from_le_bytes(body[40..48].try_into().unwrap());
        assert_eq!(time, filetime(now));
        let (blob_at, blob_len) = (
            usize::from(u16::from_le_bytes([body[56], body[57]])),
            usize::from(u16::from_le_bytes([body[58], body[59]])),
        );
        assert_eq!(&m[blob_at..blob_at + blob_len], &SPNEGO_INIT);
        let ctx = u32::from_le_bytes(body[60..64].try_into().unwrap()) as usize;
        assert_eq!(ctx % 8, 0);
        assert_eq!(&m[ctx..ctx + 2], &[1, 0], "preauth integrity first");
        assert_eq!(
            &m[ctx + 48..ctx + 50],
            &[2, 0],
            "then encryption, 8-aligned"
        );
        assert_eq!(m.len(), ctx + 60);
        // The server GUID is the decoy's: fixed per decoy.
        let again = smb(&w, &smb2_negotiate(), now + 60);
        assert_eq!(&again.payload()[4 + 64 + 8..4 + 64 + 24], &body[8..24]);
    }

    #[test]
    fn netbios_opens_a_session_without_state() {
        let w = persona(PersonaKind::WindowsServer);
        let request = [0x81, 0, 0, 0x44, 0x20, 0x43];
        assert_eq!(netbios(&w, &request, 0, 0).payload(), &[0x82, 0, 0, 0]);
        // nmap's probe, outside any session: negative response, close.
        let r = netbios(&w, NMAP_SMB1, 0, 0);
        assert_eq!(r.payload(), &[0x83, 0, 0, 1, 0x8f]);
        assert!(r.fin);
        // The same message after the positive response is SMB.
        assert!(netbios(&w, NMAP_SMB1, 4, 0).reset);
        assert_eq!(
            &netbios(&w, &smb2_negotiate(), 4, 0).payload()[4..8],
            b"\xfeSMB"
        );
    }

    #[test]
    fn rpc_answers_bind_nak_with_the_callers_call_id() {
        // nmap's SMB probe on 135: little-endian, call id 0x40010800.
        let r = rpc(NMAP_SMB1).unwrap();
        assert_eq!(
            r.payload(),
            &[
                5, 0, 13, 3, 0x10, 0, 0, 0, 0x18, 0, 0, 0, 0, 0x08, 0x01, 0x40, 4, 0, 1, 5, 0, 0,
                0, 0
            ]
        );
        // nmap's DNS probe: big-endian, no fragment length: nothing.
        assert!(
            rpc(b"\0\x1e\0\x06\x01\0\0\x01\0\0\0\0\0\0\x07version\x04bind\0\0\x10\0\x03").is_none()
        );
        assert!(rpc(b"\x05\0").is_none());
    }
}
