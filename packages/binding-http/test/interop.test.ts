import { fromHttpMessage, toHttpMessage } from "@posthorn/binding-http";
import {
  base64Encode,
  CloudEvent,
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
import {
  expectPinnedChanges,
  expectRefused,
  indexObject,
  millisecondTime,
  subMillisecond,
} from "@posthorn/testkit/interop-pins";
import { HTTP, CloudEvent as SdkCloudEvent } from "cloudevents";
import { describe, expect, it } from "vitest";

// Interop with the `cloudevents` npm package (v10), both directions, binary and structured mode.
// A vector that package cannot carry is not skipped: its test, named "<vector>: cloudevents
// package limitation pinned: <reason>", runs the same round trip and asserts exactly what the
// package does to it today. If such a test fails after a cloudevents upgrade, the package has
// most likely fixed that limitation: delete the case from `theirsToOurs`/`oursToTheirs` so the
// vector runs as a normal interop test. Each case is chosen from the vector itself, never from a
// list of names. Facts about the package behind them:
// - it writes `time` through `Date` (HTTP.binary headers, toJSON, HTTP.toEvent), so only
//   millisecond precision survives;
// - it neither percent-encodes nor percent-decodes header values (3.1.3.2);
// - HTTP.binary labels every message `application/json; charset=utf-8` when the event has no
//   datacontenttype, even binary data;
// - its constructor, and so HTTP.toEvent, fills in `time` when an event has none;
// - it writes Integer and Boolean extensions as typed header values and a Binary extension as
//   the array itself (no base64): String() of it in a header, an object of indices in JSON.

type Mode = "binary" | "structured";
const MODES: Mode[] = ["binary", "structured"];
const SDK_DEFAULT_CONTENT_TYPE = "application/json; charset=utf-8";
const DECODE_OPTIONS = { formats: [json], maxBodyBytes: 8 << 20 };

function attributeStrings(event: CloudEvent): Array<[string, unknown]> {
  return Object.entries(event).filter(([k]) => k !== "data");
}

function binaryExtensions(event: CloudEvent): Array<[string, Uint8Array]> {
  return attributeStrings(event).filter((e): e is [string, Uint8Array] => isBytes(e[1]));
}

/** Percent-decodes each run of `%XX` escapes as UTF-8, leaving any other `%` as it is. */
function percentDecoded(value: string): string {
  return value.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) =>
    new TextDecoder("utf-8", { fatal: true }).decode(
      Uint8Array.from(run.slice(1).split("%"), (hex) => Number.parseInt(hex, 16)),
    ),
  );
}

/** Whether a content type's text is UTF-8: no charset, or utf-8 / us-ascii. */
function utf8Charset(contentType: string | undefined): boolean {
  const charset = parseContentType(contentType ?? "")?.parameters.charset?.toLowerCase();
  return charset === undefined || charset === "utf-8" || charset === "us-ascii";
}

function isUtf8(bytes: Uint8Array): boolean {
  try {
    utf8Decode(bytes);
    return true;
  } catch {
    return false;
  }
}

interface Limitation<Trip> {
  readonly reason: string;
  pin(trip: Trip): void;
}

/** Their message, what Posthorn should read from it, and the decoding itself. */
interface TheirTrip {
  readonly message: { headers: Record<string, string>; body: string | Uint8Array | undefined };
  /** The event they sent, as a faithful decoder would read it. */
  readonly sent: CloudEvent;
  decode(): CloudEvent;
}

/** Posthorn's message and what the package made of it. */
interface OurTrip {
  readonly headers: Record<string, string>;
  readonly body: Uint8Array;
  readonly theirs: SdkCloudEvent;
  /** Their event as a plain object, without the `time` they fill in when the vector has none. */
  readonly plain: Record<string, unknown>;
}

