/*
 * routes.c - every URL in one place: which handler runs and who may call
 * it.  The WebSocket routes and their upgrade, the table of HTTP routes
 * (method, path, policy, handler in api.c), the checks behind every policy
 * (Host, Origin, API key, token), and the life of a hub connection (open,
 * close, token expiry).
 *
 * /ws/NAME, /ws/KIND/ID and /ws/sessions/ID (and /api/v1/ws/...) map to a
 * group here; every HTTP request's head passes routes_head() before its
 * body is read, then routes_request() finds its route, applies the
 * route's policy and calls its handler.  Refusals are JSON errors with
 * fixed texts.  It keeps its own copies of the secrets and the allowed
 * origins and hosts, replaced on SIGHUP (routes_set_*): a rotated token
 * secret stays accepted for --token-grace.  No I/O of its own.
 */
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "api.h"
#include "auth.h"
#include "hub.h"
#include "log.h"
#include "proto.h"
#include "routes.h"
#include "session_events.h"
#include "sse.h"
#include "ws.h"

static const struct hub_config *cfg;

/*
 * The secrets and lists in use: routes.c's own copies, taken from
 * hub_config() at start and replaced on SIGHUP (routes_set_*).  A
 * replaced secret is wiped.  After a rotation the token secret before
 * stays in old_secret, still accepted, until old_until (loop ms).
 */
struct secret {
	uint8_t	*p;		/* owned; NULL: off */
	size_t	 n;
};

static struct secret	 api_key, token_secret, old_secret;
static uint64_t		 old_until;
static char		**allow_origin, **allow_host;	/* owned */
static int		 nallow_origin, nallow_host;

static void
secret_drop(struct secret *s)
{
	if (s->p != NULL) {
		OPENSSL_cleanse(s->p, s->n);
		free(s->p);
	}
	s->p = NULL;
	s->n = 0;
}

/* s becomes a copy of p[0..n) (NULL: off).  0, or -1 (s unchanged). */
static int
secret_set(struct secret *s, const uint8_t *p, size_t n)
{
	uint8_t *copy = NULL;

	if (p != NULL && (copy = malloc(n ? n : 1)) == NULL)
		return -1;
	if (p != NULL)
		memcpy(copy, p, n);
	secret_drop(s);
	s->p = copy;
	s->n = p != NULL ? n : 0;
	return 0;
}

static int
secret_is(const struct secret *s, const uint8_t *p, size_t n)
{
	return (s->p == NULL) == (p == NULL) && s->n == n &&
	    (p == NULL || CRYPTO_memcmp(s->p, p, n) == 0);
}

int
routes_set_api_key(const uint8_t *key, size_t n)
{
	if (secret_is(&api_key, key, n))
		return 0;
	if (secret_set(&api_key, key, n) == -1)
		return -1;
	log_msg(LOG_INFO, "api key replaced");
	return 0;
}

int
routes_set_token_secret(const uint8_t *secret, size_t n, unsigned grace_ms)
{
	struct secret next = { NULL, 0 };

	if (secret_is(&token_secret, secret, n))
		return 0;
	if (secret_set(&next, secret, n) == -1)
		return -1;
	secret_drop(&old_secret);
	old_secret = token_secret;
	old_until = loop_now_ms() + grace_ms;
	if (grace_ms == 0)
		secret_drop(&old_secret);
	token_secret = next;
	log_msg(LOG_INFO, "token secret rotated grace_ms=%u", grace_ms);
	return 0;
}

/* A copy of v[0..n) in one allocation: the pointers, then the strings. */
static char **
list_copy(const char *const *v, int n)
{
	size_t size = (n + 1) * sizeof(char *);
	char **out, *p;

	for (int i = 0; i < n; i++)
		size += strlen(v[i]) + 1;
	if ((out = malloc(size)) == NULL)
		return NULL;
	p = (char *)(out + n + 1);
	for (int i = 0; i < n; i++) {
		size_t len = strlen(v[i]) + 1;

		out[i] = memcpy(p, v[i], len);
		p += len;
	}
	out[n] = NULL;
	return out;
}

int
routes_set_allow(const char *const *origin, int norigin,
    const char *const *host, int nhost)
{
	char **o = list_copy(origin, norigin), **h = list_copy(host, nhost);

	if (o == NULL || h == NULL) {
		free(o);
		free(h);
		return -1;
	}
	free(allow_origin);
	free(allow_host);
	allow_origin = o;
	nallow_origin = norigin;
	allow_host = h;
	nallow_host = nhost;
	return 0;
}

/* ==== Host and Origin ================================================== */

