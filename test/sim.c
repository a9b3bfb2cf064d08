/*
 * sim.c - the whole of wsd on a simulated kernel, driven by random
 * clients drawn from a seed, with invariants checked after every turn.
 *
 * The daemon is the real one (ws.c, hub.c, http.c, session_events.c,
 * json.c, auth.c, tls.c, log.c and the dashboard) linked against
 * test/simkern.c instead of the kernel (see sim.h).  main() does what
 * wsd's main.c does, ws_init(), hub_init(), ws_listen(), ws_run(), with
 * limits drawn from the seed.  Every epoll_wait() is one step: time moves
 * on and a crowd of clients acts: subscribers, publishers over HTTP and
 * WebSocket, session connections, echo and monitor clients, event-stream
 * readers (GET /sse, see "Event-stream readers"), browsers' CORS calls,
 * and clients that reset, half-close, never read or break the protocol.
 * Clients mask their frames and decode what the server sends with
 * decoders of their own; nothing they check comes from the code under
 * test.  The run has three phases: traffic, then quiet (no new requests,
 * every client reads) and a check that everything arrived, then SIGTERM
 * and the drain.
 *
 * Invariants (after every step unless said otherwise):
 *  - a client gets the events of each of its groups in seq order, no
 *    duplicate, no gap but an explicit one (error history_gap, or close
 *    1013 after which it resumes with since); only for groups it is in;
 *    every receiver, and the HTTP history, sees the same bytes for one
 *    seq; no two publishes are given the same seq; the same for an event
 *    stream, across its reconnects, with ids that name its position;
 *  - CORS answers, preflights and the refusals of /sse are as the README
 *    says, status and headers;
 *  - a well-behaved client that is owed output (the reply to a request
 *    the server has read, or an event it knows exists) is written to
 *    within STALL steps while it reads;
 *  - after the quiet phase, every well-behaved client has every reply
 *    and every event of its groups;
 *  - a connection its client closed or reset is closed by the server
 *    within FREE_STEPS steps (and so freed: its subscriptions and session
 *    go, which the next check sees);
 *  - ws_stats.connections is the kernel's count of open connections;
 *    ws_stats.websockets and .streams, each group's subscribers,
 *    sess_count() and the /health answers lie within what the clients
 *    know;
 *  - hub_history_total() stays within --history-total, hub_group_count()
 *    within --max-groups;
 *  - no fd is reported ready SPIN steps in a row without being served;
 *  - after SIGTERM every reader gets close 1001 (or its stream's end)
 *    behind all its events, ws_run() returns 0 and nothing is left open;
 *    LeakSanitizer finds any memory left behind.
 *
 * Also checked, for two defects this simulation found (both fixed): a hot
 * shutdown (SIGTERM amid traffic), where an event answered in the
 * SIGTERM's turn must still precede close 1001, and the session diff's
 * counts adding up across a tick forced early by a full journal.  And
 * for one open defect: an event stream resumed in several groups sends
 * the first group's replay with ids that name the later groups where they
 * are live, before their own replay (see sse_id_check()).  --lenient
 * leaves those three checks out.
 *
 * A failure prints what broke, the last log lines and a one-line repro,
 * and exits 1.  With --seeds N the seeds run in child processes and the
 * last line is "N passed, M failed".
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "hub.h"
#include "session_events.h"
#include "sim.h"
#include "ws.h"

extern const unsigned char dashboard_html[];
extern const size_t dashboard_html_len;

#define STEPS		2000	/* steps of traffic, by default */
#define QUIET		300	/* steps of reading only, then the checks */
#define DRAIN_STEPS	3000	/* SIGTERM to ws_run() returning, at most */
#define STALL		100	/* steps owed output may go unwritten */
#define FREE_STEPS	50	/* steps to close after the client did */
#define SPIN		200	/* steps an fd may be ready and unserved */
#define MAXREC		12	/* groups one client tracks */
#define NHID		6	/* session ids h0.. made over HTTP */
#define NCID		5	/* session ids c0.. made by connections */
#define MAXPEND		3	/* requests a good HTTP client pipelines */

/* ==== Model of groups and sessions ===================================== */

/*
 * The groups clients use.  Each of the first NKEPT always has two keepers
 * subscribed, so it is never evicted and its seq never starts over (which
 * the server may do to a group nobody is in); the scratch groups after
 * them are where eviction happens, and only their order is checked.
 */
static const char *const gname[] = {
	"g0", "g1", "g2", "g3", "g4", "monitor", "*",
	"session:c0", "session:c1", "session:c2", "session:c3", "session:c4",
	"x0", "x1", "x2", "x3"
};
enum { G_BUSY = 0, G_PLAIN = 5, G_MONITOR = 5, G_STAR = 6, G_SESS = 7,
	G_SCRATCH = 12, NKEPT = 12, NGROUP = 16 };

/* What the clients together know of a group's events. */
struct mgroup {
	uint64_t  maxseq;	/* highest seq anyone saw or was given */
	uint32_t *fp;		/* hash of each event's bytes, 0: unseen */
	uint32_t *nfp;		/* the same with line breaks as LF (SSE) */
	uint8_t	 *claimed;	/* a publish answer named this seq */
	uint64_t *turn;		/* loop turn its publish was read in, 0 */
	uint64_t  cap;
};

/* A session made over HTTP, by id h0.. or by the server (random id). */
struct msess {
	char	 id[24];
	uint8_t	 alive;
	uint8_t	 busy;		/* a request on it is in flight */
};

/* ==== Clients ============================================================ */

enum kind { K_SUB, K_PUB, K_MON, K_ECHO, K_CHURN, K_SLOW, K_MUTE, K_HALF,
	K_BAD, K_SSE, NKIND };
static const char *const kname[] = { "sub", "pub", "mon", "echo", "churn",
	"slow", "mute", "half", "bad", "sse" };

enum phase {
	P_HTTP,		/* requests and responses */
	P_WS,		/* WebSocket open */
	P_SSE,		/* event stream open: records */
	P_CLOSING,	/* a close frame went one way or both: wait for EOF */
	P_DONE		/* the client closed its socket */
};

/* Membership as the client knows it. */
enum { M_NO, M_JOINING, M_YES, M_LEAVING };

/* What a client expects next, in the order it sent the requests. */
enum xkind {
	X_UPGRADE, X_H_PUBLISH, X_H_HEALTH, X_H_DASH, X_H_GROUPS, X_H_EVENTS,
	X_H_SPOST, X_H_SRAND, X_H_SDEL, X_H_CDEL, X_H_COUNT, X_H_METRICS,
	X_SSE,		/* GET /sse: the head of an event stream */
	X_H_CHECK,	/* CORS, preflight, refusals: status and headers */
	X_H_STATUS,	/* a bad request: one HTTP status */
	X_PONG, X_HBACK, X_STATUS, X_SUB, X_UNSUB, X_PUB, X_HIST, X_ECHO,
	X_ERR		/* a bad message: error with this code */
};

struct exp {
	uint8_t	 kind;		/* enum xkind */
	uint8_t	 g;		/* group, session or status index */
	uint8_t	 flag;		/* X_SUB: since given; X_ECHO: opcode */
	uint64_t end;		/* stream offset just after the request */
	uint64_t turn;		/* loop turn the server read it in, 0: not yet */
	uint64_t id;		/* message id, 0 for none */
	uint64_t a, b;		/* since and limit; an HTTP status */
	uint8_t	*data;		/* X_ECHO: the message; owned */
	size_t	 dlen;
};

/* One group as one client sees it. */
struct rec {
	uint8_t	 g;
	uint8_t	 mem;		/* M_* */
	uint8_t	 live;		/* deliveries are checked */
	uint64_t next;		/* next seq due, 0: not known yet */
	uint64_t since;		/* resume: the since to ask for */
	char	 epoch[12];	/* SSE: the epoch next is in */
	uint8_t	 rpos;		/* SSE: resumes from epoch:next - 1 */
	uint8_t	 moved;		/* SSE: an event or gap of it on this stream */
};

struct buf {
	uint8_t	*p;
	size_t	 len, cap;
};

struct client {
	int	 h;		/* kernel handle, -1 when none */
	int	 id;
	uint8_t	 kind, phase, good;
	uint8_t	 upg;		/* 0 none, 1 asked, 2 upgraded, 3 refused */
	uint8_t	 sent_close, got_close, eof, conn_close;
	uint8_t	 bad_done;	/* K_BAD: its outcome arrived */
	uint8_t	 drain_open;	/* a WebSocket open at SIGTERM */
	uint8_t	 route_ack;	/* "subscribed" for the route came */
	uint8_t	 keeper;	/* stays in its groups to the end */
	int	 route;		/* group of the route, -1: none */
	int	 sess;		/* c-session id of the route, -1: none */
	unsigned close_code;	/* of the close frame that arrived */
	unsigned want_close;	/* K_BAD: the close code due, 0: none */
	struct buf out, in;
	uint64_t produced;	/* stream offset of the end of out */
	struct exp *q;		/* ring of expectations */
	unsigned qh, qn, qcap;
	uint64_t ping_end;	/* a control ping in flight ends here, 0 */
	char	 ping_pl[16];
	struct rec rec[MAXREC];
	unsigned nrec;
	uint64_t star_next;	/* next "*" seq due, 0: not known */
	long long mon_cur;	/* monitor: last current_count, -1 */
	uint64_t nextid;
	unsigned stall;
	uint64_t last_wr;	/* the server's bytes written, last seen */
	uint64_t last_tx;	/* ms: bytes last sent */
	uint64_t closed_step;	/* step the client closed or reset, 0 */
	int	 life;		/* steps until it leaves, < 0: never */
	unsigned read_every;	/* reads one step in this many */
	unsigned resumes;
	uint64_t pub_n;
	uint8_t	 star_pub;	/* K_PUB: broadcasts to "*" now and then */
	struct sse *sse;	/* K_SSE: the reader's state; owned */
};

#define MAXSG		4	/* groups one event stream asks for */
#define IDMAX		512	/* bytes of an SSE id a reader keeps */
#define SSE_GENS	6	/* times one reader comes back */

/*
 * An event-stream reader (K_SSE, see "Event-stream readers"): the groups
 * of its stream, where it is in the stream, and the WHATWG parser's
 * buffers.  Its groups' positions are in the client's rec[].
 */
struct sse {
	uint8_t	 g[MAXSG];	/* the groups asked for, in order, once each */
	unsigned ng;
	uint8_t	 st;		/* 0 none, 1 asked, 2 streaming, 3 refused */
	uint8_t	 slow;		/* reads now and then while traffic lasts */
	uint8_t	 retry;		/* the retry record came */
	uint8_t	 mark;		/* a mark (id-only record) came */
	uint8_t	 next_done;	/* a successor took over */
	uint8_t	 untrusted;	/* --lenient: this record's id is ignored */
	unsigned nsub;		/* subscribed records on this stream */
	unsigned gen;		/* streams this reader had before this one */
	uint64_t turn;		/* loop turn the server read the request in */
	uint64_t conn;		/* the server's conn id (from its log), 0 */
	char	 why[40];	/* the reason the server logged for ending it */
	uint64_t why_step;	/* the turn it logged it in */
	uint64_t last_rx;	/* ms: bytes last arrived */
	/* The WHATWG parser: the line being read, and the record's fields. */
	uint8_t	 started;	/* past a leading BOM */
	uint8_t	 cr;		/* the last line ended in CR: an LF next is
				 * part of that line break */
	uint8_t	 has_id, has_data, has_retry, comment;
	unsigned nfields;	/* lines in the record so far */
	unsigned retry_ms;
	struct buf line, data;	/* data: the data buffer (lines + LF) */
	char	 idbuf[IDMAX];	/* the last event ID buffer */
	size_t	 idlen;
	char	 lastid[IDMAX];	/* the last event ID string: Last-Event-ID */
	size_t	 lastlen;
	char	 asked[IDMAX];	/* the last id this stream was asked from */
	size_t	 askedlen;
};

/* ==== State ============================================================== */

static uint64_t		 seed = 1;
static uint64_t		 nsteps = STEPS;
static int		 verbose;
static int		 strict = 1;	/* the checks --lenient drops */
static uint64_t		 rs;
static struct ws_config	 wcfg;
static struct hub_config hcfg;
static struct sim_faults kfaults;
static unsigned		 maxdt;		/* ms a step may move time */
static unsigned		 crowd;		/* clients to keep around */
static struct mgroup	 groups[NGROUP];
static struct msess	 hsess[NHID];
static struct msess	*rsess;		/* sessions with random ids */
static unsigned		 nrsess, rsesscap, rpost;
static uint8_t		 ctaint[NCID];	/* a DELETE may have ended it */
static uint64_t		 clast[NCID];	/* ms: its last connection left */
static struct client	**cl;
static int		 ncl, clcap;
static int		 nlive;
static enum { S_RUN, S_QUIET, S_AUDIT, S_HOT, S_DRAIN } stage;
static uint64_t		 stage_step;
static uint64_t		 sigterm_turn;	/* the turn SIGTERM arrived in */
static struct client	*auditor;
static int		 auditor_done;
static const char	*cors_origin;	/* --allow-origin, NULL: none */
static struct client	**byhandle;	/* client of each kernel handle */
static int		 nbyhandle;
static struct client	**byconn;	/* SSE reader of a logged conn id */
static size_t		 nbyconn;
static uint64_t		 shutdown_step;	/* the turn wsd logged "shutting
					 * down" in, 0 */

/* What a run went through, for -v: a check that checks nothing is no use. */
static struct {
	unsigned long events, replies, responses, gaps, closes[16], resumes,
	    resets, halves, frags, pongs, echoes, bad, over, keepers_lost;
	unsigned long sse_streams, sse_events, sse_star, sse_marks, sse_beats,
	    sse_gaps, sse_cuts, sse_slow, sse_ends, sse_refused, cors,
	    sse_early;
} stats;

static void	fail(struct client *, const char *, ...)
		    __attribute__((format(printf, 2, 3), noreturn));
static struct client *client_new(int, int, int);
static void	client_gone(struct client *);
static void	start_close(struct client *, unsigned);
static void	resume(struct client *);
static struct rec *rec_find(struct client *, int);
static struct rec *rec_add(struct client *, int);
static void	client_reset(struct client *);
struct resp;
static void	sse_head(struct client *, const struct exp *,
		    const struct resp *);
static void	sse_parse(struct client *);
static void	sse_ended(struct client *);
static void	sse_successor(struct client *);
static void	sse_spawn(void);
static void	sse_complete(struct client *);
static void	act_sse(struct client *);
static void	sse_after_sigterm(struct client *);
static void	on_log(const char *, size_t);

/* ==== Small helpers ====================================================== */

static uint64_t
rnd(void)
{
	uint64_t z = (rs += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned
rn(unsigned n)
{
	return n ? rnd() % n : 0;
}

/* A chance in a thousand. */
static int
chance(unsigned per_mille)
{
	return rn(1000) < per_mille;
}

static uint32_t
fnv(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h ? h : 1;
}

/* The hash an event-stream reader can check: each line break (CR LF, CR
 * or LF) taken as LF, as it joins data lines. */
static uint32_t
fnv_lf(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++) {
		uint8_t b = p[i];

		if (b == '\r') {
			b = '\n';
			if (i + 1 < n && p[i + 1] == '\n')
				i++;
		}
		h = (h ^ b) * 16777619u;
	}
	return h ? h : 1;
}

static void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n)) == NULL) {
		fprintf(stderr, "sim: out of memory\n");
		_exit(2);
	}
	return p;
}

static void
buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t ncap = b->cap ? b->cap : 256;

		while (ncap < b->len + n)
			ncap *= 2;
		b->p = xrealloc(b->p, ncap);
		b->cap = ncap;
	}
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void
buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	buf_put(b, tmp, n < (int)sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void
buf_drop(struct buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

static void
buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

static void
fail(struct client *c, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "sim: seed %llu step %llu: ", (unsigned long long)seed,
	    (unsigned long long)sim_step());
	if (c != NULL)
		fprintf(stderr, "client %d (%s%s): ", c->id, kname[c->kind],
		    c->good ? "" : ", unchecked");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	if (c != NULL && c->sse != NULL) {
		fprintf(stderr, "  the reader's stream %u of groups",
		    c->sse->gen);
		for (unsigned i = 0; i < c->sse->ng; i++)
			fprintf(stderr, "%s%s", i ? "," : " ",
			    gname[c->sse->g[i]]);
		fprintf(stderr, ", asked from \"%.*s\"%s\n",
		    (int)c->sse->askedlen, c->sse->asked,
		    c->sse->slow ? ", a slow reader" : "");
		if (c->h >= 0) {
			const struct sim_sock *k = sim_sock(c->h);

			fprintf(stderr, "  its connection: server conn %llu, "
			    "phase %d, reads every %u steps, %llu bytes "
			    "written, %zu unread (window %zu), server %s\n",
			    (unsigned long long)c->sse->conn, c->phase,
			    c->read_every,
			    (unsigned long long)k->wr, k->s2c_len, k->win,
			    k->srv_closed ? "closed" : k->srv_shut ?
			    "shut" : "open");
			fprintf(stderr, "  last server write at step %llu, "
			    "closed at step %llu\n",
			    (unsigned long long)k->wr_step,
			    (unsigned long long)k->close_step);
		}
	}
	sim_dump_log(24);
	fprintf(stderr, "repro: build/sim/sim --seed %llu --steps %llu%s "
	    "(make sim SEED=%llu%s)\n", (unsigned long long)seed,
	    (unsigned long long)nsteps, strict ? "" : " --lenient",
	    (unsigned long long)seed, strict ? "" : " SIMFLAGS=--lenient");
	/* No leak report for a run cut short. */
	_exit(1);
}

/* ==== What the server sends: JSON, HTTP responses, frames ================ */

/*
 * A strict JSON reader for the server's own messages (RFC 8259): jval()
 * returns the end of the value at p, or NULL.  Written here so that the
 * checks do not lean on json.c.
 */
struct jv {
	const char *p;
	size_t	    n;
};

static const char *jval(const char *, const char *, int);

static const char *
jws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static const char *
jstr(const char *p, const char *e)
{
	if (p >= e || *p != '"')
		return NULL;
	for (p++; p < e; p++) {
		if (*p == '"')
			return p + 1;
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p != '\\')
			continue;
		if (++p >= e)
			return NULL;
		if (*p == 'u') {
			for (int i = 0; i < 4; i++)
				if (++p >= e || strchr("0123456789abcdefABCDEF",
				    *p) == NULL || *p == '\0')
					return NULL;
		} else if (strchr("\"\\/bfnrt", *p) == NULL || *p == '\0')
			return NULL;
	}
	return NULL;
}

static const char *
jdigits(const char *p, const char *e)
{
	const char *s = p;

	while (p < e && *p >= '0' && *p <= '9')
		p++;
	return p > s ? p : NULL;
}

static const char *
jnumber(const char *p, const char *e)
{
	if (p < e && *p == '-')
		p++;
	if (p < e && *p == '0')
		p++;
	else if ((p = jdigits(p, e)) == NULL)
		return NULL;
	if (p < e && *p == '.' && (p = jdigits(p + 1, e)) == NULL)
		return NULL;
	if (p < e && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			p++;
		if ((p = jdigits(p, e)) == NULL)
			return NULL;
	}
	return p;
}

static const char *
jlit(const char *p, const char *e, const char *lit)
{
	size_t n = strlen(lit);

	return (size_t)(e - p) >= n && memcmp(p, lit, n) == 0 ? p + n : NULL;
}

