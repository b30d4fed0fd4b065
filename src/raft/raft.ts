/**
 * The Raft consensus state machine of one replica. Pure: no I/O, no clock, no randomness of its own.
 * Inputs arrive through step() and tick(); outputs accumulate in `msgs`, `msgsAfterPersist`,
 * `readStates` and the log's unstable part, and are collected by RaftNode into a Ready.
 *
 * The structure follows etcd's raft: one step function per role, progress tracking per follower,
 * configuration changes applied by the host after commit. The leader's handlers live in raft-leader.ts,
 * the follower's and candidate's in raft-follower.ts; members are shared with those modules and are not
 * an API (the API is RaftNode).
 *
 * Over 600 lines, knowingly: the fields and the transitions that keep their invariants together
 * (becomeFollower/Candidate/Leader, the term and vote rules, commit and apply bookkeeping, the invariant
 * check) read as one unit; what could leave already lives in raft-leader.ts, raft-follower.ts, log.ts,
 * tracker.ts, read-only.ts and snapshot-stream.ts.
 */
import { assert } from "../util/assert.js";
import { type ChangeResult, type ConfChange, ConfChangeError, applyChange } from "./confchange.js";
import { type Mutations, type ResolvedConfig, type RaftConfig, ReadOnlyOption, resolveConfig } from "./config.js";
import { RaftLog } from "./log.js";
import { ProgressState } from "./progress.js";
import { LeaderLease } from "./lease.js";
import { CampaignType, ProposalDroppedError } from "./errors.js";
import { ReadOnlyQueue } from "./read-only.js";
import { releasePendingReadIndexMessages, stepLeader } from "./raft-leader.js";
import { stepCandidate, stepFollower } from "./raft-follower.js";
import { SnapshotReceiver, SnapshotSender } from "./snapshot-stream.js";
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

/** Outcome of a leader transfer, reported explicitly to the host (RAFT-7). */
export interface LeaderTransferResult {
  transferee: NodeId;
  term: number;
  outcome: "completed" | "aborted";
}

export class Raft {
  readonly id: NodeId;
  readonly cfg: ResolvedConfig;
  readonly mutations: Mutations;

  term = 0;
  vote: NodeId = NONE;
  lead: NodeId = NONE;
  /**
   * The host told this follower its leader's node is gone (forgetLeader) and no leader or term change
   * came since. Invariant: leaderForgotten implies lead === NONE.
   */
  leaderForgotten = false;
  /** The leader this replica last knew (kept through its own campaigns), or NONE if it never knew one. */
  lastLead: NodeId = NONE;
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
  transferAwaitingOutcome: { transferee: NodeId; term: number } | null = null;

  /** Follower: the snapshot being received in chunks, if any. */
  snapshotReceiver: SnapshotReceiver | null = null;
  /** Leader: the snapshot stream to each follower in Snapshot state. */
  readonly snapshotSenders = new Map<NodeId, SnapshotSender>();

  /** Ticks since the last election timeout reset (leaders: since the last check-quorum round). */
  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;
  /** Monotonic tick counter of this replica; stamps heartbeats for the lease. */
  ticks = 0;
  /** Leader: heartbeat stamps echoed by followers, for lease reads. */
  readonly lease = new LeaderLease();
  /**
   * With lease reads, a restarted replica refuses votes for one election timeout, as if it had just
   * heard from a leader: it may have acknowledged a heartbeat that the leader's lease counts on.
   */
  leaseGuardAfterRestart: boolean;
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

  log(line: string): void {
    this.cfg.logger?.debug(`raft ${this.id} [term ${this.term}] ${line}`);
  }

