/**
 * A parsed media type (RFC 2045/RFC 9110 section 8.3.1): lower-cased type and subtype, the
 * structured-syntax suffix, and parameters with lower-cased names and unquoted values.
 */
export interface ContentType {
  /** `type/subtype`, lower case, without parameters, e.g. `application/cloudevents+json`. */
  readonly mediaType: string;
  /** The top-level type, lower case, e.g. `application`. */
  readonly type: string;
  /** The subtype with its suffix, lower case, e.g. `cloudevents+json`. */
  readonly subtype: string;
  /** The structured-syntax suffix without `+` (`json` for `application/vnd.x+json`), or `""`. */
  readonly suffix: string;
  /**
   * The parameters by lower-cased name, values unquoted and unescaped; the first of a repeated
   * name wins. A null-prototype object, frozen.
   */
  readonly parameters: Readonly<Record<string, string>>;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const cache = new Map<string, ContentType | null>();
const CACHE_LIMIT = 256;

/**
 * Parses a `Content-Type` value. Results are cached, since the same few values recur on every
 * message.
 *
 * Type, subtype and parameter names are tokens (RFC 9110 section 8.3.1); a parameter value is a
 * quoted string or, leniently, any visible ASCII but `;` and `"` (producers leave URIs unquoted).
 * Spaces and tabs around the parts are allowed; control characters (CR, LF, NUL, ...) and
 * non-ASCII outside quotes never are, so a value that parses can go into any protocol's header.
 *
 * @param value - the header value, e.g. `application/json; charset=utf-8`
 * @returns the parsed type (frozen, shared between calls), or `undefined` when the value is not
 *   a media type
 */
export function parseContentType(value: string): ContentType | undefined {
  const hit = cache.get(value);
  if (hit !== undefined) return hit ?? undefined;
  const parsed = parseUncached(value);
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(value, parsed ?? null);
  return parsed;
}

function parseUncached(value: string): ContentType | undefined {
  const semi = value.indexOf(";");
  const essence = trimOws(semi === -1 ? value : value.slice(0, semi));
  const slash = essence.indexOf("/");
  if (slash <= 0) return undefined;
  // Checked before lower-casing: toLowerCase maps some non-ASCII letters to ASCII ones (the
  // Kelvin sign to "k").
  const type = essence.slice(0, slash);
  const subtype = essence.slice(slash + 1);
  if (!TOKEN.test(type) || !TOKEN.test(subtype)) return undefined;
  const plus = subtype.lastIndexOf("+");
  const parameters: Record<string, string> = Object.create(null);
  if (semi !== -1 && !parseParameters(value.slice(semi + 1), parameters)) return undefined;
  const lowerSubtype = subtype.toLowerCase();
  return Object.freeze({
    mediaType: essence.toLowerCase(),
    type: type.toLowerCase(),
    subtype: lowerSubtype,
    suffix: plus === -1 ? "" : lowerSubtype.slice(plus + 1),
    parameters: Object.freeze(parameters),
  });
}

/** Without leading and trailing spaces and tabs (HTTP's optional whitespace), and nothing else. */
function trimOws(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && (text[start] === " " || text[start] === "\t")) start++;
  while (end > start && (text[end - 1] === " " || text[end - 1] === "\t")) end--;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

// A parameter value as a token, leniently: any visible ASCII but `;` and `"` (some producers
// leave URIs unquoted), never a control character, a space or non-ASCII.
const BARE_VALUE = /^[!#-:<-~]*$/;

// Inside a quoted string (RFC 9110 section 5.6.4): tab, space, visible ASCII and obs-text
// (U+0080-U+00FF), never a control character.
function isQuotedChar(c: number): boolean {
  return c === 0x09 || (c >= 0x20 && c !== 0x7f && c <= 0xff);
}

function parseParameters(text: string, into: Record<string, string>): boolean {
  let i = 0;
  while (i < text.length) {
    while (i < text.length && (text[i] === " " || text[i] === "\t" || text[i] === ";")) i++;
    if (i >= text.length) break;
    const eq = text.indexOf("=", i);
    if (eq === -1) return false;
    const rawName = trimOws(text.slice(i, eq));
    if (!TOKEN.test(rawName)) return false;
    const name = rawName.toLowerCase();
    i = eq + 1;
    let val = "";
    if (text[i] === '"') {
      i++;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === "\\" && i + 1 < text.length) i++;
        if (!isQuotedChar(text.charCodeAt(i))) return false;
        val += text[i];
        i++;
      }
      if (text[i] !== '"') return false;
      i++;
    } else {
      const end = text.indexOf(";", i);
      val = trimOws(end === -1 ? text.slice(i) : text.slice(i, end));
      if (!BARE_VALUE.test(val)) return false;
      i = end === -1 ? text.length : end;
    }
    if (!(name in into)) into[name] = val;
  }
  return true;
}

