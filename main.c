/*
 * main.c - options, then the listeners and the loop.
 *
 * Only wiring: every option has a long flag, a WSD_* environment
 * variable and a name in the --config file (the flag wins over the
 * variable, the variable over the file), defaults come from the layers'
 * headers, and the reactor (ws.c) is started with routes.c's handler
 * table.  SIGHUP reads the file again and hands what may change while
 * running to each layer's setter (reload()).
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "auth.h"
#include "cli.h"
#include "cluster.h"
#include "cluster_sessions.h"
#include "api.h"
#include "host.h"
#include "hub.h"
#include "json.h"
#include "routes.h"
#include "session_events.h"
#include "log.h"
#include "notify.h"
#include "tls.h"
#include "ws.h"

#define MAX_LISTEN	16
#define CONFIG_MAX	(64u << 10)	/* bytes in a --config file */
#define NUM_MAX		1e6		/* an O_NUM option's largest value */

enum opt_type {
	O_FLAG,		/* no value; sets an int to 1 */
	O_STR,		/* a string */
	O_LIST,		/* repeatable string */
	O_UINT,		/* unsigned integer */
	O_SIZE,		/* bytes, with an optional K, M or G suffix (powers of 2) */
	O_SECS,		/* seconds, fractions allowed; stored in ms */
	O_NUM		/* a number 0..NUM_MAX, fractions allowed; a double */
};

struct list {
	const char *v[MAX_LISTEN];
	int n;
};

static struct ws_config wscfg = {
	.max_header = HTTP_MAX_HEADER,
	.max_message = WS_MAX_MESSAGE,
	.max_body = WS_MAX_BODY,
	.max_body_total = WS_MAX_BODY_TOTAL,
	.assembly_total = WS_ASSEMBLY_TOTAL,
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
	.history_total = HUB_HISTORY_TOTAL,
	.max_conn_groups = HUB_MAX_CONN_GROUPS,
	.max_groups = HUB_MAX_GROUPS,
	.json_depth = JSON_MAX_DEPTH,
	.tick_ms = HUB_TICK_MS,
	.session_ttl_ms = HUB_SESSION_TTL_MS,
	.max_sessions = HUB_MAX_SESSIONS,
	.max_metadata = HUB_MAX_METADATA,
};

static struct host_config hostcfg = {
	.disk_path = HOST_DISK_PATH,
};

static struct list	 listen_on, allow_origin, allow_host;
static const char	*token_secret, *token_secret_file, *api_key;
static int		 token_require_exp;
static int		 insecure;
static const char	*tls_cert, *tls_key;
static const char	*redis_url, *redis_ca;
static int		 no_session_events;
static const char	*log_format = "text", *log_level = "info", *log_file;
static int		 show_help, show_version;
static const char	*config_path;
static unsigned		 token_grace_ms = 300000;

/*
 * The options.  LIVE ones are applied again on SIGHUP, when the config
 * file changed them (reload()); a change to a RESTART one is logged as
 * needing a restart and not applied.
 */
#define LIVE	1
#define RESTART	0

