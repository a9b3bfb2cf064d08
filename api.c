/*
 * api.c - the HTTP API's handlers: health, metrics, groups, events,
 * sessions, and the dashboard page.
 *
 * routes.c hands over whole requests (head parsed, Content-Length body
 * read) it has routed and allowed; each handler answers with
 * ws_http_respond().  Bodies are
 * JSON and decoded with json.c; answers are JSON, errors are
 * {"error":CODE,"message":TEXT} with fixed texts that never echo input.
 * Its only reads of its own are /proc/self's, for /metrics.
 */
#include <sys/resource.h>

#include <dirent.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "auth.h"
#include "api.h"
#include "cluster.h"
#include "cluster_sessions.h"
#include "host.h"
#include "hub.h"
#include "session_events.h"
#include "json.h"
#include "ws.h"

extern const unsigned char dashboard_html[];
extern const size_t dashboard_html_len;
extern const unsigned char wsd_js[];
extern const size_t wsd_js_len;

#define MAX_LIMIT	1000	/* items in one page */


static void
respond_json(const struct api_req *r, int status, struct json_buf *jb)
{
	if (jb->oom)
		ws_http_respond(r->c, 500, NULL, NULL,
		    "{\"error\":\"internal\",\"message\":\"out of memory\"}", 47);
	else
		ws_http_respond(r->c, status, NULL, NULL, jb->p, jb->len);
	json_buf_free(jb);
}

static void
error(const struct api_req *r, int status, const char *code, const char *msg)
{
	ws_http_error(r->c, status, code, msg, status == 405 ?
	    "Allow: GET, POST, PUT, DELETE\r\n" : NULL);
}

/* A query parameter as a number in [0, max]; dflt when absent. */
static int
query_uint(const struct api_req *r, const char *name, uint64_t dflt, uint64_t max,
    uint64_t *out)
{
	return http_query_uint(r->h->query, name, dflt, max, out) == -1 ? -1 : 0;
}

/* ---- The dashboard --------------------------------------------------- */

/*
 * "'sha256-...'" for the text between open and close in the page, so the
 * Content-Security-Policy can allow exactly the page's own inline script
 * and style instead of any inline code ('unsafe-inline').
 */
static void
inline_hash(const char *open, const char *close, char out[64])
{
	const char *page = (const char *)dashboard_html, *s, *e;
	uint8_t md[SHA256_DIGEST_LENGTH];
	char b64[48];

	strcpy(out, "'none'");
	s = memmem(page, dashboard_html_len, open, strlen(open));
	if (s == NULL)
		return;
	s += strlen(open);
	e = memmem(s, dashboard_html_len - (s - page), close, strlen(close));
	if (e == NULL)
		return;
	SHA256((const uint8_t *)s, e - s, md);
	EVP_EncodeBlock((uint8_t *)b64, md, sizeof md);
	snprintf(out, 64, "'sha256-%s'", b64);
}

void
api_dashboard(const struct api_req *r)
{
	static char headers[512];

	if (headers[0] == '\0') {
		char script[64], style[64];

		inline_hash("<script>", "</script>", script);
		inline_hash("<style>", "</style>", style);
		snprintf(headers, sizeof headers, "Cache-Control: no-cache\r\n"
		    "Content-Security-Policy: default-src 'none'; "
		    "script-src 'self' %s; style-src %s; connect-src 'self'; "
		    "img-src data:; base-uri 'none'; form-action 'none'; "
		    "frame-ancestors 'none'\r\n"
		    "X-Content-Type-Options: nosniff\r\n"
		    "Referrer-Policy: no-referrer\r\n", script, style);
	}
	ws_http_respond(r->c, 200, "text/html; charset=utf-8", headers,
	    dashboard_html, dashboard_html_len);
}

/*
 * GET /wsd.js: the client module, embedded like the page.  Its ETag is the
 * start of its SHA-256, so a browser revalidates (no-cache) and gets 304
 * while the binary is the same.
 */
