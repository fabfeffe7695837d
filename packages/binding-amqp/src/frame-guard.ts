import {
  type ListenOptions,
  connect as netConnect,
  createServer as netServer,
  type Server,
  type Socket,
} from "node:net";
import {
  type TLSSocket,
  type TlsOptions,
  connect as tlsConnect,
  createServer as tlsServer,
} from "node:tls";
import { checkCountOption, PosthornError } from "@posthorn/core";
import {
  DATA,
  MAP32,
  MESSAGE_ANNOTATIONS,
  STR8,
  STR32,
  SYM8,
  SYM32,
  VBIN32,
  Writer,
} from "./encode-message.js";
import {
  checkSections,
  DEFAULT_GUARD_MAX_DEPTH,
  DEFAULT_GUARD_MAX_VALUES,
  descriptorAt,
  readUint32,
  UNDECODABLE_ANNOTATION,
  Walk,
} from "./wire-check.js";

/** The default {@link AmqpGuardOptions.maxFrameBytes}: 64 MiB. */
export const DEFAULT_GUARD_MAX_FRAME_BYTES = 64 * 1024 * 1024;
/** The default {@link AmqpGuardOptions.maxMessageBytes}: 64 MiB. */
export const DEFAULT_GUARD_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Limits of {@link guardedConnect} and {@link guardSocket}. */
export interface AmqpGuardOptions {
  /**
   * The largest frame accepted, in bytes; a larger one ends the connection with
   * `MalformedInput`. Default: the connection's `max_frame_size` when it sets one (the peer was
   * told not to send more), else {@link DEFAULT_GUARD_MAX_FRAME_BYTES}.
   */
  maxFrameBytes?: number;
  /**
   * The largest message accepted, all its transfer frames together, in bytes. A larger one is
   * not held: it reaches rhea as a marked message without its bytes (see
   * `UNDECODABLE_ANNOTATION`), and the subscriber's delivery of it has a `PayloadTooLarge`
   * error. Default {@link DEFAULT_GUARD_MAX_MESSAGE_BYTES}.
   */
  maxMessageBytes?: number;
  /** The deepest nesting of lists, maps, arrays and descriptors. Default {@link DEFAULT_GUARD_MAX_DEPTH}. */
  maxDepth?: number;
  /**
   * The most values (every element, key and descriptor) in one frame or one message, which rhea
   * would each make an object or a slot of. Default {@link DEFAULT_GUARD_MAX_VALUES}.
   */
  maxValues?: number;
}

// Performatives (AMQP 1.0, 2.7 and 5.3.3) by descriptor code, with their symbolic names.
const TRANSFER = 0x14;
const PERFORMATIVES = new Map<number | string, number>([
  ["amqp:open:list", 0x10],
  ["amqp:begin:list", 0x11],
  ["amqp:attach:list", 0x12],
  ["amqp:flow:list", 0x13],
  ["amqp:transfer:list", TRANSFER],
  ["amqp:disposition:list", 0x15],
  ["amqp:detach:list", 0x16],
  ["amqp:end:list", 0x17],
  ["amqp:close:list", 0x18],
  ["amqp:sasl-mechanisms:list", 0x40],
  ["amqp:sasl-init:list", 0x41],
  ["amqp:sasl-challenge:list", 0x42],
  ["amqp:sasl-response:list", 0x43],
  ["amqp:sasl-outcome:list", 0x44],
]);
for (const code of [...PERFORMATIVES.values()]) PERFORMATIVES.set(code, code);

// Fields of the transfer performative (AMQP 1.0, 2.7.5) the guard reads.
const HANDLE = 0;
const MESSAGE_FORMAT = 3;
const MORE = 5;

/** A frame held back, with where its payload starts. */
interface Held {
  bytes: Uint8Array;
  payloadAt: number;
  ready: boolean;
}

