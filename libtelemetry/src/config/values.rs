//! How each kind of value is read from its text. The original read integers with C `strtoll`
//! and used most other text as given; a value it accepted is accepted here too, with a note of
//! what was assumed, so a file that works with the original starts our programs. A value neither
//! could use (an integer out of range, a boolean that is not one, a URL or header line HTTP
//! cannot carry) is an error.

use std::path::PathBuf;

use super::excerpt;

/// A value read, with what was assumed when its text was not exactly a value (a warning).
pub(super) type Read<T> = Result<(T, Option<String>), String>;

/// The collector URL: `http://` or `https://`, a host, and nothing a request line cannot carry.
pub(super) fn collector_url(v: &str) -> Result<String, String> {
    let lower = v.to_ascii_lowercase();
    let Some(rest) = ["http://", "https://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme))
    else {
        return Err(format!("{} is not an http:// or https:// URL", excerpt(v)));
    };
    if let Some(c) = v.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "{} holds {}, which a URL cannot",
            excerpt(v),
            excerpt(&c.to_string())
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{} has no host", excerpt(v)));
    }
    Ok(v.to_string())
}

/// The TID header line, `Name: value`, or empty for none. The name must be an HTTP token and the
/// value non-empty visible ASCII (spaces and tabs inside allowed): anything else makes every POST
/// carry a header the collector does not match, and every record be refused.
pub(super) fn header_line(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Ok(String::new());
    }
    let Some((name, value)) = v.split_once(':') else {
        return Err(format!(
            "{} is not an HTTP header line (name: value)",
            excerpt(v)
        ));
    };
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!(
            "header name {} is not an HTTP token (letters, digits, - and no spaces)",
            excerpt(name)
        ));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return Err(format!("header {} has an empty value", excerpt(name)));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' ' || *c == '\t'))
    {
        return Err(format!(
            "header value {} holds {}, which an HTTP header cannot",
            excerpt(value),
            excerpt(&c.to_string())
        ));
    }
    Ok(v.to_string())
}

/// A path. The original used a relative path as given (relative to the program's working
/// directory); so do we, with a warning, because daemons run from `/`. An empty path names
/// nothing.
pub(super) fn path(v: &str) -> Read<PathBuf> {
    if v.is_empty() {
        return Err("an empty path names nothing".to_string());
    }
    let note = (!v.starts_with('/')).then(|| {
        format!(
            "{} is a relative path; used as given, relative to the working directory",
            excerpt(v)
        )
    });
    Ok((PathBuf::from(v), note))
}

/// An integer as the original's `strtoll(v, NULL, 10)` read it: an optional sign and the digits
/// after it; text after the digits is ignored and text without leading digits is 0. Out of range
/// is an error (the original exited).
pub(super) fn original_int(v: &str) -> Result<OriginalInt, String> {
    let sign_len = usize::from(v.starts_with(['+', '-']));
    let digits = v[sign_len..].bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Ok(OriginalInt::NotANumber);
    }
    let number = &v[..sign_len + digits];
    let n = number
        .parse::<i64>()
        .map_err(|_| format!("{} is out of range for an integer", excerpt(number)))?;
    Ok(if number.len() == v.len() {
        OriginalInt::Exact(n)
    } else {
        OriginalInt::Prefix(n)
    })
}

/// What [`original_int`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OriginalInt {
    /// The whole text is the number.
    Exact(i64),
    /// The text starts with the number; the original ignored the rest.
    Prefix(i64),
    /// No leading digits; the original read 0.
    NotANumber,
}

/// An integer key's value. `usable` says whether a number works for this key: an unusable one
/// (or text that is not a number at all, which the original read as 0) gives `default`, with a
/// warning saying why; `harm` is that reason. Text after a number is ignored, with a warning.
pub(super) fn int_or_default(
    v: &str,
    default: i64,
    usable: impl Fn(i64) -> bool,
    harm: &str,
) -> Read<i64> {
    let (n, exact) = match original_int(v)? {
        OriginalInt::Exact(n) => (n, true),
        OriginalInt::Prefix(n) => (n, false),
        OriginalInt::NotANumber => {
            return Ok((
                default,
                Some(format!(
                    "{} is not a number; using the default {default}",
                    excerpt(v)
                )),
            ))
        }
    };
    if !usable(n) {
        return Ok((
            default,
            Some(format!(
                "{} read as {n}, {harm}; using the default {default}",
                excerpt(v)
            )),
        ));
    }
    let note =
        (!exact).then(|| format!("{} read as {n} (text after the number ignored)", excerpt(v)));
    Ok((n, note))
}

/// An integer that must lie in `range`; text after the number is ignored with a warning, text
/// without a number is 0 as in the original (when 0 is in range). Outside the range is an error:
/// the original stopped its daemon on such a value too.
pub(super) fn int_in(v: &str, range: std::ops::RangeInclusive<i64>, what: &str) -> Read<i64> {
    let (n, note) = match original_int(v)? {
        OriginalInt::Exact(n) => (n, None),
        OriginalInt::Prefix(n) => (
            n,
            Some(format!(
                "{} read as {n} (text after the number ignored)",
                excerpt(v)
            )),
        ),
        OriginalInt::NotANumber => (
            0,
            Some(format!(
                "{} is not a number; read as 0, as the original did",
                excerpt(v)
            )),
        ),
    };
    if range.contains(&n) {
        Ok((n, note))
    } else {
        Err(format!(
            "{} is not {what} from {} to {}",
            excerpt(v),
            range.start(),
            range.end()
        ))
    }
}

/// A boolean: `true`, `false`, `1`, `0`, any case. Anything else is an error, as in the original
/// (which exited).
pub(super) fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!(
            "{} is not a boolean (true, false, 1 or 0)",
            excerpt(v)
        )),
    }
}

/// A limit where any negative number means "no limit" (the original's `-1`). Text without a
/// number, which the original read as 0 (nothing allowed at all), gives `default`.
pub(super) fn limit(v: &str, default: Option<u64>) -> Read<Option<u64>> {
    let as_limit = |n: i64| u64::try_from(n).ok();
    Ok(match original_int(v)? {
        OriginalInt::Exact(n) => (as_limit(n), None),
        OriginalInt::Prefix(n) => (
            as_limit(n),
            Some(format!(
                "{} read as {n} (text after the number ignored)",
                excerpt(v)
            )),
        ),
        OriginalInt::NotANumber => (
            default,
            Some(format!(
                "{} is not a number; using the default {}",
                excerpt(v),
                default.map_or("-1 (no limit)".to_string(), |d| d.to_string())
            )),
        ),
    })
}
