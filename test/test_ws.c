/*
 * test_ws.c - the pure parsers of ws.c: the HTTP request head (RFC 9112),
 * the handshake key, the frame decoder and encoder (RFC 6455), UTF-8
 * (RFC 3629) and close codes.
 *
 * Every frame input is decoded whole, byte by byte, split at every point
 * and, when short, at every pair of points; each piece is first copied so
 * that it ends where a PROT_NONE page begins, so a read past a piece
 * faults.  The collected (opcode, fin, payload) frames and the close code
 * must be the same however the input was cut.  HTTP heads are parsed
 * from the guard page too, at every prefix length.  Each limit is tried
 * at N and N+1.  Probes that may crash run in a child process, so one
 * failure is one failed check and not the end of the run.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "http_parse.h"
#include "t.h"

#define ARENA	(256 * 1024)	/* bytes in front of the guard page */
#define MAXF	32		/* frames one decode may collect */
#define BIG	65536		/* the §5.7 64 KiB example */

/* An expected frame. */
struct xf {
	uint8_t		 op, fin;
	const void	*p;
	size_t		 n;
};

/* What one decode of an input collected. */
struct dec {
	struct ws_parser p;
	int		 code;		/* close code of WS_ERROR, 0 if none */
	int		 bad;		/* broken return or chunk invariants */
	int		 nf;
	struct {
		uint8_t	 op, fin;
		size_t	 off, n;	/* payload in pl */
	}		 f[MAXF];
	uint8_t		*pl;		/* every payload, unmasked, in order */
	size_t		 len, cap;
	size_t		 cur;		/* bytes of the frame in progress */
	uint8_t		 cur_op, cur_fin;
};

/* A UTF-8 case: want 0 valid, 1 a valid but unfinished prefix, -1 invalid
 * with at the index of the first impossible byte. */
struct u8 {
	const char	*s;
	size_t		 n;
	int		 want;
	long		 at;
};
#define UV(s)		{ s, sizeof(s) - 1, 0, -1 }
#define UT(s)		{ s, sizeof(s) - 1, 1, -1 }
#define UI(s, at)	{ s, sizeof(s) - 1, -1, at }

#define XF(...)		((const struct xf[]){ __VA_ARGS__ })
#define NXF(...)	((int)(sizeof(XF(__VA_ARGS__)) / sizeof(struct xf)))
/* The input decodes to these frames and no error. */
#define DECODES(in, n, max, ...) \
	frames_ok(in, n, max, 0, XF(__VA_ARGS__), NXF(__VA_ARGS__))
/* The input decodes to these frames, then fails with code. */
#define FAILS_AFTER(in, n, max, code, ...) \
	frames_ok(in, n, max, code, XF(__VA_ARGS__), NXF(__VA_ARGS__))
/* The input fails with code before any frame is complete. */
#define FAILS(in, n, max, code)	frames_ok(in, n, max, code, NULL, 0)

static void	 arena_init(void);
static uint8_t	*at_end(const void *, size_t);
static int	 survives(int (*)(void), int);
static void	 dec_init(struct dec *, uint64_t);
static void	 dec_free(struct dec *);
static void	 dec_chunk(struct dec *, const struct ws_chunk *);
static void	 dec_feed(struct dec *, const uint8_t *, size_t);
static void	 decode(struct dec *, const uint8_t *, size_t, const size_t *,
		    int, uint64_t);
static void	 decode_bytes(struct dec *, const uint8_t *, size_t, uint64_t);
static int	 dec_same(const struct dec *, const struct dec *);
static int	 dec_is(const struct dec *, int, const struct xf *, int);
static int	 frames_ok(const void *, size_t, uint64_t, int,
		    const struct xf *, int);
static void	 wire_reset(void);
static void	 put(const void *, size_t);
static void	 put_frame(int, const void *, size_t, int);
static int	 utf8_whole(const uint8_t *, size_t);
static int	 utf8_split(const uint8_t *, size_t, size_t);
static long	 utf8_fail_at(const uint8_t *, size_t);
static int	 ref_utf8(const uint8_t *, size_t);
static int	 ref_close_code(unsigned);
static long	 http(const char *, size_t, struct http_req *, int *);
static int	 sl_is(struct http_slice, const char *);
static int	 has_token(const char *, const char *);
static size_t	 make_head(char *, size_t);
static int	 probe_guard_faults(void);
static int	 probe_query_cap0(void);
static int	 probe_frame_huge(void);
static void	 test_accept_key(void);
static void	 test_encoder(void);
static void	 test_rfc_frames(void);
static void	 test_decoder_calls(void);
static void	 test_decoder_errors(void);
static void	 test_decoder_limits(void);
static void	 test_decoder_zero(void);
static void	 test_decoder_interleave(void);
static void	 test_unmask(void);
static void	 test_utf8_table(void);
static void	 test_utf8_exhaustive(void);
static void	 test_close_codes(void);
static void	 test_http_request(void);
static void	 test_http_tokens(void);
static void	 test_http_errors(void);
static void	 test_http_limits(void);
static void	 test_query(void);
static void	 test_bearer(void);
static void	 test_guard_page(void);
static void	 test_crash_probes(void);

static uint8_t	*arena_end;	/* the first byte of the PROT_NONE page */
static uint8_t	 wire[BIG + 1024];
static size_t	 wn;
static unsigned	 nmask;		/* masked frames built: each gets its own key */
static uint8_t	 pat[BIG + 1];	/* a payload pattern */
static const uint8_t *volatile guard_probe;

/* ==== Guard pages and child processes ================================ */

static void
arena_init(void)
{
	size_t	 pg = (size_t)sysconf(_SC_PAGESIZE);
	uint8_t	*m;

	if (ARENA % pg != 0)
		abort();
	m = mmap(NULL, ARENA + pg, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || mprotect(m + ARENA, pg, PROT_NONE) == -1)
		abort();
	arena_end = m + ARENA;
}

/* A copy of s[0..n) whose last byte is the last before the guard page. */
static uint8_t *
at_end(const void *s, size_t n)
{
	if (n > ARENA)
		abort();
	if (n > 0)
		memmove(arena_end - n, s, n);
	return arena_end - n;
}

/* Run fn in a child: 1 if it returned nonzero without crashing. */
static int
survives(int (*fn)(void), int quiet)
{
	pid_t	pid;
	int	st;

	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == -1)
		abort();
	if (pid == 0) {
		if (quiet) {
			int fd = open("/dev/null", O_WRONLY);

			if (fd != -1)
				dup2(fd, 2);
		}
		_exit(fn() ? 0 : 1);
	}
	if (waitpid(pid, &st, 0) == -1)
		return 0;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* ==== Frame decoder harness ========================================== */

static void
dec_init(struct dec *d, uint64_t max)
{
	memset(d, 0, sizeof *d);
	ws_parser_init(&d->p, max);
	d->cap = 64;
	if ((d->pl = malloc(d->cap)) == NULL)
		abort();
}

static void
dec_free(struct dec *d)
{
	free(d->pl);
	d->pl = NULL;
}

/* One chunk: check it continues the frame in progress, unmask, collect. */
static void
dec_chunk(struct dec *d, const struct ws_chunk *c)
{
	if (c->off != d->cur || c->first != (d->cur == 0) ||
	    (d->cur > 0 && (c->opcode != d->cur_op || c->fin != d->cur_fin))) {
		d->bad++;
		return;
	}
	if (d->cur == 0) {
		d->cur_op = c->opcode;
		d->cur_fin = c->fin;
	}
	if (d->len + c->n > d->cap) {
		size_t	 cap = (d->len + c->n) * 2;
		uint8_t	*m;

		if ((m = realloc(d->pl, cap)) == NULL)
			abort();
		d->pl = m;
		d->cap = cap;
	}
	ws_unmask(d->pl + d->len, c->p, c->n, d->p.mask, c->off);
	d->len += c->n;
	d->cur += c->n;
	if (c->end != (d->cur == d->p.len)) {
		d->bad++;
		return;
	}
	if (c->end) {
		if (d->nf == MAXF) {
			d->bad++;
			return;
		}
		d->f[d->nf].op = d->cur_op;
		d->f[d->nf].fin = d->cur_fin;
		d->f[d->nf].off = d->len - d->cur;
		d->f[d->nf].n = d->cur;
		d->nf++;
		d->cur = 0;
	}
}

/* Feed one piece, calling the decoder until the piece is used up: after a
 * chunk the rest is offered again; WS_AGAIN means all of it was taken. */
static void
dec_feed(struct dec *d, const uint8_t *buf, size_t n)
{
	size_t off = 0;

	do {
		struct ws_chunk	c;
		int		code = 0;
		long		r;

		if (d->code != 0 || d->bad)
			return;
		memset(&c, 0, sizeof c);
		r = ws_frame_parse(&d->p, buf + off, n - off, &c, &code);
		if (r == WS_AGAIN)
			return;
		if (r == WS_ERROR) {
			d->code = code;
			if (code != WS_CLOSE_PROTOCOL && code != WS_CLOSE_TOO_BIG)
				d->bad++;
			return;
		}
		/* A chunk: something was consumed, the chunk is borrowed from
		 * the piece and is the last thing consumed. */
		if (r < 1 || (size_t)r > n - off || c.p + c.n != buf + off + r) {
			d->bad++;
			return;
		}
		dec_chunk(d, &c);
		off += r;
	} while (off < n);
}

/* Decode in[0..n) in the pieces cut at cut[0..ncut) (ascending). */
static void
decode(struct dec *d, const uint8_t *in, size_t n, const size_t *cut,
    int ncut, uint64_t max)
{
	size_t s = 0;

	dec_init(d, max);
	for (int i = 0; i <= ncut; i++) {
		size_t e = i < ncut ? cut[i] : n;

		dec_feed(d, at_end(in + s, e - s), e - s);
		s = e;
	}
}

