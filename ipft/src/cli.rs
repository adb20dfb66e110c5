//! Command-line options: every flag is defined once here, with its docs;
//! `--help` is generated from the same source.
use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use clap::{CommandFactory, Parser, ValueEnum};
use regex::Regex;

/// Where the kernel publishes its BTF: `--btf-dir`'s default.
pub const SYS_BTF_DIR: &str = "/sys/kernel/btf";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ipft",
    version,
    about = "Show which kernel functions each selected packet goes through",
    long_about = "Show which kernel functions each selected packet goes through.\n\n\
        Select packets with a tcpdump expression (`ipft -f 'udp port 53'`) or, \
        as with ipftrace2, a mark (iptables -j MARK, nft meta mark set, \
        ping -m, SO_MARK, tc; `ipft -m MARK`), make traffic, press Ctrl-C: \
        ipft prints, packet by packet, the functions each one passed.",
    after_help = "Examples: sudo ipft -f 'icmp and host 127.0.0.1'   (then: ping -c 1 127.0.0.1)\n          \
        sudo ipft -m 0x55555555   (then: ping -m 1431655765 -c 1 127.0.0.1)"
)]
pub struct Options {
    /// Trace packets whose skb->mark matches this value (0x hex, 0 octal, or decimal).
    #[arg(short, long, value_parser = parse_u32, required_unless_present_any = ["list", "generate", "filter", "netns", "dev"])]
    pub mark: Option<u32>,

    /// Trace packets that match this pcap-filter expression (tcpdump's
    /// syntax), e.g. 'udp and dst port 2152'; with -m, packets must match both.
    #[arg(short, long, value_name = "EXPR")]
    pub filter: Option<String>,

    /// Trace packets in this network namespace: a name from `ip netns`, a
    /// path such as /proc/PID/ns/net, or an inode number (`ls -iL
    /// /proc/PID/ns/net`). A packet is in its device's namespace, or,
    /// before it has a device, in its socket's.
    #[arg(long, value_name = "NAME|PATH|INODE", value_parser = parse_netns)]
    pub netns: Option<Netns>,

    /// Trace packets on this device: a name or an ifindex, in the --netns
    /// namespace if given, else in ipft's own. A packet without a device
    /// (before routing) is on none.
    #[arg(long, value_name = "IFNAME|IFINDEX", value_parser = parse_dev)]
    pub dev: Option<Device>,

    /// Compare only these bits: a packet matches when (mark & mask) == (MARK & mask).
    #[arg(long, value_parser = parse_u32, default_value = "0xffffffff", requires = "mark")]
    pub mask: u32,

    /// How to attach to the kernel; `auto` picks the best this kernel allows.
    #[arg(short, long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,

    /// `function` records calls; `function_graph` records calls and returns, with return values.
    #[arg(short, long, value_enum, default_value_t = Tracer::Function)]
    pub tracer: Tracer,

    /// `aggregate` prints one table per packet on exit; `json` streams one line per event.
    #[arg(short, long, value_enum, default_value_t = Output::Aggregate)]
    pub output: Output,

    /// Trace only functions whose name matches this regex (unanchored).
    #[arg(short, long, value_parser = parse_regex)]
    pub regex: Option<Regex>,

    /// Trace only functions whose module matches this regex (the core kernel is `vmlinux`).
    #[arg(long, value_parser = parse_regex)]
    pub module_regex: Option<Regex>,

    /// List the functions the chosen backend can trace, then exit.
    #[arg(short, long)]
    pub list: bool,

    /// Say more: per-function attach failures, option dump, timings.
    #[arg(short, long)]
    pub verbose: bool,

    /// Pages (a power of two) of each CPU's perf buffer [default: 64 MiB
    /// shared by the CPUs, 1 to 8 MiB each: a 10,000-packet burst fits].
    #[arg(long, value_parser = parse_page_count)]
    pub perf_page_count: Option<usize>,

    /// Wake ipft after this many events per CPU (it also reads every 100 ms):
    /// 1 shows each event at once but costs a wake-up per event.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub perf_wakeup_events: u32,

    /// Keep following a matched packet after it stops matching (a mark
    /// cleared, headers changed: tunnels, NAT, namespaces), until it is
    /// freed. The default with -f, --netns and --dev.
    #[arg(long)]
    pub track: bool,

