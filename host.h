/*
 * host.h - host and process figures, and alerts over them (host.c).
 *
 * Each tick session_events.c calls host_tick(): it reads wsd's CPU time,
 * resident memory and open fds (/proc/self), the load average and the
 * memory (/proc/loadavg, /proc/meminfo) and the file system of
 * --disk-path (statvfs(3)), raises and clears system_alert events on
 * group "monitor" against the --alert-* thresholds, and keeps the figures
 * for realtime_update's "host" member (host_put_figures()).  The parsing
 * is host_parse.c's, pure; this file does the reading.
 */
#ifndef HOST_H
#define HOST_H

#include <stddef.h>
#include <stdint.h>

#define HOST_DISK_PATH	"/"	/* --disk-path */
#define HOST_PATH_MAX	1024	/* bytes of --disk-path, its NUL included */
#define HOST_HISTORY	32	/* alerts kept for host_alerts_json() */
#define HOST_READ_MAX	4096	/* bytes read of one /proc file */

struct json_buf;

/* The thresholds, each 0 for off (the --alert-* options). */
struct host_config {
	double	    cpu_pct;	/* wsd's CPU, % of one core, over it */
	size_t	    rss_bytes;	/* wsd's resident memory, over it */
	unsigned    fds;	/* wsd's open fds, over it */
	double	    load;	/* the 1-minute load average, over it */
	double	    mem_free_pct;	/* MemAvailable, % of MemTotal, under */
	double	    disk_free_pct;	/* --disk-path's free space, %, under */
	const char *disk_path;	/* copied; at most HOST_PATH_MAX - 1 bytes */
};

/* The alerts, in the order of the figures. */
enum host_alert {
	HOST_A_CPU, HOST_A_RSS, HOST_A_FDS, HOST_A_LOAD, HOST_A_MEM_FREE,
	HOST_A_DISK_FREE, HOST_NALERTS
};

/* Take the thresholds and a first reading of the CPU time.  0, or -1
 * when disk_path is too long. */
int	host_init(const struct host_config *cfg);

/*
 * SIGHUP: new thresholds and path, from the next tick on.  A raised
 * alert whose threshold is turned off is cleared at that tick; one whose
 * threshold moved is judged against the new one (with its hysteresis).
 */
int	host_set_config(const struct host_config *cfg);

/*
 * The tick (now_ms: the loop's monotonic clock).  CPU time is read every
 * tick, so cpu_pct always covers one tick; the other figures only when
 * watched (realtime_update goes out) or an alert is on or raised.  Then
 * each alert is raised or cleared (host_parse.h's rule) and published to
 * "monitor" as system_alert.
 */
void	host_tick(uint64_t now_ms, int watched);

/*
 * Append "host":{...}, the figures of the last tick, to an object being
 * written (the caller writes the comma before it):
 *   {"cpu_pct":1.5,"rss_bytes":N,"fds":N,"load":[L1,L5,L15],
 *    "mem_total_bytes":N,"mem_available_bytes":N,
 *    "disk_total_bytes":N,"disk_free_bytes":N,"alerts_active":K}
 * A figure that could not be read is null.
 */
void	host_put_figures(struct json_buf *b);

/*
 * Append the alerts kept, for GET /api/alerts:
 *   {"thresholds":{"cpu":T,"rss":T,"fds":T,"load":T,"mem_free":T,
 *    "disk_free":T},"active":K,"alerts":[{"id":N,"alert":A,
 *    "state":"raised"|"cleared","value":V,"peak":P,"threshold":T,
 *    "since":ISO,"cleared":ISO|null},...]}
 * the last HOST_HISTORY alerts, newest first (a raised one is never
 * dropped for a newer one); value is the figure when raised, peak the
 * worst one while raised.
 */
void	host_alerts_json(struct json_buf *out);

/* The host's figures read now, and the alerts, for /metrics. */
struct host_now {
	double	 load[3];		/* 1, 5, 15 minutes; NaN: unknown */
	int64_t	 mem_total, mem_available;	/* -1: unknown */
	int64_t	 disk_total, disk_free;		/* -1: unknown */
	unsigned alerts_active;
	uint64_t alerts_raised;		/* since start */
};

void	host_now(struct host_now *now);

#endif
