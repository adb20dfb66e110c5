//! The scenarios: which ipft runs each kernel gets, and how their output is
//! judged. Every verdict comes from parsed rows, never from exit codes alone.
use std::fmt::Write as _;

use ipft_tests::parse::{self, Packet, Row, Tracer};

use super::{capture, guest::CaseOutput};

/// The mark the guest's traffic carries (`ping -m 1431655765`).
pub const MARK: &str = "0x55555555";

/// Functions the loopback scenario needs, kept small so attaching is quick.
const LOOPBACK_RE: &str = "^(ip_output|ip6_output|ip_finish_output2?|__?dev_queue_xmit|dev_hard_start_xmit|loopback_xmit|__netif_rx|netif_rx|__netif_receive_skb.*|ip_rcv|ip_rcv_finish|ip_local_deliver|ip_local_deliver_finish|icmp_rcv|udp_rcv|consume_skb|kfree_skb.*|sk_skb_reason_drop|__kfree_skb)$";

/// Nested calls on the loopback path, plus consume_skb whose return comes
/// after the skb is freed.
const GRAPH_RE: &str = "^(ip_output|ip_finish_output2?|__dev_queue_xmit|dev_hard_start_xmit|loopback_xmit|__netif_receive_skb.*|ip_rcv|ip_rcv_finish|ip_local_deliver|ip_local_deliver_finish|icmp_rcv|consume_skb)$";

const FORWARD_RE: &str = "^(ip_rcv|ip_forward|ip_forward_finish|ip_output|__dev_queue_xmit|dev_hard_start_xmit|veth_xmit|__dev_forward_skb|skb_scrub_packet)$";

/// Delivery and drop functions, but none of the helpers a free calls, so
/// the drop must be the packet's last row.
const DROP_RE: &str = "^(__dev_queue_xmit|loopback_xmit|ip_rcv|ip_rcv_finish|ip_local_deliver|ip_local_deliver_finish|icmp_rcv|nf_hook_slow|kfree_skb|kfree_skb_reason|kfree_skb_list_reason|sk_skb_reason_drop|__kfree_skb|consume_skb)$";

/// UDP over loopback into its socket, or, with the port closed, into
/// UDP's drop and ICMP's answer; the socket's read frees it.
const UDP_RE: &str = "^(ip_output|__dev_queue_xmit|loopback_xmit|ip_rcv|ip_local_deliver|udp_rcv|__udp4_lib_rcv|udp_queue_rcv_one_skb|udp_queue_rcv_skb|__udp_enqueue_schedule_skb|skb_consume_udp|__consume_stateless_skb|icmp_send|__icmp_send|consume_skb|kfree_skb|kfree_skb_reason|sk_skb_reason_drop)$";

/// The ports of scenarios.sh: `UDP_CLOSED` (nobody listens) and
/// `UDP_BOUND` (socat reads).
const UDP_CLOSED: &str = "127.0.0.1:7779";
const UDP_BOUND: &str = "127.0.0.1:7780";

/// The VXLAN overlay's transmit (module functions where the backend offers
/// them), the underlay's UDP transmit after the scrub, and its receive.
const TUNNEL_RE: &str = "^(ip_output|__dev_queue_xmit|vxlan_xmit|vxlan_xmit_one|udp_tunnel_xmit_skb|iptunnel_xmit|skb_scrub_packet|ip_local_out|__ip_local_out|ip_finish_output2|veth_xmit|ip_rcv|udp_rcv|vxlan_rcv|consume_skb|kfree_skb.*|sk_skb_reason_drop)$";

/// The loopback path, plus the free of the skb's memory that tells ipft a
/// later skb at the same address is another packet.
const REUSE_RE: &str = "^(ip_output|__dev_queue_xmit|loopback_xmit|ip_rcv|ip_local_deliver|icmp_rcv|consume_skb|kfree_skb.*|sk_skb_reason_drop|kfree_skbmem)$";

/// Echo requests the reuse scenario sends: `REUSE_COUNT` in scenarios.sh.
const REUSE_COUNT: usize = 6;

/// A broadcast's path: ip_mc_output clones it for local delivery.
const CLONE_RE: &str = "^(ip_output|ip_mc_output|ip_mc_finish_output|skb_clone|__dev_queue_xmit|veth_xmit|dev_loopback_xmit|ip_rcv|icmp_rcv|consume_skb|kfree_skb.*|sk_skb_reason_drop)$";

/// `-f`: the selected flow (`SELECTED` in scenarios.sh); other traffic
/// runs beside it on the same path.
const SELECTED_FILTER: &str = "udp and dst port 7777";

/// Three namespaces, the middle one forwarding.
const SELECT_FORWARD_RE: &str =
    "^(ip_output|veth_xmit|ip_rcv|ip_forward|udp_rcv|consume_skb|kfree_skb.*|sk_skb_reason_drop)$";

const SELECT_FORWARD_STEPS: &[&[&str]] = &[
    &["ip_output"],
    &["veth_xmit"],
    &["ip_rcv"],
    &["ip_forward"],
    &["ip_output"],
    &["veth_xmit"],
    &["ip_rcv"],
    &["udp_rcv"],
];

/// The inner packet's send, the encapsulation, the veth crossing, the outer
/// receive and the decapsulation to the inner receive (whose IP receive is
/// ip_list_rcv from the GRO cells, not in the regex).
const SELECT_VXLAN_STEPS: &[&[&str]] = &[
    &["ip_output"],
    &["vxlan_xmit", "vxlan_xmit_one"],
    &["udp_tunnel_xmit_skb", "iptunnel_xmit"],
    &["ip_local_out", "__ip_local_out"],
    &["veth_xmit"],
    &["ip_rcv"],
    &["udp_rcv"],
    &["vxlan_rcv"],
    &["udp_rcv"],
];

/// IPv4 into SRv6 (seg6 encap through the route's lwtunnel output), the
/// veth crossing, the IPv6 receive, End.DX4 (seg6local input) and the inner
/// local delivery.
const SRV6_RE: &str = "^(ip_local_out|__ip_local_out|ip_output|lwtunnel_output|seg6_output|seg6_output_core|seg6_do_srh_encap|ip6_output|ip6_finish_output2|veth_xmit|ipv6_rcv|ip6_rcv_finish|lwtunnel_input|seg6_local_input|seg6_local_input_core|input_action_end_dx4|ip_rcv|ip_local_deliver|udp_rcv|consume_skb|kfree_skb.*|sk_skb_reason_drop)$";

const SRV6_STEPS: &[&[&str]] = &[
    &["ip_local_out", "__ip_local_out"],
    &["lwtunnel_output", "seg6_output*"],
    &["ip6_output", "ip6_finish_output2"],
    &["veth_xmit"],
    &["ipv6_rcv"],
    &[
        "lwtunnel_input",
        "seg6_local_input*",
        "input_action_end_dx4",
    ],
    &["ip_local_deliver"],
    &["udp_rcv"],
];

/// Loopback milestones in order: each step is a set of acceptable names
/// (kernels rename and inline these over time).
const LOOPBACK_STEPS: &[&[&str]] = &[
    &["ip_output", "ip6_output"],
    &["dev_queue_xmit", "__dev_queue_xmit"],
    &["loopback_xmit"],
    &["__netif_receive_skb*"],
    &["ip_rcv"],
    &["ip_local_deliver"],
    &["icmp_rcv", "udp_rcv"],
    &[
        "consume_skb",
        "kfree_skb*",
        "sk_skb_reason_drop",
        "__kfree_skb",
    ],
];

