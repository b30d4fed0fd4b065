/**
 * Serves the dashboard (dist/ui, built by src/ui/build.ts) at /ui: the page, its bundled script and
 * style sheet, read once and kept. Without a build the routes answer `not_built` saying how to build.
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { ApiError } from "./error-table.js";

const DIST_UI = fileURLToPath(new URL("../../ui/", import.meta.url));
const FILES: Record<string, string> = {
  "index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
  "app.js.map": "application/json", "app.js.LEGAL.txt": "text/plain; charset=utf-8",
};

export function registerUiRoutes(app: FastifyInstance): void {
  const cache = new Map<string, Buffer>();
  const file = (name: string): Buffer => {
    let body = cache.get(name);
    if (body === undefined) {
      const path = `${DIST_UI}${name}`;
      if (!existsSync(path)) throw new ApiError("not_built", `the dashboard is not built here (${path} is missing): run npm run build`);
      body = readFileSync(path);
      cache.set(name, body);
    }
    return body;
  };
  const hide = { schema: { hide: true } };
  app.get("/ui", hide, async (_req, reply) => reply.redirect("/ui/"));
  app.get("/ui/", hide, async (_req, reply) => reply.type(FILES["index.html"]!).send(file("index.html")));
  app.get<{ Params: { file: string } }>("/ui/:file", hide, async (req, reply) => {
    const type = FILES[req.params.file];
    if (type === undefined || req.params.file === "index.html") throw new ApiError("route_not_found", `no dashboard file ${req.params.file}`);
    return reply.type(type).send(file(req.params.file));
  });
}
