/**
 * The multi-raft host: the only place where the Raft core, storage and transport meet. It runs many
 * groups (one per shard) in one loop; a turn is:
 *
 *   inputs (messages, proposals, reads, ticks) -> every group's Ready -> messages that may leave now ->
 *   snapshot installs (state store, durable) -> committed entries of all groups applied (staged for
 *   the state store), clients answered -> one WAL batch + one fdatasync for all groups -> messages
 *   that had to wait -> advance.
 *
 * Inputs arriving while a turn waits for its fsync are taken by the next turn, so the fsync cost is
 * shared by everything that arrived meanwhile (group commit). Raft state is only touched at the start
 * of a turn and after the fsync, never concurrently.
 *
 * Groups are created, dropped and split as the metadata places them (hosting.ts, shard-apply.ts); the
 * metadata group (META_GROUP, applied to a MetaState) is one of them.
 *
 * Over 600 lines, knowingly: the loop's phases share the groups' state and the turn's ordering
 * invariants. Issue 12 splits it along the data path (group lifecycle, quorum and liveness checks,
 * the turn itself) together with the injectable host, so that the seams are the host's.
 */
import { RECORDS_END, RememberedQueue } from "./idempotency.js";
import {
  type ConfState,
  type Message,
  type NodeId,
  type Ready,
  type ConfChangeSingle,
  ConfChangeTransition,
  EntryType,
  ProposalDroppedError,
  RaftNode,
  Role,
  decodeConfChange,
} from "../raft/index.js";
import type { GroupChanges, ShardState } from "../storage/state-store.js";
import type { GroupLog } from "../storage/wal.js";
import { assert } from "../util/assert.js";
import type { WalRecord } from "../storage/wal-record.js";
import type { Envelope, PeerAddress } from "../transport/transport.js";
import type { Clock, Timer } from "../util/clock.js";
import type { Random } from "../util/rng.js";
import { NO_MUTATIONS, type NodeMutations } from "./mutations.js";
import { type NodeHost, type NodeStateStore, type NodeTransport, type NodeWal, realHost } from "./host.js";
import { GroupStorage } from "./group-storage.js";
import {
  type Consistency, ConfChangeRefusedError, type Group, LeaderUnreachableError, NotHostedError, WrongShardError, type LeaderWaiter, META_GROUP, NODE_GROUP, NotLeaderError, OverloadedError, RequestTimeoutError, ShuttingDownError, InterruptedError,
  NoQuorumError, QuorumLostError, type ProposeInput, type TransferWaiter, type Waiter, planeOf, quorumReach, shardOf,
} from "./group.js";
import { quiescenceStep, wakes } from "./quiescence.js";
import { hostingChanges } from "./hosting.js";
import { type ShardReader, SPLIT_LOG_INDEX, SPLIT_LOG_TERM, applyShardEntries } from "./shard-apply.js";
import { hashOf, inRange, initialRange } from "../meta/ranges.js";
import { MetaWatch } from "./meta-watch.js";
import type { ShardPage } from "./scan.js";
import { type BeatTuple, WireError, isBeat, packBeat, packMessage, unpackBeat, unpackMessage } from "./wire.js";
import { type CommandResult, type ShardCommand, type StoredRecord, encodeProposal } from "./records.js";
import { decodeMetaProposal, encodeMetaProposal } from "./meta-proposals.js";
import { applyMetaTracked, metaFromRecords } from "../meta/records.js";
import { type ApplyResult, type MetaCommand, type MetaState, currentSettings } from "../meta/state.js";
import { PeerLiveness } from "./peer-liveness.js";
import type { Health } from "../placement/types.js";
import { type Logger } from "../util/logger.js";

export interface NodeConfig {
  id: NodeId;
  dataDir: string;
  listen: PeerAddress;
  /** Every other member, by id. */
  peers: Map<NodeId, PeerAddress>;
  /** Number of shards (Raft groups 1..shards) of the default collection. */
  shards: number;
  tickMs?: number;
  electionTicks?: number;
  heartbeatTicks?: number;
  /** Compact a group's log once this many applied entries sit before the last compaction point. */
  compactAfterEntries?: number;
  /** Proposals and reads not answered within this time fail with an unknown outcome. */
  requestTimeoutMs?: number;
  /** Bound on proposals and reads waiting for the next turn. */
  maxQueuedRequests?: number;
  /** Idle ticks after which a group led here quiesces (see quiescence.ts); 0 turns quiescence off. Default 2 election timeouts. */
  quiesceAfterTicks?: number;
  testFaults?: boolean;
  logger?: Logger;
  /**
   * Joining a running cluster: groups found in the WAL are recovered, and nothing is bootstrapped. The
   * metadata group starts empty and receives its configuration and state from its leader (snapshot, then
   * log); shard groups are not hosted until replicas are placed here.
   */
  join?: boolean;
  /** Deliberate bugs, for the node-world simulator only (see mutations.ts). */
  mutations?: NodeMutations;
}

type Input =
  | { kind: "message"; group: number; msg: Message }
  | ProposeInput
  | { kind: "read"; group: number; ctx: string }
  | { kind: "unreachable"; peer: NodeId }
  /** The transport to the peer broke: shards it leads stop trusting it (see leaderGone). */
  | { kind: "peerLost"; peer: NodeId }
  | { kind: "transfer"; group: number; to: NodeId }
  | { kind: "conf"; group: number; seq: number; changes: ConfChangeSingle[] }
  /** The shard's leader `from` quiesced the group in `term`. */
  | { kind: "quiesce"; group: number; term: number; from: NodeId };

function appendTo<K, V>(map: Map<K, V[]>, key: K, item: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [item]);
  else list.push(item);
}

type Answer = [Waiter<CommandResult | ApplyResult>, CommandResult | ApplyResult];

/** An applied entry this node proposed: its waiter leaves the group and is answered with the result. */
function takeWaiter(g: Group, self: NodeId, origin: [number, number], result: CommandResult | ApplyResult, answers: Answer[]): void {
  if (origin[0] !== self) return;
  const w = g.proposals.get(origin[1]);
  if (w === undefined) return;
  g.proposals.delete(origin[1]);
  answers.push([w, result]);
}

/** The metadata state from its records in the state store (on open, and after a snapshot landed). */
function loadMeta(store: NodeStateStore): MetaState {
  return metaFromRecords(store.scan(META_GROUP, Number.MAX_SAFE_INTEGER));
}

/** Whether proposals of this shard must wait: its leader here is handing over, or no leader is known. */
function mustWait(g: Group): boolean {
  return g.raft.lead() === 0 || g.raft.transferring();
}

export {
  type Consistency, ConfChangeRefusedError, LeaderUnreachableError, NotHostedError, WrongShardError, META_GROUP, NODE_GROUP, NotLeaderError, NoQuorumError,
  OverloadedError, QuorumLostError, RequestTimeoutError, ShuttingDownError, InterruptedError, planeOf, shardOf,
};

/** Whether anything waits on the group (parked proposals wait in `proposals` too). */
function hasWaiters(g: Group): boolean {
  return g.proposals.size > 0 || g.reads.size > 0 || g.leaderWaiters.length > 0 || g.quorumWatchers.size > 0;
}

