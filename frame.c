/*
 * frame.c - the RFC 6455 codec: shared output buffers and the frame
 * encoder, the opening handshake's key and accept value, UTF-8, close
 * codes, and the resumable frame decoder.
 *
 * Pure: no sockets, no clock, no global state but a count of freed bytes.
 * It knows nothing of connections, HTTP or JSON; ws.c feeds it bytes it
 * read and queues the buffers it makes.  The unit tests and the frame
 * fuzz target link this file alone.
 *
 * Parsers return n >= 0 (bytes consumed), WS_AGAIN (need more) or
 * WS_ERROR (with the close code in an out-parameter).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "frame.h"

static size_t freed;		/* bytes of buffers freed, for ws_buf_freed() */

/* ==== Shared buffers and the frame encoder ============================ */

struct ws_buf *
ws_buf_new(size_t len)
{
	struct ws_buf *b;

	if (len > UINT32_MAX - sizeof *b)
		return NULL;
	if ((b = malloc(sizeof *b + len)) == NULL)
		return NULL;
	b->refs = 1;
	b->len = len;
	b->nframes = 1;
	b->hlen = 0;
	b->ctrl = 0;
	b->http = 0;
	return b;
}

/* RFC 6455 §5.2: a server frame is never masked; the length takes 7, 7+16
 * or 7+64 bits, the shortest that fits. */
struct ws_buf *
ws_buf_frame(int opcode, const void *payload, size_t len)
{
	size_t hlen = len < 126 ? 2 : len < 65536 ? 4 : 10;
	struct ws_buf *b;

	if (len > SIZE_MAX - hlen || (b = ws_buf_new(hlen + len)) == NULL)
		return NULL;
	b->data[0] = 0x80 | opcode;
	if (len < 126)
		b->data[1] = len;
	else if (len < 65536) {
		b->data[1] = 126;
		b->data[2] = len >> 8;
		b->data[3] = len;
	} else {
		b->data[1] = 127;
		for (int i = 0; i < 8; i++)
			b->data[2 + i] = (uint64_t)len >> (56 - 8 * i);
	}
	if (len > 0)
		memcpy(b->data + hlen, payload, len);
	b->hlen = hlen;
	b->ctrl = opcode >= WS_OP_CLOSE;
	return b;
}

struct ws_buf *
ws_buf_batch(struct ws_buf *const *bufs, uint32_t n)
{
	size_t len = 0, off = 0;
	struct ws_buf *b;

	for (uint32_t i = 0; i < n; i++)
		len += bufs[i]->len;
	if ((b = ws_buf_new(len)) == NULL)
		return NULL;
	for (uint32_t i = 0; i < n; i++) {
		memcpy(b->data + off, bufs[i]->data, bufs[i]->len);
		off += bufs[i]->len;
	}
	b->nframes = n;
	return b;
}

void
ws_buf_ref(struct ws_buf *b)
{
	b->refs++;
}

void
ws_buf_unref(struct ws_buf *b)
{
	if (b != NULL && --b->refs == 0) {
		freed += b->len;
		free(b);
	}
}

size_t
ws_buf_freed(void)
{
	size_t n = freed;

	freed = 0;
	return n;
}

/* ==== Opening handshake (RFC 6455 §4.2) ============================== */

void
ws_accept_key(const char *key, size_t len, char out[29])
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	uint8_t in[64 + sizeof guid], md[SHA_DIGEST_LENGTH];
	size_t n = len < 64 ? len : 64;		/* a valid key has 24 */

	memcpy(in, key, n);
	memcpy(in + n, guid, sizeof guid - 1);
	SHA1(in, n + sizeof guid - 1, md);
	EVP_EncodeBlock((unsigned char *)out, md, sizeof md);
}

/* §4.2.1: the key is the base64 of 16 random bytes: exactly 24 characters,
 * 22 from the alphabet, then "==".  The last data character carries only
 * 2 bits, so its low 4 bits must be zero. */