/// The same packet seen by the tracepoint backend: skb tracepoints only.
const TRACEPOINT_STEPS: &[&[&str]] = &[
    &["net_dev_queue"],
    &["net_dev_start_xmit", "net_dev_xmit"],
    &["netif_rx*", "netif_receive_skb*"],
    &["consume_skb", "kfree_skb"],
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Loopback,
    Graph,
    Forward,
    Drop,
    Auto,
    AutoGraph,
    /// function_graph through the nft drop: nf_hook_slow returns -EPERM.
    GraphErrno,
    Scale,
    /// The scale run with function_graph (entry and return links).
    ScaleGraph,
    /// VXLAN without `--track`: the packet is lost from view at the scrub.
    Untracked,
    /// VXLAN with `--track`: followed into the underlay's UDP transmit.
    Track,
    DropReason,
    /// The nft drop with `--stack=drops`.
    DropStack,
    /// UDP to a port nobody listens on: dropped, NO_SOCKET.
    UdpClosed,
    /// UDP to a bound socket that reads it: delivered.
    UdpBound,
    Reuse,
    Clone,
    /// VXLAN with `--track -w FILE --capture-at all`, read by tshark.
    Capture,
    /// VXLAN with `--track -w -` piped into `tshark -r -`.
    CaptureStream,
    /// `-f`, no mark: UDP through three namespaces.
    SelectForward,
    /// `-f`, no mark: UDP through a VXLAN tunnel between namespaces.
    SelectVxlan,
    /// `-f`, no mark: UDP over IPv4 through an SRv6 encapsulation.
    SelectSrv6,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Loopback => "loopback",
            Scenario::Graph => "function_graph",
            Scenario::Forward => "forward",
            Scenario::Drop => "drop",
            Scenario::Auto => "auto",
            Scenario::AutoGraph => "auto-graph",
            Scenario::GraphErrno => "graph-errno",
            Scenario::Scale => "scale",
            Scenario::ScaleGraph => "scale-graph",
            Scenario::Untracked => "no-track",
            Scenario::Track => "track",
            Scenario::DropReason => "drop-reason",
            Scenario::DropStack => "drop-stack",
            Scenario::UdpClosed => "udp-closed",
            Scenario::UdpBound => "udp-bound",
            Scenario::Reuse => "reuse",
            Scenario::Clone => "clone",
            Scenario::Capture => "pcapng",
            Scenario::CaptureStream => "pcapng-stream",
            Scenario::SelectForward => "select-forward",
            Scenario::SelectVxlan => "select-vxlan",
            Scenario::SelectSrv6 => "select-srv6",
        }
    }

    fn tracks(self) -> bool {
        matches!(
            self,
            Scenario::Track | Scenario::Clone | Scenario::Capture | Scenario::CaptureStream
        )
    }

    /// The guest needs socat (scenarios.sh's `udp_send`).
    pub fn sends_udp(self) -> bool {
        matches!(self, Scenario::UdpClosed | Scenario::UdpBound)
    }

    /// How cases.sh hands the pcapng to tshark: `capture_case file|stream`.
    fn capture(self) -> Option<&'static str> {
        match self {
            Scenario::Capture => Some("file"),
            Scenario::CaptureStream => Some("stream"),
            _ => None,
        }
    }
}

/// One ipft run in the guest.
#[derive(Clone, Debug)]
pub struct Case {
    pub scenario: Scenario,
    pub backend: &'static str,
    pub json: bool,
    /// Seconds for `Trace ready!`, and again for the exit after SIGINT.
    pub timeout: u32,
}

impl Case {
    pub fn new(scenario: Scenario, backend: &'static str, json: bool) -> Case {
        Case {
            scenario,
            backend,
            json,
            timeout: 180,
        }
    }

    pub fn id(&self) -> String {
        format!(
            "{}-{}-{}",
            self.scenario.name(),
            self.backend,
            self.format()
        )
    }

    pub fn format(&self) -> &'static str {
        if self.json {
            "json"
        } else {
            "aggregate"
        }
    }

    fn graph(&self) -> bool {
        matches!(
            self.scenario,
            Scenario::Graph | Scenario::AutoGraph | Scenario::GraphErrno | Scenario::ScaleGraph
        )
    }

    /// `-f` selects these scenarios' packets; the others' are marked.
    fn selects(&self) -> bool {
        matches!(
            self.scenario,
            Scenario::SelectForward | Scenario::SelectVxlan | Scenario::SelectSrv6
        )
    }

    /// ipft's command line.
    pub fn args(&self) -> Vec<String> {
        let selector = match self.selects() {
            true => ["-f", SELECTED_FILTER],
            false => ["-m", MARK],
        };
        let mut args = selector.to_vec();
        args.extend(["-b", self.backend, "-o", self.format()]);
        if self.graph() {
            args.extend(["-t", "function_graph"]);
        }
        if self.scenario.tracks() {
            args.push("--track");
        }
        if self.scenario == Scenario::DropStack {
            args.push("--stack=drops");
        }
        // The tunnel's judge reads which functions could not be attached.
        if matches!(self.scenario, Scenario::Untracked | Scenario::Track) {
            args.push("-v");
        }
        let regex = match self.scenario {
            // There are only ~30 skb tracepoints: attach them all.
            Scenario::Loopback if self.backend == "tracepoint" => None,
            Scenario::Loopback | Scenario::Auto => Some(LOOPBACK_RE),
            Scenario::Graph | Scenario::AutoGraph => Some(GRAPH_RE),
            Scenario::Forward => Some(FORWARD_RE),
            Scenario::Drop | Scenario::DropReason | Scenario::DropStack | Scenario::GraphErrno => {
                Some(DROP_RE)
            }
            Scenario::UdpClosed | Scenario::UdpBound => Some(UDP_RE),
            Scenario::Scale | Scenario::ScaleGraph => None,
            Scenario::Untracked | Scenario::Track => Some(TUNNEL_RE),
            Scenario::Capture | Scenario::CaptureStream => Some(TUNNEL_RE),
            Scenario::Reuse => Some(REUSE_RE),
            Scenario::Clone => Some(CLONE_RE),
            Scenario::SelectForward => Some(SELECT_FORWARD_RE),
            Scenario::SelectVxlan => Some(TUNNEL_RE),
            Scenario::SelectSrv6 => Some(SRV6_RE),
        };
        if let Some(re) = regex {
            args.extend(["-r", re]);
        }
        let mut args: Vec<String> = args.into_iter().map(str::to_string).collect();
        match self.scenario {
            // cases.sh reads this file once ipft exits.
            Scenario::Capture => args.extend([
                "-w".into(),
                format!("/tmp/cases/{}/capture.pcapng", self.id()),
                "--capture-at".into(),
                "all".into(),
            ]),
            Scenario::CaptureStream => args.extend(["-w".into(), "-".into()]),
            _ => {}
        }
        args
    }

    /// Setup, traffic and teardown functions of tests/vm/scenarios.sh.
    pub fn steps(&self) -> [&'static str; 3] {
        match self.scenario {
            Scenario::Forward => ["forward_setup", "forward_ping", "forward_teardown"],
            Scenario::Drop | Scenario::DropReason | Scenario::DropStack | Scenario::GraphErrno => {
                ["drop_setup", "ping_lo_dropped", "drop_teardown"]
            }
            Scenario::UdpClosed => ["none", "udp_closed", "none"],
            Scenario::UdpBound => ["udp_bound_setup", "udp_bound", "udp_bound_teardown"],
            Scenario::Untracked | Scenario::Track | Scenario::Capture | Scenario::CaptureStream => {
                ["vxlan_setup", "vxlan_ping", "vxlan_teardown"]
            }
            Scenario::Reuse => ["none", "ping_lo_repeat", "none"],
            Scenario::Clone => ["broadcast_setup", "broadcast_ping", "broadcast_teardown"],
            Scenario::SelectForward => [
                "select_forward_setup",
                "select_forward_traffic",
                "forward_teardown",
            ],
            Scenario::SelectVxlan => ["vxlan_setup", "select_vxlan_traffic", "vxlan_teardown"],
            Scenario::SelectSrv6 => ["srv6_setup", "srv6_traffic", "srv6_teardown"],
            _ => ["none", "ping_lo", "none"],
        }
    }

    /// The line of /vm/cases that runs this case.
    pub fn shell(&self) -> String {
        let [setup, traffic, teardown] = self.steps();
        // Steps get the backend: forward_setup lists what it can trace.
        let runner = match self.scenario.capture() {
            Some(how) => format!("capture_case {how}"),
            None => "run_case".into(),
        };
        let mut line = format!(
            "{runner} {} {} '{setup} {b}' '{traffic} {b}' '{teardown} {b}'",
            self.id(),
            self.timeout,
            b = self.backend
        );
        for a in self.args() {
            write!(line, " '{}'", a.replace('\'', r"'\''")).unwrap();
        }
        line
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    /// Not a failure: the kernel or ipft lacks what the row needs, and says so.
    NotApplicable,
}

