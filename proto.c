/*
 * proto.c - the client protocol: the JSON messages a WebSocket client
 * sends (ping, heartbeat, get_status, subscribe, unsubscribe, publish,
 * get_history) and their answers.
 *
 * One decoded message at a time, from ws.c's handlers.message: it checks
 * the message's form and rights and calls the hub (groups, publish,
 * replay, history).  It does no I/O of its own and keeps no state but
 * each connection's publish rate bucket.  Errors are answered with
 * {"type":"error","code":C,...}; the connection stays open.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "hub.h"
#include "json.h"
#include "proto.h"
#include "session_events.h"
#include "ws.h"

#define MAX_ID_JSON	256	/* bytes of a client's "id" echoed back */

/* One decoded message and the pieces every handler needs. */
struct msg {
	struct ws_conn	   *c;
	struct ws_app_conn *a;
	struct json_doc	    doc;
	const uint8_t	   *id;		/* raw JSON of "id", or NULL */
	size_t		    idlen;
};

/* Member key of the message, as sent (it was validated by the caller). */
static void
put_member(struct json_buf *jb, const char *prefix, struct msg *m,
    const char *key)
{
	int i = json_find(&m->doc, 0, key);
	size_t n;
	const uint8_t *p = json_tok_json(&m->doc, i, &n);

	json_put_cstr(jb, prefix);
	json_put_raw(jb, p, n);
}

static void
fail(struct msg *m, enum hub_error e, const char *text)
{
	hub_send_error(m->c, e, text, m->id, m->idlen);
}

/*
 * The group name in member key, into name (not NUL-terminated).  Returns
 * its length, or -1 with bad_group sent when it is missing or malformed
 * ("*" passes: only publish accepts it).
 */
static long
msg_group_name(struct msg *m, const char *key, char name[HUB_GROUP_MAX + 1])
{
	int i = json_find(&m->doc, 0, key);
	long n;

	if (i < 0 || m->doc.tok[i].type != JSON_STRING ||
	    (n = json_tok_str(&m->doc, i, name, HUB_GROUP_MAX + 1)) < 0 ||
	    (!hub_name_valid(name, n) && !(n == 1 && name[0] == '*'))) {
		fail(m, HUB_E_BAD_GROUP, "group must be 1-64 bytes of "
		    "[A-Za-z0-9._:-]");
		return -1;
	}
	return n;
}

/* Optional non-negative integer member; -1 (error sent) if malformed. */
static int
msg_uint(struct msg *m, const char *key, uint64_t *out, uint64_t dflt)
{
	int i = json_find(&m->doc, 0, key);
	int64_t v;

	*out = dflt;
	if (i < 0 || m->doc.tok[i].type == JSON_NULL)
		return 0;
	if (json_tok_int(&m->doc, i, &v) == -1 || v < 0) {
		fail(m, HUB_E_BAD_JSON, "expected a non-negative integer");
		return -1;
	}
	*out = v;
	return 0;
}

/*
 * Optional position member: a non-negative integer (a bare seq) or a
 * string "SEQ" / "EPOCH:SEQ".  Returns 1 when present, 0 when absent
 * (seq 0), -1 (error sent) if malformed.
 */
static int
msg_pos(struct msg *m, const char *key, struct hub_pos *pos)
{
	int i = json_find(&m->doc, 0, key);
	char text[64];
	long n;

	pos->seq = 0;
	pos->epoch[0] = '\0';
	if (i < 0 || m->doc.tok[i].type == JSON_NULL)
		return 0;
	if (m->doc.tok[i].type == JSON_STRING) {
		if ((n = json_tok_str(&m->doc, i, text, sizeof text)) < 0 ||
		    hub_parse_pos(text, n, pos) == -1) {
			fail(m, HUB_E_BAD_JSON, "since is SEQ or \"EPOCH:SEQ\"");
			return -1;
		}
		return 1;
	}
	return msg_uint(m, key, &pos->seq, 0) == -1 ? -1 : 1;
}

/* ping and heartbeat: the answer type, the id, and the time. */
static void
answer_now(struct msg *m, const char *type)
{
	struct json_buf jb = { 0 };

	hub_begin(&jb, type, m->id, m->idlen);
	json_put_cstr(&jb, ",\"timestamp\":");
	hub_put_timestamp(&jb);
	hub_reply(m->c, &jb);
}

static void
on_ping(struct msg *m)
{
	answer_now(m, "pong");
}

static void
on_heartbeat(struct msg *m)
{
	answer_now(m, "heartbeat_ack");
}

