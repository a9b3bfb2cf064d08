/*
 * hub.c - groups, the event envelope, history, replay and delivery.
 *
 * A group is a name, a list of subscribers, the next seq, an epoch and a
 * ring of the last events.  Every event passes through hub_publish(),
 * which encodes it once into a shared frame and keeps that frame in the
 * history.  At the end of the loop turn, the events a group got during
 * the turn go to each subscriber as one shared block (the frame itself
 * when there is one), so a burst costs a subscriber one queue entry, not
 * one per event.  Before anyone joins or leaves a group, its pending
 * events go out to the members of the moment: an event reaches exactly
 * those subscribed when it was published.  A replay for resume is paced
 * by the member's send queue and catches up from the history.
 *
 * With --redis, Redis orders the events instead (cluster.c): a publish
 * goes there, and each node delivers what comes back on the channels of
 * the groups it has members of through the same path ("The cluster",
 * below), so the rest of this file does not know the difference.
 *
 * It knows nothing of URLs, JSON messages or sessions: routes.c, proto.c
 * and api.c call it.  It does no I/O of its own: everything goes out
 * through ws_send().  Functions return 0 or -1 unless they say otherwise.
 */
#include <sys/random.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>
#include <time.h>

#include "auth.h"
#include "cluster.h"
#include "hub.h"
#include "json.h"
#include "log.h"
#include "sse.h"
#include "ws.h"

/*
 * A group sits on up to four lists, each with its own links: its hash
 * chain, the list of all groups in creation order (for paging), the list
 * of idle groups (no subscribers), least recently used first (a publish
 * or the last subscriber leaving moves a group to its tail; eviction
 * takes its head: O(1)), and this turn's list of groups with events to
 * send.
 */
struct hub_group {
	struct hub_name	   hn;		/* first: its name, in groups */
	struct hub_group  *all_prev, *all_next;	/* every group */
	struct hub_group  *idle_prev, *idle_next; /* while nsubs == 0 */
	struct ws_app_conn **subs;	/* owned array; entries borrowed */
	uint32_t	   nsubs, subcap;
	struct ws_buf	 **hist;	/* owned ring of shared frames */
	uint32_t	   hhead, hlen, hcap;
	size_t		   hbytes;
	uint64_t	   seq;		/* last seq assigned */
	struct ws_buf	 **pend;	/* this turn's events, not yet queued */
	uint32_t	   npend, pendcap;
	struct hub_group  *turn_next;	/* on the list of groups with pend */
	uint8_t		   on_turn;
	char		   epoch[HUB_EPOCH_LEN + 1];	/* this stream's */
	/*
	 * With --redis (see "The cluster" below): whether the group listens
	 * to its channel and has caught up with the stream, the members
	 * waiting for that, the events heard while a read was in flight
	 * (contiguous from held_first, in held_epoch), and the list of
	 * groups whose read failed, read again once Redis is back.
	 */
	uint8_t		   cstate;	/* enum cstate */
	uint8_t		   reading;	/* a read is in flight */
	uint8_t		   again;	/* read again when it returns */
	uint8_t		   on_retry;
	uint32_t	   gen;		/* this watch's number */
	struct hub_wait	  *wait;	/* owned array */
	uint32_t	   nwait, waitcap;
	struct ws_buf	 **held;	/* owned array of frames */
	uint32_t	   nheld, heldcap;
	uint64_t	   held_first;
	char		   held_epoch[HUB_EPOCH_LEN + 1];
	struct hub_group  *retry_prev, *retry_next;
};

/* A member waiting for its group's first read: where it resumes. */
struct hub_wait {
	struct ws_app_conn *a;
	struct hub_pos	    pos;
	uint8_t		    has_pos;
};

enum cstate { CS_NONE, CS_SYNCING, CS_SYNCED };

/* A membership waiting for its group's first read from Redis: passed
 * over by delivery, as a replaying one is. */
#define WAITING		UINT64_MAX

static struct hub_config hub_cfg;	/* a copy: main's may go */
static struct hub_stats hub_stats;
const char *const hub_error_names[HUB_NERRORS] = {
	"bad_json", "unknown_type", "bad_group", "forbidden", "too_large",
	"history_gap", "rate_limited", "unavailable"
};
const char *const hub_limit_names[HUB_NLIMITS] = {
	"max_groups", "max_conn_groups", "max_sessions", "max_metadata",
	"publish_rate"
};

static struct hub_table	  groups;	/* every group but "*" */
static struct hub_group	 *all_first, *all_last;
static struct hub_group	 *idle_first, *idle_last;	/* oldest first */
static struct hub_group	 *star;		/* "*": every connection */
static struct hub_group	 *turn_list;	/* groups with events to send */
static size_t		  hist_total;	/* bytes in every group's history */
static struct hub_group	 *retry_first, *retry_last;	/* reads to redo */
static uint32_t		  watch_gen;
static uint64_t		  start_ms;


/* ==== Group table ===================================================== */

int
hub_name_valid(const char *s, size_t n)
{
	return auth_group_valid(s, n);	/* one definition, in the pure layer */
}

const struct auth_claims *
hub_claims(const struct ws_app_conn *a)
{
	/* With tokens on, every connection showed one (a SIGHUP cannot
	 * turn them on); none is there to fail closed all the same. */
	static const struct auth_claims none;

	if (hub_cfg.token_secret == NULL)
		return NULL;
	return a->claims != NULL ? a->claims : &none;
}

int
hub_may_read(const struct auth_claims *claims, const char *name, size_t n)
{
	if (claims == NULL)
		return 1;
	if (n == 1 && name[0] == '*')
		return auth_may_join_all(claims);
	return auth_may_join(claims, name, n);
}

uint32_t
hub_hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

void *
hub_grow(void *arr, uint32_t n, uint32_t *cap, size_t elem, uint32_t first)
{
	uint32_t ncap;
	void *p;

	if (n < *cap)
		return arr;
	ncap = *cap ? *cap * 2 : first;
	if (ncap <= *cap || (p = reallocarray(arr, ncap, elem)) == NULL)
		return NULL;
	*cap = ncap;
	return p;
}

static struct hub_name **
table_slot(const struct hub_table *t, const char *name, size_t n)
{
	struct hub_name **ep = &t->b[hub_hash(name, n) & (t->cap - 1)];

	while (*ep != NULL && ((*ep)->len != n ||
	    memcmp((*ep)->name, name, n) != 0))
		ep = &(*ep)->hnext;
	return ep;
}

int
hub_table_init(struct hub_table *t, uint32_t cap)
{
	t->n = 0;
	t->cap = cap;
	return (t->b = calloc(cap, sizeof *t->b)) == NULL ? -1 : 0;
}

struct hub_name *
hub_table_get(const struct hub_table *t, const char *name, size_t n)
{
	return *table_slot(t, name, n);
}

static void
table_grow(struct hub_table *t)
{
	uint32_t ncap = t->cap * 2;
	struct hub_name **nb;

	if (ncap == 0 || (nb = calloc(ncap, sizeof *nb)) == NULL)
		return;		/* longer chains, still correct */
	for (uint32_t i = 0; i < t->cap; i++)
		while (t->b[i] != NULL) {
			struct hub_name *e = t->b[i];
			uint32_t h = hub_hash(e->name, e->len) & (ncap - 1);

			t->b[i] = e->hnext;
			e->hnext = nb[h];
			nb[h] = e;
		}
	free(t->b);
	t->b = nb;
	t->cap = ncap;
}

void
hub_table_add(struct hub_table *t, struct hub_name *e)
{
	struct hub_name **ep;

	if (t->n >= t->cap)
		table_grow(t);
	ep = &t->b[hub_hash(e->name, e->len) & (t->cap - 1)];
	e->hnext = *ep;
	*ep = e;
	t->n++;
}