static int
origin_is(struct http_slice o, const char *scheme, struct http_slice host)
{
	size_t sl = strlen(scheme);

	return o.n == sl + host.n && strncasecmp(o.p, scheme, sl) == 0 &&
	    strncasecmp(o.p + sl, host.p, host.n) == 0;
}

int
routes_host_ok(const struct http_req *req)
{
	const struct http_slice *host = http_header(req, "host");
	char name[256];
	struct in6_addr a;
	size_t n;

	if (host == NULL || token_secret.p != NULL || api_key.p != NULL)
		return 1;
	if (host->n > 0 && host->p[0] == '[')
		return memchr(host->p, ']', host->n) != NULL;	/* IPv6 */
	for (n = 0; n < host->n && host->p[n] != ':'; n++)
		;
	if (n == 0 || n >= sizeof name)
		return 0;
	memcpy(name, host->p, n);
	name[n] = '\0';
	if (strcasecmp(name, "localhost") == 0 ||
	    inet_pton(AF_INET, name, &a) == 1)
		return 1;
	for (int i = 0; i < nallow_host; i++)
		if (strcasecmp(name, allow_host[i]) == 0)
			return 1;
	return 0;
}

/* The request's Origin as listed with --allow-origin, or NULL. */
static const char *
origin_listed(const struct http_req *req)
{
	const struct http_slice *o = http_header(req, "origin");

	for (int i = 0; o != NULL && i < nallow_origin; i++)
		if (strlen(allow_origin[i]) == o->n &&
		    memcmp(allow_origin[i], o->p, o->n) == 0)
			return allow_origin[i];
	return NULL;
}

static int
origin_ok(const struct http_req *req, int credentials)
{
	const struct http_slice *o = http_header(req, "origin"), *host;

	if (o == NULL)
		return 1;
	/* The page wsd serves itself is always welcome. */
	host = http_header(req, "host");
	if (host != NULL && (origin_is(*o, "http://", *host) ||
	    origin_is(*o, "https://", *host)))
		return 1;
	if (nallow_origin > 0)
		return origin_listed(req) != NULL;
	/* Another page driving a visitor's browser (CSWSH, or a form POST)
	 * is harmless only where the request needs credentials that page
	 * cannot send. */
	return credentials;
}

/*
 * auth_verify() with the token secret or, within --token-grace of a
 * rotation, the one before it: a token signed before the rotation keeps
 * working while its clients fetch new ones.
 */
static int
verify(const char *tok, size_t n, struct auth_claims *claims)
{
	int rc = auth_verify(token_secret.p, token_secret.n, tok, n,
	    time(NULL), claims);

	if (rc == AUTH_BAD_SIG && old_secret.p != NULL) {
		if (loop_now_ms() < old_until)
			rc = auth_verify(old_secret.p, old_secret.n, tok, n,
			    time(NULL), claims);
		else
			secret_drop(&old_secret);
	}
	return rc;
}

/*
 * The token from ?token= or "Authorization: Bearer", verified.  Returns 0
 * with a->claims made, 401, or 503 (out of memory).
 */
static int
check_token(const struct http_req *req, struct ws_app_conn *a)
{
	struct auth_claims claims;
	char tok[AUTH_MAX_TOKEN + 1];
	struct http_slice bearer = http_bearer(req);
	const char *p = tok;
	long n = http_query_param(req->query, "token", tok, sizeof tok);
	int rc;

	if (n < 0 && bearer.n > 0) {
		p = bearer.p;
		n = bearer.n;
	}
	if (n < 0) {
		log_msg(LOG_INFO, "upgrade refused reason=\"no token\"");
		return 401;
	}
	rc = verify(p, n, &claims);
	OPENSSL_cleanse(tok, sizeof tok);
	if (rc != AUTH_OK) {
		log_msg(LOG_INFO, "upgrade refused reason=\"%s\"",
		    auth_strerror(rc));
		return 401;
	}
	if ((a->claims = malloc(sizeof *a->claims)) == NULL) {
		auth_claims_free(&claims);
		return 503;
	}
	*a->claims = claims;
	return 0;
}

static void
claims_free(struct ws_app_conn *a)
{
	auth_claims_free(a->claims);
	free(a->claims);
	a->claims = NULL;
}

/* ==== Paths ========================================================== */

#define NSEG	5	/* path segments a route has at most */

struct path {
	char	seg[NSEG][HUB_GROUP_MAX + 1];
	int	n;
};

/*
 * Split the request's path into up to NSEG percent-decoded segments (a
 * trailing slash is dropped).  Returns 0, 400 for a malformed escape, 404
 * for one segment too many, or 414 for a segment longer than a group name
 * (which no route takes).
 */
