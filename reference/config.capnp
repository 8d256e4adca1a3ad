# workerd config serving Cloudflare's JS original (websocket-server.js) as the reference
# runtime for stateroom's parity tests. The listening address is given at run time:
#   workerd serve config.capnp --socket-addr http=127.0.0.1:PORT
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .websocketServer),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:8787", http = (), service = "main"),
  ],
);

const websocketServer :Workerd.Worker = (
  modules = [
    (name = "websocket-server.js", esModule = embed "websocket-server.js"),
  ],
  # The behaviour the issue specifies (the app's own close reason reaches the client,
  # binary data prints as [object ArrayBuffer]) is that of compatibility dates before
  # 2026-03-17 (websocket_standard_binary_type) and 2026-04-07
  # (web_socket_auto_reply_to_close); reference/observed.md records both.
  compatibilityDate = "2024-11-01",
  bindings = [
    (name = "WEBSOCKET_SERVER", durableObjectNamespace = "WebSocketServer"),
  ],
  durableObjectNamespaces = [
    (className = "WebSocketServer", uniqueKey = "stateroom-reference-websocket-server"),
  ],
  durableObjectStorage = (inMemory = void),
);
