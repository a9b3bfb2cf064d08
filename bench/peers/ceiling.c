/*
 * ceiling - the least work a WebSocket hub can do per message, as a
 * yardstick for wsd.
 *
 * /echo echoes every message, /sub joins the one group, and a message
 * sent on /pub goes to every /sub.  Whatever one read brings is framed
 * once into one shared, reference-counted block: for a publisher that
 * block goes, by reference, onto every subscriber's queue; for an echo
 * connection onto its own.  Every connection with output gets one
 * writev() per loop turn, however many blocks it gathered.  No JSON, no
 * history, no TLS, no fragmented messages (closed with 1003): only what
 * our own wsbench sends.
 *
 * A subscriber with more than OUT_MAX bytes unsent is closed, as wsd
 * closes slow consumers, so that a flood cannot take the machine's
 * memory.  Helpers return 0 on success and -1 on failure.
 */

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define HTTP_MAX	8192		/* longest upgrade request */
#define FRAME_MAX	(1u << 20)	/* longest message we take */
#define RBUF_SIZE	(FRAME_MAX + 65536)
#define OUT_MAX		(4u << 20)	/* slow consumer limit */
#define NIOV		512		/* blocks per writev */
#define NEVENTS		1024
#define MAX_FDS		65536

#define WS_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum kind { K_HTTP, K_ECHO, K_SUB, K_PUB };

/* Framed bytes, shared by every queue that holds a reference. */
struct block {
	unsigned	 refs;
	size_t		 len;
	uint8_t		 data[];
};

/* Bytes being gathered during one read, before they become a block. */
struct buf {
	uint8_t		*p;		/* owned */
	size_t		 len, cap;
};

struct conn {
	int		 fd;
	enum kind	 kind;
	int		 dirty;		/* on the flush list */
	int		 closing;	/* close once the output is written */
	int		 dead;		/* close now, at the end of the turn */
	int		 subpos;	/* index in subs[], -1 if none */
	uint32_t	 events;	/* what epoll waits for */
	struct buf	 in;		/* a partial request or frame */
	struct block	**q;		/* ring of queued blocks, owned */
	unsigned	 qhead, qlen, qcap;
	size_t		 qoff;		/* bytes of q[qhead] already sent */
	size_t		 qbytes;	/* bytes queued, not yet sent */
};

static int		 ep, lfd;
static uint8_t		 rbuf[RBUF_SIZE];
static struct buf	 reply;		/* frames for the connection read */
static struct buf	 bcast;		/* frames for every subscriber */
static struct conn	**subs;		/* every /sub, unordered */
static int		 nsubs;
static struct conn	**dirty;	/* connections to write this turn */
static int		 ndirty;

/* ---------------------------------------------------------------- */
/* Buffers, blocks and queues                                        */

