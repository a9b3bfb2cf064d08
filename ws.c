/*
 * ws.c - connections: HTTP/1.1 requests and RFC 6455 WebSocket over the
 * reactor (loop.c).
 *
 * Every connection is a source of loop.c's epoll instance.  This file
 * reads in the order data flows: the send queue, closing, message
 * assembly (over frame.c's decoder), HTTP requests (over http_parse.c)
 * and the upgrade, the connection's life and its deadlines, accepting,
 * and the turn: requests left from the last turn, events, the layer
 * above's batch, every queue written, the dead freed.
 *
 * What it does not do: parse (frame.c and http_parse.c do, without I/O),
 * own the loop, JSON, groups, sessions, routing beyond /echo.  The layer
 * above gets whole requests and whole messages through struct
 * ws_handlers and answers with ws_send(), ws_http_respond() and
 * ws_close().
 *
 * Functions return 0 or -1 unless they say otherwise.
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <malloc.h>

#include "log.h"
#include "loop.h"
#include "notify.h"
#include "sse.h"
#include "tls.h"
#include "ws.h"

/* Connection states, in lifetime order. */
enum conn_state {
	C_HTTP,		/* reading requests */
	C_WS,		/* open WebSocket */
	C_STREAM,	/* an answer that goes on: text/event-stream */
	C_CLOSING,	/* close frame or last response queued: flush it */
	C_LINGER	/* write side shut: read and discard until EOF */
};

/* Input in flight.  Allocated when a read leaves something unfinished and
 * freed when the connection is back at a message boundary, so an idle
 * connection holds no input memory. */
struct ws_in {
	struct ws_parser p;
	uint32_t utf8;		/* validator state of the open text message */
	uint8_t *msg;		/* message being assembled; owned */
	size_t   mlen, mcap;
	uint8_t  ctrl[125];	/* a control frame split across reads */
	uint8_t *head;		/* HTTP: request bytes; owned */
	size_t   hlen, hcap;
	char    *extra;		/* HTTP: ws_http_extra() of the deferred
				 * request; owned, or NULL */
	uint32_t body_held;	/* HTTP: bytes held in body_total for a
				 * body still coming */
};

/* A connection: a small fixed struct; buffers only while data is in
 * flight.  The queue q holds references to shared ws_bufs. */
struct ws_conn {
	struct loop_src	 src;		/* first: the reactor's handle */
	uint8_t		 state;		/* enum conn_state */
	uint8_t		 tls_want;	/* TLS: what the last read waits for */
	uint8_t		 why;		/* enum close_why, once closing */
	/* One bit each: an idle connection is kept small (bench/README.md,
	 * "Idle memory"). */
	unsigned	 close_sent : 1;	/* our close frame is queued */
	unsigned	 close_rcvd : 1;	/* the peer's close frame arrived */
	unsigned	 out_armed : 1;	/* EPOLLOUT registered */
	unsigned	 dirty : 1;	/* on the flush list */
	unsigned	 dead : 1;	/* fd closed; freed after this turn */
	unsigned	 echo : 1;	/* /echo route */
	unsigned	 keep_alive : 1;	/* HTTP: current request keeps alive */
	unsigned	 over_limit : 1;	/* accepted past max_connections */
	unsigned	 upgraded : 1;	/* counted in ws_stats.websockets */
	unsigned	 streamed : 1;	/* counted in ws_stats.streams */
	unsigned	 rd_eof : 1;	/* peer's FIN: write what is queued, close */
	unsigned	 want_room : 1;	/* call handlers.writable once drained */
	unsigned	 head_ok : 1;	/* HTTP: this request's head passed */
	unsigned	 later : 1;	/* in later_conns (input_later) */
	unsigned	 deferred : 1;	/* HTTP: the answer comes later (c->in
					 * is kept meanwhile) */
	uint16_t	 rtt_ms;	/* our last ping's round trip; UINT16_MAX:
					 * none yet */
	uint16_t	 holds;		/* ws_hold(): not freed while > 0 */
	uint32_t	 born_s;	/* loop time it was accepted, in seconds */
	struct ssl_st	*ssl;		/* owned; NULL on plain TCP */
	struct ws_queue	*q;		/* owned; NULL while nothing is queued */
	struct ws_in	*in;		/* owned; NULL while idle */
	struct ws_app_conn *app;	/* owned by the layer above */
	struct ws_conn	*next;		/* every connection */
	union {
		struct ws_conn *prev;	/*   while alive */
		struct ws_conn *reap_next;	/* reap list, once dead */
	};
	struct ws_conn	*flush_next;	/* flush list, while dirty */
	uint64_t	 id;
	uint64_t	 last_rx;	/* ms: last bytes from the peer */
	uint64_t	 deadline;	/* ms: handshake, close or linger limit */
	uint64_t	 ping_at;	/* ms: our unanswered ping, 0 if none;
					 * a stream's last heartbeat */
};

/*
 * Why a connection closes: the first reason found.  conn_closing() logs
 * it once, with the close code sent or received, when the close starts
 * (our close frame, the last response, or the fd closed at once).
 */
enum close_why {
	W_OPEN,		/* not closing */
	W_PEER,		/* the peer closed: its close frame, or its FIN */
	W_RESET,	/* a read or write failed: reset */
	W_TLS,		/* the TLS handshake or a record failed */
	W_PROTOCOL,	/* protocol error (1002, 1007) */
	W_TOO_BIG,	/* a message or request over its limit (1009) */
	W_ASSEMBLY,	/* --assembly-total (1013) */
	W_SLOW,		/* slow consumer: --send-queue (1013) */
	W_PING,		/* ping timeout */
	W_MSG_SLOW,	/* a message slower than --handshake-timeout (1008) */
	W_HANDSHAKE,	/* a request did not arrive whole in time */
	W_IDLE,		/* an idle keep-alive connection */
	W_DONE,		/* HTTP: answered, and the connection not kept */
	W_SHUTDOWN,	/* SIGTERM, SIGINT (1001) */
	W_POLICY,	/* closed by the layer above with 1008 (token expired) */
	W_INTERNAL,	/* out of memory (1011) */
	W_SERVER	/* closed by the layer above with another code */
};

static const char *const why_names[] = {
	"open", "peer closed", "reset", "tls error", "protocol error",
	"too large", "assembly limit", "slow consumer", "ping timeout",
	"message too slow", "handshake timeout", "idle", "response sent",
	"shutdown", "policy", "internal error", "closed by server"
};

#define WS_MAX_CTRL	16	/* control frames queued at once */
#define HTTP_PER_TURN	32	/* requests answered per connection per turn */
#define READ_SIZE	65536
#define MAX_EVENTS	256
#define MAX_IOV		64

static struct ws_stats ws_stats;
const char *const ws_hs_fail_names[6] = {
	"bad_request", "version", "too_large", "timeout", "refused", "limit"
};
const char *const ws_limit_names[WS_NLIMITS] = {
	"max_connections", "max_header", "max_body", "max_body_total",
	"max_message", "assembly_total", "send_queue", "handshake_timeout",
	"message_timeout"
};

static struct ws_config		 cfg;
static struct ws_handlers	 app;
static struct ws_conn		*conns;		/* every connection */
static struct ws_conn		*flush_list;
static struct ws_conn		*reap_list;
static struct ws_conn		**later_conns;	/* requests left for next turn */
static uint32_t			 nlater, later_cap;
static uint64_t			 next_id = 1;
static uint64_t			 drain_until;	/* 0: not draining */
static uint8_t			 rbuf[READ_SIZE];
static size_t			 body_total;	/* held by body_hold() */
static size_t			 freed;		/* bytes freed since a trim */
static int			 stopped;	/* ws_run() has returned */

static void	conn_input(struct ws_conn *, uint8_t *, size_t);
static void	conn_fail(struct ws_conn *, unsigned);
static void	conn_kill(struct ws_conn *, enum close_why);
static void	conn_closing(struct ws_conn *, enum close_why, unsigned);
static void	conn_mark_dirty(struct ws_conn *);
static int	conn_push(struct ws_conn *, struct ws_buf *);
static void	http_input(struct ws_conn *);
static int	body_hold(struct ws_conn *, size_t);
static void	input_later(struct ws_conn *);
static int	reap(void);
static void	conn_event(struct loop_src *, uint32_t);
static void	send_close(struct ws_conn *, unsigned, const char *,
		    enum close_why);