    /// With -f, --netns or --dev, do not follow a packet once it stops
    /// matching them.
    #[arg(long, conflicts_with = "track")]
    pub no_track: bool,

    /// Print this skb field on every row (repeatable): len, data_len,
    /// protocol, mark, dev, gso_size, gso_segs, gso_type.
    #[arg(long, value_enum, value_name = "NAME")]
    pub field: Vec<Field>,

    /// Show each row's kernel stack (symbolized from /proc/kallsyms), on
    /// every row, or with `--stack=drops` on the rows that drop the packet.
    #[arg(long, value_enum, value_name = "drops", num_args = 0..=1,
          require_equals = true, default_missing_value = "all")]
    pub stack: Option<Stacks>,

    /// Stop after this many seconds of tracing (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_traces: Option<u64>,

    /// Aggregate mode: store at most this many events for the table (default:
    /// as many as fit in about 1 GB); later ones are counted, not shown.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_events: Option<u64>,

    /// Write the output to this file instead of stdout: json streams into it,
    /// aggregate is written on exit through a temporary file and a rename.
    #[arg(long, value_name = "PATH")]
    pub output_file: Option<PathBuf>,

    /// Replace --output-file if it exists.
    #[arg(long, requires = "output_file")]
    pub force: bool,

    /// Also write the traced packets to FILE as pcapng, for Wireshark or
    /// tshark (replaced if it exists, as tcpdump -w does); `-` streams it to
    /// stdout, and the table or JSON then go to stderr.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,

    /// With -w, which rows of a packet become frames: `all`, or the rows
    /// whose function matches this regex [default: its first row, its last
    /// row, and each row where its length, header layout or bytes changed].
    #[arg(long, value_name = "all|REGEX", value_parser = parse_capture_at, requires = "write")]
    pub capture_at: Option<CaptureAt>,

    /// With -w, bytes of each frame to write (its linear data only), 1 to
    /// 4096; the frame's full length is kept.
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=ipft_common::SNAPLEN_MAX as i64))]
    pub snaplen: u32,

    /// Once tracing is ready, accept (and close) TCP connections: a readiness
    /// signal for scripts (as ipftrace2).
    #[arg(long)]
    pub enable_probe_server: bool,

    /// Where the probe server listens: PORT (on 127.0.0.1) or ADDRESS:PORT.
    #[arg(long, value_name = "[ADDR:]PORT", default_value = "13720", value_parser = parse_listen)]
    pub probe_server_port: SocketAddr,

    /// Create this file once tracing is ready (removed on exit).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,

    /// Where to read the kernel's BTF (for tests: a missing or damaged copy).
    #[arg(long, value_name = "DIR", default_value = SYS_BTF_DIR, hide = true)]
    pub btf_dir: PathBuf,

    /// Print a man page or a shell completion script, then exit.
    #[arg(long, value_enum, value_name = "KIND")]
    pub generate: Option<Generate>,

    /// Run this command once tracing is ready, stop when it exits, and exit
    /// with its status: `ipft -m 0x1 -- ping -m 1 -c 1 10.0.0.2`. Its stdout
    /// goes to stderr when ipft's stdout carries `-w -` or json.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `--generate`: documents generated from these same definitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    Man,
    CompleteBash,
    CompleteZsh,
    CompleteFish,
}

/// `-b`: how programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// kprobe-multi if the kernel has fprobe, else kprobe, else ftrace if it allows fentry, else tracepoint.
    Auto,
    /// One kprobe per function.
    Kprobe,
    /// One kprobe-multi (fprobe) link per skb position: fast to attach many functions (5.18+).
    #[value(alias = "kprobe_multi")]
    KprobeMulti,
    /// fentry (and fexit for function_graph), one program per function.
    #[value(alias = "fentry")]
    Ftrace,
    /// BTF tracepoints that carry an skb (tp_btf).
    Tracepoint,
}

/// `-t`: what is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Tracer {
    Function,
    #[value(name = "function_graph", alias = "function-graph")]
    FunctionGraph,
}

/// `-o`: how results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Aggregate,
    Json,
}

/// `--stack`: which rows show their kernel stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Stacks {
    /// Every row.
    All,
    /// The rows that drop the packet (the kfree_skb family with a reason).
    Drops,
}

/// `--netns`: how the namespace is named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Netns {
    /// A name from `ip netns`: /run/netns/NAME.
    Name(String),
    /// A namespace file: /proc/PID/ns/net, or one bind-mounted elsewhere.
    Path(PathBuf),
    /// The namespace's inode number.
    Inode(u32),
}