static void
on_get_status(struct msg *m)
{
	struct json_buf jb = { 0 };
	char num[96];

	hub_begin(&jb, "status", m->id, m->idlen);
	snprintf(num, sizeof num, ",\"data\":{\"connection_id\":%llu,"
	    "\"groups\":[", (unsigned long long)ws_conn_id(m->c));
	json_put_cstr(&jb, num);
	for (uint32_t i = 0; i < m->a->nsubs; i++) {
		size_t gn;
		const char *gname = hub_group_name(m->a->subs[i].g, &gn);

		if (i > 0)
			json_put_raw(&jb, ",", 1);
		json_put_str(&jb, gname, gn);
	}
	json_put_cstr(&jb, "],\"session_id\":");
	if (m->a->session != NULL) {
		const char *sid = sess_id(m->a->session);

		json_put_str(&jb, sid, strlen(sid));
	} else
		json_put_cstr(&jb, "null");
	snprintf(num, sizeof num, ",\"connections\":%llu,\"sessions\":%u}",
	    (unsigned long long)ws_stats_get()->websockets, sess_count());
	json_put_cstr(&jb, num);
	hub_reply(m->c, &jb);
}

static void
on_subscribe(struct msg *m)
{
	char name[HUB_GROUP_MAX + 1];
	struct hub_group *g;
	struct hub_pos since;
	int has_since, rc;
	long n;

	if ((has_since = msg_pos(m, "since", &since)) == -1 ||
	    (n = msg_group_name(m, "group", name)) == -1)
		return;
	if (n == 1 && name[0] == '*') {
		fail(m, HUB_E_BAD_GROUP, "every connection receives \"*\"");
		return;
	}
	/* Rights first: a refused subscribe creates no group. */
	if (!hub_may_read(hub_claims(m->a), name, n)) {
		fail(m, HUB_E_FORBIDDEN, "the token does not grant this group");
		return;
	}
	if ((g = hub_group(name, n, 1)) == NULL) {
		fail(m, HUB_E_TOO_LARGE, "too many groups");
		return;
	}
	if ((rc = hub_subscribe(m->a, g)) == -1) {
		fail(m, HUB_E_TOO_LARGE, "too many groups on this connection");
		hub_group_release(g);
		return;
	}
	hub_send_subscribed(m->a, g);
	if (has_since)
		hub_replay(m->a, g, &since);
}

static void
on_unsubscribe(struct msg *m)
{
	char name[HUB_GROUP_MAX + 1];
	struct json_buf jb = { 0 };
	struct hub_group *g;
	long n;
	int i;

	if ((n = msg_group_name(m, "group", name)) == -1)
		return;
	if ((g = hub_group(name, n, 0)) != NULL && (i = hub_sub_find(m->a, g)) >= 0)
		hub_unsubscribe(m->a, i);
	hub_begin(&jb, "unsubscribed", m->id, m->idlen);
	put_member(&jb, ",\"group\":", m, "group");
	hub_reply(m->c, &jb);
}

/* A token bucket holding one second's worth of --publish-rate. */
static int
rate_ok(struct ws_app_conn *a)
{
	uint32_t now = (uint32_t)loop_now_ms();
	float rate = (float)hub_config()->publish_rate;

	if (rate == 0)
		return 1;
	/* Milliseconds since the last refill, modulo 2^32 (49 days): a
	 * connection silent longer may find its bucket refilled less than
	 * full, for one publish. */
	a->bucket += (float)(uint32_t)(now - a->bucket_ms) * rate / 1000;
	if (a->bucket > rate)
		a->bucket = rate;
	a->bucket_ms = now;
	if (a->bucket < 1)
		return 0;
	a->bucket--;
	return 1;
}

/*
 * An answer Redis will bring (--redis): the connection, held until then
 * (ws_hold), and the message's id, copied since the message is gone by
 * then.
 */
struct later {
	struct ws_conn	*c;
	size_t		 idlen;
	uint8_t		 id[];		/* idlen bytes; none without an id */
};

static struct later *
later_new(struct msg *m)
{
	struct later *l = malloc(sizeof *l + m->idlen);

	if (l == NULL)
		return NULL;
	l->c = m->c;
	l->idlen = m->id != NULL ? m->idlen : 0;
	if (m->id != NULL)
		memcpy(l->id, m->id, m->idlen);
	ws_hold(m->c);
	return l;
}

static void
later_free(struct later *l)
{
	ws_release(l->c);
	free(l);
}

static void
published(struct ws_conn *c, const uint8_t *id, size_t idlen,
    const struct hub_result *r)
{
	struct json_buf jb = { 0 };
	char tail[64];

	hub_begin(&jb, "published", id, idlen);
	snprintf(tail, sizeof tail, ",\"seq\":%llu,\"delivered\":%u",
	    (unsigned long long)r->seq, r->delivered);
	json_put_cstr(&jb, tail);
	hub_reply(c, &jb);
}

static void
publish_done(void *arg, const struct hub_result *r)
{
	struct later *l = arg;
	const uint8_t *id = l->idlen > 0 ? l->id : NULL;

	if (!ws_open(l->c))
		;
	else if (r->seq == 0)
		hub_send_error(l->c, r->err, r->why, id, l->idlen);
	else if (id != NULL)
		published(l->c, id, l->idlen, r);
	later_free(l);
}

