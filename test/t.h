/*
 * t.h - the whole unit-test harness.
 *
 * check(cond) counts a pass or prints the file and line of a failure;
 * t_done() prints the one summary line the runner adds up
 * ("N passed, M failed") and returns the process exit status.
 */
#ifndef T_H
#define T_H

#include <stdio.h>

static int t_pass, t_fail;

#define check(cond) do {                                              \
	if (cond)                                                     \
		t_pass++;                                             \
	else {                                                        \
		t_fail++;                                             \
		fprintf(stderr, "%s:%d: check failed: %s\n",          \
		    __FILE__, __LINE__, #cond);                       \
	}                                                             \
} while (0)

static inline int
t_done(void)
{
	printf("%d passed, %d failed\n", t_pass, t_fail);
	return t_fail ? 1 : 0;
}

#endif
