/**
 * Core's parsing helpers that read untrusted text: percent-decoding of header values, RFC 3339
 * timestamps, URI references, media types, base64, canonical attribute strings, JSON (with its
 * depth limit), UTF-8 and the binary formats' text readers. Each is held to what its docs say,
 * and to its inverse where it has one.
 */
import { toHttpMessage } from "@posthorn/binding-http";
import {
  type AttributeType,
  base64Decode,
  base64Encode,
  canonicalMediaType,
  canonicalString,
  canonicalTimestamp,
  checkValue,
  decodeData,
  decodeHeaderValue,
  decodeKey,
  decodeText,
  deepEqual,
  type ErrorCode,
  encodeHeaderValue,
  isAbsoluteUri,
  isBase64,
  isJsonContentType,
  isMediaType,
  isTextContentType,
  isTimestamp,
  isUriReference,
  jsonDepthExceeds,
  parseCanonical,
  parseContentType,
  parseJson,
  parseTimestamp,
  utf8Decode,
} from "@posthorn/core";
import { type Corpus, corpus, pickEvent } from "../corpus.js";
import { ATTRIBUTE_VALUES, CONTENT_TYPES } from "../messages.js";
import { arbitraryBytes, mutateBytes, mutateString, ODD_UTF8, utf8 } from "../mutate.js";
import { attempt, Finding } from "../oracle.js";
import type { Rng } from "../rng.js";
import type { Target } from "../target.js";

const FUNCTIONS = [
  "decodeHeaderValue",
  "encodeHeaderValue",
  "timestamp",
  "uri",
  "contentType",
  "base64",
  "parseCanonical",
  "parseJson",
  "decodeData",
  "utf8",
  "decodeText",
] as const;

type CoreFunction = (typeof FUNCTIONS)[number];

const TYPES: readonly AttributeType[] = [
  "Boolean",
  "Integer",
  "String",
  "Binary",
  "URI",
  "URI-reference",
  "Timestamp",
];

/** An input of the `core` target: which helper, and its text or bytes. */
export interface CoreInput {
  readonly fn: CoreFunction;
  readonly text: string;
  readonly bytes: Uint8Array;
  /** For `parseCanonical`. */
  readonly type: AttributeType;
  /** For `decodeHeaderValue`: how raw non-ASCII characters are read. */
  readonly mode: "latin1" | "unicode";
  /** For `parseJson` and `decodeData`. */
  readonly maxDepth: number | undefined;
  /** When the text is `encodeHeaderValue(original)` unchanged: what decoding must give back. */
  readonly original: string | undefined;
}

const NONE = new Set<ErrorCode>();
const MALFORMED = new Set<ErrorCode>(["MalformedInput"]);
const INVALID = new Set<ErrorCode>(["InvalidEvent"]);

const ENGINE_TIMESTAMPS = [
  "2024-01-01T00:00:00Z",
  "2016-12-31T23:59:60Z",
  "1985-04-12T23:20:50.52-08:00",
  "0000-01-01T00:00:00Z",
  "0000-01-01T00:00:00+00:01",
  "9999-12-31T23:59:59Z",
  "9999-12-31T23:59:59-00:01",
  "2024-02-29T12:00:00.000000000001+14:00",
  "1900-02-29T00:00:00Z",
  "2024-01-01t00:00:00z",
];

function timestampText(rng: Rng): string {
  const d = (n: number, w: number): string => String(n).padStart(w, "0");
  const frac = rng.chance(0.5)
    ? ""
    : `.${"0123456789".slice(0, 1 + rng.int(9)).repeat(rng.pick([1, 1, 5, 200]))}`;
  const zone = rng.chance(0.5)
    ? rng.pick(["Z", "z"])
    : `${rng.pick(["+", "-"])}${d(rng.int(26), 2)}:${d(rng.int(62), 2)}`;
  return `${d(rng.int(10000), 4)}-${d(rng.int(14), 2)}-${d(rng.int(33), 2)}${rng.pick(["T", "t", " "])}${d(rng.int(25), 2)}:${d(rng.int(61), 2)}:${d(rng.int(62), 2)}${frac}${zone}`;
}