/** A message rhea decodes (format 0) whose transfer frames have not all arrived. */
interface Open {
  /** Its first frame, held back until the whole message is checked. */
  first: Held;
  /** The frames after the first, while the first is held. */
  later: Held[];
  parts: Uint8Array[];
  bytes: number;
  /** Past maxMessageBytes: every later frame loses its payload. */
  tooLarge: boolean;
}

/** Thrown inside the guard when the peer broke the framing; ends the connection. */
function violation(reason: string): PosthornError {
  return new PosthornError("MalformedInput", `AMQP frame guard: ${reason}`);
}

/**
 * Reads the byte stream a peer sends, frame by frame, and passes on only what rhea's decoder may
 * safely read. A frame whose performative is malformed, too deep or too large ends the
 * connection (thrown as `MalformedInput`); a message that is malformed or too large is replaced,
 * for rhea, by one marked with `UNDECODABLE_ANNOTATION`, so the application can reject it
 * alone. The first frame of a message spread over several frames is held, with everything that
 * follows it, until the last frame arrives.
 */
export class FrameGuard {
  readonly #maxFrame: number;
  readonly #maxMessage: number;
  #header = true;
  /** SASL frames came last: the next protocol header may come instead of a frame. */
  #sasl = false;
  /** Bytes of an incomplete frame or header, and how many the whole of it needs (0: unknown). */
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #need = 0;
  readonly #held: Held[] = [];
  #heldBytes = 0;
  /** Messages in progress by channel and handle; `null` for one rhea does not decode. */
  readonly #open = new Map<number, Open | null>();
  readonly #walk: Walk;
  readonly #fields: number[] = [];