static int	ep_mod(struct ws_conn *);

/* ==== Send queue ===================================================== */

/*
 * Each connection with something to send has a queue: a ring of
 * references to shared buffers, freed once written.  Data goes
 * on the tail; control frames go ahead of data (behind a frame already
 * partly written, which must finish first or the stream would be torn,
 * and behind every HTTP response, the 101 included: nothing goes ahead of
 * those), in the order they were queued.  Data bytes count against
 * send_queue; control frames do not, and are bounded by WS_MAX_CTRL
 * instead.  The close frame is queued as data, behind the replies already
 * queued (the order Autobahn's strict reading expects).
 */

struct ws_queue {
	uint32_t	 head, len, cap;	/* cap: a power of two */
	uint32_t	 off;		/* bytes of the head already written */
	uint32_t	 tls_retry;	/* TLS: bytes a blocked write must resend */
	size_t		 bytes;		/* queued data bytes (not control) */
	struct ws_buf	*ring[];
};

/* Queued data bytes: what --send-queue bounds. */
static size_t
queued(const struct ws_conn *c)
{
	return c->q != NULL ? c->q->bytes : 0;
}

static struct ws_buf **
ring_at(struct ws_queue *q, uint32_t i)
{
	return &q->ring[(q->head + i) & (q->cap - 1)];
}

/* Make room for one more entry: the queue is made, or doubled. */
static int
ring_grow(struct ws_conn *c)
{
	struct ws_queue *q = c->q, *nq;
	uint32_t ncap = q != NULL ? q->cap * 2 : 8;

	if (ncap == 0 ||
	    (nq = malloc(sizeof *nq + ncap * sizeof nq->ring[0])) == NULL)
		return -1;
	if (q != NULL) {
		*nq = *q;
		for (uint32_t i = 0; i < q->len; i++)
			nq->ring[i] = *ring_at(q, i);
		free(q);
	} else {
		*nq = (struct ws_queue){ 0 };
	}
	nq->cap = ncap;
	nq->head = 0;
	c->q = nq;
	return 0;
}

/* Put b at position pos (0 = next to write), shifting the few before it. */
static int
ring_insert(struct ws_conn *c, uint32_t pos, struct ws_buf *b)
{
	struct ws_queue *q;

	if ((c->q == NULL || c->q->len == c->q->cap) && ring_grow(c) == -1)
		return -1;
	q = c->q;
	if (pos == q->len) {
		*ring_at(q, q->len) = b;
	} else {
		q->head = (q->head - 1) & (q->cap - 1);
		for (uint32_t i = 0; i < pos; i++)
			*ring_at(q, i) = *ring_at(q, i + 1);
		*ring_at(q, pos) = b;
	}
	q->len++;
	return 0;
}

/*
 * Entries at the head that may neither move nor be dropped: the one partly
 * written, under TLS every one a blocked write must send again byte for
 * byte, and HTTP responses (the 101 before any frame).
 */
static uint32_t
pinned(struct ws_queue *q)
{
	size_t need, sum = 0;
	uint32_t i = 0;

	if (q == NULL)
		return 0;
	need = q->off + q->tls_retry;
	while (i < q->len && (sum < need || (*ring_at(q, i))->http))
		sum += (*ring_at(q, i++))->len;
	return i;
}

/* Drop every queued buffer but the pinned ones (keep) or all of them. */
static void
ring_release(struct ws_conn *c, int keep_pinned)
{
	struct ws_queue *q = c->q;
	uint32_t keep = keep_pinned ? pinned(q) : 0;

	if (q == NULL)
		return;
	q->bytes = 0;
	for (uint32_t i = 0; i < q->len; i++) {
		struct ws_buf *b = *ring_at(q, i);

		if (i >= keep)
			ws_buf_unref(b);
		else if (!b->ctrl)
			q->bytes += b->len - (i == 0 ? q->off : 0);
	}
	q->len = keep;
	if (keep == 0) {
		free(q);
		c->q = NULL;
	}
}

/* Queue b (a new reference is taken).  Returns 0 or -1. */
static int
conn_push(struct ws_conn *c, struct ws_buf *b)
{
	struct ws_queue *q = c->q;
	uint32_t len = q != NULL ? q->len : 0, pos = len;

	if (b->ctrl) {
		uint32_t nctrl = 0;

		pos = pinned(q);
		while (pos < len && (*ring_at(q, pos))->ctrl) {
			pos++;
			nctrl++;
		}
		/* §5.5.3 lets a pong answer only the latest ping: past the
		 * bound, a new pong replaces the last one still queued. */
		if (nctrl >= WS_MAX_CTRL) {
			struct ws_buf **last = ring_at(q, pos - 1);

			if ((b->data[0] & 0x0f) != WS_OP_PONG ||
			    ((*last)->data[0] & 0x0f) != WS_OP_PONG)
				return -1;
			ws_buf_ref(b);
			ws_buf_unref(*last);
			*last = b;
			return 0;
		}
	}
	if (ring_insert(c, pos, b) == -1)
		return -1;
	ws_buf_ref(b);
	if (!b->ctrl)
		c->q->bytes += b->len;
	conn_mark_dirty(c);
	return 0;
}

int
ws_send(struct ws_conn *c, struct ws_buf *b)
{
	if ((c->state != C_WS && c->state != C_STREAM) || c->dead)
		return -1;
	/* A subscriber that does not read may not grow memory without
	 * bound: close it with 1013 and release what it held.  Nobody else
	 * waits for it.  One message always fits an empty queue (it is
	 * bounded by --max-message), so a large echo is not "slow". */
	if (queued(c) > 0 && queued(c) + b->len > cfg.send_queue) {
		ws_stats.slow_closes++;
		ws_stats.limit[WS_L_SEND_QUEUE]++;
		log_msg(LOG_INFO, "slow consumer conn=%llu queued=%zu",
		    (unsigned long long)c->id, queued(c));
		ring_release(c, 1);
		send_close(c, WS_CLOSE_TRY_AGAIN, "slow consumer", W_SLOW);
		return -1;
	}
	if (conn_push(c, b) == -1) {
		conn_fail(c, WS_CLOSE_INTERNAL);
		return -1;
	}
	ws_stats.messages_out += b->nframes;
	return 0;
}

int
ws_has_room(const struct ws_conn *c, size_t len)
{
	return queued(c) == 0 || queued(c) + len <= cfg.send_queue / 2;
}

void
ws_want_writable(struct ws_conn *c)
{
	c->want_room = 1;
}

int
ws_send_msg(struct ws_conn *c, int opcode, const void *p, size_t n)
{
	struct ws_buf *b;
	int rc;

	if (c->state == C_STREAM && !c->dead && opcode == WS_OP_TEXT) {
		/* An event stream's message is a record without an id. */
		if ((b = ws_buf_new(sse_record(NULL, NULL, 0, p, n))) != NULL)
			sse_record(b->data, NULL, 0, p, n);
	} else if (c->state != C_WS || c->dead)
		return -1;
	else
		b = ws_buf_frame(opcode, p, n);
	if (b == NULL) {
		conn_fail(c, WS_CLOSE_INTERNAL);
		return -1;
	}
	rc = ws_send(c, b);
	ws_buf_unref(b);
	return rc;
}

static void
conn_mark_dirty(struct ws_conn *c)
{
	if (!c->dirty && !c->dead) {
		c->dirty = 1;
		c->flush_next = flush_list;
		flush_list = c;
	}
}

/* After the last queued byte of a close frame or a closing response:
 * shut our side (the server closes first, RFC 6455 §7.1.1), then read
 * and discard until the peer's FIN or the linger deadline. */
static void
conn_linger(struct ws_conn *c)
{
	if (c->ssl != NULL) {
		tls_free(c->ssl, 1);
		c->ssl = NULL;
	}
	shutdown(c->src.fd, SHUT_WR);
	c->state = C_LINGER;
	c->deadline = loop_now_ms() + WS_CLOSE_MS;
}

