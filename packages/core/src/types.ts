import { base64Decode, base64Encode, isBase64, isBytes } from "./bytes.js";
import { invalidEvent } from "./errors.js";

/**
 * The CloudEvents 1.0 type system (spec.md, "Type System").
 */
export type AttributeType =
  | "Boolean"
  | "Integer"
  | "String"
  | "Binary"
  | "URI"
  | "URI-reference"
  | "Timestamp";

/**
 * A value an attribute can hold in memory. Timestamps, URIs and URI-references are kept as the
 * strings they were given (so no precision or offset is lost); `Date` is accepted on input and
 * turned into its RFC 3339 string.
 */
export type AttributeValue = string | number | boolean | Uint8Array;

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

/** Whether `n` is a CloudEvents Integer: a whole number in the signed 32-bit range. */
export function isInteger(n: unknown): n is number {
  return typeof n === "number" && Number.isInteger(n) && n >= INT32_MIN && n <= INT32_MAX;
}

// spec.md, String: no control characters U+0000-U+001F and U+007F-U+009F, no noncharacters
// (U+FDD0-U+FDEF and the last two code points of every plane); lone surrogates are caught by
// String.prototype.isWellFormed.
const BAD_STRING_CHARS =
  /[\u0000-\u001F\u007F-\u009F\uFDD0-\uFDEF\uFFFE\uFFFF]|[\uD83F\uD87F\uD8BF\uD8FF\uD93F\uD97F\uD9BF\uD9FF\uDA3F\uDA7F\uDABF\uDAFF\uDB3F\uDB7F\uDBBF\uDBFF][\uDFFE\uDFFF]/;

type WellFormed = { isWellFormed?: () => boolean };

/** Whether `s` is a valid CloudEvents String value. */
export function isValidString(s: string): boolean {
  if (BAD_STRING_CHARS.test(s)) return false;
  const wf = (s as unknown as WellFormed).isWellFormed;
  if (wf) return wf.call(s);
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}

// RFC 3986 characters: unreserved, reserved, and '%' (checked for two hex digits separately).
const URI_CHARS = /^[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]*$/;
const BAD_PERCENT = /%(?![0-9A-Fa-f]{2})/;
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;

