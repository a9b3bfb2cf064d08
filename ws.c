/*
 * ws.c - the epoll reactor, HTTP/1.1 request heads and RFC 6455.
 *
 * One thread, one epoll instance.  Listeners, connections, timers
 * (timerfd) and signals (signalfd) are all fds in the same loop.  This
 * file reads in the order data flows: shared buffers, HTTP request parser,
 * handshake, UTF-8, frame decoder, then the connection: reading, message
 * assembly, the send queue, closing, and finally the loop itself.
 *
 * What it does not do: JSON, groups, sessions, routing beyond /echo.  The
 * layer above gets whole requests and whole messages through
 * struct ws_handlers and answers with ws_send(), ws_http_respond() and
 * ws_close().
 *
 * Parsers return n >= 0 (bytes consumed), WS_AGAIN (need more) or
 * WS_ERROR (with the HTTP status or close code in an out-parameter).
 * Other functions return 0 or -1.
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <malloc.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "log.h"
#include "tls.h"
#include "ws.h"

/* Everything registered with epoll starts with this, so one pointer in
 * epoll_event.data tells what woke up. */
enum src_kind { SRC_LISTEN, SRC_CONN, SRC_TIMER, SRC_SIGNAL };

struct src {
	int     fd;
	uint8_t kind;
};

struct listener {
	struct src src;
	struct listener *next;
};

struct timer {
	struct src src;
	void (*fn)(void *);
	void *arg;
	struct timer *next;
};

/* Connection states, in lifetime order. */
enum conn_state {
	C_HTTP,		/* reading requests */
	C_WS,		/* open WebSocket */
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
};

/* A connection: a small fixed struct; buffers only while data is in
 * flight.  The ring q holds references to shared ws_bufs. */
struct ws_conn {
	struct src	 src;
	uint8_t		 state;		/* enum conn_state */
	uint8_t		 close_sent;	/* our close frame is queued */
	uint8_t		 close_rcvd;	/* the peer's close frame arrived */
	uint8_t		 out_armed;	/* EPOLLOUT registered */
	uint8_t		 dirty;		/* on the flush list */
	uint8_t		 dead;		/* fd closed; freed after this turn */
	uint8_t		 echo;		/* /echo route */
	uint8_t		 keep_alive;	/* HTTP: current request keeps alive */
	uint8_t		 over_limit;	/* accepted past max_connections */
	uint8_t		 upgraded;	/* counted in ws_stats.websockets */
	uint8_t		 rd_eof;	/* peer's FIN: write what is queued, close */
	uint8_t		 want_room;	/* call handlers.writable once drained */
	uint8_t		 head_ok;	/* HTTP: this request's head passed */
	uint8_t		 tls_want;	/* TLS: what the last read waits for */
	uint32_t	 tls_retry;	/* TLS: bytes a blocked write must resend */
	uint32_t	 body_held;	/* HTTP: bytes held in body_total */
	struct ssl_st	*ssl;		/* owned; NULL on plain TCP */
	uint32_t	 qhead, qlen, qcap;	/* ring of queued buffers */
	uint32_t	 qoff;		/* bytes of the head already written */
	size_t		 qbytes;	/* queued data bytes (not control) */
	struct ws_buf	**q;		/* owned; NULL until the first send */
	struct ws_in	*in;		/* owned; NULL while idle */
	struct ws_app_conn *app;	/* owned by the layer above */
	struct ws_conn	*prev, *next;	/* every connection */
	struct ws_conn	*flush_next;	/* flush list, while dirty */
	struct ws_conn	*reap_next;	/* reap list, once dead */
	uint64_t	 id;
	uint64_t	 last_rx;	/* ms: last bytes from the peer */
	uint64_t	 deadline;	/* ms: handshake, close or linger limit */
	uint64_t	 ping_at;	/* ms: our unanswered ping, 0 if none */
};

#define WS_MAX_CTRL	16	/* control frames queued at once */
#define READ_SIZE	65536
#define MAX_EVENTS	256
#define MAX_IOV		64

struct ws_stats ws_stats;
const char *const ws_hs_fail_names[6] = {
	"bad_request", "version", "too_large", "timeout", "refused", "limit"
};

static struct ws_config		 cfg;
static struct ws_handlers	 app;
static int			 epfd = -1;
static int			 reserve_fd = -1;	/* spare fd for EMFILE */
static struct listener		*listeners;
static struct timer		*timers;
static struct src		 sigsrc = { -1, SRC_SIGNAL };
static struct ws_conn		*conns;		/* every connection */
static struct ws_conn		*flush_list;
static struct ws_conn		*reap_list;
static uint64_t			 now_ms;
static uint64_t			 next_id = 1;
static uint64_t			 drain_until;	/* 0: not draining */
static void			(*on_turn)(void);
static uint8_t			 rbuf[READ_SIZE];
static size_t			 freed;		/* bytes freed since a trim */

static void	conn_input(struct ws_conn *, uint8_t *, size_t);
static void	conn_fail(struct ws_conn *, unsigned);
static void	conn_kill(struct ws_conn *);
static void	conn_mark_dirty(struct ws_conn *);
static int	conn_push(struct ws_conn *, struct ws_buf *);
static void	http_input(struct ws_conn *);
static int	body_hold(struct ws_conn *, size_t);
static void	send_close(struct ws_conn *, unsigned, const char *);
static int	ep_mod(struct ws_conn *);

/* ==== Shared buffers ================================================= */

/* An uninitialised buffer of len bytes (an HTTP response). */
static struct ws_buf *
ws_buf_new(size_t len)
{
	struct ws_buf *b;

	if (len > UINT32_MAX - sizeof *b)
		return NULL;
	if ((b = malloc(sizeof *b + len)) == NULL)
		return NULL;
	b->refs = 1;
	b->len = len;
	b->nframes = 1;
	b->hlen = 0;
	b->ctrl = 0;
	b->http = 0;
	return b;
}

/* RFC 6455 §5.2: a server frame is never masked; the length takes 7, 7+16
 * or 7+64 bits, the shortest that fits. */
struct ws_buf *
ws_buf_frame(int opcode, const void *payload, size_t len)
{
	size_t hlen = len < 126 ? 2 : len < 65536 ? 4 : 10;
	struct ws_buf *b;

	if (len > SIZE_MAX - hlen || (b = ws_buf_new(hlen + len)) == NULL)
		return NULL;
	b->data[0] = 0x80 | opcode;
	if (len < 126)
		b->data[1] = len;
	else if (len < 65536) {
		b->data[1] = 126;
		b->data[2] = len >> 8;
		b->data[3] = len;
	} else {
		b->data[1] = 127;
		for (int i = 0; i < 8; i++)
			b->data[2 + i] = (uint64_t)len >> (56 - 8 * i);
	}
	if (len > 0)
		memcpy(b->data + hlen, payload, len);
	b->hlen = hlen;
	b->ctrl = opcode >= WS_OP_CLOSE;
	return b;
}