void
hub_table_del(struct hub_table *t, struct hub_name *e)
{
	*table_slot(t, e->name, e->len) = e->hnext;
	t->n--;
}

/* The two doubly linked lists of groups, with their own link fields. */
#define LIST_APPEND(first, last, g, prev, next) do {			\
	(g)->prev = (last);						\
	(g)->next = NULL;						\
	if ((last) != NULL)						\
		(last)->next = (g);					\
	else								\
		(first) = (g);						\
	(last) = (g);							\
} while (0)
#define LIST_REMOVE(first, last, g, prev, next) do {			\
	if ((g)->prev != NULL)						\
		(g)->prev->next = (g)->next;				\
	else								\
		(first) = (g)->next;					\
	if ((g)->next != NULL)						\
		(g)->next->prev = (g)->prev;				\
	else								\
		(last) = (g)->prev;					\
} while (0)

static void
hist_drop_oldest(struct hub_group *g)
{
	struct ws_buf *b = g->hist[g->hhead];

	g->hbytes -= b->len;
	hist_total -= b->len;
	ws_buf_unref(b);
	g->hhead = (g->hhead + 1) & (g->hcap - 1);
	g->hlen--;
}

static void	held_clear(struct hub_group *);

static void
group_free(struct hub_group *g)
{
	hub_table_del(&groups, &g->hn);
	LIST_REMOVE(all_first, all_last, g, all_prev, all_next);
	if (g->nsubs == 0)
		LIST_REMOVE(idle_first, idle_last, g, idle_prev, idle_next);
	while (g->hlen > 0)
		hist_drop_oldest(g);
	held_clear(g);
	if (g->on_retry)
		LIST_REMOVE(retry_first, retry_last, g, retry_prev, retry_next);
	free(g->held);
	free(g->wait);
	free(g->hist);
	free(g->subs);
	free(g->pend);
	free(g);
}

/* Free g if it holds nothing worth keeping: no subscribers, no history,
 * and not on this turn's list (hub_turn() frees it then). */
void
hub_group_release(struct hub_group *g)
{
	if (g->nsubs == 0 && g->hlen == 0 && !g->on_turn && g != star)
		group_free(g);
}

/*
 * At --max-groups or --history-total, make room by freeing the group idle
 * the longest: the head of the idle list.  Passed over are keep (the one
 * being worked on) and groups still on this turn's list (hub_turn() holds
 * them), so the walk is short: O(1) amortised, whatever the number of
 * groups.
 */
static int
evict_idle_group(const struct hub_group *keep)
{
	for (struct hub_group *g = idle_first; g != NULL; g = g->idle_next)
		if (g != keep && !g->on_turn) {
			group_free(g);
			return 0;
		}
	return -1;
}

void
hub_random_hex(char *out, size_t digits)
{
	static const char hex[] = "0123456789abcdef";
	static uint64_t fallback;
	uint8_t r[32];
	size_t n = (digits + 1) / 2;

	if (n > sizeof r)
		n = sizeof r;
	if (getrandom(r, n, 0) != (ssize_t)n) {
		/* Unique, if not secret: these are names, not passwords. */
		uint64_t t = loop_now_ms() * 2654435761u + ++fallback;

		for (size_t i = 0; i < n; i++)
			r[i] = t >> (8 * (i % 8));
	}
	for (size_t i = 0; i < digits && i < 2 * n; i++)
		out[i] = hex[i % 2 ? r[i / 2] & 15 : r[i / 2] >> 4];
	out[digits < 2 * n ? digits : 2 * n] = '\0';
}

/*
 * A new stream's identity: HUB_EPOCH_LEN hex digits from the kernel's
 * generator.  Positions (epoch, seq) compare only within one epoch, so a
 * group created again after eviction, or after a restart, is told apart
 * from the stream a client last saw, though its seq starts again at 1.
 */
static void
new_epoch(char out[HUB_EPOCH_LEN + 1])
{
	hub_random_hex(out, HUB_EPOCH_LEN);
}

int
hub_parse_query_pos(struct http_slice query, struct hub_pos *pos)
{
	char text[64];
	long n = http_query_param(query, "since", text, sizeof text);

	pos->seq = 0;
	pos->epoch[0] = '\0';
	if (n == -1)
		return 0;
	if (n < 0 || hub_parse_pos(text, n, pos) == -1)
		return -1;
	return 1;
}

int
hub_parse_pos(const char *s, size_t n, struct hub_pos *pos)
{
	const char *colon = memchr(s, ':', n);
	uint64_t v = 0;
	size_t i = 0;

	pos->epoch[0] = '\0';
	if (colon != NULL) {
		size_t el = colon - s;

		if (el != HUB_EPOCH_LEN)
			return -1;
		for (; i < el; i++)
			if (!((s[i] >= '0' && s[i] <= '9') ||
			    (s[i] >= 'a' && s[i] <= 'f')))
				return -1;
		memcpy(pos->epoch, s, el);
		pos->epoch[el] = '\0';
		i++;
	}
	if (i == n)
		return -1;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	pos->seq = v;
	return 0;
}

const char *
hub_group_name(const struct hub_group *g, size_t *n)
{
	*n = g->hn.len;
	return g->hn.name;
}

const char *
hub_group_epoch(const struct hub_group *g)
{
	return g->epoch;
}

struct hub_group *
hub_group(const char *name, size_t n, int create)
{
	struct hub_group *g;

	if (n == 1 && name[0] == '*')
		return star;
	if (!hub_name_valid(name, n))
		return NULL;
	/* hn is a group's first member: the entry is the group. */
	g = (struct hub_group *)hub_table_get(&groups, name, n);
	if (g != NULL || !create)
		return g;
	if (groups.n >= hub_cfg.max_groups && evict_idle_group(NULL) == -1) {
		hub_stats.limit[HUB_L_MAX_GROUPS]++;
		return NULL;
	}
	if ((g = calloc(1, sizeof *g)) == NULL)
		return NULL;
	memcpy(g->hn.name, name, n);
	g->hn.len = n;
	new_epoch(g->epoch);
	hub_table_add(&groups, &g->hn);
	LIST_APPEND(all_first, all_last, g, all_prev, all_next);
	LIST_APPEND(idle_first, idle_last, g, idle_prev, idle_next);
	return g;
}

const struct hub_config *
hub_config(void)
{
	return &hub_cfg;
}

void
hub_set_limits(const struct hub_config *cfg)
{
	hub_cfg.history = cfg->history;
	hub_cfg.history_bytes = cfg->history_bytes;
	hub_cfg.history_total = cfg->history_total;
	hub_cfg.max_groups = cfg->max_groups;
	hub_cfg.max_conn_groups = cfg->max_conn_groups;
	hub_cfg.json_depth = cfg->json_depth;
	hub_cfg.max_sessions = cfg->max_sessions;
	hub_cfg.max_metadata = cfg->max_metadata;
	hub_cfg.publish_rate = cfg->publish_rate;
}

const struct hub_stats *
hub_stats_get(void)
{
	return &hub_stats;
}

void
hub_limit_hit(enum hub_limit l)
{
	hub_stats.limit[l]++;
}

unsigned
hub_group_count(void)
{
	return groups.n;
}

uint64_t
hub_uptime_s(void)
{
	return (loop_now_ms() - start_ms) / 1000;
}

unsigned
hub_group_subscribers(const struct hub_group *g)
{
	return g->nsubs;
}

/* ==== Membership ====================================================== */

int
hub_sub_find(const struct ws_app_conn *a, const struct hub_group *g)
{
	for (int i = 0; i < (int)a->nsubs; i++)
		if (a->subs[i].g == g)
			return i;
	return -1;
}

/* 0 while a's membership of g is still replaying history. */
static int
member_live(const struct ws_app_conn *a, const struct hub_group *g)
{
	return a->nreplay == 0 || a->subs[hub_sub_find(a, g)].replay == 0;
}

