import { fromHttpMessage, toHttpMessage } from "@posthorn/binding-http";
import {
  CloudEvent,
  canonicalTimestamp,
  differences,
  encodeHeaderValue,
  isBytes,
  isJsonContentType,
  parseContentType,
  toCloudEventV1,
  utf8Decode,
} from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { type EventVector, validVectors } from "@posthorn/testkit";
import { HTTP, CloudEvent as SdkCloudEvent } from "cloudevents";
import { describe, expect, it } from "vitest";

// Interop with the `cloudevents` npm package (v10), both directions, binary and structured mode.
// Every skip reason below is computed from the vector and from what that package does with it,
// never from a list of names. Facts about the package behind them:
// - it keeps `time` through `Date`, so only millisecond precision survives;
// - it neither percent-encodes nor percent-decodes header values (3.1.3.2);
// - HTTP.binary labels every message `application/json; charset=utf-8` when the event has no
//   datacontenttype, even binary data;
// - its constructor, and so HTTP.toEvent, fills in `time` when an event has none;
// - it writes Integer and Boolean extensions as typed header values and a Binary extension as
//   the array itself (no base64).

type Mode = "binary" | "structured";
const MODES: Mode[] = ["binary", "structured"];
const SDK_DEFAULT_CONTENT_TYPE = "application/json; charset=utf-8";

function attributeStrings(event: CloudEvent): Array<[string, unknown]> {
  return Object.entries(event).filter(([k]) => k !== "data");
}

/** Why the package cannot build this vector at all (its constructor throws), if it cannot. */
function sdkRefuses(vector: EventVector): string | undefined {
  try {
    new SdkCloudEvent(toCloudEventV1(vector.event) as never, true);
    return undefined;
  } catch (err) {
    return `cloudevents refuses the event: ${(err as Error).message}`;
  }
}

function timeLoss(vector: EventVector): string | undefined {
  const time = vector.event.time;
  if (time === undefined) return undefined;
  return canonicalTimestamp(new Date(time).toISOString()) === canonicalTimestamp(time)
    ? undefined
    : "cloudevents keeps time through Date, which holds only milliseconds";
}

function commonReason(vector: EventVector): string | undefined {
  return sdkRefuses(vector) ?? timeLoss(vector);
}

/** Why their message, decoded by Posthorn, cannot equal the vector. */
function theirsToOursReason(vector: EventVector, mode: Mode): string | undefined {
  const common = commonReason(vector);
  if (common) return common;
  const e = vector.event;
  if (attributeStrings(e).some(([, v]) => isBytes(v))) {
    return "cloudevents has no Binary extension form: it writes the Uint8Array itself";
  }
  if (mode === "structured" && isBytes(e.data) && e.data.length === 0) {
    return "cloudevents HTTP.structured writes empty binary data as both data and data_base64";
  }
  if (mode === "binary") {
    if (typeof e.data === "string" && isJsonContentType(e.datacontenttype ?? "application/json")) {
      return "cloudevents HTTP.binary writes a string under a JSON type bare, not as JSON";
    }
    if (attributeStrings(e).some(([, v]) => typeof v === "string" && /%[0-9A-Fa-f]{2}/.test(v))) {
      return "cloudevents does not percent-encode, so a literal %XX in a value reads as an escape";
    }
    if (e.datacontenttype === undefined && isBytes(e.data)) {
      return `cloudevents labels binary data without datacontenttype as ${SDK_DEFAULT_CONTENT_TYPE}`;
    }
  }
  return undefined;
}

