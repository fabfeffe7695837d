import { connect } from "node:net";
import {
  createFetchHandler,
  createNodeHandler,
  DEFAULT_MAX_BODY_BYTES,
  fromHttpMessage,
  type HttpReceiverOptions,
  toHttpMessage,
} from "@posthorn/binding-http";
import { CloudEvent } from "@posthorn/core";
import { json } from "@posthorn/format-json";
import { arbitraryEvent, expectTypedError, propertyRuns } from "@posthorn/testkit";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { FORMATS } from "./formats.js";
import { startServer, type TestServer } from "./servers.js";

// Named attacks on the HTTP binding, each answered with a 4xx (or decoded safely), never a 5xx,
// a crash, a hang or a polluted prototype.

const base = { "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t" };
const URL_ = "http://receiver.test/events";

/** A fetch handler that records the events it accepts. */
function receiver(options: HttpReceiverOptions = {}) {
  const events: CloudEvent[] = [];
  const handle = createFetchHandler({
    formats: FORMATS,
    ...options,
    onDelivery: (d) => {
      if (d.event) events.push(d.event);
    },
  });
  const send = async (
    headers: HeadersInit,
    body?: BodyInit | Uint8Array | null,
  ): Promise<{ status: number; text: string }> => {
    const response = await handle(
      new Request(URL_, {
        method: "POST",
        headers,
        body: (body ?? null) as BodyInit | null,
        duplex: "half",
      } as RequestInit),
    );
    return { status: response.status, text: await response.text() };
  };
  return { events, send };
}

const servers: TestServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});

/** Writes a raw HTTP/1.1 request (bytes as given) to a node:http receiver and reads the status. */
async function rawRequest(head: Buffer, body = Buffer.alloc(0)): Promise<number> {
  const events: CloudEvent[] = [];
  const server = await startServer(
    createNodeHandler({
      formats: FORMATS,
      onDelivery: (d) => {
        if (d.event) events.push(d.event);
      },
    }),
  );
  servers.push(server);
  const { port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), "127.0.0.1");
    let answer = "";
    socket.on("data", (d) => {
      answer += d.toString("latin1");
      const m = /^HTTP\/1\.1 (\d{3})/.exec(answer);
      if (m) {
        socket.destroy();
        resolve(Number(m[1]));
      }
    });
    socket.on("error", reject);
    socket.write(Buffer.concat([head, body]));
  });
}

function head(lines: Array<string | Buffer>, bodyLength = 0): Buffer {
  const parts: Buffer[] = [
    Buffer.from("POST /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"),
  ];
  for (const line of lines) {
    parts.push(typeof line === "string" ? Buffer.from(line, "latin1") : line, Buffer.from("\r\n"));
  }
  parts.push(Buffer.from(`Content-Length: ${bodyLength}\r\n\r\n`));
  return Buffer.concat(parts);
}

