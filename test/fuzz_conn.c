/*
 * fuzz_conn.c - libFuzzer target for the whole connection input path:
 * bytes -> HTTP request head -> upgrade -> frames -> messages -> hub.
 *
 * The real daemon runs on the simulated kernel of test/simkern.c (see
 * sim.h), started once, in a thread of its own: ws_run() cannot be left
 * and entered again.  Each input is a script for up to four clients; the
 * daemon runs one loop turn per operation while the fuzzer's thread waits,
 * so the two never run at once and a run is a function of the inputs.
 * At the end of an input every client closes, and the turns go on (time
 * moving) until the server has closed every connection.  Groups, history
 * and sessions outlive the input, as they outlive connections in a
 * running daemon.
 *
 * A script is a sequence of operations, each one byte, code << 5 | arg,
 * with c = arg & 3 the client:
 *
 *	0 CONNECT	c connects (dropping its old connection)
 *	1 SEND		c sends the next byte + 1 bytes as they are
 *	2 FRAME		c sends a frame: the next byte is FIN, RSV and opcode,
 *			then a length byte and that many payload bytes, masked
 *			with a key made from arg (0: the zero key)
 *	3 READ		c reads: arg >> 2 = 0 everything each turn, 1 nothing,
 *			2 one byte a turn, 3 64 bytes a turn
 *	4 TIME		time moves on by (arg + 1) * 100 ms: timers, deadlines
 *	5 CLOSE		c: arg >> 2 = 0 FIN, 1 close, 2 reset, 3 FIN then read
 *	6 WINDOW	c's receive window becomes 16 << (arg >> 2) bytes
 *	7 UPGRADE	c sends a whole upgrade request to route arg >> 2
 *
 * Every operation is one loop turn.  Checked besides the sanitizers:
 * ws_stats.connections is always the kernel's count of open connections;
 * after an input no connection is left open (it and ws_stats.websockets
 * are 0); history stays within --history-total; no fd is ready many turns
 * in a row without being served.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "sim.h"
#include "ws.h"

#define NCLIENT		4
#define CLEANUP_TURNS	400	/* turns for the server to close them all */
#define SPIN		200

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

struct fclient {
	int	 h;		/* kernel handle, -1: none */
	uint8_t	 mode;		/* READ's arg >> 2 */
};

static struct fclient	 fc[NCLIENT];
static const uint8_t	*pos, *end;	/* the script; pos NULL between */
static int		 cleanup;
static unsigned		 turns;
static sem_t		 go, done;
static pthread_t	 daemon_thread;

static const char *const routes[] = {
	"/ws/g0",
	"/ws/sessions/s1?since=0",
	"/echo",
	"/api/v1/ws/kind/x?since=3",
	"/ws/monitor",
	"/ws/g1?since=0",
	"/ws/x:y",
	"/ws/g0?since=99"
};

static struct ws_config wcfg = {
	.max_header = 1024,
	.max_message = 4096,
	.max_body = 4096,
	.send_queue = 16384,
	.max_connections = 64,
	.handshake_ms = 2000,
	.ping_interval_ms = 3000,
	.ping_timeout_ms = 9000,
	.drain_ms = 1000,
	.echo = 1,
};

static struct hub_config hcfg = {
	.history = 20,
	.history_bytes = 8192,
	.history_total = 65536,
	.max_conn_groups = 8,
	.max_groups = 64,
	.json_depth = 16,
	.tick_ms = 500,
	.session_events = 1,
	.max_sessions = 32,
	.max_metadata = 1024,
};

#define need(c, what)	do { if (!(c)) die(what); } while (0)

static void
die(const char *what)
{
	const struct ws_stats *st = ws_stats_get();

	fprintf(stderr, "fuzz_conn: %s (connections %llu, websockets %llu, "
	    "open %u)\n", what, (unsigned long long)st->connections,
	    (unsigned long long)st->websockets, sim_open_conns());
	sim_dump_log(20);
	abort();
}

static void
client_read(struct fclient *c)
{
	uint8_t buf[4096];
	size_t cap = c->mode == 2 ? 1 : c->mode == 3 ? 64 : sizeof buf;

	if (c->h < 0 || c->mode == 1)
		return;
	for (int i = 0; i < 64; i++)
		if (sim_recv(c->h, buf, cap) <= 0 || c->mode != 0)
			break;
}

static void
client_drop(struct fclient *c)
{
	if (c->h >= 0) {
		sim_close(c->h);
		sim_release(c->h);
	}
	c->h = -1;
}

static void
send_bytes(struct fclient *c, const uint8_t *p, size_t n)
{
	if (c->h >= 0)
		sim_send(c->h, p, n);
}

/* The next n script bytes, or fewer at the end. */
static size_t
take(const uint8_t **p, size_t n)
{
	size_t left = end - pos;

	*p = pos;
	if (n > left)
		n = left;
	pos += n;
	return n;
}