static void	group_flush(struct hub_group *);
static void	watch_start(struct hub_group *);
static void	watch_stop(struct hub_group *);
static void	wait_drop(struct hub_group *, const struct ws_app_conn *);

int
hub_subscribe(struct ws_app_conn *a, struct hub_group *g)
{
	struct hub_sub *as;
	struct ws_app_conn **gs;

	if (hub_sub_find(a, g) >= 0)
		return 1;
	if (a->nsubs >= hub_cfg.max_conn_groups) {
		hub_stats.limit[HUB_L_MAX_CONN_GROUPS]++;
		return -1;
	}
	group_flush(g);		/* earlier events are not for a newcomer */
	if (a->nsubs == a->subcap) {
		/* The first membership in place, then an array. */
		if (a->subcap == 0)
			as = &a->first;
		else if ((as = reallocarray(a->subs == &a->first ? NULL :
		    a->subs, 2 * a->subcap, sizeof *as)) == NULL)
			return -1;
		else if (a->subs == &a->first)
			*as = a->first;
		a->subs = as;
		a->subcap = a->subcap == 0 ? 1 : 2 * a->subcap;
	}
	if ((gs = hub_grow(g->subs, g->nsubs, &g->subcap, sizeof *gs, 4)) ==
	    NULL)
		return -1;
	g->subs = gs;
	a->subs[a->nsubs].g = g;
	a->subs[a->nsubs].idx = g->nsubs;
	a->subs[a->nsubs].replay = 0;
	a->nsubs++;
	if (g->nsubs == 0 && g != star)
		LIST_REMOVE(idle_first, idle_last, g, idle_prev, idle_next);
	g->subs[g->nsubs++] = a;
	if (g->nsubs == 1 && g != star && cluster_on())
		watch_start(g);
	return 0;
}

void
hub_unsubscribe_all(struct ws_app_conn *a)
{
	while (a->nsubs > 0)
		hub_unsubscribe(a, a->nsubs - 1);
	if (a->subs != &a->first)
		free(a->subs);
	a->subs = NULL;
	a->subcap = 0;
}

/* Remove membership i of a.  Both arrays lose an entry by moving their
 * last one into the hole; order among subscribers does not matter. */
void
hub_unsubscribe(struct ws_app_conn *a, int i)
{
	struct hub_group *g = a->subs[i].g;
	uint32_t idx;
	struct ws_app_conn *moved;

	group_flush(g);		/* a leaver still gets what it was sent */
	if (a->subs[i].replay == WAITING)
		wait_drop(g, a);
	if (a->subs[i].replay != 0)
		a->nreplay--;
	idx = a->subs[i].idx;
	moved = g->subs[--g->nsubs];

	g->subs[idx] = moved;
	if (moved != a)
		moved->subs[hub_sub_find(moved, g)].idx = idx;
	a->subs[i] = a->subs[--a->nsubs];
	if (g->nsubs == 0) {
		/* An idle group gives back its list (a peak of 10,000
		 * subscribers left 80 KB) and, with no history worth
		 * keeping either, goes altogether. */
		free(g->subs);
		g->subs = NULL;
		g->subcap = 0;
		if (g->cstate != CS_NONE)
			watch_stop(g);
		if (g != star)
			LIST_APPEND(idle_first, idle_last, g, idle_prev,
			    idle_next);
		hub_group_release(g);
	}
}

/* ==== Envelope and history ============================================ */

void
hub_put_timestamp(struct json_buf *b)
{
	char ts[32];

	log_timestamp(ts);
	json_put_raw(b, "\"", 1);
	json_put_raw(b, ts, strlen(ts));
	json_put_raw(b, "\"", 1);
}

/*
 * Keep b in g's history, within the group's bounds (--history,
 * --history-bytes) and the bound on all history (--history-total): past
 * that, idle groups least recently used go first, then g's own oldest
 * events.  The history is always the last hlen events, ending at g->seq
 * (positions are computed from that), so an event that cannot be kept
 * (larger than the bounds, or no memory) empties it: a resume from before
 * it then gets history_gap, never the wrong events.
 */
static void
hist_append(struct hub_group *g, struct ws_buf *b)
{
	if (hub_cfg.history == 0 || b->len > hub_cfg.history_bytes ||
	    b->len > hub_cfg.history_total)
		goto not_kept;
	while (g->hlen > 0 && (g->hlen >= hub_cfg.history ||
	    g->hbytes + b->len > hub_cfg.history_bytes))
		hist_drop_oldest(g);
	while (hist_total + b->len > hub_cfg.history_total) {
		if (evict_idle_group(g) == 0)
			continue;
		if (g->hlen == 0)
			goto not_kept;
		hist_drop_oldest(g);
	}
	if (g->hlen == g->hcap) {
		uint32_t ncap = g->hcap ? g->hcap * 2 : 8;
		struct ws_buf **nh = malloc(ncap * sizeof *nh);

		if (nh == NULL)
			goto not_kept;
		for (uint32_t i = 0; i < g->hlen; i++)
			nh[i] = g->hist[(g->hhead + i) & (g->hcap - 1)];
		free(g->hist);
		g->hist = nh;
		g->hcap = ncap;
		g->hhead = 0;
	}
	ws_buf_ref(b);
	g->hist[(g->hhead + g->hlen) & (g->hcap - 1)] = b;
	g->hlen++;
	g->hbytes += b->len;
	hist_total += b->len;
	return;
not_kept:
	while (g->hlen > 0)
		hist_drop_oldest(g);
}

size_t
hub_history_total(void)
{
	return hist_total;
}

/* The kept event with seq s (the caller checks the range). */
static struct ws_buf *
hist_at(const struct hub_group *g, uint64_t s)
{
	uint64_t oldest = g->seq - g->hlen + 1;

	return g->hist[(g->hhead + (uint32_t)(s - oldest)) & (g->hcap - 1)];
}

/* ==== Delivery to one member: a WebSocket, or an event stream ======= */

/*
 * Where member a stands in membership s's group: the last seq it was
 * sent.  A replaying member is at the seq before the next it replays; a
 * live one has every event flushed so far (the group's pending events of
 * this turn reach it with the others).
 */
static uint64_t
member_pos(const struct hub_sub *s)
{
	if (s->replay == WAITING)
		return s->g->seq;
	return s->replay != 0 ? s->replay - 1 : s->g->seq - s->g->npend;
}

/*
 * An event stream's id: the position of every group of the stream,
 * "NAME=EPOCH:SEQ,..." in membership order, with g at seq (the event
 * being sent; 0: every group where it stands).  Its length.
 */
#define SSE_ID_MAX	(HUB_SSE_GROUPS * (HUB_GROUP_MAX + HUB_EPOCH_LEN + 23))

static int	wait_at(const struct hub_group *, const struct ws_app_conn *,
		    const char **, uint64_t *);

static size_t
sse_id(const struct ws_app_conn *a, const struct hub_group *g, uint64_t seq,
    char *out, size_t cap)
{
	size_t len = 0;

	for (uint32_t i = 0; i < a->nsubs && len < cap; i++) {
		const struct hub_sub *s = &a->subs[i];
		const char *epoch = s->g->epoch;
		uint64_t at = s->g == g ? seq : member_pos(s);
		int n;

		/* A group still waiting for its first read from Redis has no
		 * position of its own yet: the one its reader resumes from,
		 * or none (it starts live). */
		if (s->replay == WAITING && !wait_at(s->g, a, &epoch, &at))
			continue;
		n = snprintf(out + len, cap - len, "%s%s=%s%s%llu",
		    len > 0 ? "," : "", s->g->hn.name, epoch,
		    *epoch != '\0' ? ":" : "", (unsigned long long)at);
		len += n > 0 ? (size_t)n : 0;
	}
	return len < cap ? len : cap;
}