static void
on_publish(struct msg *m)
{
	char name[HUB_GROUP_MAX + 1];
	struct hub_result r;
	struct later *l = NULL;
	long n;
	int rc;

	if (!rate_ok(m->a)) {
		hub_limit_hit(HUB_L_PUBLISH_RATE);
		fail(m, HUB_E_RATE_LIMITED, "publish rate limit reached");
		return;
	}
	if ((n = msg_group_name(m, "group", name)) == -1)
		return;
	/* Only an answer that comes later needs the message kept. */
	if (hub_answers_later() && (l = later_new(m)) == NULL) {
		fail(m, HUB_E_UNAVAILABLE, "out of memory");
		return;
	}
	rc = hub_client_publish(name, n, &m->doc, json_find(&m->doc, 0,
	    "event"), json_find(&m->doc, 0, "data"), hub_claims(m->a), &r,
	    publish_done, l);
	if (rc == 1)
		return;		/* answered by publish_done() */
	if (l != NULL)
		later_free(l);
	if (rc == -1)
		fail(m, r.err, r.why);
	else if (m->id != NULL)
		published(m->c, m->id, m->idlen, &r);
}

static void
history_answer(struct ws_conn *c, const uint8_t *id, size_t idlen,
    const struct json_buf *members)
{
	struct json_buf jb = { 0 };

	hub_begin(&jb, "history", id, idlen);
	json_put_raw(&jb, ",", 1);
	json_put_raw(&jb, members->p, members->len);
	if (members->oom)
		jb.oom = 1;
	hub_reply(c, &jb);
}

static void
history_done(void *arg, struct json_buf *members)
{
	struct later *l = arg;
	const uint8_t *id = l->idlen > 0 ? l->id : NULL;

	if (!ws_open(l->c))
		;
	else if (members == NULL)
		hub_send_error(l->c, HUB_E_UNAVAILABLE, "Redis is unavailable",
		    id, l->idlen);
	else
		history_answer(l->c, id, l->idlen, members);
	later_free(l);
}

static void
on_get_history(struct msg *m)
{
	char name[HUB_GROUP_MAX + 1];
	struct json_buf jb = { 0 };
	struct hub_pos since;
	struct later *l = NULL;
	uint64_t limit;
	long n;

	if (msg_pos(m, "since", &since) == -1 ||
	    msg_uint(m, "limit", &limit, 100) == -1 ||
	    (n = msg_group_name(m, "group", name)) == -1)
		return;
	/* The same answer whether or not the group exists: a token may not
	 * learn the names of groups it does not grant. */
	if (!hub_may_read(hub_claims(m->a), name, n)) {
		fail(m, HUB_E_FORBIDDEN, "the token does not grant this group");
		return;
	}
	if (hub_answers_later() && (l = later_new(m)) == NULL) {
		fail(m, HUB_E_UNAVAILABLE, "out of memory");
		return;
	}
	switch (hub_history(name, n, &since, limit, &jb, history_done, l)) {
	case 0:
		history_answer(m->c, m->id, m->idlen, &jb);
		break;
	case 1:
		return;		/* answered by history_done() */
	default:
		fail(m, HUB_E_UNAVAILABLE, "Redis is unavailable");
		break;
	}
	json_buf_free(&jb);
	if (l != NULL)
		later_free(l);
}

static const struct {
	const char *type;
	void (*fn)(struct msg *);
} handlers[] = {
	{ "ping", on_ping },
	{ "heartbeat", on_heartbeat },
	{ "get_status", on_get_status },
	{ "subscribe", on_subscribe },
	{ "unsubscribe", on_unsubscribe },
	{ "publish", on_publish },
	{ "get_history", on_get_history },
};

void
proto_message(struct ws_conn *c, struct ws_app_conn *a, int opcode,
    const uint8_t *p, size_t n)
{
	struct msg m = { .c = c, .a = a };
	int t, id;

	if (opcode != WS_OP_TEXT) {
		hub_send_error(c, HUB_E_BAD_JSON, "messages are JSON text frames",
		    NULL, 0);
		return;
	}
	/* A token needs at least one byte of input, so n + 1 bounds them. */
	if (json_parse(&m.doc, p, n, hub_config()->json_depth, n + 1) == -1) {
		char text[96];

		snprintf(text, sizeof text, "invalid JSON at byte %zu: %s",
		    m.doc.err_offset, m.doc.err);
		hub_send_error(c, HUB_E_BAD_JSON, text, NULL, 0);
		goto out;
	}
	if (m.doc.tok[0].type != JSON_OBJECT) {
		hub_send_error(c, HUB_E_BAD_JSON, "a message is a JSON object",
		    NULL, 0);
		goto out;
	}
	if ((id = json_find(&m.doc, 0, "id")) >= 0) {
		m.id = json_tok_json(&m.doc, id, &m.idlen);
		if (m.idlen > MAX_ID_JSON) {
			m.id = NULL;
			hub_send_error(c, HUB_E_TOO_LARGE, "id is too long", NULL, 0);
			goto out;
		}
	}
	t = json_find(&m.doc, 0, "type");
	for (size_t i = 0; t >= 0 && i < sizeof handlers / sizeof handlers[0];
	    i++)
		if (json_tok_eq(&m.doc, t, handlers[i].type)) {
			handlers[i].fn(&m);
			goto out;
		}
	fail(&m, HUB_E_UNKNOWN_TYPE, "unknown message type");
out:
	json_doc_free(&m.doc);
}

