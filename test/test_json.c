/*
 * test_json.c - json.c against RFC 8259.
 *
 * Inputs the decoder must accept (y_), must reject at a given offset (n_),
 * and those where the RFC lets us choose (i_, with the choice recorded);
 * every byte and UTF-8 sequence against an independent validator; the
 * token tree; the accessors; depth and token limits at N and N+1; the
 * encoder; randomized encode -> decode -> encode round trips.
 *
 * Every decoder input is parsed from an exactly sized malloc'd copy (for
 * ASan) and from a copy ending where a PROT_NONE page begins (for any
 * build), and every prefix of the table inputs from the guard page too.
 */
#include <sys/mman.h>

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "t.h"

struct vec {
	const char	*s;
	size_t		 n;
	long		 off;	/* n_: the expected err_offset */
	int		 ok;	/* 1 if it must parse */
};
#define Y(s)		{ s, sizeof(s) - 1, -1, 1 }
#define N(s, off)	{ s, sizeof(s) - 1, off, 0 }
#define I(s, ok)	{ s, sizeof(s) - 1, -1, ok }

struct guard {
	uint8_t	*map;
	size_t	 maplen;
};

static const uint8_t *guard_copy(struct guard *, const void *, size_t);
static void	guard_free(struct guard *);
static int	tree_ok(const struct json_doc *);
static int	parse_both(const void *, size_t, unsigned, uint32_t, size_t *);
static int	parse_guard(const void *, size_t);
static int	parse_exact(const void *, size_t, char *, size_t, long *);
static int	ref_utf8(const uint8_t *, size_t);
static int	doc_parse(struct json_doc *, const char *);
static void	doc_free(struct json_doc *);
static uint64_t	rnd(void);
static void	gen_string(uint8_t *, size_t *);
static void	gen_value(struct json_buf *, int);
static uint32_t	reencode(const struct json_doc *, uint32_t, struct json_buf *);
static int	buf_is(const struct json_buf *, const char *);
static void	digits(const char *, size_t, char *);
static double	p10(int);
static void	test_vectors(void);
static void	test_bytes(void);
static void	test_tree(void);
static void	test_find(void);
static void	test_unescape(void);
static void	test_int(void);
static void	test_limits(void);
static void	test_put_str(void);
static void	test_put_num(void);
static void	test_oom(void);
static void	test_random_docs(void);
static void	test_random_doubles(void);

/* Disagreements between the two copies, and broken token trees. */
static int	mismatches, bad_trees;

