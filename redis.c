/*
 * redis.c - a Redis client inside the one loop: one connection per
 * client, non-blocking, pipelined, optionally TLS, reconnecting with
 * backoff.  A client is a command connection or a subscriber.
 *
 * The data flows: the address (resolved once) → connect → TLS handshake →
 * the hello (AUTH, SELECT, and for a subscriber its set) → commands
 * queued into one output buffer and written when the socket is writable
 * (so commands of one loop turn go out in one write) → replies read and
 * parsed by resp.c, each handed to the callback at the head of the
 * in-flight queue → on any failure, every command in flight is failed,
 * and a reconnect is scheduled.  One periodic tick (loop_timer) for all
 * clients starts reconnects and enforces the timeouts and the idle ping.
 *
 * What it does not do: know what the commands mean, retry a command, or
 * hold a command while down (the caller gets REDIS_EDOWN at once and can
 * answer 503).  resp.c owns the wire format; tls.c the TLS reads and
 * writes; this file owns its client TLS context and the handshake, since
 * tls.c's context is the listener's.
 */
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "loop.h"
#include "redis.h"
#include "tls.h"

#define READ_MIN	16384	/* free space a read asks for */
#define READS_PER_EVENT	64	/* then the next client gets a turn */
#define IN_KEEP		65536	/* idle input buffers over it go */
#define SUB_BATCH	256	/* channels per SUBSCRIBE on reconnect */

enum rstate { R_IDLE, R_CONNECTING, R_TLS, R_HELLO, R_UP };

/* What an entry of the in-flight queue waits for. */
enum { P_USER, P_AUTH, P_SELECT, P_HELLO_PING, P_PING };

struct pending {
	redis_reply_fn	*cb;
	void		*arg;
	uint64_t	 t;	/* when queued: the reply timeout's start */
	uint8_t		 kind;
};

/* A channel or pattern of a subscriber's set: a node of a chained hash
 * table, owned by the table. */
struct sub {
	struct sub	*next;
	uint32_t	 hash;
	uint8_t		 pattern;
	size_t		 len;
	uint8_t		 name[];
};

struct redis {
	struct loop_src	 src;		/* fd -1: not connected */
	struct redis	*next;		/* the tick's list */
	struct redis_config cfg;	/* url and ca_file not kept */
	struct resp_url	 url;		/* wiped by redis_free */
	struct sockaddr_storage addr;	/* resolved once */
	socklen_t	 addrlen;
	char		 name[300];	/* host:port for logs */
	SSL_CTX		*ctx;		/* owned; rediss:// only */
	SSL		*ssl;		/* owned while connected */
	int		 state;		/* enum rstate */
	uint32_t	 events;	/* epoll interest now */
	int		 tls_wants_out;	/* TLS read wants EPOLLOUT */
	int		 tried;		/* an attempt was made */
	unsigned	 attempt;	/* failures since last up */
	uint64_t	 since;		/* the attempt started */
	uint64_t	 retry_at;
	uint64_t	 last_rx;
	uint64_t	 ping_at;	/* subscriber: PING unanswered since */
	uint64_t	 rng;
	struct resp_buf	 out;		/* owned; unsent from off */
	size_t		 out_off;
	uint8_t		*in;		/* owned; a partial reply */
	size_t		 in_len, in_cap;
	struct resp_parser parser;
	struct pending	*q;		/* owned ring, oldest first */
	uint32_t	 qhead, qlen, qcap;
	uint32_t	 hello;		/* AUTH/SELECT replies awaited */
	uint32_t	 confirm;	/* subscribe confirmations awaited */
	int		 subs_sent;	/* the set went out */
	struct sub	**tab;		/* owned; ntab a power of two */
	size_t		 ntab;
	int		 freeing;	/* redis_free() called */
	uint64_t	 zombie_at;	/* closed; freed by the tick */
	struct redis_stats st;
};

static struct redis	*clients;
static int		 ticking;	/* the tick's timer exists */
static int		 busy;		/* inside an entry point */

static void	conn_event(struct loop_src *, uint32_t);
static void	tick(void *);
static void	leave(void);
static void	drop(struct redis *, const char *);
static void	start_connect(struct redis *);
static void	connected(struct redis *);
static void	handshake(struct redis *);
static void	hello(struct redis *);
static void	become_up(struct redis *);
static int	flush(struct redis *);
static void	want_events(struct redis *);
static void	do_read(struct redis *);
static void	dispatch(struct redis *, const struct resp_tok *);
static void	sub_reply(struct redis *, const struct resp_tok *);
static void	close_conn(struct redis *);
static void	fail_pending(struct redis *, const char *);
static void	destroy(struct redis *);
static int	q_reserve(struct redis *);
static void	q_push(struct redis *, uint8_t, redis_reply_fn *, void *);
static int	internal_cmd(struct redis *, int, const struct resp_arg *);
static void	snip(char *, size_t, const char *, const struct resp_tok *);

/* ==== Set-up ========================================================== */

