/*
 * tls.c - OpenSSL behind a read/write interface for the reactor.
 *
 * Nothing here blocks: the handshake is driven by tls_read() each time the
 * socket is readable (or writable, when OpenSSL asked to write), and
 * WANT_READ / WANT_WRITE become EAGAIN with the direction in *want.  The
 * context is replaced whole on reload; OpenSSL counts references, so
 * connections made with the old one keep it until they close.
 */
#include <errno.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"
#include "tls.h"

static SSL_CTX		*ctx;
static const char	*cert_path, *key_path;

/* ALPN (RFC 7301): wsd speaks HTTP/1.1 only; a client offering nothing
 * else still connects, without ALPN. */
static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	for (unsigned int i = 0; i < inlen; i += 1 + in[i])
		if (in[i] == 8 && i + 9 <= inlen &&
		    memcmp(in + i + 1, "http/1.1", 8) == 0) {
			*out = in + i + 1;
			*outlen = 8;
			return SSL_TLSEXT_ERR_OK;
		}
	return SSL_TLSEXT_ERR_NOACK;
}

static void
log_ssl_error(const char *what)
{
	char buf[256];
	unsigned long e = ERR_get_error();

	ERR_error_string_n(e, buf, sizeof buf);
	log_msg(LOG_ERROR, "tls: %s: %s", what, e ? buf : "failed");
	ERR_clear_error();
}

static SSL_CTX *
ctx_load(void)
{
	SSL_CTX *c = SSL_CTX_new(TLS_server_method());

	if (c == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	/* Partial writes make SSL_write behave like write(2); a moving
	 * buffer lets a retry pass the same bytes from another address. */
	SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA |
	    SSL_OP_NO_COMPRESSION);
	/* TLS 1.3: AES-128-GCM first (OpenSSL's default puts AES-256
	 * first): cheaper records, and SHA-256 rather than SHA-384 through
	 * the key schedule; a client that puts ChaCha20 first (no AES
	 * instructions) gets it (SSL_OP_PRIORITIZE_CHACHA).  The same
	 * three suites as the default, only the order differs. */
	if (SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256:"
	    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") != 1)
		goto fail;
	/* One session ticket after a full TLS 1.3 handshake, not two: a
	 * client resumes with one, and each costs a ticket encryption and
	 * a write.  (A resumed handshake sends one either way.) */
	SSL_CTX_set_num_tickets(c, 1);
	SSL_CTX_set_alpn_select_cb(c, alpn_select, NULL);
	if (SSL_CTX_use_certificate_chain_file(c, cert_path) != 1 ||
	    SSL_CTX_use_PrivateKey_file(c, key_path, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(c) != 1)
		goto fail;
	return c;
fail:
	log_ssl_error("cannot load certificate and key");
	SSL_CTX_free(c);
	return NULL;
}

int
tls_init(const char *cert, const char *key)
{
	cert_path = cert;
	key_path = key;
	if ((ctx = ctx_load()) == NULL)
		return -1;
	log_msg(LOG_INFO, "tls on cert=%.200s", cert);
	return 0;
}

int
tls_on(void)
{
	return ctx != NULL;
}

int
tls_reload(void)
{
	SSL_CTX *c;

	if (ctx == NULL)
		return 0;
	if ((c = ctx_load()) == NULL) {
		log_msg(LOG_ERROR, "tls reload refused: keeping the certificate "
		    "in use");
		return -1;
	}
	SSL_CTX_free(ctx);
	ctx = c;
	log_msg(LOG_INFO, "tls certificate reloaded");
	return 0;
}

SSL *
tls_new(int fd)
{
	SSL *ssl = SSL_new(ctx);

	if (ssl == NULL)
		return NULL;
	if (SSL_set_fd(ssl, fd) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_accept_state(ssl);
	return ssl;
}

/* Map an SSL_get_error() code onto the read/write convention. */
static ssize_t
result(SSL *ssl, int rc, int *want)
{
	switch (SSL_get_error(ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		*want = TLS_WANT_READ;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		*want = TLS_WANT_WRITE;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;		/* close_notify */
	case SSL_ERROR_SYSCALL:
		if (errno == 0)
			errno = ECONNRESET;
		ERR_clear_error();
		return -1;
	default:
		/* A failed handshake or a bad record: not worth a log line
		 * each, since any client can cause them. */
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

ssize_t
tls_read(SSL *ssl, void *buf, size_t n, int *want)
{
	int rc;

	ERR_clear_error();
	errno = 0;
	rc = SSL_read(ssl, buf, n > 0x7fffffff ? 0x7fffffff : (int)n);
	return rc > 0 ? rc : result(ssl, rc, want);
}

ssize_t
tls_write(SSL *ssl, const void *buf, size_t n, int *want)
{
	int rc;

	ERR_clear_error();
	errno = 0;
	rc = SSL_write(ssl, buf, n > 0x7fffffff ? 0x7fffffff : (int)n);
	return rc > 0 ? rc : result(ssl, rc, want);
}

int
tls_pending(struct ssl_st *ssl)
{
	return SSL_pending(ssl);
}

void
tls_free(SSL *ssl, int notify)
{
	if (ssl == NULL)
		return;
	/* One non-blocking attempt: on a full socket it is skipped. */
	if (notify && SSL_is_init_finished(ssl))
		SSL_shutdown(ssl);
	ERR_clear_error();
	SSL_free(ssl);
}
