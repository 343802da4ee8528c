#!/bin/sh
# vsock_run.sh: the measuring half of bench/virtio/part_vsock.sh, POSIX sh so it runs in the test
# bed too. Usage: vsock_run.sh KILN VMLINUX INITRD_TOOLS VSOCK_TEST BYTES RR_COUNT PLACE
# One VM: guest->host and host->guest stream throughput (vsock-test blast against count) and
# small-message round trips (64 bytes against echo); then the same on a plain Unix socket between
# two host processes (the ceiling). Prints a table and one "JSON {...}" line.
KILN=$1 KERNEL=$2 INITRD=$3 VT=$4 BYTES=$5 RR=$6 PLACE=$7
D=$(mktemp -d /tmp/vsockbench.XXXXXX)
trap 'rm -rf "$D"' EXIT
V=$D/v.sock
num() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" "$2" | tail -n 1; }

# ---- kiln: one boot does all three measurements ----
"$VT" serve "unix:${V}_7000" count -n 1 >"$D/s7000" 2>&1 &
srv=$!
(
    "$VT" client "unix:$V:7001" "blast:$BYTES" -r 60000 >"$D/h2g" 2>&1
    "$VT" client "unix:$V:7002" "rr:$RR:64" -r 60000 >"$D/rr" 2>&1
) &
hosts=$!
G="vsock-test serve vsock:7001 count -n 1 & vsock-test serve vsock:7002 echo -n 1 &"
G="$G vsock-test client vsock:2:7000 blast:$BYTES; wait"
"$KILN" run --timeout "${VSOCKBENCH_VM_TIMEOUT:-600}" --mem 512M --kernel "$KERNEL" --initrd "$INITRD" --vsock "$V" \
    --append "quiet -- \"$G\"" >"$D/guest" 2>&1
kiln_status=$?
wait $hosts
kill $srv 2>/dev/null
k_g2h=$(num MiBps "$D/guest")
k_h2g=$(num MiBps "$D/h2g")
k_rr=$(num median_us "$D/rr")
k_rr90=$(num p90_us "$D/rr")

# ---- the ceiling: the same programs over a plain Unix socket on this host ----
"$VT" serve "unix:$D/p1" count -n 2 >/dev/null 2>&1 &
"$VT" serve "unix:$D/p2" echo -n 1 >/dev/null 2>&1 &
sleep 0.3
"$VT" client "plain:$D/p1" "blast:$BYTES" >"$D/p_a" 2>&1
"$VT" client "plain:$D/p1" "blast:$BYTES" >"$D/p_b" 2>&1
"$VT" client "plain:$D/p2" "rr:$RR:64" >"$D/p_rr" 2>&1
wait
p_g2h=$(num MiBps "$D/p_a")
p_h2g=$(num MiBps "$D/p_b")
p_rr=$(num median_us "$D/p_rr")
p_rr90=$(num p90_us "$D/p_rr")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "null"; else printf "%.3f", a / b }'; }
orn() { [ -n "$1" ] && echo "$1" || echo null; }
r_g2h=$(ratio "$k_g2h" "$p_g2h")
r_h2g=$(ratio "$k_h2g" "$p_h2g")
r_rr=$(ratio "$p_rr" "$k_rr") # latency: ceiling / kiln, so 1.0 is as good as the ceiling

echo "vsock benchmark: $PLACE; $BYTES bytes per stream, $RR round trips of 64 bytes"
printf '%-26s %14s %14s %8s %s\n' figure kiln-vsock plain-unix ratio target
printf '%-26s %14s %14s %8s %s\n' "guest->host MiB/s" "${k_g2h:-n/a}" "${p_g2h:-n/a}" "$r_g2h" ">= 0.5"
printf '%-26s %14s %14s %8s %s\n' "host->guest MiB/s" "${k_h2g:-n/a}" "${p_h2g:-n/a}" "$r_h2g" ">= 0.5"
printf '%-26s %14s %14s %8s %s\n' "round trip median us" "${k_rr:-n/a}" "${p_rr:-n/a}" "$r_rr" ">= 0.5 (ceiling/kiln)"
printf '%-26s %14s %14s\n' "round trip p90 us" "${k_rr90:-n/a}" "${p_rr90:-n/a}"
if [ "$kiln_status" != 0 ] || [ -z "$k_h2g" ] || [ -z "$k_rr" ]; then
    echo "kiln exited $kiln_status; guest console, then the host-side clients:"
    tail -n 20 "$D/guest" "$D/h2g" "$D/rr"
fi
echo "JSON {\"place\":\"$PLACE\",\"bytes\":$BYTES,\"rr_count\":$RR,\"rr_size\":64,\
\"kiln\":{\"g2h_mibps\":$(orn "$k_g2h"),\"h2g_mibps\":$(orn "$k_h2g"),\"rr_median_us\":$(orn "$k_rr"),\"rr_p90_us\":$(orn "$k_rr90")},\
\"plain_unix\":{\"g2h_mibps\":$(orn "$p_g2h"),\"h2g_mibps\":$(orn "$p_h2g"),\"rr_median_us\":$(orn "$p_rr"),\"rr_p90_us\":$(orn "$p_rr90")},\
\"ratio\":{\"g2h\":$r_g2h,\"h2g\":$r_h2g,\"rr\":$r_rr},\"target\":0.5}"
[ -n "$k_g2h" ] && [ -n "$k_h2g" ] && [ -n "$k_rr" ]
