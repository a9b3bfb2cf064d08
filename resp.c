/*
 * resp.c - the Redis wire: the resumable RESP2 reply parser, the command
 * encoder, and the redis:// URL.
 *
 * Pure: no sockets, no clock, no global state.  redis.c feeds the parser
 * the bytes it read and writes the commands encoded here; the unit test
 * and the fuzz target link this file alone.  It knows nothing of
 * connections, of pub/sub or of what a command means.
 *
 * The parser returns n > 0 (a whole reply of n bytes), RESP_AGAIN (need
 * more) or RESP_ERROR (the reason in p->err); the encoder 0 or a negative
 * RESP_E*; the URL parser 0 or -1 with a static reason.
 */
#include <arpa/inet.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "resp.h"

#define NUM_LINE	20	/* a length or integer: sign and 19 digits */

static int	fail(struct resp_parser *, int);
static int	push(struct resp_parser *, uint8_t, size_t, int64_t, int);
static int	closed_value(struct resp_parser *);
static long	finish(struct resp_parser *, const uint8_t *);
static int	parse_int(const uint8_t *, size_t, int64_t *);
static int	parse_len(const uint8_t *, size_t, uint64_t, int64_t *);
static int	pct_decode(const char *, size_t, char *, size_t);

/* ==== Reply parser ==================================================== */

/*
 * RESP2, as the Redis protocol specification describes it: every value
 * opens with a type byte and a line ended by CR LF.
 *
 *	+OK\r\n			simple string (no CR or LF inside)
 *	-ERR message\r\n	error
 *	:1000\r\n		integer, signed 64 bits
 *	$5\r\nhello\r\n		bulk string: a length, then that many
 *				bytes (binary) and CR LF; "$-1" is null
 *	*2\r\n...		array: a count, then that many values
 *				(any type, nested); "*-1" is null
 *
 * The state between calls is where the next line starts (off), how far
 * the search for its CR got (scan), whether a bulk string's bytes are
 * awaited (in_bulk, need), and the stack of open arrays with the elements
 * each still needs.  Offsets are relative to the reply's first byte, so
 * the caller may move its buffer between calls; pointers are set only
 * when the reply is whole.
 */

void
resp_parser_init(struct resp_parser *p, const struct resp_limits *lim)
{
	memset(p, 0, sizeof *p);
	if (lim != NULL)
		p->lim = *lim;
	if (p->lim.max_bulk == 0)
		p->lim.max_bulk = RESP_MAX_BULK;
	if (p->lim.max_elems == 0)
		p->lim.max_elems = RESP_MAX_ELEMS;
	if (p->lim.max_depth == 0)
		p->lim.max_depth = RESP_MAX_DEPTH;
	if (p->lim.max_depth > RESP_DEPTH_CAP)
		p->lim.max_depth = RESP_DEPTH_CAP;
	if (p->lim.max_tokens == 0)
		p->lim.max_tokens = RESP_MAX_TOKENS;
	/* Offsets are 32 bits: a reply stays under 4 GiB, and no string
	 * or count is larger, so no length arithmetic here can wrap. */
	if (p->lim.max_bytes == 0)
		p->lim.max_bytes = RESP_MAX_BYTES;
	if (p->lim.max_bytes > UINT32_MAX - 1)
		p->lim.max_bytes = UINT32_MAX - 1;
	if (p->lim.max_bulk > p->lim.max_bytes)
		p->lim.max_bulk = p->lim.max_bytes;
	if (p->lim.max_elems > UINT32_MAX)
		p->lim.max_elems = UINT32_MAX;
}

void
resp_parser_reset(struct resp_parser *p)
{
	p->ntok = 0;
	p->err = RESP_E_NONE;
	p->in_bulk = 0;
	p->done = 0;
	p->depth = 0;
	p->off = p->scan = p->need = 0;
}

void
resp_parser_free(struct resp_parser *p)
{
	free(p->tok);
	p->tok = NULL;
	p->ntok = p->cap = 0;
}

static int
fail(struct resp_parser *p, int err)
{
	p->err = err;
	return RESP_ERROR;
}

/* Add a token; strings keep their offset until the reply is whole.  The
 * token count is checked before the array grows. */
