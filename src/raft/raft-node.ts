/**
 * The host-facing interface of one Raft replica: inputs as method calls, outputs as a Ready batch.
 *
 * Host contract, for each Ready:
 *   1. send `messages` (they may leave before anything is durable);
 *   2. persist `snapshot`, `entries` and `hardState` (fsync when `mustSync`);
 *   3. send `messagesAfterPersist`;
 *   4. apply `committedEntries` (calling applyConfChange for configuration entries) and serve
 *      `readStates` once applied up to their index;
 *   5. call advance().
 * step() and the other inputs may be called between ready() and advance(); ready() may not be called
 * again before advance().
 */
import { assert } from "../util/assert.js";
import { type ConfChange, ConfChangeTransition, encodeConfChange } from "./confchange.js";
import type { RaftConfig } from "./config.js";
import { type LeaderTransferResult, ProposalDroppedError, Raft } from "./raft.js";
import { ProgressState } from "./progress.js";
import { confChangeBusy, confChangeRefusal } from "./raft-leader.js";
import { type JointConfig, jointQuorumReached } from "./quorum.js";

import {
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type NodeId,
  type ReadState,
  type Snapshot,
  EntryType,
  MessageType,
  Role,
  hardStateEqual,
  isLocalMessage,
  message,
} from "./types.js";

export interface SoftState {
  lead: NodeId;
  role: Role;
}

export interface Ready {
  softState: SoftState | null;
  /** Changed hard state to persist, or null. */
  hardState: HardState | null;
  /** Snapshot to persist and install, or null. */
  snapshot: Snapshot | null;
  /** Entries to append to stable storage (may replace a suffix). */
  entries: Entry[];
  committedEntries: Entry[];
  messages: Message[];
  messagesAfterPersist: Message[];
  readStates: ReadState[];
  leaderTransfers: LeaderTransferResult[];
  /** Whether the persisted state must be fsynced before messagesAfterPersist leave. */
  mustSync: boolean;
}

export interface PeerStatus {
  match: number;
  next: number;
  state: ProgressState;
  isLearner: boolean;
  recentActive: boolean;
  inflight: number;
  pendingSnapshot: number;
}

export interface Status {
  id: NodeId;
  term: number;
  vote: NodeId;
  lead: NodeId;
  role: Role;
  commit: number;
  applied: number;
  lastIndex: number;
  firstIndex: number;
  config: ConfState;
  isLearner: boolean;
  leadTransferee: NodeId;
  /** Present on the leader only. */
  progress: Map<NodeId, PeerStatus> | null;
}

/**
 * Hosts use the queries below (role, term, log positions, configuration, progress) and never reach into
 * `raft` itself: the field is for raft/'s own tests and simulator hooks, and src/util/layering.test.ts
 * refuses `.raft.raft`, `trk`, `raftLog` outside raft/.
 */
