/**
 * Every node is a gateway: a record operation is executed here when this node leads the record's
 * shard, and otherwise forwarded to the leader over the data plane. A "not leader" answer carries the
 * leader's id, or none mid-election; the gateway follows it, or waits to learn a leader, a bounded
 * number of times. Eventual reads never leave the node. A shard that cannot reach a quorum answers at
 * once (NoQuorumError: not applied; QuorumLostError: outcome unknown), never by waiting for a timeout.
 *
 * Over 600 lines on purpose: every request kind goes through one routing core (route, forward, the
 * replies in flight, lost peers, writes a lost node may have received), whose state is private to this
 * class; what only calls into it lives beside it (batch-write.ts for batches of record commands).
 */
import type { NodeId } from "../raft/index.js";
import {
  type Consistency,
  type ReadBound,
  ConfChangeRefusedError,
  InterruptedError,
  LeaderUnreachableError,
  NotHostedError,
  META_GROUP,
  type MultiRaftNode,
  NotLeaderError,
  NoQuorumError,
  QuorumLostError,
  RequestTimeoutError,
  WrongShardError,
} from "./multi-raft.js";
import type { AsyncAck, CommandResult, PutItem, RecordCommand, ShardCommand, StoredRecord } from "./records.js";
import type { ShardPage } from "./scan.js";
import type { Position } from "../meta/ranges.js";
import { type ApplyResult, type MetaCommand, currentSettings } from "../meta/state.js";
import { DEFAULT_PLACEMENT } from "../placement/types.js";
import { type PutManyOutcome, writeMany } from "./batch-write.js";
import { assert } from "../util/assert.js";
import { writeFingerprint } from "./write-fingerprint.js";
import type { ConfChangeSingle } from "../raft/index.js";
import type { JoinRequest, JoinResponse } from "./membership.js";
import type { Step } from "../placement/types.js";
import type { ShardReport } from "./shard-agent.js";
import { PLACEMENT_WAIT_MS_MAX, type PlacementAnswer, type PlacementRequest } from "../placement/policy.js";
import type { DriverRequest } from "./placement-driver.js";
import type { Refusal } from "../placement/manual.js";
import { type Clock, pause } from "../util/clock.js";
import { SpanKind, contextFrom, inSpan, traceCarrier } from "../util/tracing.js";
import { type NodeMutations, RANGE_UNCHECKED } from "./mutations.js";

/**
 * Hops a request makes before giving up: each is a leader change followed (an election or hand-over), a
 * wait for a new leader after the last one showed no sign of life, or a retry of what is safe to repeat.
 */
const ROUTE_ATTEMPTS_MAX = 6;
/**
 * How long a request waits for a new leader once the last one showed no sign of life, in (shortest)
 * election timeouts: followers campaign within two of them, and a split vote costs up to two more.
 */
const LOST_LEADER_WAIT_ELECTIONS = 4;
/** Splits a request follows before giving up (each: the shard was split under it). */
const REROUTE_ATTEMPTS_MAX = 8;
/** How long a request refused by a split or merging shard waits for the shard map before it asks again. */
const REROUTE_WAIT_MS = 500;
/** Placement requests a waiting request makes at most (each after an operator in its way ended). */
const PLACEMENT_ATTEMPTS_MAX = 1000;
/** Metadata proposals one caller has in flight at once (proposeMetaMany): well under the node's request queue. */
const META_PROPOSALS_AT_ONCE = 128;
/** Times a configuration change refused as busy (another in flight) is asked again at most, within the request timeout. */
const CONF_CHANGE_ATTEMPTS_MAX = 50;
/** The longest pause before asking again (from 20 ms, doubling): a change in flight is applied within a round trip or two. */
const CONF_CHANGE_RETRY_MS_MAX = 500;

/** Options of a gateway. */
export interface GatewayOptions {
  /** How long a request may take overall, in ms. */
  timeoutMs?: number;
  /** Time and timers; by default the node's host clock (one clock per node), else the process's. */
  clock?: Clock;
  /** Deliberate bugs for the node-world simulator (mutations.ts); none in production. */
  mutations?: NodeMutations;
}

export type { PutManyOutcome } from "./batch-write.js";

/** A record as a replica served it: the shard, and that replica's applied version then (a session token). */
export interface ReadAt {
  record: StoredRecord | undefined;
  shard: number;
  appliedVersion: number;
}

/**
 * A record write's outcome, with the shard that applied it (its version is the write's session token
 * there) and the node that led it (where a client routing by the shard map should have sent it).
 */
export type WriteOutcome = (CommandResult | AsyncAck) & { shard: number; leader: NodeId };

/** Options of a record write. */
export interface WriteOptions {
  /** Compare-and-set: apply only if the record is at this version (0: only if it does not exist). */
  ifVersion?: number;
  /** The client's idempotency key: asking again with it returns the first outcome (idempotency.ts). */
  idempotencyKey?: string;
  /** A put in a collection with a TTL: when the record expires (wall-clock ms; not part of the idempotency digest). */
  expiresAtMs?: number;
  /** sync (default): answered once applied (a quorum holds it); async: once the leader's log holds it (AsyncAck). Not with ifVersion. */
  mode?: "sync" | "async";
}

