/*
 * fuzz_frame.c - libFuzzer target for the frame decoder and UTF-8.
 *
 * The first byte picks how the rest is cut into reads (1 to 16 bytes, or
 * whole); the decoder must give the same frames and the same verdict
 * whatever the cuts, never hand out bytes outside the input, and text
 * validated in pieces must agree with text validated whole.
 */
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define need(c)	do { if (!(c)) abort(); } while (0)
#define MAX_MSG	4096

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

struct run {
	uint8_t  out[1 << 16];	/* unmasked payload bytes, concatenated */
	size_t   olen;
	int      frames, code, error;
	uint32_t utf8;
	int      utf8_bad;
};

static void
decode(const uint8_t *buf, size_t len, size_t step, struct run *r)
{
	struct ws_parser p;
	size_t off = 0;

	ws_parser_init(&p, MAX_MSG);
	memset(r, 0, sizeof *r);
	while (off < len && !r->error) {
		size_t piece = step == 0 || len - off < step ? len - off : step;
		size_t used = 0;

		while (!r->error) {
			struct ws_chunk c;
			long n = ws_frame_parse(&p, buf + off + used,
			    piece - used, &c, &r->code);

			if (n == WS_AGAIN)
				break;
			if (n == WS_ERROR) {
				need(r->code == 1002 || r->code == 1009);
				r->error = 1;
				break;
			}
			need(n >= 0 && (size_t)n <= piece - used);
			need(c.p >= buf + off + used && c.p + c.n <= buf + off +
			    used + n);
			if (r->olen + c.n <= sizeof r->out) {
				ws_unmask(r->out + r->olen, c.p, c.n, p.mask,
				    c.off);
				if (ws_utf8_valid(&r->utf8, r->out + r->olen,
				    c.n) == -1)
					r->utf8_bad = 1;
				r->olen += c.n;
			}
			r->frames += c.end;
			used += n;
			if (used == piece)
				break;
		}
		off += piece;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run whole, cut;
	uint32_t st = 0;

	if (size < 1)
		return 0;
	decode(data + 1, size - 1, 0, &whole);
	decode(data + 1, size - 1, 1 + data[0] % 16, &cut);
	need(whole.error == cut.error && whole.code == cut.code);
	need(whole.frames == cut.frames && whole.olen == cut.olen);
	need(memcmp(whole.out, cut.out, whole.olen) == 0);
	need(whole.utf8_bad == (ws_utf8_valid(&st, whole.out, whole.olen) == -1));
	return 0;
}
