/**
 * Safety invariants checked while a simulation runs. Each check throws SimViolation with a message
 * naming the rule, the nodes and the indexes involved.
 */
import { type Entry, type NodeId, Role } from "../raft/index.js";
import type { SimNode } from "./sim-node.js";

export class SimViolation extends Error {
  override name = "SimViolation";
}

function violation(rule: string, detail: string): never {
  throw new SimViolation(`${rule}: ${detail}`);
}

const decoder = new TextDecoder("latin1");

export function entryFingerprint(e: Entry): string {
  return `${e.term}|${e.type}|${decoder.decode(e.data)}`;
}

export class InvariantChecker {
  /** Election safety: the leader of each term. */
  private readonly leaderOfTerm = new Map<number, NodeId>();
  /** State-machine safety: what was applied at each index, by anyone. */
  private readonly appliedAt = new Map<number, { term: number; fp: string | null; by: NodeId }>();
  /** The state machine after applying each index (for snapshot and replay agreement). */
  private readonly stateAt = new Map<number, string>();
  /** Entries known committed: index -> term. */
  private readonly committedTerm = new Map<number, number>();
  private maxCommitted = 0;
  /** Per node and incarnation: the highest commit index seen. */
  private readonly commitSeen = new Map<string, number>();
  /** Per node: the highest durable commit (survives crashes). */
  private readonly durableCommitSeen = new Map<NodeId, number>();
  /** Per node: the applied index, which must grow by one per entry. */
  private readonly appliedSeen = new Map<string, number>();
  private readonly wasLeader = new Map<NodeId, number>();
  checks = 0;

  onApplied(node: SimNode, e: Entry, isSnapshot: boolean): void {
    const key = `${node.id}/${node.incarnation}`;
    const prev = this.appliedSeen.get(key);
    if (!isSnapshot && prev !== undefined && e.index !== prev + 1) {
      violation("apply order", `node ${node.id} applied ${e.index} after ${prev}`);
    }
    this.appliedSeen.set(key, e.index);
    const fp = isSnapshot ? null : entryFingerprint(e);
    const seen = this.appliedAt.get(e.index);
    if (seen === undefined) {
      this.appliedAt.set(e.index, { term: e.term, fp, by: node.id });
    } else if (seen.term !== e.term || (fp !== null && seen.fp !== null && seen.fp !== fp)) {
      violation("state-machine safety",
        `node ${node.id} applied index ${e.index} term ${e.term}, node ${seen.by} applied term ${seen.term} there`);
    } else if (seen.fp === null && fp !== null) {
      seen.fp = fp;
    }
    const state = node.sm.fingerprint();
    const other = this.stateAt.get(e.index);
    if (other === undefined) this.stateAt.set(e.index, state);
    else if (other !== state) violation("state-machine safety", `node ${node.id} has a different state after index ${e.index}`);
    this.recordCommitted(e.index, e.term, node.id);
  }

  private recordCommitted(index: number, term: number, by: NodeId): void {
    const t = this.committedTerm.get(index);
    if (t === undefined) {
      this.committedTerm.set(index, term);
      if (index > this.maxCommitted) this.maxCommitted = index;
    } else if (t !== term) {
      violation("state-machine safety", `node ${by} committed index ${index} with term ${term}, known committed with ${t}`);
    }
  }

  /** Checks run after every simulation step. */
  afterStep(nodes: readonly SimNode[]): void {
    this.checks++;
    for (const node of nodes) {
      const raft = node.raft;
      const durable = node.disk.hardState.commit;
      const prevDurable = this.durableCommitSeen.get(node.id) ?? 0;
      if (durable < prevDurable) violation("commit regression", `node ${node.id} durable commit ${durable} < ${prevDurable}`);
      this.durableCommitSeen.set(node.id, durable);
      if (raft === null) continue;
      const r = raft;
      r.checkInvariants();
      const key = `${node.id}/${node.incarnation}`;
      const commit = r.committed();
      const prev = this.commitSeen.get(key) ?? 0;
      if (commit < prev) violation("commit regression", `node ${node.id} commit ${commit} < ${prev}`);
      this.commitSeen.set(key, commit);
      // Entries up to the commit index are committed: record their terms.
      for (let i = Math.max(prev + 1, r.firstIndex()); i <= commit; i++) {
        const t = r.termAt(i);
        if (t >= 0) this.recordCommitted(i, t, node.id);
      }
      if (r.role() === Role.Leader) {
        const leader = this.leaderOfTerm.get(r.term());
        if (leader === undefined) this.leaderOfTerm.set(r.term(), node.id);
        else if (leader !== node.id) violation("election safety", `nodes ${leader} and ${node.id} both lead term ${r.term()}`);
        if (this.wasLeader.get(node.id) !== r.term()) {
          this.wasLeader.set(node.id, r.term());
          this.checkLeaderCompleteness(node);
        }
      }
    }
  }

  /** Leader completeness: a new leader's log holds every committed entry. */
  private checkLeaderCompleteness(node: SimNode): void {
    const log = node.raft!;
    const first = log.firstIndex();
    for (let i = first; i <= this.maxCommitted; i++) {
      const want = this.committedTerm.get(i);
      if (want === undefined) continue;
      const have = log.termAt(i);
      if (have !== want) {
        violation("leader completeness",
          `leader ${node.id} (term ${node.raft!.term()}) has term ${have} at committed index ${i}, committed term ${want}`);
      }
    }
  }

  /** Log matching: entries with the same index and term are identical, and so are all before them. */
  checkLogMatching(nodes: readonly SimNode[]): void {
    const up = nodes.filter((n) => n.raft !== null);
    for (let a = 0; a < up.length; a++) {
      for (let b = a + 1; b < up.length; b++) {
        const la = up[a]!.raft!;
        const lb = up[b]!.raft!;
        const lo = Math.max(la.firstIndex(), lb.firstIndex());
        const hi = Math.min(la.lastIndex(), lb.lastIndex());
        if (lo > hi) continue;
        const ea = la.logEntries(lo, hi);
        const eb = lb.logEntries(lo, hi);
        let matchAt = -1;
        for (let i = ea.length - 1; i >= 0; i--) if (ea[i]!.term === eb[i]!.term) { matchAt = i; break; }
        for (let i = 0; i <= matchAt; i++) {
          if (entryFingerprint(ea[i]!) !== entryFingerprint(eb[i]!)) {
            violation("log matching", `nodes ${up[a]!.id} and ${up[b]!.id} differ at index ${ea[i]!.index} ` +
              `though they agree on term ${ea[matchAt]!.term} at ${ea[matchAt]!.index}`);
          }
        }
      }
    }
  }

  /** The highest index at which a write was acknowledged to a client. */
  maxAcknowledged = 0;

  onAcknowledged(index: number): void {
    if (index > this.maxAcknowledged) this.maxAcknowledged = index;
  }
}
