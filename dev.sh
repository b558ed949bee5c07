#!/usr/bin/env bash
# Developer entry point for a fresh machine with Python 3.11.
#   bash dev.sh demo   set up, then run `edge-agent demo` (simulator + training + agent + broker)
#   bash dev.sh test   set up, then run ruff, mypy and the whole pytest suite
# Set-up is idempotent: a virtualenv in .venv with the `train` and `test` extras and the tools
# (tools/: simulators, demo, benchmarks), Mosquitto from the OS packages when it is missing (the
# tests and the demo start their own broker), and for the tests Node.js with the node-opcua
# interop server (tests/interop/node_opcua, `npm ci`) and the Sparkplug decoder (Eclipse Tahu's
# sparkplug-payload, tests/interop/sparkplug).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=.venv

APT_UPDATED=""
apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "$APT_UPDATED" ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_mosquitto() {
  # mosquitto-clients gives the stock-client test (mosquitto_sub) its tool; it is skipped without.
  # mbpoll likewise for the Modbus stock-client test; systemd for `systemd-analyze verify` and
  # `security` on deploy/edge-agent.service (offline: systemd need not be running).
  if { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } &&
     command -v mosquitto_sub >/dev/null 2>&1 && command -v mbpoll >/dev/null 2>&1 &&
     command -v systemd-analyze >/dev/null 2>&1; then return; fi
  echo "dev.sh: installing mosquitto, mosquitto-clients, mbpoll and systemd from the OS packages" >&2
  apt_install mosquitto mosquitto-clients mbpoll systemd
}

# pysparkplug pins paho-mqtt<2 for a client the agent does not use; aiomqtt needs paho-mqtt 2.
# Installed without its dependencies (the `sparkplug` extra has them): see pyproject.toml.
PYSPARKPLUG=pysparkplug==0.6.1

npm_ci() {
  local dir=$1
  local stamp=$dir/node_modules/.installed
  if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
    echo "dev.sh: npm ci in $dir" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$stamp"
  fi
}

ensure_node_opcua() {
  # The OPC UA interop tests run an independent server (node-opcua, pinned by the lock file in
  # tests/interop/node_opcua), the Sparkplug tests an independent decoder (tests/interop/sparkplug).
  # Node.js and npm from the OS packages when missing; `npm ci` again
  # whenever the lock file changed.
  local pkgs=()
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "dev.sh: installing ${pkgs[*]} from the OS packages" >&2
    apt_install "${pkgs[@]}"
  fi
  npm_ci tests/interop/node_opcua
  npm_ci tests/interop/sparkplug
}

ensure_venv() {
  local stamp="$VENV/.installed"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ tools/pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # torch is pinned to the CPU build in the `train` extra (see pyproject.toml). tools/ is the
    # simulators, demo and benchmarks: a distribution of their own, kept out of the gateway's.
    "$VENV/bin/python" -m pip install -q -e '.[train,test]' -e ./tools
    "$VENV/bin/python" -m pip install -q --no-deps "$PYSPARKPLUG"
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
    ensure_node_opcua
    ensure_venv
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy" edge_agent simulators bench
    exec "$VENV/bin/pytest" -q "${@:2}"
    ;;
  *)
    echo "usage: bash dev.sh demo|test [args...]" >&2
    exit 2
    ;;
esac
