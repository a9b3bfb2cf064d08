/*
 * cli.c - wsd pub, wsd sub, wsd token: a command line for scripts and
 * appliances, in the server's binary and on the server's codecs.
 *
 *	wsd pub GROUP TYPE [DATA]	publish one event, or one per stdin line
 *	wsd sub GROUP...		print events as JSON lines, and resume
 *	wsd token --secret S ...	mint an HS256 JWT the server accepts
 *
 * What it does: pub speaks HTTP/1.1 (POST /api/groups/G/events, keep-alive,
 * up to CLI_PUB_WINDOW requests in flight) or, with --token, WebSocket
 * "publish" messages; sub speaks WebSocket (RFC 6455, client side: masked
 * frames, the Sec-WebSocket-Accept checked), keeps each group's position
 * EPOCH:SEQ and resumes from it, across reconnects and, with --state, across
 * runs.  Both speak TLS through OpenSSL with certificate and host name
 * verification.  It reuses frame.c (the Accept key, the XOR mask), json.c
 * (every JSON value read or written), auth.c (group names, and auth_verify()
 * checks each token minted here, so a token the server would refuse is never
 * printed) and http_parse.h's slices.
 *
 * What it does not do: it is a client, so it blocks.  One connection,
 * blocking reads and writes bounded by SO_RCVTIMEO/SO_SNDTIMEO, waits in
 * poll() with deadlines; nothing here runs in, or is reachable from, the
 * server's loop.  It never resends a publish whose answer was lost (that
 * could publish it twice): it says which lines are unconfirmed and fails.
 * sub delivers at least once: its state is saved after the output it
 * covers, so a crash may print events again, never skip one.  No HTTP
 * proxies, redirects or chunked responses (wsd sends none); no message over
 * CLI_MAX_MESSAGE; no name resolution in a static binary without NSS
 * (numeric addresses there, see the Makefile's static target).
 *
 * Conventions: the parsers (resp_parse, frame_parse) do no I/O and print
 * nothing; they return n >= 0 bytes consumed, CLI_AGAIN for "need more
 * input" or CLI_ERROR.  Everything else returns 0 (or a count) on success
 * and -1 on failure after printing one line "wsd CMD: why" on stderr.
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "auth.h"
#include "cli.h"
#include "frame.h"
#include "http_parse.h"
#include "hub.h"
#include "json.h"

#define CLI_AGAIN		(-1)
#define CLI_ERROR		(-2)

#define CLI_CONNECT_MS		10000		/* a TCP connect */
#define CLI_IO_MS		30000		/* one write; an awaited answer */
#define CLI_MAX_HEAD		8192		/* an HTTP response head */
#define CLI_MAX_BODY		(1u << 20)	/* an HTTP response body */
#define CLI_MAX_MESSAGE		(64u << 20)	/* a WebSocket message from wsd */
#define CLI_MAX_LINE		(1u << 20)	/* a stdin line (wsd's --max-body) */
#define CLI_PUB_WINDOW		32		/* publishes awaiting an answer */
#define CLI_MAX_GROUPS		1024		/* a sub's groups, state included */
#define CLI_EPOCH_LEN		HUB_EPOCH_LEN
#define CLI_PING_MS		40000		/* sub: silence before it pings */
#define CLI_DEAD_MS		70000		/* sub: silence before it reconnects */
#define CLI_BACKOFF_MIN_MS	500
#define CLI_BACKOFF_MAX_MS	30000
#define CLI_SAVE_MS		1000		/* sub: state written at most this often */
#define CLI_TTL_S		3600		/* token: default lifetime */
#define CLI_MAX_TTL_S		(10 * 366 * 86400)
#define CLI_MAX_SECRET		4096		/* as the server's --token-secret-file */
#define CLI_DEFAULT_URL		"http://127.0.0.1:8000"

/* sub_session() outcomes. */
enum { SUB_STOPPED, SUB_DROPPED, SUB_FATAL };

struct url {
	int  tls;
	char host[256];		/* without the brackets of an IPv6 literal */
	char port[6];
	char authority[300];	/* the Host header: host[:port] as given */
	char prefix[256];	/* a path before /api and /ws, no final '/' */
};

/* A connection and the bytes read from it not yet consumed. */
struct link {
	int      fd;		/* -1 when closed */
	SSL     *ssl;		/* owned; NULL for plain TCP */
	uint8_t *in;		/* owned; in[off..len) is unparsed */
	size_t   off, len, cap;
};

/* A parsed HTTP response head; slices point into the link's buffer. */
struct resp {
	int               status;
	int               close;	/* Connection: close */
	int               upgrade;	/* Upgrade: websocket */
	int               conn_upgrade;	/* Connection lists "upgrade" */
	int64_t           clen;		/* Content-Length; -1 when absent */
	struct http_slice accept;	/* Sec-WebSocket-Accept */
};

/* One frame from the server, whole in the buffer. */
struct cframe {
	uint8_t        fin;
	uint8_t        op;
	const uint8_t *p;
	size_t         n;
};

/* WebSocket message assembly for one connection. */
struct wsin {
	uint8_t *msg;		/* owned; fragments of an unfinished message */
	size_t   mlen, mcap;
	uint8_t  in_msg;	/* a fragmented message is open */
	uint8_t  msg_op;	/* its opcode */
	int      close_code;	/* the server's close code; 1005 for none */
};

/* One option of a command: "--name VALUE", "--name=VALUE", or a flag. */
struct copt {
	const char *name;	/* without "--"; "v" is also "-v" */
	int         arg;	/* takes a value: dst is a const char ** */
	void       *dst;	/* else an int * set to 1 */
};

static const char		*cmd = "wsd";	/* in every message */
static volatile sig_atomic_t	 stop_sig;	/* sub: SIGINT or SIGTERM seen */
static sigset_t			 run_mask;	/* the mask while waiting */
static int			 verbose;
static int			 insecure_tls;
static const char		*cafile;
static SSL_CTX			*tls_ctx;	/* made on first use */

static void	say(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));

/* ==== Messages, time, options ========================================= */

static void
say(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * A secret from argv or the environment, copied and the original wiped,
 * as the server does, so it does not linger in /proc/PID/cmdline or
 * /proc/PID/environ while a sub runs for days.  The copy is the caller's,
 * released with drop_secret().  NULL stays NULL; -1 when out of memory.
 */
static int
take_secret(const char *s, char **out)
{
	*out = NULL;
	if (s == NULL)
		return 0;
	if ((*out = strdup(s)) == NULL) {
		say("out of memory");
		return -1;
	}
	OPENSSL_cleanse((void *)s, strlen(s));
	return 0;
}

static void
drop_secret(char *s)
{
	if (s != NULL) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/*
 * A key or token goes into a header line as it is: visible ASCII only, so
 * it cannot end the line and add headers of its own.  NULL passes.
 */
static int
credential_ok(const char *what, const char *s)
{
	for (const char *c = s; c != NULL && *c != '\0'; c++)
		if (*c <= ' ' || *c > '~') {
			say("%s: printable ASCII without spaces only", what);
			return 0;
		}
	if (s != NULL && *s == '\0') {
		say("%s is empty", what);
		return 0;
	}
	return 1;
}

static const char *
env_or(const char *v, const char *name)
{
	return v != NULL ? v : getenv(name);
}

/*
 * argv[1..argc) by the table o: options anywhere, "--" ends them, the rest
 * goes to pos (at most maxpos).  Returns the number of positional
 * arguments, -1 on bad usage (said), -2 for -h/--help.
 */
static int
parse_args(int argc, char **argv, const struct copt *o, size_t no,
    char **pos, int maxpos)
{
	int npos = 0, dashdash = 0;

	for (int a = 1; a < argc; a++) {
		const char *arg = argv[a], *eq;
		const struct copt *hit = NULL;
		size_t n;

		if (dashdash || arg[0] != '-' || arg[1] == '\0') {
			if (npos == maxpos) {
				say("too many arguments (see %s --help)", cmd);
				return -1;
			}
			pos[npos++] = argv[a];
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			dashdash = 1;
			continue;
		}
		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
			return -2;
		arg += arg[1] == '-' ? 2 : 1;
		eq = strchr(arg, '=');
		n = eq ? (size_t)(eq - arg) : strlen(arg);
		for (size_t i = 0; i < no; i++)
			if (strlen(o[i].name) == n &&
			    strncmp(o[i].name, arg, n) == 0 &&
			    (n > 1) == (argv[a][1] == '-'))
				hit = &o[i];
		if (hit == NULL) {
			say("unknown option %.64s (see %s --help)", argv[a], cmd);
			return -1;
		}
		if (!hit->arg) {
			if (eq != NULL) {
				say("--%s takes no value", hit->name);
				return -1;
			}
			*(int *)hit->dst = 1;
		} else if (eq != NULL)
			*(const char **)hit->dst = eq + 1;
		else if (a + 1 < argc)
			*(const char **)hit->dst = argv[++a];
		else {
			say("--%s needs a value", hit->name);
			return -1;
		}
	}
	return npos;
}

/* ==== URLs ============================================================ */

/*
 * scheme://host[:port][/prefix]: http and ws are plain, https and wss TLS;
 * without a scheme, http.  The scheme only picks TLS: pub and sub each use
 * the protocol they need on that host and port.  A prefix (a reverse
 * proxy's mount point) goes before /api and /ws.
 */
static int
url_parse(const char *s, struct url *u)
{
	const char *a = s, *slash, *colon, *h, *hend;
	size_t n;

	memset(u, 0, sizeof *u);
	if (strncmp(s, "http://", 7) == 0 || strncmp(s, "ws://", 5) == 0)
		a = strstr(s, "//") + 2;
	else if (strncmp(s, "https://", 8) == 0 || strncmp(s, "wss://", 6) == 0) {
		a = strstr(s, "//") + 2;
		u->tls = 1;
	} else if (strstr(s, "://") != NULL)
		goto bad;
	slash = strchr(a, '/');
	n = slash ? (size_t)(slash - a) : strlen(a);
	if (n == 0 || n >= sizeof u->authority || memchr(a, '@', n) != NULL)
		goto bad;
	memcpy(u->authority, a, n);
	h = u->authority;
	if (h[0] == '[') {
		if ((hend = strchr(h, ']')) == NULL)
			goto bad;
		colon = hend[1] == ':' ? hend + 1 : NULL;
		if (hend[1] != '\0' && colon == NULL)
			goto bad;
		h++;
	} else {
		colon = strchr(h, ':');
		hend = colon ? colon : h + n;
	}
	if (hend == h || (size_t)(hend - h) >= sizeof u->host)
		goto bad;
	memcpy(u->host, h, hend - h);
	if (colon != NULL) {
		n = strlen(colon + 1);
		if (n == 0 || n > 5 || strspn(colon + 1, "0123456789") != n ||
		    strtoul(colon + 1, NULL, 10) == 0 ||
		    strtoul(colon + 1, NULL, 10) > 65535)
			goto bad;
		memcpy(u->port, colon + 1, n + 1);
	} else
		strcpy(u->port, u->tls ? "443" : "80");
	if (slash != NULL) {
		n = strlen(slash);
		while (n > 0 && slash[n - 1] == '/')
			n--;
		if (n >= sizeof u->prefix || strcspn(slash, "?# \t\r\n") < n)
			goto bad;
		memcpy(u->prefix, slash, n);
	}
	return 0;
bad:
	say("bad URL %.200s (expected http[s]://HOST:PORT or ws[s]://HOST:PORT)",
	    s);
	return -1;
}

/* ==== Sockets and TLS ================================================= */

/*
 * Wait for events on fd, at most timeout_ms (-1: no limit).  SIGINT and
 * SIGTERM are blocked outside this call and let through only here
 * (ppoll), so a stop request is never lost between a check of stop_sig
 * and a wait.  1 ready, 0 timeout, -1 interrupted or failed.
 */
static int
wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	struct timespec ts, *tp = NULL;
	int n;

	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000;
		tp = &ts;
	}
	n = ppoll(fd >= 0 ? &p : NULL, fd >= 0 ? 1 : 0, tp, &run_mask);
	return n > 0 ? 1 : n;
}

