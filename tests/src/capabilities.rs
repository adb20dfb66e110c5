//! What this kernel lets a tracer do, asked of the kernel itself (sysfs and
//! the bpf() syscall, see [`crate::bpf`]) and never of ipft, and from that
//! what ipft must do here: which backend `-b auto` picks and the line that
//! says why, and for each `-b` whether it works or the exact sentence that
//! refuses it. ipft's own unit tests check its choice against fakes; these
//! answers are the real kernel's.
//!
//! The harness asks once per test binary, before any test runs
//! ([`crate::harness`]): a test that needs something this kernel lacks (see
//! [`crate::needs`]) is ignored, and when even a plain program does not
//! load, every test is.
use std::{io, path::Path, sync::OnceLock};

use crate::{
    bpf::{self, Load},
    kernel,
};

/// ipft's backends, as `-b` spells them, best first (`auto`'s order).
pub const BACKENDS: [&str; 4] = ["kprobe-multi", "kprobe", "ftrace", "tracepoint"];

/// The function the probes aim at: every kernel has it, and a ping's echo
/// request ends in it.
const PROBED: &str = "consume_skb";

/// Why the kernel refused a feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// bpf(BPF_PROG_LOAD) failed with this errno.
    Load(i32),
    /// bpf(BPF_LINK_CREATE) failed with this errno.
    Link(i32),
    /// vmlinux's BTF has no [`PROBED`] to aim fentry at.
    NoFunction,
}

/// The kernel's answers, asked once per test binary.
#[derive(Clone, Debug)]
pub struct Capabilities {
    /// The perf kprobe PMU exists (CONFIG_KPROBES).
    pub kprobes: bool,
    /// A kprobe-multi link (fprobe) attaches to [`PROBED`].
    pub kprobe_multi: Result<(), Refusal>,
    /// An fentry program for [`PROBED`] loads.
    pub fentry: Result<(), Refusal>,
    /// vmlinux's BTF has `bpf_rdonly_cast` (6.2), with which ipft's `-f`
    /// programs load packet bytes directly, a few instructions each.
    pub rdonly_cast: bool,
}

/// This kernel's capabilities, or why BPF is unavailable here. Asked once
/// per test binary.
pub fn ask() -> Result<&'static Capabilities, String> {
    static FOUND: OnceLock<Result<Capabilities, String>> = OnceLock::new();
    FOUND.get_or_init(probe).as_ref().map_err(Clone::clone)
}

/// This kernel's capabilities, for a test's body: the harness runs a test
/// only where [`ask`] found BPF, so this panics only outside it.
pub fn capabilities() -> &'static Capabilities {
    ask().unwrap_or_else(|why| panic!("{why}"))
}

fn probe() -> Result<Capabilities, String> {
    let plain = bpf::load(Load {
        prog_type: bpf::PROG_TYPE_SOCKET_FILTER,
        ..Load::default()
    });
    if let Err(errno) = plain {
        return Err(format!(
            "BPF is unavailable here: loading a two-instruction socket filter failed ({})",
            os_error(errno)
        ));
    }
    Ok(Capabilities {
        kprobes: Path::new("/sys/bus/event_source/devices/kprobe/type").exists(),
        kprobe_multi: try_kprobe_multi(),
        fentry: try_fentry(),
        rdonly_cast: kernel::btf_function_id("bpf_rdonly_cast").is_some(),
    })
}

fn try_kprobe_multi() -> Result<(), Refusal> {
    let prog = bpf::load(Load {
        prog_type: bpf::PROG_TYPE_KPROBE,
        attach_type: bpf::ATTACH_TRACE_KPROBE_MULTI,
        btf_id: 0,
    })
    .map_err(Refusal::Load)?;
    bpf::kprobe_multi(&prog, PROBED).map_err(Refusal::Link)?;
    Ok(())
}

fn try_fentry() -> Result<(), Refusal> {
    let btf_id = kernel::btf_function_id(PROBED).ok_or(Refusal::NoFunction)?;
    let load = Load {
        prog_type: bpf::PROG_TYPE_TRACING,
        attach_type: bpf::ATTACH_TRACE_FENTRY,
        btf_id,
    };
    bpf::load(load).map_err(Refusal::Load)?;
    Ok(())
}

/// The kernel-internal "not supported" errno bpf() can return.
const ENOTSUPP: i32 = 524;