/* y_: RFC 8259 documents. */
static const struct vec y_cases[] = {
	Y("[]"), Y("{}"), Y("[[]]"), Y("[{}]"), Y("{\"a\":{}}"),
	Y("[1,[2,[3]]]"), Y("{\"a\":[],\"b\":{}}"), Y("{\"\":0}"),
	Y("{\"a\":1,\"b\":[true,false,null]}"), Y("[\"a\",\"b\"]"),
	Y("{ \"a\" : 1 , \"b\" : 2 }"), Y(" \t\n\r[ 1 ,\t2 ]\r\n "),
	/* §2: any value at the top. */
	Y("0"), Y("-0"), Y("1"), Y("-1"), Y("123"), Y(" 7 "), Y("true"),
	Y("false"), Y("null"), Y("\"\""), Y("\"a\""),
	/* §6 numbers. */
	Y("1.5"), Y("-1.5e10"), Y("1E5"), Y("1e+5"), Y("1e-5"), Y("0.0"),
	Y("0e0"), Y("-0.0e-0"), Y("1E+0001"), Y("0.000001"),
	Y("123.456e-789"), Y("[-1.0e+2,0.5,1e0]"), Y("[0,-0,0.0]"),
	/* §7 escapes. */
	Y("\"\\u0000\""), Y("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""),
	Y("\"\\ud83d\\ude00\""), Y("\"\\uDBFF\\uDFFF\""),
	Y("\"\\uD800\\uDC00\""), Y("\"\\u00e9\\u00E9\""), Y("\"\\uFFFF\""),
	Y("[\"\\u0041\"]"), Y("\"\\uD834\\uDD1Ex\""), Y("\" \""),
	/* §8.1 UTF-8: the edges of each length. */
	Y("\"\xc2\x80\""), Y("\"\xdf\xbf\""), Y("\"\xe0\xa0\x80\""),
	Y("\"\xed\x9f\xbf\""), Y("\"\xee\x80\x80\""), Y("\"\xef\xbf\xbf\""),
	Y("\"\xf0\x90\x80\x80\""), Y("\"\xf4\x8f\xbf\xbf\""),
	Y("\"\xc3\xa9\""), Y("\"\xe2\x82\xac\""), Y("\"\xf0\x9d\x84\x9e\""),
	Y("{\"\xc3\xa9\":\"\xe2\x82\xac\"}"),
};

/* n_: not JSON; off is where the decoder must say the fault is. */
static const struct vec n_cases[] = {
	/* Empty, unclosed, misplaced punctuation. */
	N("", 0), N(" ", 1), N(" \t\n\r", 4), N("[", 1), N("{", 1),
	N("[1,", 3), N("[1,2", 4), N("[\"x\"", 4), N("{\"a\"", 4),
	N("{\"a\":", 5), N("{\"a\":1", 6), N("[[1]", 4), N("]", 0),
	N("}", 0), N(":", 0), N(",", 0), N("[1]]", 3), N("{\"a\":1}}", 7),
	N("{\"a\":1}{", 7), N("{\"a\":1]", 6), N("[1}", 2),
	/* Trailing and missing commas. */
	N("[1,]", 3), N("[1,2,]", 5), N("{\"a\":1,}", 7), N("[,]", 1),
	N("[,1]", 1), N("[1,,2]", 3), N("[1 2]", 3), N("{,}", 1),
	N("{\"a\":1,,}", 7), N("{\"a\":1 \"b\":2}", 7),
	/* Members. */
	N("{\"a\" 1}", 5), N("{\"a\":}", 5), N("{\"a\"}", 4),
	N("{\"a\":1,\"b\"}", 10), N("{1:2}", 1), N("{a:1}", 1),
	N("{null:1}", 1), N("[\"a\":1]", 4),
	/* Single quotes and comments. */
	N("'a'", 0), N("['a']", 1), N("{'a':1}", 1), N("[1]//x", 3),
	N("/*x*/1", 0), N("[1/*x*/]", 2), N("#1", 0), N("1 #", 2),
	/* §6 numbers. */
	N("01", 0), N("-01", 1), N("00", 0), N("[01]", 1), N("-00", 1),
	N("-", 1), N("1.", 2), N(".5", 0), N("1e", 2), N("1E+", 3),
	N("1e-", 3), N("+1", 0), N("1.e5", 2), N("-a", 1), N("0x1", 1),
	N("1ee5", 2), N("- 1", 1), N("1.01.", 4), N("[1e]", 3),
	N("[-]", 2), N("[1.]", 3), N("1e1.5", 3), N("2.", 2),
	N("Infinity", 0), N("-Infinity", 1), N("NaN", 0), N("nan", 0),
	N("inf", 0), N("[NaN]", 1),
	/* Literals. */
	N("tru", 0), N("True", 0), N("nul", 0), N("nulll", 4),
	N("falsy", 0), N("t", 0), N("[true", 5), N("NULL", 0),
	/* §7 strings: termination and control characters. */
	N("\"abc", 4), N("\"", 1), N("\"\\\"", 3), N("\"\\", 2),
	N("\"a\x01\"", 2), N("\"\t\"", 1), N("\"\n\"", 1), N("\"\r\"", 1),
	N("\"\x1f\"", 1), N("\"\x00\"", 1), N("\"a\x00" "b\"", 2),
	/* Escapes. */
	N("\"\\a\"", 1), N("\"\\x41\"", 1), N("\"\\'\"", 1),
	N("\"\\U0041\"", 1), N("\"\\u12\"", 1), N("\"\\u12G4\"", 1),
	N("\"\\u\"", 1), N("\"\\u12", 1), N("\"\\ \"", 1),
	N("[\"\\u00\"]", 2), N("\"\\0\"", 1), N("\"\\\n\"", 1),
	/* Surrogate escapes: lone, reversed, or paired with a non-low. */
	N("\"\\uD800\"", 1), N("\"\\uDC00\"", 1), N("\"\\uDBFF\"", 1),
	N("\"\\uDC00\\uD800\"", 1), N("\"\\uD800\\u0041\"", 1),
	N("\"\\uD800\\uD800\"", 1), N("\"\\uD800x\"", 1),
	N("\"\\uD800\\n\"", 1), N("\"\\uD800\\u12\"", 7),
	N("\"\\uD800", 1), N("[\"a\\uD83D\"]", 3),
	N("\"\\uD834\\uDD1E", 13), N("\"\\uDFFF\\uDFFF\"", 1),
	/* §8.1 UTF-8: stray continuations, overlongs, surrogates, too big,
	 * truncated, bad continuations. */
	N("\"\x80\"", 1), N("\"\xbf\"", 1), N("\"\xc0\x80\"", 1),
	N("\"\xc1\xbf\"", 1), N("\"\xe0\x80\xaf\"", 1),
	N("\"\xe0\x9f\xbf\"", 1), N("\"\xf0\x8f\xbf\xbf\"", 1),
	N("\"\xed\xa0\x80\"", 1), N("\"\xed\xbf\xbf\"", 1),
	N("\"\xed\xa0\xbd\xed\xb8\x80\"", 1), N("\"\xf4\x90\x80\x80\"", 1),
	N("\"\xf5\x80\x80\x80\"", 1), N("\"\xf8\x88\x80\x80\x80\"", 1),
	N("\"\xff\"", 1), N("\"\xfe\"", 1), N("\"\xe2\x82\"", 1),
	N("\"\xe2\x82", 1), N("\"\xc3", 1), N("\"\xc3\x28\"", 1),
	N("\"\xf0\x9d\x84\"", 1), N("\"ab\xc3\"", 3),
	N("\"\xc3\xa9\xa9\"", 3), N("\"\xe2\x28\xa1\"", 1),
	/* Non-ASCII and other white space outside strings. */
	N("[\xc3\xa9]", 1), N("\xc3\xa9", 0), N("\f[]", 0), N("\v[]", 0),
	N("[\xc2\xa0]", 1), N("\x00", 0), N("[]\x00", 2),
	/* Anything after the value. */
	N("[1]x", 3), N("1 2", 2), N("[] []", 3), N("\"a\" \"b\"", 4),
	N("{} x", 3), N("truefalse", 4), N("0 0", 2), N("1,", 1),
};

/* i_: where RFC 8259 leaves the choice to the implementation. */
static const struct vec i_cases[] = {
	/* §8.1: a BOM MAY be ignored; a strict decoder refuses it. */
	I("\xef\xbb\xbf[]", 0),
	/* §9: range and precision are ours; the text is kept as is. */
	I("1e999", 1), I("-1e-999", 1), I("123456789012345678901234567890", 1),
	I("[-0]", 1),
	/* §8.2: noncharacters are characters; lone surrogates are refused. */
	I("\"\\uFFFE\"", 1), I("\"\xef\xbf\xbe\"", 1), I("\"\\uFDD0\"", 1),
	I("\"\\uDFFF\"", 0), I("\"\\uD800\"", 0),
	/* §4: duplicate names are accepted; json_find() takes the last. */
	I("{\"a\":1,\"a\":2}", 1),
	/* U+0000 and DEL: escaped NUL and a raw DEL are plain characters. */
	I("\"\\u0000\"", 1), I("\"\x7f\"", 1),
	/* "Modified UTF-8" NUL is an overlong: refused. */
	I("[\"\xc0\x80\"]", 0),
};

/* A copy of s[0..n) ending where an inaccessible page begins. */
static const uint8_t *
guard_copy(struct guard *g, const void *s, size_t n)
{
	size_t	pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t	body = (n + pg - 1) / pg * pg;

	if (body == 0)
		body = pg;
	g->maplen = body + pg;
	g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g->map == MAP_FAILED || mprotect(g->map + body, pg, PROT_NONE))
		abort();
	if (n > 0)
		memcpy(g->map + body - n, s, n);
	return g->map + body - n;
}

static void
guard_free(struct guard *g)
{
	munmap(g->map, g->maplen);
}

/*
 * The invariants json.h promises: next points past the subtree, walking
 * size children (key, value pairs for objects) lands on it, and every
 * token's text is inside the buffer with the right delimiters.
 */
static int
tree_ok(const struct json_doc *d)
{
	const struct json_tok	*t;
	uint32_t		 i, k, m, steps;
	int			 obj;

	if (d->ntok == 0 || d->tok[0].next != d->ntok)
		return 0;
	for (i = 0; i < d->ntok; i++) {
		t = &d->tok[i];
		if (t->next <= i || t->next > d->ntok ||
		    (size_t)t->start + t->len > d->len)
			return 0;
		switch (t->type) {
		case JSON_STRING:
			if (t->start == 0 || t->start + t->len >= d->len ||
			    d->buf[t->start - 1] != '"' ||
			    d->buf[t->start + t->len] != '"' ||
			    t->next != i + 1 || t->size != 0)
				return 0;
			break;
		case JSON_ARRAY:
		case JSON_OBJECT:
			obj = t->type == JSON_OBJECT;
			if (t->len < 2 || d->buf[t->start] != (obj ? '{' : '[') ||
			    d->buf[t->start + t->len - 1] != (obj ? '}' : ']'))
				return 0;
			steps = t->size * (obj ? 2 : 1);
			for (k = i + 1, m = 0; m < steps; m++) {
				if (k >= t->next)
					return 0;
				if (obj && m % 2 == 0 &&
				    d->tok[k].type != JSON_STRING)
					return 0;
				k = d->tok[k].next;
			}
			if (k != t->next)
				return 0;
			break;
		default:
			if (t->len == 0 || t->next != i + 1 || t->size != 0)
				return 0;
			break;
		}
	}
	return 1;
}

