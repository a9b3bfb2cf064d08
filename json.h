/*
 * json.h - a minimal, strict RFC 8259 decoder and a JSON encoder.
 *
 * json.c does no I/O and knows nothing of WebSocket or of wsd's messages.
 *
 * Decoding is one pass over a byte buffer into a flat array of tokens in
 * document order.  Tokens borrow from the input: a token is a (start, len)
 * slice of the buffer, so the buffer must outlive the document.  Strings
 * are validated (UTF-8, escapes, surrogate pairs) during the pass but only
 * unescaped on demand by json_tok_str().
 *
 * The decoder refuses, with the byte offset of the fault: trailing commas,
 * comments, single quotes, leading zeros, bare control characters in
 * strings, invalid UTF-8 anywhere, lone or mis-ordered surrogate escapes,
 * anything after the top-level value but white space, nesting deeper than
 * the depth limit, and documents with more tokens than the token limit.
 * It never recurses and never reads past buf + len.
 */
#ifndef JSON_H
#define JSON_H

#include <stddef.h>
#include <stdint.h>

/* Default limits (wsd's --json-depth and the message size bound the rest). */
#define JSON_MAX_DEPTH  64
#define JSON_MAX_TOKENS (1u << 20)

enum json_type {
	JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING,
	JSON_ARRAY, JSON_OBJECT
};

/*
 * One value.  For a string, start/len span the bytes between the quotes
 * (still escaped); for every other type, the value's whole text.  For an
 * array, size is its number of elements; for an object, its number of
 * members, each stored as a JSON_STRING key token followed by the value's
 * tokens.  next is the index of the first token after this value's subtree,
 * so siblings are walked with i = tok[i].next.
 */
struct json_tok {
	uint8_t  type;		/* enum json_type */
	uint32_t start;
	uint32_t len;
	uint32_t size;
	uint32_t next;
};

struct json_doc {
	const uint8_t   *buf;	/* borrowed input */
	size_t           len;
	struct json_tok *tok;	/* owned, malloc'd; tok[0] is the root */
	uint32_t         ntok;
	/* On failure: */
	size_t           err_offset;	/* byte offset of the fault */
	const char      *err;		/* static text, never input */
};

/*
 * Decode buf[0..len).  max_depth counts nesting of arrays and objects (a
 * scalar document has depth 0); max_tokens bounds the token array.  Returns
 * 0 on success, -1 on any error with doc->err and doc->err_offset set (an
 * allocation failure also returns -1, err "out of memory").  Either way,
 * call json_doc_free() afterwards.
 */
int	json_parse(struct json_doc *doc, const uint8_t *buf, size_t len,
	    unsigned max_depth, uint32_t max_tokens);
void	json_doc_free(struct json_doc *doc);	/* accepts a zeroed doc */

/*
 * Index of the value of member key in the object at index obj, or -1 when
 * obj is not an object or has no such member.  Keys are compared after
 * unescaping.  With duplicate keys the last one wins (as most decoders do).
 */
int	json_find(const struct json_doc *doc, int obj, const char *key);

/*
 * Unescape the string at index i into out (cap bytes, no NUL added).
 * Returns the decoded length, or -1 if i is not a string or it does not
 * fit in cap.
 */
long	json_tok_str(const struct json_doc *doc, int i, char *out, size_t cap);

/* 1 if the string at index i decodes to exactly s, else 0. */
int	json_tok_eq(const struct json_doc *doc, int i, const char *s);

/*
 * The number at index i as an integer in [INT64_MIN, INT64_MAX].  Returns 0
 * on success, -1 if i is not a number, has a fraction or exponent part, or
 * is out of range.
 */
int	json_tok_int(const struct json_doc *doc, int i, int64_t *out);

/* Pointer to token i's span (inside the quotes for a string). */
static inline const uint8_t *
json_tok_raw(const struct json_doc *doc, int i)
{
	return doc->buf + doc->tok[i].start;
}

/*
 * The whole JSON text of value i, quotes included for a string, with its
 * length in *n: what passing a value through unchanged needs.
 */
static inline const uint8_t *
json_tok_json(const struct json_doc *doc, int i, size_t *n)
{
	int q = doc->tok[i].type == JSON_STRING;

	*n = doc->tok[i].len + 2 * q;
	return doc->buf + doc->tok[i].start - q;
}

/*
 * Encoder: appends to a growable buffer.  An allocation failure sets oom
 * and turns every later call into a no-op, so a caller checks once at the
 * end.  json_put_str() writes a quoted string escaping '"', '\\' and every
 * control character below 0x20 (as \n, \t, ... or \u00XX); it copies other
 * bytes as they are, so the caller passes valid UTF-8.  json_put_double()
 * writes the shortest form that reads back to the same double ("%.17g"
 * tried from shorter precisions); NaN and infinities are written as null.
 */
struct json_buf {
	uint8_t *p;	/* owned, malloc'd */
	size_t   len;
	size_t   cap;
	int      oom;
};

void	json_buf_free(struct json_buf *b);	/* accepts a zeroed buffer */
void	json_put_raw(struct json_buf *b, const void *s, size_t n);
void	json_put_cstr(struct json_buf *b, const char *s);	/* raw, strlen */
void	json_put_str(struct json_buf *b, const void *s, size_t n);
void	json_put_int(struct json_buf *b, int64_t v);
void	json_put_double(struct json_buf *b, double v);

#endif
