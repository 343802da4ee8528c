#!/bin/bash
# build.sh: builds kiln's default initramfs (busybox-static, its applet links, /init, /dev/console
# and /dev/null, plus any extra files) as a deterministic gzip'd newc cpio archive.
#
# usage: guest/initramfs/build.sh OUT.cpio.gz [SRC:DEST ...]
#   SRC:DEST  adds the regular file SRC as DEST (an absolute path in the image; missing parent
#             directories are created; a DEST that already exists, e.g. /init, is replaced).
#
# The archive is written by this script itself (the newc header is plain ASCII hex), so device
# nodes and root ownership need no root privileges, and every entry has uid/gid 0, mtime 0, a
# sorted position and a sequential inode: the same inputs give the same bytes.
set -euo pipefail
export LC_ALL=C # ${#name} must count bytes, and sort must be bytewise

usage() {
    echo "usage: $0 OUT.cpio.gz [SRC:DEST ...]" >&2
    exit 2
}
die() {
    echo "initramfs: error: $*" >&2
    exit 1
}
[ $# -ge 1 ] && [ -n "$1" ] || usage
out=$1
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
busybox=/bin/busybox

# Debian's busybox-static is the one whose /bin/busybox needs no libraries in the guest.
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
    echo "initramfs: installing busybox-static"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get install -y -q busybox-static >/dev/null ||
        { "${sudo[@]}" apt-get update -q >/dev/null &&
            "${sudo[@]}" apt-get install -y -q busybox-static >/dev/null; } ||
        die "apt-get install busybox-static failed"
fi
[ -x "$busybox" ] || die "$busybox is missing although busybox-static is installed"

# ---- the entries: path (no leading /) -> "type arg" ------------------------------------------
#   dir MODE | file MODE SRC | link TARGET | chr MODE MAJOR MINOR
declare -A entry=()

add_dirs() { # every parent directory of $1
    local d=$1
    while [ "${d%/*}" != "$d" ]; do
        d=${d%/*}
        [ -n "${entry[$d]:-}" ] || entry[$d]="dir 755"
    done
}
add() { # path spec...
    local path=$1
    shift
    add_dirs "$path"
    entry[$path]="$*"
}

for d in bin sbin usr/bin usr/sbin etc root dev proc sys tmp run mnt var; do
    entry[$d]="dir 755"
done
entry[root]="dir 700"
entry[tmp]="dir 1777"

add bin/busybox file 755 "$busybox"
while IFS= read -r applet; do
    case $applet in
    bin/busybox | linuxrc | linuxrc/ | "") continue ;;
    esac
    add "$applet" link /bin/busybox
done < <("$busybox" --list-full)

add init file 755 "$here/init"
add dev/console chr 600 5 1
add dev/null chr 666 1 3

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-initramfs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$tmp/passwd"
printf 'root:x:0:\n' >"$tmp/group"
printf 'kiln\n' >"$tmp/hostname"
add etc/passwd file 644 "$tmp/passwd"
add etc/group file 644 "$tmp/group"
add etc/hostname file 644 "$tmp/hostname"

for pair in "$@"; do
    case $pair in
    *:/*) ;;
    *) die "'$pair' is not SRC:DEST with an absolute DEST (e.g. build/kiln-agent:/sbin/kiln-agent)" ;;
    esac
    src=${pair%:/*}
    dest=${pair##*:/}
    [ -f "$src" ] || die "'$src' (from '$pair') is not a regular file"
    case /$dest/ in
    //) die "'$pair' names the root directory as DEST; name a file" ;;
    */../* | */./* | *//*) die "DEST '/$dest' (from '$pair') must be a plain path without . or .." ;;
    esac
    case ${entry[$dest]:-} in dir*) die "DEST '/$dest' (from '$pair') is a directory" ;; esac
    mode=644
    [ -x "$src" ] && mode=755
    add "$dest" file "$mode" "$src"
done

# ---- newc writer ------------------------------------------------------------------------------
ino=0
# header MODE NLINK SIZE RDEVMAJOR RDEVMINOR NAME: the 110-byte header, the name and its
# padding to a multiple of 4.
header() {
    local name=$6 namesize=$((${#6} + 1))
    ino=$((ino + 1))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        "$ino" "$1" 0 0 "$2" 0 "$3" 0 0 "$4" "$5" "$namesize" 0
    printf '%s\0' "$name"
    pad $((110 + namesize))
}
pad() { # NUL bytes up to the next multiple of 4 after $1 bytes
    case $(($1 % 4)) in
    1) printf '\0\0\0' ;;
    2) printf '\0\0' ;;
    3) printf '\0' ;;
    esac
}

write_archive() {
    local path spec kind a b c size
    while IFS= read -r path; do
        spec=${entry[$path]}
        read -r kind a b c <<<"$spec"
        case $kind in
        dir) header $((8#40000 | 8#$a)) 2 0 0 0 "$path" ;;
        chr) header $((8#20000 | 8#$a)) 1 0 "$b" "$c" "$path" ;;
        link)
            header $((8#120777)) 1 "${#a}" 0 0 "$path"
            printf '%s' "$a"
            pad "${#a}"
            ;;
        file)
            # The source path may contain spaces: it is everything after "file MODE ".
            b=${spec#file "$a" }
            size=$(stat -L -c %s "$b")
            header $((8#100000 | 8#$a)) 1 "$size" 0 0 "$path"
            cat "$b"
            pad "$size"
            ;;
        esac
    done < <(printf '%s\n' "${!entry[@]}" | sort)
    ino=0
    header 0 1 0 0 0 'TRAILER!!!'
}

mkdir -p "$(dirname "$out")"
write_archive | gzip -n -9 >"$out.tmp"
mv -f "$out.tmp" "$out"
echo "initramfs: $out: ${#entry[@]} entries, $(stat -c %s "$out") bytes"