export class RaftNode {
  /** Internal to raft/ (see the class comment). */
  readonly raft: Raft;
  private prevSoftState: SoftState;
  private prevHardState: HardState;
  /** The Ready handed out and not yet advanced. */
  private inProgress: Ready | null = null;
  /** Self-addressed messages of the Ready in progress, stepped once it is durable. */
  private stepsOnAdvance: Message[] = [];

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.prevSoftState = this.softState();
    this.prevHardState = this.raft.hardState();
  }

  /** Starts a brand-new cluster member set (only on a fresh storage). */
  static bootstrapConfState(voters: NodeId[], learners: NodeId[] = []): ConfState {
    return { voters: [...voters], votersOutgoing: [], learners: [...learners], learnersNext: [], autoLeave: false };
  }

  private softState(): SoftState {
    return { lead: this.raft.lead, role: this.raft.role };
  }

  tick(): void {
    this.raft.tick();
  }

  /** See Raft.resumeTicking: the host ticks this replica again after it was quiescent. */
  resumeTicking(leaderLost: boolean): void {
    this.raft.resumeTicking(leaderLost);
  }

  /** See Raft.forgetLeader: the leader's node is gone; grant pre-votes now, campaign at the timeout. */
  forgetLeader(): void {
    this.raft.forgetLeader();
  }

  /** See Raft.restartElectionClock: this follower campaigns no sooner than a whole election timeout from now. */
  restartElectionClock(): void {
    this.raft.restartElectionClock();
  }

  /** The leader this replica last knew, kept through its own campaigns (NONE if it never knew one). */
  lastLead(): NodeId {
    return this.raft.lastLead;
  }

  /** See Raft.yieldCampaign: this pre-candidate follows again, so that another voter's campaign goes first. */
  yieldCampaign(): void {
    this.raft.yieldCampaign();
  }

  campaign(): void {
    this.raft.step(message({ type: MessageType.Hup, from: this.raft.id }));
  }

  /** Proposes one or more payloads as consecutive entries. Throws ProposalDroppedError if refused. */
  propose(...data: Uint8Array[]): void {
    assert(data.length > 0, "nothing to propose");
    const entries: Entry[] = data.map((d) => ({ term: 0, index: 0, type: EntryType.Normal, data: d }));
    this.raft.step(message({ type: MessageType.Propose, from: this.raft.id, entries }));
  }

  proposeConfChange(cc: ConfChange): void {
    const entry: Entry = { term: 0, index: 0, type: EntryType.ConfChange, data: encodeConfChange(cc) };
    this.raft.step(message({ type: MessageType.Propose, from: this.raft.id, entries: [entry] }));
  }

  /** Applies a committed configuration change (host step 4). */
  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  step(m: Message): void {
    // Local message types must come through the dedicated methods, never from the network.
    if (isLocalMessage(m.type)) return;
    if (m.type === MessageType.Propose && m.from !== this.raft.id && this.raft.role !== Role.Leader) {
      // A forwarded proposal that reached a non-leader is dropped; the proposer times out and retries.
      return;
    }
    try {
      this.raft.step(m);
    } catch (e) {
      // A forwarded proposal the leader refused: the proposer times out and retries.
      if (!(e instanceof ProposalDroppedError)) throw e;
    }
  }

  /** Requests a linearizable read point; the answer arrives as a ReadState carrying the context. */
  readIndex(context: Uint8Array): void {
    this.raft.step(message({ type: MessageType.ReadIndex, from: this.raft.id, context }));
  }

  transferLeader(transferee: NodeId): void {
    this.raft.step(message({ type: MessageType.TransferLeader, from: transferee }));
  }

  /** The transport could not deliver to `id`. */
  reportUnreachable(id: NodeId): void {
    this.raft.step(message({ type: MessageType.Unreachable, from: id, term: 0 }));
  }

  hasReady(): boolean {
    assert(this.inProgress === null, "hasReady() while a Ready is in progress");
    const r = this.raft;
    const ps = this.prevSoftState;
    const ph = this.prevHardState;
    // Field by field, allocating nothing: hosts ask this of every active group each turn.
    return r.lead !== ps.lead || r.role !== ps.role || r.term !== ph.term || r.vote !== ph.vote || r.raftLog.committed !== ph.commit ||
      r.raftLog.unstable.snapshot !== null || r.raftLog.unstable.entries.length > 0 ||
      r.msgs.length > 0 || r.msgsAfterPersist.length > 0 || r.readStates.length > 0 ||
      r.transferResults.length > 0 || r.raftLog.hasNextCommittedEntries();
  }

  ready(): Ready {
    assert(this.inProgress === null, "ready() called again before advance()");
    const r = this.raft;
    const ss = this.softState();
    const hs = r.hardState();
    const softChanged = ss.lead !== this.prevSoftState.lead || ss.role !== this.prevSoftState.role;
    const hardChanged = !hardStateEqual(hs, this.prevHardState);
    const entries = r.raftLog.unstableEntries().slice();
    const after: Message[] = [];
    this.stepsOnAdvance = [];
    for (const m of r.msgsAfterPersist) {
      if (m.to === r.id) this.stepsOnAdvance.push(m);
      else after.push(m);
    }
    const rd: Ready = {
      softState: softChanged ? ss : null,
      hardState: hardChanged ? hs : null,
      snapshot: r.raftLog.unstable.snapshot,
      entries,
      committedEntries: r.raftLog.nextCommittedEntries(),
      messages: r.msgs,
      messagesAfterPersist: after,
      readStates: r.readStates,
      leaderTransfers: r.transferResults,
      mustSync: entries.length > 0 || (hardChanged && (hs.term !== this.prevHardState.term || hs.vote !== this.prevHardState.vote)),
    };
    r.msgs = [];
    r.msgsAfterPersist = [];
    r.readStates = [];
    r.transferResults = [];
    this.inProgress = rd;
    return rd;
  }

  /** The Ready handed out by ready() is durable and applied. */
  advance(): void {
    const rd = this.inProgress;
    assert(rd !== null, "advance() without a Ready");
    const r = this.raft;
    if (rd.softState !== null) this.prevSoftState = rd.softState;
    if (rd.hardState !== null) this.prevHardState = rd.hardState;
    if (rd.snapshot !== null) r.raftLog.stableSnapshotTo(rd.snapshot.meta.index);
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]!;
      r.raftLog.stableTo(last.index, last.term);
    }
    if (rd.committedEntries.length > 0) {
      const last = rd.committedEntries[rd.committedEntries.length - 1]!;
      r.raftLog.appliedTo(last.index);
      if (r.role === Role.Leader) r.reduceUncommittedSize(rd.committedEntries);
    } else if (rd.snapshot !== null) {
      r.raftLog.appliedTo(Math.max(r.raftLog.applied, Math.min(rd.snapshot.meta.index, r.raftLog.committed)));
    }
    this.inProgress = null;
    const steps = this.stepsOnAdvance;
    this.stepsOnAdvance = [];
    for (const m of steps) r.step(m);
    this.maybeLeaveJoint();
    // Cheap (linear in members) and worth it: a broken invariant stops the node instead of spreading.
    r.checkInvariants();
  }

  /** A joint configuration with auto-leave is left by the leader once it is applied. */
  private maybeLeaveJoint(): void {
    const r = this.raft;
    if (r.role !== Role.Leader || !r.trk.config.autoLeave || r.raftLog.applied < r.pendingConfIndex) return;
    if (r.leadTransferee !== 0) return;
    try {
      this.proposeConfChange({ transition: ConfChangeTransition.Auto, changes: [] });
    } catch {
      // Dropped (e.g. the uncommitted budget is full): retried after the next apply.
    }
  }

  // ---- Sealed queries: what a host may know of this replica. ----

  role(): Role {
    return this.raft.role;
  }

  /** The leader this replica knows of in its term (0: none). */
  lead(): NodeId {
    return this.raft.lead;
  }

  term(): number {
    return this.raft.term;
  }

  /** Whether this replica leads and is handing leadership over. */
  transferring(): boolean {
    return this.raft.role === Role.Leader && this.raft.leadTransferee !== 0;
  }

  committed(): number {
    return this.raft.raftLog.committed;
  }

  /** The index the host has applied (as reported through advance()). */
  applied(): number {
    return this.raft.raftLog.applied;
  }

  firstIndex(): number {
    return this.raft.raftLog.firstIndex();
  }

  lastIndex(): number {
    return this.raft.raftLog.lastIndex();
  }

  lastTerm(): number {
    return this.raft.raftLog.lastTerm();
  }

  /** The term of entry `index` (0 if compacted away or beyond the log). */
  termAt(index: number): number {
    return this.raft.raftLog.term(index);
  }

  /** Whether a log ending at (lastIndex, lastTerm) is at least as up to date as this one (§5.4.1). */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    return this.raft.raftLog.isUpToDate(lastIndex, lastTerm);
  }

  /** The entries lo..hi (both inclusive) held here, committed or not (for simulators' log checks). */
  logEntries(lo: number, hi: number): Entry[] {
    return this.raft.raftLog.slice(lo, hi + 1, Number.MAX_SAFE_INTEGER);
  }

  /** Asserts the state machine's own invariants (throws on a violation); for simulators, after each step. */
  checkInvariants(): void {
    this.raft.checkInvariants();
  }

  confState(): ConfState {
    return this.raft.trk.confState();
  }

  isVoter(id: NodeId): boolean {
    return this.raft.trk.isVoter(id);
  }

  /** The voters of the incoming configuration and, in a joint configuration, of the outgoing one. */
  voters(): JointConfig {
    const v = this.raft.trk.config.voters;
    return { incoming: new Set(v.incoming), outgoing: new Set(v.outgoing) };
  }

  /** Whether the voters `reachable` says yes to make a quorum of the configuration (no copy of it). */
  quorumReachable(reachable: (id: NodeId) => boolean): boolean {
    return jointQuorumReached(this.raft.trk.config.voters, reachable);
  }

  /** Voters and learners. */
  memberIds(): NodeId[] {
    return this.raft.trk.memberIds();
  }

  /** On the leader: each member's replication progress (match, state). Empty on others. */
  progress(): Map<NodeId, { match: number; snapshotting: boolean }> {
    const out = new Map<NodeId, { match: number; snapshotting: boolean }>();
    if (this.raft.role !== Role.Leader) return out;
    for (const [id, pr] of this.raft.trk.progress) out.set(id, { match: pr.match, snapshotting: pr.state === ProgressState.Snapshot });
    return out;
  }

  /**
   * On the leader: every entry is committed and applied, no configuration change is pending or joint,
   * and every member holds the last entry — nothing is left to replicate (the group may quiesce).
   */
  fullyReplicated(): boolean {
    const r = this.raft;
    if (r.role !== Role.Leader) return false;
    const log = r.raftLog;
    const last = log.lastIndex();
    if (log.committed !== last || log.applied !== last || r.pendingConfIndex > log.applied) return false;
    if (r.trk.config.voters.outgoing.size > 0) return false;
    for (const pr of r.trk.progress.values()) if (pr.match !== last) return false;
    return true;
  }

  /** Why a configuration change cannot be proposed here now (null: it can; only the leader can). */
  confChangeRefusal(cc: ConfChange): string | null {
    if (this.raft.role !== Role.Leader) return "not the leader";
    return confChangeRefusal(this.raft, cc);
  }

  /** Whether confChangeRefusal refuses `cc` only until the change in flight is applied (confChangeBusy). */
  confChangeBusy(cc: ConfChange): boolean {
    return this.raft.role === Role.Leader && confChangeBusy(this.raft, cc);
  }

  status(): Status {
    const r = this.raft;
    let progress: Map<NodeId, PeerStatus> | null = null;
    if (r.role === Role.Leader) {
      progress = new Map();
      for (const [id, pr] of r.trk.progress) {
        progress.set(id, {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          isLearner: pr.isLearner,
          recentActive: pr.recentActive,
          inflight: pr.inflights.count(),
          pendingSnapshot: pr.pendingSnapshot,
        });
      }
    }
    return {
      id: r.id,
      term: r.term,
      vote: r.vote,
      lead: r.lead,
      role: r.role,
      commit: r.raftLog.committed,
      applied: r.raftLog.applied,
      lastIndex: r.raftLog.lastIndex(),
      firstIndex: r.raftLog.firstIndex(),
      config: r.trk.confState(),
      isLearner: r.isLearner,
      leadTransferee: r.leadTransferee,
      progress,
    };
  }
}
