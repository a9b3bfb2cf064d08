/*
 * wsbench - a WebSocket load generator for wsd and its peers.
 *
 * One thread, one epoll set, many client connections to one server on
 * the loopback.  Four modes:
 *
 *   handshake  open, upgrade and close connections, C at a time, for T s
 *   echo       C connections round-trip S-byte messages on /echo, D deep
 *   fanout     N subscribers, P publishers; publish at R msgs/s, or as
 *              fast as possible with at most W messages in flight
 *   idle       hold N connections for T s; read the server's RSS
 *
 * With --tls every connection speaks TLS first (wss://): OpenSSL's
 * client, TLS 1.3 or 1.2 as the server chooses, the server's certificate
 * not verified (a loopback bench against a self-signed certificate).
 * With --resume as well, each new connection offers the last session
 * ticket the server sent, so the handshake mode measures resumed
 * handshakes; without it every handshake is a full one.
 *
 * Every run ends with one "key=value ..." line on stdout; diagnostics go
 * to stderr.  wsbench counts and times; it does not judge the server.
 *
 * The bench payload is ASCII, "pub:msg:send_ns:" padded with 'x' to S
 * bytes, so it travels inside a wsd JSON string without escaping and
 * carries its own send time: one process stamps and reads the clock, so
 * CLOCK_MONOTONIC is comparable on both ends.
 *
 * With --envelope (fan-out, servers other than wsd) the publishers send
 * the event wsd would send for each payload, {"type":"b","group":
 * "bench","seq":N,"timestamp":"...","data":"PAYLOAD"}, which the server
 * relays as it is, and the subscribers take the payload out of "data" as
 * they do for wsd: the same bytes and the same work per frame for every
 * server.  With --pid in the fan-out mode, the server's CPU time over the
 * run (from /proc/PID/stat) is reported per delivery and as a share.
 *
 * Helpers return 0 on success and -1 on failure unless noted.
 */

#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#define NS		1000000000ULL
#define MS		1000000ULL

#define SRC_BLOCK	20000		/* connections per source address */
#define HS_SOURCES	200		/* addresses the handshake mode uses */
#define HTTP_MAX	8192		/* longest upgrade response we read */
#define FRAME_MAX	(16u << 20)	/* longest frame or message we accept */
#define RBUF_MIN	(1u << 20)	/* the shared read buffer */
#define OUT_MAX		(4u << 20)	/* a publisher this far behind waits */
#define NEVENTS		1024
#define UPGRADE_NS	(10 * NS)	/* connect + upgrade must finish by */
#define CLOSE_NS	(1 * NS)	/* after our close, wait for EOF */
#define STALL_NS	(3 * NS)	/* a full window with no progress */
#define SETTLE_NS	(200 * MS)	/* from subscribing to publishing */

#define WS_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum mode { M_HANDSHAKE, M_ECHO, M_FANOUT, M_IDLE };
enum role { R_HS, R_ECHO, R_SUB, R_PUB, R_IDLE };
enum cstate { C_FREE, C_CONNECTING, C_UPGRADING, C_OPEN, C_CLOSING };
enum phase { P_CONNECT, P_SETTLE, P_RUN, P_DRAIN, P_DONE };

/* RFC 6455 §5.2 opcodes. */
enum { OP_CONT = 0x0, OP_TEXT = 0x1, OP_BIN = 0x2, OP_CLOSE = 0x8,
       OP_PING = 0x9, OP_PONG = 0xa };

struct buf {
	uint8_t		*p;		/* owned; NULL until first use */
	size_t		 off;		/* first byte not yet consumed */
	size_t		 len;		/* end of valid bytes */
	size_t		 cap;
};

struct conn {
	int		 fd;		/* -1 while the slot is free */
	int		 idx;		/* index among its role's slots */
	enum role	 role;
	enum cstate	 state;
	uint32_t	 events;	/* what epoll currently waits for */
	int		 dirty;		/* on the flush list this turn */
	int		 ended;		/* closed this turn; reuse after it */
	int		 counted;	/* a sub open when the run began */
	uint64_t	 t_start;	/* connect() called */
	uint64_t	 t_close;	/* our close frame queued */
	char		 accept[32];	/* the Sec-WebSocket-Accept we expect */
	struct buf	 in;		/* unparsed bytes kept between reads */
	struct buf	 out;		/* bytes not yet written */
	struct buf	 msg;		/* fragments of a message in assembly */
	uint8_t		 msg_op;
	SSL		*ssl;		/* --tls: owned; NULL on plain TCP */
	int		 tls_done;	/* the TLS handshake finished */
	uint64_t	*ring;		/* echo: send times in flight, owned */
	unsigned	 rhead, rcount;
};

/* Log-linear histogram of nanoseconds: 64 sub-buckets per power of two. */
#define H_SUB		64
#define H_BUCKETS	(H_SUB * 60)
struct hist {
	uint64_t	 n[H_BUCKETS];
	uint64_t	 count, max;
};

static struct {
	/* options */
	enum mode	 mode;
	int		 wsd;		/* target speaks wsd's JSON routes */
	int		 envelope;	/* peers: publish wsd-shaped events */
	struct sockaddr_in dst;
	char		 host[64];
	int		 conns, subs, pubs, size, depth, window, burst;
	double		 rate, secs, max_secs, drain_secs;
	uint64_t	 max_msgs;
	long		 pid;
	const char	*path;
	int		 tls, resume;
	SSL_CTX		*ssl_ctx;
	SSL_SESSION	*session;	/* --resume: the last ticket, owned */

	/* run state */
	int		 ep;
	struct conn	*c;		/* every slot, owned */
	int		 nc;
	uint8_t		*rbuf;		/* shared read buffer, owned */
	size_t		 rcap;
	struct conn	**dirty;	/* connections to flush after a turn */
	int		 ndirty;
	struct conn	**ended;	/* slots to reuse after a turn */
	int		 nended;
	uint64_t	 serial;	/* connections opened so far */
	uint64_t	 rng;
	enum phase	 phase;
	uint64_t	 t_begin, t_run, t_stop, t_drain, t_deadline, t_last;
	uint64_t	 t_settle, t_progress;
	int		 cursor;	/* next slot to connect */
	int		 pending, opened, failed;
	int		 pub_blocked;	/* every publisher is too far behind */
	uint8_t		*pl;		/* payload scratch, owned */
	double		 cpu_run0;
	double		 srv_cpu0;	/* --pid: server CPU at run start, or -1 */

	/* results */
	struct hist	 lat;
	uint64_t	 msgs, bad, other, srv_closed, errors;
	uint64_t	 hs_ok, hs_fail, close_clean, close_timeout;
	uint64_t	 resumed;	/* TLS handshakes that resumed */
	int		 last_close_code, timed_out, stalled;
	char		 sample[128];	/* first ignored frame, for diagnosis */

	/* fanout */
	int		 live_subs, subs_at_start, next_pub;
	uint64_t	*pub_sent;	/* messages sent per publisher */
	uint64_t	*next_exp;	/* [sub * pubs + pub]: msg expected */
	uint32_t	*got;		/* [msg * pubs + pub]: deliveries */
	uint8_t		*done;		/* same index: delivered to all */
	uint64_t	 published, completed, low, per_pub_max;
	uint64_t	 uniq, dups, gaps, due;
	long		 rss_before, rss_after;
} g;

