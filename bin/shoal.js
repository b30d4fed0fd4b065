#!/usr/bin/env node
// Launcher for the `shoal` command: runs the compiled CLI (built by `npm install` / `npm run build`).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const entry = new URL("../dist/src/cli/main.js", import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  console.error("shoal: the compiled CLI is missing; run `npm install` (or `npm run build`) in the Shoal folder first.");
  process.exit(2);
}
await import(entry.href);
