/*
 * redis.h - a Redis client inside the one loop (redis.c): one connection,
 * non-blocking, pipelined, reconnecting.
 *
 * A client is either a command connection (redis_command: replies come
 * back in order, one callback each) or a subscriber (redis_subscribe and
 * friends: messages come to on_message), never both; a hub that
 * publishes and subscribes makes one of each.  Both kinds:
 *
 *   - resolve the URL's host once, in redis_new(), as --listen does; each
 *     reconnect reuses that address;
 *   - speak TLS for rediss://, verifying the server's certificate against
 *     the system store (or ca_file) and its name (or IP address);
 *   - send AUTH (user and password, or password), SELECT (db not 0) and
 *     PING first on every connection, and count as up only once they
 *     were answered OK (a subscriber: and every channel and pattern of
 *     its set was confirmed again), so up means Redis answers (an ACL
 *     user needs PING);
 *   - take a connection for dead when a reply (or the hello) is
 *     timeout_ms late, and PING a connection idle for ping_ms, so a
 *     silent loss or a stalled server is found with nothing to send;
 *   - reconnect after a failure or a loss, waiting a random delay between
 *     0 and min(backoff_max_ms, backoff_min_ms * 2^attempt) (exponential
 *     backoff, full jitter), attempt reset once up;
 *   - refuse at once what would pass the output bound (max_out bytes not
 *     yet written, max_inflight commands not yet answered).
 *
 * A command in flight when the connection is lost gets its callback with
 * reply NULL and a reason: nothing is lost silently.  Callbacks run from
 * the loop, never from inside redis_command() or redis_new(); a callback
 * may issue commands or call redis_free() on its own client.  One
 * REDIS_TICK_MS timer (loop_timer) serves every client: reconnects,
 * timeouts and pings are only as precise as it.
 *
 * Functions return 0 or a negative REDIS_E* unless they say otherwise.
 */
#ifndef REDIS_H
#define REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "resp.h"

/* Defaults, for the 0 fields of struct redis_config. */
#define REDIS_MAX_OUT		(4u << 20)	/* bytes queued */
#define REDIS_MAX_INFLIGHT	100000		/* unanswered */
#define REDIS_BACKOFF_MIN_MS	100
#define REDIS_BACKOFF_MAX_MS	5000
#define REDIS_TIMEOUT_MS	5000	/* connect+handshake; each reply */
#define REDIS_PING_MS		15000	/* idle connections pinged */
#define REDIS_TICK_MS		50	/* the one timer's period */

enum {
	REDIS_EDOWN = -1,	/* not connected (or not yet up): answer 503 */
	REDIS_EFULL = -2,	/* output bound reached: counted in full */
	REDIS_ENOMEM = -3,
	REDIS_EMODE = -4	/* a command on a subscriber, or the reverse */
};

/* A message on a subscribed channel; slices valid during the callback. */
struct redis_msg {
	const uint8_t	*pattern;	/* the pattern matched, or NULL */
	size_t		 pattern_len;
	const uint8_t	*channel;
	size_t		 channel_len;
	const uint8_t	*data;
	size_t		 len;
};

/*
 * A command's answer: reply is the tokens of the reply (reply[0] the
 * root; a Redis error is a reply of type RESP_T_ERROR), valid during the
 * call; or reply is NULL and err says why there will be none: why the
 * connection was dropped ("connection closed by the server", "reply
 * timeout", ...) or "client freed".
 */
typedef void	redis_reply_fn(void *arg, const struct resp_tok *reply,
		    const char *err);

/*
 * Zero fields take the defaults above.  on_state is called with up = 1
 * when the client becomes usable, and with up = 0 and a reason each time
 * an attempt fails or the connection is lost (so at most once per
 * backoff delay: a bad password is reported, never retried in a hot
 * loop).
 */
struct redis_config {
	const char	*url;		/* redis://, rediss:// */
	const char	*ca_file;	/* PEM; NULL: the system's */
	int		 subscriber;	/* 1: pub/sub, on_message */
	size_t		 max_out;
	uint32_t	 max_inflight;
	unsigned	 backoff_min_ms;
	unsigned	 backoff_max_ms;	/* the cap */
	unsigned	 timeout_ms;
	unsigned	 ping_ms;
	const struct resp_limits *limits;	/* NULL: resp.h's */
	void		(*on_state)(void *arg, int up, const char *why);
	void		(*on_message)(void *arg, const struct redis_msg *m);
	/* A subscriber's channel confirmed by the server (SUBSCRIBE's
	 * answer, on each connection): messages published from here on
	 * reach on_message.  May be NULL. */
	void		(*on_subscribed)(void *arg, const uint8_t *ch,
			    size_t len);
	void		*arg;
};

/* For /metrics. */
struct redis_stats {
	uint64_t commands;	/* sent by the caller (accepted) */
	uint64_t replies;	/* replies handed to callbacks */
	uint64_t errors;	/* error replies, commands failed */
	uint64_t messages;	/* pub/sub messages delivered */
	uint64_t reconnects;	/* connection attempts after the first */
	uint64_t full;		/* refused: max_out, max_inflight */
	uint64_t queued_bytes;	/* bytes not yet written, now */
	uint64_t inflight;	/* commands awaiting a reply, now */
	uint64_t subscriptions;	/* channels and patterns, now */
	int	 up;		/* 1 while usable */
};

struct redis;

/*
 * Parse cfg->url, resolve its host, load the CA for rediss://, and start
 * connecting from the loop (loop_init() first).  The config's strings
 * need not outlive the call.  NULL with err (errlen bytes) saying why:
 * a bad URL, a host that does not resolve, an unreadable CA file.
 */
struct redis	*redis_new(const struct redis_config *cfg, char *err,
		    size_t errlen);

/*
 * Close, fail every command in flight (err "client freed") and free.
 * NULL is fine.  From a callback of this client it takes effect when the
 * callback returns; otherwise not from inside an epoll batch that may
 * still hold an event for it (call it after loop_run() returns).
 */
void	redis_free(struct redis *r);

/*
 * Queue a command (argv: binary-safe arguments) and its callback (may be
 * NULL).  REDIS_EDOWN unless up, REDIS_EFULL past max_out or
 * max_inflight, REDIS_EMODE on a subscriber or for a command that would
 * unpair replies from commands (SUBSCRIBE and the like, MONITOR, HELLO,
 * RESET); cb is not called then.  Commands queued in one loop turn go
 * out together.  Each must be answered within timeout_ms, or the
 * connection is taken for dead: no blocking command longer than that.
 */
int	redis_command(struct redis *r, int argc, const struct resp_arg *argv,
	    redis_reply_fn *cb, void *arg);

/*
 * A subscriber's set: add or remove a channel (or a pattern, for
 * PSUBSCRIBE).  The set survives reconnects; while up the change is sent
 * at once.  0 (also for a channel already in, or not in, the set),
 * REDIS_EFULL (the set is unchanged), REDIS_ENOMEM, REDIS_EMODE.
 */
int	redis_subscribe(struct redis *r, const void *ch, size_t len);
int	redis_unsubscribe(struct redis *r, const void *ch, size_t len);
int	redis_psubscribe(struct redis *r, const void *pat, size_t len);
int	redis_punsubscribe(struct redis *r, const void *pat, size_t len);

/* 1 while usable. */
int	redis_up(const struct redis *r);

void	redis_stats(const struct redis *r, struct redis_stats *out);

#endif
