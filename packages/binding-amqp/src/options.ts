import { checkChoiceOption, PosthornError } from "@posthorn/core";

// How a refused value reads in a message: a string quoted after its type, as core's option
// checks show it; numbers as they print; anything else by its kind.
function shown(value: unknown): string {
  if (typeof value === "string") return `string ${JSON.stringify(value)}`;
  if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") {
    return String(value);
  }
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : typeof value;
}

function refuse(name: string, rule: string, value: unknown): PosthornError {
  return new PosthornError("NotSupported", `${name} must be ${rule}, got ${shown(value)}`, {
    attribute: name,
  });
}

/**
 * Checks the `address` of a publisher or subscriber: a non-empty string. rhea sends anything
 * else as it is, and the broker refuses the link late (RabbitMQ: `amqp:invalid-field`), or rhea
 * throws a `TypeError` from its encoder, or (`""`) RabbitMQ takes the messages and drops them.
 *
 * @internal
 */
export function checkAddress(what: string, value: unknown): asserts value is string {
  if (typeof value === "string" && value.length > 0) return;
  throw new PosthornError(
    "NotSupported",
    `${what}: address must be a non-empty string such as "/queues/orders" (RabbitMQ 4) or "/amq/queue/orders" (RabbitMQ 3), got ${shown(value)}`,
    { attribute: "address" },
  );
}

/**
 * Checks that `connection` is a rhea `Connection`: the container (`rhea` itself) or a URL is a
 * likely mistake, which failed with a `TypeError` from deep inside.
 *
 * @internal
 */
export function checkConnection(what: string, connection: unknown): void {
  const c = connection as { create_session?: unknown } | null | undefined;
  if (typeof c === "object" && c !== null && typeof c.create_session === "function") return;
  const hint =
    typeof c === "object" &&
    c !== null &&
    typeof (c as { connect?: unknown }).connect === "function"
      ? " (this is a rhea container: pass what its connect() returns)"
      : "";
  throw new PosthornError(
    "NotSupported",
    `${what} needs a rhea Connection, from rhea.connect(options) or container.connect(options), got ${shown(connection)}${hint}`,
    { attribute: "connection" },
  );
}

/** The largest AMQP `uint`, and so the largest link credit a flow can grant. */
export const MAX_UINT = 0xffff_ffff;

type FieldCheck = (value: unknown) => boolean;

const isUint =
  (max: number): FieldCheck =>
  (v) =>
    typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max;
const isBoolean: FieldCheck = (v) => typeof v === "boolean";
const isString: FieldCheck = (v) => typeof v === "string";
const isTime: FieldCheck = (v) =>
  (v instanceof Date && !Number.isNaN(v.getTime())) ||
  (typeof v === "number" && Number.isFinite(v));
const isMap: FieldCheck = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
// A value rhea wrapped itself (rhea.types.wrap_uuid(...), wrap_ulong(...)) carries its type,
// typecode and all.
const isWrapped = (v: unknown): boolean =>
  typeof v === "object" &&
  v !== null &&
  typeof (v as { type?: { typecode?: unknown } }).type?.typecode === "number";
const isMessageId: FieldCheck = (v) =>
  typeof v === "string" ||
  (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) ||
  v instanceof Uint8Array ||
  isWrapped(v);
const isBinary: FieldCheck = (v) => v instanceof Uint8Array || typeof v === "string";

/** The message fields `fields` may set, by rhea's names, and what each takes. */
const FIELDS: Readonly<Record<string, readonly [FieldCheck, string]>> = {
  durable: [isBoolean, "a boolean"],
  priority: [isUint(255), "a whole number from 0 to 255"],
  ttl: [isUint(MAX_UINT), "a whole number of milliseconds from 0 to 4294967295"],
  first_acquirer: [isBoolean, "a boolean"],
  delivery_count: [isUint(MAX_UINT), "a whole number from 0 to 4294967295"],
  delivery_annotations: [isMap, "an object of annotations"],
  message_annotations: [isMap, "an object of annotations"],
  message_id: [isMessageId, "a string, a whole number 0 or more, bytes or a rhea-wrapped uuid"],
  user_id: [isBinary, "bytes or a string"],
  to: [isString, "a string"],
  subject: [isString, "a string"],
  reply_to: [isString, "a string"],
  correlation_id: [isMessageId, "a string, a whole number 0 or more, bytes or a rhea-wrapped uuid"],
  content_encoding: [isString, "a string"],
  absolute_expiry_time: [isTime, "a Date or milliseconds since the epoch"],
  creation_time: [isTime, "a Date or milliseconds since the epoch"],
  group_id: [isString, "a string"],
  group_sequence: [isUint(MAX_UINT), "a whole number from 0 to 4294967295"],
  reply_to_group_id: [isString, "a string"],
  footer: [isMap, "an object"],
};

