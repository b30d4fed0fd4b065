import { test } from "node:test";
import assert from "node:assert/strict";
import { type Component, ShoalNode } from "./shoal-node.js";

function recorder(log: string[], name: string, failStart = false): Component {
  return {
    name,
    start: async () => {
      await Promise.resolve();
      if (failStart) throw new Error(`${name} cannot start`);
      log.push(`start ${name}`);
    },
    stop: () => void log.push(`stop ${name}`),
  };
}

test("components start in order and stop in reverse order, once", async () => {
  const log: string[] = [];
  const n = new ShoalNode(["a", "b", "c"].map((x) => recorder(log, x)));
  await n.start();
  await n.stop();
  await n.stop();
  assert.deepEqual(log, ["start a", "start b", "start c", "stop c", "stop b", "stop a"]);
  await assert.rejects(n.start(), /starts once/);
});

test("a component that fails to start stops those started before it, in reverse, and the failure is rethrown", async () => {
  const log: string[] = [];
  const n = new ShoalNode([recorder(log, "a"), recorder(log, "b"), recorder(log, "c", true), recorder(log, "d")]);
  await assert.rejects(n.start(), /c cannot start/);
  assert.deepEqual(log, ["start a", "start b", "stop b", "stop a"]);
});

test("a component whose stop fails does not keep the others running", async () => {
  const log: string[] = [];
  const bad: Component = { name: "bad", start: () => undefined, stop: () => { throw new Error("stuck"); } };
  const n = new ShoalNode([recorder(log, "a"), bad, recorder(log, "c")]);
  await n.start();
  await assert.rejects(n.stop(), /stuck/);
  assert.deepEqual(log, ["start a", "start c", "stop c", "stop a"]);
});
