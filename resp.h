/*
 * resp.h - the Redis wire (resp.c): the resumable RESP2 reply parser, the
 * command encoder, and the redis:// URL.  Pure: no I/O, no global state.
 *
 * The parser's return convention, as frame.h's and http_parse.h's:
 *
 *	n > 0		a whole reply of n bytes, its tokens in p->tok
 *	RESP_AGAIN	no whole reply yet: call again with more bytes
 *	RESP_ERROR	malformed or over a limit: p->err says which
 *
 * A reply is a flat list of tokens in wire order (a preorder walk of the
 * tree): an array's token is followed by its elements' tokens, and
 * t + t->size is the token after t's subtree, its next sibling.  Strings
 * are (p, n) slices of the caller's buffer, never copied nor
 * NUL-terminated.
 *
 *	"*2\r\n$3\r\nfoo\r\n:42\r\n"	tok[0] ARRAY n=2 size=3
 *					tok[1] BULK  n=3 p="foo" size=1
 *					tok[2] INT   n=42 size=1
 */
#ifndef RESP_H
#define RESP_H

#include <stddef.h>
#include <stdint.h>

#define RESP_AGAIN	(-1)
#define RESP_ERROR	(-2)

/* Default limits; struct resp_limits sets them per parser. */
#define RESP_MAX_BULK	(64u << 20)	/* bytes of one string */
#define RESP_MAX_ELEMS	(1u << 20)	/* elements of one array */
#define RESP_MAX_DEPTH	8		/* arrays open at once, <= 32 */
#define RESP_MAX_TOKENS	(1u << 20)	/* values in one reply */
#define RESP_MAX_BYTES	(256u << 20)	/* bytes of one reply, < 4G */
#define RESP_DEPTH_CAP	32		/* the stack's size */

/* The five RESP2 types, by their first byte. */
enum resp_type {
	RESP_T_STRING = '+', RESP_T_ERROR = '-', RESP_T_INT = ':',
	RESP_T_BULK = '$', RESP_T_ARRAY = '*'
};

/* Why the parser said RESP_ERROR (p->err); resp_strerror() names it. */
enum resp_err {
	RESP_E_NONE, RESP_E_TYPE, RESP_E_LINE, RESP_E_NUMBER, RESP_E_BULK,
	RESP_E_TERM, RESP_E_ELEMS, RESP_E_DEPTH, RESP_E_TOKENS, RESP_E_BYTES,
	RESP_E_NOMEM
};

/* Each 0 field takes its default. */
struct resp_limits {
	uint64_t max_bulk;	/* a bulk string's length, a simple line's */
	uint64_t max_elems;	/* one array's count */
	uint32_t max_depth;	/* nesting: 1 allows arrays of scalars */
	uint32_t max_tokens;	/* tokens in one reply */
	uint64_t max_bytes;	/* bytes of one reply */
};

/*
 * One value.  n is an integer's value, a string's length or an array's
 * element count (0 for a null).  For strings p points into the buffer the
 * reply was parsed from, valid while those bytes are; for the rest p is
 * NULL.
 */
struct resp_tok {
	uint8_t		 type;	/* enum resp_type */
	uint8_t		 null;	/* "$-1" or "*-1" */
	uint32_t	 size;	/* tokens in its subtree, itself too */
	uint32_t	 off;	/* a string's offset in the reply */
	int64_t		 n;
	const uint8_t	*p;
};

/* The parser: limits, the reply in progress, and its tokens. */
struct resp_parser {
	struct resp_limits lim;
	struct resp_tok	*tok;	/* owned; grown by doubling, kept */
	uint32_t	 ntok;	/* tokens of the reply */
	uint32_t	 cap;
	int		 err;	/* enum resp_err; sticky once set */
	uint8_t		 in_bulk; /* waiting for a bulk string's bytes */
	uint8_t		 done;	/* the last call gave a reply */
	uint8_t		 depth;	/* arrays open */
	size_t		 off;	/* bytes of this reply parsed */
	size_t		 scan;	/* where the CR search resumes */
	size_t		 need;	/* in_bulk: reply bytes with it */
	struct {
		uint32_t tok;	/* the array's token */
		uint64_t left;	/* elements still to come */
	}		 stack[RESP_DEPTH_CAP];
};

