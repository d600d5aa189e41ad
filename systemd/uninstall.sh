#!/bin/sh
# Reverse systemd/install.sh (run as root): stop and disable the service, remove the unit, the
# venv and the boothctl link. The records (/var/lib/booth), the config (/etc/booth) and the
# `booth` user are kept unless --purge is given (make uninstall PURGE=1).
# DESTDIR=/some/root works on a staged install, as install.sh does.
set -eu

DESTDIR=${DESTDIR:-}
. "$(dirname "$0")/_layout.sh"
PURGE=no

for arg in "$@"; do
  case "$arg" in
    --purge) PURGE=yes ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "uninstall.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

require_root uninstall.sh uninstall

say() { echo "uninstall: $*"; }

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl disable --now boothctl.service 2>/dev/null || true
fi
rm -f "$DESTDIR$UNITDIR/boothctl.service"
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
# Only the link install.sh made, never another boothctl.
if [ -L "$DESTDIR$BINDIR/boothctl" ] && \
   [ "$(readlink "$DESTDIR$BINDIR/boothctl")" = "$PREFIX/venv/bin/boothctl" ]; then
  rm -f "$DESTDIR$BINDIR/boothctl"
fi
rm -rf "$DESTDIR$PREFIX"
say "removed the unit, $PREFIX and the boothctl link"

if [ "$PURGE" = yes ]; then
  rm -rf "$DESTDIR$CONFDIR" "$DESTDIR$STATEDIR"
  if [ -z "$DESTDIR" ] && getent passwd "$USER_NAME" >/dev/null; then
    userdel "$USER_NAME" 2>/dev/null || true
  fi
  say "purged $CONFDIR, the records in $STATEDIR and the user $USER_NAME"
else
  say "kept $CONFDIR, the records in $STATEDIR and the user $USER_NAME (--purge removes them)"
fi
