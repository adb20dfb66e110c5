# Guest side of `cargo xtask bench` (not a test): `bench_backend BACKEND`
# measures one backend with the xtask binary copied into the image (it times
# ipft far finer than this shell could) and frames its output like a VM case:
# the host reads the `bench-result {json}` line from the case's log.
bench_backend() {
    echo "@@ipft-vm case bench-$1 begin" >&3
    echo "@@ipft-vm stage measuring $1" >&3
    /usr/bin/xtask bench probe --backend "$1" --ipft /usr/bin/ipft </dev/null >&3 2>&1 ||
        echo "bench probe $1 failed" >&3
    echo "@@ipft-vm case bench-$1 end" >&3
}
