//! System calls aya 0.14 does not wrap, one small typed function each.
pub mod bpf;
#[cfg(test)]
pub mod fake;
pub mod perf;
pub mod rlimit;