/* A record of stream a: id (NULL: none) and the payload of frame b (NULL:
 * none), queued on a's connection. */
static int
sse_send(struct ws_app_conn *a, const char *id, size_t idlen,
    const struct ws_buf *b)
{
	const uint8_t *p = b != NULL ? b->data + b->hlen : NULL;
	size_t n = b != NULL ? b->len - b->hlen : 0;
	struct ws_buf *r = ws_buf_new(sse_record(NULL, id, idlen, p, n));
	int rc;

	if (r == NULL) {
		ws_close(a->c, WS_CLOSE_INTERNAL, "out of memory");
		return -1;
	}
	sse_record(r->data, id, idlen, p, n);
	r->nframes = 1;
	rc = ws_send(a->c, r);
	ws_buf_unref(r);
	return rc;
}

/*
 * Send member a the event b, seq of group g: the shared frame itself to a
 * WebSocket; to an event stream, a record of its own, whose id says where
 * the stream stands in each of its groups after this event ("*" has no
 * position: a broadcast is live only, and moves no id).  Returns
 * ws_send()'s answer.
 */
static int
member_send(struct ws_app_conn *a, const struct hub_group *g, uint64_t seq,
    struct ws_buf *b)
{
	static char id[SSE_ID_MAX];

	if (!a->sse)
		return ws_send(a->c, b);
	if (g == star)
		return sse_send(a, NULL, 0, b);
	return sse_send(a, id, sse_id(a, g, seq, id, sizeof id), b);
}

static int	waiting(const struct ws_app_conn *);

void
hub_sse_mark(struct ws_app_conn *a)
{
	static char id[SSE_ID_MAX];

	if (waiting(a)) {
		a->mark_due = 1;	/* once every group has answered */
		return;
	}

	sse_send(a, id, sse_id(a, NULL, 0, id, sizeof id), NULL);
}

struct fanout {
	struct hub_group *g;
	struct ws_buf	*b;
	unsigned	 n;
};

static int	pend_add(struct hub_group *, struct ws_buf *);

static void
send_one(struct ws_conn *c, struct ws_app_conn *a, void *arg)
{
	struct fanout *f = arg;

	(void)c;
	if (member_send(a, f->g, f->g->seq, f->b) == 0)
		f->n++;
}

/* "*" reaches every hub connection (not /echo), save those whose token
 * does not grant every group: a connection never sees events of a group
 * it may not join. */
static void
send_star(struct ws_conn *c, struct ws_app_conn *a, void *arg)
{
	if (a != NULL && (hub_claims(a) == NULL ||
	    auth_may_join_all(hub_claims(a))))
		send_one(c, a, arg);
}

/*
 * The envelope in two parts, around its seq: head ends with "seq": and
 * tail starts with ,"timestamp":.  With --redis, Redis puts the seq
 * between them (cluster.c); alone, hub_publish() does.
 */
static void
put_head(struct json_buf *jb, const char *name, size_t n, const char *type,
    size_t tlen, const char *extra)
{
	json_put_cstr(jb, "{\"type\":");
	json_put_str(jb, type, tlen);
	if (extra != NULL)
		json_put_cstr(jb, extra);
	json_put_cstr(jb, ",\"group\":");
	json_put_str(jb, name, n);
	json_put_cstr(jb, ",\"seq\":");
}

static void
put_tail(struct json_buf *jb, const uint8_t *data, size_t dlen)
{
	json_put_cstr(jb, ",\"timestamp\":");
	hub_put_timestamp(jb);
	json_put_cstr(jb, ",\"data\":");
	if (dlen == 0)
		json_put_cstr(jb, "null");
	else
		json_put_raw(jb, data, dlen);
	json_put_raw(jb, "}", 1);
}

/*
 * Event b, g's seq g->seq, to g's members: kept in the history, held for
 * the end of the turn ("*": queued on every connection now).  The number
 * of members it goes to.
 */
static unsigned
fan_out(struct hub_group *g, struct ws_buf *b)
{
	struct fanout f = { g, b, 0 };

	if (g->nsubs == 0 && g != star) {
		/* In use: the idle list is least recently used first. */
		LIST_REMOVE(idle_first, idle_last, g, idle_prev, idle_next);
		LIST_APPEND(idle_first, idle_last, g, idle_prev, idle_next);
	}
	hist_append(g, b);
	if (g == star)
		ws_foreach(send_star, &f);
	else if (g->nsubs > 0 && pend_add(g, b) == 0)
		f.n = g->nsubs;
	else if (g->nsubs > 0) {	/* no memory to hold it: send it now */
		group_flush(g);
		for (uint32_t i = 0; i < g->nsubs; i++)
			if (member_live(g->subs[i], g))
				send_one(NULL, g->subs[i], &f);
	}
	return f.n;
}

void
hub_envelope(const char *name, size_t n, const char *type, size_t tlen,
    const char *extra, const uint8_t *data, size_t dlen,
    struct json_buf *head, struct json_buf *tail)
{
	put_head(head, name, n, type, tlen, extra);
	put_tail(tail, data, dlen);
}

/* With --redis: hand the event to Redis.  0 or -1 (Redis down, full, or
 * out of memory). */
static int
publish_cluster(const struct hub_group *g, const char *name, size_t n,
    const char *type, size_t tlen, const char *extra, const uint8_t *data,
    size_t dlen, cluster_pub_fn *cb, void *arg)
{
	struct json_buf head = { 0 }, tail = { 0 };
	int rc = -1;

	if (g != NULL) {
		name = g->hn.name;
		n = g->hn.len;
	}
	hub_envelope(name, n, type, tlen, extra, data, dlen, &head, &tail);
	if (!head.oom && !tail.oom)
		rc = cluster_publish(name, n, (const char *)head.p, head.len,
		    (const char *)tail.p, tail.len, cb, arg);
	json_buf_free(&head);
	json_buf_free(&tail);
	return rc;
}

uint64_t
hub_publish(struct hub_group *g, const char *type, size_t tlen,
    const char *extra, const uint8_t *data, size_t dlen, unsigned *delivered)
{
	struct json_buf jb = { 0 };
	struct ws_buf *b = NULL;
	unsigned n;
	char seq[32];

	if (cluster_on()) {
		if (publish_cluster(g, NULL, 0, type, tlen, extra, data, dlen,
		    NULL, NULL) == -1)
			return 0;
		hub_stats.events_published++;
		if (delivered != NULL)
			*delivered = g->nsubs;
		return 1;
	}
	put_head(&jb, g->hn.name, g->hn.len, type, tlen, extra);
	snprintf(seq, sizeof seq, "%llu", (unsigned long long)g->seq + 1);
	json_put_cstr(&jb, seq);
	put_tail(&jb, data, dlen);
	if (!jb.oom)
		b = ws_buf_frame(WS_OP_TEXT, jb.p, jb.len);
	json_buf_free(&jb);
	if (b == NULL)
		return 0;
	g->seq++;
	n = fan_out(g, b);
	ws_buf_unref(b);
	hub_stats.events_published++;
	if (delivered != NULL)
		*delivered = n;
	return g->seq;
}

/* Event types only the server publishes: clients may not forge them. */
static const char *const server_types[] = { "session_event", "realtime_update",
    "system_alert" };

int
hub_answers_later(void)
{
	return cluster_on();
}

/* A client's publish on its way through Redis: whom to answer. */
struct pub_wait {
	hub_done_fn	*done;
	void		*arg;
	uint8_t		 len;
	char		 name[HUB_GROUP_MAX + 1];
};

