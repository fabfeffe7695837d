// Checks AMQP 1.0 encoded values before rhea decodes them. rhea's reader trusts what the bytes
// declare: an array of 2^32 nulls takes no bytes and builds 2^32 values, a list claiming millions
// of elements makes an array that long before reading one, and nesting recurses until the stack
// ends. This walk reads the same bytes the way rhea does, without building anything, and says
// whether rhea may read them: every size and count fits the bytes, nothing nests deeper than a
// limit, and the values rhea would build number at most a limit.

/**
 * The message annotation (a symbol key; its value a string: an error code, a colon, why) that
 * marks a message Posthorn kept from rhea's decoder ({@link guardedConnect}) or that rhea did not
 * decode (a message format other than 0). Such a message carries the transfer's original bytes
 * (none past the guard's `maxMessageBytes`) in one data section; the AMQP subscriber hands it out
 * as a delivery whose `error` has that code (`MalformedInput`, `PayloadTooLarge` or
 * `NotSupported`), to be rejected like any undecodable message.
 */
export const UNDECODABLE_ANNOTATION = "x-opt-posthorn-undecodable";

/** The default nesting limit of the frame guard and {@link checkAmqpMessage}: 32. */
export const DEFAULT_GUARD_MAX_DEPTH = 32;
/** The default limit on values of the frame guard and {@link checkAmqpMessage}: 1,000,000. */
export const DEFAULT_GUARD_MAX_VALUES = 1_000_000;

const FIXED = 1;
const VARIABLE = 2;
const COMPOUND = 3;
const ARRAY = 4;

// Per typecode: its category (0: a typecode rhea does not know) and width (for fixed-width types
// the value's bytes, for the others the size field's bytes).
const KIND = new Uint8Array(256);
const WIDTH = new Uint8Array(256);
function define(kind: number, width: number, codes: number[]): void {
  for (const code of codes) {
    KIND[code] = kind;
    WIDTH[code] = width;
  }
}
define(FIXED, 0, [0x40, 0x41, 0x42, 0x43, 0x44, 0x45]);
define(FIXED, 1, [0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56]);
define(FIXED, 2, [0x60, 0x61]);
define(FIXED, 4, [0x70, 0x71, 0x72, 0x73, 0x74]);
define(FIXED, 8, [0x80, 0x81, 0x82, 0x83, 0x84]);
define(FIXED, 16, [0x94, 0x98]);
define(VARIABLE, 1, [0xa0, 0xa1, 0xa3]);
define(VARIABLE, 4, [0xb0, 0xb1, 0xb3]);
define(COMPOUND, 1, [0xc0, 0xc1]);
define(COMPOUND, 4, [0xd0, 0xd1]);
define(ARRAY, 1, [0xe0]);
define(ARRAY, 4, [0xf0]);

/** The big-endian 32-bit unsigned integer at `at`. */
export function readUint32(b: Uint8Array, at: number): number {
  return (
    (b[at] as number) * 0x1000000 +
    (((b[at + 1] as number) << 16) | ((b[at + 2] as number) << 8) | (b[at + 3] as number))
  );
}

const MAP8 = 0xc1;
const MAP32 = 0xd1;

/** Limits on what one frame body or one message may make rhea build. */
export interface WalkLimits {
  /** The deepest nesting of lists, maps, arrays and descriptors. */
  readonly maxDepth: number;
  /** The most values rhea would build, counting every element and descriptor. */
  readonly maxValues: number;
}

/**
 * A walk over encoded values: where it failed and why, and how many values it met. One walk is
 * reused for many buffers ({@link Walk.over}).
 */
export class Walk {
  reason: string | undefined = undefined;
  values = 0;
  bytes: Uint8Array = new Uint8Array(0);
  /** Where the bytes the reasons count from start. */
  origin = 0;
  constructor(readonly limits: WalkLimits) {}

  /** Starts a new walk over `bytes`, counting positions in reasons from `origin`. */
  over(bytes: Uint8Array, origin = 0): this {
    this.bytes = bytes;
    this.origin = origin;
    this.values = 0;
    this.reason = undefined;
    return this;
  }

  fail(reason: string): number {
    this.reason ??= reason;
    return -1;
  }

  /** A size or count field of `width` bytes (1 or 4) at `at`. */
  size(at: number, width: number): number {
    return width === 1 ? (this.bytes[at] as number) : readUint32(this.bytes, at);
  }

  /** Counts `n` more values; false past the limit. */
  count(n: number): boolean {
    this.values += n;
    if (this.values <= this.limits.maxValues) return true;
    this.fail(`it holds more than ${this.limits.maxValues} values`);
    return false;
  }

