/**
 * The AMQP binding: `fromAmqpMessage` and `readAmqpMessage` (which never throws; the deprecated
 * `decodeAmqpMessage` is the same function) on messages rhea decoded from mutated wire bytes, and
 * on messages whose application properties and body hold every value type rhea can hand over
 * (and some it cannot: nested objects, invalid dates, bigints).
 */
import {
  type AmqpMessage,
  checkAmqpMessage,
  DATA_SECTION_TYPECODE,
  type FromAmqpMessageOptions,
  fromAmqpMessage,
  readAmqpMessage,
  SEQUENCE_SECTION_TYPECODE,
  toAmqpMessage,
} from "@posthorn/binding-amqp";
import {
  type CloudEvent,
  type ErrorCode,
  findFormat,
  isCloudEventsContentType,
} from "@posthorn/core";
import rhea from "rhea";
import { type Corpus, corpus, pickEvent, registryOf } from "../corpus.js";
import { CONTENT_TYPES, type Entry, entriesToRecord, mutateEntries } from "../messages.js";
import { mutateBytes, mutateString, utf8 } from "../mutate.js";
import { attempt, checkEvent, checkRoundTrip, Finding, tally, typedError } from "../oracle.js";
import type { Rng } from "../rng.js";
import type { Target } from "../target.js";
import {
  type BindingOptions,
  decodeOptionsOf,
  mutateBody,
  pickBindingOptions,
  ROUND_TRIP_LIMIT,
} from "./common.js";
import { anyFormat } from "./formats.js";

/** An input of the `amqp` target: wire bytes for rhea, or a message as rhea would hand it over. */
export type AmqpInput =
  | { readonly via: "rhea"; readonly bytes: Uint8Array; readonly options: AmqpOptions }
  | {
      readonly via: "direct";
      readonly contentType: unknown;
      /** `undefined`: no application-properties section. */
      readonly properties: Entry<unknown>[] | undefined;
      readonly body: unknown;
      readonly options: AmqpOptions;
    };

type AmqpOptions = BindingOptions & { readonly maxProperties?: number | undefined };

const NONE = new Set<ErrorCode>();

