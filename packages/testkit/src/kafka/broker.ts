/**
 * A single-node, in-memory broker speaking the Kafka wire protocol over TCP, for tests and demos.
 * It is a test tool, not a production broker: no replication, no persistence, no transactions,
 * no compaction or retention, no ACLs, SASL or TLS.
 *
 * Requests on one connection are handled one at a time, in order, as Kafka does (it mutes a
 * connection while a request is in flight), so a long-polling Fetch delays the requests queued
 * behind it on the same connection.
 */

import { randomUUID } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { GroupCoordinator } from "./group-coordinator.js";
import { PartitionLog } from "./partition-log.js";
import { ApiKey, ErrorCode, ProtocolError, Reader, Writer } from "./protocol.js";
import { parseBatches } from "./record-batch.js";

/** Options of {@link startKafkaBroker}. */
export interface KafkaTestBrokerOptions {
  /** Address to listen on and to advertise in metadata. Default `127.0.0.1`. */
  host?: string;
  /** Port to listen on; 0 picks a free port. Default 0. */
  port?: number;
  /** Partitions of topics created without a count (auto-created ones included). Default 3. */
  defaultPartitions?: number;
  /** Create unknown topics when a client asks for their metadata. Default true. */
  autoCreateTopics?: boolean;
  /** Largest accepted request frame in bytes. Default 100 MiB. */
  maxFrameBytes?: number;
  /**
   * A connection that has sent part of a request frame and then nothing for this many
   * milliseconds is closed, freeing the partial frame (up to `maxFrameBytes`) it held. Time the
   * broker itself stops reading (requests queued) does not count. Default 60000.
   */
  stalledFrameTimeoutMs?: number;
  /**
   * Receives the broker's log lines (closed connections and why, group rebalances). Default:
   * protocol violations go to `console.warn`, other lines are dropped.
   */
  log?: (line: string) => void;
  /** Also log every request (client id, API name and version) through `log`. Default false. */
  traceRequests?: boolean;
}

/** A running test broker. */
export interface KafkaTestBroker {
  /** The host it listens on and advertises. */
  readonly host: string;
  /** The port it listens on. */
  readonly port: number;
  /** Bootstrap addresses for clients: `["<host>:<port>"]` (`["[::1]:<port>"]` for IPv6). */
  readonly brokers: string[];
  /** Creates a topic (default partition count when omitted); no-op if it exists. */
  createTopic(name: string, partitions?: number): void;
  /** Closes the server and every client connection, and cancels all timers. */
  stop(): Promise<void>;
  /**
   * Stops listening and drops every connection, keeping topics, records, producer state, groups
   * and committed offsets: the broker is down, as after a crash, until {@link restart}. Does
   * nothing when it is already down or stopped.
   */
  kill(): Promise<void>;
  /**
   * Drops every connection (after {@link kill}, there are none) and listens again on the same
   * port, keeping topics, records, producer state, groups and committed offsets: for
   * fault-injection tests. Rejects, naming the port, when another process took it while the
   * broker was down (clients know the old port, so no new one is chosen); the broker then stays
   * down, and `restart()` can be called again once the port is free.
   *
   * @throws Error when the broker was stopped, or its port was taken
   */
  restart(): Promise<void>;
}

const NODE_ID = 1;
const CLUSTER_ID = "posthorn-test-broker";
const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;
const DEFAULT_MAX_FRAME = 100 * 1024 * 1024;
const MAX_QUEUED_REQUESTS = 64;
const MAX_FETCH_WAIT_MS = 5 * 60_000;
const DEFAULT_STALLED_FRAME_MS = 60_000;
/** The longest delay Node's timers take (a larger one fires at once). */
const MAX_TIMER_MS = 0x7fffffff;
/** Most partitions of one topic. */
const MAX_PARTITIONS = 10_000;
/** Smallest `maxFrameBytes`: room for an ApiVersions request with a short client id. */
const MIN_FRAME = 64;

/** API keys and version ranges the broker implements and advertises in ApiVersions. */
export const SUPPORTED_APIS: readonly { key: number; name: string; min: number; max: number }[] = [
  { key: ApiKey.Produce, name: "Produce", min: 3, max: 7 },
  { key: ApiKey.Fetch, name: "Fetch", min: 4, max: 11 },
  { key: ApiKey.ListOffsets, name: "ListOffsets", min: 1, max: 3 },
  { key: ApiKey.Metadata, name: "Metadata", min: 0, max: 6 },
  { key: ApiKey.OffsetCommit, name: "OffsetCommit", min: 0, max: 5 },
  { key: ApiKey.OffsetFetch, name: "OffsetFetch", min: 1, max: 4 },
  { key: ApiKey.FindCoordinator, name: "FindCoordinator", min: 0, max: 2 },
  { key: ApiKey.JoinGroup, name: "JoinGroup", min: 0, max: 5 },
  { key: ApiKey.Heartbeat, name: "Heartbeat", min: 0, max: 3 },
  { key: ApiKey.LeaveGroup, name: "LeaveGroup", min: 0, max: 3 },
  { key: ApiKey.SyncGroup, name: "SyncGroup", min: 0, max: 3 },
  { key: ApiKey.DescribeGroups, name: "DescribeGroups", min: 0, max: 2 },
  { key: ApiKey.ListGroups, name: "ListGroups", min: 0, max: 2 },
  { key: ApiKey.ApiVersions, name: "ApiVersions", min: 0, max: 2 },
  { key: ApiKey.CreateTopics, name: "CreateTopics", min: 0, max: 3 },
  { key: ApiKey.DeleteTopics, name: "DeleteTopics", min: 0, max: 1 },
  { key: ApiKey.InitProducerId, name: "InitProducerId", min: 0, max: 1 },
  // v2 is the first flexible version (compact strings, tagged fields): not advertised.
  { key: ApiKey.DeleteGroups, name: "DeleteGroups", min: 0, max: 1 },
];
const SUPPORTED = new Map(SUPPORTED_APIS.map((a) => [a.key, a]));