static void
client_published(void *arg, const char *epoch, uint64_t seq, const char *err)
{
	struct pub_wait *w = arg;
	struct hub_group *g = hub_group(w->name, w->len, 0);
	struct hub_result r = { 0 };

	(void)epoch;
	if (err == NULL) {
		hub_stats.events_published++;
		r.seq = seq;
		r.delivered = g != NULL ? (g == star ? (unsigned)
		    ws_stats_get()->websockets + ws_stats_get()->streams :
		    g->nsubs) : 0;
	} else {
		r.err = HUB_E_UNAVAILABLE;
		r.why = "Redis did not confirm the event: it may or may "
		    "not be stored";
	}
	w->done(w->arg, &r);
	free(w);
}

int
hub_client_publish(const char *group, size_t glen,
    const struct json_doc *doc, int type, int data,
    const struct auth_claims *claims, struct hub_result *r,
    hub_done_fn *done, void *arg)
{
	char name[HUB_EVENT_MAX];
	const uint8_t *d = NULL;
	size_t dlen = 0;
	struct hub_group *g;
	long n;
	int fresh;

	r->err = HUB_E_BAD_JSON;
	r->why = "the event type must be a string of 1-128 bytes";
	if (type < 0 || doc->tok[type].type != JSON_STRING ||
	    (n = json_tok_str(doc, type, name, sizeof name)) <= 0)
		return -1;
	for (size_t i = 0; i < sizeof server_types / sizeof server_types[0];
	    i++)
		if (strlen(server_types[i]) == (size_t)n &&
		    memcmp(server_types[i], name, n) == 0) {
			r->err = HUB_E_FORBIDDEN;
			r->why = "this event type is the server's own";
			return -1;
		}
	r->err = HUB_E_BAD_GROUP;
	r->why = "group must be 1-64 bytes of [A-Za-z0-9._:-], or *";
	if (!hub_name_valid(group, glen) && !(glen == 1 && group[0] == '*'))
		return -1;
	/* Rights before the group exists: a refused publish creates
	 * nothing, so it can neither fill --max-groups nor evict. */
	r->err = HUB_E_FORBIDDEN;
	r->why = "the token does not grant publishing to this group";
	if (claims != NULL && !auth_may_publish(claims, group, glen))
		return -1;
	if (data >= 0)
		d = json_tok_json(doc, data, &dlen);
	if (cluster_on()) {
		/* No local group: this node may have no member of it.  The
		 * answer comes once Redis has stored the event. */
		struct pub_wait *w = malloc(sizeof *w);

		r->err = HUB_E_UNAVAILABLE;
		r->why = "Redis is unavailable";
		if (w == NULL)
			return -1;
		w->done = done;
		w->arg = arg;
		w->len = glen;
		memcpy(w->name, group, glen);
		if (publish_cluster(NULL, group, glen, name, n, NULL, d, dlen,
		    client_published, w) == -1) {
			free(w);
			return -1;
		}
		return 1;
	}
	r->err = HUB_E_TOO_LARGE;
	r->why = "too many groups";
	if ((g = hub_group(group, glen, 1)) == NULL)
		return -1;
	r->err = HUB_E_UNAVAILABLE;
	r->why = "out of memory";
	fresh = g->seq == 0;
	r->seq = hub_publish(g, name, n, NULL, d, dlen, &r->delivered);
	/* A group this publish created, whose event was neither kept nor
	 * sent (no members, no history), is not kept either. */
	if (fresh)
		hub_group_release(g);
	return r->seq == 0 ? -1 : 0;
}

/* Hold b (a new reference) until the end of the turn. */
static int
pend_add(struct hub_group *g, struct ws_buf *b)
{
	struct ws_buf **p = hub_grow(g->pend, g->npend, &g->pendcap, sizeof *p,
	    4);

	if (p == NULL)
		return -1;
	g->pend = p;
	ws_buf_ref(b);
	g->pend[g->npend++] = b;
	if (!g->on_turn) {
		g->on_turn = 1;
		g->turn_next = turn_list;
		turn_list = g;
	}
	return 0;
}

/*
 * Queue g's pending events on every subscriber: the one frame as it is,
 * or several as one block.  Without memory for the block, frame by frame;
 * an event stream gets a record per event.
 */
static void
group_flush(struct hub_group *g)
{
	struct ws_buf *b = NULL;
	uint32_t i;

	if (g->npend == 0)
		return;
	if (g->npend > 1)
		b = ws_buf_batch(g->pend, g->npend);
	for (i = 0; i < g->nsubs; i++) {
		struct ws_app_conn *a = g->subs[i];
		struct ws_conn *c = a->c;

		if (!member_live(a, g))
			continue;	/* it replays these from history */
		if (a->sse) {
			uint64_t seq = g->seq - g->npend;

			for (uint32_t k = 0; k < g->npend; k++)
				if (member_send(a, g, ++seq, g->pend[k]) == -1)
					break;
		} else if (g->npend == 1 || b != NULL)
			ws_send(c, b != NULL ? b : g->pend[0]);
		else
			for (uint32_t k = 0; k < g->npend; k++)
				if (ws_send(c, g->pend[k]) == -1)
					break;
	}
	ws_buf_unref(b);
	for (i = 0; i < g->npend; i++)
		ws_buf_unref(g->pend[i]);
	g->npend = 0;
}

void
hub_turn(void)
{
	while (turn_list != NULL) {
		struct hub_group *g = turn_list;

		turn_list = g->turn_next;
		g->on_turn = 0;
		group_flush(g);
		hub_group_release(g);
	}
}

/* ,"epoch":"E","seq":S: the position every answer about g carries. */
static void
put_position(struct json_buf *jb, const struct hub_group *g)
{
	char tail[64];

	snprintf(tail, sizeof tail, ",\"epoch\":\"%s\",\"seq\":%llu", g->epoch,
	    (unsigned long long)g->seq);
	json_put_cstr(jb, tail);
}

/*
 * 1 if the events after pos are all still kept: the same epoch (or a bare
 * seq), not older than the history, not newer than the stream.
 */
static int
pos_kept(const struct hub_group *g, const struct hub_pos *pos)
{
	uint64_t oldest = g->seq - g->hlen + 1;

	return (pos->epoch[0] == '\0' || strcmp(pos->epoch, g->epoch) == 0) &&
	    pos->seq + 1 >= oldest && pos->seq <= g->seq;
}

void
hub_history_members(const char *name, size_t n, const struct hub_pos *pos,
    unsigned limit, struct json_buf *out)
{
	struct hub_group *g = hub_group(name, n, 0);
	uint64_t s, oldest;
	unsigned k = 0;
	char tail[64];

	json_put_cstr(out, "\"group\":");
	json_put_str(out, name, n);
	if (g == NULL) {
		json_put_cstr(out, ",\"epoch\":null,\"seq\":0,\"oldest\":1,"
		    "\"events\":[],\"more\":false");
		return;
	}
	put_position(out, g);
	if (limit > HUB_HISTORY_PAGE)
		limit = HUB_HISTORY_PAGE;
	/* A position that cannot be honoured (another epoch, older than
	 * the history, newer than the stream) reads from the oldest kept
	 * event, and says so, as a replay would with history_gap. */
	oldest = g->seq - g->hlen + 1;
	s = pos->seq;
	snprintf(tail, sizeof tail, ",\"oldest\":%llu",
	    (unsigned long long)oldest);
	json_put_cstr(out, tail);
	if (!pos_kept(g, pos)) {
		json_put_cstr(out, ",\"gap\":true");
		s = oldest - 1;
	}
	json_put_cstr(out, ",\"events\":[");
	for (s++; s <= g->seq && k < limit; s++, k++) {
		struct ws_buf *b = hist_at(g, s);

		if (k > 0)
			json_put_raw(out, ",", 1);
		json_put_raw(out, b->data + b->hlen, b->len - b->hlen);
	}
	json_put_cstr(out, s <= g->seq ? "],\"more\":true" : "],\"more\":false");
}

