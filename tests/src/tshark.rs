//! ipft's pcapng files (`-w`), read by tshark (Wireshark's reader, Debian
//! package tshark; `cargo xtask test` installs it): whatever ipft wrote
//! must open there, frame by frame, with the fields checked here.
use std::{
    io::Read,
    os::unix::fs::MetadataExt,
    path::Path,
    process::{Command, Stdio},
};

/// The fields read of each frame, in this order.
const FIELDS: &[&str] = &[
    "frame.interface_name",
    "frame.comment",
    "frame.time_epoch",
    "frame.len",
    "frame.cap_len",
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "udp.srcport",
    "udp.dstport",
    "icmp.type",
];

/// One frame as tshark decoded it. Fields a frame lacks are empty; a field
/// that occurs twice (the outer and inner headers of a tunnel) is both
/// values joined by `,`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub interface: String,
    pub comment: String,
    /// Seconds since the epoch, to the nanosecond, as tshark prints them.
    pub time_epoch: String,
    pub len: u32,
    pub cap_len: u32,
    /// `eth:ethertype:ip:udp:data`, `raw:ip:icmp:data`, …
    pub protocols: String,
    pub ip_src: String,
    pub ip_dst: String,
    pub udp_src: String,
    pub udp_dst: String,
    pub icmp_type: String,
}

impl Frame {
    /// The function a frame's comment names (`ip_rcv packet 3` → `ip_rcv`).
    pub fn function(&self) -> &str {
        self.comment.split(' ').next().unwrap_or_default()
    }

    /// The packet number a frame's comment names.
    pub fn packet(&self) -> u32 {
        let number = self.comment.split(" packet ").nth(1).unwrap_or_default();
        let digits = number.split(' ').next().unwrap_or_default();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("comment {:?} names no packet", self.comment))
    }

    /// The frame's time in nanoseconds since the epoch.
    pub fn epoch_ns(&self) -> i128 {
        let (secs, frac) = self
            .time_epoch
            .split_once('.')
            .unwrap_or((&self.time_epoch, "0"));
        let frac = format!("{frac:0<9}");
        let parse = |s: &str| -> i128 {
            s.parse()
                .unwrap_or_else(|_| panic!("time {:?} is not seconds", self.time_epoch))
        };
        parse(secs) * 1_000_000_000 + parse(&frac[..9])
    }
}

/// What tshark made of a file or stream.
pub struct Reading {
    pub frames: Vec<Frame>,
    /// tshark's stderr: it names a file cut short or a malformed block.
    pub stderr: String,
    pub ok: bool,
}

impl Reading {
    /// The frames, after checking that tshark read everything cleanly.
    pub fn clean(self, context: &str) -> Vec<Frame> {
        let complaint = ["cut short", "appears to be damaged", "isn't a capture file"]
            .iter()
            .find(|c| self.stderr.contains(*c));
        assert!(
            self.ok && complaint.is_none(),
            "tshark could not read the capture cleanly: {}\n{context}",
            self.stderr
        );
        self.frames
    }
}

/// The arguments that print [`FIELDS`] tab-separated, a frame per line.
fn field_args() -> Vec<String> {
    let mut args: Vec<String> = ["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"]
        .map(String::from)
        .to_vec();
    for field in FIELDS {
        args.extend(["-e".into(), field.to_string()]);
    }
    args
}

/// Reads a pcapng file with tshark.
pub fn read(path: &Path) -> Reading {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(field_args())
        .output()
        .expect("run tshark (Debian package tshark; `cargo xtask test` installs it)");
    reading(out.status.success(), &out.stdout, &out.stderr)
}

/// `tshark -r -` reading `from` as it comes (`-l`: a line per frame as soon
/// as it is read), with `extra` arguments. Returns the running tshark.
pub fn spawn_reader(from: impl Into<Stdio>, extra: &[&str]) -> std::process::Child {
    Command::new("tshark")
        .args(["-l", "-r", "-"])
        .args(extra)
        .args(field_args())
        .stdin(from)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tshark (Debian package tshark; `cargo xtask test` installs it)")
}

/// What a tshark from [`spawn_reader`] printed, once it exited.
pub fn finish_reader(mut child: std::process::Child, stdout: &[u8]) -> Reading {
    let mut stderr = Vec::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_end(&mut stderr);
    }
    let status = child.wait().expect("wait for tshark");
    reading(status.success(), stdout, &stderr)
}

fn reading(ok: bool, stdout: &[u8], stderr: &[u8]) -> Reading {
    let stdout = String::from_utf8_lossy(stdout);
    Reading {
        frames: stdout.lines().map(parse_line).collect(),
        stderr: String::from_utf8_lossy(stderr).into_owned(),
        ok,
    }
}

/// One line of tshark's `-T fields` output.
pub fn parse_line(line: &str) -> Frame {
    let cols: Vec<&str> = line.split('\t').collect();
    assert_eq!(cols.len(), FIELDS.len(), "tshark line {line:?}");
    let number = |s: &str| s.parse().unwrap_or_else(|_| panic!("{s:?} in {line:?}"));
    Frame {
        interface: cols[0].into(),
        comment: cols[1].into(),
        time_epoch: cols[2].into(),
        len: number(cols[3]),
        cap_len: number(cols[4]),
        protocols: cols[5].into(),
        ip_src: cols[6].into(),
        ip_dst: cols[7].into(),
        udp_src: cols[8].into(),
        udp_dst: cols[9].into(),
        icmp_type: cols[10].into(),
    }
}

/// The inode number of a network namespace file (`/proc/self/ns/net`,
/// `/run/netns/NAME`): what ipft names interfaces by (`dev@INODE`).
pub fn netns_inode(path: &str) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {path}: {e}"))
        .ino()
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC now, in nanoseconds.
pub fn realtime_offset_ns() -> i128 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec we own.
        assert_eq!(unsafe { libc::clock_gettime(clock, &mut ts) }, 0);
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    };
    let monotonic = now(libc::CLOCK_MONOTONIC);
    now(libc::CLOCK_REALTIME) - monotonic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_line_is_a_frame() {
        let line = "lo@4026531833\tkfree_skb packet 12 (drop: NO_SOCKET)\t1796174390.0339\t46\t46\teth:ethertype:ip:udp:data\t127.0.0.1\t127.0.0.1\t40000\t40001\t";
        let f = parse_line(line);
        assert_eq!((f.function(), f.packet()), ("kfree_skb", 12));
        assert_eq!(f.epoch_ns(), 1_796_174_390_033_900_000);
        assert_eq!((f.len, f.udp_dst.as_str()), (46, "40001"));
    }

    #[test]
    fn only_a_clean_reading_passes() {
        let read = |ok, stderr: &str| Reading {
            frames: Vec::new(),
            stderr: stderr.into(),
            ok,
        };
        assert!(std::panic::catch_unwind(|| read(false, "").clean("")).is_err());
        let cut =
            "tshark: The file \"x\" appears to have been cut short in the middle of a packet.";
        assert!(std::panic::catch_unwind(|| read(true, cut).clean("")).is_err());
        read(true, "Running as user \"root\" and group \"root\".").clean("");
    }
}
