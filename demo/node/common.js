// Shared by the demo's Node servers: the article's createChunk(), the query
// parameters the Python demo app takes, and the /stats records it keeps.
// Plain node:http, no npm dependencies. Sizes are MiB, like curl's --limit-rate.
"use strict";
const http = require("node:http");

const MiB = 1024 * 1024;
const records = [];

function size(text, fallback) {
  if (text === null || text === undefined) return fallback;
  const m = /^(\d+(?:\.\d+)?)([kmg]?)$/i.exec(text.trim());
  if (!m) throw new Error(`bad size ${JSON.stringify(text)}`);
  const unit = { "": 1, k: 1024, m: MiB, g: 1024 * MiB }[m[2].toLowerCase()];
  return Math.floor(Number(m[1]) * unit);
}

function params(req) {
  const q = new URL(req.url, "http://x").searchParams;
  const p = {
    chunk: size(q.get("chunk"), 20 * MiB),
    rate: size(q.get("rate"), 20 * MiB),
    count: Number(q.get("count") || 20),
    limit: size(q.get("limit"), 0),
    cap: size(q.get("cap"), 1536 * MiB),
  };
  if (!(p.chunk >= 1 && p.chunk <= 256 * MiB)) throw new Error("chunk must be 1..256M");
  if (!(Number.isInteger(p.count) && p.count >= 1 && p.count <= 100000)) {
    throw new Error("count must be 1..100000");
  }
  if (!(p.rate > 0)) throw new Error("rate must be > 0");
  p.interval = (p.chunk / p.rate) * 1000;
  return p;
}

function record(scenario, p) {
  const rec = {
    scenario,
    params: { chunk: p.chunk, rate: p.rate, count: p.count },
    started: Date.now() / 1000,
    produced: 0,
    chunks: 0,
    times: [],
    backlog: 0,
    backlog_peak: 0,
    dropped: 0,
    drops: 0,
    stopped: null,
    ended: null,
  };
  rec.made = (n) => {
    rec.produced += n;
    rec.chunks += 1;
    rec.times.push(Math.round((Date.now() / 1000 - rec.started) * 1e4) / 1e4);
  };
  records.push(rec);
  if (records.length > 64) records.shift();
  return rec;
}

// The article's createChunk(): a chunk after chunk/rate seconds. Filled, like the
// Python demo's chunks, so its pages are really touched.
function createChunk(p, index) {
  return new Promise((resolve) => {
    setTimeout(() => resolve(Buffer.alloc(p.chunk, 1 + (index % 250))), p.interval);
  });
}

// Serve `handler(req, res, p, rec)` for `scenario`, plus /stats, on argv[2] (8080).
function serve(scenario, handler) {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/stats") {
      const body = JSON.stringify(records, (k, v) => (k === "made" ? undefined : v));
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(body);
      return;
    }
    let p;
    try {
      p = params(req);
    } catch (err) {
      res.writeHead(400, { "Content-Type": "application/problem+json" });
      res.end(JSON.stringify({ type: "about:blank", title: "Bad Request", status: 400, detail: err.message }));
      return;
    }
    const rec = record(scenario, p);
    res.on("close", () => {
      rec.ended = Date.now() / 1000;
    });
    handler(req, res, p, rec);
  });
  const port = Number(process.argv[2] || 8080);
  server.listen(port, "127.0.0.1", () => {
    if (!process.argv.includes("--quiet")) {
      console.log(`listening on http://127.0.0.1:${server.address().port}`);
    }
  });
  process.on("SIGINT", () => process.exit(0));
  process.on("SIGTERM", () => process.exit(0));
  return server;
}

module.exports = { MiB, createChunk, serve, params, record };
