//! The decoy services: what a decoy says after a verified handshake,
//! decided from each segment alone.
//!
//! Server-first protocols (SSH, FTP, SMTP, telnet) send their banner in
//! answer to the handshake's ACK; client-first ones answer the first data
//! (HTTP with a persona-specific response, TLS with a handshake-failure
//! alert, RDP with an X.224 connection confirm); SMB is accepted, read and
//! reset. Everything is written into a fixed stack buffer: nothing is
//! allocated. Bodies are short pages of our own, not copies of any server's.

use super::super::persona::{Persona, PersonaKind};
use super::tls::{self, TlsStore};
use super::{http, smb};

/// Largest response a decoy sends in one segment (fits the smallest MSS we use).
pub const MAX_RESPONSE: usize = 1024;

/// A response built on the stack.
pub struct Response {
    bytes: [u8; MAX_RESPONSE],
    len: usize,
    /// Close after this response (FIN with it).
    pub fin: bool,
    /// Answer with RST instead (SMB: accept, read, reset).
    pub reset: bool,
}

impl Response {
    pub(super) fn empty() -> Self {
        Response {
            bytes: [0; MAX_RESPONSE],
            len: 0,
            fin: false,
            reset: false,
        }
    }

    pub(super) fn with(data: &[u8], fin: bool) -> Self {
        let mut r = Response::empty();
        r.push(data);
        r.fin = fin;
        r
    }

