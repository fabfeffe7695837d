import { base64Decode, base64Encode, isBase64, isBytes } from "./bytes.js";
import { invalidEvent, quoted } from "./errors.js";

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
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
const INT32_MAX = 2147483647;

/**
 * Whether `n` is a CloudEvents Integer: a whole number in the signed 32-bit range.
 *
 * @param n - any value; only a `number` can be one
 */
export function isInteger(n: unknown): n is number {
  return typeof n === "number" && Number.isInteger(n) && n >= INT32_MIN && n <= INT32_MAX;
}

/**
 * Whether `s` is a valid CloudEvents String value (spec.md, "Type System"): no control characters
 * U+0000-U+001F and U+007F-U+009F, no noncharacters (U+FDD0-U+FDEF and the last two code points of
 * every plane), no lone surrogates. Printable ASCII, the common case, is checked by one anchored
 * character-class regular expression (compiled once, native, about 3x faster than a loop over
 * charCodeAt); other strings get one pass over the UTF-16 code units.
 *
 * @param s - the string to check; the empty string is valid
 */
export function isValidString(s: string): boolean {
  // Printable ASCII, the common case, is settled by one native scan; anything else gets the loop.
  if (PRINTABLE_ASCII.test(s)) return true;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f) continue;
    if (c < 0xa0) return false; // C0, DEL and C1 controls
    if (c < 0xd800) continue;
    if (c <= 0xdbff) {
      const low = i + 1 < n ? s.charCodeAt(i + 1) : 0;
      if (low < 0xdc00 || low > 0xdfff) return false; // lone high surrogate
      // U+xFFFE and U+xFFFF of planes 1-16: the high surrogate ends in 0x3F, the low is DFFE/DFFF.
      if ((c & 0x3f) === 0x3f && low >= 0xdffe) return false;
      i++;
      continue;
    }
    if (c <= 0xdfff) return false; // lone low surrogate
    if ((c >= 0xfdd0 && c <= 0xfdef) || c >= 0xfffe) return false;
  }
  return true;
}

// RFC 3986 section 2: unreserved and reserved characters, plus '%' (followed by two hex digits,
// checked separately). 1 = allowed.
const URI_CHAR = new Uint8Array(128);
for (const ch of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%") {
  URI_CHAR[ch.charCodeAt(0)] = 1;
}

function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

function isAlpha(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

// Length of the scheme and its colon ("https:" is 6), or 0 when `s` does not start with one.
function schemeLength(s: string): number {
  if (s.length === 0 || !isAlpha(s.charCodeAt(0))) return 0;
  for (let i = 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 58) return i + 1;
    if (!(isAlpha(c) || (c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46)) return 0;
  }
  return 0;
}

/**
 * Whether `s` is an RFC 3986 URI-reference (absolute or relative). Checks the characters, the
 * percent escapes and where a colon may stand, not each component's full grammar.
 *
 * @param s - the text to check; the empty string is a valid (relative) reference
 */
export function isUriReference(s: string): boolean {
  let firstColon = -1;
  let firstDelimiter = -1;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || URI_CHAR[c] === 0) return false;
    if (c === 37) {
      if (!isHex(s.charCodeAt(i + 1)) || !isHex(s.charCodeAt(i + 2))) return false;
      i += 2;
    } else if (c === 58) {
      if (firstColon === -1) firstColon = i;
    } else if ((c === 47 || c === 63 || c === 35) && firstDelimiter === -1) {
      firstDelimiter = i;
    }
  }
  // A colon before any '/', '?' or '#' must end a scheme: a relative reference cannot have one in
  // its first segment (RFC 3986 section 4.2).
  if (firstColon === -1 || (firstDelimiter !== -1 && firstDelimiter < firstColon)) return true;
  return schemeLength(s) === firstColon + 1;
}

/**
 * Whether `s` is an absolute RFC 3986 URI (has a scheme).
 *
 * @param s - the text to check
 */
