/**
 * The multi-raft host's turn (the loop in multi-raft.ts's header): inputs taken in one batch, every
 * group's Ready collected, messages sent, snapshots installed, entries applied, one WAL batch synced,
 * messages that had to wait sent, advance. Also the inbound side: frames received and unpacked into
 * inputs, node-level messages to and from peers.
 */

import { type Message, type NodeId, type Ready, ProposalDroppedError, Role } from "../raft/index.js";

import type { WalRecord } from "../storage/wal-record.js";
import type { Envelope } from "../transport/transport.js";

import { type Group, NODE_GROUP, NotLeaderError, type ProposeInput, type Waiter, planeOf } from "./group.js";
import type { AsyncAck, CommandResult } from "./records.js";
import { wakes } from "./quiescence.js";
import { versionAt } from "./shard-apply.js";

import { type BeatTuple, WireError, isBeat, packBeat, packMessage, splitCommitNotices, unpackBeat, unpackMessage } from "./wire.js";

import { appendTo, loadMeta, mustWait, encoder } from "./multi-raft-state.js";
import { NodeApply } from "./multi-raft-apply.js";
import { assert } from "../util/assert.js";
import { proposalAppended } from "../util/tracing.js";

/** A turn that took at most this many inputs is light enough to sync its WAL batch on the loop's thread (inlineSync). */
export const INLINE_SYNC_INPUTS_MAX = 8;
/** ... while the last sync took at most this long; a slower disk syncs through the thread pool again. */
export const INLINE_SYNC_MS_MAX = 5;

/**
 * Whether a turn's fdatasync blocks the loop's thread instead of going through libuv's thread pool.
 * Through the pool a sync costs two thread wakeups more (a pool thread to start it, the loop to hear
 * that it ended), on the path of every lone write: a follower's append is answered after its sync. While
 * it blocks, nothing else runs on the loop (HTTP requests and peer messages wait in their sockets), which
 * a turn that took many inputs would make many others wait for; and a slow disk must not freeze health
 * checks and metrics as well, hence the bound on the last sync's time.
 */
export function inlineSync(inputsTaken: number, lastSyncMs: number): boolean {
  return inputsTaken <= INLINE_SYNC_INPUTS_MAX && lastSyncMs <= INLINE_SYNC_MS_MAX;
}

export abstract class NodeTurn extends NodeApply {
  /**
   * Mutation ack-before-apply: the proposals just handed to Raft are answered as written at the indexes
   * they were given, before they commit or apply (a lost or refused write looks acknowledged).
   */
  private ackBeforeApply(g: Group, batch: ProposeInput[]): void {
    const last = g.raft.lastIndex();
    for (const [i, p] of batch.entries()) {
      const w = g.proposals.get(p.seq);
      if (w === undefined) continue;
      g.proposals.delete(p.seq);
      this.settle(w, { ok: true, version: versionAt(g.shard, last - (batch.length - 1 - i)) });
    }
  }

  /** The log indexes Raft just gave a batch: async proposals wait for them to be durable; an absorb moves baseSettledAfter. */
  private noteProposed(g: Group, batch: ProposeInput[]): void {
    const first = g.raft.lastIndex() - batch.length + 1;
    g.ownAppended.push([first, first + batch.length - 1]);
    for (const [i, p] of batch.entries()) {
      const spans = g.proposals.get(p.seq)?.spans;
      if (spans !== undefined) proposalAppended(spans, first + i, g.raft.term());
      if (p.changesBase === true) g.baseSettledAfter = first + i;
      if (p.async === true) g.asyncAcks.push({ seq: p.seq, index: first + i });
    }
  }

