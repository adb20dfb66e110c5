# Setup, traffic and teardown steps the host names in /vm/cases.
MARK=1431655765 # 0x55555555, ping -m takes decimal only

none() { :; }

# ICMP echo to 127.0.0.1 with SO_MARK: TX, loopback_xmit, RX, consume.
ping_lo() { ping -m $MARK -c 1 -W 2 127.0.0.1; }

# The echo is dropped, so ping reports a failure: expected.
ping_lo_dropped() { ping -m $MARK -c 1 -W 1 127.0.0.1 || true; }

# ns1 (10.0.1.1) -v12/v21- ns2 (forwards, marks in raw prerouting) -v23/v32- ns3 (10.0.2.2)
forward_setup() {
    for n in ns1 ns2 ns3; do
        ip netns add $n
        ip -n $n link set lo up
    done
    ip link add v12 netns ns1 type veth peer name v21 netns ns2
    ip link add v23 netns ns2 type veth peer name v32 netns ns3
    ip -n ns1 addr add 10.0.1.1/24 dev v12
    ip -n ns2 addr add 10.0.1.2/24 dev v21
    ip -n ns2 addr add 10.0.2.1/24 dev v23
    ip -n ns3 addr add 10.0.2.2/24 dev v32
    for l in ns1:v12 ns2:v21 ns2:v23 ns3:v32; do ip -n ${l%:*} link set ${l#*:} up; done
    ip -n ns1 route add default via 10.0.1.2
    ip -n ns3 route add default via 10.0.2.1
    ip netns exec ns2 sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'
    ip netns exec ns2 nft -f - <<NFT
table ip ipft {
    chain pre {
        type filter hook prerouting priority raw;
        ip saddr 10.0.1.1 ip daddr 10.0.2.2 meta mark set $MARK
    }
}
NFT
    # Resolve neighbours now, so the traced packet is not parked in a queue.
    ip netns exec ns1 ping -c 1 -W 5 10.0.2.2
}

forward_ping() { ip netns exec ns1 ping -c 1 -W 2 10.0.2.2; }

forward_teardown() { for n in ns1 ns2 ns3; do ip netns del $n; done; }

# Drops marked packets where they are delivered locally (filter INPUT).
drop_setup() {
    nft -f - <<NFT
table ip ipftdrop {
    chain in {
        type filter hook input priority filter;
        meta mark $MARK counter drop
    }
}
NFT
}

drop_teardown() {
    nft list table ip ipftdrop
    nft delete table ip ipftdrop
}