static const struct opt {
	const char   *name;
	enum opt_type type;
	void         *dst;
	const char   *help;
	int           live;	/* LIVE: SIGHUP applies a new value */
} opts[] = {
	{ "listen", O_LIST, &listen_on,
	    "HOST:PORT to listen on, repeatable (127.0.0.1:8000)", RESTART },
	{ "echo", O_FLAG, &wscfg.echo,
	    "serve the RFC 6455 echo route /echo", RESTART },
	{ "subprotocol", O_STR, &wscfg.subprotocol,
	    "Sec-WebSocket-Protocol to accept when offered (none)", RESTART },
	{ "max-connections", O_UINT, &wscfg.max_connections,
	    "open connections; past it requests get 503 (10000)", LIVE },
	{ "max-header", O_SIZE, &wscfg.max_header,
	    "request line + headers bytes; past it 431 (8K)", LIVE },
	{ "max-body", O_SIZE, &wscfg.max_body,
	    "HTTP request body bytes; past it 413 (1M)", LIVE },
	{ "max-body-total", O_SIZE, &wscfg.max_body_total,
	    "bytes of request bodies being received, in all; past it 503 (64M)",
	    LIVE },
	{ "max-message", O_SIZE, &wscfg.max_message,
	    "WebSocket message bytes; past it close 1009 (1M)", LIVE },
	{ "assembly-total", O_SIZE, &wscfg.assembly_total,
	    "bytes of unfinished messages, in all; past it close 1013 (64M)",
	    LIVE },
	{ "send-queue", O_SIZE, &wscfg.send_queue,
	    "queued bytes per connection; past it close 1013 (4M)", LIVE },
	{ "handshake-timeout", O_SECS, &wscfg.handshake_ms,
	    "seconds for a request to arrive whole (10)", RESTART },
	{ "ping-interval", O_SECS, &wscfg.ping_interval_ms,
	    "seconds of silence before the server pings (25)", RESTART },
	{ "ping-timeout", O_SECS, &wscfg.ping_timeout_ms,
	    "seconds of silence before a peer is dropped (60)", RESTART },
	{ "drain", O_SECS, &wscfg.drain_ms,
	    "seconds to wait for close replies on shutdown (5)", LIVE },
	{ "history", O_UINT, &hubcfg.history,
	    "events kept per group for resume (1000)", LIVE },
	{ "history-bytes", O_SIZE, &hubcfg.history_bytes,
	    "bytes of events kept per group (1M)", LIVE },
	{ "history-total", O_SIZE, &hubcfg.history_total,
	    "bytes of events kept in all groups together (256M)", LIVE },
	{ "max-groups", O_UINT, &hubcfg.max_groups,
	    "groups in all (100000)", LIVE },
	{ "max-conn-groups", O_UINT, &hubcfg.max_conn_groups,
	    "groups one connection may join, at most 1024 (64)", LIVE },
	{ "json-depth", O_UINT, &hubcfg.json_depth,
	    "nesting depth of JSON messages (64)", LIVE },
	{ "tick", O_SECS, &hubcfg.tick_ms,
	    "seconds between session diffs and realtime_update (3)", RESTART },
	{ "no-session-events", O_FLAG, &no_session_events,
	    "turn the session diff off", RESTART },
	{ "session-ttl", O_SECS, &hubcfg.session_ttl_ms,
	    "seconds a connection-made session outlives its last client (5)",
	    RESTART },
	{ "max-sessions", O_UINT, &hubcfg.max_sessions,
	    "sessions in all (100000)", LIVE },
	{ "max-metadata", O_SIZE, &hubcfg.max_metadata,
	    "bytes of one session's metadata; past it 413 (16K)", LIVE },
	{ "disk-path", O_STR, &hostcfg.disk_path,
	    "file system whose size and free space are reported (/)", LIVE },
	{ "alert-cpu", O_NUM, &hostcfg.cpu_pct,
	    "system_alert over this CPU, % of one core (0: off)", LIVE },
	{ "alert-rss", O_SIZE, &hostcfg.rss_bytes,
	    "system_alert over this resident memory (0: off)", LIVE },
	{ "alert-fds", O_UINT, &hostcfg.fds,
	    "system_alert over this many open fds (0: off)", LIVE },
	{ "alert-load", O_NUM, &hostcfg.load,
	    "system_alert over this 1-minute load average (0: off)", LIVE },
	{ "alert-mem-free", O_NUM, &hostcfg.mem_free_pct,
	    "system_alert under this % of host memory available (0: off)",
	    LIVE },
	{ "alert-disk-free", O_NUM, &hostcfg.disk_free_pct,
	    "system_alert under this % of --disk-path free (0: off)", LIVE },
	{ "token-secret", O_STR, &token_secret,
	    "HS256 secret: WebSocket clients need a JWT (none)", LIVE },
	{ "token-secret-file", O_STR, &token_secret_file,
	    "read the token secret from this file", LIVE },
	{ "token-grace", O_SECS, &token_grace_ms,
	    "seconds the old token secret still works after a reload (300)",
	    LIVE },
	{ "token-require-exp", O_FLAG, &token_require_exp,
	    "refuse tokens without exp (by default they never expire)", LIVE },
	{ "api-key", O_STR, &api_key,
	    "Bearer key for mutating HTTP calls and /metrics (none)", LIVE },
	{ "allow-origin", O_LIST, &allow_origin,
	    "browser Origin allowed to connect, repeatable (same origin)",
	    LIVE },
	{ "allow-host", O_LIST, &allow_host,
	    "Host name wsd answers to without secrets, repeatable (IP, localhost)",
	    LIVE },
	{ "publish-rate", O_UINT, &hubcfg.publish_rate,
	    "publish messages per second per connection (0: no limit)", LIVE },
	{ "tls-cert", O_STR, &tls_cert,
	    "PEM certificate chain: the listeners speak TLS (wss, https)",
	    RESTART },
	{ "tls-key", O_STR, &tls_key, "PEM private key for --tls-cert",
	    RESTART },
	{ "redis", O_STR, &redis_url,
	    "redis:// or rediss:// URL: nodes on the same Redis are one hub "
	    "(none)", RESTART },
	{ "redis-ca", O_STR, &redis_ca,
	    "PEM CA file to verify a rediss:// server with (system CAs)",
	    RESTART },
	{ "insecure", O_FLAG, &insecure,
	    "listen beyond loopback without a token secret or API key",
	    RESTART },
	{ "log-format", O_STR, &log_format, "text or json (text)", LIVE },
	{ "log-level", O_STR, &log_level, "debug, info, warn, error (info)",
	    LIVE },
	{ "log-file", O_STR, &log_file,
	    "log to this file instead of stderr; SIGHUP reopens it", RESTART },
	{ "config", O_STR, &config_path,
	    "read options from this file; SIGHUP reads it again (none)",
	    RESTART },
	{ "help", O_FLAG, &show_help, "this text (also -h)", RESTART },
	{ "version", O_FLAG, &show_version, "the version", RESTART },
};

