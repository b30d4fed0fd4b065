/**
 * bench:raw-reads: the read levels' throughput (bench:client's `levels` part) with a bare HTTP/1.1
 * client instead of `shoal/client`, to show how much of the follower-read gain a client's own cost per
 * request takes on a machine the client shares with the nodes. `--sockets` connections in all (spread
 * over the nodes for the "every node" rows), each with `--depth` gets outstanding, pipelined (HTTP/1.1:
 * answers come in order; the gets a batch of answers frees are written together). `--depth 1` is one get
 * per connection at a time, as `shoal/client` sends them. Gets of 1,000 records of `--value-bytes`.
 * Prints gets/s, each process's CPU, and the ratio to leader-only linearizable gets.
 *
 *   npm run bench:raw-reads [-- --sockets 9 --depth 7 --seconds 5 --rounds 2 --value-bytes 256]
 */
import { connect } from "node:net";
import { ProcCluster } from "../src/chaos/cluster.js";
import { ShoalClient } from "../src/client/index.js";
import { abandonOnExit, cpuSeconds, intArg, ledShards } from "./procs.js";

const args = process.argv.slice(2);
const sockets = intArg(args, "sockets", 9, 1, 1024);
const depth = intArg(args, "depth", 7, 1, 256);
const seconds = intArg(args, "seconds", 5, 1, 600);
const rounds = intArg(args, "rounds", 2, 1, 20);
const valueBytes = intArg(args, "value-bytes", 256, 1, 1 << 20);
const KEYS = 1000;
const WARMUP_MS = 3000;

interface Case { name: string; nodes: "leader" | "every"; query: string }
const CASES: Case[] = [
  { name: "linearizable, leader only", nodes: "leader", query: "consistency=linearizable" },
  { name: "bounded 1000 ms, every node", nodes: "every", query: "consistency=bounded&maxStalenessMs=1000" },
  { name: "eventual, every node", nodes: "every", query: "consistency=eventual" },
];

/** Gets through `sockets` connections to `ports` in turn, `depth` outstanding on each, for `ms`; returns the gets answered. */
function run(host: string, ports: number[], query: string, ms: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let answered = 0;
    let next = 0;
    let stopped = false;
    const request = () => `GET /v1/collections/default/records/k${next++ % KEYS}?${query} HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
    const all = Array.from({ length: sockets }, (_, i) => {
      const socket = connect(ports[i % ports.length]!, host);
      socket.setNoDelay(true);
      let buf: Buffer = Buffer.alloc(0);
      socket.on("connect", () => socket.write(Array.from({ length: depth }, request).join(""), "latin1"));
      socket.on("error", (e) => {
        if (!stopped) reject(e);
      });
      socket.on("data", (chunk: Buffer) => {
        buf = buf.byteLength === 0 ? chunk : Buffer.concat([buf, chunk]);
        let got = 0;
        for (;;) {
          const headEnd = buf.indexOf("\r\n\r\n");
          if (headEnd < 0) break;
          const head = buf.toString("latin1", 0, headEnd);
          const length = /\r\ncontent-length: *(\d+)/i.exec(head);
          if (!head.startsWith("HTTP/1.1 200 ") || length === null) {
            stopped = true;
            reject(new Error(`not a get's answer: ${head.slice(0, 200)}`));
            return;
          }
          const end = headEnd + 4 + Number(length[1]);
          if (buf.byteLength < end) break;
          buf = buf.subarray(end);
          got++;
        }
        answered += got;
        if (!stopped && got > 0) socket.write(Array.from({ length: got }, request).join(""), "latin1");
      });
      return socket;
    });
    setTimeout(() => {
      stopped = true;
      for (const s of all) s.destroy();
      resolve(answered);
    }, ms);
  });
}

async function main(): Promise<void> {
  console.log(`bench:raw-reads: 3 nodes, RF 3, 1 shard, ${sockets} connections with ${depth} get(s) outstanding on each, ${seconds} s a cell, ${rounds} round(s)`);
  const c = await ProcCluster.start(3, 1);
  abandonOnExit(c);
  try {
    const url = (id: number) => `http://${c.host(id)}:${c.http.get(id)}`;
    const leader = (await ledShards(c, "default"))[0]!.leader;
    const loader = new ShoalClient({ endpoints: [url(1)] });
    for (let i = 0; i < KEYS; i++) await loader.collection("default").put(`k${i}`, { v: "x".repeat(valueBytes) });
    loader.close();
    const host = c.host(1);
    const portsOf = (x: Case) => (x.nodes === "leader" ? [leader] : [1, 2, 3]).map((id) => c.http.get(id)!);
    const pids = [1, 2, 3].map((id) => c.pid(id)!);
    for (const x of CASES) await run(host, portsOf(x), x.query, WARMUP_MS);
    const cells = new Map<string, { gets: number; nodeCpuS: number[]; clientCpuS: number }>();
    for (let round = 0; round < rounds; round++) {
      for (const x of CASES) {
        const cell = cells.get(x.name) ?? { gets: 0, nodeCpuS: [0, 0, 0], clientCpuS: 0 };
        cells.set(x.name, cell);
        const nodeBefore = pids.map(cpuSeconds);
        const clientBefore = process.cpuUsage();
        const gets = await run(host, portsOf(x), x.query, seconds * 1000);
        pids.forEach((pid, i) => (cell.nodeCpuS[i]! += cpuSeconds(pid) - nodeBefore[i]!));
        const used = process.cpuUsage(clientBefore);
        cell.clientCpuS += (used.user + used.system) / 1e6;
        cell.gets += gets;
        process.stderr.write(`round ${round + 1}: ${x.name}: ${(gets / seconds).toFixed(0)} gets/s\n`);
      }
    }
    const total = rounds * seconds;
    const base = cells.get(CASES[0]!.name)!.gets;
    console.log(`\nleader of the shard: node ${leader}\n`);
    console.log("| get | gets/s | x leader-only | CPU % nodes 1 / 2 / 3 | CPU % client | node CPU us per get | client CPU us per get |\n|---|---:|---:|---:|---:|---:|---:|");
    for (const x of CASES) {
      const cell = cells.get(x.name)!;
      const nodesS = cell.nodeCpuS.reduce((a, b) => a + b, 0);
      console.log(`| ${x.name} | ${(cell.gets / total).toFixed(0)} | ${(cell.gets / base).toFixed(2)} | ${cell.nodeCpuS.map((s) => ((100 * s) / total).toFixed(0)).join(" / ")} | ` +
        `${((100 * cell.clientCpuS) / total).toFixed(0)} | ${((1e6 * nodesS) / cell.gets).toFixed(0)} | ${((1e6 * cell.clientCpuS) / cell.gets).toFixed(1)} |`);
    }
  } finally {
    await c.destroy();
  }
}

await main();
