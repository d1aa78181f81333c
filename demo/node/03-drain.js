// 03: waiting for 'drain' when write() returns false.
"use strict";
const { createChunk, serve } = require("./common.js");

serve("wait", async (req, res, p, rec) => {
  res.writeHead(200, { "Content-Type": "application/octet-stream" });
  for (let i = 0; i < p.count && !res.destroyed; i++) {
    const chunk = await createChunk(p, i);
    rec.made(chunk.length);
    if (!res.write(chunk)) {
      await new Promise((resolve) => {
        res.once("drain", resolve);
        res.once("close", resolve);
      });
    }
  }
  res.end();
});
