/*
 * host.c - host and process figures, and alerts over them.
 *
 * Each tick (session_events.c calls host_tick()) this file reads wsd's
 * CPU time, resident memory and open fds, the host's load average and
 * memory, and the free space of --disk-path; keeps them for
 * realtime_update's "host" member; and turns the --alert-* thresholds
 * into system_alert events on group "monitor", raised once when a figure
 * goes past its threshold and cleared once when it is back (with the
 * hysteresis of host_parse.c's rule).  The last HOST_HISTORY alerts are
 * kept for GET /api/alerts (host_alerts_json()).
 *
 * Its I/O is a few small reads of /proc (at most HOST_READ_MAX bytes
 * each), one statvfs(3) and the directory /proc/self/fd, all on the
 * tick, never on a connection's path; the text is parsed by
 * host_parse.c, which does no I/O.  Nothing here fails the tick: a figure
 * that cannot be read (no /proc in a chroot) is unknown, NaN or -1,
 * written as null, and changes no alert.
 */
#include <sys/statvfs.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "host.h"
#include "host_parse.h"
#include "hub.h"
#include "json.h"
#include "log.h"
#include "ws.h"

/* One reading.  Unknown: NaN for the doubles, -1 for the counts. */
struct figures {
	double	cpu_pct;		/* % of one core over the last tick */
	int64_t	rss_bytes;
	int64_t	fds;
	double	load[3];		/* 1, 5, 15 minutes */
	int64_t	mem_total, mem_available;
	int64_t	disk_total, disk_free;	/* free: what a user may still use */
};

/* One alert: its raise, then its clear.  Kept in hist[], oldest first. */
struct alert {
	uint64_t id;			/* 1, 2, ... since start */
	uint8_t	 kind;			/* enum host_alert */
	uint8_t	 raised;		/* not cleared yet */
	double	 threshold;		/* when raised */
	double	 value;			/* the figure when raised */
	double	 peak;			/* the worst figure while raised */
	char	 since[32];		/* when raised, RFC 3339 */
	char	 cleared[32];		/* when cleared; "" while raised */
};

/* Each alert's name (in events and the history) and direction. */
static const struct {
	const char *name;
	int	    lower;		/* raised under the threshold */
} kinds[HOST_NALERTS] = {
	[HOST_A_CPU] =		{ "cpu", 0 },
	[HOST_A_RSS] =		{ "rss", 0 },
	[HOST_A_FDS] =		{ "fds", 0 },
	[HOST_A_LOAD] =		{ "load", 0 },
	[HOST_A_MEM_FREE] =	{ "mem_free", 1 },
	[HOST_A_DISK_FREE] =	{ "disk_free", 1 },
};

static struct host_config cfg;
static char		  disk_path[HOST_PATH_MAX];	/* cfg's, copied */
static struct figures	  fig;			/* the last tick's */
static long		  clk_tck, page_size;
static char		  rbuf[HOST_READ_MAX];	/* one /proc file at a time */

static uint64_t		  cpu_ticks, cpu_ms;	/* the last CPU reading */
static int		  cpu_have;

/* The last count of /proc/self/fd: when, what it cost, what it found. */
static uint64_t		  fd_scan_ms, fd_cost_us, fd_conns;
static int64_t		  fd_count;
static int		  fd_have;

static struct alert	  hist[HOST_HISTORY];
static unsigned		  nhist;
static uint64_t		  active_id[HOST_NALERTS];	/* raised: its id */
static unsigned		  nactive;
static uint64_t		  raised_total;

/* ==== Configuration =================================================== */

static void
unknown(struct figures *f)
{
	f->cpu_pct = NAN;
	f->rss_bytes = f->fds = -1;
	f->load[0] = f->load[1] = f->load[2] = NAN;
	f->mem_total = f->mem_available = -1;
	f->disk_total = f->disk_free = -1;
}

int
host_set_config(const struct host_config *c)
{
	const char *p = c->disk_path != NULL ? c->disk_path : HOST_DISK_PATH;
	size_t n = strlen(p);

	if (n >= sizeof disk_path)
		return -1;
	cfg = *c;
	/* Copied: the option's text may be a config file's, freed on the
	 * next reload. */
	memmove(disk_path, p, n + 1);
	cfg.disk_path = disk_path;
	return 0;
}

/* ==== Reading ========================================================= */

static uint64_t
usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Up to HOST_READ_MAX bytes of path into rbuf: how many, or -1.  A longer
 * file is cut there; the parsers refuse a figure the cut took away.
 */
