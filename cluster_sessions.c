/*
 * cluster_sessions.c - the shared session registry: its script, and the
 * replies turned into what session_events.c works with.
 *
 * Every call is one EVALSHA of the script below with the same first six
 * arguments (the key prefix, the operation, this node, whether changes
 * are journaled, --session-ttl in ms, --max-sessions), then the
 * operation's own.  The script reads Redis's clock (TIME) for every time
 * it keeps, so nodes whose clocks differ agree on when a session emptied
 * and when a node last reported.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "cluster_sessions.h"
#include "hub.h"
#include "log.h"

#define PREFIX		"wsd:{monitor}:s:"
#define MAX_NODES	64	/* figures kept from at most this many */

static const char script[] = CLUSTER_LUA_PUB
    "local P, op, node = ARGV[1], ARGV[2], ARGV[3]\n"
    "local events = ARGV[4] == '1'\n"
    "local ttl, max = tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local lease = tonumber(ARGV[7])\n"
    "local TAKE = 10000\n"
    "local a = {unpack(ARGV, 8)}\n"	/* the operation's own */
    "local REC, ORD, CON, IDLE = P..'rec', P..'order', P..'conns', P..'idle'\n"
    "local JRN, PEND, UPD, ST = P..'journal', P..'pending', P..'updated',\n"
    "    P..'state'\n"
    "local NODES, STATS, LEASE = P..'nodes', P..'stats', P..'lease'\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    /* A session's record, or nil. */
    "local function get(id)\n"
    "  local r = redis.call('HGET', REC, id)\n"
    "  if not r then return nil end\n"
    "  local g, b, at, m = string.match(r, '^(%d+) (%d) (%S+) (.*)$')\n"
    "  return {gen = g, by = b, at = at, meta = m}\n"
    "end\n"
    "local function note(kind, id)\n"
    "  if events then redis.call('RPUSH', JRN, kind .. id) end\n"
    "end\n"
    /* The journal's bound: twice --max-sessions, as on one node. */
    "local function full()\n"
    "  return events and redis.call('LLEN', JRN) >= 2 * max + 2\n"
    "end\n"
    "local function room()\n"
    "  return redis.call('ZCARD', ORD) < max and not full()\n"
    "end\n"
    "local function make(id, by, at, meta)\n"
    "  local gen = redis.call('HINCRBY', ST, 'total', 1)\n"
    "  redis.call('HSET', REC, id, gen .. ' ' .. by .. ' ' .. at .. ' ' ..\n"
    "      meta)\n"
    "  redis.call('ZADD', ORD, gen, id)\n"
    "  note('c', id)\n"
    "  return gen\n"
    "end\n"
    "local function destroy(id)\n"
    "  redis.call('HDEL', REC, id)\n"
    "  redis.call('ZREM', ORD, id)\n"
    "  redis.call('HDEL', CON, id)\n"
    "  redis.call('ZREM', IDLE, id)\n"
    "  note('d', id)\n"
    "end\n"
    /* n connections of generation gen left session id.  A session
     * made by connections, left without any, is idle: it ends
     * --session-ttl later, counted from grace ms from now. */
    "local function drop(id, gen, n, grace)\n"
    "  local s = get(id)\n"
    "  if not s or s.gen ~= gen then return end\n"
    "  if redis.call('HINCRBY', CON, id, -n) > 0 then return end\n"
    "  redis.call('HDEL', CON, id)\n"
    "  if s.by ~= '1' then return end\n"
    "  if ttl == 0 and grace == 0 then destroy(id) else\n"
    "    redis.call('ZADD', IDLE, now + grace, id)\n"
    "  end\n"
    "end\n"
    /* Take back what node who held; its holds, as "id gen" and count.
     * Its sessions are given a lease's grace: a node forgotten while
     * alive (stalled, or Redis stalled) holds them again at its next
     * tick, so they do not end and start again. */
    "local function forget(who)\n"
    "  local k = P .. 'node:' .. who\n"
    "  local h = redis.call('HGETALL', k)\n"
    "  for i = 1, #h, 2 do\n"
    "    local id, gen = string.match(h[i], '^(%S+) (%d+)$')\n"
    "    drop(id, gen, tonumber(h[i + 1]), lease)\n"
    "  end\n"
    "  redis.call('DEL', k)\n"
    "  return h\n"
    "end\n"
    /* A node counts until now + lease unless it reports again. */
    "local function seen()\n"
    "  redis.call('HSET', NODES, node, now + lease)\n"
    "end\n"
    "if op == 'create' or op == 'put' then\n"
    "  local id, s = a[1], get(a[1])\n"
    "  if not s then\n"
    "    if not room() then return {503} end\n"
    "    return {201, make(id, '0', a[2], a[3])}\n"
    "  end\n"
    "  if op == 'create' then return {409} end\n"
    "  if s.meta ~= a[3] then\n"
    "    if full() then return {503} end\n"
    "    if events and redis.call('HSETNX', UPD, id, 1) == 1 then\n"
    "      note('u', id)\n"
    "    end\n"
    "  end\n"
    "  redis.call('HSET', REC, id, s.gen .. ' 0 ' .. s.at .. ' ' .. a[3])\n"
    "  redis.call('ZREM', IDLE, id)\n"
    "  return {200, s.gen}\n"
    "elseif op == 'delete' then\n"
    "  local s = get(a[1])\n"
    "  if not s then return {404} end\n"
    "  if full() then return {503} end\n"
    /* Remembered (an hour) for holders that come back, even those
     * forgotten meanwhile, whose holds no longer count. */
    "  redis.call('SET', P .. 'deleted:' .. a[1] .. ' ' .. s.gen, 1,\n"
    "      'PX', 3600000)\n"
    "  destroy(a[1])\n"
    "  return {204}\n"
    "elseif op == 'attach' then\n"
    /* a[3]: the generation the connection held before Redis was lost, or
     * 0: a session deleted while it was held stays deleted (410); one
     * that ended otherwise (its holders forgotten) or that Redis lost is
     * made again.  A node counts from its first hold, so one killed
     * before its first tick is forgotten too. */
    "  local id, s, gen = a[1], get(a[1])\n"
    "  if a[3] ~= '0' and\n"
    "      redis.call('EXISTS', P .. 'deleted:' .. id .. ' ' .. a[3]) == 1\n"
    "      then return {410} end\n"
    "  if s then\n"
    "    gen = s.gen\n"
    "  else\n"
    "    if not room() then return {503} end\n"
    "    gen = make(id, '1', a[2], '')\n"
    "  end\n"
    "  redis.call('HINCRBY', CON, id, 1)\n"
    "  redis.call('ZREM', IDLE, id)\n"
    "  redis.call('HINCRBY', P .. 'node:' .. node, id .. ' ' .. gen, 1)\n"
    "  if redis.call('HEXISTS', NODES, node) == 0 then seen() end\n"
    "  return {200, gen}\n"
    "elseif op == 'detach' then\n"
    /* Not this node's (forgotten meanwhile): nothing to take back. */
    "  local k, f = P .. 'node:' .. node, a[1] .. ' ' .. a[2]\n"
    "  local c = redis.call('HINCRBY', k, f, -1)\n"
    "  if c <= 0 then redis.call('HDEL', k, f) end\n"
    "  if c >= 0 then drop(a[1], a[2], 1, 0) end\n"
    "  return {200}\n"
    /* With what the lease holder took back when it forgot this node,
     * so that a hold whose reply was lost learns its generation. */
    "elseif op == 'forget' then\n"
    "  local out = forget(node)\n"
    "  local was = redis.call('HGETALL', P .. 'forgot:' .. node)\n"
    "  for i = 1, #was, 2 do\n"
    "    if was[i] ~= '' then\n"
    "      out[#out + 1] = was[i]\n"
    "      out[#out + 1] = was[i + 1]\n"
    "    end\n"
    "  end\n"
    "  redis.call('DEL', P .. 'forgot:' .. node)\n"
    "  table.insert(out, 1, 200)\n"
    "  return out\n"
    "elseif op == 'list' then\n"
    "  local out = {redis.call('ZCARD', ORD),\n"
    "      redis.call('HGET', ST, 'total') or 0}\n"
    "  local o, lim = tonumber(a[1]), tonumber(a[2])\n"
    "  if lim == 0 then return out end\n"
    "  for _, id in ipairs(redis.call('ZRANGE', ORD, o, o + lim - 1)) do\n"
    "    out[#out + 1] = id\n"
    "    out[#out + 1] = redis.call('HGET', REC, id)\n"
    "    out[#out + 1] = redis.call('HGET', CON, id) or 0\n"
    "  end\n"
    "  return out\n"
    "elseif op == 'tick' then\n"
    /* fresh: this node was forgotten (or never counted): it must take
     * back what it holds and hold it again. */
    "  local fresh = 0\n"
    "  if redis.call('HEXISTS', NODES, node) == 0 or\n"
    "      redis.call('EXISTS', P .. 'forgot:' .. node) == 1 then\n"
    "    fresh = 1\n"
    "  end\n"
    "  seen()\n"
    "  redis.call('HSET', STATS, node, a[1])\n"
    "  local holder, lead = redis.call('GET', LEASE), 0\n"
    "  if not holder or holder == node then\n"
    "    lead = 1\n"
    "    redis.call('SET', LEASE, node, 'PX', lease)\n"
    "    local nodes = redis.call('HGETALL', NODES)\n"
    "    for i = 1, #nodes, 2 do\n"
    /* Reports lapsed: forgotten, and told so if it reports again
     * (with what it held, kept for an hour). */
    "      local who = nodes[i]\n"
    "      if now > tonumber(nodes[i + 1]) then\n"
    "        local h, k = forget(who), P .. 'forgot:' .. who\n"
    "        redis.call('HSET', k, '', 0)\n"
    "        for j = 1, #h, 2 do redis.call('HSET', k, h[j], h[j + 1]) end\n"
    "        redis.call('PEXPIRE', k, 3600000)\n"
    "        redis.call('HDEL', NODES, who)\n"
    "        redis.call('HDEL', STATS, who)\n"
    "      end\n"
    "    end\n"
    "    for _, id in ipairs(redis.call('ZRANGEBYSCORE', IDLE, '-inf',\n"
    "        now - ttl, 'LIMIT', 0, 10000)) do\n"
    "      local s = get(id)\n"
    "      if s and s.by == '1' and not redis.call('HGET', CON, id) then\n"
    "        destroy(id)\n"
    "      else\n"
    "        redis.call('ZREM', IDLE, id)\n"
    "      end\n"
    "    end\n"
    /* A take: its number, and the count of sessions it ends at: the
     * count now, less what the journal holds after it.  At most TAKE
     * changes, so that announcing them fits in one command. */
    "    if redis.call('EXISTS', PEND) == 0 and\n"
    "        redis.call('EXISTS', JRN) == 1 then\n"
    "      local at = redis.call('ZCARD', ORD)\n"
    "      if redis.call('LLEN', JRN) <= TAKE then\n"
    "        redis.call('RENAME', JRN, PEND)\n"
    "      else\n"
    "        local part = redis.call('LRANGE', JRN, 0, TAKE - 1)\n"
    "        for i = 1, #part, 1000 do\n"
    "          redis.call('RPUSH', PEND,\n"
    "              unpack(part, i, math.min(i + 999, #part)))\n"
    "        end\n"
    "        redis.call('LTRIM', JRN, TAKE, -1)\n"
    "        for _, e in ipairs(redis.call('LRANGE', JRN, 0, -1)) do\n"
    "          local k = string.sub(e, 1, 1)\n"
    "          if k == 'c' then at = at - 1 elseif k == 'd' then\n"
    "            at = at + 1 end\n"
    "        end\n"
    "      end\n"
    "      redis.call('DEL', UPD)\n"
    "      redis.call('HINCRBY', ST, 'take', 1)\n"
    "      redis.call('HSET', ST, 'at_take', at)\n"
    "    end\n"
    "  end\n"
    "  local out = {lead, redis.call('ZCARD', ORD),\n"
    "      redis.call('HGET', ST, 'total') or 0, fresh}\n"
    "  local st = redis.call('HVALS', STATS)\n"
    "  out[#out + 1] = #st\n"
    "  for _, v in ipairs(st) do out[#out + 1] = v end\n"
    "  if lead == 0 then return out end\n"
    "  local x = redis.call('HMGET', ST, 'take', 'at_take', 'last_event')\n"
    "  out[#out + 1] = x[1] or 0\n"
    "  out[#out + 1] = x[2] or 0\n"
    "  out[#out + 1] = x[3] or 0\n"
    "  out[#out + 1] = now\n"
    "  for _, e in ipairs(redis.call('LRANGE', PEND, 0, -1)) do\n"
    "    out[#out + 1] = e\n"
    "  end\n"
    "  return out\n"
    "elseif op == 'commit' then\n"
    /* Only the take it was made from, only by the lease holder: a
     * commit that arrives late (its take announced by another, or a
     * newer take pending) changes nothing. */
    "  if redis.call('GET', LEASE) ~= node or\n"
    "      redis.call('EXISTS', PEND) == 0 or\n"
    "      redis.call('HGET', ST, 'take') ~= a[1] then return {0} end\n"
    "  for i = 8, #a - 1, 2 do\n"
    "    pub(a[2], a[3], a[5], a[i], a[i + 1], a[6], a[7], a[4])\n"
    "  end\n"
    "  redis.call('DEL', PEND)\n"
    "  if #a >= 8 then redis.call('HSET', ST, 'last_event', now) end\n"
    "  return {1}\n"
    "end\n"
    "return redis.error_reply('unknown operation ' .. op)\n";

