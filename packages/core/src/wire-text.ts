import { utf8Decode } from "./bytes.js";

type Latin1View = Uint8Array & { latin1Slice(start: number, end: number): string };
type BufferFactory = { from(b: ArrayBufferLike, offset: number, length: number): Latin1View };
const NodeBuffer = (globalThis as unknown as { Buffer?: BufferFactory }).Buffer;

/**
 * The input a binary decoder reads strings from: its bytes, and a Node `Buffer` view of them
 * made on first use (for the native latin1 slice). Avro and Protobuf readers are such sources.
 */
export interface TextSource {
  /** The bytes being decoded. */
  readonly buf: Uint8Array;
  /** A `Buffer` over the whole of `buf`, set by {@link decodeText}; start it `undefined`. */
  view?:
    | {
        /** Node's own latin1 decoding of `[start, end)`, offsets relative to `buf`. */
        latin1Slice(start: number, end: number): string;
      }
    | undefined;
}

/**
 * The text of `buf[start, end)` in a binary format: ASCII (most attribute names and values)
 * without UTF-8 decoding, anything else through the strict decoder, so invalid UTF-8 is a
 * `MalformedInput` error and never replacement characters.
 *
 * @param src - the decoder's input
 * @param start - offset in `src.buf` of the first byte
 * @param end - offset just past the last byte
 * @param what - what the text is, for the error message
 * @throws {@link PosthornError} `MalformedInput` on invalid UTF-8
 */
export function decodeText(src: TextSource, start: number, end: number, what: string): string {
  const b = src.buf;
  for (let i = start; i < end; i++) {
    if ((b[i] as number) >= 0x80) return utf8Decode(b.subarray(start, end), what);
  }
  if (end - start < 16) {
    let s = "";
    for (let i = start; i < end; i++) s += String.fromCharCode(b[i] as number);
    return s;
  }
  if (NodeBuffer) {
    let view = src.view;
    if (view === undefined) {
      view = NodeBuffer.from(b.buffer, b.byteOffset, b.byteLength);
      src.view = view;
    }
    return view.latin1Slice(start, end);
  }
  return String.fromCharCode.apply(null, b.subarray(start, end) as unknown as number[]);
}

const KEY_CACHE_LIMIT = 512;
const keyCache = new Map<number, string>();

/**
 * Like {@link decodeText}, for strings used as property names (attribute names, JSON member
 * names). Names recur on every message, so short ASCII ones are looked up in a small cache and
 * the same string instance is returned, which spares allocating and re-hashing a fresh key.
 *
 * @param src - the decoder's input
 * @param start - offset in `src.buf` of the first byte
 * @param end - offset just past the last byte
 * @param what - what the text is, for the error message
 * @throws {@link PosthornError} `MalformedInput` on invalid UTF-8
 */
export function decodeKey(src: TextSource, start: number, end: number, what: string): string {
  const n = end - start;
  if (n > 32) return decodeText(src, start, end, what);
  const b = src.buf;
  let hash = n;
  for (let i = start; i < end; i++) {
    const c = b[i] as number;
    if (c >= 0x80) return decodeText(src, start, end, what);
    hash = (Math.imul(hash, 31) + c) | 0;
  }
  const hit = keyCache.get(hash);
  if (hit !== undefined && hit.length === n) {
    let same = true;
    for (let i = 0; i < n; i++) {
      if (hit.charCodeAt(i) !== b[start + i]) {
        same = false;
        break;
      }
    }
    if (same) return hit;
  }
  const s = decodeText(src, start, end, what);
  if (keyCache.size >= KEY_CACHE_LIMIT) keyCache.clear();
  keyCache.set(hash, s);
  return s;
}
