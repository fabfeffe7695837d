import { CloudEvent, type CloudEventInit, createUncheckedEvent } from "@posthorn/core";

/**
 * What a vector exercises, so a harness can say which paths cannot carry it (MQTT 3.1.1 carries
 * only JSON-structured events, the `cloudevents` package loses sub-millisecond time, ...).
 */
export type VectorTag =
  | "minimal"
  | "json-data"
  | "text-data"
  | "non-utf8-text"
  | "binary-data"
  | "no-data"
  | "null-data"
  | "empty-data"
  | "large"
  | "unicode"
  | "extensions"
  | "binary-extension"
  | "typed-extension"
  | "time-precision"
  | "time-offset"
  | "header-special";

/** A valid event every format and binding must round-trip to an equivalent event. */
export interface EventVector {
  /** A short unique name, used in test names, e.g. `typical`. */
  readonly name: string;
  /** What the vector exercises, in a sentence. */
  readonly description: string;
  /** What it contains, for a path to skip what it cannot carry. */
  readonly tags: readonly VectorTag[];
  /** The event, validated. */
  readonly event: CloudEvent;
}

/** What kind of path can detect an invalid vector. */
export type Detectability =
  /** Any path: the violation survives as text (missing attribute, bad URI, bad timestamp, ...). */
  | "any"
  /** Only paths that keep value types (JSON, Avro, Protobuf, AMQP): e.g. an out-of-range Integer. */
  | "typed"
  /** Only paths with case-sensitive attribute names (not HTTP or NATS headers). */
  | "case-sensitive";

/** An event that breaks a CloudEvents rule; every decoder must reject it with a typed error. */
export interface InvalidVector {
  /** A short unique name, used in test names. */
  readonly name: string;
  /** The rule it breaks, in a few words. */
  readonly description: string;
  /** What kind of path can tell it is invalid. */
  readonly detectableBy: Detectability;
  /** The attributes as a producer that does not validate would send them. */
  readonly attributes: Readonly<Record<string, unknown>>;
}

const BASE = {
  specversion: "1.0",
  id: "A234-1234-1234",
  source: "https://github.com/cloudevents/spec/pull",
  type: "com.github.pull_request.opened",
} as const;

function bytesOfEveryValue(): Uint8Array {
  const b = new Uint8Array(256);
  for (let i = 0; i < 256; i++) b[i] = i;
  return b;
}

function pseudoRandomBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

// "Grüße, café" in ISO-8859-1: ü, ß and é are the single bytes 0xfc, 0xdf and 0xe9, none of them
// UTF-8 (and 0xfc 0xdf not even a UTF-8 sequence).
function latin1Bytes(): Uint8Array {
  return new Uint8Array([0x47, 0x72, 0xfc, 0xdf, 0x65, 0x2c, 0x20, 0x63, 0x61, 0x66, 0xe9]);
}

/**
 * JSON data nested `levels` deep, counted as the JSON format's `maxDepth` counts (each array or
 * object one level): objects and arrays in turn around a leaf object.
 */
function nestedJson(levels: number): unknown {
  let data: unknown = { leaf: levels };
  for (let level = 2; level <= levels; level++) data = level % 2 === 0 ? [data] : { n: data };
  return data;
}

function largeJson(): unknown {
  const items = [];
  for (let i = 0; i < 1500; i++) {
    items.push({ sku: `SKU-${i}`, quantity: i % 7, price: (i * 37) % 1000, note: "ünïcødé ✓ 𝄞" });
  }
  return { orderId: "order-1", items };
}

const v = (
  name: string,
  description: string,
  tags: VectorTag[],
  init: Partial<CloudEventInit> & Record<string, unknown>,
): EventVector => ({
  name,
  description,
  tags,
  event: new CloudEvent({ ...BASE, ...init } as CloudEventInit),
});