static void	 usage(void);
static void	 die(const char *, ...);
static uint64_t	 now_ns(void);
static double	 cpu_s(void);
static uint64_t	 rnd(void);
static void	 hist_add(struct hist *, uint64_t);
static uint64_t	 hist_pct(const struct hist *, double);
static int	 buf_reserve(struct buf *, size_t);
static void	 buf_free(struct buf *);
static void	 raise_nofile(int);
static int	 conn_start(struct conn *, enum role, int);
static void	 conn_end(struct conn *);
static void	 conn_watch(struct conn *, uint32_t);
static void	 conn_flush(struct conn *);
static void	 conn_dirty(struct conn *);
static void	 conn_read(struct conn *);
static void	 conn_writable(struct conn *);
static void	 conn_send(struct conn *, int, const uint8_t *, size_t);
static size_t	 parse_frames(struct conn *, uint8_t *, size_t, uint64_t);
static void	 on_open(struct conn *, uint64_t);
static void	 on_message(struct conn *, int, uint8_t *, size_t, uint64_t);
static void	 on_lost(struct conn *);
static void	 publish(uint64_t);
static void	 loop(void);
static void	 report(void);
static double	 proc_cpu_s(long);

/* ---------------------------------------------------------------- */
/* Clocks, randomness, histograms                                    */

static void
usage(void)
{
	fprintf(stderr,
"usage: wsbench --mode handshake|echo|fanout|idle --connect 127.0.0.1:PORT\n"
"               [--target peer|wsd] [-c conns] [-t secs] [-s size]\n"
"               [-d depth] [--subs N] [--pubs P] [--rate R] [--window W]\n"
"               [--msgs M] [--pid PID] [--path PATH] [--burst B]\n"
"               [--tls [--resume]] [--envelope]\n"
"               [--max-time secs] [--drain secs]\n");
	exit(2);
}

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "wsbench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

static double
cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/*
 * xorshift64: masking keys and handshake nonces need not be secret for a
 * load generator, only cheap and different from frame to frame.
 */
static uint64_t
rnd(void)
{
	g.rng ^= g.rng << 13;
	g.rng ^= g.rng >> 7;
	g.rng ^= g.rng << 17;
	return g.rng;
}

static void
hist_add(struct hist *h, uint64_t v)
{
	unsigned e, b;

	if (v < H_SUB * 2)
		b = (unsigned)v;
	else {
		/* v >> e lies in [64, 128) */
		e = 63 - __builtin_clzll(v) - 6;
		b = e * H_SUB + (unsigned)(v >> e);
		if (b >= H_BUCKETS)
			b = H_BUCKETS - 1;
	}
	h->n[b]++;
	h->count++;
	if (v > h->max)
		h->max = v;
}

/* The value below which a fraction q of the samples fall (bucket top). */
static uint64_t
hist_pct(const struct hist *h, double q)
{
	uint64_t want, top, seen = 0;
	unsigned b, e;

	if (h->count == 0)
		return 0;
	want = (uint64_t)(q * h->count);
	if (want >= h->count)
		return h->max;
	for (b = 0; b < H_BUCKETS; b++) {
		seen += h->n[b];
		if (seen > want)
			break;
	}
	if (b < H_SUB * 2)
		return b;
	/* Bucket e * 64 + k holds [k << e, (k + 1) << e), k in [64, 128). */
	e = b / H_SUB - 1;
	top = ((uint64_t)(b - e * H_SUB + 1) << e) - 1;
	return top < h->max ? top : h->max;
}

static int
buf_reserve(struct buf *b, size_t more)
{
	size_t need, cap;
	uint8_t *p;

	if (b->off > 0 && b->off == b->len)
		b->off = b->len = 0;
	if (b->len + more <= b->cap)
		return 0;
	/* Slide unconsumed bytes down before growing. */
	if (b->off > 0) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if (b->len + more <= b->cap)
			return 0;
	}
	need = b->len + more;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	if ((p = realloc(b->p, cap)) == NULL)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

static void
buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->off = b->len = b->cap = 0;
}

/* ---------------------------------------------------------------- */
/* Sockets                                                           */

/*
 * Each connection costs a descriptor; ask for what the run needs.  Root
 * may also lift the hard limit.
 */
static void
raise_nofile(int need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (rl.rlim_cur >= (rlim_t)need)
		return;
	if (rl.rlim_max < (rlim_t)need)
		rl.rlim_max = need;
	rl.rlim_cur = need;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		fprintf(stderr, "wsbench: cannot raise RLIMIT_NOFILE to %d: "
		    "%s\n", need, strerror(errno));
}

/*
 * One source address offers about 28,000 ephemeral ports toward one
 * server port, so every SRC_BLOCK connections move to the next 127.0.0.x.
 * IP_BIND_ADDRESS_NO_PORT leaves the port choice to connect(), which
 * then only needs the 4-tuple to be unique.
 *
 * The handshake mode turns connections over fast, and the server, which
 * closes first (RFC 6455 §7.1.1), keeps each 4-tuple in TIME_WAIT for a
 * minute.  A SYN that reuses such a tuple may be dropped and retried a
 * second later, so that mode deals its connections over HS_SOURCES
 * addresses from the start.
 */
static int
sock_open(uint64_t serial)
{
	struct sockaddr_in src;
	unsigned block;
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (g.mode == M_HANDSHAKE)
		block = 1 + (unsigned)(serial % HS_SOURCES);
	else
		block = (unsigned)(serial / SRC_BLOCK % 250);
	if (block > 0) {
		memset(&src, 0, sizeof src);
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl(0x7f000001 + block);
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof one);
		if (bind(fd, (struct sockaddr *)&src, sizeof src) == -1)
			goto fail;
	}
	if (connect(fd, (struct sockaddr *)&g.dst, sizeof g.dst) == -1 &&
	    errno != EINPROGRESS)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

/* ---------------------------------------------------------------- */
/* TLS (--tls)                                                       */

/* A ticket arrived (TLS 1.3 sends them after the handshake): keep the
 * latest for the next connection to offer. */
static int
tls_new_session(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	if (!g.resume)
		return 0;
	if (g.session != NULL)
		SSL_SESSION_free(g.session);
	g.session = sess;
	return 1;		/* we keep the reference */
}

static void
tls_init(void)
{
	g.ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (g.ssl_ctx == NULL)
		die("SSL_CTX_new failed");
	SSL_CTX_set_verify(g.ssl_ctx, SSL_VERIFY_NONE, NULL);
	/* A write that blocked is retried from the same buffer, which may
	 * have grown and moved meanwhile. */
	SSL_CTX_set_mode(g.ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_cache_mode(g.ssl_ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(g.ssl_ctx, tls_new_session);
}

/* Waits for what OpenSSL asked for; 0 on WANT_*, -1 on failure. */
static int
tls_want(struct conn *c, int rc)
{
	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		conn_watch(c, EPOLLIN);
		return 0;
	case SSL_ERROR_WANT_WRITE:
		conn_watch(c, EPOLLIN | EPOLLOUT);
		return 0;
	default:
		ERR_clear_error();
		return -1;
	}
}

static void	 send_upgrade(struct conn *);

/* Drives the handshake on; sends the upgrade request once it is done. */
static void
tls_step(struct conn *c)
{
	int rc;

	if ((rc = SSL_do_handshake(c->ssl)) == 1) {
		c->tls_done = 1;
		if (SSL_session_reused(c->ssl))
			g.resumed++;
		conn_watch(c, EPOLLIN);
		send_upgrade(c);
		return;
	}
	if (tls_want(c, rc) == -1) {
		g.errors++;
		conn_end(c);
	}
}

static int
tls_start(struct conn *c)
{
	if ((c->ssl = SSL_new(g.ssl_ctx)) == NULL ||
	    SSL_set_fd(c->ssl, c->fd) != 1)
		return -1;
	SSL_set_connect_state(c->ssl);
	if (g.resume && g.session != NULL)
		SSL_set_session(c->ssl, g.session);
	c->tls_done = 0;
	tls_step(c);
	return 0;
}

/* read(2) or SSL_read: bytes, 0 for EOF, -1 with errno (EAGAIN: wait). */
static ssize_t
io_read(struct conn *c, void *p, size_t n)
{
	int rc;

	if (c->ssl == NULL)
		return read(c->fd, p, n);
	if ((rc = SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n)) > 0)
		return rc;
	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		conn_watch(c, EPOLLIN | EPOLLOUT);
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		ERR_clear_error();
		/* The server closed without close_notify: an EOF here. */
		return 0;
	}
}