type Op =
  /** `async`: a record write answered once durable in the leader's log (MultiRaftNode.proposeAsync). */
  | { kind: "propose"; group: number; cmd: ShardCommand; async?: true }
  | { kind: "meta"; group: number; cmd: MetaCommand }
  | { kind: "conf"; group: number; changes: ConfChangeSingle[] }
  | { kind: "join"; group: number; req: JoinRequest }
  | { kind: "read"; group: number; key: string; consistency: Consistency; bound?: ReadBound }
  /** A page of a shard's records in id order with its range, from any replica at a ReadIndex (scan.ts). */
  | { kind: "scan"; group: number; limit: number; after?: string }
  /** A placement driver's operator step, for the shard's leader (fenced by the operator's epoch). */
  | { kind: "step"; group: number; epoch: number; step: Step }
  /** Starts merging a shard into its lower neighbour `into`, on the shard's leader (it freezes). */
  | { kind: "merge"; group: number; into: number }
  /** A request for the placement driver (on the metadata leader). */
  | { kind: "placement"; group: number; req: DriverRequest }
  /**
   * A read-only request for a service above the node (a search of a shard's replica index, data/),
   * carried out by the shard's leader, or by any replica when `anyReplica`.
   */
  | { kind: "service"; group: number; name: string; body: unknown; anyReplica: boolean };

interface ReplyError { name: string; message: string; leader?: NodeId; reach?: string; busy?: boolean }
type Reply = { ok: true; value: unknown } | { ok: false; error: ReplyError };

/** An error as it travels back to the node that forwarded the request (see revive). */
function replyError(e: Error): ReplyError {
  return {
    name: e.name, message: e.message,
    ...(e instanceof NotLeaderError ? { leader: e.leader } : {}),
    ...(e instanceof NoQuorumError || e instanceof QuorumLostError ? { reach: e.reach } : {}),
    ...(e instanceof ConfChangeRefusedError && e.busy ? { busy: true } : {}),
  };
}

/** Operations that change nothing: losing the quorum under them leaves nothing unknown. */
function isRead(op: Op): boolean {
  return op.kind === "read" || op.kind === "scan" || op.kind === "service";
}

/** Errors that already say a write may have been applied (see api/error-table.ts). */
const OUTCOME_UNKNOWN = new Set(["QuorumLostError", "InterruptedError", "RequestTimeoutError"]);

/**
 * Whether the op may be sent again after a node that may have received it stopped answering: reads, and
 * record writes with an idempotency key (the shard answers a repeat with the first outcome, applying
 * nothing twice). Anything else may have taken effect: its outcome is unknown to the caller.
 */
function repeatable(op: Op): boolean {
  if (isRead(op)) return true;
  return op.kind === "propose" && op.cmd.op !== "split" && "idem" in op.cmd && op.cmd.idem !== undefined;
}

/**
 * The node a request was routed to shows no sign of life (its connection broke, or it fell silent):
 * route() decides what the caller sees. `sent`: the request may have reached it.
 */
class PeerLostError extends Error {
  override name = "PeerLostError";
  constructor(readonly peer: NodeId, readonly sent: boolean, readonly how: "disconnected" | "silent") {
    super(`node ${peer} ${how === "disconnected" ? "is disconnected" : "fell silent"}`);
  }

  /** What a caller of a request that may have reached the lost node sees: the outcome is unknown. */
  unknownOutcome(): Error {
    return this.how === "disconnected"
      ? new InterruptedError(`the connection to node ${this.peer} broke after the request was sent to it: it may still be applied`)
      : new RequestTimeoutError(`node ${this.peer} fell silent after the request was sent to it: it may still be applied`);
  }
}

/** `trace`: the W3C trace context of the sender's `shoal.forward` span, when the request is traced. */
interface RpcRequest { rpc: { id: number; op: Op; trace?: Record<string, string> } }
interface RpcReply { rpcReply: { id: number; reply: Reply } }
/** A node's statistics for the placement driver (fire and forget: the next one replaces it). */
interface ReportMessage { report: ShardReport[] }

export class Gateway {
  private readonly node: MultiRaftNode;
  /** The node this gateway serves. */
  get nodeId(): NodeId {
    return this.node.id;
  }
  private nextId = 1;
  /** Record writes and reads sent on to another node (the shard's leader): the hop a routing client saves. */
  forwardedRequests = 0;
  /**
   * Forwarded requests awaiting their reply, by id, with the node they went to: each settles exactly
   * once (reply, timeout, quorum lost, or that node lost).
   */
  private readonly pending = new Map<number, { to: NodeId; settle: (r: Reply | PeerLostError) => void }>();
  private readonly timeoutMs: number;
  /** This node's clock: deadlines on nowMs, the atMs of idempotency tags on wallMs. */
  readonly clock: Clock;
  /** Deliberate bugs switched on (mutations.ts); empty in production. */
  readonly mutations: NodeMutations;

