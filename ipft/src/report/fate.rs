//! A packet's fate as the user reads it: the `fate:` line ending its group
//! in the table, the `fate` object of its last JSON line, and the closing
//! summary (`12 packets: 9 delivered, 2 sent out eth0, 1 dropped
//! (NETFILTER_DROP at nf_hook_slow)`).
use std::collections::HashMap;

use super::{names, sites::Sites};
use crate::{
    discover::{roles::Socket, Target},
    trace::fate::Fate,
};

/// A fate, worded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Told {
    /// `dropped at nf_hook_slow+0x8f (NETFILTER_DROP)`.
    pub text: String,
    /// What the closing summary counts it as: `dropped (NETFILTER_DROP at
    /// nf_hook_slow)`.
    pub count_as: String,
    /// The JSON object.
    pub json: serde_json::Value,
}

/// Words `fate`; `reasons` names drop reasons, `sites` the caller.
pub fn tell(
    fate: &Fate,
    targets: &[Target],
    reasons: &HashMap<u32, String>,
    sites: &mut Sites,
) -> Told {
    use serde_json::json;
    let simple = |kind: &str, text: String, count_as: String| Told {
        json: json!({"kind": kind, "text": text}),
        text,
        count_as,
    };
    let device = |kind: &str, words: &str, dev: &str| Told {
        json: json!({"kind": kind, "text": format!("{words} {dev}"), "dev": dev}),
        text: format!("{words} {dev}"),
        count_as: format!("{words} {dev}"),
    };
    match fate {
        Fate::InFlight => simple(
            "in_flight",
            "still in flight when tracing stopped".into(),
            "in flight".into(),
        ),
        Fate::Consumed => simple("consumed", "consumed".into(), "consumed".into()),
        Fate::Delivered(socket) => {
            let text = match socket {
                Socket::Udp => "delivered to UDP socket",
                Socket::Tcp => "delivered to TCP socket",
                Socket::Raw => "delivered to raw socket",
                Socket::Icmp => "delivered to ICMP socket",
                Socket::IcmpEcho => "ICMP echo answered",
            };
            let socket = match socket {
                Socket::Udp => "udp",
                Socket::Tcp => "tcp",
                Socket::Raw => "raw",
                Socket::Icmp => "icmp",
                Socket::IcmpEcho => "icmp_echo",
            };
            Told {
                json: json!({"kind": "delivered", "text": text, "socket": socket}),
                text: text.into(),
                count_as: "delivered".into(),
            }
        }
        Fate::SentOut(dev) => device("sent_out", "sent out", dev),
        Fate::ForwardedOut(dev) => device("forwarded_out", "forwarded out", dev),
        Fate::Encapsulated(dev) => device("encapsulated", "encapsulated into", dev),
        Fate::HandedTo(dev) => device("handed_to", "handed to", dev),
        Fate::Dropped(d) => {
            let (_, function) = names(targets, d.func);
            let reason = d
                .reason
                .map(|r| reasons.get(&r).cloned().unwrap_or_else(|| r.to_string()));
            let caller = sites.caller(d.caller, d.stack, function);
            let (at, at_function) = match &caller {
                Some(site) => (site.full.as_str(), site.function.as_str()),
                None => (function, function),
            };
            let text = match &reason {
                Some(reason) => format!("dropped at {at} ({reason})"),
                None => format!("dropped at {at}"),
            };
            let count_as = match &reason {
                Some(reason) => format!("dropped ({reason} at {at_function})"),
                None => format!("dropped (at {at_function})"),
            };
            let mut object = json!({"kind": "dropped", "text": text, "function": function});
            if let Some(reason) = reason {
                object["reason"] = reason.into();
            }
            if let Some(site) = caller {
                object["caller"] = site.full.into();
            }
            Told {
                json: object,
                text,
                count_as,
            }
        }
    }
}

/// The closing line: how many packets, then each way they ended, the most
/// common first (ties in the order words sort).
pub fn summary<'a>(counted: impl Iterator<Item = (&'a str, usize)>) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut total = 0;
    for (count_as, n) in counted {
        *counts.entry(count_as).or_default() += n;
        total += n;
    }
    let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let packets = if total == 1 { "packet" } else { "packets" };
    format!("{total} {packets}: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{discover::Symbols, trace::fate::Dropped};

    fn sites() -> Sites {
        Sites::with_symbols(Symbols::parse(
            "ffffffff81000000 T nf_hook_slow\nffffffff82000000 T kfree_skb_reason\n",
        ))
    }

    fn targets() -> Vec<Target> {
        vec![crate::discover::tests::candidate("kfree_skb_reason", "vmlinux").target]
    }

    #[test]
    fn fates_in_words_and_json() {
        let reasons = HashMap::from([(7, "NETFILTER_DROP".to_string())]);
        let mut sites = sites();
        let mut tell = |fate: Fate| tell(&fate, &targets(), &reasons, &mut sites);
        let drop = tell(Fate::Dropped(Dropped {
            func: 0,
            reason: Some(7),
            caller: 0xffffffff8100008f,
            stack: None,
        }));
        assert_eq!(drop.text, "dropped at nf_hook_slow+0x8f (NETFILTER_DROP)");
        assert_eq!(drop.count_as, "dropped (NETFILTER_DROP at nf_hook_slow)");
        assert_eq!(
            drop.json.to_string(),
            r#"{"caller":"nf_hook_slow+0x8f","function":"kfree_skb_reason","kind":"dropped","reason":"NETFILTER_DROP","text":"dropped at nf_hook_slow+0x8f (NETFILTER_DROP)"}"#
        );
        let unknown = tell(Fate::Dropped(Dropped {
            func: 0,
            reason: None,
            caller: 0,
            stack: None,
        }));
        assert_eq!(unknown.text, "dropped at kfree_skb_reason");
        let sent = tell(Fate::SentOut("eth0".into()));
        assert_eq!(sent.text, "sent out eth0");
        assert_eq!(
            sent.json.to_string(),
            r#"{"dev":"eth0","kind":"sent_out","text":"sent out eth0"}"#
        );
        assert_eq!(
            tell(Fate::Delivered(Socket::Udp)).text,
            "delivered to UDP socket"
        );
        assert_eq!(
            tell(Fate::InFlight).text,
            "still in flight when tracing stopped"
        );
    }

    #[test]
    fn the_summary_counts_the_most_common_first() {
        let reasons = HashMap::from([(7, "NETFILTER_DROP".to_string())]);
        let mut sites = sites();
        let mut all = Vec::new();
        for _ in 0..9 {
            all.push(Fate::Delivered(Socket::Udp));
        }
        all.push(Fate::Delivered(Socket::Tcp));
        all.push(Fate::SentOut("eth0".into()));
        all.push(Fate::SentOut("eth0".into()));
        all.push(Fate::Dropped(Dropped {
            func: 0,
            reason: Some(7),
            caller: 0xffffffff8100008f,
            stack: None,
        }));
        let told: Vec<Told> = all
            .iter()
            .map(|f| tell(f, &targets(), &reasons, &mut sites))
            .collect();
        assert_eq!(
            summary(told.iter().map(|t| (t.count_as.as_str(), 1))),
            "13 packets: 10 delivered, 2 sent out eth0, 1 dropped (NETFILTER_DROP at nf_hook_slow)"
        );
        let first = told[..1].iter().map(|t| (t.count_as.as_str(), 1));
        assert_eq!(summary(first), "1 packet: 1 delivered");
    }
}