static int
split_path(struct http_slice path, struct path *out)
{
	const char *p = path.p, *end = p + path.n;

	out->n = 0;
	if (p == end || *p != '/')
		return 404;
	while (p < end) {
		const char *s = ++p, *e = memchr(s, '/', end - s);
		long n;

		if (e == NULL)
			e = end;
		if (s == end && out->n > 0)
			break;		/* trailing slash */
		if (out->n == NSEG)
			return 404;
		n = http_pct_decode((struct http_slice){ s, e - s }, 0,
		    out->seg[out->n], sizeof out->seg[0]);
		if (n == HTTP_ERROR)
			return 400;
		if ((size_t)n >= sizeof out->seg[0])
			return 414;
		out->n++;
		p = e;
	}
	return 0;
}

/*
 * What an upgrade leaves for open(): the route's group and the position
 * to replay from.  ws.c calls open() (or closed(), when the 101 cannot be
 * queued) at once after an accepted upgrade, before any other request is
 * handled (ws.h), so one connection at a time is being opened and these
 * fields need no place in every connection's ws_app_conn.
 */
static struct {
	struct ws_app_conn *a;		/* the connection being opened */
	struct hub_group *route;	/* its group, made by the upgrade */
	struct hub_pos	 since;		/* ?since=, when has_since */
	int		 has_since;
} opening;

/*
 * /ws/NAME -> NAME, /ws/KIND/ID -> KIND:ID, /ws/sessions/ID -> session:ID
 * (creating session ID); /api/v1/ws/... is the same.  Refusals, in order:
 * 403 for a foreign Origin, 400 for a bad name or since, 401 for a missing
 * or bad token, 403 for a group the token does not grant, 503 at a limit.
 * Returns 0 or that HTTP status.
 */
int
routes_upgrade(struct ws_conn *c, const struct http_req *req,
    struct ws_app_conn **out)
{
	struct path path;
	struct ws_app_conn *a;
	char name[2 * HUB_GROUP_MAX + 2];
	size_t n;
	int status = 0, rc, st, s = 0;

	if (!routes_host_ok(req) ||
	    !origin_ok(req, token_secret.p != NULL))
		return 403;
	/* The same strict percent-decoding as every path (split_path):
	 * /ws/NAME, /ws/KIND/ID, /api/v1/ws/... */
	if ((st = split_path(req->path, &path)) != 0)
		return st == 414 ? 400 : st;
	/* split_path() drops a trailing slash; here it is an empty ID. */
	if (req->path.n > 4 && req->path.p[req->path.n - 1] == '/')
		return 400;
	if (path.n >= 2 && strcmp(path.seg[0], "api") == 0 &&
	    strcmp(path.seg[1], "v1") == 0)
		s = 2;
	if (path.n - s < 2 || strcmp(path.seg[s], "ws") != 0)
		return 404;
	if (path.n - s > 3)
		return 404;
	if (path.n - s == 2)
		n = snprintf(name, sizeof name, "%s", path.seg[s + 1]);
	else if (path.seg[s + 1][0] == '\0' || path.seg[s + 2][0] == '\0')
		return 400;
	else
		n = snprintf(name, sizeof name, "%s:%s",
		    strcmp(path.seg[s + 1], "sessions") == 0 ? "session" :
		    path.seg[s + 1], path.seg[s + 2]);
	if (n > HUB_GROUP_MAX || !hub_name_valid(name, n))
		return 400;
	if ((a = calloc(1, sizeof *a)) == NULL)
		return 503;
	a->c = c;
	if ((rc = hub_parse_query_pos(req->query, &opening.since)) == -1)
		goto refuse_400;
	opening.has_since = rc;
	if (token_secret.p != NULL) {
		if ((status = check_token(req, a)) != 0)
			goto refuse;
		if (!auth_may_join(a->claims, name, n)) {
			status = 403;
			goto refuse;
		}
	}
	/* The session first: creating it may run the session tick, which
	 * may make room among idle groups, and the route group, idle until
	 * open() joins it, must not be the room made. */
	if (n > 8 && memcmp(name, "session:", 8) == 0 &&
	    (a->session = sess_attach(name + 8, n - 8, &status)) == NULL)
		goto refuse;
	if ((opening.route = hub_group(name, n, 1)) == NULL) {
		status = 503;
		goto refuse;
	}
	opening.a = a;
	a->bucket = (float)cfg->publish_rate;
	a->bucket_ms = (uint32_t)loop_now_ms();
	*out = a;
	return 0;
refuse_400:
	status = 400;
refuse:
	if (a->session != NULL)
		sess_detach(a->session);
	claims_free(a);
	free(a);
	return status;
}

