//! No value read from the machine can get a record rejected: records built from a fake system
//! root full of hostile values pass the collector's checks (the backend's rules).

use std::fs;
use std::path::Path;

use telem_collector::validate::{validate, Fields};
use telemetry::record::{Record, HEADER_NAMES};
use telemetry::sysinfo::SysInfo;

use crate::common::TID;

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

/// The record's header values as the collector sees them (hyphenated names, plus the TID).
fn fields(r: &Record) -> Fields {
    let mut f: Fields = HEADER_NAMES
        .iter()
        .zip(r.values())
        .map(|(n, v)| (n.replace('_', "-"), v.clone()))
        .collect();
    f.insert("x-telemetry-tid".into(), TID.into());
    f
}

fn hostile_root(os_release: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    let long = "L".repeat(300);
    write(r, "sys/class/dmi/id/sys_vendor", long.as_bytes());
    write(
        r,
        "sys/class/dmi/id/product_name",
        "Größe ™ Modell\n".as_bytes(),
    );
    write(
        r,
        "sys/class/dmi/id/product_version",
        b"v\x01\x7f\xff2 \"q\"",
    );
    write(
        r,
        "sys/class/dmi/id/board_name",
        format!("{long}\n").as_bytes(),
    );
    write(r, "sys/class/dmi/id/board_vendor", "Vendör\tInc".as_bytes());
    write(
        r,
        "sys/class/dmi/id/bios_version",
        "1.0 ß-beta\n".as_bytes(),
    );
    write(
        r,
        "proc/cpuinfo",
        format!("model name\t: Intel® Core™ {long}\n").as_bytes(),
    );
    write(r, "etc/os-release", os_release.as_bytes());
    d
}

#[test]
fn hostile_machine_values_never_get_a_record_rejected() {
    for os in [
        "ID=debian\nVERSION_ID=\"12+deb12u1~bpo\"\n",
        "ID=clear-linux-os\nVERSION_ID=\"40000+dev~1\"\n",
        "ID=clear-linux-os\nVERSION_ID=\"beta\"\n",
        "ID=\"we ird\"\nVARIANT_ID=\"Ä\"\nVERSION_ID=\"1 2/3\"\n",
        "ID=arch\n",
    ] {
        let d = hostile_root(os);
        let sys = SysInfo::gather(d.path());
        let mut r = Record::new(2, "org.example/facts/hostile", 1, &sys).unwrap();
        r.set_machine_id("0123456789abcdef0123456789abcdef")
            .unwrap();
        r.set_payload(b"payload").unwrap();
        if let Err(e) = validate(&fields(&r), TID) {
            panic!("{os:?}: {e:?}\n{sys:#?}");
        }
    }
}

#[test]
fn ordinary_machine_values_are_kept_as_they_are() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "sys/class/dmi/id/sys_vendor", b"QEMU\n");
    write(
        r,
        "sys/class/dmi/id/product_name",
        b"Standard PC (Q35 + ICH9, 2009)\n",
    );
    write(r, "sys/class/dmi/id/product_version", b"pc-q35-7.2\n");
    write(
        r,
        "sys/class/dmi/id/bios_version",
        b"1.16.0-debian-1.16.0-5\n",
    );
    write(
        r,
        "proc/cpuinfo",
        b"model name\t: Intel(R) Core(TM) i7-5650U CPU @ 2.20GHz\n",
    );
    write(
        r,
        "etc/os-release",
        b"ID=clear-linux-os\nVERSION_ID=40000\n",
    );
    let sys = SysInfo::gather(r);
    assert_eq!(
        sys.host_type,
        "QEMU|Standard PC (Q35 + ICH9, 2009)|pc-q35-7.2"
    );
    assert_eq!(sys.bios_version, "1.16.0-debian-1.16.0-5");
    assert_eq!(sys.cpu_model, "Intel(R) Core(TM) i7-5650U CPU @ 2.20GHz");
    assert_eq!(
        (sys.system_name.as_str(), sys.build.as_str()),
        ("clear-linux-os", "40000")
    );
}
