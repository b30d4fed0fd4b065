import { test } from "node:test";
import assert from "node:assert/strict";
import { domainPenalty } from "./context.js";
import { INITIAL_PLACEMENT_STATE, type PlacementState, placementCycle } from "./scheduler.js";
import { DEFAULT_PLACEMENT, type NodeView, type PlacementConfig, type ShardView, validatePlacementConfig } from "./types.js";

function node(id: number, over: Partial<NodeView> = {}): NodeView {
  return { id, labels: { zone: `z${id % 3}`, host: `h${id}` }, state: "ready", health: "healthy", ...over };
}

function shards(n: number, nodes: number[]): ShardView[] {
  return Array.from({ length: n }, (_, i) => {
    const replicas = [0, 1, 2].map((j) => ({ node: nodes[(i + j) % nodes.length]!, role: "voter" as const, caughtUp: true }));
    return { id: i + 1, epoch: 1, replicas, leader: replicas[0]!.node, sizeBytes: 1 << 20, requestRate: 10 };
  });
}

const cfg: PlacementConfig = { ...DEFAULT_PLACEMENT, shardCooldownMs: 0 };

test("a dead node's replicas are replaced: a learner on a live node of another zone, then promotion, then removal", () => {
  const nodes = [1, 2, 3, 4, 5, 6].map((id) => node(id, id === 1 ? { health: "dead" } : {}));
  const view = { nodes, shards: shards(6, [1, 2, 3, 4, 5, 6]) };
  const r = placementCycle(view, INITIAL_PLACEMENT_STATE, cfg, 1000);
  const repairs = r.started.filter((o) => o.reason === "repair");
  assert.equal(repairs.length, 3, "every shard with a replica on node 1 is repaired");
  for (const o of repairs) {
    const shard = view.shards.find((s) => s.id === o.shard)!;
    assert.deepEqual(o.steps.map((s) => s.kind), ["add-learner", "promote", "remove-replica"]);
    const target = o.steps[0]!.kind === "add-learner" ? o.steps[0]!.node : 0;
    assert.ok(target !== 1 && !shard.replicas.some((x) => x.node === target));
    const zones = shard.replicas.filter((x) => x.node !== 1).map((x) => nodes[x.node - 1]!.labels.zone);
    assert.ok(!zones.includes(nodes[target - 1]!.labels.zone), `shard ${o.shard}: the new replica spreads over zones`);
  }
});

test("each shard is held to its collection's replication factor: more replicas are added, surplus ones removed, the rest follow the settings", () => {
  const nodes = [1, 2, 3, 4, 5, 6].map((id) => node(id));
  const view = { nodes, shards: shards(3, [1, 2, 3, 4, 5, 6]) };
  view.shards[0]!.replicationFactor = 5;
  view.shards[1]!.replicationFactor = 1;
  const r = placementCycle(view, INITIAL_PLACEMENT_STATE, cfg, 1000);
  const byShard = new Map(r.started.map((o) => [o.shard, o]));
  assert.equal(r.started.length, 2, "shard 3 (the settings' 3) is left alone");
  assert.deepEqual(byShard.get(1)?.steps.map((s) => s.kind), ["add-learner", "promote"], "shard 1 grows toward 5");
  const added = byShard.get(1)!.steps[0]!;
  assert.ok(added.kind === "add-learner" && !view.shards[0]!.replicas.some((x) => x.node === added.node), "on a node it is not on");
  assert.ok(byShard.get(2)?.steps.some((s) => s.kind === "remove-replica"), "shard 2 sheds a replica toward 1");
});

test("only ready, healthy nodes receive replicas", () => {
  const nodes = [node(1), node(2), node(3), node(4, { state: "joining" }), node(5, { health: "unhealthy" }), node(6, { state: "draining" }), node(7)];
  const view = { nodes, shards: shards(30, [1, 2, 3]) };
  let state: PlacementState = INITIAL_PLACEMENT_STATE;
  for (let t = 1; t <= 3; t++) {
    const r = placementCycle(view, state, cfg, t * 1000);
    state = r.state;
    for (const o of r.started) for (const s of o.steps) if (s.kind === "add-learner") assert.equal(s.node, 7, "only node 7 may receive");
  }
  assert.ok(state.operators.length > 0, "node 7 (empty) receives replicas");
});

test("a draining node hands over its leaderships first, then its replicas", () => {
  const nodes = [1, 2, 3, 4, 5, 6].map((id) => node(id, id === 2 ? { state: "draining" } : {}));
  const view = { nodes, shards: shards(12, [1, 2, 3, 4, 5, 6]) };
  const first = placementCycle(view, INITIAL_PLACEMENT_STATE, cfg, 1000);
  const drains = first.started.filter((o) => o.reason === "drain");
  assert.ok(drains.length > 0);
  assert.ok(drains.every((o) => o.steps.length === 1 && o.steps[0]!.kind === "transfer-leader"), "leaderships before replicas");
  // Once the node leads nothing, its replicas move.
  for (const s of view.shards) if (s.leader === 2) s.leader = s.replicas.find((r) => r.node !== 2)!.node;
  const second = placementCycle(view, { ...INITIAL_PLACEMENT_STATE, nextOperatorId: 100 }, cfg, 2000);
  const moves = second.started.filter((o) => o.reason === "drain");
  assert.ok(moves.length > 0 && moves.every((o) => o.steps.some((s) => s.kind === "remove-replica" && s.node === 2)));
});