static const char *
jval(const char *p, const char *e, int depth)
{
	char close;

	p = jws(p, e);
	if (p >= e || depth > 200)
		return NULL;
	switch (*p) {
	case '"':
		return jstr(p, e);
	case 't':
		return jlit(p, e, "true");
	case 'f':
		return jlit(p, e, "false");
	case 'n':
		return jlit(p, e, "null");
	case '{':
	case '[':
		close = *p == '{' ? '}' : ']';
		p = jws(p + 1, e);
		if (p < e && *p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				if ((p = jstr(jws(p, e), e)) == NULL)
					return NULL;
				p = jws(p, e);
				if (p >= e || *p++ != ':')
					return NULL;
			}
			if ((p = jval(p, e, depth + 1)) == NULL)
				return NULL;
			p = jws(p, e);
			if (p >= e)
				return NULL;
			if (*p == close)
				return p + 1;
			if (*p++ != ',')
				return NULL;
		}
	default:
		return jnumber(p, e);
	}
}

/* 1 if p[0..n) is exactly one JSON object. */
static int
jobject(const char *p, size_t n)
{
	const char *e = p + n, *end;

	p = jws(p, e);
	if (p >= e || *p != '{' || (end = jval(p, e, 0)) == NULL)
		return 0;
	return jws(end, e) == e;
}

/* Member key of the object at p (already checked whole): 1 or 0. */
static int
jget(const char *p, size_t n, const char *key, struct jv *v)
{
	const char *e = p + n, *k, *ke;
	size_t kl = strlen(key);

	p = jws(p, e) + 1;
	for (;;) {
		p = jws(p, e);
		if (p >= e || *p == '}')
			return 0;
		k = p;
		ke = jstr(p, e);
		p = jws(ke, e) + 1;
		p = jws(p, e);
		v->p = p;
		p = jval(p, e, 0);
		v->n = p - v->p;
		if ((size_t)(ke - k) == kl + 2 && memcmp(k + 1, key, kl) == 0)
			return 1;
		p = jws(p, e);
		if (*p == ',')
			p++;
	}
}

static int
jis(struct jv v, const char *s)
{
	size_t n = strlen(s);

	return v.n == n + 2 && v.p[0] == '"' && memcmp(v.p + 1, s, n) == 0;
}

/* A non-negative integer member: 1 with *out, or 0. */
static int
jnum(const char *p, size_t n, const char *key, uint64_t *out)
{
	struct jv v;

	if (!jget(p, n, key, &v) || v.n == 0 || v.n > 19)
		return 0;
	*out = 0;
	for (size_t i = 0; i < v.n; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return 0;
		*out = *out * 10 + (v.p[i] - '0');
	}
	return 1;
}

/* The member as an unescaped string into out: its length, or -1. */
static long
jtext(const char *p, size_t n, const char *key, char *out, size_t cap)
{
	struct jv v;

	if (!jget(p, n, key, &v) || v.n < 2 || v.p[0] != '"' ||
	    v.n - 2 >= cap || memchr(v.p, '\\', v.n) != NULL)
		return -1;
	memcpy(out, v.p + 1, v.n - 2);
	out[v.n - 2] = '\0';
	return v.n - 2;
}

/* RFC 3629, for the server's text frames. */
static int
utf8_ok(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n; ) {
		unsigned b = s[i], need, cp, min;

		if (b < 0x80) {
			i++;
			continue;
		}
		if (b >= 0xc2 && b <= 0xdf)
			need = 1, cp = b & 0x1f, min = 0x80;
		else if (b >= 0xe0 && b <= 0xef)
			need = 2, cp = b & 0x0f, min = 0x800;
		else if (b >= 0xf0 && b <= 0xf4)
			need = 3, cp = b & 0x07, min = 0x10000;
		else
			return 0;
		if (n - i <= need)
			return 0;
		for (unsigned k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

struct resp {
	int	 status;
	size_t	 len;		/* head and body */
	size_t	 hlen;
	size_t	 blen;
	int	 close;		/* Connection: close */
	int	 has_len;	/* Content-Length given */
	int	 stream;	/* a 200 text/event-stream without length */
	int	 acac;		/* Access-Control-Allow-Credentials given */
	char	 accept[40];
	char	 ctype[64];
	/* CORS, Allow and the event stream's own headers, "" if absent. */
	char	 acao[96], acam[64], acah[96], acma[16], vary[64], allow[64];
	char	 cache[64], xaccel[16];
};

/* Headers kept in struct resp, by their lower-case name. */
static const struct {
	const char *name;
	size_t	    off, cap;
} rhdr[] = {
#define RH(n, f)	{ n, offsetof(struct resp, f), \
			  sizeof(((struct resp *)0)->f) }
	RH("sec-websocket-accept", accept),
	RH("content-type", ctype),
	RH("access-control-allow-origin", acao),
	RH("access-control-allow-methods", acam),
	RH("access-control-allow-headers", acah),
	RH("access-control-max-age", acma),
	RH("vary", vary),
	RH("allow", allow),
	RH("cache-control", cache),
	RH("x-accel-buffering", xaccel),
#undef RH
};

static int
hdr_is(const char *line, size_t n, const char *name)
{
	size_t k = strlen(name);

	return n > k && strncasecmp(line, name, k) == 0 && line[k] == ':';
}

static void
hdr_val(const char *line, size_t n, size_t k, char *out, size_t cap)
{
	size_t s = k + 1, e = n;

	while (s < e && line[s] == ' ')
		s++;
	while (e > s && line[e - 1] == ' ')
		e--;
	if (e - s >= cap)
		e = s + cap - 1;
	memcpy(out, line + s, e - s);
	out[e - s] = '\0';
}

/* One HTTP/1.1 response: 1 with *r, 0 if incomplete, -1 if malformed. */
static int
http_resp(const uint8_t *buf, size_t n, struct resp *r)
{
	const char *p = (const char *)buf, *end = NULL, *line, *eol;
	int have_len = 0;

	memset(r, 0, sizeof *r);
	for (size_t i = 3; i < n; i++)
		if (memcmp(p + i - 3, "\r\n\r\n", 4) == 0) {
			end = p + i + 1;
			break;
		}
	if (end == NULL)
		return n > 16384 ? -1 : 0;
	if (end - p < 17 || memcmp(p, "HTTP/1.1 ", 9) != 0 ||
	    p[9] < '1' || p[9] > '5' || p[12] != ' ')
		return -1;
	r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	r->hlen = end - p;
	line = memchr(p, '\n', end - p) + 1;
	for (; line < end - 2; line = eol + 2) {
		size_t ln;
		char v[64];

		eol = memchr(line, '\r', end - line);
		if (eol == NULL || eol[1] != '\n')
			return -1;
		ln = eol - line;
		if (memchr(line, ':', ln) == NULL)
			return -1;
		if (hdr_is(line, ln, "content-length")) {
			hdr_val(line, ln, 14, v, sizeof v);
			r->blen = strtoul(v, NULL, 10);
			have_len = 1;
		} else if (hdr_is(line, ln, "connection")) {
			hdr_val(line, ln, 10, v, sizeof v);
			r->close = strcasecmp(v, "close") == 0;
		} else if (hdr_is(line, ln, "access-control-allow-credentials"))
			r->acac = 1;
		for (size_t k = 0; k < sizeof rhdr / sizeof rhdr[0]; k++)
			if (hdr_is(line, ln, rhdr[k].name))
				hdr_val(line, ln, strlen(rhdr[k].name),
				    (char *)r + rhdr[k].off, rhdr[k].cap);
	}
	r->has_len = have_len;
	/* An event stream goes on until the connection ends. */
	r->stream = !have_len && r->status == 200 &&
	    strncmp(r->ctype, "text/event-stream", 17) == 0;
	if (!have_len && !r->stream && r->status != 101 && r->status != 204)
		return -1;
	if (r->hlen + r->blen > n)
		return 0;
	r->len = r->hlen + r->blen;
	return 1;
}

/*
 * One server frame (RFC 6455 §5.2): unmasked, never fragmented (wsd sends
 * whole messages), no RSV bits, the shortest length encoding, control
 * frames at most 125 bytes.  Returns its length, 0 if incomplete, -1 if
 * it breaks a rule.
 */
static long
srv_frame(const uint8_t *p, size_t n, int *op, const uint8_t **pl,
    size_t *plen)
{
	uint64_t len;
	size_t h = 2;

	if (n < 2)
		return 0;
	*op = p[0] & 0x0f;
	if ((p[0] & 0xf0) != 0x80 || (p[1] & 0x80))
		return -1;
	if (*op != WS_OP_TEXT && *op != WS_OP_BINARY && *op != WS_OP_CLOSE &&
	    *op != WS_OP_PING && *op != WS_OP_PONG)
		return -1;
	len = p[1] & 0x7f;
	if (len == 126) {
		if (n < 4)
			return 0;
		len = (uint64_t)p[2] << 8 | p[3];
		h = 4;
		if (len < 126)
			return -1;
	} else if (len == 127) {
		if (n < 10)
			return 0;
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | p[2 + i];
		h = 10;
		if (len < 65536 || len >> 63)
			return -1;
	}
	if (*op >= WS_OP_CLOSE && len > 125)
		return -1;
	if (n - h < len)
		return 0;
	*pl = p + h;
	*plen = len;
	return h + len;
}

/* ==== Model queries ====================================================== */

/*
 * What c learnt of seq of g: its bytes p[0..n) (NULL: only that it
 * exists).  An event stream (sse) changes line breaks inside the JSON, so
 * only their LF form is compared for it.
 */
static void
seq_note_as(struct client *c, int g, uint64_t seq, const uint8_t *p,
    size_t n, int sse)
{
	struct mgroup *m = &groups[g];
	uint32_t h = p != NULL && !sse ? fnv(p, n) : 0;
	uint32_t hl = p != NULL ? fnv_lf(p, n) : 0;

	if (g >= G_SCRATCH)
		return;		/* may start over: see gname[] */
	if (seq == 0)
		fail(c, "event with seq 0 in %s", gname[g]);
	if (seq >= m->cap) {
		uint64_t ncap = m->cap ? m->cap : 256;

		while (ncap <= seq)
			ncap *= 2;
		m->fp = xrealloc(m->fp, ncap * sizeof *m->fp);
		m->nfp = xrealloc(m->nfp, ncap * sizeof *m->nfp);
		m->claimed = xrealloc(m->claimed, ncap);
		m->turn = xrealloc(m->turn, ncap * sizeof *m->turn);
		memset(m->fp + m->cap, 0, (ncap - m->cap) * sizeof *m->fp);
		memset(m->nfp + m->cap, 0, (ncap - m->cap) * sizeof *m->nfp);
		memset(m->claimed + m->cap, 0, ncap - m->cap);
		memset(m->turn + m->cap, 0, (ncap - m->cap) * sizeof *m->turn);
		m->cap = ncap;
	}
	if (h != 0) {
		if (m->fp[seq] != 0 && m->fp[seq] != h)
			fail(c, "%s seq %llu has other bytes than another "
			    "receiver got", gname[g], (unsigned long long)seq);
		m->fp[seq] = h;
	}
	if (hl != 0) {
		if (m->nfp[seq] != 0 && m->nfp[seq] != hl)
			fail(c, "%s seq %llu has other bytes than another "
			    "receiver got%s", gname[g], (unsigned long long)seq,
			    sse ? " (line breaks aside: an event stream's)" :
			    "");
		m->nfp[seq] = hl;
	}
	if (seq > m->maxseq)
		m->maxseq = seq;
}

static void
seq_note(struct client *c, int g, uint64_t seq, const uint8_t *p, size_t n)
{
	seq_note_as(c, g, seq, p, n, 0);
}

static int
group_of(const char *name, size_t n)
{
	for (int g = 0; g < NGROUP; g++)
		if (strlen(gname[g]) == n && memcmp(gname[g], name, n) == 0)
			return g;
	return -1;
}

static const struct sim_sock *
sock_of(const struct client *c)
{
	return c->h >= 0 ? sim_sock(c->h) : NULL;
}

/* The server still holds the connection. */
static int
srv_open(const struct client *c)
{
	const struct sim_sock *s = sock_of(c);

	return s != NULL && !s->srv_closed && !s->refused;
}

static int
over_limit(const struct client *c)
{
	const struct sim_sock *s = sock_of(c);

	return s != NULL && s->accepted &&
	    s->open_at_accept >= wcfg.max_connections;
}

/* ==== Building requests ================================================== */

static void
emit(struct client *c, const void *p, size_t n)
{
	buf_put(&c->out, p, n);
	c->produced += n;
}

static struct exp *
expect(struct client *c, int kind)
{
	struct exp *x;

	if (c->qn == c->qcap) {
		unsigned ncap = c->qcap ? c->qcap * 2 : 8;
		struct exp *nq = xrealloc(NULL, ncap * sizeof *nq);

		for (unsigned i = 0; i < c->qn; i++)
			nq[i] = c->q[(c->qh + i) % c->qcap];
		free(c->q);
		c->q = nq;
		c->qh = 0;
		c->qcap = ncap;
	}
	x = &c->q[(c->qh + c->qn++) % c->qcap];
	memset(x, 0, sizeof *x);
	x->kind = kind;
	x->end = c->produced;
	return x;
}

static struct exp *
head(struct client *c)
{
	return c->qn > 0 ? &c->q[c->qh] : NULL;
}

static void
pop(struct client *c)
{
	free(c->q[c->qh].data);
	c->qh = (c->qh + 1) % c->qcap;
	c->qn--;
}

static void
http_send(struct client *c, const char *method, const char *target,
    const char *body, int close)
{
	size_t before = c->out.len;

	buf_printf(&c->out, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n", method,
	    target, SIM_PORT);
	if (body != NULL)
		buf_printf(&c->out, "Content-Type: application/json\r\n"
		    "Content-Length: %zu\r\n", strlen(body));
	if (close)
		buf_printf(&c->out, "Connection: close\r\n");
	buf_printf(&c->out, "\r\n%s", body != NULL ? body : "");
	c->produced += c->out.len - before;
}

static void
b64(const uint8_t *in, size_t n, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, n);
}

/* RFC 6455 §4.2.2: base64(SHA-1(key + GUID)). */
static void
accept_of(const char *key, char out[40])
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	uint8_t md[SHA_DIGEST_LENGTH];
	char in[64 + sizeof guid];
	int n = snprintf(in, sizeof in, "%.63s%s", key, guid);

	SHA1((const uint8_t *)in, n, md);
	b64(md, sizeof md, out);
}

static char	 wskey[32];	/* the key of the last upgrade request */

static void
upgrade_req(struct client *c, const char *target)
{
	uint8_t k[16];
	size_t before = c->out.len;

	for (int i = 0; i < 16; i++)
		k[i] = rnd();
	b64(k, 16, wskey);
	buf_printf(&c->out, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
	    target, SIM_PORT, wskey);
	c->produced += c->out.len - before;
}

/* A frame from the client: masked (RFC 6455 §5.3), unless raw says not. */
static void
frame(struct client *c, int fin, int op, const void *p, size_t n, int rsv,
    int unmasked)
{
	uint8_t h[14], mask[4];
	size_t hl = 2;
	const uint8_t *src = p;

	h[0] = (fin ? 0x80 : 0) | (rsv & 7) << 4 | (op & 0x0f);
	if (n < 126)
		h[1] = n;
	else if (n < 65536) {
		h[1] = 126;
		h[2] = n >> 8;
		h[3] = n;
		hl = 4;
	} else {
		h[1] = 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (uint64_t)n >> (56 - 8 * i);
		hl = 10;
	}
	if (!unmasked) {
		h[1] |= 0x80;
		for (int i = 0; i < 4; i++)
			mask[i] = chance(200) ? 0 : rnd();
		memcpy(h + hl, mask, 4);
		hl += 4;
	}
	emit(c, h, hl);
	for (size_t i = 0; i < n; ) {
		uint8_t tmp[4096];
		size_t k = n - i < sizeof tmp ? n - i : sizeof tmp;

		for (size_t j = 0; j < k; j++)
			tmp[j] = unmasked ? src[i + j] :
			    src[i + j] ^ mask[(i + j) & 3];
		emit(c, tmp, k);
		i += k;
	}
}

/* A control ping (payload "pN"), answered by a pong with it. */
static void
ctl_ping(struct client *c)
{
	snprintf(c->ping_pl, sizeof c->ping_pl, "p%llu",
	    (unsigned long long)++c->nextid);
	frame(c, 1, WS_OP_PING, c->ping_pl, strlen(c->ping_pl), 0, 0);
	c->ping_end = c->produced;
}

/* A data message, now and then in fragments with a ping among them. */
static void
message(struct client *c, int op, const void *p, size_t n)
{
	const uint8_t *s = p;

	if (n >= 2 && chance(200)) {
		size_t parts = 2 + rn(3), off = 0;

		stats.frags++;
		for (size_t i = 0; i < parts; i++) {
			size_t k = i + 1 == parts ? n - off :
			    rn(n - off + 1);

			frame(c, i + 1 == parts, i == 0 ? op : WS_OP_CONT,
			    s + off, k, 0, 0);
			off += k;
			if (i + 1 < parts && c->ping_end == 0 && chance(300))
				ctl_ping(c);
		}
		return;
	}
	frame(c, 1, op, p, n, 0, 0);
}

static void
text(struct client *c, const char *s)
{
	message(c, WS_OP_TEXT, s, strlen(s));
}

/* ==== Records ============================================================ */

static struct rec *
rec_find(struct client *c, int g)
{
	for (unsigned i = 0; i < c->nrec; i++)
		if (c->rec[i].g == g)
			return &c->rec[i];
	return NULL;
}

static struct rec *
rec_add(struct client *c, int g)
{
	struct rec *r = rec_find(c, g);

	if (r != NULL)
		return r;
	if (c->nrec == MAXREC)
		return NULL;
	r = &c->rec[c->nrec++];
	memset(r, 0, sizeof *r);
	r->g = g;
	return r;
}

/* ==== Client messages ==================================================== */

static void
ws_subscribe(struct client *c, int g, int with_since, uint64_t since)
{
	struct rec *r = rec_add(c, g);
	struct exp *x;
	char m[160];

	if (r == NULL || r->mem != M_NO)
		return;
	if (with_since)
		snprintf(m, sizeof m, "{\"type\":\"subscribe\",\"group\":\"%s\","
		    "\"since\":%llu}", gname[g], (unsigned long long)since);
	else
		snprintf(m, sizeof m, "{\"type\":\"subscribe\",\"group\":\"%s\"}",
		    gname[g]);
	text(c, m);
	x = expect(c, X_SUB);
	x->g = g;
	x->flag = with_since;
	x->a = since;
	r->mem = M_JOINING;
	r->live = 0;
}

static void
ws_unsubscribe(struct client *c, struct rec *r)
{
	struct exp *x;
	char m[160];
	uint64_t id = ++c->nextid;

	snprintf(m, sizeof m, "{\"type\":\"unsubscribe\",\"group\":\"%s\","
	    "\"id\":%llu}", gname[r->g], (unsigned long long)id);
	text(c, m);
	x = expect(c, X_UNSUB);
	x->g = r->g;
	x->id = id;
	r->mem = M_LEAVING;
}

/* A since to ask for: mostly recent, now and then far back (a gap). */
static uint64_t
pick_since(int g)
{
	uint64_t m = groups[g].maxseq;
	unsigned r = rn(10);

	if (r < 6)
		return m > 3 ? m - rn(4) : m;
	if (r < 8)
		return 0;
	return m > 300 ? m - rn(300) : rn(m + 1);
}

static int
pick_group(void)
{
	return chance(600) ? G_BUSY : 1 + rn(G_PLAIN - 1);
}

/*
 * White space for a publisher's JSON: now and then line breaks, which an
 * event stream carries as several data lines and its reader joins back.
 */
