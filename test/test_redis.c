/*
 * test_redis.c - redis.c against real redis-server processes it starts on
 * 127.0.0.1 and free ports, in a fresh temporary directory, through the
 * real reactor (loop.c).
 *
 * Covered: PING, SET/GET of binary data, error replies, a pipeline of
 * 10,000 commands answered in order, large replies, AUTH (password, user
 * and password, a wrong password reported and retried only with
 * backoff), SELECT (and a database the server refuses), the output
 * bound and the in-flight bound at N and N+1, a reply timeout, Redis
 * absent at start, pub/sub (channels, patterns, changes while up), a
 * redis-server killed and restarted on its port (commands in flight fail
 * with a reason, both clients come back, the subscriber resubscribes),
 * freeing from a callback, and rediss:// with a certificate made here by
 * the openssl command (the right CA accepted, a wrong CA, the system
 * store and a name mismatch refused).
 *
 * Every wait has a deadline.  Only the PIDs started here are killed, and
 * the directory is removed at the end (also on SIGTERM, which the loop
 * turns into its term hook).  Without redis-server the test fails, saying
 * so.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "redis.h"
#include "resp.h"
#include "t.h"

#ifndef REDIS_SERVER
#define REDIS_SERVER	"/usr/bin/redis-server"	/* Debian's */
#endif
#define MAXPIDS		16
#define PIPELINE	10000
#define MANY		600	/* channels subscribed besides two */

/* What a client's callbacks saw: state changes and messages. */
struct watch {
	int	 ups;
	int	 downs;
	int	 up;
	char	 why[256];
	int	 msgs;		/* messages, the last one copied */
	char	 pattern[64];
	char	 channel[64];
	uint8_t	 data[64];
	size_t	 len;
};

/* A command's answer, copied out of the callback. */
struct box {
	int	 done;
	int	 type;
	int	 null;
	int64_t	 n;
	uint8_t	*data;
	size_t	 len;
	char	 err[128];
};

static char	 tmp[64];		/* the temporary directory */
static pid_t	 pids[MAXPIDS];
static int	 npids;
static int	 stop_all;		/* SIGTERM: give up */
static int	 (*wait_cond)(void);
static uint64_t	 wait_deadline;
static const int *wait_p;
static int	 wait_want;

static void
fatal(const char *msg)
{
	fprintf(stderr, "test_redis: %s\n", msg);
	check(0);
}

/* ==== Processes and files ============================================ */

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(path);
}

static void
cleanup(void)
{
	for (int i = 0; i < npids; i++)
		if (pids[i] > 0) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
			pids[i] = 0;
		}
	if (tmp[0] != '\0')
		nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	tmp[0] = '\0';
}

