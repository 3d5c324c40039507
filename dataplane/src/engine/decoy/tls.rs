//! TLS on the decoys' 443: the first flight of a TLS 1.2 server
//! (ServerHello, Certificate, ServerHelloDone; RFC 5246 7.3), decided from
//! the ClientHello alone.
//!
//! The flight uses RSA key exchange, the one TLS 1.2 exchange whose first
//! flight carries no per-connection signature: everything in it but the
//! echoes of the ClientHello is made at start-up ([`TlsStore`], from
//! `engine::decoy::certs`). What a stateless decoy cannot do is finish: the
//! client's next flight gets `decrypt_error`, the alert a server sends when
//! the Finished does not verify. A scanner therefore learns the
//! certificate and the chosen suite, as from the real server, and then
//! sees the handshake fail.
//!
//! Certificates are made off the packet path, on a thread of their own,
//! the first time a ClientHello reaches any decoy (a dataplane that never
//! sees TLS never spends the seconds RSA key generation takes); until they
//! are ready, a ClientHello gets `handshake_failure`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use siphasher::sip::SipHasher13;
use std::hash::Hasher;

use super::super::persona::{Persona, PersonaKind};
use super::certs;
use super::service::{MAX_RESPONSE, Response};

/// Families whose personas open a TLS port, and so get identities.
const TLS_FAMILIES: [PersonaKind; 4] = [
    PersonaKind::LinuxWeb,
    PersonaKind::WindowsServer,
    PersonaKind::FreeBsd,
    PersonaKind::Printer,
];

/// The decoys' certificates, made once, shared by every worker.
pub struct TlsStore {
    /// Set by a worker when a ClientHello found no certificates yet.
    wanted: AtomicBool,
    /// Per family (in `TLS_FAMILIES` order), its identities' DER certificates.
    certs: OnceLock<Vec<Vec<Vec<u8>>>>,
}

impl TlsStore {
    /// No identities: every ClientHello gets `handshake_failure`.
    pub fn off() -> Arc<Self> {
        Arc::new(TlsStore {
            wanted: AtomicBool::new(false),
            certs: OnceLock::new(),
        })
    }

    /// `per_family` identities per family under `secret`, made on a thread
    /// of their own once the first ClientHello asks (0: off).
    pub fn on_demand(secret: [u8; 32], per_family: u32) -> Arc<Self> {
        let store = Self::off();
        if per_family == 0 {
            return store;
        }
        let weak = Arc::downgrade(&store);
        let spawned = std::thread::Builder::new()
            .name("tls-identities".into())
            .spawn(move || maker(&weak, &secret, per_family));
        if let Err(e) = spawned {
            eprintln!("error: no TLS identities (cannot start their thread: {e})");
        }
        store
    }

    /// The identities made now (tests and tools).
    pub fn made_now(secret: &[u8; 32], per_family: u32) -> Result<Arc<Self>, certs::CertError> {
        let store = Self::off();
        let certs = make(secret, per_family)?;
        let _ = store.certs.set(certs);
        Ok(store)
    }

    /// True once the certificates are made.
    pub fn ready(&self) -> bool {
        self.certs.get().is_some()
    }

    /// The certificate of `persona`'s decoy, or `None` (and a request for
    /// them) while they are not made.
    fn certificate(&self, persona: &Persona) -> Option<&[u8]> {
        let Some(all) = self.certs.get() else {
            self.wanted.store(true, Ordering::Relaxed);
            return None;
        };
        let family = TLS_FAMILIES.iter().position(|k| *k == persona.kind)?;
        let list = all.get(family)?;
        let pick = (persona.identity() % list.len().max(1) as u64) as usize;
        list.get(pick).map(Vec::as_slice)
    }
}

fn make(secret: &[u8; 32], per_family: u32) -> Result<Vec<Vec<Vec<u8>>>, certs::CertError> {
    TLS_FAMILIES
        .iter()
        .map(|family| {
            (0..per_family)
                .map(|i| certs::identity(secret, *family, i))
                .collect()
        })
        .collect()
}

/// The maker thread: waits for the first request (or for the store to go),
/// then makes every identity.
fn maker(store: &Weak<TlsStore>, secret: &[u8; 32], per_family: u32) {
    loop {
        let Some(s) = store.upgrade() else { return };
        if s.wanted.load(Ordering::Relaxed) {
            break;
        }
        drop(s);
        std::thread::park_timeout(Duration::from_millis(100));
    }
    match make(secret, per_family) {
        Ok(certs) => {
            if let Some(s) = store.upgrade() {
                let _ = s.certs.set(certs);
            }
        }
        Err(e) => eprintln!("error: no TLS identities: {e}"),
    }
}

