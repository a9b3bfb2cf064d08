/*
 * simkern.c - the simulated kernel: sockets, epoll, timerfd, signalfd,
 * clocks and randomness for a wsd linked with -Wl,--wrap (see sim.h).
 *
 * What it models: TCP as two byte queues per connection with a bounded
 * receive window on the client side, FIN in each direction, RST (a reset
 * loses what is in flight; the server's next read says ECONNRESET, and
 * closing with unread input resets the client), a listen backlog, and
 * level-triggered epoll.  Faults (short reads and writes, spurious EAGAIN
 * and EINTR, EMFILE on accept, small epoll batches) are chances the
 * driver sets.  What it does not model: the network (bytes arrive at
 * once), partial connects, or anything the daemon does not call.
 *
 * Every choice it makes comes from its own seeded generator, so a run is
 * a function of its seed and of what the driver does.  Last, sim_start()
 * starts wsd the way main.c does, for both drivers (sim.c, fuzz_conn.c).
 */
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "hub.h"
#include "log.h"
#include "routes.h"
#include "session_events.h"
#include "sim.h"
#include "ws.h"

#define EPOCH_MS	1767225600000ull	/* 2026-01-01: the wall clock */
#define START_MS	1000000			/* the monotonic clock at start */
#define C2S_CAP		(256 * 1024)	/* client bytes the server has not read */
#define LOG_LINES	64
#define LOG_WIDTH	240

/* The real calls, for fds that are not simulated. */
ssize_t	__real_read(int, void *, size_t);
ssize_t	__real_write(int, const void *, size_t);
ssize_t	__real_writev(int, const struct iovec *, int);
int	__real_close(int);
int	__real_open(const char *, int, ...);
int	__real_setsockopt(int, int, int, const void *, socklen_t);
int	__real_clock_gettime(clockid_t, struct timespec *);

/* Their replacements: every symbol listed in the Makefile's SIMWRAP. */
int	__wrap_socket(int, int, int);
int	__wrap_bind(int, const struct sockaddr *, socklen_t);
int	__wrap_listen(int, int);
int	__wrap_accept4(int, struct sockaddr *, socklen_t *, int);
int	__wrap_accept(int, struct sockaddr *, socklen_t *);
int	__wrap_getsockname(int, struct sockaddr *, socklen_t *);
int	__wrap_setsockopt(int, int, int, const void *, socklen_t);
int	__wrap_shutdown(int, int);
ssize_t	__wrap_read(int, void *, size_t);
ssize_t	__wrap_write(int, const void *, size_t);
ssize_t	__wrap_writev(int, const struct iovec *, int);
int	__wrap_close(int);
int	__wrap_open(const char *, int, ...);
int	__wrap_epoll_create1(int);
int	__wrap_epoll_ctl(int, int, int, struct epoll_event *);
int	__wrap_epoll_wait(int, struct epoll_event *, int, int);
int	__wrap_timerfd_create(int, int);
int	__wrap_timerfd_settime(int, int, const struct itimerspec *,
	    struct itimerspec *);
int	__wrap_signalfd(int, const sigset_t *, int);
int	__wrap_sigprocmask(int, const sigset_t *, sigset_t *);
int	__wrap_clock_gettime(clockid_t, struct timespec *);
time_t	__wrap_time(time_t *);
ssize_t	__wrap_getrandom(void *, size_t, unsigned);
int	__wrap_getaddrinfo(const char *, const char *, const struct addrinfo *,
	    struct addrinfo **);
void	__wrap_freeaddrinfo(struct addrinfo *);

enum fkind { F_FREE, F_EPOLL, F_LISTEN, F_CONN, F_TIMER, F_SIGNAL, F_NULL,
	F_LOG };

/* A byte queue: bytes p[off .. off + len). */
struct kbuf {
	uint8_t	*p;
	size_t	 off, len, cap;
};

struct ksock {
	struct sim_sock	 pub;
	struct kbuf	 c2s, s2c;
	int		 listener;	/* fd it waits on until accepted */
	uint8_t		 rst_read;	/* ECONNRESET was read once */
	uint8_t		 rst_write;
	uint8_t		 released;	/* the driver is done with the handle */
};