static int
tls_setup(void)
{
	if (tls_ctx != NULL)
		return 0;
	if ((tls_ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION);
	/* A peer that closes TCP without close_notify has sent everything
	 * it meant to: HTTP and WebSocket frame their own messages. */
	SSL_CTX_set_options(tls_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (insecure_tls)
		SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
	else {
		SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
		if ((cafile != NULL ?
		    SSL_CTX_load_verify_locations(tls_ctx, cafile, NULL) :
		    SSL_CTX_set_default_verify_paths(tls_ctx)) != 1) {
			say("cannot load CA certificates%s%.200s", cafile ?
			    " from " : "", cafile ? cafile : "");
			return -1;
		}
	}
	return 0;
fail:
	say("TLS: %s", ERR_reason_error_string(ERR_get_error()));
	return -1;
}

static void
link_close(struct link *l)
{
	if (l->ssl != NULL)
		SSL_free(l->ssl);
	if (l->fd >= 0)
		close(l->fd);
	l->ssl = NULL;
	l->fd = -1;
	l->off = l->len = 0;
}

/* link_close() and the buffer too; accepts a link never opened. */
static void
link_free(struct link *l)
{
	link_close(l);
	free(l->in);
	l->in = NULL;
	l->cap = 0;
}

static int
tcp_connect(const struct url *u)
{
	struct addrinfo hints = { 0 }, *res = NULL, *ai;
	struct timeval tv = { CLI_IO_MS / 1000, 0 };
	socklen_t elen = sizeof(int);
	int fd = -1, err = 0, one = 1, rc;

	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((rc = getaddrinfo(u->host, u->port, &hints, &res)) != 0) {
		say("cannot resolve %.200s: %s", u->host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
		    SOCK_NONBLOCK, ai->ai_protocol);
		if (fd == -1) {
			err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			rc = wait_fd(fd, POLLOUT, CLI_CONNECT_MS);
			if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
			    &elen) == 0 && err == 0)
				break;
			if (rc == 0)
				err = ETIMEDOUT;
			else if (rc == -1)
				err = errno;
		} else
			err = errno;
		close(fd);
		fd = -1;
		if (stop_sig)
			break;
	}
	freeaddrinfo(res);
	if (fd == -1) {
		if (!stop_sig)
			say("cannot connect to %.200s: %s", u->authority,
			    strerror(err));
		return -1;
	}
	/* Blocking from here on, every read and write bounded in time. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

/* Connect l to u, with TLS when u says so.  0 or -1. */
static int
link_open(struct link *l, const struct url *u)
{
	struct in6_addr addr;
	int ip;
	long v;

	link_close(l);
	if ((l->fd = tcp_connect(u)) == -1)
		return -1;
	if (!u->tls)
		return 0;
	if (tls_setup() == -1 || (l->ssl = SSL_new(tls_ctx)) == NULL ||
	    SSL_set_fd(l->ssl, l->fd) != 1)
		goto fail;
	ip = inet_pton(AF_INET, u->host, &addr) == 1 ||
	    inet_pton(AF_INET6, u->host, &addr) == 1;
	/* RFC 6066 §3: no SNI for an address; RFC 6125: check the name. */
	if (!ip && SSL_set_tlsext_host_name(l->ssl, u->host) != 1)
		goto fail;
	if (!insecure_tls && (ip ?
	    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(l->ssl), u->host) :
	    SSL_set1_host(l->ssl, u->host)) != 1)
		goto fail;
	if (SSL_connect(l->ssl) != 1) {
		if ((v = SSL_get_verify_result(l->ssl)) != X509_V_OK)
			say("TLS: %.200s: certificate not trusted: %s (see "
			    "--cafile; --insecure-tls for tests)", u->authority,
			    X509_verify_cert_error_string(v));
		else
			say("TLS handshake with %.200s failed: %s", u->authority,
			    ERR_reason_error_string(ERR_get_error()));
		link_close(l);
		return -1;
	}
	return 0;
fail:
	say("TLS: %s", ERR_reason_error_string(ERR_get_error()));
	link_close(l);
	return -1;
}

/* Bytes decrypted but not yet read: poll() cannot see them. */
static int
link_pending(const struct link *l)
{
	return l->ssl != NULL && SSL_pending(l->ssl) > 0;
}

/*
 * Read once into l's buffer, which grows up to max unparsed bytes.
 * Returns bytes read, 0 at EOF, -1 on error or timeout (said).
 */
static long
link_fill(struct link *l, size_t max)
{
	size_t want;
	long n;
	int e;

	if (l->off > 0) {
		memmove(l->in, l->in + l->off, l->len - l->off);
		l->len -= l->off;
		l->off = 0;
	}
	if (l->len == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16384;
		uint8_t *p;

		if (l->cap >= max) {
			say("answer over %zu bytes", max);
			return -1;
		}
		if (ncap > max)
			ncap = max;
		if ((p = realloc(l->in, ncap)) == NULL) {
			say("out of memory");
			return -1;
		}
		l->in = p;
		l->cap = ncap;
	}
	want = l->cap - l->len;
	if (want > INT_MAX)
		want = INT_MAX;
	if (l->ssl == NULL) {
		do
			n = read(l->fd, l->in + l->len, want);
		while (n == -1 && errno == EINTR);
		if (n == -1) {
			say("read: %s", errno == EAGAIN ? "timed out" :
			    strerror(errno));
			return -1;
		}
	} else if ((n = SSL_read(l->ssl, l->in + l->len, (int)want)) <= 0) {
		e = SSL_get_error(l->ssl, (int)n);
		if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		say("TLS read: %s", e == SSL_ERROR_SYSCALL && errno != 0 ?
		    strerror(errno) : "failed");
		return -1;
	}
	l->len += n;
	return n;
}

static int
link_write(struct link *l, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	long w;

	while (n > 0) {
		int chunk = n > INT_MAX ? INT_MAX : (int)n;

		if (l->ssl != NULL)
			w = SSL_write(l->ssl, p, chunk);
		else
			w = send(l->fd, p, chunk, MSG_NOSIGNAL);
		if (w <= 0) {
			if (l->ssl == NULL && w == -1 && errno == EINTR)
				continue;
			say("write: %s", l->ssl != NULL ? "TLS write failed" :
			    errno == EAGAIN ? "timed out" : strerror(errno));
			return -1;
		}
		p += w;
		n -= w;
	}
	return 0;
}

/* ==== JSON members ================================================== */

/*
 * Member key of the object d as a C string for a message: "" when absent
 * or longer than out, and anything but printable ASCII replaced.
 */
static void
str_member(const struct json_doc *d, const char *key, char *out, size_t cap)
{
	int i = json_find(d, 0, key);
	long n = i >= 0 ? json_tok_str(d, i, out, cap - 1) : -1;

	out[n >= 0 ? n : 0] = '\0';
	for (char *c = out; *c; c++)
		if (*c < 0x20 || *c > 0x7e)
			*c = '?';
}

static uint64_t
uint_member(const struct json_doc *d, const char *key)
{
	int i = json_find(d, 0, key);
	int64_t v = 0;

	if (i < 0 || json_tok_int(d, i, &v) == -1 || v < 0)
		return 0;
	return (uint64_t)v;
}

/* ==== HTTP responses ================================================== */

/*
 * One response head from buf[0..len): its length through the blank line,
 * CLI_AGAIN, or CLI_ERROR (malformed, over CLI_MAX_HEAD, two different
 * Content-Length values).  http_parse.c reads requests; a response needs
 * only the status line and four headers, so it is read here.
 */
