# assetd: build, test, sanitize, install. Every library comes through pkg-config.
VERSION    := 0.1.0
PREFIX     ?= /usr/local
DESTDIR    ?=
PKG_CONFIG ?= pkg-config
CC         ?= cc
PKGS       := lua5.4 lua5.4-cjson libuv libcurl openssl sqlite3 libmicrohttpd libedit libpq
# sd_notify for systemd's Type=notify when Debian's libsystemd-dev is there (else a no-op)
ifeq ($(shell $(PKG_CONFIG) --exists libsystemd && echo yes),yes)
PKGS       += libsystemd
SYSTEMD    := -DASSETD_SYSTEMD
endif

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wformat=2 -Wundef -Wno-unused-parameter
OPT     ?= -O2 -g
CFLAGS  ?=
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -MMD -MP \
           -DASSETD_VERSION='"$(VERSION)"' $(SYSTEMD) \
           $(shell $(PKG_CONFIG) --cflags $(PKGS))
LDLIBS  += $(shell $(PKG_CONFIG) --libs $(PKGS)) -lm
BUILD   ?= build

CORE    := runtime log clock partfile curluv admit fetch fetch_easy fetch_body fetch_result fetch_upload ratecap formats store jobdb httphdr deadline path httpd lineio repl attach bytebuf digest sha256 filehash datadir sdnotify luamods luamods_data pgconn
BINDS   := lbind linit l_assetd l_timer l_task l_log l_fetch l_jobdb l_store l_httpd l_crypto l_repl l_deadline l_filehash l_pg
OBJS    := $(patsubst %,$(BUILD)/%.o,$(CORE) $(BINDS) main)
# Every tests/unit/test_NAME.c is a unit test; each links the core archive, from which the
# linker takes only the objects the test reaches, so no test lists what it links.
UNITS   := $(patsubst tests/unit/test_%.c,%,$(wildcard tests/unit/test_*.c))
CORELIB := $(BUILD)/libassetd-core.a

ifeq ($(V),)
Q = @
QCC = @echo "  CC    $<";
endif

.PHONY: all test unit lint spec sanitize install uninstall clean run bench fuzz fuzz-build
all: assetd

assetd: $(OBJS)
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

# The Lua tree built into the binary (scripts/embed-lua; src/luamods.c loads it)
LUA_FILES := $(shell cd lua && find . \( -name '*.lua' -o -name '*.html' \) | sed 's|^\./||' | LC_ALL=C sort)
src/luamods_data.c: scripts/embed-lua $(addprefix lua/,$(LUA_FILES))
	$(Q)scripts/embed-lua $@ lua $(LUA_FILES)

$(BUILD)/%.o: src/%.c | $(BUILD)
	$(QCC)$(CC) $(CFLAGS) -c -o $@ $<

# The C core without main and the Lua bindings; rebuilt whole so no removed object lingers.
$(CORELIB): $(patsubst %,$(BUILD)/%.o,$(CORE))
	$(Q)rm -f $@; $(AR) rcs $@ $^

$(BUILD)/test_%: tests/unit/test_%.c $(CORELIB) | $(BUILD)
	$(Q)$(CC) $(CFLAGS) -Isrc -o $@ $^ $(LDFLAGS) $(shell $(PKG_CONFIG) --libs cmocka) $(LDLIBS)

$(BUILD):
	@mkdir -p $(BUILD)

unit: $(patsubst %,$(BUILD)/test_%,$(UNITS))

test: assetd unit lint
	@tests/run $(BUILD)

# Debian's lua-check over lua/ (.luacheckrc): globals, shadowing, unused values
lint:
	@luacheck --no-color -q lua/

sanitize:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" assetd-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ASSETD_BIN=./assetd-asan tests/run build-asan

assetd-asan: $(OBJS) unit
	$(Q)$(CC) $(CFLAGS) -o $@ $(OBJS) $(LDFLAGS) $(LDLIBS)

