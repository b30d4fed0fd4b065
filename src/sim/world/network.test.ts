import { test } from "node:test";
import assert from "node:assert/strict";
import type { Envelope } from "../../transport/transport.js";
import { Rng } from "../../util/rng.js";
import { SimNetwork } from "./network.js";
import { SimScheduler } from "./scheduler.js";

function world(seed = 1) {
  const s = new SimScheduler();
  const net = new SimNetwork(s, new Rng(seed));
  const got = new Map<number, { from: number; envs: Envelope[] }[]>();
  const disconnects: [number, number][] = [];
  const t = [1, 2, 3].map((id) => {
    got.set(id, []);
    const tr = net.transportFor(id, {
      nodeId: id, listen: { host: "sim", port: id },
      onReceive: (from, _plane, envs) => got.get(id)!.push({ from, envs }),
      onDisconnect: (peer) => disconnects.push([id, peer]),
    });
    for (const p of [1, 2, 3]) if (p !== id) tr.setPeer(p, { host: "sim", port: p });
    return tr;
  });
  const run = async () => {
    for (let i = 0; i < 100_000; i++) if (!(await s.step())) return;
  };
  return { s, net, t, got, disconnects, run };
}

test("network: a turn's envelopes arrive as copies, one frame per peer and plane, in order", async () => {
  const w = world();
  const msg = { n: 1, bytes: new Uint8Array([1, 2, 3]) };
  w.t[0]!.send(2, "data", { group: 5, msg });
  w.t[0]!.send(2, "data", { group: 6, msg: { n: 2 } });
  w.t[0]!.flush();
  msg.n = 99;
  await w.run();
  const got = w.got.get(2)!;
  assert.equal(got.length, 1);
  assert.equal(got[0]!.from, 1);
  assert.deepEqual(got[0]!.envs.map((e) => e.group), [5, 6]);
  assert.equal((got[0]!.envs[0]!.msg as { n: number }).n, 1, "the receiver has its own copy");
  assert.deepEqual([...(got[0]!.envs[0]!.msg as { bytes: Uint8Array }).bytes], [1, 2, 3]);
});

test("network: partitions cut both ways until healed, telling nobody; a crashed node's peers are told, again on each send to it, and it hears nothing", async () => {
  const w = world();
  w.net.partition([[1], [2, 3]]);
  w.t[0]!.send(2, "control", { group: 1, msg: "a" });
  w.t[1]!.send(1, "control", { group: 1, msg: "b" });
  w.t[0]!.flush();
  w.t[1]!.flush();
  await w.run();
  assert.equal(w.got.get(1)!.length + w.got.get(2)!.length, 0);
  w.net.heal();
  w.t[0]!.send(2, "control", { group: 1, msg: "c" });
  w.t[0]!.flush();
  await w.run();
  assert.equal(w.got.get(2)!.length, 1);
  w.net.nodeDown(3);
  w.t[0]!.send(3, "control", { group: 1, msg: "d" });
  w.t[0]!.flush();
  await w.run();
  assert.equal(w.got.get(3)!.length, 0);
  // Told at the crash, and node 1 once more for its send to the dead node (a refused connection);
  // the sends across the partition told nobody.
  assert.deepEqual(w.disconnects.sort(), [[1, 3], [1, 3], [2, 3]]);
});

test("network: drops and duplicates follow their probabilities; node-level frames are never duplicated", async () => {
  const w = world(3);
  w.net.setLinkFaults({ dropProbability: 0.2, duplicateProbability: 0.1, reorder: true, delayMsMin: 1, delayMsMax: 10 });
  for (let i = 0; i < 5000; i++) {
    w.t[0]!.send(2, "data", { group: 7, msg: i });
    w.t[0]!.flush();
  }
  await w.run();
  const raft = w.got.get(2)!.length;
  assert.ok(raft > 5000 * 0.8 * 1.05 && raft < 5000 * 0.8 * 1.15, `raft frames delivered: ${raft}`);
  for (let i = 0; i < 2000; i++) {
    w.t[0]!.send(3, "data", { group: 0, msg: i });
    w.t[0]!.flush();
  }
  await w.run();
  const node = w.got.get(3)!.map((g) => g.envs[0]!.msg as number);
  assert.equal(new Set(node).size, node.length, "no node-level message twice");
  assert.ok(node.length < 2000 * 0.85, `drops hit node-level frames too (${node.length})`);
});