/** Whether `s` is an RFC 3986 URI-reference (absolute or relative). */
export function isUriReference(s: string): boolean {
  if (!URI_CHARS.test(s) || BAD_PERCENT.test(s)) return false;
  // A relative reference whose first segment holds a colon would read as a scheme (RFC 3986 4.2).
  const colon = s.indexOf(":");
  if (colon === -1) return true;
  const firstDelim = s.search(/[/?#]/);
  if (firstDelim !== -1 && firstDelim < colon) return true;
  return SCHEME.test(s);
}

/** Whether `s` is an absolute RFC 3986 URI (has a scheme). */
export function isAbsoluteUri(s: string): boolean {
  return SCHEME.test(s) && isUriReference(s);
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|([+-])(\d{2}):(\d{2}))$/;

/** A timestamp split into whole UTC seconds since the epoch and the fraction's nanoseconds. */
export interface Instant {
  readonly epochSeconds: number;
  /** The fraction of the second as a decimal string without trailing zeros ("" when none). */
  readonly fraction: string;
}

/**
 * Parses an RFC 3339 timestamp at full precision (any number of fraction digits, any offset).
 *
 * @returns the instant, or `undefined` when `s` is not RFC 3339
 */
export function parseTimestamp(s: string): Instant | undefined {
  const m = RFC3339.exec(s);
  if (!m || !fieldsValid(m)) return undefined;
  const second = Number(m[6]);
  const offsetMinutes =
    m[9] === undefined ? 0 : (m[9] === "-" ? -1 : 1) * (Number(m[10]) * 60 + Number(m[11]));
  // setUTCFullYear, unlike Date.UTC, keeps years 0-99 as they are.
  const d = new Date(0);
  d.setUTCFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  d.setUTCHours(Number(m[4]), Number(m[5]), Math.min(second, 59), 0);
  const epochSeconds = d.getTime() / 1000 + (second === 60 ? 1 : 0) - offsetMinutes * 60;
  const fraction = (m[7] ?? "").slice(1).replace(/0+$/, "");
  return { epochSeconds, fraction };
}

// Range checks of the RFC 3339 fields the regular expression matched (section 5.7).
function fieldsValid(m: RegExpExecArray): boolean {
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (
    month < 1 ||
    month > 12 ||
    day < 1 ||
    Number(m[4]) > 23 ||
    Number(m[5]) > 59 ||
    Number(m[6]) > 60
  ) {
    return false;
  }
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const daysInMonth =
    month === 2
      ? leap
        ? 29
        : 28
      : month === 4 || month === 6 || month === 9 || month === 11
        ? 30
        : 31;
  if (day > daysInMonth) return false;
  return m[9] === undefined || (Number(m[10]) <= 23 && Number(m[11]) <= 59);
}

/** Whether `s` is an RFC 3339 timestamp. */
export function isTimestamp(s: string): boolean {
  const m = RFC3339.exec(s);
  return m !== null && fieldsValid(m);
}

/**
 * The canonical form of a timestamp for comparison: UTC, `Z`, fraction without trailing zeros.
 * Two timestamps name the same instant exactly when their canonical forms are equal.
 */
export function canonicalTimestamp(s: string): string {
  const t = parseTimestamp(s);
  if (!t) return s;
  return formatInstant(t.epochSeconds, t.fraction);
}

/** Formats whole epoch seconds plus a decimal fraction as RFC 3339 in UTC. */
export function formatInstant(epochSeconds: number, fraction: string): string {
  const iso = new Date(epochSeconds * 1000).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z
  const frac = fraction.replace(/0+$/, "");
  return `${iso.slice(0, 19)}${frac ? `.${frac}` : ""}Z`;
}

/** Converts a `Date` into the RFC 3339 string Posthorn keeps for a Timestamp. */
export function dateToTimestamp(d: Date): string {
  return d.toISOString();
}

/**
 * The canonical string form of an attribute value (spec.md, "Type System"): Boolean as
 * `true`/`false`, Integer in decimal, Binary as base64, everything else as the string itself.
 */
export function canonicalString(value: AttributeValue): string {
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return String(value);
  return base64Encode(value);
}

/** The type a value has without further knowledge: strings are Strings. */
export function typeOfValue(value: AttributeValue): AttributeType {
  if (typeof value === "string") return "String";
  if (typeof value === "boolean") return "Boolean";
  if (typeof value === "number") return "Integer";
  return "Binary";
}

const INTEGER_TEXT = /^[+-]?\d+$/;

/**
 * Reads a canonical string back into a value of `type`, as a receiver does when it knows an
 * extension's type (HTTP headers, Kafka headers and MQTT user properties carry only strings).
 *
 * @throws {@link PosthornError} `InvalidEvent` when the string is not of that type
 */
export function parseCanonical(
  text: string,
  type: AttributeType,
  name = "attribute",
): AttributeValue {
  switch (type) {
    case "Boolean":
      if (text === "true") return true;
      if (text === "false") return false;
      throw invalidEvent(`${name} must be a Boolean ("true" or "false"), got ${quote(text)}`, name);
    case "Integer": {
      const n = INTEGER_TEXT.test(text) ? Number(text) : Number.NaN;
      if (!isInteger(n)) {
        throw invalidEvent(`${name} must be a 32-bit Integer, got ${quote(text)}`, name);
      }
      return n;
    }
    case "Binary":
      if (!isBase64(text)) throw invalidEvent(`${name} must be base64 Binary`, name);
      return base64Decode(text);
    default:
      checkValue(text, type, name);
      return text;
  }
}

/**
 * Checks a value against a CloudEvents type.
 *
 * @throws {@link PosthornError} `InvalidEvent` naming the attribute when it does not conform
 */
export function checkValue(value: unknown, type: AttributeType, name: string): void {
  switch (type) {
    case "Boolean":
      if (typeof value !== "boolean") throw invalidEvent(`${name} must be a Boolean`, name);
      return;
    case "Integer":
      if (!isInteger(value))
        throw invalidEvent(`${name} must be an Integer in the signed 32-bit range`, name);
      return;
    case "Binary":
      if (!isBytes(value)) throw invalidEvent(`${name} must be Binary (a Uint8Array)`, name);
      return;
    default:
      break;
  }
  if (typeof value !== "string") throw invalidEvent(`${name} must be a ${type} string`, name);
  switch (type) {
    case "String":
      if (!isValidString(value)) {
        throw invalidEvent(
          `${name} holds a control character, noncharacter or lone surrogate`,
          name,
        );
      }
      return;
    case "URI":
      if (!isAbsoluteUri(value)) throw invalidEvent(`${name} must be an absolute URI`, name);
      return;
    case "URI-reference":
      if (!isUriReference(value)) throw invalidEvent(`${name} must be a URI-reference`, name);
      return;
    case "Timestamp":
      if (!isTimestamp(value)) throw invalidEvent(`${name} must be an RFC 3339 timestamp`, name);
      return;
  }
}

function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);
}
