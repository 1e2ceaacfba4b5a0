//! The result types and the payload formatter (the original crashprobe's text shape).

use std::fmt::Write as _;

/// All threads of a crashed process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backtrace {
    /// Process id from the core.
    pub pid: i32,
    /// Command name from the core (`comm`, at most 15 bytes).
    pub process_name: String,
    /// Signal from the core, when it has one.
    pub signal: Option<i32>,
    /// Threads in core order, the signalled thread first.
    pub threads: Vec<Thread>,
}

/// One thread's frames, innermost first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thread {
    pub tid: i32,
    pub frames: Vec<Frame>,
    /// Unwinding stopped at the frame limit, not at the end of the stack.
    pub truncated: bool,
}

/// One physical frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Function name (demangled), `None` when no symbol covers the address.
    pub function: Option<String>,
    /// Path of the mapped file holding the address, `None` when it is in no file mapping.
    pub module: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl Frame {
    fn write_line(&self, out: &mut String, n: usize) {
        let _ = match (&self.function, &self.module) {
            (_, None) => write!(out, "#{n} (no symbols)"),
            (Some(f), Some(m)) => write!(out, "#{n} {f}() - [{m}]"),
            (None, Some(m)) => write!(out, "#{n} ??? - [{m}]"),
        };
        if let (Some(file), Some(line)) = (&self.file, self.line) {
            let _ = write!(out, " - {file}:{line}");
        }
        out.push('\n');
    }
}

impl Backtrace {
    /// The payload as the original crashprobe wrote it:
    ///
    /// ```text
    /// Process: <process>
    /// PID: <pid>
    /// Signal: <n>
    ///
    /// Backtrace (TID <tid>):
    /// #0 <function>() - [<module path>] - <source file>:<line>
    /// ```
    ///
    /// `process` is the caller's display name (the original used the `-E` path, else `-p`);
    /// the `Signal:` line is left out when `signal` is `None`.
    pub fn payload(&self, process: &str, signal: Option<i32>) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Process: {process}");
        let _ = writeln!(out, "PID: {}", self.pid);
        if let Some(s) = signal {
            let _ = writeln!(out, "Signal: {s}");
        }
        if self.threads.iter().any(|t| t.truncated) {
            out.push_str("Too many frames. Backtrace truncated.\n");
        }
        for t in &self.threads {
            let _ = write!(out, "\nBacktrace (TID {}):\n", t.tid);
            for (n, f) in t.frames.iter().enumerate() {
                f.write_line(&mut out, n);
            }
        }
        out
    }
}

impl std::fmt::Display for Backtrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.payload(&self.process_name, self.signal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_original_shape() {
        let bt = Backtrace {
            pid: 42,
            process_name: "crash".into(),
            signal: Some(11),
            threads: vec![Thread {
                tid: 43,
                truncated: false,
                frames: vec![
                    Frame {
                        function: Some("inner".into()),
                        module: Some("/usr/bin/crash".into()),
                        file: Some("/src/crash.c".into()),
                        line: Some(7),
                    },
                    Frame {
                        function: None,
                        module: Some("/usr/lib/libc.so.6".into()),
                        file: None,
                        line: None,
                    },
                    Frame {
                        function: None,
                        module: None,
                        file: None,
                        line: None,
                    },
                ],
            }],
        };
        assert_eq!(
            bt.payload("/usr/bin/crash", Some(11)),
            "Process: /usr/bin/crash\nPID: 42\nSignal: 11\n\nBacktrace (TID 43):\n\
             #0 inner() - [/usr/bin/crash] - /src/crash.c:7\n#1 ??? - [/usr/lib/libc.so.6]\n\
             #2 (no symbols)\n"
        );
        assert!(!bt.payload("x", None).contains("Signal:"));
    }
}
