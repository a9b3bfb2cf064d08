/*
 * hub.h - groups, events, history and delivery (hub.c).
 *
 * The layer above ws.c: it decides which connection belongs to which
 * group, turns published events into envelopes (encoded once, shared by
 * every subscriber), keeps each group's history and epoch for resume,
 * and paces replays.  The client protocol (proto.c), the routes
 * (routes.c), the HTTP API (api.c) and sessions (session_events.c) are
 * above it.
 */
#ifndef HUB_H
#define HUB_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "ws.h"

/* Defaults (each is also an option). */
#define HUB_HISTORY		1000		/* events kept per group */
#define HUB_HISTORY_BYTES	(1u << 20)	/* bytes kept per group */
#define HUB_HISTORY_TOTAL	(256u << 20)	/* bytes kept in all groups */
#define HUB_MAX_CONN_GROUPS	64		/* groups per connection */
#define HUB_MAX_GROUPS		100000		/* groups in all */
#define HUB_GROUP_MAX		64		/* bytes in a group name */
#define HUB_TICK_MS		3000
#define HUB_SESSION_TTL_MS	5000		/* a reload is not a new session */
#define HUB_MAX_SESSIONS	100000
#define HUB_MAX_METADATA	16384		/* bytes of session metadata */
#define HUB_EVENT_MAX		128		/* bytes in an event type */
#define HUB_EPOCH_LEN		8		/* hex digits of a stream's epoch */
#define HUB_HISTORY_PAGE	1000		/* events in one history answer */
#define HUB_SSE_GROUPS		16		/* groups in one event stream:
						 * its id (every position) goes
						 * with every event, and back
						 * in a request head */

struct hub_config {
	unsigned history;
	size_t   history_bytes;
	size_t   history_total;
	unsigned max_conn_groups;
	unsigned max_groups;
	unsigned json_depth;
	unsigned tick_ms;
	int      session_events;	/* the session diff is on */
	unsigned session_ttl_ms;
	unsigned max_sessions;
	size_t   max_metadata;
	/*
	 * Security (README "Security").  routes_init() copies the secrets
	 * and the lists, and routes.c uses its copies from then on (SIGHUP
	 * replaces them there); main.c wipes its own after that.  Here,
	 * token_secret and api_key then only say whether tokens and the
	 * API key are on, which is fixed for the life of the process.
	 */
	const uint8_t *token_secret;	/* NULL: no tokens required */
	size_t   token_secret_len;
	const uint8_t *api_key;		/* NULL: no API key required */
	size_t   api_key_len;
	const char *const *allow_origin;	/* exact origins, or NULL */
	int      nallow_origin;
	const char *const *allow_host;	/* --allow-host names, or NULL */
	int      nallow_host;
	unsigned publish_rate;		/* messages/s per connection; 0: off */
};


/* 0, or -1 (logged). */
int	hub_init(const struct hub_config *cfg);

/* The configuration hub_init() was given, with the limits
 * hub_set_limits() changed since, for the layers above. */
const struct hub_config *hub_config(void);

/*
 * SIGHUP: take from cfg the limits that may change while running --
 * history, history_bytes, history_total, max_groups, max_conn_groups,
 * json_depth, max_sessions, max_metadata and publish_rate -- and keep the
 * rest as hub_init() set them (the tick and session_ttl run on timers and
 * lists set up at start; the secrets are routes.c's).  A lowered bound
 * applies from the next event, group, subscribe or session: nothing kept
 * is dropped at once, no member is unsubscribed.
 */
void	hub_set_limits(const struct hub_config *cfg);

/* ---- Groups (hub.c) -------------------------------------------------- */

struct hub_group;
struct json_buf;

/* FNV-1a, for the group and session tables. */
uint32_t hub_hash(const char *s, size_t n);

/*
 * Room for element n in arr (n of *cap used): arr itself when it has it,
 * else arr grown to twice its capacity (first when empty), with *cap
 * updated.  NULL when out of memory or past 2^32 elements; arr is then
 * unchanged and still owned by the caller.
 */
void	*hub_grow(void *arr, uint32_t n, uint32_t *cap, size_t elem,
	    uint32_t first);

/*
 * A hash table of named objects (groups, sessions), intrusive: such an
 * object starts with struct hub_name, its chain link and its name.  The
 * table doubles when it holds more entries than buckets; without memory
 * for that, chains grow longer and it stays correct.
 */
struct hub_name {
	struct hub_name	*hnext;			/* hash chain */
	uint8_t		 len;
	char		 name[HUB_GROUP_MAX + 1];	/* NUL-terminated */
};

struct hub_table {
	struct hub_name	**b;			/* owned; cap buckets */
	uint32_t	  cap;			/* a power of 2 */
	uint32_t	  n;
};

