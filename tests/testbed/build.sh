#!/usr/bin/env bash
# Builds the test bed's base image once: Debian's cloud kernel, its KVM (and tun/vsock) modules,
# busybox and the test bed /init, cached by a hash of its inputs. Prints the cache directory.
#
# Usage: tests/testbed/build.sh [--print-env]
#   Prints the directory holding `vmlinuz` (the bzImage), `vmlinux` (the same kernel uncompressed,
#   booted through PVH), `base.cpio` and `info` (with --print-env: KERNEL=... and INITRD=... lines
#   instead). Progress and errors go to stderr.
# Environment: KILN_CACHE (default ~/.cache/kiln) is where images are kept.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${KILN_CACHE:-$HOME/.cache/kiln}
kernel_meta=linux-image-cloud-amd64
# Modules the test bed loads, in this order after their dependencies (from modules.dep):
# kvm-amd gives /dev/kvm on the emulated SVM CPU; tun and vsock_loopback are cheap and let tests
# use /dev/net/tun and AF_VSOCK inside the test bed.
load_modules=(kvm-amd tun vsock_loopback)

print_env=0
case "${1:-}" in
"") ;;
--print-env) print_env=1 ;;
*)
    echo "testbed: unknown option '$1' (valid: --print-env)" >&2
    exit 2
    ;;
esac

msg() { echo "testbed: $*" >&2; }
die() {
    msg "$*"
    exit 1
}

# Installs the host tools this script and run.sh need, if any is missing (Debian packages).
ensure_packages() {
    local want=(qemu-system-x86 busybox-static cpio kmod lz4) missing=() p
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]}; run as root or install them"
    msg "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# Prints "<package> <version>" of the kernel image the meta package currently depends on.
resolve_kernel() {
    local pkg ver
    pkg=$(apt-cache depends "$kernel_meta" 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1)
    [ -n "$pkg" ] || return 1
    ver=$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: //p')
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || return 1
    echo "$pkg $ver"
}

