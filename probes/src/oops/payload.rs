//! Turning a collected oops into the record payload, as the original `parse_payload`:
//!
//! ```text
//! Crash Report:
//! Reason: <first line>
//! Kernel Version : <version>        (each of these three only when found)
//! Tainted : <flags or "Not tainted">
//! Modules : <modules>
//! Backtrace :                        (only when there are frames)
//! Register <NAME>: Zero|Non-zero     (raw hex when privacy filters are lifted)
//! #1 <function> - [kernel]
//! ```
//!
//! The lines are scanned from the last to the second, like the original, so where a line kind
//! repeats (two `CPU:` lines in one oops) the topmost wins.

use std::fmt::Write as _;

use super::parser::is_c_space;
use super::patterns::starts_with_ci;

/// Width of the taint flags kept after `Tainted: ` (`NUM_TAINTED_FLAGS`).
const TAINT_FLAGS: usize = 16;

/// Register names the original looks for, in its match order (prefix, case-insensitive).
const REGISTERS: [&str; 33] = [
    "RIP", "RSP", "CR0", "CR2", "CR3", "CR4", "DR0", "DR1", "DR2", "DR3", "DR6", "DR7", "EFLAGS",
    "RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "R08", "R09", "R10", "R11", "R12", "R13",
    "R14", "R15", "FS", "GS", "knlGS", "CS", "ES",
];

