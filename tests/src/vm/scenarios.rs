//! The scenarios, each declared once: the guest's set-up, traffic and
//! teardown (functions of tests/vm/scenarios.sh), ipft's options, and the
//! judge of its output. The judges live in the family modules beside the
//! regexes and paths they check.
use crate::parse::{self, Packet, Tracer};

use super::{
    capture, drops, graph, identity, loopback, paths,
    verdict::{judge_refusal, ran, with_ready, Features, Verdict},
    Case, CaseOutput,
};

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

/// How cases.sh hands ipft's pcapng (`-w`) to tshark: `capture_case file`
/// reads the file once ipft exits, `capture_case stream` pipes `-w -`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    File,
    Stream,
}

/// What a judge is given.
pub struct Judged<'a> {
    pub case: &'a Case,
    pub out: &'a CaseOutput,
    /// ipft's output, parsed.
    pub packets: &'a [Packet],
    pub features: &'a Features,
    /// Backends ipft implements.
    pub implemented: &'a [String],
}

#[derive(Clone, Copy)]
pub enum Judge {
    /// ipft's packets; a pass then says how long ipft took to be ready.
    Packets(fn(&Judged) -> Verdict),
    /// The same, for a judge that reports its own timings.
    Timed(fn(&Judged) -> Verdict),
    /// tshark's frames of ipft's pcapng.
    Frames(fn(&CaseOutput) -> Verdict),
}

/// One scenario, as the guest runs it and the host judges it.
#[derive(Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    /// Set-up, traffic and teardown: functions of tests/vm/scenarios.sh,
    /// each given the backend.
    pub steps: [&'static str; 3],
    /// ipft's options beyond the selector, `-b`, `-o` and `-r`.
    pub options: &'static [&'static str],
    /// `-r` for the function backends (the tracepoint backend attaches all
    /// of its ~30 skb tracepoints).
    pub regex: Option<&'static str>,
    /// `-f` instead of the mark.
    pub filter: Option<&'static str>,
    pub capture: Option<Capture>,
    /// Guest programs beyond ping, ip and nft.
    pub tools: &'static [&'static str],
    /// Seconds for `Trace ready!`, and again for the exit after SIGINT.
    pub timeout: u32,
    pub judge: Judge,
}

