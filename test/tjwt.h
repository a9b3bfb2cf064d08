/*
 * tjwt.h - make HS256 tokens for the token tests and the token fuzzer.
 *
 * wsd only verifies tokens, so signing lives here, outside the server.
 * It is written separately from auth.c (its own encoder, OpenSSL's HMAC)
 * so that a bug in the verifier's decoder is not mirrored by the signer.
 */
#ifndef TJWT_H
#define TJWT_H

#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

/* Unpadded base64url of in[0..len) into out, NUL-terminated; its length. */
static inline size_t
tj_b64url(const void *in, size_t len, char *out)
{
	static const char a[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char *p = in;
	size_t i, n = 0;
	unsigned long v;

	for (i = 0; i + 2 < len; i += 3) {
		v = (unsigned long)p[i] << 16 | (unsigned long)p[i + 1] << 8 |
		    p[i + 2];
		out[n++] = a[v >> 18 & 63];
		out[n++] = a[v >> 12 & 63];
		out[n++] = a[v >> 6 & 63];
		out[n++] = a[v & 63];
	}
	if (len - i == 1) {
		v = (unsigned long)p[i] << 16;
		out[n++] = a[v >> 18 & 63];
		out[n++] = a[v >> 12 & 63];
	} else if (len - i == 2) {
		v = (unsigned long)p[i] << 16 | (unsigned long)p[i + 1] << 8;
		out[n++] = a[v >> 18 & 63];
		out[n++] = a[v >> 12 & 63];
		out[n++] = a[v >> 6 & 63];
	}
	out[n] = '\0';
	return n;
}

/*
 * out = h64 "." p64 "." HMAC-SHA256 signature, where h64 and p64 are
 * already encoded (so tests can sign deliberately broken parts).  Returns
 * the token's length, or 0 if it does not fit in cap.
 */
static inline size_t
tj_sign_parts(const void *key, size_t klen, const char *h64, size_t hlen,
    const char *p64, size_t plen, char *out, size_t cap)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t n;

	if (hlen + plen + 2 + 44 > cap)
		return 0;
	memcpy(out, h64, hlen);
	out[hlen] = '.';
	memcpy(out + hlen + 1, p64, plen);
	n = hlen + 1 + plen;
	if (HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)out, n,
	    mac, &maclen) == NULL)
		return 0;
	out[n++] = '.';
	return n + tj_b64url(mac, maclen, out + n);
}

/* A token for header JSON hdr and payload JSON pay (NUL-terminated). */
static inline size_t
tj_sign(const void *key, size_t klen, const char *hdr, const char *pay,
    char *out, size_t cap)
{
	static char h64[8192], p64[8192];
	size_t hl = strlen(hdr), pl = strlen(pay);

	if (hl > 6000 || pl > 6000)
		return 0;
	return tj_sign_parts(key, klen, h64, tj_b64url(hdr, hl, h64),
	    p64, tj_b64url(pay, pl, p64), out, cap);
}

#endif
