/*
 * host_parse.h - the pure half of the host figures (host_parse.c): the
 * parsers of /proc's text and the rule that raises and clears an alert.
 *
 * No I/O, no state, no other layer: host.c reads the files and hands
 * their bytes here, and test/test_host.c links this file alone.
 *
 * Every parser takes (buf, len), the bytes as read, not NUL-terminated,
 * and never reads past buf + len.  It returns 0 with its results set, or
 * -1 when the text is malformed or cut short, its results then untouched.
 * A number that the text could have cut is taken only when the byte that
 * ends it is there too, so a truncated read is -1, never a smaller value.
 */
#ifndef HOST_PARSE_H
#define HOST_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define HOST_NUM_DIGITS	20	/* digits in one integer of /proc's text */

/*
 * /proc/self/stat (proc(5)): utime + stime, fields 14 and 15, in clock
 * ticks.  The command name, field 2, may hold spaces and ')', so fields
 * are counted from the last ')'.
 */
int	host_parse_stat(const char *buf, size_t len, uint64_t *ticks);

/* /proc/self/statm: the resident set, field 2, in pages. */
int	host_parse_statm(const char *buf, size_t len, uint64_t *pages);

/* /proc/loadavg: the 1, 5 and 15 minute load averages. */
int	host_parse_loadavg(const char *buf, size_t len, double load[3]);

/*
 * /proc/meminfo: MemTotal and MemAvailable in bytes (the file says kB,
 * meaning KiB).  -1 also when either line is missing (MemAvailable came
 * with Linux 3.14) or a value passes 2^64 bytes.
 */
int	host_parse_meminfo(const char *buf, size_t len, uint64_t *total,
	    uint64_t *available);

/*
 * The alert rule.  An upper alert (CPU, memory, fds, load) is raised when
 * its figure goes over the threshold, a lower one (free memory, free disk,
 * in percent) when it goes under.  Hysteresis keeps it from flapping: a
 * raised alert clears only once the figure is back by a tenth of the
 * threshold, at or below 0.9 x threshold for an upper one, at or above
 * 1.1 x threshold for a lower one (but at most halfway from the
 * threshold to 100, so 95% still clears).  Threshold 0 is off: a raised
 * alert is cleared, none is raised.  A figure that could not be read
 * (NaN) changes nothing.
 */
enum host_step {
	HOST_KEEP,		/* no change */
	HOST_RAISE,
	HOST_CLEAR
};

enum host_step host_alert_step(int raised, int lower, double value,
	    double threshold);

/* Where a raised alert clears (see host_alert_step()). */
double	host_clear_level(int lower, double threshold);

#endif
