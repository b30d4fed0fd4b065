/**
 * Scans paged while shards split and merge (issue 11, point 5): every record that exists throughout a
 * scan is returned exactly once. Each test drives one suspected hole by hand (the shard agent is off, so
 * nothing moves unless the test moves it), on a 3-node in-process cluster with the API on every node.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { META_GROUP, type MultiRaftNode } from "../node/multi-raft.js";
import { stopLeftovers, waitFor } from "../node/testing.js";
import { Role } from "../raft/index.js";
import { type ApiCluster, startApiCluster } from "./testing.js";

after(stopLeftovers);

const PAGES_MAX = 10_000;

interface Page { records: { id: string; version: number }[]; cursor: string | null }

/** Pages through every record by `app`; throws on a failed page. */
async function scanAll(app: FastifyInstance, limit: number, between?: (page: number) => Promise<void>): Promise<{ ids: string[]; pages: Page[] }> {
  const ids: string[] = [];
  const pages: Page[] = [];
  let cursor: string | null = null;
  for (let n = 0; n < PAGES_MAX; n++) {
    const r: { statusCode: number; body: string; json(): unknown } = await app.inject({ url: `/v1/collections/default/records?limit=${limit}${cursor === null ? "" : `&cursor=${cursor}`}` });
    assert.equal(r.statusCode, 200, r.body);
    const page = r.json() as Page;
    pages.push(page);
    ids.push(...page.records.map((x) => x.id));
    cursor = page.cursor;
    if (cursor === null) return { ids, pages };
    await between?.(n);
  }
  throw new Error(`more than ${PAGES_MAX} pages`);
}

/** The ids a scan must return: each exactly once, in id order. */
function assertExactlyOnce(got: string[], want: Iterable<string>, what: string): void {
  const sorted = [...want].sort();
  const seen = new Map<string, number>();
  for (const id of got) seen.set(id, (seen.get(id) ?? 0) + 1);
  const dupes = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
  const missing = sorted.filter((id) => !seen.has(id));
  assert.deepEqual({ dupes, missing }, { dupes: [], missing: [] }, what);
  assert.deepEqual(got, [...got].sort(), `${what}: in id order`);
}

async function cluster(shards: number): Promise<ApiCluster> {
  const ac = await startApiCluster(3, shards, { agents: false });
  await waitFor("the shard map recorded everywhere", () => [...ac.c.nodes.values()].every((n) => n.metaState().collections.has("default")));
  await waitFor("a leader for every shard", () => [...ac.c.nodes.values()].every((n) => n.status().groups.every((g) => g.lead !== 0)));
  return ac;
}

async function writeRecords(ac: ApiCluster, count: number): Promise<string[]> {
  const gw = ac.gateways.get(1)!;
  const ids = Array.from({ length: count }, (_, i) => `r${String(i).padStart(3, "0")}`);
  for (const id of ids) assert.ok((await gw.put(id, { id })).ok);
  return ids;
}

function isLeader(node: MultiRaftNode, group: number): boolean {
  return group === META_GROUP ? node.metaStatus().role === Role.Leader : node.status().groups.find((g) => g.shard === group)?.role === Role.Leader;
}

/** Moves the group's leadership to node `to`. */
async function lead(ac: ApiCluster, group: number, to: number): Promise<void> {
  for (let attempt = 0; attempt < 10 && !isLeader(ac.c.nodes.get(to)!, group); attempt++) {
    await waitFor(`a leader of ${group}`, () => [...ac.c.nodes.values()].some((n) => isLeader(n, group)));
    const from = [...ac.c.nodes.values()].find((n) => isLeader(n, group))!;
    await from.transferLeadershipAndWait(group, to);
  }
  assert.ok(isLeader(ac.c.nodes.get(to)!, group), `node ${to} leads group ${group}`);
}

/** The live shards of the map on node 1, by id. */
function liveShards(node: MultiRaftNode): number[] {
  return [...node.metaState().shards.values()].filter((s) => s.retiredInto === undefined).map((s) => s.id).sort((a, b) => a - b);
}

