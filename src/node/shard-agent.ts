/**
 * The shard side of placement, on every node, for the shards it leads:
 * - mirrors each shard's Raft configuration into the metadata's shard map (set-replicas, fenced by the
 *   applied index it was read at), right after a configuration change applies and on every pass, so
 *   a change whose mirror was lost (a leader crash in between) is mirrored by the next leader; and
 *   records the shard's splits (split-shard) the same way;
 * - reports to the placement driver (the metadata leader) which replicas hold the commit index and the
 *   request rate, each pass (MEM-6: this is the node's heartbeat with its load statistics);
 * - carries out the placement driver's operator steps as Raft configuration changes or leadership
 *   transfers, refusing a step made at an older epoch of the shard than its own (PD-5 fencing).
 *
 * Lifecycle: start() runs a pass every `scheduleIntervalMs` of the cluster settings; stop() ends it.
 * A pass makes at most one metadata proposal per shard led here.
 */
import { type ApplyResult, currentSettings } from "../meta/state.js";
import type { NodeId, ReplicaRole, Step } from "../placement/types.js";
import { type ConfChangeSingle, ConfChangeType, type ConfState } from "../raft/index.js";
import type { Gateway } from "./gateway.js";
import { ConfChangeRefusedError, type MultiRaftNode } from "./multi-raft.js";

/** What a shard's leader tells the placement driver. */
export interface ShardReport {
  shard: number;
  /** The leader's term: of two reports for one shard, the higher term is the current leader's. */
  term: number;
  /** Replicas whose log holds the leader's commit index (the match-index barrier, PD-3). */
  caughtUp: NodeId[];
  /** Client requests per second at this leader since the previous report. */
  requestRate: number;
  /** A replica is being sent a snapshot. */
  snapshotting: boolean;
}

export interface ShardAgentOptions {
  logger?: (line: string) => void;
}

/** The replica set a configuration describes; a joint configuration counts both halves' voters. */
export function replicasOf(conf: ConfState): { node: NodeId; role: ReplicaRole }[] {
  const voters = new Set([...conf.voters, ...conf.votersOutgoing]);
  const learners = [...conf.learners, ...conf.learnersNext].filter((id) => !voters.has(id));
  return [...[...voters].map((node) => ({ node, role: "voter" as const })), ...learners.map((node) => ({ node, role: "learner" as const }))]
    .sort((a, b) => a.node - b.node);
}

function sameReplicas(a: readonly { node: NodeId; role: ReplicaRole }[], b: readonly { node: NodeId; role: ReplicaRole }[]): boolean {
  if (a.length !== b.length) return false;
  const roles = new Map(a.map((r) => [r.node, r.role]));
  return b.every((r) => roles.get(r.node) === r.role);
}

export class ShardAgent {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private mirrorScheduled = false;
  /** Requests counted at the previous report, per shard, and when it was made. */
  private lastRequests = new Map<number, number>();
  private lastReportMs = performance.now();

  constructor(private readonly node: MultiRaftNode, private readonly gateway: Gateway, private readonly opts: ShardAgentOptions = {}) {
    gateway.onStep = (group, epoch, step) => this.executeStep(group, epoch, step);
  }

  start(): void {
    if (this.timer !== null) return;
    this.node.onShardChanged = () => this.mirrorSoon();
    this.schedule();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.node.onShardChanged = null;
  }

  private schedule(): void {
    const intervalMs = currentSettings(this.node.metaState()).placement.scheduleIntervalMs;
    this.timer = setTimeout(() => {
      void this.pass().finally(() => {
        if (this.timer !== null) this.schedule();
      });
    }, intervalMs);
    // The node's own loop keeps the process alive; a forgotten agent alone must not.
    this.timer.unref();
  }

  /** One pass: mirror configurations, then report. */
  async pass(): Promise<void> {
    this.report();
    await this.mirror();
  }

