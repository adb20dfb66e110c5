//! `/proc/kallsyms`: the addresses of the functions BTF names, and the
//! names of the addresses callers and stacks show.
use std::{
    collections::{HashMap, HashSet},
    fs,
    io::{self, BufRead},
};

use anyhow::{bail, Context, Result};

/// Addresses of text symbols in `/proc/kallsyms`, keyed by (module, name);
/// only names in `wanted` are kept, so the map stays small.
pub fn kallsyms(text: &str, wanted: &HashSet<&str>) -> HashMap<(String, String), u64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((addr, kind, name, module)) = kallsyms_line(line) else {
            continue;
        };
        if !matches!(kind, b't' | b'T') || !wanted.contains(name) {
            continue;
        }
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        out.entry((module.to_string(), name.to_string()))
            .or_insert(addr);
    }
    out
}

/// Splits a `/proc/kallsyms` line, `ADDR KIND NAME` with `\t[MODULE]` for
/// a module's symbol, into its fields, the module `vmlinux` when none: by
/// hand, because the kernel's 150,000 lines are read at every start.
fn kallsyms_line(line: &str) -> Option<(&str, u8, &str, &str)> {
    let (addr, rest) = line.split_once(' ')?;
    let (kind, rest) = rest.split_once(' ')?;
    let &[kind] = kind.as_bytes() else {
        return None;
    };
    let (name, module) = match rest.split_once('\t') {
        Some((name, module)) => (name, module.trim_matches(|c| c == '[' || c == ']')),
        None => (rest, "vmlinux"),
    };
    Some((addr, kind, name.trim_end(), module))
}

/// Every text symbol of `/proc/kallsyms` (the kernel's, its modules' and
/// BPF programs'), sorted by address: names the addresses of callers and
/// stacks. Read once, when the first one is to be named. Compact, because
/// it lives as long as the run: 16 bytes a symbol and its name in one
/// buffer (about 4 MB for a kernel's 100,000 functions, against 10 MB as
/// strings of their own), and the file read a line at a time.
pub struct Symbols {
    sorted: Vec<Symbol>,
    /// The names, one after the other.
    names: String,
    /// Module names; index 0 is vmlinux, the empty name.
    modules: Vec<Box<str>>,
}

struct Symbol {
    addr: u64,
    name: u32,
    len: u16,
    module: u16,
}

impl Symbols {
    #[cfg(test)]
    pub fn parse(text: &str) -> Self {
        Self::from_lines(text.lines())
    }

    fn from_lines<S: AsRef<str>>(lines: impl Iterator<Item = S>) -> Self {
        let mut symbols = Symbols {
            sorted: Vec::new(),
            names: String::new(),
            modules: vec!["".into()],
        };
        let mut module_index: HashMap<String, u16> = HashMap::new();
        for line in lines {
            let Some((addr, kind, name, module)) = kallsyms_line(line.as_ref()) else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if !matches!(kind, b't' | b'T') || name.len() > usize::from(u16::MAX) {
                continue;
            }
            let module = match module {
                "vmlinux" => 0,
                m => *module_index.entry(m.to_string()).or_insert_with(|| {
                    symbols.modules.push(m.into());
                    (symbols.modules.len() - 1) as u16
                }),
            };
            symbols.sorted.push(Symbol {
                addr,
                name: symbols.names.len() as u32,
                len: name.len() as u16,
                module,
            });
            symbols.names.push_str(name);
        }
        symbols.sorted.sort_unstable_by_key(|s| s.addr);
        symbols.sorted.shrink_to_fit();
        symbols.names.shrink_to_fit();
        symbols
    }

    pub fn read() -> Result<Self> {
        let file = fs::File::open("/proc/kallsyms").context("cannot read /proc/kallsyms")?;
        let lines = io::BufReader::new(file).lines().map_while(Result::ok);
        let symbols = Self::from_lines(lines);
        if symbols.sorted.first().is_none_or(|s| s.addr == 0) {
            bail!("/proc/kallsyms hides addresses: run ipft as root");
        }
        Ok(symbols)
    }

    /// The function `addr` lies in: (module, name, offset), the module
    /// empty for vmlinux; `None` below the first symbol.
    pub fn lookup(&self, addr: u64) -> Option<(&str, &str, u64)> {
        let at = self
            .sorted
            .partition_point(|s| s.addr <= addr)
            .checked_sub(1)?;
        let s = &self.sorted[at];
        let name = &self.names[s.name as usize..s.name as usize + usize::from(s.len)];
        Some((&self.modules[usize::from(s.module)], name, addr - s.addr))
    }
}

/// Reads `/proc/kallsyms`, failing with a sentence the user can act on.
pub fn read_kallsyms() -> Result<String> {
    let text = fs::read_to_string("/proc/kallsyms").context("cannot read /proc/kallsyms")?;
    // Judge by a function: per-CPU symbols (type A) really are at 0 on
    // newer kernels, and come first.
    if text
        .lines()
        .find(|l| matches!(l.split_whitespace().nth(1), Some("t" | "T")))
        .is_some_and(|l| l.starts_with("0000000000000000"))
    {
        bail!("/proc/kallsyms hides addresses: run ipft as root");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff81000000 T _text
ffffffff81a00010 T ip_rcv
ffffffff81a00020 t ip_rcv_finish
ffffffff81a00030 D ip_rcv_data
ffffffffc0a01000 t veth_xmit\t[veth]
ffffffffc0b01000 t veth_xmit\t[other]
";

    #[test]
    fn kallsyms_keeps_wanted_text_symbols_per_module() {
        let wanted: HashSet<&str> = ["ip_rcv", "veth_xmit", "ip_rcv_data"].into();
        let syms = kallsyms(KALLSYMS, &wanted);
        assert_eq!(
            syms.get(&("vmlinux".into(), "ip_rcv".into())),
            Some(&0xffffffff81a00010)
        );
        assert_eq!(
            syms.get(&("veth".into(), "veth_xmit".into())),
            Some(&0xffffffffc0a01000)
        );
        assert_eq!(
            syms.get(&("other".into(), "veth_xmit".into())),
            Some(&0xffffffffc0b01000)
        );
        assert!(
            !syms.contains_key(&("vmlinux".into(), "ip_rcv_data".into())),
            "data symbol kept"
        );
        assert_eq!(syms.len(), 3);
    }

    #[test]
    fn symbols_name_addresses_inside_functions() {
        let syms = Symbols::parse(KALLSYMS);
        assert_eq!(syms.lookup(0xffffffff81a00010), Some(("", "ip_rcv", 0)));
        assert_eq!(
            syms.lookup(0xffffffff81a0002c),
            Some(("", "ip_rcv_finish", 0xc))
        );
        assert_eq!(
            syms.lookup(0xffffffffc0a0101c),
            Some(("veth", "veth_xmit", 0x1c))
        );
        assert_eq!(syms.lookup(0x1000), None);
        // The data symbol is not a function: the address is still ip_rcv_finish's.
        assert_eq!(
            syms.lookup(0xffffffff81a00031),
            Some(("", "ip_rcv_finish", 0x11))
        );
    }
}