struct sfd {
	uint8_t		 kind;		/* enum fkind */
	uint8_t		 watched;	/* in the epoll interest list */
	uint8_t		 listening;
	uint32_t	 events;	/* interest */
	epoll_data_t	 data;
	int		 sock;		/* F_CONN: index into socks */
	uint64_t	 next, interval, count;	/* F_TIMER, ms */
	uint64_t	 sigmask;	/* F_SIGNAL: bit signo - 1 */
	unsigned	 spin;		/* steps reported ready in a row */
};

static struct sfd	*fds;
static int		 nfd;
static struct ksock	*socks;
static int		 nsock, sockcap;
static int		*backlog;	/* socket indices, oldest first */
static int		 nbacklog, backlogcap;
static unsigned		 open_conns;
static uint64_t		 pending_sigs;
static uint64_t		 now = START_MS;
static uint64_t		 steps;
static uint64_t		 rs = 0x9e3779b97f4a7c15ull;
static struct sim_faults faults;
static void		(*step_fn)(void);
static void		(*log_fn)(const char *, size_t);
static int		 last_accept = -1;
static char		 logring[LOG_LINES][LOG_WIDTH];
static unsigned		 nlog;
static int		*cand;		/* epoll_wait's ready fds */
static int		 candcap;

/* ==== Generator and helpers ============================================ */

