/*
 * log.c - the log line writer.
 *
 * Does no buffering of its own: each line is formatted whole and written
 * with one write(2), so lines never interleave and a crash loses nothing.
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
log_set_level(const char *name)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(name, level_names[i]) == 0) {
			min_level = i;
			return 0;
		}
	return -1;
}

int
log_set_format(const char *name)
{
	if (strcmp(name, "text") == 0)
		json_format = 0;
	else if (strcmp(name, "json") == 0)
		json_format = 1;
	else
		return -1;
	return 0;
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

void
log_msg(enum log_level level, const char *fmt, ...)
{
	char msg[1024], line[1200], ts[32];
	va_list ap;
	int n;

	if (level < min_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_timestamp(ts);
	if (json_format) {
		/* Messages are our own words; escape the two that matter. */
		char esc[2048], *o = esc;
		for (const char *s = msg; *s && o < esc + sizeof esc - 2; s++) {
			if (*s == '"' || *s == '\\')
				*o++ = '\\';
			*o++ = (unsigned char)*s < 0x20 ? ' ' : *s;
		}
		*o = '\0';
		n = snprintf(line, sizeof line,
		    "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n",
		    ts, level_names[level], esc);
	} else
		n = snprintf(line, sizeof line, "%s %s %s\n", ts,
		    level_names[level], msg);
	if (n > (int)sizeof line - 1)
		n = sizeof line - 1, line[n - 1] = '\n';
	(void)!write(log_fd, line, n);
}
