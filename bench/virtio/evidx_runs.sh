#!/bin/sh
# evidx_runs.sh: the timed half of bench/virtio/evidx.sh, POSIX sh so it runs in the test bed.
# Boots kiln ROUNDS times with VIRTIO_F_RING_EVENT_IDX offered and ROUNDS times without
# (KILN_VIRTIO_NO_EVENT_IDX=1), alternating which goes first, for three workloads each:
#   blk   blk-bench (sequential write/read, 4 KiB random read QD1/QD8) on a fresh image
#   vtput vsock guest->host then host->guest stream (vsock-test blast against count)
#   vrr   vsock 64-byte round trips (host client against the guest's echo)
# and prints one line per boot:
#   RESULT evidx=on|off round=N work=W key=value ... irq_virtioN=<guest delta> ...
#   STATS evidx=on|off round=N work=W <kiln's -v transport counters line>
# Usage: evidx_runs.sh DIR ROUNDS BLK_MIB BLK_SECS VSOCK_BYTES RR_COUNT
# Environment: EVIDX_WORK (blk vtput vrr), EVIDX_VARIANTS (on off; base needs DIR/kiln.base)
# (DIR holds kiln, vmlinux, initrd with blk-bench and vsock-test, and vsock-test for the host)
dir=$1 rounds=$2 mib=$3 secs=$4 bytes=$5 rr=$6
cd "$dir" || exit 1
D=$(mktemp -d /tmp/evidx.XXXXXX)
trap 'rm -rf "$D"' EXIT
img=$D/blk.img
num() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" "$2" | tail -n 1; }
# Guest side: the virtio lines of /proc/interrupts (no double quotes: init strips one pair).
IRQ="grep virtio /proc/interrupts | sed 's/^/IRQ /'"
# Host side: "IRQ <name> <count summed over CPUs>" per dumped line, in order.
irq_lines() {
    tr -d '\r' <"$1" | awk '/^IRQ / { s = 0; for (i = 3; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i
        print "IRQ", $NF, s }'
}

# Variant on: EVENT_IDX offered; off: withheld; base: ./kiln.base (another build to compare,
# EVENT_IDX offered), when EVIDX_VARIANTS names it.
kiln() {
    v=$1
    shift
    case $v in
    off) KILN_VIRTIO_NO_EVENT_IDX=1 ./kiln "$@" ;;
    base) KILN_VIRTIO_NO_EVENT_IDX="" ./kiln.base "$@" ;;
    *) KILN_VIRTIO_NO_EVENT_IDX="" ./kiln "$@" ;;
    esac
}

# Prints the guest's interrupt deltas (second IRQ dump minus the first) as irq_NAME=N.
irq_deltas() {
    irq_lines "$1" | awk '{ n = $2; if (n in a) d[n] = $3 - a[n]; else a[n] = $3 }
        END { for (n in d) printf " irq_%s=%d", n, d[n] }'
}

report() { # evidx round work logfile results...
    ev=$1 r=$2 w=$3 f=$4
    shift 4
    echo "RESULT evidx=$ev round=$r work=$w $*$(irq_deltas "$f")"
    grep -a 'stats' "$f" | sed "s/^/STATS evidx=$ev round=$r work=$w /"
}

one_blk() {
    dd if=/dev/zero of="$img" bs=1048576 count="$mib" 2>/dev/null || return
    kiln "$1" run -v --timeout "${EVIDX_VM_TIMEOUT:-300}" --kernel vmlinux --initrd initrd --mem 256M --cpus 1 \
        --no-vsock --disk "$img" \
        --append "kiln.exit=reboot -- \"$IRQ; blk-bench /dev/vda $mib $secs; $IRQ\"" \
        </dev/null >"$D/blk" 2>&1
    line=$(sed -n 's/^BLKBENCH \(.*\)$/\1/p' "$D/blk" | tr -d '\r' | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAILED evidx=$1 round=$2 work=blk"
        tail -n 15 "$D/blk" | sed 's/^/    | /'
        return
    fi
    report "$1" "$2" blk "$D/blk" "$line"
}

one_vtput() {
    V=$D/v.sock
    rm -f "$D/h2g" "$D/g2h"
    ./vsock-test serve "unix:${V}_7000" count -n 1 >"$D/s7000" 2>&1 &
    srv=$!
    # host->guest only once guest->host is over (the guest serves 7001 after its blast).
    (
        while kill -0 $srv 2>/dev/null; do sleep 0.05; done
        ./vsock-test client "unix:$V:7001" "blast:$bytes" -r 120000 >"$D/h2g" 2>&1
    ) &
    hc=$!
    G="vsock-test client vsock:2:7000 blast:$bytes; $IRQ; vsock-test serve vsock:7001 count -n 1; $IRQ"
    kiln "$1" run -v --timeout "${EVIDX_VM_TIMEOUT:-300}" --mem 512M --kernel vmlinux --initrd initrd --vsock "$V" \
        --append "quiet -- \"$IRQ; $G\"" </dev/null >"$D/vt" 2>&1
    wait $hc
    kill $srv 2>/dev/null
    g2h=$(num MiBps "$D/vt")
    h2g=$(num MiBps "$D/h2g")
    if [ -z "$g2h" ] || [ -z "$h2g" ]; then
        echo "FAILED evidx=$1 round=$2 work=vtput"
        tail -n 15 "$D/vt" "$D/h2g" | sed 's/^/    | /'
        return
    fi
    # Three dumps: before, after g2h, after h2g. Report the g2h and h2g deltas separately.
    irq_lines "$D/vt" | awk '{ c[$2]++; v[$2, c[$2]] = $3 } END { for (n in c) if (c[n] >= 3)
        printf "IRQ_G2H %s %d\nIRQ_H2G %s %d\n", n, v[n, 2] - v[n, 1], n, v[n, 3] - v[n, 2] }' \
        >"$D/vt.irq"
    echo "RESULT evidx=$1 round=$2 work=vtput g2h_mibps=$g2h h2g_mibps=$h2g$(awk \
        '{ printf " irq_%s_%s=%s", tolower(substr($1, 5)), $2, $3 }' "$D/vt.irq")"
    grep -a 'stats' "$D/vt" | sed "s/^/STATS evidx=$1 round=$2 work=vtput /"
}

one_vrr() {
    V=$D/r.sock
    ./vsock-test client "unix:$V:7002" "rr:$rr:64" -r 120000 >"$D/rr" 2>&1 &
    hc=$!
    kiln "$1" run -v --timeout "${EVIDX_VM_TIMEOUT:-300}" --mem 512M --kernel vmlinux --initrd initrd --vsock "$V" \
        --append "quiet -- \"$IRQ; vsock-test serve vsock:7002 echo -n 1; $IRQ\"" \
        </dev/null >"$D/vr" 2>&1
    wait $hc
    med=$(num median_us "$D/rr")
    p90=$(num p90_us "$D/rr")
    if [ -z "$med" ]; then
        echo "FAILED evidx=$1 round=$2 work=vrr"
        tail -n 15 "$D/vr" "$D/rr" | sed 's/^/    | /'
        return
    fi
    report "$1" "$2" vrr "$D/vr" "rr_median_us=$med rr_p90_us=$p90"
}

r=1
while [ "$r" -le "$rounds" ]; do
    order=${EVIDX_VARIANTS:-on off}
    # Odd rounds in the given order, even rounds reversed.
    [ $((r % 2)) = 1 ] || order=$(echo "$order" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }')
    for w in ${EVIDX_WORK:-blk vtput vrr}; do
        for ev in $order; do one_"$w" "$ev" "$r"; done
    done
    r=$((r + 1))
done
