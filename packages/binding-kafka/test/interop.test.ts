import {
  fromKafkaRecord,
  type KafkaRecord,
  partitionKeyMapper,
  toKafkaRecord,
} from "@posthorn/binding-kafka";
import {
  CloudEvent,
  type CloudEventInit,
  canonicalTimestamp,
  isBytes,
  isJsonContentType,
  toCloudEventV1,
} from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { type EventVector, expectEquivalent, validVectors } from "@posthorn/testkit";
import { Kafka, CloudEvent as SdkCloudEvent } from "cloudevents";
import { describe, expect, it } from "vitest";
import { asReceived } from "./wire.js";

// Interop with the `cloudevents` package's Kafka binding, both directions, every vector it can
// represent. Facts about that package that shape this file (each is a skip reason or an
// adaptation below, never a silent pass):
// - its CloudEvent constructor invents `time` when absent, and its structured decoder calls
//   `new Date(time).toISOString()`, throwing without one: every vector gets a fixed `time` here
//   when it has none;
// - it re-serialises `time` through `Date`: sub-millisecond precision does not survive;
// - its binary serializer hands the data over as it is (a JSON value stays an object), which
//   kafkajs cannot send, so a user stringifies it first; its header values are strings,
//   booleans and numbers, which kafkajs sends as their String();
// - its decoder reads header values as strings (kafkajs gives Buffers), so a user converts them;
//   and it sets `partitionkey` from the record key.

const FIXED_TIME = "2020-01-01T00:00:00Z";

function withTime(event: CloudEvent): CloudEvent {
  return event.time === undefined ? event.cloneWith({ time: FIXED_TIME }) : event;
}

function timeSurvivesDate(event: CloudEvent): boolean {
  const t = withTime(event).time as string;
  return canonicalTimestamp(new Date(t).toISOString()) === canonicalTimestamp(t);
}

/** A header value after kafkajs wrote it and read it back. */
function overTheWire(value: unknown): Buffer | null {
  if (value === undefined || value === null) return null;
  if (isBytes(value)) return Buffer.from(value);
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

function sdkToPosthornSkip(v: EventVector, mode: "binary" | "structured"): string | undefined {
  if (!timeSurvivesDate(v.event)) return "cloudevents keeps time only to the millisecond";
  if (v.tags.includes("binary-extension")) {
    return "cloudevents hands a Binary extension to kafkajs as a Uint8Array, which kafkajs writes as String(bytes)";
  }
  const { data, datacontenttype } = v.event;
  if (mode === "binary" && data === null) {
    return "cloudevents Kafka.binary writes JSON null data as a record without a value";
  }
  if (mode === "binary" && typeof data === "string" && isJsonContentType(datacontenttype)) {
    return "cloudevents Kafka.binary writes a JSON string datum as its raw text, not as JSON";
  }
  if (mode === "binary" && data !== undefined && !isBytes(data) && datacontenttype === undefined) {
    return "cloudevents Kafka.binary writes no content-type when datacontenttype is absent";
  }
  if (mode === "structured" && v.tags.includes("binary-data")) {
    return "cloudevents Kafka.structured drops binary data (it deletes data_base64)";
  }
  try {
    sdkEventOf(v.event);
  } catch (err) {
    return `cloudevents refuses the event: ${(err as Error).message}`;
  }
  return undefined;
}

function posthornToSdkSkip(v: EventVector, mode: "binary" | "structured"): string | undefined {
  if (!timeSurvivesDate(v.event)) return "cloudevents keeps time only to the millisecond";
  if (mode === "binary" && v.tags.includes("binary-extension")) {
    return "cloudevents reads every header as a String and cannot restore a Binary extension";
  }
  return undefined;
}

describe("interop with the cloudevents package's Kafka binding", () => {
  for (const mode of ["binary", "structured"] as const) {
    describe(`cloudevents Kafka.${mode} -> Posthorn fromKafkaRecord`, () => {
      for (const v of validVectors) {
        const reason = sdkToPosthornSkip(v, mode);
        it.skipIf(reason !== undefined)(`${v.name}${reason ? ` (skipped: ${reason})` : ""}`, () => {
          const sdkEvent = sdkEventOf(v.event);
          const message = mode === "binary" ? Kafka.binary(sdkEvent) : Kafka.structured(sdkEvent);
          const decoded = fromKafkaRecord(sdkRecordAsReceived(message as never), {
            formats: [json],
          });
          expectEquivalent(decoded, withTime(v.event), v.name);
        });
      }
    });

    describe(`Posthorn toKafkaRecord (${mode}) -> cloudevents Kafka.toEvent`, () => {
      for (const v of validVectors) {
        const reason = posthornToSdkSkip(v, mode);
        it.skipIf(reason !== undefined)(`${v.name}${reason ? ` (skipped: ${reason})` : ""}`, () => {
          // cloudevents Kafka.toEvent refuses a record without a value (a tombstone), so an event
          // without data gets a text datum here; its attributes are what the vector tests.
          const event =
            mode === "binary" && !v.event.hasData()
              ? withTime(v.event).withData("x", "text/plain")
              : withTime(v.event);
          const record = asReceived(
            toKafkaRecord(event, {
              mode,
              format: json,
              // cloudevents sets partitionkey from the key; the opt-in mapper keeps them in step.
              keyMapper: partitionKeyMapper,
            }),
          );
          const decoded = Kafka.toEvent(toSdkMessage(record));
          expect(Array.isArray(decoded)).toBe(false);
          expectEquivalent(fromSdk(decoded), event, v.name);
        });
      }
    });
  }
});