# Fetches PACKAGE VERSION's .deb into $cache/debs (apt's own cache first, then apt-get download).
fetch_deb() {
    local pkg=$1 ver=$2 file
    file="${pkg}_${ver//:/%3a}_amd64.deb"
    mkdir -p "$cache/debs"
    if [ -s "$cache/debs/$file" ]; then
        echo "$cache/debs/$file"
        return 0
    fi
    if [ -s "/var/cache/apt/archives/$file" ]; then
        cp "/var/cache/apt/archives/$file" "$cache/debs/.$file.tmp"
    else
        msg "downloading $pkg $ver"
        local dl
        dl=$(mktemp -d "$cache/debs/.dl.XXXXXX")
        if ! (cd "$dl" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2); then
            msg "apt-get download failed; running apt-get update and retrying"
            apt-get update -q >&2 || true
            (cd "$dl" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2) ||
                { rm -rf "$dl"; die "cannot download $pkg=$ver"; }
        fi
        mv "$dl"/*.deb "$cache/debs/.$file.tmp"
        rm -rf "$dl"
    fi
    mv -f "$cache/debs/.$file.tmp" "$cache/debs/$file"
    echo "$cache/debs/$file"
}

# Prints the module files (paths relative to lib/modules/REL) for MODULE and its dependencies,
# dependencies first, from the modules.dep that depmod wrote under ROOT.
module_closure() {
    local dep=$1 name=$2 line path deps d
    line=$(grep -E "/${name//[-_]/[-_]}\.ko(\.xz|\.zst|\.gz)?:" "$dep" | head -n1) ||
        die "module $name not found in the kernel package"
    path=${line%%:*}
    deps=${line#*:}
    # modules.dep lists a module's dependencies with the deepest ones last.
    for d in $(echo "$deps" | tr ' ' '\n' | tac); do echo "$d"; done
    echo "$path"
}

# Writes the uncompressed ELF vmlinux inside bzImage $1 to $2: QEMU boots it through its PVH
# entry point, which skips the decompression that costs about a second under the emulator.
extract_vmlinux() {
    local bz=$1 dst=$2 setup_sects off len magic
    setup_sects=$(od -An -tu1 -j 497 -N1 "$bz" | tr -d ' ')
    [ "$setup_sects" -eq 0 ] && setup_sects=4
    off=$(od -An -tu4 -j 584 -N4 "$bz" | tr -d ' ')
    len=$(od -An -tu4 -j 588 -N4 "$bz" | tr -d ' ')
    off=$(((setup_sects + 1) * 512 + off))
    magic=$(od -An -tx1 -j "$off" -N4 "$bz" | tr -d ' ')
    # The compressed payload ends with the uncompressed size (4 bytes), which the tools reject.
    local payload=(tail -c +$((off + 1)) "$bz")
    case "$magic" in
    02214c18) "${payload[@]}" | head -c $((len - 4)) | lz4 -dc >"$dst" ;;
    1f8b*) "${payload[@]}" | head -c $((len - 4)) | gzip -dc >"$dst" ;;
    fd377a58) "${payload[@]}" | head -c $((len - 4)) | xz -dc >"$dst" ;;
    28b52ffd) "${payload[@]}" | head -c $((len - 4)) | zstd -qdc >"$dst" ;;
    *) return 1 ;;
    esac
    local want
    want=$(od -An -tu4 -j $((off + len - 4)) -N4 "$bz" | tr -d ' ')
    [ "$(od -An -tx1 -N4 "$dst" | tr -d ' ')" = 7f454c46 ] && [ "$(stat -c %s "$dst")" = "$want" ]
}

ensure_packages
# apt-cache is slow (seconds) where its package cache is disabled, so remember what it said for
# as long as the package lists stay the same.
lists_key=$(stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* /etc/apt/preferences* 2>/dev/null |
    sha256sum | cut -c1-16)
memo="$cache/.kernel-$lists_key"
if [ -s "$memo" ]; then
    kernel=$(cat "$memo")
else
    kernel=$(resolve_kernel) || {
        msg "apt does not know $kernel_meta; running apt-get update"
        apt-get update -q >&2 || true
        kernel=$(resolve_kernel) || die "cannot resolve $kernel_meta with apt-cache"
    }
    mkdir -p "$cache"
    echo "$kernel" >"$memo.$$" && mv -f "$memo.$$" "$memo"
fi
read -r kpkg kver <<<"$kernel"
bbver=$(dpkg-query -W -f='${Version}' busybox-static)
hash=$( (
    cat "$here/build.sh" "$here/init"
    echo "$kpkg $kver busybox-static $bbver ${load_modules[*]}"
) | sha256sum | cut -c1-16)
out="$cache/testbed-$hash"

emit() {
    if [ $print_env -eq 1 ]; then
        if [ -s "$out/vmlinux" ]; then
            echo "KERNEL=$out/vmlinux"
        else
            echo "KERNEL=$out/vmlinuz"
        fi
        echo "INITRD=$out/base.cpio"
    else
        echo "$out"
    fi
}
if [ -s "$out/base.cpio" ] && [ -s "$out/vmlinuz" ] && [ -s "$out/info" ]; then
    touch "$out" 2>/dev/null || true
    emit
    exit 0
fi

mkdir -p "$cache"
# One builder at a time; a second one waits and then finds the finished image.
exec 9>"$cache/.testbed.lock"
flock 9
if [ -s "$out/base.cpio" ] && [ -s "$out/vmlinuz" ] && [ -s "$out/info" ]; then
    emit
    exit 0
fi

msg "building the base image ($kpkg $kver, busybox $bbver)"
deb=$(fetch_deb "$kpkg" "$kver")
work=$(mktemp -d "$cache/.testbed-$hash.XXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/pkg"
krel=$(ls "$work/pkg/lib/modules")
[ "$(echo "$krel" | wc -l)" -eq 1 ] || die "expected one kernel release in $deb, found: $krel"
[ -f "$work/pkg/boot/vmlinuz-$krel" ] || die "no boot/vmlinuz-$krel in $deb"
# The package ships no modules.dep (its postinst runs depmod); generate it in the extracted tree.
depmod -b "$work/pkg" "$krel"
moddep="$work/pkg/lib/modules/$krel/modules.dep"

root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/testbed,dev,proc,sys,tmp,run,root,payload,mnt,var}
chmod 1777 "$root/tmp"
cp "$here/init" "$root/init"
chmod 755 "$root/init"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list-full); do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -sf /bin/busybox "$root/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
echo testbed >"$root/etc/hostname"
echo "$krel" >"$root/etc/testbed/kernel-release"
# Without /dev/console in the archive the kernel starts /init with no stdio (init copes, but the
# kernel warns); creating the node needs root, which building as a normal user may lack.
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

# Modules: each with its dependencies, first occurrence wins, decompressed for busybox insmod.
: >"$root/etc/testbed/modules"
declare -A seen=()
for m in "${load_modules[@]}"; do
    closure=$(module_closure "$moddep" "$m")
    for rel in $closure; do
        [ -n "${seen[$rel]:-}" ] && continue
        seen[$rel]=1
        src="$work/pkg/lib/modules/$krel/$rel"
        plain=${rel%.ko*}.ko
        dst="$root/lib/modules/$krel/$plain"
        mkdir -p "$(dirname "$dst")"
        case "$rel" in
        *.ko) cp "$src" "$dst" ;;
        *.ko.xz) xz -dc "$src" >"$dst" ;;
        *.ko.zst) zstd -qdc "$src" >"$dst" ;;
        *.ko.gz) gzip -dc "$src" >"$dst" ;;
        *) die "unexpected module file $rel" ;;
        esac
        echo "$plain" >>"$root/etc/testbed/modules"
    done
done

mkdir -p "$work/out"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
    cpio -o -H newc -R 0:0 --reproducible --quiet) >"$work/out/base.cpio"
cp "$work/pkg/boot/vmlinuz-$krel" "$work/out/vmlinuz"
if ! extract_vmlinux "$work/out/vmlinuz" "$work/out/vmlinux"; then
    msg "cannot extract vmlinux from the bzImage; run.sh will boot the bzImage"
    rm -f "$work/out/vmlinux"
fi
{
    echo "kernel_package=$kpkg"
    echo "kernel_version=$kver"
    echo "kernel_release=$krel"
    sed -n 's/^CONFIG_HZ=\([0-9]*\)$/kernel_hz=\1/p' "$work/pkg/boot/config-$krel"
    echo "busybox_version=$bbver"
    echo "modules=$(tr '\n' ' ' <"$root/etc/testbed/modules")"
} >"$work/out/info"
# Publish atomically: readers only ever see a complete directory.
rm -rf "$out"
mv -T "$work/out" "$out"
# Images of older inputs are dead weight (~75 MB each); drop those unused for two days. A run
# that started from one has already loaded it into QEMU.
find "$cache" -maxdepth 1 -name 'testbed-*' -type d -mtime +2 ! -path "$out" -exec rm -rf {} + ||
    true
msg "base image ready in $out ($(du -h "$out/base.cpio" | cut -f1) initramfs)"
emit