function headerValues(rng: Rng, c: Corpus): { raw: string; original: string | undefined } {
  const event = pickEvent(rng, c, 0);
  try {
    const headers = toHttpMessage(event).headers;
    const names = Object.keys(headers).filter((n) => n.startsWith("ce-"));
    const name = rng.pick(names);
    const value = headers[name] as string;
    const original = String(canonicalString(event[name.slice(3)] as never));
    return { raw: value, original };
  } catch {
    return { raw: rng.pick(ATTRIBUTE_VALUES), original: undefined };
  }
}

/** The canonical string of a value of some type, for parseCanonical. */
function canonicalText(rng: Rng): string {
  switch (rng.int(5)) {
    case 0:
      return String(rng.pick([0, 1, -1, 2147483647, -2147483648, rng.int(2 ** 32) - 2 ** 31]));
    case 1:
      return rng.pick(["true", "false"]);
    case 2:
      return base64Encode(arbitraryBytes(rng, 24));
    case 3:
      return rng.chance(0.5) ? timestampText(rng) : rng.pick(ENGINE_TIMESTAMPS);
    default:
      return rng.pick(["https://example.com/x", "urn:a", "/relative", "mailto:a@b", "a b"]);
  }
}

function jsonDepth(value: unknown): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (typeof v !== "object" || v === null) continue;
    max = Math.max(max, depth + 1);
    for (const k of Object.keys(v)) stack.push([(v as Record<string, unknown>)[k], depth + 1]);
  }
  return max;
}

function hasNonFinite(value: unknown): boolean {
  const stack = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === "number" && !Number.isFinite(v)) return true;
    // Bytes are no JSON: a 1 MiB body's million keys took most of a second to walk.
    if (typeof v === "object" && v !== null && !ArrayBuffer.isView(v))
      for (const k of Object.keys(v)) stack.push((v as Record<string, unknown>)[k]);
  }
  return false;
}

function broken(what: string): never {
  throw new Finding("contract", what);
}

function isLoneSurrogateFree(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    const next = s.charCodeAt(i + 1);
    if (c > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) return false;
    i++;
  }
  return true;
}

function checkHeaderValue(input: CoreInput): void {
  const out = attempt(
    "decodeHeaderValue",
    () => decodeHeaderValue(input.text, "attr", { text: input.mode }),
    MALFORMED,
  );
  if (!out.ok) {
    if (input.original !== undefined)
      broken(`decodeHeaderValue refused what encodeHeaderValue wrote: ${out.error.message}`);
    return;
  }
  const r = out.value;
  if (input.original !== undefined && r !== input.original) {
    broken(
      `decodeHeaderValue(encodeHeaderValue(x)) is not x (${JSON.stringify(input.original.slice(0, 80))})`,
    );
  }
  if (!isLoneSurrogateFree(r)) return;
  const encoded = attempt("encodeHeaderValue", () => encodeHeaderValue(r, "attr"), NONE);
  if (!encoded.ok) return;
  const again = attempt(
    "decodeHeaderValue",
    () => decodeHeaderValue(encoded.value, "attr", { text: input.mode }),
    NONE,
  );
  if (again.ok && again.value !== r)
    broken("decodeHeaderValue(encodeHeaderValue(decoded)) is not the decoded value");
}

