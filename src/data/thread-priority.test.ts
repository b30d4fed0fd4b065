import { test } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import { niceOf, niceThisThread, threadId } from "./thread-priority.js";

test("a worker thread lowers its own priority and not the loop's", { skip: process.platform !== "linux" ? "thread priorities are per thread only on Linux" : false }, async () => {
  const src = `
    const { parentPort } = require("node:worker_threads");
    import(${JSON.stringify(new URL("./thread-priority.js", import.meta.url).href)}).then((m) => {
      const why = m.niceThisThread(7);
      parentPort.postMessage({ why, tid: m.threadId() });
    });`;
  const w = new Worker(src, { eval: true });
  const { why, tid } = await new Promise<{ why: string | null; tid: number }>((resolve, reject) => {
    w.once("message", resolve);
    w.once("error", reject);
  });
  try {
    assert.equal(why, null);
    assert.notEqual(tid, threadId());
    assert.equal(niceOf(tid), 7, "the worker's nice value");
    assert.equal(niceOf(threadId()), 0, "the loop's is untouched");
  } finally {
    await w.terminate();
  }
  assert.throws(() => niceThisThread(20), /0\.\.19/);
  assert.equal(niceThisThread(0), null, "0 changes nothing");
});
