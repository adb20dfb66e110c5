//! function_graph: a return row's value, read as the function's BTF return
//! type says ([`Returns`]), with a negative errno named: `-22 EINVAL`.
use std::fmt;

/// A function's return type: how much of the return register is its
/// value, and how to read it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Returns {
    /// `void`, or a tracepoint (no return).
    #[default]
    Nothing,
    /// A signed integer (or enum) of this many bytes.
    Signed(u8),
    /// An unsigned integer (or `bool`) of this many bytes.
    Unsigned(u8),
    /// A pointer: an address, or an errno when it is an `ERR_PTR`.
    Pointer,
}

/// A return value, as its type reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// A signed integer or enum, sign-extended from its size.
    Signed(i64),
    /// An unsigned integer, enum or `bool`.
    Unsigned(u64),
    /// A pointer: its address, or an `ERR_PTR` errno ([`Value::Signed`]).
    Pointer(u64),
}

/// The value a function of `returns` gave back in the register `raw`;
/// `None` for `void`. Only the type's bytes count: an `int` function leaves
/// whatever it likes in the upper half of the register.
pub fn value(returns: Returns, raw: u64) -> Option<Value> {
    let bits = |size: u8| u32::from(size.clamp(1, 8)) * 8;
    match returns {
        Returns::Nothing => None,
        Returns::Signed(size) => {
            let shift = 64 - bits(size);
            Some(Value::Signed(((raw << shift) as i64) >> shift))
        }
        Returns::Unsigned(size) => Some(Value::Unsigned(raw & (u64::MAX >> (64 - bits(size))))),
        Returns::Pointer if errno_name(raw as i64).is_some() => Some(Value::Signed(raw as i64)),
        Returns::Pointer => Some(Value::Pointer(raw)),
    }
}

impl Value {
    /// The errno's name, for a negative errno (`EINVAL` for -22).
    pub fn errno(self) -> Option<&'static str> {
        match self {
            Value::Signed(n) => errno_name(n),
            _ => None,
        }
    }
}

/// `-22 EINVAL`, `0`, `1`, `0xffff888003a1c000`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Signed(n) => match errno_name(n) {
                Some(name) => write!(f, "{n} {name}"),
                None => write!(f, "{n}"),
            },
            Value::Unsigned(n) => write!(f, "{n}"),
            Value::Pointer(p) => write!(f, "{p:#x}"),
        }
    }
}

/// The kernel's name for `-n` when `n` is a negative errno it has a name
/// for (`include/uapi/asm-generic/errno*.h`, and the kernel-internal ones
/// of `include/linux/errno.h` such as `ENOTSUPP`).
pub fn errno_name(n: i64) -> Option<&'static str> {
    let errno = usize::try_from(n.checked_neg()?).ok()?;
    let name = match errno {
        1..=133 => ERRNO[errno - 1],
        512..=530 => INTERNAL[errno - 512],
        _ => "",
    };
    (!name.is_empty()).then_some(name)
}

/// Errnos 1 to 133 (x86_64 and the generic layout); gaps are empty.
const ERRNO: [&str; 133] = [
    "EPERM",
    "ENOENT",
    "ESRCH",
    "EINTR",
    "EIO",
    "ENXIO",
    "E2BIG",
    "ENOEXEC",
    "EBADF",
    "ECHILD",
    "EAGAIN",
    "ENOMEM",
    "EACCES",
    "EFAULT",
    "ENOTBLK",
    "EBUSY",
    "EEXIST",
    "EXDEV",
    "ENODEV",
    "ENOTDIR",
    "EISDIR",
    "EINVAL",
    "ENFILE",
    "EMFILE",
    "ENOTTY",
    "ETXTBSY",
    "EFBIG",
    "ENOSPC",
    "ESPIPE",
    "EROFS",
    "EMLINK",
    "EPIPE",
    "EDOM",
    "ERANGE",
    "EDEADLK",
    "ENAMETOOLONG",
    "ENOLCK",
    "ENOSYS",
    "ENOTEMPTY",
    "ELOOP",
    "",
    "ENOMSG",
    "EIDRM",
    "ECHRNG",
    "EL2NSYNC",
    "EL3HLT",
    "EL3RST",
    "ELNRNG",
    "EUNATCH",
    "ENOCSI",
    "EL2HLT",
    "EBADE",
    "EBADR",
    "EXFULL",
    "ENOANO",
    "EBADRQC",
    "EBADSLT",
    "",
    "EBFONT",
    "ENOSTR",
    "ENODATA",
    "ETIME",
    "ENOSR",
    "ENONET",
    "ENOPKG",
    "EREMOTE",
    "ENOLINK",
    "EADV",
    "ESRMNT",
    "ECOMM",
    "EPROTO",
    "EMULTIHOP",
    "EDOTDOT",
    "EBADMSG",
    "EOVERFLOW",
    "ENOTUNIQ",
    "EBADFD",
    "EREMCHG",
    "ELIBACC",
    "ELIBBAD",
    "ELIBSCN",
    "ELIBMAX",
    "ELIBEXEC",
    "EILSEQ",
    "ERESTART",
    "ESTRPIPE",
    "EUSERS",
    "ENOTSOCK",
    "EDESTADDRREQ",
    "EMSGSIZE",
    "EPROTOTYPE",
    "ENOPROTOOPT",
    "EPROTONOSUPPORT",
    "ESOCKTNOSUPPORT",
    "EOPNOTSUPP",
    "EPFNOSUPPORT",
    "EAFNOSUPPORT",
    "EADDRINUSE",
    "EADDRNOTAVAIL",
    "ENETDOWN",
    "ENETUNREACH",
    "ENETRESET",
    "ECONNABORTED",
    "ECONNRESET",
    "ENOBUFS",
    "EISCONN",
    "ENOTCONN",
    "ESHUTDOWN",
    "ETOOMANYREFS",
    "ETIMEDOUT",
    "ECONNREFUSED",
    "EHOSTDOWN",
    "EHOSTUNREACH",
    "EALREADY",
    "EINPROGRESS",
    "ESTALE",
    "EUCLEAN",
    "ENOTNAM",
    "ENAVAIL",
    "EISNAM",
    "EREMOTEIO",
    "EDQUOT",
    "ENOMEDIUM",
    "EMEDIUMTYPE",
    "ECANCELED",
    "ENOKEY",
    "EKEYEXPIRED",
    "EKEYREVOKED",
    "EKEYREJECTED",
    "EOWNERDEAD",
    "ENOTRECOVERABLE",
    "ERFKILL",
    "EHWPOISON",
];