  constructor(node: MultiRaftNode, opts: GatewayOptions | number = {}) {
    const o: GatewayOptions = typeof opts === "number" ? { timeoutMs: opts } : opts;
    this.node = node;
    this.timeoutMs = o.timeoutMs ?? 5000;
    this.clock = o.clock ?? node.clock;
    this.mutations = o.mutations ?? node.mutations;
    // One gateway per node: a second would silently take over the node's forwarded requests.
    if (node.onNodeMessage !== null) throw new Error(`node ${node.id} has a gateway already`);
    node.onNodeMessage = (from, msg) => this.onMessage(from, msg);
    node.onPeerLost = (peer, how) => this.peerLost(peer, how);
  }

  /**
   * Writes a record of `collection` (the default one unless given); `vector`: its float32 bytes (the
   * caller checked it against the collection's schema).
   */
  put(key: string, payload: unknown, opts: WriteOptions = {}, collection?: string, vector?: Uint8Array): Promise<WriteOutcome> {
    const cmd: RecordCommand = vector === undefined ? { op: "put", key, payload } : { op: "put", key, payload, vector };
    return this.write(this.withOptions(cmd, opts), collection, opts.mode);
  }

  /** A batch upsert (DATA-5): one `put-many` proposal per shard (batch-write.ts). */
  putMany(items: readonly PutItem[], collection?: string): Promise<PutManyOutcome[]> {
    return this.many(items.map((i) => i.key), (idx) => ({ op: "put-many", items: idx.map((i) => items[i]!) }), collection);
  }

  /**
   * Deletes records by id in batches, one proposal per shard (delete by filter, expiry); as putMany. With
   * `versions`, each record only while at its version. An item's outcome is its batch's version; the
   * records the shards found and deleted are summed into `removed`.
   */
  async deleteMany(keys: readonly string[], collection?: string, versions?: readonly number[]): Promise<{ outcomes: PutManyOutcome[]; removed: number }> {
    let removed = 0;
    const command = (idx: number[]): ShardCommand => (versions === undefined
      ? { op: "delete-many", keys: idx.map((i) => keys[i]!) }
      : { op: "delete-many", keys: idx.map((i) => keys[i]!), versions: idx.map((i) => versions[i]!) });
    const outcomes = await this.many(keys, command, collection, (r) => {
      removed += r.removed ?? 0;
    });
    return { outcomes, removed };
  }

  /** A batch of record commands by id, grouped by shard (see putMany and batch-write.ts). */
  private many(keys: readonly string[], command: (idx: number[]) => ShardCommand, collection: string | undefined,
    onAnswer: (r: Extract<CommandResult, { ok: true }>) => void = () => undefined): Promise<PutManyOutcome[]> {
    return writeMany({
      node: this.node, clock: this.clock, timeoutMs: this.timeoutMs, attemptsMax: REROUTE_ATTEMPTS_MAX, waitMs: REROUTE_WAIT_MS,
      propose: (group: number, cmd: ShardCommand) => this.route({ kind: "propose", group, cmd }) as Promise<CommandResult>,
    }, keys, command, collection, onAnswer);
  }

  delete(key: string, opts: WriteOptions = {}, collection?: string): Promise<WriteOutcome> {
    return this.write(this.withOptions({ op: "delete", key }, opts), collection, opts.mode);
  }

  /**
   * Adds a write's options to its command. An idempotency key travels with the limits in force here and
   * this node's clock (see records.ts IdempotencyTag), and a digest of the write, so that the same key
   * sent with a different write is refused rather than answered with another write's outcome.
   */
  private withOptions(cmd: RecordCommand, opts: WriteOptions): RecordCommand {
    if (opts.ifVersion !== undefined) cmd.ifVersion = opts.ifVersion;
    if (opts.expiresAtMs !== undefined && cmd.op === "put") cmd.expiresAtMs = opts.expiresAtMs;
    if (opts.idempotencyKey !== undefined) {
      const settings = currentSettings(this.node.metaState()).placement;
      cmd.idem = {
        key: opts.idempotencyKey, fingerprint: writeFingerprint(cmd), atMs: this.clock.wallMs(),
        ttlMs: settings.idempotencyKeyTtlMs ?? DEFAULT_PLACEMENT.idempotencyKeyTtlMs,
        keysMax: settings.idempotencyKeysPerShardMax ?? DEFAULT_PLACEMENT.idempotencyKeysPerShardMax,
      };
    }
    return cmd;
  }

  get(key: string, consistency: Consistency, collection?: string): Promise<StoredRecord | undefined> {
    return this.getAt(key, consistency, collection).then((r) => r.record);
  }

  /**
   * A record read at a level, with the shard that served it and that replica's applied version then
   * (the session token of the read). A session read takes the session's version of whichever shard
   * holds the id when it is read (`session`: shard -> version; none known: 0). The caller waits for
   * this node's shard map to be as new as the session's first (metaAtLeast).
   */
  getAt(key: string, consistency: Consistency, collection?: string, session?: ReadonlyMap<number, number>, maxStalenessMs?: number): Promise<ReadAt> {
    return this.rerouted(async (group) => {
      const bound: ReadBound = consistency === "session" ? { sessionVersion: session?.get(group) ?? 0 }
        : consistency === "bounded" ? { maxStalenessMs: maxStalenessMs ?? 0 } : {};
      // Reads at any consistency can be served here when this node holds a replica (ReadIndex confirms
      // through the leader when needed); otherwise at a node that does.
      if (!this.node.hosts(group)) {
        const at = await (this.route({ kind: "read", group, key, consistency, bound }) as Promise<Omit<ReadAt, "shard">>);
        return { ...at, shard: group };
      }
      return { record: await this.node.read(group, key, consistency, bound), shard: group, appliedVersion: this.node.appliedVersion(group) };
    }, key, collection);
  }

