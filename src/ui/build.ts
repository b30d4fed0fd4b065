/**
 * Builds the dashboard (src/ui/web) into dist/ui: the app bundled with its front-end library (Preact,
 * htm) by esbuild, so that a node serves it with nothing fetched from elsewhere (machines may be
 * offline), and the page and style sheet beside it. Run by `npm run build` after tsc, which type-checks
 * the app (tsconfig.ui.json).
 */
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const web = fileURLToPath(new URL("../../../src/ui/web/", import.meta.url));
const out = fileURLToPath(new URL("../../ui/", import.meta.url));
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [`${web}main.ts`], bundle: true, format: "esm", target: "es2020", minify: true, sourcemap: true,
  outfile: `${out}app.js`, logLevel: "warning", legalComments: "linked",
});
for (const f of ["index.html", "style.css"]) copyFileSync(`${web}${f}`, `${out}${f}`);
console.log(`dashboard built into ${out}`);