test("rate limits hold: in-flight operators per node and in total, bytes moved per node per window", () => {
  const nodes = Array.from({ length: 8 }, (_, i) => node(i + 1));
  const view = { nodes, shards: shards(200, [1, 2, 3]) }; // 1 MiB each
  const limits = { ...cfg, maxMovesPerNode: 3, maxMovesTotal: 5, maxMoveBytesPerNodePerWindow: 4 << 20, moveCostMinBytes: 1 << 20, moveWindowMs: 60_000 };
  let state: PlacementState = INITIAL_PLACEMENT_STATE;
  const startedPerNode = new Map<number, number>();
  for (let t = 1; t <= 20; t++) {
    const r = placementCycle(view, { ...state, operators: [] }, limits, t * 1000); // operators "finish" at once
    state = r.state;
    assert.ok(r.started.length <= 5, "total limit");
    const perNode = new Map<number, number>();
    for (const o of r.started) for (const s of o.steps) if (s.kind === "add-learner" || s.kind === "remove-replica") perNode.set(s.node, (perNode.get(s.node) ?? 0) + 1);
    for (const [n, c] of perNode) {
      assert.ok(c <= 3, `node ${n}: ${c} operators at once`);
      startedPerNode.set(n, (startedPerNode.get(n) ?? 0) + c);
    }
  }
  assert.ok(startedPerNode.size > 0, "moves happened");
  for (const [n, c] of startedPerNode) assert.ok(c <= 4, `node ${n}: ${c} moves of 1 MiB within one 60 s window of 4 MiB`);
});

/** Moves a balancing run of 20 one-second cycles starts, operators finishing at once, over shards of `sizeBytes`. */
function movesStarted(sizeBytes: number, over: Partial<PlacementConfig>): number {
  const view = { nodes: Array.from({ length: 6 }, (_, i) => node(i + 1)), shards: shards(300, [1, 2, 3]).map((s) => ({ ...s, sizeBytes })) };
  const limits = { ...cfg, moveWindowMs: 60_000, ...over };
  let state: PlacementState = INITIAL_PLACEMENT_STATE;
  let moves = 0;
  for (let t = 1; t <= 20; t++) {
    const r = placementCycle(view, { ...state, operators: [] }, limits, t * 1000);
    state = r.state;
    moves += r.started.filter((o) => o.reason === "replica-balance").length;
  }
  return moves;
}

test("the limits count bytes: empty shards move by the hundred, large ones are throttled, one larger than the budget still moves alone", () => {
  const budget = { maxMoveBytesPerNodePerWindow: 64 << 20, moveCostMinBytes: 1 << 20 };
  const small = movesStarted(0, budget);
  const large = movesStarted(16 << 20, budget);
  const huge = movesStarted(256 << 20, budget);
  // Sources 1..3 each have 64 MiB of budget per window: 64 empty shards or 4 of 16 MiB each.
  assert.ok(small >= 100, `empty shards: ${small} moves`);
  assert.ok(large <= 12 && large >= 6, `16 MiB shards: ${large} moves`);
  assert.ok(huge >= 1 && huge <= 3, `256 MiB shards (over the whole budget): ${huge} moves, one per source per window`);
});

test("a dead node is not held to the per-node limits: its replicas are rebuilt as fast as the live targets allow", () => {
  const nodes = [1, 2, 3, 4].map((id) => node(id, id === 1 ? { health: "dead" } : {}));
  // 90 shards on nodes 1, 2, 3: each needs a replica on node 4 in place of node 1's.
  const view = { nodes, shards: shards(90, [1, 2, 3]).map((s) => ({ ...s, leader: s.replicas.find((r) => r.node !== 1)!.node })) };
  const limits = { ...cfg, maxMovesPerNode: 40, maxMovesTotal: 100 };
  const r = placementCycle(view, INITIAL_PLACEMENT_STATE, limits, 1000);
  const repairs = r.started.filter((o) => o.reason === "repair");
  assert.equal(repairs.length, 40, "node 4, the only target, takes as many as its limit allows");
  assert.ok(repairs.every((o) => o.steps.some((s) => s.kind === "add-learner" && s.node === 4)));
  // With two live targets twice as many start: were the dead node held to the limit, 40 in all.
  const five = [...nodes, node(5)];
  const r2 = placementCycle({ nodes: five, shards: view.shards }, INITIAL_PLACEMENT_STATE, limits, 1000);
  assert.equal(r2.started.filter((o) => o.reason === "repair").length, 80, "40 per live target, more than one node's limit in all");
});