#define NOPTS (sizeof opts / sizeof opts[0])

/*
 * Where each option's value came from, lowest precedence first: a source
 * sets an option only when no higher one has, so the order in which they
 * are read does not matter, and SIGHUP can put back to its default
 * whatever only the file had set.
 */
enum opt_src { FROM_DEFAULT, FROM_FILE, FROM_ENV, FROM_ARGV };

static uint8_t	 opt_src[NOPTS];

/* One option's value, for the defaults and the running values a reload
 * compares and may have to put back. */
union optval {
	int	     i;
	const char  *s;
	struct list  l;
	unsigned     u;
	size_t	     z;
	double	     d;
};

static union optval	 defaults[NOPTS];
static struct list	 listen_given;	/* --listen as given, for reload */
static char		*boot_text, *live_text;	/* the file's text, see reload() */

static void
usage(FILE *f)
{
	fprintf(f, "usage: wsd [--option value ...]\n"
	    "Every option is also read from WSD_NAME (e.g. --max-message is\n"
	    "WSD_MAX_MESSAGE) and from the --config file (\"max-message ="
	    " 1M\");\nthe flag wins, then the variable, then the file.\n\n");
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


/*
 * Set one option from its text.  from is the environment variable or the
 * config file's name it came from, or NULL for the command line; the
 * error, written to err, names it.
 */
static int
set_opt(const struct opt *o, const char *val, const char *from, char *err,
    size_t errcap)
{
	char *end, flag[64], host[256], port[6];
	const char *why = "";
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

		if (l->n == MAX_LISTEN) {
			why = " (too many)";
			goto bad;
		}
		if (l == &listen_on && loop_split_hostport(val, host, port) == -1) {
			why = " (expected HOST:PORT, port 0-65535)";
			goto bad;
		}
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
	case O_NUM:
		errno = 0;
		d = strtod(val, &end);
		if (errno != 0 || end == val || *end != '\0' || !(d >= 0) ||
		    d > NUM_MAX)
			goto bad;
		*(double *)o->dst = d;
		return 0;
	}
bad:
	if (from == NULL)
		snprintf(flag, sizeof flag, "--%s", o->name);
	snprintf(err, errcap, "bad value for %s: %.64s%s",
	    from != NULL ? from : flag, val ? val : "", why);
	return -1;
}

static void
env_name(const struct opt *o, char *env, size_t cap)
{
	size_t k;

	snprintf(env, cap, "WSD_");
	for (k = 0; o->name[k] && k + 5 < cap; k++)
		env[4 + k] = o->name[k] == '-' ? '_' :
		    toupper((unsigned char)o->name[k]);
	env[4 + k] = '\0';
}

static void
opt_save(const struct opt *o, union optval *v)
{
	switch (o->type) {
	case O_FLAG:	v->i = *(int *)o->dst; break;
	case O_STR:	v->s = *(const char **)o->dst; break;
	case O_LIST:	v->l = *(struct list *)o->dst; break;
	case O_UINT:
	case O_SECS:	v->u = *(unsigned *)o->dst; break;
	case O_SIZE:	v->z = *(size_t *)o->dst; break;
	case O_NUM:	v->d = *(double *)o->dst; break;
	}
}

static void
opt_load(const struct opt *o, const union optval *v)
{
	switch (o->type) {
	case O_FLAG:	*(int *)o->dst = v->i; break;
	case O_STR:	*(const char **)o->dst = v->s; break;
	case O_LIST:	*(struct list *)o->dst = v->l; break;
	case O_UINT:
	case O_SECS:	*(unsigned *)o->dst = v->u; break;
	case O_SIZE:	*(size_t *)o->dst = v->z; break;
	case O_NUM:	*(double *)o->dst = v->d; break;
	}
}