function checkTimestamp(s: string): void {
  const parsed = attempt("parseTimestamp", () => parseTimestamp(s), NONE);
  const valid = attempt("isTimestamp", () => isTimestamp(s), NONE);
  if (!parsed.ok || !valid.ok) return;
  if ((parsed.value !== undefined) !== valid.value) {
    broken(
      `parseTimestamp and isTimestamp disagree: ${parsed.value === undefined ? "undefined" : "an instant"} vs ${valid.value}`,
    );
  }
  const checked = attempt(
    "checkValue Timestamp",
    () => checkValue(s, "Timestamp", "time"),
    INVALID,
  );
  if (checked.ok !== valid.value) broken("checkValue(Timestamp) and isTimestamp disagree");
  const p = parsed.value;
  if (p === undefined) return;
  if (!Number.isSafeInteger(p.epochSeconds))
    broken(`parseTimestamp gave ${p.epochSeconds} seconds`);
  const canonical = attempt("canonicalTimestamp", () => canonicalTimestamp(s), NONE);
  if (!canonical.ok) return;
  const c = canonical.value;
  if (!isTimestamp(c)) {
    // Its contract: an instant an offset moves out of the years 0000 to 9999 is written with
    // ISO 8601's expanded year, as Date.toISOString does (-000001-12-31T23:59:00Z).
    const m = EXPANDED_YEAR.exec(c);
    const year = m ? Number(m[1]) : 0;
    if (!m || (year >= 0 && year <= 9999)) {
      broken(`canonicalTimestamp of a valid timestamp is not one: ${JSON.stringify(c)}`);
    }
    const ms = Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
    if (ms / 1000 !== p.epochSeconds || (m[7] ?? "") !== p.fraction) {
      broken(`canonicalTimestamp names another instant: ${JSON.stringify(c)}`);
    }
    return;
  }
  const back = parseTimestamp(c);
  if (back === undefined || back.epochSeconds !== p.epochSeconds || back.fraction !== p.fraction) {
    broken("canonicalTimestamp names another instant");
  }
}

const EXPANDED_YEAR = /^([+-]\d{6})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?Z$/;

function checkUri(s: string): void {
  const abs = attempt("isAbsoluteUri", () => isAbsoluteUri(s), NONE);
  const ref = attempt("isUriReference", () => isUriReference(s), NONE);
  if (abs.ok && ref.ok && abs.value && !ref.value) broken("isAbsoluteUri but not isUriReference");
}

function checkContentType(s: string): void {
  const ct = attempt("parseContentType", () => parseContentType(s), NONE);
  for (const [name, f] of [
    ["isMediaType", isMediaType],
    ["isJsonContentType", isJsonContentType],
    ["isTextContentType", isTextContentType],
    ["canonicalMediaType", canonicalMediaType],
  ] as const) {
    attempt(name, () => f(s), NONE);
  }
  if (!ct.ok || ct.value === undefined) return;
  const t = ct.value;
  if (
    !Object.isFrozen(t) ||
    !Object.isFrozen(t.parameters) ||
    Object.getPrototypeOf(t.parameters) !== null
  ) {
    broken("parseContentType's result is not frozen with a null-prototype parameters object");
  }
  if (t.mediaType !== `${t.type}/${t.subtype}` || t.mediaType !== t.mediaType.toLowerCase()) {
    broken(
      `parseContentType's mediaType ${JSON.stringify(t.mediaType)} is not type/subtype in lower case`,
    );
  }
  // Its promise: "a value that parses can go into any protocol's header".
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) quoted = !quoted;
    if ((c < 0x20 && c !== 0x09) || c === 0x7f || c > 0xff || (!quoted && c > 0x7e)) {
      broken(`parseContentType accepted a value holding U+${c.toString(16).padStart(4, "0")}`);
    }
  }
  const canonical = canonicalMediaType(s);
  if (parseContentType(canonical)?.mediaType !== t.mediaType) {
    broken(
      `canonicalMediaType gave ${JSON.stringify(canonical)}, which does not parse to the same media type`,
    );
  }
}

function checkBase64(s: string): void {
  const decoded = attempt("base64Decode", () => base64Decode(s), MALFORMED);
  const valid = attempt("isBase64", () => isBase64(s), NONE);
  if (valid.ok && decoded.ok !== valid.value) {
    broken(
      `base64Decode ${decoded.ok ? "accepts" : "refuses"} what isBase64 calls ${valid.value ? "valid" : "invalid"}`,
    );
  }
  if (decoded.ok) {
    const again = base64Decode(base64Encode(decoded.value));
    if (!deepEqual([...again], [...decoded.value]))
      broken("base64Decode(base64Encode(bytes)) is not the bytes");
  }
}

