#!/bin/bash
# build.sh: builds kiln's default guest kernel from Debian's linux-source-6.1 plus kiln.config,
# once per input hash (cached), and copies bzImage and a stripped vmlinux into OUTDIR.
#
# usage: guest/kernel/build.sh OUTDIR
# env:   KILN_CACHE   cache root (default ~/.cache/kiln); the kernel lands in kernel-<hash>/
#        KILN_VERBOSE =1 shows the full make output instead of one line per stage
#        KILN_JOBS    parallel make jobs (default: nproc)
set -euo pipefail

usage() {
    echo "usage: $0 OUTDIR" >&2
    exit 2
}
[ $# -eq 1 ] && [ -n "$1" ] || usage

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment=$here/kiln.config
outdir=$1
cache_root=${KILN_CACHE:-$HOME/.cache/kiln}
verbose=${KILN_VERBOSE:-0}
pkg=linux-source-6.1
tarball=/usr/src/$pkg.tar.xz
t_start=$(date +%s)

say() { echo "kernel: $*"; }
die() {
    echo "kernel: error: $*" >&2
    exit 1
}

# Runs apt-get as root (directly or through sudo); updates the package lists only when an install
# fails without them, so a machine with fresh lists does not pay for an update.
apt_install() {
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    say "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@" >/dev/null; then
        "${sudo[@]}" apt-get update -q >/dev/null
        "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@" >/dev/null ||
            die "apt-get install $* failed"
    fi
}

pkg_version() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | sed -n 's/^install ok installed //p'; }

src_version=$(pkg_version "$pkg")
if [ -z "$src_version" ] || [ ! -f "$tarball" ]; then
    apt_install "$pkg"
    src_version=$(pkg_version "$pkg")
    [ -n "$src_version" ] && [ -f "$tarball" ] || die "$pkg installed but $tarball is missing"
fi

# The hash covers everything that decides the result: the fragment, this script and the exact
# kernel source package (its version changes with every Debian security update).
hash=$({
    cat "$fragment" "${BASH_SOURCE[0]}"
    echo "$pkg $src_version"
} | sha256sum | cut -c1-16)
entry=$cache_root/kernel-$hash

install_outputs() {
    mkdir -p "$outdir"
    # Copy through a temporary name so OUTDIR never holds a half-copied image either.
    local f
    for f in bzImage vmlinux config; do
        cp "$entry/$f" "$outdir/.$f.tmp"
    done
    mv -f "$outdir/.bzImage.tmp" "$outdir/bzImage"
    mv -f "$outdir/.vmlinux.tmp" "$outdir/vmlinux"
    mv -f "$outdir/.config.tmp" "$outdir/kernel.config"
}

if [ -f "$entry/bzImage" ] && [ -f "$entry/vmlinux" ] && [ -f "$entry/config" ]; then
    install_outputs
    say "cached $entry ($pkg $src_version)"
    exit 0
fi

# ---- cold build -----------------------------------------------------------------------------
need=()
for tool in make:make gcc:gcc flex:flex bison:bison bc:bc lz4:lz4 xz:xz-utils perl:perl \
    strip:binutils; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
for dev in libelf-dev libssl-dev; do
    [ -n "$(pkg_version "$dev")" ] || need+=("$dev")
done
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"

jobs=${KILN_JOBS:-$(nproc)}
mkdir -p "$cache_root"
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-kernel.XXXXXX")
# The staging directory sits next to the final entry so the last step is one atomic rename.
stage=$(mktemp -d "$cache_root/.kernel-$hash.tmp.XXXXXX")
cleanup() { rm -rf "$work" "$stage"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
log=$work/build.log

# Runs a build step, its output in the log (or on the terminal with KILN_VERBOSE=1); on failure
# shows the end of the log.
run() {
    if [ "$verbose" = 1 ]; then
        "$@" 2>&1 | tee -a "$log"
        return "${PIPESTATUS[0]}"
    fi
    if ! "$@" >>"$log" 2>&1; then
        echo "kernel: error: '$*' failed; last lines of the log:" >&2
        tail -n 40 "$log" >&2
        return 1
    fi
}

say "building $pkg $src_version with $(basename "$fragment") (hash $hash), $jobs jobs"
say "[1/5] extracting $tarball"
tar -xJf "$tarball" -C "$work"
src=$work/$pkg
[ -d "$src" ] || die "$tarball did not contain $pkg/"
cd "$src"

say "[2/5] configuring: allnoconfig + $(basename "$fragment")"
run scripts/kconfig/merge_config.sh -n "$fragment"

# merge_config.sh only warns when Kconfig drops or changes a value (unmet dependency, typo):
# fail instead, so the image never silently lacks something kiln relies on.
bad=0
while IFS= read -r line; do
    case $line in
    CONFIG_*=*)
        grep -qxF -- "$line" .config || {
            echo "kernel: error: requested '$line' but .config has:" \
                "'$(grep -E "^(# )?${line%%=*}[= ]" .config || echo "nothing (unknown symbol?)")'" >&2
            bad=1
        }
        ;;
    "# CONFIG_"*" is not set")
        sym=${line#\# }
        sym=${sym%% *}
        if grep -q "^$sym=" .config; then
            echo "kernel: error: requested '$line' but .config has '$(grep "^$sym=" .config)'" >&2
            bad=1
        fi
        ;;
    esac
done <"$fragment"
[ $bad -eq 0 ] || die "the final .config does not match $(basename "$fragment") (see above)"

say "[3/5] compiling (make -j$jobs bzImage; a few minutes)"
t_make=$(date +%s)
run make -j"$jobs" bzImage
say "      compiled in $(($(date +%s) - t_make)) s"

say "[4/5] stripping vmlinux (symbols and debug info; ELF notes kept)"
# --strip-all keeps SHT_NOTE sections and the PT_NOTE segment, where the PVH entry point lives.
strip --strip-all -o "$stage/vmlinux" vmlinux
if ! readelf -n "$stage/vmlinux" | grep -q 'Xen.*0x00000012'; then
    die "stripped vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)"
fi
cp arch/x86/boot/bzImage "$stage/bzImage"
cp .config "$stage/config"
echo "$pkg $src_version" >"$stage/source-version"

say "[5/5] caching in $entry"
chmod 755 "$stage"
if ! mv -T "$stage" "$entry" 2>/dev/null; then
    # Another build of the same inputs finished first; its entry is equally good.
    [ -f "$entry/bzImage" ] || die "cannot move $stage to $entry"
fi
install_outputs
say "done in $(($(date +%s) - t_start)) s: bzImage $(stat -c %s "$outdir/bzImage") bytes," \
    "vmlinux $(stat -c %s "$outdir/vmlinux") bytes"