#[derive(Clone, Debug)]
pub struct Verdict {
    pub status: Status,
    pub reason: String,
}

impl Verdict {
    pub fn pass(reason: impl Into<String>) -> Verdict {
        Verdict {
            status: Status::Pass,
            reason: reason.into(),
        }
    }
    pub fn fail(reason: impl Into<String>) -> Verdict {
        Verdict {
            status: Status::Fail,
            reason: reason.into(),
        }
    }
    pub fn na(reason: impl Into<String>) -> Verdict {
        Verdict {
            status: Status::NotApplicable,
            reason: reason.into(),
        }
    }

    /// This verdict and, when it passes, `next`'s: a pass says both.
    fn and(self, next: impl FnOnce() -> Verdict) -> Verdict {
        if self.status != Status::Pass {
            return self;
        }
        let next = next();
        match next.status {
            Status::Pass => Verdict::pass(format!("{}; {}", self.reason, next.reason)),
            _ => next,
        }
    }
}

/// What the kernel offers, from its build configuration.
#[derive(Clone, Debug, Default)]
pub struct Features {
    pub kprobe: bool,
    pub kprobe_multi: bool,
    pub ftrace: bool,
    pub tracepoint: bool,
}

impl Features {
    pub fn from_config(config: &str) -> Features {
        let on = |opt: &str| config.lines().any(|l| l == format!("CONFIG_{opt}=y"));
        Features {
            kprobe: on("KPROBES") && on("KPROBE_EVENTS"),
            kprobe_multi: on("FPROBE"),
            ftrace: on("DYNAMIC_FTRACE_WITH_DIRECT_CALLS") && on("DEBUG_INFO_BTF"),
            tracepoint: on("DEBUG_INFO_BTF"),
        }
    }

    pub fn has(&self, backend: &str) -> bool {
        match backend {
            "kprobe" => self.kprobe,
            "kprobe-multi" => self.kprobe_multi,
            "ftrace" => self.ftrace,
            "tracepoint" => self.tracepoint,
            _ => false,
        }
    }
}

/// Judges one finished case.
pub fn judge(case: &Case, out: &CaseOutput, features: &Features, implemented: &[&str]) -> Verdict {
    if !features.has(case.backend) && case.backend != "auto" {
        return judge_refusal(case, out);
    }
    if let Some(v) = ran(out) {
        return v;
    }
    match case.scenario {
        Scenario::Capture => return with_ready(capture::every_row(out), out),
        Scenario::CaptureStream => return with_ready(capture::streamed(out), out),
        _ => {}
    }
    let tracer = match case.graph() {
        true => Tracer::FunctionGraph,
        false => Tracer::Function,
    };
    let groups = match case.json {
        true => parse::json(&out.stdout),
        false => parse::table(&out.stdout, tracer),
    };
    let groups = match groups {
        Ok(g) => g,
        Err(e) => return Verdict::fail(format!("unparsable {} output: {e}", case.format())),
    };
    let verdict = match case.scenario {
        Scenario::Loopback if case.backend == "tracepoint" => tracepoints(&groups, !case.json),
        Scenario::Loopback => loopback(&groups, !case.json),
        Scenario::Graph => graph(&groups, case.json).and(|| returns_loopback(&groups)),
        Scenario::GraphErrno => graph(&groups, case.json).and(|| returns_errno(&groups)),
        Scenario::Forward => forward(&groups, case.json),
        Scenario::Drop => drop(&groups),
        Scenario::Auto => auto(out, &groups, features, implemented, false),
        Scenario::AutoGraph => auto(out, &groups, features, implemented, true),
        Scenario::Scale => scale(out, &groups),
        Scenario::ScaleGraph => scale(out, &groups).and(|| graph(&groups, false)),
        Scenario::Untracked => tunnel(&groups, false, &out.stderr),
        Scenario::Track => tunnel(&groups, true, &out.stderr),
        Scenario::DropReason => drop_reason(&groups),
        Scenario::DropStack => drop_stack(&groups),
        Scenario::UdpClosed => udp_closed(&groups),
        Scenario::UdpBound => udp_bound(&groups, &out.log),
        Scenario::Reuse => reuse(&groups),
        Scenario::Clone => clone_of(&groups, case.json),
        Scenario::SelectForward => selected(&groups, "10.0.2.2", SELECT_FORWARD_STEPS),
        Scenario::SelectVxlan => selected(&groups, "10.0.4.2", SELECT_VXLAN_STEPS),
        Scenario::SelectSrv6 => selected(&groups, "10.0.8.1", SRV6_STEPS),
        Scenario::Capture | Scenario::CaptureStream => unreachable!("judged above"),
    };
    if matches!(case.scenario, Scenario::Scale | Scenario::ScaleGraph) {
        return verdict;
    }
    with_ready(verdict, out)
}

/// A pass says how long ipft took to be ready.
fn with_ready(verdict: Verdict, out: &CaseOutput) -> Verdict {
    if verdict.status != Status::Pass {
        return verdict;
    }
    let ready = out.ready_ms.unwrap_or(0) as f64 / 1000.0;
    Verdict::pass(format!("{}; ready {ready:.1} s", verdict.reason))
}

/// A run that did not reach `Trace ready!`, or did not exit 0 on SIGINT.
fn ran(out: &CaseOutput) -> Option<Verdict> {
    if !out.complete {
        return Some(Verdict::fail(format!(
            "the guest stopped during this case ({})",
            if out.stage.is_empty() {
                "before ipft started"
            } else {
                &out.stage
            }
        )));
    }
    if out.ready_ms.is_none() {
        return Some(Verdict::fail(format!(
            "never printed `Trace ready!` (exit {}): {}",
            exit_text(out),
            first_error(&out.stderr)
        )));
    }
    if out.exit != Some(0) {
        return Some(Verdict::fail(format!(
            "exit {} after SIGINT, expected 0",
            exit_text(out)
        )));
    }
    None
}

fn exit_text(out: &CaseOutput) -> String {
    out.exit.map_or("?".into(), |c| c.to_string())
}

/// A backend the kernel lacks must be refused clearly, not half-attached.
fn judge_refusal(case: &Case, out: &CaseOutput) -> Verdict {
    if out.ready_ms.is_none() && out.exit.is_some_and(|c| c != 0) && !out.stderr.trim().is_empty() {
        return Verdict::na(format!(
            "kernel lacks {}; ipft refused: {}",
            case.backend,
            first_error(&out.stderr)
        ));
    }
    Verdict::fail(format!(
        "kernel lacks {} but ipft did not refuse it clearly (exit {})",
        case.backend,
        exit_text(out)
    ))
}

