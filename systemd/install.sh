#!/bin/sh
# Install the booth supervisor as a systemd service (run as root, from the project folder):
#   - the system user and group `booth` (member of `dialout` for the serial lines),
#   - a venv in /opt/booth/venv with the project installed (boothctl, booth-sim),
#   - /usr/local/bin/boothctl, a link to it, for the operator,
#   - /etc/booth/booth.toml from config/booth.example.toml, only if there is none yet, and the
#     register maps and recipes next to it (files already there are left alone),
#   - the unit /etc/systemd/system/boothctl.service, enabled (not started: edit the config first).
# Records live in /var/lib/booth (the unit's StateDirectory=), created by systemd at start.
#
# DESTDIR=/some/root stages everything under that folder instead (no user, no systemctl);
# --no-venv skips the venv (for staging tests). Re-running it upgrades the venv and the unit.
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
PYTHON=${PYTHON:-python3}
. "$SRC/systemd/_layout.sh"
MAKE_VENV=yes

for arg in "$@"; do
  case "$arg" in
    --no-venv) MAKE_VENV=no ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

require_root install.sh install

say() { echo "install: $*"; }

if [ -z "$DESTDIR" ]; then
  if ! getent passwd "$USER_NAME" >/dev/null; then
    useradd --system --user-group --home-dir "$STATEDIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "booth supervisor" "$USER_NAME"
    say "created user $USER_NAME"
  fi
  if getent group dialout >/dev/null; then
    usermod -a -G dialout "$USER_NAME"
  fi
fi

install -d -m 0755 "$DESTDIR$PREFIX" "$DESTDIR$CONFDIR" "$DESTDIR$UNITDIR" "$DESTDIR$BINDIR"
install -m 0644 "$SRC/README.md" "$DESTDIR$PREFIX/README.md"
install -d -m 0755 "$DESTDIR$PREFIX/docs"
install -m 0644 "$SRC"/docs/*.md "$DESTDIR$PREFIX/docs/"

if [ "$MAKE_VENV" = yes ]; then
  [ -x "$DESTDIR$PREFIX/venv/bin/python" ] || "$PYTHON" -m venv "$DESTDIR$PREFIX/venv"
  "$DESTDIR$PREFIX/venv/bin/python" -m pip install --quiet --upgrade pip
  "$DESTDIR$PREFIX/venv/bin/python" -m pip install --quiet --upgrade "$SRC"
  say "installed $("$DESTDIR$PREFIX/venv/bin/boothctl" --help >/dev/null && echo boothctl) in $PREFIX/venv"
fi
ln -sfn "$PREFIX/venv/bin/boothctl" "$DESTDIR$BINDIR/boothctl"

# The config is the site's: never overwritten. Maps and recipes: only missing files are added.
if [ ! -e "$DESTDIR$CONFDIR/booth.toml" ]; then
  install -m 0644 "$SRC/config/booth.example.toml" "$DESTDIR$CONFDIR/booth.toml"
  say "wrote $CONFDIR/booth.toml from config/booth.example.toml: adapt it to the machine"
else
  say "kept the existing $CONFDIR/booth.toml"
fi
for sub in maps recipes; do
  install -d -m 0755 "$DESTDIR$CONFDIR/$sub"
  for f in "$SRC/config/$sub"/*.toml; do
    [ -e "$DESTDIR$CONFDIR/$sub/$(basename "$f")" ] || install -m 0644 "$f" "$DESTDIR$CONFDIR/$sub/"
  done
done

install -m 0644 "$SRC/systemd/boothctl.service" "$DESTDIR$UNITDIR/boothctl.service"
say "installed $UNITDIR/boothctl.service"

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable boothctl.service
  say "enabled boothctl.service; check the config, then: systemctl start boothctl"
  say "  $PREFIX/venv/bin/boothctl config check $CONFDIR/booth.toml"
elif [ -z "$DESTDIR" ]; then
  say "systemd is not running here: enable the unit later with systemctl enable --now boothctl"
fi
