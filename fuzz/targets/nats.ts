/**
 * The NATS binding: `fromNatsMessage`, `detectNatsMode`, `toMessageEnvelope` and
 * `decodeNatsHeaderValue`, on nats.js messages (v2 and v3 `MsgImpl`, and a JetStream message
 * wrapping one) whose raw header block the binding reads itself, and on plain header records,
 * entry lists and `NatsHeaders`. Where nats.js can parse a block too, the binding's own reader
 * must agree with what it makes of nats.js's parse.
 */
import { createRequire } from "node:module";
import { MsgImpl as MsgImplV3 } from "@nats-io/nats-core/internal";
import {
  decodeNatsHeaderValue,
  detectNatsMode,
  fromNatsMessage,
  type NatsDecodeOptions,
  NatsHeaders,
  type NatsMessageLike,
  toMessageEnvelope,
  toNatsMessage,
} from "@posthorn/binding-nats";
import { type CloudEvent, type ErrorCode, findFormat } from "@posthorn/core";
import { type Corpus, corpus, pickEvent, registryOf } from "../corpus.js";
import { type Entry, entriesToRecord, mutateEntries } from "../messages.js";
import { concat, mutateBytes, utf8 } from "../mutate.js";
import { attempt, checkEvent, checkRoundTrip, Finding, type Outcome, tally } from "../oracle.js";
import type { Target } from "../target.js";
import {
  type BindingOptions,
  decodeOptionsOf,
  mutateBody,
  pickBindingOptions,
  ROUND_TRIP_LIMIT,
} from "./common.js";
import { anyFormat } from "./formats.js";

type MsgClass = new (
  msg: unknown,
  data: Uint8Array,
  publisher: unknown,
) => NatsMessageLike & {
  readonly headers?: unknown;
};

// nats v2 has no exports map; its MsgImpl is where its own client loads it from.
const MsgImplV2 = (
  createRequire(import.meta.url)("nats/lib/nats-base-client/msg.js") as { MsgImpl: MsgClass }
).MsgImpl;

/** How the message reaches the decoder. */
type NatsShape = "raw-v3" | "raw-v2" | "jetstream" | "record" | "entries" | "nats-headers" | "none";

/** An input of the `nats` target. */
export interface NatsInput {
  readonly data: Uint8Array;
  /** The header block for the raw shapes (status line, `Name: value` lines, blank line). */
  readonly block: Uint8Array | undefined;
  /** The headers for the other shapes. */
  readonly headers: Entry[];
  readonly shape: NatsShape;
  readonly options: BindingOptions & {
    readonly maxHeaders?: number | undefined;
    readonly detectHeaderlessJson?: boolean | undefined;
  };
}

const MALFORMED = new Set<ErrorCode>(["MalformedInput"]);

const BLOCK_TOKENS = [
  "\r\n",
  "\r\n\r\n",
  ":",
  ": ",
  "\r",
  "\n",
  " ",
  "\t",
  "NATS/1.0 503\r\n",
  "NATS/1.0 100 Idle Heartbeat\r\n",
  "ce-id: x\r\n",
  "ce-specversion: 1.0\r\n",
  "Content-Type: application/cloudevents+json\r\n",
  "ce-__proto__: x\r\n",
  "__proto__: x\r\n",
  "\u00e9",
].map(utf8);

function decodeOptions(o: NatsInput["options"]): NatsDecodeOptions {
  return {
    ...decodeOptionsOf(o),
    ...(o.maxHeaders === undefined ? {} : { maxHeaders: o.maxHeaders }),
    ...(o.detectHeaderlessJson === undefined
      ? {}
      : { detectHeaderlessJson: o.detectHeaderlessJson }),
  };
}

/** A nats.js message over the raw block and payload, as the client builds it off the wire. */
function rawMessage(
  Impl: MsgClass,
  block: Uint8Array,
  data: Uint8Array,
): NatsMessageLike & { readonly headers?: unknown } {
  const rdata = concat(block, data);
  return new Impl(
    {
      subject: utf8("fuzz.subject"),
      sid: 1,
      size: rdata.length,
      hdr: block.length > 0 ? block.length : -1,
    },
    rdata,
    { publish: () => undefined },
  );
}

function jetStreamMessage(
  inner: NatsMessageLike & { readonly headers?: unknown },
): NatsMessageLike {
  // The shape of a JsMsgImpl: the core message as `msg`, data and headers read through it.
  return {
    msg: inner,
    subject: "fuzz.subject",
    get data() {
      return inner.data;
    },
    get headers() {
      return inner.headers as NatsMessageLike["headers"];
    },
  } as NatsMessageLike;
}

/** The message in the input's shape; `undefined` when the shape refuses the headers. */
function messageOf(input: NatsInput): NatsMessageLike | undefined {
  const block = input.block ?? new Uint8Array(0);
  switch (input.shape) {
    case "raw-v3":
      return rawMessage(MsgImplV3 as unknown as MsgClass, block, input.data);
    case "raw-v2":
      return rawMessage(MsgImplV2, block, input.data);
    case "jetstream":
      return jetStreamMessage(rawMessage(MsgImplV3 as unknown as MsgClass, block, input.data));
    case "record":
      return {
        data: input.data,
        headers: entriesToRecord(input.headers) as Record<string, string | string[]>,
      };
    case "entries":
      return { data: input.data, headers: input.headers };
    case "nats-headers":
      try {
        return { data: input.data, headers: new NatsHeaders(input.headers) };
      } catch {
        tally("NatsHeaders refused the headers");
        return undefined;
      }
    default:
      return { data: input.data };
  }
}

function blockOf(headers: readonly Entry[], statusLine = "NATS/1.0"): Uint8Array {
  if (headers.length === 0) return new Uint8Array(0);
  return utf8(`${statusLine}\r\n${headers.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n`);
}

