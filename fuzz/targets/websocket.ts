/**
 * The WebSocket binding's frame decoder, `fromWebSocketFrame` (and `frameBytes`): one structured
 * event per message in the negotiated format, handed over as text, bytes, a `Buffer`, an
 * `ArrayBuffer`, or the fragment list `ws` gives.
 */
import {
  frameBytes,
  frameText,
  fromWebSocketFrame,
  toWebSocketFrame,
} from "@posthorn/binding-websocket";
import type { ErrorCode } from "@posthorn/core";
import {
  type Corpus,
  corpus,
  FORMAT_NAMES,
  type FormatName,
  type FormatOptions,
  formatOf,
  pickEvent,
  pickFormatOptions,
  registryOf,
} from "../corpus.js";
import { arbitraryBytes, mutateBytes, ODD_UTF8, utf8 } from "../mutate.js";
import { attempt, checkEvent, checkRoundTrip } from "../oracle.js";
import type { Target } from "../target.js";

type FrameShape = "bytes" | "buffer" | "array-buffer" | "text" | "fragments";

/** An input of the `websocket` target. */
export interface WebSocketInput {
  readonly format: FormatName;
  readonly options: FormatOptions;
  readonly shape: FrameShape;
  /** The message's bytes (for `text`, decoded leniently into the string handed over). */
  readonly bytes: Uint8Array;
  /** Where the fragments are cut, for `fragments`. */
  readonly cuts: number[];
}

const NONE = new Set<ErrorCode>();

function frameOf(input: WebSocketInput): string | Uint8Array | ArrayBuffer | Uint8Array[] {
  const b = input.bytes;
  switch (input.shape) {
    case "buffer":
      return Buffer.from(b);
    case "array-buffer":
      return b.slice().buffer;
    case "text":
      return new TextDecoder().decode(b);
    case "fragments": {
      const parts: Uint8Array[] = [];
      let at = 0;
      for (const cut of [...input.cuts].sort((x, y) => x - y)) {
        parts.push(b.subarray(at, Math.max(at, Math.min(cut, b.length))));
        at = Math.max(at, Math.min(cut, b.length));
      }
      parts.push(b.subarray(at));
      return parts;
    }
    default:
      return b;
  }
}

/** `fromWebSocketFrame` in every format, with frames in every shape. */
export const webSocketTarget: Target<WebSocketInput> = (() => {
  let c: Corpus;
  return {
    name: "websocket",
    covers: ["fromWebSocketFrame", "frameBytes", "frameText"],
    setup(seed) {
      c = corpus(seed);
    },
    generate(rng) {
      const format = rng.pick(FORMAT_NAMES);
      const options = pickFormatOptions(rng);
      let bytes: Uint8Array = new Uint8Array(0);
      for (let tries = 0; tries < 4; tries++) {
        try {
          bytes = toWebSocketFrame(pickEvent(rng, c), formatOf(format, options)).data;
          break;
        } catch {
          // an invalid event the encoder refused: another one
        }
      }
      const r = rng.int(10);
      if (r < 5)
        bytes = mutateBytes(rng, bytes, {
          dictionary: [...ODD_UTF8, utf8('"__proto__"'), utf8("{")],
        });
      else if (r < 6) bytes = arbitraryBytes(rng);
      const cuts = Array.from({ length: rng.small(6) }, () => rng.int(bytes.length + 2));
      return {
        format,
        options,
        shape: rng.pick<FrameShape>(["bytes", "buffer", "array-buffer", "text", "fragments"]),
        bytes,
        cuts,
      };
    },
    run(input) {
      const format = formatOf(input.format, input.options);
      const frame = frameOf(input);
      attempt("frameBytes", () => frameBytes(frame), NONE);
      const out = attempt("fromWebSocketFrame", () => fromWebSocketFrame(frame, format));
      if (!out.ok) return;
      const event = checkEvent(out.value, `fromWebSocketFrame (${input.format})`);
      const registry = registryOf(input.options.registry);
      checkRoundTrip(
        event,
        (e) => {
          const sent = toWebSocketFrame(e, format);
          // A text format goes as a text frame: a string, as browsers and ws hand it over.
          return fromWebSocketFrame(sent.text ? frameText(sent) : sent.data, format);
        },
        `fromWebSocketFrame (${input.format})`,
        registry,
      );
    },
  };
})();
