# Guest side of `cargo xtask bench` (not a test): `bench_backend BACKEND
# [PROBE OPTIONS]` measures one backend with the xtask binary copied into the
# image (it times ipft far finer than this shell could) and frames its output
# like a VM case: the host reads the `bench-result {json}` line from the
# case's log. The host adds `--anchor PATH` when it put ipftrace2 in the image.
bench_backend() {
    backend=$1
    shift
    echo "@@ipft-vm case bench-$backend begin" >&3
    echo "@@ipft-vm stage measuring $backend" >&3
    /usr/bin/xtask bench probe --backend "$backend" --ipft /usr/bin/ipft "$@" </dev/null >&3 2>&1 ||
        echo "bench probe $backend failed" >&3
    echo "@@ipft-vm case bench-$backend end" >&3
}
