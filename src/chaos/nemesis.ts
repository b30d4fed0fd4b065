/**
 * The faults of a chaos run, one at a time: each starts, is held, and is healed before the next one
 * (so a heal always reaches every node). Kinds, targets, hold times and gaps come from a seeded RNG;
 * what an operator acts on (a shard, its leader) is read from the cluster when it runs, so a repeated
 * seed repeats the schedule as closely as real processes allow.
 */
import { Rng } from "../util/rng.js";
import { type ProcCluster, waitUntil } from "./cluster.js";

export const NEMESIS_KINDS = ["kill", "pause", "partition", "split", "merge", "transfer", "netns"] as const;
export type NemesisKind = (typeof NEMESIS_KINDS)[number];

/** Faults counted by kind: applied, or refused by the cluster (operators: shard_busy, too_large, …). */
export interface FaultCounts {
  applied: Record<string, number>;
  refused: Record<string, number>;
}

export interface NemesisOptions {
  kinds: NemesisKind[];
  seed: number;
  /** How long a node fault is held, and the quiet time between faults. */
  holdMs: [number, number];
  gapMs: [number, number];
}

export { netnsUnavailable } from "./netns.js";

interface ShardView { shard: number; range: [number, number]; replicas: { node: number; role: string }[] }

export class Nemesis {
  readonly counts: FaultCounts = { applied: {}, refused: {} };
  /** What happened, with times since the start of the run: printed with a failing run. */
  readonly timeline: string[] = [];
  private readonly rng: Rng;
  private readonly kinds: NemesisKind[];

  constructor(private readonly c: ProcCluster, private readonly opts: NemesisOptions, private readonly elapsedMs: () => number) {
    this.rng = new Rng(opts.seed);
    // Namespace partitions need a cluster started in namespaces; whether they can run is decided (and a
    // skip explained) by the caller: see netnsUnavailable.
    this.kinds = c.netns === null ? opts.kinds.filter((k) => k !== "netns") : [...opts.kinds];
  }

  private note(kind: string, applied: boolean, what: string): void {
    const bucket = applied ? this.counts.applied : this.counts.refused;
    bucket[kind] = (bucket[kind] ?? 0) + 1;
    this.timeline.push(`${(this.elapsedMs() / 1000).toFixed(2)}s ${kind}${applied ? "" : " (refused)"}: ${what}`);
  }

  private between([lo, hi]: [number, number]): number {
    return this.rng.range(lo, hi);
  }

  /** Runs faults until `stop` says so; returns with every fault healed. */
  async run(stop: () => boolean): Promise<void> {
    if (this.kinds.length === 0) return;
    // Bounded by the run's time: each turn takes at least its gap.
    while (!stop()) {
      await this.sleepUnless(this.between(this.opts.gapMs), stop);
      if (stop()) break;
      const kind = this.rng.pick(this.kinds);
      try {
        await this.inject(kind, stop);
      } catch (e) {
        // An operator request unanswered in time (its node paused or restarting) counts as refused.
        this.note(kind, false, `failed: ${(e as Error).message}`);
      }
    }
  }

  /** Holding a fault is waiting out time itself (not a condition), cut short when the run ends. */
  private async sleepUnless(ms: number, stop: () => boolean): Promise<void> {
    const until = Date.now() + ms;
    while (Date.now() < until && !stop()) await new Promise((r) => setTimeout(r, Math.min(50, until - Date.now())));
  }

  /** Node faults want every node answering first: a fault on a node still starting would not hold. */
  private async allAnswering(): Promise<void> {
    await waitUntil("every node answering", async () => {
      for (const id of this.c.ids) {
        try {
          const r = await fetch(this.c.url(id, "/healthz"), { signal: AbortSignal.timeout(1000) });
          await r.arrayBuffer();
        } catch {
          return false;
        }
      }
      return true;
    }, 30_000, 50);
  }