static long
resp_parse(const uint8_t *buf, size_t len, struct resp *r)
{
	const uint8_t *end, *line, *eol, *colon;
	size_t lim = len < CLI_MAX_HEAD ? len : CLI_MAX_HEAD;

	memset(r, 0, sizeof *r);
	r->clen = -1;
	if (len < 4 || (end = memmem(buf, lim, "\r\n\r\n", 4)) == NULL)
		return len >= CLI_MAX_HEAD ? CLI_ERROR : CLI_AGAIN;
	end += 4;
	/* RFC 9112 §4: HTTP/1.x SP 3DIGIT SP [reason] */
	if (end - buf < 16 || memcmp(buf, "HTTP/1.", 7) != 0 ||
	    buf[8] != ' ' || buf[9] < '1' || buf[9] > '5' ||
	    buf[10] < '0' || buf[10] > '9' || buf[11] < '0' || buf[11] > '9' ||
	    (buf[12] != ' ' && buf[12] != '\r'))
		return CLI_ERROR;
	r->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + buf[11] - '0';
	line = (const uint8_t *)memchr(buf, '\n', end - buf) + 1;
	while (line < end - 2) {
		struct http_slice name, value;

		eol = memmem(line, end - line, "\r\n", 2);
		if ((colon = memchr(line, ':', eol - line)) == NULL)
			return CLI_ERROR;
		name.p = (const char *)line;
		name.n = colon - line;
		value.p = (const char *)colon + 1;
		value.n = eol - colon - 1;
		while (value.n > 0 && (*value.p == ' ' || *value.p == '\t'))
			value.p++, value.n--;
		while (value.n > 0 && (value.p[value.n - 1] == ' ' ||
		    value.p[value.n - 1] == '\t'))
			value.n--;
		if (http_slice_eq(name, "content-length")) {
			int64_t v = 0;

			if (value.n == 0 || value.n > 15)
				return CLI_ERROR;
			for (size_t i = 0; i < value.n; i++) {
				if (value.p[i] < '0' || value.p[i] > '9')
					return CLI_ERROR;
				v = v * 10 + (value.p[i] - '0');
			}
			if (r->clen != -1 && r->clen != v)
				return CLI_ERROR;
			r->clen = v;
		} else if (http_slice_eq(name, "connection")) {
			r->close |= http_has_token(value, "close");
			r->conn_upgrade |= http_has_token(value, "upgrade");
		} else if (http_slice_eq(name, "upgrade"))
			r->upgrade |= http_has_token(value, "websocket");
		else if (http_slice_eq(name, "sec-websocket-accept"))
			r->accept = value;
		line = eol + 2;
	}
	return end - buf;
}

/*
 * The next whole response in l's buffer: 1 with *r, *body and *blen set
 * (consumed, but valid until the next link_fill), 0 when more input is
 * needed, -1 malformed (said).  A response without Content-Length is
 * refused but for 1xx, 204 and 304, which have no body: wsd always sends
 * one.
 */
static int
resp_next(struct link *l, struct resp *r, const uint8_t **body, size_t *blen)
{
	long h;
	int nobody;

	if (l->len == l->off)
		return 0;
	if ((h = resp_parse(l->in + l->off, l->len - l->off, r)) == CLI_AGAIN)
		return 0;
	nobody = r->status < 200 || r->status == 204 || r->status == 304;
	if (h == CLI_ERROR || (r->clen == -1 && !nobody) ||
	    r->clen > CLI_MAX_BODY) {
		say("malformed HTTP response");
		return -1;
	}
	if (nobody)
		r->clen = 0;
	if (l->len - l->off - h < (uint64_t)r->clen)
		return 0;
	*body = l->in + l->off + h;
	*blen = r->clen;
	l->off += h + r->clen;
	return 1;
}

/*
 * A one-line account of a refusal: the status and wsd's fixed error code
 * and message from the JSON body ({"error":CODE,"message":TEXT}), with
 * anything that is not printable ASCII replaced.
 */
static void
resp_why(const struct resp *r, const uint8_t *body, size_t blen, char *out,
    size_t cap)
{
	struct json_doc doc = { 0 };
	char code[64] = "", text[160] = "";

	if (json_parse(&doc, body, blen, 8, blen + 1) == 0 &&
	    doc.tok[0].type == JSON_OBJECT) {
		str_member(&doc, "error", code, sizeof code);
		str_member(&doc, "message", text, sizeof text);
	}
	json_doc_free(&doc);
	snprintf(out, cap, "HTTP %d%s%s%s%s", r->status, code[0] ? " " : "",
	    code, text[0] ? ": " : "", text);
}

/* ==== WebSocket client: handshake, frames, messages =================== */

/*
 * A masked client frame: RFC 6455 §5.3 requires every client frame to be
 * masked with a fresh, unpredictable 32-bit key.  frame.c's ws_buf_frame()
 * is the server's encoder (never masked), so the header is written here;
 * the XOR is frame.c's ws_unmask(), which masks as well as it unmasks.
 */
