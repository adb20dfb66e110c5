//! Naming where a row was called from: its caller and its kernel stack
//! (`--stack`), symbolized from `/proc/kallsyms`, read the first time one
//! is needed; each distinct stack is read from the `STACKS` map and named
//! once. In ipft, not ipft-output: it reads the kernel (kallsyms, a BPF map).
use std::{collections::HashMap, os::fd::AsFd, os::fd::OwnedFd};

use ipft_common::{Event, EVENT_STACK};

use crate::{discover::Symbols, sys::bpf};

/// Frames a stack map value holds (`PERF_MAX_STACK_DEPTH`).
const DEPTH: usize = 127;

/// Names callers and stacks.
pub struct Sites {
    symbols: Option<Symbols>,
    /// Said once: /proc/kallsyms could not be read.
    unreadable: bool,
    /// The `STACKS` map; `None` in tests.
    stacks: Option<OwnedFd>,
    /// Each stack read, its frames' addresses from the traced call outwards.
    read: HashMap<u32, Vec<u64>>,
}

/// A caller or frame, named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// `function+0x1c` or `module:function+0x1c`.
    pub full: String,
    /// The function alone.
    pub function: String,
}

impl Sites {
    pub fn new(stacks: Option<OwnedFd>) -> Self {
        Sites {
            symbols: None,
            unreadable: false,
            stacks,
            read: HashMap::new(),
        }
    }

    /// Symbols given, not read: for tests.
    #[cfg(test)]
    pub fn with_symbols(symbols: Symbols) -> Self {
        Sites {
            symbols: Some(symbols),
            ..Sites::new(None)
        }
    }

    fn symbols(&mut self) -> Option<&Symbols> {
        if self.symbols.is_none() && !self.unreadable {
            match Symbols::read() {
                Ok(symbols) => self.symbols = Some(symbols),
                Err(e) => {
                    eprintln!("ipft: callers and stacks are shown as addresses: {e:#}");
                    self.unreadable = true;
                }
            }
        }
        self.symbols.as_ref()
    }

    /// `addr` named.
    pub fn name(&mut self, addr: u64) -> Site {
        match self.symbols().and_then(|s| s.lookup(addr)) {
            Some((module, name, offset)) => Site {
                full: match module {
                    "" => format!("{name}+{offset:#x}"),
                    _ => format!("{module}:{name}+{offset:#x}"),
                },
                function: name.to_string(),
            },
            None => Site {
                full: format!("{addr:#x}"),
                function: format!("{addr:#x}"),
            },
        }
    }

    /// The stack an event recorded, from the traced call outwards: the
    /// frames of ipft's own programs and of the tracepoint machinery left
    /// out.
    pub fn stack(&mut self, event: &Event) -> Option<Vec<Site>> {
        self.stack_of(stack_id(event)?)
    }

    /// The stack of id `id`, as [`Sites::stack`] gives it.
    pub fn stack_of(&mut self, id: u32) -> Option<Vec<Site>> {
        let addrs = self.addresses(id)?;
        let mut frames: Vec<Site> = addrs.iter().map(|&a| self.name(a)).collect();
        let ours = frames.iter().take_while(|f| machinery(f)).count();
        frames.drain(..ours);
        Some(frames)
    }

    fn addresses(&mut self, id: u32) -> Option<Vec<u64>> {
        if let Some(addrs) = self.read.get(&id) {
            return Some(addrs.clone());
        }
        let map = self.stacks.as_ref()?;
        let mut value = vec![0u8; DEPTH * 8];
        if !bpf::map_lookup_elem(map.as_fd(), &id.to_ne_bytes(), &mut value).ok()? {
            return None;
        }
        let addrs: Vec<u64> = value
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
            .take_while(|&a| a != 0)
            .collect();
        self.read.insert(id, addrs.clone());
        Some(addrs)
    }

    /// Where a freeing call of `function` came from: the address the
    /// program read (`caller`), else the frame after `function`'s in its
    /// stack.
    pub fn caller(&mut self, caller: u64, stack: Option<u32>, function: &str) -> Option<Site> {
        if caller != 0 {
            return Some(self.name(caller));
        }
        let frames = self.stack_of(stack?)?;
        let at = frames.iter().position(|f| f.function == function)?;
        frames.into_iter().nth(at + 1)
    }
}

/// The stack id an event recorded.
pub fn stack_id(event: &Event) -> Option<u32> {
    (event.flags & EVENT_STACK != 0).then_some(event.stack_id)
}

/// Frames of the programs and of the calls that run them, above the
/// traced function.
fn machinery(frame: &Site) -> bool {
    frame.full.starts_with("bpf:")
        || [
            "bpf_trace_run",
            "__bpf_trace_",
            "__traceiter_",
            "bpf_trampoline",
        ]
        .iter()
        .any(|p| frame.function.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_named_with_module_and_offset() {
        let syms = Symbols::parse(
            "ffffffff81000000 T nf_hook_slow\nffffffffc0000000 t nft_do_chain\t[nf_tables]\n",
        );
        let mut sites = Sites::with_symbols(syms);
        let site = sites.caller(0xffffffff8100008f, None, "kfree_skb").unwrap();
        assert_eq!(site.full, "nf_hook_slow+0x8f");
        assert_eq!(site.function, "nf_hook_slow");
        assert_eq!(
            sites.name(0xffffffffc0000010).full,
            "nf_tables:nft_do_chain+0x10"
        );
        // No caller and no stack: none.
        assert_eq!(sites.caller(0, None, "kfree_skb"), None);
    }

    #[test]
    fn machinery_frames_are_ours() {
        let site = |full: &str, function: &str| Site {
            full: full.into(),
            function: function.into(),
        };
        assert!(machinery(&site(
            "bpf:bpf_prog_1234_tp_kfree_skb+0x4",
            "bpf_prog_1234"
        )));
        assert!(machinery(&site("bpf_trace_run4+0x80", "bpf_trace_run4")));
        assert!(!machinery(&site(
            "sk_skb_reason_drop+0x80",
            "sk_skb_reason_drop"
        )));
    }
}
