/*
 * cluster.c - several nodes as one hub through Redis: the two scripts,
 * the channel per group, and the two connections that carry them.
 *
 * The data flows: a publish (hub.c) → cluster_publish() → EVALSHA of the
 * publish script on the command connection, which orders, stores and
 * PUBLISHes the event in Redis at once → the reply (epoch, seq) to the
 * publisher's callback; the PUBLISH → the subscriber connection of every
 * node listening to the group → on_message() → hub_cluster_event(),
 * which delivers it locally.  Reads (history, a node catching up) are
 * the read script's replies handed back as events.
 *
 * What it does not do: keep any group state (hub.c does), retry (a
 * command that failed fails its caller, who answers unavailable or reads
 * again when Redis is back), or block: redis.c is non-blocking.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "cluster.h"
#include "hub.h"
#include "log.h"
#include "loop.h"
#include "resp.h"

#define RETRY_MS	1000	/* failed reads are tried again this often */

/* KEYS: meta, log.  ARGV as pub()'s after its keys (cluster.h). */
static const char pub_script[] = CLUSTER_LUA_PUB
    "return pub(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], "
    "ARGV[5], ARGV[6])\n";

/*
 * KEYS: meta, log.  ARGV: since's epoch ("" for any), since's seq, the
 * most events to return, and a new epoch for a group without one ("":
 * create nothing).  The rules of a resume (README "Positions and
 * epochs"): another epoch, a seq older than the oldest kept or newer
 * than the stream reads from the oldest, with gap 1.  A node's first
 * read of a group (any epoch, creating it) takes the last events instead:
 * what its history can hold.  Returns {epoch, seq, oldest, gap, more,
 * seq1, envelope1, ...}.
 */
static const char read_script[] =
    "local e = redis.call('HGET', KEYS[1], 'epoch')\n"
    "if not e then\n"
    "  if ARGV[4] == '' then return {'', 0, 1, 0, 0} end\n"
    "  e = ARGV[4]\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  redis.call('HSET', KEYS[1], 'epoch', e, 'seq', 0)\n"
    "end\n"
    "local s = tonumber(redis.call('HGET', KEYS[1], 'seq'))\n"
    "local o = s + 1\n"
    "local f = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)\n"
    "if #f > 0 then o = tonumber(string.match(f[1][1], '^%d+')) end\n"
    "local from = tonumber(ARGV[2])\n"
    "local lim = tonumber(ARGV[3])\n"
    "local gap = 0\n"
    "if ARGV[1] == '' and ARGV[4] ~= '' then\n"
    "  from = math.max(o - 1, s - lim)\n"
    "elseif (ARGV[1] ~= '' and ARGV[1] ~= e) or from + 1 < o or\n"
    "    from > s then\n"
    "  gap = 1\n"
    "  from = o - 1\n"
    "end\n"
    "local out = {e, s, o, gap, 0}\n"
    "if from >= s then return out end\n"
    "local r = redis.call('XRANGE', KEYS[2], (from + 1) .. '-0', '+',\n"
    "    'COUNT', lim + 1)\n"
    "local n = #r\n"
    "if n > lim then n = lim; out[5] = 1 end\n"
    "for i = 1, n do\n"
    "  out[#out + 1] = string.match(r[i][1], '^%d+')\n"
    "  out[#out + 1] = r[i][2][2]\n"
    "end\n"
    "return out\n";

#define NSCRIPTS_MAX	4

enum { S_PUB, S_READ };		/* ours; cluster_script() adds others */

static const char	*scripts[NSCRIPTS_MAX] = { pub_script, read_script };
static int		 nscripts = 2;
static void		(*on_up)(void);	/* cluster_config's */

static struct redis	*cmd, *sub;	/* owned */
static char		 sha[NSCRIPTS_MAX][41];
static int		 loaded;	/* scripts loaded on this connection */
static uint64_t		 lost;		/* server events Redis did not take */
static struct cluster_event *evs;	/* owned: a read's events */
static uint32_t		 evcap;

static void	load_scripts(void);

