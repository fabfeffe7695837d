import {
  createFetchHandler,
  fromHttpMessage,
  type HttpMessage,
  httpReceiver,
  toHttpMessage,
} from "@posthorn/binding-http";
import { type CloudEvent, differences } from "@posthorn/core";
import {
  arbitraryEvent,
  arbitraryHeaders,
  describeMappingProperties,
  propertyRuns,
} from "@posthorn/testkit";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FORMATS } from "./formats.js";

// Property tests of the HTTP mapping (>= 1,000 cases per path under CI=true): arbitrary valid
// events round-trip through binary mode, structured mode in every format and batch mode in every
// format that has one; arbitrary (hostile) headers and bodies decode to an event or a typed error.
// Then the same hostile requests go through the fetch handler: always an answer, never a 5xx.

const options = { formats: FORMATS, maxBodyBytes: 8 * 1024 * 1024 };
const one = (message: HttpMessage): CloudEvent => fromHttpMessage(message, options) as CloudEvent;

const contentTypes = fc.oneof(
  fc.constantFrom(
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents+json; charset=utf-8",
    "Application/CloudEvents-Batch+JSON",
    "application/cloudevents+avro",
    "application/cloudevents+protobuf",
    "application/cloudevents-batch+protobuf",
    "application/cloudevents",
    "text/plain",
    "text/plain; charset=iso-8859-1",
    "application/octet-stream",
    "application/xml",
    "application/vnd.example+json",
    "multipart/form-data; boundary=x",
    ";;;",
    "",
  ),
  fc.string({ maxLength: 30 }),
);

const jsonishBodies = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
  fc.constantFrom(
    '{"specversion":"1.0","id":"1","source":"/s","type":"t"}',
    '{"specversion":"0.3","id":"1","source":"/s","type":"t"}',
    '{"specversion":"1.0","id":"1","source":"/s","type":"t","__proto__":{"polluted":1}}',
    '{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"%%%"}',
    '[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{}]',
    `${"[".repeat(5000)}${"]".repeat(5000)}`,
  ),
);
const bodies: fc.Arbitrary<Uint8Array | string | undefined> = fc.oneof(
  fc.constant(undefined),
  fc.uint8Array({ maxLength: 256 }),
  fc.string({ unit: "binary", maxLength: 120 }),
  jsonishBodies,
);

const validBase: Record<string, string> = {
  "ce-specversion": "1.0",
  "ce-id": "1",
  "ce-source": "/s",
  "ce-type": "t",
};

/**
 * Hostile headers: the testkit's (ce- names in every case, __proto__, CR/LF, %-sequences) plus a
 * content type, half of them over a valid binary-mode base so the data and attribute paths are
 * reached too.
 */
const hostileMessages = fc
  .record({
    headers: arbitraryHeaders("ce-"),
    base: fc.boolean(),
    contentType: fc.option(contentTypes),
    body: bodies,
  })
  .map(({ headers, base, contentType, body }) => {
    const h: Record<string, string> = base ? { ...validBase, ...headers } : { ...headers };
    if (contentType !== null) h["content-type"] = contentType;
    return { headers: h, body };
  });

describeMappingProperties<{
  headers: Record<string, string>;
  body: Uint8Array | string | undefined;
}>({
  name: "http",
  paths: [
    {
      label: "binary",
      roundTrip: (e) => one(toHttpMessage(e)),
    },
    ...FORMATS.map((format) => ({
      label: `structured/${format.name}`,
      roundTrip: (e: CloudEvent) => one(toHttpMessage(e, { mode: "structured", format })),
    })),
  ],
  hostileMessages,
  decode: (message) => fromHttpMessage(message, options),
});

describe(`http batch properties (${propertyRuns()} cases each)`, () => {
  for (const format of FORMATS.filter((f) => f.batchContentType !== undefined)) {
    it(`batch/${format.name}: arbitrary batches round-trip equivalently`, () => {
      fc.assert(
        fc.property(fc.array(arbitraryEvent(), { maxLength: 4 }), (events) => {
          const back = fromHttpMessage(toHttpMessage(events, { mode: "batch", format }), options);
          expect(Array.isArray(back)).toBe(true);
          const list = back as CloudEvent[];
          expect(list).toHaveLength(events.length);
          for (const [i, e] of list.entries()) {
            expect(differences(events[i] as CloudEvent, e)).toEqual([]);
          }
        }),
        { numRuns: propertyRuns() },
      );
    });
  }
});

describe(`hostile requests through the fetch handler (${propertyRuns()} cases)`, () => {
  it("every request gets a 2xx or a 4xx, never a 5xx, and nothing pollutes Object.prototype", async () => {
    let delivered = 0;
    const handle = createFetchHandler({
      formats: FORMATS,
      maxHeaderCount: 50,
      onDelivery: () => {
        delivered++;
      },
    });
    const statuses = new Map<number, number>();
    let refusedByPlatform = 0;
    await fc.assert(
      fc.asyncProperty(
        hostileMessages,
        fc.constantFrom("POST", "PUT", "POST", "PATCH"),
        async ({ headers, body }, method) => {
          // A Web Headers refuses CR, LF, NUL and characters past U+00FF in values and anything
          // but a token in names: such a header cannot reach a fetch handler at all. Keep the
          // ones it takes, and count what it refused.
          const h = new Headers();
          for (const [name, value] of Object.entries(headers)) {
            try {
              h.append(name, value);
            } catch {
              refusedByPlatform++;
            }
          }
          const request = new Request("http://receiver.test/events", {
            method,
            headers: h,
            body: (body === undefined ? null : body) as BodyInit | null,
          });
          const response = await handle(request);
          await response.arrayBuffer();
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
          expect(response.status, `status for ${JSON.stringify(headers)}`).toBeLessThan(500);
          expect(Object.keys(Object.prototype)).toEqual([]);
        },
      ),
      { numRuns: propertyRuns() },
    );
    const summary = [...statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}: ${n}`);
    console.log(
      `hostile http requests: ${summary.join(", ")}; ${delivered} events delivered; ${refusedByPlatform} headers refused by the Headers class itself`,
    );
    // The generator must reach the decoder's error paths, not only the platform's refusals.
    expect(statuses.get(400) ?? 0).toBeGreaterThan(0);
    expect(statuses.get(415) ?? 0).toBeGreaterThan(0);
  });

  it("valid events in every mode through the fetch handler are accepted (204) and equivalent", async () => {
    const seen: CloudEvent[] = [];
    const receiver = httpReceiver({
      formats: FORMATS,
      maxBodyBytes: 8 * 1024 * 1024,
      onDelivery: (d) => {
        if (d.event) seen.push(d.event);
      },
    });
    const handle = createFetchHandler(receiver);
    const modes = [
      { mode: "binary" as const },
      ...FORMATS.map((format) => ({ mode: "structured" as const, format })),
    ];
    await fc.assert(
      fc.asyncProperty(arbitraryEvent(), fc.constantFrom(...modes), async (event, mode) => {
        seen.length = 0;
        const { headers, body } = toHttpMessage(event, mode);
        const response = await handle(
          new Request("http://receiver.test/events", {
            method: "POST",
            headers,
            body: body as BodyInit,
          }),
        );
        expect(response.status).toBe(204);
        expect(seen).toHaveLength(1);
        expect(differences(event, seen[0] as CloudEvent)).toEqual([]);
      }),
      { numRuns: Math.ceil(propertyRuns() / 2) },
    );
    await receiver.close();
  });
});
