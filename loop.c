/*
 * loop.c - the reactor: one epoll instance, and every fd in it.
 *
 * Listeners, timers (timerfd) and signals (signalfd) live here;
 * connections are registered by ws.c as sources of their own.  Every
 * source starts with struct loop_src, whose event function is called when
 * epoll reports it.  One turn: wait, read the clock once, the layer
 * above's start-of-turn hook, every reported event, its end-of-turn hook.
 * SIGTERM and SIGINT call the term hook (the drain), SIGHUP the hup hook.
 *
 * What it does not do: read or write a connection, or know what one is.
 * Functions return 0 or -1 (logged) unless they say otherwise.
 */
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"

#define MAX_EVENTS	256

struct listener {
	struct loop_src src;
	void (*on_accept)(int);
	struct listener *next;
};

struct timer {
	struct loop_src src;
	void (*fn)(void *);
	void *arg;
	struct timer *next;
};

static int			 epfd = -1;
static int			 reserve_fd = -1;	/* spare fd for EMFILE */
static struct listener		*listeners;
static struct timer		*timers;	/* freed by loop_free() */
static struct loop_src		 sigsrc = { -1, NULL };
static const struct loop_hooks	*hooks;
static uint64_t			 now_ms;

static void	listener_event(struct loop_src *, uint32_t);
static void	timer_event(struct loop_src *, uint32_t);
static void	signal_event(struct loop_src *, uint32_t);

/* ==== Sources ======================================================== */

int
loop_add(struct loop_src *s, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = s };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev);
}

int
loop_mod(struct loop_src *s, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = s };

	return epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev);
}

void
loop_del(struct loop_src *s)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
}

/* ==== Timers ========================================================= */

int
loop_timer(unsigned interval_ms, void (*fn)(void *), void *arg)
{
	struct itimerspec its = { 0 };
	struct timer *t;

	if ((t = calloc(1, sizeof *t)) == NULL)
		return -1;
	t->src.event = timer_event;
	t->fn = fn;
	t->arg = arg;
	t->src.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (t->src.fd == -1)
		goto fail;
	its.it_interval.tv_sec = interval_ms / 1000;
	its.it_interval.tv_nsec = (interval_ms % 1000) * 1000000L;
	its.it_value = its.it_interval;
	if (timerfd_settime(t->src.fd, 0, &its, NULL) == -1 ||
	    loop_add(&t->src, EPOLLIN) == -1)
		goto fail;
	t->next = timers;
	timers = t;
	return 0;
fail:
	if (t->src.fd != -1)
		close(t->src.fd);
	free(t);
	return -1;
}

static void
timer_event(struct loop_src *s, uint32_t events)
{
	struct timer *t = (struct timer *)s;
	uint64_t expirations;

	(void)events;

	if (read(t->src.fd, &expirations, sizeof expirations) > 0)
		t->fn(t->arg);
}

/* ==== Listeners ====================================================== */

/*
 * Split HOST:PORT as loop_listen() reads it ("[::1]:80" for IPv6, ":80" for
 * every address) and check what getaddrinfo() would not: the port is 1-5
 * digits up to 65535 (getaddrinfo() takes "99999" and wraps it).  0 or -1.
 */
int
loop_split_hostport(const char *hostport, char host[256], char port[6])
{
	const char *colon = strrchr(hostport, ':');
	size_t hl, pl;

	if (colon == NULL || (hl = colon - hostport) >= 256)
		return -1;
	pl = strlen(colon + 1);
	if (pl == 0 || pl > 5 || strspn(colon + 1, "0123456789") != pl ||
	    strtoul(colon + 1, NULL, 10) > 65535)
		return -1;
	memcpy(port, colon + 1, pl + 1);
	if (hl >= 2 && hostport[0] == '[' && hostport[hl - 1] == ']') {
		memcpy(host, hostport + 1, hl - 2);
		host[hl - 2] = '\0';
	} else {
		memcpy(host, hostport, hl);
		host[hl] = '\0';
	}
	return 0;
}

