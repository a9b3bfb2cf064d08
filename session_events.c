/*
 * session_events.c - the session registry and the timer-driven diff.
 *
 * A session is an id with created_at, metadata and a count of live
 * connections.  Every --tick a timerfd fires and this file
 *   1. ends connection-made sessions whose last connection has been gone
 *      for --session-ttl (the idle list holds them oldest first, so this
 *      looks only at the ones due),
 *   2. publishes what changed since the last tick to group "monitor":
 *      session_created with every id created, session_updated with every
 *      id whose metadata a PUT changed, then session_destroyed with every
 *      id destroyed, never netted against each other,
 *   3. has host.c read the host and process figures and raise or clear
 *      its system_alert events,
 *   4. publishes realtime_update to "monitor" when anyone watches, the
 *      host figures in its "host" member.
 *
 * A snapshot alone cannot see a session that came and went between two
 * ticks, so the diff is driven by a journal: every create, update and
 * destroy is appended as it happens, and the tick turns the journal into
 * events.  The count at the last tick plus the journal gives consistent
 * counts: previous + created = the first event's current; minus destroyed
 * = now.  "delta" is the size of each change; event_type says which way.
 *
 * It does no I/O (host.c reads /proc): events leave through hub_publish().
 */
#include <sys/random.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "cluster_sessions.h"
#include "host.h"
#include "hub.h"
#include "json.h"
#include "log.h"
#include "session_events.h"
#include "ws.h"

struct sess {
	struct hub_name	 hn;		/* first: its id, in the registry */
	struct sess	*prev, *next;	/* creation order */
	struct sess	*iprev, *inext;	/* idle list, while idle */
	char		*meta;		/* owned raw JSON, or NULL */
	size_t		 mlen;
	uint32_t	 conns;		/* live connections */
	uint32_t	 updated_tick;	/* tick_no of its last journaled update */
	uint8_t		 by_conn;	/* ends with its last connection */
	uint8_t		 orphan;	/* deleted; freed by the last detach */
	uint8_t		 idle;		/* by_conn, no connection: on the idle list */
	uint64_t	 empty_since;	/* ms since its last connection left */
	/* With --redis, a struct sess is one connection's hold on a session
	 * in Redis (the registry is there), on the list of holds: */
	uint64_t	 gen;		/* the session's generation, once held */
	uint8_t		 held;		/* Redis counted this connection */
	uint8_t		 inflight;	/* attaches unanswered */
	uint8_t		 closed;	/* the connection left: free when answered */
	uint8_t		 refused;	/* --max-sessions: said once, tried again */
	uint8_t		 gone;		/* its session was deleted: holds none */
	char		 created_at[32];
};

static struct hub_table	  table;	/* every live session by id */
static struct sess	 *first, *last;	/* creation order */
/*
 * Connection-made sessions without a connection, in the order they became
 * empty.  --session-ttl is the same for all, so the head is the first due
 * and expiry stops at the first one that is not.
 */
static struct sess	 *idle_first, *idle_last;
static unsigned		  count;
static uint64_t		  total;
static struct sess_journal jrnl;
static uint32_t		  tick_no = 1;		/* journals published, + 1 */
static unsigned		  count_at_tick;	/* live count at the last tick */
static uint64_t		  last_event_ms;	/* 0: no session_event yet */

/* With --redis: this node's holds, and the registry's figures at the last
 * tick (every node's). */
static struct sess	 *holds;
static struct csess_figures cluster_sum;	/* node "": the sums */
static uint64_t		  shared_active, shared_total;
static unsigned		  shared_nodes;
static int		  ticking;		/* a tick is unanswered */

/* ==== The diff (pure) ================================================= */

int
sess_journal_add(struct sess_journal *j, enum sess_change change,
    const char *id, size_t n)
{
	struct sess_ids *l = change == SESS_DESTROYED ? &j->destroyed :
	    change == SESS_UPDATED ? &j->updated : &j->created;
	char (*ids)[HUB_GROUP_MAX + 1] = hub_grow(l->ids, l->n, &l->cap,
	    sizeof *ids, 16);

	if (ids == NULL)
		return -1;
	l->ids = ids;
	memcpy(l->ids[l->n], id, n);
	l->ids[l->n][n] = '\0';
	l->n++;
	return 0;
}

