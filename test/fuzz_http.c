/*
 * fuzz_http.c - libFuzzer target for the HTTP request head parser.
 *
 * The input is parsed whole and then from every split a resumable reader
 * would see (each prefix must say HTTP_AGAIN or give the same answer as the
 * whole); on success every slice must lie inside the input and the query
 * helpers must stay in bounds.
 */
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

#define need(c)	do { if (!(c)) abort(); } while (0)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
inside(struct http_slice s, const uint8_t *buf, size_t len)
{
	need(s.n == 0 || ((const uint8_t *)s.p >= buf &&
	    (const uint8_t *)s.p + s.n <= buf + len));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_req req;
	char out[64];
	int status = 0, st2;
	long n = http_parse(data, size, 1024, &req, &status);

	need(n == HTTP_AGAIN || n == HTTP_ERROR || (n > 0 && (size_t)n <= size));
	if (n == HTTP_ERROR)
		need(status >= 400 && status <= 505);
	if (n > 0) {
		inside(req.method, data, size);
		inside(req.target, data, size);
		inside(req.query, data, size);
		for (int i = 0; i < req.nhdr; i++) {
			inside(req.hdr[i].name, data, size);
			inside(req.hdr[i].value, data, size);
			http_has_token(req.hdr[i].value, "upgrade");
		}
		need(http_query_param(req.query, "since", out, sizeof out) <
		    (long)sizeof out);
		http_header(&req, "sec-websocket-key");
		/* A prefix shorter than the head is never complete. */
		for (size_t k = 0; k < (size_t)n; k += 1 + k / 8) {
			long m = http_parse(data, k, 1024, &req, &st2);

			need(m == HTTP_AGAIN || m == HTTP_ERROR);
		}
	}
	return 0;
}
