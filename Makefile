# wsd - build, test, sanitize.
#
#   make            ./wsd
#   make test       every test, last line "N passed, M failed"
#   make san        the same suite against an ASan+UBSan build
#   make fuzz       each libFuzzer target for FUZZ_SECONDS
#   make bench      the benchmark table (see bench/README)

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CPPFLAGS = -D_GNU_SOURCE
LDLIBS   = -lssl -lcrypto -lm
B       ?= build

# Every layer but main.o is also linked into the unit tests.
LIB   = ws log json hub http session_events dashboard auth tls
OBJS  = $(LIB:%=$(B)/%.o)
TESTS = $(patsubst test/%.c,$(B)/%,$(wildcard test/test_*.c))

all: wsd

# A rename, not a copy: it works while an old ./wsd is still running.
wsd: $(B)/wsd
	@[ "$(B)" = build ] && cp $(B)/wsd wsd.new && mv -f wsd.new wsd || true

$(B)/wsd: $(B)/main.o $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/%.o: %.c $(wildcard *.h) | $(B)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

# The dashboard page is kept readable as dashboard.html and embedded here.
$(B)/dashboard.c: dashboard.html | $(B)
	{ echo '#include <stddef.h>'; \
	  echo 'const unsigned char dashboard_html[] = {'; \
	  od -An -v -tx1 dashboard.html | sed 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; \
	  echo 'const size_t dashboard_html_len = sizeof dashboard_html;'; } > $@

$(B)/dashboard.o: $(B)/dashboard.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/test_%: test/test_%.c test/t.h $(OBJS)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -I. -o $@ $< $(OBJS) $(LDLIBS)

$(B):
	mkdir -p $(B)

test: wsd $(TESTS)
	WSD=$(CURDIR)/$(B)/wsd TBIN=$(B) test/run

SAN = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
san:
	$(MAKE) B=build/san CFLAGS="$(SAN)" LDFLAGS="$(SAN)" build/san/wsd \
	    $(patsubst $(B)/%,build/san/%,$(TESTS))
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1 \
	WSD=$(CURDIR)/build/san/wsd TBIN=build/san WSD_SAN=1 test/run

# libFuzzer targets: each runs FUZZ_SECONDS on a copy of its seed corpus
# (test/corpus/NAME), so new inputs do not pile up in the tree.
FUZZ_SECONDS ?= 60
FUZZ = http frame json token
FUZZFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined $(CPPFLAGS) -I.
fuzz:
	mkdir -p build/fuzz
	clang $(FUZZFLAGS) -o build/fuzz/http test/fuzz_http.c ws.c log.c tls.c $(LDLIBS)
	clang $(FUZZFLAGS) -o build/fuzz/frame test/fuzz_frame.c ws.c log.c tls.c $(LDLIBS)
	clang $(FUZZFLAGS) -o build/fuzz/json test/fuzz_json.c json.c
	clang $(FUZZFLAGS) -o build/fuzz/token test/fuzz_token.c auth.c json.c $(LDLIBS)
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
include bench/bench.mk