void
api_client_js(const struct api_req *r)
{
	static char etag[32], headers[160];
	const struct http_slice *inm = http_header(r->h, "if-none-match");

	if (etag[0] == '\0') {
		uint8_t md[SHA256_DIGEST_LENGTH];

		SHA256(wsd_js, wsd_js_len, md);
		snprintf(etag, sizeof etag, "\"%02x%02x%02x%02x%02x%02x%02x%02x\"",
		    md[0], md[1], md[2], md[3], md[4], md[5], md[6], md[7]);
		snprintf(headers, sizeof headers, "ETag: %s\r\n"
		    "Cache-Control: no-cache\r\n"
		    "X-Content-Type-Options: nosniff\r\n", etag);
	}
	if (inm != NULL && http_has_token(*inm, etag)) {
		ws_http_respond(r->c, 304, "text/javascript; charset=utf-8",
		    headers, NULL, 0);
		return;
	}
	ws_http_respond(r->c, 200, "text/javascript; charset=utf-8", headers,
	    wsd_js, wsd_js_len);
}

/* ---- Health and metrics ---------------------------------------------- */

/*
 * This node's figures; with --redis, sessions are the cluster's (the
 * registry is shared) and "cluster" has every node's sums, both as of
 * the last tick.
 */
void
api_health(const struct api_req *r)
{
	struct csess_figures sum;
	char body[512];
	int n = snprintf(body, sizeof body, "{\"status\":\"ok\","
	    "\"connections\":%llu,\"sessions\":%u,\"groups\":%u,"
	    "\"uptime_s\":%llu", (unsigned long long)ws_stats_get()->websockets,
	    sess_count(), hub_group_count(),
	    (unsigned long long)hub_uptime_s());

	if (sess_shared()) {
		unsigned nodes = sess_cluster(&sum);

		n += snprintf(body + n, sizeof body - n, ",\"node\":\"%s\","
		    "\"cluster\":{\"nodes\":%u,\"connections\":%llu,"
		    "\"groups\":%llu,\"messages_in\":%llu,"
		    "\"messages_out\":%llu}", csess_node(), nodes,
		    (unsigned long long)sum.connections,
		    (unsigned long long)sum.groups,
		    (unsigned long long)sum.messages_in,
		    (unsigned long long)sum.messages_out);
	}
	n += snprintf(body + n, sizeof body - n, "}");
	ws_http_respond(r->c, 200, NULL, NULL, body, n);
}

static void
metric(struct json_buf *b, const char *name, const char *type,
    const char *help, const char *labels, uint64_t v)
{
	char line[256];

	if (help != NULL) {
		snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n",
		    name, help, name, type);
		json_put_cstr(b, line);
	}
	snprintf(line, sizeof line, "%s%s %llu\n", name, labels ? labels : "",
	    (unsigned long long)v);
	json_put_cstr(b, line);
}

static void
metric_f(struct json_buf *b, const char *name, const char *type,
    const char *help, double v)
{
	char line[256];

	snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %.3f\n",
	    name, help, name, type, name, v);
	json_put_cstr(b, line);
}

/*
 * The host's figures (host.c), each gauge left out when it cannot be
 * read, and the alerts.
 */
static void
host_metrics(struct json_buf *b)
{
	static const char *const load[3] = {
		"wsd_host_load1", "wsd_host_load5", "wsd_host_load15"
	};
	struct host_now h;

	host_now(&h);
	for (int i = 0; i < 3; i++)
		if (!isnan(h.load[i]))
			metric_f(b, load[i], "gauge",
			    "The host's load average (/proc/loadavg).",
			    h.load[i]);
	if (h.mem_total >= 0) {
		metric(b, "wsd_host_memory_total_bytes", "gauge",
		    "The host's memory (MemTotal).", NULL, h.mem_total);
		metric(b, "wsd_host_memory_available_bytes", "gauge",
		    "The host's memory available (MemAvailable).", NULL,
		    h.mem_available);
	}
	if (h.disk_total >= 0) {
		metric(b, "wsd_host_disk_total_bytes", "gauge",
		    "Size of the file system of --disk-path.", NULL,
		    h.disk_total);
		metric(b, "wsd_host_disk_free_bytes", "gauge",
		    "Space left to users on the file system of --disk-path.",
		    NULL, h.disk_free);
	}
	metric(b, "wsd_alerts_active", "gauge",
	    "system_alert alerts raised and not cleared.", NULL,
	    h.alerts_active);
	metric(b, "wsd_alerts_raised_total", "counter",
	    "system_alert alerts raised since start.", NULL, h.alerts_raised);
}

/*
 * The standard process figures, read from /proc/self: resident memory,
 * CPU time and start time (/proc/self/stat, and the boot time from
 * /proc/stat), the open fds (the entries of /proc/self/fd, less the one
 * reading them) and their limit.  A figure that cannot be read is left
 * out.  The reads are a few small files and one directory walk, on a
 * scrape, not on any connection's path.
 */
