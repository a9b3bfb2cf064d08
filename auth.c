/*
 * auth.c - HS256 JWT verification and API key comparison.
 *
 * This layer checks bytes against a secret and answers yes or no; it does
 * no I/O, keeps no state between calls (one setting, auth_require_exp(),
 * made once at start), never signs, and never copies token bytes into an
 * error message.  Decoding the JSON of a token is
 * json.c's job; what a refusal means on the wire is the server's.
 *
 * auth_verify() returns AUTH_OK (0) or a negative enum auth_err; the other
 * functions return 1 for yes and 0 for no.  The accepted token form and
 * the claim syntax are described in auth.h.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"
#include "json.h"

#define AUTH_SIG_LEN		32	/* HMAC-SHA256 */
#define AUTH_PART_MAX		AUTH_B64URL_DECLEN(AUTH_MAX_TOKEN)

static int	b64url_val(uint8_t);
static int	check_header(const uint8_t *, size_t);
static int	check_sig(const uint8_t *, size_t, const char *, size_t,
		    const char *, size_t);
static int	check_times(const struct json_doc *, int64_t, int64_t *);
static int	claim_int(const struct json_doc *, const char *, int64_t *);
static int	pattern_list(const struct json_doc *, int, size_t *,
		    uint8_t *);
static int	copy_patterns(const struct json_doc *, int, char **,
		    const char *);
static int	read_claims(const uint8_t *, size_t, int64_t,
		    struct auth_claims *);
static int	group_char(uint8_t);
static int	pattern_valid(const char *, size_t);

static int	require_exp;	/* a token without "exp" is refused */
static int	pattern_match(const char *, size_t, const char *, size_t);
static int	match_any(const char *, unsigned, const char *, size_t);
static const char *first_pattern(const struct auth_claims *);

/*
 * base64url (RFC 4648 §5, unpadded as RFC 7515 §2 requires)
 */

