//! ipft's output, as pure functions of plain inputs: what a user reads and
//! what scripts parse. No BPF, no kernel, no run: ipft's report stage
//! (`ipft/src/report/`) converts what it traced to these inputs.
//!
//! - [`table`]: the aggregate table, one packet group at a time.
//! - [`json`]: one JSON line per event.
//! - [`list`]: `-l`'s list of what can be traced.
//! - [`pcapng`]: `-w`'s file, one interface per place and one block per frame.
//! - [`fate`]: how a packet ended, in words and as JSON, and the closing summary.
//! - [`fields`]: `--field`'s skb fields as text.
//! - [`retval`]: function_graph's return values, read as their type says.
//! - [`parse`]: the table and JSON lines parsed back strictly, for the tests.
//!
//! The layouts are ipftrace2's printf layouts, byte for byte, because users'
//! scripts parse them.
pub mod fate;
pub mod fields;
pub mod json;
pub mod list;
pub mod parse;
pub mod pcapng;
pub mod retval;
pub mod table;

use std::fmt;

/// Why the kernel dropped a packet: `enum skb_drop_reason`'s name, or its
/// number when the kernel's BTF has no name for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason<'a> {
    Name(&'a str),
    Number(u32),
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Name(name) => f.write_str(name),
            Reason::Number(n) => write!(f, "{n}"),
        }
    }
}
