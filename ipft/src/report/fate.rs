//! A packet's fate in words: the trace stage's [`Fate`] with its names
//! resolved (targets, drop reasons, the caller through [`Sites`], which
//! reads kallsyms and the STACKS map, hence here and not in ipft-output),
//! worded by [`ipft_output::fate`].
use std::collections::HashMap;

use ipft_output::fate::{self as words, Dropped, Site};
pub use ipft_output::fate::{summary, Told};

use super::{names, sites::Sites};
use crate::{
    discover::{roles::Socket, Target},
    trace::fate::Fate,
};

/// Words `fate`; `reasons` names drop reasons, `sites` the caller.
pub fn tell(
    fate: &Fate,
    targets: &[Target],
    reasons: &HashMap<u32, String>,
    sites: &mut Sites,
) -> Told {
    let fate = match fate {
        Fate::InFlight => words::Fate::InFlight,
        Fate::Consumed => words::Fate::Consumed,
        Fate::Delivered(socket) => words::Fate::Delivered(socket_of(*socket)),
        Fate::SentOut(dev) => words::Fate::SentOut(dev),
        Fate::ForwardedOut(dev) => words::Fate::ForwardedOut(dev),
        Fate::Encapsulated(dev) => words::Fate::Encapsulated(dev),
        Fate::HandedTo(dev) => words::Fate::HandedTo(dev),
        Fate::Dropped(d) => {
            let (_, function) = names(targets, d.func);
            let reason = d
                .reason
                .map(|r| reasons.get(&r).cloned().unwrap_or_else(|| r.to_string()));
            let caller = sites.caller(d.caller, d.stack, function);
            return words::tell(&words::Fate::Dropped(Dropped {
                function,
                reason: reason.as_deref(),
                caller: caller.as_ref().map(|site| Site {
                    full: &site.full,
                    function: &site.function,
                }),
            }));
        }
    };
    words::tell(&fate)
}

fn socket_of(socket: Socket) -> words::Socket {
    match socket {
        Socket::Udp => words::Socket::Udp,
        Socket::Tcp => words::Socket::Tcp,
        Socket::Raw => words::Socket::Raw,
        Socket::Icmp => words::Socket::Icmp,
        Socket::IcmpEcho => words::Socket::IcmpEcho,
    }
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
    fn fates_are_worded_with_their_names_resolved() {
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
        let unnamed = tell(Fate::Dropped(Dropped {
            func: 0,
            reason: Some(99),
            caller: 0,
            stack: None,
        }));
        assert_eq!(unnamed.text, "dropped at kfree_skb_reason (99)");
        assert_eq!(tell(Fate::SentOut("eth0".into())).text, "sent out eth0");
        assert_eq!(
            tell(Fate::Delivered(Socket::IcmpEcho)).text,
            "ICMP echo answered"
        );
    }
}
