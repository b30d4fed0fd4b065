/**
 * Quiescence of idle groups. A node hosts thousands of shards, most of them idle most of the time; a
 * Raft group that ticks heartbeats every interval costs CPU and traffic proportional to the number of
 * shards, not to the work. So a leader whose group has been idle for a while (nothing pending, every
 * member holding the whole log, everything applied) stops ticking and tells its followers, which stop
 * ticking too. Any traffic wakes the group again (a proposal, a read, a message that needs an answer).
 *
 * Raft's safety does not depend on ticks, only its liveness does: a quiescent follower would never
 * notice a dead leader. So every node exchanges a keepalive with every peer each heartbeat interval
 * (one tiny message per peer, whatever the number of groups), and a quiescent follower whose leader's
 * node has been silent for an election timeout wakes with its lease over and elects a new leader.
 * (CockroachDB quiesces ranges the same way, with node liveness as the failure detector.)
 */
import { type Message, MessageType, type RaftNode, Role } from "../raft/index.js";

export interface QuiescenceState {
  quiesced: boolean;
  /** Consecutive ticks during which the group, led here, was idle. */
  idleTicks: number;
}

/**
 * Whether a group led here may quiesce: nothing is pending (client requests, a configuration change,
 * a leadership transfer) and every member holds and knows everything (all match the last index, which
 * is committed and applied).
 */
export function leaderIdle(r: RaftNode, pendingRequests: number): boolean {
  return pendingRequests === 0 && !r.transferring() && r.fullyReplicated();
}

/**
 * Whether a message for a quiescent group must wake it. Acknowledgements a quiescent leader receives
 * for its last heartbeats change nothing; everything else (requests, votes, appends, rejections) does.
 */
export function wakes(role: Role, m: Message): boolean {
  if (role !== Role.Leader) return true;
  if (m.type === MessageType.HeartbeatResponse) return false;
  return !(m.type === MessageType.AppendResponse && !m.reject);
}

export type QuiescenceStep =
  /** Nothing changes. */
  | "none"
  /** The group (led here) quiesces now: stop ticking it and tell its members. */
  | "quiesce"
  /** A quiescent follower's leader fell silent: tick again, its lease over. */
  | "wake-leader-lost";

/**
 * One tick round's decision for a group; updates its idle-tick count. `leaderSilent` says whether the
 * node of the group's leader has been silent past an election timeout (or no leader is known).
 */
export function quiescenceStep(q: QuiescenceState, r: RaftNode, pendingRequests: number, ticks: number, afterTicks: number,
  leaderSilent: boolean): QuiescenceStep {
  if (q.quiesced) return r.role() !== Role.Leader && leaderSilent ? "wake-leader-lost" : "none";
  if (afterTicks === 0 || !leaderIdle(r, pendingRequests)) {
    q.idleTicks = 0;
    return "none";
  }
  q.idleTicks += ticks;
  return q.idleTicks >= afterTicks ? "quiesce" : "none";
}