static int		 sid = -1;	/* the script's number in cluster.c */
static char		 node[17];

/* Buffers a reply is turned into (valid during its callback). */
static struct csess_row		*rows;
static struct csess_change	*changes;
static struct csess_hold	*held;
static uint32_t			 rowcap, changecap, heldcap;
static struct csess_figures	 figs[MAX_NODES];

int
csess_init(void)
{
	hub_random_hex(node, 16);
	return (sid = cluster_script(script)) == -1 ? -1 : 0;
}

const char *
csess_node(void)
{
	return node;
}

/*
 * The lease, and how long a node counts after its last report: three
 * ticks, at least a second.
 */
static unsigned
lease_ms(void)
{
	unsigned l = 3 * hub_config()->tick_ms;

	return l < 1000 ? 1000 : l;
}

/*
 * EVALSHA of the script: the seven common arguments, then argc of op's.
 */
static int
call(const char *op, int argc, const struct resp_arg *argv,
    redis_reply_fn *cb, void *arg)
{
	const struct hub_config *cfg = hub_config();
	struct resp_arg a[CLUSTER_EVAL_ARGS];
	char ttl[24], max[24], lease[24];

	snprintf(ttl, sizeof ttl, "%u", cfg->session_ttl_ms);
	snprintf(max, sizeof max, "%u", cfg->max_sessions);
	snprintf(lease, sizeof lease, "%u", lease_ms());
	a[0] = (struct resp_arg){ PREFIX, sizeof PREFIX - 1 };
	a[1] = (struct resp_arg){ op, strlen(op) };
	a[2] = (struct resp_arg){ node, 16 };
	a[3] = (struct resp_arg){ cfg->session_events ? "1" : "0", 1 };
	a[4] = (struct resp_arg){ ttl, strlen(ttl) };
	a[5] = (struct resp_arg){ max, strlen(max) };
	a[6] = (struct resp_arg){ lease, strlen(lease) };
	if (argc > CLUSTER_EVAL_ARGS - 7)
		return -1;
	if (argc > 0)
		memcpy(a + 7, argv, argc * sizeof *argv);
	return cluster_eval(sid, argc + 7, a, cb, arg);
}