void
sess_journal_clear(struct sess_journal *j)
{
	free(j->created.ids);
	free(j->destroyed.ids);
	free(j->updated.ids);
	memset(j, 0, sizeof *j);
}

/*
 * Turn the journal into at most three events: created first, then
 * updated (counts unchanged), then destroyed, each with its own counts.
 * Nothing in the journal, no event.
 */
int
sess_diff(unsigned previous, const struct sess_journal *j,
    struct sess_event ev[3])
{
	int n = 0;
	unsigned now = previous;

	if (j->created.n > 0) {
		ev[n].change = SESS_CREATED;
		ev[n].ids = &j->created;
		ev[n].previous = now;
		now += j->created.n;
		ev[n].current = now;
		n++;
	}
	if (j->updated.n > 0) {
		ev[n].change = SESS_UPDATED;
		ev[n].ids = &j->updated;
		ev[n].previous = now;
		ev[n].current = now;
		n++;
	}
	if (j->destroyed.n > 0) {
		ev[n].change = SESS_DESTROYED;
		ev[n].ids = &j->destroyed;
		ev[n].previous = now;
		now -= j->destroyed.n;
		ev[n].current = now;
		n++;
	}
	return n;
}

/* ==== Registry ======================================================== */

/* The live session called id[0..n), or NULL (hn is its first member). */
static struct sess *
find(const char *id, size_t n)
{
	return (struct sess *)hub_table_get(&table, id, n);
}

/* The tick; a full journal runs it early, without expiry or update. */
static void	tick(int timer);

/* With --redis, a connection's hold on a session (below). */
static struct sess *shared_attach(const char *id, size_t n);
static void	shared_detach(struct sess *s);

/*
 * The journal is bounded too: at its limit the tick runs early.  Called
 * before a change touches the count, so the tick's counts and its
 * journal describe the same moment.
 */
static void
journal_room(void)
{
	if (jrnl.created.n + jrnl.destroyed.n + jrnl.updated.n >=
	    2 * hub_config()->max_sessions + 2)
		tick(0);
}

static void
note(enum sess_change change, const char *id, size_t n)
{
	if (hub_config()->session_events &&
	    sess_journal_add(&jrnl, change, id, n) == -1)
		log_msg(LOG_ERROR, "session journal: out of memory");
}

static void
idle_add(struct sess *s)
{
	s->idle = 1;
	s->iprev = idle_last;
	s->inext = NULL;
	if (idle_last != NULL)
		idle_last->inext = s;
	else
		idle_first = s;
	idle_last = s;
}

static void
idle_del(struct sess *s)
{
	if (!s->idle)
		return;
	if (s->iprev != NULL)
		s->iprev->inext = s->inext;
	else
		idle_first = s->inext;
	if (s->inext != NULL)
		s->inext->iprev = s->iprev;
	else
		idle_last = s->iprev;
	s->iprev = s->inext = NULL;
	s->idle = 0;
}


struct sess *
sess_create(const char *id, size_t n, const uint8_t *meta, size_t mlen,
    int by_conn, int *status)
{
	char rid[17];
	struct sess *s;

	if (id == NULL) {
		hub_random_hex(rid, 16);
		id = rid;
		n = 16;
	}
	if (count >= hub_config()->max_sessions) {
		hub_limit_hit(HUB_L_MAX_SESSIONS);
		*status = 503;
		return NULL;
	}
	if (find(id, n) != NULL) {
		*status = 409;
		return NULL;
	}
	if ((s = calloc(1, sizeof *s)) == NULL ||
	    (mlen > 0 && (s->meta = malloc(mlen)) == NULL)) {
		free(s);
		*status = 500;
		return NULL;
	}
	if (mlen > 0)
		memcpy(s->meta, meta, mlen);
	s->mlen = mlen;
	s->by_conn = by_conn;
	memcpy(s->hn.name, id, n);
	s->hn.len = n;
	log_timestamp(s->created_at);
	hub_table_add(&table, &s->hn);
	s->prev = last;
	if (last != NULL)
		last->next = s;
	else
		first = s;
	last = s;
	journal_room();
	count++;
	total++;
	note(SESS_CREATED, id, n);
	return s;
}

