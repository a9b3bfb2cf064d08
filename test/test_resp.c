/*
 * test_resp.c - resp.c alone: the RESP2 reply parser, the command
 * encoder and the redis:// URL.
 *
 * Every reply stream is parsed whole, byte by byte and split at every
 * point (at every pair of points when short).  Before each call the bytes
 * of the reply in progress are copied so that they end where a PROT_NONE
 * page begins, at an address that changes from call to call: a read past
 * the buffer faults, and a parser that kept a pointer across calls reads
 * stale bytes.  The replies, rendered as text, and the error must be the
 * same however the input was cut.  Each limit is tried at N and N+1.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "resp.h"
#include "t.h"

#define ARENA	(1024 * 1024)	/* bytes in front of the guard page */
#define OUTMAX	(1 << 20)	/* rendered replies of one stream */

/* What one parse of a stream gave. */
struct run {
	char	*txt;		/* replies rendered, one per line */
	size_t	 len, cap;
	int	 nrep;
	int	 err;		/* RESP_E_* of RESP_ERROR, 0 if none */
	int	 bad;		/* a broken invariant */
};

static uint8_t	*arena_end;

static void
arena_init(void)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	uint8_t *m;

	m = mmap(NULL, ARENA + 2 * pg, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || mprotect(m + ARENA + pg, pg, PROT_NONE) == -1)
		abort();
	arena_end = m + ARENA + pg;
}

/* A copy of s[0..n) whose last byte is the last before the guard page.
 * Its address moves as n grows; render() checks every string against
 * the buffer of the call that completed the reply. */
static uint8_t *
at_end(const void *s, size_t n)
{
	if (n > ARENA)
		abort();
	if (n > 0)
		memmove(arena_end - n, s, n);
	return arena_end - n;
}

/* ==== Rendering ====================================================== */

static void
out(struct run *r, const char *s, size_t n)
{
	while (r->len + n + 1 > r->cap) {
		r->cap = r->cap ? 2 * r->cap : 256;
		if ((r->txt = realloc(r->txt, r->cap)) == NULL)
			abort();
	}
	memcpy(r->txt + r->len, s, n);
	r->len += n;
	r->txt[r->len] = '\0';
}

static void
outs(struct run *r, const char *s)
{
	out(r, s, strlen(s));
}

static void
out_bytes(struct run *r, const uint8_t *p, size_t n)
{
	char h[8];

	for (size_t i = 0; i < n; i++)
		if (p[i] >= ' ' && p[i] <= '~' && p[i] != '\\')
			out(r, (const char *)p + i, 1);
		else {
			snprintf(h, sizeof h, "\\x%02x", p[i]);
			outs(r, h);
		}
}

/*
 * "+text" "-text" ":n" "$len:bytes" "$nil" "*n[a,b]" "*nil".  Checks the
 * token invariants on the way: sizes add up, strings lie in buf.  Returns
 * the token after t's subtree.
 */
static const struct resp_tok *
render(struct run *r, const struct resp_tok *t, const struct resp_tok *end,
    const uint8_t *buf, size_t len)
{
	char num[64];
	const struct resp_tok *c;

	if (t >= end) {
		r->bad = 1;
		return end;
	}
	switch (t->type) {
	case RESP_T_STRING:
	case RESP_T_ERROR:
	case RESP_T_BULK:
		if (t->size != 1)
			r->bad = 1;
		if (t->null) {
			if (t->type != RESP_T_BULK || t->p != NULL)
				r->bad = 1;
			outs(r, "$nil");
			return t + 1;
		}
		if (t->n < 0 || t->p < buf || t->p + t->n > buf + len)
			r->bad = 1;
		snprintf(num, sizeof num, "%c", t->type);
		outs(r, num);
		if (t->type == RESP_T_BULK) {
			snprintf(num, sizeof num, "%lld:", (long long)t->n);
			outs(r, num);
		}
		if (!r->bad)
			out_bytes(r, t->p, t->n);
		return t + 1;
	case RESP_T_INT:
		if (t->size != 1 || t->p != NULL)
			r->bad = 1;
		snprintf(num, sizeof num, ":%lld", (long long)t->n);
		outs(r, num);
		return t + 1;
	case RESP_T_ARRAY:
		if (t->null) {
			if (t->size != 1 || t->n != 0)
				r->bad = 1;
			outs(r, "*nil");
			return t + 1;
		}
		snprintf(num, sizeof num, "*%lld[", (long long)t->n);
		outs(r, num);
		c = t + 1;
		for (int64_t i = 0; i < t->n && !r->bad; i++) {
			if (i > 0)
				outs(r, ",");
			if (i < 8 && resp_elem(t, i) != c)	/* O(i) */
				r->bad = 1;
			c = render(r, c, end, buf, len);
		}
		outs(r, "]");
		if (c != resp_next(t) || resp_elem(t, t->n) != NULL)
			r->bad = 1;
		return c;
	}
	r->bad = 1;
	return end;
}

