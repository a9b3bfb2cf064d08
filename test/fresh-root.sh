#!/usr/bin/env bash
# test/fresh-root.sh [DIR] - the README's commands on a fresh Debian 12.
#
# Builds a clean Debian 12 (bookworm, minbase) root in DIR (default
# /tmp/wsd-fresh) with debootstrap, from the mirror this machine's apt uses;
# installs only build-essential, libssl-dev and git in it; copies this
# checkout into /root/wsd there (a git clone, then the working tree over it:
# uncommitted changes included, ignored files such as build/ and
# node_modules/ left out); and runs, inside it via chroot,
#
#	make && ./wsd --version && make test
#
# so test/deps.sh has to bring in everything else.  The tests bind
# 127.0.0.1 only.  Needs root (debootstrap, chroot, mount).  Everything is
# logged to DIR.log; the last line printed is make test's summary.  DIR is
# removed and made again on each run; /proc, /sys and /dev are mounted
# inside it only while the run lasts.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-/tmp/wsd-fresh}
dir=$(realpath -m "$dir")
log=$dir.log

if [ "$(id -u)" != 0 ]; then
	echo "test/fresh-root.sh: needs root; run: sudo test/fresh-root.sh $*" >&2
	exit 1
fi
case $dir in
/ | /bin* | /boot* | /dev* | /etc* | /lib* | /proc* | /sbin* | /sys* | /usr* | /var/lib*)
	echo "test/fresh-root.sh: refusing to use $dir" >&2
	exit 2 ;;
esac

# The Debian mirror apt uses here: "deb URI SUITE ..." lines in sources.list
# and *.list, or URIs:/Suites: stanzas in *.sources (deb822).  The first
# URI that serves bookworm (not -security) is the mirror; a URI that serves
# bookworm-security, if any, the security mirror.
sources() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\)[[:space:]]\+\([^[:space:]]\+\).*/\2 \3/p' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'BEGIN { RS = ""; FS = "\n" }
		    {
			uris = ""; suites = ""; deb = 0
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^Types:/ && ($i " ") ~ /[ \t]deb[ \t]/)
					deb = 1
				if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
				if ($i ~ /^Suites:/) { suites = $i; sub(/^Suites:[ \t]*/, "", suites) }
			}
			if (!deb) next
			nu = split(uris, u, /[ \t]+/); ns = split(suites, s, /[ \t]+/)
			for (a = 1; a <= nu; a++) for (b = 1; b <= ns; b++)
				print u[a], s[b]
		    }' "$f"
	done
}
mirror=$(sources | awk '$2 == "bookworm" { print $1; exit }')
security=$(sources | awk '$2 == "bookworm-security" { print $1; exit }')
if [ -z "$mirror" ]; then
	echo "test/fresh-root.sh: no apt source for bookworm in /etc/apt" >&2
	exit 1
fi

mounted=()
# shellcheck disable=SC2317	# called by the trap
cleanup() {
	local i p
	# Whatever still runs inside (a daemon a package started): ours, by pid.
	for p in /proc/[0-9]*; do
		if [ "$(readlink "$p/root" 2>/dev/null)" = "$dir" ]; then
			kill "${p#/proc/}" 2>/dev/null || true
		fi
	done
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		umount -R "${mounted[i]}" 2>/dev/null ||
		    umount -lR "${mounted[i]}" 2>/dev/null || true
	done
	mounted=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A mount left by an interrupted run must go before the tree does.
if [ -e "$dir" ]; then
	for m in dev/pts dev sys proc; do
		mountpoint -q "$dir/$m" 2>/dev/null && umount -R "$dir/$m"
	done
	rm -rf --one-file-system "$dir"
fi

exec 3>&1
exec >"$log" 2>&1
say() { echo "fresh-root: $*" >&3; echo "fresh-root: $*"; }

if ! command -v debootstrap >/dev/null; then
	say "installing debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends debootstrap
fi

say "debootstrap bookworm (minbase) from $mirror into $dir (log: $log)"
t0=$(date +%s)
if ! debootstrap --variant=minbase bookworm "$dir" "$mirror"; then
	say "debootstrap failed; the end of $log:"
	tail -n 20 "$log" >&3
	exit 1
fi

{
	echo "deb $mirror bookworm main"
	echo "deb $mirror bookworm-updates main"
	[ -n "$security" ] && echo "deb $security bookworm-security main"
} >"$dir/etc/apt/sources.list"
# Of this machine's setup, only what its network needs comes along: the
# resolver, and the local CA certificates that a TLS-inspecting egress
# needs (ca-certificates adds them once test/deps.sh installs it), with
# NODE_EXTRA_CA_CERTS for npm if it is set here.
cp -L /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
mkdir -p "$dir/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt \
    "$dir/usr/local/share/ca-certificates/" 2>/dev/null || true
# Every installed machine has these two names; minbase may not.
grep -qs localhost "$dir/etc/hosts" ||
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
    >>"$dir/etc/hosts"
# As in Debian's container images: packages install, but their daemons do
# not start (a chroot has no init to stop them again).
printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
chmod 755 "$dir/usr/sbin/policy-rc.d"

mount -t proc proc "$dir/proc" && mounted+=("$dir/proc")
mount --rbind /sys "$dir/sys" && mount --make-rslave "$dir/sys" &&
    mounted+=("$dir/sys")
mount --rbind /dev "$dir/dev" && mount --make-rslave "$dir/dev" &&
    mounted+=("$dir/dev")

in_root() {
	chroot "$dir" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
	    ${NODE_EXTRA_CA_CERTS:+NODE_EXTRA_CA_CERTS="$NODE_EXTRA_CA_CERTS"} \
	    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	    DEBIAN_FRONTEND=noninteractive /bin/bash -c "$1"
}

say "apt-get install build-essential libssl-dev git"
in_root 'apt-get update -qq &&
    apt-get install -y -qq --no-install-recommends build-essential libssl-dev git'

say "copying the checkout of $repo"
git clone -q --no-hardlinks "$repo" "$dir/root/wsd"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do
	[ -e "$f" ] && printf '%s\0' "$f"
    done | tar -c --null -T - -f -) | tar -x -C "$dir/root/wsd" -f -
(cd "$repo" && git ls-files -z --deleted) |
    (cd "$dir/root/wsd" && xargs -0 -r rm -f --)

# make test runs test/deps.sh once the Makefile's test rule does (the
# hook); until then it is run here first, and the log says so.
hook='make test'
if ! grep -q 'test/deps.sh' "$dir/root/wsd/Makefile"; then
	say "the Makefile does not run test/deps.sh yet: running it first"
	hook='test/deps.sh && make test'
fi

say "make && ./wsd --version && $hook"
set +e
in_root "cd /root/wsd && make && ./wsd --version && $hook"
rc=$?
set -e
say "took $(( $(date +%s) - t0 )) s, exit status $rc"
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
grep -E '^test_[^ ]+: [0-9]+ passed, [1-9][0-9]* failed|: no summary' \
    "$log" >&3 || true
if [ -z "$summary" ]; then
	echo "fresh-root: no test summary; the end of $log:" >&3
	tail -n 30 "$log" >&3
	exit 1
fi
echo "$summary" >&3
exit "$rc"
