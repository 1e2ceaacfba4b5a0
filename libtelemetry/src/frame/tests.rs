use super::*;
use crate::record::Header;
use proptest::prelude::*;

const HEADERS: &str = "record_format_version: 4
classification: org.clearlinux/hello/world
severity: 1
machine_id: FFFFFFFF
creation_timestamp: 1700000000
arch: x86_64
host_type: QEMU|Standard PC (Q35 + ICH9, 2009)|pc-q35-7.2
build: 40000
kernel_version: 6.1.0
payload_format_version: 1
system_name: clear-linux-os
board_name: blank|blank
cpu_model: Intel(R) Core(TM) i7-5650U CPU @ 2.20GHz
bios_version: 1.16.0-1
event_id: 3a2d799826edc6266d72824d2aac6763
";

fn sample() -> Record {
    let values = parse_header_block(HEADERS.as_bytes()).unwrap();
    Record::from_parts(values, b"hello\n".to_vec()).unwrap()
}

#[test]
fn golden_bytes_without_cfg() {
    let mut want = Vec::new();
    want.extend_from_slice(&[0xc1, 0x01, 0x00, 0x00]); // 449 = 4 + 4 + 434 + 6 + 1
    want.extend_from_slice(&[0xb2, 0x01, 0x00, 0x00]); // 434 header bytes
    want.extend_from_slice(HEADERS.as_bytes());
    want.extend_from_slice(b"hello\n\0");
    assert_eq!(encode(&sample(), None).unwrap(), want);
    let f = decode(&want).unwrap();
    assert_eq!(f.cfg, None);
    assert_eq!(f.record, sample());
    f.record.validate().unwrap();
}

#[test]
fn golden_bytes_with_cfg() {
    let mut want = Vec::new();
    want.extend_from_slice(&[0xd1, 0x01, 0x00, 0x00]); // 465 = 449 + "CFG:" + 11 + NUL
    want.extend_from_slice(b"CFG:/etc/x.conf\0");
    want.extend_from_slice(&[0xb2, 0x01, 0x00, 0x00]);
    want.extend_from_slice(HEADERS.as_bytes());
    want.extend_from_slice(b"hello\n\0");
    let got = encode(&sample(), Some(Path::new("/etc/x.conf"))).unwrap();
    assert_eq!(got, want);
    let f = decode(&want).unwrap();
    assert_eq!(f.cfg.as_deref(), Some(Path::new("/etc/x.conf")));
    assert_eq!(
        f.record.get(Header::Classification),
        "org.clearlinux/hello/world"
    );
}

#[test]
fn original_daemon_tolerance_name_colon_without_space() {
    let headers = HEADERS.replace("arch: x86_64", "arch:x86_64");
    let values = parse_header_block(headers.as_bytes()).unwrap();
    assert_eq!(values[5], "x86_64");
}

fn frame_with(headers: &str, payload: &[u8]) -> Vec<u8> {
    let total = 4 + 4 + headers.len() + payload.len() + 1;
    let mut f = Vec::new();
    f.extend_from_slice(&(total as u32).to_le_bytes());
    f.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    f.extend_from_slice(headers.as_bytes());
    f.extend_from_slice(payload);
    f.push(0);
    f
}