fn first_error(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.to_lowercase().contains("error"))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("(no stderr)");
    shorten(line.trim(), 160)
}

pub fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let cut: String = s.chars().take(n).collect();
    format!("{cut}…")
}

fn matches(name: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

fn any_match(name: &str, patterns: &[&str]) -> bool {
    patterns.iter().any(|p| matches(name, p))
}

/// Entry rows only: the function tracer has no returns, function_graph has.
fn entries(g: &Packet) -> Vec<&Row> {
    g.rows.iter().filter(|r| !r.is_return).collect()
}

fn summary(groups: &[Packet]) -> String {
    let seen: Vec<String> = groups
        .iter()
        .map(|g| {
            entries(g)
                .iter()
                .map(|r| r.function.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    shorten(
        &format!("{} group(s): [{}]", groups.len(), seen.join("] [")),
        300,
    )
}

fn loopback(groups: &[Packet], aggregate: bool) -> Verdict {
    in_order(groups, "loopback_xmit", LOOPBACK_STEPS, aggregate)
        .map(|n| Verdict::pass(format!("{n} rows, TX→loopback_xmit→RX→free in order")))
        .unwrap_or_else(Verdict::fail)
}

fn tracepoints(groups: &[Packet], aggregate: bool) -> Verdict {
    in_order(groups, "net_dev_queue", TRACEPOINT_STEPS, aggregate)
        .map(|n| {
            Verdict::pass(format!(
                "{n} rows, net_dev_queue→xmit→receive→free in order"
            ))
        })
        .unwrap_or_else(Verdict::fail)
}

/// Finds the packet that went through `anchor` and checks it passed every
/// step in order (other rows may come between); returns its row count.
fn in_order(
    groups: &[Packet],
    anchor: &str,
    steps: &[&[&str]],
    aggregate: bool,
) -> Result<usize, String> {
    let Some(g) = groups
        .iter()
        .find(|g| g.rows.iter().any(|r| r.function == anchor))
    else {
        return Err(format!(
            "no packet went through {anchor}; {}",
            summary(groups)
        ));
    };
    if aggregate {
        if let Some(w) = g.rows.windows(2).find(|w| w[1].tstamp < w[0].tstamp) {
            return Err(format!(
                "rows out of timestamp order: {} then {}",
                w[0].tstamp, w[1].tstamp
            ));
        }
    }
    let rows = entries(g);
    let mut at = 0;
    for step in steps {
        match rows[at..].iter().position(|r| any_match(&r.function, step)) {
            Some(i) => at += i + 1,
            None => {
                return Err(format!(
                    "missing {} (in order) in the packet: {}",
                    step.join("|"),
                    shorten(&g.functions().join(","), 300)
                ))
            }
        }
    }
    Ok(g.rows.len())
}

/// function_graph: entries and returns pair up, indentation follows depth.
fn graph(groups: &[Packet], json: bool) -> Verdict {
    if groups.is_empty() {
        return Verdict::fail("no packet traced");
    }
    let mut deepest = 0;
    for g in groups {
        let mut stack: Vec<&str> = Vec::new();
        for r in &g.rows {
            if r.is_return {
                let Some(open) = stack.pop() else {
                    return Verdict::fail(format!(
                        "return at depth 0 (negative depth) in {}",
                        shorten(&g.functions().join(","), 200)
                    ));
                };
                if json && r.function != open {
                    return Verdict::fail(format!("return of {} while {open} is open", r.function));
                }
            } else {
                stack.push(&r.function);
            }
            let depth = if r.is_return {
                stack.len()
            } else {
                stack.len() - 1
            };
            if !json && r.indent != 2 * depth {
                return Verdict::fail(format!(
                    "{} indented {} spaces at depth {depth}",
                    display(r),
                    r.indent
                ));
            }
            deepest = deepest.max(stack.len());
        }
        if let Some(open) = stack.last() {
            return Verdict::fail(format!(
                "{open} (and {} more) entered but never returned",
                stack.len() - 1
            ));
        }
    }
    if deepest < 2 {
        return Verdict::fail(format!(
            "no nesting shown (max depth {deepest}); {}",
            summary(groups)
        ));
    }
    let rows: usize = groups.iter().map(|g| g.rows.len()).sum();
    Verdict::pass(format!("{rows} rows balanced, max depth {deepest}"))
}

/// function_graph on the loopback ping: int functions show their value
/// (the echo request is delivered: 0), void ones none.
fn returns_loopback(groups: &[Packet]) -> Verdict {
    let all: Vec<(String, Option<String>)> = groups
        .iter()
        .flat_map(|g| parse::returns(&g.rows))
        .collect();
    let value = |name: &str| {
        all.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    };
    let expected = [
        ("ip_rcv", Some("0")),
        ("icmp_rcv", Some("0")),
        ("consume_skb", None),
    ];
    for (name, want) in expected {
        if value(name) != Some(want) {
            return Verdict::fail(format!(
                "{name} returned {:?}, expected {want:?}; returns: {}",
                value(name),
                shorten(&format!("{all:?}"), 300)
            ));
        }
    }
    Verdict::pass("ip_rcv = 0, icmp_rcv = 0, consume_skb (void)")
}

/// function_graph through the nft drop: the hook's verdict comes back as
/// nf_hook_slow's `-1 EPERM`.
fn returns_errno(groups: &[Packet]) -> Verdict {
    let all: Vec<(String, Option<String>)> = groups
        .iter()
        .flat_map(|g| parse::returns(&g.rows))
        .collect();
    let found = all
        .iter()
        .any(|(n, v)| n == "nf_hook_slow" && v.as_deref() == Some("-1 EPERM"));
    match found {
        true => Verdict::pass("nf_hook_slow = -1 EPERM"),
        false => Verdict::fail(format!(
            "no nf_hook_slow return of -1 EPERM; returns: {}",
            shorten(&format!("{all:?}"), 300)
        )),
    }
}

fn display(r: &Row) -> String {
    if r.is_return {
        "}".into()
    } else {
        format!("{}()", r.function)
    }
}

fn forward(groups: &[Packet], json: bool) -> Verdict {
    let Some(g) = groups
        .iter()
        .find(|g| g.rows.iter().any(|r| r.function == "ip_forward"))
    else {
        return Verdict::fail(format!(
            "no packet went through ip_forward; {}",
            summary(groups)
        ));
    };
    let rows = entries(g);
    let fwd = rows
        .iter()
        .position(|r| r.function == "ip_forward")
        .unwrap_or(0);
    let Some(veth) = rows[fwd..].iter().find(|r| r.function == "veth_xmit") else {
        return Verdict::fail(format!(
            "no veth_xmit after ip_forward: {}",
            shorten(&g.functions().join(","), 300)
        ));
    };
    if veth.module != "veth" {
        return Verdict::fail(format!(
            "veth_xmit shown with module {:?}, expected \"veth\" (module BTF)",
            veth.module
        ));
    }
    // Forwarded out of ns2 on v23; veth_xmit takes it into ns3, where the
    // mark is gone: never freed in view, so json (a fate on the freeing
    // line) has none.
    match (g.fate.as_deref(), json) {
        (Some("forwarded out v23"), _) | (None, true) => {}
        (fate, _) => {
            return Verdict::fail(format!("fate {fate:?}, expected \"forwarded out v23\""))
        }
    }
    Verdict::pass(format!(
        "ip_forward then veth_xmit [veth], {} rows; {}",
        g.rows.len(),
        g.fate
            .as_deref()
            .unwrap_or("no fate in json: not freed in view")
    ))
}

/// Functions that drop a packet (6.12 turned kfree_skb_reason into an
/// inline wrapper of sk_skb_reason_drop); kfree_skbmem only frees memory.
fn is_kfree(name: &str) -> bool {
    matches!(
        name,
        "kfree_skb"
            | "kfree_skb_reason"
            | "kfree_skb_list_reason"
            | "sk_skb_reason_drop"
            | "__kfree_skb"
    )
}

fn drop(groups: &[Packet]) -> Verdict {
    let Some(g) = groups
        .iter()
        .find(|g| g.rows.iter().any(|r| is_kfree(&r.function)))
    else {
        return Verdict::fail(format!(
            "no packet reached a kfree_skb-family function; {}",
            summary(groups)
        ));
    };
    let rows = entries(g);
    let n = rows.len();
    let names: Vec<&str> = rows.iter().map(|r| r.function.as_str()).collect();
    if n < 2 || names[n - 2] != "nf_hook_slow" || !is_kfree(names[n - 1]) {
        return Verdict::fail(format!(
            "last rows are not nf_hook_slow, kfree_skb…: {}",
            shorten(&names.join(","), 300)
        ));
    }
    Verdict::pass(format!("ends nf_hook_slow → {}", names[n - 1]))
}

/// The VXLAN packet: iptunnel_xmit scrubs it (the mark is cleared: the
/// tunnel crosses namespaces). Without `--track` nothing follows the scrub;
/// with it, the same packet goes on through the underlay's IP output and is
/// received as UDP on the other side. `stderr` is ipft's `-v` output: 6.1's
/// fentry takes at most 6 arguments, iptunnel_xmit has 10.
fn tunnel(groups: &[Packet], tracked: bool, stderr: &str) -> Verdict {
    let unattached = stderr.contains("cannot attach iptunnel_xmit ");
    // The packet's first scrub is the tunnel's (crossing the veth comes later).
    let scrubbed = groups.iter().find_map(|g| {
        let rows = entries(g);
        let start = match rows.iter().position(|r| r.function == "iptunnel_xmit") {
            Some(i) => i,
            None if unattached => rows.iter().position(|r| r.function == "__dev_queue_xmit")?,
            None => return None,
        };
        let scrub = rows[start..]
            .iter()
            .position(|r| r.function == "skb_scrub_packet")?;
        Some((g, rows, start + scrub))
    });
    let Some((g, rows, scrub)) = scrubbed else {
        return Verdict::fail(format!(
            "no packet went through iptunnel_xmit then skb_scrub_packet; {}",
            summary(groups)
        ));
    };
    let after: Vec<&str> = rows[scrub + 1..]
        .iter()
        .map(|r| r.function.as_str())
        .collect();
    let names = || {
        let seen = shorten(&g.functions().join(","), 300);
        match unattached {
            true => format!("{seen} (iptunnel_xmit could not be attached)"),
            false => seen,
        }
    };
    if !tracked {
        return match after.is_empty() {
            true => Verdict::pass(format!("ends at skb_scrub_packet: {}", names())),
            false => Verdict::fail(format!(
                "rows after skb_scrub_packet without --track: {}",
                names()
            )),
        };
    }
    let out = after
        .iter()
        .position(|f| matches!(*f, "ip_local_out" | "__ip_local_out"));
    let received = out.and_then(|i| after[i..].iter().position(|f| *f == "udp_rcv"));
    match received {
        Some(_) => Verdict::pass(format!(
            "past skb_scrub_packet into ip_local_out … udp_rcv: {}",
            names()
        )),
        None => Verdict::fail(format!(
            "no ip_local_out then udp_rcv after skb_scrub_packet: {}",
            names()
        )),
    }
}

/// `-f` with other traffic beside the selected flow: every traced packet
/// is UDP to `to`:7777 (the pings and the UDP to 7778 stay out), and one
/// of them went through every step in order, however its headers changed.
fn selected(groups: &[Packet], to: &str, steps: &[&[&str]]) -> Verdict {
    let flow = format!(" -> {to}:7777 ");
    let other = groups.iter().find(|g| {
        let said = g.summary.as_deref().unwrap_or_default();
        !(said.starts_with("UDP ") && said.contains(&flow))
    });
    if let Some(g) = other {
        return Verdict::fail(format!(
            "a packet the filter does not select was traced: {:?} [{}]",
            g.summary,
            shorten(&g.functions().join(","), 200)
        ));
    }
    let followed = groups.iter().find_map(|g| {
        let rows = entries(g);
        let mut at = 0;
        for step in steps {
            at += rows[at..]
                .iter()
                .position(|r| any_match(&r.function, step))?
                + 1;
        }
        Some(g)
    });
    match followed {
        Some(g) => Verdict::pass(format!(
            "{} packet(s), all UDP to {to}:7777; followed: {}",
            groups.len(),
            shorten(&g.functions().join(","), 300)
        )),
        None => {
            let wanted: Vec<String> = steps.iter().map(|s| s.join("|")).collect();
            Verdict::fail(format!(
                "no packet went through {} in order; {}",
                wanted.join(","),
                summary(groups)
            ))
        }
    }
}

/// The drop names its reason: netfilter's verdict.
fn drop_reason(groups: &[Packet]) -> Verdict {
    let dropped = groups
        .iter()
        .flat_map(|g| entries(g))
        .find(|r| is_kfree(&r.function) && r.drop_reason.is_some());
    match dropped {
        Some(r) if r.drop_reason.as_deref() == Some("NETFILTER_DROP") => {
            let fate = groups.iter().find_map(|g| g.fate.as_deref());
            match fate.filter(|f| dropped_by_netfilter(f)) {
                Some(fate) => Verdict::pass(format!(
                    "{} (drop: NETFILTER_DROP); fate: {fate}",
                    r.function
                )),
                None => Verdict::fail(format!(
                    "fate {fate:?}, expected \"dropped at nf_hook_slow+… (NETFILTER_DROP)\" or nft_do_chain"
                )),
            }
        }
        Some(r) => Verdict::fail(format!(
            "{} dropped with reason {:?}, expected NETFILTER_DROP",
            r.function, r.drop_reason
        )),
        None => Verdict::fail(format!(
            "no kfree_skb-family row with a drop reason; {}",
            summary(groups)
        )),
    }
}

/// `dropped at CALLER (NETFILTER_DROP)` with the caller in netfilter's hook
/// (`nf_hook_slow`, 6.1) or nf_tables' chain (`nf_tables:nft_do_chain`,
/// newer kernels drop there).
fn dropped_by_netfilter(fate: &str) -> bool {
    dropped_at(fate, "NETFILTER_DROP")
        .is_some_and(|f| f.starts_with("nf_hook_slow") || f.starts_with("nft_do_chain"))
}

/// The function of CALLER in a fate `dropped at CALLER (REASON)`, where
/// CALLER is `[module:]function+0xOFFSET`.
fn dropped_at<'a>(fate: &'a str, reason: &str) -> Option<&'a str> {
    let caller = fate
        .strip_prefix("dropped at ")?
        .strip_suffix(&format!(" ({reason})"))?;
    caller.contains("+0x").then(|| frame_function(caller))
}

/// `nf_tables:nft_do_chain+0x47f` → `nft_do_chain`.
fn frame_function(frame: &str) -> &str {
    let function = frame.split('+').next().unwrap_or_default();
    function.rsplit(':').next().unwrap_or_default()
}

/// `--stack=drops` on the nft drop: the drop row, and no other, shows its
/// kernel stack, which goes from the freeing function out through
/// nf_hook_slow.
fn drop_stack(groups: &[Packet]) -> Verdict {
    let rows: Vec<&Row> = groups.iter().flat_map(|g| entries(g)).collect();
    let dropping = |r: &Row| is_kfree(&r.function) && r.drop_reason.is_some();
    let Some(drop) = rows.iter().find(|r| dropping(r)) else {
        return Verdict::fail(format!(
            "no kfree_skb-family row with a drop reason; {}",
            summary(groups)
        ));
    };
    if drop.drop_reason.as_deref() != Some("NETFILTER_DROP") {
        return Verdict::fail(format!(
            "{} dropped with reason {:?}, expected NETFILTER_DROP",
            drop.function, drop.drop_reason
        ));
    }
    if let Some(r) = rows.iter().find(|r| !r.stack.is_empty() && !dropping(r)) {
        return Verdict::fail(format!(
            "{} (no drop) has a stack, but --stack=drops shows drop rows only: {}",
            r.function,
            shorten(&r.stack.join(" ← "), 300)
        ));
    }
    let frames: Vec<&str> = drop.stack.iter().map(|f| frame_function(f)).collect();
    let freeing = frames
        .iter()
        .position(|f| *f == drop.function || is_kfree(f));
    let hook = freeing.and_then(|i| frames[i + 1..].iter().position(|f| *f == "nf_hook_slow"));
    let stack = shorten(&drop.stack.join(" ← "), 400);
    match (freeing, hook) {
        (Some(i), Some(h)) => Verdict::pass(format!(
            "{}'s stack: {} ← … ({} frames)",
            drop.function,
            drop.stack[i..=i + 1 + h].join(" ← "),
            frames.len()
        )),
        (None, _) => Verdict::fail(format!(
            "{}'s stack has no kfree_skb-family frame: [{stack}]",
            drop.function
        )),
        (Some(i), None) => Verdict::fail(format!(
            "{}'s stack has no nf_hook_slow under {}: [{stack}]",
            drop.function, frames[i]
        )),
    }
}

/// The one packet of the UDP datagram to `to`, by its summary line.
fn udp_packet<'a>(groups: &'a [Packet], to: &str) -> Result<&'a Packet, Verdict> {
    let flow = format!(" -> {to} ");
    let mut sent = groups.iter().filter(|g| {
        let said = g.summary.as_deref().unwrap_or_default();
        said.starts_with("UDP ") && said.contains(&flow)
    });
    match (sent.next(), sent.next()) {
        (Some(g), None) => Ok(g),
        (None, _) => Err(Verdict::fail(format!(
            "no packet of UDP to {to}; summaries {:?}; {}",
            groups.iter().map(|g| &g.summary).collect::<Vec<_>>(),
            summary(groups)
        ))),
        (Some(_), Some(_)) => Err(Verdict::fail(format!(
            "more than one packet of UDP to {to} for one datagram; {}",
            summary(groups)
        ))),
    }
}

