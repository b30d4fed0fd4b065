/**
 * Static leader balance: shard g's preferred leader is the ((g - 1) mod n)-th of its n voters in id
 * order, so that leaders (and their work: every write's HTTP-free half) spread evenly over the nodes
 * instead of gathering on whichever node won the first elections. A stand-in until the placement
 * driver balances leaders by load.
 */
import type { NodeId, Raft } from "../raft/index.js";
import { Role } from "../raft/index.js";

export function preferredLeader(group: number, voters: readonly NodeId[]): NodeId {
  if (voters.length === 0) throw new RangeError(`shard ${group} has no voters`);
  return voters[(group - 1) % voters.length]!;
}

/**
 * The node this leader should hand the shard to now, or null. A transfer stops proposals until it
 * completes or times out, so only to a preferred node that is live (`isLive`) and holds the whole log.
 */
export function handOverTo(group: number, r: Raft, isLive: (id: NodeId) => boolean): NodeId | null {
  if (r.role !== Role.Leader || r.leadTransferee !== 0) return null;
  const preferred = preferredLeader(group, r.trk.voterIds());
  if (preferred === r.id) return null;
  const pr = r.trk.progress.get(preferred);
  if (pr === undefined || !isLive(preferred) || pr.match < r.raftLog.lastIndex()) return null;
  return preferred;
}