describe("attack: CR/LF and non-ASCII in HTTP header values", () => {
  it("the encoder writes only printable ASCII into headers, whatever the attribute values hold", () => {
    const hostile = fc
      .string({ unit: "binary", minLength: 1, maxLength: 30 })
      .map((s) => `${s}\r\n\u0000X-Injected: 1\u2028é😀`);
    fc.assert(
      fc.property(arbitraryEvent(), hostile, (event, text) => {
        let message: ReturnType<typeof toHttpMessage>;
        try {
          message = toHttpMessage(event.cloneWith({ subject: text, ext: text }));
        } catch (err) {
          // Only a lone surrogate (not a valid String) is refused, and with a typed error.
          expectTypedError(() => {
            throw err;
          }, ["InvalidEvent"]);
          return;
        }
        for (const [name, value] of Object.entries(message.headers)) {
          expect(name).toMatch(/^[a-z0-9-]+$/);
          expect(value, name).toMatch(/^[\x20-\x7e]*$/);
        }
        expect(message.headers["x-injected"]).toBeUndefined();
      }),
      { numRuns: propertyRuns() },
    );
  });

  it("a percent-encoded CR LF decodes into a value the event refuses: 400, not a header", async () => {
    const { send, events } = receiver();
    const r = await send({ ...base, "ce-subject": "a%0D%0AX-Injected:%201" });
    expect(r.status).toBe(400);
    expect(events).toHaveLength(0);
  });

  it("a raw CR or LF inside a header value never reaches the receiver: Node answers 400", async () => {
    expect(
      await rawRequest(head(["ce-specversion: 1.0", "ce-id: a\rb", "ce-source: /s", "ce-type: t"])),
    ).toBe(400);
    expect(
      await rawRequest(
        head(["ce-specversion: 1.0", "ce-id: 1", "ce-source: /s\u0000", "ce-type: t"]),
      ),
    ).toBe(400);
    // The Web Headers class refuses them before a request exists.
    expect(() => new Headers({ "ce-id": "a\r\nb" })).toThrow(TypeError);
  });

  it("raw UTF-8 bytes in a header value (sent unencoded by some SDKs) decode to the text", async () => {
    const status = await rawRequest(
      head([
        "ce-specversion: 1.0",
        "ce-id: 1",
        "ce-source: /s",
        "ce-type: t",
        Buffer.concat([Buffer.from("ce-subject: "), Buffer.from("Grüße 😀", "utf8")]),
      ]),
    );
    expect(status).toBe(204);
    const decoded = fromHttpMessage({
      headers: { ...base, "ce-subject": Buffer.from("Grüße 😀", "utf8").toString("latin1") },
      body: undefined,
    }) as CloudEvent;
    expect(decoded.subject).toBe("Grüße 😀");
  });

  it("bytes that are not UTF-8 in a header value decode as Latin-1 text, never as garbage or a crash", async () => {
    const decoded = fromHttpMessage({
      headers: { ...base, "ce-subject": "\u00c0\u00a0ok" },
      body: undefined,
    }) as CloudEvent;
    expect(decoded.subject).toBe("\u00c0\u00a0ok");
    const status = await rawRequest(
      head([
        "ce-specversion: 1.0",
        "ce-id: 1",
        "ce-source: /s",
        "ce-type: t",
        Buffer.from([...Buffer.from("ce-subject: "), 0xc0, 0xa0]),
      ]),
    );
    expect(status).toBe(204);
  });
});

describe("attack: oversized bodies and header blocks", () => {
  const octets = { ...base, "content-type": "application/octet-stream" };

  it(`refuses a body over the default limit (${DEFAULT_MAX_BODY_BYTES} bytes) with 413, and takes one at the limit`, async () => {
    const { send, events } = receiver();
    expect((await send(octets, new Uint8Array(DEFAULT_MAX_BODY_BYTES))).status).toBe(204);
    expect(events[0]?.data).toHaveLength(DEFAULT_MAX_BODY_BYTES);
    expect((await send(octets, new Uint8Array(DEFAULT_MAX_BODY_BYTES + 1))).status).toBe(413);
  });

  it("refuses a body over a configured limit with 413, streamed without Content-Length too", async () => {
    const { send } = receiver({ maxBodyBytes: 1000 });
    expect((await send(octets, new Uint8Array(1001))).status).toBe(413);
    let pulled = 0;
    const endless = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        controller.enqueue(new Uint8Array(256));
      },
    });
    // A stream that never ends is cut off just past the limit, not read to exhaustion.
    expect((await send(octets, endless)).status).toBe(413);
    expect(pulled).toBeLessThan(10);
  });

  it("refuses a structured or batch body over the limit with 413", async () => {
    const { send } = receiver({ maxBodyBytes: 100 });
    const event = new CloudEvent({
      specversion: "1.0",
      id: "1",
      source: "/s",
      type: "t",
      data: "x".repeat(200),
    });
    const structured = toHttpMessage(event, { mode: "structured", format: json });
    expect((await send(structured.headers, structured.body)).status).toBe(413);
    const batch = toHttpMessage([event], { mode: "batch", format: json });
    expect((await send(batch.headers, batch.body)).status).toBe(413);
  });

  it("refuses more headers than maxHeaderCount (default 200) and header blocks over maxHeaderBytes with 431", async () => {
    const { send } = receiver();
    const many: Record<string, string> = { ...base };
    for (let i = 0; i < 200; i++) many[`x-filler-${i}`] = "v";
    expect((await send(many)).status).toBe(431);
    const { send: strict } = receiver({ maxHeaderBytes: 1024 });
    expect((await strict({ ...base, "ce-big": "a".repeat(2000) })).status).toBe(431);
    // Node's own parser stops a header block past its 16 KiB default before the receiver runs.
    expect(
      await rawRequest(
        head([
          ...Object.entries(base).map(([n, v]) => `${n}: ${v}`),
          `x-big: ${"a".repeat(20_000)}`,
        ]),
      ),
    ).toBe(431);
  });

  it("fromHttpMessage reads 100,000 ce- headers in linear time (a caller with no receiver's cap)", () => {
    const headers: Record<string, string> = {
      "ce-specversion": "1.0",
      "ce-id": "1",
      "ce-source": "/s",
      "ce-type": "t",
    };
    for (let i = 0; i < 100_000; i++) headers[`ce-x${i}`] = "v";
    const started = performance.now();
    const event = fromHttpMessage({ headers, body: new Uint8Array(0) });
    // Matching each name against the ones before took about 10 s here.
    expect(performance.now() - started).toBeLessThan(3000);
    expect((event as CloudEvent).x99999).toBe("v");
  });
});