/// UDP to a closed port: UDP's receive drops it with NO_SOCKET, and the
/// fate names the caller of the freeing call there (`__udp4_lib_rcv+0x…`)
/// as the drop row does.
fn udp_closed(groups: &[Packet]) -> Verdict {
    let g = match udp_packet(groups, UDP_CLOSED) {
        Ok(g) => g,
        Err(v) => return v,
    };
    let names = || shorten(&g.functions().join(","), 300);
    let rows = entries(g);
    let Some(drop) = rows.iter().find(|r| r.drop_reason.is_some()) else {
        return Verdict::fail(format!("no row with a drop reason: {}", names()));
    };
    if !is_kfree(&drop.function) || drop.drop_reason.as_deref() != Some("NO_SOCKET") {
        return Verdict::fail(format!(
            "{} (drop: {:?}), expected a kfree_skb-family row with NO_SOCKET: {}",
            drop.function,
            drop.drop_reason,
            names()
        ));
    }
    let fate = g.fate.as_deref().unwrap_or_default();
    let by_udp =
        dropped_at(fate, "NO_SOCKET").is_some_and(|f| matches!(f, "__udp4_lib_rcv" | "udp_rcv"));
    if !by_udp {
        return Verdict::fail(format!(
            "fate {:?}, expected \"dropped at __udp4_lib_rcv+0x… (NO_SOCKET)\" (or udp_rcv): {}",
            g.fate,
            names()
        ));
    }
    if let Some(caller) = &drop.caller {
        if fate != format!("dropped at {caller} (NO_SOCKET)") {
            return Verdict::fail(format!(
                "fate {fate:?}, but the drop row's caller is {caller}"
            ));
        }
    }
    Verdict::pass(format!("{} (drop: NO_SOCKET); fate: {fate}", drop.function))
}