/*
 * TLS has no writev: gather up to one record's worth (16 KB) into a
 * staging buffer and write that.  A write that blocked must be retried
 * with the same bytes, so tls_retry remembers how many, and pinned()
 * keeps control frames from being slipped in ahead of them meanwhile.
 */
static ssize_t
conn_tls_write(struct ws_conn *c, const struct iovec *iov, int n)
{
	static uint8_t stage[16384];
	size_t len = 0, want = c->q->tls_retry ? c->q->tls_retry :
	    sizeof stage;
	ssize_t w;
	int dir;

	for (int i = 0; i < n && len < want; i++) {
		size_t k = iov[i].iov_len < want - len ? iov[i].iov_len :
		    want - len;

		memcpy(stage + len, iov[i].iov_base, k);
		len += k;
	}
	w = tls_write(c->ssl, stage, len, &dir);
	c->q->tls_retry = w == -1 && errno == EAGAIN ? len : 0;
	return w;
}

/*
 * Write everything queued on c with as few writev calls as the kernel
 * allows: the coalescing that makes fan-out cheap, since a write costs
 * the same for 10 bytes or 10 KB.
 */
static void
conn_flush(struct ws_conn *c)
{
	struct ws_queue *q;

	while ((q = c->q) != NULL && q->len > 0) {
		struct iovec iov[MAX_IOV];
		int n = 0;
		ssize_t w;

		for (uint32_t i = 0; i < q->len && n < MAX_IOV; i++, n++) {
			struct ws_buf *b = *ring_at(q, i);
			size_t skip = i == 0 ? q->off : 0;

			iov[n].iov_base = b->data + skip;
			iov[n].iov_len = b->len - skip;
		}
		w = c->ssl != NULL ? conn_tls_write(c, iov, n) :
		    writev(c->src.fd, iov, n);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				if (!c->out_armed) {
					c->out_armed = 1;
					ep_mod(c);
				}
				return;
			}
			conn_kill(c, errno == EPROTO ? W_TLS : W_RESET);
			return;
		}
		ws_stats.bytes_out += w;
		/* An HTTP answer read slowly is not an idle connection. */
		if (!c->upgraded && !c->streamed && c->state != C_LINGER)
			c->deadline = loop_now_ms() + cfg.handshake_ms;
		while (w > 0) {
			struct ws_buf *b = *ring_at(q, 0);
			size_t rest = b->len - q->off;

			if ((size_t)w < rest) {
				q->off += w;
				if (!b->ctrl)
					q->bytes -= w;
				break;
			}
			w -= rest;
			if (!b->ctrl)
				q->bytes -= rest;
			q->off = 0;
			q->head = (q->head + 1) & (q->cap - 1);
			q->len--;
			ws_buf_unref(b);
		}
	}
	if (c->out_armed) {
		c->out_armed = 0;
		ep_mod(c);
	}
	/* An idle connection holds no queue: a malloc per busy turn is
	 * noise next to the writev, and 10,000 idle queues are 1 MB. */
	free(c->q);
	c->q = NULL;
	if (c->rd_eof)
		conn_kill(c, W_PEER);
	else if (c->state == C_CLOSING)
		conn_linger(c);
	else if (c->want_room && (c->state == C_WS || c->state == C_STREAM) &&
	    app.writable != NULL) {
		/* Whatever it queues puts c back on the flush list. */
		c->want_room = 0;
		app.writable(c, c->app);
	}
}

/* ==== Closing ======================================================== */

/*
 * Queue our close frame once (RFC 6455 §5.5.1): code 0 sends an empty
 * payload.  It follows the data already queued, so the peer sees every
 * reply it was sent before the failure, and a reader every event already
 * accepted; only the slow-consumer close drops the queue first (ws_send).
 * From here on nothing more is read from the peer.  An event stream ends
 * the same way, without the frame.
 */
static void
send_close(struct ws_conn *c, unsigned code, const char *reason,
    enum close_why why)
{
	uint8_t pl[125];
	size_t n = 0;
	struct ws_buf *b;

	if (c->close_sent || c->dead)
		return;
	conn_closing(c, why, code);
	if (c->state == C_STREAM) {
		/* An event stream has no close frame: what is queued goes
		 * out, then the connection closes and its reader resumes. */
		c->deadline = loop_now_ms() + (queued(c) > 0 ? cfg.drain_ms :
		    WS_CLOSE_MS);
		c->close_sent = 1;
		c->state = C_CLOSING;
		conn_mark_dirty(c);
		return;
	}
	if (code != 0) {
		pl[0] = code >> 8;
		pl[1] = code;
		n = 2;
		if (reason != NULL) {
			size_t r = strlen(reason);

			if (r > sizeof pl - 2)
				r = sizeof pl - 2;
			memcpy(pl + 2, reason, r);
			n += r;
		}
	}
	if ((b = ws_buf_frame(WS_OP_CLOSE, pl, n)) == NULL) {
		conn_kill(c, W_INTERNAL);
		return;
	}
	b->ctrl = 0;		/* behind the data, not ahead */
	if (conn_push(c, b) == -1) {
		ws_buf_unref(b);
		conn_kill(c, W_INTERNAL);
		return;
	}
	/* Longer when data goes first: the reader gets the drain time. */
	c->deadline = loop_now_ms() + (queued(c) > b->len ? cfg.drain_ms : WS_CLOSE_MS);
	ws_buf_unref(b);
	c->close_sent = 1;
	c->state = C_CLOSING;
}

void
ws_close(struct ws_conn *c, unsigned code, const char *reason)
{
	send_close(c, code, reason, code == WS_CLOSE_POLICY ? W_POLICY :
	    code == WS_CLOSE_INTERNAL ? W_INTERNAL :
	    code == WS_CLOSE_GOING_AWAY ? W_SHUTDOWN : W_SERVER);
}

/* A protocol violation, or a limit: the close frame with its code, then
 * stop. */
static void
conn_fail(struct ws_conn *c, unsigned code)
{
	send_close(c, code, NULL, code == WS_CLOSE_TOO_BIG ? W_TOO_BIG :
	    code == WS_CLOSE_TRY_AGAIN ? W_ASSEMBLY :
	    code == WS_CLOSE_INTERNAL ? W_INTERNAL : W_PROTOCOL);
}

/* ==== Message assembly =============================================== */

static void
deliver(struct ws_conn *c, int opcode, const uint8_t *p, size_t n)
{
	ws_stats.messages_in++;
	if (c->echo)
		ws_send_msg(c, opcode, p, n);
	else if (app.message != NULL)
		app.message(c, c->app, opcode, p, n);
}

/* A whole control frame (§5.5). */
static void
control(struct ws_conn *c, int opcode, const uint8_t *p, size_t n)
{
	struct ws_buf *b;

	switch (opcode) {
	case WS_OP_PING:
		/* §5.5.2: the pong carries the ping's payload. */
		if ((b = ws_buf_frame(WS_OP_PONG, p, n)) != NULL) {
			conn_push(c, b);
			ws_buf_unref(b);
		}
		break;
	case WS_OP_PONG:
		/* Unsolicited ones are fine too; the answer to ours is
		 * timed, for /api/connections. */
		if (c->ping_at != 0 && n == 3 && memcmp(p, "wsd", 3) == 0) {
			uint64_t rtt = loop_now_ms() - c->ping_at;

			c->rtt_ms = rtt < UINT16_MAX ? rtt : UINT16_MAX - 1;
		}
		c->ping_at = 0;
		break;
	case WS_OP_CLOSE: {
		unsigned code = 0;
		uint32_t st = 0;

		c->close_rcvd = 1;
		/* §5.5.1: a body is a 2-byte code and a UTF-8 reason. */
		if (n == 1) {
			conn_fail(c, WS_CLOSE_PROTOCOL);
			return;
		}
		if (n >= 2) {
			code = p[0] << 8 | p[1];
			if (!ws_close_code_valid(code)) {
				conn_fail(c, WS_CLOSE_PROTOCOL);
				return;
			}
			if (ws_utf8_valid(&st, p + 2, n - 2) == -1 || st != 0) {
				conn_fail(c, WS_CLOSE_BAD_DATA);
				return;
			}
		}
		/* §5.5.1: answer with a close, echoing the code. */
		send_close(c, code, NULL, W_PEER);
		break;
	}
	}
}

