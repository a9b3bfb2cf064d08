/*
 * test_notify.c - the sd_notify sender against sockets of our own.
 *
 * Binds an AF_UNIX datagram socket in a fresh temporary directory and one
 * in the abstract namespace, points NOTIFY_SOCKET at each, calls the
 * senders and reads what arrived: the exact bytes, one datagram per call,
 * no trailing NUL.  Also: unset and bad addresses, a receiver whose queue
 * is full (the sender must fail with EAGAIN, not block), no leaked fd, and
 * WATCHDOG_USEC / WATCHDOG_PID parsing.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "notify.h"
#include "t.h"

/* Bind a datagram socket to addr ("/path" or "@name"); the fd or -1. */
static int
bind_dgram(const char *addr)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(addr);
	socklen_t len;
	int fd;

	if (n >= sizeof sa.sun_path ||
	    (fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	memcpy(sa.sun_path, addr, n);
	if (addr[0] == '@') {
		sa.sun_path[0] = '\0';
		len = offsetof(struct sockaddr_un, sun_path) + n;
	} else
		len = offsetof(struct sockaddr_un, sun_path) + n + 1;
	if (bind(fd, (struct sockaddr *)&sa, len) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One datagram within a second into buf (NUL-terminated); its length or -1. */
static ssize_t
recv_one(int fd, char *buf, size_t cap)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	if (poll(&p, 1, 1000) != 1)
		return -1;
	if ((n = recv(fd, buf, cap - 1, MSG_DONTWAIT)) >= 0)
		buf[n] = '\0';
	return n;
}

/* Nothing more is waiting on fd. */
static int
queue_empty(int fd)
{
	char c;

	return recv(fd, &c, 1, MSG_DONTWAIT) == -1 && errno == EAGAIN;
}

/* The lowest free descriptor: unchanged across calls means no fd leaked. */
static int
lowest_free_fd(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	if (fd != -1)
		close(fd);
	return fd;
}

/* The four senders against whatever NOTIFY_SOCKET names, read on fd. */
static void
senders(int fd, const char *what)
{
	char buf[256];
	int before = lowest_free_fd();

	fprintf(stderr, "# %s\n", what);
	check(notify_ready() == 1);
	check(recv_one(fd, buf, sizeof buf) == 7 &&
	    strcmp(buf, "READY=1") == 0);
	check(notify_stopping() == 1);
	check(recv_one(fd, buf, sizeof buf) == 10 &&
	    strcmp(buf, "STOPPING=1") == 0);
	check(notify_watchdog() == 1);
	check(recv_one(fd, buf, sizeof buf) == 10 &&
	    strcmp(buf, "WATCHDOG=1") == 0);
	/* Several assignments go in one datagram, as sd_notify(3) sends. */
	check(notify_send("STATUS=draining\nSTOPPING=1") == 1);
	check(recv_one(fd, buf, sizeof buf) == 26 &&
	    strcmp(buf, "STATUS=draining\nSTOPPING=1") == 0);
	check(queue_empty(fd));
	check(lowest_free_fd() == before);
}

static void
test_unset(void)
{
	unsetenv("NOTIFY_SOCKET");
	check(notify_ready() == 0);
	check(notify_stopping() == 0);
	check(notify_watchdog() == 0);
	check(notify_send("READY=1") == 0);
	setenv("NOTIFY_SOCKET", "", 1);
	check(notify_ready() == 0);
}

static void
test_path(void)
{
	char dir[] = "/tmp/wsd-notify-XXXXXX", path[128], c;
	int fd, r = 1, i;

	check(mkdtemp(dir) != NULL);
	snprintf(path, sizeof path, "%s/notify", dir);
	fd = bind_dgram(path);
	check(fd != -1);
	if (fd == -1)
		goto out;
	setenv("NOTIFY_SOCKET", path, 1);
	senders(fd, "path socket");

	/* The receiver's queue full: -1 EAGAIN, never a blocked loop. */
	for (i = 0; i < 100000 && (r = notify_watchdog()) == 1; i++)
		;
	check(r == -1 && errno == EAGAIN);
	while (recv(fd, &c, 1, MSG_DONTWAIT) >= 0)
		;
	check(notify_ready() == 1);
	check(recv(fd, &c, 1, MSG_DONTWAIT) == 1 && c == 'R');
	close(fd);
	/* Gone: the socket file is there but nobody reads it. */
	check(notify_ready() == -1 && errno == ECONNREFUSED);
	unlink(path);
	check(notify_ready() == -1 && errno == ENOENT);
out:
	rmdir(dir);
}

static void
test_abstract(void)
{
	char name[64];
	int fd;

	snprintf(name, sizeof name, "@wsd-test-notify-%ld", (long)getpid());
	fd = bind_dgram(name);
	check(fd != -1);
	if (fd == -1)
		return;
	setenv("NOTIFY_SOCKET", name, 1);
	senders(fd, "abstract socket");
	close(fd);
	check(notify_ready() == -1 && errno == ECONNREFUSED);
}

static void
test_bad_address(void)
{
	char longpath[200];

	setenv("NOTIFY_SOCKET", "relative/notify", 1);
	check(notify_ready() == -1 && errno == EINVAL);
	/* sun_path holds 108 bytes with the NUL: 107 is the longest path. */
	memset(longpath, 'a', sizeof longpath);
	longpath[0] = '/';
	longpath[108] = '\0';
	setenv("NOTIFY_SOCKET", longpath, 1);
	check(notify_ready() == -1 && errno == EINVAL);
	longpath[107] = '\0';
	setenv("NOTIFY_SOCKET", longpath, 1);
	check(notify_ready() == -1 && errno == ENOENT);
	setenv("NOTIFY_SOCKET", "@", 1);
	check(notify_send("") == -1 && errno == EINVAL);
	unsetenv("NOTIFY_SOCKET");
}

static void
test_watchdog_usec(void)
{
	char pid[32];

	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	check(notify_watchdog_usec() == 0);
	setenv("WATCHDOG_USEC", "30000000", 1);
	check(notify_watchdog_usec() == 30000000);
	setenv("WATCHDOG_USEC", "1", 1);
	check(notify_watchdog_usec() == 1);
	/* At most 19 digits: UINT64_MAX has 20 and is refused. */
	setenv("WATCHDOG_USEC", "18446744073709551615", 1);
	check(notify_watchdog_usec() == 0);
	setenv("WATCHDOG_USEC", "9999999999999999999", 1);
	check(notify_watchdog_usec() == 9999999999999999999ull);
	setenv("WATCHDOG_USEC", "0", 1);
	check(notify_watchdog_usec() == 0);
	setenv("WATCHDOG_USEC", "", 1);
	check(notify_watchdog_usec() == 0);
	setenv("WATCHDOG_USEC", "-5", 1);
	check(notify_watchdog_usec() == 0);
	setenv("WATCHDOG_USEC", "15s", 1);
	check(notify_watchdog_usec() == 0);
	setenv("WATCHDOG_USEC", " 15", 1);
	check(notify_watchdog_usec() == 0);

	setenv("WATCHDOG_USEC", "30000000", 1);
	snprintf(pid, sizeof pid, "%ld", (long)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	check(notify_watchdog_usec() == 30000000);
	snprintf(pid, sizeof pid, "%ld", (long)getpid() + 1);
	setenv("WATCHDOG_PID", pid, 1);
	check(notify_watchdog_usec() == 0);
	setenv("WATCHDOG_PID", "x", 1);
	check(notify_watchdog_usec() == 0);
	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
}

int
main(void)
{
	test_unset();
	test_path();
	test_abstract();
	test_bad_address();
	test_watchdog_usec();
	return t_done();
}
