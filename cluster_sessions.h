/*
 * cluster_sessions.h - the session registry shared by every node, in
 * Redis (cluster_sessions.c), with --redis.
 *
 * One Lua script holds the registry's rules: create, create-or-update,
 * delete, a connection's attach and detach, a page of the list, and the
 * tick, in which every node reports its figures and the one node that
 * holds the lease expires idle sessions, forgets the connections of nodes
 * that stopped reporting, and takes the journal of changes to announce.
 * Announcing it and removing it happen in one script (csess_commit()),
 * so each change is announced exactly once, whichever node holds the
 * lease.  session_events.c decides what to ask and what the answers
 * mean; this file knows the script and the shape of its replies.
 *
 * Keys share the hash tag of group "monitor", where the changes are
 * announced (README "Several nodes"):
 *
 *	wsd:{monitor}:s:rec	hash: id → "GEN BY_CONN CREATED_AT METADATA"
 *	wsd:{monitor}:s:order	sorted set: id by GEN (creation order)
 *	wsd:{monitor}:s:conns	hash: id → connections, on every node
 *	wsd:{monitor}:s:idle	sorted set: id by when it emptied (ms)
 *	wsd:{monitor}:s:node:N	hash: "id GEN" → node N's connections
 *	wsd:{monitor}:s:journal	list: "c"/"u"/"d" + id, in order
 *	wsd:{monitor}:s:pending	list: the journal taken, until announced
 *	wsd:{monitor}:s:updated	hash: ids updated since the journal's take
 *	wsd:{monitor}:s:state	hash: total, take, at_take, last_event
 *	wsd:{monitor}:s:forgot:N	hash: node N was forgotten, with what
 *				it held (an hour)
 *	wsd:{monitor}:s:deleted:ID GEN	deleted while held (an hour)
 *	wsd:{monitor}:s:nodes	hash: node → when it stops counting (ms)
 *	wsd:{monitor}:s:stats	hash: node → its figures
 *	wsd:{monitor}:s:lease	string: the node that runs the tick
 *
 * Every call returns 0, or -1 at once when Redis is down or full; its
 * callback runs later, from the loop.  A status 0 in a callback means
 * the reply was lost or refused (the change may or may not be made).
 */
#ifndef CLUSTER_SESSIONS_H
#define CLUSTER_SESSIONS_H

#include <stddef.h>
#include <stdint.h>

#include "resp.h"

/* Register the script with cluster.c (before cluster_init()) and pick
 * this node's id.  0 or -1. */
int	csess_init(void);

/* This node's id: 16 hex digits, new at each start. */
const char *csess_node(void);

/* status: 201, 200, 204, 404, 409, 410 or 503 (--max-sessions, or the
 * journal is full); gen: the session's generation (its creation number). */
typedef void	csess_fn(void *arg, int status, uint64_t gen);

/* Create id[0..n) (POST: 409 when it exists), or with put create it or
 * replace its metadata (PUT: 201 or 200). */
int	csess_create(const char *id, size_t n, const uint8_t *meta,
	    size_t mlen, int put, csess_fn *cb, void *arg);
int	csess_delete(const char *id, size_t n, csess_fn *cb, void *arg);

/*
 * One connection of this node joins session id (made if absent, ending
 * --session-ttl after its last connection anywhere leaves), and leaves
 * it: gen is the attach's, so a session deleted and made again is not
 * touched by the old one's connections.  was: 0, or the generation the
 * connection held before it had to hold again (Redis lost, or this node
 * forgotten): status 410 when that session was deleted by DELETE while
 * held (the connection holds none from then on, as on one node); a
 * session that ended otherwise, or that Redis lost, is made again.
 */
int	csess_attach(const char *id, size_t n, uint64_t was, csess_fn *cb,
	    void *arg);
int	csess_detach(const char *id, size_t n, uint64_t gen);

/*
 * Take back every connection this node attached (before attaching again
 * after a reconnection, when some replies were lost, or once forgotten).
 * cb gets what Redis had counted, each session's id and generation (so
 * a hold whose reply was lost learns its generation), or NULL.
 */
struct csess_hold {
	const char	*id;
	size_t		 n;
	uint64_t	 gen;
};
typedef void	csess_forget_fn(void *arg, const struct csess_hold *h,
		    uint32_t n);
int	csess_forget(csess_forget_fn *cb, void *arg);

/* A page of the registry in creation order. */
struct csess_row {
	const uint8_t	*id, *at, *meta;
	size_t		 idlen, atlen, mlen;	/* mlen 0: no metadata */
	uint64_t	 conns;
};
struct csess_page {
	uint64_t	 active, total;
	uint32_t	 n;
	const struct csess_row *rows;		/* valid in the callback */
};
typedef void	csess_page_fn(void *arg, const struct csess_page *p);
int	csess_list(uint64_t offset, uint64_t limit, csess_page_fn *cb,
	    void *arg);

/* What a node reports at each tick (and reads of the others). */
struct csess_figures {
	char		 node[17];
	uint64_t	 connections, groups, messages_in, messages_out;
	uint64_t	 watchers;	/* members of "monitor" */
	uint64_t	 uptime_s;
};

/* One change of the journal: 'c', 'u' or 'd', and the id. */
struct csess_change {
	char		 kind;
	const char	*id;
	size_t		 n;
};

/* The tick's answer.  The rest is set only for the lease's holder. */
struct csess_tick {
	int		 leader;
	int		 fresh;		/* this node was forgotten (or is new):
					   take back and hold again */
	uint64_t	 active, total;
	uint32_t	 nnodes;
	const struct csess_figures *nodes;	/* every node reporting */
	uint64_t	 take;		/* the journal taken: its number */
	uint64_t	 at_take;	/* active sessions when it was taken */
	uint64_t	 last_event_ms, now_ms;	/* Redis's clock; 0: none */
	uint32_t	 nchanges;
	const struct csess_change *changes;	/* valid in the callback */
};
typedef void	csess_tick_fn(void *arg, const struct csess_tick *t);

/*
 * Report this node's figures (it counts for three ticks, at least 1 s:
 * a node that stops reporting is forgotten after that, and told so if it
 * reports again) and, holding or taking the lease (held as long), run
 * the registry's share of the tick.  t NULL: failed.
 */
int	csess_tick(const struct csess_figures *mine, csess_tick_fn *cb,
	    void *arg);

/*
 * The lease holder announces the journal it took (take: its number): nev
 * events, each an envelope split around its seq (ev[2i] before, ev[2i+1]
 * after), go to group "monitor" and the journal is removed, in one
 * script, only while this node still holds the lease and that journal
 * is the one pending: a commit that arrives late changes nothing.
 */
int	csess_commit(uint64_t take, int nev, const struct resp_arg *ev);

#endif
