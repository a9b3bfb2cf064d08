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

wsd: $(B)/wsd
	@[ "$(B)" = build ] && cp $(B)/wsd wsd || true

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

clean:
	rm -rf build wsd

.PHONY: all wsd test san clean
