/**
 * Every node is a gateway: a record operation is executed here when this node leads the record's
 * shard, and otherwise forwarded to the leader over the data plane. A "not leader" answer carries the
 * leader's id, or none mid-election; the gateway follows it, or waits to learn a leader, a bounded
 * number of times. Eventual reads never leave the node. A shard that cannot reach a quorum answers at
 * once (NoQuorumError: not applied; QuorumLostError: outcome unknown), never by waiting for a timeout.
 */
import type { NodeId } from "../raft/index.js";
import {
  type Consistency,
  ConfChangeRefusedError,
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
import type { CommandResult, RecordCommand, ShardCommand, StoredRecord } from "./records.js";
import type { ShardPage } from "./scan.js";
import { type ApplyResult, type MetaCommand, currentSettings } from "../meta/state.js";
import { DEFAULT_PLACEMENT } from "../placement/types.js";
import { createHash } from "node:crypto";
import { pack } from "msgpackr";
import type { ConfChangeSingle } from "../raft/index.js";
import type { JoinRequest, JoinResponse } from "./membership.js";
import type { Step } from "../placement/types.js";
import type { ShardReport } from "./shard-agent.js";
import type { PlacementAnswer, PlacementRequest } from "./placement-driver.js";

/** Leader changes a request follows before giving up (each hop is one election or hand-over). */
const ROUTE_ATTEMPTS_MAX = 4;
/** Splits a request follows before giving up (each: the shard was split under it). */
const REROUTE_ATTEMPTS_MAX = 8;
/** How long a request refused by a split or merging shard waits for the shard map before it asks again. */
const REROUTE_WAIT_MS = 500;

/** Options of a record write. */
export interface WriteOptions {
  /** Compare-and-set: apply only if the record is at this version (0: only if it does not exist). */
  ifVersion?: number;
  /** The client's idempotency key: asking again with it returns the first outcome (idempotency.ts). */
  idempotencyKey?: string;
}

type Op =
  | { kind: "propose"; group: number; cmd: ShardCommand }
  | { kind: "meta"; group: number; cmd: MetaCommand }
  | { kind: "conf"; group: number; changes: ConfChangeSingle[] }
  | { kind: "join"; group: number; req: JoinRequest }
  | { kind: "read"; group: number; key: string; consistency: Consistency }
  /** A page of a shard's records in id order with its range, from any replica at a ReadIndex (scan.ts). */
  | { kind: "scan"; group: number; limit: number; after?: string }
  /** A placement driver's operator step, for the shard's leader (fenced by the operator's epoch). */
  | { kind: "step"; group: number; epoch: number; step: Step }
  /** Starts merging a shard into its lower neighbour `into`, on the shard's leader (it freezes). */
  | { kind: "merge"; group: number; into: number }
  /** A request for the placement driver (on the metadata leader). */
  | { kind: "placement"; group: number; req: PlacementRequest };

interface ReplyError { name: string; message: string; leader?: NodeId; reach?: string }
type Reply = { ok: true; value: unknown } | { ok: false; error: ReplyError };

/** An error as it travels back to the node that forwarded the request (see revive). */
function replyError(e: Error): ReplyError {
  return {
    name: e.name, message: e.message,
    ...(e instanceof NotLeaderError ? { leader: e.leader } : {}),
    ...(e instanceof NoQuorumError || e instanceof QuorumLostError ? { reach: e.reach } : {}),
  };
}

/** Operations that change nothing: losing the quorum under them leaves nothing unknown. */
function isRead(op: Op): boolean {
  return op.kind === "read" || op.kind === "scan";
}

interface RpcRequest { rpc: { id: number; op: Op } }
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
  /** Forwarded requests awaiting their reply, by id: each settles exactly once (reply, timeout or quorum lost). */
  private readonly pending = new Map<number, (r: Reply) => void>();
  private readonly timeoutMs: number;

  constructor(node: MultiRaftNode, timeoutMs = 5000) {
    this.node = node;
    this.timeoutMs = timeoutMs;
    // One gateway per node: a second would silently take over the node's forwarded requests.
    if (node.onNodeMessage !== null) throw new Error(`node ${node.id} has a gateway already`);
    node.onNodeMessage = (from, msg) => this.onMessage(from, msg);
  }

  put(key: string, payload: unknown, opts: WriteOptions = {}): Promise<CommandResult> {
    const cmd: RecordCommand = { op: "put", key, payload };
    return this.write(this.withOptions(cmd, opts));
  }

  delete(key: string, opts: WriteOptions = {}): Promise<CommandResult> {
    return this.write(this.withOptions({ op: "delete", key }, opts));
  }

  /**
   * Adds a write's options to its command. An idempotency key travels with the limits in force here and
   * this node's clock (see records.ts IdempotencyTag), and a digest of the write, so that the same key
   * sent with a different write is refused rather than answered with another write's outcome.
   */
  private withOptions(cmd: RecordCommand, opts: WriteOptions): RecordCommand {
    if (opts.ifVersion !== undefined) cmd.ifVersion = opts.ifVersion;
    if (opts.idempotencyKey !== undefined) {
      const settings = currentSettings(this.node.metaState()).placement;
      const digest = createHash("sha256").update(pack([cmd.op, cmd.op === "put" ? cmd.payload : null, cmd.ifVersion ?? null]) as Uint8Array);
      cmd.idem = {
        key: opts.idempotencyKey, fingerprint: digest.digest("base64url").slice(0, 22), atMs: Date.now(),
        ttlMs: settings.idempotencyKeyTtlMs ?? DEFAULT_PLACEMENT.idempotencyKeyTtlMs,
        keysMax: settings.idempotencyKeysPerShardMax ?? DEFAULT_PLACEMENT.idempotencyKeysPerShardMax,
      };
    }
    return cmd;
  }

  get(key: string, consistency: Consistency): Promise<StoredRecord | undefined> {
    return this.rerouted(async (group) => {
      // Reads at any consistency can be served here when this node holds a replica (ReadIndex confirms
      // through the leader when needed); otherwise at a node that does.
      if (!this.node.hosts(group)) return this.route({ kind: "read", group, key, consistency }) as Promise<StoredRecord | undefined>;
      return this.node.read(group, key, consistency);
    }, key);
  }

  /** Splits a shard at hash `at` into the new shard `child`, on the shard's leader (PD-6). */
  split(group: number, at: number, child: number): Promise<CommandResult> {
    return this.route({ kind: "propose", group, cmd: { op: "split", at, child } }) as Promise<CommandResult>;
  }

  private write(cmd: RecordCommand): Promise<CommandResult> {
    return this.rerouted(async (group) => {
      const r = await (this.route({ kind: "propose", group, cmd }) as Promise<CommandResult>);
      if (!r.ok && r.code === "wrong_shard") throw new WrongShardError(group);
      return r;
    }, cmd.key);
  }

  /**
   * Runs `attempt` on the record's shard. When the shard answers that the id left it (a split, or a
   * merge under way) or the shard is gone (merged), waits until the shard map routes the id elsewhere
   * and tries there. Bounded by attempts and by one request timeout overall.
   */
  private async rerouted<T>(attempt: (group: number) => Promise<T>, key: string): Promise<T> {
    const deadlineMs = performance.now() + this.timeoutMs;
    for (let n = 1; ; n++) {
      const group = this.node.shardOf(key);
      try {
        return await attempt(group);
      } catch (e) {
        const moved = e instanceof WrongShardError || (e instanceof NotLeaderError && this.node.shardOf(key) !== group);
        if (!moved || n >= REROUTE_ATTEMPTS_MAX || performance.now() >= deadlineMs) throw e;
        // Until the shard map routes the id elsewhere, or a while has passed (a merge that was called
        // off unfreezes the shard without changing the map).
        const retryAtMs = Math.min(deadlineMs, performance.now() + REROUTE_WAIT_MS);
        while (this.node.shardOf(key) === group && performance.now() < retryAtMs) {
          await this.node.awaitMetaChange(Math.max(1, retryAtMs - performance.now()));
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
   * other than the one that refused. Bounded by attempts and by one request timeout overall.
   */
  private async route(op: Op): Promise<unknown> {
    const deadlineMs = performance.now() + this.timeoutMs;
    // Whether a replica is hosted here can change while the request waits (a replica placed or moved).
    let leader = this.node.hosts(op.group) ? this.node.leaderOf(op.group) : this.replicaOf(op.group, 0);
    let refused: NodeId = 0;
    let unreachable: LeaderUnreachableError | null = null;
    for (let attempt = 1; ; attempt++) {
      try {
        if (leader === 0) {
          leader = this.node.hosts(op.group)
            ? await this.node.awaitLeader(op.group, refused, Math.max(1, deadlineMs - performance.now()))
            : this.replicaOf(op.group, attempt);
        }
        if (leader === 0) throw new NotLeaderError(op.group, 0);
        if (leader === this.node.id) return await this.execute(op);
        // A leader believed in here but cut off with the rest would never answer: refuse before sending.
        const noQuorum = this.node.noQuorum(op.group);
        if (noQuorum !== null) throw noQuorum;
        // A read of a shard this node does not hold is served where it is held (not only at the leader).
        return await this.forward(leader, op);
      } catch (e) {
        if (e instanceof LeaderUnreachableError) unreachable = e;
        else if (!(e instanceof NotLeaderError)) throw e;
        // Waiting for another leader after the last one was unreachable: say so, not "no leader".
        if (attempt >= ROUTE_ATTEMPTS_MAX || performance.now() >= deadlineMs) throw leader === 0 && unreachable !== null ? unreachable : e;
        if (e instanceof NotLeaderError && e.leader !== 0 && e.leader !== leader) {
          leader = e.leader;
        } else {
          refused = leader;
          leader = 0;
        }
      }
    }
  }

  /** A node holding a replica of a shard this node does not host, from the metadata's shard map. */
  private replicaOf(group: number, attempt: number): NodeId {
    const replicas = this.node.metaState().shards.get(group)?.replicas.filter((r) => r.node !== this.node.id) ?? [];
    return replicas.length === 0 ? 0 : replicas[attempt % replicas.length]!.node;
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
  absorb(into: number, from: number, start: number, end: number, records: [string, unknown][], versionMax: number): Promise<CommandResult> {
    return this.route({ kind: "propose", group: into, cmd: { op: "absorb", from, start, end, records, versionMax } }) as Promise<CommandResult>;
  }

  /** Handles placement requests on the metadata leader (set by the PlacementDriver). */
  onPlacement: ((req: PlacementRequest) => Promise<PlacementAnswer>) | null = null;

  /** Sends a request to the placement driver, wherever it runs. */
  placement(req: PlacementRequest): Promise<PlacementAnswer> {
    return this.route({ kind: "placement", group: META_GROUP, req }) as Promise<PlacementAnswer>;
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

  /** Proposes a membership change of a group through its leader. */
  proposeConfChange(group: number, changes: ConfChangeSingle[]): Promise<ApplyResult> {
    return this.route({ kind: "conf", group, changes }) as Promise<ApplyResult>;
  }

  /** Proposes a metadata command through the metadata group's leader, wherever it is. */
  proposeMeta(cmd: MetaCommand): Promise<ApplyResult> {
    return this.route({ kind: "meta", group: META_GROUP, cmd }) as Promise<ApplyResult>;
  }

  private execute(op: Op): Promise<unknown> {
    switch (op.kind) {
      case "propose": return this.node.propose(op.group, op.cmd);
      case "meta": return this.node.proposeMeta(op.cmd);
      case "conf": return this.node.proposeConfChange(op.group, op.changes);
      case "join": return this.onJoin === null ? Promise.reject(new Error("this node does not handle joins")) : this.onJoin(op.req);
      case "read": return this.node.read(op.group, op.key, op.consistency);
      case "scan": return this.node.scanPage(op.group, op.limit, op.after);
      case "placement": return this.onPlacement === null ? Promise.reject(new Error("this node runs no placement driver")) : this.onPlacement(op.req);
      case "merge": return this.onMerge === null ? Promise.reject(new Error("this node runs no shard agent")) : this.onMerge(op.group, op.into);
      case "step": return this.onStep === null ? Promise.reject(new Error("this node does not run operator steps")) : this.onStep(op.group, op.epoch, op.step);
    }
  }

  /**
   * Sends the request to `to` and waits for its answer, at most the request timeout; when this node
   * hosts the shard and finds it cannot reach the shard's quorum meanwhile, the answer may never come
   * (the leader is likely gone with the rest): the request fails then, its outcome unknown unless it
   * was a read.
   */
  private forward(to: NodeId, op: Op): Promise<unknown> {
    const id = this.nextId++;
    return new Promise<Reply>((resolve) => {
      const settle = (reply: Reply) => {
        clearTimeout(timer);
        unwatch();
        this.pending.delete(id);
        resolve(reply);
      };
      const timer = setTimeout(() => {
        settle({ ok: false, error: { name: "RequestTimeoutError", message: `node ${to} did not answer within ${this.timeoutMs} ms` } });
      }, this.timeoutMs);
      const unwatch = this.node.watchQuorum(op.group, (reach) => {
        settle({ ok: false, error: replyError(isRead(op) ? new NoQuorumError(op.group, reach) : new QuorumLostError(op.group, reach)) });
      });
      this.pending.set(id, settle);
      if (!this.node.sendNodeMessage(to, { rpc: { id, op } } satisfies RpcRequest)) {
        settle({ ok: false, error: { name: "LeaderUnreachableError", message: "", leader: to } });
      }
    }).then((reply) => {
      if (reply.ok) return reply.value;
      throw revive(reply.error, op.group);
    });
  }

  private onMessage(from: NodeId, msg: unknown): void {
    const m = msg as Partial<RpcRequest & RpcReply & ReportMessage>;
    if (m.report !== undefined) {
      if (Array.isArray(m.report)) this.onReport?.(from, m.report);
      return;
    }
    if (m.rpcReply !== undefined) {
      // Undefined once settled already (timed out, or the quorum was lost).
      this.pending.get(m.rpcReply.id)?.(m.rpcReply.reply);
      return;
    }
    if (m.rpc === undefined) return;
    const { id, op } = m.rpc;
    // Only execute where we lead (reads: where a replica is held): forwarding again could loop
    // between nodes with stale views.
    const hosted = this.node.hosts(op.group);
    const run = hosted && (this.node.leaderOf(op.group) === this.node.id || op.kind === "read" || op.kind === "scan")
      ? this.execute(op)
      : Promise.reject(hosted ? new NotLeaderError(op.group, this.node.leaderOf(op.group)) : new NotHostedError(op.group));
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
  if (err.name === "ConfChangeRefusedError") return new ConfChangeRefusedError(err.message);
  if (err.name === "LeaderUnreachableError") return new LeaderUnreachableError(group, err.leader ?? 0);
  if (err.name === "RequestTimeoutError") return new RequestTimeoutError(err.message);
  if (err.name === "NoQuorumError") return new NoQuorumError(group, err.reach ?? "voters unknown");
  if (err.name === "QuorumLostError") return new QuorumLostError(group, err.reach ?? "voters unknown");
  const e = new Error(err.message);
  e.name = err.name;
  return e;
}
