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
 * The host is layered along that loop, one file per phase: multi-raft-state.ts (groups, inputs,
 * waiters), multi-raft-liveness.ts (peers, quorums, quiescence), multi-raft-apply.ts (applying
 * committed entries, group lifecycle), multi-raft-turn.ts (the turn and the inbound side); this file
 * opens the node and is its API. Everything outside the process comes through the host (host.ts).
 */
import type { ReplicaObserver } from "./replica-observer.js";
import { RECORDS_END } from "./idempotency.js";
import { assert } from "../util/assert.js";
import { proposalSpans } from "../util/tracing.js";
import { type ConfState, type NodeId, type ConfChangeSingle, RaftNode, Role } from "../raft/index.js";
import type { ShardState } from "../storage/state-store.js";

import type { WalRecord } from "../storage/wal-record.js";

import { type NodeHost, realHost } from "./host.js";

import { type Consistency, type Group, type ProposeInput, type ReadBound, ConfChangeRefusedError, LeaderUnreachableError, NotHostedError, WrongShardError, type LeaderWaiter, META_GROUP, NODE_GROUP, NotLeaderError, OverloadedError, RemovedFromClusterError, RequestTimeoutError, ShuttingDownError, InterruptedError, NoQuorumError, QuorumLostError, type TransferWaiter, type Waiter, planeOf, shardOf } from "./group.js";

import { type ShardRange, foundingVoters, initialRange, owns } from "../meta/ranges.js";
import { DEFAULT_PLACEMENT } from "../placement/types.js";

import type { ShardPage } from "./scan.js";

import { type AsyncAck, type CommandResult, type ShardCommand, type StoredRecord, encodeProposal } from "./records.js";
import { encodeMetaProposal } from "./meta-proposals.js";
import { versionAt } from "./shard-apply.js";
import { SPLIT_FILL_KEYS_PER_TURN } from "./split-fill.js";

import { type ApplyResult, type MetaCommand, type MetaState } from "../meta/state.js";

import { NodeConfig, Input, EMPTY_CONF, emptyLog, MAX_TICKS_PER_TURN } from "./multi-raft-state.js";
import { NodeTurn } from "./multi-raft-turn.js";
import { restatedInstall } from "./group-storage.js";

export type { NodeConfig };
export {
  type Consistency, type ReadBound, ConfChangeRefusedError, LeaderUnreachableError, NotHostedError, WrongShardError, META_GROUP, NODE_GROUP, NotLeaderError, NoQuorumError,
  OverloadedError, QuorumLostError, RemovedFromClusterError, RequestTimeoutError, ShuttingDownError, InterruptedError, planeOf, shardOf,
};

/** A shard led here, as its leader knows it (see MultiRaftNode.ledShards). Read-only for callers: it may be reused. */
export interface LedShard {
  readonly shard: number;
  readonly term: number;
  readonly applied: number;
  readonly conf: ConfState;
  readonly caughtUp: NodeId[];
  readonly requests: number;
  readonly snapshotting: boolean;
}

export class MultiRaftNode extends NodeTurn {
  /** ledShards' last answer per quiescent leader, with the indexes it was made at. */
  private readonly ledMemo = new WeakMap<Group, { term: number; committed: number; applied: number; entry: LedShard }>();

