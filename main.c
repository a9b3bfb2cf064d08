/*
 * main.c - options, then the listeners and the loop.
 *
 * Only wiring: every option has a long flag and a WSD_* environment
 * variable (the flag wins), defaults come from the layers' headers, and
 * the reactor (ws.c) is started with the hub (hub.c) as its handlers.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "log.h"
#include "ws.h"

#define WSD_VERSION	"0.1.0"
#define MAX_LISTEN	16

enum opt_type {
	O_FLAG,		/* no value; sets an int to 1 */
	O_STR,		/* a string */
	O_LIST,		/* repeatable string */
	O_UINT,		/* unsigned integer */
	O_SIZE,		/* bytes, with an optional K, M or G suffix (powers of 2) */
	O_SECS		/* seconds, fractions allowed; stored in ms */
};

struct list {
	const char *v[MAX_LISTEN];
	int n;
};

static struct ws_config wscfg = {
	.max_header = WS_MAX_HEADER,
	.max_message = WS_MAX_MESSAGE,
	.max_body = WS_MAX_BODY,
	.send_queue = WS_SEND_QUEUE,
	.max_connections = WS_MAX_CONNECTIONS,
	.handshake_ms = WS_HANDSHAKE_MS,
	.ping_interval_ms = WS_PING_INTERVAL_MS,
	.ping_timeout_ms = WS_PING_TIMEOUT_MS,
	.drain_ms = WS_DRAIN_MS,
};

static struct hub_config hubcfg = {
	.history = HUB_HISTORY,
	.history_bytes = HUB_HISTORY_BYTES,
	.max_conn_groups = HUB_MAX_CONN_GROUPS,
	.max_groups = HUB_MAX_GROUPS,
	.json_depth = 64,
	.tick_ms = HUB_TICK_MS,
	.max_sessions = HUB_MAX_SESSIONS,
	.max_metadata = HUB_MAX_METADATA,
};

static struct list	 listen_on;
static int		 no_session_events;
static const char	*log_format = "text", *log_level = "info", *log_file;
static int		 show_help, show_version;

static const struct opt {
	const char   *name;
	enum opt_type type;
	void         *dst;
	const char   *help;
} opts[] = {
	{ "listen", O_LIST, &listen_on,
	    "HOST:PORT to listen on, repeatable (127.0.0.1:8000)" },
	{ "echo", O_FLAG, &wscfg.echo,
	    "serve the RFC 6455 echo route /echo" },
	{ "subprotocol", O_STR, &wscfg.subprotocol,
	    "Sec-WebSocket-Protocol to accept when offered (none)" },
	{ "max-connections", O_UINT, &wscfg.max_connections,
	    "open connections; past it requests get 503 (10000)" },
	{ "max-header", O_SIZE, &wscfg.max_header,
	    "request line + headers bytes; past it 431 (8K)" },
	{ "max-body", O_SIZE, &wscfg.max_body,
	    "HTTP request body bytes; past it 413 (1M)" },
	{ "max-message", O_SIZE, &wscfg.max_message,
	    "WebSocket message bytes; past it close 1009 (1M)" },
	{ "send-queue", O_SIZE, &wscfg.send_queue,
	    "queued bytes per connection; past it close 1013 (4M)" },
	{ "handshake-timeout", O_SECS, &wscfg.handshake_ms,
	    "seconds for a request to arrive whole (10)" },
	{ "ping-interval", O_SECS, &wscfg.ping_interval_ms,
	    "seconds of silence before the server pings (25)" },
	{ "ping-timeout", O_SECS, &wscfg.ping_timeout_ms,
	    "seconds of silence before a peer is dropped (60)" },
	{ "drain", O_SECS, &wscfg.drain_ms,
	    "seconds to wait for close replies on shutdown (5)" },
	{ "history", O_UINT, &hubcfg.history,
	    "events kept per group for resume (1000)" },
	{ "history-bytes", O_SIZE, &hubcfg.history_bytes,
	    "bytes of events kept per group (1M)" },
	{ "max-groups", O_UINT, &hubcfg.max_groups,
	    "groups in all (100000)" },
	{ "max-conn-groups", O_UINT, &hubcfg.max_conn_groups,
	    "groups one connection may join (64)" },
	{ "json-depth", O_UINT, &hubcfg.json_depth,
	    "nesting depth of JSON messages (64)" },
	{ "tick", O_SECS, &hubcfg.tick_ms,
	    "seconds between session diffs and realtime_update (3)" },
	{ "no-session-events", O_FLAG, &no_session_events,
	    "turn the session diff off" },
	{ "session-ttl", O_SECS, &hubcfg.session_ttl_ms,
	    "seconds a connection-made session outlives its last client (0)" },
	{ "max-sessions", O_UINT, &hubcfg.max_sessions,
	    "sessions in all (100000)" },
	{ "max-metadata", O_SIZE, &hubcfg.max_metadata,
	    "bytes of one session's metadata; past it 413 (16K)" },
	{ "log-format", O_STR, &log_format, "text or json (text)" },
	{ "log-level", O_STR, &log_level, "debug, info, warn, error (info)" },
	{ "log-file", O_STR, &log_file,
	    "log to this file instead of stderr; SIGHUP reopens it" },
	{ "help", O_FLAG, &show_help, "this text" },
	{ "version", O_FLAG, &show_version, "the version" },
};

