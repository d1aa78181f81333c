// 01: two writes. /?turn=1 (default) writes "World" a turn of the event loop after
// "Hello" (setImmediate), so they leave as two packets; /?turn=0 writes both in
// one turn, and Node sends them in one packet.
"use strict";
const http = require("node:http");

const server = http.createServer((req, res) => {
  const turn = new URL(req.url, "http://x").searchParams.get("turn") !== "0";
  res.writeHead(200, { "Content-Type": "text/plain" });
  if (turn) {
    setImmediate(() => {
      res.write("Hello");
      setImmediate(() => {
        res.write("World");
        res.end();
      });
    });
  } else {
    res.write("Hello");
    res.write("World");
    res.end();
  }
});
server.listen(Number(process.argv[2] || 8080), "127.0.0.1", () => {
  if (!process.argv.includes("--quiet")) {
    console.log(`listening on http://127.0.0.1:${server.address().port}`);
  }
});
process.on("SIGINT", () => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
