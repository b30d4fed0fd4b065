/**
 * The multi-raft host's state (see multi-raft.ts for the loop): the groups hosted here, the inputs
 * waiting for the next turn, the waiters of this node's requests, and the helpers every phase of the
 * loop shares (settling a waiter, queueing an input, failing what waits on a group). The phases are
 * layered on it: liveness (multi-raft-liveness.ts) -> apply (multi-raft-apply.ts) -> turn
 * (multi-raft-turn.ts) -> the node's API (multi-raft.ts).
 */

import type { ReplicaObserver } from "./replica-observer.js";
import { type ConfState, type Message, type NodeId, type ConfChangeSingle, RaftNode } from "../raft/index.js";
import type { ShardState, SnapshotKeep } from "../storage/state-store.js";
import type { GroupLog } from "../storage/wal.js";
import { assert } from "../util/assert.js";

import type { PeerAddress } from "../transport/transport.js";
import type { Clock, Timer } from "../util/clock.js";
import type { Random } from "../util/rng.js";
import { NO_MUTATIONS, type NodeMutations } from "./mutations.js";
import { type NodeHost, type NodeStateStore, type NodeTransport, type NodeWal } from "./host.js";
import { GroupStorage } from "./group-storage.js";
import { type Group, NotHostedError, META_GROUP, OverloadedError, ShuttingDownError, type ProposeInput, type Waiter } from "./group.js";

import { initialRange } from "../meta/ranges.js";
import { MetaWatch } from "./meta-watch.js";

import { type CommandResult } from "./records.js";
import { RECORDS_END, type RememberedQueue } from "./idempotency.js";

import { metaFromRecords } from "../meta/records.js";
import { type ApplyResult, type MetaState } from "../meta/state.js";
import { PeerLiveness } from "./peer-liveness.js";
import type { SplitFill } from "./split-fill.js";
import { ownedBy } from "./shard-apply.js";
import { TurnTimer } from "./turn-timer.js";

import { type Logger } from "../util/logger.js";
import { proposalSettled } from "../util/tracing.js";

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
  /**
   * Ticks between keepalives to each peer while every group here is quiescent (default two heartbeat
   * intervals, 120 ms; the heartbeat interval under short election timeouts). An idle node's cost is its
   * wakeups: each keepalive is a timer, a write per peer and a read on each peer. A longer interval stays
   * under half an election timeout (asserted), and peers allow for it (peerSilentAfterMs).
   */
  keepaliveIdleTicks?: number;
  /** Compact a group's log once this many applied entries sit before the last compaction point. */
  compactAfterEntries?: number;
  /** ... or once the entries it holds in memory are this large (default 16 MiB). */
  compactAfterBytes?: number;
  /** Proposals and reads not answered within this time fail with an unknown outcome. */
  requestTimeoutMs?: number;
  /** Bound on requests queued for the next turn plus callers waiting for an answer (refused with OverloadedError beyond). */
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
  /** Keys of a split's parent walked in one turn while its child is filled (split-fill.ts; default 1024). */
  splitFillKeysPerTurn?: number;
  /**
   * Whether a pending split fill asks for the next turn at once (default), or moves a part only on the
   * turns that count a tick: the node-world simulator's nodes wait, so that their fills span simulated
   * time and crashes, drops and snapshot installs fall in the middle of them.
   */
  splitFillTurnsEager?: boolean;
}

export type Input =
  | { kind: "message"; group: number; msg: Message }
  | ProposeInput
  | { kind: "read"; group: number; ctx: string }
  | { kind: "unreachable"; peer: NodeId }
  /** The transport to the peer broke: shards it leads stop trusting it (see leaderGone). */
  | { kind: "peerLost"; peer: NodeId }
  /** A frame came from a peer whose transport had broken since its last one (it restarted, or a link healed): see peerBack. */
  | { kind: "peerBack"; peer: NodeId }
  | { kind: "transfer"; group: number; to: NodeId }
  | { kind: "conf"; group: number; seq: number; changes: ConfChangeSingle[] }
  /** The shard's leader `from` quiesced the group in `term`. */
  | { kind: "quiesce"; group: number; term: number; from: NodeId };

