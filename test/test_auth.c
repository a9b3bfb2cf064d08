/*
 * test_auth.c - the token layer: base64url, HS256 verification, claims,
 * group rights and API key comparison, each limit at N and N+1.
 *
 * The two fixed vectors are RFC 7515 Appendix A.1 and one made at
 * authoring time with openssl(1), independently of auth.c:
 *
 *	b64u() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
 *	H=$(printf %s '{"alg":"HS256","typ":"JWT"}' | b64u)
 *	P=$(printf %s '{"sub":"alice",...}' | b64u)
 *	S=$(printf %s "$H.$P" | openssl dgst -sha256 -hmac "$K" -binary | b64u)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "auth.h"
#include "t.h"
#include "tjwt.h"

#define KEY	"wsd-test-secret-0123456789abcdef"
#define KEYLEN	(sizeof(KEY) - 1)
#define HS256	"{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define NOW	((int64_t)1700000000)

/* Encode a string literal. */
#define B64(s, out)	tj_b64url(s, sizeof(s) - 1, out)

static char tokbuf[16384];

/* Sign pay with KEY and verify it at now; the claims go to *c. */
static int
sv(const char *hdr, const char *pay, int64_t now, struct auth_claims *c)
{
	size_t n;

	n = tj_sign(KEY, KEYLEN, hdr, pay, tokbuf, sizeof(tokbuf));
	if (n == 0)
		return 999;
	return auth_verify((const uint8_t *)KEY, KEYLEN, tokbuf, n, now, c);
}

/* The same, for a payload whose claims are not wanted. */
static int
sv0(const char *pay, int64_t now)
{
	struct auth_claims c;
	int rc;

	rc = sv(HS256, pay, now, &c);
	auth_claims_free(&c);
	return rc;
}

static int
vs(const char *tok)
{
	struct auth_claims c;
	int rc;

	rc = auth_verify((const uint8_t *)KEY, KEYLEN, tok, strlen(tok), NOW,
	    &c);
	if (rc != AUTH_OK && c.sub != NULL)
		rc = 998;	/* a refused token must leave out zeroed */
	auth_claims_free(&c);
	return rc;
}

static int
join(const struct auth_claims *c, const char *g)
{
	return auth_may_join(c, g, strlen(g));
}

static int
pub(const struct auth_claims *c, const char *g)
{
	return auth_may_publish(c, g, strlen(g));
}

static int
dec_is(const char *in, const char *want)
{
	uint8_t out[64];
	long n;

	n = auth_b64url_decode((const uint8_t *)in, strlen(in), out,
	    sizeof(out));
	return n == (long)strlen(want) && memcmp(out, want, (size_t)n) == 0;
}

static int
dec_bad(const char *in)
{
	uint8_t out[64];

	return auth_b64url_decode((const uint8_t *)in, strlen(in), out,
	    sizeof(out)) == -1;
}

static void
test_b64url(void)
{
	uint8_t out[8];
	long n;

	/* RFC 4648 §10, whose vectors need no '+' or '/'. */
	check(dec_is("", ""));
	check(dec_is("Zg", "f"));
	check(dec_is("Zm8", "fo"));
	check(dec_is("Zm9v", "foo"));
	check(dec_is("Zm9vYg", "foob"));
	check(dec_is("Zm9vYmE", "fooba"));
	check(dec_is("Zm9vYmFy", "foobar"));
	/* The two letters where base64url differs from base64. */
	check(dec_is("-_8", "\xfb\xff"));
	check(dec_bad("+/8"));

	check(dec_bad("Zg=="));		/* padding */
	check(dec_bad("Zm8="));
	check(dec_bad("Z"));		/* 4n+1 */
	check(dec_bad("Zm9vY"));
	check(dec_bad("Zh"));		/* non-zero unused bits */
	check(dec_bad("Zm9"));
	check(dec_bad("Zm 9"));
	check(dec_bad("Zm9v\n"));
	check(dec_bad("Zm.v"));
	n = auth_b64url_decode((const uint8_t *)"Zm9\0v", 5, out, sizeof(out));
	check(n == -1);

	/* cap at N and N-1: "Zm9vYg" needs 4 bytes. */
	check(AUTH_B64URL_DECLEN(6) == 4);
	check(AUTH_B64URL_DECLEN(7) == 5);
	check(AUTH_B64URL_DECLEN(8) == 6);
	memset(out, 0xaa, sizeof(out));
	n = auth_b64url_decode((const uint8_t *)"Zm9vYg", 6, out, 4);
	check(n == 4 && memcmp(out, "foob", 4) == 0 && out[4] == 0xaa);
	check(auth_b64url_decode((const uint8_t *)"Zm9vYg", 6, out, 3) == -1);
}

