#!/usr/bin/env bash
# System packages some tests need, from Debian's packages, installed only when missing:
# chromium (the browser test), kcat (a librdkafka client proving the Kafka test broker), and the
# libraries @confluentinc/kafka-javascript links librdkafka against when npm builds it from
# source with CKJS_LINKING=dynamic (its prebuilt binaries and its own dependency downloads come
# from hosts this project cannot reach). Run it before `npm ci`.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
for dev in libssl-dev zlib1g-dev libzstd-dev liblz4-dev libsasl2-dev libcurl4-openssl-dev; do
  dpkg -s "$dev" >/dev/null 2>&1 || need+=("$dev")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "system-deps: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