static void
decode_bytes(struct dec *d, const uint8_t *in, size_t n, uint64_t max)
{
	dec_init(d, max);
	for (size_t i = 0; i < n; i++)
		dec_feed(d, at_end(in + i, 1), 1);
}

static int
dec_same(const struct dec *a, const struct dec *b)
{
	if (a->bad || b->bad || a->code != b->code || a->nf != b->nf ||
	    a->len != b->len)
		return 0;
	for (int i = 0; i < a->nf; i++)
		if (a->f[i].op != b->f[i].op || a->f[i].fin != b->f[i].fin ||
		    a->f[i].n != b->f[i].n || a->f[i].off != b->f[i].off)
			return 0;
	return memcmp(a->pl, b->pl, a->len) == 0;
}

static int
dec_is(const struct dec *d, int code, const struct xf *x, int nx)
{
	if (d->bad || d->code != code || d->nf != nx)
		return 0;
	for (int i = 0; i < nx; i++)
		if (d->f[i].op != x[i].op || d->f[i].fin != x[i].fin ||
		    d->f[i].n != x[i].n ||
		    (x[i].n > 0 && memcmp(d->pl + d->f[i].off, x[i].p,
		    x[i].n) != 0))
			return 0;
	return 1;
}

/*
 * Decode in[0..n) whole, byte by byte, at every split point and (for short
 * inputs) every pair of split points; the whole decode must give the
 * expected frames and code, and every other way of cutting the same.
 * Long inputs are split everywhere in their first and last 32 bytes and
 * every 1021 bytes between.
 */
static int
frames_ok(const void *vin, size_t n, uint64_t max, int code,
    const struct xf *x, int nx)
{
	const uint8_t	*in = vin;
	struct dec	 whole, d;
	size_t		 cut[2];
	int		 ok = 1;

	decode(&whole, in, n, NULL, 0, max);
	if (!dec_is(&whole, code, x, nx)) {
		fprintf(stderr, "  decode: want close %d after %d frames, "
		    "got close %d after %d frames%s\n", code, nx, whole.code,
		    whole.nf, whole.bad ? " (broken chunk)" : "");
		ok = 0;
	}
	decode_bytes(&d, in, n, max);
	if (!dec_same(&whole, &d)) {
		fprintf(stderr, "  decode: byte by byte differs "
		    "(close %d, %d frames)\n", d.code, d.nf);
		ok = 0;
	}
	dec_free(&d);
	for (size_t k = 0; k <= n; k++) {
		if (n > 4096 && k > 32 && k + 32 < n && k % 1021 != 0)
			continue;
		cut[0] = k;
		decode(&d, in, n, cut, 1, max);
		if (!dec_same(&whole, &d)) {
			if (ok)
				fprintf(stderr, "  decode: split at %zu differs "
				    "(close %d, %d frames)\n", k, d.code, d.nf);
			ok = 0;
		}
		dec_free(&d);
		for (size_t j = k; n <= 64 && j <= n; j++) {
			cut[1] = j;
			decode(&d, in, n, cut, 2, max);
			if (!dec_same(&whole, &d)) {
				if (ok)
					fprintf(stderr, "  decode: split at %zu "
					    "and %zu differs\n", k, j);
				ok = 0;
			}
			dec_free(&d);
		}
	}
	dec_free(&whole);
	return ok;
}

/* ==== Client frames ================================================== */

static void
wire_reset(void)
{
	wn = 0;
}

static void
put(const void *p, size_t n)
{
	if (wn + n > sizeof wire)
		abort();
	memcpy(wire + wn, p, n);
	wn += n;
}

/* A frame with first byte b0 and the shortest length form; masked with a
 * key of its own (so a decoder that keeps an old key is caught). */
static void
put_frame(int b0, const void *pl, size_t n, int masked)
{
	uint8_t		 h[14], m[4] = { 0x37, 0xfa, 0x21, 0x3d };
	const uint8_t	*s = pl;
	size_t		 hl = 2;

	h[0] = b0;
	if (n < 126)
		h[1] = n;
	else if (n < 65536) {
		h[1] = 126;
		h[2] = n >> 8;
		h[3] = n;
		hl = 4;
	} else {
		h[1] = 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (uint64_t)n >> (56 - 8 * i);
		hl = 10;
	}
	if (masked) {
		h[1] |= 0x80;
		for (int i = 0; i < 4; i++)
			m[i] += 0x11 * (nmask + i);
		nmask++;
		memcpy(h + hl, m, 4);
		hl += 4;
	}
	put(h, hl);
	if (wn + n > sizeof wire)
		abort();
	for (size_t i = 0; i < n; i++)
		wire[wn + i] = s[i] ^ (masked ? m[i & 3] : 0);
	wn += n;
}

/* ==== Handshake key and encoder ====================================== */

static void
test_accept_key(void)
{
	static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
	char out[29];

	/* RFC 6455 §1.3 and §4.2.2. */
	memset(out, 'x', sizeof out);
	ws_accept_key((const char *)at_end(key, 24), 24, out);
	check(memcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 29) == 0);
}

static void
test_encoder(void)
{
	static const size_t	 sizes[] = { 0, 1, 125, 126, 127, 255, 256,
	    65535, 65536, 65537 };
	struct ws_buf		*b;
	int			 bad = 0;

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t n = sizes[i], hl = n < 126 ? 2 : n < 65536 ? 4 : 10;

		if ((b = ws_buf_frame(WS_OP_BINARY, pat, n)) == NULL) {
			bad++;
			continue;
		}
		if (b->refs != 1 || b->len != hl + n || b->hlen != hl ||
		    b->ctrl != 0 || b->data[0] != 0x82 ||
		    memcmp(b->data + hl, pat, n) != 0)
			bad++;
		/* §5.2: the shortest of the three forms, never masked. */
		if (hl == 2 && b->data[1] != n)
			bad++;
		if (hl == 4 && (b->data[1] != 126 || b->data[2] != n >> 8 ||
		    b->data[3] != (n & 0xff)))
			bad++;
		if (hl == 10) {
			uint64_t v = 0;

			for (int k = 0; k < 8; k++)
				v = v << 8 | b->data[2 + k];
			if (b->data[1] != 127 || v != n)
				bad++;
		}
		ws_buf_unref(b);
	}
	check(bad == 0);

	/* Control frames are flagged to jump the queue; data frames not. */
	b = ws_buf_frame(WS_OP_CLOSE, "\x03\xe8", 2);
	check(b != NULL && b->ctrl == 1 && b->len == 4 &&
	    memcmp(b->data, "\x88\x02\x03\xe8", 4) == 0);
	ws_buf_unref(b);
	b = ws_buf_frame(WS_OP_PONG, NULL, 0);
	check(b != NULL && b->ctrl == 1 && b->len == 2 && b->hlen == 2 &&
	    b->data[0] == 0x8a && b->data[1] == 0);
	ws_buf_ref(b);
	check(b->refs == 2);
	ws_buf_unref(b);
	check(b->refs == 1);
	ws_buf_unref(b);
	ws_buf_unref(NULL);
	b = ws_buf_frame(WS_OP_TEXT, "", 0);
	check(b != NULL && b->ctrl == 0 && b->len == 2 &&
	    b->data[0] == 0x81 && b->data[1] == 0);
	ws_buf_unref(b);
}

/* ==== RFC 6455 §5.7 examples ========================================= */

