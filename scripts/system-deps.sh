#!/usr/bin/env bash
# System packages some tests need, from Debian's packages, installed only when missing:
# chromium (the browser test) and kcat (a librdkafka client proving the Kafka test broker).
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
if [ "${#need[@]}" -gt 0 ]; then
  echo "system-deps: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