void
routes_open(struct ws_conn *c, struct ws_app_conn *a)
{
	struct hub_group *g = opening.route;

	/* From here the membership holds the group, not opening.route: a
	 * group left later may be freed, and the pointer with it. */
	opening.a = NULL;
	opening.route = NULL;
	if (hub_subscribe(a, g) == -1) {
		hub_group_release(g);
		ws_close(c, WS_CLOSE_INTERNAL, "out of memory");
		return;
	}
	hub_send_subscribed(a, g);
	if (opening.has_since)
		hub_replay(a, g, &opening.since);
}

void
routes_closed(struct ws_conn *c, struct ws_app_conn *a)
{
	(void)c;
	hub_unsubscribe_all(a);
	/* Upgraded but never opened (the 101 could not be queued): the
	 * route's group, created for it, may be left empty. */
	if (opening.a == a) {
		hub_group_release(opening.route);
		opening.a = NULL;
		opening.route = NULL;
	}
	if (a->session != NULL)
		sess_detach(a->session);
	claims_free(a);
	free(a);
}

/* ==== Event streams: GET /sse ========================================= */

/*
 * The groups of one stream: names from ?groups=G1,G2,... and where each
 * resumes (from Last-Event-ID, else ?since=, both G=POS,G=POS,...).
 */
struct sse_req {
	char		 names[HUB_SSE_GROUPS * (HUB_GROUP_MAX + 1) + 1];
	const char	*name[HUB_SSE_GROUPS];
	struct hub_pos	 pos[HUB_SSE_GROUPS];
	uint8_t		 has_pos[HUB_SSE_GROUPS];
	int		 n;
};

/* ?groups= into sr: 0, or -1 with *why (a fixed text). */
static int
sse_groups(const struct http_req *req, struct sse_req *sr, const char **why)
{
	unsigned most = cfg->max_conn_groups < HUB_SSE_GROUPS ?
	    cfg->max_conn_groups : HUB_SSE_GROUPS;
	long n = http_query_param(req->query, "groups", sr->names,
	    sizeof sr->names);
	char *p = sr->names, *e;

	*why = n == HTTP_ERROR ? "groups=G1,G2,... is malformed or too long" :
	    "groups=G1,G2,... is required";
	if (n <= 0)
		return -1;
	for (sr->n = 0; p != NULL; p = e) {
		int dup = 0;

		if ((e = strchr(p, ',')) != NULL)
			*e++ = '\0';
		*why = "group names must be 1-64 bytes of [A-Za-z0-9._:-]";
		if (!hub_name_valid(p, strlen(p)))
			return -1;
		for (int i = 0; i < sr->n; i++)
			dup |= strcmp(sr->name[i], p) == 0;
		if (dup)
			continue;
		*why = "too many groups for one stream";
		if ((unsigned)sr->n >= most) {
			hub_limit_hit(HUB_L_MAX_CONN_GROUPS);
			return -1;
		}
		sr->name[sr->n++] = p;
	}
	return 0;
}

/* Where each group resumes: 0, or -1 when the list is malformed. */
static int
sse_positions(const struct http_req *req, struct sse_req *sr)
{
	static char buf[HUB_SSE_GROUPS * (HUB_GROUP_MAX + HUB_EPOCH_LEN + 24)];
	const struct http_slice *h = http_header(req, "last-event-id");
	const char *s = buf, *end, *name, *pos;
	size_t nlen, plen;
	long n;
	int rc;

	if (h != NULL && h->n > 0) {
		if (h->n >= sizeof buf)
			return -1;
		memcpy(buf, h->p, h->n);
		n = h->n;
	} else if ((n = http_query_param(req->query, "since", buf,
	    sizeof buf)) == HTTP_ERROR)
		return -1;
	end = buf + (n > 0 ? n : 0);
	while ((rc = sse_pos_next(&s, end, &name, &nlen, &pos, &plen)) == 1) {
		struct hub_pos p;

		if (!hub_name_valid(name, nlen) ||
		    hub_parse_pos(pos, plen, &p) == -1)
			return -1;
		/* A group no longer asked for is passed over. */
		for (int i = 0; i < sr->n; i++)
			if (strlen(sr->name[i]) == nlen &&
			    memcmp(sr->name[i], name, nlen) == 0) {
				sr->pos[i] = p;
				sr->has_pos[i] = 1;
			}
	}
	return rc;
}

/*
 * GET /sse: the events of several groups on one text/event-stream, for
 * readers that cannot use a WebSocket (a proxy that drops Upgrade).  The
 * same rules as an upgrade: Origin, then the token (?token= or Bearer)
 * and its rights to each group, then the groups, created as a subscribe
 * would.  Then, on the stream: "retry", a "subscribed" record per group,
 * each group's replay from its position, and a mark with every position
 * (hub_sse_mark()); live events follow, each with the id of where the
 * stream stands (hub.c).  Refusals: 403 Origin, 400 groups or positions,
 * 401/403 token, 503 at --max-groups or while draining.
 */