/// Builds the payload for an oops whose normalised lines are `lines` (first = reason).
/// `raw_registers`: print register values in hex instead of `Zero`/`Non-zero`.
pub fn build(lines: &[String], bert: bool, raw_registers: bool) -> String {
    let reason = lines.first().map_or("", String::as_str);
    let mut out = format!("Crash Report:\nReason: {reason}\n");
    let rest = lines.get(1..).unwrap_or(&[]);
    if bert {
        for l in rest {
            out.push_str(l);
            out.push('\n');
        }
        return out;
    }

    let mut frames: Vec<String> = Vec::new();
    let mut registers: Vec<(&'static str, u64)> = Vec::new();
    let mut modules: Option<&str> = None;
    let mut version: Option<String> = None;
    let mut tainted: Option<String> = None;
    // Frames are the trailing run of lines that start with a space.
    let mut in_trace = true;
    for line in rest.iter().rev() {
        if in_trace && line.starts_with(' ') {
            if let Some(f) = frame_function(line) {
                frames.push(f);
            }
            continue;
        }
        in_trace = false;
        if starts_with_ci(line.as_bytes(), b"Modules linked in: ") {
            modules = Some(&line["Modules linked in: ".len()..]);
        } else if starts_with_ci(line.as_bytes(), b"CPU: ")
            || starts_with_ci(line.as_bytes(), b"PID: ")
        {
            parse_cpu_line(line, &mut version, &mut tainted);
        } else {
            let mut in_line = Vec::new();
            parse_registers(line, &mut in_line);
            // Collected bottom-up; each line's registers are reversed once more below.
            registers.extend(in_line);
        }
    }
    // Output order: lines top to bottom, right to left within a line (the original prepends
    // each register to a list while scanning bottom-up, left to right).
    registers.reverse();
    frames.reverse();

    if let Some(v) = version {
        let _ = writeln!(out, "Kernel Version : {v}");
    }
    if let Some(t) = tainted {
        let _ = writeln!(out, "Tainted : {t}");
    }
    if let Some(m) = modules {
        let _ = writeln!(out, "Modules : {m}");
    }
    if !frames.is_empty() {
        out.push_str("Backtrace :\n");
    }
    for (name, value) in registers {
        if raw_registers {
            let _ = writeln!(out, "Register {name}: {value:x}");
        } else {
            let shown = if value == 0 { "Zero" } else { "Non-zero" };
            let _ = writeln!(out, "Register {name}: {shown}");
        }
    }
    for (i, f) in frames.iter().enumerate() {
        let _ = writeln!(out, "#{} {f} - [kernel]", i + 1);
    }
    out
}

/// The function of one frame line, e.g. ` [<ffffffff8105d660>] warn_slowpath_common+0x70/0xa0`,
/// ` <IRQ>  [<…>] dump_stack+0x19/0x1b` or (Linux 4.10+) ` ? __vunmap+0x9a/0x100`: the text
/// up to the first `+`, `? ` markers kept. `None` for a line that holds no frame.
fn frame_function(line: &str) -> Option<String> {
    let mut s = line.trim_start_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
    // Since Linux 5.x the trace has marker lines (`<TASK>`, `</IRQ>` …): not frames. (The
    // original reported them as functions named `<TASK>`.)
    if s.starts_with('<') && s.ends_with('>') && !s.contains(' ') {
        return None;
    }
    for token in ["<IRQ>", "<NMI>", "<EOI>", "<<EOE>>"] {
        if s.starts_with(token) {
            let after = s.find(|c: char| c.is_ascii() && is_c_space(c as u8))?;
            s = s[after..].trim_start_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
            break;
        }
    }
    if s.starts_with('[') {
        // Skip `[<address>]` up to the following whitespace.
        s = match s.find(|c: char| c.is_ascii() && is_c_space(c as u8)) {
            Some(i) => s[i..].trim_start_matches(|c: char| c.is_ascii() && is_c_space(c as u8)),
            // An address without a function (the original left the name undefined here).
            None => "",
        };
    }
    let name = s.split('+').next().unwrap_or("");
    Some(if name.is_empty() {
        "???".to_string()
    } else {
        name.to_string()
    })
}

/// Kernel version and taint flags from a `CPU: …` / `PID: …` line, e.g.
/// `CPU: 2 PID: 0 Comm: swapper/2 Not tainted  3.10.4-100.fc18.x86_64 #1` or
/// `CPU: 1 PID: 796 Comm: EMT Tainted: G        W  OE   4.2.0-rc2-satori #1`.
/// The version runs from the word before ` #` to the end of the line.
fn parse_cpu_line(line: &str, version: &mut Option<String>, tainted: &mut Option<String>) {
    let b = line.as_bytes();
    let mut from = 0;
    if let Some(p) = line.find(" Not tainted ") {
        *tainted = Some("Not tainted".to_string());
        from = p + " Not tainted".len();
    } else if let Some(p) = line.find("Tainted: ") {
        let flags = p + "Tainted: ".len();
        *tainted = Some(prefix_bytes(&line[flags..], TAINT_FLAGS).to_string());
        // The original resumes one byte after the first flag.
        from = (flags + 1).min(b.len());
    }
    let Some(hash) = b[from..].iter().position(|&c| c == b'#').map(|h| h + from) else {
        return;
    };
    // `#` must follow whitespace, and the version word must end two bytes before it.
    if hash == 0 || !is_c_space(b[hash - 1]) || hash < from + 2 {
        return;
    }
    let word_end = hash - 2;
    if let Some(space) = (from..=word_end).rev().find(|&j| is_c_space(b[j])) {
        *version = Some(line[space + 1..].to_string());
    }
}

/// At most `n` bytes of `s`, shortened to a character boundary.
fn prefix_bytes(s: &str, n: usize) -> &str {
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Register values on one line, left to right, in the line shapes the original recognises:
/// `RAX: 0000000000000002 RBX: ffffffff81c1a080`, `RSP: 0018:ffff8800543e3d18  EFLAGS: 00010292`,
/// `FS:  00007f5e7cab1700(0000) GS:…` (only the first register is taken, as the original),
/// ` RSP <ffff9900628f3e40>`, `RIP is at foo+0x7d0/0xa59`. A `RIP: 0010:[<…>]` line yields no
/// register, as in the original. Scanning stops at the first word that is not a register.
fn parse_registers(line: &str, out: &mut Vec<(&'static str, u64)>) {
    let b = line.as_bytes();
    let n = b.len();
    let mut i = 0;
    while i < n {
        while i < n && is_c_space(b[i]) {
            i += 1;
        }
        if i >= n {
            break;
        }
        let Some(reg) = REGISTERS
            .iter()
            .find(|r| starts_with_ci(&b[i..], r.as_bytes()))
        else {
            break;
        };
        i += reg.len();
        if b.get(i) == Some(&b':') {
            i += 1;
        }
        if b.get(i).is_some_and(|c| is_c_space(*c)) {
            i += 1;
        }
        if i >= n {
            break;
        }
        let (mut value, used) = strtoll16(&b[i..]);
        i += used;
        if b.get(i) == Some(&b':') {
            // `RSP: 0018:ffff8800775f3e68`: segment, then the value.
            i += 1;
            let (v, used) = strtoll16(&b[i..]);
            value = v;
            i += used;
        }
        match b.get(i) {
            Some(b'(') => match b[i..].iter().position(|&c| c == b')') {
                // Stays on `)`, which ends the scan of this line next time round.
                Some(p) => i += p,
                None => break,
            },
            Some(b'<') => {
                i += 1;
                let (v, used) = strtoll16(&b[i..]);
                value = v;
                i += used;
                if b.get(i) != Some(&b'>') {
                    continue;
                }
                i += 1;
            }
            Some(b'[') if b.get(i + 1) == Some(&b'<') => {
                let (v, used) = strtoll16(&b[i..]);
                value = v;
                i += used;
                if b.get(i) != Some(&b'>') && b.get(i + 1) != Some(&b']') {
                    continue;
                }
                i += 2;
            }
            _ if b[i..].starts_with(b"is at") => {
                while i < n && b[i] != b'+' {
                    i += 1;
                }
                if i < n {
                    value = strtoll16(&b[i..]).0;
                    i = n;
                }
            }
            Some(c) if !is_c_space(*c) => continue,
            _ => {}
        }
        out.push((reg, value));
    }
}

/// C `strtoll(s, &end, 16)` as used by the original: leading whitespace, optional sign,
/// optional `0x`, hex digits. Returns the value and the bytes consumed (0 when no digits, like
/// `end == s`). Unlike C, a value above `LLONG_MAX` is kept as it is (C clamps), which only
/// shows when register values are printed raw.
fn strtoll16(b: &[u8]) -> (u64, usize) {
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let mut negative = false;
    if let Some(sign @ (b'+' | b'-')) = b.get(i) {
        negative = *sign == b'-';
        i += 1;
    }
    if b.get(i) == Some(&b'0')
        && matches!(b.get(i + 1), Some(b'x' | b'X'))
        && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    {
        i += 2;
    }
    let start = i;
    let mut value: u64 = 0;
    while let Some(d) = b.get(i).and_then(|c| (*c as char).to_digit(16)) {
        value = value.saturating_mul(16).saturating_add(u64::from(d));
        i += 1;
    }
    if i == start {
        return (0, 0);
    }
    (
        if negative {
            value.wrapping_neg()
        } else {
            value
        },
        i,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn regs(line: &str) -> Vec<(&'static str, u64)> {
        let mut v = Vec::new();
        parse_registers(line, &mut v);
        v
    }

    #[test]
    fn register_line_shapes() {
        assert_eq!(
            regs("RAX: 0000000000000000 RBX: ffff88022d190008 RCX: 0000000000000001"),
            vec![("RAX", 0), ("RBX", 0xffff88022d190008), ("RCX", 1)]
        );
        assert_eq!(
            regs("RSP: 0018:ffff88022d0639b8  EFLAGS: 00010282"),
            vec![("RSP", 0xffff88022d0639b8), ("EFLAGS", 0x10282)]
        );
        assert_eq!(
            regs("FS:  00007f771f4f2940(0000) GS:ffff88024fc80000(0000) knlGS:0"),
            vec![("FS", 0x7f771f4f2940)]
        );
        assert_eq!(
            regs("CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033"),
            vec![("CS", 0x10)]
        );
        assert_eq!(
            regs(" RSP <ffff9900628f3e40>"),
            vec![("RSP", 0xffff9900628f3e40)]
        );
        assert_eq!(regs("RIP is at iret_exc+0x7d0/0xa59"), vec![("RIP", 0x7d0)]);
        assert_eq!(
            regs("RIP: 0010:[<ffffffffa07f92e5>]  [<ffffffffa07f92e5>] f+0x54/0xc4"),
            vec![]
        );
        assert_eq!(regs("Call Trace:"), vec![]);
        assert_eq!(regs(" ffff8816d92fbc78 ffffffff8170fcfc"), vec![]);
        assert_eq!(regs("csum_partial"), vec![]);
        assert_eq!(regs("RAX:"), vec![]);
    }

    #[test]
    fn strtoll_like_c() {
        assert_eq!(strtoll16(b"0010:x"), (0x10, 4));
        assert_eq!(strtoll16(b"  ff "), (0xff, 4));
        assert_eq!(strtoll16(b"0x1f"), (0x1f, 4));
        assert_eq!(strtoll16(b"0xg"), (0, 1));
        assert_eq!(strtoll16(b"[<12"), (0, 0));
        assert_eq!(strtoll16(b"-"), (0, 0));
        assert_eq!(strtoll16(b"-1"), (u64::MAX, 2));
        assert_eq!(strtoll16(b"+0x7d0/"), (0x7d0, 6));
        assert_eq!(strtoll16(b"fffffffffffffffffff"), (u64::MAX, 19));
    }

    #[test]
    fn cpu_line() {
        let (mut v, mut t) = (None, None);
        parse_cpu_line(
            "CPU: 2 PID: 0 Comm: swapper/2 Not tainted  3.10.4-100.fc18.x86_64 #1",
            &mut v,
            &mut t,
        );
        assert_eq!(v.as_deref(), Some("3.10.4-100.fc18.x86_64 #1"));
        assert_eq!(t.as_deref(), Some("Not tainted"));
        let (mut v, mut t) = (None, None);
        parse_cpu_line(
            "CPU: 1 PID: 796 Comm: EMT Tainted: G        W  OE   4.2.0-rc2-satori #1",
            &mut v,
            &mut t,
        );
        assert_eq!(v.as_deref(), Some("4.2.0-rc2-satori #1"));
        assert_eq!(t.as_deref(), Some("G        W  OE  "));
        let (mut v, mut t) = (None, None);
        parse_cpu_line("CPU: 0 PID: 1 Comm: x Tainted: ", &mut v, &mut t);
        assert_eq!((v, t.as_deref()), (None, Some("")));
        let (mut v, mut t) = (None, None);
        parse_cpu_line("CPU: 0 #1", &mut v, &mut t);
        assert_eq!((v.as_deref(), t), (Some("0 #1"), None));
        let (mut v, mut t) = (None, None);
        parse_cpu_line("CPU: Tainted: é#", &mut v, &mut t);
        assert_eq!((v, t.as_deref()), (None, Some("é#")));
    }

    #[test]
    fn frames() {
        let f = |l: &str| frame_function(l);
        assert_eq!(
            f(" [<ffffffff8176ff14>] dump_stack+0x45/0x57").as_deref(),
            Some("dump_stack")
        );
        assert_eq!(
            f(" <IRQ>  [<ffffffff816606a8>] dump_stack+0x19/0x1b").as_deref(),
            Some("dump_stack")
        );
        assert_eq!(
            f(" <EOI>  [<ffffffff8108653e>] ? __hrtimer_start_range_ns+0x1be/0x400").as_deref(),
            Some("? __hrtimer_start_range_ns")
        );
        assert_eq!(
            f("  ? _nv007312rm+0x7f8/0x938 [nvidia]").as_deref(),
            Some("? _nv007312rm")
        );
        assert_eq!(f(" path_openat+0xbc/0x4d0").as_deref(), Some("path_openat"));
        assert_eq!(f(" <IRQ>"), None);
        assert_eq!(f(" <TASK>"), None);
        assert_eq!(f(" </TASK>"), None);
        assert_eq!(f(" [<ffffffff8176ff14>]").as_deref(), Some("???"));
        assert_eq!(f(" noplus").as_deref(), Some("noplus"));
    }
}
