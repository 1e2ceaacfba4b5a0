//! x86 machine checks (`mce/mce_record`): the class of an error from its MCi_STATUS bits, and
//! the text report in mcelog's layout that the original's dashboards read.
//!
//! Bits and classes as the Intel SDM (Vol. 3B, "IA32_MCi_STATUS MSRs" and "UCR Error
//! Classification") defines them:
//! - VAL (63) the register holds an error; OVER (62) an error was lost; UC (61) uncorrected;
//!   EN (60) signalling enabled; MISCV (59) / ADDRV (58) MCi_MISC / MCi_ADDR hold data; PCC (57)
//!   processor context corrupt; S (56) signalled as a machine check; AR (55) action required.
//! - Corrected: UC = 0. Uncorrected with PCC = 1: fatal. UCR errors (UC = 1, PCC = 0):
//!   SRAR (S = 1, AR = 1, EN = 1), SRAO (S = 1, AR = 0, EN = 1), UCNA (S = 0, AR = 0).
//! - Our choices where the SDM gives no class: an uncorrected error with OVER set is fatal (an
//!   uncorrected error was lost; Linux's severity table panics on it too); S = 1 with EN = 0
//!   (not signalled) and the illegal S = 0, AR = 1 count as UCNA.

use std::fmt::Write as _;

use super::text::Event;

pub const VAL: u64 = 1 << 63;
pub const OVER: u64 = 1 << 62;
pub const UC: u64 = 1 << 61;
pub const EN: u64 = 1 << 60;
pub const MISCV: u64 = 1 << 59;
pub const ADDRV: u64 = 1 << 58;
pub const PCC: u64 = 1 << 57;
pub const S: u64 = 1 << 56;
pub const AR: u64 = 1 << 55;

/// The class of a machine check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MceClass {
    Corrected,
    Ucna,
    Srao,
    Srar,
    Fatal,
}

impl MceClass {
    /// The record classification (the original's names for the first four).
    pub fn classification(self) -> &'static str {
        match self {
            MceClass::Corrected => "org.clearlinux/mce/corrected",
            MceClass::Ucna => "org.clearlinux/mce/UCNA",
            MceClass::Srao => "org.clearlinux/mce/SRAO",
            MceClass::Srar => "org.clearlinux/mce/SRAR",
            MceClass::Fatal => "org.clearlinux/mce/fatal",
        }
    }

    /// Record severity: corrected 2, UCNA 3, the rest 4.
    pub fn severity(self) -> u32 {
        match self {
            MceClass::Corrected => 2,
            MceClass::Ucna => 3,
            MceClass::Srao | MceClass::Srar | MceClass::Fatal => 4,
        }
    }

    /// The line mcelog prints for it.
    fn describe(self) -> &'static str {
        match self {
            MceClass::Corrected => "Corrected error",
            MceClass::Ucna => "Uncorrected error, no action required (UCNA)",
            MceClass::Srao => "Uncorrected error, software recoverable, action optional (SRAO)",
            MceClass::Srar => "Uncorrected error, software recoverable, action required (SRAR)",
            MceClass::Fatal => "Uncorrected error, processor context corrupt (fatal)",
        }
    }
}

/// The class of an MCi_STATUS value; `None` when VAL is clear (nothing logged).
pub fn classify(status: u64) -> Option<MceClass> {
    if status & VAL == 0 {
        return None;
    }
    if status & UC == 0 {
        return Some(MceClass::Corrected);
    }
    if status & (PCC | OVER) != 0 {
        return Some(MceClass::Fatal);
    }
    Some(
        match (status & S != 0, status & AR != 0, status & EN != 0) {
            (true, true, true) => MceClass::Srar,
            (true, false, true) => MceClass::Srao,
            _ => MceClass::Ucna,
        },
    )
}

/// The names of the set MCi_STATUS flag bits, as the report lists them.
pub fn status_bits(status: u64) -> Vec<&'static str> {
    [
        (VAL, "VAL (valid)"),
        (OVER, "OVER (error overflow)"),
        (UC, "UC (uncorrected)"),
        (EN, "EN (error enabled)"),
        (MISCV, "MISCV (MCi_MISC valid)"),
        (ADDRV, "ADDRV (MCi_ADDR valid)"),
        (PCC, "PCC (processor context corrupt)"),
        (S, "S (signalled)"),
        (AR, "AR (action required)"),
    ]
    .iter()
    .filter(|(bit, _)| status & bit != 0)
    .map(|(_, name)| *name)
    .collect()
}

/// The names of the set MCG_STATUS bits.
pub fn mcgstatus_bits(mcgstatus: u64) -> Vec<&'static str> {
    [
        (1u64, "RIPV (restart IP valid)"),
        (2, "EIPV (error IP valid)"),
        (4, "MCIP (machine check in progress)"),
        (8, "LMCE_S (local machine check)"),
    ]
    .iter()
    .filter(|(bit, _)| mcgstatus & bit != 0)
    .map(|(_, name)| *name)
    .collect()
}