/*
 * Parse s[0..n) from an exactly sized malloc'd copy and from a guard-page
 * copy; the two must agree on everything.  Returns json_parse()'s result,
 * and the error offset in *off.
 */
static int
parse_both(const void *s, size_t n, unsigned depth, uint32_t maxtok,
    size_t *off)
{
	struct json_doc	 a, b;
	struct guard	 g;
	uint8_t		*copy;
	uint32_t	 i;
	int		 ra, rb;

	if ((copy = malloc(n ? n : 1)) == NULL)
		abort();
	if (n > 0)
		memcpy(copy, s, n);
	ra = json_parse(&a, copy, n, depth, maxtok);
	rb = json_parse(&b, guard_copy(&g, s, n), n, depth, maxtok);
	if (ra != rb || a.ntok != b.ntok ||
	    (ra != 0 && (a.err != b.err || a.err_offset != b.err_offset)))
		mismatches++;
	for (i = 0; ra == 0 && i < a.ntok && i < b.ntok; i++)
		if (a.tok[i].type != b.tok[i].type ||
		    a.tok[i].start != b.tok[i].start ||
		    a.tok[i].len != b.tok[i].len ||
		    a.tok[i].size != b.tok[i].size ||
		    a.tok[i].next != b.tok[i].next) {
			mismatches++;
			break;
		}
	if (ra == 0 && !tree_ok(&a))
		bad_trees++;
	/* Errors are short static strings, never a copy of the input. */
	if (ra != 0 && (a.err == NULL || strlen(a.err) > 40 ||
	    a.err_offset > n || a.ntok != 0 || a.tok != NULL))
		bad_trees++;
	*off = ra == 0 ? 0 : a.err_offset;
	json_doc_free(&a);
	json_doc_free(&b);
	guard_free(&g);
	free(copy);
	return ra;
}

/* Parse from a guard-page copy only (for the many prefixes). */
static int
parse_guard(const void *s, size_t n)
{
	struct json_doc	doc;
	struct guard	g;
	int		r;

	r = json_parse(&doc, guard_copy(&g, s, n), n, JSON_MAX_DEPTH,
	    JSON_MAX_TOKENS);
	json_doc_free(&doc);
	guard_free(&g);
	return r;
}

/*
 * Parse from an exactly sized heap copy only (for the exhaustive loops);
 * on success, unescape token 0 into out and its length into *len.
 */
static int
parse_exact(const void *s, size_t n, char *out, size_t cap, long *len)
{
	struct json_doc	 doc;
	uint8_t		*copy;
	int		 r;

	if ((copy = malloc(n ? n : 1)) == NULL)
		abort();
	memcpy(copy, s, n);
	r = json_parse(&doc, copy, n, 8, 8);
	if (r == 0)
		*len = json_tok_str(&doc, 0, out, cap);
	json_doc_free(&doc);
	free(copy);
	return r;
}

/*
 * An independent UTF-8 check: decode each sequence to its code point,
 * then refuse overlongs, surrogates and values past U+10FFFF.
 */
