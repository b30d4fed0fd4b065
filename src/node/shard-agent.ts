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
import { type ApplyResult, type MetaCommand, currentSettings } from "../meta/state.js";
import type { NodeId, ReplicaRole, Step } from "../placement/types.js";
import { type ConfChangeSingle, ConfChangeType, type ConfState } from "../raft/index.js";
import { pack } from "msgpackr";
import type { Gateway } from "./gateway.js";
import { PacedLoop } from "./paced-loop.js";
import { ShardSizes, middleId } from "./shard-sizes.js";
import { ConfChangeRefusedError, type MultiRaftNode } from "./multi-raft.js";
import { type Logger } from "../util/logger.js";
import type { Clock } from "../util/clock.js";

/** What a shard's leader tells the placement driver. */
export interface ShardReport {
  shard: number;
  /** The leader's term: of two reports for one shard, the higher term is the current leader's. */
  term: number;
  /** Replicas whose log holds the leader's commit index (the match-index barrier, PD-3). */
  caughtUp: NodeId[];
  /** Client requests per second at this leader since the previous report. */
  requestRate: number;
  /** Records and bytes in the shard, once measured (see shard-sizes.ts). */
  records?: number;
  sizeBytes?: number;
  /** A replica is being sent a snapshot. */
  snapshotting: boolean;
}

export interface ShardAgentOptions {
  logger?: Logger;
  /** Time and timers; by default the gateway's (the node's) clock. */
  clock?: Clock;
}

/**
 * The service (Gateway.ask, on the shard's leader) that answers the id in the middle of a shard's
 * records, or null (shard-sizes.ts middleId): where the placement driver splits a range collection's
 * shard by default.
 */
export const MIDDLE_ID_SERVICE = "middle-id";

