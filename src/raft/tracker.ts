/**
 * The leader's bookkeeping of the configuration (who votes, who learns) and every member's progress,
 * plus the votes of an election.
 *
 * Invariant: a node is a voter (incoming or outgoing) or a learner or in learnersNext, and has a
 * progress entry iff it is one of these; learners and voters (incoming) are disjoint; learnersNext is a
 * subset of the outgoing voters.
 */
import { assert } from "../util/assert.js";
import { Progress } from "./progress.js";
import {
  type JointConfig,
  VoteResult,
  isJoint,
  jointCommittedIndex,
  jointIds,
  jointVoteResult,
} from "./quorum.js";
import type { ConfState, NodeId } from "./types.js";

export interface TrackerConfig {
  voters: JointConfig;
  learners: Set<NodeId>;
  /** Outgoing voters that become learners when the joint configuration is left. */
  learnersNext: Set<NodeId>;
  /** Leave the joint configuration automatically once it is applied. */
  autoLeave: boolean;
}

export function emptyTrackerConfig(): TrackerConfig {
  return {
    voters: { incoming: new Set(), outgoing: new Set() },
    learners: new Set(),
    learnersNext: new Set(),
    autoLeave: false,
  };
}

export function cloneTrackerConfig(c: TrackerConfig): TrackerConfig {
  return {
    voters: { incoming: new Set(c.voters.incoming), outgoing: new Set(c.voters.outgoing) },
    learners: new Set(c.learners),
    learnersNext: new Set(c.learnersNext),
    autoLeave: c.autoLeave,
  };
}

const sorted = (s: Iterable<NodeId>): NodeId[] => [...s].sort((a, b) => a - b);

export function confStateOf(c: TrackerConfig): ConfState {
  return {
    voters: sorted(c.voters.incoming),
    votersOutgoing: sorted(c.voters.outgoing),
    learners: sorted(c.learners),
    learnersNext: sorted(c.learnersNext),
    autoLeave: c.autoLeave,
  };
}

export function configFromConfState(cs: ConfState): TrackerConfig {
  return {
    voters: { incoming: new Set(cs.voters), outgoing: new Set(cs.votersOutgoing) },
    learners: new Set(cs.learners),
    learnersNext: new Set(cs.learnersNext),
    autoLeave: cs.autoLeave,
  };
}

export function confStateEqual(a: ConfState, b: ConfState): boolean {
  const eq = (x: NodeId[], y: NodeId[]) => x.length === y.length && sorted(x).every((v, i) => v === sorted(y)[i]);
  return eq(a.voters, b.voters) && eq(a.votersOutgoing, b.votersOutgoing) && eq(a.learners, b.learners) &&
    eq(a.learnersNext, b.learnersNext) && a.autoLeave === b.autoLeave;
}

export function checkConfigInvariants(c: TrackerConfig, progress: ReadonlyMap<NodeId, Progress>): void {
  for (const id of c.learners) {
    assert(!c.voters.incoming.has(id), () => `${id} is both voter and learner`);
    assert(!c.voters.outgoing.has(id), () => `${id} is both outgoing voter and learner`);
  }
  for (const id of c.learnersNext) {
    assert(c.voters.outgoing.has(id), () => `learnerNext ${id} is not an outgoing voter`);
    assert(!c.voters.incoming.has(id), () => `learnerNext ${id} is an incoming voter`);
  }
  if (!isJoint(c.voters)) {
    assert(c.learnersNext.size === 0, "learnersNext outside a joint configuration");
    assert(!c.autoLeave, "autoLeave outside a joint configuration");
  }
  const members = jointIds(c.voters);
  for (const id of c.learners) members.add(id);
  for (const id of members) {
    const pr = progress.get(id);
    assert(pr !== undefined, () => `member ${id} has no progress`);
    assert(pr.isLearner === c.learners.has(id), () => `progress of ${id} has wrong learner flag`);
  }
  for (const id of progress.keys()) assert(members.has(id), () => `progress for non-member ${id}`);
}

export class ProgressTracker {
  config: TrackerConfig = emptyTrackerConfig();
  progress = new Map<NodeId, Progress>();
  votes = new Map<NodeId, boolean>();
  readonly maxInflightMsgs: number;
  readonly maxInflightBytes: number;

  constructor(maxInflightMsgs: number, maxInflightBytes: number) {
    this.maxInflightMsgs = maxInflightMsgs;
    this.maxInflightBytes = maxInflightBytes;
  }

  newProgress(next: number, isLearner: boolean): Progress {
    const pr = new Progress(next, isLearner, this.maxInflightMsgs, this.maxInflightBytes);
    // A new member counts as active so that check-quorum does not step the leader down at once.
    pr.recentActive = true;
    return pr;
  }

  /** The largest index replicated to a quorum of voters. */
  committed(): number {
    return jointCommittedIndex(this.config.voters, (id) => this.progress.get(id)?.match);
  }

  isSingleton(): boolean {
    return this.config.voters.incoming.size === 1 && this.config.voters.outgoing.size === 0;
  }

  isVoter(id: NodeId): boolean {
    return this.config.voters.incoming.has(id) || this.config.voters.outgoing.has(id);
  }

  voterIds(): NodeId[] {
    return sorted(jointIds(this.config.voters));
  }

  /** Every member in id order (deterministic iteration for the simulator). */
  memberIds(): NodeId[] {
    return sorted(this.progress.keys());
  }

  /** Whether a quorum of voters was recently active (self counts as active). */
  quorumActive(self: NodeId): boolean {
    const votes = new Map<NodeId, boolean>();
    for (const [id, pr] of this.progress) {
      if (pr.isLearner) continue;
      votes.set(id, id === self || pr.recentActive);
    }
    return jointVoteResult(this.config.voters, votes) === VoteResult.Won;
  }

  resetVotes(): void {
    this.votes = new Map();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const [id, pr] of this.progress) {
      if (pr.isLearner) continue;
      const v = this.votes.get(id);
      if (v === undefined) continue;
      if (v) granted++;
      else rejected++;
    }
    return { granted, rejected, result: jointVoteResult(this.config.voters, this.votes) };
  }

  confState(): ConfState {
    return confStateOf(this.config);
  }
}
