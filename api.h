/*
 * api.h - the HTTP API (api.c): health, metrics, groups and their
 * history, publishing, sessions, and the dashboard page.
 */
#ifndef API_H
#define API_H

#include <stddef.h>
#include <stdint.h>

#include "ws.h"

/* wsd --version, and wsd_build_info{version=...} in /metrics. */
#define WSD_VERSION	"0.1.0"

/*
 * One HTTP call, routed by routes.c (which has already decided that the
 * caller may make it): the request, its body, and the route's variable
 * path segment, percent-decoded (the group or the session id), or NULL.
 */
struct api_req {
	struct ws_conn		*c;
	const struct http_req	*h;
	const uint8_t		*body;
	size_t			 blen;
	const char		*arg;
};

/* The handlers, one per route; each answers with ws_http_respond(). */
void	api_dashboard(const struct api_req *r);
void	api_client_js(const struct api_req *r);
void	api_health(const struct api_req *r);
void	api_livez(const struct api_req *r);
void	api_readyz(const struct api_req *r);
void	api_metrics(const struct api_req *r);
void	api_groups(const struct api_req *r);
void	api_connections(const struct api_req *r);
void	api_alerts(const struct api_req *r);
void	api_post_event(const struct api_req *r);
void	api_get_events(const struct api_req *r);
void	api_post_session(const struct api_req *r);
void	api_get_sessions(const struct api_req *r);
void	api_session_count(const struct api_req *r);
void	api_put_session(const struct api_req *r);
void	api_delete_session(const struct api_req *r);

#endif