test("pages of every length return every record once, also when a page ends exactly at a shard's last record or the merged page is exactly full", async () => {
  const ac = await cluster(3);
  try {
    const ids = await writeRecords(ac, 24);
    // The last record of each shard, in id order: pages that end on one of these end at a shard's end.
    const node = ac.c.nodes.get(1)!;
    const lastOfShard = new Set([1, 2, 3].map((g) => ids.filter((id) => node.shardOf(id) === g).at(-1)!));
    let endedAtShardEnd = 0;
    for (let limit = 1; limit <= ids.length + 1; limit++) {
      const { ids: got, pages } = await scanAll(ac.apps.get(1 + (limit % 3))!, limit);
      assertExactlyOnce(got, ids, `limit ${limit}`);
      for (const [i, p] of pages.entries()) {
        assert.ok(p.records.length <= limit);
        // A page is full unless it is the last; and the last page is never empty unless it is the only one.
        if (p.cursor !== null) assert.equal(p.records.length, limit, `limit ${limit}: page ${i} is not the last, yet not full`);
        if (i > 0) assert.ok(p.records.length > 0, `limit ${limit}: an empty last page (the cursor before it promised more)`);
        if (p.cursor !== null && lastOfShard.has(p.records.at(-1)!.id)) endedAtShardEnd++;
      }
      if (limit === ids.length) assert.deepEqual([pages.length, pages[0]!.cursor], [1, null], "exactly full: one page, no cursor");
    }
    assert.ok(endedAtShardEnd > 0, "some page ended exactly at a shard's last record");
  } finally {
    await ac.stop();
  }
});

test("a split applied by the replicas but not yet in the shard map: the new shard's records are still scanned", async () => {
  const ac = await cluster(2);
  try {
    const ids = await writeRecords(ac, 40);
    // No shard agent: the split is applied by shard 1's replicas and never recorded in the map.
    const split = await ac.apps.get(1)!.inject({ method: "POST", url: "/v1/cluster/shards/1/split" });
    assert.equal(split.statusCode, 200, split.body);
    const child = (split.json() as { child: number }).child;
    await waitFor("every node hosts the child", () => [...ac.c.nodes.values()].every((n) => n.hosts(child)));
    assert.deepEqual(liveShards(ac.c.nodes.get(1)!), [1, 2], "the map does not know the child");
    for (const [id, app] of ac.apps) assertExactlyOnce((await scanAll(app, 7)).ids, ids, `through node ${id}`);
  } finally {
    await ac.stop();
  }
});

/** Freezes shard `from` and has shard `into` absorb it, as the shard agent would, without recording the merge. */
async function absorbByHand(ac: ApiCluster, leader: number, from: number, into: number): Promise<void> {
  const node = ac.c.nodes.get(leader)!;
  const gw = ac.gateways.get(leader)!;
  assert.ok((await node.propose(from, { op: "freeze", into })).ok);
  const st = node.shardState(from);
  const absorbed = await gw.absorb(into, from, st.range.start, st.range.end, node.shardContents(from, 100_000), (st.versionBase ?? 0) + st.frozen!.index);
  assert.ok(absorbed.ok, JSON.stringify(absorbed));
}

test("a frozen merge source and its target both hold the source's records: each is scanned once", async () => {
  const ac = await cluster(2);
  try {
    const ids = await writeRecords(ac, 40);
    await lead(ac, 2, 1);
    await lead(ac, 1, 1);
    await absorbByHand(ac, 1, 2, 1);
    await waitFor("every replica absorbed", () => [...ac.c.nodes.values()].every((n) => n.shardState(1).range.end === n.shardState(2).range.end));
    assert.deepEqual(liveShards(ac.c.nodes.get(1)!), [1, 2], "the map still lists both");
    for (const [id, app] of ac.apps) assertExactlyOnce((await scanAll(app, 7)).ids, ids, `through node ${id}`);
    // A write to a moved id now goes to the target (the gateway waits for the map): recorded, then scanned once.
    const end = ac.c.nodes.get(1)!.shardState(1).range.end;
    assert.ok((await ac.gateways.get(1)!.proposeMeta({ kind: "merge-shards", into: 1, from: 2, end, atMs: Date.now() })).ok);
    await waitFor("the merge recorded everywhere", () => [...ac.c.nodes.values()].every((n) => liveShards(n).join() === "1"));
    for (const [id, app] of ac.apps) assertExactlyOnce((await scanAll(app, 7)).ids, ids, `through node ${id}, merge recorded`);
  } finally {
    await ac.stop();
  }
});

/**
 * Node 3 stops hearing node 1 (node 1's frames to node 3 are dropped), which leads the shards; the
 * metadata is led by node 2, so node 3 keeps learning the map while its replicas of the shards lag.
 */
async function lagNode3(ac: ApiCluster): Promise<void> {
  await lead(ac, META_GROUP, 2);
  await lead(ac, 1, 1);
  await lead(ac, 2, 1);
  ac.c.nodes.get(1)!.transport.setFaults({ cut: new Set([3]) });
}

