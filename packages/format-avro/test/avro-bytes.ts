// Hand-built Avro input for the tests that feed the decoders bytes an encoder would never write.

/** Zig-zag varint of a long, as Avro writes it. */
export function long(n: number): number[] {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  const out: number[] = [];
  while (z >= 128) {
    out.push((z % 128) | 128);
    z = Math.floor(z / 128);
  }
  out.push(z);
  return out;
}
