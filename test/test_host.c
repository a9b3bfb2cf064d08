/*
 * test_host.c - the /proc parsers and the alert rule (host_parse.c),
 * linked alone: no I/O, no other layer.
 *
 * The fixtures are real files read on Linux 6.x (a python3 that had
 * used CPU, PID 1, a process named "we) ird (n", a 24 GB host), plus
 * malformed ones.  Every fixture is also fed cut at every length, and
 * each time it ends on a guard page: a cut text is -1 or the whole
 * text's answer, never another number, and nothing reads past its end.
 */
#include <sys/mman.h>

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "host_parse.h"
#include "t.h"

static const char stat_python[] =
    "14099 (python3) R 14039 14039 9664 0 -1 4194304 2852 6591 0 0 26 0 3 "
    "1 20 0 1 0 945600 16961536 3355 18446744073709551615 94135805665280 "
    "94135805665621 140728932163920 0 0 0 0 16781312 2 0 0 0 17 1 0 0 0 0 "
    "0 94135805676976 94135805677592 94136105332736 140728932165671 "
    "140728932165838 140728932165838 140728932167631 0\n";
static const char stat_init[] =
    "1 (process_api) S 0 0 0 0 -1 4194560 174010 223187325 0 13982 588 "
    "3239 562555 259761 20 0 14 0 24 44019712 2977 18446744073709551615 1 "
    "1 0 0 0 0 0 4096 1256 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
/* A command name may hold ") " and "(": fields count from the last ')'. */
static const char stat_weird[] =
    "14045 (we) ird (n) S 1 14039 9664 0 -1 4194304 136 0 0 0 7 5 0 0 20 "
    "0 1 0 945569 2990080 411 18446744073709551615 94229377966080 "
    "94229377984009 140734056104992 0 0 0 0 6 0 1 0 0 17 0 0 0 0 0 0 "
    "94229377998096 94229377999360 94229542682624 140734056106633 "
    "140734056106648 140734056106648 140734056108011 0\n";
/* One that tries to pass fields off inside its name. */
static const char stat_fake[] =
    "9 (x) S 1 1 1 0) R 1 1 1 0 -1 0 0 0 0 0 11 22 0 0 20 0 1 0\n";

static const char statm_python[] = "4141 3388 1671 1 0 2019 0\n";
static const char loadavg_real[] = "0.65 0.33 0.48 2/96 14165\n";
static const char loadavg_busy[] = "123.07 64.50 8.00 97/1203 4194303\n";

static const char meminfo_real[] =
    "MemTotal:       24684096 kB\n"
    "MemFree:        24123316 kB\n"
    "MemAvailable:   24262668 kB\n"
    "Buffers:            3716 kB\n"
    "Cached:           329668 kB\n"
    "SwapCached:            0 kB\n"
    "Active:           263640 kB\n"
    "VmallocTotal:   34359738367 kB\n"
    "HugePages_Total:       0\n"
    "Hugepagesize:       2048 kB\n"
    "DirectMap1G:    25165824 kB\n";
/* Linux before 3.14 has no MemAvailable. */
static const char meminfo_old[] =
    "MemTotal:        2052416 kB\n"
    "MemFree:          123456 kB\n"
    "Buffers:           10000 kB\n"
    "Cached:           500000 kB\n";

/* ==== Guard page ====================================================== */

static uint8_t *guard;		/* a page, then one that may not be read */
static size_t	page;

static void
guard_init(void)
{
	page = sysconf(_SC_PAGESIZE);
	guard = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check(guard != MAP_FAILED);
	check(mprotect(guard + page, page, PROT_NONE) == 0);
}

/* A string literal as (bytes, length), and as (bytes at the guard, length). */
#define STR(s)	s, sizeof s - 1
#define LIT(s)	at_guard(s, sizeof s - 1), sizeof s - 1

/* s[0..n) copied to end right at the guard page. */
static const char *
at_guard(const char *s, size_t n)
{
	char *p = (char *)guard + page - n;

	memcpy(p, s, n);
	return p;
}