/* cap buckets (a power of 2).  0 or -1 (out of memory). */
int	hub_table_init(struct hub_table *t, uint32_t cap);

/* The entry called name[0..n), or NULL. */
struct hub_name *hub_table_get(const struct hub_table *t, const char *name,
	    size_t n);

/* Add e (its name set, not yet in t), or take it out of t. */
void	hub_table_add(struct hub_table *t, struct hub_name *e);
void	hub_table_del(struct hub_table *t, struct hub_name *e);

/* 1 if name[0..n) is a valid group name: 1-64 bytes of [A-Za-z0-9._:-]. */
int	hub_name_valid(const char *name, size_t n);

struct auth_claims;
struct json_doc;

/*
 * 1 if claims let their holder read group name (subscribe, history):
 * always when claims is NULL (tokens are off); for "*" only a token that
 * grants every group.
 */
int	hub_may_read(const struct auth_claims *claims, const char *name,
	    size_t n);

/* a's token claims, or NULL when tokens are off. */
const struct auth_claims *hub_claims(const struct ws_app_conn *a);

/*
 * The group called name, created when create is set and it does not
 * exist.  NULL when absent, or when it cannot be created (out of memory
 * or --max-groups reached and no idle group could be evicted).  The name
 * "*" is the broadcast group: its events go to every connection.
 */
struct hub_group *hub_group(const char *name, size_t n, int create);

/*
 * The one seam every event goes through, from HTTP, WebSocket or the
 * session diff: assign the group's next seq, encode the envelope once,
 * keep it in the group's history, and hold it for the end of the turn,
 * when hub_turn() queues the same bytes on every member ("*": queued on
 * every connection at once).  type is the event name (escaped as needed), data raw JSON
 * text (already validated; "null" when dlen is 0), extra either NULL or
 * raw JSON members to place after "type" (",\"event_type\":...").  A later
 * broker spanning several nodes slots in here: with --redis, the event
 * goes to Redis (cluster.h), which orders it and sends it to every node
 * following g, this one included.  Returns the seq (>= 1) and sets
 * *delivered to the number of members it goes to (a member still
 * replaying gets it from the history), or returns 0 when out of memory;
 * with --redis, 1 and the local members once Redis has it to store (the
 * seq comes later), 0 when Redis is unavailable (counted: cluster_lost()).
 */
uint64_t hub_publish(struct hub_group *g, const char *type, size_t tlen,
	    const char *extra, const uint8_t *data, size_t dlen,
	    unsigned *delivered);

/*
 * An event's envelope split around its seq, as hub_publish() makes it:
 * head ends with "seq": and tail starts with ,"timestamp":.  With
 * --redis, Redis puts the seq between them.
 */
void	hub_envelope(const char *name, size_t n, const char *type,
	    size_t tlen, const char *extra, const uint8_t *data, size_t dlen,
	    struct json_buf *head, struct json_buf *tail);

/* What a client's publish came to: the seq, or why it was refused. */
struct hub_result {
	uint64_t	seq;
	unsigned	delivered;
	int		err;		/* enum hub_error */
	const char     *why;		/* fixed text, never input */
};

/* 1 when publishes and history are answered later, from Redis (--redis):
 * hub_client_publish() and hub_history() then take their callbacks. */
int	hub_answers_later(void);

/* The answer to a publish that went to Redis: r->seq, or r->err. */
typedef void	hub_done_fn(void *arg, const struct hub_result *r);

/*
 * A publish from a client, over HTTP or WebSocket: the one place its rules
 * are checked, in order: the event type (token type of doc: a string of
 * 1-HUB_EVENT_MAX bytes, not one the server owns: session_event,
 * realtime_update, system_alert), the group name (or "*"), the right to publish (claims
 * NULL: none needed), then the group, created on its first event; only
 * then hub_publish() with the raw JSON of token data (-1: null).  A
 * refused publish creates nothing.  Returns 0 with r->seq and
 * r->delivered, or -1 with r->err and r->why.  With --redis it returns
 * 1: the event went to Redis, and done(arg, result) is called from the
 * loop once Redis has stored it (seq; delivered is the number of this
 * node's members) or could not (HUB_E_UNAVAILABLE: stored nowhere, sent
 * to nobody); -1 with HUB_E_UNAVAILABLE when Redis is down now.
 */
int	hub_client_publish(const char *group, size_t glen,
	    const struct json_doc *doc, int type, int data,
	    const struct auth_claims *claims, struct hub_result *r,
	    hub_done_fn *done, void *arg);

/*
 * A position in a group's stream: seq within epoch (epoch "" when the
 * client gave a bare seq, which is taken to mean the current epoch).
 */
