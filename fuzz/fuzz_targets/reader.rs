//! Fuzz the image reader: any bytes, opened and verified as an image, must give an error or
//! succeed, never panic. The body is `ckpt_image::fuzz::fuzz_one`, which a stable test also runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ckpt_image::fuzz::fuzz_one(data);
});