/*
 * Unfinished messages are bounded in total (--assembly-total), so many
 * clients cannot each make wsd hold --max-message.  The buffer grows to
 * the frame's announced size, and at least doubles, so a message of many
 * small fragments costs O(n), not O(n^2); the decoder has already bounded
 * the message by max_message.  Returns 0, or the close code: 1013 past
 * the total, 1011 out of memory.
 */
static size_t assembly_total;

static int
msg_reserve(struct ws_in *in, size_t want)
{
	size_t ncap = in->mcap * 2;
	uint8_t *m;

	if (want <= in->mcap)
		return 0;
	if (ncap < want)
		ncap = want;
	if (ncap > cfg.max_message && want <= cfg.max_message)
		ncap = cfg.max_message;
	/* The first test holds after a SIGHUP lowered the limit. */
	if (assembly_total > cfg.assembly_total ||
	    ncap - in->mcap > cfg.assembly_total - assembly_total) {
		ws_stats.limit[WS_L_ASSEMBLY_TOTAL]++;
		return WS_CLOSE_TRY_AGAIN;
	}
	if ((m = realloc(in->msg, ncap)) == NULL)
		return WS_CLOSE_INTERNAL;
	assembly_total += ncap - in->mcap;
	in->msg = m;
	in->mcap = ncap;
	return 0;
}

static void
msg_free(struct ws_in *in)
{
	freed += in->mcap;
	assembly_total -= in->mcap;
	free(in->msg);
	in->msg = NULL;
	in->mlen = in->mcap = 0;
}

/* One chunk of payload.  buf is ours (the read buffer), so a frame that
 * arrived whole is unmasked in place and delivered without a copy. */
static void
chunk(struct ws_conn *c, struct ws_in *in, const struct ws_chunk *ch,
    uint8_t *p)
{
	int op = ch->opcode, code;

	if (op >= WS_OP_CLOSE) {
		if (ch->first && ch->end) {
			ws_unmask(p, p, ch->n, in->p.mask, 0);
			control(c, op, p, ch->n);
		} else {
			ws_unmask(in->ctrl + ch->off, p, ch->n, in->p.mask,
			    ch->off);
			if (ch->end)
				control(c, op, in->ctrl, in->p.len);
		}
		return;
	}
	if (op == WS_OP_CONT)
		op = in->p.msg_op;
	if (ch->first && ch->end && ch->fin && ch->opcode != WS_OP_CONT) {
		uint32_t st = 0;

		ws_unmask(p, p, ch->n, in->p.mask, 0);
		if (op == WS_OP_TEXT && (ws_utf8_valid(&st, p, ch->n) == -1 ||
		    st != 0)) {
			conn_fail(c, WS_CLOSE_BAD_DATA);
			return;
		}
		deliver(c, op, p, ch->n);
		return;
	}
	if (ch->first && (code = msg_reserve(in, in->mlen + in->p.len)) != 0) {
		conn_fail(c, code);
		return;
	}
	/* An empty fragment has nothing to unmask (and no buffer yet). */
	if (ch->n > 0)
		ws_unmask(in->msg + in->mlen, p, ch->n, in->p.mask, ch->off);
	/* §8.1: fail as soon as a text prefix cannot be UTF-8, without
	 * waiting for the rest of the message. */
	if (op == WS_OP_TEXT && ch->n > 0 &&
	    ws_utf8_valid(&in->utf8, in->msg + in->mlen, ch->n) == -1) {
		conn_fail(c, WS_CLOSE_BAD_DATA);
		return;
	}
	in->mlen += ch->n;
	if (ch->end && ch->fin) {
		if (op == WS_OP_TEXT && in->utf8 != 0) {
			conn_fail(c, WS_CLOSE_BAD_DATA);
			return;
		}
		deliver(c, op, in->msg, in->mlen);
		in->mlen = 0;
		in->utf8 = 0;
	}
}

static int
in_idle(const struct ws_in *in)
{
	return in->p.state == WS_P_HEAD && in->p.have == 0 && !in->p.in_msg;
}

static void
in_free(struct ws_in *in)
{
	if (in != NULL) {
		body_total -= in->body_held;
		msg_free(in);
		freed += in->hcap;
		free(in->head);
		free(in->extra);
		free(in);
	}
}

/* Frames from buf[0..len).  With no input state yet, decode with one on
 * the stack and keep it only if the read ended mid-frame or mid-message. */
static void
conn_input(struct ws_conn *c, uint8_t *buf, size_t len)
{
	struct ws_in tmp, *in = c->in;
	uint64_t done = ws_stats.messages_in;
	size_t off = 0;

	if (in == NULL) {
		memset(&tmp, 0, sizeof tmp);
		ws_parser_init(&tmp.p, cfg.max_message);
		in = &tmp;
	}
	while (c->state == C_WS && !c->dead) {
		struct ws_chunk ch;
		int code;
		long n = ws_frame_parse(&in->p, buf + off, len - off, &ch, &code);

		if (n == WS_AGAIN)
			break;
		if (n == WS_ERROR) {
			if (code == WS_CLOSE_TOO_BIG)
				ws_stats.limit[WS_L_MAX_MESSAGE]++;
			conn_fail(c, code);
			break;
		}
		chunk(c, in, &ch, buf + (ch.p - buf));
		off += n;
	}
	/* A message has --handshake-timeout to arrive whole, counted from
	 * the last message boundary: dripping never holds a buffer long. */
	if (c->state == C_WS)
		c->deadline = in_idle(in) ? 0 : c->deadline == 0 ||
		    ws_stats.messages_in != done ? loop_now_ms() + cfg.handshake_ms :
		    c->deadline;
	if (c->state != C_WS || in_idle(in)) {
		if (in == &tmp)
			msg_free(&tmp);
		else {
			in_free(in);
			c->in = NULL;
		}
	} else if (in == &tmp) {
		if ((c->in = malloc(sizeof *c->in)) == NULL) {
			msg_free(&tmp);
			conn_fail(c, WS_CLOSE_INTERNAL);
			return;
		}
		*c->in = tmp;
	}
}

/* ==== HTTP: requests, responses, upgrade ============================= */

static const char *
ws_status_text(int status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default:  return "Unknown";
	}
}

static const char *extra_headers = "";	/* ws_http_extra() */

void
ws_http_extra(const char *headers)
{
	extra_headers = headers != NULL ? headers : "";
}

/* The head of an answer: status line, type, length (len < 0: none, as
 * for 204, 304 and a stream), extra and the caller's headers.  Its
 * length, or -1 when it does not fit. */
static int
http_head(char *out, size_t cap, int status, const char *type, long len,
    const char *headers, int keep)
{
	char clen[48] = "";
	int n;

	if (len >= 0)
		snprintf(clen, sizeof clen, "Content-Length: %ld\r\n", len);
	n = snprintf(out, cap, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
	    "%s%s%s%s\r\n", status, ws_status_text(status),
	    type ? type : "application/json", clen, extra_headers,
	    headers ? headers : "", keep ? "" : "Connection: close\r\n");
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

void
ws_http_respond(struct ws_conn *c, int status, const char *type,
    const char *headers, const void *body, size_t len)
{
	char head[2048];
	int keep = c->keep_alive && drain_until == 0;
	int n;
	struct ws_buf *b;

	if (c->state != C_HTTP || c->dead)
		return;
	/* RFC 9110 §8.6: no Content-Length on a 204; a 304's would be the
	 * length of what was not sent.  A deferred answer carries the extra
	 * headers of its own request, not of the one being handled now. */
	if (c->deferred && c->in != NULL && c->in->extra != NULL) {
		const char *now = extra_headers;

		extra_headers = c->in->extra;
		n = http_head(head, sizeof head, status, type,
		    status == 204 || status == 304 ? -1 : (long)len, headers,
		    keep);
		extra_headers = now;
	} else
		n = http_head(head, sizeof head, status, type,
		    status == 204 || status == 304 ? -1 : (long)len, headers,
		    keep);
	if (n < 0 || (b = ws_buf_new(n + len)) == NULL) {
		conn_kill(c, W_INTERNAL);
		return;
	}
	memcpy(b->data, head, n);
	if (len > 0)
		memcpy(b->data + n, body, len);
	b->http = 1;
	if (conn_push(c, b) == -1)
		conn_kill(c, W_INTERNAL);
	ws_buf_unref(b);
	if (!keep) {
		conn_closing(c, drain_until != 0 ? W_SHUTDOWN : W_DONE, 0);
		c->state = C_CLOSING;
	}
}

int
ws_http_stream(struct ws_conn *c, struct ws_app_conn *a, const char *headers,
    const void *first, size_t len)
{
	char head[2048];
	int n;
	struct ws_buf *b;

	if (c->state != C_HTTP || c->dead || drain_until != 0)
		return -1;
	n = http_head(head, sizeof head, 200, "text/event-stream", -1,
	    headers, 0);
	if (n < 0 || (b = ws_buf_new(n + len)) == NULL)
		return -1;
	memcpy(b->data, head, n);
	memcpy(b->data + n, first, len);
	b->http = 1;
	if (conn_push(c, b) == -1) {
		ws_buf_unref(b);
		return -1;
	}
	ws_buf_unref(b);
	c->state = C_STREAM;
	c->app = a;
	c->keep_alive = 0;
	c->deadline = 0;
	c->ping_at = loop_now_ms();
	c->streamed = 1;
	ws_stats.streams++;
	log_msg(LOG_INFO, "stream opened conn=%llu",
	    (unsigned long long)c->id);
	return 0;
}

void
ws_http_error(struct ws_conn *c, int status, const char *code,
    const char *message, const char *headers)
{
	char body[256];
	int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":"
	    "\"%s\"}", code, message);

	ws_http_respond(c, status, "application/json", headers, body, n);
}

