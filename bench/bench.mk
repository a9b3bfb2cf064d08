# bench.mk - the benchmark, included from the top Makefile.
#
#   make bench         every scenario, every server, three runs: table of medians
#   make bench-quick   one run of small scenarios (under two minutes)
#   make bench-scale   the cost of state: eviction, replay and the session
#                      tick at 1,000 / 10,000 / 100,000 (about a minute)
#
# The optional peers' recipes never fail: without libwebsockets-dev, node
# or the npm registry their file is not made, a note is printed, and
# bench/run skips that column.

BENCH_CC = $(CC) -O2 -Wall -Wextra -D_GNU_SOURCE
BENCH_BINS = $(B)/wsbench $(B)/ceiling $(B)/lws-peer bench/node_modules/ws

$(B)/wsbench: bench/wsbench.c | $(B)
	$(BENCH_CC) -o $@ bench/wsbench.c -lssl -lcrypto

$(B)/ceiling: bench/peers/ceiling.c | $(B)
	$(BENCH_CC) -o $@ bench/peers/ceiling.c -lcrypto

$(B)/lws-peer: bench/peers/lws.c | $(B)
	$(BENCH_CC) -o $@ bench/peers/lws.c -lwebsockets || \
	    echo "bench: lws-peer not built (apt-get install libwebsockets-dev)"

bench/node_modules/ws: bench/package.json
	npm install --prefix bench --no-audit --no-fund --loglevel=error || \
	    echo "bench: node-ws peer not available (npm install failed)"

bench: wsd $(BENCH_BINS)
	bench/run --build $(B)

bench-quick: wsd $(BENCH_BINS)
	bench/run --quick --build $(B)

bench-scale: wsd
	mkdir -p $(B)/bench
	bench/scale.py --wsd $(B)/wsd --out $(B)/bench/scale.txt

.PHONY: bench bench-quick bench-scale