/** The fields the binding writes itself, and what each carries: `fields` may not set them. */
const RESERVED_FIELDS: Readonly<Record<string, string>> = {
  application_properties: "the event's attributes in binary mode (declare extensions instead)",
  body: "the event's data, or the formatted event in structured mode",
  content_type: "the event's datacontenttype in binary mode, the format's in structured mode",
};

/**
 * Checks a publish's `fields`: an object of AMQP message fields by rhea's names, each of the
 * type the field takes. rhea writes what it is given without asking: a `ttl` of `"abc"` went out
 * as 0 (the broker may expire the message at once), an unknown name such as `messageId` was
 * dropped, and a `priority` of 300 threw a `RangeError` out of rhea, or, sent once the link
 * attached, out of a socket callback, which ended the connection.
 *
 * @internal
 */
export function checkFields(what: string, fields: unknown): void {
  if (!isMap(fields)) {
    throw new PosthornError(
      "NotSupported",
      `${what}: fields must be an object of AMQP message fields, got ${shown(fields)}`,
      { attribute: "fields" },
    );
  }
  for (const key of Object.keys(fields as object)) {
    const reserved = Object.hasOwn(RESERVED_FIELDS, key) ? RESERVED_FIELDS[key] : undefined;
    if (reserved !== undefined) {
      // It was dropped without a word: the binding writes it from the event.
      throw new PosthornError(
        "NotSupported",
        `${what}: fields.${key} is the binding's: it carries ${reserved}`,
        { attribute: `fields.${key}` },
      );
    }
    const value = (fields as Record<string, unknown>)[key];
    const field = FIELDS[key];
    if (field === undefined) {
      throw new PosthornError(
        "NotSupported",
        `${what}: fields.${key} is not an AMQP message field; by rhea's names they are ${Object.keys(FIELDS).join(", ")}`,
        { attribute: `fields.${key}` },
      );
    }
    if (value !== undefined && !field[0](value)) {
      throw refuse(`fields.${key}`, field[1], value);
    }
  }
}

/**
 * The error for a `mode` that is neither `binary` nor `structured`. Batch mode has a message of
 * its own: AMQP has none, and an array of events is published one message each.
 *
 * @internal
 */
export function unknownMode(mode: unknown): PosthornError {
  if (mode === "batch") {
    return new PosthornError(
      "NotSupported",
      "the AMQP binding has no batch mode; publish the events one by one (publish([a, b]) sends each as its own message)",
      { attribute: "mode" },
    );
  }
  return refuse("mode", 'one of "binary", "structured"', mode);
}

/**
 * Checks the binary-mode options of the mapping: a `prefix` other than the binding's two was
 * written as given (`ce-id`), which no receiver reads as a CloudEvent; an `integerType` other
 * than `int` was taken as `long`.
 *
 * @internal
 */
export function checkBinaryOptions(options: { prefix?: unknown; integerType?: unknown }): void {
  const { prefix, integerType } = options;
  if (prefix !== undefined && prefix !== "cloudEvents:" && prefix !== "cloudEvents_") {
    checkChoiceOption("prefix", prefix, ["cloudEvents:", "cloudEvents_"]);
  }
  if (integerType !== undefined && integerType !== "long" && integerType !== "int") {
    checkChoiceOption("integerType", integerType, ["long", "int"]);
  }
}

/** A link option the binding needs at one value, or among a few: what each value allowed means. */
type LinkRule = readonly [allowed: readonly unknown[], rule: string];

/**
 * The rhea sender options that decide settlement, and the values the publisher works with. The
 * publisher settles each transfer itself when the peer's outcome comes (`autosettle`), tells
 * `modified` from `released`, and either waits for that outcome (`snd_settle_mode` 0, or 2: rhea
 * sends unsettled then) or sends pre-settled and waits for none (1, at-most-once).
 */