/** What the package does to the vector on its way to Posthorn, if it cannot carry it. */
function theirsToOurs(vector: EventVector, mode: Mode): Limitation<TheirTrip> | undefined {
  const e = vector.event;
  const time = e.time;
  if (time !== undefined && subMillisecond(time)) {
    return {
      reason: "cloudevents keeps time through Date, which holds only milliseconds",
      pin: (t) => expectPinnedChanges(t.decode(), t.sent, { time: millisecondTime(time) }),
    };
  }
  const binaries = binaryExtensions(e);
  const [firstBinary] = binaries;
  if (firstBinary !== undefined && mode === "binary") {
    return {
      reason: "cloudevents HTTP.binary writes a Binary extension as String() of its bytes",
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
      reason: "cloudevents HTTP.structured writes a Binary extension as an object of indices",
      pin: (t) => {
        const body = JSON.parse(String(t.message.body)) as Record<string, unknown>;
        for (const [name, bytes] of binaries) expect(body[name]).toEqual(indexObject(bytes));
        expectRefused(
          t.decode,
          "InvalidEvent",
          new RegExp(`^${firstBinary[0]} has a value of type object`),
        );
      },
    };
  }
  if (mode === "structured" && isBytes(e.data) && e.data.length === 0) {
    return {
      reason: 'cloudevents HTTP.structured writes empty binary data as data_base64 "" and data {}',
      pin: (t) => {
        const body = JSON.parse(String(t.message.body)) as Record<string, unknown>;
        expect(body.data_base64).toBe("");
        expect(body.data).toEqual({});
        expectRefused(t.decode, "InvalidEvent", /both data and data_base64/);
      },
    };
  }
  if (mode === "binary") {
    const data = e.data;
    if (typeof data === "string" && !utf8Charset(e.datacontenttype)) {
      return {
        reason: "cloudevents HTTP.binary writes a string as UTF-8 whatever charset it is labelled",
        pin: (t) => {
          expect(t.message.body).toBe(data);
          expectPinnedChanges(t.decode(), t.sent, { data: new TextEncoder().encode(data) });
        },
      };
    }
    if (typeof data === "string" && isJsonContentType(e.datacontenttype ?? "application/json")) {
      return {
        reason: "cloudevents HTTP.binary writes a string under a JSON type bare, not as JSON",
        pin: (t) => {
          expect(t.message.body).toBe(data);
          expectRefused(t.decode, "MalformedInput", /not valid JSON/);
        },
      };
    }
    const lookalikes = attributeStrings(e).filter(
      (a): a is [string, string] => typeof a[1] === "string" && /%[0-9A-Fa-f]{2}/.test(a[1]),
    );
    if (lookalikes.length > 0) {
      return {
        reason:
          "cloudevents does not percent-encode, so a literal %XX in a value reads as an escape",
        pin: (t) => {
          for (const [name, value] of lookalikes)
            expect(t.message.headers[`ce-${name}`]).toBe(value);
          expectPinnedChanges(
            t.decode(),
            t.sent,
            Object.fromEntries(lookalikes.map(([name, value]) => [name, percentDecoded(value)])),
          );
        },
      };
    }
    if (e.datacontenttype === undefined && isBytes(data)) {
      return {
        reason: `cloudevents labels binary data without datacontenttype as ${SDK_DEFAULT_CONTENT_TYPE}`,
        pin: (t) => {
          expect(t.message.headers["content-type"]).toBe(SDK_DEFAULT_CONTENT_TYPE);
          expect(t.message.body).toEqual(data);
          expectRefused(t.decode, "MalformedInput", /not valid UTF-8/);
        },
      };
    }
  }
  return undefined;
}

/** What the package does to Posthorn's message for the vector, if it cannot read it back. */
function oursToTheirs(vector: EventVector, mode: Mode): Limitation<OurTrip> | undefined {
  const e = vector.event;
  const time = e.time;
  if (time !== undefined && subMillisecond(time)) {
    return {
      reason: "cloudevents keeps time through Date, which holds only milliseconds",
      pin: (t) => expectPinnedChanges(t.plain as never, e, { time: millisecondTime(time) }),
    };
  }
  const data = e.data;
  if (mode === "structured" && isBytes(data) && data.length > 0) {
    return {
      reason: "cloudevents HTTP.toEvent restores data_base64 as a Uint32Array, not bytes",
      pin: (t) => {
        const theirs = t.theirs.data as unknown;
        expect(theirs).toBeInstanceOf(Uint32Array);
        const elements = theirs as Uint32Array;
        expect(elements.length).toBe(data.length);
        expect(elements.every((n) => n < 256)).toBe(true);
        expect(Buffer.from(Uint8Array.from(elements)).equals(Buffer.from(data))).toBe(true);
        expect(t.theirs.data_base64).toBe(base64Encode(data));
        // Everything else arrives intact.
        const { data: _, data_base64: __, ...rest } = t.plain;
        expect(differences(e.cloneWith({ data: undefined }), rest as never)).toEqual([]);
      },
    };
  }
  // Empty text is not here: equivalence holds empty data and no data to be the same.
  if (mode === "structured" && (data === false || data === null || data === 0)) {
    return {
      reason: "cloudevents HTTP.toEvent drops falsy data in structured mode",
      pin: (t) => {
        expect(t.theirs.data).toBeUndefined();
        // Without data, no datacontenttype is implied (application/json stood for the data's).
        const implied = e.datacontenttype === undefined ? { datacontenttype: undefined } : {};
        expectPinnedChanges(t.plain as never, e, { data: undefined, ...implied });
      },
    };
  }
  const ct = e.datacontenttype;
  const textBody = ct !== undefined && /json|text|xml/.test(ct);
  if (mode === "binary" && isBytes(data) && textBody && utf8Charset(ct) && !isUtf8(data)) {
    const replaced = new TextDecoder().decode(data);
    return {
      reason:
        "an HTTP stack hands cloudevents a text body as a string: bytes that are not UTF-8 are replaced",
      pin: (t) => {
        expect(t.theirs.data).toBe(replaced);
        expectPinnedChanges(t.plain as never, e, { data: replaced });
      },
    };
  }
  const jsonType = e.datacontenttype ?? "application/json";
  if (mode === "binary" && data !== undefined && !isBytes(data) && isJsonContentType(jsonType)) {
    const unparsed = (reason: string): Limitation<OurTrip> => ({
      reason,
      pin: (t) => {
        expect(typeof t.theirs.data).toBe("string");
        expectPinnedChanges(t.plain as never, e, { data: utf8Decode(t.body) });
      },
    });
    if (data === null || typeof data === "number" || typeof data === "boolean") {
      return unparsed(
        "cloudevents HTTP.toEvent reads a bare JSON number, boolean or null as a string",
      );
    }
    if (parseContentType(jsonType)?.mediaType !== "application/json") {
      return unparsed(
        "cloudevents HTTP.toEvent parses JSON data only under application/json itself",
      );
    }
  }
  if (mode === "binary") {
    // datacontenttype travels as Content-Type, which is not percent-encoded.
    const encoded = attributeStrings(e).filter(
      (a): a is [string, string] =>
        a[0] !== "datacontenttype" && typeof a[1] === "string" && encodeHeaderValue(a[1]) !== a[1],
    );
    if (encoded.length > 0) {
      return {
        reason: `cloudevents does not percent-decode header values (${encoded.map(([n]) => n).join(", ")})`,
        pin: (t) =>
          expectPinnedChanges(
            t.plain as never,
            e,
            Object.fromEntries(encoded.map(([name, value]) => [name, encodeHeaderValue(value)])),
          ),
      };
    }
  }
  return undefined;
}

