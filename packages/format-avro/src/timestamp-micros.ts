import { formatInstant, malformed, parseTimestamp } from "@posthorn/core";

// Years 0001 to 9999, the range RFC 3339 timestamps can name.
const MIN_SECONDS = -62135596800n;
const MAX_SECONDS = 253402300799n;
const MICROS = 1000000n;

/**
 * An RFC 3339 timestamp as microseconds since the epoch (Avro `timestamp-micros`).
 *
 * @returns the microseconds, or `undefined` when the text is not a timestamp or names a finer
 *   instant than a microsecond
 * @internal
 */
export function toMicros(text: string): bigint | undefined {
  const t = parseTimestamp(text);
  if (t === undefined || t.fraction.length > 6) return undefined;
  const seconds = BigInt(t.epochSeconds);
  if (seconds < MIN_SECONDS || seconds > MAX_SECONDS) return undefined;
  return seconds * MICROS + (t.fraction === "" ? 0n : BigInt(t.fraction.padEnd(6, "0")));
}

/**
 * Microseconds since the epoch as an RFC 3339 timestamp in UTC.
 *
 * @throws {@link PosthornError} `MalformedInput` outside years 0001 to 9999
 * @internal
 */
export function fromMicros(micros: bigint): string {
  let seconds = micros / MICROS;
  let rest = micros % MICROS;
  if (rest < 0n) {
    seconds -= 1n;
    rest += MICROS;
  }
  if (seconds < MIN_SECONDS || seconds > MAX_SECONDS) {
    throw malformed("Avro timestamp-micros is outside the years 0001 to 9999");
  }
  let fraction = rest === 0n ? "" : rest.toString().padStart(6, "0");
  while (fraction.endsWith("0")) fraction = fraction.slice(0, -1);
  return formatInstant(Number(seconds), fraction);
}