export function appendTo<K, V>(map: Map<K, V[]>, key: K, item: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [item]);
  else list.push(item);
}

/** A split's child whose records are moved, to be landed (its log written, then hosted). */
export interface SplitToLand {
  child: number;
  parent: number;
  /** The split's part of its parent's remembered outcomes; null: the child builds its own. */
  remembered: RememberedQueue | null;
}

export type Answer = [Waiter<CommandResult | ApplyResult>, CommandResult | ApplyResult];

/** An applied entry this node proposed: its waiter leaves the group and is answered with the result. */
export function takeWaiter(g: Group, self: NodeId, origin: [number, number], result: CommandResult | ApplyResult, answers: Answer[]): void {
  if (origin[0] !== self) return;
  const w = g.proposals.get(origin[1]);
  if (w === undefined) return;
  g.proposals.delete(origin[1]);
  answers.push([w, result]);
}

/** The metadata state from its records in the state store (on open, and after a snapshot landed). */
export function loadMeta(store: NodeStateStore): MetaState {
  return metaFromRecords(store.scan(META_GROUP, Number.MAX_SAFE_INTEGER));
}

/** Whether proposals of this shard must wait: its leader here is handing over, or no leader is known. */
export function mustWait(g: Group): boolean {
  return g.raft.lead() === 0 || g.raft.transferring();
}

/** Whether anything waits on the group (parked proposals wait in `proposals` too). */
export function hasWaiters(g: Group): boolean {
  return g.proposals.size > 0 || g.reads.size > 0 || g.leaderWaiters.length > 0 || g.quorumWatchers.size > 0;
}