/* splitmix64: small, and every seed gives a good stream. */
static uint64_t
krand(void)
{
	uint64_t z = (rs += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int
fault(unsigned per_mille)
{
	return per_mille > 0 && krand() % 1000 < per_mille;
}

void
sim_seed(uint64_t seed)
{
	rs = seed * 0x2545f4914f6cdd1dull + 1;
}

void
sim_set_faults(const struct sim_faults *f)
{
	faults = *f;
}

void
sim_on_step(void (*fn)(void))
{
	step_fn = fn;
}

void
sim_on_log(void (*fn)(const char *, size_t))
{
	log_fn = fn;
}

int
sim_last_accept(void)
{
	return last_accept;
}

uint64_t
sim_step(void)
{
	return steps;
}

uint64_t
sim_now(void)
{
	return now;
}

void
sim_advance(uint64_t ms)
{
	now += ms;
}

static int
kb_put(struct kbuf *b, const void *p, size_t n)
{
	if (b->off > 0 && b->off + b->len + n > b->cap) {
		memmove(b->p, b->p + b->off, b->len);
		b->off = 0;
	}
	if (b->len + n > b->cap) {
		size_t ncap = b->cap ? b->cap : 1024;
		uint8_t *np;

		while (ncap < b->len + n)
			ncap *= 2;
		if ((np = realloc(b->p, ncap)) == NULL)
			return -1;
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->off + b->len, p, n);
	b->len += n;
	return 0;
}

static void
kb_take(struct kbuf *b, void *dst, size_t n)
{
	if (dst != NULL)
		memcpy(dst, b->p + b->off, n);
	b->off += n;
	b->len -= n;
	if (b->len == 0)
		b->off = 0;
}

static void
kb_free(struct kbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

static struct sfd *
getfd(int fd)
{
	if (fd < SIM_FD_BASE || fd - SIM_FD_BASE >= nfd ||
	    fds[fd - SIM_FD_BASE].kind == F_FREE)
		return NULL;
	return &fds[fd - SIM_FD_BASE];
}

static int
is_sim(int fd)
{
	return fd >= SIM_FD_BASE;
}

/* The lowest free fd, as the kernel hands them out. */
static int
fd_new(int kind)
{
	int i;

	for (i = 0; i < nfd && fds[i].kind != F_FREE; i++)
		;
	if (i == nfd) {
		int ncap = nfd ? nfd * 2 : 64;
		struct sfd *n = realloc(fds, ncap * sizeof *n);

		if (n == NULL) {
			errno = ENOMEM;
			return -1;
		}
		memset(n + nfd, 0, (ncap - nfd) * sizeof *n);
		fds = n;
		nfd = ncap;
	}
	memset(&fds[i], 0, sizeof fds[i]);
	fds[i].kind = kind;
	fds[i].sock = -1;
	return SIM_FD_BASE + i;
}

static int
bad_fd(void)
{
	errno = EBADF;
	return -1;
}

/* ==== Timers and signals =============================================== */

static void
timer_catch_up(struct sfd *f)
{
	uint64_t n;

	if (f->next == 0 || now < f->next)
		return;
	if (f->interval == 0) {
		f->count++;
		f->next = 0;
		return;
	}
	n = 1 + (now - f->next) / f->interval;
	f->count += n;
	f->next += n * f->interval;
}

static uint64_t
ts_ms(const struct timespec *ts)
{
	uint64_t ms = (uint64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;

	if (ms == 0 && ts->tv_nsec > 0)
		ms = 1;
	return ms;
}

void
sim_signal(int signo)
{
	if (signo >= 1 && signo <= 64)
		pending_sigs |= 1ull << (signo - 1);
}

/* ==== Connections ======================================================= */

/* A released handle whose server side is gone too may be used again. */
static int
sock_reuse(void)
{
	for (int i = 0; i < nsock; i++) {
		struct ksock *s = &socks[i];

		if (s->released && (s->pub.srv_closed || s->pub.refused)) {
			kb_free(&s->c2s);
			kb_free(&s->s2c);
			return i;
		}
	}
	return -1;
}

int
sim_connect(size_t win)
{
	struct ksock *s;
	int l = -1, h;

	for (int i = 0; i < nfd; i++)
		if (fds[i].kind == F_LISTEN && fds[i].listening) {
			l = SIM_FD_BASE + i;
			break;
		}
	if (l == -1)
		return -1;
	if ((h = sock_reuse()) >= 0)
		goto found;
	if (nsock == sockcap) {
		int ncap = sockcap ? sockcap * 2 : 256;
		struct ksock *n = realloc(socks, ncap * sizeof *n);

		if (n == NULL)
			return -1;
		socks = n;
		sockcap = ncap;
	}
	if (nbacklog == backlogcap) {
		int ncap = backlogcap ? backlogcap * 2 : 64;
		int *n = realloc(backlog, ncap * sizeof *n);

		if (n == NULL)
			return -1;
		backlog = n;
		backlogcap = ncap;
	}
	h = nsock++;
found:
	s = &socks[h];
	memset(s, 0, sizeof *s);
	s->pub.fd = -1;
	s->pub.win = win;
	s->listener = l;
	backlog[nbacklog++] = h;
	return h;
}

void
sim_release(int h)
{
	socks[h].released = 1;
}

const struct sim_sock *
sim_sock(int h)
{
	return &socks[h].pub;
}

ssize_t
sim_send(int h, const void *p, size_t n)
{
	struct ksock *s = &socks[h];
	size_t room;

	if (s->pub.cli_shut || s->pub.cli_rst) {
		errno = EPIPE;
		return -1;
	}
	if (s->pub.srv_rst || s->pub.refused) {
		errno = ECONNRESET;
		return -1;
	}
	if (s->pub.srv_closed)
		return n;	/* lost; the peer resets, the client reads EOF */
	room = C2S_CAP > s->c2s.len ? C2S_CAP - s->c2s.len : 0;
	if (n > room)
		n = room;
	if (n == 0) {
		errno = EAGAIN;
		return -1;
	}
	if (kb_put(&s->c2s, p, n) == -1) {
		errno = ENOMEM;
		return -1;
	}
	s->pub.c2s_len = s->c2s.len;
	return n;
}

ssize_t
sim_recv(int h, void *buf, size_t cap)
{
	struct ksock *s = &socks[h];
	size_t n;

	if (s->pub.refused || s->pub.cli_rst) {
		errno = ECONNRESET;
		return -1;
	}
	if (s->s2c.len == 0) {
		if (s->pub.srv_rst) {
			errno = ECONNRESET;
			return -1;
		}
		if (s->pub.srv_shut || s->pub.srv_closed)
			return 0;
		errno = EAGAIN;
		return -1;
	}
	n = cap < s->s2c.len ? cap : s->s2c.len;
	kb_take(&s->s2c, buf, n);
	s->pub.s2c_len = s->s2c.len;
	return n;
}

void
sim_shut(int h)
{
	socks[h].pub.cli_shut = 1;
}

void
sim_close(int h)
{
	struct ksock *s = &socks[h];

	s->pub.cli_shut = 1;
	s->pub.cli_closed = 1;
	/* Closing with unread input resets the connection (RFC 1122
	 * 4.2.2.13), as the server's close does. */
	if (s->s2c.len > 0)
		s->pub.cli_rst = 1;
	kb_free(&s->s2c);
	s->pub.s2c_len = 0;
}

void
sim_reset(int h)
{
	struct ksock *s = &socks[h];

	s->pub.cli_rst = 1;
	s->pub.cli_shut = 1;
	s->pub.cli_closed = 1;
	kb_free(&s->c2s);
	kb_free(&s->s2c);
	s->pub.c2s_len = s->pub.s2c_len = 0;
}

void
sim_set_win(int h, size_t win)
{
	socks[h].pub.win = win;
}

unsigned
sim_open_conns(void)
{
	return open_conns;
}

static uint32_t
conn_ready(const struct ksock *s)
{
	const struct sim_sock *p = &s->pub;
	uint32_t ev = 0;

	if (s->c2s.len > 0 || p->cli_shut || p->cli_rst)
		ev |= EPOLLIN;
	if (p->cli_shut || p->cli_rst)
		ev |= EPOLLRDHUP;
	if (p->cli_rst)
		ev |= EPOLLHUP | (s->rst_read ? 0 : EPOLLERR) | EPOLLOUT;
	else if (p->cli_shut && p->srv_shut)
		ev |= EPOLLHUP;
	if (!p->srv_shut && !p->cli_rst && s->s2c.len < p->win)
		ev |= EPOLLOUT;
	return ev;
}

static ssize_t
conn_read(struct ksock *s, void *buf, size_t cap)
{
	size_t n;

	if (s->pub.cli_rst) {
		if (s->rst_read)
			return 0;
		s->rst_read = 1;
		errno = ECONNRESET;
		return -1;
	}
	if (cap == 0)
		return 0;
	if (s->c2s.len == 0) {
		if (s->pub.cli_shut)
			return 0;
		errno = EAGAIN;
		return -1;
	}
	if (fault(faults.eagain)) {
		errno = EAGAIN;
		return -1;
	}
	if (fault(faults.eintr)) {
		errno = EINTR;
		return -1;
	}
	n = cap < s->c2s.len ? cap : s->c2s.len;
	if (n > 1 && fault(faults.short_read))
		n = 1 + krand() % n;
	kb_take(&s->c2s, buf, n);
	s->pub.c2s_len = s->c2s.len;
	s->pub.rd += n;
	return n;
}

static ssize_t
conn_write(struct ksock *s, const struct iovec *iov, int iovcnt)
{
	size_t total = 0, room, want, done = 0;

	if (s->pub.cli_rst) {
		errno = s->rst_write++ ? EPIPE : ECONNRESET;
		return -1;
	}
	if (s->pub.srv_shut) {
		errno = EPIPE;
		return -1;
	}
	if (iovcnt < 0 || iovcnt > IOV_MAX) {
		errno = EINVAL;
		return -1;
	}
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total == 0)
		return 0;
	if (s->pub.cli_closed) {
		/* Data for a closed socket: its kernel answers with RST. */
		s->pub.cli_rst = 1;
		s->pub.wr += total;
		s->pub.wr_step = steps;
		return total;
	}
	if (fault(faults.eintr)) {
		errno = EINTR;
		return -1;
	}
	room = s->pub.win > s->s2c.len ? s->pub.win - s->s2c.len : 0;
	if (room == 0 || fault(faults.eagain)) {
		errno = EAGAIN;
		return -1;
	}
	want = total < room ? total : room;
	if (want > 1 && fault(faults.short_write))
		want = 1 + krand() % want;
	for (int i = 0; i < iovcnt && done < want; i++) {
		size_t k = iov[i].iov_len < want - done ? iov[i].iov_len :
		    want - done;

		if (kb_put(&s->s2c, iov[i].iov_base, k) == -1) {
			errno = ENOMEM;
			return -1;
		}
		done += k;
	}
	s->pub.s2c_len = s->s2c.len;
	s->pub.wr += done;
	s->pub.wr_step = steps;
	return done;
}

/* ==== The log ============================================================ */

static void
log_line(const char *p, size_t n)
{
	char *l = logring[nlog++ % LOG_LINES];

	if (log_fn != NULL)
		log_fn(p, n > 0 && p[n - 1] == '\n' ? n - 1 : n);
	if (n >= LOG_WIDTH)
		n = LOG_WIDTH - 1;
	memcpy(l, p, n);
	l[n] = '\0';
	if (n > 0 && l[n - 1] == '\n')
		l[n - 1] = '\0';
}

void
sim_dump_log(unsigned lines)
{
	unsigned first = nlog > lines ? nlog - lines : 0;

	if (nlog - first > LOG_LINES)
		first = nlog - LOG_LINES;
	for (unsigned i = first; i < nlog; i++)
		fprintf(stderr, "  log: %s\n", logring[i % LOG_LINES]);
}

/* ==== epoll ============================================================== */

static uint32_t
fd_ready(struct sfd *f)
{
	switch (f->kind) {
	case F_LISTEN:
		for (int i = 0; i < nbacklog; i++)
			if (socks[backlog[i]].listener ==
			    SIM_FD_BASE + (int)(f - fds))
				return EPOLLIN;
		return 0;
	case F_CONN:
		return conn_ready(&socks[f->sock]);
	case F_TIMER:
		timer_catch_up(f);
		return f->count > 0 ? EPOLLIN : 0;
	case F_SIGNAL:
		return (pending_sigs & f->sigmask) ? EPOLLIN : 0;
	default:
		return 0;
	}
}

static int
collect(struct epoll_event *ev, int max)
{
	int n = 0, ncand = 0, lim = max;

	if (candcap < nfd) {
		free(cand);
		if ((cand = malloc(nfd * sizeof *cand)) == NULL)
			return 0;
		candcap = nfd;
	}
	for (int i = 0; i < nfd; i++) {
		struct sfd *f = &fds[i];

		if (f->kind == F_FREE || !f->watched)
			continue;
		if (fd_ready(f) & (f->events | EPOLLERR | EPOLLHUP))
			cand[ncand++] = i;
		else
			f->spin = 0;
	}
	/* The kernel's ready list has an order of its own; any order is
	 * one the daemon must cope with. */
	for (int i = ncand - 1; i > 0; i--) {
		int j = krand() % (i + 1), t = cand[i];

		cand[i] = cand[j];
		cand[j] = t;
	}
	if (fault(faults.small_batch))
		lim = 1 + krand() % 4;
	for (int i = 0; i < ncand && n < lim; i++, n++) {
		struct sfd *f = &fds[cand[i]];

		ev[n].events = fd_ready(f) & (f->events | EPOLLERR | EPOLLHUP);
		ev[n].data = f->data;
		f->spin++;
	}
	return n;
}

int
__wrap_epoll_create1(int flags)
{
	(void)flags;
	return fd_new(F_EPOLL);
}

int
__wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	struct sfd *e = getfd(epfd), *f = getfd(fd);

	if (e == NULL || e->kind != F_EPOLL || f == NULL)
		return bad_fd();
	if (f == e || f->kind == F_NULL || f->kind == F_LOG) {
		errno = EPERM;
		return -1;
	}
	f->spin = 0;
	switch (op) {
	case EPOLL_CTL_ADD:
		if (f->watched) {
			errno = EEXIST;
			return -1;
		}
		f->watched = 1;
		f->events = ev->events;
		f->data = ev->data;
		return 0;
	case EPOLL_CTL_MOD:
	case EPOLL_CTL_DEL:
		if (!f->watched) {
			errno = ENOENT;
			return -1;
		}
		if (op == EPOLL_CTL_DEL)
			f->watched = 0;
		else {
			f->events = ev->events;
			f->data = ev->data;
		}
		return 0;
	}
	errno = EINVAL;
	return -1;
}

/*
 * One step: the driver acts first (clients, time, checks), then whatever
 * is ready is returned.  Nothing ready returns 0 at once even without a
 * timeout: time moves only when the driver moves it, and ws_run() only
 * loops again.
 */
int
__wrap_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	struct sfd *e = getfd(epfd);

	(void)timeout;
	if (e == NULL || e->kind != F_EPOLL)
		return bad_fd();
	if (max <= 0) {
		errno = EINVAL;
		return -1;
	}
	steps++;
	if (step_fn != NULL)
		step_fn();
	if (fault(faults.eintr)) {
		errno = EINTR;
		return -1;
	}
	return collect(ev, max);
}

/* The longest run of steps an fd was reported ready without the daemon
 * touching it: a busy loop in the making. */
unsigned
sim_spinning(void)
{
	unsigned m = 0;

	for (int i = 0; i < nfd; i++)
		if (fds[i].kind != F_FREE && fds[i].spin > m)
			m = fds[i].spin;
	return m;
}

/* ==== Sockets ============================================================ */

int
__wrap_socket(int domain, int type, int protocol)
{
	(void)protocol;
	if ((domain != AF_INET && domain != AF_INET6) ||
	    (type & 0xf) != SOCK_STREAM) {
		errno = EAFNOSUPPORT;
		return -1;
	}
	return fd_new(F_LISTEN);
}

int
__wrap_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct sfd *f = getfd(fd);

	(void)sa;
	(void)len;
	if (f == NULL)
		return bad_fd();
	return 0;
}

