// The Node baseline for bench_cpu.py: Readable.from(asyncGenerator).pipe(res), the
// same chunk handed out `count` times, as benchmarks/apps.py's generator does.
// Reuses demo/node/common.js for the server and its query parameters.
"use strict";
const { Readable } = require("node:stream");
const { serve } = require("../demo/node/common.js");

const payloads = new Map();

async function* chunks(p) {
  let chunk = payloads.get(p.chunk);
  if (chunk === undefined) {
    chunk = Buffer.alloc(p.chunk, 1);
    payloads.set(p.chunk, chunk);
  }
  for (let i = 0; i < p.count; i++) yield chunk;
}

serve("pipe", (req, res, p) => {
  res.writeHead(200, { "Content-Type": "application/octet-stream" });
  const stream = Readable.from(chunks(p));
  stream.pipe(res);
  res.on("close", () => stream.destroy());
});