/* A bulk string's bytes, or -1. */
static int
bulk(const struct resp_tok *t, const uint8_t **p, size_t *n)
{
	if (t == NULL || t->type != RESP_T_BULK || t->null)
		return -1;
	*p = t->p;
	*n = (size_t)t->n;
	return 0;
}

/* Room for n elements of size sz in *v (capacity *cap).  0 or -1. */
static int
room_for(void **v, uint32_t *cap, uint32_t n, size_t sz)
{
	void *p;

	if (n <= *cap)
		return 0;
	if ((p = reallocarray(*v, n, sz)) == NULL)
		return -1;
	*v = p;
	*cap = n;
	return 0;
}

/* Whom a reply goes to: a callback of one of the three kinds. */
struct wait {
	union {
		csess_fn	*change;
		csess_page_fn	*page;
		csess_tick_fn	*tick;
		csess_forget_fn	*forget;
	} cb;
	void		*arg;
};

/* call() with a copy of w for done, which frees it. */
static int
ask(const char *op, int argc, const struct resp_arg *argv,
    redis_reply_fn *done, struct wait w)
{
	struct wait *p = malloc(sizeof *p);

	if (p == NULL)
		return -1;
	*p = w;
	if (call(op, argc, argv, done, p) == -1) {
		free(p);
		return -1;
	}
	return 0;
}

