//! rasprobe's decoding on recorded data: the format files of two kernel generations, the
//! events each printed, hostile lines, and the machine check classes from MCi_STATUS.

use std::path::PathBuf;

use probes::ras::format::{Format, Kind};
use probes::ras::mce::{self, MceClass};
use probes::ras::text::{parse_line, Line, Value};
use probes::ras::{self, load_formats};

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/ras")
        .join(rel)
}

fn formats(kernel: &str) -> Vec<Format> {
    load_formats(&data(kernel)).unwrap()
}

fn events(kernel: &str) -> Vec<Line> {
    let f = formats(kernel);
    std::fs::read_to_string(data(&format!("{kernel}/events.txt")))
        .unwrap()
        .lines()
        .map(|l| parse_line(l, &f).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn event(lines: &[Line], i: usize) -> &probes::ras::text::Event {
    match &lines[i] {
        Line::Event(e) => e,
        other => panic!("line {i} is {other:?}"),
    }
}

#[test]
fn format_files_of_both_generations_parse() {
    let old = formats("kernel-6.8");
    let new = formats("kernel-6.18");
    assert_eq!(old.len(), 3);
    assert_eq!(new.len(), 3);
    let names = |f: &[Format], ev: &str| -> Vec<String> {
        f.iter()
            .find(|f| f.name == ev)
            .unwrap()
            .own_fields()
            .map(|f| f.name.clone())
            .collect()
    };
    let (o, n) = (names(&old, "mce_record"), names(&new, "mce_record"));
    assert_eq!(o.len(), 17);
    assert_eq!(n.len(), 20);
    for added in ["ppin", "microcode", "v_data"] {
        assert!(!o.contains(&added.to_string()) && n.contains(&added.to_string()));
    }
    let mce = new.iter().find(|f| f.name == "mce_record").unwrap();
    assert_eq!(mce.field("v_data").unwrap().kind, Kind::DataLoc);
    let aer = new.iter().find(|f| f.name == "aer_event").unwrap();
    let tlp = aer.field("tlp_header").unwrap();
    assert_eq!((tlp.kind.clone(), tlp.size), (Kind::Array { len: 14 }, 56));
    // The real file of this machine's kernel.
    let mc = new.iter().find(|f| f.name == "mc_event").unwrap();
    assert_eq!(mc.id, 2206);
    assert!(mc.field("label").unwrap().is_string());
    assert!(mc.field("lower_layer").unwrap().signed);
}

#[test]
fn recorded_events_of_the_newer_kernel() {
    let lines = events("kernel-6.18");
    assert_eq!(lines.len(), 9);
    let corrected = event(&lines, 0);
    assert_eq!((corrected.name.as_str(), corrected.cpu), ("mce_record", 2));
    assert_eq!(corrected.timestamp_ns, 5_120_446_218_000);
    assert_eq!(corrected.u64("status"), Some(0x9c00000000010091));
    assert_eq!(corrected.u64("bank"), Some(7));
    assert_eq!(corrected.u64("microcode"), Some(0x2007006));
    assert_eq!(corrected.u64("ppin"), Some(0x3a4b5c6d7e8f9012));
    assert_eq!(corrected.fields["v_data"], Value::Bytes(vec![]));
    assert_eq!(lines[5], Line::Lost { cpu: 1, count: 17 });
    let mc = event(&lines, 6);
    assert_eq!(mc.str("label"), Some("CPU_SrcID#0_MC#0_Chan#1_DIMM#0"));
    assert_eq!(mc.str("msg"), Some("memory read error"));
    assert!(mc
        .str("driver_detail")
        .unwrap()
        .ends_with("correrrcnt[0001 0000 0000 0000]"));
    assert_eq!(mc.u64("error_count"), Some(3));
    assert_eq!(mc.u64("address"), Some(0x1b2f3c000));
    let aer = event(&lines, 7);
    assert_eq!(aer.str("dev_name"), Some("0000:00:1c.0"));
    assert_eq!(aer.u64("severity"), Some(2));
    assert_eq!(aer.fields["tlp_header"], Value::Unprintable);

    let classes: Vec<Option<&str>> = lines
        .iter()
        .map(|l| match l {
            Line::Event(e) => ras::report(e).map(|r| r.classification),
            _ => None,
        })
        .collect();
    assert_eq!(
        classes,
        [
            Some("org.clearlinux/mce/corrected"),
            Some("org.clearlinux/mce/SRAR"),
            Some("org.clearlinux/mce/SRAO"),
            Some("org.clearlinux/mce/UCNA"),
            None, // VAL clear
            None, // lost events
            Some("org.clearlinux/memory/corrected"),
            Some("org.clearlinux/pcie/corrected"),
            Some("org.clearlinux/pcie/fatal"),
        ]
    );
    let r = ras::report(corrected).unwrap();
    assert_eq!((r.severity, r.source.as_str()), (2, "socket 0 bank 7"));
    assert!(
        r.text.contains("\nSTATUS 9c00000000010091 MCGSTATUS 5\n"),
        "{}",
        r.text
    );
    assert!(r.text.contains("\nCPU 2 BANK 7\n"));
    assert!(r.text.contains("\nADDR 3e7a1c40\n"));
    assert!(r.text.contains("\nMICROCODE 2007006\n"));
    assert!(r.text.contains("\nAPICID 4 ") || r.text.contains(" APICID 4 "));
    assert!(
        r.text
            .contains("\nTIME 1733568797 2024-12-07 10:53:17 UTC\n"),
        "{}",
        r.text
    );
    let m = ras::report(mc).unwrap();
    assert_eq!((m.severity, m.count), (2, 3));
    assert_eq!(m.source, "DIMM CPU_SrcID#0_MC#0_Chan#1_DIMM#0");
    assert!(m
        .text
        .contains("\nDIMM CPU_SrcID#0_MC#0_Chan#1_DIMM#0\nERROR_COUNT 3\n"));
    assert!(m.text.contains("\nADDR 1b2f3c000\n"));
}

#[test]
fn recorded_events_of_the_older_kernel() {
    let lines = events("kernel-6.8");
    assert_eq!(lines.len(), 3);
    let mce = event(&lines, 0);
    assert_eq!(mce.u64("status"), Some(0x9c00000000010091));
    assert_eq!(mce.u64("microcode"), None);
    let r = ras::report(mce).unwrap();
    assert!(r.text.contains("STATUS 9c00000000010091 MCGSTATUS 5"));
    assert!(!r.text.contains("MICROCODE"));
    // An EDAC event without a label: the DIMM is named by controller and location; -1 layers.
    let mc = event(&lines, 1);
    assert_eq!(mc.i64("middle_layer"), Some(-1));
    let m = ras::report(mc).unwrap();
    assert_eq!(m.classification, "org.clearlinux/memory/uncorrected");
    assert_eq!(
        (m.severity, m.source.as_str()),
        (3, "DIMM mc1 location 0:-1:-1")
    );
    let aer = ras::report(event(&lines, 2)).unwrap();
    assert_eq!(
        (aer.classification, aer.severity),
        ("org.clearlinux/pcie/nonfatal", 3)
    );
}

#[test]
fn a_format_of_another_kernel_is_a_clear_error() {
    let old = formats("kernel-6.8");
    let text = std::fs::read_to_string(data("kernel-6.18/events.txt")).unwrap();
    let first = text.lines().next().unwrap();
    let e = parse_line(first, &old).unwrap_err().to_string();
    // 6.18 prints ppin between tsc and walltime; the 6.8 format does not know it.
    assert!(e.contains("field tsc") && e.contains("truncated"), "{e}");
}

#[test]
fn hostile_input_is_an_error_or_nothing_never_a_panic() {
    let f = formats("kernel-6.18");
    let text = std::fs::read_to_string(data("kernel-6.18/events.txt")).unwrap();
    for line in text.lines() {
        // Every truncation.
        for i in 0..line.len() {
            if line.is_char_boundary(i) {
                if let Ok(Line::Event(e)) = parse_line(&line[..i], &f) {
                    let _ = ras::report(&e);
                }
            }
        }
        // Every byte replaced by something odd.
        for (i, _) in line.char_indices().step_by(3) {
            for junk in ["=", " ", "(", "0x", "\u{0}", "é", " status=", "'"] {
                let mut l = line.to_string();
                l.replace_range(i..i + line[i..].chars().next().unwrap().len_utf8(), junk);
                if let Ok(Line::Event(e)) = parse_line(&l, &f) {
                    let _ = ras::report(&e);
                }
            }
        }
    }
    let mc_line = text.lines().nth(6).unwrap();
    // A count beyond the field's size.
    let huge = mc_line.replace(
        "error_count=0x3 (3)",
        "error_count=0xffffffffffffffffffff (-1)",
    );
    let e = parse_line(&huge, &f).unwrap_err().to_string();
    assert!(e.contains("error_count") && e.contains("too large"), "{e}");
    let huge = mc_line.replace("error_count=0x3 (3)", "error_count=0x10000 (65536)");
    assert!(parse_line(&huge, &f)
        .unwrap_err()
        .to_string()
        .contains("too large for a 2-byte field"));
    // The largest count that fits is taken as it is.
    let max = mc_line.replace("error_count=0x3 (3)", "error_count=0xffff (65535)");
    let Line::Event(e) = parse_line(&max, &f).unwrap() else {
        panic!()
    };
    assert_eq!(ras::report(&e).unwrap().count, 65535);
    // A field the format does not have, after a number: the number's text is wrong. (After a
    // string it would read as part of the string: strings are printed raw, unquoted.)
    let unknown = mc_line.replace(" mc_index=", " colour=0x1 (1) mc_index=");
    let e = parse_line(&unknown, &f).unwrap_err().to_string();
    assert!(
        e.contains("field error_count") && e.contains("truncated"),
        "{e}"
    );
    // Fields in another order.
    let swapped = mc_line.replace("msg=memory read error label=", "label=x msg=");
    let e = parse_line(&swapped, &f).unwrap_err().to_string();
    assert!(e.contains("field error_type"), "{e}");
    // A hostile grain does not overflow the report.
    let grain = mc_line.replace("grain_bits=(6)", "grain_bits=(255)");
    let Line::Event(e) = parse_line(&grain, &f).unwrap() else {
        panic!()
    };
    assert!(ras::report(&e).unwrap().text.contains("GRAIN "));
}

/// MCi_STATUS classes. Bits and classes as the Intel SDM Vol. 3B defines them: section
/// "IA32_MCi_STATUS MSRs" (VAL 63, OVER 62, UC 61, EN 60, MISCV 59, ADDRV 58, PCC 57, and for
/// processors with software error recovery S 56, AR 55) and table "MC Error Classifications"
/// in "UCR Error Classification": UC = 0 is a corrected error; UC = 1, PCC = 1 is an
/// uncorrected error that is not recoverable; UCR errors (UC = 1, PCC = 0) are UCNA (S = 0,
/// AR = 0), SRAO (EN = 1, S = 1, AR = 0) and SRAR (EN = 1, S = 1, AR = 1). VAL = 0: the register
/// holds no error.
#[test]
fn machine_check_classes_from_mci_status() {
    use mce::{ADDRV, AR, EN, MISCV, OVER, PCC, S, UC, VAL};
    let code = 0x0134; // MCA error code bits, ignored by the classification
    let table: &[(&str, u64, Option<MceClass>)] = &[
        (
            "corrected",
            VAL | EN | MISCV | ADDRV | code,
            Some(MceClass::Corrected),
        ),
        ("corrected, nothing else", VAL, Some(MceClass::Corrected)),
        // OVER on a corrected error: still corrected (a corrected error was lost).
        (
            "corrected with overflow",
            VAL | OVER | EN | code,
            Some(MceClass::Corrected),
        ),
        // S/AR mean nothing without UC.
        (
            "corrected, stray S/AR",
            VAL | S | AR | EN,
            Some(MceClass::Corrected),
        ),
        (
            "UCNA",
            VAL | UC | EN | MISCV | ADDRV | code,
            Some(MceClass::Ucna),
        ),
        ("UCNA, EN clear", VAL | UC | code, Some(MceClass::Ucna)),
        (
            "SRAO",
            VAL | UC | EN | S | MISCV | ADDRV | code,
            Some(MceClass::Srao),
        ),
        (
            "SRAR",
            VAL | UC | EN | S | AR | MISCV | ADDRV | code,
            Some(MceClass::Srar),
        ),
        // The real values of the recorded events.
        ("SRAR, recorded", 0xbd80000000100134, Some(MceClass::Srar)),
        ("SRAO, recorded", 0xbd0000000000017a, Some(MceClass::Srao)),
        ("UCNA, recorded", 0xbc00000000010090, Some(MceClass::Ucna)),
        (
            "corrected, recorded",
            0x9c00000000010091,
            Some(MceClass::Corrected),
        ),
        (
            "fatal: PCC",
            VAL | UC | EN | PCC | code,
            Some(MceClass::Fatal),
        ),
        (
            "fatal: PCC wins over SRAR",
            VAL | UC | EN | PCC | S | AR,
            Some(MceClass::Fatal),
        ),
        // An uncorrected error lost (OVER with UC): our choice, as Linux's severity table.
        (
            "uncorrected overflow",
            VAL | UC | EN | OVER | S | AR,
            Some(MceClass::Fatal),
        ),
        // Not signalled (EN = 0) with S set: no action was asked for.
        ("S without EN", VAL | UC | S, Some(MceClass::Ucna)),
        ("invalid: VAL clear", UC | EN | PCC | S | AR | code, None),
        ("invalid: zero", 0, None),
    ];
    for (what, status, want) in table {
        assert_eq!(mce::classify(*status), *want, "{what}: {status:#018x}");
    }
    let sev: Vec<u32> = [
        MceClass::Corrected,
        MceClass::Ucna,
        MceClass::Srao,
        MceClass::Srar,
        MceClass::Fatal,
    ]
    .iter()
    .map(|c| c.severity())
    .collect();
    assert_eq!(sev, [2, 3, 4, 4, 4]);
}
