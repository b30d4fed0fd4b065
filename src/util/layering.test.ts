/**
 * The import directions of docs/architecture.md ("Import directions"), enforced: the table there is
 * parsed, so the page and this check cannot drift apart. Every relative import of a non-test source file
 * under src/ that crosses from one room (top-level folder) into another must be allowed by the table.
 * Test files may reach further (a test of node/ may drive the simulator), so they are not checked.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

// dist/src/util/ -> the checkout root: the check reads the TypeScript sources, not the build.
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const srcDir = join(root, "src");

/** Room -> rooms it may import, from the architecture page's table (`| \`room\` | \`a\`, \`b\` |`). */
function allowedImports(): Map<string, Set<string>> {
  const page = readFileSync(join(root, "docs/architecture.md"), "utf8");
  const section = page.split(/^## /m).find((s) => s.startsWith("Import directions"));
  assert.ok(section !== undefined, "docs/architecture.md has an \"Import directions\" section");
  const allowed = new Map<string, Set<string>>();
  for (const line of section.split("\n")) {
    const m = /^\|\s*`([a-z]+)\/`\s*\|([^|]*)\|/.exec(line);
    if (m === null) continue;
    const targets = [...m[2]!.matchAll(/`([a-z]+)\/`/g)].map((t) => t[1]!);
    allowed.set(m[1]!, new Set(targets));
  }
  assert.ok(allowed.size >= 10, `the table names every room (found ${allowed.size})`);
  return allowed;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (name.endsWith(".ts") && !name.endsWith(".test.ts") && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

const roomOf = (file: string) => relative(srcDir, file).split(sep)[0]!;

test("imports between rooms go only where docs/architecture.md says they may", () => {
  const allowed = allowedImports();
  const rooms = readdirSync(srcDir).filter((n) => statSync(join(srcDir, n)).isDirectory());
  for (const room of rooms) assert.ok(allowed.has(room), `docs/architecture.md's import table has a row for src/${room}/`);
  const broken: string[] = [];
  let crossings = 0;
  for (const file of sourceFiles(srcDir)) {
    const from = roomOf(file);
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
      const target = resolve(dirname(file), m[1]!);
      if (!target.startsWith(srcDir + sep)) continue;
      const to = roomOf(target);
      if (to === from) continue;
      crossings++;
      if (!allowed.get(from)!.has(to)) broken.push(`${relative(root, file)} imports ${m[1]} (${from}/ -> ${to}/)`);
    }
  }
  assert.ok(crossings > 50, `the check saw the imports (${crossings} crossings)`);
  assert.deepEqual(broken, [], "imports the architecture page does not allow");
});

test("outside raft/, code goes through raft/index.js and the RaftNode queries, never into Raft's internals", () => {
  const broken: string[] = [];
  const all = (dir: string): string[] => readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? all(p) : name.endsWith(".ts") && !name.endsWith(".d.ts") ? [p] : [];
  });
  let files = 0;
  for (const file of all(srcDir)) {
    if (roomOf(file) === "raft" || file === fileURLToPath(import.meta.url).replace(/^(.*)\/dist\/src\/(.*)\.js$/, "$1/src/$2.ts")) continue;
    files++;
    const text = readFileSync(file, "utf8");
    const isTest = file.endsWith(".test.ts");
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
      const target = relative(srcDir, resolve(dirname(file), m[1]!)).split(sep);
      // Tests may use raft/testing.js (the in-memory cluster); everything else comes from the index.
      if (target[0] === "raft" && target[1] !== "index.js" && !(isTest && target[1] === "testing.js")) {
        broken.push(`${relative(root, file)} imports ${m[1]}`);
      }
    }
    for (const m of text.matchAll(/\.raft\.raft\b|\.trk\b|\braftLog\b|\.prs\b/g)) broken.push(`${relative(root, file)} reaches into Raft: ${m[0]}`);
  }
  assert.ok(files > 100, `the check read the sources (${files} files)`);
  assert.deepEqual(broken, [], "uses of Raft internals outside raft/");
});
