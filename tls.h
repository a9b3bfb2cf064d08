/*
 * tls.h - TLS on the listener, non-blocking, inside the one loop.
 *
 * tls.c wraps OpenSSL so that ws.c reads and writes a TLS connection the
 * way it reads and writes a socket: n > 0 bytes, 0 at end of stream, or
 * -1 with errno EAGAIN (try again when the fd is ready; *want says for
 * what) or another errno (the connection is dead).
 */
#ifndef TLS_H
#define TLS_H

#include <stddef.h>
#include <sys/types.h>

struct ssl_st;

/* What a call that returned EAGAIN waits for. */
enum { TLS_WANT_READ = 1, TLS_WANT_WRITE = 2 };

/*
 * Load cert (a PEM chain) and key; TLS 1.2 at least, ALPN http/1.1.
 * 0, or -1 with the reason logged.
 */
int	tls_init(const char *cert, const char *key);

/* 1 once tls_init() succeeded. */
int	tls_on(void);

/*
 * Load the files again (SIGHUP).  A bad certificate or key is refused with
 * a log line and the one in use stays; connections already open keep
 * theirs.  0, or -1.
 */
int	tls_reload(void);

/* A server-side TLS object on fd; the handshake runs in tls_read(). */
struct ssl_st *tls_new(int fd);

ssize_t	tls_read(struct ssl_st *ssl, void *buf, size_t n, int *want);

/*
 * Write buf[0..n).  After EAGAIN the next call must pass the same bytes
 * (OpenSSL's rule for a retried write); the address may change.
 */
ssize_t	tls_write(struct ssl_st *ssl, const void *buf, size_t n, int *want);

/* Send close_notify (best effort, never blocks) and free.  NULL is fine. */
/* Bytes of a record already read and decrypted, which epoll cannot see. */
int	tls_pending(struct ssl_st *ssl);

void	tls_free(struct ssl_st *ssl, int notify);

#endif
