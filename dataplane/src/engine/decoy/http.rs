//! The decoys' HTTP answers, in the header order and shape of the server
//! each persona names (nginx, Apache, IIS, an HP printer's embedded server,
//! Cisco IOS, a Hikvision recorder): a scanner's service probes read the
//! `Server:` header and the order of the others (nmap's
//! `nmap-service-probes` matches several of them by that order).
//!
//! Every value that a real server takes from its files (modification time,
//! entity tag, serial number) is fixed per decoy, from its persona, so two
//! visits to one decoy agree and two decoys differ. Bodies are short pages
//! of our own.

use std::io::Write;

use super::super::persona::{Persona, PersonaKind};
use super::service::Response;

/// The server software an HTTP port presents, from the persona.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Flavor {
    Nginx,
    Apache,
    Iis,
    HpPrinter,
    CiscoIos,
    Hikvision,
}

fn flavor(persona: &Persona) -> Flavor {
    match persona.kind {
        PersonaKind::WindowsServer => Flavor::Iis,
        PersonaKind::Printer => Flavor::HpPrinter,
        PersonaKind::Router => Flavor::CiscoIos,
        PersonaKind::Camera => Flavor::Hikvision,
        _ if persona.http_server.starts_with("Apache") => Flavor::Apache,
        _ => Flavor::Nginx,
    }
}

/// Seconds since 1970 at which the decoy's pages last changed: fixed per
/// decoy, somewhere in 2021-2024.
fn last_modified(persona: &Persona) -> u64 {
    1_610_000_000 + u64::from(persona.clock_offset) % 110_000_000
}

/// A per-decoy serial number in an HP printer's format (`CNB` and seven
/// letters and digits).
fn hp_serial(persona: &Persona) -> [u8; 10] {
    const ALNUM: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = *b"CNB0000000";
    let mut v = persona.identity();
    for b in out.iter_mut().skip(3) {
        *b = ALNUM[(v % 36) as usize];
        v /= 36;
    }
    out
}