static void
routes_sse(const struct api_req *r)
{
	static struct sse_req sr;
	static const char retry[] = "retry: 2000\n\n";	/* ms */
	struct ws_app_conn *a;
	const char *why;
	int i, status = 503;

	memset(&sr, 0, sizeof sr);
	if (!origin_ok(r->h, token_secret.p != NULL)) {
		ws_http_error(r->c, 403, "forbidden", "origin not allowed",
		    NULL);
		return;
	}
	if (sse_groups(r->h, &sr, &why) == -1) {
		ws_http_error(r->c, 400, "bad_request", why, NULL);
		return;
	}
	if (sse_positions(r->h, &sr) == -1) {
		ws_http_error(r->c, 400, "bad_request", "positions are "
		    "G=EPOCH:SEQ,G=EPOCH:SEQ,...", NULL);
		return;
	}
	if ((a = calloc(1, sizeof *a)) == NULL) {
		ws_http_error(r->c, 503, "unavailable", "out of memory", NULL);
		return;
	}
	a->c = r->c;
	a->sse = 1;
	if (token_secret.p != NULL) {
		why = "out of memory";	/* with 503; 401 says its own */
		if ((status = check_token(r->h, a)) != 0)
			goto refuse;
		status = 403;
		for (i = 0; i < sr.n; i++)
			if (!auth_may_join(a->claims, sr.name[i],
			    strlen(sr.name[i])))
				goto refuse;
	}
	/* Each group joined as it is made: a member's group is not idle,
	 * so making the next cannot evict it. */
	status = 503;
	why = "no room for the stream's groups";
	for (i = 0; i < sr.n; i++) {
		struct hub_group *g = hub_group(sr.name[i], strlen(sr.name[i]),
		    1);

		if (g == NULL)
			goto refuse;
		if (hub_subscribe(a, g) == -1) {
			hub_group_release(g);
			goto refuse;
		}
	}
	if (ws_http_stream(r->c, a, "Cache-Control: no-store\r\n"
	    "X-Accel-Buffering: no\r\n", retry, strlen(retry)) == -1)
		goto refuse;
	/* From here the stream owns a: routes_closed() frees it. */
	for (i = 0; i < (int)a->nsubs; i++)
		hub_send_subscribed(a, a->subs[i].g);
	/* Every group's replay is set before any is sent: each event's id
	 * names the stream's position in all of them. */
	for (i = 0; i < sr.n; i++)
		if (sr.has_pos[i])
			hub_replay_start(a, a->subs[i].g, &sr.pos[i]);
	hub_writable(r->c, a);
	hub_sse_mark(a);
	return;
refuse:
	hub_unsubscribe_all(a);
	claims_free(a);
	free(a);
	if (status == 401)
		ws_http_error(r->c, 401, "unauthorized", "this stream needs a "
		    "token", NULL);
	else if (status == 403)
		ws_http_error(r->c, 403, "forbidden", "the token does not "
		    "grant every group", NULL);
	else
		ws_http_error(r->c, 503, "unavailable", why, NULL);
}

/* RFC 7519 §4.1.4 with the same leeway as at the upgrade: a connection
 * whose token has run out is closed with 1008.  The leeway is taken from
 * now, never added to exp, which may be as large as INT64_MAX. */
static void
expire_one(struct ws_conn *c, struct ws_app_conn *a, void *now)
{
	if (a != NULL && a->claims != NULL && a->claims->exp != 0 &&
	    *(int64_t *)now - AUTH_LEEWAY_S >= a->claims->exp)
		ws_close(c, WS_CLOSE_POLICY, "token expired");
}

static void
expire_tokens(void *arg)
{
	int64_t now = time(NULL);

	(void)arg;
	ws_foreach(expire_one, &now);
	if (old_secret.p != NULL && loop_now_ms() >= old_until)
		secret_drop(&old_secret);
}

/* ==== HTTP calls: who may call ========================================= */

/*
 * --api-key as "Authorization: Bearer KEY", compared in constant time.
 * 1 if it is not required or given; else 401 is answered.
 */
static int
routes_api_key(struct ws_conn *c, const struct http_req *req)
{
	struct http_slice b = http_bearer(req);

	if (api_key.p == NULL || auth_key_equal((const uint8_t *)b.p, b.n,
	    api_key.p, api_key.n))
		return 1;
	ws_http_error(c, 401, "unauthorized", "this call needs the API key",
	    "WWW-Authenticate: Bearer\r\n");
	return 0;
}