/*
 * Take s out of the registry and journal its end.  It is freed now, unless
 * connections still point at it (DELETE while connected): then it is an
 * orphan, freed by the last sess_detach().  Those connections keep their
 * group and simply stop counting towards a session.
 */
static void
destroy(struct sess *s)
{
	hub_table_del(&table, &s->hn);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		first = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	else
		last = s->prev;
	journal_room();
	count--;
	idle_del(s);
	note(SESS_DESTROYED, s->hn.name, s->hn.len);
	if (s->conns > 0) {
		s->prev = s->next = NULL;
		s->hn.hnext = NULL;
		s->orphan = 1;
		return;
	}
	free(s->meta);
	free(s);
}

int
sess_delete(const char *id, size_t n)
{
	struct sess *s = find(id, n);

	if (s == NULL)
		return -1;
	destroy(s);
	return 0;
}

struct sess *
sess_attach(const char *id, size_t n, int *status)
{
	struct sess *s;

	if (cluster_on()) {
		*status = 500;
		return shared_attach(id, n);
	}
	if ((s = find(id, n)) == NULL && (s = sess_create(id, n, NULL, 0, 1, status)) == NULL)
		return NULL;
	s->conns++;
	s->empty_since = 0;
	idle_del(s);		/* back within --session-ttl: no event */
	return s;
}

void
sess_detach(struct sess *s)
{
	if (cluster_on()) {
		shared_detach(s);
		return;
	}
	if (--s->conns > 0)
		return;
	if (s->orphan) {		/* deleted while connected */
		free(s->meta);
		free(s);
		return;
	}
	s->empty_since = loop_now_ms();
	if (s->by_conn && hub_config()->session_ttl_ms == 0)
		destroy(s);
	else if (s->by_conn)
		idle_add(s);
}

/*
 * PUT /api/sessions/ID: create the session (*status 201) or replace its
 * metadata (*status 200).  Either way HTTP owns it from now on: a session
 * a connection made no longer ends with its last connection.  Metadata
 * that differs (byte for byte) is journaled as an update, at most once
 * per session per tick.  NULL with *status 503 or 500 as sess_create().
 */
struct sess *
sess_put(const char *id, size_t n, const uint8_t *meta, size_t mlen,
    int *status)
{
	struct sess *s = find(id, n);
	char *copy = NULL;

	if (s == NULL) {
		if ((s = sess_create(id, n, meta, mlen, 0, status)) != NULL)
			*status = 201;
		return s;
	}
	if (mlen != s->mlen || (mlen > 0 && memcmp(meta, s->meta, mlen) != 0)) {
		if (mlen > 0 && (copy = malloc(mlen)) == NULL) {
			*status = 500;
			return NULL;
		}
		free(s->meta);
		s->meta = NULL;
		if (mlen > 0)
			s->meta = memcpy(copy, meta, mlen);
		s->mlen = mlen;
		if (s->updated_tick != tick_no) {
			journal_room();
			note(SESS_UPDATED, s->hn.name, s->hn.len);
			s->updated_tick = tick_no;
		}
	}
	s->by_conn = 0;
	idle_del(s);
	*status = 200;
	return s;
}

const char *
sess_id(const struct sess *s)
{
	return s->hn.name;
}

unsigned
sess_count(void)
{
	return cluster_on() ? (unsigned)shared_active : count;
}

