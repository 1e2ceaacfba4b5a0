//! Skeleton: filled by the crash-probe work.