/*
 * With tokens on, the JWT in "Authorization: Bearer", verified, into
 * *claims (to free).  1 if there is one and it is good.
 */
static int
bearer_token(const struct http_req *req, struct auth_claims *claims)
{
	struct http_slice b = http_bearer(req);

	return token_secret.p != NULL && b.n > 0 &&
	    verify(b.p, b.n, claims) == AUTH_OK;
}

/*
 * CORS (the Fetch standard): an origin listed with --allow-origin may read
 * the answers to its calls, so they carry Access-Control-Allow-Origin with
 * that exact origin (never "*", never credentials: wsd's are Bearer
 * headers, not cookies).  With a list, every answer says Vary: Origin,
 * since it depends on it.  Set for the request being handled, cleared
 * after (ws_http_extra).
 */
static void
cors_begin(const struct http_req *req)
{
	static char h[512];
	const char *o = origin_listed(req);

	if (nallow_origin == 0)
		return;
	if (o == NULL || (size_t)snprintf(h, sizeof h,
	    "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", o) >=
	    sizeof h)
		strcpy(h, "Vary: Origin\r\n");
	ws_http_extra(h);
}

static int
method_is(const struct http_req *req, const char *m)
{
	return req->method.n == strlen(m) &&
	    memcmp(req->method.p, m, req->method.n) == 0;
}

/*
 * Who may call at all, decided on the head before any body is read: the
 * Host (DNS rebinding); then, for every call that changes something, the
 * Origin (a form on another origin can POST without asking, so it is
 * refused as an upgrade would be) and the API key.  With tokens on, a
 * good JWT also passes here: it may publish where it grants (PUBLISH,
 * checked by routes_request() once the group is known), and nothing
 * else that needs the key.  A preflight (OPTIONS) changes nothing and
 * carries no credentials: it goes on to routes_request().
 */
int
routes_head(struct ws_conn *c, const struct http_req *req)
{
	struct auth_claims claims;
	int jwt = 0, rc = -1;

	cors_begin(req);
	if (!routes_host_ok(req)) {
		ws_http_error(c, 403, "forbidden", "host not allowed", NULL);
		goto out;
	}
	if (method_is(req, "GET") || method_is(req, "OPTIONS")) {
		/* None of them takes a body: none is held. */
		if (req->content_length > 0)
			ws_http_error(c, 413, "too_large", "this request takes "
			    "no body", NULL);
		else
			rc = 0;
		goto out;
	}
	if ((jwt = bearer_token(req, &claims)))
		auth_claims_free(&claims);
	if (!origin_ok(req, api_key.p != NULL || jwt)) {
		ws_http_error(c, 403, "forbidden", "origin not allowed", NULL);
		goto out;
	}
	/* With tokens on, a change takes credentials even without an API
	 * key (routes_may_change()): ask for them before the body. */
	if (!jwt && api_key.p == NULL && token_secret.p != NULL) {
		ws_http_error(c, 401, "unauthorized", "this call needs the API "
		    "key or a token", "WWW-Authenticate: Bearer\r\n");
		goto out;
	}
	rc = jwt || routes_api_key(c, req) ? 0 : -1;
out:
	ws_http_extra(NULL);
	return rc;
}

/*
 * With tokens on, a group's history is no more public than its live
 * events: reading it takes the API key, or a JWT (as Bearer) that grants
 * the group ("*" needs a token granting every group).  1 if allowed;
 * else the 401 or 403 is answered.
 */
static int
routes_may_read(struct ws_conn *c, const struct http_req *req,
    const char *name)
{
	struct http_slice b = http_bearer(req);
	struct auth_claims claims;
	int ok;

	if (token_secret.p == NULL)
		return 1;
	if (b.n > 0 && api_key.p != NULL && auth_key_equal(
	    (const uint8_t *)b.p, b.n, api_key.p, api_key.n))
		return 1;
	if (b.n == 0 || verify(b.p, b.n, &claims) != AUTH_OK) {
		ws_http_error(c, 401, "unauthorized", "this call needs a token",
		    NULL);
		return 0;
	}
	ok = hub_may_read(&claims, name, strlen(name));
	auth_claims_free(&claims);
	if (!ok)
		ws_http_error(c, 403, "forbidden", "the token does not grant "
		    "this group", NULL);
	return ok;
}

int
routes_init(void)
{
	cfg = hub_config();
	if (secret_set(&token_secret, cfg->token_secret,
	    cfg->token_secret_len) == -1 || secret_set(&api_key, cfg->api_key,
	    cfg->api_key_len) == -1 || routes_set_allow(cfg->allow_origin,
	    cfg->nallow_origin, cfg->allow_host, cfg->nallow_host) == -1)
		return -1;
	if (cfg->token_secret != NULL &&
	    loop_timer(1000, expire_tokens, NULL) == -1)
		return -1;
	return 0;
}

