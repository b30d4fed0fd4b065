/**
 * The placement driver's loop (PD-1 … PD-7), run by the metadata group's leader. Each cycle it builds
 * the cluster view (the metadata's nodes and shard map, health as this node's failure detectors judge
 * it, leaders and caught-up replicas from the shard leaders' reports), asks the pure scheduler
 * (placement/scheduler.ts) what to do, records operators in the metadata group (so that a new leader
 * resumes them), and sends each operator's current step to the shard's leader (ShardAgent). It also
 * retires dead nodes once they hold no replica (MEM-6, zombie removal in one batched change) and
 * downgrades stale metadata learners with an alert (MEM-4).
 *
 * Every decision that changes the cluster is a proposal to the metadata group or to a shard's group: a
 * quorum decision (MEM-8). A placement driver that lost its leadership stops at its next cycle; what it
 * proposed meanwhile is fenced (operator epochs, configuration indexes).
 *
 * Lifecycle: start() runs a cycle every `scheduleIntervalMs` of the settings; stop() ends it.
 */
import { type MetaState, type OperatorRecord, type OperatorStatus, currentSettings } from "../meta/state.js";
import { type ManualRequest, type Refusal, busyRefusal, manualOperator } from "../placement/manual.js";
import { operatorShards } from "../placement/operators.js";
import { type MergeCollection, clearManualSplit, markManualSplit, pickMerge, reshapeProgress } from "../placement/reshape.js";
import { type PlacementState, placementCycle } from "../placement/scheduler.js";
import type { ClusterView, NodeId, NodeView, Operator, OperatorReason, PlacementConfig, ShardView } from "../placement/types.js";
import { ConfChangeType } from "../raft/index.js";
import type { Gateway } from "./gateway.js";
import { PacedLoop } from "./paced-loop.js";
import { META_GROUP, type MultiRaftNode, NotLeaderError } from "./multi-raft.js";
import type { ShardReport } from "./shard-agent.js";
import { laggingLearners, promoteToVoters } from "./membership.js";
import { type Logger } from "../util/logger.js";
import type { Clock } from "../util/clock.js";

export interface Alert {
  atMs: number;
  kind: "stale-learner" | "node-dead" | "node-removed";
  node: NodeId;
  message: string;
}

export type PlacementRequest = ManualRequest | { kind: "alerts" } | { kind: "promote"; nodes: NodeId[] } | { kind: "split"; shard: number; at?: number }
  | { kind: "merge"; shard: number };

export type PlacementAnswer =
  | {
    ok: true; operator?: Operator; alerts?: Alert[];
    /** A split: the new shard and the hash ranges [start, end) of both parts. */
    child?: number; range?: [number, number]; childRange?: [number, number];
    /** A merge: the surviving shard (the source is retired into it), and `range` the survivor's range once merged. */
    into?: number;
  }
  /** A `shard_busy` refusal names the operator in the way (`operator`). */
  | Refusal;

export interface PlacementDriverOptions {
  logger?: Logger;
  /**
   * Time and timers; by default the gateway's (the node's) clock. The scheduler's "now" is the wall
   * clock (wallMs): it is compared with the atMs the metadata records, which every node reads.
   */
  clock?: Clock;
}

/** Shards the placement driver stops splitting at (a bound on the metadata and on every node's groups). */
const MAX_SHARDS = 10_000;
/** Alerts kept (newest last). */
const ALERTS_MAX = 100;
/** A step sent to a shard's leader is sent again only after this many cycles without effect. */
const REDISPATCH_CYCLES = 3;

interface HeldReport {
  from: NodeId;
  report: ShardReport;
  atMs: number;
}

/**
 * The scheduler's state rebuilt from the operators the metadata records as running (PD failover), and
 * the shards split by hand (a split by hand is recorded as a done operator; a merge by hand after it
 * hands its shards back to the driver).
 */
