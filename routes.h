/*
 * routes.h - routes and policy (routes.c): every URL, which handler runs
 * and who may call it (Host, Origin, API key, token).
 */
#ifndef ROUTES_H
#define ROUTES_H

#include "ws.h"

/*
 * Copies the secrets and the allowed origins and hosts from the hub's
 * configuration (the caller may wipe its own copies then); starts the
 * token expiry timer.  0/-1.
 */
int	routes_init(void);

/*
 * SIGHUP.  Whether tokens and the API key are on is decided at start (it
 * decides protected mode and the Host check): these replace a secret in
 * use by another, never turn one on or off.  Each takes a copy; the one
 * replaced is wiped.  An equal secret changes nothing.  0, or -1 when out
 * of memory (nothing changed).
 *
 * routes_set_token_secret: the secret before stays accepted for grace_ms
 * more (0: not at all), so a token signed before the rotation still opens
 * a connection until its clients fetch new ones; connections already open
 * are never closed by a rotation.
 */
int	routes_set_api_key(const uint8_t *key, size_t n);
int	routes_set_token_secret(const uint8_t *secret, size_t n,
	    unsigned grace_ms);

/* --allow-origin and --allow-host, copied.  0, or -1 (nothing changed). */
int	routes_set_allow(const char *const *origin, int norigin,
	    const char *const *host, int nhost);

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

/*
 * handlers.http: the table of HTTP routes says which handler (api.c)
 * runs and who may call it; 404, 405 (with Allow) or 426 otherwise.
 */
void	routes_request(struct ws_conn *c, const struct http_req *req,
	    const uint8_t *body, size_t blen);

/* handlers.head: Host, then Origin and API key for every non-GET. */
int	routes_head(struct ws_conn *c, const struct http_req *req);

/* Every handler ws.c calls, wired once (main.c and the simulation). */
extern const struct ws_handlers routes_handlers;

#endif
