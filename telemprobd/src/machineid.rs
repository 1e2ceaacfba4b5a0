//! The machine id substituted into every record: the static override if the administrator set
//! one, else the rotating id in `machine_id_file` (created at start, replaced after three days,
//! checked hourly by the server loop).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use telemetry::{machine_id, validate, Config};

/// How often the rotating id is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(3600);

/// Used when no id can be read or created (as the original).
const FALLBACK: &str = "0";

/// The current id, shared by every handler. A std `Mutex`: it is held only to clone an `Arc`,
/// never across an `.await`.
#[derive(Debug)]
pub struct MachineId {
    current: Mutex<Arc<str>>,
}

impl MachineId {
    /// Computes the id from `config` (creating or rotating the id file as needed).
    pub fn new(config: &Config) -> MachineId {
        let m = MachineId {
            current: Mutex::new(Arc::from(FALLBACK)),
        };
        m.refresh(config);
        m
    }

    /// The id to put into a record.
    pub fn get(&self) -> Arc<str> {
        match self.current.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Re-reads the static override and runs the rotation check.
    pub fn refresh(&self, config: &Config) {
        let id = compute(config);
        match self.current.lock() {
            Ok(mut g) => *g = id,
            Err(p) => *p.into_inner() = id,
        }
    }
}

fn compute(config: &Config) -> Arc<str> {
    if let Some(id) = machine_id::read_static(&config.static_machine_id_file) {
        match validate::header_value("machine_id", &id) {
            Ok(()) => return Arc::from(id),
            Err(e) => tracing::warn!(file = %config.static_machine_id_file.display(), error = %e,
                "static machine id is not usable; using the rotating id"),
        }
    }
    if let Some(dir) = config.machine_id_file.parent() {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir);
    }
    match machine_id::ensure(&config.machine_id_file, SystemTime::now()) {
        Ok(id) => Arc::from(id),
        Err(e) => {
            tracing::warn!(file = %config.machine_id_file.display(), error = %e,
                "cannot create or rotate the machine id");
            machine_id::read(&config.machine_id_file)
                .map(Arc::from)
                .unwrap_or_else(|| Arc::from(FALLBACK))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn rotating_id_is_created_and_static_override_wins() {
        let d = tempfile::tempdir().unwrap();
        let c = Config::defaults(d.path());
        let m = MachineId::new(&c);
        let id = m.get();
        assert_eq!(id.len(), 32);
        assert_eq!(machine_id::read(&c.machine_id_file).as_deref(), Some(&*id));
        std::fs::create_dir_all(c.static_machine_id_file.parent().unwrap()).unwrap();
        std::fs::write(&c.static_machine_id_file, "my-box\n").unwrap();
        m.refresh(&c);
        assert_eq!(&*m.get(), "my-box");
        std::fs::remove_file(&c.static_machine_id_file).unwrap();
        m.refresh(&c);
        assert_eq!(m.get(), id, "not rotated within three days");
    }
}
