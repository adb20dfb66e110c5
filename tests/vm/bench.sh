# Guest side of `cargo xtask bench` (not a test): `bench_backend BACKEND
# [PROBE OPTIONS]` measures one backend with the xtask binary copied into the
# image (it times ipft far finer than this shell could) and reports its output
# like a VM case (cases.sh's JSON lines): the host reads the
# `bench-result {json}` line from the case's log. The host adds
# `--anchor PATH` when it put ipftrace2 in the image.
bench_backend() {
    backend=$1
    shift
    name=bench-$backend
    event $name begin
    stage $name "measuring $backend"
    /usr/bin/xtask bench probe --backend "$backend" --ipft /usr/bin/ipft "$@" </dev/null >/tmp/$name.log 2>&1 ||
        echo "bench probe $backend failed" >>/tmp/$name.log
    stream $name log /tmp/$name.log
    event $name end
    rm -f /tmp/$name.log
}
