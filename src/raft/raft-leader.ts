/**
 * The leader's side of the Raft step function: proposals, acknowledgements, heartbeats, snapshot
 * streams, leader transfer and ReadIndex. Functions of the Raft state (see raft.ts).
 */
import { assert } from "../util/assert.js";
import { type ConfChange, ConfChangeError, decodeConfChange, isLeaveJoint } from "./confchange.js";
import { ProgressState } from "./progress.js";
import { isJoint, jointCommittedIndex } from "./quorum.js";
import { ProposalDroppedError } from "./errors.js";
import type { Raft } from "./raft.js";
import { EntryType, type Message, MessageType, NONE, message } from "./types.js";

export function stepLeader(r: Raft, m: Message): void {
  switch (m.type) {
    case MessageType.Beat:
      r.bcastHeartbeat(r.readOnly.lastPendingContext());
      return;
    case MessageType.CheckQuorum:
      if (!r.trk.quorumActive(r.id)) {
        r.log("stepped down: quorum not active");
        r.becomeFollower(r.term, NONE);
      }
      for (const [id, pr] of r.trk.progress) if (id !== r.id) pr.recentActive = false;
      return;
    case MessageType.Propose:
      handleProposal(r, m);
      return;
    case MessageType.ReadIndex:
      handleReadIndex(r, m);
      return;
    default:
      break;
  }
  const pr = r.trk.progress.get(m.from);
  if (pr === undefined) return; // not (or no longer) a member
  switch (m.type) {
    case MessageType.AppendResponse:
      handleAppendResponse(r, m);
      return;
    case MessageType.HeartbeatResponse:
      handleHeartbeatResponse(r, m);
      return;
    case MessageType.SnapshotChunkResponse:
      handleSnapshotChunkResponse(r, m);
      return;
    case MessageType.Unreachable:
      // The transport lost a message: stop pipelining and probe again.
      if (pr.state === ProgressState.Replicate) pr.becomeProbe();
      return;
    case MessageType.TransferLeader:
      handleTransferLeader(r, m);
      return;
    default:
      return;
  }
}

export function handleProposal(r: Raft, msg: Message): void {
  assert(msg.entries.length > 0, "empty proposal");
  // Work on a copy: the message may be a forwarded one that the network could deliver twice.
  const m = { ...msg, entries: msg.entries.slice() };
  if (!r.trk.progress.has(r.id)) throw new ProposalDroppedError("leader was removed from the configuration");
  if (r.leadTransferee !== NONE) throw new ProposalDroppedError(`leadership is being transferred to ${r.leadTransferee}`);
  for (let i = 0; i < m.entries.length; i++) {
    const e = m.entries[i]!;
    if (e.type !== EntryType.ConfChange) continue;
    const refusal = confChangeRefusal(r, decodeConfChange(e.data));
    if (refusal !== null) {
      r.log(`refused configuration change: ${refusal}`);
      // Keep the entry's slot so the other proposals of the batch keep their positions.
      m.entries[i] = { term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) };
    } else {
      r.pendingConfIndex = r.raftLog.lastIndex() + i + 1;
    }
  }
  if (!r.appendEntry(m.entries)) throw new ProposalDroppedError("too many uncommitted bytes");
  r.bcastAppend();
}

/**
 * Whether a configuration change is refused only for now: another change is in flight (proposed and
 * not yet applied, or a joint configuration that an automatic leave will end), so the same
 * change may be taken once that one is applied. Its reason is confChangeRefusal's.
 */
export function confChangeBusy(r: Raft, cc: ConfChange): boolean {
  // A joint configuration left by hand (not autoLeave) stays until someone proposes the leave: not busy.
  return r.pendingConfIndex > r.raftLog.applied || (isJoint(r.trk.config.voters) && r.trk.config.autoLeave && !isLeaveJoint(cc));
}

/** Why a configuration change cannot be proposed now, or null if it can. */
export function confChangeRefusal(r: Raft, cc: ConfChange): string | null {
  const joint = isJoint(r.trk.config.voters);
  if (r.pendingConfIndex > r.raftLog.applied) return `change at ${r.pendingConfIndex} not yet applied`;
  if (joint && !isLeaveJoint(cc)) return "must leave the joint configuration first";
  if (!joint && isLeaveJoint(cc)) return "not in a joint configuration";
  try {
    r.changeResult(cc);
  } catch (e) {
    if (e instanceof ConfChangeError) return e.message;
    throw e;
  }
  return null;
}

