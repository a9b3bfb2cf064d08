/*
 * cluster.h - several wsd nodes as one hub, through Redis (cluster.c).
 *
 * With --redis, every event of a group goes through one Lua script in
 * Redis, which gives it the group's next seq (taking or setting the
 * group's epoch), appends the envelope to the group's stream (bounded to
 * --history entries) and PUBLISHes it on the group's channel, all at
 * once: one order per group across the cluster.  Every node that has
 * local members of the group is subscribed to its channel and delivers
 * what comes there to them (hub.c, hub_cluster_event()); history is read
 * from the stream.
 *
 * Keys, for group G (the braces are Redis Cluster's hash tag, so a
 * group's keys live together):
 *
 *	wsd:{G}:meta	hash: epoch, seq (the last seq given)
 *	wsd:{G}:log	stream: entry SEQ-0, field "e": the envelope
 *	wsd:{G}		channel: "EPOCH:SEQ:ENVELOPE"
 *
 * cluster.c owns the two Redis clients (commands, and the subscriber),
 * loads the scripts on each connection and knows the wire of the three
 * things above.  It keeps no group state: hub.c does.  Callbacks run from
 * the loop, never from inside the call that queued them.  Functions
 * return 0 or -1 unless they say otherwise.
 */
#ifndef CLUSTER_H
#define CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "redis.h"


struct cluster_config {
	const char	*url;		/* redis://, rediss:// */
	const char	*ca_file;	/* NULL: the system's store */
	void		(*on_up)(void);	/* each time both connections are up
					   and the scripts loaded, after
					   either reconnects; may be NULL */
};

/*
 * Parse the URL, resolve its host and start both connections (loop_init
 * first).  -1 with err saying why (bad URL, unknown host, CA file).
 */
int	cluster_init(const struct cluster_config *cfg, char *err,
	    size_t errlen);

/* Close both connections, failing what is in flight.  Safe when off. */
void	cluster_free(void);

/* 1 when --redis was given. */
int	cluster_on(void);

/* 1 while both connections are up and the scripts are loaded. */
int	cluster_up(void);

/*
 * Publish to group name[0..n): the envelope is head, the seq Redis
 * gives it, and tail.  cb (may be NULL) gets the stream's epoch and the
 * seq, or err when the event was not stored (then it was not sent to
 * anyone either).  -1 at once when Redis is down or the output bound is
 * reached: the caller answers unavailable.
 */
typedef void	cluster_pub_fn(void *arg, const char *epoch, uint64_t seq,
		    const char *err);
int	cluster_publish(const char *name, size_t n, const char *head,
	    size_t hlen, const char *tail, size_t tlen, cluster_pub_fn *cb,
	    void *arg);

/* One event of a read: its seq and envelope (valid during the callback). */
struct cluster_event {
	uint64_t	 seq;
	const uint8_t	*p;
	size_t		 len;
};

/*
 * What a read found: the stream's epoch ("" when the group has no stream
 * and create was 0), its last seq, the oldest seq kept, whether the
 * position asked for could not be honoured (another epoch, older than
 * the stream, newer than it: the events then start at oldest), whether
 * there are more after these, and the events.
 */
struct cluster_read {
	char		 epoch[16];
	uint64_t	 seq, oldest;
	int		 gap, more;
	uint32_t	 n;
	const struct cluster_event *ev;
};

/*
 * Read group name's events after since_epoch:since_seq (epoch "": any),
 * at most limit; create: give a group without a stream its epoch now
 * (a node with members needs one to answer subscribed).  cb gets r, or
 * NULL when the read failed (connection lost).  -1 at once when down.
 */
typedef void	cluster_read_fn(void *arg, const struct cluster_read *r);
int	cluster_read(const char *name, size_t n, const char *since_epoch,
	    uint64_t since_seq, unsigned limit, int create,
	    cluster_read_fn *cb, void *arg);

/*
 * Listen to group name's channel, or stop.  Once the subscription is
 * confirmed (on each reconnect too), hub_cluster_watching() is called.
 */
int	cluster_watch(const char *name, size_t n);
int	cluster_unwatch(const char *name, size_t n);

/* ---- Scripts of other layers (the shared sessions) ------------------- */

