import { CloudEvent, type CloudEventInit, isPosthornError, utf8Encode } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { arbitraryEvent, propertyRuns } from "@posthorn/testkit";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

// Large binary data is written and read around JSON.stringify and JSON.parse (the base64 spliced
// in after the other members, and read back from the bytes). These properties hold both paths to
// what the plain ones give: the same bytes when encoding, and on decoding the same event, or an
// error of the same code, for valid texts and for texts changed where the shortcut looks.

const runs = { numRuns: Math.max(100, Math.floor(propertyRuns() / 3)) };

const withLargeData = fc
  .tuple(
    arbitraryEvent(),
    // fast-check keeps lengths small unless told: sizes on both sides of both thresholds.
    fc.oneof(
      fc.uint8Array({ maxLength: 300 }),
      fc.uint8Array({ minLength: 700, maxLength: 6000, size: "max" }),
    ),
  )
  .map(([event, data]) =>
    event.cloneWith({ datacontenttype: "application/octet-stream", data } as never),
  );

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

type Outcome = { text: string } | { code: string };

/** What decoding gives, the plain way: the whole text through JSON.parse, then the constructor. */
function reference(bytes: Uint8Array): Outcome {
  let value: unknown;
  try {
    value = JSON.parse(strictUtf8.decode(bytes));
  } catch {
    return { code: "MalformedInput" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { code: "MalformedInput" };
  }
  try {
    return { text: JSON.stringify(new CloudEvent(value as CloudEventInit)) };
  } catch (err) {
    if (isPosthornError(err)) return { code: err.code };
    throw err;
  }
}

function decoded(bytes: Uint8Array): Outcome {
  try {
    return { text: JSON.stringify(json.decode(bytes)) };
  } catch (err) {
    if (isPosthornError(err)) return { code: err.code };
    throw err;
  }
}

const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString("utf8");

describe("JSON format, large binary data", () => {
  it("encodes to the bytes JSON.stringify gives, single events and batches", () => {
    fc.assert(
      fc.property(withLargeData, (event) => {
        expect(Buffer.from(json.encode(event))).toEqual(Buffer.from(JSON.stringify(event)));
      }),
      runs,
    );
    fc.assert(
      fc.property(fc.array(withLargeData, { maxLength: 4 }), (events) => {
        expect(Buffer.from(json.encodeBatch(events))).toEqual(Buffer.from(JSON.stringify(events)));
      }),
      runs,
    );
  });

  it("decodes what it encodes to an event with the same members, in the same order", () => {
    fc.assert(
      fc.property(withLargeData, (event) => {
        const bytes = json.encode(event);
        expect(decoded(bytes)).toEqual({ text: JSON.stringify(event) });
        expect(decoded(bytes)).toEqual(reference(bytes));
      }),
      runs,
    );
  });

  // Each change keeps or breaks the text in a way the shortcut has to notice.
  const changes: Record<string, (t: string, at: number) => string> = {
    "whitespace after the object": (t) => `${t} \n\t`,
    "whitespace inside the member": (t) => t.replace('"data_base64":"', '"data_base64" : "'),
    "an escaped slash in the base64": (t, at) => t.slice(0, at) + t.slice(at).replace("/", "\\/"),
    "a \\u escape in the base64": (t, at) => t.slice(0, at) + t.slice(at).replace("A", "\\u0041"),
    "a character outside base64": (t, at) => `${t.slice(0, at)}-${t.slice(at + 1)}`,
    "a character outside ASCII": (t, at) => `${t.slice(0, at)}é${t.slice(at + 1)}`,
    // U+0141's low byte is that of "A", which is all Node's base64 decoder reads of it.
    "a character above U+00FF": (t, at) => `${t.slice(0, at)}Ł${t.slice(at + 1)}`,
    "a \\u escape above U+00FF": (t, at) => `${t.slice(0, at)}\\u0141${t.slice(at + 1)}`,
    "padding in the middle": (t, at) => `${t.slice(0, at)}=${t.slice(at + 1)}`,
    "a quote in the base64": (t, at) => `${t.slice(0, at)}"${t.slice(at + 1)}`,
    "cut in the base64": (t, at) => `${t.slice(0, at)}"}`,
    "cut before the member": (t) =>
      `${t.slice(0, t.indexOf(',"data_base64"') - 3)},"data_base64":"${"QUJD".repeat(400)}"}`,
    "data_base64 also earlier": (t) => t.replace("{", '{"data_base64":"QUJD",'),
    "data also given": (t) => t.replace("{", '{"data":{"x":1},'),
    "the member nested one level": (t) =>
      t.replace(',"data_base64":"', ',"x":{"y":"z"},"data_base64":"'),
    "an unclosed string before it": (t) => t.replace('"specversion":"1.0"', '"specversion":"1.0'),
    "an unclosed object before it": (t) =>
      t.replace('"specversion":"1.0"', '"x":{"specversion":"1.0"'),
    "not an object": (t) => `[${t.slice(1)}`,
  };

  for (const [name, change] of Object.entries(changes)) {
    it(`decodes as JSON.parse would with ${name}`, () => {
      fc.assert(
        fc.property(withLargeData, fc.nat(), (event, pick) => {
          const original = text(json.encode(event));
          const start = original.indexOf(',"data_base64":"') + 16;
          const end = original.length - 2;
          if (start < 16 || end - start < 4) return;
          const at = start + (pick % (end - start));
          const bytes = utf8Encode(change(original, at));
          expect(decoded(bytes)).toEqual(reference(bytes));
        }),
        runs,
      );
    });
  }

  it("refuses data_base64 with a character above U+00FF whose low byte is base64", () => {
    for (const base64 of ["\\u0141AAA", "Ł".concat("A".repeat(2047))]) {
      const bytes = utf8Encode(
        `{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"${base64}"}`,
      );
      expect(decoded(bytes)).toEqual({ code: "InvalidEvent" });
    }
  });

  it("reads invalid UTF-8 before the member as MalformedInput, as the plain path does", () => {
    const event = new CloudEvent({
      specversion: "1.0",
      id: "1",
      source: "/s",
      type: "t",
      subject: "ab",
      datacontenttype: "application/octet-stream",
      data: new Uint8Array(4096).fill(7),
    });
    const bytes = Buffer.from(json.encode(event));
    const at = bytes.indexOf('"ab"') + 1;
    bytes[at] = 0xff;
    expect(decoded(bytes)).toEqual({ code: "MalformedInput" });
  });
});
