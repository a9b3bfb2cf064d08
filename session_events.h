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

/* What happened to a session between two ticks. */
enum sess_change {
	SESS_CREATED,
	SESS_DESTROYED,
	SESS_UPDATED		/* its metadata replaced by PUT */
};

/* Ids created, destroyed or updated since the last tick, in order. */
struct sess_ids {
	char	(*ids)[HUB_GROUP_MAX + 1];	/* owned */
	uint32_t n, cap;
};

struct sess_journal {
	struct sess_ids created;
	struct sess_ids destroyed;
	struct sess_ids updated;
};

/* One session_event: its kind, its ids and its counts. */
struct sess_event {
	enum sess_change       change;
	const struct sess_ids *ids;		/* borrowed from the journal */
	unsigned	       previous, current;
};

/* Append an id (n <= 64 bytes) to one list of the journal.  0 or -1. */
int	sess_journal_add(struct sess_journal *j, enum sess_change change,
	    const char *id, size_t n);
void	sess_journal_clear(struct sess_journal *j);

/*
 * The events for one tick, given the live count at the previous tick:
 * session_created (if anything was created), session_updated (if any
 * metadata changed; previous == current), then session_destroyed (if
 * anything was destroyed).  Returns how many (0 to 3) were written.
 */
int	sess_diff(unsigned previous, const struct sess_journal *j,
	    struct sess_event ev[3]);

#endif
