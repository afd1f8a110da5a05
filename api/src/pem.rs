//! PEM text of a certificate's DER, for the places that hold a certificate as DER and
//! hand it on as PEM (the node's CA chain, the CA the client pins).

/// `-----BEGIN CERTIFICATE-----`, the DER in base64 lines of 64, `-----END ...`.
pub fn certificate(der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let text = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    #[test]
    fn the_pem_reads_back_as_the_same_der() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = super::certificate(&der);
        assert!(pem.lines().all(|line| line.len() <= 64));
        let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), der.as_slice());
    }
}