export function stateFromMeta(meta: Readonly<MetaState>): PlacementState {
  const records = [...meta.operators.values()].sort((a, b) => a.operator.id - b.operator.id);
  const running = records.filter((r) => r.status === "running").map((r) => r.operator);
  const settled = new Map<number, number>();
  for (const r of records) if (r.status !== "running") settled.set(r.operator.shard, Math.max(settled.get(r.operator.shard) ?? 0, r.updatedAtMs));
  const nextOperatorId = records.reduce((m, r) => Math.max(m, r.operator.id), 0) + 1;
  let state: PlacementState = { operators: running, nextOperatorId, recentMoves: [], shardSettledAtMs: settled, manualSplitAtMs: new Map() };
  for (const r of records) {
    const reshape = r.operator.reshape;
    if (r.operator.reason !== "manual" || reshape === undefined) continue;
    if (reshape.kind === "split" && r.status === "done" && reshape.child !== undefined) state = markManualSplit(state, r.operator.shard, reshape.child, r.updatedAtMs);
    if (reshape.kind === "merge" && r.status !== "cancelled") state = clearManualSplit(state, [r.operator.shard, reshape.into]);
  }
  return state;
}

/**
 * The refusal for a shard that is not in the shard map, or null: a shard merged away says which shard
 * holds its range now (409 shard_retired), so a script holding an id listed earlier learns where to go.
 */
function goneRefusal(meta: Readonly<MetaState>, id: number): Refusal | null {
  const shard = meta.shards.get(id);
  if (shard === undefined) return { ok: false, code: "shard_not_found", message: `no shard ${id}` };
  if (shard.retiredInto === undefined) return null;
  // Merged again since, perhaps: follow the chain (bounded by the shards there are) to the live one.
  let into = shard.retiredInto;
  for (let i = 0; i < meta.shards.size && meta.shards.get(into)?.retiredInto !== undefined; i++) into = meta.shards.get(into)!.retiredInto!;
  return { ok: false, code: "shard_retired", message: `shard ${id} was merged into shard ${shard.retiredInto}${into !== shard.retiredInto ? `, now part of shard ${into}` : ""}: its range is shard ${into}'s` };
}

/** The longest a request may wait for the operators in its way (under the 300 s a fetch waits for an answer's headers). */
export const PLACEMENT_WAIT_MS_MAX = 240_000;
/** Placement requests a waiting request makes at most (each after an operator in its way ended). */
const WAIT_ATTEMPTS_MAX = 1000;

/**
 * A placement request that, refused because an operator runs on its shard, waits for that operator to
 * end and asks again, until it is taken or `waitMs` has passed (then it answers the last refusal, which
 * names the operator still in the way). It waits on this node's copy of the metadata, where the
 * placement driver records every operator's end: no polling, and any node can wait. A split in flight
 * is not recorded as running: then the next change of the metadata is the cue to ask again.
 * `onWait` hears of each operator waited for.
 */
export async function askPlacement(node: MultiRaftNode, gateway: Gateway, req: PlacementRequest, waitMs: number,
  onWait?: (refusal: Refusal) => void): Promise<PlacementAnswer> {
  const clock = gateway.clock;
  const deadlineMs = clock.nowMs() + Math.min(Math.max(0, waitMs), PLACEMENT_WAIT_MS_MAX);
  for (let attempt = 1; ; attempt++) {
    const r = await gateway.placement(req);
    if (r.ok || r.code !== "shard_busy" || r.operator === undefined || attempt >= WAIT_ATTEMPTS_MAX || clock.nowMs() >= deadlineMs) {
      return r.ok || attempt === 1 || r.code !== "shard_busy" ? r : { ...r, message: `${r.message} (still running after waiting ${Math.round(waitMs)} ms)` };
    }
    onWait?.(r);
    const id = r.operator.id;
    // At least one change: an operator not recorded yet (or never, a split) is asked about again after it.
    do {
      const leftMs = deadlineMs - clock.nowMs();
      if (leftMs <= 0) break;
      await node.awaitMetaChange(leftMs);
    } while (node.metaState().operators.get(id)?.status === "running");
  }
}

export class PlacementDriver {
  private readonly clock: Clock;
  private readonly loop: PacedLoop;
  /** Null while this node does not lead the metadata group. */
  private state: PlacementState | null = null;
  /** The latest report per shard (of the highest term seen). Bounded by the shard count. */
  private readonly reports = new Map<number, HeldReport>();
  /** When each operator's current step was last sent (operator id -> [step index, cycle]). */
  private readonly dispatched = new Map<number, [number, number]>();
  /** Since when each metadata learner has lagged or been silent (stale-learner detection). */
  private readonly laggingSinceMs = new Map<NodeId, number>();
  /** Nodes already alerted as dead (bounded by the node count). */
  private readonly deadSeen = new Set<NodeId>();
  private cycles = 0;
  private running = false;
  readonly alerts: Alert[] = [];

