/*
 * hub.h - groups, events, history, the client protocol and sessions.
 *
 * The layer above ws.c: it decides which connection belongs to which
 * group, turns published events into envelopes (encoded once, shared by
 * every subscriber), keeps each group's history for resume, and answers
 * the JSON messages of SPEC.md "Client -> server messages".
 */
#ifndef HUB_H
#define HUB_H

#include <stddef.h>
#include <stdint.h>

#include "ws.h"

/* Defaults (each is also an option). */
#define HUB_HISTORY		1000		/* events kept per group */
#define HUB_HISTORY_BYTES	(1u << 20)	/* bytes kept per group */
#define HUB_MAX_CONN_GROUPS	64		/* groups per connection */
#define HUB_MAX_GROUPS		100000		/* groups in all */
#define HUB_GROUP_MAX		64		/* bytes in a group name */
#define HUB_TICK_MS		3000
#define HUB_MAX_SESSIONS	100000
#define HUB_MAX_METADATA	16384		/* bytes of session metadata */

struct hub_config {
	unsigned history;
	size_t   history_bytes;
	unsigned max_conn_groups;
	unsigned max_groups;
	unsigned json_depth;
	unsigned tick_ms;
	int      session_events;	/* the session diff is on */
	unsigned session_ttl_ms;
	unsigned max_sessions;
	size_t   max_metadata;
};

extern const struct ws_handlers hub_handlers;

/* 0, or -1 (logged). */
int	hub_init(const struct hub_config *cfg);

#endif