/// UDP to a socket that reads it: queued on the socket, read, freed:
/// `delivered to UDP socket`; the reader (socat) got the bytes.
fn udp_bound(groups: &[Packet], log: &str) -> Verdict {
    let g = match udp_packet(groups, UDP_BOUND) {
        Ok(g) => g,
        Err(v) => return v,
    };
    if g.fate.as_deref() != Some("delivered to UDP socket") {
        return Verdict::fail(format!(
            "fate {:?}, expected \"delivered to UDP socket\": {}",
            g.fate,
            shorten(&g.functions().join(","), 300)
        ));
    }
    if !log.lines().any(|l| l == "received: ipft-udp") {
        return Verdict::fail(format!(
            "fate delivered, but socat did not read the datagram: {}",
            shorten(log.trim(), 300)
        ));
    }
    Verdict::pass(format!(
        "fate: delivered to UDP socket; read by socat; {}",
        shorten(&g.functions().join(","), 120)
    ))
}

/// Pings in sequence over loopback: one packet per echo request, each from
/// the send path to its own kfree_skbmem, with distinct `packet` numbers
/// although the kernel handed the same skb memory out again.
fn reuse(groups: &[Packet]) -> Verdict {
    if groups.len() != REUSE_COUNT {
        return Verdict::fail(format!(
            "{} packets for {REUSE_COUNT} echo requests; {}",
            groups.len(),
            summary(groups)
        ));
    }
    for g in groups {
        let names = g.functions();
        if names.first() != Some(&"ip_output") || names.last() != Some(&"kfree_skbmem") {
            return Verdict::fail(format!(
                "a packet does not run from ip_output to kfree_skbmem: {}",
                shorten(&names.join(","), 300)
            ));
        }
    }
    let numbers: std::collections::BTreeSet<_> = groups.iter().map(|g| g.packet).collect();
    if numbers.len() != groups.len() || numbers.contains(&None) {
        return Verdict::fail(format!("packet numbers not distinct: {numbers:?}"));
    }
    let ids: std::collections::BTreeSet<_> = groups
        .iter()
        .map(|g| g.rows[0].packet_id.as_str())
        .collect();
    if ids.len() == groups.len() {
        return Verdict::fail(format!(
            "the kernel never reused an skb in {REUSE_COUNT} pings (all packet_id distinct): nothing shown"
        ));
    }
    Verdict::pass(format!(
        "{} packets ip_output→kfree_skbmem, distinct numbers on {} skb addresses",
        groups.len(),
        ids.len()
    ))
}

/// `--track` on a broadcast: the looped-back clone is a packet of its own
/// that names the original (aggregate: by its first timestamp; json: by
/// its `packet` number).
fn clone_of(groups: &[Packet], json: bool) -> Verdict {
    const CLONE_OF: &str = "(clone of the packet first seen at ";
    let parent_of = |g: &Packet| -> Option<&Packet> {
        if json {
            let parent = g.parent?;
            groups.iter().find(|p| p.packet == Some(parent))
        } else {
            let at = g.summary.as_deref()?.split_once(CLONE_OF)?.1;
            let ts: u64 = at.strip_suffix(')')?.parse().ok()?;
            groups
                .iter()
                .find(|p| p.rows.first().map(|r| r.tstamp) == Some(ts))
        }
    };
    let found = groups.iter().find_map(|g| {
        parent_of(g)
            .filter(|p| !std::ptr::eq(*p, g))
            .map(|p| (g, p))
    });
    let Some((clone, parent)) = found else {
        let said: Vec<&str> = groups.iter().filter_map(|g| g.summary.as_deref()).collect();
        return Verdict::fail(format!(
            "no packet names another as its parent (summaries: {said:?}); {}",
            summary(groups)
        ));
    };
    Verdict::pass(format!(
        "clone [{}] of [{}]",
        shorten(&clone.functions().join(","), 120),
        shorten(&parent.functions().join(","), 120)
    ))
}