const EMPTY_CONF: ConfState = { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

/** The log of a group that has nothing yet (a replica waiting for its leader's snapshot). */
function emptyLog(): GroupLog {
  return { hardState: { term: 0, vote: 0, commit: 0 }, snapshot: null, start: { index: 0, term: 0 }, entries: [] };
}

const MAX_TICKS_PER_TURN = 10;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class MultiRaftNode {
  readonly id: NodeId;
  private readonly cfg: Required<Omit<NodeConfig, "logger" | "testFaults" | "join" | "mutations">> & Pick<NodeConfig, "logger" | "testFaults" | "join" | "mutations">;
  private readonly wal: NodeWal;
  private readonly store: NodeStateStore;
  readonly transport: NodeTransport;
  /** Time, timers and randomness come from the host (real, or the simulator's seeded ones); the node's components share the clock. */
  readonly clock: Clock;
  /** Deliberate bugs for the node-world simulator (mutations.ts); none in production. */
  readonly mutations: NodeMutations;
  private readonly random: Random;
  private readonly groups = new Map<number, Group>();
  /** The metadata state machine, applied from META_GROUP's log (every node holds the whole map). */
  private meta: MetaState;
  private inputs: Input[] = [];
  private pendingTicks = 0;
  private tickTimer: Timer | null = null;
  private turnScheduled = false;
  private turnRunning: Promise<void> | null = null;
  private stopped = false;
  private nextSeq = 1;
  private queuedRequests = 0;
  private nodeFlushScheduled = false;
  private ticksSinceKeepalive = 0;
  /** The last leader each hosted shard had here, kept through elections (when Raft knows none). */
  private readonly lastLeaders = new Map<number, NodeId>();
  /** The peers' liveness as the frames this node receives show it. */
  private readonly peers: PeerLiveness;
  /** When the tick timer last fired: a longer gap than expected means the loop stalled (see noteStall). */
  private lastTickAtMs: number;
  /** The metadata changed: the shards hosted here are checked against it at the start of the next turn. */
  private hostingDue = true;
  /** Groups made by splits applied in the last turn (with their parents), whose log is written at the start of the next. */
  private splitsToLand: { child: number; parent: number }[] = [];
  /** Watchers of the metadata, waiters for its next change, and the routes it gives. */
  private readonly metaWatch: MetaWatch;
  private hostingPending = false;
  /** Called when a group applied a configuration change or a split (its leader records it in the metadata). */
  onShardChanged: ((group: number) => void) | null = null;
  /** Observers for metrics (set by whoever exports them). */
  onWalSync: ((seconds: number) => void) | null = null;
  /**
   * Told when a peer shows no sign of life (see peerLost): at once when the transport to it breaks, and
   * each tick while it stays silent. Set by the gateway, to stop waiting for answers from it.
   */
  onPeerLost: ((peer: NodeId, how: "disconnected" | "silent") => void) | null = null;
  /** Receives node-level messages (group 0); set by the gateway. */
  onNodeMessage: ((from: NodeId, msg: unknown) => void) | null = null;
  /** Set when a turn failed: the node stops rather than continue with state it cannot trust. */
  failure: Error | null = null;
  readonly counters = {
    turns: 0, walBatches: 0, proposals: 0, applied: 0, reads: 0, readIndexRounds: 0, leadershipsWon: 0, electionsStarted: 0,
    malformedMessages: 0, leaderTransfersStarted: 0, readsRetried: 0, groupTicks: 0, groupWakes: 0,
  };

  private constructor(cfg: MultiRaftNode["cfg"], host: NodeHost, wal: NodeWal, store: NodeStateStore, transport: NodeTransport) {
    this.id = cfg.id;
    this.clock = host.clock;
    this.random = host.random;
    this.mutations = cfg.mutations ?? NO_MUTATIONS;
    this.peers = new PeerLiveness(this.clock.nowMs());
    this.lastTickAtMs = this.clock.nowMs();
    this.meta = loadMeta(store);
    this.cfg = cfg;
    this.wal = wal;
    this.store = store;
    this.transport = transport;
    this.metaWatch = new MetaWatch(() => this.meta, cfg.shards, cfg.logger);
  }

  /** Recovers (or bootstraps) the node's groups from its data directory. Call start() next. */
  static async open(config: NodeConfig, host: NodeHost = realHost(config.logger ? { logger: config.logger } : {})): Promise<MultiRaftNode> {
    const cfg = {
      // 30 ms ticks: heartbeats and keepalives every 60 ms, election timeouts of 300-600 ms, so a shard
      // whose leader is cut off elects another in about half a second (bench/unavailability.ts).
      tickMs: 30, electionTicks: 10, heartbeatTicks: 2, compactAfterEntries: 10_000, requestTimeoutMs: 5000,
      maxQueuedRequests: 100_000, quiesceAfterTicks: 2 * (config.electionTicks ?? 10), ...config,
    };
    const { wal, groups: recovered } = await host.openWal(`${cfg.dataDir}/wal`, cfg.logger ?? host.logger);
    const store = host.openStateStore(`${cfg.dataDir}/state`);
    let node: MultiRaftNode | null = null;
    const transport = host.createTransport({
      nodeId: cfg.id,
      listen: cfg.listen,
      onReceive: (from, _plane, envs) => node?.receive(from, envs),
      onUnreachable: (peer) => node?.enqueue({ kind: "unreachable", peer }),
      onDisconnect: (peer) => node?.peerDisconnected(peer),
      random: () => host.random.float(),
      now: () => host.clock.nowMs(),
      ...(cfg.testFaults ? { testFaults: true } : {}),
      ...(cfg.logger ? { logger: cfg.logger } : {}),
    });
    node = new MultiRaftNode(cfg, host, wal, store, transport);
    // Groups the log holds are recovered as they were (the configuration comes from the state store).
    for (const [g, log] of recovered) node.addGroup(g, log, EMPTY_CONF);
    const bootstrap: WalRecord[] = [];
    if (cfg.join !== true && !recovered.has(META_GROUP)) {
      // A founding member's first start: every founder is a voter of every shard and of the metadata
      // group; the configuration is a snapshot at index 1, term 1 (as in bootstrapStorage). The
      // metadata group goes last, so a start torn midway is finished by the next one.
      const voters = [cfg.id, ...cfg.peers.keys()].sort((a, b) => a - b);
      const confState: ConfState = { voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
      for (const g of [...Array.from({ length: cfg.shards }, (_, i) => i + 1), META_GROUP]) {
        if (recovered.has(g)) continue;
        const log = { hardState: { term: 1, vote: 0, commit: 1 }, snapshot: { index: 1, term: 1, confState }, start: { index: 1, term: 1 }, entries: [] };
        bootstrap.push({ kind: "snapshot", group: g, index: 1, term: 1, confState });
        bootstrap.push({ kind: "hard-state", group: g, hardState: log.hardState });
        const shard = g === META_GROUP ? {} : { shard: { range: initialRange(g, cfg.shards), splits: [] } };
        if (store.applied(g) === 0) store.apply([{ group: g, appliedIndex: 1, confState, ...shard }]);
        node.addGroup(g, log, confState);
      }
    } else if (!recovered.has(META_GROUP)) {
      // Joining: the metadata group waits for its leader's snapshot; shards come once placed here.
      node.addGroup(META_GROUP, emptyLog(), EMPTY_CONF);
    }
    // Groups with state but no log: made by a split whose log a crash kept from being written (land
    // them now), or dropped from the log with their records left behind (see StateStore.dropGroup).
    const unlogged: number[] = [];
    for (const g of store.groups()) {
      if (node.groups.has(g)) continue;
      if (store.unlogged(g)) unlogged.push(g);
      else await store.dropGroup(g);
    }
    if (unlogged.length > 0) await node.landSplits(unlogged.map((child) => ({ child })));
    if (bootstrap.length > 0) {
      await store.flushed();
      await wal.append(bootstrap);
    }
    for (const [peer, addr] of cfg.peers) transport.setPeer(peer, addr);
    node.syncPeers();
    return node;
  }

  /** Hosts a group from its recovered (or empty) log; `confState` is used when nothing records one. */
  private addGroup(g: number, log: GroupLog, confState: ConfState): Group {
    assert(!this.groups.has(g), () => `group ${g} is hosted already`);
    const storage = new GroupStorage(g, log, confState, this.store);
    const raft = new RaftNode({
      id: this.id, storage, electionTicks: this.cfg.electionTicks, heartbeatTicks: this.cfg.heartbeatTicks,
      random: (n) => this.random.int(n), applied: this.store.applied(g),
      ...(this.cfg.logger ? { logger: this.cfg.logger } : {}),
    });
    const group: Group = {
      id: g, kind: g === META_GROUP ? "meta" : "shard", raft, storage, proposals: new Map(), reads: new Map(), readBatches: new Map(),
      quiescence: { quiesced: false, idleTicks: 0 }, parkedProposals: [], leaderWaiters: [], transferWaiters: [], quorumWatchers: new Set(), requests: 0,
      shard: this.loadShardState(g), remembered: null,
    };
    this.groups.set(g, group);
    return group;
  }

  /**
   * A shard's own state from the store; a shard of the collection as created that has none recorded
   * (a replica waiting for its first snapshot) assumes its initial range until the snapshot says more.
   */
  private loadShardState(g: number): ShardState {
    const stored = this.store.shardState(g);
    if (stored !== undefined) return stored;
    return { range: g <= this.cfg.shards ? initialRange(g, this.cfg.shards) : { start: 0, end: 0 }, splits: [] };
  }

  async start(): Promise<number> {
    const port = await this.transport.start();
    // Opening (WAL recovery) may have taken a while; peers get their grace from now on.
    this.lastTickAtMs = this.clock.nowMs();
    this.peers.deafUntil(this.lastTickAtMs);
    this.tickTimer = this.clock.setInterval(() => {
      const nowMs = this.clock.nowMs();
      this.noteStall(nowMs);
      this.lastTickAtMs = nowMs;
      if (this.pendingTicks < MAX_TICKS_PER_TURN) this.pendingTicks++;
      this.scheduleTurn();
    }, this.cfg.tickMs);
    return port;
  }

  /** Graceful stop: no new work, the turn in progress finishes (its fsync included), then close. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.clock.clear(this.tickTimer);
    await this.turnRunning;
    for (const g of this.groups.values()) {
      const stopping = new ShuttingDownError("node is shutting down");
      this.failWaiters(g, new InterruptedError(`node ${this.id} stopped before the write to shard ${g.id} was applied here; it may still be applied`), stopping);
      for (const w of g.transferWaiters) this.settle(w, stopping);
    }
    await this.transport.stop();
    await this.wal.close();
    await this.store.flushed();
    await this.store.close();
  }

  /**
   * The shard of a record id: from the shard map's ranges (splits included), or, before the map is
   * recorded, from the collection's initial ranges.
   */
  shardOf(key: string): number {
    return this.metaWatch.shardOf(key);
  }

  /** Resolves at the next change of the metadata applied here, or after `timeoutMs` (whichever first). */
  awaitMetaChange(timeoutMs: number): Promise<void> {
    this.checkAccepting();
    return this.metaWatch.next(timeoutMs);
  }

  /** A hosted shard's own state (range, recent splits). */
  shardState(group: number): ShardState {
    return this.group(group).shard;
  }

  /**
   * Writes the logs of groups that splits made (their state is in the store, marked unlogged) and hosts
   * them: the store first (so the log never names a group whose state a crash could lose), then the
   * log, then the mark is cleared. A child whose parent is led here campaigns at once (on open, after a
   * crash, the parent is unknown and no group leads yet).
   */
  private async landSplits(children: { child: number; parent?: number }[]): Promise<void> {
    await this.store.flushed();
    const records: WalRecord[] = [];
    const logs: [number, GroupLog, ConfState, number | undefined][] = [];
    for (const { child, parent } of children) {
      assert(!this.groups.has(child), () => `split child ${child} is hosted already`);
      assert(this.store.applied(child) === SPLIT_LOG_INDEX, () => `split child ${child} is not at its initial index`);
      const confState = this.store.confState(child)!;
      const hardState = { term: SPLIT_LOG_TERM, vote: 0, commit: SPLIT_LOG_INDEX };
      records.push({ kind: "snapshot", group: child, index: SPLIT_LOG_INDEX, term: SPLIT_LOG_TERM, confState }, { kind: "hard-state", group: child, hardState });
      logs.push([child, { hardState, snapshot: { index: SPLIT_LOG_INDEX, term: SPLIT_LOG_TERM, confState }, start: { index: SPLIT_LOG_INDEX, term: SPLIT_LOG_TERM }, entries: [] }, confState, parent]);
    }
    await this.wal.append(records);
    for (const [child, log, confState, parent] of logs) {
      const g = this.addGroup(child, log, confState);
      this.store.apply([{ group: child, appliedIndex: SPLIT_LOG_INDEX, unlogged: false }]);
      if (parent !== undefined && this.leaderOf(parent) === this.id && g.raft.isVoter(this.id)) g.raft.campaign();
      this.cfg.logger?.info(`node ${this.id}: hosting shard ${child}, split from shard ${parent ?? "?"}`);
    }
  }

  group(id: number): Group {
    const g = this.groups.get(id);
    if (g === undefined) throw new NotHostedError(id);
    return g;
  }

  /** Proposes a command to the shard's leader (this node must lead it). Resolves once applied here. */
  propose(group: number, cmd: ShardCommand): Promise<CommandResult> {
    return this.proposeAndAwait<CommandResult>(group, `proposal to shard ${group}`, (seq) => {
      this.counters.proposals++;
      this.group(group).requests++;
      return { kind: "propose", group, seq, data: encodeProposal({ origin: [this.id, seq], cmd }) };
    });
  }

  /**
   * The path every proposal takes (records, metadata, configuration changes): this node must lead the
   * group; the input goes to the next turn, and the promise settles when the entry is applied here
   * (its waiter is keyed by `seq`) or after the request timeout, with an unknown outcome.
   */
  private proposeAndAwait<T extends CommandResult | ApplyResult>(group: number, what: string, input: (seq: number) => Input): Promise<T> {
    const g = this.group(group);
    this.checkAccepting();
    const refused = this.noQuorumFor(g);
    if (refused !== null) return Promise.reject(refused);
    if (g.raft.role() !== Role.Leader) return Promise.reject(new NotLeaderError(group, g.raft.lead()));
    const seq = this.nextSeq++;
    return new Promise<T>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        g.proposals.delete(seq);
        reject(new RequestTimeoutError(`${what} not applied within ${this.cfg.requestTimeoutMs} ms; it may still take effect`));
      }, this.cfg.requestTimeoutMs);
      g.proposals.set(seq, { resolve: resolve as (v: CommandResult | ApplyResult) => void, reject, timer });
      this.enqueue(input(seq));
    });
  }

  /**
   * A record as this replica holds it, or WrongShardError when its id is outside the shard's range now,
   * or the shard is frozen for a merge: once its target absorbed it, the target may take newer writes of
   * the same ids, so a read here could be stale; the gateway waits for the merge and reads there.
   */
  private servedRead(g: Group, key: string): StoredRecord | undefined | WrongShardError {
    if (g.kind === "shard" && (!inRange(hashOf(key), g.shard.range) || g.shard.frozen !== undefined)) return new WrongShardError(g.id);
    return this.store.get(g.id, key) as StoredRecord | undefined;
  }

  /** Reads a record at the requested consistency. */
  read(group: number, key: string, consistency: Consistency): Promise<StoredRecord | undefined> {
    const g = this.group(group);
    this.checkAccepting();
    this.counters.reads++;
    g.requests++;
    if (consistency === "eventual") {
      const rec = this.servedRead(g, key);
      return rec instanceof Error ? Promise.reject(rec) : Promise.resolve(rec);
    }
    const refused = this.noQuorumFor(g);
    if (refused !== null) return Promise.reject(refused);
    const ctx = `${this.id}:${this.nextSeq++}`;
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        g.reads.delete(ctx);
        reject(new RequestTimeoutError(`read on shard ${group} not confirmed within ${this.cfg.requestTimeoutMs} ms`));
      }, this.cfg.requestTimeoutMs);
      g.reads.set(ctx, { resolve, reject, timer, key, index: null });
      this.enqueue({ kind: "read", group, ctx });
    });
  }

  /**
   * Hands the shard's leadership to `to` and resolves with Raft's explicit outcome (RAFT-7): "completed"
   * once `to` leads, "aborted" if the transfer failed or timed out, or this node did not lead.
   */
  transferLeadershipAndWait(group: number, to: NodeId): Promise<"completed" | "aborted"> {
    const g = this.group(group);
    this.checkAccepting();
    if (g.raft.lead() === to) return Promise.resolve("completed");
    return new Promise((resolve, reject) => {
      const w: TransferWaiter = {
        to, resolve, reject,
        timer: this.clock.setTimeout(() => {
          g.transferWaiters = g.transferWaiters.filter((x) => x !== w);
          resolve("aborted");
        }, this.cfg.requestTimeoutMs),
      };
      g.transferWaiters.push(w);
      this.enqueue({ kind: "transfer", group, to });
    });
  }

  /** Records of a shard in key order (local state: eventual consistency). */
  scan(group: number, limit: number, after?: string): [string, StoredRecord][] {
    return this.store.scan(group, limit, after, RECORDS_END) as [string, StoredRecord][];
  }

  /**
   * A page of a shard's records for a collection scan (scan.ts), linearizable on any replica: a ReadIndex
   * round first, so this replica has applied everything committed before the call; then the records and
   * the shard's range and freeze, taken together in one synchronous step, so at one applied index.
   */
  async scanPage(group: number, limit: number, after?: string): Promise<ShardPage> {
    try {
      // The round is a read of RECORDS_END, which no record id can be (the API refuses the character):
      // it settles only once the read index is applied here, with WrongShardError when the shard is
      // frozen or the key is outside its range, which says nothing about the page.
      await this.read(group, RECORDS_END, "linearizable");
    } catch (e) {
      if (!(e instanceof WrongShardError)) throw e;
    }
    const st = this.group(group).shard;
    return { shard: group, range: st.range, frozen: st.frozen !== undefined, children: st.splits.map((s) => s.child), records: this.scan(group, limit, after) };
  }

  /** Everything a merge source ships to its target: records and remembered idempotency outcomes, in key order. */
  shardContents(group: number, limit: number): [string, unknown][] {
    return this.store.scan(group, limit);
  }

  /** The shards' Raft status (the metadata group is in metaStatus). */
  status(): { id: NodeId; groups: (ReturnType<RaftNode["status"]> & { shard: number })[] } {
    const shards = [...this.groups.values()].filter((g) => g.kind === "shard").sort((a, b) => a.id - b.id);
    return { id: this.id, groups: shards.map((g) => ({ ...g.raft.status(), shard: g.id })) };
  }

  metaStatus(): ReturnType<RaftNode["status"]> {
    return this.group(META_GROUP).raft.status();
  }

  /** The metadata state as applied here (eventually consistent; read-only for callers). */
  metaState(): Readonly<MetaState> {
    return this.meta;
  }

  /**
   * Calls `listener` with the keys of the metadata records each applied batch changed (see
   * meta/records.ts; "*" after a snapshot replaced everything). Returns the unsubscribe function.
   */
  watchMeta(listener: (keys: string[]) => void): () => void {
    return this.metaWatch.watch(listener);
  }

  /** Proposes a metadata command (this node must lead the metadata group). Resolves once applied here. */
  proposeMeta(cmd: MetaCommand): Promise<ApplyResult> {
    return this.proposeAndAwait<ApplyResult>(META_GROUP, "metadata proposal",
      (seq) => ({ kind: "propose", group: META_GROUP, seq, data: encodeMetaProposal({ origin: [this.id, seq], cmd }) }));
  }

  /** Asks the shard to elect this node now (used by tests and operators). */
  campaign(group: number): void {
    this.group(group).raft.campaign();
    this.scheduleTurn();
  }

  private checkAccepting(): void {
    if (this.stopped) throw new ShuttingDownError("node is shutting down");
    if (this.failure !== null) throw this.failure;
    if (this.queuedRequests >= this.cfg.maxQueuedRequests) throw new OverloadedError("too many requests queued");
  }

  private settle<T>(w: Waiter<T>, result: T | Error): void {
    this.clock.clear(w.timer);
    if (result instanceof Error) w.reject(result);
    else w.resolve(result);
  }

  private receive(from: NodeId, envs: Envelope[]): void {
    this.peers.heard(from, this.clock.nowMs());
    for (const e of envs) {
      try {
        if (e.group !== NODE_GROUP) {
          if (this.groups.has(e.group)) this.enqueue({ kind: "message", group: e.group, msg: unpackMessage(from, this.id, e.msg) });
          continue;
        }
        const quiesce = (e.msg as { quiesce?: unknown }).quiesce;
        if (Array.isArray(quiesce)) {
          for (const t of quiesce) {
            if (!Array.isArray(t) || typeof t[0] !== "number" || typeof t[1] !== "number") throw new WireError("malformed quiesce notice");
            if (this.groups.has(t[0])) this.enqueue({ kind: "quiesce", group: t[0], term: t[1], from });
          }
          continue;
        }
        const beats = (e.msg as { beats?: unknown }).beats;
        if (Array.isArray(beats)) {
          for (const t of beats) {
            const { group, msg } = unpackBeat(from, this.id, t);
            if (this.groups.has(group)) this.enqueue({ kind: "message", group, msg });
          }
        } else {
          this.onNodeMessage?.(from, e.msg);
        }
      } catch (err) {
        if (!(err instanceof WireError)) throw err;
        this.counters.malformedMessages++;
        this.cfg.logger?.warn(`node ${this.id}: dropped a malformed message from node ${from}: ${err.message}`);
      }
    }
  }

  /** Sends a node-level message to a peer on the data plane (sent with the next flush). */
  sendNodeMessage(to: NodeId, msg: unknown): boolean {
    const ok = this.transport.send(to, "data", { group: NODE_GROUP, msg });
    // Everything sent in this pass of the event loop (e.g. the forwards of many HTTP requests parsed
    // together, or the answers of one applied batch) leaves in one frame per peer.
    if (!this.nodeFlushScheduled) {
      this.nodeFlushScheduled = true;
      this.clock.defer(() => {
        this.nodeFlushScheduled = false;
        this.transport.flush();
      });
    }
    return ok;
  }

  /**
   * The shard's last leader known here, also while an election is under way (0 if none yet): a gateway
   * with no leader to go to judges from it whether one is coming (see Gateway.route).
   */
  lastLeaderOf(group: number): NodeId {
    return this.groups.has(group) ? this.lastLeaders.get(group) ?? 0 : 0;
  }

  /** The shard's leader as this node knows it (0 when unknown). */
  leaderOf(group: number): NodeId {
    return this.groups.get(group)?.raft.lead() ?? 0;
  }

  /**
   * Resolves with the shard's leader as soon as this node knows one other than `refused` (a node that
   * has just answered that it does not lead), or `refused` itself elected in a later term (a restarted
   * leader often wins again); rejects with NotLeaderError after `timeoutMs`. Lets a gateway ride out an
   * election or a leadership hand-over instead of failing the request; but no election can succeed
   * without a quorum, so it rejects with NoQuorumError as soon as none is reachable from here.
   */
  awaitLeader(group: number, refused: NodeId, timeoutMs: number): Promise<NodeId> {
    const g = this.group(group);
    this.checkAccepting();
    const noQuorum = this.noQuorumFor(g);
    if (noQuorum !== null) return Promise.reject(noQuorum);
    const lead = g.raft.lead();
    if (lead !== 0 && lead !== refused) return Promise.resolve(lead);
    return new Promise((resolve, reject) => {
      const w: LeaderWaiter = {
        resolve, reject, refused, refusedTerm: g.raft.term(),
        timer: this.clock.setTimeout(() => {
          g.leaderWaiters = g.leaderWaiters.filter((x) => x !== w);
          reject(new NotLeaderError(group, 0));
        }, timeoutMs),
      };
      g.leaderWaiters.push(w);
    });
  }

  /**
   * Proposes a membership change of a group (this node must lead it): one change is simple, several go
   * through a joint configuration left automatically. Resolves once applied here; Raft takes one change
   * at a time, so a change proposed while another is pending is refused (it times out).
   */
  proposeConfChange(group: number, changes: ConfChangeSingle[]): Promise<ApplyResult> {
    return this.proposeAndAwait<ApplyResult>(group, `configuration change of group ${group}`, (seq) => ({ kind: "conf", group, seq, changes }));
  }

  private stepConfChange(g: Group, seq: number, changes: ConfChangeSingle[]): void {
    const cc = { transition: ConfChangeTransition.Auto, changes, context: `${this.id}:${seq}` };
    // Raft would turn a refused change into an empty entry and its proposer would wait for nothing.
    const refusal = g.raft.role() === Role.Leader ? g.raft.confChangeRefusal(cc) : null;
    if (refusal !== null) {
      const w = g.proposals.get(seq);
      g.proposals.delete(seq);
      if (w !== undefined) this.settle(w, new ConfChangeRefusedError(`group ${g.id}: ${refusal}`));
      return;
    }
    try {
      g.raft.proposeConfChange(cc);
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
      const w = g.proposals.get(seq);
      if (w === undefined) return;
      g.proposals.delete(seq);
      this.settle(w, new NotLeaderError(g.id, g.raft.lead()));
    }
  }

  /** Applies a committed configuration change and answers its proposer if that is this node. */
  private applyConfChangeEntry(g: Group, data: Uint8Array, answers: Answer[]): ConfState {
    const cc = decodeConfChange(data);
    const cs = g.raft.applyConfChange(cc);
    const [node, seq] = (cc.context ?? "").split(":").map(Number);
    if (node !== undefined && seq !== undefined) takeWaiter(g, this.id, [node, seq], { ok: true }, answers);
    this.onShardChanged?.(g.id);
    return cs;
  }

  /**
   * Hosts the shards the metadata places here and drops those it no longer does (see hosting.ts).
   * Runs at the start of a turn, when no Ready is outstanding. A drop is made durable in the log
   * before the group's state is deleted; requests waiting on it are told it has no leader here.
   */
  private async reconcileHosting(): Promise<void> {
    const caughtUp = this.metaCaughtUp();
    this.hostingDue = false;
    // Until then, a pass each tick decides again (not each turn: it walks every shard).
    this.hostingPending = !caughtUp;
    const hosted = new Set([...this.groups.values()].filter((g) => g.kind === "shard").map((g) => g.id));
    const { create, drop } = hostingChanges(this.meta, this.id, hosted, caughtUp, (g) => this.store.applied(g));
    for (const id of create) {
      // Leftovers of an earlier replica here are gone: dropGroup ran, or open() cleaned them up.
      assert(this.store.applied(id) === 0, () => `shard ${id}: state left from an earlier replica`);
      this.addGroup(id, emptyLog(), EMPTY_CONF);
      this.cfg.logger?.info(`node ${this.id}: hosting a replica of shard ${id}`);
    }
    if (drop.length === 0) return;
    await this.wal.append(drop.map((group) => ({ kind: "drop", group }) satisfies WalRecord));
    for (const id of drop) {
      const g = this.groups.get(id)!;
      this.groups.delete(id);
      this.lastLeaders.delete(id);
      const gone = new NotHostedError(id);
      this.failWaiters(g, new InterruptedError(`the replica of shard ${id} on node ${this.id} was dropped before the write was applied here; it may still be applied`), gone);
      for (const w of g.transferWaiters) this.settle(w, "aborted");
      await this.store.dropGroup(id);
      this.cfg.logger?.info(`node ${this.id}: dropped its replica of shard ${id}`);
    }
  }

  /**
   * The shards this node leads, with what their leader knows: the configuration as of the applied
   * index, the replicas holding the commit index, and the requests made here so far.
   */
  ledShards(): { shard: number; term: number; applied: number; conf: ConfState; caughtUp: NodeId[]; requests: number; snapshotting: boolean }[] {
    const out = [];
    for (const g of this.groups.values()) {
      const r = g.raft;
      if (g.kind !== "shard" || r.role() !== Role.Leader) continue;
      const progress = [...r.progress()];
      const caughtUp = progress.filter(([, pr]) => pr.match >= r.committed()).map(([id]) => id);
      const snapshotting = progress.some(([, pr]) => pr.snapshotting);
      out.push({ shard: g.id, term: r.term(), applied: this.store.applied(g.id), conf: r.confState(), caughtUp, requests: g.requests, snapshotting });
    }
    return out;
  }

  /** Whether this node hosts the group (a joining node hosts no shard until a replica is placed here). */
  hosts(group: number): boolean {
    return this.groups.has(group);
  }

  /** The metadata group's applied index has reached the commit index its leader told it: caught up. */
  metaCaughtUp(): boolean {
    const st = this.group(META_GROUP).raft.status();
    return st.lead !== 0 && st.applied >= st.commit && st.commit > 0;
  }

  /** Every other node this one knows: its static peers and the nodes the metadata records. */
  private knownPeers(): NodeId[] {
    const ids = new Set(this.cfg.peers.keys());
    for (const n of this.meta.nodes.values()) if (n.worker !== "removed") ids.add(n.id);
    ids.delete(this.id);
    return [...ids];
  }

  /**
   * How this node sees another's health (phi-accrual over the frames it receives from it; MEM-6).
   * Keepalives reach every known peer each heartbeat interval, even when every group is quiescent.
   */
  peerHealth(id: NodeId, deadAfterMs = currentSettings(this.meta).placement.nodeDeadAfterMs): Health {
    if (id === this.id) return this.failure === null ? "healthy" : "unhealthy";
    return this.peers.health(id, this.clock.nowMs(), deadAfterMs);
  }

  /** Peer addresses follow the metadata: every registered node other than this one. */
  private syncPeers(): void {
    const nowMs = this.clock.nowMs();
    for (const n of this.meta.nodes.values()) {
      if (n.id === this.id || n.worker === "removed") continue;
      this.transport.setPeer(n.id, n.peer);
      this.peers.known(n.id, nowMs);
    }
  }

  /** LMDB commits of the state store so far. */
  stateCommits(): number {
    return this.store.commits;
  }

  get shards(): number {
    return this.cfg.shards;
  }

  private enqueue(input: Input): void {
    if (this.stopped) return;
    if (input.kind === "propose" || input.kind === "read") this.queuedRequests++;
    this.inputs.push(input);
    this.scheduleTurn();
  }

  private scheduleTurn(): void {
    if (this.turnScheduled || this.stopped) return;
    this.turnScheduled = true;
    this.clock.defer(() => {
      this.turnScheduled = false;
      if (this.turnRunning !== null || this.stopped || this.failure !== null) return;
      this.turnRunning = this.turn()
        .catch((e: unknown) => {
          this.failure = e instanceof Error ? e : new Error(String(e));
          this.cfg.logger?.error(`node ${this.id}: turn failed, stopping: ${this.failure.stack ?? this.failure.message}`);
        })
        .finally(() => {
          this.turnRunning = null;
          if (this.inputs.length > 0 || this.pendingTicks > 0 || this.anyReady()) this.scheduleTurn();
        });
    });
  }

  private anyReady(): boolean {
    for (const g of this.groups.values()) if (g.raft.hasReady()) return true;
    return false;
  }

  private async turn(): Promise<void> {
    this.counters.turns++;
    this.store.commitIfDue(this.clock.nowMs());
    if (this.splitsToLand.length > 0) {
      const children = this.splitsToLand;
      this.splitsToLand = [];
      await this.landSplits(children);
    }
    if (this.hostingDue) await this.reconcileHosting();
    this.takeInputs();
    const readies: [Group, Ready][] = [];
    for (const g of this.groups.values()) if (g.raft.hasReady()) readies.push([g, g.raft.ready()]);
    if (readies.length === 0) return;
    // Messages that may leave before anything is durable (a leader's appends, heartbeats, votes requests).
    const beats = new Map<NodeId, BeatTuple[]>();
    for (const [g, rd] of readies) this.send(g.id, rd.messages, beats);
    this.sendBeats(beats);
    this.transport.flush();
    // Persist: snapshots first (the state store must hold one before the log points at it), then one WAL batch.
    const records: WalRecord[] = [];
    for (const [g, rd] of readies) {
      if (rd.snapshot !== null) {
        await this.store.installSnapshot(g.id, rd.snapshot.meta.index, rd.snapshot.data, rd.snapshot.meta.confState);
        if (g.kind === "shard") {
          g.shard = this.loadShardState(g.id);
          g.remembered = null;
        }
        if (g.kind === "meta") {
          this.meta = loadMeta(this.store);
          this.syncPeers();
          this.hostingDue = true;
          this.metaWatch.changed(["*"]);
        }
        const m = rd.snapshot.meta;
        records.push({ kind: "snapshot", group: g.id, index: m.index, term: m.term, confState: m.confState });
      }
      if (rd.entries.length > 0) records.push({ kind: "entries", group: g.id, entries: rd.entries });
      if (rd.hardState !== null) records.push({ kind: "hard-state", group: g.id, hardState: rd.hardState });
    }
    // Committed entries are applied (and their clients answered) before this turn's fsync, not after:
    // they are durable on a quorum already, and a leader counts its own entries only once persisted,
    // so nothing answered here depends on the write below. It takes one fsync off every write's path.
    // The state store stays behind the durable log: it commits to LMDB only at the start of a later
    // turn, when everything this turn writes is on disk.
    this.applyCommitted(readies);
    if (records.length > 0) {
      // Raft needs durability only for entries, term, vote and snapshots (Ready.mustSync); a batch that
      // only moves commit indexes is written without waiting for the disk.
      const sync = readies.some(([, rd]) => rd.mustSync || rd.snapshot !== null);
      const started = this.clock.nowMs();
      await this.wal.append(records, sync);
      if (sync) {
        this.onWalSync?.((this.clock.nowMs() - started) / 1000);
        this.counters.walBatches++;
      }
    }
    for (const [, rd] of readies) {
      if (rd.softState?.role === Role.Leader) this.counters.leadershipsWon++;
      if (rd.softState?.role === Role.Candidate) this.counters.electionsStarted++;
    }
    for (const [g, rd] of readies) if (rd.softState !== null && rd.softState.lead !== 0) this.lastLeaders.set(g.id, rd.softState.lead);
    this.retryReadsOnLeaderChange(readies);
    this.answerLeaderWaiters(readies);
    for (const [g, rd] of readies) for (const t of rd.leaderTransfers) this.settleTransfers(g, t.transferee, t.outcome);
    for (const [g, rd] of readies) {
      if (rd.snapshot !== null) g.storage.installSnapshot(rd.snapshot.meta);
      if (rd.entries.length > 0) g.storage.append(rd.entries);
      if (rd.hardState !== null) g.storage.setHardState(rd.hardState);
      this.send(g.id, rd.messagesAfterPersist, beats);
    }
    this.sendBeats(beats);
    this.transport.flush();
    for (const [g] of readies) g.raft.advance();
    await this.maybeCompact();
  }

  private takeInputs(): void {
    const inputs = this.inputs;
    this.inputs = [];
    const readsByGroup = new Map<Group, string[]>();
    const proposalsByGroup = new Map<Group, ProposeInput[]>();
    for (const input of inputs) {
      if (input.kind === "propose" || input.kind === "read") this.queuedRequests--;
      const g = input.kind === "unreachable" || input.kind === "peerLost" ? undefined : this.groups.get(input.group);
      // Traffic wakes a quiescent group: requests always, messages unless they change nothing.
      if (g?.quiescence.quiesced && input.kind !== "quiesce" && (input.kind !== "message" || wakes(g.raft.role(), input.msg))) {
        this.wake(g, false);
      }
      switch (input.kind) {
        case "message":
          g?.raft.step(input.msg);
          break;
        case "transfer":
          if (g !== undefined && g.raft.role() === Role.Leader) {
            g.raft.transferLeader(input.to);
            this.counters.leaderTransfersStarted++;
          }
          else if (g !== undefined) this.settleTransfers(g, input.to, "aborted");
          break;
        case "conf":
          if (g !== undefined) this.stepConfChange(g, input.seq, input.changes);
          break;
        case "quiesce": {
          // Only from the leader we follow, in its term: anything else is stale.
          if (g !== undefined && g.raft.role() === Role.Follower && g.raft.term() === input.term && g.raft.lead() === input.from) {
            g.quiescence.quiesced = true;
            g.quiescence.idleTicks = 0;
          }
          break;
        }
        case "propose":
          if (g !== undefined) appendTo(proposalsByGroup, g, input);
          break;
        case "read":
          if (g !== undefined) appendTo(readsByGroup, g, input.ctx);
          break;
        case "unreachable":
          for (const grp of this.groups.values()) grp.raft.reportUnreachable(input.peer);
          break;
        case "peerLost":
          this.leaderGone(input.peer);
          break;
      }
    }
    // Proposals that waited out a leadership transfer go first, in their order.
    for (const g of this.groups.values()) {
      if (g.parkedProposals.length === 0 || mustWait(g)) continue;
      proposalsByGroup.set(g, [...g.parkedProposals, ...(proposalsByGroup.get(g) ?? [])]);
      g.parkedProposals = [];
    }
    // One proposal step per shard per turn: the leader appends them as one batch and replicates them in
    // one Append per follower (stepped one by one, each became its own Append and its own response).
    for (const [g, batch] of proposalsByGroup) {
      // A leader hands over, or the shard is between leaders: Raft would drop these. They were never
      // proposed, so they wait (until a leader is known, or their timeout) and go to whoever leads then
      // (a follower forwards them), instead of failing with 503.
      if (mustWait(g)) {
        g.parkedProposals.push(...batch);
        continue;
      }
      try {
        g.raft.propose(...batch.map((p) => p.data));
      } catch (e) {
        if (!(e instanceof ProposalDroppedError)) throw e;
        for (const p of batch) {
          const w = g.proposals.get(p.seq);
          if (w === undefined) continue;
          g.proposals.delete(p.seq);
          this.settle(w, new NotLeaderError(g.id, g.raft.lead()));
        }
      }
    }
    // One ReadIndex round per shard per turn answers every read that arrived during the turn.
    for (const [g, ctxs] of readsByGroup) {
      const batch = `${this.id}:b${this.counters.turns}:${g.id}`;
      g.readBatches.set(batch, ctxs);
      this.counters.readIndexRounds++;
      g.raft.readIndex(encoder.encode(batch));
    }
    const ticks = this.pendingTicks;
    this.pendingTicks = 0;
    if (ticks > 0 && this.hostingPending) this.hostingDue = true;
    // Quiescence is decided before ticking: a group that quiesces now emits no heartbeat after its
    // notice (a heartbeat behind the notice would wake the follower again).
    if (ticks > 0) this.tickQuiescence(ticks);
    for (let i = 0; i < ticks; i++) {
      for (const g of this.groups.values()) {
        if (g.quiescence.quiesced) continue;
        g.raft.tick();
        this.counters.groupTicks++;
      }
    }
    if (ticks > 0) this.failWithoutQuorum();
    if (ticks > 0) this.reportLostPeers();
  }

  /**
   * The transport to `peer` broke and nothing was heard from it since: the groups that follow it as
   * their leader end its lease now (Raft.resumeTicking), so they grant pre-votes and campaign at their
   * randomized timeout instead of first sitting out a whole election timeout of silence. Safe: only the
   * timing of an election changes (reads never rely on leases here: ReadIndex), and a leader that is in
   * fact alive keeps its followers, whose next heartbeat from it resets their timers as usual.
   */
  private leaderGone(peer: NodeId): void {
    if (!this.peerLost(peer)) return;
    for (const g of this.groups.values()) {
      if (g.raft.role() === Role.Leader || g.raft.lead() !== peer) continue;
      if (g.quiescence.quiesced) this.wake(g, true);
      else g.raft.resumeTicking(true);
    }
  }

  /** A connection to or from `peer` closed, or one could not be made (transport callback). */
  private peerDisconnected(peer: NodeId): void {
    if (this.stopped) return;
    this.peers.disconnected(peer, this.clock.nowMs());
    this.enqueue({ kind: "peerLost", peer });
    this.onPeerLost?.(peer, "disconnected");
  }

  /**
   * Whether `peer` shows no sign of life here: the transport to it broke after its last frame, or it
   * was silent for an election timeout (every node sends every peer a keepalive each heartbeat interval).
   */
  peerLost(peer: NodeId): boolean {
    const nowMs = this.clock.nowMs();
    this.noteStall(nowMs);
    return this.peers.lost(peer, nowMs, this.electionTimeoutMs);
  }

  /** Once a tick: tells the gateway of every peer lost (a request forwarded to one waits for nothing). */
  private reportLostPeers(): void {
    if (this.onPeerLost === null) return;
    for (const peer of this.knownPeers()) if (this.peerLost(peer)) this.onPeerLost(peer, "silent");
  }

  /**
   * Once a tick: requests of a group that cannot reach a quorum from here fail now instead of at their
   * timeout (nothing can commit, no leader can be elected). Proposals Raft holds may still commit if
   * the quorum comes back, so their outcome is unknown; everything else was never proposed, or changes
   * nothing (reads).
   */
  private failWithoutQuorum(): void {
    for (const g of this.groups.values()) {
      if (!hasWaiters(g)) continue;
      const refused = this.noQuorumFor(g);
      if (refused === null) continue;
      this.failWaiters(g, new QuorumLostError(g.id, refused.reach), refused);
      for (const watcher of g.quorumWatchers) watcher(refused.reach);
      g.quorumWatchers.clear();
    }
  }

  /**
   * Fails every request of this node waiting on the group but leadership transfers: proposals handed to
   * Raft with `proposed`, the rest (parked proposals, reads, leader waiters) with `notProposed`.
   */
  private failWaiters(g: Group, proposed: Error, notProposed: Error): void {
    for (const p of g.parkedProposals) {
      const w = g.proposals.get(p.seq);
      g.proposals.delete(p.seq);
      if (w !== undefined) this.settle(w, notProposed);
    }
    g.parkedProposals = [];
    for (const w of g.proposals.values()) this.settle(w, proposed);
    g.proposals.clear();
    for (const r of g.reads.values()) this.settle(r, notProposed);
    g.reads.clear();
    for (const w of g.leaderWaiters) this.settle(w, notProposed);
    g.leaderWaiters = [];
  }

  /** The shortest election timeout (a follower's randomized one is up to twice this). */
  get electionTimeoutMs(): number {
    return this.cfg.tickMs * this.cfg.electionTicks;
  }

  /**
   * A loop that stalled (a GC pause, a long synchronous task; in tests, every node of the process at
   * once) read no frame meanwhile, and its peers' may be queued: they are judged on what arrives after
   * it. Half an election timeout of lag leaves a heartbeat interval of margin before a live peer could
   * look silent.
   */
  private noteStall(nowMs: number): void {
    if (nowMs - this.lastTickAtMs > this.electionTimeoutMs / 2) this.peers.deafUntil(nowMs);
  }

  /**
   * NoQuorumError if the group's voters reachable from here (this node, and every peer heard within an
   * election timeout) make no quorum; null if they do.
   */
  private noQuorumFor(g: Group): NoQuorumError | null {
    const nowMs = this.clock.nowMs();
    this.noteStall(nowMs);
    const withinMs = this.electionTimeoutMs;
    const reach = quorumReach(g.raft.voters(), (id) => id === this.id || this.peers.live(id, nowMs, withinMs));
    if (reach.ok) return null;
    assert(reach.voters > 0, () => `group ${g.id}: no voters, yet no quorum`);
    return new NoQuorumError(g.id, `${reach.reachable} of ${reach.voters} voters reachable from node ${this.id}`);
  }

  /** NoQuorumError if this node hosts the group and cannot reach its quorum: a gateway's reason not to forward. */
  noQuorum(group: number): NoQuorumError | null {
    const g = this.groups.get(group);
    return g === undefined ? null : this.noQuorumFor(g);
  }

  /**
   * Calls `onLost` once, from a later tick, if the group hosted here cannot reach its quorum then (with
   * how many voters it reaches); never if the group is not hosted here. Returns the function that stops
   * watching: call it once the watched request is answered.
   */
  watchQuorum(group: number, onLost: (reach: string) => void): () => void {
    const g = this.groups.get(group);
    if (g === undefined) return () => undefined;
    g.quorumWatchers.add(onLost);
    return () => g.quorumWatchers.delete(onLost);
  }

  /**
   * After ticks: groups led here that stayed idle long enough quiesce (their followers are told);
   * quiescent followers whose leader's node fell silent wake up; every peer gets a keepalive each
   * heartbeat interval, so that silence means a dead or cut-off node, not idle shards.
   */
  private tickQuiescence(ticks: number): void {
    const nowMs = this.clock.nowMs();
    const notices = new Map<NodeId, [number, number][]>();
    for (const g of this.groups.values()) {
      const r = g.raft;
      const leaderSilent = r.lead() === 0 || !this.peers.live(r.lead(), nowMs, this.electionTimeoutMs);
      const step = quiescenceStep(g.quiescence, r, g.proposals.size + g.reads.size, ticks, this.cfg.quiesceAfterTicks, leaderSilent);
      if (step === "wake-leader-lost") {
        this.wake(g, true);
        continue;
      }
      if (step === "quiesce") {
        g.quiescence.quiesced = true;
        for (const peer of r.memberIds()) if (peer !== this.id) appendTo(notices, peer, [g.id, r.term()]);
      }
    }
    this.ticksSinceKeepalive += ticks;
    const keepalive = this.ticksSinceKeepalive >= this.cfg.heartbeatTicks;
    if (keepalive) this.ticksSinceKeepalive = 0;
    if (!keepalive && notices.size === 0) return;
    for (const peer of this.knownPeers()) {
      const list = notices.get(peer);
      if (list !== undefined) this.transport.send(peer, "control", { group: NODE_GROUP, msg: { quiesce: list } });
      else if (keepalive) this.transport.send(peer, "control", { group: NODE_GROUP, msg: { beats: [] } });
    }
    this.transport.flush();
  }

  /** Ticks a quiescent group again (see Raft.resumeTicking for `leaderLost`). */
  private wake(g: Group, leaderLost: boolean): void {
    g.quiescence.quiesced = false;
    g.quiescence.idleTicks = 0;
    g.raft.resumeTicking(leaderLost);
    this.counters.groupWakes++;
  }

  /** Whether the metadata group is quiescent on this node (idle like any shard). */
  metaQuiesced(): boolean {
    return this.group(META_GROUP).quiescence.quiesced;
  }

  /** Shards whose group is quiescent on this node. */
  quiescedShards(): number {
    let n = 0;
    for (const g of this.groups.values()) if (g.kind === "shard" && g.quiescence.quiesced) n++;
    return n;
  }

  /**
   * A ReadIndex request in flight when a shard's leader changes is lost (the old leader drops it, or
   * never answers); reads are idempotent, so ask again, of the new leader, in the next turn, instead of
   * letting the client wait for its timeout.
   */
  private retryReadsOnLeaderChange(readies: [Group, Ready][]): void {
    for (const [g, rd] of readies) {
      if (rd.softState === null || g.reads.size === 0) continue;
      for (const [ctx, r] of g.reads) {
        if (r.index !== null) continue;
        this.counters.readsRetried++;
        this.enqueue({ kind: "read", group: g.id, ctx });
      }
    }
  }

  /** Answers the callers waiting for a transfer of `g` to `to`. */
  private settleTransfers(g: Group, to: NodeId, outcome: "completed" | "aborted"): void {
    if (g.transferWaiters.length === 0) return;
    const [done, rest] = [g.transferWaiters.filter((w) => w.to === to), g.transferWaiters.filter((w) => w.to !== to)];
    g.transferWaiters = rest;
    for (const w of done) this.settle(w, outcome);
  }

  private answerLeaderWaiters(readies: [Group, Ready][]): void {
    for (const [g] of readies) {
      // From the group's state, not only its soft-state changes: the same leader in a new term changes
      // neither its lead nor its role.
      const lead = g.raft.lead();
      const term = g.raft.term();
      if (g.leaderWaiters.length === 0 || lead === 0) continue;
      const found = (w: LeaderWaiter) => w.refused !== lead || term > w.refusedTerm;
      const waiting = g.leaderWaiters;
      g.leaderWaiters = waiting.filter((w) => !found(w));
      for (const w of waiting) if (found(w)) this.settle(w, lead);
    }
  }

  /** Sends Raft messages; heartbeats are collected per peer into `beats` (see sendBeats). */
  private send(group: number, msgs: Message[], beats: Map<NodeId, BeatTuple[]>): void {
    for (const m of msgs) {
      if (isBeat(m)) {
        appendTo(beats, m.to, packBeat(group, m));
      } else {
        this.transport.send(m.to, planeOf(m.type), { group, msg: packMessage(m) });
      }
    }
  }

  /** One message per peer carries the heartbeats of every group. */
  private sendBeats(beats: Map<NodeId, BeatTuple[]>): void {
    for (const [to, list] of beats) this.transport.send(to, "control", { group: NODE_GROUP, msg: { beats: list } });
    beats.clear();
  }

  /** Applies every group's committed entries in one LMDB transaction, then answers clients. */
  private applyCommitted(readies: [Group, Ready][]): void {
    const changes: GroupChanges[] = [];
    const answers: Answer[] = [];
    let sizeBytes = 0;
    for (const [g, rd] of readies) {
      if (rd.committedEntries.length === 0) continue;
      if (g.kind === "meta") {
        changes.push(this.applyMetaEntries(g, rd, answers));
        continue;
      }
      const reader: ShardReader = {
        get: (key) => this.store.get(g.id, key),
        all: () => this.store.scan(g.id, Number.MAX_SAFE_INTEGER),
        remembered: () => (g.remembered ??= RememberedQueue.from(this.store.scan(g.id, Number.MAX_SAFE_INTEGER, RECORDS_END))),
      };
      const applied = applyShardEntries(g.id, rd.committedEntries, g.shard, reader,
        (data) => this.applyConfChangeEntry(g, data, answers), () => g.raft.confState());
      for (const [origin, result] of applied.results) takeWaiter(g, this.id, origin, result, answers);
      const changed = applied.shard !== g.shard;
      g.shard = applied.shard;
      this.splitsToLand.push(...applied.children.map((child) => ({ child, parent: g.id })));
      if (changed) this.onShardChanged?.(g.id);
      this.counters.applied += applied.commands;
      sizeBytes += applied.sizeBytes;
      changes.push(...applied.changes);
    }
    this.store.apply(changes, sizeBytes);
    for (const [w, result] of answers) this.settle(w, result);
    // Reads: record their read index, and serve those whose index is applied.
    for (const [g, rd] of readies) {
      for (const rs of rd.readStates) {
        const batch = decoder.decode(rs.context);
        for (const ctx of g.readBatches.get(batch) ?? []) {
          const r = g.reads.get(ctx);
          if (r !== undefined) r.index = rs.index;
        }
        g.readBatches.delete(batch);
      }
      if (g.reads.size === 0) {
        g.readBatches.clear(); // rounds whose reads all timed out (e.g. lost with a leader change)
        continue;
      }
      const applied = this.store.applied(g.id);
      for (const [ctx, r] of g.reads) {
        if (r.index !== null && r.index <= applied) {
          g.reads.delete(ctx);
          this.settle(r, this.servedRead(g, r.key));
        }
      }
    }
  }

  /** Applies committed metadata entries to the MetaState; returns the records they changed. */
  private applyMetaEntries(g: Group, rd: Ready, answers: Answer[]): GroupChanges {
    const puts = new Map<string, unknown>();
    const deletes = new Set<string>();
    let confState: ConfState | undefined;
    for (const e of rd.committedEntries) {
      if (e.type === EntryType.ConfChange) {
        confState = this.applyConfChangeEntry(g, e.data, answers);
        continue;
      }
      if (e.data.byteLength === 0) continue;
      const p = decodeMetaProposal(e.data);
      const { result, changes } = applyMetaTracked(this.meta, p.cmd);
      for (const [key, value] of changes.puts) {
        // A copy: later commands mutate the live state, and the store serializes when it commits.
        puts.set(key, structuredClone(value));
        deletes.delete(key);
      }
      for (const key of changes.deletes) {
        deletes.add(key);
        puts.delete(key);
      }
      takeWaiter(g, this.id, p.origin, result, answers);
    }
    if (puts.size > 0 || deletes.size > 0) {
      this.syncPeers();
      this.hostingDue = true;
      this.metaWatch.changed([...puts.keys(), ...deletes]);
    }
    return {
      group: g.id, appliedIndex: rd.committedEntries[rd.committedEntries.length - 1]!.index, puts: [...puts], deletes: [...deletes],
      ...(confState ? { confState } : {}),
    };
  }

  /**
   * Compacts logs that grew past the threshold: once the state store is durable up to the applied
   * index, the log before it is no longer needed (a follower that needs it gets a snapshot instead).
   */
  private async maybeCompact(): Promise<void> {
    const due: Group[] = [];
    for (const g of this.groups.values()) {
      if (g.raft.applied() - g.storage.firstIndex() + 1 > this.cfg.compactAfterEntries) due.push(g);
    }
    if (due.length === 0) return;
    // Indexes taken before the await: flushed() makes durable what was applied before the call.
    const upTo = due.map((g) => Math.min(g.raft.applied(), this.store.applied(g.id)));
    await this.store.flushed();
    const records: WalRecord[] = [];
    for (const [i, g] of due.entries()) {
      const index = upTo[i]!;
      const term = g.storage.compact(index);
      records.push({ kind: "compact", group: g.id, index, term });
    }
    await this.wal.append(records);
  }
}