static int
str_equal(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* 1 if option o holds the value v. */
static int
opt_equal(const struct opt *o, const union optval *v)
{
	union optval now;

	opt_save(o, &now);
	switch (o->type) {
	case O_FLAG:	return now.i == v->i;
	case O_STR:	return str_equal(now.s, v->s);
	case O_UINT:
	case O_SECS:	return now.u == v->u;
	case O_SIZE:	return now.z == v->z;
	case O_NUM:	return now.d == v->d;
	case O_LIST:
		if (now.l.n != v->l.n)
			return 0;
		for (int k = 0; k < now.l.n; k++)
			if (!str_equal(now.l.v[k], v->l.v[k]))
				return 0;
		return 1;
	}
	return 0;
}

/* The file's text holds secrets: wiped before it goes. */
static void
text_free(char *text)
{
	if (text != NULL) {
		OPENSSL_cleanse(text, strlen(text));
		free(text);
	}
}

/*
 * Read the --config file and set, from its lines, every option that
 * neither the command line nor the environment set (they win).  A line
 * is "name = value" or "name value" (name: a long option without "--"),
 * or a switch's name alone; a line whose first character that is not
 * blank is '#' is a comment, and blank lines are skipped.  A list option
 * takes one value a line, its name repeated.  The values point into the
 * file's text, returned in *text (the caller keeps it while they are
 * used).  0, or -1 with "FILE:LINE: why" in err and nothing kept.
 */
static int
load_config(const char *path, char **text, char *err, size_t errcap)
{
	char *buf = NULL, *line, *next, why[256];
	int lineno = 0, fd;
	struct stat st;
	size_t n = 0;
	ssize_t r;

	/* Only a regular file: a FIFO or a device would block the loop on
	 * SIGHUP (O_NONBLOCK keeps even the open from waiting), and a read
	 * error is an error, not an empty file. */
	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) == -1 ||
	    fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, errcap, "%.200s: %s", path, fd == -1 ||
		    S_ISREG(st.st_mode) ? strerror(errno) :
		    "not a regular file");
		if (fd != -1)
			close(fd);
		return -1;
	}
	if ((buf = malloc(CONFIG_MAX + 1)) == NULL) {
		close(fd);
		snprintf(err, errcap, "%.200s: out of memory", path);
		return -1;
	}
	while (n <= CONFIG_MAX && (r = read(fd, buf + n,
	    CONFIG_MAX + 1 - n)) != 0) {
		if (r == -1) {
			if (errno == EINTR)
				continue;
			snprintf(err, errcap, "%.200s: %s", path,
			    strerror(errno));
			close(fd);
			free(buf);
			return -1;
		}
		n += r;
	}
	close(fd);
	buf[n > CONFIG_MAX ? CONFIG_MAX : n] = '\0';
	if (n > CONFIG_MAX || strlen(buf) != n) {
		snprintf(why, sizeof why, n > CONFIG_MAX ? "over %u bytes" :
		    "a NUL byte", CONFIG_MAX);
		goto fail;
	}
	for (line = buf; line != NULL; line = next) {
		const struct opt *o = NULL;
		char *name, *val, *end;
		size_t nl;

		lineno++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		end = line + strlen(line);
		while (end > line && isspace((unsigned char)end[-1]))
			*--end = '\0';
		while (isspace((unsigned char)*line))
			line++;
		if (*line == '\0' || *line == '#')
			continue;
		name = line;
		nl = strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-");
		val = name + nl;
		if (nl == 0 || (*val != '\0' && *val != '=' &&
		    !isspace((unsigned char)*val))) {
			snprintf(why, sizeof why, "expected NAME = VALUE");
			goto fail;
		}
		val += strspn(val, " \t");
		if (*val == '=')
			val += 1 + strspn(val + 1, " \t");
		name[nl] = '\0';
		for (size_t i = 0; i < NOPTS; i++)
			if (strcmp(opts[i].name, name) == 0)
				o = &opts[i];
		if (o == NULL) {
			snprintf(why, sizeof why, "unknown option %.64s", name);
			goto fail;
		}
		if (o->dst == &config_path || o->dst == &show_help ||
		    o->dst == &show_version) {
			snprintf(why, sizeof why, "%s has no place in a config "
			    "file", name);
			goto fail;
		}
		if (*val == '\0' && o->type != O_FLAG) {
			snprintf(why, sizeof why, "%s needs a value", name);
			goto fail;
		}
		if (opt_src[o - opts] > FROM_FILE)
			continue;
		if (o->type == O_LIST && opt_src[o - opts] < FROM_FILE)
			((struct list *)o->dst)->n = 0;
		if (set_opt(o, *val ? val : NULL, name, why, sizeof why) == -1)
			goto fail;
		opt_src[o - opts] = FROM_FILE;
	}
	*text = buf;
	return 0;
fail:
	snprintf(err, errcap, "%.200s:%d: %s", path, lineno, why);
	text_free(buf);
	return -1;
}

/*
 * WSD_NAME for each option, then the command line (which wins).  A list
 * option's variable holds comma-separated values and applies only when
 * the flag is not given at all.  The --config file comes after both
 * (load_config()), for what neither set.
 */
