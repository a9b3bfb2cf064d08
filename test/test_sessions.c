/*
 * test_sessions.c - the session diff on sets, through its pure function.
 *
 * The journal records every create, update and destroy between two
 * ticks; sess_diff() turns it into session_created, session_updated, then
 * session_destroyed with counts that add up.  These cases are the ones a
 * snapshot diff gets wrong: a session that came and went within a tick,
 * and an id destroyed and created again.
 */
#include <stdio.h>
#include <string.h>

#include "session_events.h"
#include "t.h"

static void
add(struct sess_journal *j, int destroyed, const char *id)
{
	check(sess_journal_add(j, destroyed, id, strlen(id)) == 0);
}

static int
has(const struct sess_ids *l, const char *id)
{
	for (uint32_t i = 0; i < l->n; i++)
		if (strcmp(l->ids[i], id) == 0)
			return 1;
	return 0;
}

static void
test_nothing(void)
{
	struct sess_journal j = { 0 };
	struct sess_event ev[3];

	check(sess_diff(5, &j, ev) == 0);	/* no change, no event */
}

static void
test_appear(void)
{
	struct sess_journal j = { 0 };
	struct sess_event ev[3];

	add(&j, 0, "s1");
	add(&j, 0, "s2");
	check(sess_diff(3, &j, ev) == 1);
	check(ev[0].change == SESS_CREATED);
	check(ev[0].previous == 3 && ev[0].current == 5);
	check(ev[0].ids->n == 2 && has(ev[0].ids, "s1") && has(ev[0].ids, "s2"));
	sess_journal_clear(&j);
}

static void
test_vanish(void)
{
	struct sess_journal j = { 0 };
	struct sess_event ev[3];

	add(&j, 1, "s1");
	check(sess_diff(3, &j, ev) == 1);
	check(ev[0].change == SESS_DESTROYED);
	check(ev[0].previous == 3 && ev[0].current == 2);
	check(ev[0].ids->n == 1 && has(ev[0].ids, "s1"));
	sess_journal_clear(&j);
}

/* One created and another destroyed in the same tick: a count-only diff
 * sees no change; we emit both, created first. */
static void
test_both_in_one_tick(void)
{
	struct sess_journal j = { 0 };
	struct sess_event ev[3];

	add(&j, 0, "new");
	add(&j, 1, "old");
	check(sess_diff(4, &j, ev) == 2);
	check(ev[0].change == SESS_CREATED && ev[1].change == SESS_DESTROYED);
	check(ev[0].previous == 4 && ev[0].current == 5);
	check(ev[1].previous == 5 && ev[1].current == 4);
	check(has(ev[0].ids, "new") && !has(ev[0].ids, "old"));
	check(has(ev[1].ids, "old") && !has(ev[1].ids, "new"));
	sess_journal_clear(&j);
}

/* Created and destroyed between two ticks: a snapshot never sees it. */
static void
test_came_and_went(void)
{
	struct sess_journal j = { 0 };
	struct sess_event ev[3];

	add(&j, 0, "flash");
	add(&j, 1, "flash");
	check(sess_diff(0, &j, ev) == 2);
	check(ev[0].previous == 0 && ev[0].current == 1);
	check(ev[1].previous == 1 && ev[1].current == 0);
	check(has(ev[0].ids, "flash") && has(ev[1].ids, "flash"));
	sess_journal_clear(&j);
}

/* The same id destroyed and created again: both show, count unchanged. */
static void
test_recreated(void)
{
	struct sess_journal j = { 0 };
	struct sess_event ev[3];

	add(&j, 1, "s1");
	add(&j, 0, "s1");
	check(sess_diff(1, &j, ev) == 2);
	check(ev[0].change == SESS_CREATED && has(ev[0].ids, "s1"));
	check(ev[1].change == SESS_DESTROYED && has(ev[1].ids, "s1"));
	check(ev[0].previous == 1 && ev[0].current == 2);
	check(ev[1].previous == 2 && ev[1].current == 1);
	sess_journal_clear(&j);
}

/* A metadata change: between created and destroyed, counts unchanged. */
static void
test_updated(void)
{
	struct sess_journal j = { 0 };
	struct sess_event ev[3];

	add(&j, SESS_UPDATED, "u1");
	check(sess_diff(2, &j, ev) == 1);
	check(ev[0].change == SESS_UPDATED && has(ev[0].ids, "u1"));
	check(ev[0].previous == 2 && ev[0].current == 2);
	add(&j, SESS_DESTROYED, "old");
	add(&j, SESS_CREATED, "new");
	add(&j, SESS_UPDATED, "u2");
	check(sess_diff(2, &j, ev) == 3);
	check(ev[0].change == SESS_CREATED && ev[1].change == SESS_UPDATED &&
	    ev[2].change == SESS_DESTROYED);
	check(ev[0].previous == 2 && ev[0].current == 3);
	check(ev[1].previous == 3 && ev[1].current == 3);
	check(ev[2].previous == 3 && ev[2].current == 2);
	check(ev[1].ids->n == 2 && has(ev[1].ids, "u1") &&
	    has(ev[1].ids, "u2") && !has(ev[1].ids, "new"));
	sess_journal_clear(&j);
	check(j.updated.n == 0 && j.updated.ids == NULL);
}

/* 100,000 sessions: half destroyed, as many created, in one tick. */
static void
test_large(void)
{
	struct sess_journal j = { 0 };
	struct sess_event ev[3];
	char id[32];
	int ok = 1;

	for (int i = 0; i < 50000; i++) {
		snprintf(id, sizeof id, "gone-%d", i);
		ok &= sess_journal_add(&j, 1, id, strlen(id)) == 0;
		snprintf(id, sizeof id, "new-%d", i);
		ok &= sess_journal_add(&j, 0, id, strlen(id)) == 0;
	}
	check(ok);
	check(sess_diff(100000, &j, ev) == 2);
	check(ev[0].ids->n == 50000 && ev[1].ids->n == 50000);
	check(ev[0].previous == 100000 && ev[0].current == 150000);
	check(ev[1].previous == 150000 && ev[1].current == 100000);
	check(strcmp(ev[0].ids->ids[49999], "new-49999") == 0);
	check(strcmp(ev[1].ids->ids[0], "gone-0") == 0);
	sess_journal_clear(&j);
	check(j.created.n == 0 && j.created.ids == NULL);
}

/* A 64-byte id (the limit) is kept whole. */
static void
test_long_id(void)
{
	struct sess_journal j = { 0 };
	char id[65];

	memset(id, 'a', 64);
	id[64] = '\0';
	add(&j, 0, id);
	check(strlen(j.created.ids[0]) == 64);
	sess_journal_clear(&j);
}

int
main(void)
{
	test_nothing();
	test_appear();
	test_vanish();
	test_both_in_one_tick();
	test_came_and_went();
	test_recreated();
	test_updated();
	test_large();
	test_long_id();
	return t_done();
}