  /**
   * Steps over one value (its constructor and body) starting at `at`, which must end by `end`,
   * `depth` lists, maps, arrays and descriptors deep. The caller counted it.
   *
   * @returns where the next value starts, or -1 with `reason` set
   */
  value(at: number, end: number, depth: number): number {
    if (at >= end) return this.fail(`a value at byte ${at - this.origin} is cut short`);
    const code = this.bytes[at] as number;
    if (code !== 0x00) return this.body(code, at + 1, end, depth);
    // A described value: the descriptor, then the value it describes (itself perhaps
    // described, as rhea reads a chain of descriptors).
    if (!this.deeper(depth) || !this.count(1)) return -1;
    const next = this.value(at + 1, end, depth + 1);
    return next < 0 ? next : this.value(next, end, depth + 1);
  }

  deeper(depth: number): boolean {
    if (depth < this.limits.maxDepth) return true;
    this.fail(`values are nested more than ${this.limits.maxDepth} deep`);
    return false;
  }

  /** Steps over the body of a value of typecode `code` starting at `at`. */
  body(code: number, at: number, end: number, depth: number): number {
    const width = WIDTH[code] as number;
    switch (KIND[code]) {
      case FIXED:
        return at + width <= end
          ? at + width
          : this.fail(`a value at byte ${at - this.origin} is cut short`);
      case VARIABLE:
        return this.variable(width, at, end);
      case COMPOUND:
        return this.compound(code, width, at, end, depth);
      case ARRAY:
        return this.array(width, at, end, depth);
      default:
        return this.fail(
          `byte ${at - 1 - this.origin} holds 0x${code.toString(16)}, not an AMQP typecode`,
        );
    }
  }

  variable(width: number, at: number, end: number): number {
    if (at + width > end) return this.fail(`a size at byte ${at - this.origin} is cut short`);
    const next = at + width + this.size(at, width);
    return next <= end
      ? next
      : this.fail(`a value at byte ${at - this.origin} claims more bytes than there are`);
  }

  compound(code: number, width: number, at: number, end: number, depth: number): number {
    const last = this.frame(width, at, end);
    if (last < 0 || !this.deeper(depth)) return -1;
    const count = this.size(at + width, width);
    let next = at + 2 * width;
    // Every element takes at least its constructor's byte.
    if (count > last - next) {
      return this.fail(
        `a list or map at byte ${at - this.origin} claims ${count} elements in ${last - next} bytes`,
      );
    }
    if ((code === MAP8 || code === MAP32) && count % 2 !== 0) {
      return this.fail(`a map at byte ${at - this.origin} has an odd number of elements`);
    }
    if (!this.count(count)) return -1;
    const bytes = this.bytes;
    for (let i = 0; i < count; i++) {
      if (next >= last) return this.fail(`a value at byte ${next - this.origin} is cut short`);
      // Fixed and variable width elements, most of them, are stepped over here.
      const element = bytes[next] as number;
      const kind = KIND[element];
      if (kind === FIXED) {
        next += 1 + (WIDTH[element] as number);
      } else if (kind === VARIABLE) {
        next = this.variable(WIDTH[element] as number, next + 1, last);
      } else {
        next = this.value(next, last, depth + 1);
      }
      if (next < 0) return next;
    }
    return next === last
      ? last
      : this.fail(
          `a list or map at byte ${at - this.origin} declares more bytes than its elements take`,
        );
  }

  array(width: number, at: number, end: number, depth: number): number {
    const last = this.frame(width, at, end);
    if (last < 0 || !this.deeper(depth)) return -1;
    const count = this.size(at + width, width);
    let next = at + 2 * width;
    while (next < last && this.bytes[next] === 0x00) {
      if (!this.count(1)) return -1;
      next = this.value(next + 1, last, depth + 1);
      if (next < 0) return next;
    }
    if (next >= last)
      return this.fail(`an array at byte ${at - this.origin} has no element constructor`);
    const element = this.bytes[next++] as number;
    if (KIND[element] === 0) {
      return this.fail(
        `an array at byte ${at - this.origin} holds 0x${element.toString(16)}, not an AMQP typecode`,
      );
    }
    // Elements that take no bytes (nulls, booleans as 0x41/0x42, empty lists) still make one
    // value each in rhea, so their count is held to the array's size.
    const empty = KIND[element] === FIXED && WIDTH[element] === 0;
    if (count > (empty ? last - at : last - next)) {
      return this.fail(
        `an array at byte ${at - this.origin} claims ${count}${empty ? " empty" : ""} elements in ${last - at} bytes`,
      );
    }
    if (!this.count(count)) return -1;
    for (let i = 0; i < count && !empty; i++) {
      next = this.body(element, next, last, depth + 1);
      if (next < 0) return next;
    }
    return next === last
      ? last
      : this.fail(
          `an array at byte ${at - this.origin} declares more bytes than its elements take`,
        );
  }

  /** Where a list, map or array whose size field is at `at` ends; -1 when it cannot. */
  frame(width: number, at: number, end: number): number {
    if (at + 2 * width > end) return this.fail(`a size at byte ${at - this.origin} is cut short`);
    const size = this.size(at, width);
    const last = at + width + size;
    if (size < width || last > end) {
      return this.fail(
        `a list, map or array at byte ${at - this.origin} claims more bytes than there are`,
      );
    }
    return last;
  }
}