  constructor(private readonly node: MultiRaftNode, private readonly gateway: Gateway, private readonly opts: PlacementDriverOptions = {}) {
    this.clock = opts.clock ?? gateway.clock;
    this.loop = new PacedLoop(() => currentSettings(this.node.metaState()).placement.scheduleIntervalMs, () => this.cycle(), this.clock);
    gateway.onReport = (from, report) => this.receive(from, report);
    gateway.onPlacement = (req) => this.submit(req);
  }

  /**
   * A request of the cluster's operator, on the metadata leader (the gateway routes it here): a manual
   * operator (move, transfer-leader), a cancellation, or the alerts. The operator runs from the next
   * cycle on; it is recorded in the metadata now, so that the answer means it will run.
   */
  async submit(req: PlacementRequest): Promise<PlacementAnswer> {
    if (this.node.leaderOf(META_GROUP) !== this.node.id) throw new NotLeaderError(META_GROUP, this.node.leaderOf(META_GROUP));
    if (req.kind === "alerts") return { ok: true, alerts: this.alerts.slice() };
    if (req.kind === "promote") return this.promote(req.nodes);
    if (req.kind === "split") return this.split(req.shard, req.at, "manual");
    if (req.kind === "merge") return this.merge(req.shard, "manual");
    const meta = this.node.metaState();
    const gone = req.kind === "cancel" ? null : goneRefusal(meta, req.shard);
    if (gone !== null) return gone;
    this.state ??= stateFromMeta(meta);
    await this.endFinishedReshapes();
    const cfg = currentSettings(meta).placement;
    const nowMs = this.clock.wallMs();
    const r = manualOperator(this.view(nowMs, cfg), this.state, req, nowMs);
    if (!r.ok) return r;
    this.state = r.state;
    if (r.ended) this.dispatched.delete(r.operator.id);
    await this.gateway.proposeMeta({ kind: "record-operator", operator: r.operator, status: r.ended ? "cancelled" : "running", atMs: nowMs });
    this.opts.logger?.info(`placement driver: ${r.ended ? "cancelled" : "started"} operator ${r.operator.id} on shard ${r.operator.shard} at the operator's request`);
    return { ok: true, operator: r.operator };
  }

  start(): void {
    this.loop.start();
  }

  stop(): void {
    this.loop.stop();
  }

  /** Whether this node runs the placement driver now (it leads the metadata group). */
  get active(): boolean {
    return this.state !== null;
  }

  private receive(from: NodeId, reports: ShardReport[]): void {
    const nowMs = this.clock.wallMs();
    for (const report of reports) {
      if (typeof report?.shard !== "number" || typeof report.term !== "number" || !Array.isArray(report.caughtUp)) continue;
      if (!this.node.metaState().shards.has(report.shard)) continue;
      const held = this.reports.get(report.shard);
      if (held !== undefined && held.report.term > report.term) continue;
      // Rates are smoothed (half-life of one report): one noisy interval must not move a leadership.
      const rate = held === undefined ? report.requestRate : (held.report.requestRate + report.requestRate) / 2;
      this.reports.set(report.shard, { from, report: { ...report, requestRate: rate }, atMs: nowMs });
    }
  }

  /**
   * Promotes metadata learners to voters at the operator's request (MEM-2): standard nodes only, caught
   * up, and as many as keep the voter count odd (name a partner to promote two).
   */
  private async promote(ids: NodeId[]): Promise<PlacementAnswer> {
    const meta = this.node.metaState();
    const conf = this.node.metaStatus().config;
    for (const id of ids) {
      const n = meta.nodes.get(id);
      if (n === undefined || n.worker === "removed") return { ok: false, code: "node_not_found", message: `no node ${id}` };
      if (n.role !== "standard") return { ok: false, code: "not_promotable", message: `node ${id} is ${n.role}: it never votes` };
      if (!conf.learners.includes(id)) return { ok: false, code: "not_a_learner", message: `node ${id} is not a learner of the metadata group` };
    }
    if (new Set(ids).size !== ids.length) return { ok: false, code: "bad_request", message: "a node is named twice" };
    if ((conf.voters.length + ids.length) % 2 === 0) {
      return { ok: false, code: "voters_must_stay_odd", message: `${conf.voters.length} voters + ${ids.length} would be even: name a partner to promote with` };
    }
    const lagging = laggingLearners(this.node, ids);
    if (lagging.length > 0) return { ok: false, code: "not_caught_up", message: `node(s) ${lagging.join(", ")} do not hold the metadata leader's commit index yet` };
    await promoteToVoters(this.gateway, ids, this.clock.wallMs());
    return { ok: true };
  }

