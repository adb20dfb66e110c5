//! Judging the `-w` cases: ipft's pcapng as the guest's tshark read it (the
//! `frames` stream of tests/vm/cases.sh, one tab-separated line per frame).
//! The traffic is the VXLAN scenario's marked ping from 10.0.4.1 to
//! 10.0.4.2, followed with `--track` through the tunnel.
use super::{
    verdict::{shorten, Verdict},
    CaseOutput,
};

/// One frame: the fields cases.sh's TSHARK_FIELDS asks for, in that order.
/// A field seen twice (outer and inner header) holds both, joined by `,`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub interface: String,
    pub comment: String,
    pub protocols: String,
    pub ip_src: String,
    pub ip_dst: String,
    pub udp_dst: String,
    pub icmp_type: String,
}

impl Frame {
    fn function(&self) -> &str {
        self.comment.split(' ').next().unwrap_or_default()
    }

    /// The echo request as it left ns a: ICMP in IPv4, no tunnel.
    fn plain(&self) -> bool {
        !self.protocols.contains("vxlan")
            && (
                self.ip_src.as_str(),
                self.ip_dst.as_str(),
                self.icmp_type.as_str(),
            ) == ("10.0.4.1", "10.0.4.2", "8")
    }

    /// The same request inside the tunnel: outer IPv4 10.0.3.1 → 10.0.3.2,
    /// UDP to 4789, VXLAN, then the inner request.
    fn encapsulated(&self) -> bool {
        self.protocols.contains(":udp:vxlan:")
            && self.udp_dst.split(',').any(|p| p == "4789")
            && self.ip_src == "10.0.3.1,10.0.4.1"
            && self.ip_dst == "10.0.3.2,10.0.4.2"
            && self.icmp_type == "8"
    }

    /// The namespace of `dev@INODE`, for a frame on device `dev`.
    fn netns_on(&self, dev: &str) -> Option<&str> {
        let (name, netns) = self.interface.split_once('@')?;
        (name == dev && netns.bytes().all(|b| b.is_ascii_digit())).then_some(netns)
    }

    fn brief(&self) -> String {
        format!(
            "{} on {} [{}]",
            self.comment, self.interface, self.protocols
        )
    }
}

/// The frames tshark printed, or why they cannot be judged.
fn frames(out: &CaseOutput) -> Result<Vec<Frame>, String> {
    if !out.log.lines().any(|l| l == "tshark exited 0") {
        let said: Vec<&str> = out.log.lines().filter(|l| l.contains("tshark")).collect();
        return Err(format!(
            "tshark did not read the capture: {}",
            shorten(&said.join(" | "), 300)
        ));
    }
    out.frames.lines().map(parse_line).collect()
}

fn parse_line(line: &str) -> Result<Frame, String> {
    let cols: Vec<&str> = line.split('\t').collect();
    let [interface, comment, protocols, ip_src, ip_dst, udp_dst, icmp_type] = cols[..] else {
        return Err(format!("tshark line with {} fields: {line:?}", cols.len()));
    };
    let text = String::from;
    Ok(Frame {
        interface: text(interface),
        comment: text(comment),
        protocols: text(protocols),
        ip_src: text(ip_src),
        ip_dst: text(ip_dst),
        udp_dst: text(udp_dst),
        icmp_type: text(icmp_type),
    })
}

fn listing(frames: &[Frame]) -> String {
    let all: Vec<String> = frames.iter().map(Frame::brief).collect();
    shorten(&all.join("; "), 600)
}

/// `--capture-at all -w FILE`: a frame per row. Every frame up to the
/// packet's vxlan_xmit is the plain request (on vxlan0 in ns a); a frame
/// after it is the request inside VXLAN (on va, in another namespace).
pub fn every_row(out: &CaseOutput) -> Verdict {
    let frames = match frames(out) {
        Ok(f) => f,
        Err(e) => return Verdict::fail(e),
    };
    let Some(at) = frames.iter().position(|f| f.function() == "vxlan_xmit") else {
        return Verdict::fail(format!("no frame of vxlan_xmit: {}", listing(&frames)));
    };
    if let Some(f) = frames[..=at].iter().find(|f| !f.plain()) {
        return Verdict::fail(format!(
            "not the plain request up to vxlan_xmit: {} in {}",
            f.brief(),
            listing(&frames)
        ));
    }
    let Some(inner) = frames[at].netns_on("vxlan0") else {
        return Verdict::fail(format!(
            "vxlan_xmit's frame is not on vxlan0@NETNS: {}",
            frames[at].brief()
        ));
    };
    let after = &frames[at + 1..];
    let outer = after
        .iter()
        .find(|f| f.encapsulated() && f.netns_on("va").is_some());
    match outer {
        Some(f) if f.netns_on("va") != Some(inner) => Verdict::pass(format!(
            "{} frames: plain up to vxlan_xmit on {}, VXLAN (UDP 4789) at {}",
            frames.len(),
            frames[at].interface,
            f.brief()
        )),
        Some(f) => Verdict::fail(format!(
            "vxlan0 and va in one namespace: {} and {}",
            frames[at].interface, f.interface
        )),
        None => Verdict::fail(format!(
            "no VXLAN frame on va@NETNS after vxlan_xmit: {}",
            listing(&frames)
        )),
    }
}

