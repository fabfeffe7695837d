#!/usr/bin/env bash
# Makes sure the brokers the integration tests use are running: RabbitMQ with AMQP 1.0 (5672),
# Mosquitto (1883), nats-server with JetStream (4222). Each is started only if its port is closed;
# a missing binary is installed from Debian's packages. Exits non-zero, saying which, when a broker
# does not come up in time. Addresses given in AMQP_URL / MQTT_URL / NATS_URL are not started here.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  local i
  for ((i = 0; i < $3 * 4; i++)); do
    port_open "$2" && { echo "brokers: $1 is up on 127.0.0.1:$2"; return 0; }
    sleep 0.25
  done
  echo "brokers: $1 did not open 127.0.0.1:$2 within $3 s" >&2
  return 1
}

apt_updated=0
ensure_binary() { # binary package
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] && return 0
  if [ "$apt_updated" = 0 ]; then apt-get update -qq && apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

status=0
export PATH="$PATH:/usr/sbin:/usr/local/sbin"

if [ -z "${AMQP_URL:-}" ]; then
  ensure_binary rabbitmq-server rabbitmq-server
  if ! port_open 5672; then
    rabbitmq-server -detached >/dev/null 2>&1 || true
  fi
  wait_port rabbitmq 5672 120 || status=1
  # The AMQP 1.0 plugin shares port 5672 with AMQP 0-9-1; enabling it is idempotent.
  rabbitmq-plugins enable rabbitmq_amqp1_0 >/dev/null 2>&1 || {
    echo "brokers: could not enable rabbitmq_amqp1_0" >&2
    status=1
  }
fi

if [ -z "${MQTT_URL:-}" ]; then
  ensure_binary mosquitto mosquitto
  if ! port_open 1883; then
    mkdir -p /run/mosquitto && chown mosquitto /run/mosquitto 2>/dev/null
    mosquitto -d -c /etc/mosquitto/mosquitto.conf
  fi
  wait_port mosquitto 1883 20 || status=1
fi

if [ -z "${NATS_URL:-}" ]; then
  ensure_binary nats-server nats-server
  if ! port_open 4222; then
    mkdir -p /var/lib/nats-server
    (nats-server -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server >/var/log/nats-server.log 2>&1 &)
  fi
  wait_port nats-server 4222 20 || status=1
fi

exit "$status"