/* xorshift64*: the jitter needs spread, not secrecy. */
static uint64_t
rnd(struct redis *r)
{
	r->rng ^= r->rng >> 12;
	r->rng ^= r->rng << 25;
	r->rng ^= r->rng >> 27;
	return r->rng * 0x2545F4914F6CDD1DULL;
}

static SSL_CTX *
tls_client_ctx(const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	char buf[200];

	if (c == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	/* As tls.c: write(2)-like partial writes, and a retried write may
	 * pass the same bytes from a moved buffer (the output compacts). */
	SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	if (ca_file != NULL ?
	    SSL_CTX_load_verify_locations(c, ca_file, NULL) != 1 :
	    SSL_CTX_set_default_verify_paths(c) != 1)
		goto fail;
	return c;
fail:
	ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
	ERR_clear_error();
	snprintf(err, errlen, "cannot load the CA %s: %s",
	    ca_file ? "file" : "store", buf);
	SSL_CTX_free(c);
	return NULL;
}

struct redis *
redis_new(const struct redis_config *cfg, char *err, size_t errlen)
{
	struct addrinfo hints = { 0 }, *res = NULL;
	struct redis *r;
	const char *why;
	char port[8];
	int rc, v6;

	if ((r = calloc(1, sizeof *r)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->src.fd = -1;
	r->src.event = conn_event;
	r->cfg = *cfg;
	r->cfg.url = r->cfg.ca_file = NULL;
	if (!r->cfg.max_out)
		r->cfg.max_out = REDIS_MAX_OUT;
	if (!r->cfg.max_inflight)
		r->cfg.max_inflight = REDIS_MAX_INFLIGHT;
	if (!r->cfg.backoff_min_ms)
		r->cfg.backoff_min_ms = REDIS_BACKOFF_MIN_MS;
	if (!r->cfg.backoff_max_ms)
		r->cfg.backoff_max_ms = REDIS_BACKOFF_MAX_MS;
	if (r->cfg.backoff_max_ms < r->cfg.backoff_min_ms)
		r->cfg.backoff_max_ms = r->cfg.backoff_min_ms;
	if (!r->cfg.timeout_ms)
		r->cfg.timeout_ms = REDIS_TIMEOUT_MS;
	if (!r->cfg.ping_ms)
		r->cfg.ping_ms = REDIS_PING_MS;
	resp_parser_init(&r->parser, cfg->limits);
	r->cfg.limits = NULL;

	if (cfg->url == NULL || resp_url_parse(cfg->url, &r->url, &why) != 0) {
		snprintf(err, errlen, "bad Redis URL: %s",
		    cfg->url ? why : "none given");
		goto fail;
	}
	snprintf(port, sizeof port, "%u", r->url.port);
	v6 = strchr(r->url.host, ':') != NULL;
	snprintf(r->name, sizeof r->name, "%s%s%s:%s", v6 ? "[" : "",
	    r->url.host, v6 ? "]" : "", port);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((rc = getaddrinfo(r->url.host, port, &hints, &res)) != 0) {
		snprintf(err, errlen, "cannot resolve %.256s: %s", r->url.host,
		    gai_strerror(rc));
		goto fail;
	}
	memcpy(&r->addr, res->ai_addr, res->ai_addrlen);
	r->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	if (r->url.tls &&
	    (r->ctx = tls_client_ctx(cfg->ca_file, err, errlen)) == NULL)
		goto fail;
	if (getrandom(&r->rng, sizeof r->rng, GRND_NONBLOCK) !=
	    (ssize_t)sizeof r->rng)
		r->rng = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
	r->rng |= 1;
	if (!ticking) {
		if (loop_timer(REDIS_TICK_MS, tick, NULL) != 0) {
			snprintf(err, errlen, "cannot start the Redis timer");
			goto fail;
		}
		ticking = 1;
	}
	/* The first attempt is the tick's: no callback runs from here. */
	r->state = R_IDLE;
	r->retry_at = loop_now_ms();
	r->next = clients;
	clients = r;
	return r;
fail:
	resp_url_wipe(&r->url);
	resp_parser_free(&r->parser);
	SSL_CTX_free(r->ctx);
	free(r);
	return NULL;
}

/* ==== Freeing ========================================================= */

/*
 * A client is never freed under an epoll batch that may still hold its
 * event.  redis_free() from outside redis.c frees at once (the caller
 * promised no batch is in progress); from inside one of its callbacks it
 * only marks the client, which is closed when the callback's entry point
 * unwinds (leave()) and freed by the tick of a later loop turn, when no
 * stale event can point at it any more.
 */
void
redis_free(struct redis *r)
{
	if (r == NULL || r->freeing)
		return;
	r->freeing = 1;
	if (busy > 0)
		return;
	/* leave() closes it and fails its commands (whose callbacks may
	 * free others); then every closed client goes, zombies included. */
	busy++;
	leave();
	for (struct redis **pp = &clients; *pp != NULL; )
		if ((*pp)->zombie_at != 0) {
			struct redis *z = *pp;

			*pp = z->next;
			destroy(z);
		} else
			pp = &(*pp)->next;
}

static void
destroy(struct redis *r)
{
	close_conn(r);
	resp_url_wipe(&r->url);
	resp_parser_free(&r->parser);
	resp_buf_free(&r->out);
	free(r->in);
	free(r->q);
	for (size_t i = 0; i < r->ntab; i++)
		while (r->tab[i] != NULL) {
			struct sub *s = r->tab[i];

			r->tab[i] = s->next;
			free(s);
		}
	free(r->tab);
	SSL_CTX_free(r->ctx);
	free(r);
}

/*
 * Leave an entry point.  At the outermost, clients freed meanwhile are
 * closed and their commands failed; their callbacks may free more, so
 * the walk repeats until nothing changes.
 */
static void
leave(void)
{
	int again = 1;

	if (--busy > 0)
		return;
	busy++;
	while (again) {
		again = 0;
		for (struct redis *r = clients; r != NULL; r = r->next)
			if (r->freeing && r->zombie_at == 0) {
				r->zombie_at = loop_now_ms() | 1;
				close_conn(r);
				r->state = R_IDLE;
				fail_pending(r, "client freed");
				again = 1;
			}
	}
	busy--;
}

/* ==== The in-flight queue ============================================ */

static int
q_reserve(struct redis *r)
{
	struct pending *q;
	uint32_t cap;

	if (r->qlen < r->qcap)
		return 0;
	cap = r->qcap ? r->qcap * 2 : 64;
	if ((q = malloc((size_t)cap * sizeof *q)) == NULL)
		return -1;
	/* Unroll the ring into the new array, oldest first. */
	for (uint32_t i = 0; i < r->qlen; i++)
		q[i] = r->q[(r->qhead + i) % r->qcap];
	free(r->q);
	r->q = q;
	r->qcap = cap;
	r->qhead = 0;
	return 0;
}

/* After q_reserve(). */
static void
q_push(struct redis *r, uint8_t kind, redis_reply_fn *cb, void *arg)
{
	struct pending *e = &r->q[(r->qhead + r->qlen) % r->qcap];

	e->cb = cb;
	e->arg = arg;
	e->t = loop_now_ms();
	e->kind = kind;
	r->qlen++;
	r->st.inflight = r->qlen;
}

static struct pending
q_pop(struct redis *r)
{
	struct pending e = r->q[r->qhead];

	r->qhead = (r->qhead + 1) % r->qcap;
	r->qlen--;
	r->st.inflight = r->qlen;
	return e;
}

/* Every command in flight gets its callback with why, oldest first.  A
 * callback may queue more (refused: the client is down) or free. */
static void
fail_pending(struct redis *r, const char *why)
{
	while (r->qlen > 0) {
		struct pending e = q_pop(r);

		if (e.kind == P_USER) {
			r->st.errors++;
			if (e.cb != NULL)
				e.cb(e.arg, NULL, why);
		}
	}
}

/* ==== Connecting ====================================================== */

/*
 * Close the connection and forget its state; the set stays.  With an
 * abortive close (SO_LINGER 0): bytes not yet sent are dropped with it,
 * so a command written before a lost reply's timeout cannot reach Redis
 * after the commands of the next connection.
 */
static void
close_conn(struct redis *r)
{
	struct linger abort_close = { 1, 0 };

	if (r->src.fd != -1) {
		loop_del(&r->src);
		tls_free(r->ssl, 1);
		r->ssl = NULL;
		setsockopt(r->src.fd, SOL_SOCKET, SO_LINGER, &abort_close,
		    sizeof abort_close);
		close(r->src.fd);
		r->src.fd = -1;
	}
	r->events = 0;
	r->tls_wants_out = 0;
	if (r->state == R_HELLO && r->out.p != NULL)
		OPENSSL_cleanse(r->out.p, r->out.len);
	r->out.len = r->out_off = 0;
	r->st.queued_bytes = 0;
	r->in_len = 0;
	if (r->in_cap > IN_KEEP) {
		free(r->in);
		r->in = NULL;
		r->in_cap = 0;
	}
	resp_parser_reset(&r->parser);
	r->hello = r->confirm = 0;
	r->subs_sent = 0;
	r->ping_at = 0;
	r->st.up = 0;
}

/*
 * The one failure path: close, fail what was in flight, report, and
 * schedule the next attempt after a random delay in [0, ceiling], the
 * ceiling doubling from backoff_min_ms with each failure up to
 * backoff_max_ms ("full jitter": clients that lost the same server do
 * not come back in step).
 */
static void
drop(struct redis *r, const char *why)
{
	uint64_t ceiling = r->cfg.backoff_min_ms, delay;

	close_conn(r);
	r->state = R_IDLE;
	for (unsigned i = 0; i < r->attempt && ceiling < r->cfg.backoff_max_ms;
	    i++)
		ceiling *= 2;
	if (ceiling > r->cfg.backoff_max_ms)
		ceiling = r->cfg.backoff_max_ms;
	delay = rnd(r) % (ceiling + 1);
	r->retry_at = loop_now_ms() + delay;
	if (r->attempt < 64)
		r->attempt++;
	log_msg(LOG_WARN, "redis down addr=%s reason=\"%s\" retry_ms=%llu",
	    r->name, why, (unsigned long long)delay);
	fail_pending(r, why);
	if (r->cfg.on_state != NULL && !r->freeing)
		r->cfg.on_state(r->cfg.arg, 0, why);
}

static void
start_connect(struct redis *r)
{
	int one = 1, fd;
	char why[128];

	if (r->tried)
		r->st.reconnects++;
	r->tried = 1;
	r->since = loop_now_ms();
	fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1)
		goto fail;
	r->src.fd = fd;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&r->addr, r->addrlen) == -1 &&
	    errno != EINPROGRESS)
		goto fail;
	/* Registered for writing: connect(2) completes when writable. */
	r->state = R_CONNECTING;
	r->events = EPOLLOUT;
	if (loop_add(&r->src, EPOLLOUT) == -1)
		goto fail;
	return;
fail:
	snprintf(why, sizeof why, "connect: %s", strerror(errno));
	drop(r, why);
}