/* ==== The parsers ===================================================== */

static int
stat_of(const char *s, size_t n, uint64_t *v)
{
	return host_parse_stat(at_guard(s, n), n, v);
}

static void
test_stat(void)
{
	uint64_t v = 77;

	check(stat_of(stat_python, strlen(stat_python), &v) == 0 && v == 26);
	check(stat_of(stat_init, strlen(stat_init), &v) == 0 &&
	    v == 588 + 3239);
	check(stat_of(stat_weird, strlen(stat_weird), &v) == 0 && v == 12);
	check(stat_of(stat_fake, strlen(stat_fake), &v) == 0 && v == 33);

	/* Malformed: -1, and the result untouched. */
	v = 77;
	check(stat_of(STR(""), &v) == -1 && v == 77);
	check(stat_of(STR("garbage"), &v) == -1 && v == 77);
	check(stat_of(STR("1 (a)"), &v) == -1 && v == 77);
	check(stat_of(STR("1 (a) S 1 1 1 0 -1 0 0 0 0 0 1 x 0\n"), &v) == -1);
	check(stat_of(STR("1 (a) S 1 1 1 0 -1 0 0 0 0 0 -1 1 0\n"), &v) == -1);
	check(stat_of(STR("1 (a) S  1 1 0 -1 0 0 0 0 0 1 1 0\n"), &v) == -1);
	check(stat_of(STR("1 (a) S 1 1 1 0 -1 0 0 0 0 0 1 1\n"), &v) == -1);
	/* Numbers: at most 20 digits, no overflow, the sum neither. */
	check(stat_of(STR("1 (a) S 1 1 1 0 -1 0 0 0 0 0 "
	    "18446744073709551615 0 0\n"), &v) == 0 &&
	    v == UINT64_MAX);
	check(stat_of(STR("1 (a) S 1 1 1 0 -1 0 0 0 0 0 "
	    "18446744073709551616 0 0\n"), &v) == -1);
	check(stat_of(STR("1 (a) S 1 1 1 0 -1 0 0 0 0 0 "
	    "18446744073709551615 1 0\n"), &v) == -1);
	check(stat_of(STR("1 (a) S 1 1 1 0 -1 0 0 0 0 0 "
	    "000000000000000000001 0 0\n"), &v) == -1);
	/* A NUL byte is just a byte that is not a digit. */
	check(stat_of(STR("1 (a) S 1 1 1 0 -1 0 0 0 0 0 1\0002 0\n"), &v) ==
	    -1);
}

static void
test_statm(void)
{
	uint64_t v = 77;

	check(host_parse_statm(LIT(statm_python), &v) == 0 &&
	    v == 3388);
	check(host_parse_statm(LIT("1 2 "), &v) == 0 && v == 2);
	v = 77;
	check(host_parse_statm(LIT("1 2"), &v) == -1 && v == 77);
	check(host_parse_statm(LIT("1  2 "), &v) == -1);
	check(host_parse_statm(LIT("-1 2 "), &v) == -1);
	check(host_parse_statm(LIT(" 1 2 "), &v) == -1);
	check(host_parse_statm(LIT("1 x "), &v) == -1);
	check(host_parse_statm(LIT(""), &v) == -1 && v == 77);
}

static void
test_loadavg(void)
{
	double l[3] = { -1, -1, -1 };

	check(host_parse_loadavg(LIT(loadavg_real), l) == 0 &&
	    l[0] == 0.65 && l[1] == 0.33 && l[2] == 0.48);
	check(host_parse_loadavg(LIT(loadavg_busy), l) == 0 &&
	    l[0] == 123.07 && l[1] == 64.5 && l[2] == 8);
	check(host_parse_loadavg(LIT("1 2 3 "), l) == 0 &&
	    l[0] == 1 && l[2] == 3);
	l[0] = -1;
	check(host_parse_loadavg(LIT("0.65 0.33 0.48"), l) == -1 &&
	    l[0] == -1);
	check(host_parse_loadavg(LIT("0.65 0.33 .48 "), l) == -1);
	check(host_parse_loadavg(LIT("0.65 0.33 0. "), l) == -1);
	check(host_parse_loadavg(LIT("0.65 -0.33 0.4 "), l) == -1);
	check(host_parse_loadavg(LIT("0.65 nan 0.4 "), l) == -1);
	check(host_parse_loadavg(LIT("1e3 1 1 "), l) == -1);
	check(host_parse_loadavg(LIT("0.1234567890 1 1 "), l) ==
	    -1);
	check(host_parse_loadavg(LIT(""), l) == -1 && l[0] == -1);
}

