//! The original's argument checks, in its order and with its messages, so scripts written for the
//! original see the same errors. The shared core's rules (`telemetry::validate`) run after these
//! and are the final word.

use telemetry::validate::{MAX_CLASSIFICATION, MAX_CLASSIFICATION_PART};

/// A whole decimal number, as the original's strtoul-with-end-check.
pub fn integer(v: &str, what: &str) -> Result<u32, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("Invalid {what} number. Must be an integer"));
    }
    v.parse::<u32>()
        .map_err(|_| format!("Invalid {what} number. Must be an integer"))
}

/// Classification checks in the original order, then the core's.
pub fn classification(c: Option<&str>) -> Result<&str, String> {
    let c = c.ok_or("Classification required")?;
    if c.is_empty() || c.len() > MAX_CLASSIFICATION {
        return Err(format!(
            "Valid size for classification is 1-{MAX_CLASSIFICATION} chars"
        ));
    }
    if !c.is_ascii() {
        return Err("Classification must be ASCII".to_string());
    }
    if c.split('/').any(|p| p.len() > MAX_CLASSIFICATION_PART) {
        return Err(format!(
            "Each part of the classification may be at most {MAX_CLASSIFICATION_PART} chars"
        ));
    }
    if c.matches('/').count() != 2 {
        return Err("Classification must have the form a/b/c: exactly 2 '/' required".to_string());
    }
    telemetry::validate::classification(c).map_err(|e| e.to_string())?;
    Ok(c)
}

/// Severity is checked, not clamped, by this tool.
pub fn severity(s: u32) -> Result<u32, String> {
    if (1..=4).contains(&s) {
        Ok(s)
    } else {
        Err("Error: Valid range for severity is 1-4".to_string())
    }
}

/// Event id: length first, then alphabet, as the original.
pub fn event_id(id: &str) -> Result<&str, String> {
    if id.len() != 32 {
        return Err(format!(
            "Error: event_id length {} it should have 32 characters",
            id.len()
        ));
    }
    if let Some((i, c)) = id
        .chars()
        .enumerate()
        .find(|(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
    {
        return Err(format!(
            "Error: event_id contains invalid character '{c}' at position {i}, valid characters are 0123456789abcdef"
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_classification_checks() {
        assert_eq!(classification(None).unwrap_err(), "Classification required");
        assert!(classification(Some(""))
            .unwrap_err()
            .starts_with("Valid size"));
        // Too long wins over a bad slash count.
        let long = "a".repeat(123);
        assert!(classification(Some(&long))
            .unwrap_err()
            .starts_with("Valid size"));
        assert!(classification(Some("ä/b/c")).unwrap_err().contains("ASCII"));
        let p41 = "x".repeat(41);
        assert!(classification(Some(&format!("{p41}/b")))
            .unwrap_err()
            .contains("at most 40"));
        assert!(classification(Some("a/b")).unwrap_err().contains("2 '/'"));
        assert!(classification(Some("a//b"))
            .unwrap_err()
            .contains("empty part"));
        assert_eq!(classification(Some("a/b/c")).unwrap(), "a/b/c");
    }

    #[test]
    fn integers_and_ids() {
        assert_eq!(integer("3", "severity").unwrap(), 3);
        for bad in ["", "3x", "-1", " 3", "99999999999"] {
            assert!(integer(bad, "severity").is_err(), "{bad:?}");
        }
        assert!(severity(0).is_err() && severity(5).is_err() && severity(4).is_ok());
        assert!(event_id("abc").unwrap_err().contains("length 3"));
        assert!(event_id(&format!("{}G", "a".repeat(31)))
            .unwrap_err()
            .contains("'G' at position 31"));
    }
}