/* ==== The parse harness ============================================== */

/*
 * Parse in[0..n), delivered in pieces ending at cuts[0..ncut) (then the
 * rest), as a reader would: each call sees the reply in progress from its
 * first byte to what has arrived, copied to the guard page.
 */
static void
parse_cut(struct run *r, const struct resp_limits *lim, const uint8_t *in,
    size_t n, const size_t *cuts, int ncut)
{
	struct resp_parser p;
	size_t start = 0, have;

	memset(r, 0, sizeof *r);
	outs(r, "");
	resp_parser_init(&p, lim);
	for (int k = 0; k <= ncut; k++) {
		have = k < ncut ? cuts[k] : n;
		if (have < start && k < ncut)
			continue;
		for (;;) {
			const uint8_t *b = at_end(in + start, have - start);
			long m = resp_parse(&p, b, have - start);

			if (m == RESP_AGAIN)
				break;
			if (m == RESP_ERROR) {
				r->err = p.err;
				if (r->err == RESP_E_NONE)
					r->bad = 1;
				/* Sticky. */
				if (resp_parse(&p, b, have - start) !=
				    RESP_ERROR)
					r->bad = 1;
				goto done;
			}
			if (m <= 0 || (size_t)m > have - start || p.ntok == 0) {
				r->bad = 1;
				goto done;
			}
			if (render(r, p.tok, p.tok + p.ntok, b, m) !=
			    p.tok + p.ntok)
				r->bad = 1;
			outs(r, "\n");
			r->nrep++;
			start += m;
		}
	}
done:
	resp_parser_free(&p);
}

static void
run_free(struct run *r)
{
	free(r->txt);
}

static int
same(const struct run *a, const struct run *b)
{
	return !a->bad && !b->bad && a->err == b->err && a->nrep == b->nrep &&
	    strcmp(a->txt, b->txt) == 0;
}

/*
 * Parse in whole, then every other way; all must agree, and with want
 * (the rendered replies) and err.  Short inputs are split at every pair
 * of points too.  Returns 1 if all did.
 */
static int
parses_as(const struct resp_limits *lim, const void *in, size_t n,
    const char *want, int err)
{
	struct run whole, other;
	size_t cuts[2];
	int ok;

	parse_cut(&whole, lim, in, n, NULL, 0);
	ok = !whole.bad && whole.err == err && strcmp(whole.txt, want) == 0;
	if (!ok)
		fprintf(stderr, "  whole: err %d bad %d got \"%s\" want \"%s\" "
		    "err %d\n", whole.err, whole.bad, whole.txt, want, err);
	/* Byte by byte (by 1009 bytes when long). */
	{
		size_t *all = malloc((n + 1) * sizeof *all), step, k = 0;

		if (all == NULL)
			abort();
		step = n > 4096 ? 1009 : 1;
		for (size_t i = 0; i < n; i += step)
			all[k++] = i;
		parse_cut(&other, lim, in, n, all, (int)k);
		free(all);
		if (!same(&whole, &other)) {
			fprintf(stderr, "  byte by byte differs\n");
			ok = 0;
		}
		run_free(&other);
	}
	for (size_t i = 0; i <= n && ok; i += n > 4096 ? 1 + n / 97 : 1) {
		cuts[0] = i;
		parse_cut(&other, lim, in, n, cuts, 1);
		if (!same(&whole, &other)) {
			fprintf(stderr, "  split at %zu differs\n", i);
			ok = 0;
		}
		run_free(&other);
	}
	for (size_t i = 0; n <= 64 && i <= n && ok; i++)
		for (size_t j = i; j <= n && ok; j++) {
			cuts[0] = i;
			cuts[1] = j;
			parse_cut(&other, lim, in, n, cuts, 2);
			if (!same(&whole, &other)) {
				fprintf(stderr, "  split at %zu,%zu differs\n",
				    i, j);
				ok = 0;
			}
			run_free(&other);
		}
	run_free(&whole);
	return ok;
}

#define OK(in, want)	parses_as(NULL, in, sizeof(in) - 1, want, 0)
#define BAD(in, err)	parses_as(NULL, in, sizeof(in) - 1, "", err)
#define OKL(l, in, want) parses_as(l, in, sizeof(in) - 1, want, 0)
#define BADL(l, in, err) parses_as(l, in, sizeof(in) - 1, "", err)

/* ==== Reply types ===================================================== */