// AMQP 1.0 type codes and section descriptors worth splicing into an encoded message.
const AMQP_TOKENS: Uint8Array[] = [
  [0x00, 0x53, 0x73], // properties
  [0x00, 0x53, 0x74], // application-properties
  [0x00, 0x53, 0x75], // data
  [0x00, 0x53, 0x76], // amqp-sequence
  [0x00, 0x53, 0x77], // amqp-value
  [0x40], // null
  [0x41], // true
  [0x42], // false
  [0x55, 0x80], // smalllong -128
  [0x54, 0x7f], // smallint
  [0x71, 0x7f, 0xff, 0xff, 0xff], // int max
  [0x81, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // long max
  [0x81, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // long min
  [0x83, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // timestamp far future
  [0x83, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // timestamp far past
  [0x82, 0x7f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // double NaN
  [0x72, 0x7f, 0x80, 0x00, 0x00], // float Infinity
  [0xa1, 0x09, ...utf8("__proto__")], // str8
  [0xa3, 0x0b, ...utf8("constructor")], // sym8
  [0xa0, 0x02, 0xff, 0xfe], // vbin8
  [0xb1, 0xff, 0xff, 0xff, 0xff], // str32 of 4 GiB
  [0xd1, 0x7f, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x10], // map32, huge size
  [0xc1, 0x03, 0x02], // map8
  [0xc0, 0x01, 0x00], // list8
  [0xe0, 0x02, 0x01, 0x71], // array8 of int
  [0x98, ...new Array(16).fill(0)], // uuid
  [0xa1, 0x0e, ...utf8("cloudEvents:id")],
  [0xa1, 0x0d, ...utf8("cloudEvents_x")],
].map((b) => new Uint8Array(b));

function hostileValue(rng: Rng): unknown {
  switch (rng.int(22)) {
    case 0:
      return 2147483648;
    case 1:
      return -0;
    case 2:
      return Number.NaN;
    case 3:
      return 1.5;
    case 4:
      return Number.POSITIVE_INFINITY;
    case 5:
      return 2n ** 40n;
    case 6:
      return new Date(0);
    case 7:
      return new Date(Number.NaN);
    case 8:
      return new Date(Date.UTC(10000, 0, 1));
    case 9:
      return new Date(-8.64e15);
    case 10:
      return Buffer.from([0, 255]);
    case 11:
      return new Uint8Array([1, 2, 3]);
    case 12:
      return null;
    case 13:
      return undefined;
    case 14:
      return { nested: 1 };
    case 15:
      return [1, "a"];
    case 16:
      return true;
    case 17:
      return new Uint16Array([1, 2]);
    case 18:
      return mutateString(rng, "value");
    default:
      return rng.pick(["1.0", "", "2024-01-01T00:00:00Z", "AA==", "https://x", "application/json"]);
  }
}

function hostileBody(rng: Rng, data: Uint8Array): unknown {
  switch (rng.int(12)) {
    case 0:
      return {
        typecode: DATA_SECTION_TYPECODE,
        content: [data.subarray(0, 3), Buffer.from(data.subarray(3))],
        multiple: true,
      };
    case 1:
      return { typecode: DATA_SECTION_TYPECODE, content: [data, "not bytes"], multiple: true };
    case 2:
      return { typecode: SEQUENCE_SECTION_TYPECODE, content: [[1, 2]] };
    case 3:
      return { typecode: 0x77, content: "an amqp-value" };
    case 4:
      return new TextDecoder().decode(data);
    case 5:
      return Buffer.from(data);
    case 6:
      return rng.pick([42, true, 2n ** 70n, { a: 1 }, [data], null]);
    case 7:
      return { typecode: DATA_SECTION_TYPECODE, content: rng.pick([null, 5, "x", { length: 3 }]) };
    case 8:
      return { typecode: rng.pick([0, -1, 117.5, Number.NaN]), content: data };
    default:
      return { typecode: DATA_SECTION_TYPECODE, content: data };
  }
}

function decodeOptions(o: AmqpOptions): FromAmqpMessageOptions {
  return {
    ...decodeOptionsOf(o),
    ...(o.maxProperties === undefined ? {} : { maxProperties: o.maxProperties }),
  };
}

/** Over the wire and back through rhea: typed wrappers become plain values, as a receiver sees them. */
function throughRhea(message: AmqpMessage): AmqpMessage {
  return rhea.message.decode(
    rhea.message.encode(message as rhea.Message),
  ) as unknown as AmqpMessage;
}

/** `fromAmqpMessage` and `readAmqpMessage`, on rhea-decoded and hand-made messages. */
export const amqpTarget: Target<AmqpInput> = (() => {
  let c: Corpus;
  return {
    name: "amqp",
    covers: [
      "fromAmqpMessage",
      "readAmqpMessage",
      "decodeAmqpMessage",
      "rhea.message.decode + fromAmqpMessage",
    ],
    setup(seed) {
      c = corpus(seed);
    },
    generate(rng) {
      const options = {
        ...pickBindingOptions(rng),
        maxProperties: rng.chance(0.9) ? undefined : rng.pick([0, 1, 5, 1024]),
      };
      let message: AmqpMessage = {};
      for (let tries = 0; tries < 4; tries++) {
        try {
          message = toAmqpMessage(pickEvent(rng, c), {
            codec: rhea,
            registry: registryOf(options.registry),
            ...(rng.chance(0.35)
              ? { mode: "structured" as const, format: anyFormat(rng, options) }
              : {}),
            prefix: rng.chance(0.8) ? "cloudEvents:" : "cloudEvents_",
            integerType: rng.chance(0.5) ? "long" : "int",
          });
          break;
        } catch {
          // an invalid event the encoder refused: another one
        }
      }
      if (rng.chance(0.5)) {
        const bytes = new Uint8Array(rhea.message.encode(message as rhea.Message));
        return {
          via: "rhea",
          bytes: rng.chance(0.9) ? mutateBytes(rng, bytes, { dictionary: AMQP_TOKENS }) : bytes,
          options,
        };
      }
      const received = throughRhea(message);
      let properties: Entry<unknown>[] | undefined = received.application_properties
        ? Object.entries(received.application_properties)
        : undefined;
      if (rng.chance(0.7)) {
        const names = mutateEntries(
          rng,
          (properties ?? []).map(([n, v]): Entry => [n, typeof v === "string" ? v : ""]),
          {
            prefix: "cloudEvents:",
            otherPrefixes: [
              "cloudEvents_",
              "CLOUDEVENTS:",
              "cloudevents_",
              "cloudEvents",
              "cloudEvents:cloudEvents:",
              "cloudEvents-",
            ],
            maxEntries: 3000,
          },
        );
        const before = new Map(properties ?? []);
        properties = names.map(([n, v]): Entry<unknown> => {
          if (rng.chance(0.15)) return [n, hostileValue(rng)];
          const original = before.get(n);
          return [n, typeof original === "string" || original === undefined ? v : original];
        });
      }
      const body = received.body;
      const data = (body as { content?: unknown } | undefined)?.content;
      const bytes = data instanceof Uint8Array ? new Uint8Array(data) : new Uint8Array(0);
      return {
        via: "direct",
        contentType: rng.chance(0.85)
          ? rng.chance(0.8)
            ? received.content_type
            : rng.pick(CONTENT_TYPES)
          : rng.pick([undefined, 42, mutateString(rng, String(received.content_type ?? ""))]),
        properties,
        body: rng.chance(0.6)
          ? { typecode: DATA_SECTION_TYPECODE, content: mutateBody(rng, c, bytes) }
          : hostileBody(rng, bytes),
        options,
      };
    },
    run(input) {
      let amqp: AmqpMessage;
      if (input.via === "rhea") {
        // rhea's decoder believes the sizes and counts the bytes declare (an array of 4 billion
        // nulls never ends); the binding's frame guard checks a message before rhea sees it, as
        // guardedConnect does on a connection. What it passes, rhea must read without throwing.
        const refused = checkAmqpMessage(input.bytes);
        if (refused !== undefined) {
          tally("the frame guard refused the bytes");
          return;
        }
        try {
          amqp = rhea.message.decode(Buffer.from(input.bytes)) as unknown as AmqpMessage;
        } catch (err) {
          throw new Finding(
            "untyped-error",
            "rhea's decoder threw on bytes the frame guard passed",
            err,
          );
        }
      } else {
        amqp = {
          ...(input.contentType === undefined ? {} : { content_type: input.contentType as string }),
          ...(input.properties === undefined
            ? {}
            : { application_properties: entriesToRecord(input.properties, { lastWins: true }) }),
          ...(input.body === undefined ? {} : { body: input.body }),
          message_id: "m-1",
          delivery_count: 0,
        };
      }
      const options = decodeOptions(input.options);
      // Documented never to throw; its envelope's members are read on access.
      const read = attempt("readAmqpMessage", () => readAmqpMessage(amqp, options), NONE);
      if (!read.ok) return;
      attempt(
        "readAmqpMessage's message",
        () => {
          const m = read.value.message;
          return [m.body, m.contentType, m.properties, m.metadata];
        },
        NONE,
      );
      if (read.value.error !== undefined) typedError(read.value.error, "readAmqpMessage's error");
      const out = attempt("fromAmqpMessage", () => fromAmqpMessage(amqp, options));
      if (!out.ok) {
        if (read.value.event !== undefined) {
          throw new Finding(
            "contract",
            `readAmqpMessage decoded a message fromAmqpMessage refuses (${out.error.code})`,
          );
        }
        return;
      }
      const event = checkEvent(out.value, "fromAmqpMessage");
      if (read.value.event === undefined)
        throw new Finding("contract", "fromAmqpMessage decoded a message readAmqpMessage does not");
      const registry = registryOf(input.options.registry);
      checkRoundTrip(event, () => read.value.event, "readAmqpMessage vs fromAmqpMessage", registry);
      const contentType = typeof amqp.content_type === "string" ? amqp.content_type : undefined;
      const format = isCloudEventsContentType(contentType)
        ? findFormat(options.formats ?? [], contentType)?.format
        : undefined;
      checkRoundTrip(
        event,
        (e: CloudEvent) =>
          fromAmqpMessage(
            throughRhea(
              toAmqpMessage(e, {
                codec: rhea,
                registry,
                ...(format ? { mode: "structured" as const, format } : {}),
              }),
            ),
            { ...options, maxPayloadBytes: ROUND_TRIP_LIMIT },
          ),
        `fromAmqpMessage (${format ? "structured" : "binary"})`,
        registry,
      );
    },
  };
})();
