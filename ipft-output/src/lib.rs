//! ipft's output, as pure functions of plain inputs: what a user reads and
//! what scripts parse. No BPF, no kernel, no run: ipft's report stage
//! (`ipft/src/report/`) converts what it traced to these inputs.
//!
//! - [`json`]: one JSON line per event.
//! - [`pcapng`]: `-w`'s file, one interface per place and one block per frame.
//! - [`fate`]: how a packet ended, in words and as JSON, and the closing summary.
//! - [`retval`]: function_graph's return values, read as their type says.
//! - [`parse`]: the table and JSON lines parsed back strictly, for the tests.
//!
//! The layouts are ipftrace2's printf layouts, byte for byte, because users'
//! scripts parse them.
pub mod fate;
pub mod json;
pub mod parse;
pub mod pcapng;
pub mod retval;
