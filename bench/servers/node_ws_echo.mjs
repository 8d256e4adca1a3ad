// Bare echo server on Node's `ws` (pinned in bench/node/package.json): the bench peer.
// Each text message comes back as "[Durable Object]: " + message, on any path.
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

const require = createRequire(new URL("../node/package.json", import.meta.url));
const { WebSocketServer } = require("ws");

const { values } = parseArgs({
  options: { host: { type: "string", default: "127.0.0.1" }, port: { type: "string" } },
});
if (!values.port) {
  throw new Error("--port is required");
}

const wss = new WebSocketServer({
  host: values.host,
  port: Number(values.port),
  backlog: 4096,
  maxPayload: 1 << 20,
  perMessageDeflate: false,
});
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    if (isBinary) {
      ws.send(data, { binary: true });
    } else {
      ws.send("[Durable Object]: " + data.toString());
    }
  });
});