export function isAbsoluteUri(s: string): boolean {
  return schemeLength(s) > 0 && isUriReference(s);
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|([+-])(\d{2}):(\d{2}))$/;

/** A timestamp split into whole UTC seconds since the epoch and the digits of the fraction. */
export interface Instant {
  /**
   * Whole seconds since 1970-01-01T00:00:00Z, negative before it; a leap second counts as the
   * second after it.
   */
  readonly epochSeconds: number;
  /** The fraction of the second as a decimal string without trailing zeros ("" when none). */
  readonly fraction: string;
}

// Every RFC 3339 shape, by regular expression and Date: the fallback of parseTimestamp.
function parseTimestampGeneral(s: string): Instant | undefined {
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

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * Parses an RFC 3339 timestamp at full precision (any number of fraction digits, any offset).
 * The common shapes (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM)`) are read by calendar
 * arithmetic, without `Date` or regular expressions, since formats call this for every event;
 * everything else (leap seconds, invalid text) goes through the general parser.
 *
 * @param s - the timestamp text
 * @returns the instant, or `undefined` when `s` is not RFC 3339
 */
export function parseTimestamp(s: string): Instant | undefined {
  const n = s.length;
  if (
    n < 20 ||
    s.charCodeAt(4) !== 45 ||
    s.charCodeAt(7) !== 45 ||
    (s.charCodeAt(10) | 32) !== 116 ||
    s.charCodeAt(13) !== 58 ||
    s.charCodeAt(16) !== 58
  ) {
    return parseTimestampGeneral(s);
  }
  const year = digits(s, 0, 4);
  const month = digits(s, 5, 2);
  const day = digits(s, 8, 2);
  const hour = digits(s, 11, 2);
  const minute = digits(s, 14, 2);
  const second = digits(s, 17, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23) {
    return parseTimestampGeneral(s);
  }
  if (minute < 0 || minute > 59 || second < 0 || second > 59) return parseTimestampGeneral(s);
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  if (day > (month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] as number))) return undefined;
  let i = 19;
  let fraction = "";
  if (s.charCodeAt(i) === 46) {
    let j = i + 1;
    while (j < n && s.charCodeAt(j) >= 48 && s.charCodeAt(j) <= 57) j++;
    if (j === i + 1) return undefined;
    let end = j;
    while (end > i + 1 && s.charCodeAt(end - 1) === 48) end--;
    fraction = s.slice(i + 1, end);
    i = j;
  }
  let offsetMinutes = 0;
  const c = s.charCodeAt(i);
  if ((c | 32) === 122) {
    if (i + 1 !== n) return undefined;
  } else if ((c === 43 || c === 45) && n === i + 6 && s.charCodeAt(i + 3) === 58) {
    const oh = digits(s, i + 1, 2);
    const om = digits(s, i + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59) return undefined;
    offsetMinutes = (c === 45 ? -1 : 1) * (oh * 60 + om);
  } else {
    return parseTimestampGeneral(s);
  }
  // Days since 1970-01-01 of a proleptic Gregorian date (after H. Hinnant).
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const days =
    era * 146097 + yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy - 719468;
  return {
    epochSeconds: days * 86400 + hour * 3600 + minute * 60 + second - offsetMinutes * 60,
    fraction,
  };
}

/**
 * Whether `s` is an RFC 3339 timestamp: date, `T`, time with seconds, an optional fraction, and
 * `Z` or a `±HH:MM` offset (lower-case `t` and `z` accepted).
 *
 * @param s - the text to check
 */
export function isTimestamp(s: string): boolean {
  // Checked by position, no regular expression, no allocation: this runs on every decoded event.
  const n = s.length;
  if (n < 20) return false;
  if (
    s.charCodeAt(4) !== 45 ||
    s.charCodeAt(7) !== 45 ||
    s.charCodeAt(13) !== 58 ||
    s.charCodeAt(16) !== 58
  ) {
    return false;
  }
  const t = s.charCodeAt(10);
  if (t !== 84 && t !== 116) return false;
  const year = digits(s, 0, 4);
  const month = digits(s, 5, 2);
  const day = digits(s, 8, 2);
  const hour = digits(s, 11, 2);
  const minute = digits(s, 14, 2);
  const second = digits(s, 17, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23) return false;
  if (minute < 0 || minute > 59 || second < 0 || second > 60) return false;
  if (day > 28 && day > daysIn(year, month)) return false;
  let i = 19;
  if (s.charCodeAt(i) === 46) {
    const start = ++i;
    while (i < n && isDigit(s.charCodeAt(i))) i++;
    if (i === start) return false;
  }
  const z = s.charCodeAt(i);
  if (z === 90 || z === 122) return i + 1 === n;
  if ((z !== 43 && z !== 45) || i + 6 !== n || s.charCodeAt(i + 3) !== 58) return false;
  const oh = digits(s, i + 1, 2);
  const om = digits(s, i + 4, 2);
  return oh >= 0 && oh <= 23 && om >= 0 && om <= 59;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

// The decimal value of `count` digits at `at`, or -1 when one is not a digit.
function digits(s: string, at: number, count: number): number {
  let v = 0;
  for (let i = at; i < at + count; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return -1;
    v = v * 10 + (c - 48);
  }
  return v;
}

function daysIn(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/**
 * The canonical form of a timestamp for comparison: UTC, `Z`, fraction without trailing zeros.
 * Two timestamps name the same instant exactly when their canonical forms are equal. An offset
 * can move a time out of the years 0000 to 9999 (`0000-01-01T00:00:00+00:01` is in year -1),
 * which RFC 3339 cannot write in UTC: such an instant is written with ISO 8601's expanded year,
 * as `Date.toISOString` does (`-000001-12-31T23:59:00Z`).
 *
 * @param s - an RFC 3339 timestamp; text that is not one is returned unchanged
 */
export function canonicalTimestamp(s: string): string {
  const t = parseTimestamp(s);
  if (!t) return s;
  return formatInstant(t.epochSeconds, t.fraction);
}

/**
 * Formats whole epoch seconds plus a decimal fraction as RFC 3339 in UTC (trailing zeros of the
 * fraction dropped); outside the years 0000 to 9999, with ISO 8601's expanded year as
 * `Date.toISOString` writes it.
 *
 * @param epochSeconds - whole seconds since 1970-01-01T00:00:00Z
 * @param fraction - the decimal digits of the fraction of a second, without the point (`""` for
 *   none)
 */
export function formatInstant(epochSeconds: number, fraction: string): string {
  let end = fraction.length;
  while (end > 0 && fraction.charCodeAt(end - 1) === 48) end--;
  return formatUtc(epochSeconds, end === fraction.length ? fraction : fraction.slice(0, end));
}

const pad2 = (n: number): string => (n < 10 ? `0${n}` : `${n}`);

/**
 * RFC 3339 in UTC from whole epoch seconds and a fraction without trailing zeros, by calendar
 * arithmetic (days to civil date, after H. Hinnant) rather than through `Date`.
 */
function formatUtc(epochSeconds: number, fraction: string): string {
  const days = Math.floor(epochSeconds / 86400);
  let secs = epochSeconds - days * 86400;
  const hour = Math.floor(secs / 3600);
  secs -= hour * 3600;
  const minute = Math.floor(secs / 60);
  const second = secs - minute * 60;
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  // Years past 0000-9999 (an offset can move a time there) have no RFC 3339 form: ISO 8601's
  // expanded one, as Date.toISOString writes it, still names each instant once.
  const y =
    year >= 0 && year <= 9999
      ? `${year}`.padStart(4, "0")
      : `${year < 0 ? "-" : "+"}${`${Math.abs(year)}`.padStart(6, "0")}`;
  const frac = fraction === "" ? "" : `.${fraction}`;
  return `${y}-${pad2(month)}-${pad2(day)}T${pad2(hour)}:${pad2(minute)}:${pad2(second)}${frac}Z`;
}

/**
 * Converts a `Date` into the RFC 3339 string Posthorn keeps for a Timestamp: what
 * `toISOString()` gives (UTC, milliseconds), written from the UTC fields, which takes V8 about
 * 40% of the time `toISOString` does (0.2 against 0.5 µs here). Years outside 0-9999 and invalid
 * dates go to `toISOString` (which throws `RangeError` for the latter).
 *
 * @param d - the date
 * @throws RangeError for an invalid date
 */
export function dateToTimestamp(d: Date): string {
  const year = d.getUTCFullYear();
  if (!(year >= 0 && year <= 9999)) return d.toISOString();
  const ms = d.getUTCMilliseconds();
  const y = year >= 1000 ? `${year}` : `${year}`.padStart(4, "0");
  const frac = ms >= 100 ? `${ms}` : ms >= 10 ? `0${ms}` : `00${ms}`;
  return `${y}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}T${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}.${frac}Z`;
}

/**
 * The canonical string form of an attribute value (spec.md, "Type System"): Boolean as
 * `true`/`false`, Integer in decimal, Binary as base64, everything else as the string itself.
 *
 * @param value - the attribute value
 */
export function canonicalString(value: AttributeValue): string {
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return String(value);
  return base64Encode(value);
}

/**
 * The type a value has without further knowledge: strings are Strings.
 *
 * @param value - the attribute value
 * @returns `String`, `Boolean`, `Integer` (any number) or `Binary`
 */
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
 * @param text - the canonical string
 * @param type - the attribute's type
 * @param name - the attribute's name, for the error (default `"attribute"`)
 * @returns the value: a boolean, a number, bytes, or the string itself for the string types
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
      throw invalidEvent(
        `${name} must be a Boolean ("true" or "false"), got ${quoted(text)}`,
        name,
      );
    case "Integer": {
      const n = INTEGER_TEXT.test(text) ? Number(text) : Number.NaN;
      if (!isInteger(n)) {
        throw invalidEvent(`${name} must be a 32-bit Integer, got ${quoted(text)}`, name);
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
 * An extension value as a typed format or binding decoded it (JSON, Avro, Protobuf, AMQP), held
 * to the type declared for it, as strings from string-only transports are ({@link parseCanonical}):
 * a string is read as the declared type; a value of the declared type stays as it is; a value of
 * another type becomes its canonical string when the declared type is String, and is an error
 * otherwise. With no declared type the value is returned unchanged, and so is anything that is
 * not an attribute value (the CloudEvent constructor refuses it).
 *
 * @param name - the attribute's name, for the error
 * @param value - the decoded value
 * @param declared - the declared type (`registry.typeOf(name)`), or `undefined`
 * @param where - what carried the value, for the error, e.g. `"JSON"`
 * @returns the value, of the declared type
 * @throws {@link PosthornError} `InvalidEvent` when the value is not of the declared type
 */
export function asDeclaredType(
  name: string,
  value: unknown,
  declared: AttributeType | undefined,
  where: string,
): unknown {
  if (declared === undefined) return value;
  if (typeof value === "string") {
    return declared === "String" ? value : parseCanonical(value, declared, name);
  }
  let actual: AttributeType;
  if (typeof value === "boolean") actual = "Boolean";
  else if (isInteger(value)) actual = "Integer";
  else if (isBytes(value)) actual = "Binary";
  else return value;
  if (declared === actual) return value;
  if (declared === "String") return canonicalString(value as AttributeValue);
  throw invalidEvent(`${name} must be of type ${declared}; ${where} carried ${actual}`, name);
}

/**
 * Checks a value against a CloudEvents type.
 *
 * @param value - the value to check: a boolean, a number, bytes, or a string for the string types
 * @param type - the type it must have
 * @param name - the attribute's name, for the error
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
