#!/usr/bin/env bash
# Installs the Debian packages kiln needs to build, test and run its guests, if any is missing.
# Runs apt-get update only when something must be installed (so a warm machine needs no network).
set -euo pipefail

packages=(
    build-essential      # gcc, make
    libcmocka-dev        # unit tests
    clang                # libFuzzer targets (make fuzz)
    libclang-rt-14-dev   # ASan/UBSan/libFuzzer runtimes for clang
    qemu-system-x86      # the test bed, and the peer in benchmarks
    linux-source-6.1     # the default guest kernel's sources
    flex bison bc libelf-dev libssl-dev lz4 # what building that kernel needs
    busybox-static       # the guest's and the test bed's userland
    musl-tools           # musl-gcc: the guest's static kiln-agent and kiln-fetch
    cpio xz-utils kmod zstd # initramfs packing, module handling
    acpica-tools         # iasl: the ACPI table test disassembles and recompiles our tables
    clang-format cppcheck # make lint (part of make check)
    valgrind             # make valgrind: libkiln's leak and memory check (part of make check)
    python3              # bench/boot/run.sh reads the JSON results
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages: ${missing[*]}; run as root or install them" >&2
    exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