static void
process_metrics(struct json_buf *b)
{
	double tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	unsigned long long utime, stime, start, btime = 0;
	char buf[1024], *p;
	struct rlimit rl;
	struct dirent *e;
	long rss, nfd = -1;
	FILE *f;
	DIR *d;
	size_t n;

	if ((f = fopen("/proc/stat", "re")) != NULL) {
		while (fgets(buf, sizeof buf, f) != NULL)
			if (sscanf(buf, "btime %llu", &btime) == 1)
				break;
		fclose(f);
	}
	if ((f = fopen("/proc/self/stat", "re")) != NULL) {
		n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[n] = '\0';
		/* proc(5): fields 3 on follow the command name, which may
		 * itself hold ") ", so read from the last ')'.  14 utime,
		 * 15 stime, 22 starttime (clock ticks), 24 rss (pages). */
		if ((p = strrchr(buf, ')')) != NULL && tick > 0 && sscanf(p + 1,
		    " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
		    "%*d %*d %*d %*d %*d %*d %llu %*u %ld", &utime, &stime,
		    &start, &rss) == 4) {
			metric_f(b, "process_cpu_seconds_total", "counter",
			    "User and system CPU time spent in seconds.",
			    (utime + stime) / tick);
			metric(b, "process_resident_memory_bytes", "gauge",
			    "Resident memory size in bytes.", NULL,
			    (uint64_t)(rss * page));
			if (btime != 0)
				metric_f(b, "process_start_time_seconds",
				    "gauge", "Start time of the process since "
				    "unix epoch in seconds.", btime + start / tick);
		}
	}
	if ((d = opendir("/proc/self/fd")) != NULL) {
		while ((e = readdir(d)) != NULL)
			if (e->d_name[0] != '.')
				nfd++;
		closedir(d);
		metric(b, "process_open_fds", "gauge",
		    "Number of open file descriptors.", NULL, nfd);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		metric(b, "process_max_fds", "gauge",
		    "Maximum number of open file descriptors.", NULL,
		    rl.rlim_cur);
}

/* With --redis: both connections' figures, and what Redis lost. */
static void
redis_metrics(struct json_buf *b)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} m[] = {
#define F(f) offsetof(struct redis_stats, f)
	{ "wsd_redis_commands_total", "counter", "Commands sent to Redis.",
	    F(commands) },
	{ "wsd_redis_replies_total", "counter", "Replies from Redis.",
	    F(replies) },
	{ "wsd_redis_errors_total", "counter",
	    "Redis error replies and commands failed by a lost connection.",
	    F(errors) },
	{ "wsd_redis_messages_total", "counter",
	    "Events received on group channels.", F(messages) },
	{ "wsd_redis_reconnects_total", "counter",
	    "Connection attempts to Redis after the first.", F(reconnects) },
	{ "wsd_redis_full_total", "counter", "Commands refused because the "
	    "output to Redis was at its bound (Redis slow): answered 503.",
	    F(full) },
	{ "wsd_redis_queued_bytes", "gauge",
	    "Bytes waiting to be written to Redis.", F(queued_bytes) },
	{ "wsd_redis_inflight", "gauge", "Commands awaiting Redis' reply.",
	    F(inflight) },
	{ "wsd_redis_subscriptions", "gauge", "Group channels followed.",
	    F(subscriptions) },
#undef F
	};
	struct redis_stats st[2];
	char label[64];

	cluster_stats(&st[0], &st[1]);
	for (int i = 0; i < 2; i++) {
		snprintf(label, sizeof label, "{conn=\"%s\"}",
		    i ? "subscriber" : "command");
		metric(b, "wsd_redis_up", "gauge",
		    i ? NULL : "1 while the connection to Redis is up.", label,
		    st[i].up);
	}
	for (size_t k = 0; k < sizeof m / sizeof m[0]; k++)
		for (int i = 0; i < 2; i++) {
			snprintf(label, sizeof label, "{conn=\"%s\"}",
			    i ? "subscriber" : "command");
			metric(b, m[k].name, m[k].type, i ? NULL : m[k].help,
			    label, *(const uint64_t *)((const char *)&st[i] +
			    m[k].off));
		}
	metric(b, "wsd_cluster_events_lost_total", "counter",
	    "Server events (session_event, realtime_update, system_alert) "
	    "Redis did not store.", NULL, cluster_lost());
}

