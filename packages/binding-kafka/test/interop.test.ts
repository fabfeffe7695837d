import {
  fromKafkaRecord,
  type KafkaRecord,
  partitionKeyMapper,
  toKafkaRecord,
} from "@posthorn/binding-kafka";
import {
  CloudEvent,
  type CloudEventInit,
  isBytes,
  isJsonContentType,
  parseContentType,
  toCloudEventV1,
} from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { type EventVector, expectEquivalent, validVectors } from "@posthorn/testkit";
import {
  expectPinnedChanges,
  expectRefused,
  indexObject,
  millisecondTime,
  subMillisecond,
} from "@posthorn/testkit/interop-pins";
import { Kafka, CloudEvent as SdkCloudEvent } from "cloudevents";
import { describe, expect, it } from "vitest";
import { asReceived } from "./wire.js";

// Interop with the `cloudevents` package's Kafka binding, both directions, every vector. A vector
// that package cannot carry is not skipped: its test, named "<vector>: cloudevents package
// limitation pinned: <reason>", runs the same round trip and asserts exactly what the package
// does to it today. If such a test fails after a cloudevents upgrade, the package has most likely
// fixed that limitation: delete the case from `sdkToPosthorn`/`posthornToSdk` so the vector runs
// as a normal interop test. Facts about that package that shape this file:
// - its CloudEvent constructor invents `time` when absent, and its structured decoder calls
//   `new Date(time).toISOString()`, throwing without one: every vector gets a fixed `time` here
//   when it has none;
// - its structured serializer (toJSON) and both its decoders re-serialise `time` through `Date`:
//   sub-millisecond precision does not survive them (Kafka.binary writes the string as given);
// - its binary serializer hands the data over as it is (a JSON value stays an object), which
//   kafkajs cannot send, so a user stringifies it first; its header values are strings,
//   booleans, numbers and, for a Binary extension, the Uint8Array itself, all of which kafkajs
//   sends as their String() (it writes only a Buffer as raw bytes);
// - its decoder reads header values as strings (kafkajs gives Buffers), so a user converts them;
//   and it sets `partitionkey` from the record key.

const FIXED_TIME = "2020-01-01T00:00:00Z";

function withTime(event: CloudEvent): CloudEvent {
  return event.time === undefined ? event.cloneWith({ time: FIXED_TIME }) : event;
}

/** A header value or key after kafkajs wrote it and read it back: only a Buffer goes as it is. */
function overTheWire(value: unknown): Buffer | null {
  if (value === undefined || value === null) return null;
  if (Buffer.isBuffer(value)) return value;
  return Buffer.from(String(value));
}

function sdkRecordAsReceived(message: {
  key?: unknown;
  value?: unknown;
  headers: Record<string, unknown>;
}): KafkaRecord {
  const headers: Record<string, Buffer | null> = {};
  for (const [name, v] of Object.entries(message.headers)) headers[name] = overTheWire(v);
  const v = message.value;
  const value =
    v === undefined || v === null
      ? null
      : isBytes(v)
        ? Buffer.from(v)
        : Buffer.from(typeof v === "string" ? v : JSON.stringify(v));
  return { key: overTheWire(message.key), value, headers };
}

function sdkEventOf(event: CloudEvent): SdkCloudEvent {
  return new SdkCloudEvent(toCloudEventV1(withTime(event)) as never, false);
}

function toSdkMessage(record: KafkaRecord): never {
  // What a cloudevents user does with a kafkajs message: header Buffers to strings, key to a string.
  const headers: Record<string, string> = {};
  for (const [name, v] of Object.entries(record.headers ?? {})) {
    if (v !== null && v !== undefined) headers[name] = Buffer.from(v as Buffer).toString();
  }
  return {
    key: record.key === null || record.key === undefined ? undefined : String(record.key),
    value: record.value,
    headers,
  } as never;
}

