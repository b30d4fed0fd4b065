/**
 * The Raft consensus state machine of one replica. Pure: no I/O, no clock, no randomness of its own.
 * Inputs arrive through step() and tick(); outputs accumulate in `msgs`, `msgsAfterPersist`,
 * `readStates` and the log's unstable part, and are collected by RaftNode into a Ready.
 *
 * The structure follows etcd's raft: one step function per role, progress tracking per follower,
 * configuration changes applied by the host after commit.
 */
import { assert } from "./assert.js";
import { type ChangeResult, type ConfChange, ConfChangeError, applyChange, decodeConfChange, isLeaveJoint } from "./confchange.js";
import { type Mutations, type ResolvedConfig, type RaftConfig, ReadOnlyOption, resolveConfig } from "./config.js";
import { RaftLog } from "./log.js";
import { ProgressState } from "./progress.js";
import { isJoint, jointCommittedIndex } from "./quorum.js";
import { ReadOnlyQueue } from "./read-only.js";
import { CompactedError, UnavailableError } from "./storage.js";
import { ProgressTracker, checkConfigInvariants, configFromConfState, confStateEqual } from "./tracker.js";
import { VoteResult } from "./quorum.js";
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
  NONE,
  Role,
  entriesSizeBytes,
  message,
  payloadSizeBytes,
  voteResponseType,
} from "./types.js";

export class ProposalDroppedError extends Error {
  override name = "ProposalDroppedError";
}

/** Outcome of a leader transfer, reported explicitly to the host (RAFT-7). */
export interface LeaderTransferResult {
  transferee: NodeId;
  term: number;
  outcome: "completed" | "aborted";
}

interface SnapshotReceiver {
  snapshot: Snapshot["meta"];
  totalBytes: number;
  nextOffset: number;
  chunks: Uint8Array[];
}

enum CampaignType {
  PreElection = "pre-election",
  Election = "election",
  Transfer = "transfer",
}

export class Raft {
  readonly id: NodeId;
  readonly cfg: ResolvedConfig;
  readonly mutations: Mutations;

  term = 0;
  vote: NodeId = NONE;
  lead: NodeId = NONE;
  role: Role = Role.Follower;
  /** Whether this replica is a learner in its current configuration. */
  isLearner = false;

  readonly raftLog: RaftLog;
  trk: ProgressTracker;

  /** Messages that may be sent at once. */
  msgs: Message[] = [];
  /**
   * Messages that may only leave once the current unstable state (entries, hard state, snapshot) is
   * durable: acknowledgements of appends and votes. Those addressed to self are stepped on advance.
   */
  msgsAfterPersist: Message[] = [];
  readStates: ReadState[] = [];
  transferResults: LeaderTransferResult[] = [];

  /** Leader only: index of the latest configuration change proposed; no new one until it is applied. */
  pendingConfIndex = 0;
  /** Leader only: payload bytes of appended, uncommitted entries (bounded by the config). */
  uncommittedSizeBytes = 0;
  readOnly: ReadOnlyQueue;
  /** Leader only: ReadIndex requests that wait for the first commit of this term. */
  pendingReadIndexMessages: Message[] = [];
  /** Leader only: the node leadership is being transferred to, or NONE. */
  leadTransferee: NodeId = NONE;

  /** A leader that stepped down during a transfer waits to learn who leads next. */
  private transferAwaitingOutcome: { transferee: NodeId; term: number } | null = null;

  /** Follower: the snapshot being received in chunks, if any. */
  snapshotReceiver: SnapshotReceiver | null = null;
  /** Leader: the snapshot being streamed to each follower in Snapshot state. */
  private outgoingSnapshots = new Map<NodeId, Snapshot>();

  /** Ticks since the last election timeout reset (leaders: since the last check-quorum round). */
  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;
  /** Monotonic tick counter of this replica; stamps heartbeats for the lease. */
  ticks = 0;
  /** Leader: the newest heartbeat stamp each follower has echoed. */
  private leaseAcks = new Map<NodeId, number>();
  /**
   * With lease reads, a restarted replica refuses votes for one election timeout, as if it had just
   * heard from a leader: it may have acknowledged a heartbeat that the leader's lease counts on.
   */
  private leaseGuardAfterRestart: boolean;
  /** Number of ReadIndex requests dropped because the queue was full. */
  droppedReadIndex = 0;

  constructor(config: RaftConfig) {
    this.cfg = resolveConfig(config);
    this.id = this.cfg.id;
    this.mutations = this.cfg.mutations;
    this.raftLog = new RaftLog(this.cfg.storage, this.cfg.maxCommittedSizePerReadyBytes);
    this.trk = new ProgressTracker(this.cfg.maxInflightMsgs, this.cfg.maxInflightBytes);
    this.readOnly = new ReadOnlyQueue(this.cfg.maxPendingReadIndex);
    const { hardState, confState } = this.cfg.storage.initialState();
    this.restoreConfig(confState);
    if (hardState.term !== 0 || hardState.vote !== NONE || hardState.commit !== 0) this.loadState(hardState);
    if (this.cfg.applied !== undefined && this.cfg.applied > 0) this.raftLog.appliedTo(this.cfg.applied);
    this.leaseGuardAfterRestart = this.cfg.readOnlyOption === ReadOnlyOption.Lease;
    this.becomeFollower(this.term, NONE);
  }

  private log(line: string): void {
    this.cfg.logger?.(`raft ${this.id} [term ${this.term}] ${line}`);
  }

