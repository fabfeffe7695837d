/**
 * The MQTT binding: `fromMqttMessage` at MQTT 5 (binary mode in user properties, structured mode
 * by Content Type) and 3.1.1 (structured JSON, detected from the payload), `classifyMqttMessage`
 * and the envelope of `toPlainMessage`. User properties arrive as mqtt.js gives them: a string,
 * or an array for a repeated name.
 */
import {
  classifyMqttMessage,
  type FromMqttMessageOptions,
  fromMqttMessage,
  JSON_EVENT_CONTENT_TYPE,
  type MqttMessage,
  type MqttProtocolVersion,
  toMqttMessage,
  toPlainMessage,
} from "@posthorn/binding-mqtt";
import {
  type CloudEvent,
  DEAD_LETTER_ORIGINAL_TOPIC,
  DEAD_LETTER_REASON,
  type ErrorCode,
  findFormat,
} from "@posthorn/core";
import { type Corpus, corpus, formatOf, pickEvent, registryOf } from "../corpus.js";
import { CONTENT_TYPES, type Entry, entriesToRecord, mutateEntries } from "../messages.js";
import { mutateString } from "../mutate.js";
import { attempt, checkEvent, checkRoundTrip, Finding } from "../oracle.js";
import type { Target } from "../target.js";
import {
  type BindingOptions,
  decodeOptionsOf,
  mutateBody,
  pickBindingOptions,
  ROUND_TRIP_LIMIT,
} from "./common.js";
import { anyFormat } from "./formats.js";

/** An input of the `mqtt` target. */
export interface MqttInput {
  readonly payload: Uint8Array;
  readonly contentType: string | undefined;
  /** `undefined`: no user properties at all. */
  readonly userProperties: Entry[] | undefined;
  readonly nullPrototype: boolean;
  readonly protocolVersion: MqttProtocolVersion;
  readonly options: BindingOptions & { readonly maxUserProperties?: number | undefined };
}

const NONE = new Set<ErrorCode>();

function decodeOptions(input: MqttInput): FromMqttMessageOptions {
  const o = input.options;
  return {
    ...decodeOptionsOf(o),
    protocolVersion: input.protocolVersion,
    ...(o.maxUserProperties === undefined ? {} : { maxUserProperties: o.maxUserProperties }),
  };
}

function messageOf(input: MqttInput): MqttMessage {
  return {
    payload: input.payload,
    ...(input.contentType === undefined ? {} : { contentType: input.contentType }),
    ...(input.userProperties === undefined
      ? {}
      : {
          userProperties: entriesToRecord(input.userProperties, {
            nullPrototype: input.nullPrototype,
          }) as Record<string, string | string[]>,
        }),
  };
}

/** `fromMqttMessage`, `classifyMqttMessage`, `toPlainMessage` at MQTT 5 and 3.1.1. */
export const mqttTarget: Target<MqttInput> = (() => {
  let c: Corpus;
  return {
    name: "mqtt",
    covers: ["fromMqttMessage", "classifyMqttMessage", "toPlainMessage"],
    setup(seed) {
      c = corpus(seed);
    },
    generate(rng) {
      const options = {
        ...pickBindingOptions(rng),
        maxUserProperties: rng.chance(0.9) ? undefined : rng.pick([0, 1, 5, 256]),
      };
      const r = rng.int(20);
      const protocolVersion: MqttProtocolVersion = r < 16 ? 5 : rng.pick([3, 4] as const);
      let message: MqttMessage = { payload: new Uint8Array(0) };
      for (let tries = 0; tries < 4; tries++) {
        try {
          const event = pickEvent(rng, c);
          message =
            protocolVersion !== 5
              ? toMqttMessage(event, {
                  mode: "structured",
                  format: formatOf("json"),
                  protocolVersion,
                })
              : r < 9
                ? toMqttMessage(event, { mode: "binary", protocolVersion })
                : toMqttMessage(event, {
                    mode: "structured",
                    format: anyFormat(rng, options),
                    protocolVersion,
                  });
          break;
        } catch {
          // an invalid event the encoder refused: another one
        }
      }
      let props: Entry[] | undefined = message.userProperties
        ? Object.entries(message.userProperties).map(([n, v]) => [n, String(v)])
        : undefined;
      if (rng.chance(0.6)) {
        props = mutateEntries(rng, props ?? [], {
          prefix: "",
          otherPrefixes: ["ce-", "ce_", "cloudEvents:", "$"],
          maxEntries: 2000,
        });
        // What a subscriber's reject() adds to a dead-letter copy, now and then.
        if (rng.chance(0.05))
          props.push([rng.pick([DEAD_LETTER_ORIGINAL_TOPIC, DEAD_LETTER_REASON]), "x"]);
      }
      let contentType = message.contentType;
      const ct = rng.int(10);
      if (ct === 0) contentType = undefined;
      else if (ct === 1) contentType = rng.pick(CONTENT_TYPES);
      else if (ct === 2) contentType = mutateString(rng, contentType ?? JSON_EVENT_CONTENT_TYPE);
      return {
        payload: mutateBody(rng, c, message.payload),
        contentType,
        userProperties: props,
        nullPrototype: rng.chance(0.2),
        protocolVersion,
        options,
      };
    },
    run(input) {
      const message = messageOf(input);
      const options = decodeOptions(input);
      const mode = attempt(
        "classifyMqttMessage",
        () => classifyMqttMessage(message, { protocolVersion: input.protocolVersion }),
        NONE,
      );
      attempt(
        "toPlainMessage",
        () => {
          const m = toPlainMessage(message, { topic: "t" });
          return [m.body, m.contentType, m.properties, m.metadata];
        },
        NONE,
      );
      const out = attempt("fromMqttMessage", () => fromMqttMessage(message, options));
      if (!out.ok) return;
      const event = checkEvent(out.value, `fromMqttMessage (MQTT ${input.protocolVersion})`);
      if (!mode.ok || mode.value === undefined) {
        throw new Finding(
          "contract",
          "fromMqttMessage decoded a message classifyMqttMessage calls no CloudEvent",
        );
      }
      const registry = registryOf(input.options.registry);
      if (mode.value === "binary") {
        checkRoundTrip(
          event,
          (e: CloudEvent) =>
            fromMqttMessage(toMqttMessage(e, { mode: "binary", protocolVersion: 5 }), {
              ...options,
              protocolVersion: 5,
              maxPayloadBytes: ROUND_TRIP_LIMIT,
            }),
          "fromMqttMessage (binary)",
          registry,
        );
        return;
      }
      const format = findFormat(
        options.formats,
        message.contentType ?? JSON_EVENT_CONTENT_TYPE,
      )?.format;
      if (format === undefined)
        throw new Finding(
          "contract",
          "fromMqttMessage decoded a structured message in no registered format",
        );
      // 3.1.1 carries only JSON without a Content Type; anything else goes back at MQTT 5.
      const version =
        message.contentType === undefined && format.name === "json" ? input.protocolVersion : 5;
      checkRoundTrip(
        event,
        (e: CloudEvent) =>
          fromMqttMessage(
            toMqttMessage(e, { mode: "structured", format, protocolVersion: version }),
            {
              ...options,
              protocolVersion: version,
              maxPayloadBytes: ROUND_TRIP_LIMIT,
            },
          ),
        `fromMqttMessage (structured, MQTT ${version})`,
        registry,
      );
    },
  };
})();