  /** Waits (up to the request timeout) until this node has applied the metadata log up to `index` (a session's map). */
  async metaAtLeast(index: number): Promise<void> {
    const deadlineMs = this.clock.nowMs() + this.timeoutMs;
    // Bounded: each wait ends at a change of the metadata or at the deadline.
    while (this.node.metaAppliedIndex() < index) {
      const leftMs = deadlineMs - this.clock.nowMs();
      if (leftMs <= 0) throw new RequestTimeoutError(`this node's shard map (metadata index ${this.node.metaAppliedIndex()}) did not reach the session's (${index}) within ${this.timeoutMs} ms`);
      await this.node.awaitMetaChange(leftMs);
    }
  }

  /** Splits a shard at position `at` (a hash, or an id of a range collection) into the new shard `child`, on the shard's leader (PD-6). */
  split(group: number, at: Position, child: number): Promise<CommandResult> {
    return this.route({ kind: "propose", group, cmd: { op: "split", at, child } }) as Promise<CommandResult>;
  }

  private write(cmd: RecordCommand, collection: string | undefined, mode: "sync" | "async" = "sync"): Promise<WriteOutcome> {
    assert(mode === "sync" || cmd.ifVersion === undefined, "a compare-and-set is sync");
    // Mutation: the shard is told not to check the id against its range, so a write routed by a stale
    // map (this node's, before it learned of a split or merge) is applied where the id no longer lives.
    if (this.mutations.has("gateway-skips-epoch")) (cmd as RecordCommand & { [RANGE_UNCHECKED]?: true })[RANGE_UNCHECKED] = true;
    return this.rerouted(async (group) => {
      const via = { node: 0 };
      const r = await (this.route({ kind: "propose", group, cmd, ...(mode === "async" ? { async: true as const } : {}) }, via) as Promise<CommandResult | AsyncAck>);
      if (!r.ok && r.code === "wrong_shard") throw new WrongShardError(group);
      return { ...r, shard: group, leader: via.node };
    }, cmd.key, collection);
  }

  /**
   * Runs `attempt` on the record's shard. When the shard answers that the id left it (a split, or a
   * merge under way) or the shard is gone (merged), waits until the shard map routes the id elsewhere
   * and tries there. Bounded by attempts and by one request timeout overall.
   */
  private async rerouted<T>(attempt: (group: number) => Promise<T>, key: string, collection: string | undefined): Promise<T> {
    const deadlineMs = this.clock.nowMs() + this.timeoutMs;
    for (let n = 1; ; n++) {
      const group = this.node.shardOf(key, collection);
      try {
        return await attempt(group);
      } catch (e) {
        const moved = e instanceof WrongShardError || (e instanceof NotLeaderError && this.node.shardOf(key, collection) !== group);
        if (!moved || n >= REROUTE_ATTEMPTS_MAX || this.clock.nowMs() >= deadlineMs) throw e;
        // Until the shard map routes the id elsewhere, or a while has passed (a merge that was called
        // off unfreezes the shard without changing the map).
        const retryAtMs = Math.min(deadlineMs, this.clock.nowMs() + REROUTE_WAIT_MS);
        while (this.node.shardOf(key, collection) === group && this.clock.nowMs() < retryAtMs) {
          await this.node.awaitMetaChange(Math.max(1, retryAtMs - this.clock.nowMs()));
        }
      }
    }
  }

  /**
   * A page of a shard's records after `after` with the shard's range, read at a ReadIndex (scan.ts says
   * why): on this node's replica, or on one that holds the shard.
   */
  scan(group: number, limit: number, after?: string): Promise<ShardPage> {
    if (this.node.hosts(group)) return this.node.scanPage(group, limit, after);
    return this.route({ kind: "scan", group, limit, ...(after !== undefined ? { after } : {}) }) as Promise<ShardPage>;
  }

