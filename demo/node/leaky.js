// Leaky: a live source that never waits. Messages go straight to the socket while it
// keeps up; once `limit` bytes are waiting, the oldest unsent messages are dropped
// (never a message that started to leave), as sluicegate's Channel("drop_oldest") does.
"use strict";
const { createChunk, serve } = require("./common.js");

serve("leaky", async (req, res, p, rec) => {
  const limit = p.limit || 2 * p.chunk;
  const queue = [];
  let queued = 0;
  let writing = false;
  res.writeHead(200, { "Content-Type": "application/octet-stream" });
  const pump = () => {
    while (!writing && queue.length) {
      const chunk = queue.shift();
      queued -= chunk.length;
      writing = !res.write(chunk);
      if (writing) res.once("drain", () => { writing = false; pump(); });
    }
    if (!queue.length && done && !writing) res.end();
  };
  let done = false;
  for (let i = 0; i < p.count && !res.destroyed; i++) {
    const chunk = await createChunk(p, i);
    rec.made(chunk.length);
    while (queue.length && queued + chunk.length > limit) {
      const old = queue.shift();
      queued -= old.length;
      rec.drops += 1;
      rec.dropped += old.length;
    }
    queue.push(chunk);
    queued += chunk.length;
    pump();
  }
  done = true;
  pump();
});
