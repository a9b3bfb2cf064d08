/*
 * notify.h - tell systemd how wsd is doing (the sd_notify protocol).
 *
 * A unit with Type=notify starts wsd with NOTIFY_SOCKET set to an AF_UNIX
 * datagram socket: a path ("/run/systemd/notify") or, when it starts with
 * '@', a name in the abstract namespace.  wsd sends it one datagram per
 * state change: "READY=1" once the listeners are up, "STOPPING=1" when the
 * drain starts, and "WATCHDOG=1" every WATCHDOG_USEC/2 microseconds while
 * the loop turns (WatchdogSec= in the unit).  Without NOTIFY_SOCKET, as
 * when run by hand, every call does nothing.
 *
 * Return convention of the senders: 1 sent, 0 nothing to do
 * (NOTIFY_SOCKET unset or empty), -1 with errno set (EINVAL for an address
 * that is neither a path nor '@' name, or does not fit; else the error of
 * socket(2) or sendto(2)).  The caller may ignore it: a service manager
 * that cannot be told is no reason to stop serving.
 */
#ifndef NOTIFY_H
#define NOTIFY_H

#include <stdint.h>

/*
 * Send state (e.g. "READY=1", or several "KEY=VALUE" lines) as one
 * datagram.  Never blocks: a full queue at the receiver is -1 EAGAIN.
 * No allocation; opens and closes one socket per call.
 */
int	notify_send(const char *state);

/* notify_send("READY=1"): start-up is done, the listeners accept. */
int	notify_ready(void);

/* notify_send("STOPPING=1"): the drain has started. */
int	notify_stopping(void);

/* notify_send("WATCHDOG=1"): the loop is alive. */
int	notify_watchdog(void);

/*
 * The watchdog interval in microseconds from WATCHDOG_USEC, or 0 when the
 * watchdog is off: unset, not a positive decimal number, or WATCHDOG_PID is
 * set and names another process.  Ping at half of it.
 */
uint64_t notify_watchdog_usec(void);

#endif
