/**
 * Runs `shoal check-history` (the real command, one process per file) over every history of the
 * external corpus and compares each exit status with the expected verdict. Prints a summary with the
 * total wall time; exits non-zero on any mismatch.
 *
 *   npm run bench:corpus
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const corpus = process.env.SHOAL_CORPUS ?? resolve(root, "..", "shared", "corpus", "linearizability", "porcupine");
if (!existsSync(join(corpus, "expected.json"))) {
  console.error(`corpus not found at ${corpus} (set SHOAL_CORPUS)`);
  process.exit(2);
}
const expected = JSON.parse(readFileSync(join(corpus, "expected.json"), "utf8")) as Record<string, string>;
const started = Date.now();
let wrong = 0;
let slowest = { file: "", ms: 0 };
const counts = { linearizable: 0, "not-linearizable": 0 };
for (const [file, verdict] of Object.entries(expected)) {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [join(root, "bin", "shoal.js"), "check-history", join(corpus, file)], { encoding: "utf8" });
  const ms = Date.now() - t0;
  if (ms > slowest.ms) slowest = { file, ms };
  const got = r.status === 0 ? "linearizable" : r.status === 1 ? "not-linearizable" : `exit ${r.status}`;
  if (got !== verdict) {
    wrong++;
    console.log(`MISMATCH ${file}: expected ${verdict}, got ${got}\n${r.stdout}${r.stderr}`);
  } else {
    counts[verdict as keyof typeof counts]++;
  }
}
const total = (Date.now() - started) / 1000;
console.log(`| files | linearizable | not linearizable | wrong | total wall time | slowest file |`);
console.log(`|---|---|---|---|---|---|`);
console.log(`| ${Object.keys(expected).length} | ${counts.linearizable} | ${counts["not-linearizable"]} | ${wrong} | ${total.toFixed(1)} s | ${slowest.file} (${slowest.ms} ms) |`);
process.exit(wrong === 0 ? 0 : 1);
