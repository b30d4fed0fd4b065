/**
 * The node world's nemesis: during the chaos phase it draws one fault or operator at a time from the
 * seed — crashes and restarts, partitions, flaky links, disk faults, clock jumps, and the operators a
 * cluster runs (splits, merges, leader transfers, replica moves) — and undoes each after a while, so
 * the cluster keeps a chance to make progress. Operators go through a gateway's placement request, the
 * path `shoal shard split` and friends take.
 */
import { drainNode, removeNode } from "../../node/membership.js";
import type { PlacementRequest } from "../../placement/policy.js";
import type { Rng } from "../../util/rng.js";
import type { SimNetwork } from "./network.js";
import type { SimScheduler } from "./scheduler.js";
import type { WorldNode } from "./world-node.js";

export const FAULTS = ["crash", "partition", "isolate", "flaky-links", "disk-faults", "clock-jump"] as const;
export const OPERATORS = ["split", "merge", "transfer-leader", "move"] as const;
export const LIFECYCLE = ["join", "drain", "remove"] as const;
export type NemesisAction = (typeof FAULTS)[number] | (typeof OPERATORS)[number] | (typeof LIFECYCLE)[number];

export interface NemesisContext {
  scheduler: SimScheduler;
  network: SimNetwork;
  nodes: readonly WorldNode[];
  /** Restarts a crashed node (the world knows how). */
  restart(n: WorldNode): void;
  /** Crashes a running node (the world knows how). */
  crash(n: WorldNode): void;
  /** A new node asks a member to join, then starts (as `shoal start --join`); resolves with what happened. */
  join(): Promise<string>;
}

/** Bound on faults in force at once: the cluster keeps a majority most of the time. */
const CRASHED_MAX = 1;
/** Joins stop at this many members. */
const NODES_MAX = 5;
/** Drains leave at least this many ready nodes (the default replication factor). */
const REPLICAS_KEPT = 3;
const TRACE_MAX = 1000;

export class WorldNemesis {
  /** What was done, by kind (operators: asked; refused ones are counted apart). */
  readonly counts = new Map<string, number>();
  private crashed = 0;
  private partitioned = false;

  constructor(private readonly rng: Rng, private readonly ctx: NemesisContext) {}

  /** What was done when, in virtual ms (bounded), for reading a failed run. */
  readonly trace: string[] = [];

  private count(what: string, detail = ""): void {
    this.counts.set(what, (this.counts.get(what) ?? 0) + 1);
    if (this.trace.length < TRACE_MAX) this.trace.push(`${this.ctx.scheduler.nowMs.toFixed(0)} ms: ${what}${detail === "" ? "" : ` ${detail}`}`);
  }

  private later(fn: () => void, minMs: number, maxMs: number): void {
    this.ctx.scheduler.schedule(fn, this.rng.range(minMs, maxMs), "nemesis");
  }

  private running(): WorldNode[] {
    return this.ctx.nodes.filter((n) => n.serving());
  }

  /** One action drawn from the seed. */
  act(): void {
    const action = this.rng.pick<NemesisAction>([...FAULTS, ...OPERATORS, ...OPERATORS, ...LIFECYCLE]);
    switch (action) {
      case "crash": {
        const up = this.running();
        if (this.crashed >= CRASHED_MAX || up.length < this.ctx.nodes.length) return;
        const n = this.rng.pick(up);
        this.crashed++;
        // Half the crashes leave a last frame to be read after the close (network.ts lastFrameAfterCloseMs).
        this.ctx.network.lastFrameAfterCloseMs = this.rng.int(2) === 0 ? 0 : 1 + this.rng.int(5);
        this.count("crash", `node ${n.id}`);
        this.ctx.crash(n);
        this.later(() => {
          this.crashed--;
          this.count("restart", `node ${n.id}`);
          this.ctx.restart(n);
        }, 200, 1500);
        return;
      }
      case "partition":
      case "isolate": {
        if (this.partitioned) return;
        this.partitioned = true;
        const ids = this.rng.shuffle(this.ctx.nodes.map((n) => n.id));
        const cut = action === "isolate" ? 1 : 1 + this.rng.int(ids.length - 1);
        this.ctx.network.partition([ids.slice(0, cut), ids.slice(cut)]);
        this.count(action, JSON.stringify([ids.slice(0, cut), ids.slice(cut)]));
        this.later(() => {
          this.partitioned = false;
          this.count("heal");
          this.ctx.network.heal();
        }, 300, 2000);
        return;
      }
      case "flaky-links": {
        this.ctx.network.setLinkFaults({ dropProbability: 0.05, duplicateProbability: 0.05, reorder: true, delayMsMin: 1, delayMsMax: 20 });
        this.count(action);
        this.later(() => this.ctx.network.setLinkFaults({ dropProbability: 0, duplicateProbability: 0, reorder: false, delayMsMin: 1, delayMsMax: 5 }), 300, 1500);
        return;
      }
      case "disk-faults": {
        const n = this.rng.pick(this.ctx.nodes);
        n.disk.setFaults({ walAppendFailProbability: 0.02, corruptTailOnCrashProbability: 0.5 });
        this.count(action, `node ${n.id}`);
        this.later(() => n.disk.setFaults({ walAppendFailProbability: 0, corruptTailOnCrashProbability: 0 }), 300, 1500);
        return;
      }
      case "clock-jump": {
        const n = this.rng.pick(this.ctx.nodes);
        const deltaMs = this.rng.range(50, 2000);
        this.ctx.scheduler.jumpClock(`node${n.id}`, deltaMs);
        this.count(action, `node ${n.id} +${deltaMs} ms`);
        return;
      }
      case "join":
        if (this.ctx.nodes.filter((n) => !n.removed).length >= NODES_MAX) return;
        this.count("join");
        this.ctx.join().then((what) => this.count(`join ${what}`), (e: unknown) => this.count("join failed", String(e)));
        return;
      case "drain":
      case "remove":
        this.lifecycle(action);
        return;
      default:
        this.operator(action);
    }
  }