/** Their message in the shape our decoder (and any HTTP stack) takes: string header values. */
function sdkMessage(sdkEvent: SdkCloudEvent, mode: Mode): TheirTrip["message"] {
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

function theirTrip(vector: EventVector, mode: Mode): TheirTrip {
  const sdkEvent = new SdkCloudEvent(toCloudEventV1(vector.event) as never, true);
  const message = sdkMessage(sdkEvent, mode);
  // The event they sent: the vector plus the `time` their constructor fills in.
  let sent = CloudEvent.from(sdkEvent as never);
  expect(differences(vector.event, sent).filter((d) => !d.startsWith("time:"))).toEqual([]);
  // Their documented default for events without datacontenttype, in binary mode.
  if (mode === "binary" && sent.datacontenttype === undefined) {
    sent = sent.cloneWith({ datacontenttype: SDK_DEFAULT_CONTENT_TYPE });
  }
  return { message, sent, decode: () => fromHttpMessage(message, DECODE_OPTIONS) as CloudEvent };
}

function ourTrip(vector: EventVector, mode: Mode): OurTrip {
  const { headers, body } = toHttpMessage(vector.event, { mode, format: json });
  const ct = headers["content-type"];
  // Text bodies as strings, as an HTTP server framework's text parser hands them over (decoded
  // in their charset, bytes that do not decode replaced); bytes otherwise.
  const text =
    mode === "structured" || (ct !== undefined && /json|text|xml/.test(ct))
      ? new TextDecoder(utf8Charset(ct) ? "utf-8" : "latin1").decode(body)
      : body;
  const theirs = HTTP.toEvent({
    headers,
    body: body.length === 0 ? undefined : text,
  }) as SdkCloudEvent;
  // HTTP.toEvent fills in `time` with the current time when the message has none.
  const plain: Record<string, unknown> = { ...(theirs as unknown as Record<string, unknown>) };
  if (vector.event.time === undefined) delete plain.time;
  return { headers, body, theirs, plain };
}

describe("interop: cloudevents HTTP.binary / HTTP.structured -> Posthorn fromHttpMessage", () => {
  for (const mode of MODES) {
    describe(mode, () => {
      for (const vector of validVectors) {
        const limitation = theirsToOurs(vector, mode);
        if (limitation === undefined) {
          it(vector.name, () => {
            const trip = theirTrip(vector, mode);
            expect(differences(trip.sent, trip.decode())).toEqual([]);
          });
        } else {
          it(`${vector.name}: cloudevents package limitation pinned: ${limitation.reason}`, () => {
            limitation.pin(theirTrip(vector, mode));
          });
        }
      }
    });
  }
});

describe("interop: Posthorn toHttpMessage -> cloudevents HTTP.toEvent", () => {
  for (const mode of MODES) {
    describe(mode, () => {
      for (const vector of validVectors) {
        const limitation = oursToTheirs(vector, mode);
        if (limitation === undefined) {
          it(vector.name, () => {
            const trip = ourTrip(vector, mode);
            expect(differences(vector.event, trip.plain as never)).toEqual([]);
          });
        } else {
          it(`${vector.name}: cloudevents package limitation pinned: ${limitation.reason}`, () => {
            limitation.pin(ourTrip(vector, mode));
          });
        }
      }
    });
  }
});