const SENDER_RULES: Readonly<Record<string, LinkRule>> = {
  snd_settle_mode: [
    [0, 1, 2],
    "0 (unsettled: publish resolves on the peer's outcome), 1 (settled: at-most-once, publish resolves once the transfer is sent) or 2 (mixed: sent unsettled, as 0)",
  ],
  rcv_settle_mode: [
    [0],
    "0 (first: the peer settles with its outcome); 1 (second) would leave every transfer waiting for a settlement the publisher never sends",
  ],
  autosettle: [[true], "true (the publisher settles each transfer when the outcome comes)"],
  treat_modified_as_released: [
    [false],
    "false (the publisher reports modified as amqp:modified, released as amqp:released)",
  ],
};

/**
 * The rhea receiver options that decide settlement and credit, and the values the subscriber
 * works with: unsettled deliveries (so `release()` and `reject()` reach the broker), settled by
 * the application, credit granted by the subscriber.
 */
const RECEIVER_RULES: Readonly<Record<string, LinkRule>> = {
  snd_settle_mode: [
    [0],
    "0 (unsettled); 1 (settled) or 2 (mixed) let the broker send deliveries pre-settled, gone from the queue on sending, which release() and reject() could not give back",
  ],
  rcv_settle_mode: [[0], "0 (first: accept(), release() and reject() settle the delivery)"],
  autoaccept: [[false], "false (the application settles each delivery)"],
  autosettle: [[true], "true (each settlement is final)"],
  credit_window: [[0], "0 (the subscriber grants credit: set its credit option instead)"],
};

/**
 * Checks the rhea link options a publisher (`senderOptions`) or subscriber (`receiverOptions`)
 * passes through: those that decide settlement must have a value the binding works with, and the
 * terminus (the publisher's `target`, the subscriber's `source`) must address the node `address`
 * names, else `NotSupported` naming the option. They were passed to rhea as given: with
 * `snd_settle_mode: 1` every publish waited for an outcome that never comes (`Timeout`, though
 * the broker queued the message), and a subscriber's `release()` of a pre-settled delivery lost
 * the message. A terminus `address` other than `address` was replaced by it without a word; a
 * `dynamic` terminus asks the broker for a node of its own naming instead of `address` (RabbitMQ
 * 3.10 ends the session with `amqp:not-implemented`); a source with `distribution_mode: "copy"`
 * asks to browse, which the subscriber's settlements cannot express (RabbitMQ 3.10 echoes it and
 * consumes all the same: an accepted message is gone from the queue). A source `filter` must be a
 * map; the subscriber checks the broker's attach for each filter (see amqpSubscriber). The
 * terminus's `durable`, `expiry_policy` and `timeout` must be of their AMQP types
 * (checkTerminusFields), and a source's `outcomes` and `default_outcome` must leave the
 * subscriber's settlements possible (checkOutcomes).
 *
 * @internal
 */
export function checkLinkOptions(
  name: "senderOptions" | "receiverOptions",
  options: unknown,
  address: string,
  releaseOutcome: "released" | "modified" = "released",
): void {
  if (options === undefined) return;
  if (!isMap(options)) throw refuse(name, "an object of rhea link options", options);
  const rules = name === "senderOptions" ? SENDER_RULES : RECEIVER_RULES;
  for (const key of Object.keys(rules)) {
    const value = (options as Record<string, unknown>)[key];
    const [allowed, rule] = rules[key] as LinkRule;
    if (value !== undefined && !allowed.includes(value))
      throw refuse(`${name}.${key}`, rule, value);
  }
  for (const key of ["offered_capabilities", "desired_capabilities"]) {
    checkSymbols(`${name}.${key}`, (options as Record<string, unknown>)[key]);
  }
  checkOwnTerminus(name, (options as Record<string, unknown>)[OWN_TERMINUS[name]]);
  const node = name === "senderOptions" ? "target" : "source";
  const terminus = (options as Record<string, unknown>)[node];
  if (terminus === undefined) return;
  const prefix = `${name}.${node}`;
  if (!isMap(terminus)) throw refuse(prefix, "an object of terminus fields", terminus);
  const fields = terminus as Record<string, unknown>;
  checkSymbols(`${prefix}.capabilities`, fields.capabilities);
  if (fields.address !== undefined && fields.address !== address) {
    throw refuse(
      `${prefix}.address`,
      `absent or the same as address (${JSON.stringify(address)}), which sets it`,
      fields.address,
    );
  }
  if (fields.dynamic !== undefined && fields.dynamic !== false) {
    throw refuse(
      `${prefix}.dynamic`,
      "false: a dynamic node is one the broker creates and names, not address",
      fields.dynamic,
    );
  }
  checkTerminusFields(prefix, fields);
  if (node === "source") checkOutcomes(prefix, fields, releaseOutcome);
  if (node === "source" && fields.filter !== undefined && !isMap(fields.filter)) {
    throw refuse(`${prefix}.filter`, "an object of filters by name", fields.filter);
  }
  if (node === "source" && fields.distribution_mode !== undefined) {
    if (fields.distribution_mode !== "move") {
      throw refuse(
        `${prefix}.distribution_mode`,
        'absent or "move": "copy" (browsing, the message left for others) has no meaning for accept(), release() or reject()',
        fields.distribution_mode,
      );
    }
  }
}

