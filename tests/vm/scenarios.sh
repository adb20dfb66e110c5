# Setup, traffic and teardown steps the host names in /vm/cases.
MARK=1431655765 # 0x55555555: ping -m takes decimal only

# Full paths: Debian's busybox shell runs its own applets (whose ping has no
# -m and whose ip has no netns) before anything on PATH.
PING=/usr/bin/ping
IP=/usr/sbin/ip
NFT=/usr/sbin/nft

none() { :; }

# ICMP echo to 127.0.0.1 with SO_MARK: TX, loopback_xmit, RX, consume.
ping_lo() { $PING -m $MARK -c 1 -W 2 127.0.0.1; }

# The echo is dropped, so ping reports a failure: expected.
ping_lo_dropped() { $PING -m $MARK -c 1 -W 1 127.0.0.1 || true; }

# ns1 (10.0.1.1) -v12/v21- ns2 (forwards, marks in raw prerouting) -v23/v32- ns3 (10.0.2.2)
# $1: the backend under test; its list of veth functions explains a miss.
forward_setup() {
    echo "ipft -l -b $1 -r '^veth_xmit\$':"
    ipft -l -b $1 -r '^veth_xmit$' 2>&1
    three_namespaces
    $IP netns exec ns2 $NFT -f - <<NFT
table ip ipft {
    chain pre {
        type filter hook prerouting priority raw;
        ip saddr 10.0.1.1 ip daddr 10.0.2.2 meta mark set $MARK
    }
}
NFT
    # Resolve neighbours now, so the traced packet is not parked in a queue.
    $IP netns exec ns1 $PING -c 1 -W 5 10.0.2.2
}

