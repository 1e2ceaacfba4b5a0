//! Telemetry probes. Each probe is a binary under `src/bin/`; shared logic lives in modules here.
