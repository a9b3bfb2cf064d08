# wsd - build, test, sanitize.
#
#   make            ./wsd (wsd.new then a rename: safe while ./wsd runs)
#   make test       every test, last line "N passed, M failed"
#   make san        the suite against an ASan+UBSan build (the Chromium-bound
#                   suites run in make test only)
#   make fuzz       each libFuzzer target for FUZZ_SECONDS
#   make sim        the whole daemon on a simulated kernel, SEEDS seeds
#   make bench      the benchmark table (see bench/README)

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CPPFLAGS = -D_GNU_SOURCE
LDLIBS   = -lssl -lcrypto -lm
B       ?= build

# The layers, lowest first; main.o wires them.
LIB   = frame http_parse sse notify loop ws log json auth tls resp redis \
	cluster hub cluster_sessions proto routes \
	api host_parse host session_events embed cli
OBJS  = $(LIB:%=$(B)/%.o)
TESTS = $(patsubst test/%.c,$(B)/%,$(wildcard test/test_*.c))

all: wsd

# A copy then a rename, not a copy in place: it works while an old ./wsd
# is still running.  Only the default build dir makes ./wsd.
wsd: $(B)/wsd
	@if [ "$(B)" = build ]; then cp $(B)/wsd wsd.new && mv -f wsd.new wsd; fi

$(B)/wsd: $(B)/main.o $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/%.o: %.c $(wildcard *.h) | $(B)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

# The dashboard page and the client module are kept readable as files and
# embedded here: NAME.EXT becomes the array NAME_EXT and its NAME_EXT_len.
EMBED = dashboard.html wsd.js
$(B)/embed.c: $(EMBED) | $(B)
	{ echo '#include <stddef.h>'; \
	  for f in $(EMBED); do v=$$(echo $$f | tr . _); \
	    echo "const unsigned char $$v[] = {"; \
	    od -An -v -tx1 $$f | sed 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	    echo '};'; \
	    echo "const size_t $${v}_len = sizeof $$v;"; \
	  done; } > $@

$(B)/embed.o: $(B)/embed.c
	$(CC) $(CFLAGS) -c -o $@ $<

# Each unit test links only the layers it tests: the pure codecs alone.
# test_sessions drives the registry, which publishes through the hub.
$(B)/test_ws: $(B)/frame.o $(B)/http_parse.o
$(B)/test_sse: $(B)/sse.o
$(B)/test_json: $(B)/json.o
$(B)/test_auth: $(B)/auth.o $(B)/json.o test/tjwt.h
$(B)/test_sessions: $(OBJS)
$(B)/test_host: $(B)/host_parse.o
$(B)/test_notify: $(B)/notify.o
# The Redis layers: the codec alone; the client over the reactor, against
# a redis-server the test starts.
$(B)/test_resp: $(B)/resp.o
$(B)/test_redis: $(B)/redis.o $(B)/resp.o $(B)/loop.o $(B)/log.o $(B)/tls.o
# The channel's wire: cluster.c's pure parsers, which live among the layers.
$(B)/test_channel: $(OBJS)
$(B)/test_%: test/test_%.c test/t.h
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -I. -o $@ $< $(filter %.o,$^) \
	    $(LDLIBS)

$(B):
	mkdir -p $(B)

# test/deps.sh installs what the tests need on a fresh Debian 12 (as root),
# or says the one command to run; with everything there it is silent.
test: wsd $(TESTS)
	test/deps.sh
	WSD=$(CURDIR)/$(B)/wsd TBIN=$(B) test/run

SAN = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
san:
	test/deps.sh
	$(MAKE) B=build/san CFLAGS="$(SAN)" LDFLAGS="$(SAN)" build/san/wsd \
	    $(patsubst $(B)/%,build/san/%,$(TESTS))
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1 \
	WSD=$(CURDIR)/build/san/wsd TBIN=build/san WSD_SAN=1 NO_CHROMIUM=1 test/run