/** The valid event vectors (at least 40). Names are unique and stable; tests refer to them. */
export const validVectors: readonly EventVector[] = Object.freeze([
  v("minimal", "only the four required attributes", ["minimal", "no-data"], {}),
  v("all-context-attributes", "every optional context attribute, JSON data", ["json-data"], {
    datacontenttype: "application/json",
    dataschema: "https://example.com/schemas/pull-request.json",
    subject: "123",
    time: "2018-04-05T17:31:00Z",
    data: { action: "opened", number: 123 },
  }),
  v("json-object", "a JSON object under application/json", ["json-data"], {
    datacontenttype: "application/json",
    data: { orderId: 42, lines: [{ sku: "a", qty: 1 }], paid: true, note: null },
  }),
  v("json-plus-json", "JSON data under a +json media type", ["json-data"], {
    datacontenttype: "application/vnd.example.order+json",
    data: { orderId: 7 },
  }),
  v("json-bare-string", "JSON data that is a bare string", ["json-data"], {
    datacontenttype: "application/json",
    data: "just a string",
  }),
  v("json-bare-number", "JSON data that is a bare number", ["json-data"], {
    datacontenttype: "application/json",
    data: 3.25,
  }),
  v("json-bare-boolean", "JSON data that is a bare boolean", ["json-data"], {
    datacontenttype: "application/json",
    data: false,
  }),
  v("json-null", "JSON data that is an explicit null", ["json-data", "null-data"], {
    datacontenttype: "application/json",
    data: null,
  }),
  v("json-array", "JSON data that is an array", ["json-data"], {
    datacontenttype: "application/json",
    data: [1, "two", { three: 3 }, [4], null, true],
  }),
  v(
    "json-unicode",
    "JSON data with astral characters in keys and values",
    ["json-data", "unicode"],
    {
      datacontenttype: "application/json",
      data: { "clé 🔑": "valeur 𝄞", emoji: "👩‍👩‍👧", cjk: "漢字", rtl: "שלום" },
    },
  ),
  v("json-charset-param", "JSON with a charset parameter", ["json-data"], {
    datacontenttype: "application/json; charset=utf-8",
    data: { ok: true },
  }),
  v("json-no-content-type", "JSON data with no datacontenttype (implies JSON)", ["json-data"], {
    data: { implied: "json" },
  }),
  v("text-plain", "text data", ["text-data"], {
    datacontenttype: "text/plain",
    data: "Hello, world!",
  }),
  v("text-charset", "text data with a charset parameter and Unicode", ["text-data", "unicode"], {
    datacontenttype: "text/plain; charset=utf-8",
    data: "Grüße, мир, 世界, 🌍",
  }),
  v("xml-data", "XML data as text", ["text-data"], {
    datacontenttype: "application/xml",
    data: '<?xml version="1.0"?><order id="42"><line sku="a" qty="1"/></order>',
  }),
  v("binary-every-byte", "binary data holding every byte value", ["binary-data"], {
    datacontenttype: "application/octet-stream",
    data: bytesOfEveryValue(),
  }),
  v("binary-no-content-type", "binary data with no datacontenttype", ["binary-data"], {
    data: pseudoRandomBytes(64, 7),
  }),
  v("binary-image", "binary data under an image type", ["binary-data"], {
    datacontenttype: "image/png",
    data: new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0]),
  }),
  v("empty-binary", "empty binary data", ["binary-data", "empty-data"], {
    datacontenttype: "application/octet-stream",
    data: new Uint8Array(0),
  }),
  v("empty-text", "empty text data", ["text-data", "empty-data"], {
    datacontenttype: "text/plain",
    data: "",
  }),
  v(
    "text-latin1-bytes",
    "Latin-1 bytes (not UTF-8) as data under text/plain; charset=iso-8859-1",
    ["text-data", "binary-data", "non-utf8-text"],
    { datacontenttype: "text/plain; charset=iso-8859-1", data: latin1Bytes() },
  ),
  v(
    "text-latin1-string",
    "a string under a Latin-1 charset, which binary mode writes as Latin-1",
    ["text-data", "unicode", "non-utf8-text"],
    { datacontenttype: "text/plain; charset=iso-8859-1", data: "Grüße, café" },
  ),
  v(
    "text-invalid-utf8",
    "bytes that are not valid UTF-8 under text/plain, no charset",
    ["text-data", "binary-data", "non-utf8-text"],
    { datacontenttype: "text/plain", data: new Uint8Array([0x61, 0xff, 0xfe, 0x62, 0xc3]) },
  ),
  v(
    "json-depth-128",
    "JSON data nested exactly 128 levels, the JSON format's default maxDepth",
    ["json-data"],
    { datacontenttype: "application/json", data: nestedJson(128) },
  ),
  v(
    "null-no-content-type",
    "JSON null data with no datacontenttype (implies JSON)",
    ["json-data", "null-data"],
    { data: null },
  ),
  v("content-type-no-data", "a datacontenttype but no data", ["no-data"], {
    datacontenttype: "application/json",
  }),
  v("large-binary-1mib", "a 1 MiB binary payload", ["binary-data", "large"], {
    datacontenttype: "application/octet-stream",
    data: pseudoRandomBytes(1024 * 1024, 42),
  }),
  v("large-json", "about 100 KB of JSON data", ["json-data", "large"], {
    datacontenttype: "application/json",
    data: largeJson(),
  }),
  v("ext-boolean-true", "a Boolean extension, true", ["extensions", "typed-extension"], {
    flagged: true,
  }),
  v("ext-boolean-false", "a Boolean extension, false", ["extensions", "typed-extension"], {
    flagged: false,
  }),
  v("ext-integer", "an Integer extension", ["extensions", "typed-extension"], { priority: 42 }),
  v("ext-integer-min", "the smallest Integer", ["extensions", "typed-extension"], {
    lowest: -2147483648,
  }),
  v("ext-integer-max", "the largest Integer", ["extensions", "typed-extension"], {
    highest: 2147483647,
  }),
  v("ext-integer-zero", "Integer zero", ["extensions", "typed-extension"], { zero: 0 }),
  v("ext-string-unicode", "a String extension with astral characters", ["extensions", "unicode"], {
    greeting: "héllo wörld 🚀 𝄞 漢字",
  }),
  v("ext-binary", "a Binary extension", ["extensions", "binary-extension", "typed-extension"], {
    signature: new Uint8Array([0, 1, 2, 253, 254, 255]),
  }),
  v("ext-uri", "a URI-valued extension", ["extensions"], {
    schemaref: "https://example.com/schemas/v1?x=1#frag",
  }),
  v("ext-declared-timestamp", "a declared Timestamp extension (recordedtime)", ["extensions"], {
    recordedtime: "2024-01-02T03:04:05.678Z",
  }),
  v("ext-name-20-chars", "a 20-character extension name", ["extensions"], {
    abcdefghijklmnopqrst: "twenty",
  }),
  v("ext-many", "ten extensions of mixed types", ["extensions", "typed-extension"], {
    e1: "one",
    e2: 2,
    e3: true,
    e4: "four four",
    e5: -5,
    e6: false,
    e7: "sept",
    e8: 8,
    e9: "nine",
    e10: "ten",
  }),
  v("ext-numeric-string", "a String extension that looks like a number", ["extensions"], {
    looksnumeric: "00123",
  }),
  v(
    "ext-padded-string",
    "a String extension with leading and trailing spaces",
    ["extensions", "header-special"],
    {
      padded: "  padded value  ",
    },
  ),
  v("ext-long-string", "a 4 KiB String extension", ["extensions"], { longvalue: "x".repeat(4096) }),
  v("unicode-id", "astral characters in id", ["unicode"], { id: "id-🚀-𝄞-✓" }),
  v("unicode-type", "Unicode in type", ["unicode"], { type: "com.example.événement.créé" }),
  v("unicode-subject", "astral, CJK, RTL and combining characters in subject", ["unicode"], {
    subject: "sujet 𝄞 漢字 مرحبا e\u0301",
  }),
  v(
    "header-special-chars",
    "percent signs, quotes, commas, semicolons and spaces",
    ["header-special"],
    {
      subject: 'a "quoted", 100% value; with=equals',
      comment: '50% off, "today" only; ok',
    },
  ),
  v(
    "percent-lookalike",
    "a value that looks percent-encoded and must stay as it is",
    ["header-special"],
    {
      subject: "%41%20%ZZ%",
    },
  ),
  v("time-offset", "time with a positive offset", ["time-offset"], {
    time: "2024-05-01T10:00:00+05:30",
  }),
  v(
    "time-negative-offset",
    "time with a negative offset and a fraction",
    ["time-offset", "time-precision"],
    {
      time: "1985-04-12T23:20:50.52-08:00",
    },
  ),
  v("time-nanos", "time with nanosecond precision", ["time-precision"], {
    time: "2024-05-01T10:00:00.123456789Z",
  }),
  v("source-urn", "a URN source", [], { source: "urn:event:from:myapi/resource/123" }),
  v("source-relative", "a relative URI-reference source", [], { source: "../relative/path?q=1" }),
  v("source-mailto", "a mailto source", [], { source: "mailto:cncf-wg-serverless@lists.cncf.io" }),
  v("trace-context", "distributed tracing extension", ["extensions"], {
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    tracestate: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
  }),
  v("partitionkey", "partitioning extension", ["extensions"], { partitionkey: "customer-42" }),
  v(
    "typical",
    "a typical event: JSON data, time, subject, one extension",
    ["json-data", "extensions"],
    {
      id: "b7e1f2c4-5a6b-4c3d-9e8f-0123456789ab",
      source: "/orders/service",
      type: "com.example.order.created",
      subject: "order/42",
      time: "2024-05-01T10:00:00.000Z",
      datacontenttype: "application/json",
      traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      data: { orderId: 42, customer: "c-7", total: 99.5, lines: [{ sku: "a-1", qty: 2 }] },
    },
  ),
]);

