# Case runner for the guest: `run_case NAME TIMEOUT SETUP TRAFFIC TEARDOWN IPFT-ARGS...`
# starts ipft, waits for "Trace ready!", sends the traffic, stops ipft with
# SIGINT and reports everything (stdout, stderr, setup/traffic output, exit
# status, timings) to fd 3 as JSON lines (tests/src/vm/output.rs). The host
# judges the output; nothing is judged here.
#
# `capture_case file|stream NAME ...` is run_case with ipft's pcapng (-w)
# read by tshark: `file` reads /tmp/cases/NAME/capture.pcapng once ipft
# exits; `stream` pipes ipft's stdout (-w -) into a tshark -r - that runs
# beside it. tshark's lines are reported as the `frames` stream.

# One line per frame, tab-separated; a field seen twice (a tunnel's outer
# and inner headers) gives both values joined by a comma.
TSHARK_FIELDS="-T fields -E separator=/t -E occurrence=a -e frame.interface_name -e frame.comment -e frame.protocols -e ip.src -e ip.dst -e udp.dstport -e icmp.type"

# The JSON lines on fd 3: one object per line. Case ids are plain words;
# jq escapes every text (any byte ipft printed arrives as JSON). -M: fd 3
# is a serial terminal, on which jq would colour its output.

# `event CASE EVENT`: begin or end.
event() { printf '{"case":"%s","event":"%s"}\n' "$1" "$2" >&3; }

# `stage CASE TEXT`: where the case got to, to explain a guest that never
# finishes.
stage() { jq -Mnc --arg c "$1" --arg s "$2" '{case:$c,event:"stage",stage:$s}' >&3; }

# `result CASE FIELDS`: FIELDS are JSON members (`"exit":0,...`).
result() { printf '{"case":"%s","event":"result",%s}\n' "$1" "$2" >&3; }

# `stream CASE NAME FILE`: the file's text (none if it is missing).
stream() {
    cat "$3" 2>/dev/null | jq -MRsc --arg c "$1" --arg n "$2" '{case:$c,event:"stream",name:$n,text:.}' >&3
}

# `note TEXT`: a message outside any case.
note() { jq -Mnc --arg t "$1" '{event:"note",text:$t}' >&3; }

capture_case() {
    CAPTURE=$1
    shift
    run_case "$@"
    CAPTURE=
}

now_ms() {
    read -r up _ </proc/uptime
    echo $((${up%.*} * 1000 + 1${up#*.} * 10 - 1000))
}

# A child that exited stays a zombie until `wait`: kill -0 would still succeed.
alive() {
    s=$(cat /proc/$1/stat 2>/dev/null) || return 1
    case "$s" in *") Z "*) return 1 ;; esac
}

# Waits until ipft's stderr says it is ready (0), it exits, or TIMEOUT s pass.
wait_ready() {
    while alive $pid; do
        grep -q 'Trace ready!' $d/err && return 0
        [ $(($(now_ms) - start)) -gt $(($1 * 1000)) ] && echo "ipft not ready after $1 s" >>$d/log && return 1
        sleep 0.1
    done
    grep -q 'Trace ready!' $d/err
}

wait_exit() {
    t0=$(now_ms)
    while alive $pid; do
        if [ $(($(now_ms) - t0)) -gt $(($1 * 1000)) ]; then
            echo "ipft still running $1 s after SIGINT: killed" >>$d/log
            kill -KILL $pid
            break
        fi
        sleep 0.1
    done
}

# Once ipft exited: the stream's tshark ends at the end of its input; the
# file's is run now. Its stderr and status go to the log.
read_capture() {
    case "$CAPTURE" in
    stream)
        pid=$tshark_pid
        wait_exit $1
        wait $pid
        ;;
    file) tshark -r $d/capture.pcapng $TSHARK_FIELDS >$d/frames 2>$d/tshark ;;
    *) return ;;
    esac
    echo "tshark exited $?" >>$d/log
    cat $d/tshark >>$d/log
}

run_case() {
    name=$1 timeout=$2 setup=$3 traffic=$4 teardown=$5
    shift 5
    d=/tmp/cases/$name
    mkdir -p $d
    event $name begin
    $setup >$d/log 2>&1 || echo "setup $setup failed" >>$d/log
    start=$(now_ms)
    if [ "$CAPTURE" = stream ]; then
        mkfifo $d/pcap
        : >$d/out
        tshark -r - $TSHARK_FIELDS <$d/pcap >$d/frames 2>$d/tshark &
        tshark_pid=$!
        ipft "$@" >$d/pcap 2>$d/err &
    else
        ipft "$@" >$d/out 2>$d/err &
    fi
    pid=$!
    # Stages tell the host where a guest that never finishes got stuck.
    stage $name "ipft started, waiting for Trace ready!"
    ready=-1
    if wait_ready $timeout; then
        ready=$(($(now_ms) - start))
        stage $name "ready after $ready ms, sending traffic"
        $traffic >>$d/log 2>&1 || echo "traffic $traffic failed" >>$d/log
        # Let the perf buffers drain before asking for the table.
        sleep 2
    fi
    stage $name "SIGINT sent, waiting for ipft to print and exit"
    stop_start=$(now_ms)
    kill -INT $pid 2>/dev/null
    wait_exit $timeout
    wait $pid
    rc=$?
    stop=$(($(now_ms) - stop_start))
    read_capture $timeout
    $teardown >>$d/log 2>&1 || echo "teardown $teardown failed" >>$d/log
    result $name "\"ready_ms\":$ready,\"stop_ms\":$stop,\"exit\":$rc"
    stream $name stdout $d/out
    tr '\r' '\n' <$d/err >$d/err.lines
    stream $name stderr $d/err.lines
    stream $name log $d/log
    [ -n "$CAPTURE" ] && stream $name frames $d/frames
    event $name end
    rm -rf $d
}

# Test runner: `run_tests NAME TIMEOUT BINARY ARGS...` runs one of the
# host's test binaries (tests/tests/*.rs) against the guest's ipft and
# reports its libtest stdout and stderr like a case's. Its own session, so
# that a binary stuck past TIMEOUT is killed with every ipft it started.
run_tests() {
    name=$1 timeout=$2 bin=$3
    shift 3
    d=/tmp/cases/$name
    mkdir -p $d
    event $name begin
    stage $name "running $bin"
    start=$(now_ms)
    IPFT_BIN=/usr/bin/ipft IPFT_TESTS_MUST_RUN=1 setsid $bin "$@" >$d/out 2>$d/err &
    pid=$!
    while alive $pid; do
        if [ $(($(now_ms) - start)) -gt $((timeout * 1000)) ]; then
            echo "$bin still running after $timeout s: killed" >>$d/log
            kill -KILL -$pid
            break
        fi
        sleep 1
    done
    wait $pid
    rc=$?
    result $name "\"took_ms\":$(($(now_ms) - start)),\"exit\":$rc"
    stream $name stdout $d/out
    stream $name stderr $d/err
    stream $name log $d/log
    event $name end
    rm -rf $d
}
