import { CloudEvent, differences, isBytes, toCloudEventV1 } from "@posthorn/core";
import { type EventVector, validVectors } from "@posthorn/testkit";
import {
  expectPinnedChanges,
  expectRefused,
  indexObject,
  millisecondTime,
  subMillisecond,
} from "@posthorn/testkit/interop-pins";
import { CloudEvent as SdkCloudEvent } from "cloudevents";
import { describe, expect, it } from "vitest";

// Tests named "<vector>: cloudevents package limitation pinned: <reason>" assert what that package
// does to a vector it cannot carry, today. If one of them fails after a cloudevents upgrade, the
// package has most likely fixed that limitation: delete its entry in `plainLimitation` so the
// vector runs as a normal interop test.

// That package fills `time` with the current time when an event has none: the expected event is
// the vector plus that time. (Its constructor keeps the `time` string as given; only its toJSON
// goes through Date.)
function expected(event: CloudEvent, sdk: { time?: string }): CloudEvent {
  return event.time === undefined && sdk.time !== undefined
    ? event.cloneWith({ time: sdk.time })
    : event;
}

interface PlainLimitation {
  readonly reason: string;
  /** Asserts what the package's JSON (`plain`) does to the vector, given the event it sent. */
  pin(plain: Record<string, unknown>, sent: CloudEvent): void;
}

/** What the package's toJSON cannot write for this vector, if anything. */
function plainLimitation(vec: EventVector): PlainLimitation | undefined {
  const event = vec.event;
  const time = event.time;
  if (time !== undefined && subMillisecond(time)) {
    return {
      reason: "its toJSON writes time through Date, which keeps only milliseconds",
      pin: (plain, sent) =>
        expectPinnedChanges(CloudEvent.from(plain as never), sent, { time: millisecondTime(time) }),
    };
  }
  if (vec.tags.includes("binary-extension")) {
    return {
      reason: "its JSON writes a Binary extension as an object of indices",
      pin: (plain) => {
        const binaries = Object.entries(event).filter(([k, v]) => k !== "data" && isBytes(v));
        expect(binaries.length).toBeGreaterThan(0);
        for (const [name, bytes] of binaries) {
          expect(plain[name]).toEqual(indexObject(bytes as Uint8Array));
        }
        expectRefused(
          () => CloudEvent.from(plain as never),
          "InvalidEvent",
          new RegExp(`^${binaries[0]?.[0]} has a value of type object`),
        );
      },
    };
  }
  if (vec.tags.includes("empty-data") && vec.tags.includes("binary-data")) {
    return {
      reason: 'its JSON writes empty binary data as both data_base64 "" and data {}',
      pin: (plain) => {
        expect(plain.data_base64).toBe("");
        expect(plain.data).toEqual({});
        expectRefused(
          () => CloudEvent.from(plain as never),
          "InvalidEvent",
          /both data and data_base64/,
        );
      },
    };
  }
  return undefined;
}

describe("interop with the cloudevents package's CloudEvent", () => {
  for (const vec of validVectors) {
    it(`${vec.name}: Posthorn -> cloudevents -> Posthorn keeps everything`, () => {
      const sdk = new SdkCloudEvent(toCloudEventV1(vec.event) as never, false);
      const back = CloudEvent.from(sdk as never);
      expect(differences(expected(vec.event, sdk), back)).toEqual([]);
    });
    const limitation = plainLimitation(vec);
    if (limitation === undefined) {
      it(`${vec.name}: a plain CloudEventV1 object is accepted where an event is`, () => {
        const sdk = new SdkCloudEvent(toCloudEventV1(vec.event) as never, false);
        const plain = JSON.parse(JSON.stringify(sdk));
        expect(differences(expected(vec.event, sdk), CloudEvent.from(plain as never))).toEqual([]);
      });
    } else {
      it(`${vec.name}: cloudevents package limitation pinned: ${limitation.reason}`, () => {
        const sdk = new SdkCloudEvent(toCloudEventV1(vec.event) as never, false);
        const plain = JSON.parse(JSON.stringify(sdk)) as Record<string, unknown>;
        limitation.pin(plain, expected(vec.event, sdk));
      });
    }
  }
});