    pub(super) fn push(&mut self, data: &[u8]) {
        let end = (self.len + data.len()).min(MAX_RESPONSE);
        if let (Some(dst), Some(src)) = (
            self.bytes.get_mut(self.len..end),
            data.get(..end - self.len),
        ) {
            dst.copy_from_slice(src);
        }
        self.len = end;
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

/// What a decoy sends on its own right after the handshake (server-first protocols).
pub fn banner(persona: &Persona, port: u16) -> Option<Response> {
    match (port, persona.kind) {
        (22, _) if !persona.ssh_banner.is_empty() => {
            let mut r = Response::empty();
            r.push(persona.ssh_banner.as_bytes());
            r.push(b"\r\n");
            Some(r)
        }
        (21, _) => Some(Response::with(b"220 (vsFTPd 3.0.5)\r\n", false)),
        (25, _) => Some(Response::with(
            b"220 mail ESMTP Postfix (Debian/GNU)\r\n",
            false,
        )),
        // Cisco's telnet: WILL ECHO, WILL SUPPRESS-GO-AHEAD, DO TERMINAL-TYPE, DO NAWS.
        (23, PersonaKind::Router) => Some(Response::with(
            &[
                0xff, 0xfb, 0x01, 0xff, 0xfb, 0x03, 0xff, 0xfd, 0x18, 0xff, 0xfd, 0x1f,
            ],
            false,
        )),
        // A Hikvision recorder's SDK port greets first with a 16-byte header.
        (8000, PersonaKind::Camera) => Some(Response::with(
            &[0, 0, 0, 0x10, 0, 0, 0, 0x1e, 0, 0, 0, 0x1e, 0, 0, 0, 0],
            false,
        )),
        _ => None,
    }
}

/// The answer to the data a client sends on `port`, given this segment's
/// bytes and `sent`, the bytes the decoy has sent on the connection before
/// it (what the segment acknowledges).
pub fn answer(
    persona: &Persona,
    port: u16,
    data: &[u8],
    sent: u32,
    now_s: u64,
    identities: &TlsStore,
) -> Option<Response> {
    match port {
        // A real server reads the whole request line before it answers:
        // a segment that ends inside it gets only an acknowledgement.
        80 | 8080 | 631 => data
            .contains(&b'\n')
            .then(|| http::answer(persona, data, now_s)),
        443 | 8443 => tls::answer(identities, persona, data),
        // TLS on the RDP port, after the Connection Confirm (CredSSP) or
        // straight away (nmap's ssl-cert): the server's certificate.
        3389 if data.first() == Some(&0x16) => tls::answer(identities, persona, data),
        // TPKT + X.224 Connection Request: Connection Confirm selecting CredSSP (NLA).
        3389 if data.starts_with(&[0x03, 0x00]) => Some(Response::with(
            &[
                0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0x00, 0x00, 0x12, 0x34, 0x00, 0x02, 0x1f, 0x08,
                0x00, 0x02, 0x00, 0x00, 0x00,
            ],
            false,
        )),
        135 => smb::rpc(data),
        139 => Some(smb::netbios(persona, data, sent, now_s)),
        445 => Some(smb::smb(persona, data, now_s)),
        554 => data.contains(&b'\n').then(|| rtsp(persona, data, now_s)),
        // LPD (RFC 1179): every command is acknowledged with a zero octet.
        515 if data.ends_with(b"\n") => Some(Response::with(&[0], false)),
        _ => None,
    }
}

/// A Hikvision recorder's RTSP (RFC 2326): OPTIONS lists its methods,
/// everything else asks for digest credentials.
fn rtsp(persona: &Persona, request: &[u8], now_s: u64) -> Response {
    let mut r = Response::empty();
    let cseq = request
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"CSeq:"))
        .map(|v| v.trim_ascii());
    let header = |r: &mut Response, status: &[u8]| {
        r.push(b"RTSP/1.0 ");
        r.push(status);
        r.push(b"\r\n");
        if let Some(n) = cseq {
            r.push(b"CSeq: ");
            r.push(n);
            r.push(b"\r\n");
        }
    };
    if request.starts_with(b"OPTIONS ") {
        header(&mut r, b"200 OK");
        r.push(b"Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, PAUSE\r\n\r\n");
        return r;
    }
    header(&mut r, b"401 Unauthorized");
    // A nonce that changes each minute and differs between decoys.
    let mut nonce = [0u8; 32];
    let mut v = (persona.identity() ^ (now_s / 60)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for (k, b) in nonce.iter_mut().enumerate() {
        if k % 16 == 0 {
            v = v.rotate_left(29).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ k as u64;
        }
        *b = b"0123456789abcdef"[((v >> (4 * (k % 16))) & 0xf) as usize];
    }
    r.push(b"WWW-Authenticate: Digest realm=\"Hikvision\", nonce=\"");
    r.push(&nonce);
    r.push(b"\", stale=\"FALSE\"\r\nWWW-Authenticate: Basic realm=\"/\"\r\n\r\n");
    r
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::engine::persona::PersonaMaker;

    /// `super::answer` with no TLS identities.
    fn answer(p: &Persona, port: u16, data: &[u8], sent: u32, now: u64) -> Option<Response> {
        super::answer(p, port, data, sent, now, &TlsStore::off())
    }

    /// A decoy of family `kind` (secret [5; 32], in 198.51.100.0/20).
    pub fn persona(kind: PersonaKind) -> Persona {
        let maker = PersonaMaker::new(&[5; 32]);
        (0..4096u32)
            .map(|i| {
                maker.persona(
                    &std::net::Ipv4Addr::from(0xc633_6400 + i)
                        .to_ipv6_mapped()
                        .octets(),
                )
            })
            .find(|p| p.kind == kind)
            .unwrap()
    }

    #[test]
    fn http_waits_for_a_whole_request_line() {
        let p = PersonaMaker::new(&[1; 32]).persona(&[0; 16]);
        let now = 1_767_225_600;
        assert!(
            answer(&p, 80, b"GET / HT", 0, now).is_none(),
            "inside the request line"
        );
        assert!(answer(&p, 80, b"\x16\x03\x01\x02\x00", 0, now).is_none());
        // The rest of a split request line: answered as the request.
        let r = answer(&p, 80, b"TP/1.1\r\nHost: x\r\n\r\n", 0, now).unwrap();
        assert!(r.payload().starts_with(b"HTTP/1.1 "));
        assert!(!r.payload().starts_with(b"HTTP/1.1 400"));
        // A whole line that is not HTTP: 400, as nginx and Apache answer.
        let r = answer(&p, 80, b"\r\n\r\n", 0, now).unwrap();
        assert!(r.payload().starts_with(b"HTTP/1.1 400"));
    }

    #[test]
    fn http_response_carries_the_personas_server_and_closes() {
        let p = persona(PersonaKind::LinuxWeb);
        let r = answer(
            &p,
            80,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            0,
            1_767_225_600,
        )
        .unwrap();
        let text = std::str::from_utf8(r.payload()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains(&format!("Server: {}\r\n", p.http_server)));
        assert!(text.contains("Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        assert!(r.fin);
        let head_only = answer(&p, 80, b"HEAD / HTTP/1.1\r\n\r\n", 0, 0).unwrap();
        assert!(
            std::str::from_utf8(head_only.payload())
                .unwrap()
                .ends_with("\r\n\r\n")
        );
        let junk = answer(&p, 80, b"\x16\x03\x01\r\n", 0, 0).unwrap();
        assert!(junk.payload().starts_with(b"HTTP/1.1 400 Bad Request"));
    }

    #[test]
    fn banners_tls_rdp_and_smb() {
        let linux = persona(PersonaKind::LinuxWeb);
        let b = banner(&linux, 22).unwrap();
        assert!(b.payload().starts_with(b"SSH-2.0-OpenSSH_") && b.payload().ends_with(b"\r\n"));
        assert!(banner(&linux, 80).is_none(), "HTTP is client-first");
        // TLS (engine::decoy::tls): a record cut before its message waits.
        assert!(answer(&linux, 443, &[0x16, 0x03, 0x01, 0x02, 0x00], 0, 0).is_none());
        let windows = persona(PersonaKind::WindowsServer);
        let rdp = answer(&windows, 3389, &[0x03, 0x00, 0x00, 0x13], 0, 0).unwrap();
        assert_eq!(rdp.payload().len(), 19);
        // CredSSP's TLS after the confirm goes to the TLS answer (here
        // without identities: handshake_failure).
        let mut hello = vec![0x16, 3, 1, 0, 45, 1, 0, 0, 41, 3, 3];
        hello.extend([0; 32]); // random
        hello.extend([0, 0, 2, 0, 0x2f, 1, 0]); // no session, AES128-SHA, no compression
        let tls = answer(&windows, 3389, &hello, 19, 0).unwrap();
        assert_eq!(tls.payload(), &[0x15, 3, 3, 0, 2, 2, 40]);
        assert!(
            answer(&windows, 445, b"\x00\x00\x00\x85\xffSMB", 0, 0)
                .unwrap()
                .reset
        );
        let router = persona(PersonaKind::Router);
        assert_eq!(banner(&router, 23).unwrap().payload()[0], 0xff);
    }

    #[test]
    fn rtsp_lpd_and_the_sdk_port_answer_as_a_hikvision_and_an_hp_do() {
        let cam = persona(PersonaKind::Camera);
        let r = answer(&cam, 554, b"OPTIONS / RTSP/1.0\r\n\r\n", 0, 0).unwrap();
        assert_eq!(
            r.payload(),
            b"RTSP/1.0 200 OK\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, PAUSE\r\n\r\n"
        );
        let r = answer(
            &cam,
            554,
            b"DESCRIBE rtsp://x/ RTSP/1.0\r\nCSeq: 3\r\n\r\n",
            0,
            60,
        )
        .unwrap();
        let text = std::str::from_utf8(r.payload()).unwrap();
        assert!(text.starts_with("RTSP/1.0 401 Unauthorized\r\nCSeq: 3\r\nWWW-Authenticate: Digest realm=\"Hikvision\", nonce=\""), "{text}");
        let nonce = text
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(nonce.len(), 32);
        assert!(nonce.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(answer(&cam, 554, b"OPTIONS / RT", 0, 0).is_none());
        assert_eq!(banner(&cam, 8000).unwrap().payload().len(), 16);
        let hp = persona(PersonaKind::Printer);
        assert_eq!(
            answer(&hp, 515, b"\x01default\n", 0, 0).unwrap().payload(),
            &[0]
        );
        assert!(banner(&hp, 9100).is_none(), "raw printing is silent");
    }
}
