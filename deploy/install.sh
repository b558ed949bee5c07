#!/usr/bin/env bash
# Install edge-agent as a systemd service on a gateway box (run as root):
#   /opt/edge-agent/venv        virtualenv with edge-agent and its runtime dependencies
#   /etc/edge-agent/agent.yaml  config (the example, only if none is there yet)
#   /etc/edge-agent/firmware_configs/  device profiles (shipped ones added, edited ones kept)
#   /etc/edge-agent/credentials/mqtt-password   LoadCredential= source (empty until you set it)
#   /var/lib/edge-agent         state: outbox.db, bundles/
#   /etc/systemd/system/edge-agent.service      enabled, not started (configure it first)
#
# usage: deploy/install.sh [--dry-run] [--root DIR] [--skip-python] [--python PY] [--uninstall [--purge]]
#   --dry-run      print what would be done, change nothing
#   --root DIR     install under DIR instead of / (an image being built, a chroot, a test);
#                  the unit is enabled with `systemctl --root=DIR`, nothing is started
#   --skip-python  leave out the virtualenv and the pip install (file layout and unit only)
#   --uninstall    stop, disable and remove the unit and /opt/edge-agent; config and state stay
#   --purge        with --uninstall: also remove /etc/edge-agent and /var/lib/edge-agent
# Idempotent: running it again upgrades the package and the unit, never overwrites the config
# or the credential.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=/
DRY=0
UNINSTALL=0
PURGE=0
SKIP_PYTHON=0
PYTHON=${PYTHON:-python3}

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --root) ROOT=${2:?--root needs a directory}; shift ;;
    --skip-python) SKIP_PYTHON=1 ;;
    --python) PYTHON=${2:?--python needs an interpreter}; shift ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ]; then
  echo "install.sh: --purge goes with --uninstall" >&2; exit 2
fi
ROOT=${ROOT%/}
OPT=$ROOT/opt/edge-agent
ETC=$ROOT/etc/edge-agent
STATE=$ROOT/var/lib/edge-agent
UNIT_DIR=$ROOT/etc/systemd/system
UNIT=$UNIT_DIR/edge-agent.service

# Every change goes through `run`, so --dry-run prints exactly the commands a real run executes.
run() {
  if [ "$DRY" = 1 ]; then echo "would run: $*"; else echo "+ $*"; "$@"; fi
}

systemd_live() {
  # Talk to a running systemd only for a real install into /; --root uses systemctl offline.
  [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

systemctl_offline() {
  [ -n "$ROOT" ] && command -v systemctl >/dev/null 2>&1
}

if [ "$DRY" = 0 ] && [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or use --root DIR / --dry-run)" >&2; exit 1
fi

if [ "$UNINSTALL" = 1 ]; then
  if systemd_live; then
    run systemctl disable --now edge-agent.service
  elif systemctl_offline && [ -e "$UNIT" ]; then
    run systemctl --root="$ROOT" disable edge-agent.service
  fi
  [ -e "$UNIT" ] && run rm -f "$UNIT"
  systemd_live && run systemctl daemon-reload
  [ -e "$OPT" ] && run rm -rf "$OPT"
  if [ "$PURGE" = 1 ]; then
    [ -e "$ETC" ] && run rm -rf "$ETC"
    # DynamicUser= keeps the real state directory under /var/lib/private.
    [ -e "$STATE" ] || [ -L "$STATE" ] && run rm -rf "$STATE"
    [ -e "$ROOT/var/lib/private/edge-agent" ] && run rm -rf "$ROOT/var/lib/private/edge-agent"
  else
    echo "kept config $ETC and state $STATE (--purge removes them)"
  fi
  echo "edge-agent uninstalled"
  exit 0
fi

run install -d -m 0755 "$OPT" "$ETC" "$UNIT_DIR"
run install -d -m 0700 "$ETC/credentials"
run install -d -m 0750 "$STATE" "$STATE/bundles"
if [ "$SKIP_PYTHON" = 0 ]; then
  [ -x "$OPT/venv/bin/python" ] || run "$PYTHON" -m venv "$OPT/venv"
  run "$OPT/venv/bin/python" -m pip install --quiet --upgrade "$SRC"
fi
run install -m 0644 "$SRC/README.md" "$OPT/README.md"
# Device profiles are not part of the Python package; the agent finds them in firmware_configs/
# beside its config. Shipped profiles are added, ones already there (maybe edited) are kept.
run cp -R --no-clobber "$SRC/firmware_configs" "$ETC/"
if [ -e "$ETC/agent.yaml" ]; then
  echo "keeping existing $ETC/agent.yaml"
else
  run install -m 0644 "$SRC/deploy/examples/pump-skid.yaml" "$ETC/agent.yaml"
fi
# LoadCredential= refuses to start the unit when its source is missing: an empty placeholder.
[ -e "$ETC/credentials/mqtt-password" ] || run install -m 0600 /dev/null "$ETC/credentials/mqtt-password"
run install -m 0644 "$SRC/deploy/edge-agent.service" "$UNIT"
if systemd_live; then
  run systemctl daemon-reload
  run systemctl enable edge-agent.service
elif systemctl_offline; then
  run systemctl --root="$ROOT" enable edge-agent.service
else
  echo "systemctl not found: enable edge-agent.service yourself"
fi
cat <<MSG
edge-agent installed. Next:
  1. edit /etc/edge-agent/agent.yaml, put bundles under /var/lib/edge-agent/bundles/
  2. /opt/edge-agent/venv/bin/edge-agent validate --config /etc/edge-agent/agent.yaml
  3. systemctl start edge-agent; /opt/edge-agent/venv/bin/edge-agent status --config /etc/edge-agent/agent.yaml
MSG
