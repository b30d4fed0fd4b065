/** The `shoal` command line without a cluster: its help, its input checks, its answers to unusual servers, its tables. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { type Server, createServer } from "node:http";
import type { Command } from "commander";
import { ID_PATTERN } from "../api/server.js";
import { statusTable } from "./client.js";
import { RECORD_ID, buildProgram } from "./main.js";
import { freePorts, shoal } from "./testing.js";

// An endpoint set in the developer's shell must not stand in for the ones these tests name.
const { SHOAL_ENDPOINT: _, ...env } = process.env;

/** Runs `shoal ARGS` to its end (or a 15 s deadline), asynchronously so a server in this process can answer it. */
function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [shoal, ...args], { timeout: 15_000, env }, (_err, stdout, stderr) => {
      resolve({ code: child.exitCode, stdout, stderr });
    });
  });
}

function* commandTree(cmd: Command, path: string): Generator<[string, Command]> {
  yield [path, cmd];
  for (const sub of cmd.commands) yield* commandTree(sub, `${path} ${sub.name()}`);
}

test("every command, argument and option of shoal has help text", () => {
  const missing: string[] = [];
  for (const [path, cmd] of commandTree(buildProgram(), "shoal")) {
    if (cmd.description().trim() === "") missing.push(path);
    for (const a of cmd.registeredArguments) if (a.description.trim() === "") missing.push(`${path} <${a.name()}>`);
    for (const o of cmd.options) if (o.description.trim() === "") missing.push(`${path} ${o.flags}`);
  }
  assert.deepEqual(missing, []);
});

test("shoal demo offers --fresh", () => {
  const demo = buildProgram().commands.find((c) => c.name() === "demo")!;
  assert.ok(demo.options.some((o) => o.long === "--fresh" && o.isBoolean()));
});

test("the CLI's record id pattern is the server's", () => {
  assert.equal(RECORD_ID.source, ID_PATTERN);
});

test("bad input exits 2 with one line naming the argument, before any server is asked", async () => {
  const cases: [string[], RegExp][] = [
    [["put", "bad id!", "{}"], /argument 'id'.*1-256 characters/],
    [["put", "x".repeat(257), "{}"], /argument 'id'/],
    [["put", "x", "{not json"], /argument 'payload'.*JSON/],
    [["put", "x", "{}", "--if-version", "abc"], /--if-version.*non-negative integer/],
    [["del", "x", "--if-version", "-1"], /--if-version.*non-negative integer/],
    [["get", "x", "--endpoint", "notaurl"], /--endpoint.*http\(s\) URL/],
    [["status", "--endpoint", "ftp://host"], /--endpoint.*http\(s\) URL/],
    [["config", "set", "bogus"], /argument 'assignments'.*NAME=NUMBER/],
    [["config", "set", "replicationFactor=Infinity"], /argument 'assignments'.*finite/],
    [["config", "rollback", "0"], /argument 'version'.*positive integer/],
    [["node", "drain", "two"], /argument 'id'.*positive integer/],
    [["shard", "move", "1", "--from", "2", "--to", "1.5"], /--to.*positive integer/],
    [["operator", "cancel", "0"], /argument 'id'.*positive integer/],
    [["get"], /missing required argument 'id'/],
  ];
  // Nothing listens at the endpoint: reaching it would exit 1 instead.
  const [port] = await freePorts(1);
  for (const [args, message] of cases) {
    const r = await cli(...args, ...(args.includes("--endpoint") ? [] : ["--endpoint", `http://127.0.0.1:${port}`]));
    assert.equal(r.code, 2, `shoal ${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message, `shoal ${args.join(" ")}`);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
});

test("a node nobody runs: exit 1 with cannot reach and a hint", async () => {
  const [port] = await freePorts(1);
  const r = await cli("put", "x", "{}", "--endpoint", `http://127.0.0.1:${port}`);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`cannot reach http://127\\.0\\.0\\.1:${port}: connection refused \\(is a node running\\? start one with: npx shoal demo\\)`));
});

/** A stand-in node answering every request with `status` and `body`. */
async function fakeNode(status: number, body: string, type = "application/json"): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => req.resume().on("end", () => res.writeHead(status, { "content-type": type }).end(body)));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server };
}

async function against(status: number, body: string, ...args: string[]) {
  const node = await fakeNode(status, body, body.startsWith("<") ? "text/html" : "application/json");
  try {
    return await cli(...args, "--endpoint", node.url);
  } finally {
    node.server.close();
  }
}

test("an error answer that is not JSON (a proxy's page) is shown, not a parse stack", async () => {
  const page = `<!DOCTYPE html>\n<html><body>${"Bad Gateway ".repeat(40)}</body></html>`;
  const r = await against(502, page, "get", "x");
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `error 502: ${page.replace(/\s+/g, " ").slice(0, 200)}\n`);
});

test("shoal del says whether there was a record; --json prints the answer", async () => {
  const gone = await against(200, '{"version":7,"deleted":true}', "del", "a:b");
  assert.deepEqual([gone.code, gone.stdout], [0, "deleted a:b (version 7)\n"]);
  const absent = await against(200, '{"version":7,"deleted":false}', "del", "a:b");
  assert.deepEqual([absent.code, absent.stdout], [0, "a:b did not exist; nothing deleted\n"]);
  const json = await against(200, '{"version":7,"deleted":false}', "del", "a:b", "--json");
  assert.deepEqual(JSON.parse(json.stdout), { version: 7, deleted: false });
});

test("shoal put and get print the answer as indented JSON", async () => {
  const put = await against(200, '{"version":1}', "put", "x", '{"a":1}', "--if-version", "0");
  assert.deepEqual([put.code, put.stdout], [0, '{\n  "version": 1\n}\n']);
  const get = await against(200, '{"id":"x","payload":{"a":1},"version":1}', "get", "x", "--json");
  assert.deepEqual([get.code, get.stdout], [0, '{\n  "id": "x",\n  "payload": {\n    "a": 1\n  },\n  "version": 1\n}\n']);
});

test("the status table keeps its columns aligned whatever the roles", () => {
  const roles = ["leader", "follower", "candidate", "pre-candidate", "learner"];
  const lines = statusTable(roles.map((role, i) => ({ shard: i + 1, role, leader: 2, term: 10 ** i, commit: 123456, applied: 7, voters: [1, 2, 3] }))).split("\n");
  assert.equal(lines.length, roles.length + 1);
  const starts = (line: string) => [...line.matchAll(/\S+/g)].map((m) => m.index);
  for (const line of lines) assert.deepEqual(starts(line), starts(lines[0]!), line);
  assert.match(lines[4]!, /^4\s+pre-candidate\s+2\s+1000\s+123456\s+7\s+1,2,3$/);
});