describe("attack: deeply nested JSON", () => {
  const deep = (n: number) => `${"[".repeat(n)}${"]".repeat(n)}`;
  it("binary-mode JSON data nested 100,000 deep is 400, nested 100 deep is accepted", async () => {
    const { send, events } = receiver();
    const jsonHeaders = { ...base, "content-type": "application/json" };
    expect((await send(jsonHeaders, deep(100_000))).status).toBe(400);
    expect((await send(jsonHeaders, deep(100))).status).toBe(204);
    expect(events).toHaveLength(1);
  });
  it("a structured event or a batch nested 100,000 deep is 400", async () => {
    const { send } = receiver();
    const body = `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":${deep(100_000)}}`;
    expect((await send({ "content-type": "application/cloudevents+json" }, body)).status).toBe(400);
    expect(
      (await send({ "content-type": "application/cloudevents-batch+json" }, `[${body}]`)).status,
    ).toBe(400);
  });
  it("the limit is configurable (json.maxDepth)", async () => {
    const { send } = receiver({ json: { maxDepth: 8 } });
    expect((await send({ ...base, "content-type": "application/json" }, deep(9))).status).toBe(400);
  });
});

describe("attack: invalid UTF-8", () => {
  const bad = new Uint8Array([0x61, 0xc0, 0xa0, 0x62]); // an overlong encoding of a space
  it("in text data (binary mode) arrives as the bytes sent; in JSON data it is 400", async () => {
    const { send, events } = receiver();
    // Text that is not UTF-8 is the sender's to label: it stays bytes, never a replaced string.
    expect((await send({ ...base, "content-type": "text/plain" }, bad)).status).toBe(204);
    expect(events).toHaveLength(1);
    expect(events[0]?.data).toEqual(bad);
    expect(
      (
        await send(
          { ...base, "content-type": "application/json" },
          new Uint8Array([0x22, 0xed, 0xa0, 0x80, 0x22]),
        )
      ).status,
    ).toBe(400);
  });
  it("in a structured JSON event is 400", async () => {
    const { send } = receiver();
    const prefix = new TextEncoder().encode(
      '{"specversion":"1.0","id":"1","source":"/s","type":"t","subject":"',
    );
    const body = new Uint8Array([...prefix, 0xc0, 0xa0, 0x22, 0x7d]);
    expect((await send({ "content-type": "application/cloudevents+json" }, body)).status).toBe(400);
  });
  it("in a percent-encoded attribute is 400", async () => {
    const { send } = receiver();
    for (const value of ["%C0%A0", "%E2%82", "%FF", "%ED%A0%80"]) {
      expect((await send({ ...base, "ce-subject": value })).status, value).toBe(400);
    }
  });
});