  /**
   * @param options - the guard's limits
   * @throws {@link PosthornError} `NotSupported` for a limit that is not a whole number of 1 or
   *   more
   */
  constructor(options: AmqpGuardOptions = {}) {
    checkGuardOptions(options);
    this.#maxFrame = options.maxFrameBytes ?? DEFAULT_GUARD_MAX_FRAME_BYTES;
    this.#maxMessage = options.maxMessageBytes ?? DEFAULT_GUARD_MAX_MESSAGE_BYTES;
    this.#walk = new Walk({
      maxDepth: options.maxDepth ?? DEFAULT_GUARD_MAX_DEPTH,
      maxValues: options.maxValues ?? DEFAULT_GUARD_MAX_VALUES,
    });
  }

  /**
   * Takes the next bytes from the socket.
   *
   * @param chunk - the bytes, as the socket read them
   * @returns the bytes to hand to rhea now (often `chunk` itself), or `undefined` for none yet
   * @throws {@link PosthornError} `MalformedInput` when the peer broke the framing
   */
  feed(chunk: Uint8Array): Uint8Array | undefined {
    let data = chunk;
    if (this.#pendingBytes > 0) {
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.length;
      if (this.#need > 0 && this.#pendingBytes < this.#need) return undefined;
      data = Buffer.concat(this.#pending, this.#pendingBytes);
      this.#pending = [];
      this.#pendingBytes = 0;
    }
    const out: Uint8Array[] = [];
    let run = 0;
    let at = 0;
    while (at < data.length) {
      const rest = data.length - at;
      if (rest < 4) break;
      if (this.#header || (this.#sasl && isProtocolHeader(data, at))) {
        // The protocol header: first, and again after SASL's exchange (AMQP 1.0, 5.3.2).
        if (rest < 8) break;
        if (this.#header) checkProtocolHeader(data, at);
        this.#header = false;
        this.#sasl = false;
        at += 8;
        continue;
      }
      const size = readUint32(data, at);
      if (size < 8) throw violation(`a frame declares ${size} bytes, fewer than its header's 8`);
      if (size > this.#maxFrame) {
        throw violation(
          `a frame of ${size} bytes is larger than the limit of ${this.#maxFrame} (the frame guard's maxFrameBytes)`,
        );
      }
      if (rest < size) {
        this.#need = size;
        break;
      }
      const kept = this.#frame(data, at, at + size);
      if (kept !== PASS || this.#held.length > 0) {
        // This frame does not pass as it came, or waits behind a held one.
        if (at > run) out.push(data.subarray(run, at));
        const bytes = kept === PASS ? data.subarray(at, at + size) : kept;
        if (this.#held.length > 0) {
          if (kept !== HOLD) this.#hold({ bytes, payloadAt: 0, ready: true });
        } else if (kept !== HOLD) {
          out.push(bytes);
        }
        this.#release(out);
        run = at + size;
      }
      at += size;
    }
    if (at < data.length) {
      this.#pending = [data.subarray(at)];
      this.#pendingBytes = data.length - at;
      if (data.length - at < 8) this.#need = 0;
    } else {
      this.#need = 0;
    }
    if (at > run) {
      if (run === 0 && at === data.length && out.length === 0) return data;
      out.push(data.subarray(run, at));
    }
    if (out.length === 0) return undefined;
    return out.length === 1 ? out[0] : Buffer.concat(out);
  }

  #hold(held: Held): void {
    this.#held.push(held);
    this.#heldBytes += held.bytes.length;
    // What is held waits for one message; more than two messages' worth is a peer that never
    // finishes it.
    if (this.#heldBytes > 2 * this.#maxMessage + this.#maxFrame) {
      throw violation(
        `more than ${this.#heldBytes} bytes arrived while a message stayed unfinished`,
      );
    }
  }

  /** Changes what a held frame will pass on as. */
  #replace(held: Held, bytes: Uint8Array): void {
    this.#heldBytes += bytes.length - held.bytes.length;
    held.bytes = bytes;
  }

  #release(out: Uint8Array[]): void {
    while (this.#held[0]?.ready === true) {
      const held = this.#held.shift() as Held;
      this.#heldBytes -= held.bytes.length;
      out.push(held.bytes);
    }
  }

  /**
   * Checks one whole frame, `data` from `at` to `end`.
   *
   * @returns PASS to pass it on as it came, HOLD when it is held, or its replacement
   */
  #frame(data: Uint8Array, at: number, end: number): Uint8Array {
    const offset = at + (data[at + 4] as number) * 4;
    const type = data[at + 5];
    if (offset < at + 8 || offset > end) {
      throw violation(`a frame's data offset ${data[at + 4]} is outside the frame`);
    }
    if (type !== 0 && type !== 1) throw violation(`a frame has the unknown type ${type}`);
    if (offset === end) return PASS; // an empty frame: a heartbeat
    if (data[offset] !== 0x00) throw violation("a frame's body is not a performative");
    const walk = this.#walk.over(data, offset);
    walk.count(1);
    const payloadAt = walk.value(offset, end, 0);
    if (payloadAt < 0) throw violation(`a frame's performative cannot be read: ${walk.reason}`);
    const code = PERFORMATIVES.get(descriptorAt(data, offset + 1) ?? -1);
    if (code === undefined) throw violation("a frame's performative is not one AMQP 1.0 defines");
    const list = walk.value(offset + 1, payloadAt, 0); // past the descriptor, checked above
    if (!LISTS.has(data[list] as number)) {
      throw violation("a frame's performative is not a list");
    }
    this.#sasl = type === 1;
    if (type !== 0 || code !== TRANSFER) return PASS;
    return this.#transfer(
      data,
      at,
      end,
      listFields(walk, list, payloadAt, this.#fields),
      payloadAt,
    );
  }

  #transfer(
    data: Uint8Array,
    at: number,
    end: number,
    fields: number[],
    payloadAt: number,
  ): Uint8Array {
    const handle = uintAt(data, fields[HANDLE]);
    if (handle === undefined) throw violation("a transfer has no handle");
    const key = readUint16(data, at + 6) * 0x100000000 + handle;
    const more = boolAt(data, fields[MORE]);
    let open = this.#open.get(key);
    if (open === undefined) {
      if ((uintAt(data, fields[MESSAGE_FORMAT]) ?? 0) !== 0) {
        // rhea hands such a message over as bytes, undecoded.
        if (more) this.#open.set(key, null);
        return PASS;
      }
      if (!more) {
        // The whole message in one frame, the usual case: nothing to hold or copy.
        const size = end - payloadAt;
        if (size > this.#maxMessage) {
          return marked(data.subarray(at, end), payloadAt - at, this.#tooLarge(size), [], 0);
        }
        const reason = this.#check(data, payloadAt, end);
        if (reason === undefined) return PASS;
        const payload = data.subarray(payloadAt, end);
        return marked(data.subarray(at, end), payloadAt - at, reason, [payload], size);
      }
      open = {
        first: { bytes: data.subarray(at, end), payloadAt: payloadAt - at, ready: false },
        later: [],
        parts: [data.subarray(payloadAt, end)],
        bytes: end - payloadAt,
        tooLarge: false,
      };
      this.#open.set(key, open);
      this.#hold(open.first);
      this.#overflow(open);
      return HOLD;
    }
    if (!more) this.#open.delete(key);
    if (open === null) return PASS;
    if (open.tooLarge) return withoutPayload(data.subarray(at, end), payloadAt - at);
    open.parts.push(data.subarray(payloadAt, end));
    open.bytes += end - payloadAt;
    const held: Held = { bytes: data.subarray(at, end), payloadAt: payloadAt - at, ready: true };
    open.later.push(held);
    this.#hold(held);
    if (this.#overflow(open) || more) return HOLD;
    const { first } = open;
    const whole = Buffer.concat(open.parts, open.bytes);
    const reason = this.#check(whole, 0, whole.length);
    if (reason !== undefined) {
      this.#replace(
        first,
        marked(first.bytes, first.payloadAt, reason, open.parts.slice(0, 1), open.bytes),
      );
    }
    first.ready = true;
    return HOLD;
  }

  /** Why rhea must not decode the message in `bytes` from `start` to `end`, if it must not. */
  #check(bytes: Uint8Array, start: number, end: number): string | undefined {
    const reason = checkSections(this.#walk.over(bytes, start), start, end);
    return reason === undefined
      ? undefined
      : `MalformedInput: its bytes are not a valid AMQP 1.0 message: ${reason}`;
  }

  #tooLarge(bytes: number): string {
    return `PayloadTooLarge: the message of ${bytes} bytes or more is larger than the limit of ${this.#maxMessage} bytes (the frame guard's maxMessageBytes)`;
  }

  /** Past maxMessageBytes: releases the first frame as a marker and strips the later ones. */
  #overflow(open: Open): boolean {
    if (open.bytes <= this.#maxMessage || open.tooLarge) return open.tooLarge;
    open.tooLarge = true;
    const { first } = open;
    this.#replace(first, marked(first.bytes, first.payloadAt, this.#tooLarge(open.bytes), [], 0));
    first.ready = true;
    for (const held of open.later) this.#replace(held, withoutPayload(held.bytes, held.payloadAt));
    open.parts = [];
    open.later = [];
    return true;
  }
}

