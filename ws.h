/*
 * ws.h - connections (ws.c): HTTP/1.1 requests and RFC 6455 WebSocket
 * over the reactor (loop.h).
 *
 * ws.c owns every connection: it reads, hands the bytes to the pure
 * codecs (http_parse.c for request heads, frame.c for frames), performs
 * the opening handshake, assembles messages, queues and writes output,
 * and closes.  It knows nothing of JSON, groups or sessions: those live
 * above it and are reached through struct ws_handlers, which main.c
 * wires.  Functions return 0 or -1 unless they say otherwise.
 */
#ifndef WS_H
#define WS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Defaults of the limits in struct ws_config (each is also an option). */
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

#include "frame.h"
#include "http_parse.h"
#include "loop.h"

/* ---- Connections and the reactor ------------------------------------- */

struct ws_conn;
struct ws_app_conn;	/* the layer above's per-connection state */

struct ws_handlers {
	/*
	 * An upgrade request that passed every RFC 6455 check.  Return 0 to
	 * accept or an HTTP status to refuse; the layer above may set
	 * *app for the connection's lifetime.  An accepted upgrade is
	 * followed at once, before any other request is handled, by open()
	 * or, when the 101 cannot be queued, by closed().
	 */
	int	(*upgrade)(struct ws_conn *c, const struct http_req *req,
		    struct ws_app_conn **app);
	void	(*open)(struct ws_conn *c, struct ws_app_conn *app);
	/* A whole, valid data message; text is valid UTF-8. */
	void	(*message)(struct ws_conn *c, struct ws_app_conn *app,
		    int opcode, const uint8_t *p, size_t n);
	/* The connection is about to be freed: drop every reference. */
	void	(*closed)(struct ws_conn *c, struct ws_app_conn *app);
	/* The end of every loop turn, before output is written: the hook
	 * for work that is cheaper done once per turn (batching). */
	void	(*turn)(void);
	/* The send queue drained after ws_want_writable(c): send more. */
	void	(*writable)(struct ws_conn *c, struct ws_app_conn *app);
	/*
	 * An HTTP request head that is not an upgrade, before its body is
	 * read: return 0 to go on, or respond (ws_http_respond) and return
	 * -1; the body is then not read.  The place for credentials.
	 */
	int	(*head)(struct ws_conn *c, const struct http_req *req);
	/* A whole HTTP request that is not an upgrade; must respond. */
	void	(*http)(struct ws_conn *c, const struct http_req *req,
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

/*
 * The limits of struct ws_config that refuse something, for /metrics
 * (ws_limit_names: the option's name with '_' for '-'; the timeouts are
 * --handshake-timeout for a request and for a message).  Each refusal is
 * counted where it happens: 503 at max_connections (or the connection
 * dropped past its hard ceiling), 431, 413, 503 at max_body_total, close
 * 1009, close 1013 at assembly_total, close 1013 at send_queue (or an
 * HTTP client that does not read its answers), a request or a message
 * that did not arrive whole in time.
 */
enum ws_limit {
	WS_L_MAX_CONNECTIONS, WS_L_MAX_HEADER, WS_L_MAX_BODY,
	WS_L_MAX_BODY_TOTAL, WS_L_MAX_MESSAGE, WS_L_ASSEMBLY_TOTAL,
	WS_L_SEND_QUEUE, WS_L_HANDSHAKE_TIMEOUT, WS_L_MESSAGE_TIMEOUT,
	WS_NLIMITS
};

/* Counters for /health and /metrics. */
struct ws_stats {
	uint64_t accepted;
	uint64_t connections;		/* open now, HTTP and WebSocket */
	uint64_t websockets;		/* open now, upgraded */
	uint64_t streams;		/* open now, event streams */
	uint64_t messages_in, messages_out;
	uint64_t bytes_in, bytes_out;
	uint64_t slow_closes;		/* 1013 */
	uint64_t handshake_fail[6];	/* by enum ws_hs_fail */
	uint64_t http_requests;
	uint64_t limit[WS_NLIMITS];	/* refusals, by enum ws_limit */
};

enum ws_hs_fail {
	WS_HS_BAD_REQUEST, WS_HS_VERSION, WS_HS_TOO_LARGE, WS_HS_TIMEOUT,
	WS_HS_REFUSED, WS_HS_LIMIT
};

const struct ws_stats *ws_stats_get(void);
extern const char *const ws_hs_fail_names[6];
extern const char *const ws_limit_names[WS_NLIMITS];

/* Set up the reactor (loop_init) and the deadline sweep.  0 or -1. */
int	ws_init(const struct ws_config *cfg, const struct ws_handlers *h);

/*
 * SIGHUP: take from cfg the limits that may change while running --
 * max_connections, max_header, max_body, max_body_total, max_message,
 * assembly_total, send_queue, drain_ms -- and keep the rest as ws_init()
 * set them (the timeouts set the sweep's period; echo and subprotocol
 * are for a restart).  A lowered limit meets what comes next: a
 * connection is not closed for what it already holds, but its next
 * request, message or send is measured against the new value.
 */
void	ws_set_limits(const struct ws_config *cfg);

/* Listen on "HOST:PORT" ("[::1]:PORT" for IPv6).  0 or -1 (logged). */
int	ws_listen(const char *hostport);

/*
 * Run until a shutdown completes.  SIGTERM and SIGINT start the drain,
 * SIGHUP calls on_hup.  Returns the exit status (0 after a clean drain).
 */
int	ws_run(void (*on_hup)(void));

/*
 * Queue a shared frame on c (taking a reference): bytes in c's own format,
 * frames for a WebSocket, records for an event stream.  Returns 0, or -1 when c
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

/* Frame and queue one message for c alone (a stream: a record of text). */
int	ws_send_msg(struct ws_conn *c, int opcode, const void *p, size_t n);

/* Start the close handshake with code (0: empty close payload). */
void	ws_close(struct ws_conn *c, unsigned code, const char *reason);


/*
 * Queue an HTTP response.  headers are extra header lines, each ending in
 * "\r\n", or NULL.  The connection closes after it when the request did
 * not keep the connection alive or when status >= 400 for a request whose
 * body was not read.
 */
void	ws_http_respond(struct ws_conn *c, int status, const char *type,
	    const char *headers, const void *body, size_t len);

/*
 * Headers (lines ending in "\r\n", or NULL for none) added to every answer
 * from here until the next call: the layer above sets them for the
 * request it is handling (CORS) and clears them after.  Not copied.
 */
void	ws_http_extra(const char *headers);

/*
 * Answer a GET with an event stream (text/event-stream) that goes on: the
 * head with headers, then first[0..len).  From here c is a stream: app
 * is its layer-above state (handlers.closed is called for it, ws_foreach
 * visits it), ws_send() queues bytes in the stream's own format,
 * ws_send_msg() a text message as one record, anything its reader sends
 * is discarded, an idle stream gets a comment every --ping-interval, and
 * ws_close(), the send queue limit and shutdown end it (there is no close
 * frame: its reader comes back).  0, or -1 (nothing sent; draining or
 * out of memory: answer with an error).
 */
int	ws_http_stream(struct ws_conn *c, struct ws_app_conn *app,
	    const char *headers, const void *first, size_t len);

/*
 * An error answer {"error":code,"message":message}: both fixed texts
 * (never request input), headers as for ws_http_respond().
 */
void	ws_http_error(struct ws_conn *c, int status, const char *code,
	    const char *message, const char *headers);

/*
 * Answers that come later (a Redis reply).  ws_hold(c) keeps c's struct
 * from being freed until the matching ws_release(c): a connection that
 * closes meanwhile is told closed (handlers.closed) as usual, and stays
 * allocated, dead, for the holder to find with ws_open() == 0.
 * ws_open(c): 1 while c may still be sent to.
 *
 * ws_http_defer(c), from handlers.http: the current request's answer
 * comes later.  c holds (as ws_hold) and reads nothing meanwhile, so
 * requests pipelined behind it wait and are answered in order.  Once the
 * answer is queued with ws_http_respond() (or c is no longer open),
 * ws_http_resume(c) lets the next requests go on and releases c.
 */
void	ws_hold(struct ws_conn *c);
void	ws_release(struct ws_conn *c);
int	ws_open(const struct ws_conn *c);
void	ws_http_defer(struct ws_conn *c);
void	ws_http_resume(struct ws_conn *c);

/* The connection's number, unique for the life of the process. */
uint64_t ws_conn_id(const struct ws_conn *c);

/* What /api/connections shows of a connection. */
struct ws_conn_info {
	uint64_t id;
	uint64_t age_s;		/* since it was accepted */
	size_t	 queued;	/* bytes waiting to be written */
	int	 rtt_ms;	/* our last ping's round trip; -1: none yet (a
				 * busy connection is never pinged) */
	int	 stream;	/* an event stream, not a WebSocket */
	int	 tls;
	char	 peer[56];	/* "ADDR:PORT", "[ADDR6]:PORT" */
};

void	ws_conn_info(const struct ws_conn *c, struct ws_conn_info *out);

/* Visit every open WebSocket and event stream (none is freed during the
 * walk). */
void	ws_foreach(void (*fn)(struct ws_conn *, struct ws_app_conn *, void *),
	    void *arg);

/* 1 once SIGTERM or SIGINT started the drain (/readyz answers 503). */
int	ws_draining(void);

#endif
