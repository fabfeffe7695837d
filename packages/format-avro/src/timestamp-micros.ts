import { malformed, parseTimestamp } from "@posthorn/core";

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
  return formatUtc(Number(seconds), fraction);
}

const pad2 = (n: number): string => (n < 10 ? `0${n}` : `${n}`);

/**
 * RFC 3339 in UTC from whole epoch seconds and a fraction (digits without trailing zeros), by
 * calendar arithmetic (days to civil date, after H. Hinnant) rather than through `Date`, since
 * this runs once per decoded timestamp.
 *
 * @internal
 */
export function formatUtc(epochSeconds: number, fraction: string): string {
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
  const y = year >= 1000 ? `${year}` : `${year}`.padStart(4, "0");
  const frac = fraction === "" ? "" : `.${fraction}`;
  return `${y}-${pad2(month)}-${pad2(day)}T${pad2(hour)}:${pad2(minute)}:${pad2(second)}${frac}Z`;
}