/// The backend `auto` announced on stderr.
fn chosen_backend(stderr: &str) -> Option<&'static str> {
    let line = stderr
        .lines()
        .find(|l| l.to_lowercase().contains("backend"))?;
    [
        "kprobe-multi",
        "kprobe_multi",
        "tracepoint",
        "ftrace",
        "fentry",
        "kprobe",
    ]
    .into_iter()
    .find(|b| line.contains(b))
    .map(|b| match b {
        "kprobe_multi" => "kprobe-multi",
        "fentry" => "ftrace",
        b => b,
    })
}

fn auto(
    out: &CaseOutput,
    groups: &[Packet],
    features: &Features,
    implemented: &[&str],
    graph_tracer: bool,
) -> Verdict {
    let Some(chosen) = chosen_backend(&out.stderr) else {
        return Verdict::fail("auto printed no stderr line naming the chosen backend");
    };
    if !features.has(chosen) {
        return Verdict::fail(format!("auto chose {chosen}, which this kernel lacks"));
    }
    if graph_tracer && chosen == "tracepoint" {
        return Verdict::fail("function_graph needs returns, but auto chose tracepoint");
    }
    let best = ["kprobe-multi"]
        .into_iter()
        .find(|b| implemented.contains(b) && features.has(b));
    if let Some(best) = best {
        if chosen != best {
            return Verdict::fail(format!(
                "auto chose {chosen} although {best} is implemented and available"
            ));
        }
    }
    let traced = if graph_tracer {
        graph(groups, true)
    } else {
        loopback(groups, false)
    };
    match traced.status {
        Status::Pass => Verdict::pass(format!("chose {chosen}; {}", traced.reason)),
        _ => Verdict::fail(format!("chose {chosen}, but: {}", traced.reason)),
    }
}

