import type { SettlementCapabilities, UnsupportedSettlements } from "@posthorn/core";

/**
 * Core NATS is at-most-once: there is no acknowledgement, so `accept()` is a no-op and
 * `release()`, `reject()` and `inProgress()` are `NotSupported`.
 */
export const NATS_CORE_CAPABILITIES: SettlementCapabilities = Object.freeze({
  release: "none",
  releaseDelay: false,
  reject: "none",
  inProgress: false,
  deliveryCount: "none",
});

/** What a core NATS delivery's `NotSupported` settlements say: why, and where the feature is. */
export const NATS_CORE_UNSUPPORTED: UnsupportedSettlements = Object.freeze({
  release:
    "core NATS is at most once and redelivers nothing; a JetStream stream and jetStreamSubscriber redeliver",
  releaseDelay: "core NATS is at most once and redelivers nothing",
  reject:
    "core NATS is at most once and has no dead-letter path; with jetStreamSubscriber, reject() terminates the message",
  inProgress: "core NATS has no acknowledgement whose wait could be extended",
});

/**
 * JetStream consumers with explicit acks: `accept()` acks, `release({ delayMs })` naks with that
 * delay, `reject()` terminates (`+TERM`: no redelivery, and the server publishes a
 * `MSG_TERMINATED` advisory a dead-letter handler can follow), `inProgress()` sends `+WPI`, and
 * the delivery count is the server's own.
 */
export const JETSTREAM_CAPABILITIES: SettlementCapabilities = Object.freeze({
  release: "native",
  releaseDelay: true,
  reject: "native",
  inProgress: true,
  deliveryCount: "native",
});
