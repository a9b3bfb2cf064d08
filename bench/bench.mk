# bench.mk - the benchmark, included from the top Makefile.
#
#   make bench         every scenario, every server, three runs: table of medians
#   make bench-quick   one run of small scenarios (under two minutes)
#   make bench-scale   the cost of state: eviction, replay and the session
#                      tick at 1,000 / 10,000 / 100,000 (about a minute)
#
# The optional peers' recipes never fail: without libwebsockets-dev, node,
# the npm registry, g++ or zlib1g-dev their file is not made, a note is
# printed, and bench/run skips that column.

BENCH_CC = $(CC) -O2 -Wall -Wextra -D_GNU_SOURCE
BENCH_BINS = $(B)/wsbench $(B)/ceiling $(B)/lws-peer bench/node_modules/ws \
	$(B)/uws-native

# uWebSockets 0.14 (C++), built from the sources in the npm package sc-uws
# 10.148.2 (bench/node_modules/sc-uws/src, third-party, never in the tree):
# uWS' Hub, Group and WebSocket and uS' epoll backend.  addon.cpp, the
# Node.js binding, is left out.  Their warnings are theirs; our own file
# is built with -Wall -Wextra and their headers as system headers.
UWS_SRC  = bench/node_modules/sc-uws/src
UWS_LIB  = Epoll Extensions Group HTTPSocket Hub Networking Node Socket \
	WebSocket
UWS_CXX  = $(CXX) -O2 -std=c++11

$(B)/wsbench: bench/wsbench.c | $(B)
	$(BENCH_CC) -o $@ bench/wsbench.c -lssl -lcrypto

$(B)/ceiling: bench/peers/ceiling.c | $(B)
	$(BENCH_CC) -o $@ bench/peers/ceiling.c -lcrypto

$(B)/lws-peer: bench/peers/lws.c | $(B)
	$(BENCH_CC) -o $@ bench/peers/lws.c -lwebsockets || \
	    echo "bench: lws-peer not built (apt-get install libwebsockets-dev)"

$(B)/uws-native: bench/peers/uws-native.cpp bench/node_modules/ws | $(B)
	if [ ! -f $(UWS_SRC)/Hub.cpp ]; then \
	    echo "bench: uws-native not built (npm package sc-uws missing)"; \
	else \
	    $(UWS_CXX) -Wall -Wextra -isystem $(UWS_SRC) -c -o $@.o \
		bench/peers/uws-native.cpp && \
	    $(UWS_CXX) -o $@ $@.o $(UWS_LIB:%=$(UWS_SRC)/%.cpp) \
		-lssl -lcrypto -lz -lpthread || \
	    echo "bench: uws-native not built (apt-get install g++ zlib1g-dev)"; \
	    rm -f $@.o; \
	fi

# --ignore-scripts: sc-uws' install script would try node-gyp (and the
# network for Node's headers) for a Node addon the bench does not use.
bench/node_modules/ws: bench/package.json
	npm install --prefix bench --ignore-scripts --no-audit --no-fund \
	    --loglevel=error && touch $@ || \
	    echo "bench: npm peers not available (npm install failed)"

bench: wsd $(BENCH_BINS)
	bench/run --build $(B)

bench-quick: wsd $(BENCH_BINS)
	bench/run --quick --build $(B)

bench-scale: wsd
	mkdir -p $(B)/bench
	bench/scale.py --wsd $(B)/wsd --out $(B)/bench/scale.txt

.PHONY: bench bench-quick bench-scale