impl Capabilities {
    /// Whether `-b backend` can trace here (`fentry` is ftrace's alias).
    pub fn has(&self, backend: &str) -> bool {
        match backend {
            "kprobe-multi" => self.kprobe_multi.is_ok(),
            "kprobe" => self.kprobes,
            "ftrace" | "fentry" => self.fentry.is_ok(),
            "tracepoint" => true,
            other => panic!("no backend {other:?}"),
        }
    }

    /// The backends that trace here, best first.
    pub fn backends(&self) -> Vec<&'static str> {
        BACKENDS.into_iter().filter(|b| self.has(b)).collect()
    }

    /// What `-b auto` picks for the function tracer: the first backend
    /// that works, tracepoint at the least.
    pub fn auto_backend(&self) -> &'static str {
        self.backends()[0]
    }

    /// The best backend that traces kernel functions, if any.
    pub fn function_backend(&self) -> Option<&'static str> {
        self.backends().into_iter().find(|b| *b != "tracepoint")
    }

    /// The line `-b auto` prints first on stderr (function tracer).
    pub fn auto_line(&self) -> String {
        let why = match self.auto_backend() {
            "kprobe-multi" => "the kernel has fprobe: one link attaches every function".into(),
            "kprobe" => format!("the kernel has kprobes but {}", self.no_fprobe()),
            "ftrace" => "no kprobes, but fentry works".into(),
            _ => format!(
                "no kprobes (CONFIG_KPROBES is off) and {}",
                self.no_fentry()
            ),
        };
        format!("Using the {} backend: {why}", self.auto_backend())
    }

    /// What `-b auto` picks for `-t function_graph`: kprobe-multi, else
    /// kprobe (kretprobes), else ftrace (fexit); `None` when none works.
    pub fn graph_backend(&self) -> Option<&'static str> {
        ["kprobe-multi", "kprobe", "ftrace"]
            .into_iter()
            .find(|b| self.has(b))
    }

    /// The line `-t function_graph` with `-b auto` prints first on stderr
    /// when a backend here sees returns.
    pub fn auto_graph_line(&self) -> Option<String> {
        let why = match self.graph_backend()? {
            "kprobe-multi" => {
                "the kernel has fprobe: one link attaches every function's entry, one every return"
                    .into()
            }
            "kprobe" => format!(
                "the kernel has kprobes and kretprobes but {}",
                self.no_fprobe()
            ),
            _ => "no kprobes, but fexit works".into(),
        };
        Some(format!(
            "Using the {} backend: {why}",
            self.graph_backend()?
        ))
    }

    /// What ipft must print (its only stderr line, exit 1) for
    /// `-b backend` with the function tracer here; `None` when it works.
    pub fn refusal(&self, backend: &str) -> Option<String> {
        if self.has(backend) {
            return None;
        }
        if backend == "kprobe" {
            let why = "this kernel has no kprobes (CONFIG_KPROBES is off)";
            return Some(format!(
                "ipft: the kprobe backend is unavailable: {why}; try -b tracepoint"
            ));
        }
        let why = match backend {
            "kprobe-multi" => self.no_fprobe(),
            _ => self.no_fentry(),
        };
        let name = if backend == "fentry" {
            "ftrace"
        } else {
            backend
        };
        let fallback = if self.kprobes { "kprobe" } else { "tracepoint" };
        Some(format!(
            "ipft: the {name} backend is unavailable: {why}; try -b {fallback}"
        ))
    }

    /// What ipft must print for `-t function_graph` with `-b auto` when no
    /// backend here sees returns.
    pub fn graph_refusal(&self) -> Option<String> {
        if self.graph_backend().is_some() {
            return None;
        }
        Some(format!(
            "ipft: function_graph needs function returns: this kernel has no kprobes (CONFIG_KPROBES is off), {}, and {}",
            self.no_fprobe(),
            self.no_fentry()
        ))
    }

    /// Why a test needing `backend` cannot run here; `None` if it can.
    pub fn lacks(&self, backend: &str) -> Option<String> {
        let why = match backend {
            _ if self.has(backend) => return None,
            "kprobe" => {
                "this kernel has no kprobes (no /sys/bus/event_source/devices/kprobe)".into()
            }
            "kprobe-multi" => self.no_fprobe(),
            _ => self.no_fentry(),
        };
        Some(format!("needs the {backend} backend: {why}"))
    }

    /// Why kprobe-multi does not work, in ipft's words.
    fn no_fprobe(&self) -> String {
        match self.kprobe_multi {
            Ok(()) => "kprobe-multi works".into(),
            Err(Refusal::Load(libc::EPERM)) => "loading a kprobe program is refused (EPERM)".into(),
            Err(Refusal::Load(libc::EINVAL)) => {
                "no kprobe programs (CONFIG_KPROBES or CONFIG_BPF_EVENTS is off)".into()
            }
            Err(Refusal::Load(errno)) => {
                format!("loading a kprobe program failed ({})", os_error(errno))
            }
            Err(Refusal::Link(libc::EINVAL)) => "no fprobe links (kernel older than 5.18)".into(),
            Err(Refusal::Link(libc::EOPNOTSUPP | ENOTSUPP)) => {
                "no fprobe (CONFIG_FPROBE is off)".into()
            }
            Err(Refusal::Link(errno)) => format!("an fprobe link failed ({})", os_error(errno)),
            Err(Refusal::NoFunction) => unreachable!("kprobe-multi is asked by name"),
        }
    }

    /// Why fentry does not work, in ipft's words.
    fn no_fentry(&self) -> String {
        let errno = match self.fentry {
            Ok(()) => return "fentry works".into(),
            Err(Refusal::NoFunction) => {
                return format!("the kernel's BTF has no {PROBED} to try fentry on")
            }
            Err(Refusal::Load(errno) | Refusal::Link(errno)) => errno,
        };
        let why = match errno {
            libc::EPERM => "EPERM".into(),
            ENOTSUPP => "the kernel cannot trace this function with fentry (ENOTSUPP: too many arguments, or no fentry support)".into(),
            libc::EINVAL | libc::EOPNOTSUPP => {
                format!("{}: this kernel does not support fentry", os_error(errno))
            }
            _ => os_error(errno),
        };
        format!("fentry is refused ({why})")
    }
}

