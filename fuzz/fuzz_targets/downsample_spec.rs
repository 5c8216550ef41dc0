//! libFuzzer target: see `vscope_etl_fuzz::check_downsample` for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vscope_etl_fuzz::check_downsample(data));