void
ws_hold(struct ws_conn *c)
{
	c->holds++;
}

void
ws_release(struct ws_conn *c)
{
	if (--c->holds == 0 && c->dead && stopped)
		reap();		/* no turn will come to free it */
}

int
ws_open(const struct ws_conn *c)
{
	return !c->dead && c->state != C_CLOSING && c->state != C_LINGER;
}

void
ws_http_defer(struct ws_conn *c)
{
	c->deferred = 1;
	ws_hold(c);
	/* From handlers.http: c->in holds the request, and is kept. */
	if (c->in != NULL && *extra_headers != '\0')
		c->in->extra = strdup(extra_headers);	/* NULL: none */
	if (!c->dead)
		ep_mod(c);
}

void
ws_http_resume(struct ws_conn *c)
{
	c->deferred = 0;
	if (c->in != NULL) {
		free(c->in->extra);
		c->in->extra = NULL;
		if (!c->dead && c->in->hlen == 0) {
			in_free(c->in);
			c->in = NULL;
		}
	}
	if (!c->dead && c->state == C_HTTP) {
		ep_mod(c);
		c->deadline = loop_now_ms() + cfg.handshake_ms;
		/* Requests that came behind it are answered next turn. */
		if (c->in != NULL && c->in->hlen > 0)
			input_later(c);
	}
	ws_release(c);
}

/* A fixed-text JSON error for failures found before any handler ran; the
 * connection closes after it. */
static void
http_error(struct ws_conn *c, int status, const char *extra)
{
	const char *code;

	switch (status) {
	case 400: code = "bad_request"; break;
	case 401: code = "unauthorized"; break;
	case 403: code = "forbidden"; break;
	case 404: code = "not_found"; break;
	case 413: code = "too_large"; break;
	case 426: code = "upgrade_required"; break;
	case 431: code = "header_too_large"; break;
	case 503: code = "unavailable"; break;
	default:  code = "error"; break;
	}
	c->keep_alive = 0;
	ws_http_error(c, status, code, ws_status_text(status), extra);
}

static void
handshake_fail(struct ws_conn *c, int status, enum ws_hs_fail why,
    const char *extra)
{
	ws_stats.handshake_fail[why]++;
	log_msg(LOG_DEBUG, "handshake refused conn=%llu status=%d reason=%s",
	    (unsigned long long)c->id, status, ws_hs_fail_names[why]);
	http_error(c, status, extra);
}


/*
 * RFC 6455 §4.2.1 and §4.2.2.  Returns 1 when the connection is now a
 * WebSocket, 0 when it was refused (a response is queued).
 */
static int
handshake(struct ws_conn *c, const struct http_req *req)
{
	const struct http_slice *key, *ver, *proto;
	struct ws_app_conn *a = NULL;
	char accept[29], resp[512];
	const char *subproto = NULL;
	struct ws_buf *b;
	int n, status = 0;

	key = http_header(req, "sec-websocket-key");
	ver = http_header(req, "sec-websocket-version");
	/* §11.3.1: Sec-WebSocket-Key must not appear more than once. */
	if (!http_slice_eq(req->method, "GET") || req->minor < 1 ||
	    !req->conn_upgrade || key == NULL || !ws_key_valid(key->p, key->n) ||
	    http_header_count(req, "sec-websocket-key") > 1) {
		handshake_fail(c, 400, WS_HS_BAD_REQUEST, NULL);
		return 0;
	}
	/* §4.4: tell a client of another version which one we speak. */
	if (ver == NULL || !http_slice_eq(*ver, "13")) {
		handshake_fail(c, 426, WS_HS_VERSION,
		    "Sec-WebSocket-Version: 13\r\n");
		return 0;
	}
	if (c->over_limit) {
		ws_stats.limit[WS_L_MAX_CONNECTIONS]++;
		handshake_fail(c, 503, WS_HS_LIMIT, NULL);
		return 0;
	}
	if (cfg.echo && http_slice_eq(req->path, "/echo"))
		c->echo = 1;
	else if (app.upgrade == NULL)
		status = 404;
	else
		status = app.upgrade(c, req, &a);
	if (!c->echo && status != 0) {
		ws_stats.handshake_fail[WS_HS_REFUSED]++;
		http_error(c, status, NULL);
		return 0;
	}
	/* A subprotocol is chosen only when configured and offered; an
	 * extension (permessage-deflate) is declined by leaving it out. */
	proto = http_header(req, "sec-websocket-protocol");
	if (cfg.subprotocol != NULL && proto != NULL &&
	    http_has_token(*proto, cfg.subprotocol))
		subproto = cfg.subprotocol;
	ws_accept_key(key->p, key->n, accept);
	n = snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n", accept,
	    subproto ? "Sec-WebSocket-Protocol: " : "",
	    subproto ? subproto : "", subproto ? "\r\n" : "");
	if ((b = ws_buf_new(n)) == NULL) {
		if (app.closed != NULL && a != NULL)
			app.closed(c, a);
		conn_kill(c, W_INTERNAL);
		return 0;
	}
	memcpy(b->data, resp, n);
	b->http = 1;
	if (conn_push(c, b) == -1) {
		ws_buf_unref(b);
		if (app.closed != NULL && a != NULL)
			app.closed(c, a);
		conn_kill(c, W_INTERNAL);
		return 0;
	}
	ws_buf_unref(b);
	c->app = a;
	c->state = C_WS;
	c->deadline = 0;
	c->upgraded = 1;
	ws_stats.websockets++;
	if (app.open != NULL && !c->echo)
		app.open(c, a);
	return 1;
}

/*
 * A request head, before its body is read: the limits, then the layer
 * above's checks of credentials (handlers.head), so an unauthenticated
 * client can make wsd hold no body at all.  A refusal closes the
 * connection when the body has not arrived whole (it is not read).
 * Returns 1 to go on with the request, 0 when it was answered.
 */
static int
head_ok(struct ws_conn *c, const struct http_req *req, int body_in)
{
	c->keep_alive = req->keep_alive && body_in;
	if (req->content_length > cfg.max_body) {
		ws_stats.limit[WS_L_MAX_BODY]++;
		http_error(c, 413, NULL);
	} else if (c->over_limit) {
		ws_stats.limit[WS_L_MAX_CONNECTIONS]++;
		http_error(c, 503, NULL);
	}
	else if (app.head == NULL || app.head(c, req) == 0) {
		c->head_ok = 1;
		return 1;
	}
	return 0;
}

/*
 * Bodies being received are bounded in total (--max-body-total), so many
 * slow clients cannot each make wsd hold --max-body.  Hold n bytes for c's
 * body (n = 0 gives back what it held; so does freeing c->in).  Returns
 * 0, or -1 past the limit.
 */
