/**
 * The HTTP binding: `fromHttpMessage` (binary, structured and batch mode, with header maps in
 * every shape HTTP stacks hand over) and `detectMode`; `createFetchHandler` with Web `Request`s;
 * and `createNodeHandler` behind a real `node:http` server on a loopback port, fed raw request
 * bytes.
 */
import { createServer, type Server } from "node:http";
import { connect } from "node:net";
import {
  createFetchHandler,
  createNodeHandler,
  detectMode,
  fromHttpMessage,
  type HttpDelivery,
  type HttpHeadersInput,
  type HttpReceiver,
  httpReceiver,
  toHttpMessage,
} from "@posthorn/binding-http";
import type { CloudEvent, ContentMode, EventFormat } from "@posthorn/core";
import { type Corpus, corpus, pickEvent, pickEvents, registryOf } from "../corpus.js";
import { type Entry, entriesToRecord, mutateEntries } from "../messages.js";
import { concat, mutateBytes, utf8 } from "../mutate.js";
import { attempt, checkEvent, checkEvents, checkRoundTrip, Finding, tally } from "../oracle.js";
import type { Rng } from "../rng.js";
import type { Target } from "../target.js";
import {
  type BindingOptions,
  decodeOptionsOf,
  formatsOf,
  latin1,
  mutateBody,
  pickBindingOptions,
  ROUND_TRIP_LIMIT,
} from "./common.js";
import { anyFormat, checkBatchRoundTrip } from "./formats.js";

/** How the headers are handed to the decoder. */
type HeaderShape = "record" | "null-prototype" | "web-headers" | "node-latin1";

/** An input of the `http` target. */
export interface HttpInput {
  readonly headers: Entry[];
  readonly shape: HeaderShape;
  /** The body; a string is read as UTF-8. */
  readonly body: Uint8Array | string | undefined;
  readonly options: BindingOptions;
}

const HEADER_SHAPE = {
  prefix: "ce-",
  otherPrefixes: ["CE-", "Ce-", "ce_", "ce", "cloudEvents:", "ce--"],
  contentTypeName: "content-type",
  maxEntries: 3000,
};

/** A message for some corpus events in some mode, as header entries and body bytes. */
function seedMessage(
  rng: Rng,
  c: Corpus,
  options: BindingOptions,
): { headers: Entry[]; body: Uint8Array } {
  for (let tries = 0; tries < 4; tries++) {
    const r = rng.int(20);
    const mode: ContentMode = r < 10 ? "binary" : r < 17 ? "structured" : "batch";
    const format =
      mode === "batch"
        ? anyBatchFormat(rng, options)
        : anyFormat(rng, { registry: options.registry, maxDepth: options.maxDepth });
    try {
      const msg =
        mode === "batch"
          ? toHttpMessage(pickEvents(rng, c), { mode, format })
          : toHttpMessage(pickEvent(rng, c), { mode, format });
      return { headers: Object.entries(msg.headers), body: msg.body };
    } catch {
      // an invalid event that cannot be written: another one
    }
  }
  const msg = toHttpMessage(c.events[0] as CloudEvent);
  return { headers: Object.entries(msg.headers), body: msg.body };
}

function anyBatchFormat(rng: Rng, options: BindingOptions): EventFormat {
  const f = anyFormat(rng, { registry: options.registry, maxDepth: options.maxDepth });
  return f.encodeBatch ? f : anyBatchFormat(rng, options);
}

function generateHttp(rng: Rng, c: Corpus): HttpInput {
  const options = pickBindingOptions(rng);
  const seed = seedMessage(rng, c, options);
  const mutate = rng.int(10);
  const headers =
    mutate < 2
      ? seed.headers
      : rng.chance(0.75)
        ? mutateEntries(rng, seed.headers, HEADER_SHAPE)
        : seed.headers;
  const body = mutate < 2 ? seed.body : mutateBody(rng, c, seed.body);
  const shape = rng.pick<HeaderShape>([
    "record",
    "record",
    "null-prototype",
    "web-headers",
    "node-latin1",
  ]);
  const asText = rng.chance(0.05);
  return {
    headers,
    shape,
    body: asText ? new TextDecoder().decode(body) : rng.chance(0.03) ? undefined : body,
    options,
  };
}

/** Without the spaces and tabs around it (a regular expression would take quadratic time). */
function trimOws(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && (text[start] === " " || text[start] === "\t")) start++;
  while (end > start && (text[end - 1] === " " || text[end - 1] === "\t")) end--;
  return text.slice(start, end);
}