struct ws_buf *
ws_buf_batch(struct ws_buf *const *bufs, uint32_t n)
{
	size_t len = 0, off = 0;
	struct ws_buf *b;

	for (uint32_t i = 0; i < n; i++)
		len += bufs[i]->len;
	if ((b = ws_buf_new(len)) == NULL)
		return NULL;
	for (uint32_t i = 0; i < n; i++) {
		memcpy(b->data + off, bufs[i]->data, bufs[i]->len);
		off += bufs[i]->len;
	}
	b->nframes = n;
	return b;
}

void
ws_buf_ref(struct ws_buf *b)
{
	b->refs++;
}

void
ws_buf_unref(struct ws_buf *b)
{
	if (b != NULL && --b->refs == 0) {
		freed += b->len;
		free(b);
	}
}

/* ==== HTTP request parser ============================================ */

/*
 * RFC 9112 request head: request-line CRLF *( field-line CRLF ) CRLF.
 * The whole head must be in buf; a caller that reads in pieces calls again
 * with the longer buffer (the search for the blank line is cheap next to
 * the read).  Field names are tokens; values are trimmed of spaces and tabs.
 */

static int
is_tchar(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') || (ch != 0 && strchr("!#$%&'*+-.^_`|~",
	    ch) != NULL);
}

static int
slice_eq(struct ws_slice s, const char *lit)
{
	size_t n = strlen(lit);

	return s.n == n && strncasecmp(s.p, lit, n) == 0;
}

/* The end of the head (after CRLF CRLF), NULL if not there yet, or buf
 * itself at a bare LF, which RFC 9112 §2.2 lets a server refuse; refusing
 * it at once beats leaving the client to the handshake timeout. */
static const uint8_t *
find_head_end(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i == 0 || buf[i - 1] != '\r')
			return buf;
		if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
			return buf + i + 1;
	}
	return NULL;
}

long
ws_http_parse(const uint8_t *buf, size_t len, size_t max,
    struct ws_http_req *req, int *status)
{
	const uint8_t *end, *p, *eol, *sp;
	int have_cl = 0, have_host = 0;

	memset(req, 0, sizeof *req);
	if ((end = find_head_end(buf, len < max ? len : max)) == NULL) {
		if (len >= max) {
			*status = 431;
			return WS_ERROR;
		}
		return WS_AGAIN;
	}
	if (end == buf)
		goto bad;

	/* request-line = method SP request-target SP HTTP-version */
	p = buf;
	eol = memchr(p, '\r', end - p);
	if (eol[1] != '\n')
		goto bad;
	for (sp = p; sp < eol && is_tchar(*sp); sp++)
		;
	if (sp == p || sp == eol || *sp != ' ')
		goto bad;
	req->method = (struct ws_slice){ (const char *)p, sp - p };
	p = sp + 1;
	for (sp = p; sp < eol && *sp > ' ' && *sp < 0x7f; sp++)
		;
	if (sp == p || sp == eol || *sp != ' ' || *p != '/')
		goto bad;
	req->target = (struct ws_slice){ (const char *)p, sp - p };
	p = sp + 1;
	if (eol - p != 8 || memcmp(p, "HTTP/1.", 7) != 0) {
		*status = eol - p == 8 && memcmp(p, "HTTP/", 5) == 0 ? 505 : 400;
		return WS_ERROR;
	}
	if (p[7] < '0' || p[7] > '9')
		goto bad;
	req->minor = p[7] - '0';
	req->keep_alive = req->minor >= 1;
	req->path = req->target;
	if ((sp = memchr(req->target.p, '?', req->target.n)) != NULL) {
		req->path.n = (const char *)sp - req->target.p;
		req->query = (struct ws_slice){ (const char *)sp + 1,
		    req->target.n - req->path.n - 1 };
	}

	/* field-line = field-name ":" OWS field-value OWS */
	for (p = eol + 2; p < end - 2; p = eol + 2) {
		const uint8_t *v, *ve;
		struct ws_header *h;

		eol = memchr(p, '\r', end - p);
		if (eol[1] != '\n')
			goto bad;
		if (*p == ' ' || *p == '\t')	/* obs-fold: RFC 9112 §5.2 */
			goto bad;
		if (req->nhdr == WS_MAX_HEADERS) {
			*status = 431;
			return WS_ERROR;
		}
		for (sp = p; sp < eol && is_tchar(*sp); sp++)
			;
		if (sp == p || sp == eol || *sp != ':')
			goto bad;
		for (v = sp + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
			;
		for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
			;
		for (const uint8_t *q = v; q < ve; q++)
			if ((*q < 0x20 && *q != '\t') || *q == 0x7f)
				goto bad;
		h = &req->hdr[req->nhdr++];
		h->name = (struct ws_slice){ (const char *)p, sp - p };
		h->value = (struct ws_slice){ (const char *)v, ve - v };

		if (slice_eq(h->name, "content-length")) {
			uint64_t n = 0;

			if (h->value.n == 0 || h->value.n > 15)
				goto bad;
			for (size_t i = 0; i < h->value.n; i++) {
				if (h->value.p[i] < '0' || h->value.p[i] > '9')
					goto bad;
				n = n * 10 + (h->value.p[i] - '0');
			}
			/* RFC 9112 §6.3: differing lengths are an attack. */
			if (have_cl && n != req->content_length)
				goto bad;
			have_cl = 1;
			req->content_length = n;
		} else if (slice_eq(h->name, "transfer-encoding")) {
			*status = 501;
			return WS_ERROR;
		} else if (slice_eq(h->name, "host"))
			have_host++;
		else if (slice_eq(h->name, "connection")) {
			/* RFC 9110 §5.3: several lines are one list. */
			if (ws_http_has_token(h->value, "close"))
				req->keep_alive = 0;
			else if (ws_http_has_token(h->value, "keep-alive"))
				req->keep_alive = 1;
			if (ws_http_has_token(h->value, "upgrade"))
				req->conn_upgrade = 1;
		} else if (slice_eq(h->name, "upgrade"))
			req->upgrade = ws_http_has_token(h->value, "websocket");
	}
	/* RFC 9112 §3.2: HTTP/1.1 requires exactly one Host. */
	if (have_host > 1 || (req->minor >= 1 && have_host == 0))
		goto bad;
	return end - buf;
bad:
	*status = 400;
	return WS_ERROR;
}

const struct ws_slice *
ws_http_header(const struct ws_http_req *req, const char *name)
{
	for (int i = 0; i < req->nhdr; i++)
		if (slice_eq(req->hdr[i].name, name))
			return &req->hdr[i].value;
	return NULL;
}

int
ws_http_has_token(struct ws_slice v, const char *token)
{
	size_t i = 0;

	while (i < v.n) {
		size_t s, e;

		while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' ||
		    v.p[i] == ','))
			i++;
		s = i;
		while (i < v.n && v.p[i] != ',')
			i++;
		for (e = i; e > s && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t');
		    e--)
			;
		if (slice_eq((struct ws_slice){ v.p + s, e - s }, token))
			return 1;
	}
	return 0;
}

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

long
ws_pct_decode(struct ws_slice in, int plus, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t k = 0; k < in.n; k++) {
		int ch = (unsigned char)in.p[k];

		if (ch == '%') {
			int hi, lo;

			/* RFC 3986 §2.1: exactly two hex digits follow. */
			if (in.n - k < 3 || (hi = hexval(in.p[k + 1])) < 0 ||
			    (lo = hexval(in.p[k + 2])) < 0)
				return WS_ERROR;
			ch = hi << 4 | lo;
			k += 2;
			if (ch == 0)
				return WS_ERROR;
		} else if (ch == '+' && plus)
			ch = ' ';
		if (o + 1 < cap)
			out[o] = ch;
		o++;
	}
	if (cap > 0)
		out[o < cap ? o : cap - 1] = '\0';
	return o;
}

long
ws_query_param(struct ws_slice q, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name), i = 0;

	while (i < q.n) {
		size_t s = i, e;
		long n;

		while (i < q.n && q.p[i] != '&')
			i++;
		e = i++;
		if (e - s <= nlen || memcmp(q.p + s, name, nlen) != 0 ||
		    q.p[s + nlen] != '=')
			continue;
		n = ws_pct_decode((struct ws_slice){ q.p + s + nlen + 1,
		    e - s - nlen - 1 }, 1, out, cap);
		if (n < 0 || (size_t)n >= cap)
			return WS_ERROR;
		return n;
	}
	return -1;
}

int
ws_query_uint(struct ws_slice q, const char *name, uint64_t dflt,
    uint64_t max, uint64_t *out)
{
	char buf[24], *end;
	long n = ws_query_param(q, name, buf, sizeof buf);

	*out = dflt;
	if (n == -1)
		return 0;
	if (n < 0 || buf[0] < '0' || buf[0] > '9')
		return -1;
	*out = strtoull(buf, &end, 10);
	if (*end != '\0')
		return -1;
	if (*out > max)
		*out = max;
	return 1;
}

struct ws_slice
ws_http_bearer(const struct ws_http_req *req)
{
	const struct ws_slice *a = ws_http_header(req, "authorization");
	struct ws_slice none = { NULL, 0 };

	/* RFC 6750 §2.1: the scheme name is case-insensitive. */
	if (a == NULL || a->n <= 7 || strncasecmp(a->p, "Bearer ", 7) != 0)
		return none;
	return (struct ws_slice){ a->p + 7, a->n - 7 };
}

/* ==== Opening handshake (RFC 6455 §4.2) ============================== */

void
ws_accept_key(struct ws_slice key, char out[29])
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	uint8_t in[64 + sizeof guid], md[SHA_DIGEST_LENGTH];
	size_t n = key.n < 64 ? key.n : 64;	/* a valid key has 24 */

	memcpy(in, key.p, n);
	memcpy(in + n, guid, sizeof guid - 1);
	SHA1(in, n + sizeof guid - 1, md);
	EVP_EncodeBlock((unsigned char *)out, md, sizeof md);
}

/* §4.2.1: the key is the base64 of 16 random bytes: exactly 24 characters,
 * 22 from the alphabet, then "==".  The last data character carries only
 * 2 bits, so its low 4 bits must be zero. */
static int
key_valid(const struct ws_slice *k)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *pos;

	if (k == NULL || k->n != 24 || k->p[22] != '=' || k->p[23] != '=')
		return 0;
	for (int i = 0; i < 22; i++)
		if (k->p[i] == '\0' || strchr(b64, k->p[i]) == NULL)
			return 0;
	pos = strchr(b64, k->p[21]);
	return ((pos - b64) & 0xf) == 0;
}

/* ==== UTF-8 (RFC 3629) =============================================== */

/*
 * The state packs the continuation bytes still expected (bits 16+) and the
 * range allowed for the next one (lo in bits 0-7, hi in 8-15).  The narrow
 * ranges after E0, ED, F0 and F4 are what exclude overlongs, surrogates
 * and code points above U+10FFFF, so a bad prefix fails at its first
 * impossible byte.
 */
int
ws_utf8_valid(uint32_t *state, const uint8_t *s, size_t n)
{
	uint32_t st = *state;

	for (size_t i = 0; i < n; i++) {
		unsigned b = s[i], need = st >> 16, lo, hi;

		if (need == 0) {
			if (b < 0x80)
				continue;
			lo = 0x80, hi = 0xbf;
			if (b >= 0xc2 && b <= 0xdf)
				need = 1;
			else if (b >= 0xe0 && b <= 0xef) {
				need = 2;
				if (b == 0xe0)
					lo = 0xa0;
				else if (b == 0xed)
					hi = 0x9f;
			} else if (b >= 0xf0 && b <= 0xf4) {
				need = 3;
				if (b == 0xf0)
					lo = 0x90;
				else if (b == 0xf4)
					hi = 0x8f;
			} else
				return -1;
			st = need << 16 | hi << 8 | lo;
			continue;
		}
		if (b < (st & 0xff) || b > ((st >> 8) & 0xff))
			return -1;
		need--;
		st = need == 0 ? 0 : need << 16 | 0xbf << 8 | 0x80;
	}
	*state = st;
	return 0;
}

/* §7.4.1 and §7.4.2: 1000-1003, 1007-1014 are defined for use in a close
 * frame (1004 reserved; 1005, 1006 and 1015 must never be sent);
 * 3000-4999 belong to libraries and applications. */
int
ws_close_code_valid(unsigned code)
{
	if (code >= 1000 && code <= 1003)
		return 1;
	if (code >= 1007 && code <= 1014)
		return 1;
	return code >= 3000 && code <= 4999;
}

/* ==== Frame decoder (RFC 6455 §5.2) ================================== */

/*
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
 *  | Masking-key (continued)       |          Payload Data         |
 *  +-------------------------------- - - - - - - - - - - - - - - - +
 *
 * States follow the wire: HEAD (2 bytes), LEN (0, 2 or 8), MASK (4),
 * DATA (len bytes, handed out in chunks).  need counts the bytes still
 * missing for the current header state; they are gathered in hdr so a
 * header split anywhere, even byte by byte, decodes the same.
 */

void
ws_parser_init(struct ws_parser *p, uint64_t max_msg)
{
	memset(p, 0, sizeof *p);
	p->state = WS_P_HEAD;
	p->need = 2;
	p->max_msg = max_msg;
}

/* The two fixed bytes are in: check every rule they decide. */
static int
frame_head(struct ws_parser *p, int *code)
{
	uint8_t b0 = p->hdr[0], b1 = p->hdr[1];
	unsigned len7 = b1 & 0x7f;

	p->fin = b0 >> 7;
	p->opcode = b0 & 0x0f;
	*code = WS_CLOSE_PROTOCOL;
	/* §5.2: RSV1-3 must be 0 unless an extension says otherwise; wsd
	 * negotiates none. */
	if (b0 & 0x70)
		return -1;
	/* §5.1: a client masks every frame it sends. */
	if (!(b1 & 0x80))
		return -1;
	switch (p->opcode) {
	case WS_OP_CONT:
		/* §5.4: a continuation belongs to an open message. */
		if (!p->in_msg)
			return -1;
		break;
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		/* §5.4: no new message inside a fragmented one. */
		if (p->in_msg)
			return -1;
		break;
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		/* §5.5: control frames carry at most 125 bytes and are
		 * never fragmented. */
		if (!p->fin || len7 > 125)
			return -1;
		break;
	default:
		/* §5.2: opcodes 3-7 and B-F are reserved. */
		return -1;
	}
	p->len = len7;
	p->need = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
	return 0;
}

/* The full length is known: check the 64-bit rule and the size limit. */
static int
frame_length(struct ws_parser *p, int *code)
{
	unsigned ext = p->have - 2;

	if (ext == 2)
		p->len = (uint64_t)p->hdr[2] << 8 | p->hdr[3];
	else if (ext == 8) {
		/* §5.2: the most significant bit must be 0. */
		if (p->hdr[2] & 0x80) {
			*code = WS_CLOSE_PROTOCOL;
			return -1;
		}
		p->len = 0;
		for (int i = 0; i < 8; i++)
			p->len = p->len << 8 | p->hdr[2 + i];
	}
	if (p->opcode < WS_OP_CLOSE) {
		if (p->opcode != WS_OP_CONT)
			p->msg_len = 0;
		/* Refuse before buffering a byte past the limit. */
		if (p->len > p->max_msg - p->msg_len) {
			*code = WS_CLOSE_TOO_BIG;
			return -1;
		}
		p->msg_len += p->len;
	}
	return 0;
}

long
ws_frame_parse(struct ws_parser *p, const uint8_t *buf, size_t len,
    struct ws_chunk *c, int *code)
{
	size_t used = 0;

	while (p->state != WS_P_DATA) {
		size_t take = p->need;

		if (take > len - used)
			take = len - used;
		memcpy(p->hdr + p->have, buf + used, take);
		p->have += take;
		p->need -= take;
		used += take;
		if (p->need > 0)
			return WS_AGAIN;
		switch (p->state) {
		case WS_P_HEAD:
			if (frame_head(p, code) == -1)
				return WS_ERROR;
			p->state = WS_P_LEN;
			break;
		case WS_P_LEN:
			if (frame_length(p, code) == -1)
				return WS_ERROR;
			p->need = 4;
			p->state = WS_P_MASK;
			break;
		case WS_P_MASK:
			memcpy(p->mask, p->hdr + p->have - 4, 4);
			p->left = p->len;
			p->state = WS_P_DATA;
			break;
		}
	}
	if (p->left > 0 && used == len)
		return WS_AGAIN;	/* all consumed into the header state */
	/* Hand out a chunk (the header may have been completed just now). */
	c->p = buf + used;
	c->n = p->left < len - used ? p->left : len - used;
	c->off = p->len - p->left;
	c->opcode = p->opcode;
	c->fin = p->fin;
	c->first = c->off == 0;
	p->left -= c->n;
	c->end = p->left == 0;
	used += c->n;
	if (c->end) {
		if (p->opcode < WS_OP_CLOSE) {
			if (p->opcode != WS_OP_CONT)
				p->msg_op = p->opcode;
			p->in_msg = !p->fin;
		}
		p->state = WS_P_HEAD;
		p->need = 2;
		p->have = 0;
	}
	return used;
}

void
ws_unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4],
    uint64_t off)
{
	uint8_t m[4];
	size_t i = 0;

	for (int k = 0; k < 4; k++)
		m[k] = mask[(off + k) & 3];
	/* Eight bytes at a time; memcpy keeps it alignment-safe. */
	if (n >= 8) {
		uint64_t m8, v;

		memcpy(&m8, m, 4);
		memcpy((uint8_t *)&m8 + 4, m, 4);
		for (; i + 8 <= n; i += 8) {
			memcpy(&v, src + i, 8);
			v ^= m8;
			memcpy(dst + i, &v, 8);
		}
	}
	for (; i < n; i++)
		dst[i] = src[i] ^ m[i & 3];
}

/* ==== Send queue ===================================================== */

/*
 * Each connection has a ring of references to shared buffers.  Data goes
 * on the tail; control frames go ahead of data (behind a frame already
 * partly written, which must finish first or the stream would be torn,
 * and behind every HTTP response, the 101 included: nothing goes ahead of
 * those), in the order they were queued.  Data bytes count against
 * send_queue; control frames do not, and are bounded by WS_MAX_CTRL
 * instead.  The close frame is queued as data, behind the replies already
 * queued (the order Autobahn's strict reading expects).
 */

static struct ws_buf **
ring_at(struct ws_conn *c, uint32_t i)
{
	return &c->q[(c->qhead + i) & (c->qcap - 1)];
}

static int
ring_grow(struct ws_conn *c)
{
	uint32_t ncap = c->qcap ? c->qcap * 2 : 8;
	struct ws_buf **nq;

	if (ncap == 0 || (nq = malloc(ncap * sizeof *nq)) == NULL)
		return -1;
	for (uint32_t i = 0; i < c->qlen; i++)
		nq[i] = *ring_at(c, i);
	free(c->q);
	c->q = nq;
	c->qcap = ncap;
	c->qhead = 0;
	return 0;
}

/* Put b at position pos (0 = next to write), shifting the few before it. */
static int
ring_insert(struct ws_conn *c, uint32_t pos, struct ws_buf *b)
{
	if (c->qlen == c->qcap && ring_grow(c) == -1)
		return -1;
	if (pos == c->qlen) {
		*ring_at(c, c->qlen) = b;
	} else {
		c->qhead = (c->qhead - 1) & (c->qcap - 1);
		for (uint32_t i = 0; i < pos; i++)
			*ring_at(c, i) = *ring_at(c, i + 1);
		*ring_at(c, pos) = b;
	}
	c->qlen++;
	return 0;
}

/*
 * Entries at the head that may neither move nor be dropped: the one partly
 * written, under TLS every one a blocked write must send again byte for
 * byte, and HTTP responses (the 101 before any frame).
 */
static uint32_t
pinned(struct ws_conn *c)
{
	size_t need = c->qoff + c->tls_retry, sum = 0;
	uint32_t i = 0;

	while (i < c->qlen && (sum < need || (*ring_at(c, i))->http))
		sum += (*ring_at(c, i++))->len;
	return i;
}

/* Drop every queued buffer but the pinned ones (keep) or all of them. */
static void
ring_release(struct ws_conn *c, int keep_pinned)
{
	uint32_t keep = keep_pinned ? pinned(c) : 0;

	c->qbytes = 0;
	for (uint32_t i = 0; i < c->qlen; i++) {
		struct ws_buf *b = *ring_at(c, i);

		if (i >= keep)
			ws_buf_unref(b);
		else if (!b->ctrl)
			c->qbytes += b->len - (i == 0 ? c->qoff : 0);
	}
	c->qlen = keep;
	if (keep == 0) {
		free(c->q);
		c->q = NULL;
		c->qcap = c->qhead = c->qoff = c->tls_retry = 0;
	}
}

/* Queue b (a new reference is taken).  Returns 0 or -1. */
static int
conn_push(struct ws_conn *c, struct ws_buf *b)
{
	uint32_t pos = c->qlen;

	if (b->ctrl) {
		uint32_t nctrl = 0;

		pos = pinned(c);
		while (pos < c->qlen && (*ring_at(c, pos))->ctrl) {
			pos++;
			nctrl++;
		}
		/* §5.5.3 lets a pong answer only the latest ping: past the
		 * bound, a new pong replaces the last one still queued. */
		if (nctrl >= WS_MAX_CTRL) {
			struct ws_buf **last = ring_at(c, pos - 1);

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
		c->qbytes += b->len;
	conn_mark_dirty(c);
	return 0;
}

int
ws_send(struct ws_conn *c, struct ws_buf *b)
{
	if (c->state != C_WS || c->dead)
		return -1;
	/* A subscriber that does not read may not grow memory without
	 * bound: close it with 1013 and release what it held.  Nobody else
	 * waits for it.  One message always fits an empty queue (it is
	 * bounded by --max-message), so a large echo is not "slow". */
	if (c->qbytes > 0 && c->qbytes + b->len > cfg.send_queue) {
		ws_stats.slow_closes++;
		log_msg(LOG_INFO, "slow consumer conn=%llu queued=%zu",
		    (unsigned long long)c->id, c->qbytes);
		ring_release(c, 1);
		send_close(c, WS_CLOSE_TRY_AGAIN, "slow consumer");
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
	return c->qbytes == 0 || c->qbytes + len <= cfg.send_queue / 2;
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

	if (c->state != C_WS || c->dead)
		return -1;
	if ((b = ws_buf_frame(opcode, p, n)) == NULL) {
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
	c->deadline = now_ms + WS_CLOSE_MS;
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
	size_t len = 0, want = c->tls_retry ? c->tls_retry : sizeof stage;
	ssize_t w;
	int dir;

	for (int i = 0; i < n && len < want; i++) {
		size_t k = iov[i].iov_len < want - len ? iov[i].iov_len :
		    want - len;

		memcpy(stage + len, iov[i].iov_base, k);
		len += k;
	}
	w = tls_write(c->ssl, stage, len, &dir);
	c->tls_retry = w == -1 && errno == EAGAIN ? len : 0;
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
	while (c->qlen > 0) {
		struct iovec iov[MAX_IOV];
		int n = 0;
		ssize_t w;

		for (uint32_t i = 0; i < c->qlen && n < MAX_IOV; i++, n++) {
			struct ws_buf *b = *ring_at(c, i);
			size_t skip = i == 0 ? c->qoff : 0;

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
			conn_kill(c);
			return;
		}
		ws_stats.bytes_out += w;
		/* An HTTP answer read slowly is not an idle connection. */
		if (!c->upgraded && c->state != C_LINGER)
			c->deadline = now_ms + cfg.handshake_ms;
		while (w > 0) {
			struct ws_buf *b = *ring_at(c, 0);
			size_t rest = b->len - c->qoff;

			if ((size_t)w < rest) {
				c->qoff += w;
				if (!b->ctrl)
					c->qbytes -= w;
				break;
			}
			w -= rest;
			if (!b->ctrl)
				c->qbytes -= rest;
			c->qoff = 0;
			c->qhead = (c->qhead + 1) & (c->qcap - 1);
			c->qlen--;
			ws_buf_unref(b);
		}
	}
	if (c->out_armed) {
		c->out_armed = 0;
		ep_mod(c);
	}
	/* An idle connection holds no ring: a malloc per busy turn is
	 * noise next to the writev, and 10,000 idle rings are 800 KB. */
	free(c->q);
	c->q = NULL;
	c->qcap = c->qhead = 0;
	if (c->rd_eof)
		conn_kill(c);
	else if (c->state == C_CLOSING)
		conn_linger(c);
	else if (c->want_room && c->state == C_WS && app.writable != NULL) {
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
 * From here on nothing more is read from the peer.
 */
static void
send_close(struct ws_conn *c, unsigned code, const char *reason)
{
	uint8_t pl[125];
	size_t n = 0;
	struct ws_buf *b;

	if (c->close_sent || c->dead)
		return;
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
		conn_kill(c);
		return;
	}
	b->ctrl = 0;		/* behind the data, not ahead */
	if (conn_push(c, b) == -1) {
		ws_buf_unref(b);
		conn_kill(c);
		return;
	}
	/* Longer when data goes first: the reader gets the drain time. */
	c->deadline = now_ms + (c->qbytes > b->len ? cfg.drain_ms : WS_CLOSE_MS);
	ws_buf_unref(b);
	c->close_sent = 1;
	c->state = C_CLOSING;
}

void
ws_close(struct ws_conn *c, unsigned code, const char *reason)
{
	send_close(c, code, reason);
}

/* A protocol violation: the close frame with its code, then stop. */
static void
conn_fail(struct ws_conn *c, unsigned code)
{
	log_msg(LOG_DEBUG, "conn=%llu fail code=%u",
	    (unsigned long long)c->id, code);
	send_close(c, code, NULL);
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
		c->ping_at = 0;		/* unsolicited ones are fine too */
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
		send_close(c, code, NULL);
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
	if (ncap - in->mcap > cfg.assembly_total - assembly_total)
		return WS_CLOSE_TRY_AGAIN;
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
	ws_unmask(in->msg + in->mlen, p, ch->n, in->p.mask, ch->off);
	/* §8.1: fail as soon as a text prefix cannot be UTF-8, without
	 * waiting for the rest of the message. */
	if (op == WS_OP_TEXT &&
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
		msg_free(in);
		freed += in->hcap;
		free(in->head);
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
	while (c->state == C_WS) {
		struct ws_chunk ch;
		int code;
		long n = ws_frame_parse(&in->p, buf + off, len - off, &ch, &code);

		if (n == WS_AGAIN)
			break;
		if (n == WS_ERROR) {
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
		    ws_stats.messages_in != done ? now_ms + cfg.handshake_ms :
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

void
ws_http_respond(struct ws_conn *c, int status, const char *type,
    const char *headers, const void *body, size_t len)
{
	char head[1024];
	int keep = c->keep_alive && drain_until == 0;
	int n;
	struct ws_buf *b;

	if (c->state != C_HTTP || c->dead)
		return;
	n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\n"
	    "Content-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
	    status, ws_status_text(status), type ? type : "application/json",
	    len, headers ? headers : "",
	    keep ? "" : "Connection: close\r\n");
	if (n < 0 || (size_t)n >= sizeof head ||
	    (b = ws_buf_new(n + len)) == NULL) {
		conn_kill(c);
		return;
	}
	memcpy(b->data, head, n);
	if (len > 0)
		memcpy(b->data + n, body, len);
	b->http = 1;
	if (conn_push(c, b) == -1)
		conn_kill(c);
	ws_buf_unref(b);
	if (!keep)
		c->state = C_CLOSING;
}

/* A fixed-text JSON error for failures found before any handler ran. */
static void
http_error(struct ws_conn *c, int status, const char *extra)
{
	char body[160];
	const char *code;
	int n;

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
	n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":\"%s\"}",
	    code, ws_status_text(status));
	c->keep_alive = 0;
	ws_http_respond(c, status, "application/json", extra, body, n);
}

static void
handshake_fail(struct ws_conn *c, int status, enum ws_hs_fail why,
    const char *extra)
{
	ws_stats.handshake_fail[why]++;
	log_msg(LOG_DEBUG, "conn=%llu handshake refused status=%d reason=%s",
	    (unsigned long long)c->id, status, ws_hs_fail_names[why]);
	http_error(c, status, extra);
}

static int
header_count(const struct ws_http_req *req, const char *name)
{
	int n = 0;

	for (int i = 0; i < req->nhdr; i++)
		n += slice_eq(req->hdr[i].name, name);
	return n;
}

/*
 * RFC 6455 §4.2.1 and §4.2.2.  Returns 1 when the connection is now a
 * WebSocket, 0 when it was refused (a response is queued).
 */
static int
handshake(struct ws_conn *c, const struct ws_http_req *req)
{
	const struct ws_slice *key, *ver, *proto;
	struct ws_app_conn *a = NULL;
	char accept[29], resp[512];
	const char *subproto = NULL;
	struct ws_buf *b;
	int n, status = 0;

	key = ws_http_header(req, "sec-websocket-key");
	ver = ws_http_header(req, "sec-websocket-version");
	/* §11.3.1: Sec-WebSocket-Key must not appear more than once. */
	if (!slice_eq(req->method, "GET") || req->minor < 1 ||
	    !req->conn_upgrade || !key_valid(key) ||
	    header_count(req, "sec-websocket-key") > 1) {
		handshake_fail(c, 400, WS_HS_BAD_REQUEST, NULL);
		return 0;
	}
	/* §4.4: tell a client of another version which one we speak. */
	if (ver == NULL || !slice_eq(*ver, "13")) {
		handshake_fail(c, 426, WS_HS_VERSION,
		    "Sec-WebSocket-Version: 13\r\n");
		return 0;
	}
	if (c->over_limit) {
		handshake_fail(c, 503, WS_HS_LIMIT, NULL);
		return 0;
	}
	if (cfg.echo && slice_eq(req->path, "/echo"))
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
	proto = ws_http_header(req, "sec-websocket-protocol");
	if (cfg.subprotocol != NULL && proto != NULL &&
	    ws_http_has_token(*proto, cfg.subprotocol))
		subproto = cfg.subprotocol;
	ws_accept_key(*key, accept);
	n = snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n", accept,
	    subproto ? "Sec-WebSocket-Protocol: " : "",
	    subproto ? subproto : "", subproto ? "\r\n" : "");
	if ((b = ws_buf_new(n)) == NULL) {
		if (app.closed != NULL && a != NULL)
			app.closed(c, a);
		conn_kill(c);
		return 0;
	}
	memcpy(b->data, resp, n);
	b->http = 1;
	if (conn_push(c, b) == -1) {
		ws_buf_unref(b);
		if (app.closed != NULL && a != NULL)
			app.closed(c, a);
		conn_kill(c);
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
head_ok(struct ws_conn *c, const struct ws_http_req *req, int body_in)
{
	c->keep_alive = req->keep_alive && body_in;
	if (req->content_length > cfg.max_body)
		http_error(c, 413, NULL);
	else if (c->over_limit)
		http_error(c, 503, NULL);
	else if (app.head == NULL || app.head(c, req) == 0) {
		c->head_ok = 1;
		return 1;
	}
	return 0;
}

/*
 * Bodies being received are bounded in total (--max-body-total), so many
 * slow clients cannot each make wsd hold --max-body.  Hold n bytes for c's
 * body (n = 0 gives back what it held).  Returns 0, or -1 past the limit.
 */
static size_t body_total;

static int
body_hold(struct ws_conn *c, size_t n)
{
	if (n == c->body_held)
		return 0;
	body_total -= c->body_held;
	c->body_held = 0;
	if (n > cfg.max_body_total - body_total)
		return -1;
	body_total += n;
	c->body_held = n;
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
	struct ws_http_req req;
	size_t used = 0;

	while (c->state == C_HTTP && used < in->hlen) {
		int status;
		long n = ws_http_parse(in->head + used, in->hlen - used,
		    cfg.max_header, &req, &status);

		if (n == WS_AGAIN)
			break;
		if (n == WS_ERROR) {
			ws_stats.handshake_fail[status == 431 ?
			    WS_HS_TOO_LARGE : WS_HS_BAD_REQUEST]++;
			http_error(c, status, NULL);
			break;
		}
		if (req.upgrade) {
			used += n;
			if (handshake(c, &req) && used < in->hlen) {
				/* The frames may outlive the head buffer's
				 * reuse, so move them to the read buffer. */
				size_t rest = in->hlen - used;

				memcpy(rbuf, in->head + used, rest);
				in_free(c->in);
				c->in = NULL;
				conn_input(c, rbuf, rest);
				return;
			}
			break;
		}
		if (!c->head_ok && !head_ok(c, &req,
		    in->hlen - used - n >= req.content_length))
			break;
		if (in->hlen - used - n < req.content_length) {
			/* The body is still coming: hold room for it. */
			if (body_hold(c, req.content_length) == -1)
				http_error(c, 503, NULL);
			break;
		}
		body_hold(c, 0);
		c->head_ok = 0;
		/* A client that pipelines requests but does not read the
		 * answers may not grow our queue without bound either. */
		if (c->qbytes > cfg.send_queue) {
			log_msg(LOG_INFO, "conn=%llu does not read its responses",
			    (unsigned long long)c->id);
			conn_kill(c);
			return;
		}
		ws_stats.http_requests++;
		c->keep_alive = req.keep_alive;
		if (app.http != NULL)
			app.http(c, &req, in->head + used + n,
			    req.content_length);
		else
			http_error(c, 404, NULL);
		used += n + req.content_length;
		c->deadline = now_ms + cfg.handshake_ms;
	}
	if (c->in == NULL)
		return;
	if (used > 0) {
		memmove(in->head, in->head + used, in->hlen - used);
		in->hlen -= used;
	}
	if (c->state != C_HTTP || in->hlen == 0) {
		in_free(c->in);
		c->in = NULL;
	}
}

/* Room left in the head buffer, which holds at most one request whole
 * (head and body) plus what follows it. */
static size_t
http_room(const struct ws_conn *c)
{
	return cfg.max_header + cfg.max_body - (c->in ? c->in->hlen : 0);
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
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = c };

	if (c->rd_eof)
		ev.events = 0;		/* nothing more to read */
	if (c->out_armed)
		ev.events |= EPOLLOUT;
	return epoll_ctl(epfd, EPOLL_CTL_MOD, c->src.fd, &ev);
}

static void
conn_new(int fd)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
	struct ws_conn *c;
	int one = 1;

	if ((c = calloc(1, sizeof *c)) == NULL) {
		close(fd);
		return;
	}
	c->src.fd = fd;
	c->src.kind = SRC_CONN;
	c->state = C_HTTP;
	c->id = next_id++;
	c->last_rx = now_ms;
	c->deadline = now_ms + cfg.handshake_ms;
	c->over_limit = ws_stats.connections >= cfg.max_connections;
	if (tls_on() && (c->ssl = tls_new(fd)) == NULL) {
		close(fd);
		free(c);
		return;
	}
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
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
}

/* Close the fd now; free the struct after this loop turn, since an epoll
 * batch or a broadcast may still hold the pointer. */
static void
conn_kill(struct ws_conn *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->src.fd, NULL);
	tls_free(c->ssl, 0);
	c->ssl = NULL;
	close(c->src.fd);
	ring_release(c, 0);
	in_free(c->in);
	c->in = NULL;
	body_hold(c, 0);
	ws_stats.connections--;
	if (c->upgraded)
		ws_stats.websockets--;
	/* Unlink from the list of all; link into the reap list.  It may
	 * still be on the flush list: that list has its own link, and
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
 * failure even kill one of those: a connection still on the flush list is
 * left for the next pass, so no list ever holds a freed pointer.
 */
static void
reap(void)
{
	struct ws_conn *later = NULL;

	while (reap_list != NULL) {
		struct ws_conn *c = reap_list;

		reap_list = c->reap_next;
		if (c->dirty) {
			c->reap_next = later;
			later = c;
			continue;
		}
		if (c->app != NULL && app.closed != NULL)
			app.closed(c, c->app);
		free(c);
	}
	reap_list = later;
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
		c->out_armed = c->tls_want || c->qlen > 0;
		ep_mod(c);
	}
	return n;
}

static void
conn_read(struct ws_conn *c)
{
	size_t cap = sizeof rbuf;
	ssize_t n;

	if (c->rd_eof)
		return;
	/* Whatever is left unread stays in the socket, and level-triggered
	 * epoll brings us back for it. */
	if (c->state == C_HTTP && http_room(c) < cap)
		cap = http_room(c);
	if (cap == 0) {
		/* Cannot happen: a whole request always fits and is answered
		 * before more is read.  Refuse rather than spin. */
		conn_kill(c);
		return;
	}
	n = conn_recv(c, cap);

	if (n == -1) {
		if (errno != EAGAIN && errno != EINTR)
			conn_kill(c);
		return;
	}
	if (n == 0) {
		/* The peer is gone, or has half-closed after its last
		 * request: what it was answered still goes out first
		 * (RFC 9112 §9.6), then we close. */
		if (c->qlen > 0 && c->state != C_LINGER && c->state != C_WS) {
			c->rd_eof = 1;
			c->out_armed = 1;
			ep_mod(c);
			return;
		}
		conn_kill(c);
		return;
	}
	ws_stats.bytes_in += n;
	c->last_rx = now_ms;
	c->ping_at = 0;
	switch (c->state) {
	case C_HTTP:
		if (http_append(c, rbuf, n) == -1) {
			conn_kill(c);
			return;
		}
		http_input(c);
		break;
	case C_WS:
		conn_input(c, rbuf, n);
		break;
	default:
		break;		/* closing: discard */
	}
}

static void
conn_event(struct ws_conn *c, uint32_t events)
{
	if (c->dead)
		return;
	if (c->rd_eof && (events & (EPOLLHUP | EPOLLERR))) {
		conn_kill(c);		/* cannot write either */
		return;
	}
	if ((!c->rd_eof && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP |
	    EPOLLERR))) ||
	    (c->tls_want && (events & EPOLLOUT)))
		conn_read(c);
	/* OpenSSL may hold a whole record already read from the socket,
	 * which epoll cannot see. */
	while (!c->dead && c->ssl != NULL && SSL_pending(c->ssl) > 0)
		conn_read(c);
	if (!c->dead && ((events & EPOLLOUT) || (c->ssl != NULL &&
	    c->tls_retry > 0)))
		conn_flush(c);
}

uint64_t
ws_conn_id(const struct ws_conn *c)
{
	return c->id;
}

void
ws_foreach(void (*fn)(struct ws_conn *, struct ws_app_conn *, void *),
    void *arg)
{
	for (struct ws_conn *c = conns; c != NULL; c = c->next)
		if (c->state == C_WS && !c->dead)
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
			if (now_ms >= c->deadline) {
				if (c->in != NULL && c->in->hlen > 0)
					ws_stats.handshake_fail[WS_HS_TIMEOUT]++;
				conn_kill(c);
			}
			break;
		case C_WS:
			if (c->deadline != 0 && now_ms >= c->deadline) {
				log_msg(LOG_INFO, "message too slow conn=%llu",
				    (unsigned long long)c->id);
				send_close(c, WS_CLOSE_POLICY,
				    "message too slow");
			} else if (now_ms - c->last_rx >= cfg.ping_timeout_ms) {
				log_msg(LOG_INFO, "ping timeout conn=%llu",
				    (unsigned long long)c->id);
				conn_kill(c);
			} else if (now_ms - c->last_rx >= cfg.ping_interval_ms &&
			    (c->ping_at == 0 ||
			    now_ms - c->ping_at >= cfg.ping_interval_ms)) {
				struct ws_buf *b = ws_buf_frame(WS_OP_PING,
				    "wsd", 3);

				if (b != NULL) {
					conn_push(c, b);
					ws_buf_unref(b);
				}
				c->ping_at = now_ms;
			}
			break;
		default:
			if (now_ms >= c->deadline)
				conn_kill(c);
			break;
		}
	}
}

int
ws_timer(unsigned interval_ms, void (*fn)(void *), void *arg)
{
	struct itimerspec its = { 0 };
	struct epoll_event ev = { .events = EPOLLIN };
	struct timer *t;

	if ((t = calloc(1, sizeof *t)) == NULL)
		return -1;
	t->src.kind = SRC_TIMER;
	t->fn = fn;
	t->arg = arg;
	t->src.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (t->src.fd == -1)
		goto fail;
	its.it_interval.tv_sec = interval_ms / 1000;
	its.it_interval.tv_nsec = (interval_ms % 1000) * 1000000L;
	its.it_value = its.it_interval;
	ev.data.ptr = t;
	if (timerfd_settime(t->src.fd, 0, &its, NULL) == -1 ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, t->src.fd, &ev) == -1)
		goto fail;
	t->next = timers;
	timers = t;
	return 0;
fail:
	if (t->src.fd != -1)
		close(t->src.fd);
	free(t);
	return -1;
}

static void
timer_event(struct timer *t)
{
	uint64_t expirations;

	if (read(t->src.fd, &expirations, sizeof expirations) > 0)
		t->fn(t->arg);
}

/* ==== Listeners ====================================================== */

int
ws_listen(const char *hostport)
{
	struct addrinfo hints = { 0 }, *res = NULL;
	struct epoll_event ev = { .events = EPOLLIN };
	char host[256], shown[300];
	const char *colon = strrchr(hostport, ':'), *port;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	struct listener *l = NULL;
	size_t hl;
	int fd = -1, one = 1, err;

	if (colon == NULL || (hl = colon - hostport) >= sizeof host) {
		log_msg(LOG_ERROR, "listen: expected HOST:PORT, got %.64s",
		    hostport);
		return -1;
	}
	port = colon + 1;
	if (hl >= 2 && hostport[0] == '[' && hostport[hl - 1] == ']') {
		memcpy(host, hostport + 1, hl - 2);
		host[hl - 2] = '\0';
	} else {
		memcpy(host, hostport, hl);
		host[hl] = '\0';
	}
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((err = getaddrinfo(host[0] ? host : NULL, port, &hints, &res))) {
		log_msg(LOG_ERROR, "listen %.64s: %s", hostport,
		    gai_strerror(err));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (res->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 ||
	    listen(fd, 4096) == -1 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) == -1)
		goto fail;
	if ((l = calloc(1, sizeof *l)) == NULL)
		goto fail;
	l->src.fd = fd;
	l->src.kind = SRC_LISTEN;
	ev.data.ptr = l;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
		goto fail;
	l->next = listeners;
	listeners = l;
	freeaddrinfo(res);
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		shown[0] = '[';
		inet_ntop(AF_INET6, &s6->sin6_addr, shown + 1, sizeof shown - 8);
		snprintf(shown + strlen(shown), 8, "]:%u", ntohs(s6->sin6_port));
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &s4->sin_addr, shown, sizeof shown - 8);
		snprintf(shown + strlen(shown), 8, ":%u", ntohs(s4->sin_port));
	}
	log_msg(LOG_INFO, "listening addr=%s", shown);
	return 0;
fail:
	log_msg(LOG_ERROR, "listen %.64s: %s", hostport, strerror(errno));
	if (fd != -1)
		close(fd);
	free(l);
	freeaddrinfo(res);
	return -1;
}

/*
 * Accept until the backlog is empty.  Out of fds (EMFILE/ENFILE), the
 * pending connection would keep the listener readable forever: give back
 * the reserve fd, accept and drop the connection, and take the reserve
 * again, so the loop never spins.
 */
static void
listener_event(struct listener *l)
{
	for (int i = 0; i < 1024; i++) {
		int fd = accept4(l->src.fd, NULL, NULL,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			/* Past the limit we still read the request, to
			 * answer 503, but only up to a hard ceiling. */
			if (ws_stats.connections >= cfg.max_connections + 1024) {
				close(fd);
				continue;
			}
			conn_new(fd);
			continue;
		}
		if (errno == EINTR)
			continue;
		if ((errno == EMFILE || errno == ENFILE) && reserve_fd >= 0) {
			close(reserve_fd);
			fd = accept(l->src.fd, NULL, NULL);
			if (fd >= 0)
				close(fd);
			reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			log_msg(LOG_WARN, "out of file descriptors");
			ws_stats.handshake_fail[WS_HS_LIMIT]++;
		}
		return;
	}
}

/* ==== The loop ======================================================= */

uint64_t
ws_now_ms(void)
{
	return now_ms;
}

static void
clock_tick(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now_ms = (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
ws_init(const struct ws_config *c, const struct ws_handlers *h)
{
	struct epoll_event ev = { .events = EPOLLIN };
	unsigned shortest;
	sigset_t set;

	cfg = *c;
	app = *h;
	clock_tick();
	signal(SIGPIPE, SIG_IGN);
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		goto fail;
	reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1 ||
	    (sigsrc.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		goto fail;
	ev.data.ptr = &sigsrc;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, sigsrc.fd, &ev) == -1)
		goto fail;
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
	if (ws_timer(shortest, sweep, NULL) == -1)
		goto fail;
	return 0;
fail:
	log_msg(LOG_ERROR, "reactor setup: %s", strerror(errno));
	return -1;
}

void
ws_on_turn(void (*fn)(void))
{
	on_turn = fn;
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
	drain_until = now_ms + cfg.drain_ms + 1;
	log_msg(LOG_INFO, "shutting down connections=%llu",
	    (unsigned long long)ws_stats.connections);
	while (listeners != NULL) {
		struct listener *l = listeners;

		listeners = l->next;
		close(l->src.fd);
		free(l);
	}
	for (c = conns; c != NULL; c = next) {
		next = c->next;
		if (c->state == C_WS)
			send_close(c, WS_CLOSE_GOING_AWAY, "shutting down");
		else if (c->state == C_HTTP && c->qlen == 0 &&
		    (c->in == NULL || c->in->hlen == 0))
			conn_kill(c);
	}
}

static void
signal_event(void (*on_hup)(void))
{
	struct signalfd_siginfo si;

	while (read(sigsrc.fd, &si, sizeof si) == sizeof si) {
		if (si.ssi_signo == SIGHUP) {
			if (on_hup != NULL)
				on_hup();
			/* After the reopen, so it lands in the new file. */
			log_msg(LOG_INFO, "SIGHUP handled");
		} else
			ws_shutdown();
	}
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

int
ws_run(void (*on_hup)(void))
{
	struct epoll_event events[MAX_EVENTS];

	for (;;) {
		int n, timeout = drain_until ? 50 : -1;

		if (drain_until != 0 && (conns == NULL || now_ms >= drain_until))
			break;
		n = epoll_wait(epfd, events, MAX_EVENTS, timeout);
		clock_tick();
		if (n == -1 && errno != EINTR) {
			log_msg(LOG_ERROR, "epoll_wait: %s", strerror(errno));
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct src *s = events[i].data.ptr;

			switch (s->kind) {
			case SRC_LISTEN:
				listener_event((struct listener *)s);
				break;
			case SRC_CONN:
				conn_event((struct ws_conn *)s, events[i].events);
				break;
			case SRC_TIMER:
				timer_event((struct timer *)s);
				break;
			case SRC_SIGNAL:
				signal_event(on_hup);
				break;
			}
		}
		/* Reaping may queue output (see reap()): go round until
		 * nothing is left to write or to free this turn. */
		do {
			if (on_turn != NULL)
				on_turn();
			flush_all();
			reap();
		} while (flush_list != NULL || reap_list != NULL);
	}
	while (conns != NULL)
		conn_kill(conns);
	do {
		flush_all();
		reap();
	} while (reap_list != NULL);
	log_msg(LOG_INFO, "stopped");
	return 0;
}