/// `-w -` into `tshark -r -`, default capture points: the first frame is
/// the plain request, the tunnel shows as a frame of its own, and the last
/// is the request again, decapsulated on the far side; every comment reads
/// `function [module] packet N`.
pub fn streamed(out: &CaseOutput) -> Verdict {
    let frames = match frames(out) {
        Ok(f) => f,
        Err(e) => return Verdict::fail(e),
    };
    if let Some(bad) = misshapen_comment(&frames) {
        return Verdict::fail(format!(
            "comment {bad:?} is not `function [module] packet N`"
        ));
    }
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        return Verdict::fail("tshark read no frame from ipft's stdout");
    };
    let tunnel = frames.iter().position(Frame::encapsulated);
    match tunnel {
        Some(_) if first.plain() && last.plain() => Verdict::pass(format!(
            "{} frames through the pipe: plain, VXLAN, plain again: {}",
            frames.len(),
            listing(&frames)
        )),
        _ => Verdict::fail(format!(
            "want the plain request first, a VXLAN frame, the plain request last: {}",
            listing(&frames)
        )),
    }
}

/// The first comment not shaped `function [module] packet N`.
fn misshapen_comment(frames: &[Frame]) -> Option<&str> {
    let shaped = |c: &str| {
        let mut words = c.split(' ');
        let function = words.next().filter(|w| !w.is_empty());
        let rest: Vec<&str> = words.collect();
        let rest = match rest.first() {
            Some(m) if m.starts_with('[') && m.ends_with(']') => &rest[1..],
            _ => &rest[..],
        };
        function.is_some()
            && rest.len() == 2
            && rest[0] == "packet"
            && rest[1].parse::<u32>().is_ok()
    };
    frames
        .iter()
        .map(|f| f.comment.as_str())
        .find(|c| !shaped(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::verdict::Status;

    const PLAIN: &str = "raw:ip:icmp:data\t10.0.4.1\t10.0.4.2\t\t8";
    const VXLAN: &str = "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:icmp:data\t10.0.3.1,10.0.4.1\t10.0.3.2,10.0.4.2\t4789\t8";

    fn output(lines: &[String]) -> CaseOutput {
        CaseOutput {
            frames: lines.join("\n"),
            log: "tshark exited 0\n".into(),
            ..CaseOutput::default()
        }
    }

    fn line(interface: &str, function: &str, fields: &str) -> String {
        format!("{interface}\t{function} packet 1\t{fields}")
    }

    #[test]
    fn plain_up_to_vxlan_xmit_then_the_tunnel() {
        let good = [
            line("vxlan0@4026532000", "ip_output", PLAIN),
            line("vxlan0@4026532000", "vxlan_xmit", PLAIN),
            line("va@4026531840", "ip_local_out", VXLAN),
        ];
        assert_eq!(every_row(&output(&good)).status, Status::Pass);
        let early = [
            line("vxlan0@4026532000", "vxlan_xmit", VXLAN),
            good[2].clone(),
        ];
        assert_eq!(every_row(&output(&early)).status, Status::Fail);
        let same_netns = [
            good[1].clone(),
            line("va@4026532000", "ip_local_out", VXLAN),
        ];
        assert_eq!(every_row(&output(&same_netns)).status, Status::Fail);
        let mut unread = output(&good);
        unread.log = "tshark exited 2\n".into();
        assert_eq!(every_row(&unread).status, Status::Fail);
    }

    #[test]
    fn the_stream_shows_the_tunnel_between_plain_frames() {
        let good = [
            line("vxlan0@1", "ip_output", PLAIN),
            line("va@2", "ip_local_out", VXLAN),
            line("vxlan1@3", "consume_skb", PLAIN),
        ];
        assert_eq!(streamed(&output(&good)).status, Status::Pass);
        assert_eq!(streamed(&output(&good[..2])).status, Status::Fail);
        let mut module = good.clone();
        module[1] = format!("va@2\tvxlan_rcv [vxlan] packet 1\t{VXLAN}");
        assert_eq!(streamed(&output(&module)).status, Status::Pass);
        let mut odd = good.clone();
        odd[0] = format!("vxlan0@1\tip_output pkt 1\t{PLAIN}");
        assert_eq!(streamed(&output(&odd)).status, Status::Fail);
    }
}