void
hub_groups_json(unsigned offset, unsigned limit, struct json_buf *out)
{
	struct hub_group *g = NULL;
	char tail[64];

	/* From the nearer end: no page costs more than half the groups. */
	if (offset < groups.n / 2) {
		g = all_first;
		for (unsigned i = 0; i < offset; i++)
			g = g->all_next;
	} else if (offset < groups.n) {
		g = all_last;
		for (unsigned i = groups.n - 1; i > offset; i--)
			g = g->all_prev;
	}
	json_put_cstr(out, "{\"groups\":[");
	for (unsigned n = 0; g != NULL && n < limit; g = g->all_next, n++) {
		json_put_cstr(out, n > 0 ? ",{\"group\":" : "{\"group\":");
		json_put_str(out, g->hn.name, g->hn.len);
		put_position(out, g);
		snprintf(tail, sizeof tail, ",\"subscribers\":%u}", g->nsubs);
		json_put_cstr(out, tail);
	}
	snprintf(tail, sizeof tail, "],\"total\":%u}", groups.n);
	json_put_cstr(out, tail);
}

/* ==== Replies to the client =========================================== */

/* {"type":T ... } to c alone; fields are raw members with commas. */
void
hub_reply(struct ws_conn *c, struct json_buf *jb)
{
	json_put_raw(jb, "}", 1);
	if (!jb->oom)
		ws_send_msg(c, WS_OP_TEXT, jb->p, jb->len);
	json_buf_free(jb);
}

void
hub_begin(struct json_buf *jb, const char *type, const uint8_t *id, size_t idlen)
{
	json_put_cstr(jb, "{\"type\":\"");
	json_put_cstr(jb, type);
	json_put_raw(jb, "\"", 1);
	if (id != NULL) {
		json_put_cstr(jb, ",\"id\":");
		json_put_raw(jb, id, idlen);
	}
}

/* An error answer; the message is our own fixed text, never input. */
void
hub_send_error(struct ws_conn *c, enum hub_error e, const char *msg,
    const uint8_t *id, size_t idlen)
{
	struct json_buf jb = { 0 };

	hub_stats.errors[e]++;
	hub_begin(&jb, "error", id, idlen);
	json_put_cstr(&jb, ",\"code\":\"");
	json_put_cstr(&jb, hub_error_names[e]);
	json_put_cstr(&jb, "\",\"message\":");
	json_put_str(&jb, msg, strlen(msg));
	hub_reply(c, &jb);
}


static void
send_gap(struct ws_app_conn *a, struct hub_group *g, uint64_t oldest)
{
	struct json_buf jb = { 0 };
	char tail[64];

	hub_stats.errors[HUB_E_HISTORY_GAP]++;
	hub_begin(&jb, "error", NULL, 0);
	json_put_cstr(&jb, ",\"code\":\"history_gap\",\"message\":"
	    "\"events after since are no longer kept\",\"group\":");
	json_put_str(&jb, g->hn.name, g->hn.len);
	put_position(&jb, g);
	snprintf(tail, sizeof tail, ",\"oldest\":%llu",
	    (unsigned long long)oldest);
	json_put_cstr(&jb, tail);
	hub_reply(a->c, &jb);
}

/*
 * Go on with every replay of a, from history, while its send queue has
 * room (ws_has_room()); when it has none, ws.c calls hub_writable() once
 * the queue has drained.  A member replays up to the last event already
 * flushed to the live members; past it, it is live, and this turn's
 * pending events reach it with the others: no gap, no duplicate.  Events
 * that fell out of the history meanwhile are reported as history_gap.
 */
static void	wait_pos(struct hub_group *, const struct ws_app_conn *,
		    const struct hub_pos *);
static void	wait_add(struct hub_group *, struct ws_app_conn *);

static void
replay_more(struct ws_app_conn *a)
{
	for (uint32_t i = 0; i < a->nsubs && a->nreplay > 0; i++) {
		struct hub_sub *s = &a->subs[i];
		struct hub_group *g = s->g;
		uint64_t flushed = g->seq - g->npend;
		uint64_t oldest = g->seq - g->hlen + 1;

		if (s->replay == 0 || s->replay == WAITING)
			continue;
		if (s->replay < oldest) {
			send_gap(a, g, oldest);
			s->replay = oldest;
		}
		for (; s->replay <= flushed; s->replay++) {
			struct ws_buf *b = hist_at(g, s->replay);

			if (!ws_has_room(a->c, b->len)) {
				ws_want_writable(a->c);
				return;
			}
			if (member_send(a, g, s->replay, b) == -1)
				return;		/* closing */
		}
		s->replay = 0;
		a->nreplay--;
	}
}


/*
 * Replay g's events after pos to member a.  A position from another
 * epoch, older than the history, or newer than the stream (a bare seq
 * after a restart) gets history_gap with the current epoch and the oldest
 * kept seq; what is kept is replayed all the same, so the client knows
 * exactly which events it missed.
 */
void
hub_replay_start(struct ws_app_conn *a, struct hub_group *g,
    const struct hub_pos *pos)
{
	uint64_t oldest = g->seq - g->hlen + 1, since = pos->seq;
	int i = hub_sub_find(a, g);

	if (i < 0)
		return;
	if (a->subs[i].replay == WAITING) {
		wait_pos(g, a, pos);	/* replayed once the group is read */
		return;
	}
	if (!pos_kept(g, pos)) {
		send_gap(a, g, oldest);
		since = oldest - 1;
	}
	if (a->subs[i].replay == 0)
		a->nreplay++;
	a->subs[i].replay = since + 1;
}

void
hub_replay(struct ws_app_conn *a, struct hub_group *g, const struct hub_pos *pos)
{
	hub_replay_start(a, g, pos);
	replay_more(a);
}

void
hub_writable(struct ws_conn *c, struct ws_app_conn *a)
{
	(void)c;
	if (a != NULL)
		replay_more(a);
}

void
hub_send_subscribed(struct ws_app_conn *a, struct hub_group *g)
{
	struct json_buf jb = { 0 };

	if (g->cstate == CS_SYNCING) {
		wait_add(g, a);		/* answered once the group is read */
		return;
	}

	hub_begin(&jb, "subscribed", NULL, 0);
	json_put_cstr(&jb, ",\"group\":");
	json_put_str(&jb, g->hn.name, g->hn.len);
	put_position(&jb, g);
	hub_reply(a->c, &jb);
}


/* ==== The cluster (--redis) =========================================== */

/*
 * With --redis, Redis orders every group's events (cluster.c) and each
 * node delivers what its group's channel brings, through the same path as
 * a local publish (fan_out(): history, the turn's batch).  A node follows
 * a group while it has local members: on the first one it subscribes to
 * the channel and, once that is confirmed, reads the group's stream (its
 * epoch, seq and the events kept, which fill the local history, so
 * replays work as without Redis).  Members that joined meanwhile wait
 * for that read (WAITING), then get subscribed and their replay.  An
 * event that does not follow the last one delivered (a message lost
 * while the subscriber reconnected, another epoch) starts a read of what
 * came after it; events heard while a read is in flight are held, in
 * order, and delivered after what the read brings.  Events that Redis no
 * longer keeps, or a new epoch (Redis lost the group), reach the members
 * as history_gap, as a resume would.  A read that failed (Redis lost) is
 * done again when Redis is back: nothing is skipped silently.
 */

/* The most events held while a read is in flight; past it they are
 * dropped and read again from the stream. */
#define HELD_MAX	10000

struct read_ctx {
	uint32_t	gen;
	uint8_t		len;
	char		name[HUB_GROUP_MAX + 1];
};

static void	read_done(void *, const struct cluster_read *);

