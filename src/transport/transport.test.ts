import { test } from "node:test";
import assert from "node:assert/strict";
import { createConnection } from "node:net";
import { type Envelope, type Plane, Transport } from "./transport.js";

/** Waits until cond() holds, polling, or fails after the deadline. */
async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Received { from: number; plane: Plane; envs: Envelope[] }

async function pair(opts: { testFaults?: boolean } = {}) {
  const got: Received[] = [];
  const a = new Transport({ nodeId: 1, listen: { host: "127.0.0.1", port: 0 }, onReceive: () => undefined, ...opts });
  const b = new Transport({ nodeId: 2, listen: { host: "127.0.0.1", port: 0 }, onReceive: (from, plane, envs) => got.push({ from, plane, envs }), ...opts });
  const pa = await a.start();
  const pb = await b.start();
  a.setPeer(2, { host: "127.0.0.1", port: pb });
  b.setPeer(1, { host: "127.0.0.1", port: pa });
  return { a, b, got, pb };
}

test("messages of one loop turn go to a peer as one frame per plane, on separate connections", async () => {
  const { a, b, got } = await pair();
  for (let i = 0; i < 50; i++) a.send(2, "data", { group: i % 5, msg: { i } });
  a.send(2, "control", { group: 0, msg: "heartbeats" });
  a.send(2, "bulk", { group: 3, msg: { chunk: new Uint8Array(1000) } });
  a.flush();
  await waitFor("three frames", () => got.length === 3);
  const data = got.find((r) => r.plane === "data")!;
  assert.equal(data.from, 1);
  assert.equal(data.envs.length, 50, "all 50 in one frame");
  assert.deepEqual(data.envs.map((e) => (e.msg as { i: number }).i), [...Array(50).keys()], "in order");
  assert.equal(got.find((r) => r.plane === "bulk")!.envs[0]!.group, 3);
  assert.deepEqual(a.stats().map((s) => s.plane).sort(), ["bulk", "control", "data"]);
  await a.stop();
  await b.stop();
});

test("a peer that restarts is reconnected to, and later messages arrive", async () => {
  const { a, b, got, pb } = await pair();
  a.send(2, "data", { group: 1, msg: "before" });
  a.flush();
  await waitFor("first message", () => got.length === 1);
  await b.stop();
  const got2: Received[] = [];
  const b2 = new Transport({ nodeId: 2, listen: { host: "127.0.0.1", port: pb }, onReceive: (from, plane, envs) => got2.push({ from, plane, envs }) });
  await b2.start();
  // Frames sent into the broken connection may be lost (Raft retransmits); keep sending until one arrives.
  await waitFor("delivery after the restart", () => {
    a.send(2, "data", { group: 1, msg: "after" });
    a.flush();
    return got2.length > 0;
  });
  assert.equal(got2[0]!.envs[0]!.msg, "after");
  await a.stop();
  await b2.stop();
});

test("an unreachable peer opens the breaker: sends are refused at once, and reported", async () => {
  let unreachable = 0;
  const a = new Transport({
    nodeId: 1, listen: { host: "127.0.0.1", port: 0 }, onReceive: () => undefined,
    onUnreachable: () => unreachable++,
    breaker: { baseDelayMs: 1, maxDelayMs: 4, failuresToOpen: 3, cooldownMs: 60_000 },
  });
  await a.start();
  a.setPeer(9, { host: "127.0.0.1", port: 1 }); // nothing listens on port 1
  a.send(9, "control", { group: 0, msg: "ping" });
  a.flush();
  await waitFor("the breaker to open", () => a.breakerState(9) === "open");
  assert.equal(a.send(9, "control", { group: 0, msg: "ping" }), false);
  assert.ok(unreachable >= 1);
  await a.stop();
});

test("the queue of a connection is bounded: frames beyond it are dropped and counted", async () => {
  let unreachable = 0;
  const a = new Transport({
    nodeId: 1, listen: { host: "127.0.0.1", port: 0 }, onReceive: () => undefined, onUnreachable: () => unreachable++,
    queueBytes: { bulk: 10_000 }, breaker: { baseDelayMs: 1000, maxDelayMs: 1000, failuresToOpen: 100, cooldownMs: 1000 },
  });
  await a.start();
  a.setPeer(9, { host: "127.0.0.1", port: 1 });
  for (let i = 0; i < 10; i++) {
    a.send(9, "bulk", { group: 1, msg: new Uint8Array(3000) });
    a.flush();
  }
  const s = a.stats().find((x) => x.plane === "bulk")!;
  assert.ok(s.queuedBytes <= 10_000);
  assert.equal(s.queuedFrames, 3);
  assert.equal(s.framesDropped, 7);
  assert.equal(unreachable, 7);
  await a.stop();
});

test("fault hooks cut links and drop frames in test mode only", async () => {
  const { a, b, got } = await pair({ testFaults: true });
  a.setFaults({ cut: new Set([2]) });
  a.send(2, "data", { group: 1, msg: "lost" });
  a.flush();
  a.setFaults({ dropRate: 1 });
  a.send(2, "data", { group: 1, msg: "lost too" });
  a.flush();
  a.setFaults(null);
  a.send(2, "data", { group: 1, msg: "arrives" });
  a.flush();
  await waitFor("the frame after healing", () => got.length === 1);
  assert.equal(got[0]!.envs[0]!.msg, "arrives");
  const prod = new Transport({ nodeId: 5, listen: { host: "127.0.0.1", port: 0 }, onReceive: () => undefined });
  assert.throws(() => prod.setFaults({ dropRate: 1 }), /test mode/);
  await a.stop();
  await b.stop();
});

test("a connection that speaks garbage is closed; the transport keeps serving others", async () => {
  const { a, b, got, pb } = await pair();
  const bad = createConnection({ host: "127.0.0.1", port: pb });
  await new Promise((r) => bad.once("connect", r));
  const closed = new Promise((r) => bad.once("close", r));
  bad.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
  await closed;
  a.send(2, "control", { group: 0, msg: "still fine" });
  a.flush();
  await waitFor("delivery", () => got.length === 1);
  await a.stop();
  await b.stop();
});

test("an envelope the codec cannot encode is dropped and counted; the rest of its frame still goes", async () => {
  const { a, b, got } = await pair();
  let deep: unknown = 0;
  for (let i = 0; i < 100_000; i++) deep = [deep];
  a.send(2, "data", { group: 1, msg: { ok: 1 } });
  a.send(2, "data", { group: 1, msg: deep });
  a.send(2, "data", { group: 1, msg: { ok: 2 } });
  a.flush();
  await waitFor("the two encodable envelopes", () => got.flatMap((r) => r.envs).length === 2);
  assert.deepEqual(got.flatMap((r) => r.envs).map((e) => (e.msg as { ok: number }).ok), [1, 2]);
  assert.equal(a.unencodableEnvelopes, 1);
  await a.stop();
  await b.stop();
});

test("a peer address the socket layer refuses (port out of range) is unreachable, not an exception", async () => {
  const { a, b } = await pair();
  a.setPeer(3, { host: "127.0.0.1", port: 65_536 });
  assert.equal(a.send(3, "data", { group: 1, msg: "x" }), true);
  assert.doesNotThrow(() => a.flush());
  await waitFor("the frame dropped as unreachable", () => a.stats().some((s) => s.peer === 3 && s.framesDropped > 0));
  await a.stop();
  await b.stop();
});