/** What a handler gets besides the request body. */
interface RequestContext {
  readonly version: number;
  readonly clientId: string;
  readonly clientHost: string;
  /** Registers cleanup to run if the connection closes while the request is parked. */
  readonly onClose: (cleanup: () => void) => () => void;
}

/** A response body, nothing (acks=0 produce), or either later. */
type HandlerResult = Buffer | undefined | Promise<Buffer | undefined>;

interface Topic {
  readonly name: string;
  readonly partitions: PartitionLog[];
}

/** The broker state and request handlers, independent of the listening socket. */
class BrokerCore {
  readonly topics = new Map<string, Topic>();
  readonly groups: GroupCoordinator;
  private nextProducerId = 1000;

  constructor(
    readonly host: string,
    public port: number,
    readonly defaultPartitions: number,
    readonly autoCreate: boolean,
    readonly log: (line: string) => void,
  ) {
    this.groups = new GroupCoordinator(log);
  }

  /** Creates a topic; returns an error code (TOPIC_ALREADY_EXISTS when it exists). */
  createTopic(name: string, partitions = this.defaultPartitions): number {
    if (typeof name !== "string" || !TOPIC_NAME.test(name) || name === "." || name === "..")
      return ErrorCode.INVALID_TOPIC_EXCEPTION;
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS) {
      return ErrorCode.INVALID_PARTITIONS;
    }
    if (this.topics.has(name)) return ErrorCode.TOPIC_ALREADY_EXISTS;
    const logs: PartitionLog[] = [];
    for (let i = 0; i < partitions; i++) logs.push(new PartitionLog());
    this.topics.set(name, { name, partitions: logs });
    this.log(`topic ${name} created with ${partitions} partitions`);
    return ErrorCode.NONE;
  }

  private partition(topic: string, index: number): PartitionLog | undefined {
    return this.topics.get(topic)?.partitions[index];
  }

  handle(apiKey: number, r: Reader, ctx: RequestContext): HandlerResult {
    switch (apiKey) {
      case ApiKey.ApiVersions:
        return this.apiVersions(ctx.version, ErrorCode.NONE);
      case ApiKey.Metadata:
        return this.metadata(r, ctx.version);
      case ApiKey.CreateTopics:
        return this.createTopics(r, ctx.version);
      case ApiKey.DeleteTopics:
        return this.deleteTopics(r, ctx.version);
      case ApiKey.Produce:
        return this.produce(r, ctx.version);
      case ApiKey.Fetch:
        return this.fetch(r, ctx);
      case ApiKey.ListOffsets:
        return this.listOffsets(r, ctx.version);
      case ApiKey.FindCoordinator:
        return this.findCoordinator(r, ctx.version);
      case ApiKey.JoinGroup:
        return this.joinGroup(r, ctx);
      case ApiKey.SyncGroup:
        return this.syncGroup(r, ctx.version);
      case ApiKey.Heartbeat:
        return this.heartbeat(r, ctx.version);
      case ApiKey.LeaveGroup:
        return this.leaveGroup(r, ctx.version);
      case ApiKey.OffsetCommit:
        return this.offsetCommit(r, ctx.version);
      case ApiKey.OffsetFetch:
        return this.offsetFetch(r, ctx.version);
      case ApiKey.DescribeGroups:
        return this.describeGroups(r, ctx.version);
      case ApiKey.ListGroups:
        return this.listGroups(ctx.version);
      case ApiKey.InitProducerId:
        return this.initProducerId(r);
      case ApiKey.DeleteGroups:
        return this.deleteGroups(r);
      default:
        throw new ProtocolError(`API key ${apiKey} not implemented`);
    }
  }

  /** ApiVersions v0-2 (also the v0-shaped answer to versions it does not support). */
  apiVersions(version: number, errorCode: number): Buffer {
    const w = new Writer();
    w.int16(errorCode);
    w.array(SUPPORTED_APIS, (w, a) => w.int16(a.key).int16(a.min).int16(a.max));
    if (version >= 1) w.int32(0);
    return w.finish();
  }

  private metadata(r: Reader, v: number): Buffer {
    const requested = r.nullableArray((r) => r.string(), 2);
    const allowAuto = v >= 4 ? r.bool() : true;
    const all = requested === null || (v === 0 && requested.length === 0);
    const names = all ? [...this.topics.keys()] : [...new Set(requested)];
    const w = new Writer();
    if (v >= 3) w.int32(0);
    w.int32(1);
    w.int32(NODE_ID).string(this.host).int32(this.port);
    if (v >= 1) w.nullableString(null);
    if (v >= 2) w.nullableString(CLUSTER_ID);
    if (v >= 1) w.int32(NODE_ID);
    w.array(names, (w, name) => {
      let error: number = ErrorCode.NONE;
      if (!this.topics.has(name)) {
        if (this.autoCreate && allowAuto) error = this.createTopic(name);
        else if (TOPIC_NAME.test(name)) error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION;
        else error = ErrorCode.INVALID_TOPIC_EXCEPTION;
      }
      const topic = this.topics.get(name);
      w.int16(topic ? ErrorCode.NONE : error).string(name);
      if (v >= 1) w.bool(false);
      const count = topic?.partitions.length ?? 0;
      w.int32(count);
      for (let i = 0; i < count; i++) {
        w.int16(ErrorCode.NONE).int32(i).int32(NODE_ID);
        w.int32(1).int32(NODE_ID); // replicas
        w.int32(1).int32(NODE_ID); // in-sync replicas
        if (v >= 5) w.int32(0); // offline replicas
      }
    });
    return w.finish();
  }

  private createTopics(r: Reader, v: number): Buffer {
    const topics = r.array((r) => {
      const name = r.string();
      const numPartitions = r.int32();
      const replicationFactor = r.int16();
      const assignments = r.array((r) => {
        const index = r.int32();
        r.array((r) => r.int32(), 4);
        return index;
      }, 8);
      r.array((r) => [r.string(), r.nullableString()], 4);
      return { name, numPartitions, replicationFactor, assignments };
    }, 12);
    r.int32(); // timeout_ms
    const validateOnly = v >= 1 ? r.bool() : false;
    const w = new Writer();
    if (v >= 2) w.int32(0);
    w.array(topics, (w, t) => {
      let error: number = ErrorCode.NONE;
      let message: string | null = null;
      const partitions =
        t.assignments.length > 0
          ? t.assignments.length
          : t.numPartitions === -1
            ? this.defaultPartitions
            : t.numPartitions;
      if (t.replicationFactor !== -1 && t.replicationFactor !== 1) {
        error = ErrorCode.INVALID_REPLICATION_FACTOR;
        message = `replication factor ${t.replicationFactor}: the test broker has a single node`;
      } else if (validateOnly) {
        if (this.topics.has(t.name)) error = ErrorCode.TOPIC_ALREADY_EXISTS;
      } else {
        error = this.createTopic(t.name, partitions);
      }
      if (error === ErrorCode.TOPIC_ALREADY_EXISTS) message = `topic ${t.name} already exists`;
      if (error === ErrorCode.INVALID_PARTITIONS) message = `invalid partition count ${partitions}`;
      if (error === ErrorCode.INVALID_TOPIC_EXCEPTION)
        message = `invalid topic name ${JSON.stringify(t.name)}`;
      w.string(t.name).int16(error);
      if (v >= 1) w.nullableString(message);
    });
    return w.finish();
  }

  private deleteTopics(r: Reader, v: number): Buffer {
    const names = r.array((r) => r.string(), 2);
    r.int32(); // timeout_ms
    const w = new Writer();
    if (v >= 1) w.int32(0);
    w.array(names, (w, name) => {
      const topic = this.topics.get(name);
      if (topic) {
        this.topics.delete(name);
        this.groups.forgetTopic(name);
        for (const p of topic.partitions) p.wake();
        this.log(`topic ${name} deleted`);
      }
      w.string(name).int16(topic ? ErrorCode.NONE : ErrorCode.UNKNOWN_TOPIC_OR_PARTITION);
    });
    return w.finish();
  }

  private produce(r: Reader, v: number): Buffer | undefined {
    const transactionalId = r.nullableString();
    const acks = r.int16();
    r.int32(); // timeout_ms
    const topics = r.array(
      (r) => ({
        name: r.string(),
        partitions: r.array((r) => ({ index: r.int32(), records: r.nullableBytes() }), 8),
      }),
      6,
    );
    const results = topics.map((t) => ({
      name: t.name,
      partitions: t.partitions.map((p) => {
        if (transactionalId !== null) {
          return {
            index: p.index,
            errorCode: ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            baseOffset: -1,
          };
        }
        const log = this.partition(t.name, p.index);
        if (!log)
          return {
            index: p.index,
            errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            baseOffset: -1,
          };
        return { index: p.index, ...this.appendRecords(t.name, p.index, log, p.records) };
      }),
    }));
    if (acks === 0) return undefined;
    const w = new Writer();
    w.array(results, (w, t) => {
      w.string(t.name);
      w.array(t.partitions, (w, p) => {
        w.int32(p.index).int16(p.errorCode).int64(p.baseOffset);
        w.int64(-1); // log_append_time_ms: CreateTime topics
        if (v >= 5) w.int64(0); // log_start_offset
      });
    });
    w.int32(0); // throttle_time_ms
    return w.finish();
  }

  private appendRecords(
    topic: string,
    index: number,
    log: PartitionLog,
    records: Buffer | null,
  ): { errorCode: number; baseOffset: number } {
    const parsed = parseBatches(records ?? Buffer.alloc(0));
    if (!Array.isArray(parsed)) {
      this.log(`produce to ${topic}/${index} rejected: ${parsed.reason}`);
      return { errorCode: parsed.errorCode, baseOffset: -1 };
    }
    // Every batch is checked before any is stored: appended one by one, a plain batch followed by
    // a transactional one was refused yet stored.
    if (parsed.some((batch) => batch.transactional)) {
      this.log(`produce to ${topic}/${index} rejected: transactional batch`);
      return { errorCode: ErrorCode.INVALID_RECORD, baseOffset: -1 };
    }
    const result = log.append(parsed);
    if (result.errorCode !== ErrorCode.NONE) {
      this.log(`produce to ${topic}/${index} rejected: ${result.reason ?? result.errorCode}`);
      return { errorCode: result.errorCode, baseOffset: -1 };
    }
    return { errorCode: ErrorCode.NONE, baseOffset: result.baseOffset };
  }

  private fetch(r: Reader, ctx: RequestContext): Buffer | Promise<Buffer> {
    const v = ctx.version;
    r.int32(); // replica_id
    const maxWaitMs = r.int32();
    const minBytes = r.int32();
    const maxBytes = v >= 3 ? r.int32() : 0x7fffffff;
    if (v >= 4) r.int8(); // isolation_level: there are no transactions, so both levels read the same
    if (v >= 7) {
      r.int32(); // session_id: sessions are declined (answered with session id 0, full fetches)
      r.int32(); // session_epoch
    }
    const topics = r.array(
      (r) => ({
        name: r.string(),
        partitions: r.array((r) => {
          const index = r.int32();
          if (v >= 9) r.int32(); // current_leader_epoch
          const fetchOffset = r.int64();
          if (v >= 5) r.int64(); // log_start_offset (followers only)
          const partitionMaxBytes = r.int32();
          return { index, fetchOffset, partitionMaxBytes };
        }, 16),
      }),
      6,
    );
    if (v >= 7) r.array((r) => [r.string(), r.array((r) => r.int32(), 4)], 6); // forgotten topics
    if (v >= 11) r.string(); // rack_id

    const respond = (): Buffer => {
      const w = new Writer(1024);
      w.int32(0); // throttle_time_ms
      if (v >= 7) w.int16(ErrorCode.NONE).int32(0);
      let budget = maxBytes;
      let anyData = false;
      w.array(topics, (w, t) => {
        w.string(t.name);
        w.array(t.partitions, (w, p) => {
          const log = this.partition(t.name, p.index);
          let error: number = ErrorCode.NONE;
          let chunks: Buffer[] = [];
          let size = 0;
          if (!log) error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION;
          else if (p.fetchOffset < log.logStartOffset || p.fetchOffset > log.highWatermark) {
            error = ErrorCode.OFFSET_OUT_OF_RANGE;
          } else {
            const read = log.read(p.fetchOffset, Math.min(p.partitionMaxBytes, budget), !anyData);
            chunks = read.chunks;
            size = read.size;
            budget -= size;
            if (size > 0) anyData = true;
          }
          w.int32(p.index).int16(error);
          w.int64(log?.highWatermark ?? -1);
          w.int64(log?.highWatermark ?? -1); // last_stable_offset
          if (v >= 5) w.int64(log?.logStartOffset ?? -1);
          w.int32(-1); // aborted_transactions: null
          if (v >= 11) w.int32(-1); // preferred_read_replica
          w.int32(size);
          for (const c of chunks) w.raw(c);
        });
      });
      return w.finish();
    };

    const ready = (): boolean => {
      let bytes = 0;
      for (const t of topics) {
        for (const p of t.partitions) {
          const log = this.partition(t.name, p.index);
          // Errors are answered at once, as Kafka does.
          if (!log || p.fetchOffset < log.logStartOffset || p.fetchOffset > log.highWatermark)
            return true;
          bytes += log.available(p.fetchOffset, minBytes - bytes);
          if (bytes >= minBytes) return true;
        }
      }
      return false;
    };

    if (maxWaitMs <= 0 || minBytes <= 0 || ready()) return respond();
    // Long poll: park until enough bytes arrive or max_wait_ms passes; appends wake us, no polling.
    return new Promise<Buffer>((resolve) => {
      const removers: (() => void)[] = [];
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        for (const remove of removers) remove();
        removeClose();
        resolve(respond());
      };
      const arm = () => {
        for (const remove of removers) remove();
        removers.length = 0;
        for (const t of topics) {
          for (const p of t.partitions) {
            const log = this.partition(t.name, p.index);
            if (log) removers.push(log.onAppend(wake));
          }
        }
      };
      const wake = () => {
        if (done) return;
        if (ready()) finish();
        else arm();
      };
      // Timers never keep the process alive on their own: the listening server does, until stop().
      const timer = setTimeout(finish, Math.min(maxWaitMs, MAX_FETCH_WAIT_MS)).unref();
      const removeClose = ctx.onClose(() => {
        done = true;
        clearTimeout(timer);
        for (const remove of removers) remove();
      });
      arm();
    });
  }

  private listOffsets(r: Reader, v: number): Buffer {
    r.int32(); // replica_id
    if (v >= 2) r.int8(); // isolation_level
    const topics = r.array(
      (r) => ({
        name: r.string(),
        // Exactly: read as a number, 2^53 + 1 found a record stamped 2^53.
        partitions: r.array((r) => ({ index: r.int32(), timestamp: r.int64Exact() }), 12),
      }),
      6,
    );
    const w = new Writer();
    if (v >= 2) w.int32(0);
    w.array(topics, (w, t) => {
      w.string(t.name);
      w.array(t.partitions, (w, p) => {
        const log = this.partition(t.name, p.index);
        if (!log) {
          w.int32(p.index).int16(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION).int64(-1).int64(-1);
          return;
        }
        let offset: number;
        let timestamp: number | bigint = -1;
        if (p.timestamp === -1n) offset = log.highWatermark;
        else if (p.timestamp === -2n) offset = log.logStartOffset;
        else {
          const found = log.offsetForTimestamp(p.timestamp);
          offset = found?.offset ?? -1;
          timestamp = found?.timestamp ?? -1;
        }
        w.int32(p.index).int16(ErrorCode.NONE).int64(timestamp).int64(offset);
      });
    });
    return w.finish();
  }

  private findCoordinator(r: Reader, v: number): Buffer {
    r.string(); // key: every group and transactional id is coordinated by the single node
    if (v >= 1) r.int8(); // key_type
    const w = new Writer();
    if (v >= 1) w.int32(0);
    w.int16(ErrorCode.NONE);
    if (v >= 1) w.nullableString(null);
    w.int32(NODE_ID).string(this.host).int32(this.port);
    return w.finish();
  }

  private async joinGroup(r: Reader, ctx: RequestContext): Promise<Buffer> {
    const v = ctx.version;
    const groupId = r.string();
    const sessionTimeoutMs = r.int32();
    const rebalanceTimeoutMs = v >= 1 ? r.int32() : sessionTimeoutMs;
    const memberId = r.string();
    const groupInstanceId = v >= 5 ? r.nullableString() : null;
    const protocolType = r.string();
    const protocols = r.array((r) => ({ name: r.string(), metadata: Buffer.from(r.bytes()) }), 6);
    const res = await this.groups.join({
      groupId,
      memberId,
      groupInstanceId,
      clientId: ctx.clientId,
      clientHost: ctx.clientHost,
      sessionTimeoutMs,
      rebalanceTimeoutMs,
      protocolType,
      protocols,
    });
    const w = new Writer();
    if (v >= 2) w.int32(0);
    w.int16(res.errorCode)
      .int32(res.generationId)
      .string(res.protocolName)
      .string(res.leader)
      .string(res.memberId);
    w.array(res.members, (w, m) => {
      w.string(m.memberId);
      if (v >= 5) w.nullableString(m.groupInstanceId);
      w.nullableBytes(m.metadata);
    });
    return w.finish();
  }

  private async syncGroup(r: Reader, v: number): Promise<Buffer> {
    const groupId = r.string();
    const generationId = r.int32();
    const memberId = r.string();
    if (v >= 3) r.nullableString(); // group_instance_id
    const assignments = r.array((r) => ({ memberId: r.string(), assignment: r.bytes() }), 6);
    const res = await this.groups.sync(groupId, generationId, memberId, assignments);
    const w = new Writer();
    if (v >= 1) w.int32(0);
    w.int16(res.errorCode).nullableBytes(res.assignment);
    return w.finish();
  }

  private heartbeat(r: Reader, v: number): Buffer {
    const groupId = r.string();
    const generationId = r.int32();
    const memberId = r.string();
    if (v >= 3) r.nullableString(); // group_instance_id
    const w = new Writer(8);
    if (v >= 1) w.int32(0);
    w.int16(this.groups.heartbeat(groupId, generationId, memberId));
    return w.finish();
  }

  private leaveGroup(r: Reader, v: number): Buffer {
    const groupId = r.string();
    const w = new Writer();
    if (v >= 1) w.int32(0);
    if (v < 3) {
      w.int16(this.groups.leave(groupId, r.string()));
      return w.finish();
    }
    const members = r.array(
      (r) => ({ memberId: r.string(), groupInstanceId: r.nullableString() }),
      4,
    );
    const results = members.map((m) => ({
      ...m,
      errorCode: this.groups.leave(groupId, m.memberId),
    }));
    w.int16(ErrorCode.NONE);
    w.array(results, (w, m) => {
      w.string(m.memberId).nullableString(m.groupInstanceId).int16(m.errorCode);
    });
    return w.finish();
  }

  private offsetCommit(r: Reader, v: number): Buffer {
    const groupId = r.string();
    const generationId = v >= 1 ? r.int32() : -1;
    const memberId = v >= 1 ? r.string() : "";
    if (v >= 2 && v <= 4) r.int64(); // retention_time_ms: offsets are kept for the broker's lifetime
    const topics = r.array(
      (r) => ({
        name: r.string(),
        partitions: r.array((r) => {
          const index = r.int32();
          const offset = r.int64Exact();
          if (v === 1) r.int64(); // commit_timestamp
          return { index, offset, metadata: r.nullableString() };
        }, 14),
      }),
      6,
    );
    const groupError = this.groups.checkCommit(groupId, generationId, memberId);
    const w = new Writer();
    if (v >= 3) w.int32(0);
    w.array(topics, (w, t) => {
      w.string(t.name);
      w.array(t.partitions, (w, p) => {
        let error = groupError;
        if (error === ErrorCode.NONE) {
          if (!this.partition(t.name, p.index)) error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION;
          else
            this.groups.commit(groupId, t.name, p.index, {
              offset: p.offset,
              metadata: p.metadata,
            });
        }
        w.int32(p.index).int16(error);
      });
    });
    return w.finish();
  }

  private offsetFetch(r: Reader, v: number): Buffer {
    const groupId = r.string();
    const requested = r.nullableArray(
      (r) => ({ name: r.string(), partitions: r.array((r) => r.int32(), 4) }),
      6,
    );
    const topics =
      requested ??
      [...this.groups.committedTopics(groupId)].map(([name, parts]) => ({
        name,
        partitions: [...parts.keys()],
      }));
    const w = new Writer();
    if (v >= 3) w.int32(0);
    w.array(topics, (w, t) => {
      w.string(t.name);
      w.array(t.partitions, (w, index) => {
        const c = this.groups.committed(groupId, t.name, index);
        w.int32(index)
          .int64(c?.offset ?? -1)
          .nullableString(c?.metadata ?? "")
          .int16(ErrorCode.NONE);
      });
    });
    if (v >= 2) w.int16(ErrorCode.NONE);
    return w.finish();
  }

  private describeGroups(r: Reader, v: number): Buffer {
    const ids = r.array((r) => r.string(), 2);
    const w = new Writer();
    if (v >= 1) w.int32(0);
    w.array(ids, (w, id) => {
      const g = this.groups.describe(id);
      w.int16(ErrorCode.NONE)
        .string(id)
        .string(g ? g.state : "Dead");
      w.string(g?.protocolType ?? "").string(g?.protocolName ?? "");
      w.array(g?.members ?? [], (w, m) => {
        w.string(m.memberId).string(m.clientId).string(m.clientHost);
        w.nullableBytes(m.metadata).nullableBytes(m.assignment);
      });
    });
    return w.finish();
  }

  private listGroups(v: number): Buffer {
    const w = new Writer();
    if (v >= 1) w.int32(0);
    w.int16(ErrorCode.NONE);
    w.array(this.groups.list(), (w, g) => {
      w.string(g.groupId).string(g.protocolType);
    });
    return w.finish();
  }

  /** DeleteGroups v0-1 (one shape): each group's error code, in the order first asked for. */
  private deleteGroups(r: Reader): Buffer {
    const ids = r.array((r) => r.string(), 2);
    const w = new Writer();
    w.int32(0); // throttle_time_ms
    // Kafka answers a group named twice once.
    w.array([...new Set(ids)], (w, id) => {
      w.string(id).int16(this.groups.delete(id));
    });
    return w.finish();
  }

  private initProducerId(r: Reader): Buffer {
    const transactionalId = r.nullableString();
    r.int32(); // transaction_timeout_ms
    const w = new Writer(24);
    w.int32(0);
    if (transactionalId !== null) {
      this.log(`InitProducerId for transactional id ${transactionalId} refused: no transactions`);
      w.int16(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED).int64(-1).int16(-1);
    } else {
      w.int16(ErrorCode.NONE)
        .int64(this.nextProducerId++)
        .int16(0);
    }
    return w.finish();
  }
}

