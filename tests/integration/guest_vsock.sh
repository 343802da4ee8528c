#!/bin/sh
# Guest vsock tests: the guest's virtio_vsock driver against kiln's userspace device and the
# hybrid Unix-socket host side, with tests/guest/vsock-test.c on both ends: echo both ways,
# checksummed bulk transfers both ways, 64 concurrent connections, a host peer dying mid-transfer
# (the VM carries on, the next connection works) and a refused host-initiated connection.
# POSIX sh: runs under busybox in the test bed. See docs/vsock.md.
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
KILN=$BUILD/kiln
ASSETS=$BUILD/it-assets
SUITE=guest_vsock
. tests/integration/lib.sh

VT=$ASSETS/tools-root/usr/bin/vsock-test
INITRD=$ASSETS/initrd-tools.cpio.gz
# Bulk size: 16 MiB keeps the suite at seconds in the test bed (about 20x slower than hardware);
# bench/virtio/part_vsock.sh moves 64 MiB and more.
BULK=${KILN_VSOCK_BULK:-16777216}
V=$OUT/v.sock

if [ ! -x "$VT" ] || [ ! -f "$INITRD" ]; then
    fail vsock_assets "missing $VT or $INITRD (make guest-tests; tests/integration/run.sh packs them)"
    summary
    exit
fi

# Host-side peers for guest-initiated connections: <uds>_<port>.
"$VT" serve "unix:${V}_6000" echo -n 2 >"$OUT/srv6000.log" 2>&1 &
servers=$!
"$VT" serve "unix:${V}_6001" sink -n 1 >"$OUT/srv6001.log" 2>&1 &
servers="$servers $!"
"$VT" serve "unix:${V}_6002" echo -n 64 >"$OUT/srv6002.log" 2>&1 &
servers="$servers $!"
"$VT" serve "unix:${V}_6003" abort:1048576 -n 1 >"$OUT/srv6003.log" 2>&1 &
servers="$servers $!"
# Host-initiated clients (retrying until the guest listens): echo and a checksummed bulk send.
(
    "$VT" client "unix:$V:5000" echo:1048576 -r 60000 >"$OUT/h_echo.log" 2>&1
    "$VT" client "unix:$V:5001" send:$BULK -r 60000 >"$OUT/h_bulk.log" 2>&1
    "$VT" client "unix:$V:5999" echo:1 >"$OUT/h_refused.log" 2>&1
    echo "exit=$?" >>"$OUT/h_refused.log"
) &
hosts=$!

G='vsock-test serve vsock:5000 echo -n 1 & vsock-test serve vsock:5001 sink -n 1 &'
G="$G vsock-test client vsock:2:6000 echo:1048576;"
G="$G vsock-test client vsock:2:6001 send:$BULK;"
G="$G vsock-test client vsock:2:6002 echo:65536 -c 64;"
G="$G vsock-test client vsock:2:6003 abort:67108864;"
G="$G vsock-test client vsock:2:6000 echo:65536; wait; echo guest-vsock-done"
run vsock_guest 0 "$KILN" run --timeout 300 --mem 512M --initrd "$INITRD" --vsock "$V" \
    --append "-- \"$G\""
wait $hosts
kill $servers 2>/dev/null

if expect vsock_guest 'guest-vsock-done'; then
    expect vsock_guest 'OK echo:1048576 bytes=1048576' && pass vsock_guest_to_host_echo
    expect vsock_guest "OK send:$BULK bytes=$BULK" && pass vsock_guest_to_host_bulk_checksum
    expect vsock_guest 'OK 64 concurrent echo:65536' && pass vsock_64_concurrent
    expect vsock_guest 'OK transfer broke as expected' && pass vsock_host_peer_vanishes
    expect vsock_guest 'OK echo:65536 bytes=65536' && pass vsock_next_connection_works
fi
check vsock_host_to_guest_echo 0 'OK echo:1048576' cat "$OUT/h_echo.log"
check vsock_host_to_guest_bulk_checksum 0 "OK send:$BULK bytes=$BULK" cat "$OUT/h_bulk.log"
check vsock_host_refused 0 'FAIL connect.*exit=1' sh -c "tr '\n' ' ' <'$OUT/h_refused.log'"
grep -h 'MiBps' "$OUT/vsock_guest.log" "$OUT/h_bulk.log" 2>/dev/null | sed 's/^/    /'
summary
