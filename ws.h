/*
 * ws.h - the epoll reactor, HTTP/1.1 requests and RFC 6455 WebSocket.
 *
 * ws.c owns every socket: it accepts, reads, parses HTTP request heads,
 * performs the opening handshake, decodes and validates frames, assembles
 * messages, queues and writes output, and closes.  It knows nothing of
 * JSON, groups or sessions: those live above it and are reached through
 * struct ws_handlers.
 *
 * Parsers (ws_http_parse, ws_frame_parse, ws_utf8_valid) are pure
 * functions over (buf, len) with one return convention:
 *
 *	n >= 0		n bytes consumed (and a result produced)
 *	WS_AGAIN	all input consumed or none usable: need more
 *	WS_ERROR	protocol error: *status (HTTP) or *code (close) says which
 */
#ifndef WS_H
#define WS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WS_AGAIN	(-1)
#define WS_ERROR	(-2)

/* Defaults of the limits in struct ws_config (each is also an option). */
#define WS_MAX_HEADER		8192		/* request line + headers */
#define WS_MAX_HEADERS		64		/* header lines */
#define WS_MAX_MESSAGE		(1u << 20)	/* assembled message */
#define WS_MAX_BODY		(1u << 20)	/* HTTP request body */
#define WS_MAX_BODY_TOTAL	(64u << 20)	/* bodies being received */
#define WS_ASSEMBLY_TOTAL	(64u << 20)	/* unfinished messages held */
#define WS_SEND_QUEUE		(4u << 20)	/* queued bytes per connection */
#define WS_MAX_CONNECTIONS	10000
#define WS_HANDSHAKE_MS		10000
#define WS_PING_INTERVAL_MS	25000
#define WS_PING_TIMEOUT_MS	60000
#define WS_CLOSE_MS		2000		/* wait for the peer after close */
#define WS_DRAIN_MS		5000

/* RFC 6455 §5.2 opcodes. */
enum {
	WS_OP_CONT = 0x0, WS_OP_TEXT = 0x1, WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8, WS_OP_PING = 0x9, WS_OP_PONG = 0xA
};

/* RFC 6455 §7.4.1 close codes wsd sends. */
enum {
	WS_CLOSE_NORMAL = 1000, WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL = 1002, WS_CLOSE_BAD_DATA = 1007,
	WS_CLOSE_POLICY = 1008, WS_CLOSE_TOO_BIG = 1009,
	WS_CLOSE_INTERNAL = 1011, WS_CLOSE_TRY_AGAIN = 1013
};

/* ---- Slices and shared buffers --------------------------------------- */

/* A borrowed byte range; never NUL-terminated. */
struct ws_slice {
	const char *p;
	size_t      n;
};

/*
 * A reference-counted, immutable output buffer: whole frames (or one whole
 * HTTP response).  An event is encoded once into a ws_buf and the same
 * buffer sits in every subscriber's queue; the last unref frees it.  For
 * one frame, hlen is the length of its header, so data + hlen is the
 * payload; a batch holds nframes frames back to back.
 */
struct ws_buf {
	uint32_t refs;
	uint32_t len;
	uint32_t nframes;	/* messages it carries, for the counters */
	uint16_t hlen;
	uint8_t  ctrl;		/* control frame: jumps the queue, not counted */
	uint8_t  http;		/* HTTP response: never dropped nor overtaken */
	uint8_t  data[];
};

/* A frame with the given payload (copied); NULL when out of memory. */
struct ws_buf	*ws_buf_frame(int opcode, const void *payload, size_t len);

/* The frames of bufs[0..n) back to back in one buffer; NULL: no memory. */
struct ws_buf	*ws_buf_batch(struct ws_buf *const *bufs, uint32_t n);
void		 ws_buf_ref(struct ws_buf *b);
void		 ws_buf_unref(struct ws_buf *b);	/* accepts NULL */

/* ---- HTTP request head ----------------------------------------------- */

struct ws_header {
	struct ws_slice name;
	struct ws_slice value;		/* optional white space trimmed */
};

/* A parsed request head; every slice points into the caller's buffer. */
struct ws_http_req {
	struct ws_slice  method;
	struct ws_slice  target;	/* as sent: path and query */
	struct ws_slice  path;		/* target up to '?' */
	struct ws_slice  query;		/* after '?', may be empty */
	int              minor;		/* HTTP/1.minor */
	int              nhdr;
	struct ws_header hdr[WS_MAX_HEADERS];
	uint64_t         content_length;	/* 0 when absent */
	int              keep_alive;
	int              upgrade;	/* Upgrade lists "websocket" */
	int              conn_upgrade;	/* a Connection line lists "upgrade" */
};

/*
 * Parse one request head from buf[0..len).  Returns the head's length
 * (through the blank line) when complete, WS_AGAIN when the blank line has
 * not arrived and len < max, or WS_ERROR with *status set: 400 malformed,
 * 431 head over max bytes or over WS_MAX_HEADERS lines, 501 a
 * Transfer-Encoding (wsd takes Content-Length bodies only), 505 not
 * HTTP/1.x.  A bare LF (anywhere, even before the head is complete) and
 * obsolete line folding are refused with 400.
 */
