/*
 * http_parse.c - HTTP/1.1 request heads (RFC 9112): the parser, header
 * lookup, list tokens, percent-decoding, query parameters and Bearer
 * credentials.
 *
 * Pure: functions over (buf, len) that borrow slices of the caller's
 * buffer and copy nothing; no I/O.  It knows nothing of WebSocket or of
 * the routes.  The unit tests and the HTTP fuzz target link it alone.
 *
 * The parser returns n >= 0 (bytes consumed), HTTP_AGAIN (need more) or
 * HTTP_ERROR (with the HTTP status in an out-parameter).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_parse.h"

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

int
http_slice_eq(struct http_slice s, const char *lit)
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
http_parse(const uint8_t *buf, size_t len, size_t max,
    struct http_req *req, int *status)
{
	const uint8_t *end, *p, *eol, *sp;
	int have_cl = 0, have_host = 0;

	memset(req, 0, sizeof *req);
	if ((end = find_head_end(buf, len < max ? len : max)) == NULL) {
		if (len >= max) {
			*status = 431;
			return HTTP_ERROR;
		}
		return HTTP_AGAIN;
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
	req->method = (struct http_slice){ (const char *)p, sp - p };
	p = sp + 1;
	for (sp = p; sp < eol && *sp > ' ' && *sp < 0x7f; sp++)
		;
	if (sp == p || sp == eol || *sp != ' ' || *p != '/')
		goto bad;
	req->target = (struct http_slice){ (const char *)p, sp - p };
	p = sp + 1;
	if (eol - p != 8 || memcmp(p, "HTTP/1.", 7) != 0) {
		*status = eol - p == 8 && memcmp(p, "HTTP/", 5) == 0 ? 505 : 400;
		return HTTP_ERROR;
	}
	if (p[7] < '0' || p[7] > '9')
		goto bad;
	req->minor = p[7] - '0';
	req->keep_alive = req->minor >= 1;
	req->path = req->target;
	if ((sp = memchr(req->target.p, '?', req->target.n)) != NULL) {
		req->path.n = (const char *)sp - req->target.p;
		req->query = (struct http_slice){ (const char *)sp + 1,
		    req->target.n - req->path.n - 1 };
	}

	/* field-line = field-name ":" OWS field-value OWS */
	for (p = eol + 2; p < end - 2; p = eol + 2) {
		const uint8_t *v, *ve;
		struct http_field *h;

		eol = memchr(p, '\r', end - p);
		if (eol[1] != '\n')
			goto bad;
		if (*p == ' ' || *p == '\t')	/* obs-fold: RFC 9112 §5.2 */
			goto bad;
		if (req->nhdr == HTTP_MAX_HEADERS) {
			*status = 431;
			return HTTP_ERROR;
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
		h->name = (struct http_slice){ (const char *)p, sp - p };
		h->value = (struct http_slice){ (const char *)v, ve - v };

		if (http_slice_eq(h->name, "content-length")) {
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
		} else if (http_slice_eq(h->name, "transfer-encoding")) {
			*status = 501;
			return HTTP_ERROR;
		} else if (http_slice_eq(h->name, "host"))
			have_host++;
		else if (http_slice_eq(h->name, "connection")) {
			/* RFC 9110 §5.3: several lines are one list. */
			if (http_has_token(h->value, "close"))
				req->keep_alive = 0;
			else if (http_has_token(h->value, "keep-alive"))
				req->keep_alive = 1;
			if (http_has_token(h->value, "upgrade"))
				req->conn_upgrade = 1;
		} else if (http_slice_eq(h->name, "upgrade"))
			req->upgrade = http_has_token(h->value, "websocket");
	}
	/* RFC 9112 §3.2: HTTP/1.1 requires exactly one Host. */
	if (have_host > 1 || (req->minor >= 1 && have_host == 0))
		goto bad;
	return end - buf;
bad:
	*status = 400;
	return HTTP_ERROR;
}

int
http_header_count(const struct http_req *req, const char *name)
{
	int n = 0;

	for (int i = 0; i < req->nhdr; i++)
		n += http_slice_eq(req->hdr[i].name, name);
	return n;
}

const struct http_slice *
http_header(const struct http_req *req, const char *name)
{
	for (int i = 0; i < req->nhdr; i++)
		if (http_slice_eq(req->hdr[i].name, name))
			return &req->hdr[i].value;
	return NULL;
}

int
http_has_token(struct http_slice v, const char *token)
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
		if (http_slice_eq((struct http_slice){ v.p + s, e - s }, token))
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
http_pct_decode(struct http_slice in, int plus, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t k = 0; k < in.n; k++) {
		int ch = (unsigned char)in.p[k];

		if (ch == '%') {
			int hi, lo;

			/* RFC 3986 §2.1: exactly two hex digits follow. */
			if (in.n - k < 3 || (hi = hexval(in.p[k + 1])) < 0 ||
			    (lo = hexval(in.p[k + 2])) < 0)
				return HTTP_ERROR;
			ch = hi << 4 | lo;
			k += 2;
			if (ch == 0)
				return HTTP_ERROR;
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
http_query_param(struct http_slice q, const char *name, char *out, size_t cap)
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
		n = http_pct_decode((struct http_slice){ q.p + s + nlen + 1,
		    e - s - nlen - 1 }, 1, out, cap);
		if (n < 0 || (size_t)n >= cap)
			return HTTP_ERROR;
		return n;
	}
	return -1;
}

int
http_query_uint(struct http_slice q, const char *name, uint64_t dflt,
    uint64_t max, uint64_t *out)
{
	char buf[24], *end;
	long n = http_query_param(q, name, buf, sizeof buf);

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

struct http_slice
http_bearer(const struct http_req *req)
{
	const struct http_slice *a = http_header(req, "authorization");
	struct http_slice none = { NULL, 0 };

	/* RFC 6750 §2.1: the scheme name is case-insensitive.  Two
	 * Authorization lines are no credentials: which would count? */
	if (a == NULL || a->n <= 7 || strncasecmp(a->p, "Bearer ", 7) != 0 ||
	    http_header_count(req, "authorization") > 1)
		return none;
	return (struct http_slice){ a->p + 7, a->n - 7 };
}