const iv = (
  name: string,
  description: string,
  detectableBy: Detectability,
  attributes: Record<string, unknown>,
): InvalidVector => ({ name, description, detectableBy, attributes: { ...BASE, ...attributes } });

/** The invalid vectors (at least 20). `undefined` means the attribute is left out. */
export const invalidVectors: readonly InvalidVector[] = Object.freeze([
  iv("missing-id", "no id", "any", { id: undefined }),
  iv("empty-id", "an empty id", "any", { id: "" }),
  iv("missing-source", "no source", "any", { source: undefined }),
  iv("empty-source", "an empty source", "any", { source: "" }),
  iv("missing-type", "no type", "any", { type: undefined }),
  iv("empty-type", "an empty type", "any", { type: "" }),
  iv("missing-specversion", "no specversion", "any", { specversion: undefined }),
  iv("specversion-0.3", "specversion 0.3", "any", { specversion: "0.3" }),
  iv("specversion-2.0", "specversion 2.0", "any", { specversion: "2.0" }),
  iv("source-not-uri", "a source with spaces", "any", { source: "not a uri reference" }),
  iv("dataschema-relative", "a relative dataschema", "any", { dataschema: "/schemas/order" }),
  iv("dataschema-empty", "an empty dataschema", "any", { dataschema: "" }),
  iv("time-not-rfc3339", "a time that is not RFC 3339", "any", { time: "yesterday at noon" }),
  iv("time-impossible-date", "February 30th", "any", { time: "2024-02-30T00:00:00Z" }),
  iv("subject-empty", "an empty subject", "any", { subject: "" }),
  iv("datacontenttype-invalid", "a datacontenttype that is not a media type", "any", {
    datacontenttype: "not a media type",
  }),
  iv("id-control-char", "a control character in id", "any", { id: "line\u0001break" }),
  iv("type-del-char", "DEL in type", "any", { type: "com.example\u007f" }),
  iv("ext-name-underscore", "an extension name with an underscore", "any", { my_ext: "x" }),
  iv("ext-name-dash", "an extension name with a dash", "any", { "my-ext": "x" }),
  iv("ext-string-control", "a control character in a String extension", "any", {
    note: "a\u0007b",
  }),
  iv("ext-name-uppercase", "an upper-case extension name", "case-sensitive", { MyExt: "x" }),
  iv("ext-integer-overflow", "an Integer outside the 32-bit range", "typed", { big: 2147483648 }),
  iv("ext-float", "a non-integer number", "typed", { ratio: 1.5 }),
  iv("ext-object", "an object-valued extension", "typed", { nested: { a: 1 } }),
]);

