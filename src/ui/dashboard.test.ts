/**
 * The dashboard in a real browser (Debian's chromium, driven by playwright-core) against 3 real nodes:
 * the page shows the three nodes and every shard, each node's request chart, hot shards and shard
 * sizes under load, reflects a merge, a leader transfer, a drain and a settings change started from the
 * page (and shows the API's refusal of a bad move and a bad value), and shows an alert once a node is
 * killed. Screenshots go to dist/test-output/ui/ (their
 * paths are printed). Skipped, saying so, only where no Chromium is installed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { api, kill9, startCluster, stop } from "../cli/testing.js";

const CHROMIUM = process.env["SHOAL_CHROMIUM"] ?? "/usr/bin/chromium";
const SHOTS = fileURLToPath(new URL("../../test-output/ui/", import.meta.url));
/** How long the page may take to show a change made through it or to the cluster. */
const SHOWN_MS = 20_000;

test("the dashboard shows the live cluster: nodes, shards, collections, load per node and hot shards; a merge, a leader transfer, a drain and a settings change from the page, a refusal shown; an alert when a node is killed", async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no Chromium at ${CHROMIUM} (Debian package chromium; or set SHOAL_CHROMIUM)`);
    return;
  }
  mkdirSync(SHOTS, { recursive: true });
  const c = await startCluster();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    // The machines are offline: without these Chromium keeps trying Google's services.
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const shot = async (name: string) => {
    const path = `${SHOTS}${name}.png`;
    await page.screenshot({ path, fullPage: true });
    t.diagnostic(`screenshot: ${path}`);
  };
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("dialog", (d) => void d.accept()); // every control asks for confirmation first
  try {
    const shards = (await api<{ shards: { shard: number; leader: number; replicas: { node: number; role: string }[] }[] }>(c, 1, "GET", "/v1/cluster/shards")).body.shards;
    await page.goto(`http://127.0.0.1:${c.http.get(1)}/ui`);
    await page.locator("#nodes tbody tr").nth(2).waitFor({ timeout: SHOWN_MS });
    assert.equal(await page.locator("#nodes tbody tr").count(), 3);
    assert.equal(await page.locator("#shards tbody tr").count(), shards.length);
    for (const s of shards) assert.equal(await page.locator(`#shards tr[data-shard="${s.shard}"]`).count(), 1, `shard ${s.shard} shown`);
    await page.locator("header .live[data-live=true]").waitFor({ timeout: SHOWN_MS }); // the watch stream is open
    await shot("1-cluster");

    // Load through every node, kept up while the page is read: each node's chart, the hot shards (a rate
    // since the leader's previous report: zero again once the load stops) and the shards' sizes show it.
    let loading = true;
    let written = 0;
    const load = (async () => {
      for (let i = 0; loading || i < 90; i++) {
        assert.equal((await api(c, 1 + (i % 3), "PUT", `/v1/collections/default/records/k${i % 200}`, { payload: { i } })).status, 200);
        written++;
      }
    })();
    // (Page-side expressions are strings: this file is compiled without the DOM's types.)
    await page.waitForFunction(`(() => {
      const captions = [...document.querySelectorAll('#requests figure[data-chart="rate"] figcaption')].map((e) => Number(/max ([\\d.]+)/.exec(e.textContent)?.[1] ?? 0));
      return captions.length === 3 && captions.every((x) => x > 0);
    })()`, undefined, { timeout: SHOWN_MS });
    await page.locator("#hot-shards tr[data-hot-shard]").first().waitFor({ timeout: SHOWN_MS });
    await page.waitForFunction(`[...document.querySelectorAll('#shards [data-field="size"]')].some((e) => /rec/.test(e.textContent))`, undefined, { timeout: SHOWN_MS });
    assert.equal(await page.locator('#requests svg polyline').count(), 6, "a rate and a latency chart per node");
    await shot("2-load");
    loading = false;
    await load;
    t.diagnostic(`puts while the page was read: ${written}`);

    // A merge from the page (the placement driver's own operators may hold the shard a moment: asked again then).
    const upper = Math.max(...shards.map((x) => x.shard));
    for (let attempt = 0; ; attempt++) {
      await page.locator(`#shards tr[data-shard="${upper}"] button[data-action="merge"]`).click();
      const notice = page.locator("#notice", { hasText: `merge shard ${upper}` });
      await notice.waitFor({ timeout: SHOWN_MS });
      const text = await notice.innerText();
      if (!/shard_busy/.test(text) || attempt === 10) {
        assert.match(text, /done/);
        break;
      }
    }
    await page.waitForFunction(`document.querySelectorAll("#shards tbody tr").length === 1`, undefined, { timeout: SHOWN_MS });
    // A replica move the API refuses (every node holds one already): the page shows why.
    const left = (await api<{ shards: typeof shards }>(c, 1, "GET", "/v1/cluster/shards")).body.shards;
    assert.equal(left.length, 1);
    await page.locator('#move select[name="shard"]').selectOption(String(left[0]!.shard));
    await page.locator('#move input[name="from"]').fill(String(left[0]!.replicas[0]!.node));
    await page.locator('#move input[name="to"]').fill(String(left[0]!.replicas[1]!.node));
    await page.locator('#move button[data-action="move"]').click();
    await page.locator("#notice.error", { hasText: "replica_exists" }).waitFor({ timeout: SHOWN_MS });
    await shot("3-merged-move-refused");

    // A leader transfer from the page: the shard's row shows the new leader.
    const s = left[0]!;
    const to = s.replicas.find((r) => r.role === "voter" && r.node !== s.leader)!.node;
    await page.locator(`#shards tr[data-shard="${s.shard}"] button[data-action="transfer"][data-to="${to}"]`).click();
    await page.locator(`#shards tr[data-shard="${s.shard}"] [data-field="leader"]`, { hasText: String(to) }).waitFor({ timeout: SHOWN_MS });
    await shot("4-leader-transferred");

    // A drain from the page: node 3's worker state turns to draining.
    await page.locator('#nodes tr[data-node="3"] button[data-action="drain"]').click();
    await page.locator('#nodes tr[data-node="3"] [data-field="worker"]', { hasText: "draining" }).waitFor({ timeout: SHOWN_MS });
    assert.equal((await api<{ nodes: { id: number; worker: string }[] }>(c, 1, "GET", "/v1/cluster/nodes")).body.nodes.find((n) => n.id === 3)?.worker, "draining");
    await shot("5-node-3-draining");

    // A setting changed from the page: a bad value shows the API's refusal; a good one a new version.
    const version = Number((await page.locator('#settings [data-field="version"]').innerText()).replace(/\D/g, ""));
    await page.locator('#settings select[name="setting"]').selectOption("maxMovesTotal");
    await page.locator('#settings input[name="value"]').fill("0");
    await page.locator('#settings button[data-action="set"]').click();
    await page.locator("#notice.error", { hasText: "maxMovesTotal must be a positive integer" }).waitFor({ timeout: SHOWN_MS });
    await page.locator('#settings input[name="value"]').fill("150");
    await page.locator('#settings input[name="note"]').fill("slower moves, from the dashboard");
    await page.locator('#settings button[data-action="set"]').click();
    await page.locator('#settings [data-field="version"]', { hasText: `version ${version + 1}` }).waitFor({ timeout: SHOWN_MS });
    assert.equal(await page.locator('#settings tr[data-setting="maxMovesTotal"] td').nth(1).innerText(), "150");
    assert.match(await page.locator("#settings").innerText(), /slower moves, from the dashboard\s+maxMovesTotal: 1024 → 150/);
    assert.equal(await page.locator('#collections tr[data-collection="default"]').count(), 1);
    await shot("6-setting-changed");

    // A node killed: an alert shows (nodes judged dead after 2 s here, not the default 15 s).
    const config = (await api<{ version: number }>(c, 1, "GET", "/v1/cluster/config")).body;
    assert.equal((await api(c, 1, "PUT", "/v1/cluster/config", { baseVersion: config.version, settings: { nodeDeadAfterMs: 2000 }, note: "dashboard test" })).status, 200);
    await kill9(c, 2);
    await page.locator("#alerts .alert").first().waitFor({ timeout: SHOWN_MS });
    assert.match(await page.locator("#alerts").innerText(), /node 2/);
    await page.locator('#nodes tr[data-node="2"] [data-field="health"]', { hasText: "dead" }).waitFor({ timeout: SHOWN_MS });
    await shot("7-node-2-killed");
    assert.deepEqual(errors, [], "no script errors on the page");
  } finally {
    await browser.close();
    await stop(c);
  }
});

test("the dashboard's page, its bundled script and style are served by every node; an unknown file is a 404 in the error envelope", async () => {
  const c = await startCluster();
  try {
    const base = `http://127.0.0.1:${c.http.get(1)}`;
    const page = await fetch(`${base}/ui/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<script type="module" src="\/ui\/app\.js">/);
    const app = await fetch(`${base}/ui/app.js`);
    assert.equal(app.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.ok((await app.text()).length > 5000, "the app comes bundled with its library");
    const missing = await fetch(`${base}/ui/nope.js`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, "route_not_found");
    assert.equal((await fetch(`${base}/ui/style.css`)).headers.get("content-type"), "text/css; charset=utf-8");
    assert.equal((await fetch(`${base}/ui`, { redirect: "manual" })).headers.get("location"), "/ui/");
  } finally {
    await stop(c);
  }
});