/// The answer to a request that holds a whole request line.
pub fn answer(persona: &Persona, request: &[u8], now_s: u64) -> Response {
    let line = request.split(|&b| b == b'\n').next().unwrap_or(&[]);
    // A request line, or the end of one whose start came in an earlier
    // segment (a stateless decoy sees each segment alone).
    let looks_like_http = [&b"GET "[..], b"HEAD ", b"POST ", b"OPTIONS ", b"PUT "]
        .iter()
        .any(|m| request.starts_with(m))
        || line.windows(4).any(|w| w == b"P/1.");
    let flavor = flavor(persona);
    let (status, body): (&str, &[u8]) = if !looks_like_http {
        (
            "400 Bad Request",
            b"<html><head><title>400 Bad Request</title></head><body><h1>Bad Request</h1></body></html>\n",
        )
    } else {
        match flavor {
            Flavor::HpPrinter => (
                "200 OK",
                b"<html><head><title>Printer status</title></head><body><h1>Ready</h1><p>Toner 64%</p></body></html>\n",
            ),
            Flavor::CiscoIos => ("401 Unauthorized", b"401 Unauthorized\r\n"),
            Flavor::Iis => (
                "200 OK",
                b"<!DOCTYPE html><html><head><title>IIS Windows Server</title></head><body><div id=\"c\">Internet Information Services</div></body></html>\n",
            ),
            Flavor::Hikvision => (
                "200 OK",
                b"<!DOCTYPE html><html><head><title>Network Video Recorder</title><script>location.href='/doc/page/login.asp';</script></head><body></body></html>\n",
            ),
            _ => (
                "200 OK",
                b"<!DOCTYPE html><html><head><title>Welcome</title></head><body><h1>Welcome</h1><p>This server is up.</p></body></html>\n",
            ),
        }
    };
    let head_only = request.starts_with(b"HEAD ");
    let mut date = [0u8; 29];
    http_date(now_s, &mut date);
    let date = std::str::from_utf8(&date).unwrap_or("");
    let modified = last_modified(persona);
    let mut lm = [0u8; 29];
    http_date(modified, &mut lm);
    let lm = std::str::from_utf8(&lm).unwrap_or("");
    let server = persona.http_server;
    let len = body.len();
    let mut header = [0u8; 640];
    let mut w = &mut header[..];
    // The writes cannot fail: the buffer is larger than the longest header.
    let _ = match flavor {
        Flavor::Nginx => write!(
            w,
            "HTTP/1.1 {status}\r\nServer: {server}\r\nDate: {date}\r\nContent-Type: text/html\r\nContent-Length: {len}\r\nLast-Modified: {lm}\r\nConnection: close\r\nETag: \"{modified:x}-{len:x}\"\r\nAccept-Ranges: bytes\r\n\r\n"
        ),
        Flavor::Apache => write!(
            w,
            "HTTP/1.1 {status}\r\nDate: {date}\r\nServer: {server}\r\nLast-Modified: {lm}\r\nETag: \"{len:x}-{:x}\"\r\nAccept-Ranges: bytes\r\nContent-Length: {len}\r\nVary: Accept-Encoding\r\nConnection: close\r\nContent-Type: text/html\r\n\r\n",
            modified * 1_000_000 + u64::from(persona.clock_offset % 1_000_000)
        ),
        Flavor::Iis => write!(
            w,
            "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nLast-Modified: {lm}\r\nAccept-Ranges: bytes\r\nETag: \"{:x}:0\"\r\nServer: {server}\r\nDate: {date}\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n",
            // A FILETIME: 100 ns ticks since 1601.
            (modified + 11_644_473_600) * 10_000_000
        ),
        Flavor::HpPrinter => {
            let serial = hp_serial(persona);
            write!(
                w,
                "HTTP/1.1 {status}\r\nServer: {server}; Serial Number: {}; Built:Thu Aug 03, 2017 02:51:32PM {{FUP1CN1731AR}}\r\nContent-Type: text/html\r\nContent-Length: {len}\r\nCache-Control: max-age=0, no-cache, no-store\r\nConnection: close\r\n\r\n",
                std::str::from_utf8(&serial).unwrap_or("")
            )
        }
        Flavor::CiscoIos => write!(
            w,
            "HTTP/1.1 {status}\r\nDate: {date}\r\nServer: {server}\r\nAccept-Ranges: none\r\nWWW-Authenticate: Basic realm=\"level_15_access\"\r\nConnection: close\r\n\r\n"
        ),
        Flavor::Hikvision => write!(
            w,
            "HTTP/1.0 {status}\r\nDate: {date}\r\nServer: {server}\r\nETag: \"{:x}-{len:x}-{modified:x}\"\r\nContent-Length: {len}\r\nContent-Type: text/html\r\nConnection: close\r\nLast-Modified: {lm}\r\n\r\n",
            persona.clock_offset & 0xfff
        ),
    };
    let remaining = w.len();
    let used = header.len() - remaining;
    let mut r = Response::empty();
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
    use crate::engine::decoy::service::tests::persona;

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

    fn text(kind: PersonaKind) -> (Persona, String) {
        let p = persona(kind);
        let r = answer(&p, b"GET / HTTP/1.0\r\n\r\n", 1_767_225_600);
        assert!(r.fin);
        (p, String::from_utf8(r.payload().to_vec()).unwrap())
    }

    /// The header names in order.
    fn names(text: &str) -> Vec<&str> {
        let head = text.split("\r\n\r\n").next().unwrap();
        head.lines()
            .skip(1)
            .map(|l| l.split(':').next().unwrap())
            .collect()
    }

    #[test]
    fn each_server_keeps_its_own_header_order() {
        for (kind, first, order) in [
            (
                PersonaKind::WindowsServer,
                "HTTP/1.1 200 OK",
                &[
                    "Content-Type",
                    "Last-Modified",
                    "Accept-Ranges",
                    "ETag",
                    "Server",
                    "Date",
                ][..],
            ),
            (
                PersonaKind::Router,
                "HTTP/1.1 401 Unauthorized",
                &["Date", "Server"][..],
            ),
            (
                PersonaKind::Camera,
                "HTTP/1.0 200 OK",
                &[
                    "Date",
                    "Server",
                    "ETag",
                    "Content-Length",
                    "Content-Type",
                    "Connection",
                    "Last-Modified",
                ][..],
            ),
            (
                PersonaKind::Printer,
                "HTTP/1.1 200 OK",
                &["Server", "Content-Type"][..],
            ),
        ] {
            let (_, text) = text(kind);
            assert!(text.starts_with(first), "{kind:?}: {text}");
            assert!(names(&text).starts_with(order), "{kind:?}: {text}");
        }
        let (p, printer) = text(PersonaKind::Printer);
        let serial = hp_serial(&p);
        assert!(printer.contains(&format!(
            "Server: HP HTTP Server; HP Color LaserJet MFP M476dw - CF387A; Serial Number: {};",
            std::str::from_utf8(&serial).unwrap()
        )));
        assert!(serial.iter().all(u8::is_ascii_alphanumeric));
    }

    #[test]
    fn values_are_fixed_per_decoy_and_differ_between_decoys() {
        let maker = crate::engine::persona::PersonaMaker::new(&[8; 32]);
        let webs: Vec<Persona> = (0..512u32)
            .map(|i| {
                maker.persona(
                    &std::net::Ipv4Addr::from(0xc633_6400 + i)
                        .to_ipv6_mapped()
                        .octets(),
                )
            })
            .filter(|p| p.kind == PersonaKind::LinuxWeb)
            .take(2)
            .collect();
        let etag = |p: &Persona, now| {
            let r = answer(p, b"GET / HTTP/1.1\r\n\r\n", now);
            let t = String::from_utf8(r.payload().to_vec()).unwrap();
            t.lines()
                .find(|l| l.starts_with("ETag"))
                .unwrap()
                .to_string()
        };
        assert_eq!(etag(&webs[0], 1_767_225_600), etag(&webs[0], 1_767_229_200));
        assert_ne!(etag(&webs[0], 1_767_225_600), etag(&webs[1], 1_767_225_600));
    }
}