/* One row of a page: {"id","created_at","connections","metadata"}. */
static void
put_row(struct json_buf *out, int first_row, const void *id, size_t n,
    const void *at, size_t atlen, uint64_t conns, const void *meta,
    size_t mlen)
{
	char num[64];

	json_put_cstr(out, first_row ? "{\"id\":" : ",{\"id\":");
	json_put_str(out, id, n);
	json_put_cstr(out, ",\"created_at\":\"");
	json_put_raw(out, at, atlen);
	snprintf(num, sizeof num, "\",\"connections\":%llu,\"metadata\":",
	    (unsigned long long)conns);
	json_put_cstr(out, num);
	if (mlen > 0)
		json_put_raw(out, meta, mlen);
	else
		json_put_cstr(out, "{}");
	json_put_raw(out, "}", 1);
}

void
sess_list_json(unsigned offset, unsigned limit, struct json_buf *out)
{
	struct sess *s = NULL;
	char num[64];
	unsigned n = 0;

	/* From the nearer end: no page costs more than half the sessions. */
	if (offset < count / 2) {
		s = first;
		for (unsigned i = 0; i < offset; i++)
			s = s->next;
	} else if (offset < count) {
		s = last;
		for (unsigned i = count - 1; i > offset; i--)
			s = s->prev;
	}
	json_put_cstr(out, "{\"sessions\":[");
	for (; s != NULL && n < limit; s = s->next, n++)
		put_row(out, n == 0, s->hn.name, s->hn.len, s->created_at,
		    strlen(s->created_at), s->conns, s->meta, s->mlen);
	snprintf(num, sizeof num, "],\"total\":%u}", count);
	json_put_cstr(out, num);
}

/* ==== The tick ======================================================== */

static const char *const event_type[] = {
	[SESS_CREATED] = ",\"event_type\":\"session_created\"",
	[SESS_DESTROYED] = ",\"event_type\":\"session_destroyed\"",
	[SESS_UPDATED] = ",\"event_type\":\"session_updated\"",
};

/* A session_event's data; since_s < 0: no event before it (null). */
static void
put_diff(struct json_buf *jb, const struct sess_event *ev, double since_s)
{
	char num[160];

	/* The seed's delta: the size of the change, unsigned. */
	snprintf(num, sizeof num, "{\"current_count\":%u,"
	    "\"previous_count\":%u,\"delta\":%u,"
	    "\"time_since_last_event\":", ev->current, ev->previous,
	    ev->current > ev->previous ? ev->current - ev->previous :
	    ev->previous - ev->current);
	json_put_cstr(jb, num);
	if (since_s < 0)
		json_put_cstr(jb, "null");
	else
		json_put_double(jb, since_s);
	json_put_cstr(jb, ",\"sessions\":[");
	for (uint32_t k = 0; k < ev->ids->n; k++) {
		if (k > 0)
			json_put_raw(jb, ",", 1);
		json_put_str(jb, ev->ids->ids[k], strlen(ev->ids->ids[k]));
	}
	json_put_cstr(jb, "]}");
}

static void
publish_diff(void)
{
	struct sess_event ev[3];
	struct hub_group *mon;
	int n = sess_diff(count_at_tick, &jrnl, ev);

	if (n > 0 && (mon = hub_group("monitor", 7, 1)) != NULL)
		for (int i = 0; i < n; i++) {
			struct json_buf jb = { 0 };

			put_diff(&jb, &ev[i], last_event_ms == 0 ? -1 :
			    (loop_now_ms() - last_event_ms) / 1000.0);
			if (!jb.oom)
				hub_publish(mon, "session_event", 13,
				    event_type[ev[i].change], jb.p, jb.len,
				    NULL);
			json_buf_free(&jb);
			last_event_ms = loop_now_ms();
		}
	sess_journal_clear(&jrnl);
	tick_no++;
	count_at_tick = count;
}

static int
watched(void)
{
	struct hub_group *mon = hub_group("monitor", 7, 0);

	return mon != NULL && hub_group_subscribers(mon) > 0;
}

