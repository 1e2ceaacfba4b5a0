//! Unwinding with the modules' DWARF call-frame information (gimli), all registers.
//!
//! Also handles what CFI alone does not: a signal frame (`__restore_rt`, marked `S` in its CIE)
//! after which the PC is exact, a PC outside every module (a call through a bad pointer: gdb's
//! heuristic, the return address is at `[rsp]`), and modules without usable CFI (frame-pointer
//! chain through `rbp`).

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, Evaluation, EvaluationResult,
    Expression, LittleEndian, Location, Register, RegisterRule, UnwindContext, UnwindSection,
    Value,
};

use crate::memory::Memory;
use crate::modules::{Cfi, Modules};
use crate::notes::{reg, USER_REGS};

type R<'a> = EndianSlice<'a, LittleEndian>;

/// DWARF register numbers 0..=16: rax rdx rcx rbx rsi rdi rbp rsp r8..r15, 16 = return address.
const NREGS: usize = 17;
const DW_RSP: usize = 7;
const DW_RBP: usize = 6;
const DW_RA: usize = 16;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Regs([Option<u64>; NREGS]);

impl Regs {
    pub(crate) fn from_user(u: &[u64; USER_REGS]) -> Regs {
        let order = [
            reg::RAX,
            reg::RDX,
            reg::RCX,
            reg::RBX,
            reg::RSI,
            reg::RDI,
            reg::RBP,
            reg::RSP,
            reg::R8,
            reg::R9,
            reg::R10,
            reg::R11,
            reg::R12,
            reg::R13,
            reg::R14,
            reg::R15,
            reg::RIP,
        ];
        Regs(order.map(|i| Some(u[i])))
    }

    fn get(&self, r: usize) -> Option<u64> {
        self.0.get(r).copied().flatten()
    }
}

/// One physical frame found by the unwinder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawFrame {
    /// Address to symbolize: the PC itself when exact, else the return address minus one
    /// (inside the call instruction).
    pub(crate) lookup: u64,
    pub(crate) module: Option<usize>,
}

/// Result of unwinding one thread.
pub(crate) struct Unwound {
    pub(crate) frames: Vec<RawFrame>,
    /// The frame limit stopped unwinding before the end of the stack.
    pub(crate) truncated: bool,
}

// Returned by value once per frame; boxing the registers would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Step {
    Next { regs: Regs, exact: bool },
    End,
}

pub(crate) struct Unwinder<'a> {
    modules: &'a Modules,
    memory: &'a Memory,
    ctx: Box<UnwindContext<usize>>,
}

impl<'a> Unwinder<'a> {
    pub(crate) fn new(modules: &'a Modules, memory: &'a Memory) -> Self {
        Unwinder {
            modules,
            memory,
            ctx: Box::new(UnwindContext::new()),
        }
    }

    pub(crate) fn unwind(&mut self, start: Regs, max_frames: usize) -> Unwound {
        let mut frames = Vec::new();
        let mut regs = start;
        // The PC of frame 0 and of a frame interrupted by a signal is exact, every other one
        // is a return address.
        let mut exact = true;
        while let Some(pc) = regs.get(DW_RA) {
            if frames.len() >= max_frames {
                return Unwound {
                    frames,
                    truncated: true,
                };
            }
            let lookup = if exact { pc } else { pc.wrapping_sub(1) };
            let module = self.modules.find(lookup);
            frames.push(RawFrame { lookup, module });
            let old_sp = regs.get(DW_RSP).unwrap_or(0);
            let step = match module.and_then(|m| self.modules.list[m].cfi.as_ref().map(|c| (m, c)))
            {
                Some((m, cfi)) => {
                    let svma = lookup.wrapping_sub(self.modules.list[m].bias);
                    match self.step_cfi(cfi, svma, &regs) {
                        Some(step) => step,
                        None => self.step_frame_pointer(&regs),
                    }
                }
                // A PC in no module at the top of a context: a call through a bad pointer.
                None if module.is_none() && exact => self.step_return_at_sp(&regs),
                None => self.step_frame_pointer(&regs),
            };
            match step {
                Step::End => break,
                Step::Next {
                    regs: next,
                    exact: signal,
                } => {
                    let new_sp = next.get(DW_RSP).unwrap_or(0);
                    let new_pc = next.get(DW_RA).unwrap_or(0);
                    // Callers live at higher addresses; a signal frame may switch stacks.
                    if new_pc == 0 || (!signal && new_sp <= old_sp) {
                        break;
                    }
                    if signal {
                        // The trampoline (`__restore_rt`) starts at its return address: name
                        // it by the PC, not by the byte before (the padding before it).
                        if let Some(last) = frames.last_mut() {
                            last.lookup = pc;
                        }
                    }
                    regs = next;
                    exact = signal;
                }
            }
        }
        Unwound {
            frames,
            truncated: false,
        }
    }

    /// gdb's heuristic for a PC outside every module: return address at [rsp].
    fn step_return_at_sp(&self, regs: &Regs) -> Step {
        let Some(sp) = regs.get(DW_RSP) else {
            return Step::End;
        };
        let Some(ra) = self.memory.read_u64(sp) else {
            return Step::End;
        };
        let mut next = *regs;
        next.0[DW_RA] = Some(ra);
        next.0[DW_RSP] = Some(sp.wrapping_add(8));
        Step::Next {
            regs: next,
            exact: false,
        }
    }

