//! CEL, the expression language of protovalidate's `cel` rules: parsed
//! at generation time, then compiled to Rust by the validators' emitter.

pub mod parse;
