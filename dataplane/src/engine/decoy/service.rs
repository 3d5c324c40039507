//! The decoy services: what a decoy says after a verified handshake,
//! decided from each segment alone.
//!
//! Server-first protocols (SSH, FTP, SMTP, telnet) send their banner in
//! answer to the handshake's ACK; client-first ones answer the first data
//! (HTTP with a persona-specific response, TLS with a handshake-failure
//! alert, RDP with an X.224 connection confirm); SMB is accepted, read and
//! reset. Everything is written into a fixed stack buffer: nothing is
//! allocated. Bodies are short pages of our own, not copies of any server's.

use std::io::Write;

use super::super::persona::{Persona, PersonaKind};

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
    fn empty() -> Self {
        Response {
            bytes: [0; MAX_RESPONSE],
            len: 0,
            fin: false,
            reset: false,
        }
    }

    fn with(data: &[u8], fin: bool) -> Self {
        let mut r = Response::empty();
        r.push(data);
        r.fin = fin;
        r
    }

    fn push(&mut self, data: &[u8]) {
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
        _ => None,
    }
}

/// The answer to the first data a client sends on `port`, given its first bytes.
pub fn answer(persona: &Persona, port: u16, data: &[u8], now_s: u64) -> Option<Response> {
    match port {
        // A real server reads the whole request line before it answers:
        // a segment that ends inside it gets only an acknowledgement.
        80 | 8080 | 631 => data.contains(&b'\n').then(|| http(persona, data, now_s)),
        // TLS record type 22 (handshake): fatal alert, handshake_failure (40).
        443 | 8443 if data.first() == Some(&0x16) => Some(Response::with(
            &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
            true,
        )),
        // TPKT + X.224 Connection Request: Connection Confirm selecting CredSSP (NLA).
        3389 if data.starts_with(&[0x03, 0x00]) => Some(Response::with(
            &[
                0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0x00, 0x00, 0x12, 0x34, 0x00, 0x02, 0x1f, 0x08,
                0x00, 0x02, 0x00, 0x00, 0x00,
            ],
            false,
        )),
        139 | 445 => {
            let mut r = Response::empty();
            r.reset = true;
            Some(r)
        }
        _ => None,
    }
}

fn http(persona: &Persona, request: &[u8], now_s: u64) -> Response {
    let mut r = Response::empty();
    let line = request.split(|&b| b == b'\n').next().unwrap_or(&[]);
    // A request line, or the end of one whose start came in an earlier
    // segment (a stateless decoy sees each segment alone).
    let looks_like_http = [&b"GET "[..], b"HEAD ", b"POST ", b"OPTIONS ", b"PUT "]
        .iter()
        .any(|m| request.starts_with(m))
        || line.windows(4).any(|w| w == b"P/1.");
    let (status, body): (&str, &[u8]) = if !looks_like_http {
        ("400 Bad Request", b"<html><head><title>400 Bad Request</title></head><body><h1>Bad Request</h1></body></html>\n")
    } else {
        match persona.kind {
            PersonaKind::Printer => ("200 OK", b"<html><head><title>Printer status</title></head><body><h1>Ready</h1><p>Toner 64%</p></body></html>\n"),
            PersonaKind::Router => ("401 Unauthorized", b"<html><head><title>401 Unauthorized</title></head><body><h1>Authorization required</h1></body></html>\n"),
            PersonaKind::WindowsServer => ("200 OK", b"<!DOCTYPE html><html><head><title>IIS Windows Server</title></head><body><div id=\"c\">Internet Information Services</div></body></html>\n"),
            _ => ("200 OK", b"<!DOCTYPE html><html><head><title>Welcome</title></head><body><h1>Welcome</h1><p>This server is up.</p></body></html>\n"),
        }
    };
    let head_only = request.starts_with(b"HEAD ");
    let mut header = [0u8; 512];
    let mut w = &mut header[..];
    let mut date = [0u8; 29];
    http_date(now_s, &mut date);
    let date = std::str::from_utf8(&date).unwrap_or("");
    // The writes cannot fail: the header buffer is larger than the longest header.
    let _ = write!(
        w,
        "HTTP/1.1 {status}\r\nServer: {}\r\nDate: {date}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n",
        persona.http_server,
        body.len()
    );
    if persona.kind == PersonaKind::WindowsServer {
        let _ = write!(w, "X-Powered-By: ASP.NET\r\n");
    }
    if persona.kind == PersonaKind::Router {
        let _ = write!(w, "WWW-Authenticate: Basic realm=\"level_15_access\"\r\n");
    }
    // A validator fixed per decoy and different between decoys.
    let _ = write!(
        w,
        "ETag: \"{:x}-{:x}\"\r\nConnection: close\r\n\r\n",
        persona.clock_offset,
        body.len()
    );
    let remaining = w.len();
    let used = header.len() - remaining;
    r.push(header.get(..used).unwrap_or(&[]));
    if !head_only {
        r.push(body);
    }
    r.fin = true;
    r
}

