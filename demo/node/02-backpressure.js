// 02: ignoring backpressure. write() returns false and the chunk is buffered anyway;
// the loop keeps producing at its own pace. (The Python demo's safety cap is mirrored:
// the response is destroyed once the buffered bytes pass `cap`.)
"use strict";
const { createChunk, serve } = require("./common.js");

serve("ignore-backpressure", async (req, res, p, rec) => {
  res.writeHead(200, { "Content-Type": "application/octet-stream" });
  for (let i = 0; i < p.count && !res.destroyed; i++) {
    const chunk = await createChunk(p, i);
    rec.made(chunk.length);
    res.write(chunk);
    rec.backlog = res.writableLength;
    rec.backlog_peak = Math.max(rec.backlog_peak, rec.backlog);
    if (res.writableLength > p.cap) {
      rec.stopped = `backlog reached the safety cap of ${p.cap / 1048576} MiB`;
      res.destroy();
      return;
    }
  }
  res.end();
});