/** Runs the decoders on one message; the outcome of `fromNatsMessage`. */
function decode(
  message: NatsMessageLike,
  options: NatsDecodeOptions,
  label: string,
): Outcome<CloudEvent> {
  attempt(`detectNatsMode${label}`, () => detectNatsMode(message, options), MALFORMED);
  attempt(
    `toMessageEnvelope${label}`,
    () => {
      const m = toMessageEnvelope(message, { stream: "s" });
      return [m.body, m.contentType, m.properties, m.metadata];
    },
    MALFORMED,
  );
  return attempt(`fromNatsMessage${label}`, () => fromNatsMessage(message, options));
}

/** `fromNatsMessage`, `detectNatsMode`, `toMessageEnvelope`, `decodeNatsHeaderValue`. */
export const natsTarget: Target<NatsInput> = (() => {
  let c: Corpus;
  return {
    name: "nats",
    covers: ["fromNatsMessage", "detectNatsMode", "toMessageEnvelope", "decodeNatsHeaderValue"],
    setup(seed) {
      c = corpus(seed);
    },
    generate(rng) {
      const options = {
        ...pickBindingOptions(rng),
        maxHeaders: rng.chance(0.9) ? undefined : rng.pick([0, 1, 5, 256]),
        detectHeaderlessJson: rng.chance(0.9) ? undefined : rng.chance(0.5),
      };
      let headers: Entry[] = [];
      let data: Uint8Array = new Uint8Array(0);
      for (let tries = 0; tries < 4; tries++) {
        try {
          const m = toNatsMessage(
            pickEvent(rng, c),
            rng.chance(0.4) ? { mode: "structured", format: anyFormat(rng, options) } : {},
          );
          headers = [...m.headers].flatMap(([n, vs]) => vs.map((v): Entry => [n, v]));
          data = m.data;
          break;
        } catch {
          // an invalid event the encoder refused: another one
        }
      }
      if (rng.chance(0.7)) {
        headers = mutateEntries(rng, headers, {
          prefix: "ce-",
          otherPrefixes: ["CE-", "Ce-", "ce_", "ce"],
          contentTypeName: "Content-Type",
          maxEntries: 6000,
        });
      }
      const shape = rng.pick<NatsShape>([
        "raw-v3",
        "raw-v3",
        "raw-v2",
        "jetstream",
        "record",
        "entries",
        "nats-headers",
        "none",
      ]);
      let block: Uint8Array | undefined;
      if (shape.startsWith("raw") || shape === "jetstream") {
        block = blockOf(
          headers,
          rng.chance(0.9) ? "NATS/1.0" : rng.pick(["NATS/1.0 503", "NATS/2.0", "", "garbage"]),
        );
        if (rng.chance(0.4)) block = mutateBytes(rng, block, { dictionary: BLOCK_TOKENS });
      }
      return { data: mutateBody(rng, c, data), block, headers, shape, options };
    },
    run(input) {
      const options = decodeOptions(input.options);
      const message = messageOf(input);
      if (message === undefined) return;
      for (const [name, value] of input.headers.slice(0, 32)) {
        attempt("decodeNatsHeaderValue", () => decodeNatsHeaderValue(value, name), MALFORMED);
      }
      const out = decode(message, options, "");
      const registry = registryOf(input.options.registry);
      if (input.block !== undefined && input.shape !== "jetstream") {
        // The same bytes, their headers parsed by nats.js first: the binding then reads nats.js's
        // map instead of the block. Both readings must come to the same thing.
        const twin = rawMessage(
          input.shape === "raw-v2" ? MsgImplV2 : (MsgImplV3 as unknown as MsgClass),
          input.block,
          input.data,
        );
        let parsed = true;
        try {
          void twin.headers;
        } catch {
          parsed = false;
          tally("nats.js refused the header block");
        }
        if (parsed) {
          const viaClient = decode(twin, options, " (nats.js headers)");
          if (out.ok !== viaClient.ok) {
            throw new Finding(
              "contract",
              `the binding's header-block reader and nats.js's headers disagree: ${out.ok ? "event" : out.error.code} vs ${viaClient.ok ? "event" : viaClient.error.code}: ${!out.ok ? out.error.message : !viaClient.ok ? viaClient.error.message : ""}`,
            );
          }
          if (out.ok && viaClient.ok) {
            checkRoundTrip(
              checkEvent(out.value, "fromNatsMessage"),
              () => viaClient.value,
              "header-block reader vs nats.js headers",
              registry,
            );
          }
        }
      }
      if (!out.ok) return;
      const event = checkEvent(out.value, "fromNatsMessage");
      const mode = detectNatsMode(message, options);
      const format =
        mode === "structured"
          ? findFormat(
              options.formats ?? [],
              toMessageEnvelope(message).contentType ?? "application/cloudevents+json",
            )?.format
          : undefined;
      const raw = input.block !== undefined;
      checkRoundTrip(
        event,
        (e: CloudEvent) => {
          const m = toNatsMessage(e, format ? { mode: "structured", format } : {});
          // Off the wire again when it came off the wire: the block the binding wrote, read raw.
          const again: NatsMessageLike = raw
            ? rawMessage(MsgImplV3 as unknown as MsgClass, m.headers.encode(), m.data)
            : m;
          // Encoding may add headers the input had not (header-less JSON comes back with a
          // Content-Type): the input's header limit is not the encoder's.
          const { maxHeaders: _, ...limits } = options;
          return fromNatsMessage(again, { ...limits, maxPayloadBytes: ROUND_TRIP_LIMIT });
        },
        `fromNatsMessage (${mode ?? "?"}${raw ? ", raw header block" : ""})`,
        registry,
      );
    },
  };
})();