# libFuzzer targets: each runs FUZZ_SECONDS on a copy of its seed corpus
# (test/corpus/NAME), so new inputs do not pile up in the tree.
FUZZ_SECONDS ?= 60
FUZZ = http frame json token conn resp
FUZZFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined $(CPPFLAGS) -I.
fuzz:
	mkdir -p build/fuzz
	clang $(FUZZFLAGS) -o build/fuzz/http test/fuzz_http.c http_parse.c
	clang $(FUZZFLAGS) -o build/fuzz/frame test/fuzz_frame.c frame.c $(LDLIBS)
	clang $(FUZZFLAGS) -o build/fuzz/json test/fuzz_json.c json.c
	clang $(FUZZFLAGS) -o build/fuzz/token test/fuzz_token.c auth.c json.c $(LDLIBS)
	clang $(FUZZFLAGS) -o build/fuzz/resp test/fuzz_resp.c resp.c
	$(MAKE) -s B=build/fuzz build/fuzz/embed.c
	clang $(FUZZFLAGS) $(SIMLDFLAGS) -o build/fuzz/conn test/fuzz_conn.c \
	    test/simkern.c $(patsubst %,%.c,$(filter-out embed,$(LIB))) \
	    build/fuzz/embed.c -lpthread $(LDLIBS)
	for t in $(FUZZ); do \
		rm -rf build/fuzz/corpus-$$t && cp -r test/corpus/$$t build/fuzz/corpus-$$t && \
		build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 \
		    build/fuzz/corpus-$$t test/corpus/$$t >build/fuzz/$$t.log 2>&1 || \
		{ tail -40 build/fuzz/$$t.log; echo "fuzz $$t: FAILED"; exit 1; }; \
		echo "fuzz $$t: $$(grep -c . build/fuzz/$$t.log) log lines, no crash"; \
	done

clean:
	rm -rf build wsd

.PHONY: all wsd test san fuzz clean
-include bench/bench.mk

# The whole daemon on a simulated kernel (test/sim.c, test/simkern.c):
# the calls in SIMWRAP are linked to __wrap_NAME, so no real socket is
# opened and a seed replays exactly.  SEEDS seeds under ASan+UBSan, two at
# a time; SEED=S runs that one seed.  A failing seed prints its repro.
SEEDS ?= 50
SIMWRAP = socket bind listen accept accept4 getsockname setsockopt \
	shutdown read write writev close open epoll_create1 epoll_ctl \
	epoll_wait timerfd_create timerfd_settime signalfd sigprocmask \
	clock_gettime time getrandom getaddrinfo freeaddrinfo
SIMLDFLAGS = $(SIMWRAP:%=-Wl,--wrap=%)
$(B)/sim: test/sim.c test/simkern.c test/sim.h $(OBJS)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -I. $(LDFLAGS) $(SIMLDFLAGS) \
	    -o $@ test/sim.c test/simkern.c $(OBJS) $(LDLIBS)
sim:
	$(MAKE) -s B=build/sim CFLAGS="$(SAN)" LDFLAGS="$(SAN)" build/sim/sim
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1 \
	    build/sim/sim $(SIMFLAGS) $(if $(SEED),--seed $(SEED),--seeds $(SEEDS))
.PHONY: sim

# ==== Packaging: install, uninstall, the notify unit test ==============
# make install [PREFIX=/usr/local] [DESTDIR=]: the binary, the man page and
# the systemd unit, its ExecStart pointed at the installed binary.
PREFIX  ?= /usr/local
BINDIR   = $(PREFIX)/bin
MAN8DIR  = $(PREFIX)/share/man/man8
UNITDIR  = $(PREFIX)/lib/systemd/system
install: $(B)/wsd wsd.8 wsd.service
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MAN8DIR) $(DESTDIR)$(UNITDIR)
	install -m 755 $(B)/wsd $(DESTDIR)$(BINDIR)/wsd
	install -m 644 wsd.8 $(DESTDIR)$(MAN8DIR)/wsd.8
	sed 's|^ExecStart=/usr/local/bin/wsd|ExecStart=$(BINDIR)/wsd|' \
	    wsd.service >$(DESTDIR)$(UNITDIR)/wsd.service.new
	chmod 644 $(DESTDIR)$(UNITDIR)/wsd.service.new
	mv -f $(DESTDIR)$(UNITDIR)/wsd.service.new $(DESTDIR)$(UNITDIR)/wsd.service
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/wsd $(DESTDIR)$(MAN8DIR)/wsd.8 \
	    $(DESTDIR)$(UNITDIR)/wsd.service
.PHONY: install uninstall

# ==== Static binary: make static, for FROM scratch (Containerfile) =====
# build/static/wsd: the same objects linked with -static against Debian's
# libssl.a and libcrypto.a; no shared library needed at run time.  glibc
# warns at link time that getaddrinfo() (and, in libcrypto, dlopen and
# gethostbyname, which wsd never reaches) need its shared NSS modules at
# run time: in an empty root, with neither those nor /etc/hosts, only
# numeric addresses resolve, so --listen and --url take 0.0.0.0:8000 or
# 127.0.0.1:8000, not names (a name is refused: exit 2 for --listen, 1 for
# --url).  test/static-root.sh runs it in an empty chroot.
static:
	$(MAKE) B=build/static LDFLAGS="-static" build/static/wsd
.PHONY: static