static int
ws_send_frame(struct link *l, int op, const void *payload, size_t n)
{
	uint8_t *f, *key;
	size_t h = 2;
	int rc;

	if ((f = malloc(n + 14)) == NULL) {
		say("out of memory");
		return -1;
	}
	f[0] = 0x80 | op;
	if (n < 126)
		f[1] = 0x80 | n;
	else if (n <= 0xffff) {
		f[1] = 0x80 | 126;
		f[2] = n >> 8;
		f[3] = n & 0xff;
		h = 4;
	} else {
		f[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			f[2 + i] = (uint64_t)n >> (56 - 8 * i) & 0xff;
		h = 10;
	}
	key = f + h;
	if (RAND_bytes(key, 4) != 1) {
		free(f);
		say("no randomness for the mask");
		return -1;
	}
	ws_unmask(f + h + 4, payload, n, key, 0);
	rc = link_write(l, f, h + 4 + n);
	free(f);
	return rc;
}

static void
ws_send_close(struct link *l, int code)
{
	uint8_t p[2] = { code >> 8, code & 0xff };

	if (l->fd >= 0)
		ws_send_frame(l, WS_OP_CLOSE, p, code ? 2 : 0);
}

/*
 * One server frame from buf[0..len), decoded only once it is whole in the
 * buffer (a client holds one message at a time, bounded by max).  frame.c's
 * ws_frame_parse() is the server's resumable decoder and, as RFC 6455 §5.1
 * requires of a server, refuses unmasked frames; a client must refuse
 * masked ones instead, so this is its mirror image, small because it
 * needs no resumption.  Returns bytes consumed, CLI_AGAIN, or CLI_ERROR
 * with *code = 1002 (protocol) or 1009 (too big).
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
 *  |                               |         Payload Data          |
 *  +-------------------------------+ - - - - - - - - - - - - - - - +
 */
static long
frame_parse(const uint8_t *buf, size_t len, uint64_t max, struct cframe *f,
    int *code)
{
	uint64_t n;
	size_t h = 2;

	*code = WS_CLOSE_PROTOCOL;
	if (len < 2)
		return CLI_AGAIN;
	f->fin = buf[0] >> 7;
	f->op = buf[0] & 0x0f;
	/* §5.2: RSV bits without an extension; §5.1: a server never masks. */
	if ((buf[0] & 0x70) != 0 || (buf[1] & 0x80) != 0)
		return CLI_ERROR;
	if ((f->op > WS_OP_BINARY && f->op < WS_OP_CLOSE) || f->op > WS_OP_PONG)
		return CLI_ERROR;
	n = buf[1] & 0x7f;
	/* §5.5: control frames carry at most 125 bytes, never fragmented. */
	if (f->op >= WS_OP_CLOSE && (n > 125 || !f->fin))
		return CLI_ERROR;
	if (n == 126) {
		if (len < 4)
			return CLI_AGAIN;
		n = (uint64_t)buf[2] << 8 | buf[3];
		h = 4;
	} else if (n == 127) {
		if (len < 10)
			return CLI_AGAIN;
		n = 0;
		for (int i = 2; i < 10; i++)
			n = n << 8 | buf[i];
		if (n >> 63)
			return CLI_ERROR;
		h = 10;
	}
	if (n > max) {
		*code = WS_CLOSE_TOO_BIG;
		return CLI_ERROR;
	}
	if (len - h < n)
		return CLI_AGAIN;
	f->p = buf + h;
	f->n = n;
	return h + n;
}

/*
 * The next whole data message in l's buffer: 1 with *op, *p, *n (a slice
 * of l's buffer or of in->msg, valid until the next call or link_fill),
 * 0 when more input is needed, -1 when the connection is over: the
 * server's close frame (answered, in->close_code set) or a protocol error
 * (close frame sent, said).  Pings are answered on the way (§5.5.2).
 */
static int
ws_next(struct link *l, struct wsin *in, int *op, const uint8_t **p,
    size_t *n)
{
	struct cframe f;
	int code;
	long r;

	for (;;) {
		if (l->len == l->off)
			return 0;
		r = frame_parse(l->in + l->off, l->len - l->off,
		    CLI_MAX_MESSAGE, &f, &code);
		if (r == CLI_AGAIN)
			return 0;
		if (r == CLI_ERROR)
			goto error;
		l->off += r;
		switch (f.op) {
		case WS_OP_PING:
			if (ws_send_frame(l, WS_OP_PONG, f.p, f.n) == -1)
				return -1;
			continue;
		case WS_OP_PONG:
			continue;
		case WS_OP_CLOSE:
			in->close_code = f.n >= 2 ? f.p[0] << 8 | f.p[1] : 1005;
			/* §5.5.1: answer with the same code. */
			ws_send_close(l, f.n >= 2 ? in->close_code : 0);
			return -1;
		case WS_OP_CONT:
			code = WS_CLOSE_PROTOCOL;
			if (!in->in_msg)
				goto error;
			break;
		default:
			code = WS_CLOSE_PROTOCOL;
			if (in->in_msg)
				goto error;
			if (f.fin) {
				*op = f.op;
				*p = f.p;
				*n = f.n;
				return 1;
			}
			in->in_msg = 1;
			in->msg_op = f.op;
			in->mlen = 0;
			break;
		}
		/* A fragment: the message is assembled in in->msg. */
		code = WS_CLOSE_TOO_BIG;
		if (f.n > CLI_MAX_MESSAGE - in->mlen)
			goto error;
		if (in->mlen + f.n > in->mcap) {
			size_t ncap = (in->mlen + f.n) * 2;
			uint8_t *m;

			if (ncap > CLI_MAX_MESSAGE)
				ncap = CLI_MAX_MESSAGE;
			if ((m = realloc(in->msg, ncap)) == NULL) {
				code = WS_CLOSE_INTERNAL;
				goto error;
			}
			in->msg = m;
			in->mcap = ncap;
		}
		if (f.n > 0)
			memcpy(in->msg + in->mlen, f.p, f.n);
		in->mlen += f.n;
		if (f.fin) {
			in->in_msg = 0;
			*op = in->msg_op;
			*p = in->msg;
			*n = in->mlen;
			return 1;
		}
	}
error:
	say("bad frame from the server (closing with %d)", code);
	ws_send_close(l, code);
	return -1;
}

/*
 * Open l to u and upgrade it on path (RFC 6455 §4.1): a random 16-byte
 * key, and the 101 answer checked for Upgrade, Connection and the Accept
 * that key implies (§4.2.2), so neither a plain HTTP server nor a cache
 * is taken for the hub.  Frames that came with the 101 stay in l's
 * buffer.  Returns 0, -1 on a network failure (said), or the HTTP status
 * of a refusal (said).
 */
static int
ws_connect(struct link *l, const struct url *u, const char *path,
    const char *token)
{
	uint8_t raw[16];
	char key[32], want[29], why[256];
	const uint8_t *body;
	struct resp r;
	struct json_buf req = { 0 };
	size_t blen;
	int rc;
	long n;
	int64_t deadline;

	if (link_open(l, u) == -1)
		return -1;
	if (RAND_bytes(raw, sizeof raw) != 1) {
		say("no randomness for the key");
		goto fail;
	}
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
	json_put_cstr(&req, "GET ");
	json_put_cstr(&req, u->prefix);
	json_put_cstr(&req, path);
	json_put_cstr(&req, " HTTP/1.1\r\nHost: ");
	json_put_cstr(&req, u->authority);
	json_put_cstr(&req, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: ");
	json_put_cstr(&req, key);
	json_put_cstr(&req, "\r\nSec-WebSocket-Version: 13\r\n");
	if (token != NULL) {
		json_put_cstr(&req, "Authorization: Bearer ");
		json_put_cstr(&req, token);
		json_put_cstr(&req, "\r\n");
	}
	json_put_cstr(&req, "\r\n");
	rc = req.oom ? -1 : link_write(l, req.p, req.len);
	if (req.p != NULL)
		OPENSSL_cleanse(req.p, req.len);	/* the token */
	json_buf_free(&req);
	if (rc == -1)
		goto fail;
	deadline = now_ms() + CLI_IO_MS;
	while ((rc = resp_next(l, &r, &body, &blen)) == 0) {
		/* The whole answer within CLI_IO_MS, however it trickles. */
		int64_t left = deadline - now_ms();

		if (left <= 0 || (!link_pending(l) &&
		    wait_fd(l->fd, POLLIN, (int)left) != 1)) {
			if (!stop_sig)
				say("no answer to the upgrade from %.200s",
				    u->authority);
			goto fail;
		}
		if ((n = link_fill(l, CLI_MAX_HEAD + CLI_MAX_BODY)) <= 0) {
			if (n == 0)
				say("%.200s closed the connection during the "
				    "upgrade", u->authority);
			goto fail;
		}
	}
	if (rc == -1)
		goto fail;
	if (r.status != 101) {
		resp_why(&r, body, blen, why, sizeof why);
		say("upgrade refused: %s", why);
		link_close(l);
		return r.status;
	}
	ws_accept_key(key, strlen(key), want);
	if (!r.upgrade || !r.conn_upgrade || r.accept.n != 28 ||
	    memcmp(r.accept.p, want, 28) != 0) {
		say("%.200s answered 101 without a valid WebSocket upgrade",
		    u->authority);
		goto fail;
	}
	return 0;
fail:
	link_close(l);
	return -1;
}

/* ==== wsd pub ========================================================= */

static const char pub_usage[] =
"usage: wsd pub [options] GROUP TYPE [DATA]\n"
"\n"
"Publish events to a running wsd.  With DATA (a JSON value), one event;\n"
"without, one event per line of stdin, each line a JSON value (empty lines\n"
"are skipped).  A line that is not JSON stops it: the lines before it are\n"
"published, it and the ones after are not (exit 1).  Prints nothing on\n"
"success; with -v, each event's seq.\n"
"\n"
"  --url URL        wsd to publish to (WSD_URL; " CLI_DEFAULT_URL ")\n"
"                   http:// and ws:// alike; https:// or wss:// for TLS\n"
"  --api-key K      Authorization: Bearer K, as wsd's --api-key (WSD_API_KEY)\n"
"  --token T        publish over WebSocket with a JWT instead (WSD_TOKEN);\n"
"                   the token must grant joining GROUP and publishing to it\n"
"  --cafile F       CA certificates for TLS (else the system's)\n"
"  --insecure-tls   do not verify the server's certificate (tests only)\n"
"  -v               print the seq of each event, one per line\n"
"\n"
"Over HTTP: POST /api/groups/GROUP/events, keep-alive, at most 32 requests\n"
"in flight.  An event whose answer is lost is not sent again (it may have\n"
"been published): pub says which lines are unconfirmed and exits 1.\n"
"Exit status: 0 all published, 1 refused or failed, 2 bad usage.\n";

/* The pub in progress: its connection and the events awaiting answers. */
struct pub {
	struct url    url;
	struct link   l;
	struct wsin   in;
	const char   *group, *type;
	char         *api_key, *token;	/* owned copies (take_secret) */
	unsigned long ring[CLI_PUB_WINDOW];	/* line of each, oldest first */
	unsigned      head, inflight;
	unsigned long published;
	int           from_stdin;
	int           closing;	/* the server said Connection: close */
	int64_t       deadline;	/* for the next answer, while in flight */
};

static void
pub_where(const struct pub *p, unsigned long line, char *out, size_t cap)
{
	if (p->from_stdin)
		snprintf(out, cap, "stdin line %lu", line);
	else
		snprintf(out, cap, "the event");
}

static int
pub_connect(struct pub *p)
{
	char path[128];
	int rc;

	if (!p->token)
		return link_open(&p->l, &p->url);
	/* wsd's WebSocket routes each join a group; GROUP's is the one a
	 * publisher's token is most likely to grant. */
	snprintf(path, sizeof path, "/ws/%s", p->group);
	p->in.in_msg = 0;
	rc = ws_connect(&p->l, &p->url, path, p->token);
	return rc == 0 ? 0 : -1;
}

/* Send the event data[0..n) of line; the caller has checked the window. */
static int
pub_send(struct pub *p, const uint8_t *data, size_t n, unsigned long line)
{
	struct json_buf b = { 0 };
	char num[32];
	int rc;

	if (p->l.fd < 0 && pub_connect(p) == -1)
		return -1;
	if (p->token) {
		json_put_cstr(&b, "{\"type\":\"publish\",\"group\":");
		json_put_str(&b, p->group, strlen(p->group));
		json_put_cstr(&b, ",\"event\":");
		json_put_str(&b, p->type, strlen(p->type));
		json_put_cstr(&b, ",\"data\":");
		json_put_raw(&b, data, n);
		snprintf(num, sizeof num, ",\"id\":%lu}", line);
		json_put_cstr(&b, num);
		rc = b.oom ? -1 : ws_send_frame(&p->l, WS_OP_TEXT, b.p, b.len);
	} else {
		struct json_buf body = { 0 };

		json_put_cstr(&body, "{\"type\":");
		json_put_str(&body, p->type, strlen(p->type));
		json_put_cstr(&body, ",\"data\":");
		json_put_raw(&body, data, n);
		json_put_raw(&body, "}", 1);
		json_put_cstr(&b, "POST ");
		json_put_cstr(&b, p->url.prefix);
		json_put_cstr(&b, "/api/groups/");
		json_put_cstr(&b, p->group);
		json_put_cstr(&b, "/events HTTP/1.1\r\nHost: ");
		json_put_cstr(&b, p->url.authority);
		json_put_cstr(&b, "\r\nContent-Type: application/json\r\n");
		if (p->api_key != NULL) {
			json_put_cstr(&b, "Authorization: Bearer ");
			json_put_cstr(&b, p->api_key);
			json_put_cstr(&b, "\r\n");
		}
		snprintf(num, sizeof num, "Content-Length: %zu\r\n\r\n",
		    body.len);
		json_put_cstr(&b, num);
		/* Head and body in one write: one packet per event. */
		json_put_raw(&b, body.p, body.len);
		b.oom |= body.oom;
		json_buf_free(&body);
		rc = b.oom ? -1 : link_write(&p->l, b.p, b.len);
		if (b.p != NULL)
			OPENSSL_cleanse(b.p, b.len);	/* the API key */
	}
	if (b.oom)
		say("out of memory");
	json_buf_free(&b);
	if (rc == -1)
		return -1;
	if (p->inflight == 0)
		p->deadline = now_ms() + CLI_IO_MS;
	p->ring[(p->head + p->inflight++) % CLI_PUB_WINDOW] = line;
	return 0;
}

/* The events in flight when the connection ended: unconfirmed. */
static void
pub_lost(const struct pub *p, const char *how)
{
	unsigned long first = p->ring[p->head];
	unsigned long last = p->ring[(p->head + p->inflight - 1) %
	    CLI_PUB_WINDOW];

	if (p->from_stdin)
		say("%s with %u event(s) unanswered: stdin lines %lu-%lu may or "
		    "may not have been published", how, p->inflight, first, last);
	else
		say("%s before the answer: the event may or may not have been "
		    "published", how);
}

/* The oldest event in flight got its answer: seq, or refused (-1). */
static int
pub_answered(struct pub *p, int ok, uint64_t seq, const char *why)
{
	unsigned long line = p->ring[p->head];
	char where[64];

	p->head = (p->head + 1) % CLI_PUB_WINDOW;
	p->inflight--;
	if (!ok) {
		pub_where(p, line, where, sizeof where);
		say("%s refused: %s", where, why);
		return -1;
	}
	p->published++;
	if (verbose && printf("%llu\n", (unsigned long long)seq) < 0)
		return -1;
	return 0;
}

/*
 * Every answer now in the buffer.  0 to go on, -1 on a refusal or a
 * malformed answer (said).
 */
static int
pub_answers(struct pub *p)
{
	char why[256], code[64], text[160];
	const uint8_t *body;
	size_t blen;
	struct resp r;
	int t, op, rc = 0;

	while (rc == 0 && p->inflight > 0) {
		struct json_doc doc = { 0 };

		if (!p->token) {
			if ((rc = resp_next(&p->l, &r, &body, &blen)) <= 0)
				return rc;
			p->closing |= r.close;
			if (r.status != 202) {
				resp_why(&r, body, blen, why, sizeof why);
				return pub_answered(p, 0, 0, why);
			}
			json_parse(&doc, body, blen, 4, blen + 1);
			rc = pub_answered(p, 1, uint_member(&doc, "seq"), NULL);
			json_doc_free(&doc);
			continue;
		}
		if ((rc = ws_next(&p->l, &p->in, &op, &body, &blen)) <= 0) {
			if (rc == -1 && p->in.close_code != 0) {
				snprintf(why, sizeof why, "wsd closed the "
				    "connection (%d)", p->in.close_code);
				pub_lost(p, why);
			}
			return rc;
		}
		/* Our route's "subscribed", the group's events (ours among
		 * them) and the like pass by: an answer is "published" or
		 * "error" with the id of the oldest event in flight. */
		t = -1;
		if (op == WS_OP_TEXT && json_parse(&doc, body, blen,
		    JSON_MAX_DEPTH, blen + 1) == 0 &&
		    doc.tok[0].type == JSON_OBJECT &&
		    json_find(&doc, 0, "id") >= 0 &&
		    uint_member(&doc, "id") == p->ring[p->head])
			t = json_find(&doc, 0, "type");
		rc = 0;
		if (json_tok_eq(&doc, t, "published"))
			rc = pub_answered(p, 1, uint_member(&doc, "seq"), NULL);
		else if (json_tok_eq(&doc, t, "error")) {
			str_member(&doc, "code", code, sizeof code);
			str_member(&doc, "message", text, sizeof text);
			snprintf(why, sizeof why, "%s: %s", code, text);
			rc = pub_answered(p, 0, 0, why);
		}
		json_doc_free(&doc);
	}
	return rc;
}

/*
 * Validate one line (a JSON value) and send it.  0 sent or skipped (an
 * empty line), 1 not JSON (said: pub stops there), -1 failed (said).
 */
static int
pub_line(struct pub *p, uint8_t *s, size_t n, unsigned long line)
{
	struct json_doc doc = { 0 };
	char where[64];
	int bad;

	if (n > 0 && s[n - 1] == '\r')
		n--;
	if (n == 0 && p->from_stdin)
		return 0;
	if (n > CLI_MAX_LINE) {
		pub_where(p, line, where, sizeof where);
		say("%s is over %u bytes", where, CLI_MAX_LINE);
		return 1;
	}
	bad = json_parse(&doc, s, n, JSON_MAX_DEPTH, n + 1) == -1;
	if (bad) {
		pub_where(p, line, where, sizeof where);
		say("%s is not JSON: %s at byte %zu", where, doc.err,
		    doc.err_offset + 1);
	}
	json_doc_free(&doc);
	return bad ? 1 : pub_send(p, s, n, line);
}

/*
 * The pub loop: lines from stdin (or the one DATA) go out while fewer than
 * CLI_PUB_WINDOW await answers; answers are read as they come, so a slow
 * stdin (tail -f) gets each event published at once.  A connection the
 * server closed while idle (its --handshake-timeout) is opened again for
 * the next event; one that closes with events in flight fails.
 */
static int
pub_run(struct pub *p, const char *data)
{
	struct pollfd fds[2];
	uint8_t *sin = NULL;		/* stdin bytes not yet sent; owned */
	size_t slen = 0, scap = 0, scan = 0;
	unsigned long line = 0;
	int eof = data != NULL, stop = 0, rc = 1, r;

	if (data != NULL) {
		if ((r = pub_line(p, (uint8_t *)data, strlen(data), 0)) != 0) {
			rc = r == 1 ? 2 : 1;
			goto out;
		}
	}
	for (;;) {
		int nfds = 0, want_in, tmo = -1;
		uint8_t *nl;

		/* Complete lines, as many as the window takes. */
		while (!stop && p->inflight < CLI_PUB_WINDOW && slen > 0 &&
		    ((nl = memchr(sin + scan, '\n', slen - scan)) != NULL ||
		    eof)) {
			size_t n = nl ? (size_t)(nl - sin) : slen;

			line++;
			if ((r = pub_line(p, sin, n, line)) == -1)
				goto out;
			if (r == 1)
				stop = 1;
			n += nl != NULL;
			memmove(sin, sin + n, slen - n);
			slen -= n;
			scan = 0;
		}
		if (slen > 0 && memchr(sin, '\n', slen) == NULL)
			scan = slen;
		if (p->inflight == 0 && (stop || (eof && slen == 0)))
			break;
		if (slen > CLI_MAX_LINE) {
			say("stdin line %lu is over %u bytes", line + 1,
			    CLI_MAX_LINE);
			stop = 1;
			slen = 0;
			continue;
		}
		/* Wait for an answer, or for stdin when there is room. */
		want_in = !eof && !stop && p->inflight < CLI_PUB_WINDOW;
		if (p->l.fd >= 0)
			fds[nfds++] = (struct pollfd){ p->l.fd, POLLIN, 0 };
		if (want_in)
			fds[nfds++] = (struct pollfd){ 0, POLLIN, 0 };
		if (p->inflight > 0) {
			tmo = (int)(p->deadline - now_ms());
			if (tmo <= 0) {
				pub_lost(p, "no answer within 30 s");
				goto out;
			}
		}
		if (link_pending(&p->l))
			tmo = 0;
		if ((r = poll(fds, nfds, tmo)) == -1 && errno != EINTR) {
			say("poll: %s", strerror(errno));
			goto out;
		}
		if (p->l.fd >= 0 && (fds[0].revents != 0 ||
		    link_pending(&p->l))) {
			long n = link_fill(&p->l, CLI_MAX_HEAD + CLI_MAX_BODY);

			if (n > 0) {
				unsigned before = p->inflight;

				if (pub_answers(p) == -1)
					goto out;
				/* An answer, not a byte, earns more time:
				 * a server that trickles cannot hold us. */
				if (p->inflight < before)
					p->deadline = now_ms() + CLI_IO_MS;
			}
			if (n <= 0 || (p->closing && p->inflight == 0) ||
			    p->in.close_code != 0) {
				if (p->inflight > 0) {
					pub_lost(p, "the connection closed");
					goto out;
				}
				link_close(&p->l);
				p->closing = 0;
				p->in.close_code = 0;
			}
		}
		if (want_in && fds[nfds - 1].revents != 0) {
			ssize_t n;

			if (slen + 65536 > scap) {
				uint8_t *np = realloc(sin, slen + 65536);

				if (np == NULL) {
					say("out of memory");
					goto out;
				}
				sin = np;
				scap = slen + 65536;
			}
			n = read(0, sin + slen, scap - slen);
			if (n == -1 && errno != EINTR && errno != EAGAIN) {
				say("stdin: %s", strerror(errno));
				goto out;
			}
			if (n == 0)
				eof = 1;
			else if (n > 0)
				slen += n;
		}
	}
	rc = stop ? 1 : 0;
	if (!stop && fflush(stdout) != 0) {
		say("stdout: %s", strerror(errno));
		rc = 1;
	}
out:
	if (rc != 0 && p->published > 0 && p->from_stdin)
		say("%lu event(s) published before that", p->published);
	if (p->token && p->l.fd >= 0)
		ws_send_close(&p->l, WS_CLOSE_NORMAL);
	free(sin);
	link_free(&p->l);
	free(p->in.msg);
	return rc;
}

static int
cmd_pub(int argc, char **argv)
{
	struct pub p = { .l = { .fd = -1 } };
	const char *url = NULL, *api_key = NULL, *token = NULL;
	char *pos[3];
	const struct copt o[] = {
		{ "url", 1, &url }, { "api-key", 1, &api_key },
		{ "token", 1, &token }, { "cafile", 1, &cafile },
		{ "insecure-tls", 0, &insecure_tls }, { "v", 0, &verbose },
	};
	int rc, n = parse_args(argc, argv, o, sizeof o / sizeof o[0], pos, 3);

	if (n == -2) {
		fputs(pub_usage, stdout);
		return 0;
	}
	if (n < 2) {
		if (n >= 0)
			say("needs GROUP and TYPE (see wsd pub --help)");
		return 2;
	}
	p.group = pos[0];
	p.type = pos[1];
	if (!(strcmp(p.group, "*") == 0 ||
	    auth_group_valid(p.group, strlen(p.group)))) {
		say("bad group name %.64s: 1-64 bytes of [A-Za-z0-9._:-], or *",
		    p.group);
		return 2;
	}
	if (p.type[0] == '\0') {
		say("TYPE is empty");
		return 2;
	}
	if (api_key != NULL && token != NULL) {
		say("--api-key or --token, not both");
		return 2;
	}
	/* A flag wins over both variables; of the two variables, the key. */
	if (api_key == NULL && token == NULL &&
	    (api_key = getenv("WSD_API_KEY")) == NULL)
		token = getenv("WSD_TOKEN");
	if (url_parse(env_or(url, "WSD_URL") ? env_or(url, "WSD_URL") :
	    CLI_DEFAULT_URL, &p.url) == -1)
		return 2;
	if (!credential_ok("the API key", api_key) ||
	    !credential_ok("the token", token))
		return 2;
	if (take_secret(api_key, &p.api_key) == -1 ||
	    take_secret(token, &p.token) == -1)
		return 1;
	p.from_stdin = n == 2;
	rc = pub_run(&p, n == 3 ? pos[2] : NULL);
	drop_secret(p.api_key);
	drop_secret(p.token);
	return rc;
}

/* ==== wsd sub: positions and the state file =========================== */

static const char sub_usage[] =
"usage: wsd sub [options] GROUP...\n"
"\n"
"Print every event of the groups, one JSON envelope per line, as wsd sends\n"
"it, on one WebSocket connection.  Keeps each group's position (EPOCH:SEQ)\n"
"and resumes from it after a drop, reconnecting with backoff (0.5 s doubling\n"
"to 30 s); with --state, across runs too.  A history_gap (events no longer\n"
"kept, or a new epoch after wsd restarted) is reported on stderr with the\n"
"exact range missed.  SIGINT or SIGTERM: state saved, exit 0.\n"
"\n"
"  --url URL        wsd to connect to (WSD_URL; " CLI_DEFAULT_URL ")\n"
"                   ws:// and http:// alike; wss:// or https:// for TLS\n"
"  --token T        JWT for wsd's --token-secret (WSD_TOKEN)\n"
"  --since POS      start from POS (EPOCH:SEQ, or SEQ in the current epoch;\n"
"                   0: all that is kept) for groups not in the state file\n"
"  --state FILE     keep positions in FILE (GROUP EPOCH:SEQ per line,\n"
"                   written to a temporary file then renamed)\n"
"  --once           exit (status 1) at the first drop instead of reconnecting\n"
"  --cafile F       CA certificates for TLS (else the system's)\n"
"  --insecure-tls   do not verify the server's certificate (tests only)\n"
"  -v               say on stderr where each group starts\n"
"\n"
"The first group is joined by its route (/ws/GROUP?since=POS), the others\n"
"with subscribe messages.  Output is flushed after every read, and the\n"
"state is written only after the output it covers: after a crash, events\n"
"may be printed again (at least once), never skipped.\n";

struct group {
	char     name[AUTH_MAX_GROUP + 1];
	char     epoch[CLI_EPOCH_LEN + 1];	/* "" for a bare seq */
	uint64_t seq;		/* the last event printed, or where it joined */
	uint8_t  have;		/* a position to resume from */
	uint8_t  listen;	/* named on the command line (else only kept) */
};

struct sub {
	struct url    url;
	struct link   l;
	struct wsin   in;
	char         *token;	/* owned copy (take_secret) */
	const char   *state;
	struct group  g[CLI_MAX_GROUPS];
	unsigned      ng;
	unsigned      first;	/* the group whose route is upgraded on */
	int           once;
	int           dirty;	/* positions moved since the last save */
	int64_t       saved_ms;
};

/* EPOCH:SEQ or SEQ into *g, read as the server reads it; 0 or -1. */
static int
pos_parse(const char *s, size_t n, struct group *g)
{
	struct hub_pos p;

	if (hub_parse_pos(s, n, &p) == -1)
		return -1;
	memcpy(g->epoch, p.epoch, sizeof g->epoch);
	g->seq = p.seq;
	g->have = 1;
	return 0;
}

static struct group *
sub_group(struct sub *s, const char *name, size_t n)
{
	for (unsigned i = 0; i < s->ng; i++)
		if (strlen(s->g[i].name) == n && memcmp(s->g[i].name, name, n) == 0)
			return &s->g[i];
	return NULL;
}

static struct group *
sub_add(struct sub *s, const char *name, size_t n)
{
	struct group *g = sub_group(s, name, n);

	if (g != NULL)
		return g;
	if (s->ng == CLI_MAX_GROUPS) {
		say("more than %d groups", CLI_MAX_GROUPS);
		return NULL;
	}
	g = &s->g[s->ng++];
	memset(g, 0, sizeof *g);
	memcpy(g->name, name, n);
	return g;
}

/*
 * The state file: "GROUP EPOCH:SEQ" per line, '#' comments.  Groups not
 * named this time are kept and written back, so one file can serve runs
 * with different groups.  A missing file is an empty state; a malformed
 * one is refused rather than silently replaced.
 */
static int
state_load(struct sub *s)
{
	char line[256], *sp;
	unsigned long no = 0;
	FILE *f;
	int rc = 0;

	if ((f = fopen(s->state, "re")) == NULL) {
		if (errno == ENOENT)
			return 0;
		say("cannot read %.200s: %s", s->state, strerror(errno));
		return -1;
	}
	while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
		size_t n = strcspn(line, "\r\n");
		struct group tmp, *g;

		no++;
		line[n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		if ((sp = strchr(line, ' ')) == NULL ||
		    !auth_group_valid(line, sp - line) ||
		    pos_parse(sp + 1, strlen(sp + 1), &tmp) == -1 ||
		    tmp.epoch[0] == '\0') {
			say("%.200s line %lu: expected GROUP EPOCH:SEQ", s->state,
			    no);
			rc = -1;
		} else if ((g = sub_add(s, line, sp - line)) == NULL)
			rc = -1;
		else {
			memcpy(g->epoch, tmp.epoch, sizeof g->epoch);
			g->seq = tmp.seq;
			g->have = 1;
		}
	}
	fclose(f);
	return rc;
}

/*
 * Write every known position to a temporary file beside FILE, flush it to
 * disk, then rename it over FILE (rename(2) is atomic): a crash leaves the
 * old state or the new, never half of one.  Called only after stdout was
 * flushed, so the state never runs ahead of the output.
 */
static int
state_save(struct sub *s)
{
	char tmp[PATH_MAX];
	FILE *f = NULL;
	int fd = -1;

	if (s->state == NULL || !s->dirty)
		return 0;
	if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", s->state) >= (int)sizeof tmp) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	if ((fd = mkstemp(tmp)) == -1) {
		tmp[0] = '\0';
		goto fail;
	}
	if ((f = fdopen(fd, "w")) == NULL)
		goto fail;
	fd = -1;
	fputs("# wsd sub state: GROUP EPOCH:SEQ, the last event printed\n", f);
	for (unsigned i = 0; i < s->ng; i++)
		if (s->g[i].have && s->g[i].epoch[0] != '\0')
			fprintf(f, "%s %s:%llu\n", s->g[i].name, s->g[i].epoch,
			    (unsigned long long)s->g[i].seq);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		goto fail;
	if (fclose(f) != 0) {
		f = NULL;
		goto fail;
	}
	f = NULL;
	if (rename(tmp, s->state) == -1)
		goto fail;
	s->dirty = 0;
	s->saved_ms = now_ms();
	return 0;
fail:
	say("cannot write %.200s: %s", s->state, strerror(errno));
	if (f != NULL)
		fclose(f);
	if (fd != -1)
		close(fd);
	if (tmp[0] != '\0')
		unlink(tmp);
	return -1;
}

/* stdout first, then the state that covers it. */
static int
sub_flush(struct sub *s, int force)
{
	if (fflush(stdout) != 0) {
		say("stdout: %s", strerror(errno));
		return -1;
	}
	if (!force && now_ms() - s->saved_ms < CLI_SAVE_MS)
		return 0;
	return state_save(s);
}

/* ==== wsd sub: messages =============================================== */

/* "EPOCH:SEQ", or "SEQ" for a bare position. */
static void
pos_str(const struct group *g, uint64_t seq, char *out, size_t cap)
{
	if (g->epoch[0] != '\0')
		snprintf(out, cap, "%s:%llu", g->epoch, (unsigned long long)seq);
	else
		snprintf(out, cap, "%llu", (unsigned long long)seq);
}

/*
 * history_gap: wsd no longer has the events after our position (another
 * epoch: it restarted or the group was created again; or they fell out of
 * the history).  Say exactly what was missed, then follow the stream from
 * oldest, which is what wsd replays next.
 */
static void
sub_gap(struct sub *s, struct group *g, const char *epoch, uint64_t seq,
    uint64_t oldest)
{
	char was[48];

	pos_str(g, g->seq, was, sizeof was);
	if (g->epoch[0] != '\0' && strcmp(g->epoch, epoch) != 0) {
		if (oldest > 1)
			say("history_gap in %s: epoch changed from %s to %s (wsd "
			    "restarted, or the group was created again): missed "
			    "the events after %s, if there were any, and "
			    "%s:1..%s:%llu (no longer kept); going on from "
			    "%s:%llu", g->name, g->epoch,
			    epoch, was, epoch, epoch,
			    (unsigned long long)oldest - 1, epoch,
			    (unsigned long long)oldest);
		else
			say("history_gap in %s: epoch changed from %s to %s (wsd "
			    "restarted, or the group was created again): missed "
			    "the events after %s, if there were any; going on "
			    "from %s:1", g->name,
			    g->epoch, epoch, was, epoch);
	} else if (g->seq > seq)
		say("history_gap in %s: position %s is past the end of the "
		    "stream (%s:%llu); going on from %s:%llu", g->name, was,
		    epoch, (unsigned long long)seq, epoch,
		    (unsigned long long)oldest);
	else
		say("history_gap in %s: missed %s:%llu..%s:%llu (%llu events, "
		    "no longer kept); going on from %s:%llu", g->name, epoch,
		    (unsigned long long)g->seq + 1, epoch,
		    (unsigned long long)oldest - 1,
		    (unsigned long long)(oldest - 1 - g->seq), epoch,
		    (unsigned long long)oldest);
	memcpy(g->epoch, epoch, sizeof g->epoch);
	g->seq = oldest - 1;
	g->have = 1;
	s->dirty = 1;
}

/*
 * An envelope: print it (one line: JSON white space can hold a newline a
 * publisher sent, and strings cannot, so CR and LF become spaces) unless
 * it is one already printed, and move the group's position.
 */
static int
sub_event(struct sub *s, const struct json_doc *d, const uint8_t *p, size_t n)
{
	char name[AUTH_MAX_GROUP + 1], at[48];
	uint64_t seq = uint_member(d, "seq");
	struct group *g;

	str_member(d, "group", name, sizeof name);
	g = sub_group(s, name, strlen(name));
	if (g != NULL && g->have && g->epoch[0] != '\0') {
		if (seq <= g->seq)
			return 0;	/* already printed */
		if (seq > g->seq + 1) {
			pos_str(g, g->seq + 1, at, sizeof at);
			say("%s: events %s..%llu did not arrive", g->name, at,
			    (unsigned long long)seq - 1);
		}
	}
	if (memchr(p, '\n', n) != NULL || memchr(p, '\r', n) != NULL) {
		for (size_t i = 0; i < n; i++)
			putchar(p[i] == '\n' || p[i] == '\r' ? ' ' : p[i]);
	} else
		fwrite(p, 1, n, stdout);
	putchar('\n');
	if (g != NULL && g->epoch[0] != '\0') {
		g->seq = seq;
		g->have = 1;
		s->dirty = 1;
	}
	return 0;
}

/*
 * One message from wsd.  An envelope is told from the answers by having
 * both "seq" and "timestamp" (no answer has both), not by its type: a
 * publisher may name an event "subscribed".  Returns 0, or -1 when it
 * cannot go on (a subscribe refused: no reconnect would change that).
 */
static int
sub_message(struct sub *s, const uint8_t *p, size_t n)
{
	struct json_doc d = { 0 };
	char name[AUTH_MAX_GROUP + 1], epoch[CLI_EPOCH_LEN + 2], code[32];
	char text[128], at[48];
	struct group *g;
	int rc = 0;

	if (json_parse(&d, p, n, JSON_MAX_DEPTH, n + 1) == -1 ||
	    d.tok[0].type != JSON_OBJECT)
		goto out;
	if (json_find(&d, 0, "seq") >= 0 && json_find(&d, 0, "timestamp") >= 0) {
		rc = sub_event(s, &d, p, n);
		goto out;
	}
	str_member(&d, "group", name, sizeof name);
	str_member(&d, "epoch", epoch, sizeof epoch);
	g = sub_group(s, name, strlen(name));
	if (json_tok_eq(&d, json_find(&d, 0, "type"), "subscribed")) {
		if (g == NULL || strlen(epoch) != CLI_EPOCH_LEN)
			goto out;
		if (!g->have || g->epoch[0] == '\0') {
			/* New, or a bare seq: it is in the current epoch. */
			memcpy(g->epoch, epoch, sizeof g->epoch);
			if (!g->have)
				g->seq = uint_member(&d, "seq");
			g->have = 1;
			s->dirty = 1;
		}
		/* Another epoch: history_gap follows and says what to do. */
		if (verbose) {
			pos_str(g, g->seq, at, sizeof at);
			say("subscribed to %s at %s:%llu, from %s", g->name, epoch,
			    (unsigned long long)uint_member(&d, "seq"), at);
		}
		goto out;
	}
	if (!json_tok_eq(&d, json_find(&d, 0, "type"), "error"))
		goto out;		/* pong, heartbeat_ack, ... */
	str_member(&d, "code", code, sizeof code);
	if (strcmp(code, "history_gap") == 0) {
		if (g != NULL && strlen(epoch) == CLI_EPOCH_LEN)
			sub_gap(s, g, epoch, uint_member(&d, "seq"),
			    uint_member(&d, "oldest"));
		goto out;
	}
	str_member(&d, "message", text, sizeof text);
	say("wsd answered error %s: %s", code, text);
	/* A refused subscribe does not get better by reconnecting. */
	if (strcmp(code, "forbidden") == 0 || strcmp(code, "bad_group") == 0 ||
	    strcmp(code, "too_large") == 0 || strcmp(code, "bad_json") == 0)
		rc = -1;
out:
	json_doc_free(&d);
	return rc;
}

/* ==== wsd sub: the connection and the loop ============================ */

static void
on_stop(int sig)
{
	stop_sig = sig;
}

static int
sub_subscribe(struct sub *s, const struct group *g)
{
	struct json_buf b = { 0 };
	char at[48];
	int rc;

	json_put_cstr(&b, "{\"type\":\"subscribe\",\"group\":");
	json_put_str(&b, g->name, strlen(g->name));
	if (g->have) {
		pos_str(g, g->seq, at, sizeof at);
		json_put_cstr(&b, ",\"since\":");
		json_put_str(&b, at, strlen(at));
	}
	json_put_raw(&b, "}", 1);
	rc = b.oom ? -1 : ws_send_frame(&s->l, WS_OP_TEXT, b.p, b.len);
	json_buf_free(&b);
	return rc;
}

/*
 * One connection: upgrade on the first group's route (with since=POS when
 * there is one; a route joins a group, and a subscribe for that group
 * after it could replay events the route already delivered), subscribe
 * to the others, then print until the connection or the run ends.
 * *up is set once the upgrade succeeded (the backoff starts again).
 */
static int
sub_session(struct sub *s, int *up)
{
	const struct group *first = &s->g[s->first];
	char path[160], at[48];
	int64_t last_rx;
	int pinged = 0, rc;

	snprintf(path, sizeof path, "/ws/%s", first->name);
	if (first->have) {
		pos_str(first, first->seq, at, sizeof at);
		snprintf(path + strlen(path), sizeof path - strlen(path),
		    "?since=%s", at);
	}
	s->in.in_msg = 0;
	s->in.close_code = 0;
	if ((rc = ws_connect(&s->l, &s->url, path, s->token)) != 0) {
		if (stop_sig)
			return SUB_STOPPED;
		/* Refusals that a retry cannot change. */
		return rc == 400 || rc == 401 || rc == 403 || rc == 404 ?
		    SUB_FATAL : SUB_DROPPED;
	}
	*up = 1;
	for (unsigned i = 0; i < s->ng; i++)
		if (s->g[i].listen && &s->g[i] != first &&
		    sub_subscribe(s, &s->g[i]) == -1)
			return SUB_DROPPED;
	last_rx = now_ms();
	for (;;) {
		const uint8_t *p;
		size_t n;
		int op;
		long got;
		int64_t idle;

		while ((rc = ws_next(&s->l, &s->in, &op, &p, &n)) == 1)
			if (op == WS_OP_TEXT && sub_message(s, p, n) == -1)
				return SUB_FATAL;
		if (sub_flush(s, 0) == -1)
			return SUB_FATAL;
		if (rc == -1) {
			if (s->in.close_code != 0)
				say("wsd closed the connection (%d%s)",
				    s->in.close_code, s->in.close_code == 1001 ?
				    ": going away" : "");
			return SUB_DROPPED;
		}
		if (stop_sig) {
			ws_send_close(&s->l, WS_CLOSE_NORMAL);
			return SUB_STOPPED;
		}
		idle = now_ms() - last_rx;
		if (idle >= CLI_DEAD_MS) {
			say("nothing from wsd for %d s", CLI_DEAD_MS / 1000);
			return SUB_DROPPED;
		}
		if (idle >= CLI_PING_MS && !pinged) {
			if (ws_send_frame(&s->l, WS_OP_PING, NULL, 0) == -1)
				return SUB_DROPPED;
			pinged = 1;
		}
		if (!link_pending(&s->l)) {
			int64_t next = (pinged ? CLI_DEAD_MS : CLI_PING_MS) - idle;

			/* Positions not yet saved are saved when the stream
			 * pauses, not only with the next event. */
			if (s->dirty && s->state != NULL &&
			    s->saved_ms + CLI_SAVE_MS - now_ms() < next)
				next = s->saved_ms + CLI_SAVE_MS - now_ms();
			if (next < 0)
				next = 0;
			rc = wait_fd(s->l.fd, POLLIN, (int)next);
			if (rc == 0 || (rc == -1 && errno == EINTR))
				continue;
			if (rc == -1) {
				say("poll: %s", strerror(errno));
				return SUB_FATAL;
			}
		}
		if ((got = link_fill(&s->l, CLI_MAX_MESSAGE + 14)) <= 0) {
			if (got == 0)
				say("wsd closed the connection");
			return SUB_DROPPED;
		}
		last_rx = now_ms();
		pinged = 0;
	}
}

static int
sub_run(struct sub *s)
{
	struct sigaction sa = { 0 };
	sigset_t block;
	int backoff = CLI_BACKOFF_MIN_MS, rc = 1, up, r;
	unsigned char jitter;

	/* SIGINT and SIGTERM are taken only inside ppoll() (wait_fd). */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &run_mask);
	sigdelset(&run_mask, SIGINT);
	sigdelset(&run_mask, SIGTERM);
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	for (;;) {
		up = 0;
		r = sub_session(s, &up);
		link_close(&s->l);
		if (sub_flush(s, 1) == -1) {
			rc = 1;
			break;
		}
		if (r == SUB_STOPPED || stop_sig) {
			rc = 0;
			break;
		}
		if (r == SUB_FATAL || s->once) {
			rc = 1;
			break;
		}
		if (up)
			backoff = CLI_BACKOFF_MIN_MS;
		/* Jitter of up to a quarter, so clients dropped together
		 * by a restart do not all come back in the same instant. */
		if (RAND_bytes(&jitter, 1) != 1)
			jitter = 0;
		r = backoff + backoff / 4 * jitter / 255;
		say("reconnecting in %.1f s", r / 1000.0);
		if (wait_fd(-1, 0, r) == -1 && stop_sig) {
			rc = 0;
			break;
		}
		backoff = backoff * 2 > CLI_BACKOFF_MAX_MS ? CLI_BACKOFF_MAX_MS :
		    backoff * 2;
	}
	link_free(&s->l);
	free(s->in.msg);
	return rc;
}