#[test]
fn rejections_have_reasons() {
    let good = encode(&sample(), None).unwrap();
    let cases: Vec<(Vec<u8>, FrameError)> = vec![
        (vec![], FrameError::TooShort(0)),
        (vec![1, 0], FrameError::TooShort(2)),
        (4u32.to_le_bytes().to_vec(), FrameError::TooShort(4)),
        (
            (MAX_FRAME as u32 + 1).to_le_bytes().to_vec(),
            FrameError::TooLarge(MAX_FRAME + 1),
        ),
        (
            good[..good.len() - 1].to_vec(),
            FrameError::LengthMismatch {
                declared: good.len(),
                actual: good.len() - 1,
            },
        ),
        (
            {
                let mut f = good.clone();
                *f.last_mut().unwrap() = b'x';
                f
            },
            FrameError::MissingTerminator,
        ),
        (
            frame_with(
                &HEADERS.replace("classification:", "classificatioooon:"),
                b"x",
            ),
            FrameError::Header {
                line: 2,
                reason: String::new(),
            },
        ),
        (
            frame_with(&HEADERS.replace("severity: 1\n", ""), b"x"),
            FrameError::HeaderCount(14),
        ),
        (
            frame_with(&format!("{HEADERS}extra: 1\n"), b"x"),
            FrameError::HeaderCount(16),
        ),
        (frame_with(HEADERS, b"a\0b"), FrameError::NulInPayload),
        (
            frame_with(HEADERS, &[b'a'; MAX_PAYLOAD + 1]),
            FrameError::PayloadTooLarge(MAX_PAYLOAD + 1),
        ),
        (
            {
                let mut f = b"\0\0\0\0CFG:/etc/x".to_vec();
                f.push(0xff);
                let n = f.len() as u32;
                f[..4].copy_from_slice(&n.to_le_bytes());
                f
            },
            FrameError::MissingTerminator,
        ),
    ];
    for (bytes, want) in cases {
        let got = decode(&bytes).unwrap_err();
        match (&got, &want) {
            (FrameError::Header { line: a, .. }, FrameError::Header { line: b, .. }) => {
                assert_eq!(a, b)
            }
            _ => assert_eq!(got, want, "for {bytes:?}"),
        }
        assert!(!got.to_string().is_empty());
    }
}