static int
b64url_val(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

long
auth_b64url_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	size_t i, n = 0;
	int v;

	/* One leftover character carries 6 bits: not even one byte. */
	if (len % 4 == 1 || len > LONG_MAX)
		return -1;
	if (cap < AUTH_B64URL_DECLEN(len))
		return -1;
	for (i = 0; i < len; i++) {
		if ((v = b64url_val(in[i])) < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		if (i % 4 == 3) {
			out[n++] = (uint8_t)(acc >> 16);
			out[n++] = (uint8_t)(acc >> 8);
			out[n++] = (uint8_t)acc;
			acc = 0;
		}
	}
	/*
	 * The tail's unused low bits must be zero (RFC 4648 §3.5 lets a
	 * decoder insist): otherwise "AB", "AC", ... "AP" would all be the
	 * same byte, and one signed token would have many spellings.
	 */
	switch (len % 4) {
	case 2:
		if (acc & 0xf)
			return -1;
		out[n++] = (uint8_t)(acc >> 4);
		break;
	case 3:
		if (acc & 0x3)
			return -1;
		out[n++] = (uint8_t)(acc >> 10);
		out[n++] = (uint8_t)(acc >> 2);
		break;
	}
	return (long)n;
}

/*
 * Header and signature
 */

/*
 * RFC 8725 §3.1: take the algorithm from configuration, and only check
 * that the header agrees.  Anything but the exact string "HS256" is
 * refused, which closes the "alg":"none" and key-confusion doors.
 */
static int
check_header(const uint8_t *buf, size_t len)
{
	struct json_doc doc;
	int alg, rc;

	memset(&doc, 0, sizeof(doc));
	rc = AUTH_MALFORMED;
	if (json_parse(&doc, buf, len, AUTH_MAX_DEPTH, AUTH_MAX_TOKEN) != 0)
		goto out;
	if (doc.tok[0].type != JSON_OBJECT)
		goto out;
	rc = AUTH_BAD_ALG;
	if ((alg = json_find(&doc, 0, "alg")) < 0 ||
	    doc.tok[alg].type != JSON_STRING ||
	    !json_tok_eq(&doc, alg, "HS256"))
		goto out;
	/* RFC 7515 §4.1.11: extensions we do not know must not be ignored. */
	rc = AUTH_MALFORMED;
	if (json_find(&doc, 0, "crit") >= 0)
		goto out;
	rc = AUTH_OK;
out:
	json_doc_free(&doc);
	return rc;
}

/*
 * RFC 7515 §5.2: the MAC covers the ASCII "header.payload" exactly as
 * sent, so it is computed over the token's bytes, not the decoded JSON.
 * The computed MAC is a valid signature for whatever the sender chose,
 * so it is wiped before returning.
 */
static int
check_sig(const uint8_t *secret, size_t secret_len, const char *signed_part,
    size_t signed_len, const char *sig64, size_t sig64_len)
{
	uint8_t sig[AUTH_PART_MAX];
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	long n;
	int rc;

	if ((n = auth_b64url_decode((const uint8_t *)sig64, sig64_len, sig,
	    sizeof(sig))) < 0)
		return AUTH_MALFORMED;
	/* An empty key would make every signature anybody's to forge. */
	if (secret_len == 0 || n != AUTH_SIG_LEN)
		return AUTH_BAD_SIG;
	if (secret_len > INT_MAX)
		return AUTH_INTERNAL;
	if (HMAC(EVP_sha256(), secret, (int)secret_len,
	    (const unsigned char *)signed_part, signed_len, mac,
	    &maclen) == NULL || maclen != AUTH_SIG_LEN)
		rc = AUTH_INTERNAL;
	else if (CRYPTO_memcmp(mac, sig, AUTH_SIG_LEN) != 0)
		rc = AUTH_BAD_SIG;
	else
		rc = AUTH_OK;
	OPENSSL_cleanse(mac, sizeof(mac));
	return rc;
}

/*
 * Claims
 */

/* 0 and *v set, 1 if absent (*v = 0), or -1 if not an integer. */
static int
claim_int(const struct json_doc *doc, const char *name, int64_t *v)
{
	int i;

	*v = 0;
	if ((i = json_find(doc, 0, name)) < 0)
		return 1;
	if (doc->tok[i].type != JSON_NUMBER || json_tok_int(doc, i, v) != 0)
		return -1;
	return 0;
}

/*
 * Sets *exp (0 when absent).  The comparisons are arranged so that nothing
 * overflows whatever the token or the clock says: exp = INT64_MAX simply
 * never expires.
 */
static int
check_times(const struct json_doc *doc, int64_t now, int64_t *exp)
{
	int64_t nbf;
	int rc;

	if ((rc = claim_int(doc, "exp", exp)) < 0)
		return AUTH_BAD_CLAIM;
	if (rc == 1 && require_exp)
		return AUTH_BAD_CLAIM;
	if (rc == 0 && *exp <= INT64_MAX - AUTH_LEEWAY_S &&
	    now >= *exp + AUTH_LEEWAY_S)
		return AUTH_EXPIRED;
	if ((rc = claim_int(doc, "nbf", &nbf)) < 0)
		return AUTH_BAD_CLAIM;
	if (rc == 0 && now <= INT64_MAX - AUTH_LEEWAY_S &&
	    now + AUTH_LEEWAY_S < nbf)
		return AUTH_NOT_YET;
	return AUTH_OK;
}

static int
group_char(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
	    c == '-';
}

int
auth_group_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > AUTH_MAX_GROUP)
		return 0;
	for (i = 0; i < len; i++)
		if (!group_char((uint8_t)s[i]))
			return 0;
	return 1;
}

/* "*", a group name, or a name prefix ending in ':' followed by '*'. */
static int
pattern_valid(const char *p, size_t len)
{
	if (len == 1 && p[0] == '*')
		return 1;
	if (len >= 3 && p[len - 1] == '*' && p[len - 2] == ':')
		return auth_group_valid(p, len - 1);
	return auth_group_valid(p, len);
}

/*
 * Check the array at index arr: its size into *n, and the bytes its
 * patterns need, NUL included, added to *need.  A string token's escaped
 * length bounds its unescaped length, so *need is an upper bound found
 * without unescaping anything twice.
 */
static int
pattern_list(const struct json_doc *doc, int arr, size_t *need, uint8_t *n)
{
	uint32_t k;
	int i;

	if (doc->tok[arr].type != JSON_ARRAY)
		return AUTH_BAD_CLAIM;
	if (doc->tok[arr].size > AUTH_MAX_PATTERNS)
		return AUTH_TOO_LARGE;
	for (k = 0, i = arr + 1; k < doc->tok[arr].size;
	    k++, i = (int)doc->tok[i].next) {
		if (doc->tok[i].type != JSON_STRING)
			return AUTH_BAD_CLAIM;
		*need += doc->tok[i].len + 1;
	}
	*n = (uint8_t)doc->tok[arr].size;
	return AUTH_OK;
}

/* Append the patterns of the array at arr at *p (before end), advancing *p. */
static int
copy_patterns(const struct json_doc *doc, int arr, char **p, const char *end)
{
	uint32_t k;
	size_t cap;
	long n;
	int i;

	for (k = 0, i = arr + 1; k < doc->tok[arr].size;
	    k++, i = (int)doc->tok[i].next) {
		cap = (size_t)(end - *p) - 1;
		if (cap > AUTH_MAX_PATTERN)
			cap = AUTH_MAX_PATTERN;
		n = json_tok_str(doc, i, *p, cap);
		if (n < 0 || !pattern_valid(*p, (size_t)n))
			return AUTH_BAD_CLAIM;
		(*p)[n] = '\0';
		*p += n + 1;
	}
	return AUTH_OK;
}