#define NOPTS (sizeof opts / sizeof opts[0])

static void
usage(FILE *f)
{
	fprintf(f, "usage: wsd [--option value ...]\n"
	    "Every option is also read from WSD_NAME (e.g. --max-message"
	    " is WSD_MAX_MESSAGE).\n\n");
	for (size_t i = 0; i < NOPTS; i++)
		fprintf(f, "  --%-20s %s\n", opts[i].name, opts[i].help);
}

static int
parse_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *s == '-')
		return -1;
	if (*end == 'K' || *end == 'k')
		shift = 10, end++;
	else if (*end == 'M' || *end == 'm')
		shift = 20, end++;
	else if (*end == 'G' || *end == 'g')
		shift = 30, end++;
	if (*end != '\0' || v > (SIZE_MAX >> shift))
		return -1;
	*out = (size_t)v << shift;
	return 0;
}

/* Set one option from its text; "-" names the source in the error. */
static int
set_opt(const struct opt *o, const char *val, const char *from)
{
	char *end;
	size_t sz;
	double d;
	unsigned long ul;

	switch (o->type) {
	case O_FLAG:
		if (val != NULL && strcmp(val, "1") != 0 &&
		    strcmp(val, "true") != 0 && strcmp(val, "0") != 0 &&
		    strcmp(val, "false") != 0)
			goto bad;
		*(int *)o->dst = val == NULL || val[0] == '1' || val[0] == 't';
		return 0;
	case O_STR:
		*(const char **)o->dst = val;
		return 0;
	case O_LIST: {
		struct list *l = o->dst;

		if (l->n == MAX_LISTEN)
			goto bad;
		l->v[l->n++] = val;
		return 0;
	}
	case O_UINT:
		errno = 0;
		ul = strtoul(val, &end, 10);
		if (errno != 0 || end == val || *end != '\0' || *val == '-' ||
		    ul > 0x7fffffff)
			goto bad;
		*(unsigned *)o->dst = ul;
		return 0;
	case O_SIZE:
		if (parse_size(val, &sz) == -1)
			goto bad;
		*(size_t *)o->dst = sz;
		return 0;
	case O_SECS:
		errno = 0;
		d = strtod(val, &end);
		if (errno != 0 || end == val || *end != '\0' || !(d >= 0) ||
		    d > 86400 * 365)
			goto bad;
		*(unsigned *)o->dst = (unsigned)(d * 1000 + 0.5);
		return 0;
	}
bad:
	fprintf(stderr, "wsd: bad value for %s%s: %.64s\n", from, o->name,
	    val ? val : "");
	return -1;
}