static void
test_types(void)
{
	/* Each type, and the nulls. */
	check(OK("+OK\r\n", "+OK\n"));
	check(OK("+\r\n", "+\n"));
	check(OK("-ERR unknown command 'x'\r\n",
	    "-ERR unknown command 'x'\n"));
	check(OK("-\r\n", "-\n"));
	check(OK(":0\r\n", ":0\n"));
	check(OK(":1000\r\n", ":1000\n"));
	check(OK(":-1\r\n", ":-1\n"));
	check(OK(":-0\r\n", ":0\n"));
	check(OK(":9223372036854775807\r\n", ":9223372036854775807\n"));
	check(OK(":-9223372036854775808\r\n", ":-9223372036854775808\n"));
	check(OK(":007\r\n", ":7\n"));
	check(OK("$5\r\nhello\r\n", "$5:hello\n"));
	check(OK("$0\r\n\r\n", "$0:\n"));
	check(OK("$-1\r\n", "$nil\n"));
	/* Binary-safe: CR, LF, NUL and 0xff inside a bulk string. */
	check(OK("$6\r\na\r\n\0\xffz\r\n", "$6:a\\x0d\\x0a\\x00\\xffz\n"));
	check(OK("$2\r\n\r\n\r\n", "$2:\\x0d\\x0a\n"));
	check(OK("*0\r\n", "*0[]\n"));
	check(OK("*-1\r\n", "*nil\n"));
	check(OK("*2\r\n$3\r\nfoo\r\n:42\r\n", "*2[$3:foo,:42]\n"));
	check(OK("*3\r\n$-1\r\n*-1\r\n*0\r\n", "*3[$nil,*nil,*0[]]\n"));
	check(OK("*5\r\n+a\r\n-b\r\n:1\r\n$1\r\nc\r\n*1\r\n+d\r\n",
	    "*5[+a,-b,:1,$1:c,*1[+d]]\n"));
	/* Nested: the pub/sub and stream shapes. */
	check(OK("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\ndata\r\n",
	    "*3[$7:message,$2:ch,$4:data]\n"));
	check(OK("*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nk\r\n$1\r\nv\r\n",
	    "*1[*2[$3:1-0,*2[$1:k,$1:v]]]\n"));
	check(OK("*2\r\n*2\r\n*1\r\n:1\r\n:2\r\n:3\r\n",
	    "*2[*2[*1[:1],:2],:3]\n"));
	check(OK("*1\r\n*1\r\n*1\r\n*1\r\n*0\r\n", "*1[*1[*1[*1[*0[]]]]]\n"));
	/* A pipeline: several replies in one stream, each on its own. */
	check(OK("+OK\r\n:1\r\n$1\r\nx\r\n*1\r\n:2\r\n-E\r\n",
	    "+OK\n:1\n$1:x\n*1[:2]\n-E\n"));
	/* An incomplete tail is not a reply. */
	check(OK("+OK\r\n$5\r\nhel", "+OK\n"));
	check(OK("*2\r\n:1\r\n", ""));
	check(OK("+OK\r", ""));
	check(OK("", ""));
}

/* A big bulk string and a long array, at coarse splits. */
static void
test_big(void)
{
	size_t n = 300000, hl;
	uint8_t *in = malloc(n + 64);
	char *want = malloc(n * 4 + 64), head[32];
	struct resp_limits lim = { 0 };
	size_t w = 0;

	if (in == NULL || want == NULL)
		abort();
	hl = snprintf(head, sizeof head, "$%zu\r\n", n);
	memcpy(in, head, hl);
	for (size_t i = 0; i < n; i++)
		in[hl + i] = 'a' + i % 26;
	memcpy(in + hl + n, "\r\n", 2);
	w = snprintf(want, 32, "$%zu:", n);
	memcpy(want + w, in + hl, n);
	w += n;
	memcpy(want + w, "\n", 2);
	check(parses_as(NULL, in, hl + n + 2, want, 0));

	/* 20000 integers in one array. */
	{
		size_t k = 0, wk = 0;
		uint8_t *a = malloc(20000 * 12 + 32);
		char *aw = malloc(20000 * 12 + 32);

		if (a == NULL || aw == NULL)
			abort();
		k = sprintf((char *)a, "*20000\r\n");
		wk = sprintf(aw, "*20000[");
		for (int i = 0; i < 20000; i++) {
			k += sprintf((char *)a + k, ":%d\r\n", i);
			wk += sprintf(aw + wk, "%s:%d", i ? "," : "", i);
		}
		sprintf(aw + wk, "]\n");
		lim.max_tokens = 20001;
		check(parses_as(&lim, a, k, aw, 0));
		lim.max_tokens = 20000;
		check(parses_as(&lim, a, k, "", RESP_E_TOKENS));
		free(a);
		free(aw);
	}
	free(in);
	free(want);
}

/* ==== Malformed ====================================================== */