static const char *
linebreak(void)
{
	static const char *const b[] = { "\r\n", "\r", "\n", "\r\n\r\n",
	    " \n\t" };

	return chance(100) ? b[rn(5)] : "";
}

static void
ws_publish(struct client *c)
{
	struct buf m = { 0 };
	struct exp *x;
	int g = pick_group();
	uint64_t id = ++c->nextid;
	unsigned pad = chance(50) ? rn(3000) : rn(40);
	const char *b1 = linebreak(), *b2 = linebreak();

	buf_printf(&m, "{\"type\":\"publish\",\"group\":\"%s\",\"event\":"
	    "\"ev%u\",\"id\":%llu,\"data\":{%s\"from\":%d,\"n\":%llu,"
	    "\"pad\":\"",
	    gname[g], rn(4), (unsigned long long)id, b1, c->id,
	    (unsigned long long)++c->pub_n);
	for (unsigned i = 0; i < pad; i++)
		buf_put(&m, &"abcdefgh"[i & 7], 1);
	buf_printf(&m, "\",\"u\":\"\\u00e9\xc3\xa9\"%s}}", b2);
	message(c, WS_OP_TEXT, m.p, m.len);
	buf_free(&m);
	x = expect(c, X_PUB);
	x->g = g;
	x->id = id;
}

static void
ws_simple(struct client *c, const char *type, int kind)
{
	char m[96];
	uint64_t id = ++c->nextid;

	snprintf(m, sizeof m, "{\"id\":%llu,\"type\":\"%s\"}",
	    (unsigned long long)id, type);
	text(c, m);
	expect(c, kind)->id = id;
}

static void
ws_history(struct client *c)
{
	int g = pick_group();
	uint64_t id = ++c->nextid, since = groups[g].maxseq, lim = 1 + rn(20);
	struct exp *x;
	char m[160];

	since = since > 30 ? since - rn(30) : rn(since + 1);
	snprintf(m, sizeof m, "{\"type\":\"get_history\",\"group\":\"%s\","
	    "\"since\":%llu,\"limit\":%llu,\"id\":%llu}", gname[g],
	    (unsigned long long)since, (unsigned long long)lim,
	    (unsigned long long)id);
	text(c, m);
	x = expect(c, X_HIST);
	x->g = g;
	x->id = id;
	x->a = since;
	x->b = lim;
}

/* ==== HTTP API requests ================================================== */

static void
h_publish(struct client *c)
{
	char body[256], target[64];
	int g = (c->star_pub && chance(400)) || chance(15) ? G_STAR :
	    chance(100) ? G_SCRATCH + (int)rn(4) : pick_group();
	const char *b1 = linebreak(), *b2 = linebreak();

	snprintf(target, sizeof target, "/api/groups/%s/events",
	    g == G_STAR ? "%2A" : gname[g]);
	snprintf(body, sizeof body, "{\"type\":\"tick\",\"data\":{%s"
	    "\"from\":%d,%s\"n\":%llu}}", b1, c->id, b2,
	    (unsigned long long)++c->pub_n);
	http_send(c, "POST", target, body, 0);
	expect(c, X_H_PUBLISH)->g = g;
}

static void
h_events(struct client *c)
{
	int g = pick_group();
	uint64_t since = groups[g].maxseq, lim = 1 + rn(20);
	char target[128];
	struct exp *x;

	since = since > 30 ? since - rn(30) : rn(since + 1);
	snprintf(target, sizeof target, "/api/groups/%s/events?since=%llu&"
	    "limit=%llu", gname[g], (unsigned long long)since,
	    (unsigned long long)lim);
	http_send(c, "GET", target, NULL, 0);
	x = expect(c, X_H_EVENTS);
	x->g = g;
	x->a = since;
	x->b = lim;
}

static void
h_sessions(struct client *c)
{
	char target[64], body[96];
	unsigned r = rn(10);

	if (r < 4) {
		unsigned i = rn(NHID);

		if (hsess[i].busy)
			return;
		hsess[i].busy = 1;
		snprintf(body, sizeof body, "{\"id\":\"h%u\",\"metadata\":"
		    "{\"k\":%u}}", i, rn(100));
		http_send(c, "POST", "/api/sessions", body, 0);
		expect(c, X_H_SPOST)->g = i;
	} else if (r < 6) {
		unsigned i = rn(NHID);

		if (hsess[i].busy)
			return;
		hsess[i].busy = 1;
		snprintf(target, sizeof target, "/api/sessions/h%u", i);
		http_send(c, "DELETE", target, NULL, 0);
		expect(c, X_H_SDEL)->g = i;
	} else if (r < 8) {
		rpost++;
		http_send(c, "POST", "/api/sessions", chance(500) ? "{}" : NULL,
		    0);
		expect(c, X_H_SRAND);
	} else if (r < 9 && nrsess > 0) {
		unsigned i = rn(nrsess);

		if (!rsess[i].alive || rsess[i].busy)
			return;
		rsess[i].busy = 1;
		snprintf(target, sizeof target, "/api/sessions/%s",
		    rsess[i].id);
		http_send(c, "DELETE", target, NULL, 0);
		expect(c, X_H_SDEL)->g = NHID + i;
	} else {
		unsigned i = rn(NCID);

		ctaint[i] = 2;		/* in flight */
		snprintf(target, sizeof target, "/api/sessions/c%u", i);
		http_send(c, "DELETE", target, NULL, 0);
		expect(c, X_H_CDEL)->g = i;
	}
}

/*
 * CORS (README "Browsers on other origins") and the refusals of GET /sse:
 * requests whose whole answer is known, status and which CORS headers it
 * carries (X_H_CHECK, checked by on_check()), so a good client pipelines
 * them among its others and a bad one sends them alone.
 */
enum {
	CK_ACAO = 1,		/* Access-Control-Allow-Origin: the listed */
	CK_NOACAO = 2,		/* no Access-Control-Allow-Origin */
	CK_PRE = 4,		/* a preflight's methods, headers and max-age */
	CK_ALLOW = 8,		/* Allow: the path's methods (exp.g) */
	CK_BADREQ = 16,		/* error bad_request */
	CK_FORBID = 32		/* error forbidden */
};

/* Paths with the methods each takes, as Allow lists them. */
static const char *const cors_path[] = { "/sse", "/api/groups/g1/events",
	"/health", "/api/sessions" };
static const char *const cors_allow[] = { "GET, OPTIONS",
	"POST, GET, OPTIONS", "GET, OPTIONS", "POST, GET, OPTIONS" };

enum { O_NONE, O_OWN, O_LISTED, O_FOREIGN };

/* The Origin header of kind o into out; the kind it is (O_LISTED is
 * O_FOREIGN when no origin is listed). */
static int
origin_line(int o, char *out, size_t cap)
{
	if (o == O_LISTED && cors_origin == NULL)
		o = O_FOREIGN;
	if (o == O_OWN)
		snprintf(out, cap, "Origin: http://127.0.0.1:%d\r\n", SIM_PORT);
	else if (o == O_LISTED)
		snprintf(out, cap, "Origin: %s\r\n", cors_origin);
	else if (o == O_FOREIGN)
		snprintf(out, cap, "Origin: http://evil.example\r\n");
	else
		out[0] = '\0';
	return o;
}

static struct exp *
h_check(struct client *c, const char *method, const char *target,
    const char *hdrs, int status, int flags)
{
	size_t before = c->out.len;
	struct exp *x;

	buf_printf(&c->out, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s",
	    method, target, SIM_PORT, hdrs);
	if (strcmp(method, "POST") == 0)
		buf_printf(&c->out, "Content-Length: 0\r\n");
	buf_printf(&c->out, "\r\n");
	c->produced += c->out.len - before;
	x = expect(c, X_H_CHECK);
	x->a = status;
	x->flag = flags;
	return x;
}

/* A GET /sse that is refused with 400 bad_request, before any stream. */
static void
sse_refused(struct client *c)
{
	static const char *const bad[] = {
		"/sse", "/sse?groups=", "/sse?groups=g1,,g2", "/sse?groups=g1,",
		"/sse?groups=g1%21", "/sse?groups=%zz", "/sse?since=g1=0",
		"/sse?groups=g1&since=g1", "/sse?groups=g1&since=g1=",
		"/sse?groups=g1&since==5", "/sse?groups=g1&since=g1=zz:5",
		"/sse?groups=g1&since=g1=abcdef1:5",
		"/sse?groups=g1&since=g1=5,",
		"/sse?groups=g1&since=g1=abcdef12:",
		"/sse?groups=g1&since=g1=-1",
		"/sse?groups=g1&since=bad%21=5", "/sse?groups=g1&since=g1=%zz",
		"/sse?groups=g1,g2&since=g1=5,g2=",
		"/sse?groups=g1&since=g1=99999999999999999999999",
	};
	static const char *const badid[] = { "g1", "g1=", "g1=1,,g2=2",
	    "g1=ABCDEF12:1", "=1", "g1=1," };
	const unsigned nbad = sizeof bad / sizeof bad[0];
	char target[512], hdr[96];
	unsigned r = rn(nbad + 2);

	hdr[0] = '\0';
	if (r < nbad)
		snprintf(target, sizeof target, "%s", bad[r]);
	else if (r == nbad) {
		/* Malformed in Last-Event-ID, which wins over ?since=. */
		snprintf(target, sizeof target, "/sse?groups=g1,g2&since=g1=0");
		snprintf(hdr, sizeof hdr, "Last-Event-ID: %s\r\n",
		    badid[rn(sizeof badid / sizeof badid[0])]);
	} else {
		/* More groups than one stream may have. */
		unsigned most = hcfg.max_conn_groups < 64 ?
		    hcfg.max_conn_groups : 64;
		size_t n = snprintf(target, sizeof target, "/sse?groups=z0");

		for (unsigned i = 1; i <= most && n < sizeof target - 8; i++)
			n += snprintf(target + n, sizeof target - n, ",z%u", i);
	}
	h_check(c, "GET", target, hdr, 400, CK_BADREQ);
}

/* One CORS or /sse request with a known answer. */
static void
h_cors(struct client *c)
{
	char hdrs[256], og[96];
	unsigned k = rn(4);
	int o;
	struct exp *x;

	switch (rn(6)) {
	case 0:		/* a preflight; only a listed origin is cleared */
		o = origin_line(rn(4), og, sizeof og);
		snprintf(hdrs, sizeof hdrs, "%sAccess-Control-Request-Method: "
		    "%s\r\nAccess-Control-Request-Headers: content-type, "
		    "last-event-id\r\n", og, k == 1 ? "POST" : "GET");
		x = h_check(c, "OPTIONS", cors_path[k], hdrs, 204, CK_ALLOW |
		    (o == O_LISTED ? CK_ACAO | CK_PRE : CK_NOACAO));
		x->g = k;
		break;
	case 1:		/* a page's read: the answer is its to read if listed */
		o = origin_line(rn(4), og, sizeof og);
		h_check(c, "GET", chance(500) ? "/health" :
		    "/api/groups/g2/events?since=0&limit=2", og, 200,
		    o == O_LISTED ? CK_ACAO : CK_NOACAO);
		break;
	case 2:
		sse_refused(c);
		break;
	case 3:		/* a stream for a page of another origin, not listed */
		origin_line(O_FOREIGN, og, sizeof og);
		h_check(c, "GET", "/sse?groups=g1", og, 403,
		    CK_FORBID | CK_NOACAO);
		break;
	case 4:		/* a stream is GET only */
		h_check(c, "POST", "/sse", "", 405, CK_ALLOW)->g = 0;
		break;
	default:
		o = origin_line(rn(4), og, sizeof og);
		h_check(c, "OPTIONS", "/nothing/here", og, 404,
		    o == O_LISTED ? CK_ACAO : CK_NOACAO);
		break;
	}
}

/* One more request from a good HTTP client. */
static void
h_request(struct client *c)
{
	unsigned r = rn(106);

	if (r < 55)
		h_publish(c);
	else if (r < 63) {
		http_send(c, "GET", "/health", NULL, 0);
		expect(c, X_H_HEALTH);
	} else if (r < 66 && wcfg.send_queue >= 256 * 1024) {
		http_send(c, "GET", "/", NULL, 0);
		expect(c, X_H_DASH);
	} else if (r < 70) {
		http_send(c, "GET", "/api/groups", NULL, 0);
		expect(c, X_H_GROUPS);
	} else if (r < 78)
		h_events(c);
	else if (r < 92)
		h_sessions(c);
	else if (r < 96) {
		http_send(c, "GET", "/api/sessions/count", NULL, 0);
		expect(c, X_H_COUNT);
	} else if (r < 100) {
		http_send(c, "GET", "/metrics", NULL, 0);
		expect(c, X_H_METRICS);
	} else
		h_cors(c);
}

/* ==== Misbehaving clients ================================================ */

/*
 * One protocol violation each, and what RFC 6455, RFC 9112 and the README
 * say the server must answer: a close code, an HTTP status, or an error
 * message.
 */
static void
bad_ws(struct client *c)
{
	static const uint8_t bad_utf8[] = { 'a', 0xc0, 0x80 };
	uint8_t big[130] = { 0 }, cb[8];

	switch (rn(16)) {
	case 0:
		frame(c, 1, WS_OP_TEXT, "{}", 2, 0, 1);
		c->want_close = WS_CLOSE_PROTOCOL;	/* §5.1: unmasked */
		break;
	case 1:
		frame(c, 1, WS_OP_TEXT, "{}", 2, 4, 0);
		c->want_close = WS_CLOSE_PROTOCOL;	/* RSV1 */
		break;
	case 2:
		frame(c, 1, 3, "x", 1, 0, 0);
		c->want_close = WS_CLOSE_PROTOCOL;	/* reserved opcode */
		break;
	case 3:
		frame(c, 1, WS_OP_CONT, "x", 1, 0, 0);
		c->want_close = WS_CLOSE_PROTOCOL;	/* nothing to continue */
		break;
	case 4:
		frame(c, 1, WS_OP_PING, big, 126, 0, 0);
		c->want_close = WS_CLOSE_PROTOCOL;	/* §5.5: > 125 */
		break;
	case 5:
		frame(c, 0, WS_OP_PING, "x", 1, 0, 0);
		c->want_close = WS_CLOSE_PROTOCOL;	/* fragmented control */
		break;
	case 6:
		frame(c, 1, WS_OP_TEXT, bad_utf8, sizeof bad_utf8, 0, 0);
		c->want_close = WS_CLOSE_BAD_DATA;
		break;
	case 7:
		frame(c, 1, WS_OP_CLOSE, "\x03", 1, 0, 0);
		c->want_close = WS_CLOSE_PROTOCOL;	/* 1-byte close body */
		break;
	case 8:
		cb[0] = 1005 >> 8;
		cb[1] = 1005 & 0xff;
		frame(c, 1, WS_OP_CLOSE, cb, 2, 0, 0);
		c->want_close = WS_CLOSE_PROTOCOL;	/* §7.4.1: never sent */
		break;
	case 9:
		frame(c, 0, WS_OP_TEXT, "{", 1, 0, 0);
		frame(c, 1, WS_OP_TEXT, "}", 1, 0, 0);
		c->want_close = WS_CLOSE_PROTOCOL;	/* new message inside */
		break;
	case 10: {
		size_t n = wcfg.max_message + 1;
		uint8_t h[14] = { 0x81, 0x80 | 127 };

		for (int i = 0; i < 8; i++)
			h[2 + i] = (uint64_t)n >> (56 - 8 * i);
		emit(c, h, 14);		/* refused from the header alone */
		c->want_close = WS_CLOSE_TOO_BIG;
		break;
	}
	case 11:
		cb[0] = 4000 >> 8;
		cb[1] = 4000 & 0xff;
		memcpy(cb + 2, "bye", 3);
		frame(c, 1, WS_OP_CLOSE, cb, 5, 0, 0);
		c->want_close = 4000;			/* echoed */
		c->sent_close = 1;
		break;
	case 12:
		frame(c, 1, WS_OP_BINARY, "{}", 2, 0, 0);
		expect(c, X_ERR)->a = 0;		/* bad_json */
		break;
	case 13:
		text(c, "not json");
		expect(c, X_ERR)->a = 0;
		break;
	case 14:
		text(c, "{\"type\":\"nope\",\"id\":7}");
		expect(c, X_ERR)->a = 1;		/* unknown_type */
		break;
	default:
		cb[0] = 2;
		cb[1] = 0;
		cb[2] = 0;
		cb[3] = 0;
		frame(c, 1, WS_OP_CLOSE, cb, 2, 0, 0);
		c->want_close = WS_CLOSE_PROTOCOL;	/* code 512 */
		break;
	}
}

