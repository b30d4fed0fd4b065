/**
 * What the multi-raft host keeps per shard, the errors it answers clients with, and how shards and
 * messages are routed (shard of a record id, connection plane of a message).
 */
import type { Timer } from "../util/clock.js";
import type { ProposalSpans } from "../util/tracing.js";
import type { RememberedQueue } from "./idempotency.js";
import type { NodeId, RaftNode } from "../raft/index.js";
import { MessageType } from "../raft/index.js";
import type { Plane } from "../transport/transport.js";
import type { GroupStorage } from "./group-storage.js";
import type { QuiescenceState } from "./quiescence.js";
import type { ShardState } from "../storage/state-store.js";
import type { ApplyResult } from "../meta/state.js";
import type { CommandResult, StoredRecord } from "./records.js";
import { HASH_SPACE, hashOf } from "../meta/ranges.js";
import { type JointConfig, VoteResult, jointIds, jointVoteResult } from "../raft/index.js";

/** Group 0 carries node-level messages (the gateway's forwarded requests), not Raft traffic. */
export const NODE_GROUP = 0;

/** The metadata group's Raft group id: far above any shard id. */
export const META_GROUP = 1_000_000;

/**
 * A read's level (DATA-3, DATA-4). linearizable: after a ReadIndex round, on any replica. session: on a
 * replica that has applied the session's version of the shard (ReadBound.sessionVersion). bounded: on a
 * replica whose last ReadIndex round started at most ReadBound.maxStalenessMs ago (else after a new one).
 * eventual: this replica, now. sequential: read as linearizable (the API refuses to name it).
 */
export type Consistency = "linearizable" | "sequential" | "session" | "bounded" | "eventual";

/** What a session or a bounded read needs beyond its level. */
export interface ReadBound {
  /** session: the least applied version (versionBase + applied index) the replica must show. */
  sessionVersion?: number;
  /** bounded: how old the replica's last confirmed-fresh moment may be. */
  maxStalenessMs?: number;
}

export class NotLeaderError extends Error {
  override name = "NotLeaderError";
  constructor(readonly group: number, readonly leader: NodeId) {
    super(`node is not the leader of shard ${group}${leader !== 0 ? ` (leader: ${leader})` : " (no leader)"}`);
  }
}

/** This node holds no replica of the shard (never placed here, or moved away): ask one that does. */
export class NotHostedError extends NotLeaderError {
  override name = "NotHostedError";
  constructor(group: number) {
    super(group, 0);
    this.message = `this node holds no replica of shard ${group}`;
  }
}

/** The record's id is outside the shard's range now (the shard was split): route it again. */
export class WrongShardError extends Error {
  override name = "WrongShardError";
  constructor(readonly group: number) {
    super(`shard ${group} no longer holds this id (it was split): route again`);
  }
}

/**
 * Raft cannot take this configuration change now (another is pending, or it is invalid): nothing was
 * proposed. `busy`: refused only until the change in flight is applied; the same change may be asked again.
 */
export class ConfChangeRefusedError extends Error {
  override name = "ConfChangeRefusedError";
  constructor(message: string, readonly busy = false) {
    super(message);
  }
}

/** The shard's leader is known but this node cannot reach it now (its link's breaker is open). */
export class LeaderUnreachableError extends Error {
  override name = "LeaderUnreachableError";
  constructor(readonly group: number, readonly leader: NodeId) {
    super(`the leader of shard ${group} (node ${leader}) is unreachable from this node`);
  }
}

/**
 * Refused before anything was proposed: the shard cannot reach a quorum from this node, so nothing could
 * commit. Not applied; worth retrying once nodes are back.
 */
export class NoQuorumError extends Error {
  override name = "NoQuorumError";
  /** `reach`: how many voters are reachable from where, e.g. "1 of 3 voters reachable from node 1". */
  constructor(readonly group: number, readonly reach: string) {
    super(`shard ${group} cannot reach a quorum: ${reach}`);
  }
}

/**
 * The proposal was handed to Raft (appended on a leader), then its leader found it cannot reach a
 * quorum: a quorum may still commit the entry later, so the outcome is unknown.
 */
export class QuorumLostError extends Error {
  override name = "QuorumLostError";
  constructor(readonly group: number, readonly reach: string) {
    super(`shard ${group} lost its quorum while the request was in flight (${reach}): its outcome is unknown, it may still be applied`);
  }
}

/** How many of a group's voters are reachable, and whether they make a quorum of every half of the configuration. */
export interface QuorumReach {
  ok: boolean;
  reachable: number;
  voters: number;
}

/**
 * Whether the voters `reachable` says yes to form a quorum: a majority of each half of a joint
 * configuration (Raft's own vote arithmetic, as if each reachable voter granted its vote). A group with
 * no voters known here (a replica waiting for its first snapshot) has nothing to refuse on: ok.
 */
export function quorumReach(voters: JointConfig, reachable: (id: NodeId) => boolean): QuorumReach {
  const votes = new Map<NodeId, boolean>();
  for (const id of jointIds(voters)) votes.set(id, reachable(id));
  const granted = [...votes.values()].filter((v) => v).length;
  return { ok: jointVoteResult(voters, votes) === VoteResult.Won, reachable: granted, voters: votes.size };
}

export class RequestTimeoutError extends Error {
  override name = "RequestTimeoutError";
}

export class OverloadedError extends Error {
  override name = "OverloadedError";
}

/** A record routed to a collection the shard map has no shard of (it does not exist, or not yet here). */
export class CollectionNotFoundError extends Error {
  override name = "CollectionNotFoundError";

  constructor(readonly collection: string) {
    super(`collection ${JSON.stringify(collection)} does not exist`);
  }
}