/** Why Posthorn's message, decoded by the package, cannot equal the vector. */
function oursToTheirsReason(vector: EventVector, mode: Mode): string | undefined {
  const common = commonReason(vector);
  if (common) return common;
  const e = vector.event;
  const data = e.data;
  if (mode === "structured" && isBytes(data) && data.length > 0) {
    return "cloudevents HTTP.toEvent restores data_base64 as a Uint32Array, not bytes";
  }
  if (mode === "structured" && (data === false || data === null || data === 0 || data === "")) {
    return "cloudevents HTTP.toEvent drops falsy data in structured mode";
  }
  const jsonType = e.datacontenttype ?? "application/json";
  if (mode === "binary" && data !== undefined && !isBytes(data) && isJsonContentType(jsonType)) {
    if (data === null || typeof data === "number" || typeof data === "boolean") {
      return "cloudevents HTTP.toEvent reads a bare JSON number, boolean or null as a string";
    }
    if (parseContentType(jsonType)?.mediaType !== "application/json") {
      return "cloudevents HTTP.toEvent parses JSON data only under application/json itself";
    }
  }
  if (mode === "binary") {
    for (const [name, value] of attributeStrings(e)) {
      // datacontenttype travels as Content-Type, which is not percent-encoded.
      if (name === "datacontenttype") continue;
      if (typeof value === "string" && encodeHeaderValue(value) !== value) {
        return `cloudevents does not percent-decode header values (${name})`;
      }
    }
  }
  return undefined;
}

/** Their message in the shape our decoder (and any HTTP stack) takes: string header values. */
function sdkMessage(sdkEvent: SdkCloudEvent, mode: Mode) {
  const message = mode === "binary" ? HTTP.binary(sdkEvent) : HTTP.structured(sdkEvent);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.headers)) {
    if (value !== undefined) headers[name] = String(value);
  }
  const body = message.body;
  const bytes =
    body === undefined || body === null
      ? undefined
      : isBytes(body)
        ? body
        : typeof body === "string"
          ? body
          : JSON.stringify(body);
  return { headers, body: bytes };
}

describe("interop: cloudevents HTTP.binary / HTTP.structured -> Posthorn fromHttpMessage", () => {
  for (const mode of MODES) {
    describe(mode, () => {
      for (const vector of validVectors) {
        const reason = theirsToOursReason(vector, mode);
        it.skipIf(reason !== undefined)(
          `${vector.name}${reason ? ` (skipped: ${reason})` : ""}`,
          () => {
            const sdkEvent = new SdkCloudEvent(toCloudEventV1(vector.event) as never, true);
            const back = fromHttpMessage(sdkMessage(sdkEvent, mode), {
              formats: [json],
              maxBodyBytes: 8 << 20,
            }) as CloudEvent;
            // The event they sent: the vector plus the `time` their constructor fills in.
            let expected = CloudEvent.from(sdkEvent as never);
            expect(
              differences(vector.event, expected).filter((d) => !d.startsWith("time:")),
            ).toEqual([]);
            // Their documented default for events without datacontenttype, in binary mode.
            if (mode === "binary" && expected.datacontenttype === undefined) {
              expected = expected.cloneWith({ datacontenttype: SDK_DEFAULT_CONTENT_TYPE });
            }
            expect(differences(expected, back)).toEqual([]);
          },
        );
      }
    });
  }
});

describe("interop: Posthorn toHttpMessage -> cloudevents HTTP.toEvent", () => {
  for (const mode of MODES) {
    describe(mode, () => {
      for (const vector of validVectors) {
        const reason = oursToTheirsReason(vector, mode);
        it.skipIf(reason !== undefined)(
          `${vector.name}${reason ? ` (skipped: ${reason})` : ""}`,
          () => {
            const { headers, body } = toHttpMessage(vector.event, { mode, format: json });
            const ct = headers["content-type"];
            // Text bodies as strings, as an HTTP server framework hands them over; bytes otherwise.
            const text =
              mode === "structured" || (ct !== undefined && /json|text|xml/.test(ct))
                ? utf8Decode(body)
                : body;
            const theirs = HTTP.toEvent({
              headers,
              body: body.length === 0 ? undefined : text,
            }) as SdkCloudEvent;
            // HTTP.toEvent fills in `time` with the current time when the message has none.
            const plain: Record<string, unknown> = {
              ...(theirs as unknown as Record<string, unknown>),
            };
            if (vector.event.time === undefined) delete plain.time;
            expect(differences(vector.event, plain as never)).toEqual([]);
          },
        );
      }
    });
  }
});