/* ==== HTTP routes: which handler runs, and who may call it ============= */

/*
 * Every HTTP route, its method, who may call it, and its handler (api.c).
 * A path segment "*" is the route's variable (a group or a session id).
 * Before any route is looked up, routes_head() has checked the Host of
 * every request and, for every call that changes something (CHANGE), the
 * Origin and the API key, on the head, before the body was read.
 */
enum policy {
	OPEN,		/* anyone who passed the Host check */
	KEY,		/* --api-key, when set */
	READ_ALL,	/* with tokens on: the API key, or a token granting * */
	READ,		/* with tokens on: the API key, or a token granting
			 * the route's group */
	CHANGE,		/* Origin, and --api-key or (with tokens on and no
			 * key) a token that may publish everywhere */
	PUBLISH,	/* Origin, and --api-key or (with tokens on) a
			 * token that may publish to the route's group */
	WATCH,		/* --api-key when set; else with tokens on, a
			 * token granting * (who is connected, from where) */
	MONITOR		/* as READ for the group "monitor": what is
			 * published there, kept for later */
};

static void	routes_sse(const struct api_req *);

static const struct route {
	const char	*method;
	const char	*path;
	enum policy	 policy;
	void		(*fn)(const struct api_req *);
} http_routes[] = {
	{ "GET",	"/",			OPEN,		api_dashboard },
	{ "GET",	"/wsd.js",		OPEN,		api_client_js },
	{ "GET",	"/sse",			OPEN,		routes_sse },
	{ "GET",	"/health",		OPEN,		api_health },
	{ "GET",	"/livez",		OPEN,		api_livez },
	{ "GET",	"/readyz",		OPEN,		api_readyz },
	{ "GET",	"/metrics",		KEY,		api_metrics },
	{ "GET",	"/api/groups",		READ_ALL,	api_groups },
	{ "GET",	"/api/connections",	WATCH,		api_connections },
	{ "GET",	"/api/alerts",		MONITOR,	api_alerts },
	{ "POST",	"/api/groups/*/events",	PUBLISH,	api_post_event },
	{ "GET",	"/api/groups/*/events",	READ,		api_get_events },
	{ "POST",	"/api/sessions",	CHANGE,		api_post_session },
	{ "GET",	"/api/sessions",	OPEN,		api_get_sessions },
	{ "GET",	"/api/sessions/count",	OPEN,		api_session_count },
	{ "PUT",	"/api/sessions/*",	CHANGE,		api_put_session },
	{ "DELETE",	"/api/sessions/*",	CHANGE,		api_delete_session },
};

/* 1 if path matches pattern; *arg is then its "*" segment (or NULL). */
static int
path_is(const struct path *path, const char *pattern, const char **arg)
{
	int i = 0;

	*arg = NULL;
	for (const char *p = pattern; *p == '/'; i++) {
		const char *e = strchr(p + 1, '/');
		size_t n = e ? (size_t)(e - p - 1) : strlen(p + 1);

		if (i == path->n)
			return 0;
		if (n == 1 && p[1] == '*')
			*arg = path->seg[i];
		else if (strlen(path->seg[i]) != n ||
		    memcmp(path->seg[i], p + 1, n) != 0)
			return 0;
		if (e == NULL) {
			i++;
			break;
		}
		p = e;
	}
	return i == path->n;
}

/*
 * A call that changes something: the API key when it is set.  With
 * tokens on, a JWT also does: one that may publish to name, the group of
 * POST /api/groups/G/events (PUBLISH), or one that may publish to every
 * group for a broadcast ("*") and, when no key is set, for the session
 * calls (CHANGE, name NULL).  With neither secret it is open.  1 if
 * allowed; else the 401 or 403 is answered.
 */
static int
routes_may_change(struct ws_conn *c, const struct http_req *req,
    const char *name)
{
	struct http_slice b = http_bearer(req);
	struct auth_claims claims;
	int ok;

	if (token_secret.p == NULL || (api_key.p != NULL && name == NULL))
		return routes_api_key(c, req);
	if (b.n > 0 && api_key.p != NULL && auth_key_equal(
	    (const uint8_t *)b.p, b.n, api_key.p, api_key.n))
		return 1;
	if (!bearer_token(req, &claims)) {
		ws_http_error(c, 401, "unauthorized", "this call needs the API "
		    "key or a token", "WWW-Authenticate: Bearer\r\n");
		return 0;
	}
	ok = name != NULL && strcmp(name, "*") != 0 ?
	    auth_may_publish(&claims, name, strlen(name)) :
	    auth_may_publish_all(&claims);
	auth_claims_free(&claims);
	if (!ok)
		ws_http_error(c, 403, "forbidden", name != NULL ? "the token "
		    "does not grant publishing to this group" : "this call "
		    "needs a token that may publish to every group", NULL);
	return ok;
}