fn os_error(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(
        kprobes: bool,
        fprobe: Result<(), Refusal>,
        fentry: Result<(), Refusal>,
    ) -> Capabilities {
        Capabilities {
            kprobes,
            kprobe_multi: fprobe,
            fentry,
            rdonly_cast: true,
        }
    }

    const NO_FPROBE: Result<(), Refusal> = Err(Refusal::Link(libc::EOPNOTSUPP));
    const EPERM: Result<(), Refusal> = Err(Refusal::Load(libc::EPERM));

    #[test]
    fn auto_picks_the_best_backend_that_works() {
        assert_eq!(kernel(true, Ok(()), Ok(())).auto_backend(), "kprobe-multi");
        assert_eq!(kernel(true, NO_FPROBE, Ok(())).auto_backend(), "kprobe");
        assert_eq!(kernel(false, NO_FPROBE, Ok(())).auto_backend(), "ftrace");
        assert_eq!(kernel(false, NO_FPROBE, EPERM).auto_backend(), "tracepoint");
    }

    #[test]
    fn the_auto_line_says_why() {
        let only_tracepoints = kernel(false, NO_FPROBE, EPERM);
        assert_eq!(
            only_tracepoints.auto_line(),
            "Using the tracepoint backend: no kprobes (CONFIG_KPROBES is off) and fentry is refused (EPERM)"
        );
        assert_eq!(
            kernel(true, NO_FPROBE, Ok(())).auto_line(),
            "Using the kprobe backend: the kernel has kprobes but no fprobe (CONFIG_FPROBE is off)"
        );
    }

    #[test]
    fn refusals_suggest_what_works() {
        let old = kernel(true, Err(Refusal::Link(libc::EINVAL)), EPERM);
        assert_eq!(
            old.refusal("kprobe-multi").unwrap(),
            "ipft: the kprobe-multi backend is unavailable: no fprobe links (kernel older than 5.18); try -b kprobe"
        );
        assert_eq!(
            old.refusal("fentry").unwrap(),
            "ipft: the ftrace backend is unavailable: fentry is refused (EPERM); try -b kprobe"
        );
        assert_eq!(old.refusal("kprobe"), None);
        assert_eq!(old.refusal("tracepoint"), None);
        assert!(old.lacks("ftrace").unwrap().contains("EPERM"));
        assert_eq!(old.function_backend(), Some("kprobe"));
    }
}
