#!/bin/sh
# Guest file-service tests: the default image's kiln-fetch against kiln's read-only file service
# over vsock (--files DIR, --file NAME=PATH): a large file fetched in 64 KiB chunks with its
# checksum compared, a directory stat, a missing file, traversal attempts (`..`, `..` through a
# backslash, an absolute symlink and a relative one out of the root), /config/init.env applied by
# /init, and a VM with vsock but no service booting normally. POSIX sh: runs under busybox in the
# test bed. See docs/file-service.md.
cd "$(dirname "$0")/../.." || exit 1
BUILD=${1:-build}
KILN=$BUILD/kiln
SUITE=guest_files
. tests/integration/lib.sh

# 100 MiB by default; KILN_FILES_BIG_MIB overrides (see docs/file-service.md for timings).
BIG_MIB=${KILN_FILES_BIG_MIB:-100}
T="--timeout 300"
R=$OUT/root

rm -rf "$R"
mkdir -p "$R/sub/dir"
echo "secret" >"$OUT/outside.txt"
echo "f" >"$R/sub/dir/f"
ln -s /etc/passwd "$R/abs"
ln -s ../outside.txt "$R/up"
ln -s sub/dir/f "$R/in"
# Random content in 1 MiB pieces: reordered or repeated chunks would change the checksum.
i=0
while [ $i -lt "$BIG_MIB" ]; do
    head -c 1048576 /dev/urandom
    i=$((i + 1))
done >"$R/big"
big_sum=$(sha256sum "$R/big" | cut -d' ' -f1)
printf '# settings for the sandbox\nKILN_TEST_VAR=hello from init.env\nKILN_OTHER=a=b\n' \
    >"$OUT/init.env"

# The guest's script is itself fetched from the service: no quoting through the command line.
cat >"$R/t.sh" <<'EOF'
echo "var=[$KILN_TEST_VAR] other=[$KILN_OTHER]"
kiln-fetch stat /big
kiln-fetch stat /sub
kiln-fetch stat /sub/dir/f
kiln-fetch cat /in
kiln-fetch stat /missing; echo "missing-rc=$?"
kiln-fetch cat ../outside.txt; echo "dotdot-rc=$?"
kiln-fetch cat 'sub\..\..\outside.txt'; echo "backslash-rc=$?"
kiln-fetch cat /abs; echo "abs-rc=$?"
kiln-fetch cat /up; echo "up-rc=$?"
kiln-fetch cat /sub; echo "dir-rc=$?"
read -r t0 _ </proc/uptime
sum=$(kiln-fetch cat /big | sha256sum)
read -r t1 _ </proc/uptime
echo "big-sum=${sum%% *} seconds=$t0..$t1"
# Per-call cost of what /init does: with the service (a missing file) and without one (a port
# nobody listens on), 20 calls each.
read -r t0 _ </proc/uptime
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    kiln-fetch -q get /config/none /tmp/x
done
read -r t1 _ </proc/uptime
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    kiln-fetch -q -p 1999 get /config/init.env /tmp/x
done
read -r t2 _ </proc/uptime
echo "calls20 service=$t0..$t1 none=$t1..$t2"
echo guest-files-done
EOF

run files_guest 0 "$KILN" run $T --mem 256M --files "$R" --file "config/init.env=$OUT/init.env" \
    --append '-- "kiln-fetch get /t.sh /tmp/t.sh && sh /tmp/t.sh"'

if expect files_guest 'guest-files-done'; then
    expect files_guest 'kiln-init: init.env: 2 variables' &&
        expect files_guest 'var=\[hello from init.env\] other=\[a=b\]' && pass files_init_env
    expect files_guest "^file $((BIG_MIB * 1048576))" && pass files_stat_file
    expect files_guest '^directory' && expect files_guest '^file 2' && pass files_stat_directory
    expect files_guest 'missing-rc=3' && expect files_guest '/missing: not found' &&
        pass files_missing
    if expect files_guest 'dotdot-rc=4' && expect files_guest 'backslash-rc=4' &&
        expect files_guest 'abs-rc=4' && expect files_guest 'up-rc=4' &&
        expect files_guest 'dir-rc=4' && refute files_guest '^secret' &&
        refute files_guest '^root:'; then
        pass files_traversal_refused
    fi
    expect files_guest '^f[[:space:]]*$' && pass files_symlink_inside
    expect files_guest "big-sum=$big_sum " && pass files_big_checksum
fi
# Throughput and per-call cost, for the record (docs/file-service.md).
sed -n 's/.*big-sum=[0-9a-f]* seconds=\([0-9.]*\)\.\.\([0-9.]*\).*/\1 \2/p' "$OUT/files_guest.log" |
    while read -r a b; do
        echo "    fetched $BIG_MIB MiB in $(echo "$b $a" | awk '{printf "%.2f s (%.1f MiB/s)", $1-$2, '"$BIG_MIB"'/($1-$2+0.001)}')"
    done
sed -n 's/.*calls20 service=\([0-9.]*\)\.\.\([0-9.]*\) none=[0-9.]*\.\.\([0-9.]*\).*/\1 \2 \3/p' \
    "$OUT/files_guest.log" | while read -r a b c; do
    echo "$a $b $c" | awk '{printf "    kiln-fetch per call: %.1f ms with the service, %.1f ms without\n", ($2-$1)*50, ($3-$2)*50}'
done

# The service without /config/init.env: /init's fetch finds nothing, quietly; the command runs.
check files_no_env 0 'hello-no-env' "$KILN" run $T --files "$R" \
    --append '-- "echo hello-no-env; cat /proc/cmdline"'
expect files_no_env 'kiln[.]files=1' && refute files_no_env 'kiln-fetch|init[.]env' &&
    pass files_no_env_quiet
# No service: the command line has no kiln.files=1, so /init does not even try.
check files_no_service 0 'hello-no-service' "$KILN" run $T \
    --append '-- "echo hello-no-service; cat /proc/cmdline"'
refute files_no_service 'kiln[.]files|kiln-fetch|init[.]env' && pass files_no_service_no_fetch
# Without vsock, --files is refused with a message naming the fix.
check files_needs_vsock 2 'served over vsock' "$KILN" run --no-vsock --files "$R"
summary