/*
 * Runs only on a payload whose signature has been checked.  The claims are
 * built in a local struct and handed over whole, so a refused token leaves
 * out zeroed.
 */
static int
read_claims(const uint8_t *buf, size_t len, int64_t now,
    struct auth_claims *out)
{
	struct json_doc doc;
	struct auth_claims c;
	char *p, *end;
	size_t i, need, room = 0;
	long n;
	int sub, grp, pub, rc;

	memset(&doc, 0, sizeof(doc));
	memset(&c, 0, sizeof(c));
	rc = AUTH_MALFORMED;
	if (json_parse(&doc, buf, len, AUTH_MAX_DEPTH, AUTH_MAX_TOKEN) != 0)
		goto fail;
	if (doc.tok[0].type != JSON_OBJECT)
		goto fail;
	if ((rc = check_times(&doc, now, &c.exp)) != AUTH_OK)
		goto fail;

	/* First check every claim's type and size, then allocate once. */
	need = 1;
	rc = AUTH_BAD_CLAIM;
	if ((sub = json_find(&doc, 0, "sub")) >= 0) {
		if (doc.tok[sub].type != JSON_STRING)
			goto fail;
		room = doc.tok[sub].len < AUTH_MAX_SUB ? doc.tok[sub].len :
		    AUTH_MAX_SUB;
		need += room;
	}
	if ((grp = json_find(&doc, 0, "groups")) >= 0 &&
	    (rc = pattern_list(&doc, grp, &need, &c.njoin)) != AUTH_OK)
		goto fail;
	if ((pub = json_find(&doc, 0, "publish")) >= 0) {
		switch (doc.tok[pub].type) {
		case JSON_TRUE:
			c.pub_join = 1;
			pub = -1;
			break;
		case JSON_FALSE:
			pub = -1;
			break;
		default:
			if ((rc = pattern_list(&doc, pub, &need, &c.npub)) !=
			    AUTH_OK)
				goto fail;
		}
	}

	rc = AUTH_INTERNAL;
	if ((c.sub = malloc(need)) == NULL)
		goto fail;
	p = c.sub;
	end = c.sub + need;
	if (sub >= 0) {
		/*
		 * The type is known, and the room is at least the unescaped
		 * length when that is within the limit, so -1 can only mean
		 * "longer than AUTH_MAX_SUB".
		 */
		rc = AUTH_TOO_LARGE;
		if ((n = json_tok_str(&doc, sub, p, room)) < 0)
			goto fail;
		/* The subject is logged; keep control bytes out of logs. */
		rc = AUTH_BAD_CLAIM;
		for (i = 0; i < (size_t)n; i++)
			if ((uint8_t)p[i] < 0x20 || (uint8_t)p[i] == 0x7f)
				goto fail;
		p += n;
	}
	*p++ = '\0';
	if (grp >= 0 && (rc = copy_patterns(&doc, grp, &p, end)) != AUTH_OK)
		goto fail;
	if (pub >= 0 && (rc = copy_patterns(&doc, pub, &p, end)) != AUTH_OK)
		goto fail;

	json_doc_free(&doc);
	*out = c;
	return AUTH_OK;
fail:
	json_doc_free(&doc);
	free(c.sub);
	return rc;
}

/*
 * The verifier
 */

void
auth_require_exp(int on)
{
	require_exp = on != 0;
}

int
auth_verify(const uint8_t *secret, size_t secret_len, const char *tok,
    size_t len, int64_t now, struct auth_claims *out)
{
	uint8_t buf[AUTH_PART_MAX];
	const char *dot1, *dot2, *end;
	long n;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len > AUTH_MAX_TOKEN)
		return AUTH_TOO_LARGE;
	if (len == 0)
		return AUTH_MALFORMED;
	end = tok + len;
	if ((dot1 = memchr(tok, '.', len)) == NULL ||
	    (dot2 = memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1))) == NULL ||
	    memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)) != NULL)
		return AUTH_MALFORMED;

	if ((n = auth_b64url_decode((const uint8_t *)tok,
	    (size_t)(dot1 - tok), buf, sizeof(buf))) < 0)
		return AUTH_MALFORMED;
	if ((rc = check_header(buf, (size_t)n)) != AUTH_OK)
		return rc;

	/* RFC 8725 §3.3: nothing in the payload is read before this. */
	if ((rc = check_sig(secret, secret_len, tok, (size_t)(dot2 - tok),
	    dot2 + 1, (size_t)(end - dot2 - 1))) != AUTH_OK)
		return rc;

	if ((n = auth_b64url_decode((const uint8_t *)dot1 + 1,
	    (size_t)(dot2 - dot1 - 1), buf, sizeof(buf))) < 0)
		return AUTH_MALFORMED;
	return read_claims(buf, (size_t)n, now, out);
}