static int
body_hold(struct ws_conn *c, size_t n)
{
	struct ws_in *in = c->in;

	if (in == NULL)
		return n == 0 ? 0 : -1;
	if (n == in->body_held)
		return 0;
	body_total -= in->body_held;
	in->body_held = 0;
	/* The first test holds after a SIGHUP lowered the limit. */
	if (body_total > cfg.max_body_total ||
	    n > cfg.max_body_total - body_total)
		return -1;
	body_total += n;
	in->body_held = n;
	return 0;
}

/*
 * Requests from the head buffer: as many as have arrived whole (HTTP/1.1
 * pipelining), each answered in order.  The bytes after an upgrade request
 * are the client's first frames and go to the frame decoder.
 */
static void
http_input(struct ws_conn *c)
{
	struct ws_in *in = c->in;
	struct http_req req;
	size_t used = 0;
	int budget = HTTP_PER_TURN;

	while (c->state == C_HTTP && !c->dead && !c->deferred &&
	    used < in->hlen) {
		int status;
		long n = http_parse(in->head + used, in->hlen - used,
		    cfg.max_header, &req, &status);

		if (n == HTTP_AGAIN)
			break;
		if (n == HTTP_ERROR) {
			ws_stats.handshake_fail[status == 431 ?
			    WS_HS_TOO_LARGE : WS_HS_BAD_REQUEST]++;
			if (status == 431)
				ws_stats.limit[WS_L_MAX_HEADER]++;
			http_error(c, status, NULL);
			break;
		}
		if (req.upgrade) {
			used += n;
			if (handshake(c, &req) && used < in->hlen) {
				/* The client's first frames came with its
				 * head (as much as max_header + max_body):
				 * the decoder unmasks in place, so they go
				 * through the read buffer, a piece at a
				 * time, and the head buffer is freed after. */
				c->in = NULL;
				while (used < in->hlen && c->state == C_WS &&
				    !c->dead) {
					size_t k = in->hlen - used;

					if (k > sizeof rbuf)
						k = sizeof rbuf;
					memcpy(rbuf, in->head + used, k);
					used += k;
					conn_input(c, rbuf, k);
				}
				in_free(in);
				return;
			}
			break;
		}
		if (budget-- == 0) {
			/* Fair to the others: the rest waits a turn. */
			input_later(c);
			break;
		}
		if (!c->head_ok && !head_ok(c, &req,
		    in->hlen - used - n >= req.content_length)) {
			/* Refused and answered.  A body that has arrived is
			 * skipped and the next request read; one still
			 * coming is not read: the connection closes. */
			if (c->state != C_HTTP)
				break;
			used += n + req.content_length;
			continue;
		}
		if (in->hlen - used - n < req.content_length) {
			/* The body is still coming: hold room for it. */
			if (body_hold(c, req.content_length) == -1) {
				ws_stats.limit[WS_L_MAX_BODY_TOTAL]++;
				http_error(c, 503, NULL);
			}
			break;
		}
		body_hold(c, 0);
		c->head_ok = 0;
		/* A client that pipelines requests but does not read the
		 * answers may not grow our queue without bound either. */
		if (queued(c) > cfg.send_queue) {
			ws_stats.limit[WS_L_SEND_QUEUE]++;
			log_msg(LOG_INFO, "does not read its responses conn=%llu "
			    "queued=%zu", (unsigned long long)c->id, queued(c));
			conn_kill(c, W_SLOW);
			return;
		}
		ws_stats.http_requests++;
		c->keep_alive = req.keep_alive != 0;
		if (app.http != NULL)
			app.http(c, &req, in->head + used + n,
			    req.content_length);
		else
			http_error(c, 404, NULL);
		used += n + req.content_length;
		if (c->state == C_HTTP)
			c->deadline = loop_now_ms() + cfg.handshake_ms;
	}
	if (c->in == NULL)
		return;
	if (used > 0) {
		memmove(in->head, in->head + used, in->hlen - used);
		in->hlen -= used;
	}
	if ((c->state != C_HTTP || in->hlen == 0) && !c->deferred) {
		in_free(c->in);
		c->in = NULL;
	}
}

/* Room left in the head buffer, which holds at most one request whole
 * (head and body) plus what follows it. */
static size_t
http_room(const struct ws_conn *c)
{
	size_t have = c->in ? c->in->hlen : 0;

	/* More than that is held only after a SIGHUP lowered the limits. */
	return have < cfg.max_header + cfg.max_body ?
	    cfg.max_header + cfg.max_body - have : 0;
}

/* Append to the head buffer; conn_read never reads more than http_room. */
static int
http_append(struct ws_conn *c, const uint8_t *p, size_t n)
{
	struct ws_in *in = c->in;
	size_t want;

	if (in == NULL) {
		if ((in = calloc(1, sizeof *in)) == NULL)
			return -1;
		c->in = in;
	}
	want = in->hlen + n;
	if (want > in->hcap) {
		size_t ncap = in->hcap ? in->hcap : 1024;
		uint8_t *h;

		while (ncap < want)
			ncap *= 2;
		if ((h = realloc(in->head, ncap)) == NULL)
			return -1;
		in->head = h;
		in->hcap = ncap;
	}
	memcpy(in->head + in->hlen, p, n);
	in->hlen += n;
	return 0;
}

/* ==== Connection lifecycle =========================================== */

static int
ep_mod(struct ws_conn *c)
{
	/* A connection whose answer is deferred reads nothing meanwhile:
	 * its next requests wait in the socket (level-triggered epoll would
	 * otherwise call us back for them without end). */
	uint32_t events = c->rd_eof || c->deferred ? 0 : EPOLLIN | EPOLLRDHUP;

	if (c->out_armed)
		events |= EPOLLOUT;
	return loop_mod(&c->src, events);
}

/*
 * The line a connection's close gets, once: at info for a WebSocket, at
 * debug for plain HTTP, with the first reason found and the close code
 * sent or received (0: none).
 */
static void
conn_closing(struct ws_conn *c, enum close_why why, unsigned code)
{
	enum log_level level = c->upgraded || c->streamed ? LOG_INFO :
	    LOG_DEBUG;

	if (c->why != W_OPEN || why == W_OPEN)
		return;
	c->why = why;
	if (code != 0)
		log_msg(level, "connection closed conn=%llu reason=\"%s\" "
		    "code=%u", (unsigned long long)c->id, why_names[why], code);
	else
		log_msg(level, "connection closed conn=%llu reason=\"%s\"",
		    (unsigned long long)c->id, why_names[why]);
}

/* The peer's address as text, for the debug line of a new connection. */
static void
peer_name(int fd, char *out, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

			inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
			port = ntohs(s6->sin6_port);
		} else if (ss.ss_family == AF_INET) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

			inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
			port = ntohs(s4->sin_port);
		}
	}
	snprintf(out, cap, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
	    port);
}

