import {
  formatOfSubprotocol,
  frameText,
  fromWebSocketFrame,
  SUBPROTOCOLS,
  toWebSocketFrame,
} from "@posthorn/binding-websocket";
import type { CloudEvent, EventFormat } from "@posthorn/core";
import { arbitraryEvent, describeMappingProperties } from "@posthorn/testkit";
import fc from "fast-check";
import { expect, it } from "vitest";
import { FORMATS } from "./formats.js";

// Property tests of the WebSocket frames (>= 1,000 cases per path under CI=true): arbitrary valid
// events round-trip through every subprotocol, JSON also as a text frame read back as a string;
// arbitrary and mutated frames of every subprotocol decode to an event or a typed error.

interface Frame {
  readonly protocol: string;
  readonly data: string | Uint8Array | Uint8Array[];
}

const formatOf = (protocol: string): EventFormat => {
  const format = formatOfSubprotocol(FORMATS, protocol);
  if (format === undefined) throw new Error(`no format for ${protocol}`);
  return format;
};

const protocols = fc.constantFrom(...Object.values(SUBPROTOCOLS));

/** Valid encodings with bytes flipped or cut off, so decoders meet almost-valid input too. */
const mutated = fc
  .tuple(
    protocols,
    arbitraryEvent(),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }),
    fc.nat(),
  )
  .map(([protocol, event, flips, cut]): Frame => {
    const bytes = toWebSocketFrame(event, formatOf(protocol)).data.slice();
    for (const [at, value] of flips) if (bytes.length > 0) bytes[at % bytes.length] = value;
    return { protocol, data: bytes.subarray(0, bytes.length - (cut % 4)) };
  });

const hostileMessages: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({ protocol: protocols, data: fc.uint8Array({ maxLength: 300 }) }),
  fc.record({ protocol: protocols, data: fc.string({ unit: "binary", maxLength: 200 }) }),
  fc.record({
    protocol: protocols,
    data: fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 4 }),
  }),
  fc.record({
    protocol: fc.constant(SUBPROTOCOLS.json as string),
    data: fc.oneof(
      fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
      fc.constantFrom(
        '{"specversion":"1.0","id":"1","source":"/s","type":"t","__proto__":{"polluted":1}}',
        '{"specversion":"0.3","id":"1","source":"/s","type":"t"}',
        '{"specversion":"1.0","id":"1","ID":"2","source":"/s","type":"t"}',
        `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":${"[".repeat(3000)}${"]".repeat(3000)}}`,
      ),
    ),
  }),
  mutated,
);

const coverage = describeMappingProperties<Frame>({
  name: "websocket",
  paths: [
    ...FORMATS.map((format) => ({
      label: `${SUBPROTOCOLS[format.name]} (binary frame bytes)`,
      roundTrip: (e: CloudEvent) => fromWebSocketFrame(toWebSocketFrame(e, format).data, format),
    })),
    ...FORMATS.filter((f) => f.text).map((format) => ({
      label: `${SUBPROTOCOLS[format.name]} (text frame, read as a string)`,
      roundTrip: (e: CloudEvent) =>
        fromWebSocketFrame(frameText(toWebSocketFrame(e, format)), format),
    })),
  ],
  hostileMessages,
  decode: (frame) => fromWebSocketFrame(frame.data, formatOf(frame.protocol)),
});

it("round-trips through every subprotocol, JSON also as a text frame, and decodes hostile frames", () => {
  expect(coverage.cases).toEqual([
    "cloudevents.json (binary frame bytes): arbitrary valid events round-trip equivalently",
    "cloudevents.avro (binary frame bytes): arbitrary valid events round-trip equivalently",
    "cloudevents.proto (binary frame bytes): arbitrary valid events round-trip equivalently",
    "cloudevents.json (text frame, read as a string): arbitrary valid events round-trip equivalently",
    "arbitrary messages decode to an event, a message or a typed error",
  ]);
});