int
__wrap_listen(int fd, int backlog_len)
{
	struct sfd *f = getfd(fd);

	(void)backlog_len;
	if (f == NULL || f->kind != F_LISTEN)
		return bad_fd();
	f->listening = 1;
	return 0;
}

static void
fill_addr(struct sockaddr *sa, socklen_t *len, int port)
{
	struct sockaddr_in sin = { 0 };

	if (sa == NULL || len == NULL)
		return;
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	memcpy(sa, &sin, *len < sizeof sin ? *len : sizeof sin);
	*len = sizeof sin;
}

static int
do_accept(int fd, struct sockaddr *sa, socklen_t *len, int may_fail)
{
	struct sfd *f = getfd(fd);
	struct ksock *s;
	int i, nfd_, idx;

	if (f == NULL || f->kind != F_LISTEN || !f->listening) {
		errno = EINVAL;
		return -1;
	}
	f->spin = 0;
	for (i = 0; i < nbacklog && socks[backlog[i]].listener != fd; i++)
		;
	if (i == nbacklog) {
		errno = EAGAIN;
		return -1;
	}
	if (may_fail && fault(faults.emfile)) {
		errno = EMFILE;
		return -1;
	}
	if ((nfd_ = fd_new(F_CONN)) == -1)
		return -1;
	idx = backlog[i];
	memmove(backlog + i, backlog + i + 1,
	    (nbacklog - i - 1) * sizeof *backlog);
	nbacklog--;
	s = &socks[idx];
	fds[nfd_ - SIM_FD_BASE].sock = idx;
	s->pub.fd = nfd_;
	s->pub.accepted = 1;
	s->pub.open_at_accept = open_conns++;
	last_accept = idx;
	fill_addr(sa, len, 40000 + idx % 20000);
	return nfd_;
}