/* ==== Changes ========================================================= */

/* {status} or {status, gen}. */
static void
changed(void *arg, const struct resp_tok *reply, const char *err)
{
	struct wait *w = arg;
	uint64_t status = 0, gen = 0;

	(void)err;
	if (cluster_failed(reply) || reply->type != RESP_T_ARRAY ||
	    reply->n < 1 || resp_u64(resp_elem(reply, 0), &status) != 0 ||
	    (reply->n > 1 && resp_u64(resp_elem(reply, 1), &gen) != 0))
		status = 0;
	if (w->cb.change != NULL)
		w->cb.change(w->arg, (int)status, gen);
	free(w);
}

static int
change(const char *op, int argc, const struct resp_arg *argv, csess_fn *cb,
    void *arg)
{
	return ask(op, argc, argv, changed, (struct wait){ .cb.change = cb,
	    .arg = arg });
}

int
csess_create(const char *id, size_t n, const uint8_t *meta, size_t mlen,
    int put, csess_fn *cb, void *arg)
{
	char at[32];

	log_timestamp(at);
	return change(put ? "put" : "create", 3, (struct resp_arg[]){
	    { id, n }, { at, strlen(at) }, { meta, mlen } }, cb, arg);
}

int
csess_delete(const char *id, size_t n, csess_fn *cb, void *arg)
{
	return change("delete", 1, (struct resp_arg[]){ { id, n } }, cb, arg);
}

