/*
 * log.h - one line per event on stderr (or --log-file), text or JSON.
 *
 * A line is "TIMESTAMP LEVEL message", where the message is words and
 * key=value pairs; in JSON format the same line is
 * {"ts":"...","level":"...","msg":"..."}.  Callers never log attacker
 * input verbatim beyond short, sanitised values.
 */
#ifndef LOG_H
#define LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* 0, or -1 for an unknown name. */
int	log_set_level(const char *name);
int	log_set_format(const char *name);	/* "text" or "json" */
/* Log to path instead of stderr; log_reopen() reopens it (SIGHUP). */
int	log_set_file(const char *path);
void	log_reopen(void);

void	log_msg(enum log_level level, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/* RFC 3339 UTC with milliseconds, e.g. 2026-11-21T10:00:00.123Z (24 chars). */
void	log_timestamp(char out[32]);

#endif