long	ws_http_parse(const uint8_t *buf, size_t len, size_t max,
	    struct ws_http_req *req, int *status);

/* The value of header name (case-insensitive), or NULL. */
const struct ws_slice *ws_http_header(const struct ws_http_req *req,
	    const char *name);

/* 1 if the comma-separated value lists token (case-insensitive). */
int	ws_http_has_token(struct ws_slice value, const char *token);

/*
 * Percent-decode in (RFC 3986 §2.1; plus: '+' is a space, as in a query)
 * into out, NUL-terminated, writing at most cap bytes.  Returns the
 * decoded length, which is >= cap when it did not fit (as snprintf does),
 * or WS_ERROR for a malformed escape or an encoded NUL.
 */
long	ws_pct_decode(struct ws_slice in, int plus, char *out, size_t cap);

/*
 * The value of query parameter name, percent-decoded into out (cap bytes,
 * NUL-terminated).  Returns its length, -1 if absent, or WS_ERROR if
 * malformed or too long for out.
 */
long	ws_query_param(struct ws_slice query, const char *name, char *out,
	    size_t cap);

/*
 * Query parameter name as an unsigned decimal into *out, clamped to max.
 * Returns 1 when present, 0 when absent (*out = dflt), -1 if malformed.
 */
int	ws_query_uint(struct ws_slice query, const char *name, uint64_t dflt,
	    uint64_t max, uint64_t *out);

/* The credentials of "Authorization: Bearer X"; n is 0 when absent. */
struct ws_slice ws_http_bearer(const struct ws_http_req *req);

/* Sec-WebSocket-Accept for key (RFC 6455 §4.2.2): 28 chars + NUL. */
void	ws_accept_key(struct ws_slice key, char out[29]);

/* ---- Frame decoder --------------------------------------------------- */

/*
 * The resumable frame decoder.  It checks every rule of RFC 6455 §5 that
 * can be checked from the frame headers, for a server: masking, RSV bits,
 * opcodes, control frame size and fragmentation, continuation order, and
 * the message size limit.  Payload bytes are handed out still masked, in
 * chunks, as they arrive; ws_unmask() undoes the mask.
 */
enum ws_pstate { WS_P_HEAD, WS_P_LEN, WS_P_MASK, WS_P_DATA };

struct ws_parser {
	uint8_t  state;		/* enum ws_pstate */
	uint8_t  need;		/* header bytes still needed in this state */
	uint8_t  have;		/* header bytes collected in hdr */
	uint8_t  fin;
	uint8_t  opcode;
	uint8_t  in_msg;	/* a fragmented data message is open */
	uint8_t  msg_op;	/* its opcode, text or binary */
	uint8_t  hdr[14];
	uint8_t  mask[4];
	uint64_t len;		/* this frame's payload length */
	uint64_t left;		/* payload bytes of this frame still to come */
	uint64_t msg_len;	/* payload bytes of the open message so far */
	uint64_t max_msg;	/* limit on msg_len (close 1009) */
};

/* One run of payload bytes from one frame. */
struct ws_chunk {
	const uint8_t *p;	/* masked bytes in the caller's buffer */
	size_t         n;
	uint64_t       off;	/* offset of p in the frame's payload */
	uint8_t        opcode;	/* the frame's; continuation stays 0 */
	uint8_t        fin;
	uint8_t        first;	/* first chunk of this frame */
	uint8_t        end;	/* last chunk of this frame */
};

void	ws_parser_init(struct ws_parser *p, uint64_t max_msg);

/*
 * Consume header bytes and at most one chunk of payload.  Returns bytes
 * consumed with *c filled (an empty frame gives one chunk with n = 0),
 * WS_AGAIN when all of len was consumed into the header state and no chunk
 * is ready, or WS_ERROR with *code = 1002 (protocol) or 1009 (too big).
 */
long	ws_frame_parse(struct ws_parser *p, const uint8_t *buf, size_t len,
	    struct ws_chunk *c, int *code);

/* dst[i] = src[i] ^ mask[(off + i) % 4]; dst may equal src. */
void	ws_unmask(uint8_t *dst, const uint8_t *src, size_t n,
	    const uint8_t mask[4], uint64_t off);

/*
 * Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF).  *state starts at 0 and carries a sequence
 * split across calls.  Returns 0 if s is a valid prefix so far, -1 as soon
 * as it cannot be; a message is complete and valid when the last call
 * returned 0 and *state is 0 again.
 */
int	ws_utf8_valid(uint32_t *state, const uint8_t *s, size_t n);

/* 1 if a close frame may carry code (RFC 6455 §7.4). */
int	ws_close_code_valid(unsigned code);

/* ---- Connections and the reactor ------------------------------------- */

struct ws_conn;
struct ws_app_conn;	/* the layer above's per-connection state */

