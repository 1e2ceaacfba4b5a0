//! Validation of the fields a caller supplies. One set of rules for the library, the CLI and the
//! daemon (docs/compatibility.md), so a record accepted by one is accepted by all.

use crate::error::{Error, Result};
use crate::record::MAX_PAYLOAD;

/// Longest classification, as in the original (`MAX_CLASS_LENGTH`).
pub const MAX_CLASSIFICATION: usize = 122;
/// Longest part of a classification (`MAX_SUBCAT_LENGTH`).
pub const MAX_CLASSIFICATION_PART: usize = 40;

/// Classification: exactly two `/`, each of the three parts 1–40 bytes, at most 122 bytes in all,
/// printable ASCII without spaces. (The original accepted empty parts and a 41-byte first part.)
pub fn classification(c: &str) -> Result<()> {
    let bad = |why: String| Err(Error::invalid("classification", why));
    if c.len() > MAX_CLASSIFICATION {
        return bad(format!(
            "{} bytes long; the limit is {MAX_CLASSIFICATION}",
            c.len()
        ));
    }
    if let Some(ch) = c.chars().find(|ch| !ch.is_ascii_graphic()) {
        return bad(format!(
            "character {ch:?} is not allowed (printable ASCII without spaces only)"
        ));
    }
    let parts: Vec<&str> = c.split('/').collect();
    if parts.len() != 3 {
        return bad(format!(
            "{c:?} must have exactly three parts separated by '/' (like org.example/area/event)"
        ));
    }
    for p in parts {
        if p.is_empty() {
            return bad(format!("{c:?} has an empty part"));
        }
        if p.len() > MAX_CLASSIFICATION_PART {
            return bad(format!(
                "part {p:?} is {} bytes long; the limit is {MAX_CLASSIFICATION_PART}",
                p.len()
            ));
        }
    }
    Ok(())
}

/// Event id: exactly 32 lowercase hex digits.
pub fn event_id(id: &str) -> Result<()> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Error::invalid(
            "event id",
            format!("{id:?} is not 32 lowercase hexadecimal digits"),
        ))
    }
}

/// Payload: at most [`MAX_PAYLOAD`] bytes of UTF-8 text without control characters other than
/// whitespace (tab, LF, VT, FF, CR).
pub fn payload(p: &[u8]) -> Result<&str> {
    if p.len() > MAX_PAYLOAD {
        return Err(Error::PayloadTooLarge {
            len: p.len(),
            max: MAX_PAYLOAD,
        });
    }
    let text = std::str::from_utf8(p).map_err(|e| {
        Error::invalid(
            "payload",
            format!("not valid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    if let Some((at, ch)) = text
        .char_indices()
        .find(|(_, ch)| ch.is_control() && !matches!(ch, '\t' | '\n' | '\x0b' | '\x0c' | '\r'))
    {
        return Err(Error::invalid(
            "payload",
            format!("control character {ch:?} at byte {at}"),
        ));
    }
    Ok(text)
}

/// Severity as the original: 0 becomes 1, anything above 4 becomes 4. Never an error.
pub fn clamp_severity(s: u32) -> u32 {
    s.clamp(1, 4)
}

/// A header value may hold anything but a line break or another control character, because the
/// wire and spool formats are line based.
pub fn header_value(name: &'static str, v: &str) -> Result<()> {
    match v.chars().find(|c| c.is_control() && *c != '\t') {
        None => Ok(()),
        Some(c) => Err(Error::invalid(
            name,
            format!("control character {c:?} in header value"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_rules() {
        assert!(classification("t/t/t").is_ok());
        assert!(classification("org.clearlinux/hello/world").is_ok());
        for bad in [
            "", "t/t", "t/t/t/t", "//", "a//b", "/a/b", "a/b/", "a b/c/d", "a/b/c\n",
        ] {
            assert!(classification(bad).is_err(), "{bad:?} should be rejected");
        }
        let p40 = "x".repeat(40);
        let p41 = "x".repeat(41);
        assert!(classification(&format!("{p40}/{p40}/{p40}")).is_ok());
        // The original accepted a 41-byte first part (off by one); we do not.
        assert!(classification(&format!("{p41}/a/b")).is_err());
        assert!(classification(&format!("a/{p41}/b")).is_err());
        assert!(classification("ä/b/c").is_err());
    }

    #[test]
    fn event_id_rules() {
        assert!(event_id("aaaaaa00000033333344444466666622").is_ok());
        for bad in [
            "aaaaaa000000333333444444666666ZZ",
            "AAAAAA00000033333344444466666622",
            "aaaa",
            &"0".repeat(43),
            "",
        ] {
            assert!(event_id(bad).is_err());
        }
    }

    #[test]
    fn payload_rules() {
        assert!(payload(b"hello\n\tworld\r\x0b\x0c").is_ok());
        assert!(payload("grüße ✓".as_bytes()).is_ok());
        assert!(payload(&[b'a'; 8192]).is_ok());
        assert_eq!(payload(&[b'a'; 8193]).unwrap_err().errno(), 90);
        assert!(payload(b"a\x01b").is_err());
        assert!(payload(b"a\x00b").is_err());
        assert!(payload(b"a\x7fb").is_err());
        assert!(payload(b"\xff").is_err());
        assert!(payload("\u{85}".as_bytes()).is_err());
    }

    #[test]
    fn severity_clamp() {
        assert_eq!(clamp_severity(0), 1);
        assert_eq!(clamp_severity(3), 3);
        assert_eq!(clamp_severity(5), 4);
        assert_eq!(clamp_severity(u32::MAX), 4);
    }
}