// What #frame answers besides a replacement frame.
const PASS = new Uint8Array(0);
const HOLD = new Uint8Array(0);

/**
 * Checks the peer's first 8 bytes: `AMQP`, a protocol id and version 1.0. Anything else is not an
 * AMQP 1.0 peer, and its bytes read as frame sizes gave a message about a huge frame: an HTTP
 * server's answer was "a frame of 540291120 bytes is larger than the limit".
 */
function checkProtocolHeader(b: Uint8Array, at: number): void {
  const bytes = Buffer.from(b.subarray(at, at + 8));
  if (isProtocolHeader(b, at)) {
    // A broker that speaks only AMQP 0-9-1 answers with its own header, then closes.
    if (bytes[4] === 0 && bytes[5] === 0 && bytes[6] === 9) {
      throw violation(
        "the peer speaks AMQP 0-9-1, not 1.0 (on RabbitMQ 3.x, enable the rabbitmq_amqp1_0 plugin)",
      );
    }
    return;
  }
  const shown = bytes.toString("latin1").replace(/[^\x20-\x7e]/g, ".");
  throw violation(
    `the peer did not start with the AMQP protocol header but with ${JSON.stringify(shown)} (${bytes.toString("hex")}): is this an AMQP port, and is the transport (tcp or tls) the one it takes?`,
  );
}

