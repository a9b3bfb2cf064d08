/*
 * sse.c - the text/event-stream wire: records, and the position lists
 * that SSE ids carry.  Pure: no I/O, no allocation.
 */
#include <string.h>

#include "sse.h"

/* Append p[0..n) at out + len when out is not NULL; the new length. */
static size_t
put(uint8_t *out, size_t len, const void *p, size_t n)
{
	if (out != NULL)
		memcpy(out + len, p, n);
	return len + n;
}

size_t
sse_record(uint8_t *out, const char *id, size_t idlen, const uint8_t *text,
    size_t n)
{
	size_t len = 0, i = 0;

	if (id != NULL) {
		len = put(out, len, "id: ", 4);
		len = put(out, len, id, idlen);
		len = put(out, len, "\n", 1);
	}
	while (text != NULL && i <= n) {
		size_t e = i;

		while (e < n && text[e] != '\r' && text[e] != '\n')
			e++;
		len = put(out, len, "data: ", 6);
		len = put(out, len, text + i, e - i);
		len = put(out, len, "\n", 1);
		if (e == n)
			break;
		/* CR LF is one line break, as the reader takes it. */
		i = e + (text[e] == '\r' && e + 1 < n && text[e + 1] == '\n' ?
		    2 : 1);
	}
	return put(out, len, "\n", 1);
}

int
sse_pos_next(const char **s, const char *end, const char **name,
    size_t *nlen, const char **pos, size_t *plen)
{
	const char *p = *s, *eq, *comma;

	if (p >= end)
		return 0;
	comma = memchr(p, ',', end - p);
	if (comma == NULL)
		comma = end;
	eq = memchr(p, '=', comma - p);
	if (eq == NULL || eq == p || eq + 1 == comma)
		return -1;
	*name = p;
	*nlen = eq - p;
	*pos = eq + 1;
	*plen = comma - eq - 1;
	/* A trailing comma is an empty item. */
	if (comma < end && comma + 1 == end)
		return -1;
	*s = comma < end ? comma + 1 : end;
	return 1;
}