struct hub_pos {
	uint64_t seq;
	char	 epoch[HUB_EPOCH_LEN + 1];
};

/* digits random hex digits (at most 64) and a NUL into out. */
void	hub_random_hex(char *out, size_t digits);

/*
 * The query's since=POS into *pos: 1 when given, 0 when absent (seq 0),
 * -1 when malformed.
 */
int	hub_parse_query_pos(struct http_slice query, struct hub_pos *pos);

/* Parse "SEQ" or "EPOCH:SEQ" from s[0..n).  0, or -1 if malformed. */
int	hub_parse_pos(const char *s, size_t n, struct hub_pos *pos);

/* g's name (not NUL-terminated: *n bytes). */
const char *hub_group_name(const struct hub_group *g, size_t *n);

/* Free g if it holds nothing worth keeping (no members, no history). */
void	hub_group_release(struct hub_group *g);

/* Append the current time as a JSON string (ISO 8601, UTC, ms). */
void	hub_put_timestamp(struct json_buf *b);

/* g's epoch: HUB_EPOCH_LEN hex digits, chosen when its stream started. */
const char *hub_group_epoch(const struct hub_group *g);

/* Number of subscribers of g. */
unsigned hub_group_subscribers(const struct hub_group *g);

/*
 * The members of a history answer, over HTTP or WebSocket:
 * "group":G,"epoch":E,"seq":S,"oldest":O,"events":[...],"more":B with the
 * kept events after pos, oldest first, at most limit of them (and never
 * more than HUB_HISTORY_PAGE).  A position whose events are not all kept
 * (another epoch, older than the history, newer than the stream) adds
 * "gap":true and reads from the oldest kept event.  A group that does not
 * exist has epoch null and no events.
 */
void	hub_history_members(const char *name, size_t n,
	    const struct hub_pos *pos, unsigned limit, struct json_buf *out);

/*
 * The same, wherever the history is: without --redis, into out at once
 * (returns 0); with it, read from Redis, and done(arg, members) is called
 * from the loop with the members (NULL: Redis failed: unavailable);
 * returns 1, or -1 when Redis is down now.
 */
typedef void	hub_history_fn(void *arg, struct json_buf *members);
int	hub_history(const char *name, size_t n, const struct hub_pos *pos,
	    unsigned limit, struct json_buf *out, hub_history_fn *done,
	    void *arg);

/*
 * Append {"groups":[{"group":G,"epoch":E,"seq":S,"subscribers":N},...],
 * "total":T}
 * for one page of the groups in creation order.
 */
void	hub_groups_json(unsigned offset, unsigned limit, struct json_buf *out);

unsigned hub_group_count(void);
size_t	hub_history_total(void);	/* bytes of history kept, all groups */
uint64_t hub_uptime_s(void);

enum hub_error {
	HUB_E_BAD_JSON, HUB_E_UNKNOWN_TYPE, HUB_E_BAD_GROUP, HUB_E_FORBIDDEN,
	HUB_E_TOO_LARGE, HUB_E_HISTORY_GAP, HUB_E_RATE_LIMITED,
	HUB_E_UNAVAILABLE, HUB_NERRORS
};

/* The limits above ws.c that refuse something, for /metrics. */
enum hub_limit {
	HUB_L_MAX_GROUPS, HUB_L_MAX_CONN_GROUPS, HUB_L_MAX_SESSIONS,
	HUB_L_MAX_METADATA, HUB_L_PUBLISH_RATE, HUB_NLIMITS
};

/* Counters for /metrics, read with hub_stats_get(). */
struct hub_stats {
	uint64_t events_published;
	uint64_t errors[HUB_NERRORS];	/* by enum hub_error */
	uint64_t limit[HUB_NLIMITS];	/* refusals, by enum hub_limit */
};


extern const char *const hub_error_names[HUB_NERRORS];
/* "max_groups", ...: the option's name with '_' for '-'. */
extern const char *const hub_limit_names[HUB_NLIMITS];

const struct hub_stats *hub_stats_get(void);

/* Count one refusal at limit l, where the layer above refuses it. */
void	hub_limit_hit(enum hub_limit l);


/* ---- Connections above the reactor ---------------------------------- */

/*
 * A connection's membership: the group, its index in g->subs, and while
 * a replay of history is under way, the next seq to replay (0: live).  A
 * replaying member is passed over by the live flush and catches up from
 * the history, paced by its send queue (replay_more()).
 */
struct hub_sub {
	struct hub_group *g;
	uint32_t	  idx;
	uint64_t	  replay;
};

