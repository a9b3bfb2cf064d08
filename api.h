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

/* handlers.http: a whole request that passed routes_head(). */
void	api_request(struct ws_conn *c, const struct http_req *req,
	    const uint8_t *body, size_t blen);

#endif