int
csess_attach(const char *id, size_t n, uint64_t was, csess_fn *cb,
    void *arg)
{
	char at[32], g[24];

	log_timestamp(at);
	snprintf(g, sizeof g, "%llu", (unsigned long long)was);
	return change("attach", 3, (struct resp_arg[]){ { id, n },
	    { at, strlen(at) }, { g, strlen(g) } }, cb, arg);
}

int
csess_detach(const char *id, size_t n, uint64_t gen)
{
	char g[24];

	snprintf(g, sizeof g, "%llu", (unsigned long long)gen);
	return change("detach", 2, (struct resp_arg[]){ { id, n },
	    { g, strlen(g) } }, NULL, NULL);
}

/* {200, "id gen", count, ...}: what this node held. */
static void
forgot(void *arg, const struct resp_tok *reply, const char *err)
{
	struct wait *w = arg;
	const struct resp_tok *t;
	uint32_t n = 0, k;

	(void)err;
	if (cluster_failed(reply) || reply->type != RESP_T_ARRAY ||
	    reply->n < 1 || (reply->n - 1) % 2 != 0)
		goto fail;
	k = (uint32_t)((reply->n - 1) / 2);
	if (room_for((void **)&held, &heldcap, k, sizeof *held) == -1)
		goto fail;
	t = resp_elem(reply, 0);
	for (uint32_t i = 0; i < k; i++) {
		const uint8_t *p, *sp;
		uint64_t gen = 0;

		t = resp_next(t);
		if (t->type != RESP_T_BULK || t->null ||
		    (sp = memchr(t->p, ' ', t->n)) == NULL)
			goto fail;
		for (p = sp + 1; p < t->p + t->n && *p >= '0' && *p <= '9'; p++)
			gen = gen * 10 + (*p - '0');
		held[n].id = (const char *)t->p;
		held[n].n = (size_t)(sp - t->p);
		held[n].gen = gen;
		n++;
		t = resp_next(t);	/* the count */
	}
	w->cb.forget(w->arg, held, n);
	free(w);
	return;
fail:
	w->cb.forget(w->arg, NULL, 0);
	free(w);
}

int
csess_forget(csess_forget_fn *cb, void *arg)
{
	return ask("forget", 0, NULL, forgot, (struct wait){ .cb.forget = cb,
	    .arg = arg });
}