/** One client connection: frame splitting, in-order request handling, response framing. */
class Connection {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly queue: Buffer[] = [];
  /** Bytes of the requests in {@link queue}. */
  private queuedBytes = 0;
  private busy = false;
  private closed = false;
  private readonly closeHooks = new Set<() => void>();
  private readonly clientHost: string;
  /** Runs while part of a frame is held and reading is on; closes the connection when it fires. */
  private stallTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly core: BrokerCore,
    private readonly maxFrameBytes: number,
    private readonly stalledFrameMs: number,
    private readonly warn: (line: string) => void,
    private readonly onGone: (c: Connection) => void,
    private readonly trace: ((line: string) => void) | undefined,
  ) {
    this.clientHost = `/${socket.remoteAddress ?? "unknown"}`;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", () => this.close());
    socket.on("close", () => this.close());
  }

  private onData(chunk: Buffer): void {
    try {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      while (this.pendingBytes >= 4) {
        let head = this.pending[0] as Buffer;
        if (head.length < 4) {
          head = Buffer.concat(this.pending);
          this.pending = [head];
        }
        const size = head.readInt32BE(0);
        if (size < 8 || size > this.maxFrameBytes) {
          this.fail(`invalid frame size ${size} (limit ${this.maxFrameBytes})`);
          return;
        }
        if (this.pendingBytes < size + 4) break;
        const all = this.pending.length === 1 ? head : Buffer.concat(this.pending);
        this.queue.push(all.subarray(4, size + 4));
        this.queuedBytes += size;
        const rest = all.subarray(size + 4);
        this.pending = rest.length > 0 ? [rest] : [];
        this.pendingBytes = rest.length;
      }
      // Requests are handled one at a time; stop reading while too many wait (TCP backpressure),
      // or too many bytes: 64 frames of up to maxFrameBytes each (6.4 GB by default) were held.
      if (
        (this.queue.length >= MAX_QUEUED_REQUESTS || this.queuedBytes >= this.maxFrameBytes) &&
        !this.socket.isPaused()
      )
        this.socket.pause();
      this.watchStall();
      if (!this.busy) void this.pump();
    } catch (err) {
      this.fail(`frame error: ${(err as Error).message}`);
    }
  }

  private async pump(): Promise<void> {
    this.busy = true;
    try {
      while (!this.closed) {
        const frame = this.queue.shift();
        if (!frame) break;
        this.queuedBytes -= frame.length;
        if (
          this.queue.length < MAX_QUEUED_REQUESTS / 2 &&
          this.queuedBytes < this.maxFrameBytes / 2 &&
          this.socket.isPaused()
        ) {
          this.socket.resume();
          this.watchStall();
        }
        await this.handleFrame(frame);
        // Kafka mutes a connection until its response is sent. A client that does not read its
        // responses must not have more handled meanwhile: each one (a fetch can answer megabytes
        // to a request of a hundred bytes) would wait in memory, without bound, for it to read.
        // Stopping here fills the queue, and then reading stops too.
        if (this.socket.writableNeedDrain) await this.drained();
      }
    } finally {
      this.busy = false;
    }
  }

  /**
   * Starts (or restarts, after new data) the stall timer while part of a frame is held and the
   * socket is read, and stops it otherwise. Without it a client that stopped mid-frame kept its
   * connection, and up to maxFrameBytes of partial frame, for as long as it stayed connected.
   */
  private watchStall(): void {
    if (this.closed || this.pendingBytes === 0 || this.socket.isPaused()) {
      clearTimeout(this.stallTimer);
      this.stallTimer = undefined;
      return;
    }
    if (this.stallTimer) {
      this.stallTimer.refresh();
      return;
    }
    this.stallTimer = setTimeout(() => {
      this.stallTimer = undefined;
      this.fail(
        `${this.pendingBytes} bytes of a request frame, then nothing for ${this.stalledFrameMs} ms (stalledFrameTimeoutMs)`,
      );
    }, this.stalledFrameMs);
    this.stallTimer.unref();
  }

  /** Resolves when the socket has sent what it buffered, or when the connection closes. */
  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off("drain", done);
        this.closeHooks.delete(done);
        resolve();
      };
      this.socket.on("drain", done);
      this.closeHooks.add(done);
    });
  }

  private async handleFrame(frame: Buffer): Promise<void> {
    let apiKey = -1;
    let version = -1;
    try {
      const r = new Reader(frame);
      apiKey = r.int16();
      version = r.int16();
      const correlationId = r.int32();
      const api = SUPPORTED.get(apiKey);
      if (!api) throw new ProtocolError(`unknown or unsupported API key ${apiKey}`);
      if (apiKey === ApiKey.ApiVersions && version > api.max) {
        // Kafka answers a too-new ApiVersions request in the v0 shape with UNSUPPORTED_VERSION and
        // its supported ranges, so the client can retry with a version both sides know.
        this.send(correlationId, this.core.apiVersions(0, ErrorCode.UNSUPPORTED_VERSION));
        return;
      }
      if (version < api.min || version > api.max) {
        throw new ProtocolError(`${api.name} v${version} not supported (v${api.min}-v${api.max})`);
      }
      const clientId = r.nullableString() ?? "";
      if (this.trace) this.trace(`request ${api.name} v${version} from ${clientId || "?"}`);
      const body = await this.core.handle(apiKey, r, {
        version,
        clientId,
        clientHost: this.clientHost,
        onClose: (hook) => {
          this.closeHooks.add(hook);
          return () => this.closeHooks.delete(hook);
        },
      });
      if (body !== undefined) this.send(correlationId, body);
    } catch (err) {
      const what = apiKey >= 0 ? `api key ${apiKey} v${version}` : "request";
      if (err instanceof ProtocolError) this.fail(`malformed ${what}: ${err.message}`);
      else this.fail(`error handling ${what}: ${(err as Error)?.stack ?? String(err)}`);
    }
  }

  private send(correlationId: number, body: Buffer): void {
    if (this.closed) return;
    const header = Buffer.allocUnsafe(8);
    header.writeInt32BE(body.length + 4, 0);
    header.writeInt32BE(correlationId, 4);
    this.socket.cork();
    this.socket.write(header);
    this.socket.write(body);
    this.socket.uncork();
  }

  /** Logs why and closes the connection. */
  fail(reason: string): void {
    if (this.closed) return;
    this.warn(`closing connection from ${this.clientHost}: ${reason}`);
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.pending = [];
    for (const hook of this.closeHooks) hook();
    this.closeHooks.clear();
    this.socket.destroy();
    this.onGone(this);
  }
}

