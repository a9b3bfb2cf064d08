/*
 * log.h - one line per event on stderr (or --log-file), text or JSON.
 *
 * A line is "TIMESTAMP LEVEL message", where the message is words, then
 * key=value pairs, written as one printf format:
 *
 *	log_msg(LOG_INFO, "connection closed conn=%llu reason=\"%s\" "
 *	    "code=%u", id, "peer closed", 1000);
 *
 *	2026-11-21T10:00:00.123Z info connection closed conn=12 \
 *	    reason="peer closed" code=1000		(one line)
 *
 * In JSON format each pair is a field of its own:
 *
 *	{"ts":"2026-11-21T10:00:00.123Z","level":"info",
 *	 "msg":"connection closed","conn":12,"reason":"peer closed","code":1000}
 *
 * The words end at the first word of the form key= (a key is [a-z_]
 * then [a-z0-9_]*).  A value runs to the next space or, when it opens
 * with a double quote, to the closing quote (the quotes are not part of
 * it).  An integer value becomes a JSON number, true and false booleans,
 * anything else a string.  A line whose pairs cannot be split so (a word
 * after the pairs, an unclosed quote, a key ts, level or msg, more than
 * LOG_MAX_FIELDS pairs) is kept whole in "msg": never a field that is not
 * one.  Callers never log secrets, tokens or request bodies, and no
 * attacker input beyond short, sanitised values.
 */
#ifndef LOG_H
#define LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

#define LOG_MAX_FIELDS	16	/* key=value pairs in one JSON line */

/* 0, or -1 for an unknown name (nothing changes then). */
int	log_set_level(const char *name);
int	log_set_format(const char *name);	/* "text" or "json" */
/* The level called name, or -1; the format (0 text, 1 json), or -1. */
int	log_level_from(const char *name);
int	log_format_from(const char *name);
/* 1 if lines of level are written: skip costly formatting otherwise. */
int	log_on(enum log_level level);
/* Log to path instead of stderr; log_reopen() reopens it (SIGHUP). */
int	log_set_file(const char *path);
void	log_reopen(void);

void	log_msg(enum log_level level, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/* RFC 3339 UTC with milliseconds, e.g. 2026-11-21T10:00:00.123Z (24 chars). */
void	log_timestamp(char out[32]);

#endif