  /**
   * Splits a shard in two at hash `at` (default: the middle of its range), PD-6: a new shard id is
   * reserved in the metadata, the shard's leader proposes the split, and its replicas apply it; the
   * leader then records it in the shard map. Refused while an operator runs on the shard (its epoch
   * would fence it anyway). The split is an operator while it runs, so that a request for the shard
   * meanwhile is refused naming it (or waits for it), and is recorded once done: a split by hand keeps
   * both parts from being merged automatically for `manualSplitCooldownMs`, also after a failover.
   */
  private async split(id: number, at: number | undefined, reason: OperatorReason): Promise<PlacementAnswer> {
    const meta = this.node.metaState();
    const shard = meta.shards.get(id);
    const gone = goneRefusal(meta, id);
    if (gone !== null || shard === undefined) return gone!;
    this.state ??= stateFromMeta(meta);
    await this.endFinishedReshapes();
    const busy = this.state === null ? null : busyRefusal(this.state, [id]);
    if (busy !== null) return busy;
    const { start, end } = shard.range;
    const point = at ?? Math.floor((start + end) / 2);
    if (!(point > start && point < end)) {
      return { ok: false, code: "bad_request", message: `split point ${point} is not inside shard ${id}'s range [${start}, ${end})` };
    }
    let op = this.hold({ shard: id, epoch: shard.epoch, reason, reshape: { kind: "split", at: point, end } });
    let outcome: OperatorStatus = "cancelled";
    try {
      const reserved = await this.gateway.proposeMeta({ kind: "reserve-shard-id", atMs: this.clock.wallMs() });
      if (!reserved.ok) return reserved;
      const child = reserved.value!;
      op = this.replaceHeld({ ...op, reshape: { kind: "split", at: point, end, child } });
      const r = await this.gateway.split(id, point, child);
      if (!r.ok) return { ok: false, code: r.code, message: r.code === "bad_split" ? r.message : `the split of shard ${id} was refused (${r.code})` };
      outcome = "done";
      this.opts.logger?.info(`placement driver: split shard ${id} at ${point} (${reason}): the upper part is shard ${child}`);
      // Its load so far was the whole range's: only a report made after the split may call it hot again.
      this.reports.delete(id);
      this.settle(id, this.clock.wallMs());
      this.settle(child, this.clock.wallMs());
      if (reason === "manual" && this.state !== null) this.state = markManualSplit(this.state, id, child, this.clock.wallMs());
      return { ok: true, operator: op, child, range: [start, point], childRange: [point, end] };
    } finally {
      await this.release(op, outcome);
    }
  }

  /**
   * Ends the splits and merges the shard map shows finished (or that timed out) now, rather than at the
   * next cycle: a request for a shard whose merge was just recorded finds it free.
   */
  private async endFinishedReshapes(): Promise<void> {
    if (this.state === null || !this.state.operators.some((o) => o.reshape !== undefined)) return;
    const meta = this.node.metaState();
    const live = new Set([...meta.shards.values()].filter((sh) => sh.retiredInto === undefined).map((sh) => sh.id));
    const nowMs = this.clock.wallMs();
    const stepTimeoutMs = currentSettings(meta).placement.stepTimeoutMs;
    for (const op of this.state.operators) {
      if (op.reshape === undefined) continue;
      const outcome = reshapeProgress(op, op.reshape, live, nowMs, stepTimeoutMs);
      if (outcome === "running") continue;
      for (const id of operatorShards(op)) this.settle(id, nowMs);
      this.opts.logger?.info(`placement driver: operator ${op.id} on shard ${op.shard} ended: ${outcome}`);
      await this.release(op, outcome, true);
    }
  }