static void
connected(struct redis *r)
{
	SSL *ssl;
	uint8_t a[16];
	int ip;

	if (r->ctx == NULL) {
		hello(r);
		return;
	}
	if ((ssl = SSL_new(r->ctx)) == NULL || SSL_set_fd(ssl, r->src.fd) != 1)
		goto fail;
	r->ssl = ssl;
	SSL_set_connect_state(ssl);
	/* The certificate must name the host of the URL: its IP address
	 * for a literal (RFC 6066 §3 forbids a literal as SNI), else its
	 * DNS name, which is also sent as SNI. */
	ip = inet_pton(AF_INET, r->url.host, a) == 1 ||
	    inet_pton(AF_INET6, r->url.host, a) == 1;
	if (ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
	    r->url.host) != 1 :
	    (SSL_set_tlsext_host_name(ssl, r->url.host) != 1 ||
	    SSL_set1_host(ssl, r->url.host) != 1))
		goto fail;
	r->state = R_TLS;
	handshake(r);
	return;
fail:
	if (r->ssl == NULL)
		SSL_free(ssl);
	ERR_clear_error();
	drop(r, "TLS: cannot set up the connection");
}

static void
handshake(struct redis *r)
{
	char why[300], buf[200];
	long vr;
	int rc;

	ERR_clear_error();
	errno = 0;
	if ((rc = SSL_do_handshake(r->ssl)) == 1) {
		hello(r);
		return;
	}
	switch (SSL_get_error(r->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		r->tls_wants_out = 0;
		want_events(r);
		return;
	case SSL_ERROR_WANT_WRITE:
		r->tls_wants_out = 1;
		want_events(r);
		return;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0) {
			snprintf(why, sizeof why, "TLS handshake: %s",
			    errno ? strerror(errno) : "connection closed");
			break;
		}
		/* FALLTHROUGH */
	default:
		if ((vr = SSL_get_verify_result(r->ssl)) != X509_V_OK)
			snprintf(why, sizeof why,
			    "TLS: certificate refused: %s",
			    X509_verify_cert_error_string(vr));
		else {
			ERR_error_string_n(ERR_peek_error(), buf, sizeof buf);
			snprintf(why, sizeof why, "TLS handshake: %s", buf);
		}
	}
	ERR_clear_error();
	drop(r, why);
}

