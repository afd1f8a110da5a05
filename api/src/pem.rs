//! PEM text of a certificate's DER, for the places that hold a certificate as DER and
//! hand it on as PEM (the node's CA chain, the CA the client pins), and the fingerprint
//! by which the agent, the launcher and `dbg` name a certificate.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

/// `-----BEGIN CERTIFICATE-----`, the DER in base64 lines of 64, `-----END ...`.
pub fn certificate(der: &[u8]) -> String {
    encode("CERTIFICATE", der)
}

/// A PEM block of `label` (`CERTIFICATE`, `PRIVATE KEY`, ...) holding `der`.
pub fn encode(label: &str, der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let text = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// `sha256:<lowercase hex>` of the DER of the first certificate in `pem`; `Err` says
/// why `pem` holds none.
pub fn fingerprint(pem: &str) -> Result<String, String> {
    use std::fmt::Write as _;
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|err| format!("holds no PEM certificate: {err}"))?;
    let mut text = String::from("sha256:");
    for byte in Sha256::digest(der.as_ref()) {
        let _ = write!(text, "{byte:02x}");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pem_reads_back_as_the_same_der() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = super::certificate(&der);
        assert!(pem.lines().all(|line| line.len() <= 64));
        let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), der.as_slice());
    }

    #[test]
    fn the_fingerprint_is_the_sha256_of_the_first_certificate_der() {
        let first: Vec<u8> = (0..200u8).collect();
        let pem = super::certificate(&first) + &super::certificate(b"second");
        let expected: String = Sha256::digest(&first)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(fingerprint(&pem).unwrap(), format!("sha256:{expected}"));
        let err = fingerprint("not a certificate").unwrap_err();
        assert!(err.starts_with("holds no PEM certificate"), "{err}");
    }
}