// What a value reads as in a refusal: strings quoted, anything else as JavaScript prints it.
function shown(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

// Options are checked before anything listens: NaN or a negative maxFrameBytes turned the frame
// limit off or closed every connection, a defaultPartitions over the per-topic limit made every
// auto-created topic fail later with INVALID_PARTITIONS, and a log that is not a function threw
// "info is not a function".
function checkOptions(options: KafkaTestBrokerOptions): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`startKafkaBroker options must be an object, got ${shown(options)}`);
  }
  const { host, port, defaultPartitions, maxFrameBytes, stalledFrameTimeoutMs, log } = options;
  if (host !== undefined && (typeof host !== "string" || host === "")) {
    throw new TypeError(`host must be a non-empty string, got ${shown(host)}`);
  }
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) {
    throw new RangeError(
      `port must be a whole number from 0 (a free port) to 65535, got ${shown(port)}`,
    );
  }
  if (
    defaultPartitions !== undefined &&
    !(
      Number.isInteger(defaultPartitions) &&
      defaultPartitions >= 1 &&
      defaultPartitions <= MAX_PARTITIONS
    )
  ) {
    throw new RangeError(
      `defaultPartitions must be a whole number from 1 to ${MAX_PARTITIONS}, got ${shown(defaultPartitions)}`,
    );
  }
  if (
    maxFrameBytes !== undefined &&
    !(Number.isInteger(maxFrameBytes) && maxFrameBytes >= MIN_FRAME)
  ) {
    throw new RangeError(
      `maxFrameBytes must be a whole number of bytes, ${MIN_FRAME} or more, got ${shown(maxFrameBytes)}`,
    );
  }
  if (
    stalledFrameTimeoutMs !== undefined &&
    !(
      Number.isInteger(stalledFrameTimeoutMs) &&
      stalledFrameTimeoutMs >= 1 &&
      stalledFrameTimeoutMs <= MAX_TIMER_MS
    )
  ) {
    throw new RangeError(
      `stalledFrameTimeoutMs must be a whole number of milliseconds from 1 to ${MAX_TIMER_MS}, got ${shown(stalledFrameTimeoutMs)}`,
    );
  }
  for (const name of ["autoCreateTopics", "traceRequests"] as const) {
    const value = options[name];
    if (value !== undefined && typeof value !== "boolean") {
      throw new TypeError(`${name} must be true or false, got ${shown(value)}`);
    }
  }
  if (log !== undefined && typeof log !== "function") {
    throw new TypeError(`log must be a function taking one line, got ${shown(log)}`);
  }
}