  private async inject(kind: NemesisKind, stop: () => boolean): Promise<void> {
    switch (kind) {
      case "kill": {
        await this.allAnswering();
        const id = this.rng.pick(this.c.ids);
        const hold = this.between(this.opts.holdMs);
        await this.c.kill9(id);
        this.note(kind, true, `kill -9 node ${id}, restart after ${hold} ms`);
        await this.sleepUnless(hold, stop);
        this.c.restart(id);
        return;
      }
      case "pause": {
        await this.allAnswering();
        const id = this.rng.pick(this.c.ids);
        const hold = this.between(this.opts.holdMs);
        this.c.pause(id);
        this.note(kind, true, `SIGSTOP node ${id} for ${hold} ms`);
        await this.sleepUnless(hold, stop);
        this.c.resume(id);
        return;
      }
      case "partition": {
        await this.allAnswering();
        // One node cut off from both others (a minority), or a single link cut (the third node bridges).
        const id = this.rng.pick(this.c.ids);
        const others = this.c.ids.filter((o) => o !== id);
        const cutOff = this.rng.chance(0.7) ? others : [this.rng.pick(others)];
        const hold = this.between(this.opts.holdMs);
        const cuts = new Map<number, number[]>([[id, cutOff], ...cutOff.map((o) => [o, [id]] as [number, number[]])]);
        const set = await Promise.all([...cuts].map(([n, cut]) => this.c.setFaults(n, cut)));
        this.note(kind, set.every(Boolean), `node ${id} cut from ${cutOff.join(",")} for ${hold} ms`);
        await this.sleepUnless(hold, stop);
        await this.healLinks();
        return;
      }
      case "split":
      case "merge":
      case "transfer":
        await this.operator(kind);
        return;
      case "netns": {
        const net = this.c.netns!;
        await this.allAnswering();
        // As `partition`, but through the kernel: DROP rules in the namespaces of both ends of each cut link.
        const id = this.rng.pick(this.c.ids);
        const others = this.c.ids.filter((o) => o !== id);
        const cutOff = this.rng.chance(0.7) ? others : [this.rng.pick(others)];
        const hold = this.between(this.opts.holdMs);
        try {
          net.cut(id, cutOff);
          for (const o of cutOff) net.cut(o, [id]);
          this.note(kind, true, `iptables DROP between ${net.namespace(id)} (${net.address(id)}) and ${cutOff.map((o) => net.address(o)).join(",")} for ${hold} ms`);
          await this.sleepUnless(hold, stop);
        } finally {
          this.healNetns();
        }
        return;
      }
    }
  }

  /** Flushes the DROP rules in every node's namespace. */
  private healNetns(): void {
    if (this.c.netns === null) return;
    for (const id of this.c.ids) this.c.netns.heal(id);
  }

  async healLinks(): Promise<void> {
    await waitUntil("transport faults healed on every node", async () => {
      const healed = await Promise.all(this.c.ids.map((id) => this.c.setFaults(id, null)));
      return healed.every(Boolean);
    }, 30_000, 100);
  }

  private upNode(): number {
    const up = this.c.ids.filter((id) => this.c.state.get(id) === "up");
    return this.rng.pick(up);
  }

  private async liveShards(via: number): Promise<ShardView[]> {
    const r = await this.c.api<{ shards: ShardView[] }>(via, "GET", "/v1/cluster/shards");
    return r.status === 200 ? r.body.shards : [];
  }

  private async operator(kind: "split" | "merge" | "transfer"): Promise<void> {
    const via = this.upNode();
    const shards = await this.liveShards(via);
    let r: { status: number; body: { error?: { code: string } } };
    let what: string;
    if (kind === "split") {
      if (shards.length === 0) return this.note(kind, false, "no shard map");
      const sh = this.rng.pick(shards);
      what = `split shard ${sh.shard}`;
      r = await this.c.api(via, "POST", `/v1/cluster/shards/${sh.shard}/split`, {});
    } else if (kind === "merge") {
      // The shard starting at hash 0 has no lower neighbour.
      const mergeable = shards.filter((s) => s.range[0] !== 0);
      if (mergeable.length === 0) return this.note(kind, false, "no shard with a lower neighbour");
      const sh = this.rng.pick(mergeable);
      what = `merge shard ${sh.shard}`;
      r = await this.c.api(via, "POST", `/v1/cluster/shards/${sh.shard}/merge`);
    } else {
      if (shards.length === 0) return this.note(kind, false, "no shard map");
      const sh = this.rng.pick(shards);
      const leader = await this.leaderOf(sh.shard);
      const voters = sh.replicas.filter((x) => x.role === "voter" && x.node !== leader).map((x) => x.node);
      if (leader === 0 || voters.length === 0) return this.note(kind, false, `shard ${sh.shard} has no leader to move`);
      const to = this.rng.pick(voters);
      what = `transfer leader of shard ${sh.shard} from ${leader} to ${to}`;
      r = await this.c.api(via, "POST", `/v1/cluster/shards/${sh.shard}/transfer-leader`, { to });
    }
    this.note(kind, r.status === 200, r.status === 200 ? what : `${what}: ${r.status} ${r.body.error?.code ?? ""}`);
  }

  private async leaderOf(shard: number): Promise<number> {
    for (const id of this.c.ids.filter((n) => this.c.state.get(n) === "up")) {
      try {
        const st = await this.c.api<{ shards: { shard: number; leader: number }[] }>(id, "GET", "/v1/cluster/status");
        const l = st.body.shards.find((s) => s.shard === shard)?.leader ?? 0;
        if (l !== 0) return l;
      } catch {
        // A node restarting: ask the next.
      }
    }
    return 0;
  }

  /** Ends every fault still in force: paused nodes continue, killed ones restart, links heal. */
  async healAll(): Promise<void> {
    this.c.restartCrashed();
    for (const id of this.c.ids) {
      if (this.c.state.get(id) === "paused") this.c.resume(id);
      if (this.c.state.get(id) === "killed") this.c.restart(id);
    }
    this.healNetns();
    await this.healLinks();
  }
}