/* realtime_update's figures, then the host's; the caller closes it. */
static void
put_update(struct json_buf *jb, const struct csess_figures *f,
    uint64_t active, uint64_t all)
{
	char data[512];

	snprintf(data, sizeof data, "{\"connections\":%llu,\"groups\":%llu,"
	    "\"sessions\":{\"active_count\":%llu,\"total_count\":%llu},"
	    "\"messages_in\":%llu,\"messages_out\":%llu,\"uptime_s\":%llu,",
	    (unsigned long long)f->connections,
	    (unsigned long long)f->groups, (unsigned long long)active,
	    (unsigned long long)all, (unsigned long long)f->messages_in,
	    (unsigned long long)f->messages_out,
	    (unsigned long long)hub_uptime_s());
	json_put_cstr(jb, data);
	host_put_figures(jb);
}

/* This node's figures. */
static void
own_figures(struct csess_figures *f)
{
	struct hub_group *mon = hub_group("monitor", 7, 0);

	memset(f, 0, sizeof *f);
	f->connections = ws_stats_get()->websockets;
	f->groups = hub_group_count();
	f->messages_in = ws_stats_get()->messages_in;
	f->messages_out = ws_stats_get()->messages_out;
	f->watchers = mon != NULL ? hub_group_subscribers(mon) : 0;
	f->uptime_s = hub_uptime_s();
}

/* One encode for every watcher, and none when nobody watches. */
static void
realtime_update(void)
{
	struct hub_group *mon = hub_group("monitor", 7, 0);
	struct json_buf jb = { 0 };
	struct csess_figures f;

	if (mon == NULL || hub_group_subscribers(mon) == 0)
		return;
	own_figures(&f);
	put_update(&jb, &f, count, total);
	json_put_raw(&jb, "}", 1);
	if (!jb.oom)
		hub_publish(mon, "realtime_update", 15, NULL, jb.p, jb.len,
		    NULL);
	json_buf_free(&jb);
}

static void
expire(void)
{
	uint64_t now = loop_now_ms();
	struct sess *s;

	/* destroy() takes s off the idle list, so the head moves on. */
	while ((s = idle_first) != NULL &&
	    now - s->empty_since >= hub_config()->session_ttl_ms)
		destroy(s);
}

/* ==== With --redis: the registry in Redis ============================ */

/*
 * cluster_sessions.c holds the registry's rules in Redis; here are the
 * node's side of them.  A connection to /ws/sessions/ID holds the
 * session through a struct sess of its own (attached in Redis, then
 * detached with the generation it got); the tick reports this node's
 * figures, and on the node holding the lease announces the journal it
 * took and publishes realtime_update with the cluster's figures.
 */

int
sess_shared(void)
{
	return cluster_on();
}

/* Attach hold s in Redis (Redis up; else sess_cluster_up() will). */
static void	held(void *arg, int status, uint64_t gen);

static void
hold(struct sess *s)
{
	if (!s->gone && csess_attach(s->hn.name, s->hn.len, s->gen, held,
	    s) == 0)
		s->inflight++;
}

/*
 * Detaches Redis could not take (its output bound was reached), sent
 * again at each tick; after a lost connection the forget covers them.
 */
static struct sess	*undone;
static int		 reholding;	/* a forget is unanswered */

static void
hold_free(struct sess *s)
{
	if (s->held && csess_detach(s->hn.name, s->hn.len, s->gen) == -1 &&
	    cluster_up()) {
		s->next = undone;
		undone = s;
		return;
	}
	free(s);
}

static void
held(void *arg, int status, uint64_t gen)
{
	struct sess *s = arg;

	s->inflight--;
	if (status == 200) {
		s->gen = gen;
		s->held = 1;
		s->refused = 0;
	} else if (status == 503 && !s->refused) {
		/* Known only now: the connection stays, without a session
		 * until there is room (each tick tries again). */
		hub_limit_hit(HUB_L_MAX_SESSIONS);
		log_msg(LOG_WARN, "session refused id=%s reason=\"the "
		    "cluster has --max-sessions sessions\"", s->hn.name);
		s->refused = 1;
	} else if (status == 410)
		s->gone = 1;	/* deleted by DELETE while held */
	/* else lost or refused: tried again at the next tick */
	if (s->closed && s->inflight == 0)
		hold_free(s);
}

