/**
 * The Kafka binding: `fromKafkaRecord`, `readKafkaRecord` (which never throws), `contentModeOf`
 * and the envelope `kafkaRecordToMessage` makes, on records whose headers are strings, bytes
 * (valid UTF-8 or not), nulls or arrays, as kafkajs and other clients deliver them.
 */
import {
  contentModeOf,
  fromKafkaRecord,
  type KafkaDecodeOptions,
  type KafkaRecord,
  kafkaRecordToMessage,
  readKafkaRecord,
  toKafkaRecord,
} from "@posthorn/binding-kafka";
import { type CloudEvent, findFormat } from "@posthorn/core";
import { type Corpus, corpus, pickEvent, registryOf } from "../corpus.js";
import { type Entry, entriesToRecord, mutateEntries } from "../messages.js";
import { mutateBytes, ODD_UTF8, utf8 } from "../mutate.js";
import { attempt, checkEvent, checkRoundTrip, Finding, typedError } from "../oracle.js";
import type { Target } from "../target.js";
import {
  type BindingOptions,
  decodeOptionsOf,
  mutateBody,
  pickBindingOptions,
  ROUND_TRIP_LIMIT,
} from "./common.js";
import { anyFormat } from "./formats.js";

type HeaderValue = string | Uint8Array | null;

/** An input of the `kafka` target. */
export interface KafkaInput {
  readonly key: Uint8Array | string | null;
  readonly value: Uint8Array | string | null;
  /** `undefined`: a record without headers. */
  readonly headers: Entry<HeaderValue>[] | undefined;
  readonly timestamp: string | undefined;
  readonly options: BindingOptions & { readonly maxHeaders?: number | undefined };
}

const NONE = new Set<never>();

function decodeOptions(o: KafkaInput["options"]): KafkaDecodeOptions {
  return {
    ...decodeOptionsOf(o),
    ...(o.maxHeaders === undefined ? {} : { maxHeaders: o.maxHeaders }),
  };
}

/** The record a client would deliver: a repeated header name as an array of its values. */
function recordOf(input: KafkaInput): KafkaRecord {
  return {
    key: input.key,
    value: input.value,
    headers:
      input.headers === undefined
        ? undefined
        : (entriesToRecord(input.headers) as KafkaRecord["headers"]),
    timestamp: input.timestamp,
  };
}

/** `fromKafkaRecord`, `readKafkaRecord`, `contentModeOf`, `kafkaRecordToMessage`. */
export const kafkaTarget: Target<KafkaInput> = (() => {
  let c: Corpus;
  return {
    name: "kafka",
    covers: ["fromKafkaRecord", "readKafkaRecord", "contentModeOf", "kafkaRecordToMessage"],
    setup(seed) {
      c = corpus(seed);
    },
    generate(rng) {
      const options = {
        ...pickBindingOptions(rng),
        maxHeaders: rng.chance(0.9) ? undefined : rng.pick([0, 1, 5, 255, 256]),
      };
      let headers: Entry[] = [];
      let value: Uint8Array | null = null;
      for (let tries = 0; tries < 4; tries++) {
        const structured = rng.chance(0.4);
        try {
          const record = toKafkaRecord(
            pickEvent(rng, c),
            structured ? { mode: "structured", format: anyFormat(rng, options) } : {},
          );
          headers = Object.entries(record.headers);
          value = record.value;
          break;
        } catch {
          // an invalid event the encoder refused: another one
        }
      }
      if (rng.chance(0.75)) {
        headers = mutateEntries(rng, headers, {
          prefix: "ce_",
          otherPrefixes: ["CE_", "Ce_", "ce-", "ce", "ce__"],
          contentTypeName: "content-type",
          maxEntries: 2000,
        });
      }
      // As kafkajs delivers them: Buffers mostly; some strings, nulls, invalid UTF-8.
      const typed: Entry<HeaderValue>[] = headers.map(([n, v]) => {
        const r = rng.int(20);
        if (r < 12) return [n, utf8(v)];
        if (r < 17) return [n, v];
        if (r < 18) return [n, null];
        return [n, mutateBytes(rng, utf8(v), { dictionary: ODD_UTF8 })];
      });
      const body = value === null ? null : mutateBody(rng, c, value);
      return {
        key: rng.chance(0.5) ? null : rng.chance(0.5) ? "key" : utf8("k\u00e9y"),
        value: rng.chance(0.05)
          ? null
          : rng.chance(0.05) && body
            ? new TextDecoder().decode(body)
            : body,
        headers: rng.chance(0.02) ? undefined : typed,
        timestamp: rng.chance(0.5) ? undefined : rng.pick(["1700000000000", "", "-1", "x"]),
        options,
      };
    },
    run(input) {
      const record = recordOf(input);
      const options = decodeOptions(input.options);
      const mode = attempt(
        "contentModeOf",
        () => contentModeOf(record),
        new Set(["MalformedInput"]),
      );
      const out = attempt("fromKafkaRecord", () => fromKafkaRecord(record, options));
      // Documented never to throw.
      const read = attempt(
        "readKafkaRecord",
        () => readKafkaRecord(record, options, { topic: "t" }),
        NONE,
      );
      if (!read.ok) return;
      const envelope = attempt(
        "kafkaRecordToMessage",
        () => {
          const m = kafkaRecordToMessage(record);
          return [m.body, m.contentType, m.properties, m.metadata, read.value.message.properties];
        },
        NONE,
      );
      void envelope;
      const r = read.value;
      if (r.error !== undefined) typedError(r.error, "readKafkaRecord's error");
      if (!out.ok) {
        if (r.event !== undefined) {
          throw new Finding(
            "contract",
            `readKafkaRecord decoded a record fromKafkaRecord refuses (${out.error.code})`,
          );
        }
        return;
      }
      const event = checkEvent(out.value, "fromKafkaRecord");
      if (r.event === undefined) {
        throw new Finding(
          "contract",
          `fromKafkaRecord decoded a record readKafkaRecord does not: ${r.error?.message ?? "no event, no error"}`,
        );
      }
      const registry = registryOf(input.options.registry);
      checkRoundTrip(event, () => r.event, "readKafkaRecord vs fromKafkaRecord", registry);
      if (!mode.ok || mode.value === undefined) {
        throw new Finding(
          "contract",
          "fromKafkaRecord decoded a record contentModeOf calls no CloudEvent",
        );
      }
      const structured = mode.value === "structured";
      const format = structured
        ? findFormat(options.formats ?? [], r.message.contentType)?.format
        : undefined;
      checkRoundTrip(
        event,
        (e: CloudEvent) =>
          fromKafkaRecord(
            toKafkaRecord(
              e,
              structured && format ? { mode: "structured", format } : {},
            ) as KafkaRecord,
            { ...options, maxPayloadBytes: ROUND_TRIP_LIMIT },
          ),
        `fromKafkaRecord (${mode.value})`,
        registry,
      );
    },
  };
})();