int
ws_key_valid(const char *k, size_t n)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *pos;

	if (n != 24 || k[22] != '=' || k[23] != '=')
		return 0;
	for (int i = 0; i < 22; i++)
		if (k[i] == '\0' || strchr(b64, k[i]) == NULL)
			return 0;
	pos = strchr(b64, k[21]);
	return ((pos - b64) & 0xf) == 0;
}

/* ==== UTF-8 (RFC 3629) =============================================== */

/*
 * The state packs the continuation bytes still expected (bits 16+) and the
 * range allowed for the next one (lo in bits 0-7, hi in 8-15).  The narrow
 * ranges after E0, ED, F0 and F4 are what exclude overlongs, surrogates
 * and code points above U+10FFFF, so a bad prefix fails at its first
 * impossible byte.
 */
int
ws_utf8_valid(uint32_t *state, const uint8_t *s, size_t n)
{
	uint32_t st = *state;

	for (size_t i = 0; i < n; i++) {
		unsigned b = s[i], need = st >> 16, lo, hi;

		if (need == 0) {
			if (b < 0x80)
				continue;
			lo = 0x80, hi = 0xbf;
			if (b >= 0xc2 && b <= 0xdf)
				need = 1;
			else if (b >= 0xe0 && b <= 0xef) {
				need = 2;
				if (b == 0xe0)
					lo = 0xa0;
				else if (b == 0xed)
					hi = 0x9f;
			} else if (b >= 0xf0 && b <= 0xf4) {
				need = 3;
				if (b == 0xf0)
					lo = 0x90;
				else if (b == 0xf4)
					hi = 0x8f;
			} else
				return -1;
			st = need << 16 | hi << 8 | lo;
			continue;
		}
		if (b < (st & 0xff) || b > ((st >> 8) & 0xff))
			return -1;
		need--;
		st = need == 0 ? 0 : need << 16 | 0xbf << 8 | 0x80;
	}
	*state = st;
	return 0;
}

/* §7.4.1 and §7.4.2: 1000-1003, 1007-1014 are defined for use in a close
 * frame (1004 reserved; 1005, 1006 and 1015 must never be sent);
 * 3000-4999 belong to libraries and applications. */
int
ws_close_code_valid(unsigned code)
{
	if (code >= 1000 && code <= 1003)
		return 1;
	if (code >= 1007 && code <= 1014)
		return 1;
	return code >= 3000 && code <= 4999;
}

/* ==== Frame decoder (RFC 6455 §5.2) ================================== */

/*
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-------+-+-------------+-------------------------------+
 *  |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
 *  |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
 *  |N|V|V|V|       |S|             |   (if payload len==126/127)   |
 *  | |1|2|3|       |K|             |                               |
 *  +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
 *  |     Extended payload length continued, if payload len == 127  |
 *  + - - - - - - - - - - - - - - - +-------------------------------+
 *  |                               |Masking-key, if MASK set to 1  |
 *  +-------------------------------+-------------------------------+
 *  | Masking-key (continued)       |          Payload Data         |
 *  +-------------------------------- - - - - - - - - - - - - - - - +
 *
 * States follow the wire: HEAD (2 bytes), LEN (0, 2 or 8), MASK (4),
 * DATA (len bytes, handed out in chunks).  need counts the bytes still
 * missing for the current header state; they are gathered in hdr so a
 * header split anywhere, even byte by byte, decodes the same.
 */

void
ws_parser_init(struct ws_parser *p, uint64_t max_msg)
{
	memset(p, 0, sizeof *p);
	p->state = WS_P_HEAD;
	p->need = 2;
	p->max_msg = max_msg;
}

/* The two fixed bytes are in: check every rule they decide. */
static int
frame_head(struct ws_parser *p, int *code)
{
	uint8_t b0 = p->hdr[0], b1 = p->hdr[1];
	unsigned len7 = b1 & 0x7f;

	p->fin = b0 >> 7;
	p->opcode = b0 & 0x0f;
	*code = WS_CLOSE_PROTOCOL;
	/* §5.2: RSV1-3 must be 0 unless an extension says otherwise; wsd
	 * negotiates none. */
	if (b0 & 0x70)
		return -1;
	/* §5.1: a client masks every frame it sends. */
	if (!(b1 & 0x80))
		return -1;
	switch (p->opcode) {
	case WS_OP_CONT:
		/* §5.4: a continuation belongs to an open message. */
		if (!p->in_msg)
			return -1;
		break;
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		/* §5.4: no new message inside a fragmented one. */
		if (p->in_msg)
			return -1;
		break;
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		/* §5.5: control frames carry at most 125 bytes and are
		 * never fragmented. */
		if (!p->fin || len7 > 125)
			return -1;
		break;
	default:
		/* §5.2: opcodes 3-7 and B-F are reserved. */
		return -1;
	}
	p->len = len7;
	p->need = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
	return 0;
}

