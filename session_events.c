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
	struct sess *s = find(id, n);

	if (s == NULL && (s = sess_create(id, n, NULL, 0, 1, status)) == NULL)
		return NULL;
	s->conns++;
	s->empty_since = 0;
	idle_del(s);		/* back within --session-ttl: no event */
	return s;
}

void
sess_detach(struct sess *s)
{
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
	return count;
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
	for (; s != NULL && n < limit; s = s->next, n++) {
		json_put_cstr(out, n ? ",{\"id\":" : "{\"id\":");
		json_put_str(out, s->hn.name, s->hn.len);
		json_put_cstr(out, ",\"created_at\":\"");
		json_put_cstr(out, s->created_at);
		snprintf(num, sizeof num, "\",\"connections\":%u,\"metadata\":",
		    s->conns);
		json_put_cstr(out, num);
		if (s->mlen > 0)
			json_put_raw(out, s->meta, s->mlen);
		else
			json_put_cstr(out, "{}");
		json_put_raw(out, "}", 1);
	}
	snprintf(num, sizeof num, "],\"total\":%u}", count);
	json_put_cstr(out, num);
}

/* ==== The tick ======================================================== */

static void
publish_diff(void)
{
	static const char *const event_type[] = {
		[SESS_CREATED] = ",\"event_type\":\"session_created\"",
		[SESS_DESTROYED] = ",\"event_type\":\"session_destroyed\"",
		[SESS_UPDATED] = ",\"event_type\":\"session_updated\"",
	};
	struct sess_event ev[3];
	struct hub_group *mon;
	int n = sess_diff(count_at_tick, &jrnl, ev);

	if (n > 0 && (mon = hub_group("monitor", 7, 1)) != NULL)
		for (int i = 0; i < n; i++) {
			struct json_buf jb = { 0 };
			char num[160];

			/* The seed's delta: the size of the change, unsigned. */
			snprintf(num, sizeof num, "{\"current_count\":%u,"
			    "\"previous_count\":%u,\"delta\":%u,"
			    "\"time_since_last_event\":", ev[i].current,
			    ev[i].previous, ev[i].current > ev[i].previous ?
			    ev[i].current - ev[i].previous :
			    ev[i].previous - ev[i].current);
			json_put_cstr(&jb, num);
			if (last_event_ms == 0)
				json_put_cstr(&jb, "null");
			else
				json_put_double(&jb, (loop_now_ms() -
				    last_event_ms) / 1000.0);
			json_put_cstr(&jb, ",\"sessions\":[");
			for (uint32_t k = 0; k < ev[i].ids->n; k++) {
				if (k > 0)
					json_put_raw(&jb, ",", 1);
				json_put_str(&jb, ev[i].ids->ids[k],
				    strlen(ev[i].ids->ids[k]));
			}
			json_put_cstr(&jb, "]}");
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

/* One encode for every watcher, and none when nobody watches. */
static void
realtime_update(void)
{
	struct hub_group *mon = hub_group("monitor", 7, 0);
	struct json_buf jb = { 0 };
	char data[512];

	if (mon == NULL || hub_group_subscribers(mon) == 0)
		return;
	snprintf(data, sizeof data, "{\"connections\":%llu,\"groups\":%u,"
	    "\"sessions\":{\"active_count\":%u,\"total_count\":%llu},"
	    "\"messages_in\":%llu,\"messages_out\":%llu,\"uptime_s\":%llu,",
	    (unsigned long long)ws_stats_get()->websockets, hub_group_count(), count,
	    (unsigned long long)total,
	    (unsigned long long)ws_stats_get()->messages_in,
	    (unsigned long long)ws_stats_get()->messages_out,
	    (unsigned long long)hub_uptime_s());
	json_put_cstr(&jb, data);
	host_put_figures(&jb);
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
