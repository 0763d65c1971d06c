#!/usr/bin/env bash
# Build one virtual environment per peer of `loaderd bench --peer`, where
# bench looks for them: $LOADERD_PEERS_DIR/<peer> (default
# ~/.cache/loaderd/peers/<peer>), from requirements-<peer>.txt beside this
# script.
#
#   bench/peers/setup.sh dali tfdata        # or: all
#
# Needs python3 (3.10–3.12) with venv, and PyPI. Sizes and times on a
# 2-core machine are in the README (Performance).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${LOADERD_PEERS_DIR:-$HOME/.cache/loaderd/peers}"
python="${PYTHON:-python3}"
peers=("$@")
if [ ${#peers[@]} -eq 0 ]; then
  echo "usage: $0 dali|tfdata|torchvision|all ..." >&2
  exit 2
fi
if [ "${peers[0]}" = all ]; then peers=(dali tfdata torchvision); fi
for p in "${peers[@]}"; do
  req="$here/requirements-$p.txt"
  if [ ! -f "$req" ]; then
    echo "setup: unknown peer $p (want dali, tfdata, torchvision or all)" >&2
    exit 2
  fi
  venv="$root/$p"
  echo "setup: $p into $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$req"
  "$venv/bin/python" -m pip freeze > "$venv/freeze.txt"
  echo "setup: $p ready: $venv/bin/python ($(du -sh "$venv" | cut -f1))" >&2
done
