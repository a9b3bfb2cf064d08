/*
 * fuzz_resp.c - libFuzzer target for resp.c: the reply parser, the
 * command encoder and the URL parser.
 *
 * The input is a stream of replies, parsed whole and then fed in pieces
 * whose sizes come from the input's first byte (each call sees the reply
 * in progress from its start, copied to a fresh allocation, so ASan sees
 * any read past it): both must give the same replies and the same error.
 * Every token must be well formed and every string inside the buffer.
 * The input is also read as a URL, and cut into arguments that are
 * encoded and parsed back.
 */
#include <stdlib.h>
#include <string.h>

#include "resp.h"

#define need(c)	do { if (!(c)) abort(); } while (0)
#define MAXREP	64	/* replies compared per input */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* A digest of one reply: its tokens' types, values and bytes. */
static uint64_t
digest(const struct resp_tok *t, uint32_t n, const uint8_t *buf, size_t len)
{
	uint64_t h = 1469598103934665603ULL;

	need(n > 0 && t[0].size == n);
	for (uint32_t i = 0; i < n; i++) {
		need(t[i].size >= 1 && i + t[i].size <= n);
		h = (h ^ t[i].type ^ (uint64_t)t[i].null << 8) *
		    1099511628211ULL;
		h = (h ^ (uint64_t)t[i].n) * 1099511628211ULL;
		if (t[i].type == RESP_T_ARRAY) {
			need(t[i].n >= 0 && resp_elem(&t[i], t[i].n) == NULL);
			need(t[i].null ? t[i].n == 0 && t[i].size == 1 :
			    (t[i].n == 0) == (t[i].size == 1));
		} else if (t[i].type == RESP_T_INT || t[i].null) {
			need(t[i].p == NULL && t[i].size == 1);
		} else {
			need(t[i].n >= 0 && t[i].p >= buf &&
			    t[i].p + t[i].n <= buf + len);
			for (int64_t k = 0; k < t[i].n; k++)
				h = (h ^ t[i].p[k]) * 1099511628211ULL;
		}
	}
	return h;
}

/* Parse data in pieces of the sizes in step[] (cycled; 0: whole). */
static int
parse(const uint8_t *data, size_t size, const uint8_t *step, size_t nstep,
    uint64_t *out, int *err)
{
	struct resp_limits lim = { 1 << 16, 1 << 12, 6, 1 << 14, 1 << 20 };
	struct resp_parser p;
	size_t start = 0, have = 0, k = 0;
	int n = 0;

	*err = 0;
	resp_parser_init(&p, &lim);
	while (have < size) {
		have = nstep == 0 ? size : have + 1 + step[k++ % nstep] % 64;
		if (have > size)
			have = size;
		for (;;) {
			uint8_t *copy = malloc(have - start + 1);
			long m;

			need(copy != NULL);
			memcpy(copy, data + start, have - start);
			m = resp_parse(&p, copy, have - start);
			if (m > 0) {
				need((size_t)m <= have - start);
				if (n < MAXREP)
					out[n] = digest(p.tok, p.ntok, copy, m);
				n++;
				start += m;
			} else if (m == RESP_ERROR) {
				need(p.err != RESP_E_NONE);
				*err = p.err;
			} else
				need(m == RESP_AGAIN);
			free(copy);
			if (m <= 0)
				break;
		}
		if (*err)
			break;
	}
	resp_parser_free(&p);
	return n;
}

static void
fuzz_url(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	struct resp_url u;
	const char *why = NULL;

	need(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';
	if (resp_url_parse(s, &u, &why) == 0) {
		need(u.host[0] != '\0' && u.port >= 1 && u.port <= 65535);
		need(u.db <= RESP_URL_MAX_DB);
		need(strlen(u.user) < sizeof u.user &&
		    strlen(u.pass) < sizeof u.pass);
	} else
		need(why != NULL && u.pass[0] == '\0');
	free(s);
}

/* Cut at each '|' into arguments; encode; parse back as one reply. */
static void
fuzz_encode(const uint8_t *data, size_t size)
{
	struct resp_arg argv[32];
	struct resp_buf b = { 0 };
	struct resp_parser p;
	size_t at = 0;
	int argc = 0;
	long m;

	while (argc < 32) {
		const uint8_t *bar = memchr(data + at, '|', size - at);
		size_t end = bar ? (size_t)(bar - data) : size;

		argv[argc].p = data + at;
		argv[argc++].n = end - at;
		if (bar == NULL)
			break;
		at = end + 1;
	}
	need(resp_cmd(&b, SIZE_MAX, argc, argv) == 0);
	need(b.len == resp_cmd_size(argc, argv));
	resp_parser_init(&p, NULL);
	m = resp_parse(&p, b.p, b.len);
	need(m == (long)b.len && p.tok[0].type == RESP_T_ARRAY &&
	    p.tok[0].n == argc && p.ntok == (uint32_t)argc + 1);
	for (int i = 0; i < argc; i++)
		need(p.tok[i + 1].type == RESP_T_BULK &&
		    (size_t)p.tok[i + 1].n == argv[i].n &&
		    memcmp(p.tok[i + 1].p, argv[i].p, argv[i].n) == 0);
	resp_parser_free(&p);
	resp_buf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t a[MAXREP], b[MAXREP];
	int na, nb, ea, eb;

	na = parse(data, size, NULL, 0, a, &ea);
	if (size > 0) {
		nb = parse(data, size, data, size < 8 ? size : 8, b, &eb);
		need(na == nb && ea == eb);
		need(memcmp(a, b, (na < MAXREP ? na : MAXREP) * sizeof a[0]) ==
		    0);
	}
	fuzz_url(data, size);
	fuzz_encode(data, size);
	return 0;
}
