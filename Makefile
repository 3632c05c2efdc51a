# Build and install fcgi-bridge.
#
#   make                 build fcgi-bridge and fcgi-request into build/ (BUILDDIR)
#   make install         install them, the systemd units, the example configuration
#                        and the documentation (as root, or with DESTDIR for a package)
#
# Where things go (each can be set on the command line: make install PREFIX=/usr):
#   $(BINDIR)/fcgi-bridge, fcgi-request              /usr/local/bin
#   $(UNITDIR)/fcgi-bridge.service, .socket          /usr/local/lib/systemd/system
#   $(SYSCONFDIR)/fcgi-bridge/fcgi-bridge.toml       /etc (kept when it exists)
#   $(DOCDIR)/deploy.md, ..., examples/              /usr/local/share/doc/fcgi-bridge
#   $(MANDIR)/man8/fcgi-bridge.8                     /usr/local/share/man
# The units are installed with these paths in their ExecStart= and Documentation=.

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
DOCDIR     ?= $(PREFIX)/share/doc/fcgi-bridge
MANDIR     ?= $(PREFIX)/share/man
BUILDDIR   ?= build
GO         ?= go
INSTALL    ?= install
# --version names the tag or commit the binaries were built from.
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS    ?= -X main.version=$(VERSION)

EXAMPLES = examples/nginx.conf apache-example.conf examples/lighttpd.conf \
           examples/haproxy.cfg examples/Caddyfile examples/fcgi-bridge.toml \
           examples/fcgi-bridge.service examples/fcgi-bridge.socket

# The units name the paths of a default install; installed elsewhere, they say where.
UNIT_PATHS = -e 's|/usr/local/bin/|$(BINDIR)/|g' \
             -e 's|/usr/local/share/doc/fcgi-bridge/|$(DOCDIR)/|g' \
             -e 's|/etc/fcgi-bridge/|$(SYSCONFDIR)/fcgi-bridge/|g'

.PHONY: all build install clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BUILDDIR)/fcgi-bridge ./cmd/fcgi-bridge
	$(GO) build -trimpath -o $(BUILDDIR)/fcgi-request ./cmd/fcgi-request

install: build
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/fcgi-bridge \
		$(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 0755 $(BUILDDIR)/fcgi-bridge $(BUILDDIR)/fcgi-request $(DESTDIR)$(BINDIR)/
	for u in fcgi-bridge.service fcgi-bridge.socket; do \
		sed $(UNIT_PATHS) examples/$$u > $(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	test -e $(DESTDIR)$(SYSCONFDIR)/fcgi-bridge/fcgi-bridge.toml || \
		$(INSTALL) -m 0644 examples/fcgi-bridge.toml $(DESTDIR)$(SYSCONFDIR)/fcgi-bridge/fcgi-bridge.toml
	$(INSTALL) -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 0644 $(EXAMPLES) $(DESTDIR)$(DOCDIR)/examples/
	$(INSTALL) -m 0644 docs/fcgi-bridge.8 $(DESTDIR)$(MANDIR)/man8/

clean:
	rm -rf $(BUILDDIR)
