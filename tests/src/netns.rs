//! Network set-ups a test owns and tears down when it ends, failed or not:
//! a namespace behind a veth pair, an iptables rule, an nftables table.
use std::{net::Ipv4Addr, process::Command};

/// Runs a set-up command that must succeed.
fn must(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a tear-down command; failures are ignored (it may be half set up).
fn quietly(program: &str, args: &[&str]) {
    let _ = Command::new(program).args(args).output();
}

/// A namespace reached through a veth pair: `host_dev` in the root namespace
/// with `host_addr`/24, its peer `peer_dev` inside `netns` with
/// `peer_addr`/24. Dropping it deletes the namespace, which deletes the pair.
pub struct Veth {
    pub netns: String,
    pub host_dev: String,
    pub peer_dev: String,
    pub host_addr: Ipv4Addr,
    pub peer_addr: Ipv4Addr,
}

impl Veth {
    /// `tag` (at most 5 characters) names the test; `subnet` picks
    /// 198.18.`subnet`.0/24 (RFC 2544's benchmarking range, unused on real
    /// networks). Both must be unique per test.
    pub fn new(tag: &str, subnet: u8) -> Veth {
        Veth::with_peer(tag, subnet, "eth0")
    }

    /// As [`Veth::new`], with a peer named after the test too, unlike any
    /// device of another namespace: a row's device then says where it is.
    pub fn unique(tag: &str, subnet: u8) -> Veth {
        let pid = std::process::id() % 1_000_000;
        Veth::with_peer(tag, subnet, &format!("ipfp{tag}{pid}"))
    }

    fn with_peer(tag: &str, subnet: u8, peer: &str) -> Veth {
        assert!(tag.len() <= 5, "interface names have at most 15 characters");
        let pid = std::process::id() % 1_000_000;
        let veth = Veth {
            netns: format!("ipft-{tag}-{pid}"),
            host_dev: format!("ipft{tag}{pid}"),
            peer_dev: peer.to_string(),
            host_addr: Ipv4Addr::new(198, 18, subnet, 1),
            peer_addr: Ipv4Addr::new(198, 18, subnet, 2),
        };
        // From here on a panic drops `veth`, which removes what exists.
        veth.create();
        veth
    }

    fn create(&self) {
        let (ns, dev) = (self.netns.as_str(), self.host_dev.as_str());
        must("ip", &["netns", "add", ns]);
        let peer = self.peer_dev.as_str();
        must(
            "ip",
            &[
                "link", "add", dev, "type", "veth", "peer", "name", peer, "netns", ns,
            ],
        );
        must(
            "ip",
            &["addr", "add", &format!("{}/24", self.host_addr), "dev", dev],
        );
        must("ip", &["link", "set", dev, "up"]);
        let peer_addr = format!("{}/24", self.peer_addr);
        must("ip", &["-n", ns, "addr", "add", &peer_addr, "dev", peer]);
        must("ip", &["-n", ns, "link", "set", peer, "up"]);
        must("ip", &["-n", ns, "link", "set", "lo", "up"]);
    }

    /// One unmarked ping to the peer: resolves its MAC address, so a traced
    /// ping afterwards goes straight out instead of waiting in the ARP queue.
    pub fn resolve_neighbour(&self) {
        let peer = self.peer_addr.to_string();
        must("ping", &["-c", "1", "-W", "5", &peer]);
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        quietly("ip", &["netns", "del", &self.netns]);
        quietly("ip", &["link", "del", &self.host_dev]);
    }
}

/// An iptables rule, inserted first in its chain and deleted on drop.
pub struct IptablesRule {
    table: String,
    chain: String,
    spec: Vec<String>,
}

impl IptablesRule {
    /// `iptables -w -t TABLE -I CHAIN SPEC…`.
    pub fn insert(table: &str, chain: &str, spec: &[&str]) -> IptablesRule {
        let rule = IptablesRule {
            table: table.into(),
            chain: chain.into(),
            spec: spec.iter().map(|s| s.to_string()).collect(),
        };
        must("iptables", &rule.args("-I"));
        rule
    }

    fn args<'a>(&'a self, op: &'a str) -> Vec<&'a str> {
        let mut args = vec!["-w", "-t", &self.table, op, &self.chain];
        args.extend(self.spec.iter().map(String::as_str));
        args
    }
}

impl Drop for IptablesRule {
    fn drop(&mut self) {
        quietly("iptables", &self.args("-D"));
    }
}

/// An nftables table of a test's own (`inet NAME`), with one filter chain
/// on `hook` holding `rules`; deleted on drop.
pub struct NftTable {
    name: String,
}

impl NftTable {
    pub fn new(name: &str, hook: &str, rules: &[&str]) -> NftTable {
        let table = NftTable { name: name.into() };
        must("nft", &[&format!("add table inet {name}")]);
        let chain = format!("add chain inet {name} c {{ type filter hook {hook} priority -300; }}");
        must("nft", &[&chain]);
        for rule in rules {
            must("nft", &[&format!("add rule inet {name} c {rule}")]);
        }
        table
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        quietly("nft", &[&format!("delete table inet {}", self.name)]);
    }
}