/** The link's own end, whose terminus the broker does not address: a sender's source, a receiver's target. */
const OWN_TERMINUS = { senderOptions: "source", receiverOptions: "target" } as const;

/**
 * Checks a value rhea writes as an array of symbols (a terminus's `capabilities`, a link's
 * `offered_capabilities` and `desired_capabilities`): absent, a string or an array of strings.
 * rhea writes what it is given: a number threw a `TypeError` out of `attach_sender` (the
 * publisher or subscriber half made), and a number in an array threw out of rhea's socket writer,
 * which ended the connection with every link on it.
 */
function checkSymbols(name: string, value: unknown): void {
  if (value === undefined || typeof value === "string") return;
  if (Array.isArray(value) && value.every((v) => typeof v === "string")) return;
  throw refuse(name, "absent, a symbol (a string) or an array of symbols", value);
}

/**
 * Checks the terminus of the link's own end (a publisher's `source`, a subscriber's `target`),
 * which rhea writes as given and the broker reads: its `durable`, `expiry_policy`, `timeout` and
 * `capabilities` as the other terminus's (against RabbitMQ 3.10 a `timeout` of -1 ended the
 * connection, an `expiry_policy` of 5 threw a `TypeError`), and a publisher's `outcomes`, the
 * outcomes the broker may answer a publish with: RabbitMQ 3.10 ends the session for an outcome it
 * does not know, and without `accepted`, `rejected` and `released` a broker keeping to the list
 * could not tell the publisher it took, refused or could not take a message. The rest is passed
 * through: a string (rhea reads it as the address), its `address`, `dynamic` and
 * `dynamic_node_properties`, and a publisher's `default_outcome`, which RabbitMQ 3.10 ignores.
 */
function checkOwnTerminus(name: "senderOptions" | "receiverOptions", terminus: unknown): void {
  if (terminus === undefined || typeof terminus === "string") return;
  const prefix = `${name}.${OWN_TERMINUS[name]}`;
  if (!isMap(terminus)) {
    throw refuse(prefix, "an object of terminus fields (or a string, its address)", terminus);
  }
  const fields = terminus as Record<string, unknown>;
  checkTerminusFields(prefix, fields);
  checkSymbols(`${prefix}.capabilities`, fields.capabilities);
  if (name === "senderOptions") {
    checkOutcomeList(
      `${prefix}.outcomes`,
      fields.outcomes,
      ["amqp:accepted:list", "amqp:rejected:list", "amqp:released:list"],
      "the broker answers each publish with one of them",
    );
  }
}

/** The terminus expiry policies of AMQP 1.0 (3.5.6). */
const EXPIRY_POLICIES: readonly string[] = [
  "link-detach",
  "session-end",
  "connection-close",
  "never",
];

/**
 * Checks the terminus fields rhea writes by their AMQP type without asking: `durable` (0 none, 1
 * configuration, 2 unsettled-state), `expiry_policy` (a symbol of 3.5.6) and `timeout` (seconds,
 * a uint). Against RabbitMQ 3.10 a `durable` of 7 was never answered (the link never attached,
 * `ready` waited for ever), a `timeout` of -1 threw a `RangeError` out of rhea's socket writer and
 * ended the connection, and an `expiry_policy` of 5 threw a `TypeError` out of `attach`.
 */
function checkTerminusFields(prefix: string, fields: Record<string, unknown>): void {
  const { durable, expiry_policy: expiry, timeout } = fields;
  if (durable !== undefined && durable !== 0 && durable !== 1 && durable !== 2) {
    throw refuse(
      `${prefix}.durable`,
      "0 (none), 1 (configuration) or 2 (unsettled-state), the AMQP terminus durability",
      durable,
    );
  }
  if (expiry !== undefined && !EXPIRY_POLICIES.includes(expiry as string)) {
    throw refuse(
      `${prefix}.expiry_policy`,
      `one of ${EXPIRY_POLICIES.map((p) => JSON.stringify(p)).join(", ")}`,
      expiry,
    );
  }
  if (timeout !== undefined && !isUint(MAX_UINT)(timeout)) {
    throw refuse(`${prefix}.timeout`, "a whole number of seconds from 0 to 4294967295", timeout);
  }
}