/* WSD_NAME for each option, then the command line (which wins). */
static int
parse_options(int argc, char **argv)
{
	for (size_t i = 0; i < NOPTS; i++) {
		char env[64] = "WSD_";
		const char *v;
		size_t k;

		for (k = 0; opts[i].name[k] && k + 5 < sizeof env; k++)
			env[4 + k] = opts[i].name[k] == '-' ? '_' :
			    toupper((unsigned char)opts[i].name[k]);
		env[4 + k] = '\0';
		if ((v = getenv(env)) == NULL || opts[i].type == O_LIST)
			continue;
		if (set_opt(&opts[i], v, "WSD_ ") == -1)
			return -1;
	}
	for (int a = 1; a < argc; a++) {
		const char *arg = argv[a], *val = NULL, *eq;
		const struct opt *o = NULL;
		size_t n;

		if (strncmp(arg, "--", 2) != 0) {
			fprintf(stderr, "wsd: unexpected argument: %.64s\n", arg);
			return -1;
		}
		arg += 2;
		eq = strchr(arg, '=');
		n = eq ? (size_t)(eq - arg) : strlen(arg);
		for (size_t i = 0; i < NOPTS; i++)
			if (strlen(opts[i].name) == n &&
			    strncmp(opts[i].name, arg, n) == 0)
				o = &opts[i];
		if (o == NULL) {
			fprintf(stderr, "wsd: unknown option --%.*s (see --help)\n",
			    (int)(n > 64 ? 64 : n), arg);
			return -1;
		}
		if (eq != NULL)
			val = eq + 1;
		else if (o->type != O_FLAG) {
			if (a + 1 >= argc) {
				fprintf(stderr, "wsd: --%s needs a value\n",
				    o->name);
				return -1;
			}
			val = argv[++a];
		}
		if (set_opt(o, val, "--") == -1)
			return -1;
	}
	/* WSD_LISTEN may list several addresses, comma-separated; it
	 * applies only when no --listen was given. */
	if (listen_on.n == 0 && getenv("WSD_LISTEN") != NULL) {
		static char buf[1024];
		char *save, *tok;

		snprintf(buf, sizeof buf, "%s", getenv("WSD_LISTEN"));
		for (tok = strtok_r(buf, ",", &save); tok != NULL &&
		    listen_on.n < MAX_LISTEN; tok = strtok_r(NULL, ",", &save))
			listen_on.v[listen_on.n++] = tok;
	}
	return 0;
}

/* Limits that cannot work together are refused at start, not at 3 a.m. */
static int
check_options(void)
{
	const char *why = NULL;

	if (wscfg.max_header < 256)
		why = "--max-header must be at least 256";
	else if (wscfg.max_message == 0 || wscfg.max_message > (1ul << 31))
		why = "--max-message must be 1..2G";
	else if (wscfg.send_queue < 1024)
		why = "--send-queue must be at least 1K";
	else if (wscfg.max_connections == 0)
		why = "--max-connections must be at least 1";
	else if (wscfg.handshake_ms == 0 || wscfg.ping_interval_ms == 0 ||
	    wscfg.ping_timeout_ms == 0 || hubcfg.tick_ms == 0)
		why = "timeouts and --tick must be above 0";
	else if (hubcfg.json_depth == 0 || hubcfg.json_depth > 1024)
		why = "--json-depth must be 1..1024";
	else if (hubcfg.max_conn_groups == 0)
		why = "--max-conn-groups must be at least 1";
	else if (log_set_format(log_format) == -1)
		why = "--log-format must be text or json";
	else if (log_set_level(log_level) == -1)
		why = "--log-level must be debug, info, warn or error";
	if (why != NULL) {
		fprintf(stderr, "wsd: %s\n", why);
		return -1;
	}
	return 0;
}

static void
on_hup(void)
{
	log_reopen();
}

int
main(int argc, char **argv)
{
	if (parse_options(argc, argv) == -1 || check_options() == -1)
		return 2;
	if (show_help) {
		usage(stdout);
		return 0;
	}
	if (show_version) {
		printf("wsd %s\n", WSD_VERSION);
		return 0;
	}
	if (log_file != NULL && log_set_file(log_file) == -1) {
		fprintf(stderr, "wsd: cannot open log file %.200s: %s\n",
		    log_file, strerror(errno));
		return 1;
	}
	hubcfg.session_events = !no_session_events;
	if (listen_on.n == 0)
		listen_on.v[listen_on.n++] = "127.0.0.1:8000";

	if (ws_init(&wscfg, &hub_handlers) == -1 || hub_init(&hubcfg) == -1)
		return 1;
	for (int i = 0; i < listen_on.n; i++)
		if (ws_listen(listen_on.v[i]) == -1)
			return 1;
	log_msg(LOG_INFO, "wsd %s started", WSD_VERSION);
	return ws_run(on_hup);
}