/**
 * The headers in the input's shape. A Web `Headers` refuses some names and values (its own
 * TypeError, not the decoder's): then the record shape is used.
 */
function headersOf(input: HttpInput): HttpHeadersInput {
  if (input.shape === "web-headers") {
    try {
      const h = new Headers();
      for (const [n, v] of input.headers) h.append(n, v);
      return h;
    } catch {
      tally("Headers refused the input; read as a record");
    }
  }
  if (input.shape === "node-latin1") {
    // As a Node server hands them over: names lower case, UTF-8 bytes as one char per byte,
    // spaces and tabs around values trimmed, repeated fields joined with ", ".
    const joined = new Map<string, string>();
    for (const [n, v] of input.headers) {
      const name = n.toLowerCase();
      const value = trimOws(latin1(utf8(v)));
      const seen = joined.get(name);
      joined.set(name, seen === undefined ? value : `${seen}, ${value}`);
    }
    return entriesToRecord([...joined]) as Record<string, string>;
  }
  return entriesToRecord(input.headers, {
    nullPrototype: input.shape === "null-prototype",
  }) as Record<string, string | string[]>;
}

/**
 * Decodes headers and body with `fromHttpMessage`, checks the result against `detectMode`, and
 * round-trips it through `toHttpMessage`. Returns the outcome (for the handlers' checks).
 */
function decodeAndCheck(
  headers: HttpHeadersInput,
  body: Uint8Array | string | undefined,
  o: BindingOptions,
): ReturnType<typeof attempt<CloudEvent | CloudEvent[]>> {
  const options = decodeOptionsOf(o);
  const { formats, registry } = options;
  const detected = attempt(
    "detectMode",
    () => detectMode(headers, formats),
    new Set(["UnsupportedContentType"]),
  );
  const out = attempt("fromHttpMessage", () => fromHttpMessage({ headers, body }, options));
  if (!out.ok) return out;
  if (!detected.ok) {
    throw new Finding(
      "contract",
      `fromHttpMessage decoded a message detectMode refuses: ${detected.error.message}`,
    );
  }
  const { mode, format } = detected.value;
  const again = { ...options, maxPayloadBytes: ROUND_TRIP_LIMIT };
  if (Array.isArray(out.value)) {
    if (mode !== "batch")
      throw new Finding("contract", `fromHttpMessage returned an array in ${mode} mode`);
    const events = checkEvents(out.value, "fromHttpMessage (batch)");
    checkBatchRoundTrip(
      events,
      (list) =>
        fromHttpMessage(
          toHttpMessage(list, { mode: "batch", ...(format ? { format } : {}) }),
          again,
        ),
      "fromHttpMessage (batch)",
      registry,
    );
    return out;
  }
  if (mode === "batch")
    throw new Finding("contract", "fromHttpMessage returned one event in batch mode");
  const event = checkEvent(out.value, `fromHttpMessage (${mode})`);
  checkRoundTrip(
    event,
    (e) =>
      fromHttpMessage(
        toHttpMessage(e, mode === "binary" ? { mode } : { mode, ...(format ? { format } : {}) }),
        again,
      ),
    `fromHttpMessage (${mode})`,
    registry,
  );
  return out;
}

/** `fromHttpMessage` and `detectMode` on header maps and bodies. */
export const httpTarget: Target<HttpInput> = (() => {
  let c: Corpus;
  return {
    name: "http",
    covers: ["fromHttpMessage", "detectMode"],
    setup(seed) {
      c = corpus(seed);
    },
    generate: (rng) => generateHttp(rng, c),
    run(input) {
      decodeAndCheck(headersOf(input), input.body, input.options);
    },
  };
})();

// --- the receivers behind createFetchHandler and createNodeHandler -----------------------------

const STATUS_OF_CODE: Readonly<Record<string, number>> = {
  UnsupportedContentType: 415,
  PayloadTooLarge: 413,
  MalformedInput: 400,
  InvalidEvent: 400,
};

let delivered: CloudEvent[] = [];
let deliveredHeaders: HttpHeadersInput[] = [];
const receivers = new Map<string, HttpReceiver>();

function receiverFor(o: BindingOptions): HttpReceiver {
  const key = JSON.stringify(o);
  let receiver = receivers.get(key);
  if (receiver === undefined) {
    receiver = httpReceiver({
      ...decodeOptionsOf(o),
      onDelivery: (d: HttpDelivery) => {
        delivered.push(d.event);
        deliveredHeaders.push(d.message.properties as Record<string, string>);
      },
    });
    receivers.set(key, receiver);
  }
  return receiver;
}

