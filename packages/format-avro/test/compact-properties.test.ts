import type { CloudEvent } from "@posthorn/core";
import { differences } from "@posthorn/core";
import { avroCompactFormat } from "@posthorn/format-avro";
import { arbitraryEvent, expectEventOrTypedError, propertyRuns } from "@posthorn/testkit";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

// The shared property suite generates nanosecond times, which timestamp-micros cannot hold (the
// encoder refuses them), and times whose offset puts them past 9999-12-31 in UTC, which cannot be
// written back as RFC 3339 in UTC; so the compact format runs the same properties on events whose
// time is cut to microseconds and within range.
const compact = avroCompactFormat();
const toMicros = (e: CloudEvent): CloudEvent => {
  const time = e.time;
  if (time === undefined) return e;
  if (Date.parse(time) >= Date.UTC(10000, 0, 1)) return e.cloneWith({ time: undefined });
  return e.cloneWith({ time: time.replace(/(\.\d{6})\d+/, "$1") });
};
const events = arbitraryEvent().map(toMicros);

describe(`format properties: avro-compact (${propertyRuns()} cases each)`, () => {
  it("arbitrary valid events round-trip equivalently", () => {
    fc.assert(
      fc.property(events, (event) => {
        expect(differences(event, compact.decode(compact.encode(event)))).toEqual([]);
      }),
      { numRuns: propertyRuns() },
    );
  });

  it("mutated and truncated encodings give an event or a typed error", () => {
    fc.assert(
      fc.property(
        events,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.nat(),
        (event, flips, cut) => {
          const bytes = compact.encode(event).slice();
          for (const [at, value] of flips) if (bytes.length > 0) bytes[at % bytes.length] = value;
          expectEventOrTypedError(() => compact.decode(bytes));
          expectEventOrTypedError(() =>
            compact.decode(bytes.subarray(0, cut % (bytes.length + 1))),
          );
        },
      ),
      { numRuns: propertyRuns() },
    );
  });
});