static void
held_clear(struct hub_group *g)
{
	for (uint32_t i = 0; i < g->nheld; i++)
		ws_buf_unref(g->held[i]);
	g->nheld = 0;
}

static void
hist_clear(struct hub_group *g)
{
	while (g->hlen > 0)
		hist_drop_oldest(g);
}

static void
retry_later(struct hub_group *g)
{
	if (!g->on_retry) {
		g->on_retry = 1;
		LIST_APPEND(retry_first, retry_last, g, retry_prev, retry_next);
	}
}

static void
retry_drop(struct hub_group *g)
{
	if (g->on_retry) {
		g->on_retry = 0;
		LIST_REMOVE(retry_first, retry_last, g, retry_prev, retry_next);
	}
}

/* 1 if a membership of a still waits for its group's first read. */
static int
waiting(const struct ws_app_conn *a)
{
	for (uint32_t i = 0; i < a->nsubs && a->nreplay > 0; i++)
		if (a->subs[i].replay == WAITING)
			return 1;
	return 0;
}

static void
wait_add(struct hub_group *g, struct ws_app_conn *a)
{
	struct hub_sub *s = &a->subs[hub_sub_find(a, g)];
	struct hub_wait *w;

	if (s->replay == WAITING)
		return;		/* subscribed twice: answered once read */
	if ((w = hub_grow(g->wait, g->nwait, &g->waitcap, sizeof *w, 4)) ==
	    NULL) {
		ws_close(a->c, WS_CLOSE_INTERNAL, "out of memory");
		return;
	}
	g->wait = w;
	w[g->nwait++] = (struct hub_wait){ .a = a };
	if (s->replay == 0)
		a->nreplay++;
	s->replay = WAITING;
}

static void
wait_pos(struct hub_group *g, const struct ws_app_conn *a,
    const struct hub_pos *pos)
{
	for (uint32_t i = 0; i < g->nwait; i++)
		if (g->wait[i].a == a) {
			g->wait[i].pos = *pos;
			g->wait[i].has_pos = 1;
		}
}

/* Where a, waiting in g, resumes: 1 with *epoch ("" for a bare seq) and
 * *seq, or 0 (it starts live). */
static int
wait_at(const struct hub_group *g, const struct ws_app_conn *a,
    const char **epoch, uint64_t *seq)
{
	for (uint32_t i = 0; i < g->nwait; i++)
		if (g->wait[i].a == a && g->wait[i].has_pos) {
			*epoch = g->wait[i].pos.epoch;
			*seq = g->wait[i].pos.seq;
			return 1;
		}
	return 0;
}

/* a leaves g before its first read: forget it. */
static void
wait_drop(struct hub_group *g, const struct ws_app_conn *a)
{
	for (uint32_t i = 0; i < g->nwait; i++)
		if (g->wait[i].a == a) {
			g->wait[i] = g->wait[--g->nwait];
			return;
		}
}

/* g has been read: every waiting member gets subscribed and its replay,
 * from the history just filled, then goes live. */
static void
wait_release(struct hub_group *g)
{
	struct hub_wait *w = g->wait;
	uint32_t n = g->nwait;

	g->wait = NULL;
	g->nwait = g->waitcap = 0;
	for (uint32_t k = 0; k < n; k++) {
		struct ws_app_conn *a = w[k].a;
		int i = hub_sub_find(a, g);

		if (i < 0 || a->subs[i].replay != WAITING)
			continue;
		a->subs[i].replay = 0;
		a->nreplay--;
		hub_send_subscribed(a, g);
		if (w[k].has_pos)
			hub_replay(a, g, &w[k].pos);
		if (a->mark_due && !waiting(a)) {
			a->mark_due = 0;
			hub_sse_mark(a);
		}
	}
	free(w);
}

/*
 * Read g's stream: all that is kept while g is syncing, else what came
 * after its last delivered event.  A read already in flight is followed
 * by another; one that cannot be sent now is done when Redis is back.
 */
static void
read_start(struct hub_group *g)
{
	int synced = g->cstate == CS_SYNCED;
	struct read_ctx *x;

	if (g->reading) {
		g->again = 1;
		return;
	}
	retry_drop(g);
	if ((x = malloc(sizeof *x)) == NULL) {
		retry_later(g);
		return;
	}
	x->gen = g->gen;
	x->len = g->hn.len;
	memcpy(x->name, g->hn.name, g->hn.len);
	if (cluster_read(g->hn.name, g->hn.len, synced ? g->epoch : "",
	    synced ? g->seq : 0, hub_cfg.history > 0 ? hub_cfg.history : 1, 1,
	    read_done, x) == -1) {
		free(x);
		retry_later(g);
		return;
	}
	g->reading = 1;
	g->again = 0;
}

static void
watch_start(struct hub_group *g)
{
	g->cstate = CS_SYNCING;
	g->gen = ++watch_gen;
	g->reading = g->again = 0;
	/* The read starts once the subscription is confirmed
	 * (hub_cluster_watching()), so nothing published after the read
	 * can pass unheard. */
	if (cluster_watch(g->hn.name, g->hn.len) == -1)
		retry_later(g);
}

static void
watch_stop(struct hub_group *g)
{
	cluster_unwatch(g->hn.name, g->hn.len);
	g->cstate = CS_NONE;
	g->gen = ++watch_gen;	/* a read in flight is for nobody now */
	g->reading = g->again = 0;
	retry_drop(g);
	held_clear(g);
	/* Nobody here hears the channel now: the history would go stale.
	 * History requests read Redis; the next member reads it again. */
	hist_clear(g);
}

/* Event seq of g, frame b, to g's members and history. */
static void
deliver(struct hub_group *g, uint64_t seq, struct ws_buf *b)
{
	g->seq = seq;
	fan_out(g, b);
}

static void
deliver_raw(struct hub_group *g, uint64_t seq, const uint8_t *p, size_t len)
{
	struct ws_buf *b = ws_buf_frame(WS_OP_TEXT, p, len);

	if (b == NULL) {
		/* Nothing to send: the history must not hold a hole. */
		log_msg(LOG_ERROR, "out of memory: an event not delivered");
		g->seq = seq;
		hist_clear(g);
		return;
	}
	deliver(g, seq, b);
	ws_buf_unref(b);
}

/* Every member of g learns that events before oldest are not coming:
 * history_gap, as for a resume from too far back; a replay in progress
 * stops (it was of a history that is gone), the member is live. */
static void
members_gap(struct hub_group *g, uint64_t oldest)
{
	group_flush(g);
	for (uint32_t i = 0; i < g->nsubs; i++) {
		struct ws_app_conn *a = g->subs[i];
		struct hub_sub *s = &a->subs[hub_sub_find(a, g)];

		if (s->replay != 0 && s->replay != WAITING) {
			s->replay = 0;
			a->nreplay--;
		}
		if (s->replay != WAITING)
			send_gap(a, g, oldest);
	}
}

static void
sync_done(struct hub_group *g, const struct cluster_read *r)
{
	group_flush(g);
	hist_clear(g);
	snprintf(g->epoch, sizeof g->epoch, "%.8s", r->epoch);
	g->seq = r->n > 0 ? r->ev[0].seq - 1 : r->seq;
	for (uint32_t i = 0; i < r->n; i++) {
		struct ws_buf *b = ws_buf_frame(WS_OP_TEXT, r->ev[i].p,
		    r->ev[i].len);

		if (r->ev[i].seq != g->seq + 1 || b == NULL)
			hist_clear(g);
		g->seq = r->ev[i].seq;
		if (b != NULL)
			hist_append(g, b);
		ws_buf_unref(b);
	}
	/* Not all of the stream's last events could be kept here (too
	 * large, no memory): the history starts after them. */
	if (r->more || g->seq != r->seq) {
		hist_clear(g);
		g->seq = r->seq;
	}
	g->cstate = CS_SYNCED;
	wait_release(g);
}

