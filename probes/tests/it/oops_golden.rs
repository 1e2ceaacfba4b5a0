//! Golden tests of the oops parser on the real samples (tests/data/oops, copied from
//! the real kernel oops samples): exact reason and exact payload. The expected payloads follow from the
//! original parser's rules (docs/probes.md) applied by hand to each sample; the long `Modules` line is taken from the
//! sample itself.

use probes::oops::{scan_text, Oops, OopsParser};
use proptest::prelude::*;

fn sample(name: &str) -> String {
    let path = format!("{}/tests/data/oops/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The text after `Modules linked in: ` on the first such line of a sample.
fn modules_of(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.contains("Modules linked in: "))
        .expect("sample has a modules line");
    let at = line.find("Modules linked in: ").expect("found above");
    line[at + "Modules linked in: ".len()..].to_string()
}

fn only_oops(name: &str) -> Oops {
    let found = scan_text(&sample(name));
    assert_eq!(found.len(), 1, "{name}: {found:#?}");
    found.into_iter().next().expect("one oops")
}

fn frames(names: &[&str]) -> String {
    names
        .iter()
        .enumerate()
        .map(|(i, f)| format!("#{} {f} - [kernel]\n", i + 1))
        .collect()
}

fn registers(list: &[(&str, bool)]) -> String {
    list.iter()
        .map(|(n, nz)| format!("Register {n}: {}\n", if *nz { "Non-zero" } else { "Zero" }))
        .collect()
}

#[test]
fn watchdog() {
    let text = sample("watchdog.txt");
    let o = only_oops("watchdog.txt");
    assert_eq!(
        o.reason(),
        "WARNING: at net/sched/sch_generic.c:255 dev_watchdog+0x238/0x250"
    );
    assert_eq!(o.classification(), "org.clearlinux/kernel/warning");
    assert_eq!(o.severity(), 2);
    let expected = format!(
        "Crash Report:\n\
         Reason: WARNING: at net/sched/sch_generic.c:255 dev_watchdog+0x238/0x250\n\
         Kernel Version : 3.10.4-100.fc18.x86_64 #1\n\
         Tainted : Not tainted\n\
         Modules : {}\n\
         Backtrace :\n{}",
        modules_of(&text),
        frames(&[
            "dump_stack",
            "warn_slowpath_common",
            "warn_slowpath_fmt",
            "? __queue_work",
            "dev_watchdog",
            "? dev_deactivate_queue.constprop.30",
            "call_timer_fn",
            "? dev_deactivate_queue.constprop.30",
            "run_timer_softirq",
            "__do_softirq",
            "irq_exit",
            "smp_apic_timer_interrupt",
            "apic_timer_interrupt",
            "? __hrtimer_start_range_ns",
            "? cpuidle_enter_state",
            "? cpuidle_enter_state",
            "cpuidle_idle_call",
            "arch_cpu_idle",
            "cpu_startup_entry",
            "? clockevents_register_device",
            "start_secondary",
        ])
    );
    assert_eq!(o.payload(false), expected);
}

const VBOX_FRAMES: [&str; 13] = [
    "dump_stack",
    "warn_slowpath_common",
    "warn_slowpath_fmt",
    "preempt_notifier_register",
    "VBoxHost_RTThreadCtxHooksRegister",
    "? update_curr",
    "? supdrvIOCtlFast",
    "? VBoxDrvLinuxIOCtl_4_3_28",
    "? put_prev_entity",
    "? do_vfs_ioctl",
    "? pick_next_task_rt",
    "? SyS_ioctl",
    "? entry_SYSCALL_64_fastpath",
];

#[test]
fn warning() {
    let text = sample("warning.txt");
    let o = only_oops("warning.txt");
    let reason =
        "WARNING: CPU: 1 PID: 796 at kernel/sched/core.c:2342 preempt_notifier_register+0x30/0x70";
    assert_eq!(o.reason(), reason);
    assert_eq!(o.classification(), "org.clearlinux/kernel/warning");
    // The taint flags are the 16 bytes after `Tainted: `, trailing spaces included.
    let expected = format!(
        "Crash Report:\nReason: {reason}\n\
         Kernel Version : 4.2.0-rc2-satori #1\n\
         Tainted : G        W  OE  \n\
         Modules : {}\n\
         Backtrace :\n{}",
        modules_of(&text),
        frames(&VBOX_FRAMES)
    );
    assert_eq!(o.payload(false), expected);
}

#[test]
fn loglevel_notimestamp() {
    let text = sample("loglevel_notimestamp.txt");
    let o = only_oops("loglevel_notimestamp.txt");
    let reason =
        "WARNING: CPU: 1 PID: 796 at kernel/sched/core.c:2342 preempt_notifier_register+0x30/0x70";
    assert_eq!(o.reason(), reason);
    let expected = format!(
        "Crash Report:\nReason: {reason}\n\
         Kernel Version : 4.2.0-rc2-satori #1\n\
         Tainted : G        W  OE  \n\
         Modules : {}\n\
         Backtrace :\n{}",
        modules_of(&text),
        frames(&VBOX_FRAMES)
    );
    assert_eq!(o.payload(false), expected);
}

#[test]
fn soft_lockup() {
    let text = sample("soft_lockup.txt");
    // The second `BUG: soft lockup` line does not end the first oops (only WARNING: and
    // "Unable to handle" do, outside a stack dump), so there is one oops with both CPUs'
    // registers.
    let o = only_oops("soft_lockup.txt");
    assert_eq!(
        o.reason(),
        "BUG: soft lockup - CPU#8 stuck for 22s! [ceph-osd:12347]"
    );
    assert_eq!(o.classification(), "org.clearlinux/kernel/bug");
    assert_eq!(o.severity(), 4);
    let expected = format!(
        "Crash Report:\n\
         Reason: BUG: soft lockup - CPU#8 stuck for 22s! [ceph-osd:12347]\n\
         Kernel Version : 3.16.6-200.el7.x86_64 #1\n\
         Tainted : Not tainted\n\
         Modules : {}\n\
         Backtrace :\n{}{}",
        modules_of(&text),
        registers(&[
            // CPU#8: RSP/EFLAGS line, RAX line (the RIP `0010:[<…>]` shape yields nothing).
            ("EFLAGS", true),
            ("RSP", true),
            ("RCX", true),
            ("RBX", true),
            ("RAX", true),
            // CPU#9.
            ("EFLAGS", true),
            ("RSP", true),
            ("RCX", true),
            ("RBX", true),
            ("RAX", true),
            ("RDI", true),
            ("RSI", true),
            ("RDX", true),
            ("R09", false),
            ("R08", true),
            ("RBP", true),
            ("R12", true),
            ("R11", false),
            ("R10", false),
            ("R15", true),
            ("R14", true),
            ("R13", true),
            ("FS", true),
            ("CS", true),
            ("CR4", true),
            ("CR3", true),
            ("CR2", true),
        ]),
        frames(&[
            "_raw_read_lock",
            "btrfs_tree_read_lock",
            "btrfs_read_lock_root_node",
            "btrfs_search_slot",
            "? crypto_shash_update",
            "btrfs_lookup_xattr",
            "__btrfs_getxattr",
            "btrfs_getxattr",
            "get_vfs_caps_from_disk",
            "audit_copy_inode",
            "__audit_inode",
            "SyS_fgetxattr",
            "system_call_fastpath",
        ])
    );
    assert_eq!(o.payload(false), expected);
}

/// Registers of the two x86-64 page-fault samples, in payload order.
fn fault_registers(nonzero: [bool; 28]) -> String {
    const NAMES: [&str; 28] = [
        "EFLAGS", "RSP", "RCX", "RBX", "RAX", "RDI", "RSI", "RDX", "R09", "R08", "RBP", "R12",
        "R11", "R10", "R15", "R14", "R13", "FS", "CS", "CR4", "CR3", "CR2", "DR2", "DR1", "DR0",
        "DR7", "DR6", "DR3",
    ];
    let list: Vec<(&str, bool)> = NAMES.iter().copied().zip(nonzero).collect();
    registers(&list)
}

#[test]
fn kernel_null_pointer() {
    let text = sample("kernel_null_pointer.txt");
    let o = only_oops("kernel_null_pointer.txt");
    let reason = "BUG: unable to handle kernel NULL pointer dereference at 0000000000000118";
    assert_eq!(o.reason(), reason);
    assert_eq!(o.classification(), "org.clearlinux/kernel/bug");
    assert_eq!(o.severity(), 4);
    let (t, f) = (true, false);
    let expected = format!(
        "Crash Report:\nReason: {reason}\n\
         Kernel Version : 3.7.4-204.fc18.x86_64 #1 LENOVO 27672LG/27672LG\n\
         Tainted : Not tainted\n\
         Modules : {}\n\
         Backtrace :\n{}{}",
        modules_of(&text),
        fault_registers([
            t, t, t, t, t, t, f, t, t, t, t, f, f, t, t, t, t, t, t, t, t, t, f, f, f, t, t, f
        ]),
        frames(&[
            "fat_detach",
            "fat_evict_inode",
            "evict",
            "iput",
            "fsnotify_destroy_mark",
            "sys_inotify_rm_watch",
            "system_call_fastpath",
        ])
    );
    assert_eq!(o.payload(false), expected);
}

#[test]
fn bug_kernel_handle_new() {
    let text = sample("bug_kernel_handle_new.txt");
    let o = only_oops("bug_kernel_handle_new.txt");
    let reason = "BUG: unable to handle kernel paging request at 0000000000002658";
    assert_eq!(o.reason(), reason);
    assert_eq!(o.classification(), "org.clearlinux/kernel/bug");
    let (t, f) = (true, false);
    let expected = format!(
        "Crash Report:\nReason: {reason}\n\
         Kernel Version : 3.7.9-201.fc18.x86_64 #1 Apple Inc. MacBookPro6,2/Mac-F22586C8\n\
         Tainted : PF          O 3.\n\
         Modules : {}\n\
         Backtrace :\n{}{}",
        modules_of(&text),
        fault_registers([
            t, t, f, t, f, f, t, f, t, t, t, f, f, t, t, f, t, t, t, t, t, t, f, f, f, t, t, f
        ]),
        frames(&[
            "? _nv007312rm",
            "? _nv007847rm",
            "? _nv004049rm",
            "? _nv004049rm",
            "? _nv010019rm",
            "? _nv014983rm",
            "? _nv001097rm",
            "? rm_init_adapter",
            "nv_kern_open",
            "? chrdev_open",
            "? do_dentry_open",
            "? cdev_put",
            "? finish_open",
            "? do_last",
            "? inode_permission",
            "link_path_walk",
            "path_openat",
            "? do_filp_open",
            "? __alloc_fd",
            "? do_sys_open",
            "? __audit_syscall_entry",
            "? sys_open",
            "? system_call_fastpath",
        ])
    );
    assert_eq!(o.payload(false), expected);
}

#[test]
fn raw_registers_when_privacy_filters_are_lifted() {
    let o = only_oops("kernel_null_pointer.txt");
    let p = o.payload(true);
    assert!(p.contains("Register RSP: ffff8801c4b49e68\n"), "{p}");
    assert!(p.contains("Register EFLAGS: 10292\n"));
    assert!(p.contains("Register RSI: 0\n"));
    assert!(p.contains("Register CS: 10\n"));
    assert!(!p.contains("Non-zero"));
}

/// The table of the original's probe tests (`check_probes.c`): reason and key payload lines per fixture.
#[test]
fn spec_table() {
    let cases: [(&str, &str, &[&str]); 5] = [
        (
            "watchdog.txt",
            "WARNING: at net/sched/sch_generic.c:255 dev_watchdog+0x238/0x250",
            &[
                "Kernel Version : 3.10.4-100.fc18.x86_64",
                "Tainted : Not tainted",
                "#1 dump_stack - [kernel]",
                "#4 ? __queue_work - [kernel]",
                "#21 start_secondary - [kernel]",
            ],
        ),
        (
            "warning.txt",
            "WARNING: CPU: 1 PID: 796 at kernel/sched/core.c:2342 preempt_notifier_register+0x30/0x70",
            &[
                "Kernel Version : 4.2.0-rc2-satori #1",
                "Tainted : G        W  OE",
                "Modules : vboxpci(OE) vboxnetadp(OE)",
                "#13 ? entry_SYSCALL_64_fastpath - [kernel]",
            ],
        ),
        (
            "soft_lockup.txt",
            "BUG: soft lockup - CPU#8 stuck for 22s! [ceph-osd:12347]",
            &["Kernel Version : 3.16.6-200.el7.x86_64 #1", "#13 system_call_fastpath - [kernel]"],
        ),
        (
            "kernel_null_pointer.txt",
            "BUG: unable to handle kernel NULL pointer dereference at 0000000000000118",
            &[
                "Kernel Version : 3.7.4-204.fc18.x86_64 #1 LENOVO 27672LG/27672LG",
                "#7 system_call_fastpath - [kernel]",
            ],
        ),
        (
            "bug_kernel_handle_new.txt",
            "BUG: unable to handle kernel paging request at 0000000000002658",
            &[
                "#9 nv_kern_open - [kernel]",
                "#16 link_path_walk - [kernel]",
                "#17 path_openat - [kernel]",
            ],
        ),
    ];
    for (file, reason, needles) in cases {
        let o = only_oops(file);
        assert_eq!(o.reason(), reason, "{file}");
        let p = o.payload(false);
        for n in needles {
            assert!(p.contains(n), "{file}: {n:?} missing in\n{p}");
        }
        let frame_count = p.lines().filter(|l| l.starts_with('#')).count();
        let want = match file {
            "watchdog.txt" => 21,
            "warning.txt" | "soft_lockup.txt" => 13,
            "kernel_null_pointer.txt" => 7,
            _ => 23,
        };
        assert_eq!(frame_count, want, "{file}");
    }
}

#[test]
fn back_to_back_warnings_in_a_log_are_two_records() {
    // warning.txt's oops twice in a row, the first without its end-trace line.
    let text = sample("warning.txt");
    let body: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("WARNING: CPU"))
        .take_while(|l| !l.contains("[ end trace"))
        .collect();
    let mut log = body.join("\n");
    log.push('\n');
    log.push_str(&text);
    let found = scan_text(&log);
    assert_eq!(found.len(), 2, "{found:#?}");
    for o in &found {
        assert!(o.reason().starts_with("WARNING: CPU: 1 PID: 796"));
        assert_eq!(
            o.payload(false)
                .lines()
                .filter(|l| l.starts_with('#'))
                .count(),
            13
        );
    }
    assert_eq!(found[0].payload(false), found[1].payload(false));
}