static void
test_meminfo(void)
{
	uint64_t t = 77, a = 77;

	check(host_parse_meminfo(LIT(meminfo_real), &t, &a) == 0 &&
	    t == 24684096ull * 1024 && a == 24262668ull * 1024);
	t = a = 77;
	check(host_parse_meminfo(LIT(meminfo_old), &t, &a) == -1 && t == 77 && a == 77);
	/* Either order; the first of a name counts. */
	check(host_parse_meminfo(LIT("MemAvailable: 1 kB\nMemTotal: 2 kB"),
	    &t, &a) == 0 && t == 2048 && a == 1024);
	check(host_parse_meminfo(LIT("MemTotal: 2 kB\nMemTotal: x\n"
	    "MemAvailable: 1 kB\n"), &t, &a) == 0 && t == 2048);
	t = 77;
	check(host_parse_meminfo(LIT("MemTotal: 2 MB\nMemAvailable: 1 kB\n"),
	    &t, &a) == -1 && t == 77);
	check(host_parse_meminfo(LIT("MemTotal: kB\nMemAvailable: 1 kB\n"),
	    &t, &a) == -1);
	check(host_parse_meminfo(LIT("MemTotal:2 kB\nMemAvailable:1 kB\n"),
	    &t, &a) == 0 && t == 2048);
	check(host_parse_meminfo(LIT(" MemTotal: 2 kB\nMemAvailable: 1 kB"
	    "\n"), &t, &a) == -1);
	/* 2^54 kB is 2^64 bytes: one byte too many. */
	check(host_parse_meminfo(LIT("MemTotal: 18014398509481983 kB\n"
	    "MemAvailable: 1 kB\n"), &t, &a) == 0 &&
	    t == UINT64_MAX - 1023);
	check(host_parse_meminfo(LIT("MemTotal: 18014398509481984 kB\n"
	    "MemAvailable: 1 kB\n"), &t, &a) == -1);
	check(host_parse_meminfo(LIT(""), &t, &a) == -1);
	check(host_parse_meminfo(LIT("\n\n\n"), &t, &a) == -1);
}

/*
 * Every fixture cut at every length, ending on the guard page: the cut
 * is refused or gives the whole text's answer.  A read cut inside a
 * number must never pass for a smaller number.
 */
static void
test_cuts(void)
{
	static const char *const stats[] = { stat_python, stat_init,
	    stat_weird, stat_fake };
	int bad = 0;

	for (size_t f = 0; f < sizeof stats / sizeof stats[0]; f++) {
		size_t len = strlen(stats[f]);
		uint64_t whole, v;

		host_parse_stat(stats[f], len, &whole);
		for (size_t n = 0; n <= len; n++)
			if (stat_of(stats[f], n, &v) == 0 && v != whole)
				bad++;
	}
	for (size_t n = 0; n <= strlen(statm_python); n++) {
		uint64_t v;

		if (host_parse_statm(at_guard(statm_python, n), n, &v) == 0 &&
		    v != 3388)
			bad++;
	}
	for (size_t n = 0; n <= strlen(loadavg_busy); n++) {
		double l[3];

		if (host_parse_loadavg(at_guard(loadavg_busy, n), n, l) == 0 &&
		    (l[0] != 123.07 || l[1] != 64.5 || l[2] != 8))
			bad++;
	}
	for (size_t n = 0; n <= strlen(meminfo_real); n++) {
		uint64_t t, a;

		if (host_parse_meminfo(at_guard(meminfo_real, n), n, &t,
		    &a) == 0 && (t != 24684096ull * 1024 ||
		    a != 24262668ull * 1024))
			bad++;
	}
	check(bad == 0);
	/* And the shortest cut that still holds everything is taken. */
	{
		uint64_t t, a;
		size_t n = strstr(meminfo_real, "Buffers") - meminfo_real - 1;

		check(host_parse_meminfo(at_guard(meminfo_real, n), n, &t,
		    &a) == 0);
		check(host_parse_meminfo(at_guard(meminfo_real, n - 1), n - 1,
		    &t, &a) == -1);
	}
}

