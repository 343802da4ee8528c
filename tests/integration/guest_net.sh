#!/bin/sh
# Guest net tests: the Linux virtio_net driver against kiln's device over a tap. The guest pings
# the host side of the tap and fetches a few MiB over TCP from an HTTP server there; a second run
# has kiln create the tap itself and checks the MAC and negotiated features; a user without
# permission is refused with the documented message. Needs root (CAP_NET_ADMIN) and busybox's
# tunctl, ip and httpd. POSIX sh: runs under busybox in the test bed. See docs/net.md.
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
KILN=$BUILD/kiln
SUITE=guest_net

# A network namespace of our own when we can make one: the taps, their addresses and the server
# then never touch the host's networking (the test bed is a throwaway VM anyway).
if [ -z "${KILN_NET_NS:-}" ] && [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
    KILN_NET_NS=1 exec unshare -n "$self" "$@"
fi
. tests/integration/lib.sh

T="--timeout 120"
TAP=kilnnet0
NEWTAP=kilnnet1
HOST_IP=10.0.2.1
GUEST_IP=10.0.2.2

if [ "$(id -u)" != 0 ] || ! command -v tunctl >/dev/null || [ ! -e /dev/net/tun ]; then
    echo "$SUITE: needs root, busybox tunctl and /dev/net/tun; skipped"
    exit 0
fi
if [ -n "${KILN_NET_NS:-}" ]; then echo "$SUITE: in a network namespace of its own"
else echo "$SUITE: no unshare -n here: using this machine's network namespace"; fi

# (1) A persistent tap made beforehand, host side 10.0.2.1/24 (kiln attaches to it).
tunctl -t "$TAP" >/dev/null 2>&1 || ip link show "$TAP" >/dev/null 2>&1 ||
    { fail net_setup "tunctl -t $TAP failed"; summary; exit 1; }
ip addr add "$HOST_IP/24" dev "$TAP" && ip link set "$TAP" up ||
    { fail net_setup "cannot configure $TAP"; summary; exit 1; }
mkdir -p "$OUT/www"
head -c 4194304 /dev/urandom >"$OUT/www/blob"
want=$(sha256sum "$OUT/www/blob" | cut -d' ' -f1)
httpd -f -p "$HOST_IP:8080" -h "$OUT/www" &
httpd_pid=$!
# The upload's receiver. Busybox nc hangs up when its stdin ends, so its stdin is a fifo this
# shell holds open (fd 3) until the end.
mkfifo "$OUT/hold"
nc -l -p 9000 <"$OUT/hold" >"$OUT/upload" &
nc_pid=$!
exec 3>"$OUT/hold"

GUEST_CMD="ip addr add $GUEST_IP/24 dev eth0; ip link set eth0 up; ping -c 3 $HOST_IP; echo fetched=\$(wget -q -O - http://$HOST_IP:8080/blob | sha256sum | cut -d' ' -f1); head -c 2097152 /dev/urandom >/tmp/up; echo sent=\$(sha256sum </tmp/up | cut -d' ' -f1); nc $HOST_IP 9000 </tmp/up"
"$KILN" run $T --net "tap=$TAP" --append "-- \"$GUEST_CMD\"" >"$OUT/net_ping.log" 2>&1 </dev/null &
kiln_pid=$!

# While that VM holds the tap, a second kiln asking for it is refused: a tap has one user.
i=0
while ! ip link show "$TAP" | grep -q LOWER_UP && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
check net_tap_busy 2 "tap '$TAP' is busy" "$KILN" run $T --net "tap=$TAP" --append "-- true"

wait "$kiln_pid"
code=$?
kill "$httpd_pid" 2>/dev/null
i=0
while kill -0 "$nc_pid" 2>/dev/null && [ $i -lt 50 ]; do # the nc ends once the guest hangs up
    sleep 0.1
    i=$((i + 1))
done
exec 3>&-
kill "$nc_pid" 2>/dev/null
if [ "$code" != 0 ]; then
    fail net_ping "exit code $code, expected 0"
else
    expect net_ping '3 packets transmitted, 3 packets received' && pass net_ping
    expect net_ping "fetched=$want" && pass net_tcp_4mib
    got=$(sha256sum <"$OUT/upload" | cut -d' ' -f1)
    expect net_ping "sent=$got" && pass net_tcp_upload_2mib
fi

# (2) kiln creates the tap (CAP_NET_ADMIN), with the MAC we give; the driver negotiated what the
# device offers. Feature bits, 0 first: CSUM, GUEST_CSUM (0, 1), MAC (5), GUEST_TSO4/6, GUEST_ECN
# (7-9), HOST_TSO4/6, HOST_ECN (11-13), MRG_RXBUF (15), STATUS (16); never CTRL_VQ (17).
FEAT_CMD="ip link set eth0 up; echo mac=\$(cat /sys/class/net/eth0/address) link=\$(cat /sys/class/net/eth0/carrier) features=\$(cat /sys/class/net/eth0/device/features)"
check net_create_tap 0 'mac=02:4b:49:4c:4e:31 link=1' "$KILN" run $T \
    --net "tap=$NEWTAP,mac=02:4b:49:4c:4e:31" --append "-- \"$FEAT_CMD\""
expect net_create_tap 'features=110001011101110110' >/dev/null && pass net_features
if ip link show "$NEWTAP" >/dev/null 2>&1; then
    fail net_tap_gone "$NEWTAP still exists after kiln ended (it made it, so it should go with it)"
else
    pass net_tap_gone
fi

# (3) Without the permission (user nobody): refused before boot with the documented message and
# exit code 2. In the throwaway test bed, nobody is added to /etc/passwd if missing and may open
# /dev/kvm meanwhile (kiln creates the VM before its devices); elsewhere the check runs only if
# nobody can already use /dev/kvm.
kvm_mode=$(stat -c %a /dev/kvm)
if [ -n "${KILN_TESTBED:-}" ]; then
    grep -q '^nobody:' /etc/passwd || echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>/etc/passwd
    chmod o+rw /dev/kvm
fi
if su nobody -s /bin/sh -c 'test -r /dev/kvm && test -w /dev/kvm' 2>/dev/null; then
    rundir=$(mktemp -d)
    chmod 777 "$rundir"
    check net_refused 2 'cannot open /dev/net/tun: .*--net needs the tun module and CAP_NET_ADMIN' \
        su nobody -s /bin/sh -c "XDG_RUNTIME_DIR=$rundir $(pwd)/$KILN run $T --net tap=$NEWTAP"
    rm -rf "$rundir"
else
    echo "$SUITE: user nobody cannot open /dev/kvm here; net_refused skipped"
fi
chmod "$kvm_mode" /dev/kvm
check net_bad_mac 2 "mac '01:00:00:00:00:01'" "$KILN" run $T --net "tap=$NEWTAP,mac=01:00:00:00:00:01"

tunctl -d "$TAP" >/dev/null 2>&1
summary