static ssize_t
read_proc(const char *path)
{
	ssize_t n = 0, r;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	while (n < (ssize_t)sizeof rbuf &&
	    (r = read(fd, rbuf + n, sizeof rbuf - n)) != 0) {
		if (r == -1) {
			if (errno == EINTR)
				continue;
			close(fd);
			return -1;
		}
		n += r;
	}
	close(fd);
	return n;
}

static double
round1(double v)
{
	return round(v * 10) / 10;
}

/* CPU time since the last tick, in % of one core, to 0.1. */
static void
read_cpu(uint64_t now_ms)
{
	ssize_t n = read_proc("/proc/self/stat");
	uint64_t ticks;

	fig.cpu_pct = NAN;
	if (n == -1 || host_parse_stat(rbuf, n, &ticks) == -1) {
		cpu_have = 0;
		return;
	}
	if (cpu_have && now_ms > cpu_ms && ticks >= cpu_ticks && clk_tck > 0)
		fig.cpu_pct = round1((double)(ticks - cpu_ticks) * 100000 /
		    ((double)clk_tck * (now_ms - cpu_ms)));
	cpu_ticks = ticks;
	cpu_ms = now_ms;
	cpu_have = 1;
}

/*
 * The open fds: the entries of /proc/self/fd, less the one reading them.
 * Counting costs the kernel about 0.7 us per fd (7 ms at 10,000 fds, a
 * stall of the whole loop), so the directory is read again only once the
 * milliseconds since the last count reach the microseconds it took: at
 * most 0.1% of the loop's time; at the default tick of 3 s, every tick
 * up to about 3,000 fds.  In between, the count follows the open connections, one fd each; the fds
 * that are not connections (listeners, timers, the log) rarely change.
 */
static void
read_fds(uint64_t now_ms)
{
	uint64_t conns = ws_stats_get()->connections, t0;
	struct dirent *e;
	int64_t n = -1;
	DIR *d;

	if (fd_have && now_ms - fd_scan_ms < fd_cost_us) {
		n = fd_count + (int64_t)conns - (int64_t)fd_conns;
		fig.fds = n > 0 ? n : 0;
		return;
	}
	t0 = usec();
	fd_have = 0;
	fig.fds = -1;
	if ((d = opendir("/proc/self/fd")) == NULL)
		return;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	fd_cost_us = usec() - t0;
	fd_scan_ms = now_ms;
	fd_count = n;
	fd_conns = conns;
	fd_have = 1;
	fig.fds = n;
}

/* wsd's resident memory. */
static void
read_rss(struct figures *f)
{
	ssize_t n = read_proc("/proc/self/statm");
	uint64_t pages;

	f->rss_bytes = -1;
	if (n != -1 && host_parse_statm(rbuf, n, &pages) == 0 &&
	    page_size > 0 && pages <= (uint64_t)INT64_MAX / page_size)
		f->rss_bytes = (int64_t)pages * page_size;
}

/* The host's: load, memory, and the file system of --disk-path. */
static void
read_host(struct figures *f)
{
	uint64_t total, avail, bs;
	struct statvfs sv;
	double load[3];
	ssize_t n;

	f->load[0] = f->load[1] = f->load[2] = NAN;
	if ((n = read_proc("/proc/loadavg")) != -1 &&
	    host_parse_loadavg(rbuf, n, load) == 0)
		memcpy(f->load, load, sizeof load);
	f->mem_total = f->mem_available = -1;
	if ((n = read_proc("/proc/meminfo")) != -1 &&
	    host_parse_meminfo(rbuf, n, &total, &avail) == 0 &&
	    total <= INT64_MAX && avail <= total) {
		f->mem_total = total;
		f->mem_available = avail;
	}
	/* f_bavail: the blocks a user that is not root may still take, as
	 * df(1) counts "Avail". */
	f->disk_total = f->disk_free = -1;
	if (statvfs(disk_path, &sv) == 0 && (bs = sv.f_frsize) > 0 &&
	    sv.f_blocks <= (uint64_t)INT64_MAX / bs &&
	    sv.f_bavail <= sv.f_blocks) {
		f->disk_total = sv.f_blocks * bs;
		f->disk_free = sv.f_bavail * bs;
	}
}

int
host_init(const struct host_config *c)
{
	clk_tck = sysconf(_SC_CLK_TCK);
	page_size = sysconf(_SC_PAGESIZE);
	unknown(&fig);
	/* The first CPU reading, so the first tick has one to compare with
	 * (the loop's clock, CLOCK_MONOTONIC, is the same as usec()'s). */
	read_cpu(usec() / 1000);
	return host_set_config(c);
}

/* ==== Alerts ========================================================== */