/* write(2) or SSL_write, with the same convention. */
static ssize_t
io_write(struct conn *c, const void *p, size_t n)
{
	int rc;

	if (c->ssl == NULL)
		return write(c->fd, p, n);
	if ((rc = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n)) > 0)
		return rc;
	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	default:
		ERR_clear_error();
		errno = EPIPE;
		return -1;
	}
}

/* ---------------------------------------------------------------- */
/* Handshake (RFC 6455 §4.1 client side, §4.2.2 the server's answer) */

static const char *
role_path(enum role r)
{
	if (g.path != NULL && (r == R_IDLE || r == R_HS))
		return g.path;
	switch (r) {
	case R_SUB:
	case R_IDLE:
		return g.wsd ? "/ws/bench" : "/sub";
	case R_PUB:
		return g.wsd ? "/ws/pub" : "/pub";
	default:
		return "/echo";
	}
}

static void
make_accept(const char *key, char out[32])
{
	unsigned char md[SHA_DIGEST_LENGTH];
	char cat[64];
	int n;

	n = snprintf(cat, sizeof cat, "%s%s", key, WS_GUID);
	SHA1((unsigned char *)cat, (size_t)n, md);
	EVP_EncodeBlock((unsigned char *)out, md, sizeof md);
}

static void
send_upgrade(struct conn *c)
{
	unsigned char nonce[16];
	char key[32], req[512];
	uint64_t r;
	int n;

	r = rnd();
	memcpy(nonce, &r, 8);
	r = rnd();
	memcpy(nonce + 8, &r, 8);
	EVP_EncodeBlock((unsigned char *)key, nonce, sizeof nonce);
	make_accept(key, c->accept);
	n = snprintf(req, sizeof req,
	    "GET %s HTTP/1.1\r\n"
	    "Host: %s\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\n"
	    "Sec-WebSocket-Version: 13\r\n"
	    "\r\n", role_path(c->role), g.host, key);
	if (buf_reserve(&c->out, (size_t)n) == -1)
		die("out of memory");
	memcpy(c->out.p + c->out.len, req, (size_t)n);
	c->out.len += (size_t)n;
	conn_dirty(c);
}

/*
 * Checks the status line and the accept header of a complete response
 * head of length n.  Returns 0 for a valid 101, -1 otherwise.
 */
static int
check_upgrade(struct conn *c, const char *h, size_t n)
{
	const char *p, *end = h + n, *eol;
	static const char name[] = "sec-websocket-accept:";
	size_t nl = sizeof name - 1;

	if (n < 12 || memcmp(h, "HTTP/1.1 101", 12) != 0)
		return -1;
	for (p = h; p < end; p = eol + 2) {
		if ((eol = memmem(p, (size_t)(end - p), "\r\n", 2)) == NULL)
			break;
		if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0) {
			p += nl;
			while (p < eol && (*p == ' ' || *p == '\t'))
				p++;
			while (eol > p && (eol[-1] == ' ' || eol[-1] == '\t'))
				eol--;
			return (size_t)(eol - p) == strlen(c->accept) &&
			    memcmp(p, c->accept, (size_t)(eol - p)) == 0 ?
			    0 : -1;
		}
	}
	return -1;
}

/* ---------------------------------------------------------------- */
/* Frame encoder and output queue                                    */

/*
 * RFC 6455 §5.3: every client frame is masked.  The frame is built
 * straight into the connection's output buffer and written when the
 * turn ends, so a burst of messages costs one write.
 */