fn scale(out: &CaseOutput, groups: &[Packet]) -> Verdict {
    let Some(a) = parse::attach(&out.stderr) else {
        return Verdict::fail("no `Attaching program (total …)` line on stderr");
    };
    let ready = out.ready_ms.unwrap_or(0) as f64 / 1000.0;
    let stop = out.stop_ms as f64 / 1000.0;
    let numbers = format!(
        "total {}, succeeded {}, failed {}, filtered {}; ready {ready:.1} s, exit {stop:.1} s",
        a.total, a.succeeded, a.failed, a.filtered
    );
    if a.total < 1000 || a.succeeded * 5 < a.total * 4 {
        return Verdict::fail(format!("too few functions attached: {numbers}"));
    }
    if a.succeeded + a.failed + a.filtered != a.total {
        return Verdict::fail(format!("counts do not add up: {numbers}"));
    }
    let traced = loopback(groups, true);
    if traced.status != Status::Pass {
        return Verdict::fail(format!("{numbers}; but {}", traced.reason));
    }
    Verdict::pass(format!("{numbers}; {}", traced.reason))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_netfilter_drop_fate_names_its_hook_or_chain() {
        assert!(dropped_by_netfilter(
            "dropped at nf_hook_slow+0x9c (NETFILTER_DROP)"
        ));
        assert!(dropped_by_netfilter(
            "dropped at nf_tables:nft_do_chain+0x47f (NETFILTER_DROP)"
        ));
        assert!(!dropped_by_netfilter(
            "dropped at __udp4_lib_rcv+0x4bc (NO_SOCKET)"
        ));
        assert!(!dropped_by_netfilter(
            "dropped at nf_hook_slow (NETFILTER_DROP)"
        ));
        assert!(!dropped_by_netfilter("consumed"));
    }

    use super::*;

    fn group(names: &[&str]) -> Packet {
        let rows = names
            .iter()
            .enumerate()
            .map(|(i, n)| Row {
                tstamp: i as u64,
                cpu: 0,
                module: if n.starts_with("veth") {
                    "veth"
                } else {
                    "vmlinux"
                }
                .into(),
                function: n.to_string(),
                is_return: false,
                indent: 0,
                ..Row::default()
            })
            .collect();
        Packet {
            rows,
            ..Packet::default()
        }
    }

    #[test]
    fn loopback_needs_every_step_in_order() {
        let ok = group(&[
            "ip_output",
            "__dev_queue_xmit",
            "loopback_xmit",
            "__netif_receive_skb_one_core",
            "ip_rcv",
            "ip_local_deliver",
            "icmp_rcv",
            "consume_skb",
        ]);
        assert_eq!(loopback(&[ok], true).status, Status::Pass);
        let swapped = group(&["ip_output", "loopback_xmit", "__dev_queue_xmit", "ip_rcv"]);
        assert_eq!(loopback(&[swapped], true).status, Status::Fail);
    }

    #[test]
    fn tracepoint_path_in_order() {
        let g = group(&[
            "net_dev_queue",
            "net_dev_start_xmit",
            "netif_rx",
            "netif_receive_skb",
            "consume_skb",
        ]);
        assert_eq!(tracepoints(&[g], true).status, Status::Pass);
    }

    #[test]
    fn drop_must_end_the_packet() {
        assert_eq!(
            drop(&[group(&["ip_rcv", "nf_hook_slow", "kfree_skb_reason"])]).status,
            Status::Pass
        );
        assert_eq!(
            drop(&[group(&["nf_hook_slow", "kfree_skb_reason", "ip_rcv"])]).status,
            Status::Fail
        );
    }

    /// `names`, the last one freeing with `reason`, its stack `stack`.
    fn dropped(names: &[&str], reason: &str, stack: &[&str]) -> Packet {
        let mut g = group(names);
        let last = g.rows.last_mut().unwrap();
        last.drop_reason = Some(reason.into());
        last.stack = stack.iter().map(|f| f.to_string()).collect();
        g
    }

    #[test]
    fn drop_stack_needs_nf_hook_slow_under_the_free_on_the_drop_row_only() {
        let names = ["ip_local_deliver", "nf_hook_slow", "sk_skb_reason_drop"];
        let stack = [
            "sk_skb_reason_drop+0x5",
            "nf_tables:nft_do_chain+0x47f",
            "nf_hook_slow+0x9c",
            "ip_local_deliver+0x4d",
        ];
        let ok = dropped(&names, "NETFILTER_DROP", &stack);
        let v = drop_stack(std::slice::from_ref(&ok));
        assert_eq!(v.status, Status::Pass, "{}", v.reason);
        // nf_hook_slow above the free, or missing.
        let above = dropped(
            &names,
            "NETFILTER_DROP",
            &["nf_hook_slow+0x9c", "kfree_skb+0x5"],
        );
        assert_eq!(drop_stack(&[above]).status, Status::Fail);
        let no_hook = dropped(&names, "NETFILTER_DROP", &stack[..2]);
        assert_eq!(drop_stack(&[no_hook]).status, Status::Fail);
        assert_eq!(drop_stack(&[group(&names)]).status, Status::Fail);
        // Another reason, or a stack on a row that does not drop.
        let other = dropped(&names, "NO_SOCKET", &stack);
        assert_eq!(drop_stack(&[other]).status, Status::Fail);
        let mut extra = ok;
        extra.rows[1].stack = vec!["nf_hook_slow+0x0".into()];
        assert_eq!(drop_stack(&[extra]).status, Status::Fail);
    }

    #[test]
    fn udp_closed_is_dropped_by_udp_with_no_socket() {
        let names = ["ip_rcv", "udp_rcv", "icmp_send", "kfree_skb_reason"];
        let packet = |reason: &str, fate: &str| Packet {
            summary: Some("UDP 127.0.0.1:36133 -> 127.0.0.1:7779 len 45 dev lo".into()),
            fate: Some(fate.into()),
            ..dropped(&names, reason, &[])
        };
        let fate = "dropped at __udp4_lib_rcv+0x4bc (NO_SOCKET)";
        let v = udp_closed(&[packet("NO_SOCKET", fate)]);
        assert_eq!(v.status, Status::Pass, "{}", v.reason);
        let wrong = [
            packet("NOT_SPECIFIED", fate),
            packet("NO_SOCKET", "dropped at __udp4_lib_rcv (NO_SOCKET)"),
            packet("NO_SOCKET", "dropped at nf_hook_slow+0x9c (NO_SOCKET)"),
            packet("NO_SOCKET", "consumed"),
        ];
        for p in wrong {
            assert_eq!(udp_closed(&[p]).status, Status::Fail);
        }
        // The drop row's caller and the fate's agree.
        let mut p = packet("NO_SOCKET", fate);
        p.rows.last_mut().unwrap().caller = Some("udp_rcv+0x10".into());
        assert_eq!(udp_closed(&[p]).status, Status::Fail);
        // Only the datagram to the closed port counts.
        let mut elsewhere = packet("NO_SOCKET", fate);
        elsewhere.summary = Some("UDP 127.0.0.1:36133 -> 127.0.0.1:7780 len 45 dev lo".into());
        assert_eq!(udp_closed(&[elsewhere]).status, Status::Fail);
    }

    #[test]
    fn udp_bound_is_delivered_and_read() {
        let packet = |fate: &str| Packet {
            summary: Some("UDP 127.0.0.1:40000 -> 127.0.0.1:7780 len 45 dev lo".into()),
            fate: Some(fate.into()),
            ..group(&["udp_rcv", "__udp_enqueue_schedule_skb", "skb_consume_udp"])
        };
        let read = "received: ipft-udp\n";
        let ok = packet("delivered to UDP socket");
        assert_eq!(
            udp_bound(std::slice::from_ref(&ok), read).status,
            Status::Pass
        );
        assert_eq!(
            udp_bound(std::slice::from_ref(&ok), "received: \n").status,
            Status::Fail
        );
        assert_eq!(udp_bound(&[packet("consumed")], read).status, Status::Fail);
        assert_eq!(udp_bound(&[ok.clone(), ok], read).status, Status::Fail);
    }

    #[test]
    fn tunnel_needs_rows_past_the_scrub_only_when_tracked() {
        let cut = ["__dev_queue_xmit", "iptunnel_xmit", "skb_scrub_packet"];
        let mut on = cut.to_vec();
        on.extend(["ip_local_out", "veth_xmit", "udp_rcv"]);
        assert_eq!(tunnel(&[group(&cut)], false, "").status, Status::Pass);
        assert_eq!(tunnel(&[group(&on)], false, "").status, Status::Fail);
        assert_eq!(tunnel(&[group(&on)], true, "").status, Status::Pass);
        assert_eq!(tunnel(&[group(&cut)], true, "").status, Status::Fail);
        // Without iptunnel_xmit only if ipft said it could not attach it.
        let fentry = ["__dev_queue_xmit", "skb_scrub_packet"];
        assert_eq!(tunnel(&[group(&fentry)], false, "").status, Status::Fail);
        let said = "cannot attach iptunnel_xmit (vmlinux): E2BIG\n";
        assert_eq!(tunnel(&[group(&fentry)], false, said).status, Status::Pass);
    }

    #[test]
    fn selected_needs_the_flow_only_and_the_whole_path() {
        let flow = |names: &[&str], summary: &str| Packet {
            summary: Some(summary.to_string()),
            ..group(names)
        };
        let udp = "UDP 10.0.1.1:40000 -> 10.0.2.2:7777 len 33 dev v12";
        let path = [
            "ip_output",
            "veth_xmit",
            "ip_rcv",
            "ip_forward",
            "ip_output",
            "veth_xmit",
            "ip_rcv",
            "udp_rcv",
        ];
        let whole = flow(&path, udp);
        let steps = SELECT_FORWARD_STEPS;
        assert_eq!(
            selected(std::slice::from_ref(&whole), "10.0.2.2", steps).status,
            Status::Pass
        );
        // A retransmission seen only in part is the same flow: fine.
        let part = flow(&path[..3], udp);
        let both = [part.clone(), whole.clone()];
        assert_eq!(selected(&both, "10.0.2.2", steps).status, Status::Pass);
        assert_eq!(selected(&[part], "10.0.2.2", steps).status, Status::Fail);
        // Other traffic must not be there.
        let other = flow(&path, "UDP 10.0.1.1:40001 -> 10.0.2.2:7778 len 33 dev v12");
        let ping = flow(
            &path,
            "ICMP 10.0.1.1 -> 10.0.2.2 type 8 code 0 len 84 dev v12",
        );
        for intruder in [other, ping, group(&path)] {
            let v = selected(&[whole.clone(), intruder], "10.0.2.2", steps);
            assert_eq!(v.status, Status::Fail, "{}", v.reason);
        }
    }

    #[test]
    fn clone_names_its_parent_by_first_timestamp() {
        let parent = group(&["ip_mc_output", "skb_clone"]);
        let mut clone = group(&["skb_clone", "ip_rcv"]);
        clone.summary =
            Some("ICMP 10.0.6.1 -> 10.0.6.255 (clone of the packet first seen at 0)".into());
        for r in &mut clone.rows {
            r.tstamp += 5;
        }
        assert_eq!(clone_of(&[parent, clone], false).status, Status::Pass);
        let alone = group(&["skb_clone", "ip_rcv"]);
        assert_eq!(clone_of(&[alone], false).status, Status::Fail);
    }

    #[test]
    fn graph_pairs_entries_and_returns() {
        let row = |f: &str, ret, indent| Row {
            tstamp: 0,
            cpu: 0,
            module: "vmlinux".into(),
            function: f.into(),
            is_return: ret,
            indent,
            ..Row::default()
        };
        let ok = Packet {
            rows: vec![
                row("a", false, 0),
                row("b", false, 2),
                row("b", true, 2),
                row("a", true, 0),
            ],
            ..Packet::default()
        };
        assert_eq!(graph(&[ok], false).status, Status::Pass);
        let open = Packet {
            rows: vec![row("a", false, 0), row("b", false, 2), row("b", true, 2)],
            ..Packet::default()
        };
        assert_eq!(graph(&[open], false).status, Status::Fail);
    }

    #[test]
    fn finds_the_announced_backend() {
        assert_eq!(
            chosen_backend("auto: using backend kprobe-multi (fprobe works)\n"),
            Some("kprobe-multi")
        );
        assert_eq!(
            chosen_backend("Backend: ftrace, because …\n"),
            Some("ftrace")
        );
        assert_eq!(chosen_backend("Trace ready!\n"), None);
    }

    #[test]
    fn shell_quotes_arguments() {
        let capture = Case::new(Scenario::CaptureStream, "kprobe", false).shell();
        assert!(capture.starts_with(
            "capture_case stream pcapng-stream-kprobe-aggregate 180 'vxlan_setup kprobe'"
        ));
        assert!(capture.ends_with(" '-w' '-'"), "{capture}");
        let line = Case::new(Scenario::Drop, "kprobe", true).shell();
        assert!(line.starts_with(
            "run_case drop-kprobe-json 180 'drop_setup kprobe' 'ping_lo_dropped kprobe' 'drop_teardown kprobe' '-m' '0x55555555'"
        ));
    }
}