static void
op_frame(struct fclient *c, unsigned arg)
{
	uint8_t h[14], key[4], pl[256];
	const uint8_t *p;
	size_t hl = 2, n;

	if (take(&p, 2) < 2)
		return;
	h[0] = p[0];
	n = take(&p, p[1]);
	h[1] = 0x80 | (n < 126 ? n : 126);
	if (n >= 126) {
		h[2] = 0;
		h[3] = n;
		hl = 4;
	}
	for (int i = 0; i < 4; i++)
		key[i] = arg == 0 ? 0 : (uint8_t)(arg * 37 + i * 101);
	memcpy(h + hl, key, 4);
	hl += 4;
	for (size_t i = 0; i < n; i++)
		pl[i] = p[i] ^ key[i & 3];
	send_bytes(c, h, hl);
	send_bytes(c, pl, n);
}

static void
op_upgrade(struct fclient *c, unsigned route)
{
	char req[512];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1"
	    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n", routes[route]);

	send_bytes(c, (const uint8_t *)req, n);
}

/* One operation of the script. */
static void
op(void)
{
	unsigned code = *pos >> 5, arg = *pos & 31;
	struct fclient *c = &fc[arg & 3];
	const uint8_t *p;
	size_t n;

	pos++;
	switch (code) {
	case 0:
		client_drop(c);
		c->h = sim_connect(65536);
		c->mode = 0;
		break;
	case 1:
		if (pos < end) {
			n = take(&p, 1);
			n = take(&p, (size_t)*p + 1);
			send_bytes(c, p, n);
		}
		break;
	case 2:
		op_frame(c, arg >> 2);
		break;
	case 3:
		c->mode = arg >> 2 & 3;
		break;
	case 4:
		sim_advance((arg + 1) * 100);
		break;
	case 5:
		if (c->h < 0)
			break;
		switch (arg >> 2 & 3) {
		case 0:
			sim_shut(c->h);
			break;
		case 1:
			client_drop(c);
			break;
		case 2:
			sim_reset(c->h);
			sim_release(c->h);
			c->h = -1;
			break;
		default:
			sim_shut(c->h);
			c->mode = 0;
			break;
		}
		break;
	case 6:
		if (c->h >= 0)
			sim_set_win(c->h, 16u << (arg >> 2));
		break;
	case 7:
		op_upgrade(c, arg >> 2);
		break;
	}
}

/* Called by the simulated epoll_wait(), in the daemon's thread. */
static void
step(void)
{
	if (pos == NULL) {
		uint64_t h = 14695981039346656037ull;

		sem_post(&done);
		sem_wait(&go);
		cleanup = 0;
		/* The kernel's choices (event order) follow the input. */
		for (const uint8_t *p = pos; p < end; p++)
			h = (h ^ *p) * 1099511628211ull;
		sim_seed(h);
	}
	need(sim_spinning() <= SPIN, "an fd is ready turn after turn, "
	    "unserved");
	need(hub_history_total() <= hcfg.history_total, "history over "
	    "--history-total");
	need(ws_stats_get()->connections == sim_open_conns(),
	    "ws_stats.connections is not the number of open connections");
	for (int i = 0; i < NCLIENT; i++)
		client_read(&fc[i]);
	if (!cleanup) {
		if (pos < end) {
			op();
			return;
		}
		for (int i = 0; i < NCLIENT; i++)
			client_drop(&fc[i]);
		cleanup = 1;
		turns = 0;
	}
	sim_advance(100);
	if (sim_open_conns() == 0) {
		const struct ws_stats *st = ws_stats_get();

		need(st->connections == 0 && st->websockets == 0,
		    "every client left, the counters say otherwise");
		pos = NULL;
	} else
		need(++turns < CLEANUP_TURNS, "every client left, a connection "
		    "is still open");
}

static void *
run_daemon(void *arg)
{
	(void)arg;
	sim_seed(1);
	sim_on_step(step);
	for (int i = 0; i < NCLIENT; i++)
		fc[i].h = -1;
	if (sim_start(&wcfg, &hcfg, "warn") == -1)
		die("the daemon did not start");
	ws_run(NULL);
	die("ws_run() returned");
	return NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int started;

	if (!started) {
#ifdef WS_ASSEMBLY_TOTAL
		/* Limits a newer ws.h has; the target also builds without. */
		wcfg.max_body_total = 65536;
		wcfg.assembly_total = 65536;
#endif
		sem_init(&go, 0, 0);
		sem_init(&done, 0, 0);
		if (pthread_create(&daemon_thread, NULL, run_daemon, NULL) != 0)
			abort();
		sem_wait(&done);
		started = 1;
	}
	end = data + size;
	pos = data;
	sem_post(&go);
	sem_wait(&done);
	return 0;
}