const char *
auth_strerror(int err)
{
	switch (err) {
	case AUTH_OK:
		return "ok";
	case AUTH_TOO_LARGE:
		return "token too large";
	case AUTH_MALFORMED:
		return "malformed token";
	case AUTH_BAD_ALG:
		return "token algorithm is not HS256";
	case AUTH_BAD_SIG:
		return "bad token signature";
	case AUTH_EXPIRED:
		return "token expired";
	case AUTH_NOT_YET:
		return "token not yet valid";
	case AUTH_BAD_CLAIM:
		return "bad token claim";
	case AUTH_INTERNAL:
		return "internal error checking token";
	}
	return "unknown token error";
}

void
auth_claims_free(struct auth_claims *c)
{
	if (c == NULL)
		return;
	free(c->sub);
	memset(c, 0, sizeof(*c));
}

/*
 * Rights
 */

static int
pattern_match(const char *p, size_t plen, const char *g, size_t glen)
{
	if (plen == 1 && p[0] == '*')
		return 1;
	/* "chat:*": the prefix, and at least one byte more. */
	if (p[plen - 1] == '*')
		return glen >= plen && memcmp(p, g, plen - 1) == 0;
	return glen == plen && memcmp(p, g, plen) == 0;
}

/* Does any of the n patterns starting at p match g? */
static int
match_any(const char *p, unsigned n, const char *g, size_t glen)
{
	size_t plen;

	for (; n > 0; n--) {
		plen = strlen(p);
		if (pattern_match(p, plen, g, glen))
			return 1;
		p += plen + 1;
	}
	return 0;
}

/* The first pattern follows the subject. */
static const char *
first_pattern(const struct auth_claims *c)
{
	return c->sub + strlen(c->sub) + 1;
}

int
auth_may_join(const struct auth_claims *c, const char *group, size_t len)
{
	if (c == NULL || c->sub == NULL || !auth_group_valid(group, len))
		return 0;
	return match_any(first_pattern(c), c->njoin, group, len);
}

int
auth_may_publish(const struct auth_claims *c, const char *group, size_t len)
{
	const char *p;
	unsigned k;

	if (c == NULL || c->sub == NULL || !auth_group_valid(group, len))
		return 0;
	if (c->pub_join)
		return match_any(first_pattern(c), c->njoin, group, len);
	p = first_pattern(c);
	for (k = 0; k < c->njoin; k++)
		p += strlen(p) + 1;
	return match_any(p, c->npub, group, len);
}

/* The broadcast "*" is not a group one joins: it reaches a token holder
 * only when the token grants every group. */
int
auth_may_join_all(const struct auth_claims *c)
{
	const char *p;

	if (c == NULL || c->sub == NULL)
		return 0;
	p = first_pattern(c);
	for (unsigned k = 0; k < c->njoin; k++, p += strlen(p) + 1)
		if (strcmp(p, "*") == 0)
			return 1;
	return 0;
}

int
auth_may_publish_all(const struct auth_claims *c)
{
	const char *p;

	if (c == NULL || c->sub == NULL)
		return 0;
	if (c->pub_join)
		return auth_may_join_all(c);
	p = first_pattern(c);
	for (unsigned k = 0; k < c->njoin; k++)
		p += strlen(p) + 1;
	for (unsigned k = 0; k < c->npub; k++, p += strlen(p) + 1)
		if (strcmp(p, "*") == 0)
			return 1;
	return 0;
}

/*
 * API keys
 */

/*
 * Comparing digests rather than the keys makes the comparison's length
 * fixed, so CRYPTO_memcmp() reveals neither where nor whether the lengths
 * differ.  A collision would need a second preimage of SHA-256.
 */
int
auth_key_equal(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	uint8_t da[EVP_MAX_MD_SIZE], db[EVP_MAX_MD_SIZE];
	unsigned int la = 0, lb = 0;
	int eq = 0;

	if (alen == 0 || blen == 0)
		return 0;
	if (EVP_Digest(a, alen, da, &la, EVP_sha256(), NULL) == 1 &&
	    EVP_Digest(b, blen, db, &lb, EVP_sha256(), NULL) == 1 &&
	    la == lb)
		eq = CRYPTO_memcmp(da, db, la) == 0;
	OPENSSL_cleanse(da, sizeof(da));
	OPENSSL_cleanse(db, sizeof(db));
	return eq;
}
