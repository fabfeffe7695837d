import { malformed, parseTimestamp } from "@posthorn/core";

// google.protobuf.Timestamp covers 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
const MIN_SECONDS = -62135596800;
const MAX_SECONDS = 253402300799;

/** A google.protobuf.Timestamp. @internal */
export interface ProtoTimestamp {
  readonly seconds: number;
  readonly nanos: number;
}

/**
 * An RFC 3339 timestamp as a google.protobuf.Timestamp.
 *
 * @returns the timestamp, or `undefined` when the text is not RFC 3339, is finer than a
 *   nanosecond, or lies outside the years 0001 to 9999
 * @internal
 */
export function toProtoTimestamp(text: string): ProtoTimestamp | undefined {
  const t = parseTimestamp(text);
  if (t === undefined || t.fraction.length > 9) return undefined;
  if (t.epochSeconds < MIN_SECONDS || t.epochSeconds > MAX_SECONDS) return undefined;
  return {
    seconds: t.epochSeconds,
    nanos: t.fraction === "" ? 0 : Number(t.fraction.padEnd(9, "0")),
  };
}

/**
 * A google.protobuf.Timestamp as an RFC 3339 timestamp in UTC, with as many fraction digits as
 * it needs.
 *
 * @throws {@link PosthornError} `MalformedInput` when the timestamp is out of its valid range
 * @internal
 */
export function fromProtoTimestamp(seconds: number, nanos: number): string {
  if (!(seconds >= MIN_SECONDS && seconds <= MAX_SECONDS) || !Number.isInteger(seconds)) {
    throw malformed("protobuf Timestamp seconds are outside the years 0001 to 9999");
  }
  if (!(nanos >= 0 && nanos <= 999999999)) {
    throw malformed("protobuf Timestamp nanos are outside 0 to 999999999");
  }
  let fraction = nanos === 0 ? "" : String(nanos).padStart(9, "0");
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
