/**
 * The fault schedule of a simulation. Each seed picks a profile, which weighs the kinds of fault:
 * "mixed" spreads over everything; "leader-churn" aims at leaders (isolate the leader with a minority,
 * crash it, transfer leadership and cut the old leader off at once); "power" crashes several nodes at
 * the same instant, as a rack losing power would. Some faults are adversarial: they look at the
 * nodes' logs to pick the most damaging partition (the simulator may; a real network would by chance).
 */
import type { NodeId } from "../raft/index.js";
import type { SimNetwork } from "./network.js";
import type { Rng } from "../util/rng.js";
import type { SimNode } from "./sim-node.js";

export type FaultProfile = "mixed" | "leader-churn" | "power";
export const FAULT_PROFILES: readonly FaultProfile[] = ["mixed", "leader-churn", "power"];

/** What the nemesis may do to the simulated cluster. */
export interface NemesisTarget {
  readonly rng: Rng;
  readonly net: SimNetwork;
  now(): number;
  members(): NodeId[];
  upNodes(): SimNode[];
  leader(): SimNode | null;
  /** Crashes the node and restarts it after restartInMs. */
  crash(node: SimNode, restartInMs: number): void;
  at(timeMs: number, fn: () => void): void;
  healed(): boolean;
  changeMembership(): void;
  /** Asks the leader to hand over to a random voter; returns the old leader's id, if any. */
  transferLeader(): NodeId | null;
  setSkew(id: NodeId, factor: number): void;
  countPartition(): void;
}

type Action = (t: NemesisTarget) => void;

const partition: Action = (t) => {
  const ids = t.members();
  t.net.heal();
  t.countPartition();
  const shuffled = t.rng.shuffle([...ids]);
  const kind = t.rng.int(3);
  if (kind === 0 && shuffled.length >= 2) {
    // Any split, majority / minority included.
    const cut = t.rng.range(1, shuffled.length - 1);
    t.net.partition(shuffled.slice(0, cut), shuffled.slice(cut));
  } else if (kind === 1) {
    // One-way: some links drop in one direction only.
    for (let i = 0; i < shuffled.length; i++) {
      const a = shuffled[i]!;
      const b = shuffled[(i + 1) % shuffled.length]!;
      if (a !== b && t.rng.chance(0.6)) t.net.block(a, b);
    }
  } else if (shuffled.length >= 3) {
    // Bridge: two sides that can both reach one node, but not each other.
    const rest = shuffled.slice(1);
    const cut = Math.max(1, Math.floor(rest.length / 2));
    t.net.partition(rest.slice(0, cut), rest.slice(cut));
  }
};

/** The leader and at most a minority on one side, everyone else on the other. */
const isolateLeader: Action = (t) => {
  const leader = t.leader();
  if (leader === null) return;
  t.net.heal();
  t.countPartition();
  const others = t.rng.shuffle(t.members().filter((id) => id !== leader.id));
  // Often alone: a lone leader keeps accepting writes until check-quorum, building a divergent tail.
  const withLeader = t.rng.chance(0.5) ? [] : others.slice(0, t.rng.int(Math.ceil(others.length / 2)));
  const rest = others.slice(withLeader.length);
  t.net.partition([leader.id, ...withLeader], rest);
};

const heal: Action = (t) => t.net.heal();

const flakyLinks: Action = (t) => {
  t.net.faults = {
    dropRate: t.rng.pick([0, 0.02, 0.1, 0.3]),
    duplicateRate: t.rng.pick([0, 0.05, 0.2]),
    delayMs: t.rng.pick([[1, 3], [1, 20], [5, 60]] as [number, number][]),
  };
};

const crashOne: Action = (t) => {
  const up = t.upNodes();
  if (up.length > 0) t.crash(t.rng.pick(up), t.rng.range(20, 1500));
};

const crashLeader: Action = (t) => {
  const leader = t.leader();
  if (leader !== null) t.crash(leader, t.rng.range(10, 400));
};

/** Several nodes lose power at the same instant and come back one by one. */
const powerLoss: Action = (t) => {
  const up = t.rng.shuffle(t.upNodes());
  const n = t.rng.range(2, Math.max(2, up.length));
  for (const node of up.slice(0, n)) t.crash(node, t.rng.range(5, 300));
};

const transfer: Action = (t) => {
  t.transferLeader();
};

