/*
 * sim.h - a simulated kernel for running the whole of wsd in one process.
 *
 * test/simkern.c defines __wrap_NAME for every system call wsd makes
 * (sockets, epoll, timerfd, signalfd, clocks, getrandom, getaddrinfo);
 * linked with -Wl,--wrap=NAME, the daemon's calls land there instead of
 * in libc, so nothing in ws.c, hub.c or main.c's other layers changes and
 * the production build pays nothing.  No real socket is ever opened: a
 * simulated fd is a number from SIM_FD_BASE up, and a call on any other
 * fd (stderr, a file the test harness opens) goes to the real libc.
 *
 * Time is simulated too and moves only when the driver says so.  Each
 * call of epoll_wait() is one step: it first calls the driver's step
 * function (clients act, time moves, invariants are checked), then
 * returns the fds that are ready, level-triggered, in a shuffled order.
 *
 * The client side of each TCP connection is a handle the driver uses
 * with sim_send(), sim_recv() and friends; the server side is the fd wsd
 * accepted.  Functions return 0 or -1 unless they say otherwise.
 */
#ifndef SIM_H
#define SIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SIM_FD_BASE	(1 << 20)	/* simulated fds start here */
#define SIM_PORT	8000		/* what a listener is bound to */
#define SIM_LOG		"/sim/log"	/* log_set_file() this: a ring */

/* One connection as the kernel sees it; the driver only reads it. */
struct sim_sock {
	int	 fd;		/* server's fd; -1 before accept and after close */
	uint8_t	 accepted;
	uint8_t	 srv_closed;	/* the server closed its fd */
	uint8_t	 srv_shut;	/* the server shut its write side */
	uint8_t	 cli_shut;	/* the client sent FIN */
	uint8_t	 cli_closed;	/* the client closed: it reads no more */
	uint8_t	 cli_rst;	/* the client reset the connection */
	uint8_t	 srv_rst;	/* the client got a reset from the server */
	uint8_t	 refused;	/* the listener went away before accept */
	unsigned open_at_accept;	/* server-side connections open then */
	size_t	 win;		/* client receive window: s2c holds at most */
	size_t	 c2s_len, s2c_len;	/* bytes in flight each way */
	uint64_t rd, wr;	/* bytes the server read and wrote */
	uint64_t wr_step;	/* step of the server's last write */
	uint64_t close_step;	/* step the server closed its fd */
};

/* Kernel faults, each a chance in 1000 per call; all 0 by default. */
struct sim_faults {
	unsigned short_read;	/* read returns fewer bytes than it could */
	unsigned short_write;	/* writev writes fewer bytes than it could */
	unsigned eagain;	/* a ready socket says EAGAIN anyway */
	unsigned eintr;		/* read, writev or epoll_wait: EINTR */
	unsigned emfile;	/* accept4 fails with EMFILE */
	unsigned small_batch;	/* epoll_wait returns only a few events */
};

/* ---- Driving ---------------------------------------------------------- */

/* Seed the kernel's own generator (short reads, order, getrandom). */
void	sim_seed(uint64_t seed);
void	sim_set_faults(const struct sim_faults *f);

/* Called at the start of every epoll_wait(), before readiness. */
void	sim_on_step(void (*fn)(void));

uint64_t sim_step(void);		/* epoll_wait calls so far */
uint64_t sim_now(void);			/* monotonic ms */
void	sim_advance(uint64_t ms);	/* move time on; timers fire */

/* Queue signo on every signalfd that watches it. */
void	sim_signal(int signo);

/*
 * The longest run of steps an fd was reported ready without the daemon
 * reading, writing or re-arming it: a busy loop in the making.
 */
unsigned sim_spinning(void);

/* Last log lines (through SIM_LOG) to stderr, for a failure report. */
void	sim_dump_log(unsigned lines);

/* Called with every line logged through SIM_LOG (n bytes, no newline). */
void	sim_on_log(void (*fn)(const char *line, size_t n));

/*
 * The handle of the connection accept() handed out last, -1 before the
 * first: the daemon logs a new connection as it accepts it, so the
 * driver can tell which of its connections a logged conn id is.
 */
int	sim_last_accept(void);

/* ---- The client side of connections ------------------------------------ */

/*
 * Connect to the listener; win is the client's receive window (bytes the
 * server may have written and the client not yet read).  Returns a handle,
 * or -1 when nothing listens.
 */
int	sim_connect(size_t win);
const struct sim_sock *sim_sock(int h);

/* Hand up to n bytes to the kernel; returns how many it took, or -1. */
ssize_t	sim_send(int h, const void *p, size_t n);

/* n > 0 bytes, 0 at end of stream, -1 with errno EAGAIN or ECONNRESET. */
ssize_t	sim_recv(int h, void *buf, size_t cap);

void	sim_shut(int h);	/* FIN; the client may still read */
void	sim_close(int h);	/* FIN, and it reads no more */
void	sim_reset(int h);	/* RST: everything in flight is lost */
void	sim_set_win(int h, size_t win);

/* The driver will not use h again; the kernel may, once closed. */
void	sim_release(int h);

/* Server-side connections open now (accepted, fd not closed). */
unsigned sim_open_conns(void);

struct ws_config;
struct hub_config;

/*
 * Start wsd as main.c does, logging at level into SIM_LOG and listening
 * on 127.0.0.1:8000; then the caller runs ws_run().  0, or -1.
 */
int	sim_start(const struct ws_config *wcfg, const struct hub_config *hcfg,
	    const char *level);

/* Free every connection and fd; only after the daemon has stopped. */
void	sim_free(void);

#endif