/// Formats Unix seconds as an HTTP date (RFC 9110 IMF-fixdate), 29 bytes.
pub fn http_date(unix_s: u64, out: &mut [u8; 29]) {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_s / 86_400;
    let secs = unix_s % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut w = &mut out[..];
    let _ = write!(
        w,
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1).clamp(0, 11) as usize],
        year,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::engine::persona::PersonaMaker;

    fn persona(kind: PersonaKind) -> Persona {
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
    fn http_dates_are_imf_fixdate() {
        let mut d = [0u8; 29];
        http_date(784_111_777, &mut d);
        assert_eq!(&d, b"Sun, 06 Nov 1994 08:49:37 GMT");
        http_date(1_767_225_600, &mut d);
        assert_eq!(&d, b"Thu, 01 Jan 2026 00:00:00 GMT");
        http_date(1_709_164_800, &mut d);
        assert_eq!(&d, b"Thu, 29 Feb 2024 00:00:00 GMT");
    }

    #[test]
    fn http_waits_for_a_whole_request_line() {
        let p = PersonaMaker::new(&[1; 32]).persona(&[0; 16]);
        let now = 1_767_225_600;
        assert!(
            answer(&p, 80, b"GET / HT", now).is_none(),
            "inside the request line"
        );
        assert!(answer(&p, 80, b"\x16\x03\x01\x02\x00", now).is_none());
        // The rest of a split request line: answered as the request.
        let r = answer(&p, 80, b"TP/1.1\r\nHost: x\r\n\r\n", now).unwrap();
        assert!(r.payload().starts_with(b"HTTP/1.1 "));
        assert!(!r.payload().starts_with(b"HTTP/1.1 400"));
        // A whole line that is not HTTP: 400, as nginx and Apache answer.
        let r = answer(&p, 80, b"\r\n\r\n", now).unwrap();
        assert!(r.payload().starts_with(b"HTTP/1.1 400"));
    }

    #[test]
    fn http_response_carries_the_personas_server_and_closes() {
        let p = persona(PersonaKind::LinuxWeb);
        let r = answer(&p, 80, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1_767_225_600).unwrap();
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
        let head_only = answer(&p, 80, b"HEAD / HTTP/1.1\r\n\r\n", 0).unwrap();
        assert!(
            std::str::from_utf8(head_only.payload())
                .unwrap()
                .ends_with("\r\n\r\n")
        );
        let junk = answer(&p, 80, b"\x16\x03\x01\r\n", 0).unwrap();
        assert!(junk.payload().starts_with(b"HTTP/1.1 400 Bad Request"));
    }

    #[test]
    fn banners_tls_rdp_and_smb() {
        let linux = persona(PersonaKind::LinuxWeb);
        let b = banner(&linux, 22).unwrap();
        assert!(b.payload().starts_with(b"SSH-2.0-OpenSSH_") && b.payload().ends_with(b"\r\n"));
        assert!(banner(&linux, 80).is_none(), "HTTP is client-first");
        let tls = answer(&linux, 443, &[0x16, 0x03, 0x01, 0x02, 0x00], 0).unwrap();
        assert_eq!(tls.payload(), &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
        let windows = persona(PersonaKind::WindowsServer);
        let rdp = answer(&windows, 3389, &[0x03, 0x00, 0x00, 0x13], 0).unwrap();
        assert_eq!(rdp.payload().len(), 19);
        assert!(
            answer(&windows, 445, b"\x00\x00\x00\x85\xffSMB", 0)
                .unwrap()
                .reset
        );
        let router = persona(PersonaKind::Router);
        assert_eq!(banner(&router, 23).unwrap().payload()[0], 0xff);
    }
}
