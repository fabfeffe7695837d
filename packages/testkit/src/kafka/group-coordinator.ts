/**
 * The consumer group coordinator of the test broker: the classic group membership protocol
 * (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and committed offsets, kept in memory.
 *
 * States follow Kafka's: Empty -> PreparingRebalance -> CompletingRebalance -> Stable. A join from
 * any member starts a rebalance; the other members learn of it from REBALANCE_IN_PROGRESS on their
 * next heartbeat (or commit, or sync) and rejoin. The join completes when every known member has
 * rejoined or the longest rebalance timeout expires (members that did not rejoin are dropped). The
 * leader receives every member's metadata and computes the assignment client-side; SyncGroup hands
 * each member its share. There is no initial rebalance delay (group.initial.rebalance.delay.ms 0).
 */

import { randomUUID } from "node:crypto";
import { ErrorCode } from "./protocol.js";

/** Group states, with the names DescribeGroups reports. */
export type GroupState = "Empty" | "PreparingRebalance" | "CompletingRebalance" | "Stable";

/** One protocol a member supports, with its opaque metadata. */
export interface GroupProtocol {
  readonly name: string;
  readonly metadata: Buffer;
}

/** The fields of a JoinGroup request the coordinator needs. */
export interface JoinRequest {
  readonly groupId: string;
  readonly memberId: string;
  readonly groupInstanceId: string | null;
  readonly clientId: string;
  readonly clientHost: string;
  readonly sessionTimeoutMs: number;
  readonly rebalanceTimeoutMs: number;
  readonly protocolType: string;
  readonly protocols: readonly GroupProtocol[];
}

/** A JoinGroup outcome. `members` is filled for the leader only. */
export interface JoinResult {
  readonly errorCode: number;
  readonly generationId: number;
  readonly protocolName: string;
  readonly leader: string;
  readonly memberId: string;
  readonly members: readonly {
    memberId: string;
    groupInstanceId: string | null;
    metadata: Buffer;
  }[];
}

/** A SyncGroup outcome. */
export interface SyncResult {
  readonly errorCode: number;
  readonly assignment: Buffer;
}

/** A committed offset. */
export interface CommittedOffset {
  /** Exactly as committed: any int64, not only offsets a number holds. */
  readonly offset: bigint;
  readonly metadata: string | null;
}

interface Member {
  readonly id: string;
  groupInstanceId: string | null;
  clientId: string;
  clientHost: string;
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  protocolType: string;
  protocols: readonly GroupProtocol[];
  assignment: Buffer;
  joinWaiter: ((r: JoinResult) => void) | undefined;
  syncWaiter: ((r: SyncResult) => void) | undefined;
  sessionTimer: NodeJS.Timeout | undefined;
}

interface Group {
  readonly id: string;
  state: GroupState;
  generationId: number;
  protocolType: string | null;
  protocolName: string | null;
  leader: string | null;
  readonly members: Map<string, Member>;
  rebalanceTimer: NodeJS.Timeout | undefined;
  readonly offsets: Map<string, Map<number, CommittedOffset>>;
}

const EMPTY = Buffer.alloc(0);

function joinError(errorCode: number, memberId: string): JoinResult {
  return { errorCode, generationId: -1, protocolName: "", leader: "", memberId, members: [] };
}

/** Group membership and committed offsets for every group of one broker. */
export class GroupCoordinator {
  private readonly groups = new Map<string, Group>();

  constructor(private readonly log: (line: string) => void) {}

  private group(groupId: string): Group {
    let g = this.groups.get(groupId);
    if (!g) {
      g = {
        id: groupId,
        state: "Empty",
        generationId: 0,
        protocolType: null,
        protocolName: null,
        leader: null,
        members: new Map(),
        rebalanceTimer: undefined,
        offsets: new Map(),
      };
      this.groups.set(groupId, g);
    }
    return g;
  }