/* ==== The hello ======================================================= */

/* Queue a command of our own, past the output bound (the hello and the
 * set are bounded by the config and the set itself).  0 or -1. */
static int
internal_cmd(struct redis *r, int argc, const struct resp_arg *argv)
{
	if (resp_cmd(&r->out, SIZE_MAX, argc, argv) != 0)
		return -1;
	r->st.queued_bytes = r->out.len - r->out_off;
	return 0;
}

static int
send_set(struct redis *r)
{
	struct resp_arg argv[1 + SUB_BATCH];

	for (int pat = 0; pat <= 1; pat++) {
		int argc = 1;

		argv[0].p = pat ? "PSUBSCRIBE" : "SUBSCRIBE";
		argv[0].n = strlen(argv[0].p);
		for (size_t i = 0; i < r->ntab; i++)
			for (struct sub *s = r->tab[i]; s != NULL;
			    s = s->next) {
				if (s->pattern != pat)
					continue;
				argv[argc].p = s->name;
				argv[argc++].n = s->len;
				r->confirm++;
				if (argc == 1 + SUB_BATCH) {
					if (internal_cmd(r, argc, argv) != 0)
						return -1;
					argc = 1;
				}
			}
		if (argc > 1 && internal_cmd(r, argc, argv) != 0)
			return -1;
	}
	r->subs_sent = 1;
	return 0;
}

/*
 * Connected (and TLS done): AUTH, SELECT and a PING go first, and a
 * subscriber's set right behind them, all in one write; the replies come
 * in that order, so the in-flight queue holds the three ahead of
 * anything else.  Up once they are answered OK and the set is confirmed:
 * up means Redis answered (the PING), not only that a socket connected,
 * and a server that wants a password the URL lacks is reported here
 * (NOAUTH), not on the first command.
 */