/* RFC 7515 Appendix A.1: an HS256 JWS with a 64-byte JWK key. */
static void
test_rfc7515(void)
{
	static const char tok[] =
	    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
	    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt"
	    "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
	    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
	static const char k64[] =
	    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0i"
	    "PS4hcgUuTwjAzZr1Z9CAow";
	static const uint8_t k0[4] = { 0x03, 0x23, 0x35, 0x4b };
	struct auth_claims c;
	uint8_t key[64];
	long klen;
	int rc;

	klen = auth_b64url_decode((const uint8_t *)k64, strlen(k64), key,
	    sizeof(key));
	check(klen == 64 && memcmp(key, k0, 4) == 0 && key[63] == 0xa3);

	rc = auth_verify(key, 64, tok, strlen(tok), 1300819380 - 3600, &c);
	check(rc == AUTH_OK);
	check(c.exp == 1300819380);
	check(c.sub != NULL && strcmp(c.sub, "") == 0);
	check(c.njoin == 0 && c.npub == 0 && !c.pub_join);
	check(!join(&c, "events"));
	auth_claims_free(&c);

	/* That token expired in 2011. */
	rc = auth_verify(key, 64, tok, strlen(tok), NOW, &c);
	check(rc == AUTH_EXPIRED && c.sub == NULL);
	/* The same token under another key. */
	key[0] ^= 1;
	rc = auth_verify(key, 64, tok, strlen(tok), 1300819380, &c);
	check(rc == AUTH_BAD_SIG && c.sub == NULL);
}

/*
 * {"sub":"alice","exp":2000000000,"groups":["chat:*","events"],
 *  "publish":["chat:s1"]} signed with KEY by openssl dgst.
 */
