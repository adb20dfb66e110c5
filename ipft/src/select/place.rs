//! `--netns` and `--dev`: the namespace and the device the user named,
//! resolved once, before anything is loaded, to the numbers the programs
//! compare: the namespace's inode number and the device's ifindex. A
//! device name is looked up inside the selected namespace (from a thread
//! that enters it), else in ipft's own; `--dev` alone also selects ipft's
//! namespace, because an ifindex names a device only within one.
use std::{
    fs::{self, File},
    io,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use crate::cli::{Device, Netns};

/// Where the selected packets are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// Inode number of the namespace (`net->ns.inum`).
    pub netns: u32,
    /// The device's ifindex in that namespace, with `--dev`.
    pub ifindex: Option<u32>,
}

/// ipft's own namespace, which `--dev` alone looks the device up in.
const OWN: &str = "/proc/thread-self/ns/net";
/// Where `ip netns add NAME` mounts its namespaces.
const NAMED: &str = "/run/netns";

/// Resolves `--netns` and `--dev`; `None` without either. The error is one
/// sentence naming what is not there.
pub fn resolve(netns: Option<&Netns>, dev: Option<&Device>) -> Result<Option<Place>, String> {
    if netns.is_none() && dev.is_none() {
        return Ok(None);
    }
    let (file, what) = match netns {
        Some(netns) => open(netns)?,
        None => (
            File::open(OWN).map_err(|e| format!("cannot open {OWN}: {e}"))?,
            "ipft's network namespace".to_string(),
        ),
    };
    let inode = file
        .metadata()
        .map_err(|e| format!("cannot stat {what}: {e}"))?
        .ino();
    let ifindex = match dev {
        Some(dev) => Some(device(dev, netns.map(|_| &file), &what)?),
        None => None,
    };
    Ok(Some(Place {
        netns: inode as u32,
        ifindex,
    }))
}

/// Opens the namespace, checking that it is a network namespace; with the
/// words that name it in messages.
fn open(netns: &Netns) -> Result<(File, String), String> {
    let (path, what) = match netns {
        Netns::Name(name) => (
            Path::new(NAMED).join(name),
            format!("the network namespace '{name}'"),
        ),
        Netns::Path(path) => (
            path.clone(),
            format!("the network namespace {}", path.display()),
        ),
        Netns::Inode(inode) => match find_inode(*inode) {
            Some(path) => (path, format!("the network namespace with inode {inode}")),
            None => {
                return Err(format!(
                "no network namespace has inode {inode} (none in {NAMED} nor of a running process)"
            ))
            }
        },
    };
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(match netns {
                Netns::Name(name) => {
                    format!("there is no network namespace '{name}' (see ip netns list)")
                }
                _ => format!("there is no network namespace {}", path.display()),
            })
        }
        Err(e) => return Err(format!("cannot open {what}: {e}")),
    };
    match is_network_namespace(&file) {
        true => Ok((file, what)),
        false => Err(format!("{} is not a network namespace", path.display())),
    }
}

/// `ioctl(NS_GET_NSTYPE)`: a namespace file says what kind it is (4.11+);
/// any other file fails the call.
fn is_network_namespace(file: &File) -> bool {
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: the ioctl takes no argument and reads nothing of ours.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    kind == libc::CLONE_NEWNET
}

/// A file of the namespace with this inode: a named one, else a process's.
fn find_inode(inode: u32) -> Option<PathBuf> {
    let named = fs::read_dir(NAMED)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    let processes = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| e.path().join("ns/net"));
    named
        .chain(processes)
        .find(|path| fs::metadata(path).is_ok_and(|m| m.ino() == inode as u64))
}

/// The device's ifindex, looked up in `netns` (entered from a thread of
/// its own: a thread's namespace is its own to change), else in ipft's.
fn device(dev: &Device, netns: Option<&File>, what: &str) -> Result<u32, String> {
    let lookup = || match dev {
        Device::Name(name) => index_of(name),
        Device::Index(index) => name_of(*index).map(|_| *index),
    };
    let found = match netns {
        None => lookup(),
        Some(file) => std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on a valid namespace fd, in this thread only.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    lookup()
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the look-up thread panicked")))
        }),
    };
    found.map_err(|e| match (e.kind(), dev) {
        (io::ErrorKind::NotFound, Device::Name(name)) => {
            format!("there is no device {name} in {what}")
        }
        (io::ErrorKind::NotFound, Device::Index(index)) => {
            format!("there is no device with ifindex {index} in {what}")
        }
        _ => format!("cannot look up the device in {what}: {e}"),
    })
}

/// `if_nametoindex`, with a missing device as `NotFound`.
fn index_of(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: a NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(missing(io::Error::last_os_error())),
        index => Ok(index),
    }
}

/// `if_indextoname`, with a missing device as `NotFound`.
fn name_of(index: u32) -> io::Result<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as the call needs.
    let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if name.is_null() {
        return Err(missing(io::Error::last_os_error()));
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// The kernel says ENODEV (or ENXIO) for a device that is not there.
fn missing(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ENODEV | libc::ENXIO) => io::Error::new(io::ErrorKind::NotFound, e),
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lo` is ifindex 1 in every namespace.
    #[test]
    fn loopback_resolves_in_ipfts_namespace() {
        let own = fs::metadata(OWN).unwrap().ino() as u32;
        let by_name = resolve(None, Some(&Device::Name("lo".into()))).unwrap();
        assert_eq!(
            by_name,
            Some(Place {
                netns: own,
                ifindex: Some(1)
            })
        );
        let by_index = resolve(None, Some(&Device::Index(1))).unwrap();
        assert_eq!(by_index, by_name);
        assert_eq!(resolve(None, None), Ok(None));
    }

    #[test]
    fn a_namespace_by_path_and_by_inode_is_the_same() {
        let own = fs::metadata(OWN).unwrap().ino() as u32;
        let path = Netns::Path(OWN.into());
        let by_path = resolve(Some(&path), Some(&Device::Name("lo".into()))).unwrap();
        assert_eq!(by_path.map(|p| p.netns), Some(own));
        let by_inode = resolve(Some(&Netns::Inode(own)), None).unwrap();
        assert_eq!(by_inode.map(|p| p.netns), Some(own));
    }

    #[test]
    fn what_is_not_there_is_named() {
        let err = resolve(Some(&Netns::Name("ipft-no-such-ns".into())), None).unwrap_err();
        assert_eq!(
            err,
            "there is no network namespace 'ipft-no-such-ns' (see ip netns list)"
        );
        let err = resolve(None, Some(&Device::Name("ipftnosuchdev".into()))).unwrap_err();
        assert_eq!(
            err,
            "there is no device ipftnosuchdev in ipft's network namespace"
        );
        let err = resolve(None, Some(&Device::Index(i32::MAX as u32))).unwrap_err();
        assert_eq!(
            err,
            "there is no device with ifindex 2147483647 in ipft's network namespace"
        );
        let err = resolve(Some(&Netns::Path("/proc/self/status".into())), None).unwrap_err();
        assert_eq!(err, "/proc/self/status is not a network namespace");
        // Inode 1 is the root directory's on most file systems, never a namespace's.
        let err = resolve(Some(&Netns::Inode(1)), None).unwrap_err();
        assert!(
            err.starts_with("no network namespace has inode 1 "),
            "{err}"
        );
    }
}