static struct sess *
shared_attach(const char *id, size_t n)
{
	struct sess *s = calloc(1, sizeof *s);

	if (s == NULL)
		return NULL;
	memcpy(s->hn.name, id, n);
	s->hn.len = n;
	s->next = holds;		/* the list of holds: prev, next */
	if (holds != NULL)
		holds->prev = s;
	holds = s;
	if (cluster_up())
		hold(s);
	return s;
}

static void
shared_detach(struct sess *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		holds = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->closed = 1;
	if (s->inflight == 0)
		hold_free(s);
}

static int
hold_cmp(const void *a, const void *b)
{
	const struct csess_hold *x = a, *y = b;

	if (x->n != y->n)
		return x->n < y->n ? -1 : 1;
	return memcmp(x->id, y->id, x->n);
}

/*
 * What Redis had counted for this node is taken back: hold everything
 * again.  A hold whose attach reply was lost learns its generation from
 * what Redis had, so a session deleted meanwhile stays deleted.
 */
static void
reheld(void *arg, const struct csess_hold *h, uint32_t n)
{
	struct csess_hold *sorted = NULL;

	(void)arg;
	reholding = 0;
	if (h == NULL)
		return;		/* lost: the next reconnection does it again */
	if (n > 0 && (sorted = malloc(n * sizeof *sorted)) != NULL) {
		memcpy(sorted, h, n * sizeof *sorted);
		qsort(sorted, n, sizeof *sorted, hold_cmp);
	}
	for (struct sess *s = holds; s != NULL; s = s->next) {
		struct csess_hold key = { s->hn.name, s->hn.len, 0 }, *f;

		if (s->gen == 0 && sorted != NULL && (f = bsearch(&key, sorted,
		    n, sizeof *sorted, hold_cmp)) != NULL)
			s->gen = f->gen;
		if (!s->held && s->inflight == 0)
			hold(s);
	}
	free(sorted);
}

/*
 * After each (re)connection, and when a tick says this node was
 * forgotten: what Redis counted for it may have lost replies, or been
 * taken back by the lease holder, so take all of it back and hold again
 * (reheld()).  Holds attached meanwhile are counted after the forget.
 */
void
sess_cluster_up(void)
{
	struct sess *s;

	if (reholding || csess_forget(reheld, NULL) == -1)
		return;
	reholding = 1;
	for (s = holds; s != NULL; s = s->next)
		s->held = 0;
	while ((s = undone) != NULL) {
		undone = s->next;
		free(s);
	}
}

struct change_wait {
	sess_done_fn	*done;
	void		*arg;
	size_t		 n;
	char		 id[HUB_GROUP_MAX + 1];
};

static void
changed(void *arg, int status, uint64_t gen)
{
	struct change_wait *w = arg;

	(void)gen;
	if (status == 503)
		hub_limit_hit(HUB_L_MAX_SESSIONS);
	w->done(w->arg, status, w->id, w->n);
	free(w);
}

int
sess_shared_change(int op, const char *id, size_t n, const uint8_t *meta,
    size_t mlen, sess_done_fn *done, void *arg)
{
	struct change_wait *w = malloc(sizeof *w);
	int rc;

	if (w == NULL)
		return -1;
	if (id == NULL) {
		hub_random_hex(w->id, 16);
		n = 16;
	} else
		memcpy(w->id, id, n);
	w->id[n] = '\0';
	w->n = n;
	w->done = done;
	w->arg = arg;
	rc = op == 'd' ? csess_delete(w->id, n, changed, w) :
	    csess_create(w->id, n, meta, mlen, op == 'p', changed, w);
	if (rc == -1)
		free(w);
	return rc;
}

struct list_wait {
	sess_list_fn	*done;
	void		*arg;
};