static int
parse_options(int argc, char **argv)
{
	char err[256];

	for (size_t i = 0; i < NOPTS; i++)
		opt_save(&opts[i], &defaults[i]);
	for (size_t i = 0; i < NOPTS; i++) {
		char env[64];
		const char *v;

		env_name(&opts[i], env, sizeof env);
		if ((v = getenv(env)) == NULL || opts[i].type == O_LIST)
			continue;
		if (set_opt(&opts[i], v, env, err, sizeof err) == -1)
			goto bad;
		opt_src[i] = FROM_ENV;
	}
	for (int a = 1; a < argc; a++) {
		const char *arg = argv[a], *val = NULL, *eq;
		const struct opt *o = NULL;
		size_t n;

		if (strcmp(arg, "-h") == 0) {
			show_help = 1;
			continue;
		}
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
		if (set_opt(o, val, NULL, err, sizeof err) == -1)
			goto bad;
		opt_src[o - opts] = FROM_ARGV;
	}
	for (size_t i = 0; i < NOPTS; i++) {
		struct list *l = opts[i].dst;
		char env[64], *copy, *save, *tok;
		const char *v;

		env_name(&opts[i], env, sizeof env);
		if (opts[i].type != O_LIST || l->n > 0 ||
		    (v = getenv(env)) == NULL)
			continue;
		if ((copy = strdup(v)) == NULL)
			return -1;
		for (tok = strtok_r(copy, ",", &save); tok != NULL;
		    tok = strtok_r(NULL, ",", &save))
			if (set_opt(&opts[i], tok, env, err, sizeof err) == -1)
				goto bad;
		opt_src[i] = FROM_ENV;
	}
	return 0;
bad:
	fprintf(stderr, "wsd: %s\n", err);
	return -1;
}

/*
 * Keep a secret in memory of our own and wipe the copy that came from the
 * command line, the environment or the config file's text, so it does not
 * linger in /proc or in memory.  0, or -1 with the reason in err.
 */
static int
take_secret(const char *src, const char *file, const uint8_t **out,
    size_t *len, char *err, size_t errcap)
{
	char buf[4096];
	uint8_t *s;
	size_t n;

	if (file != NULL) {
		FILE *f = fopen(file, "re");

		if (f == NULL) {
			snprintf(err, errcap, "cannot read %.200s: %s", file,
			    strerror(errno));
			return -1;
		}
		n = fread(buf, 1, sizeof buf, f);
		fclose(f);
		if (n == sizeof buf) {
			/* Not silently cut: a longer secret is refused. */
			OPENSSL_cleanse(buf, sizeof buf);
			snprintf(err, errcap, "%.200s: secret over %zu bytes",
			    file, sizeof buf - 1);
			return -1;
		}
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			n--;
		src = buf;
	} else if (src == NULL)
		return 0;
	else
		n = strlen(src);
	if (n == 0 || (s = malloc(n)) == NULL) {
		snprintf(err, errcap, "empty secret");
		return -1;
	}
	memcpy(s, src, n);
	OPENSSL_cleanse((void *)src, n);
	*out = s;
	*len = n;
	return 0;
}

/* A secret in memory of our own; same: left as it is (see read_secrets). */
struct secret {
	const uint8_t *p;
	size_t	       n;
	int	       same;
};

static void
secret_free(struct secret *s)
{
	if (s->p != NULL) {
		OPENSSL_cleanse((void *)s->p, s->n);
		free((void *)s->p);
	}
	s->p = NULL;
	s->n = 0;
}

/*
 * The token secret (--token-secret, or --token-secret-file, read again
 * each time) and the API key, each NULL when not set.  Again (a reload):
 * a secret given on the command line or in the environment was wiped at
 * start and cannot have changed, so it is not read (same is set).  0, or
 * -1 with the reason in err and nothing kept.
 */
static int
read_secrets(int again, struct secret *tok, struct secret *key, char *err,
    size_t errcap)
{
	size_t it = 0, ik = 0;

	for (size_t i = 0; i < NOPTS; i++) {
		if (opts[i].dst == &token_secret)
			it = i;
		if (opts[i].dst == &api_key)
			ik = i;
	}
	tok->same = again && token_secret_file == NULL &&
	    opt_src[it] >= FROM_ENV;
	key->same = again && opt_src[ik] >= FROM_ENV;
	if (!tok->same && take_secret(token_secret, token_secret_file,
	    &tok->p, &tok->n, err, errcap) == -1)
		return -1;
	if (tok->p != NULL && tok->n < AUTH_MIN_SECRET) {
		/* RFC 7518 §3.2: an HS256 key at least as long as the hash. */
		snprintf(err, errcap, "the token secret needs at least 32 "
		    "bytes");
		secret_free(tok);
		return -1;
	}
	if (!key->same && take_secret(api_key, NULL, &key->p, &key->n, err,
	    errcap) == -1) {
		secret_free(tok);
		return -1;
	}
	return 0;
}

