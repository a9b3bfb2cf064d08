/*
 * test_channel.c - the wire of a group's Redis channel (cluster.c's pure
 * parsers): the channel's name back to its group, and a message
 * "EPOCH:SEQ:ENVELOPE" into its parts.  Each limit at N and N+1, every
 * truncation of a good message refused, the envelope taken byte for byte
 * (colons in it included).  Linked with the daemon's layers, since
 * cluster.c sits among them; nothing is started.
 */
#include <stdio.h>
#include <string.h>

#include "cluster.h"
#include "hub.h"
#include "t.h"

static long
parse(const char *s, char epoch[9], uint64_t *seq)
{
	return cluster_parse_event((const uint8_t *)s, strlen(s), epoch, seq);
}

static void
channels(void)
{
	char ch[128], g[HUB_GROUP_MAX + 2];
	const char *name = NULL;
	size_t n;

	n = cluster_channel_group((const uint8_t *)"wsd:{chat:1}", 12, &name);
	check(n == 6 && memcmp(name, "chat:1", 6) == 0);
	n = cluster_channel_group((const uint8_t *)"wsd:{*}", 7, &name);
	check(n == 1 && name[0] == '*');
	check(cluster_channel_group((const uint8_t *)"wsd:{}", 6, &name) == 0);
	check(cluster_channel_group((const uint8_t *)"wsd:{a", 6, &name) == 0);
	check(cluster_channel_group((const uint8_t *)"wsd:(a}", 7, &name) ==
	    0);
	check(cluster_channel_group((const uint8_t *)"other", 5, &name) == 0);
	/* A group name of 64 bytes, then 65. */
	memset(g, 'g', sizeof g);
	snprintf(ch, sizeof ch, "wsd:{%.*s}", HUB_GROUP_MAX, g);
	check(cluster_channel_group((const uint8_t *)ch, strlen(ch), &name) ==
	    HUB_GROUP_MAX);
	snprintf(ch, sizeof ch, "wsd:{%.*s}", HUB_GROUP_MAX + 1, g);
	check(cluster_channel_group((const uint8_t *)ch, strlen(ch), &name) ==
	    0);
}

static void
messages(void)
{
	static const char good[] = "5f1c0a2e:42:{\"type\":\"a:b\",\"seq\":42}";
	char epoch[9], buf[128];
	uint64_t seq;
	long off;

	off = parse(good, epoch, &seq);
	check(off == 12 && strcmp(epoch, "5f1c0a2e") == 0 && seq == 42);
	check(strcmp(good + off, "{\"type\":\"a:b\",\"seq\":42}") == 0);
	/* An empty envelope is the hub's to judge, not the wire's. */
	check(parse("abc:1:", epoch, &seq) == 6 && seq == 1 &&
	    strcmp(epoch, "abc") == 0);
	/* Every truncation before the envelope is refused. */
	for (size_t n = 0; n < 12; n++)
		check(cluster_parse_event((const uint8_t *)good, n, epoch,
		    &seq) == -1);
	check(cluster_parse_event((const uint8_t *)good, 12, epoch, &seq) ==
	    12);
	/* Epoch: 8 bytes pass, 9 do not, none do not. */
	check(parse("123456789:1:x", epoch, &seq) == -1);
	check(parse(":1:x", epoch, &seq) == -1);
	/* Seq: 19 digits pass, 20 do not; 0, a sign, none refused. */
	check(parse("e:9999999999999999999:x", epoch, &seq) == 22 &&
	    seq == 9999999999999999999ull);
	check(parse("e:18446744073709551615:x", epoch, &seq) == -1);
	check(parse("e:0:x", epoch, &seq) == -1);
	check(parse("e:-1:x", epoch, &seq) == -1);
	check(parse("e::x", epoch, &seq) == -1);
	check(parse("e:12x:y", epoch, &seq) == -1);
	check(parse("e:12", epoch, &seq) == -1);
	/* Binary bytes in the envelope are passed as they are. */
	memcpy(buf, "e:7:\0\xff:", 7);
	check(cluster_parse_event((const uint8_t *)buf, 7, epoch, &seq) == 4 &&
	    seq == 7);
}

int
main(void)
{
	channels();
	messages();
	return t_done();
}
