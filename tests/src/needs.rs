//! What a test can need of this kernel beyond what every end-to-end test
//! needs (ipft, root, BPF): each answers, from the kernel's
//! [`Capabilities`], why the test does not apply here, or `Ok` when it
//! does. A test names its need where it is declared (`ipft_tests::tests!`);
//! the harness asks before any test runs and ignores those that do not
//! apply.
use crate::capabilities::Capabilities;

/// Why a test does not apply to this kernel (`Err`), or `Ok`.
pub type Need = fn(&Capabilities) -> Result<(), String>;

/// The backends ipft refuses where the kernel lacks them (`fentry` is
/// ftrace's alias).
pub const REFUSABLE: [&str; 4] = ["kprobe", "ftrace", "fentry", "kprobe-multi"];

/// Nothing beyond what every end-to-end test needs.
pub fn nothing(_: &Capabilities) -> Result<(), String> {
    Ok(())
}

/// A backend that sees function returns, for `-t function_graph`.
pub fn graph_backend(kernel: &Capabilities) -> Result<(), String> {
    match kernel.graph_backend() {
        Some(_) => Ok(()),
        None => Err("needs a function backend (kprobe-multi, kprobe or ftrace)".into()),
    }
}

/// A backend that traces kernel functions, not only tracepoints.
pub fn function_backend(kernel: &Capabilities) -> Result<(), String> {
    match kernel.function_backend() {
        Some(_) => Ok(()),
        None => {
            Err("needs a backend that traces functions: this kernel allows only tracepoints".into())
        }
    }
}

/// A backend this kernel lacks, for ipft to refuse.
pub fn a_backend_to_refuse(kernel: &Capabilities) -> Result<(), String> {
    if REFUSABLE.iter().all(|b| kernel.has(b)) {
        return Err("this kernel allows kprobe, ftrace and kprobe-multi: none to refuse".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::Refusal;

    fn kernel(kprobes: bool, fprobe: bool, fentry: bool) -> Capabilities {
        let works = |yes: bool, refusal| if yes { Ok(()) } else { Err(refusal) };
        Capabilities {
            kprobes,
            kprobe_multi: works(fprobe, Refusal::Link(libc::EOPNOTSUPP)),
            fentry: works(fentry, Refusal::Load(libc::EPERM)),
            rdonly_cast: true,
        }
    }

    #[test]
    fn only_tracepoints_leave_function_tests_out() {
        let tracepoints = kernel(false, false, false);
        assert!(graph_backend(&tracepoints).is_err());
        assert!(function_backend(&tracepoints).is_err());
        assert_eq!(a_backend_to_refuse(&tracepoints), Ok(()));
        let fentry = kernel(false, false, true);
        assert_eq!(graph_backend(&fentry), Ok(()));
        assert_eq!(function_backend(&fentry), Ok(()));
    }

    #[test]
    fn a_kernel_with_every_backend_has_none_to_refuse() {
        assert!(a_backend_to_refuse(&kernel(true, true, true)).is_err());
        assert_eq!(a_backend_to_refuse(&kernel(true, false, true)), Ok(()));
    }
}