static void
test_malformed(void)
{
	/* Type bytes RESP2 does not have (RESP3's among them). */
	check(BAD("x\r\n", RESP_E_TYPE));
	check(BAD("OK\r\n", RESP_E_TYPE));
	check(BAD("_\r\n", RESP_E_TYPE));
	check(BAD(",1.5\r\n", RESP_E_TYPE));
	check(BAD("#t\r\n", RESP_E_TYPE));
	check(BAD("%1\r\n", RESP_E_TYPE));
	check(BAD("~1\r\n", RESP_E_TYPE));
	check(BAD(">3\r\n", RESP_E_TYPE));
	check(BAD("\r\n", RESP_E_TYPE));
	check(BAD("\0", RESP_E_TYPE));
	check(BAD("*1\r\n?\r\n", RESP_E_TYPE));
	check(parses_as(NULL, "+OK\r\n \r\n", 8, "+OK\n", RESP_E_TYPE));
	/* Lines: CR LF, never one alone. */
	check(BAD("+OK\n", RESP_E_LINE));
	check(BAD("+O\rK\r\n", RESP_E_LINE));
	check(BAD("+OK\r\r\n", RESP_E_LINE));
	check(BAD("-E\nx\r\n", RESP_E_LINE));
	check(BAD(":1\n", RESP_E_LINE));
	check(BAD("$1\n", RESP_E_LINE));
	check(BAD("*1\rx", RESP_E_LINE));
	/* Numbers. */
	check(BAD(":\r\n", RESP_E_NUMBER));
	check(BAD(":-\r\n", RESP_E_NUMBER));
	check(BAD(":+1\r\n", RESP_E_NUMBER));
	check(BAD(": 1\r\n", RESP_E_NUMBER));
	check(BAD(":1 \r\n", RESP_E_NUMBER));
	check(BAD(":1a\r\n", RESP_E_NUMBER));
	check(BAD(":--1\r\n", RESP_E_NUMBER));
	check(BAD(":9223372036854775808\r\n", RESP_E_NUMBER));
	check(BAD(":-9223372036854775809\r\n", RESP_E_NUMBER));
	check(BAD(":18446744073709551616\r\n", RESP_E_NUMBER));
	check(BAD(":00000000000000000000001\r\n", RESP_E_NUMBER));
	check(BAD("$\r\n", RESP_E_NUMBER));
	check(BAD("$-2\r\n", RESP_E_NUMBER));
	check(BAD("$-0\r\n", RESP_E_NUMBER));
	check(BAD("$-11\r\n", RESP_E_NUMBER));
	check(BAD("$+1\r\n", RESP_E_NUMBER));
	check(BAD("$1a\r\n", RESP_E_NUMBER));
	check(BAD("$ 1\r\n", RESP_E_NUMBER));
	check(BAD("*\r\n", RESP_E_NUMBER));
	check(BAD("*-2\r\n", RESP_E_NUMBER));
	check(BAD("*x\r\n", RESP_E_NUMBER));
	/* Huge lengths: over the limit, never wrapped. */
	check(BAD("$99999999999999999999\r\n", RESP_E_BULK));
	check(BAD("$18446744073709551617\r\n", RESP_E_BULK));
	check(BAD("$4294967296\r\n", RESP_E_BULK));
	check(BAD("$9999999999999999999a\r\n", RESP_E_NUMBER));
	check(BAD("*99999999999999999999\r\n", RESP_E_ELEMS));
	check(BAD("*4294967297\r\n", RESP_E_ELEMS));
	/* A length line that never ends is refused from its 21st byte,
	 * before any CR. */
	check(BAD("$999999999999999999999999999999", RESP_E_NUMBER));
	check(BAD(":111111111111111111111111111111", RESP_E_NUMBER));
	/* Bulk strings end with CR LF right after their bytes. */
	check(BAD("$3\r\nfooX\r\n", RESP_E_TERM));
	check(BAD("$3\r\nfoo\n\r", RESP_E_TERM));
	check(BAD("$3\r\nfoo\rX", RESP_E_TERM));
	check(BAD("$0\r\nXY", RESP_E_TERM));
	check(OK("$3\r\nfo\r\n", ""));
	check(BAD("$3\r\nfo\r\nX", RESP_E_TERM));
	/* An error after good replies: they still came out. */
	check(parses_as(NULL, "+OK\r\n:1\r\n!", 10, "+OK\n:1\n", RESP_E_TYPE));
	check(parses_as(NULL, "*2\r\n:1\r\n:x\r\n", 12, "", RESP_E_NUMBER));
}

/* ==== Limits at N and N+1 ============================================ */

