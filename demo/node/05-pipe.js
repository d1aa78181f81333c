// 05: Readable.from(generator).pipe(res): pipe() handles backpressure.
"use strict";
const { Readable } = require("node:stream");
const { createChunk, serve } = require("./common.js");

function* generateFile(p, rec) {
  for (let i = 0; i < p.count; i++) {
    yield createChunk(p, i).then((chunk) => {
      rec.made(chunk.length);
      return chunk;
    });
  }
}

serve("generator", (req, res, p, rec) => {
  res.writeHead(200, { "Content-Type": "application/octet-stream" });
  const stream = Readable.from(generateFile(p, rec));
  stream.pipe(res);
  res.on("close", () => stream.destroy());
});
