import { CloudEvent, differences, toCloudEventV1 } from "@posthorn/core";
import { validVectors } from "@posthorn/testkit";
import { CloudEvent as SdkCloudEvent } from "cloudevents";
import { describe, expect, it } from "vitest";

// The `cloudevents` package turns `time` into a Date and back, so it keeps only milliseconds and
// writes UTC: equivalence compares instants, which that loses below the millisecond.
function sdkCannotCarry(event: CloudEvent): string | undefined {
  const fraction = /\.(\d+)/.exec(event.time ?? "")?.[1] ?? "";
  if (fraction.replace(/0+$/, "").length > 3)
    return "the cloudevents package keeps only milliseconds of time";
  return undefined;
}

// That package also fills `time` with the current time when an event has none: the expected
// event is the vector plus that time.
function expected(event: CloudEvent, sdk: { time?: string }): CloudEvent {
  return event.time === undefined && sdk.time !== undefined
    ? event.cloneWith({ time: sdk.time })
    : event;
}

describe("interop with the cloudevents package's CloudEvent", () => {
  for (const vec of validVectors) {
    const reason = sdkCannotCarry(vec.event);
    it.skipIf(reason !== undefined)(
      `${vec.name}: Posthorn -> cloudevents -> Posthorn keeps everything${reason ? ` (skipped: ${reason})` : ""}`,
      () => {
        const sdk = new SdkCloudEvent(toCloudEventV1(vec.event) as never, false);
        const back = CloudEvent.from(sdk as never);
        expect(differences(expected(vec.event, sdk), back)).toEqual([]);
      },
    );
    // Its toJSON writes Binary extensions as objects of indices, and empty binary data as both
    // `data_base64: ""` and `data: {}`: those have no plain-object form to accept.
    const plainReason =
      reason ??
      (vec.tags.includes("binary-extension")
        ? "the cloudevents package's JSON has no form for Binary extensions"
        : undefined) ??
      (vec.tags.includes("empty-data") && vec.tags.includes("binary-data")
        ? "the cloudevents package writes empty binary data as data {}"
        : undefined);
    it.skipIf(plainReason !== undefined)(
      `${vec.name}: a plain CloudEventV1 object is accepted where an event is${plainReason ? ` (skipped: ${plainReason})` : ""}`,
      () => {
        const sdk = new SdkCloudEvent(toCloudEventV1(vec.event) as never, false);
        const plain = JSON.parse(JSON.stringify(sdk));
        expect(differences(expected(vec.event, sdk), CloudEvent.from(plain))).toEqual([]);
      },
    );
  }
});