struct ws_handlers {
	/*
	 * An upgrade request that passed every RFC 6455 check.  Return 0 to
	 * accept or an HTTP status to refuse; the layer above may set
	 * *app for the connection's lifetime.
	 */
	int	(*upgrade)(struct ws_conn *c, const struct ws_http_req *req,
		    struct ws_app_conn **app);
	void	(*open)(struct ws_conn *c, struct ws_app_conn *app);
	/* A whole, valid data message; text is valid UTF-8. */
	void	(*message)(struct ws_conn *c, struct ws_app_conn *app,
		    int opcode, const uint8_t *p, size_t n);
	/* The connection is about to be freed: drop every reference. */
	void	(*closed)(struct ws_conn *c, struct ws_app_conn *app);
	/* The send queue drained after ws_want_writable(c): send more. */
	void	(*writable)(struct ws_conn *c, struct ws_app_conn *app);
	/*
	 * An HTTP request head that is not an upgrade, before its body is
	 * read: return 0 to go on, or respond (ws_http_respond) and return
	 * -1; the body is then not read.  The place for credentials.
	 */
	int	(*head)(struct ws_conn *c, const struct ws_http_req *req);
	/* A whole HTTP request that is not an upgrade; must respond. */
	void	(*http)(struct ws_conn *c, const struct ws_http_req *req,
		    const uint8_t *body, size_t blen);
};

struct ws_config {
	size_t   max_header;
	size_t   max_message;
	size_t   max_body;
	size_t   max_body_total;	/* bodies being received, in all */
	size_t   assembly_total;	/* unfinished messages, in all */
	size_t   send_queue;
	unsigned max_connections;
	unsigned handshake_ms;
	unsigned ping_interval_ms;
	unsigned ping_timeout_ms;
	unsigned drain_ms;
	int      echo;			/* serve /echo */
	const char *subprotocol;	/* echoed when offered; may be NULL */
};

/* Counters for /health and /metrics. */
struct ws_stats {
	uint64_t accepted;
	uint64_t connections;		/* open now, HTTP and WebSocket */
	uint64_t websockets;		/* open now, upgraded */
	uint64_t messages_in, messages_out;
	uint64_t bytes_in, bytes_out;
	uint64_t slow_closes;		/* 1013 */
	uint64_t handshake_fail[6];	/* by enum ws_hs_fail */
	uint64_t http_requests;
};

enum ws_hs_fail {
	WS_HS_BAD_REQUEST, WS_HS_VERSION, WS_HS_TOO_LARGE, WS_HS_TIMEOUT,
	WS_HS_REFUSED, WS_HS_LIMIT
};

extern struct ws_stats ws_stats;
extern const char *const ws_hs_fail_names[6];

/*
 * Set up the reactor.  Returns 0, or -1 with a logged reason.
 */
int	ws_init(const struct ws_config *cfg, const struct ws_handlers *h);

/* Listen on "HOST:PORT" ("[::1]:PORT" for IPv6).  0 or -1 (logged). */
int	ws_listen(const char *hostport);

/*
 * Call fn every interval_ms from the loop, on a timerfd.  Returns 0 or -1.
 */
int	ws_timer(unsigned interval_ms, void (*fn)(void *), void *arg);

/*
 * Run until a shutdown completes.  SIGTERM and SIGINT start the drain,
 * SIGHUP calls on_hup.  Returns the exit status (0 after a clean drain).
 */
int	ws_run(void (*on_hup)(void));

/* Monotonic milliseconds, read once per loop turn. */
uint64_t ws_now_ms(void);

/*
 * Queue a shared frame on c (taking a reference).  Returns 0, or -1 when c
 * is closing or was just closed with 1013 for passing the send queue
 * limit.  Output is written once per loop turn.
 */
int	ws_send(struct ws_conn *c, struct ws_buf *b);

/*
 * 1 if len more bytes may be queued on c by a sender that paces itself
 * (a replay of history): while the queue is empty, or stays within half
 * of --send-queue, leaving the other half to live traffic.  When it says
 * 0, call ws_want_writable(c) and continue from handlers.writable.
 */
int	ws_has_room(const struct ws_conn *c, size_t len);
void	ws_want_writable(struct ws_conn *c);

/* Frame and queue one message for c alone. */
int	ws_send_msg(struct ws_conn *c, int opcode, const void *p, size_t n);

/* Start the close handshake with code (0: empty close payload). */
void	ws_close(struct ws_conn *c, unsigned code, const char *reason);

/*
 * Call fn at the end of every loop turn, before output is written: the
 * hook for work that is cheaper done once per turn (batching).
 */
void	ws_on_turn(void (*fn)(void));

/*
 * Queue an HTTP response.  headers are extra header lines, each ending in
 * "\r\n", or NULL.  The connection closes after it when the request did
 * not keep the connection alive or when status >= 400 for a request whose
 * body was not read.
 */
void	ws_http_respond(struct ws_conn *c, int status, const char *type,
	    const char *headers, const void *body, size_t len);

/* The connection's number, unique for the life of the process. */
uint64_t ws_conn_id(const struct ws_conn *c);

/* Visit every open WebSocket connection (none is freed during the walk). */
void	ws_foreach(void (*fn)(struct ws_conn *, struct ws_app_conn *, void *),
	    void *arg);

/* 1 once SIGTERM or SIGINT started the drain (/readyz answers 503). */
int	ws_draining(void);

#endif
