/**
 * What the node world checks while it runs (between events) and after healing. A violation throws
 * WorldViolation, which ends the run and prints the seed.
 *
 * - One owner per range: in every running node's shard map, the live shards' ranges of each collection
 *   are disjoint, and every replica holds only records whose id's position (its hash, or the id itself
 *   in a range collection) is in its shard's range.
 * - Replicas agree: replicas of a shard at the same applied index hold the same records and state.
 * - Applied indexes never go back on a running replica (a restart may recover to a lower durable one).
 * - After healing: every live shard has a leader and its full set of replicas, caught up.
 */
import { currentSettings } from "../../meta/state.js";
import { type Position, comparePositions, describeRange, isEmptyRange, owns } from "../../meta/ranges.js";
import { META_GROUP } from "../../node/group.js";
import { ownerOf } from "../../node/idempotency.js";
import type { WorldNode } from "./world-node.js";

export class WorldViolation extends Error {
  override name = "WorldViolation";
  constructor(readonly kind: string, detail: string) {
    super(`${kind}: ${detail}`);
  }
}

function fingerprint(state: unknown): string {
  return JSON.stringify(state, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v));
}

export class WorldChecks {
  checks = 0;
  /** node/incarnation/group -> the applied index seen last. */
  private readonly appliedSeen = new Map<string, number>();

  /** Cheap checks, after every event. */
  afterEvent(nodes: readonly WorldNode[]): void {
    this.checks++;
    for (const n of nodes) {
      if (!n.serving()) continue;
      const byCollection = new Map<string, [Position, Position, number][]>();
      for (const s of n.node!.metaState().shards.values()) {
        if (s.retiredInto !== undefined || isEmptyRange(s.range)) continue;
        let ranges = byCollection.get(s.collection);
        if (ranges === undefined) byCollection.set(s.collection, (ranges = []));
        ranges.push([s.range.start, s.range.end, s.id]);
      }
      for (const ranges of byCollection.values()) {
        ranges.sort((a, b) => comparePositions(a[0], b[0]));
        for (let i = 1; i < ranges.length; i++) {
          const [prev, cur] = [ranges[i - 1]!, ranges[i]!];
          if (cur[0] < prev[1]) {
            throw new WorldViolation("one owner per range", `node ${n.id}'s map gives shards ${prev[2]} and ${cur[2]} overlapping ranges ${describeRange({ start: prev[0], end: prev[1] })} and ${describeRange({ start: cur[0], end: cur[1] })}`);
          }
        }
      }
    }
  }

  /** Replica agreement and applied indexes; walks every record, so the world runs it on a period. */
  replicas(nodes: readonly WorldNode[]): void {
    const byGroup = new Map<number, { node: number; applied: number; print: string }[]>();
    for (const n of nodes) {
      if (!n.serving()) continue;
      const node = n.node!;
      for (const g of [META_GROUP, ...node.status().groups.map((s) => s.shard)]) {
        const st = node.replicaState(g);
        if (st === undefined || st.applied === 0) continue;
        const key = `${n.id}/${n.incarnation}/${g}`;
        const prev = this.appliedSeen.get(key) ?? 0;
        if (st.applied < prev) throw new WorldViolation("applied index went back", `node ${n.id} shard ${g}: ${st.applied} < ${prev}`);
        this.appliedSeen.set(key, st.applied);
        if (st.shard !== null) {
          // One owner per range: a shard holds only records (and their outcomes) of its own range.
          for (const [key] of st.contents) {
            const id = ownerOf(key);
            if (!owns(st.shard.range, id)) {
              throw new WorldViolation("one owner per range", `shard ${g} on node ${n.id} holds ${JSON.stringify(id)} outside its range ${describeRange(st.shard.range)}`);
            }
          }
        }
        let list = byGroup.get(g);
        if (list === undefined) byGroup.set(g, (list = []));
        // The whole contents: orphan outcome keys (node/idempotency.ts), which replicas may hold and delete
        // differently, would break this, but only stores written before 2026-12-05 hold them, never the world's.
        list.push({ node: n.id, applied: st.applied, print: fingerprint([st.shard, st.contents]) });
      }
    }
    for (const [g, list] of byGroup) {
      for (let i = 0; i < list.length; i++) {
        for (let j = i + 1; j < list.length; j++) {
          const [a, b] = [list[i]!, list[j]!];
          if (a.applied === b.applied && a.print !== b.print) {
            throw new WorldViolation("replicas disagree", `shard ${g} on nodes ${a.node} and ${b.node} at applied index ${a.applied}`);
          }
        }
      }
    }
  }

  /** After healing: why the cluster is not whole yet, or null when every live shard is led and fully replicated. */
  static notWhole(nodes: readonly WorldNode[]): string | null {
    const members = nodes.filter((n) => !n.removed);
    const up = members.filter((n) => n.serving());
    if (up.length < members.length) return `${members.length - up.length} node(s) not running`;
    const meta = up[0]!.node!.metaState();
    if (meta.collections.size === 0 || meta.shards.size === 0) return "no collection in the shard map yet";
    const lost = up.find((n) => n.node!.leaderOf(META_GROUP) === 0);
    if (lost !== undefined) return `node ${lost.id} knows no metadata leader`;
    for (const s of meta.shards.values()) {
      if (s.retiredInto !== undefined) continue;
      // The placement driver keeps the settings' replication factor (the founders' collection starts wider).
      const rf = Math.min(currentSettings(meta).placement.replicationFactor, members.filter((n) => meta.nodes.get(n.id)?.worker === "ready").length);
      const voters = s.replicas.filter((r) => r.role === "voter");
      if (voters.length < rf) return `shard ${s.id} has ${voters.length} of ${rf} voters (${s.replicas.map((r) => `${r.node}:${r.role}`).join(" ")}, epoch ${s.epoch})`;
      const leader = up.find((n) => n.node!.hosts(s.id) && n.node!.leaderOf(s.id) === n.id);
      if (leader === undefined) return `shard ${s.id} has no leader`;
      const applied = leader.node!.replicaState(s.id)!.applied;
      for (const r of s.replicas) {
        const holder = up.find((n) => n.id === r.node);
        const st = holder?.node!.replicaState(s.id);
        if (st === undefined || st.applied < applied) return `shard ${s.id}'s replica on node ${r.node} is not caught up`;
      }
    }
    return null;
  }
}