/**
 * Builds the event of an invalid vector without validation, for encoders under test.
 *
 * @param vector - the invalid vector
 */
export function invalidEvent(vector: InvalidVector): CloudEvent {
  return createUncheckedEvent(vector.attributes as Record<string, unknown>);
}

/**
 * A vector by name.
 *
 * @param name - the vector's name
 * @throws Error when no valid vector has that name
 */
export function vector(name: string): EventVector {
  const found = validVectors.find((x) => x.name === name);
  if (found) return found;
  if (invalidVectors.some((x) => x.name === name)) {
    throw new Error(
      `${JSON.stringify(name)} is an invalid vector: take it from invalidVectors and build its event with invalidEvent()`,
    );
  }
  throw new Error(
    `no valid vector named ${JSON.stringify(name)}; the names are ${validVectors.map((x) => x.name).join(", ")}`,
  );
}

/**
 * Values for `data` that have no JSON text, each with a name for test titles: a BigInt, a cycle
 * and a `toJSON` that throws. Every format must refuse them with `InvalidEvent` on `data`. A
 * fresh list each call (the cycle is a new object).
 */
export function dataWithoutJson(): Array<[name: string, data: unknown]> {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const throwing = {
    toJSON: (): never => {
      throw new Error("no JSON here");
    },
  };
  return [
    ["a BigInt", { n: 10n }],
    ["a cycle", cyclic],
    ["a throwing toJSON", throwing],
  ];
}