/** The SDK's event as a Posthorn event: the shape is the same; it carries both data forms. */
function fromSdk(event: unknown): CloudEvent {
  const plain: Record<string, unknown> = { ...(event as Record<string, unknown>) };
  if (plain.data !== undefined) delete plain.data_base64;
  if (plain.partitionkey === null) delete plain.partitionkey;
  return CloudEvent.from(plain as unknown as CloudEventInit);
}

interface Limitation<Trip> {
  readonly reason: string;
  pin(trip: Trip): void;
}

/** Their message as Posthorn receives it, the event they sent, and the decoding itself. */
interface SdkTrip {
  readonly record: KafkaRecord;
  readonly sent: CloudEvent;
  decode(): CloudEvent;
}

/** The event Posthorn sent and what the package made of the record. */
interface PosthornTrip {
  readonly sent: CloudEvent;
  readonly decoded: CloudEvent;
}

function binaryExtensions(event: CloudEvent): Array<[string, Uint8Array]> {
  return Object.entries(event).filter(
    (e): e is [string, Uint8Array] => e[0] !== "data" && isBytes(e[1]),
  );
}

/** The value of a record as JSON. */
function valueJson(record: KafkaRecord): Record<string, unknown> {
  return JSON.parse(Buffer.from(record.value as Buffer).toString()) as Record<string, unknown>;
}

const MS_TIME = "cloudevents keeps time only to the millisecond";

function sdkToPosthorn(
  v: EventVector,
  mode: "binary" | "structured",
): Limitation<SdkTrip> | undefined {
  const time = v.event.time;
  if (mode === "structured" && time !== undefined && subMillisecond(time)) {
    return {
      reason: `${MS_TIME} (Kafka.structured writes it through Date)`,
      pin: (t) => expectPinnedChanges(t.decode(), t.sent, { time: millisecondTime(time) }),
    };
  }
  const binaries = binaryExtensions(v.event);
  const [firstBinary] = binaries;
  if (firstBinary !== undefined && mode === "binary") {
    return {
      reason:
        "cloudevents hands a Binary extension to kafkajs as a Uint8Array, which kafkajs writes as String(bytes)",
      pin: (t) =>
        expectPinnedChanges(
          t.decode(),
          t.sent,
          Object.fromEntries(binaries.map(([name, bytes]) => [name, bytes.join(",")])),
        ),
    };
  }
  if (firstBinary !== undefined) {
    return {
      reason: "cloudevents Kafka.structured writes a Binary extension as an object of indices",
      pin: (t) => {
        const body = valueJson(t.record);
        for (const [name, bytes] of binaries) expect(body[name]).toEqual(indexObject(bytes));
        expectRefused(
          t.decode,
          "InvalidEvent",
          new RegExp(`^${firstBinary[0]} has a value of type object`),
        );
      },
    };
  }
  const { data, datacontenttype } = v.event;
  if (mode === "binary" && data === null) {
    return {
      reason: "cloudevents Kafka.binary writes JSON null data as a record without a value",
      pin: (t) => {
        expect(t.record.value).toBeNull();
        // Without data, no datacontenttype is implied (application/json stood for the data's).
        const implied = datacontenttype === undefined ? { datacontenttype: undefined } : {};
        expectPinnedChanges(t.decode(), t.sent, { data: undefined, ...implied });
      },
    };
  }
  const charset = parseContentType(datacontenttype ?? "")?.parameters.charset?.toLowerCase();
  if (mode === "binary" && typeof data === "string" && charset === "iso-8859-1") {
    return {
      reason: "cloudevents Kafka.binary writes a string as UTF-8 whatever charset it is labelled",
      pin: (t) => {
        expect(Buffer.from(t.record.value as Buffer).toString()).toBe(data);
        expectPinnedChanges(t.decode(), t.sent, { data: new TextEncoder().encode(data) });
      },
    };
  }
  if (mode === "binary" && typeof data === "string" && isJsonContentType(datacontenttype)) {
    return {
      reason: "cloudevents Kafka.binary writes a JSON string datum as its raw text, not as JSON",
      pin: (t) => {
        expect(Buffer.from(t.record.value as Buffer).toString()).toBe(data);
        expectRefused(t.decode, "MalformedInput", /not valid JSON/);
      },
    };
  }
  if (mode === "binary" && data !== undefined && !isBytes(data) && datacontenttype === undefined) {
    return {
      reason: "cloudevents Kafka.binary writes no content-type when datacontenttype is absent",
      pin: (t) => {
        expect(t.record.headers?.["content-type"] ?? null).toBeNull();
        // Without a content type the value is opaque bytes: the JSON text, no longer JSON data.
        expectPinnedChanges(t.decode(), t.sent, {
          datacontenttype: undefined,
          data: new Uint8Array(Buffer.from(JSON.stringify(data))),
        });
      },
    };
  }
  if (mode === "structured" && isBytes(data) && data.length === 0) {
    return {
      reason: 'cloudevents Kafka.structured writes empty binary data as data_base64 "" and data {}',
      pin: (t) => {
        const body = valueJson(t.record);
        expect(body.data_base64).toBe("");
        expect(body.data).toEqual({});
        expectRefused(t.decode, "InvalidEvent", /both data and data_base64/);
      },
    };
  }
  return undefined;
}