  loadState(hs: HardState): void {
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

  send(m: Message): void {
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

  sendSnapshot(to: NodeId): boolean {
    const pr = this.trk.progress.get(to)!;
    if (!pr.recentActive) return false; // do not stream a snapshot to a follower that may be down
    const snap = this.raftLog.snapshot();
    assert(snap.meta.index > 0, "need a non-empty snapshot to catch up a follower");
    pr.becomeSnapshot(snap.meta.index);
    this.snapshotSenders.set(to, new SnapshotSender(snap, this.cfg.maxSnapshotChunkBytes, this.cfg.maxSnapshotInflightBytes));
    this.log(`streaming snapshot ${snap.meta.index} (${snap.data.byteLength} bytes) to ${to}`);
    this.sendSnapshotChunks(to);
    return true;
  }

  /** Sends what the follower's snapshot window allows. */
  sendSnapshotChunks(to: NodeId): void {
    const sender = this.snapshotSenders.get(to);
    assert(sender !== undefined && this.trk.progress.get(to)?.state === ProgressState.Snapshot,
      "snapshot chunks outside snapshot state");
    for (const snapshotChunk of sender.nextChunks()) {
      this.send(message({ type: MessageType.SnapshotChunk, to, snapshotChunk }));
    }
  }

  sendHeartbeat(to: NodeId, ctx: Uint8Array | null): void {
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

  bcastHeartbeat(ctx: Uint8Array | null): void {
    for (const id of this.trk.memberIds()) if (id !== this.id) this.sendHeartbeat(id, ctx);
  }

  // ---------------------------------------------------------------------------------------------
  // Role transitions

  reset(term: number): void {
    if (this.term !== term) {
      assert(term > this.term, () => `term regresses from ${this.term} to ${term}`);
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.leaderForgotten = false;
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
    this.snapshotSenders.clear();
    this.lease.clear();
  }

  /** The last index known durable: entries after it may still be in flight to disk. */
  stableLastIndex(): number {
    const u = this.raftLog.unstable;
    if (u.snapshot !== null) return 0;
    return Math.min(this.raftLog.storage.lastIndex(), u.offset - 1);
  }

  resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.cfg.electionTicks + this.cfg.random(this.cfg.electionTicks);
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.role = Role.Follower;
    this.setLead(lead);
  }

  /** Records the known leader, settling a transfer this replica started as leader. */
  setLead(lead: NodeId): void {
    this.lead = lead;
    if (lead !== NONE) {
      this.leaderForgotten = false;
      this.lastLead = lead;
    }
    const awaiting = this.transferAwaitingOutcome;
    if (awaiting === null || lead === NONE) return;
    this.transferAwaitingOutcome = null;
    this.transferResults.push({
      transferee: awaiting.transferee,
      term: awaiting.term,
      outcome: lead === awaiting.transferee ? "completed" : "aborted",
    });
  }

  settleTransferAsAborted(): void {
    const awaiting = this.transferAwaitingOutcome;
    if (awaiting === null) return;
    this.transferAwaitingOutcome = null;
    this.transferResults.push({ transferee: awaiting.transferee, term: awaiting.term, outcome: "aborted" });
  }

  becomePreCandidate(): void {
    assert(this.role !== Role.Leader, "leader cannot become pre-candidate");
    // Pre-vote does not bump the term nor change the vote: a partitioned node cannot disrupt.
    this.settleTransferAsAborted();
    this.trk.resetVotes();
    this.role = Role.PreCandidate;
    this.lead = NONE;
    this.log("became pre-candidate");
  }

  becomeCandidate(): void {
    assert(this.role !== Role.Leader, "leader cannot become candidate");
    this.settleTransferAsAborted();
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
    this.log("became candidate");
  }

  becomeLeader(): void {
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

  hup(type: CampaignType): void {
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

  campaign(type: CampaignType): void {
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

  poll(id: NodeId, granted: boolean): VoteResult {
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

  /**
   * The host stopped ticking this replica for a while (the group was quiescent: idle, every member
   * caught up) and ticks it again. A leader starts a fresh check-quorum period instead of judging its
   * followers by a silence it asked for; a follower whose leader's node fell silent treats its lease
   * as over, so that it grants pre-votes and campaigns at its randomized timeout.
   */
  resumeTicking(leaderLost: boolean): void {
    if (this.role === Role.Leader) {
      this.electionElapsed = 0;
      this.heartbeatElapsed = this.cfg.heartbeatTicks; // heartbeat at the next tick
      for (const pr of this.trk.progress.values()) pr.recentActive = true;
    } else if (leaderLost) {
      this.electionElapsed = Math.max(this.electionElapsed, this.cfg.electionTicks);
    }
  }

  tickElection(): void {
    this.electionElapsed++;
    if (this.leaseGuardAfterRestart && this.electionElapsed >= this.cfg.electionTicks) this.leaseGuardAfterRestart = false;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.step(message({ type: MessageType.Hup, from: this.id }));
    }
  }

  tickHeartbeat(): void {
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

  /**
   * A follower stops trusting its leader, which the host knows is gone (its node's connection broke):
   * it stays a follower in its term without campaigning, but is out of its lease, so it grants
   * pre-votes and votes at once; it campaigns itself only at its election timeout, and follows the
   * leader again if it hears from it (etcd's ForgetLeader). With lease reads a forgotten leader could
   * still be serving reads, so it is refused then.
   */
  forgetLeader(): void {
    if (this.role !== Role.Follower || this.lead === NONE || this.cfg.readOnlyOption === ReadOnlyOption.Lease) return;
    this.setLead(NONE);
    this.leaderForgotten = true;
  }

  /**
   * A follower's election timeout counts from now, with a new random part: the host gives another voter
   * a head start (the successor its lost leader's survivors agreed on campaigns at once; the others wait
   * a whole timeout from the news, not from the leader's last heartbeat, which a stalled loop may have
   * taken in long before).
   */
  restartElectionClock(): void {
    assert(this.role === Role.Follower, () => `restartElectionClock: ${this.id} is a ${this.role}, not a follower`);
    this.electionElapsed = 0;
    this.resetRandomizedElectionTimeout();
  }

  /**
   * A pre-candidate gives up its campaign and follows again, knowing no leader, in the same term (its
   * vote unchanged): the host picked another voter to campaign first now that the leader's node is
   * lost, and two campaigns at once split the vote.
   */
  yieldCampaign(): void {
    assert(this.role === Role.PreCandidate, () => `yieldCampaign: ${this.id} is a ${this.role}, not a pre-candidate`);
    this.becomeFollower(this.term, NONE);
    this.leaderForgotten = true;
  }

  // ---------------------------------------------------------------------------------------------
  // Step

  /** Whether a follower still trusts its leader (or just restarted with leases on). */
  inLease(): boolean {
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
        stepLeader(this, m);
        return;
      case Role.Candidate:
      case Role.PreCandidate:
        stepCandidate(this, m);
        return;
      case Role.Follower:
        stepFollower(this, m);
        return;
    }
  }

  handleVoteRequest(m: Message): void {
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
      // A follower whose leader's node is gone (the host said so: forgetLeader) and that would have
      // granted this pre-vote but for the candidate's log being behind its own is a better candidate:
      // it campaigns now rather than at its election timeout, so a failover whose chosen successor
      // missed the last entries still takes a round trip, not a whole timeout (issue 13). Elections are
      // safe whoever starts them.
      if (canVote && m.type === MessageType.PreVote && this.role === Role.Follower && this.leaderForgotten && this.promotable()) {
        this.step(message({ type: MessageType.Hup, from: this.id }));
      }
    }
  }

  appendEntry(es: Entry[]): boolean {
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

  maybeCommit(): boolean {
    const mci = this.trk.committed();
    if (this.mutations.commitPreviousTermByCount === true && mci > this.raftLog.committed &&
        mci <= this.raftLog.lastIndex()) {
      this.raftLog.commitTo(mci);
      return true;
    }
    // Only an entry of the current term is committed by counting replicas (Raft §5.4.2).
    return this.raftLog.maybeCommit(mci, this.term);
  }

  committedEntryInCurrentTerm(): boolean {
    return this.raftLog.term(this.raftLog.committed) === this.term;
  }

  sendTimeoutNow(to: NodeId): void {
    // From now on another node may win an election without waiting for our lease to expire.
    this.lease.clear();
    this.send(message({ type: MessageType.TimeoutNow, to }));
  }

  abortLeaderTransfer(): void {
    if (this.leadTransferee === NONE) return;
    if (this.role === Role.Leader) {
      this.transferResults.push({ transferee: this.leadTransferee, term: this.term, outcome: "aborted" });
    }
    this.leadTransferee = NONE;
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

  restoreConfig(cs: ConfState): void {
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

  changeResult(cc: ConfChange): ChangeResult {
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

  switchToConfig(result: ChangeResult): ConfState {
    this.trk.config = result.config;
    this.trk.progress = result.progress;
    const cs = this.trk.confState();
    const pr = this.trk.progress.get(this.id);
    this.isLearner = pr !== undefined && pr.isLearner;
    for (const id of [...this.snapshotSenders.keys()]) if (!this.trk.progress.has(id)) this.snapshotSenders.delete(id);
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
      releasePendingReadIndexMessages(this);
      this.bcastAppend();
    } else {
      for (const id of this.trk.memberIds()) if (id !== this.id) this.maybeSendAppend(id, false);
    }
    if (this.leadTransferee !== NONE && !this.trk.isVoter(this.leadTransferee)) this.abortLeaderTransfer();
    return cs;
  }

  // ---------------------------------------------------------------------------------------------
  // Reads

  /**
   * The leader lease: no other leader can exist until an election timeout after the last heartbeat
   * round a quorum acknowledged (check-quorum makes followers refuse votes meanwhile), minus the
   * configured clock drift. Never valid during a transfer or before the first commit of the term.
   */
  leaseValid(): boolean {
    if (this.cfg.readOnlyOption !== ReadOnlyOption.Lease || this.role !== Role.Leader) return false;
    if (this.leadTransferee !== NONE || !this.committedEntryInCurrentTerm()) return false;
    return this.lease.valid(this.trk.config.voters, this.id, this.ticks, this.cfg.electionTicks,
      this.cfg.leaseClockDriftTicks);
  }

  // ---------------------------------------------------------------------------------------------
  // Invariants

  checkInvariants(): void {
    const log = this.raftLog;
    assert(log.applied <= log.committed, () => `applied ${log.applied} > committed ${log.committed}`);
    assert(log.committed <= log.lastIndex(), () => `committed ${log.committed} > last ${log.lastIndex()}`);
    assert(this.role !== Role.Leader || this.lead === this.id, "a leader leads itself");
    assert(this.role !== Role.Leader || !this.isLearner, "a learner never leads");
    assert(!this.leaderForgotten || this.lead === NONE, "a forgotten leader is no leader");
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


export { CampaignType, ProposalDroppedError };
