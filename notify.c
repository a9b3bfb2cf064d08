/*
 * notify.c - the sd_notify protocol without libsystemd.
 *
 * Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the environment
 * and sends datagrams; nothing else.  It does not link libsystemd, keeps
 * no state and no socket between calls, allocates nothing, passes no file
 * descriptors or credentials, and does not unset the variables (wsd starts
 * no children to hide them from).  Only the path and abstract forms of
 * NOTIFY_SOCKET are understood, not "vsock:".  Return convention: see
 * notify.h (1 sent, 0 nothing to do, -1 with errno).
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "notify.h"

/* A decimal number of at most 19 digits (no sign, no space), or -1. */
static int
parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 19 || strspn(s, "0123456789") != n)
		return -1;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (uint64_t)(s[i] - '0');
	*out = v;
	return 0;
}

int
notify_send(const char *state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = getenv("NOTIFY_SOCKET");
	size_t plen, slen;
	socklen_t salen;
	ssize_t n;
	int fd, saved;

	if (path == NULL || path[0] == '\0')
		return 0;
	plen = strlen(path);
	slen = strlen(state);
	/*
	 * "@name" is the abstract namespace (unix(7)): sun_path starts with
	 * a NUL and the name is exactly the bytes counted by the address
	 * length, with no terminator.  A path is NUL-terminated.
	 */
	if ((path[0] != '/' && path[0] != '@') || plen >= sizeof sa.sun_path ||
	    slen == 0) {
		errno = EINVAL;
		return -1;
	}
	memcpy(sa.sun_path, path, plen);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen +
	    (path[0] == '/'));

	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	/* MSG_DONTWAIT: the loop never waits on the service manager. */
	n = sendto(fd, state, slen, MSG_DONTWAIT | MSG_NOSIGNAL,
	    (struct sockaddr *)&sa, salen);
	saved = errno;
	close(fd);
	if (n == -1) {
		errno = saved;
		return -1;
	}
	return 1;
}

int
notify_ready(void)
{
	return notify_send("READY=1");
}

int
notify_stopping(void)
{
	return notify_send("STOPPING=1");
}

int
notify_watchdog(void)
{
	return notify_send("WATCHDOG=1");
}

uint64_t
notify_watchdog_usec(void)
{
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");
	uint64_t v, p;

	if (usec == NULL || parse_u64(usec, &v) == -1 || v == 0)
		return 0;
	/* systemd sets WATCHDOG_PID to the main process; an inherited
	 * variable meant for another process is not ours to answer. */
	if (pid != NULL && (parse_u64(pid, &p) == -1 ||
	    p != (uint64_t)getpid()))
		return 0;
	return v;
}