/// `--dev`: how the device is named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    Name(String),
    Index(u32),
}

/// `--capture-at`: which rows of a packet `-w` writes, besides the default.
#[derive(Clone, Debug)]
pub enum CaptureAt {
    All,
    Matching(Regex),
}

impl Options {
    /// Whether matched packets are followed until freed (`--track`): asked
    /// for, or a selector without `--no-track`, since a packet's headers change on
    /// the way (encapsulation, NAT) and the filter would lose it.
    pub fn tracks(&self) -> bool {
        self.track || (self.selects() && !self.no_track)
    }

    /// Whether a selector other than the mark is given: -f, --netns, --dev.
    pub fn selects(&self) -> bool {
        self.filter.is_some() || self.netns.is_some() || self.dev.is_some()
    }

    /// The value the programs compare against: `mark & mask`.
    pub fn masked_mark(&self) -> u32 {
        self.mark.unwrap_or(0) & self.mask
    }
}

/// Parses like C's `strtoul(s, NULL, 0)`: `0x`/`0X` hex, leading `0` octal,
/// else decimal; the whole string must be a number that fits in 32 bits.
pub fn parse_u32(s: &str) -> Result<u32, String> {
    let (digits, radix) = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (hex, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!(
            "`{s}` is not a number (use 0x hex, 0 octal, or decimal)"
        ));
    }
    u32::from_str_radix(digits, radix).map_err(|_| format!("`{s}` does not fit in 32 bits"))
}

/// `--netns`: digits are an inode number, a `/` makes a path, anything
/// else is a name from `ip netns` (which cannot contain `/`).
pub fn parse_netns(s: &str) -> Result<Netns, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u32>() {
            Ok(inode) if inode > 0 => Ok(Netns::Inode(inode)),
            _ => Err(format!(
                "`{s}` is not a namespace inode number (1 to 4294967295)"
            )),
        };
    }
    if s.contains('/') {
        return Ok(Netns::Path(PathBuf::from(s)));
    }
    match s {
        "" | "." | ".." => Err(format!("`{s}` is not a namespace name")),
        name => Ok(Netns::Name(name.to_string())),
    }
}

/// `--dev`: digits are an ifindex, anything else a device name as the
/// kernel allows them (`dev_valid_name`: 1 to 15 bytes, no `/`, `:` or
/// white space, not `.` or `..`).
pub fn parse_dev(s: &str) -> Result<Device, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u32>() {
            Ok(index) if index > 0 && index <= i32::MAX as u32 => Ok(Device::Index(index)),
            _ => Err(format!("`{s}` is not an ifindex (1 to 2147483647)")),
        };
    }
    let valid = !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace());
    match valid {
        true => Ok(Device::Name(s.to_string())),
        false => Err(format!(
            "`{s}` is not a device name (1 to 15 characters, no '/', ':' or spaces)"
        )),
    }
}

fn parse_regex(s: &str) -> Result<Regex, String> {
    Regex::new(s).map_err(|e| format!("invalid regex: {e}"))
}

fn parse_capture_at(s: &str) -> Result<CaptureAt, String> {
    match s {
        "all" => Ok(CaptureAt::All),
        re => parse_regex(re).map(CaptureAt::Matching),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

/// `13720` → 127.0.0.1:13720; `0.0.0.0:13720` or `[::1]:13720` as given.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    s.parse()
        .map_err(|_| format!("`{s}` is neither a port nor ADDRESS:PORT"))
}

fn parse_page_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n.is_power_of_two() => Ok(n),
        _ => Err(format!("`{s}` is not a power of two")),
    }
}

/// The skb fields `--field` can print, named as the kernel names them
/// (`data_len`; `data-len` is accepted too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Field {
    Len,
    #[value(name = "data_len", alias = "data-len")]
    DataLen,
    Protocol,
    Mark,
    Dev,
    #[value(name = "gso_size", alias = "gso-size")]
    GsoSize,
    #[value(name = "gso_segs", alias = "gso-segs")]
    GsoSegs,
    #[value(name = "gso_type", alias = "gso-type")]
    GsoType,
}

