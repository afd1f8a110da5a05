//! Several `O=` attributes in one subject: Kubernetes reads a client certificate's
//! groups from all of its Organization attributes, but rcgen's `DistinguishedName`
//! keeps one value per attribute type (a later `push` replaces the earlier one).
//!
//! So each group is pushed under its own placeholder type, `2.5.4.<100 + i>`, whose DER
//! encoding (`06 03 55 04 xx`) has the same length as id-at-organizationName's
//! (`06 03 55 04 0a`, RFC 5280 appendix A). After rcgen has built and signed the
//! certificate, [`rewrite`] turns each placeholder type inside the subject into
//! `organizationName` — one byte per attribute, no length anywhere changes — and signs
//! the patched TBSCertificate again with the CA key. An ed25519 signature is always 64
//! bytes, so the new one overwrites the old one in place.

use rcgen::{DnType, SigningKey};

/// First placeholder arc; `100 + i` stays below 128, one DER byte, for up to 28 groups.
const PLACEHOLDER_BASE: u64 = 100;
/// Most groups one certificate can carry this way.
pub const MAX_GROUPS: usize = 28;
/// The last arc of id-at-organizationName (2.5.4.10).
const ORGANIZATION_ARC: u8 = 10;
/// DER of an ed25519 signature value: BIT STRING, 65 bytes, no unused bits.
const ED25519_SIGNATURE_HEADER: [u8; 3] = [0x03, 0x41, 0x00];
const ED25519_SIGNATURE_LEN: usize = 64;

/// Why a certificate could not be rewritten (a bug, not bad input: rcgen's output has
/// a fixed shape).
#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    #[error("{0} groups requested, at most {MAX_GROUPS} fit in one certificate")]
    TooMany(usize),
    #[error("the certificate is not the DER rcgen writes: {0}")]
    Shape(&'static str),
    #[error("cannot sign the rewritten certificate")]
    Sign(#[source] rcgen::Error),
}

/// The placeholder attribute type for group number `index`.
pub fn placeholder(index: usize) -> Result<DnType, GroupsError> {
    if index >= MAX_GROUPS {
        return Err(GroupsError::TooMany(index + 1));
    }
    Ok(DnType::CustomDnType(vec![
        2,
        5,
        4,
        PLACEHOLDER_BASE + index as u64,
    ]))
}

/// Turns every placeholder attribute type in the subject of `der` into
/// organizationName and re-signs the certificate with `ca_key` (ed25519).
pub fn rewrite(der: &[u8], ca_key: &impl SigningKey) -> Result<Vec<u8>, GroupsError> {
    let mut der = der.to_vec();
    let cert = tlv(&der, 0)?;
    let tbs = tlv(&der, cert.content)?;
    let subject = nth_element(&der, tbs, 5)?;
    rename_placeholders(&mut der, subject)?;
    let signature = ca_key
        .sign(&der[tbs.start..tbs.end])
        .map_err(GroupsError::Sign)?;
    let tail = der.len() - ED25519_SIGNATURE_LEN;
    if signature.len() != ED25519_SIGNATURE_LEN
        || der.get(tail - ED25519_SIGNATURE_HEADER.len()..tail)
            != Some(&ED25519_SIGNATURE_HEADER[..])
    {
        return Err(GroupsError::Shape("the signature is not ed25519"));
    }
    der[tail..].copy_from_slice(&signature);
    Ok(der)
}

/// One DER element: where it starts, where its content starts and where it ends.
#[derive(Debug, Clone, Copy)]
struct Tlv {
    start: usize,
    content: usize,
    end: usize,
}

/// Reads the element at `start` (single-byte tags, definite lengths: all DER has).
fn tlv(der: &[u8], start: usize) -> Result<Tlv, GroupsError> {
    let truncated = GroupsError::Shape("truncated element");
    let first = *der
        .get(start + 1)
        .ok_or(GroupsError::Shape("truncated element"))?;
    let (len, content) = if first < 0x80 {
        (usize::from(first), start + 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Err(GroupsError::Shape("unsupported length"));
        }
        let bytes = der.get(start + 2..start + 2 + count).ok_or(truncated)?;
        let len = bytes.iter().fold(0usize, |n, b| n << 8 | usize::from(*b));
        (len, start + 2 + count)
    };
    let end = content + len;
    if end > der.len() {
        return Err(GroupsError::Shape("element runs past the end"));
    }
    Ok(Tlv {
        start,
        content,
        end,
    })
}

/// The `n`th (0-based) element inside the constructed element `outer`.
fn nth_element(der: &[u8], outer: Tlv, n: usize) -> Result<Tlv, GroupsError> {
    let mut element = tlv(der, outer.content)?;
    for _ in 0..n {
        if element.end >= outer.end {
            return Err(GroupsError::Shape("too few elements"));
        }
        element = tlv(der, element.end)?;
    }
    Ok(element)
}

/// Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value }: renames the type of every
/// attribute whose OID is a placeholder.
fn rename_placeholders(der: &mut [u8], name: Tlv) -> Result<(), GroupsError> {
    let mut rdn_start = name.content;
    while rdn_start < name.end {
        let rdn = tlv(der, rdn_start)?;
        let attribute = tlv(der, rdn.content)?;
        let oid = tlv(der, attribute.content)?;
        let arcs = &der[oid.content..oid.end];
        let is_placeholder = arcs.len() == 3
            && arcs[..2] == [0x55, 0x04]
            && (PLACEHOLDER_BASE..PLACEHOLDER_BASE + MAX_GROUPS as u64)
                .contains(&u64::from(arcs[2]));
        if is_placeholder {
            der[oid.content + 2] = ORGANIZATION_ARC;
        }
        rdn_start = rdn.end;
    }
    Ok(())
}
