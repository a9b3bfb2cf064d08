/*
 * auth.h - HS256 JSON Web Token verification and API key comparison.
 *
 * auth.c does no I/O, keeps no state but one setting
 * (auth_require_exp()) and never signs: it checks a token a
 * client presented against the server's secret and turns its claims into
 * the group rights the hub enforces.  Where the token comes from (query,
 * header) and what happens on refusal (401, close 1008) is the caller's
 * business.
 *
 * Only one form is accepted, and strictly (RFC 7515 compact serialization,
 * RFC 7519 claims, RFC 7518 §3.2 HMAC):
 *
 *	BASE64URL(header) "." BASE64URL(payload) "." BASE64URL(signature)
 *
 * - The token is at most AUTH_MAX_TOKEN bytes; that is checked first.
 * - Each part is unpadded base64url (RFC 7515 §2): '=' is refused, as is
 *   any byte outside [A-Za-z0-9_-], a length of 4n+1, and unused trailing
 *   bits that are not zero, so each token has exactly one spelling.
 * - The header is a JSON object whose "alg" is exactly "HS256".  "none",
 *   "HS512", "hs256", a missing or non-string "alg" are AUTH_BAD_ALG.  A
 *   header naming "crit" extensions is AUTH_MALFORMED, since this verifier
 *   understands none (RFC 7515 §4.1.11).  Other header members are ignored.
 * - The signature is HMAC-SHA256 over the ASCII "header.payload", compared
 *   in constant time.  It is checked before any claim is read.
 * - The payload is a JSON object.  Claims not listed below ("iat", "iss",
 *   "aud", ...) are ignored.
 * - Header and payload are strict JSON (json.h), nested at most
 *   AUTH_MAX_DEPTH deep.  Names and strings compare after unescaping, and
 *   of duplicate members the last counts.
 *
 * The checks run in that order, so a token with several faults reports
 * the first: size, form, header, signature, then the claims.
 *
 * Claims:
 *
 *	"sub"	 string, at most AUTH_MAX_SUB bytes once unescaped, no control
 *		 characters (it ends up in logs).  Optional, "" when absent.
 *	"exp"	 integer seconds since the epoch (fractions are refused).
 *		 Optional: a token without it never expires, unless
 *		 auth_require_exp(1) makes it AUTH_BAD_CLAIM.  When
 *		 present the token is refused once
 *		 now >= exp + AUTH_LEEWAY_S (RFC 7519 §4.1.4).  It is kept
 *		 in the claims so that a connection can be closed (1008)
 *		 when its token runs out.
 *	"nbf"	 integer, optional; the token is refused while
 *		 now + AUTH_LEEWAY_S < nbf (RFC 7519 §4.1.5).
 *	"groups" array of patterns: the groups the holder may join.  Absent
 *		 means none: a token grants nothing it does not name.
 *	"publish" array of patterns: the groups the holder may publish to,
 *		 independent of "groups" (a backend worker may publish where it
 *		 may not listen).  true means "every group it may join"; false
 *		 or absent means none.
 *
 * A pattern is one of
 *
 *	"NAME"		exactly the group NAME (a valid group name, below);
 *	"PREFIX:*"	every group whose name starts with "PREFIX:" and has
 *			at least one byte after it: "chat:*" matches "chat:b"
 *			and "chat:b:c", but not "chat:", "chat" or "chatx".
 *			PREFIX is 1 or more bytes of the group alphabet, and
 *			the whole pattern at most AUTH_MAX_PATTERN bytes;
 *	"*"		every group.
 *
 * Anything else (a '*' elsewhere, an empty string, a non-string element,
 * a pattern longer than AUTH_MAX_PATTERN) refuses the whole token with
 * AUTH_BAD_CLAIM rather than quietly granting less than the issuer meant.
 *
 * A group name is 1..AUTH_MAX_GROUP bytes of [A-Za-z0-9._:-].  The
 * broadcast target "*" of the HTTP API is not a group name, so no token
 * grants publishing to it.
 */
#ifndef AUTH_H
#define AUTH_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_MAX_TOKEN		4096	/* bytes of the whole token */
#define AUTH_LEEWAY_S		30	/* clock skew allowed on exp and nbf */
#define AUTH_MAX_SUB		128	/* bytes of "sub", unescaped */
#define AUTH_MAX_PATTERNS	64	/* patterns in "groups"; in "publish" */
#define AUTH_MAX_PATTERN	64	/* bytes of one pattern */
#define AUTH_MAX_GROUP		64	/* bytes of a group name */
#define AUTH_MAX_DEPTH		16	/* JSON nesting in header and payload */
/*
 * RFC 7518 §3.2: an HS256 key must be at least as long as the hash.  The
 * verifier takes any non-empty key; it is for the option parser to refuse
 * a shorter --token-secret.
 */
#define AUTH_MIN_SECRET		32

/* Bytes that n base64url characters decode to at most. */
#define AUTH_B64URL_DECLEN(n)	((n) / 4 * 3 + (n) % 4 * 3 / 4)