  /**
   * Answers the async proposals whose entries this turn's WAL batch made durable here (the leader's
   * own append; a quorum may not hold them yet). Only while the shard's version base and range are
   * settled up to them (no absorb, split, freeze or entry this leader did not propose unapplied before
   * them: baseSettledAfter): otherwise their outcome is not known yet, and they are answered once
   * applied, as sync writes.
   */
  private ackDurable(readies: [Group, Ready][]): void {
    for (const [g, rd] of readies) {
      const own = g.ownAppended;
      g.ownAppended = [];
      if (g.kind !== "shard" || rd.entries.length === 0) continue;
      if (g.raft.role() !== Role.Leader) {
        // No longer leading: what waits is answered by its outcome once applied, or times out.
        g.asyncAcks = [];
        continue;
      }
      // An entry this leader did not propose itself (a no-op, a follower's forwarded proposal) may be
      // an absorb, split or freeze: async writes after it wait until it is applied.
      for (const e of rd.entries) {
        if (e.index > g.baseSettledAfter && !own.some(([a, b]) => e.index >= a && e.index <= b)) g.baseSettledAfter = e.index;
      }
      if (g.asyncAcks.length === 0) continue;
      const first = rd.entries[0]!.index;
      const durable = rd.entries[rd.entries.length - 1]!.index;
      const settled = this.store.applied(g.id) >= g.baseSettledAfter;
      while (g.asyncAcks.length > 0 && g.asyncAcks[0]!.index <= durable) {
        const a = g.asyncAcks.shift()!;
        const w = g.proposals.get(a.seq);
        // An entry of another term at that index is not this proposal's: it is answered by its outcome.
        const ours = a.index >= first && rd.entries[a.index - first]!.term === g.raft.term();
        if (w === undefined || !settled || !ours) continue;
        g.proposals.delete(a.seq);
        this.settle(w as Waiter<CommandResult | AsyncAck>, { ok: true, async: true, version: versionAt(g.shard, a.index), index: a.index });
      }
    }
  }