#[test]
fn read_from_a_stream_takes_exactly_one_frame() {
    let one = encode(&sample(), None).unwrap();
    let mut two = one.clone();
    two.extend_from_slice(&one);
    let mut r = std::io::Cursor::new(two);
    assert_eq!(read_from(&mut r).unwrap(), one);
    assert_eq!(read_from(&mut r).unwrap(), one);
    let e = read_from(&mut r).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    let e = read_from(&mut std::io::Cursor::new(4u32.to_le_bytes())).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    let e = read_from(&mut std::io::Cursor::new(one[..one.len() - 1].to_vec())).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[test]
fn header_size_beyond_frame_is_rejected() {
    let mut f = encode(&sample(), None).unwrap();
    f[4..8].copy_from_slice(&10_000u32.to_le_bytes());
    assert!(matches!(decode(&f), Err(FrameError::HeaderSize { .. })));
}

#[test]
fn cfg_must_be_terminated_and_absolute() {
    let mut body = b"CFG:relative.conf\0".to_vec();
    body.extend_from_slice(&(HEADERS.len() as u32).to_le_bytes());
    body.extend_from_slice(HEADERS.as_bytes());
    body.push(0);
    let mut f = ((body.len() + 4) as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&body);
    assert!(matches!(decode(&f), Err(FrameError::CfgPath(_))));
    assert!(encode(&sample(), Some(Path::new("rel"))).is_err());

    let mut f = vec![0u8; 4];
    f.extend_from_slice(b"CFG:/");
    f.extend(std::iter::repeat_n(b'a', 5000));
    f.push(0);
    let n = f.len() as u32;
    f[..4].copy_from_slice(&n.to_le_bytes());
    assert_eq!(decode(&f), Err(FrameError::CfgUnterminated));
}

#[test]
fn errno_of_frame_errors() {
    assert_eq!(FrameError::TooLarge(1).errno(), 90);
    assert_eq!(FrameError::PayloadTooLarge(1).errno(), 90);
    assert_eq!(FrameError::MissingTerminator.errno(), 22);
}

fn value() -> impl Strategy<Value = String> {
    "[^\n\r\0]{0,60}"
}

prop_compose! {
    fn arb_record()(vals in proptest::array::uniform15(value()),
                    payload in proptest::collection::vec(1u8..=255, 0..600)) -> Record {
        Record::from_parts(vals, payload).unwrap()
    }
}

proptest! {
    #[test]
    fn frame_round_trips(r in arb_record(), cfg in proptest::option::of("/[a-z/]{1,40}")) {
        let cfg = cfg.map(PathBuf::from);
        let bytes = encode(&r, cfg.as_deref()).unwrap();
        prop_assert_eq!(declared_len(bytes[..4].try_into().unwrap()).unwrap(), bytes.len());
        let f = decode(&bytes).unwrap();
        prop_assert_eq!(f.record, r);
        prop_assert_eq!(f.cfg, cfg);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(r in arb_record(), at in any::<usize>(), b in any::<u8>(),
                                  cut in any::<usize>()) {
        let mut bytes = encode(&r, None).unwrap();
        let i = at % bytes.len();
        bytes[i] = b;
        let _ = decode(&bytes);
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = decode(&bytes);
    }
}

/// A frame whose `CFG:` path is `cfg` (raw bytes, unchecked), around the sample record.
fn frame_with_raw_cfg(cfg: &[u8]) -> Vec<u8> {
    let plain = encode(&sample(), None).unwrap();
    let mut body = b"CFG:".to_vec();
    body.extend_from_slice(cfg);
    body.push(0);
    body.extend_from_slice(&plain[4..]);
    let mut f = ((body.len() + 4) as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&body);
    f
}

#[test]
fn a_cfg_path_with_a_control_character_is_rejected() {
    // A newline would end the spool file's CFG: line early and let the rest of the path stand
    // for the record's first header lines: a forged record.
    let forged = format!("/etc/x.conf\n{}", HEADERS.replace("FFFFFFFF", "forged"));
    for bad in [
        forged.as_str(),
        "/etc/x\n.conf",
        "/etc/x\r.conf",
        "/etc/\tx.conf",
        "/etc/x\x7f.conf",
        "/etc/x\u{85}.conf",
        "/etc/x\x1b[2J.conf",
    ] {
        let e = decode(&frame_with_raw_cfg(bad.as_bytes())).unwrap_err();
        assert!(matches!(e, FrameError::CfgPath(_)), "{bad:?}: {e:?}");
        assert_eq!(e.errno(), crate::error::libc_errno::EINVAL);
        assert!(encode(&sample(), Some(Path::new(bad))).is_err(), "{bad:?}");
        assert!(check_cfg_path(bad.as_bytes()).is_err(), "{bad:?}");
    }
    for bad in ["", "relative.conf"] {
        assert!(
            decode(&frame_with_raw_cfg(bad.as_bytes())).is_err(),
            "{bad:?}"
        );
    }
    let long = format!("/{}", "a".repeat(MAX_CFG_PATH));
    assert!(decode(&frame_with_raw_cfg(long.as_bytes())).is_err());
    let fine = "/etc/telemetrics/été 2.conf";
    let f = decode(&frame_with_raw_cfg(fine.as_bytes())).unwrap();
    assert_eq!(f.cfg.as_deref(), Some(Path::new(fine)));
}

proptest! {
    /// Whatever the daemon accepts from a frame, the spool file it writes reads back as the
    /// same record with the same config path: no byte of a frame can forge spool content.
    #[test]
    fn every_accepted_frame_reads_back_from_its_spool_file(
        payload in "[ -~\n\t]{0,200}",
        cfg in "[/a-z.\n\r\t\x01-\x1f\u{7f}-\u{9f}é: ]{0,40}",
        slash in any::<bool>(),
        at in any::<usize>(),
        b in any::<u8>(),
    ) {
        let mut cfg = cfg;
        if slash {
            cfg.insert(0, '/');
        }
        let mut bytes = frame_with_raw_cfg(cfg.as_bytes());
        // Splice a valid record in place of the sample, then maybe flip one byte anywhere.
        let mut r = sample();
        r.set_payload(payload.as_bytes()).unwrap();
        let plain = encode(&r, None).unwrap();
        let head = bytes.len() - (encode(&sample(), None).unwrap().len() - 4);
        bytes.truncate(head);
        bytes.extend_from_slice(&plain[4..]);
        let total = bytes.len() as u32;
        bytes[..4].copy_from_slice(&total.to_le_bytes());
        if at % 3 == 0 {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        let accepted = decode(&bytes).ok().filter(|f| f.record.validate().is_ok());
        if at % 3 != 0 && !cfg.chars().any(char::is_control) && slash {
            prop_assert!(accepted.is_some(), "a clean frame is accepted");
        }
        if let Some(f) = accepted {
            {
                let file = crate::spool::encode(&f.record, f.cfg.as_deref());
                let back = crate::spool::decode(&file).unwrap();
                prop_assert_eq!(back.record, f.record);
                prop_assert_eq!(back.cfg, f.cfg);
            }
        }
    }
}