test("failure domains: a shared host is never allowed; a shared zone costs more than a shared rack alone", () => {
  assert.equal(domainPenalty({ host: "a" }, [{ host: "a" }]), Infinity);
  assert.equal(domainPenalty({ zone: "z1", rack: "r1" }, [{ zone: "z2", rack: "r1" }]), 0, "racks are within zones");
  assert.equal(domainPenalty({ zone: "z1", rack: "r1" }, [{ zone: "z1", rack: "r2" }]), 100);
  assert.equal(domainPenalty({ zone: "z1", rack: "r1" }, [{ zone: "z1", rack: "r1" }]), 110);
  assert.equal(domainPenalty({}, [{}]), 0, "missing labels are domains of their own");
});

test("a configuration is validated before it applies, with every problem named", () => {
  assert.deepEqual(validatePlacementConfig(DEFAULT_PLACEMENT), []);
  const errors = validatePlacementConfig({ ...DEFAULT_PLACEMENT, replicationFactor: 0, hotNodeFactor: 1, maxMovesPerNode: 5000 });
  assert.equal(errors.length, 3, errors.join("; "));
  assert.ok(errors.some((e) => e.startsWith("replicationFactor")));
});

test("an operator whose next step needs a node that died is cancelled at once, so that repair can take the shard", () => {
  const nodes = [1, 2, 3, 4].map((id) => node(id));
  const view = { nodes, shards: shards(1, [1, 2, 3]) };
  const op = { id: 9, shard: 1, epoch: 1, reason: "leader-balance" as const, steps: [{ kind: "transfer-leader" as const, to: 2 }], stepIndex: 0, startedAtMs: 0, stepStartedAtMs: 0 };
  const state = { ...INITIAL_PLACEMENT_STATE, operators: [op], nextOperatorId: 10 };
  const alive = placementCycle(view, state, cfg, 1000);
  assert.deepEqual(alive.ended, [], "a live target: the operator runs on");
  nodes[1] = node(2, { health: "dead" });
  const r = placementCycle(view, state, cfg, 1000);
  assert.deepEqual(r.ended.map((e) => [e.op.id, e.outcome]), [[9, "cancelled"]]);
  assert.ok(r.started.some((o) => o.shard === 1 && o.reason === "repair"), "repair takes the shard in the same cycle");
});

test("a leadership transfer to a node that stopped answering is cancelled before the node is declared dead; a move to it waits", () => {
  const nodes = [1, 2, 3, 4].map((id) => node(id));
  const view = { nodes, shards: shards(1, [1, 2, 3]) };
  const transfer = { id: 9, shard: 1, epoch: 1, reason: "leader-balance" as const, steps: [{ kind: "transfer-leader" as const, to: 2 }], stepIndex: 0, startedAtMs: 0, stepStartedAtMs: 0 };
  const move = { ...transfer, id: 10, reason: "replica-balance" as const, steps: [{ kind: "add-learner" as const, node: 4 }] };
  nodes[1] = node(2, { health: "unhealthy" });
  nodes[3] = node(4, { health: "unhealthy" });
  const t = placementCycle(view, { ...INITIAL_PLACEMENT_STATE, operators: [transfer], nextOperatorId: 11 }, cfg, 1000);
  assert.deepEqual(t.ended.map((e) => [e.op.id, e.outcome]), [[9, "cancelled"]], "the shard is not held for a node that may be gone");
  const m = placementCycle(view, { ...INITIAL_PLACEMENT_STATE, operators: [move], nextOperatorId: 11 }, cfg, 1000);
  assert.deepEqual(m.ended, [], "a replica move rides out a pause: copying it again costs far more than waiting");
});

test("balancing backs off a shard while a replica of it catches up by snapshot; repair does not", () => {
  const nodes = [1, 2, 3, 4].map((id) => node(id));
  const view = { nodes, shards: shards(8, [1, 2, 3]).map((s) => ({ ...s, snapshotting: true })) };
  const busy = placementCycle(view, INITIAL_PLACEMENT_STATE, cfg, 1000);
  assert.deepEqual(busy.started.filter((o) => o.reason === "replica-balance"), [], "node 4 is empty, but every shard is snapshotting");
  const calm = placementCycle({ nodes, shards: shards(8, [1, 2, 3]) }, INITIAL_PLACEMENT_STATE, cfg, 1000);
  assert.ok(calm.started.some((o) => o.reason === "replica-balance"), "without snapshots, node 4 receives replicas");
  nodes[0] = node(1, { health: "dead" });
  const repair = placementCycle(view, INITIAL_PLACEMENT_STATE, cfg, 1000);
  assert.ok(repair.started.some((o) => o.reason === "repair"), "a dead node's replicas are rebuilt anyway");
});
