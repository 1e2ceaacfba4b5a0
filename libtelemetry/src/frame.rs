//! The socket frame between the library and telemprobd: the original v4 layout, explicitly
//! little-endian.
//!
//! ```text
//! u32 LE  total size, including these 4 bytes
//! [ "CFG:" <absolute config path> NUL ]      only when a config file was set explicitly
//! u32 LE  header block size
//! header block: 15 × "name: value\n"
//! payload bytes
//! NUL
//! ```
//!
//! Decoding never panics: every malformed frame is rejected with a reason.

use std::path::{Path, PathBuf};

use crate::error::libc_errno;
use crate::record::{parse_header_line, Record, HEADER_COUNT, HEADER_NAMES, MAX_PAYLOAD};

/// Longest config path carried in a frame (PATH_MAX).
pub const MAX_CFG_PATH: usize = 4096;
/// Largest header block accepted. Real blocks are a few hundred bytes.
pub const MAX_HEADER_BLOCK: usize = 16 * 1024;
/// Largest frame accepted: every part at its maximum.
pub const MAX_FRAME: usize = 4 + (4 + MAX_CFG_PATH + 1) + 4 + MAX_HEADER_BLOCK + MAX_PAYLOAD + 1;
/// Smallest possible frame: size, header size and the final NUL.
pub const MIN_FRAME: usize = 4 + 4 + 1;

const CFG_MAGIC: &[u8; 4] = b"CFG:";

/// Why a frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame declares {0} bytes; at least {MIN_FRAME} are needed")]
    TooShort(usize),
    #[error("frame declares {0} bytes; at most {MAX_FRAME} are accepted")]
    TooLarge(usize),
    #[error("frame declares {declared} bytes but {actual} arrived")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("CFG: path is not terminated by NUL")]
    CfgUnterminated,
    #[error("CFG: path \"{0}\" is not an absolute UTF-8 path of at most 4096 bytes without control characters")]
    CfgPath(String),
    #[error("header block of {header} bytes does not fit in the {room} bytes left")]
    HeaderSize { header: usize, room: usize },
    #[error("frame does not end with NUL")]
    MissingTerminator,
    #[error("payload of {0} bytes is over the {MAX_PAYLOAD}-byte limit")]
    PayloadTooLarge(usize),
    #[error("payload contains a NUL byte")]
    NulInPayload,
    #[error("header block is not valid UTF-8")]
    HeaderNotUtf8,
    #[error("header block has {0} lines; record format 4 has exactly 15")]
    HeaderCount(usize),
    #[error("header line {line}: {reason}")]
    Header { line: usize, reason: String },
}

impl FrameError {
    /// The positive errno for the daemon's status word.
    pub fn errno(&self) -> i32 {
        match self {
            FrameError::TooLarge(_) | FrameError::PayloadTooLarge(_) => libc_errno::EMSGSIZE,
            _ => libc_errno::EINVAL,
        }
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Config file the sender asked the daemons to use for this record.
    pub cfg: Option<PathBuf>,
    /// The record, structurally parsed (call [`Record::validate`] before trusting it).
    pub record: Record,
}

/// Encodes a record, with an optional `CFG:` path.
pub fn encode(record: &Record, cfg: Option<&Path>) -> Result<Vec<u8>, FrameError> {
    let cfg = match cfg {
        None => None,
        Some(p) => Some(check_cfg_path(p.as_os_str().as_encoded_bytes())?),
    };
    let header_len = record.header_block_len();
    let cfg_len = cfg.map_or(0, |c| 4 + c.len() + 1);
    let total = 4 + cfg_len + 4 + header_len + record.payload().len() + 1;
    if header_len > MAX_HEADER_BLOCK {
        return Err(FrameError::HeaderSize {
            header: header_len,
            room: MAX_HEADER_BLOCK,
        });
    }
    if record.payload().len() > MAX_PAYLOAD {
        return Err(FrameError::PayloadTooLarge(record.payload().len()));
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32_le(total));
    if let Some(c) = cfg {
        out.extend_from_slice(CFG_MAGIC);
        out.extend_from_slice(c.as_bytes());
        out.push(0);
    }
    out.extend_from_slice(&u32_le(header_len));
    record.write_header_block(&mut out);
    out.extend_from_slice(record.payload());
    out.push(0);
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

fn u32_le(n: usize) -> [u8; 4] {
    // Every length here is below MAX_FRAME, far under u32::MAX.
    (n as u32).to_le_bytes()
}

/// Checks a config path before it goes into a frame or a spool file: UTF-8, absolute, at most
/// [`MAX_CFG_PATH`] bytes, and no control character. A line feed would end the spool file's
/// `CFG:` line early and the rest of the path would be read as the record's headers (a forged
/// record); the other control characters have no business in a path a daemon logs.
///
/// # Errors
/// [`FrameError::CfgPath`] naming the path (escaped).
pub fn check_cfg_path(bytes: &[u8]) -> Result<&str, FrameError> {
    let bad = || FrameError::CfgPath(String::from_utf8_lossy(bytes).escape_debug().to_string());
    let s = std::str::from_utf8(bytes).map_err(|_| bad())?;
    if !s.starts_with('/') || s.len() > MAX_CFG_PATH || s.chars().any(char::is_control) {
        return Err(bad());
    }
    Ok(s)
}

/// Checks the first four bytes of a frame and returns its total length, so a reader knows how
/// much to wait for. Rejects sizes outside [`MIN_FRAME`]..=[`MAX_FRAME`].
pub fn declared_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let n = u32::from_le_bytes(prefix) as usize;
    if n < MIN_FRAME {
        Err(FrameError::TooShort(n))
    } else if n > MAX_FRAME {
        Err(FrameError::TooLarge(n))
    } else {
        Ok(n)
    }
}

/// Reads one whole frame (size field included) from a blocking stream: the size word, checked
/// with [`declared_len`], then exactly the rest. A bad size is `InvalidData`; a stream that ends
/// early is `UnexpectedEof`. For blocking readers (tools, tests); telemprobd reads
/// asynchronously with the same [`declared_len`] check.
pub fn read_from(r: &mut impl std::io::Read) -> std::io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix)?;
    let len = declared_len(prefix)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut frame = prefix.to_vec();
    frame.resize(len, 0);
    r.read_exact(&mut frame[4..])?;
    Ok(frame)
}

