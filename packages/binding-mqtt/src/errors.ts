import { type ErrorCode, isPosthornError, PosthornError } from "@posthorn/core";

// mqtt.js reports failures as plain Errors distinguished by message (and, for MQTT 5 reason
// codes, a numeric `code`); this one table turns them into Posthorn codes.
const BY_MESSAGE: ReadonlyArray<readonly [string, ErrorCode, boolean?]> = [
  // The publisher's own, for a client with reconnectPeriod 0 whose connection closed: gone until
  // the application reconnects it, so not retryable (as the other bindings' lost connections).
  ["does not reconnect by itself", "ConnectionFailed", false],
  ["client disconnecting", "Closed"],
  ["Client is disconnecting", "Closed"],
  ["client disconnected", "Closed"],
  ["Connection closed", "ConnectionFailed"],
  ["Connection refused", "ConnectionFailed"],
  ["Keepalive timeout", "ConnectionFailed"],
  ["ECONNREFUSED", "ConnectionFailed"],
  ["ECONNRESET", "ConnectionFailed"],
  ["exceeding packets size", "PayloadTooLarge"],
  ["Invalid topic", "PublishRejected"],
  // The publisher's own, for an acknowledgement mqtt.js could not read (Mosquitto's 0x95).
  ["reason code mqtt.js cannot read", "PayloadTooLarge", false],
];

/**
 * The failure reason code a SUBACK carries: mqtt.js 5 rejects a refused subscription with an
 * error holding the SUBACK (`packet.granted`: 0x80 at MQTT 3.1.1, e.g. 0x87 Not authorized at
 * MQTT 5) and no `code`.
 */
function refusedSubscription(e: { packet?: unknown } | null): number | undefined {
  const granted = (e?.packet as { granted?: unknown } | undefined)?.granted;
  if (!Array.isArray(granted)) return undefined;
  return granted.find((g): g is number => typeof g === "number" && g >= 0x80);
}

/**
 * Translates an error from mqtt.js into a {@link PosthornError}. An MQTT 5 reason code of 0x80 or
 * more (on an acknowledgement, or in a SUBACK refusing a subscription, 0x80 at MQTT 3.1.1 too)
 * becomes `PublishRejected` with the reason code as `protocolCode` (0x95 Packet too large:
 * `PayloadTooLarge`, with the code).
 *
 * @param err - what mqtt.js passed to a callback or rejected with
 * @param what - the operation, for the message
 */
export function fromMqttError(err: unknown, what: string): PosthornError {
  if (isPosthornError(err)) return err;
  const e = err as { message?: unknown; code?: unknown; packet?: unknown } | null;
  const message = typeof e?.message === "string" ? e.message : String(err);
  const reason = typeof e?.code === "number" ? e.code : refusedSubscription(e);
  if (reason !== undefined && reason >= 0x80) {
    return new PosthornError(
      // 0x95 Packet too large: over a limit of the broker's, as the Maximum Packet Size check.
      reason === 0x95 ? "PayloadTooLarge" : "PublishRejected",
      `${what}: the broker refused (reason ${reason}): ${message}`,
      {
        protocolCode: reason,
        retryable: reason === 0x97 || reason === 0x89, // quota exceeded, server busy
        cause: err,
      },
    );
  }
  const known = BY_MESSAGE.find(([fragment]) => message.includes(fragment));
  return new PosthornError(known?.[1] ?? "ConnectionFailed", `${what}: ${message}`, {
    ...(typeof e?.code === "string" ? { protocolCode: e.code } : {}),
    ...(known?.[2] === undefined ? {} : { retryable: known[2] }),
    cause: err,
  });
}