function checkCanonical(text: string, type: AttributeType): void {
  const out = attempt(`parseCanonical ${type}`, () => parseCanonical(text, type, "attr"), INVALID);
  if (!out.ok) return;
  const v = out.value;
  const checked = attempt(`checkValue ${type}`, () => checkValue(v, type, "attr"), INVALID);
  if (!checked.ok)
    broken(`parseCanonical gave a ${type} that checkValue refuses: ${checked.error.message}`);
  const again = attempt(
    `parseCanonical ${type}`,
    () => parseCanonical(canonicalString(v), type, "attr"),
    INVALID,
  );
  if (!again.ok)
    broken(`parseCanonical refuses the canonical string of what it gave: ${again.error.message}`);
  // (=== for numbers: "-0" reads as -0, whose canonical string is "0"; both are Integer zero.)
  const same =
    v instanceof Uint8Array
      ? deepEqual([...v], [...(again.value as Uint8Array)])
      : v === again.value;
  if (!same) broken(`parseCanonical(canonicalString(v)) is not v for ${type}`);
}

function checkJson(text: string, maxDepth: number | undefined): void {
  const limits = maxDepth === undefined ? {} : { maxDepth };
  attempt("jsonDepthExceeds", () => jsonDepthExceeds(text, maxDepth ?? 128), NONE);
  const out = attempt("parseJson", () => parseJson(text, "JSON", limits), MALFORMED);
  if (!out.ok) return;
  if (jsonDepth(out.value) > (maxDepth ?? 128))
    broken(`parseJson returned JSON nested deeper than its limit of ${maxDepth ?? 128}`);
  if (hasNonFinite(out.value))
    broken("parseJson returned a non-finite number, which JSON cannot carry");
}

function checkUtf8(bytes: Uint8Array): void {
  const out = attempt("utf8Decode", () => utf8Decode(bytes), MALFORMED);
  let expected: string | undefined;
  try {
    expected = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    expected = undefined;
  }
  if (out.ok !== (expected !== undefined))
    broken(
      `utf8Decode ${out.ok ? "accepts" : "refuses"} what TextDecoder ${out.ok ? "refuses" : "accepts"}`,
    );
  if (out.ok && out.value !== expected) broken("utf8Decode and TextDecoder give different text");
}

function checkText(bytes: Uint8Array, cut: number): void {
  const start = Math.min(cut, bytes.length);
  const src = { buf: bytes, view: undefined };
  const text = attempt("decodeText", () => decodeText(src, start, bytes.length, "text"), MALFORMED);
  const key = attempt("decodeKey", () => decodeKey(src, start, bytes.length, "key"), MALFORMED);
  let expected: string | undefined;
  try {
    expected = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
      bytes.subarray(start),
    );
  } catch {
    expected = undefined;
  }
  if (text.ok !== (expected !== undefined) || (text.ok && text.value !== expected))
    broken("decodeText differs from strict UTF-8 decoding");
  if (key.ok !== text.ok || (key.ok && text.ok && key.value !== text.value))
    broken("decodeKey differs from decodeText");
}