#[test]
fn kernel_panic_is_reported_at_the_end_of_a_dump() {
    let log =
        "<0>[ 9.0] Kernel panic - not syncing: Fatal exception\n<0>[ 9.0] Kernel Offset: disabled";
    let found = scan_text(log);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].classification(), "org.clearlinux/kernel/panic");
    assert_eq!(found[0].severity(), 4);
    assert_eq!(
        found[0].payload(false),
        "Crash Report:\nReason: Kernel panic - not syncing: Fatal exception\n"
    );
}

#[test]
fn streaming_matches_whole_text() {
    for name in ["watchdog.txt", "soft_lockup.txt", "warning.txt"] {
        let text = sample(name);
        let mut parser = OopsParser::new();
        let mut streamed: Vec<Oops> = Vec::new();
        for line in text.lines() {
            streamed.extend(parser.push_line(line));
        }
        streamed.extend(parser.finish());
        assert_eq!(streamed, scan_text(&text), "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// No input makes the parser panic, and every oops it reports has a valid payload.
    #[test]
    fn parser_never_panics(lines in proptest::collection::vec(
        prop_oneof![
            any::<String>(),
            "(<[0-9]{1,3}>)?(\\[ *[0-9.]{1,12}\\])? ?(WARNING: |BUG: |Call Trace:| \\[<[0-9a-f]{1,16}>\\] | <IRQ> |CPU: |PID: |RIP: |RSP |FS: |Tainted: |Not tainted |Modules linked in: |---\\[ end trace|Code: |ALSA a: BUG|irq 5: nobody cared|BERT: Error records from previous boot:|\\[Hardware Error\\]: )?[ -~]{0,40}",
            "[ #:<>\\[\\]()+0-9a-fA-FRSPCIXx]{0,30}",
        ],
        0..60,
    ), raw in any::<bool>()) {
        let mut parser = OopsParser::new();
        let mut found = Vec::new();
        for l in &lines {
            found.extend(parser.push_line(l));
            found.extend(parser.push_normalised(l));
        }
        found.extend(parser.finish());
        for o in &found {
            prop_assert!(!o.lines.is_empty());
            prop_assert!(o.lines.len() <= probes::oops::MAX_LINES);
            let p = o.payload(raw);
            prop_assert!(p.starts_with("Crash Report:\nReason: "));
            let fitted = probes::send::fit_payload(&probes::send::sanitize(&p));
            prop_assert!(telemetry::validate::payload(fitted.as_bytes()).is_ok());
        }
    }
}