  /** Handles a JoinGroup request; resolves when the rebalance completes (or at once on error). */
  join(req: JoinRequest): Promise<JoinResult> {
    if (req.groupId === "")
      return Promise.resolve(joinError(ErrorCode.INVALID_GROUP_ID, req.memberId));
    if (req.sessionTimeoutMs <= 0 || req.sessionTimeoutMs > 3_600_000) {
      return Promise.resolve(joinError(ErrorCode.INVALID_SESSION_TIMEOUT, req.memberId));
    }
    const g = this.group(req.groupId);
    if (req.protocols.length === 0 || !this.compatible(g, req)) {
      return Promise.resolve(joinError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, req.memberId));
    }
    let member: Member | undefined;
    if (req.memberId === "") {
      member = {
        id: `${req.clientId || "member"}-${randomUUID()}`,
        groupInstanceId: req.groupInstanceId,
        clientId: req.clientId,
        clientHost: req.clientHost,
        sessionTimeoutMs: req.sessionTimeoutMs,
        rebalanceTimeoutMs: req.rebalanceTimeoutMs,
        protocolType: req.protocolType,
        protocols: req.protocols,
        assignment: EMPTY,
        joinWaiter: undefined,
        syncWaiter: undefined,
        sessionTimer: undefined,
      };
      g.members.set(member.id, member);
    } else {
      member = g.members.get(req.memberId);
      if (!member) return Promise.resolve(joinError(ErrorCode.UNKNOWN_MEMBER_ID, req.memberId));
      member.sessionTimeoutMs = req.sessionTimeoutMs;
      member.rebalanceTimeoutMs = req.rebalanceTimeoutMs;
      member.protocols = req.protocols;
      member.protocolType = req.protocolType;
    }
    g.protocolType = req.protocolType;
    const joining = member;
    return new Promise<JoinResult>((resolve) => {
      joining.joinWaiter = resolve;
      // A member waiting in a join is not expected to heartbeat (its connection is busy).
      clearTimeout(joining.sessionTimer);
      joining.sessionTimer = undefined;
      if (g.state !== "PreparingRebalance") this.prepareRebalance(g, `member ${joining.id} joined`);
      else this.maybeCompleteJoin(g);
    });
  }

  private compatible(g: Group, req: JoinRequest): boolean {
    if (g.members.size === 0) return true;
    if (g.protocolType !== null && g.protocolType !== req.protocolType) return false;
    const others = [...g.members.values()].filter((m) => m.id !== req.memberId);
    return req.protocols.some((p) =>
      others.every((m) => m.protocols.some((q) => q.name === p.name)),
    );
  }

  private prepareRebalance(g: Group, why: string): void {
    this.log(`group ${g.id}: rebalance (${why})`);
    g.state = "PreparingRebalance";
    for (const m of g.members.values()) {
      if (m.syncWaiter) {
        const waiter = m.syncWaiter;
        m.syncWaiter = undefined;
        waiter({ errorCode: ErrorCode.REBALANCE_IN_PROGRESS, assignment: EMPTY });
      }
    }
    clearTimeout(g.rebalanceTimer);
    let timeout = 0;
    for (const m of g.members.values()) timeout = Math.max(timeout, m.rebalanceTimeoutMs);
    g.rebalanceTimer = setTimeout(() => this.completeJoin(g), timeout).unref();
    this.maybeCompleteJoin(g);
  }

  private maybeCompleteJoin(g: Group): void {
    if (g.state !== "PreparingRebalance") return;
    for (const m of g.members.values()) if (!m.joinWaiter) return;
    this.completeJoin(g);
  }

  private completeJoin(g: Group): void {
    clearTimeout(g.rebalanceTimer);
    g.rebalanceTimer = undefined;
    if (g.state !== "PreparingRebalance") return;
    for (const m of [...g.members.values()]) {
      if (!m.joinWaiter) {
        this.log(`group ${g.id}: member ${m.id} did not rejoin in time, removed`);
        this.dropMember(g, m);
      }
    }
    g.generationId++;
    if (g.members.size === 0) {
      // As Kafka does, an emptied group keeps its protocol type ("consumer"): ListGroups and
      // DescribeGroups still show it as a consumer group with its committed offsets.
      g.state = "Empty";
      g.protocolName = null;
      g.leader = null;
      return;
    }
    const members = [...g.members.values()];
    if (g.leader === null || !g.members.has(g.leader)) g.leader = (members[0] as Member).id;
    g.protocolName = this.chooseProtocol(g, members);
    g.state = "CompletingRebalance";
    const chosen = g.protocolName;
    const all = members.map((m) => ({
      memberId: m.id,
      groupInstanceId: m.groupInstanceId,
      metadata: m.protocols.find((p) => p.name === chosen)?.metadata ?? EMPTY,
    }));
    for (const m of members) {
      const waiter = m.joinWaiter;
      m.joinWaiter = undefined;
      m.assignment = EMPTY;
      this.touch(g, m);
      waiter?.({
        errorCode: ErrorCode.NONE,
        generationId: g.generationId,
        protocolName: chosen,
        leader: g.leader,
        memberId: m.id,
        members: m.id === g.leader ? all : [],
      });
    }
  }

  /** Each member votes for its most preferred protocol that every member supports. */
  private chooseProtocol(g: Group, members: Member[]): string {
    const leader = g.members.get(g.leader ?? "") ?? (members[0] as Member);
    const common = leader.protocols
      .map((p) => p.name)
      .filter((name) => members.every((m) => m.protocols.some((p) => p.name === name)));
    const votes = new Map<string, number>();
    for (const m of members) {
      const pick = m.protocols.find((p) => common.includes(p.name));
      if (pick) votes.set(pick.name, (votes.get(pick.name) ?? 0) + 1);
    }
    let best = common[0] ?? "";
    for (const name of common) if ((votes.get(name) ?? 0) > (votes.get(best) ?? 0)) best = name;
    return best;
  }

  /** Restarts a member's session timer; on expiry the member is removed and the group rebalances. */
  private touch(g: Group, m: Member): void {
    clearTimeout(m.sessionTimer);
    m.sessionTimer = setTimeout(() => {
      m.sessionTimer = undefined;
      if (g.members.get(m.id) !== m || m.joinWaiter) return;
      this.log(`group ${g.id}: member ${m.id} session expired`);
      this.removeMember(g, m, "session timeout");
    }, m.sessionTimeoutMs).unref();
  }

  private dropMember(g: Group, m: Member): void {
    clearTimeout(m.sessionTimer);
    m.sessionTimer = undefined;
    g.members.delete(m.id);
    const sync = m.syncWaiter;
    m.syncWaiter = undefined;
    sync?.({ errorCode: ErrorCode.UNKNOWN_MEMBER_ID, assignment: EMPTY });
    const join = m.joinWaiter;
    m.joinWaiter = undefined;
    join?.(joinError(ErrorCode.UNKNOWN_MEMBER_ID, m.id));
  }

  private removeMember(g: Group, m: Member, why: string): void {
    this.dropMember(g, m);
    if (g.state === "PreparingRebalance") this.maybeCompleteJoin(g);
    else if (g.state !== "Empty") this.prepareRebalance(g, `${m.id} left: ${why}`);
  }

  /** Handles a SyncGroup request; followers wait until the leader has sent the assignment. */
  sync(
    groupId: string,
    generationId: number,
    memberId: string,
    assignments: readonly { memberId: string; assignment: Buffer }[],
  ): Promise<SyncResult> {
    const g = this.groups.get(groupId);
    const m = g?.members.get(memberId);
    if (!g || !m)
      return Promise.resolve({ errorCode: ErrorCode.UNKNOWN_MEMBER_ID, assignment: EMPTY });
    if (g.state === "PreparingRebalance") {
      return Promise.resolve({ errorCode: ErrorCode.REBALANCE_IN_PROGRESS, assignment: EMPTY });
    }
    if (generationId !== g.generationId) {
      return Promise.resolve({ errorCode: ErrorCode.ILLEGAL_GENERATION, assignment: EMPTY });
    }
    this.touch(g, m);
    if (g.state === "Stable")
      return Promise.resolve({ errorCode: ErrorCode.NONE, assignment: m.assignment });
    return new Promise<SyncResult>((resolve) => {
      m.syncWaiter = resolve;
      if (memberId !== g.leader) return;
      for (const a of assignments) {
        const target = g.members.get(a.memberId);
        if (target) target.assignment = Buffer.from(a.assignment);
      }
      g.state = "Stable";
      for (const member of g.members.values()) {
        const waiter = member.syncWaiter;
        member.syncWaiter = undefined;
        waiter?.({ errorCode: ErrorCode.NONE, assignment: member.assignment });
      }
    });
  }

  /** Handles a Heartbeat request and returns its error code. */
  heartbeat(groupId: string, generationId: number, memberId: string): number {
    const g = this.groups.get(groupId);
    const m = g?.members.get(memberId);
    if (!g || !m) return ErrorCode.UNKNOWN_MEMBER_ID;
    this.touch(g, m);
    if (g.state === "PreparingRebalance") return ErrorCode.REBALANCE_IN_PROGRESS;
    if (generationId !== g.generationId) return ErrorCode.ILLEGAL_GENERATION;
    return ErrorCode.NONE;
  }

  /** Handles one member of a LeaveGroup request and returns its error code. */
  leave(groupId: string, memberId: string): number {
    const g = this.groups.get(groupId);
    const m = g?.members.get(memberId);
    if (!g || !m) return ErrorCode.UNKNOWN_MEMBER_ID;
    this.log(`group ${g.id}: member ${memberId} left`);
    this.removeMember(g, m, "LeaveGroup");
    return ErrorCode.NONE;
  }

  /**
   * Checks whether a member may commit offsets now: standalone commits (generation -1, no member
   * id) only to groups without members; group members only with the current generation, while the
   * group is stable or preparing a rebalance (as Kafka does: a member told of a rebalance commits
   * what it processed before it rejoins, or the next owner of its partitions reads it again), and
   * not between the join and the leader's assignment (`REBALANCE_IN_PROGRESS`).
   */
  checkCommit(groupId: string, generationId: number, memberId: string): number {
    if (generationId < 0 && memberId === "") {
      const g = this.group(groupId);
      return g.members.size === 0 ? ErrorCode.NONE : ErrorCode.UNKNOWN_MEMBER_ID;
    }
    // A refused commit does not create the group (DeleteGroups would find it), as in Kafka.
    const g = this.groups.get(groupId);
    const m = g?.members.get(memberId);
    if (!g || !m) return ErrorCode.UNKNOWN_MEMBER_ID;
    if (generationId !== g.generationId) return ErrorCode.ILLEGAL_GENERATION;
    if (g.state === "CompletingRebalance") return ErrorCode.REBALANCE_IN_PROGRESS;
    this.touch(g, m);
    return ErrorCode.NONE;
  }

  /** Stores a committed offset (after {@link checkCommit} allowed it). */
  commit(groupId: string, topic: string, partition: number, value: CommittedOffset): void {
    const g = this.group(groupId);
    let byTopic = g.offsets.get(topic);
    if (!byTopic) {
      byTopic = new Map();
      g.offsets.set(topic, byTopic);
    }
    byTopic.set(partition, value);
  }

  /** The committed offset of a group for one partition. */
  committed(groupId: string, topic: string, partition: number): CommittedOffset | undefined {
    return this.groups.get(groupId)?.offsets.get(topic)?.get(partition);
  }

  /** Every partition with a committed offset in a group, by topic. */
  committedTopics(groupId: string): Map<string, Map<number, CommittedOffset>> {
    return this.groups.get(groupId)?.offsets ?? new Map();
  }

  /** Forgets the committed offsets of a deleted topic. */
  forgetTopic(topic: string): void {
    for (const g of this.groups.values()) g.offsets.delete(topic);
  }

  /** A snapshot of a group for DescribeGroups. */
  describe(groupId: string):
    | {
        state: GroupState;
        protocolType: string;
        protocolName: string;
        members: {
          memberId: string;
          clientId: string;
          clientHost: string;
          metadata: Buffer;
          assignment: Buffer;
        }[];
      }
    | undefined {
    const g = this.groups.get(groupId);
    if (!g) return undefined;
    return {
      state: g.state,
      protocolType: g.protocolType ?? "",
      protocolName: g.protocolName ?? "",
      members: [...g.members.values()].map((m) => ({
        memberId: m.id,
        clientId: m.clientId,
        clientHost: m.clientHost,
        metadata: m.protocols.find((p) => p.name === g.protocolName)?.metadata ?? EMPTY,
        assignment: m.assignment,
      })),
    };
  }

  /**
   * Deletes a group and its committed offsets, as Kafka's DeleteGroups does, and returns the
   * error code: `INVALID_GROUP_ID` for an empty id, `GROUP_ID_NOT_FOUND` for a group the broker
   * does not know (or deleted already), `NON_EMPTY_GROUP` while it has members (or a rebalance
   * is under way), `NONE` when deleted. A group that has only committed offsets is empty.
   */
  delete(groupId: string): number {
    if (groupId === "") return ErrorCode.INVALID_GROUP_ID;
    const g = this.groups.get(groupId);
    if (!g) return ErrorCode.GROUP_ID_NOT_FOUND;
    if (g.members.size > 0 || g.state !== "Empty") return ErrorCode.NON_EMPTY_GROUP;
    clearTimeout(g.rebalanceTimer);
    this.groups.delete(groupId);
    this.log(`group ${groupId} deleted`);
    return ErrorCode.NONE;
  }

  /** Every known group with its protocol type, for ListGroups. */
  list(): { groupId: string; protocolType: string }[] {
    return [...this.groups.values()].map((g) => ({
      groupId: g.id,
      protocolType: g.protocolType ?? "",
    }));
  }

  /**
   * Forgets the responses still owed to members (their connections are gone) and restarts their
   * session timers, so members that do not come back are expired. Used by `restart()`.
   */
  dropConnections(): void {
    for (const g of this.groups.values()) {
      for (const m of g.members.values()) {
        m.joinWaiter = undefined;
        m.syncWaiter = undefined;
        this.touch(g, m);
      }
    }
  }

  /** Cancels every timer. */
  close(): void {
    for (const g of this.groups.values()) {
      clearTimeout(g.rebalanceTimer);
      g.rebalanceTimer = undefined;
      for (const m of g.members.values()) {
        clearTimeout(m.sessionTimer);
        m.sessionTimer = undefined;
      }
    }
  }
}