static void
hello(struct redis *r)
{
	struct resp_arg argv[3];
	char db[16];
	int argc = 0;

	r->state = R_HELLO;
	r->last_rx = loop_now_ms();
	if (r->url.pass[0] != '\0') {
		argv[argc++] = (struct resp_arg){ "AUTH", 4 };
		if (r->url.user[0] != '\0')
			argv[argc++] = (struct resp_arg){ r->url.user,
			    strlen(r->url.user) };
		argv[argc++] = (struct resp_arg){ r->url.pass,
		    strlen(r->url.pass) };
		if (q_reserve(r) != 0 || internal_cmd(r, argc, argv) != 0)
			goto nomem;
		q_push(r, P_AUTH, NULL, NULL);
		r->hello++;
	}
	/* SELECT 0 is skipped: it is every connection's database, and a
	 * server in cluster mode refuses SELECT altogether. */
	if (r->url.db != 0) {
		snprintf(db, sizeof db, "%u", r->url.db);
		argv[0] = (struct resp_arg){ "SELECT", 6 };
		argv[1] = (struct resp_arg){ db, strlen(db) };
		if (q_reserve(r) != 0 || internal_cmd(r, 2, argv) != 0)
			goto nomem;
		q_push(r, P_SELECT, NULL, NULL);
		r->hello++;
	}
	argv[0] = (struct resp_arg){ "PING", 4 };
	if (q_reserve(r) != 0 || internal_cmd(r, 1, argv) != 0)
		goto nomem;
	q_push(r, P_HELLO_PING, NULL, NULL);
	r->hello++;
	if (r->cfg.subscriber && send_set(r) != 0)
		goto nomem;
	if (flush(r) == 0)
		want_events(r);
	return;
nomem:
	drop(r, "out of memory");
}

static void
become_up(struct redis *r)
{
	r->state = R_UP;
	r->attempt = 0;
	r->st.up = 1;
	log_msg(LOG_INFO, "redis up addr=%s tls=%s db=%u sub=%s", r->name,
	    r->ssl ? "true" : "false", r->url.db,
	    r->cfg.subscriber ? "true" : "false");
	if (r->cfg.on_state != NULL)
		r->cfg.on_state(r->cfg.arg, 1, NULL);
}

/* ==== Commands ======================================================== */

/* Commands after which replies no longer pair with commands: the
 * subscriber's (RESP2 pub/sub mode), MONITOR, and RESP3's HELLO. */
static int
push_mode(const struct resp_arg *a)
{
	static const char *const refused[] = {
		"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE",
		"PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR", "HELLO", "RESET"
	};

	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
		if (a->n == strlen(refused[i]) &&
		    strncasecmp(a->p, refused[i], a->n) == 0)
			return 1;
	return 0;
}

int
redis_command(struct redis *r, int argc, const struct resp_arg *argv,
    redis_reply_fn *cb, void *arg)
{
	size_t n = resp_cmd_size(argc, argv), queued;

	if (r->cfg.subscriber || (argc > 0 && push_mode(&argv[0])))
		return REDIS_EMODE;
	if (r->freeing || r->state != R_UP)
		return REDIS_EDOWN;
	queued = r->out.len - r->out_off;
	if (r->qlen >= r->cfg.max_inflight || n > r->cfg.max_out ||
	    queued > r->cfg.max_out - n) {
		r->st.full++;
		return REDIS_EFULL;
	}
	/* Written bytes are dropped before the buffer grows. */
	if (r->out_off > 0 && r->out.len + n > r->out.cap) {
		memmove(r->out.p, r->out.p + r->out_off, queued);
		r->out.len = queued;
		r->out_off = 0;
	}
	if (q_reserve(r) != 0 || resp_cmd(&r->out, SIZE_MAX, argc, argv) != 0)
		return REDIS_ENOMEM;
	q_push(r, P_USER, cb, arg);
	r->st.commands++;
	r->st.queued_bytes = r->out.len - r->out_off;
	want_events(r);
	return 0;
}

/* ==== Writing and reading ============================================ */

static void
want_events(struct redis *r)
{
	uint32_t ev = EPOLLIN;

	if (r->src.fd == -1)
		return;
	if (r->state == R_CONNECTING || r->out_off < r->out.len ||
	    r->tls_wants_out)
		ev |= EPOLLOUT;
	if (ev != r->events && loop_mod(&r->src, ev) == 0)
		r->events = ev;
}