int
cluster_on(void)
{
	return cmd != NULL;
}

int
cluster_up(void)
{
	return cmd != NULL && redis_up(cmd) && redis_up(sub) &&
	    loaded == nscripts;
}

uint64_t
cluster_lost(void)
{
	return lost;
}

void
cluster_stats(struct redis_stats *c, struct redis_stats *s)
{
	memset(c, 0, sizeof *c);
	memset(s, 0, sizeof *s);
	if (cmd != NULL) {
		redis_stats(cmd, c);
		redis_stats(sub, s);
	}
}

size_t
cluster_key(char *out, size_t cap, const char *name, size_t n,
    const char *suffix)
{
	int k = snprintf(out, cap, "wsd:{%.*s}%s", (int)n, name, suffix);

	return k > 0 && (size_t)k < cap ? (size_t)k : 0;
}

/* ==== Scripts ========================================================= */

static void
loaded_one(void *arg, const struct resp_tok *reply, const char *err)
{
	(void)arg;
	if (reply == NULL || reply->type != RESP_T_BULK) {
		log_msg(LOG_ERROR, "redis script not loaded reason=\"%s\"",
		    err != NULL ? err : "refused");
		return;
	}
	if (++loaded == nscripts) {
		log_msg(LOG_INFO, "cluster up");
		hub_cluster_up();
		if (on_up != NULL && cluster_up())
			on_up();
	}
}

/* SCRIPT LOAD both, once per connection (and again after NOSCRIPT: a
 * SCRIPT FLUSH or a failover to a server that never saw them).  Commands
 * sent after them on the same connection find them: replies come in
 * order, and so does the server's work. */
static void
load_scripts(void)
{
	loaded = 0;
	for (int i = 0; i < nscripts; i++) {
		struct resp_arg argv[3] = { { "SCRIPT", 6 }, { "LOAD", 4 },
		    { scripts[i], strlen(scripts[i]) } };

		if (redis_command(cmd, 3, argv, loaded_one, NULL) != 0)
			return;		/* down again: reloaded when up */
	}
}

/* 1 for a NOSCRIPT error reply (and reload the scripts). */
static int
noscript(const struct resp_tok *reply)
{
	if (reply == NULL || reply->type != RESP_T_ERROR || reply->n < 8 ||
	    memcmp(reply->p, "NOSCRIPT", 8) != 0)
		return 0;
	if (loaded == nscripts)
		load_scripts();
	return 1;
}

int
cluster_failed(const struct resp_tok *reply)
{
	if (reply == NULL || noscript(reply))
		return 1;
	if (reply->type == RESP_T_ERROR) {
		log_msg(LOG_WARN, "cluster script refused reason=\"%.*s\"",
		    (int)(reply->n < 200 ? reply->n : 200),
		    (const char *)reply->p);
		return 1;
	}
	return 0;
}

int
cluster_script(const char *text)
{
	if (nscripts == NSCRIPTS_MAX)
		return -1;
	scripts[nscripts] = text;
	return nscripts++;
}

int
cluster_eval(int script, int argc, const struct resp_arg *argv,
    redis_reply_fn *cb, void *arg)
{
	struct resp_arg a[CLUSTER_EVAL_ARGS + 3];

	if (!cluster_up() || argc > CLUSTER_EVAL_ARGS)
		return -1;
	a[0] = (struct resp_arg){ "EVALSHA", 7 };
	a[1] = (struct resp_arg){ sha[script], 40 };
	a[2] = (struct resp_arg){ "0", 1 };
	memcpy(a + 3, argv, argc * sizeof *argv);
	return redis_command(cmd, argc + 3, a, cb, arg) == 0 ? 0 : -1;
}

static void
on_state(void *arg, int up, const char *why)
{
	static int said[2];	/* down was said since the last up */
	int k = arg != NULL;

	if (!up) {
		/* redis.c logs every attempt; this says once what it means. */
		if (!said[k])
			log_msg(LOG_WARN, "cluster redis down conn=%s "
			    "reason=\"%s\" (publishes answer 503 until it is "
			    "back)", k ? "subscriber" : "command",
			    why != NULL ? why : "");
		said[k] = 1;
		if (arg == NULL)
			loaded = 0;
		return;
	}
	said[k] = 0;
	if (arg == NULL)
		load_scripts();
	else if (loaded == nscripts) {
		hub_cluster_up();
		if (on_up != NULL)
			on_up();
	}
}

