/**
 * The multi-raft host's apply phase and group lifecycle: committed entries of every group applied in
 * one state-store batch (shard-apply.ts for shards, meta/records.ts for the metadata), configuration
 * changes, read-index reads served once applied, split children landed, replicas created and dropped
 * as the metadata places them (hosting.ts), logs compacted behind the durable state.
 */
import { RECORDS_END, RememberedQueue } from "./idempotency.js";
import { type ConfState, type Ready, type ConfChangeSingle, ConfChangeTransition, EntryType, ProposalDroppedError, Role, decodeConfChange } from "../raft/index.js";
import type { GroupChanges } from "../storage/state-store.js";
import type { GroupLog } from "../storage/wal.js";
import { assert } from "../util/assert.js";
import { proposalApplied } from "../util/tracing.js";
import type { WalRecord } from "../storage/wal-record.js";

import { ConfChangeRefusedError, type Group, META_GROUP, NotHostedError, WrongShardError, type LeaderWaiter, NotLeaderError, InterruptedError } from "./group.js";

import { bornWithVoters, hostingChanges } from "./hosting.js";
import { type ShardReader, SPLIT_LOG_INDEX, SPLIT_LOG_TERM, applyShardEntries, versionAt } from "./shard-apply.js";
import { type SplitFill, fillPart, newFill } from "./split-fill.js";
import { owns } from "../meta/ranges.js";
import type { ShardRecord } from "../meta/state.js";

import { type StoredRecord } from "./records.js";
import { decodeMetaProposal } from "./meta-proposals.js";
import { applyMetaTracked } from "../meta/records.js";

import { Answer, takeWaiter, EMPTY_CONF, emptyLog, decoder } from "./multi-raft-state.js";
import { NodeLiveness } from "./multi-raft-liveness.js";

export abstract class NodeApply extends NodeLiveness {
  /**
   * Writes the logs of groups that splits made (their state is in the store, marked unlogged) and hosts
   * them: the store first (so the log never names a group whose state a crash could lose), then the
   * log, then the mark is cleared. A child whose parent is led here campaigns at once (on open, after a
   * crash, the parent is unknown and no group leads yet); so does a shard born here (landBornShards)
   * whose first election falls to this node (`campaign`). Precondition: the store made the children's
   * state durable (the caller awaited it: beside the loop for a split's child, awaitLandings).
   */
  protected async landSplits(children: { child: number; parent?: number; campaign?: boolean; remembered?: RememberedQueue | null }[],
    made: "by a split" | "born here" = "by a split"): Promise<void> {
    const records: WalRecord[] = [];
    const logs: [number, GroupLog, ConfState, number | undefined][] = [];
    for (const { child, parent } of children) {
      assert(!this.groups.has(child), () => `split child ${child} is hosted already`);
      assert(!this.fills.has(child) && this.store.fillingFrom(child) === undefined, () => `split child ${child} is landed before its fill is done`);
      assert(this.store.applied(child) === SPLIT_LOG_INDEX, () => `split child ${child} is not at its initial index`);
      const confState = this.store.confState(child)!;
      const hardState = { term: SPLIT_LOG_TERM, vote: 0, commit: SPLIT_LOG_INDEX };
      records.push({ kind: "snapshot", group: child, index: SPLIT_LOG_INDEX, term: SPLIT_LOG_TERM, confState }, { kind: "hard-state", group: child, hardState });
      logs.push([child, { hardState, snapshot: { index: SPLIT_LOG_INDEX, term: SPLIT_LOG_TERM, confState }, start: { index: SPLIT_LOG_INDEX, term: SPLIT_LOG_TERM }, entries: [] }, confState, parent]);
    }
    await this.wal.append(records);
    for (const [i, [child, log, confState, parent]] of logs.entries()) {
      const g = this.addGroup(child, log, confState);
      // The split's part of its parent's queue: exactly what it stored here, and nothing applied since
      // (the child was not hosted). On open after a crash there is none: the child builds its own.
      g.remembered = children[i]!.remembered ?? null;
      this.store.apply([{ group: child, appliedIndex: SPLIT_LOG_INDEX, unlogged: false }]);
      const campaign = children[i]!.campaign === true || (parent !== undefined && this.leaderOf(parent) === this.id);
      if (campaign && g.raft.isVoter(this.id)) g.raft.campaign();
      this.touched.add(g);
      this.cfg.logger?.info({ shard: child, parent: parent ?? null }, made === "born here" ? "hosting a shard born here" : "hosting a shard made by a split");
    }
  }