int
__wrap_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	(void)flags;
	return do_accept(fd, sa, len, 1);
}

int
__wrap_accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	return do_accept(fd, sa, len, 0);
}

int
__wrap_getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
	if (getfd(fd) == NULL)
		return bad_fd();
	fill_addr(sa, len, SIM_PORT);
	return 0;
}

int
__wrap_setsockopt(int fd, int level, int name, const void *v, socklen_t len)
{
	if (!is_sim(fd))
		return __real_setsockopt(fd, level, name, v, len);
	return getfd(fd) == NULL ? bad_fd() : 0;
}

int
__wrap_shutdown(int fd, int how)
{
	struct sfd *f = getfd(fd);

	if (f == NULL)
		return bad_fd();
	if (f->kind != F_CONN) {
		errno = ENOTCONN;
		return -1;
	}
	if (how == SHUT_WR || how == SHUT_RDWR)
		socks[f->sock].pub.srv_shut = 1;
	return 0;
}

int
__wrap_getaddrinfo(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res)
{
	struct {
		struct addrinfo		ai;
		struct sockaddr_in6	sa;	/* room for either family */
	} *r;
	int port = service != NULL ? atoi(service) : 0;

	(void)hints;
	if ((r = calloc(1, sizeof *r)) == NULL)
		return EAI_MEMORY;
	r->ai.ai_socktype = SOCK_STREAM;
	r->ai.ai_addr = (struct sockaddr *)&r->sa;
	if (node != NULL && strchr(node, ':') != NULL) {
		r->ai.ai_family = AF_INET6;
		r->ai.ai_addrlen = sizeof r->sa;
		r->sa.sin6_family = AF_INET6;
		r->sa.sin6_port = htons(port);
		if (inet_pton(AF_INET6, node, &r->sa.sin6_addr) != 1)
			goto noname;
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&r->sa;

		r->ai.ai_family = AF_INET;
		r->ai.ai_addrlen = sizeof *sin;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		if (node == NULL || strcmp(node, "localhost") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		else if (inet_pton(AF_INET, node, &sin->sin_addr) != 1)
			goto noname;
	}
	*res = &r->ai;
	return 0;
noname:
	free(r);
	return EAI_NONAME;
}

void
__wrap_freeaddrinfo(struct addrinfo *ai)
{
	free(ai);	/* one allocation, from __wrap_getaddrinfo */
}

/* ==== Files: read, write, close, open ==================================== */

ssize_t
__wrap_read(int fd, void *buf, size_t n)
{
	struct sfd *f;

	if (!is_sim(fd))
		return __real_read(fd, buf, n);
	if ((f = getfd(fd)) == NULL)
		return bad_fd();
	f->spin = 0;
	switch (f->kind) {
	case F_CONN:
		return conn_read(&socks[f->sock], buf, n);
	case F_TIMER:
		if (n < sizeof f->count) {
			errno = EINVAL;
			return -1;
		}
		timer_catch_up(f);
		if (f->count == 0) {
			errno = EAGAIN;
			return -1;
		}
		memcpy(buf, &f->count, sizeof f->count);
		f->count = 0;
		return sizeof f->count;
	case F_SIGNAL: {
		struct signalfd_siginfo si;
		uint64_t ready = pending_sigs & f->sigmask;
		int signo;

		if (n < sizeof si) {
			errno = EINVAL;
			return -1;
		}
		if (ready == 0) {
			errno = EAGAIN;
			return -1;
		}
		signo = __builtin_ctzll(ready) + 1;
		pending_sigs &= ~(1ull << (signo - 1));
		memset(&si, 0, sizeof si);
		si.ssi_signo = signo;
		memcpy(buf, &si, sizeof si);
		return sizeof si;
	}
	case F_NULL:
		return 0;
	default:
		errno = EINVAL;
		return -1;
	}
}

ssize_t
__wrap_writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct sfd *f;

	if (!is_sim(fd))
		return __real_writev(fd, iov, iovcnt);
	if ((f = getfd(fd)) == NULL)
		return bad_fd();
	f->spin = 0;
	if (f->kind == F_LOG) {
		size_t total = 0;

		for (int i = 0; i < iovcnt; i++) {
			log_line(iov[i].iov_base, iov[i].iov_len);
			total += iov[i].iov_len;
		}
		return total;
	}
	if (f->kind != F_CONN) {
		errno = EINVAL;
		return -1;
	}
	return conn_write(&socks[f->sock], iov, iovcnt);
}