/* ==== Publish ========================================================= */

void
cluster_bounds(char count[24], char bytes[24])
{
	snprintf(count, 24, "%u", hub_config()->history);
	snprintf(bytes, 24, "%zu", (size_t)hub_config()->history_bytes);
}

struct pub {
	cluster_pub_fn	*cb;
	void		*arg;
};

/* An epoch: a bulk string of at most HUB_EPOCH_LEN bytes, into out. */
static int
tok_epoch(const struct resp_tok *t, char out[16])
{
	if (t == NULL || t->type != RESP_T_BULK || t->null ||
	    t->n > HUB_EPOCH_LEN)
		return -1;
	memcpy(out, t->p, t->n);
	out[t->n] = '\0';
	return 0;
}

static void
published(void *arg, const struct resp_tok *reply, const char *err)
{
	struct pub *p = arg;
	char epoch[16];
	uint64_t seq;

	if (reply != NULL && !noscript(reply) && reply->type == RESP_T_ARRAY &&
	    reply->n == 2 && tok_epoch(resp_elem(reply, 0), epoch) == 0 &&
	    resp_u64(resp_elem(reply, 1), &seq) == 0) {
		if (p->cb != NULL)
			p->cb(p->arg, epoch, seq, NULL);
	} else {
		if (err == NULL)
			err = "refused by Redis";
		if (reply != NULL && reply->type == RESP_T_ERROR)
			log_msg(LOG_WARN, "cluster publish refused "
			    "reason=\"%.*s\"", (int)(reply->n < 200 ?
			    reply->n : 200), (const char *)reply->p);
		if (p->cb != NULL)
			p->cb(p->arg, NULL, 0, err);
		else
			lost++;
	}
	free(p);
}

int
cluster_publish(const char *name, size_t n, const char *head, size_t hlen,
    const char *tail, size_t tlen, cluster_pub_fn *cb, void *arg)
{
	char meta[96], log[96], ch[96], epoch[HUB_EPOCH_LEN + 1], bound[24];
	char bytes[24];
	struct pub *p;
	struct resp_arg argv[11];

	if (!cluster_up() || (p = malloc(sizeof *p)) == NULL) {
		if (cb == NULL)
			lost++;
		return -1;
	}
	p->cb = cb;
	p->arg = arg;
	hub_random_hex(epoch, HUB_EPOCH_LEN);
	cluster_bounds(bound, bytes);
	argv[0] = (struct resp_arg){ "EVALSHA", 7 };
	argv[1] = (struct resp_arg){ sha[S_PUB], 40 };
	argv[2] = (struct resp_arg){ "2", 1 };
	argv[3] = (struct resp_arg){ meta, cluster_key(meta, sizeof meta,
	    name, n, ":meta") };
	argv[4] = (struct resp_arg){ log, cluster_key(log, sizeof log,
	    name, n, ":log") };
	argv[5] = (struct resp_arg){ epoch, HUB_EPOCH_LEN };
	argv[6] = (struct resp_arg){ head, hlen };
	argv[7] = (struct resp_arg){ tail, tlen };
	argv[8] = (struct resp_arg){ bound, strlen(bound) };
	argv[9] = (struct resp_arg){ bytes, strlen(bytes) };
	argv[10] = (struct resp_arg){ ch, cluster_key(ch, sizeof ch, name, n,
	    "") };
	if (redis_command(cmd, 11, argv, published, p) != 0) {
		if (cb == NULL)
			lost++;
		free(p);
		return -1;
	}
	return 0;
}

/* ==== Read ============================================================ */

struct rd {
	cluster_read_fn	*cb;
	void		*arg;
};