/**
 * Whether a content type names JSON: `application/json`, `text/json` or any `+json` suffix.
 *
 * @param value - a `Content-Type` value; `undefined` or an unparseable value is not JSON
 */
export function isJsonContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  const ct = parseContentType(value);
  return ct !== undefined && isJsonType(ct);
}

/** {@link isJsonContentType} of a parsed type (internal: data.ts parses once per message). */
export function isJsonType(ct: ContentType): boolean {
  return ct.subtype === "json" || ct.suffix === "json";
}

const TEXT_SUBTYPES = new Set([
  "xml",
  "json",
  "javascript",
  "ecmascript",
  "yaml",
  "x-yaml",
  "csv",
  "x-www-form-urlencoded",
  "graphql",
  "sql",
]);

// Top-level types whose data is binary by definition (RFC 2046 4.2-4.4, RFC 8081): a charset
// parameter on one names no encoding of its data. A text syntax under them (image/svg+xml) is
// still text, by its suffix.
const BINARY_TOP_LEVEL = new Set(["image", "audio", "video", "font"]);

/**
 * Whether a content type names text: `text/*`, JSON, XML and YAML (also as `+suffix`), CSV and a
 * few other text syntaxes, and a type with a `charset` parameter that names a character encoding.
 * A charset marks no text on `application/octet-stream` (RFC 2046 4.5.1: arbitrary binary data),
 * on image, audio, video and font types, or as `charset=binary` (what `file --mime` writes for
 * data that is not text), so `application/octet-stream; charset=binary` is not text. Such data is
 * carried as a string.
 *
 * @param value - a `Content-Type` value; `undefined` or an unparseable value is not text
 */
export function isTextContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  const ct = parseContentType(value);
  return ct !== undefined && isTextType(ct);
}

/** {@link isTextContentType} of a parsed type (internal: data.ts parses once per message). */
export function isTextType(ct: ContentType): boolean {
  if (
    ct.type === "text" ||
    TEXT_SUBTYPES.has(ct.subtype) ||
    ct.suffix === "json" ||
    ct.suffix === "xml" ||
    ct.suffix === "yaml"
  ) {
    return true;
  }
  const charset = ct.parameters.charset;
  return (
    charset !== undefined &&
    charset.toLowerCase() !== "binary" &&
    ct.mediaType !== "application/octet-stream" &&
    !BINARY_TOP_LEVEL.has(ct.type)
  );
}

/**
 * Whether `value` is a syntactically valid media type (RFC 2046), parameters included.
 *
 * @param value - the text to check
 */
export function isMediaType(value: string): boolean {
  return parseContentType(value) !== undefined;
}

/**
 * Whether two content types name the same media type, ignoring case and parameters.
 *
 * @param a - one `Content-Type` value; `undefined` or a value that is not a media type matches
 *   nothing (two unparseable values are not "the same")
 * @param b - the other
 */
export function sameMediaType(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return false;
  const left = parseContentType(a);
  return left !== undefined && left.mediaType === parseContentType(b)?.mediaType;
}