static int
push(struct resp_parser *p, uint8_t type, size_t off, int64_t n, int null)
{
	struct resp_tok *t;

	if (p->ntok >= p->lim.max_tokens)
		return fail(p, RESP_E_TOKENS);
	if (p->ntok == p->cap) {
		uint32_t cap = p->cap ? p->cap * 2 : 16;

		if (cap > p->lim.max_tokens)
			cap = p->lim.max_tokens;
		if ((t = realloc(p->tok, (size_t)cap * sizeof *t)) == NULL)
			return fail(p, RESP_E_NOMEM);
		p->tok = t;
		p->cap = cap;
	}
	t = &p->tok[p->ntok++];
	t->type = type;
	t->null = null;
	t->size = 1;
	t->off = off;
	t->n = n;
	t->p = NULL;
	return 0;
}

/* A value just ended: count it in the arrays open around it, closing
 * each that is now full.  1 when the reply is whole. */
static int
closed_value(struct resp_parser *p)
{
	while (p->depth > 0) {
		uint32_t a = p->stack[p->depth - 1].tok;

		if (--p->stack[p->depth - 1].left > 0)
			return 0;
		p->tok[a].size = p->ntok - a;
		p->depth--;
	}
	return 1;
}

/* The reply is whole: point its strings into buf. */
static long
finish(struct resp_parser *p, const uint8_t *buf)
{
	long n = (long)p->off;

	for (uint32_t i = 0; i < p->ntok; i++) {
		struct resp_tok *t = &p->tok[i];

		if (t->type != RESP_T_ARRAY && t->type != RESP_T_INT &&
		    !t->null)
			t->p = buf + t->off;
	}
	p->done = 1;
	p->off = p->scan = p->need = 0;
	return n;
}

/* ":" values: an optional '-' and 1-19 digits, within int64_t.  0/-1. */
static int
parse_int(const uint8_t *s, size_t n, int64_t *out)
{
	uint64_t v = 0, max = INT64_MAX;
	int neg = n > 0 && s[0] == '-';

	if (neg) {
		s++;
		n--;
		max = (uint64_t)INT64_MAX + 1;
	}
	if (n == 0 || n > 19)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		/* v <= 999...9 (18 digits) here: v * 10 + 9 cannot wrap. */
		v = v * 10 + (s[i] - '0');
	}
	if (v > max)
		return -1;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

/*
 * A length or count: "-1" (null) or digits up to lim.  0, -1 when
 * malformed, -2 when over lim (checked digit by digit: lim is under
 * 2^32, so nothing wraps however many digits come).
 */
static int
parse_len(const uint8_t *s, size_t n, uint64_t lim, int64_t *out)
{
	uint64_t v = 0;

	if (n == 2 && s[0] == '-' && s[1] == '1') {
		*out = -1;
		return 0;
	}
	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
		if (v > lim) {
			/* Still malformed if a non-digit follows. */
			for (size_t j = i + 1; j < n; j++)
				if (s[j] < '0' || s[j] > '9')
					return -1;
			return -2;
		}
	}
	*out = (int64_t)v;
	return 0;
}

