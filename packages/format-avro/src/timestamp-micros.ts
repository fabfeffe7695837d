import { formatInstant, malformed, parseTimestamp } from "@posthorn/core";

// Years 0000 to 9999 in UTC, the range an RFC 3339 timestamp in UTC can name.
const MIN_SECONDS = -62167219200n;
const MAX_SECONDS = 253402300799n;
const MICROS = 1000000n;

/**
 * An RFC 3339 timestamp as microseconds since the epoch (Avro `timestamp-micros`): a number
 * when it is exact as one (years 1843 to 2096), otherwise a bigint.
 *
 * @returns the microseconds, or `undefined` when the text is not a timestamp or names a finer
 *   instant than a microsecond
 * @internal
 */
export function toMicros(text: string): number | bigint | undefined {
  const t = parseTimestamp(text);
  if (t === undefined || t.fraction.length > 6) return undefined;
  const micros = t.fraction === "" ? 0 : Number(t.fraction.padEnd(6, "0"));
  if (Math.abs(t.epochSeconds) < 4e9) return t.epochSeconds * 1e6 + micros;
  const seconds = BigInt(t.epochSeconds);
  if (seconds < MIN_SECONDS || seconds > MAX_SECONDS) return undefined;
  return seconds * MICROS + BigInt(micros);
}

/**
 * Microseconds since the epoch as an RFC 3339 timestamp in UTC.
 *
 * @throws {@link PosthornError} `MalformedInput` outside years 0000 to 9999
 * @internal
 */
export function fromMicros(micros: number | bigint): string {
  let seconds: number;
  let rest: number;
  if (typeof micros === "number") {
    seconds = Math.floor(micros / 1e6);
    rest = micros - seconds * 1e6;
  } else {
    let s = micros / MICROS;
    let r = micros % MICROS;
    if (r < 0n) {
      s -= 1n;
      r += MICROS;
    }
    if (s < MIN_SECONDS || s > MAX_SECONDS) {
      throw malformed("Avro timestamp-micros is outside the years 0000 to 9999");
    }
    seconds = Number(s);
    rest = Number(r);
  }
  if (seconds < -62167219200 || seconds > 253402300799) {
    throw malformed("Avro timestamp-micros is outside the years 0000 to 9999");
  }
  let fraction = rest === 0 ? "" : String(rest).padStart(6, "0");
  while (fraction.endsWith("0")) fraction = fraction.slice(0, -1);
  return formatInstant(seconds, fraction);
}
