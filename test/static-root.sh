#!/usr/bin/env bash
# test/static-root.sh [BINARY] - the static wsd alone in an empty root, as
# in the FROM scratch image of the Containerfile.
#
# Copies BINARY (default build/static/wsd; `make static` first if it is
# missing) into an empty directory - nothing else: no /etc, no /lib, no
# /dev, no /proc - and runs it there with chroot:
#
#	wsd --version
#	wsd --listen 127.0.0.1:0	(the port read from its log)
#	GET /health			must answer 200 (bash's /dev/tcp)
#	wsd pub, sub, token		the client, in the same empty root
#	wsd --listen localhost:0	refused: no /etc/hosts, no NSS modules
#
# then stops the server by its PID (SIGTERM; it must exit 0).  Needs root
# for chroot, or unprivileged user namespaces (then unshare -r chroot).
# Prints "N passed, M failed" last; exit status 1 if any failed.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$repo/build/static/wsd}
pass=0 fail=0
check() {	# NAME CONDITION-STATUS [DETAIL]
	if [ "$2" = 0 ]; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL: $1${3:+ ($3)}" >&2
	fi
}

if [ ! -x "$bin" ] && [ -z "${1:-}" ]; then
	make -s -C "$repo" static >/dev/null || exit 1
fi
# chroot (and unshare without --fork) exec what they run, so a
# background job's $! is the server's own PID.
if [ "$(id -u)" = 0 ]; then
	jail=(chroot)
elif unshare -r true 2>/dev/null; then
	jail=(unshare -r chroot)
else
	echo "test/static-root.sh: needs root, or user namespaces for unshare -r"
	echo "0 passed, 0 failed"
	exit 0
fi

dir=$(mktemp -d /tmp/wsd-static-root.XXXXXX)
in_root() { "${jail[@]}" "$dir" "$@"; }
log=$dir.log
pid=
# shellcheck disable=SC2317	# called by the trap
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	rm -rf --one-file-system "$dir" "$log" "$log.2" "$log.sub"
}
trap cleanup EXIT
cp "$bin" "$dir/wsd"

file_out=$(LC_ALL=C file -b "$dir/wsd" 2>/dev/null || echo unknown)
case $file_out in
*"statically linked"* | unknown) st=0 ;;
*) st=1 ;;
esac
check "the binary is statically linked" $st "$file_out"
check "the root holds the binary and nothing else" \
    "$([ "$(ls -A "$dir")" = wsd ]; echo $?)" "$(ls -A "$dir" | tr '\n' ' ')"

out=$(in_root /wsd --version 2>&1)
check "wsd --version in the empty root" \
    "$([[ $out =~ ^wsd\ [0-9] ]]; echo $?)" "$out"

# The server: a free port from the kernel, read from the log line.
"${jail[@]}" "$dir" /wsd --listen 127.0.0.1:0 --no-session-events 2>"$log" &
pid=$!
port=
for _ in $(seq 400); do		# 20 s at most
	port=$(sed -n 's/.*listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' \
	    "$log" | head -n 1)
	[ -n "$port" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
check "the server starts in the empty root" "$([ -n "$port" ]; echo $?)" \
    "$(tail -n 3 "$log")"
[ -n "$port" ] || port=1

# One request on a new connection: the whole response on stdout.
request() {	# METHOD PATH
	local resp
	exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
	printf '%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' \
	    "$1" "$2" >&3
	resp=$(timeout 10 cat <&3)
	exec 3<&- 3>&-
	printf '%s' "$resp"
}
resp=$(request GET /health 2>/dev/null)
check "GET /health answers 200" \
    "$([[ $resp == "HTTP/1.1 200 "* ]]; echo $?)" "${resp%%$'\r'*}"

err=$(in_root /wsd pub --url "http://127.0.0.1:$port" g static \
    '{"from":"scratch"}' 2>&1)
check "wsd pub in the empty root: exit 0" $? "$err"
resp=$(request GET /api/groups/g/events 2>/dev/null)
check "the event is in the history" \
    "$([[ $resp == *'"data":{"from":"scratch"}'* ]]; echo $?)" "$resp"
# sub: the WebSocket client (random key and masks from getrandom(2), no
# /dev/urandom here) prints the event, then is stopped by its PID.
"${jail[@]}" "$dir" /wsd sub --url "ws://127.0.0.1:$port" --since 0 g \
    >"$log.sub" 2>&1 &
sub=$!
for _ in $(seq 400); do
	[ -s "$log.sub" ] && break
	sleep 0.05
done
kill -TERM "$sub"
wait "$sub"
rc=$?
check "wsd sub in the empty root prints the event, exit 0 on SIGTERM" \
    "$([ $rc = 0 ] && grep -q '"from":"scratch"' "$log.sub"; echo $?)" \
    "rc=$rc $(cat "$log.sub")"
tok=$(in_root /wsd token --secret "0123456789abcdef0123456789abcdef" \
    --groups g 2>&1)
check "wsd token in the empty root (HMAC without openssl.cnf)" \
    "$([[ $tok =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$ ]]; \
    echo $?)" "$tok"

# Without /etc/hosts and glibc's NSS modules no name resolves: numeric
# addresses only, and a clear refusal (exit 2) for a name.
in_root /wsd --listen localhost:0 2>"$log.2"
rc=$?
check "a host name is refused with exit 2 (numeric addresses only)" \
    "$([ $rc = 2 ] && grep -q 'cannot resolve' "$log.2"; echo $?)" \
    "rc=$rc $(cat "$log.2")"

kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
check "SIGTERM: the server exits 0" "$([ $rc = 0 ]; echo $?)" "rc=$rc"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
