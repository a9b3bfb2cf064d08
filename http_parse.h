/*
 * http_parse.h - HTTP/1.1 request heads (http_parse.c): the parser and
 * the lookups over a parsed head.  Pure: no I/O; every slice points into
 * the caller's buffer.
 *
 * The parser's return convention:
 *
 *	n >= 0		the head's length (through the blank line)
 *	HTTP_AGAIN	the head has not arrived whole: need more
 *	HTTP_ERROR	malformed or over a limit: *status says which
 */
#ifndef HTTP_PARSE_H
#define HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_AGAIN	(-1)
#define HTTP_ERROR	(-2)

#define HTTP_MAX_HEADER		8192		/* request line + headers */
#define HTTP_MAX_HEADERS	64		/* header lines */

/* A borrowed byte range; never NUL-terminated. */
struct http_slice {
	const char *p;
	size_t      n;
};

struct http_field {
	struct http_slice name;
	struct http_slice value;		/* optional white space trimmed */
};

/* A parsed request head; every slice points into the caller's buffer. */
struct http_req {
	struct http_slice  method;
	struct http_slice  target;	/* as sent: path and query */
	struct http_slice  path;		/* target up to '?' */
	struct http_slice  query;		/* after '?', may be empty */
	int              minor;		/* HTTP/1.minor */
	int              nhdr;
	struct http_field hdr[HTTP_MAX_HEADERS];
	uint64_t         content_length;	/* 0 when absent */
	int              keep_alive;
	int              upgrade;	/* Upgrade lists "websocket" */
	int              conn_upgrade;	/* a Connection line lists "upgrade" */
};

/*
 * Parse one request head from buf[0..len).  Returns the head's length
 * (through the blank line) when complete, HTTP_AGAIN when the blank line
 * has not arrived and len < max, or HTTP_ERROR with *status set: 400 malformed,
 * 431 head over max bytes or over HTTP_MAX_HEADERS lines, 501 a
 * Transfer-Encoding (wsd takes Content-Length bodies only), 505 not
 * HTTP/1.x.  A bare LF (anywhere, even before the head is complete) and
 * obsolete line folding are refused with 400.
 */
long	http_parse(const uint8_t *buf, size_t len, size_t max,
	    struct http_req *req, int *status);

/* 1 if s equals lit, ignoring ASCII case. */
int	http_slice_eq(struct http_slice s, const char *lit);

/* How many header lines are called name (case-insensitive). */
int	http_header_count(const struct http_req *req, const char *name);

/* The value of header name (case-insensitive), or NULL. */
const struct http_slice *http_header(const struct http_req *req,
	    const char *name);

/* 1 if the comma-separated value lists token (case-insensitive). */
int	http_has_token(struct http_slice value, const char *token);

/*
 * Percent-decode in (RFC 3986 §2.1; plus: '+' is a space, as in a query)
 * into out, NUL-terminated, writing at most cap bytes.  Returns the
 * decoded length, which is >= cap when it did not fit (as snprintf does),
 * or HTTP_ERROR for a malformed escape or an encoded NUL.
 */
long	http_pct_decode(struct http_slice in, int plus, char *out, size_t cap);

/*
 * The value of query parameter name, percent-decoded into out (cap bytes,
 * NUL-terminated).  Returns its length, -1 if absent (not a parser's
 * HTTP_AGAIN: this is a lookup), or HTTP_ERROR if
 * malformed or too long for out.
 */
long	http_query_param(struct http_slice query, const char *name, char *out,
	    size_t cap);

/*
 * Query parameter name as an unsigned decimal into *out, clamped to max.
 * Returns 1 when present, 0 when absent (*out = dflt), -1 if malformed.
 */
int	http_query_uint(struct http_slice query, const char *name, uint64_t dflt,
	    uint64_t max, uint64_t *out);

/* The credentials of "Authorization: Bearer X"; n is 0 when absent, or
 * when the request has more than one Authorization line. */
struct http_slice http_bearer(const struct http_req *req);


#endif