static void
conn_new(int fd)
{
	struct ws_conn *c;
	int one = 1;

	if ((c = calloc(1, sizeof *c)) == NULL) {
		close(fd);
		return;
	}
	c->src.fd = fd;
	c->src.event = conn_event;
	c->state = C_HTTP;
	c->id = next_id++;
	c->last_rx = loop_now_ms();
	c->born_s = loop_now_ms() / 1000;
	c->rtt_ms = UINT16_MAX;
	c->deadline = loop_now_ms() + cfg.handshake_ms;
	c->over_limit = ws_stats.connections >= cfg.max_connections;
	if (tls_on() && (c->ssl = tls_new(fd)) == NULL) {
		close(fd);
		free(c);
		return;
	}
	if (loop_add(&c->src, EPOLLIN | EPOLLRDHUP) == -1) {
		tls_free(c->ssl, 0);
		close(fd);
		free(c);
		return;
	}
	/* We coalesce writes ourselves; Nagle would only add latency. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->next = conns;
	if (conns != NULL)
		conns->prev = c;
	conns = c;
	ws_stats.accepted++;
	ws_stats.connections++;
	if (log_on(LOG_DEBUG)) {
		char peer[INET6_ADDRSTRLEN + 8];

		peer_name(fd, peer, sizeof peer);
		log_msg(LOG_DEBUG, "connection opened conn=%llu peer=%s tls=%s",
		    (unsigned long long)c->id, peer, c->ssl ? "true" : "false");
	}
}

/* Close the fd now; free the struct after this loop turn, since an epoll
 * batch or a broadcast may still hold the pointer.  why: the reason, when
 * the close did not start before (conn_closing()). */
static void
conn_kill(struct ws_conn *c, enum close_why why)
{
	if (c->dead)
		return;
	conn_closing(c, why, 0);
	c->dead = 1;
	loop_del(&c->src);
	tls_free(c->ssl, 0);
	c->ssl = NULL;
	close(c->src.fd);
	/* c->in may be in use by the caller (a handler failed while its
	 * input was being decoded): reap() frees it. */
	ring_release(c, 0);
	body_hold(c, 0);
	ws_stats.connections--;
	if (c->upgraded)
		ws_stats.websockets--;
	if (c->streamed)
		ws_stats.streams--;
	/* Unlink from the list of all; link into the reap list (through
	 * prev's place: next stays, for a walk of all that is at c).  It
	 * may still be on the flush list: that list has its own link, and
	 * flush_all() skips the dead. */
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->reap_next = reap_list;
	reap_list = c;
}

/*
 * Free the dead.  Telling the layer above may queue output on others (a
 * group's pending events go out before a member leaves), and in a rare
 * failure even kill one of those: a connection still on the flush list or
 * later_conns is left for the next pass, so no list ever holds a freed
 * pointer.
 */
static int
reap(void)
{
	struct ws_conn *later = NULL;
	int n = 0;

	while (reap_list != NULL) {
		struct ws_conn *c = reap_list;

		reap_list = c->reap_next;
		if (c->app != NULL && app.closed != NULL && !c->dirty &&
		    !c->later) {
			app.closed(c, c->app);
			c->app = NULL;
			n++;	/* it may have queued output: go round */
		}
		if (c->dirty || c->later || c->holds > 0) {
			/* A held connection (an answer from Redis still
			 * to come) waits here, told closed already. */
			c->reap_next = later;
			later = c;
			continue;
		}
		in_free(c->in);
		free(c);
		n++;
	}
	reap_list = later;
	return n;
}

/* One read of at most cap bytes: n > 0, 0 at the end, -1 with errno
 * (EAGAIN: later). */
static ssize_t
conn_recv(struct ws_conn *c, size_t cap)
{
	int dir = 0;
	ssize_t n;

	if (c->ssl == NULL)
		return read(c->src.fd, rbuf, cap);
	n = tls_read(c->ssl, rbuf, cap, &dir);
	/* A TLS read may have to write first (the handshake): wait for
	 * EPOLLOUT then, and read again from there. */
	if (n == -1 && errno == EAGAIN && (dir == TLS_WANT_WRITE) !=
	    c->tls_want) {
		c->tls_want = dir == TLS_WANT_WRITE;
		c->out_armed = c->tls_want || c->q != NULL;
		ep_mod(c);
	}
	return n;
}

/* Returns the bytes read: 0 when nothing was (the end, EAGAIN, an error,
 * or no room). */
static ssize_t
conn_read(struct ws_conn *c)
{
	size_t cap = sizeof rbuf;
	ssize_t n;

	if (c->rd_eof)
		return 0;
	/* Whatever is left unread stays in the socket, and level-triggered
	 * epoll brings us back for it. */
	if (c->state == C_HTTP && http_room(c) < cap)
		cap = http_room(c);
	if (cap == 0) {
		/* The buffer is full of requests left for the next turn
		 * (input_later) or waiting behind a deferred answer: read
		 * again once they are answered (input_all, tls_drain).
		 * Otherwise it cannot happen: a whole request always fits
		 * and is answered before more is read.  Refuse, not spin. */
		if (!c->later && !c->deferred)
			conn_kill(c, W_TOO_BIG);
		return 0;
	}
	n = conn_recv(c, cap);

	if (n == -1) {
		if (errno != EAGAIN && errno != EINTR)
			conn_kill(c, errno == EPROTO ? W_TLS : W_RESET);
		return 0;
	}
	if (n == 0) {
		/* The peer is gone, or has half-closed after its last
		 * request: what it was answered still goes out first
		 * (RFC 9112 §9.6), then we close. */
		if (c->q != NULL && c->state != C_LINGER && c->state != C_WS &&
		    c->state != C_STREAM) {
			c->rd_eof = 1;
			c->out_armed = 1;
			ep_mod(c);
			return 0;
		}
		conn_kill(c, W_PEER);
		return 0;
	}
	ws_stats.bytes_in += n;
	c->last_rx = loop_now_ms();
	switch (c->state) {
	case C_HTTP:
		if (http_append(c, rbuf, n) == -1) {
			conn_kill(c, W_INTERNAL);
			return 0;
		}
		http_input(c);
		break;
	case C_WS:
		conn_input(c, rbuf, n);
		break;
	default:
		break;		/* a stream's reader says nothing; closing */
	}
	return n;
}

/*
 * OpenSSL may hold a record already read from the socket, which epoll
 * cannot see: read it while it has somewhere to go.  A read that takes
 * nothing (the request buffer full behind a deferred answer or requests
 * left for the next turn) stops it; input_all() comes back for the rest
 * once those are answered.
 */
static void
tls_drain(struct ws_conn *c)
{
	while (!c->dead && c->ssl != NULL && tls_pending(c->ssl) > 0 &&
	    conn_read(c) > 0)
		;
}

static void
conn_event(struct loop_src *s, uint32_t events)
{
	struct ws_conn *c = (struct ws_conn *)s;

	if (c->dead)
		return;
	if (c->rd_eof && (events & (EPOLLHUP | EPOLLERR))) {
		conn_kill(c, W_PEER);	/* cannot write either */
		return;
	}
	if ((!c->rd_eof && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP |
	    EPOLLERR))) ||
	    (c->tls_want && (events & EPOLLOUT)))
		conn_read(c);
	tls_drain(c);
	if (!c->dead && ((events & EPOLLOUT) || (c->ssl != NULL &&
	    c->q != NULL && c->q->tls_retry > 0)))
		conn_flush(c);
}

const struct ws_stats *
ws_stats_get(void)
{
	return &ws_stats;
}

void
ws_set_limits(const struct ws_config *c)
{
	cfg.max_connections = c->max_connections;
	cfg.max_header = c->max_header;
	cfg.max_body = c->max_body;
	cfg.max_body_total = c->max_body_total;
	cfg.max_message = c->max_message;
	cfg.assembly_total = c->assembly_total;
	cfg.send_queue = c->send_queue;
	cfg.drain_ms = c->drain_ms;
}

uint64_t
ws_conn_id(const struct ws_conn *c)
{
	return c->id;
}

void
ws_conn_info(const struct ws_conn *c, struct ws_conn_info *out)
{
	out->id = c->id;
	out->age_s = loop_now_ms() / 1000 - c->born_s;
	out->queued = queued(c);
	out->rtt_ms = c->rtt_ms == UINT16_MAX ? -1 : c->rtt_ms;
	out->stream = c->streamed;
	out->tls = c->ssl != NULL;
	peer_name(c->src.fd, out->peer, sizeof out->peer);
}

void
ws_foreach(void (*fn)(struct ws_conn *, struct ws_app_conn *, void *),
    void *arg)
{
	for (struct ws_conn *c = conns; c != NULL; c = c->next)
		if ((c->state == C_WS || c->state == C_STREAM) && !c->dead)
			fn(c, c->app, arg);
}

/* ==== Timers: deadlines, heartbeat =================================== */

/*
 * After a burst of large frees (hostile clients holding bodies and
 * unfinished messages, a history evicted) glibc keeps the freed pages: RSS
 * stayed megabytes above its baseline and crept up round after round.
 * Hand them back, at most once a sweep and only after TRIM_BYTES were
 * freed, so the cost (a walk of the free lists) is paid rarely.
 */
#define TRIM_BYTES	(1u << 20)

static void
give_back(void)
{
	freed += ws_buf_freed();
	if (freed < TRIM_BYTES)
		return;
	freed = 0;
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}

/* Every connection's deadlines, checked a few times a second.  A sweep
 * over 10,000 connections touches 10,000 small structs: well under 1 ms. */