function posthornToSdk(v: EventVector): Limitation<PosthornTrip> | undefined {
  const time = v.event.time;
  if (time !== undefined && subMillisecond(time)) {
    return {
      reason: `${MS_TIME} (Kafka.toEvent reads it through Date)`,
      pin: (t) => expectPinnedChanges(t.decoded, t.sent, { time: millisecondTime(time) }),
    };
  }
  return undefined;
}

function sdkTrip(v: EventVector, mode: "binary" | "structured"): SdkTrip {
  const sdkEvent = sdkEventOf(v.event);
  const message = mode === "binary" ? Kafka.binary(sdkEvent) : Kafka.structured(sdkEvent);
  const record = sdkRecordAsReceived(message as never);
  return {
    record,
    sent: withTime(v.event),
    decode: () => fromKafkaRecord(record, { formats: [json] }) as CloudEvent,
  };
}

function posthornTrip(v: EventVector, mode: "binary" | "structured"): PosthornTrip {
  // cloudevents Kafka.toEvent refuses a record without a value (a tombstone), so an event
  // without data gets a text datum here; its attributes are what the vector tests.
  const sent =
    mode === "binary" && !v.event.hasData()
      ? withTime(v.event).withData("x", "text/plain")
      : withTime(v.event);
  const record = asReceived(
    toKafkaRecord(sent, {
      mode,
      format: json,
      // cloudevents sets partitionkey from the key; the opt-in mapper keeps them in step.
      keyMapper: partitionKeyMapper,
    }),
  );
  const decoded = Kafka.toEvent(toSdkMessage(record));
  expect(Array.isArray(decoded)).toBe(false);
  return { sent, decoded: fromSdk(decoded) };
}

describe("interop with the cloudevents package's Kafka binding", () => {
  for (const mode of ["binary", "structured"] as const) {
    describe(`cloudevents Kafka.${mode} -> Posthorn fromKafkaRecord`, () => {
      for (const v of validVectors) {
        const limitation = sdkToPosthorn(v, mode);
        if (limitation === undefined) {
          it(v.name, () => {
            const trip = sdkTrip(v, mode);
            expectEquivalent(trip.decode(), trip.sent, v.name);
          });
        } else {
          it(`${v.name}: cloudevents package limitation pinned: ${limitation.reason}`, () => {
            limitation.pin(sdkTrip(v, mode));
          });
        }
      }
    });

    describe(`Posthorn toKafkaRecord (${mode}) -> cloudevents Kafka.toEvent`, () => {
      for (const v of validVectors) {
        const limitation = posthornToSdk(v);
        if (limitation === undefined) {
          it(v.name, () => {
            const trip = posthornTrip(v, mode);
            expectEquivalent(trip.decoded, trip.sent, v.name);
          });
        } else {
          it(`${v.name}: cloudevents package limitation pinned: ${limitation.reason}`, () => {
            limitation.pin(posthornTrip(v, mode));
          });
        }
      }
    });
  }
});