/// RSA key-exchange suites a TLS 1.2 server of ours accepts, in the order
/// a server that prefers its own order picks them (SChannel's).
const SUITES: [u16; 6] = [0x009d, 0x009c, 0x003d, 0x003c, 0x0035, 0x002f];

/// TLS alert descriptions (RFC 5246 7.2).
const HANDSHAKE_FAILURE: u8 = 40;
const DECRYPT_ERROR: u8 = 51;
const PROTOCOL_VERSION: u8 = 70;

fn alert(version: [u8; 2], description: u8) -> Response {
    Response::with(&[0x15, version[0], version[1], 0, 2, 2, description], true)
}

/// What a ClientHello said that the ServerHello answers.
struct Hello<'a> {
    record_version: [u8; 2],
    version: u16,
    random: &'a [u8],
    suites: &'a [u8],
    renegotiation: bool,
    extended_master_secret: bool,
    session_ticket: bool,
}

/// Reads a ClientHello (RFC 5246 7.4.1.2) from the start of `data`.
fn client_hello(data: &[u8]) -> Option<Hello<'_>> {
    if data.first() != Some(&0x16) || data.get(5) != Some(&1) {
        return None;
    }
    let record_version = [*data.get(1)?, *data.get(2)?];
    let version = u16::from_be_bytes([*data.get(9)?, *data.get(10)?]);
    let random = data.get(11..43)?;
    let sid_len = usize::from(*data.get(43)?);
    let mut at = 44 + sid_len;
    let suites_len = usize::from(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]));
    let suites = data.get(at + 2..at + 2 + suites_len)?;
    at += 2 + suites_len;
    at += 1 + usize::from(*data.get(at)?);
    let mut hello = Hello {
        record_version,
        version,
        random,
        suites,
        renegotiation: suites.chunks_exact(2).any(|s| s == [0x00, 0xff]),
        extended_master_secret: false,
        session_ticket: false,
    };
    // Extensions, when present and whole in this segment.
    if let Some(len) = data.get(at..at + 2) {
        let end = at + 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
        let mut e = at + 2;
        while e + 4 <= end.min(data.len()) {
            let kind = u16::from_be_bytes([data[e], data[e + 1]]);
            let len = usize::from(u16::from_be_bytes([data[e + 2], data[e + 3]]));
            match kind {
                0xff01 => hello.renegotiation = true,
                0x0017 => hello.extended_master_secret = true,
                0x0023 => hello.session_ticket = true,
                _ => {}
            }
            e += 4 + len;
        }
    }
    Some(hello)
}

/// Keyed bytes that look random and repeat for the same ClientHello.
fn fill(out: &mut [u8], persona: &Persona, salt: &[u8]) {
    for (k, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = SipHasher13::new_with_keys(persona.identity(), k as u64);
        h.write(salt);
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(v.get(..chunk.len()).unwrap_or(&[]));
    }
}

