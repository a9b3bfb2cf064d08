/*
 * routes.h - routes and policy (routes.c): the WebSocket routes, and who
 * may call each URL (Host, Origin, API key, token).
 */
#ifndef ROUTES_H
#define ROUTES_H

#include "ws.h"

/* Reads the hub's configuration; starts the token expiry timer.  0/-1. */
int	routes_init(void);

/*
 * DNS rebinding: a page of attacker.example whose name is made to resolve
 * to 127.0.0.1 reaches wsd as its own origin, Host and Origin both naming
 * attacker.example.  So without secrets (no token secret, no API key),
 * wsd answers only requests whose Host is an IP literal, localhost, or a
 * name given with --allow-host; with secrets every request needs them
 * anyway.  A request without Host (HTTP/1.0) is not a browser's and
 * passes.  1 if allowed.
 */
int	routes_host_ok(const struct http_req *req);

/*
 * handlers.upgrade: /ws/NAME -> NAME, /ws/KIND/ID -> KIND:ID,
 * /ws/sessions/ID -> session:ID (attaching session ID); /api/v1/ws/...
 * is the same.  Refusals, in order: 403 for a foreign Host or Origin, 400
 * for a bad name or since, 401 for a missing or bad token, 403 for a
 * group the token does not grant, 503 at a limit.  Returns 0 or the
 * HTTP status.
 */
int	routes_upgrade(struct ws_conn *c, const struct http_req *req,
	    struct ws_app_conn **app);
/* handlers.open: join the route's group, say "subscribed", replay. */
void	routes_open(struct ws_conn *c, struct ws_app_conn *a);
/* handlers.closed: leave every group and the session. */
void	routes_closed(struct ws_conn *c, struct ws_app_conn *a);

/* handlers.head: Host, then Origin and API key for every non-GET. */
int	routes_head(struct ws_conn *c, const struct http_req *req);

/* 1 if --api-key is not set or given as Bearer; else 401 answered. */
int	routes_api_key(struct ws_conn *c, const struct http_req *req);

/* 1 if the request may read group name's history; else 401/403 answered. */
int	routes_may_read(struct ws_conn *c, const struct http_req *req,
	    const char *name);

#endif
