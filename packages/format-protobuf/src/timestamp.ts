import { formatInstant, malformed, parseTimestamp } from "@posthorn/core";

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
  return formatInstant(seconds, fraction);
}