static void
sweep(void *arg)
{
	struct ws_conn *c, *next;

	(void)arg;
	give_back();
	for (c = conns; c != NULL; c = next) {
		next = c->next;
		switch (c->state) {
		case C_HTTP:
			/* No slowloris: a request has handshake_ms to
			 * arrive whole, an idle keep-alive as long. */
			if (loop_now_ms() < c->deadline || c->deferred)
				break;
			if (c->in != NULL && c->in->hlen > 0) {
				ws_stats.handshake_fail[WS_HS_TIMEOUT]++;
				ws_stats.limit[WS_L_HANDSHAKE_TIMEOUT]++;
				conn_kill(c, W_HANDSHAKE);
			} else
				conn_kill(c, W_IDLE);
			break;
		case C_WS:
			if (c->deadline != 0 && loop_now_ms() >= c->deadline) {
				ws_stats.limit[WS_L_MESSAGE_TIMEOUT]++;
				send_close(c, WS_CLOSE_POLICY,
				    "message too slow", W_MSG_SLOW);
			} else if (loop_now_ms() - c->last_rx >= cfg.ping_timeout_ms) {
				conn_kill(c, W_PING);
			} else if (loop_now_ms() - c->last_rx >= cfg.ping_interval_ms &&
			    (c->ping_at == 0 ||
			    loop_now_ms() - c->ping_at >= cfg.ping_interval_ms)) {
				struct ws_buf *b = ws_buf_frame(WS_OP_PING,
				    "wsd", 3);

				if (b != NULL) {
					conn_push(c, b);
					ws_buf_unref(b);
				}
				c->ping_at = loop_now_ms();
			}
			break;
		case C_STREAM:
			/* A comment now and then keeps proxies from closing
			 * an event stream that has had nothing to say. */
			if (c->q == NULL &&
			    loop_now_ms() - c->ping_at >= cfg.ping_interval_ms) {
				static const char hb[] = ":\n\n";
				struct ws_buf *b = ws_buf_new(sizeof hb - 1);

				if (b != NULL) {
					memcpy(b->data, hb, sizeof hb - 1);
					conn_push(c, b);
					ws_buf_unref(b);
				}
				c->ping_at = loop_now_ms();
			}
			break;
		default:
			/* Closing: the reason was given when it started. */
			if (loop_now_ms() >= c->deadline)
				conn_kill(c, W_PEER);
			break;
		}
	}
}

/* ==== Listening ===================================================== */

/* A connection accepted by the reactor (-1: one dropped for lack of fds). */
static void
conn_accept(int fd)
{
	if (fd == -1) {
		ws_stats.handshake_fail[WS_HS_LIMIT]++;
		return;
	}
	/* Past the limit we still read the request, to answer 503, but
	 * only up to a hard ceiling. */
	if (ws_stats.connections >= cfg.max_connections + 1024) {
		ws_stats.limit[WS_L_MAX_CONNECTIONS]++;
		close(fd);
		return;
	}
	conn_new(fd);
}

int
ws_listen(const char *hostport)
{
	return loop_listen(hostport, conn_accept);
}

/* ==== The loop ======================================================= */

int
ws_init(const struct ws_config *c, const struct ws_handlers *h)
{
	unsigned shortest;
	char accept[29];

	cfg = *c;
	app = *h;
	if (loop_init() == -1)
		return -1;
	/* The first SHA-1 makes OpenSSL load its default provider, about
	 * 2 MB of libcrypto paged in once.  That is a cost of the process,
	 * paid here at start rather than inside the first handshake. */
	ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, accept);
	/* Sweep often enough for the shortest timeout to be kept to within
	 * a tenth of itself, but no more than 20 times a second. */
	shortest = cfg.handshake_ms;
	if (cfg.ping_interval_ms < shortest)
		shortest = cfg.ping_interval_ms;
	if (cfg.ping_timeout_ms < shortest)
		shortest = cfg.ping_timeout_ms;
	shortest /= 10;
	if (shortest < 50)
		shortest = 50;
	if (shortest > 1000)
		shortest = 1000;
	return loop_timer(shortest, sweep, NULL);
}

int
ws_draining(void)
{
	return drain_until != 0;
}

/*
 * Stop accepting; close every WebSocket with 1001 behind its queued
 * events; finish HTTP responses; then the loop runs until every
 * connection is gone or drain_ms has passed.
 */
static void
ws_shutdown(void)
{
	struct ws_conn *c, *next;

	if (drain_until != 0)
		return;
	drain_until = loop_now_ms() + cfg.drain_ms + 1;
	notify_stopping();
	log_msg(LOG_INFO, "shutting down connections=%llu",
	    (unsigned long long)ws_stats.connections);
	/* Events accepted this turn go out ahead of the 1001. */
	if (app.turn != NULL)
		app.turn();
	loop_stop_listening();
	for (c = conns; c != NULL; c = next) {
		next = c->next;
		if (c->state == C_WS || c->state == C_STREAM)
			send_close(c, WS_CLOSE_GOING_AWAY, "shutting down",
			    W_SHUTDOWN);
		else if (c->state == C_HTTP && c->q == NULL &&
		    (c->in == NULL || c->in->hlen == 0))
			conn_kill(c, W_SHUTDOWN);
	}
}

/*
 * A connection that pipelined more requests than HTTP_PER_TURN: the rest
 * are answered in the next turns, so one client cannot hold the loop.
 */
static void
input_later(struct ws_conn *c)
{
	if (c->later)
		return;
	if (nlater == later_cap) {
		uint32_t ncap = later_cap ? later_cap * 2 : 16;
		struct ws_conn **n = realloc(later_conns, ncap * sizeof *n);

		if (n == NULL) {
			conn_kill(c, W_INTERNAL);
			return;
		}
		later_conns = n;
		later_cap = ncap;
	}
	c->later = 1;
	later_conns[nlater++] = c;
}

/* The turn's start: the requests left last turn, in their order.  Those
 * left again go behind (input_later appends). */
static void
input_all(void)
{
	uint32_t n = nlater;

	if (n == 0)
		return;
	for (uint32_t i = 0; i < n; i++) {
		struct ws_conn *c = later_conns[i];

		c->later = 0;
		if (!c->dead && c->state == C_HTTP && c->in != NULL) {
			http_input(c);
			tls_drain(c);
		}
	}
	memmove(later_conns, later_conns + n,
	    (nlater - n) * sizeof *later_conns);
	nlater -= n;
}

static void
flush_all(void)
{
	while (flush_list != NULL) {
		struct ws_conn *c = flush_list;

		flush_list = c->flush_next;
		c->flush_next = NULL;
		c->dirty = 0;
		if (!c->dead)
			conn_flush(c);
	}
}

/* ==== The turn ====================================================== */

static int
turn_timeout(void)
{
	return nlater > 0 ? 0 : drain_until != 0 ? 50 : -1;
}

/*
 * The end of a turn: the layer above's batch (handlers.turn), then every queue
 * written.  Reaping may queue output (see reap()): go round until nothing
 * is left to write or to free this turn (one left in later_conns is
 * freed next turn).
 */
static void
turn_end(void)
{
	do {
		if (app.turn != NULL)
			app.turn();
		flush_all();
	} while (reap() > 0 || flush_list != NULL);
}

static int
turn_done(void)
{
	return drain_until != 0 &&
	    (conns == NULL || loop_now_ms() >= drain_until);
}

int
ws_run(void (*on_hup)(void))
{
	struct loop_hooks h = {
		.timeout = turn_timeout, .start = input_all, .end = turn_end,
		.term = ws_shutdown, .hup = on_hup, .done = turn_done,
	};
	int rc = loop_run(&h);

	while (conns != NULL)
		conn_kill(conns, W_SHUTDOWN);
	/* Until nothing moves: a connection still held (ws_hold) is freed
	 * by its ws_release(), once its holder lets it go. */
	do {
		input_all();
		flush_all();
	} while (reap() > 0 || nlater > 0 || flush_list != NULL);
	free(later_conns);
	later_conns = NULL;
	later_cap = 0;
	stopped = 1;
	loop_free();
	log_msg(LOG_INFO, "stopped");
	return rc;
}