/* ==== Reads =========================================================== */

/*
 * "GEN BY_CONN CREATED_AT METADATA" into r's created_at and metadata.
 * 0 or -1.
 */
static int
parse_rec(const uint8_t *p, size_t n, struct csess_row *r)
{
	const uint8_t *sp[3];
	size_t k = 0;

	for (size_t i = 0; i < n && k < 3; i++)
		if (p[i] == ' ')
			sp[k++] = p + i;
	if (k < 3)
		return -1;
	r->at = sp[1] + 1;
	r->atlen = (size_t)(sp[2] - r->at);
	r->meta = sp[2] + 1;
	r->mlen = n - (size_t)(r->meta - p);
	return 0;
}

/* {active, total, id1, record1, conns1, ...} */
static void
listed(void *arg, const struct resp_tok *reply, const char *err)
{
	struct wait *w = arg;
	struct csess_page pg = { 0 };
	const struct resp_tok *t;
	uint32_t n;

	(void)err;
	if (cluster_failed(reply) || reply->type != RESP_T_ARRAY ||
	    reply->n < 2 || (reply->n - 2) % 3 != 0 ||
	    resp_u64(t = resp_elem(reply, 0), &pg.active) != 0 ||
	    resp_u64(t = resp_next(t), &pg.total) != 0)
		goto fail;
	n = (uint32_t)((reply->n - 2) / 3);
	if (room_for((void **)&rows, &rowcap, n, sizeof *rows) == -1)
		goto fail;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *rec;
		size_t rlen;

		if (bulk(t = resp_next(t), &rows[i].id, &rows[i].idlen) != 0 ||
		    bulk(t = resp_next(t), &rec, &rlen) != 0 ||
		    parse_rec(rec, rlen, &rows[i]) != 0 ||
		    resp_u64(t = resp_next(t), &rows[i].conns) != 0)
			goto fail;
	}
	pg.n = n;
	pg.rows = rows;
	w->cb.page(w->arg, &pg);
	free(w);
	return;
fail:
	w->cb.page(w->arg, NULL);
	free(w);
}

int
csess_list(uint64_t offset, uint64_t limit, csess_page_fn *cb, void *arg)
{
	char o[24], l[24];

	snprintf(o, sizeof o, "%llu", (unsigned long long)offset);
	snprintf(l, sizeof l, "%llu", (unsigned long long)limit);
	return ask("list", 2, (struct resp_arg[]){ { o, strlen(o) },
	    { l, strlen(l) } }, listed, (struct wait){ .cb.page = cb,
	    .arg = arg });
}

/* ==== The tick ======================================================== */

/* "NODE CONNECTIONS GROUPS IN OUT WATCHERS UPTIME" into f.  0 or -1. */
static int
parse_figures(const struct resp_tok *t, struct csess_figures *f)
{
	char s[256];
	unsigned long long v[6];

	if (t == NULL || t->type != RESP_T_BULK || t->null ||
	    t->n >= (int64_t)sizeof s)
		return -1;
	memcpy(s, t->p, t->n);
	s[t->n] = '\0';
	if (sscanf(s, "%16s %llu %llu %llu %llu %llu %llu", f->node, &v[0],
	    &v[1], &v[2], &v[3], &v[4], &v[5]) != 7)
		return -1;
	f->connections = v[0];
	f->groups = v[1];
	f->messages_in = v[2];
	f->messages_out = v[3];
	f->watchers = v[4];
	f->uptime_s = v[5];
	return 0;
}

/* {leader, active, total, fresh, nnodes, figures..., [take, at_take,
 * last_event, now, change...]} */