static int
put(struct buf *b, const void *p, size_t n)
{
	size_t cap;
	uint8_t *np;

	if (b->len + n > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		if ((np = realloc(b->p, cap)) == NULL)
			return -1;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static struct block *
block_new(const uint8_t *p, size_t n)
{
	struct block *k;

	if ((k = malloc(sizeof *k + n)) == NULL)
		return NULL;
	k->refs = 1;
	k->len = n;
	memcpy(k->data, p, n);
	return k;
}

static void
block_unref(struct block *k)
{
	if (--k->refs == 0)
		free(k);
}

static void
mark_dirty(struct conn *c)
{
	if (!c->dirty) {
		c->dirty = 1;
		dirty[ndirty++] = c;
	}
}

static void
enqueue(struct conn *c, struct block *k)
{
	struct block **q;
	unsigned i, cap;

	if (c->dead || c->closing)
		return;
	if (c->qbytes + k->len > OUT_MAX)
		goto drop;	/* a slow consumer */
	if (c->qlen == c->qcap) {
		cap = c->qcap ? c->qcap * 2 : 8;
		if ((q = malloc(cap * sizeof *q)) == NULL)
			goto drop;
		for (i = 0; i < c->qlen; i++)
			q[i] = c->q[(c->qhead + i) % c->qcap];
		free(c->q);
		c->q = q;
		c->qhead = 0;
		c->qcap = cap;
	}
	c->q[(c->qhead + c->qlen++) % c->qcap] = k;
	c->qbytes += k->len;
	k->refs++;
	mark_dirty(c);
	return;
drop:
	c->dead = 1;
	mark_dirty(c);
}

/* Queues bytes that only this connection will send. */
static void
enqueue_copy(struct conn *c, const uint8_t *p, size_t n)
{
	struct block *k;

	if ((k = block_new(p, n)) == NULL) {
		c->dead = 1;
		mark_dirty(c);
		return;
	}
	enqueue(c, k);
	block_unref(k);
}

/* ---------------------------------------------------------------- */
/* HTTP upgrade (RFC 6455 §4.2)                                      */

/*
 * Parses a complete request head: the path of a GET and the value of
 * Sec-WebSocket-Key, both as slices of h.  Returns 0 or -1.
 */
static int
http_parse(const char *h, size_t n, const char **path, size_t *plen,
    const char **key, size_t *klen)
{
	static const char name[] = "sec-websocket-key:";
	const char *p, *eol, *end = h + n, *sp;

	*key = NULL;
	*klen = 0;
	if (n < 14 || memcmp(h, "GET ", 4) != 0)
		return -1;
	if ((eol = memmem(h, n, "\r\n", 2)) == NULL ||
	    (sp = memchr(h + 4, ' ', (size_t)(eol - h - 4))) == NULL)
		return -1;
	*path = h + 4;
	*plen = (size_t)(sp - *path);
	for (p = eol + 2; p < end; p = eol + 2) {
		if ((eol = memmem(p, (size_t)(end - p), "\r\n", 2)) == NULL)
			break;
		if ((size_t)(eol - p) > sizeof name - 1 &&
		    strncasecmp(p, name, sizeof name - 1) == 0) {
			p += sizeof name - 1;
			while (p < eol && *p == ' ')
				p++;
			*key = p;
			*klen = (size_t)(eol - p);
			while (*klen > 0 && p[*klen - 1] == ' ')
				(*klen)--;
		}
	}
	return *key != NULL && *klen > 0 && *klen < 64 ? 0 : -1;
}

static void
upgrade(struct conn *c, const char *h, size_t n)
{
	static const char notfound[] =
	    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
	    "Connection: close\r\n\r\n";
	unsigned char md[SHA_DIGEST_LENGTH];
	char cat[128], acc[32], resp[256];
	const char *path, *key;
	size_t plen, klen = 0;
	int len;

	if (http_parse(h, n, &path, &plen, &key, &klen) == -1)
		goto reject;
	if (plen == 5 && memcmp(path, "/echo", 5) == 0)
		c->kind = K_ECHO;
	else if (plen == 4 && memcmp(path, "/sub", 4) == 0)
		c->kind = K_SUB;
	else if (plen == 4 && memcmp(path, "/pub", 4) == 0)
		c->kind = K_PUB;
	else
		goto reject;
	memcpy(cat, key, klen);
	memcpy(cat + klen, WS_GUID, sizeof WS_GUID - 1);
	SHA1((unsigned char *)cat, klen + sizeof WS_GUID - 1, md);
	EVP_EncodeBlock((unsigned char *)acc, md, sizeof md);
	len = snprintf(resp, sizeof resp,
	    "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n\r\n", acc);
	enqueue_copy(c, (uint8_t *)resp, (size_t)len);
	if (c->kind == K_SUB) {
		c->subpos = nsubs;
		subs[nsubs++] = c;
	}
	return;
reject:
	enqueue_copy(c, (const uint8_t *)notfound, sizeof notfound - 1);
	c->closing = 1;
}

/* ---------------------------------------------------------------- */
/* Frames (RFC 6455 §5.2)                                            */

/* Appends an unmasked frame to b.  Returns 0 or -1. */
static int
put_frame(struct buf *b, int op, const uint8_t *pl, size_t len)
{
	uint8_t h[10];
	size_t n;
	int i;

	h[0] = 0x80 | (uint8_t)op;
	if (len < 126) {
		h[1] = (uint8_t)len;
		n = 2;
	} else if (len <= 0xffff) {
		h[1] = 126;
		h[2] = (uint8_t)(len >> 8);
		h[3] = (uint8_t)len;
		n = 4;
	} else {
		h[1] = 127;
		for (i = 0; i < 8; i++)
			h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
		n = 10;
	}
	if (put(b, h, n) == -1 || put(b, pl, len) == -1)
		return -1;
	return 0;
}

static void
close_with(struct conn *c, unsigned code)
{
	uint8_t pl[2] = { (uint8_t)(code >> 8), (uint8_t)code };

	if (put_frame(&reply, 0x8, pl, 2) == -1)
		c->dead = 1;
	c->closing = 1;
}

/*
 * Parses every whole frame in b, unmasking in place; replies go to
 * `reply', messages to publish to `bcast'.  Returns the bytes consumed;
 * the caller keeps the rest for the next read.
 */
static size_t
frames(struct conn *c, uint8_t *b, size_t n)
{
	size_t used = 0, h, i;
	uint64_t len;
	uint8_t *p, *key;
	int op, j, r = 0;

	while (!c->closing && !c->dead && r == 0 && n - used >= 2) {
		p = b + used;
		op = p[0] & 0x0f;
		/* §5.1: a client frame is masked; no extensions agreed. */
		if ((p[0] & 0x70) || !(p[1] & 0x80)) {
			close_with(c, 1002);
			return n;
		}
		/* Fragments are not part of this contract. */
		if (!(p[0] & 0x80) || op == 0) {
			close_with(c, 1003);
			return n;
		}
		len = p[1] & 0x7f;
		h = 2;
		if (len == 126) {
			if (n - used < 4)
				break;
			len = (uint64_t)p[2] << 8 | p[3];
			h = 4;
		} else if (len == 127) {
			if (n - used < 10)
				break;
			for (len = 0, j = 0; j < 8; j++)
				len = len << 8 | p[2 + j];
			h = 10;
		}
		if (len > FRAME_MAX) {
			close_with(c, 1009);
			return n;
		}
		if (n - used < h + 4 + len)
			break;
		key = p + h;
		p += h + 4;
		for (i = 0; i < len; i++)
			p[i] ^= key[i & 3];
		used += h + 4 + (size_t)len;
		switch (op) {
		case 0x8:
			close_with(c, len >= 2 ? (unsigned)(p[0] << 8 | p[1]) :
			    1000);
			break;
		case 0x9:
			r = put_frame(&reply, 0xa, p, (size_t)len);
			break;
		case 0xa:
			break;
		default:
			if (c->kind == K_ECHO)
				r = put_frame(&reply, op, p, (size_t)len);
			else if (c->kind == K_PUB)
				r = put_frame(&bcast, op, p, (size_t)len);
			break;
		}
	}
	if (r == -1)
		c->dead = 1;
	return used;
}

/* Sends what one read produced: one block for c, one for every sub. */
static void
dispatch(struct conn *c)
{
	struct block *k;
	int i;

	if (reply.len > 0) {
		enqueue_copy(c, reply.p, reply.len);
		reply.len = 0;
	}
	if (bcast.len > 0) {
		if ((k = block_new(bcast.p, bcast.len)) != NULL) {
			for (i = 0; i < nsubs; i++)
				enqueue(subs[i], k);
			block_unref(k);
		}
		bcast.len = 0;
	}
}

/* ---------------------------------------------------------------- */
/* Connections                                                       */

static void
conn_free(struct conn *c)
{
	struct conn *last;

	if (c->subpos >= 0) {
		last = subs[--nsubs];
		subs[c->subpos] = last;
		last->subpos = c->subpos;
	}
	while (c->qlen > 0) {
		block_unref(c->q[c->qhead]);
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
	}
	close(c->fd);
	free(c->q);
	free(c->in.p);
	free(c);
}

static void
set_events(struct conn *c, uint32_t ev)
{
	struct epoll_event e;

	if (c->events == ev)
		return;
	e.events = ev;
	e.data.ptr = c;
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
	c->events = ev;
}

/* One writev per connection per turn; frees c if it is done. */
static void
flush(struct conn *c)
{
	struct iovec iov[NIOV];
	struct block *k;
	ssize_t w;
	size_t rest;
	unsigned n;

	if (c->dead)
		goto gone;
	for (n = 0; n < c->qlen && n < NIOV; n++) {
		k = c->q[(c->qhead + n) % c->qcap];
		iov[n].iov_base = k->data + (n == 0 ? c->qoff : 0);
		iov[n].iov_len = k->len - (n == 0 ? c->qoff : 0);
	}
	if (n > 0) {
		w = writev(c->fd, iov, (int)n);
		if (w == -1 && errno != EAGAIN && errno != EINTR)
			goto gone;
		while (w > 0) {
			k = c->q[c->qhead];
			rest = k->len - c->qoff;
			if ((size_t)w < rest) {
				c->qoff += (size_t)w;
				c->qbytes -= (size_t)w;
				break;
			}
			w -= (ssize_t)rest;
			c->qbytes -= rest;
			c->qoff = 0;
			c->qhead = (c->qhead + 1) % c->qcap;
			c->qlen--;
			block_unref(k);
		}
	}
	if (c->qlen > 0) {
		set_events(c, EPOLLIN | EPOLLOUT);
		return;
	}
	/* An idle connection keeps no ring. */
	free(c->q);
	c->q = NULL;
	c->qhead = c->qcap = 0;
	if (c->closing)
		goto gone;
	set_events(c, EPOLLIN);
	return;
gone:
	conn_free(c);
}

static void
on_read(struct conn *c)
{
	size_t have, used = 0;
	ssize_t n;
	uint8_t *end;

	have = c->in.len;
	if (have > 0)
		memcpy(rbuf, c->in.p, have);
	c->in.len = 0;
	n = read(c->fd, rbuf + have, sizeof rbuf - have);
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
		c->dead = 1;
		mark_dirty(c);
		return;
	}
	if (n > 0)
		have += (size_t)n;
	if (c->kind == K_HTTP) {
		if ((end = memmem(rbuf, have, "\r\n\r\n", 4)) == NULL) {
			if (have > HTTP_MAX)
				c->dead = 1;
			goto keep;
		}
		used = (size_t)(end - rbuf) + 4;
		upgrade(c, (char *)rbuf, used);
	}
	if (c->kind != K_HTTP)
		used += frames(c, rbuf + used, have - used);
	dispatch(c);
keep:
	if (have > used && !c->closing && !c->dead &&
	    put(&c->in, rbuf + used, have - used) == -1)
		c->dead = 1;
	/* A partial frame is rare: its buffer goes once it is whole. */
	if (c->in.len == 0 && c->in.cap > 0) {
		free(c->in.p);
		c->in.p = NULL;
		c->in.cap = 0;
	}
	if (c->closing || c->dead)
		mark_dirty(c);
}

static void
on_accept(void)
{
	struct epoll_event e;
	struct conn *c;
	int fd, one = 1, i;

	for (i = 0; i < 64; i++) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1)
			return;
		if (fd >= MAX_FDS || (c = calloc(1, sizeof *c)) == NULL) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c->fd = fd;
		c->subpos = -1;
		c->events = EPOLLIN;
		e.events = EPOLLIN;
		e.data.ptr = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == -1) {
			close(fd);
			free(c);
		}
	}
}

