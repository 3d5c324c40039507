//! The decoys' TLS identities: an RSA-2048 key and a self-signed
//! certificate shaped like the one the claimed software makes for itself
//! (Debian's snakeoil for a Linux web server, a `WIN-` host name for
//! Windows, `NPI` and the NIC's bits for an HP printer).
//!
//! Made once, off the packet path, from the deployment secret: the same
//! secret gives the same certificates after a restart (a host that changes
//! its certificate each time it reboots would stand out), another secret
//! gives others. The private key is dropped once the certificate is
//! signed: a stateless decoy never completes a handshake, so it never
//! decrypts anything (`engine::decoy::tls`).

use std::str::FromStr;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::Encode;
use x509_cert::der::asn1::{Ia5String, UtcTime};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{EncodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

use super::super::persona::PersonaKind;

/// Why an identity could not be made (none of these happen with valid
/// inputs; they are the libraries' error paths, reported, not unwrapped).
#[derive(Debug, thiserror::Error)]
#[error("TLS identity for {family}: {what}")]
pub struct CertError {
    family: &'static str,
    what: String,
}

/// The DER certificate of identity `index` of `family` under `secret`.
pub fn identity(secret: &[u8; 32], family: PersonaKind, index: u32) -> Result<Vec<u8>, CertError> {
    let fail = |what: String| CertError {
        family: family.as_str(),
        what,
    };
    let seed: [u8; 32] = Sha256::new()
        .chain_update(b"baitwall tls identity")
        .chain_update(secret)
        .chain_update(family.as_str())
        .chain_update(index.to_le_bytes())
        .finalize()
        .into();
    let mut rng = ChaCha20Rng::from_seed(seed);
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| fail(e.to_string()))?;
    let spki_der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| fail(e.to_string()))?;
    let spki = SubjectPublicKeyInfoOwned::try_from(spki_der.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key);

    let host = host_name(family, &mut rng);
    let subject = match family {
        PersonaKind::Printer => format!("CN={host},O=HP"),
        _ => format!("CN={host}"),
    };
    let subject = Name::from_str(&subject).map_err(|e| fail(e.to_string()))?;
    // Issued at some time in 2023-2025, for ten years (make-ssl-cert's
    // default; Windows and HP's own certificates are as long-lived).
    let issued = 1_672_531_200 + rng.next_u64() % (3 * 365 * 86_400);
    let time = |s: u64| {
        UtcTime::from_unix_duration(Duration::from_secs(s))
            .map(Time::UtcTime)
            .map_err(|e| fail(e.to_string()))
    };
    let validity = Validity {
        not_before: time(issued)?,
        not_after: time(issued + 3650 * 86_400)?,
    };
    // A positive 16-byte serial, as OpenSSL makes them.
    let mut serial = [0u8; 16];
    rng.fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    serial[0] |= 0x10;
    let serial = SerialNumber::new(&serial).map_err(|e| fail(e.to_string()))?;
    // A self-signed server certificate: issued by itself, for key
    // encipherment (RSA key exchange) and signatures, not a CA.
    let profile = Profile::Leaf {
        issuer: subject.clone(),
        enable_key_agreement: false,
        enable_key_encipherment: true,
    };
    let mut builder = CertificateBuilder::new(profile, serial, validity, subject, spki, &signer)
        .map_err(|e| fail(e.to_string()))?;
    let dns = Ia5String::new(&host).map_err(|e| fail(e.to_string()))?;
    builder
        .add_extension(&SubjectAltName(vec![GeneralName::DnsName(dns)]))
        .map_err(|e| fail(e.to_string()))?;
    let cert = builder
        .build::<rsa::pkcs1v15::Signature>()
        .map_err(|e| fail(e.to_string()))?;
    cert.to_der().map_err(|e| fail(e.to_string()))
}

/// A host name in the family's default style.
fn host_name(family: PersonaKind, rng: &mut ChaCha20Rng) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const NAMES: &[&str] = &[
        "www", "web", "app", "portal", "intranet", "git", "wiki", "files", "mail", "vpn", "docs",
        "api", "proxy", "backup", "monitor", "build",
    ];
    let r = rng.next_u64();
    match family {
        PersonaKind::WindowsServer => {
            let tail: String = (0..11)
                .map(|k| char::from(ALNUM[((r >> (5 * k)) % ALNUM.len() as u64) as usize]))
                .collect();
            format!("WIN-{tail}")
        }
        PersonaKind::Printer => format!("NPI{:06X}", r & 0xff_ffff),
        _ => format!(
            "{}{:02}",
            NAMES[(r % NAMES.len() as u64) as usize],
            (r >> 32) % 20 + 1
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;
    use x509_cert::Certificate;
    use x509_cert::der::Decode;
    use x509_cert::spki::DecodePublicKey;

    #[test]
    fn an_identity_is_a_self_signed_certificate_in_the_familys_style() {
        let der = identity(&[3; 32], PersonaKind::WindowsServer, 0).unwrap();
        let cert = Certificate::from_der(&der).unwrap();
        let tbs = &cert.tbs_certificate;
        assert_eq!(tbs.subject, tbs.issuer, "self-signed");
        let subject = tbs.subject.to_string();
        assert!(
            subject.starts_with("CN=WIN-") && subject.len() == 18,
            "{subject}"
        );
        // The signature verifies with the certificate's own key.
        let spki_der = tbs.subject_public_key_info.to_der().unwrap();
        let key = rsa::RsaPublicKey::from_public_key_der(&spki_der).unwrap();
        assert_eq!(rsa::traits::PublicKeyParts::size(&key), 256);
        let verifier = VerifyingKey::<Sha256>::new(key);
        let signature = Signature::try_from(cert.signature.raw_bytes()).unwrap();
        verifier
            .verify(&tbs.to_der().unwrap(), &signature)
            .expect("the signature verifies");
        // Small enough for one segment with the ServerHello.
        assert!(der.len() < 900, "{}", der.len());
    }

    #[test]
    fn the_secret_decides_the_identity() {
        let a = identity(&[1; 32], PersonaKind::LinuxWeb, 0).unwrap();
        assert_eq!(a, identity(&[1; 32], PersonaKind::LinuxWeb, 0).unwrap());
        assert_ne!(a, identity(&[2; 32], PersonaKind::LinuxWeb, 0).unwrap());
        let printer = identity(&[1; 32], PersonaKind::Printer, 1).unwrap();
        let cert = Certificate::from_der(&printer).unwrap();
        assert!(
            cert.tbs_certificate
                .subject
                .to_string()
                .starts_with("CN=NPI"),
            "{}",
            cert.tbs_certificate.subject
        );
    }
}