static void
conn_send(struct conn *c, int op, const uint8_t *pl, size_t len)
{
	uint8_t *p;
	uint32_t key32;
	uint8_t key[4];
	size_t i, h;

	if (buf_reserve(&c->out, len + 14) == -1)
		die("out of memory");
	p = c->out.p + c->out.len;
	p[0] = 0x80 | (uint8_t)op;
	if (len < 126) {
		p[1] = 0x80 | (uint8_t)len;
		h = 2;
	} else if (len <= 0xffff) {
		p[1] = 0x80 | 126;
		p[2] = (uint8_t)(len >> 8);
		p[3] = (uint8_t)len;
		h = 4;
	} else {
		p[1] = 0x80 | 127;
		for (i = 0; i < 8; i++)
			p[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
		h = 10;
	}
	key32 = (uint32_t)rnd();
	memcpy(key, &key32, 4);
	memcpy(p + h, key, 4);
	h += 4;
	for (i = 0; i < len; i++)
		p[h + i] = pl[i] ^ key[i & 3];
	c->out.len += h + len;
	conn_dirty(c);
}

static void
send_close(struct conn *c, unsigned code)
{
	uint8_t pl[2];

	pl[0] = (uint8_t)(code >> 8);
	pl[1] = (uint8_t)code;
	conn_send(c, OP_CLOSE, pl, 2);
	c->state = C_CLOSING;
	c->t_close = now_ns();
}

static void
conn_dirty(struct conn *c)
{
	if (c->dirty)
		return;
	c->dirty = 1;
	g.dirty[g.ndirty++] = c;
}

static void
conn_watch(struct conn *c, uint32_t ev)
{
	struct epoll_event e;

	if (c->events == ev || c->fd == -1)
		return;
	e.events = ev;
	e.data.ptr = c;
	if (epoll_ctl(g.ep, EPOLL_CTL_MOD, c->fd, &e) == -1)
		die("epoll_ctl: %s", strerror(errno));
	c->events = ev;
}

/* Writes what is queued; waits for EPOLLOUT only while some remains. */
static void
conn_flush(struct conn *c)
{
	ssize_t n;

	if (c->fd == -1 || c->state == C_CONNECTING ||
	    (c->ssl != NULL && !c->tls_done))
		return;
	while (c->out.off < c->out.len) {
		n = io_write(c, c->out.p + c->out.off,
		    c->out.len - c->out.off);
		if (n > 0) {
			c->out.off += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			conn_watch(c, EPOLLIN | EPOLLOUT);
			return;
		}
		g.errors++;
		on_lost(c);
		return;
	}
	c->out.off = c->out.len = 0;
	conn_watch(c, EPOLLIN);
}

/* ---------------------------------------------------------------- */
/* Frame decoder and message assembly                                */

/*
 * RFC 6455 §5.2 base framing:
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-------+-+-------------+-------------------------------+
 *  |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
 *  |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
 *  |N|V|V|V|       |S|             |   (if payload len==126/127)   |
 *  | |1|2|3|       |K|             |                               |
 *  +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
 *  |     Extended payload length continued, if payload len == 127  |
 *  + - - - - - - - - - - - - - - - +-------------------------------+
 *  |                               |Masking-key, if MASK set to 1  |
 *  +-------------------------------+-------------------------------+
 *
 * Server frames are unmasked (§5.1), so the payload is used where it
 * lies.  Returns the bytes consumed; the rest is a partial frame that
 * the caller keeps for the next read.  A protocol error ends the
 * connection and consumes everything.
 */
static size_t
parse_frames(struct conn *c, uint8_t *b, size_t n, uint64_t t)
{
	size_t used = 0, h;
	uint64_t len;
	int fin, op, i;

	while (c->fd != -1 && n - used >= 2) {
		uint8_t *p = b + used;
		size_t avail = n - used;

		fin = p[0] & 0x80;
		op = p[0] & 0x0f;
		if ((p[0] & 0x70) != 0 || (p[1] & 0x80) != 0)
			goto bad;
		len = p[1] & 0x7f;
		h = 2;
		if (len == 126) {
			if (avail < 4)
				break;
			len = (uint64_t)p[2] << 8 | p[3];
			h = 4;
		} else if (len == 127) {
			if (avail < 10)
				break;
			len = 0;
			for (i = 0; i < 8; i++)
				len = len << 8 | p[2 + i];
			h = 10;
		}
		if (len > FRAME_MAX)
			goto bad;
		if (avail - h < len)
			break;
		used += h + (size_t)len;
		p += h;
		if (op >= OP_CLOSE) {
			/* §5.5: control frames are short and never split. */
			if (!fin || len > 125)
				goto bad;
			on_message(c, op, p, (size_t)len, t);
			continue;
		}
		if (op == OP_CONT && c->msg_op == 0)
			goto bad;
		if (op != OP_CONT && c->msg_op != 0)
			goto bad;
		if (fin && op != OP_CONT) {
			on_message(c, op, p, (size_t)len, t);
			continue;
		}
		/* A fragment: copied because the read buffer is reused. */
		if (op != OP_CONT)
			c->msg_op = (uint8_t)op;
		if (c->msg.len + len > FRAME_MAX ||
		    buf_reserve(&c->msg, (size_t)len) == -1)
			goto bad;
		memcpy(c->msg.p + c->msg.len, p, (size_t)len);
		c->msg.len += (size_t)len;
		if (fin) {
			op = c->msg_op;
			c->msg_op = 0;
			on_message(c, op, c->msg.p, c->msg.len, t);
			c->msg.len = 0;
		}
	}
	return used;
bad:
	g.errors++;
	on_lost(c);
	return n;
}

/* ---------------------------------------------------------------- */
/* Bench payloads                                                    */

/* Writes "pub:msg:ns:" and 'x' up to size; returns the length. */
static size_t
payload_make(uint8_t *p, size_t size, unsigned pub, uint64_t msg,
    uint64_t ns)
{
	int n;

	n = snprintf((char *)p, size + 1, "%u:%" PRIu64 ":%" PRIu64 ":",
	    pub, msg, ns);
	if (n < 0 || (size_t)n > size)
		n = (int)size;
	memset(p + n, 'x', size - (size_t)n);
	return size;
}

static int
take_num(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
	const uint8_t *p = *pp;
	uint64_t x = 0;

	if (p == end || *p < '0' || *p > '9')
		return -1;
	while (p < end && *p >= '0' && *p <= '9') {
		if (x > (UINT64_MAX - 9) / 10)
			return -1;
		x = x * 10 + (uint64_t)(*p++ - '0');
	}
	if (p == end || *p != ':')
		return -1;
	*pp = p + 1;
	*v = x;
	return 0;
}

/*
 * Finds the bench payload in a message: the whole message from a peer,
 * the "data" string of a wsd event.  Returns 1 with the fields set, 0 if
 * the message is not a bench payload (wsd's own control traffic), -1 if
 * it looks like one but is damaged.
 */
static int
payload_parse(const uint8_t *m, size_t n, unsigned *pub, uint64_t *msg,
    uint64_t *ns)
{
	static const char key[] = "\"data\":";
	const uint8_t *start = m, *end = m + n, *p;
	uint64_t v;

	if (g.wsd || g.envelope) {
		if ((p = memmem(m, n, key, sizeof key - 1)) == NULL)
			return 0;
		/* The payload must come back as a JSON string. */
		start = p + sizeof key - 1;
		if (start == end || *start++ != '"')
			return -1;
		if ((end = memchr(start, '"', (size_t)(m + n - start))) == NULL)
			return -1;
	}
	p = start;
	if (p == end || *p < '0' || *p > '9')
		return 0;
	if (take_num(&p, end, &v) == -1 || v > UINT_MAX)
		return -1;
	*pub = (unsigned)v;
	if (take_num(&p, end, msg) == -1 || take_num(&p, end, ns) == -1)
		return -1;
	if (end - start != g.size)
		return -1;
	return 1;
}

/* Keeps the first odd message, printable, to tell on stderr. */
static void
keep_sample(const uint8_t *m, size_t n)
{
	size_t i;

	if (g.sample[0] != '\0')
		return;
	if (n > sizeof g.sample - 1)
		n = sizeof g.sample - 1;
	for (i = 0; i < n; i++)
		g.sample[i] = m[i] >= 0x20 && m[i] < 0x7f && m[i] != ' ' ?
		    (char)m[i] : '_';
	g.sample[n] = '\0';
}

static void
note_other(const uint8_t *m, size_t n)
{
	g.other++;
	keep_sample(m, n);
}

/* ---------------------------------------------------------------- */
/* Roles                                                             */

static void
echo_send(struct conn *c)
{
	uint64_t t = now_ns();

	payload_make(g.pl, (size_t)g.size, (unsigned)c->idx, g.msgs, t);
	conn_send(c, OP_TEXT, g.pl, (size_t)g.size);
	c->ring[(c->rhead + c->rcount) % (unsigned)g.depth] = t;
	c->rcount++;
}

static void
echo_message(struct conn *c, size_t n, uint64_t t)
{
	if (c->rcount == 0) {
		g.bad++;
		return;
	}
	if (n != (size_t)g.size)
		g.bad++;
	hist_add(&g.lat, t - c->ring[c->rhead]);
	c->rhead = (c->rhead + 1) % (unsigned)g.depth;
	c->rcount--;
	if (g.phase == P_RUN) {
		g.msgs++;
		g.t_last = t;
		echo_send(c);
	}
}

/*
 * A message index is msg * pubs + pub: publishers take turns, so the
 * indexes of published messages stay dense.
 */
static void
mark_done(uint64_t i)
{
	if (g.done[i])
		return;
	g.done[i] = 1;
	g.completed++;
	g.t_progress = now_ns();
	while (g.low < g.per_pub_max * (uint64_t)g.pubs && g.done[g.low])
		g.low++;
}

static void
sub_message(struct conn *c, const uint8_t *m, size_t n, uint64_t t)
{
	unsigned pub;
	uint64_t msg, ns, i, *next;
	int r;

	if ((r = payload_parse(m, n, &pub, &msg, &ns)) == 0) {
		note_other(m, n);
		return;
	}
	if (r == -1 || pub >= (unsigned)g.pubs || msg >= g.pub_sent[pub] ||
	    ns > t) {
		g.bad++;
		keep_sample(m, n);
		return;
	}
	hist_add(&g.lat, t - ns);
	g.msgs++;
	g.t_last = t;
	next = &g.next_exp[(uint64_t)c->idx * (uint64_t)g.pubs + pub];
	/* Per publisher the order is kept, so anything behind is a dup. */
	if (msg < *next) {
		g.dups++;
		return;
	}
	g.gaps += msg - *next;
	*next = msg + 1;
	g.uniq++;
	i = msg * (uint64_t)g.pubs + pub;
	if (++g.got[i] >= (uint32_t)g.live_subs)
		mark_done(i);
}

static void
on_message(struct conn *c, int op, uint8_t *m, size_t n, uint64_t t)
{
	switch (op) {
	case OP_PING:
		conn_send(c, OP_PONG, m, n);
		return;
	case OP_PONG:
		return;
	case OP_CLOSE:
		if (n >= 2)
			g.last_close_code = m[0] << 8 | m[1];
		if (c->state != C_CLOSING) {
			/* The server closed first: answer, wait for EOF. */
			if (c->role != R_HS)
				g.srv_closed++;
			on_lost(c);
			if (c->fd != -1) {
				send_close(c, n >= 2 ? (unsigned)(m[0] << 8 |
				    m[1]) : 1000);
			}
		}
		return;
	}
	switch (c->role) {
	case R_ECHO:
		echo_message(c, n, t);
		break;
	case R_SUB:
		sub_message(c, m, n, t);
		break;
	default:
		note_other(m, n);
		break;
	}
}

/*
 * A subscriber that is gone can no longer hold back the window: every
 * message it still owed may now be complete.
 */
static void
sub_gone(void)
{
	uint64_t i, top = 0;
	int p;

	g.live_subs--;
	for (p = 0; p < g.pubs; p++)
		if (g.pub_sent[p] > top)
			top = g.pub_sent[p];
	top *= (uint64_t)g.pubs;
	for (i = g.low; i < top; i++) {
		if (g.pub_sent[i % (uint64_t)g.pubs] <= i / (uint64_t)g.pubs)
			continue;
		if (!g.done[i] && g.got[i] >= (uint32_t)g.live_subs)
			mark_done(i);
	}
}

/*
 * Bookkeeping for a connection that stopped taking part in the run: it
 * is called once per connection, when the server closes, errs or hangs
 * up.  The socket itself is closed by conn_end().
 */
static void
on_lost(struct conn *c)
{
	if (c->state == C_CLOSING)
		return;
	if (c->state == C_OPEN && c->role == R_SUB && g.phase >= P_SETTLE)
		sub_gone();
	if (c->state == C_OPEN && c->role != R_HS)
		g.opened--;
	if (c->state == C_CONNECTING || c->state == C_UPGRADING) {
		g.pending--;
		g.failed++;
		if (c->role == R_HS)
			g.hs_fail++;
	}
	c->state = C_CLOSING;	/* so that a second call is a no-op */
	if (c->role == R_HS && c->t_close == 0)
		c->t_close = now_ns();
}

/* ---------------------------------------------------------------- */
/* Connection lifecycle                                              */

static int
conn_start(struct conn *c, enum role r, int idx)
{
	struct epoll_event e;

	c->role = r;
	c->idx = idx;
	c->t_start = now_ns();
	c->t_close = 0;
	c->msg_op = 0;
	c->in.off = c->in.len = 0;
	c->out.off = c->out.len = 0;
	c->msg.len = 0;
	c->rhead = c->rcount = 0;
	if ((c->fd = sock_open(g.serial++)) == -1) {
		g.failed++;
		if (r == R_HS) {
			/* Out of ports or descriptors: retry after the turn. */
			g.hs_fail++;
			c->ended = 1;
			g.ended[g.nended++] = c;
		}
		return -1;
	}
	c->state = C_CONNECTING;
	c->events = EPOLLOUT;
	e.events = EPOLLOUT;
	e.data.ptr = c;
	if (epoll_ctl(g.ep, EPOLL_CTL_ADD, c->fd, &e) == -1)
		die("epoll_ctl: %s", strerror(errno));
	g.pending++;
	return 0;
}

/* Closes the socket; the slot is reused only after the turn. */
static void
conn_end(struct conn *c)
{
	if (c->fd == -1)
		return;
	on_lost(c);
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	close(c->fd);
	c->fd = -1;
	c->state = C_FREE;
	c->ended = 1;
	g.ended[g.nended++] = c;
	/* Idle and hub connections hold no buffers once gone. */
	buf_free(&c->in);
	buf_free(&c->out);
	buf_free(&c->msg);
}

static void
on_open(struct conn *c, uint64_t t)
{
	g.pending--;
	c->state = C_OPEN;
	if (c->role == R_HS) {
		g.hs_ok++;
		hist_add(&g.lat, t - c->t_start);
		send_close(c, 1000);
		return;
	}
	g.opened++;
}

static void
conn_writable(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof err;

	if (c->state == C_CONNECTING) {
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1
		    || err != 0) {
			conn_end(c);
			return;
		}
		c->state = C_UPGRADING;
		if (g.tls) {
			if (tls_start(c) == -1) {
				g.errors++;
				conn_end(c);
			}
			return;
		}
		send_upgrade(c);
		conn_watch(c, EPOLLIN);
	} else if (c->ssl != NULL && !c->tls_done) {
		tls_step(c);
		return;
	}
	conn_flush(c);
}