  private loadState(hs: HardState): void {
    const last = this.raftLog.lastIndex();
    // A commit beyond the log means the disk lost entries it had acknowledged (etcd #10166). The
    // entries will come back from the leader; until then we can only vouch for what we hold.
    if (hs.commit > last) this.log(`hard state commit ${hs.commit} beyond last index ${last}: log lost entries`);
    this.raftLog.committed = Math.max(this.raftLog.committed, Math.min(hs.commit, last));
    this.term = hs.term;
    this.vote = hs.vote;
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.raftLog.committed };
  }

  // ---------------------------------------------------------------------------------------------
  // Sending

  private send(m: Message): void {
    if (m.from === NONE) m.from = this.id;
    if (m.type === MessageType.Vote || m.type === MessageType.VoteResponse ||
        m.type === MessageType.PreVote || m.type === MessageType.PreVoteResponse) {
      // Vote messages carry the term of the election, which may differ from ours (pre-vote).
      assert(m.term !== 0, () => `vote message ${MessageType[m.type]} without a term`);
    } else {
      assert(m.term === 0, () => `term set on ${MessageType[m.type]}`);
      // Proposals forwarded to the leader and ReadIndex requests carry no term: they are not Raft RPCs.
      if (m.type !== MessageType.Propose && m.type !== MessageType.ReadIndex) m.term = this.term;
    }
    const afterPersist = m.type === MessageType.AppendResponse || m.type === MessageType.VoteResponse ||
      m.type === MessageType.PreVoteResponse;
    if (afterPersist && !(this.mutations.ackBeforePersist && m.type === MessageType.AppendResponse && m.to !== this.id)) {
      this.msgsAfterPersist.push(m);
    } else {
      assert(m.to !== this.id, () => `message ${MessageType[m.type]} to self`);
      this.msgs.push(m);
    }
  }

  /** Sends an Append (or snapshot) to `to` if its progress allows; returns whether a message went out. */
  maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.trk.progress.get(to);
    assert(pr !== undefined, () => `no progress for ${to}`);
    if (pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.raftLog.term(prevIndex);
    let ents: Entry[] | null = null;
    if (prevTerm >= 0) {
      try {
        ents = this.raftLog.entries(pr.next, this.cfg.maxSizePerMsgBytes);
      } catch (e) {
        if (!(e instanceof CompactedError || e instanceof UnavailableError)) throw e;
      }
    }
    if (ents === null) return this.sendSnapshot(to);
    if (ents.length === 0 && !sendIfEmpty) return false;
    this.send(message({
      type: MessageType.Append,
      to,
      index: prevIndex,
      logTerm: prevTerm,
      entries: ents,
      commit: this.raftLog.committed,
    }));
    const last = ents.length > 0 ? ents[ents.length - 1]!.index : prevIndex;
    pr.sentEntries(last, entriesSizeBytes(ents));
    return true;
  }

  private sendSnapshot(to: NodeId): boolean {
    const pr = this.trk.progress.get(to)!;
    if (!pr.recentActive) return false; // do not stream a snapshot to a follower that may be down
    const snap = this.raftLog.snapshot();
    assert(snap.meta.index > 0, "need a non-empty snapshot to catch up a follower");
    pr.becomeSnapshot(snap.meta.index);
    this.outgoingSnapshots.set(to, snap);
    this.log(`streaming snapshot ${snap.meta.index} (${snap.data.byteLength} bytes) to ${to}`);
    this.sendSnapshotChunks(to);
    return true;
  }

  /** Sends chunks from the progress' send offset while the in-flight byte window allows. */
  private sendSnapshotChunks(to: NodeId): void {
    const pr = this.trk.progress.get(to)!;
    const snap = this.outgoingSnapshots.get(to);
    assert(pr.state === ProgressState.Snapshot && snap !== undefined, "snapshot chunks outside snapshot state");
    const total = snap.data.byteLength;
    // An empty snapshot still needs one (empty) chunk.
    let first = pr.snapshotOffsetSent === 0;
    while ((pr.snapshotOffsetSent < total || (first && total === 0)) &&
           pr.snapshotOffsetSent - pr.snapshotOffsetAcked < this.cfg.maxSnapshotInflightBytes) {
      first = false;
      const offset = pr.snapshotOffsetSent;
      const data = snap.data.subarray(offset, Math.min(total, offset + this.cfg.maxSnapshotChunkBytes));
      this.send(message({
        type: MessageType.SnapshotChunk,
        to,
        snapshotChunk: { meta: snap.meta, offset, data, totalBytes: total, attempt: pr.snapshotAttempt },
      }));
      pr.snapshotOffsetSent = offset + data.byteLength;
      if (total === 0) break;
    }
  }

  private sendHeartbeat(to: NodeId, ctx: Uint8Array | null): void {
    const pr = this.trk.progress.get(to)!;
    // Commit only what the follower is known to hold, so it never has to commit past its log.
    this.send(message({
      type: MessageType.Heartbeat,
      to,
      commit: Math.min(pr.match, this.raftLog.committed),
      context: ctx,
      leaseTick: this.ticks,
    }));
  }

  bcastAppend(): void {
    for (const id of this.trk.memberIds()) if (id !== this.id) this.maybeSendAppend(id, true);
  }

  private bcastHeartbeat(ctx: Uint8Array | null): void {
    for (const id of this.trk.memberIds()) if (id !== this.id) this.sendHeartbeat(id, ctx);
  }

  // ---------------------------------------------------------------------------------------------
  // Role transitions

  private reset(term: number): void {
    if (this.term !== term) {
      assert(term > this.term, () => `term regresses from ${this.term} to ${term}`);
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    if (this.role === Role.Leader && this.leadTransferee !== NONE) {
      // Stepping down mid-transfer: the outcome is known once we learn the next leader.
      this.transferAwaitingOutcome = { transferee: this.leadTransferee, term: this.term };
      this.leadTransferee = NONE;
    }
    this.abortLeaderTransfer();
    this.trk.resetVotes();
    const last = this.raftLog.lastIndex();
    for (const [id, pr] of this.trk.progress) {
      const fresh = this.trk.newProgress(last + 1, pr.isLearner);
      fresh.recentActive = false;
      if (id === this.id) fresh.match = this.stableLastIndex();
      this.trk.progress.set(id, fresh);
    }
    this.pendingConfIndex = 0;
    this.uncommittedSizeBytes = 0;
    this.readOnly = new ReadOnlyQueue(this.cfg.maxPendingReadIndex);
    this.pendingReadIndexMessages = [];
    this.outgoingSnapshots.clear();
    this.leaseAcks.clear();
  }

  /** The last index known durable: entries after it may still be in flight to disk. */
  private stableLastIndex(): number {
    const u = this.raftLog.unstable;
    if (u.snapshot !== null) return 0;
    return Math.min(this.raftLog.storage.lastIndex(), u.offset - 1);
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.cfg.electionTicks + this.cfg.random(this.cfg.electionTicks);
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.role = Role.Follower;
    this.setLead(lead);
  }

  /** Records the known leader, settling a transfer this replica started as leader. */
  private setLead(lead: NodeId): void {
    this.lead = lead;
    const awaiting = this.transferAwaitingOutcome;
    if (awaiting === null || lead === NONE) return;
    this.transferAwaitingOutcome = null;
    this.transferResults.push({
      transferee: awaiting.transferee,
      term: awaiting.term,
      outcome: lead === awaiting.transferee ? "completed" : "aborted",
    });
  }

  private settleTransferAsAborted(): void {
    const awaiting = this.transferAwaitingOutcome;
    if (awaiting === null) return;
    this.transferAwaitingOutcome = null;
    this.transferResults.push({ transferee: awaiting.transferee, term: awaiting.term, outcome: "aborted" });
  }

  private becomePreCandidate(): void {
    assert(this.role !== Role.Leader, "leader cannot become pre-candidate");
    // Pre-vote does not bump the term nor change the vote: a partitioned node cannot disrupt.
    this.settleTransferAsAborted();
    this.trk.resetVotes();
    this.role = Role.PreCandidate;
    this.lead = NONE;
    this.log("became pre-candidate");
  }

  private becomeCandidate(): void {
    assert(this.role !== Role.Leader, "leader cannot become candidate");
    this.settleTransferAsAborted();
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
    this.log("became candidate");
  }

  private becomeLeader(): void {
    assert(this.role === Role.Candidate, "only a candidate becomes leader");
    this.reset(this.term);
    this.lead = this.id;
    this.role = Role.Leader;
    const self = this.trk.progress.get(this.id)!;
    self.becomeReplicate();
    self.match = this.stableLastIndex();
    self.recentActive = true;
    // Conservatively treat every entry of earlier terms as a possibly pending configuration change.
    this.pendingConfIndex = this.raftLog.lastIndex();
    const ok = this.appendEntry([{ term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) }]);
    assert(ok, "the empty entry of a new leader must be appended");
    this.log(`became leader at last index ${this.raftLog.lastIndex()}`);
  }

  // ---------------------------------------------------------------------------------------------
  // Elections

  /** Whether this replica may campaign: a voter in its configuration with no snapshot pending. */
  promotable(): boolean {
    const pr = this.trk.progress.get(this.id);
    return pr !== undefined && !pr.isLearner && this.raftLog.unstable.snapshot === null &&
      this.snapshotReceiver === null;
  }

  /** A committed configuration change not yet applied: this replica's view of the voters may be stale. */
  hasUnappliedConfChanges(): boolean {
    if (this.raftLog.applied >= this.raftLog.committed) return false;
    let lo = this.raftLog.applied + 1;
    const hi = this.raftLog.committed + 1;
    // Scan in bounded pages so a long backlog does not materialize at once.
    while (lo < hi) {
      let ents: Entry[];
      try {
        ents = this.raftLog.slice(lo, hi, 1 << 20);
      } catch (e) {
        if (e instanceof CompactedError) return false;
        throw e;
      }
      if (ents.length === 0) break;
      for (const e of ents) if (e.type === EntryType.ConfChange) return true;
      lo = ents[ents.length - 1]!.index + 1;
    }
    return false;
  }

  private hup(type: CampaignType): void {
    if (this.role === Role.Leader) return;
    if (!this.promotable()) {
      this.log("is not promotable and does not campaign");
      return;
    }
    if (this.hasUnappliedConfChanges()) {
      this.log("has unapplied configuration changes and does not campaign");
      return;
    }
    this.campaign(type);
  }

  private campaign(type: CampaignType): void {
    let term: number;
    let voteType: MessageType;
    if (type === CampaignType.PreElection) {
      this.becomePreCandidate();
      voteType = MessageType.PreVote;
      term = this.term + 1; // the term we would use; not adopted until the pre-vote is won
    } else {
      this.becomeCandidate();
      voteType = MessageType.Vote;
      term = this.term;
    }
    for (const id of this.trk.voterIds()) {
      if (id === this.id) {
        // Our own vote counts once our hard state (term, vote) is durable.
        this.send(message({ type: voteResponseType(voteType), to: this.id, term }));
        continue;
      }
      this.send(message({
        type: voteType,
        to: id,
        term,
        index: this.raftLog.lastIndex(),
        logTerm: this.raftLog.lastTerm(),
        transfer: type === CampaignType.Transfer,
      }));
    }
  }

  private poll(id: NodeId, granted: boolean): VoteResult {
    this.trk.recordVote(id, granted);
    return this.trk.tallyVotes().result;
  }

  // ---------------------------------------------------------------------------------------------
  // Ticks

  tick(): void {
    this.ticks++;
    if (this.role === Role.Leader) this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.leaseGuardAfterRestart && this.electionElapsed >= this.cfg.electionTicks) this.leaseGuardAfterRestart = false;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.step(message({ type: MessageType.Hup, from: this.id }));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTicks) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum) this.step(message({ type: MessageType.CheckQuorum, from: this.id }));
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.role === Role.Leader && this.leadTransferee !== NONE) this.abortLeaderTransfer();
    }
    if (this.role !== Role.Leader) return;
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.step(message({ type: MessageType.Beat, from: this.id }));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Step

  /** Whether a follower still trusts its leader (or just restarted with leases on). */
  private inLease(): boolean {
    return this.cfg.checkQuorum && (this.lead !== NONE || this.leaseGuardAfterRestart) &&
      this.electionElapsed < this.cfg.electionTicks;
  }

  step(m: Message): void {
    if (m.term === 0) {
      // local message or forwarded proposal / read
    } else if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        // check-quorum: ignore disruptive candidates while we hear from a live leader, unless the
        // leader itself asked for this election (transfer).
        if (!m.transfer && this.inLease()) return;
      }
      if (m.type === MessageType.PreVote) {
        // Never change our term in response to a pre-vote.
      } else if (m.type === MessageType.PreVoteResponse && !m.reject) {
        // The term in a granted pre-vote response is the term we will campaign with.
      } else {
        this.log(`received ${MessageType[m.type]} with higher term ${m.term} from ${m.from}`);
        const fromLeader = m.type === MessageType.Append || m.type === MessageType.Heartbeat ||
          m.type === MessageType.SnapshotChunk;
        this.becomeFollower(m.term, fromLeader ? m.from : NONE);
      }
    } else if (m.term < this.term) {
      if ((this.cfg.checkQuorum || this.cfg.preVote) &&
          (m.type === MessageType.Heartbeat || m.type === MessageType.Append)) {
        // A stale leader (e.g. after a partition healed) learns our term from this and steps down;
        // without it, pre-vote / check-quorum could leave it isolated forever.
        this.send(message({ type: MessageType.AppendResponse, to: m.from }));
      } else if (m.type === MessageType.PreVote) {
        this.send(message({ type: MessageType.PreVoteResponse, to: m.from, term: this.term, reject: true }));
      }
      return;
    }

    switch (m.type) {
      case MessageType.Hup:
        this.hup(this.cfg.preVote ? CampaignType.PreElection : CampaignType.Election);
        return;
      case MessageType.Vote:
      case MessageType.PreVote:
        this.handleVoteRequest(m);
        return;
      default:
        break;
    }
    switch (this.role) {
      case Role.Leader:
        this.stepLeader(m);
        return;
      case Role.Candidate:
      case Role.PreCandidate:
        this.stepCandidate(m);
        return;
      case Role.Follower:
        this.stepFollower(m);
        return;
    }
  }

  private handleVoteRequest(m: Message): void {
    // We can vote for the candidate we already voted for (a retransmission), for anyone when we have
    // neither voted nor know a leader in this term, and in a pre-vote for any future term.
    const canVote = this.vote === m.from || (this.vote === NONE && this.lead === NONE) ||
      (m.type === MessageType.PreVote && m.term > this.term) ||
      (this.mutations.grantTwoVotesInTerm === true && this.lead === NONE);
    if (canVote && this.raftLog.isUpToDate(m.index, m.logTerm)) {
      this.send(message({ type: voteResponseType(m.type), to: m.from, term: m.term }));
      if (m.type === MessageType.Vote) {
        // Only a real vote resets the timer; granting a pre-vote must not (hashicorp/raft #609).
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send(message({ type: voteResponseType(m.type), to: m.from, term: this.term, reject: true }));
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case MessageType.Beat:
        this.bcastHeartbeat(this.readOnly.lastPendingContext());
        return;
      case MessageType.CheckQuorum:
        if (!this.trk.quorumActive(this.id)) {
          this.log("stepped down: quorum not active");
          this.becomeFollower(this.term, NONE);
        }
        for (const [id, pr] of this.trk.progress) if (id !== this.id) pr.recentActive = false;
        return;
      case MessageType.Propose:
        this.handleProposal(m);
        return;
      case MessageType.ReadIndex:
        this.handleReadIndex(m);
        return;
      default:
        break;
    }
    const pr = this.trk.progress.get(m.from);
    if (pr === undefined) return; // not (or no longer) a member
    switch (m.type) {
      case MessageType.AppendResponse:
        this.handleAppendResponse(m);
        return;
      case MessageType.HeartbeatResponse:
        this.handleHeartbeatResponse(m);
        return;
      case MessageType.SnapshotChunkResponse:
        this.handleSnapshotChunkResponse(m);
        return;
      case MessageType.Unreachable:
        // The transport lost a message: stop pipelining and probe again.
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        return;
      case MessageType.TransferLeader:
        this.handleTransferLeader(m);
        return;
      default:
        return;
    }
  }

  private handleProposal(msg: Message): void {
    assert(msg.entries.length > 0, "empty proposal");
    // Work on a copy: the message may be a forwarded one that the network could deliver twice.
    const m = { ...msg, entries: msg.entries.slice() };
    if (!this.trk.progress.has(this.id)) throw new ProposalDroppedError("leader was removed from the configuration");
    if (this.leadTransferee !== NONE) throw new ProposalDroppedError(`leadership is being transferred to ${this.leadTransferee}`);
    for (let i = 0; i < m.entries.length; i++) {
      const e = m.entries[i]!;
      if (e.type !== EntryType.ConfChange) continue;
      const refusal = this.confChangeRefusal(decodeConfChange(e.data));
      if (refusal !== null) {
        this.log(`refused configuration change: ${refusal}`);
        // Keep the entry's slot so the other proposals of the batch keep their positions.
        m.entries[i] = { term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) };
      } else {
        this.pendingConfIndex = this.raftLog.lastIndex() + i + 1;
      }
    }
    if (!this.appendEntry(m.entries)) throw new ProposalDroppedError("too many uncommitted bytes");
    this.bcastAppend();
  }

  /** Why a configuration change cannot be proposed now, or null if it can. */
  private confChangeRefusal(cc: ConfChange): string | null {
    const joint = isJoint(this.trk.config.voters);
    if (this.pendingConfIndex > this.raftLog.applied) return `change at ${this.pendingConfIndex} not yet applied`;
    if (joint && !isLeaveJoint(cc)) return "must leave the joint configuration first";
    if (!joint && isLeaveJoint(cc)) return "not in a joint configuration";
    try {
      this.changeResult(cc);
    } catch (e) {
      if (e instanceof ConfChangeError) return e.message;
      throw e;
    }
    return null;
  }

  private appendEntry(es: Entry[]): boolean {
    let li = this.raftLog.lastIndex();
    for (let i = 0; i < es.length; i++) {
      es[i] = { ...es[i]!, term: this.term, index: li + 1 + i };
    }
    const size = payloadSizeBytes(es);
    if (this.uncommittedSizeBytes > 0 && size > 0 &&
        this.uncommittedSizeBytes + size > this.cfg.maxUncommittedEntriesSizeBytes) {
      return false;
    }
    this.uncommittedSizeBytes += size;
    li = this.raftLog.append(es);
    // The leader counts its own copy only after it is durable (acknowledged on advance).
    this.send(message({ type: MessageType.AppendResponse, to: this.id, index: li }));
    return true;
  }

  reduceUncommittedSize(ents: readonly Entry[]): void {
    if (this.uncommittedSizeBytes === 0) return;
    this.uncommittedSizeBytes = Math.max(0, this.uncommittedSizeBytes - payloadSizeBytes(ents));
  }

  private maybeCommit(): boolean {
    const mci = this.trk.committed();
    if (this.mutations.commitPreviousTermByCount === true && mci > this.raftLog.committed &&
        mci <= this.raftLog.lastIndex()) {
      this.raftLog.commitTo(mci);
      return true;
    }
    // Only an entry of the current term is committed by counting replicas (Raft §5.4.2).
    return this.raftLog.maybeCommit(mci, this.term);
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.raftLog.term(this.raftLog.committed) === this.term;
  }

  private handleAppendResponse(m: Message): void {
    const pr = this.trk.progress.get(m.from)!;
    pr.recentActive = true;
    if (m.reject) {
      let nextProbeIndex = m.rejectHint;
      if (m.rejectHintTerm > 0) {
        // Skip every entry of ours whose term cannot match the follower's (fast backtracking).
        nextProbeIndex = this.raftLog.findConflictByTerm(m.rejectHint, m.rejectHintTerm).index;
      }
      if (pr.maybeDecreaseTo(m.index, nextProbeIndex)) {
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        this.maybeSendAppend(m.from, true);
      }
      return;
    }
    const oldPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index) && !(pr.match === m.index && pr.state === ProgressState.Probe)) return;
    switch (pr.state) {
      case ProgressState.Probe:
        pr.becomeReplicate();
        break;
      case ProgressState.Snapshot:
        if (pr.match + 1 >= this.raftLog.firstIndex()) {
          // Caught up (by the snapshot or otherwise): the log continues after its match.
          this.outgoingSnapshots.delete(m.from);
          pr.becomeProbe();
          pr.becomeReplicate();
        } else if (pr.match >= pr.pendingSnapshot) {
          // The snapshot was installed but we compacted past it meanwhile: probe, which sends a newer one.
          this.outgoingSnapshots.delete(m.from);
          pr.becomeProbe();
        }
        break;
      case ProgressState.Replicate:
        pr.inflights.freeLE(m.index);
        break;
    }
    if (this.maybeCommit()) {
      this.releasePendingReadIndexMessages();
      this.bcastAppend();
    } else if (oldPaused && m.from !== this.id) {
      this.maybeSendAppend(m.from, true);
    }
    if (m.from !== this.id) {
      // Fill the window: several messages may be needed for a large backlog. Bounded by the window.
      for (let i = 0; i < this.cfg.maxInflightMsgs && this.maybeSendAppend(m.from, false); i++) { /* keep sending */ }
      if (m.from === this.leadTransferee && pr.match === this.raftLog.lastIndex()) {
        this.log(`sent TimeoutNow to ${m.from}: it caught up`);
        this.sendTimeoutNow(m.from);
      }
    }
  }

  private handleHeartbeatResponse(m: Message): void {
    const pr = this.trk.progress.get(m.from)!;
    pr.recentActive = true;
    pr.probeSent = false;
    if (m.reject) {
      // The follower no longer holds what it acknowledged (lost writes): walk back and resend.
      this.log(`follower ${m.from} lost entries after ${m.rejectHint}; was match ${pr.match}`);
      pr.forgetTo(m.rejectHint);
    }
    const prevAck = this.leaseAcks.get(m.from) ?? 0;
    if (m.leaseTick > prevAck) this.leaseAcks.set(m.from, m.leaseTick);
    if (pr.state === ProgressState.Snapshot) {
      // No acknowledgement for a whole heartbeat interval while bytes are outstanding: a chunk (or its
      // acknowledgement) was lost. Resume from the last acknowledged offset.
      const stalled = pr.snapshotOffsetAcked === pr.snapshotAckedAtLastHeartbeat;
      if (stalled && (pr.snapshotOffsetSent > pr.snapshotOffsetAcked || pr.snapshotOffsetSent === 0)) {
        this.rewindSnapshot(pr, pr.snapshotOffsetAcked);
        this.sendSnapshotChunks(m.from);
      }
      pr.snapshotAckedAtLastHeartbeat = pr.snapshotOffsetAcked;
    } else if (pr.match < this.raftLog.lastIndex()) {
      // A full window with a live follower means appends or their acknowledgements were lost: free
      // a slot so that one more append goes out; a gap makes the follower reject it, which rewinds.
      if (pr.state === ProgressState.Replicate && pr.inflights.full()) pr.inflights.freeFirstOne();
      this.maybeSendAppend(m.from, true);
    }
    if (m.context === null || this.cfg.mutations.readIndexWithoutQuorum === true) return;
    const acks = this.readOnly.recvAck(m.from, m.context);
    if (acks === undefined) return;
    // Confirmed once the acknowledging voters form a quorum of the (possibly joint) configuration.
    const confirmed = jointCommittedIndex(this.trk.config.voters, (id) => (id === this.id || acks.has(id) ? 1 : 0)) >= 1;
    if (confirmed) {
      for (const rs of this.readOnly.advance(m.context)) this.respondToReadIndex(rs.request, rs.index);
    }
  }

  /**
   * Chunk acknowledgements are cumulative: m.offset is the next byte the follower expects. An offset
   * below what it acknowledged before means it lost its partial copy (restart): start over from there.
   */
  private handleSnapshotChunkResponse(m: Message): void {
    const pr = this.trk.progress.get(m.from)!;
    pr.recentActive = true;
    if (pr.state !== ProgressState.Snapshot || m.index !== pr.pendingSnapshot) return;
    if (m.offset > pr.snapshotOffsetAcked) {
      pr.snapshotOffsetAcked = m.offset;
      if (pr.snapshotOffsetSent < m.offset) pr.snapshotOffsetSent = m.offset;
    } else if (m.offset < pr.snapshotOffsetAcked && m.attempt === pr.snapshotAttempt) {
      // Only a response to the current attempt may rewind: late ones would rewind over and over.
      this.rewindSnapshot(pr, m.offset);
    }
    this.sendSnapshotChunks(m.from);
  }

  private rewindSnapshot(pr: ReturnType<ProgressTracker["newProgress"]>, offset: number): void {
    pr.snapshotAttempt++;
    pr.snapshotOffsetAcked = offset;
    pr.snapshotOffsetSent = offset;
  }

  private handleTransferLeader(m: Message): void {
    const pr = this.trk.progress.get(m.from)!;
    const transferee = m.from;
    if (pr.isLearner) {
      this.log(`ignored transfer to learner ${transferee}`);
      return;
    }
    if (this.leadTransferee !== NONE) {
      if (this.leadTransferee === transferee) return; // already under way
      this.abortLeaderTransfer();
    }
    if (transferee === this.id) return;
    // The transfer must complete within one election timeout.
    this.electionElapsed = 0;
    this.leadTransferee = transferee;
    this.log(`transferring leadership to ${transferee}`);
    if (pr.match === this.raftLog.lastIndex()) this.sendTimeoutNow(transferee);
    else this.maybeSendAppend(transferee, true);
  }

  private sendTimeoutNow(to: NodeId): void {
    // From now on another node may win an election without waiting for our lease to expire.
    this.leaseAcks.clear();
    this.send(message({ type: MessageType.TimeoutNow, to }));
  }

  abortLeaderTransfer(): void {
    if (this.leadTransferee === NONE) return;
    if (this.role === Role.Leader) {
      this.transferResults.push({ transferee: this.leadTransferee, term: this.term, outcome: "aborted" });
    }
    this.leadTransferee = NONE;
  }

  private stepCandidate(m: Message): void {
    const myVoteResponse = this.role === Role.PreCandidate ? MessageType.PreVoteResponse : MessageType.VoteResponse;
    switch (m.type) {
      case MessageType.Propose:
        throw new ProposalDroppedError("no leader");
      case MessageType.Append:
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.SnapshotChunk:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshotChunk(m);
        return;
      case myVoteResponse: {
        const result = this.poll(m.from, !m.reject);
        if (result === VoteResult.Won) {
          if (this.role === Role.PreCandidate) {
            this.campaign(CampaignType.Election);
          } else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (result === VoteResult.Lost) {
          // A rejection carries the rejecter's term; m.term may exceed ours only for pre-votes.
          this.becomeFollower(this.term, NONE);
        }
        return;
      }
      default:
        return;
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.Propose:
        if (this.lead === NONE) throw new ProposalDroppedError("no leader");
        if (this.cfg.disableProposalForwarding) throw new ProposalDroppedError("proposal forwarding disabled");
        this.send({ ...m, to: this.lead, from: this.id, term: 0 });
        return;
      case MessageType.Append:
        this.electionElapsed = 0;
        this.setLead(m.from);
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.setLead(m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.SnapshotChunk:
        this.electionElapsed = 0;
        this.setLead(m.from);
        this.handleSnapshotChunk(m);
        return;
      case MessageType.TransferLeader:
        if (this.lead === NONE) return;
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case MessageType.TimeoutNow:
        // A removed member or a learner does nothing (cockroach #8535): hup checks promotable().
        this.log(`received TimeoutNow from ${m.from}`);
        this.hup(CampaignType.Transfer);
        return;
      case MessageType.ReadIndex:
        if (this.lead === NONE) return; // dropped: the host retries
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case MessageType.ReadIndexResponse:
        assert(m.context !== null, "ReadIndexResponse without context");
        this.readStates.push({ index: m.index, context: m.context });
        return;
      default:
        return;
    }
  }

  private handleAppend(m: Message): void {
    if (m.index < this.raftLog.committed) {
      this.send(message({ type: MessageType.AppendResponse, to: m.from, index: this.raftLog.committed }));
      return;
    }
    const lastNew = this.raftLog.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew >= 0) {
      this.send(message({ type: MessageType.AppendResponse, to: m.from, index: lastNew }));
      return;
    }
    // Mismatch: tell the leader the largest index at which our log might still match, with its term.
    const hint = this.raftLog.findConflictByTerm(Math.min(m.index, this.raftLog.lastIndex()), m.logTerm);
    this.send(message({
      type: MessageType.AppendResponse,
      to: m.from,
      index: m.index,
      reject: true,
      rejectHint: hint.index,
      rejectHintTerm: hint.term,
    }));
  }

  private handleHeartbeat(m: Message): void {
    const last = this.raftLog.lastIndex();
    // The leader believes we hold up to m.commit. If we do not, our disk lost acknowledged entries:
    // commit what we have (never regressing), and ask the leader to walk back instead of crashing.
    const lost = m.commit > last;
    this.raftLog.commitTo(Math.min(m.commit, last));
    this.send(message({
      type: MessageType.HeartbeatResponse,
      to: m.from,
      context: m.context,
      leaseTick: m.leaseTick,
      reject: lost,
      rejectHint: lost ? last : 0,
    }));
  }

  private handleSnapshotChunk(m: Message): void {
    const c = m.snapshotChunk;
    assert(c !== null, "SnapshotChunk without a chunk");
    const meta = c.meta;
    if (meta.index <= this.raftLog.committed) {
      // Nothing to install: tell the leader where we are so it can resume appends.
      this.snapshotReceiver = null;
      this.send(message({ type: MessageType.AppendResponse, to: m.from, index: this.raftLog.committed }));
      return;
    }
    let rx = this.snapshotReceiver;
    if (rx === null || rx.snapshot.index !== meta.index || rx.snapshot.term !== meta.term) {
      if (c.offset !== 0) {
        // We hold nothing of this snapshot: ask for it from the start.
        this.send(message({ type: MessageType.SnapshotChunkResponse, to: m.from, index: meta.index, offset: 0, attempt: c.attempt }));
        return;
      }
      rx = { snapshot: meta, totalBytes: c.totalBytes, nextOffset: 0, chunks: [] };
      this.snapshotReceiver = rx;
    }
    if (c.offset !== rx.nextOffset) {
      // A duplicate or a chunk after a gap: acknowledge our position (cumulative, like TCP).
      this.send(message({
        type: MessageType.SnapshotChunkResponse, to: m.from, index: meta.index, offset: rx.nextOffset, attempt: c.attempt,
      }));
      return;
    }
    if (c.data.byteLength > 0) rx.chunks.push(c.data);
    rx.nextOffset += c.data.byteLength;
    assert(rx.nextOffset <= rx.totalBytes, "snapshot chunk beyond the declared size");
    if (rx.nextOffset < rx.totalBytes) {
      this.send(message({
        type: MessageType.SnapshotChunkResponse, to: m.from, index: meta.index, offset: rx.nextOffset, attempt: c.attempt,
      }));
      return;
    }
    const data = new Uint8Array(rx.totalBytes);
    let at = 0;
    for (const chunk of rx.chunks) {
      data.set(chunk, at);
      at += chunk.byteLength;
    }
    this.snapshotReceiver = null;
    const snap: Snapshot = { meta, data };
    if (this.restore(snap)) {
      this.log(`restored snapshot ${meta.index} (term ${meta.term})`);
      this.send(message({ type: MessageType.AppendResponse, to: m.from, index: this.raftLog.lastIndex() }));
    } else {
      this.send(message({ type: MessageType.AppendResponse, to: m.from, index: this.raftLog.committed }));
    }
  }

  /** Installs a snapshot received from the leader. Returns false if it was not needed. */
  restore(snap: Snapshot): boolean {
    const meta = snap.meta;
    if (meta.index <= this.raftLog.committed) return false;
    assert(this.role === Role.Follower, "only a follower restores a snapshot");
    const cs = meta.confState;
    const member = cs.voters.includes(this.id) || cs.learners.includes(this.id) ||
      cs.votersOutgoing.includes(this.id);
    if (!member) {
      // A snapshot taken before we were added: its configuration lacks us, but the log after it holds
      // the change that adds us, which we will apply. Until then we are not promotable.
      this.log(`restoring snapshot ${meta.index} whose configuration does not include us yet`);
    }
    if (this.raftLog.matchTerm(meta.index, meta.term)) {
      // We already have the entries: just fast-forward the commit.
      this.raftLog.commitTo(meta.index);
      return false;
    }
    this.raftLog.restore(snap);
    // A snapshot may change our role, even from voter to learner (etcd #10864).
    this.trk = new ProgressTracker(this.cfg.maxInflightMsgs, this.cfg.maxInflightBytes);
    this.restoreConfig(cs);
    assert(confStateEqual(this.trk.confState(), cs), "restored configuration differs from the snapshot's");
    const self = this.trk.progress.get(this.id);
    if (self !== undefined) self.maybeUpdate(self.next - 1);
    return true;
  }

  private restoreConfig(cs: ConfState): void {
    const config = configFromConfState(cs);
    const next = this.raftLog.lastIndex() + 1;
    const progress = new Map<NodeId, ReturnType<ProgressTracker["newProgress"]>>();
    const all = new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners]);
    for (const id of all) progress.set(id, this.trk.newProgress(next, config.learners.has(id)));
    checkConfigInvariants(config, progress);
    this.switchToConfig({ config, progress });
  }

  // ---------------------------------------------------------------------------------------------
  // Configuration changes

  private changeResult(cc: ConfChange): ChangeResult {
    return applyChange({
      config: this.trk.config,
      progress: this.trk.progress,
      lastIndex: this.raftLog.lastIndex(),
      newProgress: (next, isLearner) => this.trk.newProgress(next, isLearner),
    }, cc);
  }

  /**
   * Applies a committed configuration change. The host calls this when it applies the entry. An
   * invalid change (refused by ConfChangeError) is skipped identically on every replica.
   */
  applyConfChange(cc: ConfChange): ConfState {
    let result: ChangeResult;
    try {
      result = this.changeResult(cc);
    } catch (e) {
      if (!(e instanceof ConfChangeError)) throw e;
      this.log(`skipped invalid configuration change: ${e.message}`);
      return this.trk.confState();
    }
    return this.switchToConfig(result);
  }

  private switchToConfig(result: ChangeResult): ConfState {
    this.trk.config = result.config;
    this.trk.progress = result.progress;
    const cs = this.trk.confState();
    const pr = this.trk.progress.get(this.id);
    this.isLearner = pr !== undefined && pr.isLearner;
    for (const id of [...this.outgoingSnapshots.keys()]) if (!this.trk.progress.has(id)) this.outgoingSnapshots.delete(id);
    if ((pr === undefined || this.isLearner) && this.role === Role.Leader) {
      // Removed or demoted: let the others learn the commit, then step down.
      this.bcastHeartbeat(null);
      this.log("stepped down: no longer a voter");
      this.becomeFollower(this.term, NONE);
      return cs;
    }
    if (this.role !== Role.Leader || cs.voters.length === 0) return cs;
    // The quorum may have shrunk, so something may now be committed.
    if (this.maybeCommit()) {
      this.releasePendingReadIndexMessages();
      this.bcastAppend();
    } else {
      for (const id of this.trk.memberIds()) if (id !== this.id) this.maybeSendAppend(id, false);
    }
    if (this.leadTransferee !== NONE && !this.trk.isVoter(this.leadTransferee)) this.abortLeaderTransfer();
    return cs;
  }

  // ---------------------------------------------------------------------------------------------
  // Reads

  private handleReadIndex(m: Message): void {
    if (this.trk.isSingleton()) {
      this.respondToReadIndex(m, this.raftLog.committed);
      return;
    }
    // A new leader does not know the commit index of the previous term until it commits an entry
    // of its own; answering before that could return a stale index (tikv #6340).
    if (!this.committedEntryInCurrentTerm() && !this.mutations.readIndexWithoutQuorum) {
      if (this.pendingReadIndexMessages.length >= this.cfg.maxPendingReadIndex) {
        this.droppedReadIndex++;
        return;
      }
      this.pendingReadIndexMessages.push(m);
      return;
    }
    this.sendReadIndex(m);
  }

  private sendReadIndex(m: Message): void {
    if (this.mutations.readIndexWithoutQuorum === true || this.leaseValid()) {
      this.respondToReadIndex(m, this.raftLog.committed);
      return;
    }
    assert(m.context !== null, "ReadIndex without context");
    if (!this.readOnly.addRequest(this.raftLog.committed, m)) {
      this.droppedReadIndex++;
      return;
    }
    this.readOnly.recvAck(this.id, m.context);
    this.bcastHeartbeat(m.context);
  }

  private releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0 || !this.committedEntryInCurrentTerm()) return;
    const pending = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of pending) this.sendReadIndex(m);
  }

  private respondToReadIndex(req: Message, index: number): void {
    if (req.from === NONE || req.from === this.id) {
      this.readStates.push({ index, context: req.context! });
    } else {
      this.send(message({ type: MessageType.ReadIndexResponse, to: req.from, index, context: req.context }));
    }
  }

  /**
   * The leader lease: no other leader can exist until an election timeout after the last heartbeat
   * round a quorum acknowledged (check-quorum makes followers refuse votes meanwhile), minus the
   * configured clock drift. Never valid during a transfer or before the first commit of the term.
   */
  leaseValid(): boolean {
    if (this.cfg.readOnlyOption !== ReadOnlyOption.Lease || this.role !== Role.Leader) return false;
    if (this.leadTransferee !== NONE || !this.committedEntryInCurrentTerm()) return false;
    const start = jointCommittedIndex(this.trk.config.voters,
      (id) => (id === this.id ? this.ticks : this.leaseAcks.get(id)));
    if (start === 0 || !Number.isFinite(start)) return false;
    return this.ticks < start + this.cfg.electionTicks - this.cfg.leaseClockDriftTicks;
  }

  // ---------------------------------------------------------------------------------------------
  // Invariants

  checkInvariants(): void {
    const log = this.raftLog;
    assert(log.applied <= log.committed, () => `applied ${log.applied} > committed ${log.committed}`);
    assert(log.committed <= log.lastIndex(), () => `committed ${log.committed} > last ${log.lastIndex()}`);
    assert(this.role !== Role.Leader || this.lead === this.id, "a leader leads itself");
    assert(this.role !== Role.Leader || !this.isLearner, "a learner never leads");
    if (this.role === Role.Leader) {
      for (const [id, pr] of this.trk.progress) {
        assert(pr.match < pr.next, () => `progress of ${id}: match ${pr.match} >= next ${pr.next}`);
        assert((pr.state === ProgressState.Snapshot) === (pr.pendingSnapshot > 0),
          () => `progress of ${id}: snapshot state and pending snapshot disagree`);
      }
    }
    checkConfigInvariants(this.trk.config, this.trk.progress);
  }
}