/* The full length is known: check the 64-bit rule and the size limit. */
static int
frame_length(struct ws_parser *p, int *code)
{
	unsigned ext = p->have - 2;

	if (ext == 2)
		p->len = (uint64_t)p->hdr[2] << 8 | p->hdr[3];
	else if (ext == 8) {
		/* §5.2: the most significant bit must be 0. */
		if (p->hdr[2] & 0x80) {
			*code = WS_CLOSE_PROTOCOL;
			return -1;
		}
		p->len = 0;
		for (int i = 0; i < 8; i++)
			p->len = p->len << 8 | p->hdr[2 + i];
	}
	if (p->opcode < WS_OP_CLOSE) {
		if (p->opcode != WS_OP_CONT)
			p->msg_len = 0;
		/* Refuse before buffering a byte past the limit. */
		if (p->len > p->max_msg - p->msg_len) {
			*code = WS_CLOSE_TOO_BIG;
			return -1;
		}
		p->msg_len += p->len;
	}
	return 0;
}

long
ws_frame_parse(struct ws_parser *p, const uint8_t *buf, size_t len,
    struct ws_chunk *c, int *code)
{
	size_t used = 0;

	while (p->state != WS_P_DATA) {
		size_t take = p->need;

		if (take > len - used)
			take = len - used;
		memcpy(p->hdr + p->have, buf + used, take);
		p->have += take;
		p->need -= take;
		used += take;
		if (p->need > 0)
			return WS_AGAIN;
		switch (p->state) {
		case WS_P_HEAD:
			if (frame_head(p, code) == -1)
				return WS_ERROR;
			p->state = WS_P_LEN;
			break;
		case WS_P_LEN:
			if (frame_length(p, code) == -1)
				return WS_ERROR;
			p->need = 4;
			p->state = WS_P_MASK;
			break;
		case WS_P_MASK:
			memcpy(p->mask, p->hdr + p->have - 4, 4);
			p->left = p->len;
			p->state = WS_P_DATA;
			break;
		}
	}
	if (p->left > 0 && used == len)
		return WS_AGAIN;	/* all consumed into the header state */
	/* Hand out a chunk (the header may have been completed just now). */
	c->p = buf + used;
	c->n = p->left < len - used ? p->left : len - used;
	c->off = p->len - p->left;
	c->opcode = p->opcode;
	c->fin = p->fin;
	c->first = c->off == 0;
	p->left -= c->n;
	c->end = p->left == 0;
	used += c->n;
	if (c->end) {
		if (p->opcode < WS_OP_CLOSE) {
			if (p->opcode != WS_OP_CONT)
				p->msg_op = p->opcode;
			p->in_msg = !p->fin;
		}
		p->state = WS_P_HEAD;
		p->need = 2;
		p->have = 0;
	}
	return used;
}

void
ws_unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4],
    uint64_t off)
{
	uint8_t m[4];
	size_t i = 0;

	for (int k = 0; k < 4; k++)
		m[k] = mask[(off + k) & 3];
	/* Eight bytes at a time; memcpy keeps it alignment-safe. */
	if (n >= 8) {
		uint64_t m8, v;

		memcpy(&m8, m, 4);
		memcpy((uint8_t *)&m8 + 4, m, 4);
		for (; i + 8 <= n; i += 8) {
			memcpy(&v, src + i, 8);
			v ^= m8;
			memcpy(dst + i, &v, 8);
		}
	}
	for (; i < n; i++)
		dst[i] = src[i] ^ m[i & 3];
}
