/**
 * Keeps the metadata group's view of membership true (MEM-1, MEM-2, MEM-5):
 * - a founding member (started from a static peer list) registers itself with its own id and is a
 *   voter from the start; the metadata leader records the `default` collection's shard map once every
 *   founder is registered;
 * - on the metadata leader, joins are handled one at a time in arrival order: the node is registered
 *   (the metadata assigns its id) and added to the metadata group as a learner; if that fails the
 *   registration is rolled back and the node told why;
 * - a joined node reports itself ready once its copy of the metadata has caught up with the leader's
 *   commit index (the ReadyNotification);
 * - the metadata leader promotes ready learners so that voters stay odd (promotion.ts), a pair
 *   through one joint configuration change.
 *
 * Shard replicas on joined nodes (the placement driver's loop) are not built yet.
 *
 * Lifecycle: start() runs a reconcile pass every `intervalMs`; stop() ends it. Each pass makes at most
 * a few proposals and retries on the next pass after a failure; the join queue is bounded.
 */
import { type PromotionConfig, planPromotions } from "../meta/promotion.js";
import { type Address, type ApplyResult, DEFAULT_COLLECTION, type MetaCommand, type NodeRole, currentSettings } from "../meta/state.js";
import type { Labels, NodeId } from "../placement/types.js";
import { ConfChangeType } from "../raft/index.js";
import type { Gateway } from "./gateway.js";
import { META_GROUP, type MultiRaftNode, OverloadedError } from "./multi-raft.js";
import { type Logger } from "../util/logger.js";
import { type Alert, type PlacementAnswer, deadNodes, promotionRefusal, quorumAfterRemoval, staleLearners } from "../placement/policy.js";
import { DEFAULT_PLACEMENT, type PlacementConfig } from "../placement/types.js";
import { foundingVoters } from "../meta/ranges.js";
import { type Clock, type Timer } from "../util/clock.js";
import { unrefTimer } from "./paced-loop.js";

export interface MembershipOptions {
  /**
   * This node's peer address as others reach it; a function is read when the node registers, so that a
   * port the node chose when it started listening (port 0) is known by then.
   */
  peer: Address | (() => Address);
  http: Address;
  labels?: Labels;
  role?: NodeRole;
  /** The founding members (static peer list, this node included when it is one). */
  founders: NodeId[];
  /** The default collection's shard count (recorded by the founders). */
  shards: number;
  intervalMs?: number;
  /** Overrides the cluster settings' promotion timeouts (tests). */
  promotion?: PromotionConfig;
  logger?: Logger;
  /** Time and timers; by default the gateway's (the node's) clock. */
  clock?: Clock;
}

export interface JoinRequest {
  peer: Address;
  http: Address;
  labels: Labels;
  role: NodeRole;
}

export type JoinResponse =
  | { ok: true; id: NodeId; members: { id: NodeId; peer: Address }[]; shards: number }
  | { ok: false; code: string; message: string };

/** Joins waiting on the metadata leader beyond the one in progress. */
const JOIN_QUEUE_MAX = 64;

export class Membership {
  private timer: Timer | null = null;
  private readonly clock: Clock;
  private running = false;
  private joins: Promise<unknown> = Promise.resolve();
  private joinsQueued = 0;
  /** Passes made (for tests and metrics). */
  passes = 0;
  /** Test mode only: this many joins fail after registering (a join that fails midway). */
  failJoinsForTest = 0;

  constructor(private readonly node: MultiRaftNode, readonly gateway: Gateway, private readonly opts: MembershipOptions) {
    this.clock = opts.clock ?? gateway.clock;
    gateway.onJoin = (req) => this.handleJoin(req);
  }

  start(): void {
    if (this.timer !== null) return;
    this.timer = this.clock.setInterval(() => void this.pass(), this.opts.intervalMs ?? 500);
    // The node's own loop keeps the process alive; a forgotten agent alone must not.
    unrefTimer(this.timer);
  }

  stop(): void {
    this.clock.clear(this.timer);
    this.timer = null;
  }

  /** Serializes joins: each waits for the one before it (FIFO), within a bounded queue. */
  handleJoin(req: JoinRequest): Promise<JoinResponse> {
    if (this.joinsQueued >= JOIN_QUEUE_MAX) return Promise.reject(new OverloadedError("too many joins waiting"));
    this.joinsQueued++;
    const run = this.joins.then(() => this.join(req)).finally(() => this.joinsQueued--);
    this.joins = run.catch(() => undefined);
    return run;
  }

