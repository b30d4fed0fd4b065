/**
 * The follower's and candidate's side of the Raft step function: appends, heartbeats, snapshot chunks,
 * votes received, forwarding to the leader. Functions of the Raft state (see raft.ts).
 */
import { assert } from "../util/assert.js";
import { CampaignType, ProposalDroppedError } from "./errors.js";
import type { Raft } from "./raft.js";
import { VoteResult } from "./quorum.js";
import { SnapshotReceiver } from "./snapshot-stream.js";
import { type Message, MessageType, NONE, Role, message } from "./types.js";

export function stepCandidate(r: Raft, m: Message): void {
  const myVoteResponse = r.role === Role.PreCandidate ? MessageType.PreVoteResponse : MessageType.VoteResponse;
  switch (m.type) {
    case MessageType.Propose:
      throw new ProposalDroppedError("no leader");
    case MessageType.Append:
    case MessageType.Heartbeat:
    case MessageType.SnapshotChunk:
      // A leader exists in our term: we lost the election.
      r.becomeFollower(m.term, m.from);
      handleFromLeader(r, m);
      return;
    case myVoteResponse: {
      const result = r.poll(m.from, !m.reject);
      if (result === VoteResult.Won) {
        if (r.role === Role.PreCandidate) {
          r.campaign(CampaignType.Election);
        } else {
          r.becomeLeader();
          r.bcastAppend();
        }
      } else if (result === VoteResult.Lost) {
        // A rejection carries the rejecter's term; m.term may exceed ours only for pre-votes.
        r.becomeFollower(r.term, NONE);
      }
      return;
    }
    default:
      return;
  }
}

function handleFromLeader(r: Raft, m: Message): void {
  if (m.type === MessageType.Append) handleAppend(r, m);
  else if (m.type === MessageType.Heartbeat) handleHeartbeat(r, m);
  else handleSnapshotChunk(r, m);
}

export function stepFollower(r: Raft, m: Message): void {
  switch (m.type) {
    case MessageType.Propose:
      if (r.lead === NONE) throw new ProposalDroppedError("no leader");
      if (r.cfg.disableProposalForwarding) throw new ProposalDroppedError("proposal forwarding disabled");
      r.send({ ...m, to: r.lead, from: r.id, term: 0 });
      return;
    case MessageType.Append:
    case MessageType.Heartbeat:
    case MessageType.SnapshotChunk:
      r.electionElapsed = 0;
      r.setLead(m.from);
      handleFromLeader(r, m);
      return;
    case MessageType.TransferLeader:
      if (r.lead === NONE) return;
      r.send({ ...m, to: r.lead, term: 0 });
      return;
    case MessageType.TimeoutNow:
      // A removed member or a learner does nothing (cockroach #8535): hup checks promotable().
      r.log(`received TimeoutNow from ${m.from}`);
      r.hup(CampaignType.Transfer);
      return;
    case MessageType.ReadIndex:
      if (r.lead === NONE) return; // dropped: the host retries
      r.send({ ...m, to: r.lead, term: 0 });
      return;
    case MessageType.ReadIndexResponse:
      assert(m.context !== null, "ReadIndexResponse without context");
      r.readStates.push({ index: m.index, context: m.context });
      return;
    default:
      return;
  }
}

export function handleAppend(r: Raft, m: Message): void {
  if (m.index < r.raftLog.committed) {
    r.send(message({ type: MessageType.AppendResponse, to: m.from, index: r.raftLog.committed }));
    return;
  }
  const lastNew = r.raftLog.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
  if (lastNew >= 0) {
    r.send(message({ type: MessageType.AppendResponse, to: m.from, index: lastNew }));
    return;
  }
  // Mismatch: tell the leader the largest index at which our log might still match, with its term.
  const hint = r.raftLog.findConflictByTerm(Math.min(m.index, r.raftLog.lastIndex()), m.logTerm);
  r.send(message({
    type: MessageType.AppendResponse,
    to: m.from,
    index: m.index,
    reject: true,
    rejectHint: hint.index,
    rejectHintTerm: hint.term,
  }));
}

export function handleHeartbeat(r: Raft, m: Message): void {
  const last = r.raftLog.lastIndex();
  // The leader believes we hold up to m.commit. If we do not, our disk lost acknowledged entries:
  // commit what we have (never regressing), and ask the leader to walk back instead of crashing.
  const lost = m.commit > last;
  r.raftLog.commitTo(Math.min(m.commit, last));
  r.send(message({
    type: MessageType.HeartbeatResponse,
    to: m.from,
    context: m.context,
    leaseTick: m.leaseTick,
    reject: lost,
    rejectHint: lost ? last : 0,
  }));
}

export function handleSnapshotChunk(r: Raft, m: Message): void {
  const c = m.snapshotChunk;
  assert(c !== null, "SnapshotChunk without a chunk");
  const meta = c.meta;
  if (meta.index <= r.raftLog.committed) {
    // Nothing to install: tell the leader where we are so it can resume appends.
    r.snapshotReceiver = null;
    r.send(message({ type: MessageType.AppendResponse, to: m.from, index: r.raftLog.committed }));
    return;
  }
  let rx = r.snapshotReceiver;
  if (rx === null || !rx.matches(c)) {
    if (c.offset !== 0) {
      // We hold nothing of this snapshot: ask for it from the start.
      r.send(message({ type: MessageType.SnapshotChunkResponse, to: m.from, index: meta.index, offset: 0, attempt: c.attempt }));
      return;
    }
    rx = new SnapshotReceiver(c);
    r.snapshotReceiver = rx;
  }
  const result = rx.receive(c);
  if (result.kind === "ack") {
    r.send(message({
      type: MessageType.SnapshotChunkResponse, to: m.from, index: meta.index, offset: result.nextOffset, attempt: c.attempt,
    }));
    return;
  }
  r.snapshotReceiver = null;
  const snap = result.snapshot;
  if (r.restore(snap)) {
    r.log(`restored snapshot ${meta.index} (term ${meta.term})`);
    r.send(message({ type: MessageType.AppendResponse, to: m.from, index: r.raftLog.lastIndex() }));
  } else {
    r.send(message({ type: MessageType.AppendResponse, to: m.from, index: r.raftLog.committed }));
  }
}