/*
 * The publish script's body as a Lua function, for a script that must
 * publish as part of something else (cluster_sessions.c):
 * pub(meta, log, epoch, head, tail, bound, bytes, channel) gives the
 * group's next seq (a group without an epoch takes epoch and starts a
 * new stream), appends head..seq..tail to the stream, dropping its oldest
 * entries while it holds more than bound events or bytes of envelopes
 * (one larger than bytes empties it, as a group's history on one node),
 * and PUBLISHes "EPOCH:SEQ:ENVELOPE" on the channel.  Returns {epoch,
 * seq}.
 */
#define CLUSTER_LUA_PUB \
    "local function pub(meta, log, epoch, head, tail, bound, bytes, ch)\n" \
    "  local m = redis.call('HMGET', meta, 'epoch', 'bytes')\n" \
    "  local e = m[1]\n" \
    "  if not e then\n" \
    "    e, m[2] = epoch, 0\n" \
    "    redis.call('DEL', log)\n" \
    "    redis.call('HSET', meta, 'epoch', e, 'seq', 0, 'bytes', 0)\n" \
    "  end\n" \
    "  local s = redis.call('HINCRBY', meta, 'seq', 1)\n" \
    "  local env = head .. s .. tail\n" \
    "  local n, b = 0, 0\n" \
    "  bound, bytes = tonumber(bound), tonumber(bytes)\n" \
    "  if bound > 0 and #env <= bytes then\n" \
    "    redis.call('XADD', log, s .. '-0', 'e', env)\n" \
    "    n = redis.call('XLEN', log)\n" \
    "    b = tonumber(m[2] or 0) + #env\n" \
    "    while n > bound or b > bytes do\n" \
    "      local f = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]\n" \
    "      redis.call('XDEL', log, f[1])\n" \
    "      n, b = n - 1, b - #f[2][2]\n" \
    "    end\n" \
    "  else\n" \
    "    redis.call('DEL', log)\n" \
    "  end\n" \
    "  redis.call('HSET', meta, 'bytes', b)\n" \
    "  redis.call('PUBLISH', ch, e .. ':' .. s .. ':' .. env)\n" \
    "  return {e, s}\n" \
    "end\n"

/* A stream's bounds as pub() takes them: --history, --history-bytes. */
void	cluster_bounds(char count[24], char bytes[24]);

/*
 * Add a script (before cluster_init()): loaded with ours on each
 * connection.  Returns its number for cluster_eval(), or -1.
 */
int	cluster_script(const char *text);

/*
 * EVALSHA script with no keys and argv (at most CLUSTER_EVAL_ARGS) on
 * the command connection; cb as redis_command()'s.  -1 at once when
 * Redis is down or full.
 */
#define CLUSTER_EVAL_ARGS	24
int	cluster_eval(int script, int argc, const struct resp_arg *argv,
	    redis_reply_fn *cb, void *arg);

/* "wsd:{G}" followed by suffix (":meta", ":log", "" for the channel),
 * into out; its length, or 0 when it does not fit. */
size_t	cluster_key(char *out, size_t cap, const char *name, size_t n,
	    const char *suffix);

/* 1 when a script's reply is a failure: none (connection lost), an
 * error (logged), or NOSCRIPT (the scripts are loaded again). */
int	cluster_failed(const struct resp_tok *reply);

/* ---- The channel's wire (pure) ------------------------------------- */

/*
 * Channel "wsd:{G}" (G 1-64 bytes) to G: *name points into ch; returns
 * G's length, or 0 when ch is not a group's channel.
 */
size_t	cluster_channel_group(const uint8_t *ch, size_t len,
	    const char **name);

/*
 * A channel message "EPOCH:SEQ:ENVELOPE": epoch (1-8 bytes, copied and
 * NUL-terminated), seq (1-19 digits, not 0).  Returns the envelope's
 * offset in p, or -1 when malformed.
 */
long	cluster_parse_event(const uint8_t *p, size_t len, char epoch[9],
	    uint64_t *seq);

/* For /metrics: the command connection's and the subscriber's. */
void	cluster_stats(struct redis_stats *cmd, struct redis_stats *sub);

/* Events dropped because Redis could not store them (server events). */
uint64_t cluster_lost(void);

#endif