ssize_t
__wrap_write(int fd, const void *p, size_t n)
{
	struct iovec iov = { (void *)p, n };

	if (!is_sim(fd))
		return __real_write(fd, p, n);
	return __wrap_writev(fd, &iov, 1);
}

int
__wrap_close(int fd)
{
	struct sfd *f;

	if (!is_sim(fd))
		return __real_close(fd);
	if ((f = getfd(fd)) == NULL)
		return bad_fd();
	if (f->kind == F_CONN) {
		struct ksock *s = &socks[f->sock];

		s->pub.fd = -1;
		s->pub.srv_closed = 1;
		s->pub.close_step = steps;
		open_conns--;
		/* Unread input: the client gets a reset, not a FIN. */
		if (s->c2s.len > 0 && !s->pub.cli_rst)
			s->pub.srv_rst = 1;
		kb_free(&s->c2s);
		s->pub.c2s_len = 0;
		if (s->pub.cli_closed)
			kb_free(&s->s2c);
	} else if (f->kind == F_LISTEN) {
		/* Connections still in the backlog are reset. */
		for (int i = 0; i < nbacklog; i++)
			if (socks[backlog[i]].listener == fd) {
				socks[backlog[i]].pub.refused = 1;
				memmove(backlog + i, backlog + i + 1,
				    (nbacklog - i - 1) * sizeof *backlog);
				nbacklog--;
				i--;
			}
	}
	memset(f, 0, sizeof *f);
	return 0;
}