void
api_metrics(const struct api_req *r)
{
	struct json_buf b = { 0 };
	char label[64];

	metric(&b, "wsd_build_info", "gauge",
	    "The version of wsd running; the value is always 1.",
	    "{version=\"" WSD_VERSION "\"}", 1);

	metric(&b, "wsd_connections", "gauge",
	    "Open connections, HTTP and WebSocket.", NULL,
	    ws_stats_get()->connections);
	metric(&b, "wsd_websockets", "gauge", "Open WebSocket connections.",
	    NULL, ws_stats_get()->websockets);
	metric(&b, "wsd_sse_streams", "gauge", "Open event streams (GET /sse).",
	    NULL, ws_stats_get()->streams);
	metric(&b, "wsd_groups", "gauge", "Groups.", NULL, hub_group_count());
	metric(&b, "wsd_history_bytes", "gauge",
	    "Bytes of events kept for resume, all groups.", NULL,
	    hub_history_total());
	metric(&b, "wsd_sessions", "gauge", "Live sessions.", NULL,
	    sess_count());
	metric(&b, "wsd_connections_accepted_total", "counter",
	    "Connections accepted.", NULL, ws_stats_get()->accepted);
	metric(&b, "wsd_http_requests_total", "counter",
	    "HTTP requests answered.", NULL, ws_stats_get()->http_requests);
	metric(&b, "wsd_messages_in_total", "counter",
	    "WebSocket messages received.", NULL, ws_stats_get()->messages_in);
	metric(&b, "wsd_messages_out_total", "counter",
	    "WebSocket messages queued to clients.", NULL,
	    ws_stats_get()->messages_out);
	metric(&b, "wsd_bytes_in_total", "counter", "Bytes read.", NULL,
	    ws_stats_get()->bytes_in);
	metric(&b, "wsd_bytes_out_total", "counter", "Bytes written.", NULL,
	    ws_stats_get()->bytes_out);
	metric(&b, "wsd_events_published_total", "counter",
	    "Events published to groups.", NULL, hub_stats_get()->events_published);
	metric(&b, "wsd_slow_consumer_closes_total", "counter",
	    "Connections closed with 1013 for a full send queue.", NULL,
	    ws_stats_get()->slow_closes);
	for (int i = 0; i < 6; i++) {
		snprintf(label, sizeof label, "{reason=\"%s\"}",
		    ws_hs_fail_names[i]);
		metric(&b, "wsd_handshake_failures_total", "counter", i ? NULL :
		    "Refused or failed requests and upgrades, by reason.",
		    label, ws_stats_get()->handshake_fail[i]);
	}
	for (int i = 0; i < HUB_NERRORS; i++) {
		snprintf(label, sizeof label, "{code=\"%s\"}",
		    hub_error_names[i]);
		metric(&b, "wsd_errors_total", "counter", i ? NULL :
		    "Error messages sent to clients, by code.", label,
		    hub_stats_get()->errors[i]);
	}
	for (int i = 0; i < WS_NLIMITS + HUB_NLIMITS; i++) {
		int hub = i >= WS_NLIMITS;

		snprintf(label, sizeof label, "{limit=\"%s\"}", hub ?
		    hub_limit_names[i - WS_NLIMITS] : ws_limit_names[i]);
		metric(&b, "wsd_limit_rejections_total", "counter", i ? NULL :
		    "Connections, requests, messages and calls refused at a "
		    "limit, by limit.", label, hub ?
		    hub_stats_get()->limit[i - WS_NLIMITS] :
		    ws_stats_get()->limit[i]);
	}
	metric(&b, "wsd_uptime_seconds", "gauge", "Seconds since start.", NULL,
	    hub_uptime_s());
	if (cluster_on())
		redis_metrics(&b);
	process_metrics(&b);
	host_metrics(&b);
	if (b.oom)
		error(r, 500, "internal", "out of memory");
	else
		ws_http_respond(r->c, 200, "text/plain; version=0.0.4", NULL,
		    b.p, b.len);
	json_buf_free(&b);
}

/* ---- Groups and events ----------------------------------------------- */