  private async join(req: JoinRequest): Promise<JoinResponse> {
    const registered = await this.gateway.proposeMeta({ kind: "register-node", peer: req.peer, http: req.http, labels: req.labels, role: req.role, atMs: this.clock.wallMs() });
    if (!registered.ok) return registered;
    const id = registered.value!;
    try {
      if (this.failJoinsForTest > 0) {
        this.failJoinsForTest--;
        throw new Error("injected failure (test mode)");
      }
      // Asked again while another change is in flight, unless the new node was removed meanwhile.
      await this.gateway.proposeConfChange(META_GROUP, [{ type: ConfChangeType.AddLearner, nodeId: id }],
        () => this.node.metaState().nodes.get(id)?.worker !== "removed");
    } catch (e) {
      // Atomic: the node ends a member or not at all.
      const message = `adding node ${id} to the metadata group failed (${(e as Error).message}); its registration was rolled back`;
      await this.gateway.proposeMeta({ kind: "forget-node", node: id, atMs: this.clock.wallMs() }).catch(() => undefined);
      return { ok: false, code: "join_failed", message };
    }
    const members = [...this.node.metaState().nodes.values()].filter((n) => n.worker !== "removed").map((n) => ({ id: n.id, peer: n.peer }));
    this.opts.logger?.info(`membership: node ${id} joined as a metadata learner`);
    return { ok: true, id, members, shards: this.node.metaState().collections.get(DEFAULT_COLLECTION)?.shards.length ?? this.opts.shards };
  }

  /** One reconcile pass (no-op while the previous one is still waiting on the metadata group). */
  async pass(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (const cmd of this.fixes()) {
        const r = await this.gateway.proposeMeta(cmd);
        if (!r.ok) this.opts.logger?.warn(`membership: ${cmd.kind} refused: ${r.code}: ${r.message}`);
      }
      if (this.node.leaderOf(META_GROUP) === this.node.id) await this.promote();
    } catch (e) {
      this.opts.logger?.warn(`membership: ${(e as Error).message}; retrying`);
    } finally {
      this.passes++;
      this.running = false;
    }
  }

  /** What differs between the metadata and this node's reality, as commands that fix it. */
  private fixes(): MetaCommand[] {
    if (!this.node.hosts(META_GROUP) || this.node.leaderOf(META_GROUP) === 0) return [];
    const meta = this.node.metaState();
    const self = meta.nodes.get(this.node.id);
    const founder = this.opts.founders.includes(this.node.id);
    const atMs = this.clock.wallMs();
    const out: MetaCommand[] = [];
    if (self === undefined) {
      if (founder) {
        out.push({
          kind: "register-node", id: this.node.id, peer: typeof this.opts.peer === "function" ? this.opts.peer() : this.opts.peer, http: this.opts.http, labels: this.opts.labels ?? {},
          role: this.opts.role ?? "standard", atMs,
        });
      }
      return out;
    }
    if (founder) {
      // A founding member holds its replicas and votes in the metadata group from the start.
      if (self.worker === "joining") out.push({ kind: "set-worker-state", node: self.id, state: "ready", atMs });
      if (self.lifecycle !== "voter") out.push({ kind: "set-lifecycle", node: self.id, lifecycle: "voter", atMs });
    } else if ((self.lifecycle === "joining" || self.lifecycle === "syncing") && this.node.metaCaughtUp()) {
      // The ReadyNotification: this node's copy of the metadata has caught up.
      out.push({ kind: "set-lifecycle", node: self.id, lifecycle: "ready", atMs });
      if (self.worker === "joining") out.push({ kind: "set-worker-state", node: self.id, state: "ready", atMs });
    }
    const founders = [...this.opts.founders].sort((a, b) => a - b);
    if (founder && this.node.leaderOf(META_GROUP) === this.node.id && !meta.collections.has(DEFAULT_COLLECTION) && founders.every((id) => meta.nodes.has(id))) {
      // Static membership: the founders hold the shards' voters as their first start made them.
      const rf = Math.min(DEFAULT_PLACEMENT.replicationFactor, founders.length);
      const placements = Array.from({ length: this.opts.shards }, (_, i) => foundingVoters(i + 1, founders, rf));
      out.push({ kind: "create-collection", name: DEFAULT_COLLECTION, replicationFactor: rf, placements, atMs });
    }
    return out;
  }

  /** On the metadata leader: quorum-aware promotion of ready learners (one decision per pass). */
  private async promote(): Promise<void> {
    const meta = this.node.metaState();
    const decisions = planPromotions([...meta.nodes.values()], this.opts.promotion ?? currentSettings(meta).placement, this.clock.wallMs());
    const d = decisions[0];
    if (d === undefined) return;
    const atMs = this.clock.wallMs();
    if (d.kind === "set-lifecycle") {
      await this.gateway.proposeMeta({ kind: "set-lifecycle", node: d.node, lifecycle: d.lifecycle, atMs });
      return;
    }
    if (laggingLearners(this.node, d.nodes).length > 0) return;
    await promoteToVoters(this.gateway, d.nodes, atMs);
    this.opts.logger?.info(`membership: promoted ${d.nodes.join(" and ")} to metadata voter(s)`);
  }
}