static double
threshold(enum host_alert k)
{
	switch (k) {
	case HOST_A_CPU:	return cfg.cpu_pct;
	case HOST_A_RSS:	return (double)cfg.rss_bytes;
	case HOST_A_FDS:	return cfg.fds;
	case HOST_A_LOAD:	return cfg.load;
	case HOST_A_MEM_FREE:	return cfg.mem_free_pct;
	case HOST_A_DISK_FREE:	return cfg.disk_free_pct;
	default:		return 0;
	}
}

static double
pct(int64_t part, int64_t whole)
{
	return part < 0 || whole <= 0 ? NAN : round1(100.0 * part / whole);
}

/* The figure alert k watches, NaN when unknown. */
static double
figure(enum host_alert k)
{
	switch (k) {
	case HOST_A_CPU:	return fig.cpu_pct;
	case HOST_A_RSS:	return fig.rss_bytes < 0 ? NAN : fig.rss_bytes;
	case HOST_A_FDS:	return fig.fds < 0 ? NAN : fig.fds;
	case HOST_A_LOAD:	return fig.load[0];
	case HOST_A_MEM_FREE:	return pct(fig.mem_available, fig.mem_total);
	case HOST_A_DISK_FREE:	return pct(fig.disk_free, fig.disk_total);
	default:		return NAN;
	}
}

/* The raised alert of kind k, or NULL.  A raised one is never dropped. */
static struct alert *
active(enum host_alert k)
{
	for (unsigned i = 0; active_id[k] != 0 && i < nhist; i++)
		if (hist[i].id == active_id[k])
			return &hist[i];
	return NULL;
}

/*
 * Room for one more alert at the end of hist[]: when it is full, the
 * oldest cleared one goes.  There is always one, as at most HOST_NALERTS
 * (< HOST_HISTORY) are raised at once.  Moves entries: pointers into
 * hist[] do not survive it.
 */
_Static_assert(HOST_NALERTS < HOST_HISTORY, "a cleared alert to drop");

static struct alert *
hist_add(void)
{
	unsigned i;

	if (nhist == HOST_HISTORY) {
		for (i = 0; i < nhist && hist[i].raised; i++)
			;
		memmove(&hist[i], &hist[i + 1], (nhist - i - 1) * sizeof *hist);
		nhist--;
	}
	memset(&hist[nhist], 0, sizeof *hist);
	return &hist[nhist++];
}

/*
 * system_alert to "monitor", encoded once like every event:
 * {"alert":A,"state":S,"value":V,"peak":P,"threshold":T,"id":N,
 *  "since":ISO}.  value is the figure now; threshold the one in force
 * (0 when the alert was cleared by turning it off).
 */
static void
publish(const struct alert *a, const char *state, double value, double t)
{
	struct hub_group *mon = hub_group("monitor", 7, 1);
	struct json_buf jb = { 0 };

	json_put_cstr(&jb, "{\"alert\":\"");
	json_put_cstr(&jb, kinds[a->kind].name);
	json_put_cstr(&jb, "\",\"state\":\"");
	json_put_cstr(&jb, state);
	json_put_cstr(&jb, "\",\"value\":");
	json_put_double(&jb, value);
	json_put_cstr(&jb, ",\"peak\":");
	json_put_double(&jb, a->peak);
	json_put_cstr(&jb, ",\"threshold\":");
	json_put_double(&jb, t);
	json_put_cstr(&jb, ",\"id\":");
	json_put_int(&jb, (int64_t)a->id);
	json_put_cstr(&jb, ",\"since\":\"");
	json_put_cstr(&jb, a->since);
	json_put_cstr(&jb, "\"}");
	if (mon == NULL || jb.oom || hub_publish(mon, "system_alert", 12,
	    NULL, jb.p, jb.len, NULL) == 0)
		log_msg(LOG_ERROR, "system_alert not published id=%llu",
		    (unsigned long long)a->id);
	json_buf_free(&jb);
}

static void
alert_raise(enum host_alert k, double v, double t)
{
	struct alert *a = hist_add();

	a->id = ++raised_total;
	a->kind = k;
	a->raised = 1;
	a->threshold = t;
	a->value = a->peak = v;
	log_timestamp(a->since);
	active_id[k] = a->id;
	nactive++;
	log_msg(LOG_WARN, "alert raised alert=%s value=%.15g threshold=%.15g "
	    "id=%llu", kinds[k].name, v, t, (unsigned long long)a->id);
	publish(a, "raised", v, t);
}

static void
alert_clear(struct alert *a, double v, double t)
{
	a->raised = 0;
	log_timestamp(a->cleared);
	active_id[a->kind] = 0;
	nactive--;
	log_msg(LOG_INFO, "alert cleared alert=%s value=%.15g threshold=%.15g "
	    "id=%llu", kinds[a->kind].name, v, t, (unsigned long long)a->id);
	publish(a, "cleared", v, t);
}

