//! Names and descriptions of the context plane's Prometheus metrics.

use metrics::{Unit, describe_counter, describe_histogram};

/// Time one sensor took to take one sample, by `sensor`.
pub(crate) const SAMPLE_DURATION: &str = "aura_sensor_sample_duration_seconds";
/// Asset-file writes, by `asset`.
pub(crate) const WRITES: &str = "aura_asset_writes_total";
/// Samples not written because nothing changed significantly (or the write rate limit held them).
pub(crate) const SKIPPED: &str = "aura_asset_writes_skipped_total";
/// Guardian repairs, by `level` and `result`.
pub(crate) const REPAIRS: &str = "aura_guardian_repairs_total";
/// Sensor restarts after a failure, by `sensor`.
pub(crate) const RESTARTS: &str = "aura_sensor_restarts_total";
/// Sensor sample errors, by `sensor`.
pub(crate) const ERRORS: &str = "aura_sensor_errors_total";

/// Sensor updates pushed to a running Aura (`aura sensor --push`) and written by it.
pub const SENSOR_PUSHES: &str = "aura_sensor_pushes_total";

/// Registers the descriptions of the context plane's metrics with the installed recorder.
pub fn describe_metrics() {
    describe_histogram!(
        SAMPLE_DURATION,
        Unit::Seconds,
        "Time one sensor took to take one sample, by sensor."
    );
    describe_counter!(WRITES, Unit::Count, "Asset-file writes.");
    describe_counter!(
        SKIPPED,
        Unit::Count,
        "Sensor samples not written: no significant change, or held by the write rate limit."
    );
    describe_counter!(
        REPAIRS,
        Unit::Count,
        "Guardian repairs of asset files, by level and result."
    );
    describe_counter!(
        RESTARTS,
        Unit::Count,
        "Sensor restarts after failures, by sensor."
    );
    describe_counter!(ERRORS, Unit::Count, "Sensor sample errors, by sensor.");
    describe_counter!(
        SENSOR_PUSHES,
        Unit::Count,
        "Sensor updates pushed over HTTP (aura sensor --push) and written."
    );
}