static void
test_limits(void)
{
	struct resp_limits l = { 0 };

	/* Bulk length, and a simple line's, at max_bulk = 4. */
	l.max_bulk = 4;
	check(OKL(&l, "$4\r\nabcd\r\n", "$4:abcd\n"));
	check(BADL(&l, "$5\r\nabcde\r\n", RESP_E_BULK));
	check(OKL(&l, "+abcd\r\n", "+abcd\n"));
	check(BADL(&l, "+abcde\r\n", RESP_E_BULK));
	check(BADL(&l, "-abcde", RESP_E_BULK));
	check(OKL(&l, "-abcd\r\n", "-abcd\n"));
	/* Array elements at max_elems = 2. */
	memset(&l, 0, sizeof l);
	l.max_elems = 2;
	check(OKL(&l, "*2\r\n:1\r\n:2\r\n", "*2[:1,:2]\n"));
	check(BADL(&l, "*3\r\n:1\r\n:2\r\n:3\r\n", RESP_E_ELEMS));
	check(BADL(&l, "*1\r\n*3\r\n", RESP_E_ELEMS));
	/* Depth at max_depth = 2: two arrays open, not three. */
	memset(&l, 0, sizeof l);
	l.max_depth = 2;
	check(OKL(&l, "*1\r\n*1\r\n:1\r\n", "*1[*1[:1]]\n"));
	check(BADL(&l, "*1\r\n*1\r\n*1\r\n:1\r\n", RESP_E_DEPTH));
	check(BADL(&l, "*1\r\n*1\r\n*0\r\n", RESP_E_DEPTH));
	l.max_depth = 1;
	check(OKL(&l, "*2\r\n:1\r\n$-1\r\n", "*2[:1,$nil]\n"));
	check(BADL(&l, "*1\r\n*-1\r\n", RESP_E_DEPTH));
	/* The default depth, and more than the stack holds. */
	check(OK("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
	    "*1[*1[*1[*1[*1[*1[*1[*1[:1]]]]]]]]\n"));
	check(BAD("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n"
	    "*1\r\n:1\r\n", RESP_E_DEPTH));
	l.max_depth = 1000;
	{
		char deep[40 * 4 + 8];
		char want[40 * 4 + 8];
		size_t k = 0, w = 0;

		for (int i = 0; i < 32; i++) {
			k += sprintf(deep + k, "*1\r\n");
			w += sprintf(want + w, "*1[");
		}
		k += sprintf(deep + k, ":1\r\n");
		w += sprintf(want + w, ":1");
		for (int i = 0; i < 32; i++)
			want[w++] = ']';
		want[w++] = '\n';
		want[w] = '\0';
		check(parses_as(&l, deep, k, want, 0));
		memmove(deep + 4, deep, k);
		memcpy(deep, "*1\r\n", 4);
		check(parses_as(&l, deep, k + 4, "", RESP_E_DEPTH));
	}
	/* Tokens in one reply at max_tokens = 3 (the array counts). */
	memset(&l, 0, sizeof l);
	l.max_tokens = 3;
	check(OKL(&l, "*2\r\n:1\r\n:2\r\n", "*2[:1,:2]\n"));
	check(BADL(&l, "*3\r\n:1\r\n:2\r\n:3\r\n", RESP_E_TOKENS));
	check(BADL(&l, "*2\r\n*1\r\n:1\r\n:2\r\n", RESP_E_TOKENS));
	check(OKL(&l, "*2\r\n*1\r\n:1\r\n", ""));
	/* The count applies per reply, not per stream. */
	check(OKL(&l, "*2\r\n:1\r\n:2\r\n*2\r\n:3\r\n:4\r\n",
	    "*2[:1,:2]\n*2[:3,:4]\n"));
	/* Bytes of one reply at max_bytes = 11. */
	memset(&l, 0, sizeof l);
	l.max_bytes = 11;
	check(OKL(&l, "$5\r\nhello\r\n", "$5:hello\n"));
	check(BADL(&l, "$6\r\nhello!\r\n", RESP_E_BYTES));
	check(BADL(&l, "+123456789\r\n", RESP_E_BYTES));
	check(OKL(&l, "+12345678\r\n", "+12345678\n"));
	check(BADL(&l, "*2\r\n:1\r\n:2\r\n", RESP_E_BYTES));	/* 12 */
	/* Refused as soon as the CR shows the line would pass it. */
	check(BADL(&l, "*2\r\n:1\r\n:1\r", RESP_E_BYTES));
	check(OKL(&l, "*2\r\n:1\r\n:", ""));
	check(OKL(&l, "+12345678\r\n+12345678\r\n",
	    "+12345678\n+12345678\n"));
}

/* ==== The parser's API =============================================== */