/* The HTTP status for each refusal of hub_client_publish(). */
static int
publish_status(int err)
{
	switch (err) {
	case HUB_E_FORBIDDEN:	return 403;
	case HUB_E_TOO_LARGE:
	case HUB_E_UNAVAILABLE:	return 503;
	default:		return 400;
	}
}

static void
post_answer(struct ws_conn *c, const struct hub_result *res)
{
	char num[64];
	int n;

	if (res->seq == 0) {
		ws_http_error(c, publish_status(res->err),
		    hub_error_names[res->err], res->why, NULL);
		return;
	}
	n = snprintf(num, sizeof num, "{\"seq\":%llu,\"delivered\":%u}",
	    (unsigned long long)res->seq, res->delivered);
	ws_http_respond(c, 202, NULL, NULL, num, n);
}

/* With --redis: Redis has stored the event, or could not. */
static void
post_done(void *arg, const struct hub_result *res)
{
	struct ws_conn *c = arg;

	if (ws_open(c))
		post_answer(c, res);
	ws_http_resume(c);
}

void
api_post_event(const struct api_req *r)
{
	const char *name = r->arg;
	struct json_doc doc = { 0 };
	struct hub_result res = { 0 };
	int rc;

	if (json_parse(&doc, r->body, r->blen, hub_config()->json_depth,
	    r->blen + 1) == -1 || doc.tok[0].type != JSON_OBJECT) {
		error(r, 400, "bad_json", "body must be a JSON object");
		goto out;
	}
	/* The API key, checked on the head, is the right to publish. */
	rc = hub_client_publish(name, strlen(name), &doc, json_find(&doc, 0,
	    "type"), json_find(&doc, 0, "data"), NULL, &res, post_done, r->c);
	if (rc == -1)
		error(r, publish_status(res.err), hub_error_names[res.err],
		    res.why);
	else if (rc == 1)
		ws_http_defer(r->c);	/* answered by post_done() */
	else
		post_answer(r->c, &res);
out:
	json_doc_free(&doc);
}


/* {members}: a history answer. */
static void
history_answer(struct ws_conn *c, const struct json_buf *members)
{
	struct json_buf jb = { 0 };

	json_put_raw(&jb, "{", 1);
	json_put_raw(&jb, members->p, members->len);
	json_put_raw(&jb, "}", 1);
	if (jb.oom || members->oom)
		ws_http_error(c, 500, "internal", "out of memory", NULL);
	else
		ws_http_respond(c, 200, NULL, NULL, jb.p, jb.len);
	json_buf_free(&jb);
}

static void
history_done(void *arg, struct json_buf *members)
{
	struct ws_conn *c = arg;

	if (ws_open(c)) {
		if (members != NULL)
			history_answer(c, members);
		else
			ws_http_error(c, 503, "unavailable",
			    "Redis is unavailable", NULL);
	}
	ws_http_resume(c);
}

void
api_get_events(const struct api_req *r)
{
	const char *name = r->arg;
	struct json_buf jb = { 0 };
	struct hub_pos since;
	uint64_t limit;

	if (hub_parse_query_pos(r->h->query, &since) == -1 ||
	    query_uint(r, "limit", 100, MAX_LIMIT, &limit) == -1) {
		error(r, 400, "bad_request", "since is SEQ or EPOCH:SEQ, limit "
		    "an integer");
		return;
	}
	if (!hub_name_valid(name, strlen(name)) && strcmp(name, "*") != 0) {
		error(r, 400, "bad_group", "group must be 1-64 bytes of "
		    "[A-Za-z0-9._:-]");
		return;
	}
	switch (hub_history(name, strlen(name), &since, limit, &jb,
	    history_done, r->c)) {
	case 0:
		history_answer(r->c, &jb);
		break;
	case 1:
		ws_http_defer(r->c);	/* answered by history_done() */
		break;
	default:
		ws_http_error(r->c, 503, "unavailable", "Redis is unavailable",
		    NULL);
		break;
	}
	json_buf_free(&jb);
}

/* ?offset=O&limit=N of a listing (limit 100 by default, at most
 * MAX_LIMIT).  0, or -1 with 400 answered. */
static int
page_query(const struct api_req *r, uint64_t *offset, uint64_t *limit)
{
	if (query_uint(r, "offset", 0, UINT32_MAX, offset) == -1 ||
	    query_uint(r, "limit", 100, MAX_LIMIT, limit) == -1) {
		error(r, 400, "bad_request", "offset and limit are integers");
		return -1;
	}
	return 0;
}