describe("attack: duplicate attributes differing in case", () => {
  it("HTTP joins repeated fields before the binding sees them: ce-id and CE-ID become one attribute", async () => {
    // RFC 9110 5.3: field names are case-insensitive and repeated fields are one list. Neither
    // value wins silently; the attribute holds both, as every HTTP stack hands it over.
    const { send, events } = receiver();
    const headers = new Headers(base);
    headers.append("CE-ID", "2");
    expect((await send(headers)).status).toBe(204);
    expect(events[0]?.id).toBe("1, 2");
    const fromRecord = fromHttpMessage({
      headers: { ...base, "CE-ID": "2" },
      body: undefined,
    }) as CloudEvent;
    expect(fromRecord.id).toMatch(/^1, ?2$/);
  });
  it("a repeated ce-specversion is refused (400): `1.0, 1.0` is not 1.0", async () => {
    const { send } = receiver();
    const headers = new Headers(base);
    headers.append("CE-SpecVersion", "1.0");
    expect((await send(headers)).status).toBe(400);
  });
  it("a structured event with `id` and `ID` is refused (400)", async () => {
    const { send } = receiver();
    const body = '{"specversion":"1.0","id":"1","ID":"2","source":"/s","type":"t"}';
    expect((await send({ "content-type": "application/cloudevents+json" }, body)).status).toBe(400);
  });
});

describe("attack: specversion other than 1.0", () => {
  for (const version of ["0.3", "1.1", "2.0", "", "1"]) {
    it(`refuses specversion ${JSON.stringify(version)} with 400 in binary and structured mode`, async () => {
      const { send, events } = receiver();
      expect((await send({ ...base, "ce-specversion": version })).status).toBe(400);
      const body = JSON.stringify({ specversion: version, id: "1", source: "/s", type: "t" });
      expect((await send({ "content-type": "application/cloudevents+json" }, body)).status).toBe(
        400,
      );
      expect(events).toHaveLength(0);
    });
  }
});

describe("attack: prototype pollution through names", () => {
  it("ce-__proto__ is refused (400); ce-constructor and ce-prototype stay own extension values", async () => {
    const { send, events } = receiver();
    expect((await send({ ...base, "ce-__proto__": "polluted" })).status).toBe(400);
    expect((await send({ ...base, "ce-constructor": "x", "ce-prototype": "y" })).status).toBe(204);
    const e = events[0] as unknown as Record<string, unknown>;
    expect(Object.hasOwn(e, "constructor") && e.constructor).toBe("x");
    expect(Object.hasOwn(e, "prototype") && e.prototype).toBe("y");
    expect(Object.keys(Object.prototype)).toEqual([]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
  it("__proto__ keys in structured events and in JSON data pollute nothing", async () => {
    const { send, events } = receiver();
    const structured =
      '{"specversion":"1.0","id":"1","source":"/s","type":"t","__proto__":{"polluted":1}}';
    const r = await send({ "content-type": "application/cloudevents+json" }, structured);
    expect(r.status).toBeLessThan(500);
    const data = '{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}}}';
    expect((await send({ ...base, "content-type": "application/json" }, data)).status).toBe(204);
    const got = events.at(-1)?.data as Record<string, unknown>;
    expect(Object.hasOwn(got, "__proto__")).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(Object.prototype)).toEqual([]);
  });
});

describe("a binary-mode Content-Type the binding could not send on", () => {
  const base = { "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t" };
  it("is taken without the whitespace around it, and sends on as it came", () => {
    for (const contentType of ["text/plain\t", " text/plain", "\t text/plain; charset=utf-8 \t"]) {
      const event = fromHttpMessage({
        headers: { ...base, "content-type": contentType },
        body: "hi",
      }) as CloudEvent;
      expect(event.datacontenttype).toBe(contentType.trim());
      const again = fromHttpMessage(toHttpMessage(event)) as CloudEvent;
      expect(again.datacontenttype).toBe(event.datacontenttype);
      expect(again.data).toEqual(event.data);
    }
  });
  it("is MalformedInput when it holds a tab inside, a control character or a Latin-1 byte", () => {
    for (const contentType of ['text/plain; a="\u00e9"', "text/plain;\ta=b", "text/\u0001plain"]) {
      expect(() =>
        fromHttpMessage({ headers: { ...base, "content-type": contentType }, body: "hi" }),
      ).toThrowError(
        expect.objectContaining({ code: "MalformedInput", attribute: "datacontenttype" }),
      );
    }
  });
});