/* 127.0.0.0/8, ::1, or 127.0.0.0/8 mapped into IPv6; a wildcard is not. */
static int
is_loopback(const struct sockaddr *sa)
{
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

	if (sa->sa_family == AF_INET)
		return ntohl(s4->sin_addr.s_addr) >> 24 == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr) ||
		    (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) &&
		    s6->sin6_addr.s6_addr[12] == 127);
	return 0;
}

/*
 * Resolve every listener before starting, as ws_listen() does (it binds
 * the first address).  Protected mode: with neither a token secret nor an
 * API key, anyone who can reach the port can read and publish everything,
 * so wsd stays on loopback unless told --insecure.  Loopback is decided by
 * every address the host resolves to, not by its spelling: a name such as
 * "127.evil.example" may resolve anywhere.  The listener then goes to
 * ws_listen() as the numeric address checked here, so the name cannot
 * resolve to another address between this check and the bind.
 */
static int
check_listeners(void)
{
	static char numeric[MAX_LISTEN][NI_MAXHOST + 8];
	int protect = hubcfg.token_secret == NULL && hubcfg.api_key == NULL &&
	    !insecure;

	for (int i = 0; i < listen_on.n; i++) {
		struct addrinfo hints = { 0 }, *res = NULL, *ai;
		char host[256], port[6], num[NI_MAXHOST];
		int err;

		if (loop_split_hostport(listen_on.v[i], host, port) == -1) {
			fprintf(stderr, "wsd: bad value for --listen: %.64s "
			    "(expected HOST:PORT)\n", listen_on.v[i]);
			return -1;
		}
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
		if ((err = getaddrinfo(host[0] ? host : NULL, port, &hints,
		    &res)) != 0) {
			fprintf(stderr, "wsd: cannot resolve --listen %.64s: %s\n",
			    listen_on.v[i], gai_strerror(err));
			return -1;
		}
		for (ai = res; protect && ai != NULL; ai = ai->ai_next)
			if (!is_loopback(ai->ai_addr))
				break;
		if (protect && ai != NULL) {
			fprintf(stderr, "wsd: refusing to listen on %.64s: it is "
			    "not loopback, and without --token-secret or "
			    "--api-key anyone could read and publish (protected "
			    "mode); add --insecure to do it anyway\n",
			    listen_on.v[i]);
			freeaddrinfo(res);
			return -1;
		}
		err = getnameinfo(res->ai_addr, res->ai_addrlen, num, sizeof num,
		    NULL, 0, NI_NUMERICHOST);
		freeaddrinfo(res);
		if (err != 0) {
			fprintf(stderr, "wsd: cannot resolve --listen %.64s: %s\n",
			    listen_on.v[i], gai_strerror(err));
			return -1;
		}
		snprintf(numeric[i], sizeof numeric[i], strchr(num, ':') ?
		    "[%s]:%s" : "%s:%s", num, port);
		listen_on.v[i] = numeric[i];
	}
	return 0;
}