int
__wrap_open(const char *path, int flags, ...)
{
	va_list ap;
	int mode;

	if (strcmp(path, "/dev/null") == 0)
		return fd_new(F_NULL);
	if (strcmp(path, SIM_LOG) == 0)
		return fd_new(F_LOG);
	/* No /proc, as in a chroot: the host figures (host.c) would be the
	 * real machine's, and realtime_update events of a size that changes
	 * from run to run would make a seed replay differently. */
	if (strncmp(path, "/proc/", 6) == 0) {
		errno = ENOENT;
		return -1;
	}
	va_start(ap, flags);
	mode = va_arg(ap, int);
	va_end(ap);
	return __real_open(path, flags, mode);
}

/* ==== timerfd, signalfd, clocks, randomness ============================== */

int
__wrap_timerfd_create(int clock, int flags)
{
	(void)clock;
	(void)flags;
	return fd_new(F_TIMER);
}

int
__wrap_timerfd_settime(int fd, int flags, const struct itimerspec *its,
    struct itimerspec *old)
{
	struct sfd *f = getfd(fd);
	uint64_t value;

	if (f == NULL || f->kind != F_TIMER)
		return bad_fd();
	if (flags != 0) {
		errno = EINVAL;		/* absolute times are not simulated */
		return -1;
	}
	if (old != NULL)
		memset(old, 0, sizeof *old);
	value = ts_ms(&its->it_value);
	f->interval = ts_ms(&its->it_interval);
	f->next = value > 0 ? now + value : 0;
	f->count = 0;
	return 0;
}

