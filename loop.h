/*
 * loop.h - the reactor (loop.c): one epoll instance, listeners, timers,
 * signals, and the turn.
 */
#ifndef LOOP_H
#define LOOP_H

#include <stdint.h>

/*
 * Everything registered with epoll starts with this: event() is called
 * with epoll's event bits when fd is ready.
 */
struct loop_src {
	int	fd;
	void	(*event)(struct loop_src *s, uint32_t events);
};

/* What the layer above does in each turn, and when the loop ends. */
struct loop_hooks {
	int	(*timeout)(void);	/* epoll_wait's: -1, 0 or ms */
	void	(*start)(void);		/* after the wait, before events */
	void	(*end)(void);		/* after every event of the turn */
	void	(*term)(void);		/* SIGTERM, SIGINT */
	void	(*hup)(void);		/* SIGHUP; may be NULL */
	int	(*done)(void);		/* 1: the loop returns */
};

/* epoll, signals (blocked, read through a signalfd), the clock.  0/-1. */
int	loop_init(void);

int	loop_add(struct loop_src *s, uint32_t events);
int	loop_mod(struct loop_src *s, uint32_t events);
void	loop_del(struct loop_src *s);

/* Call fn every interval_ms from the loop, on a timerfd.  0 or -1. */
int	loop_timer(unsigned interval_ms, void (*fn)(void *), void *arg);

/*
 * Listen on "HOST:PORT" ("[::1]:PORT" for IPv6); every accepted fd goes
 * to on_accept, and -1 when one had to be dropped for lack of fds (the
 * reserve fd keeps the loop from spinning on EMFILE).  0 or -1 (logged).
 */
int	loop_listen(const char *hostport, void (*on_accept)(int fd));
void	loop_stop_listening(void);

/*
 * Split HOST:PORT ("[::1]:80" for IPv6, ":80" for every address) into
 * host and port, checking what getaddrinfo() would not: the port is 1-5
 * digits up to 65535.  0 or -1.
 */
int	loop_split_hostport(const char *hostport, char host[256], char port[6]);

/* Monotonic milliseconds, read once per turn. */
uint64_t loop_now_ms(void);

/* Turn until hooks->done().  Returns 0, or 1 when epoll fails. */
int	loop_run(const struct loop_hooks *hooks);

/* Close the listeners and timers (at exit, for a clean leak check). */
void	loop_free(void);

#endif