long
resp_parse(struct resp_parser *p, const uint8_t *buf, size_t len)
{
	if (p->err != RESP_E_NONE)
		return RESP_ERROR;
	if (p->done) {
		p->done = 0;
		p->ntok = 0;
	}
	for (;;) {
		size_t off = p->off, i, max_line, body, t_line, t_bytes;
		uint8_t type;
		int64_t v;
		int rc;

		if (p->in_bulk) {
			if (len < p->need)
				return RESP_AGAIN;
			if (buf[p->need - 2] != '\r' ||
			    buf[p->need - 1] != '\n')
				return fail(p, RESP_E_TERM);
			p->off = p->scan = p->need;
			p->in_bulk = 0;
			if (closed_value(p))
				return finish(p, buf);
			continue;
		}
		if (off >= len)
			return RESP_AGAIN;
		type = buf[off];
		if (type != RESP_T_STRING && type != RESP_T_ERROR &&
		    type != RESP_T_INT && type != RESP_T_BULK &&
		    type != RESP_T_ARRAY)
			return fail(p, RESP_E_TYPE);
		max_line = type == RESP_T_STRING || type == RESP_T_ERROR ?
		    p->lim.max_bulk : NUM_LINE;

		/* The line ends at CR LF; a CR or LF alone is malformed
		 * (simple strings may hold neither). */
		i = p->scan > off ? p->scan : off + 1;
		while (i < len && buf[i] != '\r' && buf[i] != '\n')
			i++;
		/* Too long for its type at t_line, too long for a reply at
		 * t_bytes: the nearer decides the error, so that it does not
		 * depend on how the input was cut. */
		t_line = off + max_line + 2;
		t_bytes = p->lim.max_bytes - 1;
		if (i >= t_line || i >= t_bytes)
			return fail(p, t_bytes < t_line ? RESP_E_BYTES :
			    max_line == NUM_LINE ? RESP_E_NUMBER : RESP_E_BULK);
		if (i >= len || (buf[i] == '\r' && i + 1 >= len)) {
			p->scan = i;	/* a CR at the end is found again */
			return RESP_AGAIN;
		}
		if (buf[i] != '\r' || buf[i + 1] != '\n')
			return fail(p, RESP_E_LINE);
		body = i + 2;
		switch (type) {
		case RESP_T_STRING:
		case RESP_T_ERROR:
			if (push(p, type, off + 1, i - off - 1, 0) != 0)
				return RESP_ERROR;
			break;
		case RESP_T_INT:
			if (parse_int(buf + off + 1, i - off - 1, &v) != 0)
				return fail(p, RESP_E_NUMBER);
			if (push(p, type, 0, v, 0) != 0)
				return RESP_ERROR;
			break;
		case RESP_T_BULK:
			rc = parse_len(buf + off + 1, i - off - 1,
			    p->lim.max_bulk, &v);
			if (rc != 0)
				return fail(p, rc == -1 ? RESP_E_NUMBER :
				    RESP_E_BULK);
			if (v == -1) {
				if (push(p, type, 0, 0, 1) != 0)
					return RESP_ERROR;
				break;
			}
			/* body + v + 2 cannot wrap: v <= max_bulk < 2^32. */
			if (body + (uint64_t)v + 2 > p->lim.max_bytes)
				return fail(p, RESP_E_BYTES);
			if (push(p, type, body, v, 0) != 0)
				return RESP_ERROR;
			p->in_bulk = 1;
			p->need = body + v + 2;
			p->off = p->scan = body;
			continue;
		case RESP_T_ARRAY:
			rc = parse_len(buf + off + 1, i - off - 1,
			    p->lim.max_elems, &v);
			if (rc != 0)
				return fail(p, rc == -1 ? RESP_E_NUMBER :
				    RESP_E_ELEMS);
			/* Checked on the header, before any element. */
			if (v > 0 && (uint64_t)p->ntok + 1 + v >
			    p->lim.max_tokens)
				return fail(p, RESP_E_TOKENS);
			if (p->depth >= p->lim.max_depth)
				return fail(p, RESP_E_DEPTH);
			if (push(p, type, 0, v == -1 ? 0 : v, v == -1) != 0)
				return RESP_ERROR;
			if (v > 0) {
				p->stack[p->depth].tok = p->ntok - 1;
				p->stack[p->depth].left = v;
				p->depth++;
				p->off = p->scan = body;
				continue;
			}
			break;
		}
		p->off = p->scan = body;
		if (closed_value(p))
			return finish(p, buf);
	}
}

const char *
resp_strerror(int err)
{
	switch (err) {
	case RESP_E_NONE:	return "no error";
	case RESP_E_TYPE:	return "unknown type byte";
	case RESP_E_LINE:	return "line not ended by CR LF";
	case RESP_E_NUMBER:	return "malformed integer or length";
	case RESP_E_BULK:	return "string over the length limit";
	case RESP_E_TERM:	return "bulk string not followed by CR LF";
	case RESP_E_ELEMS:	return "array over the element limit";
	case RESP_E_DEPTH:	return "arrays nested too deep";
	case RESP_E_TOKENS:	return "reply over the value limit";
	case RESP_E_BYTES:	return "reply over the size limit";
	case RESP_E_NOMEM:	return "out of memory";
	}
	return "unknown error";
}