/* Return codes of auth_verify(); auth_strerror() names each. */
enum auth_err {
	AUTH_OK		=  0,
	AUTH_TOO_LARGE	= -1,	/* token over AUTH_MAX_TOKEN, "sub" over
				   AUTH_MAX_SUB, over AUTH_MAX_PATTERNS */
	AUTH_MALFORMED	= -2,	/* not three base64url parts, header or
				   payload not a JSON object or too deep,
				   "crit" */
	AUTH_BAD_ALG	= -3,	/* "alg" is not exactly "HS256" */
	AUTH_BAD_SIG	= -4,	/* signature wrong, or an empty secret */
	AUTH_EXPIRED	= -5,	/* past exp + AUTH_LEEWAY_S */
	AUTH_NOT_YET	= -6,	/* before nbf - AUTH_LEEWAY_S */
	AUTH_BAD_CLAIM	= -7,	/* a claim of the wrong type, a bad pattern,
				   no "exp" when it is required */
	AUTH_INTERNAL	= -8	/* out of memory, or OpenSSL failed */
};

/*
 * What a verified token grants.  All members are zero until auth_verify()
 * succeeds, and a zeroed struct grants nothing.
 *
 * sub is owned (malloc'd, freed by auth_claims_free()) and holds, in one
 * allocation, the subject and then the patterns, each NUL-terminated:
 *
 *	sub "\0" join_1 "\0" ... join_njoin "\0" pub_1 "\0" ... pub_npub "\0"
 *
 * so printing c->sub prints the subject, and one free releases it all.
 */
struct auth_claims {
	int64_t	 exp;		/* "exp", 0 when absent */
	char	*sub;		/* owned; see above */
	uint8_t	 njoin;		/* patterns from "groups" */
	uint8_t	 npub;		/* patterns from "publish" */
	uint8_t	 pub_join;	/* "publish": true */
};

/*
 * Decode unpadded base64url in[0..len) into out (cap bytes).  Returns the
 * number of bytes written, or -1 if the input is not canonical unpadded
 * base64url (see above) or cap < AUTH_B64URL_DECLEN(len).  Nothing past
 * out + cap is written, and on -1 out's contents are unspecified.
 */
long	auth_b64url_decode(const uint8_t *in, size_t len, uint8_t *out,
	    size_t cap);

/*
 * Verify token tok[0..len) with secret[0..secret_len) at time now (seconds
 * since the epoch) and fill *out.  Returns AUTH_OK, or one of the negative
 * enum auth_err codes.  On any return *out is either the token's claims
 * (AUTH_OK) or zeroed, so auth_claims_free(out) is always right; *out is
 * overwritten, not freed, on entry.  tok need not be NUL-terminated.
 */
int	auth_verify(const uint8_t *secret, size_t secret_len, const char *tok,
	    size_t len, int64_t now, struct auth_claims *out);

/*
 * With on set, auth_verify() refuses a token without "exp" (AUTH_BAD_CLAIM)
 * instead of taking it as one that never expires.  Off by default; set
 * at start (--token-require-exp) and on SIGHUP, it holds for every later
 * call.
 */
void	auth_require_exp(int on);

/* Static text for an auth_verify() code; never contains token bytes. */
const char *auth_strerror(int err);

/* Release what c holds and zero it.  Accepts NULL and a zeroed struct. */
void	auth_claims_free(struct auth_claims *c);

/*
 * 1 if c grants joining, respectively publishing to, the group named
 * group[0..len), else 0.  A name that is not a valid group name is never
 * granted, whatever the patterns say.  c may be NULL or zeroed (0).
 */
int	auth_may_join(const struct auth_claims *c, const char *group,
	    size_t len);
int	auth_may_publish(const struct auth_claims *c, const char *group,
	    size_t len);

/*
 * 1 if c's "groups" hold the pattern "*" (every group), else 0: what it
 * takes to receive events broadcast to "*".
 */
int	auth_may_join_all(const struct auth_claims *c);

/*
 * 1 if c may publish to every group: "publish" holds "*", or is true
 * with "groups" holding "*".  What the session calls of the HTTP API
 * take with tokens on and no API key.
 */
int	auth_may_publish_all(const struct auth_claims *c);

/* 1 if s[0..len) is a valid group name, else 0. */
int	auth_group_valid(const char *s, size_t len);

/*
 * 1 if the API key a client sent, a[0..alen), equals the configured key
 * b[0..blen), else 0; 0 too if either is empty, so an unset key never
 * matches.  Both keys are hashed with SHA-256 and the digests compared with
 * CRYPTO_memcmp(), so the time taken does not depend on where the keys
 * differ nor on whether their lengths do; it grows only with alen + blen
 * in 64-byte blocks, which reveals no more than the key's length to within
 * a block.  Use a random key of 32 bytes or more.
 */
int	auth_key_equal(const uint8_t *a, size_t alen, const uint8_t *b,
	    size_t blen);

#endif
