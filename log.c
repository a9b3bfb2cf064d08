/*
 * log.c - the log line writer.
 *
 * Does no buffering of its own: each line is formatted whole and written
 * with one write(2), so lines never interleave and a crash loses nothing.
 * In JSON format the key=value pairs of a message become fields (log.h).
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum log_level	 min_level = LOG_INFO;
static int		 json_format;
static int		 log_fd = 2;
static const char	*log_path;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

int
log_level_from(const char *name)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

int
log_format_from(const char *name)
{
	return strcmp(name, "text") == 0 ? 0 : strcmp(name, "json") == 0 ? 1 :
	    -1;
}

int
log_set_level(const char *name)
{
	int l = log_level_from(name);

	if (l == -1)
		return -1;
	min_level = l;
	return 0;
}

int
log_set_format(const char *name)
{
	int f = log_format_from(name);

	if (f == -1)
		return -1;
	json_format = f;
	return 0;
}

int
log_on(enum log_level level)
{
	return level >= min_level;
}

int
log_set_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

	if (fd == -1)
		return -1;
	if (log_fd != 2)
		close(log_fd);
	log_fd = fd;
	log_path = path;
	return 0;
}

void
log_reopen(void)
{
	if (log_path != NULL && log_set_file(log_path) == -1)
		log_msg(LOG_ERROR, "cannot reopen log file");
}

void
log_timestamp(char out[32])
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + 19, 13, ".%03uZ", (unsigned)(ts.tv_nsec / 1000000) % 1000);
}

/* ==== Structured lines ================================================ */

struct field {
	const char *k, *v;
	size_t	    kn, vn;
	int	    quoted;
};

/* Length of the key at p when p starts a key= word, else 0. */
static size_t
key_at(const char *p)
{
	size_t n = 0;

	if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
		return 0;
	while ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= '0' && p[n] <= '9') ||
	    p[n] == '_')
		n++;
	return p[n] == '=' ? n : 0;
}

/*
 * Split s into its words (*mlen bytes) and its key=value pairs (log.h).
 * Returns the number of pairs, or -1 when they cannot be split: the
 * whole line is then the message.
 */
static int
split_fields(const char *s, size_t *mlen, struct field *f)
{
	const char *p = s;
	int n = 0;

	while (*p != '\0' && key_at(p) == 0) {
		while (*p != '\0' && *p != ' ')
			p++;
		while (*p == ' ')
			p++;
	}
	*mlen = p - s;
	while (*mlen > 0 && s[*mlen - 1] == ' ')
		(*mlen)--;
	while (*p != '\0') {
		size_t kn = key_at(p);

		if (kn == 0 || n == LOG_MAX_FIELDS ||
		    (kn == 2 && memcmp(p, "ts", 2) == 0) ||
		    (kn == 3 && memcmp(p, "msg", 3) == 0) ||
		    (kn == 5 && memcmp(p, "level", 5) == 0))
			return -1;
		f[n].k = p;
		f[n].kn = kn;
		p += kn + 1;
		f[n].quoted = *p == '"';
		if (f[n].quoted) {
			const char *q = strchr(++p, '"');

			if (q == NULL || (q[1] != '\0' && q[1] != ' '))
				return -1;
			f[n].v = p;
			f[n].vn = q - p;
			p = q + 1;
		} else {
			f[n].v = p;
			while (*p != '\0' && *p != ' ')
				p++;
			f[n].vn = p - f[n].v;
		}
		n++;
		while (*p == ' ')
			p++;
	}
	return n;
}

/* 1 if v[0..n) is written as is in JSON: an integer, true or false. */
static int
json_bare(const char *v, size_t n)
{
	size_t i = v[0] == '-';

	if ((n == 4 && memcmp(v, "true", 4) == 0) ||
	    (n == 5 && memcmp(v, "false", 5) == 0))
		return 1;
	if (i >= n || n - i > 18 || (v[i] == '0' && n - i > 1))
		return 0;
	for (; i < n; i++)
		if (v[i] < '0' || v[i] > '9')
			return 0;
	return 1;
}

/* Append "s[0..n)" as a JSON string at o, within end.  Messages are our
 * own words; control bytes become \u00XX and bytes past ASCII '?', so a
 * line is always valid JSON whatever a value held. */
static char *
json_str(char *o, const char *end, const char *s, size_t n)
{
	if (o < end)
		*o++ = '"';
	for (size_t i = 0; i < n && o + 7 < end; i++) {
		unsigned char ch = s[i];

		if (ch == '"' || ch == '\\') {
			*o++ = '\\';
			*o++ = ch;
		} else if (ch < 0x20)
			o += snprintf(o, 7, "\\u%04x", ch);
		else
			*o++ = ch < 0x80 ? ch : '?';
	}
	if (o < end)
		*o++ = '"';
	return o;
}

static int
json_line(char *line, size_t cap, const char *ts, enum log_level level,
    const char *msg)
{
	struct field f[LOG_MAX_FIELDS];
	char *o = line, *end = line + cap - 2;
	size_t mlen;
	int n = split_fields(msg, &mlen, f);

	if (n == -1) {
		n = 0;
		mlen = strlen(msg);
	}
	o += snprintf(o, end - o, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":",
	    ts, level_names[level]);
	o = json_str(o, end, msg, mlen);
	for (int i = 0; i < n && o + f[i].kn + 4 < end; i++) {
		*o++ = ',';
		o = json_str(o, end, f[i].k, f[i].kn);
		*o++ = ':';
		if (!f[i].quoted && json_bare(f[i].v, f[i].vn) &&
		    o + f[i].vn < end) {
			memcpy(o, f[i].v, f[i].vn);
			o += f[i].vn;
		} else
			o = json_str(o, end, f[i].v, f[i].vn);
	}
	if (o >= end) {
		/* Cut short: close what is open, never a broken object. */
		return snprintf(line, cap, "{\"ts\":\"%s\",\"level\":\"%s\","
		    "\"msg\":\"(line too long)\"}\n", ts, level_names[level]);
	}
	*o++ = '}';
	*o++ = '\n';
	return o - line;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	char msg[1024], line[4096], ts[32];
	va_list ap;
	int n;

	if (level < min_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_timestamp(ts);
	if (json_format)
		n = json_line(line, sizeof line, ts, level, msg);
	else
		n = snprintf(line, sizeof line, "%s %s %s\n", ts,
		    level_names[level], msg);
	if (n > (int)sizeof line - 1)
		n = sizeof line - 1, line[n - 1] = '\n';
	(void)!write(log_fd, line, n);
}
