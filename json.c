/*
 * json.c - a strict RFC 8259 decoder and a small JSON encoder.
 *
 * The decoder makes one pass over (buf, len) and fills the flat token
 * array described in json.h.  It checks everything the RFC asks of a
 * document - grammar, UTF-8, escapes, surrogate pairs - so that the
 * accessors further down can unescape strings without checking again.
 * It never recurses: an open array or object keeps the index of the
 * container around it in its own (not yet known) next field, so the
 * stack of open containers lives in the token array, one link per level,
 * and the depth is a counter checked against max_depth.
 *
 * json.c does no I/O and knows nothing of wsd's messages.  It never turns
 * a number into a double: a number token is text until json_tok_int()
 * reads it.
 *
 * Return convention: 0 on success, -1 on failure.  json_parse() names the
 * fault in doc->err and doc->err_offset; the encoder records an allocation
 * failure once, in json_buf.oom.
 */
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* The end of the chain of open containers. */
#define NONE		UINT32_MAX

#define ISDIGIT(c)	((c) >= '0' && (c) <= '9')
/* RFC 8259 §2: the only white space is space, tab, LF and CR. */
#define ISSPACE(c)	((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')

/* What may come next, after white space. */
enum state {
	S_VALUE,		/* at the top, after ':', after ',' in an array */
	S_VALUE_OR_CLOSE,	/* after '[' */
	S_KEY,			/* after ',' in an object */
	S_KEY_OR_CLOSE,		/* after '{' */
	S_COLON,		/* after a key */
	S_COMMA_OR_CLOSE,	/* after a value inside an array or object */
	S_DONE			/* after the top-level value */
};

struct parser {
	struct json_doc	*doc;
	const uint8_t	*buf;
	size_t		 len;
	uint32_t	 cap;		/* tokens allocated */
	uint32_t	 max_tokens;
};

static int	fail(struct parser *, size_t, const char *);
static int	new_tok(struct parser *, enum json_type, size_t);
static int	scan_literal(struct parser *, size_t *, enum json_type);
static int	scan_number(struct parser *, size_t *);
static int	scan_string(struct parser *, size_t *);
static size_t	scan_escape(struct parser *, size_t);
static size_t	utf8_len(const uint8_t *, size_t);
static int32_t	hex4(const uint8_t *, size_t);
static const struct json_tok *tok_of(const struct json_doc *, int,
		    enum json_type);
static size_t	unescape(const uint8_t *, size_t *, uint8_t [4]);
static int	buf_grow(struct json_buf *, size_t);

static const char *const literals[] = {
	[JSON_NULL] = "null", [JSON_FALSE] = "false", [JSON_TRUE] = "true"
};

/*
 * RFC 8259 §7: the two-character escapes, by the letter after the
 * backslash (for the decoder) and by the character (for the encoder).
 */
