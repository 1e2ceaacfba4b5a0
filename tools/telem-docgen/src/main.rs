//! telem-docgen: writes the man pages or the shell completions of the telemetrics binaries
//! (used by scripts/install.sh).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Generate the man pages and shell completions of the telemetrics binaries.
#[derive(Debug, Parser)]
#[command(name = "telem-docgen", version)]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Write OUTDIR/man1/<binary>.1 for every binary (and telemctl-<subcommand>.1),
    /// OUTDIR/man3/ for the C library and OUTDIR/man5/telemetrics.conf.5
    Man {
        /// The directory to write into (created if missing), laid out as $MANDIR
        outdir: PathBuf,
    },
    /// Write bash, zsh and fish completions below OUTDIR, laid out as $DATADIR
    /// (bash-completion/completions/, zsh/site-functions/, fish/vendor_completions.d/)
    Completions {
        /// The directory to write into (created if missing)
        outdir: PathBuf,
    },
}

/// The pages' footer date: `SOURCE_DATE_EPOCH` (reproducible builds), else today.
fn date() -> String {
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    telem_docgen::man_date(epoch.as_deref(), std::time::SystemTime::now())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (outdir, files) = match cli.what {
        What::Man { outdir } => (
            outdir,
            telem_docgen::man_pages(&date()).context("rendering the man pages")?,
        ),
        What::Completions { outdir } => (outdir, telem_docgen::completions()),
    };
    telem_docgen::write_all(&outdir, &files)
        .with_context(|| format!("writing into {}", outdir.display()))
}
