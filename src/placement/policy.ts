/**
 * The placement driver's own decisions, apart from the scheduler's (scheduler.ts): which shard to split
 * and where, which shard a merge goes into, which running splits and merges the driver holds, cooldowns,
 * hot and large shards, how the leaders' reports become the cluster view, which learners are stale and
 * which dead nodes may leave. Pure: time comes in as `nowMs` (the wall clock, compared with the atMs the
 * metadata records); the node's loop (node/placement-driver.ts) gathers the inputs and carries out what
 * these functions decide.
 */
import { KEY_SPACE_END, type Position } from "./positions.js";
import type { ManualRequest, Refusal } from "./manual.js";
import { operatorShards } from "./operators.js";
import { type MergeCollection, clearManualSplit, markManualSplit, reshapeProgress } from "./reshape.js";
import type { PlacementState } from "./scheduler.js";
import type { ClusterView, NodeId, Operator, OperatorReason, PlacementConfig, ReplicaRole, ShardView, WorkerState } from "./types.js";

/** Shards the placement driver stops splitting at (a bound on the metadata and on every node's groups). */
export const MAX_SHARDS = 10_000;
/** A step sent to a shard's leader is sent again only after this many cycles without effect. */
export const REDISPATCH_CYCLES = 3;

/** Something the placement driver's operator should know of (newest last, bounded by the driver). */
export interface Alert {
  atMs: number;
  kind: "stale-learner" | "node-dead" | "node-removed";
  node: NodeId;
  message: string;
}

/** A split's `at`: a hash for a shard of a hash collection, an id for a range collection's (default: the middle). */
export type PlacementRequest = ManualRequest | { kind: "alerts" } | { kind: "promote"; nodes: NodeId[] } | { kind: "split"; shard: number; at?: Position }
  | { kind: "merge"; shard: number };

export type PlacementAnswer =
  | {
    ok: true; operator?: Operator; alerts?: Alert[];
    /** A split: the new shard and the ranges [start, end) of both parts. */
    child?: number; range?: [Position, Position]; childRange?: [Position, Position];
    /** A merge: the surviving shard (the source is retired into it), and `range` the survivor's range once merged. */
    into?: number;
    /** A new collection: its shards, and those of them no leader reported from yet when the answer was given. */
    shards?: number[];
    leaderless?: number[];
  }
  /** A `shard_busy` refusal names the operator in the way (`operator`). */
  | Refusal;

/** The longest a request may wait for the operators in its way (under the 300 s a fetch waits for an answer's headers). */
export const PLACEMENT_WAIT_MS_MAX = 240_000;

/** A shard of the shard map, as the policy reads it (meta/state.ts ShardRecord). */
export interface MapShard {
  id: number;
  collection: string;
  epoch: number;
  /** Its range [start, end) of its collection's positions: hashes (numbers) or ids (strings). */
  range: { start: Position; end: Position };
  retiredInto?: number;
  replicas: readonly { node: NodeId; role: ReplicaRole }[];
}

/** What a shard's leader reports (node/shard-agent.ts ShardReport). */
export interface LeaderReport {
  shard: number;
  term: number;
  caughtUp: NodeId[];
  requestRate: number;
  records?: number;
  sizeBytes?: number;
  snapshotting: boolean;
}

/** The latest report on a shard, who made it and when it arrived. */
export interface HeldReport<R extends LeaderReport = LeaderReport> {
  from: NodeId;
  report: R;
  atMs: number;
}

/** An operator record of the metadata (meta/state.ts OperatorRecord). */
export interface RecordedOperator {
  operator: Operator;
  status: "running" | "done" | "timed-out" | "fenced" | "cancelled";
  updatedAtMs: number;
}

/**
 * The scheduler's state rebuilt from the operators the metadata records (PD failover): those running
 * resume, ended ones start their shards' cooldowns, and a split by hand recorded as done holds its parts
 * back from automatic merges (a merge by hand after it hands them back).
 */