/*
 * A hub connection: the state of one WebSocket or event stream above
 * ws.c, created by routes_upgrade() or routes_sse() and freed by
 * routes_closed().  Owners of the fields:
 * the membership (subs, nsubs, subcap, nreplay, first) is hub.c's;
 * session is session_events.c's, attached and detached by routes.c;
 * claims are routes.c's; the rate bucket is proto.c's.  It is kept small
 * (72 bytes, an 80-byte malloc chunk): an idle subscriber is this, its
 * ws_conn and its entry in the group's list (bench/README.md, "Idle
 * memory").  The first membership lives in place, so a connection in
 * one group makes no second allocation; subs points at first until a
 * second group needs an array.  The counts fit 16 bits: a connection is
 * in at most 1024 groups (--max-conn-groups).
 */
struct ws_app_conn {
	struct ws_conn	*c;
	struct hub_sub	*subs;		/* &first, or an owned array */
	uint16_t	 nsubs, subcap;
	uint16_t	 nreplay;	/* memberships still replaying */
	uint8_t		 sse;		/* an event stream (GET /sse) */
	uint8_t		 mark_due;	/* its mark waits for a group's read */
	uint32_t	 bucket_ms;	/* --publish-rate: the last refill (the
					 * low 32 bits of loop_now_ms()), and */
	float		 bucket;	/*   the publishes left */
	struct sess	*session;	/* /ws/sessions/ID, else NULL */
	struct auth_claims *claims;	/* owned; NULL without a token */
	struct hub_sub	 first;
};


/* Member a of group named by g; its index in a->subs, or -1. */
int	hub_sub_find(const struct ws_app_conn *a, const struct hub_group *g);

/*
 * Join g.  Its pending events go out first: an event reaches exactly the
 * members of the moment it was published.  Returns 0, 1 when already a
 * member, or -1 (--max-conn-groups, or out of memory).
 */
int	hub_subscribe(struct ws_app_conn *a, struct hub_group *g);

/* Leave membership i of a; a group left idle may be freed. */
void	hub_unsubscribe(struct ws_app_conn *a, int i);

/* Leave every group of a and free its membership array. */
void	hub_unsubscribe_all(struct ws_app_conn *a);

/*
 * Replay g's events after pos to member a, paced by its send queue.  A
 * position from another epoch, older than the history, or newer than the
 * stream gets history_gap (with the current epoch and the oldest kept
 * seq) first; what is kept is replayed all the same.
 */
void	hub_replay(struct ws_app_conn *a, struct hub_group *g,
	    const struct hub_pos *pos);

/*
 * The first half of hub_replay(): the history_gap if any, and where g's
 * replay starts, without sending a kept event yet; hub_writable() sends
 * them.  An event stream resuming several groups starts every replay
 * before the first is sent, since each event's id names where the
 * stream stands in all of them.
 */
void	hub_replay_start(struct ws_app_conn *a, struct hub_group *g,
	    const struct hub_pos *pos);

/* handlers.turn: every group's events of the turn go out, one block each. */
void	hub_turn(void);

/* handlers.writable: a replay goes on once the queue has drained. */
void	hub_writable(struct ws_conn *c, struct ws_app_conn *a);

/*
 * An event stream's mark: a record with only an id, where a stands in each
 * of its groups.  Its reader's Last-Event-ID moves there, so a stream cut
 * before any event resumes from where it started, not from "now".
 */
void	hub_sse_mark(struct ws_app_conn *a);

/* {"type":"subscribed","group":G,"epoch":E,"seq":S} to a. */
void	hub_send_subscribed(struct ws_app_conn *a, struct hub_group *g);

/* ---- The cluster (--redis): called by cluster.c -------------------- */

/* Start following "*" (every node hears every broadcast). */
void	hub_cluster_start(void);

/* An event on group name's channel: deliver it to this node's members,
 * in seq order (reading the stream for what is missing first). */
void	hub_cluster_event(const char *name, size_t n, const char *epoch,
	    uint64_t seq, const uint8_t *env, size_t len);

/* Group name's channel is confirmed: read what the node may have missed. */
void	hub_cluster_watching(const char *name, size_t n);

/* Redis is back: the reads that failed are done again. */
void	hub_cluster_up(void);

/* ---- Answers to one client ------------------------------------------ */

/* Start {"type":"TYPE" (and ,"id":ID when id is not NULL) in jb. */
void	hub_begin(struct json_buf *jb, const char *type, const uint8_t *id,
	    size_t idlen);
/* Close jb's object and send it to c alone; frees jb. */
void	hub_reply(struct ws_conn *c, struct json_buf *jb);
/* {"type":"error","code":C,"message":M} (M a fixed text) and count it. */
void	hub_send_error(struct ws_conn *c, enum hub_error e, const char *msg,
	    const uint8_t *id, size_t idlen);

#endif