const struct resp_tok *
resp_next(const struct resp_tok *t)
{
	return t + t->size;
}

const struct resp_tok *
resp_elem(const struct resp_tok *a, int64_t i)
{
	const struct resp_tok *t = a + 1;

	if (a->type != RESP_T_ARRAY || i < 0 || i >= a->n)
		return NULL;
	while (i-- > 0)
		t = resp_next(t);
	return t;
}

int
resp_is(const struct resp_tok *t, const char *lit)
{
	size_t n = strlen(lit);

	return t != NULL && t->type != RESP_T_INT && t->type != RESP_T_ARRAY &&
	    !t->null && (uint64_t)t->n == n && memcmp(t->p, lit, n) == 0;
}

int
resp_u64(const struct resp_tok *t, uint64_t *v)
{
	if (t == NULL)
		return -1;
	if (t->type == RESP_T_INT) {
		if (t->n < 0)
			return -1;
		*v = (uint64_t)t->n;
		return 0;
	}
	if (t->type != RESP_T_BULK || t->null || t->n == 0 || t->n > 19)
		return -1;
	*v = 0;
	for (int64_t i = 0; i < t->n; i++) {
		if (t->p[i] < '0' || t->p[i] > '9')
			return -1;
		*v = *v * 10 + (t->p[i] - '0');
	}
	return 0;
}

/* ==== Command encoder ================================================= */

/* Decimal digits of v. */
static size_t
digits(size_t v)
{
	size_t d = 1;

	while (v >= 10) {
		v /= 10;
		d++;
	}
	return d;
}

/* Commands go out as arrays of bulk strings, the form Redis takes for
 * any bytes: "*argc\r\n" then "$len\r\n" bytes "\r\n" for each. */
size_t
resp_cmd_size(int argc, const struct resp_arg *argv)
{
	size_t n;

	if (argc < 0)
		return SIZE_MAX;
	n = 3 + digits(argc);
	for (int i = 0; i < argc; i++) {
		size_t a = argv[i].n;

		if (a > SIZE_MAX / 2 || n > SIZE_MAX / 2 - a - 32)
			return SIZE_MAX;
		n += 5 + digits(a) + a;
	}
	return n;
}

static uint8_t *
put_head(uint8_t *o, char type, size_t v)
{
	size_t d = digits(v);

	*o++ = type;
	for (size_t k = d; k > 0; k--) {
		o[k - 1] = '0' + v % 10;
		v /= 10;
	}
	o += d;
	*o++ = '\r';
	*o++ = '\n';
	return o;
}

int
resp_cmd(struct resp_buf *b, size_t max, int argc, const struct resp_arg *argv)
{
	size_t n = resp_cmd_size(argc, argv);
	uint8_t *o;

	if (n == SIZE_MAX || n > max || b->len > max - n)
		return RESP_EFULL;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->len + n)
			cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
		if ((o = realloc(b->p, cap)) == NULL)
			return RESP_ENOMEM;
		b->p = o;
		b->cap = cap;
	}
	o = put_head(b->p + b->len, '*', argc);
	for (int i = 0; i < argc; i++) {
		o = put_head(o, '$', argv[i].n);
		if (argv[i].n > 0)
			memcpy(o, argv[i].p, argv[i].n);
		o += argv[i].n;
		*o++ = '\r';
		*o++ = '\n';
	}
	b->len += n;
	return 0;
}

void
resp_buf_free(struct resp_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* ==== redis:// URL ==================================================== */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode s[0..n) into out (cap bytes with the NUL).  0, -1 for a
 * bad escape, an encoded NUL, a control character or space, or no room. */
static int
pct_decode(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];

		if (c <= ' ' || c == 0x7f)
			return -1;
		if (c == '%') {
			int hi, lo;

			if (i + 2 >= n)
				return -1;
			if ((hi = hexval(s[i + 1])) < 0 ||
			    (lo = hexval(s[i + 2])) < 0 || (hi | lo) == 0)
				return -1;
			c = hi << 4 | lo;
			i += 2;
		}
		if (o + 1 >= cap)
			return -1;
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
}