/* Write what is queued until the socket is full.  0, or -1: dropped. */
static int
flush(struct redis *r)
{
	char why[128];
	int want = 0;

	while (r->out_off < r->out.len) {
		size_t n = r->out.len - r->out_off;
		ssize_t w = r->ssl != NULL ?
		    tls_write(r->ssl, r->out.p + r->out_off, n, &want) :
		    send(r->src.fd, r->out.p + r->out_off, n, MSG_NOSIGNAL);

		if (w > 0) {
			r->out_off += w;
			continue;
		}
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1 && errno == EAGAIN)
			break;
		snprintf(why, sizeof why, "write: %s",
		    w == 0 ? "connection closed" : strerror(errno));
		drop(r, why);
		return -1;
	}
	if (r->out_off == r->out.len) {
		/* The hello's AUTH carried the password: not left behind. */
		if (r->state == R_HELLO)
			OPENSSL_cleanse(r->out.p, r->out.len);
		r->out.len = r->out_off = 0;
	}
	r->st.queued_bytes = r->out.len - r->out_off;
	return 0;
}

static void
conn_event(struct loop_src *s, uint32_t events)
{
	struct redis *r = (struct redis *)s;
	int err = 0;
	socklen_t len = sizeof err;
	char why[128];

	busy++;
	if (r->src.fd == -1 || r->freeing)
		goto out;	/* closed earlier in this turn */
	switch (r->state) {
	case R_CONNECTING:
		if (getsockopt(r->src.fd, SOL_SOCKET, SO_ERROR, &err,
		    &len) == -1)
			err = errno;
		if (err != 0) {
			snprintf(why, sizeof why, "connect: %s",
			    strerror(err));
			drop(r, why);
		} else
			connected(r);
		break;
	case R_TLS:
		handshake(r);
		break;
	case R_HELLO:
	case R_UP:
		/* Under TLS a record may hide behind either direction. */
		if (r->ssl != NULL ||
		    (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
			do_read(r);
		if (r->src.fd != -1 && !r->freeing && flush(r) == 0)
			want_events(r);
		break;
	}
out:
	leave();
}

static void
do_read(struct redis *r)
{
	char why[128];
	int want = 0;

	for (int reads = 0; ; reads++) {
		ssize_t n;
		long m;
		size_t at = 0;

		if (reads >= READS_PER_EVENT &&
		    (r->ssl == NULL || tls_pending(r->ssl) == 0))
			return;
		if (r->in_cap - r->in_len < READ_MIN) {
			size_t cap = r->in_cap ? r->in_cap * 2 : 2 * READ_MIN;
			uint8_t *p;

			/* The parser refuses a reply over max_bytes before the
			 * buffer holds it, so this bound is never reached by a
			 * well-formed stream. */
			if (cap > r->parser.lim.max_bytes + 2 * READ_MIN) {
				drop(r, "reply over the size limit");
				return;
			}
			if ((p = realloc(r->in, cap)) == NULL) {
				drop(r, "out of memory");
				return;
			}
			r->in = p;
			r->in_cap = cap;
		}
		n = r->ssl != NULL ?
		    tls_read(r->ssl, r->in + r->in_len, r->in_cap - r->in_len,
		    &want) :
		    read(r->src.fd, r->in + r->in_len, r->in_cap - r->in_len);
		if (n == 0) {
			drop(r, "connection closed by the server");
			return;
		}
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				r->tls_wants_out = r->ssl != NULL &&
				    want == TLS_WANT_WRITE;
				return;
			}
			snprintf(why, sizeof why, "read: %s", strerror(errno));
			drop(r, why);
			return;
		}
		r->in_len += n;
		r->last_rx = loop_now_ms();
		/* Hand out every whole reply; a callback may drop or free. */
		while ((m = resp_parse(&r->parser, r->in + at,
		    r->in_len - at)) > 0) {
			dispatch(r, r->parser.tok);
			if (r->src.fd == -1 || r->freeing)
				return;
			at += m;
		}
		if (m == RESP_ERROR) {
			snprintf(why, sizeof why, "protocol error: %s",
			    resp_strerror(r->parser.err));
			drop(r, why);
			return;
		}
		/* The partial reply moves to the front; the parser counts
		 * from its first byte, so it resumes where it was. */
		memmove(r->in, r->in + at, r->in_len - at);
		r->in_len -= at;
		if (r->in_len == 0 && r->in_cap > IN_KEEP) {
			free(r->in);
			r->in = NULL;
			r->in_cap = 0;
		}
	}
}

/* Copy a Redis error's text for a reason, printable and unquoted. */
static void
snip(char *out, size_t cap, const char *what, const struct resp_tok *t)
{
	size_t n = snprintf(out, cap, "%s: ", what), k;

	for (k = 0; k < (size_t)t->n && k < 100 && n + 1 < cap; k++) {
		uint8_t c = t->p[k];

		out[n++] = c < ' ' || c > '~' || c == '"' || c == '\\' ? '?' :
		    c;
	}
	out[n < cap ? n : cap - 1] = '\0';
}

