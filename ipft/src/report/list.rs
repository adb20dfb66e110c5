//! `-l`: the targets the chosen backend can trace, as `ipft_output::list`
//! lists them; here because it prints discover's targets to the process's
//! stdout and stderr.
use std::io::{self, Write};

pub use ipft_output::list::header;
use ipft_output::list::{self, Entry};

use super::sink::ignore_broken_pipe;
use crate::discover::Target;

/// `-l`: the header on stderr (not with `json`), the list on stdout; a
/// reader that stops reading early is no error.
pub fn print(targets: &[Target], json: bool) -> anyhow::Result<()> {
    if !json {
        eprintln!("{}", header());
    }
    let mut out = io::stdout().lock();
    ignore_broken_pipe(write(&mut out, targets, json).and_then(|()| out.flush()))
}

/// Writes the `-l` list of `targets`, one a line (see
/// [`ipft_output::list::write`]).
pub fn write(out: &mut dyn Write, targets: &[Target], json: bool) -> io::Result<()> {
    let entries = targets.iter().map(|t| Entry {
        name: &t.name,
        module: &t.module,
        addr: t.addr,
        skb_pos: t.skb_pos,
    });
    list::write(out, entries, json)
}