  /** Adds a split or merge to the running operators (one per shard at a time), with the next operator id. */
  private hold(o: Pick<Operator, "shard" | "epoch" | "reason" | "reshape">): Operator {
    const state = this.state!;
    const nowMs = this.clock.wallMs();
    const op: Operator = { id: state.nextOperatorId, steps: [], stepIndex: 0, startedAtMs: nowMs, stepStartedAtMs: nowMs, ...o };
    this.state = { ...state, operators: [...state.operators, op], nextOperatorId: op.id + 1 };
    return op;
  }

  /** Puts a held operator's new form in its place (a split learns its new shard's id). */
  private replaceHeld(op: Operator): Operator {
    if (this.state !== null) this.state = { ...this.state, operators: this.state.operators.map((o) => (o.id === op.id ? op : o)) };
    return op;
  }

  /**
   * Ends a held split or merge: drops it from the running operators and records how it ended, when it
   * is done or when a cycle recorded it as running meanwhile (a refused one is not worth a record).
   */
  private async release(op: Operator, outcome: OperatorStatus, record = outcome === "done"): Promise<void> {
    if (this.state !== null) this.state = { ...this.state, operators: this.state.operators.filter((o) => o.id !== op.id) };
    this.dispatched.delete(op.id);
    if (!record && this.node.metaState().operators.get(op.id) === undefined) return;
    try {
      await this.gateway.proposeMeta({ kind: "record-operator", operator: op, status: outcome, atMs: this.clock.wallMs() });
    } catch (e) {
      this.opts.logger?.warn(`placement driver: recording the end of operator ${op.id} failed: ${(e as Error).message}`);
    }
  }

  /**
   * A shard that alone serves more than `splitRequestRate` requests per second, or holds more than
   * `splitSizeBytes`, is split at the middle of its range (hash partitioning spreads ids evenly, so load
   * and data halve); one split per cycle, the hottest first, none on a shard with an operator or cooling
   * down, and none past MAX_SHARDS.
   */
  private async splitHotShard(view: ClusterView, cfg: PlacementConfig, nowMs: number): Promise<void> {
    if (view.shards.length >= MAX_SHARDS || this.state === null) return;
    const quiet = this.quietShards(cfg, nowMs);
    const hot = (s: ShardView) => cfg.splitRequestRate > 0 && s.requestRate > cfg.splitRequestRate;
    const big = (s: ShardView) => cfg.splitSizeBytes > 0 && s.sizeBytes > cfg.splitSizeBytes;
    const due = view.shards
      .filter((s) => (hot(s) || big(s)) && quiet(s.id))
      .sort((a, b) => b.requestRate - a.requestRate || b.sizeBytes - a.sizeBytes || a.id - b.id)[0];
    if (due === undefined) return;
    const r = await this.split(due.id, undefined, hot(due) ? "hot-shard" : "large-shard");
    const why = hot(due) ? `${Math.round(due.requestRate)} requests/s` : `${due.sizeBytes} bytes`;
    if (!r.ok) this.opts.logger?.warn(`placement driver: splitting shard ${due.id} (${why}) refused: ${r.code}: ${r.message}`);
  }

  /**
   * Merges a shard into its lower neighbour (PD-6): the shard's leader freezes it, ships its records to
   * the neighbour's leader, which absorbs them through its own log and records the merge (see
   * ShardAgent.advanceMerges). Refused for the first shard of a collection and while an operator runs.
   * The merge is an operator on both shards from the freeze until the source is retired (the cycle ends
   * it then), so that nothing else is started on either meanwhile and requests for them can wait for it.
   */
  private async merge(id: number, reason: OperatorReason): Promise<PlacementAnswer> {
    const meta = this.node.metaState();
    const source = meta.shards.get(id);
    const gone = goneRefusal(meta, id);
    if (gone !== null || source === undefined) return gone!;
    const target = [...meta.shards.values()].find((s) => s.collection === source.collection && s.retiredInto === undefined && s.range.end === source.range.start);
    if (target === undefined) return { ok: false, code: "no_neighbour", message: `shard ${id} starts its collection's hash space: it has no lower neighbour to merge into` };
    this.state ??= stateFromMeta(meta);
    await this.endFinishedReshapes();
    const busy = this.state === null ? null : busyRefusal(this.state, [id, target.id]);
    if (busy !== null) return busy;
    const op = this.hold({ shard: id, epoch: source.epoch, reason, reshape: { kind: "merge", into: target.id } });
    let r: PlacementAnswer;
    try {
      r = await this.gateway.merge(id, target.id);
    } catch (e) {
      await this.release(op, "cancelled");
      throw e;
    }
    if (!r.ok) {
      await this.release(op, "cancelled");
      return r;
    }
    this.opts.logger?.info(`placement driver: merging shard ${id} into shard ${target.id} (${reason}, operator ${op.id})`);
    if (this.state !== null && this.state.operators.some((o) => o.id === op.id) && this.node.metaState().operators.get(op.id) === undefined) {
      await this.gateway.proposeMeta({ kind: "record-operator", operator: op, status: "running", atMs: this.clock.wallMs() });
    }
    this.settle(id, this.clock.wallMs());
    this.settle(target.id, this.clock.wallMs());
    // The operator asked for this shape now: an earlier split by hand no longer holds the driver back.
    if (reason === "manual" && this.state !== null) this.state = clearManualSplit(this.state, [id, target.id]);
    return { ok: true, operator: op, into: target.id, range: [target.range.start, source.range.end] };
  }

