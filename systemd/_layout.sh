# Sourced by install.sh and uninstall.sh: where the service lives, one list for both (what one
# installs the other must find), and the check that they run as root (or staged under DESTDIR).
PREFIX=/opt/booth
CONFDIR=/etc/booth
STATEDIR=/var/lib/booth
UNITDIR=/etc/systemd/system
BINDIR=/usr/local/bin
USER_NAME=booth

# require_root SCRIPT TARGET: stop unless root, or staging under DESTDIR.
require_root() {
  if [ -z "${DESTDIR:-}" ] && [ "$(id -u)" != 0 ]; then
    echo "$1: run as root (sudo make $2)" >&2
    exit 1
  fi
}