test("a replica that has not applied an absorb while the map retired the source: the scan never misses the source's records", async () => {
  const ac = await cluster(2);
  try {
    const ids = await writeRecords(ac, 40);
    await lagNode3(ac);
    await absorbByHand(ac, 1, 2, 1);
    const end = ac.c.nodes.get(1)!.shardState(1).range.end;
    assert.ok((await ac.gateways.get(1)!.proposeMeta({ kind: "merge-shards", into: 1, from: 2, end, atMs: Date.now() })).ok);
    const n3 = ac.c.nodes.get(3)!;
    await waitFor("node 3 knows the merge", () => liveShards(n3).join() === "1");
    assert.notEqual(n3.shardState(1).range.end, end, "node 3's replica of the target has not absorbed");
    // Correct or refused (retryable), never a page that silently misses records.
    const r = await ac.apps.get(3)!.inject({ url: "/v1/collections/default/records?limit=1000" });
    if (r.statusCode === 200) assertExactlyOnce((r.json() as Page).records.map((x) => x.id), ids, "through the lagging node");
    else assert.ok([503, 504].includes(r.statusCode), r.body);
    ac.c.nodes.get(1)!.transport.setFaults(null);
    assertExactlyOnce((await scanAll(ac.apps.get(3)!, 1000)).ids, ids, "through node 3, healed");
  } finally {
    await ac.stop();
  }
});

test("a shard in the map before a lagging node created it (its parent there still holds the records): each record is scanned once", async () => {
  const ac = await cluster(2);
  try {
    const ids = await writeRecords(ac, 40);
    // Node 1 lags: shard 1 led by node 3, whose frames to node 1 are dropped; the metadata led by node 2.
    await lead(ac, META_GROUP, 2);
    await lead(ac, 1, 3);
    ac.c.nodes.get(3)!.transport.setFaults({ cut: new Set([1]) });
    const split = await ac.apps.get(2)!.inject({ method: "POST", url: "/v1/cluster/shards/1/split" });
    assert.equal(split.statusCode, 200, split.body);
    const child = (split.json() as { child: number }).child;
    const n3 = ac.c.nodes.get(3)!;
    await waitFor("node 3 applied the split", () => n3.hosts(child));
    const sp = n3.shardState(1).splits.at(-1)!;
    assert.ok((await ac.gateways.get(3)!.proposeMeta({ kind: "split-shard", shard: 1, child, at: sp.at, end: sp.end, index: sp.index, atMs: Date.now() })).ok);
    const n1 = ac.c.nodes.get(1)!;
    await waitFor("node 1 knows the split", () => liveShards(n1).includes(child));
    assert.ok(!n1.hosts(child), "node 1 has not applied the split");
    const r = await ac.apps.get(1)!.inject({ url: "/v1/collections/default/records?limit=1000" });
    if (r.statusCode === 200) assertExactlyOnce((r.json() as Page).records.map((x) => x.id), ids, "through the lagging node");
    else assert.ok([503, 504].includes(r.statusCode), r.body);
    n3.transport.setFaults(null);
    assertExactlyOnce((await scanAll(ac.apps.get(1)!, 1000)).ids, ids, "through node 1, healed");
  } finally {
    await ac.stop();
  }
});

test("a scan paged while shards split and merge through the API returns every record once", async () => {
  const ac = await startApiCluster(3, 2);
  try {
    await waitFor("the shard map recorded everywhere", () => [...ac.c.nodes.values()].every((n) => n.metaState().collections.has("default")));
    const ids = await writeRecords(ac, 40);
    // Operators go to the metadata leader's API: its map is the newest, so fewer are refused as stale.
    const admin = () => ac.apps.get([...ac.c.nodes].find(([, n]) => isLeader(n, META_GROUP))?.[0] ?? 1)!;
    // Between pages: split the shard with the widest range, or merge the highest shard into its neighbour.
    // Operators may be refused (busy, changed since listed, asked mid-election): the scan is what is tested.
    const done = { splits: 0, merges: 0 };
    const operate = async (page: number) => {
      const shards = (((await admin().inject({ url: "/v1/cluster/shards" })).json()) as { shards: { shard: number; range: [number, number] }[] }).shards;
      const widest = [...shards].sort((a, b) => (b.range[1] - b.range[0]) - (a.range[1] - a.range[0]))[0]!;
      const highest = [...shards].sort((a, b) => b.range[0] - a.range[0])[0]!;
      const split = page % 2 === 0 || shards.length <= 2;
      // waitMs: an operator still running on the shard (the last page's) is waited for, not refused.
      const r = await admin().inject({ method: "POST", url: `/v1/cluster/shards/${split ? widest.shard : highest.shard}/${split ? "split" : "merge"}?waitMs=5000` });
      if (r.statusCode === 200) done[split ? "splits" : "merges"]++;
    };
    for (const [round, limit] of [[0, 4], [1, 7]] as const) {
      const { ids: got } = await scanAll(ac.apps.get(1 + (round % 3))!, limit, operate);
      assertExactlyOnce(got, ids, `round ${round}, limit ${limit}`);
    }
    assert.ok(done.splits >= 2 && done.merges >= 2, `splits and merges happened under the scans: ${JSON.stringify(done)}`);
  } finally {
    await ac.stop();
  }
});