static void
read_done(void *arg, const struct resp_tok *reply, const char *err)
{
	struct rd *q = arg;
	struct cluster_read r = { 0 };
	const struct resp_tok *t;
	uint64_t gap, more;
	uint32_t n;

	(void)err;
	if (reply == NULL || noscript(reply) || reply->type != RESP_T_ARRAY ||
	    reply->n < 5 || (reply->n - 5) % 2 != 0)
		goto fail;
	t = resp_elem(reply, 0);
	if (tok_epoch(t, r.epoch) != 0 ||
	    resp_u64(t = resp_next(t), &r.seq) != 0 ||
	    resp_u64(t = resp_next(t), &r.oldest) != 0 ||
	    resp_u64(t = resp_next(t), &gap) != 0 ||
	    resp_u64(t = resp_next(t), &more) != 0)
		goto fail;
	r.gap = gap != 0;
	r.more = more != 0;
	n = (uint32_t)((reply->n - 5) / 2);
	if (n > evcap) {
		struct cluster_event *e = reallocarray(evs, n, sizeof *e);

		if (e == NULL)
			goto fail;
		evs = e;
		evcap = n;
	}
	for (uint32_t i = 0; i < n; i++) {
		t = resp_next(t);
		if (resp_u64(t, &evs[i].seq) != 0)
			goto fail;
		t = resp_next(t);
		if (t->type != RESP_T_BULK || t->null)
			goto fail;
		evs[i].p = t->p;
		evs[i].len = t->n;
	}
	r.n = n;
	r.ev = evs;
	q->cb(q->arg, &r);
	free(q);
	return;
fail:
	if (reply != NULL && reply->type == RESP_T_ERROR)
		log_msg(LOG_WARN, "cluster read refused reason=\"%.*s\"",
		    (int)(reply->n < 200 ? reply->n : 200),
		    (const char *)reply->p);
	q->cb(q->arg, NULL);
	free(q);
}

int
cluster_read(const char *name, size_t n, const char *since_epoch,
    uint64_t since_seq, unsigned limit, int create, cluster_read_fn *cb,
    void *arg)
{
	char meta[96], log[96], epoch[HUB_EPOCH_LEN + 1], seq[24], lim[24];
	struct resp_arg argv[9];
	struct rd *q;

	if (!cluster_up())
		return -1;
	if ((q = malloc(sizeof *q)) == NULL)
		return -1;
	q->cb = cb;
	q->arg = arg;
	if (create)
		hub_random_hex(epoch, HUB_EPOCH_LEN);
	else
		epoch[0] = '\0';
	snprintf(seq, sizeof seq, "%llu", (unsigned long long)since_seq);
	snprintf(lim, sizeof lim, "%u", limit);
	argv[0] = (struct resp_arg){ "EVALSHA", 7 };
	argv[1] = (struct resp_arg){ sha[S_READ], 40 };
	argv[2] = (struct resp_arg){ "2", 1 };
	argv[3] = (struct resp_arg){ meta, cluster_key(meta, sizeof meta,
	    name, n, ":meta") };
	argv[4] = (struct resp_arg){ log, cluster_key(log, sizeof log,
	    name, n, ":log") };
	argv[5] = (struct resp_arg){ since_epoch, strlen(since_epoch) };
	argv[6] = (struct resp_arg){ seq, strlen(seq) };
	argv[7] = (struct resp_arg){ lim, strlen(lim) };
	argv[8] = (struct resp_arg){ epoch, strlen(epoch) };
	if (redis_command(cmd, 9, argv, read_done, q) != 0) {
		free(q);
		return -1;
	}
	return 0;
}

/* ==== Channels ======================================================== */

size_t
cluster_channel_group(const uint8_t *ch, size_t len, const char **name)
{
	if (len < 7 || len > 6 + HUB_GROUP_MAX || memcmp(ch, "wsd:{", 5) != 0 ||
	    ch[len - 1] != '}')
		return 0;
	*name = (const char *)ch + 5;
	return len - 6;
}