/// The kernel-internal errnos 512 to 530, never seen by user space but
/// returned inside the kernel; 520 is unused.
const INTERNAL: [&str; 19] = [
    "ERESTARTSYS",
    "ERESTARTNOINTR",
    "ERESTARTNOHAND",
    "ENOIOCTLCMD",
    "ERESTART_RESTARTBLOCK",
    "EPROBE_DEFER",
    "EOPENSTALE",
    "ENOPARAM",
    "",
    "EBADHANDLE",
    "ENOTSYNC",
    "EBADCOOKIE",
    "ENOTSUPP",
    "ETOOSMALL",
    "ESERVERFAULT",
    "EBADTYPE",
    "EJUKEBOX",
    "EIOCBQUEUED",
    "ERECALLCONFLICT",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_match_libc() {
        for (n, name) in [
            (libc::EPERM, "EPERM"),
            (libc::EINVAL, "EINVAL"),
            (libc::ENOENT, "ENOENT"),
            (libc::ENOBUFS, "ENOBUFS"),
            (libc::ECONNREFUSED, "ECONNREFUSED"),
            (libc::EHWPOISON, "EHWPOISON"),
            (libc::EOPNOTSUPP, "EOPNOTSUPP"),
            (libc::EMSGSIZE, "EMSGSIZE"),
        ] {
            assert_eq!(errno_name(-i64::from(n)), Some(name));
        }
        assert_eq!(errno_name(-524), Some("ENOTSUPP"));
        assert_eq!(errno_name(-512), Some("ERESTARTSYS"));
        for none in [0, 1, 22, -41, -134, -520, -4095, i64::MIN] {
            assert_eq!(errno_name(none), None, "{none}");
        }
    }

    #[test]
    fn values_read_only_their_types_bytes() {
        // An int's -22 with garbage above it, as a register may hold it.
        let raw = 0xdead_beef_ffff_ffea;
        assert_eq!(value(Returns::Signed(4), raw), Some(Value::Signed(-22)));
        assert_eq!(
            value(Returns::Signed(4), raw).unwrap().to_string(),
            "-22 EINVAL"
        );
        assert_eq!(value(Returns::Signed(8), 5).unwrap().to_string(), "5");
        assert_eq!(
            value(Returns::Signed(8), u64::MAX).unwrap().to_string(),
            "-1 EPERM"
        );
        assert_eq!(value(Returns::Unsigned(1), 0x101).unwrap().to_string(), "1");
        assert_eq!(
            value(Returns::Unsigned(4), raw).unwrap().to_string(),
            "4294967274"
        );
        assert_eq!(value(Returns::Nothing, raw), None);
    }

    #[test]
    fn pointers_show_addresses_or_their_errno() {
        let p = value(Returns::Pointer, 0xffff_8880_03a1_c000).unwrap();
        assert_eq!(p.to_string(), "0xffff888003a1c000");
        assert_eq!(p.errno(), None);
        let err = value(Returns::Pointer, -12i64 as u64).unwrap();
        assert_eq!(
            (err.to_string().as_str(), err.errno()),
            ("-12 ENOMEM", Some("ENOMEM"))
        );
        assert_eq!(value(Returns::Pointer, 0).unwrap().to_string(), "0x0");
    }
}