/* A port nothing listens on now. */
static int
free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static int
port_open(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons(port);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Run argv (NULL-terminated) with the signals the loop blocked
 * unblocked, output to log; returns the PID, or -1. */
static pid_t
spawn(char *const argv[], const char *log)
{
	sigset_t none;
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Run a command to its end: 1 if it exited 0. */
static int
run(char *const argv[])
{
	char log[128];
	pid_t pid;
	int st;

	snprintf(log, sizeof log, "%s/commands.log", tmp);
	if ((pid = spawn(argv, log)) == -1 || waitpid(pid, &st, 0) == -1)
		return 0;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void	turn_for(unsigned);

/*
 * Start redis-server on 127.0.0.1 (and ::1 if there is one) with the
 * test's settings and extra; wait until port accepts.  The PID, or -1.
 */
static pid_t
server_start(int port, int tls_port, char *const extra[])
{
	char p[16], tp[16], log[128], *argv[64];
	int n = 0;
	pid_t pid;
	uint64_t until;

	snprintf(p, sizeof p, "%d", tls_port ? 0 : port);
	snprintf(tp, sizeof tp, "%d", tls_port);
	snprintf(log, sizeof log, "%s/redis-%d.log", tmp,
	    tls_port ? tls_port : port);
	argv[n++] = REDIS_SERVER;
	argv[n++] = "--port";
	argv[n++] = p;
	if (tls_port) {
		argv[n++] = "--tls-port";
		argv[n++] = tp;
	}
	argv[n++] = "--bind";
	argv[n++] = "127.0.0.1";
	argv[n++] = "-::1";		/* '-': skipped if unavailable */
	argv[n++] = "--dir";
	argv[n++] = tmp;
	argv[n++] = "--save";
	argv[n++] = "";
	argv[n++] = "--appendonly";
	argv[n++] = "no";
	argv[n++] = "--daemonize";
	argv[n++] = "no";
	for (int i = 0; extra != NULL && extra[i] != NULL && n < 62; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	if ((pid = spawn(argv, log)) == -1 || npids == MAXPIDS)
		return -1;
	pids[npids++] = pid;
	until = loop_now_ms() + 10000;
	while (!port_open(tls_port ? tls_port : port)) {
		if (loop_now_ms() > until ||
		    waitpid(pid, NULL, WNOHANG) == pid) {
			fprintf(stderr, "test_redis: redis-server on port %d "
			    "did not start; its log:\n", port);
			{
				char line[256];
				FILE *f = fopen(log, "r");

				while (f != NULL && fgets(line, sizeof line, f))
					fputs(line, stderr);
				if (f != NULL)
					fclose(f);
			}
			return -1;
		}
		turn_for(20);
	}
	return pid;
}

static void
server_kill(pid_t pid)
{
	for (int i = 0; i < npids; i++)
		if (pids[i] == pid && pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			pids[i] = 0;
		}
}

/* ==== Driving the loop ================================================ */

static int
h_timeout(void)
{
	return 10;
}

static void
h_nothing(void)
{
}

static void
h_term(void)
{
	stop_all = 1;
}

static int
h_done(void)
{
	if (stop_all || loop_now_ms() >= wait_deadline)
		return 1;
	if (wait_cond != NULL)
		return wait_cond();
	return wait_p != NULL && *wait_p >= wait_want;
}

static const struct loop_hooks hooks = {
	h_timeout, h_nothing, h_nothing, h_term, NULL, h_done
};

static void
run_loop(unsigned ms)
{
	wait_deadline = loop_now_ms() + ms;
	loop_run(&hooks);
	if (stop_all) {
		cleanup();
		fprintf(stderr, "test_redis: terminated\n");
		exit(1);
	}
	wait_cond = NULL;
	wait_p = NULL;
}

/* Turn the loop for ms, whatever happens. */
static void
turn_for(unsigned ms)
{
	wait_cond = NULL;
	wait_p = NULL;
	run_loop(ms);
}

/* Turn until *p >= want, at most ms.  1 if it got there. */
static int
wait_for(const int *p, int want, unsigned ms)
{
	wait_p = p;
	wait_want = want;
	run_loop(ms);
	return *p >= want;
}

/* ==== Callbacks ======================================================= */

static void
on_state(void *arg, int up, const char *why)
{
	struct watch *w = arg;

	w->up = up;
	if (up)
		w->ups++;
	else {
		w->downs++;
		snprintf(w->why, sizeof w->why, "%s", why);
	}
}

static void
on_reply(void *arg, const struct resp_tok *t, const char *err)
{
	struct box *b = arg;

	free(b->data);
	memset(b, 0, sizeof *b);
	b->done = 1;
	if (t == NULL) {
		snprintf(b->err, sizeof b->err, "%s", err);
		return;
	}
	b->type = t->type;
	b->null = t->null;
	b->n = t->n;
	if (t->type != RESP_T_INT && t->type != RESP_T_ARRAY && !t->null) {
		if ((b->data = malloc(t->n + 1)) == NULL)
			abort();
		memcpy(b->data, t->p, t->n);
		b->data[t->n] = '\0';
		b->len = t->n;
	}
}

static void
on_message(void *arg, const struct redis_msg *m)
{
	struct watch *in = arg;

	in->msgs++;
	snprintf(in->pattern, sizeof in->pattern, "%.*s",
	    (int)m->pattern_len, m->pattern ? (const char *)m->pattern : "");
	snprintf(in->channel, sizeof in->channel, "%.*s",
	    (int)m->channel_len, (const char *)m->channel);
	in->len = m->len < sizeof in->data ? m->len : sizeof in->data;
	memcpy(in->data, m->data, in->len);
}

/* The pipeline: reply i must be INCR's i + 1, in order. */
static int	pipe_next, pipe_bad;

static void
on_incr(void *arg, const struct resp_tok *t, const char *err)
{
	intptr_t i = (intptr_t)arg;

	if (t == NULL || err != NULL || t->type != RESP_T_INT ||
	    t->n != i + 1 || i != pipe_next)
		pipe_bad++;
	pipe_next++;
}

/* ECHO of big values: the reply must be the value sent. */
static int	echo_done, echo_bad;

static void
on_echo(void *arg, const struct resp_tok *t, const char *err)
{
	intptr_t i = (intptr_t)arg;
	size_t len = 1000 + 97 * (size_t)i;

	(void)err;
	if (t == NULL || t->type != RESP_T_BULK || (size_t)t->n != len)
		echo_bad++;
	else
		for (size_t k = 0; k < len; k++)
			if (t->p[k] != (uint8_t)(i + k)) {
				echo_bad++;
				break;
			}
	echo_done++;
}

/* Commands failed by a lost connection: in order, with a reason. */
static int	lost_n, lost_bad, lost_next;

static void
on_lost(void *arg, const struct resp_tok *t, const char *err)
{
	if (t != NULL || err == NULL || (intptr_t)arg != lost_next)
		lost_bad++;
	lost_next++;
	lost_n++;
}

/* A callback that frees its own client. */
static int	freed_in_cb;

static void
on_free_me(void *arg, const struct resp_tok *t, const char *err)
{
	(void)t;
	(void)err;
	redis_free(arg);
	freed_in_cb++;
}

/* ==== Helpers ========================================================= */

static struct redis *
client(const char *url, int sub, struct watch *w, struct redis_config *extra)
{
	struct redis_config c = { 0 };
	struct redis *r;
	char err[256];

	if (extra != NULL)
		c = *extra;
	c.url = url;
	c.subscriber = sub;
	c.on_state = on_state;
	c.on_message = on_message;
	c.arg = w;
	if (!c.backoff_min_ms)
		c.backoff_min_ms = 50;
	if (!c.backoff_max_ms)
		c.backoff_max_ms = 500;
	if ((r = redis_new(&c, err, sizeof err)) == NULL)
		fprintf(stderr, "test_redis: redis_new %s: %s\n", url, err);
	return r;
}

/* Send a command given as C strings; 0 or the REDIS_E* code. */
static int
cmd(struct redis *r, struct box *b, int argc, ...)
{
	struct resp_arg argv[16];
	va_list ap;

	va_start(ap, argc);
	for (int i = 0; i < argc && i < 16; i++) {
		argv[i].p = va_arg(ap, const char *);
		argv[i].n = strlen(argv[i].p);
	}
	va_end(ap);
	if (b != NULL) {
		free(b->data);
		memset(b, 0, sizeof *b);
	}
	return redis_command(r, argc, argv, b ? on_reply : NULL, b);
}

/* Send and wait for the answer: 1 if it came. */
static int
ask(struct redis *r, struct box *b, int argc, const char *a0,
    const char *a1, const char *a2)
{
	const char *v[3] = { a0, a1, a2 };
	struct resp_arg argv[3];

	for (int i = 0; i < argc; i++) {
		argv[i].p = v[i];
		argv[i].n = strlen(v[i]);
	}
	free(b->data);
	memset(b, 0, sizeof *b);
	if (redis_command(r, argc, argv, on_reply, b) != 0)
		return 0;
	return wait_for(&b->done, 1, 5000);
}

static int
box_is(const struct box *b, int type, const char *s)
{
	return b->done && b->type == type && b->data != NULL &&
	    b->len == strlen(s) && memcmp(b->data, s, b->len) == 0;
}

static void
box_free(struct box *b)
{
	free(b->data);
	memset(b, 0, sizeof *b);
}

/* ==== Commands ======================================================== */

static int	port_a;		/* killed and restarted */
static pid_t	pid_a;

static void
test_basic(struct redis *c)
{
	struct box b = { 0 };
	struct resp_arg argv[3];
	uint8_t key[12] = "bin\0key\r\n\xff";
	uint8_t val[256];
	struct redis_stats st;

	check(ask(c, &b, 1, "PING", NULL, NULL));
	check(box_is(&b, RESP_T_STRING, "PONG"));
	/* Binary key and value: every byte value, CR LF and NUL. */
	for (int i = 0; i < 256; i++)
		val[i] = i;
	argv[0] = (struct resp_arg){ "SET", 3 };
	argv[1] = (struct resp_arg){ key, sizeof key };
	argv[2] = (struct resp_arg){ val, sizeof val };
	box_free(&b);
	check(redis_command(c, 3, argv, on_reply, &b) == 0);
	check(wait_for(&b.done, 1, 5000) && box_is(&b, RESP_T_STRING, "OK"));
	argv[0] = (struct resp_arg){ "GET", 3 };
	box_free(&b);
	check(redis_command(c, 2, argv, on_reply, &b) == 0);
	check(wait_for(&b.done, 1, 5000) && b.type == RESP_T_BULK &&
	    b.len == sizeof val && memcmp(b.data, val, sizeof val) == 0);
	/* A missing key is a null bulk string; an unknown command an
	 * error reply, counted. */
	check(ask(c, &b, 2, "GET", "no-such-key", NULL));
	check(b.type == RESP_T_BULK && b.null);
	redis_stats(c, &st);
	check(ask(c, &b, 1, "NO-SUCH-COMMAND", NULL, NULL));
	check(b.type == RESP_T_ERROR && b.len > 4 &&
	    memcmp(b.data, "ERR ", 4) == 0);
	{
		struct redis_stats st2;

		redis_stats(c, &st2);
		check(st2.errors == st.errors + 1);
		check(st2.replies == st.replies + 1);
	}
	/* An integer and an array. */
	check(ask(c, &b, 3, "RPUSH", "list", "a"));
	check(b.type == RESP_T_INT && b.n == 1);
	check(cmd(c, &b, 4, "LRANGE", "list", "0", "-1") == 0 &&
	    wait_for(&b.done, 1, 5000));
	check(b.type == RESP_T_ARRAY && b.n == 1 && !b.null);
	box_free(&b);
	/* The subscriber's API, and commands that would unpair replies
	 * from commands, are refused on a command client. */
	check(redis_subscribe(c, "x", 1) == REDIS_EMODE);
	check(cmd(c, &b, 2, "subscribe", "x") == REDIS_EMODE);
	check(cmd(c, &b, 1, "MONITOR") == REDIS_EMODE);
	check(!b.done);
}

static void
test_pipeline(struct redis *c)
{
	struct box b = { 0 };
	struct resp_arg argv[2] = { { "INCR", 4 }, { "pipe-counter", 12 } };
	struct redis_stats st0, st;
	int queued = 0;

	check(ask(c, &b, 2, "DEL", "pipe-counter", NULL));
	redis_stats(c, &st0);
	pipe_next = pipe_bad = 0;
	/* All 10,000 queued in one turn, before any is written. */
	for (intptr_t i = 0; i < PIPELINE; i++)
		queued += redis_command(c, 2, argv, on_incr, (void *)i) == 0;
	check(queued == PIPELINE);
	redis_stats(c, &st);
	check(st.inflight == PIPELINE);
	check(st.queued_bytes == (uint64_t)PIPELINE * resp_cmd_size(2, argv));
	check(wait_for(&pipe_next, PIPELINE, 20000));
	check(pipe_bad == 0);
	redis_stats(c, &st);
	check(st.commands - st0.commands == PIPELINE);
	check(st.replies - st0.replies == PIPELINE);
	check(st.inflight == 0 && st.queued_bytes == 0);

	/* Big replies, pipelined: 200 ECHOs of 1,000 to 20,303 bytes. */
	{
		static uint8_t v[1000 + 97 * 200];
		struct resp_arg e[2] = { { "ECHO", 4 }, { v, 0 } };

		echo_done = echo_bad = 0;
		for (intptr_t i = 0; i < 200; i++) {
			e[1].n = 1000 + 97 * i;
			for (size_t k = 0; k < e[1].n; k++)
				v[k] = (uint8_t)(i + k);
			check(redis_command(c, 2, e, on_echo, (void *)i) == 0);
		}
		check(wait_for(&echo_done, 200, 20000));
		check(echo_bad == 0);
	}
	box_free(&b);
}

/* The output bound and the in-flight bound at N and N+1. */
static void
test_bounds(void)
{
	struct redis_config cfg = { 0 };
	struct watch w = { 0 };
	struct redis *r;
	struct box b = { 0 }, b2 = { 0 };
	static uint8_t v[2000];
	struct resp_arg argv[3] = { { "SET", 3 }, { "k", 1 }, { v, 0 } };
	struct redis_stats st;
	char url[64];

	snprintf(url, sizeof url, "redis://127.0.0.1:%d", port_a);
	cfg.max_out = 1000;
	cfg.max_inflight = 5;
	if ((r = client(url, 0, &w, &cfg)) == NULL) {
		check(0);
		return;
	}
	check(wait_for(&w.ups, 1, 5000));
	memset(v, 'v', sizeof v);
	while (resp_cmd_size(3, argv) < 1000)
		argv[2].n++;
	check(resp_cmd_size(3, argv) == 1000);
	/* Exactly max_out bytes: taken; one more byte of any command: no. */
	check(redis_command(r, 3, argv, on_reply, &b) == 0);
	redis_stats(r, &st);
	check(st.queued_bytes == 1000 && st.full == 0);
	check(cmd(r, &b2, 1, "PING") == REDIS_EFULL);
	redis_stats(r, &st);
	check(st.full == 1);
	check(wait_for(&b.done, 1, 5000) && box_is(&b, RESP_T_STRING, "OK"));
	check(!b2.done);	/* a refused command has no callback */
	/* One command over max_out alone is refused even when empty. */
	argv[2].n++;
	check(redis_command(r, 3, argv, on_reply, &b) == REDIS_EFULL);
	redis_stats(r, &st);
	check(st.full == 2 && st.queued_bytes == 0);
	/* max_inflight = 5: five taken, the sixth refused. */
	{
		struct box p[6];

		memset(p, 0, sizeof p);
		for (int i = 0; i < 5; i++)
			check(cmd(r, &p[i], 1, "PING") == 0);
		check(cmd(r, &p[5], 1, "PING") == REDIS_EFULL);
		redis_stats(r, &st);
		check(st.full == 3 && st.inflight == 5);
		check(wait_for(&p[4].done, 1, 5000));
		for (int i = 0; i < 6; i++)
			box_free(&p[i]);
	}
	box_free(&b);
	box_free(&b2);
	redis_free(r);
}

/* A reply that does not come within timeout_ms fails the command and the
 * connection, which comes back. */
static void
test_timeout(void)
{
	struct redis_config cfg = { 0 };
	struct watch w = { 0 };
	struct redis *r;
	struct box b = { 0 };
	uint64_t t0;
	char url[64];

	snprintf(url, sizeof url, "redis://127.0.0.1:%d", port_a);
	cfg.timeout_ms = 300;
	if ((r = client(url, 0, &w, &cfg)) == NULL) {
		check(0);
		return;
	}
	check(wait_for(&w.ups, 1, 5000));
	t0 = loop_now_ms();
	check(cmd(r, &b, 3, "BLPOP", "never-pushed", "0") == 0);
	check(wait_for(&b.done, 1, 3000));
	check(b.err[0] != '\0' && strstr(b.err, "timeout") != NULL);
	check(loop_now_ms() - t0 >= 300 && loop_now_ms() - t0 < 2000);
	check(w.downs == 1 && strstr(w.why, "timeout") != NULL);
	check(wait_for(&w.ups, 2, 5000));
	check(ask(r, &b, 1, "PING", NULL, NULL) &&
	    box_is(&b, RESP_T_STRING, "PONG"));
	box_free(&b);
	redis_free(r);
}

/* A client freed from its own callback; one freed with commands in
 * flight fails them with a reason. */
static void
test_free(void)
{
	struct watch w = { 0 };
	struct redis *r;
	struct box b[3];
	char url[64];

	memset(b, 0, sizeof b);
	snprintf(url, sizeof url, "redis://127.0.0.1:%d", port_a);
	if ((r = client(url, 0, &w, NULL)) == NULL) {
		check(0);
		return;
	}
	check(wait_for(&w.ups, 1, 5000));
	freed_in_cb = 0;
	{
		struct resp_arg ping = { "PING", 4 };

		check(redis_command(r, 1, &ping, on_free_me, r) == 0);
		check(cmd(r, &b[0], 1, "PING") == 0);
	}
	check(wait_for(&freed_in_cb, 1, 5000));
	/* The command behind it was failed when its client went. */
	check(b[0].done && strcmp(b[0].err, "client freed") == 0);
	turn_for(150);		/* the tick reclaims it (ASan: no leak) */

	memset(&w, 0, sizeof w);
	if ((r = client(url, 0, &w, NULL)) == NULL) {
		check(0);
		return;
	}
	check(wait_for(&w.ups, 1, 5000));
	check(cmd(r, &b[1], 1, "PING") == 0);
	check(cmd(r, &b[2], 1, "PING") == 0);
	redis_free(r);
	check(b[1].done && b[2].done && strcmp(b[2].err, "client freed") == 0);
	for (int i = 0; i < 3; i++)
		box_free(&b[i]);
}

/* ==== AUTH and SELECT ================================================ */

static void
test_auth(void)
{
	char url[160], p[16];
	char *extra[] = { "--requirepass", "s3cret pass", NULL };
	struct watch wg = { 0 }, wb = { 0 }, wu = { 0 }, wn = { 0 };
	struct redis *good, *bad, *user, *none;
	struct box b = { 0 };
	struct redis_stats st;
	int port = free_port(), downs;
	pid_t pid;

	snprintf(p, sizeof p, "%d", port);
	if ((pid = server_start(port, 0, extra)) == -1) {
		fatal("cannot start redis-server with --requirepass");
		return;
	}
	/* The right password, percent-encoded in the URL. */
	snprintf(url, sizeof url, "redis://:s3cret%%20pass@127.0.0.1:%d",
	    port);
	good = client(url, 0, &wg, NULL);
	check(good != NULL && wait_for(&wg.ups, 1, 5000));
	check(good != NULL && ask(good, &b, 1, "PING", NULL, NULL) &&
	    box_is(&b, RESP_T_STRING, "PONG"));

	/* A wrong one: reported with Redis's reason, retried with backoff
	 * only: in 2 s with backoff from 50 ms to 500 ms, a handful of
	 * attempts, not a hot loop. */
	snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", port);
	bad = client(url, 0, &wb, NULL);
	check(bad != NULL && wait_for(&wb.downs, 1, 5000));
	check(strstr(wb.why, "AUTH refused") != NULL &&
	    strstr(wb.why, "WRONGPASS") != NULL);
	downs = wb.downs;
	turn_for(2000);
	check(wb.ups == 0 && !redis_up(bad));
	check(wb.downs - downs >= 2 && wb.downs - downs <= 25);
	redis_stats(bad, &st);
	check(st.reconnects >= 2 && st.reconnects <= 26);
	check(cmd(bad, &b, 1, "PING") == REDIS_EDOWN);

	/* No password in the URL: the hello's PING finds out (NOAUTH). */
	snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
	none = client(url, 0, &wn, NULL);
	check(none != NULL && wait_for(&wn.downs, 1, 5000) && wn.ups == 0 &&
	    strstr(wn.why, "PING refused") != NULL &&
	    strstr(wn.why, "NOAUTH") != NULL);

	/* User and password (ACL). */
	check(good != NULL && ask(good, &b, 3, "ACL", "SETUSER", "alice") &&
	    box_is(&b, RESP_T_STRING, "OK"));
	{
		struct resp_arg a[7] = {
			{ "ACL", 3 }, { "SETUSER", 7 }, { "alice", 5 },
			{ "on", 2 }, { ">pw:1@x", 7 }, { "~*", 2 },
			{ "+@all", 5 }
		};

		box_free(&b);
		check(redis_command(good, 7, a, on_reply, &b) == 0);
		check(wait_for(&b.done, 1, 5000) &&
		    box_is(&b, RESP_T_STRING, "OK"));
	}
	snprintf(url, sizeof url, "redis://alice:pw:1@x@127.0.0.1:%d", port);
	user = client(url, 0, &wu, NULL);
	check(user != NULL && wait_for(&wu.ups, 1, 5000));
	check(user != NULL && ask(user, &b, 2, "ACL", "WHOAMI", NULL) &&
	    box_is(&b, RESP_T_BULK, "alice"));
	redis_free(user);
	memset(&wu, 0, sizeof wu);
	snprintf(url, sizeof url, "redis://alice:nope@127.0.0.1:%d", port);
	user = client(url, 0, &wu, NULL);
	check(user != NULL && wait_for(&wu.downs, 1, 5000) &&
	    strstr(wu.why, "WRONGPASS") != NULL && wu.ups == 0);

	box_free(&b);
	redis_free(user);
	redis_free(none);
	redis_free(bad);
	redis_free(good);
	server_kill(pid);
}

static void
test_select(struct redis *c)
{
	char url[96];
	struct watch w3 = { 0 }, w3b = { 0 }, wx = { 0 };
	struct redis *d3, *d3b, *dx;
	struct box b = { 0 };

	snprintf(url, sizeof url, "redis://127.0.0.1:%d/3", port_a);
	d3 = client(url, 0, &w3, NULL);
	d3b = client(url, 0, &w3b, NULL);
	check(d3 != NULL && wait_for(&w3.ups, 1, 5000));
	check(d3b != NULL && wait_for(&w3b.ups, 1, 5000));
	if (d3 == NULL || d3b == NULL)
		return;
	check(ask(d3, &b, 3, "SET", "sel-key", "in-db-3") &&
	    box_is(&b, RESP_T_STRING, "OK"));
	/* Not in db 0 ... */
	check(ask(c, &b, 2, "GET", "sel-key", NULL) && b.null);
	/* ... but in db 3 from another connection. */
	check(ask(d3b, &b, 2, "GET", "sel-key", NULL) &&
	    box_is(&b, RESP_T_BULK, "in-db-3"));
	/* A database the server does not have: refused, reported. */
	snprintf(url, sizeof url, "redis://127.0.0.1:%d/99999", port_a);
	dx = client(url, 0, &wx, NULL);
	check(dx != NULL && wait_for(&wx.downs, 1, 5000) &&
	    strstr(wx.why, "SELECT refused") != NULL && wx.ups == 0);
	box_free(&b);
	redis_free(dx);
	redis_free(d3b);
	redis_free(d3);
}

/* Redis absent when the client starts: attempts with backoff, then up. */
static void
test_absent_at_start(void)
{
	int port = free_port();
	char url[64];
	struct watch w = { 0 };
	struct redis *r;
	struct box b = { 0 };
	pid_t pid;

	snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
	if ((r = client(url, 0, &w, NULL)) == NULL) {
		check(0);
		return;
	}
	check(wait_for(&w.downs, 1, 3000));
	check(strstr(w.why, "connect") != NULL);
	check(cmd(r, &b, 1, "PING") == REDIS_EDOWN);
	turn_for(500);
	check(w.downs >= 2 && w.downs < 40 && w.ups == 0);
	if ((pid = server_start(port, 0, NULL)) == -1) {
		fatal("cannot start redis-server");
		redis_free(r);
		return;
	}
	check(wait_for(&w.ups, 1, 5000));
	check(ask(r, &b, 1, "PING", NULL, NULL) &&
	    box_is(&b, RESP_T_STRING, "PONG"));
	box_free(&b);
	redis_free(r);
	server_kill(pid);
}

/* ==== Pub/sub, and the server killed ================================= */

static void
test_pubsub(struct redis *c, struct watch *wc)
{
	char url[64];
	struct watch ws = { 0 };
	struct redis *s;
	struct box b = { 0 };
	struct redis_stats st;
	int downs, n;

	snprintf(url, sizeof url, "redis://127.0.0.1:%d", port_a);
	if ((s = client(url, 1, &ws, NULL)) == NULL) {
		check(0);
		return;
	}
	/* The set is sent on connect; up once it is confirmed. */
	check(redis_subscribe(s, "ch1", 3) == 0);
	check(redis_subscribe(s, "ch1", 3) == 0);	/* already in */
	check(redis_psubscribe(s, "pat.*", 5) == 0);
	check(redis_subscribe(s, "gone", 4) == 0);
	check(redis_unsubscribe(s, "gone", 4) == 0);
	check(redis_unsubscribe(s, "never", 5) == 0);
	/* More than one SUBSCRIBE's worth (256), so the set goes out in
	 * batches and up waits for every confirmation. */
	for (int i = 0; i < MANY; i++) {
		char ch[32];

		snprintf(ch, sizeof ch, "many:%d", i);
		check(redis_subscribe(s, ch, strlen(ch)) == 0);
	}
	redis_stats(s, &st);
	check(st.subscriptions == 2 + MANY);
	check(cmd(s, &b, 1, "PING") == REDIS_EMODE);
	check(wait_for(&ws.ups, 1, 5000));

	check(ask(c, &b, 3, "PUBLISH", "ch1", "hello") &&
	    b.type == RESP_T_INT && b.n == 1);
	check(wait_for(&ws.msgs, 1, 5000));
	check(strcmp(ws.channel, "ch1") == 0 && ws.pattern[0] == '\0' &&
	    ws.len == 5 && memcmp(ws.data, "hello", 5) == 0);
	check(ask(c, &b, 3, "PUBLISH", "pat.x", "p") && b.n == 1);
	check(wait_for(&ws.msgs, 2, 5000));
	check(strcmp(ws.pattern, "pat.*") == 0 &&
	    strcmp(ws.channel, "pat.x") == 0 && ws.len == 1);
	check(ask(c, &b, 3, "PUBLISH", "gone", "x") && b.n == 0);
	check(ask(c, &b, 3, "PUBLISH", "many:599", "m") && b.n == 1);
	check(wait_for(&ws.msgs, 3, 5000) &&
	    strcmp(ws.channel, "many:599") == 0);
	/* Binary data. */
	{
		struct resp_arg a[3] = {
			{ "PUBLISH", 7 }, { "ch1", 3 }, { "a\0\r\nb", 5 }
		};

		box_free(&b);
		check(redis_command(c, 3, a, on_reply, &b) == 0);
		check(wait_for(&ws.msgs, 4, 5000) && ws.len == 5 &&
		    memcmp(ws.data, "a\0\r\nb", 5) == 0);
	}
	/* Changes while up go out at once. */
	check(redis_subscribe(s, "ch2", 3) == 0);
	turn_for(100);
	check(ask(c, &b, 3, "PUBLISH", "ch2", "two") && b.n == 1);
	check(wait_for(&ws.msgs, 5, 5000) && strcmp(ws.channel, "ch2") == 0);
	check(redis_unsubscribe(s, "ch2", 3) == 0);
	turn_for(100);
	check(ask(c, &b, 3, "PUBLISH", "ch2", "none") && b.n == 0);

	/* Commands in flight when the server dies: a BLPOP that blocks and
	 * five commands behind it, all written before the kill. */
	{
		struct resp_arg bl[3] = {
			{ "BLPOP", 5 }, { "never", 5 }, { "0", 1 }
		}, ping = { "PING", 4 };

		lost_n = lost_bad = lost_next = 0;
		check(redis_command(c, 3, bl, on_lost, (void *)0) == 0);
		for (intptr_t i = 1; i < 6; i++)
			check(redis_command(c, 1, &ping, on_lost,
			    (void *)i) == 0);
		turn_for(200);
		redis_stats(c, &st);
		check(st.queued_bytes == 0 && st.inflight == 6);
	}
	downs = wc->downs;
	server_kill(pid_a);
	pid_a = -1;
	check(wait_for(&lost_n, 6, 5000));
	check(lost_bad == 0);
	check(wc->downs > downs && !redis_up(c));
	check(wait_for(&ws.downs, 1, 5000) && !redis_up(s));
	check(cmd(c, &b, 1, "PING") == REDIS_EDOWN);
	/* While it is gone: attempts, with backoff (50 ms to 500 ms). */
	downs = wc->downs;
	turn_for(1500);
	n = wc->downs - downs;
	check(n >= 2 && n <= 40);
	check(strstr(wc->why, "connect") != NULL);
	check(wc->up == 0 && ws.up == 0);

	/* Back on the same port: both clients return, the subscriber
	 * resubscribed (channel and pattern). */
	if ((pid_a = server_start(port_a, 0, NULL)) == -1) {
		fatal("cannot restart redis-server");
		redis_free(s);
		return;
	}
	check(wait_for(&wc->ups, 2, 5000));
	check(wait_for(&ws.ups, 2, 5000));
	n = ws.msgs;
	check(ask(c, &b, 3, "PUBLISH", "ch1", "again") && b.n == 1);
	check(wait_for(&ws.msgs, n + 1, 5000) &&
	    strcmp(ws.channel, "ch1") == 0 && ws.len == 5 &&
	    memcmp(ws.data, "again", 5) == 0);
	check(ask(c, &b, 3, "PUBLISH", "pat.y", "pp") && b.n == 1);
	check(wait_for(&ws.msgs, n + 2, 5000) &&
	    strcmp(ws.pattern, "pat.*") == 0);
	check(ask(c, &b, 3, "PUBLISH", "ch2", "none") && b.n == 0);
	check(ask(c, &b, 3, "PUBLISH", "many:0", "m") && b.n == 1);
	check(wait_for(&ws.msgs, n + 3, 5000) &&
	    strcmp(ws.channel, "many:0") == 0);
	redis_stats(c, &st);
	check(st.reconnects >= 2 && st.up == 1);
	redis_stats(s, &st);
	check(st.reconnects >= 2 && st.messages == (uint64_t)ws.msgs &&
	    st.subscriptions == 2 + MANY);
	box_free(&b);
	redis_free(s);
}

/*
 * A server that stops answering (SIGSTOP) while its sockets stay open:
 * a command times out, an idle subscriber's PING does too, reconnects
 * that connect but get no answer are not up; after SIGCONT both return.
 */
static void
test_stalled(void)
{
	struct redis_config cfg = { 0 };
	struct watch wc = { 0 }, ws = { 0 };
	struct redis *c, *s;
	struct box b = { 0 };
	char url[64];
	int port = free_port(), ups;
	pid_t pid;
	uint64_t t0;

	if ((pid = server_start(port, 0, NULL)) == -1) {
		fatal("cannot start redis-server");
		return;
	}
	snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
	cfg.ping_ms = 200;
	cfg.timeout_ms = 400;
	c = client(url, 0, &wc, &cfg);
	s = client(url, 1, &ws, &cfg);
	if (c == NULL || s == NULL) {
		check(0);
		goto out;
	}
	check(redis_subscribe(s, "st", 2) == 0);
	check(wait_for(&wc.ups, 1, 5000) && wait_for(&ws.ups, 1, 5000));
	/* Idle pings answered: still up after several ping periods. */
	turn_for(700);
	check(wc.downs == 0 && ws.downs == 0);

	kill(pid, SIGSTOP);
	t0 = loop_now_ms();
	check(cmd(c, &b, 1, "PING") == 0);
	check(wait_for(&b.done, 1, 3000) && strstr(b.err, "timeout"));
	check(loop_now_ms() - t0 >= 400);
	check(wait_for(&wc.downs, 1, 3000) && strstr(wc.why, "timeout"));
	check(wait_for(&ws.downs, 1, 3000) && strstr(ws.why, "timeout"));
	turn_for(1000);
	check(wc.ups == 1 && ws.ups == 1 && !redis_up(c) && !redis_up(s));

	kill(pid, SIGCONT);
	check(wait_for(&wc.ups, 2, 5000) && wait_for(&ws.ups, 2, 5000));
	ups = ws.ups;
	check(ask(c, &b, 3, "PUBLISH", "st", "alive") && b.n == 1);
	check(wait_for(&ws.msgs, 1, 5000) && strcmp(ws.channel, "st") == 0);
	check(ws.ups == ups);
out:
	box_free(&b);
	redis_free(s);
	redis_free(c);
	server_kill(pid);
}

/* ==== TLS ============================================================= */

static int
make_certs(void)
{
	char ca_key[128], ca_crt[128], o_key[128], o_crt[128], s_key[128],
	    s_csr[128], s_crt[128], ext[128];
	FILE *f;

	snprintf(ca_key, sizeof ca_key, "%s/ca.key", tmp);
	snprintf(ca_crt, sizeof ca_crt, "%s/ca.crt", tmp);
	snprintf(o_key, sizeof o_key, "%s/other.key", tmp);
	snprintf(o_crt, sizeof o_crt, "%s/other.crt", tmp);
	snprintf(s_key, sizeof s_key, "%s/server.key", tmp);
	snprintf(s_csr, sizeof s_csr, "%s/server.csr", tmp);
	snprintf(s_crt, sizeof s_crt, "%s/server.crt", tmp);
	snprintf(ext, sizeof ext, "%s/ext.cnf", tmp);
	if ((f = fopen(ext, "w")) == NULL)
		return 0;
	/* The server's name is localhost only: 127.0.0.1 must not match. */
	fputs("subjectAltName=DNS:localhost\n", f);
	fclose(f);
	{
		char *ca[] = { "/usr/bin/openssl", "req", "-x509", "-newkey",
		    "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
		    "-keyout", ca_key, "-out", ca_crt, "-days", "2", "-subj",
		    "/CN=wsd test CA", NULL };
		char *other[] = { "/usr/bin/openssl", "req", "-x509",
		    "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
		    "-nodes", "-keyout", o_key, "-out", o_crt, "-days", "2",
		    "-subj", "/CN=wsd other CA", NULL };
		char *csr[] = { "/usr/bin/openssl", "req", "-new", "-newkey",
		    "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
		    "-keyout", s_key, "-out", s_csr, "-subj", "/CN=localhost",
		    NULL };
		char *sign[] = { "/usr/bin/openssl", "x509", "-req", "-in",
		    s_csr, "-CA", ca_crt, "-CAkey", ca_key, "-set_serial", "2",
		    "-out", s_crt, "-days", "2", "-extfile", ext, NULL };

		return run(ca) && run(other) && run(csr) && run(sign);
	}
}

static void
test_tls(void)
{
	char url[128], ca[128], other[128], crt[128], key[128];
	char *extra[] = { "--tls-cert-file", crt, "--tls-key-file", key,
	    "--tls-ca-cert-file", ca, "--tls-auth-clients", "no",
	    "--requirepass", "tlspw", NULL };
	struct redis_config cfg = { 0 };
	struct watch w = { 0 }, wo = { 0 }, wsys = { 0 }, wip = { 0 };
	struct redis *r, *ro, *rsys, *rip;
	struct box b = { 0 };
	static uint8_t big[300000];
	struct resp_arg argv[3];
	int port = free_port();
	pid_t pid;

	if (access("/usr/bin/openssl", X_OK) != 0) {
		fatal("/usr/bin/openssl not found: run test/deps.sh");
		return;
	}
	if (!make_certs()) {
		fatal("openssl could not make the test certificates");
		return;
	}
	snprintf(ca, sizeof ca, "%s/ca.crt", tmp);
	snprintf(other, sizeof other, "%s/other.crt", tmp);
	snprintf(crt, sizeof crt, "%s/server.crt", tmp);
	snprintf(key, sizeof key, "%s/server.key", tmp);
	if ((pid = server_start(port, port, extra)) == -1) {
		fatal("cannot start redis-server with --tls-port (built "
		    "without TLS?)");
		return;
	}

	/* The right CA, the name in the certificate, a password. */
	snprintf(url, sizeof url, "rediss://:tlspw@localhost:%d", port);
	cfg.ca_file = ca;
	r = client(url, 0, &w, &cfg);
	check(r != NULL && wait_for(&w.ups, 1, 5000));
	if (r != NULL && w.ups == 1) {
		check(ask(r, &b, 1, "PING", NULL, NULL) &&
		    box_is(&b, RESP_T_STRING, "PONG"));
		/* 300 KB each way: many records, partial writes. */
		for (size_t i = 0; i < sizeof big; i++)
			big[i] = (uint8_t)(i * 7);
		argv[0] = (struct resp_arg){ "SET", 3 };
		argv[1] = (struct resp_arg){ "big", 3 };
		argv[2] = (struct resp_arg){ big, sizeof big };
		box_free(&b);
		check(redis_command(r, 3, argv, on_reply, &b) == 0);
		check(wait_for(&b.done, 1, 5000) &&
		    box_is(&b, RESP_T_STRING, "OK"));
		argv[0] = (struct resp_arg){ "GET", 3 };
		box_free(&b);
		check(redis_command(r, 2, argv, on_reply, &b) == 0);
		check(wait_for(&b.done, 1, 5000) && b.len == sizeof big &&
		    memcmp(b.data, big, sizeof big) == 0);
		/* A subscriber over TLS. */
		{
			struct watch wt = { 0 };
			struct redis *st = client(url, 1, &wt, &cfg);

			check(st != NULL && redis_subscribe(st, "tch", 3) == 0);
			check(wait_for(&wt.ups, 1, 5000));
			check(ask(r, &b, 3, "PUBLISH", "tch", "secure") &&
			    b.n == 1);
			check(wait_for(&wt.msgs, 1, 5000) && wt.len == 6 &&
			    memcmp(wt.data, "secure", 6) == 0);
			redis_free(st);
		}
	}
	if (w.why[0] != '\0' && w.ups == 0)
		fprintf(stderr, "test_redis: TLS refused: %s\n", w.why);

	/* A CA that did not sign it. */
	cfg.ca_file = other;
	ro = client(url, 0, &wo, &cfg);
	check(ro != NULL && wait_for(&wo.downs, 1, 5000) && wo.ups == 0 &&
	    strstr(wo.why, "certificate refused") != NULL);
	/* The system store does not know the test CA either. */
	cfg.ca_file = NULL;
	rsys = client(url, 0, &wsys, &cfg);
	check(rsys != NULL && wait_for(&wsys.downs, 1, 5000) &&
	    wsys.ups == 0 && strstr(wsys.why, "certificate refused") != NULL);
	/* The right CA, but 127.0.0.1 is not a name in the certificate. */
	snprintf(url, sizeof url, "rediss://:tlspw@127.0.0.1:%d", port);
	cfg.ca_file = ca;
	rip = client(url, 0, &wip, &cfg);
	check(rip != NULL && wait_for(&wip.downs, 1, 5000) && wip.ups == 0 &&
	    strstr(wip.why, "mismatch") != NULL);
	turn_for(300);
	check(wo.ups == 0 && wsys.ups == 0 && wip.ups == 0);
	/* A CA file that cannot be read is refused at once. */
	{
		struct redis_config bad = { 0 };
		char err[256] = "";

		bad.url = url;
		bad.ca_file = "/nonexistent/ca.pem";
		check(redis_new(&bad, err, sizeof err) == NULL &&
		    strstr(err, "CA") != NULL);
	}
	box_free(&b);
	redis_free(rip);
	redis_free(rsys);
	redis_free(ro);
	redis_free(r);
	server_kill(pid);
}

/* ==== Configuration errors ============================================ */

static void
test_config(void)
{
	struct redis_config c = { 0 };
	char err[256];

	c.url = "http://x";
	check(redis_new(&c, err, sizeof err) == NULL &&
	    strstr(err, "scheme") != NULL);
	c.url = "redis://no-such-host.invalid:6379";
	check(redis_new(&c, err, sizeof err) == NULL &&
	    strstr(err, "resolve") != NULL);
	c.url = NULL;
	check(redis_new(&c, err, sizeof err) == NULL);
	redis_free(NULL);
}

int
main(void)
{
	struct watch wc = { 0 };
	struct redis *c;
	char url[64];

	if (access(REDIS_SERVER, X_OK) != 0) {
		fatal(REDIS_SERVER " not found: run test/deps.sh (it installs "
		    "redis-server)");
		return t_done();
	}
	if (getenv("TEST_REDIS_VERBOSE") == NULL)
		log_set_level("error");
	snprintf(tmp, sizeof tmp, "/tmp/test_redis.XXXXXX");
	if (mkdtemp(tmp) == NULL) {
		tmp[0] = '\0';
		fatal("mkdtemp failed");
		return t_done();
	}
	if (loop_init() != 0) {
		fatal("loop_init failed");
		cleanup();
		return t_done();
	}
	test_config();
	port_a = free_port();
	if ((pid_a = server_start(port_a, 0, NULL)) == -1) {
		fatal("cannot start redis-server");
		cleanup();
		return t_done();
	}
	snprintf(url, sizeof url, "redis://127.0.0.1:%d", port_a);
	if ((c = client(url, 0, &wc, NULL)) == NULL) {
		check(0);
		cleanup();
		return t_done();
	}
	check(wait_for(&wc.ups, 1, 5000));
	test_basic(c);
	test_pipeline(c);
	test_bounds();
	test_timeout();
	test_free();
	test_select(c);
	test_auth();
	test_absent_at_start();
	test_pubsub(c, &wc);
	test_stalled();
	test_tls();
	redis_free(c);
	loop_free();
	cleanup();
	return t_done();
}
