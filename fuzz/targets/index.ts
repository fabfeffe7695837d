/** Every fuzz target, by name, in the order `npm run fuzz` runs them. */
import type { Target } from "../target.js";
import { amqpTarget } from "./amqp.js";
import { coreTarget } from "./core.js";
import { avroCompactTarget, avroTarget, jsonTarget, protobufTarget } from "./formats.js";
import { httpFetchTarget, httpServerTarget, httpTarget } from "./http.js";
import { kafkaTarget } from "./kafka.js";
import { mqttTarget } from "./mqtt.js";
import { natsTarget } from "./nats.js";
import { webSocketTarget } from "./websocket.js";

const all = [
  jsonTarget,
  avroTarget,
  avroCompactTarget,
  protobufTarget,
  httpTarget,
  httpFetchTarget,
  httpServerTarget,
  kafkaTarget,
  mqttTarget,
  natsTarget,
  amqpTarget,
  webSocketTarget,
  coreTarget,
] as Target[];

/** The targets by name. */
export const TARGETS: ReadonlyMap<string, Target> = new Map(all.map((t) => [t.name, t]));