    /// Classic frame-pointer chain: [rbp] = caller's rbp, [rbp+8] = return address.
    fn step_frame_pointer(&self, regs: &Regs) -> Step {
        let (Some(bp), Some(sp)) = (regs.get(DW_RBP), regs.get(DW_RSP)) else {
            return Step::End;
        };
        if bp < sp || bp - sp > (8 << 20) || bp % 8 != 0 {
            return Step::End;
        }
        let (Some(caller_bp), Some(ra)) = (
            self.memory.read_u64(bp),
            self.memory.read_u64(bp.wrapping_add(8)),
        ) else {
            return Step::End;
        };
        let mut next = Regs([None; NREGS]);
        next.0[DW_RBP] = Some(caller_bp);
        next.0[DW_RSP] = Some(bp.wrapping_add(16));
        next.0[DW_RA] = Some(ra);
        Step::Next {
            regs: next,
            exact: false,
        }
    }

    /// One step with the module's `.eh_frame`. `None` when it has no entry for `svma`.
    fn step_cfi(&mut self, cfi: &Cfi, svma: u64, regs: &Regs) -> Option<Step> {
        let eh = EhFrame::new(&cfi.eh_frame, LittleEndian);
        let mut bases = BaseAddresses::default()
            .set_eh_frame(cfi.eh_frame_svma)
            .set_text(cfi.text_svma)
            .set_got(cfi.got_svma);
        let fde = match &cfi.eh_frame_hdr {
            Some((hdr, hdr_svma)) => {
                bases = bases.set_eh_frame_hdr(*hdr_svma);
                let parsed = EhFrameHdr::new(hdr, LittleEndian).parse(&bases, 8).ok()?;
                match parsed.table() {
                    Some(table) => {
                        table.fde_for_address(&eh, &bases, svma, EhFrame::cie_from_offset)
                    }
                    None => eh.fde_for_address(&bases, svma, EhFrame::cie_from_offset),
                }
            }
            None => eh.fde_for_address(&bases, svma, EhFrame::cie_from_offset),
        }
        .ok()?;
        let encoding = fde.cie().encoding();
        let signal = fde.is_signal_trampoline();
        let row = fde
            .unwind_info_for_address(&eh, &bases, &mut self.ctx, svma)
            .ok()?;
        let eval = |e: &gimli::UnwindExpression<usize>, push: Option<u64>| {
            let expr = e.get(&eh).ok()?;
            evaluate(expr, encoding, regs, self.memory, push)
        };
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => regs
                .get(usize::from(register.0))?
                .wrapping_add_signed(*offset),
            CfaRule::Expression(e) => eval(e, None)?,
        };
        let mut next = Regs([None; NREGS]);
        for r in 0..NREGS {
            let rule = row.register(Register(r as u16));
            next.0[r] = match rule {
                // Unlisted: callee-saved registers keep their value; no rule for the return
                // address means the end of the stack.
                None if r == DW_RA => return Some(Step::End),
                None if r == DW_RSP => Some(cfa),
                None | Some(RegisterRule::SameValue) => regs.get(r),
                Some(RegisterRule::Undefined) if r == DW_RA => return Some(Step::End),
                Some(RegisterRule::Undefined | RegisterRule::Architectural) => None,
                Some(RegisterRule::Offset(o)) => self.memory.read_u64(cfa.wrapping_add_signed(o)),
                Some(RegisterRule::ValOffset(o)) => Some(cfa.wrapping_add_signed(o)),
                Some(RegisterRule::Register(x)) => regs.get(usize::from(x.0)),
                Some(RegisterRule::Expression(e)) => {
                    eval(&e, Some(cfa)).and_then(|a| self.memory.read_u64(a))
                }
                Some(RegisterRule::ValExpression(e)) => eval(&e, Some(cfa)),
                Some(RegisterRule::Constant(c)) => Some(c),
            };
        }
        Some(Step::Next {
            regs: next,
            exact: signal,
        })
    }
}

/// Runs a DWARF expression; reads registers and stack memory on demand.
fn evaluate(
    expr: Expression<R<'_>>,
    encoding: gimli::Encoding,
    regs: &Regs,
    memory: &Memory,
    push: Option<u64>,
) -> Option<u64> {
    let mut ev: Evaluation<R<'_>> = expr.evaluation(encoding);
    if let Some(v) = push {
        ev.set_initial_value(v);
    }
    let mut res = ev.evaluate().ok()?;
    // Bounded: a hostile expression cannot loop forever on resumptions.
    for _ in 0..256 {
        res = match res {
            EvaluationResult::Complete => {
                let piece = ev.as_result().first()?;
                return match piece.location {
                    Location::Address { address } => Some(address),
                    Location::Value { value } => value.to_u64(u64::MAX).ok(),
                    _ => None,
                };
            }
            EvaluationResult::RequiresMemory { address, size, .. } => {
                let mut b = [0u8; 8];
                let n = usize::from(size).min(8);
                memory.read(address, &mut b[..n])?;
                ev.resume_with_memory(Value::Generic(u64::from_le_bytes(b)))
                    .ok()?
            }
            EvaluationResult::RequiresRegister { register, .. } => {
                let v = regs.get(usize::from(register.0))?;
                ev.resume_with_register(Value::Generic(v)).ok()?
            }
            _ => return None,
        };
    }
    None
}