static void
bad_http(struct client *c)
{
	struct exp *x;
	size_t before = c->out.len;
	int status;

	switch (rn(15)) {
	case 10:
		sse_refused(c);
		return;
	case 11:	/* another origin's page, not listed: refused */
		h_check(c, "GET", chance(500) ? "/sse?groups=g1,g2" :
		    "/sse?groups=g1&since=g1=0",
		    "Origin: http://evil.example\r\n", 403,
		    CK_FORBID | CK_NOACAO);
		return;
	case 12:
		h_check(c, "POST", "/sse", "", 405, CK_ALLOW)->g = 0;
		return;
	case 13:
		h_check(c, "OPTIONS", "/nothing/here", "", 404, CK_NOACAO);
		return;
	case 14:	/* a form of another origin posting: no credentials */
		h_check(c, "POST", "/api/groups/g1/events",
		    "Origin: http://evil.example\r\n", 403,
		    CK_FORBID | CK_NOACAO);
		return;
	case 0:
		buf_printf(&c->out, "GET /health HTTP/1.1\nHost: a\n\n");
		status = 400;				/* bare LF */
		break;
	case 1:
		buf_printf(&c->out, "GET /health HTTP/1.1\r\nHost: a\r\nX: ");
		for (size_t i = 0; i < wcfg.max_header; i += 8)
			buf_put(&c->out, "aaaaaaaa", 8);
		buf_printf(&c->out, "\r\n\r\n");
		status = 431;
		break;
	case 2:
		buf_printf(&c->out, "POST /api/groups/g1/events HTTP/1.1\r\n"
		    "Host: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
		status = 501;
		break;
	case 3:
		buf_printf(&c->out, "GET /health HTTP/2.0\r\nHost: a\r\n\r\n");
		status = 505;
		break;
	case 4:
		buf_printf(&c->out, "POST /api/groups/g1/events HTTP/1.1\r\n"
		    "Host: a\r\nContent-Length: %zu\r\n\r\n",
		    wcfg.max_body + 1);
		status = 413;
		break;
	case 5:
		buf_printf(&c->out, "GET /nothing/here HTTP/1.1\r\nHost: 127.0.0.1"
		    "\r\n\r\n");
		status = 404;
		break;
	case 6:
		buf_printf(&c->out, "GET /ws/g1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
		status = 426;
		break;
	case 7:
		buf_printf(&c->out, "GET /ws/g1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n"
		    "\r\n");
		status = 400;
		break;
	case 8:
		buf_printf(&c->out, "GET /ws/g1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		    "Sec-WebSocket-Version: 8\r\n\r\n");
		status = 426;
		break;
	default:
		buf_printf(&c->out, "GET /ws/bad%%21name HTTP/1.1\r\nHost: "
		    "127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		    "Sec-WebSocket-Version: 13\r\n\r\n");
		status = 400;
		break;
	}
	c->produced += c->out.len - before;
	x = expect(c, X_H_STATUS);
	x->a = status;
}

/* ==== What arrives: HTTP responses ======================================= */

static void
audit_counts(struct client *c, const char *body, size_t n);

static int
status_ok(const struct client *c, const struct exp *x, int st, int want)
{
	if (st == want)
		return 1;
	/* Past --max-connections every request gets 503. */
	if (st == 503 && over_limit(c))
		return 1;
	switch (x->kind) {
	case X_UPGRADE:
		/* Out of sessions or groups at the limits this run set. */
		return st == 503 && ((c->sess >= 0 && hcfg.max_sessions < 100) ||
		    hcfg.max_groups < 100);
	case X_H_PUBLISH:
		return st == 503 && hcfg.max_groups < 100;
	case X_SSE:
		/* No room for its groups, or draining. */
		return st == 503 && (hcfg.max_groups < 100 ||
		    sigterm_turn != 0);
	case X_H_SPOST:
	case X_H_SRAND:
		return st == 503 && hcfg.max_sessions < 100;
	}
	return 0;
}

static void
check_history(struct client *c, int g, const char *p, size_t n,
    uint64_t since, uint64_t lim)
{
	const char *e = p + n, *q;
	uint64_t prev = 0, count = 0;

	q = jws(p, e);
	if (q >= e || *q != '[')
		fail(c, "history of %s is not an array", gname[g]);
	q = jws(q + 1, e);
	while (q < e && *q != ']') {
		const char *ve = jval(q, e, 0);
		uint64_t seq;
		char grp[80];

		if (ve == NULL || !jnum(q, ve - q, "seq", &seq) ||
		    jtext(q, ve - q, "group", grp, sizeof grp) < 0 ||
		    strcmp(grp, gname[g]) != 0)
			fail(c, "bad event in the history of %s", gname[g]);
		if (seq <= since || (prev != 0 && seq != prev + 1))
			fail(c, "history of %s: seq %llu after %llu (since %llu)",
			    gname[g], (unsigned long long)seq,
			    (unsigned long long)prev, (unsigned long long)since);
		seq_note(c, g, seq, (const uint8_t *)q, ve - q);
		prev = seq;
		count++;
		q = jws(ve, e);
		if (q < e && *q == ',')
			q = jws(q + 1, e);
	}
	if (count > lim)
		fail(c, "history of %s: %llu events, limit %llu", gname[g],
		    (unsigned long long)count, (unsigned long long)lim);
}

static void
on_session_post(struct client *c, struct exp *x, const struct resp *r,
    const char *body)
{
	char id[80];

	if (x->kind == X_H_SPOST) {
		struct msess *s = &hsess[x->g];

		s->busy = 0;
		if (r->status == 201) {
			if (s->alive)
				fail(c, "POST h%u: 201 for a session that "
				    "exists", x->g);
			s->alive = 1;
		} else if (r->status == 409) {
			if (!s->alive)
				fail(c, "POST h%u: 409 but it does not exist",
				    x->g);
		} else if (!status_ok(c, x, r->status, 201))
			fail(c, "POST h%u: status %d", x->g, r->status);
		return;
	}
	rpost--;
	if (r->status != 201) {
		if (!status_ok(c, x, r->status, 201))
			fail(c, "POST /api/sessions: status %d", r->status);
		return;
	}
	if (jtext(body, r->blen, "id", id, sizeof id) != 16)
		fail(c, "POST /api/sessions: no 16-digit id");
	if (nrsess == rsesscap) {
		rsesscap = rsesscap ? rsesscap * 2 : 16;
		rsess = xrealloc(rsess, rsesscap * sizeof *rsess);
	}
	memset(&rsess[nrsess], 0, sizeof rsess[nrsess]);
	memcpy(rsess[nrsess].id, id, 17);
	for (unsigned i = 0; i < nrsess; i++)
		if (rsess[i].alive && strcmp(rsess[i].id, id) == 0)
			fail(c, "POST /api/sessions: id %s given twice", id);
	rsess[nrsess++].alive = 1;
}

/* 1 if the method lists a and b ("GET, OPTIONS") hold the same methods. */
static int
same_methods(const char *a, const char *b)
{
	char x[64], y[64], *t, *save;
	unsigned na = 0, nb = 0;

	snprintf(x, sizeof x, "%s", a);
	snprintf(y, sizeof y, ", %s,", b);
	for (t = strtok_r(x, ", ", &save); t != NULL;
	    t = strtok_r(NULL, ", ", &save)) {
		char k[24];

		snprintf(k, sizeof k, " %s,", t);
		if (strstr(y, k) == NULL)
			return 0;
		na++;
	}
	for (const char *p = b; *p != '\0'; p++)
		nb += *p == ',';
	return na == nb + 1;
}

/* The answer to an X_H_CHECK request: its status and its CORS headers. */
static void
on_check(struct client *c, const struct exp *x, const struct resp *r,
    const char *body)
{
	char code[40];

	c->bad_done = 1;
	if (r->status != (int)x->a) {
		if (status_ok(c, x, r->status, x->a))
			return;
		fail(c, "answered %d, want %d (a CORS or /sse request)",
		    r->status, (int)x->a);
	}
	stats.cors++;
	/* wsd never answers "*" and never Allow-Credentials; with a list,
	 * every answer depends on Origin and says so. */
	if (r->acac || strcmp(r->acao, "*") == 0)
		fail(c, "Access-Control-Allow-Credentials or origin *: "
		    "wsd sends neither");
	if ((cors_origin != NULL) != (strstr(r->vary, "Origin") != NULL))
		fail(c, "%d with \"Vary: %s\", --allow-origin %s", r->status,
		    r->vary, cors_origin ? cors_origin : "not set");
	if ((x->flag & CK_ACAO) && strcmp(r->acao, cors_origin) != 0)
		fail(c, "%d with Access-Control-Allow-Origin \"%s\" for the "
		    "listed origin %s", r->status, r->acao, cors_origin);
	if ((x->flag & CK_NOACAO) && r->acao[0] != '\0')
		fail(c, "%d with Access-Control-Allow-Origin %s for an "
		    "origin that is not listed", r->status, r->acao);
	if (x->flag & CK_PRE) {
		if (!same_methods(r->acam, cors_allow[x->g]) ||
		    strcasestr(r->acah, "authorization") == NULL ||
		    strcasestr(r->acah, "content-type") == NULL ||
		    strcasestr(r->acah, "last-event-id") == NULL ||
		    strcmp(r->acma, "600") != 0)
			fail(c, "preflight of %s: methods \"%s\", headers "
			    "\"%s\", max-age \"%s\"", cors_path[x->g], r->acam,
			    r->acah, r->acma);
	} else if (r->acam[0] != '\0' || r->acah[0] != '\0' ||
	    r->acma[0] != '\0')
		fail(c, "%d with preflight headers for an origin not listed",
		    r->status);
	if ((x->flag & CK_ALLOW) && !same_methods(r->allow, cors_allow[x->g]))
		fail(c, "%d with \"Allow: %s\", want %s", r->status, r->allow,
		    cors_allow[x->g]);
	if (r->status == 204 && r->has_len)
		fail(c, "204 with a Content-Length (RFC 9110 §8.6)");
	if ((x->flag & (CK_BADREQ | CK_FORBID)) &&
	    (jtext(body, r->blen, "error", code, sizeof code) < 0 ||
	    strcmp(code, x->flag & CK_BADREQ ? "bad_request" : "forbidden")))
		fail(c, "%d with the wrong error: %.*s", r->status,
		    (int)r->blen, body);
}

static void
on_response(struct client *c, const struct resp *r, const uint8_t *raw)
{
	struct exp *x = head(c);
	const char *body = (const char *)raw + r->hlen;
	uint64_t seq;
	char grp[80], want[40];

	if (r->close)
		c->conn_close = 1;
	if (x == NULL)
		fail(c, "HTTP %d with no request outstanding", r->status);
	stats.responses++;
	stats.over += r->status == 503 && over_limit(c);
	if (x->kind > X_H_STATUS)
		fail(c, "HTTP %d where a WebSocket reply was due", r->status);
	if (r->status >= 400 && r->blen > 0 && !jobject(body, r->blen))
		fail(c, "HTTP %d with a body that is not a JSON object",
		    r->status);
	switch (x->kind) {
	case X_UPGRADE:
		if (r->status != 101) {
			if (!status_ok(c, x, r->status, 101) && c->good)
				fail(c, "upgrade answered %d", r->status);
			c->upg = 3;
			if (c->route >= 0)
				rec_find(c, c->route)->mem = M_NO;
			/* What was pipelined after it is void. */
			while (c->qn > 1) {
				free(c->q[(c->qh + c->qn - 1) % c->qcap].data);
				c->qn--;
			}
			if (!r->close)
				fail(c, "refused upgrade without Connection: "
				    "close");
			break;
		}
		accept_of((const char *)x->data, want);
		if (strcmp(r->accept, want) != 0)
			fail(c, "Sec-WebSocket-Accept %s, want %s", r->accept,
			    want);
		if (r->blen != 0)
			fail(c, "101 with a body");
		c->upg = 2;
		c->phase = P_WS;
		if (c->route >= 0) {
			struct rec *rr = rec_find(c, c->route);

			rr->mem = M_YES;
			rr->live = 1;
			rr->next = rr->since + 1;
		}
		break;
	case X_H_PUBLISH:
		if (r->status != 202) {
			if (!status_ok(c, x, r->status, 202))
				fail(c, "publish answered %d", r->status);
			break;
		}
		if (!jobject(body, r->blen) || !jnum(body, r->blen, "seq", &seq))
			fail(c, "publish: 202 without a seq");
		seq_note(c, x->g, seq, NULL, 0);
		if (x->g < G_SCRATCH && groups[x->g].claimed[seq]++)
			fail(c, "seq %llu of %s given to two publishes",
			    (unsigned long long)seq, gname[x->g]);
		if (x->g < G_SCRATCH)
			groups[x->g].turn[seq] = x->turn;
		break;
	case X_H_HEALTH:
		if (!status_ok(c, x, r->status, 200))
			fail(c, "/health answered %d", r->status);
		if (r->status == 200) {
			struct jv v;

			if (!jobject(body, r->blen) ||
			    !jget(body, r->blen, "status", &v) || !jis(v, "ok"))
				fail(c, "/health: no status ok");
			if (c == auditor)
				audit_counts(c, body, r->blen);
		} else if (c == auditor)
			auditor_done = 2;	/* over --max-connections */
		break;
	case X_H_DASH:
		if (!status_ok(c, x, r->status, 200))
			fail(c, "GET / answered %d", r->status);
		if (r->status == 200 && (r->blen != dashboard_html_len ||
		    memcmp(body, dashboard_html, r->blen) != 0 ||
		    strncmp(r->ctype, "text/html", 9) != 0))
			fail(c, "GET / is not the dashboard page");
		break;
	case X_H_GROUPS:
	case X_H_COUNT:
		if (!status_ok(c, x, r->status, 200) ||
		    (r->status == 200 && !jobject(body, r->blen)))
			fail(c, "GET API answered %d or bad JSON", r->status);
		if (x->kind == X_H_COUNT && c == auditor && r->status == 200)
			audit_counts(c, body, r->blen);
		else if (x->kind == X_H_COUNT && c == auditor)
			auditor_done = 2;
		break;
	case X_H_METRICS:
		if (!status_ok(c, x, r->status, 200))
			fail(c, "/metrics answered %d", r->status);
		break;
	case X_H_EVENTS: {
		struct jv v;

		if (!status_ok(c, x, r->status, 200))
			fail(c, "GET events answered %d", r->status);
		if (r->status != 200)
			break;
		if (!jobject(body, r->blen) ||
		    jtext(body, r->blen, "group", grp, sizeof grp) < 0 ||
		    strcmp(grp, gname[x->g]) != 0 ||
		    !jget(body, r->blen, "events", &v))
			fail(c, "GET events of %s: bad answer", gname[x->g]);
		check_history(c, x->g, v.p, v.n, x->a, x->b);
		break;
	}
	case X_H_SPOST:
	case X_H_SRAND:
		on_session_post(c, x, r, body);
		break;
	case X_H_SDEL: {
		struct msess *s = x->g < NHID ? &hsess[x->g] :
		    &rsess[x->g - NHID];

		s->busy = 0;
		if (r->status == 204) {
			if (!s->alive)
				fail(c, "DELETE %s: 204 for no session", s->id);
			s->alive = 0;
		} else if (r->status == 404) {
			if (s->alive)
				fail(c, "DELETE %s: 404 for a session", s->id);
		} else if (!status_ok(c, x, r->status, 204))
			fail(c, "DELETE answered %d", r->status);
		break;
	}
	case X_H_CDEL:
		if (r->status != 204 && r->status != 404 &&
		    !status_ok(c, x, r->status, 204))
			fail(c, "DELETE c%u answered %d", x->g, r->status);
		ctaint[x->g] = 1;	/* settled when its connections go */
		break;
	case X_SSE:
		sse_head(c, x, r);
		break;
	case X_H_CHECK:
		on_check(c, x, r, body);
		break;
	case X_H_STATUS:
		if (c->kind == K_BAD && r->status != (int)x->a &&
		    !status_ok(c, x, r->status, x->a))
			fail(c, "bad request answered %d, want %d", r->status,
			    (int)x->a);
		c->bad_done = 1;
		stats.bad++;
		break;
	}
	pop(c);
}

/* ==== What arrives: WebSocket messages =================================== */

static void
check_complete(struct client *c, const char *when)
{
	for (unsigned i = 0; i < c->nrec; i++) {
		struct rec *r = &c->rec[i];

		if (!r->live || r->mem != M_YES)
			continue;
		if (r->next == 0 || r->next <= groups[r->g].maxseq)
			fail(c, "%s: %s seq %llu exists, but it has only up to "
			    "%llu", when, gname[r->g],
			    (unsigned long long)groups[r->g].maxseq,
			    r->next ? (unsigned long long)r->next - 1 : 0);
	}
	if (c->star_next != 0 && c->star_next <= groups[G_STAR].maxseq)
		fail(c, "%s: * seq %llu exists, it has only up to %llu", when,
		    (unsigned long long)groups[G_STAR].maxseq,
		    (unsigned long long)c->star_next - 1);
}

/*
 * Close 1001 goes "after the events already queued, so accepted events
 * still reach a reader": every event whose publish the server read before
 * SIGTERM, and with --strict in the same turn too, is in before the close.
 */
static void
check_accepted(struct client *c, const char *what)
{
	uint64_t last = strict ? sigterm_turn : sigterm_turn - 1;

	for (unsigned i = 0; i < c->nrec; i++) {
		struct rec *r = &c->rec[i];
		struct mgroup *m = &groups[r->g];

		if (!r->live || r->mem != M_YES || r->next == 0 ||
		    r->g >= G_SCRATCH)
			continue;
		for (uint64_t s = r->next; s <= m->maxseq; s++)
			if (m->turn[s] != 0 && m->turn[s] <= last)
				fail(c, "%s before %s seq %llu, whose "
				    "publish was answered in turn %llu (SIGTERM "
				    "in turn %llu)", what, gname[r->g],
				    (unsigned long long)s,
				    (unsigned long long)m->turn[s],
				    (unsigned long long)sigterm_turn);
	}
}

/*
 * An event's envelope, a WebSocket message's or an SSE record's (what):
 * its group (the index), name, type and seq; anything else fails c.
 */
static int
envelope(struct client *c, const char *p, size_t n, char grp[80],
    char type[80], uint64_t *seq, const char *what)
{
	struct jv v;
	int g;

	if (jtext(p, n, "group", grp, 80) < 0 || !jnum(p, n, "seq", seq) ||
	    !jget(p, n, "timestamp", &v) || !jget(p, n, "data", &v) ||
	    jtext(p, n, "type", type, 80) < 0)
		fail(c, "a %s that is neither a reply nor an event: %.120s",
		    what, p);
	if ((g = group_of(grp, strlen(grp))) < 0)
		fail(c, "event of unknown group %s", grp);
	return g;
}

static void
on_event(struct client *c, const char *p, size_t n)
{
	char grp[80], type[80];
	uint64_t seq;
	struct rec *r;
	struct jv v;
	int g;

	g = envelope(c, p, n, grp, type, &seq, "message");
	seq_note(c, g, seq, (const uint8_t *)p, n);
	stats.events++;
	if (g == G_STAR) {
		if (c->star_next != 0 && seq != c->star_next)
			fail(c, "* seq %llu, expected %llu",
			    (unsigned long long)seq,
			    (unsigned long long)c->star_next);
		c->star_next = seq + 1;
		return;
	}
	r = rec_find(c, g);
	if (r == NULL || (r->mem != M_YES && r->mem != M_LEAVING))
		fail(c, "event %s/%llu for a group it is not in", grp,
		    (unsigned long long)seq);
	if (!r->live)
		return;
	if (r->next == 0)
		r->next = seq + 1;
	else if (seq == r->next)
		r->next++;
	else if (seq < r->next)
		fail(c, "%s seq %llu again or out of order (next due %llu)",
		    grp, (unsigned long long)seq, (unsigned long long)r->next);
	else
		fail(c, "%s seq %llu but %llu is due: a gap without "
		    "history_gap", grp, (unsigned long long)seq,
		    (unsigned long long)r->next);
	/*
	 * The session diff's counts add up from one event to the next.  Open
	 * defect, so only with --strict: when the journal is full, note()
	 * runs the tick after count has changed but before the change is
	 * journaled, and the next tick counts that change twice.
	 */
	if (strict && g == G_MONITOR && strcmp(type, "session_event") == 0 &&
	    jget(p, n, "data", &v)) {
		uint64_t prev, cur;
		char et[40];

		if (jtext(p, n, "event_type", et, sizeof et) > 0 &&
		    (strcmp(et, "session_created") == 0 ||
		    strcmp(et, "session_destroyed") == 0) &&
		    jnum(v.p, v.n, "previous_count", &prev) &&
		    jnum(v.p, v.n, "current_count", &cur)) {
			if (verbose > 1)
				fprintf(stderr, "client %d: %.*s\n", c->id,
				    (int)n, p);
			if (c->mon_cur >= 0 && (long long)prev != c->mon_cur)
				fail(c, "session_event previous_count %llu after "
				    "current_count %lld", (unsigned long long)prev,
				    c->mon_cur);
			c->mon_cur = cur;
		}
	}
}

static void
on_reply(struct client *c, const char *p, size_t n, const char *type)
{
	struct exp *x = head(c);
	uint64_t id = 0, seq;
	char grp[80], code[40];
	struct rec *r;
	struct jv v;
	int has_id = jnum(p, n, "id", &id);

	if (strcmp(type, "error") == 0 && jtext(p, n, "code", code,
	    sizeof code) > 0 && strcmp(code, "history_gap") == 0) {
		uint64_t oldest;
		int g;

		if (jtext(p, n, "group", grp, sizeof grp) < 0 ||
		    (g = group_of(grp, strlen(grp))) < 0 ||
		    !jnum(p, n, "oldest", &oldest))
			fail(c, "history_gap without group or oldest");
		r = rec_find(c, g);
		if (r == NULL || (r->mem != M_YES && r->mem != M_LEAVING))
			fail(c, "history_gap for %s, a group it is not in", grp);
		if (r->live && (r->next == 0 || oldest > r->next))
			r->next = oldest;
		if (oldest > 1)
			seq_note(c, g, oldest - 1, NULL, 0);
		if (g == G_MONITOR)
			c->mon_cur = -1;
		stats.gaps++;
		return;
	}
	/* A route may be confirmed like a subscribe (newer servers do). */
	if (strcmp(type, "subscribed") == 0 && !c->route_ack &&
	    c->route >= 0 && jtext(p, n, "group", grp, sizeof grp) > 0 &&
	    strcmp(grp, gname[c->route]) == 0 &&
	    (x == NULL || x->kind != X_SUB || x->g != c->route)) {
		c->route_ack = 1;
		if (!jnum(p, n, "seq", &seq))
			fail(c, "subscribed without a seq");
		if (seq > 0)
			seq_note(c, c->route, seq, NULL, 0);
		r = rec_find(c, c->route);
		if (r->live && r->next == 0)
			r->next = seq + 1;
		return;
	}
	if (x == NULL)
		fail(c, "reply %s with nothing outstanding", type);
	if (x->kind < X_PONG)
		fail(c, "reply %s where an HTTP response was due", type);
	if (x->id != 0 && (!has_id || id != x->id))
		fail(c, "reply %s with id %llu, want %llu", type,
		    (unsigned long long)id, (unsigned long long)x->id);
	if (strcmp(type, "error") == 0) {
		static const char *const allowed[][3] = {
			[X_SUB] = { "too_large", NULL },
			[X_PUB] = { "too_large", "rate_limited", NULL },
			[X_ERR] = { "bad_json", "unknown_type", NULL },
		};
		int ok = 0;

		if (jtext(p, n, "code", code, sizeof code) < 0)
			fail(c, "error without a code");
		if (x->kind == X_ERR)
			ok = strcmp(code, allowed[X_ERR][x->a]) == 0;
		else if (x->kind == X_SUB || x->kind == X_PUB)
			for (int i = 0; allowed[x->kind][i] != NULL; i++)
				ok |= strcmp(code, allowed[x->kind][i]) == 0;
		if (x->kind == X_PUB && strcmp(code, "rate_limited") == 0 &&
		    hcfg.publish_rate == 0)
			ok = 0;
		if (!ok && c->good)
			fail(c, "error %s for a good request (%d)", code,
			    x->kind);
		if (x->kind == X_SUB && (r = rec_find(c, x->g)) != NULL &&
		    r->mem == M_JOINING)
			r->mem = M_NO;
		c->bad_done = 1;
		stats.bad += x->kind == X_ERR;
		pop(c);
		return;
	}
	stats.replies++;
	switch (x->kind) {
	case X_PONG:
	case X_HBACK:
		if (strcmp(type, x->kind == X_PONG ? "pong" : "heartbeat_ack") ||
		    !jget(p, n, "timestamp", &v))
			fail(c, "%s where pong or heartbeat_ack was due", type);
		break;
	case X_STATUS:
		if (strcmp(type, "status") != 0 || !jget(p, n, "data", &v) ||
		    !jnum(v.p, v.n, "connection_id", &seq))
			fail(c, "%s where status was due", type);
		break;
	case X_SUB:
		if (verbose > 2)
			fprintf(stderr, "client %d: subscribe %s since %d/%llu: "
			    "%.*s\n", c->id, gname[x->g], x->flag,
			    (unsigned long long)x->a, (int)n, p);
		if (strcmp(type, "subscribed") != 0 ||
		    jtext(p, n, "group", grp, sizeof grp) < 0 ||
		    strcmp(grp, gname[x->g]) != 0 || !jnum(p, n, "seq", &seq))
			fail(c, "%s where subscribed to %s was due", type,
			    gname[x->g]);
		r = rec_find(c, x->g);
		if (seq > 0)
			seq_note(c, x->g, seq, NULL, 0);
		if (r->mem == M_JOINING) {
			r->mem = M_YES;
			r->live = 1;
			r->next = x->flag ? x->a + 1 : seq + 1;
			if (x->g == G_MONITOR)
				c->mon_cur = -1;
		}
		break;
	case X_UNSUB:
		if (strcmp(type, "unsubscribed") != 0 ||
		    jtext(p, n, "group", grp, sizeof grp) < 0 ||
		    strcmp(grp, gname[x->g]) != 0)
			fail(c, "%s where unsubscribed was due", type);
		r = rec_find(c, x->g);
		r->mem = M_NO;
		r->live = 0;
		if (x->g == G_MONITOR)
			c->mon_cur = -1;
		break;
	case X_PUB:
		if (strcmp(type, "published") != 0 || !jnum(p, n, "seq", &seq))
			fail(c, "%s where published was due", type);
		seq_note(c, x->g, seq, NULL, 0);
		if (groups[x->g].claimed[seq]++)
			fail(c, "seq %llu of %s given to two publishes",
			    (unsigned long long)seq, gname[x->g]);
		groups[x->g].turn[seq] = x->turn;
		break;
	case X_HIST:
		if (strcmp(type, "history") != 0 ||
		    !jget(p, n, "events", &v))
			fail(c, "%s where history was due", type);
		check_history(c, x->g, v.p, v.n, x->a, x->b);
		break;
	default:
		fail(c, "reply %s where %d was due", type, x->kind);
	}
	pop(c);
}

static void
on_text(struct client *c, const uint8_t *pl, size_t n, int op)
{
	const char *p = (const char *)pl;
	struct exp *x = head(c);
	char type[80];

	if (c->kind == K_ECHO && x != NULL && x->kind == X_ECHO) {
		if (op != x->flag || n != x->dlen ||
		    (n > 0 && memcmp(pl, x->data, n) != 0))
			fail(c, "echo of a %zu-byte message differs", x->dlen);
		stats.echoes++;
		pop(c);
		return;
	}
	if (op != WS_OP_TEXT)
		fail(c, "a binary message from the hub");
	if (!jobject(p, n))
		fail(c, "a message that is not a JSON object: %.100s", p);
	if (jtext(p, n, "type", type, sizeof type) < 0)
		fail(c, "a message without a type");
	if (strcmp(type, "pong") == 0 || strcmp(type, "heartbeat_ack") == 0 ||
	    strcmp(type, "status") == 0 || strcmp(type, "subscribed") == 0 ||
	    strcmp(type, "unsubscribed") == 0 ||
	    strcmp(type, "published") == 0 || strcmp(type, "history") == 0 ||
	    strcmp(type, "error") == 0)
		on_reply(c, p, n, type);
	else
		on_event(c, p, n);
}

static void
on_close(struct client *c, const uint8_t *pl, size_t n)
{
	unsigned code = n >= 2 ? (unsigned)pl[0] << 8 | pl[1] : 1005;

	if (n == 1 || (n > 2 && !utf8_ok(pl + 2, n - 2)))
		fail(c, "close frame with a bad body");
	c->got_close = 1;
	c->close_code = code;
	stats.closes[code >= 1000 && code <= 1015 ? code - 1000 : 15]++;
	if (c->kind == K_BAD && c->want_close != 0) {
		if (code != c->want_close)
			fail(c, "close %u, want %u", code, c->want_close);
		c->bad_done = 1;
		stats.bad++;
	} else if (c->good) {
		/* A good client hears only these. */
		if (code == WS_CLOSE_GOING_AWAY) {
			if (stage != S_DRAIN)
				fail(c, "close 1001 before shutdown");
			/* Behind every event already accepted. */
			check_accepted(c, "close 1001");
			if (!strict)
				check_complete(c, "close 1001");
		} else if (code != WS_CLOSE_TRY_AGAIN &&
		    !(c->sent_close && code == c->want_close))
			fail(c, "close %u", code);
	}
	if (code == WS_CLOSE_TRY_AGAIN)
		resume(c);
	for (unsigned i = 0; i < c->nrec; i++)
		c->rec[i].live = 0;
	c->star_next = 0;
	if (!c->sent_close) {
		uint8_t b[2] = { code >> 8, code & 0xff };

		if (code == 1005)
			frame(c, 1, WS_OP_CLOSE, "", 0, 0, 0);
		else
			frame(c, 1, WS_OP_CLOSE, b, 2, 0, 0);
		c->sent_close = 1;
	}
	c->phase = P_CLOSING;
}

static void
on_frame(struct client *c, int op, const uint8_t *pl, size_t n)
{
	if (c->got_close)
		fail(c, "a frame after the close frame");
	switch (op) {
	case WS_OP_TEXT:
		if (!utf8_ok(pl, n))
			fail(c, "a text frame that is not UTF-8");
		/* FALLTHROUGH */
	case WS_OP_BINARY:
		on_text(c, pl, n, op);
		break;
	case WS_OP_PING:
		if (!c->sent_close && c->kind != K_MUTE)
			frame(c, 1, WS_OP_PONG, pl, n, 0, 0);
		break;
	case WS_OP_PONG:
		if (c->ping_end == 0 || n != strlen(c->ping_pl) ||
		    memcmp(pl, c->ping_pl, n) != 0)
			fail(c, "a pong that answers no ping of ours");
		c->ping_end = 0;
		stats.pongs++;
		break;
	case WS_OP_CLOSE:
		on_close(c, pl, n);
		break;
	}
}

/* Decode what arrived, HTTP first and frames after a 101. */
static void
parse(struct client *c)
{
	while (c->in.len > 0) {
		long n;

		if (c->phase == P_SSE) {
			sse_parse(c);
			return;
		}
		if (c->phase == P_HTTP) {
			struct resp r;
			int rc = http_resp(c->in.p, c->in.len, &r);

			if (rc == 0)
				return;
			if (rc < 0)
				fail(c, "malformed HTTP response: %.80s",
				    (char *)c->in.p);
			on_response(c, &r, c->in.p);
			n = r.len;
		} else {
			const uint8_t *pl;
			size_t plen;
			int op;

			if (c->upg != 2)
				fail(c, "bytes after the last response");
			n = srv_frame(c->in.p, c->in.len, &op, &pl, &plen);
			if (n == 0)
				return;
			if (n < 0)
				fail(c, "malformed frame from the server");
			on_frame(c, op, pl, plen);
		}
		buf_drop(&c->in, n);
	}
}

/* ==== Event-stream readers (GET /sse) ==================================== */

/*
 * K_SSE reads GET /sse?groups=G1,G2,... as a browser's EventSource does,
 * with a parser of its own for the WHATWG rules (HTML, "Server-sent
 * events"): a line ends at CR LF, CR or LF; a blank line dispatches the
 * record; ":" starts a comment; "data" lines are joined with LF; an "id"
 * line sets the last event ID buffer, which becomes the last event ID
 * string when the record is dispatched, whatever the record holds; a
 * record cut by the end of the stream is dropped.  Since a stream is
 * another way to the same events, it is held to what a WebSocket
 * subscriber is, and to what the README promises of the stream's wire:
 *
 *  - the head: 200, text/event-stream, no Content-Length, no-store, and
 *    CORS for a listed Origin; then "retry: 2000", then one "subscribed"
 *    per group (nothing else first), every data record one JSON object;
 *  - per group, events in seq order, each once, unless a history_gap
 *    record says what was skipped: in the reader's own epoch it must skip
 *    something; in another epoch (the group was made again) the stream
 *    goes on in that epoch from its oldest.  An event of another epoch
 *    without a history_gap is a failure, even for the scratch groups;
 *  - an event's id names every group of the stream once: the event's own
 *    group at exactly its epoch:seq, each other group where the reader
 *    stands in it (its last event there, or where it started); a mark
 *    (a record with only an id) the same for every group; a "*" event
 *    has no id: a broadcast has no position;
 *  - every event's bytes are the bytes every other receiver got for that
 *    seq, line breaks aside (a record's data lines are joined with LF);
 *  - a stream ends only for a reason the server logs for its connection:
 *    "slow consumer" (it fell --send-queue behind), or "shutdown" after
 *    SIGTERM, and then behind every event accepted before it, at the end
 *    of a record.
 *
 * A reader drops its connection now and then (a reset or a clean close)
 * and comes back, as EventSource does, with Last-Event-ID set to its last
 * id (or that list in ?since=, or both, when the header must win, since
 * the ?since= it sends then would replay from 0); a slow reader is ended
 * at --send-queue and comes back the same way.  The new reader takes its
 * model from the id it sends, so the next stream must go on from there
 * with no gap and no duplicate but an announced one.  A reader may come
 * back with one group fewer (the id's name is passed over) or one more
 * (it starts live).  Some readers have a partner that broadcasts to "*"
 * (star_pub), and every "*" published after a stream opened must reach
 * it while it lasts.
 */

/* The position of group g on c's stream: index in s->g, or -1. */
static int
sse_index(const struct client *c, int g)
{
	for (unsigned i = 0; i < c->sse->ng; i++)
		if (c->sse->g[i] == g)
			return i;
	return -1;
}

/*
 * The next NAME=EPOCH:SEQ of a position list at *s, before e: 1 with the
 * group (-1: not one of gname[]), epoch and seq; 0 at the end; -1 when
 * malformed.  wsd's ids always carry the epoch.
 */
static int
pos_next(const char **s, const char *e, int *g, char epoch[12],
    uint64_t *seq)
{
	const char *p = *s, *end, *eq, *colon;

	if (p >= e)
		return 0;
	if ((end = memchr(p, ',', e - p)) == NULL)
		end = e;
	if ((eq = memchr(p, '=', end - p)) == NULL || eq == p ||
	    (colon = memchr(eq, ':', end - eq)) == NULL ||
	    colon - eq - 1 != 8 || colon + 1 == end || end - colon > 20 ||
	    (end < e && end + 1 == e))
		return -1;
	*g = group_of(p, eq - p);
	memcpy(epoch, eq + 1, 8);
	epoch[8] = '\0';
	for (int i = 0; i < 8; i++)
		if (strchr("0123456789abcdef", epoch[i]) == NULL)
			return -1;
	*seq = 0;
	for (const char *q = colon + 1; q < end; q++) {
		if (*q < '0' || *q > '9')
			return -1;
		*seq = *seq * 10 + (*q - '0');
	}
	*s = end < e ? end + 1 : e;
	return 1;
}

/* A group name in a query, now and then with its ':' percent-encoded. */
static void
q_name(struct buf *q, const char *name)
{
	int enc = chance(200);

	for (const char *p = name; *p != '\0'; p++)
		if (*p == ':' && enc)
			buf_printf(q, "%%3A");
		else
			buf_put(q, p, 1);
}

/* The reader's last id as ?since=, now and then percent-encoded. */
static void
q_since(struct buf *q, const struct sse *s)
{
	int enc = chance(300);

	buf_printf(q, "since=");
	for (size_t i = 0; i < s->lastlen; i++)
		if (enc && strchr("=,:", s->lastid[i]) != NULL)
			buf_printf(q, "%%%02X", (unsigned char)s->lastid[i]);
		else
			buf_put(q, &s->lastid[i], 1);
}

/*
 * Ask for the stream: GET /sse with the groups, and the last id in
 * Last-Event-ID, ?since= or both (then ?since= holds "G=0" for every
 * group, which the header must override).
 */
static void
sse_request(struct client *c)
{
	struct sse *s = c->sse;
	struct buf q = { 0 };
	unsigned how = rn(10), o = rn(10);
	int in_query = s->lastlen > 0 && how >= 6 && how < 9;
	int both = s->lastlen > 0 && how == 9;
	struct exp *x;
	char og[96];

	if (c->good && chance(100)) {
		http_send(c, "GET", "/health", NULL, 0);
		expect(c, X_H_HEALTH);
	}
	buf_printf(&q, "GET /sse?");
	if (in_query && chance(300)) {
		q_since(&q, s);
		buf_printf(&q, "&");
		in_query = 0;
	}
	buf_printf(&q, "groups=");
	for (unsigned i = 0; i < s->ng; i++) {
		if (i > 0)
			buf_printf(&q, chance(200) ? "%%2C" : ",");
		q_name(&q, gname[s->g[i]]);
		if (chance(50)) {	/* asked twice: joined once */
			buf_printf(&q, ",");
			q_name(&q, gname[s->g[i]]);
		}
	}
	if (in_query) {
		buf_printf(&q, "&");
		q_since(&q, s);
	}
	if (both)
		for (unsigned i = 0; i < s->ng; i++)
			buf_printf(&q, "%s%s=0", i > 0 ? "," : "&since=",
			    gname[s->g[i]]);
	buf_printf(&q, " HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	    "Accept: text/event-stream\r\nCache-Control: no-cache\r\n",
	    SIM_PORT);
	if (s->lastlen > 0 && (how < 6 || both))
		buf_printf(&q, "Last-Event-ID: %.*s\r\n", (int)s->lastlen,
		    s->lastid);
	/* A page of wsd's own origin, or a listed one: both pass. */
	o = o == 0 ? O_OWN : o == 1 ? O_LISTED : O_NONE;
	if (o == O_LISTED && cors_origin == NULL)
		o = O_NONE;
	origin_line(o, og, sizeof og);
	buf_printf(&q, "%s\r\n", og);
	emit(c, q.p, q.len);
	buf_free(&q);
	x = expect(c, X_SSE);
	x->flag = o;
	for (unsigned i = 0; i < s->ng; i++) {
		struct rec *r = rec_find(c, s->g[i]);

		r->mem = M_JOINING;
		r->live = 0;
		r->moved = 0;
	}
	s->st = 1;
	s->nsub = s->retry = s->mark = 0;
	/* A browser's parser starts from the last event ID it has. */
	memcpy(s->idbuf, s->lastid, s->lastlen);
	s->idlen = s->lastlen;
	memcpy(s->asked, s->lastid, s->lastlen);
	s->askedlen = s->lastlen;
}

/* A new reader: its groups (1-4 of the pool, "*" aside) and its pace. */
static struct client *
sse_new(int good, unsigned gen)
{
	struct client *c = client_new(K_SSE, -1, good);
	struct sse *s;

	if (c == NULL)
		return NULL;
	s = c->sse;
	s->gen = gen;
	c->life = chance(600) ? 20 + (int)rn(500) : -1;
	/* Once its stream is open (sse_head), it reads now and then
	 * through a small window: it falls behind, and the server ends
	 * its stream. */
	s->slow = chance(250);
	return c;
}

static void
sse_add_group(struct client *c, int g)
{
	struct sse *s = c->sse;
	struct rec *r;

	if (g == G_STAR || sse_index(c, g) >= 0 || s->ng == MAXSG ||
	    s->ng >= hcfg.max_conn_groups || (r = rec_add(c, g)) == NULL)
		return;
	s->g[s->ng++] = g;
	r->next = 0;
	r->rpos = 0;
	r->epoch[0] = '\0';
}

static void
sse_spawn(void)
{
	struct client *c = sse_new(1, 0), *p;
	unsigned n = 1 + rn(MAXSG);

	if (c == NULL)
		return;
	for (unsigned i = 0; i < n; i++)
		sse_add_group(c, chance(500) ? pick_group() : (int)rn(NGROUP));
	if (c->sse->ng == 0)
		sse_add_group(c, G_BUSY);
	sse_request(c);
	/* A partner that broadcasts, so the reader sees "*" arrive. */
	if (chance(300) && (p = client_new(K_PUB, -1, 1)) != NULL) {
		p->star_pub = 1;
		p->life = 20 + rn(400);
	}
}

/*
 * The reader comes back on a new connection, as EventSource does: with
 * the last id it has, and the model that id names.  Now and then with a
 * group fewer or one more.
 */
static void
sse_successor(struct client *c)
{
	struct sse *s = c->sse, *ns;
	struct client *n;

	if (s->next_done || stage != S_RUN || s->gen + 1 >= SSE_GENS ||
	    (n = sse_new(c->good, s->gen + 1)) == NULL)
		return;
	s->next_done = 1;
	stats.resumes++;
	ns = n->sse;
	memcpy(ns->lastid, s->lastid, s->lastlen);
	ns->lastlen = s->lastlen;
	for (unsigned i = 0; i < s->ng; i++)
		if (!(s->ng > 1 && i + 1 == s->ng && chance(150)))
			sse_add_group(n, s->g[i]);
	if (chance(150))
		sse_add_group(n, rn(NGROUP));
	for (const char *p = s->lastid, *e = p + s->lastlen; ; ) {
		char epoch[12];
		uint64_t seq;
		struct rec *r;
		int g, rc = pos_next(&p, e, &g, epoch, &seq);

		if (rc == 0)
			break;
		if (rc < 0 || g < 0)
			fail(c, "its last id is not a position list: %.*s",
			    (int)s->lastlen, s->lastid);
		if (sse_index(n, g) < 0)
			continue;	/* passed over by the server */
		r = rec_find(n, g);
		memcpy(r->epoch, epoch, sizeof epoch);
		r->next = seq + 1;
		r->rpos = 1;
	}
	sse_request(n);
}

/* The head of the answer to GET /sse. */
static void
sse_head(struct client *c, const struct exp *x, const struct resp *r)
{
	struct sse *s = c->sse;

	if (r->status != 200) {
		/* Out of groups at --max-groups, past --max-connections, or
		 * draining: 503 (status_ok).  Nothing else. */
		if (!status_ok(c, x, r->status, 200) && c->good)
			fail(c, "GET /sse answered %d", r->status);
		for (unsigned i = 0; i < s->ng; i++)
			rec_find(c, s->g[i])->mem = M_NO;
		s->st = 3;
		stats.sse_refused++;
		return;
	}
	if (!r->stream)
		fail(c, "GET /sse: 200 that is not an endless event stream "
		    "(Content-Type %s%s)", r->ctype, r->has_len ?
		    ", with a Content-Length" : "");
	if (strstr(r->cache, "no-store") == NULL || strcmp(r->xaccel, "no"))
		fail(c, "GET /sse: Cache-Control \"%s\", X-Accel-Buffering "
		    "\"%s\"", r->cache, r->xaccel);
	if (x->flag == O_LISTED ? strcmp(r->acao, cors_origin) != 0 :
	    r->acao[0] != '\0')
		fail(c, "GET /sse: Access-Control-Allow-Origin \"%s\" for "
		    "origin kind %d", r->acao, x->flag);
	if ((cors_origin != NULL) != (strstr(r->vary, "Origin") != NULL))
		fail(c, "GET /sse: \"Vary: %s\"", r->vary);
	c->conn_close = 0;	/* the stream is what "close" ends */
	c->phase = P_SSE;
	if (s->slow) {
		c->read_every = chance(250) ? 1000 : 5 + rn(60);
		sim_set_win(c->h, 128 + rn(2048));
	}
	s->st = 2;
	s->turn = x->turn;
	s->last_rx = sim_now();
	for (unsigned i = 0; i < s->ng; i++)
		rec_find(c, s->g[i])->mem = M_YES;
	stats.sse_streams++;
}

/*
 * Check the id of the record just read against the reader's model: every
 * group of the stream once, at the epoch and seq it stands at, but g
 * (-1: none) at seq, the event the record holds.
 *
 * Open defect (routes_sse(): each group's replay is sent before the next
 * group's resume is set up), so with --lenient only: before the mark, an
 * id may name a group whose resume has not begun on this stream at the
 * group's live position.  The reader then does not take that id as its
 * Last-Event-ID (s->untrusted), so the rest is still checked.
 */
static void
sse_id_check(struct client *c, int g, uint64_t seq, const char *what)
{
	struct sse *s = c->sse;
	const char *p = s->idbuf, *e = p + s->idlen;
	unsigned seen = 0;

	for (;;) {
		char epoch[12];
		uint64_t q, want;
		int h, k, early, rc = pos_next(&p, e, &h, epoch, &q);
		struct rec *r;

		if (rc == 0)
			break;
		if (rc < 0)
			fail(c, "%s: a malformed id: %.*s", what,
			    (int)s->idlen, s->idbuf);
		if (h < 0 || (k = sse_index(c, h)) < 0)
			fail(c, "%s: its id names a group the stream is not "
			    "in: %.*s", what, (int)s->idlen, s->idbuf);
		if (seen & 1u << k)
			fail(c, "%s: its id names %s twice: %.*s", what,
			    gname[h], (int)s->idlen, s->idbuf);
		seen |= 1u << k;
		r = rec_find(c, h);
		want = h == g ? seq : r->next - 1;
		if (strcmp(epoch, r->epoch) == 0 && q == want)
			continue;
		early = h != g && r->rpos && !r->moved && !s->mark;
		if (early && !strict) {
			s->untrusted = 1;
			continue;
		}
		fail(c, "%s: its id says %s=%s:%llu, but the reader stands at "
		    "%s=%s:%llu (id %.*s)%s", what, gname[h], epoch,
		    (unsigned long long)q, gname[h], r->epoch,
		    (unsigned long long)want, (int)s->idlen, s->idbuf,
		    early ? "; the stream had not begun to resume "
		    "that group (--lenient leaves this out)" : "");
	}
	if (seen != (1u << s->ng) - 1)
		fail(c, "%s: its id leaves out a group of the stream: %.*s",
		    what, (int)s->idlen, s->idbuf);
}

/* The epoch an event's id gives its own group, "" if none. */
static void
sse_id_epoch(struct client *c, int g, char epoch[12])
{
	const char *p = c->sse->idbuf, *e = p + c->sse->idlen;
	uint64_t q;
	int h;

	epoch[0] = '\0';
	while (pos_next(&p, e, &h, epoch, &q) == 1)
		if (h == g)
			return;
	epoch[0] = '\0';
}

static void
sse_subscribed(struct client *c, const char *p, size_t n)
{
	struct sse *s = c->sse;
	char grp[80], epoch[40];
	uint64_t seq;
	struct rec *r;
	int g;

	if (jtext(p, n, "group", grp, sizeof grp) < 0 ||
	    jtext(p, n, "epoch", epoch, sizeof epoch) != 8 ||
	    !jnum(p, n, "seq", &seq))
		fail(c, "a subscribed record without group, epoch or seq: "
		    "%.*s", (int)n, p);
	if ((g = group_of(grp, strlen(grp))) < 0 || sse_index(c, g) < 0)
		fail(c, "subscribed to %s, which it did not ask for", grp);
	r = rec_find(c, g);
	if (r->live || s->mark)
		fail(c, "a second subscribed for %s, or one after the mark",
		    grp);
	if (!r->rpos) {
		/* Live from here: what the server had is not owed. */
		memcpy(r->epoch, epoch, 9);
		r->next = seq + 1;
	}
	if (seq > 0)
		seq_note(c, g, seq, NULL, 0);
	r->live = 1;
	s->nsub++;
}

static void
sse_gap(struct client *c, const char *p, size_t n)
{
	char grp[80], epoch[40];
	uint64_t seq, oldest;
	struct rec *r;
	int g;

	if (jtext(p, n, "group", grp, sizeof grp) < 0 ||
	    jtext(p, n, "epoch", epoch, sizeof epoch) != 8 ||
	    !jnum(p, n, "seq", &seq) || !jnum(p, n, "oldest", &oldest))
		fail(c, "history_gap without group, epoch, seq or oldest");
	if ((g = group_of(grp, strlen(grp))) < 0 || sse_index(c, g) < 0 ||
	    !(r = rec_find(c, g))->live)
		fail(c, "history_gap for %s before its subscribed, or not "
		    "asked for", grp);
	if (oldest == 0 || oldest > seq + 1)
		fail(c, "history_gap for %s: oldest %llu, seq %llu", grp,
		    (unsigned long long)oldest, (unsigned long long)seq);
	if (strcmp(epoch, r->epoch) == 0 && oldest <= r->next)
		fail(c, "history_gap for %s in its own epoch %s that skips "
		    "nothing: oldest %llu, next due %llu", grp, epoch,
		    (unsigned long long)oldest, (unsigned long long)r->next);
	memcpy(r->epoch, epoch, 9);
	r->next = oldest;
	r->moved = 1;
	if (oldest > 1)
		seq_note(c, g, oldest - 1, NULL, 0);
	stats.sse_gaps++;
}

static void
sse_event(struct client *c, const char *p, size_t n)
{
	struct sse *s = c->sse;
	char grp[80], type[80], epoch[12], what[120];
	uint64_t seq;
	struct rec *r;
	int g;

	g = envelope(c, p, n, grp, type, &seq, "record");
	seq_note_as(c, g, seq, (const uint8_t *)p, n, 1);
	stats.sse_events++;
	if (g == G_STAR) {
		if (s->has_id)
			fail(c, "a \"*\" event with an id: %.*s",
			    (int)s->idlen, s->idbuf);
		if (c->star_next != 0 && seq != c->star_next)
			fail(c, "* seq %llu, expected %llu",
			    (unsigned long long)seq,
			    (unsigned long long)c->star_next);
		c->star_next = seq + 1;
		stats.sse_star++;
		return;
	}
	snprintf(what, sizeof what, "event %s/%llu", grp,
	    (unsigned long long)seq);
	if (sse_index(c, g) < 0)
		fail(c, "%s: a group the stream is not in", what);
	r = rec_find(c, g);
	if (!r->live)
		fail(c, "%s before its subscribed record", what);
	if (!s->has_id)
		fail(c, "%s without an id", what);
	sse_id_epoch(c, g, epoch);
	if (strcmp(epoch, r->epoch) != 0)
		fail(c, "%s: in epoch %s, but the reader is in %s and no "
		    "history_gap said so", what, epoch, r->epoch);
	if (seq < r->next)
		fail(c, "%s again or out of order (next due %llu)", what,
		    (unsigned long long)r->next);
	if (seq > r->next)
		fail(c, "%s but %llu is due: a gap without history_gap", what,
		    (unsigned long long)r->next);
	sse_id_check(c, g, seq, what);
	r->next++;
	r->moved = 1;
}

/* A record with data: one JSON object. */
static void
sse_data(struct client *c, const char *p, size_t n)
{
	struct sse *s = c->sse;
	char type[80], code[40];

	if (!jobject(p, n))
		fail(c, "a record whose data is not one JSON object: %.100s",
		    p);
	if (jtext(p, n, "type", type, sizeof type) < 0)
		fail(c, "a record without a type: %.100s", p);
	if (strcmp(type, "subscribed") != 0 && s->nsub < s->ng)
		fail(c, "a %s record before every group's subscribed", type);
	if (strcmp(type, "subscribed") == 0 || strcmp(type, "error") == 0) {
		if (s->has_id)
			fail(c, "a %s record with an id", type);
		if (type[0] == 's')
			sse_subscribed(c, p, n);
		else if (jtext(p, n, "code", code, sizeof code) > 0 &&
		    strcmp(code, "history_gap") == 0)
			sse_gap(c, p, n);
		else
			fail(c, "an error record on a stream: %.100s", p);
		return;
	}
	sse_event(c, p, n);
}

/* A blank line: the record is dispatched. */
static void
sse_dispatch(struct client *c)
{
	struct sse *s = c->sse;

	if (s->nfields == 0)
		fail(c, "an empty record: wsd sends one blank line a record");
	if (s->comment) {
		if (s->nfields != 1)
			fail(c, "a comment among a record's fields");
		stats.sse_beats++;
	} else if (s->has_retry) {
		if (s->retry || s->nfields != 1 || s->retry_ms != 2000)
			fail(c, "a retry record that is not the first, alone, "
			    "or 2000 (%u)", s->retry_ms);
		s->retry = 1;
	} else if (!s->retry)
		fail(c, "a record before the retry record");
	else if (s->has_data) {
		/* The data buffer's last LF is not part of the data. */
		s->data.len--;
		buf_put(&s->data, "", 1);
		sse_data(c, (const char *)s->data.p, s->data.len - 1);
	} else {
		/* A mark: where the stream stands, in every group. */
		if (s->nsub < s->ng)
			fail(c, "a mark before every group's subscribed");
		sse_id_check(c, -1, 0, "a mark");
		s->mark = 1;
		stats.sse_marks++;
	}
	/* WHATWG: the last event ID string is set from the buffer at every
	 * dispatch; records without an id leave the buffer as it was. */
	if (s->untrusted) {
		memcpy(s->idbuf, s->lastid, s->lastlen);
		s->idlen = s->lastlen;
		s->untrusted = 0;
		stats.sse_early++;
	}
	memcpy(s->lastid, s->idbuf, s->idlen);
	s->lastlen = s->idlen;
	s->data.len = 0;
	s->has_id = s->has_data = s->has_retry = s->comment = 0;
	s->nfields = 0;
}

/* One line (without its line break), by the WHATWG rules. */
static void
sse_line(struct client *c, const uint8_t *p, size_t n)
{
	struct sse *s = c->sse;
	const uint8_t *colon, *v;
	size_t fl, vl;

	if (n == 0) {
		sse_dispatch(c);
		return;
	}
	if (!utf8_ok(p, n))
		fail(c, "a line of the stream that is not UTF-8");
	s->nfields++;
	if (p[0] == ':') {
		s->comment = 1;
		return;
	}
	colon = memchr(p, ':', n);
	fl = colon != NULL ? (size_t)(colon - p) : n;
	v = colon != NULL ? colon + 1 : p + n;
	vl = p + n - v;
	if (vl > 0 && *v == ' ') {
		v++;
		vl--;
	}
	if (fl == 4 && memcmp(p, "data", 4) == 0) {
		buf_put(&s->data, v, vl);
		buf_put(&s->data, "\n", 1);
		s->has_data = 1;
	} else if (fl == 2 && memcmp(p, "id", 2) == 0) {
		if (s->has_id || memchr(v, '\0', vl) != NULL || vl >= IDMAX)
			fail(c, "a second id line, or one of %zu bytes or with "
			    "NUL", vl);
		memcpy(s->idbuf, v, vl);
		s->idlen = vl;
		s->has_id = 1;
	} else if (fl == 5 && memcmp(p, "retry", 5) == 0) {
		s->retry_ms = 0;
		for (size_t i = 0; i < vl; i++) {
			if (v[i] < '0' || v[i] > '9' || i > 8)
				fail(c, "retry: %.*s", (int)vl, v);
			s->retry_ms = s->retry_ms * 10 + (v[i] - '0');
		}
		s->has_retry = 1;
	} else
		fail(c, "a field wsd does not send: %.*s", (int)(fl < 40 ?
		    fl : 40), p);
}

/* What arrived on the stream: lines, at CR LF, CR or LF. */
static void
sse_parse(struct client *c)
{
	struct sse *s = c->sse;
	const uint8_t *p = c->in.p, *e = p + c->in.len;

	if (!s->started) {
		/* A leading U+FEFF is dropped (wsd sends none). */
		if (e - p < 3 && memcmp(p, "\xef\xbb\xbf", e - p) == 0)
			return;
		if (memcmp(p, "\xef\xbb\xbf", 3) == 0)
			p += 3;
		s->started = 1;
	}
	while (p < e && c->phase == P_SSE) {
		const uint8_t *q = p;

		if (s->cr && *p == '\n') {
			s->cr = 0;	/* the LF of a CR LF */
			p++;
			continue;
		}
		s->cr = 0;
		while (q < e && *q != '\r' && *q != '\n')
			q++;
		buf_put(&s->line, p, q - p);
		p = q;
		if (q == e)
			break;
		if (s->line.len > (8u << 20))
			fail(c, "a line of %zu bytes", s->line.len);
		s->cr = *q == '\r';
		p++;
		sse_line(c, s->line.p, s->line.len);
		s->line.len = 0;
	}
	buf_drop(&c->in, p - c->in.p);
}

/* After the quiet phase: every event, and every "*" published since the
 * stream opened, has arrived; each group is still in its epoch. */
static void
sse_complete(struct client *c)
{
	struct sse *s = c->sse;
	const struct mgroup *m = &groups[G_STAR];

	if (!s->mark)
		fail(c, "quiet: the stream never sent its mark");
	check_complete(c, "quiet");
	for (uint64_t q = c->star_next ? c->star_next : 1; q <= m->maxseq; q++)
		if (m->turn[q] > s->turn)
			fail(c, "quiet: * seq %llu, published in turn %llu, "
			    "after the stream opened (turn %llu), never came",
			    (unsigned long long)q,
			    (unsigned long long)m->turn[q],
			    (unsigned long long)s->turn);
	for (unsigned i = 0; i < s->ng; i++) {
		struct hub_group *hg = hub_group(gname[s->g[i]],
		    strlen(gname[s->g[i]]), 0);
		struct rec *r = rec_find(c, s->g[i]);

		if (hg == NULL || strcmp(hub_group_epoch(hg), r->epoch) != 0)
			fail(c, "quiet: %s is in epoch %s, the reader in %s",
			    gname[s->g[i]], hg ? hub_group_epoch(hg) : "none",
			    r->epoch);
	}
}

/*
 * SIGTERM ends every stream (what is queued goes out, then the connection
 * closes): no event published after its turn may come on a stream open
 * then.  Checked once the publishes have all been answered.
 */
static void
sse_after_sigterm(struct client *c)
{
	for (unsigned i = 0; i < c->sse->ng; i++) {
		struct rec *r = rec_find(c, c->sse->g[i]);
		const struct mgroup *m = &groups[r->g];

		if (r->g >= G_SCRATCH)
			continue;
		for (uint64_t q = r->next ? r->next - 1 : 0; q > 0 &&
		    q < m->cap; q--) {
			if (m->turn[q] > sigterm_turn)
				fail(c, "%s seq %llu, published in turn %llu, "
				    "came on a stream SIGTERM (turn %llu) "
				    "should have ended", gname[r->g],
				    (unsigned long long)q,
				    (unsigned long long)m->turn[q],
				    (unsigned long long)sigterm_turn);
			if (m->turn[q] != 0)
				break;
		}
	}
}

/* The server ended the stream (EOF or reset): for a reason it logged. */
static void
sse_ended(struct client *c)
{
	struct sse *s = c->sse;
	const char *why = s->why[0] != '\0' ? s->why : "none logged";
	int midrec = s->line.len > 0 || s->nfields > 0;

	stats.sse_ends++;
	if (!c->good)
		return;
	if (sigterm_turn != 0 && strcmp(why, "shutdown") == 0) {
		if (s->why_step != shutdown_step)
			fail(c, "SIGTERM was handled in turn %llu, its stream "
			    "ended in turn %llu", (unsigned long long)
			    shutdown_step, (unsigned long long)s->why_step);
		if (midrec)
			fail(c, "SIGTERM ended the stream in the middle of a "
			    "record");
		if (!s->slow)
			check_accepted(c, "the end of the stream");
		return;
	}
	if (strcmp(why, "slow consumer") != 0)
		fail(c, "the server ended the stream (its log says: %s)", why);
	stats.sse_slow++;
}

/* A reader's move: drop the stream now and then, or send it junk. */
static void
act_sse(struct client *c)
{
	struct sse *s = c->sse;
	const struct sim_sock *k = sock_of(c);

	if (s->st == 3) {
		/* Refused: a page reload tries again. */
		sse_successor(c);
		client_gone(c);
		return;
	}
	if (stage != S_RUN && s->slow) {
		/* Traffic is over: it catches up. */
		s->slow = 0;
		c->read_every = 1;
		sim_set_win(c->h, 256 << 10);
		s->last_rx = sim_now();
	}
	if (c->phase != P_SSE)
		return;
	if (stage == S_RUN && c->life == 0) {
		stats.sse_cuts++;
		sse_successor(c);
		if (chance(500))
			client_reset(c);
		else
			client_gone(c);	/* a clean close */
		return;
	}
	/* Whatever a reader sends on a stream is read and dropped. */
	if (stage == S_RUN && chance(3)) {
		const char *junk = chance(500) ? "x\n" :
		    "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

		emit(c, junk, strlen(junk));
	}
	/* An idle stream gets a comment every --ping-interval. */
	if (c->good && !s->slow && srv_open(c) && !k->srv_shut &&
	    sim_now() - s->last_rx > 2 * (uint64_t)wcfg.ping_interval_ms + 1000)
		fail(c, "an open stream silent for %llu ms (--ping-interval "
		    "%u)", (unsigned long long)(sim_now() - s->last_rx),
		    wcfg.ping_interval_ms);
}

/* The daemon's log says which connection is which stream, and why a
 * connection ended: "connection opened conn=N" as it accepts one. */
static void
on_log(const char *p, size_t n)
{
	char line[512], *k;
	struct client *c;
	unsigned long long id;
	int h;

	if (n >= sizeof line)
		n = sizeof line - 1;
	memcpy(line, p, n);
	line[n] = '\0';
	if ((k = strstr(line, "connection opened conn=")) != NULL) {
		id = strtoull(k + 23, NULL, 10);
		h = sim_last_accept();
		if (h < 0 || h >= nbyhandle || (c = byhandle[h]) == NULL ||
		    c->sse == NULL)
			return;
		c->sse->conn = id;
		if (id >= nbyconn) {
			size_t ncap = nbyconn ? nbyconn : 256;

			while (ncap <= id)
				ncap *= 2;
			byconn = xrealloc(byconn, ncap * sizeof *byconn);
			memset(byconn + nbyconn, 0, (ncap - nbyconn) *
			    sizeof *byconn);
			nbyconn = ncap;
		}
		byconn[id] = c;
	} else if ((k = strstr(line, "connection closed conn=")) != NULL) {
		char *r = strstr(k, "reason=\""), *e;

		id = strtoull(k + 23, NULL, 10);
		if (id >= nbyconn || (c = byconn[id]) == NULL || r == NULL ||
		    (e = strchr(r + 8, '"')) == NULL)
			return;
		snprintf(c->sse->why, sizeof c->sse->why, "%.*s",
		    (int)(e - r - 8), r + 8);
		c->sse->why_step = sim_step();
	} else if (strstr(line, "shutting down connections=") != NULL)
		shutdown_step = sim_step();
}

/* ==== Client lifetimes =================================================== */

static const char *
route_path(struct client *c, char *out, size_t cap, uint64_t since,
    int with_since)
{
	char q[40] = "";

	if (with_since)
		snprintf(q, sizeof q, "?since=%llu", (unsigned long long)since);
	if (c->route >= G_SESS)
		snprintf(out, cap, "%s/ws/sessions/c%d%s", chance(300) ?
		    "/api/v1" : "", c->route - G_SESS, q);
	else
		snprintf(out, cap, "%s/ws/%s%s", chance(300) ? "/api/v1" : "",
		    gname[c->route], q);
	return out;
}

/* Ask for the upgrade to the route (or /echo), maybe behind a request. */
static void
open_route(struct client *c, int with_since, uint64_t since)
{
	char path[160];
	struct exp *x;
	struct rec *r;

	if (c->good && chance(100)) {
		http_send(c, "GET", "/health", NULL, 0);
		expect(c, X_H_HEALTH);
	}
	if (c->kind == K_ECHO)
		upgrade_req(c, "/echo");
	else {
		r = rec_add(c, c->route);
		r->mem = M_JOINING;
		r->since = with_since ? since : 0;
		if (!with_since)
			r->since = (uint64_t)-1;	/* next unknown */
		upgrade_req(c, route_path(c, path, sizeof path, since,
		    with_since));
	}
	x = expect(c, X_UPGRADE);
	x->data = (uint8_t *)strdup(wskey);
	c->upg = 1;
}

static struct client *
client_new(int kind, int route, int good)
{
	struct client *c = calloc(1, sizeof *c);
	size_t win;

	if (c == NULL)
		_exit(2);
	c->kind = kind;
	c->good = good;
	c->route = route;
	c->sess = route >= G_SESS ? route - G_SESS : -1;
	c->id = ncl;
	c->mon_cur = -1;
	c->life = -1;
	c->read_every = 1;
	c->last_tx = sim_now();
	win = kind == K_SLOW ? 128 + rn(2048) : kind == K_MUTE ? 4096 :
	    (64 << 10) + rn(192 << 10);
	if (kind == K_SSE && (c->sse = calloc(1, sizeof *c->sse)) == NULL)
		_exit(2);
	if ((c->h = sim_connect(win)) < 0) {
		free(c->sse);
		free(c);
		return NULL;
	}
	if (c->h >= nbyhandle) {
		int ncap = nbyhandle ? nbyhandle : 256;

		while (ncap <= c->h)
			ncap *= 2;
		byhandle = xrealloc(byhandle, ncap * sizeof *byhandle);
		memset(byhandle + nbyhandle, 0, (ncap - nbyhandle) *
		    sizeof *byhandle);
		nbyhandle = ncap;
	}
	byhandle[c->h] = c;
	if (ncl == clcap) {
		clcap = clcap ? clcap * 2 : 256;
		cl = xrealloc(cl, clcap * sizeof *cl);
	}
	cl[ncl++] = c;
	nlive++;
	return c;
}

static void
spawn(void)
{
	unsigned r = rn(100);
	struct client *c;
	int route = chance(600) ? G_BUSY : 1 + rn(G_PLAIN - 1);

	if (r < 8) {
		route = G_SESS + rn(NCID);
		r = 0;
	}
	if (r < 35) {
		if ((c = client_new(K_SUB, route, 1)) == NULL)
			return;
		open_route(c, 1, pick_since(route));
		c->life = chance(300) ? 50 + (int)rn(1000) : -1;
	} else if (r < 50) {
		if ((c = client_new(K_PUB, -1, 1)) == NULL)
			return;
		c->life = 20 + rn(400);
	} else if (r < 53) {
		if ((c = client_new(K_MON, G_MONITOR, 1)) == NULL)
			return;
		open_route(c, 1, groups[G_MONITOR].maxseq);
	} else if (r < 58) {
		if (!wcfg.echo || (c = client_new(K_ECHO, -1, 1)) == NULL)
			return;
		open_route(c, 0, 0);
		c->life = 20 + rn(300);
	} else if (r < 74) {
		if ((c = client_new(K_CHURN, chance(800) ? G_BUSY : route, 0)) ==
		    NULL)
			return;
		open_route(c, chance(300), groups[c->route].maxseq);
		if (chance(400))
			ws_subscribe(c, chance(500) ? G_SCRATCH + rn(4) :
			    1 + rn(G_PLAIN - 1), 0, 0);
		c->life = 1 + rn(40);
		c->read_every = 1 + rn(3);
	} else if (r < 80) {
		sse_spawn();
	} else if (r < 84) {
		if ((c = client_new(K_SLOW, G_BUSY, 0)) == NULL)
			return;
		open_route(c, 1, pick_since(G_BUSY));
		c->read_every = 5 + rn(60);
	} else if (r < 86) {
		if ((c = client_new(K_MUTE, route, 0)) == NULL)
			return;
		open_route(c, 0, 0);
		c->life = 100 + rn(1000);
	} else if (r < 90) {
		if ((c = client_new(K_HALF, -1, 0)) == NULL)
			return;
		if (chance(500))
			h_publish(c);
		else {
			http_send(c, "GET", "/health", NULL, 0);
			expect(c, X_H_HEALTH);
		}
		c->life = 1 + rn(5);
	} else {
		if ((c = client_new(K_BAD, route, 0)) == NULL)
			return;
		if (chance(500))
			bad_http(c);
		else
			open_route(c, 0, 0);
		c->life = 30 + rn(200);
	}
}

/*
 * A subscriber closed with 1013 resumes, as a prompt reader: a new
 * connection asks for its route since the last event it has, and
 * subscribes again since the last event of each other group it was in.
 * The new client takes over the records, so the events must go on from
 * exactly where they stopped, or after an explicit history_gap.
 */
static void
resume(struct client *c)
{
	struct client *n;
	struct rec *r;

	if (c->kind != K_SUB && c->kind != K_MON && c->kind != K_SLOW)
		return;
	if ((c->resumes >= 3 && !c->keeper) || stage != S_RUN ||
	    (n = client_new(c->kind == K_SLOW ? K_SUB : c->kind, c->route,
	    1)) == NULL)
		return;
	n->resumes = c->resumes + 1;
	stats.resumes++;
	n->keeper = c->keeper;
	r = rec_find(c, c->route);
	open_route(n, 1, r != NULL && r->next > 0 ? r->next - 1 : 0);
	for (unsigned i = 0; i < c->nrec; i++)
		if (c->rec[i].g != c->route && c->rec[i].mem == M_YES &&
		    c->rec[i].next > 0)
			ws_subscribe(n, c->rec[i].g, 1, c->rec[i].next - 1);
	n->life = c->life;
}

/* The client closes its socket: it reads no more. */
static void
client_gone(struct client *c)
{
	if (c->phase == P_DONE)
		return;
	sim_close(c->h);
	c->phase = P_DONE;
	c->closed_step = sim_step();
	buf_free(&c->out);
	buf_free(&c->in);
	if (c->sse != NULL) {
		buf_free(&c->sse->line);
		buf_free(&c->sse->data);
	}
	while (c->qn > 0)
		pop(c);
	nlive--;
}

static void
client_reset(struct client *c)
{
	stats.resets++;
	sim_reset(c->h);
	client_gone(c);
}

/* Start the closing handshake from our side (RFC 6455 §7.1.2). */
static void
start_close(struct client *c, unsigned code)
{
	uint8_t b[2] = { code >> 8, code & 0xff };

	frame(c, 1, WS_OP_CLOSE, b, 2, 0, 0);
	c->sent_close = 1;
	c->want_close = code;
	c->phase = P_CLOSING;
	for (unsigned i = 0; i < c->nrec; i++)
		c->rec[i].live = 0;
	c->star_next = 0;
}

/* EOF or a reset from the server. */
static void
on_eof(struct client *c, int reset)
{
	const struct sim_sock *s = sock_of(c);
	struct exp *x = head(c);

	if (c->good && stage != S_DRAIN && !c->conn_close) {
		if (c->phase == P_WS)
			fail(c, "connection %s without a close frame",
			    reset ? "reset" : "closed");
		if (c->phase == P_HTTP && x != NULL && x->end <= s->rd)
			fail(c, "connection %s with a response owed",
			    reset ? "reset" : "closed");
	}
	if (c->kind == K_BAD && c->want_close != 0 && !c->bad_done &&
	    !c->sent_close)
		fail(c, "closed without the close %u due", c->want_close);
	if (c->kind == K_SSE) {
		if (c->phase == P_SSE)
			sse_ended(c);
		sse_successor(c);	/* EventSource comes back */
	}
	client_gone(c);
}

static void
transmit(struct client *c)
{
	size_t n = c->out.len;
	ssize_t k;

	if (n == 0)
		return;
	if (chance(500))
		n = 1 + rn(n);
	if ((k = sim_send(c->h, c->out.p, n)) > 0) {
		buf_drop(&c->out, k);
		c->last_tx = sim_now();
	} else if (k < 0 && errno != EAGAIN)
		c->out.len = 0;		/* the server is gone: EOF is next */
}

static void
receive(struct client *c)
{
	static uint8_t tmp[65536];
	int eof = 0, reset = 0;

	for (int i = 0; i < 8; i++) {
		size_t cap = chance(100) ? 1 + rn(64) : sizeof tmp;
		ssize_t n = sim_recv(c->h, tmp, cap);

		if (n > 0) {
			buf_put(&c->in, tmp, n);
			if (c->sse != NULL)
				c->sse->last_rx = sim_now();
			continue;
		}
		if (n == 0)
			eof = 1;
		else if (errno == ECONNRESET)
			eof = reset = 1;
		break;
	}
	parse(c);
	if (eof)
		on_eof(c, reset);
}

/* Clients make requests: in the traffic phase, and with --strict also
 * around SIGTERM (a hot shutdown). */
static int
traffic(void)
{
	return stage == S_RUN || (strict && (stage == S_HOT ||
	    stage == S_DRAIN));
}

/* A good WebSocket client's next move. */
static void
act_ws(struct client *c)
{
	unsigned r = rn(1000);
	struct rec *rr;
	int g;

	if (c->life == 0 && c->qn == 0) {
		start_close(c, chance(500) ? 1000 : 3000 + rn(1000));
		return;
	}
	if (!traffic() || c->qn > 8 || c->keeper)
		goto idle;
	if (c->kind == K_ECHO) {
		if (r < 80) {
			size_t n = chance(30) ? rn(wcfg.max_message < 70000 ?
			    wcfg.max_message : 70000) : rn(200);
			struct exp *x;
			int op = chance(700) ? WS_OP_TEXT : WS_OP_BINARY;
			uint8_t *m = xrealloc(NULL, n + 1);

			for (size_t i = 0; i < n; i++)
				m[i] = op == WS_OP_TEXT ? 'a' + rn(26) : rnd();
			if (op == WS_OP_TEXT && n >= 2 && chance(300)) {
				m[0] = 0xc3;		/* é */
				m[1] = 0xa9;
			}
			message(c, op, m, n);
			x = expect(c, X_ECHO);
			x->flag = op;
			x->data = m;
			x->dlen = n;
		} else if (r < 90 && c->ping_end == 0)
			ctl_ping(c);
		goto idle;
	}
	if (c->kind == K_MON)
		goto idle;
	if (r < 10) {
		g = chance(100) ? G_MONITOR : pick_group();
		if ((rr = rec_find(c, g)) == NULL || rr->mem == M_NO)
			ws_subscribe(c, g, chance(500), pick_since(g));
	} else if (r < 14) {
		rr = c->nrec > 0 ? &c->rec[rn(c->nrec)] : NULL;
		if (rr != NULL && rr->mem == M_YES)
			ws_unsubscribe(c, rr);
	} else if (r < 30)
		ws_publish(c);
	else if (r < 33)
		ws_history(c);
	else if (r < 36)
		ws_simple(c, "ping", X_PONG);
	else if (r < 38)
		ws_simple(c, "heartbeat", X_HBACK);
	else if (r < 40)
		ws_simple(c, "get_status", X_STATUS);
	else if (r < 43 && c->ping_end == 0)
		ctl_ping(c);
idle:
	/* Not silent for long: --ping-timeout is for the dead. */
	if (sim_now() - c->last_tx > wcfg.ping_interval_ms / 3 &&
	    c->out.len == 0 && !c->sent_close && c->kind != K_ECHO)
		ws_simple(c, "heartbeat", X_HBACK);
	else if (sim_now() - c->last_tx > wcfg.ping_interval_ms / 3 &&
	    c->out.len == 0 && !c->sent_close && c->ping_end == 0)
		ctl_ping(c);
}

static void
act(struct client *c)
{
	const struct sim_sock *s = sock_of(c);

	if (c->phase == P_DONE)
		return;
	/* Lives stop with the traffic, so the quiet phase is quiet. */
	if (c->life > 0 && stage == S_RUN)
		c->life--;
	/* Churn: gone without a word, mostly with a reset. */
	if (c->kind == K_CHURN && c->life == 0) {
		unsigned r = rn(10);

		if (r < 6)
			client_reset(c);
		else if (r < 9)
			client_gone(c);
		else {
			sim_shut(c->h);
			stats.halves++;
			c->life = 1 + rn(5);
			c->kind = K_HALF;
		}
		return;
	}
	if (c->kind == K_HALF && c->life == 0) {
		if (!s->cli_shut && c->out.len == 0) {
			sim_shut(c->h);
			stats.halves++;
			c->life = 20 + rn(30);
		} else if (s->cli_shut)
			client_gone(c);
	}
	if (c->kind == K_BAD && c->upg == 2 && c->qn == 0 && !c->want_close &&
	    !c->bad_done && !c->sent_close && c->phase == P_WS)
		bad_ws(c);
	if ((c->kind == K_BAD || c->kind == K_MUTE || c->kind == K_SLOW) &&
	    c->life == 0) {
		client_gone(c);
		return;
	}
	if (c->kind == K_MUTE && stage == S_RUN && chance(20) &&
	    c->phase == P_WS) {
		text(c, "{\"type\":\"ping\",\"id\":1}");
		expect(c, X_PONG)->id = 1;
	}
	if (c->good && c->phase == P_WS)
		act_ws(c);
	if (c->kind == K_PUB && c->phase == P_HTTP) {
		if (c->life == 0 || (!traffic() && c != auditor)) {
			if (c->qn == 0 && c != auditor)
				client_gone(c);
		} else if (c != auditor && c->qn < MAXPEND && chance(250))
			h_request(c);
		if (c->phase == P_DONE)
			return;
	}
	if (c->kind == K_CHURN && c->phase == P_WS && chance(50))
		ws_publish(c);
	if (c->kind == K_SSE) {
		act_sse(c);
		if (c->phase == P_DONE)
			return;
	}
	transmit(c);
	if (c->kind != K_MUTE && sim_step() % c->read_every == 0)
		receive(c);
	/* After both close frames, or a refusal: close at EOF. */
}

/* ==== Invariants ========================================================= */

/* Output owed to c that the server has had the chance to write. */
static int
owed(struct client *c)
{
	const struct sim_sock *s = sock_of(c);
	struct exp *x = head(c);

	if (c->sent_close || c->got_close || c->conn_close)
		return 0;
	if (x != NULL && x->end <= s->rd)
		return 1;
	if (c->ping_end != 0 && c->ping_end <= s->rd)
		return 1;
	/* A stream the server ended owes nothing more. */
	if (c->phase == P_SSE && s->srv_shut)
		return 0;
	if (c->phase != P_WS && c->phase != P_SSE)
		return 0;
	for (unsigned i = 0; i < c->nrec; i++) {
		struct rec *r = &c->rec[i];

		if (r->live && r->mem == M_YES && r->next != 0 &&
		    r->next <= groups[r->g].maxseq)
			return 1;
	}
	return c->star_next != 0 && c->star_next <= groups[G_STAR].maxseq;
}

static void
check_step(void)
{
	unsigned lo[NGROUP] = { 0 }, hi[NGROUP] = { 0 };
	unsigned ws_lo = 0, ws_hi = 0, s_lo = 0, s_hi = 0, st_lo = 0, st_hi = 0;
	unsigned c_yes[NCID] = { 0 }, c_maybe[NCID] = { 0 };
	uint64_t step = sim_step();

	if (ws_stats_get()->connections != sim_open_conns())
		fail(NULL, "ws_stats_get()->connections %llu, but %u are open",
		    (unsigned long long)ws_stats_get()->connections, sim_open_conns());
	if (hub_history_total() > hcfg.history_total)
		fail(NULL, "history holds %zu bytes, --history-total %zu",
		    hub_history_total(), hcfg.history_total);
	if (hub_group_count() > hcfg.max_groups)
		fail(NULL, "%u groups, --max-groups %u", hub_group_count(),
		    hcfg.max_groups);
	if (sim_spinning() > SPIN)
		fail(NULL, "an fd was ready %u steps in a row and not served",
		    sim_spinning());
	for (int i = 0; i < ncl; i++) {
		struct client *c = cl[i];
		const struct sim_sock *s = sock_of(c);

		if (c->phase == P_DONE && !s->srv_closed && !s->refused &&
		    (s->cli_rst || s->cli_closed) &&
		    step - c->closed_step > FREE_STEPS)
			fail(c, "closed by its client %llu steps ago, still open "
			    "in the server", (unsigned long long)(step -
			    c->closed_step));
		if (!srv_open(c))
			continue;
		/* The turn just run read these requests. */
		for (unsigned k = c->qn; k > 0; k--) {
			struct exp *x = &c->q[(c->qh + k - 1) % c->qcap];

			if (x->turn == 0 && x->end <= s->rd)
				x->turn = step - 1;
			else if (x->turn != 0)
				break;
		}
		if (c->upg == 2)
			ws_lo++;
		if (c->upg == 1 || c->upg == 2)
			ws_hi++;
		if (c->sse != NULL) {
			st_lo += c->sse->st == 2 && c->phase == P_SSE;
			st_hi += c->sse->st == 1 || c->sse->st == 2;
		}
		for (unsigned k = 0; k < c->nrec; k++) {
			struct rec *r = &c->rec[k];

			lo[r->g] += r->mem == M_YES;
			hi[r->g] += r->mem != M_NO;
		}
		if (c->sess >= 0 && c->upg == 2)
			c_yes[c->sess]++;
		if (c->sess >= 0 && (c->upg == 1 || c->upg == 2))
			c_maybe[c->sess]++;
		/* Owed output gets written while the client reads. */
		if (c->good && c->phase != P_DONE) {
			/* A slow reader's unread bytes wait for it, not the
			 * server. */
			if (s->wr != c->last_wr || !owed(c) ||
			    s->s2c_len >= s->win ||
			    (c->sse != NULL && c->sse->slow && s->s2c_len > 0))
				c->stall = 0;
			else if (++c->stall > STALL)
				fail(c, "owed output, nothing written for %d "
				    "steps (replies due %u, step of the last "
				    "write %llu)", STALL, c->qn,
				    (unsigned long long)s->wr_step);
			c->last_wr = s->wr;
		}
	}
	if (ws_stats_get()->websockets < ws_lo || ws_stats_get()->websockets > ws_hi)
		fail(NULL, "ws_stats_get()->websockets %llu, clients say %u..%u",
		    (unsigned long long)ws_stats_get()->websockets, ws_lo, ws_hi);
	if (ws_stats_get()->streams < st_lo || ws_stats_get()->streams > st_hi)
		fail(NULL, "ws_stats_get()->streams %llu, readers say %u..%u",
		    (unsigned long long)ws_stats_get()->streams, st_lo, st_hi);
	for (int g = 0; g < NGROUP; g++) {
		struct hub_group *hg;
		unsigned n;

		if (g == G_STAR)
			continue;
		hg = hub_group(gname[g], strlen(gname[g]), 0);
		n = hg != NULL ? hub_group_subscribers(hg) : 0;
		if (n < lo[g] || n > hi[g])
			fail(NULL, "%s has %u subscribers, clients say %u..%u",
			    gname[g], n, lo[g], hi[g]);
	}
	for (int i = 0; i < NHID; i++) {
		s_lo += hsess[i].alive && !hsess[i].busy;
		s_hi += hsess[i].alive || hsess[i].busy;
	}
	for (unsigned i = 0; i < nrsess; i++) {
		s_lo += rsess[i].alive && !rsess[i].busy;
		s_hi += rsess[i].alive || rsess[i].busy;
	}
	s_hi += rpost;
	for (int i = 0; i < NCID; i++) {
		int linger = hcfg.session_ttl_ms > 0 && clast[i] != 0 &&
		    sim_now() - clast[i] < hcfg.session_ttl_ms +
		    hcfg.tick_ms + 2 * maxdt;

		if (c_maybe[i] > 0)
			clast[i] = sim_now();
		if (ctaint[i] == 1 && c_maybe[i] == 0 && !linger)
			ctaint[i] = 0;
		s_lo += c_yes[i] > 0 && !ctaint[i];
		s_hi += c_maybe[i] > 0 || ctaint[i] || linger;
	}
	if (sess_count() < s_lo || sess_count() > s_hi)
		fail(NULL, "sess_count() %u, clients say %u..%u", sess_count(),
		    s_lo, s_hi);
}

/* The auditor's /health and session count, at quiescence. */
static void
audit_counts(struct client *c, const char *body, size_t n)
{
	uint64_t v;

	if (jnum(body, n, "connections", &v) &&
	    v != ws_stats_get()->websockets)
		fail(c, "/health says %llu connections, %llu are open",
		    (unsigned long long)v,
		    (unsigned long long)ws_stats_get()->websockets);
	if ((jnum(body, n, "sessions", &v) ||
	    jnum(body, n, "active_sessions", &v)) && v != sess_count())
		fail(c, "the API says %llu sessions, sess_count() %u",
		    (unsigned long long)v, sess_count());
	check_step();	/* and both within what the clients know */
	auditor_done++;
}

/* After the quiet phase: everything owed has arrived. */
static void
check_quiet(void)
{
	for (int i = 0; i < ncl; i++) {
		struct client *c = cl[i];
		const struct sim_sock *s = sock_of(c);

		if (c->phase == P_DONE && !s->srv_closed && !s->refused &&
		    (s->cli_rst || s->cli_closed))
			fail(c, "closed by its client, still open in the server");
		if (!c->good || c->phase == P_DONE || !srv_open(c))
			continue;
		if (c->out.len > 0)
			fail(c, "%zu bytes it could not send", c->out.len);
		if (owed(c) || (c->qn > 0 && !c->sent_close && !c->got_close &&
		    !c->conn_close))
			fail(c, "after %d quiet steps still owed %u replies",
			    QUIET, c->qn);
		if (c->phase == P_WS && !c->sent_close)
			check_complete(c, "quiet");
		if (c->phase == P_SSE)
			sse_complete(c);
	}
}

/* After ws_run() returned. */
static void
check_end(int rc)
{
	unsigned perm = 0;

	if (rc != 0)
		fail(NULL, "ws_run() returned %d", rc);
	if (ws_stats_get()->connections != 0 || ws_stats_get()->websockets != 0 ||
	    ws_stats_get()->streams != 0 || sim_open_conns() != 0)
		fail(NULL, "after shutdown: %llu connections, %llu websockets, "
		    "%llu streams, %u open",
		    (unsigned long long)ws_stats_get()->connections,
		    (unsigned long long)ws_stats_get()->websockets,
		    (unsigned long long)ws_stats_get()->streams,
		    sim_open_conns());
	for (int g = 0; g < NGROUP; g++) {
		struct hub_group *hg = g == G_STAR ? NULL :
		    hub_group(gname[g], strlen(gname[g]), 0);

		if (hg != NULL && hub_group_subscribers(hg) != 0)
			fail(NULL, "after shutdown %s has %u subscribers",
			    gname[g], hub_group_subscribers(hg));
	}
	for (int i = 0; i < NHID; i++)
		perm += hsess[i].alive;
	for (unsigned i = 0; i < nrsess; i++)
		perm += rsess[i].alive;
	if (sess_count() < perm || sess_count() > perm +
	    (hcfg.session_ttl_ms > 0 ? NCID : 0))
		fail(NULL, "after shutdown %u sessions, %u made over HTTP",
		    sess_count(), perm);
	for (int i = 0; i < ncl; i++) {
		struct client *c = cl[i];

		if (c->good && c->upg == 2 && c->drain_open &&
		    !(c->got_close && c->close_code == WS_CLOSE_GOING_AWAY))
			fail(c, "open at SIGTERM, never got close 1001");
		/* A stream open at SIGTERM: what the reader has not read
		 * yet is still in the kernel, and must end as sse_ended()
		 * says. */
		for (int k = 0; k < 1000 && c->kind == K_SSE &&
		    c->drain_open && c->phase == P_SSE; k++)
			receive(c);
		if (c->kind == K_SSE && c->drain_open && c->phase == P_SSE)
			fail(c, "open at SIGTERM, its stream never ended");
		if (c->kind == K_SSE && c->drain_open && c->good)
			sse_after_sigterm(c);
	}
}

/* ==== The step =========================================================== */

/* Two good subscribers that never leave each kept group (see gname[]). */
static void
keepers(void)
{
	for (int g = 0; g < NKEPT; g++)
		for (int k = 0; k < 2; k++) {
			struct client *c;

			if (g == G_STAR)
				continue;
			c = client_new(K_SUB, g < G_SESS ? g : G_BUSY, 1);
			if (c == NULL)
				fail(NULL, "cannot connect");
			c->keeper = 1;
			open_route(c, 1, 0);
			if (g >= G_SESS)
				ws_subscribe(c, g, 0, 0);
		}
}

static void
step(void)
{
	uint64_t n = sim_step();

	check_step();
	if (n == 1)
		keepers();
	switch (stage) {
	case S_RUN:
		sim_advance(1 + rn(maxdt));
		if (nlive < (int)crowd && chance(400))
			spawn();
		if (n >= nsteps) {
			stage = S_QUIET;
			stage_step = n;
			/* No more connections dropped at accept. */
			kfaults.emfile = 0;
			sim_set_faults(&kfaults);
		}
		break;
	case S_QUIET:
		if (n - stage_step >= QUIET) {
			check_quiet();
			stage = S_AUDIT;
			stage_step = n;
			if ((auditor = client_new(K_PUB, -1, 1)) == NULL)
				fail(NULL, "cannot connect at the end");
			http_send(auditor, "GET", "/health", NULL, 0);
			expect(auditor, X_H_HEALTH);
			http_send(auditor, "GET", "/api/sessions/count", NULL,
			    0);
			expect(auditor, X_H_COUNT);
		}
		break;
	case S_AUDIT:
		if (auditor_done == 2) {
			stage = strict ? S_HOT : S_DRAIN;
			stage_step = n + (strict ? 5 + rn(40) : 0);
		} else if (n - stage_step > QUIET)
			fail(auditor, "no answer to /health (phase %d, %u due, "
			    "%zu bytes unsent, %llu read by the server, over "
			    "limit %d)", auditor->phase, auditor->qn,
			    auditor->out.len,
			    (unsigned long long)sock_of(auditor)->rd,
			    over_limit(auditor));
		break;
	case S_HOT:
		sim_advance(1 + rn(maxdt));
		if (n < stage_step)
			break;
		stage = S_DRAIN;
		/* FALLTHROUGH */
	case S_DRAIN:
		if (sigterm_turn == 0) {
			for (int i = 0; i < ncl; i++)
				cl[i]->drain_open = (cl[i]->phase == P_WS ||
				    cl[i]->phase == P_SSE) &&
				    !cl[i]->sent_close && srv_open(cl[i]);
			sim_signal(SIGTERM);
			sigterm_turn = n;
			stage_step = n;
		}
		sim_advance(5 + rn(50));
		if (n - stage_step > DRAIN_STEPS)
			fail(NULL, "ws_run() still running %d steps after "
			    "SIGTERM", DRAIN_STEPS);
		break;
	}
	for (int i = 0; i < ncl; i++)
		act(cl[i]);
	if (verbose && n % 500 == 0)
		fprintf(stderr, "step %llu: %d clients, %llu connections\n",
		    (unsigned long long)n, nlive,
		    (unsigned long long)ws_stats_get()->connections);
}

/* ==== One run ============================================================ */

static size_t
pick(const size_t *v, int n)
{
	return v[rn(n)];
}

#define PICK(...) pick((const size_t[]){ __VA_ARGS__ }, \
	sizeof((const size_t[]){ __VA_ARGS__ }) / sizeof(size_t))

/*
 * Limits drawn from the seed: wsd's defaults (the first value of each
 * pick, written out so the sim does not follow renames in the headers),
 * and small ones that make the limits bite: 1013, eviction, 503s.
 */
static void
configure(void)
{
	wcfg.max_header = PICK(8192, 8192, 1024);
	wcfg.max_message = PICK(1 << 20, 65536, 4096);
	wcfg.max_body = PICK(1 << 20, 8192);
	wcfg.send_queue = PICK(4 << 20, 256 << 10, 64 << 10, 16 << 10);
	wcfg.max_connections = PICK(10000, 10000, 10000, 40);
	wcfg.handshake_ms = PICK(10000, 2000);
	wcfg.ping_interval_ms = PICK(25000, 3000);
	wcfg.ping_timeout_ms = wcfg.ping_interval_ms * PICK(2, 3);
	wcfg.drain_ms = PICK(5000, 1000);
	wcfg.echo = rn(2);
#ifdef WS_ASSEMBLY_TOTAL
	/* Limits a newer ws.h has; the sim also runs on trees without. */
	wcfg.max_body_total = 64 << 20;
	wcfg.assembly_total = 64 << 20;
#endif
	hcfg.history = PICK(1000, 50, 5);
	hcfg.history_bytes = PICK(1 << 20, 16 << 10);
	hcfg.history_total = PICK(256 << 20, 64 << 10, 8 << 10);
	hcfg.max_conn_groups = PICK(64, 3);
	hcfg.max_groups = PICK(100000, 100000, 12);
	hcfg.json_depth = 64;
	hcfg.tick_ms = PICK(3000, 500);
	hcfg.session_events = !chance(100);
	hcfg.session_ttl_ms = PICK(0, 0, 1000);
	hcfg.max_sessions = PICK(100000, 6);
	hcfg.max_metadata = 16384;
	hcfg.publish_rate = PICK(0, 0, 0, 50);
	if (chance(500)) {
		static const char *const origins[] = {
			"http://app.example:8080"
		};

		hcfg.allow_origin = origins;
		hcfg.nallow_origin = 1;
		cors_origin = origins[0];
	}
	kfaults.short_read = PICK(0, 100, 500);
	kfaults.short_write = PICK(0, 100, 500);
	kfaults.eagain = PICK(0, 10);
	kfaults.eintr = PICK(0, 5);
	kfaults.emfile = PICK(0, 20);
	kfaults.small_batch = PICK(0, 20);
	/* Time moves in small steps, so good clients are never silent
	 * long enough to be taken for dead. */
	maxdt = (wcfg.handshake_ms < wcfg.ping_interval_ms ?
	    wcfg.handshake_ms : wcfg.ping_interval_ms) / 40;
	crowd = 60 + rn(100);
}

static int
run(void)
{
	int rc;

	rs = seed * 0x9e3779b97f4a7c15ull;
	sim_seed(seed);
	configure();
	sim_set_faults(&kfaults);
	sim_on_step(step);
	sim_on_log(on_log);
	if (verbose)
		fprintf(stderr, "seed %llu: send_queue %zu history %u/%zu/%zu "
		    "max_conn %u groups %u crowd %u\n",
		    (unsigned long long)seed, wcfg.send_queue, hcfg.history,
		    hcfg.history_bytes, hcfg.history_total,
		    wcfg.max_connections, hcfg.max_groups, crowd);
	if (sim_start(&wcfg, &hcfg, "debug") == -1) {
		sim_dump_log(10);
		fprintf(stderr, "sim: seed %llu: the daemon did not start\n",
		    (unsigned long long)seed);
		return 1;
	}
	rc = ws_run(NULL);
	check_end(rc);
	if (verbose)
		fprintf(stderr, "seed %llu: %d clients, %lu events, %lu replies, "
		    "%lu HTTP responses (%lu over the limit), %lu gaps, "
		    "%lu resumes, closes 1000 %lu 1001 %lu 1002 %lu 1007 %lu "
		    "1009 %lu 1013 %lu other %lu, %lu resets, %lu half-closes, "
		    "%lu fragmented, %lu pongs, %lu echoes, %lu bad answered; "
		    "server: %llu published, %llu slow closes, %llu bytes "
		    "out\n", (unsigned long long)seed, ncl, stats.events,
		    stats.replies, stats.responses, stats.over, stats.gaps, stats.resumes,
		    stats.closes[0], stats.closes[1], stats.closes[2], stats.closes[7],
		    stats.closes[9], stats.closes[13], stats.closes[15], stats.resets,
		    stats.halves, stats.frags, stats.pongs, stats.echoes, stats.bad,
		    (unsigned long long)hub_stats_get()->events_published,
		    (unsigned long long)ws_stats_get()->slow_closes,
		    (unsigned long long)ws_stats_get()->bytes_out);
	if (verbose)
		fprintf(stderr, "seed %llu: event streams: %lu opened, %lu "
		    "refused, %lu events (%lu of \"*\"), %lu marks, %lu gaps, "
		    "%lu heartbeats, %lu cut by the reader, %lu ended "
		    "(%lu slow), %lu ids ahead of a resume (--lenient); %lu "
		    "CORS and /sse refusals checked\n",
		    (unsigned long long)seed, stats.sse_streams,
		    stats.sse_refused, stats.sse_events, stats.sse_star,
		    stats.sse_marks, stats.sse_gaps, stats.sse_beats,
		    stats.sse_cuts, stats.sse_ends, stats.sse_slow,
		    stats.sse_early, stats.cors);
	for (int i = 0; i < ncl; i++) {
		client_gone(cl[i]);
		free(cl[i]->q);
		free(cl[i]->sse);
		free(cl[i]);
	}
	free(cl);
	free(byhandle);
	free(byconn);
	for (int g = 0; g < NGROUP; g++) {
		free(groups[g].fp);
		free(groups[g].nfp);
		free(groups[g].claimed);
		free(groups[g].turn);
	}
	free(rsess);
	sim_free();
	return 0;
}

/* ==== Many seeds ========================================================= */

/* One seed in a child; its output is shown only when it fails. */
static pid_t
start_child(uint64_t s, FILE **out)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	if ((*out = tmpfile()) == NULL || (pid = fork()) == -1) {
		perror("sim");
		exit(2);
	}
	if (pid == 0) {
		dup2(fileno(*out), 1);
		dup2(fileno(*out), 2);
		seed = s;
		alarm(300);	/* a hang fails too */
		exit(run());
	}
	return pid;
}

static int
run_seeds(uint64_t first, unsigned n, unsigned jobs)
{
	struct { pid_t pid; uint64_t seed; FILE *out; } *slot;
	unsigned started = 0, done = 0, passed = 0, failed = 0;

	if ((slot = calloc(jobs, sizeof *slot)) == NULL)
		return 2;
	while (done < n) {
		int st;
		pid_t pid;
		unsigned i;

		for (i = 0; i < jobs && started < n; i++)
			if (slot[i].pid == 0) {
				slot[i].seed = first + started++;
				slot[i].pid = start_child(slot[i].seed,
				    &slot[i].out);
			}
		if ((pid = wait(&st)) == -1)
			break;
		for (i = 0; i < jobs && slot[i].pid != pid; i++)
			;
		if (i == jobs)
			continue;
		done++;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			passed++;
		else {
			char line[1024];

			failed++;
			rewind(slot[i].out);
			while (fgets(line, sizeof line, slot[i].out) != NULL)
				fputs(line, stdout);
			printf("seed %llu: FAILED (%s %d)\n",
			    (unsigned long long)slot[i].seed,
			    WIFEXITED(st) ? "exit" : "signal",
			    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 1)
				printf("repro: build/sim/sim --seed %llu "
				    "--steps %llu\n",
				    (unsigned long long)slot[i].seed,
				    (unsigned long long)nsteps);
		}
		fclose(slot[i].out);
		slot[i].pid = 0;
	}
	free(slot);
	printf("%u passed, %u failed\n", passed, failed);
	return failed > 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: sim [--seed S] [--seeds N] [--jobs J] "
	    "[--steps N] [--lenient] [-v]\n"
	    "  --seed S     run seed S (the first of --seeds)\n"
	    "  --seeds N    run N seeds from S in child processes\n"
	    "  --lenient    leave out the hot-shutdown and early-tick checks,\n"
	    "               and SSE ids ahead of a group's resume\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	unsigned nseeds = 0, jobs = 2;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-v") == 0)
			verbose++;
		else if (strcmp(argv[i], "--lenient") == 0)
			strict = 0;
		else if (i + 1 == argc)
			usage();
		else if (strcmp(argv[i], "--seed") == 0)
			seed = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--seeds") == 0)
			nseeds = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--jobs") == 0)
			jobs = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--steps") == 0)
			nsteps = strtoull(argv[++i], NULL, 10);
		else
			usage();
	}
	if (nseeds > 0)
		return run_seeds(seed, nseeds, jobs ? jobs : 1);
	if (run() != 0)
		return 1;
	printf("1 passed, 0 failed\n");
	return 0;
}