int
loop_listen(const char *hostport, void (*on_accept)(int))
{
	struct addrinfo hints = { 0 }, *res = NULL;
	char host[256], port[6], shown[300];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	struct listener *l = NULL;
	int fd = -1, one = 1, err;

	if (loop_split_hostport(hostport, host, port) == -1) {
		log_msg(LOG_ERROR, "listen: expected HOST:PORT, got %.64s",
		    hostport);
		return -1;
	}
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((err = getaddrinfo(host[0] ? host : NULL, port, &hints, &res))) {
		log_msg(LOG_ERROR, "listen %.64s: %s", hostport,
		    gai_strerror(err));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (res->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 ||
	    listen(fd, 4096) == -1 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) == -1)
		goto fail;
	if ((l = calloc(1, sizeof *l)) == NULL)
		goto fail;
	l->src.fd = fd;
	l->src.event = listener_event;
	l->on_accept = on_accept;
	if (loop_add(&l->src, EPOLLIN) == -1)
		goto fail;
	l->next = listeners;
	listeners = l;
	freeaddrinfo(res);
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		shown[0] = '[';
		inet_ntop(AF_INET6, &s6->sin6_addr, shown + 1, sizeof shown - 8);
		snprintf(shown + strlen(shown), 8, "]:%u", ntohs(s6->sin6_port));
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &s4->sin_addr, shown, sizeof shown - 8);
		snprintf(shown + strlen(shown), 8, ":%u", ntohs(s4->sin_port));
	}
	log_msg(LOG_INFO, "listening addr=%s", shown);
	return 0;
fail:
	log_msg(LOG_ERROR, "listen %.64s: %s", hostport, strerror(errno));
	if (fd != -1)
		close(fd);
	free(l);
	freeaddrinfo(res);
	return -1;
}

/*
 * Accept until the backlog is empty.  Out of fds (EMFILE/ENFILE), the
 * pending connection would keep the listener readable forever: give back
 * the reserve fd, accept and drop the connection, and take the reserve
 * again, so the loop never spins.
 */
static void
listener_event(struct loop_src *s, uint32_t events)
{
	struct listener *l = (struct listener *)s;

	(void)events;
	if (l->src.fd == -1)
		return;		/* stopped earlier in this turn */
	for (int i = 0; i < 1024; i++) {
		int fd = accept4(l->src.fd, NULL, NULL,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			l->on_accept(fd);
			continue;
		}
		if (errno == EINTR)
			continue;
		if ((errno == EMFILE || errno == ENFILE) && reserve_fd >= 0) {
			close(reserve_fd);
			fd = accept(l->src.fd, NULL, NULL);
			if (fd >= 0)
				close(fd);
			reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			log_msg(LOG_WARN, "out of file descriptors");
			l->on_accept(-1);
		}
		return;
	}
}

void
loop_stop_listening(void)
{
	/* An event of this turn's batch may still point at a listener:
	 * close its fd now, free it in loop_free(). */
	for (struct listener *l = listeners; l != NULL; l = l->next)
		if (l->src.fd != -1) {
			loop_del(&l->src);
			close(l->src.fd);
			l->src.fd = -1;
		}
}

/* ==== Signals and the loop =========================================== */

uint64_t
loop_now_ms(void)
{
	return now_ms;
}

static void
clock_tick(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now_ms = (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
signal_event(struct loop_src *s, uint32_t events)
{
	struct signalfd_siginfo si;

	(void)events;
	while (read(s->fd, &si, sizeof si) == sizeof si) {
		if (si.ssi_signo == SIGHUP) {
			if (hooks->hup != NULL)
				hooks->hup();
			/* After the reopen, so it lands in the new file. */
			log_msg(LOG_INFO, "SIGHUP handled");
		} else if (hooks->term != NULL)
			hooks->term();
	}
}

int
loop_init(void)
{
	sigset_t set;

	clock_tick();
	signal(SIGPIPE, SIG_IGN);
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		goto fail;
	reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1 ||
	    (sigsrc.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		goto fail;
	sigsrc.event = signal_event;
	if (loop_add(&sigsrc, EPOLLIN) == -1)
		goto fail;
	return 0;
fail:
	log_msg(LOG_ERROR, "reactor setup: %s", strerror(errno));
	return -1;
}

int
loop_run(const struct loop_hooks *h)
{
	struct epoll_event events[MAX_EVENTS];

	hooks = h;
	while (!h->done()) {
		int n = epoll_wait(epfd, events, MAX_EVENTS, h->timeout());

		clock_tick();
		if (n == -1 && errno != EINTR) {
			log_msg(LOG_ERROR, "epoll_wait: %s", strerror(errno));
			return 1;
		}
		h->start();
		for (int i = 0; i < n; i++) {
			struct loop_src *s = events[i].data.ptr;

			s->event(s, events[i].events);
		}
		h->end();
	}
	return 0;
}

void
loop_free(void)
{
	loop_stop_listening();
	while (listeners != NULL) {
		struct listener *ls = listeners;

		listeners = ls->next;
		free(ls);
	}
	while (timers != NULL) {
		struct timer *t = timers;

		timers = t->next;
		close(t->src.fd);
		free(t);
	}
}
