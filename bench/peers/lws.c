/*
 * lws-peer - the bench contract on libwebsockets, in the library's usual
 * shape: lws owns the loop and the sockets; each connection keeps a queue
 * of messages and writes one per LWS_CALLBACK_SERVER_WRITEABLE.
 *
 * /echo echoes, /sub joins the one group, a message sent on /pub is
 * queued, by reference, on every /sub.  A subscriber with more than
 * OUT_MAX bytes queued is closed with 1013, as wsd closes slow consumers.
 *
 * With --tls-cert and --tls-key it speaks TLS (wss://) through lws' own
 * OpenSSL binding.
 *
 *   lws-peer --listen 127.0.0.1:PORT [--tls-cert F --tls-key F]
 */

#include <libwebsockets.h>

#include <arpa/inet.h>
#include <sys/resource.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUT_MAX		(4u << 20)	/* slow consumer limit */
#define MSG_MAX		(1u << 20)	/* longest message assembled */

enum kind { K_ECHO, K_SUB, K_PUB };

/* A message, shared by every queue it is on; freed with the last ref. */
struct msg {
	unsigned	 refs;
	int		 binary;
	size_t		 len;
	unsigned char	 buf[];		/* LWS_PRE bytes for lws, then data */
};

/* Per connection; lws allocates it zeroed and frees it. */
struct pss {
	struct lws	*wsi;
	enum kind	 kind;
	struct pss	*prev, *next;	/* the subscriber list */
	struct msg	**q;		/* ring of queued messages, owned */
	unsigned	 qhead, qlen, qcap;
	size_t		 queued;	/* bytes in the ring */
	int		 drop;		/* too slow: close on next writable */
	unsigned char	*rx;		/* message being assembled, owned */
	size_t		 rxlen, rxcap;
};

static struct pss	*subs;

static void
unref(struct msg *m)
{
	if (--m->refs == 0)
		free(m);
}

static void
enqueue(struct pss *p, struct msg *m)
{
	struct msg **q;
	unsigned i, cap;

	if (p->drop)
		return;
	if (p->queued + m->len > OUT_MAX) {
		p->drop = 1;
		lws_callback_on_writable(p->wsi);
		return;
	}
	if (p->qlen == p->qcap) {
		cap = p->qcap ? p->qcap * 2 : 16;
		if ((q = malloc(cap * sizeof *q)) == NULL) {
			p->drop = 1;
			return;
		}
		for (i = 0; i < p->qlen; i++)
			q[i] = p->q[(p->qhead + i) % p->qcap];
		free(p->q);
		p->q = q;
		p->qhead = 0;
		p->qcap = cap;
	}
	p->q[(p->qhead + p->qlen++) % p->qcap] = m;
	p->queued += m->len;
	m->refs++;
	lws_callback_on_writable(p->wsi);
}

static void
unlink_sub(struct pss *p)
{
	if (p->prev != NULL)
		p->prev->next = p->next;
	else if (subs == p)
		subs = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	p->prev = p->next = NULL;
}