int
__wrap_signalfd(int fd, const sigset_t *mask, int flags)
{
	struct sfd *f;

	(void)flags;
	if (fd == -1) {
		if ((fd = fd_new(F_SIGNAL)) == -1)
			return -1;
	}
	if ((f = getfd(fd)) == NULL || f->kind != F_SIGNAL)
		return bad_fd();
	f->sigmask = 0;
	for (int s = 1; s <= 64; s++)
		if (sigismember(mask, s) == 1)
			f->sigmask |= 1ull << (s - 1);
	return fd;
}

int
__wrap_sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	/* Signals come only through sim_signal(); the real ones (a ^C to
	 * the test) keep working. */
	(void)how;
	(void)set;
	if (old != NULL)
		sigemptyset(old);
	return 0;
}

int
__wrap_clock_gettime(clockid_t clk, struct timespec *ts)
{
	uint64_t ms;

	switch (clk) {
	case CLOCK_MONOTONIC:
	case CLOCK_MONOTONIC_COARSE:
	case CLOCK_MONOTONIC_RAW:
	case CLOCK_BOOTTIME:
		ms = now;
		break;
	case CLOCK_REALTIME:
	case CLOCK_REALTIME_COARSE:
		ms = EPOCH_MS + now;
		break;
	default:
		return __real_clock_gettime(clk, ts);
	}
	ts->tv_sec = ms / 1000;
	ts->tv_nsec = (ms % 1000) * 1000000;
	return 0;
}

time_t
__wrap_time(time_t *t)
{
	time_t s = (EPOCH_MS + now) / 1000;

	if (t != NULL)
		*t = s;
	return s;
}

ssize_t
__wrap_getrandom(void *buf, size_t n, unsigned flags)
{
	uint8_t *p = buf;

	(void)flags;
	for (size_t i = 0; i < n; i++)
		p[i] = krand() >> 56;
	return n;
}

/* ==== The daemon, wired as main.c wires it ============================== */

int
sim_start(const struct ws_config *wcfg, const struct hub_config *hcfg,
    const char *level)
{
	if (log_set_file(SIM_LOG) == -1 || log_set_level(level) == -1 ||
	    ws_init(wcfg, &routes_handlers) == -1 || hub_init(hcfg) == -1 ||
	    routes_init() == -1 || sess_init() == -1 ||
	    ws_listen("127.0.0.1:8000") == -1)
		return -1;
	return 0;
}

void
sim_free(void)
{
	for (int i = 0; i < nsock; i++) {
		kb_free(&socks[i].c2s);
		kb_free(&socks[i].s2c);
	}
	free(socks);
	free(backlog);
	free(fds);
	free(cand);
	socks = NULL;
	backlog = NULL;
	fds = NULL;
	cand = NULL;
	nsock = sockcap = nbacklog = backlogcap = nfd = candcap = 0;
	open_conns = 0;
	last_accept = -1;
}