static void
test_api(void)
{
	struct resp_parser p;
	const uint8_t *in = (const uint8_t *)
	    "*3\r\n$7\r\nmessage\r\n*-1\r\n:5\r\n+PONG\r\n";
	long n;

	resp_parser_init(&p, NULL);
	check(p.lim.max_bulk == RESP_MAX_BULK);
	check(p.lim.max_depth == RESP_MAX_DEPTH);
	n = resp_parse(&p, in, strlen((const char *)in));
	check(n == 26);
	check(p.ntok == 4);
	check(resp_is(resp_elem(p.tok, 0), "message"));
	check(!resp_is(resp_elem(p.tok, 0), "messag"));
	check(!resp_is(resp_elem(p.tok, 1), ""));
	check(resp_elem(p.tok, 1)->null);
	check(resp_elem(p.tok, 2)->n == 5);
	check(resp_elem(p.tok, 3) == NULL);
	check(resp_elem(p.tok, -1) == NULL);
	check(resp_elem(p.tok + 1, 0) == NULL);
	check(resp_next(p.tok) == p.tok + 4);
	n = resp_parse(&p, in + 26, 7);
	check(n == 7 && p.ntok == 1 && resp_is(p.tok, "PONG"));
	check(!resp_is(NULL, "x"));
	/* An error sticks until reset. */
	check(resp_parse(&p, (const uint8_t *)"!", 1) == RESP_ERROR);
	check(p.err == RESP_E_TYPE);
	check(resp_parse(&p, (const uint8_t *)"+OK\r\n", 5) == RESP_ERROR);
	resp_parser_reset(&p);
	check(resp_parse(&p, (const uint8_t *)"+OK\r\n", 5) == 5);
	/* Reset mid-reply forgets it. */
	check(resp_parse(&p, (const uint8_t *)"*2\r\n:1\r\n", 8) == RESP_AGAIN);
	resp_parser_reset(&p);
	check(resp_parse(&p, (const uint8_t *)":9\r\n", 4) == 4);
	check(p.tok[0].n == 9);
	resp_parser_free(&p);
	resp_parser_free(&p);
	for (int e = RESP_E_NONE; e <= RESP_E_NOMEM; e++)
		check(strcmp(resp_strerror(e), "unknown error") != 0);
	check(strcmp(resp_strerror(99), "unknown error") == 0);
}

/* resp_u64(): integers and digit strings only, never past 64 bits. */
static void
test_u64(void)
{
	static const struct {
		const char *in;
		int rc;
		uint64_t v;
	} cases[] = {
		{ ":0\r\n", 0, 0 },
		{ ":42\r\n", 0, 42 },
		{ ":-1\r\n", -1, 0 },
		{ "$2\r\n17\r\n", 0, 17 },
		{ "$19\r\n9223372036854775807\r\n", 0, 9223372036854775807ULL },
		{ "$19\r\n9999999999999999999\r\n", 0, 9999999999999999999ULL },
		{ "$20\r\n18446744073709551615\r\n", -1, 0 },	/* 20 digits */
		{ "$0\r\n\r\n", -1, 0 },
		{ "$-1\r\n", -1, 0 },
		{ "$2\r\n1x\r\n", -1, 0 },
		{ "$2\r\n-1\r\n", -1, 0 },
		{ "+12\r\n", -1, 0 },	/* a status line is not a number */
		{ "*0\r\n", -1, 0 },
	};
	struct resp_parser p;
	uint64_t v;

	resp_parser_init(&p, NULL);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		resp_parser_reset(&p);
		v = 0;
		check(resp_parse(&p, (const uint8_t *)cases[i].in,
		    strlen(cases[i].in)) == (long)strlen(cases[i].in));
		check(resp_u64(p.tok, &v) == cases[i].rc);
		check(cases[i].rc != 0 || v == cases[i].v);
	}
	check(resp_u64(NULL, &v) == -1);
	resp_parser_free(&p);
}

/* ==== Encoder ======================================================== */

static void
test_encoder(void)
{
	struct resp_buf b = { 0 };
	struct resp_arg a[3] = {
		{ "SET", 3 }, { "k", 1 }, { "v\r\n\0", 4 }
	};
	static const char want[] =
	    "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\nv\r\n\0\r\n";
	size_t n = resp_cmd_size(3, a);

	check(n == sizeof want - 1);
	check(resp_cmd(&b, SIZE_MAX, 3, a) == 0);
	check(b.len == n && memcmp(b.p, want, n) == 0);
	/* The bound at N and N+1; a refusal appends nothing. */
	check(resp_cmd(&b, 2 * n - 1, 3, a) == RESP_EFULL);
	check(b.len == n);
	check(resp_cmd(&b, 2 * n, 3, a) == 0);
	check(b.len == 2 * n && memcmp(b.p + n, want, n) == 0);
	/* No arguments, an empty one. */
	b.len = 0;
	check(resp_cmd(&b, SIZE_MAX, 0, NULL) == 0);
	check(b.len == 4 && memcmp(b.p, "*0\r\n", 4) == 0);
	a[0].n = 0;
	b.len = 0;
	check(resp_cmd(&b, SIZE_MAX, 1, a) == 0);
	check(b.len == 10 && memcmp(b.p, "*1\r\n$0\r\n\r\n", 10) == 0);
	check(resp_cmd_size(-1, a) == SIZE_MAX);
	a[0].n = SIZE_MAX - 3;
	check(resp_cmd_size(1, a) == SIZE_MAX);
	check(resp_cmd(&b, SIZE_MAX, 1, a) == RESP_EFULL);
	resp_buf_free(&b);
	resp_buf_free(&b);

	/* Round trips: random binary commands, encoded then parsed as a
	 * reply (a command is an array of bulk strings), all in one buffer,
	 * at every split. */
	{
		struct run r;
		uint8_t args[40][64];
		struct resp_arg av[40];
		char *want_txt = malloc(OUTMAX), *w = want_txt;
		unsigned seed = 1;
		size_t cuts[1];

		if (want_txt == NULL)
			abort();
		for (int cmd = 0; cmd < 30; cmd++) {
			int argc = 1 + cmd % 7;

			w += sprintf(w, "*%d[", argc);
			for (int i = 0; i < argc; i++) {
				size_t len = (seed = seed * 1103515245 + 12345)
				    >> 16 & 63;
				struct run one;

				for (size_t k = 0; k < len; k++)
					args[i][k] = (seed = seed * 1103515245 +
					    12345) >> 16;
				av[i].p = args[i];
				av[i].n = len;
				/* Render the expected string through the
				 * harness's own renderer. */
				memset(&one, 0, sizeof one);
				outs(&one, "");
				out_bytes(&one, args[i], len);
				w += sprintf(w, "%s$%zu:%s", i ? "," : "", len,
				    one.txt);
				free(one.txt);
			}
			w += sprintf(w, "]\n");
			n = b.len;
			check(resp_cmd(&b, SIZE_MAX, argc, av) == 0);
			check(b.len - n == resp_cmd_size(argc, av));
		}
		parse_cut(&r, NULL, b.p, b.len, NULL, 0);
		check(!r.bad && r.err == 0 && r.nrep == 30);
		check(strcmp(r.txt, want_txt) == 0);
		for (size_t i = 0; i <= b.len; i++) {
			struct run s;

			cuts[0] = i;
			parse_cut(&s, NULL, b.p, b.len, cuts, 1);
			if (!same(&r, &s)) {
				check(same(&r, &s));
				run_free(&s);
				break;
			}
			run_free(&s);
		}
		run_free(&r);
		free(want_txt);
		resp_buf_free(&b);
	}
}

