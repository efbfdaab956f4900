#!/usr/bin/env bash
# Installs what chatcluster needs on a Debian machine when it is missing:
#   - Debian packages: haproxy, redis-server (and any extra names given as arguments)
#   - with --python: a virtualenv in .venv with the Python test tools from tests/requirements.txt
# Safe to run again: it only installs what is not there yet.
set -euo pipefail
cd "$(dirname "$0")/.."

want_python=0
packages=(haproxy redis-server)
for arg in "$@"; do
  case "$arg" in
    --python) want_python=1 ;;
    *) packages+=("$arg") ;;
  esac
done

# A package counts as present when dpkg has it or when a command of its name is already on PATH
# (this machine's node and npm, for example, do not come from Debian's npm package, and asking
# apt for it would conflict with them). `nodejs` provides the command `node`.
missing=()
for pkg in "${packages[@]}"; do
  cmd=$pkg
  [[ $pkg == nodejs ]] && cmd=node
  command -v "$cmd" >/dev/null 2>&1 && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && continue
  missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install-deps: installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ((want_python)); then
  stamp=.venv/.requirements.sha256
  want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
  if [[ ! -x .venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "install-deps: creating .venv with tests/requirements.txt" >&2
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
    echo "$want" >"$stamp"
  fi
fi