  /**
   * Neighbours that together hold few records and serve little are merged, one pair per cycle (the
   * choice is the pure scheduler's: placement/reshape.ts pickMerge, which also leaves shards split by
   * hand alone for `manualSplitCooldownMs`).
   */
  private async mergeSmallShards(cfg: PlacementConfig, nowMs: number): Promise<void> {
    if (cfg.mergeBelowRecords <= 0 || this.state === null) return;
    const meta = this.node.metaState();
    const freshMs = 3 * cfg.scheduleIntervalMs + 1000;
    const collections: MergeCollection[] = [...meta.collections.values()].map((c) => ({
      ...(c.initialShards !== undefined ? { initialShards: c.initialShards } : {}),
      shards: c.shards.map((id) => meta.shards.get(id)).filter((sh) => sh !== undefined).map((sh) => {
        const held = this.reports.get(sh.id);
        const fresh = held !== undefined && nowMs - held.atMs <= freshMs && held.report.records !== undefined ? held.report : null;
        return { id: sh.id, start: sh.range.start, end: sh.range.end, records: fresh?.records ?? null, requestRate: fresh?.requestRate ?? 0 };
      }),
    }));
    const pair = pickMerge(collections, this.state, cfg, nowMs);
    if (pair === null) return;
    const r = await this.merge(pair.from, "small-shards");
    if (!r.ok) this.opts.logger?.warn(`placement driver: merging small shard ${pair.from} into ${pair.into} refused: ${r.code}: ${r.message}`);
  }

  /** Whether a shard is free for an automatic split: no operator on it (a merge holds its target too), not cooling down. */
  private quietShards(cfg: PlacementConfig, nowMs: number): (shard: number) => boolean {
    const state = this.state!;
    const busy = new Set(state.operators.flatMap(operatorShards));
    return (id) => !busy.has(id) && nowMs - (state.shardSettledAtMs.get(id) ?? -Infinity) >= cfg.shardCooldownMs;
  }

  /** Balancing leaves a shard alone for a cooldown after it changed. */
  private settle(shard: number, atMs: number): void {
    if (this.state === null) return;
    const settled = new Map(this.state.shardSettledAtMs);
    settled.set(shard, atMs);
    this.state = { ...this.state, shardSettledAtMs: settled };
  }

  /** The cluster as the scheduler sees it now. */
  view(nowMs: number, cfg: PlacementConfig): ClusterView {
    const meta = this.node.metaState();
    const freshMs = 3 * cfg.scheduleIntervalMs + 1000;
    const nodes: NodeView[] = [];
    for (const n of meta.nodes.values()) {
      if (n.worker === "removed") continue;
      nodes.push({
        id: n.id, labels: n.labels, state: n.worker, health: this.node.peerHealth(n.id, cfg.nodeDeadAfterMs), ...(n.role === "analytics" ? { learnerOnly: true } : {}),
      });
    }
    const shards: ShardView[] = [];
    for (const s of meta.shards.values()) {
      if (s.retiredInto !== undefined) continue;
      const held = this.reports.get(s.id);
      const fresh = held !== undefined && nowMs - held.atMs <= freshMs ? held : undefined;
      shards.push({
        id: s.id, epoch: s.epoch, leader: fresh?.from ?? 0, sizeBytes: held?.report.sizeBytes ?? 0, requestRate: fresh?.report.requestRate ?? 0,
        snapshotting: fresh?.report.snapshotting === true,
        replicas: s.replicas.map((r) => ({ node: r.node, role: r.role, caughtUp: fresh?.report.caughtUp.includes(r.node) ?? false })),
      });
    }
    return { nodes, shards };
  }