static void
ticked(void *arg, const struct resp_tok *reply, const char *err)
{
	struct wait *w = arg;
	struct csess_tick tk = { 0 };
	const struct resp_tok *t;
	uint64_t lead, fresh, nn;
	int64_t left;

	(void)err;
	if (cluster_failed(reply) || reply->type != RESP_T_ARRAY ||
	    reply->n < 5 || resp_u64(t = resp_elem(reply, 0), &lead) != 0 ||
	    resp_u64(t = resp_next(t), &tk.active) != 0 ||
	    resp_u64(t = resp_next(t), &tk.total) != 0 ||
	    resp_u64(t = resp_next(t), &fresh) != 0 ||
	    resp_u64(t = resp_next(t), &nn) != 0 ||
	    nn > (uint64_t)reply->n - 5)
		goto fail;
	for (uint64_t i = 0; i < nn; i++) {
		t = resp_next(t);
		if (tk.nnodes < MAX_NODES &&
		    parse_figures(t, &figs[tk.nnodes]) == 0)
			tk.nnodes++;
	}
	tk.nodes = figs;
	tk.leader = lead != 0;
	tk.fresh = fresh != 0;
	left = reply->n - 5 - (int64_t)nn;
	if (tk.leader) {
		if (left < 4 ||
		    resp_u64(t = resp_next(t), &tk.take) != 0 ||
		    resp_u64(t = resp_next(t), &tk.at_take) != 0 ||
		    resp_u64(t = resp_next(t), &tk.last_event_ms) != 0 ||
		    resp_u64(t = resp_next(t), &tk.now_ms) != 0 ||
		    room_for((void **)&changes, &changecap,
		    (uint32_t)(left - 4), sizeof *changes) == -1)
			goto fail;
		for (int64_t i = 0; i < left - 4; i++) {
			t = resp_next(t);
			if (t->type != RESP_T_BULK || t->null || t->n < 2 ||
			    t->n > HUB_GROUP_MAX + 1)
				continue;	/* not ours: skipped */
			changes[tk.nchanges].kind = (char)t->p[0];
			changes[tk.nchanges].id = (const char *)t->p + 1;
			changes[tk.nchanges].n = (size_t)t->n - 1;
			tk.nchanges++;
		}
		tk.changes = changes;
	}
	w->cb.tick(w->arg, &tk);
	free(w);
	return;
fail:
	w->cb.tick(w->arg, NULL);
	free(w);
}

int
csess_tick(const struct csess_figures *me, csess_tick_fn *cb, void *arg)
{
	char fig[256];

	snprintf(fig, sizeof fig, "%s %llu %llu %llu %llu %llu %llu", node,
	    (unsigned long long)me->connections,
	    (unsigned long long)me->groups,
	    (unsigned long long)me->messages_in,
	    (unsigned long long)me->messages_out,
	    (unsigned long long)me->watchers,
	    (unsigned long long)me->uptime_s);
	return ask("tick", 1, (struct resp_arg[]){ { fig, strlen(fig) } },
	    ticked, (struct wait){ .cb.tick = cb, .arg = arg });
}

static void
committed(void *arg, const struct resp_tok *reply, const char *err)
{
	uint64_t ok = 0;

	(void)arg;
	(void)err;
	if (cluster_failed(reply) || reply->type != RESP_T_ARRAY ||
	    resp_u64(resp_elem(reply, 0), &ok) != 0 || ok == 0)
		log_msg(LOG_INFO, "session changes left to the next tick "
		    "(reply lost, or the lease moved)");
}

int
csess_commit(uint64_t take, int nev, const struct resp_arg *ev)
{
	char tk[24], meta[96], log[96], ch[96], epoch[HUB_EPOCH_LEN + 1];
	char bound[24], bytes[24];
	struct resp_arg a[7 + 6];

	if (nev > 3)
		return -1;
	snprintf(tk, sizeof tk, "%llu", (unsigned long long)take);
	cluster_bounds(bound, bytes);
	hub_random_hex(epoch, HUB_EPOCH_LEN);
	a[0] = (struct resp_arg){ tk, strlen(tk) };
	a[1] = (struct resp_arg){ meta, cluster_key(meta, sizeof meta,
	    "monitor", 7, ":meta") };
	a[2] = (struct resp_arg){ log, cluster_key(log, sizeof log,
	    "monitor", 7, ":log") };
	a[3] = (struct resp_arg){ ch, cluster_key(ch, sizeof ch, "monitor",
	    7, "") };
	a[4] = (struct resp_arg){ epoch, HUB_EPOCH_LEN };
	a[5] = (struct resp_arg){ bound, strlen(bound) };
	a[6] = (struct resp_arg){ bytes, strlen(bytes) };
	if (nev > 0)
		memcpy(a + 7, ev, 2 * nev * sizeof *ev);
	return call("commit", 7 + 2 * nev, a, committed, NULL);
}
