/**
 * The README's first page is true: its quick start starts a demo cluster, and every `npx shoal` line of
 * "With the demo running" runs against it; a line with `# -> OUTPUT` prints OUTPUT. Versions are log
 * indexes, so a number in the README stands for "the value printed where the README printed it first":
 * the first time a README number meets a printed one they are bound, and every later use (an argument
 * like `--if-version 7` included) must agree.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { waitFor } from "../node/testing.js";
import { freePortRun, shoal } from "./testing.js";

const readme = readFileSync(fileURLToPath(new URL("../../../README.md", import.meta.url)), "utf8");
const DEMO_READY_MS = 120_000;
const COMMAND_TIMEOUT_MS = 30_000;

interface Line { argv: string[]; expected: string | null; text: string }

/** The quick start's shoal lines: arguments (shell single quotes honoured) and the promised output. */
function quickStartLines(): Line[] {
  const section = readme.slice(readme.indexOf("With the demo running"));
  const block = /```sh\n([\s\S]*?)```/.exec(section)![1]!;
  const lines: Line[] = [];
  for (const text of block.split("\n")) {
    const m = /^npx shoal (.*?)\s*(?:# (?:-> (.*)|.*))?$/.exec(text.trim());
    if (m === null) continue;
    const argv = [...m[1]!.matchAll(/'([^']*)'|(\S+)/g)].map((a) => a[1] ?? a[2]!);
    // A stream that runs until interrupted has no end to compare.
    if (argv[0] === "watch") continue;
    lines.push({ argv, expected: m[2] ?? null, text });
  }
  return lines;
}

/** Numbers of the README bound to the numbers printed (see the file's comment). */
class Bindings {
  private readonly map = new Map<string, string>();
  substitute(arg: string): string {
    return arg.replace(/\b\d+\b/g, (n) => this.map.get(n) ?? n);
  }
  /** Whether `actual` is `expected` with its numbers bound consistently (binding new ones). */
  match(expected: string, actual: string): boolean {
    const norm = (s: string) => { try { return JSON.stringify(JSON.parse(s)); } catch { return s.trim(); } };
    const [e, a] = [norm(expected), norm(actual)];
    const eParts = e.split(/(\d+)/);
    const aParts = a.split(/(\d+)/);
    if (eParts.length !== aParts.length) return false;
    for (let i = 0; i < eParts.length; i++) {
      if (i % 2 === 0) {
        if (eParts[i] !== aParts[i]) return false;
      } else {
        const bound = this.map.get(eParts[i]!);
        if (bound === undefined) this.map.set(eParts[i]!, aParts[i]!);
        else if (bound !== aParts[i]) return false;
      }
    }
    return true;
  }
}

let demo: ChildProcess | null = null;
let dir = "";
after(async () => {
  if (demo !== null && demo.exitCode === null) {
    demo.kill("SIGINT");
    await new Promise((r) => demo!.once("exit", r));
  }
  if (dir !== "") rmSync(dir, { recursive: true, force: true });
});

test("the README's quick start shows real output", async () => {
  const lines = quickStartLines();
  assert.ok(lines.filter((l) => l.expected !== null).length >= 4, "the quick start promises outputs");
  // Three HTTP ports, then three peer ports, all free.
  const http = await freePortRun(6);
  const peer = http + 3;
  dir = mkdtempSync(join(tmpdir(), "shoal-quickstart-"));
  // The README's `npx shoal demo`, on free ports.
  demo = spawn(process.execPath, [shoal, "demo", "--http-port", String(http), "--peer-port", String(peer), "--data-dir", join(dir, "demo")], { stdio: ["ignore", "pipe", "pipe"] });
  let banner = "";
  demo.stdout!.on("data", (b: Buffer) => (banner += b.toString()));
  demo.stderr!.on("data", (b: Buffer) => (banner += b.toString()));
  await waitFor("the demo's banner", () => {
    assert.equal(demo!.exitCode, null, `the demo exited: ${banner}`);
    return banner.includes("Shoal demo cluster:");
  }, DEMO_READY_MS);
  const bindings = new Bindings();
  // The README's ports are the demo's defaults: 7400 + slot - 1.
  const port = (arg: string) => arg.replace(/127\.0\.0\.1:740(\d)/, (_, slot: string) => `127.0.0.1:${http + Number(slot)}`);
  for (const line of lines) {
    const argv = line.argv.map((a, i) => (line.argv[i - 1] === "--if-version" ? bindings.substitute(a) : port(a)));
    const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [shoal, ...argv], { timeout: COMMAND_TIMEOUT_MS, env: { ...process.env, SHOAL_ENDPOINT: `http://127.0.0.1:${http}` } },
        (err, stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : -1, stdout, stderr }));
    });
    if (line.expected === null) {
      assert.equal(out.code, 0, `${line.text}\n${out.stderr}`);
      continue;
    }
    const printed = out.code === 0 ? out.stdout : out.stderr;
    assert.ok(bindings.match(line.expected, printed), `${line.text}\nprinted: ${printed}`);
  }
});
