#!/usr/bin/env bash
# test/deps.sh - make sure what the tests need is installed (Debian 12).
#
# Building wsd needs build-essential and libssl-dev; the tests also need
# Debian's python3 with python3-websockets, chromium, clang with its
# runtime libraries (libFuzzer, sanitizers), mandoc, systemd-analyze, curl,
# openssl, redis-server, Node.js with npm, and test/node_modules as pinned
# by test/package-lock.json.
#
# Everything present: prints nothing, exits 0, in a few milliseconds (file
# tests only; no package manager is asked).  Something missing: as root,
# installs it (apt-get update once, then apt-get install); otherwise says
# which command to run and exits 1.  test/node_modules needs no root: it is
# made with "npm ci --prefix test" as the user who owns the checkout.
set -u
cd "$(dirname "$0")/.." || exit 1

pkgs=()
need() { pkgs+=("$@"); }

[ -x /usr/bin/python3 ] || need python3
[ -d /usr/lib/python3/dist-packages/websockets ] || need python3-websockets
[ -x /usr/bin/chromium ] || need chromium
command -v clang >/dev/null || need clang
compgen -G '/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a' \
    >/dev/null || need libclang-rt-14-dev
command -v mandoc >/dev/null || need mandoc
command -v systemd-analyze >/dev/null || need systemd
command -v openssl >/dev/null || need openssl
command -v curl >/dev/null || need curl
[ -e /etc/ssl/certs/ca-certificates.crt ] || need ca-certificates
command -v redis-server >/dev/null || need redis-server
command -v node >/dev/null || need nodejs
command -v npm >/dev/null || need npm

# npm ci writes node_modules/.package-lock.json; older than the lock file
# means the lock changed since (a pull, a checkout).
modules_ok() {
	[ -f test/node_modules/.package-lock.json ] &&
	    ! [ test/package-lock.json -nt test/node_modules/.package-lock.json ] &&
	    [ -d test/node_modules/ws ] && [ -d test/node_modules/playwright-core ] &&
	    [ -d test/node_modules/axe-core ]
}

if [ ${#pkgs[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "test/deps.sh: missing ${pkgs[*]}; run: sudo test/deps.sh" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || exit 1
	apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null ||
	    exit 1
fi

if ! modules_ok; then
	# Under sudo, as the user who ran it, so the checkout stays theirs.
	as=()
	if [ "$(id -u)" = 0 ] && [ -n "${SUDO_USER:-}" ] &&
	    [ "$SUDO_USER" != root ]; then
		as=(sudo -u "$SUDO_USER" -H)
	fi
	"${as[@]}" npm ci --prefix test --no-audit --no-fund --no-update-notifier \
	    --loglevel=error >/dev/null || {
		echo "test/deps.sh: npm ci --prefix test failed" >&2
		exit 1
	}
	touch test/node_modules/.package-lock.json
fi
exit 0