/* Limits that cannot work together are refused at start, not at 3 a.m. */
static int
check_options(char *err, size_t errcap)
{
	const char *why = NULL;
	struct statvfs sv;

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
	else if (hubcfg.max_conn_groups == 0 || hubcfg.max_conn_groups > 1024)
		why = "--max-conn-groups must be 1..1024";
	else if (log_format_from(log_format) == -1)
		why = "--log-format must be text or json";
	else if (log_level_from(log_level) == -1)
		why = "--log-level must be debug, info, warn or error";
	else if (hostcfg.cpu_pct > 100)
		why = "--alert-cpu must be 0..100 (percent of one core)";
	else if (hostcfg.mem_free_pct > 100)
		why = "--alert-mem-free must be 0..100 (percent)";
	else if (hostcfg.disk_free_pct > 100)
		why = "--alert-disk-free must be 0..100 (percent)";
	else if (strlen(hostcfg.disk_path) >= HOST_PATH_MAX)
		why = "--disk-path must be under 1024 bytes";
	if (why != NULL) {
		snprintf(err, errcap, "%s", why);
		return -1;
	}
	/* A path that names nothing is a typo: said now, not a null figure
	 * in every realtime_update. */
	if (statvfs(hostcfg.disk_path, &sv) == -1) {
		snprintf(err, errcap, "--disk-path %.200s: %s",
		    hostcfg.disk_path, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * systemd's watchdog (WatchdogSec=): WATCHDOG=1 from a timer of the loop
 * itself, at half the interval asked for, so a stuck loop stops it.
 */
static void
on_watchdog(void *arg)
{
	(void)arg;
	notify_watchdog();
}

static int
start_watchdog(void)
{
	uint64_t ms = notify_watchdog_usec() / 2000;

	if (notify_watchdog_usec() == 0)
		return 0;
	if (ms == 0)
		ms = 1;
	if (ms > 86400000)
		ms = 86400000;
	return loop_timer((unsigned)ms, on_watchdog, NULL);
}

/*
 * SIGHUP: read the config file again (and the token secret file) and
 * apply what may change while running.  Every option that only the file
 * set goes back to its default first, so a line taken out of the file
 * counts too; the command line and the environment still win.  A file
 * that does not parse, limits that do not work together or a secret that
 * cannot be read refuse the whole reload: nothing changes.  Otherwise
 * each LIVE option goes to its layer's setter; any other that changed is
 * logged as needing a restart and keeps its running value, as does
 * turning the token secret or the API key on or off (that decides
 * protected mode and the Host check, made at start).
 *
 * Values point into the file's text.  Options that are not LIVE keep
 * their values from the start, so boot_text stays; the LIVE ones are all
 * set again here, so the text of the reload before (live_text) can go.
 */
static uint8_t redis_digest[SHA256_DIGEST_LENGTH];	/* of --redis */

/* 1 if url (NULL: none) is the --redis wsd started with. */
static int
redis_same(const char *url)
{
	uint8_t md[SHA256_DIGEST_LENGTH] = { 0 };

	if (url != NULL)
		SHA256((const uint8_t *)url, strlen(url), md);
	return CRYPTO_memcmp(md, redis_digest, sizeof md) == 0;
}

static void
reload(void)
{
	static union optval old[NOPTS];
	uint8_t old_src[NOPTS];
	struct secret tok = { 0 }, key = { 0 };
	char err[512], *text = NULL;
	int changed = 0;

	if (config_path == NULL && token_secret_file == NULL)
		return;
	for (size_t i = 0; i < NOPTS; i++) {
		opt_save(&opts[i], &old[i]);
		old_src[i] = opt_src[i];
		if (opt_src[i] <= FROM_FILE) {
			opt_load(&opts[i], &defaults[i]);
			opt_src[i] = FROM_DEFAULT;
		}
	}
	if ((config_path != NULL && load_config(config_path, &text, err,
	    sizeof err) == -1) || check_options(err, sizeof err) == -1 ||
	    read_secrets(1, &tok, &key, err, sizeof err) == -1) {
		for (size_t i = 0; i < NOPTS; i++) {
			opt_load(&opts[i], &old[i]);
			opt_src[i] = old_src[i];
		}
		text_free(text);
		log_msg(LOG_ERROR, "config reload refused, settings unchanged: "
		    "%s", err);
		return;
	}
	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt *o = &opts[i];
		union optval was = old[i];

		/* Secrets go by what they hold, below; never named here. */
		if (o->dst == &token_secret || o->dst == &token_secret_file ||
		    o->dst == &api_key)
			continue;
		/* --redis was wiped where it came from (its password): a
		 * file's value is told from the running one by its digest;
		 * the command line's and the environment's cannot change. */
		if (o->dst == &redis_url) {
			if (opt_src[i] == FROM_FILE ? !redis_same(redis_url) :
			    old_src[i] == FROM_FILE)
				log_msg(LOG_WARN, "needs a restart: redis");
			opt_load(o, &old[i]);
			opt_src[i] = old_src[i];
			continue;
		}
		/* Listeners run on the addresses resolved from these. */
		if (o->dst == &listen_on)
			was.l = listen_given;
		if (opt_equal(o, &was)) {
			if (!o->live)
				opt_load(o, &old[i]);
		} else if (o->live) {
			changed++;
			log_msg(LOG_INFO, "config changed option=%s", o->name);
		} else {
			log_msg(LOG_WARN, "needs a restart: %s", o->name);
			opt_load(o, &old[i]);
		}
	}
	if (!tok.same && (tok.p != NULL) != (hubcfg.token_secret != NULL)) {
		log_msg(LOG_WARN, "needs a restart: token-secret");
		secret_free(&tok);
		tok.same = 1;
	}
	if (!key.same && (key.p != NULL) != (hubcfg.api_key != NULL)) {
		log_msg(LOG_WARN, "needs a restart: api-key");
		secret_free(&key);
		key.same = 1;
	}
	if ((!tok.same && routes_set_token_secret(tok.p, tok.n,
	    token_grace_ms) == -1) || (!key.same && routes_set_api_key(key.p,
	    key.n) == -1) || routes_set_allow(allow_origin.v, allow_origin.n,
	    allow_host.v, allow_host.n) == -1)
		log_msg(LOG_ERROR, "config reload: out of memory");
	secret_free(&tok);
	secret_free(&key);
	ws_set_limits(&wscfg);
	hub_set_limits(&hubcfg);
	host_set_config(&hostcfg);
	auth_require_exp(token_require_exp);
	log_set_format(log_format);
	log_set_level(log_level);
	text_free(live_text);
	live_text = text;
	log_msg(LOG_INFO, "config reloaded changed=%d", changed);
}

static void
on_hup(void)
{
	log_reopen();
	tls_reload();
	reload();
}

/*
 * --redis: the nodes on one Redis are one hub.  A bad URL or a host that
 * does not resolve stops wsd here (status 2); an unreachable Redis does
 * not: wsd starts, says so, retries with backoff, and /readyz answers 503
 * until Redis does.  The URL's password is wiped where it came from.
 */
static int
start_cluster(void)
{
	struct cluster_config cc = { .url = redis_url, .ca_file = redis_ca,
	    .on_up = sess_cluster_up };
	char err[512];
	int rc = csess_init() == 0 ? cluster_init(&cc, err, sizeof err) :
	    (snprintf(err, sizeof err, "out of script slots"), -1);

	SHA256((const uint8_t *)redis_url, strlen(redis_url), redis_digest);
	OPENSSL_cleanse((void *)redis_url, strlen(redis_url));
	if (rc == -1) {
		fprintf(stderr, "wsd: --redis: %s\n", err);
		return -1;
	}
	hub_cluster_start();
	return 0;
}

int
main(int argc, char **argv)
{
	struct secret tok = { 0 }, key = { 0 };
	char err[512];
	int rc;

	/* wsd pub|sub|token|help: the client (cli.c), not the server. */
	if (argc > 1 && cli_is_command(argv[1]))
		return cli_main(argc - 1, argv + 1);
	if (parse_options(argc, argv) == -1)
		return 2;
	if ((config_path != NULL && load_config(config_path, &boot_text, err,
	    sizeof err) == -1) || check_options(err, sizeof err) == -1) {
		fprintf(stderr, "wsd: %s\n", err);
		return 2;
	}
	if (show_help) {
		usage(stdout);
		return 0;
	}
	if (show_version) {
		printf("wsd %s\n", WSD_VERSION);
		return 0;
	}
	log_set_format(log_format);
	log_set_level(log_level);
	if (log_file != NULL && log_set_file(log_file) == -1) {
		fprintf(stderr, "wsd: cannot open log file %.200s: %s\n",
		    log_file, strerror(errno));
		return 1;
	}
	hubcfg.session_events = !no_session_events;
	listen_given = listen_on;
	if (listen_on.n == 0)
		listen_on.v[listen_on.n++] = "127.0.0.1:8000";
	hubcfg.allow_origin = allow_origin.v;
	hubcfg.nallow_origin = allow_origin.n;
	hubcfg.allow_host = allow_host.v;
	hubcfg.nallow_host = allow_host.n;
	if (read_secrets(0, &tok, &key, err, sizeof err) == -1) {
		fprintf(stderr, "wsd: %s\n", err);
		return 2;
	}
	hubcfg.token_secret = tok.p;
	hubcfg.token_secret_len = tok.n;
	hubcfg.api_key = key.p;
	hubcfg.api_key_len = key.n;
	if (check_listeners() == -1)
		return 2;
	auth_require_exp(token_require_exp);

	if ((tls_cert == NULL) != (tls_key == NULL)) {
		fprintf(stderr, "wsd: --tls-cert and --tls-key go together\n");
		return 2;
	}
	if (ws_init(&wscfg, &routes_handlers) == -1 || hub_init(&hubcfg) == -1 ||
	    routes_init() == -1 || host_init(&hostcfg) == -1 ||
	    sess_init() == -1 ||
	    (tls_cert != NULL && tls_init(tls_cert, tls_key) == -1))
		return 1;
	/* routes.c took copies; ours stay, wiped, as the marks of "tokens
	 * on" and "API key on" that hub_config() gives (hub.h). */
	if (tok.p != NULL)
		OPENSSL_cleanse((void *)tok.p, tok.n);
	if (key.p != NULL)
		OPENSSL_cleanse((void *)key.p, key.n);
	if (redis_url != NULL && start_cluster() == -1)
		return 2;
	for (int i = 0; i < listen_on.n; i++)
		if (ws_listen(listen_on.v[i]) == -1)
			return 1;
	log_msg(LOG_INFO, "wsd %s started", WSD_VERSION);
	if (start_watchdog() == -1)
		return 1;
	notify_ready();
	rc = ws_run(on_hup);
	cluster_free();
	return rc;
}
