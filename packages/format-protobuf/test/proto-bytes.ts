// Hand-built protobuf input for the tests that feed the decoder bytes an encoder would never write.

/** Base-128 varint of a non-negative number. */
export function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 128) {
    out.push((n % 128) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A length-delimited field (wire type 2) holding `bytes`. */
export const field = (n: number, bytes: number[]) => [n * 8 + 2, ...varint(bytes.length), ...bytes];

/** A string field: its UTF-8 bytes, length-delimited. */
export const str = (n: number, s: string) => field(n, [...Buffer.from(s)]);

/** The four required CloudEvent fields (id, source, spec_version, type), which a decode needs. */
export const HEAD = [...str(1, "1"), ...str(2, "/s"), ...str(3, "1.0"), ...str(4, "t")];