void
api_groups(const struct api_req *r)
{
	struct json_buf jb = { 0 };
	uint64_t offset, limit;

	if (page_query(r, &offset, &limit) == -1)
		return;
	hub_groups_json(offset, limit, &jb);
	respond_json(r, 200, &jb);
}

/* ---- Alerts ---------------------------------------------------------- */

/* GET /api/alerts: the thresholds and the last alerts, newest first. */
void
api_alerts(const struct api_req *r)
{
	struct json_buf jb = { 0 };

	host_alerts_json(&jb);
	respond_json(r, 200, &jb);
}

/* ---- Connections ----------------------------------------------------- */

struct conn_page {
	uint64_t	 skip, left;	/* the page: offset, limit */
	unsigned	 total;
	struct json_buf	*jb;
};

/*
 * One connection of the page: {"id","kind","tls","peer","subject",
 * "session","groups","queued","age_s","rtt_ms"}.
 */
static void
conn_json(struct ws_conn *c, struct ws_app_conn *a, void *arg)
{
	struct conn_page *pg = arg;
	struct ws_conn_info ci;
	char num[160];

	if (a == NULL)
		return;			/* /echo: no hub state */
	pg->total++;
	if (pg->skip > 0) {
		pg->skip--;
		return;
	}
	if (pg->left == 0)
		return;
	pg->left--;
	ws_conn_info(c, &ci);
	json_put_raw(pg->jb, "{", 1);
	snprintf(num, sizeof num, "\"id\":%llu,\"kind\":\"%s\",\"tls\":%s,"
	    "\"peer\":", (unsigned long long)ci.id, ci.stream ? "sse" :
	    "websocket", ci.tls ? "true" : "false");
	json_put_cstr(pg->jb, num);
	json_put_str(pg->jb, ci.peer, strlen(ci.peer));
	json_put_cstr(pg->jb, ",\"subject\":");
	if (a->claims != NULL && a->claims->sub != NULL)
		json_put_str(pg->jb, a->claims->sub, strlen(a->claims->sub));
	else
		json_put_cstr(pg->jb, "null");
	json_put_cstr(pg->jb, ",\"session\":");
	if (a->session != NULL)
		json_put_str(pg->jb, sess_id(a->session),
		    strlen(sess_id(a->session)));
	else
		json_put_cstr(pg->jb, "null");
	json_put_cstr(pg->jb, ",\"groups\":[");
	for (uint32_t i = 0; i < a->nsubs; i++) {
		size_t n;
		const char *name = hub_group_name(a->subs[i].g, &n);

		if (i > 0)
			json_put_raw(pg->jb, ",", 1);
		json_put_str(pg->jb, name, n);
	}
	snprintf(num, sizeof num, "],\"queued\":%zu,\"age_s\":%llu,"
	    "\"rtt_ms\":", ci.queued, (unsigned long long)ci.age_s);
	json_put_cstr(pg->jb, num);
	if (ci.rtt_ms >= 0) {
		snprintf(num, sizeof num, "%d},", ci.rtt_ms);
		json_put_cstr(pg->jb, num);
	} else
		json_put_cstr(pg->jb, "null},");
}

/*
 * GET /api/connections?offset=O&limit=N: the WebSockets and event streams
 * open now, newest first, one page of them:
 * {"connections":[...],"total":T}.
 */
void
api_connections(const struct api_req *r)
{
	struct json_buf jb = { 0 };
	struct conn_page pg = { 0, 0, 0, &jb };
	char tail[48];

	if (page_query(r, &pg.skip, &pg.left) == -1)
		return;
	json_put_cstr(&jb, "{\"connections\":[");
	ws_foreach(conn_json, &pg);
	if (jb.len > 0 && jb.p[jb.len - 1] == ',')
		jb.len--;
	snprintf(tail, sizeof tail, "],\"total\":%u}", pg.total);
	json_put_cstr(&jb, tail);
	respond_json(r, 200, &jb);
}

/* ---- Sessions -------------------------------------------------------- */

/*
 * The body of POST and PUT /api/sessions: empty or a JSON object whose
 * "metadata", if not absent or null, is an object of at most
 * --max-metadata bytes.  0 with *meta a slice of the body (NULL when
 * absent), or -1 with the error sent; doc is the caller's to free.
 */
