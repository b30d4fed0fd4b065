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
 *
 * The decisions that need no I/O (which shard to split and where, which pair to merge, cooldowns, which
 * reports count, dead nodes, stale learners) are pure functions of placement/policy.ts, with time as an
 * input; this loop gathers their inputs and carries out what they decide.
 */
import { type MetaCommand, type MetaState, type OperatorRecord, type OperatorStatus, currentSettings } from "../meta/state.js";
import { type Refusal, busyRefusal, manualOperator } from "../placement/manual.js";
import { operatorKind, operatorShards } from "../placement/operators.js";
import { PlacementError, placeNewShards } from "../placement/born.js";
import type { CollectionSpec } from "../meta/collections.js";
import type { Position } from "../meta/ranges.js";
import {
  type Alert, type HeldReport, type PlacementAnswer, type PlacementRequest, appendAlert, describeStep, dispatchDue, dropOperator, endedReshapes,
  goneRefusal, mergeCollections, holdOperator, mergeTarget, pickSplit, receiveReport, replaceOperator, settleShards, shardViews, splitPoint,
  stateFromRecords, unrecorded, wellFormedReport,
} from "../placement/policy.js";
import { clearManualSplit, markManualSplit, pickMerge } from "../placement/reshape.js";
import { type PlacementState, placementCycle } from "../placement/scheduler.js";
import { type ClusterHealth, clusterHealth } from "../placement/health.js";
import type { ClusterView, NodeId, NodeView, Operator, OperatorReason, PlacementConfig } from "../placement/types.js";
import type { Gateway } from "./gateway.js";
import { PacedLoop } from "./paced-loop.js";
import { META_GROUP, type MultiRaftNode, NotLeaderError } from "./multi-raft.js";
import { MIDDLE_ID_SERVICE, type ShardReport } from "./shard-agent.js";
import { MemberCare } from "./membership.js";
import { type Logger } from "../util/logger.js";
import { type Clock, pause } from "../util/clock.js";

/**
 * How long creating a collection waits for its shards' leaders to report (each reports every
 * scheduleIntervalMs): under the 5 s a gateway waits for a forwarded request, so that the answer that
 * the collection exists is never lost to a timeout.
 */
const COLLECTION_LEADERS_WAIT_MS = 3000;
/**
 * How long a split refused by a shard that applied an earlier split waits for the map to record that
 * one (its child filled and led: about a second under load) before it answers `split_pending`.
 */
const SPLIT_RECORD_WAIT_MS = 4000;
const COLLECTION_LEADERS_POLL_MS = 50;

export type { Alert, PlacementAnswer, PlacementRequest } from "../placement/policy.js";

/** What the placement driver is asked: placement's requests, and a new collection (its shards born on voters it chooses). */
export type DriverRequest = PlacementRequest | { kind: "create-collection"; spec: CollectionSpec };
export { PLACEMENT_WAIT_MS_MAX } from "../placement/policy.js";

export interface PlacementDriverOptions {
  logger?: Logger;
  /**
   * Time and timers; by default the gateway's (the node's) clock. The scheduler's "now" is the wall
   * clock (wallMs): it is compared with the atMs the metadata records, which every node reads.
   */
  clock?: Clock;
}

/** Alerts kept (newest last). */
const ALERTS_MAX = 100;

/**
 * The scheduler's state rebuilt from the operators the metadata records (PD failover; see
 * placement/policy.ts stateFromRecords).
 */
export function stateFromMeta(meta: Readonly<MetaState>): PlacementState {
  return stateFromRecords(meta.operators.values());
}

export class PlacementDriver {
  private readonly clock: Clock;
  private readonly loop: PacedLoop;
  /** Null while this node does not lead the metadata group. */
  private state: PlacementState | null = null;
  /** The latest report per shard (of the highest term seen). Bounded by the shard count. */
  private readonly reports = new Map<number, HeldReport<ShardReport>>();
  /** When each operator's current step was last sent (operator id -> [step index, cycle]). */
  private readonly dispatched = new Map<number, [number, number]>();
  /** Promotions by hand, dead nodes, stale learners (membership.ts). */
  private readonly members: MemberCare;
  private cycles = 0;
  private running = false;
  readonly alerts: Alert[] = [];