export function stateFromRecords(recorded: Iterable<RecordedOperator>): PlacementState {
  const records = [...recorded].sort((a, b) => a.operator.id - b.operator.id);
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
export function goneRefusal(shards: ReadonlyMap<number, MapShard>, id: number): Refusal | null {
  const shard = shards.get(id);
  if (shard === undefined) return { ok: false, code: "shard_not_found", message: `no shard ${id}` };
  if (shard.retiredInto === undefined) return null;
  // Merged again since, perhaps: follow the chain (bounded by the shards there are) to the live one.
  let into = shard.retiredInto;
  for (let i = 0; i < shards.size && shards.get(into)?.retiredInto !== undefined; i++) into = shards.get(into)!.retiredInto!;
  return { ok: false, code: "shard_retired", message: `shard ${id} was merged into shard ${shard.retiredInto}${into !== shard.retiredInto ? `, now part of shard ${into}` : ""}: its range is shard ${into}'s` };
}

/**
 * Where a shard is split: at `at`, by default the middle of its range; a refusal when that is not a
 * position of the range's kind strictly inside it. A range collection's shard has no arithmetic middle:
 * its caller finds the middle of its records (the shard's leader knows them) and passes it as `at`.
 */
export function splitPoint(shard: MapShard, at: Position | undefined): { ok: true; at: Position } | Refusal {
  const { start, end } = shard.range;
  const keys = typeof start === "string";
  if (at === undefined && keys) return { ok: false, code: "bad_request", message: `shard ${shard.id} holds a range of ids: name the id to split it at` };
  const point = at ?? Math.floor(((start as number) + (end as number)) / 2);
  const show = (p: Position) => (p === KEY_SPACE_END ? "end" : JSON.stringify(p));
  if (typeof point !== typeof start) {
    return { ok: false, code: "bad_request", message: `shard ${shard.id} holds a range of ${keys ? "ids: split it at an id (a string)" : "hashes: split it at a hash (an integer)"}` };
  }
  if (!(point > start && point < end)) return { ok: false, code: "bad_request", message: `split point ${show(point)} is not inside shard ${shard.id}'s range [${show(start)}, ${show(end)})` };
  return { ok: true, at: point };
}

/** The live shard a merge of `source` goes into: its lower neighbour in the same collection, or a refusal. */
export function mergeTarget(shards: Iterable<MapShard>, source: MapShard): MapShard | Refusal {
  for (const s of shards) {
    if (s.collection === source.collection && s.retiredInto === undefined && s.range.end === source.range.start) return s;
  }
  return { ok: false, code: "no_neighbour", message: `shard ${source.id} starts its collection's positions: it has no lower neighbour to merge into` };
}

/** Adds a split or merge the driver carries out itself to the running operators, with the next operator id. */
export function holdOperator(state: PlacementState, o: Pick<Operator, "shard" | "epoch" | "reason" | "reshape">, nowMs: number): { state: PlacementState; op: Operator } {
  const op: Operator = { id: state.nextOperatorId, steps: [], stepIndex: 0, startedAtMs: nowMs, stepStartedAtMs: nowMs, ...o };
  return { state: { ...state, operators: [...state.operators, op], nextOperatorId: op.id + 1 }, op };
}

/** Puts a held operator's new form in its place (a split learns its new shard's id). */
export function replaceOperator(state: PlacementState, op: Operator): PlacementState {
  return { ...state, operators: state.operators.map((o) => (o.id === op.id ? op : o)) };
}

/** Drops an operator from the running ones. */
export function dropOperator(state: PlacementState, id: number): PlacementState {
  return { ...state, operators: state.operators.filter((o) => o.id !== id) };
}

/** Balancing and automatic splits leave a shard alone for a cooldown after it changed at `atMs`. */
export function settleShards(state: PlacementState, shards: readonly number[], atMs: number): PlacementState {
  const settled = new Map(state.shardSettledAtMs);
  for (const id of shards) settled.set(id, atMs);
  return { ...state, shardSettledAtMs: settled };
}

/** Whether a shard is free for an automatic split: no operator on it (a merge holds its target too), not cooling down. */
export function quietShards(state: PlacementState, cfg: PlacementConfig, nowMs: number): (shard: number) => boolean {
  const busy = new Set(state.operators.flatMap(operatorShards));
  return (id) => !busy.has(id) && nowMs - (state.shardSettledAtMs.get(id) ?? -Infinity) >= cfg.shardCooldownMs;
}

/** A shard the driver should split, and why. */
export interface SplitChoice {
  shard: number;
  reason: Extract<OperatorReason, "hot-shard" | "large-shard">;
  /** For the log: the rate or size that made it due. */
  why: string;
}

/**
 * The shard to split this cycle, or null: one that alone serves more than `splitRequestRate` requests
 * per second or holds more than `splitSizeBytes` (hash partitioning spreads ids evenly, so load and data
 * halve at the middle of the hash range; a range collection's shard is cut at its middle id instead); the hottest first, none with an operator or cooling down, none past `maxShards`.
 */
export function pickSplit(view: ClusterView, state: PlacementState, cfg: PlacementConfig, nowMs: number, maxShards = MAX_SHARDS): SplitChoice | null {
  if (view.shards.length >= maxShards) return null;
  const quiet = quietShards(state, cfg, nowMs);
  const hot = (s: ShardView) => cfg.splitRequestRate > 0 && s.requestRate > cfg.splitRequestRate;
  const big = (s: ShardView) => {
    const limitBytes = s.vectors === true ? cfg.vectorSplitSizeBytes : cfg.splitSizeBytes;
    return limitBytes > 0 && s.sizeBytes > limitBytes;
  };
  const due = view.shards
    .filter((s) => (hot(s) || big(s)) && quiet(s.id))
    .sort((a, b) => b.requestRate - a.requestRate || b.sizeBytes - a.sizeBytes || a.id - b.id)[0];
  if (due === undefined) return null;
  return hot(due)
    ? { shard: due.id, reason: "hot-shard", why: `${Math.round(due.requestRate)} requests/s` }
    : { shard: due.id, reason: "large-shard", why: `${due.sizeBytes} bytes` };
}

/** How long a leader's report counts as current: three cycles and a second (a report a cycle, some missed). */
export function reportFreshMs(cfg: PlacementConfig): number {
  return 3 * cfg.scheduleIntervalMs + 1000;
}

/**
 * A report received, against the one held for its shard: null when it is older (a lower term: a deposed
 * leader's), else what to hold, its request rate smoothed (half-life of one report) so that one noisy
 * interval does not move a leadership.
 */
export function receiveReport<R extends LeaderReport>(held: HeldReport<R> | undefined, from: NodeId, report: R, nowMs: number): HeldReport<R> | null {
  if (held !== undefined && held.report.term > report.term) return null;
  const rate = held === undefined ? report.requestRate : (held.report.requestRate + report.requestRate) / 2;
  return { from, report: { ...report, requestRate: rate }, atMs: nowMs };
}

/** Whether a received report has the shape of one (it came over the network). */
export function wellFormedReport(r: unknown): r is LeaderReport {
  const x = r as Partial<LeaderReport> | null;
  return typeof x === "object" && x !== null && typeof x.shard === "number" && typeof x.term === "number" && Array.isArray(x.caughtUp);
}

/**
 * The live shards as the scheduler sees them: leader, rate, caught-up replicas and snapshots from a
 * fresh report only (an old one may name a deposed leader), the size from the last report whenever made;
 * and from its collection (`collectionOf`): the replication factor it asks for (undefined: the
 * settings') and whether it declares vectors.
 */
export function shardViews(shards: Iterable<MapShard>, reports: ReadonlyMap<number, HeldReport>, cfg: PlacementConfig, nowMs: number,
  collectionOf: (collection: string) => { replicationFactor?: number; vectors: boolean } | undefined = () => undefined): ShardView[] {
  const freshMs = reportFreshMs(cfg);
  const out: ShardView[] = [];
  for (const s of shards) {
    if (s.retiredInto !== undefined) continue;
    const held = reports.get(s.id);
    const fresh = held !== undefined && nowMs - held.atMs <= freshMs ? held : undefined;
    out.push({
      id: s.id, epoch: s.epoch, leader: fresh?.from ?? 0, sizeBytes: held?.report.sizeBytes ?? 0, requestRate: fresh?.report.requestRate ?? 0,
      snapshotting: fresh?.report.snapshotting === true,
      replicas: s.replicas.map((r) => ({ node: r.node, role: r.role, caughtUp: fresh?.report.caughtUp.includes(r.node) ?? false })),
    });
    const c = collectionOf(s.collection);
    if (c?.replicationFactor !== undefined) out[out.length - 1]!.replicationFactor = c.replicationFactor;
    if (c?.vectors === true) out[out.length - 1]!.vectors = true;
  }
  return out;
}

/** A shard's record count from a fresh report, or null (pickMerge merges only shards known to be small). */
export function freshRecords(held: HeldReport | undefined, cfg: PlacementConfig, nowMs: number): { records: number | null; requestRate: number } {
  const fresh = held !== undefined && nowMs - held.atMs <= reportFreshMs(cfg) && held.report.records !== undefined ? held.report : null;
  return { records: fresh?.records ?? null, requestRate: fresh?.requestRate ?? 0 };
}

/** Whether an operator's current step is sent (again): first time, a new step, or REDISPATCH_CYCLES without effect. */
export function dispatchDue(last: readonly [stepIndex: number, cycle: number] | undefined, stepIndex: number, cycle: number): boolean {
  return last === undefined || last[0] !== stepIndex || cycle - last[1] >= REDISPATCH_CYCLES;
}

/**
 * Which metadata learners are stale now: each lagging one is tracked from when it started lagging, and
 * is stale once it lagged `staleLearnerMs`; one that caught up is forgotten. Returns the new tracking
 * (bounded by the learners) and the stale ones (no longer tracked: they are downgraded).
 */
export function staleLearners(laggingSinceMs: ReadonlyMap<NodeId, number>, lagging: ReadonlySet<NodeId>, nowMs: number, staleLearnerMs: number): { laggingSinceMs: Map<NodeId, number>; stale: NodeId[] } {
  const next = new Map<NodeId, number>();
  const stale: NodeId[] = [];
  for (const id of lagging) {
    const since = laggingSinceMs.get(id) ?? nowMs;
    if (nowMs - since >= staleLearnerMs) stale.push(id);
    else next.set(id, since);
  }
  return { laggingSinceMs: next, stale };
}

/**
 * Whether dead nodes may leave the metadata group's configuration: only if the voters left, counting
 * the healthy ones, still make a quorum of the new configuration.
 */
export function quorumAfterRemoval(voters: readonly NodeId[], gone: ReadonlySet<NodeId>, healthy: (id: NodeId) => boolean): boolean {
  const left = voters.filter((id) => !gone.has(id));
  return left.length > 0 && left.filter(healthy).length >= Math.floor(left.length / 2) + 1;
}

/** A node the operator asks to promote, as the metadata and the metadata group's configuration show it. */
export interface PromotionCandidate {
  id: NodeId;
  /** Undefined: no such node (or removed). */
  role?: "standard" | "analytics" | "standby";
  learner: boolean;
}

/**
 * Refuses a promotion by hand (MEM-2) that would not leave an odd number of voters, names a node twice,
 * or names a node that is not a standard metadata learner; null when it may go ahead (the caller still
 * checks that the learners caught up).
 */
export function promotionRefusal(candidates: readonly PromotionCandidate[], voters: number): Refusal | null {
  for (const c of candidates) {
    if (c.role === undefined) return { ok: false, code: "node_not_found", message: `no node ${c.id}` };
    if (c.role !== "standard") return { ok: false, code: "not_promotable", message: `node ${c.id} is ${c.role}: it never votes` };
    if (!c.learner) return { ok: false, code: "not_a_learner", message: `node ${c.id} is not a learner of the metadata group` };
  }
  if (new Set(candidates.map((c) => c.id)).size !== candidates.length) return { ok: false, code: "bad_request", message: "a node is named twice" };
  if ((voters + candidates.length) % 2 === 0) {
    return { ok: false, code: "voters_must_stay_odd", message: `${voters} voters + ${candidates.length} would be even: name a partner to promote with` };
  }
  return null;
}

export function describeStep(s: Operator["steps"][number]): string {
  return s.kind === "transfer-leader" ? `transfer-leader to ${s.to}` : `${s.kind} ${s.node}`;
}

/** The splits and merges held that the shard map shows ended (or that timed out), with how. */
export function endedReshapes(state: PlacementState, live: ReadonlySet<number>, nowMs: number, stepTimeoutMs: number): { op: Operator; outcome: "done" | "cancelled" | "timed-out" }[] {
  const out: { op: Operator; outcome: "done" | "cancelled" | "timed-out" }[] = [];
  for (const op of state.operators) {
    if (op.reshape === undefined) continue;
    const outcome = reshapeProgress(op, op.reshape, live, nowMs, stepTimeoutMs);
    if (outcome !== "running") out.push({ op, outcome });
  }
  return out;
}

/** Running operators whose record in the metadata differs (none yet, another step or epoch, not running): to record. */
export function unrecorded(recorded: ReadonlyMap<number, RecordedOperator>, running: readonly Operator[]): { op: Operator; isNew: boolean }[] {
  return running.filter((op) => {
    const rec = recorded.get(op.id);
    return rec === undefined || rec.status !== "running" || rec.operator.stepIndex !== op.stepIndex || rec.operator.epoch !== op.epoch;
  }).map((op) => ({ op, isNew: !recorded.has(op.id) }));
}

/** A node of the metadata as the dead-node policy reads it. */
export interface MemberNode {
  id: NodeId;
  worker: WorkerState;
}

/**
 * Dead nodes this cycle (not this one, not removed): those not alerted yet (`alert`), the set alerted
 * from now on (a node that came back is forgotten, so a second death alerts again), and those that hold
 * no replica and have been silent long enough to leave the cluster (`retire`: repair has rebuilt their
 * replicas elsewhere; `removable` says whether the silence has lasted `nodeRemoveAfterMs`).
 */
export function deadNodes<N extends MemberNode>(nodes: Iterable<N>, self: NodeId, isDead: (id: NodeId) => boolean, holdsReplica: (id: NodeId) => boolean,
  alerted: ReadonlySet<NodeId>, removable: (id: NodeId) => boolean): { alert: N[]; alerted: Set<NodeId>; retire: N[] } {
  const dead = [...nodes].filter((n) => n.worker !== "removed" && n.id !== self && isDead(n.id));
  return {
    alert: dead.filter((n) => !alerted.has(n.id)),
    alerted: new Set(dead.map((n) => n.id)),
    retire: dead.filter((n) => removable(n.id) && !holdsReplica(n.id)),
  };
}

/** Appends an alert, dropping the oldest past `max`. */
export function appendAlert(alerts: Alert[], a: Alert, max: number): void {
  alerts.push(a);
  if (alerts.length > max) alerts.splice(0, alerts.length - max);
}

/** A collection of the metadata as the merge policy reads it (meta/state.ts CollectionRecord). */
export interface MapCollection {
  shards: readonly number[];
  initialShards?: number;
}

/** The collections' live shards with their fresh record counts, as pickMerge (reshape.ts) takes them. */
export function mergeCollections(collections: Iterable<MapCollection>, shards: ReadonlyMap<number, MapShard>, reports: ReadonlyMap<number, HeldReport>,
  cfg: PlacementConfig, nowMs: number): MergeCollection[] {
  return [...collections].map((c) => ({
    ...(c.initialShards !== undefined ? { initialShards: c.initialShards } : {}),
    shards: c.shards.map((id) => shards.get(id)).filter((sh) => sh !== undefined)
      .map((sh) => ({ id: sh.id, start: sh.range.start, end: sh.range.end, ...freshRecords(reports.get(sh.id), cfg, nowMs) })),
  }));
}