static void
listed(void *arg, const struct csess_page *p)
{
	struct list_wait *w = arg;
	struct json_buf jb = { 0 };
	char num[64];

	if (p != NULL) {
		json_put_cstr(&jb, "{\"sessions\":[");
		for (uint32_t i = 0; i < p->n; i++)
			put_row(&jb, i == 0, p->rows[i].id, p->rows[i].idlen,
			    p->rows[i].at, p->rows[i].atlen, p->rows[i].conns,
			    p->rows[i].meta, p->rows[i].mlen);
		snprintf(num, sizeof num, "],\"total\":%llu}",
		    (unsigned long long)p->active);
		json_put_cstr(&jb, num);
	}
	w->done(w->arg, p != NULL ? &jb : NULL, p != NULL ? p->active : 0);
	json_buf_free(&jb);
	free(w);
}

int
sess_shared_list(unsigned offset, unsigned limit, sess_list_fn *done,
    void *arg)
{
	struct list_wait *w = malloc(sizeof *w);

	if (w == NULL)
		return -1;
	w->done = done;
	w->arg = arg;
	if (csess_list(offset, limit, listed, w) == -1) {
		free(w);
		return -1;
	}
	return 0;
}

unsigned
sess_cluster(struct csess_figures *sum)
{
	*sum = cluster_sum;
	return shared_nodes;
}

/*
 * The lease holder: announce the journal it took, in one script with its
 * removal (csess_commit()), whatever happens to this node after.  The
 * counts end at the registry's true count when the journal was taken,
 * and run back from there by the journal: a journal missing changes (a
 * node with --no-session-events) cannot make them wrong, only leave a
 * step between two ticks' events.
 */
static void
announce(const struct csess_tick *t)
{
	static const enum sess_change kinds[128] = { ['c'] = SESS_CREATED,
	    ['u'] = SESS_UPDATED, ['d'] = SESS_DESTROYED };
	struct sess_journal j = { 0 };
	struct json_buf head[3] = { 0 }, tail[3] = { 0 };
	struct resp_arg args[6];
	struct sess_event ev[3];
	int64_t before;
	int n = 0, oom = 0;

	for (uint32_t i = 0; i < t->nchanges; i++) {
		char k = t->changes[i].kind;

		if ((k == 'c' || k == 'u' || k == 'd') && sess_journal_add(&j,
		    kinds[(unsigned char)k], t->changes[i].id,
		    t->changes[i].n) == -1)
			oom = 1;
	}
	/* Journaled by the nodes with session events on: announced
	 * whatever this node's own setting. */
	before = (int64_t)t->at_take + j.destroyed.n - j.created.n;
	if (!oom)
		n = sess_diff(before < 0 ? 0 : (unsigned)before, &j, ev);
	for (int i = 0; i < n; i++) {
		struct json_buf data = { 0 };

		put_diff(&data, &ev[i], i > 0 ? 0 : t->last_event_ms == 0 ?
		    -1 : (t->now_ms - t->last_event_ms) / 1000.0);
		hub_envelope("monitor", 7, "session_event", 13,
		    event_type[ev[i].change], data.p, data.len, &head[i],
		    &tail[i]);
		oom |= data.oom || head[i].oom || tail[i].oom;
		json_buf_free(&data);
		args[2 * i] = (struct resp_arg){ head[i].p, head[i].len };
		args[2 * i + 1] = (struct resp_arg){ tail[i].p, tail[i].len };
	}
	/* Else the take is announced at the next tick. */
	if (oom || csess_commit(t->take, n, args) == -1)
		log_msg(LOG_WARN, "session changes not announced yet "
		    "reason=\"%s\"", oom ? "out of memory" :
		    "Redis unavailable or its output full");
	for (int i = 0; i < n; i++) {
		json_buf_free(&head[i]);
		json_buf_free(&tail[i]);
	}
	sess_journal_clear(&j);
}

/* The lease holder's realtime_update: the cluster's sums and each node's
 * own figures, when any node has a watcher. */