/**
 * The cluster removed this node (a member said so: its metadata records the node removed); the node
 * stops, since nothing it holds is the cluster's any more and no leader will call on it again.
 */
export class RemovedFromClusterError extends Error {
  override name = "RemovedFromClusterError";
}

/** Refused because the node is stopping: nothing was proposed. */
export class ShuttingDownError extends Error {
  override name = "ShuttingDownError";
}

/**
 * A proposal already handed to Raft whose waiter went away before it was applied here (the node stopped,
 * or its replica was dropped): the entry may still commit, so the outcome is unknown.
 */
export class InterruptedError extends Error {
  override name = "InterruptedError";
}

export interface Waiter<T> {
  resolve: (v: T) => void;
  reject: (e: Error) => void;
  timer: Timer;
  /** A traced proposal's spans (proposals only; ended when the waiter is settled). */
  spans?: ProposalSpans;
}

export interface PendingRead extends Waiter<StoredRecord | undefined> {
  key: string;
  /** The read index, once the ReadIndex round answered. */
  index: number | null;
  /**
   * A session read's version: served once the replica's applied version (versionBase + applied index,
   * compared afresh each time: a snapshot or an absorb may raise the base) reaches it. It takes no round.
   */
  version: number | null;
  /** When a read with a ReadIndex round was asked (node clock): once served, the replica was fresh as of then. */
  askedAtMs: number | null;
}

export interface Group {
  id: number;
  /** A shard of records, or the metadata group (see meta/). */
  kind: "shard" | "meta";
  raft: RaftNode;
  storage: GroupStorage;
  /** Waiters by proposal seq: a CommandResult for a shard, an ApplyResult for the metadata group. */
  proposals: Map<number, Waiter<CommandResult | ApplyResult>>;
  reads: Map<string, PendingRead>;
  /** ReadIndex rounds in flight: one per loop turn, confirming every read that arrived in it. */
  readBatches: Map<string, string[]>;
  quiescence: QuiescenceState;
  /** Proposals held while this node hands the shard's leadership over (counted in the node's bound of waiting callers). */
  parkedProposals: ProposeInput[];
  /** Gateways waiting to learn the shard's leader (counted in the node's bound of waiting callers). */
  leaderWaiters: LeaderWaiter[];
  /** Callers waiting for the outcome of a leadership transfer (counted in the node's bound of waiting callers). */
  transferWaiters: TransferWaiter[];
  /**
   * Called once if the group cannot reach a quorum from here, with how many voters it reaches: the
   * gateway's requests forwarded to the leader, whose answer may never come (one per pending forward).
   */
  quorumWatchers: Set<(reach: string) => void>;
  /**
   * Async proposals (ProposeInput.async) handed to Raft, by log index, until the leader's WAL holds
   * them (multi-raft-turn.ts ackDurable). Invariant: indexes ascending; each has its waiter in proposals.
   */
  asyncAcks: { seq: number; index: number }[];
  /**
   * Leader: no entry after this index changes the shard's version base or range (an absorb, split or
   * freeze), except ones this leader proposes itself, which move it, as does every entry it did not
   * propose (a no-op, a proposal a follower forwarded). Once applied up to it, an async write's version
   * and its acceptance are known before it applies. Infinity until this node leads.
   */
  baseSettledAfter: number;
  /** Leader: the index ranges of the proposals it appended this turn ([first, last] each). */
  ownAppended: [number, number][];
  /**
   * The latest moment (node clock) this replica is known to have held everything committed before it:
   * when its newest served ReadIndex round was asked. Bounded reads served without a round rely on it.
   */
  freshAsOfMs: number;
  /** Client requests (proposals and reads) made here so far: the placement driver's load statistic. */
  requests: number;
  /** A shard's range and recent splits, as of its applied index (the metadata group's is unused). */
  shard: ShardState;
  /** The shard's remembered idempotency outcomes, oldest first: built from the store on first use (see idempotency.ts). */
  remembered: RememberedQueue | null;
}

/** Waits for Raft's outcome of a leadership transfer to `to`. */
export interface TransferWaiter extends Waiter<"completed" | "aborted"> {
  to: NodeId;
}

/** Waits for a leader other than `refused` (a node that just said it does not lead). */
export interface LeaderWaiter extends Waiter<NodeId> {
  refused: NodeId;
  /** This node's term when the refusal came: `refused` leading in a later term is a new leadership. */
  refusedTerm: number;
  /**
   * `refused` fell silent rather than refused: it will do once it shows signs of life again while still
   * leading here (its node stalled, or a link broke for a while, and no other leader was elected).
   */
  orBack: boolean;
}

/**
 * A proposal for the next turn. `async`: answered once the leader's log holds it durably (AsyncAck), not
 * once applied. `changesBase`: applied, its command changes the shard's version base or range (absorb, split, freeze).
 */
export interface ProposeInput { kind: "propose"; group: number; seq: number; data: Uint8Array; async?: true; changesBase?: true }

/** Which connection a Raft message travels on. */
export function planeOf(type: MessageType): Plane {
  switch (type) {
    case MessageType.SnapshotChunk:
    case MessageType.SnapshotChunkResponse:
      return "bulk";
    case MessageType.Append:
    case MessageType.AppendResponse:
    case MessageType.Propose:
    case MessageType.ReadIndex:
    case MessageType.ReadIndexResponse:
      return "data";
    default:
      return "control";
  }
}

/** The shard of a record id among `shards` equal hash ranges (a collection as created, before any split). */
export function shardOf(key: string, shards: number): number {
  return 1 + Math.floor((hashOf(key) * shards) / HASH_SPACE);
}