/* ==== URL ============================================================ */

struct url_case {
	const char	*url;
	int		 tls;
	const char	*host;
	unsigned	 port;
	const char	*user;
	const char	*pass;
	unsigned	 db;
};

static void
test_url(void)
{
	static const struct url_case good[] = {
		{ "redis://localhost", 0, "localhost", 6379, "", "", 0 },
		{ "redis://127.0.0.1:6380", 0, "127.0.0.1", 6380, "", "", 0 },
		{ "redis://h:1/", 0, "h", 1, "", "", 0 },
		{ "redis://h:65535/15", 0, "h", 65535, "", "", 15 },
		{ "redis://h/2147483647", 0, "h", 6379, "", "",
		    2147483647 },
		{ "rediss://cache.example.com:6380/3", 1,
		    "cache.example.com", 6380, "", "", 3 },
		{ "REDISS://H", 1, "H", 6379, "", "", 0 },
		{ "redis://:secret@h", 0, "h", 6379, "", "secret", 0 },
		{ "redis://secret@h", 0, "h", 6379, "", "secret", 0 },
		{ "redis://alice:s3cr3t@h:7000/1", 0, "h", 7000, "alice",
		    "s3cr3t", 1 },
		{ "redis://al%69ce:p%40ss%3Aw%2Fd@h", 0, "h", 6379, "alice",
		    "p@ss:w/d", 0 },
		{ "redis://u:p@ss@h", 0, "h", 6379, "u", "p@ss", 0 },
		{ "redis://u:a/b@h/4", 0, "h", 6379, "u", "a/b", 4 },
		{ "redis://u:a:b@h", 0, "h", 6379, "u", "a:b", 0 },
		{ "redis://[::1]", 0, "::1", 6379, "", "", 0 },
		{ "redis://[::1]:6390/2", 0, "::1", 6390, "", "", 2 },
		{ "rediss://:pw@[2001:db8::7]:1", 1, "2001:db8::7", 1, "",
		    "pw", 0 },
		{ "redis://[::ffff:127.0.0.1]", 0, "::ffff:127.0.0.1", 6379,
		    "", "", 0 },
		{ "redis://my_host-1.x", 0, "my_host-1.x", 6379, "", "", 0 },
		{ "redis://h:00080", 0, "h", 80, "", "", 0 },
		{ "redis://h/007", 0, "h", 6379, "", "", 7 },
	};
	static const char *const bad[] = {
		"", "redis:/h", "http://h", "redis:h", "unix:///tmp/r.sock",
		"redis://", "redis://:6379", "redis://:pw@", "redis://u:pw@:1",
		"redis://h:", "redis://h:0", "redis://h:65536",
		"redis://h:123456", "redis://h:-1", "redis://h:6379x",
		"redis://h:+1", "redis://h/x", "redis://h/-1",
		"redis://h/2147483648", "redis://h/99999999999",
		"redis://h/1/2", "redis://h/1 ", "redis://h?db=1",
		"redis://h/1?x", "redis://h#f", "redis://h x",
		"redis://h\t", "redis://[::1", "redis://[]",
		"redis://[::g]", "redis://[127.0.0.1]", "redis://::1",
		"redis://::1:6379", "redis://fe80::1", "redis://h%41",
		"redis://h!", "redis://[::1]x", "redis://[::1]:",
		"redis://:@h", "redis://u:@h", "redis://@h",
		"redis://u:p%zz@h", "redis://u:p%4@h", "redis://u:p%@h",
		"redis://u:p%00@h", "redis://u%0:p@h",
		"redis://u:p\x01@h",
	};
	struct resp_url u;
	const char *why;
	char long_url[2048];

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		int ok = resp_url_parse(good[i].url, &u, &why) == 0 &&
		    u.tls == good[i].tls && strcmp(u.host, good[i].host) == 0 &&
		    u.port == good[i].port &&
		    strcmp(u.user, good[i].user) == 0 &&
		    strcmp(u.pass, good[i].pass) == 0 && u.db == good[i].db;

		if (!ok)
			fprintf(stderr, "  good url %s\n", good[i].url);
		check(ok);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int ok;

		why = NULL;
		ok = resp_url_parse(bad[i], &u, &why) == -1 && why != NULL &&
		    u.pass[0] == '\0' && u.user[0] == '\0';
		if (!ok)
			fprintf(stderr, "  bad url %s accepted\n", bad[i]);
		check(ok);
	}
	/* Reasons name the part. */
	check(resp_url_parse("redis://h:0", &u, &why) == -1 &&
	    strstr(why, "port") != NULL);
	check(resp_url_parse("redis://h/x", &u, &why) == -1 &&
	    strstr(why, "database") != NULL);
	check(resp_url_parse("http://h", &u, &why) == -1 &&
	    strstr(why, "scheme") != NULL);
	check(resp_url_parse("redis://u:p%zz@h", &u, &why) == -1 &&
	    strstr(why, "password") != NULL);
	check(resp_url_parse("redis://[::1", &u, &why) == -1 &&
	    strstr(why, "IPv6") != NULL);
	check(resp_url_parse("redis://::1", &u, &why) == -1 &&
	    strstr(why, "brackets") != NULL);
	/* Lengths at N and N+1: host 255, user 255, password 511. */
	memcpy(long_url, "redis://", 8);
	memset(long_url + 8, 'h', 255);
	long_url[8 + 255] = '\0';
	check(resp_url_parse(long_url, &u, &why) == 0 &&
	    strlen(u.host) == 255);
	long_url[8 + 255] = 'h';
	long_url[8 + 256] = '\0';
	check(resp_url_parse(long_url, &u, &why) == -1);
	memset(long_url + 8, 'u', 255);
	long_url[8 + 255] = ':';
	memset(long_url + 8 + 256, 'p', 511);
	memcpy(long_url + 8 + 256 + 511, "@h", 3);
	check(resp_url_parse(long_url, &u, &why) == 0 &&
	    strlen(u.user) == 255 && strlen(u.pass) == 511);
	memcpy(long_url + 8 + 256 + 511, "p@h", 4);
	check(resp_url_parse(long_url, &u, &why) == -1);
	memset(long_url + 8, 'u', 256);
	long_url[8 + 256] = ':';
	memcpy(long_url + 8 + 257, "p@h", 4);
	check(resp_url_parse(long_url, &u, &why) == -1);
	/* An escape counts as one byte. */
	memcpy(long_url, "redis://:", 9);
	for (int i = 0; i < 511; i++)
		memcpy(long_url + 9 + 3 * i, "%41", 3);
	memcpy(long_url + 9 + 3 * 511, "@h", 3);
	check(resp_url_parse(long_url, &u, &why) == 0 &&
	    strlen(u.pass) == 511 && u.pass[0] == 'A');
	resp_url_wipe(&u);
	check(u.pass[0] == '\0' && u.pass[510] == '\0');
}