/*
 * Reads once into the shared buffer, behind whatever this connection
 * kept from its last read, and parses as far as the bytes go.  Returns
 * 1 when bytes came and the connection is still open, else 0.
 */
static int
conn_read_once(struct conn *c)
{
	size_t have, used;
	uint8_t *end;
	ssize_t n;
	uint64_t t;

	have = c->in.len - c->in.off;
	if (have + 65536 > g.rcap) {
		g.rcap = have + RBUF_MIN;
		if ((g.rbuf = realloc(g.rbuf, g.rcap)) == NULL)
			die("out of memory");
	}
	if (have > 0)
		memcpy(g.rbuf, c->in.p + c->in.off, have);
	c->in.off = c->in.len = 0;
	n = io_read(c, g.rbuf + have, g.rcap - have);
	if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
		n = 0;
		goto keep;
	}
	if (n <= 0) {
		if (c->state == C_CLOSING && c->role == R_HS)
			g.close_clean++;
		else if (c->state == C_OPEN && c->role != R_HS)
			g.srv_closed++;
		conn_end(c);
		return 0;
	}
	t = now_ns();
	have += (size_t)n;
	used = 0;
	if (c->state == C_UPGRADING) {
		end = memmem(g.rbuf, have, "\r\n\r\n", 4);
		if (end == NULL) {
			if (have > HTTP_MAX)
				conn_end(c);
			goto keep_all;
		}
		used = (size_t)(end - g.rbuf) + 4;
		if (check_upgrade(c, (char *)g.rbuf, used) == -1) {
			keep_sample(g.rbuf, used);
			conn_end(c);
			return 0;
		}
		on_open(c, t);
	}
	used += parse_frames(c, g.rbuf + used, have - used, t);
	if (c->fd == -1)
		return 0;
	have -= used;
	if (have > 0) {
		memmove(g.rbuf, g.rbuf + used, have);
		goto keep;
	}
	return 1;
keep_all:
	if (c->fd == -1)
		return 0;
keep:
	if (have > 0) {
		if (buf_reserve(&c->in, have) == -1)
			die("out of memory");
		memcpy(c->in.p, g.rbuf, have);
		c->in.len = have;
	}
	return n > 0;
}

/*
 * Under TLS a read takes one record at a time and OpenSSL may hold
 * bytes epoll cannot see: read on while they come, up to 16 records
 * (a bound, so that one busy connection does not hold the loop).
 */
static void
conn_read(struct conn *c)
{
	int i;

	if (c->ssl != NULL && !c->tls_done) {
		tls_step(c);
		return;
	}
	if (!conn_read_once(c) || c->ssl == NULL)
		return;
	for (i = 0; i < 16 && c->fd != -1 && c->ssl != NULL; i++)
		if (!conn_read_once(c) && !(c->fd != -1 && c->ssl != NULL &&
		    SSL_has_pending(c->ssl)))
			break;
}



/* ---------------------------------------------------------------- */
/* The run                                                           */

/*
 * Opens the slots [lo, hi) in order, at most burst in progress at once:
 * a listen backlog overflows if thousands of SYNs arrive together.
 * Returns 1 once every slot in the range has been tried and settled.
 */