  /**
   * Runs locally if this node leads the shard, else at the leader. A "not leader" answer names the
   * leader to go to, or (mid-election, mid-hand-over) nobody: then the gateway waits to learn a leader
   * other than the one that refused. A leader that shows no sign of life here (its connection broke, or
   * it fell silent for an election timeout) is not sent to, and a request it has is not waited for:
   * the gateway waits for the next leader, which a shard without its leader elects within about an
   * election timeout, or for that leader to show signs of life again while it still leads. Bounded by
   * attempts and by one request timeout overall.
   */
  /** `via.node`, when given, is set to the node that carried the op out (this one, or where it was forwarded). */
  private async route(op: Op, via?: { node: NodeId }): Promise<unknown> {
    const deadlineMs = this.clock.nowMs() + this.timeoutMs;
    // Whether a replica is hosted here can change while the request waits (a replica placed or moved).
    let leader = this.node.hosts(op.group) ? this.node.leaderOf(op.group) : this.replicaOf(op.group, 0);
    let refused: NodeId = 0;
    let unreachable: LeaderUnreachableError | null = null;
    // Once a leader showed no sign of life, the shard elects another within a few election timeouts if
    // it can (the followers' randomized timeouts, and one split vote): waiting longer would only be
    // waiting for the request timeout.
    let lostDeadlineMs = deadlineMs;
    let lost: PeerLostError | null = null;
    // No leader known here, and the last one shows no sign of life: this node may be cut off from a
    // leader the others still follow (no election would then succeed here), so the same bound applies.
    const last = leader === 0 && this.node.hosts(op.group) ? this.node.lastLeaderOf(op.group) : 0;
    if (last !== 0 && last !== this.node.id && this.node.peerLost(last)) {
      lost = new PeerLostError(last, false, "silent");
      lostDeadlineMs = Math.min(deadlineMs, this.clock.nowMs() + LOST_LEADER_WAIT_ELECTIONS * this.node.electionTimeoutMs);
    }
    for (let attempt = 1; ; attempt++) {
      try {
        if (leader === 0) {
          leader = this.node.hosts(op.group)
            // A leader that fell silent may come back still leading (its node stalled, a link broke for a
            // while): then what it was sent goes to it again (only a repeatable op is still routed here).
            ? await this.node.awaitLeader(op.group, refused, Math.max(1, lostDeadlineMs - this.clock.nowMs()), lost !== null && refused === lost.peer)
            : this.replicaOf(op.group, attempt);
        }
        if (leader === 0) throw new NotLeaderError(op.group, 0);
        if (via !== undefined) via.node = leader;
        if (leader === this.node.id) return await this.execute(op);
        // A leader believed in here but cut off with the rest would never answer: refuse before sending.
        const noQuorum = this.node.noQuorum(op.group);
        if (noQuorum !== null) throw noQuorum;
        // Nothing sent yet: safe to send elsewhere, whatever the op.
        if (this.node.peerLost(leader)) throw new PeerLostError(leader, false, "silent");
        // A read of a shard this node does not hold is served where it is held (not only at the leader).
        return await this.forward(leader, op);
      } catch (e) {
        if (e instanceof PeerLostError) {
          // What may have reached the lost node may still be carried out there: only what is safe to do
          // twice is sent to the next leader; anything else is answered now, its outcome unknown.
          if (e.sent && !repeatable(op)) throw e.unknownOutcome();
          if (e.sent && op.kind === "propose") this.delivered.set(op.cmd, e);
          if (lost === null) lostDeadlineMs = Math.min(deadlineMs, this.clock.nowMs() + LOST_LEADER_WAIT_ELECTIONS * this.node.electionTimeoutMs);
          lost = e;
        } else if (e instanceof LeaderUnreachableError) {
          unreachable = e;
        } else if (!(e instanceof NotLeaderError)) {
          throw this.outcome(op, e as Error);
        }
        if (attempt >= ROUTE_ATTEMPTS_MAX || this.clock.nowMs() >= lostDeadlineMs) {
          // Waiting for another leader after the last one was lost or unreachable: say so, not "no leader".
          const final = e instanceof PeerLostError || (leader === 0 && lost !== null)
            ? new LeaderUnreachableError(op.group, lost!.peer)
            : leader === 0 && unreachable !== null ? unreachable : e as Error;
          throw this.outcome(op, final);
        }
        if (e instanceof NotLeaderError && e.leader !== 0 && e.leader !== leader) {
          leader = e.leader;
        } else {
          refused = e instanceof PeerLostError ? e.peer : leader;
          leader = 0;
        }
      }
    }
  }

  /**
   * Record writes a node that then stopped answering may have received (and may still apply), across
   * every attempt to route them (a write is routed again when its shard splits under it).
   */
  private readonly delivered = new WeakMap<ShardCommand, PeerLostError>();

  /**
   * The error a request answers with: for a write a lost node may have received, one that says the
   * outcome is unknown (a later refusal of a repeat says nothing about that first copy), except a moved
   * shard's, which rerouted() follows with the same command (it carries an idempotency key).
   */
  private outcome(op: Op, e: Error): Error {
    const first = op.kind === "propose" ? this.delivered.get(op.cmd) : undefined;
    if (first === undefined || OUTCOME_UNKNOWN.has(e.name) || e instanceof WrongShardError) return e;
    return first.unknownOutcome();
  }

  /**
   * A node holding a replica of a shard this node does not host, from the metadata's shard map; one
   * that shows signs of life, if any does.
   */
  private replicaOf(group: number, attempt: number): NodeId {
    const replicas = this.node.metaState().shards.get(group)?.replicas.filter((r) => r.node !== this.node.id) ?? [];
    const alive = replicas.filter((r) => !this.node.peerLost(r.node));
    const pool = alive.length > 0 ? alive : replicas;
    return pool.length === 0 ? 0 : pool[attempt % pool.length]!.node;
  }

  /** Services above the node, by name (see the "service" op): each answers for one shard replica here. */
  private readonly services = new Map<string, (group: number, body: unknown) => Promise<unknown>>();