  /**
   * Drains a ready node while more than the replication factor stay ready, or removes a drained node
   * that holds no replica any more (the metadata refuses otherwise); a removed node stops for good.
   */
  private lifecycle(kind: "drain" | "remove"): void {
    const up = this.running();
    if (up.length === 0) return;
    const via = this.rng.pick(up);
    const meta = via.node!.metaState();
    const state = (id: number) => meta.nodes.get(id)?.worker;
    const members = this.ctx.nodes.filter((n) => !n.removed);
    if (kind === "drain") {
      const ready = members.filter((n) => state(n.id) === "ready");
      if (ready.length <= REPLICAS_KEPT || members.some((n) => state(n.id) === "draining")) return;
      const n = this.rng.pick(ready);
      this.count("drain", `node ${n.id}`);
      drainNode(via.gateway!, n.id).then((r) => {
        if (!r.ok) this.count("drain refused", r.code);
      }, (e: unknown) => this.count("drain failed", String(e)));
      return;
    }
    const holds = (id: number) => [...meta.shards.values()].some((s) => s.retiredInto === undefined && s.replicas.some((r) => r.node === id));
    const drained = members.find((n) => state(n.id) === "draining" && !holds(n.id) && n.id !== via.id);
    if (drained === undefined) return;
    this.count("remove", `node ${drained.id}`);
    removeNode(via.gateway!, via.node!, drained.id).then((r) => {
      if (!r.ok) return this.count("remove refused", r.code);
      drained.retire();
    }, (e: unknown) => this.count("remove failed", String(e)));
  }

  /** Asks a running node's gateway for an operator on a live shard of its map. */
  private operator(kind: (typeof OPERATORS)[number]): void {
    const up = this.running();
    if (up.length === 0) return;
    const via = this.rng.pick(up);
    const meta = via.node!.metaState();
    const shards = [...meta.shards.values()].filter((s) => s.retiredInto === undefined);
    if (shards.length === 0) return;
    const shard = this.rng.pick(shards);
    let req: PlacementRequest;
    switch (kind) {
      case "split":
        if (shards.length >= 6) return; // keeps the map small enough that merges win back
        req = { kind: "split", shard: shard.id };
        break;
      case "merge":
        req = { kind: "merge", shard: shard.id };
        break;
      case "transfer-leader": {
        const to = this.rng.pick(shard.replicas).node;
        req = { kind: "transfer-leader", shard: shard.id, to };
        break;
      }
      case "move": {
        const holders = new Set(shard.replicas.map((r) => r.node));
        const others = this.ctx.nodes.map((n) => n.id).filter((id) => !holders.has(id));
        if (others.length === 0 || shard.replicas.length === 0) return;
        req = { kind: "move", shard: shard.id, from: this.rng.pick(shard.replicas).node, to: this.rng.pick(others) };
        break;
      }
    }
    this.count(kind, JSON.stringify(req));
    via.gateway!.placement(req).then((a) => {
      if (!a.ok) this.count(`${kind} refused`, a.code);
    }, (e: unknown) => this.count(`${kind} failed`, String(e)));
  }
}