  constructor(private readonly node: MultiRaftNode, private readonly gateway: Gateway, private readonly opts: PlacementDriverOptions = {}) {
    this.clock = opts.clock ?? gateway.clock;
    this.loop = new PacedLoop(() => currentSettings(this.node.metaState()).placement.scheduleIntervalMs, () => this.cycle(), this.clock);
    this.members = new MemberCare(node, gateway, (a) => this.alert(a), opts.logger);
    gateway.onReport = (from, report) => this.receive(from, report);
    gateway.onPlacement = (req) => this.submit(req);
  }

  /**
   * A request of the cluster's operator, on the metadata leader (the gateway routes it here): a manual
   * operator (move, transfer-leader), a cancellation, or the alerts. The operator runs from the next
   * cycle on; it is recorded in the metadata now, so that the answer means it will run.
   */
  async submit(req: DriverRequest): Promise<PlacementAnswer> {
    if (this.node.leaderOf(META_GROUP) !== this.node.id) throw new NotLeaderError(META_GROUP, this.node.leaderOf(META_GROUP));
    if (req.kind === "alerts") return { ok: true, alerts: this.alerts.slice() };
    if (req.kind === "promote") return this.members.promote(req.nodes);
    if (req.kind === "split") return this.split(req.shard, req.at, "manual");
    if (req.kind === "merge") return this.merge(req.shard, "manual");
    if (req.kind === "create-collection") return this.createCollection(req.spec);
    const meta = this.node.metaState();
    const gone = req.kind === "cancel" ? null : goneRefusal(meta.shards, req.shard);
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
    this.opts.logger?.info({ operator: r.operator.id, shard: r.operator.shard }, `${r.ended ? "cancelled" : "started"} an operator at the operator's request`);
    return { ok: true, operator: r.operator };
  }