/// The answer of `persona`'s TLS port to a segment of TLS records.
pub fn answer(store: &TlsStore, persona: &Persona, data: &[u8]) -> Option<Response> {
    match data.first() {
        Some(0x16) => {}
        // ChangeCipherSpec, or anything after a ServerHelloDone: the
        // client's Finished, which never verifies here.
        Some(0x14) => return Some(alert([3, 3], DECRYPT_ERROR)),
        None => return None,
        // Not TLS at all (plain HTTP, an RPC probe): the TLS library gives
        // up on the record and the server drops the connection; SChannel
        // resets it, OpenSSL closes it.
        Some(_) => {
            let mut r = Response::empty();
            if persona.kind == PersonaKind::WindowsServer {
                r.reset = true;
            } else {
                r.fin = true;
            }
            return Some(r);
        }
    }
    let Some(hello) = client_hello(data) else {
        // A handshake message that is no ClientHello: ClientKeyExchange.
        // A record cut before its message type: wait for the rest.
        return data
            .get(5)
            .is_some_and(|t| *t != 1)
            .then(|| alert([3, 3], DECRYPT_ERROR));
    };
    if hello.version < 0x0301 {
        // SSL 3.0 and older: refused, as every current server does.
        return Some(alert(hello.record_version, PROTOCOL_VERSION));
    }
    let offered = |s: u16| hello.suites.chunks_exact(2).any(|c| c == s.to_be_bytes());
    // OpenSSL (nginx's default) takes the client's order, SChannel its own.
    let suite = if persona.kind == PersonaKind::WindowsServer {
        SUITES.iter().copied().find(|s| offered(*s))
    } else {
        hello
            .suites
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .find(|s| SUITES.contains(s))
    };
    let version = hello.version.min(0x0303).to_be_bytes();
    let (Some(suite), Some(cert)) = (suite, store.certificate(persona)) else {
        return Some(alert(version, HANDSHAKE_FAILURE));
    };
    let mut extensions = [0u8; 16];
    let mut ext_len = 0;
    let mut add = |bytes: &[u8]| {
        if let Some(dst) = extensions.get_mut(ext_len..ext_len + bytes.len()) {
            dst.copy_from_slice(bytes);
            ext_len += bytes.len();
        }
    };
    if hello.renegotiation {
        add(&[0xff, 0x01, 0x00, 0x01, 0x00]);
    }
    if hello.extended_master_secret {
        add(&[0x00, 0x17, 0x00, 0x00]);
    }
    // OpenSSL promises a ticket; SChannel issues none on a first visit.
    if hello.session_ticket && persona.kind != PersonaKind::WindowsServer {
        add(&[0x00, 0x23, 0x00, 0x00]);
    }
    let extensions = extensions.get(..ext_len).unwrap_or(&[]);
    let hello_len = 2 + 32 + 1 + 32 + 2 + 1 + 2 + ext_len;
    let cert_msg_len = 3 + 3 + cert.len();
    let record_len = 4 + hello_len + 4 + cert_msg_len + 4;
    if 5 + record_len > MAX_RESPONSE {
        return Some(alert(version, HANDSHAKE_FAILURE));
    }
    let u24 = |n: usize| [(n >> 16) as u8, (n >> 8) as u8, n as u8];
    let mut r = Response::empty();
    r.push(&[0x16, version[0], version[1]]);
    r.push(&(record_len as u16).to_be_bytes());
    // ServerHello.
    r.push(&[2]);
    r.push(&u24(hello_len));
    r.push(&version);
    let mut random = [0u8; 32];
    fill(&mut random, persona, hello.random);
    r.push(&random);
    let mut session = [0u8; 32];
    fill(&mut session, persona, &random);
    r.push(&[32]);
    r.push(&session);
    r.push(&suite.to_be_bytes());
    r.push(&[0]);
    r.push(&(ext_len as u16).to_be_bytes());
    r.push(extensions);
    // Certificate: a chain of one, self-signed.
    r.push(&[11]);
    r.push(&u24(cert_msg_len));
    r.push(&u24(3 + cert.len()));
    r.push(&u24(cert.len()));
    r.push(cert);
    // ServerHelloDone.
    r.push(&[14, 0, 0, 0]);
    Some(r)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::engine::decoy::service::tests::persona;
    use x509_cert::Certificate;
    use x509_cert::der::Decode;

    /// nmap's TLSSessionReq probe (`nmap-service-probes`): a TLS 1.2
    /// ClientHello offering, among others, AES128-SHA (0x002f).
    const NMAP_TLS: &[u8] = b"\x16\x03\0\0\x69\x01\0\0\x65\x03\x03U\x1c\xa7\xe4random1random2random3random4\0\0\x0c\0/\0\x0a\0\x13\x009\0\x04\0\xff\x01\0\0\x30\0\x0d\0,\0*\0\x01\0\x03\0\x02\x06\x01\x06\x03\x06\x02\x02\x01\x02\x03\x02\x02\x03\x01\x03\x03\x03\x02\x04\x01\x04\x03\x04\x02\x01\x01\x01\x03\x01\x02\x05\x01\x05\x03\x05\x02";

    /// nmap's SSLSessionReq probe: an SSL 3.0 ClientHello.
    const NMAP_SSL3: &[u8] = b"\x16\x03\0\0S\x01\0\0O\x03\0?G\xd7\xf7\xba,\xee\xea\xb2`~\xf3\0\xfd\x82{\xb9\xd5\x96\xc8w\x9b\xe6\xc4\xdb<=\xdbo\xef\x10n\0\0(\0\x16\0\x13\0\x0a\0f\0\x05\0\x04\0e\0d\0c\0b\0a\0`\0\x15\0\x12\0\x09\0\x14\0\x11\0\x08\0\x06\0\x03\x01\0";

    fn store() -> &'static TlsStore {
        static STORE: OnceLock<Arc<TlsStore>> = OnceLock::new();
        STORE.get_or_init(|| TlsStore::made_now(&[5; 32], 1).unwrap())
    }

    #[test]
    fn a_client_hello_gets_server_hello_certificate_and_done() {
        assert_eq!(NMAP_TLS.len(), 5 + 0x69, "the probe as nmap sends it");
        let p = persona(PersonaKind::LinuxWeb);
        let r = answer(store(), &p, NMAP_TLS).unwrap();
        assert!(!r.fin && !r.reset);
        let b = r.payload();
        assert_eq!(&b[..3], &[0x16, 3, 3]);
        assert_eq!(usize::from(u16::from_be_bytes([b[3], b[4]])) + 5, b.len());
        // ServerHello: TLS 1.2, a 32-byte session id, AES128-SHA (the
        // client's first offer we take), renegotiation_info answered.
        assert_eq!(b[5], 2);
        assert_eq!(&b[9..11], &[3, 3]);
        assert_eq!(b[43], 32);
        assert_eq!(&b[76..78], &[0x00, 0x2f]);
        assert_eq!(b[78], 0);
        let ext_len = usize::from(u16::from_be_bytes([b[79], b[80]]));
        assert_eq!(&b[81..81 + ext_len], &[0xff, 0x01, 0, 1, 0]);
        // Certificate: one self-signed certificate, parsed.
        let at = 81 + ext_len;
        assert_eq!(b[at], 11);
        let cert_len = u32::from_be_bytes([0, b[at + 7], b[at + 8], b[at + 9]]) as usize;
        let cert = Certificate::from_der(&b[at + 10..at + 10 + cert_len]).unwrap();
        assert_eq!(cert.tbs_certificate.subject, cert.tbs_certificate.issuer);
        // ServerHelloDone ends the flight.
        assert_eq!(&b[at + 10 + cert_len..], &[14, 0, 0, 0]);
        // The same hello gets the same flight (stateless); another decoy
        // of the family another random.
        assert_eq!(answer(store(), &p, NMAP_TLS).unwrap().payload(), b);
    }

    #[test]
    fn schannel_picks_its_own_order_and_openssl_the_clients() {
        let mut hello = NMAP_TLS.to_vec();
        // Offer AES128-SHA, then AES256-GCM-SHA384.
        hello[46..50].copy_from_slice(&[0x00, 0x2f, 0x00, 0x9d]);
        let suite = |kind| {
            let b = answer(store(), &persona(kind), &hello).unwrap();
            u16::from_be_bytes([b.payload()[76], b.payload()[77]])
        };
        assert_eq!(suite(PersonaKind::LinuxWeb), 0x002f);
        assert_eq!(suite(PersonaKind::WindowsServer), 0x009d);
    }

    #[test]
    fn what_a_stateless_decoy_cannot_answer_gets_the_alert_a_server_sends() {
        let p = persona(PersonaKind::LinuxWeb);
        // SSL 3.0: protocol_version, in the client's record version.
        let r = answer(store(), &p, NMAP_SSL3).unwrap();
        assert_eq!(r.payload(), &[0x15, 3, 0, 0, 2, 2, 70]);
        assert!(r.fin);
        // No suite in common: handshake_failure.
        let mut hello = NMAP_TLS.to_vec();
        hello[46..58].fill(0xc0);
        assert_eq!(
            answer(store(), &p, &hello).unwrap().payload(),
            &[0x15, 3, 3, 0, 2, 2, 40]
        );
        // The client's second flight: decrypt_error.
        let cke = [0x16, 3, 3, 0, 6, 16, 0, 0, 2, 0, 0];
        assert_eq!(answer(store(), &p, &cke).unwrap().payload()[6], 51);
        assert_eq!(
            answer(store(), &p, &[0x14, 3, 3, 0, 1, 1])
                .unwrap()
                .payload()[6],
            51
        );
        // Certificates not made yet: handshake_failure, and a request.
        let off = TlsStore::off();
        assert_eq!(answer(&off, &p, NMAP_TLS).unwrap().payload()[6], 40);
        assert!(off.wanted.load(Ordering::Relaxed));
        // Plain text on the TLS port: closed (OpenSSL), reset (SChannel).
        let plain = answer(store(), &p, b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(plain.fin && plain.payload().is_empty());
        let w = persona(PersonaKind::WindowsServer);
        assert!(answer(store(), &w, b"\x80\0\0\x28").unwrap().reset);
    }

    #[test]
    fn certificates_are_made_when_first_asked() {
        let s = TlsStore::on_demand([9; 32], 1);
        let p = persona(PersonaKind::Printer);
        assert!(!s.ready());
        assert_eq!(answer(&s, &p, NMAP_TLS).unwrap().payload()[6], 40);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while !s.ready() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(s.ready(), "made within two minutes");
        assert_eq!(answer(&s, &p, NMAP_TLS).unwrap().payload()[5], 2);
    }

    #[test]
    fn truncated_hellos_are_not_read_past_their_end() {
        let p = persona(PersonaKind::LinuxWeb);
        for cut in 0..NMAP_TLS.len() {
            let _ = answer(store(), &p, &NMAP_TLS[..cut]);
        }
    }
}
