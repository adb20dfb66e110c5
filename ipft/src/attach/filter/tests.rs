//! [`check`] against the kernel itself. Needs BPF: without it the test
//! fails.
use ipft_filter::insn;

use super::check;
use crate::sys::fake;

#[test]
fn a_filter_the_verifier_refuses_is_reported_with_its_length() {
    fake::use_the_kernel();
    // r0 is returned unset.
    let err = check(&[insn::exit()]).unwrap_err().to_string();
    let start =
        "the kernel refuses the filter's 1 eBPF instructions (Permission denied (os error 13)): ";
    assert!(err.starts_with(start), "{err}");
    assert!(err.contains("R0 !read_ok"), "{err}");
}
