/*
 * frame.h - the RFC 6455 codec (frame.c): shared output buffers and the
 * frame encoder, the handshake key, UTF-8, close codes, and the resumable
 * frame decoder.  Pure: no I/O.
 *
 * The decoder's return convention:
 *
 *	n >= 0		n bytes consumed (and a chunk produced)
 *	WS_AGAIN	all input consumed or none usable: need more
 *	WS_ERROR	protocol error: *code is the close code
 */
#ifndef FRAME_H
#define FRAME_H

#include <stddef.h>
#include <stdint.h>

#define WS_AGAIN	(-1)
#define WS_ERROR	(-2)

#define WS_MAX_MESSAGE	(1u << 20)	/* default limit of an assembled message */

/* RFC 6455 §5.2 opcodes. */
enum {
	WS_OP_CONT = 0x0, WS_OP_TEXT = 0x1, WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8, WS_OP_PING = 0x9, WS_OP_PONG = 0xA
};

/* RFC 6455 §7.4.1 close codes wsd sends. */
enum {
	WS_CLOSE_NORMAL = 1000, WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL = 1002, WS_CLOSE_BAD_DATA = 1007,
	WS_CLOSE_POLICY = 1008, WS_CLOSE_TOO_BIG = 1009,
	WS_CLOSE_INTERNAL = 1011, WS_CLOSE_TRY_AGAIN = 1013
};

/* ---- Shared buffers and the frame encoder ---------------------------- */

/*
 * A reference-counted, immutable output buffer: whole frames (or one whole
 * HTTP response).  An event is encoded once into a ws_buf and the same
 * buffer sits in every subscriber's queue; the last unref frees it.  For
 * one frame, hlen is the length of its header, so data + hlen is the
 * payload; a batch holds nframes frames back to back.
 */
struct ws_buf {
	uint32_t refs;
	uint32_t len;
	uint32_t nframes;	/* messages it carries, for the counters */
	uint16_t hlen;
	uint8_t  ctrl;		/* control frame: jumps the queue, not counted */
	uint8_t  http;		/* HTTP response: never dropped nor overtaken */
	uint8_t  data[];
};

/* An uninitialised buffer of len bytes (an HTTP response); NULL: no memory. */
struct ws_buf	*ws_buf_new(size_t len);

/* A frame with the given payload (copied); NULL when out of memory. */
struct ws_buf	*ws_buf_frame(int opcode, const void *payload, size_t len);

/* The frames of bufs[0..n) back to back in one buffer; NULL: no memory. */
struct ws_buf	*ws_buf_batch(struct ws_buf *const *bufs, uint32_t n);
void		 ws_buf_ref(struct ws_buf *b);
void		 ws_buf_unref(struct ws_buf *b);	/* accepts NULL */


/* Bytes of buffers freed since the last call (ws.c's cue to trim). */
size_t		 ws_buf_freed(void);

/* ---- Opening handshake (RFC 6455 §4.2) ------------------------------- */

/* 1 if key is a valid Sec-WebSocket-Key: base64 of 16 bytes (§4.1). */
int	ws_key_valid(const char *key, size_t n);

/* Sec-WebSocket-Accept for key (§4.2.2): 28 chars + NUL. */
void	ws_accept_key(const char *key, size_t n, char out[29]);

/* ---- Frame decoder --------------------------------------------------- */

/*
 * The resumable frame decoder.  It checks every rule of RFC 6455 §5 that
 * can be checked from the frame headers, for a server: masking, RSV bits,
 * opcodes, control frame size and fragmentation, continuation order, and
 * the message size limit.  Payload bytes are handed out still masked, in
 * chunks, as they arrive; ws_unmask() undoes the mask.
 */
enum ws_pstate { WS_P_HEAD, WS_P_LEN, WS_P_MASK, WS_P_DATA };

struct ws_parser {
	uint8_t  state;		/* enum ws_pstate */
	uint8_t  need;		/* header bytes still needed in this state */
	uint8_t  have;		/* header bytes collected in hdr */
	uint8_t  fin;
	uint8_t  opcode;
	uint8_t  in_msg;	/* a fragmented data message is open */
	uint8_t  msg_op;	/* its opcode, text or binary */
	uint8_t  hdr[14];
	uint8_t  mask[4];
	uint64_t len;		/* this frame's payload length */
	uint64_t left;		/* payload bytes of this frame still to come */
	uint64_t msg_len;	/* payload bytes of the open message so far */
	uint64_t max_msg;	/* limit on msg_len (close 1009) */
};

/* One run of payload bytes from one frame. */
struct ws_chunk {
	const uint8_t *p;	/* masked bytes in the caller's buffer */
	size_t         n;
	uint64_t       off;	/* offset of p in the frame's payload */
	uint8_t        opcode;	/* the frame's; continuation stays 0 */
	uint8_t        fin;
	uint8_t        first;	/* first chunk of this frame */
	uint8_t        end;	/* last chunk of this frame */
};

void	ws_parser_init(struct ws_parser *p, uint64_t max_msg);

/*
 * Consume header bytes and at most one chunk of payload.  Returns bytes
 * consumed with *c filled (an empty frame gives one chunk with n = 0),
 * WS_AGAIN when all of len was consumed into the header state and no chunk
 * is ready, or WS_ERROR with *code = 1002 (protocol) or 1009 (too big).
 */
long	ws_frame_parse(struct ws_parser *p, const uint8_t *buf, size_t len,
	    struct ws_chunk *c, int *code);

/* dst[i] = src[i] ^ mask[(off + i) % 4]; dst may equal src. */
void	ws_unmask(uint8_t *dst, const uint8_t *src, size_t n,
	    const uint8_t mask[4], uint64_t off);

/*
 * Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF).  *state starts at 0 and carries a sequence
 * split across calls.  Returns 0 if s is a valid prefix so far, -1 as soon
 * as it cannot be; a message is complete and valid when the last call
 * returned 0 and *state is 0 again.
 */
int	ws_utf8_valid(uint32_t *state, const uint8_t *s, size_t n);

/* 1 if a close frame may carry code (RFC 6455 §7.4). */
int	ws_close_code_valid(unsigned code);

#endif