/// Vendor, family, model, stepping from CPUID leaf 1 EAX and the kernel's vendor number.
fn cpuid_line(vendor: Option<u64>, cpuid: u64) -> String {
    let vendor = match vendor {
        Some(0) => "Intel",
        Some(2) => "AMD",
        Some(9) => "Hygon",
        Some(10) => "Zhaoxin",
        Some(5) => "Centaur",
        _ => "other",
    };
    let base_family = (cpuid >> 8) & 0xf;
    let family = if base_family == 0xf {
        base_family + ((cpuid >> 20) & 0xff)
    } else {
        base_family
    };
    let mut model = (cpuid >> 4) & 0xf;
    if base_family == 6 || base_family == 0xf {
        model += ((cpuid >> 16) & 0xf) << 4;
    }
    format!(
        "CPUID Vendor {vendor} Family {family} Model {model} Step {}",
        cpuid & 0xf
    )
}

/// The report of one machine check, in mcelog's layout: `STATUS <hex> MCGSTATUS <hex>` on one
/// line as the original dashboards matched it, hex without `0x` as mcelog prints it.
pub fn report(event: &Event, class: MceClass) -> String {
    let f = |name: &str| event.u64(name);
    let status = f("status").unwrap_or(0);
    let mcgstatus = f("mcgstatus").unwrap_or(0);
    let mut out = String::from("Hardware event. This is not a software error.\n");
    let cpu = f("cpu").unwrap_or(u64::from(event.cpu));
    let _ = writeln!(out, "CPU {cpu} BANK {}", f("bank").unwrap_or(0));
    if let Some(tsc) = f("tsc") {
        let _ = writeln!(out, "TSC {tsc:x}");
    }
    if let (Some(ip), Some(cs)) = (f("ip"), f("cs")) {
        if ip != 0 {
            let _ = writeln!(out, "RIP {cs:02x}:{ip:x}");
        }
    }
    if status & ADDRV != 0 {
        let _ = writeln!(out, "ADDR {:x}", f("addr").unwrap_or(0));
    }
    if status & MISCV != 0 {
        let _ = writeln!(out, "MISC {:x}", f("misc").unwrap_or(0));
    }
    for name in ["synd", "ipid", "ppin"] {
        if let Some(v) = f(name).filter(|v| *v != 0) {
            let _ = writeln!(out, "{} {v:x}", name.to_uppercase());
        }
    }
    if let Some(t) = f("walltime") {
        let _ = writeln!(out, "TIME {t} {}", super::utc(t));
    }
    let _ = writeln!(out, "MCG status:");
    for b in mcgstatus_bits(mcgstatus) {
        let _ = writeln!(out, "  {b}");
    }
    let _ = writeln!(out, "MCi status:");
    for b in status_bits(status) {
        let _ = writeln!(out, "  {b}");
    }
    let _ = writeln!(out, "{}", class.describe());
    let _ = writeln!(
        out,
        "MCA: error code {:04x}, model specific {:04x}",
        status & 0xffff,
        (status >> 16) & 0xffff
    );
    let _ = writeln!(out, "STATUS {status:x} MCGSTATUS {mcgstatus:x}");
    let _ = writeln!(
        out,
        "MCGCAP {:x} APICID {:x} SOCKETID {}",
        f("mcgcap").unwrap_or(0),
        f("apicid").unwrap_or(0),
        f("socketid").unwrap_or(0)
    );
    if let Some(m) = f("microcode") {
        let _ = writeln!(out, "MICROCODE {m:x}");
    }
    if let Some(cpuid) = f("cpuid") {
        let _ = writeln!(out, "{}", cpuid_line(f("cpuvendor"), cpuid));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_is_decoded() {
        // Skylake-SP stepping 4: CPUID.1.EAX 0x50654.
        assert_eq!(
            cpuid_line(Some(0), 0x50654),
            "CPUID Vendor Intel Family 6 Model 85 Step 4"
        );
        // AMD Zen 3 (family 0xf + 0xa = 25).
        assert_eq!(
            cpuid_line(Some(2), 0xa20f10),
            "CPUID Vendor AMD Family 25 Model 33 Step 0"
        );
    }

    #[test]
    fn bit_names() {
        assert_eq!(
            status_bits(VAL | UC | PCC),
            [
                "VAL (valid)",
                "UC (uncorrected)",
                "PCC (processor context corrupt)"
            ]
        );
        assert_eq!(
            mcgstatus_bits(5),
            [
                "RIPV (restart IP valid)",
                "MCIP (machine check in progress)"
            ]
        );
    }
}
