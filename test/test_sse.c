/*
 * test_sse.c - the text/event-stream wire (sse.c), linked alone.
 *
 * Records: the id line, one data line per line of the text whatever its
 * line breaks (CR LF, CR, LF, at the start, at the end, doubled), the
 * length pass equal to the written length, and a reader written here from
 * the WHATWG rules giving back the exact text (with CR and CR LF read as
 * LF).  Position lists: good lists, and each way a list can be malformed.
 */
#include <stdlib.h>
#include <string.h>

#include "sse.h"
#include "t.h"

/* Write the record of text into a fresh buffer, NUL-terminated. */
static char *
record(const char *id, const char *text)
{
	size_t n = sse_record(NULL, id, id ? strlen(id) : 0,
	    (const uint8_t *)text, text ? strlen(text) : 0);
	char *out = malloc(n + 1);
	size_t w = sse_record((uint8_t *)out, id, id ? strlen(id) : 0,
	    (const uint8_t *)text, text ? strlen(text) : 0);

	check(w == n);
	out[w] = '\0';
	return out;
}

/*
 * A reader of one record, by the rules of "Server-sent events": lines end
 * at CR LF, CR or LF; "data: x" appends x and LF; "id: x" sets the id; the
 * last LF of the data is dropped.  Returns the data (static), *id set.
 */
static const char *
read_record(const char *r, char *id)
{
	static char data[4096];
	size_t dn = 0;
	int lines = 0;

	id[0] = '\0';
	while (*r != '\0') {
		size_t n = strcspn(r, "\r\n");

		if (n == 0)
			break;		/* the blank line: dispatch */
		if (strncmp(r, "data: ", 6) == 0) {
			memcpy(data + dn, r + 6, n - 6);
			dn += n - 6;
			data[dn++] = '\n';
			lines++;
		} else if (strncmp(r, "id: ", 4) == 0) {
			memcpy(id, r + 4, n - 4);
			id[n - 4] = '\0';
		}
		r += n;
		r += r[0] == '\r' && r[1] == '\n' ? 2 : 1;
	}
	if (dn > 0)
		dn--;
	data[dn] = '\0';
	return lines ? data : NULL;
}

static void
round_trip(const char *text, const char *expect)
{
	char id[256];
	char *r = record("g=abcd0123:7", text);
	const char *got = read_record(r, id);

	check(got != NULL && strcmp(got, expect) == 0);
	check(strcmp(id, "g=abcd0123:7") == 0);
	/* Exactly one record: it ends with its one blank line. */
	check(strlen(r) >= 2 && strcmp(r + strlen(r) - 2, "\n\n") == 0);
	check(strstr(r, "\n\n") == r + strlen(r) - 2);
	free(r);
}

static void
test_records(void)
{
	char *r;

	r = record(NULL, "{\"a\":1}");
	check(strcmp(r, "data: {\"a\":1}\n\n") == 0);
	free(r);
	r = record("a=0:0", NULL);
	check(strcmp(r, "id: a=0:0\n\n") == 0);
	free(r);
	r = record("x", "1\n2");
	check(strcmp(r, "id: x\ndata: 1\ndata: 2\n\n") == 0);
	free(r);
	r = record(NULL, "1\r\n2\r3");
	check(strcmp(r, "data: 1\ndata: 2\ndata: 3\n\n") == 0);
	free(r);

	round_trip("{\"type\":\"x\"}", "{\"type\":\"x\"}");
	round_trip("{\n  \"a\": 1\n}", "{\n  \"a\": 1\n}");
	round_trip("{\r\n\"a\":1}", "{\n\"a\":1}");
	round_trip("{\r\"a\":1}", "{\n\"a\":1}");
	round_trip("\n{}", "\n{}");
	round_trip("{}\n", "{}\n");
	round_trip("{}\r\n", "{}\n");
	round_trip("{\n\n}", "{\n\n}");
	round_trip("{\r\r\n\n}", "{\n\n\n}");
	round_trip("", "");
}

/* Parse a whole list; the items as "name|pos;..." or "ERR". */
static const char *
parse(const char *list)
{
	static char out[512];
	const char *s = list, *end = list + strlen(list), *name, *pos;
	size_t nlen, plen, o = 0;
	int rc;

	while ((rc = sse_pos_next(&s, end, &name, &nlen, &pos, &plen)) == 1)
		o += snprintf(out + o, sizeof out - o, "%.*s|%.*s;",
		    (int)nlen, name, (int)plen, pos);
	if (rc == -1)
		return "ERR";
	out[o] = '\0';
	return out;
}

static void
test_positions(void)
{
	check(strcmp(parse(""), "") == 0);
	check(strcmp(parse("a=1"), "a|1;") == 0);
	check(strcmp(parse("a=0badf00d:12,session:s1=0badf00d:0"),
	    "a|0badf00d:12;session:s1|0badf00d:0;") == 0);
	check(strcmp(parse("a=1=2"), "a|1=2;") == 0);	/* POS: caller's */
	check(strcmp(parse("a"), "ERR") == 0);
	check(strcmp(parse("=1"), "ERR") == 0);
	check(strcmp(parse("a="), "ERR") == 0);
	check(strcmp(parse("a=1,"), "ERR") == 0);
	check(strcmp(parse(",a=1"), "ERR") == 0);
	check(strcmp(parse("a=1,,b=2"), "ERR") == 0);
	check(strcmp(parse("a=1,b"), "ERR") == 0);
}

int
main(void)
{
	test_records();
	test_positions();
	return t_done();
}
