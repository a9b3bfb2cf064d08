/*
 * host_parse.c - /proc's text into numbers, and the alert rule.
 *
 * Pure: no I/O, no state, nothing but libc.  host.c reads the files and
 * decides what to publish; this file only reads bytes it is given, never
 * past buf + len (the text is not NUL-terminated), and returns 0 with its
 * results set or -1 with them untouched (host_parse.h).
 *
 * The kernel writes these files with fixed formats (fs/proc/array.c,
 * fs/proc/loadavg.c, fs/proc/meminfo.c): fields separated by one space,
 * unsigned decimals, load averages as "%lu.%02lu".  The parsers hold the
 * text to that and refuse the rest.
 */
#include <math.h>
#include <string.h>

#include "host_parse.h"

/* ==== Numbers ========================================================= */

/*
 * The decimal digits at *p, at most HOST_NUM_DIGITS and no overflow, into
 * *v; *p moves past them.  0, or -1 when there is no digit or too many.
 */
static int
num(const char **p, const char *end, uint64_t *v)
{
	const char *s = *p;
	uint64_t n = 0;

	while (s < end && *s >= '0' && *s <= '9') {
		unsigned d = *s - '0';

		if (s - *p == HOST_NUM_DIGITS || n > (UINT64_MAX - d) / 10)
			return -1;
		n = n * 10 + d;
		s++;
	}
	if (s == *p)
		return -1;
	*p = s;
	*v = n;
	return 0;
}

/* DIGITS[.DIGITS], the fraction at most 9 digits, into *v. */
static int
decimal(const char **p, const char *end, double *v)
{
	uint64_t ip, fp = 0;
	double scale = 1;
	const char *f;

	if (num(p, end, &ip) == -1)
		return -1;
	if (*p < end && **p == '.') {
		f = ++*p;
		if (num(p, end, &fp) == -1 || *p - f > 9)
			return -1;
		for (long k = 0; k < *p - f; k++)
			scale *= 10;
	}
	*v = (double)ip + (double)fp / scale;
	return 0;
}

/* 1 if *p is at c (and steps over it); 0 at the end or another byte. */
static int
at(const char **p, const char *end, char c)
{
	if (*p == end || **p != c)
		return 0;
	(*p)++;
	return 1;
}

/* ==== /proc/self/stat, /proc/self/statm, /proc/loadavg ================= */

/*
 * proc(5): "pid (comm) state ppid ...".  comm is the executable's name,
 * up to 15 bytes the process may choose, ") " included, so the fields
 * are counted from the last ')'.  Field 15 must be followed by its space:
 * field 16 is always there, so a read cut inside field 15 is refused.
 */
int
host_parse_stat(const char *buf, size_t len, uint64_t *ticks)
{
	const char *end = buf + len, *p = NULL, *tok;
	uint64_t utime, stime;

	for (const char *q = buf; q < end; q++)
		if (*q == ')')
			p = q + 1;
	if (p == NULL)
		return -1;
	/* Fields 3 (state) to 13 (cmajflt): skipped, each not empty. */
	for (int field = 3; field <= 13; field++) {
		if (!at(&p, end, ' '))
			return -1;
		for (tok = p; p < end && *p != ' ' && *p != '\n'; p++)
			;
		if (p == tok)
			return -1;
	}
	if (!at(&p, end, ' ') || num(&p, end, &utime) == -1 ||
	    !at(&p, end, ' ') || num(&p, end, &stime) == -1 ||
	    !at(&p, end, ' ') || utime > UINT64_MAX - stime)
		return -1;
	*ticks = utime + stime;
	return 0;
}

/* "size resident shared text lib data dt", in pages. */
int
host_parse_statm(const char *buf, size_t len, uint64_t *pages)
{
	const char *p = buf, *end = buf + len;
	uint64_t size, resident;

	if (num(&p, end, &size) == -1 || !at(&p, end, ' ') ||
	    num(&p, end, &resident) == -1 || !at(&p, end, ' '))
		return -1;
	*pages = resident;
	return 0;
}

/* "0.11 0.27 0.49 1/82 11763": the three averages, each followed by ' '. */
int
host_parse_loadavg(const char *buf, size_t len, double load[3])
{
	const char *p = buf, *end = buf + len;
	double l[3];

	for (int i = 0; i < 3; i++)
		if (decimal(&p, end, &l[i]) == -1 || !at(&p, end, ' '))
			return -1;
	memcpy(load, l, sizeof l);
	return 0;
}

/* ==== /proc/meminfo =================================================== */

/*
 * "Name:    12345 kB" lines.  The value of name's line, in bytes, when
 * line[0..n) is that line: 1; 0 when it is another line; -1 when it is
 * that line but malformed (the unit " kB" must be there whole).
 */
static int
mem_line(const char *line, size_t n, const char *name, uint64_t *bytes)
{
	size_t nl = strlen(name);
	const char *p = line + nl, *end = line + n;
	uint64_t kb;

	if (n < nl || memcmp(line, name, nl) != 0)
		return 0;
	while (p < end && *p == ' ')
		p++;
	if (num(&p, end, &kb) == -1 || end - p < 3 || memcmp(p, " kB", 3) != 0 ||
	    kb > UINT64_MAX / 1024)
		return -1;
	*bytes = kb * 1024;
	return 1;
}

int
host_parse_meminfo(const char *buf, size_t len, uint64_t *total,
    uint64_t *available)
{
	const char *p = buf, *end = buf + len, *nl;
	uint64_t t = 0, a = 0;
	int have_t = 0, have_a = 0, r;

	while (p < end && !(have_t && have_a)) {
		if ((nl = memchr(p, '\n', end - p)) == NULL)
			nl = end;
		/* The first of a name counts; a second one is not looked at. */
		if (!have_t && (r = mem_line(p, nl - p, "MemTotal:", &t)) != 0) {
			if (r == -1)
				return -1;
			have_t = 1;
		} else if (!have_a && (r = mem_line(p, nl - p,
		    "MemAvailable:", &a)) != 0) {
			if (r == -1)
				return -1;
			have_a = 1;
		}
		p = nl + (nl < end);
	}
	if (!have_t || !have_a)
		return -1;
	*total = t;
	*available = a;
	return 0;
}

/* ==== The alert rule ================================================== */

double
host_clear_level(int lower, double threshold)
{
	double up = threshold * 1.1, half = (threshold + 100) / 2;

	if (!lower)
		return threshold * 0.9;
	return up < half ? up : half;
}

enum host_step
host_alert_step(int raised, int lower, double value, double threshold)
{
	double clear;

	if (!(threshold > 0))		/* 0: off */
		return raised ? HOST_CLEAR : HOST_KEEP;
	if (isnan(value))		/* not read this time */
		return HOST_KEEP;
	if (!raised)
		return (lower ? value < threshold : value > threshold) ?
		    HOST_RAISE : HOST_KEEP;
	clear = host_clear_level(lower, threshold);
	return (lower ? value >= clear : value <= clear) ? HOST_CLEAR :
	    HOST_KEEP;
}