  /** Registers a service's handler; returns the function that removes it. */
  serve(name: string, handler: (group: number, body: unknown) => Promise<unknown>): () => void {
    assert(!this.services.has(name), () => `service ${name} is served already`);
    this.services.set(name, handler);
    return () => this.services.delete(name);
  }

  /**
   * Asks service `name` about shard `group`: here when this node holds a replica that may answer (any
   * replica when `anyReplica`, else the leader), or where one is held, with the gateway's routing (a
   * lost leader, an election, a moved replica).
   */
  ask(name: string, group: number, body: unknown, anyReplica: boolean): Promise<unknown> {
    const op: Op = { kind: "service", group, name, body, anyReplica };
    if (!anyReplica) return this.route(op);
    // Any replica: this node's own when it holds one (no hop: sending a search's shards to the other
    // nodes cost more CPU in transport than it saved, measured at 1 and 32 clients), else the voter with
    // the fewest of this gateway's asks in flight.
    const target = this.node.hosts(group) ? this.node.id : this.leastLoadedReplica(group);
    const fallback = () => (this.node.hosts(group) ? this.execute(op) : this.route(op));
    if (target === 0) return fallback();
    this.asking.set(target, (this.asking.get(target) ?? 0) + 1);
    const asked = target === this.node.id ? this.execute(op) : this.forward(target, op).catch((e: unknown) => {
      // That replica could not answer (lost, moved away, slow): the usual way, once.
      if (e instanceof PeerLostError || e instanceof NotHostedError || e instanceof LeaderUnreachableError || e instanceof RequestTimeoutError) return fallback();
      throw e;
    });
    return asked.finally(() => this.asking.set(target, this.asking.get(target)! - 1));
  }

  /** Service asks in flight from this gateway, by the node asked (see ask). */
  private readonly asking = new Map<NodeId, number>();

  private leastLoadedReplica(group: number): NodeId {
    // Asked only when this node holds no replica of the shard (see ask): the other nodes' voters.
    const voters = (this.node.metaState().shards.get(group)?.replicas ?? []).filter((r) => r.role === "voter").map((r) => r.node)
      .filter((n) => n !== this.node.id && !this.node.peerLost(n));
    let best: NodeId = 0;
    let bestLoad = Infinity;
    for (const n of voters) {
      const load = this.asking.get(n) ?? 0;
      if (load < bestLoad || (load === bestLoad && n < best)) {
        best = n;
        bestLoad = load;
      }
    }
    return best;
  }

  /** Carries out an operator step on the shard's leader (set by the ShardAgent). */
  onStep: ((group: number, epoch: number, step: Step) => Promise<ApplyResult>) | null = null;
  /** Receives nodes' reports on the metadata leader (set by the PlacementDriver). */
  onReport: ((from: NodeId, report: ShardReport[]) => void) | null = null;

  /** Starts a merge on the source shard's leader (set by the ShardAgent). */
  onMerge: ((group: number, into: number) => Promise<ApplyResult>) | null = null;

  /** Asks the leader of shard `group` to freeze it for a merge into `into` (PD-6). */
  merge(group: number, into: number): Promise<ApplyResult> {
    return this.route({ kind: "merge", group, into }) as Promise<ApplyResult>;
  }

  /** Proposes to shard `into`'s leader to absorb a frozen neighbour's records and range. */
  absorb(into: number, from: number, start: Position, end: Position, records: [string, unknown][], versionMax: number): Promise<CommandResult> {
    return this.route({ kind: "propose", group: into, cmd: { op: "absorb", from, start, end, records, versionMax } }) as Promise<CommandResult>;
  }

  /** Handles placement requests on the metadata leader (set by the PlacementDriver). */
  onPlacement: ((req: DriverRequest) => Promise<PlacementAnswer>) | null = null;

  /** Sends a request to the placement driver, wherever it runs. */
  placement(req: DriverRequest): Promise<PlacementAnswer> {
    return this.route({ kind: "placement", group: META_GROUP, req }) as Promise<PlacementAnswer>;
  }

  /**
   * A placement request that, refused because an operator runs on its shard, waits for that operator to
   * end and asks again, until it is taken or `waitMs` has passed (then it answers the last refusal, which
   * names the operator still in the way). It waits on this node's copy of the metadata, where the
   * placement driver records every operator's end: no polling, and any node can wait. A split in flight
   * is not recorded as running: then the next change of the metadata is the cue to ask again.
   * `onWait` hears of each operator waited for.
   */
  async placementWaiting(req: PlacementRequest, waitMs: number, onWait?: (refusal: Refusal) => void): Promise<PlacementAnswer> {
    const deadlineMs = this.clock.nowMs() + Math.min(Math.max(0, waitMs), PLACEMENT_WAIT_MS_MAX);
    for (let attempt = 1; ; attempt++) {
      const r = await this.placement(req);
      if (r.ok || r.code !== "shard_busy" || r.operator === undefined || attempt >= PLACEMENT_ATTEMPTS_MAX || this.clock.nowMs() >= deadlineMs) {
        return r.ok || attempt === 1 || r.code !== "shard_busy" ? r : { ...r, message: `${r.message} (still running after waiting ${Math.round(waitMs)} ms)` };
      }
      onWait?.(r);
      const id = r.operator.id;
      // At least one change: an operator not recorded yet (or never, a split) is asked about again after it.
      do {
        const leftMs = deadlineMs - this.clock.nowMs();
        if (leftMs <= 0) break;
        await this.node.awaitMetaChange(leftMs);
      } while (this.node.metaState().operators.get(id)?.status === "running");
    }
  }