export function handleAppendResponse(r: Raft, m: Message): void {
  const pr = r.trk.progress.get(m.from)!;
  pr.recentActive = true;
  if (m.reject) {
    let nextProbeIndex = m.rejectHint;
    if (m.rejectHintTerm > 0) {
      // Skip every entry of ours whose term cannot match the follower's (fast backtracking).
      nextProbeIndex = r.raftLog.findConflictByTerm(m.rejectHint, m.rejectHintTerm).index;
    }
    if (pr.maybeDecreaseTo(m.index, nextProbeIndex)) {
      if (pr.state === ProgressState.Replicate) pr.becomeProbe();
      r.maybeSendAppend(m.from, true);
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
      if (pr.match + 1 >= r.raftLog.firstIndex()) {
        // Caught up (by the snapshot or otherwise): the log continues after its match.
        r.snapshotSenders.delete(m.from);
        pr.becomeProbe();
        pr.becomeReplicate();
      } else if (pr.match >= pr.pendingSnapshot) {
        // The snapshot was installed but we compacted past it meanwhile: probe, which sends a newer one.
        r.snapshotSenders.delete(m.from);
        pr.becomeProbe();
      }
      break;
    case ProgressState.Replicate:
      pr.inflights.freeLE(m.index);
      break;
  }
  if (r.maybeCommit()) {
    releasePendingReadIndexMessages(r);
    r.bcastAppend();
  } else if (oldPaused && m.from !== r.id) {
    r.maybeSendAppend(m.from, true);
  }
  if (m.from !== r.id) {
    // Fill the window: several messages may be needed for a large backlog. Bounded by the window.
    for (let i = 0; i < r.cfg.maxInflightMsgs && r.maybeSendAppend(m.from, false); i++) { /* keep sending */ }
    if (m.from === r.leadTransferee && pr.match === r.raftLog.lastIndex()) {
      r.log(`sent TimeoutNow to ${m.from}: it caught up`);
      r.sendTimeoutNow(m.from);
    }
  }
}

export function handleHeartbeatResponse(r: Raft, m: Message): void {
  const pr = r.trk.progress.get(m.from)!;
  pr.recentActive = true;
  pr.probeSent = false;
  if (m.reject) {
    // The follower no longer holds what it acknowledged (lost writes): walk back and resend.
    r.log(`follower ${m.from} lost entries after ${m.rejectHint}; was match ${pr.match}`);
    pr.forgetTo(m.rejectHint);
  }
  r.lease.onAck(m.from, m.leaseTick);
  if (pr.state === ProgressState.Snapshot) {
    // Without progress for a heartbeat interval, resend from the last acknowledged offset.
    r.snapshotSenders.get(m.from)!.onHeartbeat();
    r.sendSnapshotChunks(m.from);
  } else if (pr.match < r.raftLog.lastIndex()) {
    // A full window with a live follower means appends or their acknowledgements were lost: free
    // a slot so that one more append goes out; a gap makes the follower reject it, which rewinds.
    if (pr.state === ProgressState.Replicate && pr.inflights.full()) pr.inflights.freeFirstOne();
    r.maybeSendAppend(m.from, true);
  }
  if (m.context === null || r.cfg.mutations.readIndexWithoutQuorum === true) return;
  const acks = r.readOnly.recvAck(m.from, m.context);
  if (acks === undefined) return;
  // Confirmed once the acknowledging voters form a quorum of the (possibly joint) configuration.
  const confirmed = jointCommittedIndex(r.trk.config.voters, (id) => (id === r.id || acks.has(id) ? 1 : 0)) >= 1;
  if (confirmed) {
    for (const rs of r.readOnly.advance(m.context)) respondToReadIndex(r, rs.request, rs.index);
  }
}

export function handleSnapshotChunkResponse(r: Raft, m: Message): void {
  const pr = r.trk.progress.get(m.from)!;
  pr.recentActive = true;
  if (pr.state !== ProgressState.Snapshot || m.index !== pr.pendingSnapshot) return;
  r.snapshotSenders.get(m.from)!.onAck(m.offset, m.attempt);
  r.sendSnapshotChunks(m.from);
}

export function handleTransferLeader(r: Raft, m: Message): void {
  const pr = r.trk.progress.get(m.from)!;
  const transferee = m.from;
  if (pr.isLearner) {
    r.log(`ignored transfer to learner ${transferee}`);
    return;
  }
  if (r.leadTransferee !== NONE) {
    if (r.leadTransferee === transferee) return; // already under way
    r.abortLeaderTransfer();
  }
  if (transferee === r.id) return;
  // The transfer must complete within one election timeout.
  r.electionElapsed = 0;
  r.leadTransferee = transferee;
  r.log(`transferring leadership to ${transferee}`);
  if (pr.match === r.raftLog.lastIndex()) r.sendTimeoutNow(transferee);
  else r.maybeSendAppend(transferee, true);
}

export function handleReadIndex(r: Raft, m: Message): void {
  if (r.trk.isSingleton()) {
    respondToReadIndex(r, m, r.raftLog.committed);
    return;
  }
  // A new leader does not know the commit index of the previous term until it commits an entry
  // of its own; answering before that could return a stale index (tikv #6340).
  if (!r.committedEntryInCurrentTerm() && !r.mutations.readIndexWithoutQuorum) {
    if (r.pendingReadIndexMessages.length >= r.cfg.maxPendingReadIndex) {
      r.droppedReadIndex++;
      return;
    }
    r.pendingReadIndexMessages.push(m);
    return;
  }
  sendReadIndex(r, m);
}

export function sendReadIndex(r: Raft, m: Message): void {
  if (r.mutations.readIndexWithoutQuorum === true || r.leaseValid()) {
    respondToReadIndex(r, m, r.raftLog.committed);
    return;
  }
  assert(m.context !== null, "ReadIndex without context");
  if (!r.readOnly.addRequest(r.raftLog.committed, m)) {
    r.droppedReadIndex++;
    return;
  }
  r.readOnly.recvAck(r.id, m.context);
  r.bcastHeartbeat(m.context);
}

export function releasePendingReadIndexMessages(r: Raft): void {
  if (r.pendingReadIndexMessages.length === 0 || !r.committedEntryInCurrentTerm()) return;
  const pending = r.pendingReadIndexMessages;
  r.pendingReadIndexMessages = [];
  for (const m of pending) sendReadIndex(r, m);
}

export function respondToReadIndex(r: Raft, req: Message, index: number): void {
  if (req.from === NONE || req.from === r.id) {
    r.readStates.push({ index, context: req.context! });
  } else {
    r.send(message({ type: MessageType.ReadIndexResponse, to: req.from, index, context: req.context }));
  }
}