static int
start_more(enum role r, int lo, int hi)
{
	if (g.cursor < lo)
		g.cursor = lo;
	while (g.cursor < hi && g.pending < g.burst) {
		conn_start(&g.c[g.cursor], r, g.cursor - lo);
		g.cursor++;
	}
	return g.cursor >= hi && g.pending == 0;
}

/* wsd's envelope timestamp: 2026-11-28T13:16:32.123Z (24 bytes). */
static void
wsd_timestamp(char out[32])
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + 19, 13, ".%03uZ",
	    (unsigned)(ts.tv_nsec / 1000000) % 1000);
}

/* One more message from the next publisher with room. */
static int
publish_one(uint64_t stamp)
{
	static const char head[] =
	    "{\"type\":\"publish\",\"group\":\"bench\",\"event\":\"b\","
	    "\"data\":\"";
	char ts[32];
	uint8_t *pl = g.pl;
	struct conn *c;
	size_t n = 0;
	uint64_t m;
	int tries, p;

	for (tries = 0; tries < g.pubs; tries++) {
		p = g.next_pub;
		g.next_pub = (g.next_pub + 1) % g.pubs;
		c = &g.c[g.subs + p];
		if (c->state != C_OPEN || c->out.len - c->out.off > OUT_MAX)
			continue;
		if ((m = g.pub_sent[p]) >= g.per_pub_max)
			continue;
		if (g.wsd) {
			memcpy(pl, head, sizeof head - 1);
			n = sizeof head - 1;
		} else if (g.envelope) {
			/* The event wsd would send for this publish, byte
			 * for byte in shape and length: the group's seq
			 * counts every publish from 1, and the timestamp is
			 * wsd's (log.c, UTC with milliseconds). */
			wsd_timestamp(ts);
			n = (size_t)snprintf((char *)pl, 128,
			    "{\"type\":\"b\",\"group\":\"bench\",\"seq\":%"
			    PRIu64 ",\"timestamp\":\"%s\",\"data\":\"",
			    g.published + 1, ts);
		}
		n += payload_make(pl + n, (size_t)g.size, (unsigned)p, m,
		    stamp);
		if (g.wsd || g.envelope) {
			memcpy(pl + n, "\"}", 2);
			n += 2;
		}
		/* Counted before the send: a fast echo must find it. */
		g.pub_sent[p]++;
		g.published++;
		conn_send(c, OP_TEXT, pl, n);
		return 0;
	}
	return -1;
}

static void
publish(uint64_t t)
{
	uint64_t want;

	if (g.rate > 0) {
		want = (uint64_t)((double)(t - g.t_run) * g.rate / 1e9) + 1;
		if (want > g.max_msgs)
			want = g.max_msgs;
		/* Stamp the planned time, so that lag shows as latency. */
		g.pub_blocked = 0;
		while (g.due < want) {
			if (publish_one(g.t_run +
			    (uint64_t)((double)g.due * 1e9 / g.rate)) == -1) {
				g.pub_blocked = 1;
				break;
			}
			g.due++;
		}
		return;
	}
	while (g.published - g.completed < (uint64_t)g.window &&
	    g.published < g.max_msgs)
		if (publish_one(now_ns()) == -1)
			break;
}

/* Moves the run from phase to phase; called once per loop turn. */
static void
advance(uint64_t t)
{
	int i, total;

	switch (g.phase) {
	case P_CONNECT:
		total = g.mode == M_FANOUT ? g.subs : g.conns;
		if (g.mode == M_HANDSHAKE) {
			g.phase = P_RUN;
			g.t_run = t;
			g.t_stop = t + (uint64_t)(g.secs * NS);
			g.cpu_run0 = cpu_s();
			break;
		}
		if (!start_more(g.mode == M_ECHO ? R_ECHO : g.mode == M_IDLE ?
		    R_IDLE : R_SUB, 0, total))
			break;
		if (g.mode == M_FANOUT &&
		    !start_more(R_PUB, g.subs, g.subs + g.pubs))
			break;
		if (g.opened == 0)
			die("no connection could be opened (%d failed)",
			    g.failed);
		g.phase = P_SETTLE;
		g.t_settle = t + (g.mode == M_FANOUT ? SETTLE_NS : 0);
		g.live_subs = 0;
		for (i = 0; i < g.subs && g.mode == M_FANOUT; i++)
			if (g.c[i].state == C_OPEN) {
				g.c[i].counted = 1;
				g.live_subs++;
			}
		g.subs_at_start = g.live_subs;
		/* FALLTHROUGH */
	case P_SETTLE:
		if (t < g.t_settle)
			break;
		if (g.mode == M_FANOUT && (g.live_subs == 0 ||
		    g.opened - g.live_subs == 0))
			die("fanout needs a subscriber and a publisher");
		g.phase = P_RUN;
		g.t_run = t;
		g.t_progress = t;
		g.t_stop = t + (uint64_t)(g.secs * NS);
		g.cpu_run0 = cpu_s();
		g.srv_cpu0 = g.mode == M_FANOUT && g.pid > 0 ?
		    proc_cpu_s(g.pid) : -1;
		for (i = 0; i < g.conns && g.mode == M_ECHO; i++)
			while (g.c[i].state == C_OPEN &&
			    g.c[i].rcount < (unsigned)g.depth)
				echo_send(&g.c[i]);
		/* FALLTHROUGH */
	case P_RUN:
		if (g.mode == M_FANOUT) {
			if (g.live_subs == 0) {
				g.t_stop = t;
			} else if (g.rate == 0 && g.published > g.completed &&
			    t - g.t_progress > STALL_NS) {
				g.stalled = 1;
				g.t_stop = t;
			} else if (t < g.t_stop)
				publish(t);
			if (g.published >= g.max_msgs && g.t_stop > t)
				g.t_stop = t;
		}
		if (t < g.t_stop)
			break;
		g.phase = P_DRAIN;
		g.t_drain = t + (uint64_t)(g.drain_secs * NS);
		if (g.stalled)
			g.t_drain = t;
		/* FALLTHROUGH */
	case P_DRAIN:
		if (t >= g.t_drain)
			g.phase = P_DONE;
		else if (g.mode == M_FANOUT && g.completed >= g.published)
			g.phase = P_DONE;
		else if (g.mode == M_HANDSHAKE && g.pending == 0 &&
		    g.opened == 0) {
			for (i = 0; i < g.nc; i++)
				if (g.c[i].fd != -1)
					break;
			if (i == g.nc)
				g.phase = P_DONE;
		} else if (g.mode == M_ECHO) {
			for (i = 0; i < g.nc; i++)
				if (g.c[i].fd != -1 && g.c[i].rcount > 0)
					break;
			if (i == g.nc)
				g.phase = P_DONE;
		} else if (g.mode == M_IDLE)
			g.phase = P_DONE;
		break;
	case P_DONE:
		break;
	}
}

/* Closes connections that overstayed a timeout, every 100 ms. */
static void
sweep(uint64_t t)
{
	static uint64_t next;
	struct conn *c;
	int i;

	if (t < next)
		return;
	next = t + 100 * MS;
	for (i = 0; i < g.nc; i++) {
		c = &g.c[i];
		if (c->fd == -1)
			continue;
		if ((c->state == C_CONNECTING || c->state == C_UPGRADING) &&
		    t - c->t_start > UPGRADE_NS)
			conn_end(c);
		else if (c->state == C_CLOSING && c->t_close != 0 &&
		    t - c->t_close > CLOSE_NS) {
			if (c->role == R_HS)
				g.close_timeout++;
			conn_end(c);
		}
	}
}