/**
 * Starts a single-node, in-memory Kafka-protocol broker on `host:port` (a free port by default).
 * kafkajs and librdkafka-based clients (kcat) can produce, consume and run consumer groups
 * against it. A test tool, not a production broker: see the testkit README for its limits.
 *
 * @param options - host (default 127.0.0.1), port (default a free one), partitions of topics
 *   created without a count (default 3), topic auto-creation, the largest request frame (default
 *   100 MiB) and logging
 * @example
 * ```ts
 * const broker = await startKafkaBroker();
 * const kafka = new Kafka({ brokers: broker.brokers });
 * // ...
 * await broker.stop();
 * ```
 */
export async function startKafkaBroker(
  options: KafkaTestBrokerOptions = {},
): Promise<KafkaTestBroker> {
  checkOptions(options);
  const host = options.host ?? "127.0.0.1";
  const defaultPartitions = options.defaultPartitions ?? 3;
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME;
  const stalledFrameMs = options.stalledFrameTimeoutMs ?? DEFAULT_STALLED_FRAME_MS;
  const info = options.log ?? (() => {});
  const warn = options.log ?? ((line: string) => console.warn(`[kafka-test-broker] ${line}`));
  const trace = options.traceRequests ? info : undefined;
  const core = new BrokerCore(
    host,
    options.port ?? 0,
    defaultPartitions,
    options.autoCreateTopics ?? true,
    info,
  );
  const connections = new Set<Connection>();
  let server: Server | undefined;
  let stopped = false;

  const listen = (port: number): Promise<Server> =>
    new Promise((resolve, reject) => {
      const s = createServer((socket) => {
        try {
          connections.add(
            new Connection(
              socket,
              core,
              maxFrameBytes,
              stalledFrameMs,
              warn,
              (c) => connections.delete(c),
              trace,
            ),
          );
        } catch (err) {
          warn(`could not accept a connection: ${(err as Error).message}`);
          socket.destroy();
        }
      });
      s.on("error", (err) => {
        if (!s.listening) reject(err);
        else warn(`server error: ${err.message}`);
      });
      s.listen(port, host, () => resolve(s));
    });

  const closeAll = async (): Promise<void> => {
    const s = server;
    server = undefined;
    for (const c of [...connections]) c.close();
    connections.clear();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };

  server = await listen(core.port);
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("broker has no TCP address");
  core.port = address.port;
  const instanceId = randomUUID().slice(0, 8);
  info(`broker ${instanceId} listening on ${host}:${core.port}`);

  return {
    host,
    port: core.port,
    // An IPv6 address in brackets, as librdkafka reads it (kafkajs reads no IPv6 address).
    brokers: [host.includes(":") ? `[${host}]:${core.port}` : `${host}:${core.port}`],
    createTopic(name: string, partitions?: number): void {
      const error = core.createTopic(name, partitions);
      if (error === ErrorCode.INVALID_TOPIC_EXCEPTION)
        throw new RangeError(
          `invalid topic name ${shown(name)}: 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' and '-', not '.' or '..'`,
        );
      if (error === ErrorCode.INVALID_PARTITIONS)
        throw new RangeError(
          `invalid partition count ${shown(partitions)}: a whole number from 1 to ${MAX_PARTITIONS}`,
        );
    },
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      core.groups.close();
      await closeAll();
      info(`broker ${instanceId} stopped`);
    },
    async kill(): Promise<void> {
      if (stopped || server === undefined) return;
      await closeAll();
      core.groups.dropConnections();
      info(`broker ${instanceId} killed`);
    },
    async restart(): Promise<void> {
      if (stopped) throw new Error("the broker was stopped");
      await closeAll();
      core.groups.dropConnections();
      try {
        server = await listen(core.port);
      } catch (err) {
        // The launchers' restart says the same (launch.ts restartOnPorts): Node's own
        // "listen EADDRINUSE" did not say that the broker is now down, nor what to do.
        if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
        throw new Error(
          `cannot restart the Kafka test broker on its port (${host}:${core.port}): another process took it while the broker was down; the broker stays down (restart() again once the port is free, or stop())`,
          { cause: err },
        );
      }
      info(`broker ${instanceId} restarted on ${host}:${core.port}`);
    },
  };
}