static const char vec[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJhbGljZSIsImV4cCI6MjAwMDAwMDAwMCwiZ3JvdXBzIjpbImNoYXQ6KiIs"
    "ImV2ZW50cyJdLCJwdWJsaXNoIjpbImNoYXQ6czEiXX0"
    ".zHs0aLc9tjAQIbozrr3Aztyxqhk_uS1SRNiEpHfDGtE";

static void
test_vector(void)
{
	struct auth_claims c;
	char t[sizeof(vec)];
	size_t n = strlen(vec);
	int rc;

	rc = auth_verify((const uint8_t *)KEY, KEYLEN, vec, n, NOW, &c);
	check(rc == AUTH_OK);
	check(c.sub != NULL && strcmp(c.sub, "alice") == 0);
	check(c.exp == 2000000000);
	check(c.njoin == 2 && c.npub == 1 && !c.pub_join);
	check(join(&c, "events"));
	check(join(&c, "chat:s1"));
	check(join(&c, "chat:s2"));
	check(!join(&c, "monitor"));
	check(pub(&c, "chat:s1"));
	check(!pub(&c, "chat:s2"));
	check(!pub(&c, "events"));
	auth_claims_free(&c);
	check(c.sub == NULL && c.njoin == 0 && !join(&c, "events"));
	auth_claims_free(&c);		/* twice is fine: it was zeroed */
	auth_claims_free(NULL);

	/* Our signer agrees with openssl(1). */
	n = tj_sign(KEY, KEYLEN, HS256, "{\"sub\":\"alice\",\"exp\":2000000000,"
	    "\"groups\":[\"chat:*\",\"events\"],\"publish\":[\"chat:s1\"]}",
	    tokbuf, sizeof(tokbuf));
	check(n == strlen(vec) && memcmp(tokbuf, vec, n) == 0);

	/* tok need not be NUL-terminated, and only len bytes count. */
	memcpy(t, vec, sizeof(vec));
	t[sizeof(vec) - 1] = 'x';
	rc = auth_verify((const uint8_t *)KEY, KEYLEN, t, strlen(vec), NOW, &c);
	check(rc == AUTH_OK);
	auth_claims_free(&c);

	/* Only the exact key. */
	rc = auth_verify((const uint8_t *)KEY, KEYLEN - 1, vec, n, NOW, &c);
	check(rc == AUTH_BAD_SIG);
	rc = auth_verify((const uint8_t *)KEY "x", KEYLEN + 1, vec, n, NOW, &c);
	check(rc == AUTH_BAD_SIG);
	rc = auth_verify((const uint8_t *)"", 0, vec, n, NOW, &c);
	check(rc == AUTH_BAD_SIG);
	check(c.sub == NULL);
}

/*
 * Every proper prefix is refused, and no prefix or whole token reads a
 * byte past its end: each ends on a page that is followed by no page.
 */
static void
test_split(void)
{
	struct auth_claims c;
	long pg = sysconf(_SC_PAGESIZE);
	size_t i, n = strlen(vec), bad = 0;
	char *map, *end;
	int rc;

	map = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check(map != MAP_FAILED);
	if (map == MAP_FAILED)
		return;
	check(mprotect(map + pg, (size_t)pg, PROT_NONE) == 0);
	end = map + pg;
	for (i = 0; i < n; i++) {
		memcpy(end - i, vec, i);
		rc = auth_verify((const uint8_t *)KEY, KEYLEN, end - i, i,
		    NOW, &c);
		if (rc == AUTH_OK || c.sub != NULL)
			bad++;
		auth_claims_free(&c);
	}
	check(bad == 0);
	memcpy(end - n, vec, n);
	rc = auth_verify((const uint8_t *)KEY, KEYLEN, end - n, n, NOW, &c);
	check(rc == AUTH_OK);
	/* A group name that ends on the guard page. */
	check(auth_may_join(&c, end - 6, 6) == 0);
	auth_claims_free(&c);
	memcpy(end - 7, "chat:s9", 7);
	check(c.sub == NULL);
	rc = auth_verify((const uint8_t *)KEY, KEYLEN, vec, n, NOW, &c);
	check(rc == AUTH_OK && auth_may_join(&c, end - 7, 7) == 1);
	check(auth_may_publish(&c, end - 7, 7) == 0);
	auth_claims_free(&c);
	munmap(map, (size_t)pg * 2);
}

static void
test_malformed(void)
{
	char h64[128], p64[256], t[512];
	const char *h = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
	size_t hl, pl, n;

	check(vs("") == AUTH_MALFORMED);
	check(vs("abc") == AUTH_MALFORMED);
	check(vs(".") == AUTH_MALFORMED);
	check(vs("..") == AUTH_MALFORMED);
	check(vs("...") == AUTH_MALFORMED);
	check(vs("a.b") == AUTH_MALFORMED);
	check(vs("a.b.c.d") == AUTH_MALFORMED);
	check(vs("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30") == AUTH_MALFORMED);

	/* A fourth part on a valid token. */
	snprintf(t, sizeof(t), "%s.", vec);
	check(vs(t) == AUTH_MALFORMED);
	snprintf(t, sizeof(t), "%s.x", vec);
	check(vs(t) == AUTH_MALFORMED);
	/* Padding on the signature (32 bytes = 43 chars + "="). */
	snprintf(t, sizeof(t), "%s=", vec);
	check(vs(t) == AUTH_MALFORMED);
	/* Leading or trailing white space is not stripped here. */
	snprintf(t, sizeof(t), " %s", vec);
	check(vs(t) == AUTH_MALFORMED);
	snprintf(t, sizeof(t), "%s\n", vec);
	check(vs(t) == AUTH_MALFORMED);

	/* Header not JSON, not an object, or badly encoded; well signed. */
	pl = B64("{}", p64);
	hl = B64("alg=HS256", h64);
	n = tj_sign_parts(KEY, KEYLEN, h64, hl, p64, pl, t, sizeof(t));
	check(n > 0 && vs(t) == AUTH_MALFORMED);
	hl = B64("[\"HS256\"]", h64);
	n = tj_sign_parts(KEY, KEYLEN, h64, hl, p64, pl, t, sizeof(t));
	check(n > 0 && vs(t) == AUTH_MALFORMED);
	n = tj_sign_parts(KEY, KEYLEN, "", 0, p64, pl, t, sizeof(t));
	check(n > 0 && vs(t) == AUTH_MALFORMED);
	hl = B64("{\"alg\":\"HS256\",}", h64);
	n = tj_sign_parts(KEY, KEYLEN, h64, hl, p64, pl, t, sizeof(t));
	check(n > 0 && vs(t) == AUTH_MALFORMED);
	/* A padded header: 16 bytes are 22 characters, and "==". */
	hl = B64("{\"alg\":\"HS256\" }", h64);
	check(hl % 4 != 0);
	memcpy(h64 + hl, "==", 3);
	n = tj_sign_parts(KEY, KEYLEN, h64, strlen(h64), p64, pl, t,
	    sizeof(t));
	check(n > 0 && vs(t) == AUTH_MALFORMED);
	/* Standard base64 letters in the header. */
	hl = B64("{\"alg\":\"HS256\",\"x\":\"\xfb\xff\"}", h64);
	check(strpbrk(h64, "-_") != NULL);
	n = tj_sign_parts(KEY, KEYLEN, h64, hl, p64, pl, t, sizeof(t));
	check(n > 0 && vs(t) == AUTH_MALFORMED);	/* not UTF-8 */
	for (n = 0; n < hl; n++)
		if (h64[n] == '-')
			h64[n] = '+';
		else if (h64[n] == '_')
			h64[n] = '/';
	n = tj_sign_parts(KEY, KEYLEN, h64, hl, p64, pl, t, sizeof(t));
	check(n > 0 && vs(t) == AUTH_MALFORMED);

	/* Payload: padded, badly encoded, not JSON, not an object. */
	memcpy(p64 + pl, "=", 2);	/* "e30" is 3 chars, 4n+3 */
	n = tj_sign_parts(KEY, KEYLEN, h, strlen(h), p64, pl + 1, t,
	    sizeof(t));
	check(n > 0 && vs(t) == AUTH_MALFORMED);
	n = tj_sign_parts(KEY, KEYLEN, h, strlen(h), "e3!", 3, t, sizeof(t));
	check(n > 0 && vs(t) == AUTH_MALFORMED);
	n = tj_sign_parts(KEY, KEYLEN, h, strlen(h), "e31", 3, t, sizeof(t));
	check(n > 0 && vs(t) == AUTH_MALFORMED);	/* bits left over */
	check(sv0("", NOW) == AUTH_MALFORMED);
	check(sv0("sub=alice", NOW) == AUTH_MALFORMED);
	check(sv0("[]", NOW) == AUTH_MALFORMED);
	check(sv0("\"x\"", NOW) == AUTH_MALFORMED);
	check(sv0("null", NOW) == AUTH_MALFORMED);
	check(sv0("{} {}", NOW) == AUTH_MALFORMED);
	check(sv0("{}", NOW) == AUTH_OK);
	check(sv0(" {\"sub\" : \"a\" }\r\n", NOW) == AUTH_OK);
}

static void
test_sig(void)
{
	char t[sizeof(vec) + 8];
	size_t n = strlen(vec), dot2;

	dot2 = (size_t)(strrchr(vec, '.') - vec);

	/* The first signature character changed: a different MAC. */
	memcpy(t, vec, sizeof(vec));
	t[dot2 + 1] = t[dot2 + 1] == 'A' ? 'B' : 'A';
	check(vs(t) == AUTH_BAD_SIG);
	/* One payload byte changed, the signature kept. */
	memcpy(t, vec, sizeof(vec));
	t[40] = t[40] == 'A' ? 'B' : 'A';
	check(vs(t) == AUTH_BAD_SIG);
	/* No signature, a short one (31 bytes), a long one (33 bytes). */
	memcpy(t, vec, dot2 + 1);
	t[dot2 + 1] = '\0';
	check(vs(t) == AUTH_BAD_SIG);
	memcpy(t, vec, n - 1);		/* 42 chars: 31 bytes + 4 bits */
	t[n - 2] = 'A';
	t[n - 1] = '\0';
	check(vs(t) == AUTH_BAD_SIG);
	memcpy(t, vec, n);
	memcpy(t + n, "AA", 3);		/* 45 chars: 33 bytes + 6 bits */
	check(vs(t) == AUTH_MALFORMED);
	memcpy(t + n - 1, "AAAA", 5);	/* 46 chars: 34 bytes */
	check(vs(t) == AUTH_BAD_SIG);
}

static void
test_alg(void)
{
	struct auth_claims c;
	char t[512], h64[128];
	size_t hl;
	const char *p = "eyJzdWIiOiJhbGljZSIsImdyb3VwcyI6WyIqIl19";

	/* Each is signed with KEY, so only the header is wrong. */
	check(sv("{\"alg\":\"none\"}", "{}", NOW, &c) == AUTH_BAD_ALG);
	check(c.sub == NULL);
	check(sv("{\"alg\":\"HS512\"}", "{}", NOW, &c) == AUTH_BAD_ALG);
	check(sv("{\"alg\":\"hs256\"}", "{}", NOW, &c) == AUTH_BAD_ALG);
	check(sv("{\"alg\":\"HS256 \"}", "{}", NOW, &c) == AUTH_BAD_ALG);
	check(sv("{\"alg\":\"HS2560\"}", "{}", NOW, &c) == AUTH_BAD_ALG);
	check(sv("{\"alg\":\"RS256\"}", "{}", NOW, &c) == AUTH_BAD_ALG);
	check(sv("{\"alg\":\"\"}", "{}", NOW, &c) == AUTH_BAD_ALG);
	check(sv("{\"alg\":null}", "{}", NOW, &c) == AUTH_BAD_ALG);
	check(sv("{\"alg\":[\"HS256\"]}", "{}", NOW, &c) == AUTH_BAD_ALG);
	check(sv("{\"typ\":\"JWT\"}", "{}", NOW, &c) == AUTH_BAD_ALG);
	check(sv("{}", "{}", NOW, &c) == AUTH_BAD_ALG);
	check(sv("{\"ALG\":\"HS256\"}", "{}", NOW, &c) == AUTH_BAD_ALG);
	check(sv("{\"alg\":\"HS256\",\"alg\":\"none\"}", "{}", NOW, &c) ==
	    AUTH_BAD_ALG);
	/* The same string, escaped, is the same string. */
	check(sv("{\"alg\":\"HS\\u0032\\u00356\"}", "{}", NOW, &c) == AUTH_OK);
	auth_claims_free(&c);
	check(sv("{\"alg\":\"HS256\"}", "{}", NOW, &c) == AUTH_OK);
	auth_claims_free(&c);
	check(sv("{\"alg\":\"HS256\",\"kid\":\"k1\",\"x\":{}}", "{}", NOW,
	    &c) == AUTH_OK);
	auth_claims_free(&c);
	/* RFC 7515 §4.1.11: unknown critical extensions refuse the token. */
	check(sv("{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", "{}",
	    NOW, &c) == AUTH_MALFORMED);

	/* The classic: "none" and no signature. */
	hl = B64("{\"alg\":\"none\",\"typ\":\"JWT\"}", h64);
	snprintf(t, sizeof(t), "%.*s.%s.", (int)hl, h64, p);
	check(vs(t) == AUTH_BAD_ALG);
	/* "none" with the right HS256 signature of what was sent. */
	check(tj_sign_parts(KEY, KEYLEN, h64, hl, p, strlen(p), t,
	    sizeof(t)) > 0);
	check(vs(t) == AUTH_BAD_ALG);
}

static void
test_time(void)
{
	struct auth_claims c;
	char pay[128];
	int64_t exp = NOW;

	/* Valid while now < exp + leeway. */
	snprintf(pay, sizeof(pay), "{\"exp\":%lld}", (long long)exp);
	check(sv0(pay, exp - 1000) == AUTH_OK);
	check(sv0(pay, exp) == AUTH_OK);
	check(sv0(pay, exp + AUTH_LEEWAY_S - 1) == AUTH_OK);
	check(sv0(pay, exp + AUTH_LEEWAY_S) == AUTH_EXPIRED);
	check(sv0(pay, exp + 100000) == AUTH_EXPIRED);
	check(sv(HS256, pay, exp + AUTH_LEEWAY_S, &c) == AUTH_EXPIRED);
	check(c.sub == NULL && c.exp == 0);

	/* Valid once now >= nbf - leeway. */
	snprintf(pay, sizeof(pay), "{\"nbf\":%lld}", (long long)NOW);
	check(sv0(pay, NOW + 1000) == AUTH_OK);
	check(sv0(pay, NOW) == AUTH_OK);
	check(sv0(pay, NOW - AUTH_LEEWAY_S) == AUTH_OK);
	check(sv0(pay, NOW - AUTH_LEEWAY_S - 1) == AUTH_NOT_YET);
	check(sv0(pay, NOW - 100000) == AUTH_NOT_YET);

	snprintf(pay, sizeof(pay), "{\"nbf\":%lld,\"exp\":%lld}",
	    (long long)NOW, (long long)NOW + 60);
	check(sv0(pay, NOW - AUTH_LEEWAY_S - 1) == AUTH_NOT_YET);
	check(sv0(pay, NOW + 30) == AUTH_OK);
	check(sv0(pay, NOW + 60 + AUTH_LEEWAY_S) == AUTH_EXPIRED);

	/* No exp: never expires; exp is reported as 0. */
	check(sv(HS256, "{\"sub\":\"a\"}", INT64_MAX, &c) == AUTH_OK);
	check(c.exp == 0);
	auth_claims_free(&c);

	/* --token-require-exp: no exp is a bad claim; exp still counts. */
	auth_require_exp(1);
	check(sv(HS256, "{\"sub\":\"a\"}", NOW, &c) == AUTH_BAD_CLAIM);
	check(c.sub == NULL && c.exp == 0);
	check(sv0("{\"nbf\":0}", NOW) == AUTH_BAD_CLAIM);
	snprintf(pay, sizeof(pay), "{\"exp\":%lld}", (long long)NOW);
	check(sv0(pay, NOW) == AUTH_OK);
	check(sv0(pay, NOW + AUTH_LEEWAY_S) == AUTH_EXPIRED);
	check(sv0("{\"exp\":null}", NOW) == AUTH_BAD_CLAIM);
	auth_require_exp(0);
	check(sv0("{\"sub\":\"a\"}", NOW) == AUTH_OK);

	/* The extremes do not overflow. */
	check(sv0("{\"exp\":9223372036854775807}", INT64_MAX) == AUTH_OK);
	check(sv0("{\"exp\":9223372036854775807}", INT64_MIN) == AUTH_OK);
	check(sv0("{\"exp\":-9223372036854775808}", INT64_MIN) == AUTH_OK);
	check(sv0("{\"exp\":-9223372036854775808}", INT64_MAX) ==
	    AUTH_EXPIRED);
	check(sv0("{\"nbf\":9223372036854775807}", INT64_MAX) == AUTH_OK);
	check(sv0("{\"nbf\":9223372036854775807}", INT64_MIN) ==
	    AUTH_NOT_YET);
	check(sv0("{\"nbf\":-9223372036854775808}", INT64_MIN) == AUTH_OK);

	/* Only integers. */
	check(sv0("{\"exp\":1.5e9}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"exp\":2000000000.5}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"exp\":\"2000000000\"}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"exp\":null}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"exp\":9223372036854775808}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"nbf\":true}", NOW) == AUTH_BAD_CLAIM);
	check(sv(HS256, "{\"exp\":2000000000,\"iat\":1.5,\"x\":\"y\"}", NOW,
	    &c) == AUTH_OK);
	check(c.exp == 2000000000);
	auth_claims_free(&c);
}

static void
test_sub(void)
{
	struct auth_claims c;
	char pay[512], s[256];

	memset(s, 'u', AUTH_MAX_SUB);
	s[AUTH_MAX_SUB] = '\0';
	snprintf(pay, sizeof(pay), "{\"sub\":\"%s\"}", s);
	check(sv(HS256, pay, NOW, &c) == AUTH_OK);
	check(c.sub != NULL && strlen(c.sub) == AUTH_MAX_SUB);
	auth_claims_free(&c);
	snprintf(pay, sizeof(pay), "{\"sub\":\"%su\"}", s);
	check(sv0(pay, NOW) == AUTH_TOO_LARGE);

	/* The limit counts unescaped bytes: "\u00e9" is two. */
	memset(s, 'u', AUTH_MAX_SUB - 2);
	s[AUTH_MAX_SUB - 2] = '\0';
	snprintf(pay, sizeof(pay), "{\"sub\":\"%s\\u00e9\"}", s);
	check(sv(HS256, pay, NOW, &c) == AUTH_OK);
	check(c.sub != NULL && strlen(c.sub) == AUTH_MAX_SUB &&
	    memcmp(c.sub + AUTH_MAX_SUB - 2, "\xc3\xa9", 2) == 0);
	auth_claims_free(&c);
	snprintf(pay, sizeof(pay), "{\"sub\":\"%su\\u00e9\"}", s);
	check(sv0(pay, NOW) == AUTH_TOO_LARGE);

	check(sv0("{\"sub\":\"a\\nb\"}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"sub\":\"a\\u0000b\"}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"sub\":\"a\\u007fb\"}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"sub\":42}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"sub\":null}", NOW) == AUTH_BAD_CLAIM);
	check(sv(HS256, "{\"sub\":\"\"}", NOW, &c) == AUTH_OK);
	check(c.sub != NULL && c.sub[0] == '\0');
	auth_claims_free(&c);
	check(sv(HS256, "{\"sub\":\"Zo\\u00eb \\\"z\\\"\"}", NOW, &c) ==
	    AUTH_OK);
	check(c.sub != NULL && strcmp(c.sub, "Zo\xc3\xab \"z\"") == 0);
	auth_claims_free(&c);
}

static void
test_groups(void)
{
	struct auth_claims c;
	char g[80], pay[256];

	check(sv(HS256, "{\"groups\":[\"chat:a\"]}", NOW, &c) == AUTH_OK);
	check(join(&c, "chat:a"));
	check(!join(&c, "chat:b"));
	check(!join(&c, "chat:a:b"));
	check(!join(&c, "chat:"));
	check(!join(&c, "chat:aa"));
	check(!join(&c, "Chat:a"));
	check(!pub(&c, "chat:a"));	/* no "publish": no right */
	auth_claims_free(&c);

	/* "chat:*": anything after "chat:", at least one byte. */
	check(sv(HS256, "{\"groups\":[\"chat:*\"]}", NOW, &c) == AUTH_OK);
	check(join(&c, "chat:b"));
	check(join(&c, "chat:b:c"));
	check(join(&c, "chat:-"));
	check(!join(&c, "chat:"));
	check(!join(&c, "chat"));
	check(!join(&c, "chatx"));
	check(!join(&c, "chatx:b"));
	check(!join(&c, "xchat:b"));
	check(!join(&c, "chat:*"));	/* not a group name */
	check(!join(&c, "chat:b c"));
	check(!join(&c, ""));
	check(auth_may_join(&c, "chat:b", 5) == 0);	/* "chat:" */
	check(auth_may_join(&c, "chat:b\0", 7) == 0);
	auth_claims_free(&c);

	/* "*": every group, but only group names. */
	check(sv(HS256, "{\"groups\":[\"*\"]}", NOW, &c) == AUTH_OK);
	check(join(&c, "events"));
	check(join(&c, "a"));
	check(!join(&c, ""));
	check(!join(&c, "*"));
	check(!join(&c, "a/b"));
	check(!join(&c, "\xc3\xa9"));
	memset(g, 'g', AUTH_MAX_GROUP + 1);
	check(auth_may_join(&c, g, AUTH_MAX_GROUP) == 1);
	check(auth_may_join(&c, g, AUTH_MAX_GROUP + 1) == 0);
	auth_claims_free(&c);

	/* Several patterns; an empty array grants nothing. */
	check(sv(HS256, "{\"groups\":[\"events\",\"agent:*\",\"monitor\"]}",
	    NOW, &c) == AUTH_OK);
	check(c.njoin == 3);
	check(join(&c, "events") && join(&c, "agent:a7") &&
	    join(&c, "monitor"));
	check(!join(&c, "session:s1") && !join(&c, "agent"));
	auth_claims_free(&c);
	check(sv(HS256, "{\"groups\":[]}", NOW, &c) == AUTH_OK);
	check(c.njoin == 0 && !join(&c, "events"));
	auth_claims_free(&c);

	/* Bad patterns refuse the whole token. */
	check(sv0("{\"groups\":[\"\"]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":[\"chat*\"]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":[\":*\"]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":[\"*:*\"]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":[\"a*:*\"]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":[\"a:**\"]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":[\"**\"]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":[\"*a\"]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":[\"a b\"]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":[\"a/b\"]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":[\"a\\u0000\"]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":[\"ok\",\"\\u00e9\"]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":[\"ok\",1]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":[[\"ok\"]]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":\"chat:a\"}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":null}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":true}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"groups\":{\"a\":1}}", NOW) == AUTH_BAD_CLAIM);
	/* An escaped pattern is the pattern it spells. */
	check(sv(HS256, "{\"groups\":[\"chat\\u003a\\u002a\"]}", NOW, &c) ==
	    AUTH_OK);
	check(join(&c, "chat:x") && !join(&c, "chatx"));
	auth_claims_free(&c);

	/* Pattern length at N and N+1, exact and prefix. */
	memset(g, 'p', sizeof(g));
	snprintf(pay, sizeof(pay), "{\"groups\":[\"%.*s\"]}",
	    AUTH_MAX_PATTERN, g);
	check(sv(HS256, pay, NOW, &c) == AUTH_OK);
	check(auth_may_join(&c, g, AUTH_MAX_PATTERN) == 1);
	check(auth_may_join(&c, g, AUTH_MAX_PATTERN - 1) == 0);
	auth_claims_free(&c);
	snprintf(pay, sizeof(pay), "{\"groups\":[\"%.*s\"]}",
	    AUTH_MAX_PATTERN + 1, g);
	check(sv0(pay, NOW) == AUTH_BAD_CLAIM);
	snprintf(pay, sizeof(pay), "{\"groups\":[\"%.*s:*\"]}",
	    AUTH_MAX_PATTERN - 2, g);
	check(sv(HS256, pay, NOW, &c) == AUTH_OK);
	g[AUTH_MAX_PATTERN - 2] = ':';
	g[AUTH_MAX_PATTERN - 1] = 'x';
	check(auth_may_join(&c, g, AUTH_MAX_PATTERN) == 1);
	check(auth_may_join(&c, g, AUTH_MAX_PATTERN - 1) == 0);
	auth_claims_free(&c);
	memset(g, 'p', sizeof(g));
	snprintf(pay, sizeof(pay), "{\"groups\":[\"%.*s:*\"]}",
	    AUTH_MAX_PATTERN - 1, g);
	check(sv0(pay, NOW) == AUTH_BAD_CLAIM);
	/* The longest a prefix pattern may be, escaped: still 64 bytes. */
	snprintf(pay, sizeof(pay), "{\"groups\":[\"%.*s\\u003a*\"]}",
	    AUTH_MAX_PATTERN - 2, g);
	check(sv0(pay, NOW) == AUTH_OK);
}

static void
test_publish(void)
{
	struct auth_claims c;

	/* An array: its own patterns, independent of "groups". */
	check(sv(HS256, "{\"groups\":[\"chat:*\"],\"publish\":[\"chat:s1\","
	    "\"events\"]}", NOW, &c) == AUTH_OK);
	check(c.njoin == 1 && c.npub == 2);
	check(pub(&c, "chat:s1"));
	check(pub(&c, "events"));
	check(!join(&c, "events"));
	check(!pub(&c, "chat:s2"));
	check(!pub(&c, "chat:*"));
	check(!pub(&c, "*"));
	check(join(&c, "chat:s2"));
	auth_claims_free(&c);

	/* true: wherever it may join. */
	check(sv(HS256, "{\"publish\":true,\"groups\":[\"agent:*\",\"x\"]}",
	    NOW, &c) == AUTH_OK);
	check(c.pub_join && c.npub == 0);
	check(pub(&c, "agent:a7") && pub(&c, "x"));
	check(!pub(&c, "agent") && !pub(&c, "y"));
	auth_claims_free(&c);
	check(sv(HS256, "{\"publish\":true}", NOW, &c) == AUTH_OK);
	check(!pub(&c, "events") && !join(&c, "events"));
	auth_claims_free(&c);

	/* false, absent or empty: nowhere. */
	check(sv(HS256, "{\"groups\":[\"*\"],\"publish\":false}", NOW, &c) ==
	    AUTH_OK);
	check(join(&c, "events") && !pub(&c, "events"));
	auth_claims_free(&c);
	check(sv(HS256, "{\"groups\":[\"*\"],\"publish\":[]}", NOW, &c) ==
	    AUTH_OK);
	check(join(&c, "events") && !pub(&c, "events"));
	auth_claims_free(&c);

	/* "*" publishes to every group name, never to the broadcast. */
	check(sv(HS256, "{\"publish\":[\"*\"]}", NOW, &c) == AUTH_OK);
	check(pub(&c, "anything") && !join(&c, "anything") && !pub(&c, "*"));
	auth_claims_free(&c);

	check(sv0("{\"publish\":\"events\"}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"publish\":null}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"publish\":1}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"publish\":[\"a\",\"b*\"]}", NOW) == AUTH_BAD_CLAIM);
	check(sv0("{\"publish\":[true]}", NOW) == AUTH_BAD_CLAIM);

	/* Rights of nothing. */
	memset(&c, 0, sizeof(c));
	check(!join(&c, "events") && !pub(&c, "events"));
	check(auth_may_join(NULL, "events", 6) == 0);
	check(auth_may_publish(NULL, "events", 6) == 0);
}

/* {"groups":[...n patterns...],"publish":[...m...]} into pay. */
static void
many(char *pay, size_t cap, int n, int m)
{
	size_t len;
	int i;

	len = (size_t)snprintf(pay, cap, "{\"groups\":[");
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(pay + len, cap - len, "%s\"g%d\"",
		    i ? "," : "", i);
	len += (size_t)snprintf(pay + len, cap - len, "],\"publish\":[");
	for (i = 0; i < m; i++)
		len += (size_t)snprintf(pay + len, cap - len, "%s\"p%d:*\"",
		    i ? "," : "", i);
	snprintf(pay + len, cap - len, "]}");
}

static void
test_limits(void)
{
	struct auth_claims c;
	static char pay[8192], pad[4096];
	size_t n = 0, k, d;
	char *big;

	/* Patterns at N and N+1, in each claim. */
	many(pay, sizeof(pay), AUTH_MAX_PATTERNS, AUTH_MAX_PATTERNS);
	check(sv(HS256, pay, NOW, &c) == AUTH_OK);
	check(c.njoin == AUTH_MAX_PATTERNS && c.npub == AUTH_MAX_PATTERNS);
	check(join(&c, "g0") && join(&c, "g63") && !join(&c, "g64"));
	check(pub(&c, "p0:x") && pub(&c, "p63:x") && !pub(&c, "p64:x"));
	check(!pub(&c, "g0") && !join(&c, "p0:x"));
	auth_claims_free(&c);
	/* A full subject and both lists full: one allocation holds all. */
	memset(pad, 's', AUTH_MAX_SUB);
	n = (size_t)snprintf(pay, sizeof(pay), "{\"sub\":\"%.*s\",",
	    AUTH_MAX_SUB, pad);
	many(pay + n - 1, sizeof(pay) - n + 1, AUTH_MAX_PATTERNS,
	    AUTH_MAX_PATTERNS);
	pay[n - 1] = ',';
	check(sv(HS256, pay, NOW, &c) == AUTH_OK);
	check(c.sub != NULL && strlen(c.sub) == AUTH_MAX_SUB);
	check(c.njoin == AUTH_MAX_PATTERNS && c.npub == AUTH_MAX_PATTERNS);
	check(join(&c, "g0") && join(&c, "g63") && pub(&c, "p63:x"));
	auth_claims_free(&c);
	many(pay, sizeof(pay), AUTH_MAX_PATTERNS + 1, 0);
	check(sv(HS256, pay, NOW, &c) == AUTH_TOO_LARGE && c.sub == NULL);
	many(pay, sizeof(pay), 0, AUTH_MAX_PATTERNS + 1);
	check(sv0(pay, NOW) == AUTH_TOO_LARGE);

	/* Token length at N and N+1: grow an ignored claim to fit. */
	for (k = 0; k < sizeof(pad) - 1; k++) {
		memset(pad, 'x', k);
		pad[k] = '\0';
		snprintf(pay, sizeof(pay),
		    "{\"groups\":[\"a\"],\"pad\":\"%s\"}", pad);
		n = tj_sign(KEY, KEYLEN, HS256, pay, tokbuf, sizeof(tokbuf));
		if (n >= AUTH_MAX_TOKEN)
			break;
	}
	check(n == AUTH_MAX_TOKEN);
	check(auth_verify((const uint8_t *)KEY, KEYLEN, tokbuf, n, NOW, &c) ==
	    AUTH_OK);
	check(join(&c, "a"));
	auth_claims_free(&c);
	pad[k] = 'x';
	pad[k + 1] = '\0';
	snprintf(pay, sizeof(pay), "{\"groups\":[\"a\"],\"pad\":\"%s\"}", pad);
	n = tj_sign(KEY, KEYLEN, HS256, pay, tokbuf, sizeof(tokbuf));
	check(n == AUTH_MAX_TOKEN + 1);
	check(auth_verify((const uint8_t *)KEY, KEYLEN, tokbuf, n, NOW, &c) ==
	    AUTH_TOO_LARGE);
	/* The length is checked before anything is read. */
	big = malloc(AUTH_MAX_TOKEN + 1);
	if (big != NULL) {
		memset(big, '.', AUTH_MAX_TOKEN + 1);
		check(auth_verify((const uint8_t *)KEY, KEYLEN, big,
		    AUTH_MAX_TOKEN + 1, NOW, &c) == AUTH_TOO_LARGE);
		check(auth_verify((const uint8_t *)KEY, KEYLEN, big,
		    AUTH_MAX_TOKEN, NOW, &c) == AUTH_MALFORMED);
		free(big);
	}

	/* Nesting at N and N+1, the payload object counting as one. */
	for (d = AUTH_MAX_DEPTH - 1; d <= AUTH_MAX_DEPTH; d++) {
		memcpy(pay, "{\"x\":", 5);
		memset(pay + 5, '[', d);
		memset(pay + 5 + d, ']', d);
		memcpy(pay + 5 + 2 * d, "}", 2);
		check(sv0(pay, NOW) == (d < AUTH_MAX_DEPTH ? AUTH_OK :
		    AUTH_MALFORMED));
	}
}

static void
test_key_equal(void)
{
	const uint8_t *k = (const uint8_t *)"s3cr3t-api-key";

	check(auth_key_equal(k, 14, (const uint8_t *)"s3cr3t-api-key", 14));
	check(!auth_key_equal(k, 14, (const uint8_t *)"s3cr3t-api-kex", 14));
	check(!auth_key_equal(k, 14, (const uint8_t *)"S3cr3t-api-key", 14));
	check(!auth_key_equal(k, 13, k, 14));
	check(!auth_key_equal(k, 14, k, 13));
	check(!auth_key_equal(k, 14, (const uint8_t *)"s3cr3t-api-key\0",
	    15));
	check(!auth_key_equal(k, 0, k, 0));
	check(!auth_key_equal(k, 0, k, 14));
	check(!auth_key_equal(k, 14, k, 0));
	check(auth_key_equal(k, 1, (const uint8_t *)"s", 1));
}

static void
test_strerror(void)
{
	const char *s[9];
	int i, j, dup = 0;

	for (i = 0; i < 9; i++) {
		s[i] = auth_strerror(-i);
		check(s[i] != NULL && s[i][0] != '\0');
	}
	for (i = 0; i < 9; i++)
		for (j = i + 1; j < 9; j++)
			dup += strcmp(s[i], s[j]) == 0;
	check(dup == 0);
	check(strcmp(auth_strerror(AUTH_EXPIRED), "token expired") == 0);
	check(auth_strerror(-99) != NULL && auth_strerror(1) != NULL);
	check(auth_group_valid("a.b_c:d-E9", 10));
	check(!auth_group_valid("", 0));
}

int
main(void)
{
	test_b64url();
	test_rfc7515();
	test_vector();
	test_split();
	test_malformed();
	test_sig();
	test_alg();
	test_time();
	test_sub();
	test_groups();
	test_publish();
	test_limits();
	test_key_equal();
	test_strerror();
	return t_done();
}