test("the shard map never shows an empty or overlapping range while shards split and merge", async () => {
  const ac = await startApiCluster(3, 2);
  try {
    await waitFor("the shard map recorded everywhere", () => [...ac.c.nodes.values()].every((n) => n.metaState().collections.has("default")));
    await writeRecords(ac, 20);
    let polls = 0;
    let stop = false;
    const problems: string[] = [];
    const poll = async () => {
      for (let n = 0; !stop && n < 100_000; n++) {
        for (const [id, app] of ac.apps) {
          const shards = ((await app.inject({ url: "/v1/cluster/shards" })).json() as { shards: { shard: number; range: [number, number] }[] }).shards;
          polls++;
          const sorted = [...shards].sort((a, b) => a.range[0] - b.range[0]);
          let at = 0;
          for (const s of sorted) {
            if (s.range[1] <= s.range[0]) problems.push(`node ${id}: shard ${s.shard} has the empty range [${s.range.join(", ")})`);
            if (s.range[0] !== at) problems.push(`node ${id}: shard ${s.shard} starts at ${s.range[0]}, not ${at} (${s.range[0] < at ? "overlap" : "gap"})`);
            at = s.range[1];
          }
          if (at !== 2 ** 32) problems.push(`node ${id}: the ranges end at ${at}`);
        }
        // Injected requests resolve without leaving the event loop: let the nodes' turns and timers run.
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    const polling = poll();
    // The watch stream of node 1 too: every shard it shows has a non-empty range; a merged one is removed.
    const url = await ac.apps.get(1)!.listen({ host: "127.0.0.1", port: 0 });
    const stream = await fetch(`${url}/v1/cluster/watch`);
    const reader = stream.body!.getReader();
    const events: { event: string; data: { shard?: number; range?: [number, number]; removed?: boolean; retiredInto?: number; shards?: { shard: number; range: [number, number] }[] } }[] = [];
    const reading = (async () => {
      const decoder = new TextDecoder();
      let text = "";
      for (let n = 0; n < 100_000; n++) {
        const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
        if (done === true) return;
        text += decoder.decode(value, { stream: true });
        for (let end = text.indexOf("\n\n"); end !== -1; end = text.indexOf("\n\n")) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event !== undefined && data !== undefined) events.push({ event, data: JSON.parse(data) as (typeof events)[number]["data"] });
        }
      }
    })();
    const admin = ac.apps.get(1)!;
    try {
      for (let round = 0; round < 3; round++) {
        const split = await admin.inject({ method: "POST", url: "/v1/cluster/shards/2/split" });
        assert.equal(split.statusCode, 200, split.body);
        const child = (split.json() as { child: number }).child;
        await waitFor("the split recorded", () => [...ac.c.nodes.values()].every((n) => liveShards(n).includes(child)));
        await waitFor("the child merged back", async () => {
          const merge = await admin.inject({ method: "POST", url: `/v1/cluster/shards/${child}/merge` });
          assert.ok(merge.statusCode === 200 || merge.statusCode === 409, merge.body);
          return merge.statusCode === 200;
        });
        await waitFor("the merge recorded", () => [...ac.c.nodes.values()].every((n) => !liveShards(n).includes(child)));
      }
      await waitFor("the watch stream told the last merge", () => events.filter((e) => e.data.removed === true).length >= 3);
    } finally {
      stop = true;
      await polling;
      await reader.cancel();
      await reading;
    }
    for (const e of events) {
      const shown = e.event === "snapshot" ? e.data.shards! : e.event === "shard" && e.data.removed !== true ? [e.data as { shard: number; range: [number, number] }] : [];
      for (const sh of shown) if (sh.range[1] <= sh.range[0]) problems.push(`the watch stream showed shard ${sh.shard} with the empty range [${sh.range.join(", ")})`);
    }
    assert.ok(events.filter((e) => e.data.removed === true).every((e) => e.data.retiredInto !== undefined), "a merged shard is told as retired into its target");
    assert.deepEqual(problems.slice(0, 5), []);
    assert.ok(polls > 30, `polled ${polls} times`);
  } finally {
    await ac.stop();
  }
});
