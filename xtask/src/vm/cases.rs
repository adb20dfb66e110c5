//! The scenarios and their verdicts are the tests crate's (tests/src/vm/);
//! these are the names the host test binaries' rows use.
pub use ipft_tests::vm::{Features, Status, Verdict};
