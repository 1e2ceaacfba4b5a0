//! telemctl's commands, shared by its two entry points: `telemctl` (src/main.rs) and
//! `telem_journal` (src/bin/telem_journal.rs, the original client's journal viewer, which is
//! `telemctl journal` with the original's command line and columns).

pub mod cli;
pub mod commands;
mod escape;
mod purge;
mod timefmt;
mod units;