/** Hand leadership over and cut the old leader off at once: it learns of its successor late. */
const transferAndIsolate: Action = (t) => {
  const old = t.transferLeader();
  if (old === null) return;
  t.countPartition();
  t.at(t.now() + t.rng.range(0, 3), () => {
    if (!t.healed()) t.net.clog(old, t.members());
  });
};

/**
 * The figure-8 move: find a node whose log conflicts with the leader's and give it a side where it can
 * win an election: the voters whose logs are no more up to date than its own. If the leader committed
 * something it should not have, this elects a leader without it.
 */
const electDivergent: Action = (t) => {
  const leader = t.leader();
  if (leader === null) return;
  const ll = leader.raft!;
  const candidates = t.upNodes().filter((n) => {
    if (n.id === leader.id || n.raft === null) return false;
    const nl = n.raft;
    const lo = Math.max(nl.firstIndex(), ll.firstIndex());
    const hi = Math.min(nl.lastIndex(), ll.lastIndex());
    for (let i = hi; i >= lo; i--) if (nl.termAt(i) !== ll.termAt(i)) return true;
    return false;
  });
  if (candidates.length === 0) return;
  const c = t.rng.pick(candidates);
  const cl = c.raft!;
  const side = t.members().filter((id) => {
    if (id === c.id) return true;
    if (id === leader.id) return false;
    const n = t.upNodes().find((x) => x.id === id);
    if (n === undefined || n.raft === null) return false;
    return cl.isUpToDate(n.raft.lastIndex(), n.raft.lastTerm());
  });
  t.net.heal();
  t.countPartition();
  t.net.partition(side, t.members().filter((id) => !side.includes(id)));
};

/** Swizzle-clogging: cut nodes off one by one, then reconnect them in a random order. */
const swizzle: Action = (t) => {
  t.net.heal();
  const order = t.rng.shuffle([...t.members()]);
  const stepMs = t.rng.range(20, 150);
  order.forEach((id, i) => t.at(t.now() + i * stepMs, () => { if (!t.healed()) t.net.clog(id, t.members()); }));
  const back = t.rng.shuffle([...order]);
  const start = order.length * stepMs + t.rng.range(50, 400);
  back.forEach((id, i) => t.at(t.now() + start + i * stepMs, () => t.net.unclog(id, t.members())));
};

const membership: Action = (t) => t.changeMembership();

const clockDrift: Action = (t) => {
  // One node's clock runs fast or slow, inside the lease's configured drift margin.
  t.setSkew(t.rng.pick(t.members()), 1 + (t.rng.float() - 0.5) * 0.1);
};

const WEIGHTS: Record<FaultProfile, [Action, number][]> = {
  mixed: [
    [partition, 18], [isolateLeader, 6], [heal, 10], [flakyLinks, 10], [crashOne, 12], [crashLeader, 4],
    [powerLoss, 3], [membership, 14], [transfer, 8], [transferAndIsolate, 3], [swizzle, 7], [clockDrift, 5],
    [electDivergent, 5],
  ],
  "leader-churn": [
    [isolateLeader, 20], [heal, 18], [crashLeader, 16], [transferAndIsolate, 16], [transfer, 6],
    [flakyLinks, 6], [membership, 6], [partition, 6], [clockDrift, 6], [electDivergent, 20],
  ],
  power: [
    [powerLoss, 30], [crashOne, 10], [crashLeader, 10], [heal, 15], [isolateLeader, 10], [flakyLinks, 10],
    [membership, 5], [partition, 10],
  ],
};

export class Nemesis {
  readonly profile: FaultProfile;
  private readonly actions: [Action, number][];
  private readonly total: number;

  constructor(profile: FaultProfile) {
    this.profile = profile;
    this.actions = WEIGHTS[profile];
    this.total = this.actions.reduce((s, [, w]) => s + w, 0);
  }

  /** Time to the next fault: leader churn strikes often, so that several terms overlap. */
  nextIntervalMs(rng: Rng): number {
    return this.profile === "leader-churn" ? rng.range(20, 250) : rng.range(100, 700);
  }

  /** Performs one randomly chosen fault. */
  strike(t: NemesisTarget): void {
    let r = t.rng.int(this.total);
    for (const [action, weight] of this.actions) {
      if (r < weight) {
        action(t);
        return;
      }
      r -= weight;
    }
  }
}
