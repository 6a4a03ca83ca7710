#!/usr/bin/env bash
# Installs the programs streamd needs when they are missing.
#   scripts/deps.sh run    ffmpeg (the server's transcoders and probes)
#   scripts/deps.sh test   ffmpeg + chromium (browser tests)
#   scripts/deps.sh bench  test deps + nginx, wrk (benchmarks)
# Debian/Ubuntu via apt-get; elsewhere it says what to install and fails.
set -euo pipefail
what=${1:-run}

need=()
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
want ffmpeg ffmpeg
want ffprobe ffmpeg
if [[ $what == test || $what == bench ]]; then
  want chromium chromium
fi
if [[ $what == bench ]]; then
  want nginx nginx
  want wrk wrk
fi
[[ ${#need[@]} -eq 0 ]] && exit 0

# unique package names
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
echo "streamd: installing ${need[*]} ..." >&2
if ! command -v apt-get >/dev/null 2>&1; then
  echo "streamd: please install: ${need[*]} (no apt-get here)" >&2
  exit 1
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "streamd: need root to install ${need[*]}: run as root or install them first" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "streamd: installed ${need[*]}" >&2
