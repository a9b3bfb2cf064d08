/*
 * uws-native - the bench contract on uWebSockets 0.14 (C++), built here
 * from the sources that the npm package sc-uws 10.148.2 carries
 * (bench/node_modules/sc-uws/src: uWS::Hub, Group, WebSocket over uS's
 * own epoll backend, no libuv).  None of those sources are in this tree;
 * bench.mk compiles them next to this file.
 *
 * /echo echoes, /sub joins the one group of subscribers, and a message
 * on /pub goes to every /sub.  Every connection is accepted by the Hub's
 * default group; a subscriber is moved into the group "subs" (a
 * uWS::Group of its own, WebSocket::transfer, same loop), and a publish
 * is the library's own broadcast: the message is framed once
 * (prepareMessage) and the one buffer is queued, by reference, on every
 * subscriber (sendPrepared), as Group::broadcast does.  Our loop adds
 * one thing to it, below.
 *
 * A subscriber with more than OUT_MAX bytes unsent is closed with 1013,
 * as wsd closes slow consumers, so that a flood cannot take the
 * machine's memory.  uWS 0.14 has no call that says how much a socket
 * has buffered, so the bytes handed to sendPrepared are counted in the
 * socket's user pointer (an integer there, no allocation) and the
 * prepared message's callback, which runs once a copy has gone to the
 * kernel, takes them off again.
 *
 * With --tls-cert and --tls-key the Hub listens with the context of
 * uS::TLS::createContext (OpenSSL, wss://).
 *
 *   uws-native --listen 127.0.0.1:PORT [--tls-cert F --tls-key F]
 */

#include <uWS.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

typedef uWS::WebSocket<uWS::SERVER> Ws;

const uintptr_t OUT_MAX = 4u << 20;	// slow consumer limit, bytes
const unsigned int FRAME_MAX = 1u << 20;	// longest message taken

// What a connection of the default group is, in its user pointer.
enum Kind : uintptr_t { K_ECHO = 1, K_PUB = 2 };

uWS::Group<uWS::SERVER> *subs;

// A copy of a broadcast reached the kernel (or was dropped with its
// socket: then ws is null, or the socket is closing and its user
// pointer is uWS' own close timer, not our count).
void
sent(Ws *ws, void *len, bool cancelled, void *)
{
	if (cancelled || ws == nullptr || ws->isShuttingDown())
		return;
	uintptr_t owed = reinterpret_cast<uintptr_t>(ws->getUserData());
	ws->setUserData(reinterpret_cast<void *>(owed -
	    reinterpret_cast<uintptr_t>(len)));
}

void
publish(char *msg, size_t len, uWS::OpCode op)
{
	Ws::PreparedMessage *pm = Ws::prepareMessage(msg, len, op, false,
	    sent);
	void *framed = reinterpret_cast<void *>(
	    static_cast<uintptr_t>(pm->length));
	subs->forEach([pm, framed](Ws *s) {
		uintptr_t owed = reinterpret_cast<uintptr_t>(s->getUserData());
		if (owed > OUT_MAX) {
			s->close(1013);
			return;
		}
		s->setUserData(reinterpret_cast<void *>(owed + pm->length));
		s->sendPrepared(pm, framed);
	});
	Ws::finalizeMessage(pm);
}

bool
path_is(uWS::Header &url, const char *p)
{
	size_t n = strlen(p);
	return url.value != nullptr && url.valueLength == n &&
	    memcmp(url.value, p, n) == 0;
}

const char *
arg(int argc, char **argv, const char *name)
{
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return nullptr;
}

void
usage()
{
	fprintf(stderr, "usage: uws-native --listen 127.0.0.1:PORT "
	    "[--tls-cert F --tls-key F]\n");
	exit(2);
}

} // namespace

int
main(int argc, char **argv)
{
	const char *listen = arg(argc, argv, "--listen");
	const char *cert = arg(argc, argv, "--tls-cert");
	const char *key = arg(argc, argv, "--tls-key");
	if (listen == nullptr || (cert == nullptr) != (key == nullptr))
		usage();
	std::string addr(listen);
	size_t colon = addr.rfind(':');
	if (colon == std::string::npos || addr.compare(0, 4, "127.") != 0)
		usage();
	std::string host = addr.substr(0, colon);
	int port = atoi(addr.c_str() + colon + 1);
	if (port <= 0 || port > 65535)
		usage();

	uS::TLS::Context tls;
	if (cert != nullptr) {
		tls = uS::TLS::createContext(cert, key);
		if (!tls) {
			fprintf(stderr, "uws-native: cannot load %s / %s\n",
			    cert, key);
			return 1;
		}
	}

	// No permessage-deflate (extension options 0), as for every peer.
	uWS::Hub hub(0, false, FRAME_MAX);
	subs = hub.createGroup<uWS::SERVER>(0, FRAME_MAX);

	hub.onConnection([](Ws *ws, uWS::HttpRequest req) {
		uWS::Header url = req.getUrl();
		if (path_is(url, "/sub")) {
			ws->setUserData(nullptr);	// bytes owed: none
			ws->transfer(subs);
		} else if (path_is(url, "/pub")) {
			ws->setUserData(reinterpret_cast<void *>(K_PUB));
		} else if (path_is(url, "/echo")) {
			ws->setUserData(reinterpret_cast<void *>(K_ECHO));
		} else {
			ws->close(1008);
		}
	});
	hub.onMessage([](Ws *ws, char *msg, size_t len, uWS::OpCode op) {
		if (reinterpret_cast<uintptr_t>(ws->getUserData()) == K_PUB)
			publish(msg, len, op);
		else
			ws->send(msg, len, op);
	});

	if (!hub.listen(host.c_str(), port, tls, uS::ONLY_IPV4)) {
		fprintf(stderr, "uws-native: cannot listen on %s\n", listen);
		return 1;
	}
	fprintf(stderr, "listening addr=%s\n", listen);
	hub.run();
	return 0;
}
