//! A record sent again (a sender whose wait for the answer timed out retries the same record)
//! is stored once; records that differ in anything are all kept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use telemetry::client;

#[test]
fn the_same_frame_twice_is_stored_once_and_answered_0_both_times() {
    let d = Daemon::start("", &[]);
    let r = record("sent twice");
    let frame = frame_of(&r);
    assert_eq!(raw_send(&d.socket(), &frame), Some(0));
    assert_eq!(raw_send(&d.socket(), &frame), Some(0));
    assert_eq!(d.spool_files().len(), 1, "{}", d.log());
    // Through the library too (it sends the same bytes).
    client::send(&r, &d.config()).unwrap();
    assert_eq!(d.spool_files().len(), 1);
}

#[test]
fn records_sharing_an_event_id_but_not_a_payload_are_all_kept() {
    let d = Daemon::start("", &[]);
    let first = record("one payload");
    let mut second = first.clone();
    second.set_payload(b"another payload").unwrap();
    let mut third = first.clone();
    third
        .set_machine_id("0123456789abcdef0123456789abcdef")
        .unwrap();
    for r in [&first, &second, &third] {
        assert_eq!(raw_send(&d.socket(), &frame_of(r)), Some(0));
    }
    assert_eq!(d.spool_files().len(), 3, "{}", d.log());
    // The spooled copies carry the daemon's machine id, not the sender's: the third differs
    // from the first only in what the daemon replaced, and is kept because it was received
    // different.
    for f in d.spool_files() {
        let sr = telemetry::spool::decode(&std::fs::read(f).unwrap()).unwrap();
        assert_ne!(
            sr.record.get(telemetry::record::Header::MachineId),
            "0123456789abcdef0123456789abcdef"
        );
    }
}