static int
cmd_sub(int argc, char **argv)
{
	static struct sub s;
	const char *url = NULL, *token = NULL, *since = NULL;
	char *pos[CLI_MAX_GROUPS];
	struct group at = { .have = 0 };
	const struct copt o[] = {
		{ "url", 1, &url }, { "token", 1, &token },
		{ "since", 1, &since }, { "state", 1, &s.state },
		{ "once", 0, &s.once }, { "cafile", 1, &cafile },
		{ "insecure-tls", 0, &insecure_tls }, { "v", 0, &verbose },
	};
	int rc, n = parse_args(argc, argv, o, sizeof o / sizeof o[0], pos,
	    CLI_MAX_GROUPS);

	s.l.fd = -1;
	if (n == -2) {
		fputs(sub_usage, stdout);
		return 0;
	}
	if (n < 1) {
		if (n == 0)
			say("needs at least one GROUP (see wsd sub --help)");
		return 2;
	}
	if (since != NULL && pos_parse(since, strlen(since), &at) == -1) {
		say("bad --since %.64s (expected EPOCH:SEQ or SEQ)", since);
		return 2;
	}
	for (int i = 0; i < n; i++)
		if (!auth_group_valid(pos[i], strlen(pos[i]))) {
			say("bad group name %.64s: 1-64 bytes of [A-Za-z0-9._:-]",
			    pos[i]);
			return 2;
		}
	if (url_parse(env_or(url, "WSD_URL") ? env_or(url, "WSD_URL") :
	    CLI_DEFAULT_URL, &s.url) == -1)
		return 2;
	if (!credential_ok("the token", env_or(token, "WSD_TOKEN")))
		return 2;
	if (take_secret(env_or(token, "WSD_TOKEN"), &s.token) == -1 ||
	    (s.state != NULL && state_load(&s) == -1))
		return 1;
	for (int i = 0; i < n; i++) {
		struct group *g = sub_add(&s, pos[i], strlen(pos[i]));

		if (g == NULL)
			return 2;
		if (i == 0)
			s.first = g - s.g;
		g->listen = 1;
		if (!g->have && since != NULL) {
			memcpy(g->epoch, at.epoch, sizeof g->epoch);
			g->seq = at.seq;
			g->have = 1;
		}
	}
	rc = sub_run(&s);
	drop_secret(s.token);
	return rc;
}