/* One whole reply: the head of the queue's, or a subscriber's push. */
static void
dispatch(struct redis *r, const struct resp_tok *t)
{
	char why[160];
	struct pending e;

	if (r->qlen == 0) {
		if (r->cfg.subscriber)
			sub_reply(r, t);
		else
			drop(r, "reply without a command");
		return;
	}
	e = q_pop(r);
	switch (e.kind) {
	case P_USER:
		r->st.replies++;
		if (t->type == RESP_T_ERROR)
			r->st.errors++;
		if (e.cb != NULL)
			e.cb(e.arg, t, NULL);
		return;
	case P_AUTH:
	case P_SELECT:
	case P_HELLO_PING:
		if (t->type == RESP_T_ERROR) {
			snip(why, sizeof why, e.kind == P_AUTH ?
			    "AUTH refused" : e.kind == P_SELECT ?
			    "SELECT refused" : "PING refused", t);
			drop(r, why);
			return;
		}
		if (--r->hello == 0 && r->confirm == 0)
			become_up(r);
		return;
	case P_PING:
		return;
	}
}

/*
 * A subscriber's connection carries pushes: arrays whose first element
 * names them (RESP2 pub/sub):
 *
 *	message, CHANNEL, DATA		pmessage, PATTERN, CHANNEL, DATA
 *	subscribe, NAME, COUNT		psubscribe, NAME, COUNT
 *	unsubscribe, punsubscribe	pong, ""  (+PONG when in no channel)
 */
static void
sub_reply(struct redis *r, const struct resp_tok *t)
{
	const struct resp_tok *k = resp_elem(t, 0);
	struct redis_msg m = { 0 };
	char why[160];

	if (t->type == RESP_T_ERROR) {
		snip(why, sizeof why, "SUBSCRIBE refused", t);
		r->st.errors++;
		if (r->state != R_UP) {
			drop(r, why);
			return;
		}
		log_msg(LOG_WARN, "redis error addr=%s reason=\"%s\"", r->name,
		    why);
		return;
	}
	if (resp_is(t, "PONG") || resp_is(k, "pong")) {
		r->ping_at = 0;
		return;
	}
	if ((resp_is(k, "subscribe") || resp_is(k, "psubscribe")) &&
	    t->n == 3) {
		const struct resp_tok *c = resp_elem(t, 1);

		if (r->cfg.on_subscribed != NULL && resp_is(k, "subscribe") &&
		    c->type == RESP_T_BULK && !c->null)
			r->cfg.on_subscribed(r->cfg.arg, c->p, c->n);
		if (r->confirm > 0 && --r->confirm == 0 && r->hello == 0)
			become_up(r);
		return;
	}
	if ((resp_is(k, "unsubscribe") || resp_is(k, "punsubscribe")) &&
	    t->n == 3)
		return;
	if (resp_is(k, "message") && t->n == 3) {
		const struct resp_tok *c = resp_elem(t, 1);
		const struct resp_tok *d = resp_elem(t, 2);

		if (c->type == RESP_T_BULK && !c->null &&
		    d->type == RESP_T_BULK && !d->null) {
			m.channel = c->p;
			m.channel_len = c->n;
			m.data = d->p;
			m.len = d->n;
		}
	} else if (resp_is(k, "pmessage") && t->n == 4) {
		const struct resp_tok *p = resp_elem(t, 1);
		const struct resp_tok *c = resp_elem(t, 2);
		const struct resp_tok *d = resp_elem(t, 3);

		if (p->type == RESP_T_BULK && !p->null &&
		    c->type == RESP_T_BULK && !c->null &&
		    d->type == RESP_T_BULK && !d->null) {
			m.pattern = p->p;
			m.pattern_len = p->n;
			m.channel = c->p;
			m.channel_len = c->n;
			m.data = d->p;
			m.len = d->n;
		}
	}
	if (m.channel == NULL) {
		drop(r, "unexpected reply on a subscriber");
		return;
	}
	r->st.messages++;
	if (r->cfg.on_message != NULL)
		r->cfg.on_message(r->cfg.arg, &m);
}

/* ==== The subscriber's set ============================================ */

/* FNV-1a, the pattern flag mixed in. */
static uint32_t
sub_hash(int pattern, const void *p, size_t n)
{
	const uint8_t *s = p;
	uint32_t h = 2166136261u ^ (uint32_t)pattern;

	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 16777619u;
	return h;
}

static struct sub **
sub_find(struct redis *r, int pattern, const void *p, size_t n, uint32_t h)
{
	struct sub **pp;

	if (r->ntab == 0)
		return NULL;
	for (pp = &r->tab[h & (r->ntab - 1)]; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->hash == h && (*pp)->pattern == pattern &&
		    (*pp)->len == n && memcmp((*pp)->name, p, n) == 0)
			return pp;
	return NULL;
}

/* Room for one more: the table doubles at a load of 1. */
static int
sub_grow(struct redis *r)
{
	size_t n = r->ntab ? r->ntab * 2 : 16;
	struct sub **t;

	if (r->st.subscriptions < r->ntab)
		return 0;
	if ((t = calloc(n, sizeof *t)) == NULL)
		return -1;
	for (size_t i = 0; i < r->ntab; i++)
		while (r->tab[i] != NULL) {
			struct sub *s = r->tab[i];

			r->tab[i] = s->next;
			s->next = t[s->hash & (n - 1)];
			t[s->hash & (n - 1)] = s;
		}
	free(r->tab);
	r->tab = t;
	r->ntab = n;
	return 0;
}