/// `--generate`: the man page and completions come from the same clap
/// definitions as `--help`.
pub fn generate(kind: Generate) -> ExitCode {
    let mut cmd = Options::command();
    let mut out = std::io::stdout();
    let shell = match kind {
        Generate::Man => {
            return match clap_mangen::Man::new(cmd).render(&mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(1),
            }
        }
        Generate::CompleteBash => clap_complete::Shell::Bash,
        Generate::CompleteZsh => clap_complete::Shell::Zsh,
        Generate::CompleteFish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "ipft", &mut out);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_parse_like_strtoul() {
        assert_eq!(parse_u32("0x55555555"), Ok(0x5555_5555));
        assert_eq!(parse_u32("0XFF"), Ok(255));
        assert_eq!(parse_u32("1431655765"), Ok(0x5555_5555));
        assert_eq!(parse_u32("010"), Ok(8));
        assert_eq!(parse_u32("0"), Ok(0));
        assert_eq!(parse_u32("0xffffffff"), Ok(u32::MAX));
    }

    #[test]
    fn bad_marks_are_rejected() {
        for bad in [
            "",
            "0x",
            "zzz",
            "-1",
            "+1",
            " 1",
            "08",
            "0x1ffffffff",
            "4294967296",
            "1e3",
        ] {
            assert!(parse_u32(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn mark_is_required_unless_listing() {
        assert!(Options::try_parse_from(["ipft"]).is_err());
        assert!(Options::try_parse_from(["ipft", "-l"]).is_ok());
        let opts = Options::try_parse_from(["ipft", "-f", "udp port 53"]).unwrap();
        assert_eq!(
            (opts.mark, opts.filter.as_deref()),
            (None, Some("udp port 53"))
        );
        let opts = Options::try_parse_from(["ipft", "-m", "0x12", "--mask", "0xf0"]).unwrap();
        assert_eq!(opts.masked_mark(), 0x10);
    }

    #[test]
    fn a_filter_tracks_unless_told_not_to() {
        let tracks = |args: &[&str]| Options::try_parse_from(args).unwrap().tracks();
        assert!(tracks(&["ipft", "-f", "udp"]));
        assert!(!tracks(&["ipft", "-f", "udp", "--no-track"]));
        assert!(!tracks(&["ipft", "-m", "1"]));
        assert!(tracks(&["ipft", "-m", "1", "--track"]));
        assert!(Options::try_parse_from(["ipft", "-f", "udp", "--track", "--no-track"]).is_err());
        // A mask without a mark would be ignored: refused.
        assert!(Options::try_parse_from(["ipft", "-f", "udp", "--mask", "0xff"]).is_err());
    }

    #[test]
    fn namespaces_are_names_paths_or_inodes() {
        assert_eq!(parse_netns("blue"), Ok(Netns::Name("blue".into())));
        assert_eq!(parse_netns("ns-1.a"), Ok(Netns::Name("ns-1.a".into())));
        assert_eq!(
            parse_netns("/proc/42/ns/net"),
            Ok(Netns::Path("/proc/42/ns/net".into()))
        );
        assert_eq!(parse_netns("./ns"), Ok(Netns::Path("./ns".into())));
        assert_eq!(parse_netns("4026531840"), Ok(Netns::Inode(4026531840)));
        assert_eq!(parse_netns("4294967295"), Ok(Netns::Inode(u32::MAX)));
        for bad in ["", ".", "..", "0", "4294967296", "99999999999999999999"] {
            assert!(parse_netns(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn devices_are_names_or_indexes() {
        assert_eq!(parse_dev("eth0"), Ok(Device::Name("eth0".into())));
        assert_eq!(
            parse_dev("veth-a.100"),
            Ok(Device::Name("veth-a.100".into()))
        );
        assert_eq!(parse_dev("0eth"), Ok(Device::Name("0eth".into())));
        assert_eq!(
            parse_dev("fifteen-chars-x"),
            Ok(Device::Name("fifteen-chars-x".into()))
        );
        assert_eq!(parse_dev("1"), Ok(Device::Index(1)));
        assert_eq!(parse_dev("2147483647"), Ok(Device::Index(i32::MAX as u32)));
        for bad in [
            "",
            ".",
            "..",
            "sixteen-chars-xy",
            "a/b",
            "eth0:1",
            "a b",
            "0",
            "2147483648",
        ] {
            assert!(parse_dev(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn selectors_need_no_mark_and_track_by_default() {
        let parse = |args: &[&str]| Options::try_parse_from([&["ipft"], args].concat());
        for args in [&["--netns", "blue"][..], &["--dev", "eth0"]] {
            let opts = parse(args).unwrap();
            assert_eq!(opts.mark, None);
            assert!(opts.selects() && opts.tracks(), "{args:?}");
            let opts = parse(&[args, &["--no-track"]].concat()).unwrap();
            assert!(!opts.tracks(), "{args:?} --no-track");
        }
        let opts = parse(&["--netns", "7", "--dev", "3", "-f", "udp", "-m", "1"]).unwrap();
        assert_eq!(
            (opts.netns, opts.dev),
            (Some(Netns::Inode(7)), Some(Device::Index(3)))
        );
        assert!(parse(&["--dev", "a/b"]).is_err());
    }

    #[test]
    fn fentry_is_an_alias_of_ftrace() {
        let opts = Options::try_parse_from(["ipft", "-m", "1", "-b", "fentry"]).unwrap();
        assert_eq!(opts.backend, BackendChoice::Ftrace);
        let opts = Options::try_parse_from(["ipft", "-m", "1", "-t", "function_graph"]).unwrap();
        assert_eq!(opts.tracer, Tracer::FunctionGraph);
    }

    #[test]
    fn command_mode_takes_everything_after_double_dash() {
        let opts = Options::try_parse_from(["ipft", "-m", "1", "--", "ping", "-m", "1", "-c", "1"])
            .unwrap();
        assert_eq!(opts.command, ["ping", "-m", "1", "-c", "1"]);
        assert_eq!(opts.mark, Some(1));
    }

    #[test]
    fn probe_server_address_defaults_to_loopback() {
        assert_eq!(
            parse_listen("13720").unwrap().to_string(),
            "127.0.0.1:13720"
        );
        assert_eq!(
            parse_listen("0.0.0.0:99").unwrap().to_string(),
            "0.0.0.0:99"
        );
        assert!(parse_listen("localhost").is_err());
    }

    #[test]
    fn durations_are_positive_seconds() {
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["0", "-1", "x", "inf", "NaN"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kprobe_multi_is_a_backend() {
        for name in ["kprobe-multi", "kprobe_multi"] {
            let opts = Options::try_parse_from(["ipft", "-m", "1", "-b", name]).unwrap();
            assert_eq!(opts.backend, BackendChoice::KprobeMulti);
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Options::command().debug_assert();
    }

    #[test]
    fn write_takes_a_file_or_stdout_and_its_options() {
        let opts = Options::try_parse_from(["ipft", "-m", "1", "-w", "-"]).unwrap();
        assert_eq!(opts.write.as_deref(), Some(std::path::Path::new("-")));
        assert_eq!(opts.snaplen, 256);
        assert!(opts.capture_at.is_none());
        let opts = Options::try_parse_from([
            "ipft",
            "-m",
            "1",
            "--write",
            "t.pcapng",
            "--capture-at",
            "^ip_",
            "--snaplen",
            "64",
        ])
        .unwrap();
        let Some(CaptureAt::Matching(re)) = &opts.capture_at else {
            panic!("{:?}", opts.capture_at);
        };
        assert!(re.is_match("ip_rcv") && !re.is_match("udp_rcv"));
        assert_eq!(opts.snaplen, 64);
        let all = Options::try_parse_from(["ipft", "-m", "1", "-w", "f", "--capture-at", "all"]);
        assert!(matches!(all.unwrap().capture_at, Some(CaptureAt::All)));
        for bad in [
            &["--capture-at", "all"][..],
            &["-w", "f", "--snaplen", "0"],
            &["-w", "f", "--snaplen", "4097"],
            &["-w", "f", "--capture-at", "("],
        ] {
            let args = [&["ipft", "-m", "1"][..], bad].concat();
            assert!(Options::try_parse_from(&args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fields_take_the_kernel_names_and_dashes() {
        let opts = Options::try_parse_from([
            "ipft", "-m", "1", "--field", "data_len", "--field", "gso-size", "--field", "gso_type",
        ])
        .unwrap();
        assert_eq!(opts.field, [Field::DataLen, Field::GsoSize, Field::GsoType]);
        let names: Vec<String> = opts
            .field
            .iter()
            .map(|f| f.to_possible_value().unwrap().get_name().to_string())
            .collect();
        assert_eq!(names, ["data_len", "gso_size", "gso_type"]);
    }
}