/* Collects fragments; returns 1 when p->rx holds a whole message. */
static int
assemble(struct lws *wsi, struct pss *p, const void *in, size_t len)
{
	unsigned char *n;
	size_t cap;

	if (lws_is_first_fragment(wsi))
		p->rxlen = 0;
	if (p->rxlen + len > MSG_MAX)
		return -1;
	if (p->rxlen + len > p->rxcap) {
		cap = p->rxcap ? p->rxcap : 256;
		while (cap < p->rxlen + len)
			cap *= 2;
		if ((n = realloc(p->rx, cap)) == NULL)
			return -1;
		p->rx = n;
		p->rxcap = cap;
	}
	memcpy(p->rx + p->rxlen, in, len);
	p->rxlen += len;
	return lws_is_final_fragment(wsi) &&
	    lws_remaining_packet_payload(wsi) == 0;
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
    void *in, size_t len)
{
	struct pss *p = user, *s;
	struct msg *m;
	char uri[64];
	int r;

	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		p->wsi = wsi;
		if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0)
			return -1;
		if (strcmp(uri, "/echo") == 0)
			p->kind = K_ECHO;
		else if (strcmp(uri, "/pub") == 0)
			p->kind = K_PUB;
		else if (strcmp(uri, "/sub") == 0) {
			p->kind = K_SUB;
			p->next = subs;
			if (subs != NULL)
				subs->prev = p;
			subs = p;
		} else
			return -1;
		break;
	case LWS_CALLBACK_CLOSED:
		if (p->kind == K_SUB)
			unlink_sub(p);
		while (p->qlen > 0) {
			unref(p->q[p->qhead]);
			p->qhead = (p->qhead + 1) % p->qcap;
			p->qlen--;
		}
		free(p->q);
		free(p->rx);
		break;
	case LWS_CALLBACK_RECEIVE:
		if ((r = assemble(wsi, p, in, len)) == -1)
			return -1;
		if (r == 0 || p->kind == K_SUB)
			break;
		if ((m = malloc(sizeof *m + LWS_PRE + p->rxlen)) == NULL)
			return -1;
		m->refs = 1;
		m->binary = lws_frame_is_binary(wsi);
		m->len = p->rxlen;
		memcpy(m->buf + LWS_PRE, p->rx, p->rxlen);
		if (p->kind == K_ECHO)
			enqueue(p, m);
		else
			for (s = subs; s != NULL; s = s->next)
				enqueue(s, m);
		unref(m);
		break;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (p->drop) {
			lws_close_reason(wsi, (enum lws_close_status)1013,
			    NULL, 0);
			return -1;
		}
		if (p->qlen == 0)
			break;
		m = p->q[p->qhead];
		p->qhead = (p->qhead + 1) % p->qcap;
		p->qlen--;
		p->queued -= m->len;
		/* lws writes the frame header into the LWS_PRE headroom. */
		r = lws_write(wsi, m->buf + LWS_PRE, m->len,
		    m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
		unref(m);
		if (r < 0)
			return -1;
		if (p->qlen > 0)
			lws_callback_on_writable(wsi);
		break;
	default:
		break;
	}
	return 0;
}

static struct lws_protocols protocols[] = {
	{ "bench", callback, sizeof(struct pss), 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

int
main(int argc, char *argv[])
{
	struct lws_context_creation_info info;
	struct lws_context *ctx;
	struct rlimit rl = { 65536, 65536 };
	struct in_addr a;
	char host[64];
	const char *colon, *listen = NULL, *cert = NULL, *key = NULL;
	int i;

	for (i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--listen") == 0)
			listen = argv[i + 1];
		else if (strcmp(argv[i], "--tls-cert") == 0)
			cert = argv[i + 1];
		else if (strcmp(argv[i], "--tls-key") == 0)
			key = argv[i + 1];
		else
			break;
	}
	if (i != argc || listen == NULL || (cert == NULL) != (key == NULL) ||
	    (colon = strrchr(listen, ':')) == NULL ||
	    (size_t)(colon - listen) >= sizeof host) {
		fprintf(stderr, "usage: lws-peer --listen 127.0.0.1:PORT "
		    "[--tls-cert F --tls-key F]\n");
		return 2;
	}
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	if (inet_pton(AF_INET, host, &a) != 1 ||
	    (ntohl(a.s_addr) >> 24) != 127) {
		fprintf(stderr, "lws-peer: the loopback only\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	setrlimit(RLIMIT_NOFILE, &rl);
	lws_set_log_level(LLL_ERR, NULL);
	memset(&info, 0, sizeof info);
	info.port = atoi(colon + 1);
	info.iface = host;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	if (cert != NULL) {
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = cert;
		info.ssl_private_key_filepath = key;
	}
	if ((ctx = lws_create_context(&info)) == NULL) {
		fprintf(stderr, "lws-peer: cannot listen on %s\n", listen);
		return 1;
	}
	fprintf(stderr, "listening addr=%s:%d\n", host,
	    lws_get_vhost_listen_port(lws_get_vhost_by_name(ctx, "default")));
	while (lws_service(ctx, 0) >= 0)
		;
	lws_context_destroy(ctx);
	return 0;
}
