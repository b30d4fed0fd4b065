import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const shoal = fileURLToPath(new URL("../../../bin/shoal.js", import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [shoal, "check-history", ...args], { encoding: "utf8" });
const dir = mkdtempSync(join(tmpdir(), "shoal-check-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, lines: object[]) => {
  const p = join(dir, name);
  writeFileSync(p, lines.map((l) => JSON.stringify(l)).join("\n"));
  return p;
};

test("check-history exits 0 for a linearizable history", () => {
  const r = run(file("ok.jsonl", [
    { process: 0, type: "invoke", f: "write", value: 1 }, { process: 0, type: "ok", f: "write", value: 1 },
    { process: 1, type: "invoke", f: "read", value: null }, { process: 1, type: "ok", f: "read", value: 1 },
  ]));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^linearizable/);
});

test("check-history exits 1 and lists the operations that cannot be linearized", () => {
  const r = run(file("bad.jsonl", [
    { process: 0, type: "invoke", f: "put", key: "k", value: "a" }, { process: 0, type: "ok", f: "put", key: "k", value: "a" },
    { process: 1, type: "invoke", f: "get", key: "k", value: null }, { process: 1, type: "ok", f: "get", key: "k", value: "" },
  ]), "--model", "kv");
  assert.equal(r.status, 1);
  assert.match(r.stdout, /not linearizable/);
  assert.match(r.stdout, /cannot be linearized/);
  assert.match(r.stdout, /process 1: get "k"/);
});

test("check-history exits 2 for unreadable input, with a message", () => {
  const missing = run(join(dir, "nope.jsonl"));
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /cannot read/);
  const p = join(dir, "garbage.txt");
  writeFileSync(p, "hello\n");
  const garbage = run(p);
  assert.equal(garbage.status, 2);
  assert.match(garbage.stderr, /unrecognized history format/);
  const badTimeout = run(p, "--timeout", "-1");
  assert.equal(badTimeout.status, 2);
});