/* ---------------------------------------------------------------- */
/* Main                                                              */

static int
listen_on(const char *spec)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof sa;
	char host[64];
	const char *colon;
	int fd, one = 1;

	if ((colon = strrchr(spec, ':')) == NULL ||
	    (size_t)(colon - spec) >= sizeof host)
		return -1;
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    (ntohl(sa.sin_addr.s_addr) >> 24) != 127)
		return -1;	/* the loopback only */
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == -1 ||
	    listen(fd, 4096) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == -1) {
		close(fd);
		return -1;
	}
	fprintf(stderr, "listening addr=%s:%u\n", host, ntohs(sa.sin_port));
	return fd;
}

int
main(int argc, char *argv[])
{
	struct epoll_event ev[NEVENTS], e;
	struct rlimit rl = { MAX_FDS, MAX_FDS };
	struct conn *c;
	int i, n;

	if (argc != 3 || strcmp(argv[1], "--listen") != 0) {
		fprintf(stderr, "usage: ceiling --listen 127.0.0.1:PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	setrlimit(RLIMIT_NOFILE, &rl);
	/*
	 * Blocks come and go by the thousand each turn; giving the heap's
	 * top back to the kernel and faulting it in again costs more than
	 * the work itself.
	 */
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	subs = calloc(MAX_FDS, sizeof *subs);
	dirty = calloc(MAX_FDS, sizeof *dirty);
	if (subs == NULL || dirty == NULL ||
	    (ep = epoll_create1(0)) == -1 || (lfd = listen_on(argv[2])) == -1) {
		fprintf(stderr, "ceiling: cannot listen on %s\n", argv[2]);
		return 1;
	}
	e.events = EPOLLIN;
	e.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e);
	for (;;) {
		n = epoll_wait(ep, ev, NEVENTS, -1);
		for (i = 0; i < n; i++) {
			if ((c = ev[i].data.ptr) == NULL) {
				on_accept();
				continue;
			}
			if (c->dead)
				continue;
			if (ev[i].events & EPOLLOUT)
				mark_dirty(c);
			if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				on_read(c);
		}
		/* Connections are freed only here, after the batch. */
		for (i = 0; i < ndirty; i++) {
			dirty[i]->dirty = 0;
			flush(dirty[i]);
		}
		ndirty = 0;
	}
}