  /** Asks the shard's leader, wherever it is, to carry out an operator step. */
  step(group: number, epoch: number, step: Step): Promise<ApplyResult> {
    return this.route({ kind: "step", group, epoch, step }) as Promise<ApplyResult>;
  }

  /** Sends this node's report to the metadata leader (the placement driver); dropped if none is known. */
  report(report: ShardReport[]): void {
    const pd = this.node.leaderOf(META_GROUP);
    if (pd === this.node.id) this.onReport?.(pd, report);
    else if (pd !== 0) this.node.sendNodeMessage(pd, { report } satisfies ReportMessage);
  }

  /** Handles a join on the metadata leader (set by Membership). */
  onJoin: ((req: JoinRequest) => Promise<JoinResponse>) | null = null;

  /** Asks to join the cluster (MEM-1): handled by the metadata group's leader, one join at a time. */
  join(req: JoinRequest): Promise<JoinResponse> {
    return this.route({ kind: "join", group: META_GROUP, req }) as Promise<JoinResponse>;
  }

  /**
   * Proposes a membership change of a group through its leader. Raft takes one change at a time, and
   * joins, removes and dead-node retirement each propose their own: with `askAgainWhile`, a change
   * refused only because another is in flight (busy) is asked again, backing off, while that check
   * still holds (the caller's decision may be stale once the other change applied: a promotion must not
   * bring back a node just removed, so promotions pass none) and until the request timeout has passed
   * (the last attempt then has its own).
   */
  async proposeConfChange(group: number, changes: ConfChangeSingle[], askAgainWhile?: () => boolean): Promise<ApplyResult> {
    const deadlineMs = this.clock.nowMs() + this.timeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await (this.route({ kind: "conf", group, changes }) as Promise<ApplyResult>);
      } catch (e) {
        if (askAgainWhile === undefined || !(e instanceof ConfChangeRefusedError) || !e.busy || attempt >= CONF_CHANGE_ATTEMPTS_MAX) throw e;
        const waitMs = Math.min(CONF_CHANGE_RETRY_MS_MAX, 10 * 2 ** attempt);
        if (this.clock.nowMs() + waitMs >= deadlineMs) throw e;
        await pause(this.clock, waitMs);
        if (!askAgainWhile()) throw e;
        this.confChangesAskedAgain++;
      }
    }
  }

  /** Membership changes asked again after a busy refusal (proposeConfChange). */
  confChangesAskedAgain = 0;

  /** Proposes a metadata command through the metadata group's leader, wherever it is. */
  proposeMeta(cmd: MetaCommand): Promise<ApplyResult> {
    return this.route({ kind: "meta", group: META_GROUP, cmd }) as Promise<ApplyResult>;
  }

  /**
   * Proposes independent metadata commands, up to META_PROPOSALS_AT_ONCE at a time, so that they share
   * Raft rounds instead of taking one each (a rebuild of a dead node's replicas records hundreds of
   * operator steps and replica sets per cycle). The answers are in the commands' order; a command that
   * failed to reach the log is the error it failed with.
   */
  async proposeMetaMany(cmds: readonly MetaCommand[]): Promise<(ApplyResult | Error)[]> {
    const out: (ApplyResult | Error)[] = [];
    for (let i = 0; i < cmds.length; i += META_PROPOSALS_AT_ONCE) {
      const batch = cmds.slice(i, i + META_PROPOSALS_AT_ONCE).map((cmd) => this.proposeMeta(cmd).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e)))));
      out.push(...(await Promise.all(batch)));
    }
    return out;
  }

  private execute(op: Op): Promise<unknown> {
    switch (op.kind) {
      case "propose": return op.async === true ? this.node.proposeAsync(op.group, op.cmd) : this.node.propose(op.group, op.cmd);
      case "meta": return this.node.proposeMeta(op.cmd);
      case "conf": return this.node.proposeConfChange(op.group, op.changes);
      case "join": return this.onJoin === null ? Promise.reject(new Error("this node does not handle joins")) : this.onJoin(op.req);
      case "read": return this.node.read(op.group, op.key, op.consistency, op.bound).then((record) => ({ record, appliedVersion: this.node.appliedVersion(op.group) }));
      case "scan": return this.node.scanPage(op.group, op.limit, op.after);
      case "placement": return this.onPlacement === null ? Promise.reject(new Error("this node runs no placement driver")) : this.onPlacement(op.req);
      case "merge": return this.onMerge === null ? Promise.reject(new Error("this node runs no shard agent")) : this.onMerge(op.group, op.into);
      case "step": return this.onStep === null ? Promise.reject(new Error("this node does not run operator steps")) : this.onStep(op.group, op.epoch, op.step);
      case "service": {
        const handler = this.services.get(op.name);
        return handler === undefined ? Promise.reject(new Error(`this node runs no service ${JSON.stringify(op.name)}`)) : handler(op.group, op.body);
      }
    }
  }

  /**
   * Sends the request to `to` and waits for its answer, at most the request timeout; when this node
   * hosts the shard and finds it cannot reach the shard's quorum meanwhile, the answer may never come
   * (the leader is likely gone with the rest): the request fails then, its outcome unknown unless it
   * was a read. When `to` shows no sign of life meanwhile (see peerLost), it fails at once with
   * PeerLostError, for route() to decide.
   */
  private forward(to: NodeId, op: Op): Promise<unknown> {
    if (op.kind === "propose" || op.kind === "read") this.forwardedRequests++;
    return inSpan("shoal.forward", { "shoal.to": to, "shoal.op": op.kind, "shoal.shard": op.group }, () => this.sent(to, op), undefined, SpanKind.CLIENT);
  }

  private sent(to: NodeId, op: Op): Promise<unknown> {
    const id = this.nextId++;
    const trace = traceCarrier();
    return new Promise<Reply | PeerLostError>((resolve) => {
      const settle = (reply: Reply | PeerLostError) => {
        this.clock.clear(timer);
        unwatch();
        this.pending.delete(id);
        resolve(reply);
      };
      const timer = this.clock.setTimeout(() => {
        settle({ ok: false, error: { name: "RequestTimeoutError", message: `node ${to} did not answer within ${this.timeoutMs} ms` } });
      }, this.timeoutMs);
      const unwatch = this.node.watchQuorum(op.group, (reach) => {
        settle({ ok: false, error: replyError(isRead(op) ? new NoQuorumError(op.group, reach) : new QuorumLostError(op.group, reach)) });
      });
      this.pending.set(id, { to, settle });
      if (!this.node.sendNodeMessage(to, { rpc: { id, op, ...(trace !== undefined ? { trace } : {}) } } satisfies RpcRequest)) {
        settle({ ok: false, error: { name: "LeaderUnreachableError", message: "", leader: to } });
      }
    }).then((reply) => {
      if (reply instanceof PeerLostError) throw reply;
      if (reply.ok) return reply.value;
      throw revive(reply.error, op.group);
    });
  }

  /**
   * `peer` shows no sign of life (the node calls this when its connection breaks, and each tick while it
   * is silent): requests forwarded to it would wait out the request timeout for nothing. Walks the
   * requests in flight, which only happens while a peer is lost.
   */
  private peerLost(peer: NodeId, how: "disconnected" | "silent"): void {
    for (const p of this.pending.values()) if (p.to === peer) p.settle(new PeerLostError(peer, true, how));
  }

  private onMessage(from: NodeId, msg: unknown): void {
    const m = msg as Partial<RpcRequest & RpcReply & ReportMessage>;
    if (m.report !== undefined) {
      if (Array.isArray(m.report)) this.onReport?.(from, m.report);
      return;
    }
    if (m.rpcReply !== undefined) {
      // Undefined once settled already (timed out, the quorum was lost, or the peer was).
      this.pending.get(m.rpcReply.id)?.settle(m.rpcReply.reply);
      return;
    }
    if (m.rpc === undefined) return;
    const { id, op, trace } = m.rpc;
    // Only execute where we lead (reads: where a replica is held): forwarding again could loop
    // between nodes with stale views.
    const hosted = this.node.hosts(op.group);
    const anyReplica = op.kind === "read" || op.kind === "scan" || (op.kind === "service" && op.anyReplica);
    const carryOut = () => hosted && (this.node.leaderOf(op.group) === this.node.id || anyReplica)
      ? this.execute(op)
      : Promise.reject(hosted ? new NotLeaderError(op.group, this.node.leaderOf(op.group)) : new NotHostedError(op.group));
    const run = trace === undefined ? carryOut()
      : inSpan("shoal.forwarded", { "shoal.from": from, "shoal.op": op.kind, "shoal.shard": op.group }, carryOut, contextFrom(trace), SpanKind.SERVER);
    run.then(
      (value) => this.node.sendNodeMessage(from, { rpcReply: { id, reply: { ok: true, value } } } satisfies RpcReply),
      (e: Error) => this.node.sendNodeMessage(from, { rpcReply: { id, reply: { ok: false, error: replyError(e) } } } satisfies RpcReply),
    );
  }
}

function revive(err: ReplyError, group: number): Error {
  if (err.name === "NotLeaderError") return new NotLeaderError(group, err.leader ?? 0);
  if (err.name === "NotHostedError") return new NotHostedError(group);
  if (err.name === "WrongShardError") return new WrongShardError(group);
  if (err.name === "ConfChangeRefusedError") return new ConfChangeRefusedError(err.message, err.busy === true);
  if (err.name === "LeaderUnreachableError") return new LeaderUnreachableError(group, err.leader ?? 0);
  if (err.name === "RequestTimeoutError") return new RequestTimeoutError(err.message);
  if (err.name === "NoQuorumError") return new NoQuorumError(group, err.reach ?? "voters unknown");
  if (err.name === "QuorumLostError") return new QuorumLostError(group, err.reach ?? "voters unknown");
  const e = new Error(err.message);
  e.name = err.name;
  return e;
}