static int
session_body(const struct api_req *r, struct json_doc *doc, const uint8_t **meta,
    size_t *mlen)
{
	int m;

	*meta = NULL;
	*mlen = 0;
	if (r->blen > hub_config()->max_metadata + 256) {
		hub_limit_hit(HUB_L_MAX_METADATA);
		error(r, 413, "too_large", "metadata is too large");
		return -1;
	}
	if (r->blen == 0)
		return 0;
	if (json_parse(doc, r->body, r->blen, hub_config()->json_depth,
	    r->blen + 1) == -1 || doc->tok[0].type != JSON_OBJECT) {
		error(r, 400, "bad_json", "body must be a JSON object");
		return -1;
	}
	if ((m = json_find(doc, 0, "metadata")) < 0 ||
	    doc->tok[m].type == JSON_NULL)
		return 0;
	if (doc->tok[m].type != JSON_OBJECT) {
		error(r, 400, "bad_request", "metadata must be an object");
		return -1;
	}
	*meta = json_tok_json(doc, m, mlen);
	if (*mlen > hub_config()->max_metadata) {
		hub_limit_hit(HUB_L_MAX_METADATA);
		error(r, 413, "too_large", "metadata is too large");
		return -1;
	}
	return 0;
}

static void
session_error(const struct api_req *r, int status)
{
	error(r, status, status == 409 ? "conflict" : status == 503 ?
	    "unavailable" : "internal", status == 409 ?
	    "session exists" : "cannot create a session now");
}

/*
 * With --redis the registry is in Redis (session_events.h): the answer
 * comes later, and requests pipelined behind it wait (ws_http_defer()).
 */
static void
shared_done(void *arg, int status, const char *id, size_t n)
{
	struct ws_conn *c = arg;
	struct json_buf jb = { 0 };

	if (!ws_open(c))
		;
	else if (status == 201 || status == 200) {
		json_put_cstr(&jb, "{\"id\":");
		json_put_str(&jb, id, n);
		json_put_raw(&jb, "}", 1);
		if (jb.oom)
			ws_http_error(c, 500, "internal", "out of memory",
			    NULL);
		else
			ws_http_respond(c, status, NULL, NULL, jb.p, jb.len);
	} else if (status == 204)
		ws_http_respond(c, 204, NULL, NULL, NULL, 0);
	else if (status == 404)
		ws_http_error(c, 404, "not_found", "no such session", NULL);
	else if (status == 409)
		ws_http_error(c, 409, "conflict", "session exists", NULL);
	else if (status == 503)
		ws_http_error(c, 503, "unavailable", "cannot create a session "
		    "now", NULL);
	else
		ws_http_error(c, 503, "unavailable", "Redis did not confirm "
		    "the change: it may or may not be made", NULL);
	json_buf_free(&jb);
	ws_http_resume(c);
}

/* A change to the shared registry; 503 at once when Redis is down. */
static void
shared_change(const struct api_req *r, int op, const char *id, long n,
    const uint8_t *meta, size_t mlen)
{
	if (sess_shared_change(op, n < 0 ? NULL : id, n < 0 ? 0 : n, meta,
	    mlen, shared_done, r->c) == 0)
		ws_http_defer(r->c);
	else
		error(r, 503, "unavailable", "Redis is unavailable");
}

static void
shared_page(void *arg, const struct json_buf *page, uint64_t active)
{
	struct ws_conn *c = arg;

	(void)active;
	if (ws_open(c)) {
		if (page == NULL)
			ws_http_error(c, 503, "unavailable", "Redis is "
			    "unavailable", NULL);
		else if (page->oom)
			ws_http_error(c, 500, "internal", "out of memory",
			    NULL);
		else
			ws_http_respond(c, 200, NULL, NULL, page->p,
			    page->len);
	}
	ws_http_resume(c);
}

static void
shared_count(void *arg, const struct json_buf *page, uint64_t active)
{
	struct ws_conn *c = arg;
	char b[64];
	int n = snprintf(b, sizeof b, "{\"active_sessions\":%llu}",
	    (unsigned long long)active);

	if (ws_open(c)) {
		if (page == NULL)
			ws_http_error(c, 503, "unavailable", "Redis is "
			    "unavailable", NULL);
		else
			ws_http_respond(c, 200, NULL, NULL, b, n);
	}
	ws_http_resume(c);
}

