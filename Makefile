# cblocks: build, install and test the one static binary.
#
#   make                  static, stripped binary for x86_64-unknown-linux-musl
#   make install          binary, links, man pages, rc scripts and units
#   make test             every test (run as root; see README.md)
#   make quickstart       the main job: daemon, forge, examples, a container
#   make quickstart-clean stop and remove what the quickstart started

PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
RCDIR      ?= $(PREFIX)/etc/rc.d
UNITDIR    ?= $(PREFIX)/lib/systemd/system

CARGO      ?= cargo
TARGET     ?= x86_64-unknown-linux-musl
BINARY     := target/$(TARGET)/release/cblock

.PHONY: all build static-deps install test lint clean forge quickstart quickstart-clean

all: build

build: static-deps
	$(CARGO) build --release --locked --target $(TARGET)
	@echo "built $(BINARY)"

# The musl target and musl-gcc (for the C parts of the compression crates)
# are installed when missing.
static-deps:
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)
	@command -v musl-gcc >/dev/null || { apt-get update -qq && apt-get install -y -qq musl-tools; }

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR)
	install -m 0755 $(BINARY) $(DESTDIR)$(BINDIR)/cblock
	ln -sf $(BINDIR)/cblock $(DESTDIR)$(SBINDIR)/cblockd
	ln -sf $(BINDIR)/cblock $(DESTDIR)$(SBINDIR)/warden
	ln -sf $(BINDIR)/cblock $(DESTDIR)$(BINDIR)/cblock-runtime
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 man/cblock.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 man/cblockfile.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 man/cblockd.8 man/warden.8 $(DESTDIR)$(MANDIR)/man8/
	install -d $(DESTDIR)$(RCDIR) $(DESTDIR)$(UNITDIR)
	install -m 0555 rc.d/cblockd rc.d/warden $(DESTDIR)$(RCDIR)/
	install -m 0644 rc.d/cblockd.service rc.d/warden.service $(DESTDIR)$(UNITDIR)/

test:
	$(CARGO) test --locked

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) check --locked --target x86_64-unknown-freebsd

forge:
	$(BINDIR)/cblock forge

quickstart:
	PREFIX=$(PREFIX) sh scripts/quickstart.sh

quickstart-clean:
	PREFIX=$(PREFIX) sh scripts/quickstart.sh clean

clean:
	$(CARGO) clean
