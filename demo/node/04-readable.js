// 04: a custom Readable: _read() pushes until push() returns false; the response
// pauses the stream when write() returns false and resumes it on 'drain'.
"use strict";
const { Readable } = require("node:stream");
const { createChunk, serve } = require("./common.js");

class CustomReadableStream extends Readable {
  constructor(p, rec, opts) {
    super(opts);
    this.p = p;
    this.rec = rec;
    this._chunk = 0;
  }

  async _read() {
    while (this._chunk < this.p.count) {
      const chunk = await createChunk(this.p, this._chunk);
      this._chunk++;
      this.rec.made(chunk.length);
      if (!this.push(chunk)) return;
    }
    this.push(null);
  }
}

serve("pull-source", (req, res, p, rec) => {
  res.writeHead(200, { "Content-Type": "application/octet-stream" });
  const stream = new CustomReadableStream(p, rec);
  stream.on("data", (chunk) => {
    if (!res.write(chunk)) {
      stream.pause();
      res.once("drain", () => stream.resume());
    }
  });
  stream.on("end", () => res.end());
  res.on("close", () => stream.destroy());
});