static void
test_rfc_frames(void)
{
	static const uint8_t	 text_srv[] = {
		0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
	static const uint8_t	 text_cli[] = {
		0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51,
		0x58 };
	static const uint8_t	 frag_srv[] = {
		0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f };
	static const uint8_t	 ping_srv[] = {
		0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
	static const uint8_t	 pong_cli[] = {
		0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51,
		0x58 };
	static const uint8_t	 ping_cli[] = {
		0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51,
		0x58 };
	struct ws_buf		*b;

	/* A single-frame unmasked text message is what a server sends ... */
	b = ws_buf_frame(WS_OP_TEXT, "Hello", 5);
	check(b != NULL && b->len == sizeof text_srv && b->hlen == 2 &&
	    b->ctrl == 0 && memcmp(b->data, text_srv, sizeof text_srv) == 0);
	ws_buf_unref(b);
	/* ... and what a server must refuse from a client (§5.1). */
	check(FAILS(text_srv, sizeof text_srv, WS_MAX_MESSAGE, 1002));

	/* A single-frame masked text message. */
	check(DECODES(text_cli, sizeof text_cli, WS_MAX_MESSAGE,
	    { WS_OP_TEXT, 1, "Hello", 5 }));

	/* The fragmented unmasked example: refused at its first frame. */
	check(FAILS(frag_srv, sizeof frag_srv, WS_MAX_MESSAGE, 1002));
	/* The same message as a client sends it. */
	wire_reset();
	put_frame(0x01, "Hel", 3, 1);
	put_frame(0x80, "lo", 2, 1);
	check(DECODES(wire, wn, WS_MAX_MESSAGE,
	    { WS_OP_TEXT, 0, "Hel", 3 }, { WS_OP_CONT, 1, "lo", 2 }));

	/* Unmasked ping: the encoder's bytes; refused from a client. */
	b = ws_buf_frame(WS_OP_PING, "Hello", 5);
	check(b != NULL && b->len == sizeof ping_srv && b->ctrl == 1 &&
	    memcmp(b->data, ping_srv, sizeof ping_srv) == 0);
	ws_buf_unref(b);
	check(FAILS(ping_srv, sizeof ping_srv, WS_MAX_MESSAGE, 1002));
	/* Masked ping, and the RFC's masked pong. */
	check(DECODES(ping_cli, sizeof ping_cli, WS_MAX_MESSAGE,
	    { WS_OP_PING, 1, "Hello", 5 }));
	check(DECODES(pong_cli, sizeof pong_cli, WS_MAX_MESSAGE,
	    { WS_OP_PONG, 1, "Hello", 5 }));

	/* 256 bytes of binary data in a single unmasked frame: 0x82 0x7E
	 * 0x0100; from a client, 0x82 0xFE 0x0100 and a key. */
	b = ws_buf_frame(WS_OP_BINARY, pat, 256);
	check(b != NULL && b->len == 260 && b->hlen == 4 &&
	    memcmp(b->data, "\x82\x7e\x01\x00", 4) == 0 &&
	    memcmp(b->data + 4, pat, 256) == 0);
	ws_buf_unref(b);
	wire_reset();
	put_frame(0x82, pat, 256, 1);
	check(wn == 264 && memcmp(wire, "\x82\xfe\x01\x00", 4) == 0);
	check(DECODES(wire, wn, WS_MAX_MESSAGE,
	    { WS_OP_BINARY, 1, pat, 256 }));

	/* 64 KiB in a single frame: 0x82 0x7F 0x0000000000010000. */
	b = ws_buf_frame(WS_OP_BINARY, pat, BIG);
	check(b != NULL && b->len == BIG + 10 && b->hlen == 10 &&
	    memcmp(b->data, "\x82\x7f\0\0\0\0\0\x01\0\0", 10) == 0 &&
	    memcmp(b->data + 10, pat, BIG) == 0);
	ws_buf_unref(b);
	wire_reset();
	put_frame(0x82, pat, BIG, 1);
	check(wn == BIG + 14 &&
	    memcmp(wire, "\x82\xff\0\0\0\0\0\x01\0\0", 10) == 0);
	check(DECODES(wire, wn, WS_MAX_MESSAGE,
	    { WS_OP_BINARY, 1, pat, BIG }));

	/* The edges of the three length forms. */
	wire_reset();
	put_frame(0x82, pat, 125, 1);
	put_frame(0x82, pat + 1, 126, 1);
	put_frame(0x82, pat + 2, 65535, 1);
	check(wire[1] == 0xfd && wire[125 + 6 + 1] == 0xfe);
	check(DECODES(wire, wn, WS_MAX_MESSAGE,
	    { WS_OP_BINARY, 1, pat, 125 }, { WS_OP_BINARY, 1, pat + 1, 126 },
	    { WS_OP_BINARY, 1, pat + 2, 65535 }));
}

/* ==== Frame decoder ================================================== */

/* The call protocol itself: what one call returns and leaves behind. */
static void
test_decoder_calls(void)
{
	struct ws_parser	 p;
	struct ws_chunk		 c;
	const uint8_t		*in;
	int			 code;
	long			 r;

	wire_reset();
	put_frame(0x81, "Hello", 5, 1);
	put_frame(0x80 | WS_OP_PING, "", 0, 1);
	in = at_end(wire, wn);

	ws_parser_init(&p, 100);
	check(ws_frame_parse(&p, in, 0, &c, &code) == WS_AGAIN);
	/* Half a header: taken, and nothing to hand out. */
	check(ws_frame_parse(&p, in, 1, &c, &code) == WS_AGAIN);
	/* The header completed with no payload yet: still WS_AGAIN. */
	check(ws_frame_parse(&p, in + 1, 5, &c, &code) == WS_AGAIN);
	check(p.state == WS_P_DATA && p.len == 5 && p.left == 5);
	check(ws_frame_parse(&p, in + 6, 0, &c, &code) == WS_AGAIN);
	/* Two payload bytes, then the rest together with the next frame:
	 * one chunk per call, never past the frame. */
	r = ws_frame_parse(&p, in + 6, 2, &c, &code);
	check(r == 2 && c.p == in + 6 && c.n == 2 && c.off == 0 &&
	    c.opcode == WS_OP_TEXT && c.fin == 1 && c.first && !c.end);
	r = ws_frame_parse(&p, in + 8, wn - 8, &c, &code);
	check(r == 3 && c.p == in + 8 && c.n == 3 && c.off == 2 &&
	    !c.first && c.end);
	/* The empty ping: one chunk with n = 0, header bytes consumed. */
	r = ws_frame_parse(&p, in + 11, wn - 11, &c, &code);
	check(r == 6 && c.n == 0 && c.opcode == WS_OP_PING && c.first &&
	    c.end && c.fin);
	check(p.state == WS_P_HEAD && !p.in_msg);

	/* A whole frame in one call: header and payload in one chunk. */
	ws_parser_init(&p, 100);
	r = ws_frame_parse(&p, in, wn, &c, &code);
	check(r == 11 && c.p == in + 6 && c.n == 5 && c.first && c.end);

	/* The continuation opcode stays 0 in its chunks; in_msg and msg_op
	 * follow the open message. */
	wire_reset();
	put_frame(0x02, "ab", 2, 1);
	put_frame(0x80, "c", 1, 1);
	in = at_end(wire, wn);
	ws_parser_init(&p, 100);
	r = ws_frame_parse(&p, in, wn, &c, &code);
	check(r == 8 && c.opcode == WS_OP_BINARY && c.fin == 0 && c.end);
	check(p.in_msg == 1 && p.msg_op == WS_OP_BINARY);
	r = ws_frame_parse(&p, in + 8, wn - 8, &c, &code);
	check(r == 7 && c.opcode == WS_OP_CONT && c.fin == 1 && c.n == 1);
	check(p.in_msg == 0);

	/* An error sets the code and is not confused with "need more". */
	ws_parser_init(&p, 100);
	code = 0;
	check(ws_frame_parse(&p, at_end("\x81\x05", 2), 2, &c, &code) ==
	    WS_ERROR && code == 1002);
}

static void
test_decoder_errors(void)
{
	static const uint8_t	key[4] = { 1, 2, 3, 4 };
	uint8_t			b[16];
	int			bad = 0;

	/* §5.1: unmasked client frames of every kind. */
	wire_reset();
	put_frame(0x82, "x", 1, 0);
	check(FAILS(wire, wn, WS_MAX_MESSAGE, 1002));
	wire_reset();
	put_frame(0x88, "", 0, 0);
	check(FAILS(wire, wn, WS_MAX_MESSAGE, 1002));
	/* ... after a good frame, and inside a fragmented message. */
	wire_reset();
	put_frame(0x81, "ok", 2, 1);
	put_frame(0x81, "no", 2, 0);
	check(FAILS_AFTER(wire, wn, WS_MAX_MESSAGE, 1002,
	    { WS_OP_TEXT, 1, "ok", 2 }));
	wire_reset();
	put_frame(0x01, "o", 1, 1);
	put_frame(0x80, "k", 1, 0);
	check(FAILS_AFTER(wire, wn, WS_MAX_MESSAGE, 1002,
	    { WS_OP_TEXT, 0, "o", 1 }));

	/* §5.2: RSV1, RSV2, RSV3, on data and control frames. */
	for (int rsv = 0x10; rsv <= 0x40; rsv <<= 1) {
		wire_reset();
		put_frame(0x81 | rsv, "Hello", 5, 1);
		check(FAILS(wire, wn, WS_MAX_MESSAGE, 1002));
		wire_reset();
		put_frame(0x89 | rsv, "", 0, 1);
		check(FAILS(wire, wn, WS_MAX_MESSAGE, 1002));
	}
	wire_reset();
	put_frame(0xf1, "Hello", 5, 1);
	check(FAILS(wire, wn, WS_MAX_MESSAGE, 1002));

	/* §5.2: reserved opcodes 3-7 and B-F, final or not. */
	for (int op = 3; op <= 0xf; op++) {
		if (op >= WS_OP_CLOSE && op <= WS_OP_PONG)
			continue;
		wire_reset();
		put_frame(0x80 | op, "x", 1, 1);
		if (!FAILS(wire, wn, WS_MAX_MESSAGE, 1002))
			bad++;
		wire_reset();
		put_frame(op, "x", 1, 1);
		if (!FAILS(wire, wn, WS_MAX_MESSAGE, 1002))
			bad++;
		/* Not even inside a fragmented message. */
		wire_reset();
		put_frame(0x01, "a", 1, 1);
		put_frame(0x80 | op, "", 0, 1);
		if (!FAILS_AFTER(wire, wn, WS_MAX_MESSAGE, 1002,
		    { WS_OP_TEXT, 0, "a", 1 }))
			bad++;
	}
	check(bad == 0);

	/* §5.5: control frames carry at most 125 bytes.  125 is fine, 126
	 * fails in either extended form, found from the length byte. */
	for (int op = WS_OP_CLOSE; op <= WS_OP_PONG; op++) {
		wire_reset();
		put_frame(0x80 | op, pat, 125, 1);
		check(DECODES(wire, wn, WS_MAX_MESSAGE,
		    { (uint8_t)op, 1, pat, 125 }));
		wire_reset();
		put_frame(0x80 | op, pat, 126, 1);
		check(wire[1] == 0xfe);
		check(FAILS(wire, wn, WS_MAX_MESSAGE, 1002));
		check(FAILS(wire, 2, WS_MAX_MESSAGE, 1002));
		b[0] = 0x80 | op;
		b[1] = 0xff;
		memset(b + 2, 0, 7);
		b[9] = 5;
		memcpy(b + 10, key, 4);
		check(FAILS(b, 14, WS_MAX_MESSAGE, 1002));
	}

	/* §5.5: control frames are never fragmented. */
	for (int op = WS_OP_CLOSE; op <= WS_OP_PONG; op++) {
		wire_reset();
		put_frame(op, "", 0, 1);
		check(FAILS(wire, wn, WS_MAX_MESSAGE, 1002));
		wire_reset();
		put_frame(0x01, "a", 1, 1);
		put_frame(op, "p", 1, 1);
		check(FAILS_AFTER(wire, wn, WS_MAX_MESSAGE, 1002,
		    { WS_OP_TEXT, 0, "a", 1 }));
	}

	/* §5.4: a continuation with no message open, final or not. */
	wire_reset();
	put_frame(0x80, "lo", 2, 1);
	check(FAILS(wire, wn, WS_MAX_MESSAGE, 1002));
	wire_reset();
	put_frame(0x00, "lo", 2, 1);
	check(FAILS(wire, wn, WS_MAX_MESSAGE, 1002));
	/* ... after a finished message, or after a finished fragmented one. */
	wire_reset();
	put_frame(0x81, "Hel", 3, 1);
	put_frame(0x80, "lo", 2, 1);
	check(FAILS_AFTER(wire, wn, WS_MAX_MESSAGE, 1002,
	    { WS_OP_TEXT, 1, "Hel", 3 }));
	wire_reset();
	put_frame(0x01, "Hel", 3, 1);
	put_frame(0x80, "lo", 2, 1);
	put_frame(0x80, "!", 1, 1);
	check(FAILS_AFTER(wire, wn, WS_MAX_MESSAGE, 1002,
	    { WS_OP_TEXT, 0, "Hel", 3 }, { WS_OP_CONT, 1, "lo", 2 }));
	/* ... or after only a control frame. */
	wire_reset();
	put_frame(0x89, "", 0, 1);
	put_frame(0x80, "lo", 2, 1);
	check(FAILS_AFTER(wire, wn, WS_MAX_MESSAGE, 1002,
	    { WS_OP_PING, 1, "", 0 }));

	/* §5.4: no new data message inside an open one. */
	wire_reset();
	put_frame(0x01, "Hel", 3, 1);
	put_frame(0x81, "lo", 2, 1);
	check(FAILS_AFTER(wire, wn, WS_MAX_MESSAGE, 1002,
	    { WS_OP_TEXT, 0, "Hel", 3 }));
	wire_reset();
	put_frame(0x02, "Hel", 3, 1);
	put_frame(0x01, "lo", 2, 1);
	check(FAILS_AFTER(wire, wn, WS_MAX_MESSAGE, 1002,
	    { WS_OP_BINARY, 0, "Hel", 3 }));
	wire_reset();
	put_frame(0x01, "Hel", 3, 1);
	put_frame(0x00, "l", 1, 1);
	put_frame(0x82, "o", 1, 1);
	check(FAILS_AFTER(wire, wn, WS_MAX_MESSAGE, 1002,
	    { WS_OP_TEXT, 0, "Hel", 3 }, { WS_OP_CONT, 0, "l", 1 }));

	/* §5.2: a 64-bit length with its most significant bit set is a
	 * protocol error, whatever the size limit. */
	b[0] = 0x82;
	b[1] = 0xff;
	b[2] = 0x80;
	memset(b + 3, 0, 7);
	memcpy(b + 10, key, 4);
	check(FAILS(b, 14, UINT64_MAX, 1002));
	check(FAILS(b, 10, UINT64_MAX, 1002));
	memset(b + 2, 0xff, 8);
	check(FAILS(b, 14, UINT64_MAX, 1002));
	/* 2^63 - 1 is a legal length: only the size limit can refuse it. */
	b[2] = 0x7f;
	check(FAILS(b, 14, WS_MAX_MESSAGE, 1009));
	check(FAILS(b, 14, UINT64_MAX, 0));
	/* ... also on a continuation. */
	wire_reset();
	put_frame(0x02, "a", 1, 1);
	b[0] = 0x80;
	b[2] = 0x80;
	put(b, 14);
	check(FAILS_AFTER(wire, wn, UINT64_MAX, 1002,
	    { WS_OP_BINARY, 0, "a", 1 }));

	/* Header rules decide from the header alone, before any key or
	 * payload has arrived. */
	check(FAILS("\x81\x05", 2, WS_MAX_MESSAGE, 1002));
	check(FAILS("\xc1\x85", 2, WS_MAX_MESSAGE, 1002));
	check(FAILS("\x83\x85", 2, WS_MAX_MESSAGE, 1002));
	check(FAILS("\x09\x80", 2, WS_MAX_MESSAGE, 1002));
	check(FAILS("\x80\x80", 2, WS_MAX_MESSAGE, 1002));
	check(FAILS("\x89\xfe", 2, WS_MAX_MESSAGE, 1002));
}

static void
test_decoder_limits(void)
{
	uint8_t b[16];

	/* One frame: N bytes pass, N + 1 fail with 1009, in each length
	 * form, and from the length alone. */
	wire_reset();
	put_frame(0x81, pat, 100, 1);
	check(DECODES(wire, wn, 100, { WS_OP_TEXT, 1, pat, 100 }));
	wire_reset();
	put_frame(0x81, pat, 101, 1);
	check(FAILS(wire, wn, 100, 1009));
	check(FAILS(wire, 2, 100, 1009));
	wire_reset();
	put_frame(0x82, pat, 300, 1);
	check(DECODES(wire, wn, 300, { WS_OP_BINARY, 1, pat, 300 }));
	wire_reset();
	put_frame(0x82, pat, 301, 1);
	check(FAILS(wire, wn, 300, 1009));
	check(FAILS(wire, 4, 300, 1009));
	wire_reset();
	put_frame(0x82, pat, BIG, 1);
	check(DECODES(wire, wn, BIG, { WS_OP_BINARY, 1, pat, BIG }));
	check(FAILS(wire, wn, BIG - 1, 1009));
	check(FAILS(wire, 10, BIG - 1, 1009));
	/* The default limit, from the 64-bit length alone. */
	memcpy(b, "\x82\xff\0\0\0\0\0\x10\0\0", 10);
	check(FAILS(b, 10, WS_MAX_MESSAGE, 0));
	b[9] = 1;
	check(FAILS(b, 10, WS_MAX_MESSAGE, 1009));

	/* A limit of 0: empty messages only. */
	wire_reset();
	put_frame(0x81, "", 0, 1);
	put_frame(0x02, "", 0, 1);
	put_frame(0x80, "", 0, 1);
	check(DECODES(wire, wn, 0, { WS_OP_TEXT, 1, "", 0 },
	    { WS_OP_BINARY, 0, "", 0 }, { WS_OP_CONT, 1, "", 0 }));
	wire_reset();
	put_frame(0x81, "x", 1, 1);
	check(FAILS(wire, wn, 0, 1009));

	/* Across fragments: the message, not the frame, is limited. */
	wire_reset();
	put_frame(0x01, pat, 40, 1);
	put_frame(0x80, pat + 40, 60, 1);
	check(DECODES(wire, wn, 100, { WS_OP_TEXT, 0, pat, 40 },
	    { WS_OP_CONT, 1, pat + 40, 60 }));
	wire_reset();
	put_frame(0x01, pat, 40, 1);
	put_frame(0x80, pat + 40, 61, 1);
	check(FAILS_AFTER(wire, wn, 100, 1009, { WS_OP_TEXT, 0, pat, 40 }));
	wire_reset();
	put_frame(0x02, pat, 30, 1);
	put_frame(0x00, pat + 30, 30, 1);
	put_frame(0x00, "", 0, 1);
	put_frame(0x80, pat + 60, 40, 1);
	check(DECODES(wire, wn, 100, { WS_OP_BINARY, 0, pat, 30 },
	    { WS_OP_CONT, 0, pat + 30, 30 }, { WS_OP_CONT, 0, "", 0 },
	    { WS_OP_CONT, 1, pat + 60, 40 }));
	wire_reset();
	put_frame(0x02, pat, 30, 1);
	put_frame(0x00, pat + 30, 30, 1);
	put_frame(0x80, pat + 60, 41, 1);
	check(FAILS_AFTER(wire, wn, 100, 1009, { WS_OP_BINARY, 0, pat, 30 },
	    { WS_OP_CONT, 0, pat + 30, 30 }));
	/* A fragment that fills the limit, then one more byte. */
	wire_reset();
	put_frame(0x01, pat, 100, 1);
	put_frame(0x80, pat, 1, 1);
	check(FAILS_AFTER(wire, wn, 100, 1009, { WS_OP_TEXT, 0, pat, 100 }));

	/* The count starts again with each message. */
	wire_reset();
	put_frame(0x01, pat, 60, 1);
	put_frame(0x80, pat, 40, 1);
	put_frame(0x82, pat, 100, 1);
	put_frame(0x01, pat, 99, 1);
	put_frame(0x80, pat, 1, 1);
	check(DECODES(wire, wn, 100, { WS_OP_TEXT, 0, pat, 60 },
	    { WS_OP_CONT, 1, pat, 40 }, { WS_OP_BINARY, 1, pat, 100 },
	    { WS_OP_TEXT, 0, pat, 99 }, { WS_OP_CONT, 1, pat, 1 }));

	/* Control frames do not count against the message, and are not
	 * limited by it (they have their own 125). */
	wire_reset();
	put_frame(0x01, "Hel", 3, 1);
	put_frame(0x89, pat, 125, 1);
	put_frame(0x80, "lo", 2, 1);
	check(DECODES(wire, wn, 5, { WS_OP_TEXT, 0, "Hel", 3 },
	    { WS_OP_PING, 1, pat, 125 }, { WS_OP_CONT, 1, "lo", 2 }));
	wire_reset();
	put_frame(0x01, "Hel", 3, 1);
	put_frame(0x89, pat, 125, 1);
	put_frame(0x80, "lo!", 3, 1);
	check(FAILS_AFTER(wire, wn, 5, 1009, { WS_OP_TEXT, 0, "Hel", 3 },
	    { WS_OP_PING, 1, pat, 125 }));
}

static void
test_decoder_zero(void)
{
	/* Zero-length frames of every kind: one empty chunk each. */
	wire_reset();
	put_frame(0x81, "", 0, 1);
	put_frame(0x82, "", 0, 1);
	put_frame(0x89, "", 0, 1);
	put_frame(0x8a, "", 0, 1);
	put_frame(0x01, "", 0, 1);
	put_frame(0x00, "", 0, 1);
	put_frame(0x80, "", 0, 1);
	put_frame(0x88, "", 0, 1);
	check(DECODES(wire, wn, WS_MAX_MESSAGE,
	    { WS_OP_TEXT, 1, "", 0 }, { WS_OP_BINARY, 1, "", 0 },
	    { WS_OP_PING, 1, "", 0 }, { WS_OP_PONG, 1, "", 0 },
	    { WS_OP_TEXT, 0, "", 0 }, { WS_OP_CONT, 0, "", 0 },
	    { WS_OP_CONT, 1, "", 0 }, { WS_OP_CLOSE, 1, "", 0 }));
	/* An empty frame in the 16-bit form (not minimal, but a length). */
	check(DECODES("\x82\xfe\0\0\1\2\3\4", 8, WS_MAX_MESSAGE,
	    { WS_OP_BINARY, 1, "", 0 }));
}

static void
test_decoder_interleave(void)
{
	/* §5.4: control frames may come between fragments; the message
	 * stays open across them. */
	wire_reset();
	put_frame(0x01, "Hel", 3, 1);
	put_frame(0x89, "ping", 4, 1);
	put_frame(0x00, "l", 1, 1);
	put_frame(0x8a, "", 0, 1);
	put_frame(0x89, "again", 5, 1);
	put_frame(0x80, "o", 1, 1);
	put_frame(0x81, "next", 4, 1);
	check(DECODES(wire, wn, WS_MAX_MESSAGE,
	    { WS_OP_TEXT, 0, "Hel", 3 }, { WS_OP_PING, 1, "ping", 4 },
	    { WS_OP_CONT, 0, "l", 1 }, { WS_OP_PONG, 1, "", 0 },
	    { WS_OP_PING, 1, "again", 5 }, { WS_OP_CONT, 1, "o", 1 },
	    { WS_OP_TEXT, 1, "next", 4 }));
	/* A close in the middle of a message is a frame like the others. */
	wire_reset();
	put_frame(0x02, "ab", 2, 1);
	put_frame(0x88, "\x03\xe8", 2, 1);
	put_frame(0x80, "c", 1, 1);
	check(DECODES(wire, wn, WS_MAX_MESSAGE,
	    { WS_OP_BINARY, 0, "ab", 2 }, { WS_OP_CLOSE, 1, "\x03\xe8", 2 },
	    { WS_OP_CONT, 1, "c", 1 }));
	/* The open message survives the control frame: a new data frame
	 * after it is still refused. */
	wire_reset();
	put_frame(0x01, "Hel", 3, 1);
	put_frame(0x89, "", 0, 1);
	put_frame(0x81, "lo", 2, 1);
	check(FAILS_AFTER(wire, wn, WS_MAX_MESSAGE, 1002,
	    { WS_OP_TEXT, 0, "Hel", 3 }, { WS_OP_PING, 1, "", 0 }));
}

static void
test_unmask(void)
{
	static const uint8_t	mask[4] = { 0x37, 0xfa, 0x21, 0x3d };
	static const uint8_t	enc[5] = { 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
	uint8_t			src[64], dst[80], want[64];
	char			out[6] = { 0 };
	int			bad = 0;

	/* §5.3, the RFC's "Hello", whole and as "Hel" + "lo" (off 3). */
	ws_unmask((uint8_t *)out, enc, 5, mask, 0);
	check(memcmp(out, "Hello", 5) == 0);
	memset(out, 0, sizeof out);
	ws_unmask((uint8_t *)out, enc, 3, mask, 0);
	ws_unmask((uint8_t *)out + 3, enc + 3, 2, mask, 3);
	check(memcmp(out, "Hello", 5) == 0);

	/* Every length, offset and alignment against the definition;
	 * bytes around dst untouched; in place gives the same. */
	for (size_t i = 0; i < sizeof src; i++)
		src[i] = i * 37 + 11;
	for (size_t n = 0; n <= 40; n++)
		for (uint64_t off = 0; off < 9; off++)
			for (size_t al = 0; al < 8; al++) {
				for (size_t i = 0; i < n; i++)
					want[i] = src[al + i] ^
					    mask[(off + i) % 4];
				memset(dst, 0xee, sizeof dst);
				ws_unmask(dst + al, src + al, n, mask, off);
				if (memcmp(dst + al, want, n) != 0 ||
				    dst[al + n] != 0xee ||
				    (al > 0 && dst[al - 1] != 0xee))
					bad++;
				memcpy(dst + al, src + al, n);
				ws_unmask(dst + al, dst + al, n, mask, off);
				if (memcmp(dst + al, want, n) != 0)
					bad++;
			}
	/* A large offset: only off % 4 matters. */
	ws_unmask(dst, src, 16, mask, (uint64_t)1 << 40 | 2);
	for (size_t i = 0; i < 16; i++)
		if (dst[i] != (src[i] ^ mask[(2 + i) % 4]))
			bad++;
	check(bad == 0);
}

/* ==== UTF-8 ========================================================== */

/* 0 valid, 1 an unfinished prefix, -1 invalid; from the guard page. */
static int
utf8_whole(const uint8_t *s, size_t n)
{
	uint32_t st = 0;

	if (ws_utf8_valid(&st, at_end(s, n), n) == -1)
		return -1;
	return st != 0;
}

/* The same, validated in two calls split at k. */
static int
utf8_split(const uint8_t *s, size_t n, size_t k)
{
	uint32_t st = 0;

	if (ws_utf8_valid(&st, at_end(s, k), k) == -1)
		return -1;
	if (ws_utf8_valid(&st, at_end(s + k, n - k), n - k) == -1)
		return -1;
	return st != 0;
}

/* Validated byte by byte: the index of the byte that failed, or -1. */
static long
utf8_fail_at(const uint8_t *s, size_t n)
{
	uint32_t st = 0;

	for (size_t i = 0; i < n; i++)
		if (ws_utf8_valid(&st, at_end(s + i, 1), 1) == -1)
			return i;
	return -1;
}

/*
 * An independent reference, written from RFC 3629 §3-4 in terms of code
 * points: 0 valid, -1 invalid, 1 when the input ends inside a sequence
 * that some continuation bytes could still complete (a sequence fixes the
 * top bits of its code point; the rest must be able to land in
 * [min, U+10FFFF] outside the surrogates).
 */
static int
ref_utf8(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint32_t	cp, min, lo, hi;
		int		len, k;

		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if ((s[i] & 0xe0) == 0xc0)
			len = 2, cp = s[i] & 0x1f, min = 0x80;
		else if ((s[i] & 0xf0) == 0xe0)
			len = 3, cp = s[i] & 0x0f, min = 0x800;
		else if ((s[i] & 0xf8) == 0xf0)
			len = 4, cp = s[i] & 0x07, min = 0x10000;
		else
			return -1;
		for (k = 1; k < len && i + k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return -1;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		lo = cp << 6 * (len - k);
		hi = lo | ((1u << 6 * (len - k)) - 1);
		if (lo < min)
			lo = min;
		if (hi > 0x10ffff)
			hi = 0x10ffff;
		if (lo > hi || (lo >= 0xd800 && hi <= 0xdfff))
			return -1;
		if (k < len)
			return 1;
		i += len;
	}
	return 0;
}

static void
test_utf8_table(void)
{
	static const struct u8 cases[] = {
		UV(""), UV("a"), UV("\x7f"), UV("Hello, world"),
		UV("\xc2\x80"), UV("\xc2\xa9"), UV("\xdf\xbf"),
		UV("\xe0\xa0\x80"), UV("\xe2\x82\xac"), UV("\xed\x9f\xbf"),
		UV("\xee\x80\x80"), UV("\xef\xbf\xbd"), UV("\xef\xbf\xbf"),
		UV("\xf0\x90\x80\x80"), UV("\xf0\x9f\x98\x80"),
		UV("\xf4\x8f\xbf\xbf"),
		UV("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
		UV("a\xc2\xa9\xe2\x82\xac\xf0\x9f\x98\x80z"),
		/* Unfinished: valid so far, state not 0 at the end. */
		UT("\xc2"), UT("\xe0"), UT("\xe0\xa0"), UT("\xed\x9f"),
		UT("\xf0"), UT("\xf0\x90"), UT("\xf0\x90\x80"),
		UT("\xf4\x8f\xbf"), UT("abc\xe2\x82"),
		/* Overlongs. */
		UI("\xc0\x80", 0), UI("\xc1\xbf", 0), UI("\xe0\x80\x80", 1),
		UI("\xe0\x9f\xbf", 1), UI("\xf0\x80\x80\x80", 1),
		UI("\xf0\x8f\xbf\xbf", 1),
		/* Surrogates. */
		UI("\xed\xa0\x80", 1), UI("\xed\xbf\xbf", 1),
		UI("\xed\xad\xbf\xed\xb0\x80", 1),
		/* Above U+10FFFF. */
		UI("\xf4\x90\x80\x80", 1), UI("\xf5\x80\x80\x80", 0),
		UI("\xf7\xbf\xbf\xbf", 0), UI("\xf8\x88\x80\x80\x80", 0),
		UI("\xfc\x84\x80\x80\x80\x80", 0), UI("\xfe", 0),
		UI("\xff", 0),
		/* Lone and stray continuation bytes. */
		UI("\x80", 0), UI("\xbf", 0), UI("a\x80", 1),
		UI("\xc2\xa9\xa9", 2), UI("\xe2\x82\xac\x80", 3),
		/* A sequence cut short by another byte. */
		UI("\xc2\x41", 1), UI("\xc2\xc2\xa9", 1), UI("\xe2\x82\x41", 2),
		UI("\xf0\x9f\x98\x41", 3),
	};
	int bad_whole = 0, bad_split = 0, bad_at = 0, bad_more = 0;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct u8	*c = &cases[i];
		const uint8_t	*s = (const uint8_t *)c->s;
		uint8_t		 more[16];
		int		 want = c->want;

		if (utf8_whole(s, c->n) != want) {
			fprintf(stderr, "  utf8: case %zu whole gives %d\n", i,
			    utf8_whole(s, c->n));
			bad_whole++;
		}
		if (ref_utf8(s, c->n) != want)
			bad_whole++;
		for (size_t k = 0; k <= c->n; k++)
			if (utf8_split(s, c->n, k) != want)
				bad_split++;
		if (want == -1 && utf8_fail_at(s, c->n) != c->at) {
			fprintf(stderr, "  utf8: case %zu fails at %ld, not "
			    "%ld\n", i, utf8_fail_at(s, c->n), c->at);
			bad_at++;
		}
		if (want != -1 && utf8_fail_at(s, c->n) != -1)
			bad_at++;
		/* Fail fast: more input after the first impossible byte does
		 * not change the answer. */
		memcpy(more, s, c->n);
		memcpy(more + c->n, "abc", 3);
		if (want == -1 && (utf8_whole(more, c->n + 3) != -1 ||
		    utf8_fail_at(more, c->n + 3) != c->at))
			bad_more++;
		/* An unfinished sequence followed by ASCII is invalid. */
		if (want == 1 && utf8_whole(more, c->n + 3) != -1)
			bad_more++;
		if (want == 0 && utf8_whole(more, c->n + 3) != 0)
			bad_more++;
	}
	check(bad_whole == 0);
	check(bad_split == 0);
	check(bad_at == 0);
	check(bad_more == 0);

	/* The state carries a sequence across calls of one byte each. */
	{
		static const uint8_t	s[] = "\xf4\x8f\xbf\xbf";
		uint32_t		st = 0;
		int			r = 0;

		for (int i = 0; i < 4; i++) {
			r |= ws_utf8_valid(&st, s + i, 1);
			if (i < 3 && st == 0)
				r = -2;
		}
		check(r == 0 && st == 0);
		st = 0;
		check(ws_utf8_valid(&st, s, 0) == 0 && st == 0);
	}
}

/* Every string of 1-3 bytes, and 4-byte strings whose last two bytes
 * come from the interesting edges, against the reference. */
static void
test_utf8_exhaustive(void)
{
	static const uint8_t	edge[] = { 0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90,
	    0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xe0, 0xf0, 0xf4, 0xf5, 0xff };
	uint8_t			s[4];
	long			bad = 0;

	for (unsigned a = 0; a < 256; a++) {
		s[0] = a;
		bad += utf8_whole(s, 1) != ref_utf8(s, 1);
		for (unsigned b = 0; b < 256; b++) {
			s[1] = b;
			bad += utf8_whole(s, 2) != ref_utf8(s, 2);
			for (unsigned c = 0; c < 256; c++) {
				uint32_t st = 0;
				int r;

				s[2] = c;
				r = ws_utf8_valid(&st, s, 3) == -1 ? -1 :
				    st != 0;
				bad += r != ref_utf8(s, 3);
			}
			for (size_t c = 0; c < sizeof edge; c++)
				for (size_t d = 0; d < sizeof edge; d++) {
					s[2] = edge[c];
					s[3] = edge[d];
					bad += utf8_whole(s, 4) !=
					    ref_utf8(s, 4);
				}
		}
	}
	check(bad == 0);
}

/* ==== Close codes ==================================================== */

/* RFC 6455 §7.4.1-2 and the IANA registry: which codes a close frame may
 * carry. */
static int
ref_close_code(unsigned c)
{
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
	    (c >= 3000 && c <= 4999);
}

static void
test_close_codes(void)
{
	static const unsigned	yes[] = { 1000, 1001, 1002, 1003, 1007, 1008,
	    1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999 };
	static const unsigned	no[] = { 0, 999, 1004, 1005, 1006, 1015, 1016,
	    1100, 2000, 2999, 5000, 65535, 65536, 0x10000 + 1000, 0xffffffff };
	int			bad = 0;

	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
		if (ws_close_code_valid(yes[i]) != 1) {
			fprintf(stderr, "  close code %u refused\n", yes[i]);
			bad++;
		}
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
		if (ws_close_code_valid(no[i]) != 0) {
			fprintf(stderr, "  close code %u accepted\n", no[i]);
			bad++;
		}
	check(bad == 0);
	bad = 0;
	for (unsigned c = 0; c < 70000; c++)
		bad += ws_close_code_valid(c) != ref_close_code(c);
	check(bad == 0);
}

/* ==== HTTP request head ============================================== */

/* Parse the head s from the guard page; slices live until the next
 * at_end(). */
static long
http(const char *s, size_t max, struct http_req *req, int *st)
{
	size_t n = strlen(s);

	*st = 0;
	return http_parse(at_end(s, n), n, max, req, st);
}

static int
sl_is(struct http_slice s, const char *lit)
{
	return s.n == strlen(lit) && (s.n == 0 || memcmp(s.p, lit, s.n) == 0);
}

/* http_has_token on a value that ends at the guard page. */
static int
has_token(const char *v, const char *tok)
{
	size_t n = strlen(v);

	return http_has_token((struct http_slice){
	    (const char *)at_end(v, n), n }, tok);
}

/* A head of exactly total bytes, padded in one header. */
static size_t
make_head(char *out, size_t total)
{
	static const char pre[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
	size_t np = total - (sizeof pre - 1) - 4;

	memcpy(out, pre, sizeof pre - 1);
	memset(out + sizeof pre - 1, 'p', np);
	memcpy(out + sizeof pre - 1 + np, "\r\n\r\n", 4);
	out[total] = '\0';
	return total;
}

static const char upgrade_req[] =
    "GET /chat?room=a%20b&x=1 HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol:  chat, superchat \t\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

static void
test_http_request(void)
{
	struct http_req	 req, req2;
	const struct http_slice	*v;
	const uint8_t		*buf;
	size_t			 n = sizeof upgrade_req - 1;
	char			 acc[29], more[sizeof upgrade_req + 16];
	int			 st, again = 0, st2;
	long			 r;

	buf = at_end(upgrade_req, n);
	r = http_parse(buf, n, HTTP_MAX_HEADER, &req, &st);
	check(r == (long)n);
	check(sl_is(req.method, "GET") && req.method.p == (const char *)buf);
	check(sl_is(req.target, "/chat?room=a%20b&x=1"));
	check(sl_is(req.path, "/chat") && sl_is(req.query, "room=a%20b&x=1"));
	check(req.minor == 1 && req.nhdr == 7 && req.content_length == 0);
	check(req.keep_alive == 1 && req.upgrade == 1);
	check(sl_is(req.hdr[0].name, "Host") &&
	    sl_is(req.hdr[0].value, "server.example.com"));
	/* Borrowed, not copied: every slice points into the buffer. */
	check(req.hdr[6].name.p >= (const char *)buf &&
	    req.hdr[6].value.p + req.hdr[6].value.n <= (const char *)buf + n);
	/* OWS trimmed on both sides of a value. */
	check(sl_is(req.hdr[5].value, "chat, superchat"));

	/* Header lookup is case-insensitive on the name, exact in length. */
	v = http_header(&req, "sec-websocket-key");
	check(v != NULL && sl_is(*v, "dGhlIHNhbXBsZSBub25jZQ=="));
	check(http_header(&req, "SEC-WEBSOCKET-KEY") == v);
	check(http_header(&req, "Sec-WebSocket-Key") == v);
	check(http_header(&req, "Sec-WebSocket-Ke") == NULL);
	check(http_header(&req, "Sec-WebSocket-Keys") == NULL);
	check(http_header(&req, "Cookie") == NULL);
	v = http_header(&req, "connection");
	check(v != NULL && http_has_token(*v, "upgrade") &&
	    http_has_token(*v, "KEEP-ALIVE") &&
	    !http_has_token(*v, "close"));
	v = http_header(&req, "Sec-WebSocket-Key");
	ws_accept_key(v->p, v->n, acc);
	check(strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);

	/* Every strict prefix, ending on the guard page: need more.  The
	 * whole head gives the same result with max = its length. */
	for (size_t k = 0; k < n; k++) {
		if (http_parse(at_end(upgrade_req, k), k, HTTP_MAX_HEADER,
		    &req2, &st2) != WS_AGAIN)
			again++;
		if (http_parse(at_end(upgrade_req, k), k, n, &req2,
		    &st2) != WS_AGAIN)
			again++;
	}
	check(again == 0);
	buf = at_end(upgrade_req, n);
	r = http_parse(buf, n, n, &req2, &st2);
	check(r == (long)n && req2.nhdr == 7 && req2.upgrade &&
	    sl_is(req2.query, "room=a%20b&x=1"));

	/* Bytes after the head (a body, a pipelined request) are not part
	 * of it. */
	memcpy(more, upgrade_req, n);
	memcpy(more + n, "GET / HTTP/1.1\r\n", 16);
	r = http_parse(at_end(more, n + 16), n + 16, HTTP_MAX_HEADER, &req2,
	    &st2);
	check(r == (long)n);
	r = http_parse(at_end(more, n + 16), n + 16, n, &req2, &st2);
	check(r == (long)n);

	/* Path and query. */
	check(http("GET /a? HTTP/1.1\r\nHost: h\r\n\r\n", 8192, &req, &st) > 0 &&
	    sl_is(req.path, "/a") && sl_is(req.query, ""));
	check(http("GET /a HTTP/1.1\r\nHost: h\r\n\r\n", 8192, &req, &st) > 0 &&
	    sl_is(req.path, "/a") && req.query.n == 0);
	check(http("GET /a?b?c=%3F HTTP/1.1\r\nHost: h\r\n\r\n", 8192, &req,
	    &st) > 0 && sl_is(req.path, "/a") && sl_is(req.query, "b?c=%3F"));
	check(http("GET /?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", 8192, &req, &st) >
	    0 && sl_is(req.path, "/") && sl_is(req.query, "x=1"));
	check(http("POST /p/q HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",
	    8192, &req, &st) > 0 && sl_is(req.method, "POST") &&
	    req.content_length == 5);
}

static void
test_http_tokens(void)
{
	struct http_req	req;
	int			st;

	/* Comma-separated token lists (RFC 9110 §5.6.1). */
	check(has_token("keep-alive, Upgrade", "upgrade"));
	check(has_token("keep-alive, Upgrade", "keep-alive"));
	check(has_token("keep-alive,Upgrade", "Upgrade"));
	check(has_token("Upgrade", "upgrade"));
	check(has_token("UPGRADE", "upgrade"));
	check(has_token(" \tUpgrade\t ", "upgrade"));
	check(has_token(",,Upgrade,,", "upgrade"));
	check(has_token("a , b ,Upgrade , c", "upgrade"));
	check(!has_token("keep-alive", "upgrade"));
	check(!has_token("Upgraded", "upgrade"));
	check(!has_token("Upgrad", "upgrade"));
	check(!has_token("xUpgrade", "upgrade"));
	check(!has_token("Up grade", "upgrade"));
	check(!has_token("keep-alive Upgrade", "upgrade"));
	check(!has_token("", "upgrade"));
	check(!has_token(", ,", "upgrade"));
	check(!has_token("keep-alive, Upgrade", "Upgrade, keep-alive"));

	/* Connection and keep-alive. */
	check(http("GET / HTTP/1.1\r\nHost: h\r\n\r\n", 8192, &req, &st) > 0 &&
	    req.keep_alive == 1 && req.minor == 1 && req.upgrade == 0);
	check(http("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
	    8192, &req, &st) > 0 && req.keep_alive == 0);
	check(http("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, Close\r\n"
	    "\r\n", 8192, &req, &st) > 0 && req.keep_alive == 0);
	check(http("GET / HTTP/1.0\r\n\r\n", 8192, &req, &st) > 0 &&
	    req.keep_alive == 0 && req.minor == 0 && req.nhdr == 0);
	check(http("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 8192,
	    &req, &st) > 0 && req.keep_alive == 1);

	/* The Upgrade flag: "websocket" among the listed protocols. */
	check(http("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n\r\n",
	    8192, &req, &st) > 0 && req.upgrade == 1);
	check(http("GET / HTTP/1.1\r\nHost: h\r\nupgrade: h2c, websocket\r\n"
	    "\r\n", 8192, &req, &st) > 0 && req.upgrade == 1);
	check(http("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websockets\r\n\r\n",
	    8192, &req, &st) > 0 && req.upgrade == 0);
	check(http("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n\r\n",
	    8192, &req, &st) > 0 && req.upgrade == 0);

	/* Content-Length. */
	check(http("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n",
	    8192, &req, &st) > 0 && req.content_length == 42);
	check(http("POST / HTTP/1.1\r\nHost: h\r\ncontent-length:  7 \r\n\r\n",
	    8192, &req, &st) > 0 && req.content_length == 7);
	check(http("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
	    8192, &req, &st) > 0 && req.content_length == 0);
	check(http("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
	    "Content-Length: 5\r\n\r\n", 8192, &req, &st) > 0 &&
	    req.content_length == 5);
	/* An empty Host is allowed (RFC 9112 §3.2). */
	check(http("GET / HTTP/1.1\r\nHost:\r\n\r\n", 8192, &req, &st) > 0);
}

static void
test_http_errors(void)
{
	static const struct {
		const char	*s;
		int		 status;
	} bad[] = {
		/* Content-Length: differing duplicates (RFC 9112 §6.3), not
		 * digits, empty, too large for 64 bits. */
		{ "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
		  "Content-Length: 6\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
		  "Content-Length: 50\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5a\r\n\r\n",
		  400 },
		{ "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
		  400 },
		{ "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
		  400 },
		{ "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n",
		  400 },
		{ "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n",
		  400 },
		{ "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: "
		  "99999999999999999999\r\n\r\n", 400 },
		{ "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: "
		  "18446744073709551617\r\n\r\n", 400 },
		/* Transfer-Encoding, any value. */
		{ "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
		  "\r\n", 501 },
		{ "POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: identity\r\n"
		  "\r\n", 501 },
		/* Not HTTP/1.x. */
		{ "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505 },
		{ "GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505 },
		{ "GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505 },
		/* Host: missing in 1.1, or twice. */
		{ "GET / HTTP/1.1\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400 },
		{ "GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", 400 },
		/* Obsolete line folding (RFC 9112 §5.2). */
		{ "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400 },
		/* Bare LF inside a head that ends in CRLF CRLF. */
		{ "GET / HTTP/1.1\nHost: h\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nX: y\nHost: h\r\n\r\n", 400 },
		/* Bare CR. */
		{ "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400 },
		{ "GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
		/* Malformed request lines. */
		{ "\r\n\r\n", 400 },
		{ "GET\r\n\r\n", 400 },
		{ "GET /\r\nHost: h\r\n\r\n", 400 },
		{ " / HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
		{ "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
		{ "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400 },
		{ "GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
		{ "GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400 },
		{ "GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400 },
		{ "GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400 },
		{ "GET / http/1.1\r\nHost: h\r\n\r\n", 400 },
		{ "GET / HTTPS/1.1\r\nHost: h\r\n\r\n", 400 },
		/* Malformed header lines. */
		{ "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: h\r\nX-A : v\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: h\r\nX(A): v\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01" "b\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7f\r\n\r\n", 400 },
	};
	struct http_req	req;
	int			st, nbad = 0;
	long			r;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		r = http(bad[i].s, HTTP_MAX_HEADER, &req, &st);
		if (r != WS_ERROR || st != bad[i].status) {
			fprintf(stderr, "  http: case %zu gives %ld status %d, "
			    "want %d\n", i, r, st, bad[i].status);
			nbad++;
		}
	}
	check(nbad == 0);

	/* Both framings at once: refused either way. */
	r = http("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", 8192, &req, &st);
	check(r == WS_ERROR && (st == 400 || st == 501));

	/*
	 * Bare LF line ends are refused (ws.h).  A head that uses only LF
	 * never has the CRLF CRLF that ends a head, so the parser cannot
	 * tell it from an unfinished one: it must never be accepted, and
	 * it is WS_AGAIN (or 400) below max and 431 once max bytes are in.
	 */
	{
		static const char lf[] = "GET / HTTP/1.1\nHost: h\n\n";
		size_t n = sizeof lf - 1;

		r = http(lf, HTTP_MAX_HEADER, &req, &st);
		check(r == WS_AGAIN || (r == WS_ERROR && st == 400));
		r = http(lf, n, &req, &st);
		check(r == WS_ERROR && (st == 431 || st == 400));
		r = http("GET / HTTP/1.1\r\nHost: h\n\n", HTTP_MAX_HEADER, &req,
		    &st);
		check(r == WS_AGAIN || (r == WS_ERROR && st == 400));
		r = http("GET / HTTP/1.1\r\nHost: h\r\n\n", HTTP_MAX_HEADER, &req,
		    &st);
		check(r == WS_AGAIN || (r == WS_ERROR && st == 400));
		r = http("GET / HTTP/1.1\r\nHost: h\n\r\n", HTTP_MAX_HEADER, &req,
		    &st);
		check(r == WS_AGAIN || (r == WS_ERROR && st == 400));
	}
}

static void
test_http_limits(void)
{
	static char		head[HTTP_MAX_HEADER + 64];
	struct http_req	req;
	int			st;
	long			r;
	size_t			max;

	/* The default limit: a head of exactly HTTP_MAX_HEADER bytes parses,
	 * one byte more is 431, found as soon as max bytes are in. */
	make_head(head, HTTP_MAX_HEADER);
	r = http(head, HTTP_MAX_HEADER, &req, &st);
	check(r == HTTP_MAX_HEADER && req.nhdr == 2 &&
	    req.hdr[1].value.n == HTTP_MAX_HEADER - 36);
	make_head(head, HTTP_MAX_HEADER + 1);
	r = http(head, HTTP_MAX_HEADER, &req, &st);
	check(r == WS_ERROR && st == 431);
	r = http_parse(at_end(head, HTTP_MAX_HEADER), HTTP_MAX_HEADER,
	    HTTP_MAX_HEADER, &req, &st);
	check(r == WS_ERROR && st == 431);
	st = 0;
	r = http_parse(at_end(head, HTTP_MAX_HEADER - 1), HTTP_MAX_HEADER - 1,
	    HTTP_MAX_HEADER, &req, &st);
	check(r == WS_AGAIN);

	/* Other limits, at N and N + 1. */
	for (max = 40; max <= 300; max += 37) {
		make_head(head, max);
		r = http(head, max, &req, &st);
		check(r == (long)max);
		make_head(head, max + 1);
		r = http(head, max, &req, &st);
		check(r == WS_ERROR && st == 431);
	}

	/* HTTP_MAX_HEADERS lines parse, one more is 431. */
	{
		char	*p = head;
		int	 ok = 1;

		p += sprintf(p, "GET / HTTP/1.1\r\nHost: h\r\n");
		for (int i = 1; i < HTTP_MAX_HEADERS; i++)
			p += sprintf(p, "X-%02d: v%d\r\n", i, i);
		strcpy(p, "\r\n");
		r = http(head, HTTP_MAX_HEADER, &req, &st);
		check(r == (long)strlen(head) && req.nhdr == HTTP_MAX_HEADERS);
		for (int i = 1; i < HTTP_MAX_HEADERS; i++) {
			char name[16], val[16];

			snprintf(name, sizeof name, "x-%02d", i);
			snprintf(val, sizeof val, "v%d", i);
			if (http_header(&req, name) == NULL ||
			    !sl_is(*http_header(&req, name), val))
				ok = 0;
		}
		check(ok);
		strcpy(p, "X-Last: v\r\n\r\n");
		r = http(head, HTTP_MAX_HEADER, &req, &st);
		check(r == WS_ERROR && st == 431);
	}
}

/* Bearer credentials: the scheme in any case, nothing for another scheme
 * or for two Authorization lines (which one would count?). */
static void
test_bearer(void)
{
	static const struct {
		const char *head, *want;
	} cases[] = {
		{ "Authorization: Bearer abc\r\n", "abc" },
		{ "authorization: bEARER abc.def\r\n", "abc.def" },
		{ "Authorization: Basic abc\r\n", "" },
		{ "Authorization: Bearer \r\n", "" },
		{ "", "" },
		{ "Authorization: Bearer abc\r\nAuthorization: Bearer abc\r\n",
		    "" },
		{ "Authorization: Bearer abc\r\nAuthorization: Bearer xyz\r\n",
		    "" },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char raw[256];
		struct http_req req;
		struct http_slice b;
		int st, n = snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\n"
		    "Host: x\r\n%s\r\n", cases[i].head);

		check(http_parse((const uint8_t *)raw, n, sizeof raw, &req,
		    &st) == n);
		b = http_bearer(&req);
		check(b.n == strlen(cases[i].want) &&
		    memcmp(b.p ? b.p : "", cases[i].want, b.n) == 0);
	}
}

static void
test_query(void)
{
	static const char	q[] = "room=a%20b&x=1&plus=a+b%2B&empty=&"
	    "enc=%41%42%2f%2F%c3%A9&bad=%zz&short=%4&pct=%&flag&xroom=9&"
	    "nul=%00&y=2";
	struct http_slice		s = { q, sizeof q - 1 };
	char			out[32];

	check(http_query_param(s, "room", out, sizeof out) == 3 &&
	    strcmp(out, "a b") == 0);
	check(http_query_param(s, "x", out, sizeof out) == 1 &&
	    strcmp(out, "1") == 0);
	check(http_query_param(s, "plus", out, sizeof out) == 4 &&
	    strcmp(out, "a b+") == 0);
	check(http_query_param(s, "empty", out, sizeof out) == 0 &&
	    out[0] == '\0');
	check(http_query_param(s, "enc", out, sizeof out) == 6 &&
	    memcmp(out, "AB//\xc3\xa9", 7) == 0);
	check(http_query_param(s, "y", out, sizeof out) == 1 &&
	    strcmp(out, "2") == 0);
	check(http_query_param(s, "xroom", out, sizeof out) == 1 &&
	    strcmp(out, "9") == 0);
	/* Absent: not there, only a prefix or a suffix of a name, or a name
	 * with no '='. */
	check(http_query_param(s, "missing", out, sizeof out) == -1);
	check(http_query_param(s, "roo", out, sizeof out) == -1);
	check(http_query_param(s, "oom", out, sizeof out) == -1);
	check(http_query_param(s, "flag", out, sizeof out) == -1);
	check(http_query_param((struct http_slice){ NULL, 0 }, "x", out,
	    sizeof out) == -1);
	check(http_query_param((struct http_slice){ "", 0 }, "x", out,
	    sizeof out) == -1);
	/* Malformed percent escapes. */
	check(http_query_param(s, "bad", out, sizeof out) == WS_ERROR);
	check(http_query_param(s, "short", out, sizeof out) == WS_ERROR);
	check(http_query_param(s, "pct", out, sizeof out) == WS_ERROR);
	/* %00 cannot be carried in a NUL-terminated result. */
	check(http_query_param(s, "nul", out, sizeof out) == WS_ERROR);

	/* Too long for out: the value and its NUL need len + 1 bytes. */
	check(http_query_param(s, "room", out, 4) == 3 &&
	    strcmp(out, "a b") == 0);
	check(http_query_param(s, "room", out, 3) == WS_ERROR);
	check(http_query_param(s, "room", out, 1) == WS_ERROR);
	check(http_query_param(s, "empty", out, 1) == 0 && out[0] == '\0');
	{
		char	long_q[600], big[512];
		size_t	n = 0;

		n += sprintf(long_q, "k=");
		memset(long_q + n, 'v', 512);
		n += 512;
		check(http_query_param((struct http_slice){ long_q, n }, "k", big,
		    sizeof big) == WS_ERROR);
		check(http_query_param((struct http_slice){ long_q, n - 1 }, "k",
		    big, sizeof big) == 511 && strlen(big) == 511);
	}
}

/* ==== Guard page ===================================================== */

/* Reading the first byte of the guard page must fault. */
static int
probe_guard_faults(void)
{
	return guard_probe[0] == 0x55;
}

static void
test_guard_page(void)
{
	static const char	*frames_in[] = {
		"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
		"\x82\xfe\x00\x7e",
		"\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00\x01\x02",
	};
	static const size_t	 frames_n[] = { 11, 4, 12 };
	static const char	*utf8_in[] = { "\xf4\x8f\xbf\xbf",
	    "\xe2\x82", "\xed\xa0\x80", "\xc2", "\xf0\x90\x80" };
	size_t			 pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t			 n = sizeof upgrade_req - 1;
	uint8_t			*m, *end;
	struct http_req	 req;
	const struct http_slice	*v;
	int			 st, bad = 0;
	char			 out[32];

	m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || mprotect(m + pg, pg, PROT_NONE) == -1)
		abort();
	end = m + pg;

	/* The guard is real: a read of its first byte kills a child. */
	guard_probe = end;
	check(!survives(probe_guard_faults, 1));

	/* The upgrade head at every length, ending at the guard. */
	for (size_t k = 0; k <= n; k++) {
		long r;

		memcpy(end - k, upgrade_req, k);
		r = http_parse(end - k, k, HTTP_MAX_HEADER, &req, &st);
		if (r != (k == n ? (long)n : WS_AGAIN))
			bad++;
	}
	check(bad == 0);
	v = http_header(&req, "SEC-WEBSOCKET-VERSION");
	check(v != NULL && sl_is(*v, "13"));
	/* ... and with max = its length, every prefix then 431 past it. */
	bad = 0;
	for (size_t k = 0; k <= n; k++) {
		long r;

		memcpy(end - k, upgrade_req, k);
		r = http_parse(end - k, k, n - 1, &req, &st);
		if (r != (k < n - 1 ? WS_AGAIN : WS_ERROR))
			bad++;
	}
	check(bad == 0);

	/* Values and keys that end at the guard. */
	memcpy(end - 19, "keep-alive, Upgrade", 19);
	check(http_has_token((struct http_slice){ (char *)end - 19, 19 },
	    "upgrade"));
	check(!http_has_token((struct http_slice){ (char *)end - 19, 19 },
	    "close"));
	memcpy(end - 24, "dGhlIHNhbXBsZSBub25jZQ==", 24);
	ws_accept_key((char *)end - 24, 24, out);
	check(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
	memcpy(end - 8, "a=1&b=%4", 8);
	check(http_query_param((struct http_slice){ (char *)end - 8, 8 }, "b",
	    out, sizeof out) == WS_ERROR);
	memcpy(end - 7, "a=1&b=%", 7);
	check(http_query_param((struct http_slice){ (char *)end - 7, 7 }, "b",
	    out, sizeof out) == WS_ERROR);
	memcpy(end - 5, "a=1&b", 5);
	check(http_query_param((struct http_slice){ (char *)end - 5, 5 }, "b",
	    out, sizeof out) == -1);
	memcpy(end - 8, "a=1&b=%7", 8);
	check(http_query_param((struct http_slice){ (char *)end - 8, 8 }, "a",
	    out, sizeof out) == 1);

	/* Frames: every prefix in one piece ending at the guard, and the
	 * same bytes one at a time, each the last byte before the guard. */
	bad = 0;
	for (size_t i = 0; i < sizeof frames_n / sizeof frames_n[0]; i++)
		for (size_t k = 0; k <= frames_n[i]; k++) {
			struct dec d1, d2;

			dec_init(&d1, WS_MAX_MESSAGE);
			memcpy(end - k, frames_in[i], k);
			dec_feed(&d1, end - k, k);
			dec_init(&d2, WS_MAX_MESSAGE);
			for (size_t j = 0; j < k; j++) {
				end[-1] = frames_in[i][j];
				dec_feed(&d2, end - 1, 1);
			}
			bad += !dec_same(&d1, &d2) || d1.code != 0;
			bad += k == 11 && i == 0 && !dec_is(&d1, 0,
			    XF({ WS_OP_TEXT, 1, "Hello", 5 }), 1);
			dec_free(&d1);
			dec_free(&d2);
		}
	check(bad == 0);

	/* UTF-8 at every prefix, against the reference. */
	bad = 0;
	for (size_t i = 0; i < sizeof utf8_in / sizeof utf8_in[0]; i++) {
		size_t un = strlen(utf8_in[i]);

		for (size_t k = 0; k <= un; k++) {
			uint32_t	st8 = 0;
			int		r;

			memcpy(end - k, utf8_in[i], k);
			r = ws_utf8_valid(&st8, end - k, k) == -1 ? -1 :
			    st8 != 0;
			bad += r != ref_utf8(end - k, k);
		}
	}
	check(bad == 0);
	munmap(m, 2 * pg);
}

/* ==== Probes that may crash ========================================== */

/* cap 0 leaves no room even for the NUL: out must not be written.  out
 * is the first byte of the guard page. */
static int
probe_query_cap0(void)
{
	return http_query_param((struct http_slice){ "a=", 2 }, "a",
	    (char *)arena_end, 0) == WS_ERROR;
}

/* A payload length so large that header + payload wraps size_t: NULL,
 * not a small buffer written out of bounds. */
static int
probe_frame_huge(void)
{
	static const uint8_t src[16];

	return ws_buf_frame(WS_OP_BINARY, src, SIZE_MAX - 5) == NULL;
}

static void
test_crash_probes(void)
{
	check(survives(probe_query_cap0, 0));
	check(survives(probe_frame_huge, 0));
}

int
main(void)
{
	arena_init();
	for (size_t i = 0; i < sizeof pat; i++)
		pat[i] = (uint8_t)(i * 7 + (i >> 8) + 3);
	test_accept_key();
	test_encoder();
	test_rfc_frames();
	test_decoder_calls();
	test_decoder_errors();
	test_decoder_limits();
	test_decoder_zero();
	test_decoder_interleave();
	test_unmask();
	test_utf8_table();
	test_utf8_exhaustive();
	test_close_codes();
	test_http_request();
	test_http_tokens();
	test_http_errors();
	test_http_limits();
	test_query();
	test_bearer();
	test_guard_page();
	test_crash_probes();
	return t_done();
}