/** The outcome descriptors, by their symbolic names and codes (AMQP 1.0 3.4). */
const OUTCOME_CODES: Readonly<Record<string, number>> = {
  "amqp:accepted:list": 0x24,
  "amqp:rejected:list": 0x25,
  "amqp:released:list": 0x26,
  "amqp:modified:list": 0x27,
};

/** The symbolic name of an outcome rhea wrote (`rhea.message.released().described()`), if any. */
function outcomeName(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const descriptor = (value as { descriptor?: { value?: unknown } }).descriptor?.value;
  for (const [name, code] of Object.entries(OUTCOME_CODES)) {
    if (descriptor === name || descriptor === code || descriptor === BigInt(code)) return name;
  }
  return undefined;
}

/**
 * Checks a terminus's `outcomes` (AMQP 1.0 3.5.3): absent, or an array of the outcome symbols of
 * AMQP 1.0 3.4 holding each of `needed`. RabbitMQ 3.10 ends the session (`amqp:not-implemented`,
 * "Outcomes not supported") for a symbol that is no outcome it knows, and for a single symbol
 * not in an array, on a publisher's link as on a subscriber's; the binding settles with no
 * other outcome, so an extra one has no use.
 */
function checkOutcomeList(
  name: string,
  outcomes: unknown,
  needed: readonly string[],
  why: string,
): void {
  if (outcomes === undefined) return;
  const rule = `absent or an array of outcome symbols (${Object.keys(OUTCOME_CODES).join(", ")}) with ${needed.join(", ")} (${why})`;
  if (!Array.isArray(outcomes) || !outcomes.every((o) => typeof o === "string")) {
    throw refuse(name, rule, outcomes);
  }
  const unknown = outcomes.find((o) => !Object.hasOwn(OUTCOME_CODES, o));
  if (unknown !== undefined) {
    throw refuse(
      name,
      `${rule}; RabbitMQ ends the session for an outcome it does not know`,
      unknown,
    );
  }
  const missing = needed.filter((o) => !outcomes.includes(o));
  if (missing.length > 0) {
    throw refuse(name, `${rule}; missing ${missing.join(", ")}`, outcomes);
  }
}

/**
 * Checks a subscriber source's `outcomes` and `default_outcome` (AMQP 1.0 3.5.3). `outcomes`
 * lists the outcomes the receiver may settle with: without `accepted`, `rejected` and `released`
 * (which `close()` sends for what it gives back), and `modified` for `releaseOutcome:
 * "modified"`, a broker keeping to it would refuse `accept()`, `reject()` or `release()`.
 * `default_outcome` is what the broker applies to deliveries the link leaves unsettled when it
 * ends: the subscriber promises they are redelivered, so only `released` and `modified` keep it
 * (`accepted` would consume them unseen, `rejected` dead-letter them). RabbitMQ 3.10 ignores
 * both (it takes `reject()` over a link that listed only `accepted`), ends the session for an
 * outcome it does not know (`amqp:not-implemented`), and never answers the attach when
 * `default_outcome` is not an outcome rhea wrote (a string, or `rhea.message.released()` without
 * `.described()`).
 */
function checkOutcomes(
  prefix: string,
  fields: Record<string, unknown>,
  releaseOutcome: "released" | "modified",
): void {
  const { outcomes, default_outcome: defaultOutcome } = fields;
  const needed = ["amqp:accepted:list", "amqp:rejected:list", "amqp:released:list"];
  if (releaseOutcome === "modified") needed.push("amqp:modified:list");
  checkOutcomeList(
    `${prefix}.outcomes`,
    outcomes,
    needed,
    "accept(), reject(), release() and close() settle with them",
  );
  if (defaultOutcome !== undefined) {
    const name = outcomeName(defaultOutcome);
    if (name !== "amqp:released:list" && name !== "amqp:modified:list") {
      throw refuse(
        `${prefix}.default_outcome`,
        "absent, or released or modified as rhea writes them (rhea.message.released().described()): the deliveries a lost or closed link leaves unsettled must go back to the queue" +
          (name === undefined
            ? ""
            : ` (${name} would ${name === "amqp:accepted:list" ? "consume them unseen" : "dead-letter or drop them"})`),
        name ?? defaultOutcome,
      );
    }
  }
}
