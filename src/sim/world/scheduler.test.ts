import { test } from "node:test";
import assert from "node:assert/strict";
import { SimScheduler } from "./scheduler.js";

async function drain(s: SimScheduler, untilMs = Infinity): Promise<void> {
  for (let i = 0; i < 100_000 && s.nextDueMs() <= untilMs; i++) if (!(await s.step())) return;
}

test("scheduler: timers fire in virtual time order, ties in the order set; intervals repeat until cleared", async () => {
  const s = new SimScheduler();
  const clock = s.clockFor("n1");
  const seen: string[] = [];
  clock.setTimeout(() => seen.push(`b@${clock.nowMs()}`), 20);
  clock.setTimeout(() => seen.push(`a@${clock.nowMs()}`), 10);
  clock.setTimeout(() => seen.push(`c@${clock.nowMs()}`), 20);
  const every = clock.setInterval(() => seen.push(`i@${clock.nowMs()}`), 15);
  const cancelled = clock.setTimeout(() => seen.push("never"), 5);
  clock.clear(cancelled);
  await drain(s, 40);
  clock.clear(every);
  await drain(s);
  assert.deepEqual(seen, ["a@10", "i@15", "b@20", "c@20", "i@30"]);
  assert.equal(clock.wallMs() - clock.nowMs(), 1_700_000_000_000);
});

test("scheduler: the promise chains an event starts finish before the next event", async () => {
  const s = new SimScheduler();
  const clock = s.clockFor("n1");
  const seen: string[] = [];
  clock.setTimeout(() => {
    void (async () => {
      for (let i = 0; i < 5; i++) await Promise.resolve();
      seen.push("chain done");
    })();
  }, 1);
  clock.setTimeout(() => seen.push("next event"), 1);
  await drain(s);
  assert.deepEqual(seen, ["chain done", "next event"]);
});

test("scheduler: a crashed owner's timers never fire, nor do timers its dead clock sets later; clocks jump forward", async () => {
  const s = new SimScheduler();
  const old = s.clockFor("n1");
  const seen: string[] = [];
  old.setTimeout(() => seen.push("old"), 10);
  s.cancelOwner("n1");
  old.setTimeout(() => seen.push("old, set after the crash"), 1);
  const fresh = s.clockFor("n1");
  fresh.setTimeout(() => seen.push("new"), 10);
  s.jumpClock("n1", 500);
  await drain(s);
  assert.deepEqual(seen, ["new"]);
  assert.equal(fresh.nowMs(), s.nowMs + 500);
});

test("scheduler: the same work gives the same order", async () => {
  const run = async () => {
    const s = new SimScheduler();
    const order: number[] = [];
    for (let n = 0; n < 3; n++) {
      const c = s.clockFor(`n${n}`);
      c.setInterval(() => order.push(n), 7 + n);
      c.defer(() => order.push(10 + n));
    }
    await drain(s, 100);
    return order;
  };
  assert.deepEqual(await run(), await run());
});