// Message sections (AMQP 1.0, 3.2) by descriptor code, with the encodings each may take.
const LIST_CODES = [0x45, 0xc0, 0xd0];
const MAP_CODES = [MAP8, MAP32];
const SECTIONS = new Map<number | string, { name: string; codes: number[] | undefined }>();
for (const [code, symbol, name, codes] of [
  [0x70, "amqp:header:list", "header", LIST_CODES],
  [0x71, "amqp:delivery-annotations:map", "delivery-annotations", MAP_CODES],
  [0x72, "amqp:message-annotations:map", "message-annotations", MAP_CODES],
  [0x73, "amqp:properties:list", "properties", LIST_CODES],
  [0x74, "amqp:application-properties:map", "application-properties", MAP_CODES],
  [0x75, "amqp:data:binary", "data", [0xa0, 0xb0]],
  [0x76, "amqp:amqp-sequence:list", "amqp-sequence", LIST_CODES],
  [0x77, "amqp:value:*", "amqp-value", undefined],
  [0x78, "amqp:footer:map", "footer", MAP_CODES],
] as const) {
  const section = { name, codes: codes as number[] | undefined };
  SECTIONS.set(code, section);
  SECTIONS.set(symbol, section);
}

/**
 * A descriptor's value at `at` (a numeric one as a number, a symbolic one as a string), or
 * `undefined` for any other encoding. Only read after the walk checked the bytes.
 */
export function descriptorAt(bytes: Uint8Array, at: number): number | string | undefined {
  switch (bytes[at]) {
    case 0x53:
      return bytes[at + 1];
    case 0x44:
      return 0;
    case 0x80:
      // Descriptor codes are small; a domain in the high half makes none of AMQP's own.
      return bytes.subarray(at + 1, at + 5).every((b) => b === 0)
        ? new DataView(bytes.buffer, bytes.byteOffset + at + 5, 4).getUint32(0)
        : undefined;
    case 0xa3:
      return Buffer.from(bytes.buffer, bytes.byteOffset + at + 2, bytes[at + 1]).toString("latin1");
    case 0xb3: {
      const size = new DataView(bytes.buffer, bytes.byteOffset + at + 1, 4).getUint32(0);
      return Buffer.from(bytes.buffer, bytes.byteOffset + at + 5, size).toString("latin1");
    }
    default:
      return undefined;
  }
}

/**
 * Checks a message's bytes (the payload of a transfer, all frames of it together) before rhea
 * decodes them: a sequence of the sections AMQP 1.0 defines, each encoded as its section must be,
 * within the limits.
 *
 * @param walk - the walk to use, over the buffer holding the message
 * @param start - where the message starts in that buffer
 * @param end - where it ends
 * @returns why rhea must not decode them, or `undefined` when it may
 */
export function checkSections(walk: Walk, start: number, end: number): string | undefined {
  const bytes = walk.bytes;
  let at = start;
  while (at < end) {
    if (bytes[at] !== 0x00) return `the section at byte ${at - start} has no descriptor`;
    if (!walk.count(2)) return walk.reason;
    const valueAt = walk.value(at + 1, end, 1);
    if (valueAt < 0) return walk.reason;
    const section = SECTIONS.get(descriptorAt(bytes, at + 1) ?? -1);
    if (section === undefined) {
      return `the section at byte ${at - start} is not one AMQP 1.0 defines`;
    }
    if (section.codes !== undefined && !section.codes.includes(bytes[valueAt] as number)) {
      return `the ${section.name} section at byte ${at - start} is not encoded as one`;
    }
    at = walk.value(valueAt, end, 1);
    if (at < 0) return walk.reason;
  }
  return undefined;
}

/**
 * Checks the bytes of an AMQP 1.0 message (the sections, as a transfer carries them) before rhea
 * decodes them, as {@link guardedConnect} does for every message it receives: a sequence of the
 * sections AMQP 1.0 defines, each encoded as its section must be, no size or count claiming more
 * bytes than there are, nesting within `maxDepth` and at most `maxValues` values. What passes,
 * `rhea.message.decode` reads in time and memory proportional to the bytes.
 *
 * @param bytes - the message's bytes
 * @param options - `maxDepth` (default {@link DEFAULT_GUARD_MAX_DEPTH}) and `maxValues` (default
 *   {@link DEFAULT_GUARD_MAX_VALUES})
 * @returns why rhea must not decode them, or `undefined` when it may
 */
export function checkAmqpMessage(
  bytes: Uint8Array,
  options: { maxDepth?: number; maxValues?: number } = {},
): string | undefined {
  const walk = new Walk({
    maxDepth: options.maxDepth ?? DEFAULT_GUARD_MAX_DEPTH,
    maxValues: options.maxValues ?? DEFAULT_GUARD_MAX_VALUES,
  });
  return checkSections(walk.over(bytes), 0, bytes.length);
}