/* ==== wsd token ======================================================= */

static const char token_usage[] =
"usage: wsd token [options]\n"
"\n"
"Print an HS256 JWT that wsd's --token-secret accepts.\n"
"\n"
"  --secret S       the server's token secret, at least 32 bytes\n"
"                   (WSD_TOKEN_SECRET, as the server reads it)\n"
"  --secret-file F  read it from F, trailing newline dropped\n"
"                   (WSD_TOKEN_SECRET_FILE)\n"
"  --sub NAME       the subject (shown in wsd's logs)\n"
"  --groups G,...   groups it may join: names, PREFIX:* or *\n"
"  --publish G,...  groups it may publish to, or true: wherever it may join\n"
"  --ttl SECONDS    lifetime (3600); 0: no exp, it never expires\n"
"\n"
"The token is checked with the server's own verifier before it is printed:\n"
"a bad pattern or a too long subject is refused here (exit 2).\n";

/* Unpadded base64url (RFC 7515 §2) of in[0..len) into out; its length. */
static size_t
b64url(const uint8_t *in, size_t len, char *out)
{
	static const char a[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, n = 0;
	uint32_t v;

	for (i = 0; i + 2 < len; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[n++] = a[v >> 18 & 63];
		out[n++] = a[v >> 12 & 63];
		out[n++] = a[v >> 6 & 63];
		out[n++] = a[v & 63];
	}
	if (len - i > 0) {
		v = (uint32_t)in[i] << 16;
		if (len - i == 2)
			v |= (uint32_t)in[i + 1] << 8;
		out[n++] = a[v >> 18 & 63];
		out[n++] = a[v >> 12 & 63];
		if (len - i == 2)
			out[n++] = a[v >> 6 & 63];
	}
	out[n] = '\0';
	return n;
}

/* A comma-separated list as a JSON array of strings. */
static void
put_list(struct json_buf *b, const char *list)
{
	const char *p = list;
	size_t n;

	json_put_raw(b, "[", 1);
	for (int k = 0; ; k++) {
		n = strcspn(p, ",");
		if (k > 0)
			json_put_raw(b, ",", 1);
		json_put_str(b, p, n);
		if (p[n] == '\0')
			break;
		p += n + 1;
	}
	json_put_raw(b, "]", 1);
}

/* The secret as the server reads it: the file's, trailing newline gone. */
static int
token_secret(const char *s, const char *file, uint8_t *out, size_t *len)
{
	FILE *f;
	size_t n;

	if (file != NULL) {
		if ((f = fopen(file, "re")) == NULL) {
			say("cannot read %.200s: %s", file, strerror(errno));
			return -1;
		}
		n = fread(out, 1, CLI_MAX_SECRET, f);
		fclose(f);
		if (n == CLI_MAX_SECRET) {
			say("%.200s: secret over %d bytes", file,
			    CLI_MAX_SECRET - 1);
			return -1;
		}
		while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
			n--;
	} else if (s != NULL) {
		if ((n = strlen(s)) >= CLI_MAX_SECRET) {
			say("secret over %d bytes", CLI_MAX_SECRET - 1);
			return -1;
		}
		memcpy(out, s, n);
		OPENSSL_cleanse((void *)s, n);
	} else {
		say("needs --secret, --secret-file or WSD_TOKEN_SECRET");
		return -1;
	}
	/* RFC 7518 §3.2, and the server refuses a shorter one at start. */
	if (n < AUTH_MIN_SECRET) {
		say("the secret needs at least %d bytes (wsd refuses shorter)",
		    AUTH_MIN_SECRET);
		return -1;
	}
	*len = n;
	return 0;
}

static int
cmd_token(int argc, char **argv)
{
	static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	const char *secret = NULL, *file = NULL, *sub = NULL, *groups = NULL;
	const char *publish = NULL, *ttl = NULL;
	const struct copt o[] = {
		{ "secret", 1, &secret }, { "secret-file", 1, &file },
		{ "sub", 1, &sub }, { "groups", 1, &groups },
		{ "publish", 1, &publish }, { "ttl", 1, &ttl },
	};
	uint8_t key[CLI_MAX_SECRET], mac[EVP_MAX_MD_SIZE];
	char *tok = NULL, *pos[1], *end;
	struct json_buf b = { 0 };
	struct auth_claims claims;
	unsigned int maclen = 0;
	size_t klen = 0, n;
	long long life = CLI_TTL_S;
	time_t now = time(NULL);
	int rc = 2, err;

	if ((err = parse_args(argc, argv, o, sizeof o / sizeof o[0], pos,
	    0)) == -2) {
		fputs(token_usage, stdout);
		return 0;
	}
	if (err < 0)
		return 2;
	if (ttl != NULL) {
		errno = 0;
		life = strtoll(ttl, &end, 10);
		if (errno != 0 || end == ttl || *end != '\0' || life < 0 ||
		    life > CLI_MAX_TTL_S) {
			say("bad --ttl %.64s (seconds, 0 for none)", ttl);
			return 2;
		}
	}
	if (secret == NULL && file == NULL) {
		secret = getenv("WSD_TOKEN_SECRET");
		file = getenv("WSD_TOKEN_SECRET_FILE");
		if (secret != NULL)
			file = NULL;
	}
	if (secret != NULL && file != NULL) {
		say("--secret or --secret-file, not both");
		return 2;
	}
	if (token_secret(secret, file, key, &klen) == -1)
		goto out;

	/* The claims; auth.c reads exactly these (auth.h). */
	json_put_raw(&b, "{", 1);
	if (sub != NULL) {
		json_put_cstr(&b, "\"sub\":");
		json_put_str(&b, sub, strlen(sub));
		json_put_raw(&b, ",", 1);
	}
	json_put_cstr(&b, "\"iat\":");
	json_put_int(&b, now);
	if (life > 0) {
		json_put_cstr(&b, ",\"exp\":");
		json_put_int(&b, now + life);
	}
	if (groups != NULL) {
		json_put_cstr(&b, ",\"groups\":");
		put_list(&b, groups);
	}
	if (publish != NULL) {
		json_put_cstr(&b, ",\"publish\":");
		if (strcmp(publish, "true") == 0)
			json_put_cstr(&b, "true");
		else
			put_list(&b, publish);
	}
	json_put_raw(&b, "}", 1);
	/* Base64url makes 4 of 3 bytes, rounded up; two dots, a 43-byte
	 * signature and a NUL: this bound covers them with room to spare. */
	n = (sizeof hdr + b.len) * 4 / 3 + 3 + 2 + 44 + 1;
	if (b.oom || (tok = malloc(n)) == NULL) {
		say("out of memory");
		rc = 1;
		goto out;
	}
	n = b64url((const uint8_t *)hdr, sizeof hdr - 1, tok);
	tok[n++] = '.';
	n += b64url(b.p, b.len, tok + n);
	if (HMAC(EVP_sha256(), key, (int)klen, (uint8_t *)tok, n, mac,
	    &maclen) == NULL) {
		say("HMAC failed");
		rc = 1;
		goto out;
	}
	tok[n++] = '.';
	n += b64url(mac, maclen, tok + n);

	/* The server's verifier, on the server's rules, before printing. */
	err = auth_verify(key, klen, tok, n, now, &claims);
	auth_claims_free(&claims);
	if (err != AUTH_OK) {
		say("wsd would refuse this token: %s", auth_strerror(err));
		goto out;
	}
	if (groups == NULL)
		say("warning: no --groups: the token grants joining nothing");
	rc = printf("%s\n", tok) < 0 || fflush(stdout) != 0 ? 1 : 0;
out:
	OPENSSL_cleanse(key, sizeof key);
	json_buf_free(&b);
	free(tok);
	return rc;
}

/* ==== wsd help, and the dispatch ====================================== */

static const char help_usage[] =
"usage: wsd [--option value ...]     run the server (wsd --help)\n"
"       wsd pub GROUP TYPE [DATA]    publish events (wsd pub --help)\n"
"       wsd sub GROUP...             print events, resume (wsd sub --help)\n"
"       wsd token --secret S ...     mint a JWT (wsd token --help)\n"
"       wsd help [pub|sub|token]     this text, or a command's\n";

static int
cmd_help(int argc, char **argv)
{
	if (argc < 2) {
		fputs(help_usage, stdout);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "pub") == 0)
		fputs(pub_usage, stdout);
	else if (argc == 2 && strcmp(argv[1], "sub") == 0)
		fputs(sub_usage, stdout);
	else if (argc == 2 && strcmp(argv[1], "token") == 0)
		fputs(token_usage, stdout);
	else {
		fputs(help_usage, stderr);
		return 2;
	}
	return 0;
}

static const struct {
	const char *name;
	int (*run)(int, char **);
} commands[] = {
	{ "pub", cmd_pub }, { "sub", cmd_sub }, { "token", cmd_token },
	{ "help", cmd_help },
};

int
cli_is_command(const char *name)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(name, commands[i].name) == 0)
			return 1;
	return 0;
}

int
cli_main(int argc, char **argv)
{
	static char prefix[16];

	/* A closed pipe is an error to report, not a signal to die of. */
	signal(SIGPIPE, SIG_IGN);
	sigprocmask(SIG_SETMASK, NULL, &run_mask);
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(argv[0], commands[i].name) == 0) {
			snprintf(prefix, sizeof prefix, "wsd %s", argv[0]);
			cmd = prefix;
			return commands[i].run(argc, argv);
		}
	fputs(help_usage, stderr);
	return 2;
}