static const uint8_t unescapes[128] = {
	['"'] = '"', ['\\'] = '\\', ['/'] = '/', ['b'] = '\b',
	['f'] = '\f', ['n'] = '\n', ['r'] = '\r', ['t'] = '\t'
};
static const char escapes[0x20] = {
	['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'
};

/*
 * Decoder
 */

int
json_parse(struct json_doc *doc, const uint8_t *buf, size_t len,
    unsigned max_depth, uint32_t max_tokens)
{
	struct parser	 ps;
	struct json_tok	*t;
	size_t		 pos = 0, start;
	uint32_t	 open = NONE;	/* innermost open container */
	uint32_t	 idx;
	unsigned	 depth = 0;
	enum state	 st = S_VALUE;
	enum json_type	 type;
	uint8_t		 c;

	memset(doc, 0, sizeof(*doc));
	doc->buf = buf;
	doc->len = len;
	ps.doc = doc;
	ps.buf = buf;
	ps.len = len;
	ps.cap = 0;
	/* The accessors name tokens by int. */
	ps.max_tokens = max_tokens < INT_MAX ? max_tokens : INT_MAX;

	/* Token offsets and lengths are 32-bit. */
	if (len > UINT32_MAX)
		return fail(&ps, 0, "document too large");

	for (;;) {
		while (pos < len && ISSPACE(buf[pos]))
			pos++;
		if (pos == len) {
			if (st == S_DONE)
				return 0;
			return fail(&ps, pos, "unexpected end of input");
		}
		c = buf[pos];

		switch (st) {
		case S_DONE:
			return fail(&ps, pos, "unexpected data after the value");
		case S_COLON:
			if (c != ':')
				return fail(&ps, pos, "expected ':'");
			pos++;
			st = S_VALUE;
			continue;
		case S_COMMA_OR_CLOSE:
			type = doc->tok[open].type;
			if (c == ',') {
				pos++;
				st = type == JSON_OBJECT ? S_KEY : S_VALUE;
				continue;
			}
			if (c == (type == JSON_OBJECT ? '}' : ']'))
				goto close;
			return fail(&ps, pos, type == JSON_OBJECT ?
			    "expected ',' or '}'" : "expected ',' or ']'");
		case S_KEY_OR_CLOSE:
			if (c == '}')
				goto close;
			/* FALLTHROUGH */
		case S_KEY:
			/* RFC 8259 §4: a name is a string; no trailing ','. */
			if (c != '"')
				return fail(&ps, pos, c == '}' ?
				    "trailing comma" : "expected a string key");
			if (new_tok(&ps, JSON_STRING, pos) == -1 ||
			    scan_string(&ps, &pos) == -1)
				return -1;
			doc->tok[open].size++;
			st = S_COLON;
			continue;
		case S_VALUE_OR_CLOSE:
			if (c == ']')
				goto close;
			/* FALLTHROUGH */
		case S_VALUE:
			break;
		}

		/* A value begins at pos. */
		if (open != NONE && doc->tok[open].type == JSON_ARRAY) {
			if (c == ']')
				return fail(&ps, pos, "trailing comma");
			doc->tok[open].size++;
		}
		idx = doc->ntok;
		start = pos;
		switch (c) {
		case '[':
		case '{':
			if (depth == max_depth)
				return fail(&ps, pos, "nesting too deep");
			if (new_tok(&ps, c == '[' ? JSON_ARRAY : JSON_OBJECT,
			    pos) == -1)
				return -1;
			/* Push: link to the enclosing container. */
			doc->tok[idx].next = open;
			open = idx;
			depth++;
			pos++;
			st = c == '[' ? S_VALUE_OR_CLOSE : S_KEY_OR_CLOSE;
			continue;
		case '"':
			if (new_tok(&ps, JSON_STRING, pos) == -1 ||
			    scan_string(&ps, &pos) == -1)
				return -1;
			break;
		case 'n':
		case 'f':
		case 't':
			type = c == 'n' ? JSON_NULL :
			    c == 'f' ? JSON_FALSE : JSON_TRUE;
			if (new_tok(&ps, type, pos) == -1 ||
			    scan_literal(&ps, &pos, type) == -1)
				return -1;
			doc->tok[idx].len = pos - start;
			break;
		case '-':
		case '0': case '1': case '2': case '3': case '4':
		case '5': case '6': case '7': case '8': case '9':
			if (new_tok(&ps, JSON_NUMBER, pos) == -1 ||
			    scan_number(&ps, &pos) == -1)
				return -1;
			doc->tok[idx].len = pos - start;
			break;
		default:
			return fail(&ps, pos, "expected a value");
		}
		st = open == NONE ? S_DONE : S_COMMA_OR_CLOSE;
		continue;

	close:
		/* Pop: the subtree ends here, and so does the link. */
		pos++;
		t = &doc->tok[open];
		t->len = pos - t->start;
		open = t->next;
		t->next = doc->ntok;
		depth--;
		st = open == NONE ? S_DONE : S_COMMA_OR_CLOSE;
	}
}

void
json_doc_free(struct json_doc *doc)
{
	if (doc == NULL)
		return;
	free(doc->tok);
	doc->tok = NULL;
	doc->ntok = 0;
}

/*
 * Record the first fault.  The half-built tokens go at once, so that no
 * accessor can walk a chain of open containers by mistake.
 */
static int
fail(struct parser *p, size_t off, const char *err)
{
	p->doc->err = err;
	p->doc->err_offset = off;
	json_doc_free(p->doc);
	return -1;
}

/* Append a token for a value starting at pos; the caller sets len. */
static int
new_tok(struct parser *p, enum json_type type, size_t pos)
{
	struct json_doc	*doc = p->doc;
	struct json_tok	*t;
	uint32_t	 ncap;

	if (doc->ntok == p->max_tokens)
		return fail(p, pos, "too many tokens");
	if (doc->ntok == p->cap) {
		if (p->cap == 0)
			ncap = 16;
		else if (p->cap > p->max_tokens - p->cap)
			ncap = p->max_tokens;
		else
			ncap = p->cap * 2;
		if (ncap > p->max_tokens)
			ncap = p->max_tokens;
		t = reallocarray(doc->tok, ncap, sizeof(*t));
		if (t == NULL)
			return fail(p, pos, "out of memory");
		doc->tok = t;
		p->cap = ncap;
	}
	t = &doc->tok[doc->ntok];
	t->type = type;
	t->start = pos;
	t->len = 0;
	t->size = 0;
	t->next = ++doc->ntok;
	return 0;
}

static int
scan_literal(struct parser *p, size_t *posp, enum json_type type)
{
	const char	*word = literals[type];
	size_t		 n = strlen(word);

	/* RFC 8259 §3: lowercase only; NaN and Infinity are not JSON. */
	if (p->len - *posp < n || memcmp(p->buf + *posp, word, n) != 0)
		return fail(p, *posp, "invalid literal");
	*posp += n;
	return 0;
}

/*
 * RFC 8259 §6: number = [ "-" ] int [ frac ] [ exp ], where int is "0" or
 * a digit 1-9 followed by digits, frac is "." and at least one digit, and
 * exp is "e" or "E", an optional sign and at least one digit.  No "+1",
 * ".5", "1.", "01".
 */
static int
scan_number(struct parser *p, size_t *posp)
{
	const uint8_t	*b = p->buf;
	size_t		 i = *posp, len = p->len;

	if (b[i] == '-')
		i++;
	if (i == len || !ISDIGIT(b[i]))
		return fail(p, i, "expected a digit");
	if (b[i] == '0') {
		if (i + 1 < len && ISDIGIT(b[i + 1]))
			return fail(p, i, "leading zero");
		i++;
	} else {
		while (i < len && ISDIGIT(b[i]))
			i++;
	}
	if (i < len && b[i] == '.') {
		i++;
		if (i == len || !ISDIGIT(b[i]))
			return fail(p, i, "expected a digit");
		while (i < len && ISDIGIT(b[i]))
			i++;
	}
	if (i < len && (b[i] == 'e' || b[i] == 'E')) {
		i++;
		if (i < len && (b[i] == '+' || b[i] == '-'))
			i++;
		if (i == len || !ISDIGIT(b[i]))
			return fail(p, i, "expected a digit");
		while (i < len && ISDIGIT(b[i]))
			i++;
	}
	*posp = i;
	return 0;
}

/*
 * *posp is at the opening quote; on success it is just past the closing
 * one and the token (already appended) spans the text between them.
 * RFC 8259 §7: '"', '\\' and the controls below 0x20 must be escaped;
 * §8.1: the text is UTF-8.
 */
static int
scan_string(struct parser *p, size_t *posp)
{
	const uint8_t	*b = p->buf;
	struct json_tok	*t = &p->doc->tok[p->doc->ntok - 1];
	size_t		 i = *posp + 1, n;

	for (;;) {
		if (i == p->len)
			return fail(p, i, "unterminated string");
		if (b[i] == '"')
			break;
		if (b[i] == '\\') {
			if ((n = scan_escape(p, i)) == 0)
				return -1;
		} else if (b[i] < 0x20)
			return fail(p, i, "control character in string");
		else if (b[i] < 0x80)
			n = 1;
		else if ((n = utf8_len(b + i, p->len - i)) == 0)
			return fail(p, i, "invalid UTF-8");
		i += n;
	}
	t->start = *posp + 1;
	t->len = i - t->start;
	*posp = i + 1;
	return 0;
}

/*
 * The escape at b[i] == '\\': returns its length (2, 6, or 12 for a
 * surrogate pair), or 0 after fail().  RFC 8259 §7: a character outside
 * the BMP is escaped as a UTF-16 surrogate pair, high (D800-DBFF) then
 * low (DC00-DFFF); any other use of a surrogate encodes no character.
 */
static size_t
scan_escape(struct parser *p, size_t i)
{
	const uint8_t	*b = p->buf;
	size_t		 left = p->len - i;
	int32_t		 hi, lo;

	if (left < 2) {
		fail(p, p->len, "unterminated string");
		return 0;
	}
	if (b[i + 1] < 128 && unescapes[b[i + 1]] != 0)
		return 2;
	if (b[i + 1] != 'u') {
		fail(p, i, "invalid escape");
		return 0;
	}
	if ((hi = hex4(b + i + 2, left - 2)) == -1) {
		fail(p, i, "invalid \\u escape");
		return 0;
	}
	if (hi < 0xd800 || hi > 0xdfff)
		return 6;
	if (hi > 0xdbff || left < 8 || b[i + 6] != '\\' || b[i + 7] != 'u') {
		fail(p, i, "unpaired surrogate");
		return 0;
	}
	if ((lo = hex4(b + i + 8, left - 8)) == -1) {
		fail(p, i + 6, "invalid \\u escape");
		return 0;
	}
	if (lo < 0xdc00 || lo > 0xdfff) {
		fail(p, i, "unpaired surrogate");
		return 0;
	}
	return 12;
}

/*
 * Length of the well-formed UTF-8 sequence at s, or 0.  RFC 3629 §4: the
 * second byte's range rules out overlong forms (C0, C1, E0 80-9F,
 * F0 80-8F), UTF-16 surrogates (ED A0-BF) and code points above U+10FFFF
 * (F4 90-BF, F5-FF).
 */
static size_t
utf8_len(const uint8_t *s, size_t avail)
{
	size_t	n, k;
	uint8_t	lo = 0x80, hi = 0xbf;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		if (s[0] == 0xe0)
			lo = 0xa0;
		else if (s[0] == 0xed)
			hi = 0x9f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		if (s[0] == 0xf0)
			lo = 0x90;
		else if (s[0] == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (avail < n || s[1] < lo || s[1] > hi)
		return 0;
	for (k = 2; k < n; k++)
		if ((s[k] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* The four hex digits at s as a number, or -1. */
static int32_t
hex4(const uint8_t *s, size_t avail)
{
	int32_t	v = 0;
	int	k;

	if (avail < 4)
		return -1;
	for (k = 0; k < 4; k++) {
		v <<= 4;
		if (ISDIGIT(s[k]))
			v |= s[k] - '0';
		else if (s[k] >= 'a' && s[k] <= 'f')
			v |= s[k] - 'a' + 10;
		else if (s[k] >= 'A' && s[k] <= 'F')
			v |= s[k] - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/*
 * Accessors
 */

/* Token i if it exists and has the given type, else NULL. */
static const struct json_tok *
tok_of(const struct json_doc *doc, int i, enum json_type type)
{
	if (i < 0 || (uint32_t)i >= doc->ntok || doc->tok[i].type != type)
		return NULL;
	return &doc->tok[i];
}

/*
 * Decode one unit of string text at s[*ip] - a byte, an escape, or a
 * surrogate pair - into out, and return the number of bytes written.  No
 * checks: json_parse() accepted the text.
 */
static size_t
unescape(const uint8_t *s, size_t *ip, uint8_t out[4])
{
	size_t		i = *ip;
	uint32_t	cp;

	if (s[i] != '\\') {
		out[0] = s[i];
		*ip = i + 1;
		return 1;
	}
	if (s[i + 1] != 'u') {
		out[0] = unescapes[s[i + 1]];
		*ip = i + 2;
		return 1;
	}
	cp = hex4(s + i + 2, 4);
	*ip = i + 6;
	if (cp >= 0xd800 && cp <= 0xdbff) {
		cp = 0x10000 + ((cp - 0xd800) << 10) +
		    (hex4(s + i + 8, 4) - 0xdc00);
		*ip = i + 12;
	}
	if (cp < 0x80) {
		out[0] = cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = 0xc0 | cp >> 6;
		out[1] = 0x80 | (cp & 0x3f);
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = 0xe0 | cp >> 12;
		out[1] = 0x80 | (cp >> 6 & 0x3f);
		out[2] = 0x80 | (cp & 0x3f);
		return 3;
	}
	out[0] = 0xf0 | cp >> 18;
	out[1] = 0x80 | (cp >> 12 & 0x3f);
	out[2] = 0x80 | (cp >> 6 & 0x3f);
	out[3] = 0x80 | (cp & 0x3f);
	return 4;
}

long
json_tok_str(const struct json_doc *doc, int i, char *out, size_t cap)
{
	const struct json_tok	*t;
	const uint8_t		*s;
	uint8_t			 u[4];
	size_t			 k = 0, n, len = 0;

	if ((t = tok_of(doc, i, JSON_STRING)) == NULL)
		return -1;
	s = doc->buf + t->start;
	while (k < t->len) {
		n = unescape(s, &k, u);
		if (n > cap - len)
			return -1;
		memcpy(out + len, u, n);
		len += n;
	}
	if (len > LONG_MAX)
		return -1;
	return (long)len;
}

int
json_tok_eq(const struct json_doc *doc, int i, const char *s)
{
	const struct json_tok	*t;
	const uint8_t		*p;
	uint8_t			 u[4];
	size_t			 k = 0, m = 0, n, j;

	if ((t = tok_of(doc, i, JSON_STRING)) == NULL)
		return 0;
	p = doc->buf + t->start;
	while (k < t->len) {
		n = unescape(p, &k, u);
		/* A decoded NUL never matches: s ends there. */
		for (j = 0; j < n; j++, m++)
			if (s[m] == '\0' || (uint8_t)s[m] != u[j])
				return 0;
	}
	return s[m] == '\0';
}

int
json_find(const struct json_doc *doc, int obj, const char *key)
{
	const struct json_tok	*t;
	uint32_t		 k, m;
	int			 found = -1;

	if ((t = tok_of(doc, obj, JSON_OBJECT)) == NULL)
		return -1;
	/* Members are key, value; the value's next is the following key. */
	k = obj + 1;
	for (m = 0; m < t->size; m++) {
		if (json_tok_eq(doc, k, key))
			found = k + 1;
		k = doc->tok[k + 1].next;
	}
	return found;
}

int
json_tok_int(const struct json_doc *doc, int i, int64_t *out)
{
	const struct json_tok	*t;
	const uint8_t		*s;
	uint64_t		 mag = 0, lim, d;
	size_t			 k;

	if ((t = tok_of(doc, i, JSON_NUMBER)) == NULL)
		return -1;
	s = doc->buf + t->start;
	k = s[0] == '-';
	/* Accumulate the magnitude: |INT64_MIN| is one more than INT64_MAX. */
	lim = (uint64_t)INT64_MAX + k;
	for (; k < t->len; k++) {
		if (!ISDIGIT(s[k]))
			return -1;	/* a fraction or an exponent */
		d = s[k] - '0';
		if (mag > (lim - d) / 10)
			return -1;
		mag = mag * 10 + d;
	}
	if (s[0] != '-')
		*out = (int64_t)mag;
	else if (mag == lim)
		*out = INT64_MIN;
	else
		*out = -(int64_t)mag;
	return 0;
}

/*
 * Encoder
 */

/* Room for n more bytes, or set oom. */
static int
buf_grow(struct json_buf *b, size_t n)
{
	uint8_t	*p;
	size_t	 need, ncap;

	if (b->oom)
		return -1;
	if (n <= b->cap - b->len)
		return 0;
	if (n > SIZE_MAX - b->len)
		goto oom;
	need = b->len + n;
	ncap = b->cap < 256 ? 256 : b->cap;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	if ((p = realloc(b->p, ncap)) == NULL)
		goto oom;
	b->p = p;
	b->cap = ncap;
	return 0;
oom:
	b->oom = 1;
	return -1;
}

void
json_buf_free(struct json_buf *b)
{
	if (b == NULL)
		return;
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void
json_put_raw(struct json_buf *b, const void *s, size_t n)
{
	if (n == 0 || buf_grow(b, n) == -1)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

void
json_put_cstr(struct json_buf *b, const char *s)
{
	json_put_raw(b, s, strlen(s));
}

/*
 * RFC 8259 §7: escape '"', '\\' and the controls, the common ones by
 * letter; copy runs of everything else.
 */
void
json_put_str(struct json_buf *b, const void *s, size_t n)
{
	static const char	 hex[] = "0123456789abcdef";
	const uint8_t		*p = s;
	char			 two[2] = { '\\' };
	char			 six[6] = { '\\', 'u', '0', '0' };
	size_t			 i, run = 0;
	uint8_t			 c;

	json_put_raw(b, "\"", 1);
	for (i = 0; i < n; i++) {
		c = p[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		if (i > run)
			json_put_raw(b, p + run, i - run);
		run = i + 1;
		if (c == '"' || c == '\\' || escapes[c] != 0) {
			two[1] = c < 0x20 ? escapes[c] : c;
			json_put_raw(b, two, 2);
		} else {
			six[4] = hex[c >> 4];
			six[5] = hex[c & 0xf];
			json_put_raw(b, six, 6);
		}
	}
	if (i > run)
		json_put_raw(b, p + run, i - run);
	json_put_raw(b, "\"", 1);
}

void
json_put_int(struct json_buf *b, int64_t v)
{
	char	tmp[24];
	int	n;

	n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
	json_put_raw(b, tmp, (size_t)n);
}

/*
 * The fewest significant digits that strtod() reads back as v.  Starting
 * at %.15g gives the same digits as starting at %.1g: DBL_DIG is 15, so a
 * decimal of 15 digits or fewer that reads back as v is exactly what
 * %.15g prints, trailing zeros dropped - and %.15g spells 100 as "100"
 * where %.1g says "1e+02".  Subnormals hold fewer digits than DBL_DIG, so
 * they start from %.1g.  %g never writes "1." or ".5", and its exponent form
 * ("1e+20") is valid JSON; this assumes LC_NUMERIC is "C" (wsd never
 * calls setlocale()).
 */
void
json_put_double(struct json_buf *b, double v)
{
	char	tmp[32];
	int	prec, n = 0;

	if (!isfinite(v)) {
		json_put_raw(b, "null", 4);
		return;
	}
	prec = v > -DBL_MIN && v < DBL_MIN ? 1 : 15;
	for (; prec <= 17; prec++) {
		n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	json_put_raw(b, tmp, (size_t)n);
}
