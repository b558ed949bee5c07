#!/usr/bin/env bash
# Developer entry point for a fresh machine with Python 3.11.
#   bash dev.sh demo   set up, then run `edge-agent demo` (simulator + training + agent + broker)
#   bash dev.sh test   set up, then run ruff, mypy and the whole pytest suite
# Set-up is idempotent: a virtualenv in .venv with the `train` and `test` extras, and Mosquitto
# from the OS packages when it is missing (the tests and the demo start their own broker).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=.venv

ensure_mosquitto() {
  # mosquitto-clients gives the stock-client test (mosquitto_sub) its tool; it is skipped without.
  # mbpoll likewise for the Modbus stock-client test; systemd for `systemd-analyze verify` and
  # `security` on deploy/edge-agent.service (offline: systemd need not be running).
  if { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } &&
     command -v mosquitto_sub >/dev/null 2>&1 && command -v mbpoll >/dev/null 2>&1 &&
     command -v systemd-analyze >/dev/null 2>&1; then return; fi
  echo "dev.sh: installing mosquitto, mosquitto-clients, mbpoll and systemd from the OS packages" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients mbpoll systemd >/dev/null
}

ensure_venv() {
  local stamp="$VENV/.installed"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # torch is pinned to the CPU build in the `train` extra (see pyproject.toml).
    "$VENV/bin/python" -m pip install -q -e '.[train,test]'
    touch "$stamp"
  fi
}

cmd=${1:-}
case "$cmd" in
  demo)
    ensure_mosquitto
    ensure_venv
    exec "$VENV/bin/edge-agent" demo "${@:2}"
    ;;
  test)
    ensure_mosquitto
    ensure_venv
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy" edge_agent simulators
    exec "$VENV/bin/pytest" -q "${@:2}"
    ;;
  *)
    echo "usage: bash dev.sh demo|test [args...]" >&2
    exit 2
    ;;
esac