static void
loop(void)
{
	struct epoll_event ev[NEVENTS];
	struct timespec ts;
	struct conn *c;
	uint64_t t, wait;
	int i, n;

	for (;;) {
		t = now_ns();
		if (t >= g.t_deadline) {
			g.timed_out = 1;
			return;
		}
		advance(t);
		if (g.phase == P_DONE)
			return;
		for (i = 0; i < g.ndirty; i++) {
			g.dirty[i]->dirty = 0;
			conn_flush(g.dirty[i]);
		}
		g.ndirty = 0;
		/*
		 * Sleep until the next planned message in a rate run, else
		 * up to 10 ms so that phases and timeouts advance.
		 */
		wait = 10 * MS;
		if (g.phase == P_RUN && g.rate > 0) {
			uint64_t next = g.t_run +
			    (uint64_t)((double)g.due * 1e9 / g.rate);
			wait = next > t ? next - t : 0;
			if (wait > 10 * MS)
				wait = 10 * MS;
			if (g.pub_blocked && wait < MS)
				wait = MS;
		}
		ts.tv_sec = (time_t)(wait / NS);
		ts.tv_nsec = (long)(wait % NS);
		n = epoll_pwait2(g.ep, ev, NEVENTS, &ts, NULL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (i = 0; i < n; i++) {
			c = ev[i].data.ptr;
			if (c->fd == -1)
				continue;
			if (ev[i].events & EPOLLOUT ||
			    (c->state == C_CONNECTING &&
			    ev[i].events & (EPOLLERR | EPOLLHUP)))
				conn_writable(c);
			if (c->fd != -1 && c->state != C_CONNECTING &&
			    ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				conn_read(c);
		}
		t = now_ns();
		sweep(t);
		/*
		 * Slots freed this turn may take a new connection now.  A
		 * failed start queues its slot again, at an index already
		 * visited, for the next turn.
		 */
		n = g.nended;
		g.nended = 0;
		for (i = 0; i < n; i++) {
			c = g.ended[i];
			c->ended = 0;
			if (g.mode == M_HANDSHAKE && g.phase == P_RUN &&
			    t < g.t_stop)
				conn_start(c, R_HS, c->idx);
		}
	}
}

/* ---------------------------------------------------------------- */
/* Options and report                                                */

/*
 * The CPU time (user + system, seconds) process pid has used, from
 * /proc/PID/stat; -1 if it cannot be read.
 */
static double
proc_cpu_s(long pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* The name may hold spaces and parens: fields follow the last ')'. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
	    &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long
rss_kb(long pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%ld/status", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kb = strtol(line + 6, NULL, 10);
			break;
		}
	fclose(f);
	return kb;
}

static double
num(const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		die("bad number: %s", s);
	return v;
}

static void
parse_connect(const char *s)
{
	char host[64];
	const char *colon;
	long port;

	if ((colon = strrchr(s, ':')) == NULL ||
	    (size_t)(colon - s) >= sizeof host)
		die("--connect wants 127.x.x.x:PORT");
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	port = (long)num(colon + 1, 1, 65535);
	memset(&g.dst, 0, sizeof g.dst);
	g.dst.sin_family = AF_INET;
	g.dst.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &g.dst.sin_addr) != 1)
		die("--connect wants 127.x.x.x:PORT");
	/* Load goes to this machine only. */
	if ((ntohl(g.dst.sin_addr.s_addr) >> 24) != 127)
		die("refusing a non-loopback target: %s", host);
	snprintf(g.host, sizeof g.host, "%s", s);
}

static void
report(void)
{
	double run, cpu, cpu_run, pct, srv;
	uint64_t expected, lost, i, t;
	int s, p;

	t = g.t_last > g.t_run ? g.t_last : now_ns();
	cpu = cpu_s();
	cpu_run = cpu - g.cpu_run0;
	run = g.t_run ? (double)(now_ns() - g.t_run) / 1e9 : 0;
	pct = run > 0 ? 100 * cpu_run / run : 0;

	switch (g.mode) {
	case M_HANDSHAKE:
		printf("mode=handshake conns=%d secs=%.1f handshakes=%" PRIu64
		    " handshakes_per_s=%.0f failures=%" PRIu64
		    " close_clean=%" PRIu64 " close_timeouts=%" PRIu64
		    " tls=%d resumed=%" PRIu64,
		    g.conns, g.secs, g.hs_ok, g.hs_ok / g.secs, g.hs_fail,
		    g.close_clean, g.close_timeout, g.tls, g.resumed);
		break;
	case M_ECHO:
		run = g.t_last > g.t_run ? (double)(g.t_last - g.t_run) / 1e9
		    : g.secs;
		printf("mode=echo conns=%d size=%d depth=%d msgs=%" PRIu64
		    " msgs_per_s=%.0f failures=%d bad=%" PRIu64
		    " srv_closed=%" PRIu64, g.conns, g.size, g.depth, g.msgs,
		    run > 0 ? g.msgs / run : 0, g.failed, g.bad,
		    g.srv_closed);
		break;
	case M_FANOUT:
		expected = 0;
		for (p = 0; p < g.pubs; p++)
			expected += g.pub_sent[p] * (uint64_t)g.subs_at_start;
		lost = 0;
		for (s = 0; s < g.subs; s++)
			for (p = 0; p < g.pubs; p++) {
				i = (uint64_t)s * (uint64_t)g.pubs +
				    (uint64_t)p;
				if (g.c[s].counted && g.next_exp[i] <
				    g.pub_sent[p])
					lost += g.pub_sent[p] - g.next_exp[i];
			}
		run = (double)(t - g.t_run) / 1e9;
		printf("mode=fanout subs=%d subs_ok=%d pubs=%d size=%d "
		    "rate=%.0f window=%d msgs=%" PRIu64 " msgs_per_s=%.0f "
		    "expected=%" PRIu64 " received=%" PRIu64
		    " deliveries_per_s=%.0f complete=%.4f dups=%" PRIu64
		    " gaps=%" PRIu64 " missing=%" PRIu64 " bad=%" PRIu64
		    " srv_closed=%" PRIu64 " stalled=%d",
		    g.subs, g.subs_at_start, g.pubs, g.size, g.rate, g.window,
		    g.published, g.published / g.secs, expected, g.uniq,
		    run > 0 ? g.uniq / run : 0,
		    expected ? (double)g.uniq / (double)expected : 0, g.dups,
		    g.gaps, g.gaps + lost, g.bad, g.srv_closed, g.stalled);
		/*
		 * With --pid, the server's CPU over the run alone (from the
		 * first publish to now: the last delivery, then nothing),
		 * without the connects: per delivery, and as a share of the
		 * run's wall time, which says whether the server had its
		 * CPU to itself.
		 */
		if (g.srv_cpu0 >= 0 && (srv = proc_cpu_s(g.pid)) >= 0 &&
		    g.uniq > 0 && run > 0)
			printf(" srv_run_cpu_s=%.2f srv_run_ns_per_dlv=%.0f"
			    " srv_cpu_pct=%.0f", srv - g.srv_cpu0,
			    (srv - g.srv_cpu0) * 1e9 / (double)g.uniq,
			    100 * (srv - g.srv_cpu0) / run);
		break;
	case M_IDLE:
		printf("mode=idle conns=%d established=%d failures=%d "
		    "srv_closed=%" PRIu64 " rss_before_kb=%ld rss_after_kb=%ld"
		    " bytes_per_conn=%.0f", g.conns, g.opened, g.failed,
		    g.srv_closed, g.rss_before, g.rss_after,
		    g.opened > 0 && g.rss_after >= 0 && g.rss_before >= 0 ?
		    (double)(g.rss_after - g.rss_before) * 1024 / g.opened :
		    -1.0);
		break;
	}
	if (g.mode != M_IDLE)
		printf(" p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f",
		    hist_pct(&g.lat, 0.50) / 1e3, hist_pct(&g.lat, 0.99) / 1e3,
		    hist_pct(&g.lat, 0.999) / 1e3, g.lat.max / 1e3);
	if (g.last_close_code)
		printf(" close_code=%d", g.last_close_code);
	printf(" other=%" PRIu64 " errors=%" PRIu64 " timed_out=%d"
	    " cpu_s=%.2f gen_cpu_pct=%.0f\n", g.other, g.errors, g.timed_out,
	    cpu, pct);
	if (g.sample[0] != '\0')
		fprintf(stderr, "wsbench: first odd message: %s\n",
		    g.sample);
	fflush(stdout);
}

