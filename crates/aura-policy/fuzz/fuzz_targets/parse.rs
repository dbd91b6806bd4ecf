//! Fuzzes the policy loader, validator and evaluator with arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aura_policy::fuzz_parse(data);
});