static void
cluster_update(const struct csess_tick *t)
{
	struct hub_group *mon;
	struct json_buf jb = { 0 };
	char num[320];

	if (cluster_sum.watchers == 0 ||
	    (mon = hub_group("monitor", 7, 1)) == NULL)
		return;
	put_update(&jb, &cluster_sum, t->active, t->total);
	json_put_cstr(&jb, ",\"node\":\"");
	json_put_cstr(&jb, csess_node());
	json_put_cstr(&jb, "\",\"nodes\":[");
	for (uint32_t i = 0; i < t->nnodes; i++) {
		const struct csess_figures *f = &t->nodes[i];

		snprintf(num, sizeof num, "%s{\"node\":\"%s\","
		    "\"connections\":%llu,\"groups\":%llu,"
		    "\"messages_in\":%llu,\"messages_out\":%llu,"
		    "\"uptime_s\":%llu}", i > 0 ? "," : "", f->node,
		    (unsigned long long)f->connections,
		    (unsigned long long)f->groups,
		    (unsigned long long)f->messages_in,
		    (unsigned long long)f->messages_out,
		    (unsigned long long)f->uptime_s);
		json_put_cstr(&jb, num);
	}
	json_put_cstr(&jb, "]}");
	if (!jb.oom)
		hub_publish(mon, "realtime_update", 15, NULL, jb.p, jb.len,
		    NULL);
	json_buf_free(&jb);
}

static void
ticked(void *arg, const struct csess_tick *t)
{
	(void)arg;
	ticking = 0;
	if (t == NULL)
		return;
	if (t->fresh)
		sess_cluster_up();	/* forgotten: hold again */
	shared_active = t->active;
	shared_total = t->total;
	shared_nodes = t->nnodes;
	memset(&cluster_sum, 0, sizeof cluster_sum);
	for (uint32_t i = 0; i < t->nnodes; i++) {
		cluster_sum.connections += t->nodes[i].connections;
		cluster_sum.groups += t->nodes[i].groups;
		cluster_sum.messages_in += t->nodes[i].messages_in;
		cluster_sum.messages_out += t->nodes[i].messages_out;
		cluster_sum.watchers += t->nodes[i].watchers;
	}
	if (!t->leader)
		return;
	if (t->nchanges > 0)
		announce(t);
	cluster_update(t);
}

/*
 * Every node reports each tick; the lease lasts three ticks, so a node
 * that dies is replaced as the tick's runner, and its connections stop
 * counting, within three of its ticks.
 */
static void
shared_tick(void)
{
	struct csess_figures f;

	if (ticking || !cluster_up())
		return;
	for (struct sess *s = holds; s != NULL && !reholding; s = s->next)
		if (!s->held && !s->gone && s->inflight == 0)
			hold(s);
	while (undone != NULL && csess_detach(undone->hn.name,
	    undone->hn.len, undone->gen) == 0) {
		struct sess *s = undone;

		undone = s->next;
		free(s);
	}
	own_figures(&f);
	if (csess_tick(&f, ticked, NULL) == 0)
		ticking = 1;
}

static uint64_t
usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
tick(int timer)
{
	uint64_t t0 = usec();
	uint32_t created, destroyed;

	if (cluster_on()) {
		host_tick(loop_now_ms(), watched());
		shared_tick();
		return;
	}
	/* Expiry looks at the idle list's head only, and only with a TTL. */
	if (timer && hub_config()->session_ttl_ms > 0)
		expire();
	created = jrnl.created.n;
	destroyed = jrnl.destroyed.n;
	if (hub_config()->session_events)
		publish_diff();
	if (timer) {
		host_tick(loop_now_ms(), watched());
		realtime_update();
	}
	/* bench/tick.py reads this line to measure the cost of a tick. */
	if (created + destroyed > 0)
		log_msg(LOG_DEBUG, "tick sessions=%u created=%u destroyed=%u "
		    "us=%llu", count, created, destroyed,
		    (unsigned long long)(usec() - t0));
}

static void
tick_timer(void *arg)
{
	(void)arg;
	tick(1);
}

int
sess_init(void)
{
	if (hub_table_init(&table, 1024) == -1)
		return -1;
	return loop_timer(hub_config()->tick_ms, tick_timer, NULL);
}