void
api_post_session(const struct api_req *r)
{
	struct json_doc doc = { 0 };
	struct json_buf jb = { 0 };
	struct sess *s;
	char id[HUB_GROUP_MAX + 1] = "";
	const uint8_t *meta = NULL;
	size_t mlen = 0;
	long n = -1;
	int i, status;

	if (session_body(r, &doc, &meta, &mlen) == -1)
		goto out;
	if (r->blen > 0 && (i = json_find(&doc, 0, "id")) >= 0 &&
	    doc.tok[i].type != JSON_NULL) {
		if (doc.tok[i].type != JSON_STRING ||
		    (n = json_tok_str(&doc, i, id, sizeof id)) < 0 ||
		    !hub_name_valid(id, n)) {
			error(r, 400, "bad_request", "id must be 1-64 bytes of "
			    "[A-Za-z0-9._:-]");
			goto out;
		}
	}
	if (sess_shared()) {
		shared_change(r, 'c', id, n, meta, mlen);
		goto out;
	}
	if ((s = sess_create(n < 0 ? NULL : id, n < 0 ? 0 : n, meta, mlen, 0,
	    &status)) == NULL) {
		session_error(r, status);
		goto out;
	}
	json_put_cstr(&jb, "{\"id\":");
	json_put_str(&jb, sess_id(s), strlen(sess_id(s)));
	json_put_raw(&jb, "}", 1);
	respond_json(r, 201, &jb);
out:
	json_doc_free(&doc);
}

/* Create-or-update: 201 when made, 200 when its metadata was replaced. */
void
api_put_session(const struct api_req *r)
{
	const char *id = r->arg;
	struct json_doc doc = { 0 };
	struct json_buf jb = { 0 };
	struct sess *s;
	const uint8_t *meta;
	size_t mlen;
	int status;

	if (!hub_name_valid(id, strlen(id))) {
		error(r, 400, "bad_request", "id must be 1-64 bytes of "
		    "[A-Za-z0-9._:-]");
		return;
	}
	if (session_body(r, &doc, &meta, &mlen) == -1)
		goto out;
	if (sess_shared()) {
		shared_change(r, 'p', id, (long)strlen(id), meta, mlen);
		goto out;
	}
	if ((s = sess_put(id, strlen(id), meta, mlen, &status)) == NULL) {
		session_error(r, status);
		goto out;
	}
	json_put_cstr(&jb, "{\"id\":");
	json_put_str(&jb, sess_id(s), strlen(sess_id(s)));
	json_put_raw(&jb, "}", 1);
	respond_json(r, status, &jb);
out:
	json_doc_free(&doc);
}

void
api_get_sessions(const struct api_req *r)
{
	struct json_buf jb = { 0 };
	uint64_t offset, limit;

	if (page_query(r, &offset, &limit) == -1)
		return;
	if (sess_shared()) {
		if (sess_shared_list(offset, limit, shared_page, r->c) == 0)
			ws_http_defer(r->c);
		else
			error(r, 503, "unavailable", "Redis is unavailable");
		return;
	}
	sess_list_json(offset, limit, &jb);
	respond_json(r, 200, &jb);
}

void
api_session_count(const struct api_req *r)
{
	char b[64];
	int n;

	if (sess_shared()) {
		if (sess_shared_list(0, 0, shared_count, r->c) == 0)
			ws_http_defer(r->c);
		else
			error(r, 503, "unavailable", "Redis is unavailable");
		return;
	}
	n = snprintf(b, sizeof b, "{\"active_sessions\":%u}", sess_count());
	ws_http_respond(r->c, 200, NULL, NULL, b, n);
}

void
api_delete_session(const struct api_req *r)
{
	if (sess_shared())
		shared_change(r, 'd', r->arg, (long)strlen(r->arg), NULL, 0);
	else if (sess_delete(r->arg, strlen(r->arg)) == -1)
		error(r, 404, "not_found", "no such session");
	else
		ws_http_respond(r->c, 204, NULL, NULL, NULL, 0);
}

/* /livez: the loop turns.  /readyz: and is not draining. */
void
api_livez(const struct api_req *r)
{
	ws_http_respond(r->c, 200, NULL, NULL, "{\"status\":\"ok\"}", 15);
}

void
api_readyz(const struct api_req *r)
{
	if (ws_draining())
		error(r, 503, "draining", "shutting down");
	else if (cluster_on() && !cluster_up())
		error(r, 503, "unavailable", "Redis is unavailable");
	else
		api_livez(r);
}