/* lim may be NULL (the defaults).  Nothing is allocated yet. */
void	resp_parser_init(struct resp_parser *p,
	    const struct resp_limits *lim);

/* Forget the reply in progress (after a reconnect); keeps the tokens. */
void	resp_parser_reset(struct resp_parser *p);

/* Free the tokens.  The parser may be initialised again. */
void	resp_parser_free(struct resp_parser *p);

/*
 * Parse one reply from buf[0..len).  buf starts at the reply's first
 * byte: after RESP_AGAIN the next call passes the same bytes again, with
 * more after them (buf may have moved; nothing is rescanned), and after
 * n > 0 the next call starts at the byte after the reply.  Never reads
 * past buf + len.  RESP_ERROR is sticky until resp_parser_reset().
 */
long	resp_parse(struct resp_parser *p, const uint8_t *buf, size_t len);

/* A static description of an enum resp_err. */
const char *resp_strerror(int err);

/* The token after t's subtree (its next sibling). */
const struct resp_tok *resp_next(const struct resp_tok *t);

/* Element i of array a, or NULL past its end.  O(i). */
const struct resp_tok *resp_elem(const struct resp_tok *a, int64_t i);

/* 1 if t is a non-null string (any of the three kinds) equal to lit. */
int	resp_is(const struct resp_tok *t, const char *lit);

/* A non-negative integer, or a bulk string of 1-19 digits, into *v: 0,
 * or -1 (t NULL, another kind, too long, not digits). */
int	resp_u64(const struct resp_tok *t, uint64_t *v);

/* ---- Command encoder ------------------------------------------------ */

/* One argument: bytes, binary-safe. */
struct resp_arg {
	const void	*p;
	size_t		 n;
};

/* A growable output buffer; p is owned (resp_buf_free). */
struct resp_buf {
	uint8_t	*p;
	size_t	 len;
	size_t	 cap;
};

#define RESP_EFULL	(-1)
#define RESP_ENOMEM	(-2)

/* Bytes of the command as an array of bulk strings; SIZE_MAX past it. */
size_t	resp_cmd_size(int argc, const struct resp_arg *argv);

/*
 * Append "*argc\r\n" and a "$n\r\n...\r\n" per argument.  0, RESP_EFULL
 * when b->len would pass max, or RESP_ENOMEM; nothing is appended then.
 */
int	resp_cmd(struct resp_buf *b, size_t max, int argc,
	    const struct resp_arg *argv);

void	resp_buf_free(struct resp_buf *b);

/* ---- redis:// URL --------------------------------------------------- */

#define RESP_URL_MAX_DB		2147483647	/* what SELECT takes */
#define RESP_URL_PORT		6379

/*
 * redis://[[user]:password@]host[:port][/db], rediss:// for TLS.  As
 * redis-cli reads it, userinfo without ':' is a password alone.  user and
 * password are percent-decoded (RFC 3986 §2.1); '@' and '/' may stand
 * there unencoded, since only the last '@' ends them.  host is a name, a
 * dotted IPv4 address or a bracketed IPv6 one ("[::1]"), stored without
 * the brackets.
 */
struct resp_url {
	int		 tls;		/* rediss:// */
	char		 host[256];
	unsigned	 port;		/* default RESP_URL_PORT */
	char		 user[256];	/* "": Redis's default user */
	char		 pass[512];	/* "" for none: no AUTH */
	unsigned	 db;		/* 0-RESP_URL_MAX_DB */
};

/* 0, or -1 with *why a static reason (never the input). */
int	resp_url_parse(const char *url, struct resp_url *u,
	    const char **why);

/* Wipe the credentials (explicit_bzero). */
void	resp_url_wipe(struct resp_url *u);

#endif
