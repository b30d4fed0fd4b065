import { test } from "node:test";
import assert from "node:assert/strict";
import { checkOperations, kvModel, operationsFromEvents, parseHistory, registerModel } from "./index.js";

const jsonl = (...lines: object[]) => lines.map((l) => JSON.stringify(l)).join("\n");

test("a stale read after a completed write is not linearizable; the report names the blocked read", () => {
  const h = jsonl(
    { process: 0, type: "invoke", f: "write", value: 1 },
    { process: 0, type: "ok", f: "write", value: 1 },
    { process: 1, type: "invoke", f: "read", value: null },
    { process: 1, type: "ok", f: "read", value: null },
  );
  const r = checkOperations(registerModel, operationsFromEvents(parseHistory(h)));
  assert.equal(r.verdict, "not-linearizable");
  assert.equal(r.failure!.stuck[0]!.f, "read");
});

test("concurrent operations may take effect in either order", () => {
  const h = jsonl(
    { process: 0, type: "invoke", f: "write", value: 1 },
    { process: 1, type: "invoke", f: "read", value: null },
    { process: 1, type: "ok", f: "read", value: 1 },
    { process: 0, type: "ok", f: "write", value: 1 },
  );
  assert.equal(checkOperations(registerModel, operationsFromEvents(parseHistory(h))).verdict, "linearizable");
});

test("an operation with an unknown outcome stays open to the end of the history", () => {
  const h = jsonl(
    { process: 0, type: "invoke", f: "write", value: 7 },
    { process: 0, type: "info", f: "write", value: null },
    { process: 1, type: "invoke", f: "read", value: null },
    { process: 1, type: "ok", f: "read", value: null },
    { process: 1, type: "invoke", f: "read", value: null },
    { process: 1, type: "ok", f: "read", value: 7 },
  );
  assert.equal(checkOperations(registerModel, operationsFromEvents(parseHistory(h))).verdict, "linearizable");
});

test("a failed cas took effect without changing anything; a failed write never happened", () => {
  const h = jsonl(
    { process: 0, type: "invoke", f: "write", value: 1 },
    { process: 0, type: "ok", f: "write", value: 1 },
    { process: 1, type: "invoke", f: "cas", value: [1, 2] },
    { process: 1, type: "fail", f: "cas", value: [1, 2] },
  );
  assert.equal(checkOperations(registerModel, operationsFromEvents(parseHistory(h))).verdict, "not-linearizable",
    "the cas saw 1, so its compare cannot have failed");
  const h2 = jsonl(
    { process: 0, type: "invoke", f: "write", value: 5 },
    { process: 0, type: "fail", f: "write", value: 5 },
    { process: 1, type: "invoke", f: "read", value: null },
    { process: 1, type: "ok", f: "read", value: null },
  );
  assert.equal(checkOperations(registerModel, operationsFromEvents(parseHistory(h2))).verdict, "linearizable");
});

test("kv histories are checked key by key: append and get", () => {
  const edn = [
    '{:process 0, :type :invoke, :f :append, :key "a", :value "x"}',
    '{:process 0, :type :ok, :f :append, :key "a", :value "x"}',
    '{:process 1, :type :invoke, :f :append, :key "b", :value "y"}',
    '{:process 1, :type :ok, :f :append, :key "b", :value "y"}',
    '{:process 2, :type :invoke, :f :get, :key "a", :value nil}',
    '{:process 2, :type :ok, :f :get, :key "a", :value "x"}',
  ].join("\n");
  const r = checkOperations(kvModel, operationsFromEvents(parseHistory(edn)));
  assert.equal(r.verdict, "linearizable");
  assert.equal(r.partitions, 2);
});

test("a time bound yields unknown instead of a verdict", () => {
  const lines: object[] = [];
  for (let p = 0; p < 12; p++) lines.push({ process: p, type: "invoke", f: "write", value: p });
  for (let p = 0; p < 12; p++) lines.push({ process: p, type: "info", f: "write", value: null });
  lines.push({ process: 99, type: "invoke", f: "read", value: null }, { process: 99, type: "ok", f: "read", value: 1000 });
  const r = checkOperations(registerModel, operationsFromEvents(parseHistory(jsonl(...lines))), { shouldStop: () => true });
  assert.equal(r.verdict, "unknown");
});

test("malformed histories are rejected with the line at fault", () => {
  assert.throws(() => parseHistory('{"process": 0, "type": "invoke", "f": "write", "value": 1}\n{oops'), /line 2/);
  assert.throws(() => parseHistory('{"process": 0, "type": "begin", "f": "write", "value": 1}'), /unknown type/);
  assert.throws(() => operationsFromEvents(parseHistory(jsonl({ process: 0, type: "ok", f: "read", value: 1 }))), /without an invocation/);
});