void
host_tick(uint64_t now_ms, int watched)
{
	int need = watched || nactive > 0;

	for (int k = 0; k < HOST_NALERTS; k++)
		if (threshold(k) > 0)
			need = 1;
	/* Every tick, so cpu_pct always spans one tick. */
	read_cpu(now_ms);
	if (!need)
		return;
	read_rss(&fig);
	read_host(&fig);
	read_fds(now_ms);
	for (int k = 0; k < HOST_NALERTS; k++) {
		struct alert *a = active(k);
		double v = figure(k), t = threshold(k);

		if (a != NULL && (kinds[k].lower ? v < a->peak : v > a->peak))
			a->peak = v;
		switch (host_alert_step(a != NULL, kinds[k].lower, v, t)) {
		case HOST_RAISE:
			alert_raise(k, v, t);
			break;
		case HOST_CLEAR:
			alert_clear(a, v, t);
			break;
		case HOST_KEEP:
			break;
		}
	}
}

/* ==== Output ========================================================== */

static void
put_count(struct json_buf *b, const char *key, int64_t v)
{
	json_put_cstr(b, key);
	if (v < 0)
		json_put_raw(b, "null", 4);
	else
		json_put_int(b, v);
}

void
host_put_figures(struct json_buf *b)
{
	json_put_cstr(b, "\"host\":{\"cpu_pct\":");
	json_put_double(b, fig.cpu_pct);
	put_count(b, ",\"rss_bytes\":", fig.rss_bytes);
	put_count(b, ",\"fds\":", fig.fds);
	if (isnan(fig.load[0]))
		json_put_cstr(b, ",\"load\":null");
	else {
		json_put_cstr(b, ",\"load\":[");
		for (int i = 0; i < 3; i++) {
			if (i > 0)
				json_put_raw(b, ",", 1);
			json_put_double(b, fig.load[i]);
		}
		json_put_raw(b, "]", 1);
	}
	put_count(b, ",\"mem_total_bytes\":", fig.mem_total);
	put_count(b, ",\"mem_available_bytes\":", fig.mem_available);
	put_count(b, ",\"disk_total_bytes\":", fig.disk_total);
	put_count(b, ",\"disk_free_bytes\":", fig.disk_free);
	put_count(b, ",\"alerts_active\":", nactive);
	json_put_raw(b, "}", 1);
}

void
host_alerts_json(struct json_buf *out)
{
	json_put_cstr(out, "{\"thresholds\":{");
	for (int k = 0; k < HOST_NALERTS; k++) {
		json_put_cstr(out, k ? ",\"" : "\"");
		json_put_cstr(out, kinds[k].name);
		json_put_cstr(out, "\":");
		json_put_double(out, threshold(k));
	}
	json_put_cstr(out, "},\"active\":");
	json_put_int(out, nactive);
	json_put_cstr(out, ",\"alerts\":[");
	for (unsigned i = nhist; i-- > 0;) {
		const struct alert *a = &hist[i];

		json_put_cstr(out, i + 1 < nhist ? ",{\"id\":" : "{\"id\":");
		json_put_int(out, (int64_t)a->id);
		json_put_cstr(out, ",\"alert\":\"");
		json_put_cstr(out, kinds[a->kind].name);
		json_put_cstr(out, a->raised ? "\",\"state\":\"raised\"" :
		    "\",\"state\":\"cleared\"");
		json_put_cstr(out, ",\"value\":");
		json_put_double(out, a->value);
		json_put_cstr(out, ",\"peak\":");
		json_put_double(out, a->peak);
		json_put_cstr(out, ",\"threshold\":");
		json_put_double(out, a->threshold);
		json_put_cstr(out, ",\"since\":\"");
		json_put_cstr(out, a->since);
		if (a->raised)
			json_put_cstr(out, "\",\"cleared\":null}");
		else {
			json_put_cstr(out, "\",\"cleared\":\"");
			json_put_cstr(out, a->cleared);
			json_put_cstr(out, "\"}");
		}
	}
	json_put_cstr(out, "]}");
}

void
host_now(struct host_now *now)
{
	struct figures f;

	unknown(&f);
	read_host(&f);
	for (int i = 0; i < 3; i++)
		now->load[i] = f.load[i];
	now->mem_total = f.mem_total;
	now->mem_available = f.mem_available;
	now->disk_total = f.disk_total;
	now->disk_free = f.disk_free;
	now->alerts_active = nactive;
	now->alerts_raised = raised_total;
}
