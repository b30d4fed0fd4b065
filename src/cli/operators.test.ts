/**
 * `shoal shard split | merge | move --wait` against a scripted server: the ids and ranges a split or
 * merge answers are printed, and a command waiting for an operator in its way shows its progress.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { type IncomingMessage, type ServerResponse, createServer } from "node:http";
import { shoal } from "./testing.js";

const { SHOAL_ENDPOINT: _, ...env } = process.env;

function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [shoal, ...args], { timeout: 30_000, env }, (_err, stdout, stderr) => {
      resolve({ code: child.exitCode, stdout, stderr });
    });
  });
}

/** Runs the CLI against a server answering by `handle`; the requests it saw, in order. */
async function against(handle: (req: IncomingMessage, res: ServerResponse, seen: string[]) => void, ...args: string[]) {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    req.on("end", () => handle(req, res, seen));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const port = (server.address() as { port: number }).port;
    return { ...(await cli(...args, "--endpoint", `http://127.0.0.1:${port}`)), seen };
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};

test("shoal shard split and merge print the shards made and retired, with their ranges; --json prints the answer", async () => {
  const splitBody = { shard: 1, range: [0, 2 ** 31], child: 5, childRange: [2 ** 31, 2 ** 32], operator: 9 };
  const split = await against((_req, res) => json(res, 200, splitBody), "shard", "split", "1");
  assert.deepEqual([split.code, split.stdout], [0, "split shard 1: shard 1 keeps 0x00000000-0x7fffffff, new shard 5 holds 0x80000000-0xffffffff\n"]);
  assert.deepEqual(split.seen, ["POST /v1/cluster/shards/1/split"], "no wait asked: none sent");
  const splitJson = await against((_req, res) => json(res, 200, splitBody), "shard", "split", "1", "--json");
  assert.deepEqual(JSON.parse(splitJson.stdout), splitBody);
  const mergeBody = { shard: 5, into: 1, retired: 5, surviving: 1, range: [0, 2 ** 32], operator: 10 };
  const merge = await against((_req, res) => json(res, 200, mergeBody), "shard", "merge", "5");
  assert.deepEqual([merge.code, merge.stdout], [0,
    "merging shard 5 into shard 1 (operator 10): shard 5 is retired once shard 1 has absorbed it; shard 1 then holds 0x00000000-0xffffffff\n"]);
});

test("shoal shard merge --wait sends the wait to the node and shows the progress of the operator in its way; a refusal names it", async () => {
  const repair = (stepIndex: number) => ({
    id: 12, shard: 2, reason: "repair", status: "running", stepIndex, startedAtMs: 0, updatedAtMs: 0, epoch: 1,
    steps: [{ kind: "add-learner", node: 4 }, { kind: "promote", node: 4 }],
  });
  let polls = 0;
  let merge: ServerResponse | null = null;
  // The merge is answered only once the CLI has polled the operators three times: the repair advances a
  // step at the second poll and is gone at the third, as if it ended.
  const r = await against((req, res) => {
    if (req.url === "/v1/cluster/shards") return json(res, 200, { shards: [{ shard: 2, range: [0, 100] }, { shard: 3, range: [100, 200] }] });
    if (req.url?.startsWith("/v1/cluster/shards/3/merge")) {
      merge = res;
      return;
    }
    polls++;
    json(res, 200, { operators: polls === 1 ? [repair(0)] : polls === 2 ? [repair(1)] : [] });
    if (polls === 3) json(merge!, 200, { shard: 3, into: 2, retired: 3, surviving: 2, range: [0, 200], operator: 13 });
  }, "shard", "merge", "3", "--wait", "60000");
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.seen.includes("POST /v1/cluster/shards/3/merge?waitMs=60000"), JSON.stringify(r.seen));
  const lines = r.stderr.trim().split("\n");
  assert.match(lines[0]!, /^waiting \(\d+ s\) for operator 12 on shard 2 \(repair\): step 1\/2 add-learner 4$/, r.stderr);
  assert.match(lines[1]!, /^waiting \(\d+ s\) for operator 12 on shard 2 \(repair\): step 2\/2 promote 4$/, r.stderr);
  assert.match(lines[2]!, /the shard is free/, r.stderr);
  assert.match(r.stdout, /^merging shard 3 into shard 2 \(operator 13\)/);

  const busy = { error: { code: "shard_busy", message: "shard 2 has operator 12 running (add-replica, repair; step 2/2 promote 4; started 1970-01-01T00:00:00.000Z): wait for it (waitMs, --wait) or cancel it" } };
  const refused = await against((_req, res) => json(res, 409, busy), "shard", "move", "2", "--from", "1", "--to", "4");
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /error 409 shard_busy: shard 2 has operator 12 running \(add-replica, repair; step 2\/2 promote 4; started/);
  const bad = await cli("shard", "split", "1", "--wait", "999999");
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--wait.*At most 240000 ms/);
});