  /**
   * Creates a collection with its shards born on voters chosen by the balance rules (placeNewShards),
   * then waits, up to COLLECTION_LEADERS_WAIT_MS, until a leader of each shard reported: the answer
   * names the shards still without one (the collection exists either way).
   */
  private async createCollection(spec: CollectionSpec): Promise<PlacementAnswer> {
    const meta = this.node.metaState();
    if (meta.collections.has(spec.name)) return { ok: false, code: "collection_exists", message: `collection ${spec.name} exists` };
    const cfg = currentSettings(meta).placement;
    let placements: NodeId[][];
    try {
      placements = placeNewShards(this.view(this.clock.wallMs(), cfg), spec.shards, spec.replicationFactor);
    } catch (e) {
      if (e instanceof PlacementError) return { ok: false, code: e.code, message: e.message };
      throw e;
    }
    const { partitioning, vectors, payloadIndexes, ttlMs, splitPoints, writeMode } = spec;
    // Wall clock, as reports are stamped; the wait counts from here, the proposal included.
    const createdAtMs = this.clock.wallMs();
    const r = await this.gateway.proposeMeta({
      kind: "create-collection", name: spec.name, replicationFactor: spec.replicationFactor, placements,
      schema: { partitioning, vectors, payloadIndexes, ttlMs, ...(writeMode !== "sync" ? { writeMode } : {}) }, targetReplicas: spec.replicationFactor,
      ...(partitioning === "range" ? { splitPoints } : {}), atMs: this.clock.wallMs(),
    });
    if (!r.ok) return r;
    const shards = [...(this.node.metaState().collections.get(spec.name)?.shards ?? [])];
    this.opts.logger?.info({ collection: spec.name, shards }, "created a collection, its shards born on their voters");
    const leaderless = () => shards.filter((id) => (this.reports.get(id)?.atMs ?? -Infinity) < createdAtMs);
    const waitsMax = Math.ceil(COLLECTION_LEADERS_WAIT_MS / COLLECTION_LEADERS_POLL_MS);
    for (let waits = 0; waits < waitsMax && leaderless().length > 0 && this.clock.wallMs() - createdAtMs < COLLECTION_LEADERS_WAIT_MS; waits++) {
      await pause(this.clock, COLLECTION_LEADERS_POLL_MS);
    }
    return { ok: true, shards, leaderless: leaderless() };
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

  /** The cluster's health as this driver sees it (placement/health.ts), or null unless it is active. */
  health(): ClusterHealth | null {
    if (!this.active) return null;
    const cfg = currentSettings(this.node.metaState()).placement;
    return clusterHealth(this.view(this.clock.wallMs(), cfg), cfg);
  }

  /** Operators this node's driver saw end since it started, by kind, reason and outcome (for metrics). */
  readonly operatorsEnded = new Map<string, { kind: ReturnType<typeof operatorKind>; reason: OperatorReason; outcome: OperatorStatus; count: number }>();

  private countEnded(op: Operator, outcome: OperatorStatus): void {
    const kind = operatorKind(op);
    const key = `${kind}/${op.reason}/${outcome}`;
    const had = this.operatorsEnded.get(key);
    if (had !== undefined) had.count++;
    else this.operatorsEnded.set(key, { kind, reason: op.reason, outcome, count: 1 });
  }

  private receive(from: NodeId, reports: ShardReport[]): void {
    const nowMs = this.clock.wallMs();
    for (const report of reports) {
      if (!wellFormedReport(report) || !this.node.metaState().shards.has(report.shard)) continue;
      const held = receiveReport(this.reports.get(report.shard), from, report, nowMs);
      if (held !== null) this.reports.set(report.shard, held);
    }
  }

  /**
   * Splits a shard in two at position `at` (default: the middle of its hash range, or for a range
   * collection's shard the middle of its records' ids), PD-6: a new shard id is
   * reserved in the metadata, the shard's leader proposes the split, and its replicas apply it; the
   * leader then records it in the shard map. Refused while an operator runs on the shard (its epoch
   * would fence it anyway). The split is an operator while it runs, so that a request for the shard
   * meanwhile is refused naming it (or waits for it), and is recorded once done: a split by hand keeps
   * both parts from being merged automatically for `manualSplitCooldownMs`, also after a failover.
   */
  private async split(id: number, requested: Position | undefined, reason: OperatorReason): Promise<PlacementAnswer> {
    const first = await this.splitAsMapped(id, requested, reason);
    if (first.mapBehind === undefined) return first;
    // The shard refused a point inside the range the map gives it: it applied an earlier split that the
    // map does not show yet (its leader records one once the child is filled and led). Once the map
    // catches up, the request is judged again against the range the shard has now.
    const caughtUp = await this.awaitEpochPast(id, first.mapBehind.epoch, SPLIT_RECORD_WAIT_MS);
    const again = caughtUp ? await this.splitAsMapped(id, requested, reason) : first;
    if (again.mapBehind === undefined) return again;
    return { ok: false, code: "split_pending", message: `shard ${id} applied a split that is not in the shard map yet (waited up to ${SPLIT_RECORD_WAIT_MS} ms): nothing was done; ask again` };
  }

  /** Whether this node's shard map moves shard `id` past `epoch` within `timeoutMs`. */
  private async awaitEpochPast(id: number, epoch: number, timeoutMs: number): Promise<boolean> {
    const deadlineMs = this.clock.nowMs() + timeoutMs;
    while (this.node.metaState().shards.get(id)?.epoch === epoch) {
      const leftMs = deadlineMs - this.clock.nowMs();
      if (leftMs <= 0) return false;
      await this.node.awaitMetaChange(leftMs);
    }
    return true;
  }

  /**
   * One try of `split` against the shard map as this node holds it. A refusal of the point by the shard
   * itself, though the map puts it inside the shard's range, carries the map's epoch (`mapBehind`).
   */
  private async splitAsMapped(id: number, requested: Position | undefined, reason: OperatorReason): Promise<PlacementAnswer & { mapBehind?: { epoch: number } }> {
    const at = requested ?? await this.middleIdOf(id);
    if (typeof at === "object") return at;
    const meta = this.node.metaState();
    const shard = meta.shards.get(id);
    const gone = goneRefusal(meta.shards, id);
    if (gone !== null || shard === undefined) return gone!;
    this.state ??= stateFromMeta(meta);
    await this.endFinishedReshapes();
    const busy = this.state === null ? null : busyRefusal(this.state, [id]);
    if (busy !== null) return busy;
    const { start, end } = shard.range;
    const where = splitPoint(shard, at);
    if (!where.ok) return where;
    const point = where.at;
    let op = this.hold({ shard: id, epoch: shard.epoch, reason, reshape: { kind: "split", at: point, end } });
    let outcome: OperatorStatus = "cancelled";
    try {
      const reserved = await this.gateway.proposeMeta({ kind: "reserve-shard-id", atMs: this.clock.wallMs() });
      if (!reserved.ok) return reserved;
      const child = reserved.value!;
      op = this.replaceHeld({ ...op, reshape: { kind: "split", at: point, end, child } });
      const r = await this.gateway.split(id, point, child);
      if (!r.ok && r.code === "bad_split") return { ok: false, code: r.code, message: r.message, mapBehind: { epoch: shard.epoch } };
      if (!r.ok) return { ok: false, code: r.code, message: `the split of shard ${id} was refused (${r.code})` };
      outcome = "done";
      this.opts.logger?.info({ shard: id, at: point, reason, child }, "split a shard: the upper part is the child");
      // Its load so far was the whole range's: only a report made after the split may call it hot again.
      this.reports.delete(id);
      const doneMs = this.clock.wallMs();
      this.settle([id, child], doneMs);
      if (reason === "manual" && this.state !== null) this.state = markManualSplit(this.state, id, child, doneMs);
      return { ok: true, operator: op, child, range: [start, point], childRange: [point, end] };
    } finally {
      await this.release(op, outcome);
    }
  }

  /**
   * Where a shard of a range collection is split by default: the id in the middle of its records, as its
   * leader holds them (shard-agent.ts MIDDLE_ID_SERVICE); a refusal when it holds fewer than two.
   * Undefined for a hash collection's shard (splitPoint takes the middle of its hash range).
   */
  private async middleIdOf(id: number): Promise<string | undefined | Refusal> {
    const shard = this.node.metaState().shards.get(id);
    if (shard === undefined || typeof shard.range.start !== "string") return undefined;
    const middle = await this.gateway.ask(MIDDLE_ID_SERVICE, id, null, false) as string | null;
    if (middle === null) return { ok: false, code: "bad_split", message: `shard ${id} holds fewer than two records: there is no middle id to split it at (name one: \`at\`)` };
    return middle;
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
    for (const { op, outcome } of endedReshapes(this.state, live, nowMs, currentSettings(meta).placement.stepTimeoutMs)) {
      this.settle(operatorShards(op), nowMs);
      this.opts.logger?.info({ operator: op.id, shard: op.shard, outcome }, "operator ended");
      await this.release(op, outcome, true);
    }
  }

  /** Adds a split or merge to the running operators (one per shard at a time), with the next operator id. */
  private hold(o: Pick<Operator, "shard" | "epoch" | "reason" | "reshape">): Operator {
    const held = holdOperator(this.state!, o, this.clock.wallMs());
    this.state = held.state;
    return held.op;
  }

  /** Puts a held operator's new form in its place (a split learns its new shard's id). */
  private replaceHeld(op: Operator): Operator {
    if (this.state !== null) this.state = replaceOperator(this.state, op);
    return op;
  }

  /**
   * Ends a held split or merge: drops it from the running operators and records how it ended, when it
   * is done or when a cycle recorded it as running meanwhile (a refused one is not worth a record).
   */
  private async release(op: Operator, outcome: OperatorStatus, record = outcome === "done"): Promise<void> {
    this.countEnded(op, outcome);
    if (this.state !== null) this.state = dropOperator(this.state, op.id);
    this.dispatched.delete(op.id);
    if (!record && this.node.metaState().operators.get(op.id) === undefined) return;
    try {
      await this.gateway.proposeMeta({ kind: "record-operator", operator: op, status: outcome, atMs: this.clock.wallMs() });
    } catch (e) {
      this.opts.logger?.warn({ operator: op.id, err: (e as Error).message }, "recording the end of an operator failed");
    }
  }

  /** Splits the shard placement/policy.ts pickSplit finds hot or large, if any (one per cycle). */
  private async splitHotShard(view: ClusterView, cfg: PlacementConfig, nowMs: number): Promise<void> {
    if (this.state === null) return;
    const due = pickSplit(view, this.state, cfg, nowMs);
    if (due === null) return;
    const r = await this.split(due.shard, undefined, due.reason);
    if (!r.ok) this.opts.logger?.warn({ shard: due.shard, why: due.why, code: r.code }, `split refused: ${r.message}`);
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
    const gone = goneRefusal(meta.shards, id);
    if (gone !== null || source === undefined) return gone!;
    const neighbour = mergeTarget(meta.shards.values(), source);
    if ("ok" in neighbour) return neighbour;
    const target = meta.shards.get(neighbour.id)!;
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
    this.opts.logger?.info({ shard: id, into: target.id, reason, operator: op.id }, "merging a shard into its neighbour");
    if (this.state !== null && this.state.operators.some((o) => o.id === op.id) && this.node.metaState().operators.get(op.id) === undefined) {
      await this.gateway.proposeMeta({ kind: "record-operator", operator: op, status: "running", atMs: this.clock.wallMs() });
    }
    this.settle([id, target.id], this.clock.wallMs());
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
    const collections = mergeCollections(meta.collections.values(), meta.shards, this.reports, cfg, nowMs);
    const pair = pickMerge(collections, this.state, cfg, nowMs);
    if (pair === null) return;
    const r = await this.merge(pair.from, "small-shards");
    if (!r.ok) this.opts.logger?.warn({ shard: pair.from, into: pair.into, code: r.code }, `merging a small shard refused: ${r.message}`);
  }

  /** Balancing leaves shards alone for a cooldown after they changed. */
  private settle(shards: readonly number[], atMs: number): void {
    if (this.state !== null) this.state = settleShards(this.state, shards, atMs);
  }

  /** The cluster as the scheduler sees it now. */
  view(nowMs: number, cfg: PlacementConfig): ClusterView {
    const meta = this.node.metaState();
    const nodes: NodeView[] = [];
    for (const n of meta.nodes.values()) {
      if (n.worker === "removed") continue;
      nodes.push({
        id: n.id, labels: n.labels, state: n.worker, health: this.node.peerHealth(n.id, cfg.nodeDeadAfterMs), ...(n.role === "analytics" ? { learnerOnly: true } : {}),
      });
    }
    return { nodes, shards: shardViews(meta.shards.values(), this.reports, cfg, nowMs, (name) => {
      const c = meta.collections.get(name);
      return c === undefined ? undefined : { ...(c.targetReplicas !== undefined ? { replicationFactor: c.targetReplicas } : {}), vectors: (c.schema?.vectors ?? null) !== null };
    }) };
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
        this.opts.logger?.info({ operators: this.state.operators.length }, "placement driver active, resuming its operators");
      }
      const nowMs = this.clock.wallMs();
      const view = this.view(nowMs, cfg);
      const result = placementCycle(view, this.state, cfg, nowMs);
      this.state = result.state;
      await this.record(meta, result.state.operators, result.ended, nowMs);
      this.dispatch(result.dispatch);
      await this.splitHotShard(view, cfg, nowMs);
      await this.mergeSmallShards(cfg, nowMs);
      await this.members.retireDeadNodes(cfg, nowMs);
      await this.members.downgradeStaleLearners(cfg, nowMs);
    } catch (e) {
      this.opts.logger?.warn({ err: (e as Error).message }, "placement cycle failed; the next one tries again");
    } finally {
      this.running = false;
    }
  }

  /** Operators whose record differs from the metadata's (new, advanced a step, ended) are recorded. */
  private async record(meta: Readonly<MetaState>, running: readonly Operator[], ended: { op: Operator; outcome: OperatorRecord["status"] }[], nowMs: number): Promise<void> {
    const records: MetaCommand[] = [];
    for (const { op, isNew } of unrecorded(meta.operators, running)) {
      if (isNew) this.opts.logger?.info({ operator: op.id, reason: op.reason, shard: op.shard, steps: op.steps.map(describeStep) }, "operator started");
      records.push({ kind: "record-operator", operator: op, status: "running", atMs: nowMs });
    }
    for (const { op, outcome } of ended) {
      this.countEnded(op, outcome);
      this.dispatched.delete(op.id);
      this.opts.logger?.info({ operator: op.id, shard: op.shard, outcome }, "operator ended");
      records.push({ kind: "record-operator", operator: op, status: outcome, atMs: nowMs });
    }
    // One record per operator: independent, so they go together (a cycle may start or advance hundreds).
    const failed = (await this.gateway.proposeMetaMany(records)).find((r) => r instanceof Error);
    if (failed !== undefined) throw failed;
  }

  /** Sends each running operator's step to its shard's leader, again only after a few cycles without effect. */
  private dispatch(steps: ReturnType<typeof placementCycle>["dispatch"]): void {
    for (const { op, step } of steps) {
      if (!dispatchDue(this.dispatched.get(op.id), op.stepIndex, this.cycles)) continue;
      this.dispatched.set(op.id, [op.stepIndex, this.cycles]);
      // Not awaited: a configuration change takes a round trip, and the outcome is judged from the view.
      this.gateway.step(op.shard, op.epoch, step).then(
        (r) => {
          if (!r.ok) this.opts.logger?.warn({ operator: op.id, shard: op.shard, code: r.code }, `placement driver: operator ${op.id} step ${describeStep(step)} refused: ${r.message}`);
        },
        (e: Error) => this.opts.logger?.warn({ operator: op.id, shard: op.shard }, `placement driver: operator ${op.id} step ${describeStep(step)} failed: ${e.message}`),
      );
    }
  }

  private alert(a: Alert): void {
    appendAlert(this.alerts, a, ALERTS_MAX);
    this.opts.logger?.warn(`placement driver: alert: ${a.message}`);
  }
}

