/**
 * The leader lease. Followers refuse votes for an election timeout after hearing from their leader
 * (check-quorum), so no other leader can exist until an election timeout after the most recent
 * heartbeat round a quorum acknowledged. The leader stamps heartbeats with its tick counter; followers
 * echo the stamp; the lease runs from the stamp a quorum has echoed, minus the clock-drift margin.
 */
import { type JointConfig, jointCommittedIndex } from "./quorum.js";
import type { NodeId } from "./types.js";

export class LeaderLease {
  /** Per follower: the newest heartbeat stamp it echoed. */
  private readonly acks = new Map<NodeId, number>();

  onAck(from: NodeId, stampTick: number): void {
    if (stampTick > (this.acks.get(from) ?? 0)) this.acks.set(from, stampTick);
  }

  /** Forget every acknowledgement: after a leadership change or a transfer, the lease is void. */
  clear(): void {
    this.acks.clear();
  }

  /** Whether the lease holds at tick `now` for a leader `self` of `voters`. */
  valid(voters: JointConfig, self: NodeId, now: number, electionTicks: number, driftTicks: number): boolean {
    const start = jointCommittedIndex(voters, (id) => (id === self ? now : this.acks.get(id)));
    if (start === 0 || !Number.isFinite(start)) return false;
    return now < start + electionTicks - driftTicks;
  }
}
