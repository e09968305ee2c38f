#!/bin/busybox sh
# /init of the kernel-matrix initramfs (`cargo xtask kernels`): runs the static
# floodgate binary on the booted kernel and prints one result line on the serial
# console, `fgvm: RESULT PASS <release>` or `fgvm: RESULT FAIL <release>`; the
# host passes a kernel only on the PASS line.
#
# The lab: a veth pair, fg0 here (floodgate filters it) and fg1 in a client
# network namespace; vmprobe sends UDP from fg1 to a socket on fg0 and counts
# what arrives. The policy limits every source to 10 packets/s, burst 20
# (ports = [], so UDP counts).

/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
# /sys/fs/bpf is left unmounted: the daemon mounts a bpffs where it is missing.

REL=$(uname -r)
SOCK=/run/floodgate.sock
CONF=/etc/floodgate.toml
DEST=198.18.0.1:9000
FLOOD=200

say() { echo "fgvm: $*"; }
finish() {
    say "RESULT $1 $REL"
    sync
    poweroff -f
}
fail() {
    say "FAIL $*"
    [ -f /tmp/daemon.log ] && sed 's/^/fgvm: daemon: /' /tmp/daemon.log
    finish FAIL
}
# step DESCRIPTION COMMAND...: runs COMMAND, shows its output, fails on non-zero.
step() {
    desc=$1
    shift
    if "$@" >/tmp/out 2>&1; then
        sed 's/^/fgvm:   /' /tmp/out
        say "ok $desc"
    else
        sed 's/^/fgvm:   /' /tmp/out
        fail "$desc"
    fi
}
fg() { floodgate --socket "$SOCK" "$@"; }

# start MODE: the daemon in the background; waits for its control socket.
start() {
    floodgate --socket "$SOCK" run --iface fg0 --xdp-mode "$1" --config "$CONF" \
        --pin-dir /sys/fs/bpf/floodgate --state-dir /tmp/state >>/tmp/daemon.log 2>&1 &
    DAEMON=$!
    i=0
    while ! fg status >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 $DAEMON 2>/dev/null; then
            fail "the daemon started ($1)"
        fi
        sleep 1
    done
}
status_has() { fg status --json | tr -d ' \n' | grep -q "$1"; }
flood() { vmprobe "$CLIENT" "$DEST" "$FLOOD" "$1"; }

say "kernel $REL on $(uname -m)"
step "floodgate runs here: $(floodgate --version)" floodgate --version
step "the policy checks" floodgate config check "$CONF"

step "veth.ko loads" insmod /lib/veth.ko
ip link set lo up
# busybox ip has no `peer`: the kernel names the other end veth0.
step "a veth pair" ip link add name fg0 type veth
step "its peer renamed" ip link set veth0 name fg1
unshare -n sleep 100000 &
CLIENT=$!
while [ "$(readlink /proc/$CLIENT/ns/net)" = "$(readlink /proc/self/ns/net)" ]; do sleep 0.1; done
step "the client end in its own namespace" ip link set fg1 netns "$CLIENT"
ip addr add 198.18.0.1/24 dev fg0
ip link set fg0 up
nsenter -t "$CLIENT" -n ip addr add 198.18.0.2/24 dev fg1
nsenter -t "$CLIENT" -n ip link set fg1 up
nsenter -t "$CLIENT" -n ip link set lo up
step "UDP crosses the veth unfiltered" flood all

# Ten million sources need about a GiB of kernel memory: more than the
# default 25 % of what a 1 GiB guest has available. (The default capacities
# need about 126 MiB since layout 5, which such a guest may fit.) A first
# start refuses, naming [capacity], before it loads or pins anything; the
# timeout keeps a daemon that started anyway from holding up the run.
refuses_too_large() {
    printf '[capacity]\nsources = 10_000_000\n' >/tmp/large.toml
    if timeout 120 floodgate --socket "$SOCK" run --iface fg0 --config /tmp/large.toml \
        --pin-dir /sys/fs/bpf/floodgate-large --state-dir /tmp/state-large \
        >/tmp/large.log 2>&1; then
        echo "the daemon started with ten million sources"
        return 1
    fi
    cat /tmp/large.log
    grep -q '\[capacity\]' /tmp/large.log || return 1
    [ ! -e /sys/fs/bpf/floodgate-large/maps ] || { echo "it left pins behind"; return 1; }
}
step "ten million sources are refused on a 1 GiB host, naming [capacity]" refuses_too_large

: >/tmp/daemon.log
start native
step "attached in native mode" status_has '"mode":"native"'
step "UDP limited to 10/s, burst 20 (native)" flood limit:20:10
step "stats count the drops as rate_packets" sh -c "floodgate --socket $SOCK stats --json | grep -q rate_packets"

kill -9 "$DAEMON"
wait "$DAEMON" 2>/dev/null
sleep 3
step "still limited with the daemon killed (pinned link)" flood limit:20:10
start native
step "the restarted daemon adopted the pinned state" status_has '"adopted_pinned_state":true'
sleep 3
step "limited after the restart" flood limit:20:10

sed -i 's/^packets_burst = 20$/packets_burst = 60/' "$CONF"
step "reload" fg reload
sleep 7
step "the reloaded burst of 60 applies" flood limit:60:10

step "detach" fg detach
wait "$DAEMON" 2>/dev/null
step "nothing filtered after detach" flood all

sed -i 's/^packets_burst = 60$/packets_burst = 20/' "$CONF"
start generic
step "attached in generic mode" status_has '"mode":"generic"'
step "UDP limited to 10/s, burst 20 (generic)" flood limit:20:10
step "detach (generic)" fg detach
wait "$DAEMON" 2>/dev/null
step "nothing filtered after detaching generic" flood all

finish PASS