# The binary (its Lua modules are built in), the man page, the systemd unit (its ExecStart naming this PREFIX) and the examples.
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR  ?= $(PREFIX)/share/doc/assetd
install: assetd
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)/examples
	install -m 0755 assetd $(DESTDIR)$(PREFIX)/bin/assetd
	install -m 0644 docs/assetd.1 $(DESTDIR)$(PREFIX)/share/man/man1/assetd.1
	sed 's|/usr/local/bin/assetd|$(PREFIX)/bin/assetd|' contrib/assetd.service > $(DESTDIR)$(UNITDIR)/assetd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/assetd.service
	install -m 0644 examples/*.lua $(DESTDIR)$(DOCDIR)/examples/

# Everything install put there, and the directories it made that are left empty.
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/assetd $(DESTDIR)$(PREFIX)/share/man/man1/assetd.1 \
	    $(DESTDIR)$(UNITDIR)/assetd.service
	rm -rf $(DESTDIR)$(DOCDIR)
	for d in $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(dir $(DOCDIR)); do rmdir -p $$d 2>/dev/null || true; done

run: assetd
	@scripts/run-demo

bench: assetd
	@bench/run

clean:
	rm -rf build build-asan build-fuzz assetd assetd-asan src/luamods_data.c

# ---- fuzzing: clang's libFuzzer, one target per parser of outside bytes ---------------------
# Every tests/fuzz/fuzz_NAME.c becomes build-fuzz/fuzz_NAME, linked with the shared harness
# and the objects FUZZ_DEPS_NAME names (src/ or tests/fuzz/lib/ base names), all built with
# clang into build-fuzz/ with coverage and ASan/UBSan. A new target is its .c file plus, when
# it needs more than the harness, one FUZZ_DEPS_ line. tests/fuzz/README.md says more.
FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_SECONDS ?= 30
# clang's -Wformat=2 also flags a va_list handed on by a callback whose prototype is a
# library's (httpd.c's MHD logger), which cannot carry a format attribute; gcc does not.
FUZZ_WARN    := $(WARN) -Wno-format-nonliteral
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -O1 -g $(FUZZ_WARN) -MMD -MP -Isrc -Itests/fuzz/lib \
                -DASSETD_VERSION='"$(VERSION)"' -DASSETD_LUADIR='"$(CURDIR)/lua"' \
                -DFUZZ_DIR='"$(CURDIR)/tests/fuzz"' $(shell $(PKG_CONFIG) --cflags $(PKGS))
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
# Lua targets run the project's own runtime: every object but main, and the Lua harness.
FUZZ_LUA     := lua_harness $(CORE) $(BINDS)

FUZZ_DEPS_httphdr := httphdr bytebuf
FUZZ_DEPS_path    := path store
FUZZ_DEPS_formats := formats
FUZZ_DEPS_range   := $(FUZZ_LUA)
FUZZ_DEPS_webhook := $(FUZZ_LUA)
FUZZ_DEPS_request := $(FUZZ_LUA)

fuzz-build: $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_NAMES))

# Each target for FUZZ_SECONDS from its seeds; a crash, a leak or a failed property fails it.
fuzz: fuzz-build
	@for t in $(FUZZ_NAMES); do tests/fuzz/run "$$t" $(FUZZ_SECONDS) || exit 1; done

$(FUZZ_BUILD)/%.o: src/%.c | $(FUZZ_BUILD)
	$(QCC)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/%.o: tests/fuzz/lib/%.c | $(FUZZ_BUILD)
	$(QCC)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%.o: tests/fuzz/fuzz_%.c | $(FUZZ_BUILD)
	$(QCC)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c -o $@ $<

.PRECIOUS: $(FUZZ_BUILD)/%.o
.SECONDARY: $(patsubst %,$(FUZZ_BUILD)/fuzz_%.o,$(FUZZ_NAMES))
.SECONDEXPANSION:
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/fuzz_%.o $(FUZZ_BUILD)/harness.o \
                      $$(addprefix $(FUZZ_BUILD)/,$$(addsuffix .o,$$(FUZZ_DEPS_$$*)))
	$(Q)echo "  LD    $@"; $(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

$(FUZZ_BUILD):
	@mkdir -p $(FUZZ_BUILD)

-include $(wildcard $(BUILD)/*.d)
-include $(wildcard $(FUZZ_BUILD)/*.d)