static void
fill_done(struct hub_group *g, const struct cluster_read *r)
{
	if (strcmp(r->epoch, g->epoch) != 0 || r->gap) {
		/* A new stream (Redis lost the group), or events gone
		 * before this node could read them. */
		hist_clear(g);
		snprintf(g->epoch, sizeof g->epoch, "%.8s", r->epoch);
		g->seq = r->oldest - 1;
		members_gap(g, r->oldest);
	}
	for (uint32_t i = 0; i < r->n; i++) {
		if (r->ev[i].seq <= g->seq)
			continue;
		if (r->ev[i].seq != g->seq + 1)
			break;
		deliver_raw(g, r->ev[i].seq, r->ev[i].p, r->ev[i].len);
	}
	if (r->more)
		g->again = 1;
	else if (g->seq < r->seq) {
		/* Not kept at all (--history 0, or larger than Redis' reply
		 * could carry): say so rather than wait for them. */
		hist_clear(g);
		g->seq = r->seq;
		members_gap(g, r->seq + 1);
	}
}

/* The events heard during the read that follow what it brought. */
static void
held_deliver(struct hub_group *g)
{
	uint32_t i = 0;

	if (g->nheld == 0)
		return;
	if (strcmp(g->held_epoch, g->epoch) != 0) {
		held_clear(g);		/* of a stream the read did not see */
		g->again = 1;
		return;
	}
	for (; i < g->nheld && g->held_first + i <= g->seq; i++)
		;
	if (i < g->nheld && g->held_first + i != g->seq + 1) {
		g->again = 1;		/* a hole before them: read it */
		return;
	}
	for (; i < g->nheld; i++)
		deliver(g, g->held_first + i, g->held[i]);
	held_clear(g);
}

static void
read_done(void *arg, const struct cluster_read *r)
{
	struct read_ctx *x = arg;
	struct hub_group *g = hub_group(x->name, x->len, 0);

	if (g == NULL || g->gen != x->gen || g->cstate == CS_NONE) {
		free(x);
		return;		/* the group was left meanwhile */
	}
	free(x);
	g->reading = 0;
	if (r == NULL || r->epoch[0] == '\0') {
		retry_later(g);
		return;
	}
	if (g->cstate == CS_SYNCING)
		sync_done(g, r);
	else
		fill_done(g, r);
	held_deliver(g);
	if (g->again)
		read_start(g);
}

/* Hold event seq until the read in flight returns: contiguous, or
 * started again from seq. */
static void
hold(struct hub_group *g, const char *epoch, uint64_t seq,
    const uint8_t *p, size_t len)
{
	struct ws_buf *b, **h;

	if (g->nheld > 0 && (strcmp(epoch, g->held_epoch) != 0 ||
	    seq != g->held_first + g->nheld))
		held_clear(g);
	if (g->nheld >= HELD_MAX ||
	    (h = hub_grow(g->held, g->nheld, &g->heldcap, sizeof *h, 8)) ==
	    NULL || (b = ws_buf_frame(WS_OP_TEXT, p, len)) == NULL) {
		held_clear(g);
		g->again = 1;
		return;
	}
	g->held = h;
	if (g->nheld == 0) {
		g->held_first = seq;
		snprintf(g->held_epoch, sizeof g->held_epoch, "%s", epoch);
	}
	g->held[g->nheld++] = b;
}

void
hub_cluster_event(const char *name, size_t n, const char *epoch,
    uint64_t seq, const uint8_t *env, size_t len)
{
	struct hub_group *g = hub_group(name, n, 0);

	if (g == NULL || g->cstate == CS_NONE)
		return;		/* left: an unsubscribe crossed it */
	if (g->cstate == CS_SYNCED && !g->reading &&
	    strcmp(epoch, g->epoch) == 0) {
		if (seq <= g->seq)
			return;		/* read already */
		if (seq == g->seq + 1) {
			deliver_raw(g, seq, env, len);
			return;
		}
	}
	/* Out of order, or a read is in flight: held.  A read in flight
	 * is not asked to go again for it (under steady traffic that would
	 * never end): held_deliver() does, if a hole is left. */
	hold(g, epoch, seq, env, len);
	if (g->cstate == CS_SYNCED && !g->reading)
		read_start(g);
}

void
hub_cluster_watching(const char *name, size_t n)
{
	struct hub_group *g = hub_group(name, n, 0);

	if (g != NULL && g->cstate != CS_NONE)
		read_start(g);
}

void
hub_cluster_up(void)
{
	/* Each group taken off the list before its read: a read that
	 * fails at once puts it back at the tail, so the walk ends. */
	for (struct hub_group *g = retry_first, *stop = retry_last;
	    g != NULL; ) {
		struct hub_group *next = g->retry_next;
		int last = g == stop;

		retry_drop(g);
		if (cluster_watch(g->hn.name, g->hn.len) == 0)
			read_start(g);
		else
			retry_later(g);
		if (last)
			break;
		g = next;
	}
}

void
hub_cluster_start(void)
{
	watch_start(star);	/* "*" reaches every connection: always */
}

/* ---- History from Redis ---- */

struct hist_ctx {
	hub_history_fn	*done;
	void		*arg;
	uint8_t		 len;
	char		 name[HUB_GROUP_MAX + 1];
};

static void
hist_read(void *arg, const struct cluster_read *r)
{
	struct hist_ctx *x = arg;
	struct json_buf jb = { 0 };
	char num[96];

	if (r == NULL) {
		x->done(x->arg, NULL);
		free(x);
		return;
	}
	json_put_cstr(&jb, "\"group\":");
	json_put_str(&jb, x->name, x->len);
	if (r->epoch[0] == '\0')
		json_put_cstr(&jb, ",\"epoch\":null");
	else {
		json_put_cstr(&jb, ",\"epoch\":");
		json_put_str(&jb, r->epoch, strlen(r->epoch));
	}
	snprintf(num, sizeof num, ",\"seq\":%llu,\"oldest\":%llu",
	    (unsigned long long)r->seq, (unsigned long long)r->oldest);
	json_put_cstr(&jb, num);
	if (r->gap)
		json_put_cstr(&jb, ",\"gap\":true");
	json_put_cstr(&jb, ",\"events\":[");
	for (uint32_t i = 0; i < r->n; i++) {
		if (i > 0)
			json_put_raw(&jb, ",", 1);
		json_put_raw(&jb, r->ev[i].p, r->ev[i].len);
	}
	json_put_cstr(&jb, r->more ? "],\"more\":true" : "],\"more\":false");
	x->done(x->arg, &jb);
	json_buf_free(&jb);
	free(x);
}

int
hub_history(const char *name, size_t n, const struct hub_pos *pos,
    unsigned limit, struct json_buf *out, hub_history_fn *done, void *arg)
{
	struct hist_ctx *x;

	if (!cluster_on()) {
		hub_history_members(name, n, pos, limit, out);
		return 0;
	}
	if ((x = malloc(sizeof *x)) == NULL)
		return -1;
	x->done = done;
	x->arg = arg;
	x->len = n;
	memcpy(x->name, name, n);
	if (cluster_read(name, n, pos->epoch, pos->seq, limit <
	    HUB_HISTORY_PAGE ? limit : HUB_HISTORY_PAGE, 0, hist_read, x) ==
	    -1) {
		free(x);
		return -1;
	}
	return 1;
}

int
hub_init(const struct hub_config *cfg)
{
	hub_cfg = *cfg;
	start_ms = loop_now_ms();
	if (hub_table_init(&groups, 64) == -1 ||
	    (star = calloc(1, sizeof *star)) == NULL) {
		log_msg(LOG_ERROR, "out of memory");
		return -1;
	}
	star->hn.name[0] = '*';
	star->hn.len = 1;
	return 0;
}
