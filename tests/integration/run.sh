#!/usr/bin/env bash
# Runs the integration tests: host-side ones here, guest-booting ones on this host's KVM when the
# probe says it can run Linux guests, else inside the test bed (one boot per suite).
# KILN_TESTBED=always|never|auto (default auto) overrides the choice.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
mode=${KILN_TESTBED:-auto}
case "$mode" in always|never|auto) ;; *)
    echo "integration: KILN_TESTBED must be always, never or auto, not '$mode'" >&2; exit 2;;
esac

# Assets the guest tests need, made here where cpio is at hand: an initrd carrying a random blob
# (appended as a second archive, as the kernel allows) to prove the initrd arrives intact.
assets=$BUILD/it-assets
mkdir -p "$assets"
head -c 1048576 /dev/urandom >"$assets/blob"
(cd "$assets" && echo blob | cpio --quiet -o -H newc --owner 0:0 | gzip -1) >"$assets/blob.cpio.gz"
cat "$BUILD/guest/initramfs.cpio.gz" "$assets/blob.cpio.gz" >"$assets/initrd-with-blob.cpio.gz"
# The default initramfs plus the static test programs of tests/guest (make guest-tests) in
# /usr/bin: the guest side of the device tests.
rm -rf "$assets/tools-root" && mkdir -p "$assets/tools-root/usr/bin"
if [ -d "$BUILD/guest-tests" ]; then cp "$BUILD"/guest-tests/* "$assets/tools-root/usr/bin/" 2>/dev/null; fi
(cd "$assets/tools-root" && find . -mindepth 1 | cpio --quiet -o -H newc --owner 0:0 | gzip -1) \
    >"$assets/tools.cpio.gz"
cat "$BUILD/guest/initramfs.cpio.gz" "$assets/tools.cpio.gz" >"$assets/initrd-tools.cpio.gz"
# The Debian test-bed kernel's virtio modules, for guest_virtio.sh (optional: skipped if absent).
tests/integration/distro_modules.sh "$assets/distro-virtio-modules.cpio.gz" 2>/dev/null || true

status=0
if [ -z "${KILN_SUITES:-}" ]; then tests/integration/host.sh "$BUILD" || status=1; fi
# Unikernel guests need no Linux kernel: host-side here, and (cheap) in the test bed as well.
if [ -z "${KILN_SUITES:-}" ]; then tests/integration/unikernel.sh "$BUILD" || status=1; fi
rm -rf "$assets/unikernel" && cp -r "$BUILD/unikernel" "$assets/unikernel" 2>/dev/null
if [ -z "${KILN_SUITES:-}" ]; then tests/integration/control.sh "$BUILD" || status=1; fi

if [ "$mode" = auto ]; then
    if "$BUILD/kiln" doctor --quiet; then mode=never; else mode=always; fi
    [ "$mode" = always ] && echo "integration: this host's KVM cannot run Linux guests; using the test bed"
fi
# Every guest suite: tests/integration/guest.sh (boot) and guest_*.sh (one per device or area);
# KILN_SUITES="guest_blk guest_vsock" runs only those (and skips the host-side suite's re-run).
suites=""
if [ -n "${KILN_SUITES:-}" ]; then
    for name in $KILN_SUITES; do suites="$suites tests/integration/${name%.sh}.sh"; done
else
    for f in tests/integration/guest.sh tests/integration/guest_*.sh; do
        [ -f "$f" ] && suites="$suites $f"
    done
    [ "$mode" = never ] || suites="$suites tests/integration/unikernel.sh"
fi
if [ "$mode" = never ]; then
    for suite in $suites; do
        "$suite" "$BUILD" || status=1
    done
else
    # One test-bed boot per suite, KILN_TESTBED_JOBS of them at once (default: one per host CPU;
    # a test bed is one emulated CPU, docs/testbed.md), each suite's output printed whole, in
    # order, once it ends. A suite that fails is run once more in a fresh test bed: the emulated
    # test bed is not perfectly reliable (docs/testbed.md, "Stalls, watchdogs and retries"), so a
    # retry that passes is reported as such, first failure included, never hidden. A test's
    # watchdog (lib.sh, 240 s here) fires well before its suite's (480 s), so a wedged kiln gets
    # its threads' stacks logged and the suite goes on, while a frozen test bed ends the suite.
    distro=$(tests/testbed/build.sh)/vmlinuz
    jobs=${KILN_TESTBED_JOBS:-$(nproc 2>/dev/null || echo 1)}
    [[ "$jobs" =~ ^[1-9][0-9]*$ ]] || {
        echo "integration: KILN_TESTBED_JOBS must be a positive number, not '$jobs'" >&2
        exit 2
    }
    logs=$(mktemp -d "${TMPDIR:-/tmp}/kiln-suites.XXXXXX")
    trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$logs"' EXIT
    # run_suite INDEX SUITE: both attempts, output to $logs/INDEX.log, status to $logs/INDEX.rc.
    run_suite() {
        local i=$1 suite=$2 attempt rc why
        for attempt in 1 2; do
            tests/testbed/run.sh --timeout "${KILN_TESTBED_TIMEOUT:-480}" \
                --payload "$BUILD/kiln:kiln/build/kiln" \
                --payload "$BUILD/guest:kiln/build/guest" \
                --payload "tests:kiln/tests" \
                --payload "$BUILD/it-assets:kiln/build/it-assets" \
                --payload "$distro:kiln/build/distro-vmlinuz" \
                -- sh -c "cd /payload/kiln && KILN_TEST_TIMEOUT=${KILN_TEST_TIMEOUT:-240} \
                    KILN_DISTRO_KERNEL=build/distro-vmlinuz $suite build"
            rc=$?
            [ $rc -eq 0 ] && break
            case $rc in
            124 | 125) why="its test bed never reported (status $rc)" ;;
            *) why="it failed (status $rc)" ;;
            esac
            if [ $attempt = 1 ]; then
                echo "integration: RETRY $suite: $why; running it once more in a fresh test bed"
            else
                echo "integration: $suite failed again: $why"
            fi
        done
        [ $rc -eq 0 ] && [ $attempt = 2 ] && echo "integration: FLAKY $suite passed on its second run"
        echo "$rc" >"$logs/$i.tmp" && mv "$logs/$i.tmp" "$logs/$i.rc"
    }
    read -ra list <<<"$suites"
    total=${#list[@]} started=0 printed=0
    while [ $printed -lt $total ]; do
        finished=$(find "$logs" -name '*.rc' | wc -l)
        while [ $((started - finished)) -lt "$jobs" ] && [ $started -lt $total ]; do
            run_suite $started "${list[$started]}" >"$logs/$started.log" 2>&1 </dev/null &
            started=$((started + 1))
        done
        if [ -f "$logs/$printed.rc" ]; then
            cat "$logs/$printed.log"
            [ "$(cat "$logs/$printed.rc")" = 0 ] || status=1
            printed=$((printed + 1))
            continue
        fi
        sleep 1
    done
    wait
fi
exit $status