/*
 * A CORS preflight: the methods the path takes (allow, "Allow: A, B"),
 * and, for a listed origin (cors_begin() said so), what it may send.
 */
static void
preflight(struct ws_conn *c, const struct http_req *req, const char *allow)
{
	char h[512];

	if (origin_listed(req) == NULL) {
		ws_http_respond(c, 204, NULL, allow, NULL, 0);
		return;
	}
	snprintf(h, sizeof h, "%sAccess-Control-Allow-Methods: %s"
	    "Access-Control-Allow-Headers: Authorization, Content-Type, "
	    "Last-Event-ID\r\nAccess-Control-Max-Age: 600\r\n", allow,
	    allow + strlen("Allow: "));
	ws_http_respond(c, 204, NULL, h, NULL, 0);
}

static void	route(struct ws_conn *, const struct http_req *,
		    const uint8_t *, size_t);

void
routes_request(struct ws_conn *c, const struct http_req *req,
    const uint8_t *body, size_t blen)
{
	cors_begin(req);
	route(c, req, body, blen);
	ws_http_extra(NULL);
}

static void
route(struct ws_conn *c, const struct http_req *req, const uint8_t *body,
    size_t blen)
{
	struct api_req r = { c, req, body, blen, NULL };
	struct path path;
	char allow[64] = "Allow: ";
	int st, known = 0;

	if ((st = split_path(req->path, &path)) != 0) {
		st = st == 400 ? 400 : 404;
		ws_http_error(c, st, st == 400 ? "bad_request" : "not_found",
		    st == 400 ? "malformed percent-encoding in the path" :
		    "no such resource", NULL);
		return;
	}
	/* /ws/... and /api/v1/ws/... are WebSocket routes (RFC 9110
	 * §15.5.22: a 426 says which protocol to upgrade to). */
	if ((path.n > 1 && strcmp(path.seg[0], "ws") == 0) ||
	    (path.n > 3 && strcmp(path.seg[0], "api") == 0 &&
	    strcmp(path.seg[1], "v1") == 0 && strcmp(path.seg[2], "ws") == 0)) {
		ws_http_error(c, 426, "upgrade_required",
		    "this is a WebSocket route",
		    "Upgrade: websocket\r\n");
		return;
	}
	for (size_t i = 0; i < sizeof http_routes / sizeof http_routes[0];
	    i++) {
		const struct route *rt = &http_routes[i];

		if (!path_is(&path, rt->path, &r.arg))
			continue;
		/* RFC 9110 §9.1: methods are case-sensitive. */
		if (!method_is(req, rt->method)) {
			/* The table has at most a few methods a path. */
			if (known++)
				strcat(allow, ", ");
			strcat(allow, rt->method);
			continue;
		}
		if ((rt->policy == KEY && !routes_api_key(c, req)) ||
		    (rt->policy == WATCH && (api_key.p != NULL ?
		    !routes_api_key(c, req) : !routes_may_read(c, req, "*"))) ||
		    (rt->policy == CHANGE && !routes_may_change(c, req, NULL)) ||
		    (rt->policy == READ_ALL && !routes_may_read(c, req, "*")) ||
		    (rt->policy == READ && !routes_may_read(c, req, r.arg)) ||
		    (rt->policy == MONITOR &&
		    !routes_may_read(c, req, "monitor")) ||
		    (rt->policy == PUBLISH && !routes_may_change(c, req, r.arg)))
			return;
		rt->fn(&r);
		return;
	}
	if (known) {
		strcat(allow, ", OPTIONS\r\n");
		if (method_is(req, "OPTIONS"))
			preflight(c, req, allow);
		else
			ws_http_error(c, 405, "method_not_allowed",
			    "method not allowed here", allow);
	} else
		ws_http_error(c, 404, "not_found", "no such resource", NULL);
}

/*
 * The layers above the reactor, as ws.c's handlers, in one place for the
 * daemon (main.c) and its simulation: routes.c decides who may connect
 * and call and which handler runs, proto.c answers a client's messages,
 * hub.c batches each turn's events and goes on with paced replays, api.c
 * answers HTTP calls.
 */
const struct ws_handlers routes_handlers = {
	.upgrade = routes_upgrade,
	.open = routes_open,
	.message = proto_message,
	.closed = routes_closed,
	.writable = hub_writable,
	.turn = hub_turn,
	.head = routes_head,
	.http = routes_request,
};