export const EMPTY_CONF: ConfState = { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

/** The log of a group that has nothing yet (a replica waiting for its leader's snapshot). */
export function emptyLog(): GroupLog {
  return { hardState: { term: 0, vote: 0, commit: 0 }, snapshot: null, start: { index: 0, term: 0 }, entries: [] };
}

export const MAX_TICKS_PER_TURN = 10;
export const encoder = new TextEncoder();
export const decoder = new TextDecoder();

/** The node's configuration with its defaults filled in (see MultiRaftNode.open). */
export type NodeSettings = Required<Omit<NodeConfig, "logger" | "testFaults" | "join" | "mutations">> & Pick<NodeConfig, "logger" | "testFaults" | "join" | "mutations">;

/** Stored entries read a page at a time by scanOwned while a split's child is filled. */
const SCAN_OWNED_PAGE_MIN = 256;

/**
 * A shard's snapshot carries the keys of the range stored with them, always: a split parent's stored
 * keys include its child's until they are moved (split-fill.ts), and the stored state may trail the
 * replica's (a split or an absorb since), so neither the current range nor pending fills can say.
 */
const KEEP_OWN_KEYS: SnapshotKeep = (shard) => (shard === undefined ? undefined : ownedBy(shard.range));

export abstract class NodeState {
  readonly id: NodeId;
  protected readonly cfg: NodeSettings;
  protected readonly wal: NodeWal;
  protected readonly store: NodeStateStore;
  readonly transport: NodeTransport;
  /** Time, timers and randomness come from the host (real, or the simulator's seeded ones); the node's components share the clock. */
  readonly clock: Clock;
  /** Deliberate bugs for the node-world simulator (mutations.ts); none in production. */
  readonly mutations: NodeMutations;
  protected readonly random: Random;
  protected readonly groups = new Map<number, Group>();
  /** The metadata state machine, applied from META_GROUP's log (every node holds the whole map). */
  protected meta: MetaState;
  protected inputs: Input[] = [];
  /** Inputs the last turn took (inlineSync: a light turn syncs on the loop's thread). */
  protected inputsTaken = 0;
  /** How long the last synced WAL append took (inlineSync: a slow disk goes back to the thread pool). */
  protected lastWalSyncMs = 0;
  protected pendingTicks = 0;
  protected tickTimer: Timer | null = null;
  /** What the tick timer was armed for (ticks, when), while it is armed. */
  protected tickArmed: { ticks: number; atMs: number } | null = null;
  protected turnScheduled = false;
  protected turnRunning: Promise<void> | null = null;
  protected stopped = false;
  protected nextSeq = 1;
  protected queuedRequests = 0;
  /**
   * Groups that tick (not quiescent). Invariant: exactly the hosted groups whose quiescence.quiesced is
   * false; changed only through setQuiesced, addGroup and dropping a group.
   */
  protected readonly ticking = new Set<Group>();
  /**
   * Groups whose election clock leaderGone restarted in this turn: the ticks the turn counts elapsed
   * before the news of the loss was read, so they are not counted against these groups (see leaderGone).
   * Emptied by every turn's ticking. Invariant: a subset of the groups hosted here.
   */
  protected readonly ticksWaived = new Set<Group>();
  /**
   * Groups where this node campaigned as its lost leader's chosen successor, with the ticks since (see
   * retrySuccessorCampaigns). Invariant: a subset of the groups hosted here; each count < electionTicks.
   */
  protected readonly successorCampaignTicks = new Map<Group, number>();
  /** Groups with parked proposals (waiting out a leader change). Invariant: exactly those whose parkedProposals is not empty. */
  protected readonly parked = new Set<Group>();
  /** Tick rounds since the last walk of every group (see NodeLiveness.scanAllDue). */
  protected roundsSinceFullScan = 0;
  /** Groups an input or a call reached since the last turn (see NodeTurn.mayBeReady). */
  protected readonly touched = new Set<Group>();
  /** Groups that had a Ready in the last turn. */
  protected hadReady = new Set<Group>();
  /** Shards this founder starts the first election of (a fresh cluster's leaders spread over its founders). */
  protected campaignAtStart: number[] = [];
  /**
   * Callers waiting on this node: proposals (parked ones included), reads, leader and transfer waiters.
   * Invariant: the size of all those maps and lists; with queuedRequests, bounded by maxQueuedRequests.
   */
  protected waiting = 0;
  protected nodeFlushScheduled = false;
  protected ticksSinceKeepalive = 0;
  /** The last leader each hosted shard had here, kept through elections (when Raft knows none). */
  protected readonly lastLeaders = new Map<number, NodeId>();
  /** Per hosted shard: when (wall clock) this node learned of its current last leader. Same keys as lastLeaders. */
  protected readonly leaderSinceMs = new Map<number, number>();
  /** The peers' liveness as the frames this node receives show it. */
  protected readonly peers: PeerLiveness;
  /** When each removed peer that still sends was last told so (see noticeIfRemoved). Bounded: REMOVED_NOTICES_MAX. */
  protected readonly removedNoticeAtMs = new Map<NodeId, number>();
  /**
   * When the armed tick timer is due: the loop running well past it means it stalled (see noteStall).
   * Measured from the due time, not the last tick, so that an idle node's longer sleeps are no stall.
   */
  protected tickDueAtMs: number;
  /** The metadata changed: the shards hosted here are checked against it at the start of the next turn. */
  protected hostingDue = true;
  /**
   * Groups made by splits whose records were moved (with their parents): the next turn asks the store
   * to make their state durable beside the loop (awaitLandings), then they are landed.
   */
  protected splitsToLand: SplitToLand[] = [];
  /** Those whose state the store is making durable now (one wait at a time). Invariant: none is hosted. */
  protected landingsAwaited: SplitToLand[] = [];
  /** Those whose state is durable: the next turn writes their logs and hosts them (landSplits). */
  protected landingsDurable: SplitToLand[] = [];
  /**
   * Groups made by splits applied here whose records are still stored under their parent, by child
   * (split-fill.ts): a part moved each turn, then landed. Invariant: none is hosted; each parent has state here.
   */
  protected readonly fills = new Map<number, SplitFill>();
  /** A log compaction waits for the state store's sync (maybeCompact): one at a time. */
  protected compactionAwaited = false;
  /** Compactions whose indexes the store made durable, for the next turn to carry out (compactDurable). */
  protected compactionsDurable: { g: Group; index: number }[] = [];
  /** Where each turn's time goes; a turn over a quarter of an election timeout is logged (turn-timer.ts). */
  protected readonly turnTimer: TurnTimer;
  /** Watchers of the metadata, waiters for its next change, and the routes it gives. */
  protected readonly metaWatch: MetaWatch;
  protected hostingPending = false;
  /** Called when a group applied a configuration change or a split (its leader records it in the metadata). */
  onShardChanged: ((group: number) => void) | null = null;
  /** Told of every change of the shard replicas' records (data/ keeps its indexes with it). */
  protected replicaObserver: ReplicaObserver | null = null;
  /** Observers for metrics (set by whoever exports them). */
  onWalSync: ((seconds: number, records: number) => void) | null = null;
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
    malformedMessages: 0, leaderTransfersStarted: 0, readsRetried: 0, groupTicks: 0, groupWakes: 0, successorCampaigns: 0, successorCampaignRetries: 0, groupsWokenForPeer: 0,
    /** A group here saw a new leader (another node's or its own). */
    leaderChanges: 0,
    snapshotsInstalled: 0,
    snapshotBytesInstalled: 0,
    /** Parts of split fills moved (split-fill.ts). */
    splitFillParts: 0,
    splitFillKeysMoved: 0,
    /** Gateways here waiting for a leader that fell silent, or for the next one (awaitLeader orBack) ... */
    leaderReturnWaits: 0,
    /** ... of which that leader, heard again while it still led, answered. */
    leaderReturns: 0,
    /** Loop turns slower than a quarter of an election timeout (turn-timer.ts): each is logged. */
    slowTurns: 0,
  };

  protected constructor(cfg: NodeSettings, host: NodeHost, wal: NodeWal, store: NodeStateStore, transport: NodeTransport) {
    this.id = cfg.id;
    this.clock = host.clock;
    this.random = host.random;
    this.mutations = cfg.mutations ?? NO_MUTATIONS;
    this.peers = new PeerLiveness(this.clock.nowMs());
    this.tickDueAtMs = this.clock.nowMs();
    this.meta = loadMeta(store);
    this.cfg = cfg;
    this.turnTimer = new TurnTimer(this.electionTimeoutMs / 4);
    this.wal = wal;
    this.store = store;
    this.transport = transport;
    this.metaWatch = new MetaWatch(() => this.meta, cfg.shards, this.clock, cfg.logger);
  }

  /** Hosts a group from its recovered (or empty) log; `confState` is used when nothing records one. */
  protected addGroup(g: number, log: GroupLog, confState: ConfState): Group {
    assert(!this.groups.has(g), () => `group ${g} is hosted already`);
    const storage = new GroupStorage(g, log, confState, this.store, KEEP_OWN_KEYS);
    const raft = new RaftNode({
      id: this.id, storage, electionTicks: this.cfg.electionTicks, heartbeatTicks: this.cfg.heartbeatTicks,
      random: (n) => this.random.int(n), applied: this.store.applied(g),
      ...(this.cfg.logger ? { logger: this.cfg.logger } : {}),
    });
    const group: Group = {
      id: g, kind: g === META_GROUP ? "meta" : "shard", raft, storage, proposals: new Map(), reads: new Map(), readBatches: new Map(), freshAsOfMs: -Infinity, asyncAcks: [], baseSettledAfter: Infinity, ownAppended: [],
      quiescence: { quiesced: false, idleTicks: 0 }, parkedProposals: [], leaderWaiters: [], transferWaiters: [], quorumWatchers: new Set(), requests: 0,
      shard: this.loadShardState(g), remembered: null,
    };
    this.groups.set(g, group);
    this.startTicking(group);
    return group;
  }

  /**
   * A shard's own state from the store; a shard of the collection as created that has none recorded
   * (a replica waiting for its first snapshot) assumes its initial range until the snapshot says more.
   */
  protected loadShardState(g: number): ShardState {
    const stored = this.store.shardState(g);
    if (stored !== undefined) return stored;
    return { range: g <= this.cfg.shards ? initialRange(g, this.cfg.shards) : { start: 0, end: 0 }, splits: [] };
  }

  group(id: number): Group {
    const g = this.groups.get(id);
    if (g === undefined) throw new NotHostedError(id);
    return g;
  }

  protected checkAccepting(): void {
    if (this.stopped) throw new ShuttingDownError("node is shutting down");
    if (this.failure !== null) throw this.failure;
    if (this.queuedRequests + this.waiting >= this.cfg.maxQueuedRequests) throw new OverloadedError("too many requests queued or waiting");
  }

  protected setQuiesced(g: Group, quiesced: boolean): void {
    g.quiescence.quiesced = quiesced;
    if (quiesced) this.ticking.delete(g);
    else if (this.groups.get(g.id) === g) this.startTicking(g);
  }

  private startTicking(g: Group): void {
    const wasIdle = this.ticking.size === 0;
    this.ticking.add(g);
    if (wasIdle) this.tickingResumed();
  }

  /** The first group ticks again after none did: the host's tick timer may be sleeping through idle ticks. */
  protected tickingResumed(): void {}

  /** A waiter left (answered, failed or timed out). */
  protected released(): void {
    this.waiting--;
    assert(this.waiting >= 0, "every waiter is released once");
  }

  protected settle<T>(w: Waiter<T>, result: T | Error): void {
    this.clock.clear(w.timer);
    this.released();
    if (w.spans !== undefined) proposalSettled(w.spans, result instanceof Error ? result : undefined);
    if (result instanceof Error) w.reject(result);
    else w.resolve(result);
  }

  /**
   * The shard's last leader known here, also while an election is under way (0 if none yet): a gateway
   * with no leader to go to judges from it whether one is coming (see Gateway.route).
   */
  lastLeaderOf(group: number): NodeId {
    return this.groups.has(group) ? this.lastLeaders.get(group) ?? 0 : 0;
  }

  /** When (wall-clock ms) this node learned of the shard's last leader; null if it knows none. */
  leaderKnownSinceMs(group: number): number | null {
    return this.groups.has(group) ? this.leaderSinceMs.get(group) ?? null : null;
  }

  /** The shard's leader as this node knows it (0 when unknown). */
  leaderOf(group: number): NodeId {
    return this.groups.get(group)?.raft.lead() ?? 0;
  }

  /**
   * What of a group's stored keys is its own: undefined when all of them are, else (its split children
   * are still being filled from it) a test by its range. For whatever walks a group's keys.
   */
  protected ownedKeys(group: number): ((key: string) => boolean) | undefined {
    if (!this.fillsFrom(group)) return undefined;
    const g = this.groups.get(group);
    assert(g !== undefined && g.kind === "shard", () => `split parent ${group} of a filling child is not hosted`);
    return ownedBy(g.shard.range);
  }

  /**
   * A group's stored keys and values in key order, from `after` (exclusive) to `end` (exclusive), at
   * most `limit`: only its own (ownedKeys), however many of another's lie between.
   */
  protected scanOwned(group: number, limit: number, after?: string, end?: string): [string, unknown][] {
    const keep = this.ownedKeys(group);
    if (keep === undefined) return this.store.scan(group, limit, after, end);
    // In a range-partitioned collection the child's records sort after the parent's: not walked for records.
    const range = this.groups.get(group)!.shard.range;
    if (typeof range.end === "string" && end !== undefined && end <= RECORDS_END && range.end < end) end = range.end;
    // Pages of at least SCAN_OWNED_PAGE_MIN: a scan of a few records may have many of the child's to pass.
    const pageSize = Math.max(limit, SCAN_OWNED_PAGE_MIN);
    const out: [string, unknown][] = [];
    for (let from = after; ;) {
      const page = this.store.scan(group, pageSize, from, end);
      for (const entry of page) {
        if (!keep(entry[0])) continue;
        out.push(entry);
        if (out.length === limit) return out;
      }
      if (page.length < pageSize) return out;
      from = page[page.length - 1]![0];
    }
  }

  /** Whether a split's child is still being filled here (its records moving from its parent: split-fill.ts). */
  splitChildFilling(child: number): boolean {
    return this.fills.has(child);
  }

  /** Whether some of the group's stored keys are not its own yet (a split child is being filled from it). */
  fillsFrom(group: number): boolean {
    for (const f of this.fills.values()) if (f.parent === group) return true;
    return false;
  }

  /** Whether this node hosts the group (a joining node hosts no shard until a replica is placed here). */
  hosts(group: number): boolean {
    return this.groups.has(group);
  }

  /** Every other node this one knows: its static peers and the nodes the metadata records. */
  protected knownPeers(): NodeId[] {
    const ids = new Set(this.cfg.peers.keys());
    for (const n of this.meta.nodes.values()) if (n.worker !== "removed") ids.add(n.id);
    ids.delete(this.id);
    return [...ids];
  }

  /** Peer addresses follow the metadata: every registered node other than this one. */
  protected syncPeers(): void {
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

  protected enqueue(input: Input): void {
    if (this.stopped) return;
    if (input.kind === "propose" || input.kind === "read") this.queuedRequests++;
    this.inputs.push(input);
    this.scheduleTurn();
  }

  /**
   * Fails every request of this node waiting on the group but leadership transfers: proposals handed to
   * Raft with `proposed`, the rest (parked proposals, reads, leader waiters) with `notProposed`.
   */
  protected failWaiters(g: Group, proposed: Error, notProposed: Error): void {
    for (const p of g.parkedProposals) {
      const w = g.proposals.get(p.seq);
      g.proposals.delete(p.seq);
      if (w !== undefined) this.settle(w, notProposed);
    }
    g.parkedProposals = [];
    this.parked.delete(g);
    for (const w of g.proposals.values()) this.settle(w, proposed);
    g.proposals.clear();
    g.asyncAcks = [];
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
   * Silence after which a peer counts as lost: an election timeout, plus what an idle peer's keepalives
   * come later than a busy one's, so that a late keepalive from an idle peer has the same margin as
   * one from a busy peer (300 + 60 ms by default).
   */
  get peerSilentAfterMs(): number {
    return this.electionTimeoutMs + (this.cfg.keepaliveIdleTicks - this.cfg.heartbeatTicks) * this.cfg.tickMs;
  }

  /** Ticks between keepalives to each peer now: longer while no group here ticks (see keepaliveIdleTicks). */
  protected keepaliveTicks(): number {
    return this.ticking.size === 0 ? this.cfg.keepaliveIdleTicks : this.cfg.heartbeatTicks;
  }

  /** Answers the callers waiting for a transfer of `g` to `to`. */
  protected settleTransfers(g: Group, to: NodeId, outcome: "completed" | "aborted"): void {
    if (g.transferWaiters.length === 0) return;
    const [done, rest] = [g.transferWaiters.filter((w) => w.to === to), g.transferWaiters.filter((w) => w.to !== to)];
    g.transferWaiters = rest;
    for (const w of done) this.settle(w, outcome);
  }
  /** Runs a turn soon (multi-raft-turn.ts). */
  protected abstract scheduleTurn(): void;

}