  /** One cycle (a no-op unless this node leads the metadata group, or while the last one still runs). */
  async cycle(): Promise<void> {
    if (this.running) return;
    if (this.node.leaderOf(META_GROUP) !== this.node.id || !this.node.metaCaughtUp()) {
      this.state = null;
      return;
    }
    this.running = true;
    try {
      this.cycles++;
      const meta = this.node.metaState();
      const cfg = currentSettings(meta).placement;
      if (this.state === null) {
        this.state = stateFromMeta(meta);
        this.opts.logger?.info(`placement driver: active, resuming ${this.state.operators.length} operator(s)`);
      }
      const nowMs = this.clock.wallMs();
      const view = this.view(nowMs, cfg);
      const result = placementCycle(view, this.state, cfg, nowMs);
      this.state = result.state;
      await this.record(meta, result.state.operators, result.ended, nowMs);
      this.dispatch(result.dispatch);
      await this.splitHotShard(view, cfg, nowMs);
      await this.mergeSmallShards(cfg, nowMs);
      await this.retireDeadNodes(cfg);
      await this.downgradeStaleLearners(cfg, nowMs);
    } catch (e) {
      this.opts.logger?.warn(`placement driver: cycle failed (${(e as Error).message}); the next one tries again`);
    } finally {
      this.running = false;
    }
  }

  /** Operators whose record differs from the metadata's (new, advanced a step, ended) are recorded. */
  private async record(meta: Readonly<MetaState>, running: readonly Operator[], ended: { op: Operator; outcome: OperatorRecord["status"] }[], nowMs: number): Promise<void> {
    for (const op of running) {
      const rec = meta.operators.get(op.id);
      if (rec !== undefined && rec.status === "running" && rec.operator.stepIndex === op.stepIndex && rec.operator.epoch === op.epoch) continue;
      if (rec === undefined) this.opts.logger?.info(`placement driver: operator ${op.id} (${op.reason}) on shard ${op.shard}: ${op.steps.map(describeStep).join(", ")}`);
      await this.gateway.proposeMeta({ kind: "record-operator", operator: op, status: "running", atMs: nowMs });
    }
    for (const { op, outcome } of ended) {
      this.dispatched.delete(op.id);
      this.opts.logger?.info(`placement driver: operator ${op.id} on shard ${op.shard} ended: ${outcome}`);
      await this.gateway.proposeMeta({ kind: "record-operator", operator: op, status: outcome, atMs: nowMs });
    }
  }

  /** Sends each running operator's step to its shard's leader, again only after a few cycles without effect. */
  private dispatch(steps: ReturnType<typeof placementCycle>["dispatch"]): void {
    for (const { op, step } of steps) {
      const last = this.dispatched.get(op.id);
      if (last !== undefined && last[0] === op.stepIndex && this.cycles - last[1] < REDISPATCH_CYCLES) continue;
      this.dispatched.set(op.id, [op.stepIndex, this.cycles]);
      // Not awaited: a configuration change takes a round trip, and the outcome is judged from the view.
      this.gateway.step(op.shard, op.epoch, step).then(
        (r) => {
          if (!r.ok) this.opts.logger?.warn(`placement driver: operator ${op.id} step ${describeStep(step)} refused: ${r.code}: ${r.message}`);
        },
        (e: Error) => this.opts.logger?.warn(`placement driver: operator ${op.id} step ${describeStep(step)} failed: ${e.message}`),
      );
    }
  }