function isProtocolHeader(b: Uint8Array, at: number): boolean {
  return b[at] === 0x41 && b[at + 1] === 0x4d && b[at + 2] === 0x51 && b[at + 3] === 0x50;
}

function readUint16(b: Uint8Array, at: number): number {
  return ((b[at] as number) << 8) | (b[at + 1] as number);
}

const LISTS = new Set([0x45, 0xc0, 0xd0]);

/** The offsets of the fields of the list at `list` (checked to end by `end`), into `fields`. */
function listFields(walk: Walk, list: number, end: number, fields: number[]): number[] {
  fields.length = 0;
  const code = walk.bytes[list];
  if (code === 0x45) return fields;
  const width = code === 0xc0 ? 1 : 4;
  const count = walk.size(list + 1 + width, width);
  let next = list + 1 + 2 * width;
  for (let i = 0; i < count; i++) {
    fields.push(next);
    next = walk.value(next, end, 0);
  }
  return fields;
}

/** An unsigned integer field at `at` (uint, smalluint, uint0), or `undefined` when absent. */
function uintAt(b: Uint8Array, at: number | undefined): number | undefined {
  if (at === undefined) return undefined;
  switch (b[at]) {
    case 0x43:
      return 0;
    case 0x52:
      return b[at + 1];
    case 0x70:
      return readUint32(b, at + 1);
    case 0x40:
      return undefined;
    default:
      throw violation(
        `a transfer field holds 0x${(b[at] as number).toString(16)} where a uint belongs`,
      );
  }
}

/** A boolean field at `at`; absent is false. */
function boolAt(b: Uint8Array, at: number | undefined): boolean {
  if (at === undefined) return false;
  switch (b[at]) {
    case 0x41:
      return true;
    case 0x56:
      return b[at + 1] !== 0;
    case 0x42:
    case 0x40:
      return false;
    default:
      throw violation(
        `a transfer field holds 0x${(b[at] as number).toString(16)} where a boolean belongs`,
      );
  }
}

/** `frame` with its payload cut off (the header and performative as they were). */
function withoutPayload(frame: Uint8Array, payloadAt: number): Uint8Array {
  const copy = Buffer.from(frame.subarray(0, payloadAt));
  copy.writeUInt32BE(payloadAt, 0);
  return copy;
}

/**
 * The first frame of a message rhea must not decode, rewritten: the same header and
 * performative, then a message-annotations section saying why and a data section holding the
 * original payload (`total` bytes, of which `parts` are in this frame; the later frames carry the
 * rest as they came).
 */
function marked(
  frame: Uint8Array,
  payloadAt: number,
  reason: string,
  parts: Uint8Array[],
  total: number,
): Uint8Array {
  const why = reason.slice(0, 500);
  let here = 0;
  for (const part of parts) here += part.length;
  const w = new Writer(payloadAt + why.length * 3 + UNDECODABLE_ANNOTATION.length + 32 + here);
  w.raw(frame.subarray(0, payloadAt));
  w.descriptor(MESSAGE_ANNOTATIONS);
  const map = w.open(MAP32);
  w.variable(SYM8, SYM32, UNDECODABLE_ANNOTATION);
  w.variable(STR8, STR32, why);
  w.close(map, 2);
  // A data section of `total` bytes: the parts here, the rest in the frames that follow.
  w.descriptor(DATA);
  w.byte(VBIN32);
  w.uint32(total);
  for (const part of parts) w.raw(part);
  const rewritten = w.bytes();
  rewritten.writeUInt32BE(rewritten.length, 0);
  return rewritten;
}

