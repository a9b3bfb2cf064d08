/*
 * session_events.h - sessions (session_events.c): the registry, and the
 * timer-driven diff that announces what changed to group "monitor".
 *
 * The journal and the diff are pure (no I/O) and tested alone.
 */
#ifndef SESSION_EVENTS_H
#define SESSION_EVENTS_H

#include <stdint.h>

#include "hub.h"

struct json_buf;

/* ---- The registry ----------------------------------------------------- */

struct sess;

/*
 * Session ids use the group alphabet, 1-64 bytes; id NULL makes a random
 * one.  sess_create() returns the session, or NULL with *status 409
 * (exists), 503 (--max-sessions reached) or 500.  by_conn marks a session
 * made by a connection to /ws/sessions/ID: it ends --session-ttl after its
 * last connection leaves.
 */
struct sess *sess_create(const char *id, size_t n, const uint8_t *meta, size_t mlen,
	    int by_conn, int *status);
/*
 * Create-or-update (PUT): *status 201 when created, 200 when its metadata
 * was replaced; NULL with 503 or 500 as above.  An existing session is no
 * longer by_conn afterwards, and a metadata change shows in the next
 * tick's session_updated.
 */
struct sess *sess_put(const char *id, size_t n, const uint8_t *meta,
	    size_t mlen, int *status);
int	sess_delete(const char *id, size_t n);	/* 0, or -1: unknown */

/* A connection joins session id (created if absent); NULL: refused. */
struct sess *sess_attach(const char *id, size_t n, int *status);
void	sess_detach(struct sess *s);
const char *sess_id(const struct sess *s);

unsigned sess_count(void);

/* Append {"sessions":[...],"total":N} for one page in creation order. */
void	sess_list_json(unsigned offset, unsigned limit, struct json_buf *out);

/*
 * With --redis the registry is shared, in Redis (cluster_sessions.c), and
 * these answer later.  sess_shared() says so.  A change: op 'c' (POST:
 * id NULL makes a random one), 'p' (PUT) or 'd' (DELETE); done gets the
 * status (201, 200, 204, 404, 409, 503; 0: Redis failed) and the id.  A
 * page: done gets the JSON of sess_list_json() and the active count, or
 * NULL when Redis failed.  -1 at once when Redis is down.
 * sess_attach() and sess_detach() work alike either way: the attach is
 * made in Redis meanwhile (and again after each reconnection,
 * sess_cluster_up()); sess_count() is the cluster's at the last tick.
 */
int	sess_shared(void);
typedef void	sess_done_fn(void *arg, int status, const char *id,
		    size_t n);
int	sess_shared_change(int op, const char *id, size_t n,
	    const uint8_t *meta, size_t mlen, sess_done_fn *done, void *arg);
typedef void	sess_list_fn(void *arg, const struct json_buf *page,
		    uint64_t active);
int	sess_shared_list(unsigned offset, unsigned limit, sess_list_fn *done,
	    void *arg);
void	sess_cluster_up(void);

/* The cluster's sums at the last tick (node ""), and how many nodes
 * reported. */
struct csess_figures;
unsigned sess_cluster(struct csess_figures *sum);

/* Start the tick: session diff, expiry, the host figures and alerts
 * (host.c), realtime_update.  0 or -1. */
int	sess_init(void);


/* What happened to a session between two ticks. */
enum sess_change {
	SESS_CREATED,
	SESS_DESTROYED,
	SESS_UPDATED		/* its metadata replaced by PUT */
};

/* Ids created, destroyed or updated since the last tick, in order. */
struct sess_ids {
	char	(*ids)[HUB_GROUP_MAX + 1];	/* owned */
	uint32_t n, cap;
};

struct sess_journal {
	struct sess_ids created;
	struct sess_ids destroyed;
	struct sess_ids updated;
};

/* One session_event: its kind, its ids and its counts. */
struct sess_event {
	enum sess_change       change;
	const struct sess_ids *ids;		/* borrowed from the journal */
	unsigned	       previous, current;
};

/* Append an id (n <= 64 bytes) to one list of the journal.  0 or -1. */
int	sess_journal_add(struct sess_journal *j, enum sess_change change,
	    const char *id, size_t n);
void	sess_journal_clear(struct sess_journal *j);

/*
 * The events for one tick, given the live count at the previous tick:
 * session_created (if anything was created), session_updated (if any
 * metadata changed; previous == current), then session_destroyed (if
 * anything was destroyed).  Returns how many (0 to 3) were written.
 */
int	sess_diff(unsigned previous, const struct sess_journal *j,
	    struct sess_event ev[3]);

#endif