  /** Recovers (or bootstraps) the node's groups from its data directory. Call start() next. */
  static async open(config: NodeConfig, host: NodeHost = realHost(config.logger ? { logger: config.logger } : {})): Promise<MultiRaftNode> {
    const cfg = {
      // 30 ms ticks: heartbeats and keepalives every 60 ms, election timeouts of 300-600 ms, so a shard
      // whose leader is cut off elects another in about half a second (bench/unavailability.ts).
      tickMs: 30, electionTicks: 10, heartbeatTicks: 2, compactAfterEntries: 10_000, compactAfterBytes: 16 << 20, requestTimeoutMs: 5000,
      maxQueuedRequests: 100_000, splitFillKeysPerTurn: SPLIT_FILL_KEYS_PER_TURN, splitFillTurnsEager: true, quiesceAfterTicks: 2 * (config.electionTicks ?? 10),
      keepaliveIdleTicks: Math.max(config.heartbeatTicks ?? 2, Math.min(2 * (config.heartbeatTicks ?? 2), Math.floor(((config.electionTicks ?? 10) - 1) / 2))),
      ...config,
    };
    // Longer than a heartbeat interval only while under half an election timeout (short election
    // timeouts keep the heartbeat interval).
    assert(cfg.keepaliveIdleTicks === cfg.heartbeatTicks || (cfg.keepaliveIdleTicks > cfg.heartbeatTicks && 2 * cfg.keepaliveIdleTicks < cfg.electionTicks),
      () => `keepaliveIdleTicks ${cfg.keepaliveIdleTicks}: heartbeatTicks ${cfg.heartbeatTicks}, or more and under half of electionTicks ${cfg.electionTicks}`);
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
    // Groups the log holds are recovered as they were (the configuration comes from the state store),
    // but a snapshot the store installed and the log missed is recorded first.
    const restated: WalRecord[] = [];
    for (const [g, log] of recovered) {
      const install = restatedInstall(log, store.installed(g), () => store.confState(g));
      if (install === null) continue;
      cfg.logger?.warn({ shard: g, index: install.start.index, logEnd: log.start.index + log.entries.length },
        "recording a snapshot the state store installed and the log missed");
      restated.push({ kind: "snapshot", group: g, index: install.start.index, term: install.start.term, confState: install.snapshot!.confState },
        { kind: "hard-state", group: g, hardState: install.hardState });
      recovered.set(g, install);
    }
    if (restated.length > 0) await wal.append(restated);
    for (const [g, log] of recovered) node.addGroup(g, log, EMPTY_CONF);
    const bootstrap: WalRecord[] = [];
    if (cfg.join !== true && !recovered.has(META_GROUP)) {
      // A founding member's first start: every founder is a voter of the metadata group, and each shard
      // has its voters among the founders (foundingVoters: the metadata's shard map says the same); the
      // configuration is a snapshot at index 1, term 1 (as in bootstrapStorage). The metadata group goes
      // last, so a start torn midway is finished by the next one.
      const founders = [cfg.id, ...cfg.peers.keys()].sort((a, b) => a - b);
      for (const g of [...Array.from({ length: cfg.shards }, (_, i) => i + 1), META_GROUP]) {
        if (recovered.has(g)) continue;
        const voters = g === META_GROUP ? founders : foundingVoters(g, founders, DEFAULT_PLACEMENT.replicationFactor);
        if (!voters.includes(cfg.id)) continue;
        const confState: ConfState = { voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
        const log = { hardState: { term: 1, vote: 0, commit: 1 }, snapshot: { index: 1, term: 1, confState }, start: { index: 1, term: 1 }, entries: [] };
        bootstrap.push({ kind: "snapshot", group: g, index: 1, term: 1, confState });
        bootstrap.push({ kind: "hard-state", group: g, hardState: log.hardState });
        const shard = g === META_GROUP ? {} : { shard: { range: initialRange(g, cfg.shards), splits: [] } };
        if (store.applied(g) === 0) store.apply([{ group: g, appliedIndex: 1, confState, ...shard }]);
        node.addGroup(g, log, confState);
        // Leaders come out even: shard g's first election is started by founder (g - 1) mod n, one of
        // its voters; the others wait for their randomized timeouts (issue 13: all leaders used to land
        // on one node).
        if (g !== META_GROUP && founders[(g - 1) % founders.length] === cfg.id) node.campaignAtStart.push(g);
      }
    } else if (!recovered.has(META_GROUP)) {
      // Joining: the metadata group waits for its leader's snapshot; shards come once placed here.
      node.addGroup(META_GROUP, emptyLog(), EMPTY_CONF);
    }
    // Groups with state but no log: made by a split whose log a crash kept from being written (land
    // them now), or dropped from the log with their records left behind (see StateStore.dropGroup).
    const unlogged: number[] = [];
    const logless: number[] = [];
    for (const g of store.groups()) {
      if (node.groups.has(g)) continue;
      if (store.unlogged(g)) unlogged.push(g);
      else logless.push(g);
    }
    // First: a child whose records are still (partly) under its parent, which may be among those dropped next.
    await node.fillAtOpen(unlogged);
    for (const g of logless) await store.dropGroup(g);
    if (unlogged.length > 0) {
      await store.flushed();
      await node.landSplits(unlogged.map((child) => ({ child })));
    }
    if (bootstrap.length > 0) {
      await store.flushed();
      await wal.append(bootstrap);
    }
    for (const [peer, addr] of cfg.peers) transport.setPeer(peer, addr);
    node.syncPeers();
    return node;
  }

  async start(): Promise<number> {
    const port = await this.transport.start();
    // Opening (WAL recovery) may have taken a while; peers get their grace from now on.
    this.tickDueAtMs = this.clock.nowMs();
    this.peers.deafUntil(this.tickDueAtMs);
    this.armTick();
    for (const id of this.campaignAtStart) {
      const g = this.groups.get(id);
      if (g !== undefined && g.raft.lead() === 0) {
        g.raft.campaign();
        this.touched.add(g);
      }
    }
    this.campaignAtStart = [];
    this.scheduleTurn();
    return port;
  }

  /**
   * Sets the tick timer. While every group is quiescent and nothing waits, it sleeps until the next
   * keepalive is due and then counts every tick it slept: an idle node wakes once per idle keepalive
   * interval, not once per tick (issue 13: idle CPU). A group that ticks again meanwhile ends the sleep
   * (tickingResumed).
   */
  private armTick(): void {
    const idle = this.ticking.size === 0 && this.nothingToDo();
    // The ticks the pending turn will count: once they reach the interval, it sends the keepalive and the
    // count starts again (arming for the remainder alone woke an idle node every tick or two).
    const counted = this.ticksSinceKeepalive + this.pendingTicks;
    const interval = this.keepaliveTicks();
    const ticks = !idle ? 1 : counted >= interval ? interval : interval - counted;
    assert(ticks >= 1 && ticks <= this.cfg.keepaliveIdleTicks, () => `tick timer armed for ${ticks} ticks`);
    const nowMs = this.clock.nowMs();
    this.tickArmed = { ticks, atMs: nowMs };
    this.tickDueAtMs = nowMs + ticks * this.cfg.tickMs;
    this.tickTimer = this.clock.setTimeout(() => {
      this.tickArmed = null;
      this.noteStall(this.clock.nowMs());
      this.pendingTicks = Math.min(MAX_TICKS_PER_TURN, this.pendingTicks + ticks);
      if (this.stopped) return;
      this.armTick();
      this.scheduleTurn();
    }, ticks * this.cfg.tickMs);
  }

  /**
   * A group ticks again while the timer sleeps through idle ticks: the timer fires at the next tick
   * instead, with the whole ticks slept so far counted, so that the group's election and heartbeat
   * timers run at their pace from now on.
   */
  protected override tickingResumed(): void {
    const armed = this.tickArmed;
    if (armed === null || armed.ticks === 1 || this.stopped) return;
    this.clock.clear(this.tickTimer);
    this.tickArmed = null;
    const sleptTicks = Math.min(armed.ticks - 1, Math.floor((this.clock.nowMs() - armed.atMs) / this.cfg.tickMs));
    this.pendingTicks = Math.min(MAX_TICKS_PER_TURN, this.pendingTicks + Math.max(0, sleptTicks));
    this.armTick();
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
   * The shard of a record id in `collection` (the default one unless named): from the shard map's
   * ranges (splits included), or, before the map is recorded, from the default collection's initial
   * ranges. Throws CollectionNotFoundError for a collection without shards.
   */
  shardOf(key: string, collection?: string): number {
    return this.metaWatch.shardOf(key, collection);
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

  /** Proposes a command to the shard's leader (this node must lead it). Resolves once applied here. */
  propose(group: number, cmd: ShardCommand): Promise<CommandResult> {
    return this.proposeAndAwait<CommandResult>(group, `proposal to shard ${group}`, (seq) => this.proposal(group, seq, cmd));
  }

  /**
   * Proposes a record write in write mode async: resolves with an AsyncAck once this leader's log holds
   * it durably (before a quorum does), or, when its outcome cannot be known before it applies (an
   * absorb, split or freeze unapplied ahead of it; an idempotency key), with its CommandResult once
   * applied, as a sync write.
   */
  proposeAsync(group: number, cmd: ShardCommand): Promise<CommandResult | AsyncAck> {
    assert(cmd.op === "put" || cmd.op === "delete", "only single-record writes are async");
    assert(cmd.ifVersion === undefined, "a compare-and-set's outcome is known only once applied");
    // A key's outcome must be remembered before it is answered (a retry is answered with it): sync.
    if (cmd.idem !== undefined) return this.propose(group, cmd);
    // Answered before it applies, it must not be refused when it does: the range and freeze as
    // applied here now; a split or freeze still unapplied ahead of it holds its answer back (baseSettledAfter).
    const g = this.group(group);
    if (!owns(g.shard.range, cmd.key) || g.shard.frozen !== undefined) return Promise.reject(new WrongShardError(group));
    return this.proposeAndAwait<CommandResult>(group, `proposal to shard ${group}`, (seq) => ({ ...this.proposal(group, seq, cmd), async: true }));
  }

  private proposal(group: number, seq: number, cmd: ShardCommand): ProposeInput {
    this.counters.proposals++;
    this.group(group).requests++;
    const input: ProposeInput = { kind: "propose", group, seq, data: encodeProposal({ origin: [this.id, seq], cmd }) };
    // Applied, these change the shard's version base or its range (an async write behind one waits).
    if (cmd.op === "absorb" || cmd.op === "split" || cmd.op === "freeze") input.changesBase = true;
    return input;
  }

  /**
   * The path every proposal takes (records, metadata, configuration changes): this node must lead the
   * group; the input goes to the next turn, and the promise settles when the entry is applied here
   * (its waiter is keyed by `seq`) or after the request timeout, with an unknown outcome.
   */
  protected proposeAndAwait<T extends CommandResult | ApplyResult>(group: number, what: string, input: (seq: number) => Input): Promise<T> {
    const g = this.group(group);
    this.checkAccepting();
    const refused = this.noQuorumFor(g);
    if (refused !== null) return Promise.reject(refused);
    if (g.raft.role() !== Role.Leader) return Promise.reject(new NotLeaderError(group, g.raft.lead()));
    const seq = this.nextSeq++;
    const spans = proposalSpans(group);
    return new Promise<T>((resolve, reject) => {
      this.waiting++;
      const w: Waiter<CommandResult | ApplyResult> = {
        resolve: resolve as (v: CommandResult | ApplyResult) => void, reject,
        timer: this.clock.setTimeout(() => {
          g.proposals.delete(seq);
          this.settle(w, new RequestTimeoutError(`${what} not applied within ${this.cfg.requestTimeoutMs} ms; it may still take effect`));
        }, this.cfg.requestTimeoutMs),
        ...(spans !== undefined ? { spans } : {}),
      };
      g.proposals.set(seq, w);
      this.enqueue(input(seq));
    });
  }

  /** Reads a record at the requested consistency (ReadBound: a session's version, a staleness bound). */
  read(group: number, key: string, consistency: Consistency, bound: ReadBound = {}): Promise<StoredRecord | undefined> {
    const g = this.group(group);
    this.checkAccepting();
    this.counters.reads++;
    g.requests++;
    let version: number | null = null;
    if (consistency === "session") {
      assert(bound.sessionVersion !== undefined && bound.sessionVersion >= 0, "a session read names its version");
      version = bound.sessionVersion;
    }
    const fresh = consistency === "bounded" && this.clock.nowMs() - g.freshAsOfMs <= (bound.maxStalenessMs ?? 0);
    if (consistency === "eventual" || fresh || (version !== null && this.appliedVersion(group) >= version)) {
      const rec = this.servedRead(g, key);
      return rec instanceof Error ? Promise.reject(rec) : Promise.resolve(rec);
    }
    // A session read behind its version waits for this replica to apply it, with no round; a bounded
    // read past its bound takes a ReadIndex round, as a linearizable one (and refreshes freshAsOfMs).
    const refused = this.noQuorumFor(g);
    if (refused !== null) return Promise.reject(refused);
    const ctx = `${this.id}:${this.nextSeq++}`;
    return new Promise((resolve, reject) => {
      this.waiting++;
      const timer = this.clock.setTimeout(() => {
        g.reads.delete(ctx);
        this.released();
        reject(new RequestTimeoutError(version !== null
          ? `shard ${group}'s replica here did not apply the session's version ${bound.sessionVersion} within ${this.cfg.requestTimeoutMs} ms`
          : `read on shard ${group} not confirmed within ${this.cfg.requestTimeoutMs} ms`));
      }, this.cfg.requestTimeoutMs);
      g.reads.set(ctx, { resolve, reject, timer, key, index: null, version, askedAtMs: version === null ? this.clock.nowMs() : null });
      if (version === null) this.enqueue({ kind: "read", group, ctx });
    });
  }

  /** The metadata log's applied index here: a session's token carries it, so that a later read waits for this node's shard map to be as new. */
  metaAppliedIndex(): number {
    return this.store.applied(META_GROUP);
  }

  /** Reads waiting at this replica of the group: for a ReadIndex round, or for a session's version to be applied. */
  pendingReads(group: number): number {
    return this.group(group).reads.size;
  }

  /**
   * A shard replica's applied version (versionBase + applied index): the session token of what a read
   * here saw. Every write in the shard's range with a version at most this is applied here, also one
   * made before a split (on the parent) or a merge (on the retired shard).
   */
  appliedVersion(group: number): number {
    return versionAt(this.group(group).shard, this.store.applied(group));
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
          this.released();
          resolve("aborted");
        }, this.cfg.requestTimeoutMs),
      };
      this.waiting++;
      g.transferWaiters.push(w);
      this.enqueue({ kind: "transfer", group, to });
    });
  }

  /** Records of a shard in key order (local state: eventual consistency). */
  scan(group: number, limit: number, after?: string): [string, StoredRecord][] {
    return this.scanOwned(group, limit, after, RECORDS_END) as [string, StoredRecord][];
  }

  /**
   * A page of a shard's records for a collection scan (scan.ts), linearizable on any replica: a ReadIndex
   * round first, so this replica has applied everything committed before the call; then the records and
   * the shard's range and freeze, taken together in one synchronous step, so at one applied index.
   */
  async scanPage(group: number, limit: number, after?: string): Promise<ShardPage> {
    await this.readBarrier(group);
    return { ...this.shardView(group), records: this.scan(group, limit, after), version: this.appliedVersion(group) };
  }

  /**
   * Resolves once this replica has applied everything committed before the call (a ReadIndex round,
   * on the leader or a follower): what it then holds is at least as new as any acknowledged write. At
   * another level, once it holds what that level asks (a session's version, a staleness bound).
   */
  async readBarrier(group: number, consistency: Consistency = "linearizable", bound: ReadBound = {}): Promise<void> {
    try {
      // The round is a read of RECORDS_END, which no record id can be (the API refuses the character):
      // it settles only once the read index is applied here, with WrongShardError when the shard is
      // frozen or the key is outside its range, which says nothing about the barrier.
      await this.read(group, RECORDS_END, consistency, bound);
    } catch (e) {
      if (!(e instanceof WrongShardError)) throw e;
    }
  }

  /** A hosted shard's range, freeze and latest split children, as this replica has applied them. */
  shardView(group: number): { shard: number; range: ShardRange; frozen: boolean; children: number[] } {
    const st = this.group(group).shard;
    return { shard: group, range: st.range, frozen: st.frozen !== undefined, children: st.splits.map((s) => s.child) };
  }

  /** A record as this replica holds it now, whatever the shard's range (a search reads its hits' payloads). */
  localRecord(group: number, key: string): StoredRecord | undefined {
    return this.store.get(group, key) as StoredRecord | undefined;
  }

  /**
   * Tells `observer` of every change of the shard replicas' records from now on (replica-observer.ts);
   * one observer per node. Returns the function that stops it.
   */
  observeReplicas(observer: ReplicaObserver): () => void {
    assert(this.replicaObserver === null, "a node has one replica observer");
    this.replicaObserver = observer;
    return () => {
      if (this.replicaObserver === observer) this.replicaObserver = null;
    };
  }

  /**
   * For checkers (the node-world simulator): a hosted group's index applied in the state store, its
   * shard state, and everything it holds (records and remembered outcomes) in key order; undefined when
   * the group is not hosted here. Replicas at the same applied index must answer the same.
   */
  replicaState(group: number): { applied: number; shard: ShardState | null; contents: [string, unknown][] } | undefined {
    const g = this.groups.get(group);
    if (g === undefined) return undefined;
    return { applied: this.store.applied(group), shard: g.kind === "shard" ? g.shard : null, contents: this.scanOwned(group, Number.MAX_SAFE_INTEGER) };
  }

  /** Everything a merge source ships to its target: records and remembered idempotency outcomes, in key order. */
  shardContents(group: number, limit: number): [string, unknown][] {
    return this.scanOwned(group, limit);
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
    const g = this.group(group);
    g.raft.campaign();
    this.touched.add(g);
    this.scheduleTurn();
  }

  /**
   * Resolves with the shard's leader as soon as this node knows one other than `refused` (a node that
   * has just answered that it does not lead), or `refused` itself elected in a later term (a restarted
   * leader often wins again); rejects with NotLeaderError after `timeoutMs`. Lets a gateway ride out an
   * election or a leadership hand-over instead of failing the request; but no election can succeed
   * without a quorum, so it rejects with NoQuorumError as soon as none is reachable from here.
   * `orBack`: `refused` fell silent (it did not refuse): it will do again once it shows signs of life
   * while it still leads here (checked each tick: answerLeadersBack).
   */
  awaitLeader(group: number, refused: NodeId, timeoutMs: number, orBack = false): Promise<NodeId> {
    const g = this.group(group);
    this.checkAccepting();
    const noQuorum = this.noQuorumFor(g);
    if (noQuorum !== null) return Promise.reject(noQuorum);
    const lead = g.raft.lead();
    if (lead !== 0 && (lead !== refused || (orBack && !this.peerLost(lead)))) return Promise.resolve(lead);
    return new Promise((resolve, reject) => {
      const w: LeaderWaiter = {
        resolve, reject, refused, refusedTerm: g.raft.term(), orBack,
        timer: this.clock.setTimeout(() => {
          g.leaderWaiters = g.leaderWaiters.filter((x) => x !== w);
          this.released();
          reject(new NotLeaderError(group, 0));
        }, timeoutMs),
      };
      this.waiting++;
      g.leaderWaiters.push(w);
      if (orBack) {
        this.counters.leaderReturnWaits++;
        this.leadersAwaitedBack.add(g);
      }
    });
  }

  /**
   * Proposes a membership change of a group (this node must lead it): one change is simple, several go
   * through a joint configuration left automatically. Resolves once applied here; Raft takes one change
   * at a time, so a change proposed while another is pending is refused at once with a
   * ConfChangeRefusedError whose `busy` says so (Gateway.proposeConfChange can ask again).
   */
  proposeConfChange(group: number, changes: ConfChangeSingle[]): Promise<ApplyResult> {
    return this.proposeAndAwait<ApplyResult>(group, `configuration change of group ${group}`, (seq) => ({ kind: "conf", group, seq, changes }));
  }

  /**
   * The shards this node leads, with what their leader knows: the configuration as of the applied
   * index, the replicas holding the commit index, and the requests made here so far.
   */
  ledShards(): LedShard[] {
    const out: LedShard[] = [];
    // A stopped node leads nothing (and its store is closed): an agent's last pass may still ask.
    if (this.stopped) return out;
    for (const g of this.groups.values()) {
      const r = g.raft;
      if (g.kind !== "shard" || r.role() !== Role.Leader) continue;
      // A fully replicated quiescent leader's answer (every member caught up, none snapshotting) stays
      // what it was while its term, indexes and requests stay: reused, so that thousands of idle shards
      // cost a lookup each per pass, not a copy of their progress. Reused only when it was made fully
      // replicated too: a follower's progress can move while its leader's indexes do not.
      const memo = this.ledMemo.get(g);
      const settled = g.quiescence.quiesced && r.fullyReplicated();
      if (settled && memo !== undefined && memo.term === r.term() && memo.committed === r.committed() &&
        memo.applied === r.applied() && memo.entry.requests === g.requests) {
        out.push(memo.entry);
        continue;
      }
      const progress = [...r.progress()];
      const caughtUp = progress.filter(([, pr]) => pr.match >= r.committed()).map(([id]) => id);
      const snapshotting = progress.some(([, pr]) => pr.snapshotting);
      const entry = { shard: g.id, term: r.term(), applied: this.store.applied(g.id), conf: r.confState(), caughtUp, requests: g.requests, snapshotting };
      if (settled) this.ledMemo.set(g, { term: r.term(), committed: r.committed(), applied: r.applied(), entry });
      else this.ledMemo.delete(g);
      out.push(entry);
    }
    return out;
  }
}