static int
sub_change(struct redis *r, int pattern, int add, const void *p, size_t n)
{
	static const char *const verb[2][2] = {
		{ "UNSUBSCRIBE", "SUBSCRIBE" },
		{ "PUNSUBSCRIBE", "PSUBSCRIBE" }
	};
	uint32_t h = sub_hash(pattern, p, n);
	struct sub **pp = sub_find(r, pattern, p, n, h), *s = NULL;
	struct resp_arg argv[2];
	int rc;

	if (!r->cfg.subscriber)
		return REDIS_EMODE;
	if (r->freeing)
		return REDIS_EDOWN;
	if ((pp != NULL) == add)
		return 0;		/* already so */
	if (add && (sub_grow(r) != 0 ||
	    (s = malloc(sizeof *s + n)) == NULL))
		return REDIS_ENOMEM;
	/* Sent now if the set already went out on this connection; else
	 * the hello sends the whole set. */
	if (r->subs_sent) {
		argv[0].p = verb[pattern][add];
		argv[0].n = strlen(argv[0].p);
		argv[1].p = p;
		argv[1].n = n;
		rc = resp_cmd(&r->out, r->out_off + r->cfg.max_out, 2, argv);
		if (rc != 0) {
			free(s);
			if (rc == RESP_EFULL)
				r->st.full++;
			return rc == RESP_EFULL ? REDIS_EFULL : REDIS_ENOMEM;
		}
		r->st.commands++;
		r->st.queued_bytes = r->out.len - r->out_off;
		want_events(r);
	}
	if (add) {
		s->hash = h;
		s->pattern = pattern;
		s->len = n;
		if (n > 0)
			memcpy(s->name, p, n);
		s->next = r->tab[h & (r->ntab - 1)];
		r->tab[h & (r->ntab - 1)] = s;
		r->st.subscriptions++;
	} else {
		s = *pp;
		*pp = s->next;
		free(s);
		r->st.subscriptions--;
	}
	return 0;
}

int
redis_subscribe(struct redis *r, const void *ch, size_t len)
{
	return sub_change(r, 0, 1, ch, len);
}

int
redis_unsubscribe(struct redis *r, const void *ch, size_t len)
{
	return sub_change(r, 0, 0, ch, len);
}

int
redis_psubscribe(struct redis *r, const void *pat, size_t len)
{
	return sub_change(r, 1, 1, pat, len);
}

int
redis_punsubscribe(struct redis *r, const void *pat, size_t len)
{
	return sub_change(r, 1, 0, pat, len);
}

/* ==== The tick ======================================================== */

/*
 * Every REDIS_TICK_MS for all clients: reclaim clients freed from a
 * callback in an earlier turn, start due attempts, and drop connections
 * past a timeout: the attempt (connect, TLS, hello) and the oldest
 * command in flight each get timeout_ms.  An idle connection is pinged
 * every ping_ms, so a silent loss is found even with nothing to send.
 */
static void
tick(void *arg)
{
	static const struct resp_arg ping[1] = { { "PING", 4 } };
	uint64_t now = loop_now_ms();

	(void)arg;
	busy++;
	for (struct redis **pp = &clients; *pp != NULL; )
		if ((*pp)->zombie_at != 0 && now > (*pp)->zombie_at) {
			struct redis *z = *pp;

			*pp = z->next;
			destroy(z);
		} else
			pp = &(*pp)->next;
	for (struct redis *r = clients; r != NULL; r = r->next) {
		if (r->freeing)
			continue;
		switch (r->state) {
		case R_IDLE:
			if (now >= r->retry_at)
				start_connect(r);
			break;
		case R_CONNECTING:
		case R_TLS:
		case R_HELLO:
			if (now - r->since >= r->cfg.timeout_ms)
				drop(r, r->state == R_CONNECTING ?
				    "connect timeout" : r->state == R_TLS ?
				    "TLS handshake timeout" :
				    "handshake timeout");
			break;
		case R_UP:
			if ((r->qlen > 0 &&
			    now - r->q[r->qhead].t >= r->cfg.timeout_ms) ||
			    (r->ping_at != 0 &&
			    now - r->ping_at >= r->cfg.timeout_ms)) {
				drop(r, "reply timeout");
				break;
			}
			if (r->qlen > 0 || r->ping_at != 0 ||
			    now - r->last_rx < r->cfg.ping_ms)
				break;
			if (r->cfg.subscriber) {
				if (internal_cmd(r, 1, ping) != 0)
					break;
				r->ping_at = now;
			} else {
				if (q_reserve(r) != 0 ||
				    internal_cmd(r, 1, ping) != 0)
					break;
				q_push(r, P_PING, NULL, NULL);
			}
			r->last_rx = now;	/* once per ping_ms */
			want_events(r);
			break;
		}
	}
	leave();
}

/* ==== Queries ========================================================= */

int
redis_up(const struct redis *r)
{
	return r->state == R_UP && !r->freeing;
}

void
redis_stats(const struct redis *r, struct redis_stats *out)
{
	*out = r->st;
	out->up = redis_up(r);
}