  /**
   * A record as this replica holds it, or WrongShardError when its id is outside the shard's range now,
   * or the shard is frozen for a merge: once its target absorbed it, the target may take newer writes of
   * the same ids, so a read here could be stale; the gateway waits for the merge and reads there.
   */
  protected servedRead(g: Group, key: string): StoredRecord | undefined | WrongShardError {
    if (g.kind === "shard" && (!owns(g.shard.range, key) || g.shard.frozen !== undefined)) return new WrongShardError(g.id);
    return this.store.get(g.id, key) as StoredRecord | undefined;
  }

  protected stepConfChange(g: Group, seq: number, changes: ConfChangeSingle[]): void {
    const cc = { transition: ConfChangeTransition.Auto, changes, context: `${this.id}:${seq}` };
    // Raft would turn a refused change into an empty entry and its proposer would wait for nothing.
    const refusal = g.raft.role() === Role.Leader ? g.raft.confChangeRefusal(cc) : null;
    if (refusal !== null) {
      const w = g.proposals.get(seq);
      g.proposals.delete(seq);
      if (w !== undefined) this.settle(w, new ConfChangeRefusedError(`group ${g.id}: ${refusal}`, g.raft.confChangeBusy(cc)));
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
  protected applyConfChangeEntry(g: Group, data: Uint8Array, answers: Answer[]): ConfState {
    const cc = decodeConfChange(data);
    const cs = g.raft.applyConfChange(cc);
    const [node, seq] = (cc.context ?? "").split(":").map(Number);
    if (node !== undefined && seq !== undefined) takeWaiter(g, this.id, [node, seq], { ok: true }, answers);
    this.onShardChanged?.(g.id);
    return cs;
  }

  /**
   * Moves one part of a pending split fill (split-fill.ts) each turn; a child whose fill is done is
   * landed in the same turn. A fill's walk reads LMDB, so it starts only once the store has committed
   * what it staged before the split; that commit is awaited beside the loop, never in a turn.
   */
  protected fillSplitChildren(): void {
    if (this.fills.size === 0) return;
    // Not eager (the node world): a part on turns that count a tick, so that a fill spans simulated time.
    if (!this.cfg.splitFillTurnsEager && this.pendingTicks === 0) return;
    this.awaitFillCommits();
    // One part a turn, whatever the number of splits pending: the turn holds every group of the node.
    // (More parts a turn, up to 8 ms of them, did not shorten a fill under load: 50 parts still took
    // 350-700 ms to walk, about what one a turn takes; tried 2026-12-06.)
    const fill = this.movableFill();
    if (fill !== undefined) this.fillPartOf(fill, this.cfg.splitFillKeysPerTurn);
  }

  /** A fill that can move a part now (its walk started), if any. */
  protected movableFill(): SplitFill | undefined {
    for (const fill of this.fills.values()) if (fill.started) return fill;
    return undefined;
  }

  /**
   * Waits for the store beside the loop (`wait`), then runs `done` and asks for a turn to carry on. A
   * store that failed is only logged here: every later call to it throws, so the next turn fails and
   * the node stops.
   */
  private besideTheLoop(wait: Promise<void>, what: string, done: () => void): void {
    wait.then(done, (e: unknown) => this.cfg.logger?.error({ err: e }, `state store failed while ${what}`))
      .finally(() => this.scheduleTurn());
  }

  /**
   * Starts the walks of fills not started once the store committed what is staged now. Not awaited:
   * awaited in a turn (as until 2026-12-07), a commit that took long held the node's every group.
   */
  private awaitFillCommits(): void {
    const fresh = [...this.fills.values()].filter((f) => !f.started && !f.commitAwaited);
    if (fresh.length === 0) return;
    for (const f of fresh) f.commitAwaited = true;
    this.besideTheLoop(this.store.committed(), "a split's fill waited for its commit", () => {
      for (const f of fresh) {
        f.commitAwaited = false;
        f.started = true;
        f.walkStartedAtMs = this.clock.nowMs();
      }
    });
  }

  /**
   * Asks the store to make the state of the children filled since durable, beside the loop; a later
   * turn lands them (landDurable). Not awaited: in a turn this sync held every group of the node up to
   * ~160 ms, once per split on every replica (turn-timer.ts `land`, measured 2026-12-06).
   */
  protected awaitLandings(): void {
    if (this.splitsToLand.length === 0 || this.landingsAwaited.length > 0) return;
    const children = this.splitsToLand;
    this.splitsToLand = [];
    this.landingsAwaited = children;
    this.besideTheLoop(this.store.durable(), "a split's child waited for its sync", () => {
      this.landingsAwaited = [];
      this.landingsDurable.push(...children);
    });
  }

  /** Lands the children whose state the store made durable (awaitLandings). */
  protected async landDurable(): Promise<void> {
    const children = this.landingsDurable;
    this.landingsDurable = [];
    await this.landSplits(children);
  }

  /** Whether a child is filled or landed and not hosted yet (landing() not empty, without building it: the idle check asks each tick). */
  protected landingAny(): boolean {
    return this.fills.size > 0 || this.splitsToLand.length > 0 || this.landingsAwaited.length > 0 || this.landingsDurable.length > 0;
  }

  /** Children filled and not hosted yet: placement counts them as hosted here, and they are not dropped. */
  protected landing(): number[] {
    return [...this.fills.keys(), ...[this.splitsToLand, this.landingsAwaited, this.landingsDurable].flat().map((s) => s.child)];
  }

  /** Finishes the pending fills from `parent` at once (its state is about to be replaced or deleted), durably. */
  protected async finishFillsFrom(parent: number): Promise<void> {
    const pending = [...this.fills.values()].filter((f) => f.parent === parent);
    if (pending.length === 0) return;
    await this.store.flushed();
    for (const f of pending) {
      f.started = true;
      for (let parts = 0; this.fills.has(f.child); parts++) {
        assert(parts < 1_000_000, () => `split child ${f.child}: its fill does not end`);
        this.fillPartOf(f, 65_536);
      }
    }
    await this.store.flushed();
  }

  /**
   * On open: split children that a crash left with records under their parent (the fill starts its walk
   * over: what it moved before is no longer there) are filled at once. The caller lands them.
   */
  protected async fillAtOpen(children: readonly number[]): Promise<void> {
    for (const child of children) {
      const parent = this.store.fillingFrom(child);
      if (parent === undefined) continue;
      assert(this.store.applied(parent) > 0, () => `split child ${child}: its parent ${parent} has no state here`);
      const range = this.store.shardState(child)?.range;
      assert(range !== undefined, () => `split child ${child} has no range`);
      this.fills.set(child, newFill(child, parent, range, null, this.clock.nowMs()));
      await this.finishFillsFrom(parent);
    }
    this.splitsToLand = this.splitsToLand.filter((s) => !children.includes(s.child));
  }

  private fillPartOf(fill: SplitFill, keysMax: number): void {
    const movedBefore = fill.keysMoved;
    const { changes, done } = fillPart(this.store, fill, keysMax);
    this.counters.splitFillKeysMoved += fill.keysMoved - movedBefore;
    this.store.apply(changes);
    // The parent's index drops what moved; the child's is built from its records once it is hosted.
    if (changes.length > 0) this.replicaObserver?.applied(changes);
    this.counters.splitFillParts++;
    if (!done) return;
    this.fills.delete(fill.child);
    this.splitsToLand.push({ child: fill.child, parent: fill.parent, remembered: fill.remembered });
    this.cfg.logger?.info({ shard: fill.child, parent: fill.parent, moved: fill.keysMoved, parts: fill.parts, ms: Math.round(this.clock.nowMs() - fill.startedAtMs),
      commitWaitMs: fill.walkStartedAtMs === undefined ? null : Math.round(fill.walkStartedAtMs - fill.startedAtMs) },
      "moved a split's records to its child");
  }

  /**
   * Shards born with their voters (a collection created at runtime; issue 13): every voter starts the
   * group itself from the configuration the metadata recorded, as founders do, and the first voter the
   * metadata lists (placement spreads them) starts the first election at once. No snapshot is sent, no
   * move operator runs: the shard is replicated from its first entry.
   */
  private async landBornShards(records: ShardRecord[]): Promise<void> {
    for (const r of records) {
      assert(this.store.applied(r.id) === 0, () => `shard ${r.id}: state left from an earlier replica`);
      const voters = r.replicas.map((x) => x.node).sort((a, b) => a - b);
      const confState: ConfState = { voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
      this.store.apply([{ group: r.id, appliedIndex: SPLIT_LOG_INDEX, confState, shard: { range: r.range, splits: [] }, unlogged: true }]);
    }
    // In the turn: a shard is born once per collection made, not under load.
    await this.store.flushed();
    await this.landSplits(records.map((r) => ({ child: r.id, campaign: r.replicas[0]!.node === this.id })), "born here");
  }

  /**
   * Hosts the shards the metadata places here and drops those it no longer does (see hosting.ts).
   * Runs at the start of a turn, when no Ready is outstanding. A drop is made durable in the log
   * before the group's state is deleted; requests waiting on it are told it has no leader here.
   */
  protected async reconcileHosting(): Promise<void> {
    const caughtUp = this.metaCaughtUp();
    this.hostingDue = false;
    // Until then, a pass each tick decides again (not each turn: it walks every shard).
    this.hostingPending = !caughtUp;
    // A child being filled or landed is hosted as far as placement goes: it has state here, and is landed soon.
    const landing = new Set(this.landing());
    const hosted = new Set([...this.groups.values()].filter((g) => g.kind === "shard").map((g) => g.id).concat([...landing]));
    const changes = hostingChanges(this.meta, this.id, hosted, caughtUp, (g) => this.store.applied(g));
    const create = changes.create;
    // Such a child is dropped once landed: until then there is no group to drop. Decide again each tick.
    const drop = changes.drop.filter((id) => !landing.has(id));
    if (drop.length < changes.drop.length) this.hostingPending = true;
    const born: ShardRecord[] = [];
    for (const id of create) {
      const record = this.meta.shards.get(id)!;
      if (bornWithVoters(record, this.id)) {
        // Only on a caught-up metadata: an old state replayed after a restart may show as new a shard
        // this node hosted and dropped since, and a second start of its replica would have forgotten
        // its votes. Until then, a pass each tick decides again (hostingPending).
        if (caughtUp) born.push(record);
        continue;
      }
      // Leftovers of an earlier replica here are gone: dropGroup ran, or open() cleaned them up.
      assert(this.store.applied(id) === 0, () => `shard ${id}: state left from an earlier replica`);
      this.addGroup(id, emptyLog(), EMPTY_CONF);
      this.cfg.logger?.info({ shard: id }, "hosting a replica");
    }
    if (born.length > 0) await this.landBornShards(born);
    if (drop.length === 0) return;
    // A parent's keys go with it: its children's records are moved first (landed in the next turn).
    for (const id of drop) await this.finishFillsFrom(id);
    await this.wal.append(drop.map((group) => ({ kind: "drop", group }) satisfies WalRecord));
    for (const id of drop) {
      const g = this.groups.get(id)!;
      this.groups.delete(id);
      this.ticking.delete(g);
      this.parked.delete(g);
      this.successorCampaignTicks.delete(g);
      this.lastLeaders.delete(id);
      this.leaderSinceMs.delete(id);
      const gone = new NotHostedError(id);
      this.failWaiters(g, new InterruptedError(`the replica of shard ${id} on node ${this.id} was dropped before the write was applied here; it may still be applied`), gone);
      for (const w of g.transferWaiters) this.settle(w, "aborted");
      await this.store.dropGroup(id);
      this.replicaObserver?.dropped(id);
      this.cfg.logger?.info({ shard: id }, "dropped a replica");
    }
  }

  /**
   * A ReadIndex request in flight when a shard's leader changes is lost (the old leader drops it, or
   * never answers); reads are idempotent, so ask again, of the new leader, in the next turn, instead of
   * letting the client wait for its timeout.
   */
  protected retryReadsOnLeaderChange(readies: [Group, Ready][]): void {
    for (const [g, rd] of readies) {
      if (rd.softState === null || g.reads.size === 0) continue;
      for (const [ctx, r] of g.reads) {
        // Answered rounds, and session reads (which wait for a version, with no round).
        if (r.index !== null || r.version !== null) continue;
        this.counters.readsRetried++;
        this.enqueue({ kind: "read", group: g.id, ctx });
      }
    }
  }

  /** Groups with a gateway waiting for a leader that fell silent to show signs of life again (awaitLeader orBack). */
  protected readonly leadersAwaitedBack = new Set<Group>();

  /**
   * Once a tick: a leader that fell silent and is heard again while it still leads here answers the
   * gateways waiting for it (what they sent it is repeatable: they send it again). No Ready need come of
   * hearing it again, so this is not left to answerLeaderWaiters.
   */
  protected answerLeadersBack(): void {
    for (const g of this.leadersAwaitedBack) {
      const lead = g.raft.lead();
      const back = (w: LeaderWaiter) => w.orBack && lead !== 0 && w.refused === lead && !this.peerLost(lead);
      const waiting = g.leaderWaiters;
      if (waiting.some(back)) {
        g.leaderWaiters = waiting.filter((w) => !back(w));
        for (const w of waiting) {
          if (!back(w)) continue;
          this.counters.leaderReturns++;
          this.settle(w, lead);
        }
      }
      if (!g.leaderWaiters.some((w) => w.orBack)) this.leadersAwaitedBack.delete(g);
    }
  }

  protected answerLeaderWaiters(readies: [Group, Ready][]): void {
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

  /** Applies every group's committed entries (staged in the state store as one change set), then answers clients; returns how many it answered. */
  protected applyCommitted(readies: [Group, Ready][]): number {
    // When this turn's entries began to apply: traced proposals' commit spans end here (host time, not
    // the injected clock: span times are for people, and no decision reads them).
    const applyStartMs = performance.now();
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
        remembered: () => (g.remembered ??= RememberedQueue.from(this.scanOwned(g.id, Number.MAX_SAFE_INTEGER, RECORDS_END))),
        pendingFills: () => [...this.fills.values()].filter((f) => f.parent === g.id),
        packed: (pick) => this.store.packed(g.id, pick),
      };
      const applied = applyShardEntries(g.id, rd.committedEntries, g.shard, reader,
        (data) => this.applyConfChangeEntry(g, data, answers), () => g.raft.confState(), this.mutations);
      for (const [origin, result] of applied.results) takeWaiter(g, this.id, origin, result, answers);
      const changed = applied.shard !== g.shard;
      g.shard = applied.shard;
      for (const { child, range, remembered } of applied.children) {
        if (applied.filled.includes(child)) this.splitsToLand.push({ child, parent: g.id, remembered });
        else this.fills.set(child, newFill(child, g.id, range, remembered, this.clock.nowMs()));
      }
      // Fills an absorb finished (shard-apply.ts finishFills): the children are landed as they are.
      for (const child of applied.filled) {
        const fill = this.fills.get(child);
        if (fill === undefined) continue;
        this.fills.delete(child);
        this.splitsToLand.push({ child, parent: g.id, remembered: fill.remembered });
      }
      if (changed) this.onShardChanged?.(g.id);
      this.counters.applied += applied.commands;
      sizeBytes += applied.sizeBytes;
      changes.push(...applied.changes);
    }
    this.store.apply(changes, sizeBytes);
    if (this.replicaObserver !== null) {
      // A change of range with no record changed (a split: its records move later) is news to an index too.
      const shardChanges = changes.filter((c) => c.group !== META_GROUP && ((c.puts?.length ?? 0) > 0 || (c.deletes?.length ?? 0) > 0 || c.shard !== undefined));
      if (shardChanges.length > 0) this.replicaObserver.applied(shardChanges);
    }
    let answered = answers.length;
    for (const [w, result] of answers) {
      if (w.spans !== undefined) proposalApplied(w.spans, applyStartMs);
      this.settle(w, result);
    }
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
      const appliedVersion = versionAt(g.shard, applied);
      for (const [ctx, r] of g.reads) {
        if ((r.index !== null && r.index <= applied) || (r.version !== null && r.version <= appliedVersion)) {
          g.reads.delete(ctx);
          if (r.askedAtMs !== null && r.askedAtMs > g.freshAsOfMs) g.freshAsOfMs = r.askedAtMs;
          this.settle(r, this.servedRead(g, r.key));
          answered++;
        }
      }
    }
    return answered;
  }

  /** Applies committed metadata entries to the MetaState; returns the records they changed. */
  protected applyMetaEntries(g: Group, rd: Ready, answers: Answer[]): GroupChanges {
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
        // A copy: later commands of this turn mutate the live state, and the store serializes only when the turn's changes are staged.
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
   * Only the groups of this turn's Readies can have applied more (idle groups cost nothing here), but
   * groups whose entries keep the WAL's old segments from being deleted compact whatever their size.
   *
   * The store's sync is awaited beside the loop, not in the turn: in a turn it held every group of the
   * node ~100 ms each time under load (the most frequent slow turn: turn-timer.ts). A later turn cuts
   * the logs (compactDurable). One compaction waits at a time.
   */
  protected maybeCompact(active: readonly Group[]): void {
    if (this.compactionAwaited) return;
    const due: Group[] = [];
    for (const g of active) {
      if (this.groups.get(g.id) !== g) continue;
      // By count, and by bytes: a log of large entries (batches of vectors) would hold the node's memory.
      if (g.raft.applied() - g.storage.firstIndex() + 1 > this.cfg.compactAfterEntries || g.storage.sizeBytes > this.cfg.compactAfterBytes) due.push(g);
    }
    for (const id of this.wal.holdingBack()) {
      const g = this.groups.get(id);
      if (g !== undefined && !due.includes(g) && Math.min(g.raft.applied(), this.store.applied(id)) >= g.storage.firstIndex()) due.push(g);
    }
    if (due.length === 0) return;
    // Indexes taken before the wait: durable() makes durable what was applied before the call.
    const cuts = due.map((g) => ({ g, index: Math.min(g.raft.applied(), this.store.applied(g.id)) }));
    this.compactionAwaited = true;
    this.besideTheLoop(this.store.durable(), "a log compaction waited for its sync", () => {
      this.compactionAwaited = false;
      this.compactionsDurable.push(...cuts);
    });
  }

  /**
   * Cuts the logs of compactions whose indexes the store made durable (maybeCompact). A group replaced
   * since (dropped, hosted again), or whose log a snapshot install moved past the index, is left as is.
   */
  protected async compactDurable(): Promise<void> {
    const cuts = this.compactionsDurable;
    this.compactionsDurable = [];
    const records: WalRecord[] = [];
    for (const { g, index } of cuts) {
      if (this.groups.get(g.id) !== g || index < g.storage.firstIndex()) continue;
      assert(index <= g.raft.applied(), () => `group ${g.id}: compaction to ${index} beyond its applied index ${g.raft.applied()}`);
      const term = g.storage.compact(index);
      records.push({ kind: "compact", group: g.id, index, term });
    }
    // Unsynced: a compaction lost in a crash leaves a longer log to replay, and the WAL syncs a segment
    // before it deletes any (wal.ts rotate).
    await this.wal.append(records, false);
  }
}