/** An input of the `http-fetch` target. */
export interface FetchInput extends HttpInput {
  readonly method: string;
}

const METHODS = ["POST", "POST", "POST", "PUT", "post", "GET", "OPTIONS", "DELETE", "PATCH"];

/** `createFetchHandler` with Web `Request`s: the reply agrees with `fromHttpMessage`. */
export const httpFetchTarget: Target<FetchInput> = (() => {
  let c: Corpus;
  return {
    name: "http-fetch",
    covers: ["createFetchHandler", "readRequestBody", "httpReceiver"],
    setup(seed) {
      c = corpus(seed);
    },
    generate(rng) {
      return { ...generateHttp(rng, c), shape: "web-headers", method: rng.pick(METHODS) };
    },
    async run(input) {
      const headers = new Headers();
      let body: Uint8Array | undefined =
        typeof input.body === "string" ? utf8(input.body) : input.body;
      const method = input.method.toUpperCase();
      if (method === "GET") body = undefined;
      let request: Request;
      try {
        for (const [n, v] of input.headers) headers.append(n, v);
        request = new Request("http://fuzz.invalid/events", {
          method: input.method,
          headers,
          ...(body ? { body: body as unknown as BodyInit } : {}),
        });
      } catch {
        tally("Request refused the input");
        return;
      }
      delivered = [];
      const handle = createFetchHandler(receiverFor(input.options));
      let response: Response;
      try {
        response = await handle(request);
      } catch (err) {
        throw new Finding(
          "contract",
          `the fetch handler rejected: ${(err as Error)?.message}`,
          err,
        );
      }
      const events = delivered;
      tally(`status ${response.status}`);
      checkReply(
        response.status,
        events,
        method,
        request.headers,
        body ?? new Uint8Array(0),
        input.options,
      );
    },
  };
})();

/**
 * The reply a receiver gave agrees with what `fromHttpMessage` makes of the same headers and
 * body: 204 with the same events when it decodes, 400/413/415 as its error's code says.
 */
function checkReply(
  status: number,
  events: CloudEvent[],
  method: string,
  headers: HttpHeadersInput,
  body: Uint8Array,
  o: BindingOptions,
): void {
  if (status === 500) throw new Finding("contract", "the receiver answered 500 to a request");
  if (method !== "POST" && method !== "PUT") {
    if (events.length > 0) throw new Finding("contract", `a ${method} request delivered events`);
    return;
  }
  // Past the receiver's header limits (200 headers, 64 KiB) nothing is decoded.
  if (status === 431) return;
  const expected = decodeAndCheck(headers, body, o);
  const limit = o.maxPayloadBytes ?? 1024 * 1024;
  // The receiver reads the body up to its limit before it looks at the content type.
  if (status === 413 && body.length > limit) return;
  if (!expected.ok) {
    const want = STATUS_OF_CODE[expected.error.code];
    if (status !== want) {
      throw new Finding(
        "contract",
        `the receiver answered ${status} where fromHttpMessage refused with ${expected.error.code} (${want})`,
      );
    }
    if (events.length > 0)
      throw new Finding(
        "contract",
        "the receiver delivered events from a message fromHttpMessage refuses",
      );
    return;
  }
  const want = Array.isArray(expected.value) ? expected.value : [expected.value];
  if (status !== 204) {
    throw new Finding(
      "contract",
      `the receiver answered ${status} to a message fromHttpMessage decodes`,
    );
  }
  if (status === 204 && events.length !== want.length) {
    throw new Finding(
      "contract",
      `the receiver delivered ${events.length} events where fromHttpMessage decoded ${want.length}`,
    );
  }
  events.forEach((e, i) => {
    checkRoundTrip(
      checkEvent(e, "delivered event"),
      () => want[i],
      "delivered event vs fromHttpMessage",
      registryOf(o.registry),
    );
  });
}

// --- raw bytes over a real node:http server ------------------------------------------------------

/** An input of the `http-server` target: the bytes a client sends. */
export interface RawHttpInput {
  readonly raw: Uint8Array;
  /** Which server: default options, or the typed registry with tight limits. */
  readonly server: 0 | 1;
}

const SERVER_OPTIONS: readonly BindingOptions[] = [
  { formats: "all", registry: "default" },
  { formats: "all", registry: "typed", maxPayloadBytes: 4096, maxDepth: 8 },
];