/** A rhea `connect` function: `(port, host, options, callback)` to a socket. */
export type RheaConnect = (
  port: number,
  host: string,
  options: Record<string, unknown>,
  callback: () => void,
) => Socket;

/**
 * Puts a {@link FrameGuard} between `socket` and the `data` listeners added to it from now on
 * (rhea adds its one when it takes the socket): each listener gets the bytes the guard lets
 * through, and a peer that breaks the framing ends the socket with a `MalformedInput` error.
 * For a socket rhea accepts as a server (`connection.accept(guardSocket(socket))`); a client
 * connection takes {@link guardedConnect}.
 *
 * @param socket - a connected or connecting socket, before rhea listens to it
 * @param options - the guard's limits
 * @returns `socket`
 * @throws {@link PosthornError} `NotSupported` for a limit that is not a whole number of 1 or
 *   more
 */
export function guardSocket<S extends Socket>(socket: S, options: AmqpGuardOptions = {}): S {
  checkGuardOptions(options);
  type On = (event: string | symbol, listener: (...args: unknown[]) => void) => S;
  const on = socket.on as unknown as On;
  const guardedOn: On = function (this: S, event, listener) {
    if (event !== "data") return on.call(this, event, listener);
    const guard = new FrameGuard(options);
    return on.call(this, "data", (chunk: unknown) => {
      let passed: Uint8Array | undefined;
      try {
        passed = guard.feed(chunk as Uint8Array);
      } catch (err) {
        socket.destroy(err as Error);
        return;
      }
      if (passed !== undefined) listener(passed);
    });
  };
  const target = socket as unknown as { on: On; addListener: On };
  target.on = guardedOn;
  target.addListener = guardedOn;
  return socket;
}

/**
 * A `connect` function for rhea's connection options that opens the socket as rhea would (TCP,
 * or TLS when `transport` is `tls` or `ssl`) and guards it ({@link guardSocket}): rhea's decoder
 * then sees only frames and messages it can read within the limits, and a message it could not
 * arrives as a delivery with an error the application can reject, instead of ending the
 * connection or the process.
 *
 * @example
 * ```ts
 * const connection = rhea.connect({ host: "127.0.0.1", port: 5672, connect: guardedConnect() });
 * ```
 *
 * @param options - the guard's limits; `maxFrameBytes` defaults to the connection's
 *   `max_frame_size` when it sets one
 * @returns the function to pass as rhea's `connect` option
 * @throws {@link PosthornError} `NotSupported` for a limit that is not a whole number of 1 or
 *   more
 */
export function guardedConnect(options: AmqpGuardOptions = {}): RheaConnect {
  checkGuardOptions(options);
  return (port, host, connectOptions, callback) => {
    const transport = connectOptions?.transport;
    const socket =
      transport === "tls" || transport === "ssl"
        ? tlsConnect(port, host, connectOptions as never, callback)
        : netConnect(port, host, callback);
    return guardSocket(socket, limitsFor(options, connectOptions?.max_frame_size));
  };
}

/** The limits, with `maxFrameBytes` from the connection's own `max_frame_size` when not given. */
function limitsFor(options: AmqpGuardOptions, frameSize: unknown): AmqpGuardOptions {
  return options.maxFrameBytes === undefined && typeof frameSize === "number" && frameSize > 0
    ? { ...options, maxFrameBytes: frameSize }
    : options;
}

/** What {@link guardedListen} needs of a rhea container (`rhea` itself, or `create_container()`). */
export interface RheaContainerLike {
  /** Makes a connection of this container, not yet connected (rhea's `create_connection`). */
  create_connection(options?: never): unknown;
}