  private mirrorSoon(): void {
    if (this.mirrorScheduled) return;
    this.mirrorScheduled = true;
    setImmediate(() => {
      this.mirrorScheduled = false;
      void this.mirror();
    });
  }

  /** Proposes the replica set of every shard led here whose configuration the metadata does not show yet. */
  private async mirror(): Promise<void> {
    if (this.running) {
      // A pass is under way; the next one sees this change.
      return;
    }
    this.running = true;
    try {
      for (const s of this.node.ledShards()) {
        const record = this.node.metaState().shards.get(s.shard);
        if (record === undefined) continue;
        // Splits first, oldest first: each is recorded against the range end it cut.
        for (const sp of this.node.shardState(s.shard).splits) {
          if (this.node.metaState().shards.has(sp.child) || this.node.metaState().shards.get(s.shard)?.range.end !== sp.end) continue;
          const r = await this.gateway.proposeMeta({ kind: "split-shard", shard: s.shard, child: sp.child, at: sp.at, end: sp.end, index: sp.index, atMs: Date.now() });
          if (!r.ok) this.opts.logger?.(`shard agent: recording the split of shard ${s.shard} refused: ${r.code}: ${r.message}`);
        }
        const replicas = replicasOf(s.conf);
        if (sameReplicas(record.replicas, replicas) || s.applied <= record.confIndex) continue;
        const r = await this.gateway.proposeMeta({ kind: "set-replicas", shard: s.shard, confIndex: s.applied, replicas, atMs: Date.now() });
        if (!r.ok) this.opts.logger?.(`shard agent: mirroring shard ${s.shard} refused: ${r.code}: ${r.message}`);
      }
    } catch (e) {
      this.opts.logger?.(`shard agent: mirroring failed (${(e as Error).message}); the next pass tries again`);
    } finally {
      this.running = false;
    }
  }

  private report(): void {
    const nowMs = performance.now();
    const seconds = Math.max(0.001, (nowMs - this.lastReportMs) / 1000);
    const reports: ShardReport[] = [];
    const requests = new Map<number, number>();
    for (const s of this.node.ledShards()) {
      requests.set(s.shard, s.requests);
      const before = this.lastRequests.get(s.shard) ?? s.requests;
      reports.push({ shard: s.shard, term: s.term, caughtUp: s.caughtUp, requestRate: (s.requests - before) / seconds, snapshotting: s.snapshotting });
    }
    this.lastRequests = requests;
    this.lastReportMs = nowMs;
    this.gateway.report(reports);
  }

  /** Carries out one operator step on a shard led here (the gateway routed it to the leader). */
  async executeStep(group: number, epoch: number, step: Step): Promise<ApplyResult> {
    const record = this.node.metaState().shards.get(group);
    if (record === undefined) return { ok: false, code: "shard_not_found", message: `no shard ${group}` };
    if (epoch < record.epoch) {
      return { ok: false, code: "stale_epoch", message: `shard ${group} is at epoch ${record.epoch}; the operator was made at ${epoch}` };
    }
    if (step.kind === "transfer-leader") {
      // RAFT-7: the step's completion is Raft's explicit outcome, not a guess from who leads later.
      const outcome = await this.node.transferLeadershipAndWait(group, step.to);
      return outcome === "completed" ? { ok: true } : { ok: false, code: "transfer_aborted", message: `shard ${group}: the transfer to ${step.to} was aborted` };
    }
    const change: ConfChangeSingle = step.kind === "add-learner"
      ? { type: ConfChangeType.AddLearner, nodeId: step.node }
      : step.kind === "promote" ? { type: ConfChangeType.AddVoter, nodeId: step.node } : { type: ConfChangeType.RemoveNode, nodeId: step.node };
    try {
      return await this.node.proposeConfChange(group, [change]);
    } catch (e) {
      if (e instanceof ConfChangeRefusedError) return { ok: false, code: "conf_change_refused", message: e.message };
      throw e;
    }
  }
}