  /**
   * Dead nodes that hold no replica leave the cluster: their worker state becomes removed and they
   * leave the metadata group's configuration, all in one change (zombie removal), unless the voters
   * left alive would not be a quorum of the new configuration. A dead node with replicas waits until
   * repair has rebuilt them elsewhere.
   */
  private async retireDeadNodes(cfg: PlacementConfig): Promise<void> {
    const meta = this.node.metaState();
    const holders = new Set<NodeId>();
    for (const s of meta.shards.values()) for (const r of s.replicas) holders.add(r.node);
    const allDead = [...meta.nodes.values()].filter((n) => n.worker !== "removed" && n.id !== this.node.id &&
      this.node.peerHealth(n.id, cfg.nodeDeadAfterMs) === "dead");
    for (const n of allDead) {
      if (this.deadSeen.has(n.id)) continue;
      this.deadSeen.add(n.id);
      this.alert({ atMs: this.clock.wallMs(), kind: "node-dead", node: n.id, message: `node ${n.id} is dead (silent for ${cfg.nodeDeadAfterMs} ms): its replicas are rebuilt elsewhere` });
    }
    for (const id of this.deadSeen) if (!allDead.some((n) => n.id === id)) this.deadSeen.delete(id);
    const dead = allDead.filter((n) => !holders.has(n.id));
    if (dead.length === 0) return;
    const conf = this.node.metaStatus().config;
    const gone = new Set(dead.map((n) => n.id));
    const voters = conf.voters.filter((id) => !gone.has(id));
    const alive = voters.filter((id) => this.node.peerHealth(id, cfg.nodeDeadAfterMs) === "healthy").length;
    if (voters.length === 0 || alive < Math.floor(voters.length / 2) + 1) {
      this.opts.logger?.warn(`placement driver: not removing dead node(s) ${[...gone]}: the live voters left would not be a quorum`);
      return;
    }
    const atMs = this.clock.wallMs();
    for (const n of dead) {
      if (n.worker !== "draining") await this.gateway.proposeMeta({ kind: "set-worker-state", node: n.id, state: "draining", atMs });
      const r = await this.gateway.proposeMeta({ kind: "set-worker-state", node: n.id, state: "removed", atMs });
      if (r.ok) this.alert({ atMs, kind: "node-removed", node: n.id, message: `node ${n.id} was dead and held no replica: removed from the cluster` });
    }
    const members = new Set([...conf.voters, ...conf.learners]);
    const changes = dead.filter((n) => members.has(n.id)).map((n) => ({ type: ConfChangeType.RemoveNode, nodeId: n.id }));
    if (changes.length > 0) await this.gateway.proposeConfChange(META_GROUP, changes);
  }

  /**
   * A metadata learner that lags the commit index or is silent for `staleLearnerMs` is stale: it is
   * set back to syncing (not promotable until it reports ready again) and an alert is raised.
   */
  private async downgradeStaleLearners(cfg: PlacementConfig, nowMs: number): Promise<void> {
    const st = this.node.metaStatus();
    const meta = this.node.metaState();
    for (const n of meta.nodes.values()) {
      const learner = st.config.learners.includes(n.id) && (n.lifecycle === "ready" || n.lifecycle === "pairing" ||
        n.lifecycle === "standby-learner" || n.lifecycle === "keep-as-learner");
      const lagging = learner && ((st.progress?.get(n.id)?.match ?? 0) < st.commit || this.node.peerHealth(n.id, cfg.nodeDeadAfterMs) !== "healthy");
      if (!lagging) {
        this.laggingSinceMs.delete(n.id);
        continue;
      }
      const since = this.laggingSinceMs.get(n.id) ?? nowMs;
      this.laggingSinceMs.set(n.id, since);
      if (nowMs - since < cfg.staleLearnerMs) continue;
      this.laggingSinceMs.delete(n.id);
      const r = await this.gateway.proposeMeta({ kind: "set-lifecycle", node: n.id, lifecycle: "syncing", atMs: nowMs });
      if (r.ok) this.alert({ atMs: nowMs, kind: "stale-learner", node: n.id, message: `metadata learner ${n.id} lagged or was silent for ${cfg.staleLearnerMs} ms: downgraded to syncing` });
    }
  }

  private alert(a: Alert): void {
    this.alerts.push(a);
    if (this.alerts.length > ALERTS_MAX) this.alerts.shift();
    this.opts.logger?.warn(`placement driver: alert: ${a.message}`);
  }
}

function describeStep(s: Operator["steps"][number]): string {
  return s.kind === "transfer-leader" ? `transfer-leader to ${s.to}` : `${s.kind} ${s.node}`;
}