/**
 * Of these metadata learners, those whose log does not hold the leader's commit index (on the metadata
 * leader; elsewhere every one counts as lagging). Only a caught-up learner is promoted (the
 * match-index barrier): a voter that lags would count toward the quorum without holding what it
 * acknowledges.
 */
export function laggingLearners(node: MultiRaftNode, ids: readonly NodeId[]): NodeId[] {
  const st = node.metaStatus();
  return ids.filter((id) => (st.progress?.get(id)?.match ?? 0) < st.commit);
}

/** Raft first (a pair enters and leaves a joint configuration), then the record of it. */
export async function promoteToVoters(gateway: Gateway, nodes: readonly NodeId[], atMs: number): Promise<void> {
  // Not asked again when busy: the promotion was decided on the configuration before the change in flight
  // (a node it removes must not come back as a voter); the refusal goes back, and the next pass decides again.
  await gateway.proposeConfChange(META_GROUP, nodes.map((nodeId) => ({ type: ConfChangeType.AddVoter, nodeId })));
  for (const node of nodes) await gateway.proposeMeta({ kind: "set-lifecycle", node, lifecycle: "voter", atMs });
}

/**
 * Operator commands on a node's worker lifecycle (MEM-5). Drain: no new replicas, existing ones move
 * away (the placement driver's work), reads still served meanwhile. Remove: refused while the node holds
 * replicas; once accepted, the node also leaves the metadata group's configuration.
 */
export async function drainNode(gateway: Gateway, id: NodeId): Promise<ApplyResult> {
  return gateway.proposeMeta({ kind: "set-worker-state", node: id, state: "draining", atMs: gateway.clock.wallMs() });
}

export async function removeNode(gateway: Gateway, node: MultiRaftNode, id: NodeId): Promise<ApplyResult> {
  const r = await gateway.proposeMeta({ kind: "set-worker-state", node: id, state: "removed", atMs: gateway.clock.wallMs() });
  if (!r.ok) return r;
  const member = () => {
    const config = node.metaStatus().config;
    return config.voters.includes(id) || config.learners.includes(id);
  };
  // Asked again while another change is in flight and the node is still a member.
  if (member()) await gateway.proposeConfChange(META_GROUP, [{ type: ConfChangeType.RemoveNode, nodeId: id }], member);
  return r;
}

/**
 * The placement driver's care of the members (on the metadata leader): promotions by hand (MEM-2), dead
 * nodes that hold no replica leave the cluster (MEM-6, zombie removal), stale metadata learners are
 * set back to syncing (MEM-4). The decisions are placement/policy.ts's; this carries them out.
 */
export class MemberCare {
  /** Since when each metadata learner has lagged or been silent (stale-learner detection). */
  private laggingSinceMs = new Map<NodeId, number>();
  /** Nodes already alerted as dead (bounded by the node count). */
  private deadSeen = new Set<NodeId>();

  constructor(private readonly node: MultiRaftNode, private readonly gateway: Gateway, private readonly alert: (a: Alert) => void,
    private readonly logger?: Logger) {}

  /**
   * Promotes metadata learners to voters at the operator's request (MEM-2): standard nodes only, caught
   * up, and as many as keep the voter count odd (name a partner to promote two).
   */
  async promote(ids: NodeId[]): Promise<PlacementAnswer> {
    const meta = this.node.metaState();
    const conf = this.node.metaStatus().config;
    const refused = promotionRefusal(ids.map((id) => {
      const n = meta.nodes.get(id);
      return { id, learner: conf.learners.includes(id), ...(n !== undefined && n.worker !== "removed" ? { role: n.role } : {}) };
    }), conf.voters.length);
    if (refused !== null) return refused;
    const lagging = laggingLearners(this.node, ids);
    if (lagging.length > 0) return { ok: false, code: "not_caught_up", message: `node(s) ${lagging.join(", ")} do not hold the metadata leader's commit index yet` };
    await promoteToVoters(this.gateway, ids, this.gateway.clock.wallMs());
    return { ok: true };
  }