/** `createNodeHandler` behind `http.createServer`, raw request bytes over loopback TCP. */
export const httpServerTarget: Target<RawHttpInput> = (() => {
  let c: Corpus;
  const servers: Server[] = [];
  const ports: number[] = [];
  return {
    name: "http-server",
    covers: ["createNodeHandler", "handleNodeRequest", "readNodeBody", "httpReceiver"],
    async setup(seed) {
      c = corpus(seed);
      for (const o of SERVER_OPTIONS) {
        const server = createServer(
          { requestTimeout: 5000, headersTimeout: 4000 },
          createNodeHandler(receiverFor(o)) as never,
        );
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        servers.push(server);
        ports.push((server.address() as { port: number }).port);
      }
    },
    async teardown() {
      for (const s of servers) {
        s.closeAllConnections();
        await new Promise((resolve) => s.close(resolve));
      }
      servers.length = 0;
      ports.length = 0;
    },
    generate(rng) {
      const server = rng.chance(0.8) ? 0 : 1;
      const o = SERVER_OPTIONS[server] as BindingOptions;
      const seed = seedMessage(rng, c, o);
      const headers = rng.chance(0.7)
        ? mutateEntries(rng, seed.headers, { ...HEADER_SHAPE, maxEntries: 400 })
        : seed.headers;
      const body = mutateBody(rng, c, seed.body);
      const method = rng.pick(METHODS).toUpperCase();
      const lines = [`${method} /events HTTP/1.1`, "Host: fuzz.invalid", "Connection: close"];
      const length = rng.int(10);
      if (length < 8) lines.push(`Content-Length: ${body.length}`);
      else if (length < 9)
        lines.push(
          `Content-Length: ${rng.pick([0, body.length + 1, body.length - 1, 2 ** 53, -1])}`,
        );
      const wire = rng.chance(0.8) ? "latin1" : "utf8";
      const head = Buffer.from(
        `${[...lines, ...headers.map(([n, v]) => `${n}: ${v}`)].join("\r\n")}\r\n\r\n`,
        wire,
      );
      let raw = concat(new Uint8Array(head), body);
      if (rng.chance(0.25))
        raw = mutateBytes(rng, raw, {
          dictionary: [
            utf8("\r\n"),
            utf8(": "),
            utf8("ce-id: x\r\n"),
            utf8("Transfer-Encoding: chunked\r\n"),
          ],
        });
      return { raw, server };
    },
    async run(input) {
      delivered = [];
      deliveredHeaders = [];
      const port = ports[input.server] as number;
      const reply = await exchange(port, input.raw, 4000);
      if (reply.timedOut)
        throw new Finding(
          "hang",
          "the server neither answered nor closed the connection within 4 s",
        );
      tally(reply.status === undefined ? "closed without an answer" : `status ${reply.status}`);
      if (reply.status === 500)
        throw new Finding("contract", `the server answered 500: ${reply.text.slice(0, 200)}`);
      const o = SERVER_OPTIONS[input.server] as BindingOptions;
      const registry = registryOf(o.registry);
      const formats = formatsOf(o);
      delivered.forEach((event, i) => {
        // Again in the mode it came in, as the headers the receiver read say.
        const { mode, format } = detectMode(deliveredHeaders[i] as HttpHeadersInput, formats);
        const options = mode === "binary" || !format ? {} : { mode: "structured" as const, format };
        checkRoundTrip(
          checkEvent(event, "delivered event"),
          (e) =>
            fromHttpMessage(toHttpMessage(e, options), {
              formats,
              registry,
              maxPayloadBytes: ROUND_TRIP_LIMIT,
            }),
          `delivered event (${mode === "batch" ? "one of a batch, as structured" : mode})`,
          registry,
        );
      });
      if (
        reply.status !== undefined &&
        reply.status >= 200 &&
        reply.status < 300 &&
        reply.status !== 204
      ) {
        throw new Finding("contract", `the server answered ${reply.status}`);
      }
    },
  };
})();

/** Sends raw bytes, half-closes, and reads the answer's status line until the server closes. */
function exchange(
  port: number,
  raw: Uint8Array,
  ms: number,
): Promise<{ status: number | undefined; text: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let timedOut = false;
    const socket = connect(port, "127.0.0.1", () => {
      socket.end(raw);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      socket.destroy();
    }, ms);
    socket.on("data", (d: Buffer) => {
      if (chunks.length < 64) chunks.push(d);
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString("latin1");
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : undefined, text, timedOut });
    });
  });
}
