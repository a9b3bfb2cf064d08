/*
 * session_events.h - the pure part of the session diff, for tests.
 *
 * The registry's functions are declared in hub.h; this header exposes the
 * journal and the diff that turns it into session_event payloads.
 */
#ifndef SESSION_EVENTS_H
#define SESSION_EVENTS_H

#include <stdint.h>

#include "hub.h"

/* Ids created or destroyed since the last tick, in order. */
struct sess_ids {
	char	(*ids)[HUB_GROUP_MAX + 1];	/* owned */
	uint32_t n, cap;
};

struct sess_journal {
	struct sess_ids created;
	struct sess_ids destroyed;
};

/* One session_event: created or destroyed, its ids and its counts. */
struct sess_event {
	int		       created;
	const struct sess_ids *ids;		/* borrowed from the journal */
	unsigned	       previous, current;
};

/* Append an id (n <= 64 bytes) to one side of the journal.  0 or -1. */
int	sess_journal_add(struct sess_journal *j, int destroyed,
	    const char *id, size_t n);
void	sess_journal_clear(struct sess_journal *j);

/*
 * The events for one tick, given the live count at the previous tick:
 * session_created (if anything was created) then session_destroyed (if
 * anything was destroyed).  Returns how many (0, 1 or 2) were written.
 */
int	sess_diff(unsigned previous, const struct sess_journal *j,
	    struct sess_event ev[2]);

#endif