int
resp_url_parse(const char *url, struct resp_url *u, const char **why)
{
	const char *s, *at, *host, *hend, *port = NULL, *end;
	size_t hl;

	memset(u, 0, sizeof *u);
	u->port = RESP_URL_PORT;
	if (strncasecmp(url, "redis://", 8) == 0)
		s = url + 8;
	else if (strncasecmp(url, "rediss://", 9) == 0) {
		s = url + 9;
		u->tls = 1;
	} else {
		*why = "the scheme must be redis:// or rediss://";
		return -1;
	}
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c <= ' ' || *c == 0x7f) {
			*why = "control character or space in the URL";
			return -1;
		}

	/* Userinfo: up to the last '@', so a password may hold '@' or '/'. */
	if ((at = strrchr(s, '@')) != NULL) {
		const char *colon = memchr(s, ':', at - s);

		if (colon != NULL) {
			if (pct_decode(s, colon - s, u->user,
			    sizeof u->user) != 0) {
				*why = "bad user: a bad %-escape or over 255 "
				    "bytes";
				goto fail;
			}
			s = colon + 1;
		}
		if (pct_decode(s, at - s, u->pass, sizeof u->pass) != 0) {
			*why = "bad password: a bad %-escape or over 511 bytes";
			goto fail;
		}
		if (u->pass[0] == '\0') {
			*why = "empty password";
			goto fail;
		}
		s = at + 1;
	}

	/* Host: a bracketed IPv6 address, or a name or IPv4 address. */
	if (*s == '[') {
		uint8_t a6[16];

		host = s + 1;
		if ((hend = strchr(host, ']')) == NULL) {
			*why = "'[' without ']' around the IPv6 address";
			goto fail;
		}
		if ((hl = hend - host) == 0 || hl >= sizeof u->host) {
			*why = "bad IPv6 address";
			goto fail;
		}
		memcpy(u->host, host, hl);
		if (inet_pton(AF_INET6, u->host, a6) != 1) {
			*why = "bad IPv6 address";
			goto fail;
		}
		s = hend + 1;
	} else {
		host = s;
		s += strcspn(s, ":/?#");
		hl = s - host;
		if (*s == ':' && strchr(s + 1, ':') != NULL) {
			*why = "an IPv6 address needs brackets";
			goto fail;
		}
		if (hl == 0) {
			*why = "no host";
			goto fail;
		}
		if (hl >= sizeof u->host) {
			*why = "host over 255 bytes";
			goto fail;
		}
		for (size_t i = 0; i < hl; i++)
			if (strchr("abcdefghijklmnopqrstuvwxyz"
			    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_",
			    host[i]) == NULL) {
				*why = "bad character in the host";
				goto fail;
			}
		memcpy(u->host, host, hl);
	}

	/* Port: 1-5 digits, 1-65535. */
	if (*s == ':') {
		unsigned long v = 0;

		port = ++s;
		while (*s >= '0' && *s <= '9' && s - port < 6)
			v = v * 10 + (*s++ - '0');
		if (s == port || s - port > 5 || v == 0 || v > 65535 ||
		    (*s != '\0' && strchr("/?#", *s) == NULL)) {
			*why = "the port must be 1-65535";
			goto fail;
		}
		u->port = v;
	}

	/* Database: "/N", or nothing, or "/" alone. */
	if (*s == '/') {
		unsigned long long v = 0;
		const char *d = ++s;

		end = d + strcspn(d, "?#");
		if (end > d) {
			while (*s >= '0' && *s <= '9' && s - d < 11)
				v = v * 10 + (*s++ - '0');
			if (s != end || end - d > 10 || v > RESP_URL_MAX_DB) {
				*why = "the database must be 0-2147483647";
				goto fail;
			}
			u->db = v;
		}
	}
	if (*s == '?' || *s == '#') {
		*why = "query and fragment are not supported";
		goto fail;
	}
	if (*s != '\0') {
		*why = "unexpected characters after the host";
		goto fail;
	}
	return 0;
fail:
	resp_url_wipe(u);
	return -1;
}

void
resp_url_wipe(struct resp_url *u)
{
	explicit_bzero(u->user, sizeof u->user);
	explicit_bzero(u->pass, sizeof u->pass);
}