/// The common shape: no `-f`, no capture, no extra tool, three minutes.
const fn spec(
    name: &'static str,
    steps: [&'static str; 3],
    regex: Option<&'static str>,
    judge: Judge,
) -> Spec {
    Spec {
        name,
        steps,
        options: &[],
        regex,
        filter: None,
        capture: None,
        tools: &[],
        timeout: 180,
        judge,
    }
}

/// The marked ping over loopback.
const PING_LO: [&str; 3] = ["none", "ping_lo", "none"];
/// The same ping, dropped by an nft rule on its mark.
const DROPPED: [&str; 3] = ["drop_setup", "ping_lo_dropped", "drop_teardown"];
/// The marked ping through the VXLAN tunnel from ns a to ns b.
const VXLAN: [&str; 3] = ["vxlan_setup", "vxlan_ping", "vxlan_teardown"];

const GRAPH: &[&str] = &["-t", "function_graph"];
/// The tunnel's judge reads which functions could not be attached (`-v`).
const UNTRACKED: &[&str] = &["-v"];
const TRACKED: &[&str] = &["--track", "-v"];
/// The scale run: every skb function, so attaching takes minutes.
const SCALE_TIMEOUT: u32 = 600;

impl Scenario {
    pub fn spec(self) -> Spec {
        use Judge::{Frames, Packets, Timed};
        use Scenario as S;
        match self {
            S::Loopback => spec(
                "loopback",
                PING_LO,
                Some(loopback::LOOPBACK_RE),
                Packets(|j| match j.case.backend {
                    "tracepoint" => loopback::tracepoints(j.packets, !j.case.json),
                    _ => loopback::loopback(j.packets, !j.case.json),
                }),
            ),
            S::Graph => Spec {
                options: GRAPH,
                ..spec(
                    "function_graph",
                    PING_LO,
                    Some(graph::GRAPH_RE),
                    Packets(|j| {
                        graph::graph(j.packets, j.case.json)
                            .and(|| graph::returns_loopback(j.packets))
                    }),
                )
            },
            S::GraphErrno => Spec {
                options: GRAPH,
                ..spec(
                    "graph-errno",
                    DROPPED,
                    Some(drops::DROP_RE),
                    Packets(|j| {
                        graph::graph(j.packets, j.case.json).and(|| graph::returns_errno(j.packets))
                    }),
                )
            },
            S::Forward => spec(
                "forward",
                ["forward_setup", "forward_ping", "forward_teardown"],
                Some(paths::FORWARD_RE),
                Packets(|j| paths::forward(j.packets, j.case.json)),
            ),
            S::Drop => spec(
                "drop",
                DROPPED,
                Some(drops::DROP_RE),
                Packets(|j| drops::drop(j.packets)),
            ),
            S::Auto => spec(
                "auto",
                PING_LO,
                Some(loopback::LOOPBACK_RE),
                Packets(|j| loopback::auto(j.out, j.packets, j.features, j.implemented, false)),
            ),
            S::AutoGraph => Spec {
                options: GRAPH,
                ..spec(
                    "auto-graph",
                    PING_LO,
                    Some(graph::GRAPH_RE),
                    Packets(|j| loopback::auto(j.out, j.packets, j.features, j.implemented, true)),
                )
            },
            S::Scale => Spec {
                timeout: SCALE_TIMEOUT,
                ..spec(
                    "scale",
                    PING_LO,
                    None,
                    Timed(|j| loopback::scale(j.out, j.packets)),
                )
            },
            S::ScaleGraph => Spec {
                options: GRAPH,
                timeout: SCALE_TIMEOUT,
                ..spec(
                    "scale-graph",
                    PING_LO,
                    None,
                    Timed(|j| {
                        loopback::scale(j.out, j.packets).and(|| graph::graph(j.packets, false))
                    }),
                )
            },
            S::Untracked => Spec {
                options: UNTRACKED,
                ..spec(
                    "no-track",
                    VXLAN,
                    Some(paths::TUNNEL_RE),
                    Packets(|j| paths::tunnel(j.packets, false, &j.out.stderr)),
                )
            },
            S::Track => Spec {
                options: TRACKED,
                ..spec(
                    "track",
                    VXLAN,
                    Some(paths::TUNNEL_RE),
                    Packets(|j| paths::tunnel(j.packets, true, &j.out.stderr)),
                )
            },
            S::DropReason => spec(
                "drop-reason",
                DROPPED,
                Some(drops::DROP_RE),
                Packets(|j| drops::drop_reason(j.packets)),
            ),
            S::DropStack => Spec {
                options: &["--stack=drops"],
                ..spec(
                    "drop-stack",
                    DROPPED,
                    Some(drops::DROP_RE),
                    Packets(|j| drops::drop_stack(j.packets)),
                )
            },
            S::UdpClosed => Spec {
                tools: &["socat"],
                ..spec(
                    "udp-closed",
                    ["none", "udp_closed", "none"],
                    Some(drops::UDP_RE),
                    Packets(|j| drops::udp_closed(j.packets)),
                )
            },
            S::UdpBound => Spec {
                tools: &["socat"],
                ..spec(
                    "udp-bound",
                    ["udp_bound_setup", "udp_bound", "udp_bound_teardown"],
                    Some(drops::UDP_RE),
                    Packets(|j| drops::udp_bound(j.packets, &j.out.log)),
                )
            },
            S::Reuse => spec(
                "reuse",
                ["none", "ping_lo_repeat", "none"],
                Some(identity::REUSE_RE),
                Packets(|j| identity::reuse(j.packets)),
            ),
            S::Clone => Spec {
                options: &["--track"],
                ..spec(
                    "clone",
                    ["broadcast_setup", "broadcast_ping", "broadcast_teardown"],
                    Some(identity::CLONE_RE),
                    Packets(|j| identity::clone_of(j.packets, j.case.json)),
                )
            },
            S::Capture => Spec {
                options: &["--track"],
                capture: Some(Capture::File),
                tools: &["tshark"],
                ..spec(
                    "pcapng",
                    VXLAN,
                    Some(paths::TUNNEL_RE),
                    Frames(capture::every_row),
                )
            },
            S::CaptureStream => Spec {
                options: &["--track"],
                capture: Some(Capture::Stream),
                tools: &["tshark"],
                ..spec(
                    "pcapng-stream",
                    VXLAN,
                    Some(paths::TUNNEL_RE),
                    Frames(capture::streamed),
                )
            },
            S::SelectForward => Spec {
                filter: Some(paths::SELECTED_FILTER),
                ..spec(
                    "select-forward",
                    [
                        "select_forward_setup",
                        "select_forward_traffic",
                        "forward_teardown",
                    ],
                    Some(paths::SELECT_FORWARD_RE),
                    Packets(|j| {
                        paths::selected(j.packets, "10.0.2.2", paths::SELECT_FORWARD_STEPS)
                    }),
                )
            },
            S::SelectVxlan => Spec {
                filter: Some(paths::SELECTED_FILTER),
                ..spec(
                    "select-vxlan",
                    ["vxlan_setup", "select_vxlan_traffic", "vxlan_teardown"],
                    Some(paths::TUNNEL_RE),
                    Packets(|j| paths::selected(j.packets, "10.0.4.2", paths::SELECT_VXLAN_STEPS)),
                )
            },
            S::SelectSrv6 => Spec {
                filter: Some(paths::SELECTED_FILTER),
                ..spec(
                    "select-srv6",
                    ["srv6_setup", "srv6_traffic", "srv6_teardown"],
                    Some(paths::SRV6_RE),
                    Packets(|j| paths::selected(j.packets, "10.0.8.1", paths::SRV6_STEPS)),
                )
            },
        }
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }
}

/// Judges one finished case: a backend the kernel lacks must be refused
/// clearly (not applicable), anything else must run and pass its judge.
pub fn judge(
    case: &Case,
    out: &CaseOutput,
    features: &Features,
    implemented: &[String],
) -> Verdict {
    if !features.has(case.backend) && case.backend != "auto" {
        return judge_refusal(case.backend, out);
    }
    if let Some(v) = ran(out) {
        return v;
    }
    let (f, timed) = match case.scenario.spec().judge {
        Judge::Frames(f) => return with_ready(f(out), out),
        Judge::Packets(f) => (f, false),
        Judge::Timed(f) => (f, true),
    };
    let tracer = match case.graph() {
        true => Tracer::FunctionGraph,
        false => Tracer::Function,
    };
    let packets = match case.json {
        true => parse::json(&out.stdout),
        false => parse::table(&out.stdout, tracer),
    };
    let packets = match packets {
        Ok(p) => p,
        Err(e) => return Verdict::fail(format!("unparsable {} output: {e}", case.format())),
    };
    let judged = Judged {
        case,
        out,
        packets: &packets,
        features,
        implemented,
    };
    match timed {
        true => f(&judged),
        false => with_ready(f(&judged), out),
    }
}