static int
ref_utf8(const uint8_t *s, size_t n)
{
	size_t		i = 0, k, len;
	uint32_t	cp, min;

	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if ((s[i] & 0xe0) == 0xc0) {
			len = 2;
			cp = s[i] & 0x1f;
			min = 0x80;
		} else if ((s[i] & 0xf0) == 0xe0) {
			len = 3;
			cp = s[i] & 0x0f;
			min = 0x800;
		} else if ((s[i] & 0xf8) == 0xf0) {
			len = 4;
			cp = s[i] & 0x07;
			min = 0x10000;
		} else
			return 0;
		if (n - i < len)
			return 0;
		for (k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

/* Parse a C string from an exactly sized heap copy, kept until doc_free. */
static int
doc_parse(struct json_doc *doc, const char *s)
{
	size_t	 n = strlen(s);
	uint8_t	*copy;

	if ((copy = malloc(n ? n : 1)) == NULL)
		abort();
	memcpy(copy, s, n);
	return json_parse(doc, copy, n, JSON_MAX_DEPTH, JSON_MAX_TOKENS);
}

static void
doc_free(struct json_doc *doc)
{
	free((void *)doc->buf);
	json_doc_free(doc);
}

static void
test_vectors(void)
{
	const struct vec	*v;
	size_t			 i, k, off, last, bad_off = 0, bad_res = 0;
	size_t			 bad_prefix = 0;
	size_t			 ny = sizeof(y_cases) / sizeof(y_cases[0]);
	size_t			 nn = sizeof(n_cases) / sizeof(n_cases[0]);
	size_t			 ni = sizeof(i_cases) / sizeof(i_cases[0]);
	const struct vec	*all[] = { y_cases, n_cases, i_cases };
	size_t			 count[] = { ny, nn, ni };
	int			 set, r, whole;
	char			 c;

	for (set = 0; set < 3; set++) {
		for (i = 0; i < count[set]; i++) {
			v = &all[set][i];
			r = parse_both(v->s, v->n, JSON_MAX_DEPTH,
			    JSON_MAX_TOKENS, &off);
			if ((r == 0) != v->ok) {
				bad_res++;
				fprintf(stderr, "wrong result (%d) for %s[%zu]\n",
				    r, set == 0 ? "y" : set == 1 ? "n" : "i", i);
			}
			if (v->off >= 0 && r != 0 && off != (size_t)v->off) {
				bad_off++;
				fprintf(stderr, "n[%zu]: offset %zu, not %ld\n",
				    i, off, v->off);
			}
			/*
			 * Every prefix, from the guard page.  A prefix of a
			 * document whose value is an array, object, string or
			 * literal is never a document.
			 */
			for (last = v->n; last > 0 &&
			    strchr(" \t\n\r", v->s[last - 1]) != NULL &&
			    v->s[last - 1] != '\0'; last--)
				;
			for (k = 0; k < v->n; k++)
				if (strchr(" \t\n\r", v->s[k]) == NULL ||
				    v->s[k] == '\0')
					break;
			c = k < v->n ? v->s[k] : 0;
			whole = c == '[' || c == '{' || c == '"' || c == 't' ||
			    c == 'f' || c == 'n';
			for (k = 0; k < v->n; k++) {
				r = parse_guard(v->s, k);
				if (v->ok && whole && k < last && r == 0)
					bad_prefix++;
			}
		}
	}
	check(bad_res == 0);
	check(bad_off == 0);
	check(bad_prefix == 0);
	printf("vectors: %zu y_, %zu n_, %zu i_\n", ny, nn, ni);
}

/* Each byte in each position, and UTF-8 against ref_utf8(). */
static void
test_bytes(void)
{
	uint8_t	 s[8];
	size_t	 off, bad = 0, body;
	int	 c, b1, b2, b3, r, want;
	char	 out[8];
	long	 len;
	static const uint8_t edge[] = { 0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
	    0xa0, 0xbf, 0xc0, 0xff };

	for (c = 0; c < 256; c++) {
		/* Alone: only a digit is a document. */
		s[0] = c;
		r = parse_both(s, 1, 8, 8, &off);
		if ((r == 0) != (c >= '0' && c <= '9'))
			bad++;
		/* In a string. */
		s[0] = s[2] = '"';
		s[1] = c;
		r = parse_both(s, 3, 8, 8, &off);
		if ((r == 0) != (c >= 0x20 && c < 0x80 && c != '"' &&
		    c != '\\'))
			bad++;
		/* After a backslash. */
		s[1] = '\\';
		s[2] = c;
		s[3] = '"';
		r = parse_both(s, 4, 8, 8, &off);
		if ((r == 0) != (c != 0 && strchr("\"\\/bfnrt", c) != NULL))
			bad++;
		/* As a hex digit of \u. */
		memcpy(s + 1, "\\u004", 5);
		s[6] = c;
		s[7] = '"';
		r = parse_both(s, 8, 8, 8, &off);
		if ((r == 0) != (c != 0 && strchr("0123456789abcdefABCDEF",
		    c) != NULL))
			bad++;
	}
	check(bad == 0);

	/*
	 * Two- and three-byte sequences exhaustively, four-byte ones with
	 * every lead and second byte and edge values after.  The string body
	 * avoids '"', '\\' and controls, which are tested above.
	 */
	bad = 0;
	for (b1 = 0x80; b1 < 0x100; b1++) {
		for (b2 = 0x20; b2 < 0x100; b2++) {
			if (b2 == '"' || b2 == '\\')
				continue;
			for (b3 = -1; b3 < 0x100; b3++) {
				if (b3 == '"' || b3 == '\\' ||
				    (b3 >= 0 && b3 < 0x20))
					continue;
				if (b3 >= 0 && (b1 & 0xf0) != 0xe0 &&
				    b3 != 0x41 && b3 != 0x80 && b3 != 0xbf)
					continue;
				s[0] = '"';
				s[1] = b1;
				s[2] = b2;
				body = 2;
				if (b3 >= 0)
					s[++body] = b3;
				s[body + 1] = '"';
				want = ref_utf8(s + 1, body);
				r = parse_exact(s, body + 2, out, sizeof(out),
				    &len);
				if ((r == 0) != want)
					bad++;
				if (r == 0 && (len != (long)body ||
				    memcmp(out, s + 1, body) != 0))
					bad++;
			}
		}
	}
	check(bad == 0);

	bad = 0;
	for (b1 = 0xf0; b1 < 0x100; b1++)
		for (b2 = 0; b2 < 0x100; b2++)
			for (b3 = 0; b3 < 100; b3++) {
				s[0] = '"';
				s[1] = b1;
				s[2] = b2;
				s[3] = edge[b3 % 10];
				s[4] = edge[b3 / 10];
				s[5] = '"';
				if (memchr(s + 2, '"', 3) ||
				    memchr(s + 2, '\\', 3) ||
				    s[2] < 0x20 || s[3] < 0x20 || s[4] < 0x20)
					continue;
				want = ref_utf8(s + 1, 4);
				r = parse_exact(s, 6, out, sizeof(out), &len);
				if ((r == 0) != want)
					bad++;
			}
	check(bad == 0);
}

static void
test_tree(void)
{
	static const char	*s = "{\"a\":[1,{\"b\":null}],\"c\":\"x\"}";
	static const uint32_t	 next[] = { 9, 2, 7, 4, 7, 6, 7, 8, 9 };
	static const uint8_t	 type[] = { JSON_OBJECT, JSON_STRING,
	    JSON_ARRAY, JSON_NUMBER, JSON_OBJECT, JSON_STRING, JSON_NULL,
	    JSON_STRING, JSON_STRING };
	struct json_doc		 doc;
	int			 i, ok;

	check(doc_parse(&doc, s) == 0);
	check(doc.ntok == 9);
	for (ok = 1, i = 0; i < 9 && doc.ntok == 9; i++)
		if (doc.tok[i].type != type[i] || doc.tok[i].next != next[i])
			ok = 0;
	check(ok);
	check(doc.tok[0].size == 2 && doc.tok[2].size == 2 &&
	    doc.tok[4].size == 1);
	check(doc.tok[0].start == 0 && doc.tok[0].len == strlen(s));
	check(doc.tok[1].start == 2 && doc.tok[1].len == 1);
	check(doc.tok[2].start == 5 && doc.tok[2].len == 14);
	check(memcmp(json_tok_raw(&doc, 2), "[1,{\"b\":null}]", 14) == 0);
	check(doc.tok[6].len == 4 &&
	    memcmp(json_tok_raw(&doc, 6), "null", 4) == 0);
	check(doc.tok[8].len == 1 && *json_tok_raw(&doc, 8) == 'x');
	doc_free(&doc);

	/* White space around the top-level value is not part of it. */
	check(doc_parse(&doc, " \n-12.5e3\t") == 0);
	check(doc.ntok == 1 && doc.tok[0].type == JSON_NUMBER &&
	    doc.tok[0].start == 2 && doc.tok[0].len == 7);
	doc_free(&doc);
	check(doc_parse(&doc, " [ ] ") == 0);
	check(doc.tok[0].start == 1 && doc.tok[0].len == 3 &&
	    doc.tok[0].size == 0);
	doc_free(&doc);

	/* A failed document has no tokens for an accessor to trip over. */
	check(doc_parse(&doc, "{\"a\":[1,2,") == -1);
	check(doc.ntok == 0 && json_find(&doc, 0, "a") == -1);
	check(strcmp(doc.err, "unexpected end of input") == 0);
	doc_free(&doc);
	json_doc_free(&doc);		/* twice is fine */
	memset(&doc, 0, sizeof(doc));
	json_doc_free(&doc);		/* and so is a zeroed doc */
	json_doc_free(NULL);
}

static void
test_find(void)
{
	struct json_doc	doc;

	check(doc_parse(&doc, "{\"a\":1,\"b\":{\"x\":2},\"c\":[3]}") == 0);
	check(json_find(&doc, 0, "a") == 2);
	check(json_find(&doc, 0, "b") == 4);
	check(json_find(&doc, 0, "c") == 8);
	check(json_find(&doc, 0, "x") == -1);	/* not searched deeper */
	check(json_find(&doc, 4, "x") == 6);
	check(json_find(&doc, 0, "") == -1);
	check(json_find(&doc, 0, "aa") == -1);
	check(json_find(&doc, 8, "a") == -1);	/* an array */
	check(json_find(&doc, 2, "a") == -1);	/* a number */
	check(json_find(&doc, -1, "a") == -1);
	check(json_find(&doc, 10, "a") == -1);
	check(json_find(&doc, 1000, "a") == -1);
	doc_free(&doc);

	/* Keys compare after unescaping; the last duplicate wins. */
	check(doc_parse(&doc, "{\"a\\u0062\":1,\"\\u00e9\":2,\"\\\"\":3,"
	    "\"a\":4,\"a\":5,\"\\ud83d\\ude00\":6,\"a\\u0000b\":7,\"\":8}") == 0);
	check(json_find(&doc, 0, "ab") == 2);
	check(json_find(&doc, 0, "\xc3\xa9") == 4);
	check(json_find(&doc, 0, "\"") == 6);
	check(json_find(&doc, 0, "a") == 10);
	check(json_find(&doc, 0, "\xf0\x9f\x98\x80") == 12);
	check(json_find(&doc, 0, "") == 16);
	check(json_find(&doc, 0, "a\\u0062") == -1);
	/* A decoded NUL ends no C string: "a\u0000b" is neither "a" nor "ab". */
	check(json_find(&doc, 0, "ab") == 2);
	check(json_tok_eq(&doc, 13, "a") == 0);
	check(json_tok_eq(&doc, 1, "ab") == 1);
	check(json_tok_eq(&doc, 1, "a") == 0);
	check(json_tok_eq(&doc, 1, "abc") == 0);
	check(json_tok_eq(&doc, 2, "1") == 0);	/* not a string */
	check(json_tok_eq(&doc, -1, "") == 0);
	check(json_tok_eq(&doc, 99, "") == 0);
	doc_free(&doc);

	check(doc_parse(&doc, "{}") == 0);
	check(json_find(&doc, 0, "a") == -1);
	doc_free(&doc);
}

static void
test_unescape(void)
{
	static const struct {
		const char	*json;
		const char	*want;
		size_t		 n;
	} t[] = {
		{ "\"\"", "", 0 },
		{ "\"abc\"", "abc", 3 },
		{ "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8 },
		{ "\"\\u0000\"", "\0", 1 },
		{ "\"\\u0041\\u007f\"", "A\x7f", 2 },
		{ "\"\\u0080\"", "\xc2\x80", 2 },
		{ "\"\\u07FF\"", "\xdf\xbf", 2 },
		{ "\"\\u0800\"", "\xe0\xa0\x80", 3 },
		{ "\"\\uD7FF\"", "\xed\x9f\xbf", 3 },
		{ "\"\\uE000\"", "\xee\x80\x80", 3 },
		{ "\"\\uffff\"", "\xef\xbf\xbf", 3 },
		{ "\"\\uD800\\uDC00\"", "\xf0\x90\x80\x80", 4 },
		{ "\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4 },
		{ "\"\\uD834\\uDD1E\"", "\xf0\x9d\x84\x9e", 4 },
		{ "\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4 },
		{ "\"x\\uD83D\\uDE00y\\u00e9\xc3\xa9\"",
		    "x\xf0\x9f\x98\x80y\xc3\xa9\xc3\xa9", 10 },
		{ "\"\xf0\x9f\x98\x80\"", "\xf0\x9f\x98\x80", 4 },
	};
	struct json_doc	doc;
	char		out[64];
	size_t		i, bad = 0;
	long		n;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (doc_parse(&doc, t[i].json) != 0) {
			bad++;
			continue;
		}
		n = json_tok_str(&doc, 0, out, sizeof(out));
		if (n != (long)t[i].n || memcmp(out, t[i].want, t[i].n) != 0)
			bad++;
		/* An exact fit works, one byte less does not. */
		if (json_tok_str(&doc, 0, out, t[i].n) != (long)t[i].n)
			bad++;
		if (t[i].n > 0 && json_tok_str(&doc, 0, out, t[i].n - 1) != -1)
			bad++;
		doc_free(&doc);
	}
	check(bad == 0);

	check(doc_parse(&doc, "[\"a\",1,null]") == 0);
	check(json_tok_str(&doc, 1, out, sizeof(out)) == 1 && out[0] == 'a');
	check(json_tok_str(&doc, 0, out, sizeof(out)) == -1);
	check(json_tok_str(&doc, 2, out, sizeof(out)) == -1);
	check(json_tok_str(&doc, 3, out, sizeof(out)) == -1);
	check(json_tok_str(&doc, 4, out, sizeof(out)) == -1);
	check(json_tok_str(&doc, -1, out, sizeof(out)) == -1);
	check(json_tok_str(&doc, 1, NULL, 0) == -1);
	doc_free(&doc);
	check(doc_parse(&doc, "\"\"") == 0);
	check(json_tok_str(&doc, 0, NULL, 0) == 0);
	doc_free(&doc);
}

static void
test_int(void)
{
	static const struct {
		const char	*s;
		int		 ok;
		int64_t		 v;
	} t[] = {
		{ "0", 1, 0 }, { "-0", 1, 0 }, { "1", 1, 1 }, { "-1", 1, -1 },
		{ "42", 1, 42 }, { "1000000", 1, 1000000 },
		{ "9223372036854775807", 1, INT64_MAX },
		{ "9223372036854775806", 1, INT64_MAX - 1 },
		{ "-9223372036854775808", 1, INT64_MIN },
		{ "-9223372036854775807", 1, INT64_MIN + 1 },
		{ "9223372036854775808", 0, 0 },
		{ "-9223372036854775809", 0, 0 },
		{ "9223372036854775810", 0, 0 },
		{ "10000000000000000000", 0, 0 },
		{ "18446744073709551615", 0, 0 },
		{ "18446744073709551616", 0, 0 },
		{ "92233720368547758070", 0, 0 },
		{ "-92233720368547758080", 0, 0 },
		{ "99999999999999999999999", 0, 0 },
		{ "1.0", 0, 0 }, { "1e2", 0, 0 }, { "1E2", 0, 0 },
		{ "-0.0", 0, 0 }, { "0e0", 0, 0 }, { "\"1\"", 0, 0 },
		{ "true", 0, 0 }, { "null", 0, 0 }, { "[1]", 0, 0 },
	};
	struct json_doc	doc;
	int64_t		v;
	size_t		i, bad = 0;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (doc_parse(&doc, t[i].s) != 0) {
			bad++;
			continue;
		}
		v = 12345;
		if ((json_tok_int(&doc, 0, &v) == 0) != t[i].ok ||
		    (t[i].ok && v != t[i].v))
			bad++;
		doc_free(&doc);
	}
	check(bad == 0);
	check(doc_parse(&doc, "[7]") == 0);
	check(json_tok_int(&doc, 1, &v) == 0 && v == 7);
	check(json_tok_int(&doc, 2, &v) == -1);
	check(json_tok_int(&doc, -1, &v) == -1);
	doc_free(&doc);
}

static void
test_limits(void)
{
	static const unsigned	 depths[] = { 1, 2, 3, 17, JSON_MAX_DEPTH, 1000 };
	struct json_buf		 b = { 0 };
	struct json_doc		 doc;
	size_t			 off, i, n;
	unsigned		 d;
	char			*s;
	uint8_t			 one = '1';

	/* Depth: N levels pass with max_depth N, N + 1 levels do not. */
	check(parse_both("1", 1, 0, 1, &off) == 0);
	check(parse_both("[]", 2, 0, 8, &off) == -1 && off == 0);
	check(parse_both("{}", 2, 0, 8, &off) == -1 && off == 0);
	check(parse_both("[]", 2, 1, 8, &off) == 0);
	for (i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
		d = depths[i];
		for (n = 0; n <= d; n++)
			json_put_raw(&b, "[", 1);
		for (n = 0; n <= d; n++)
			json_put_raw(&b, "]", 1);
		/* d + 1 levels */
		check(parse_both(b.p, b.len, d, UINT32_MAX, &off) == -1 &&
		    off == d);
		check(parse_both(b.p, b.len, d + 1, UINT32_MAX, &off) == 0);
		/* d levels */
		check(parse_both(b.p + 1, b.len - 2, d, UINT32_MAX, &off) == 0);
		b.len = 0;

		/* The same with objects: {"a":{"a":...}} */
		for (n = 0; n <= d; n++)
			json_put_cstr(&b, "{\"a\":");
		json_put_cstr(&b, "1");
		for (n = 0; n <= d; n++)
			json_put_cstr(&b, "}");
		check(parse_both(b.p, b.len, d, UINT32_MAX, &off) == -1 &&
		    off == 5 * d);
		check(parse_both(b.p, b.len, d + 1, UINT32_MAX, &off) == 0);
		b.len = 0;
	}

	/*
	 * No recursion: a million levels, when allowed, take no stack; and an
	 * unclosed deep document stops at the limit.
	 */
	n = 1000000;
	s = malloc(2 * n);
	memset(s, '[', n);
	memset(s + n, ']', n);
	check(parse_both(s, 2 * n, n, n, &off) == 0);
	check(parse_both(s, 2 * n, n - 1, n, &off) == -1 && off == n - 1);
	check(parse_both(s, n, JSON_MAX_DEPTH, JSON_MAX_TOKENS, &off) == -1 &&
	    off == JSON_MAX_DEPTH);
	free(s);

	/* Tokens: N pass with max_tokens N, N + 1 do not. */
	check(parse_both("1", 1, 8, 0, &off) == -1 && off == 0);
	check(parse_both("1", 1, 8, 1, &off) == 0);
	check(parse_both("[]", 2, 8, 1, &off) == 0);
	check(parse_both("[1]", 3, 8, 1, &off) == -1 && off == 1);
	check(parse_both("[1]", 3, 8, 2, &off) == 0);
	check(parse_both("{\"a\":1}", 7, 8, 2, &off) == -1 && off == 5);
	check(parse_both("{\"a\":1}", 7, 8, 3, &off) == 0);
	check(parse_both("{\"a\":1}", 7, 8, 1, &off) == -1 && off == 1);
	check(parse_both("[\"x\"]", 5, 8, 1, &off) == -1 && off == 1);
	check(parse_both("[[]]", 4, 8, 1, &off) == -1 && off == 1);
	check(parse_both("[[]]", 4, 8, 2, &off) == 0);
	check(parse_both("{\"a\":{}}", 8, 8, 2, &off) == -1 && off == 5);
	/* Across the token array's reallocations. */
	for (n = 1; n < 100000; n = n * 3 + 1) {
		json_put_raw(&b, "[", 1);
		for (i = 0; i < n; i++)
			json_put_cstr(&b, i ? ",0" : "0");
		json_put_raw(&b, "]", 1);
		check(parse_both(b.p, b.len, 8, n + 1, &off) == 0);
		check(parse_both(b.p, b.len, 8, n, &off) == -1 &&
		    off == b.len - 2);
		b.len = 0;
	}
	json_buf_free(&b);

	/* Too large for 32-bit offsets: refused before reading a byte. */
	if (sizeof(size_t) > 4) {
		check(json_parse(&doc, &one, (size_t)UINT32_MAX + 1, 8, 8) ==
		    -1 && doc.err_offset == 0);
		json_doc_free(&doc);
	}
}

static int
buf_is(const struct json_buf *b, const char *s)
{
	return b->len == strlen(s) && memcmp(b->p, s, b->len) == 0;
}

static void
test_put_str(void)
{
	static const char *const short_esc[0x20] = {
		['\b'] = "\\b", ['\t'] = "\\t", ['\n'] = "\\n",
		['\f'] = "\\f", ['\r'] = "\\r"
	};
	struct json_buf	b = { 0 };
	struct json_doc	doc;
	char		want[16], out[8];
	size_t		bad = 0;
	int		c;
	uint8_t		ch;

	json_put_str(&b, "", 0);
	check(buf_is(&b, "\"\""));
	b.len = 0;
	json_put_str(&b, NULL, 0);
	check(buf_is(&b, "\"\""));
	b.len = 0;
	json_put_str(&b, "a\"b\\c/d\n\x01\x1f\x7f", 11);
	check(buf_is(&b, "\"a\\\"b\\\\c/d\\n\\u0001\\u001f\x7f\""));
	b.len = 0;
	json_put_str(&b, "x\0y", 3);
	check(buf_is(&b, "\"x\\u0000y\""));
	b.len = 0;
	json_put_str(&b, "\xc3\xa9\xf0\x9f\x98\x80", 6);
	check(buf_is(&b, "\"\xc3\xa9\xf0\x9f\x98\x80\""));
	b.len = 0;

	/* Every ASCII byte: the expected escape, and it decodes back. */
	for (c = 0; c < 0x80; c++) {
		ch = c;
		json_put_str(&b, &ch, 1);
		if (c == '"' || c == '\\')
			snprintf(want, sizeof(want), "\"\\%c\"", c);
		else if (c < 0x20 && short_esc[c] != NULL)
			snprintf(want, sizeof(want), "\"%s\"", short_esc[c]);
		else if (c < 0x20)
			snprintf(want, sizeof(want), "\"\\u%04x\"", c);
		else
			snprintf(want, sizeof(want), "\"%c\"", c);
		if (!buf_is(&b, want))
			bad++;
		if (json_parse(&doc, b.p, b.len, 1, 1) != 0 ||
		    json_tok_str(&doc, 0, out, sizeof(out)) != 1 ||
		    (uint8_t)out[0] != ch)
			bad++;
		json_doc_free(&doc);
		b.len = 0;
	}
	check(bad == 0);

	json_put_cstr(&b, "{\"k\":");
	json_put_str(&b, "v", 1);
	json_put_raw(&b, "}", 1);
	json_put_raw(&b, NULL, 0);
	check(buf_is(&b, "{\"k\":\"v\"}") && !b.oom);
	json_buf_free(&b);
	check(b.p == NULL && b.len == 0 && b.cap == 0);
	json_buf_free(NULL);
}

static void
test_put_num(void)
{
	static const struct {
		double		 v;
		const char	*want;
	} d[] = {
		{ 0.0, "0" }, { -0.0, "-0" }, { 1.0, "1" }, { -1.0, "-1" },
		{ 0.1, "0.1" }, { 0.3, "0.3" }, { 1.5, "1.5" }, { 100, "100" },
		{ 123456789, "123456789" }, { 1e14, "100000000000000" },
		{ 1e15, "1e+15" }, { 1e20, "1e+20" }, { 1e-7, "1e-07" },
		{ 0.0001, "0.0001" }, { 1.0 / 3, "0.3333333333333333" },
		{ 2.0 / 3, "0.6666666666666666" }, { 0.1 + 0.2, "0.30000000000000004" },
		{ 9007199254740992.0, "9007199254740992" },
		{ 9007199254740993.0, "9007199254740992" },
		{ 5e-324, "5e-324" }, { -5e-324, "-5e-324" },
		{ 1e-310, "1e-310" },
		{ DBL_MAX, "1.7976931348623157e+308" },
		{ DBL_MIN, "2.2250738585072014e-308" },
		{ NAN, "null" }, { INFINITY, "null" }, { -INFINITY, "null" },
	};
	static const int64_t	 iv[] = { 0, 1, -1, 42, INT64_MAX, INT64_MIN,
	    INT64_MAX - 1, INT64_MIN + 1, 1000000000000 };
	struct json_buf		 b = { 0 };
	struct json_doc		 doc;
	char			 want[32];
	size_t			 i, bad = 0;
	int64_t			 v;

	for (i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
		json_put_double(&b, d[i].v);
		if (!buf_is(&b, d[i].want)) {
			bad++;
			fprintf(stderr, "put_double: %.*s, not %s\n",
			    (int)b.len, b.p, d[i].want);
		}
		if (json_parse(&doc, b.p, b.len, 0, 1) != 0 ||
		    (doc.tok[0].type != JSON_NUMBER && isfinite(d[i].v)))
			bad++;
		json_doc_free(&doc);
		b.len = 0;
	}
	check(bad == 0);

	bad = 0;
	for (i = 0; i < sizeof(iv) / sizeof(iv[0]); i++) {
		json_put_int(&b, iv[i]);
		snprintf(want, sizeof(want), "%" PRId64, iv[i]);
		if (!buf_is(&b, want) ||
		    json_parse(&doc, b.p, b.len, 0, 1) != 0 ||
		    json_tok_int(&doc, 0, &v) != 0 || v != iv[i])
			bad++;
		json_doc_free(&doc);
		b.len = 0;
	}
	check(bad == 0);
	json_buf_free(&b);
}

/*
 * An allocation failure is sticky.  A buffer that claims to be nearly
 * SIZE_MAX long cannot grow, so the size check fails before realloc().
 */
static void
test_oom(void)
{
	struct json_buf	b = { 0 };

	b.len = b.cap = SIZE_MAX - 2;
	json_put_raw(&b, "abcd", 4);
	check(b.oom == 1 && b.len == SIZE_MAX - 2 && b.p == NULL);
	b.len = b.cap = 0;
	json_put_str(&b, "x", 1);
	json_put_int(&b, 1);
	json_put_double(&b, 1.5);
	json_put_cstr(&b, "y");
	check(b.oom == 1 && b.len == 0 && b.p == NULL);
	json_buf_free(&b);
	check(b.oom == 0);
}

/* splitmix64, seeded for reproducible runs. */
static uint64_t	rng = 0x5eed;

static uint64_t
rnd(void)
{
	uint64_t	z = (rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Random valid UTF-8, heavy on the bytes that need escaping. */
static void
gen_string(uint8_t *s, size_t *np)
{
	size_t		n = 0, units = rnd() % 12;
	uint32_t	cp;

	while (units-- > 0) {
		switch (rnd() % 6) {
		case 0:
			cp = rnd() % 0x20;
			break;
		case 1:
			cp = "\"\\/"[rnd() % 3];
			break;
		case 2:
			cp = 0x80 + rnd() % 0x780;
			break;
		case 3:
			do
				cp = 0x800 + rnd() % 0xf800;
			while (cp >= 0xd800 && cp <= 0xdfff);
			break;
		case 4:
			cp = 0x10000 + rnd() % 0x100000;
			break;
		default:
			cp = 0x20 + rnd() % 0x60;
			break;
		}
		if (cp < 0x80)
			s[n++] = cp;
		else if (cp < 0x800) {
			s[n++] = 0xc0 | cp >> 6;
			s[n++] = 0x80 | (cp & 0x3f);
		} else if (cp < 0x10000) {
			s[n++] = 0xe0 | cp >> 12;
			s[n++] = 0x80 | (cp >> 6 & 0x3f);
			s[n++] = 0x80 | (cp & 0x3f);
		} else {
			s[n++] = 0xf0 | cp >> 18;
			s[n++] = 0x80 | (cp >> 12 & 0x3f);
			s[n++] = 0x80 | (cp >> 6 & 0x3f);
			s[n++] = 0x80 | (cp & 0x3f);
		}
	}
	*np = n;
}

static void
gen_value(struct json_buf *b, int depth)
{
	uint8_t		s[64];
	size_t		n;
	uint64_t	bits;
	double		d;
	int		i, count;

	switch (rnd() % (depth < 6 ? 9 : 6)) {
	case 0:
		json_put_cstr(b, "null");
		break;
	case 1:
		json_put_cstr(b, rnd() % 2 ? "true" : "false");
		break;
	case 2:
		json_put_int(b, (int64_t)(rnd() >> rnd() % 64));
		break;
	case 3:
		bits = rnd();
		memcpy(&d, &bits, sizeof(d));
		json_put_double(b, rnd() % 2 ? d : (double)(rnd() % 1000) / 8);
		break;
	case 4:
	case 5:
		gen_string(s, &n);
		json_put_str(b, s, n);
		break;
	case 6:
	case 7:
		json_put_raw(b, "[", 1);
		for (count = rnd() % 5, i = 0; i < count; i++) {
			if (i)
				json_put_raw(b, ",", 1);
			gen_value(b, depth + 1);
		}
		json_put_raw(b, "]", 1);
		break;
	default:
		json_put_raw(b, "{", 1);
		for (count = rnd() % 5, i = 0; i < count; i++) {
			if (i)
				json_put_raw(b, ",", 1);
			gen_string(s, &n);
			json_put_str(b, s, n);
			json_put_raw(b, ":", 1);
			gen_value(b, depth + 1);
		}
		json_put_raw(b, "}", 1);
		break;
	}
}

/* Encode token i again; returns the index after its subtree. */
static uint32_t
reencode(const struct json_doc *d, uint32_t i, struct json_buf *b)
{
	const struct json_tok	*t = &d->tok[i];
	char			 s[64];
	uint32_t		 k, m;
	long			 n;
	int			 obj = t->type == JSON_OBJECT;

	switch (t->type) {
	case JSON_STRING:
		if ((n = json_tok_str(d, i, s, sizeof(s))) < 0)
			abort();
		json_put_str(b, s, n);
		return i + 1;
	case JSON_ARRAY:
	case JSON_OBJECT:
		json_put_raw(b, obj ? "{" : "[", 1);
		for (k = i + 1, m = 0; m < t->size; m++) {
			if (m)
				json_put_raw(b, ",", 1);
			if (obj) {
				k = reencode(d, k, b);
				json_put_raw(b, ":", 1);
			}
			k = reencode(d, k, b);
		}
		json_put_raw(b, obj ? "}" : "]", 1);
		if (k != t->next)
			abort();
		return k;
	default:
		json_put_raw(b, json_tok_raw(d, i), t->len);
		return i + 1;
	}
}

/* Random documents: encode, decode, encode from the tokens: same bytes. */
static void
test_random_docs(void)
{
	struct json_buf	a = { 0 }, b = { 0 };
	struct json_doc	doc;
	size_t		bad = 0, off;
	int		i;

	for (i = 0; i < 20000; i++) {
		a.len = b.len = 0;
		gen_value(&a, 0);
		if (parse_both(a.p, a.len, JSON_MAX_DEPTH, JSON_MAX_TOKENS,
		    &off) != 0 ||
		    json_parse(&doc, a.p, a.len, JSON_MAX_DEPTH,
		    JSON_MAX_TOKENS) != 0) {
			bad++;
			continue;
		}
		if (reencode(&doc, 0, &b) != doc.ntok || a.len != b.len ||
		    memcmp(a.p, b.p, a.len) != 0 || a.oom || b.oom)
			bad++;
		json_doc_free(&doc);
	}
	check(bad == 0);
	check(mismatches == 0);
	check(bad_trees == 0);
	json_buf_free(&a);
	json_buf_free(&b);
}

/*
 * The digits json_put_double() chose: the mantissa's, without sign,
 * point, leading or trailing zeros.
 */
static void
digits(const char *s, size_t n, char *out)
{
	size_t	i, k = 0;

	for (i = 0; i < n && s[i] != 'e'; i++)
		if (s[i] >= '0' && s[i] <= '9' && (k > 0 || s[i] != '0'))
			out[k++] = s[i];
	while (k > 0 && out[k - 1] == '0')
		k--;
	out[k] = '\0';
}

/* 10^e without libm (the Makefile links none). */
static double
p10(int e)
{
	char	s[16];

	snprintf(s, sizeof(s), "1e%d", e);
	return strtod(s, NULL);
}

/*
 * Random doubles - any bit pattern, subnormals, short decimals - read
 * back bit for bit, are JSON numbers, and have as few digits as the first
 * of %.1g ... %.17g that reads back.
 */
static void
test_random_doubles(void)
{
	struct json_buf	b = { 0 };
	struct json_doc	doc;
	char		tmp[40], got[40], want[40];
	size_t		bad_trip = 0, bad_json = 0, bad_short = 0;
	uint64_t	bits, back;
	double		v, w;
	int		i, prec;

	for (i = 0; i < 300000; i++) {
		bits = rnd();
		switch (i % 4) {
		case 0:
			memcpy(&v, &bits, sizeof(v));
			break;
		case 1:		/* subnormal */
			bits &= 0x800fffffffffffffULL;
			memcpy(&v, &bits, sizeof(v));
			break;
		case 2:		/* a short decimal */
			v = (double)(int64_t)(bits >> 40) / p10(rnd() % 12);
			break;
		default:
			v = (double)(int64_t)bits * p10((int)(rnd() % 600) - 300);
			break;
		}
		if (!isfinite(v))
			continue;
		b.len = 0;
		json_put_double(&b, v);
		if (b.len >= sizeof(tmp)) {
			bad_json++;
			continue;
		}
		memcpy(tmp, b.p, b.len);
		tmp[b.len] = '\0';
		w = strtod(tmp, NULL);
		memcpy(&back, &w, sizeof(back));
		memcpy(&bits, &v, sizeof(bits));
		if (back != bits)
			bad_trip++;
		if (json_parse(&doc, b.p, b.len, 0, 1) != 0 ||
		    doc.tok[0].type != JSON_NUMBER)
			bad_json++;
		json_doc_free(&doc);
		if (i % 10 != 0)
			continue;
		for (prec = 1; prec <= 17; prec++) {
			snprintf(want, sizeof(want), "%.*g", prec, v);
			if (strtod(want, NULL) == v)
				break;
		}
		digits(want, strlen(want), want);
		digits(tmp, b.len, got);
		if (strcmp(got, want) != 0)
			bad_short++;
	}
	check(bad_trip == 0);
	check(bad_json == 0);
	check(bad_short == 0);
	json_buf_free(&b);
}

int
main(void)
{
	test_vectors();
	test_bytes();
	test_tree();
	test_find();
	test_unescape();
	test_int();
	test_limits();
	test_put_str();
	test_put_num();
	test_oom();
	test_random_docs();
	test_random_doubles();
	check(mismatches == 0);
	check(bad_trees == 0);
	return t_done();
}
