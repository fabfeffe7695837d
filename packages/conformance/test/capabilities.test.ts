import { readFileSync } from "node:fs";
import { AMQP_SETTLEMENT_CAPABILITIES } from "@posthorn/binding-amqp";
import { HTTP_CAPABILITIES } from "@posthorn/binding-http";
import { kafkaCapabilities } from "@posthorn/binding-kafka";
import { JETSTREAM_CAPABILITIES, NATS_CORE_CAPABILITIES } from "@posthorn/binding-nats";
import { WEBSOCKET_CAPABILITIES } from "@posthorn/binding-websocket";
import type { SettlementCapabilities } from "@posthorn/core";
import { describe, expect, it } from "vitest";

// Issue 12: the capability table in docs/concepts.md is the one users read; it must say what the
// code declares. MQTT's capabilities depend on the client's session, so they are checked against
// real subscribers in binding-mqtt's own tests; here the two documented rows are read back.
const concepts = readFileSync(new URL("../../../docs/concepts.md", import.meta.url), "utf8");
// The capability table starts at its header row; the settlement table above it has rows with the
// same transport names.
const doc = concepts.slice(concepts.indexOf("| Binding | release | releaseDelay |"));

function row(label: string): SettlementCapabilities {
  const line = doc.split("\n").find((l) => l.startsWith(`| ${label} |`));
  if (!line) throw new Error(`docs/concepts.md has no capability row for ${label}`);
  const [release, releaseDelay, reject, inProgress, deliveryCount] = line
    .split("|")
    .slice(2, 7)
    .map((c) => c.trim());
  return {
    release,
    releaseDelay: releaseDelay === "true",
    reject,
    inProgress: inProgress === "true",
    deliveryCount,
  } as SettlementCapabilities;
}

describe("declared settlement capabilities match docs/concepts.md", () => {
  it.each([
    ["AMQP 1.0", AMQP_SETTLEMENT_CAPABILITIES],
    ["NATS JetStream", JETSTREAM_CAPABILITIES],
    ["NATS core", NATS_CORE_CAPABILITIES],
    ["Kafka, with a dead-letter topic", kafkaCapabilities(true)],
    ["Kafka, without one", kafkaCapabilities(false)],
    ["HTTP receiver", HTTP_CAPABILITIES],
    ["WebSocket", WEBSOCKET_CAPABILITIES],
  ] as const)("%s", (label, declared) => {
    expect({ ...declared }).toEqual(row(label));
  });
  it("documents both MQTT cases", () => {
    expect(row("MQTT QoS 1/2, persistent session, with a dead-letter topic").release).toBe(
      "emulated",
    );
    expect(row("MQTT QoS 0 or clean session, without a dead-letter topic").release).toBe("none");
  });
});
