import { type NatsContentMode, toNatsMessage } from "@posthorn/binding-nats";
import type { CloudEvent } from "@posthorn/core";
import { type BindingPath, startNatsServer } from "@posthorn/testkit";

/** A NATS server for one test file: a launched one, or the one NATS_URL names. */
export interface TestNats {
  readonly url: string;
  /** Stops the server when this file started it. */
  stop(): Promise<void>;
}

/**
 * The payload limit of the server the tests start. nats-server's default is 1 MB (1,048,576
 * bytes), which the 1 MiB vector plus its headers exceeds; the tests raise it so every vector
 * travels. Against a server named by NATS_URL the tests read its limit instead and skip, with
 * the computed reason, what does not fit.
 */
export const TEST_MAX_PAYLOAD = 4 * 1024 * 1024;

/**
 * Starts nats-server on a free loopback port with JetStream, a temporary store and a raised
 * max_payload, unless NATS_URL is set. testkit's launcher counts the server as started when it
 * logs that it is ready (a port another process took meanwhile is retried, never mistaken for
 * ours).
 */
export async function startTestNats(): Promise<TestNats> {
  const fromEnv = process.env.NATS_URL;
  if (fromEnv) return { url: fromEnv, stop: async () => {} };
  const server = await startNatsServer({ maxPayloadBytes: TEST_MAX_PAYLOAD });
  return { url: server.url, stop: () => server.stop() };
}

let counter = 0;
/** A subject or stream name no other test uses. */
export function unique(prefix: string): string {
  counter++;
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter}`;
}

/** Why a server cannot carry an event along a path (it exceeds max_payload), or `undefined`. */
export function tooLarge(event: CloudEvent, path: BindingPath, limit: number): string | undefined {
  const mode = path.mode as NatsContentMode;
  const m = toNatsMessage(event, { mode, ...(path.format ? { format: path.format } : {}) });
  const size = m.data.length + m.headers.byteLength();
  return size > limit
    ? `the server's max_payload is ${limit} bytes; this message is ${size}`
    : undefined;
}
