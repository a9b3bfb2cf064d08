/*
 * fuzz_token.c - libFuzzer target for the token verifier.
 *
 * A random string almost never carries a valid HMAC, so raw inputs alone
 * would stop at the signature check.  The first byte picks what the input
 * is, so the claim and header code are reached too:
 *
 *	0x01 payload	the rest is a payload, signed here with the key
 *	0x02 header	the rest is a header, signed here over "{}"
 *	anything else	the whole input is a token, verified as it is
 *
 * Whatever verifies must keep auth.h's promises, checked below.
 *
 *	clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *	    test/fuzz_token.c auth.c json.c -lcrypto -o build/fuzz_token
 *	./build/fuzz_token -max_total_time=60 test/corpus/token
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "tjwt.h"

/* The unit test's key, so the corpus's good tokens verify. */
#define KEY	"wsd-test-secret-0123456789abcdef"
#define NOW	((int64_t)1700000000)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
must(int cond)
{
	if (!cond)
		abort();
}

/* Each pattern grants what it says, and the lists are well formed. */
static void
check_patterns(const struct auth_claims *c, const char *p, unsigned n,
    int (*may)(const struct auth_claims *, const char *, size_t))
{
	char g[AUTH_MAX_GROUP + 1];
	size_t len;

	for (; n > 0; n--) {
		len = strlen(p);
		must(len >= 1 && len <= AUTH_MAX_PATTERN);
		if (len == 1 && p[0] == '*')
			must(may(c, "any.group", 9));
		else if (p[len - 1] == '*') {
			must(len >= 3 && p[len - 2] == ':');
			if (len <= AUTH_MAX_GROUP) {
				memcpy(g, p, len - 1);
				g[len - 1] = 'x';
				must(may(c, g, len));
			}
		} else
			must(may(c, p, len));
		p += len + 1;
	}
}

static void
check_claims(const struct auth_claims *c)
{
	const char *p;
	unsigned k;

	must(c->sub != NULL && strlen(c->sub) <= AUTH_MAX_SUB);
	must(c->njoin <= AUTH_MAX_PATTERNS && c->npub <= AUTH_MAX_PATTERNS);
	p = c->sub + strlen(c->sub) + 1;
	check_patterns(c, p, c->njoin, auth_may_join);
	for (k = 0; k < c->njoin; k++)
		p += strlen(p) + 1;
	if (!c->pub_join)
		check_patterns(c, p, c->npub, auth_may_publish);
	must(!auth_may_join(c, "*", 1) && !auth_may_publish(c, "*", 1));
	must(!auth_may_join(c, "", 0));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char tok[16384], h64[8192], p64[8192];
	static uint8_t dec[8192];
	struct auth_claims c;
	size_t n;
	int rc;

	if (size > 6000)
		return 0;
	if (size > 0 && data[0] == 0x01) {
		n = tj_sign_parts(KEY, sizeof(KEY) - 1, h64,
		    tj_b64url("{\"alg\":\"HS256\"}", 15, h64), p64,
		    tj_b64url(data + 1, size - 1, p64), tok, sizeof(tok));
	} else if (size > 0 && data[0] == 0x02) {
		n = tj_sign_parts(KEY, sizeof(KEY) - 1, h64,
		    tj_b64url(data + 1, size - 1, h64), "e30", 3, tok,
		    sizeof(tok));
	} else {
		memcpy(tok, data, size);
		n = size;
		must(auth_b64url_decode(data, size, dec, sizeof(dec)) <=
		    (long)AUTH_B64URL_DECLEN(size));
	}

	rc = auth_verify((const uint8_t *)KEY, sizeof(KEY) - 1, tok, n, NOW,
	    &c);
	must(rc <= 0 && rc >= AUTH_INTERNAL);
	must(auth_strerror(rc) != NULL);
	if (rc == AUTH_OK) {
		check_claims(&c);
		/* The input's tail as a group name: any answer, no crash. */
		(void)auth_may_join(&c, (const char *)data + size / 2,
		    size - size / 2);
		(void)auth_may_publish(&c, (const char *)data + size / 2,
		    size - size / 2);
	} else
		must(c.sub == NULL && c.njoin == 0 && c.exp == 0);
	auth_claims_free(&c);
	return 0;
}