/** Core's parsing helpers. */
export const coreTarget: Target<CoreInput> = (() => {
  let c: Corpus;
  return {
    name: "core",
    covers: [
      "decodeHeaderValue",
      "encodeHeaderValue",
      "parseTimestamp",
      "isTimestamp",
      "canonicalTimestamp",
      "isUriReference",
      "isAbsoluteUri",
      "parseContentType",
      "base64Decode",
      "isBase64",
      "parseCanonical",
      "parseJson",
      "decodeData",
      "utf8Decode",
      "decodeText",
      "decodeKey",
    ],
    setup(seed) {
      c = corpus(seed);
    },
    generate(rng) {
      const fn = rng.pick(FUNCTIONS);
      const mutate = rng.chance(0.7);
      let text = "";
      let bytes: Uint8Array = new Uint8Array(0);
      let original: string | undefined;
      const event = pickEvent(rng, c, 0);
      switch (fn) {
        case "decodeHeaderValue": {
          const h = headerValues(rng, c);
          text = h.raw;
          original = mutate ? undefined : h.original;
          break;
        }
        case "encodeHeaderValue":
          text = String(canonicalString((event.subject ?? event.id) as string));
          break;
        case "timestamp":
          text = rng.chance(0.5) ? timestampText(rng) : rng.pick(ENGINE_TIMESTAMPS);
          break;
        case "uri":
          text = rng.pick([
            event.source,
            event.dataschema ?? "https://x.example/a?b#c",
            "urn:a:b",
            "a:b/c",
            "//host/p",
            "?q",
            "#f",
            "%41",
          ]);
          break;
        case "contentType":
          text = rng.pick(CONTENT_TYPES);
          break;
        case "base64":
          text = base64Encode(arbitraryBytes(rng, 48));
          break;
        case "parseCanonical":
          text = rng.chance(0.3) ? rng.pick(ATTRIBUTE_VALUES) : canonicalText(rng);
          break;
        default: {
          const data =
            event.data === undefined || event.data instanceof Uint8Array
              ? { a: [1, { b: null }] }
              : event.data;
          bytes = utf8(JSON.stringify(data) ?? "null");
          if (rng.chance(0.1)) {
            const depth = rng.pick([127, 128, 129, 1000, 100_000]);
            bytes = utf8(`${"[".repeat(depth)}${"]".repeat(depth)}`);
          }
          if (fn === "utf8" || fn === "decodeText")
            bytes = rng.chance(0.5) ? utf8(event.id) : bytes;
          text = new TextDecoder().decode(bytes);
        }
      }
      if (mutate) {
        text = mutateString(rng, text);
        bytes = mutateBytes(rng, bytes, { dictionary: [...ODD_UTF8, utf8("1e400"), utf8("[")] });
      }
      return {
        fn,
        text,
        bytes,
        type: rng.pick(TYPES),
        mode: rng.chance(0.7) ? "latin1" : "unicode",
        maxDepth: rng.chance(0.7) ? undefined : rng.pick([0, 1, 2, 128, 1000]),
        original,
      };
    },
    run(input) {
      switch (input.fn) {
        case "decodeHeaderValue":
          return checkHeaderValue(input);
        case "encodeHeaderValue": {
          const out = attempt(
            "encodeHeaderValue",
            () => encodeHeaderValue(input.text, "attr"),
            INVALID,
          );
          if (out.ok && !/^[\x21-\x7e]*$/.test(out.value))
            broken("encodeHeaderValue wrote a character outside printable ASCII");
          if (out.ok && decodeHeaderValue(out.value, "attr") !== input.text)
            broken("decodeHeaderValue(encodeHeaderValue(x)) is not x");
          return;
        }
        case "timestamp":
          return checkTimestamp(input.text);
        case "uri":
          return checkUri(input.text);
        case "contentType":
          return checkContentType(input.text);
        case "base64":
          return checkBase64(input.text);
        case "parseCanonical":
          return checkCanonical(input.text, input.type);
        case "parseJson":
          return checkJson(input.text, input.maxDepth);
        case "decodeData": {
          const ct = input.text.length < 64 ? input.text : "application/json";
          const limits = input.maxDepth === undefined ? undefined : { maxDepth: input.maxDepth };
          for (const type of [undefined, "application/json", "text/plain", ct]) {
            const out = attempt(
              "decodeData",
              () => decodeData(input.bytes, type, limits),
              MALFORMED,
            );
            if (out.ok && hasNonFinite(out.value))
              broken("decodeData returned a non-finite number, which JSON cannot carry");
          }
          return;
        }
        case "utf8":
          return checkUtf8(input.bytes);
        default:
          return checkText(input.bytes, input.text.length % 7);
      }
    },
  };
})();