int
main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "connect", required_argument, NULL, 'a' },
		{ "target", required_argument, NULL, 'T' },
		{ "conns", required_argument, NULL, 'c' },
		{ "time", required_argument, NULL, 't' },
		{ "size", required_argument, NULL, 's' },
		{ "depth", required_argument, NULL, 'd' },
		{ "subs", required_argument, NULL, 'n' },
		{ "pubs", required_argument, NULL, 'p' },
		{ "rate", required_argument, NULL, 'r' },
		{ "window", required_argument, NULL, 'w' },
		{ "msgs", required_argument, NULL, 'M' },
		{ "pid", required_argument, NULL, 'P' },
		{ "path", required_argument, NULL, 'u' },
		{ "burst", required_argument, NULL, 'b' },
		{ "max-time", required_argument, NULL, 'x' },
		{ "drain", required_argument, NULL, 'D' },
		{ "tls", no_argument, NULL, 'S' },
		{ "resume", no_argument, NULL, 'R' },
		{ "envelope", no_argument, NULL, 'E' },
		{ NULL, 0, NULL, 0 }
	};
	const char *mode = NULL;
	uint64_t seed;
	int ch, i;

	g.conns = 50;
	g.subs = 100;
	g.pubs = 1;
	g.size = 64;
	g.depth = 1;
	g.window = 16;
	g.burst = 256;
	g.secs = 5;
	g.drain_secs = 5;
	g.max_msgs = 2000000;
	g.pid = -1;
	while ((ch = getopt_long(argc, argv, "m:c:t:s:d:r:w:", opts, NULL))
	    != -1) {
		switch (ch) {
		case 'm': mode = optarg; break;
		case 'a': parse_connect(optarg); break;
		case 'T':
			if (strcmp(optarg, "wsd") == 0)
				g.wsd = 1;
			else if (strcmp(optarg, "peer") != 0)
				usage();
			break;
		case 'c': g.conns = (int)num(optarg, 1, 200000); break;
		case 't': g.secs = num(optarg, 0.01, 3600); break;
		case 's': g.size = (int)num(optarg, 32, 65536); break;
		case 'd': g.depth = (int)num(optarg, 1, 4096); break;
		case 'n': g.subs = (int)num(optarg, 1, 200000); break;
		case 'p': g.pubs = (int)num(optarg, 1, 1000); break;
		case 'r': g.rate = num(optarg, 0, 1e7); break;
		case 'w': g.window = (int)num(optarg, 1, 1000000); break;
		case 'M': g.max_msgs = (uint64_t)num(optarg, 1, 1e8); break;
		case 'P': g.pid = (long)num(optarg, 1, 1e9); break;
		case 'u': g.path = optarg; break;
		case 'b': g.burst = (int)num(optarg, 1, 100000); break;
		case 'x': g.max_secs = num(optarg, 1, 7200); break;
		case 'D': g.drain_secs = num(optarg, 0, 600); break;
		case 'S': g.tls = 1; break;
		case 'R': g.resume = 1; break;
		case 'E': g.envelope = 1; break;
		default: usage();
		}
	}
	if (mode == NULL || g.host[0] == '\0' || optind != argc)
		usage();
	if (strcmp(mode, "handshake") == 0)
		g.mode = M_HANDSHAKE;
	else if (strcmp(mode, "echo") == 0)
		g.mode = M_ECHO;
	else if (strcmp(mode, "fanout") == 0)
		g.mode = M_FANOUT;
	else if (strcmp(mode, "idle") == 0)
		g.mode = M_IDLE;
	else
		usage();
	g.srv_cpu0 = -1;
	if (g.mode == M_IDLE && g.pid <= 0)
		die("idle mode needs --pid of the server");
	if (g.max_secs == 0)
		g.max_secs = g.secs + g.drain_secs + 60;
	if (g.resume && !g.tls)
		die("--resume needs --tls");
	if (g.tls)
		tls_init();

	signal(SIGPIPE, SIG_IGN);
	/* epoll_pwait2 timeouts are exact only with a small timer slack. */
	prctl(PR_SET_TIMERSLACK, 1000UL);
	if (getrandom(&seed, sizeof seed, 0) != sizeof seed || seed == 0)
		seed = now_ns() | 1;
	g.rng = seed;

	g.nc = g.mode == M_FANOUT ? g.subs + g.pubs : g.conns;
	raise_nofile(g.nc + 64);
	if ((g.ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		die("epoll_create1: %s", strerror(errno));
	g.c = calloc((size_t)g.nc, sizeof *g.c);
	g.dirty = calloc((size_t)g.nc, sizeof *g.dirty);
	g.ended = calloc((size_t)g.nc, sizeof *g.ended);
	g.rcap = RBUF_MIN;
	g.rbuf = malloc(g.rcap);
	/* Room for wsd's JSON around the payload and snprintf's NUL. */
	g.pl = malloc((size_t)g.size + 256);
	if (g.c == NULL || g.dirty == NULL || g.ended == NULL ||
	    g.rbuf == NULL || g.pl == NULL)
		die("out of memory");
	for (i = 0; i < g.nc; i++) {
		g.c[i].fd = -1;
		g.c[i].idx = i;
		if (g.mode == M_ECHO &&
		    (g.c[i].ring = calloc((size_t)g.depth,
		    sizeof *g.c[i].ring)) == NULL)
			die("out of memory");
	}
	if (g.mode == M_FANOUT) {
		if (g.rate > 0 && g.max_msgs > (uint64_t)(g.rate * g.secs) + 1)
			g.max_msgs = (uint64_t)(g.rate * g.secs) + 1;
		g.per_pub_max = (g.max_msgs + (uint64_t)g.pubs - 1) /
		    (uint64_t)g.pubs;
		g.pub_sent = calloc((size_t)g.pubs, sizeof *g.pub_sent);
		g.next_exp = calloc((size_t)g.subs * (size_t)g.pubs,
		    sizeof *g.next_exp);
		g.got = calloc((size_t)(g.per_pub_max * (uint64_t)g.pubs),
		    sizeof *g.got);
		g.done = calloc((size_t)(g.per_pub_max * (uint64_t)g.pubs), 1);
		if (g.pub_sent == NULL || g.next_exp == NULL ||
		    g.got == NULL || g.done == NULL)
			die("out of memory");
	}

	g.t_begin = now_ns();
	g.t_deadline = g.t_begin + (uint64_t)(g.max_secs * NS);
	if (g.mode == M_IDLE && (g.rss_before = rss_kb(g.pid)) == -1)
		die("cannot read /proc/%ld/status", g.pid);
	if (g.mode == M_HANDSHAKE) {
		for (i = 0; i < g.conns; i++)
			conn_start(&g.c[i], R_HS, i);
	}
	loop();
	if (g.mode == M_IDLE)
		g.rss_after = rss_kb(g.pid);
	report();
	return 0;
}
