//! A packet's fate as the user reads it: the `fate:` line ending its group
//! in the table, the `fate` object of its last JSON line, and the closing
//! summary (`12 packets: 9 delivered, 2 sent out eth0, 1 dropped
//! (NETFILTER_DROP at nf_hook_slow)`).
use std::collections::HashMap;

/// How a packet ended, with every name already resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate<'a> {
    /// Not freed, and nothing said where it went.
    InFlight,
    Delivered(Socket),
    /// Transmitted on this device, never received before.
    SentOut(&'a str),
    /// Transmitted on this device after it was received or forwarded.
    ForwardedOut(&'a str),
    /// Taken by this tunnel device, and not seen sent after.
    Encapsulated(&'a str),
    /// Queued to this device and not seen sent.
    HandedTo(&'a str),
    /// Freed after normal use, with nothing else said.
    Consumed,
    Dropped(Dropped<'a>),
}

/// What a packet was delivered to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Socket {
    Udp,
    Tcp,
    Raw,
    /// A ping socket (`SOCK_DGRAM`, `IPPROTO_ICMP`).
    Icmp,
    /// Not a socket: the kernel answered the ICMP echo request.
    IcmpEcho,
}

/// Where and why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped<'a> {
    /// The freeing function (`kfree_skb_reason`).
    pub function: &'a str,
    /// The drop reason's name (or number, when it has none).
    pub reason: Option<&'a str>,
    /// The code that called the freeing function, when known.
    pub caller: Option<Site<'a>>,
}

/// A place in kernel code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site<'a> {
    /// `function+0x1c` or `module:function+0x1c`.
    pub full: &'a str,
    /// The function alone.
    pub function: &'a str,
}

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

/// Words `fate`.
pub fn tell(fate: &Fate) -> Told {
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
    match *fate {
        Fate::InFlight => simple(
            "in_flight",
            "still in flight when tracing stopped".into(),
            "in flight".into(),
        ),
        Fate::Consumed => simple("consumed", "consumed".into(), "consumed".into()),
        Fate::Delivered(socket) => delivered(socket),
        Fate::SentOut(dev) => device("sent_out", "sent out", dev),
        Fate::ForwardedOut(dev) => device("forwarded_out", "forwarded out", dev),
        Fate::Encapsulated(dev) => device("encapsulated", "encapsulated into", dev),
        Fate::HandedTo(dev) => device("handed_to", "handed to", dev),
        Fate::Dropped(d) => dropped(d),
    }
}

fn delivered(socket: Socket) -> Told {
    let text = match socket {
        Socket::Udp => "delivered to UDP socket",
        Socket::Tcp => "delivered to TCP socket",
        Socket::Raw => "delivered to raw socket",
        Socket::Icmp => "delivered to ICMP socket",
        Socket::IcmpEcho => "ICMP echo answered",
    };
    let name = match socket {
        Socket::Udp => "udp",
        Socket::Tcp => "tcp",
        Socket::Raw => "raw",
        Socket::Icmp => "icmp",
        Socket::IcmpEcho => "icmp_echo",
    };
    Told {
        json: serde_json::json!({"kind": "delivered", "text": text, "socket": name}),
        text: text.into(),
        count_as: "delivered".into(),
    }
}

fn dropped(d: Dropped) -> Told {
    let (at, at_function) = match &d.caller {
        Some(site) => (site.full, site.function),
        None => (d.function, d.function),
    };
    let text = match d.reason {
        Some(reason) => format!("dropped at {at} ({reason})"),
        None => format!("dropped at {at}"),
    };
    let count_as = match d.reason {
        Some(reason) => format!("dropped ({reason} at {at_function})"),
        None => format!("dropped (at {at_function})"),
    };
    let mut object = serde_json::json!({"kind": "dropped", "text": text, "function": d.function});
    if let Some(reason) = d.reason {
        object["reason"] = reason.into();
    }
    if let Some(site) = d.caller {
        object["caller"] = site.full.into();
    }
    Told {
        json: object,
        text,
        count_as,
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

    const NF_DROP: Dropped = Dropped {
        function: "kfree_skb_reason",
        reason: Some("NETFILTER_DROP"),
        caller: Some(Site {
            full: "nf_hook_slow+0x8f",
            function: "nf_hook_slow",
        }),
    };

    #[test]
    fn fates_in_words_and_json() {
        let drop = tell(&Fate::Dropped(NF_DROP));
        assert_eq!(drop.text, "dropped at nf_hook_slow+0x8f (NETFILTER_DROP)");
        assert_eq!(drop.count_as, "dropped (NETFILTER_DROP at nf_hook_slow)");
        assert_eq!(
            drop.json.to_string(),
            r#"{"caller":"nf_hook_slow+0x8f","function":"kfree_skb_reason","kind":"dropped","reason":"NETFILTER_DROP","text":"dropped at nf_hook_slow+0x8f (NETFILTER_DROP)"}"#
        );
        let unknown = tell(&Fate::Dropped(Dropped {
            function: "kfree_skb_reason",
            reason: None,
            caller: None,
        }));
        assert_eq!(unknown.text, "dropped at kfree_skb_reason");
        assert_eq!(unknown.count_as, "dropped (at kfree_skb_reason)");
        let sent = tell(&Fate::SentOut("eth0"));
        assert_eq!(sent.text, "sent out eth0");
        assert_eq!(
            sent.json.to_string(),
            r#"{"dev":"eth0","kind":"sent_out","text":"sent out eth0"}"#
        );
        let udp = tell(&Fate::Delivered(Socket::Udp));
        assert_eq!(udp.text, "delivered to UDP socket");
        assert_eq!(
            udp.json.to_string(),
            r#"{"kind":"delivered","socket":"udp","text":"delivered to UDP socket"}"#
        );
        assert_eq!(
            tell(&Fate::InFlight).text,
            "still in flight when tracing stopped"
        );
    }

    #[test]
    fn the_summary_counts_the_most_common_first() {
        let mut all = vec![Fate::Delivered(Socket::Udp); 9];
        all.push(Fate::Delivered(Socket::Tcp));
        all.push(Fate::SentOut("eth0"));
        all.push(Fate::SentOut("eth0"));
        all.push(Fate::Dropped(NF_DROP));
        let told: Vec<Told> = all.iter().map(tell).collect();
        assert_eq!(
            summary(told.iter().map(|t| (t.count_as.as_str(), 1))),
            "13 packets: 10 delivered, 2 sent out eth0, 1 dropped (NETFILTER_DROP at nf_hook_slow)"
        );
        let first = told[..1].iter().map(|t| (t.count_as.as_str(), 1));
        assert_eq!(summary(first), "1 packet: 1 delivered");
    }
}