  protected receive(from: NodeId, envs: Envelope[]): void {
    // A dead peer's last frames, read after its close, are not its return: they would wake groups for it.
    if (this.peers.heard(from, this.clock.nowMs(), this.cfg.heartbeatTicks * this.cfg.tickMs)) this.enqueue({ kind: "peerBack", peer: from });
    this.noticeIfRemoved(from);
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
        const removed = (e.msg as { removed?: unknown }).removed;
        if (typeof removed === "number") {
          this.removedBy(from, removed);
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
        this.cfg.logger?.warn({ peer: from, err: err.message }, "dropped a malformed message");
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

  protected scheduleTurn(): void {
    if (this.turnScheduled || this.stopped) return;
    this.turnScheduled = true;
    this.clock.defer(() => {
      this.turnScheduled = false;
      if (this.turnRunning !== null || this.stopped || this.failure !== null) return;
      this.turnRunning = this.turn()
        .catch((e: unknown) => {
          this.failure = e instanceof Error ? e : new Error(String(e));
          this.cfg.logger?.error({ err: this.failure }, "turn failed: the node stops");
        })
        .finally(() => {
          this.turnRunning = null;
          // A failed turn may have left a Ready unadvanced: the node is stopping, nothing is asked of Raft
          // again (asking threw here, as an unhandled rejection that took the process down; found by
          // the node-world simulator with a failing WAL write).
          if (this.failure !== null) return;
          if (this.inputs.length > 0 || this.pendingTicks > 0 || (this.splitsToLand.length > 0 && this.landingsAwaited.length === 0) || this.landingsDurable.length > 0 || (this.cfg.splitFillTurnsEager && this.movableFill() !== undefined) || this.compactionsDurable.length > 0 || this.anyReady()) this.scheduleTurn();
        });
    });
  }

  /**
   * The groups that may have a Ready: those that tick (not quiescent), those an input or a call reached
   * since the last turn (`touched`), and those that had a Ready last turn (advance may leave more). A
   * quiescent group nothing reached has none: its Raft state changes only through those calls. With
   * thousands of idle shards this keeps a turn's cost to the groups that did something (issue 13).
   */
  private *mayBeReady(): Generator<Group> {
    const seen = new Set<Group>();
    for (const set of [this.ticking, this.touched, this.hadReady]) {
      for (const g of set) {
        if (seen.has(g) || this.groups.get(g.id) !== g) continue;
        seen.add(g);
        yield g;
      }
    }
  }

  /** No input, no group an input or a call reached, no Ready left, no hosting or split work, no parked proposal. */
  protected nothingToDo(): boolean {
    return this.inputs.length === 0 && this.touched.size === 0 && this.hadReady.size === 0 && !this.hostingDue && !this.hostingPending &&
      !this.landingAny() && this.parked.size === 0;
  }

  protected anyReady(): boolean {
    for (const g of this.mayBeReady()) if (g.raft.hasReady()) return true;
    return false;
  }

  protected async turn(): Promise<void> {
    this.turnTimer.start(this.clock.nowMs());
    try {
      await this.turnSteps();
    } finally {
      const slow = this.turnTimer.end(this.clock.nowMs());
      if (slow !== null) {
        this.counters.slowTurns++;
        this.cfg.logger?.warn({ ...slow }, `a loop turn took ${slow.totalMs} ms, ${slow.phaseMs} ms of it in ${slow.phase}: no group here sent or answered meanwhile`);
      }
    }
  }

  private async turnSteps(): Promise<void> {
    const timer = this.turnTimer;
    this.counters.turns++;
    this.store.commitIfDue(this.clock.nowMs());
    timer.lap("commit", this.clock.nowMs());
    this.fillSplitChildren();
    timer.lap("fill", this.clock.nowMs());
    if (this.compactionsDurable.length > 0) {
      await this.compactDurable();
      timer.lap("compact", this.clock.nowMs());
    }
    this.awaitLandings();
    if (this.landingsDurable.length > 0) {
      await this.landDurable();
      timer.lap("land", this.clock.nowMs());
    }
    if (this.hostingDue) {
      await this.reconcileHosting();
      timer.lap("hosting", this.clock.nowMs());
    }
    this.takeInputs();
    const readies: [Group, Ready][] = [];
    for (const g of this.mayBeReady()) {
      if (!g.raft.hasReady()) continue;
      const rd = g.raft.ready();
      readies.push([g, rd]);
      timer.ready(rd.entries.length, rd.committedEntries.length);
    }
    this.touched.clear();
    this.hadReady = new Set(readies.map(([g]) => g));
    timer.lap("ready", this.clock.nowMs());
    if (readies.length === 0) return;
    // Messages that may leave before anything is durable (a leader's appends, heartbeats, votes requests).
    // Those that only tell a peer of a commit index wait until the clients this turn answers are answered:
    // a socket write costs ~50 us here, and sending two commit notices first put ~0.1 ms on every
    // single write's answer (measured).
    const beats = new Map<NodeId, BeatTuple[]>();
    const commitNotices: [number, Message[]][] = [];
    for (const [g, rd] of readies) {
      const { now, later } = splitCommitNotices(rd.messages);
      this.send(g.id, now, beats);
      if (later.length > 0) commitNotices.push([g.id, later]);
    }
    this.sendBeats(beats);
    this.transport.flush();
    // Persist: snapshots first (the state store must hold one before the log points at it), then one WAL batch.
    const records: WalRecord[] = [];
    for (const [g, rd] of readies) {
      if (rd.snapshot !== null) {
        const m = rd.snapshot.meta;
        // The install replaces the parent's keys, the child's among them: those move first.
        await this.finishFillsFrom(g.id);
        await this.store.installSnapshot(g.id, m.index, m.term, rd.snapshot.data, m.confState);
        this.counters.snapshotsInstalled++;
        this.counters.snapshotBytesInstalled += rd.snapshot.data.byteLength;
        if (g.kind === "shard") {
          g.shard = this.loadShardState(g.id);
          g.remembered = null;
          // A split the snapshot covers was never applied here, so its child was not made by it: hosting
          // decides again, and hosts the child empty for its leader to fill (hosting.ts madeBySplit).
          this.hostingDue = true;
          this.replicaObserver?.replaced(g.id);
        }
        if (g.kind === "meta") {
          this.meta = loadMeta(this.store);
          this.syncPeers();
          this.hostingDue = true;
          this.metaWatch.changed(["*"]);
        }
        records.push({ kind: "snapshot", group: g.id, index: m.index, term: m.term, confState: m.confState });
      }
      if (rd.entries.length > 0) records.push({ kind: "entries", group: g.id, entries: rd.entries });
      if (rd.hardState !== null) records.push({ kind: "hard-state", group: g.id, hardState: rd.hardState });
    }
    timer.lap("snapshots", this.clock.nowMs());
    // Committed entries are applied (and their clients answered) before this turn's fsync, not after:
    // they are durable on a quorum already, and a leader counts its own entries only once persisted,
    // so nothing answered here depends on the write below. It takes one fsync off every write's path.
    // The state store stays behind the durable log: it commits to LMDB only at the start of a later
    // turn, when everything this turn writes is on disk.
    const answered = this.applyCommitted(readies);
    timer.lap("apply", this.clock.nowMs());
    if (commitNotices.length > 0) {
      // The answers are written by their requests' continuations: let them run before the notices go.
      if (answered > 0) await new Promise<void>((resolve) => this.clock.defer(resolve));
      for (const [group, msgs] of commitNotices) this.send(group, msgs, beats);
      this.sendBeats(beats);
      this.transport.flush();
      timer.lap("answers", this.clock.nowMs());
    }
    // Records of this turn's synced WAL batch (0: none), for the metrics once the messages after it are sent.
    let walSyncedRecords = 0;
    if (records.length > 0) {
      // Raft needs durability only for entries, term, vote and snapshots (Ready.mustSync); a batch that
      // only moves commit indexes is written without waiting for the disk.
      const sync = readies.some(([, rd]) => rd.mustSync || rd.snapshot !== null);
      const started = this.clock.nowMs();
      await this.wal.append(records, sync, inlineSync(this.inputsTaken, this.lastWalSyncMs));
      if (sync) {
        this.lastWalSyncMs = this.clock.nowMs() - started;
        walSyncedRecords = records.length;
        this.counters.walBatches++;
      }
      this.ackDurable(readies);
      timer.lap("wal", this.clock.nowMs());
    }
    for (const [g, rd] of readies) {
      if (rd.softState?.role === Role.Leader) {
        this.counters.leadershipsWon++;
        // A split's child led at last: its split can be recorded in the metadata (shard-agent.ts).
        if (g.kind === "shard" && !this.meta.shards.has(g.id)) this.onShardChanged?.(g.id);
        // Entries of earlier terms not applied yet may hold an absorb.
        g.baseSettledAfter = g.raft.lastIndex();
      }
      if (rd.softState?.role === Role.Candidate) this.counters.electionsStarted++;
    }
    for (const [g, rd] of readies) {
      if (rd.softState === null || rd.softState.lead === 0 || this.lastLeaders.get(g.id) === rd.softState.lead) continue;
      // The first leader this process learns of (after a start, or of a new replica) is not a change.
      if (this.lastLeaders.has(g.id)) this.counters.leaderChanges++;
      this.lastLeaders.set(g.id, rd.softState.lead);
      this.leaderSinceMs.set(g.id, this.clock.wallMs());
    }
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
    // Observed after the answers to the sync went out: histograms cost ~10 us a turn here (profiled), off
    // a follower's answer and a leader's commit.
    if (walSyncedRecords > 0) this.onWalSync?.(this.lastWalSyncMs / 1000, walSyncedRecords);
    for (const [g] of readies) g.raft.advance();
    this.maybeCompact(readies.map(([g]) => g));
    timer.lap("after", this.clock.nowMs());
  }

  protected takeInputs(): void {
    const inputs = this.inputs;
    this.inputs = [];
    this.inputsTaken = inputs.length;
    const readsByGroup = new Map<Group, string[]>();
    const proposalsByGroup = new Map<Group, ProposeInput[]>();
    // Lost peers first: a survivor's vote request that arrived with the news of its leader's loss must
    // find the lease ended, or it is ignored and the shard waits a whole election timeout more.
    for (const input of inputs) {
      if (input.kind === "peerLost") this.leaderGone(input.peer);
      else if (input.kind === "peerBack") this.peerBack(input.peer);
    }
    for (const input of inputs) {
      if (input.kind === "propose" || input.kind === "read") this.queuedRequests--;
      if (input.kind === "peerBack") continue; // handled above; it touches the groups it wakes
      const g = input.kind === "unreachable" || input.kind === "peerLost" ? undefined : this.groups.get(input.group);
      if (g !== undefined) this.touched.add(g);
      else for (const grp of this.groups.values()) this.touched.add(grp); // a peer's loss reaches every group
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
            this.setQuiesced(g, true);
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
          break; // handled above, before every other input
      }
    }
    // Proposals that waited out a leadership transfer go first, in their order.
    for (const g of this.parked) {
      assert(g.parkedProposals.length > 0, () => `group ${g.id} is marked parked with nothing parked`);
      if (mustWait(g)) continue;
      proposalsByGroup.set(g, [...g.parkedProposals, ...(proposalsByGroup.get(g) ?? [])]);
      this.touched.add(g);
      g.parkedProposals = [];
      this.parked.delete(g);
    }
    // One proposal step per shard per turn: the leader appends them as one batch and replicates them in
    // one Append per follower (stepped one by one, each became its own Append and its own response).
    for (const [g, batch] of proposalsByGroup) {
      // A leader hands over, or the shard is between leaders: Raft would drop these. They were never
      // proposed, so they wait (until a leader is known, or their timeout) and go to whoever leads then
      // (a follower forwards them), instead of failing with 503.
      if (mustWait(g)) {
        g.parkedProposals.push(...batch);
        this.parked.add(g);
        continue;
      }
      try {
        const lastBefore = g.raft.lastIndex();
        g.raft.propose(...batch.map((p) => p.data));
        // A follower's Raft forwards them to the leader: their indexes are not known here.
        if (g.kind === "shard" && g.raft.role() === Role.Leader) {
          assert(g.raft.lastIndex() === lastBefore + batch.length, "a leader appends each proposal of a batch");
          this.noteProposed(g, batch);
        }
        if (this.mutations.has("ack-before-apply") && g.kind === "shard") this.ackBeforeApply(g, batch);
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
    const scanAll = ticks > 0 && this.scanAllDue();
    if (ticks > 0) this.tickQuiescence(ticks, scanAll);
    // Usually empty: the check costs the hot loop nothing then.
    const waived = this.ticksWaived.size > 0 ? this.ticksWaived : null;
    for (let i = 0; i < ticks; i++) {
      for (const g of this.ticking) {
        if (waived?.has(g) === true) continue;
        g.raft.tick();
        this.counters.groupTicks++;
      }
    }
    this.ticksWaived.clear();
    if (ticks > 0) this.retrySuccessorCampaigns(ticks);
    if (ticks > 0) this.failWithoutQuorum(scanAll);
    if (ticks > 0) this.reportLostPeers();
    if (ticks > 0 && this.leadersAwaitedBack.size > 0) this.answerLeadersBack();
  }

  /** Sends Raft messages; heartbeats are collected per peer into `beats` (see sendBeats). */
  protected send(group: number, msgs: Message[], beats: Map<NodeId, BeatTuple[]>): void {
    for (const m of msgs) {
      if (isBeat(m)) {
        appendTo(beats, m.to, packBeat(group, m));
      } else {
        this.transport.send(m.to, planeOf(m.type), { group, msg: packMessage(m) });
      }
    }
  }

  /** One message per peer carries the heartbeats of every group. */
  protected sendBeats(beats: Map<NodeId, BeatTuple[]>): void {
    for (const [to, list] of beats) this.transport.send(to, "control", { group: NODE_GROUP, msg: { beats: list } });
    beats.clear();
  }
}