long
cluster_parse_event(const uint8_t *p, size_t len,
    char epoch[HUB_EPOCH_LEN + 1], uint64_t *seq)
{
	size_t i, k;

	for (i = 0; i < len && i <= HUB_EPOCH_LEN && p[i] != ':'; i++)
		;
	if (i == 0 || i > HUB_EPOCH_LEN || i == len)
		return -1;
	memcpy(epoch, p, i);
	epoch[i] = '\0';
	*seq = 0;
	/* At most 19 digits: every such number fits in 64 bits. */
	for (k = ++i; i < len && i - k < 19 && p[i] >= '0' && p[i] <= '9'; i++)
		*seq = *seq * 10 + (p[i] - '0');
	if (i == k || i >= len || p[i] != ':' || *seq == 0)
		return -1;
	return (long)i + 1;
}

/*
 * "EPOCH:SEQ:ENVELOPE" on a group's channel: parsed here, delivered by
 * the hub.  Anything else is logged and dropped (it is not ours).
 */
static void
on_message(void *arg, const struct redis_msg *m)
{
	const char *name = NULL;
	size_t n = cluster_channel_group(m->channel, m->channel_len, &name);
	char epoch[HUB_EPOCH_LEN + 1];
	uint64_t seq;
	long off;

	(void)arg;
	if (n == 0 || (off = cluster_parse_event(m->data, m->len, epoch,
	    &seq)) < 0) {
		log_msg(LOG_WARN, "cluster message not understood");
		return;
	}
	hub_cluster_event(name, n, epoch, seq, m->data + off, m->len - off);
}

static void
on_subscribed(void *arg, const uint8_t *ch, size_t len)
{
	const char *name = NULL;
	size_t n = cluster_channel_group(ch, len, &name);

	(void)arg;
	if (n > 0)
		hub_cluster_watching(name, n);
}

int
cluster_watch(const char *name, size_t n)
{
	char ch[96];

	return redis_subscribe(sub, ch, cluster_key(ch, sizeof ch, name, n,
	    "")) == 0 ? 0 : -1;
}

int
cluster_unwatch(const char *name, size_t n)
{
	char ch[96];

	return redis_unsubscribe(sub, ch, cluster_key(ch, sizeof ch, name,
	    n, "")) == 0 ? 0 : -1;
}

/* ==== Start and stop ================================================== */

/* Reads that failed with Redis up (an error reply: out of memory, a
 * script refused) have nothing else to bring them back: try again each
 * second.  hub_cluster_up() walks only the groups waiting for one. */
static void
retry_tick(void *arg)
{
	(void)arg;
	if (cluster_up())
		hub_cluster_up();
}

int
cluster_init(const struct cluster_config *cfg, char *err, size_t errlen)
{
	struct redis_config rc = { 0 };
	uint8_t md[SHA_DIGEST_LENGTH];

	for (int i = 0; i < nscripts; i++) {
		SHA1((const uint8_t *)scripts[i], strlen(scripts[i]), md);
		for (int k = 0; k < SHA_DIGEST_LENGTH; k++)
			snprintf(sha[i] + 2 * k, 3, "%02x", md[k]);
	}
	on_up = cfg->on_up;
	if (loop_timer(RETRY_MS, retry_tick, NULL) == -1) {
		snprintf(err, errlen, "cannot make a timer");
		return -1;
	}
	rc.url = cfg->url;
	rc.ca_file = cfg->ca_file;
	rc.on_state = on_state;
	rc.arg = NULL;
	if ((cmd = redis_new(&rc, err, errlen)) == NULL)
		return -1;
	rc.subscriber = 1;
	rc.on_message = on_message;
	rc.on_subscribed = on_subscribed;
	rc.arg = (void *)1;	/* tells on_state which */
	if ((sub = redis_new(&rc, err, errlen)) == NULL) {
		redis_free(cmd);
		cmd = NULL;
		return -1;
	}
	return 0;
}

void
cluster_free(void)
{
	redis_free(sub);
	sub = NULL;
	/* Fails what is in flight: their callbacks run now and release
	 * what they held. */
	redis_free(cmd);
	cmd = NULL;
	free(evs);
	evs = NULL;
	evcap = 0;
}