# The forward scenario's namespaces, without any mark.
three_namespaces() {
    for n in ns1 ns2 ns3; do
        $IP netns add $n
        $IP -n $n link set lo up
    done
    $IP link add v12 netns ns1 type veth peer name v21 netns ns2
    $IP link add v23 netns ns2 type veth peer name v32 netns ns3
    $IP -n ns1 addr add 10.0.1.1/24 dev v12
    $IP -n ns2 addr add 10.0.1.2/24 dev v21
    $IP -n ns2 addr add 10.0.2.1/24 dev v23
    $IP -n ns3 addr add 10.0.2.2/24 dev v32
    for l in ns1:v12 ns2:v21 ns2:v23 ns3:v32; do $IP -n ${l%:*} link set ${l#*:} up; done
    $IP -n ns1 route add default via 10.0.1.2
    $IP -n ns3 route add default via 10.0.2.1
    $IP netns exec ns2 sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'
}

forward_ping() { $IP netns exec ns1 $PING -c 1 -W 2 10.0.2.2; }

forward_teardown() { for n in ns1 ns2 ns3; do $IP netns del $n; done; }

# Drops marked packets where they are delivered locally (filter INPUT).
drop_setup() {
    $NFT -f - <<NFT
table ip ipftdrop {
    chain in {
        type filter hook input priority filter;
        meta mark $MARK counter drop
    }
}
NFT
}

drop_teardown() {
    $NFT list table ip ipftdrop
    $NFT delete table ip ipftdrop
}

# VXLAN between ns a and ns b over the veth pair va (root, 10.0.3.1) / vb
# (ns b, 10.0.3.2). vxlan0 is created in the root namespace and moved to a:
# its underlay stays in root, so the tunnel crosses namespaces and
# iptunnel_xmit's skb_scrub_packet clears the mark (xnet). The marked ping
# goes a (10.0.4.1) -> b (10.0.4.2) through the overlay.
vxlan_setup() {
    for n in a b; do
        $IP netns add $n
        $IP -n $n link set lo up
    done
    $IP link add va type veth peer name vb netns b
    $IP addr add 10.0.3.1/24 dev va
    $IP link set va up
    $IP -n b addr add 10.0.3.2/24 dev vb
    $IP -n b link set vb up
    $IP link add vxlan0 type vxlan id 42 local 10.0.3.1 remote 10.0.3.2 dstport 4789 dev va
    $IP link set vxlan0 netns a
    $IP -n a addr add 10.0.4.1/24 dev vxlan0
    $IP -n a link set vxlan0 up
    $IP -n b link add vxlan1 type vxlan id 42 local 10.0.3.2 remote 10.0.3.1 dstport 4789 dev vb
    $IP -n b addr add 10.0.4.2/24 dev vxlan1
    $IP -n b link set vxlan1 up
    # Resolve neighbours on both layers now.
    $IP netns exec a $PING -c 1 -W 5 10.0.4.2
}

vxlan_ping() { $IP netns exec a $PING -m $MARK -c 1 -W 2 10.0.4.2; }

vxlan_teardown() {
    for n in a b; do $IP netns del $n; done
    $IP link del va 2>/dev/null || true
}

# Echo requests in sequence over loopback: each request is freed before the
# next is allocated, so the slab hands the same memory out again. Pinned to
# one CPU (loopback receives on the sending CPU) so the per-CPU free list
# is the one reused.
REUSE_COUNT=6
ping_lo_repeat() { taskset 1 $PING -m $MARK -c $REUSE_COUNT -i 0.2 -W 2 127.0.0.1; }

# A broadcast ping: ip_mc_output loops a clone (skb_clone) of the marked
# packet back to the local stack while the original leaves on vc0.
broadcast_setup() {
    $IP link add vc0 type veth peer name vc1
    $IP addr add 10.0.6.1/24 brd + dev vc0
    $IP link set vc0 up
    $IP link set vc1 up
}

broadcast_ping() { $PING -b -m $MARK -c 1 -W 1 10.0.6.255 || true; }

broadcast_teardown() { $IP link del vc0; }

# -f and --netns/--dev: the selected flow is UDP to port 7777 (SELECTED),
# sent by busybox tftp (a read request, retried for 2 s; nothing answers,
# so the receiver drops it in udp_rcv); unmarked. Other traffic runs beside
# it on the same path and must not be traced: UDP to port 7778 and pings.
SELECTED=7777
# `udp_to NS ADDR PORT`: read requests from NS to ADDR:PORT for 2 s.
udp_to() { $IP netns exec $1 timeout 2 busybox tftp -g -r ipft -l /dev/null $2 $3 || true; }

# `beside NS ADDR`: the other traffic to ADDR, in the background; its
# processes in BESIDE (a plain `wait` would wait for ipft too).
beside() {
    udp_to $1 $2 7778 &
    BESIDE=$!
    $IP netns exec $1 $PING -c 20 -i 0.1 -W 1 $2 >/dev/null 2>&1 &
    BESIDE="$BESIDE $!"
}

select_forward_setup() {
    three_namespaces
    $IP netns exec ns1 $PING -c 1 -W 5 10.0.2.2
}

select_forward_traffic() {
    beside ns1 10.0.2.2
    udp_to ns1 10.0.2.2 $SELECTED
    wait $BESIDE
}

select_vxlan_traffic() {
    beside a 10.0.4.2
    udp_to a 10.0.4.2 $SELECTED
    wait $BESIDE
}

# SRv6 between ns s and ns d over the veth pair vs (fc00::1, 10.0.7.1) / vd
# (fc00::2, 10.0.7.2): s sends 10.0.8.0/24 encapsulated in IPv6 with a
# segment routing header (seg6 mode encap) to the segment fc00::100, which
# d decapsulates with End.DX4 (seg6local) to 10.0.8.1, one of its own
# addresses: the inner UDP is received by d's udp_rcv.
srv6_setup() {
    for n in s d; do
        $IP netns add $n
        $IP -n $n link set lo up
        $IP netns exec $n sh -c 'echo 1 >/proc/sys/net/ipv6/conf/all/seg6_enabled; echo 1 >/proc/sys/net/ipv6/conf/all/forwarding; echo 0 >/proc/sys/net/ipv4/conf/all/rp_filter'
    done
    $IP link add vs netns s type veth peer name vd netns d
    $IP netns exec d sh -c 'echo 1 >/proc/sys/net/ipv6/conf/vd/seg6_enabled; echo 0 >/proc/sys/net/ipv4/conf/vd/rp_filter'
    $IP -n s addr add fc00::1/64 dev vs nodad
    $IP -n d addr add fc00::2/64 dev vd nodad
    $IP -n s addr add 10.0.7.1/24 dev vs
    $IP -n d addr add 10.0.7.2/24 dev vd
    $IP -n d addr add 10.0.8.1/32 dev lo
    $IP -n s link set vs up
    $IP -n d link set vd up
    $IP -n s -6 route add fc00::100/128 via fc00::2 dev vs
    $IP -n s route add 10.0.8.0/24 encap seg6 mode encap segs fc00::100 dev vs
    $IP -n d -6 route add fc00::100/128 encap seg6local action End.DX4 nh4 10.0.8.1 dev vd
    $IP -n s route show
    $IP -n d -6 route show
    # Neighbours on both layers, and the tunnel once.
    $IP netns exec s $PING -c 1 -W 5 fc00::2
    $IP netns exec s $PING -c 1 -W 5 10.0.8.1
}

srv6_traffic() {
    beside s 10.0.8.1
    udp_to s 10.0.8.1 $SELECTED
    wait $BESIDE
}

srv6_teardown() { for n in s d; do $IP netns del $n; done; }

# UDP over loopback from the root namespace: one datagram from socat, its
# socket marked (SO_MARK: option 36 of SOL_SOCKET, 1).
SOCAT=/usr/bin/socat
UDP_CLOSED=7779
UDP_BOUND=7780
udp_send() { echo ipft-udp | $SOCAT -u - UDP4-SENDTO:127.0.0.1:$1,sockopt-int=1:36:$MARK; }

# Nobody listens on UDP_CLOSED: UDP's receive drops the datagram
# (NO_SOCKET) and answers with an ICMP port unreachable, which is unmarked.
udp_closed() { udp_send $UDP_CLOSED; }

udp_bound() { udp_send $UDP_BOUND; }

# A socat bound to UDP_BOUND reads what arrives into a file the teardown
# shows (`received: ipft-udp`). It is bound before ipft starts.
udp_bound_setup() {
    $SOCAT -u UDP4-RECV:$UDP_BOUND,bind=127.0.0.1 OPEN:/tmp/udp-received,creat,trunc &
    UDP_READER=$!
    port=$(printf ':%04X ' $UDP_BOUND)
    for _ in $(seq 50); do
        grep -q "$port" /proc/net/udp && return 0
        sleep 0.1
    done
    echo "socat never bound UDP port $UDP_BOUND"
    return 1
}

udp_bound_teardown() {
    kill $UDP_READER
    wait $UDP_READER
    echo "received: $(cat /tmp/udp-received)"
    rm -f /tmp/udp-received
}