/* Every byte value at every position of a short stat: never a crash. */
static void
test_noise(void)
{
	char s[64];
	size_t len = strlen(statm_python);
	uint64_t v;
	double l[3];

	for (size_t i = 0; i < len; i++)
		for (int c = 0; c < 256; c++) {
			memcpy(s, statm_python, len);
			s[i] = (char)c;
			host_parse_statm(at_guard(s, len), len, &v);
			host_parse_stat(at_guard(s, len), len, &v);
			host_parse_loadavg(at_guard(s, len), len, l);
			host_parse_meminfo(at_guard(s, len), len, &v, &v);
		}
	check(1);
}

/* ==== The alert rule ================================================== */

static void
test_rule(void)
{
	/* Upper: over 20 raises; back at 18 (a tenth down) clears. */
	check(host_alert_step(0, 0, 20, 20) == HOST_KEEP);
	check(host_alert_step(0, 0, 21, 20) == HOST_RAISE);
	check(host_alert_step(1, 0, 21, 20) == HOST_KEEP);
	check(host_alert_step(1, 0, 19, 20) == HOST_KEEP);
	check(host_alert_step(1, 0, 18.5, 20) == HOST_KEEP);
	check(host_alert_step(1, 0, 18, 20) == HOST_CLEAR);
	check(host_alert_step(0, 0, 18, 20) == HOST_KEEP);
	check(host_clear_level(0, 90) == 81);

	/* Lower (free %): under 10 raises, 11 clears. */
	check(host_alert_step(0, 1, 10, 10) == HOST_KEEP);
	check(host_alert_step(0, 1, 9.9, 10) == HOST_RAISE);
	check(host_alert_step(1, 1, 10.5, 10) == HOST_KEEP);
	check(host_alert_step(1, 1, 11, 10) == HOST_CLEAR);
	check(fabs(host_clear_level(1, 10) - 11) < 1e-9);
	/* Near 100 the band is at most halfway to 100: 95 clears at 97.5. */
	check(host_clear_level(1, 95) == 97.5);
	check(host_alert_step(1, 1, 97.4, 95) == HOST_KEEP);
	check(host_alert_step(1, 1, 97.5, 95) == HOST_CLEAR);
	check(host_clear_level(1, 100) == 100);

	/* Off: clears a raised alert, raises none. */
	check(host_alert_step(1, 0, 1000, 0) == HOST_CLEAR);
	check(host_alert_step(0, 0, 1000, 0) == HOST_KEEP);
	check(host_alert_step(1, 1, 0, 0) == HOST_CLEAR);
	/* An unread figure changes nothing. */
	check(host_alert_step(0, 0, NAN, 20) == HOST_KEEP);
	check(host_alert_step(1, 0, NAN, 20) == HOST_KEEP);
	check(host_alert_step(0, 1, NAN, 20) == HOST_KEEP);
	check(host_alert_step(1, 1, NAN, 20) == HOST_KEEP);
	check(host_alert_step(1, 0, NAN, 0) == HOST_CLEAR);
}

int
main(void)
{
	guard_init();
	test_stat();
	test_statm();
	test_loadavg();
	test_meminfo();
	test_cuts();
	test_noise();
	test_rule();
	return t_done();
}