  /**
   * Dead nodes that hold no replica and have been silent for `nodeRemoveAfterMs` leave the cluster (one
   * that comes back before is a member still, and the balancer gives it replicas again): their worker
   * state becomes removed and they leave the metadata group's configuration, all in one change (zombie
   * removal), unless the voters left alive would not be a quorum of the new configuration. A dead node
   * with replicas waits until repair has rebuilt them elsewhere.
   */
  async retireDeadNodes(cfg: PlacementConfig, nowMs: number): Promise<void> {
    const meta = this.node.metaState();
    // Walks the whole shard map: only when some node is dead (never on a healthy cluster's passes).
    let holders: Set<NodeId> | null = null;
    const holdsReplica = (id: NodeId) => (holders ??= new Set([...meta.shards.values()].flatMap((s) => s.replicas.map((r) => r.node)))).has(id);
    const found = deadNodes(meta.nodes.values(), this.node.id, (id) => this.node.peerHealth(id, cfg.nodeDeadAfterMs) === "dead", holdsReplica, this.deadSeen,
      (id) => this.node.peerHealth(id, cfg.nodeRemoveAfterMs) === "dead");
    this.deadSeen = found.alerted;
    for (const n of found.alert) {
      this.alert({ atMs: nowMs, kind: "node-dead", node: n.id, message: `node ${n.id} is dead (silent for ${cfg.nodeDeadAfterMs} ms): its replicas are rebuilt elsewhere` });
    }
    const dead = found.retire;
    if (dead.length === 0) return;
    const conf = this.node.metaStatus().config;
    const gone = new Set(dead.map((n) => n.id));
    if (!quorumAfterRemoval(conf.voters, gone, (id) => this.node.peerHealth(id, cfg.nodeDeadAfterMs) === "healthy")) {
      this.logger?.warn(`placement driver: not removing dead node(s) ${[...gone]}: the live voters left would not be a quorum`);
      return;
    }
    const atMs = nowMs;
    for (const n of dead) {
      if (n.worker !== "draining") await this.gateway.proposeMeta({ kind: "set-worker-state", node: n.id, state: "draining", atMs });
      const r = await this.gateway.proposeMeta({ kind: "set-worker-state", node: n.id, state: "removed", atMs });
      if (r.ok) this.alert({ atMs, kind: "node-removed", node: n.id, message: `node ${n.id} was dead and held no replica: removed from the cluster` });
    }
    const members = new Set([...conf.voters, ...conf.learners]);
    const changes = dead.filter((n) => members.has(n.id)).map((n) => ({ type: ConfChangeType.RemoveNode, nodeId: n.id }));
    // Removing dead members never lowers the live quorum the check above counted: asked again while busy.
    if (changes.length > 0) await this.gateway.proposeConfChange(META_GROUP, changes, () => true);
  }

  /**
   * A metadata learner that lags the commit index or is silent for `staleLearnerMs` is stale: it is
   * set back to syncing (not promotable until it reports ready again) and an alert is raised.
   */
  async downgradeStaleLearners(cfg: PlacementConfig, nowMs: number): Promise<void> {
    const st = this.node.metaStatus();
    const lagging = new Set<NodeId>();
    for (const n of this.node.metaState().nodes.values()) {
      const learner = st.config.learners.includes(n.id) && (n.lifecycle === "ready" || n.lifecycle === "pairing" ||
        n.lifecycle === "standby-learner" || n.lifecycle === "keep-as-learner");
      if (learner && ((st.progress?.get(n.id)?.match ?? 0) < st.commit || this.node.peerHealth(n.id, cfg.nodeDeadAfterMs) !== "healthy")) lagging.add(n.id);
    }
    const { laggingSinceMs, stale } = staleLearners(this.laggingSinceMs, lagging, nowMs, cfg.staleLearnerMs);
    this.laggingSinceMs = laggingSinceMs;
    for (const id of stale) {
      const r = await this.gateway.proposeMeta({ kind: "set-lifecycle", node: id, lifecycle: "syncing", atMs: nowMs });
      if (r.ok) this.alert({ atMs: nowMs, kind: "stale-learner", node: id, message: `metadata learner ${id} lagged or was silent for ${cfg.staleLearnerMs} ms: downgraded to syncing` });
    }
  }
}
