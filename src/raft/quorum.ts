/**
 * Quorum arithmetic over majority and joint configurations. Pure functions of sets of ids.
 * A joint configuration (incoming, outgoing) needs a majority of each half.
 */
import type { NodeId } from "./types.js";

export enum VoteResult {
  Pending = "pending",
  Lost = "lost",
  Won = "won",
}

/** Index acknowledged by id, or undefined when unknown. */
export type AckedIndexer = (id: NodeId) => number | undefined;

/**
 * The largest index acknowledged by a majority of `voters`. An empty configuration commits everything
 * (Infinity), so that a joint configuration with an empty outgoing half is governed by the incoming one.
 */
export function majorityCommittedIndex(voters: ReadonlySet<NodeId>, acked: AckedIndexer): number {
  const n = voters.size;
  if (n === 0) return Number.POSITIVE_INFINITY;
  const indexes: number[] = [];
  for (const id of voters) indexes.push(acked(id) ?? 0);
  indexes.sort((a, b) => b - a);
  // With n voters, the (floor(n/2)+1)-th highest index is held by a majority.
  return indexes[Math.floor(n / 2)]!;
}

export function majorityVoteResult(voters: ReadonlySet<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.size === 0) return VoteResult.Won;
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  const quorum = Math.floor(voters.size / 2) + 1;
  if (granted >= quorum) return VoteResult.Won;
  if (granted + missing >= quorum) return VoteResult.Pending;
  return VoteResult.Lost;
}

export interface JointConfig {
  incoming: Set<NodeId>;
  /** Empty unless in a joint configuration. */
  outgoing: Set<NodeId>;
}

export function jointCommittedIndex(c: JointConfig, acked: AckedIndexer): number {
  return Math.min(majorityCommittedIndex(c.incoming, acked), majorityCommittedIndex(c.outgoing, acked));
}

export function jointVoteResult(c: JointConfig, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const r1 = majorityVoteResult(c.incoming, votes);
  const r2 = majorityVoteResult(c.outgoing, votes);
  if (r1 === r2) return r1;
  if (r1 === VoteResult.Lost || r2 === VoteResult.Lost) return VoteResult.Lost;
  return VoteResult.Pending;
}

/**
 * Whether the voters `granted` says yes to win a vote of `c`: jointVoteResult(c, votes) === Won when
 * every voter has voted as `granted` says. Allocates nothing (asked on every request: is the quorum
 * reachable?).
 */
export function jointQuorumReached(c: JointConfig, granted: (id: NodeId) => boolean): boolean {
  return majorityReached(c.incoming, granted) && majorityReached(c.outgoing, granted);
}

function majorityReached(voters: ReadonlySet<NodeId>, granted: (id: NodeId) => boolean): boolean {
  if (voters.size === 0) return true;
  let yes = 0;
  for (const id of voters) if (granted(id)) yes++;
  return yes >= Math.floor(voters.size / 2) + 1;
}

export function jointIds(c: JointConfig): Set<NodeId> {
  const ids = new Set(c.incoming);
  for (const id of c.outgoing) ids.add(id);
  return ids;
}

export function isJoint(c: JointConfig): boolean {
  return c.outgoing.size > 0;
}