/**
 * The options of {@link guardedListen}: where to listen (`port`, `host`, ... as `server.listen`
 * takes them), `transport` (`tcp`, the default, `tls` or `ssl`) with Node's TLS server options,
 * and rhea's connection options for the connections accepted (`max_frame_size`, `container_id`,
 * ...), as rhea's own `listen` takes them.
 */
export type GuardedListenOptions = ListenOptions &
  TlsOptions &
  Record<string, unknown> & {
    /** `tcp` (the default), or `tls` / `ssl` for a TLS server. */
    transport?: "tcp" | "tls" | "ssl";
    /** The largest frame the accepted connections take; `maxFrameBytes` defaults to it. */
    max_frame_size?: number;
  };

/**
 * rhea's `container.listen(options)` with every accepted socket guarded ({@link guardSocket}):
 * a TCP server (or TLS when `options.transport` is `tls` or `ssl`) listening as `options` says,
 * each connection made with `container.create_connection(options)` and accepted as rhea's own
 * `listen` does, so the container's events (`connection_open`, `message`, ...) are the same.
 * rhea's `listen` has no hook for the guard; this takes its place.
 *
 * @example
 * ```ts
 * const server = guardedListen(rhea, { port: 5672, host: "127.0.0.1" });
 * ```
 *
 * @param container - the rhea container the connections belong to
 * @param options - rhea's server options: `port`, `host`, `transport`, TLS options, connection
 *   options such as `max_frame_size` (which `maxFrameBytes` defaults to)
 * @param limits - the guard's limits
 * @returns the listening server; close it to stop accepting
 * @throws {@link PosthornError} `NotSupported` for a limit that is not a whole number of 1 or
 *   more, or a `transport` other than `tcp`, `tls` and `ssl`
 */
export function guardedListen(
  container: RheaContainerLike,
  options: GuardedListenOptions,
  limits: AmqpGuardOptions = {},
): Server {
  checkGuardOptions(limits);
  const guarded = limitsFor(limits, options.max_frame_size);
  const accept = (socket: Socket): void => {
    const connection = container.create_connection(options as never) as {
      accept(socket: Socket): unknown;
    };
    connection.accept(guardSocket(socket, guarded));
  };
  const transport = options.transport;
  let server: Server;
  if (transport === undefined || transport === "tcp") {
    server = netServer(options, accept);
  } else if (transport === "tls" || transport === "ssl") {
    server = tlsServer(options);
    server.on("secureConnection", (socket: TLSSocket) => accept(socket));
  } else {
    throw new PosthornError(
      "NotSupported",
      `guardedListen: transport ${JSON.stringify(String(transport))} is none of tcp, tls and ssl`,
    );
  }
  server.listen(options);
  return server;
}

/**
 * rhea connection options with the frame guard as their `connect` function
 * ({@link guardedConnect}); the same type as `options`, since rhea's typings leave `connect` out.
 * A connection made with your own `connection_details` function takes `connect: guardedConnect()`
 * in what that function returns instead.
 *
 * @example
 * ```ts
 * const connection = rhea.connect(withFrameGuard({ host: "127.0.0.1", port: 5672 }));
 * ```
 *
 * @param options - rhea's connection options
 * @param limits - the guard's limits
 * @returns a copy of `options` with `connect` set
 * @throws {@link PosthornError} `NotSupported` for a limit that is not a whole number of 1 or
 *   more
 */
export function withFrameGuard<O extends object>(options: O, limits: AmqpGuardOptions = {}): O {
  return { ...options, connect: guardedConnect(limits) };
}

function checkGuardOptions(options: AmqpGuardOptions): void {
  checkCountOption("maxFrameBytes", options.maxFrameBytes, 1, false);
  checkCountOption("maxMessageBytes", options.maxMessageBytes, 1, false);
  checkCountOption("maxDepth", options.maxDepth, 1, false);
  checkCountOption("maxValues", options.maxValues, 1, false);
}