/// Decodes one complete frame (the whole message, size field included).
pub fn decode(frame: &[u8]) -> Result<Frame, FrameError> {
    let prefix: [u8; 4] = frame
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(FrameError::TooShort(frame.len()))?;
    let declared = declared_len(prefix)?;
    if declared != frame.len() {
        return Err(FrameError::LengthMismatch {
            declared,
            actual: frame.len(),
        });
    }
    let (last, body) = frame[4..]
        .split_last()
        .ok_or(FrameError::MissingTerminator)?;
    if *last != 0 {
        return Err(FrameError::MissingTerminator);
    }
    let (cfg, rest) = match body.strip_prefix(CFG_MAGIC) {
        None => (None, body),
        Some(after) => {
            let end = after
                .iter()
                .take(MAX_CFG_PATH + 1)
                .position(|b| *b == 0)
                .ok_or(FrameError::CfgUnterminated)?;
            let path = check_cfg_path(&after[..end])?;
            (Some(PathBuf::from(path)), &after[end + 1..])
        }
    };
    let hs: [u8; 4] =
        rest.get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(FrameError::HeaderSize {
                header: 4,
                room: rest.len(),
            })?;
    let header_len = u32::from_le_bytes(hs) as usize;
    let rest = &rest[4..];
    if header_len > rest.len() || header_len > MAX_HEADER_BLOCK {
        return Err(FrameError::HeaderSize {
            header: header_len,
            room: rest.len().min(MAX_HEADER_BLOCK),
        });
    }
    let (headers, payload) = rest.split_at(header_len);
    if payload.len() > MAX_PAYLOAD {
        return Err(FrameError::PayloadTooLarge(payload.len()));
    }
    if payload.contains(&0) {
        return Err(FrameError::NulInPayload);
    }
    let values = parse_header_block(headers)?;
    let record = Record::from_parts(values, payload.to_vec()).map_err(|e| FrameError::Header {
        line: 0,
        reason: e.to_string(),
    })?;
    Ok(Frame { cfg, record })
}

/// Splits a header block of exactly 15 `name: value\n` lines, names checked in order.
pub fn parse_header_block(block: &[u8]) -> Result<[String; HEADER_COUNT], FrameError> {
    let text = std::str::from_utf8(block).map_err(|_| FrameError::HeaderNotUtf8)?;
    let body = text
        .strip_suffix('\n')
        .ok_or(FrameError::HeaderCount(text.lines().count()))?;
    let lines: Vec<&str> = body.split('\n').collect();
    if lines.len() != HEADER_COUNT {
        return Err(FrameError::HeaderCount(lines.len()));
    }
    let mut values: [String; HEADER_COUNT] = Default::default();
    for (i, line) in lines.iter().enumerate() {
        let v = parse_header_line(line, HEADER_NAMES[i]).map_err(|e| FrameError::Header {
            line: i + 1,
            reason: e.to_string(),
        })?;
        values[i] = v.to_string();
    }
    Ok(values)
}

#[cfg(test)]
mod tests;
