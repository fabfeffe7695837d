import { malformed, parseTimestamp } from "@posthorn/core";

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
  const t = parseRfc3339(text);
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
  return formatUtc(seconds, fraction);
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

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function digits(s: string, at: number, count: number): number {
  let n = 0;
  for (let i = at; i < at + count; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * RFC 3339 parsing for the common shapes (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM)`) by
 * calendar arithmetic, with core's `parseTimestamp` deciding everything else (leap seconds,
 * invalid text). Same result as `parseTimestamp`, several times faster, since encoders call it
 * for every event.
 *
 * @internal
 */
export function parseRfc3339(s: string): { epochSeconds: number; fraction: string } | undefined {
  const n = s.length;
  if (
    n < 20 ||
    s.charCodeAt(4) !== 45 ||
    s.charCodeAt(7) !== 45 ||
    (s.charCodeAt(10) | 32) !== 116 ||
    s.charCodeAt(13) !== 58 ||
    s.charCodeAt(16) !== 58
  ) {
    return parseTimestamp(s);
  }
  const year = digits(s, 0, 4);
  const month = digits(s, 5, 2);
  const day = digits(s, 8, 2);
  const hour = digits(s, 11, 2);
  const minute = digits(s, 14, 2);
  const second = digits(s, 17, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23) {
    return parseTimestamp(s);
  }
  if (minute < 0 || minute > 59 || second < 0 || second > 59) return parseTimestamp(s);
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
    return parseTimestamp(s);
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