/* ==== Crash probes =================================================== */

/* Run fn in a child: 1 if it returned nonzero without crashing. */
static int
survives(int (*fn)(void))
{
	pid_t pid;
	int st;

	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == -1)
		abort();
	if (pid == 0)
		_exit(fn() ? 0 : 1);
	if (waitpid(pid, &st, 0) == -1)
		return 0;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Every prefix of hostile headers, each ending at the guard page. */
static int
probe_hostile(void)
{
	static const char *const in[] = {
		"$99999999999999999999999999999999999999\r\n",
		"*99999999999999999999999999999999999999\r\n",
		"$4294967295\r\n", "$2147483648\r\nab",
		"*2147483647\r\n:1\r\n", "$67108864\r\nabc",
		":99999999999999999999999999999999\r\n",
		"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n",
	};

	for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
		for (size_t n = 0; n <= strlen(in[i]); n++) {
			struct resp_parser p;

			resp_parser_init(&p, NULL);
			(void)resp_parse(&p, at_end(in[i], n), n);
			resp_parser_free(&p);
		}
	return 1;
}

/* ==== Main =========================================================== */

int
main(void)
{
	arena_init();
	test_types();
	test_big();
	test_malformed();
	test_limits();
	test_api();
	test_u64();
	test_encoder();
	test_url();
	check(survives(probe_hostile));
	return t_done();
}
