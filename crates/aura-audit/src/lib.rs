//! The tamper-evident audit trail (work in progress).