/** A merge ships the source's records through the target's log: only small shards merge. */
export const MERGE_MAX_RECORDS = 10_000;
/** Under the transport's 64 MiB frame with room to spare (the records travel in one RPC, then one entry). */
export const MERGE_MAX_BYTES = 8 << 20;
/** Passes after which a frozen shard whose merge is not recorded yet ships its records again. */
const RESHIP_PASSES = 10;

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
  private readonly clock: Clock;
  private readonly loop: PacedLoop;
  private running = false;
  private mirrorScheduled = false;
  /** Requests counted at the previous report, per shard, and when it was made. */
  private lastRequests = new Map<number, number>();
  /** Sizes of the shards led here, measured a bounded number of records per pass. */
  private readonly sizes: ShardSizes;
  /** Frozen shards led here whose records were shipped, at which pass (bounded by the shards led). */
  private readonly shippedAtPass = new Map<number, number>();
  private passes = 0;
  private lastReportMs: number;
  private lastReports: readonly ShardReport[] = [];

  constructor(private readonly node: MultiRaftNode, private readonly gateway: Gateway, private readonly opts: ShardAgentOptions = {}) {
    this.clock = opts.clock ?? gateway.clock;
    this.loop = new PacedLoop(() => currentSettings(this.node.metaState()).placement.scheduleIntervalMs, () => this.pass(), this.clock);
    this.lastReportMs = this.clock.nowMs();
    gateway.onStep = (group, epoch, step) => this.executeStep(group, epoch, step);
    gateway.onMerge = (group, into) => this.freeze(group, into);
    this.sizes = new ShardSizes((group, limit, after) => this.node.scan(group, limit, after));
    gateway.serve(MIDDLE_ID_SERVICE, async (group) => middleId((g, limit, after) => this.node.scan(g, limit, after), group));
  }

  start(): void {
    this.node.onShardChanged = (group) => {
      // Its range changed (a split, a merge): what was measured is no longer its size.
      this.sizes.forget(group);
      this.mirrorSoon();
    };
    this.loop.start();
  }

  stop(): void {
    this.loop.stop();
    this.node.onShardChanged = null;
  }

  /** One pass: mirror configurations, then report. */
  async pass(): Promise<void> {
    this.passes++;
    this.report();
    await this.mirror();
  }

  private mirrorSoon(): void {
    if (this.mirrorScheduled) return;
    this.mirrorScheduled = true;
    this.clock.defer(() => {
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
      const mirrors: { shard: number; cmd: MetaCommand }[] = [];
      for (const s of this.node.ledShards()) {
        const record = this.node.metaState().shards.get(s.shard);
        if (record === undefined) continue;
        await this.advanceMerges(s.shard);
        // Splits first, oldest first: each is recorded against the range end it cut.
        for (const sp of this.node.shardState(s.shard).splits) {
          if (this.node.metaState().shards.has(sp.child) || this.node.metaState().shards.get(s.shard)?.range.end !== sp.end) continue;
          // Once the child has a leader (where it is hosted here, or filled: split-fill.ts): before, routing
          // requests to it would only have them refused; the parent refuses them meanwhile, and gateways
          // wait for the map to change. A later split waits for an earlier one (recorded in order). A
          // leader that skipped the split (a snapshot past it) hosts the child only once it is recorded.
          if (this.node.splitChildFilling(sp.child) || (this.node.hosts(sp.child) && this.node.leaderOf(sp.child) === 0)) break;
          const r = await this.gateway.proposeMeta({ kind: "split-shard", shard: s.shard, child: sp.child, at: sp.at, end: sp.end, index: sp.index, atMs: this.clock.wallMs() });
          if (!r.ok) this.opts.logger?.warn({ shard: s.shard, code: r.code }, `shard agent: recording the split of shard ${s.shard} refused: ${r.message}`);
        }
        const replicas = replicasOf(s.conf);
        if (sameReplicas(record.replicas, replicas) || s.applied <= record.confIndex) continue;
        mirrors.push({ shard: s.shard, cmd: { kind: "set-replicas", shard: s.shard, confIndex: s.applied, replicas, atMs: this.clock.wallMs() } });
      }
      // Independent of each other (one shard each): they go together, sharing Raft rounds.
      for (const [i, r] of (await this.gateway.proposeMetaMany(mirrors.map((m) => m.cmd))).entries()) {
        const shard = mirrors[i]!.shard;
        if (r instanceof Error) this.opts.logger?.warn({ shard }, `shard agent: mirroring shard ${shard} failed (${r.message}); the next pass tries again`);
        else if (!r.ok) this.opts.logger?.warn({ shard, code: r.code }, `shard agent: mirroring shard ${shard} refused: ${r.message}`);
      }
    } catch (e) {
      this.opts.logger?.warn(`shard agent: mirroring failed (${(e as Error).message}); the next pass tries again`);
    } finally {
      this.running = false;
    }
  }

  /** What this node last reported of the shards it leads (request rates, sizes): the dashboard's hot shards. */
  reports(): readonly ShardReport[] {
    return this.lastReports;
  }

  private report(): void {
    const nowMs = this.clock.nowMs();
    const seconds = Math.max(0.001, (nowMs - this.lastReportMs) / 1000);
    const reports: ShardReport[] = [];
    const requests = new Map<number, number>();
    const led = this.node.ledShards();
    this.sizes.measure(led, nowMs);
    for (const id of this.shippedAtPass.keys()) if (!led.some((s) => s.shard === id)) this.shippedAtPass.delete(id);
    for (const s of led) {
      requests.set(s.shard, s.requests);
      const before = this.lastRequests.get(s.shard) ?? s.requests;
      const size = this.sizes.get(s.shard);
      reports.push({
        shard: s.shard, term: s.term, caughtUp: s.caughtUp, requestRate: (s.requests - before) / seconds, snapshotting: s.snapshotting,
        ...(size !== undefined ? { records: size.records, sizeBytes: size.bytes } : {}),
      });
    }
    this.lastRequests = requests;
    this.lastReportMs = nowMs;
    this.lastReports = reports;
    this.gateway.report(reports);
  }

  /**
   * Freezes a shard led here for a merge into `into` (the placement driver asked): refused for a shard
   * too large to ship through one log entry. From then on the shard's leader drives the merge itself.
   */
  async freeze(group: number, into: number): Promise<ApplyResult> {
    const records = this.node.scan(group, MERGE_MAX_RECORDS + 1).length;
    if (records > MERGE_MAX_RECORDS) return { ok: false, code: "too_large", message: `shard ${group} holds more than ${MERGE_MAX_RECORDS} records: only small shards merge` };
    const r = await this.node.propose(group, { op: "freeze", into });
    this.mirrorSoon();
    return r.ok ? { ok: true, value: into } : { ok: false, code: r.code, message: `shard ${group} did not freeze (${r.code})` };
  }

  /**
   * Drives a merge on a shard led here. A frozen source ships its records to its target's leader, which
   * absorbs them through its own log; if the target cannot (no longer adjacent), the source unfreezes.
   * A target records what it absorbed in the metadata (the source is retired there, and its replicas
   * drop it). Every step is idempotent, so any later leader of either shard can finish a merge.
   */
  private async advanceMerges(group: number): Promise<void> {
    const st = this.node.shardState(group);
    const meta = this.node.metaState();
    for (const a of st.absorbed ?? []) {
      if (meta.shards.get(a.from)?.retiredInto !== undefined) continue;
      const r = await this.gateway.proposeMeta({ kind: "merge-shards", into: group, from: a.from, end: a.end, atMs: this.clock.wallMs() });
      if (!r.ok) this.opts.logger?.warn({ shard: a.from, into: group, code: r.code }, `shard agent: recording the merge of shard ${a.from} into ${group} refused: ${r.message}`);
    }
    if (st.frozen === undefined || meta.shards.get(group)?.retiredInto !== undefined) return;
    // Shipped already: the target's leader records the merge; ship again only if that seems lost.
    const shipped = this.shippedAtPass.get(group);
    if (shipped !== undefined && this.passes - shipped < RESHIP_PASSES) return;
    this.shippedAtPass.set(group, this.passes);
    // Records and remembered idempotency outcomes (a retry must find its outcome on the target too).
    const records = this.node.shardContents(group, 2 * MERGE_MAX_RECORDS + 1);
    const fits = records.length <= 2 * MERGE_MAX_RECORDS && (pack(records) as Uint8Array).byteLength <= MERGE_MAX_BYTES;
    // A frozen shard hands out no version after its freeze index: the target continues above this one.
    const versionMax = (st.versionBase ?? 0) + st.frozen.index;
    const absorbed = fits ? await this.gateway.absorb(st.frozen.into, group, st.range.start, st.range.end, records, versionMax) : null;
    if (absorbed === null || (!absorbed.ok && absorbed.code === "not_adjacent")) {
      this.opts.logger?.warn({ shard: group, into: st.frozen.into }, `shard agent: shard ${group} cannot merge into ${st.frozen.into} (${fits ? "not adjacent any more" : "too large"}): unfreezing`);
      await this.node.propose(group, { op: "unfreeze" });
    }
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
