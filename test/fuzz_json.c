/*
 * fuzz_json.c - libFuzzer target for json.c.
 *
 * Parses with small limits.  On failure the error must be in range; on
 * success the token tree must keep json.h's promises, every accessor is
 * called on every token, each string re-encoded with json_put_str() must
 * decode to the same bytes, each integer re-encoded with json_put_int()
 * must read the same, and re-encoding the whole document must be stable.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *       test/fuzz_json.c json.c -o build/fuzz_json
 *   ./build/fuzz_json -max_total_time=60 test/corpus/json
 */
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define MAX_DEPTH	16
#define MAX_TOKENS	4096

/* An invariant broke: crash so that libFuzzer keeps the input. */
#define need(c)	do { if (!(c)) abort(); } while (0)

int		LLVMFuzzerTestOneInput(const uint8_t *, size_t);
static void	check_string(const struct json_doc *, int);
static void	check_number(const struct json_doc *, int);
static void	check_object(const struct json_doc *, int);
static uint32_t	reencode(const struct json_doc *, uint32_t, struct json_buf *);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_doc	 doc, doc2;
	struct json_buf	 a = { 0 }, b = { 0 };
	uint32_t	 i;

	if (json_parse(&doc, data, size, MAX_DEPTH, MAX_TOKENS) == -1) {
		need(doc.err != NULL && doc.err_offset <= size);
		need(doc.ntok == 0 && json_find(&doc, 0, "") == -1);
		json_doc_free(&doc);
		return 0;
	}
	need(doc.ntok > 0 && doc.ntok <= MAX_TOKENS);
	need(doc.tok[0].next == doc.ntok);
	for (i = 0; i < doc.ntok; i++) {
		need(doc.tok[i].next > i && doc.tok[i].next <= doc.ntok);
		need((size_t)doc.tok[i].start + doc.tok[i].len <= size);
		switch (doc.tok[i].type) {
		case JSON_STRING:
			check_string(&doc, i);
			break;
		case JSON_NUMBER:
			check_number(&doc, i);
			break;
		case JSON_OBJECT:
			check_object(&doc, i);
			/* FALLTHROUGH */
		default:
			need(json_tok_str(&doc, i, NULL, 0) == -1);
			need(!json_tok_eq(&doc, i, ""));
			break;
		}
	}

	/* Encoding the tokens gives a document that encodes the same. */
	need(reencode(&doc, 0, &a) == doc.ntok && !a.oom);
	need(json_parse(&doc2, a.p, a.len, MAX_DEPTH, MAX_TOKENS) == 0);
	need(doc2.ntok == doc.ntok);
	need(reencode(&doc2, 0, &b) == doc2.ntok && !b.oom);
	need(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
	json_doc_free(&doc2);
	json_buf_free(&a);
	json_buf_free(&b);
	json_doc_free(&doc);
	return 0;
}

/* Unescaping never lengthens; json_put_str() takes the result back. */
static void
check_string(const struct json_doc *doc, int i)
{
	const struct json_tok	*t = &doc->tok[i];
	struct json_doc		 d;
	struct json_buf		 b = { 0 };
	char			*s, *s2;
	long			 n;

	need(t->next == (uint32_t)i + 1);
	s = malloc(t->len + 1);
	s2 = malloc(t->len + 1);
	need(s != NULL && s2 != NULL);
	n = json_tok_str(doc, i, s, t->len);
	need(n >= 0 && (size_t)n <= t->len);
	if (n > 0)
		need(json_tok_str(doc, i, s, n - 1) == -1);
	s[n] = '\0';
	if (memchr(s, '\0', n) == NULL)
		need(json_tok_eq(doc, i, s));

	json_put_str(&b, s, n);
	need(!b.oom);
	need(json_parse(&d, b.p, b.len, 0, 1) == 0);
	need(d.tok[0].type == JSON_STRING);
	need(json_tok_str(&d, 0, s2, n) == n && memcmp(s, s2, n) == 0);
	json_doc_free(&d);
	json_buf_free(&b);
	free(s);
	free(s2);
}

/* An integer json_tok_int() accepts prints back as its text ("-0": "0"). */
static void
check_number(const struct json_doc *doc, int i)
{
	const struct json_tok	*t = &doc->tok[i];
	const uint8_t		*raw = json_tok_raw(doc, i);
	struct json_buf		 b = { 0 };
	int64_t			 v;

	need(t->next == (uint32_t)i + 1 && t->len > 0);
	if (json_tok_int(doc, i, &v) == -1)
		return;
	json_put_int(&b, v);
	need(!b.oom);
	if (t->len == 2 && memcmp(raw, "-0", 2) == 0)
		need(b.len == 1 && b.p[0] == '0');
	else
		need(b.len == t->len && memcmp(b.p, raw, t->len) == 0);
	json_buf_free(&b);
}

/* json_find() finds every key (the last of duplicates) and stops at next. */
static void
check_object(const struct json_doc *doc, int obj)
{
	const struct json_tok	*t = &doc->tok[obj];
	uint32_t		 k, m;
	char			*key;
	long			 n;
	int			 v;

	for (k = obj + 1, m = 0; m < t->size; m++) {
		need(k + 1 < t->next && doc->tok[k].type == JSON_STRING);
		key = malloc(doc->tok[k].len + 1);
		need(key != NULL);
		n = json_tok_str(doc, k, key, doc->tok[k].len);
		need(n >= 0);
		key[n] = '\0';
		if (memchr(key, '\0', n) == NULL) {
			v = json_find(doc, obj, key);
			need(v >= (int)k + 1 && (uint32_t)v < t->next);
			need(json_tok_eq(doc, v - 1, key));
		}
		free(key);
		k = doc->tok[k + 1].next;
	}
	need(k == t->next);
}

static uint32_t
reencode(const struct json_doc *d, uint32_t i, struct json_buf *b)
{
	const struct json_tok	*t = &d->tok[i];
	uint32_t		 k, m;
	char			*s;
	long			 n;
	int			 obj = t->type == JSON_OBJECT;

	switch (t->type) {
	case JSON_STRING:
		s = malloc(t->len + 1);
		need(s != NULL);
		n = json_tok_str(d, i, s, t->len);
		need(n >= 0);
		json_put_str(b, s, n);
		free(s);
		return i + 1;
	case JSON_ARRAY:
	case JSON_OBJECT:
		json_put_raw(b, obj ? "{" : "[", 1);
		for (k = i + 1, m = 0; m < t->size; m++) {
			if (m)
				json_put_raw(b, ",", 1);
			if (obj) {
				k = reencode(d, k, b);
				json_put_raw(b, ":", 1);
			}
			k = reencode(d, k, b);
		}
		json_put_raw(b, obj ? "}" : "]", 1);
		need(k == t->next);
		return k;
	default:
		json_put_raw(b, json_tok_raw(d, i), t->len);
		return i + 1;
	}
}
